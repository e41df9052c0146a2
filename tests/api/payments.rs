//! Stripe payments against localstripe (a fake of Stripe's HTTP API on loopback): saving a card through a
//! SetupIntent, listing cards, paying invoices exactly once, declines, refunds, auto-charge with retries,
//! and the 503 when payments are not configured.

use std::time::Duration;

use portal_core::config::Secret;
use portal_testkit::LocalStripe;
use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{cents, customer, recurring_invoice, user_token};
use crate::helpers::TestApp;

pub(crate) const STRIPE_KEY: &str = "sk_test_portal_payments";
const WEBHOOK_SECRET: &str = "whsec_portal_payments";
/// localstripe: a card that attaches to a customer and is then declined when charged.
pub(crate) const DECLINING_CARD: &str = "4000000000000341";
pub(crate) const GOOD_CARD: &str = "4242424242424242";

/// The test's own client of localstripe, for what a browser (Stripe.js) or Stripe's dashboard would do.
pub(crate) struct StripeSide {
    base: String,
    http: reqwest::Client,
}

impl StripeSide {
    pub(crate) fn new(stripe: &LocalStripe) -> Self {
        Self { base: stripe.url(), http: reqwest::Client::new() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Value {
        let r = req.basic_auth(STRIPE_KEY, Some("")).send().await.expect("localstripe answers");
        let status = r.status();
        let body: Value = r.json().await.expect("localstripe JSON");
        assert!(status.is_success(), "localstripe refused: {status} {body}");
        body
    }

    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        self.send(self.http.post(format!("{}v1/{path}", self.base)).form(form)).await
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.send(self.http.get(format!("{}v1/{path}", self.base))).await
    }

    /// A card confirmed on the setup intent and attached to the customer, as Stripe.js leaves it.
    pub(crate) async fn save_card(&self, setup_intent: &str, stripe_customer: &str, number: &str) -> String {
        let pm = self
            .post(
                "payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2031"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let pm = pm["id"].as_str().unwrap().to_string();
        self.post(&format!("setup_intents/{setup_intent}/confirm"), &[("payment_method", &pm)]).await;
        // localstripe's confirmation does not attach the card as Stripe's does.
        self.post(&format!("payment_methods/{pm}/attach"), &[("customer", stripe_customer)]).await;
        pm
    }

    /// The PaymentIntents localstripe holds for an invoice.
    pub(crate) async fn intents_of(&self, invoice: &str) -> Vec<Value> {
        let all = self.get("payment_intents?limit=100").await;
        all["data"].as_array().unwrap().iter().filter(|pi| pi["metadata"]["invoice_id"] == invoice).cloned().collect()
    }

    /// Makes localstripe deliver its events to the portal's webhook, signed with the portal's secret.
    async fn send_webhooks_to(&self, app: &TestApp) {
        let url = app.url("/billing/webhooks/stripe");
        let r = self
            .http
            .post(format!("{}_config/webhooks/portal", self.base))
            .form(&[("url", url.as_str()), ("secret", WEBHOOK_SECRET)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

pub(crate) async fn app_with(stripe: &LocalStripe) -> TestApp {
    let base = stripe.url();
    TestApp::spawn_with(move |c| {
        c.stripe.stripe_secret_key = Some(Secret::new(STRIPE_KEY));
        c.stripe.stripe_webhook_secret = Some(Secret::new(WEBHOOK_SECRET));
        c.stripe.stripe_api_base = base;
    })
    .await
}

/// An issued invoice of `customer` (its January 2026 period).
async fn invoice(app: &TestApp, admin: &str, customer: &str) -> Value {
    recurring_invoice(app, admin, customer, "2026-01-01").await
}

/// Saves a card for the caller's customer through the portal's setup intent; returns the card id.
async fn save_card(app: &TestApp, stripe: &StripeSide, token: &str, customer: &str, number: &str) -> String {
    let r = app.call(Method::POST, "/billing/payment-methods/setup", token, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let setup = r.json();
    assert_eq!(setup["customer_id"], customer);
    assert!(setup["client_secret"].as_str().is_some_and(|s| s.starts_with("seti_")), "{setup}");
    let admin = app.admin_token().await;
    let record = app.call(Method::GET, &format!("/customers/{customer}"), &admin, None).await.json();
    let stripe_customer = record["stripe_customer_id"].as_str().expect("Stripe customer created on first use");
    stripe.save_card(setup["setup_intent_id"].as_str().unwrap(), stripe_customer, number).await
}

/// A user of `customer` whose card `number` is saved and, as Stripe then reports, the default; returns the
/// user's token and the card.
pub(crate) async fn user_with_default_card(
    app: &TestApp,
    stripe: &StripeSide,
    admin: &str,
    customer: &str,
    email: &str,
    number: &str,
) -> (String, String) {
    let user = user_token(app, admin, customer, email).await;
    let card = save_card(app, stripe, &user, customer, number).await;
    setup_succeeded(app, admin, customer, &card).await;
    (user, card)
}

/// What Stripe sends when a setup intent succeeds, signed like Stripe signs.
async fn setup_succeeded(app: &TestApp, admin: &str, customer: &str, card: &str) {
    let record = app.call(Method::GET, &format!("/customers/{customer}"), admin, None).await.json();
    let event = json!({"id": format!("evt_setup_{card}"), "type": "setup_intent.succeeded",
        "data": {"object": {"id": "seti_x", "customer": record["stripe_customer_id"], "payment_method": card}}});
    let r = deliver(app, &event).await;
    assert_eq!(r["outcome"], "applied", "{r}");
}

pub(crate) async fn deliver(app: &TestApp, event: &Value) -> Value {
    let body = event.to_string();
    let t = chrono::Utc::now().timestamp();
    let sig = hex(&portal_stripe::webhook::sign(WEBHOOK_SECRET, t, body.as_bytes()));
    let req = app
        .request(Method::POST, "/billing/webhooks/stripe")
        .header("Stripe-Signature", format!("t={t},v1={sig}"))
        .header("Content-Type", "application/json")
        .body(body);
    let r = app.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// The ids of the Stripe events the portal has applied (its `billing.stripe_events` table).
async fn received_events(app: &TestApp) -> Vec<String> {
    app.store
        .read(|tx| {
            let rows = crate::helpers::table_rows(tx, "billing.stripe_events")?;
            Ok(rows.into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect())
        })
        .await
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn get_invoice(app: &TestApp, token: &str, id: &str) -> Value {
    app.call(Method::GET, &format!("/billing/invoices/{id}"), token, None).await.json()
}

pub(crate) fn usd_stats(stats: &Value) -> Value {
    stats["currencies"].as_array().unwrap().iter().find(|c| c["currency"] == "USD").cloned().unwrap()
}

#[tokio::test]
async fn save_a_card_pay_an_invoice_and_refund_it() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    stripe.send_webhooks_to(&app).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Pay Co", json!({"monthly_fee": 1234.56, "tax_rate": 10})).await;
    let user = user_token(&app, &admin, &cid, "pay@pay.example.com").await;

    let none = app.call(Method::GET, &format!("/billing/payment-methods/customer/{cid}"), &user, None).await;
    assert_eq!(none.json(), json!([]), "no card before the first setup");
    let card = save_card(&app, &stripe, &user, &cid, GOOD_CARD).await;
    setup_succeeded(&app, &admin, &cid, &card).await;
    let cards = app.call(Method::GET, &format!("/billing/payment-methods/customer/{cid}"), &user, None).await.json();
    assert_eq!(cards.as_array().unwrap().len(), 1, "{cards}");
    assert_eq!(cards[0]["id"], card.as_str());
    assert_eq!(cards[0]["last4"], "4242");
    assert_eq!(cards[0]["brand"], "visa");
    assert_eq!(cards[0]["exp_year"], 2031);
    assert_eq!(cards[0]["is_default"], true);
    let billing = app.call(Method::GET, &format!("/customers/{cid}/billing"), &admin, None).await.json();
    assert_eq!(billing["stripe_payment_method_id"], card.as_str());

    let inv = invoice(&app, &admin, &cid).await;
    let id = inv["id"].as_str().unwrap();
    assert_eq!(inv["status"], "pending");
    let r = app
        .send(
            app.request(Method::POST, "/billing/pay-invoice")
                .bearer_auth(&user)
                .header("Idempotency-Key", "pay-once-1")
                .json(&json!({"invoice_id": id})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let paid = r.json();
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["invoice"]["status"], "paid");
    assert_eq!(paid["invoice"]["payment_method"], "stripe");
    let pi = paid["payment_intent_id"].as_str().unwrap().to_string();
    assert_eq!(paid["invoice"]["stripe_payment_intent_id"], pi.as_str());
    assert!(paid["invoice"]["paid_date"].is_string());

    // The charge at Stripe: the invoice's total in minor units, off-session on the saved card.
    let intents = stripe.intents_of(id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["id"], pi.as_str());
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["amount"].as_i64().unwrap(), cents(&inv["total_amount"]));
    assert_eq!(intents[0]["amount"], 135_802, "1,234.56 + 10% tax in cents");
    assert_eq!(intents[0]["currency"], "usd");
    assert_eq!(intents[0]["payment_method"], card.as_str());

    // The same key replays; a new attempt is refused; localstripe's own signed webhook changes nothing more.
    let again = app
        .send(
            app.request(Method::POST, "/billing/pay-invoice")
                .bearer_auth(&user)
                .header("Idempotency-Key", "pay-once-1")
                .json(&json!({"invoice_id": id})),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["payment_intent_id"], pi.as_str());
    let twice = app.call(Method::POST, "/billing/pay-invoice", &user, Some(json!({"invoice_id": id}))).await;
    twice.assert_error(409, "conflict");
    // localstripe delivers its events a second after they happen, signed with the webhook secret.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !received_events(&app).await.iter().any(|e| !e.starts_with("evt_setup_")) {
        assert!(std::time::Instant::now() < deadline, "localstripe's signed events were not accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stripe.intents_of(id).await.len(), 1);
    assert_eq!(get_invoice(&app, &user, id).await["status"], "paid");
    let stats = usd_stats(&app.call(Method::GET, "/billing/stats", &admin, None).await.json());
    assert_eq!(cents(&stats["revenue_all_time"]), 135_802);

    // A partial refund in Stripe's dashboard, then its event (twice, and an older total late).
    stripe.post("refunds", &[("payment_intent", &pi), ("amount", "2000")]).await;
    let refunded = |evt: &str, total: i64| {
        json!({"id": evt, "type": "charge.refunded", "data": {"object": {"id": "ch_1", "object": "charge",
            "payment_intent": pi, "amount": 135_802, "amount_refunded": total, "refunded": false}}})
    };
    assert_eq!(deliver(&app, &refunded("evt_refund_1", 2000)).await["outcome"], "applied");
    assert_eq!(deliver(&app, &refunded("evt_refund_1", 2000)).await["outcome"], "duplicate");
    assert_eq!(deliver(&app, &refunded("evt_refund_0", 500)).await["outcome"], "applied");
    let after = get_invoice(&app, &user, id).await;
    assert_eq!(after["status"], "paid", "a refunded invoice stays paid");
    assert_eq!(cents(&after["refunded_amount"]), 2000);
    assert!(after["refunded_at"].is_string());
    // A refund the portal did not start gets its credit note too, once.
    let notes = app.call(Method::GET, &format!("/billing/credit-notes/customer/{cid}"), &user, None).await.json();
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!((notes[0]["origin"].as_str(), notes[0]["amount"].as_f64()), (Some("stripe"), Some(20.0)));
    assert_eq!(after["credit_notes"][0]["credit_note_number"], notes[0]["credit_note_number"]);
    let stats = usd_stats(&app.call(Method::GET, "/billing/stats", &admin, None).await.json());
    assert_eq!(cents(&stats["revenue_all_time"]), 133_802);
    assert_eq!(cents(&stats["refunded_amount"]), 2000);
    assert_eq!(cents(&stats["revenue_this_month"]), 133_802);
    let overview = app.call(Method::GET, "/billing/my-billing", &user, None).await.json();
    assert_eq!(cents(&overview["paid_to_date"]), 133_802);

    // The customer got a receipt for the card payment and one notice of the refund, however often the
    // refund's events came.
    let receipt = app.wait_for_outbox_mail("ap@example.com", "Receipt for invoice").await;
    assert!(receipt.contains("we received your payment of $1,358.02"), "{receipt}");
    let refund = app.wait_for_outbox_mail("ap@example.com", "Refund for invoice").await;
    assert!(refund.contains("We refunded $20.00 of invoice"), "{refund}");
    let r = app.call(Method::GET, &format!("/billing/invoices/{id}/mails"), &admin, None).await;
    let kinds: Vec<String> =
        r.json().as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, ["issued", "receipt", "refund"]);
}

#[tokio::test]
async fn a_declined_card_leaves_the_invoice_unpaid_and_another_card_pays_it() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Decline Co", json!({"monthly_fee": 50})).await;
    let (user, _) =
        user_with_default_card(&app, &stripe, &admin, &cid, "decline@decline.example.com", DECLINING_CARD).await;
    let inv = invoice(&app, &admin, &cid).await;
    let id = inv["id"].as_str().unwrap();

    let r = app.call(Method::POST, "/billing/pay-invoice", &user, Some(json!({"invoice_id": id}))).await;
    let error = r.assert_error(402, "payment_failed");
    assert_eq!(error["details"]["code"], "card_declined", "{error}");
    assert_eq!(error["details"]["invoice_id"], id);
    let still = get_invoice(&app, &user, id).await;
    assert_eq!(still["status"], "pending");
    assert!(still.get("paid_date").is_none() && still.get("stripe_payment_intent_id").is_none(), "{still}");

    // Another customer's card is refused before Stripe is asked to charge it.
    let other = customer(&app, &admin, "Other Co", json!({"monthly_fee": 5})).await;
    let other_user = user_token(&app, &admin, &other, "other@other.example.com").await;
    let foreign = save_card(&app, &stripe, &other_user, &other, GOOD_CARD).await;
    let r = app
        .call(
            Method::POST,
            "/billing/pay-invoice",
            &user,
            Some(json!({"invoice_id": id, "payment_method_id": foreign})),
        )
        .await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["payment_method_id"].is_string(), "{error}");

    // A second card of its own, named explicitly, pays (a new attempt, so a new PaymentIntent).
    let good = save_card(&app, &stripe, &user, &cid, GOOD_CARD).await;
    let r = app
        .call(Method::POST, "/billing/pay-invoice", &user, Some(json!({"invoice_id": id, "payment_method_id": good})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["invoice"]["status"], "paid");
    let intents = stripe.intents_of(id).await;
    assert_eq!(intents.len(), 2, "one declined and one paid attempt: {intents:?}");
    assert_eq!(intents.iter().filter(|pi| pi["status"] == "succeeded").count(), 1);
}

#[tokio::test]
async fn twenty_concurrent_payments_of_one_invoice_charge_once() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Race Co", json!({"monthly_fee": 99.99})).await;
    let (user, _) = user_with_default_card(&app, &stripe, &admin, &cid, "race@race.example.com", GOOD_CARD).await;
    let inv = invoice(&app, &admin, &cid).await;
    let id = inv["id"].as_str().unwrap().to_string();

    let calls = (0..20).map(|_| {
        let (app, user, id) = (&app, &user, &id);
        async move { app.call(Method::POST, "/billing/pay-invoice", user, Some(json!({"invoice_id": id}))).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    for r in replies.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "conflict");
    }
    assert_eq!(ok, 1, "exactly one payment succeeds");
    let intents = stripe.intents_of(&id).await;
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:?}");
    let paid = get_invoice(&app, &user, &id).await;
    assert_eq!(paid["status"], "paid");
    let stats = usd_stats(&app.call(Method::GET, "/billing/stats", &admin, None).await.json());
    assert_eq!(stats["outstanding_count"], 0);
    assert_eq!(cents(&stats["revenue_all_time"]), 9999, "counted once");
}

#[tokio::test]
async fn auto_charge_retries_on_days_1_3_7_then_marks_overdue() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let declining = customer(&app, &admin, "Auto Decline", json!({"monthly_fee": 10, "auto_charge": true})).await;
    let paying = customer(&app, &admin, "Auto Pay", json!({"monthly_fee": 20, "auto_charge": true})).await;
    let manual = customer(&app, &admin, "Manual", json!({"monthly_fee": 30})).await;
    for (cid, number, email) in [
        (&declining, DECLINING_CARD, "d@auto.example.com"),
        (&paying, GOOD_CARD, "p@auto.example.com"),
        (&manual, GOOD_CARD, "m@auto.example.com"),
    ] {
        user_with_default_card(&app, &stripe, &admin, cid, email, number).await;
    }
    let bad = invoice(&app, &admin, &declining).await["id"].as_str().unwrap().to_string();
    let good = invoice(&app, &admin, &paying).await["id"].as_str().unwrap().to_string();
    let untouched = invoice(&app, &admin, &manual).await["id"].as_str().unwrap().to_string();

    let config = portal_stripe::StripeConfig {
        stripe_secret_key: Some(Secret::new(STRIPE_KEY)),
        stripe_api_base: ls.url(),
        ..portal_stripe::StripeConfig::default()
    };
    let client = portal_stripe::Stripe::from_config(&config).unwrap().unwrap();
    let day = 86_400_000_000_i64;
    let start = portal_core::Timestamp::now();
    let at = |days: i64| portal_core::Timestamp::from_micros(start.micros() + days * day + 1);
    let run = |days: i64| portal_billing::run_auto_charge(&app.store, &client, at(days));

    let first = run(0).await.unwrap();
    assert_eq!((first.paid, first.declined, first.failed), (1, 1, 0), "{first:?}");
    assert_eq!(get_invoice(&app, &admin, &good).await["status"], "paid");
    assert_eq!(get_invoice(&app, &admin, &untouched).await["status"], "pending", "auto_charge is off for it");
    assert_eq!(get_invoice(&app, &admin, &bad).await["status"], "pending");
    // Nothing is retried before its day; each retry day charges once.
    for (days, declined) in [(0, 0), (1, 1), (2, 0), (3, 1), (6, 0)] {
        let r = run(days).await.unwrap();
        assert_eq!((r.paid, r.declined), (0, declined), "day {days}: {r:?}");
        assert_eq!(get_invoice(&app, &admin, &bad).await["status"], "pending", "day {days}");
    }
    let last = run(7).await.unwrap();
    assert_eq!(last.declined, 1);
    assert_eq!(get_invoice(&app, &admin, &bad).await["status"], "overdue", "retries used up");
    assert_eq!(run(30).await.unwrap(), portal_billing::AutoChargeRun::default(), "no charge after the last retry");
    assert_eq!(stripe.intents_of(&bad).await.len(), 4, "first charge and three retries");
    assert_eq!(stripe.intents_of(&good).await.len(), 1);
    assert!(stripe.intents_of(&untouched).await.is_empty());
}

#[tokio::test]
async fn payment_endpoints_check_access_and_need_stripe() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let a = customer(&app, &admin, "A Co", json!({"monthly_fee": 10})).await;
    let b = customer(&app, &admin, "B Co", json!({"monthly_fee": 10})).await;
    let a_user = user_token(&app, &admin, &a, "a@a.example.com").await;
    let b_user = user_token(&app, &admin, &b, "b@b.example.com").await;
    save_card(&app, &stripe, &a_user, &a, GOOD_CARD).await;
    let a_invoice = invoice(&app, &admin, &a).await["id"].as_str().unwrap().to_string();

    let pay = json!({"invoice_id": a_invoice});
    // Without credentials: 401 on all three.
    for (method, path) in [
        (Method::POST, "/billing/payment-methods/setup".to_string()),
        (Method::GET, format!("/billing/payment-methods/customer/{a}")),
        (Method::POST, "/billing/pay-invoice".to_string()),
    ] {
        app.send(app.request(method, &path).json(&pay)).await.assert_error(401, "unauthorized");
    }
    app.call(Method::POST, "/billing/pay-invoice", &b_user, Some(pay.clone())).await.assert_error(404, "not_found");
    app.call(Method::GET, &format!("/billing/payment-methods/customer/{a}"), &b_user, None)
        .await
        .assert_error(404, "not_found");
    app.call(Method::POST, "/billing/payment-methods/setup", &b_user, Some(json!({"customer_id": a})))
        .await
        .assert_error(404, "not_found");
    let e = app.call(Method::POST, "/billing/payment-methods/setup", &admin, Some(json!({}))).await;
    assert!(e.assert_error(422, "validation_failed")["details"]["customer_id"].is_string());
    let r = app.call(Method::POST, "/billing/payment-methods/setup", &admin, Some(json!({"customer_id": a}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // No default card yet (no setup_intent.succeeded arrived): the payment names none → 422.
    let e = app.call(Method::POST, "/billing/pay-invoice", &a_user, Some(pay.clone())).await;
    assert!(e.assert_error(422, "validation_failed")["details"]["payment_method_id"].is_string());
    let cancelled = app.call(Method::POST, &format!("/billing/invoices/{a_invoice}/cancel"), &admin, None).await;
    assert_eq!(cancelled.status, 200);
    app.call(Method::POST, "/billing/pay-invoice", &a_user, Some(pay.clone())).await.assert_error(409, "conflict");
    for bad in [json!({}), json!({"invoice_id": "nope"}), json!({"invoice_id": a_invoice, "payment_method_id": ""})] {
        app.call(Method::POST, "/billing/pay-invoice", &a_user, Some(bad)).await.assert_error(422, "validation_failed");
    }

    // Without a Stripe key, the payment endpoints answer 503 and say why.
    let plain = TestApp::spawn().await;
    let admin = plain.admin_token().await;
    let c = customer(&plain, &admin, "Plain Co", json!({"monthly_fee": 10})).await;
    let user = user_token(&plain, &admin, &c, "plain@plain.example.com").await;
    let c_invoice = invoice(&plain, &admin, &c).await["id"].clone();
    for (method, path, body) in [
        (Method::POST, "/billing/payment-methods/setup".to_string(), Some(json!({}))),
        (Method::GET, format!("/billing/payment-methods/customer/{c}"), None),
        (Method::POST, "/billing/pay-invoice".to_string(), Some(json!({"invoice_id": c_invoice}))),
    ] {
        let e = plain.call(method, &path, &user, body).await.assert_error(503, "upstream_unavailable");
        assert!(e["message"].as_str().unwrap().contains("STRIPE_SECRET_KEY"), "{e}");
    }
}

type StripeLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A local server answering `POST /v1/payment_intents` and `POST /v1/refunds` in Stripe's documented
/// format, scripted per call: `500` (Stripe's `api_error`), `402` (a `card_declined` error) or `200` (a
/// succeeded PaymentIntent or refund). It logs each call's `Idempotency-Key`: localstripe can neither fail
/// with a 500 nor show the keys it got.
pub(crate) async fn scripted_stripe(script: Vec<u16>) -> (String, StripeLog) {
    use poem::web::Data;
    use poem::{handler, http::StatusCode, EndpointExt, Request, Response, Route};

    type Script = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>;

    #[handler]
    fn payment_intents(
        req: &Request,
        form: poem::web::Form<std::collections::HashMap<String, String>>,
        log: Data<&StripeLog>,
        script: Data<&Script>,
    ) -> Response {
        let key = req.header("idempotency-key").unwrap_or_default().to_string();
        log.0.lock().unwrap().push(key);
        let status = script.0.lock().unwrap().pop_front().unwrap_or(200);
        let body = match status {
            500 => json!({"error": {"type": "api_error", "message": "An unknown error occurred"}}),
            402 => {
                json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds."}})
            }
            // As Stripe answers: the refund, or the PaymentIntent with the amount, currency and customer it
            // was created with.
            _ if req.uri().path() == "/v1/refunds" => json!({"id": "re_scripted_1", "object": "refund",
                "status": "succeeded", "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok())}),
            _ => json!({"id": "pi_scripted_1", "object": "payment_intent", "status": "succeeded",
                "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()), "currency": form.get("currency"),
                "customer": form.get("customer")}),
        };
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .content_type("application/json")
            .body(body.to_string())
    }

    let log: StripeLog = Default::default();
    let script: Script = std::sync::Arc::new(std::sync::Mutex::new(script.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let app = Route::new()
        .at("/v1/payment_intents", poem::post(payment_intents))
        .at("/v1/refunds", poem::post(payment_intents))
        .data(log.clone())
        .data(script);
    tokio::spawn(poem::Server::new(poem::listener::TcpListener::bind(addr.to_string())).run(app));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (format!("http://{addr}/"), log)
}

#[tokio::test]
async fn an_attempt_cut_short_is_repeated_under_its_own_key_and_a_decline_starts_the_next() {
    let (base, log) = scripted_stripe(vec![500, 200, 402, 200]).await;
    let app = TestApp::spawn_with(move |c| {
        c.stripe.stripe_secret_key = Some(Secret::new(STRIPE_KEY));
        c.stripe.stripe_api_base = base;
    })
    .await;
    let admin = app.admin_token().await;
    let body = json!({"name": "Key Co", "company_name": "Key Co", "billing_email": "ap@key.example.com",
        "stripe_customer_id": "cus_Scripted1", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
        "billing_settings": {"monthly_fee": 10, "stripe_payment_method_id": "pm_scripted_1"}});
    let r = app.call(Method::POST, "/customers", &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cid = r.json()["id"].as_str().unwrap().to_string();
    let first = invoice(&app, &admin, &cid).await["id"].as_str().unwrap().to_string();
    let pay = |id: &str| app.call(Method::POST, "/billing/pay-invoice", &admin, Some(json!({"invoice_id": id})));

    let e = pay(&first).await.assert_error(503, "upstream_unavailable");
    assert!(e["message"].as_str().unwrap().contains("Stripe"), "{e}");
    assert_eq!(get_invoice(&app, &admin, &first).await["status"], "pending", "nothing recorded on a 503");
    let r = pay(&first).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["invoice"]["stripe_payment_intent_id"], "pi_scripted_1");

    let second = recurring_invoice(&app, &admin, &cid, "2026-02-01").await["id"].as_str().unwrap().to_string();
    let e = pay(&second).await.assert_error(402, "payment_failed");
    assert_eq!(e["details"]["decline_code"], "insufficient_funds");
    assert_eq!(e["details"]["code"], "card_declined");
    assert_eq!(pay(&second).await.status, 200);

    let keys = log.lock().unwrap().clone();
    assert_eq!(
        keys,
        [
            format!("portal-invoice-{first}-attempt-1"),
            format!("portal-invoice-{first}-attempt-1"),
            format!("portal-invoice-{second}-attempt-1"),
            format!("portal-invoice-{second}-attempt-2"),
        ],
        "a failed call repeats its key; a decline moves to the next attempt"
    );
}

/// Paid means paid in full: infrastructure costs raised while charges run never leave an invoice paid for
/// less than its total. Each invoice is charged and re-priced at once; every paid invoice's total is what
/// Stripe charged for it, and a refused change says why (409).
#[tokio::test]
async fn totals_raised_during_charges_never_leave_an_invoice_paid_for_less() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Race Costs", json!({"monthly_fee": 500})).await;
    let (user, _) = user_with_default_card(&app, &stripe, &admin, &cid, "costs@race.example.com", GOOD_CARD).await;
    let mut ids = Vec::new();
    for month in 1..=8 {
        ids.push(
            recurring_invoice(&app, &admin, &cid, &format!("2026-{month:02}-01")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let races = ids.iter().map(|id| {
        let (app, user, admin) = (&app, &user, &admin);
        async move {
            let pay = app.call(Method::POST, "/billing/pay-invoice", user, Some(json!({"invoice_id": id})));
            let costs = format!("/billing/invoices/{id}/infrastructure-costs");
            let raise = app.call(Method::PUT, &costs, admin, Some(json!({"infrastructure_costs": 9500})));
            futures_util::future::join(pay, raise).await
        }
    });
    let mut refused_changes = 0;
    for (pay, raise) in futures_util::future::join_all(races).await {
        assert_eq!(pay.status, 200, "{}", pay.text);
        if raise.status != 200 {
            raise.assert_error(409, "conflict");
            refused_changes += 1;
        }
    }
    for id in &ids {
        let invoice = get_invoice(&app, &admin, id).await;
        assert_eq!(invoice["status"], "paid", "{invoice}");
        let charged: i64 = stripe.intents_of(id).await.iter().map(|pi| pi["amount"].as_i64().unwrap()).sum();
        assert_eq!(charged, cents(&invoice["total_amount"]), "invoice {id} paid for less than its total: {invoice}");
    }
    let unmatched = app.call(Method::GET, "/billing/unmatched-payments", &admin, None).await.json();
    assert_eq!(unmatched, json!([]));
    println!("{refused_changes} of {} cost changes met a charge in flight", ids.len());
}

/// A signed `payment_intent.succeeded` pays its invoice only with exactly its total, currency and Stripe
/// customer; any other success is kept for admins (listed, with an audit entry) and the invoice stays open.
#[tokio::test]
async fn a_success_of_another_amount_currency_or_customer_never_pays_the_invoice() {
    let ls = LocalStripe::start();
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let body = json!({"name": "Ada", "company_name": "Exact Co", "billing_email": "ap@exact.example.com",
        "stripe_customer_id": "cus_Exact", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
        "billing_settings": {"monthly_fee": 500}});
    let cid = app.call(Method::POST, "/customers", &admin, Some(body)).await.json()["id"].as_str().unwrap().to_string();
    let id = invoice(&app, &admin, &cid).await["id"].as_str().unwrap().to_string();
    let succeeded = |n: u32, amount: i64, currency: &str, customer: &str| {
        json!({"id": format!("evt_exact_{n}"), "type": "payment_intent.succeeded",
            "data": {"object": {"id": format!("pi_exact_{n}"), "object": "payment_intent", "status": "succeeded",
                "amount": amount, "amount_received": amount, "currency": currency, "customer": customer,
                "metadata": {"invoice_id": id}}}})
    };
    let wrong = [
        (succeeded(1, 1, "jpy", "cus_Exact"), "JPY"),
        (succeeded(2, 49_999, "usd", "cus_Exact"), "49999"),
        (succeeded(3, 50_000, "usd", "cus_Other"), "cus_Other"),
    ];
    for (event, why) in &wrong {
        assert_eq!(deliver(&app, event).await["outcome"], "applied");
        let invoice = get_invoice(&app, &admin, &id).await;
        assert_eq!(invoice["status"], "pending", "{why}: {invoice}");
        let listed = app.call(Method::GET, "/billing/unmatched-payments", &admin, None).await.json();
        assert!(listed[0]["reason"].as_str().unwrap().contains(why), "{listed}");
        assert_eq!(listed[0]["invoice_id"], id.as_str());
        assert_eq!(listed[0]["payment_intent_id"], event["data"]["object"]["id"]);
    }
    let listed = app.call(Method::GET, "/billing/unmatched-payments", &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!((listed[2]["amount_minor"].as_i64(), listed[2]["currency"].as_str()), (Some(1), Some("JPY")));
    let audit = app.call(Method::GET, &format!("/audit?object_id={id}"), &admin, None).await.json();
    let unmatched = audit.as_array().unwrap().iter().filter(|e| e["action"] == "payment_unmatched").count();
    assert_eq!(unmatched, 3, "{audit}");
    let stats = usd_stats(&app.call(Method::GET, "/billing/stats", &admin, None).await.json());
    assert_eq!(cents(&stats["revenue_all_time"]), 0);

    // The exact payment pays it; reported again under another event id, nothing more happens.
    assert_eq!(deliver(&app, &succeeded(4, 50_000, "usd", "cus_Exact")).await["outcome"], "applied");
    assert_eq!(get_invoice(&app, &admin, &id).await["status"], "paid");
    let mut again = succeeded(4, 50_000, "usd", "cus_Exact");
    again["id"] = json!("evt_exact_4_again");
    deliver(&app, &again).await;
    // A second, different payment of the paid invoice is money to give back.
    deliver(&app, &succeeded(5, 50_000, "usd", "cus_Exact")).await;
    let listed = app.call(Method::GET, "/billing/unmatched-payments", &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    assert_eq!(listed[0]["payment_intent_id"], "pi_exact_5");
    assert!(listed[0]["reason"].as_str().unwrap().contains("already paid"), "{listed}");
    // Customer users never see them.
    let user = user_token(&app, &admin, &cid, "u@exact.example.com").await;
    app.call(Method::GET, "/billing/unmatched-payments", &user, None).await.assert_error(403, "forbidden");
}

/// Keeps a page's HTML as a test artifact (`target/test-artifacts/NAME.html`), for a person to look at.
fn keep_page(name: &str, html: &str) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.html")), html).unwrap();
}

/// The pay link of the newest mail about invoice `number`.
pub(crate) async fn pay_link(app: &TestApp, number: &str) -> String {
    let mail = app.wait_for_outbox_mail("ap@example.com", number).await;
    mail.lines()
        .find_map(|l| l.strip_prefix("Pay online: "))
        .unwrap_or_else(|| panic!("no pay link: {mail}"))
        .to_string()
}

/// A page as a browser gets it: status, content type, CSP and text.
async fn page(method: Method, url: &str) -> (u16, String, String, String) {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client.request(method, url).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (status, content_type, csp) = (r.status().as_u16(), header("content-type"), header("content-security-policy"));
    let location = header("location");
    let text = r.text().await.unwrap().replace('\u{a0}', " ");
    (status, content_type, csp, if status == 303 { location } else { text })
}

#[tokio::test]
async fn the_pay_page_from_the_mail_shows_the_invoice_and_pays_it_once_with_the_saved_card() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Page Co", json!({"monthly_fee": 250, "tax_rate": 20})).await;
    user_with_default_card(&app, &stripe, &admin, &cid, "payer@page.example.com", GOOD_CARD).await;
    let inv = invoice(&app, &admin, &cid).await;
    let (id, number) = (inv["id"].as_str().unwrap(), inv["invoice_number"].as_str().unwrap());
    let link = pay_link(&app, number).await;
    assert!(link.starts_with(&app.url("/pay/")), "{link}");

    // No sign-in: the link shows the invoice, the same figures as the API, and its PDF.
    let (status, content_type, csp, html) = page(Method::GET, &link).await;
    assert_eq!((status, content_type.as_str()), (200, "text/html; charset=utf-8"));
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"), "{csp}");
    for shown in [number, "Page Co", "$250.00", "Tax (20 %)", "$50.00", "$300.00", "Pay $300.00 with your saved card"] {
        assert!(html.contains(shown), "{shown:?} missing: {html}");
    }
    assert_eq!(inv["total_amount"], 300.0);
    keep_page("pay-page", &html);
    let pdf = reqwest::get(format!("{link}/invoice.pdf")).await.unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));

    // Paying: the saved card is charged once, the page then shows the invoice paid and offers nothing more.
    let (status, _, _, location) = page(Method::POST, &link).await;
    assert_eq!((status, location.as_str()), (303, link.trim_start_matches(&app.url("")).to_string().as_str()));
    assert_eq!(get_invoice(&app, &admin, id).await["status"], "paid");
    let (status, _, _, html) = page(Method::GET, &link).await;
    assert_eq!(status, 200);
    assert!(html.contains("Thank you: this invoice is paid.") && !html.contains("<form"), "{html}");
    let (status, _, _, html) = page(Method::POST, &link).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("already paid"), "{html}");
    assert_eq!(stripe.intents_of(id).await.len(), 1, "charged once");
    app.wait_for_outbox_mail("ap@example.com", "Receipt for invoice").await;

    // Links that open nothing: plain pages, not the API's JSON.
    let (status, content_type, _, html) = page(Method::GET, &app.url("/pay/not-a-token")).await;
    assert_eq!((status, content_type.as_str()), (404, "text/html; charset=utf-8"));
    assert!(html.contains("This payment link is not valid"), "{html}");
    let last = if link.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &link[..link.len() - 1]);
    assert_eq!(page(Method::GET, &forged).await.0, 404);
}

#[tokio::test]
async fn a_declined_card_on_the_pay_page_says_so_and_a_resent_invoice_kills_the_old_link() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Declined Page Co", json!({"monthly_fee": 40})).await;
    user_with_default_card(&app, &stripe, &admin, &cid, "payer@declined.example.com", DECLINING_CARD).await;
    let inv = invoice(&app, &admin, &cid).await;
    let (id, number) = (inv["id"].as_str().unwrap(), inv["invoice_number"].as_str().unwrap());
    let link = pay_link(&app, number).await;

    let (status, _, _, html) = page(Method::POST, &link).await;
    assert_eq!(status, 402, "{html}");
    keep_page("pay-page-declined", &html);
    assert!(html.contains("Your card was declined"), "{html}");
    assert!(html.contains("Pay $40.00 with your saved card"), "the invoice can still be paid: {html}");
    assert_eq!(get_invoice(&app, &admin, id).await["status"], "pending");

    // Sent again: the new mail's link works, the old one no longer does.
    let r = app.call(Method::POST, &format!("/billing/invoices/{id}/send"), &admin, None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let fresh = loop {
        let candidate = pay_link(&app, number).await;
        if candidate != link {
            break candidate;
        }
        assert!(std::time::Instant::now() < deadline, "the resent mail did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(page(Method::GET, &fresh).await.0, 200);
    let (status, _, _, html) = page(Method::GET, &link).await;
    assert_eq!(status, 404);
    assert!(html.contains("replaced by a newer one"), "{html}");
}
