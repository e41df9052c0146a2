//! `Store`: the portal's one redb file. Reads run on a shared snapshot (see [`crate::snapshot`]); writes
//! go through one writer thread that commits them in groups: the writes queued while the previous group
//! was committed share the next transaction and its one fsync. `write` returns only once the group holding
//! its write is durable. Handlers never wait for redb on the async reactor beyond a point read.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use redb::{Database, Durability, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::snapshot::{Snapshot, Snapshots};
use crate::table::{RawTable, ReadTx};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "portal.redb";

/// Schema versions per module (`schema:<module>` → u32 big-endian).
const META: RawTable = TableDefinition::new("core.meta");

/// The most writes one group commit holds, so the first of them never waits on an unbounded group.
const MAX_GROUP: usize = 256;

/// A queued write. `run` may be called more than once (see [`commit_group`]); `deliver` answers the
/// caller once, with the value of the run that was committed or with the error.
struct WriteJob {
    run: Box<Run>,
    deliver: Box<dyn FnOnce(Result<Value>) + Send>,
}

/// A write's closure, its return value boxed.
type Run = dyn Fn(&WriteTransaction) -> Result<Value> + Send;

/// What a write returned, typed again when it is delivered.
type Value = Box<dyn Any + Send>;

/// What became of the writes run in one transaction.
enum Ran {
    Committed(Vec<Value>),
    /// The write at this index failed (or panicked); the transaction was aborted.
    Failed(usize, Error),
    /// The transaction could not be begun or committed.
    CommitFailed(Error),
}

/// Counts committed changes to some stored data, for the in-memory copies of it. A write that changes the
/// data calls [`Changes::note`] inside its transaction; the count moves right after that transaction
/// commits (the moment readers can see it). A reader that took [`Changes::current`] before opening its
/// snapshot can later tell whether what it read may have changed since: it has not while the count stays.
pub struct Changes(AtomicU64);

impl Changes {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Called inside the write that changes the data.
    pub fn note(&'static self) {
        let queued = NOTED.with(|noted| noted.borrow_mut().as_mut().map(|list| list.push(self)).is_some());
        if !queued {
            // Not inside a store write (a raw transaction in a tool or test): count at once.
            self.bump();
        }
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Default for Changes {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// The changes noted by the write running on this thread; `None` outside a store write.
    static NOTED: RefCell<Option<Vec<&'static Changes>>> = const { RefCell::new(None) };
    /// What the writes running on this thread do once their transaction is committed; `None` outside.
    static ON_COMMIT: RefCell<Option<Vec<CommitHook>>> = const { RefCell::new(None) };
}

/// See [`on_commit`].
type CommitHook = Box<dyn FnOnce()>;

/// Runs `hook` (an in-memory consequence of a write) once the store write running on this thread is
/// committed, and never when it rolls back; a write that runs again registers again. Outside a store
/// write it runs at once.
pub fn on_commit(hook: impl FnOnce() + 'static) {
    let hook: CommitHook = Box::new(hook);
    let now = ON_COMMIT.with(|hooks| match hooks.borrow_mut().as_mut() {
        Some(list) => {
            list.push(hook);
            None
        }
        None => Some(hook),
    });
    if let Some(hook) = now {
        hook();
    }
}

/// The database and the snapshot its reads share.
struct Db {
    file: Database,
    snapshots: Snapshots,
}

/// A handle to the store; clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
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
        self.db.snapshots.clear();
        // Reads still running on blocking threads hold the database too; give them a moment to finish so
        // the file is closed (and can be opened again) once the last handle is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.db) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
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
        let db = Arc::new(Db { file: db, snapshots: Snapshots::default() });
        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_groups(&writer_db, &receiver))
            .ok();
        Self { inner: Arc::new(Inner { db, path, writer: Some(sender), thread }) }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a snapshot (a consistent view holding every acknowledged write) on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Snapshot) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || run_read(&db, f)).await?
    }

    /// Runs `f` on the writer thread, in a transaction it may share with other writes, and returns once
    /// that transaction is durable (fsynced). An `Err` (or a panic) from `f` rolls back everything `f`
    /// did and nothing else. `f` may run more than once (when another write of its group fails), so it
    /// acts on the transaction only; the caller gets the value of the run that was committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: Fn(&WriteTransaction) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        // The request's actor goes with the write, for the audit entries it records.
        let actor = crate::audit::Actor::current();
        let f = move |tx: &WriteTransaction| actor.acting(|| f(tx));
        let (reply, answer) = oneshot::channel();
        self.submit(job(f, move |result| {
            let _ = reply.send(result);
        }))?;
        answer.await.map_err(|_| Error::internal("the store writer stopped"))?
    }

    /// Runs `f` on a snapshot on the calling thread: for code that is not async (the command line),
    /// and in handlers for a read of a few keys (a point lookup), which costs microseconds (pages come from
    /// redb's cache, else one read from the OS page cache), less than the hand-off to a blocking thread and
    /// back that [`read`](Self::read) pays. Scans and anything else that may touch many pages use `read`.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Snapshot) -> Result<T>) -> Result<T> {
        run_read(&self.inner.db, f)
    }

    /// `write` for code that is not async (the command line, start-up).
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl Fn(&WriteTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::channel();
        self.submit(job(f, move |result| {
            let _ = reply.send(result);
        }))?;
        answer.recv().map_err(|_| Error::internal("the store writer stopped"))?
    }

    fn submit(&self, job: WriteJob) -> Result<()> {
        let writer = self.inner.writer.as_ref().ok_or_else(|| Error::internal("the store is closed"))?;
        writer.send(job).map_err(|_| Error::internal("the store writer stopped"))
    }

    /// Copies one read transaction of the whole store into a new redb file at `dest` (see `backup`);
    /// writes go on meanwhile and are not in the copy.
    pub async fn snapshot(&self, dest: PathBuf) -> Result<crate::backup::Summary> {
        self.read(move |tx| crate::backup::snapshot(tx, &dest, |_| {}).map_err(Error::internal)).await
    }

    /// Checks that the store can be read (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        self.read(|tx| tx.get_raw(META, b"schema:core", |_| Ok(()))).await
    }
}

fn run_read<T>(db: &Db, f: impl FnOnce(&Snapshot) -> Result<T>) -> Result<T> {
    f(&*db.snapshots.current(&db.file)?)
}

/// Wraps a write closure and the way to deliver its result into a queued job.
fn job<T, F>(f: F, deliver: impl FnOnce(Result<T>) + Send + 'static) -> WriteJob
where
    F: Fn(&WriteTransaction) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    WriteJob {
        run: Box::new(move |tx| f(tx).map(|value| Box::new(value) as Value)),
        deliver: Box::new(move |result| {
            deliver(result.and_then(|value| {
                value.downcast::<T>().map(|v| *v).map_err(|_| Error::internal("a write answered with another type"))
            }))
        }),
    }
}

/// The writer thread: takes every job queued so far (up to `MAX_GROUP`) as one group, until the store
/// closes.
fn write_groups(db: &Db, jobs: &mpsc::Receiver<WriteJob>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

/// Runs a group of writes in one transaction with one fsync, and only then answers them.
///
/// A write that fails (or panics) must leave nothing behind, but a transaction cannot drop one write's
/// changes and keep the others'. So the transaction is aborted, the writes before the failing one run
/// again in a new transaction (on the same data, with the same outcome), the failing one is answered
/// with its error, and the writes after it go on in the next transaction. Transactions before the
/// group's last are committed without fsync; the last one's fsync makes them all durable.
fn commit_group(db: &Db, group: Vec<WriteJob>) {
    let mut results: Vec<Option<Result<Value>>> = group.iter().map(|_| None).collect();
    let mut segments = VecDeque::new();
    segments.push_back(0..group.len());
    let mut unsynced = false;
    let mut failure = None;
    while let Some(segment) = segments.pop_front() {
        if segment.is_empty() {
            continue;
        }
        let last = segments.iter().all(|s| s.is_empty());
        match run_together(db, &group[segment.clone()], last) {
            Ran::Committed(values) => {
                for (i, value) in segment.zip(values) {
                    results[i] = Some(Ok(value));
                }
                unsynced = !last;
            }
            Ran::Failed(at, e) => {
                let failed = segment.start + at;
                results[failed] = Some(Err(e));
                segments.push_front(failed + 1..segment.end);
                segments.push_front(segment.start..failed);
            }
            // A failed commit may leave the file unusable: the group as a whole is not durable.
            Ran::CommitFailed(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if unsynced && failure.is_none() {
        failure = sync(db).err();
    }
    for (job, result) in group.into_iter().zip(results) {
        let result = match (result, &failure) {
            (Some(Err(own)), _) => Err(own),
            (_, Some(group_failure)) => Err(group_failure.clone()),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(Error::internal("the write was not run")),
        };
        (job.deliver)(result);
    }
}

/// Runs `jobs` in one transaction, durable (fsynced) when `durable`, until one of them fails.
fn run_together(db: &Db, jobs: &[WriteJob], durable: bool) -> Ran {
    let mut tx = match db.file.begin_write() {
        Ok(tx) => tx,
        Err(e) => return Ran::CommitFailed(e.into()),
    };
    let durability = if durable { Durability::Immediate } else { Durability::None };
    if let Err(e) = tx.set_durability(durability) {
        return Ran::CommitFailed(Error::internal(format!("cannot set the commit durability: {e}")));
    }
    NOTED.with(|noted| *noted.borrow_mut() = Some(Vec::new()));
    ON_COMMIT.with(|hooks| *hooks.borrow_mut() = Some(Vec::new()));
    let ran: std::result::Result<Vec<_>, (usize, Error)> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| match catch_unwind(AssertUnwindSafe(|| (job.run)(&tx))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err((i, e)),
            Err(_) => Err((i, Error::internal("a store write panicked"))),
        })
        .collect();
    let outcome = match ran {
        Ok(values) => match tx.commit() {
            Ok(()) => {
                db.snapshots.committed();
                Ran::Committed(values)
            }
            Err(e) => Ran::CommitFailed(e.into()),
        },
        Err((at, e)) => {
            let _ = tx.abort();
            Ran::Failed(at, e)
        }
    };
    // After the commit (or the rollback, where counting is merely cautious).
    for changes in NOTED.with(|noted| noted.borrow_mut().take()).into_iter().flatten() {
        changes.bump();
    }
    let hooks = ON_COMMIT.with(|hooks| hooks.borrow_mut().take()).unwrap_or_default();
    if matches!(outcome, Ran::Committed(_)) {
        // A panicking hook must not take the writer thread down with it.
        hooks.into_iter().for_each(|hook| drop(catch_unwind(AssertUnwindSafe(hook))));
    }
    outcome
}

/// An empty durable commit: makes the writes committed without fsync durable.
fn sync(db: &Db) -> Result<()> {
    let tx = db.file.begin_write()?;
    tx.commit()?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::task::{Context as TaskContext, Poll, Waker};

    use redb::backends::InMemoryBackend;
    use redb::{ReadableTable, StorageBackend};

    use super::*;
    use crate::error::ErrorCode;

    const DATA: RawTable = TableDefinition::new("test.data");

    /// What the test sees of the disk: fsyncs so far, and whether the next ones are held or fail.
    #[derive(Debug, Default)]
    struct DiskState {
        syncs: AtomicUsize,
        fail: AtomicBool,
        /// When set, the next fsync reports that it started and waits for the word to finish.
        hold: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    }

    #[derive(Debug)]
    struct Disk {
        memory: InMemoryBackend,
        state: Arc<DiskState>,
    }

    impl StorageBackend for Disk {
        fn len(&self) -> std::io::Result<u64> {
            self.memory.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.memory.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.memory.set_len(len)
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.memory.write(offset, data)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            let hold = self.state.hold.lock().unwrap().take();
            if let Some((started, finish)) = hold {
                let _ = started.send(());
                let _ = finish.recv();
            }
            if self.state.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("disk failure"));
            }
            self.state.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn store() -> (Store, Arc<DiskState>) {
        let state = Arc::new(DiskState::default());
        let disk = Disk { memory: InMemoryBackend::new(), state: Arc::clone(&state) };
        let db = Database::builder().create_with_backend(disk).unwrap();
        let store = Store::from_database(db, PathBuf::from(":test:"));
        store
            .write_blocking(|tx| {
                tx.open_table(DATA)?;
                Ok(())
            })
            .unwrap();
        (store, state)
    }

    fn put(tx: &WriteTransaction, key: &[u8]) -> Result<()> {
        tx.open_table(DATA)?.insert(key, b"v".as_slice())?;
        Ok(())
    }

    fn keys(store: &Store) -> Vec<Vec<u8>> {
        store
            .read_blocking(|tx| {
                let table = tx.open_table(DATA)?;
                let mut keys = Vec::new();
                for entry in table.iter()? {
                    keys.push(entry?.0.value().to_vec());
                }
                Ok(keys)
            })
            .unwrap()
    }

    type Pending<T> = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

    /// Polls once: a write is queued on its first poll. `Some` when it already finished.
    fn poll_once<T>(future: &mut Pending<T>) -> Option<Result<T>> {
        match future.as_mut().poll(&mut TaskContext::from_waker(Waker::noop())) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }

    /// Holds the writer inside a job (its own group) until the returned sender speaks, so that the
    /// writes queued meanwhile form the next group.
    fn block_writer(store: &Store) -> (Pending<()>, mpsc::Sender<()>) {
        let (go, wait) = mpsc::channel::<()>();
        let (entered, entered_rx) = mpsc::channel::<()>();
        let s = store.clone();
        let mut blocker: Pending<()> = Box::pin(async move {
            s.write(move |_| {
                let _ = entered.send(());
                let _ = wait.recv();
                Ok(())
            })
            .await
        });
        assert!(poll_once(&mut blocker).is_none());
        entered_rx.recv().unwrap();
        (blocker, go)
    }

    fn queue(store: &Store, f: impl Fn(&WriteTransaction) -> Result<()> + Send + 'static) -> Pending<()> {
        let s = store.clone();
        let mut future: Pending<()> = Box::pin(async move { s.write(f).await });
        assert!(poll_once(&mut future).is_none());
        future
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_all_land() {
        let (store, _) = store();
        let writes: Vec<_> = (0u32..300)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.write(move |tx| put(tx, &i.to_be_bytes())).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let expected: Vec<Vec<u8>> = (0u32..300).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys(&store), expected);
    }

    /// Fsyncs spent on a blocking write and the `n` writes queued behind it.
    async fn syncs_of_group(store: &Store, disk: &DiskState, n: u32) -> usize {
        let before = disk.syncs.load(Ordering::SeqCst);
        let (blocker, go) = block_writer(store);
        let writes: Vec<_> = (0..n).map(|i| queue(store, move |tx| put(tx, &(n * 1000 + i).to_be_bytes()))).collect();
        go.send(()).unwrap();
        blocker.await.unwrap();
        for w in writes {
            w.await.unwrap();
        }
        disk.syncs.load(Ordering::SeqCst) - before
    }

    #[tokio::test]
    async fn writes_queued_together_share_one_durable_commit() {
        let (store, disk) = store();
        let before = disk.syncs.load(Ordering::SeqCst);
        store.write(|tx| put(tx, b"alone")).await.unwrap();
        let alone = disk.syncs.load(Ordering::SeqCst) - before;
        let of_group = syncs_of_group(&store, &disk, 200).await;
        assert!(alone >= 1);
        // 201 writes in two groups: a few fsyncs (redb adds one now and then as the file grows), not 201.
        assert!(of_group <= 4 * alone, "{of_group} fsyncs for 201 writes, {alone} for a lone write");
        assert_eq!(keys(&store).len(), 201);
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_alone() {
        let (store, _) = store();
        let (blocker, go) = block_writer(&store);
        let first = queue(&store, |tx| put(tx, b"first"));
        let failing = queue(&store, |tx| {
            put(tx, b"failing")?;
            Err(Error::conflict("refused"))
        });
        let panicking = queue(&store, |tx| {
            put(tx, b"panicking")?;
            panic!("a bug in a write")
        });
        let middle = queue(&store, |tx| put(tx, b"middle"));
        // The group's last write fails too: the others are made durable without it.
        let last = queue(&store, |tx| {
            put(tx, b"last")?;
            Err(Error::conflict("refused"))
        });
        go.send(()).unwrap();
        blocker.await.unwrap();
        first.await.unwrap();
        assert_eq!(failing.await.unwrap_err().code(), ErrorCode::Conflict);
        assert_eq!(panicking.await.unwrap_err().code(), ErrorCode::Internal);
        middle.await.unwrap();
        assert_eq!(last.await.unwrap_err().code(), ErrorCode::Conflict);
        assert_eq!(keys(&store), vec![b"first".to_vec(), b"middle".to_vec()]);
        // The store goes on working after a panic.
        store.write(|tx| put(tx, b"after")).await.unwrap();
        assert_eq!(keys(&store).len(), 3);
    }

    #[tokio::test]
    async fn a_read_begun_after_a_write_was_answered_sees_it() {
        let (store, _) = store();
        let present = |key: [u8; 4]| store.read_blocking(move |tx| tx.get_raw(DATA, &key, |v| Ok(v.is_some())));
        for i in 0u32..50 {
            // Each read shares the snapshot (and the opened table) of the reads before it, until a write.
            assert!(!present(i.to_be_bytes()).unwrap());
            assert_eq!(keys(&store).len(), i as usize);
            store.write(move |tx| put(tx, &i.to_be_bytes())).await.unwrap();
            assert!(present(i.to_be_bytes()).unwrap());
        }
        assert_eq!(keys(&store).len(), 50);
    }

    #[tokio::test]
    async fn the_writes_before_a_failing_one_run_again_and_answer_once() {
        let (store, _) = store();
        let runs = Arc::new(AtomicUsize::new(0));
        let (blocker, go) = block_writer(&store);
        let counted = {
            let runs = runs.clone();
            let s = store.clone();
            let mut future: Pending<usize> = Box::pin(async move {
                s.write(move |tx| {
                    put(tx, b"counted")?;
                    Ok(runs.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .await
            });
            assert!(poll_once(&mut future).is_none());
            future
        };
        let failing = queue(&store, |tx| {
            put(tx, b"failing")?;
            Err(Error::conflict("refused"))
        });
        go.send(()).unwrap();
        blocker.await.unwrap();
        // Run in the group's transaction, which the failure aborted, then again in a new one: the
        // caller gets the value of the run that was committed.
        assert_eq!(counted.await.unwrap(), 2);
        assert_eq!(failing.await.unwrap_err().code(), ErrorCode::Conflict);
        assert_eq!(keys(&store), vec![b"counted".to_vec()]);
    }

    #[tokio::test]
    async fn commit_hooks_run_once_for_committed_writes_only() {
        let (store, _) = store();
        let ran = Arc::new(AtomicUsize::new(0));
        let hook = |ran: &Arc<AtomicUsize>| {
            let ran = ran.clone();
            move || {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        };
        let (blocker, go) = block_writer(&store);
        let kept = {
            let ran = ran.clone();
            queue(&store, move |tx| {
                on_commit(hook(&ran));
                put(tx, b"kept")
            })
        };
        let failing = {
            let ran = ran.clone();
            queue(&store, move |_| {
                on_commit(hook(&ran));
                Err(Error::conflict("refused"))
            })
        };
        go.send(()).unwrap();
        blocker.await.unwrap();
        kept.await.unwrap();
        failing.await.unwrap_err();
        // `kept` ran twice (its first run was rolled back with the failing write), its hook once.
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        on_commit(hook(&ran));
        assert_eq!(ran.load(Ordering::SeqCst), 2, "outside a write the hook runs at once");
    }

    #[tokio::test]
    async fn noted_changes_count_once_the_write_is_committed() {
        static WATCHED: Changes = Changes::new();
        let (store, _) = store();
        let before = WATCHED.current();
        let seen_inside = store
            .write(move |tx| {
                WATCHED.note();
                put(tx, b"k")?;
                Ok(WATCHED.current())
            })
            .await
            .unwrap();
        assert_eq!(seen_inside, before);
        assert_eq!(WATCHED.current(), before + 1);
        // A write that rolls back counts too (cautious), and one that notes nothing does not.
        let _ = store
            .write(|_| -> Result<()> {
                WATCHED.note();
                Err(Error::conflict("refused"))
            })
            .await;
        store.write(|tx| put(tx, b"other")).await.unwrap();
        assert_eq!(WATCHED.current(), before + 2);
    }

    #[tokio::test]
    async fn nothing_is_answered_before_its_fsync() {
        let (store, disk) = store();
        let (started, started_rx) = mpsc::channel();
        let (finish, finish_rx) = mpsc::channel();
        *disk.hold.lock().unwrap() = Some((started, finish_rx));
        let mut write = queue(&store, |tx| put(tx, b"k"));
        // The writer is inside the fsync of our write: the caller must still be waiting.
        started_rx.recv().unwrap();
        assert!(poll_once(&mut write).is_none());
        finish.send(()).unwrap();
        write.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_fsync_answers_every_write_of_the_group_with_an_error() {
        let (store, disk) = store();
        let (blocker, go) = block_writer(&store);
        let writes: Vec<_> = (0u32..5).map(|i| queue(&store, move |tx| put(tx, &i.to_be_bytes()))).collect();
        disk.fail.store(true, Ordering::SeqCst);
        go.send(()).unwrap();
        assert!(blocker.await.is_err());
        for w in writes {
            assert_eq!(w.await.unwrap_err().code(), ErrorCode::Internal);
        }
    }
}
