//! Endpoint signing secrets: `whsec_` + base64 of 32 random bytes, shown once when made. HMAC needs the
//! secret itself, so it cannot be hashed; it is sealed at rest (AES-256-GCM, bound to its endpoint) under
//! a key kept in `webhooks.secrets`, which backups leave out: after a restore, rotate each endpoint's
//! secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use portal_core::WriteTx;
use portal_core::{Error, ReadTx, Result, Timestamp};

use crate::model::{EndpointId, SealedSecret};
use crate::tables::SECRETS;

const KEY_NAME: &[u8] = b"endpoints";
const PREFIX: &str = "whsec_";

/// Creates the sealing key on first start (and after a restore).
pub(crate) fn install(tx: &WriteTx) -> Result<()> {
    if SECRETS.get(tx, KEY_NAME)?.is_none() {
        let key: [u8; 32] = rand::random();
        SECRETS.put(tx, KEY_NAME, &key)?;
    }
    Ok(())
}

/// A new secret: the text to show once, and its sealed form to keep.
pub(crate) fn generate(tx: &impl ReadTx, endpoint: EndpointId) -> Result<(String, SealedSecret)> {
    let raw: [u8; 32] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let sealed = cipher(tx)?
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &raw, aad: &endpoint.to_key() })
        .map_err(|_| Error::internal("a webhook secret could not be sealed"))?;
    let shown = format!("{PREFIX}{}", STANDARD.encode(raw));
    Ok((shown, SealedSecret { nonce: nonce.to_vec(), sealed, expires_at: None }))
}

/// The signing keys of an endpoint in force at `now`: its current secret and those still rotating out.
pub(crate) fn signing_keys(
    tx: &impl ReadTx,
    endpoint: EndpointId,
    secrets: &[SealedSecret],
    now: Timestamp,
) -> Result<Vec<Vec<u8>>> {
    let cipher = cipher(tx)?;
    let mut keys = Vec::new();
    for secret in secrets.iter().filter(|s| s.expires_at.is_none_or(|at| at > now)) {
        let key = cipher
            .decrypt(Nonce::from_slice(&secret.nonce), Payload { msg: &secret.sealed, aad: &endpoint.to_key() })
            .map_err(|_| {
                Error::conflict("the endpoint's secret cannot be read (the store was restored?): rotate it")
            })?;
        keys.push(key);
    }
    Ok(keys)
}

fn cipher(tx: &impl ReadTx) -> Result<Aes256Gcm> {
    let key = SECRETS.get(tx, KEY_NAME)?.ok_or_else(|| Error::internal("the webhook sealing key is missing"))?;
    Aes256Gcm::new_from_slice(&key).map_err(|_| Error::internal("the webhook sealing key is malformed"))
}

/// The key a `whsec_…` secret stands for.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()
}
