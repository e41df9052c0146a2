//! Typed tables over redb. Every table maps bytes to bytes, so tooling (backup, restore, checks) can open
//! any table by name; types live one level up: keys are big-endian fixed-width parts (byte order is
//! logical order, ids are time-ordered UUID v7), values are `Record`s encoded as a schema-version byte
//! followed by named MessagePack, so a field added later with `#[serde(default)]` still reads old records.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::ops::Bound;

use redb::{ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Result, StoreError};
use crate::write::WriteTx;

/// The untyped shape of every table.
pub type RawTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// A table by a name that may not live for the whole program (tools that walk every table).
pub type Named<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

/// The table named `name`.
pub fn raw(name: &str) -> Named<'_> {
    TableDefinition::new(name)
}

/// A stored struct. Bump `VERSION` when a change needs a migration; additive changes with
/// `#[serde(default)]` do not.
pub trait Record: Serialize + DeserializeOwned {
    const VERSION: u8 = 1;
}

/// Encodes a record: version byte + named MessagePack.
pub fn encode<V: Record>(value: &V) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.push(V::VERSION);
    rmp_serde::encode::write_named(&mut out, value)?;
    Ok(out)
}

/// Decodes a record; refuses one written by a newer schema version than this binary knows.
pub fn decode<V: Record>(bytes: &[u8]) -> Result<V> {
    let (&version, body) = bytes.split_first().ok_or_else(|| StoreError::new("empty record"))?;
    if version > V::VERSION {
        return Err(StoreError::new(format!(
            "record has schema version {version}, this binary reads up to {}",
            V::VERSION
        )));
    }
    crate::msgpack::from_slice(body).map_err(|e| StoreError::new(format!("cannot read a record: {e}")))
}

/// Read access shared by read and write transactions, so services read the same way in both.
pub trait ReadTx {
    /// Calls `f` with the stored bytes under `key`, if any.
    fn get_raw<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E>;

    /// Visits `(key, value)` pairs in `range` (in reverse when `reverse`) until `visit` returns false.
    fn scan_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E>;

    /// Visits `(key, value)` pairs of `whole` strictly below `below`, largest first, until `visit` returns
    /// false. redb starts at `below`; a backend that remembers the ranges it scanned (PostgreSQL) reads
    /// `whole` from its top and passes over the keys from `below` up, so that a later visit of `whole`
    /// below another bound is answered from memory.
    fn scan_desc_below<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        whole: (Bound<&[u8]>, Bound<&[u8]>),
        below: &[u8],
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        self.scan_raw(table, (whole.0, Bound::Excluded(below)), true, visit)
    }

    /// How many rows `table` holds (0 when it was never created).
    fn count_raw(&self, table: Named<'_>) -> Result<u64>;

    /// Says that `key` of `table` will likely be read soon in this transaction: a backend that pays a
    /// round trip per statement (PostgreSQL) fetches it along with its next point read. redb ignores it.
    fn expect(&self, _table: Named<'_>, _key: &[u8]) {}

    /// Calls `f` with the index of each of `keys` and the bytes stored under it, in order (one round
    /// trip on PostgreSQL).
    fn get_many_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        keys: &[&[u8]],
        f: impl FnMut(usize, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        get_one_by_one(self, table, keys, f)
    }
}

/// `get_many_raw` as one point read per key (redb, where a point read costs no round trip).
pub(crate) fn get_one_by_one<T: ReadTx + ?Sized, E: From<StoreError>>(
    tx: &T,
    table: Named<'_>,
    keys: &[&[u8]],
    mut f: impl FnMut(usize, Option<&[u8]>) -> Result<(), E>,
) -> Result<(), E> {
    for (i, key) in keys.iter().enumerate() {
        tx.get_raw(table, key, |value| f(i, value))?;
    }
    Ok(())
}

/// `visit` for the keys strictly below `below` only: those from `below` up are passed over (a scan of a
/// whole range from its top standing for a scan below `below`, see [`ReadTx::scan_desc_below`]).
pub(crate) fn only_below<'a, E>(
    below: &'a [u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E> + 'a,
) -> impl FnMut(&[u8], &[u8]) -> Result<bool, E> + 'a {
    move |k, v| if k >= below { Ok(true) } else { visit(k, v) }
}

/// `table` in a read transaction; `None` when it was never created (it reads as empty).
pub(crate) fn open_existing(
    tx: &ReadTransaction,
    table: Named<'_>,
) -> Result<Option<ReadOnlyTable<&'static [u8], &'static [u8]>>> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `get_raw` on an open table (`None`: a table that does not exist).
pub(crate) fn get_in<T, R, E: From<StoreError>>(
    table: Option<&T>,
    key: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
) -> Result<R, E>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    match table.map(|t| t.get(key)).transpose().map_err(StoreError::from)?.flatten() {
        Some(guard) => f(Some(guard.value())),
        None => f(None),
    }
}

/// `scan_raw` on an open table (`None`: a table that does not exist).
pub(crate) fn scan_in<T, E: From<StoreError>>(
    table: Option<&T>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    reverse: bool,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
) -> Result<(), E>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let Some(table) = table else { return Ok(()) };
    let iter = table.range::<&[u8]>(range).map_err(StoreError::from)?;
    if reverse {
        for entry in iter.rev() {
            let (k, v) = entry.map_err(StoreError::from)?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
    } else {
        for entry in iter {
            let (k, v) = entry.map_err(StoreError::from)?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
    }
    Ok(())
}

impl ReadTx for ReadTransaction {
    fn get_raw<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        get_in(open_existing(self, table)?.as_ref(), key, f)
    }

    fn scan_raw<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        scan_in(open_existing(self, table)?.as_ref(), range, reverse, visit)
    }

    fn count_raw(&self, table: Named<'_>) -> Result<u64> {
        match open_existing(self, table)? {
            Some(open) => Ok(redb::ReadableTableMetadata::len(&open)?),
            None => Ok(0),
        }
    }
}

/// The key range of every key starting with `prefix`.
pub fn prefix_range(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = Bound::Included(prefix.to_vec());
    // The first key after all keys with this prefix: increment the last byte that is not 0xff.
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (start, Bound::Excluded(end));
        }
    }
    (start, Bound::Unbounded)
}

/// The part of a stored key from byte `from` on; empty for a shorter key, which then names nothing.
pub fn key_from(key: &[u8], from: usize) -> &[u8] {
    key.get(from..).unwrap_or_default()
}

/// The last `n` bytes of a stored key (all of it when shorter).
pub fn key_tail(key: &[u8], n: usize) -> &[u8] {
    key.get(key.len().saturating_sub(n)..).unwrap_or_default()
}

/// Concatenates fixed-width key parts.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

fn as_ref_range(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> (Bound<&[u8]>, Bound<&[u8]>) {
    (range.0.as_ref().map(Vec::as_slice), range.1.as_ref().map(Vec::as_slice))
}

/// A page of a prefix scan: newest first (keys descending), starting strictly after `after` when given.
pub struct Page<'a> {
    pub prefix: &'a [u8],
    pub after: Option<&'a [u8]>,
    pub limit: usize,
}

/// The range of a descending page: keys with `prefix`, strictly below `after` when given.
fn page_range(page: &Page<'_>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (start, end) = prefix_range(page.prefix);
    match page.after {
        Some(after) => (start, Bound::Excluded(after.to_vec())),
        None => (start, end),
    }
}

/// A table of records of type `V`.
pub struct Table<V> {
    def: RawTable,
    _value: PhantomData<fn() -> V>,
}

impl<V: Record> Table<V> {
    pub const fn new(name: &'static str) -> Self {
        Self { def: TableDefinition::new(name), _value: PhantomData }
    }

    pub fn raw(&self) -> RawTable {
        self.def
    }

    /// Creates the table if missing (run from a module's `install`).
    pub fn create(&self, tx: &WriteTx) -> Result<()> {
        tx.create_table(self.def)
    }

    pub fn get(&self, tx: &impl ReadTx, key: &[u8]) -> Result<Option<V>> {
        tx.get_raw(self.def, key, |bytes| bytes.map(decode).transpose())
    }

    pub fn contains(&self, tx: &impl ReadTx, key: &[u8]) -> Result<bool> {
        tx.get_raw(self.def, key, |bytes| Ok(bytes.is_some()))
    }

    /// Tells `tx` that `key` will likely be asked for soon (see [`ReadTx::expect`]).
    pub fn expect(&self, tx: &impl ReadTx, key: &[u8]) {
        tx.expect(self.def, key);
    }

    /// The records under `keys`, in their order (`None` where there is none).
    pub fn get_many(&self, tx: &impl ReadTx, keys: &[&[u8]]) -> Result<Vec<Option<V>>> {
        let mut out = Vec::with_capacity(keys.len());
        tx.get_many_raw(self.def, keys, |_, bytes| {
            out.push(bytes.map(decode).transpose()?);
            Ok::<_, StoreError>(())
        })?;
        Ok(out)
    }

    pub fn insert(&self, tx: &WriteTx, key: &[u8], value: &V) -> Result<()> {
        tx.put_raw(self.def, key, &encode(value)?)
    }

    /// Removes and returns whether something was there.
    pub fn remove(&self, tx: &WriteTx, key: &[u8]) -> Result<bool> {
        tx.remove_raw(self.def, key)
    }

    /// Records whose keys start with `prefix`, newest (largest key) first, paged.
    pub fn page(&self, tx: &impl ReadTx, page: &Page<'_>) -> Result<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        if page.limit == 0 {
            return Ok(out);
        }
        let range = page_range(page);
        tx.scan_raw(self.def, as_ref_range(&range), true, |k, v| {
            out.push((k.to_vec(), decode(v)?));
            Ok::<_, StoreError>(out.len() < page.limit)
        })?;
        Ok(out)
    }

    /// How many records the table holds.
    pub fn len(&self, tx: &impl ReadTx) -> Result<u64> {
        tx.count_raw(self.def)
    }

    /// Whether the table holds no record.
    pub fn is_empty(&self, tx: &impl ReadTx) -> Result<bool> {
        Ok(self.len(tx)? == 0)
    }

    /// Removes the `n` oldest (smallest) records, in one range removal: how many there were.
    pub fn remove_first(&self, tx: &WriteTx, n: u64) -> Result<u64> {
        let (mut found, mut last) = (0, None);
        if n == 0 {
            return Ok(0);
        }
        tx.scan_raw(self.def, (Bound::Unbounded, Bound::Unbounded), false, |k, _| {
            found += 1;
            last = Some(k.to_vec());
            Ok::<_, StoreError>(found < n)
        })?;
        if let Some(last) = &last {
            tx.remove_range_raw(self.def, (Bound::Unbounded, Bound::Included(last.as_slice())))?;
        }
        Ok(found)
    }

    /// Visits every record with `prefix`, in key order, until `visit` returns false.
    pub fn scan_prefix<E: From<StoreError>>(
        &self,
        tx: &impl ReadTx,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], V) -> Result<bool, E>,
    ) -> Result<(), E> {
        let range = prefix_range(prefix);
        tx.scan_raw(self.def, as_ref_range(&range), false, |k, v| visit(k, decode(v)?))
    }
}

/// A secondary index: keys only (e.g. `customer_id ‖ invoice_id`), or a unique lookup key → id bytes.
/// Maintained in the same write transaction as the record it points to.
///
/// Indexes a module writes together can share one redb table, each under its own one-byte tag: a commit
/// then updates, checksums and frees the pages of one B-tree instead of one per index.
pub struct Index {
    def: RawTable,
    tag: &'static [u8],
}

impl Index {
    pub const fn new(name: &'static str) -> Self {
        Self { def: TableDefinition::new(name), tag: &[] }
    }

    /// An index stored in the shared table `name`, its keys prefixed with `tag` (unique per table).
    pub const fn shared(name: &'static str, tag: &'static [u8; 1]) -> Self {
        Self { def: TableDefinition::new(name), tag }
    }

    /// The redb table behind the index (a shared one also holds the other indexes' keys, under their tags).
    pub fn raw(&self) -> RawTable {
        self.def
    }

    pub fn create(&self, tx: &WriteTx) -> Result<()> {
        tx.create_table(self.def)
    }

    /// The stored form of `key`: behind the tag of a shared index.
    fn stored<'k>(&self, key: &'k [u8]) -> Cow<'k, [u8]> {
        if self.tag.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned([self.tag, key].concat())
        }
    }

    /// Stores `key → target` (target is empty for key-only indexes).
    pub fn put(&self, tx: &WriteTx, key: &[u8], target: &[u8]) -> Result<()> {
        tx.put_raw(self.def, &self.stored(key), target)
    }

    pub fn remove(&self, tx: &WriteTx, key: &[u8]) -> Result<bool> {
        tx.remove_raw(self.def, &self.stored(key))
    }

    /// The target stored under `key`.
    pub fn get(&self, tx: &impl ReadTx, key: &[u8]) -> Result<Option<Vec<u8>>> {
        tx.get_raw(self.def, &self.stored(key), |bytes| Ok(bytes.map(<[u8]>::to_vec)))
    }

    pub fn contains(&self, tx: &impl ReadTx, key: &[u8]) -> Result<bool> {
        tx.get_raw(self.def, &self.stored(key), |bytes| Ok(bytes.is_some()))
    }

    /// Whether each of `keys` is present, in their order (one round trip on PostgreSQL).
    pub fn contains_many(&self, tx: &impl ReadTx, keys: &[&[u8]]) -> Result<Vec<bool>> {
        let stored: Vec<Cow<'_, [u8]>> = keys.iter().map(|key| self.stored(key)).collect();
        let stored: Vec<&[u8]> = stored.iter().map(AsRef::as_ref).collect();
        let mut out = Vec::with_capacity(keys.len());
        tx.get_many_raw(self.def, &stored, |_, bytes| {
            out.push(bytes.is_some());
            Ok::<_, StoreError>(())
        })?;
        Ok(out)
    }

    /// Tells `tx` that `key` will likely be asked for soon (see [`ReadTx::expect`]).
    pub fn expect(&self, tx: &impl ReadTx, key: &[u8]) {
        tx.expect(self.def, &self.stored(key));
    }

    /// Keys with `prefix`, largest first, paged.
    pub fn page_keys(&self, tx: &impl ReadTx, page: &Page<'_>) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if page.limit == 0 {
            return Ok(out);
        }
        self.visit_keys_desc(tx, page.prefix, page.after, |k| {
            out.push(k.to_vec());
            Ok::<_, StoreError>(out.len() < page.limit)
        })?;
        Ok(out)
    }

    /// Visits keys with `prefix`, largest first, strictly below `after` when given, while `visit` returns
    /// true (for filtered lists that cannot know in advance how many keys they need).
    pub fn visit_keys_desc<E: From<StoreError>>(
        &self,
        tx: &impl ReadTx,
        prefix: &[u8],
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        let (prefix, after) = (self.stored(prefix), after.map(|a| self.stored(a)));
        let range = page_range(&Page { prefix: &prefix, after: after.as_deref(), limit: usize::MAX });
        let tag = self.tag.len();
        tx.scan_raw(self.def, as_ref_range(&range), true, |k, _| visit(k.get(tag..).unwrap_or_default()))
    }

    /// The largest key with `prefix` strictly below `below` (see [`ReadTx::scan_desc_below`]: on PostgreSQL
    /// the prefix is read from its largest key down, so that the next look-up in it is answered from
    /// memory; redb goes to it directly).
    pub fn last_below(&self, tx: &impl ReadTx, prefix: &[u8], below: &[u8]) -> Result<Option<Vec<u8>>> {
        let (whole, below) = (prefix_range(&self.stored(prefix)), self.stored(below));
        let tag = self.tag.len();
        let mut last = None;
        tx.scan_desc_below(self.def, as_ref_range(&whole), &below, |k, _| {
            last = Some(k.get(tag..).unwrap_or_default().to_vec());
            Ok::<_, StoreError>(false)
        })?;
        Ok(last)
    }

    /// Visits keys with `prefix`, smallest first, while `visit` returns true (queues and schedules keyed by
    /// time: the oldest entries first).
    pub fn visit_keys<E: From<StoreError>>(
        &self,
        tx: &impl ReadTx,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        let range = prefix_range(&self.stored(prefix));
        let tag = self.tag.len();
        tx.scan_raw(self.def, as_ref_range(&range), false, |k, _| visit(k.get(tag..).unwrap_or_default()))
    }

    /// Moves every entry of `former`, a table that held this index on its own, into this shared index and
    /// deletes `former` (a migration step; a store without `former` is left as it is). Returns how many
    /// entries moved.
    pub fn take_over(&self, tx: &WriteTx, former: &'static str) -> Result<u64> {
        let mut entries = Vec::new();
        tx.scan_raw(TableDefinition::new(former), (Bound::Unbounded, Bound::Unbounded), false, |k, v| {
            entries.push((self.stored(k).into_owned(), v.to_vec()));
            Ok::<_, StoreError>(true)
        })?;
        let mut to = tx.table(self.def)?;
        for (k, v) in &entries {
            to.insert(k, v)?;
        }
        tx.delete_table(former)?;
        Ok(u64::try_from(entries.len()).unwrap_or(u64::MAX))
    }

    /// Whether any key starts with `prefix`.
    pub fn any_with_prefix(&self, tx: &impl ReadTx, prefix: &[u8]) -> Result<bool> {
        let range = prefix_range(&self.stored(prefix));
        let mut found = false;
        tx.scan_raw(self.def, as_ref_range(&range), false, |_, _| {
            found = true;
            Ok::<_, StoreError>(false)
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_covers_exactly_the_prefix() {
        let (s, e) = prefix_range(&[1, 2, 0xff]);
        assert_eq!(s, Bound::Included(vec![1, 2, 0xff]));
        assert_eq!(e, Bound::Excluded(vec![1, 3]));
        let (_, e) = prefix_range(&[0xff, 0xff]);
        assert_eq!(e, Bound::Unbounded);
    }

    #[test]
    fn indexes_sharing_a_table_see_only_their_own_keys() {
        const A: Index = Index::shared("test.indexes", b"\x01");
        const B: Index = Index::shared("test.indexes", b"\x02");
        let db = redb::Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let tx = WriteTx(crate::write::Backend::Redb(
            crate::open_tables::RedbWrite::begin(db.begin_write().unwrap()),
            crate::redo::Redo::default(),
        ));
        for k in [[1u8, 1], [1, 2], [2, 1]] {
            A.put(&tx, &k, b"a").unwrap();
        }
        B.put(&tx, &[1, 3], b"b").unwrap();
        B.put(&tx, &[0xff, 0xff], b"b").unwrap();
        let page = |index: &Index, prefix: &[u8], after: Option<&[u8]>| {
            index.page_keys(&tx, &Page { prefix, after, limit: 10 }).unwrap()
        };
        assert_eq!(page(&A, &[], None), [vec![2, 1], vec![1, 2], vec![1, 1]]);
        assert_eq!(page(&A, &[1], Some(&[1, 2])), [vec![1, 1]]);
        assert_eq!(page(&B, &[], None), [vec![0xff, 0xff], vec![1, 3]]);
        assert_eq!(page(&B, &[1], None), [vec![1, 3]]);
        assert_eq!(A.get(&tx, &[1, 3]).unwrap(), None);
        assert_eq!(B.get(&tx, &[1, 3]).unwrap().as_deref(), Some(&b"b"[..]));
        assert!(!A.any_with_prefix(&tx, &[0xff]).unwrap());
        assert!(A.remove(&tx, &[1, 1]).unwrap());
        assert!(!B.remove(&tx, &[1, 1]).unwrap());
        assert_eq!(page(&A, &[1], None), [vec![1, 2]]);
    }
}
