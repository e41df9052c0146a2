//! Webhooks survive load, failing receivers and a crash: the real `portal` binary emits 10,000
//! `customer.created` events while customers are being created, to a receiver that fails the first two
//! attempts of every event; it is killed with SIGKILL while writing and delivering, and restarted. Every
//! stored customer's event arrives (those acknowledged, and those whose answer the kill cut off), each
//! `webhook-id` stands for one event, and every request is signed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use reqwest::Method;
use serde_json::json;

use crate::crash::{start_with, Client};
use crate::outbound_webhooks::Receiver;

const EVENTS: usize = 10_000;

/// Creates customers `from..to` on `client`, 8 at a time; returns the ids the portal acknowledged (also
/// counted in `progress` as they come).
async fn create_customers(client: &Arc<Client>, from: usize, to: usize, progress: &Arc<AtomicUsize>) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    stream::iter(from..to)
        .for_each_concurrent(8, |n| {
            let (client, acknowledged, progress) = (client.clone(), acknowledged.clone(), progress.clone());
            async move {
                let body = json!({"name": format!("Customer {n}"), "company_name": format!("Company {n}"),
                    "billing_email": format!("ap{n}@example.com"),
                    "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
                if let Some(created) = client.send(Method::POST, "/customers", Some(body)).await {
                    acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_string());
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    Arc::try_unwrap(acknowledged).unwrap().into_inner().unwrap()
}

/// The customers whose event the receiver took (its third attempt or later was answered 200).
fn delivered(receiver: &Receiver) -> BTreeSet<String> {
    receiver.with(|state| {
        state.attempts.iter().filter(|(_, n)| **n >= 3).map(|(id, _)| state.data_ids[id].clone()).collect()
    })
}

#[tokio::test]
async fn ten_thousand_events_reach_a_failing_receiver_through_a_kill() {
    let receiver = Receiver::start(Arc::new(|_, n| if n <= 2 { (503, None) } else { (200, None) })).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PORTAL_WEBHOOKS_ALLOW_HTTP", "loopback".to_string()),
        ("PORTAL_WEBHOOKS_RETRY_DELAYS", "20ms,50ms,100ms,200ms,500ms,1s,2s,5s".to_string()),
    ];
    let started = Instant::now();
    let mut first = start_with(dir.path(), &env).await;
    let client = Arc::new(Client::connect(&first.base).await);
    let hook = json!({"url": receiver.url, "events": ["customer.created"]});
    let endpoint = client.send(Method::POST, "/webhooks/endpoints", Some(hook)).await.unwrap();
    receiver.trust(endpoint["secret"].as_str().unwrap());

    // Customers are created while the first deliveries fail and retry; a kill comes in the middle of both.
    let progress = Arc::new(AtomicUsize::new(0));
    let writers = tokio::spawn({
        let (client, progress) = (client.clone(), progress.clone());
        async move { create_customers(&client, 0, EVENTS, &progress).await }
    });
    // Once deliveries are under way and before the writers are half done (whichever the machine's load
    // lets come first).
    loop {
        let (written, delivered) = (progress.load(Ordering::Relaxed), delivered(&receiver).len());
        if (written >= EVENTS / 5 && delivered >= EVENTS / 20) || written >= EVENTS / 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "only {written} written in 300 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().await.unwrap(); // SIGKILL
    let at_kill = delivered(&receiver).len();
    let mut acknowledged = writers.await.unwrap();
    let first_part = acknowledged.len();
    assert!(first_part < EVENTS, "the kill came after every write");

    // The rest on the restarted portal, while it delivers what the kill left.
    let second = start_with(dir.path(), &env).await;
    let client = Arc::new(Client::connect(&second.base).await);
    acknowledged.extend(create_customers(&client, EVENTS, EVENTS + (EVENTS - first_part), &progress).await);
    assert_eq!(acknowledged.len(), EVENTS);
    // Writes the kill cut short may have committed without an answer: their events go out too.
    let stored: BTreeSet<String> =
        client.all("/customers").await.iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    assert!(acknowledged.iter().all(|id| stored.contains(id)), "an acknowledged customer is missing");
    loop {
        let got = delivered(&receiver);
        if stored.is_subset(&got) {
            break;
        }
        let missing = stored.difference(&got).count();
        assert!(started.elapsed() < Duration::from_secs(600), "{missing} events not delivered in 600 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let all = receiver.all();
    let mut customer_of: BTreeMap<String, String> = BTreeMap::new();
    for r in &all {
        assert!(r.verified, "a request without a valid signature: {:?}", r.headers);
        let customer = r.json()["data"]["id"].as_str().unwrap().to_string();
        let known = customer_of.entry(r.id()).or_insert_with(|| customer.clone());
        assert_eq!(*known, customer, "one webhook-id, one event");
    }
    let events: BTreeSet<String> = customer_of.values().cloned().collect();
    assert_eq!(customer_of.len(), events.len(), "one webhook-id per event");
    assert_eq!(events, stored, "an event for every customer created, and for no other");
    let extra = all.len() - 3 * events.len();
    println!(
        "{EVENTS} events: {} requests, {extra} beyond three attempts each (repeats after the kill), \
         {at_kill} delivered and {first_part} customers acknowledged at the kill, {} customers stored, all \
         delivered after {:.1} s",
        all.len(),
        stored.len(),
        started.elapsed().as_secs_f64()
    );
}
