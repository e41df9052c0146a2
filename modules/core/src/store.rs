//! `Store`: the portal's one redb file. Reads run on blocking threads; writes go through one writer thread
//! (so a later change can batch several requests into one commit without touching callers) and are
//! committed durably (fsync) before `write` returns. Handlers never touch redb on the async reactor.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::table::{RawTable, ReadTx};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "portal.redb";

/// Schema versions per module (`schema:<module>` → u32 big-endian).
const META: RawTable = TableDefinition::new("core.meta");

type WriteJob = Box<dyn FnOnce(&Database) + Send>;

/// A handle to the store; clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    writer: Option<mpsc::Sender<WriteJob>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the jobs already queued; wait so the file is closed
        // cleanly when the last handle goes.
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/portal.redb`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::internal(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let db =
            Database::create(&path).map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
        Ok(Self::from_database(db, path))
    }

    /// A store that lives in memory only (to generate the OpenAPI document without touching disk).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Ok(Self::from_database(db, PathBuf::from(":memory:")))
    }

    fn from_database(db: Database, path: PathBuf) -> Self {
        let db = Arc::new(db);
        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                for job in receiver {
                    job(&writer_db);
                }
            })
            .ok();
        Self { inner: Arc::new(Inner { db, path, writer: Some(sender), thread }) }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || run_read(&db, f)).await?
    }

    /// Runs `f` in a write transaction on the writer thread and commits durably; an `Err` (or a panic)
    /// from `f` rolls everything back.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        // The request's actor goes with the write, for the audit entries it records.
        let actor = crate::audit::Actor::current();
        let f = move |tx: &WriteTransaction| actor.acting(|| f(tx));
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |db| {
            let _ = reply.send(run_write(db, f));
        });
        self.submit(job)?;
        answer.await.map_err(|_| Error::internal("the store writer stopped"))?
    }

    /// `read` for code that is not async (the command line).
    pub fn read_blocking<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        run_read(&self.inner.db, f)
    }

    /// `write` for code that is not async (the command line, start-up).
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::channel();
        let job: WriteJob = Box::new(move |db| {
            let _ = reply.send(run_write(db, f));
        });
        self.submit(job)?;
        answer.recv().map_err(|_| Error::internal("the store writer stopped"))?
    }

    fn submit(&self, job: WriteJob) -> Result<()> {
        let writer = self.inner.writer.as_ref().ok_or_else(|| Error::internal("the store is closed"))?;
        writer.send(job).map_err(|_| Error::internal("the store writer stopped"))
    }

    /// Checks that the store can be read (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        self.read(|tx| tx.get_raw(META, b"schema:core", |_| Ok(()))).await
    }
}

fn run_read<T>(db: &Database, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
    let tx = db.begin_read()?;
    f(&tx)
}

fn run_write<T>(db: &Database, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
    let tx = db.begin_write()?;
    match catch_unwind(AssertUnwindSafe(|| f(&tx))) {
        Ok(Ok(value)) => {
            tx.commit()?;
            Ok(value)
        }
        Ok(Err(e)) => {
            tx.abort()?;
            Err(e)
        }
        Err(_) => {
            let _ = tx.abort();
            Err(Error::internal("a store write panicked"))
        }
    }
}

/// Creates the core tables and checks that the file was not written by a newer portal.
pub fn install_core(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(META)?;
    crate::idempotency::install(tx)?;
    crate::audit::install(tx)?;
    let version = schema_version(tx, "core")?;
    match version {
        0 => set_schema_version(tx, "core", 1),
        1 => Ok(()),
        v => Err(Error::internal(format!(
            "the store was written by a newer portal (core schema {v}); this binary reads schema 1"
        ))),
    }
}

/// The schema version a module last migrated its tables to (0 when never installed).
pub fn schema_version(tx: &impl ReadTx, module: &str) -> Result<u32> {
    let key = format!("schema:{module}");
    tx.get_raw(META, key.as_bytes(), |bytes| {
        Ok(bytes.and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes).unwrap_or(0))
    })
}

/// Records a module's schema version (inside the migration's own transaction).
pub fn set_schema_version(tx: &WriteTransaction, module: &str, version: u32) -> Result<()> {
    let key = format!("schema:{module}");
    tx.open_table(META)?.insert(key.as_bytes(), version.to_be_bytes().as_slice())?;
    Ok(())
}
