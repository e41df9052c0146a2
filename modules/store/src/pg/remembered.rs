//! Rows the process remembers across write transactions, so that a write group reads a customer's
//! record, shared settings or a small index range without a round trip each time.
//!
//! What is remembered may be out of date (another node changed it), so it is never trusted: a
//! transaction that used a remembered answer sends a check of it to the database before its first
//! write and with its `COMMIT`, in the same round trip. The check reads the rows again in the
//! transaction's own snapshot (so `SERIALIZABLE` sees the read as if it had been made at first) and
//! fails with a serialization failure when they differ; the group then runs again with the memory
//! cleared. A write group's answers are therefore the same as without the memory, with fewer waits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pending::{Batch, Changes, Param, Rows};
use super::seen::Seen;
use super::sql;

/// Bytes of keys and values remembered at most; past it everything is forgotten at once (the rows a
/// write group reads again come back within a few groups).
const MAX_BYTES: usize = 16 << 20;

/// Ranges remembered per table at most, and rows per range (a longer scan is left to the database,
/// so a check stays small).
const MAX_RANGES: usize = 4096;
pub(crate) const MAX_RANGE_ROWS: usize = 256;

type Range = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A key range whose every row is known. The rows are shared: a scan answered from memory takes the
/// range without copying them.
#[derive(Clone)]
pub(crate) struct Covered {
    pub range: Range,
    pub rows: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Default for Covered {
    fn default() -> Self {
        Self { range: (Bound::Unbounded, Bound::Unbounded), rows: Arc::default() }
    }
}

impl Covered {
    fn contains(&self, key: &[u8]) -> bool {
        RangeBounds::<[u8]>::contains(&as_refs(&self.range), key)
    }

    fn bytes(&self) -> usize {
        self.rows.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() + 64
    }

    /// Whether a scan of `asked` in that direction can begin with this range: it lies within `asked`
    /// and starts where the scan does.
    fn begins(&self, asked: &(Bound<&[u8]>, Bound<&[u8]>), reverse: bool) -> bool {
        let (start, asked_start) = match reverse {
            false => (&self.range.0, asked.0),
            true => (&self.range.1, asked.1),
        };
        same_bound(start, asked_start) && within(&self.range, asked)
    }
}

#[derive(Default)]
struct Table {
    /// Point answers: the value, or `None` for a key that did not exist. Hashed, not ordered: every
    /// row a write adds lands here, and a B-tree insert of a long key cost the writer more.
    rows: HashMap<Vec<u8>, Option<Vec<u8>>>,
    ranges: Vec<Covered>,
}

/// How long the memory rests after a transaction lost a race: another node writes too, so what is
/// remembered would soon be out of date, and each check that fails costs a group a second run.
const REST: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(crate) struct Remembered {
    tables: HashMap<String, Table>,
    bytes: usize,
    /// Until when nothing is answered or learned (see [`REST`]).
    resting_until: Option<Instant>,
}

impl Remembered {
    fn rests(&self) -> bool {
        self.resting_until.is_some_and(|until| Instant::now() < until)
    }

    /// The remembered answer for `key` (`Some(None)`: it did not exist), if any.
    pub(crate) fn get(&self, table: &str, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if self.rests() {
            return None;
        }
        let table = self.tables.get(table)?;
        if let Some(value) = table.rows.get(key) {
            return Some(value.clone());
        }
        let covered = table.ranges.iter().find(|covered| covered.contains(key))?;
        Some(covered.rows.get(key).cloned())
    }

    /// A remembered range a scan of `asked` (descending when `reverse`) can begin with.
    pub(crate) fn covering(&self, table: &str, asked: (Bound<&[u8]>, Bound<&[u8]>), reverse: bool) -> Option<Covered> {
        if self.rests() {
            return None;
        }
        self.tables.get(table)?.ranges.iter().find(|covered| covered.begins(&asked, reverse)).cloned()
    }

    /// Remembers what a committed transaction read of `table` from the database.
    pub(crate) fn learn_reads(&mut self, table: &str, rows: Rows) {
        if self.rests() {
            return;
        }
        self.bytes += rows.iter().map(|(key, value)| key.len() + value.as_ref().map_or(0, Vec::len)).sum::<usize>();
        self.table(table).rows.extend(rows);
    }

    pub(crate) fn learn_range(&mut self, table: &str, covered: Covered) {
        if self.rests() {
            return;
        }
        self.bytes += covered.bytes();
        let ranges = &mut self.table(table).ranges;
        ranges.retain(|known| !within(&known.range, &as_refs(&covered.range)));
        if ranges.len() >= MAX_RANGES {
            ranges.clear();
        }
        ranges.push(covered);
    }

    /// Remembers the committed changes to `table` (`None`: removed), also in the ranges that hold their keys.
    pub(crate) fn learn_changes(&mut self, table: &str, rows: Rows) {
        if self.rests() {
            return;
        }
        let known = self.table(table);
        let mut added = 0;
        for (key, value) in rows {
            let size = key.len() + value.as_ref().map_or(0, Vec::len);
            added += size;
            for covered in known.ranges.iter_mut().filter(|covered| covered.contains(&key)) {
                let rows = Arc::make_mut(&mut covered.rows);
                match &value {
                    Some(value) => {
                        rows.insert(key.clone(), value.clone());
                        added += size;
                    }
                    None => _ = rows.remove(&key),
                }
            }
            known.rows.insert(key, value);
        }
        self.bytes += added;
    }

    /// Forgets a table whose rows changed in ways not followed key by key (a dropped table, a removed range).
    pub(crate) fn forget_table(&mut self, table: &str) {
        self.tables.remove(table);
    }

    pub(crate) fn clear(&mut self) {
        self.tables.clear();
        self.bytes = 0;
    }

    /// Forgets everything and rests (see [`REST`]).
    pub(crate) fn clear_and_rest(&mut self) {
        self.clear();
        self.resting_until = Some(Instant::now() + REST);
    }

    /// Forgets everything once too much is remembered.
    pub(crate) fn trim(&mut self) {
        if self.bytes > MAX_BYTES {
            self.clear();
        }
    }

    fn table(&mut self, name: &str) -> &mut Table {
        self.tables.entry(name.to_string()).or_default()
    }
}

/// Rows sent per transaction that the memory follows at most; a table with more is forgotten.
const MAX_SENT_ROWS: usize = 4096;

/// What a write transaction changed in the database before its commit, for the memory to follow.
#[derive(Default)]
pub(crate) struct Sent {
    /// Tables changed in the database: the memory no longer answers for them in this transaction (the
    /// rows the database shows it differ from those its checks compare with).
    touched: HashSet<String>,
    /// Tables changed in ways not followed key by key: forgotten once the transaction commits.
    lost: HashSet<String>,
    rows: BTreeMap<String, Rows>,
    count: usize,
}

impl Sent {
    pub(crate) fn touched(&self, table: &str) -> bool {
        self.touched.contains(table)
    }

    /// `rows` (a value, or `None` for a removed key) are about to be written to `table`.
    pub(crate) fn rows(&mut self, table: &str, rows: &Rows) {
        self.touch(table);
        if self.count + rows.len() > MAX_SENT_ROWS {
            self.lose(table);
            return;
        }
        self.count += rows.len();
        let sent = self.rows.entry(table.to_string()).or_default();
        sent.extend(rows.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// `table` is about to change in ways the memory does not follow (a range removed, dropped, created).
    pub(crate) fn lose(&mut self, table: &str) {
        self.touch(table);
        self.lost.insert(table.to_string());
    }

    fn touch(&mut self, table: &str) {
        if !self.touched.contains(table) {
            self.touched.insert(table.to_string());
        }
    }
}

/// Makes the memory follow a committed transaction: the rows and ranges it read from the database
/// (`seen`, `scanned`), then its changes (`sent` before the commit, `written` with it) over them. The
/// rows a write adds are read back soon (a queued mail by its sender, a counter by the next write).
pub(crate) fn follow(
    memory: &mut Remembered,
    seen: Seen,
    scanned: Vec<(String, Covered)>,
    sent: Sent,
    written: BTreeMap<String, Changes>,
) {
    let Sent { lost, rows: sent, .. } = sent;
    for table in &lost {
        memory.forget_table(table);
    }
    let kept = |table: &str| !lost.contains(table);
    for (table, rows) in seen.into_tables().filter(|(table, _)| kept(table)) {
        memory.learn_reads(&table, rows);
    }
    for (table, covered) in scanned.into_iter().filter(|(table, _)| kept(table)) {
        memory.learn_range(&table, covered);
    }
    let written = written.into_iter().map(|(table, changes)| (table, changes.rows));
    for (table, rows) in sent.into_iter().chain(written).filter(|(table, _)| kept(table)) {
        memory.learn_changes(&table, rows);
    }
    memory.trim();
}

/// The remembered answers a transaction used, to be checked against its snapshot.
#[derive(Default)]
pub(crate) struct Checks {
    /// Per table, the keys and the value each was answered with.
    rows: BTreeMap<String, BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    ranges: Vec<(String, Covered)>,
    /// Rows were used that a process writing alone does not check one by one (see `pg::sole`).
    unlisted: bool,
}

impl Checks {
    /// A remembered row was used by a write whose process writes alone: its assertion covers it.
    pub(crate) fn row_unlisted(&mut self) {
        self.unlisted = true;
    }

    pub(crate) fn row(&mut self, table: &str, key: &[u8], value: Option<&[u8]>) {
        let rows = match self.rows.get_mut(table) {
            Some(rows) => rows,
            None => self.rows.entry(table.to_string()).or_default(),
        };
        rows.insert(key.to_vec(), value.map(<[u8]>::to_vec));
    }

    /// `covered.rows` are all the rows of `covered.range`, as a scan was answered.
    pub(crate) fn range(&mut self, table: &str, covered: Covered) {
        let again = self.ranges.iter().any(|(known, checked)| known == table && checked.range == covered.range);
        if !again {
            self.ranges.push((table.to_string(), covered));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.unlisted && self.rows.is_empty() && self.ranges.is_empty()
    }

    /// The statements that check every answer (`qualify` names a table, `unchanged` is the function
    /// that fails the transaction on `false`), which are then no longer held: one per table, each key
    /// checked as the range of that key alone (a range without an upper bound has a statement of its own).
    pub(crate) fn take(
        &mut self,
        qualify: impl Fn(&str) -> crate::error::Result<String>,
        unchanged: &str,
    ) -> crate::error::Result<Vec<Batch>> {
        self.unlisted = false;
        let mut tables: BTreeMap<String, TableCheck> = BTreeMap::new();
        for (table, rows) in std::mem::take(&mut self.rows) {
            let check = tables.entry(table).or_default();
            for (key, value) in rows {
                let after = just_after(&key);
                check.add(key.clone(), after, value.map(|value| (key, value)));
            }
        }
        let mut batches = Vec::new();
        for (table, covered) in std::mem::take(&mut self.ranges) {
            if let Some((lo, hi)) = half_open(&covered.range) {
                tables.entry(table).or_default().add(lo, hi, Arc::unwrap_or_clone(covered.rows));
                continue;
            }
            let mut params: Vec<Param> =
                sql::bound_params(&covered.range).into_iter().map(|b| Param::Bytes(b.to_vec())).collect();
            let (keys, values) = Arc::unwrap_or_clone(covered.rows).into_iter().unzip();
            params.extend([Param::Array(keys), Param::Array(values)]);
            batches.push(Batch { sql: sql::check_range(&qualify(&table)?, &covered.range, unchanged), params });
        }
        for (table, check) in tables {
            let params = vec![
                Param::Array(check.lo),
                Param::Array(check.hi),
                Param::Array(check.keys),
                Param::Array(check.values),
            ];
            batches.push(Batch { sql: sql::check_ranges(&qualify(&table)?, unchanged), params });
        }
        Ok(batches)
    }
}

/// The key ranges `[lo, hi)` of one table to check and the rows they held, range after range.
#[derive(Default)]
struct TableCheck {
    lo: Vec<Vec<u8>>,
    hi: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

impl TableCheck {
    /// The range `[lo, hi)` and the rows it held, in key order.
    fn add(&mut self, lo: Vec<u8>, hi: Vec<u8>, rows: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) {
        self.lo.push(lo);
        self.hi.push(hi);
        for (key, value) in rows {
            self.keys.push(key);
            self.values.push(value);
        }
    }
}

/// `range` as `[lo, hi)`, unless it has no upper bound.
fn half_open(range: &Range) -> Option<(Vec<u8>, Vec<u8>)> {
    let hi = match &range.1 {
        Bound::Excluded(key) => key.clone(),
        Bound::Included(key) => just_after(key),
        Bound::Unbounded => return None,
    };
    let lo = match &range.0 {
        Bound::Included(key) => key.clone(),
        Bound::Excluded(key) => just_after(key),
        Bound::Unbounded => Vec::new(),
    };
    Some((lo, hi))
}

/// The first key after `key` in byte order: the range `[key, just_after(key))` holds `key` alone.
fn just_after(key: &[u8]) -> Vec<u8> {
    let mut after = Vec::with_capacity(key.len() + 1);
    after.extend_from_slice(key);
    after.push(0);
    after
}

/// The rows of `rows` in `range` with the transaction's own held changes (`held`) laid over them, in
/// key order (descending when `reverse`). Without held changes in the range, the rows as they are (a
/// scan usually reads one or two of them).
pub(crate) fn overlay<'a>(
    rows: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    held: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    range: &'a Range,
    reverse: bool,
) -> Box<dyn Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
    let refs = as_refs(range);
    let mut held = held.range::<[u8], _>(refs).peekable();
    if held.peek().is_none() {
        let rows = rows.range::<[u8], _>(refs).map(|(k, v)| (k.as_slice(), v.as_slice()));
        return if reverse { Box::new(rows.rev()) } else { Box::new(rows) };
    }
    let mut merged: BTreeMap<&[u8], &[u8]> =
        rows.range::<[u8], _>(refs).map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
    for (key, value) in held {
        match value {
            Some(value) => merged.insert(key, value),
            None => merged.remove(key.as_slice()),
        };
    }
    let merged = merged.into_iter();
    if reverse {
        Box::new(merged.rev())
    } else {
        Box::new(merged)
    }
}

/// The part of `covered` a scan that stopped at `last` (descending when `reverse`) read.
pub(crate) fn read_up_to(covered: &Covered, last: &[u8], reverse: bool) -> Covered {
    let range = match reverse {
        false => (covered.range.0.clone(), Bound::Included(last.to_vec())),
        true => (Bound::Included(last.to_vec()), covered.range.1.clone()),
    };
    let rows = covered.rows.range::<[u8], _>(as_refs(&range)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Covered { range, rows: Arc::new(rows) }
}

pub(crate) fn as_refs(range: &Range) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (range.0.as_ref().map(Vec::as_slice), range.1.as_ref().map(Vec::as_slice))
}

fn same_bound(a: &Bound<Vec<u8>>, b: Bound<&[u8]>) -> bool {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => true,
        (Bound::Included(a), Bound::Included(b)) | (Bound::Excluded(a), Bound::Excluded(b)) => a.as_slice() == b,
        _ => false,
    }
}

/// Whether `inner` lies within `outer`.
fn within(inner: &Range, outer: &(Bound<&[u8]>, Bound<&[u8]>)) -> bool {
    use std::cmp::Ordering::{Greater, Less};
    let lower_ok = match (&inner.0, outer.0) {
        (_, Bound::Unbounded) => true,
        (Bound::Unbounded, _) => false,
        (Bound::Included(i), Bound::Included(o)) | (Bound::Excluded(i), Bound::Excluded(o)) => i.as_slice() >= o,
        (Bound::Excluded(i), Bound::Included(o)) => i.as_slice() >= o,
        (Bound::Included(i), Bound::Excluded(o)) => i.as_slice().cmp(o) == Greater,
    };
    let upper_ok = match (&inner.1, outer.1) {
        (_, Bound::Unbounded) => true,
        (Bound::Unbounded, _) => false,
        (Bound::Included(i), Bound::Included(o)) | (Bound::Excluded(i), Bound::Excluded(o)) => i.as_slice() <= o,
        (Bound::Excluded(i), Bound::Included(o)) => i.as_slice() <= o,
        (Bound::Included(i), Bound::Excluded(o)) => i.as_slice().cmp(o) == Less,
    };
    lower_ok && upper_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn covered(range: Range, rows: &[(&[u8], &[u8])]) -> Covered {
        Covered { range, rows: Arc::new(rows.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()) }
    }

    #[test]
    fn a_remembered_range_answers_scans_that_start_where_it_does_and_keys_inside_it() {
        let mut memory = Remembered::default();
        let range = (Bound::Included(b"b".to_vec()), Bound::Excluded(b"d".to_vec()));
        memory.learn_range("t", covered(range, &[(b"b1", b"x"), (b"c", b"y")]));
        let asked: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(b"b"), Bound::Excluded(b"z"));
        assert!(memory.covering("t", asked, false).is_some());
        assert!(memory.covering("t", asked, true).is_none(), "a descending scan starts at z");
        let inside: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(b"b"), Bound::Excluded(b"c"));
        assert!(memory.covering("t", inside, false).is_none(), "the range reaches past the scan's end");
        assert_eq!(memory.get("t", b"c"), Some(Some(b"y".to_vec())));
        assert_eq!(memory.get("t", b"bz"), Some(None), "inside the range and not in it: absent");
        assert_eq!(memory.get("t", b"e"), None);
        memory.learn_changes("t", [(b"bz".to_vec(), Some(b"new".to_vec())), (b"c".to_vec(), None)].into());
        let known = memory.covering("t", asked, false).unwrap();
        assert_eq!(known.rows.keys().cloned().collect::<Vec<_>>(), vec![b"b1".to_vec(), b"bz".to_vec()]);
    }

    #[test]
    fn a_scan_sees_held_changes_over_the_remembered_rows_and_checks_only_what_it_read() {
        let range = (Bound::Unbounded, Bound::Unbounded);
        let known = covered(range.clone(), &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]);
        let held: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            [(b"b".to_vec(), None), (b"bb".to_vec(), Some(b"4".to_vec()))].into_iter().collect();
        let keys: Vec<Vec<u8>> = overlay(&known.rows, &held, &range, true).map(|(k, _)| k.to_vec()).collect();
        assert_eq!(keys, vec![b"c".to_vec(), b"bb".to_vec(), b"a".to_vec()]);
        let read = read_up_to(&known, b"b", true);
        assert_eq!(read.range, (Bound::Included(b"b".to_vec()), Bound::Unbounded));
        assert_eq!(read.rows.keys().cloned().collect::<Vec<_>>(), vec![b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn a_committed_write_leaves_its_reads_and_changes_remembered_and_its_lost_tables_forgotten() {
        let mut memory = Remembered::default();
        memory.learn_reads("gone", [(b"k".to_vec(), Some(b"v".to_vec()))].into());
        let mut seen = Seen::default();
        seen.remember("t", b"read", Some(b"1"));
        seen.remember("t", b"counter", Some(b"1"));
        seen.forget("t", b"counter");
        let mut sent = Sent::default();
        sent.rows("t", &[(b"counter".to_vec(), Some(b"2".to_vec()))].into_iter().collect());
        sent.lose("gone");
        let rows = [(b"counter".to_vec(), Some(b"3".to_vec())), (b"blind".to_vec(), Some(b"x".to_vec()))];
        let written: BTreeMap<String, Changes> = [(
            "t".to_string(),
            Changes { rows: rows.into_iter().collect(), existing: [b"counter".to_vec()].into_iter().collect() },
        )]
        .into_iter()
        .collect();
        follow(&mut memory, seen, Vec::new(), sent, written);
        assert_eq!(memory.get("t", b"read"), Some(Some(b"1".to_vec())));
        assert_eq!(memory.get("t", b"counter"), Some(Some(b"3".to_vec())), "read, then changed twice");
        assert_eq!(memory.get("t", b"blind"), Some(Some(b"x".to_vec())), "written without a read");
        assert_eq!(memory.get("gone", b"k"), None);
    }

    #[test]
    fn checks_make_one_statement_per_table_with_each_key_as_a_range_of_its_own() {
        let mut checks = Checks::default();
        checks.row("t", b"a", Some(b"1"));
        checks.row("t", b"b", None);
        checks.row("u", b"a", Some(b"1"));
        checks.range("t", covered((Bound::Excluded(b"a".to_vec()), Bound::Included(b"c".to_vec())), &[(b"b", b"2")]));
        checks.range("t", covered((Bound::Included(b"x".to_vec()), Bound::Unbounded), &[(b"y", b"3")]));
        let batches = checks.take(|t| Ok(format!("\"s\".\"{t}\"")), "\"s\".f").unwrap();
        assert!(checks.is_empty());
        assert_eq!(batches.len(), 3, "one per table, and one for the range without an upper bound");
        let arrays = |batch: &Batch| -> Vec<Vec<Vec<u8>>> {
            batch
                .params
                .iter()
                .map(|p| match p {
                    Param::Array(items) => items.clone(),
                    Param::Bytes(bytes) => vec![bytes.clone()],
                })
                .collect()
        };
        let t = batches.iter().find(|b| b.sql.contains("\"t\"") && b.sql.contains("unnest")).unwrap();
        let v = |s: &[u8]| s.to_vec();
        assert_eq!(
            arrays(t),
            vec![
                vec![v(b"a"), v(b"b"), v(b"a\0")],
                vec![v(b"a\0"), v(b"b\0"), v(b"c\0")],
                vec![v(b"a"), v(b"b")],
                vec![v(b"1"), v(b"2")],
            ],
            "keys a and b alone (b absent), then (a, c] as [a\\0, c\\0) holding b"
        );
        let open = batches.iter().find(|b| b.sql.contains("\"t\"") && !b.sql.contains("unnest")).unwrap();
        assert_eq!(arrays(open), vec![vec![v(b"x")], vec![v(b"y")], vec![v(b"3")]]);
    }
}
