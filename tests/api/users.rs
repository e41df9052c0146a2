//! `/users/me`: partial profile updates, sensitive changes behind the current password, settings.

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn profile_updates_are_partial_and_validated() {
    let app = TestApp::spawn().await;
    let login = app.register_and_login("me@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().unwrap().to_string();
    let before = app.call(Method::GET, "/users/me", &token, None).await.json();

    let r = app.call(Method::PUT, "/users/me", &token, Some(json!({"phone": "+14155550123"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let after = r.json();
    assert_eq!(after["phone"], "+14155550123");
    assert_eq!(after["name"], before["name"], "fields left out keep their values");
    assert_eq!(after["created_at"], before["created_at"]);
    assert_ne!(after["updated_at"], before["updated_at"]);

    let r = app.call(Method::PUT, "/users/me", &token, Some(json!({"phone": null}))).await;
    assert!(r.json().get("phone").is_none(), "null clears: {}", r.text);

    let r = app.call(Method::PUT, "/users/me", &token, Some(json!({"phone": "555-1234", "name": ""}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["phone"].is_string() && error["details"]["name"].is_string(), "{error}");
    let unchanged = app.call(Method::GET, "/users/me", &token, None).await.json();
    assert_eq!(unchanged["name"], before["name"], "nothing written on a 422");

    // The role is an admin's to set: asking for another one is forbidden, not malformed.
    let r = app.call(Method::PUT, "/users/me", &token, Some(json!({"role": "admin"}))).await;
    let error = r.assert_error(403, "forbidden");
    assert!(error["message"].as_str().unwrap().contains("role"), "{error}");
    assert_eq!(app.call(Method::GET, "/users/me", &token, None).await.json()["role"], "customer");
}

#[tokio::test]
async fn email_and_password_changes_need_the_current_password() {
    let app = TestApp::spawn().await;
    let first = app.register_and_login("change@example.com", PASSWORD).await;
    let other_session = app.login("change@example.com", PASSWORD).await;
    let token = first["access_token"].as_str().unwrap().to_string();

    let r = app.call(Method::PUT, "/users/me", &token, Some(json!({"email": "new@example.com"}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["current_password"].is_string());
    let r = app
        .call(
            Method::PUT,
            "/users/me",
            &token,
            Some(json!({"email": "new@example.com", "current_password": "wrong password!"})),
        )
        .await;
    r.assert_error(422, "validation_failed");
    let r = app
        .call(Method::PUT, "/users/me", &token, Some(json!({"email": "New@Example.com", "current_password": PASSWORD})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["email"], "new@example.com");
    app.post("/auth/login", json!({"email": "change@example.com", "password": PASSWORD}))
        .await
        .assert_error(401, "unauthorized");

    app.register_and_login("taken2@example.com", PASSWORD).await;
    let r = app
        .call(
            Method::PUT,
            "/users/me",
            &token,
            Some(json!({"email": "taken2@example.com", "current_password": PASSWORD})),
        )
        .await;
    r.assert_error(409, "conflict");

    let new_password = "a completely new passphrase";
    let r = app
        .call(
            Method::PUT,
            "/users/me",
            &token,
            Some(json!({"new_password": new_password, "current_password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Other sessions end; this one goes on.
    let other = other_session["access_token"].as_str().unwrap();
    app.call(Method::GET, "/users/me", other, None).await.assert_error(401, "unauthorized");
    assert_eq!(app.call(Method::GET, "/users/me", &token, None).await.status, 200);
    app.login("new@example.com", new_password).await;
}

#[tokio::test]
async fn settings_are_typed_and_partial() {
    let app = TestApp::spawn().await;
    let login = app.register_and_login("settings@example.com", PASSWORD).await;
    let token = login["access_token"].as_str().unwrap().to_string();
    let defaults = app.call(Method::GET, "/users/me", &token, None).await.json()["settings"].clone();
    assert_eq!(defaults["timezone"], "UTC");
    assert_eq!(defaults["locale"], "en-US");

    let r = app
        .call(
            Method::PUT,
            "/users/me/settings",
            &token,
            Some(json!({"timezone": "Europe/Berlin", "notifications": {"product_updates": true}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let settings = r.json()["settings"].clone();
    assert_eq!(settings["timezone"], "Europe/Berlin");
    assert_eq!(settings["locale"], "en-US");
    assert_eq!(settings["notifications"]["product_updates"], true);
    assert_eq!(settings["notifications"]["invoice_emails"], defaults["notifications"]["invoice_emails"]);

    let r = app
        .call(Method::PUT, "/users/me/settings", &token, Some(json!({"timezone": "Mars", "locale": "english"})))
        .await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["timezone"].is_string() && error["details"]["locale"].is_string());
    let r = app.call(Method::PUT, "/users/me/settings", &token, Some(json!({"theme": "dark"}))).await;
    r.assert_error(422, "validation_failed");
}

#[tokio::test]
async fn the_first_admin_comes_from_the_environment_once() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let me = app.call(Method::GET, "/users/me", &token, None).await.json();
    assert_eq!(me["role"], "admin");
    assert_eq!(me["email"], crate::helpers::ADMIN_EMAIL);
    // A restart with the same settings does not create a second admin or fail.
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir).await;
    assert_eq!(app.call(Method::GET, "/users/me", &app.admin_token().await, None).await.json()["id"], me["id"]);
}
