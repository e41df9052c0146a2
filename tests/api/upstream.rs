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

/// The network path to a database server: forwards connections to it until cut, then refuses them. It
/// runs on a thread of its own, as the portal's store waits for the database on the test's threads.
struct Cable {
    addr: SocketAddr,
    cut: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Cable {
    fn lay(addr: SocketAddr, server: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, is_cut) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut pipes = tokio::task::JoinSet::new();
                let forward = async {
                    while let Ok((mut near, _)) = listener.accept().await {
                        pipes.spawn(async move {
                            if let Ok(mut far) = tokio::net::TcpStream::connect(server).await {
                                let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = is_cut => {}
                    _ = forward => {}
                }
                // Dropping the pipes closes every connection through them.
            });
        });
        Self { addr, cut, thread }
    }

    /// Closes every connection through it and stops listening; where it listened.
    fn cut(self) -> SocketAddr {
        let _ = self.cut.send(());
        self.thread.join().unwrap();
        self.addr
    }
}

#[tokio::test]
async fn a_database_server_that_cannot_be_reached_answers_503_and_nothing_is_written() {
    // redb is a file of the portal's own; only a database server can be out of reach.
    let Some(url) = crate::helpers::test_database() else { return };
    let mut url = reqwest::Url::parse(&url).unwrap();
    let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let server = tokio::net::lookup_host(server).await.unwrap().next().unwrap();
    let cable = Cable::lay("127.0.0.1:0".parse().unwrap(), server);
    url.set_port(Some(cable.addr.port())).unwrap();
    let app = TestApp::spawn_with(|config| config.core.store.database_url = Some(url.to_string())).await;
    let admin = app.admin_token().await;
    let listed = app.call(Method::GET, "/customers", &admin, None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);

    let at = cable.cut();
    let address = json!({"street": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "us"});
    let create =
        json!({"name": "Ada", "company_name": "Unreached", "billing_email": "ada@unreached.test", "address": address});
    for (method, path, body) in [(Method::GET, "/customers", None), (Method::POST, "/customers", Some(create))] {
        let refused = app.call(method.clone(), path, &admin, body).await;
        let error = refused.assert_error(503, "upstream_unavailable");
        assert!(error["message"].as_str().unwrap().contains("database"), "{method} {path}: {error}");
    }

    let _cable = Cable::lay(at, server);
    let again = app.call(Method::GET, "/customers", &admin, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json(), listed.json(), "the refused create wrote nothing");
}
