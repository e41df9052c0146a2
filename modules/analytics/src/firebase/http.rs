//! One call to a Google API. The client carries the timeouts; 408, 429, 5xx and network failures are
//! retried a bounded number of times with exponential backoff (longer when Google sends `Retry-After`);
//! Google's error body (`{"error":{"code","message","status"}}`, or OAuth's `{"error",
//! "error_description"}`) becomes a `Failure`, and every failure reaches clients as 503
//! `upstream_unavailable` naming Google's status, never as a 500.

use std::time::Duration;

use portal_core::Error;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// Why a call to Google did not give an answer.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub http_status: Option<u16>,
    /// Google's status (`RESOURCE_EXHAUSTED`, `invalid_grant`, …) or what went wrong on the way.
    pub status: String,
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(status: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self { http_status: None, status: status.into(), message: message.into(), retryable, retry_after: None }
    }

    pub fn is_unauthorized(&self) -> bool {
        self.http_status == Some(401)
    }

    /// The client-facing error; `what` (the call) and Google's message go to the log only.
    pub fn into_error(self, what: &str) -> Error {
        let shown = if self.retryable {
            format!("Google Analytics is unavailable right now ({}); try again later", self.status)
        } else {
            format!("Google Analytics refused the request ({})", self.status)
        };
        let http = self.http_status.map_or_else(|| "no answer".to_string(), |s| format!("HTTP {s}"));
        Error::upstream(shown, format!("{what}: {http} {}: {}", self.status, self.message))
            .with_detail("upstream_status", self.status)
    }
}

const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(5);

fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = BASE_BACKOFF.saturating_mul(1 << attempt.min(5));
    let jitter = Duration::from_millis(rand::random::<u64>() % 100);
    (exponential + jitter).max(retry_after.unwrap_or_default()).min(MAX_WAIT)
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Google's status and message from an error body.
fn describe(status: StatusCode, body: &str) -> (String, String) {
    let fallback = || status.canonical_reason().unwrap_or("ERROR").to_ascii_uppercase().replace(' ', "_");
    let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(body) else {
        return (fallback(), String::new());
    };
    match doc.get("error") {
        Some(Value::Object(e)) => (
            e.get("status").and_then(Value::as_str).map_or_else(fallback, str::to_string),
            e.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        ),
        Some(Value::String(code)) => {
            (code.clone(), doc.get("error_description").and_then(Value::as_str).unwrap_or_default().to_string())
        }
        _ => (fallback(), String::new()),
    }
}

async fn send_once(request: RequestBuilder) -> Result<Value, Failure> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Err(Failure::new("TIMEOUT", e.to_string(), true)),
        Err(e) => return Err(Failure::new("UNREACHABLE", e.to_string(), true)),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.map_err(|e| Failure::new("UNREADABLE", e.to_string(), true))?;
    if status.is_success() {
        return serde_json::from_str(&body).map_err(|e| Failure::new("INVALID_RESPONSE", e.to_string(), false));
    }
    let (google_status, message) = describe(status, &body);
    Err(Failure {
        http_status: Some(status.as_u16()),
        status: google_status,
        message,
        retryable: retryable(status),
        retry_after,
    })
}

/// Sends the request `build` makes, retrying up to `retries` times.
pub(crate) async fn send(retries: u32, build: impl Fn() -> RequestBuilder) -> Result<Value, Failure> {
    let mut attempt = 0;
    loop {
        match send_once(build()).await {
            Err(f) if f.retryable && attempt < retries => {
                tracing::warn!(status = %f.status, http = ?f.http_status, attempt, "Google API call failed; retrying");
                tokio::time::sleep(backoff(attempt, f.retry_after)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_of_googles_error_bodies() {
        let api = r#"{"error":{"code":429,"message":"Exhausted property tokens","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            describe(StatusCode::TOO_MANY_REQUESTS, api),
            ("RESOURCE_EXHAUSTED".into(), "Exhausted property tokens".into())
        );
        let oauth = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(describe(StatusCode::BAD_REQUEST, oauth), ("invalid_grant".into(), "Invalid JWT Signature.".into()));
        assert_eq!(describe(StatusCode::BAD_GATEWAY, "<html>"), ("BAD_GATEWAY".into(), String::new()));
    }

    #[test]
    fn failures_become_upstream_errors_naming_googles_status() {
        let f = Failure { http_status: Some(500), ..Failure::new("INTERNAL", "boom", true) };
        let e = f.into_error("runReport");
        assert_eq!(e.code(), portal_core::ErrorCode::UpstreamUnavailable);
        assert_eq!(e.details().unwrap()["upstream_status"], "INTERNAL");
        assert!(!e.message().contains("boom"));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(0, None) < Duration::from_millis(300));
        assert!(backoff(2, None) >= Duration::from_millis(800));
        assert_eq!(backoff(9, Some(Duration::from_secs(60))), MAX_WAIT);
    }
}
