//! Start-up and shutdown: data survives a restart, and the real binary stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

#[tokio::test]
async fn data_dir_is_created_and_reopens_after_a_graceful_stop() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health").await.status, 200);
    let dir = app.stop().await;
    assert!(dir.path().join("portal.redb").is_file());
    let app = TestApp::spawn_in(dir).await;
    assert_eq!(app.get("/health").await.json()["database"], "ok");
}

#[tokio::test]
async fn sigterm_stops_the_binary_within_five_seconds_and_the_file_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("PORTAL_DATA_DIR", dir.path())
        .env("PORTAL_CACHE_MB", "8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("portal starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "portal did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let store = portal_core::Store::open(dir.path()).expect("file reopens");
    store.read_blocking(|tx| portal_core::store::schema_version(tx, "core")).map(|v| assert_eq!(v, 3)).unwrap();
}

#[test]
fn a_cache_size_out_of_range_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["serve", "--addr", "127.0.0.1:0", "--cache-mb", "0"])
        .env("PORTAL_DATA_DIR", dir.path())
        .output()
        .expect("portal runs");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--cache-mb") && said.contains("0 is not in 1..=1048576"), "said: {said}");
    assert!(!dir.path().join("portal.redb").exists(), "no store was created");
}
