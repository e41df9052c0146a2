//! A transaction on one connection, begun with its first statement (the `BEGIN` goes in the same round
//! trip), and the reads both kinds of transaction share.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::Row;

use super::conn::{Conn, Params};
use super::pending::{self, Batch, Changes, Pending};
use super::remembered::{self, Checks, Covered, Sent};
use super::seen::Seen;
use super::{is_conflict, sql, Pg};
use crate::error::{Result, StoreError};
use crate::table::Named;

/// Rows fetched per round trip of a scan at first; later batches grow to [`MAX_BATCH`] (most scans stop
/// after a page of a list, a few read a whole table).
const FIRST_BATCH: i64 = 64;
const MAX_BATCH: i64 = 2048;

/// Expected rows a transaction keeps at most (see [`Transaction::expect`]).
const MAX_EXPECTED: usize = 8;

pub(crate) struct Session {
    pg: Arc<Pg>,
    /// Taken from the pool on first use, given back at the end.
    conn: Option<Conn>,
    ended: bool,
    begin: &'static str,
    begun: bool,
    /// The first error of the transaction: PostgreSQL refuses everything after it until the end.
    failure: Option<Failure>,
    alone: Alone,
    /// Runs on the connection that holds the schema (a write's), not one of the pool.
    holding: bool,
}

/// Whether a read runs its statements outside a transaction block. A single statement sees one
/// snapshot by itself, so a read answered by one point read needs neither `BEGIN` nor `COMMIT`; a read
/// that needs a second statement begins the transaction then, checking in the same round trip that
/// what the first one read is unchanged (else it runs again: see `run_read`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Alone {
    /// No statement yet, and the first may run alone if it is a point read.
    Possible,
    /// The first statement ran alone; what it read is held as checks.
    Ran,
    /// Every statement runs in the transaction.
    Never,
}

#[derive(Clone)]
pub(crate) struct Failure {
    pub error: StoreError,
    /// A serialization failure or deadlock: the transaction should run again.
    pub conflict: bool,
    /// The table in which an insert met a key that existed (its values are then upserted).
    pub overwrote: Option<String>,
}

impl Failure {
    pub(crate) fn new(error: StoreError) -> Self {
        Self { error, conflict: false, overwrote: None }
    }

    pub(crate) fn of(error: StoreError, cause: &tokio_postgres::Error, schema: &str) -> Self {
        Self { error, conflict: is_conflict(cause), overwrote: super::overwritten_table(cause, schema) }
    }
}

impl Session {
    pub(crate) fn new(pg: Arc<Pg>, begin: &'static str, alone: Alone, holding: bool) -> Self {
        Self { pg, conn: None, ended: false, begin, begun: false, failure: None, alone, holding }
    }

    fn give_back(&self, conn: Conn) {
        match self.holding {
            true => self.pg.give_back_holding(conn),
            false => self.pg.give_back(conn),
        }
    }

    pub(crate) fn failure(&self) -> Option<Failure> {
        self.failure.clone()
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        if let Some(failure) = &self.failure {
            return Err(failure.error.clone());
        }
        if self.ended {
            return Err(StoreError::new("the transaction has ended"));
        }
        if self.conn.is_none() {
            self.conn = Some(if self.holding { self.pg.take_holding()? } else { self.pg.take()? });
        }
        self.conn.as_mut().ok_or_else(|| StoreError::new("no database connection"))
    }

    /// A statement's error, kept as the transaction's failure. Before the `COMMIT`, a connection that
    /// closed or broke took the transaction with it: the database is unreachable and nothing was done.
    fn note<T>(&mut self, result: Result<T, tokio_postgres::Error>) -> Result<T> {
        result.map_err(|e| {
            let cause = format!("database: {}", describe(&e));
            let lost = e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
            let error = if lost { StoreError::unreachable(cause) } else { StoreError::new(cause) };
            self.failure = Some(Failure::of(error.clone(), &e, &self.pg.schema));
            error
        })
    }

    /// A statement that reads rows, in the transaction (begun with it), behind the `checks`.
    pub(crate) fn rows(&mut self, checks: &[Batch], sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let begin = (!self.begun).then_some(self.begin);
        let rows = self.conn()?.query_behind(begin, checks, sql, params);
        self.begun = true;
        self.alone = Alone::Never;
        self.note(rows)
    }

    /// A point read outside the transaction block: the first statement of a read (see [`Alone`]).
    fn rows_alone(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let rows = self.conn()?.query(sql, params);
        self.alone = Alone::Ran;
        self.note(rows)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        self.begin_now()?;
        let done = self.conn()?.execute(sql, params);
        self.note(done)
    }

    /// Statements without parameters (DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        self.begin_now()?;
        let conn = self.conn()?;
        let done = conn.batch(sql);
        conn.forget_statements();
        self.note(done)
    }

    fn begin_now(&mut self) -> Result<()> {
        if !self.begun {
            let begin = self.begin;
            let begun = self.conn()?.batch(begin);
            self.begun = true;
            self.note(begun)?;
        }
        Ok(())
    }

    /// Sends `batches` (changes the transaction held) in one round trip.
    pub(crate) fn send(&mut self, batches: &[Batch]) -> Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        let begin = (!self.begun).then_some(self.begin);
        let (sent, _) = self.conn()?.pipeline(begin, batches, None);
        self.begun = true;
        self.note(sent)
    }

    /// Sends `batches` and the `COMMIT` in one round trip, and gives the connection back.
    pub(crate) fn commit(&mut self, batches: &[Batch]) -> Result<(), Failure> {
        if let Some(failure) = self.failure.clone() {
            let _ = self.end(false);
            return Err(failure);
        }
        if !self.begun && batches.is_empty() {
            self.ended = true;
            return Ok(());
        }
        let begin = (!self.begun).then_some(self.begin);
        let conn = self.conn().map_err(Failure::new)?;
        let (committed, ended) = conn.pipeline(begin, batches, Some("COMMIT"));
        self.begun = true;
        if ended {
            // Committed, or rolled back by the `COMMIT` after an error: the connection is free.
            self.ended = true;
            if let Some(conn) = self.conn.take() {
                self.give_back(conn);
            }
        }
        committed.map_err(|e| {
            let error = StoreError::new(format!("database commit: {}", describe(&e)));
            let failure = Failure::of(error, &e, &self.pg.schema);
            if !ended {
                self.failure = Some(failure.clone());
                let _ = self.end(false);
            }
            failure
        })
    }

    /// Sends `batches` and the `COMMIT` without waiting for their answers (see `Conn::fly`), and gives
    /// the connection back: the next transaction on it reads them first. The flight's number, or `None`
    /// if there was nothing to send (then the transaction ended here).
    pub(crate) fn fly(&mut self, batches: Vec<Batch>) -> Result<Option<u64>, Failure> {
        if let Some(failure) = self.failure.clone() {
            let _ = self.end(false);
            return Err(failure);
        }
        if !self.begun && batches.is_empty() {
            self.ended = true;
            return Ok(None);
        }
        let begin = (!self.begun).then_some(self.begin);
        let number = self.pg.next_flight();
        let flown = self.conn().map_err(Failure::new)?.fly(number, begin, batches, "COMMIT");
        self.begun = true;
        if let Err(e) = flown {
            let error = StoreError::new(format!("database commit: {}", describe(&e)));
            let failure = Failure::of(error, &e, &self.pg.schema);
            self.failure = Some(failure.clone());
            let _ = self.end(false);
            return Err(failure);
        }
        self.pg.flew(number);
        self.ended = true;
        if let Some(conn) = self.conn.take() {
            self.give_back(conn);
        }
        Ok(Some(number))
    }

    /// Ends a read-only transaction without waiting for its `COMMIT` (see `Conn::send`): the next
    /// transaction on the connection queues behind it.
    pub(crate) fn end_read(&mut self) {
        self.ended = true;
        let Some(mut conn) = self.conn.take() else { return };
        if !self.begun || conn.send("COMMIT").is_ok() {
            self.give_back(conn);
        }
    }

    /// Ends the transaction (`COMMIT` when `commit` and nothing failed, else `ROLLBACK`) and gives the
    /// connection back to the pool.
    pub(crate) fn end(&mut self, commit: bool) -> Result<(), tokio_postgres::Error> {
        self.ended = true;
        let Some(mut conn) = self.conn.take() else { return Ok(()) };
        let ended = match self.begun {
            true => conn.batch(if commit && self.failure.is_none() { "COMMIT" } else { "ROLLBACK" }),
            false => Ok(()),
        };
        if ended.is_ok() {
            self.give_back(conn);
        }
        ended
    }
}

/// A transaction with the backend it runs on: the reads shared by read and write transactions.
pub(crate) struct Transaction {
    pub(crate) pg: Arc<Pg>,
    session: Mutex<Session>,
    /// Tables this transaction created (true) or dropped (false), in order: known at once to its own
    /// statements, and to the other transactions of this process only once it committed.
    changed: Mutex<Vec<(String, bool)>>,
    /// The rows this transaction changed and has not sent yet (a write's; a read's stays empty).
    pending: Mutex<Pending>,
    /// The rows this transaction read and did not change since.
    seen: Mutex<Seen>,
    /// Whether this transaction reads what the process remembers (see [`super::remembered`]): a write's does.
    remembers: bool,
    /// What this transaction changed in the database before its commit.
    sent: Mutex<Sent>,
    /// The remembered answers this transaction used, checked before its first change.
    checks: Mutex<Checks>,
    /// The ranges it scanned in the database, remembered once it commits.
    scanned: Mutex<Vec<(String, Covered)>>,
    /// Rows the caller said it will likely read (table, key): fetched with the next point read.
    expected: Mutex<Vec<(String, Vec<u8>)>>,
    /// A write's when its process writes the schema alone (see [`super::sole`]): the arrivals number
    /// its assertion names, instead of checks of remembered rows.
    sole: Option<i64>,
    /// Whether that assertion went out already.
    asserted: std::sync::atomic::AtomicBool,
}

impl Transaction {
    /// A transaction; a write's (`remembers`) runs on the connection that holds the schema, and
    /// `sole` says whether it writes alone.
    pub(crate) fn new(pg: Arc<Pg>, begin: &'static str, remembers: bool, alone: Alone, sole: Option<i64>) -> Self {
        let session = Mutex::new(Session::new(Arc::clone(&pg), begin, alone, remembers));
        Self {
            pg,
            session,
            changed: Mutex::default(),
            pending: Mutex::default(),
            seen: Mutex::default(),
            remembers,
            sent: Mutex::default(),
            checks: Mutex::default(),
            scanned: Mutex::default(),
            expected: Mutex::default(),
            sole,
            asserted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes that `key` of `table` will likely be read: the next point read that goes to the database
    /// fetches it in the same statement.
    pub(crate) fn expect(&self, table: Named<'_>, key: &[u8]) {
        use redb::TableHandle;
        let mut expected = self.expected.lock().unwrap_or_else(PoisonError::into_inner);
        if expected.len() < MAX_EXPECTED {
            expected.push((table.name().to_string(), key.to_vec()));
        }
    }

    /// The expected rows still worth fetching along with `key` of `table`: not that row, not known
    /// already, and of a table known to exist (one more round trip to find out would defeat the purpose).
    fn take_expected(&self, table: &str, key: &[u8]) -> Vec<(String, Vec<u8>)> {
        let expected = std::mem::take(&mut *self.expected.lock().unwrap_or_else(PoisonError::into_inner));
        let mut wanted: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, other) in expected {
            let duplicate = (name == table && other == key) || wanted.contains(&(name.clone(), other.clone()));
            let exists = self.changed_here(&name).unwrap_or_else(|| self.pg.has_table(&name));
            if duplicate
                || !exists
                || self.pending().get(&name, &other).is_some()
                || self.seen().get(&name, &other).is_some()
            {
                continue;
            }
            if self.uses_memory(&name) && self.pg.remembered().get(&name, &other).is_some() {
                continue;
            }
            wanted.push((name, other));
        }
        wanted
    }

    fn checks(&self) -> std::sync::MutexGuard<'_, Checks> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn uses_memory(&self, table: &str) -> bool {
        self.remembers && !self.sent().touched(table)
    }

    /// The remembered answer for `key`, noted to be checked (and remembered in this transaction).
    fn recall(&self, table: &str, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if !self.uses_memory(table) {
            return None;
        }
        let value = self.pg.remembered().get(table, key)?;
        match self.sole {
            Some(_) => self.checks().row_unlisted(),
            None => self.checks().row(table, key, value.as_deref()),
        }
        self.seen().remember(table, key, value.as_deref());
        Some(value)
    }

    /// What this transaction knows of `key` without asking the database (`Some(None)`: it does not exist).
    pub(crate) fn known(&self, table: &str, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let seen = self.seen().get(table, key).map(|value| value.map(<[u8]>::to_vec));
        seen.or_else(|| self.recall(table, key))
    }

    /// The statements that check the remembered answers used so far, which are then no longer held:
    /// they go out before anything that changes the rows they read. A write of a process that writes
    /// alone asserts that instead, once.
    pub(crate) fn take_checks(&self) -> Result<Vec<Batch>> {
        let mut checks = self.checks();
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(arrivals) = self.sole {
            *checks = Checks::default();
            return Ok(self.assertion(arrivals).into_iter().collect());
        }
        checks.take(|table| self.pg.qualified(table), &self.pg.unchanged)
    }

    /// The assertion that this write's process still writes alone, unless it went out already.
    fn assertion(&self, arrivals: i64) -> Option<Batch> {
        let sent = self.asserted.swap(true, std::sync::atomic::Ordering::Relaxed);
        (!sent).then(|| self.pg.sole.still_alone(arrivals))
    }

    pub(crate) fn has_checks(&self) -> bool {
        !self.checks().is_empty()
    }

    /// Sends the checks held so far, if any, in one round trip.
    pub(crate) fn send_checks(&self) -> Result<()> {
        let checks = self.take_checks()?;
        self.lock().send(&checks)
    }

    /// Makes what the process remembers follow this committed transaction: the rows and ranges it read
    /// from the database, with its changes (those sent before the commit, then `written`) over them.
    pub(crate) fn publish_reads(&self, written: BTreeMap<String, Changes>) {
        if !self.remembers {
            return;
        }
        let sent = std::mem::take(&mut *self.sent());
        let scanned = std::mem::take(&mut *self.scanned.lock().unwrap_or_else(PoisonError::into_inner));
        let seen = std::mem::take(&mut *self.seen());
        remembered::follow(&mut self.pg.remembered(), seen, scanned, sent, written);
    }

    /// Forgets everything remembered, after this transaction lost a race with another node's (which
    /// also means the process no longer writes alone).
    pub(crate) fn forget_remembered(&self) {
        self.pg.not_alone();
        self.pg.remembered().clear_and_rest();
    }

    pub(crate) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the held changes to `table` (after the checks held), so that a statement reading it sees them.
    fn flush_table(&self, name: &str) -> Result<()> {
        if !self.pending().has_table(name) {
            return Ok(());
        }
        let mut batches = self.take_checks()?;
        let changes = self.pending().take_table(name).unwrap_or_default();
        self.sent().rows(name, &changes.rows);
        batches.extend(pending::batches(&self.pg.qualified(name)?, &changes));
        self.lock().send(&batches)
    }

    /// Sends every held change (after the checks held).
    pub(crate) fn flush_all(&self) -> Result<()> {
        let mut batches = self.take_checks()?;
        for (name, changes) in self.pending().take_all() {
            self.sent().rows(&name, &changes.rows);
            batches.extend(pending::batches(&self.pg.qualified(&name)?, &changes));
        }
        self.lock().send(&batches)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        lock(&self.session)
    }

    /// Runs a statement that reads rows in the transaction; after a point read that ran alone, behind
    /// the checks of what it read.
    fn query(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let checks = match self.lock().alone {
            Alone::Ran => self.take_checks()?,
            Alone::Possible | Alone::Never => Vec::new(),
        };
        self.lock().rows(&checks, sql, params)
    }

    /// Runs a point read: alone when it is the first statement of a read that may run so, which the
    /// `true` beside the rows says (what it read must then be noted with [`Self::read_alone`]).
    fn point_read(&self, sql: &str, params: &Params<'_>) -> Result<(Vec<Row>, bool)> {
        let mut session = self.lock();
        if session.alone == Alone::Possible {
            return Ok((session.rows_alone(sql, params)?, true));
        }
        drop(session);
        Ok((self.query(sql, params)?, false))
    }

    /// Notes what a point read that ran alone found, to be checked if the read goes on.
    fn read_alone(&self, table: &str, key: &[u8], value: Option<&[u8]>) {
        self.checks().row(table, key, value);
    }

    /// Whether this read lost a race: a statement after its first found what that one read changed.
    pub(crate) fn lost_race(&self) -> bool {
        self.lock().failure().is_some_and(|failure| failure.conflict)
    }

    /// Calls `f` with the value under `key` in `table`.
    pub(crate) fn get<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        use redb::TableHandle;
        let held = self.pending().get(table.name(), key).map(|value| value.map(<[u8]>::to_vec));
        if let Some(value) = held {
            return f(value.as_deref());
        }
        if let Some(value) = self.known(table.name(), key) {
            return f(value.as_deref());
        }
        if !self.exists(table.name())? {
            return f(None);
        }
        let expected = self.take_expected(table.name(), key);
        if !expected.is_empty() {
            return self.get_with_expected(table.name(), key, &expected, f);
        }
        let sql = sql::get(&self.pg.qualified(table.name())?);
        let (rows, alone) = self.point_read(&sql, &[&key])?;
        let value = rows.first().map(|row| row.try_get::<_, &[u8]>(0)).transpose().map_err(StoreError::from)?;
        self.seen().remember(table.name(), key, value);
        if alone {
            self.read_alone(table.name(), key, value);
        }
        f(value)
    }

    /// `get` of `key` with the `expected` rows in the same statement; those are kept for later reads.
    fn get_with_expected<R, E: From<StoreError>>(
        &self,
        table: &str,
        key: &[u8],
        expected: &[(String, Vec<u8>)],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        let asked: Vec<(&str, &[u8])> = std::iter::once((table, key))
            .chain(expected.iter().map(|(name, k)| (name.as_str(), k.as_slice())))
            .collect();
        let names = asked.iter().map(|(name, _)| self.pg.qualified(name)).collect::<Result<Vec<_>>>()?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            asked.iter().map(|(_, k)| k as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let (rows, alone) = self.point_read(&sql::get_several(&names), &params)?;
        let mut found: Vec<Option<&[u8]>> = vec![None; asked.len()];
        for row in &rows {
            let i: i32 = row.try_get(0).map_err(StoreError::from)?;
            let slot = usize::try_from(i).ok().and_then(|i| found.get_mut(i));
            let slot = slot.ok_or_else(|| StoreError::new("database: a row of no asked key"))?;
            *slot = Some(row.try_get::<_, &[u8]>(1).map_err(StoreError::from)?);
        }
        for ((name, key), value) in asked.iter().zip(&found) {
            self.seen().remember(name, key, *value);
            if alone {
                self.read_alone(name, key, *value);
            }
        }
        f(found.first().copied().flatten())
    }

    /// Calls `f` with the index of each of `keys` and its value, in order: the keys changed here from
    /// the held changes, the others in one statement.
    pub(crate) fn get_many<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        keys: &[&[u8]],
        mut f: impl FnMut(usize, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        use redb::TableHandle;
        let known: Vec<Option<Option<Vec<u8>>>> = {
            let (pending, seen) = (self.pending(), self.seen());
            let known = |key: &[u8]| pending.get(table.name(), key).or_else(|| seen.get(table.name(), key));
            keys.iter().map(|key| known(key).map(|v| v.map(<[u8]>::to_vec))).collect()
        };
        let known: Vec<Option<Option<Vec<u8>>>> =
            keys.iter().zip(known).map(|(key, known)| known.or_else(|| self.recall(table.name(), key))).collect();
        let wanted: Vec<&[u8]> = keys.iter().zip(&known).filter(|(_, k)| k.is_none()).map(|(k, _)| *k).collect();
        let mut found = std::collections::HashMap::new();
        if !wanted.is_empty() && self.exists(table.name())? {
            let sql = sql::get_many(&self.pg.qualified(table.name())?);
            // In the transaction, not alone: a read that fetches several rows at once likely reads on,
            // and would then check them all in a statement of their own.
            let rows = self.query(&sql, &[&wanted])?;
            for row in rows {
                let key: Vec<u8> = row.try_get(0).map_err(StoreError::from)?;
                let value: Vec<u8> = row.try_get(1).map_err(StoreError::from)?;
                found.insert(key, value);
            }
            for key in &wanted {
                self.seen().remember(table.name(), key, found.get(*key).map(Vec::as_slice));
            }
        }
        for (i, (key, known)) in keys.iter().zip(known).enumerate() {
            match known {
                Some(value) => f(i, value.as_deref())?,
                None => f(i, found.get(*key).map(Vec::as_slice))?,
            }
        }
        Ok(())
    }

    /// Visits the rows of `range` in key order (descending when `reverse`) until `visit` returns false,
    /// fetching them in growing batches.
    pub(crate) fn scan<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        use redb::TableHandle;
        if !self.exists(table.name())? {
            return Ok(());
        }
        let asked = range;
        let mut range = (range.0.map(<[u8]>::to_vec), range.1.map(<[u8]>::to_vec));
        let covered = match self.uses_memory(table.name()) {
            true => self.pg.remembered().covering(table.name(), asked, reverse),
            false => None,
        };
        if let Some(covered) = covered {
            match self.scan_remembered(table.name(), covered, asked, reverse, &mut visit)? {
                Some(rest) if reverse => range.1 = rest,
                Some(rest) => range.0 = rest,
                None => return Ok(()),
            }
        }
        // What a scan from the start of the asked range reads is remembered once the transaction commits.
        let mut learning = (self.remembers && range == asked_owned(asked)).then(Covered::default);
        self.flush_table(table.name())?;
        let name = self.pg.qualified(table.name())?;
        let mut batch = FIRST_BATCH;
        let learned = |learning: Option<Covered>, read: Option<&[u8]>| {
            let Some(mut covered) = learning else { return };
            covered.range = match (read, reverse) {
                (None, _) => asked_owned(asked),
                (Some(last), false) => (asked_owned(asked).0, Bound::Included(last.to_vec())),
                (Some(last), true) => (Bound::Included(last.to_vec()), asked_owned(asked).1),
            };
            self.scanned.lock().unwrap_or_else(PoisonError::into_inner).push((table.name().to_string(), covered));
        };
        loop {
            let sql = sql::scan(&name, &range, reverse);
            let bounds = sql::bound_params(&range);
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                bounds.iter().map(|b| b as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            params.push(&batch);
            // The lock is let go before `visit`, which may read through the same transaction.
            let rows = self.query(&sql, &params)?;
            let mut last = None;
            for row in &rows {
                let key: &[u8] = row.try_get(0).map_err(StoreError::from)?;
                let value: &[u8] = row.try_get(1).map_err(StoreError::from)?;
                if let Some(covered) = &mut learning {
                    Arc::make_mut(&mut covered.rows).insert(key.to_vec(), value.to_vec());
                    if covered.rows.len() > remembered::MAX_RANGE_ROWS {
                        learning = None;
                    }
                }
                if !visit(key, value)? {
                    learned(learning, Some(key));
                    return Ok(());
                }
                last = Some(key);
            }
            let (Some(last), true) = (last, i64::try_from(rows.len()).unwrap_or(0) == batch) else {
                learned(learning, None);
                return Ok(());
            };
            let after = Bound::Excluded(last.to_vec());
            if reverse {
                range.1 = after;
            } else {
                range.0 = after;
            }
            batch = (batch * 4).min(MAX_BATCH);
        }
    }

    /// Visits the rows of a remembered range (with this transaction's held changes), noting what it read
    /// to be checked. Where the database scan goes on, if the asked range reaches past it.
    fn scan_remembered<E: From<StoreError>>(
        &self,
        table: &str,
        covered: Covered,
        asked: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: &mut impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<Option<Bound<Vec<u8>>>, E> {
        let held = self.pending().held(table).cloned().unwrap_or_default();
        for (key, value) in remembered::overlay(&covered.rows, &held, &covered.range, reverse) {
            if !visit(key, value)? {
                self.checks().range(table, remembered::read_up_to(&covered, key, reverse));
                return Ok(None);
            }
        }
        let (end, asked_end) = match reverse {
            false => (covered.range.1.clone(), asked.1),
            true => (covered.range.0.clone(), asked.0),
        };
        self.checks().range(table, covered);
        Ok(match end {
            _ if end.as_ref().map(Vec::as_slice) == asked_end => None,
            Bound::Included(key) => Some(Bound::Excluded(key)),
            Bound::Excluded(key) => Some(Bound::Included(key)),
            Bound::Unbounded => None,
        })
    }

    /// How many rows `table` holds.
    pub(crate) fn count(&self, table: Named<'_>) -> Result<u64> {
        use redb::TableHandle;
        if !self.exists(table.name())? {
            return Ok(0);
        }
        self.flush_table(table.name())?;
        let sql = format!("SELECT count(*) FROM {}", self.pg.qualified(table.name())?);
        let rows = self.query(&sql, &[])?;
        let count: i64 = rows.first().map(|row| row.try_get(0)).transpose()?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Whether the table `name` exists. The tables this process knows of are remembered; any other is
    /// looked up each time, since another node may have created it since.
    pub(crate) fn exists(&self, name: &str) -> Result<bool> {
        if let Some(exists) = self.changed_here(name) {
            return Ok(exists);
        }
        if self.pg.has_table(name) {
            return Ok(true);
        }
        let rows = self.query(sql::EXISTS, &[&self.pg.qualified(name)?])?;
        let found = rows.first().map(|row| row.try_get::<_, bool>(0)).transpose()?.unwrap_or(false);
        if found {
            // Committed: a table of this transaction's own would have been answered above.
            self.pg.learned_table(name, true);
        }
        Ok(found)
    }

    /// Notes that this transaction created (`exists`) or dropped a table.
    pub(crate) fn changed_table(&self, name: &str, exists: bool) {
        self.changed().push((name.to_string(), exists));
    }

    /// Whether this transaction created or dropped tables.
    pub(crate) fn changes_tables(&self) -> bool {
        !self.changed().is_empty()
    }

    /// Tells the process of the tables this transaction created or dropped, once it committed.
    pub(crate) fn publish_tables(&self) {
        for (name, exists) in std::mem::take(&mut *self.changed()) {
            self.pg.learned_table(&name, exists);
        }
    }

    fn changed_here(&self, name: &str) -> Option<bool> {
        self.changed().iter().rev().find(|(changed, _)| changed == name).map(|(_, exists)| *exists)
    }

    fn changed(&self) -> std::sync::MutexGuard<'_, Vec<(String, bool)>> {
        self.changed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The names of the portal's tables.
    pub(crate) fn table_names(&self) -> Vec<String> {
        let mut names: std::collections::BTreeSet<String> = self.pg.table_names().into_iter().collect();
        for (name, exists) in self.changed().iter() {
            if *exists {
                names.insert(name.clone());
            } else {
                names.remove(name);
            }
        }
        names.into_iter().collect()
    }
}

fn asked_owned(asked: (Bound<&[u8]>, Bound<&[u8]>)) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (asked.0.map(<[u8]>::to_vec), asked.1.map(<[u8]>::to_vec))
}

/// The error's text with PostgreSQL's own message, which `Display` leaves out.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

pub(crate) fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}
