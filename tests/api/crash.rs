//! Crash safety: the real `portal` binary takes concurrent writes (customers, proposals, invoices, manual
//! payments) and is killed with SIGKILL at a random moment, again and again. After each kill the file must
//! pass redb's integrity check and, once restarted, the portal must show every acknowledged write and a
//! consistent state: invoices of a proposal sum to its total, invoice numbers have no gaps, and
//! `/billing/stats` (running totals) equals the sums of the invoice lists. `scripts/crash-test` runs more
//! cycles through `PORTAL_CRASH_CYCLES`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET};

const WRITERS: usize = 4;

/// What the portal acknowledged (answered with a 2xx) before it was killed.
#[derive(Default, Clone)]
struct Ledger {
    writes: u64,
    customers: BTreeSet<String>,
    /// proposal id → total in cents
    proposals: BTreeMap<String, i64>,
    /// invoice id → total in cents
    invoices: BTreeMap<String, i64>,
    paid: BTreeSet<String>,
}

fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not an amount: {v}")) * 100.0).round() as i64
}

/// A running `portal serve` child on a port it chose itself.
pub(crate) struct Server {
    pub child: Child,
    pub base: String,
    /// Every line the server has logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }
}

async fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[]).await
}

/// Starts `portal serve` on `data_dir` with extra environment variables (no mail server unless they name one).
pub(crate) async fn start_with(data_dir: &Path, env: &[(&str, String)]) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portal"));
    command.env_remove("PORTAL_SMTP_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json", "--rate-limit", "off"])
        .envs(crate::helpers::store_env(data_dir))
        .env("PORTAL_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("PORTAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PORTAL_JWT_SECRET", JWT_SECRET)
        .env("PORTAL_LOG", "info")
        .env_remove("STRIPE_SECRET_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portal starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let keep = log.clone();
    // Read the address from the start-up log, then keep draining so the server never blocks on a full pipe.
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            keep.lock().unwrap().push(line.clone());
            if line.contains("portal listening") {
                let parsed: Value = serde_json::from_str(&line).unwrap_or_default();
                if let (Some(tx), Some(addr)) = (tx.take(), parsed["fields"]["addr"].as_str()) {
                    let _ = tx.send(addr.to_string());
                }
            }
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("portal listens within 60 s")
        .expect("portal printed its address");
    Server { child, base: format!("http://{addr}"), log }
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub(crate) async fn connect(base: &str) -> Client {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let r = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("login");
        let token = r.json::<Value>().await.unwrap()["access_token"].as_str().expect("token").to_string();
        Client { http, base: base.to_string(), token }
    }

    /// `Some(body)` for a 2xx; `None` when the connection broke (the server died); panics on any other
    /// answer, which would be a bug rather than a crash.
    pub(crate) async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status();
        let text = resp.text().await.ok()?;
        assert!(status.is_success(), "{path} answered {status}: {text}");
        Some(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON") })
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await.expect("the restarted portal answers")
    }

    /// Every page of a list endpoint.
    pub(crate) async fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}limit=200");
        loop {
            let resp = self.http.get(format!("{}{url}", self.base)).bearer_auth(&self.token).send().await.unwrap();
            let next = resp.headers().get("x-next-cursor").and_then(|v| v.to_str().ok()).map(str::to_string);
            let page: Value = resp.json().await.unwrap();
            out.extend(page.as_array().expect("a list").iter().cloned());
            match next {
                Some(cursor) => url = format!("{path}{sep}limit=200&cursor={cursor}"),
                None => return out,
            }
        }
    }
}

/// One writer: customer → proposal → accept → invoices → pay the first, until the server dies.
async fn write_until_killed(client: Arc<Client>, ledger: Arc<Mutex<Ledger>>, worker: usize) {
    use reqwest::Method;
    for n in 0.. {
        let body = json!({"name": "Crash", "company_name": format!("Crash {worker}-{n}"),
            "billing_email": "crash@example.com", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
        let Some(c) = client.send(Method::POST, "/customers", Some(body)).await else { return };
        let cid = c["id"].as_str().unwrap().to_string();
        ledger.lock().unwrap().writes += 1;
        ledger.lock().unwrap().customers.insert(cid.clone());

        let total = 1000 + (worker * 1000 + n) as i64;
        let body = json!({"customer_id": cid, "title": "Work", "total_amount": total as f64 / 100.0,
            "billing_schedule": [{"percentage": 30, "milestone": "A"}, {"percentage": 70, "milestone": "B"}]});
        let Some(p) = client.send(Method::POST, "/proposals", Some(body)).await else { return };
        let pid = p["id"].as_str().unwrap().to_string();
        ledger.lock().unwrap().writes += 1;
        let Some(_) = client.send(Method::POST, &format!("/proposals/{pid}/accept"), None).await else { return };
        ledger.lock().unwrap().writes += 1;
        ledger.lock().unwrap().proposals.insert(pid.clone(), total);

        let body = json!({"proposal_id": pid});
        let Some(invoices) = client.send(Method::POST, "/billing/generate-from-proposal", Some(body)).await else {
            return;
        };
        let invoices = invoices.as_array().expect("invoices").clone();
        {
            let mut l = ledger.lock().unwrap();
            l.writes += 1;
            for i in &invoices {
                l.invoices.insert(i["id"].as_str().unwrap().to_string(), cents(&i["total_amount"]));
            }
        }
        let first = invoices[0]["id"].as_str().unwrap().to_string();
        let body = json!({"payment_method": "bank_transfer"});
        let Some(_) = client.send(Method::POST, &format!("/billing/invoices/{first}/mark-paid"), Some(body)).await
        else {
            return;
        };
        let mut l = ledger.lock().unwrap();
        l.writes += 1;
        l.paid.insert(first);
    }
}

/// After a kill: the store (its file with what the journal holds applied) passes redb's integrity check
/// (opening it repairs what a crash may leave).
fn file_is_sound(data_dir: &Path) -> bool {
    let path = data_dir.join(portal_core::store::FILE_NAME);
    match portal_core::store::open_database(&path) {
        Ok(mut db) => db.check_integrity().unwrap_or(false),
        Err(_) => false,
    }
}

/// Compares the restarted portal with the ledger; returns (missing, inconsistencies).
async fn verify(client: &Client, ledger: &Ledger) -> (u64, u64) {
    let mut missing = 0;
    let mut wrong = Vec::new();
    let customers = client.all("/customers").await;
    let listed: BTreeSet<String> = customers.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    missing += ledger.customers.difference(&listed).count() as u64;

    let mut invoices = Vec::new();
    for cid in &listed {
        invoices.extend(client.all(&format!("/billing/invoices/customer/{cid}")).await);
    }
    let by_id: BTreeMap<&str, &Value> = invoices.iter().map(|i| (i["id"].as_str().unwrap(), i)).collect();
    for (id, total) in &ledger.invoices {
        match by_id.get(id.as_str()) {
            None => missing += 1,
            Some(i) if cents(&i["total_amount"]) != *total => wrong.push(format!("invoice {id} changed its total")),
            Some(_) => {}
        }
    }
    for id in &ledger.paid {
        if by_id.get(id.as_str()).is_some_and(|i| i["status"] != "paid") {
            missing += 1;
        }
    }
    // A proposal is invoiced whole or not at all.
    let mut per_proposal: BTreeMap<&str, i64> = BTreeMap::new();
    for i in &invoices {
        if let Some(pid) = i["proposal_id"].as_str() {
            *per_proposal.entry(pid).or_default() += cents(&i["amount"]);
        }
    }
    for (pid, sum) in &per_proposal {
        let total = cents(&client.get(&format!("/proposals/{pid}")).await["total_amount"]);
        if *sum != total {
            wrong.push(format!("proposal {pid}: invoices sum to {sum}, total {total}"));
        }
    }
    for pid in ledger.proposals.keys() {
        let p = client.get(&format!("/proposals/{pid}")).await;
        if p["status"] != "accepted" {
            missing += 1;
        }
    }
    // Numbers are gapless: 1..=N within the year.
    let mut numbers: Vec<u64> =
        invoices.iter().map(|i| i["invoice_number"].as_str().unwrap()[9..].parse().unwrap()).collect();
    numbers.sort_unstable();
    if numbers != (1..=numbers.len() as u64).collect::<Vec<_>>() {
        wrong.push(format!("invoice numbers have gaps or repeats: {numbers:?}"));
    }
    // Running totals equal the lists.
    let stats = client.get("/billing/stats").await;
    let sum = |status: &str| {
        invoices.iter().filter(|i| i["status"] == status).map(|i| cents(&i["total_amount"])).sum::<i64>()
    };
    let count = |status: &str| invoices.iter().filter(|i| i["status"] == status).count() as u64;
    for status in ["pending", "paid", "overdue", "cancelled"] {
        if stats["invoices_by_status"][status].as_u64() != Some(count(status)) {
            wrong.push(format!("stats count {status} {} != {}", stats["invoices_by_status"][status], count(status)));
        }
    }
    let usd = stats["currencies"].as_array().and_then(|c| c.iter().find(|c| c["currency"] == "USD"));
    let (revenue, outstanding) =
        usd.map(|u| (cents(&u["revenue_all_time"]), cents(&u["outstanding_amount"]))).unwrap_or((0, 0));
    if revenue != sum("paid") || outstanding != sum("pending") + sum("overdue") {
        wrong.push(format!("stats totals {revenue}/{outstanding} differ from the lists"));
    }
    let by_status: u64 = stats["customers_by_status"].as_object().unwrap().values().filter_map(Value::as_u64).sum();
    if by_status != listed.len() as u64 {
        wrong.push(format!("stats count {by_status} customers, the list {}", listed.len()));
    }
    for w in &wrong {
        eprintln!("inconsistent: {w}");
    }
    (missing, wrong.len() as u64)
}

/// Runs `cycles` write-kill-restart-verify rounds on one data dir; returns (writes, missing, corrupt).
pub async fn crash_cycles(cycles: u32) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (mut missing, mut corrupt) = (0, 0);
    for _ in 0..cycles {
        let mut server = start(dir.path()).await;
        let client = Arc::new(Client::connect(&server.base).await);
        let writers: Vec<_> =
            (0..WRITERS).map(|w| tokio::spawn(write_until_killed(client.clone(), ledger.clone(), w))).collect();
        let delay = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.child.start_kill().expect("SIGKILL");
        server.child.wait().await.expect("reaped");
        for w in writers {
            w.await.expect("writer");
        }
        if !file_is_sound(dir.path()) {
            corrupt += 1;
        }
        let mut server = start(dir.path()).await;
        let client = Client::connect(&server.base).await;
        let acknowledged = ledger.lock().unwrap().clone();
        let (m, c) = verify(&client, &acknowledged).await;
        missing += m;
        corrupt += c;
        server.child.start_kill().expect("SIGKILL");
        server.child.wait().await.expect("reaped");
    }
    let writes = ledger.lock().unwrap().writes;
    (writes, missing, corrupt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let cycles = std::env::var("PORTAL_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (writes, missing, corrupt) = crash_cycles(cycles).await;
    println!("{cycles} cycles, {writes} acknowledged writes, {missing} missing, {corrupt} corrupt");
    assert!(writes > 0, "no write was acknowledged");
    assert_eq!((missing, corrupt), (0, 0));
}

/// Two portals serve one PostgreSQL database, both taking writes, until one is killed with SIGKILL: the
/// survivor shows every write either acknowledged, numbers without gaps and consistent totals, and takes
/// over the background jobs, which only one portal runs at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_portals_on_one_database_lose_nothing_when_one_is_killed() {
    const RUNS_JOBS: &str = "this portal runs the background jobs";
    if crate::helpers::test_database().is_none() {
        eprintln!("two portals share a store on PostgreSQL only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut first = start(dir.path()).await;
    let second = start(dir.path()).await;
    let waited = tokio::time::Instant::now();
    while !first.logged(RUNS_JOBS) {
        assert!(waited.elapsed() < Duration::from_secs(10), "the first portal did not take the jobs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (a, b) = (Arc::new(Client::connect(&first.base).await), Arc::new(Client::connect(&second.base).await));
    let on_first: Vec<_> =
        (0..WRITERS).map(|w| tokio::spawn(write_until_killed(a.clone(), ledger.clone(), w))).collect();
    let on_second: Vec<_> =
        (0..WRITERS).map(|w| tokio::spawn(write_until_killed(b.clone(), ledger.clone(), WRITERS + w))).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!second.logged(RUNS_JOBS), "both portals ran the background jobs");
    first.child.start_kill().expect("SIGKILL");
    first.child.wait().await.expect("reaped");
    let at_kill = ledger.lock().unwrap().writes;
    for w in on_first {
        w.await.expect("writer");
    }
    // The survivor keeps taking writes, and takes over the jobs.
    let waited = tokio::time::Instant::now();
    while !second.logged(RUNS_JOBS) {
        assert!(waited.elapsed() < Duration::from_secs(10), "the survivor did not take over the jobs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for w in on_second {
        w.abort();
        let _ = w.await;
    }
    // The requests the aborted writers left in flight still finish on the server: let them.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let acknowledged = ledger.lock().unwrap().clone();
    assert!(
        at_kill > 0 && acknowledged.writes > at_kill,
        "writes {at_kill} before the kill, {} in all",
        acknowledged.writes
    );
    let (missing, wrong) = verify(&b, &acknowledged).await;
    println!("{} acknowledged writes on two portals, {missing} missing, {wrong} inconsistent", acknowledged.writes);
    assert_eq!((missing, wrong), (0, 0));
}

/// A session ended on one portal (logout) is refused by another portal on the same database within a
/// second, although the other one had just accepted it.
#[tokio::test]
async fn a_session_ended_on_one_portal_is_refused_on_the_other_within_a_second() {
    if crate::helpers::test_database().is_none() {
        eprintln!("two portals share a store on PostgreSQL only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path()).await;
    let second = start(dir.path()).await;
    let client = Client::connect(&first.base).await;
    let http = reqwest::Client::new();
    let me = |base: &str| http.get(format!("{base}/users/me")).bearer_auth(&client.token).send();
    // The second portal knows the session (and keeps it in memory).
    for _ in 0..3 {
        assert_eq!(me(&second.base).await.unwrap().status(), 200);
    }
    let out = http.post(format!("{}/auth/logout", first.base)).bearer_auth(&client.token).send().await.unwrap();
    assert_eq!(out.status(), 204);
    let ended = std::time::Instant::now();
    loop {
        let answer = me(&second.base).await.unwrap();
        if answer.status() == 401 {
            let body: Value = answer.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
            break;
        }
        assert!(ended.elapsed() < Duration::from_secs(1), "the other portal still accepts an ended session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("refused on the other portal {} ms after the logout", ended.elapsed().as_millis());
}
