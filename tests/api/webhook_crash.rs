//! Webhooks survive load, failing receivers and a crash: the real `portal` binary emits 10,000
//! `customer.created` events while customers are being created, to a receiver that fails the first two
//! attempts of every event; it is killed with SIGKILL while delivering and restarted. Every acknowledged
//! customer's event arrives, each `webhook-id` stands for one event, and every request is signed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use reqwest::Method;
use serde_json::json;

use crate::crash::{start_with, Client};
use crate::outbound_webhooks::{Received, Receiver};

const EVENTS: usize = 10_000;

/// Creates customers `from..to` on `client`, 8 at a time; returns the ids the portal acknowledged.
async fn create_customers(client: &Arc<Client>, from: usize, to: usize) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    stream::iter(from..to)
        .for_each_concurrent(8, |n| {
            let (client, acknowledged) = (client.clone(), acknowledged.clone());
            async move {
                let body = json!({"name": format!("Customer {n}"), "company_name": format!("Company {n}"),
                    "billing_email": format!("ap{n}@example.com"),
                    "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
                if let Some(created) = client.send(Method::POST, "/customers", Some(body)).await {
                    acknowledged.lock().unwrap().push(created["id"].as_str().unwrap().to_string());
                }
            }
        })
        .await;
    Arc::try_unwrap(acknowledged).unwrap().into_inner().unwrap()
}

/// The customers whose event the receiver took (its third attempt or later was answered 200).
fn delivered(all: &[Received]) -> BTreeSet<String> {
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for r in all {
        *attempts.entry(r.id()).or_default() += 1;
    }
    let mut customers = BTreeSet::new();
    for r in all {
        if attempts[&r.id()] >= 3 {
            customers.insert(r.json()["data"]["id"].as_str().unwrap().to_string());
        }
    }
    customers
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
    let secret = endpoint["secret"].as_str().unwrap().to_string();

    // Half the customers, while the first deliveries fail and retry; then a kill in the middle of it.
    let mut acknowledged = create_customers(&client, 0, EVENTS / 2).await;
    while delivered(&receiver.all()).len() < EVENTS / 10 {
        assert!(started.elapsed() < Duration::from_secs(300), "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().await.unwrap(); // SIGKILL
    let at_kill = delivered(&receiver.all()).len();
    assert!(at_kill < EVENTS / 2, "the kill came after every delivery ({at_kill})");

    // The other half on the restarted portal, while it delivers what the kill left.
    let second = start_with(dir.path(), &env).await;
    let client = Arc::new(Client::connect(&second.base).await);
    acknowledged.extend(create_customers(&client, EVENTS / 2, EVENTS).await);
    assert_eq!(acknowledged.len(), EVENTS);
    let acknowledged: BTreeSet<String> = acknowledged.into_iter().collect();
    loop {
        let got = delivered(&receiver.all());
        if acknowledged.is_subset(&got) {
            break;
        }
        let missing = acknowledged.difference(&got).count();
        assert!(started.elapsed() < Duration::from_secs(600), "{missing} events not delivered in 600 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let all = receiver.all();
    let mut customer_of: BTreeMap<String, String> = BTreeMap::new();
    for r in &all {
        assert!(r.signed_by(&secret), "a request without a valid signature: {:?}", r.headers);
        let customer = r.json()["data"]["id"].as_str().unwrap().to_string();
        let known = customer_of.entry(r.id()).or_insert_with(|| customer.clone());
        assert_eq!(*known, customer, "one webhook-id, one event");
    }
    let events: BTreeSet<&String> = customer_of.values().collect();
    assert_eq!(customer_of.len(), events.len(), "one webhook-id per event");
    assert_eq!(events.len(), EVENTS, "no event for a customer the portal did not create");
    let extra = all.len() - 3 * EVENTS;
    println!(
        "{EVENTS} events: {} requests, {extra} beyond three attempts each (repeats after the kill), \
         {at_kill} delivered at the kill, {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
}
