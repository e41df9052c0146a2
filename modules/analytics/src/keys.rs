//! Ingest keys: per-customer credentials that let an app or a pipeline send events without a user
//! session. The secret is shown once at creation; only its SHA-256 is stored, so a copy of the store
//! cannot be used to send events.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use portal_core::ids::{CustomerId, UserId};
use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{Error, ReadTx, Record, Result, Timestamp};
use portal_customers::CustomerScope;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tables::{INGEST_KEYS, KEYS_BY_CUSTOMER, KEYS_BY_HASH};

portal_core::id_type!(
    /// An ingest key.
    IngestKeyId
);

/// The header that carries an ingest key.
pub const HEADER: &str = "X-Ingest-Key";
/// Marks portal ingest keys, so a leaked one is recognisable (secret scanners, logs).
const PREFIX: &str = "pik_";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestKey {
    pub id: IngestKeyId,
    pub customer_id: CustomerId,
    pub created_at: Timestamp,
    pub created_by: UserId,
}

impl Record for IngestKey {}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Creates a key for `customer`; returns it with its secret (shown once).
pub fn create(tx: &WriteTx, scope: &CustomerScope, by: UserId) -> Result<(IngestKey, String)> {
    let customer = scope.id();
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let record =
        IngestKey { id: IngestKeyId::generate(), customer_id: customer, created_at: Timestamp::now(), created_by: by };
    let digest = hash(&secret);
    INGEST_KEYS.insert(tx, &record.id.to_key(), &record)?;
    KEYS_BY_HASH.put(tx, &digest, &record.id.to_key())?;
    KEYS_BY_CUSTOMER.put(tx, &key(&[&customer.to_key(), &record.id.to_key()]), &digest)?;
    portal_core::audit::record(tx, "analytics", "ingest_key_create", record.id, Some(customer))?;
    Ok((record, secret))
}

/// Revokes `customer`'s key `id`; a key of another customer is as missing as an unknown one.
pub fn revoke(tx: &WriteTx, scope: &CustomerScope, id: IngestKeyId) -> Result<()> {
    let customer = scope.id();
    let by_customer = key(&[&customer.to_key(), &id.to_key()]);
    let digest = KEYS_BY_CUSTOMER.get(tx, &by_customer)?.ok_or_else(|| Error::not_found("ingest key"))?;
    KEYS_BY_CUSTOMER.remove(tx, &by_customer)?;
    KEYS_BY_HASH.remove(tx, &digest)?;
    INGEST_KEYS.remove(tx, &id.to_key())?;
    portal_core::audit::record(tx, "analytics", "ingest_key_revoke", id, Some(customer))
}

/// The scope an ingest key gives on customer `id`: 401 for an unknown or revoked key, and the same 404
/// as for a missing customer for a key of another customer.
pub fn scope_of_key(tx: &impl ReadTx, secret: &str, id: CustomerId) -> Result<CustomerScope> {
    match customer_of(tx, secret)? {
        None => Err(Error::unauthorized("the ingest key is not valid (unknown or revoked)")),
        Some(owner) if owner != id => Err(Error::not_found("customer")),
        Some(_) => portal_customers::system_scope(tx, id),
    }
}

/// The customer a secret belongs to, if it is a live key.
pub fn customer_of(tx: &impl ReadTx, secret: &str) -> Result<Option<CustomerId>> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    let Some(id) = KEYS_BY_HASH.get(tx, &hash(secret))? else { return Ok(None) };
    Ok(INGEST_KEYS.get(tx, &id)?.map(|k| k.customer_id))
}

/// Removes every key of a customer being deleted.
pub(crate) fn remove_customer(tx: &WriteTx, customer: CustomerId) -> Result<()> {
    let mut found = Vec::new();
    KEYS_BY_CUSTOMER.visit_keys_desc(tx, &customer.to_key(), None, |k| {
        found.push(k.to_vec());
        Ok::<_, portal_core::Error>(true)
    })?;
    for by_customer in found {
        if let Some(digest) = KEYS_BY_CUSTOMER.get(tx, &by_customer)? {
            KEYS_BY_HASH.remove(tx, &digest)?;
        }
        INGEST_KEYS.remove(tx, key_from(&by_customer, 16))?;
        KEYS_BY_CUSTOMER.remove(tx, &by_customer)?;
    }
    Ok(())
}
