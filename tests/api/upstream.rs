//! Outside services that are down or hang: requests that need them fail fast with `503
//! upstream_unavailable` in the envelope, and the store is left exactly as it was (no user without their
//! invitation, no live reset token nobody received; the append-only audit trail keeps what happened).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portal_core::config::Secret;
use reqwest::Method;
use serde_json::json;

use crate::backup::{dump, Dump};
use crate::helpers::TestApp;

/// An address nothing listens on (bound once, then released).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Accepts connections and never says a word; counts the connections.
struct SilentServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { addr, accepted, task }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn app_with_smtp(addr: SocketAddr, timeout_secs: u64) -> TestApp {
    TestApp::spawn_with(|c| {
        c.notify.smtp_url = Some(Secret::new(format!("smtp://{addr}")));
        c.notify.smtp_timeout_seconds = timeout_secs;
    })
    .await
}

async fn store_rows(app: &TestApp) -> Dump {
    app.store.read(|tx| Ok(dump(tx))).await.unwrap()
}

/// The tables whose rows differ between two dumps.
fn changed_tables(before: &Dump, after: &Dump) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names.into_iter().filter(|n| before.get(*n) != after.get(*n)).cloned().collect()
}

async fn customer(app: &TestApp, admin: &str) -> String {
    let body = json!({"name": "Ada", "company_name": "Acme", "billing_email": "ap@acme.test",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
    let r = app.call(Method::POST, "/customers", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

/// Inviting a user needs the mail: with the server down or hanging, 503 within about the SMTP timeout,
/// and the store holds no trace of the user.
async fn invitation_fails_fast(app: &TestApp) {
    let admin = app.admin_token().await;
    let cid = customer(app, &admin).await;
    let before = store_rows(app).await;
    let started = Instant::now();
    let r = app
        .call(
            Method::POST,
            &format!("/customers/{cid}/users"),
            &admin,
            Some(json!({"email": "invited@acme.test", "name": "Invited"})),
        )
        .await;
    let took = started.elapsed();
    let error = r.assert_error(503, "upstream_unavailable");
    assert!(!error["message"].as_str().unwrap().contains("127.0.0.1"), "the message leaks the server: {error}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The data is as before; the append-only audit trail keeps the user's creation and its withdrawal.
    let after = store_rows(app).await;
    let changed = changed_tables(&before, &after);
    assert!(changed.iter().all(|t| t.starts_with("core.audit")), "a failed invitation changed {changed:?}");
    assert_eq!(after["core.audit"].len(), before["core.audit"].len() + 2, "expected create and delete entries");
    let users = app.call(Method::GET, &format!("/customers/{cid}/users"), &admin, None).await;
    assert_eq!(users.json(), json!([]));
}

#[tokio::test]
async fn invitation_with_the_mail_server_down_is_a_fast_503_and_leaves_no_user() {
    let app = app_with_smtp(closed_port(), 1).await;
    invitation_fails_fast(&app).await;
}

#[tokio::test]
async fn invitation_with_a_mail_server_that_never_answers_times_out_and_leaves_no_user() {
    let smtp = SilentServer::start().await;
    let app = app_with_smtp(smtp.addr, 1).await;
    invitation_fails_fast(&app).await;
    assert!(smtp.accepted.load(Ordering::SeqCst) >= 1, "the portal never tried the mail server");
}

#[tokio::test]
async fn password_reset_with_a_hanging_mail_server_answers_at_once_and_withdraws_the_token() {
    let smtp = SilentServer::start().await;
    let app = app_with_smtp(smtp.addr, 3).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin).await;
    let body = json!({"email": "user@acme.test", "name": "User", "password": "a-long-unusual-password"});
    let r = app.call(Method::POST, &format!("/customers/{cid}/users"), &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let before = store_rows(&app).await;

    let started = Instant::now();
    let r = app.post("/auth/password-reset", json!({"email": "user@acme.test"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(started.elapsed() < Duration::from_secs(2), "the answer waited for the 3 s mail timeout");
    // The mail is attempted in the background; once it has timed out, its token is gone again.
    while smtp.accepted.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the portal never tried the mail server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let after = store_rows(&app).await;
    assert!(after["auth.reset_tokens"].is_empty(), "a reset token nobody received is still live");
    assert_eq!(changed_tables(&before, &after), Vec::<String>::new());
}
