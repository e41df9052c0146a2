//! The store file's storage backend: commits are made durable through a journal beside the file.
//!
//! redb copies on write, so a durable commit writes every page it changed (about forty for one invoice,
//! scattered over the file: one disk request each) and fsyncs them. Here the writes of a commit are
//! appended to `portal.redb-journal` as one checksummed batch and only the journal is fsynced: one
//! sequential write. The store file is brought up to date now and then: a checkpoint writes the latest
//! version of each page changed since the last one (once, however often it changed) and fsyncs the file,
//! when the journal or the pages held in memory grow large, after a second without writes, and on a clean
//! close, which also removes the journal. Opening first applies, in order, the whole batches a crash left
//! in the journal; a batch torn by the crash fails its checksum and is dropped with what follows it. So
//! the store file plus the journal always hold the state of the last sync, which is all redb asks of a
//! disk.
//!
//! A store that answers writes itself opens the file with [`JournaledFile::open_deferred`]: a commit then
//! only hands its batch over, and the store syncs the journal ([`JournaledFile::sync`]) on another thread
//! before it answers the writes of that commit, while the next commit is already being built.
//!
//! Most commits are not synced at all: their batch is a redo record (see [`crate::redo`]), which the
//! store replays after a crash on the file the page batches left; opening keeps those records for it.
//!
//! Journal layout: a header (magic, generation) and then batches, each a header (magic, generation,
//! body length, body CRC, header CRC) and a body of operations (`W` offset length bytes / `L` length /
//! `R` group-number length record). A checkpoint starts a new generation, so the batches of the old one
//! left in the file no longer count; it comes only with a durable commit, which holds every group before.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// The journal's file name is the store file's with this appended.
pub const SUFFIX: &str = "-journal";

/// A lock whose holder panicked guards pages that may be half updated: the operation fails as a disk
/// error would (the portal's policy: locks around data that cannot be rebuilt fail, caches recover).
fn poisoned<E>(_: E) -> io::Error {
    io::Error::other("the store journal's state was left half updated by a panic")
}

fn lock<T>(m: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    m.lock().map_err(poisoned)
}

fn read<T>(l: &RwLock<T>) -> io::Result<RwLockReadGuard<'_, T>> {
    l.read().map_err(poisoned)
}

fn write<T>(l: &RwLock<T>) -> io::Result<RwLockWriteGuard<'_, T>> {
    l.write().map_err(poisoned)
}

const FILE_MAGIC: &[u8; 8] = b"pjournal";
const FILE_HEADER: u64 = 32;
const BATCH_MAGIC: u32 = 0x5042_4a31;
const BATCH_HEADER: usize = 32;
const WRITE: u8 = b'W';
const SET_LEN: u8 = b'L';
const REDO: u8 = b'R';

/// Redo records by group number, in the order they were written.
pub type RedoRecords = Vec<(u64, Vec<u8>)>;

/// Checkpoint once the journal has grown past this …
const JOURNAL_LIMIT: u64 = 256 << 20;
/// … or the pages changed since the last checkpoint (held in memory) take this much. A checkpoint holds
/// up the commits behind it (about 20 ms for 8 MB here); larger ones write each page less often.
const PENDING_LIMIT: usize = 8 << 20;

/// The store file and its journal, as redb's storage backend. Clones share them.
#[derive(Debug, Clone)]
pub struct JournaledFile(Arc<Journaled>);

impl std::ops::Deref for JournaledFile {
    type Target = Journaled;

    fn deref(&self) -> &Journaled {
        &self.0
    }
}

#[derive(Debug)]
pub struct Journaled {
    /// The store file's own backend, for the locks redb takes on it.
    locks: FileBackend,
    store: File,
    journal: Arc<JournalSync>,
    journal_path: PathBuf,
    /// Whether `sync_data` leaves syncing the journal to the caller of [`JournaledFile::open_deferred`].
    deferred: bool,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    /// The length redb sees.
    len: u64,
    /// The store file's length on disk.
    store_len: u64,
    /// The store file's bytes from here on read as zeros: redb shrank the file since the last checkpoint.
    zero_from: u64,
    /// The redo records the journal held when the store was opened, by group number, for the store to
    /// replay (see [`JournaledFile::take_redo`]).
    recovered: RedoRecords,
    /// The bytes written since the last checkpoint, by offset, not overlapping.
    pending: BTreeMap<u64, Arc<[u8]>>,
    pending_bytes: usize,
    /// What the journal holds since the last checkpoint, about.
    journal_bytes: u64,
    /// The operations since the last sync.
    batch: Vec<Op>,
}

#[derive(Debug)]
enum Op {
    Write(u64, Arc<[u8]>),
    SetLen(u64),
    Redo(u64, Vec<u8>),
}

/// Appends batches to the journal and makes them durable.
#[derive(Debug)]
struct JournalSync {
    file: File,
    /// Batches handed over by `sync_data`, not yet written.
    queued: Mutex<Vec<Vec<Op>>>,
    /// Held while writing: where the next batch goes, and its generation.
    tail: Mutex<Tail>,
    /// A failed write or sync may have lost batches redb counts as durable: nothing is written after it.
    failed: AtomicBool,
    /// Tests hold the next sync: it says it started, then waits for the go.
    #[cfg(test)]
    hold: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
    /// Tests make the next sync fail as a full or broken disk would.
    #[cfg(test)]
    fail_next: AtomicBool,
}

#[derive(Debug)]
struct Tail {
    end: u64,
    generation: u64,
}

impl JournalSync {
    /// Writes the batches handed over so far and syncs the journal: every commit made before the call is
    /// durable once it returns `Ok`.
    fn sync(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some((started, go)) = lock(&self.hold)?.take() {
            let _ = started.send(());
            let _ = go.recv();
        }
        self.check()?;
        let mut tail = lock(&self.tail)?;
        let batches = std::mem::take(&mut *lock(&self.queued)?);
        #[cfg(test)]
        if self.fail_next.swap(false, Ordering::SeqCst) {
            self.failed.store(true, Ordering::SeqCst);
            return Err(io::Error::other("the disk failed (simulated)"));
        }
        let written = self.write(&mut tail, batches).and_then(|()| self.file.sync_data());
        written.inspect_err(|_| self.failed.store(true, Ordering::SeqCst))
    }

    fn write(&self, tail: &mut Tail, batches: Vec<Vec<Op>>) -> io::Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for ops in batches {
            let mut body = Vec::new();
            for op in &ops {
                match op {
                    Op::Write(offset, data) => {
                        body.push(WRITE);
                        body.extend_from_slice(&offset.to_le_bytes());
                        body.extend_from_slice(&(data.len() as u64).to_le_bytes());
                        body.extend_from_slice(data);
                    }
                    Op::SetLen(len) => {
                        body.push(SET_LEN);
                        body.extend_from_slice(&len.to_le_bytes());
                    }
                    Op::Redo(group, record) => {
                        body.push(REDO);
                        body.extend_from_slice(&group.to_le_bytes());
                        body.extend_from_slice(&(record.len() as u64).to_le_bytes());
                        body.extend_from_slice(record);
                    }
                }
            }
            out.extend_from_slice(&batch_header(tail.generation, &body));
            out.extend_from_slice(&body);
        }
        self.file.write_all_at(&out, tail.end)?;
        tail.end += out.len() as u64;
        Ok(())
    }

    /// Writes the journal header of a new generation (the old one's batches stop counting) and syncs it.
    fn start_generation(&self, generation: u64) -> io::Result<()> {
        let mut tail = lock(&self.tail)?;
        let mut header = [FILE_MAGIC.as_slice(), &generation.to_le_bytes()].concat();
        header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
        header.resize(FILE_HEADER as usize, 0);
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        *tail = Tail { end: FILE_HEADER, generation };
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        match self.failed.load(Ordering::SeqCst) {
            true => Err(io::Error::other("an earlier write of the store journal failed")),
            false => Ok(()),
        }
    }
}

/// The journal of the store file at `store_path`.
pub fn journal_path(store_path: &Path) -> PathBuf {
    let mut name = store_path.as_os_str().to_owned();
    name.push(SUFFIX);
    PathBuf::from(name)
}

impl JournaledFile {
    /// Writes the batches handed over so far and syncs the journal: every commit made before the call is
    /// durable once it returns `Ok`.
    pub fn sync(&self) -> io::Result<()> {
        self.journal.sync()
    }

    /// Fails once a write or sync of the journal failed: the journal may have lost batches redb counts as
    /// durable, so every later commit fails too, until the store is opened again (and recovers).
    pub fn check_writable(&self) -> io::Result<()> {
        self.journal.check()
    }

    /// Makes the next sync fail.
    #[cfg(test)]
    pub(crate) fn fail_next_sync(&self) {
        self.journal.fail_next.store(true, Ordering::SeqCst);
    }

    /// Holds the next sync until the returned sender speaks; the receiver hears when it started.
    #[cfg(test)]
    pub(crate) fn hold_next_sync(&self) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (started, started_rx) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        *self.journal.hold.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((started, go_rx));
        (started_rx, go)
    }

    /// Checkpoints if anything was written since the last checkpoint, so an idle store holds no pages in
    /// memory, its file is up to date and the journal takes no disk space. Call it between commits, on
    /// the committing thread.
    pub fn checkpoint_if_written(&self) -> io::Result<()> {
        let written = read(&self.state)?.journal_bytes > 0;
        if written {
            self.checkpoint()?;
            let _tail = lock(&self.journal.tail)?;
            self.journal.file.set_len(FILE_HEADER)?;
        }
        Ok(())
    }

    /// Opens (creating if needed) the store file and its journal, applying what the journal holds; every
    /// commit is durable when it returns. Fails with [`io::ErrorKind::WouldBlock`] when another process
    /// has the store open.
    pub fn open(store_path: &Path) -> io::Result<Self> {
        Self::open_with(store_path, false)
    }

    /// Like [`open`](Self::open), but a commit is durable only once [`sync`](Self::sync) was called
    /// after it.
    pub fn open_deferred(store_path: &Path) -> io::Result<Self> {
        Self::open_with(store_path, true)
    }

    fn open_with(store_path: &Path, deferred: bool) -> io::Result<Self> {
        let open = |path: &Path| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let journal_path = journal_path(store_path);
        let journal = open(&journal_path)?;
        journal.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::new(io::ErrorKind::WouldBlock, "the store is in use"),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let store = open(store_path)?;
        let (generation, recovered) = recover(&store, &journal)?;
        let store_len = store.metadata()?.len();
        let file = Self(Arc::new(Journaled {
            locks: FileBackend::new(store.try_clone()?).map_err(io::Error::other)?,
            store,
            journal: Arc::new(JournalSync {
                file: journal,
                queued: Mutex::new(Vec::new()),
                tail: Mutex::new(Tail { end: FILE_HEADER, generation }),
                failed: AtomicBool::new(false),
                #[cfg(test)]
                hold: Mutex::default(),
                #[cfg(test)]
                fail_next: AtomicBool::new(false),
            }),
            journal_path,
            deferred,
            state: RwLock::new(State {
                len: store_len,
                store_len,
                zero_from: store_len,
                recovered: Vec::new(),
                pending: BTreeMap::new(),
                pending_bytes: 0,
                journal_bytes: 0,
                batch: Vec::new(),
            }),
        }));
        file.journal.start_generation(generation + 1)?;
        // The new generation holds the records again until the store has replayed them durably.
        if !recovered.is_empty() {
            for (group, record) in &recovered {
                file.queue_redo(*group, record.clone())?;
            }
            file.journal.sync()?;
        }
        write(&file.state)?.recovered = recovered;
        Ok(file)
    }

    /// Hands the redo record of group `group`, committed without fsync, to the next [`sync`](Self::sync).
    pub fn queue_redo(&self, group: u64, record: Vec<u8>) -> io::Result<()> {
        self.journal.check()?;
        write(&self.state)?.journal_bytes += record.len() as u64 + 17;
        lock(&self.journal.queued)?.push(vec![Op::Redo(group, record)]);
        Ok(())
    }

    /// The redo records the journal held when it was opened, in the order they were written (once).
    pub fn take_redo(&self) -> io::Result<RedoRecords> {
        Ok(std::mem::take(&mut write(&self.state)?.recovered))
    }

    /// Writes the pages changed since the last checkpoint into the store file, syncs it and starts a new
    /// journal generation. Runs on the committing thread, so nothing writes meanwhile.
    fn checkpoint(&self) -> io::Result<()> {
        // The store file may only hold what the journal already made durable.
        self.journal.sync()?;
        {
            let state = read(&self.state)?;
            if state.zero_from < state.store_len {
                self.store.set_len(state.zero_from)?;
            }
            if state.len != state.zero_from.min(state.store_len) {
                self.store.set_len(state.len)?;
            }
            for (offset, data) in &state.pending {
                self.store.write_all_at(data, *offset)?;
            }
            self.store.sync_data()?;
        }
        {
            let mut state = write(&self.state)?;
            state.store_len = state.len;
            state.zero_from = state.len;
            state.pending.clear();
            state.pending_bytes = 0;
            state.journal_bytes = 0;
        }
        let generation = lock(&self.journal.tail)?.generation;
        self.journal.start_generation(generation + 1)
    }
}

/// Applies the page batches of the journal's generation to the store file, in order, and syncs it.
/// Returns the generation found (0 for a new or unreadable journal) and the redo records met on the way.
fn recover(store: &File, journal: &File) -> io::Result<(u64, RedoRecords)> {
    let mut header = [0u8; FILE_HEADER as usize];
    let mut redo = Vec::new();
    if read_at(journal, &mut header, 0)? < header.len() {
        return Ok((0, redo));
    }
    let (Some(magic), Some(generation), Some(crc)) = (header.get(..8), u64_at(&header, 8), u32_at(&header, 16)) else {
        return Ok((0, redo));
    };
    let covered = header.get(..16).map(crc32fast::hash);
    if magic != FILE_MAGIC || covered != Some(crc) {
        return Ok((0, redo));
    }
    let mut at = FILE_HEADER;
    let mut applied = false;
    while let Some(body) = read_batch(journal, at, generation)? {
        applied |= apply(store, &body, &mut redo)?;
        at += (BATCH_HEADER + body.len()) as u64;
    }
    if applied {
        store.sync_data()?;
    }
    Ok((generation, redo))
}

/// The body of the batch at `at`, if a whole batch of `generation` is there.
fn read_batch(journal: &File, at: u64, generation: u64) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; BATCH_HEADER];
    if read_at(journal, &mut header, at)? < BATCH_HEADER {
        return Ok(None);
    }
    let (Some(magic), Some(found), Some(len), Some(body_crc), Some(header_crc)) =
        (u32_at(&header, 0), u64_at(&header, 4), u64_at(&header, 12), u32_at(&header, 20), u32_at(&header, 24))
    else {
        return Ok(None);
    };
    if magic != BATCH_MAGIC || found != generation || Some(header_crc) != header.get(..24).map(crc32fast::hash) {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(len) else { return Ok(None) };
    let mut body = vec![0u8; len];
    if read_at(journal, &mut body, at + BATCH_HEADER as u64)? < len || crc32fast::hash(&body) != body_crc {
        return Ok(None);
    }
    Ok(Some(body))
}

/// Applies one batch's page operations to the store file (whether it had any) and keeps its redo records.
fn apply(store: &File, mut body: &[u8], redo: &mut RedoRecords) -> io::Result<bool> {
    let corrupt =
        || io::Error::new(io::ErrorKind::InvalidData, "a journal batch passed its checksum but does not parse");
    let mut wrote = false;
    while let Some((&op, rest)) = body.split_first() {
        wrote |= op != REDO;
        match op {
            WRITE => {
                let (offset, len) = u64_at(rest, 0).zip(u64_at(rest, 8)).ok_or_else(corrupt)?;
                let len = usize::try_from(len).map_err(|_| corrupt())?;
                let end = len.checked_add(16).ok_or_else(corrupt)?;
                let data = rest.get(16..end).ok_or_else(corrupt)?;
                store.write_all_at(data, offset)?;
                body = rest.get(end..).ok_or_else(corrupt)?;
            }
            SET_LEN => {
                store.set_len(u64_at(rest, 0).ok_or_else(corrupt)?)?;
                body = rest.get(8..).ok_or_else(corrupt)?;
            }
            REDO => {
                let (group, len) = u64_at(rest, 0).zip(u64_at(rest, 8)).ok_or_else(corrupt)?;
                let len = usize::try_from(len).map_err(|_| corrupt())?;
                let end = len.checked_add(16).ok_or_else(corrupt)?;
                redo.push((group, rest.get(16..end).ok_or_else(corrupt)?.to_vec()));
                body = rest.get(end..).ok_or_else(corrupt)?;
            }
            _ => return Err(corrupt()),
        }
    }
    Ok(wrote)
}

/// The 32-byte header of a batch: magic, generation, body length, body checksum, its own checksum, padding.
fn batch_header(generation: u64, body: &[u8]) -> Vec<u8> {
    let mut header = [
        BATCH_MAGIC.to_le_bytes().as_slice(),
        &generation.to_le_bytes(),
        &(body.len() as u64).to_le_bytes(),
        &crc32fast::hash(body).to_le_bytes(),
    ]
    .concat();
    header.extend_from_slice(&crc32fast::hash(&header).to_le_bytes());
    header.resize(BATCH_HEADER, 0);
    header
}

/// The little-endian u64 at `at`, if `bytes` holds one there.
fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The little-endian u32 at `at`, if `bytes` holds one there.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Reads as much of `out` as the file holds at `offset`; returns how much that was.
fn read_at(file: &File, out: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = out.get_mut(done..).filter(|rest| !rest.is_empty()) {
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl State {
    /// Records `data` at `offset` as the newest bytes there, cutting what it overlaps.
    fn put(&mut self, offset: u64, data: Arc<[u8]>) -> io::Result<()> {
        let end = offset + data.len() as u64;
        self.cut(offset, end)?;
        self.pending_bytes += data.len();
        self.pending.insert(offset, data);
        Ok(())
    }

    /// Removes the pending bytes in `start..end`, keeping the parts of entries outside it.
    fn cut(&mut self, start: u64, end: u64) -> io::Result<()> {
        let inconsistent = || io::Error::other("the store journal's pending pages overlap");
        loop {
            // The last entry starting before `end`; earlier ones end before it starts.
            let Some((&at, data)) = self.pending.range(..end).next_back() else { return Ok(()) };
            let data_end = at + data.len() as u64;
            if data_end <= start {
                return Ok(());
            }
            let data = self.pending.remove(&at).ok_or_else(inconsistent)?;
            self.pending_bytes -= data.len();
            if data_end > end {
                let tail: Arc<[u8]> = Arc::from(data.get((end - at) as usize..).ok_or_else(inconsistent)?);
                self.pending_bytes += tail.len();
                self.pending.insert(end, tail);
            }
            if at < start {
                let head: Arc<[u8]> = Arc::from(data.get(..(start - at) as usize).ok_or_else(inconsistent)?);
                self.pending_bytes += head.len();
                self.pending.insert(at, head);
                return Ok(());
            }
        }
    }
}

fn out_of_range() -> io::Error {
    io::Error::other("a read of the store fell outside its pending pages")
}

impl StorageBackend for JournaledFile {
    fn len(&self) -> io::Result<u64> {
        Ok(read(&self.state)?.len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let state = read(&self.state)?;
        let end = offset + out.len() as u64;
        if end > state.len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the store"));
        }
        // The common case: one pending write holds all of it.
        if let Some((at, data)) = state.pending.range(..=offset).next_back() {
            if at + data.len() as u64 >= end {
                let from = (offset - at) as usize;
                out.copy_from_slice(data.get(from..from + out.len()).ok_or_else(out_of_range)?);
                return Ok(());
            }
        }
        let on_disk = state.zero_from.min(state.store_len);
        let from_disk = on_disk.saturating_sub(offset).min(out.len() as u64) as usize;
        let (disk_part, zero_part) = out.split_at_mut(from_disk);
        self.store.read_exact_at(disk_part, offset)?;
        zero_part.fill(0);
        let overlapping = state.pending.range(..end).rev().take_while(|(at, data)| **at + data.len() as u64 > offset);
        for (at, data) in overlapping {
            let start = (*at).max(offset);
            let stop = (at + data.len() as u64).min(end);
            let target = out.get_mut((start - offset) as usize..(stop - offset) as usize).ok_or_else(out_of_range)?;
            target.copy_from_slice(data.get((start - at) as usize..(stop - at) as usize).ok_or_else(out_of_range)?);
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = write(&self.state)?;
        if len < state.len {
            let old = state.len;
            state.cut(len, old)?;
            state.zero_from = state.zero_from.min(len);
        }
        state.len = len;
        state.batch.push(Op::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.journal.check()?;
        let (batch, due) = {
            let mut state = write(&self.state)?;
            let due = state.pending_bytes > PENDING_LIMIT || state.journal_bytes > JOURNAL_LIMIT;
            (std::mem::take(&mut state.batch), due)
        };
        if !batch.is_empty() {
            lock(&self.journal.queued)?.push(batch);
        }
        if due {
            self.checkpoint()
        } else if self.deferred {
            Ok(())
        } else {
            self.journal.sync()
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let data: Arc<[u8]> = Arc::from(data);
        let mut state = write(&self.state)?;
        state.journal_bytes += data.len() as u64 + 17;
        state.put(offset, Arc::clone(&data))?;
        state.batch.push(Op::Write(offset, data));
        Ok(())
    }

    fn close(&self) -> io::Result<()> {
        let result = self.checkpoint().and_then(|()| std::fs::remove_file(&self.journal_path));
        let unlocked = self.locks.close();
        result?;
        unlocked
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.locks.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.locks.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    fn page(byte: u8) -> Vec<u8> {
        vec![byte; PAGE]
    }

    fn read(file: &JournaledFile, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0xee; len];
        file.read(offset, &mut out).unwrap();
        out
    }

    /// A temp directory and the store path in it (the directory goes when the first is dropped).
    fn temp_store() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        (dir, path)
    }

    fn journal_len(store_path: &Path) -> u64 {
        std::fs::metadata(journal_path(store_path)).unwrap().len()
    }

    // Dropping a `JournaledFile` without `close` is a crash: what was written stays, nothing is finished.

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_do_not() {
        let (_dir, path) = temp_store();
        let file = JournaledFile::open(&path).unwrap();
        file.set_len(2 * PAGE as u64).unwrap();
        file.write(0, &page(1)).unwrap();
        file.write(PAGE as u64, &page(2)).unwrap();
        file.sync_data().unwrap();
        file.write(0, &page(3)).unwrap();
        assert_eq!(read(&file, 0, PAGE), page(3), "reads see writes before they are synced");
        drop(file);

        let file = JournaledFile::open(&path).unwrap();
        assert_eq!(file.len().unwrap(), 2 * PAGE as u64);
        assert_eq!(read(&file, 0, PAGE), page(1));
        assert_eq!(read(&file, PAGE as u64, PAGE), page(2));
    }

    #[test]
    fn deferred_commits_are_durable_only_once_the_journal_is_synced() {
        let (_dir, path) = temp_store();
        let file = JournaledFile::open_deferred(&path).unwrap();
        let sync = file.clone();
        file.set_len(PAGE as u64).unwrap();
        file.write(0, &page(1)).unwrap();
        file.sync_data().unwrap();
        sync.sync().unwrap();
        file.write(0, &page(2)).unwrap();
        file.sync_data().unwrap();
        drop((file, sync));

        let file = JournaledFile::open(&path).unwrap();
        assert_eq!(read(&file, 0, PAGE), page(1), "the second commit was never synced");
    }

    #[test]
    fn a_torn_batch_is_dropped_with_what_follows_it() {
        let (_dir, path) = temp_store();
        let file = JournaledFile::open(&path).unwrap();
        file.set_len(PAGE as u64).unwrap();
        file.write(0, &page(1)).unwrap();
        file.sync_data().unwrap();
        let first_end = journal_len(&path);
        file.write(0, &page(2)).unwrap();
        file.sync_data().unwrap();
        let second_end = journal_len(&path);
        file.write(0, &page(3)).unwrap();
        file.sync_data().unwrap();
        drop(file);
        // The crash tore the second batch: one byte of its body never reached the disk.
        let journal = OpenOptions::new().write(true).open(journal_path(&path)).unwrap();
        journal.write_all_at(&[0], (first_end + second_end) / 2).unwrap();
        drop(journal);

        let file = JournaledFile::open(&path).unwrap();
        assert_eq!(read(&file, 0, PAGE), page(1));
    }

    #[test]
    fn batches_of_a_generation_before_the_checkpoint_are_not_applied_again() {
        let (_dir, path) = temp_store();
        let file = JournaledFile::open(&path).unwrap();
        file.set_len(2 * PAGE as u64).unwrap();
        file.write(0, &page(1)).unwrap();
        file.sync_data().unwrap();
        file.write(PAGE as u64, &page(2)).unwrap();
        file.sync_data().unwrap();
        file.checkpoint().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [page(1), page(2)].concat(), "the store file is up to date");
        // The same size as the first batch above, so the old second batch, whole, still follows it.
        file.set_len(2 * PAGE as u64).unwrap();
        file.write(PAGE as u64, &page(3)).unwrap();
        file.sync_data().unwrap();
        drop(file);

        let file = JournaledFile::open(&path).unwrap();
        assert_eq!(read(&file, 0, 2 * PAGE), [page(1), page(3)].concat());
    }

    #[test]
    fn overlapping_writes_and_shrinks_read_back_as_written_before_and_after_recovery() {
        let (_dir, path) = temp_store();
        let file = JournaledFile::open(&path).unwrap();
        file.set_len(4 * PAGE as u64).unwrap();
        file.write(0, &[7; 4 * PAGE]).unwrap();
        file.sync_data().unwrap();
        file.checkpoint().unwrap();
        file.write(PAGE as u64, &page(8)).unwrap();
        file.set_len(3 * PAGE as u64).unwrap();
        file.set_len(4 * PAGE as u64).unwrap();
        file.write(2 * PAGE as u64 + 100, &[9; 10]).unwrap();
        file.sync_data().unwrap();
        let expected = {
            let mut bytes = [page(7), page(8), page(7), vec![0; PAGE]].concat();
            bytes[2 * PAGE + 100..2 * PAGE + 110].fill(9);
            bytes
        };
        assert_eq!(read(&file, 0, 4 * PAGE), expected);
        assert_eq!(read(&file, PAGE as u64 - 2, 4), [7, 7, 8, 8], "a read across a pending write's edge");
        drop(file);

        let file = JournaledFile::open(&path).unwrap();
        assert_eq!(read(&file, 0, 4 * PAGE), expected, "after recovery");
        file.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected, "after a clean close the store file holds it all");
        assert!(!journal_path(&path).exists(), "and the journal is gone");
    }

    #[test]
    fn a_second_open_is_refused_while_the_store_is_open() {
        let (_dir, path) = temp_store();
        let _open = JournaledFile::open(&path).unwrap();
        let second = JournaledFile::open(&path).map(|_| ()).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn redb_on_the_journal_leaves_a_complete_store_file_when_closed() {
        const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
        let (_dir, path) = temp_store();
        let db = redb::Database::builder().create_with_backend(JournaledFile::open(&path).unwrap()).unwrap();
        for i in 0..100u64 {
            let tx = db.begin_write().unwrap();
            tx.open_table(T).unwrap().insert(i, i * 2).unwrap();
            tx.commit().unwrap();
        }
        drop(db);
        assert!(!journal_path(&path).exists());

        let db = redb::Database::open(&path).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = tx.open_table(T).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 100);
        assert_eq!(table.get(99).unwrap().unwrap().value(), 198);
    }
}
