//! The rows a transaction read and did not change: asked again, they are answered without a round trip.
//! Within one transaction PostgreSQL answers a key the same way each time (`REPEATABLE READ` and
//! `SERIALIZABLE` read one snapshot), until the transaction changes it, which forgets it here. A write
//! group reads the same rows for several writes (a customer's record, its totals, shared settings).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::pending::{remove_range, Rows};

/// Rows remembered per transaction at most (bounds the memory of a long read loop).
const MAX_ROWS: usize = 4096;

#[derive(Default)]
pub(crate) struct Seen {
    tables: BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    rows: usize,
}

impl Seen {
    /// What the database answered for `key` in this transaction (`Some(None)`: no such key), if asked.
    pub(crate) fn get(&self, table: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.tables.get(table)?.get(key).map(Option::as_deref)
    }

    pub(crate) fn remember(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        if self.rows >= MAX_ROWS {
            return;
        }
        let rows = match self.tables.get_mut(table) {
            Some(rows) => rows,
            None => self.tables.entry(table.to_string()).or_default(),
        };
        if rows.insert(key.to_vec(), value.map(<[u8]>::to_vec)).is_none() {
            self.rows += 1;
        }
    }

    /// Forgets `key`, which this transaction changes: whether it existed, if it was read.
    pub(crate) fn forget(&mut self, table: &str, key: &[u8]) -> Option<bool> {
        let read = self.tables.get_mut(table)?.remove(key)?;
        self.rows -= 1;
        Some(read.is_some())
    }

    /// Forgets the keys in `range`, which this transaction removes.
    pub(crate) fn forget_range(&mut self, table: &str, range: (Bound<&[u8]>, Bound<&[u8]>)) {
        if let Some(rows) = self.tables.get_mut(table) {
            self.rows -= remove_range(rows, range);
        }
    }

    /// Every row remembered, per table.
    pub(crate) fn into_tables(self) -> impl Iterator<Item = (String, Rows)> {
        self.tables.into_iter()
    }

    /// Forgets a table that is dropped.
    pub(crate) fn forget_table(&mut self, table: &str) {
        if let Some(rows) = self.tables.remove(table) {
            self.rows -= rows.len();
        }
    }
}
