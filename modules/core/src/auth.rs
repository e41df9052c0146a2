//! Who is calling (`Principal`) and what they may touch. Every handler asks these functions; no handler
//! compares ids by hand. Objects outside the caller's customer answer 404 exactly as if they did not
//! exist, admin-only operations answer 403 to customer users.
//!
//! The credentials themselves (JWT, session cookie, CSRF) are checked by the auth module, which installs
//! an [`Authenticator`]. The app's middleware calls it through [`identify`] once per request, which
//! leaves the outcome in the request extensions: a [`Principal`] when the credentials are good, an
//! [`AuthFailure`] when they were presented but are bad, nothing when none were presented. The rate
//! limiter keys on that principal; the [`Auth`] extractor turns the outcome into the handler's argument
//! (or a 401/403) and documents both security schemes in the OpenAPI document.

use std::sync::Arc;

use poem::Request;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, Enum, ExtractParamOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::{CustomerId, SessionId, UserId};

/// Name of the bearer JWT scheme in the OpenAPI document.
pub const BEARER_SCHEME: &str = "bearerAuth";
/// Name of the session-cookie scheme in the OpenAPI document.
pub const COOKIE_SCHEME: &str = "sessionCookie";
/// The session cookie.
pub const SESSION_COOKIE: &str = "portal_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Customer,
}

/// How the caller presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub role: Role,
    /// The customer a customer user belongs to (none for admins and for users not yet attached).
    pub customer_id: Option<CustomerId>,
    pub credential: Credential,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Admin-only operations: 403 for everyone else.
    pub fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::forbidden("this operation is for admins only"))
        }
    }

    /// Objects owned by `owner` (a customer, its settings, users, proposals, invoices, analytics): admins
    /// and that customer's users may; anyone else gets the same 404 as for a missing `what`.
    pub fn authorize_customer(&self, owner: CustomerId, what: &str) -> Result<()> {
        if self.is_admin() || self.customer_id == Some(owner) {
            Ok(())
        } else {
            Err(Error::not_found(what))
        }
    }

    /// The caller's own customer, for the `/me`-style operations that only customer users call.
    pub fn own_customer(&self) -> Result<CustomerId> {
        match (self.role, self.customer_id) {
            (Role::Customer, Some(id)) => Ok(id),
            (Role::Customer, None) => Err(Error::not_found("customer")),
            (Role::Admin, _) => Err(Error::forbidden("this operation is for customer users; admins name the customer")),
        }
    }
}

/// Checks a request's credentials. Implemented by the auth module, called by the app's middleware.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// `Ok(None)` when the request presents no credentials at all.
    async fn authenticate(&self, req: &Request) -> Result<Option<Principal>>;
}

/// The shared authenticator.
pub type SharedAuthenticator = Arc<dyn Authenticator>;

/// Credentials were presented but refused (bad, expired or revoked token; missing CSRF token).
#[derive(Debug, Clone)]
pub struct AuthFailure(pub Error);

/// Resolves the caller once per request (see the module docs) and returns the request's audit actor.
pub async fn identify(req: &mut Request, authenticator: &dyn Authenticator) -> crate::audit::Actor {
    match authenticator.authenticate(req).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
        }
        Ok(None) => {}
        Err(e) => {
            req.extensions_mut().insert(AuthFailure(e));
        }
    }
    crate::audit::Actor::of(req.extensions().get::<Principal>(), crate::audit::RequestId::current())
}

/// Extractor for protected operations: the caller's `Principal`, from a bearer JWT or the session cookie.
pub struct Auth(pub Principal);

fn register_schemes(registry: &mut Registry) {
    registry.create_security_scheme(
        BEARER_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some("Access token from `/auth/login`: `Authorization: Bearer <JWT>`."),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
    registry.create_security_scheme(
        COOKIE_SCHEME,
        MetaSecurityScheme {
            ty: "apiKey",
            description: Some(
                "Session cookie set by `/auth/login`; unsafe methods also need `X-CSRF-Token` equal to the `portal_csrf` cookie.",
            ),
            name: Some(SESSION_COOKIE),
            key_in: Some("cookie"),
            scheme: None,
            bearer_format: None,
            flows: None,
            openid_connect_url: None,
        },
    );
}

impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_schemes(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, COOKIE_SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Auth(signed_in(req)?))
    }
}

/// The caller resolved by [`identify`], or the 401 its credentials earned.
fn signed_in(req: &Request) -> Result<Principal> {
    if let Some(principal) = req.extensions().get::<Principal>() {
        return Ok(principal.clone());
    }
    match req.extensions().get::<AuthFailure>() {
        Some(AuthFailure(e)) => Err(e.clone()),
        None => Err(Error::unauthorized("sign in first: send a bearer token or the session cookie")),
    }
}

/// Extractor for admin-only operations: 401 without good credentials, 403 for everyone but admins. Put
/// first among an operation's arguments, it refuses before any parameter or body is looked at, so a
/// caller who may not use the operation never learns its schema.
pub struct Admin(pub Principal);

impl<'a> ApiExtractor<'a> for Admin {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_schemes(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, COOKIE_SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let principal = signed_in(req)?;
        principal.require_admin()?;
        Ok(Admin(principal))
    }
}

/// Extractor for operations that work signed in or not (the caller, if its credentials are good).
pub struct MaybeAuth(pub Option<Principal>);

impl<'a> ApiExtractor<'a> for MaybeAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_schemes(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, COOKIE_SCHEME]
    }

    fn has_security_fallback() -> bool {
        true
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(MaybeAuth(req.extensions().get::<Principal>().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn principal(role: Role, customer: Option<CustomerId>) -> Principal {
        Principal {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            role,
            customer_id: customer,
            credential: Credential::Bearer,
        }
    }

    #[test]
    fn customer_users_see_only_their_customer() {
        let a = CustomerId::generate();
        let b = CustomerId::generate();
        let user = principal(Role::Customer, Some(a));
        assert!(user.authorize_customer(a, "invoice").is_ok());
        let err = user.authorize_customer(b, "invoice").unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound);
        assert_eq!(err.message(), "invoice not found");
        assert_eq!(user.require_admin().unwrap_err().code(), ErrorCode::Forbidden);
        assert_eq!(user.own_customer().unwrap(), a);
    }

    #[test]
    fn admins_see_everything_but_have_no_own_customer() {
        let admin = principal(Role::Admin, None);
        assert!(admin.authorize_customer(CustomerId::generate(), "customer").is_ok());
        assert!(admin.require_admin().is_ok());
        assert_eq!(admin.own_customer().unwrap_err().code(), ErrorCode::Forbidden);
    }

    #[test]
    fn unattached_users_see_nothing() {
        let loner = principal(Role::Customer, None);
        assert_eq!(
            loner.authorize_customer(CustomerId::generate(), "customer").unwrap_err().code(),
            ErrorCode::NotFound
        );
        assert_eq!(loner.own_customer().unwrap_err().code(), ErrorCode::NotFound);
    }
}
