//! Read snapshots shared between requests. Beginning a redb read transaction and opening a table in it
//! (a lookup by name in the table tree, then the table's root page) cost more than a point read itself,
//! so reads that start while nothing new was committed share one transaction and the tables already
//! opened in it. Every commit retires the shared snapshot, or, in a journaled store, the answering thread
//! publishes a snapshot of it once it is durable: a read that starts after a write was acknowledged
//! always sees it, and none sees a write that is not yet durable.

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableHandle};

use crate::error::{Result, StoreError};
use crate::pg::PgRead;
use crate::table::{get_in, only_below, open_existing, scan_in, Named, ReadTx};

type OpenTable = Arc<ReadOnlyTable<&'static [u8], &'static [u8]>>;

/// A consistent view of the store for one read: a redb snapshot (shared with the reads that start
/// before the next commit), or a PostgreSQL read transaction of its own.
pub struct Snapshot(View);

enum View {
    Redb(Arc<RedbView>),
    Pg(Box<PgRead>),
}

impl Snapshot {
    pub(crate) fn redb(view: Arc<RedbView>) -> Self {
        Self(View::Redb(view))
    }

    pub(crate) fn pg(read: PgRead) -> Self {
        Self(View::Pg(Box::new(read)))
    }

    /// The redb transaction, for code that walks a redb file itself (the backup's copy).
    pub fn redb_transaction(&self) -> Option<&ReadTransaction> {
        match &self.0 {
            View::Redb(view) => Some(&view.tx),
            View::Pg(_) => None,
        }
    }

    /// How many rows `table` holds.
    pub fn count(&self, table: Named<'_>) -> Result<u64> {
        match &self.0 {
            View::Redb(view) => match view.table(table)? {
                Some(open) => Ok(redb::ReadableTableMetadata::len(&*open)?),
                None => Ok(0),
            },
            View::Pg(read) => read.count(table),
        }
    }

    /// Whether this read lost a race on PostgreSQL, and must run again (see `run_read`).
    pub(crate) fn lost_race(&self) -> bool {
        match &self.0 {
            View::Redb(_) => false,
            View::Pg(read) => read.lost_race(),
        }
    }

    /// The names of every table in the store.
    pub fn table_names(&self) -> Result<Vec<String>> {
        match &self.0 {
            View::Redb(view) => crate::backup::table_names(&view.tx).map_err(StoreError::new),
            View::Pg(read) => Ok(read.table_names()),
        }
    }
}

/// A redb read transaction with the tables opened in it so far.
pub(crate) struct RedbView {
    tx: ReadTransaction,
    /// `None` for a table that does not exist in this snapshot.
    tables: Mutex<Vec<(String, Option<OpenTable>)>>,
}

impl RedbView {
    fn new(tx: ReadTransaction) -> Self {
        Self { tx, tables: Mutex::default() }
    }

    /// `table`, opened once per snapshot.
    fn table(&self, table: Named<'_>) -> Result<Option<OpenTable>> {
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

impl ReadTx for Snapshot {
    fn get_raw<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.0 {
            View::Redb(view) => get_in(view.table(table)?.as_deref(), key, f),
            View::Pg(read) => read.get(table, key, f),
        }
    }

    fn scan_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        match &self.0 {
            View::Redb(view) => scan_in(view.table(table)?.as_deref(), range, reverse, visit),
            View::Pg(read) => read.scan(table, range, reverse, visit),
        }
    }

    fn scan_desc_below<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        whole: (Bound<&[u8]>, Bound<&[u8]>),
        below: &[u8],
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        match &self.0 {
            View::Redb(..) => self.scan_raw(table, (whole.0, Bound::Excluded(below)), true, visit),
            View::Pg(read) => read.scan(table, whole, true, only_below(below, visit)),
        }
    }

    fn count_raw(&self, table: Named<'_>) -> Result<u64> {
        self.count(table)
    }

    fn expect(&self, table: Named<'_>, key: &[u8]) {
        if let View::Pg(read) = &self.0 {
            read.expect(table, key);
        }
    }

    fn get_many_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        keys: &[&[u8]],
        f: impl FnMut(usize, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.0 {
            View::Redb(_) => crate::table::get_one_by_one(self, table, keys, f),
            View::Pg(read) => read.get_many(table, keys, f),
        }
    }
}

/// The snapshot reads share, and how many commits there have been.
#[derive(Default)]
pub struct Snapshots {
    commits: AtomicU64,
    shared: Mutex<Option<(u64, Arc<RedbView>)>>,
    /// Set by the first [`publish`](Self::publish): from then on reads take only published snapshots.
    published: AtomicBool,
}

impl Snapshots {
    /// A snapshot holding every commit made so far.
    pub(crate) fn current(&self, db: &Database) -> Result<Arc<RedbView>> {
        let commits = self.commits.load(Ordering::SeqCst);
        if let Some((taken_at, snapshot)) = &*self.lock() {
            if *taken_at == commits || self.published.load(Ordering::SeqCst) {
                return Ok(snapshot.clone());
            }
        }
        let snapshot = Arc::new(RedbView::new(db.begin_read()?));
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
        let snapshot = Arc::new(RedbView::new(tx));
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<RedbView>)>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
