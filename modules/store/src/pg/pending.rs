//! The rows a write transaction changed but has not sent yet. They go to the database in one statement
//! per table and kind: with the `COMMIT` (the whole write in one round trip), before a scan or count of
//! their table, or once many have gathered. A point read of a key changed here is answered from them.
//!
//! A new value is inserted unless its key may exist already (it read as present in this transaction,
//! or its table is overwritten without reading): PostgreSQL's upsert checks the key before inserting
//! and logs the insertion twice, which made it a fifth dearer per row. A key guessed absent wrongly
//! makes the insert fail with a unique violation; the write then runs again with that table's values
//! all upserted (see `Pg::overwrites`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeBounds};

use super::sql;

/// Changed rows held before they are sent (bounds the memory and the statement of a bulk write).
const MAX_ROWS: usize = 1024;

/// A table's changed keys: the new value, or `None` for a removed key.
pub(crate) type Rows = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
pub(crate) struct Pending {
    tables: BTreeMap<String, Changes>,
    rows: usize,
}

/// A table's changed rows, and which of their keys may be in the database already.
#[derive(Default)]
pub(crate) struct Changes {
    pub rows: Rows,
    /// Keys that existed when this transaction first changed them, or may have: their new values are
    /// upserted, the others inserted.
    pub existing: BTreeSet<Vec<u8>>,
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
        self.tables.get(table)?.rows.get(key).map(Option::as_deref)
    }

    /// `existing`: whether the key may be in the database (asked only when this transaction did not
    /// change it before).
    pub(crate) fn put(&mut self, table: &str, key: &[u8], value: &[u8], existing: impl FnOnce() -> bool) {
        self.set(table, key, Some(value.to_vec()), existing);
    }

    /// Removes `key` if it was changed here: whether it existed then. `None`: not changed here (the
    /// database must say whether it exists).
    pub(crate) fn remove(&mut self, table: &str, key: &[u8]) -> Option<bool> {
        let existed = self.get(table, key)?.is_some();
        self.set(table, key, None, || false);
        Some(existed)
    }

    /// Holds the removal of a key not changed here, which exists or not.
    pub(crate) fn hold_removal(&mut self, table: &str, key: &[u8], exists: bool) {
        self.set(table, key, None, || exists);
    }

    fn set(&mut self, table: &str, key: &[u8], value: Option<Vec<u8>>, existing: impl FnOnce() -> bool) {
        let changes = match self.tables.get_mut(table) {
            Some(changes) => changes,
            None => self.tables.entry(table.to_string()).or_default(),
        };
        if changes.rows.insert(key.to_vec(), value).is_none() {
            self.rows += 1;
            if existing() {
                changes.existing.insert(key.to_vec());
            }
        }
    }

    /// Drops the changes to keys in `range` (the caller removes the range from the database).
    pub(crate) fn forget_range(&mut self, table: &str, range: (Bound<&[u8]>, Bound<&[u8]>)) {
        if let Some(changes) = self.tables.get_mut(table) {
            self.rows -= remove_range(&mut changes.rows, range);
        }
    }

    /// Drops the changes to a table that is being dropped.
    pub(crate) fn forget_table(&mut self, table: &str) {
        if let Some(changes) = self.tables.remove(table) {
            self.rows -= changes.rows.len();
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
    pub(crate) fn take_table(&mut self, table: &str) -> Option<Changes> {
        let changes = self.tables.remove(table)?;
        self.rows -= changes.rows.len();
        Some(changes)
    }

    /// Every held change, per table, which is then no longer held.
    pub(crate) fn take_all(&mut self) -> BTreeMap<String, Changes> {
        self.rows = 0;
        std::mem::take(&mut self.tables)
    }

    /// The changes held for `table`.
    pub(crate) fn held(&self, table: &str) -> Option<&Rows> {
        self.tables.get(table).map(|changes| &changes.rows)
    }
}

/// An insert of the new values whose keys are new, an upsert of the others and a delete of the removed
/// keys: each statement only when it has rows.
pub(crate) fn batches(qualified: &str, changes: &Changes) -> Vec<Batch> {
    let mut inserted = Arrays::default();
    let mut upserted = Arrays::default();
    let mut removed = Vec::new();
    for (key, value) in &changes.rows {
        match value {
            Some(value) if changes.existing.contains(key) => upserted.push(key, value),
            Some(value) => inserted.push(key, value),
            None => removed.push(key.clone()),
        }
    }
    let mut out = Vec::new();
    if !inserted.keys.is_empty() {
        out.push(inserted.batch(sql::insert_many(qualified)));
    }
    if !upserted.keys.is_empty() {
        out.push(upserted.batch(sql::put_many(qualified)));
    }
    if !removed.is_empty() {
        out.push(Batch { sql: sql::remove_many(qualified), params: vec![Param::Array(removed)] });
    }
    out
}

/// The keys and values of one statement's rows.
#[derive(Default)]
struct Arrays {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

impl Arrays {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.keys.push(key.to_vec());
        self.values.push(value.to_vec());
    }

    fn batch(self, sql: String) -> Batch {
        Batch { sql, params: vec![Param::Array(self.keys), Param::Array(self.values)] }
    }
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
        pending.put("t", b"a", b"1", || false);
        pending.put("t", b"b", b"2", || true);
        pending.put("t", b"a", b"3", || unreachable!("asked at the first change only"));
        assert_eq!(pending.get("t", b"a"), Some(Some(&b"3"[..])));
        assert_eq!(pending.get("t", b"c"), None);
        assert_eq!(pending.remove("t", b"b"), Some(true));
        assert_eq!(pending.remove("t", b"b"), Some(false));
        assert_eq!(pending.remove("t", b"c"), None);
        assert_eq!(pending.get("t", b"b"), Some(None));
        assert_eq!(pending.rows, 2);
        let batches = batches("\"s\".\"t\"", &pending.take_table("t").unwrap());
        assert_eq!(batches.len(), 2);
        assert!(batches[0].sql.starts_with("INSERT") && !batches[0].sql.contains("ON CONFLICT"));
        assert!(
            matches!(&batches[0].params[..], [Param::Array(k), Param::Array(v)] if k == &[b"a".to_vec()] && v == &[b"3".to_vec()])
        );
        assert!(matches!(&batches[1].params[..], [Param::Array(k)] if k == &[b"b".to_vec()]));
        assert!(batches[1].sql.starts_with("DELETE"));
        assert_eq!(pending.rows, 0);
        assert!(!pending.has_table("t"));
    }

    #[test]
    fn keys_that_may_exist_are_upserted_and_the_new_inserted() {
        let mut pending = Pending::default();
        pending.put("t", b"new", b"1", || false);
        pending.put("t", b"old", b"2", || true);
        pending.hold_removal("t", b"gone", true);
        pending.put("t", b"gone", b"3", || unreachable!("asked at the first change only"));
        let changes = pending.take_table("t").unwrap();
        let keys = |batch: &Batch| match &batch.params[0] {
            Param::Array(keys) => keys.clone(),
            Param::Bytes(_) => Vec::new(),
        };
        let split = batches("t", &changes);
        assert_eq!(split.len(), 2);
        assert_eq!((keys(&split[0]), split[0].sql.contains("ON CONFLICT")), (vec![b"new".to_vec()], false));
        assert_eq!(keys(&split[1]), vec![b"gone".to_vec(), b"old".to_vec()]);
        assert!(split[1].sql.contains("ON CONFLICT (key) DO UPDATE"));
    }

    #[test]
    fn a_removed_range_or_table_drops_its_changes() {
        let mut pending = Pending::default();
        for key in [b"a", b"b", b"c"] {
            pending.put("t", key, b"v", || false);
        }
        pending.put("u", b"a", b"v", || false);
        pending.forget_range("t", (Bound::Included(b"b"), Bound::Unbounded));
        assert_eq!(pending.get("t", b"a"), Some(Some(&b"v"[..])));
        assert_eq!(pending.get("t", b"c"), None);
        pending.forget_table("u");
        assert_eq!(pending.rows, 1);
        assert_eq!(pending.take_all().into_keys().collect::<Vec<_>>(), vec!["t".to_string()]);
    }
}
