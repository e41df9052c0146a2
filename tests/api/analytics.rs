//! Analytics end to end: a generated dataset gives exactly the independently computed dashboard through
//! the local provider (events sent over HTTP, or imported with the CLI) and through the Firebase provider
//! (the real Google client against a local server speaking Google's formats); date parameters; the
//! empty dashboard; Google failures as 503; isolation; ingest keys; all-or-nothing batches.

mod dataset;
mod google;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};
use dataset::{date, expected, generate, Ev, Rng};

const PASSWORD: &str = "correct horse battery";
/// The dataset's days, and the ranges the tests ask for (all in the past).
const FROM: &str = "2026-08-20";
const TO: &str = "2026-10-25";
const RANGES: [(&str, &str); 4] = [
    ("2026-09-01", "2026-10-15"), // 45 days: retention, MAU inside the range
    ("2026-10-01", "2026-10-14"), // exactly two weeks, MAU window reaching before the range
    ("2026-10-10", "2026-10-15"), // shorter than 14 days: no retention
    ("2026-10-25", "2026-10-25"), // one day
];

async fn customer(app: &TestApp, admin: &str, company: &str, firebase: Option<(&str, &str)>) -> String {
    let mut body = json!({
        "name": "Ada Lovelace", "company_name": company, "billing_email": "ap@example.com", "status": "active",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
    });
    if let Some((project, app_id)) = firebase {
        body["firebase_project_id"] = json!(project);
        body["firebase_app_id"] = json!(app_id);
    }
    let r = app.call(Method::POST, "/customers", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

async fn user_token(app: &TestApp, admin: &str, customer: &str, email: &str) -> String {
    let body = json!({"email": email, "name": "Customer User", "password": PASSWORD});
    let r = app.call(Method::POST, &format!("/customers/{customer}/users"), admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    app.login(email, PASSWORD).await["access_token"].as_str().unwrap().to_string()
}

fn dashboard_path(customer: &str, start: &str, end: &str) -> String {
    format!("/analytics-dashboard/customer/{customer}?start_date={start}&end_date={end}")
}

/// The dataset in a scrambled order, so batches mix days, users and sessions.
fn shuffled(events: &[Ev]) -> Vec<Ev> {
    let mut out = events.to_vec();
    let mut rng = Rng::new(99);
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    out
}

/// Sends `events` in batches of 1000 with `auth` (a bearer token) or an ingest key.
async fn send_events(app: &TestApp, customer: &str, events: &[Ev], token: Option<&str>, key: Option<&str>) {
    for chunk in events.chunks(1000) {
        let body = json!({"events": chunk.iter().map(Ev::to_json).collect::<Vec<_>>()});
        let mut req =
            app.request(Method::POST, &format!("/analytics-dashboard/customer/{customer}/events")).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = key {
            req = req.header("X-Ingest-Key", key);
        }
        let r = app.send(req).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.json(), json!({"stored": chunk.len()}));
    }
}

fn dataset() -> Vec<Ev> {
    generate(7, "user-", 160, date(FROM), date(TO))
}

async fn assert_dashboards(app: &TestApp, token: &str, customer: &str, events: &[Ev], source: &str) {
    for (start, end) in RANGES {
        let r = app.call(Method::GET, &dashboard_path(customer, start, end), token, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-analytics-source"), Some(source));
        assert_eq!(r.json(), expected(events, date(start), date(end)), "{source} {start}..{end}");
    }
}

#[tokio::test]
async fn local_events_give_exactly_the_independently_computed_dashboard() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let events = dataset();
    assert!(events.len() > 2000, "dataset too small: {}", events.len());
    send_events(&app, &acme, &shuffled(&events), Some(&admin), None).await;
    assert_dashboards(&app, &admin, &acme, &events, "local").await;

    // A sanity check that the dataset exercises every figure.
    let full = expected(&events, date(RANGES[0].0), date(RANGES[0].1));
    for field in ["daily_active_users", "new_users", "retention_rate", "engagement_rate", "average_session_duration"] {
        assert!(full[field].as_f64().unwrap() > 0.0, "{field} is 0: {full}");
    }
    assert_eq!(full["most_active_features"].as_array().unwrap().len(), 10);

    // The customer's own users see the same through /my-analytics.
    let user = user_token(&app, &admin, &acme, "ana@acme.test").await;
    let (start, end) = RANGES[0];
    let mine = app
        .call(Method::GET, &format!("/analytics-dashboard/my-analytics?start_date={start}&end_date={end}"), &user, None)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.json(), expected(&events, date(start), date(end)));
}

#[tokio::test]
async fn firebase_gives_the_same_numbers_as_the_local_provider() {
    let events = dataset();
    // Another app of the same project: its stream must be filtered out.
    let noise = generate(8, "web-", 40, date(FROM), date(TO));
    let tagged = events
        .iter()
        .map(|e| (google::STREAM.to_string(), e.clone()))
        .chain(noise.iter().map(|e| (google::OTHER_STREAM.to_string(), e.clone())))
        .collect();
    let google = google::start(tagged).await;
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(creds.path(), google.credentials.to_string()).unwrap();
    let (path, base) = (creds.path().to_path_buf(), google.base.clone());
    let app = TestApp::spawn_with(move |c| {
        c.analytics.firebase_credentials = Some(path);
        c.analytics.firebase_management_api_base = base.clone();
        c.analytics.ga4_data_api_base = base;
    })
    .await;
    let admin = app.admin_token().await;
    let firebase = customer(&app, &admin, "Acme Mobile", Some((google::PROJECT, google::APP_ID))).await;
    let local = customer(&app, &admin, "Acme Local", None).await;
    send_events(&app, &local, &shuffled(&events), Some(&admin), None).await;

    assert_dashboards(&app, &admin, &firebase, &events, "firebase").await;
    assert_dashboards(&app, &admin, &local, &events, "local").await;

    // One token serves every call; a repeated dashboard comes from the cache.
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(google.state.tokens_issued.load(SeqCst), 1);
    let served = google.state.reports_served.load(SeqCst);
    let (start, end) = RANGES[0];
    let again = app.call(Method::GET, &dashboard_path(&firebase, start, end), &admin, None).await;
    assert_eq!(again.json(), expected(&events, date(start), date(end)));
    assert_eq!(google.state.reports_served.load(SeqCst), served);

    // Without an app id the whole property (both streams) counts.
    let whole = customer(&app, &admin, "Acme All Apps", None).await;
    let r = app
        .call(
            Method::PUT,
            &format!("/customers/{whole}"),
            &admin,
            Some(json!({"firebase_project_id": google::PROJECT})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let all: Vec<Ev> = events.iter().chain(&noise).cloned().collect();
    let r = app.call(Method::GET, &dashboard_path(&whole, start, end), &admin, None).await;
    assert_eq!(r.json(), expected(&all, date(start), date(end)));
}

async fn firebase_app(google: &google::Google, creds: &tempfile::NamedTempFile) -> TestApp {
    let (path, base) = (creds.path().to_path_buf(), google.base.clone());
    TestApp::spawn_with(move |c| {
        c.analytics.firebase_credentials = Some(path);
        c.analytics.firebase_management_api_base = base.clone();
        c.analytics.ga4_data_api_base = base;
        c.analytics.analytics_retries = 1;
        c.analytics.analytics_cache_seconds = 0;
    })
    .await
}

#[tokio::test]
async fn google_failures_answer_503_upstream_unavailable() {
    let google = google::start(dataset().into_iter().map(|e| (google::STREAM.to_string(), e)).collect()).await;
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(creds.path(), google.credentials.to_string()).unwrap();
    let app = firebase_app(&google, &creds).await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme Mobile", Some((google::PROJECT, google::APP_ID))).await;
    let path = dashboard_path(&acme, RANGES[0].0, RANGES[0].1);

    for (status, google_status) in [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL")] {
        google.state.failures.lock().unwrap().extend(std::iter::repeat_n(status, 100));
        let r = app.call(Method::GET, &path, &admin, None).await;
        let error = r.assert_error(503, "upstream_unavailable");
        assert_eq!(error["details"]["upstream_status"], google_status, "{}", r.text);
        assert!(!r.text.contains("Exhausted property tokens"), "Google's message leaked: {}", r.text);
        google.state.failures.lock().unwrap().clear();
    }

    // One transient failure is retried away.
    google.state.failures.lock().unwrap().push_back(503);
    let r = app.call(Method::GET, &path, &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A token Google stopped accepting is replaced once.
    use std::sync::atomic::Ordering::SeqCst;
    let tokens = google.state.tokens_issued.load(SeqCst);
    google.state.issued.lock().unwrap().clear();
    let r = app.call(Method::GET, &path, &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(google.state.tokens_issued.load(SeqCst), tokens + 1);

    // A project Google does not know, and an app without a stream.
    let unknown = customer(&app, &admin, "Unlinked", Some(("unknown-project", google::APP_ID))).await;
    let r = app.call(Method::GET, &dashboard_path(&unknown, RANGES[0].0, RANGES[0].1), &admin, None).await;
    r.assert_error(503, "upstream_unavailable");
    let streamless = customer(&app, &admin, "No Stream", Some((google::PROJECT, "1:111:ios:cc33"))).await;
    let r = app.call(Method::GET, &dashboard_path(&streamless, RANGES[0].0, RANGES[0].1), &admin, None).await;
    r.assert_error(503, "upstream_unavailable");
}

#[tokio::test]
async fn google_unreachable_answers_503() {
    let google = google::start(Vec::new()).await;
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(creds.path(), google.credentials.to_string()).unwrap();
    let path = creds.path().to_path_buf();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::spawn_with(move |c| {
        c.analytics.firebase_credentials = Some(path);
        c.analytics.firebase_token_url = Some(format!("http://{closed}/token"));
        c.analytics.analytics_retries = 0;
    })
    .await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme Mobile", Some((google::PROJECT, google::APP_ID))).await;
    let r = app.call(Method::GET, &dashboard_path(&acme, "2026-10-01", "2026-10-30"), &admin, None).await;
    let error = r.assert_error(503, "upstream_unavailable");
    assert_eq!(error["details"]["upstream_status"], "UNREACHABLE");
}

fn invalid_field(r: &Reply) -> Vec<String> {
    let error = r.assert_error(422, "validation_failed");
    error["details"].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn date_parameters_are_checked_and_default_to_the_last_30_days() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let base = format!("/analytics-dashboard/customer/{acme}");
    for (query, field) in [
        ("start_date=2026-02-30", "start_date"),
        ("start_date=20261001", "start_date"),
        ("end_date=yesterday", "end_date"),
        ("end_date=2026-10-01T00:00:00Z", "end_date"),
        ("start_date=2026-10-02&end_date=2026-10-01", "start_date"),
        ("start_date=2025-01-01&end_date=2026-01-02", "start_date"),
    ] {
        let r = app.call(Method::GET, &format!("{base}?{query}"), &admin, None).await;
        assert_eq!(invalid_field(&r), [field], "{query}");
    }
    let r = app.call(Method::GET, &format!("{base}?start_date=2025-01-02&end_date=2026-01-02"), &admin, None).await;
    assert_eq!(r.status, 200, "366 days are allowed: {}", r.text);
    assert_eq!(r.json()["user_growth_trend"].as_array().unwrap().len(), 366);

    let r = app.call(Method::GET, &base, &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let today = chrono::Utc::now().date_naive();
    let body = r.json();
    assert_eq!(body["data_timeframe"]["end_date"], today.format("%Y-%m-%d").to_string());
    let start = today - chrono::Days::new(29);
    assert_eq!(body["data_timeframe"]["start_date"], start.format("%Y-%m-%d").to_string());
    assert_eq!(body["user_growth_trend"].as_array().unwrap().len(), 30);
}

#[tokio::test]
async fn a_customer_without_data_gets_a_zero_dashboard() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let r = app.call(Method::GET, &dashboard_path(&acme, "2026-10-01", "2026-10-03"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-analytics-source"), Some("local"));
    assert_eq!(
        r.json(),
        json!({
            "daily_active_users": 0, "monthly_active_users": 0, "new_users": 0, "total_users": 0,
            "retention_rate": 0.0, "engagement_rate": 0.0, "average_session_duration": 0.0,
            "sessions_per_user": 0.0, "events_per_user": 0.0, "most_active_features": [],
            "device_breakdown": {"ios": 0.0, "android": 0.0, "web": 0.0, "other": 0.0},
            "user_growth_trend": [{"date": "2026-10-01", "users": 0}, {"date": "2026-10-02", "users": 0},
                                  {"date": "2026-10-03", "users": 0}],
            "data_timeframe": {"start_date": "2026-10-01", "end_date": "2026-10-03"}
        })
    );
    // A Firebase project without a service account configured: the local provider answers.
    let fb = customer(&app, &admin, "Acme Mobile", Some(("acme-analytics", "1:111:android:aa11"))).await;
    let r = app.call(Method::GET, &dashboard_path(&fb, "2026-10-01", "2026-10-03"), &admin, None).await;
    assert_eq!(r.header("x-analytics-source"), Some("local"));
}

fn event(user: &str, ts: &str) -> Value {
    json!({"user_id": user, "event_name": "screen_view", "timestamp": ts, "platform": "ios",
           "session_id": "s1", "engagement_time_msec": 1200})
}

#[tokio::test]
async fn customers_see_only_their_own_analytics() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let globex = customer(&app, &admin, "Globex", None).await;
    let acme_user = user_token(&app, &admin, &acme, "ana@acme.test").await;
    send_events(&app, &globex, &generate(3, "g-", 10, date("2026-10-01"), date("2026-10-05")), Some(&admin), None)
        .await;

    let path = dashboard_path(&globex, "2026-10-01", "2026-10-05");
    app.call(Method::GET, &path, &acme_user, None).await.assert_error(404, "not_found");
    let missing = dashboard_path("0190f5f6-0000-7000-8000-000000000000", "2026-10-01", "2026-10-05");
    app.call(Method::GET, &missing, &admin, None).await.assert_error(404, "not_found");
    app.get(&path).await.assert_error(401, "unauthorized");
    app.get("/analytics-dashboard/my-analytics").await.assert_error(401, "unauthorized");
    app.call(Method::GET, "/analytics-dashboard/my-analytics", &admin, None).await.assert_error(403, "forbidden");
    let mine = app
        .call(
            Method::GET,
            "/analytics-dashboard/my-analytics?start_date=2026-10-01&end_date=2026-10-05",
            &acme_user,
            None,
        )
        .await;
    assert_eq!(mine.json()["total_users"], 0, "Acme's dashboard must not show Globex's users");

    // Admin-only operations.
    let keys = format!("/analytics-dashboard/customer/{acme}/ingest-keys");
    app.call(Method::POST, &keys, &acme_user, None).await.assert_error(403, "forbidden");
    app.call(Method::DELETE, &format!("{keys}/0190f5f6-0000-7000-8000-000000000000"), &acme_user, None)
        .await
        .assert_error(403, "forbidden");
    let events = format!("/analytics-dashboard/customer/{acme}/events");
    let batch = json!({"events": [event("u1", "2026-10-01T10:00:00Z")]});
    app.call(Method::POST, &events, &acme_user, Some(batch.clone())).await.assert_error(403, "forbidden");
    app.post(&events, batch).await.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn ingest_keys_are_created_used_and_revoked_per_customer() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let globex = customer(&app, &admin, "Globex", None).await;
    let r = app.call(Method::POST, &format!("/analytics-dashboard/customer/{acme}/ingest-keys"), &admin, None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_string();
    let key_id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("pik_") && key.len() > 40, "{key}");
    assert_eq!(created["customer_id"], acme.as_str());

    let events = generate(5, "k-", 12, date("2026-10-01"), date("2026-10-07"));
    send_events(&app, &acme, &events, None, Some(&key)).await;
    let r = app.call(Method::GET, &dashboard_path(&acme, "2026-10-01", "2026-10-07"), &admin, None).await;
    assert_eq!(r.json(), expected(&events, date("2026-10-01"), date("2026-10-07")));

    // A key works for its own customer only.
    let batch = json!({"events": [event("u1", "2026-10-01T10:00:00Z")]});
    let other = app
        .request(Method::POST, &format!("/analytics-dashboard/customer/{globex}/events"))
        .header("X-Ingest-Key", &key)
        .json(&batch);
    app.send(other).await.assert_error(404, "not_found");
    let forged = app
        .request(Method::POST, &format!("/analytics-dashboard/customer/{acme}/events"))
        .header("X-Ingest-Key", "pik_not-a-real-key")
        .json(&batch);
    app.send(forged).await.assert_error(401, "unauthorized");

    let revoke = format!("/analytics-dashboard/customer/{acme}/ingest-keys/{key_id}");
    app.call(Method::DELETE, &format!("/analytics-dashboard/customer/{globex}/ingest-keys/{key_id}"), &admin, None)
        .await
        .assert_error(404, "not_found");
    let r = app.call(Method::DELETE, &revoke, &admin, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let again = app
        .request(Method::POST, &format!("/analytics-dashboard/customer/{acme}/events"))
        .header("X-Ingest-Key", &key)
        .json(&batch);
    app.send(again).await.assert_error(401, "unauthorized");
    app.call(Method::DELETE, &revoke, &admin, None).await.assert_error(404, "not_found");

    // Deleting a customer takes its keys and analytics with it.
    let r = app.call(Method::POST, &format!("/analytics-dashboard/customer/{globex}/ingest-keys"), &admin, None).await;
    let globex_key = r.json()["key"].as_str().unwrap().to_string();
    let r = app.call(Method::DELETE, &format!("/customers/{globex}"), &admin, None).await;
    assert_eq!(r.json()["result"], "deleted", "{}", r.text);
    let gone = app
        .request(Method::POST, &format!("/analytics-dashboard/customer/{globex}/events"))
        .header("X-Ingest-Key", &globex_key)
        .json(&batch);
    app.send(gone).await.assert_error(401, "unauthorized");
    let r = app.call(Method::GET, &dashboard_path(&globex, "2026-10-01", "2026-10-07"), &admin, None).await;
    r.assert_error(404, "not_found");
}

#[tokio::test]
async fn a_bad_event_rejects_the_whole_batch() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let path = format!("/analytics-dashboard/customer/{acme}/events");
    let good = event("u1", "2026-10-01T10:00:00Z");
    let mut bad_time = event("u2", "2026-10-01");
    bad_time["engagement_time_msec"] = json!(-5);
    let mut bad_platform = event("u3", "2026-10-01T10:00:00Z");
    bad_platform["platform"] = json!("windows");
    let mut bad_name = event("u4", "2026-10-01T10:00:00Z");
    bad_name["event_name"] = json!("add to cart");

    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": [good.clone(), bad_platform]}))).await;
    assert_eq!(invalid_field(&r), ["events[1].platform"]);
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": [good.clone(), bad_time, bad_name]}))).await;
    assert_eq!(invalid_field(&r), ["events[1].engagement_time_msec", "events[1].timestamp", "events[2].event_name"]);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("session_id");
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": [missing]}))).await;
    assert_eq!(invalid_field(&r), ["events[0].session_id"]);
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": []}))).await;
    assert_eq!(invalid_field(&r), ["events"]);
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": vec![good.clone(); 1001]}))).await;
    assert_eq!(invalid_field(&r), ["events"]);
    let future = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": [good.clone(), event("u5", &future)]}))).await;
    assert_eq!(invalid_field(&r), ["events[1].timestamp"]);

    // Nothing of the refused batches was stored.
    let r = app.call(Method::GET, &dashboard_path(&acme, "2026-10-01", "2026-10-01"), &admin, None).await;
    assert_eq!(r.json()["total_users"], 0);
    let r = app.call(Method::POST, &path, &admin, Some(json!({"events": vec![good; 1000]}))).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = app.call(Method::GET, &dashboard_path(&acme, "2026-10-01", "2026-10-01"), &admin, None).await;
    assert_eq!((r.json()["total_users"].clone(), r.json()["events_per_user"].clone()), (json!(1), json!(1000.0)));
}

/// A dataset as the Firebase BigQuery export writes it (INT64 values as strings).
fn bigquery_ndjson(events: &[Ev]) -> String {
    let mut out = String::new();
    for e in events {
        let platform = e.platform.to_ascii_uppercase();
        let row = json!({
            "event_date": e.day().format("%Y%m%d").to_string(), "event_timestamp": e.micros.to_string(),
            "event_name": e.name, "user_pseudo_id": e.user, "user_id": null, "platform": platform,
            "event_params": [
                {"key": "ga_session_id", "value": {"int_value": e.session}},
                {"key": "engagement_time_msec", "value": {"int_value": e.msec.to_string()}},
                {"key": "firebase_screen", "value": {"string_value": "Home"}},
            ],
            "device": {"category": "mobile"}, "geo": {"country": "Germany"},
        });
        out.push_str(&row.to_string());
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn the_cli_imports_a_bigquery_export() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", None).await;
    let dir = app.stop().await;
    let events = dataset();
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, bigquery_ndjson(&events) + "{\"event_name\": \"broken\"}\n").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["analytics", "import", "--customer", &acme])
        .envs(crate::helpers::store_env(dir.path()))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("imported {} events", events.len())), "{stdout}");
    assert!(stdout.contains("(1 skipped)"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("imported"), "no progress line");

    let app = TestApp::spawn_in(dir).await;
    let admin = app.admin_token().await;
    assert_dashboards(&app, &admin, &acme, &events, "local").await;
}
