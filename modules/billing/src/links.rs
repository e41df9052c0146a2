//! Links to the hosted pages: `/pay/{token}` pays one invoice, `/cards/{token}` saves a card for one
//! customer. A token is signed (HMAC-SHA256 under a key kept in `billing.secrets`, which backups leave
//! out), names its invoice or customer, the generation of that record's link and when it expires. Issuing a
//! new link for the same record kills the ones before it; a paid or cancelled invoice's link shows it
//! settled and pays nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use portal_core::WriteTx;
use portal_core::{Error, Index, ReadTx, Record, Result, Table, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// `key` → secret bytes; the key that signs links is under `links`.
pub(crate) const SECRETS: Index = Index::new("billing.secrets");
const KEY_NAME: &[u8] = b"links";
/// kind byte ‖ invoice or customer id → the link issued last
const LINKS: Table<Link> = Table::new("billing.links");

/// How long a pay link works after the invoice's due date (the last default reminder goes out 14 days
/// after it), and a card link after it was issued.
pub const PAY_LINK_DAYS_AFTER_DUE: i64 = 45;
pub const CARD_LINK_DAYS: i64 = 7;

const MAC_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Pays an invoice.
    Pay,
    /// Saves a card for a customer.
    Card,
}

impl LinkKind {
    fn byte(self) -> u8 {
        match self {
            Self::Pay => b'p',
            Self::Card => b'c',
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Pay => "pay",
            Self::Card => "cards",
        }
    }
}

/// The link issued last for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub generation: u32,
    pub expires_at: Timestamp,
}

impl Record for Link {}

/// Why a token opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a token the portal signed (or signed with a key since replaced).
    Unknown,
    /// Signed, but a newer link replaced it.
    Replaced,
    Expired,
}

/// Creates the tables and, on first start (or after a restore, which leaves secrets out), the signing key.
pub(crate) fn install(tx: &WriteTx) -> Result<()> {
    SECRETS.create(tx)?;
    LINKS.create(tx)?;
    if SECRETS.get(tx, KEY_NAME)?.is_none() {
        let key: [u8; 32] = rand::random();
        SECRETS.put(tx, KEY_NAME, &key)?;
    }
    Ok(())
}

fn record_key(kind: LinkKind, id: &[u8; 16]) -> Vec<u8> {
    let mut key = vec![kind.byte()];
    key.extend_from_slice(id);
    key
}

/// The current link of a record, if one was issued.
pub fn current(tx: &impl ReadTx, kind: LinkKind, id: &[u8; 16]) -> Result<Option<Link>> {
    Ok(LINKS.get(tx, &record_key(kind, id))?)
}

/// The current links of many records, in their order (one read).
pub fn current_many(tx: &impl ReadTx, kind: LinkKind, ids: &[[u8; 16]]) -> Result<Vec<Option<Link>>> {
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| record_key(kind, id)).collect();
    Ok(LINKS.get_many(tx, &keys.iter().map(Vec::as_slice).collect::<Vec<_>>())?)
}

/// Issues a new link for a record, valid until `expires_at`; every earlier link of it stops working.
pub fn issue(tx: &WriteTx, kind: LinkKind, id: &[u8; 16], expires_at: Timestamp) -> Result<Link> {
    let generation = current(tx, kind, id)?.map_or(1, |link| link.generation.wrapping_add(1));
    store(tx, kind, id, Link { generation, expires_at })
}

/// Issues the first link of a record created in this transaction (none can exist: nothing to read).
pub fn issue_first(tx: &WriteTx, kind: LinkKind, id: &[u8; 16], expires_at: Timestamp) -> Result<Link> {
    store(tx, kind, id, Link { generation: 1, expires_at })
}

fn store(tx: &WriteTx, kind: LinkKind, id: &[u8; 16], link: Link) -> Result<Link> {
    LINKS.insert(tx, &record_key(kind, id), &link)?;
    Ok(link)
}

/// Removes a record's link (a store from before links, in tests).
#[cfg(test)]
pub(crate) fn forget(tx: &WriteTx, kind: LinkKind, id: &[u8; 16]) -> Result<()> {
    LINKS.remove(tx, &record_key(kind, id))?;
    Ok(())
}

fn signing_key(tx: &impl ReadTx) -> Result<Vec<u8>> {
    SECRETS.get(tx, KEY_NAME)?.ok_or_else(|| Error::internal("the link signing key is missing from the store"))
}

fn payload(kind: LinkKind, id: &[u8; 16], link: &Link) -> Vec<u8> {
    let mut bytes = record_key(kind, id);
    bytes.extend_from_slice(&link.generation.to_be_bytes());
    bytes.extend_from_slice(&link.expires_at.unix_secs().to_be_bytes());
    bytes
}

fn mac(key: &[u8], payload: &[u8]) -> Result<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(Error::internal)?;
    mac.update(payload);
    Ok(mac.finalize().into_bytes().get(..MAC_LEN).unwrap_or_default().to_vec())
}

/// The token of a record's link.
pub fn token(tx: &impl ReadTx, kind: LinkKind, id: &[u8; 16], link: &Link) -> Result<String> {
    let mut bytes = payload(kind, id, link);
    bytes.extend(mac(&signing_key(tx)?, &bytes)?);
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The page's address: `{public_url}/pay/{token}`.
pub fn url(public_url: &str, kind: LinkKind, token: &str) -> String {
    format!("{}/{}/{token}", public_url.trim_end_matches('/'), kind.path())
}

/// The record a token opens, if it is the record's current link and has not expired.
pub fn open(tx: &impl ReadTx, kind: LinkKind, token: &str, now: Timestamp) -> Result<Result<[u8; 16], LinkRefusal>> {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else { return Ok(Err(LinkRefusal::Unknown)) };
    let payload_len = 1 + 16 + 4 + 8;
    let (Some(payload), Some(given)) = (bytes.get(..payload_len), bytes.get(payload_len..)) else {
        return Ok(Err(LinkRefusal::Unknown));
    };
    let expected = mac(&signing_key(tx)?, payload)?;
    if payload.first() != Some(&kind.byte()) || !bool::from(expected.ct_eq(given)) {
        return Ok(Err(LinkRefusal::Unknown));
    }
    let field = |from: usize, to: usize| payload.get(from..to).unwrap_or_default();
    let id: [u8; 16] = field(1, 17).try_into().map_err(Error::internal)?;
    let generation = u32::from_be_bytes(field(17, 21).try_into().map_err(Error::internal)?);
    let expires = i64::from_be_bytes(field(21, 29).try_into().map_err(Error::internal)?);
    if current(tx, kind, &id)?.is_none_or(|link| link.generation != generation) {
        return Ok(Err(LinkRefusal::Replaced));
    }
    if now.unix_secs() >= expires {
        return Ok(Err(LinkRefusal::Expired));
    }
    Ok(Ok(id))
}
