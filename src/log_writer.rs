//! The log's writer: requests append their formatted lines to a shared buffer and a writer thread
//! writes what gathered every few milliseconds in one `write`. A line costs a request a lock and a copy,
//! never a system call or a wake-up of its own (a channel per line cost the server a fifth of its CPU
//! under load, mostly in the writer thread's polling). Nothing is dropped: past
//! [`BACKLOG_LIMIT`] the request writes the backlog itself. The guard writes out the rest when dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer lets lines gather after the first one arrives.
const GATHER: Duration = Duration::from_millis(5);
/// Past this many bytes waiting, the request that adds to them writes them out itself.
const BACKLOG_LIMIT: usize = 1 << 20;

struct Shared {
    pending: Mutex<Pending>,
    arrived: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands out writers that append to the shared buffer (the `MakeWriter` of the log).
pub struct BatchedWriter<W> {
    shared: Arc<Shared>,
    sink: Arc<Mutex<W>>,
}

impl<W> Clone for BatchedWriter<W> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), sink: self.sink.clone() }
    }
}

/// Stops the writer thread when dropped, after it wrote everything that was logged.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer for `sink` and the guard of its writer thread.
pub fn batched<W: Write + Send + 'static>(sink: W) -> std::io::Result<(BatchedWriter<W>, FlushGuard)> {
    let shared = Arc::new(Shared { pending: Mutex::default(), arrived: Condvar::new() });
    let sink = Arc::new(Mutex::new(sink));
    let thread = {
        let (shared, sink) = (shared.clone(), sink.clone());
        std::thread::Builder::new().name("portal-log".into()).spawn(move || write_until_closed(&shared, &sink))?
    };
    Ok((BatchedWriter { shared: shared.clone(), sink }, FlushGuard { shared, thread: Some(thread) }))
}

fn write_until_closed<W: Write>(shared: &Shared, sink: &Mutex<W>) {
    let mut spare = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closing {
            pending = shared.arrived.wait(pending).unwrap_or_else(PoisonError::into_inner);
        }
        if !pending.closing {
            drop(pending);
            std::thread::sleep(GATHER);
            pending = shared.lock();
        }
        std::mem::swap(&mut pending.bytes, &mut spare);
        let closing = pending.closing;
        // The sink is taken before the buffer is let go of, so no line logged later is written first.
        let mut sink = lock_sink(sink);
        drop(pending);
        write_out(&mut *sink, &spare);
        drop(sink);
        spare.clear();
        if closing {
            return;
        }
    }
}

fn lock_sink<W>(sink: &Mutex<W>) -> MutexGuard<'_, W> {
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `bytes` to the sink; a failing sink (closed stderr) has nowhere to report to, so it is ignored.
fn write_out<W: Write>(sink: &mut W, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let _ = sink.write_all(bytes);
    let _ = sink.flush();
}

/// Appends what one log event writes (the formatter writes a whole line at once).
pub struct LineWriter<'a, W>(&'a BatchedWriter<W>);

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let BatchedWriter { shared, sink } = self.0;
        let mut pending = shared.lock();
        let first = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        if pending.closing || pending.bytes.len() > BACKLOG_LIMIT {
            // Under the buffer's lock, so lines stay in order.
            write_out(&mut *lock_sink(sink), &pending.bytes);
            pending.bytes.clear();
        } else if first {
            shared.arrived.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for BatchedWriter<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.arrived.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_once_in_order_from_many_threads() {
        let sink = Collected::default();
        let (writer, guard) = batched(sink.clone()).unwrap();
        let writer = Arc::new(writer);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        // Long lines: the backlog passes its limit, so requests write some of it themselves.
                        let line = format!("{t} {i} {}\n", "x".repeat(200));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0u32; 4];
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (t, i) = (parts.next().unwrap(), parts.next().unwrap());
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<u32>().unwrap(), next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [20_000; 4]);
    }

    #[test]
    fn a_line_is_written_soon_without_a_flush() {
        let sink = Collected::default();
        let (writer, _guard) = batched(sink.clone()).unwrap();
        writer.make_writer().write_all(b"hello\n").unwrap();
        for _ in 0..200 {
            if sink.0.lock().unwrap().as_slice() == b"hello\n" {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the line was not written within a second");
    }
}
