//! `cargo bench --bench analytics`: imports a generated 1,000,000-event Firebase BigQuery export (the
//! `portal analytics import` code path) and times the 30-day dashboard of that customer over HTTP against
//! the release app. The dashboard reads per-day rollups, so its latency must not depend on the number of
//! events (goal: under 50 ms).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::io::{BufReader, BufWriter, Write};
use std::time::{Duration, Instant};

use portal::App;
use portal::Config;
use portal_core::config::{RateLimitMode, Secret};
use portal_core::Store;
use portal_customers::service::{self, AddressChange, BillingChange, CustomerChange};

const EVENTS: usize = 1_000_000;
const USERS: u64 = 60_000;
const DAYS: i64 = 90;
/// The dataset's last day (00:00 UTC), in the past so every event is accepted.
const LAST_DAY_SECS: i64 = 1_793_404_800; // 2026-10-31
const SAMPLES: usize = 100;
const NAMES: [&str; 20] = [
    "screen_view",
    "session_start",
    "user_engagement",
    "tap_buy",
    "search",
    "add_to_cart",
    "share",
    "login",
    "logout",
    "open_settings",
    "play_video",
    "like",
    "comment",
    "scroll",
    "notification_open",
    "purchase",
    "level_up",
    "tutorial_begin",
    "tutorial_complete",
    "app_update",
];
const PLATFORMS: [&str; 3] = ["IOS", "ANDROID", "WEB"];

/// splitmix64, so every run imports the same file.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Sessions of 1–9 events by users drawn with a skew (some users are far more active), over 90 days.
fn write_export(path: &std::path::Path) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("export file"));
    let mut rng = Rng(42);
    let first_day = LAST_DAY_SECS - (DAYS - 1) * 86_400;
    let mut written = 0;
    let mut session = 0u64;
    while written < EVENTS {
        let user = rng.below(USERS).min(rng.below(USERS));
        let platform = PLATFORMS[(user % 3) as usize];
        session += 1;
        let mut t = (first_day + rng.below(DAYS as u64) as i64 * 86_400 + rng.below(86_000) as i64) * 1_000_000;
        for _ in 0..(1 + rng.below(9)).min((EVENTS - written) as u64) {
            let name = NAMES[rng.below(NAMES.len() as u64).min(rng.below(NAMES.len() as u64)) as usize];
            let msec = rng.below(20_000);
            writeln!(
                out,
                r#"{{"event_date":"","event_timestamp":"{t}","event_name":"{name}","user_pseudo_id":"p{user}","user_id":null,"platform":"{platform}","event_params":[{{"key":"ga_session_id","value":{{"int_value":"{session}"}}}},{{"key":"engagement_time_msec","value":{{"int_value":"{msec}"}}}}]}}"#
            )
            .expect("write");
            t += (1 + rng.below(60) as i64) * 1_000_000;
            written += 1;
        }
    }
    out.flush().expect("flush");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("events.ndjson");
    let started = Instant::now();
    write_export(&file);
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!("generated {EVENTS} events ({:.0} MB) in {:.1} s", size as f64 / 1e6, started.elapsed().as_secs_f64());

    let store = Store::open(dir.path()).expect("store");
    portal::app::install(&store).expect("install");
    let customer = store
        .write_blocking(|tx| {
            let change = CustomerChange {
                name: Some("Bench Contact".into()),
                company_name: Some("Bench Apps".into()),
                billing_email: Some("bench@example.com".into()),
                address: Some(AddressChange {
                    street: Some("1 Main St".into()),
                    city: Some("Berlin".into()),
                    country: Some("DE".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Ok(service::create(tx, &change, &BillingChange::default())?.customer.id)
        })
        .expect("customer");
    let started = Instant::now();
    let input = BufReader::new(std::fs::File::open(&file).expect("open export"));
    let report = tokio::task::block_in_place(|| {
        portal_analytics::import::import(&store, customer, input, |_| {}).expect("import")
    });
    let import_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.imported as usize, EVENTS, "skipped: {:?}", report.problems);
    println!(
        "import: {} events in {import_secs:.1} s ({:.0} events/s)",
        report.imported,
        report.imported as f64 / import_secs
    );
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

    let last = chrono::DateTime::from_timestamp(LAST_DAY_SECS, 0).expect("date").date_naive();
    let first = last - chrono::Days::new(29);
    let url = format!("{base}/analytics-dashboard/customer/{customer}?start_date={first}&end_date={last}");
    let mut times = Vec::with_capacity(SAMPLES);
    let mut body = serde_json::Value::Null;
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let resp = client.get(&url).bearer_auth(&token).send().await.expect("dashboard");
        assert_eq!(resp.status(), 200);
        body = resp.json().await.expect("dashboard body");
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "30-day dashboard over HTTP ({SAMPLES} requests): p50 {:.2} ms, p99 {:.2} ms (goal < 50 ms); \
         {} users, {} sessions/user, DAU {}, MAU {}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        body["total_users"],
        body["sessions_per_user"],
        body["daily_active_users"],
        body["monthly_active_users"],
    );
    let _ = stop.send(());
    let _ = server.await;
}
