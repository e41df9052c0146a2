//! `GET /admin/backup`: a consistent snapshot of the running store, streamed to an admin. The server holds
//! the redb file (one process at a time), so an online backup has to come from the server itself; the
//! `portal backup --server` command is its client.

use std::path::{Path, PathBuf};

use poem::Body;
use poem_openapi::{payload::Binary, ApiResponse, OpenApi, Tags};
use portal_core::{Admin, Error, Store};
use tokio::sync::Mutex;

#[derive(Tags)]
enum OperationsTag {
    /// Operating the portal: backups
    Operations,
}

/// Prefix of the temporary snapshot files written into the data directory.
const SNAPSHOT_PREFIX: &str = ".snapshot-";

#[derive(ApiResponse)]
enum SnapshotResponse {
    /// The snapshot: a redb file with every table as of one moment. Save it with its checksum and restore
    /// it with `portal restore`.
    #[oai(status = 200)]
    Ok(
        Binary<Body>,
        /// Lower-case hex SHA-256 of the body.
        #[oai(header = "X-Snapshot-Sha256")]
        String,
        /// Length of the body in bytes.
        #[oai(header = "X-Snapshot-Size")]
        u64,
        /// Tables in the snapshot.
        #[oai(header = "X-Snapshot-Tables")]
        u64,
        /// Rows in the snapshot, all tables together.
        #[oai(header = "X-Snapshot-Rows")]
        u64,
    ),
}

pub struct BackupApi {
    store: Store,
    data_dir: PathBuf,
    /// One snapshot at a time: each needs disk space the size of the store.
    running: Mutex<()>,
}

impl BackupApi {
    pub fn new(store: Store, data_dir: PathBuf) -> Self {
        Self { store, data_dir, running: Mutex::new(()) }
    }
}

#[OpenApi(prefix_path = "/admin", tag = "OperationsTag::Operations")]
impl BackupApi {
    /// Back up the store (admin)
    ///
    /// Copies every table as seen by one read transaction into a new redb file and streams it;
    /// requests keep being served meanwhile and writes that commit during the copy are not in it. The
    /// `X-Snapshot-Sha256` header carries the body's checksum. One snapshot is taken at a time.
    #[oai(path = "/backup", method = "get")]
    async fn backup(&self, _admin: Admin) -> Result<SnapshotResponse, Error> {
        let _one_at_a_time = self.running.lock().await;
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || remove_stale_snapshots(&dir)).await?;
        let path = self.data_dir.join(format!("{SNAPSHOT_PREFIX}{}.redb", uuid::Uuid::now_v7()));
        let summary = self.store.snapshot(path.clone()).await?;
        let file = tokio::fs::File::open(&path).await?;
        // The open handle keeps the data readable until the body is sent; nothing is left behind.
        tokio::fs::remove_file(&path).await?;
        tracing::info!(tables = summary.tables, rows = summary.rows, bytes = summary.bytes, "snapshot taken");
        // A copy of everything leaves the server: the audit trail says who took it.
        let checksum = summary.sha256.clone();
        self.store
            .write(move |tx| portal_core::audit::record(tx, "operations", "backup", checksum.clone(), None))
            .await?;
        Ok(SnapshotResponse::Ok(
            Binary(Body::from_async_read(file)),
            summary.sha256,
            summary.bytes,
            summary.tables as u64,
            summary.rows,
        ))
    }
}

/// Removes snapshot files a crash left in the data directory (a finished snapshot leaves none).
fn remove_stale_snapshots(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
