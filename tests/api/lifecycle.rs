//! Start-up and shutdown: data survives a restart, and the real binary stops cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestApp;

#[tokio::test]
async fn data_dir_is_created_and_reopens_after_a_graceful_stop() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health").await.status, 200);
    let dir = app.stop().await;
    if crate::helpers::test_database().is_none() {
        assert!(dir.path().join("portal.redb").is_file());
    }
    let app = TestApp::spawn_in(dir).await;
    assert_eq!(app.get("/health").await.json()["database"], "ok");
}

/// Starts the real binary on `dir` with its log in `log`, and waits until `/health` answers.
async fn start_binary(dir: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    start_binary_with(dir, log, &[]).await.0
}

/// [`start_binary`] with more environment; also gives the port it serves on.
#[allow(clippy::zombie_processes)] // the caller waits for the child it gets back
async fn start_binary_with(
    dir: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .envs(crate::helpers::store_env(dir))
        .env("PORTAL_CACHE_MB", "8")
        .env_remove("PORTAL_ADMIN_EMAIL")
        .env_remove("PORTAL_ADMIN_PASSWORD")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("portal starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                return (child, port);
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portal did not come up: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_first_start_without_an_admin_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("first.log");
    let mut child = start_binary(dir.path(), &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    let hints: Vec<&str> = said.lines().filter(|l| l.contains("no admin yet")).collect();
    assert_eq!(hints.len(), 1, "log: {said}");
    assert!(hints[0].contains("portal admin create") && hints[0].contains("PORTAL_ADMIN_EMAIL"), "{}", hints[0]);

    let created = Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["admin", "create", "--email", "boss@example.com", "--password", "a-long-unusual-passphrase"])
        .envs(crate::helpers::store_env(dir.path()))
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let log = dir.path().join("second.log");
    let mut child = start_binary(dir.path(), &log).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("portal listening") && !said.contains("no admin yet"), "log: {said}");
}

#[tokio::test]
async fn each_request_leaves_one_access_line_in_the_binarys_log_as_text_or_json() {
    for (format, level) in [("text", "info"), ("json", "info"), ("text", "warn")] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("portal.log");
        let env = [("PORTAL_LOG_FORMAT", format), ("PORTAL_LOG", level)];
        let (mut child, port) = start_binary_with(dir.path(), &log, &env).await;
        let client = reqwest::Client::new();
        for (path, id) in [("/health", "probe-1"), ("/a=b", "probe-2")] {
            let answer =
                client.get(format!("http://127.0.0.1:{port}{path}")).header("x-request-id", id).send().await.unwrap();
            assert_eq!(answer.headers()["x-request-id"], id);
        }
        // The log's writer gathers lines for a few milliseconds before it writes them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let said = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = said.lines().filter(|l| l.contains("portal::access") && l.contains("probe-")).collect();
        if level == "warn" {
            assert!(lines.is_empty(), "{said}");
            continue;
        }
        assert_eq!(lines.len(), 2, "{said}");
        if format == "text" {
            let after_stamp = |line: &str| line.split_once(' ').unwrap().1.to_string();
            let (health, refused) = (after_stamp(lines[0]), after_stamp(lines[1]));
            assert!(health
                .starts_with(" INFO portal::access: request finished method=GET path=/health status=200 latency_ms="));
            assert!(health.ends_with(" request_id=probe-1"), "{health}");
            assert!(refused.contains(" path=\"/a=b\" status=404 latency_ms="), "{refused}");
            assert!(refused.ends_with(" request_id=probe-2"), "{refused}");
            continue;
        }
        for (line, (path, status, id)) in lines.iter().zip([("/health", 200, "probe-1"), ("/a=b", 404, "probe-2")]) {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!((line["level"].as_str(), line["target"].as_str()), (Some("INFO"), Some("portal::access")));
            assert_eq!(line["request_id"], id);
            let fields = &line["fields"];
            assert_eq!(
                (fields["message"].as_str(), fields["method"].as_str()),
                (Some("request finished"), Some("GET"))
            );
            assert_eq!((fields["path"].as_str(), fields["status"].as_u64()), (Some(path), Some(status)));
            assert!(fields["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
        }
    }
}

#[tokio::test]
async fn sigterm_stops_the_binary_within_five_seconds_and_the_file_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_binary(dir.path(), &dir.path().join("portal.log")).await;
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
    let store = crate::helpers::open_store(dir.path());
    store.read_blocking(|tx| portal_core::store::schema_version(tx, "core")).map(|v| assert_eq!(v, 3)).unwrap();
}

/// The allocator's settings are compiled into the binary (an idle server gives freed memory back within a
/// second only through jemalloc's background thread): a misspelt setting would be ignored without a word.
#[tokio::test]
async fn the_binary_gives_freed_memory_back_through_the_allocators_background_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_binary(dir.path(), &dir.path().join("portal.log")).await;
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(threads.iter().filter(|name| name.starts_with("jemalloc_bg")).count(), 1, "threads: {threads:?}");
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
