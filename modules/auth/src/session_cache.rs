//! The sessions that access tokens name, kept in memory so that checking a bearer token costs no store
//! read. Every write to the sessions table notes [`CHANGES`]; an entry read before the latest such write
//! is never used, so an ended session (logout, password change, reset, archiving, sweep) is refused at
//! once, exactly as when reading the store. Liveness (idle and absolute limits) is still judged on each
//! request against the clock.
//!
//! On PostgreSQL other portals end sessions too, and their writes are not counted here: there an entry
//! is used for at most [`SHARED_MAX_AGE`], so a session ended on another node is refused within it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portal_core::ids::SessionId;
use portal_core::store::Changes;

use crate::model::Session;

/// Counts the committed writes to the sessions table.
pub(crate) static CHANGES: Changes = Changes::new();

/// Entries kept at most; past that the cache starts over (sessions are cheap to read again).
const MAX_ENTRIES: usize = 100_000;

/// How long an entry serves when other portals share the store (half the promised second).
pub const SHARED_MAX_AGE: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct SessionCache {
    inner: Mutex<Entries>,
    /// How long an entry serves, when other processes may end sessions.
    max_age: Option<Duration>,
}

#[derive(Default)]
struct Entries {
    /// The `CHANGES` count every entry was read at.
    version: u64,
    /// Each session with when its read started.
    sessions: HashMap<SessionId, (Option<Session>, Instant)>,
}

impl SessionCache {
    /// A cache whose entries serve for at most `max_age` (`None`: until a session is written).
    pub fn new(max_age: Option<Duration>) -> Self {
        Self { inner: Mutex::default(), max_age }
    }

    /// The stored session `id` as of `version` (taken before reading), if cached then and still fresh.
    pub fn get(&self, id: SessionId, version: u64) -> Option<Option<Session>> {
        let entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if entries.version != version {
            return None;
        }
        let (session, read_at) = entries.sessions.get(&id)?;
        match self.max_age {
            Some(max_age) if read_at.elapsed() >= max_age => None,
            _ => Some(session.clone()),
        }
    }

    /// Keeps what a read that started at `version` and `read_at` found.
    pub fn keep(&self, id: SessionId, version: u64, read_at: Instant, session: Option<Session>) {
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if version > entries.version || entries.sessions.len() >= MAX_ENTRIES {
            entries.sessions.clear();
            entries.version = entries.version.max(version);
        }
        if version == entries.version {
            entries.sessions.insert(id, (session, read_at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_core::ids::UserId;
    use portal_core::Timestamp;

    fn session(id: SessionId) -> Session {
        let now = Timestamp::now();
        Session {
            id,
            user_id: UserId::generate(),
            created_at: now,
            last_seen: now,
            expires_at: now.plus_secs(60),
            cookie_hash: [0; 32],
            csrf_hash: [0; 32],
            refresh_hashes: Vec::new(),
            holder: None,
        }
    }

    #[test]
    fn entries_serve_only_the_version_they_were_read_at() {
        let cache = SessionCache::default();
        let id = SessionId::generate();
        assert!(cache.get(id, 0).is_none());
        cache.keep(id, 0, Instant::now(), Some(session(id)));
        assert!(cache.get(id, 0).is_some_and(|s| s.is_some()));
        // A write to the sessions table since: the entry is not used any more.
        assert!(cache.get(id, 1).is_none());
        // A slow reader that started before that write cannot put its old answer back.
        cache.keep(id, 1, Instant::now(), None);
        cache.keep(id, 0, Instant::now(), Some(session(id)));
        assert_eq!(cache.get(id, 1).map(|s| s.is_none()), Some(true));
    }

    #[test]
    fn with_a_max_age_entries_serve_only_that_long() {
        let cache = SessionCache::new(Some(SHARED_MAX_AGE));
        let id = SessionId::generate();
        cache.keep(id, 0, Instant::now(), Some(session(id)));
        assert!(cache.get(id, 0).is_some_and(|s| s.is_some()));
        let long_ago = Instant::now().checked_sub(SHARED_MAX_AGE).unwrap_or_else(Instant::now);
        cache.keep(id, 0, long_ago, Some(session(id)));
        assert!(cache.get(id, 0).is_none(), "an entry read a max age ago still served");
    }
}
