//! The Stripe webhook: signatures checked the way Stripe signs (HMAC-SHA256 of `"{t}.{body}"`), each event
//! applied once, stale or forged ones refused, out-of-order events never moving a paid invoice back.

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::billing::recurring_invoice;
use crate::helpers::{Reply, TestApp};

const SECRET: &str = "whsec_test_portal_webhook_secret";

fn signature(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

async fn deliver(app: &TestApp, event: &Value, secret: &str, age_secs: i64) -> Reply {
    let body = event.to_string();
    let t = chrono::Utc::now().timestamp() - age_secs;
    let req = app
        .request(Method::POST, "/billing/webhooks/stripe")
        .header("Stripe-Signature", signature(secret, t, &body))
        .header("Content-Type", "application/json")
        .body(body);
    app.send(req).await
}

#[tokio::test]
async fn signed_events_apply_once_and_forged_or_stale_ones_are_refused() {
    let app =
        TestApp::spawn_with(|c| c.stripe.stripe_webhook_secret = Some(portal_core::config::Secret::new(SECRET))).await;
    let admin = app.admin_token().await;
    let body = json!({"name": "Ada", "company_name": "Hook Co", "billing_email": "ap@hook.example.com",
        "stripe_customer_id": "cus_Hook1", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
        "billing_settings": {"monthly_fee": 10}});
    let customer = app.call(Method::POST, "/customers", &admin, Some(body)).await.json();
    let cid = customer["id"].as_str().unwrap();
    let invoice = recurring_invoice(&app, &admin, cid, "2026-01-01").await["id"].as_str().unwrap().to_string();

    let paid = json!({"id": "evt_paid_1", "type": "payment_intent.succeeded", "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": "pi_123", "object": "payment_intent", "status": "succeeded", "amount": 1000,
            "currency": "usd", "customer": "cus_Hook1", "metadata": {"invoice_id": invoice}}}});
    for (secret, age) in [("whsec_wrong", 0), (SECRET, 600)] {
        deliver(&app, &paid, secret, age).await.assert_error(400, "bad_request");
    }
    let unsigned = app.request(Method::POST, "/billing/webhooks/stripe").header("Content-Type", "application/json");
    let r = app.send(unsigned.body(paid.to_string())).await;
    r.assert_error(400, "bad_request");
    let still = app.call(Method::GET, &format!("/billing/invoices/{invoice}"), &admin, None).await.json();
    assert_eq!(still["status"], "pending", "a refused event changed the invoice");

    let r = deliver(&app, &paid, SECRET, 5).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["outcome"], "applied");
    let now_paid = app.call(Method::GET, &format!("/billing/invoices/{invoice}"), &admin, None).await.json();
    assert_eq!(now_paid["status"], "paid");
    assert_eq!(now_paid["payment_method"], "stripe");
    assert_eq!(now_paid["stripe_payment_intent_id"], "pi_123");
    let r = deliver(&app, &paid, SECRET, 0).await;
    assert_eq!(r.json()["outcome"], "duplicate");

    // A failure arriving after the success leaves the invoice paid.
    let failed = json!({"id": "evt_failed_1", "type": "payment_intent.payment_failed",
        "data": {"object": {"id": "pi_122", "status": "requires_payment_method", "metadata": {"invoice_id": invoice}}}});
    assert_eq!(deliver(&app, &failed, SECRET, 0).await.status, 200);
    let after = app.call(Method::GET, &format!("/billing/invoices/{invoice}"), &admin, None).await.json();
    assert_eq!(after, now_paid);
    let stats = app.call(Method::GET, "/billing/stats", &admin, None).await.json();
    assert_eq!(stats["invoices_by_status"]["paid"], 1);

    // A saved card becomes the customer's default.
    let setup = json!({"id": "evt_setup_1", "type": "setup_intent.succeeded",
        "data": {"object": {"id": "seti_1", "customer": "cus_Hook1", "payment_method": "pm_card_1", "status": "succeeded"}}});
    assert_eq!(deliver(&app, &setup, SECRET, 0).await.json()["outcome"], "applied");
    let billing = app.call(Method::GET, &format!("/customers/{cid}/billing"), &admin, None).await.json();
    assert_eq!(billing["stripe_payment_method_id"], "pm_card_1");

    let unknown = json!({"id": "evt_other", "type": "customer.updated", "data": {"object": {"id": "cus_Hook1"}}});
    assert_eq!(deliver(&app, &unknown, SECRET, 0).await.json()["outcome"], "ignored");
}

#[tokio::test]
async fn without_a_webhook_secret_the_endpoint_is_503() {
    let app = TestApp::spawn().await;
    let event = json!({"id": "evt_1", "type": "customer.updated", "data": {"object": {}}});
    deliver(&app, &event, SECRET, 0).await.assert_error(503, "upstream_unavailable");
}
