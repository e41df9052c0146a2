//! A write group's transaction: `SERIALIZABLE`, so a group that read what another node changed meanwhile
//! fails with a serialization failure and runs again, as if the nodes had written one after the other.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use redb::TableHandle;

use super::pending::{self, Batch, Changes};
use super::session::{Alone, Failure, Transaction};
use super::{sql, Pg};
use crate::error::Result;
use crate::table::Named;

const BEGIN: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE";

pub(crate) struct PgWrite {
    tx: Transaction,
    /// The flight that was up when this write began, whose writes it read as committed.
    behind: Option<u64>,
}

/// Reads go straight to the transaction.
impl std::ops::Deref for PgWrite {
    type Target = Transaction;

    fn deref(&self) -> &Transaction {
        &self.tx
    }
}

impl PgWrite {
    pub(crate) fn begin(pg: Arc<Pg>) -> Self {
        let sole = pg.writing_alone();
        let behind = pg.flight_up();
        Self { tx: Transaction::new(pg, BEGIN, true, Alone::Never, sole), behind }
    }

    pub(crate) fn create_table(&self, table: Named<'_>) -> Result<()> {
        let name = table.name();
        if self.tx.exists(name)? {
            return Ok(());
        }
        self.tx.sent().lose(name);
        let mut session = self.tx.lock();
        // Nodes creating tables take turns, so that they do not trip over each other in the catalog.
        session.execute(sql::DDL_TURN, &[&self.tx.pg.schema])?;
        session.batch(&sql::create(&self.tx.pg.qualified(name)?))?;
        drop(session);
        self.tx.changed_table(name, true);
        Ok(())
    }

    pub(crate) fn delete_table(&self, name: &str) -> Result<bool> {
        if !self.tx.exists(name)? {
            return Ok(false);
        }
        // The checks may read the table: they go before it is gone.
        self.tx.send_checks()?;
        self.tx.sent().lose(name);
        self.tx.pending().forget_table(name);
        self.tx.seen().forget_table(name);
        self.tx.lock().batch(&sql::drop_table(&self.tx.pg.qualified(name)?))?;
        self.tx.changed_table(name, false);
        Ok(true)
    }

    /// Held until the commit, or until a statement reads the table (see `Pending`).
    pub(crate) fn put(&self, table: Named<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.create_table(table)?;
        let name = table.name();
        let read = self.tx.seen().forget(name, key);
        // Inserted unless it may exist: read so, sent earlier in this transaction, or in a table
        // overwritten without reads.
        let existing = || read.unwrap_or_else(|| self.tx.sent().touched(name) || self.tx.pg.overwrites(name));
        let full = {
            let mut pending = self.tx.pending();
            pending.put(name, key, value, existing);
            pending.is_full()
        };
        if full {
            self.tx.flush_all()?;
        }
        Ok(())
    }

    pub(crate) fn remove(&self, table: Named<'_>, key: &[u8]) -> Result<bool> {
        if !self.tx.exists(table.name())? {
            return Ok(false);
        }
        if let Some(existed) = self.tx.pending().remove(table.name(), key) {
            self.tx.seen().forget(table.name(), key);
            return Ok(existed);
        }
        // A key whose value is known is removed with the commit, like a put.
        let known = self.tx.known(table.name(), key);
        self.tx.seen().forget(table.name(), key);
        if let Some(existed) = known {
            self.tx.pending().hold_removal(table.name(), key, existed.is_some());
            return Ok(existed.is_some());
        }
        self.tx.send_checks()?;
        self.tx.sent().rows(table.name(), &[(key.to_vec(), None)].into_iter().collect());
        let sql = sql::remove(&self.tx.pg.qualified(table.name())?);
        Ok(self.tx.lock().execute(&sql, &[&key])? > 0)
    }

    pub(crate) fn remove_range(&self, table: Named<'_>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<()> {
        if !self.tx.exists(table.name())? {
            return Ok(());
        }
        self.tx.send_checks()?;
        self.tx.sent().lose(table.name());
        self.tx.pending().forget_range(table.name(), range);
        self.tx.seen().forget_range(table.name(), range);
        let range = (range.0.map(<[u8]>::to_vec), range.1.map(<[u8]>::to_vec));
        let sql = sql::remove_range(&self.tx.pg.qualified(table.name())?, &range);
        let bounds = sql::bound_params(&range);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            bounds.iter().map(|b| b as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        self.tx.lock().execute(&sql, &params)?;
        Ok(())
    }

    /// The first statement of this transaction that failed, if any (then it can only roll back).
    pub(crate) fn failure(&self) -> Option<Failure> {
        self.tx.lock().failure()
    }

    /// Sends the checks and the held changes with the `COMMIT`; a refused commit rolls back (a
    /// conflict, or the connection lost with the outcome unknown) and forgets what was remembered.
    pub(crate) fn commit(self) -> std::result::Result<(), Failure> {
        let (written, batches) = self.final_batches()?;
        if let Err(failure) = self.tx.lock().commit(&batches) {
            self.learn_from(&failure);
            return Err(failure);
        }
        self.tx.publish_tables();
        self.tx.publish_reads(written);
        Ok(())
    }

    /// Sends the checks and the held changes with the `COMMIT` without waiting for its answer (see
    /// `Pg::flight`), and remembers what it wrote as committed meanwhile. The flight's number, or
    /// `None` once committed here (nothing to send, or tables created or dropped, which the process
    /// learns of only once they are).
    pub(crate) fn send_commit(self) -> std::result::Result<Option<u64>, Failure> {
        if self.tx.changes_tables() {
            return self.commit().map(|()| None);
        }
        let (written, batches) = self.final_batches()?;
        let flown = self.tx.lock().fly(batches);
        match flown {
            Ok(number) => {
                self.tx.publish_reads(written);
                Ok(number)
            }
            Err(failure) => {
                self.learn_from(&failure);
                Err(failure)
            }
        }
    }

    /// What is still held, and the statements that send it after the checks; rolls back if they
    /// cannot be made, or if this write read what a failed flight wrote.
    fn final_batches(&self) -> std::result::Result<(BTreeMap<String, Changes>, Vec<Batch>), Failure> {
        if let Some(doomed) = self.doomed() {
            let _ = self.tx.lock().end(false);
            return Err(doomed);
        }
        let written = self.tx.pending().take_all();
        let batches = self.tx.take_checks().and_then(|mut batches| {
            for (name, rows) in &written {
                batches.extend(pending::batches(&self.tx.pg.qualified(name)?, rows));
            }
            Ok(batches)
        });
        match batches {
            Ok(batches) => Ok((written, batches)),
            Err(error) => {
                let _ = self.tx.lock().end(false);
                Err(Failure::new(error))
            }
        }
    }

    /// A conflict if this write began while a flight was up that then failed: it read what that one
    /// wrote as committed, so it runs again.
    fn doomed(&self) -> Option<Failure> {
        let failed = self.tx.pg.flight(self.behind?, false).is_err();
        failed.then(|| Failure {
            error: crate::error::StoreError::new("a write group before this one was not committed"),
            conflict: true,
            overwrote: None,
        })
    }

    /// Rolls back after a write failed: the conflict, if the failure may come from a race with
    /// another transaction (then the writes should run again). A write may have failed because of a
    /// remembered row that was out of date, so the remembered rows it used are checked first.
    pub(crate) fn abandon(self) -> Option<Failure> {
        if let Some(doomed) = self.doomed() {
            self.rollback();
            return Some(doomed);
        }
        let mut conflict = self.failure().filter(|failure| failure.conflict);
        if conflict.is_none() && self.tx.has_checks() && self.tx.send_checks().is_err() {
            conflict = self.failure().filter(|failure| failure.conflict);
        }
        if let Some(failure) = &conflict {
            self.learn_from(failure);
        }
        self.rollback();
        conflict
    }

    /// After a failure: a table into which an insert met an existing key is upserted from now on (what
    /// was remembered stays, checked again as always when the write runs again); any other failure
    /// forgets what was remembered, which may be out of date.
    fn learn_from(&self, failure: &Failure) {
        match &failure.overwrote {
            Some(table) => self.tx.pg.overwrote(table),
            None => self.tx.forget_remembered(),
        }
    }

    pub(crate) fn rollback(self) {
        let _ = self.tx.lock().end(false);
    }
}
