//! Reconciliation with Stripe (localstripe) when the webhook never came: a payment made at Stripe is found
//! among Stripe's events and applied once; an attempt whose answer was lost is settled from its
//! PaymentIntent, or freed when Stripe never made it.

use portal_billing::model::{Collection, InvoiceId};
use portal_billing::reconcile;
use portal_core::{Table, Timestamp};
use portal_testkit::LocalStripe;
use reqwest::Method;
use serde_json::json;

use crate::billing::{cents, customer, recurring_invoice};
use crate::helpers::TestApp;
use crate::payments::{app_with, user_with_default_card, StripeSide, GOOD_CARD, STRIPE_KEY};

const COLLECTIONS: Table<Collection> = Table::new("billing.collections");

fn client(ls: &LocalStripe) -> portal_stripe::Stripe {
    let config = portal_stripe::StripeConfig {
        stripe_secret_key: Some(portal_core::config::Secret::new(STRIPE_KEY)),
        stripe_api_base: ls.url(),
        ..portal_stripe::StripeConfig::default()
    };
    portal_stripe::Stripe::from_config(&config).unwrap().unwrap()
}

/// Marks an attempt to charge the invoice as with Stripe since `since`, as a request cut short leaves it.
async fn in_flight(app: &TestApp, id: &str, since: Timestamp) {
    let key = id.parse::<InvoiceId>().unwrap().to_key();
    app.store
        .write(move |tx| {
            let state = Collection { in_flight_since: Some(since), ..Collection::default() };
            Ok::<_, portal_core::Error>(COLLECTIONS.insert(tx, &key, &state)?)
        })
        .await
        .unwrap();
}

/// A PaymentIntent of the invoice's total, confirmed at Stripe without the portal (as Stripe.js or the
/// dashboard would leave it).
async fn paid_at_stripe(
    stripe: &StripeSide,
    customer: &str,
    card: &str,
    invoice: &serde_json::Value,
) -> serde_json::Value {
    let amount = cents(&invoice["total_amount"]).to_string();
    let form = [
        ("amount", amount.as_str()),
        ("currency", "usd"),
        ("customer", customer),
        ("payment_method", card),
        ("confirm", "true"),
        ("metadata[invoice_id]", invoice["id"].as_str().unwrap()),
    ];
    stripe.post("payment_intents", &form).await
}

#[tokio::test]
async fn payments_stripe_made_while_the_webhook_was_lost_are_applied_once() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Quiet Hook Co", json!({"monthly_fee": 75})).await;
    let (_, card) = user_with_default_card(&app, &stripe, &admin, &cid, "pay@quiet.example", GOOD_CARD).await;
    let record = app.call(Method::GET, &format!("/customers/{cid}"), &admin, None).await.json();
    let stripe_customer = record["stripe_customer_id"].as_str().unwrap().to_string();
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-10-01").await;
    let id = invoice["id"].as_str().unwrap().to_string();

    // Paid at Stripe (say, 3-D Secure passed after the customer closed the page); the webhook never came.
    let intent = paid_at_stripe(&stripe, &stripe_customer, &card, &invoice).await;
    assert_eq!(intent["status"], "succeeded");
    let path = format!("/billing/invoices/{id}");
    assert_eq!(app.call(Method::GET, &path, &admin, None).await.json()["status"], "pending");

    let stripe_client = client(&ls);
    let done = reconcile::run(&app.store, &stripe_client, Timestamp::now()).await.unwrap();
    assert!(done.events_applied >= 1, "{done:?}");
    let paid = app.call(Method::GET, &path, &admin, None).await.json();
    assert_eq!(
        (paid["status"].as_str(), paid["stripe_payment_intent_id"].as_str()),
        (Some("paid"), intent["id"].as_str())
    );
    let again = reconcile::run(&app.store, &stripe_client, Timestamp::now()).await.unwrap();
    assert_eq!(again.events_applied, 0, "each event is applied once");

    // An attempt whose answer was lost after Stripe charged: settled from its PaymentIntent.
    let second = recurring_invoice(&app, &admin, &cid, "2026-11-01").await;
    let second_id = second["id"].as_str().unwrap().to_string();
    let started = Timestamp::now();
    in_flight(&app, &second_id, started).await;
    let r = app.call(Method::POST, "/billing/pay-invoice", &admin, Some(json!({"invoice_id": second_id}))).await;
    r.assert_error(409, "conflict");
    paid_at_stripe(&stripe, &stripe_customer, &card, &second).await;
    let later = started.plus_secs(61);
    reconcile::run(&app.store, &stripe_client, later).await.unwrap();
    let settled = app.call(Method::GET, &format!("/billing/invoices/{second_id}"), &admin, None).await.json();
    assert_eq!(settled["status"], "paid");
    assert_eq!(stripe.intents_of(&second_id).await.len(), 1, "charged once");

    // An attempt Stripe never made: freed, and the next payment goes through.
    let third = recurring_invoice(&app, &admin, &cid, "2026-12-01").await;
    let third_id = third["id"].as_str().unwrap().to_string();
    let started = Timestamp::now();
    in_flight(&app, &third_id, started).await;
    let done = reconcile::run(&app.store, &stripe_client, started.plus_secs(61)).await.unwrap();
    assert_eq!(done.payments_settled, 0, "{done:?}");
    let r = app.call(Method::POST, "/billing/pay-invoice", &admin, Some(json!({"invoice_id": third_id}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(stripe.intents_of(&third_id).await.len(), 1);
}
