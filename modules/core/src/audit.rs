//! The audit trail: who (user, role, request id) changed what (module, object, action) and when. Modules
//! call [`record`] inside the write transaction that makes the change, so the trail and the data can never
//! disagree. The actor comes from the request: the authentication middleware sets it for the request's
//! task, [`Store::write`](crate::Store::write) carries it to the writer thread, and jobs and the command line
//! act as `system`.

use std::cell::RefCell;

use crate::WriteTx;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::{Principal, Role};
use crate::error::Result;
use crate::ids::{CustomerId, UserId};
use crate::table::{decode, key, key_from, Index, ReadTx, Record, Table};
use crate::time::Timestamp;

crate::id_type!(
    /// An audit entry.
    AuditId
);

/// The id of the current request, in request extensions (for logs and the audit trail).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Who is acting: the signed-in user of a request, or the portal itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Option<UserId>,
    /// `admin` or `customer`; none for the portal itself and for requests not signed in.
    pub role: Option<Role>,
    pub request_id: Option<String>,
}

tokio::task_local! {
    static REQUEST_ACTOR: Actor;
}

thread_local! {
    static WRITING_ACTOR: RefCell<Option<Actor>> = const { RefCell::new(None) };
}

impl Actor {
    pub fn of(principal: Option<&Principal>, request_id: Option<String>) -> Self {
        Self { user_id: principal.map(|p| p.user_id), role: principal.map(|p| p.role), request_id }
    }

    /// The actor of the running request (`system` outside one).
    pub fn current() -> Self {
        REQUEST_ACTOR.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `fut` (a request) as this actor. Not an `async fn`, which would hold `fut` twice in its state.
    pub fn scope<F: std::future::Future>(self, fut: F) -> impl std::future::Future<Output = F::Output> {
        REQUEST_ACTOR.scope(self, fut)
    }

    /// Runs `f` (a write on the writer thread) as this actor.
    pub(crate) fn acting<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = WRITING_ACTOR.with(|a| a.replace(Some(self.clone())));
        let out = f();
        WRITING_ACTOR.with(|a| *a.borrow_mut() = previous);
        out
    }

    fn writing() -> Self {
        WRITING_ACTOR.with(|a| a.borrow().clone()).unwrap_or_default()
    }
}

/// One change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: AuditId,
    pub at: Timestamp,
    pub actor: Actor,
    /// The module that made the change (`customers`, `billing`, …).
    pub module: String,
    /// What happened to the object (`create`, `update`, `paid`, …).
    pub action: String,
    /// The changed object's id.
    pub object_id: String,
    /// The customer the object belongs to, when it belongs to one.
    pub customer_id: Option<CustomerId>,
}

impl Record for Entry {}

/// audit id → entry
const ENTRIES: Table<Entry> = Table::new("core.audit");
/// The table the indexes below share, each under its tag (one B-tree updated per entry).
const INDEXES: &str = "core.audit_indexes";
/// customer id ‖ audit id
const BY_CUSTOMER: Index = Index::shared(INDEXES, b"\x01");
/// user id ‖ audit id
const BY_USER: Index = Index::shared(INDEXES, b"\x02");
/// object key (see [`object_key`]) ‖ audit id
const BY_OBJECT: Index = Index::shared(INDEXES, b"\x03");

pub(crate) fn install(tx: &WriteTx) -> Result<()> {
    ENTRIES.create(tx)?;
    for index in [&BY_CUSTOMER, &BY_USER, &BY_OBJECT] {
        index.create(tx)?;
    }
    Ok(())
}

/// Core schema 1 → 2: the indexes, each in a table of its own before, move into their shared table.
pub(crate) fn share_indexes(tx: &WriteTx) -> Result<()> {
    let moved = BY_CUSTOMER.take_over(tx, "core.audit_by_customer")?
        + BY_USER.take_over(tx, "core.audit_by_user")?
        + BY_OBJECT.take_over(tx, "core.audit_by_object")?;
    tracing::info!(moved, "core schema 2: audit index entries moved into {INDEXES}");
    Ok(())
}

/// Core schema 2 → 3: the entries of objects with UUID ids go from under the id's hash to under the id
/// itself (see [`object_key`]). Returns how many moved.
pub(crate) fn key_objects_by_id(tx: &WriteTx) -> Result<u64> {
    let mut moved = 0;
    let mut entries = Vec::new();
    ENTRIES.scan_prefix(tx, &[], |id, entry| {
        entries.push((id.to_vec(), entry));
        Ok::<_, crate::Error>(true)
    })?;
    for (id, entry) in entries {
        if let Ok(object) = uuid::Uuid::parse_str(&entry.object_id) {
            BY_OBJECT.remove(tx, &key(&[&hashed_object_key(&entry.object_id), &id]))?;
            BY_OBJECT.put(tx, &key(&[object.as_bytes(), &id]), &[])?;
            moved += 1;
        }
    }
    tracing::info!(moved, "core schema 3: audit entries indexed under their object's id");
    Ok(moved)
}

/// Where an object's entries are indexed: under its id when that is a UUID (the portal's ids are
/// time-ordered, so a new object's entries go at the end of the index instead of onto a random page
/// each), under the first 16 bytes of the id's SHA-256 otherwise. Lists compare the object id itself.
fn object_key(object_id: &str) -> [u8; 16] {
    match uuid::Uuid::parse_str(object_id) {
        Ok(id) => id.into_bytes(),
        Err(_) => hashed_object_key(object_id),
    }
}

fn hashed_object_key(object_id: &str) -> [u8; 16] {
    let digest = Sha256::digest(object_id.as_bytes());
    let mut out = [0; 16];
    out.iter_mut().zip(digest).for_each(|(o, d)| *o = d);
    out
}

/// Records a change made in `tx` by the current actor.
pub fn record(
    tx: &WriteTx,
    module: &str,
    action: &str,
    object_id: impl std::fmt::Display,
    customer_id: Option<CustomerId>,
) -> Result<()> {
    let entry = Entry {
        id: AuditId::generate(),
        at: Timestamp::now(),
        actor: Actor::writing(),
        module: module.to_string(),
        action: action.to_string(),
        object_id: object_id.to_string(),
        customer_id,
    };
    let id = entry.id.to_key();
    if let Some(customer) = customer_id {
        BY_CUSTOMER.put(tx, &key(&[&customer.to_key(), &id]), &[])?;
    }
    if let Some(user) = entry.actor.user_id {
        BY_USER.put(tx, &key(&[&user.to_key(), &id]), &[])?;
    }
    BY_OBJECT.put(tx, &key(&[&object_key(&entry.object_id), &id]), &[])?;
    Ok(ENTRIES.insert(tx, &id, &entry)?)
}

/// Which entries to list (all given filters apply).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer_id: Option<CustomerId>,
    pub user_id: Option<UserId>,
    pub object_id: Option<String>,
    pub module: Option<String>,
}

/// Up to `fetch` entries matching `filter`, newest first, older than `after`. Walks the most selective
/// index the filter names.
pub fn list(tx: &impl ReadTx, filter: &Filter, after: Option<AuditId>, fetch: usize) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let matches = |e: &Entry| {
        filter.customer_id.is_none_or(|c| e.customer_id == Some(c))
            && filter.user_id.is_none_or(|u| e.actor.user_id == Some(u))
            && filter.object_id.as_ref().is_none_or(|o| &e.object_id == o)
            && filter.module.as_ref().is_none_or(|m| &e.module == m)
    };
    let mut keep = |entry: Entry| {
        if matches(&entry) {
            out.push(entry);
        }
        out.len() < fetch
    };
    let after_id = after.map(|a| a.to_key());
    let prefix: Option<(&Index, Vec<u8>)> = match (&filter.object_id, filter.customer_id, filter.user_id) {
        (Some(object), _, _) => Some((&BY_OBJECT, object_key(object).to_vec())),
        (None, Some(customer), _) => Some((&BY_CUSTOMER, customer.to_key().to_vec())),
        (None, None, Some(user)) => Some((&BY_USER, user.to_key().to_vec())),
        (None, None, None) => None,
    };
    match prefix {
        Some((index, prefix)) => {
            let after_key = after_id.map(|a| key(&[&prefix, &a]));
            // Reading the entries table while walking the index is fine in a read transaction.
            index.visit_keys_desc(tx, &prefix, after_key.as_deref(), |k| {
                match ENTRIES.get(tx, key_from(k, prefix.len()))? {
                    Some(entry) => Ok::<_, crate::Error>(keep(entry)),
                    None => Ok(true),
                }
            })?;
        }
        None => {
            let range = match &after_id {
                Some(a) => (std::ops::Bound::Unbounded, std::ops::Bound::Excluded(a.as_slice())),
                None => (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
            };
            tx.scan_raw(ENTRIES.raw(), range, true, |_, v| Ok::<_, crate::Error>(keep(decode(v)?)))?;
        }
    }
    Ok(out)
}
