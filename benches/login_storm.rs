//! `cargo bench --bench login_storm`: 50 concurrent sign-ins (argon2id each) against the release app,
//! while a second client polls `/health`; reports the health latency percentiles and sign-in throughput.
//! Password hashing runs on blocking threads with bounded concurrency, so `/health` must stay fast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::time::{Duration, Instant};

use portal::App;
use portal::Config;
use portal_core::config::{RateLimitMode, Secret};
use serde_json::json;

const LOGINS: usize = 50;
const ROUNDS: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path().to_path_buf());
    config.core.rate_limit.mode = RateLimitMode::Off;
    config.auth.admin_email = Some("bench@portal.test".into());
    config.auth.admin_password = Some(Secret::new("bench-correct-horse-battery"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let app = App::with_listener(config, listener).await.expect("app");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let mut health = Vec::new();
    let mut login_secs = 0.0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let logins: Vec<_> = (0..LOGINS)
            .map(|_| {
                let client = client.clone();
                let url = format!("{base}/auth/login");
                tokio::spawn(async move {
                    let body = json!({"email": "bench@portal.test", "password": "bench-correct-horse-battery"});
                    let r = client.post(url).json(&body).send().await.expect("login sent");
                    assert_eq!(r.status(), 200);
                })
            })
            .collect();
        let poller = {
            let client = client.clone();
            let url = format!("{base}/health");
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let until = Instant::now() + Duration::from_millis(300);
                while Instant::now() < until || samples.len() < 200 {
                    let t = Instant::now();
                    let r = client.get(&url).send().await.expect("health sent");
                    assert_eq!(r.status(), 200);
                    samples.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                samples
            })
        };
        for login in logins {
            login.await.expect("login task");
        }
        login_secs += started.elapsed().as_secs_f64();
        health.extend(poller.await.expect("poller"));
    }
    health.sort();
    let (p50, p99, max) = (percentile(&health, 0.5), percentile(&health, 0.99), health[health.len() - 1]);
    println!("login storm: {ROUNDS} rounds of {LOGINS} concurrent sign-ins");
    println!("  sign-ins/s        {:>8.1}", (ROUNDS * LOGINS) as f64 / login_secs);
    println!("  /health samples   {:>8}", health.len());
    println!("  /health p50 (ms)  {:>8.3}", p50.as_secs_f64() * 1000.0);
    println!("  /health p99 (ms)  {:>8.3}", p99.as_secs_f64() * 1000.0);
    println!("  /health max (ms)  {:>8.3}", max.as_secs_f64() * 1000.0);
    println!("  goal: p99 < 10 ms — {}", if p99 < Duration::from_millis(10) { "met" } else { "MISSED" });
    let _ = stop.send(());
    let _ = server.await;
}
