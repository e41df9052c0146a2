//! Backups and restores: a snapshot taken under concurrent writes holds exactly what its read transaction
//! saw, `portal backup` works against the running server and offline, and `portal restore` checks the
//! checksum, refuses to clobber or to touch a running store, and gives a portal that starts and serves
//! the data.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use portal_core::backup::Source;
use portal_core::redb::{self, ReadableDatabase};
use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

pub(crate) type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

/// Every row of every table `tx` sees.
pub(crate) fn dump(tx: &impl Source) -> Dump {
    let mut out = Dump::new();
    for name in tx.names().expect("tables") {
        let mut rows = Vec::new();
        tx.each(&name, &mut |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("rows");
        out.insert(name, rows);
    }
    out
}

/// `dump` as a backup holds it: without the tables of secrets.
fn without_secrets(mut dump: Dump) -> Dump {
    dump.retain(|name, _| !portal_core::backup::is_secret(name));
    dump
}

/// Opens read-only: a writable open rewrites the file's header, which would change its checksum.
fn dump_file(path: &Path) -> Dump {
    let db = redb::ReadOnlyDatabase::open(path).expect("snapshot opens");
    let tx = db.begin_read().expect("read");
    dump(&tx)
}

/// Creates customers from 4 tasks until stopped; collects the ids the server acknowledged.
struct WriteLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    count: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WriteLoad {
    fn start(app: &TestApp, token: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let tasks = (0..4)
            .map(|worker| {
                let (client, url, token) = (app.client.clone(), app.url("/customers"), token.to_string());
                let (stop, acked, count) = (stop.clone(), acked.clone(), count.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = json!({"name": "Load", "company_name": format!("Load {worker}-{n}"),
                            "billing_email": "load@example.com", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
                        let r = client.post(&url).bearer_auth(&token).json(&body).send().await.expect("sent");
                        let status = r.status();
                        let answer = r.json::<serde_json::Value>().await.expect("json");
                        assert_eq!(status, 201, "{answer}");
                        let id = answer["id"].as_str().unwrap().to_string();
                        acked.lock().unwrap().push(id);
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        Self { stop, acked, count, tasks }
    }

    async fn wait_for(&self, at_least: usize) {
        while self.count.load(Ordering::SeqCst) < at_least {
            assert!(!self.tasks.iter().any(|t| t.is_finished()), "a load task failed");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Runs the binary; `--data-dir D` also names the PostgreSQL schema of `D` when the tests run there.
async fn portal(args: &[&str]) -> std::process::Output {
    let data_dir = args.iter().position(|a| *a == "--data-dir").and_then(|i| args.get(i + 1));
    let store_env = data_dir.map(|dir| crate::helpers::store_env(Path::new(dir))).unwrap_or_default();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(args)
        .envs(store_env)
        .env_remove("PORTAL_DATA_DIR")
        .env_remove("PORTAL_TOKEN")
        .env_remove("PORTAL_SERVER")
        .output()
        .await
        .expect("portal runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_under_write_load_equals_its_read_transaction() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let load = WriteLoad::start(&app, &token);
    load.wait_for(20).await;

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("snap.redb");
    let target = dest.clone();
    let (summary, seen) = app
        .store
        .read(move |tx| {
            let summary = portal_core::backup::snapshot(tx, &target, |_| {}).map_err(portal_core::Error::internal)?;
            Ok((summary, dump(tx)))
        })
        .await
        .expect("snapshot");
    // Writes went on during and after the snapshot; none of the later ones may be in it.
    let after = load.count.load(Ordering::SeqCst);
    load.wait_for(after + 5).await;
    load.stop().await;

    let copy = dump_file(&dest);
    // The keys that sign access tokens stay behind.
    assert_eq!(seen["auth.secrets"].len(), 2, "{:?}", seen.keys());
    assert!(!copy.contains_key("auth.secrets"), "a backup holds no secrets");
    let seen = without_secrets(seen);
    assert_eq!(copy, seen, "the snapshot differs from its read transaction");
    assert_eq!(summary.tables, seen.len());
    assert_eq!(summary.rows, seen.values().map(|rows| rows.len() as u64).sum::<u64>());
    assert_eq!(summary.sha256, portal_core::backup::file_sha256(&dest).unwrap());
    let live = app.store.read(|tx| Ok(dump(tx))).await.unwrap();
    assert!(
        live["customers.customers"].len() > copy["customers.customers"].len(),
        "the live store should have moved on past the snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_from_the_running_server_restores_into_a_portal_that_serves_it() {
    let on_postgres = crate::helpers::test_database().is_some();
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let load = WriteLoad::start(&app, &token);
    load.wait_for(20).await;
    let before_backup = load.acked();

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("portal-backup.redb");
    let file_arg = file.to_str().unwrap();
    let server = format!("http://{}", app.addr);
    let r = portal(&["backup", "--to", file_arg, "--server", &server, "--token", &token]).await;
    assert!(r.status.success(), "backup failed: {}", text(&r.stderr));
    assert!(text(&r.stdout).contains("backup written to"), "{}", text(&r.stdout));
    assert!(text(&r.stderr).contains("100%"), "no progress shown: {}", text(&r.stderr));
    let during = load.count.load(Ordering::SeqCst);
    load.wait_for(during + 5).await;
    load.stop().await;

    // The checksum file is in sha256sum's format and matches.
    let sum = std::fs::read_to_string(out.path().join("portal-backup.redb.sha256")).unwrap();
    let checksum = portal_core::backup::file_sha256(&file).unwrap();
    assert_eq!(sum, format!("{checksum}  portal-backup.redb\n"));
    // The audit trail says which admin took it.
    let trail = app.call(Method::GET, &format!("/audit?object_id={checksum}"), &token, None).await.json();
    assert_eq!(trail[0]["action"], "backup", "{trail}");
    assert_eq!(trail[0]["role"], "admin");
    let snapshot = dump_file(&file);
    let rows: usize = snapshot.values().map(Vec::len).sum();
    assert!(text(&r.stdout).contains(&format!("{rows} rows")), "{}", text(&r.stdout));

    // Writing over an existing backup needs --force.
    let again = portal(&["backup", "--to", file_arg, "--server", &server, "--token", &token]).await;
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"), "{}", text(&again.stderr));
    // Only admins take backups.
    app.call(Method::GET, "/admin/backup", "not-a-token", None).await.assert_error(401, "unauthorized");
    let user = app.register_and_login("someone@example.com", "a-long-unusual-password").await;
    let user_token = user["access_token"].as_str().unwrap();
    app.call(Method::GET, "/admin/backup", user_token, None).await.assert_error(403, "forbidden");

    // The server holds the store: a restore over it is refused, and so is an offline backup of a redb
    // file (PostgreSQL gives a backup one consistent read however many portals write meanwhile).
    let data_dir = app.dir.path().to_str().unwrap().to_string();
    let offline =
        portal(&["backup", "--to", out.path().join("x.redb").to_str().unwrap(), "--data-dir", &data_dir]).await;
    if on_postgres {
        assert!(offline.status.success(), "{}", text(&offline.stderr));
    } else {
        assert!(!offline.status.success());
        assert!(text(&offline.stderr).contains("running portal"), "{}", text(&offline.stderr));
    }
    let over = portal(&["restore", "--from", file_arg, "--data-dir", &data_dir, "--force"]).await;
    assert!(!over.status.success());
    assert!(text(&over.stderr).contains("running portal"), "{}", text(&over.stderr));

    // Restore into a fresh directory: every row of the snapshot, nothing else.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_arg = fresh.path().to_str().unwrap();
    let r = portal(&["restore", "--from", file_arg, "--data-dir", fresh_arg]).await;
    assert!(r.status.success(), "restore failed: {}", text(&r.stderr));
    assert_eq!(dump_store(fresh.path()), snapshot);
    let twice = portal(&["restore", "--from", file_arg, "--data-dir", fresh_arg]).await;
    assert!(!twice.status.success());
    assert!(text(&twice.stderr).contains("--force"), "{}", text(&twice.stderr));

    // The restored portal starts and serves every customer acknowledged before the backup began.
    let restored = TestApp::spawn_in(fresh).await;
    let admin = restored.admin_token().await;
    let mut listed = Vec::new();
    let mut path = "/customers?limit=200".to_string();
    loop {
        let r = restored.call(Method::GET, &path, &admin, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        listed.extend(r.json().as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()));
        match r.header("x-next-cursor") {
            Some(cursor) => path = format!("/customers?limit=200&cursor={cursor}"),
            None => break,
        }
    }
    for id in &before_backup {
        assert!(listed.contains(id), "customer {id} acknowledged before the backup is missing");
    }
    assert_eq!(listed.len(), snapshot["customers.customers"].len());
    // It made keys of its own: none of the original portal's.
    let keys = |store: &portal_core::Store| store.read_blocking(|tx| Ok(dump(tx)["auth.secrets"].clone())).unwrap();
    let (original, made) = (keys(&app.store), keys(&restored.store));
    assert_eq!(made.len(), 2);
    assert!(made.iter().all(|(_, key)| original.iter().all(|(_, old)| old != key)), "a key came back from the backup");
    restored.stop().await;

    // Offline backup of a stopped store equals the store file.
    let dir = app.stop().await;
    let offline_file = out.path().join("offline.redb");
    let r =
        portal(&["backup", "--to", offline_file.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()]).await;
    assert!(r.status.success(), "offline backup failed: {}", text(&r.stderr));
    assert_eq!(dump_file(&offline_file), without_secrets(dump_store(dir.path())));
}

/// Every row of the store of `dir` (opened, read and closed again).
fn dump_store(dir: &Path) -> Dump {
    crate::helpers::open_store(dir).read_blocking(|tx| Ok(dump(tx))).unwrap()
}

#[tokio::test]
async fn restore_refuses_a_damaged_backup_and_leaves_the_store_alone() {
    let app = TestApp::spawn().await;
    let dir = app.stop().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.redb");
    let r = portal(&["backup", "--to", file.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()]).await;
    assert!(r.status.success(), "{}", text(&r.stderr));

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let target = tempfile::tempdir().unwrap();
    let r = portal(&["restore", "--from", file.to_str().unwrap(), "--data-dir", target.path().to_str().unwrap()]).await;
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("does not match its checksum"), "{}", text(&r.stderr));
    if crate::helpers::test_database().is_none() {
        assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0, "a refused restore left files behind");
    }
    assert_eq!(dump_store(target.path()), Dump::new(), "a refused restore wrote to the store");

    std::fs::remove_file(out.path().join("b.redb.sha256")).unwrap();
    let r = portal(&["restore", "--from", file.to_str().unwrap(), "--data-dir", target.path().to_str().unwrap()]).await;
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("checksum file"), "{}", text(&r.stderr));
}
