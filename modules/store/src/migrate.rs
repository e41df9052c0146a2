//! Moving a store to the other backend (`portal migrate-store`): every table, the secrets included (it is
//! the same portal moving), read in one consistent read of the source and written to an empty target in
//! batches. The target's `core.meta` (its schema versions, which make it a portal store) is written last,
//! so a copy cut short is not taken for a store and can simply be run again.

use std::ops::Bound;

use crate::backup::{Error, Progress, Result};
use crate::snapshot::Snapshot;
use crate::store::Store;
use crate::table::{raw, ReadTx};
use crate::write::WriteTx;

/// Rows written per transaction of the target.
const ROWS_PER_BATCH: usize = 5_000;

/// The table whose rows make a store a portal store.
const META: &str = "core.meta";

/// What a copy moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: usize,
    pub rows: u64,
}

/// Copies every table of `from` into `to`, which must hold no portal store, then checks that each table
/// of the target holds as many rows as the source's.
pub fn copy(from: &Store, to: &Store, progress: impl FnMut(Progress)) -> Result<Copied> {
    to.write_blocking(clear_target)?;
    // A read may run twice (never this one, whose first statement is not a point read), so it cannot
    // hold `progress` mutably.
    let progress = std::cell::RefCell::new(progress);
    let counts = from.read_blocking(|source| {
        let mut progress = progress.borrow_mut();
        let mut names = source.table_names()?;
        // `core.meta` last: see the module's comment.
        names.sort_by_key(|name| name == META);
        let mut counts = Vec::with_capacity(names.len());
        for name in &names {
            counts.push((name.clone(), source.count(raw(name))?));
        }
        let mut state = Progress { rows_done: 0, rows_total: counts.iter().map(|(_, n)| n).sum() };
        progress(state);
        for name in &names {
            let table = name.clone();
            to.write_blocking(move |tx| tx.create_table(raw(&table)))?;
            copy_table(source, to, name, &mut |rows| {
                state.rows_done += rows;
                progress(state);
            })?;
        }
        Ok::<_, Error>(counts)
    })?;
    let written = to.read_blocking(|target| {
        counts.iter().map(|(name, _)| target.count(raw(name)).map_err(Error::from)).collect::<Result<Vec<u64>>>()
    })?;
    for ((name, expected), found) in counts.iter().zip(&written) {
        if expected != found {
            return Err(Error(format!("{name}: {expected} rows in the source, {found} in the target")));
        }
    }
    Ok(Copied { tables: counts.len(), rows: written.iter().sum() })
}

/// Refuses a target that holds a portal store; removes the tables a copy cut short left behind.
fn clear_target(tx: &WriteTx) -> Result<()> {
    let names = tx.table_names()?;
    if names.iter().any(|name| name == META) {
        return Err(Error("the target already holds a portal store; migrate into an empty one".into()));
    }
    for name in &names {
        tx.delete_table(name)?;
    }
    Ok(())
}

/// Copies the rows of `name` in batches, each written in one transaction of the target.
fn copy_table(source: &Snapshot, to: &Store, name: &str, done: &mut dyn FnMut(u64)) -> Result<()> {
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ROWS_PER_BATCH);
    let mut flush = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> Result<()> {
        let rows = std::mem::take(batch);
        let (table, count) = (name.to_string(), u64::try_from(rows.len()).unwrap_or(u64::MAX));
        to.write_blocking(move |tx| {
            for (k, v) in &rows {
                tx.put_raw(raw(&table), k, v)?;
            }
            Ok::<_, Error>(())
        })?;
        done(count);
        Ok(())
    };
    source.scan_raw(raw(name), (Bound::Unbounded, Bound::Unbounded), false, |k, v| {
        batch.push((k.to_vec(), v.to_vec()));
        if batch.len() == ROWS_PER_BATCH {
            flush(&mut batch)?;
        }
        Ok::<_, Error>(true)
    })?;
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(())
}
