//! Rate limits as clients see them: per-class buckets keyed by user or IP, headers on every limited
//! response, `429 rate_limited` with `Retry-After` once a bucket is empty.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

#[tokio::test]
async fn the_sixth_sign_in_a_minute_is_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.core.rate_limit.mode = portal_core::config::RateLimitMode::On).await;
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
        c.core.rate_limit.mode = portal_core::config::RateLimitMode::On;
        c.core.rate_limit.auth_per_minute = 4;
        c.core.rate_limit.profile_per_minute = 2;
    })
    .await;
    let first = app.register_and_login("one@example.com", "correct horse battery").await;
    let token = first["access_token"].as_str().unwrap().to_string();
    // The IP's auth bucket (4) is now spent but for one by register, verify-email and login.
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

/// A portal behind a proxy on loopback, so each request can come from the client IP the test names.
async fn behind_proxy() -> TestApp {
    TestApp::spawn_with(|c| {
        c.core.rate_limit.mode = portal_core::config::RateLimitMode::On;
        c.core.rate_limit.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.core.rate_limit.write_per_minute = 100;
    })
    .await
}

/// `POST path` with `body`, from client `ip`, with `token` as bearer when given.
async fn post_from(app: &TestApp, ip: &str, path: &str, token: Option<&str>, body: serde_json::Value) -> u16 {
    let mut req = app.request(Method::POST, path).header("x-forwarded-for", ip).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    app.send(req).await.status.as_u16()
}

#[tokio::test]
async fn signed_in_accounts_buy_no_extra_guesses_on_the_credential_routes() {
    let app = behind_proxy().await;
    let login = |ip: &'static str, email: &'static str, password: &'static str| {
        let req = app.request(Method::POST, "/auth/login").header("x-forwarded-for", ip);
        let app = &app;
        async move { app.send(req.json(&json!({"email": email, "password": password}))).await.json() }
    };
    let admin = login("10.0.0.1", ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"].as_str().unwrap().to_string();
    let body = json!({"name": "N", "company_name": "Guess Co", "billing_email": "ap@guess.example.com",
        "address": {"street": "1 St", "city": "Berlin", "country": "DE"}});
    let customer =
        app.call(Method::POST, "/customers", &admin, Some(body)).await.json()["id"].as_str().unwrap().to_string();
    // Four accounts, each signed in from an IP of its own.
    let mut tokens = Vec::new();
    for (i, email) in ["g1@guess.example.com", "g2@guess.example.com", "g3@guess.example.com", "g4@guess.example.com"]
        .into_iter()
        .enumerate()
    {
        let body = json!({"email": email, "name": "Guesser", "password": "correct horse battery"});
        let r = app.call(Method::POST, &format!("/customers/{customer}/users"), &admin, Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let ip: &'static str = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"][i];
        tokens.push(login(ip, email, "correct horse battery").await["access_token"].as_str().unwrap().to_string());
    }
    // From one IP, every token's guesses at a victim's code share the IP's five a minute.
    let mut answered = 0;
    for token in &tokens {
        for _ in 0..5 {
            let body = json!({"email": "victim@guess.example.com", "code": "123456"});
            match post_from(&app, "10.9.9.9", "/auth/verify-code", Some(token), body).await {
                429 => {}
                401 => answered += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(answered, 5, "guesses answered from one IP with {} tokens", tokens.len());
    // Every credential route is held to it too, token or not.
    for path in ["/auth/login", "/auth/register", "/auth/request-code", "/auth/verify-2fa", "/auth/password-reset"] {
        assert_eq!(post_from(&app, "10.9.9.9", path, Some(&tokens[0]), json!({})).await, 429, "{path}");
    }
}

#[tokio::test]
async fn one_account_takes_five_guesses_a_minute_from_any_number_of_ips() {
    let app = behind_proxy().await;
    let mut answered = 0;
    for i in 0..20 {
        let body = json!({"email": ADMIN_EMAIL, "password": format!("wrong password {i}")});
        match post_from(&app, &format!("10.1.0.{i}"), "/auth/login", None, body).await {
            429 => {}
            401 => answered += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(answered, 5);
    // The same holds for an address nobody has (the limit is no account oracle), and for codes by phone.
    for (path, body) in [
        ("/auth/login", json!({"email": "ghost@guess.example.com", "password": "wrong password"})),
        ("/auth/verify-code", json!({"phone": "+4915100000000", "code": "123456"})),
    ] {
        let mut answered = 0;
        for i in 0..20 {
            if post_from(&app, &format!("10.2.0.{i}"), path, None, body.clone()).await != 429 {
                answered += 1;
            }
        }
        assert_eq!(answered, 5, "{path}");
    }
    // Another account is not held back by them.
    let body = json!({"email": "someone-else@guess.example.com", "password": "wrong password"});
    assert_eq!(post_from(&app, "10.3.0.1", "/auth/login", None, body).await, 401);
}
