//! Request rate limits per class (auth, profile, read, write), keyed by the signed-in user or else by the
//! client IP. Each class is a GCRA bucket: `N` requests per minute, a burst of `N`, refilled evenly.
//! Every limited response carries `X-RateLimit-Limit` and `X-RateLimit-Remaining`; over the limit →
//! `429 rate_limited` with `Retry-After`.
//!
//! Routes where credentials are guessed (sign-in, codes, 2FA, reset, register, refresh) are keyed by the
//! client IP whatever token comes with them — a token bought by registering an account must not buy more
//! guesses — and the auth service also holds each target account (an email or phone, known or not) to
//! the auth class's limit ([`RateLimiter::check_account`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, Method};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::config::{RateLimitConfig, RateLimitMode};
use crate::ids::UserId;
use crate::{Error, Principal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    Auth,
    Profile,
    Read,
    Write,
}

/// The class of a request, or `None` for what is never limited (health, docs, the Stripe webhook, whose
/// sender retries on 429 and is authenticated by its signature).
pub fn classify(method: &Method, path: &str) -> Option<RateClass> {
    if matches!(path, "/health" | "/openapi.json" | "/docs" | "/billing/webhooks/stripe") || path.starts_with("/docs/")
    {
        return None;
    }
    if path.starts_with("/auth/") {
        return Some(RateClass::Auth);
    }
    if path == "/users" || path.starts_with("/users/") {
        return Some(RateClass::Profile);
    }
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Some(RateClass::Read),
        _ => Some(RateClass::Write),
    }
}

/// Whether `path` is a route where credentials are guessed (see the module docs).
pub fn guesses_credentials(path: &str) -> bool {
    matches!(
        path,
        "/auth/login"
            | "/auth/register"
            | "/auth/verify-email"
            | "/auth/request-code"
            | "/auth/verify-code"
            | "/auth/verify-2fa"
            | "/auth/password-reset"
            | "/auth/password-reset/confirm"
            | "/auth/refresh"
    )
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    User(UserId),
    Ip(IpAddr),
    /// A target account of the credential routes, by a hash of its normalized email or phone.
    Account(u64),
}

/// The outcome of one request against its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after: Duration },
}

const SHARDS: usize = 16;

/// Buckets by (class, caller): the instant at which the bucket is full again (GCRA's theoretical arrival
/// time). Sharded so concurrent requests rarely meet on one lock.
pub struct RateLimiter {
    config: RateLimitConfig,
    started: Instant,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<(RateClass, Caller), Duration>>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            started: Instant::now(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.mode == RateLimitMode::On
    }

    fn per_minute(&self, class: RateClass) -> u32 {
        let n = match class {
            RateClass::Auth => self.config.auth_per_minute,
            RateClass::Profile => self.config.profile_per_minute,
            RateClass::Read => self.config.read_per_minute,
            RateClass::Write => self.config.write_per_minute,
        };
        n.max(1)
    }

    fn shard(&self, key: &(RateClass, Caller)) -> &Mutex<HashMap<(RateClass, Caller), Duration>> {
        #[allow(clippy::indexing_slicing)] // taken modulo the number of shards
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    fn check(&self, class: RateClass, caller: Caller, now: Instant) -> Decision {
        let limit = self.per_minute(class);
        let interval = Duration::from_secs(60) / limit;
        // A full bucket lets `limit` requests through at once.
        let tolerance = interval * (limit - 1);
        let now = now.saturating_duration_since(self.started);
        let key = (class, caller);
        let mut buckets = self.shard(&key).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = buckets.get(&key).copied().unwrap_or(now).max(now);
        if tat - now > tolerance {
            let retry_after = tat - now - tolerance;
            return Decision::Limited { limit, retry_after };
        }
        let next = tat + interval;
        buckets.insert(key, next);
        // Requests the bucket is short of full, counting a partly refilled slot as used.
        let used = (next - now).as_nanos().div_ceil(interval.as_nanos().max(1));
        let remaining = u32::try_from(u128::from(limit).saturating_sub(used)).unwrap_or(0);
        Decision::Allowed { limit, remaining }
    }

    /// One more attempt on `account` (a normalized email or phone, whether or not a user has it), held to
    /// the auth class's limit: 429 beyond it, from any number of IPs.
    pub fn check_account(&self, account: &str) -> Result<(), Error> {
        if !self.enabled() {
            return Ok(());
        }
        let caller = Caller::Account(self.hasher.hash_one(account));
        match self.check(RateClass::Auth, caller, Instant::now()) {
            Decision::Allowed { .. } => Ok(()),
            Decision::Limited { retry_after, .. } => Err(limited(retry_after)),
        }
    }

    /// Forgets buckets that are full again (they behave exactly like absent ones).
    pub fn purge_stale(&self) {
        let now = Instant::now().saturating_duration_since(self.started);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, tat| *tat > now);
        }
    }

    /// The client's IP: the peer, or — when the peer is a trusted proxy — the nearest untrusted address of
    /// `X-Forwarded-For`.
    fn client_ip(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.remote_addr().as_socket_addr()?.ip();
        if !self.config.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded = req.headers().get_all("x-forwarded-for");
        let hops: Vec<IpAddr> = forwarded
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        Some(hops.into_iter().rev().find(|ip| !self.config.trusted_proxies.contains(ip)).unwrap_or(peer))
    }
}

/// Calls `ep` within `limiter`'s limits (after authentication, so signed-in callers are keyed by user).
pub async fn limit<E: Endpoint>(ep: &E, req: Request, limiter: &RateLimiter) -> poem::Result<Response> {
    let class = classify(req.method(), req.uri().path()).filter(|_| limiter.enabled());
    let Some(class) = class else {
        return ep.call(req).await.map(IntoResponse::into_response);
    };
    let signed_in = req.extensions().get::<Principal>().filter(|_| !guesses_credentials(req.uri().path()));
    let caller = match signed_in {
        Some(principal) => Caller::User(principal.user_id),
        None => match limiter.client_ip(&req) {
            Some(ip) => Caller::Ip(ip),
            // Not a TCP peer (never the case when served): nothing to key on.
            None => return ep.call(req).await.map(IntoResponse::into_response),
        },
    };
    match limiter.check(class, caller, Instant::now()) {
        Decision::Allowed { limit, remaining } => {
            let mut resp = match ep.call(req).await {
                Ok(output) => output.into_response(),
                // Rendered here (not left to the outer layer) so that the limit headers go on it too.
                Err(err) => poem::error::ResponseError::as_response(&Error::from_poem(err)),
            };
            set_headers(&mut resp, limit, remaining);
            Ok(resp)
        }
        Decision::Limited { limit, retry_after } => {
            let mut resp = poem::error::ResponseError::as_response(&limited(retry_after));
            set_headers(&mut resp, limit, 0);
            Ok(resp)
        }
    }
}

/// A 429 whose `Retry-After` is `retry_after` rounded up to whole seconds.
fn limited(retry_after: Duration) -> Error {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    Error::rate_limited(secs.max(1))
}

/// The one rate limiter of the app, shared by the middleware, the auth service and the purge job.
pub fn shared(ctx: &crate::Context) -> std::sync::Arc<RateLimiter> {
    ctx.services.get_or_init(|| RateLimiter::new(ctx.config.rate_limit.clone()))
}

fn set_headers(resp: &mut Response, limit: u32, remaining: u32) {
    let headers = resp.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32) -> RateLimiter {
        let mut config = crate::Config::for_data_dir(".".into()).rate_limit;
        config.auth_per_minute = per_minute;
        RateLimiter::new(config)
    }

    #[test]
    fn a_full_bucket_allows_the_burst_then_refills_evenly() {
        let l = limiter(5);
        let caller = Caller::Ip([10, 0, 0, 1].into());
        let t0 = l.started;
        for expected in (0..5).rev() {
            assert_eq!(l.check(RateClass::Auth, caller, t0), Decision::Allowed { limit: 5, remaining: expected });
        }
        assert_eq!(
            l.check(RateClass::Auth, caller, t0),
            Decision::Limited { limit: 5, retry_after: Duration::from_secs(12) }
        );
        // Another caller and another class have their own buckets.
        let other = Caller::Ip([10, 0, 0, 2].into());
        assert!(matches!(l.check(RateClass::Auth, other, t0), Decision::Allowed { remaining: 4, .. }));
        assert!(matches!(l.check(RateClass::Read, caller, t0), Decision::Allowed { .. }));
        // One interval later exactly one more request passes.
        let t12 = t0 + Duration::from_secs(12);
        assert_eq!(l.check(RateClass::Auth, caller, t12), Decision::Allowed { limit: 5, remaining: 0 });
        assert!(matches!(l.check(RateClass::Auth, caller, t12), Decision::Limited { .. }));
    }

    #[test]
    fn classes_follow_the_paths() {
        assert_eq!(classify(&Method::POST, "/auth/login"), Some(RateClass::Auth));
        assert_eq!(classify(&Method::PUT, "/users/me"), Some(RateClass::Profile));
        assert_eq!(classify(&Method::GET, "/customers"), Some(RateClass::Read));
        assert_eq!(classify(&Method::DELETE, "/customers/x"), Some(RateClass::Write));
        assert_eq!(classify(&Method::GET, "/health"), None);
        assert_eq!(classify(&Method::POST, "/billing/webhooks/stripe"), None);
    }
}
