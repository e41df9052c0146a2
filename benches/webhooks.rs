//! `cargo bench --bench webhooks`: a webhook receiver that never answers must not slow the API. Measures
//! GET invoice by id (p50/p99, 4 clients) alone, then while 500 events wait on a receiver that accepts
//! connections and never answers (each delivery holds its connection for the 15 s timeout), and prints
//! both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::time::{Duration, Instant};

use portal::{App, Config};
use portal_core::config::{RateLimitMode, Secret};
use serde_json::{json, Value};

const CLIENTS: usize = 4;
const REQUESTS: usize = 3_000;
const EVENTS: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// GET `url` `REQUESTS` times from each of `CLIENTS` clients; the sorted latencies.
async fn latencies(client: &reqwest::Client, url: &str, token: &str) -> Vec<Duration> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_string(), token.to_string());
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(REQUESTS);
                for _ in 0..REQUESTS {
                    let t = Instant::now();
                    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn report(label: &str, sorted: &[Duration]) {
    println!(
        "{label:<34} p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests)",
        percentile(sorted, 0.5).as_secs_f64() * 1e3,
        percentile(sorted, 0.99).as_secs_f64() * 1e3,
        sorted.len()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_data_dir(dir.path().to_path_buf());
    config.core.rate_limit.mode = RateLimitMode::Off;
    config.auth.admin_email = Some("bench@portal.test".into());
    config.auth.admin_password = Some(Secret::new("bench-correct-horse-battery"));
    config.webhooks.allow_http = portal_webhooks::AllowHttp::Loopback;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::with_listener(config, listener).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Value| {
        let mut req = client.request(method, format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let login = json!({"email": "bench@portal.test", "password": "bench-correct-horse-battery"});
    let token: Value = call(reqwest::Method::POST, "/auth/login", None, login).await.unwrap().json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let customer = json!({"name": "Bench", "company_name": "Bench Co", "billing_email": "ap@bench.test",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
        "billing_settings": {"monthly_fee": 100}});
    let r: Value =
        call(reqwest::Method::POST, "/customers", Some(&token), customer).await.unwrap().json().await.unwrap();
    let cid = r["id"].as_str().unwrap().to_string();
    let body = json!({"customer_id": cid, "period_start": "2026-11-01"});
    let invoice: Value = call(reqwest::Method::POST, "/billing/generate-recurring", Some(&token), body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{base}/billing/invoices/{}", invoice["id"].as_str().unwrap());

    latencies(&client, &url, &token).await; // warm-up
    let alone = latencies(&client, &url, &token).await;
    report("GET invoice, no webhooks", &alone);

    // A receiver that takes every connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let endpoint = json!({"url": hook, "events": ["customer.updated"]});
    let r = call(reqwest::Method::POST, "/webhooks/endpoints", Some(&token), endpoint).await.unwrap();
    assert_eq!(r.status(), 201);
    let path = format!("/customers/{cid}");
    for n in 0..EVENTS {
        let mut record: Value =
            client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        record["phone"] = json!(format!("+4930{n:07}"));
        let r = call(reqwest::Method::PUT, &path, Some(&token), record).await.unwrap();
        assert_eq!(r.status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the worker holds its connections now
    let hanging = latencies(&client, &url, &token).await;
    report("GET invoice, receiver never answers", &hanging);
    println!("{EVENTS} events waiting on the silent receiver");
    let _ = stop.send(());
    let _ = server.await;
}
