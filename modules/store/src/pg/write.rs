//! A write group's transaction: `SERIALIZABLE`, so a group that read what another node changed meanwhile
//! fails with a serialization failure and runs again, as if the nodes had written one after the other.

use std::ops::Bound;
use std::sync::Arc;

use redb::TableHandle;

use super::session::{Failure, Transaction};
use super::{sql, Pg};
use crate::error::Result;
use crate::table::Named;

const BEGIN: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE";

pub(crate) struct PgWrite {
    tx: Transaction,
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
        Self { tx: Transaction::new(pg, BEGIN) }
    }

    pub(crate) fn create_table(&self, table: Named<'_>) -> Result<()> {
        let name = table.name();
        if self.tx.exists(name)? {
            return Ok(());
        }
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
        self.tx.pending().forget_table(name);
        self.tx.seen().forget_table(name);
        self.tx.lock().batch(&sql::drop_table(&self.tx.pg.qualified(name)?))?;
        self.tx.changed_table(name, false);
        Ok(true)
    }

    /// Held until the commit, or until a statement reads the table (see `Pending`).
    pub(crate) fn put(&self, table: Named<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        self.create_table(table)?;
        self.tx.seen().forget(table.name(), key);
        let full = {
            let mut pending = self.tx.pending();
            pending.put(table.name(), key, value);
            pending.is_full()
        };
        if full {
            let batches = self.tx.take_batches()?;
            self.tx.lock().send(&batches)?;
        }
        Ok(())
    }

    pub(crate) fn remove(&self, table: Named<'_>, key: &[u8]) -> Result<bool> {
        if !self.tx.exists(table.name())? {
            return Ok(false);
        }
        self.tx.seen().forget(table.name(), key);
        if let Some(existed) = self.tx.pending().remove(table.name(), key) {
            return Ok(existed);
        }
        let sql = sql::remove(&self.tx.pg.qualified(table.name())?);
        Ok(self.tx.lock().execute(&sql, &[&key])? > 0)
    }

    pub(crate) fn remove_range(&self, table: Named<'_>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<()> {
        if !self.tx.exists(table.name())? {
            return Ok(());
        }
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

    /// Sends the held changes with the `COMMIT`; a refused commit rolls back (a conflict, or the
    /// connection lost with the outcome unknown).
    pub(crate) fn commit(self) -> std::result::Result<(), Failure> {
        let batches = match self.tx.take_batches() {
            Ok(batches) => batches,
            Err(error) => {
                self.rollback();
                return Err(Failure { error, conflict: false });
            }
        };
        self.tx.lock().commit(&batches)?;
        self.tx.publish_tables();
        Ok(())
    }

    pub(crate) fn rollback(self) {
        let _ = self.tx.lock().end(false);
    }
}
