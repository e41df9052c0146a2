//! `cargo bench --bench customer_list`: the first page of `GET /customers?limit=50` (unfiltered, by status,
//! by search) against the release app with 100, 1,000 and 10,000 customers. Lists walk an index newest first
//! and stop after one page, so the latency must not grow with the number of customers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::time::{Duration, Instant};

use portal::App;
use portal::Config;
use portal_core::config::{RateLimitMode, Secret};
use portal_core::Store;
use portal_customers::model::CustomerStatus;
use portal_customers::service::{self, AddressChange, BillingChange, CustomerChange};

const SIZES: [usize; 3] = [100, 1_000, 10_000];
const SAMPLES: usize = 300;
const QUERIES: [(&str, &str); 3] = [
    ("all", "/customers?limit=50"),
    ("status", "/customers?status=active&limit=50"),
    ("search", "/customers?q=corp&limit=50"),
];

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Writes `n` customers straight into the store, 500 per transaction.
fn seed(store: &Store, n: usize) {
    for batch in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch = batch.to_vec();
        store
            .write_blocking(move |tx| {
                for &i in &batch {
                    let change = CustomerChange {
                        name: Some(format!("Contact {i}")),
                        company_name: Some(format!("Company {i} {}", if i % 10 == 0 { "Corp" } else { "Ltd" })),
                        status: Some(if i % 4 == 0 { CustomerStatus::Active } else { CustomerStatus::Onboarding }),
                        billing_email: Some(format!("billing{i}@example.com")),
                        address: Some(AddressChange {
                            street: Some("1 Main St".into()),
                            city: Some("Berlin".into()),
                            country: Some("DE".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    service::create(tx, &change, &BillingChange::default())?;
                }
                Ok(())
            })
            .expect("seed");
    }
}

#[tokio::main]
async fn main() {
    println!("first page of GET /customers (limit 50), {SAMPLES} sequential requests each, latency in ms");
    println!("{:>9} {:>8} {:>8} {:>8} {:>8}", "customers", "filter", "p50", "p99", "rows");
    for n in SIZES {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        portal::app::install(&store).expect("install");
        seed(&store, n);
        drop(store);

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
        let login: serde_json::Value = client
            .post(format!("{base}/auth/login"))
            .json(&serde_json::json!({"email": "bench@portal.test", "password": "bench-correct-horse-battery"}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("login body");
        let token = login["access_token"].as_str().expect("token").to_string();

        for (name, path) in QUERIES {
            let mut samples = Vec::with_capacity(SAMPLES);
            let mut rows = 0;
            for _ in 0..SAMPLES {
                let t = Instant::now();
                let r = client.get(format!("{base}{path}")).bearer_auth(&token).send().await.expect("list");
                assert_eq!(r.status(), 200);
                let body: Vec<serde_json::Value> = r.json().await.expect("list body");
                samples.push(t.elapsed());
                rows = body.len();
            }
            samples.sort();
            println!(
                "{n:>9} {name:>8} {:>8.3} {:>8.3} {rows:>8}",
                percentile(&samples, 0.5),
                percentile(&samples, 0.99)
            );
        }
        let _ = stop.send(());
        let _ = server.await;
    }
}
