//! Starts the real app on port 0 with a temp data dir and gives tests an HTTP client.

use std::net::SocketAddr;

use portal::App;
use portal::Config;
use portal_core::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Whether a test app starts on a new store or on one a test started before.
#[derive(PartialEq, Eq)]
enum Start {
    Fresh,
    Again,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub dir: TempDir,
    /// The app's open store, for checks of what requests left behind.
    pub store: portal_core::Store,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<portal_core::Result<()>>>,
}

/// A response with its body read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error envelope's code; returns the envelope's `error` object.
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert!(
            self.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "error without JSON content type: {:?}",
            self.headers
        );
        let body = self.json();
        let error = body.get("error").unwrap_or_else(|| panic!("no envelope: {}", self.text)).clone();
        assert_eq!(error["code"], code, "body: {}", self.text);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "empty message: {}", self.text);
        error
    }
}

/// How long a test waits for a mail sent in the background.
pub const MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The token a mail body gives after `label` (up to the end of its line).
pub fn token_in(mail_body: &str, label: &str) -> String {
    let start = mail_body.find(label).unwrap_or_else(|| panic!("no '{label}' in mail: {mail_body}")) + label.len();
    mail_body[start..].lines().next().unwrap_or_default().trim().to_string()
}

/// The first admin every test app starts with.
pub const ADMIN_EMAIL: &str = "admin@portal.test";
pub const ADMIN_PASSWORD: &str = "admin-correct-horse-battery";
/// The access-token key of test apps, so tests can check tokens with their own JWT library.
pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

/// The configuration tests start from: rate limits off (tests that check them turn them on), a known
/// JWT key, a first admin, and webhooks allowed to local receivers over http.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::for_data_dir(dir.to_path_buf());
    config.core.store = store_config(dir);
    config.webhooks.allow_http = portal_webhooks::AllowHttp::Loopback;
    config.core.rate_limit.mode = portal_core::config::RateLimitMode::Off;
    config.auth.jwt_secret = Some(Secret::new(JWT_SECRET));
    config.auth.admin_email = Some(ADMIN_EMAIL.into());
    config.auth.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    config
}

/// The database the tests run on: PostgreSQL when `PORTAL_TEST_DATABASE_URL` names one, else redb.
pub fn test_database() -> Option<String> {
    std::env::var("PORTAL_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty())
}

/// The store of a test's data directory: its redb file, or on PostgreSQL a schema named after the
/// directory (so that a portal started again on the same directory finds the same data).
pub fn store_config(dir: &std::path::Path) -> portal_core::config::StoreConfig {
    use sha2::Digest;
    let mut config = portal_core::config::StoreConfig::new(dir.to_path_buf());
    if let Some(url) = test_database() {
        let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
        config.database_schema = format!("t{}", portal_core::backup::hex(&digest[..10]));
        config.database_url = Some(url);
    }
    config
}

/// The environment that points a `portal` process at the store of `dir` (see [`store_config`]).
pub fn store_env(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let config = store_config(dir);
    let mut env = vec![("PORTAL_DATA_DIR", dir.to_string_lossy().into_owned())];
    if let Some(url) = config.database_url {
        env.extend([("PORTAL_DATABASE_URL", url), ("PORTAL_DATABASE_SCHEMA", config.database_schema)]);
    }
    env
}

/// Opens the store of a test's data directory while no portal runs on it.
pub fn open_store(dir: &std::path::Path) -> portal_core::Store {
    portal_core::Store::open_config(&store_config(dir)).expect("the store opens")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app with the test configuration changed by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        Self::start(dir, config, Start::Fresh).await
    }

    /// Starts the app on an existing data dir (to test what survives a restart).
    pub async fn spawn_in(dir: TempDir) -> TestApp {
        Self::spawn_in_with(dir, |_| {}).await
    }

    /// Starts the app on an existing data dir with the test configuration changed by `adjust`.
    pub async fn spawn_in_with(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = test_config(dir.path());
        adjust(&mut config);
        Self::start(dir, config, Start::Again).await
    }

    async fn start(dir: TempDir, mut config: Config, start: Start) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        // Links in mail and documents point at this very server, as they would at a deployed one.
        let bound = listener.local_addr().expect("bound address");
        config.core.public_url.get_or_insert_with(|| format!("http://{bound}"));
        let app = App::with_listener(config, listener).await.expect("app builds");
        let addr = app.local_addr();
        let store = app.store();
        let first_round = app.first_round();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        // On a new store the jobs' first runs (billing the customers due, say) would race the test's first
        // requests. On a store started again they are what the test looks at (mail left queued, say), and
        // may wait on a server that does not answer.
        if start == Start::Fresh {
            let started = tokio::time::timeout(std::time::Duration::from_secs(30), first_round).await;
            started.expect("the background jobs took their first turn");
        }
        let client = reqwest::Client::builder().build().expect("client");
        TestApp { addr, client, dir, store, shutdown: Some(tx), server: Some(server) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        Reply { status, headers, text }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path).json(&body)).await
    }

    /// `method path` with a bearer token (and a JSON body when given).
    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let mut req = self.request(method, path).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.send(req).await
    }

    /// Registers a user, follows the confirmation link from the outbox (no SMTP server) and signs in;
    /// returns the login answer.
    pub async fn register_and_login(&self, email: &str, password: &str) -> Value {
        self.register(email, password).await;
        let mail = self.wait_for_outbox_mail(email, "Confirm your Portal account").await;
        self.confirm_registration(&mail).await;
        self.login(email, password).await
    }

    /// As `register_and_login`, for an app that sends its mail to `smtp`.
    pub async fn register_and_login_via(
        &self,
        smtp: &portal_testkit::SmtpServer,
        email: &str,
        password: &str,
    ) -> Value {
        self.register(email, password).await;
        let mail = smtp.wait_for_mail_with(email, "Confirm your Portal account", MAIL_WAIT).await;
        self.confirm_registration(&mail.body).await;
        self.login(email, password).await
    }

    async fn register(&self, email: &str, password: &str) {
        let r = self
            .post("/auth/register", serde_json::json!({"email": email, "password": password, "name": "Test User"}))
            .await;
        assert_eq!(r.status, 202, "register: {}", r.text);
        assert_eq!(r.json()["email"], email.to_lowercase());
    }

    /// Follows the confirmation link of a registration mail; returns the new user.
    pub async fn confirm_registration(&self, mail_body: &str) -> Value {
        let token = token_in(mail_body, "Confirmation token: ");
        let r = self.post("/auth/verify-email", serde_json::json!({ "token": token })).await;
        assert_eq!(r.status, 201, "verify-email: {}", r.text);
        r.json()
    }

    /// The body of the newest outbox mail to `to` whose subject has `subject` (waits for it: mail leaves
    /// in the background).
    pub async fn wait_for_outbox_mail(&self, to: &str, subject: &str) -> String {
        let deadline = std::time::Instant::now() + MAIL_WAIT;
        loop {
            let found = portal_notify::outbox(&self.store, 1_000)
                .expect("outbox")
                .into_iter()
                .find(|m| m.to.eq_ignore_ascii_case(to) && m.subject.as_deref().is_some_and(|s| s.contains(subject)));
            if let Some(message) = found {
                return message.body;
            }
            assert!(std::time::Instant::now() < deadline, "no mail '{subject}' to {to} in the outbox");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Value {
        let r = self.post("/auth/login", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(r.status, 200, "login: {}", r.text);
        r.json()
    }

    /// The admin's access token.
    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await["access_token"].as_str().expect("token").to_string()
    }

    /// Stops the server gracefully and hands back its data dir.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stops cleanly");
        }
        self.dir
    }
}

/// Every row of the table `name` that `tx` sees, in key order.
pub fn table_rows(tx: &impl portal_core::ReadTx, name: &str) -> portal_core::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut rows = Vec::new();
    let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    tx.scan_raw(portal_core::table::raw(name), all, false, |k, v| {
        rows.push((k.to_vec(), v.to_vec()));
        Ok::<_, portal_core::Error>(true)
    })?;
    Ok(rows)
}
