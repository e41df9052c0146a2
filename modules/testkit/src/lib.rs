//! Real servers for tests. `SmtpServer` runs Python's aiosmtpd on a free loopback port (the test script
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test support: a panic is a failed test
//! installs it into `.venv`) and records every message it receives; `LocalStripe` runs the localstripe
//! fake Stripe API.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

const SERVER_SCRIPT: &str = include_str!("smtp_server.py");

/// A message as the SMTP server received it, for one recipient.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMail {
    pub to: String,
    pub from: String,
    pub subject: String,
    /// The plain-text part.
    pub body: String,
    /// The HTML part, if the mail has one.
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub attachments: Vec<ReceivedAttachment>,
}

/// A file attached to a received mail.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedAttachment {
    pub filename: String,
    pub content_type: String,
    /// The file's bytes, base64.
    pub data: String,
}

impl ReceivedAttachment {
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&self.data).expect("base64 attachment")
    }
}

/// An SMTP server on loopback; stopped when dropped.
pub struct SmtpServer {
    child: Child,
    port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

#[derive(Deserialize)]
struct Ready {
    port: u16,
}

impl SmtpServer {
    /// Starts the server and waits until it listens. Panics (failing the test) when aiosmtpd is missing.
    pub fn start() -> Self {
        let mut child = Command::new(python())
            .args(["-c", SERVER_SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python for the SMTP server (run the tests through scripts/test)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let ready: Ready = serde_json::from_str(&first)
            .unwrap_or_else(|_| panic!("SMTP server did not start (is aiosmtpd installed?): {first:?}"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mail) = serde_json::from_str::<ReceivedMail>(&line) {
                    sink.lock().expect("mail list").push(mail);
                }
            }
        });
        Self { child, port: ready.port, received }
    }

    /// The URL for `PORTAL_SMTP_URL` (plain SMTP on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The first message received for `to` so far, if any.
    pub fn try_mail(&self, to: &str) -> Option<ReceivedMail> {
        self.received.lock().expect("mail list").iter().find(|m| m.to.eq_ignore_ascii_case(to)).cloned()
    }

    /// Every message received so far.
    pub fn all_mail(&self) -> Vec<ReceivedMail> {
        self.received.lock().expect("mail list").clone()
    }

    /// Waits for a message to `to`; panics (failing the test) when none arrives in time.
    pub async fn wait_for_mail(&self, to: &str, timeout: Duration) -> ReceivedMail {
        self.wait_for_mail_with(to, "", timeout).await
    }

    /// Waits for a message to `to` whose subject contains `subject`; panics when none arrives in time.
    pub async fn wait_for_mail_with(&self, to: &str, subject: &str, timeout: Duration) -> ReceivedMail {
        let deadline = Instant::now() + timeout;
        loop {
            let found =
                self.all_mail().into_iter().find(|m| m.to.eq_ignore_ascii_case(to) && m.subject.contains(subject));
            if let Some(mail) = found {
                return mail;
            }
            assert!(Instant::now() < deadline, "no mail to {to} within {timeout:?}; received: {:?}", self.all_mail());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A localstripe server (a fake of Stripe's HTTP API) on a free loopback port; stopped when dropped.
pub struct LocalStripe {
    child: Child,
    port: u16,
}

impl LocalStripe {
    /// Starts localstripe with an empty state and waits until it answers. Panics (failing the test)
    /// when it is not installed.
    pub fn start() -> Self {
        let port = free_port();
        let program = python().with_file_name("localstripe");
        let program = if program.exists() { program } else { PathBuf::from("localstripe") };
        let mut child = Command::new(program)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start localstripe (run the tests through scripts/test, which installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("localstripe exited at start-up: {status}");
            }
            assert!(Instant::now() < deadline, "localstripe did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }

    /// The URL for `STRIPE_API_BASE`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// The test venv's Python when present (scripts/test creates it), else `python3` from PATH.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
