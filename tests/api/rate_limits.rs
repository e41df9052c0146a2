//! Rate limits as clients see them: per-class buckets keyed by user or IP, headers on every limited
//! response, `429 rate_limited` with `Retry-After` once a bucket is empty.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

#[tokio::test]
async fn the_sixth_sign_in_a_minute_is_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.rate_limit.mode = portal_core::config::RateLimitMode::On).await;
    for attempt in 0..5u32 {
        let r = app.post("/auth/login", json!({"email": ADMIN_EMAIL, "password": "wrong password 123"})).await;
        r.assert_error(401, "unauthorized");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((4 - attempt).to_string().as_str()));
    }
    // Even the right password waits: the bucket is per client, not per outcome.
    let r = app.post("/auth/login", json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).await;
    r.assert_error(429, "rate_limited");
    let retry_after: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));

    // Health and the API document are never limited.
    for _ in 0..10 {
        let health = app.get("/health").await;
        assert_eq!(health.status, 200);
        assert!(health.header("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn signed_in_callers_have_their_own_buckets_per_class() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit.mode = portal_core::config::RateLimitMode::On;
        c.rate_limit.auth_per_minute = 3;
        c.rate_limit.profile_per_minute = 2;
    })
    .await;
    let first = app.register_and_login("one@example.com", "correct horse battery").await;
    let token = first["access_token"].as_str().unwrap().to_string();
    // The IP's auth bucket (3) is now spent by register + login.
    let r = app.post("/auth/login", json!({"email": "one@example.com", "password": "correct horse battery"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.post("/auth/login", json!({"email": "one@example.com", "password": "correct horse battery"})).await;
    r.assert_error(429, "rate_limited");

    // The user's profile bucket is its own: 2 reads, then 429.
    for remaining in ["1", "0"] {
        let r = app.call(Method::GET, "/users/me", &token, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
    }
    let r = app.call(Method::GET, "/users/me", &token, None).await;
    let error = r.assert_error(429, "rate_limited");
    assert!(error["message"].as_str().unwrap().contains("too many"), "{error}");
    assert!(r.header("retry-after").is_some());
}
