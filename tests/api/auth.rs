//! Identity end to end: registration, sign-in, tokens, cookies and CSRF, refresh rotation with reuse
//! detection, logout, TOTP 2FA, password reset and one-time codes through a real SMTP server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{token_in, TestApp, JWT_SECRET, MAIL_WAIT};

const PASSWORD: &str = "correct horse battery";

fn token(login: &Value) -> String {
    login["access_token"].as_str().expect("access_token").to_string()
}

#[derive(serde::Deserialize, serde::Serialize, Debug)]
struct Claims {
    sub: String,
    sid: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cid: Option<String>,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
}

fn validation(aud: &str) -> Validation {
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[aud]);
    v.set_issuer(&["portal"]);
    v
}

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let app = TestApp::spawn().await;
    let r =
        app.post("/auth/register", json!({"email": "Jane@Example.com", "password": PASSWORD, "name": "Jane"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json(), json!({"email": "jane@example.com", "expires_in": 86_400}));
    // No account until the mailed link is followed.
    let mail = app.wait_for_outbox_mail("jane@example.com", "Confirm your Portal account").await;
    app.post("/auth/login", json!({"email": "jane@example.com", "password": PASSWORD}))
        .await
        .assert_error(401, "unauthorized");
    let user = app.confirm_registration(&mail).await;
    assert!(mail.contains(&format!("/verify-email?token={}", token_in(&mail, "Confirmation token: "))), "{mail}");
    assert_eq!(user["email"], "jane@example.com");
    assert_eq!(user["name"], "Jane");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["two_factor_enabled"], false);
    assert!(user.get("customer_id").is_none());
    assert!(!user.to_string().contains("argon2") && !user.to_string().contains("password"), "secrets in {user}");

    let r = app.post("/auth/login", json!({"email": "jane@example.com", "password": PASSWORD})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let cookies: Vec<&str> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session_cookie = cookies.iter().find(|c| c.starts_with("portal_session=")).expect("session cookie");
    assert!(
        session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Lax")
            && session_cookie.contains("Path=/")
    );
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("portal_csrf=")).expect("csrf cookie");
    assert!(!csrf_cookie.contains("HttpOnly"), "the CSRF cookie must be readable by the page");
    let login = r.json();
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 900);
    assert_eq!(login["user"]["id"], user["id"]);
    let access = token(&login);

    // The access token is a standard JWT with the contract's claims.
    let decoded = jsonwebtoken::decode::<Claims>(
        &access,
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation("portal"),
    )
    .expect("valid JWT");
    let claims = decoded.claims;
    assert_eq!(decoded.header.alg, Algorithm::HS256);
    assert_eq!(claims.sub, user["id"].as_str().unwrap());
    assert_eq!(claims.role, "customer");
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("portal", "portal"));
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(claims.cid.is_none());
    assert!(uuid::Uuid::parse_str(&claims.sid).is_ok());
    let wrong_aud =
        jsonwebtoken::decode::<Claims>(&access, &DecodingKey::from_secret(JWT_SECRET.as_bytes()), &validation("other"));
    assert!(wrong_aud.is_err(), "a wrong audience must fail validation");

    let me = app.call(Method::GET, "/users/me", &access, None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["email"], "jane@example.com");
    assert_eq!(me.header("cache-control"), Some("no-store"));

    // Refresh rotates both tokens.
    let r = app.post("/auth/refresh", json!({"refresh_token": login["refresh_token"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refreshed = r.json();
    assert_ne!(refreshed["refresh_token"], login["refresh_token"]);
    let access2 = token(&refreshed);
    assert_eq!(app.call(Method::GET, "/users/me", &access2, None).await.status, 200);

    // Logout ends the session: every token of it stops working at once.
    let r = app.call(Method::POST, "/auth/logout", &access2, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    app.call(Method::GET, "/users/me", &access2, None).await.assert_error(401, "unauthorized");
    app.call(Method::GET, "/users/me", &access, None).await.assert_error(401, "unauthorized");
    app.post("/auth/refresh", json!({"refresh_token": refreshed["refresh_token"]}))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_reused_refresh_token_ends_the_session() {
    let app = TestApp::spawn().await;
    let login = app.register_and_login("reuse@example.com", PASSWORD).await;
    let first = login["refresh_token"].clone();
    let r = app.post("/auth/refresh", json!({"refresh_token": first})).await;
    assert_eq!(r.status, 200);
    let rotated = r.json();
    // The old token again: theft assumed, the whole session ends.
    let again = app.post("/auth/refresh", json!({"refresh_token": first})).await;
    let error = again.assert_error(401, "unauthorized");
    assert!(error["message"].as_str().unwrap().contains("already used"), "{error}");
    app.call(Method::GET, "/users/me", &token(&rotated), None).await.assert_error(401, "unauthorized");
    app.post("/auth/refresh", json!({"refresh_token": rotated["refresh_token"]}))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn bad_credentials_and_bad_tokens_are_401_with_www_authenticate() {
    let app = TestApp::spawn().await;
    let login = app.register_and_login("bad@example.com", PASSWORD).await;

    let wrong_password =
        app.post("/auth/login", json!({"email": "bad@example.com", "password": "wrong horse battery"})).await;
    let unknown_user = app.post("/auth/login", json!({"email": "nobody@example.com", "password": PASSWORD})).await;
    let a = wrong_password.assert_error(401, "unauthorized");
    let b = unknown_user.assert_error(401, "unauthorized");
    assert_eq!(a, b, "wrong password and unknown email must look the same");

    let none = app.get("/users/me").await;
    none.assert_error(401, "unauthorized");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    app.call(Method::GET, "/users/me", "not-a-jwt", None).await.assert_error(401, "unauthorized");
    let basic = app.send(app.request(Method::GET, "/users/me").basic_auth("a", Some("b"))).await;
    basic.assert_error(401, "unauthorized");

    // Same key, but expired, or for another audience, or unsigned: all refused.
    let live = jsonwebtoken::decode::<Claims>(
        &token(&login),
        &DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation("portal"),
    )
    .unwrap()
    .claims;
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let expired = Claims { iat: now - 1000, exp: now - 100, ..clone_claims(&live) };
    let expired = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &key).unwrap();
    app.call(Method::GET, "/users/me", &expired, None).await.assert_error(401, "unauthorized");
    let other_aud = Claims { aud: "someone-else".into(), ..clone_claims(&live) };
    let other_aud = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &other_aud, &key).unwrap();
    app.call(Method::GET, "/users/me", &other_aud, None).await.assert_error(401, "unauthorized");
    let hs512 = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &clone_claims(&live), &key).unwrap();
    app.call(Method::GET, "/users/me", &hs512, None).await.assert_error(401, "unauthorized");
    let payload = token(&login).split('.').nth(1).unwrap().to_string();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    app.call(Method::GET, "/users/me", &unsigned, None).await.assert_error(401, "unauthorized");
    // The genuine token still works.
    assert_eq!(app.call(Method::GET, "/users/me", &token(&login), None).await.status, 200);

    // Signed with the real key (as whoever holds it could), on the user's live session, claiming to be an
    // admin of another customer: the session says who this is, and the claims change nothing.
    let forged = Claims { role: "admin".into(), cid: Some(uuid::Uuid::now_v7().to_string()), ..clone_claims(&live) };
    let forged = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &forged, &key).unwrap();
    app.call(Method::GET, "/customers", &forged, None).await.assert_error(403, "forbidden");
    app.call(Method::GET, "/audit", &forged, None).await.assert_error(403, "forbidden");
    let me = app.call(Method::GET, "/users/me", &forged, None).await.json();
    assert_eq!((me["role"].as_str(), me.get("customer_id")), (Some("customer"), None), "{me}");
}

fn clone_claims(c: &Claims) -> Claims {
    Claims {
        sub: c.sub.clone(),
        sid: c.sid.clone(),
        role: c.role.clone(),
        cid: c.cid.clone(),
        iat: c.iat,
        exp: c.exp,
        iss: c.iss.clone(),
        aud: c.aud.clone(),
    }
}

/// `name=value` of each cookie set by a response.
fn cookie_pairs(r: &crate::helpers::Reply) -> Vec<(String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_writes() {
    let app = TestApp::spawn().await;
    app.register_and_login("cookie@example.com", PASSWORD).await;
    let r = app.post("/auth/login", json!({"email": "cookie@example.com", "password": PASSWORD})).await;
    let cookies = cookie_pairs(&r);
    let get = |name: &str| cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let (session, csrf) = (get("portal_session"), get("portal_csrf"));
    let cookie_header = format!("portal_session={session}; portal_csrf={csrf}");

    let me = app.send(app.request(Method::GET, "/users/me").header("cookie", &cookie_header)).await;
    assert_eq!(me.status, 200, "reads need no CSRF token: {}", me.text);
    assert_eq!(me.json()["email"], "cookie@example.com");

    let update = json!({"name": "Cookie Monster"});
    let no_token = app.send(app.request(Method::PUT, "/users/me").header("cookie", &cookie_header).json(&update)).await;
    let error = no_token.assert_error(403, "forbidden");
    assert!(error["message"].as_str().unwrap().contains("CSRF"), "{error}");
    let wrong = app
        .send(
            app.request(Method::PUT, "/users/me")
                .header("cookie", &cookie_header)
                .header("x-csrf-token", "forged")
                .json(&update),
        )
        .await;
    wrong.assert_error(403, "forbidden");
    let cross_site = app
        .send(
            app.request(Method::PUT, "/users/me")
                .header("cookie", &cookie_header)
                .header("x-csrf-token", &csrf)
                .header("origin", "https://evil.example")
                .json(&update),
        )
        .await;
    cross_site.assert_error(403, "forbidden");
    let ok = app
        .send(
            app.request(Method::PUT, "/users/me")
                .header("cookie", &cookie_header)
                .header("x-csrf-token", &csrf)
                .json(&update),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["name"], "Cookie Monster");

    // Bearer requests need no CSRF token.
    let login = app.login("cookie@example.com", PASSWORD).await;
    let r = app.call(Method::PUT, "/users/me", &token(&login), Some(json!({"name": "Bearer"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Logout through the cookie clears it and ends that session.
    let out = app
        .send(app.request(Method::POST, "/auth/logout").header("cookie", &cookie_header).header("x-csrf-token", &csrf))
        .await;
    assert_eq!(out.status, 204, "{}", out.text);
    let after = app.send(app.request(Method::GET, "/users/me").header("cookie", &cookie_header)).await;
    after.assert_error(401, "unauthorized");
}

/// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), written independently of the portal's implementation.
fn totp_code(secret_base32: &str, unix_secs: u64) -> String {
    use hmac::{Hmac, Mac};
    let key = base32_decode(secret_base32);
    let counter = (unix_secs / 30).to_be_bytes();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter);
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary =
        u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:06}", binary % 1_000_000)
}

fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase()).expect("base32") as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// Seconds since the epoch, waiting out the last 3 seconds of a 30 s step so codes do not straddle it.
async fn stable_now() -> u64 {
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        if now % 30 < 27 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn two_factor_enrolment_challenge_replay_and_lockout() {
    let app = TestApp::spawn().await;
    let login = app.register_and_login("totp@example.com", PASSWORD).await;
    let access = token(&login);
    let status = app.call(Method::GET, "/auth/2fa-status", &access, None).await.json();
    assert_eq!(status, json!({"enabled": false}));

    // The password is asked again: none, or a wrong one, starts nothing.
    let r = app.call(Method::POST, "/auth/enable-2fa", &access, None).await;
    r.assert_error(415, "unsupported_media_type");
    let r =
        app.call(Method::POST, "/auth/enable-2fa", &access, Some(json!({"current_password": "not it at all"}))).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["current_password"].is_string());
    assert_eq!(app.call(Method::GET, "/auth/2fa-status", &access, None).await.json(), json!({"enabled": false}));
    let r = app.call(Method::POST, "/auth/enable-2fa", &access, Some(json!({"current_password": PASSWORD}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let enrolment = r.json();
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    assert!(enrolment["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Portal:totp%40example.com?"));
    assert!(enrolment["qr_code_png_base64"].as_str().unwrap().starts_with("iVBORw0KGgo"), "a PNG");
    // Not on until confirmed.
    assert_eq!(app.call(Method::GET, "/auth/2fa-status", &access, None).await.json()["enabled"], false);

    // A wrong code does not confirm; the previous step's code does (±1 step of skew).
    let r = app.call(Method::POST, "/auth/verify-2fa", &access, Some(json!({"code": "000000"}))).await;
    r.assert_error(401, "unauthorized");
    let now = stable_now().await;
    let r =
        app.call(Method::POST, "/auth/verify-2fa", &access, Some(json!({"code": totp_code(&secret, now - 30)}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let confirmed = r.json();
    assert_eq!(confirmed["enabled"], true);
    let recovery: Vec<String> =
        confirmed["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(recovery.len(), 10);
    let status = app.call(Method::GET, "/auth/2fa-status", &access, None).await.json();
    assert_eq!(status["enabled"], true);
    assert!(status["confirmed_at"].as_str().unwrap().ends_with('Z'));

    // Login now asks for the second factor and opens no session yet.
    let r = app.post("/auth/login", json!({"email": "totp@example.com", "password": PASSWORD})).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("set-cookie").is_none(), "no session before the second factor");
    let challenge = r.json();
    assert_eq!(challenge["two_factor_required"], true);
    assert!(challenge.get("access_token").is_none());
    let code = totp_code(&secret, stable_now().await);
    let r = app.post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let signed_in = r.json();
    assert_eq!(app.call(Method::GET, "/users/me", &token(&signed_in), None).await.json()["two_factor_enabled"], true);

    // The same code a second time is refused, even on a fresh challenge.
    let challenge = app.login("totp@example.com", PASSWORD).await;
    let r = app.post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": code})).await;
    r.assert_error(401, "unauthorized");
    // A recovery code works, once.
    let r = app
        .post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": recovery[0]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let challenge = app.login("totp@example.com", PASSWORD).await;
    let r = app
        .post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": recovery[0]}))
        .await;
    r.assert_error(401, "unauthorized");

    // Five wrong codes end the challenge: even a right one is refused afterwards.
    for _ in 0..4 {
        let r = app
            .post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": "111111"}))
            .await;
        r.assert_error(401, "unauthorized");
    }
    let r = app
        .post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": recovery[1]}))
        .await;
    let error = r.assert_error(401, "unauthorized");
    assert!(error["message"].as_str().unwrap().contains("sign in again"), "{error}");
}

#[tokio::test]
async fn password_reset_through_real_smtp_works_once_and_ends_sessions() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let login = app.register_and_login_via(&smtp, "reset@example.com", PASSWORD).await;

    let r = app.post("/auth/password-reset", json!({"email": "reset@example.com"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let unknown = app.post("/auth/password-reset", json!({"email": "ghost@example.com"})).await;
    assert_eq!(unknown.status, 202, "unknown emails get the same answer");

    let mail = smtp.wait_for_mail_with("reset@example.com", "Reset your Portal password", MAIL_WAIT).await;
    assert!(mail.subject.contains("Reset"), "{}", mail.subject);
    let reset_token =
        mail.body.lines().find_map(|l| l.strip_prefix("Reset token: ")).expect("token in the mail").trim().to_string();

    let weak =
        app.post("/auth/password-reset/confirm", json!({"token": reset_token, "new_password": "password123"})).await;
    let error = weak.assert_error(422, "validation_failed");
    assert!(error["details"]["new_password"].is_string());
    let new_password = "brand new battery staple";
    let r = app.post("/auth/password-reset/confirm", json!({"token": reset_token, "new_password": new_password})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Single use, and every old session is over.
    let again = app
        .post("/auth/password-reset/confirm", json!({"token": reset_token, "new_password": "another fine password"}))
        .await;
    let error = again.assert_error(422, "validation_failed");
    assert!(error["details"]["token"].is_string());
    app.call(Method::GET, "/users/me", &token(&login), None).await.assert_error(401, "unauthorized");
    app.post("/auth/login", json!({"email": "reset@example.com", "password": PASSWORD}))
        .await
        .assert_error(401, "unauthorized");
    app.login("reset@example.com", new_password).await;
    assert!(smtp.try_mail("ghost@example.com").is_none(), "no mail for unknown accounts");
}

#[tokio::test]
async fn one_time_code_by_email_signs_in_once() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    app.register_and_login_via(&smtp, "code@example.com", PASSWORD).await;

    let r = app.post("/auth/request-code", json!({"email": "code@example.com", "channel": "email"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let mail = smtp.wait_for_mail_with("code@example.com", "sign-in code", MAIL_WAIT).await;
    let code: String = mail
        .body
        .split_whitespace()
        .find(|w| w.len() == 7 && w.ends_with('.'))
        .map(|w| w[..6].to_string())
        .expect("code");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");

    let wrong = app.post("/auth/verify-code", json!({"email": "code@example.com", "code": "12345x"})).await;
    wrong.assert_error(401, "unauthorized");
    let r = app.post("/auth/verify-code", json!({"email": "code@example.com", "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let signed_in = r.json();
    assert_eq!(signed_in["user"]["email"], "code@example.com");
    assert_eq!(app.call(Method::GET, "/users/me", &token(&signed_in), None).await.status, 200);
    let again = app.post("/auth/verify-code", json!({"email": "code@example.com", "code": code})).await;
    again.assert_error(401, "unauthorized");

    let neither = app.post("/auth/request-code", json!({"channel": "email"})).await;
    neither.assert_error(422, "validation_failed");
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = TestApp::spawn().await;
    let r = app.post("/auth/register", json!({"email": "not-an-email", "password": "short", "name": " "})).await;
    let error = r.assert_error(422, "validation_failed");
    for field in ["email", "password", "name"] {
        assert!(error["details"][field].is_string(), "{field}: {error}");
    }
    let r = app
        .post("/auth/register", json!({"email": "x@example.com", "password": PASSWORD, "name": "X", "role": "admin"}))
        .await;
    r.assert_error(422, "validation_failed");
}

#[tokio::test]
async fn registering_a_taken_address_answers_as_for_a_new_one_and_tells_the_owner() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    app.register_and_login_via(&smtp, "taken@example.com", PASSWORD).await;

    let other_password = "a different long password";
    let taken = app
        .post("/auth/register", json!({"email": "TAKEN@example.com", "password": other_password, "name": "Y"}))
        .await;
    let fresh = app
        .post("/auth/register", json!({"email": "fresh@example.com", "password": other_password, "name": "Y"}))
        .await;
    assert_eq!((taken.status.as_u16(), fresh.status.as_u16()), (202, 202), "{} / {}", taken.text, fresh.text);
    assert_eq!(taken.json()["expires_in"], fresh.json()["expires_in"]);
    assert_eq!(taken.json()["email"], "taken@example.com");

    // The owner learns of it; no confirmation link exists for an address that has an account.
    let notice = smtp.wait_for_mail_with("taken@example.com", "You already have a Portal account", MAIL_WAIT).await;
    assert!(!notice.body.contains("token"), "{}", notice.body);
    smtp.wait_for_mail_with("fresh@example.com", "Confirm your Portal account", MAIL_WAIT).await;
    assert_eq!(
        mails_about(&smtp, "taken@example.com", "Confirm your Portal account"),
        1,
        "only the first registration"
    );
    // The account keeps its password and its name.
    app.post("/auth/login", json!({"email": "taken@example.com", "password": other_password}))
        .await
        .assert_error(401, "unauthorized");
    let login = app.login("taken@example.com", PASSWORD).await;
    assert_eq!(login["user"]["name"], "Test User");
}

#[tokio::test]
async fn a_confirmation_link_works_once_and_an_unconfirmed_address_blocks_no_invitation() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let admin = app.admin_token().await;

    // Confirmed once; the same link again is refused.
    app.post("/auth/register", json!({"email": "once@example.com", "password": PASSWORD, "name": "Once"})).await;
    let mail = smtp.wait_for_mail_with("once@example.com", "Confirm your Portal account", MAIL_WAIT).await;
    let user = app.confirm_registration(&mail.body).await;
    assert_eq!((user["email"].as_str(), user["role"].as_str()), (Some("once@example.com"), Some("customer")));
    let token = token_in(&mail.body, "Confirmation token: ");
    app.post("/auth/verify-email", json!({ "token": token })).await.assert_error(422, "validation_failed");
    app.post("/auth/verify-email", json!({"token": "made-up"})).await.assert_error(422, "validation_failed");

    // Someone registers an address they cannot read; the admin invites its real owner all the same.
    app.post("/auth/register", json!({"email": "squat@example.com", "password": PASSWORD, "name": "Squatter"})).await;
    let squat = smtp.wait_for_mail_with("squat@example.com", "Confirm your Portal account", MAIL_WAIT).await;
    let customer = app
        .call(
            Method::POST,
            "/customers",
            &admin,
            Some(json!({
                "name": "Ada", "company_name": "Acme", "billing_email": "ap@acme.example",
                "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
            })),
        )
        .await;
    assert_eq!(customer.status, 201, "{}", customer.text);
    let cid = customer.json()["id"].as_str().unwrap().to_string();
    let invited = app
        .call(
            Method::POST,
            &format!("/customers/{cid}/users"),
            &admin,
            Some(json!({"email": "squat@example.com", "name": "Real Owner"})),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text);
    // The pending registration can no longer take the address.
    let r = app.post("/auth/verify-email", json!({"token": token_in(&squat.body, "Confirmation token: ")})).await;
    r.assert_error(409, "conflict");
    app.post("/auth/login", json!({"email": "squat@example.com", "password": PASSWORD}))
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn closed_registration_is_403() {
    let app = TestApp::spawn_with(|c| c.auth.registration = portal_auth::Registration::Closed).await;
    let r = app.post("/auth/register", json!({"email": "x@example.com", "password": PASSWORD, "name": "X"})).await;
    r.assert_error(403, "forbidden");
}

/// What the SMS gateway received: the form fields and the Authorization header.
type GatewayLog = std::sync::Arc<std::sync::Mutex<Vec<(String, std::collections::HashMap<String, String>)>>>;

/// A local HTTP server answering Twilio's Messages API exactly as documented (201 with the message
/// resource; 400 with Twilio's error body for a number it refuses).
async fn start_sms_gateway() -> (String, GatewayLog) {
    use poem::web::{Data, Form, Path};
    use poem::{handler, http::StatusCode, EndpointExt, Request, Response, Route};
    use std::collections::HashMap;

    #[handler]
    fn messages(
        req: &Request,
        Path(sid): Path<String>,
        Form(form): Form<HashMap<String, String>>,
        log: Data<&GatewayLog>,
    ) -> Response {
        let auth = req.header("authorization").unwrap_or_default().to_string();
        log.0.lock().unwrap().push((auth, form.clone()));
        if form.get("To").map(String::as_str) == Some("+15005550001") {
            let body = json!({"code": 21211, "message": "The 'To' number is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400});
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(body.to_string());
        }
        let body = json!({"sid": "SM0123456789abcdef0123456789abcdef", "account_sid": sid, "to": form["To"],
            "from": form["From"], "body": form["Body"], "status": "queued", "num_segments": "1"});
        Response::builder().status(StatusCode::CREATED).content_type("application/json").body(body.to_string())
    }

    let log: GatewayLog = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let app = Route::new().at("/2010-04-01/Accounts/:sid/Messages.json", poem::post(messages)).data(log.clone());
    tokio::spawn(poem::Server::new(poem::listener::TcpListener::bind(addr.to_string())).run(app));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (format!("http://{addr}"), log)
}

/// A portal that sends SMS through the gateway at `base`.
async fn app_with_sms_gateway(base: String) -> TestApp {
    TestApp::spawn_with(|c| {
        c.notify.sms_api_base = base;
        c.notify.sms_account_sid = Some("AC0123456789abcdef0123456789abcdef".into());
        c.notify.sms_auth_token = Some(portal_core::config::Secret::new("gateway-token"));
        c.notify.sms_from = Some("+15005550006".into());
    })
    .await
}

#[tokio::test]
async fn one_time_code_by_sms_goes_through_the_gateway_with_basic_auth() {
    use base64::Engine;
    let (base, log) = start_sms_gateway().await;
    let app = app_with_sms_gateway(base).await;
    let login = app.register_and_login("sms@example.com", PASSWORD).await;
    let r = app.call(Method::PUT, "/users/me", &token(&login), Some(json!({"phone": "+14155550123"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = app.post("/auth/request-code", json!({"phone": "+14155550123", "channel": "sms"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let mut sent = None;
    for _ in 0..200 {
        if let Some(entry) = log.lock().unwrap().first().cloned() {
            sent = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (auth, form) = sent.expect("the gateway received the message");
    let expected = base64::engine::general_purpose::STANDARD.encode("AC0123456789abcdef0123456789abcdef:gateway-token");
    assert_eq!(auth, format!("Basic {expected}"));
    assert_eq!(form["To"], "+14155550123");
    assert_eq!(form["From"], "+15005550006");
    let code: String = form["Body"].chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(code.len(), 6, "{}", form["Body"]);

    let r = app.post("/auth/verify-code", json!({"phone": "+14155550123", "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["user"]["email"], "sms@example.com");
}

/// The stored sign-in codes, raw (user id → entry).
async fn stored_codes(app: &TestApp) -> Vec<(Vec<u8>, Vec<u8>)> {
    app.store.read(|tx| crate::helpers::table_rows(tx, "auth.sign_in_codes")).await.unwrap()
}

#[tokio::test]
async fn a_code_that_could_not_be_sent_leaves_the_one_sent_before_it_working() {
    let (base, log) = start_sms_gateway().await;
    let app = app_with_sms_gateway(base).await;
    let login = app.register_and_login("resend@example.com", PASSWORD).await;
    let access = token(&login);
    let set_phone = |phone: &'static str| app.call(Method::PUT, "/users/me", &access, Some(json!({"phone": phone})));
    assert_eq!(set_phone("+14155550123").await.status, 200);
    let sent = |n: usize| {
        let log = log.clone();
        async move {
            for _ in 0..250 {
                if log.lock().unwrap().len() >= n {
                    return log.lock().unwrap()[n - 1].1.clone();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the gateway did not receive message {n}");
        }
    };

    let r = app.post("/auth/request-code", json!({"phone": "+14155550123", "channel": "sms"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let first: String = sent(1).await["Body"].chars().filter(char::is_ascii_digit).take(6).collect();
    let first_stored = stored_codes(&app).await;
    assert_eq!(first_stored.len(), 1);

    // The gateway refuses this number, so the second code never reaches anyone.
    assert_eq!(set_phone("+15005550001").await.status, 200);
    let r = app.post("/auth/request-code", json!({"phone": "+15005550001", "channel": "sms"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    sent(2).await;
    let mut stored = stored_codes(&app).await;
    for _ in 0..250 {
        if stored == first_stored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stored = stored_codes(&app).await;
    }
    assert_eq!(stored, first_stored, "the first code was not put back");

    let r = app.post("/auth/verify-code", json!({"phone": "+15005550001", "code": first})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["user"]["email"], "resend@example.com");
    assert!(stored_codes(&app).await.is_empty(), "a used code is gone");
}

#[tokio::test]
async fn without_transports_messages_land_in_the_outbox() {
    let app = TestApp::spawn().await;
    app.register_and_login("outbox@example.com", PASSWORD).await;
    let r = app.post("/auth/request-code", json!({"email": "outbox@example.com", "channel": "email"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    app.wait_for_outbox_mail("outbox@example.com", "sign-in code").await;
    // The confirmation mail of the registration, then the code: both kept, newest first.
    let messages = portal_notify::outbox(&app.store, 10).unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].to, "outbox@example.com");
    assert_eq!(messages[0].channel, portal_notify::Channel::Email);
    assert_eq!(messages[1].subject.as_deref(), Some("Confirm your Portal account"));
    assert!(messages[0].body.contains("sign-in code is "), "{}", messages[0].body);
}

/// The mails `to` received whose subject contains `subject`.
fn mails_about(smtp: &portal_testkit::SmtpServer, to: &str, subject: &str) -> usize {
    smtp.all_mail().iter().filter(|m| m.to.eq_ignore_ascii_case(to) && m.subject.contains(subject)).count()
}

#[tokio::test]
async fn a_totp_factor_locks_after_its_budget_however_many_challenges_are_opened() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let access = token(&app.register_and_login_via(&smtp, "locked@example.com", PASSWORD).await);
    let secret =
        app.call(Method::POST, "/auth/enable-2fa", &access, Some(json!({"current_password": PASSWORD}))).await.json()
            ["secret"]
            .as_str()
            .unwrap()
            .to_string();
    let code = totp_code(&secret, stable_now().await);
    let r = app.call(Method::POST, "/auth/verify-2fa", &access, Some(json!({"code": code}))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Ten wrong codes over five challenges (two each, never the per-challenge five).
    for _ in 0..5 {
        let challenge = app.login("locked@example.com", PASSWORD).await;
        for _ in 0..2 {
            let r = app
                .post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": "000001"}))
                .await;
            r.assert_error(401, "unauthorized");
        }
    }
    // A new challenge, the right code: still refused, and the answer says why.
    let challenge = app.login("locked@example.com", PASSWORD).await;
    let right = totp_code(&secret, stable_now().await);
    let r = app.post("/auth/verify-2fa", json!({"challenge_token": challenge["challenge_token"], "code": right})).await;
    let error = r.assert_error(401, "unauthorized");
    assert!(error["message"].as_str().unwrap().contains("locked"), "{error}");
    let mail = smtp.wait_for_mail_with("locked@example.com", "Sign-in locked", Duration::from_secs(20)).await;
    assert!(mail.subject.contains("Sign-in locked") && mail.body.contains("two-factor codes"), "{}", mail.body);
    assert_eq!(mails_about(&smtp, "locked@example.com", "Sign-in locked"), 1, "one notice per lock");
}

#[tokio::test]
async fn sign_in_codes_lock_after_their_budget_and_new_codes_do_not_reset_it() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    app.register_and_login_via(&smtp, "guessed@example.com", PASSWORD).await;
    let request = || app.post("/auth/request-code", json!({"email": "guessed@example.com", "channel": "email"}));
    let codes_sent = || mails_about(&smtp, "guessed@example.com", "sign-in code");
    // Ten wrong codes, asking for a fresh code after every four.
    for round in 0..10 {
        if round % 4 == 0 {
            let sent = codes_sent();
            assert_eq!(request().await.status, 202);
            while codes_sent() == sent {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let r = app.post("/auth/verify-code", json!({"email": "guessed@example.com", "code": "999999"})).await;
        r.assert_error(401, "unauthorized");
    }
    let notice = smtp.wait_for_mail_with("guessed@example.com", "Sign-in locked", Duration::from_secs(20)).await;
    assert!(notice.body.contains("one-time sign-in codes"), "{}", notice.body);
    // The last code sent, right and still fresh (two tries of its five used): refused like a wrong one.
    let mails = smtp.all_mail();
    let last = mails.iter().rev().find(|m| m.subject.contains("sign-in code")).unwrap();
    let code = last.body.split_whitespace().find(|w| w.len() == 7 && w.ends_with('.')).unwrap()[..6].to_string();
    let r = app.post("/auth/verify-code", json!({"email": "guessed@example.com", "code": code})).await;
    let locked = r.assert_error(401, "unauthorized");
    let unknown = app.post("/auth/verify-code", json!({"email": "nobody@example.com", "code": code})).await;
    assert_eq!(locked, unknown.assert_error(401, "unauthorized"), "a locked account answers like an unknown one");
    // While locked no new code goes out (it could not be used), and the answer is still 202.
    assert_eq!(request().await.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(codes_sent(), 3);
    assert_eq!(mails_about(&smtp, "guessed@example.com", "Sign-in locked"), 1);
}
