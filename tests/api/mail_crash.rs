//! Invoice mail survives a crash: the real `portal` binary issues 1,000 invoices in one run of the recurring
//! job and mails them through a real SMTP server; it is killed with SIGKILL while sending and restarted.
//! Every invoice's mail arrives under its one Message-ID, none is missing, and only the few whose sending the
//! kill cut short arrive twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use reqwest::Method;
use serde_json::json;

use crate::crash::{start_with, Client};

const INVOICES: usize = 1_000;

#[tokio::test]
async fn a_kill_while_mailing_loses_no_invoice_mail_and_repeats_only_what_it_cut_short() {
    let smtp = portal_testkit::SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [("PORTAL_SMTP_URL", smtp.url())];

    // 1,000 customers billed monthly; a first portal only records them (no invoices yet: the recurring job
    // is what issues them, in one run at the next start).
    let first = start_with(dir.path(), &[]).await;
    let client = std::sync::Arc::new(Client::connect(&first.base).await);
    stream::iter(0..INVOICES)
        .for_each_concurrent(8, |n| {
            let client = client.clone();
            async move {
                let body = json!({"name": format!("Customer {n}"), "company_name": format!("Company {n}"),
                    "billing_email": format!("ap{n}@example.com"), "status": "active",
                    "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
                    "billing_settings": {"monthly_fee": 100, "currency": "EUR", "billing_day": 1,
                        "billing_frequency": "monthly"}});
                client.send(Method::POST, "/customers", Some(body)).await.expect("customer created");
            }
        })
        .await;
    let mut first = first;
    first.child.kill().await.unwrap();

    // The second start bills every customer's current period: 1,000 invoices, 1,000 mails to send.
    let mut second = start_with(dir.path(), &env).await;
    let started = Instant::now();
    while distinct_ids(&smtp) < INVOICES / 3 {
        assert!(started.elapsed() < Duration::from_secs(240), "only {} mails in 240 s", distinct_ids(&smtp));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    second.child.kill().await.unwrap(); // SIGKILL, mid-run
    let at_kill = smtp.all_mail().len();
    assert!(at_kill < INVOICES, "the kill came after the last mail ({at_kill})");

    let third = start_with(dir.path(), &env).await;
    while distinct_ids(&smtp) < INVOICES {
        assert!(started.elapsed() < Duration::from_secs(600), "only {} of {INVOICES} mails", distinct_ids(&smtp));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // anything more would be a duplicate too

    let mails = smtp.all_mail();
    let mut by_id: BTreeMap<String, Vec<&portal_testkit::ReceivedMail>> = BTreeMap::new();
    for mail in &mails {
        by_id.entry(mail.message_id.clone()).or_default().push(mail);
    }
    assert_eq!(by_id.len(), INVOICES, "distinct Message-IDs");
    // One invoice per Message-ID, and every invoice of the run.
    let numbers: BTreeSet<&str> =
        by_id.values().map(|copies| copies[0].subject.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(numbers.len(), INVOICES);
    for copies in by_id.values() {
        assert!(copies.iter().all(|m| m.subject == copies[0].subject && m.to == copies[0].to), "{copies:?}");
    }
    let twice: Vec<_> = by_id.iter().filter(|(_, copies)| copies.len() > 1).map(|(id, _)| id.clone()).collect();
    println!("{INVOICES} invoices: {} mails received, {} twice, killed after {at_kill}", mails.len(), twice.len());
    assert!(by_id.values().all(|copies| copies.len() <= 2), "a mail came three times");
    assert!(twice.len() <= 8, "more re-sent than the kill can have cut short: {twice:?}");

    // The store agrees: the mails received twice and a few others are recorded as sent once, under the
    // Message-ID they arrived with.
    let client = Client::connect(&third.base).await;
    let customers: BTreeMap<String, String> = client
        .all("/customers")
        .await
        .iter()
        .map(|c| (c["billing_email"].as_str().unwrap().to_string(), c["id"].as_str().unwrap().to_string()))
        .collect();
    let checked: Vec<&String> = twice.iter().chain(by_id.keys().take(3)).collect();
    for message_id in checked {
        let mail = by_id[message_id][0];
        let customer = &customers[&mail.to];
        let invoices = client.get(&format!("/billing/invoices/customer/{customer}")).await;
        let invoice = invoices[0]["id"].as_str().unwrap();
        let records = client.get(&format!("/billing/invoices/{invoice}/mails")).await;
        assert_eq!(records.as_array().unwrap().len(), 1, "{records}");
        assert!(records[0]["sent_at"].is_string(), "{records}");
        assert_eq!(*message_id, format!("<{}@localhost>", records[0]["id"].as_str().unwrap()));
    }
}

fn distinct_ids(smtp: &portal_testkit::SmtpServer) -> usize {
    smtp.all_mail().iter().map(|m| m.message_id.as_str()).collect::<BTreeSet<_>>().len()
}
