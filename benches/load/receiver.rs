//! The webhook receiver of the `fanout` row: a poem server in the load generator's process that answers
//! every delivery 204 at once and notes how long after its event it arrived (the payload's `timestamp`,
//! set in the transaction that recorded the event, against the clock when the delivery is read).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::TcpListener;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Response, Route, Server};

/// Deliveries received so far: when each arrived and how long after its event.
#[derive(Default)]
pub struct Received {
    arrivals: Mutex<Vec<(Instant, u32)>>,
}

/// What the deliveries of one row came to.
pub struct Fanout {
    pub deliveries: usize,
    /// Sorted: event to delivery, microseconds.
    pub lags_us: Vec<u32>,
    /// From the end of the load to the last delivery.
    pub drained_after: Duration,
}

impl Received {
    /// Starts the receiver on a free port; deliveries go to `http://{addr}/hook/{n}`.
    pub async fn start() -> (Arc<Self>, SocketAddr) {
        let received = Arc::new(Self::default());
        let addr = crate::free_addr();
        let app = Route::new().at("/hook/:n", post(delivery)).data(Arc::clone(&received));
        tokio::spawn(Server::new(TcpListener::bind(addr)).run(app));
        (received, addr)
    }

    /// Waits until no delivery arrived for 2 s (at most 60 s), then takes what arrived since the last call.
    pub async fn drain(&self, load_ended: Instant) -> Fanout {
        let count = || self.arrivals.lock().map_or(0, |a| a.len());
        let mut seen = count();
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = count();
            if now == seen {
                break;
            }
            seen = now;
        }
        let arrivals = self.arrivals.lock().map(|mut a| std::mem::take(&mut *a)).unwrap_or_default();
        let last = arrivals.iter().map(|(at, _)| *at).max().unwrap_or(load_ended);
        let mut lags_us: Vec<u32> = arrivals.iter().map(|(_, lag)| *lag).collect();
        lags_us.sort_unstable();
        Fanout { deliveries: arrivals.len(), lags_us, drained_after: last.saturating_duration_since(load_ended) }
    }
}

#[handler]
fn delivery(body: poem::web::Json<serde_json::Value>, Data(received): Data<&Arc<Received>>) -> Response {
    let arrived = Instant::now();
    let lag = body["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| chrono::Utc::now().signed_duration_since(t))
        .and_then(|d| d.to_std().ok())
        .map_or(0, |d| d.as_micros().min(u128::from(u32::MAX)) as u32);
    if let Ok(mut arrivals) = received.arrivals.lock() {
        arrivals.push((arrived, lag));
    }
    Response::builder().status(poem::http::StatusCode::NO_CONTENT).finish()
}
