//! `Store`: the portal's one redb file. Reads run on a shared snapshot (see [`crate::snapshot`]); writes
//! go through one writer thread that commits them in groups: the writes queued while the previous group
//! was committed share the next transaction. The file is journaled (see [`crate::journal`]): an answering
//! thread syncs the journal once for the groups committed meanwhile, then shows them to readers and
//! answers their writes, while the writer already commits the next group. So `write` returns only once
//! its write is durable, and no read sees a write before that. Handlers never wait for redb on the async
//! reactor beyond a point read.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, TableDefinition};
use tokio::sync::oneshot;

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::journal::JournaledFile;
use crate::pg::{Holder, Pg, PgRead, PgWrite};
use crate::redo::{self, Redo};
use crate::snapshot::{Snapshot, Snapshots};
use crate::table::{RawTable, ReadTx};
use crate::write::{Backend, WriteTx};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "portal.redb";

/// Schema versions per module (`schema:<module>` → u32 big-endian).
const META: RawTable = TableDefinition::new("core.meta");

/// The most writes one group commit holds, so the first of them never waits on an unbounded group.
const MAX_GROUP: usize = 256;

/// How long without writes before the writer checkpoints a journaled store.
const IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// A queued write. `run` may be called more than once (see [`commit_group`]); `deliver` answers the
/// caller once, with the value of the run that was committed or with the error.
struct WriteJob {
    run: Box<Run>,
    deliver: Box<dyn FnOnce(Outcome) + Send>,
}

/// A write's closure, its return value and its own error boxed.
type Run = dyn Fn(&WriteTx) -> Outcome + Send;

/// What a write returned, typed again when it is delivered.
type Value = Box<dyn Any + Send>;

/// How a write ended: its value, or why not.
type Outcome = std::result::Result<Value, Failure>;

/// Why a write did not take effect.
enum Failure {
    /// The write's closure returned its own error (boxed, typed again when it is delivered).
    Own(Value),
    /// The store could not run or commit it.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// What became of the writes run in one transaction.
enum Ran {
    Committed(Vec<Value>, Aftermath),
    /// Sent with its `COMMIT` to PostgreSQL, whose answer the writer reads later (the flight's number).
    Flying(Vec<Value>, Aftermath, u64),
    /// The write at this index failed (or panicked); the transaction was aborted.
    Failed(usize, Failure),
    /// The transaction could not be begun or committed.
    CommitFailed(StoreError),
    /// PostgreSQL refused the transaction for a race with another one: it may run again.
    Conflict(StoreError),
}

/// Counts committed changes to some stored data, for the in-memory copies of it. A write that changes the
/// data calls [`Changes::note`] inside its transaction; the count moves once readers can see that
/// transaction's commit (right after it is durable). A reader that took [`Changes::current`] before opening its
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
type CommitHook = Box<dyn FnOnce() + Send>;

/// What waits on committed writes: the changes they noted and their commit hooks. It follows their
/// answers and happens once readers can see the writes, just before the answers go out.
#[derive(Default)]
struct Aftermath {
    noted: Vec<&'static Changes>,
    hooks: Vec<CommitHook>,
}

impl Aftermath {
    fn add(&mut self, other: Aftermath) {
        self.noted.extend(other.noted);
        self.hooks.extend(other.hooks);
    }

    fn happen(self) {
        for changes in self.noted {
            changes.bump();
        }
        // A panicking hook must not take the thread down with it.
        self.hooks.into_iter().for_each(|hook| drop(catch_unwind(AssertUnwindSafe(hook))));
    }
}

/// Runs `hook` (an in-memory consequence of a write) once the store write running on this thread is
/// committed and durable, and never when it rolls back; a write that runs again registers again. Outside
/// a store write it runs at once.
pub fn on_commit(hook: impl FnOnce() + Send + 'static) {
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
    engine: Engine,
    snapshots: Snapshots,
    /// A journaled redb file's group numbers (see [`crate::redo`]).
    redo: Option<RedoLog>,
}

/// Where a journaled store's groups stand: the journal their redo records go to, the number of the last
/// committed group, and how many committed since the last durable commit with how many bytes of records.
/// Used by the writer thread only.
struct RedoLog {
    journal: JournaledFile,
    last: AtomicU64,
    since_durable: AtomicU64,
    bytes: AtomicU64,
}

impl RedoLog {
    /// Whether the group about to be committed should be durable itself.
    fn durable_due(&self) -> bool {
        self.since_durable.load(Ordering::Relaxed) + 1 >= redo::DURABLE_EVERY
            || self.bytes.load(Ordering::Relaxed) >= redo::DURABLE_BYTES
    }

    /// After a durable commit: the file holds every group so far.
    fn made_durable(&self) {
        self.since_durable.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }
}

/// The backend behind the store.
enum Engine {
    Redb(Database),
    Pg(Arc<Pg>),
}

impl Engine {
    fn redb(&self) -> Option<&Database> {
        match self {
            Engine::Redb(file) => Some(file),
            Engine::Pg(_) => None,
        }
    }
}

/// Writes answered together, each with its result.
type Answers = Vec<(Box<dyn FnOnce(Outcome) + Send>, Outcome)>;

/// A committed group on its way to the answering thread: its answers, what waits on it, and a read
/// transaction that sees it (none if one could not be begun).
type Committed = (Answers, Aftermath, Option<ReadTransaction>);

/// A handle to the store; clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    path: PathBuf,
    journal: Option<JournaledFile>,
    writer: Option<mpsc::Sender<WriteJob>>,
    /// The writer thread, then the thread that answers a journaled store's writes.
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer after the jobs already queued; wait so the file is closed
        // cleanly when the last handle goes.
        drop(self.writer.take());
        for thread in self.threads.drain(..) {
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
    /// Opens (creating if needed) `<data_dir>/portal.redb` with the default cache.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_config(&StoreConfig::new(data_dir.to_path_buf()))
    }

    /// Opens (creating if needed) the store `config` names: the PostgreSQL database of its URL, else the
    /// redb file in its data directory.
    pub fn open_config(config: &StoreConfig) -> Result<Self> {
        if let Some(url) = &config.database_url {
            return Self::open_postgres(url, &config.database_schema);
        }
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::new(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let cannot_open = |e: &dyn std::fmt::Display| StoreError::new(format!("cannot open {}: {e}", path.display()));
        let journal = JournaledFile::open_deferred(&path).map_err(|e| cannot_open(&e))?;
        let db = Database::builder()
            .set_cache_size(config.cache_bytes())
            .create_with_backend(journal.clone())
            .map_err(|e| cannot_open(&e))?;
        Self::from_database(db, path, Some(journal))
    }

    /// The store in the PostgreSQL database at `url`, its tables in `schema` (created if missing).
    pub fn open_postgres(url: &str, schema: &str) -> Result<Self> {
        Self::on_postgres(Pg::open(url, schema, Holder::Shared)?, schema)
    }

    /// The PostgreSQL store, refused while any portal has it open (for a restore, which replaces it).
    pub fn open_postgres_alone(url: &str, schema: &str) -> Result<Self> {
        Self::on_postgres(Pg::open(url, schema, Holder::Alone)?, schema)
    }

    fn on_postgres(pg: Pg, schema: &str) -> Result<Self> {
        let db = Arc::new(Db { engine: Engine::Pg(Arc::new(pg)), snapshots: Snapshots::default(), redo: None });
        let answer: Box<dyn Fn(Answers, Aftermath) + Send> = Box::new(move |answers, aftermath| {
            aftermath.happen();
            deliver(answers, Ok(()));
        });
        Ok(Self::with_writer(db, PathBuf::from(format!("postgres:{schema}")), None, answer, Vec::new()))
    }

    /// A store that lives in memory only (to generate the OpenAPI document without touching disk).
    pub fn in_memory() -> Result<Self> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::from_database(db, PathBuf::from(":memory:"), None)
    }

    /// A store over `db`. With a `journal`, a commit is durable once the journal is synced after it (see
    /// [`acknowledge`]); without one, once it returns. Replays first what the journal holds of groups the
    /// file does not.
    fn from_database(file: Database, path: PathBuf, journal: Option<JournaledFile>) -> Result<Self> {
        let redo = match &journal {
            Some(journal) => Some(RedoLog {
                journal: journal.clone(),
                last: AtomicU64::new(redo::replay(&file, journal)?),
                since_durable: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
            }),
            None => None,
        };
        let db = Arc::new(Db { engine: Engine::Redb(file), snapshots: Snapshots::default(), redo });
        let mut threads = Vec::new();
        let answer: Box<dyn Fn(Answers, Aftermath) + Send> = match journal.clone() {
            Some(journal) => {
                // Reads see a commit only once it is durable: the answering thread publishes a snapshot
                // of it after the sync. Until the first commit, reads see the store as opened.
                if let Some(Ok(view)) = db.engine.redb().map(ReadableDatabase::begin_read) {
                    db.snapshots.publish(view);
                }
                let (to_acknowledge, committed) = mpsc::channel::<Committed>();
                let acknowledging = Arc::clone(&db);
                threads.extend(
                    std::thread::Builder::new()
                        .name("store-sync".into())
                        .spawn(move || acknowledge(&acknowledging, &journal, &committed))
                        .ok(),
                );
                let viewing = Arc::clone(&db);
                Box::new(move |answers, aftermath| {
                    let view = viewing.engine.redb().and_then(|file| file.begin_read().ok());
                    if let Err(mpsc::SendError((answers, ..))) = to_acknowledge.send((answers, aftermath, view)) {
                        deliver(answers, Err(StoreError::new("the store stopped before the write was durable")));
                    }
                })
            }
            None => {
                let committing = Arc::clone(&db);
                Box::new(move |answers, aftermath| {
                    committing.snapshots.committed();
                    aftermath.happen();
                    deliver(answers, Ok(()));
                })
            }
        };
        Ok(Self::with_writer(db, path, journal, answer, threads))
    }

    /// Starts the writer thread of `db`, whose committed groups `answer` answers (the other `threads`
    /// help it).
    fn with_writer(
        db: Arc<Db>,
        path: PathBuf,
        journal: Option<JournaledFile>,
        answer: Box<dyn Fn(Answers, Aftermath) + Send>,
        mut threads: Vec<JoinHandle<()>>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let writer_db = Arc::clone(&db);
        let idle_journal = journal.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_groups(&writer_db, &receiver, answer, idle_journal));
        threads.splice(0..0, writer.ok());
        Self { inner: Arc::new(Inner { db, path, journal, writer: Some(sender), threads }) }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a snapshot (a consistent view holding every acknowledged write) on a blocking thread.
    /// `f` may run twice on PostgreSQL (see `run_read`), so it only reads.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&Snapshot) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || run_read(&db, f)).await.map_err(StoreError::from)?
    }

    /// Runs `f` on the writer thread, in a transaction it may share with other writes, and returns once
    /// that transaction is durable (fsynced). An `Err` (or a panic) from `f` rolls back everything `f`
    /// did and nothing else. `f` may run more than once (when another write of its group fails), so it
    /// acts on the transaction only; the caller gets the value of the run that was committed.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: Fn(&WriteTx) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.submit(job(f, move |result| {
            let _ = reply.send(result);
        }))?;
        answer.await.map_err(|_| StoreError::new("the store writer stopped"))?
    }

    /// Runs `f` on a snapshot on the calling thread: for code that is not async (the command line),
    /// and in handlers for a read of a few keys (a point lookup), which costs microseconds (pages come from
    /// redb's cache, else one read from the OS page cache), less than the hand-off to a blocking thread and
    /// back that [`read`](Self::read) pays. Scans and anything else that may touch many pages use `read`.
    pub fn read_blocking<T, E: From<StoreError>>(&self, f: impl Fn(&Snapshot) -> Result<T, E>) -> Result<T, E> {
        run_read(&self.inner.db, f)
    }

    /// `write` for code that is not async (the command line, start-up).
    pub fn write_blocking<T: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        f: impl Fn(&WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let (reply, answer) = mpsc::channel();
        self.submit(job(f, move |result| {
            let _ = reply.send(result);
        }))?;
        answer.recv().map_err(|_| StoreError::new("the store writer stopped"))?
    }

    fn submit(&self, job: WriteJob) -> Result<()> {
        let writer = self.inner.writer.as_ref().ok_or_else(|| StoreError::new("the store is closed"))?;
        writer.send(job).map_err(|_| StoreError::new("the store writer stopped"))
    }

    /// Copies one read transaction of the whole store into a new redb file at `dest` (see `backup`);
    /// writes go on meanwhile and are not in the copy.
    pub async fn snapshot(&self, dest: PathBuf) -> Result<crate::backup::Summary> {
        self.read(move |tx| crate::backup::snapshot(tx, &dest, |_| {}).map_err(StoreError::new)).await
    }

    /// Whether this process should run the background jobs now: always on a redb file (one process has
    /// it); on PostgreSQL only the one portal that holds the schema's jobs lock, so that each job runs
    /// once per period however many portals serve, and another takes over when that one stops.
    pub fn leads_jobs(&self) -> bool {
        match &self.inner.db.engine {
            Engine::Redb(_) => true,
            Engine::Pg(pg) => pg.leads_jobs(),
        }
    }

    /// Whether the store is a PostgreSQL database (else a redb file).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner.db.engine, Engine::Pg(_))
    }

    /// Checks that the store can be read (for `/health`): one key, on the calling thread.
    pub fn ping(&self) -> Result<()> {
        self.read_blocking(|tx| tx.get_raw(META, b"schema:core", |_| Ok(())))
    }

    /// Checks that the store still takes writes (for `/health`): after a failed write or sync of its
    /// journal it refuses them until the portal is restarted.
    pub fn writable(&self) -> Result<()> {
        match &self.inner.journal {
            Some(journal) => journal.check_writable().map_err(StoreError::from),
            None => Ok(()),
        }
    }
}

/// Runs `f` on a snapshot. On PostgreSQL `f` runs again, in a transaction from its first statement,
/// when what its first statement read (alone, see `pg::read`) had changed by its second.
fn run_read<T, E: From<StoreError>>(db: &Db, f: impl Fn(&Snapshot) -> Result<T, E>) -> Result<T, E> {
    match &db.engine {
        Engine::Redb(file) => f(&Snapshot::redb(db.snapshots.current(file)?)),
        Engine::Pg(pg) => {
            let first = Snapshot::pg(PgRead::new(Arc::clone(pg), true));
            let answer = f(&first);
            if !first.lost_race() {
                return answer;
            }
            drop(first);
            f(&Snapshot::pg(PgRead::new(Arc::clone(pg), false)))
        }
    }
}

/// Wraps a write closure and the way to deliver its result into a queued job.
fn job<T, E, F>(f: F, deliver: impl FnOnce(Result<T, E>) + Send + 'static) -> WriteJob
where
    F: Fn(&WriteTx) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    WriteJob {
        run: Box::new(move |tx| match f(tx) {
            Ok(value) => Ok(Box::new(value) as Value),
            Err(own) => Err(Failure::Own(Box::new(own))),
        }),
        deliver: Box::new(move |outcome| {
            let typed = match outcome {
                Ok(value) => value.downcast::<T>().map(|v| *v).map_err(|_| E::from(mistyped())),
                Err(Failure::Own(own)) => Err(own.downcast::<E>().map(|e| *e).unwrap_or_else(|_| E::from(mistyped()))),
                Err(Failure::Store(e)) => Err(E::from(e)),
            };
            deliver(typed)
        }),
    }
}

fn mistyped() -> StoreError {
    StoreError::new("a write answered with another type")
}

/// The writer thread: takes every job queued so far (up to `MAX_GROUP`) as one group, until the store
/// closes. On PostgreSQL a group's transaction is sent with its `COMMIT`, and the next group's writes
/// run while the database commits it (see [`Flying`]).
fn write_groups(
    db: &Db,
    jobs: &mpsc::Receiver<WriteJob>,
    answer: Box<dyn Fn(Answers, Aftermath) + Send>,
    journal: Option<JournaledFile>,
) {
    let mut flying: Option<Flying> = None;
    loop {
        let first = match flying.take() {
            Some(up) => match jobs.try_recv() {
                Ok(job) => {
                    flying = Some(up);
                    job
                }
                // Nothing to run meanwhile: wait for the commit.
                Err(_) => {
                    land(db, up, &answer);
                    continue;
                }
            },
            None => match jobs.recv_timeout(IDLE) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Idle: bring the store file up to date and let go of the pages held for it.
                    let checkpointed = make_durable(db)
                        .and_then(|()| Ok(journal.as_ref().map(JournaledFile::checkpoint_if_written).transpose()?));
                    if let Err(e) = checkpointed {
                        tracing::error!(error = %e, "cannot checkpoint the store journal");
                    }
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                }
            },
        };
        let mut group = vec![first];
        group.extend(jobs.try_iter().take(MAX_GROUP - 1));
        let ended = commit_group(db, group, true);
        if let Some(up) = flying.take() {
            land(db, up, &answer);
        }
        match ended {
            GroupEnd::Answered(answers, aftermath) => answer(answers, aftermath),
            GroupEnd::Flying(up) => flying = Some(up),
        }
    }
    if let Err(e) = make_durable(db) {
        tracing::error!(error = %e, "cannot make the last writes durable in the store file");
    }
}

/// A group whose transaction went to PostgreSQL with its `COMMIT`, not yet known committed: its writes
/// are answered once it is (see `Pg::flight`).
struct Flying {
    group: Vec<WriteJob>,
    values: Vec<Value>,
    aftermath: Aftermath,
    number: u64,
}

/// How a group ended: answered, or in flight.
enum GroupEnd {
    Answered(Answers, Aftermath),
    Flying(Flying),
}

/// Answers the writes of a group in flight once its commit is known: their values if it committed;
/// if it lost a race, they run again; else its error.
fn land(db: &Db, up: Flying, answer: &dyn Fn(Answers, Aftermath)) {
    let Engine::Pg(pg) = &db.engine else { return };
    match pg.flight(up.number, true) {
        Ok(()) => {
            let answers = up.group.into_iter().zip(up.values).map(|(job, value)| (job.deliver, Ok(value))).collect();
            answer(answers, up.aftermath);
        }
        Err(failure) if failure.conflict => match commit_group(db, up.group, false) {
            GroupEnd::Answered(answers, aftermath) => answer(answers, aftermath),
            GroupEnd::Flying(again) => land(db, again, answer),
        },
        Err(failure) => {
            let failed = |job: WriteJob| (job.deliver, Err(Failure::Store(failure.error.clone())));
            answer(up.group.into_iter().map(failed).collect(), Aftermath::default());
        }
    }
}

/// A durable commit of nothing but the last group's number, when groups committed since the last one: the
/// store file then holds every group and the journal's redo records are no longer needed.
fn make_durable(db: &Db) -> Result<()> {
    let (Engine::Redb(file), Some(log)) = (&db.engine, &db.redo) else { return Ok(()) };
    if log.since_durable.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let tx = file.begin_write()?;
    tx.open_table(redo::TABLE)?.insert(redo::APPLIED, log.last.load(Ordering::Relaxed).to_be_bytes().as_slice())?;
    tx.commit()?;
    log.made_durable();
    Ok(())
}

/// A journaled store's answering thread: syncs the journal once for every group committed since its last
/// sync, publishes the newest of them to readers, then answers their writes. Meanwhile the writer
/// commits the next groups.
fn acknowledge(db: &Db, journal: &JournaledFile, committed: &mpsc::Receiver<Committed>) {
    while let Ok(first) = committed.recv() {
        let (mut answers, mut aftermath, mut view) = first;
        for (more, more_aftermath, newer) in committed.try_iter() {
            answers.extend(more);
            aftermath.add(more_aftermath);
            view = newer;
        }
        let synced = journal.sync().map_err(|e| StoreError::new(format!("cannot make the write durable: {e}")));
        if synced.is_ok() {
            match view {
                Some(view) => db.snapshots.publish(view),
                None => db.snapshots.clear(),
            }
            aftermath.happen();
        }
        deliver(answers, synced);
    }
}

/// Answers each write with its result, or with `durable`'s error if it succeeded but was not made durable.
fn deliver(answers: Answers, durable: Result<()>) {
    for (answer, result) in answers {
        answer(match (&durable, result) {
            (Err(e), Ok(_)) => Err(Failure::Store(e.clone())),
            (_, result) => result,
        });
    }
}

/// Runs a group of writes in one transaction with one durable commit, and returns their answers.
///
/// A write that fails (or panics) must leave nothing behind, but a transaction cannot drop one write's
/// changes and keep the others'. So the transaction is aborted, the writes before the failing one run
/// again in a new transaction (on the same data, with the same outcome), the failing one is answered
/// with its error, and the writes after it go on in the next transaction. Transactions before the
/// group's last are committed without fsync; the last one's fsync makes them all durable. On
/// PostgreSQL a group whose writes all ran in one transaction may `fly`: it is sent with its `COMMIT`
/// and answered later.
fn commit_group(db: &Db, group: Vec<WriteJob>, fly: bool) -> GroupEnd {
    let mut results: Vec<Option<Outcome>> = group.iter().map(|_| None).collect();
    let mut aftermath = Aftermath::default();
    let mut segments = VecDeque::new();
    segments.push_back(0..group.len());
    let mut unsynced = false;
    let mut failure = None;
    while let Some(segment) = segments.pop_front() {
        if segment.is_empty() {
            continue;
        }
        let last = segments.iter().all(|s| s.is_empty());
        let whole = fly && segment == (0..group.len());
        let Some(jobs) = group.get(segment.clone()) else { continue };
        match run_together(db, jobs, last, whole) {
            Ran::Flying(values, aftermath, number) => {
                return GroupEnd::Flying(Flying { group, values, aftermath, number });
            }
            Ran::Committed(values, more) => {
                for (slot, value) in results.iter_mut().skip(segment.start).zip(values) {
                    *slot = Some(Ok(value));
                }
                aftermath.add(more);
                // A journaled store's groups are made durable by their redo records.
                unsynced = !last && db.redo.is_none();
            }
            Ran::Failed(at, e) => {
                let failed = segment.start + at;
                if let Some(slot) = results.get_mut(failed) {
                    *slot = Some(Err(e));
                }
                segments.push_front(failed + 1..segment.end);
                segments.push_front(segment.start..failed);
            }
            // A failed commit may leave the file unusable: the group as a whole is not durable.
            Ran::CommitFailed(e) | Ran::Conflict(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if unsynced && failure.is_none() {
        failure = sync(db).err();
    }
    let answer = |(job, result): (WriteJob, Option<Outcome>)| {
        let result = match (result, &failure) {
            (Some(Err(own)), _) => Err(own),
            (_, Some(group_failure)) => Err(Failure::Store(group_failure.clone())),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(Failure::Store(StoreError::new("the write was not run"))),
        };
        (job.deliver, result)
    };
    if failure.is_some() {
        aftermath = Aftermath::default();
    }
    GroupEnd::Answered(group.into_iter().zip(results).map(answer).collect(), aftermath)
}

/// How many times a PostgreSQL transaction refused for a race runs again before its writes fail.
const MAX_CONFLICTS: u32 = 50;

/// Runs `jobs` in one transaction, durable (fsynced) when `durable`, until one of them fails; on
/// PostgreSQL again while it loses races with other nodes' transactions, and sent without waiting
/// for its commit when `fly`.
fn run_together(db: &Db, jobs: &[WriteJob], durable: bool, fly: bool) -> Ran {
    // A journaled store makes most groups durable by their redo record, and every so often one by its pages.
    let durable = durable && db.redo.as_ref().is_none_or(RedoLog::durable_due);
    let mut conflicts = 0;
    loop {
        let tx = match begin(db, durable) {
            Ok(tx) => tx,
            Err(e) => return Ran::CommitFailed(e),
        };
        let ran = jobs.iter().enumerate().map(|(i, job)| run_job(&tx, job).map_err(|e| (i, e))).collect();
        match end(db, tx, ran, durable, fly) {
            Ran::Conflict(e) if conflicts == MAX_CONFLICTS => return Ran::CommitFailed(e),
            Ran::Conflict(_) => {
                conflicts += 1;
                // Back off a little, longer each time, so the racing transactions spread out.
                let jitter = rand_millis(conflicts.min(8) * 2);
                std::thread::sleep(std::time::Duration::from_millis(u64::from(conflicts.min(8)) + jitter));
            }
            ran => return ran,
        }
    }
}

/// A pseudo-random number of milliseconds below `bound` (jitter, not secrets).
fn rand_millis(bound: u32) -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    u64::from(nanos % bound.max(1))
}

/// Begins the transaction of a group's writes, durable (fsynced) when `durable`.
fn begin(db: &Db, durable: bool) -> Result<WriteTx> {
    let tx = match &db.engine {
        Engine::Redb(file) => {
            let mut tx = file.begin_write()?;
            let durability = if durable { Durability::Immediate } else { Durability::None };
            tx.set_durability(durability)
                .map_err(|e| StoreError::new(format!("cannot set the commit durability: {e}")))?;
            WriteTx(Backend::Redb(crate::open_tables::RedbWrite::begin(tx), Redo::default()))
        }
        // Every PostgreSQL commit is durable (with the server's `synchronous_commit`).
        Engine::Pg(pg) => WriteTx(Backend::Pg(PgWrite::begin(Arc::clone(pg)))),
    };
    NOTED.with(|noted| *noted.borrow_mut() = Some(Vec::new()));
    ON_COMMIT.with(|hooks| *hooks.borrow_mut() = Some(Vec::new()));
    Ok(tx)
}

fn run_job(tx: &WriteTx, job: &WriteJob) -> Outcome {
    match catch_unwind(AssertUnwindSafe(|| (job.run)(tx))) {
        Ok(result) => result,
        Err(_) => Err(Failure::Store(StoreError::new("a store write panicked"))),
    }
}

/// Commits the transaction when every write ran (`Ok` with their values), else aborts it (the write at
/// the index failed).
fn end(db: &Db, tx: WriteTx, ran: std::result::Result<Vec<Value>, (usize, Failure)>, durable: bool, fly: bool) -> Ran {
    let aftermath = Aftermath {
        noted: NOTED.with(|noted| noted.borrow_mut().take()).unwrap_or_default(),
        hooks: ON_COMMIT.with(|hooks| hooks.borrow_mut().take()).unwrap_or_default(),
    };
    match (tx.0, ran) {
        (Backend::Redb(tx, redo), Ok(values)) => match commit_redb(db, tx.finish(), &redo, durable) {
            Ok(()) => Ran::Committed(values, aftermath),
            Err(e) => Ran::CommitFailed(e),
        },
        (Backend::Redb(tx, _), Err((at, e))) => {
            let _ = tx.finish().abort();
            Ran::Failed(at, e)
        }
        (Backend::Pg(tx), Ok(values)) if fly => match tx.send_commit() {
            Ok(Some(number)) => Ran::Flying(values, aftermath, number),
            Ok(None) => Ran::Committed(values, aftermath),
            Err(failure) if failure.conflict => Ran::Conflict(failure.error),
            Err(failure) => Ran::CommitFailed(failure.error),
        },
        (Backend::Pg(tx), Ok(values)) => match tx.commit() {
            Ok(()) => Ran::Committed(values, aftermath),
            Err(failure) if failure.conflict => Ran::Conflict(failure.error),
            Err(failure) => Ran::CommitFailed(failure.error),
        },
        (Backend::Pg(tx), Err((at, e))) => {
            // A write that failed because the transaction lost a race did not fail on its own.
            match tx.abandon() {
                Some(failure) => Ran::Conflict(failure.error),
                None => Ran::Failed(at, e),
            }
        }
    }
}

/// Commits a redb transaction. On a journaled store the group stores its number, and unless `durable`
/// its redo record goes to the journal, whose next sync makes it durable.
fn commit_redb(db: &Db, tx: redb::WriteTransaction, redo: &Redo, durable: bool) -> Result<()> {
    let Some(log) = &db.redo else { return Ok(tx.commit()?) };
    let group = log.last.load(Ordering::Relaxed) + 1;
    tx.open_table(redo::TABLE)?.insert(redo::APPLIED, group.to_be_bytes().as_slice())?;
    tx.commit()?;
    log.last.store(group, Ordering::Relaxed);
    if durable {
        log.made_durable();
        return Ok(());
    }
    log.since_durable.fetch_add(1, Ordering::Relaxed);
    let record = redo.take();
    log.bytes.fetch_add(record.len() as u64, Ordering::Relaxed);
    Ok(log.journal.queue_redo(group, record)?)
}

/// An empty durable commit: makes the writes committed without fsync durable.
fn sync(db: &Db) -> Result<()> {
    if let Engine::Redb(file) = &db.engine {
        file.begin_write()?.commit()?;
    }
    Ok(())
}

/// Opens (creating if needed) the store file at `path` with its journal (see [`crate::journal`]).
pub fn open_database(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    let file = JournaledFile::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => redb::DatabaseError::DatabaseAlreadyOpen,
        _ => e.into(),
    })?;
    let db = Database::builder().create_with_backend(file.clone())?;
    redo::replay(&db, &file)
        .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(std::io::Error::other(e.to_string()))))?;
    Ok(db)
}

/// Creates the table of schema versions (in the start-up transaction).
pub fn create_meta(tx: &WriteTx) -> Result<()> {
    tx.create_table(META)
}

/// The schema version a module last migrated its tables to (0 when never installed).
pub fn schema_version(tx: &impl ReadTx, module: &str) -> Result<u32> {
    let key = format!("schema:{module}");
    tx.get_raw(META, key.as_bytes(), |bytes| {
        Ok(bytes.and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes).unwrap_or(0))
    })
}

/// Records a module's schema version (inside the migration's own transaction).
pub fn set_schema_version(tx: &WriteTx, module: &str, version: u32) -> Result<()> {
    let key = format!("schema:{module}");
    tx.put_raw(META, key.as_bytes(), &version.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::task::{Context as TaskContext, Poll, Waker};

    use redb::backends::InMemoryBackend;
    use redb::StorageBackend;

    use super::*;

    /// The error of the tests' writes: their own refusal, or the store's.
    #[derive(Debug)]
    enum TestError {
        Refused,
        Store(#[allow(dead_code)] StoreError),
    }

    impl From<StoreError> for TestError {
        fn from(e: StoreError) -> Self {
            TestError::Store(e)
        }
    }

    impl From<redb::TableError> for TestError {
        fn from(e: redb::TableError) -> Self {
            TestError::Store(e.into())
        }
    }

    impl From<redb::StorageError> for TestError {
        fn from(e: redb::StorageError) -> Self {
            TestError::Store(e.into())
        }
    }

    type Result<T> = std::result::Result<T, TestError>;

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
        let store = Store::from_database(db, PathBuf::from(":test:"), None).unwrap();
        store
            .write_blocking(|tx| {
                tx.create_table(DATA)?;
                Ok::<_, TestError>(())
            })
            .unwrap();
        (store, state)
    }

    fn put(tx: &WriteTx, key: &[u8]) -> Result<()> {
        tx.put_raw(DATA, key, b"v")?;
        Ok(())
    }

    /// Every row of the test table, in key order.
    fn rows(tx: &impl ReadTx) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows = Vec::new();
        tx.scan_raw(DATA, (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded), false, |k, v| {
            rows.push((k.to_vec(), v.to_vec()));
            Ok::<_, TestError>(true)
        })?;
        Ok(rows)
    }

    fn keys(store: &Store) -> Vec<Vec<u8>> {
        store.read_blocking(|tx| Ok::<_, TestError>(rows(tx)?.into_iter().map(|(k, _)| k).collect())).unwrap()
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

    fn queue(store: &Store, f: impl Fn(&WriteTx) -> Result<()> + Send + 'static) -> Pending<()> {
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
            Err(TestError::Refused)
        });
        let panicking = queue(&store, |tx| {
            put(tx, b"panicking")?;
            panic!("a bug in a write")
        });
        let middle = queue(&store, |tx| put(tx, b"middle"));
        // The group's last write fails too: the others are made durable without it.
        let last = queue(&store, |tx| {
            put(tx, b"last")?;
            Err(TestError::Refused)
        });
        go.send(()).unwrap();
        blocker.await.unwrap();
        first.await.unwrap();
        assert!(matches!(failing.await.unwrap_err(), TestError::Refused));
        assert!(matches!(panicking.await.unwrap_err(), TestError::Store(_)));
        middle.await.unwrap();
        assert!(matches!(last.await.unwrap_err(), TestError::Refused));
        assert_eq!(keys(&store), vec![b"first".to_vec(), b"middle".to_vec()]);
        // The store goes on working after a panic.
        store.write(|tx| put(tx, b"after")).await.unwrap();
        assert_eq!(keys(&store).len(), 3);
    }

    #[tokio::test]
    async fn a_read_begun_after_a_write_was_answered_sees_it() {
        let (store, _) = store();
        let present =
            |key: [u8; 4]| store.read_blocking(move |tx| tx.get_raw(DATA, &key, |v| Ok::<_, TestError>(v.is_some())));
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
            Err(TestError::Refused)
        });
        go.send(()).unwrap();
        blocker.await.unwrap();
        // Run in the group's transaction, which the failure aborted, then again in a new one: the
        // caller gets the value of the run that was committed.
        assert_eq!(counted.await.unwrap(), 2);
        assert!(matches!(failing.await.unwrap_err(), TestError::Refused));
        assert_eq!(keys(&store), vec![b"counted".to_vec()]);
    }

    /// A store on a journal in `dir`, as `Store::open` makes it, with a handle on the journal.
    fn journaled_store(dir: &Path) -> (Store, JournaledFile) {
        let path = dir.join(FILE_NAME);
        let journal = JournaledFile::open_deferred(&path).unwrap();
        let db = Database::builder().create_with_backend(journal.clone()).unwrap();
        (Store::from_database(db, path, Some(journal.clone())).unwrap(), journal)
    }

    #[test]
    fn a_store_with_a_small_cache_keeps_and_reads_back_far_more_than_it() {
        fn value(i: u32) -> Vec<u8> {
            format!("{i:08}").repeat(128).into_bytes()
        }
        fn insert(store: &Store, keys: std::ops::Range<u32>) {
            store
                .write_blocking(move |tx| {
                    let mut table = tx.table(DATA)?;
                    for i in keys.clone() {
                        table.insert(i.to_be_bytes().as_slice(), value(i).as_slice())?;
                    }
                    Ok::<_, TestError>(())
                })
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { cache_mb: 1, ..StoreConfig::new(dir.path().to_path_buf()) };
        {
            let store = Store::open_config(&config).unwrap();
            // One transaction of ~3 MB (three times the cache), then many small ones.
            insert(&store, 0..3_000);
            for start in (3_000..4_000).step_by(100) {
                insert(&store, start..start + 100);
            }
        }
        let store = Store::open_config(&config).unwrap();
        let stored = store
            .read_blocking(|tx| {
                let stored = rows(tx)?.into_iter().map(|(k, v)| (u32::from_be_bytes(k.try_into().unwrap()), v));
                Ok::<_, TestError>(stored.collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(stored.len(), 4_000);
        for (i, found) in stored {
            assert_eq!(found, value(i), "value of key {i}");
        }
    }

    #[tokio::test]
    async fn a_journaled_write_is_answered_and_seen_by_readers_only_once_the_journal_is_synced() {
        static WATCHED: Changes = Changes::new();
        let dir = tempfile::tempdir().unwrap();
        let (store, journal) = journaled_store(dir.path());
        store.write_blocking(|tx| put(tx, b"before")).unwrap();
        let hooked = Arc::new(AtomicBool::new(false));

        let (started, go) = journal.hold_next_sync();
        let mut write = {
            let hooked = hooked.clone();
            queue(&store, move |tx| {
                WATCHED.note();
                let hooked = hooked.clone();
                on_commit(move || hooked.store(true, Ordering::SeqCst));
                put(tx, b"after")
            })
        };
        let changes = WATCHED.current();
        started.recv().unwrap();
        // Committed, not yet durable: not answered, not seen, nothing that waits on it has happened.
        assert!(poll_once(&mut write).is_none());
        assert_eq!(keys(&store), vec![b"before".to_vec()]);
        assert_eq!(WATCHED.current(), changes);
        assert!(!hooked.load(Ordering::SeqCst));

        go.send(()).unwrap();
        write.await.unwrap();
        assert_eq!(keys(&store), vec![b"after".to_vec(), b"before".to_vec()]);
        assert_eq!(WATCHED.current(), changes + 1);
        assert!(hooked.load(Ordering::SeqCst));

        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(keys(&reopened), vec![b"after".to_vec(), b"before".to_vec()]);
    }

    /// Copies the store file and its journal of `from` into a new directory: what a crash at this moment
    /// would leave on disk, while `from`'s store goes on.
    fn crash_image(from: &Path) -> tempfile::TempDir {
        let image = tempfile::tempdir().unwrap();
        for name in [FILE_NAME.to_string(), format!("{FILE_NAME}{}", crate::journal::SUFFIX)] {
            std::fs::copy(from.join(&name), image.path().join(&name)).unwrap();
        }
        image
    }

    /// A crash image of the store in `dir`, taken while the writer is held inside a group (so that it
    /// neither commits nor checkpoints meanwhile), and the numbers of the redo records its journal holds.
    async fn crash(store: &Store, dir: &Path) -> (tempfile::TempDir, Vec<u64>) {
        let (blocker, go) = block_writer(store);
        let counted = crash_image(dir);
        let crashed = crash_image(dir);
        go.send(()).unwrap();
        blocker.await.unwrap();
        let journal = JournaledFile::open(&counted.path().join(FILE_NAME)).unwrap();
        let numbers = journal.take_redo().unwrap().into_iter().map(|(n, _)| n).collect();
        (crashed, numbers)
    }

    #[tokio::test]
    async fn groups_committed_without_fsync_of_the_file_are_replayed_from_their_records_after_a_crash() {
        const OTHER: RawTable = TableDefinition::new("test.other");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // One group each: puts, a removal, a range removal, a table created and one deleted.
        for key in [b"a", b"b", b"c", b"d", b"e"] {
            store.write_blocking(move |tx| put(tx, key)).unwrap();
        }
        store.write_blocking(|tx| Ok::<_, TestError>(tx.remove_raw(DATA, b"b").map(|_| ())?)).unwrap();
        store
            .write_blocking(|tx| {
                use std::ops::Bound::{Excluded, Included};
                Ok::<_, TestError>(tx.remove_range_raw(DATA, (Included(b"c".as_slice()), Excluded(b"e".as_slice())))?)
            })
            .unwrap();
        store.write_blocking(|tx| Ok::<_, TestError>(tx.create_table(OTHER)?)).unwrap();
        store.write_blocking(|tx| Ok::<_, TestError>(tx.delete_table("test.data").map(|_| ())?)).unwrap();
        store
            .write_blocking(|tx| {
                let mut table = tx.table(DATA)?;
                table.insert(b"f", b"w")?;
                table.insert(b"g", b"w")?;
                Ok::<_, TestError>(table.remove(b"g").map(|_| ())?)
            })
            .unwrap();
        let (crashed, records) = crash(&store, dir.path()).await;
        assert_eq!(records, (1..=10).collect::<Vec<u64>>(), "each group left its record, none its pages");
        let reopened = Store::open(crashed.path()).unwrap();
        let tables = reopened.write_blocking(|tx| Ok::<_, TestError>(tx.table_names()?)).unwrap();
        assert!(tables.contains(&"test.other".to_string()), "{tables:?}");
        assert_eq!(
            reopened.read_blocking(rows).unwrap(),
            vec![(b"f".to_vec(), b"w".to_vec())],
            "the table was deleted, then written again"
        );
        reopened.write_blocking(|tx| put(tx, b"later")).unwrap();
        drop(reopened);
        assert_eq!(keys(&Store::open(crashed.path()).unwrap()), vec![b"f".to_vec(), b"later".to_vec()]);
    }

    #[tokio::test]
    async fn a_group_committed_with_its_pages_holds_the_ones_before_and_a_crash_after_it_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..redo::DURABLE_EVERY + 3 {
            store.write_blocking(move |tx| put(tx, &i.to_be_bytes())).unwrap();
        }
        // The records since the last checkpoint stay in the journal (all but the durable group's); the
        // file holds the groups up to the durable one, the records the three after it.
        let (crashed, records) = crash(&store, dir.path()).await;
        assert_eq!(records.len() as u64, redo::DURABLE_EVERY + 2, "{records:?}");
        assert!(!records.contains(&redo::DURABLE_EVERY), "{records:?}");
        let reopened = Store::open(crashed.path()).unwrap();
        let expected: Vec<Vec<u8>> = (0..redo::DURABLE_EVERY + 3).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys(&reopened), expected);
    }

    #[test]
    fn after_a_failed_journal_sync_the_store_refuses_writes_and_says_so_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let (store, journal) = journaled_store(dir.path());
        store.write_blocking(|tx| put(tx, b"kept")).unwrap();
        assert!(store.writable().is_ok());

        journal.fail_next_sync();
        store.write_blocking(|tx| put(tx, b"lost")).unwrap_err();
        store.write_blocking(|tx| put(tx, b"refused")).unwrap_err();
        let refusal = store.writable().unwrap_err();
        assert!(format!("{refusal:?}").contains("an earlier write of the store journal failed"), "{refusal:?}");
        store.ping().expect("reads go on");
        assert_eq!(keys(&store), vec![b"kept".to_vec()]);

        drop((store, journal));
        let reopened = Store::open(dir.path()).unwrap();
        assert!(reopened.writable().is_ok());
        reopened.write_blocking(|tx| put(tx, b"again")).unwrap();
        assert_eq!(keys(&reopened), vec![b"again".to_vec(), b"kept".to_vec()]);
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
                Err(TestError::Refused)
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
                Ok::<_, TestError>(WATCHED.current())
            })
            .await
            .unwrap();
        assert_eq!(seen_inside, before);
        assert_eq!(WATCHED.current(), before + 1);
        // Neither a write that rolls back nor one that notes nothing counts.
        let _ = store
            .write(|_| -> Result<()> {
                WATCHED.note();
                Err(TestError::Refused)
            })
            .await;
        store.write(|tx| put(tx, b"other")).await.unwrap();
        assert_eq!(WATCHED.current(), before + 1);
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
            assert!(matches!(w.await.unwrap_err(), TestError::Store(_)));
        }
    }
}
