//! Access tokens already verified, with what they say. A token's signature and claims never change, so
//! after jsonwebtoken has checked one, later requests carrying it are answered from here until it
//! expires: a hash lookup instead of base64, an HMAC and two JSON parses. Whether its session is still
//! live is checked on every request all the same.

use std::collections::HashMap;
use std::sync::RwLock;

use portal_core::ids::{CustomerId, SessionId, UserId};
use portal_core::Role;

use crate::tokens::Claims;

/// At most this many tokens are remembered (about 400 bytes each); when full, expired ones are
/// dropped, and if none has expired, all of them (they are verified again on their next use).
const CAPACITY: usize = 16_384;

/// What a verified token says about its bearer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bearer {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
    pub customer_id: Option<CustomerId>,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
}

impl From<&Claims> for Bearer {
    fn from(c: &Claims) -> Self {
        Self { user_id: c.sub, session_id: c.sid, role: c.role, customer_id: c.cid, expires: c.exp }
    }
}

/// Hashed with foldhash, not std's SipHash (a fifth of a cached request's credential check on a 300-byte
/// token): only tokens whose signature verified are inserted, so no caller can choose keys to collide.
#[derive(Default)]
pub struct VerifiedTokens {
    tokens: RwLock<HashMap<Box<str>, Bearer, foldhash::fast::RandomState>>,
}

impl VerifiedTokens {
    /// The bearer of `token` if it was verified before and has not expired at `now` (Unix seconds).
    pub fn get(&self, token: &str, now: i64) -> Option<Bearer> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens.get(token).copied().filter(|b| now < b.expires)
    }

    pub fn insert(&self, token: &str, bearer: Bearer, now: i64) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= CAPACITY {
            tokens.retain(|_, b| now < b.expires);
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(token.into(), bearer);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tokens.read().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(expires: i64) -> Bearer {
        Bearer {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            role: Role::Customer,
            customer_id: Some(CustomerId::generate()),
            expires,
        }
    }

    #[test]
    fn a_remembered_token_is_answered_until_it_expires() {
        let cache = VerifiedTokens::default();
        let b = bearer(1_000);
        cache.insert("a.b.c", b, 100);
        assert_eq!(cache.get("a.b.c", 999), Some(b));
        assert_eq!(cache.get("a.b.c", 1_000), None);
        assert_eq!(cache.get("a.b.d", 100), None);
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first_then_everything() {
        let cache = VerifiedTokens::default();
        for i in 0..CAPACITY {
            cache.insert(&format!("t{i}"), bearer(if i % 2 == 0 { 50 } else { 500 }), 10);
        }
        cache.insert("new", bearer(500), 100);
        assert_eq!(cache.len(), CAPACITY / 2 + 1, "the expired half went");
        assert!(cache.get("t1", 100).is_some());
        for i in 0..CAPACITY {
            cache.insert(&format!("u{i}"), bearer(500), 100);
        }
        assert!(cache.len() < CAPACITY, "nothing had expired, so everything went");
        assert!(cache.get("u16383", 100).is_some());
    }
}
