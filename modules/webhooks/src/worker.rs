//! The worker that delivers due events: signed anew on every attempt, 15 s to answer, 2xx done. Failures
//! are tried again after the configured delays (with jitter; a `Retry-After` pushes the next attempt
//! later), then given up; an endpoint answering 410 Gone is disabled. Each attempt is recorded. Each
//! endpoint has its own queue and its share of the places, so one that never answers delays only itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use portal_core::table::{key, key_tail};
use portal_core::WriteTx;
use portal_core::{Error, ReadTx, Result, Store, Timestamp};

use crate::config::WebhooksConfig;
use crate::model::{Attempt, Delivery, DeliveryId, DeliveryStatus, Endpoint, EndpointId, Event};
use crate::tables::{BY_ENDPOINT, DELIVERIES, DUE, ENDPOINTS, EVENTS};
use crate::{secrets, signature, target};

/// Time an endpoint has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Deliveries on their way at once, and at most per endpoint.
const IN_FLIGHT: usize = 32;
const PER_ENDPOINT: usize = 16;
/// Answered attempts whose records are being written; no more are sent while this many wait.
const RECORDING: usize = 256;
/// How often free places are filled while deliveries are on their way.
const REFILL: Duration = Duration::from_millis(100);

/// Notified when a write that made deliveries is committed: the worker sends them at once instead of
/// on its next round (one a second).
pub(crate) static NEW_DELIVERIES: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[derive(Clone)]
pub(crate) struct Worker {
    store: Store,
    config: Arc<WebhooksConfig>,
    client: reqwest::Client,
}

/// A delivery ready to send: its event's body and the endpoint's signing keys as of now.
struct Sendable {
    event: Event,
    endpoint: Endpoint,
    keys: Vec<Vec<u8>>,
}

/// Whether a picked delivery can be sent.
enum Ready {
    Send(Box<Sendable>),
    /// Removed meanwhile (pruned): nothing to do.
    Settled,
    /// It cannot be sent, for the reason given: it ends as failed.
    Abandon(&'static str),
}

/// What an attempt came to.
enum Outcome {
    Delivered,
    /// 410 Gone: the endpoint does not want events any more.
    Gone,
    Failed {
        retry_after: Option<Duration>,
    },
}

impl Worker {
    pub(crate) fn new(store: Store, config: Arc<WebhooksConfig>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(target::CheckedResolver { allow: config.allow_http })
            .user_agent("Portal-Webhooks/1")
            .build()
            .map_err(Error::internal)?;
        Ok(Self { store, config, client })
    }

    /// Sends every delivery due now, and those falling due while others are on their way; returns how
    /// many were delivered. Each endpoint has at most [`PER_ENDPOINT`] deliveries on their way, and free
    /// places are filled as they free up (and every 100 ms), so an endpoint that never answers holds only
    /// its own. A place frees up with the endpoint's answer: the attempt is then recorded (a durable
    /// write) while the place serves the next delivery.
    pub(crate) async fn run(&self) -> Result<usize> {
        let mut delivered = 0;
        let mut sending = FuturesUnordered::new();
        let mut recording = FuturesUnordered::new();
        let mut busy: HashMap<EndpointId, usize> = HashMap::new();
        // Sent or being recorded: not to be picked again until its record is written.
        let mut taken: HashSet<DeliveryId> = HashSet::new();
        // After a failed read or write nothing new is picked, but what is on its way is still recorded
        // (else it would be sent again next round); the run then ends with the first failure.
        let mut failure = None;
        loop {
            let free = IN_FLIGHT - sending.len();
            if failure.is_none() && free > 0 && recording.len() < RECORDING {
                match self.store.read_blocking(|tx| pick(tx, Timestamp::now(), &busy, &taken, free)) {
                    Ok(picked) => {
                        for (endpoint, id) in picked {
                            *busy.entry(endpoint).or_default() += 1;
                            taken.insert(id);
                            sending.push(async move { (endpoint, id, self.attempt(id).await) });
                        }
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if sending.is_empty() && recording.is_empty() {
                return failure.map_or(Ok(delivered), Err);
            }
            tokio::select! {
                Some((endpoint, id, attempted)) = sending.next() => {
                    if let Some(n) = busy.get_mut(&endpoint) {
                        *n = n.saturating_sub(1);
                    }
                    match attempted {
                        Ok(Some((attempt, outcome))) => {
                            recording.push(async move { (id, self.record(id, attempt, outcome).await) });
                        }
                        Ok(None) => {
                            taken.remove(&id);
                        }
                        Err(e) => {
                            taken.remove(&id);
                            failed(&mut failure, id, e);
                        }
                    }
                }
                Some((id, recorded)) = recording.next() => {
                    taken.remove(&id);
                    match recorded {
                        Ok(went) => delivered += usize::from(went),
                        Err(e) => failed(&mut failure, id, e),
                    }
                }
                () = tokio::time::sleep(REFILL) => {}
            }
        }
    }

    /// One attempt of one delivery: the attempt and what it came to, or none when the delivery ended
    /// without one (its endpoint was removed or disabled, or its event is gone).
    async fn attempt(&self, id: DeliveryId) -> Result<Option<(Attempt, Outcome)>> {
        let now = Timestamp::now();
        let ready = match self.store.read_blocking(|tx| ready(tx, id, now))? {
            Ready::Send(ready) => ready,
            Ready::Settled => return Ok(None),
            Ready::Abandon(why) => {
                self.store.write(move |tx| abandon(tx, id, why)).await?;
                return Ok(None);
            }
        };
        let started = Instant::now();
        let (outcome, status_code, error) = self.send(&ready).await;
        let attempt = Attempt {
            at: now,
            status_code,
            error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        Ok(Some((attempt, outcome)))
    }

    /// Records an attempt; whether it delivered.
    async fn record(&self, id: DeliveryId, attempt: Attempt, outcome: Outcome) -> Result<bool> {
        let delivered = matches!(outcome, Outcome::Delivered);
        let delays = Arc::clone(&self.config);
        self.store.write(move |tx| settle(tx, id, &attempt, &outcome, &delays.retry_delays.0)).await?;
        Ok(delivered)
    }

    async fn send(&self, ready: &Sendable) -> (Outcome, Option<u16>, Option<String>) {
        let failed = |why: String| (Outcome::Failed { retry_after: None }, None, Some(why));
        let url = match target::check_url(&ready.endpoint.url, self.config.allow_http) {
            Ok(url) => url,
            Err(why) => return failed(format!("the URL is not allowed: {why}")),
        };
        let target = match target::resolve(&url, self.config.allow_http).await {
            Ok(target) => target,
            Err(why) => return failed(why),
        };
        let id = ready.event.webhook_id();
        let timestamp = Timestamp::now().unix_secs();
        let response = self
            .client
            .post(target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature::header(&ready.keys, &id, timestamp, &ready.event.body))
            .body(ready.event.body.clone())
            .send()
            .await;
        match response {
            Err(e) if e.is_timeout() => failed(format!("no answer within {} s", TIMEOUT.as_secs())),
            Err(e) => failed(format!("could not be reached: {e}")),
            Ok(r) if r.status().is_success() => (Outcome::Delivered, Some(r.status().as_u16()), None),
            Ok(r) if r.status() == reqwest::StatusCode::GONE => (Outcome::Gone, Some(410), Some("410 Gone".into())),
            Ok(r) => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs.min(24 * 3600)));
                (Outcome::Failed { retry_after }, Some(r.status().as_u16()), Some(format!("answered {}", r.status())))
            }
        }
    }
}

/// The due-list key of a delivery attempted at `at`.
pub(crate) fn due_key(delivery: &Delivery, at: Timestamp) -> Vec<u8> {
    key(&[&delivery.endpoint_id.to_key(), &at.to_key(), &delivery.id.to_key()])
}

/// Up to `free` pending deliveries due at `now`, each endpoint's oldest first, none already `taken`, and
/// no endpoint past [`PER_ENDPOINT`] with those it has `busy`.
fn pick(
    tx: &impl ReadTx,
    now: Timestamp,
    busy: &HashMap<EndpointId, usize>,
    taken: &HashSet<DeliveryId>,
    free: usize,
) -> Result<Vec<(EndpointId, DeliveryId)>> {
    let mut endpoints = Vec::new();
    ENDPOINTS.scan_prefix(tx, &[], |_, e| {
        endpoints.push(e.id);
        Ok::<_, Error>(true)
    })?;
    let mut out = Vec::new();
    for endpoint in endpoints {
        let mut room = PER_ENDPOINT.saturating_sub(busy.get(&endpoint).copied().unwrap_or(0));
        DUE.visit_keys(tx, &endpoint.to_key(), |k| {
            if room == 0 || out.len() >= free || k.get(16..24).is_some_and(|at| at > now.to_key().as_slice()) {
                return Ok::<_, Error>(false);
            }
            if let Some(id) = DeliveryId::from_key(key_tail(k, 16)).filter(|id| !taken.contains(id)) {
                out.push((endpoint, id));
                room -= 1;
            }
            Ok(true)
        })?;
    }
    Ok(out)
}

/// A pending delivery with what sending it needs.
fn ready(tx: &impl ReadTx, id: DeliveryId, now: Timestamp) -> Result<Ready> {
    let Some(delivery) = DELIVERIES.get(tx, &id.to_key())? else { return Ok(Ready::Settled) };
    let Some(event) = EVENTS.get(tx, &delivery.event_id.to_key())? else {
        return Ok(Ready::Abandon("the event is no longer kept"));
    };
    let Some(endpoint) = ENDPOINTS.get(tx, &delivery.endpoint_id.to_key())?.filter(|e| e.enabled) else {
        return Ok(Ready::Abandon("the endpoint was removed or disabled"));
    };
    let keys = secrets::signing_keys(tx, endpoint.id, &endpoint.secrets, now)?;
    Ok(Ready::Send(Box::new(Sendable { event, endpoint, keys })))
}

/// Logs a delivery's failed read or write; the run ends with the first.
fn failed(first: &mut Option<Error>, id: DeliveryId, e: Error) {
    tracing::warn!(delivery = %id, error = %e, "webhook delivery: the store failed; tried again on a later round");
    first.get_or_insert(e);
}

/// Records an attempt and what follows it: done, the next attempt, or the end.
fn settle(tx: &WriteTx, id: DeliveryId, attempt: &Attempt, outcome: &Outcome, delays: &[Duration]) -> Result<()> {
    let Some(mut delivery) = DELIVERIES.get(tx, &id.to_key())? else { return Ok(()) };
    unschedule(tx, &delivery)?;
    delivery.attempts.push(attempt.clone());
    let failures = delivery.attempts.len();
    match outcome {
        Outcome::Delivered => delivery.status = DeliveryStatus::Succeeded,
        Outcome::Gone => {
            delivery.status = DeliveryStatus::Failed;
            if let Some(mut endpoint) = ENDPOINTS.get(tx, &delivery.endpoint_id.to_key())? {
                endpoint.enabled = false;
                endpoint.disabled_reason = Some("the endpoint answered 410 Gone".into());
                endpoint.updated_at = Timestamp::now();
                ENDPOINTS.insert(tx, &endpoint.id.to_key(), &endpoint)?;
                tracing::warn!(endpoint = %endpoint.id, "webhook endpoint answered 410 Gone and was disabled");
            }
        }
        Outcome::Failed { retry_after } => match delays.get(failures - 1) {
            Some(delay) => {
                let jitter = delay.mul_f64(rand::random::<f64>() * 0.1);
                let wait = (*delay + jitter).max(retry_after.unwrap_or_default());
                let next = Timestamp::from_micros(
                    attempt.at.micros().saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX)),
                );
                delivery.next_attempt_at = Some(next);
                DUE.put(tx, &due_key(&delivery, next), &[])?;
            }
            None => delivery.status = DeliveryStatus::Failed,
        },
    }
    DELIVERIES.insert(tx, &id.to_key(), &delivery)?;
    Ok(())
}

pub(crate) fn abandon(tx: &WriteTx, id: DeliveryId, why: &str) -> Result<()> {
    let Some(mut delivery) = DELIVERIES.get(tx, &id.to_key())? else { return Ok(()) };
    unschedule(tx, &delivery)?;
    delivery.status = DeliveryStatus::Failed;
    delivery.attempts.push(Attempt {
        at: Timestamp::now(),
        status_code: None,
        error: Some(why.into()),
        duration_ms: 0,
    });
    Ok(DELIVERIES.insert(tx, &id.to_key(), &delivery)?)
}

/// Takes a delivery off the due list.
pub(crate) fn unschedule(tx: &WriteTx, delivery: &Delivery) -> Result<()> {
    if let Some(at) = delivery.next_attempt_at {
        DUE.remove(tx, &due_key(delivery, at))?;
    }
    Ok(())
}

/// Puts a delivery back on the due list for an attempt now (a replay asked for by an admin).
pub(crate) fn replay(tx: &WriteTx, id: DeliveryId, now: Timestamp) -> Result<Delivery> {
    let mut delivery = DELIVERIES.get(tx, &id.to_key())?.ok_or_else(|| Error::not_found("delivery"))?;
    unschedule(tx, &delivery)?;
    delivery.status = DeliveryStatus::Pending;
    delivery.next_attempt_at = Some(now);
    DUE.put(tx, &due_key(&delivery, now), &[])?;
    DELIVERIES.insert(tx, &id.to_key(), &delivery)?;
    Ok(delivery)
}

/// Settled deliveries and their events are kept this long, for the delivery log and replays.
pub const KEEP_DAYS: i64 = 30;

/// Removes deliveries and events older than [`KEEP_DAYS`] (ids are time-ordered: the oldest come first),
/// at most `limit` of each; returns how many deliveries went.
pub(crate) fn prune(tx: &WriteTx, now: Timestamp, limit: usize) -> Result<usize> {
    let cutoff = now.plus_secs(-KEEP_DAYS * 86_400);
    let mut old = Vec::new();
    DELIVERIES.scan_prefix(tx, &[], |_, d| {
        if d.created_at >= cutoff {
            return Ok::<_, Error>(false);
        }
        old.push(d);
        Ok(old.len() < limit)
    })?;
    for delivery in &old {
        unschedule(tx, delivery)?;
        BY_ENDPOINT.remove(tx, &key(&[&delivery.endpoint_id.to_key(), &delivery.id.to_key()]))?;
        DELIVERIES.remove(tx, &delivery.id.to_key())?;
    }
    // An event goes with the last of its deliveries: none older than the oldest delivery kept (a limit
    // may have left some of an event's deliveries for the next prune).
    let mut oldest_kept = None;
    DELIVERIES.scan_prefix(tx, &[], |_, d| {
        oldest_kept = Some(d.created_at);
        Ok::<_, Error>(false)
    })?;
    let events_cutoff = oldest_kept.map_or(cutoff, |kept| kept.min(cutoff));
    let mut events = Vec::new();
    EVENTS.scan_prefix(tx, &[], |k, e| {
        if e.created_at >= events_cutoff {
            return Ok::<_, Error>(false);
        }
        events.push(k.to_vec());
        Ok(events.len() < limit)
    })?;
    for k in events {
        EVENTS.remove(tx, &k)?;
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use portal_core::{Module, Store};

    use super::*;
    use crate::model::{EndpointId, EventKind};

    /// A store with the webhook tables and `endpoints` endpoints listening to every event.
    fn store_with_endpoints(endpoints: usize) -> Store {
        let store = Store::in_memory().unwrap();
        store
            .write_blocking(move |tx| {
                portal_core::store::install_core(tx)?;
                crate::WebhooksModule::install(tx)?;
                let now = Timestamp::now();
                for n in 0..endpoints {
                    let endpoint = Endpoint {
                        id: EndpointId::generate(),
                        url: format!("https://hooks{n}.example.com/"),
                        description: String::new(),
                        events: Vec::new(),
                        enabled: true,
                        disabled_reason: None,
                        secrets: Vec::new(),
                        created_at: now,
                        updated_at: now,
                    };
                    ENDPOINTS.insert(tx, &endpoint.id.to_key(), &endpoint)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        store
    }

    fn emit_two(store: &Store) {
        store
            .write_blocking(|tx| {
                crate::emit(tx, EventKind::CustomerCreated, || serde_json::json!({"id": "c1"}))?;
                crate::emit(tx, EventKind::CustomerUpdated, || serde_json::json!({"id": "c1"}))
            })
            .unwrap();
    }

    /// Deliveries, due entries, events, and deliveries whose event is gone.
    fn count(store: &Store) -> (usize, usize, usize, usize) {
        store
            .read_blocking(|tx| {
                let (mut deliveries, mut due, mut events, mut orphans) = (0, 0, 0, 0);
                DELIVERIES.scan_prefix(tx, &[], |_, d| {
                    deliveries += 1;
                    orphans += usize::from(!EVENTS.contains(tx, &d.event_id.to_key())?);
                    Ok::<_, Error>(true)
                })?;
                EVENTS.scan_prefix(tx, &[], |_, _| {
                    events += 1;
                    Ok::<_, Error>(true)
                })?;
                DUE.visit_keys(tx, &[], |_| {
                    due += 1;
                    Ok::<_, Error>(true)
                })?;
                Ok::<_, Error>((deliveries, due, events, orphans))
            })
            .unwrap()
    }

    #[test]
    fn the_delivery_log_keeps_thirty_days() {
        let store = store_with_endpoints(1);
        emit_two(&store);
        assert_eq!(count(&store), (2, 2, 2, 0));
        let now = Timestamp::now();
        assert_eq!(store.write_blocking(move |tx| prune(tx, now, 100)).unwrap(), 0, "young deliveries stay");
        let later = now.plus_secs(KEEP_DAYS * 86_400 + 1);
        assert_eq!(store.write_blocking(move |tx| prune(tx, later, 1)).unwrap(), 1, "at most the limit");
        assert_eq!(store.write_blocking(move |tx| prune(tx, later, 100)).unwrap(), 1);
        assert_eq!(count(&store), (0, 0, 0, 0));
    }

    #[test]
    fn an_event_is_pruned_with_the_last_of_its_deliveries() {
        // Two endpoints: each event has two deliveries, so a limit of 3 leaves one of the second event's.
        let store = store_with_endpoints(2);
        emit_two(&store);
        assert_eq!(count(&store), (4, 4, 2, 0));
        let later = Timestamp::now().plus_secs(KEEP_DAYS * 86_400 + 1);
        assert_eq!(store.write_blocking(move |tx| prune(tx, later, 3)).unwrap(), 3);
        assert_eq!(count(&store), (1, 1, 1, 0), "the second event stays with its last delivery");
        assert_eq!(store.write_blocking(move |tx| prune(tx, later, 3)).unwrap(), 1);
        assert_eq!(count(&store), (0, 0, 0, 0));
    }

    #[tokio::test]
    async fn a_delivery_whose_event_is_gone_fails_without_stopping_the_worker() {
        let store = store_with_endpoints(1);
        store
            .write_blocking(|tx| crate::emit(tx, EventKind::CustomerCreated, || serde_json::json!({"id": "c1"})))
            .unwrap();
        store
            .write_blocking(|tx| {
                let mut events = Vec::new();
                EVENTS.scan_prefix(tx, &[], |k, _| {
                    events.push(k.to_vec());
                    Ok::<_, Error>(true)
                })?;
                for k in events {
                    EVENTS.remove(tx, &k)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        let worker = Worker::new(store.clone(), Arc::new(WebhooksConfig::default())).unwrap();
        assert_eq!(worker.run().await.unwrap(), 0);
        let deliveries = store
            .read_blocking(|tx| {
                let mut all = Vec::new();
                DELIVERIES.scan_prefix(tx, &[], |_, d| {
                    all.push(d);
                    Ok::<_, Error>(true)
                })?;
                Ok::<_, Error>(all)
            })
            .unwrap();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].status, DeliveryStatus::Failed);
        assert_eq!(deliveries[0].attempts.last().and_then(|a| a.error.as_deref()), Some("the event is no longer kept"));
        assert_eq!(count(&store).1, 0, "no longer due");
    }
}
