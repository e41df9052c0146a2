//! Read snapshots shared between requests. Beginning a redb read transaction and opening a table in it
//! (a lookup by name in the table tree, then the table's root page) cost more than a point read itself,
//! so reads that start while nothing new was committed share one transaction and the tables already
//! opened in it. Every commit retires the shared snapshot, or, in a journaled store, the answering thread
//! publishes a snapshot of it once it is durable: a read that starts after a write was acknowledged
//! always sees it, and none sees a write that is not yet durable.

use std::ops::{Bound, Deref};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableHandle};

use crate::error::{Result, StoreError};
use crate::table::{get_in, open_existing, scan_in, RawTable, ReadTx};

type OpenTable = Arc<ReadOnlyTable<&'static [u8], &'static [u8]>>;

/// A read transaction (a consistent view of the store) with the tables opened in it so far.
pub struct Snapshot {
    tx: ReadTransaction,
    /// `None` for a table that does not exist in this snapshot.
    tables: Mutex<Vec<(String, Option<OpenTable>)>>,
}

impl Snapshot {
    fn new(tx: ReadTransaction) -> Self {
        Self { tx, tables: Mutex::default() }
    }

    /// `table`, opened once per snapshot.
    fn table(&self, table: RawTable) -> Result<Option<OpenTable>> {
        let name = table.name();
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, open)) = tables.iter().find(|(n, _)| n == name) {
            return Ok(open.clone());
        }
        let open = open_existing(&self.tx, table)?.map(Arc::new);
        tables.push((name.to_string(), open.clone()));
        Ok(open)
    }
}

/// The redb transaction, for code that walks the store itself (backup, audit listing).
impl Deref for Snapshot {
    type Target = ReadTransaction;

    fn deref(&self) -> &ReadTransaction {
        &self.tx
    }
}

impl ReadTx for Snapshot {
    fn get_raw<R, E: From<StoreError>>(
        &self,
        table: RawTable,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        get_in(self.table(table)?.as_deref(), key, f)
    }

    fn scan_raw<E: From<StoreError>>(
        &self,
        table: RawTable,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        scan_in(self.table(table)?.as_deref(), range, reverse, visit)
    }
}

/// The snapshot reads share, and how many commits there have been.
#[derive(Default)]
pub struct Snapshots {
    commits: AtomicU64,
    shared: Mutex<Option<(u64, Arc<Snapshot>)>>,
    /// Set by the first [`publish`](Self::publish): from then on reads take only published snapshots.
    published: AtomicBool,
}

impl Snapshots {
    /// A snapshot holding every commit made so far.
    pub fn current(&self, db: &Database) -> Result<Arc<Snapshot>> {
        let commits = self.commits.load(Ordering::SeqCst);
        if let Some((taken_at, snapshot)) = &*self.lock() {
            if *taken_at == commits || self.published.load(Ordering::SeqCst) {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = Arc::new(Snapshot::new(db.begin_read()?));
        let mut shared = self.lock();
        // A commit since `commits` was read may or may not be in this snapshot: then it is not shared.
        if self.commits.load(Ordering::SeqCst) == commits {
            *shared = Some((commits, snapshot.clone()));
        }
        Ok(snapshot)
    }

    /// Called right after every commit: later reads need a new snapshot, and the old one goes as soon
    /// as its last reader finishes (an open snapshot keeps redb from reusing the pages it sees).
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.clear();
    }

    /// Makes `tx` the snapshot every read takes until the next one is published: a store whose commits
    /// become durable after they return shows each to readers only then.
    pub fn publish(&self, tx: ReadTransaction) {
        let snapshot = Arc::new(Snapshot::new(tx));
        self.published.store(true, Ordering::SeqCst);
        let commits = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let retired = self.lock().replace((commits, snapshot));
        drop(retired);
    }

    /// Lets go of the shared snapshot (when the store closes).
    pub fn clear(&self) {
        // Dropped after the lock is released: closing a read transaction takes redb's own locks.
        let retired = self.lock().take();
        drop(retired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<Snapshot>)>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
