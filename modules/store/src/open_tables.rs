//! A redb write transaction with the tables it opened, each opened once and held until the transaction
//! ends. redb looks a table up in its table tree (and decodes its definition) at every `open_table`, and
//! writes its root back at every close; a create touches ~15 tables some 40 times, so opening each once
//! saves that work on the writer thread, which every write waits for.

use std::cell::RefCell;
use std::rc::Rc;

use redb::TableHandle;

use crate::error::{Result, StoreError};
use crate::table::Named;

type RawTable<'tx> = redb::Table<'tx, &'static [u8], &'static [u8]>;

/// The tables opened so far, by name. Each is shared out for one call at a time: a table in use by a
/// scan can still be read inside it, not written.
pub(crate) struct OpenTables<'tx> {
    tx: &'tx redb::WriteTransaction,
    open: RefCell<Vec<(String, Rc<RefCell<RawTable<'tx>>>)>>,
}

self_cell::self_cell!(
    /// A redb write transaction and the tables it holds open.
    pub(crate) struct RedbWrite {
        owner: redb::WriteTransaction,
        #[not_covariant]
        dependent: OpenTables,
    }
);

impl RedbWrite {
    pub(crate) fn begin(tx: redb::WriteTransaction) -> Self {
        Self::new(tx, |tx| OpenTables { tx, open: RefCell::default() })
    }

    /// The transaction, with every table closed (their roots written back): to commit or abort it.
    pub(crate) fn finish(self) -> redb::WriteTransaction {
        self.into_owner()
    }

    /// Runs `f` on `table` for reading (opened, and created if missing, on first use).
    pub(crate) fn read<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        f: impl for<'t> FnOnce(&RawTable<'t>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        self.with_dependent(|_, open| {
            let shared = open.get(table)?;
            let guard = shared.try_borrow().map_err(|_| in_use(table))?;
            f(&guard)
        })
    }

    /// Runs `f` on `table` for writing.
    pub(crate) fn write<R>(
        &self,
        table: Named<'_>,
        f: impl for<'t> FnOnce(&mut RawTable<'t>) -> Result<R>,
    ) -> Result<R> {
        self.with_dependent(|_, open| {
            let shared = open.get(table)?;
            let mut guard = shared.try_borrow_mut().map_err(|_| in_use(table))?;
            f(&mut guard)
        })
    }

    /// Closes every table, then runs `f` on the bare transaction (to delete or list tables).
    pub(crate) fn with_all_closed<R>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<R>) -> Result<R> {
        self.with_dependent(|tx, open| {
            let mut tables = open.open.try_borrow_mut().map_err(|_| StoreError::new("the open tables are in use"))?;
            if let Some((name, _)) = tables.iter().find(|(_, table)| Rc::strong_count(table) > 1) {
                return Err(StoreError::new(format!("the table {name} is in use")));
            }
            tables.clear();
            drop(tables);
            f(tx)
        })
    }
}

impl<'tx> OpenTables<'tx> {
    fn get(&self, table: Named<'_>) -> Result<Rc<RefCell<RawTable<'tx>>>> {
        let name = table.name();
        if let Some((_, open)) = self.open.borrow().iter().find(|(n, _)| n == name) {
            return Ok(Rc::clone(open));
        }
        let opened = Rc::new(RefCell::new(self.tx.open_table(table)?));
        self.open.borrow_mut().push((name.to_string(), Rc::clone(&opened)));
        Ok(opened)
    }
}

fn in_use(table: Named<'_>) -> StoreError {
    StoreError::new(format!("the table {} is in use", table.name()))
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use crate::table::{raw, ReadTx};
    use crate::write::{Backend, WriteTx};
    use crate::StoreError;

    #[test]
    fn tables_stay_open_for_the_transaction_and_close_for_deletes_and_listing() {
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let tx = WriteTx(Backend::Redb(super::RedbWrite::begin(db.begin_write().unwrap()), Default::default()));
        let (a, b) = (raw("test.a"), raw("test.b"));
        tx.put_raw(a, b"1", b"one").unwrap();
        tx.put_raw(a, b"2", b"two").unwrap();
        // Inside a scan of `a`: `a` can be read, another table written, `a` itself not written.
        let mut seen = Vec::new();
        tx.scan_raw(a, (Bound::Unbounded, Bound::Unbounded), false, |k, v| {
            let again = tx.get_raw(a, k, |bytes| Ok::<_, StoreError>(bytes.map(<[u8]>::to_vec)))?;
            assert_eq!(again.as_deref(), Some(v));
            tx.put_raw(b, k, v)?;
            assert!(tx.put_raw(a, b"3", b"three").is_err(), "a table written while it is scanned");
            seen.push(k.to_vec());
            Ok::<_, StoreError>(true)
        })
        .unwrap();
        assert_eq!(seen, [b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(tx.count_raw(b).unwrap(), 2);
        assert_eq!(tx.table_names().unwrap(), ["test.a", "test.b"]);
        assert!(tx.delete_table("test.a").unwrap());
        assert_eq!(tx.table_names().unwrap(), ["test.b"]);
        assert_eq!(tx.count_raw(a).unwrap(), 0, "opened anew, empty");
        let WriteTx(Backend::Redb(tx, _)) = tx else { unreachable!() };
        tx.finish().commit().unwrap();
        let read = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = read.open_table(b).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 2, "written back at the commit");
    }
}
