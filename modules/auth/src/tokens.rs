//! Opaque tokens (random, stored only as SHA-256) and the access JWT: HS256 only, `iss`/`aud` `portal`,
//! 15 minutes, carrying the user, its session, role and customer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portal_core::ids::{CustomerId, SessionId, UserId};
use portal_core::{Error, Result, Role, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::verified_tokens::Bearer;
use crate::verified_tokens::VerifiedTokens;

/// Lifetime of an access token.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const ISSUER: &str = "portal";
pub const AUDIENCE: &str = "portal";

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub sid: SessionId,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<CustomerId>,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Signing and verification keys, decoded once.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: VerifiedTokens,
    /// Keys the MAC of short one-time codes, so a stolen store does not give them away by brute force.
    code_key: Vec<u8>,
}

impl Keys {
    pub fn new(jwt_secret: &[u8], code_key: Vec<u8>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            verified: VerifiedTokens::default(),
            code_key,
        }
    }

    /// A signed access token for `session` and its lifetime in seconds.
    pub fn issue(
        &self,
        user: UserId,
        session: SessionId,
        role: Role,
        customer: Option<CustomerId>,
    ) -> Result<(String, i64)> {
        let iat = Timestamp::now().unix_secs();
        let claims = Claims {
            sub: user,
            sid: session,
            role,
            cid: customer,
            iat,
            exp: iat + ACCESS_TTL_SECS,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::internal(format!("signing an access token: {e}")))?;
        Ok((token, ACCESS_TTL_SECS))
    }

    /// The claims of a valid token; any failure (signature, algorithm, issuer, audience, expiry) is a 401.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Error::unauthorized("invalid or expired access token"))
    }

    /// Who a valid token's bearer is, as [`verify`](Self::verify) would say, remembering verified tokens
    /// (see [`VerifiedTokens`]).
    pub fn bearer(&self, token: &str) -> Result<Bearer> {
        let now = Timestamp::now().unix_secs();
        if let Some(bearer) = self.verified.get(token, now) {
            return Ok(bearer);
        }
        let bearer = Bearer::from(&self.verify(token)?);
        self.verified.insert(token, bearer, now);
        Ok(bearer)
    }

    /// The keyed MAC of a one-time code for `user`.
    pub fn code_mac(&self, user: UserId, code: &str) -> Result<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.code_key).map_err(Error::internal)?;
        mac.update(user.0.as_bytes());
        mac.update(code.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    /// The stand-in id of an address or phone number without an account: the same for the same
    /// address, and unguessable without the key, so wrong codes for it are counted as for an account.
    pub fn stranger_id(&self, account: &str) -> Result<UserId> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.code_key).map_err(Error::internal)?;
        mac.update(b"stranger\0");
        mac.update(account.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Ok(UserId(uuid::Uuid::from_bytes(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&[7u8; 32], vec![9u8; 32])
    }

    #[test]
    fn a_stranger_keeps_its_stand_in_id_and_nobody_without_the_key_can_compute_it() {
        let k = keys();
        let id = k.stranger_id("nobody@example.com").unwrap();
        assert_eq!(k.stranger_id("nobody@example.com").unwrap(), id);
        assert_ne!(k.stranger_id("somebody@example.com").unwrap(), id);
        assert_ne!(Keys::new(&[7u8; 32], vec![1u8; 32]).stranger_id("nobody@example.com").unwrap(), id);
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_claims() {
        let k = keys();
        let (user, sid, cid) = (UserId::generate(), SessionId::generate(), CustomerId::generate());
        let (token, ttl) = k.issue(user, sid, Role::Customer, Some(cid)).unwrap();
        assert_eq!(ttl, 900);
        let claims = k.verify(&token).unwrap();
        assert_eq!((claims.sub, claims.sid, claims.cid, claims.role), (user, sid, Some(cid), Role::Customer));
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn foreign_keys_and_the_none_algorithm_are_refused() {
        let k = keys();
        let other = Keys::new(&[8u8; 32], vec![]);
        let (token, _) = other.issue(UserId::generate(), SessionId::generate(), Role::Admin, None).unwrap();
        assert!(k.verify(&token).is_err());
        // An unsigned token claiming alg "none".
        let (good, _) = k.issue(UserId::generate(), SessionId::generate(), Role::Admin, None).unwrap();
        let payload = good.split('.').nth(1).unwrap();
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#), payload);
        assert!(k.verify(&none).is_err());
        assert!(k.bearer(&none).is_err());
    }

    #[test]
    fn bearer_answers_like_verify_for_a_remembered_token_and_refuses_a_tampered_one() {
        let k = keys();
        let (user, sid, cid) = (UserId::generate(), SessionId::generate(), CustomerId::generate());
        let (token, _) = k.issue(user, sid, Role::Customer, Some(cid)).unwrap();
        let first = k.bearer(&token).unwrap();
        let again = k.bearer(&token).unwrap();
        assert_eq!(first, again);
        assert_eq!(
            (again.user_id, again.session_id, again.role, again.customer_id),
            (user, sid, Role::Customer, Some(cid))
        );
        assert_eq!(again.expires, k.verify(&token).unwrap().exp);
        // The same claims under a changed signature are not the remembered token.
        let at = token.len() - 10;
        let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        assert!(k.bearer(&forged).is_err());
    }
}
