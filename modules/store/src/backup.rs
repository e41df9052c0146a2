//! Snapshots and restores of the store. redb has no online backup and copying the live file while writes
//! run can produce a torn copy, so a snapshot is every table of ONE read transaction copied into a new
//! redb file: consistent whatever commits meanwhile. Restores replace the store file atomically (copy to a
//! temporary file beside it, check it, fsync, rename) and only after the snapshot's SHA-256 matches.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, Durability, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableHandle,
};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::snapshot::Snapshot;
use crate::store::{Store, FILE_NAME};
use crate::table::{raw, ReadTx};

/// A backup or restore failure, worded for the operator running the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

macro_rules! error_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error(e.to_string())
            }
        })*
    };
}

error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    std::io::Error,
    StoreError,
);

pub type Result<T> = std::result::Result<T, Error>;

/// Rows copied per commit of the new file (intermediate commits are not synced; the last one is).
const ROWS_PER_COMMIT: u64 = 10_000;

/// How far a snapshot is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub rows_done: u64,
    pub rows_total: u64,
}

impl Progress {
    /// Whole percent done (100 for an empty store).
    pub fn percent(&self) -> u64 {
        (self.rows_done.min(self.rows_total) * 100).checked_div(self.rows_total).unwrap_or(100)
    }
}

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the snapshot file.
    pub sha256: String,
}

/// The names of the tables `tx` sees, but the store's own. Every table of the portal is bytes → bytes; a multimap table (the
/// portal has none) would not be copied, so its presence is an error rather than a silent loss.
pub fn table_names(tx: &ReadTransaction) -> Result<Vec<String>> {
    if let Some(multimap) = tx.list_multimap_tables()?.next() {
        return Err(Error::new(format!("unexpected multimap table {}", multimap.name())));
    }
    Ok(tx.list_tables()?.map(|t| t.name().to_string()).filter(|name| !crate::redo::is_own(name)).collect())
}

/// Copies every table of `tx` into a new redb file at `dest` (which must not exist), calling `progress`
/// as rows are copied, and returns what was written with its checksum. On failure `dest` is removed.
pub fn snapshot(tx: &impl Source, dest: &Path, progress: impl FnMut(Progress)) -> Result<Summary> {
    // `Database::create` would open an existing file: refuse to write into anything already there.
    File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::new(format!("cannot create {}: {e}", dest.display())))?;
    let written = copy_tables(tx, dest, progress);
    let (tables, rows) = match written {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
    };
    let bytes = std::fs::metadata(dest)?.len();
    Ok(Summary { tables, rows, bytes, sha256: file_sha256(dest)? })
}

/// Whether `table` holds a module's secrets (`<module>.secrets`, such as the keys that sign access tokens):
/// a backup leaves them out, and a store restored from it makes new ones at start-up, so whoever holds a
/// backup cannot sign tokens for the portal that made it.
pub fn is_secret(table: &str) -> bool {
    table.ends_with(".secrets")
}

fn copy_tables(source: &impl Source, dest: &Path, mut progress: impl FnMut(Progress)) -> Result<(usize, u64)> {
    let names: Vec<String> = source.names()?.into_iter().filter(|name| !is_secret(name)).collect();
    let mut rows_total = 0;
    for name in &names {
        rows_total += source.rows(name)?;
    }
    let out = Database::create(dest)?;
    let mut state = Progress { rows_done: 0, rows_total };
    progress(state);
    let mut batch = out.begin_write()?;
    batch.set_durability(Durability::None)?;
    let mut in_batch = 0;
    for name in &names {
        // Create even empty tables, so the restored store has the same shape.
        batch.open_table(raw(name))?;
        source.each(name, &mut |k, v| {
            batch.open_table(raw(name))?.insert(k, v)?;
            state.rows_done += 1;
            in_batch += 1;
            if in_batch == ROWS_PER_COMMIT {
                let full = std::mem::replace(&mut batch, out.begin_write()?);
                full.commit()?;
                batch.set_durability(Durability::None)?;
                progress(state);
                in_batch = 0;
            }
            Ok(())
        })?;
    }
    batch.set_durability(Durability::Immediate)?;
    batch.commit()?;
    drop(out);
    File::open(dest)?.sync_all()?;
    progress(state);
    Ok((names.len(), state.rows_done))
}

/// Called with every row of a table.
pub type Visit<'v> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'v;

/// What a snapshot copies: one read transaction of a redb file, or a snapshot of a store of either
/// backend.
pub trait Source {
    /// The names of its tables.
    fn names(&self) -> Result<Vec<String>>;
    /// How many rows `table` holds.
    fn rows(&self, table: &str) -> Result<u64>;
    /// Visits every row of `table` in key order.
    fn each(&self, table: &str, visit: &mut Visit<'_>) -> Result<()>;
}

impl Source for ReadTransaction {
    fn names(&self) -> Result<Vec<String>> {
        table_names(self)
    }

    fn rows(&self, table: &str) -> Result<u64> {
        Ok(self.open_table(raw(table))?.len()?)
    }

    fn each(&self, table: &str, visit: &mut Visit<'_>) -> Result<()> {
        for entry in self.open_table(raw(table))?.iter()? {
            let (k, v) = entry?;
            visit(k.value(), v.value())?;
        }
        Ok(())
    }
}

impl Source for Snapshot {
    fn names(&self) -> Result<Vec<String>> {
        match self.redb_transaction() {
            Some(tx) => tx.names(),
            None => self.table_names().map_err(Error::from),
        }
    }

    fn rows(&self, table: &str) -> Result<u64> {
        match self.redb_transaction() {
            Some(tx) => tx.rows(table),
            None => self.count(raw(table)).map_err(Error::from),
        }
    }

    fn each(&self, table: &str, visit: &mut Visit<'_>) -> Result<()> {
        match self.redb_transaction() {
            Some(tx) => tx.each(table, visit),
            None => self.scan_raw(raw(table), (Bound::Unbounded, Bound::Unbounded), false, |k, v| {
                visit(k, v)?;
                Ok::<_, Error>(true)
            }),
        }
    }
}

/// Snapshots the store file at `store_file` while no server has it open (the offline `portal backup`).
pub fn snapshot_file(store_file: &Path, dest: &Path, progress: impl FnMut(Progress)) -> Result<Summary> {
    let db = open_stopped(store_file)?;
    let tx = db.begin_read()?;
    snapshot(&tx, dest, progress)
}

/// Opens a store file that no running portal holds, with errors an operator can act on.
fn open_stopped(store_file: &Path) -> Result<Database> {
    if !store_file.exists() {
        return Err(Error::new(format!("no store at {}", store_file.display())));
    }
    crate::store::open_database(store_file).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => Error::new(format!(
            "{} is in use by a running portal: stop it first, or back up through the server (--server)",
            store_file.display()
        )),
        e => Error::new(format!("cannot open {}: {e}", store_file.display())),
    })
}

/// Lower-case hex SHA-256 of a file's contents.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `FILE.sha256` beside `FILE`.
pub fn checksum_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Writes `FILE.sha256` in `sha256sum` format, so `sha256sum -c FILE.sha256` checks it too.
pub fn write_checksum(snapshot: &Path, sha256: &str) -> Result<()> {
    let name = snapshot.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = checksum_path(snapshot);
    let mut file = File::create(&path)?;
    writeln!(file, "{sha256}  {name}")?;
    file.sync_all()?;
    Ok(())
}

/// The checksum recorded in `FILE.sha256`.
pub fn read_checksum(snapshot: &Path) -> Result<String> {
    let path = checksum_path(snapshot);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("cannot read the checksum file {}: {e}", path.display())))?;
    let sum = text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(format!("{} holds no SHA-256", path.display())));
    }
    Ok(sum)
}

/// What a restore replaced the store with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub tables: usize,
    pub rows: u64,
    pub sha256: String,
}

/// Replaces `<data_dir>/portal.redb` with the snapshot `from` after checking its checksum and that it
/// opens as a portal store. An existing store is replaced only with `force`, and never while a portal
/// has it open. The replacement is atomic: the old store stays intact until the final rename.
pub fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<Restored> {
    let actual = verify(from)?;
    let target = data_dir.join(FILE_NAME);
    if target.exists() {
        if !force {
            return Err(Error::new(format!("{} already holds a store: pass --force to replace it", target.display())));
        }
        // Opening it proves no running portal holds it (the lock would refuse us).
        drop(open_stopped(&target)?);
    }
    std::fs::create_dir_all(data_dir)?;
    let temp = data_dir.join(format!(".{FILE_NAME}.restoring"));
    let _ = std::fs::remove_file(&temp);
    let result = stage(from, &temp).and_then(|(tables, rows)| {
        // A journal left beside the old store belongs to it, not to the snapshot.
        match std::fs::remove_file(crate::journal::journal_path(&target)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        std::fs::rename(&temp, &target)?;
        File::open(data_dir)?.sync_all()?;
        Ok(Restored { tables, rows, sha256: actual })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The SHA-256 of `from`, checked against `FILE.sha256`.
fn verify(from: &Path) -> Result<String> {
    let expected = read_checksum(from)?;
    let actual = file_sha256(from).map_err(|e| Error::new(format!("cannot read {}: {e}", from.display())))?;
    if actual != expected {
        return Err(Error::new(format!(
            "{} does not match its checksum (sha256 {actual}, expected {expected}): the file is damaged",
            from.display()
        )));
    }
    Ok(actual)
}

/// Replaces the portal's tables in `schema` of the PostgreSQL database at `url` with the snapshot `from`,
/// after the same checks as [`restore`]: in one transaction, so the old store stays whole until it
/// commits. Refused while a portal serves that schema.
pub fn restore_postgres(from: &Path, url: &str, schema: &str, force: bool) -> Result<Restored> {
    let sha256 = verify(from)?;
    let temp = std::env::temp_dir().join(format!(".portal-restore-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let staged = stage(from, &temp);
    let result = staged.and_then(|(tables, rows)| {
        let store = Store::open_postgres_alone(url, schema)?;
        let (source, schema) = (temp.clone(), schema.to_string());
        store.write_blocking(move |tx| {
            let existing = tx.table_names()?;
            if !force && existing.iter().any(|name| name == "core.meta") {
                return Err(Error::new(format!("schema {schema:?} already holds a store: pass --force to replace it")));
            }
            for name in &existing {
                tx.delete_table(name)?;
            }
            let db = redb::ReadOnlyDatabase::open(&source)?;
            let snapshot = db.begin_read()?;
            for name in snapshot.names()? {
                tx.create_table(raw(&name))?;
                snapshot.each(&name, &mut |k, v| Ok(tx.put_raw(raw(&name), k, v)?))?;
            }
            Ok(())
        })?;
        Ok(Restored { tables, rows, sha256 })
    });
    let _ = std::fs::remove_file(&temp);
    result
}

/// Copies the snapshot to `temp`, syncs it and checks it is a readable portal store.
fn stage(from: &Path, temp: &Path) -> Result<(usize, u64)> {
    std::fs::copy(from, temp)?;
    File::open(temp)?.sync_all()?;
    let mut db =
        Database::open(temp).map_err(|e| Error::new(format!("{} is not a portal store: {e}", from.display())))?;
    if !db.check_integrity().map_err(|e| Error::new(format!("{}: {e}", from.display())))? {
        return Err(Error::new(format!("{} failed redb's integrity check", from.display())));
    }
    let tx = db.begin_read()?;
    let names = table_names(&tx)?;
    if !names.iter().any(|n| n == "core.meta") {
        return Err(Error::new(format!("{} is not a portal store (no core.meta table)", from.display())));
    }
    let mut rows = 0;
    for name in &names {
        rows += tx.open_table(raw(name))?.len()?;
    }
    Ok((names.len(), rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_file_round_trips_in_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.redb");
        std::fs::write(&file, b"abc").unwrap();
        let sum = file_sha256(&file).unwrap();
        assert_eq!(sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        write_checksum(&file, &sum).unwrap();
        assert_eq!(std::fs::read_to_string(checksum_path(&file)).unwrap(), format!("{sum}  snap.redb\n"));
        assert_eq!(read_checksum(&file).unwrap(), sum);
    }

    #[test]
    fn a_restore_drops_the_journal_a_crashed_store_left_beside_it() {
        use redb::StorageBackend;
        const T: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("core.meta");
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.redb");
        {
            let db = crate::store::open_database(&source).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(T).unwrap().insert(b"kept".as_slice(), b"yes".as_slice()).unwrap();
            tx.commit().unwrap();
        }
        let snapshot_path = dir.path().join("snap.redb");
        let summary = snapshot_file(&source, &snapshot_path, |_| {}).unwrap();
        write_checksum(&snapshot_path, &summary.sha256).unwrap();

        // Another store crashed in the data directory: its file is gone, its journal holds a synced batch.
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let crashed = crate::journal::JournaledFile::open(&data_dir.join(FILE_NAME)).unwrap();
        crashed.set_len(8192).unwrap();
        crashed.write(0, &[0xab; 8192]).unwrap();
        crashed.sync_data().unwrap();
        drop(crashed);
        std::fs::remove_file(data_dir.join(FILE_NAME)).unwrap();

        restore(&snapshot_path, &data_dir, false).unwrap();
        assert!(!crate::journal::journal_path(&data_dir.join(FILE_NAME)).exists());
        let db = crate::store::open_database(&data_dir.join(FILE_NAME)).unwrap();
        let tx = db.begin_read().unwrap();
        assert_eq!(tx.open_table(T).unwrap().get(b"kept".as_slice()).unwrap().unwrap().value(), b"yes");
    }

    #[test]
    fn progress_percent_handles_empty_stores() {
        assert_eq!(Progress { rows_done: 0, rows_total: 0 }.percent(), 100);
        assert_eq!(Progress { rows_done: 1, rows_total: 3 }.percent(), 33);
    }
}
