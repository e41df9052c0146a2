//! `portal backup` and `portal restore`. A backup comes from the running server (`--server`, which holds
//! the store file and streams a snapshot of one read transaction) or, with the server stopped, straight
//! from the data directory. Either way the file is written beside its target, synced and renamed, with
//! its SHA-256 in `FILE.sha256`. A restore needs the server stopped.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use portal_core::backup::{self, Error, Progress, Result, Summary};
use portal_core::config::{Secret, StoreConfig};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    store: StoreConfig,
    /// The backup file to write (its checksum goes to FILE.sha256).
    #[arg(long)]
    to: PathBuf,
    /// Base URL of a running portal to take the snapshot from, e.g. `http://127.0.0.1:8080`.
    /// Without it the store in --data-dir is read directly, which needs the server stopped.
    #[arg(long, env = "PORTAL_SERVER")]
    server: Option<String>,
    /// An admin's access token (from `POST /auth/login`), for --server.
    #[arg(long, env = "PORTAL_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    store: StoreConfig,
    /// The backup file (FILE.sha256 must be beside it).
    #[arg(long)]
    from: PathBuf,
    /// Replace an existing store.
    #[arg(long)]
    force: bool,
}

/// `portal backup`.
pub fn run_backup(args: BackupArgs) -> Result<()> {
    if args.to.exists() && !args.force {
        return Err(Error(format!("{} exists: pass --force to replace it", args.to.display())));
    }
    let partial = with_suffix(&args.to, ".partial");
    let _ = std::fs::remove_file(&partial);
    let taken = match &args.server {
        Some(server) => {
            let token = args.token.as_ref().ok_or_else(|| Error("--server needs --token (an admin's)".into()))?;
            download(server, token.expose(), &partial)
        }
        None => {
            let mut bar = Bar::new("rows");
            match &args.store.database_url {
                Some(_) => snapshot_database(&args.store, &partial, |p| bar.show(p)),
                None => {
                    let store_file = args.store.data_dir.join(portal_core::store::FILE_NAME);
                    backup::snapshot_file(&store_file, &partial, |p| bar.show(p))
                }
            }
        }
    };
    eprintln!();
    let summary = match taken.and_then(|s| finish(&partial, &args.to).map(|()| s)) {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    backup::write_checksum(&args.to, &summary.sha256)?;
    println!(
        "backup written to {} ({} tables, {} rows, {} bytes)",
        args.to.display(),
        summary.tables,
        summary.rows,
        summary.bytes
    );
    println!("sha256 {} (in {})", summary.sha256, backup::checksum_path(&args.to).display());
    Ok(())
}

/// Copies one read transaction of a PostgreSQL store into `dest` (other portals may go on writing).
fn snapshot_database(store: &StoreConfig, dest: &Path, progress: impl FnMut(Progress)) -> Result<Summary> {
    let store = portal_core::Store::open_config(store).map_err(|e| Error(e.to_string()))?;
    // A read may run twice (not this one: its first statement is no point read), so it holds its
    // outcome and `progress` through cells.
    let (progress, taken) = (RefCell::new(progress), RefCell::new(None));
    store
        .read_blocking(|tx| {
            *taken.borrow_mut() = Some(backup::snapshot(tx, dest, &mut *progress.borrow_mut()));
            Ok(())
        })
        .map_err(|e| Error(e.to_string()))?;
    taken.into_inner().unwrap_or_else(|| Err(Error("the store was not read".into())))
}

/// `portal restore`.
pub fn run_restore(args: RestoreArgs) -> Result<()> {
    let (restored, into) = match &args.store.database_url {
        Some(url) => {
            let schema = &args.store.database_schema;
            (backup::restore_postgres(&args.from, url, schema, args.force)?, format!("database schema {schema:?}"))
        }
        None => (
            backup::restore(&args.from, &args.store.data_dir, args.force)?,
            args.store.data_dir.join(portal_core::store::FILE_NAME).display().to_string(),
        ),
    };
    println!(
        "restored {} into {into} ({} tables, {} rows, sha256 {})",
        args.from.display(),
        restored.tables,
        restored.rows,
        restored.sha256
    );
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Moves the finished file into place durably.
fn finish(partial: &Path, to: &Path) -> Result<()> {
    std::fs::rename(partial, to)?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

/// Fetches a snapshot from a running portal into `dest`, checking its size and checksum.
fn download(server: &str, token: &str, dest: &Path) -> Result<Summary> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(fetch(server, token, dest))
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn fetch(server: &str, token: &str, dest: &Path) -> Result<Summary> {
    let url = format!("{}/admin/backup", server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error(format!("cannot build an HTTP client: {e}")))?;
    let mut resp =
        client.get(&url).bearer_auth(token).send().await.map_err(|e| Error(format!("cannot reach {url}: {e}")))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message =
            body.get("error").and_then(|e| e.get("message")).and_then(|m| m.as_str()).unwrap_or("no error message");
        return Err(Error(format!("{url} answered {status}: {message}")));
    }
    let expected = resp
        .headers()
        .get("x-snapshot-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| Error(format!("{url} sent no X-Snapshot-Sha256 header")))?;
    let size = header_u64(&resp, "x-snapshot-size").unwrap_or(0);
    let tables = header_u64(&resp, "x-snapshot-tables").unwrap_or(0) as usize;
    let rows = header_u64(&resp, "x-snapshot-rows").unwrap_or(0);
    let mut file = tokio::fs::File::options().write(true).create_new(true).open(dest).await?;
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut bar = Bar::new("bytes");
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error(format!("download from {url} broke off: {e}")))? {
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
        received += chunk.len() as u64;
        bar.show(Progress { rows_done: received, rows_total: size.max(received) });
    }
    file.sync_all().await?;
    let sha256 = backup::hex(&hasher.finalize());
    if received != size || sha256 != expected {
        return Err(Error(format!(
            "the snapshot arrived damaged: {received} of {size} bytes, sha256 {sha256}, expected {expected}"
        )));
    }
    Ok(Summary { tables, rows, bytes: received, sha256 })
}

/// A one-line progress bar on stderr, redrawn when the whole percentage changes.
pub(crate) struct Bar {
    task: &'static str,
    unit: &'static str,
    last: Option<u64>,
}

impl Bar {
    fn new(unit: &'static str) -> Self {
        Self::of("backup", unit)
    }

    /// A bar for `task`, counting `unit`.
    pub(crate) fn of(task: &'static str, unit: &'static str) -> Self {
        Self { task, unit, last: None }
    }

    pub(crate) fn show(&mut self, p: Progress) {
        let percent = p.percent();
        if self.last == Some(percent) {
            return;
        }
        self.last = Some(percent);
        let filled = (percent / 5) as usize;
        eprint!(
            "\r{} [{}{}] {percent:>3}% {}/{} {}",
            self.task,
            "#".repeat(filled),
            ".".repeat(20 - filled),
            p.rows_done,
            p.rows_total,
            self.unit
        );
        let _ = std::io::stderr().flush();
    }
}
