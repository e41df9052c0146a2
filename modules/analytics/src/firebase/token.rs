//! OAuth access tokens for the service account: an RS256-signed JWT exchanged at the token endpoint
//! (the JWT bearer grant), cached until a minute before it expires, and dropped when Google answers 401
//! so the next call fetches a new one. The token is a `Secret`, so it never shows in logs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, Header};
use portal_core::config::Secret;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::credentials::ServiceAccount;
use super::http::{self, Failure};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Reports need analytics.readonly; finding a project's GA4 property needs firebase.readonly.
pub(crate) const SCOPES: &str =
    "https://www.googleapis.com/auth/analytics.readonly https://www.googleapis.com/auth/firebase.readonly";
/// Google accepts assertions valid for at most an hour.
const ASSERTION_SECS: i64 = 3600;
/// A token is replaced this long before it expires.
const REFRESH_EARLY: Duration = Duration::from_secs(60);

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    refresh_at: Instant,
}

pub(crate) struct TokenSource {
    account: Arc<ServiceAccount>,
    /// Where the grant is posted: `FIREBASE_TOKEN_URL`, else the key file's `token_uri`.
    token_url: String,
    retries: u32,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub fn new(account: ServiceAccount, token_url: Option<String>, retries: u32) -> Self {
        let token_url = token_url.unwrap_or_else(|| account.token_uri.clone());
        Self { account: Arc::new(account), token_url, retries, cached: Mutex::new(None) }
    }

    /// A valid access token, fetched only when the cached one is about to expire. Concurrent callers wait
    /// for one fetch instead of each starting their own.
    pub async fn get(&self, client: &reqwest::Client) -> Result<Secret, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.fetch(client).await?;
        *cached = Some(fresh.clone());
        Ok(fresh.token)
    }

    /// Drops `rejected` (Google no longer accepts it) unless a concurrent call already replaced it, so
    /// calls that fail together fetch one new token, not one each.
    pub async fn forget(&self, rejected: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| &c.token == rejected) {
            *cached = None;
        }
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Cached, Failure> {
        let account = Arc::clone(&self.account);
        // RSA signing is CPU work: keep it off the reactor.
        let assertion = tokio::task::spawn_blocking(move || sign(&account))
            .await
            .map_err(|e| Failure::new("CREDENTIALS", e.to_string(), false))??;
        let form = [("grant_type", GRANT_TYPE), ("assertion", assertion.as_str())];
        let answer = http::send(self.retries, || client.post(&self.token_url).form(&form)).await?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Failure::new("INVALID_RESPONSE", "the token answer has no access_token", false))?;
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3600));
        Ok(Cached { token: Secret::new(token), refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_EARLY) })
    }
}

fn sign(account: &ServiceAccount) -> Result<String, Failure> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        iss: &account.client_email,
        scope: SCOPES,
        aud: &account.token_uri,
        iat: now,
        exp: now + ASSERTION_SECS,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(account.key_id.clone());
    jsonwebtoken::encode(&header, &claims, &account.key).map_err(|e| Failure::new("CREDENTIALS", e.to_string(), false))
}
