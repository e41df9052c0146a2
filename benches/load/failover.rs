//! Failover on PostgreSQL: a second portal on the seeded database, GETs by id on both with the same
//! number of connections, and the first portal (the one running the background jobs) killed with SIGKILL
//! halfway through. What the survivor's clients saw is reported: over the whole run, and for the requests
//! sent in the second after the kill; and how long the survivor took to take over the jobs.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{self, Stats};
use crate::{portal_target, wait_ready, Target};

/// The log line of a portal that took the background jobs.
const RUNS_JOBS: &str = "this portal runs the background jobs";

/// What the survivor's clients saw.
pub struct Failover {
    pub survivor: Stats,
    /// Sorted latencies (µs) of the survivor's requests sent in the second after the kill.
    pub after_kill: Vec<u32>,
    /// From the kill until the survivor logged that it runs the jobs.
    pub jobs_moved: Option<Duration>,
}

pub async fn run(
    first: &mut Target,
    database: &(String, String),
    dir: &Path,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Failover {
    std::fs::create_dir_all(dir).expect("second portal's dir");
    let addr = crate::free_addr();
    let mut second = portal_target::spawn(dir, Some(database), addr);
    wait_ready(addr, "/health", Instant::now()).await;
    let get = Arc::clone(&first.ops["get"]);
    let on_first = tokio::spawn(driver::run(first.addr, connections, warmup, duration, Arc::clone(&get)));
    let half = duration / 2;
    let log = dir.join("portal.log");
    let kill = async {
        tokio::time::sleep(warmup + half).await;
        first.child.kill().expect("SIGKILL the first portal");
        let killed = Instant::now();
        while killed.elapsed() < duration {
            if std::fs::read_to_string(&log).unwrap_or_default().contains(RUNS_JOBS) {
                return Some(killed.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    };
    let (survivor, jobs_moved) = tokio::join!(driver::run(addr, connections, warmup, duration, get), kill);
    let _ = on_first.await;
    let _ = second.kill();
    let _ = second.wait();
    let after_kill = survivor.sent_between(half, half + Duration::from_secs(1));
    Failover { survivor, after_kill, jobs_moved }
}
