//! The load driver: N keep-alive HTTP/1.1 connections, each sending its next request as soon as the last
//! answer is read, for a fixed time. A minimal client (pre-built request bytes, Content-Length or chunked
//! bodies) keeps the driver's own CPU use small, since it shares the machine with the server it measures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Builds the bytes of request number `n` (a counter shared by all connections).
pub type MakeRequest = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

/// A response: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::with_capacity(64 * 1024, stream) })
    }

    pub async fn send(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        self.stream.get_mut().write_all(request).await?;
        let mut head = Vec::with_capacity(512);
        loop {
            let before = head.len();
            if self.stream.read_until(b'\n', &mut head).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if &head[before..] == b"\r\n" {
                break;
            }
        }
        let text = std::str::from_utf8(&head).map_err(|_| bad("response head is not UTF-8"))?;
        let status = text.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
        let (mut length, mut chunked) = (0usize, false);
        for line in text.lines().skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| bad("bad content-length"))?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let body = if chunked { self.read_chunked().await? } else { self.read_exact(length).await? };
        Ok(Answer { status, body })
    }

    async fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut body = vec![0; n];
        self.stream.read_exact(&mut body).await?;
        Ok(body)
    }

    async fn read_chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    self.stream.read_line(&mut line).await?;
                    if line == "\r\n" || line.is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            self.stream.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
}

fn bad(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// `GET path` with optional extra header lines (each ending in `\r\n`).
pub fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n").into_bytes()
}

/// `POST path` with a JSON body.
pub fn post_json(path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One request/answer on a fresh connection (setup calls).
pub async fn once(addr: SocketAddr, request: &[u8]) -> std::io::Result<Answer> {
    Conn::open(addr).await?.send(request).await
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Sorted latencies of the successful requests, microseconds.
    pub latencies_us: Vec<u32>,
    /// Each successful request's send time (microseconds after the recorded part began) and latency.
    pub timeline: Vec<(u32, u32)>,
}

impl Stats {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Latency percentile in milliseconds (0 when nothing succeeded).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile_ms(&self.latencies_us, p)
    }

    /// The latencies (sorted, microseconds) of the requests sent between `from` and `to` after the recorded
    /// part began.
    pub fn sent_between(&self, from: Duration, to: Duration) -> Vec<u32> {
        let (from, to) = (from.as_micros() as u32, to.as_micros() as u32);
        let mut window: Vec<u32> =
            self.timeline.iter().filter(|(sent, _)| (from..to).contains(sent)).map(|(_, l)| *l).collect();
        window.sort_unstable();
        window
    }
}

/// Latency percentile in milliseconds of sorted microseconds (0 when there are none).
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[i]) / 1000.0
}

/// Runs `make` over `connections` connections: `warmup` unrecorded, then `duration` recorded.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    make: MakeRequest,
) -> Stats {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + warmup;
    let end = start + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (make, counter) = (Arc::clone(&make), Arc::clone(&counter));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 14);
                let mut timeline = Vec::with_capacity(1 << 14);
                let (mut requests, mut errors) = (0u64, 0u64);
                let mut conn = None;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match Conn::open(addr).await {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let request = make(counter.fetch_add(1, Ordering::Relaxed));
                    let sent = Instant::now();
                    let outcome = c.send(&request).await;
                    let recorded = sent >= start;
                    match outcome {
                        Ok(answer) if (200..300).contains(&answer.status) => {
                            if recorded {
                                requests += 1;
                                let latency = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                                latencies.push(latency);
                                timeline.push(((sent - start).as_micros() as u32, latency));
                            }
                        }
                        Ok(_) => errors += u64::from(recorded),
                        Err(_) => {
                            errors += u64::from(recorded);
                            conn = None;
                        }
                    }
                }
                (requests, errors, latencies, timeline)
            })
        })
        .collect();
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        seconds: duration.as_secs_f64(),
        latencies_us: Vec::new(),
        timeline: Vec::new(),
    };
    for task in tasks {
        let (requests, errors, latencies, timeline) = task.await.expect("driver task");
        stats.requests += requests;
        stats.errors += errors;
        stats.latencies_us.extend(latencies);
        stats.timeline.extend(timeline);
    }
    stats.seconds = (Instant::now() - start).as_secs_f64().max(duration.as_secs_f64());
    stats.latencies_us.sort_unstable();
    stats
}
