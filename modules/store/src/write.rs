//! `WriteTx`: a write transaction of either backend, as the modules see it. It reads like a snapshot
//! ([`ReadTx`]) and writes bytes under keys; [`crate::Table`] and [`crate::Index`] give it types.

use std::ops::Bound;

use crate::error::{Result, StoreError};
use crate::open_tables::RedbWrite;
use crate::pg::PgWrite;
use crate::redo::Redo;
use crate::table::{get_in, only_below, scan_in, Named, ReadTx};

/// A write transaction: every write of one store write closure, committed together or not at all.
pub struct WriteTx(pub(crate) Backend);

// One transaction per write group, moved, never stored in bulk: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// The transaction with the tables it opened, and its redo record (see [`crate::redo`]).
    Redb(RedbWrite, Redo),
    Pg(PgWrite),
}

impl WriteTx {
    /// Creates `table` if missing (run from a module's `install`).
    pub fn create_table(&self, table: Named<'_>) -> Result<()> {
        match &self.0 {
            Backend::Redb(tx, redo) => {
                tx.read(table, |_| Ok::<_, StoreError>(()))?;
                redo.create(table);
            }
            Backend::Pg(tx) => tx.create_table(table)?,
        }
        Ok(())
    }

    /// Deletes the table `name` with everything in it; whether it existed.
    pub fn delete_table(&self, name: &str) -> Result<bool> {
        match &self.0 {
            Backend::Redb(tx, redo) => {
                let existed = tx.with_all_closed(|tx| Ok(tx.delete_table(crate::table::raw(name))?))?;
                redo.delete(name);
                Ok(existed)
            }
            Backend::Pg(tx) => tx.delete_table(name),
        }
    }

    /// The names of every table in the store (but the store's own).
    pub fn table_names(&self) -> Result<Vec<String>> {
        match &self.0 {
            Backend::Redb(tx, _) => tx.with_all_closed(|tx| {
                use redb::TableHandle;
                Ok(tx.list_tables()?.map(|t| t.name().to_string()).filter(|name| !crate::redo::is_own(name)).collect())
            }),
            Backend::Pg(tx) => Ok(tx.table_names()),
        }
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn put_raw(&self, table: Named<'_>, key: &[u8], value: &[u8]) -> Result<()> {
        match &self.0 {
            Backend::Redb(tx, redo) => {
                tx.write(table, |t| {
                    t.insert(key, value)?;
                    Ok(())
                })?;
                redo.put(table, key, value);
            }
            Backend::Pg(tx) => tx.put(table, key, value)?,
        }
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn remove_raw(&self, table: Named<'_>, key: &[u8]) -> Result<bool> {
        match &self.0 {
            Backend::Redb(tx, redo) => {
                let removed = tx.write(table, |t| Ok(t.remove(key)?.is_some()))?;
                redo.remove(table, key);
                Ok(removed)
            }
            Backend::Pg(tx) => tx.remove(table, key),
        }
    }

    /// Removes every key in `range`.
    pub fn remove_range_raw(&self, table: Named<'_>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> Result<()> {
        match &self.0 {
            Backend::Redb(tx, redo) => {
                tx.write(table, |t| Ok(t.retain_in::<&[u8], _>(range, |_, _| false)?))?;
                redo.remove_range(table, range);
            }
            Backend::Pg(tx) => tx.remove_range(table, range)?,
        }
        Ok(())
    }

    /// `table` for many reads and writes in a row (a redb write transaction holds each table open until
    /// its commit anyway: see `open_tables`).
    pub fn table<'a>(&'a self, table: Named<'a>) -> Result<TableMut<'a>> {
        Ok(TableMut { tx: self, table })
    }
}

impl ReadTx for WriteTx {
    fn get_raw<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        match &self.0 {
            Backend::Redb(tx, _) => tx.read(table, |t| get_in(Some(t), key, f)),
            Backend::Pg(tx) => tx.get(table, key, f),
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
            Backend::Redb(tx, _) => tx.read(table, |t| scan_in(Some(t), range, reverse, visit)),
            Backend::Pg(tx) => tx.scan(table, range, reverse, visit),
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
            Backend::Redb(..) => self.scan_raw(table, (whole.0, Bound::Excluded(below)), true, visit),
            Backend::Pg(tx) => tx.scan(table, whole, true, only_below(below, visit)),
        }
    }

    fn count_raw(&self, table: Named<'_>) -> Result<u64> {
        match &self.0 {
            Backend::Redb(tx, _) => tx.read(table, |t| Ok(redb::ReadableTableMetadata::len(t)?)),
            Backend::Pg(tx) => tx.count(table),
        }
    }

    fn expect(&self, table: Named<'_>, key: &[u8]) {
        if let Backend::Pg(tx) = &self.0 {
            tx.expect(table, key);
        }
    }

    fn get_many_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        keys: &[&[u8]],
        f: impl FnMut(usize, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.0 {
            Backend::Redb(..) => crate::table::get_one_by_one(self, table, keys, f),
            Backend::Pg(tx) => tx.get_many(table, keys, f),
        }
    }
}

/// One table of a write transaction, named once for many reads and writes (see [`WriteTx::table`]).
pub struct TableMut<'tx> {
    tx: &'tx WriteTx,
    table: Named<'tx>,
}

impl TableMut<'_> {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tx.get_raw(self.table, key, |bytes| Ok(bytes.map(<[u8]>::to_vec)))
    }

    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tx.put_raw(self.table, key, value)
    }

    pub fn remove(&mut self, key: &[u8]) -> Result<bool> {
        self.tx.remove_raw(self.table, key)
    }
}
