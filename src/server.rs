//! The HTTP server loop. poem's `Server` has no header-read deadline and no connection caps, so a client
//! holding many slow connections could starve everyone else; this one accepts connections within limits
//! (overall and per client IP, trusted proxies counting only toward the total; beyond them a connection is
//! closed at once), serves each with hyper under a deadline for a request's headers (which also ends idle
//! keep-alive connections), and stops gracefully: no new connections, in-flight requests finish within
//! the grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Request, Response};
use portal_core::config::ConnectionConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bare_answers::DressBareAnswers;

/// What the loop holds connections to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// Time to send a request's headers, counted from when the connection waits for one.
    pub header_timeout: Duration,
    /// Peers that stand for many clients (trusted proxies): only the total applies to them.
    pub shared_peers: Vec<IpAddr>,
}

impl Limits {
    /// The configured limits, the total kept below the process's file limit.
    pub fn new(config: &ConnectionConfig, shared_peers: Vec<IpAddr>, file_limit: Option<u64>) -> Self {
        let by_files = file_limit.map_or(usize::MAX, |n| usize::try_from(n.saturating_sub(128)).unwrap_or(usize::MAX));
        Self {
            max_connections: (config.max_connections as usize).min(by_files.max(1)),
            max_per_ip: config.max_connections_per_ip as usize,
            header_timeout: Duration::from_secs(config.request_timeout_seconds),
            shared_peers,
        }
    }
}

/// Open connections, in all and per client IP.
#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection's place within the limits, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = open.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A slot for a connection from `ip`, or `None` when a limit is reached.
fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr, limits: &Limits) -> Option<Slot> {
    let mut state = open.lock().unwrap_or_else(|p| p.into_inner());
    if state.total >= limits.max_connections {
        return None;
    }
    let counted = !limits.shared_peers.contains(&ip);
    if counted {
        let n = state.per_ip.entry(ip).or_insert(0);
        if *n >= limits.max_per_ip {
            return None;
        }
        *n += 1;
    }
    state.total += 1;
    Some(Slot { open: Arc::clone(open), ip: counted.then_some(ip) })
}

/// Serves `ep` on `listener` until `shutdown` resolves, then lets in-flight requests finish for up to
/// `grace`. `tls`: the portal is reached over TLS (for the headers of answers hyper makes itself).
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    limits: Limits,
    tls: bool,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let ep = Arc::new(ep);
    let local = listener.local_addr()?;
    let open = Arc::new(Mutex::new(Open::default()));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = admit(&open, peer.ip(), &limits) else {
            tracing::debug!(peer = %peer.ip(), "connection refused: over the connection limits");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (ep, stop, header_timeout) = (Arc::clone(&ep), stop.clone(), limits.header_timeout);
        connections.spawn(async move {
            let stream = DressBareAnswers::new(stream, tls);
            serve_connection(stream, local, peer, ep, header_timeout, stop).await;
            drop(slot);
        });
    }
    stop.cancel();
    connections.close();
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!("requests still running after the grace period were cut off");
    }
    Ok(())
}

async fn serve_connection<E>(
    stream: DressBareAnswers<TcpStream>,
    local: SocketAddr,
    peer: SocketAddr,
    ep: Arc<E>,
    header_timeout: Duration,
    stop: CancellationToken,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let ep = Arc::clone(&ep);
        async move {
            let req: Request = (
                req,
                LocalAddr(Addr::SocketAddr(local)),
                RemoteAddr(Addr::SocketAddr(peer)),
                poem::http::uri::Scheme::HTTP,
            )
                .into();
            Ok::<_, Infallible>(hyper::Response::from(ep.get_response(req).await))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(header_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, shared: &[&str]) -> Limits {
        Limits {
            max_connections: total,
            max_per_ip: per_ip,
            header_timeout: Duration::from_secs(1),
            shared_peers: shared.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn connections_are_held_to_the_total_and_per_ip_limits_and_given_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let l = limits(5, 2, &["10.0.0.9"]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let a1 = admit(&open, a, &l).unwrap();
        let _a2 = admit(&open, a, &l).unwrap();
        assert!(admit(&open, a, &l).is_none(), "third from one IP");
        let _b1 = admit(&open, b, &l).unwrap();
        // The proxy is held only by the total: two more fit, then nothing from anyone.
        let _p1 = admit(&open, proxy, &l).unwrap();
        let _p2 = admit(&open, proxy, &l).unwrap();
        assert!(admit(&open, b, &l).is_none(), "total reached");
        drop(a1);
        assert!(admit(&open, a, &l).is_some(), "a closed connection gives its place back");
    }

    #[test]
    fn the_total_stays_below_the_file_limit() {
        let config =
            ConnectionConfig { max_connections: 4096, max_connections_per_ip: 64, request_timeout_seconds: 10 };
        assert_eq!(Limits::new(&config, vec![], Some(1024)).max_connections, 896);
        assert_eq!(Limits::new(&config, vec![], Some(1_048_576)).max_connections, 4096);
        assert_eq!(Limits::new(&config, vec![], None).max_connections, 4096);
    }
}
