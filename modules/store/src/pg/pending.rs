//! The rows a write transaction changed but has not sent yet. They go to the database in one statement
//! per table: with the `COMMIT` (the whole write in one round trip), before a scan or count of their
//! table, or once many have gathered. A point read of a key changed here is answered from them.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use super::sql;

/// Changed rows held before they are sent (bounds the memory and the statement of a bulk write).
const MAX_ROWS: usize = 1024;

/// A table's changed keys: the new value, or `None` for a removed key.
pub(crate) type Rows = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
pub(crate) struct Pending {
    tables: BTreeMap<String, Rows>,
    rows: usize,
}

/// One statement sent without waiting for its answer (a flush, a check): its SQL and its parameters.
pub(crate) struct Batch {
    pub sql: String,
    pub params: Vec<Param>,
}

/// A parameter of a [`Batch`]: a bytea or an array of them.
pub(crate) enum Param {
    Bytes(Vec<u8>),
    Array(Vec<Vec<u8>>),
}

impl Pending {
    /// The value `key` of `table` was given here (`Some(None)`: removed here), if it was changed here.
    pub(crate) fn get(&self, table: &str, key: &[u8]) -> Option<Option<&[u8]>> {
        self.tables.get(table)?.get(key).map(Option::as_deref)
    }

    pub(crate) fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.set(table, key, Some(value.to_vec()));
    }

    /// Removes `key` if it was changed here: whether it existed then. `None`: not changed here (the
    /// database must say whether it exists).
    pub(crate) fn remove(&mut self, table: &str, key: &[u8]) -> Option<bool> {
        let existed = self.get(table, key)?.is_some();
        self.set(table, key, None);
        Some(existed)
    }

    /// Holds the removal of a key not changed here (known to exist or not).
    pub(crate) fn hold_removal(&mut self, table: &str, key: &[u8]) {
        self.set(table, key, None);
    }

    fn set(&mut self, table: &str, key: &[u8], value: Option<Vec<u8>>) {
        let rows = self.tables.entry(table.to_string()).or_default();
        if rows.insert(key.to_vec(), value).is_none() {
            self.rows += 1;
        }
    }

    /// Drops the changes to keys in `range` (the caller removes the range from the database).
    pub(crate) fn forget_range(&mut self, table: &str, range: (Bound<&[u8]>, Bound<&[u8]>)) {
        if let Some(rows) = self.tables.get_mut(table) {
            self.rows -= remove_range(rows, range);
        }
    }

    /// Drops the changes to a table that is being dropped.
    pub(crate) fn forget_table(&mut self, table: &str) {
        if let Some(rows) = self.tables.remove(table) {
            self.rows -= rows.len();
        }
    }

    pub(crate) fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// Whether enough changes gathered to send them before the commit.
    pub(crate) fn is_full(&self) -> bool {
        self.rows >= MAX_ROWS
    }

    /// The changes to `table`, which are then no longer held.
    pub(crate) fn take_table(&mut self, table: &str) -> Option<Rows> {
        let rows = self.tables.remove(table)?;
        self.rows -= rows.len();
        Some(rows)
    }

    /// Every held change, per table, which is then no longer held.
    pub(crate) fn take_all(&mut self) -> BTreeMap<String, Rows> {
        self.rows = 0;
        std::mem::take(&mut self.tables)
    }

    /// The changes held for `table`.
    pub(crate) fn held(&self, table: &str) -> Option<&Rows> {
        self.tables.get(table)
    }
}

/// An upsert of the new values and a delete of the removed keys (each only when there are any).
pub(crate) fn batches(qualified: &str, rows: &Rows) -> Vec<Batch> {
    let (mut keys, mut values, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in rows {
        match value {
            Some(value) => {
                keys.push(key.clone());
                values.push(value.clone());
            }
            None => removed.push(key.clone()),
        }
    }
    let mut out = Vec::new();
    if !keys.is_empty() {
        out.push(Batch { sql: sql::put_many(qualified), params: vec![Param::Array(keys), Param::Array(values)] });
    }
    if !removed.is_empty() {
        out.push(Batch { sql: sql::remove_many(qualified), params: vec![Param::Array(removed)] });
    }
    out
}

/// Removes the keys in `range` from `rows`: how many there were.
pub(crate) fn remove_range<V>(rows: &mut BTreeMap<Vec<u8>, V>, range: (Bound<&[u8]>, Bound<&[u8]>)) -> usize {
    let before = rows.len();
    rows.retain(|key, _| !RangeBounds::<[u8]>::contains(&range, key.as_slice()));
    before - rows.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn reads_see_the_changes_and_a_flush_sends_each_once() {
        let mut pending = Pending::default();
        pending.put("t", b"a", b"1");
        pending.put("t", b"b", b"2");
        pending.put("t", b"a", b"3");
        assert_eq!(pending.get("t", b"a"), Some(Some(&b"3"[..])));
        assert_eq!(pending.get("t", b"c"), None);
        assert_eq!(pending.remove("t", b"b"), Some(true));
        assert_eq!(pending.remove("t", b"b"), Some(false));
        assert_eq!(pending.remove("t", b"c"), None);
        assert_eq!(pending.get("t", b"b"), Some(None));
        assert_eq!(pending.rows, 2);
        let batches = batches("\"s\".\"t\"", &pending.take_table("t").unwrap());
        assert_eq!(batches.len(), 2);
        assert!(
            matches!(&batches[0].params[..], [Param::Array(k), Param::Array(v)] if k == &[b"a".to_vec()] && v == &[b"3".to_vec()])
        );
        assert!(matches!(&batches[1].params[..], [Param::Array(k)] if k == &[b"b".to_vec()]));
        assert!(batches[1].sql.starts_with("DELETE"));
        assert_eq!(pending.rows, 0);
        assert!(!pending.has_table("t"));
    }

    #[test]
    fn a_removed_range_or_table_drops_its_changes() {
        let mut pending = Pending::default();
        for key in [b"a", b"b", b"c"] {
            pending.put("t", key, b"v");
        }
        pending.put("u", b"a", b"v");
        pending.forget_range("t", (Bound::Included(b"b"), Bound::Unbounded));
        assert_eq!(pending.get("t", b"a"), Some(Some(&b"v"[..])));
        assert_eq!(pending.get("t", b"c"), None);
        pending.forget_table("u");
        assert_eq!(pending.rows, 1);
        assert_eq!(pending.take_all().into_keys().collect::<Vec<_>>(), vec!["t".to_string()]);
    }
}
