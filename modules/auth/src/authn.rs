//! Checks the credentials of every request once (the app's `admit` layer calls this through core's
//! `Authenticator` trait):
//! a bearer access JWT whose session is still live, or the session cookie, for which unsafe methods
//! must also carry `X-CSRF-Token` equal to the `portal_csrf` value bound to the session.

use poem::http::{header, Method};
use poem::Request;
use portal_core::auth::{Credential, SESSION_COOKIE};
use portal_core::{Authenticator, Error, Principal, Result, Timestamp};
use subtle::ConstantTimeEq;

use crate::model::Holder;
use crate::service::AuthService;
use crate::tokens::sha256;
use crate::{sessions, users};

/// The CSRF cookie and header.
pub const CSRF_COOKIE: &str = "portal_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Activity is recorded at most this often per cookie session (the idle timeout needs no finer grain).
const TOUCH_EVERY_SECS: i64 = 60;

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A cross-site write is refused even before the CSRF token is looked at, when the browser tells us.
fn origin_matches_host(req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    origin.split_once("://").map(|(_, rest)| rest) == Some(host)
}

#[async_trait::async_trait]
impl Authenticator for AuthService {
    async fn authenticate(&self, req: &Request) -> Result<Option<Principal>> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            return self.bearer(value.to_str().unwrap_or_default()).await.map(Some);
        }
        match cookie(req, SESSION_COOKIE) {
            Some(token) => self.session_cookie(req, token.to_string()).await.map(Some),
            None => Ok(None),
        }
    }
}

impl AuthService {
    async fn bearer(&self, header_value: &str) -> Result<Principal> {
        let token = header_value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Error::unauthorized("use `Authorization: Bearer <access token>`"))?;
        let bearer = self.keys().bearer(token)?;
        let session = self.session(bearer.session_id).await?;
        match session {
            Some(s) if s.user_id == bearer.user_id && self.policy().is_live(&s, Timestamp::now()) => {
                // The session says who this is; the token's own role and customer claims are not trusted,
                // so a leaked signing key cannot make anyone an admin.
                let holder = match s.holder {
                    Some(holder) => holder,
                    None => self.holder_of(s.user_id)?,
                };
                Ok(Principal {
                    user_id: bearer.user_id,
                    session_id: bearer.session_id,
                    role: holder.role,
                    customer_id: holder.customer_id,
                    credential: Credential::Bearer,
                })
            }
            _ => Err(Error::unauthorized("the session of this token has ended; sign in again")),
        }
    }

    /// The role and customer of a session opened before sessions recorded them.
    fn holder_of(&self, user: portal_core::ids::UserId) -> Result<Holder> {
        let user = self.store().read_blocking(|tx| users::get(tx, user))?;
        let user = user.ok_or_else(|| Error::unauthorized("the session of this token has ended; sign in again"))?;
        Ok(Holder { role: user.role, customer_id: user.customer_id })
    }

    async fn session_cookie(&self, req: &Request, token: String) -> Result<Principal> {
        let found = self.store().read_blocking(|tx| match sessions::by_cookie(tx, &token)? {
            Some(session) => Ok(users::get(tx, session.user_id)?.map(|user| (session, user))),
            None => Ok(None),
        })?;
        let now = Timestamp::now();
        let (session, user) = found
            .filter(|(s, u)| self.policy().is_live(s, now) && !u.disabled)
            .ok_or_else(|| Error::unauthorized("the session has ended; sign in again"))?;
        if is_unsafe(req.method()) {
            if !origin_matches_host(req) {
                return Err(Error::forbidden("cross-origin request refused"));
            }
            let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let cookie_value = cookie(req, CSRF_COOKIE).unwrap_or_default();
            let bound = bool::from(sha256(header).ct_eq(&session.csrf_hash));
            let echoed = bool::from(header.as_bytes().ct_eq(cookie_value.as_bytes()));
            if header.is_empty() || !bound || !echoed {
                return Err(Error::forbidden(
                    "missing or wrong X-CSRF-Token: cookie-authenticated writes must echo the portal_csrf cookie",
                ));
            }
        }
        if session.last_seen.plus_secs(TOUCH_EVERY_SECS) < now {
            let sid = session.id;
            let store = self.store().clone();
            tokio::spawn(async move {
                if let Err(e) = store.write(move |tx| sessions::touch(tx, sid, Timestamp::now())).await {
                    tracing::warn!(error = %e, "could not record session activity");
                }
            });
        }
        Ok(Principal {
            user_id: user.id,
            session_id: session.id,
            role: user.role,
            customer_id: user.customer_id,
            credential: Credential::Cookie,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_from_any_cookie_header() {
        let req = Request::builder()
            .header(header::COOKIE, "a=1; portal_session=abc")
            .header(header::COOKIE, "portal_csrf=\"xyz\"")
            .finish();
        assert_eq!(cookie(&req, "portal_session"), Some("abc"));
        assert_eq!(cookie(&req, "portal_csrf"), Some("xyz"));
        assert_eq!(cookie(&req, "missing"), None);
    }

    #[test]
    fn origin_must_match_host_when_sent() {
        let same = Request::builder().header(header::HOST, "h:1").header(header::ORIGIN, "http://h:1").finish();
        let cross = Request::builder().header(header::HOST, "h:1").header(header::ORIGIN, "http://evil").finish();
        let none = Request::builder().header(header::HOST, "h:1").finish();
        assert!(origin_matches_host(&same));
        assert!(!origin_matches_host(&cross));
        assert!(origin_matches_host(&none));
    }
}
