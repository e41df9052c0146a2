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

/// The id of the current request (for logs and the audit trail, see [`RequestId::scope`]): 1 to 64 plain
/// ASCII characters, kept inline, so that handing it to the log, the audit actor and the answer's header
/// allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))] // the text word-aligned: its UTF-8 check then reads it a word at a time
pub struct RequestId {
    bytes: [u8; RequestId::MAX_LEN],
    len: u8,
}

impl RequestId {
    pub const MAX_LEN: usize = 64;

    /// `text` when it can be a request id: 1 to 64 letters, digits and `-_.:`.
    pub fn plain(text: &str) -> Option<Self> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
        if text.is_empty() || text.len() > Self::MAX_LEN || !text.bytes().all(allowed) {
            return None;
        }
        let mut id = Self { bytes: [0; Self::MAX_LEN], len: u8::try_from(text.len()).ok()? };
        id.bytes.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
        Some(id)
    }

    /// A new UUID v7, from the thread's own random numbers: the uuid crate's generator takes a lock and
    /// draws cryptographic randomness (~580 instructions a request), and a request id is no secret.
    pub fn generate() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let [a, b] = [random_u64(), random_u64()];
        let mut random = [0; 10];
        random.iter_mut().zip(a.to_le_bytes().into_iter().chain(b.to_le_bytes())).for_each(|(to, from)| *to = from);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        let mut id = Self { bytes: [0; Self::MAX_LEN], len: uuid::fmt::Hyphenated::LENGTH as u8 };
        if let Some(text) = id.bytes.first_chunk_mut::<{ uuid::fmt::Hyphenated::LENGTH }>() {
            uuid.hyphenated().encode_lower(text);
        }
        id
    }

    /// Runs `request` as the request with this id: its log lines and audit entries carry it. A task-local
    /// rather than a request extension, which the log reads anyway (one extension fewer per request, and
    /// so no growing of the extensions' table). Not an `async fn`, which would hold `request` twice.
    pub fn scope<F: std::future::Future>(self, request: F) -> impl std::future::Future<Output = F::Output> {
        CURRENT_REQUEST.scope(self, request)
    }

    /// The id of the running request (none outside one).
    pub fn current() -> Option<Self> {
        CURRENT_REQUEST.try_with(|id| *id).ok()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(self.bytes.get(..usize::from(self.len)).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stored as its text, as when it was a `String` (every id ever stored passed [`RequestId::plain`]'s rule).
impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::plain(&text).ok_or_else(|| serde::de::Error::custom(format!("not a request id: {text:?}")))
    }
}

/// The next of this thread's random numbers (splitmix64 over a counter seeded from the process's random
/// hash keys, which differ per thread).
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    thread_local! {
        static STATE: std::cell::Cell<u64> =
            std::cell::Cell::new(std::hash::RandomState::new().hash_one(std::thread::current().id()));
    }
    STATE.with(|state| {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Who is acting: the signed-in user of a request, or the portal itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Option<UserId>,
    /// `admin` or `customer`; none for the portal itself and for requests not signed in.
    pub role: Option<Role>,
    pub request_id: Option<RequestId>,
}

tokio::task_local! {
    static CURRENT_REQUEST: RequestId;
    static REQUEST_ACTOR: Actor;
}

thread_local! {
    static WRITING_ACTOR: RefCell<Option<Actor>> = const { RefCell::new(None) };
}

impl Actor {
    pub fn of(principal: Option<&Principal>, request_id: Option<RequestId>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_one_to_64_plain_characters() {
        for id in ["abc-123_x.y", "a", "urn:x:1", &"a".repeat(64)] {
            assert_eq!(RequestId::plain(id).map(|r| r.to_string()).as_deref(), Some(id));
        }
        for id in ["", "a b", "é", "a/b", "a\"", &"a".repeat(65), &"a".repeat(300)] {
            assert!(RequestId::plain(id).is_none(), "{id:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_distinct_uuid_v7_of_now() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| RequestId::generate().to_string()).collect();
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.hyphenated().to_string(), *id, "lower-case, hyphenated");
            assert_eq!(uuid.get_version_num(), 7);
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
            assert!((before..=after).contains(&millis), "{id}");
        }
        let other_thread = std::thread::spawn(|| RequestId::generate().to_string()).join().unwrap();
        assert!(!ids.contains(&other_thread));
    }

    #[test]
    fn an_actor_is_stored_as_it_was_with_the_request_id_as_text() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct TextActor {
            user_id: Option<UserId>,
            role: Option<Role>,
            request_id: Option<String>,
        }
        let user = UserId::generate();
        for request_id in [Some("0193e1c4-7a2b-7cc0-8f00-000000000001"), Some("client-id:1"), None] {
            let actor = Actor {
                user_id: Some(user),
                role: Some(Role::Admin),
                request_id: request_id.and_then(RequestId::plain),
            };
            let text =
                TextActor { user_id: Some(user), role: Some(Role::Admin), request_id: request_id.map(String::from) };
            let stored = rmp_serde::to_vec_named(&actor).unwrap();
            assert_eq!(stored, rmp_serde::to_vec_named(&text).unwrap());
            assert_eq!(rmp_serde::from_slice::<Actor>(&rmp_serde::to_vec_named(&text).unwrap()).unwrap(), actor);
        }
    }
}
