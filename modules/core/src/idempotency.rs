//! `Idempotency-Key` with Stripe's semantics for the writes that must not happen twice: the same key with
//! the same body within 24 h replays the first answer; with another body → `409 idempotency_conflict`; while
//! the first request still runs → `409 conflict`. Keys belong to the caller (one user's key never meets
//! another's). The answer is recorded in the same transaction as the write it describes, so a crash can never
//! leave a write without its record (or the reverse); a request that fails releases its key.

use crate::WriteTx;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorCode, Result};
pub use crate::idempotency_key::IdempotencyKey;
use crate::ids::UserId;
use crate::store::Store;
use crate::table::{Record, Table};
use crate::time::Timestamp;

/// sha256(user ‖ operation ‖ key) → the state of that key.
const KEYS: Table<Entry> = Table::new("core.idempotency_keys");

/// How long a key is remembered.
pub const RETENTION_SECS: i64 = 24 * 3600;
/// A reservation older than this belongs to a request that died with the process; the key is free again.
const IN_FLIGHT_SECS: i64 = 120;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    request: [u8; 32],
    created_at: Timestamp,
    /// The recorded answer; none while the first request runs.
    response: Option<Recorded>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recorded {
    status: u16,
    body: String,
}

impl Record for Entry {}

pub(crate) fn install(tx: &WriteTx) -> Result<()> {
    Ok(KEYS.create(tx)?)
}

/// What [`begin`] found. Clone it into the write closure and keep the original until the write returns,
/// so that a failed request releases its key from the async side.
#[derive(Clone)]
pub enum Claim {
    /// No key given: run as usual.
    None,
    /// First use of the key: run, then [`Ticket::complete`] inside the write transaction.
    Fresh(std::sync::Arc<Ticket>),
    /// The key answered before: send this again.
    Replay { status: u16, body: serde_json::Value },
}

impl Claim {
    /// Records the answer in `tx` when a key was given. Call it last in the write closure, after everything
    /// that could still fail.
    pub fn complete(&self, tx: &WriteTx, status: u16, body: &impl ToJSON) -> Result<()> {
        match self {
            Claim::Fresh(ticket) => ticket.complete(tx, status, body),
            _ => Ok(()),
        }
    }

    /// The replayed answer as `T`, when this is a replay.
    pub fn replayed<T: ParseFromJSON>(&self) -> Result<Option<(u16, T)>> {
        match self {
            Claim::Replay { status, body } => {
                let parsed = T::parse_from_json(Some(body.clone())).map_err(|e| Error::internal(e.into_message()))?;
                Ok(Some((*status, parsed)))
            }
            _ => Ok(None),
        }
    }
}

/// A reserved key. Dropped without [`complete`](Ticket::complete) (the request failed), it frees the key.
pub struct Ticket {
    store: Store,
    key: [u8; 32],
    request: [u8; 32],
    /// Set once the write that recorded the answer is committed (then there is nothing to free).
    completed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Ticket {
    fn complete(&self, tx: &WriteTx, status: u16, body: &impl ToJSON) -> Result<()> {
        let entry = Entry {
            request: self.request,
            created_at: Timestamp::now(),
            response: Some(Recorded { status, body: body.to_json_string() }),
        };
        KEYS.insert(tx, &self.key, &entry)?;
        let completed = self.completed.clone();
        crate::store::on_commit(move || completed.store(true, std::sync::atomic::Ordering::Release));
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.completed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let (store, key, request) = (self.store.clone(), self.key, self.request);
        let release = async move {
            let _ = store
                .write(move |tx| {
                    // Only our own reservation: a completed answer stays.
                    if KEYS.get(tx, &key)?.is_some_and(|e| e.response.is_none() && e.request == request) {
                        KEYS.remove(tx, &key)?;
                    }
                    Ok(())
                })
                .await;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(release);
        }
    }
}

/// Checks the `Idempotency-Key` of `operation` (e.g. `"POST /customers"`) for `caller` and the request
/// `body`; reserves the key when it is new.
pub async fn begin(
    store: &Store,
    caller: UserId,
    operation: &str,
    key: &IdempotencyKey,
    body: &impl Serialize,
) -> Result<Claim> {
    let Some(key) = key.get()? else { return Ok(Claim::None) };
    let slot: [u8; 32] = Sha256::new()
        .chain_update(caller.to_key())
        .chain_update(operation.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize()
        .into();
    let request: [u8; 32] = Sha256::digest(serde_json::to_vec(body).map_err(Error::internal)?).into();
    let claim = store
        .write(move |tx| {
            let now = Timestamp::now();
            if let Some(entry) = KEYS.get(tx, &slot)? {
                let age = now.micros().saturating_sub(entry.created_at.micros()) / 1_000_000;
                let live = match entry.response {
                    Some(_) => age < RETENTION_SECS,
                    None => age < IN_FLIGHT_SECS,
                };
                if live {
                    if entry.request != request {
                        return Err(Error::new(
                            ErrorCode::IdempotencyConflict,
                            "this Idempotency-Key was used with a different request",
                        ));
                    }
                    return match entry.response {
                        Some(recorded) => Ok(Some(recorded)),
                        None => Err(Error::conflict("a request with this Idempotency-Key is still in progress")),
                    };
                }
            }
            KEYS.insert(tx, &slot, &Entry { request, created_at: now, response: None })?;
            Ok(None)
        })
        .await?;
    match claim {
        Some(recorded) => {
            let body = serde_json::from_str(&recorded.body).map_err(Error::internal)?;
            Ok(Claim::Replay { status: recorded.status, body })
        }
        None => Ok(Claim::Fresh(std::sync::Arc::new(Ticket {
            store: store.clone(),
            key: slot,
            request,
            completed: Default::default(),
        }))),
    }
}

/// Forgets keys older than the retention window (run by a background job).
pub async fn sweep(store: &Store) -> Result<usize> {
    store
        .write(|tx| {
            let now = Timestamp::now().micros();
            let mut stale = Vec::new();
            KEYS.scan_prefix(tx, &[], |key, entry| {
                if (now - entry.created_at.micros()) / 1_000_000 >= RETENTION_SECS {
                    stale.push(key.to_vec());
                }
                Ok::<_, crate::Error>(true)
            })?;
            for key in &stale {
                KEYS.remove(tx, key)?;
            }
            Ok(stale.len())
        })
        .await
}
