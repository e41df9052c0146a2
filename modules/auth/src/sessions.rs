//! Sessions: created at sign-in, found by the session cookie or by the `sid` of an access token, ended by
//! idle time (30 min), absolute age (12 h), logout, password change or reset. Refresh tokens rotate on
//! every use; a rotated-out token presented again means it was stolen, so the whole session ends.
//! Every function here that writes notes the change for the in-memory session cache.

use portal_core::ids::{SessionId, UserId};
use portal_core::table::{key, key_from, Page};
use portal_core::WriteTx;
use portal_core::{ReadTx, Result, Timestamp};

use crate::model::{Holder, RefreshEntry, Session};
use crate::session_cache::CHANGES;
use crate::tables::{REFRESH_TOKENS, SESSIONS, SESSIONS_BY_COOKIE, SESSIONS_BY_USER};
use crate::tokens::{random_token, sha256};

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

impl Policy {
    pub fn is_live(&self, session: &Session, now: Timestamp) -> bool {
        now < session.expires_at && now < session.last_seen.plus_secs(self.idle_secs)
    }
}

/// A new session and the secrets handed to the client (only their hashes are stored).
pub struct Opened {
    pub session: Session,
    pub cookie: String,
    pub csrf: String,
    pub refresh: String,
}

pub fn open(tx: &WriteTx, user: UserId, holder: Holder, policy: &Policy, now: Timestamp) -> Result<Opened> {
    CHANGES.note();
    let (cookie, csrf, refresh) = (random_token(), random_token(), random_token());
    let session = Session {
        id: SessionId::generate(),
        user_id: user,
        created_at: now,
        last_seen: now,
        expires_at: now.plus_secs(policy.absolute_secs),
        cookie_hash: sha256(&cookie),
        csrf_hash: sha256(&csrf),
        refresh_hashes: vec![sha256(&refresh)],
        holder: Some(holder),
    };
    SESSIONS.insert(tx, &session.id.to_key(), &session)?;
    SESSIONS_BY_USER.put(tx, &key(&[&user.to_key(), &session.id.to_key()]), &[])?;
    SESSIONS_BY_COOKIE.put(tx, &session.cookie_hash, &session.id.to_key())?;
    if let Some(first) = session.refresh_hashes.first() {
        REFRESH_TOKENS.insert(tx, first, &RefreshEntry { session_id: session.id })?;
    }
    portal_core::audit::record(tx, "auth", "sign_in", user, None)?;
    Ok(Opened { session, cookie, csrf, refresh })
}

pub fn get(tx: &impl ReadTx, id: SessionId) -> Result<Option<Session>> {
    Ok(SESSIONS.get(tx, &id.to_key())?)
}

pub fn by_cookie(tx: &impl ReadTx, cookie: &str) -> Result<Option<Session>> {
    match SESSIONS_BY_COOKIE.get(tx, &sha256(cookie))? {
        Some(id) => Ok(SESSIONS.get(tx, &id)?),
        None => Ok(None),
    }
}

/// Ends a session: it and every token of it stop working at once.
pub fn revoke(tx: &WriteTx, session: &Session) -> Result<()> {
    CHANGES.note();
    SESSIONS.remove(tx, &session.id.to_key())?;
    SESSIONS_BY_USER.remove(tx, &key(&[&session.user_id.to_key(), &session.id.to_key()]))?;
    SESSIONS_BY_COOKIE.remove(tx, &session.cookie_hash)?;
    for hash in &session.refresh_hashes {
        REFRESH_TOKENS.remove(tx, hash)?;
    }
    Ok(())
}

/// Ends every session of `user`, except `keep`.
pub fn revoke_all(tx: &WriteTx, user: UserId, keep: Option<SessionId>) -> Result<usize> {
    CHANGES.note();
    let prefix = user.to_key();
    let keys = SESSIONS_BY_USER.page_keys(tx, &Page { prefix: &prefix, after: None, limit: usize::MAX })?;
    let mut ended = 0;
    for k in keys {
        let Some(id) = SessionId::from_key(key_from(&k, 16)) else { continue };
        if Some(id) == keep {
            continue;
        }
        match get(tx, id)? {
            Some(session) => revoke(tx, &session)?,
            None => {
                SESSIONS_BY_USER.remove(tx, &k)?;
            }
        }
        ended += 1;
    }
    Ok(ended)
}

/// What presenting a refresh token led to.
pub enum Refresh {
    /// The token was current: here is the session (activity recorded) and its next refresh token.
    Rotated(Session, String),
    /// The token was already used: the session has been ended.
    Reused,
    /// Unknown token, or its session is over.
    Invalid,
}

pub fn rotate(tx: &WriteTx, token: &str, policy: &Policy, now: Timestamp) -> Result<Refresh> {
    CHANGES.note();
    let hash = sha256(token);
    let Some(entry) = REFRESH_TOKENS.get(tx, &hash)? else { return Ok(Refresh::Invalid) };
    let Some(mut session) = get(tx, entry.session_id)? else {
        REFRESH_TOKENS.remove(tx, &hash)?;
        return Ok(Refresh::Invalid);
    };
    if session.refresh_hashes.last() != Some(&hash) {
        revoke(tx, &session)?;
        return Ok(Refresh::Reused);
    }
    if !policy.is_live(&session, now) {
        revoke(tx, &session)?;
        return Ok(Refresh::Invalid);
    }
    let next = random_token();
    let next_hash = sha256(&next);
    session.refresh_hashes.push(next_hash);
    session.last_seen = now;
    REFRESH_TOKENS.insert(tx, &next_hash, &RefreshEntry { session_id: session.id })?;
    SESSIONS.insert(tx, &session.id.to_key(), &session)?;
    Ok(Refresh::Rotated(session, next))
}

/// Records activity on a session (for the idle timeout).
pub fn touch(tx: &WriteTx, id: SessionId, now: Timestamp) -> Result<()> {
    CHANGES.note();
    if let Some(mut session) = get(tx, id)? {
        session.last_seen = now;
        SESSIONS.insert(tx, &id.to_key(), &session)?;
    }
    Ok(())
}

/// Ends every session past its idle or absolute limit; returns how many.
pub fn sweep(tx: &WriteTx, policy: &Policy, now: Timestamp) -> Result<usize> {
    CHANGES.note();
    let mut expired = Vec::new();
    SESSIONS.scan_prefix(tx, &[], |_, session| {
        if !policy.is_live(&session, now) {
            expired.push(session);
        }
        Ok::<_, portal_core::Error>(true)
    })?;
    for session in &expired {
        revoke(tx, session)?;
    }
    Ok(expired.len())
}

/// A new refresh token for a session whose caller is already authenticated (by the session cookie);
/// earlier tokens of the session count as used from now on.
pub fn reissue(tx: &WriteTx, id: SessionId, now: Timestamp) -> Result<Option<String>> {
    CHANGES.note();
    let Some(mut session) = get(tx, id)? else { return Ok(None) };
    let next = random_token();
    let next_hash = sha256(&next);
    session.refresh_hashes.push(next_hash);
    session.last_seen = now;
    REFRESH_TOKENS.insert(tx, &next_hash, &RefreshEntry { session_id: id })?;
    SESSIONS.insert(tx, &id.to_key(), &session)?;
    Ok(Some(next))
}
