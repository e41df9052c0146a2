//! A local stand-in for Google's APIs, answering in their documented JSON formats: the OAuth token
//! endpoint (JWT bearer grant, RS256 assertion checked against the service account's public key), the
//! Firebase Management API's `analyticsDetails`, and the Analytics Data API's `runReport` computed from
//! raw events (dimensions `date`, `eventName`, `platform`; the metrics the portal asks for; `streamId`
//! filters; weekly cohort reports). Errors use Google's `{"error":{"code","message","status"}}` body.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use chrono::NaiveDate;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Form, Path};
use poem::{get, handler, post, EndpointExt, Request, Response, Route, Server};
use serde_json::{json, Value};

use super::dataset::{date, Ev};

pub const PROJECT: &str = "acme-analytics";
pub const PROPERTY: &str = "properties/123456789";
pub const APP_ID: &str = "1:111:android:aa11";
pub const STREAM: &str = "555";
pub const OTHER_APP_ID: &str = "1:111:web:bb22";
pub const OTHER_STREAM: &str = "777";
const CLIENT_EMAIL: &str = "portal-reader@acme-analytics.iam.gserviceaccount.com";
const KEY_ID: &str = "test-key-1";

pub struct State {
    public_key_der: Vec<u8>,
    token_uri: String,
    /// (stream id, event)
    events: Vec<(String, Ev)>,
    /// Access tokens Google still accepts (tests clear it to expire them).
    pub issued: Mutex<HashSet<String>>,
    /// Statuses the next `runReport` calls answer with, one each, before answering normally.
    pub failures: Mutex<VecDeque<u16>>,
    pub tokens_issued: AtomicUsize,
    pub reports_served: AtomicUsize,
}

pub struct Google {
    pub state: Arc<State>,
    pub base: String,
    /// The service-account key file, as Google hands it out.
    pub credentials: Value,
    _server: tokio::task::JoinHandle<()>,
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

fn reply(status: u16, body: Value) -> Response {
    Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

fn google_error(code: u16, message: &str) -> Response {
    reply(code, json!({"error": {"code": code, "message": message, "status": status_name(code)}}))
}

impl State {
    fn authorized(&self, req: &Request) -> bool {
        let bearer = req.header("authorization").and_then(|h| h.strip_prefix("Bearer "));
        bearer.is_some_and(|t| self.issued.lock().unwrap().contains(t))
    }
}

#[handler]
fn token_endpoint(state: Data<&Arc<State>>, form: Form<HashMap<String, String>>) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return reply(400, json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}));
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&state.public_key_der);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&state.token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    let decoded = match jsonwebtoken::decode::<Value>(&assertion, &key, &validation) {
        Ok(d) => d,
        Err(e) => return reply(400, json!({"error": "invalid_grant", "error_description": format!("{e}")})),
    };
    let scope = decoded.claims["scope"].as_str().unwrap_or_default();
    let exp_ok = decoded.claims["exp"].as_i64().unwrap_or(0) - decoded.claims["iat"].as_i64().unwrap_or(0) <= 3600;
    if decoded.header.kid.as_deref() != Some(KEY_ID)
        || !scope.split(' ').any(|s| s == "https://www.googleapis.com/auth/analytics.readonly")
        || !exp_ok
    {
        return reply(400, json!({"error": "invalid_scope", "error_description": "bad assertion"}));
    }
    let n = state.tokens_issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("ya29.test-{n}");
    state.issued.lock().unwrap().insert(token.clone());
    reply(200, json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
}

#[handler]
fn analytics_details(state: Data<&Arc<State>>, req: &Request, project: Path<String>) -> Response {
    if !state.authorized(req) {
        return google_error(401, "Request had invalid authentication credentials.");
    }
    if project.0 != PROJECT {
        return google_error(404, "Requested entity was not found.");
    }
    reply(
        200,
        json!({
            "name": format!("projects/{PROJECT}/analyticsDetails"),
            "analyticsProperty": {"id": PROPERTY, "displayName": "Acme", "analyticsAccountId": "99"},
            "streamMappings": [
                {"app": format!("projects/{PROJECT}/androidApps/{APP_ID}"), "streamId": STREAM},
                {"app": format!("projects/{PROJECT}/webApps/{OTHER_APP_ID}"), "streamId": OTHER_STREAM,
                 "measurementId": "G-TEST"}
            ]
        }),
    )
}

#[handler]
fn run_report(state: Data<&Arc<State>>, req: &Request, rest: Path<String>, body: poem::web::Json<Value>) -> Response {
    if !state.authorized(req) {
        return google_error(401, "Request had invalid authentication credentials.");
    }
    if let Some(code) = state.failures.lock().unwrap().pop_front() {
        return google_error(code, "Exhausted property tokens for a project per hour.");
    }
    if rest.0 != format!("{PROPERTY}:runReport") {
        return google_error(404, "Property not found.");
    }
    state.reports_served.fetch_add(1, Ordering::SeqCst);
    reply(200, report(&state.events, &body.0))
}

/// Starts the server with `events` as the property's data, each tagged with its stream.
pub async fn start(events: Vec<(String, Ev)>) -> Google {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    let token_uri = format!("{base}/token");
    let credentials = json!({
        "type": "service_account", "project_id": PROJECT, "private_key_id": KEY_ID, "private_key": pem,
        "client_email": CLIENT_EMAIL, "client_id": "1234567890", "token_uri": token_uri,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    });
    let state = Arc::new(State {
        public_key_der: pair.public_key().as_ref().to_vec(),
        token_uri,
        events,
        issued: Mutex::new(HashSet::new()),
        failures: Mutex::new(VecDeque::new()),
        tokens_issued: AtomicUsize::new(0),
        reports_served: AtomicUsize::new(0),
    });
    let app = Route::new()
        .at("/token", post(token_endpoint))
        .at("/v1beta1/projects/:project/analyticsDetails", get(analytics_details))
        .at("/v1beta/*rest", post(run_report))
        .data(Arc::clone(&state));
    let acceptor = TcpAcceptor::from_tokio(listener).unwrap();
    let server = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(app).await;
    });
    Google { state, base, credentials, _server: server }
}

struct SessionInfo {
    first: i64,
    engaged: bool,
}

fn platform_value(p: &str) -> &'static str {
    match p {
        "ios" => "iOS",
        "android" => "Android",
        "web" => "web",
        _ => "(not set)",
    }
}

fn range_of(v: &Value) -> (NaiveDate, NaiveDate) {
    (date(v["startDate"].as_str().unwrap()), date(v["endDate"].as_str().unwrap()))
}

fn names(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|x| x["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn response(dims: &[String], metrics: &[String], rows: Vec<(Vec<String>, Vec<String>)>) -> Value {
    let mut doc = json!({
        "dimensionHeaders": dims.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
        "metricHeaders": metrics.iter().map(|m| json!({"name": m,
            "type": if m == "userEngagementDuration" { "TYPE_SECONDS" } else { "TYPE_INTEGER" }})).collect::<Vec<_>>(),
        "metadata": {"currencyCode": "USD", "timeZone": "Etc/UTC"},
        "kind": "analyticsData#runReport",
    });
    if !rows.is_empty() {
        doc["rowCount"] = json!(rows.len());
        doc["rows"] = rows
            .into_iter()
            .map(|(d, m)| {
                json!({"dimensionValues": d.iter().map(|v| json!({"value": v})).collect::<Vec<_>>(),
                       "metricValues": m.iter().map(|v| json!({"value": v})).collect::<Vec<_>>()})
            })
            .collect();
    }
    doc
}

/// A `RunReportResponse` for `body`, computed from the raw events.
fn report(all: &[(String, Ev)], body: &Value) -> Value {
    let stream = body["dimensionFilter"]["filter"]["stringFilter"]["value"].as_str();
    let events: Vec<&Ev> = all.iter().filter(|(s, _)| stream.is_none_or(|id| s == id)).map(|(_, e)| e).collect();
    let mut first_seen: HashMap<&str, NaiveDate> = HashMap::new();
    let mut sessions: HashMap<(&str, &str), (i64, u64, u64)> = HashMap::new();
    for e in &events {
        let f = first_seen.entry(&e.user).or_insert(e.day());
        *f = (*f).min(e.day());
        let s = sessions.entry((&e.user, &e.session)).or_insert((e.micros, 0, 0));
        s.0 = s.0.min(e.micros);
        s.1 += 1;
        s.2 += e.msec;
    }
    let sessions: HashMap<(&str, &str), SessionInfo> = sessions
        .into_iter()
        .map(|(k, (first, n, msec))| (k, SessionInfo { first, engaged: n >= 2 || msec >= 10_000 }))
        .collect();
    let dims = names(&body["dimensions"]);
    let metrics = names(&body["metrics"]);

    if let Some(spec) = body.get("cohortSpec") {
        let cohort = &spec["cohorts"][0];
        let (cs, ce) = range_of(&cohort["dateRange"]);
        let range = &spec["cohortsRange"];
        assert_eq!(range["granularity"], "WEEKLY");
        let members: HashSet<&str> =
            first_seen.iter().filter(|(_, d)| cs <= **d && **d <= ce).map(|(u, _)| *u).collect();
        let mut rows = Vec::new();
        for n in range["startOffset"].as_u64().unwrap_or(0)..=range["endOffset"].as_u64().unwrap() {
            let (from, to) = (cs + chrono::Days::new(7 * n), cs + chrono::Days::new(7 * n + 6));
            let back: HashSet<&str> = events
                .iter()
                .filter(|e| members.contains(e.user.as_str()) && from <= e.day() && e.day() <= to)
                .map(|e| e.user.as_str())
                .collect();
            let values = metrics
                .iter()
                .map(|m| match m.as_str() {
                    "cohortActiveUsers" => back.len().to_string(),
                    "cohortTotalUsers" => members.len().to_string(),
                    other => panic!("unexpected cohort metric {other}"),
                })
                .collect();
            let dim_values = dims
                .iter()
                .map(|d| match d.as_str() {
                    "cohort" => cohort["name"].as_str().unwrap().to_string(),
                    "cohortNthWeek" => format!("{n:04}"),
                    other => panic!("unexpected cohort dimension {other}"),
                })
                .collect();
            rows.push((dim_values, values));
        }
        return response(&dims, &metrics, rows);
    }

    let (start, end) = range_of(&body["dateRanges"][0]);
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in events.iter().filter(|e| start <= e.day() && e.day() <= end) {
        let key = dims
            .iter()
            .map(|d| match d.as_str() {
                "date" => e.day().format("%Y%m%d").to_string(),
                "eventName" => e.name.clone(),
                "platform" => platform_value(e.platform).to_string(),
                other => panic!("unexpected dimension {other}"),
            })
            .collect();
        groups.entry(key).or_default().push(e);
    }
    let mut rows: Vec<(Vec<String>, Vec<String>)> = groups
        .into_iter()
        .map(|(key, evs)| {
            let users: HashSet<&str> = evs.iter().map(|e| e.user.as_str()).collect();
            let started: Vec<&SessionInfo> = evs
                .iter()
                .filter_map(|e| sessions.get(&(e.user.as_str(), e.session.as_str())).filter(|s| s.first == e.micros))
                .collect();
            let values = metrics
                .iter()
                .map(|m| match m.as_str() {
                    "totalUsers" => users.len().to_string(),
                    "newUsers" => users.iter().filter(|u| (start..=end).contains(&first_seen[**u])).count().to_string(),
                    "sessions" => started.len().to_string(),
                    "engagedSessions" => started.iter().filter(|s| s.engaged).count().to_string(),
                    "eventCount" => evs.len().to_string(),
                    "userEngagementDuration" => {
                        format!("{:.3}", evs.iter().map(|e| e.msec).sum::<u64>() as f64 / 1000.0)
                    }
                    other => panic!("unexpected metric {other}"),
                })
                .collect();
            (key, values)
        })
        .collect();
    if let Some(order) = body["orderBys"].as_array() {
        let metric_at = |name: &str| metrics.iter().position(|m| m == name).unwrap();
        let dim_at = |name: &str| dims.iter().position(|d| d == name).unwrap();
        rows.sort_by(|a, b| {
            for o in order {
                let desc = o["desc"].as_bool().unwrap_or(false);
                let ord = if let Some(m) = o["metric"]["metricName"].as_str() {
                    let i = metric_at(m);
                    a.1[i].parse::<f64>().unwrap().total_cmp(&b.1[i].parse::<f64>().unwrap())
                } else {
                    let i = dim_at(o["dimension"]["dimensionName"].as_str().unwrap());
                    a.0[i].cmp(&b.0[i])
                };
                let ord = if desc { ord.reverse() } else { ord };
                if ord.is_ne() {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    if let Some(limit) = body["limit"].as_str().and_then(|l| l.parse::<usize>().ok()) {
        rows.truncate(limit);
    }
    response(&dims, &metrics, rows)
}
