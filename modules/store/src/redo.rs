//! The redo record of a write group: what its transaction changed, key by key, so that the group can be
//! made durable by appending a few kilobytes to the journal instead of the ~40 pages its commit changed.
//!
//! Most groups commit without fsync (redb keeps their pages in memory); each one's record goes to the
//! journal, whose sync makes it durable before its writes are answered. Every 256th group (sooner after
//! 512 KB of records) commits durably, which writes the pages all the groups since changed (each page
//! once, however often it changed). Each group also stores its number in the store (`store.redo`), so
//! after a crash the store file names the last group it holds, and opening it replays the records of the
//! groups after that one, in order (see [`replay`]).
//!
//! A record is a list of operations: `C` create a table, `D` delete a table, `P` put a key, `X` remove a
//! key, `G` remove a key range. Names, keys and values are length-prefixed (u32, little-endian); a range
//! bound is a tag (0 unbounded, 1 included, 2 excluded) and, when bounded, a length-prefixed key.

use std::cell::RefCell;
use std::ops::Bound;

use redb::{Database, ReadableTable, WriteTransaction};

use crate::error::{Result, StoreError};
use crate::journal::JournaledFile;
use crate::table::{raw, Named, RawTable};

const CREATE: u8 = b'C';
const DELETE: u8 = b'D';
const PUT: u8 = b'P';
const REMOVE: u8 = b'X';
const REMOVE_RANGE: u8 = b'G';

/// Where each group stores its number (under [`APPLIED`], u64 big-endian): the store's own table, which
/// lists of tables leave out (backups, copies to another store), since the number counts this file's
/// groups only.
pub(crate) const TABLE: RawTable = redb::TableDefinition::new("store.redo");
pub(crate) const APPLIED: &[u8] = b"applied";

/// Whether `name` is the store's own table rather than a module's.
pub(crate) fn is_own(name: &str) -> bool {
    name == "store.redo"
}

/// At most this many groups commit without their pages between two durable commits …
pub(crate) const DURABLE_EVERY: u64 = 256;
/// … or with this many bytes of records: what a crash leaves to replay, and the pages held in memory.
/// (Creates on 8 to 64 connections did about as well with 64 groups / 256 KB and 1,024 / 1 MB.)
pub(crate) const DURABLE_BYTES: u64 = 512 << 10;

/// The operations of one transaction so far.
#[derive(Default)]
pub(crate) struct Redo(RefCell<Vec<u8>>);

impl Redo {
    pub(crate) fn create(&self, table: Named<'_>) {
        self.op(CREATE, table, &[]);
    }

    pub(crate) fn delete(&self, name: &str) {
        self.op(DELETE, raw(name), &[]);
    }

    pub(crate) fn put(&self, table: Named<'_>, key: &[u8], value: &[u8]) {
        self.op(PUT, table, &[key, value]);
    }

    pub(crate) fn remove(&self, table: Named<'_>, key: &[u8]) {
        self.op(REMOVE, table, &[key]);
    }

    pub(crate) fn remove_range(&self, table: Named<'_>, range: (Bound<&[u8]>, Bound<&[u8]>)) {
        self.op(REMOVE_RANGE, table, &[]);
        let mut out = self.0.borrow_mut();
        for bound in [range.0, range.1] {
            match bound {
                Bound::Unbounded => out.push(0),
                Bound::Included(key) => {
                    out.push(1);
                    put_bytes(&mut out, key);
                }
                Bound::Excluded(key) => {
                    out.push(2);
                    put_bytes(&mut out, key);
                }
            }
        }
    }

    /// The record, leaving this empty.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut())
    }

    fn op(&self, op: u8, table: Named<'_>, parts: &[&[u8]]) {
        use redb::TableHandle;
        let mut out = self.0.borrow_mut();
        out.push(op);
        put_bytes(&mut out, table.name().as_bytes());
        for part in parts {
            put_bytes(&mut out, part);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys, values and names are far below 4 GiB (redb's own limit for a value is 3 GiB).
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Applies one record's operations in `tx`.
fn apply(tx: &WriteTransaction, mut record: &[u8]) -> Result<()> {
    while let Some((&op, rest)) = record.split_first() {
        record = rest;
        let name = std::str::from_utf8(take(&mut record)?).map_err(|_| corrupt())?;
        let table = raw(name);
        match op {
            CREATE => drop(tx.open_table(table)?),
            DELETE => drop(tx.delete_table(table)?),
            PUT => {
                let key = take(&mut record)?;
                let value = take(&mut record)?;
                tx.open_table(table)?.insert(key, value)?;
            }
            REMOVE => drop(tx.open_table(table)?.remove(take(&mut record)?)?),
            REMOVE_RANGE => {
                let start = take_bound(&mut record)?;
                let end = take_bound(&mut record)?;
                tx.open_table(table)?.retain_in::<&[u8], _>((start, end), |_, _| false)?;
            }
            _ => return Err(corrupt()),
        }
    }
    Ok(())
}

fn take<'a>(record: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = record.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes).ok_or_else(corrupt)?;
    let end = usize::try_from(len).ok().and_then(|len| len.checked_add(4)).ok_or_else(corrupt)?;
    let bytes = record.get(4..end).ok_or_else(corrupt)?;
    *record = record.get(end..).ok_or_else(corrupt)?;
    Ok(bytes)
}

fn take_bound<'a>(record: &mut &'a [u8]) -> Result<Bound<&'a [u8]>> {
    let (&tag, rest) = record.split_first().ok_or_else(corrupt)?;
    *record = rest;
    Ok(match tag {
        0 => Bound::Unbounded,
        1 => Bound::Included(take(record)?),
        2 => Bound::Excluded(take(record)?),
        _ => return Err(corrupt()),
    })
}

fn corrupt() -> StoreError {
    StoreError::new("a redo record in the store journal passed its checksum but does not parse")
}

/// The number of the last group the store holds (0 before the first).
fn applied(tx: &WriteTransaction) -> Result<u64> {
    let table = tx.open_table(TABLE)?;
    let number = table.get(APPLIED)?.and_then(|v| <[u8; 8]>::try_from(v.value()).ok()).map(u64::from_be_bytes);
    Ok(number.unwrap_or(0))
}

/// After opening the store file: applies, in order, the records of the groups committed after the last
/// one the file holds (a crash lost their pages, not their records), in one durable commit. Returns the
/// number of the last group.
pub(crate) fn replay(db: &Database, journal: &JournaledFile) -> Result<u64> {
    let records = journal.take_redo()?;
    let tx = db.begin_write()?;
    let mut last = applied(&tx)?;
    let mut replayed = 0;
    for (number, record) in records {
        if number > last {
            apply(&tx, &record)?;
            last = number;
            replayed += 1;
        }
    }
    if replayed == 0 {
        tx.abort()?;
        return Ok(last);
    }
    tx.open_table(TABLE)?.insert(APPLIED, last.to_be_bytes().as_slice())?;
    tx.commit()?;
    tracing::info!(groups = replayed, "replayed the writes the store file did not hold yet from its journal");
    Ok(last)
}
