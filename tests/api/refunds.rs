//! Refunds and credit notes: refunds of invoices paid by hand and through Stripe (localstripe), partial and
//! full, never more than was paid even under concurrent calls; gapless credit note numbers; who may see
//! them; their PDF; and the figures net of refunds, compared with sums over the lists.

use std::collections::BTreeSet;

use portal_testkit::LocalStripe;
use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{cents, customer, mark_paid, recurring_invoice, user_token};
use crate::documents::{keep, text_of};
use crate::helpers::TestApp;
use crate::payments::{
    app_with, scripted_stripe, usd_stats, user_with_default_card, StripeSide, GOOD_CARD, STRIPE_KEY,
};

async fn refund(app: &TestApp, admin: &str, invoice: &str, body: Value) -> (u16, Value) {
    let r = app.call(Method::POST, &format!("/billing/invoices/{invoice}/refund"), admin, Some(body)).await;
    (r.status.as_u16(), serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

/// The sequence number of `CN-YYYY-NNNNNN`.
fn sequence(number: &str) -> u32 {
    assert!(number.starts_with("CN-") && number.len() == 14, "{number}");
    number[8..].parse().unwrap()
}

#[tokio::test]
async fn an_invoice_paid_by_hand_is_refunded_in_parts_with_a_credit_note_each() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Refund Co", json!({"monthly_fee": 200, "tax_rate": 10})).await;
    let other = customer(&app, &admin, "Other Co", json!({"monthly_fee": 50})).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-10-01").await;
    let id = invoice["id"].as_str().unwrap();

    // Only a paid invoice can be refunded; customer users cannot refund, and learn nothing of the body.
    let (status, body) = refund(&app, &admin, id, json!({"reason": "too early"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    mark_paid(&app, &admin, id).await;
    let user = user_token(&app, &admin, &cid, "cfo@refund.example").await;
    let r = app.call(Method::POST, &format!("/billing/invoices/{id}/refund"), &user, Some(json!({"x": 1}))).await;
    r.assert_error(403, "forbidden");
    assert_eq!(
        app.request(Method::POST, &format!("/billing/invoices/{id}/refund")).send().await.unwrap().status(),
        401
    );

    // Bad amounts: more than was paid, fractions of a cent, zero; a blank reason.
    for (body, field) in [
        (json!({"amount": 220.01, "reason": "x"}), "amount"),
        (json!({"amount": 10.005, "reason": "x"}), "amount"),
        (json!({"amount": 0, "reason": "x"}), "amount"),
        (json!({"amount": 10, "reason": "  "}), "reason"),
    ] {
        let (status, answer) = refund(&app, &admin, id, body.clone()).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("validation_failed")), "{body}: {answer}");
        assert!(answer["error"]["details"].get(field).is_some(), "{body}: {answer}");
    }

    // A part, then the rest by default; then nothing is left.
    let (status, first) = refund(&app, &admin, id, json!({"amount": 70.5, "reason": "Late delivery"})).await;
    assert_eq!(status, 201, "{first}");
    let note = &first["credit_note"];
    assert_eq!((note["amount"].as_f64(), note["channel"].as_str()), (Some(70.5), Some("manual")));
    assert_eq!((note["origin"].as_str(), note["reason"].as_str()), (Some("portal"), Some("Late delivery")));
    assert_eq!(note["invoice_number"], invoice["invoice_number"]);
    assert_eq!(first["invoice"]["status"], "paid");
    assert_eq!(first["invoice"]["refunded_amount"], 70.5);
    assert_eq!(first["invoice"]["line_items"], invoice["line_items"], "a refund never changes the lines");
    let (status, second) = refund(&app, &admin, id, json!({"reason": "Project stopped"})).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["credit_note"]["amount"], 149.5);
    assert_eq!(second["invoice"]["refunded_amount"], 220.0);
    let numbers = [&first, &second].map(|r| r["credit_note"]["credit_note_number"].as_str().unwrap().to_string());
    assert_eq!(sequence(&numbers[1]), sequence(&numbers[0]) + 1, "{numbers:?}");
    let (status, body) = refund(&app, &admin, id, json!({"reason": "again"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");

    // The invoice lists its credit notes; the customer's users see them, other customers' do not.
    let shown = app.call(Method::GET, &format!("/billing/invoices/{id}"), &user, None).await.json();
    let listed: Vec<&str> =
        shown["credit_notes"].as_array().unwrap().iter().map(|n| n["credit_note_number"].as_str().unwrap()).collect();
    assert_eq!(listed, [numbers[0].as_str(), numbers[1].as_str()]);
    let list = app.call(Method::GET, &format!("/billing/credit-notes/customer/{cid}"), &user, None).await.json();
    let newest_first: Vec<&str> =
        list.as_array().unwrap().iter().map(|n| n["credit_note_number"].as_str().unwrap()).collect();
    assert_eq!(newest_first, [numbers[1].as_str(), numbers[0].as_str()]);
    let note_id = first["credit_note"]["id"].as_str().unwrap();
    let one = app.call(Method::GET, &format!("/billing/credit-notes/{note_id}"), &user, None).await;
    assert_eq!(one.json(), first["credit_note"]);
    let stranger = user_token(&app, &admin, &other, "someone@other.example").await;
    let pdf_path = format!("/billing/credit-notes/{note_id}/pdf");
    app.call(Method::GET, &pdf_path, &stranger, None).await.assert_error(404, "not_found");
    for path in
        [format!("/billing/credit-notes/{note_id}"), pdf_path.clone(), format!("/billing/credit-notes/customer/{cid}")]
    {
        assert_eq!(app.request(Method::GET, &path).send().await.unwrap().status(), 401, "{path}");
    }
    app.call(Method::GET, &format!("/billing/credit-notes/{note_id}"), &stranger, None)
        .await
        .assert_error(404, "not_found");
    app.call(Method::GET, &format!("/billing/credit-notes/customer/{cid}"), &stranger, None)
        .await
        .assert_error(404, "not_found");

    // The credit note as a document.
    let r = app.request(Method::GET, &format!("/billing/credit-notes/{note_id}/pdf")).bearer_auth(&user).send().await;
    let r = r.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap().to_vec();
    keep("credit-note", &pdf);
    let text = text_of(&pdf);
    for shown in
        [numbers[0].as_str(), invoice["invoice_number"].as_str().unwrap(), "$70.50", "Late delivery", "Refund Co"]
    {
        assert!(text.contains(shown), "{shown:?} missing: {text}");
    }
    let r = app.request(Method::GET, &format!("/billing/invoices/{id}/pdf")).bearer_auth(&user).send().await.unwrap();
    let text = text_of(&r.bytes().await.unwrap());
    assert!(text.contains(&format!("(credit note {})", numbers[1])) && text.contains("−$149.50"), "{text}");

    // The figures are net of refunds, and agree with the lists.
    let overview = app.call(Method::GET, &format!("/billing/customer/{cid}/overview"), &admin, None).await.json();
    let invoices = app.call(Method::GET, &format!("/billing/invoices/customer/{cid}"), &admin, None).await.json();
    let paid: i64 =
        invoices.as_array().unwrap().iter().filter(|i| i["status"] == "paid").map(|i| cents(&i["total_amount"])).sum();
    let credited: i64 = list.as_array().unwrap().iter().map(|n| cents(&n["amount"])).sum();
    assert_eq!((paid, credited), (22_000, 22_000));
    assert_eq!(cents(&overview["paid_to_date"]), paid - credited);
    let stats = usd_stats(&app.call(Method::GET, "/billing/stats", &admin, None).await.json());
    assert_eq!(cents(&stats["revenue_all_time"]), paid - credited);
    assert_eq!(cents(&stats["refunded_amount"]), credited);
}

#[tokio::test]
async fn twenty_concurrent_stripe_refunds_never_return_more_than_was_paid() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Concurrent Co", json!({"monthly_fee": 300})).await;
    user_with_default_card(&app, &stripe, &admin, &cid, "pay@concurrent.example", GOOD_CARD).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-10-01").await;
    let id = invoice["id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, "/billing/pay-invoice", &admin, Some(json!({"invoice_id": id}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let intent = r.json()["payment_intent_id"].as_str().unwrap().to_string();

    // 20 refunds of $40 at once: at most $300 goes back.
    let calls = (0..20).map(|i| {
        let (app, admin, id) = (&app, &admin, &id);
        async move { refund(app, admin, id, json!({"amount": 40, "reason": format!("call {i}")})).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    let accepted: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    for (status, body) in &answers {
        assert!(
            *status == 201 || (*status == 422 && body["error"]["details"]["amount"].is_string()),
            "{status} {body}"
        );
    }
    assert_eq!(accepted.len(), 7, "7 × $40 fit in $300");

    // One Stripe refund per accepted call, each under its own key; the invoice and Stripe agree.
    let made = stripe.get(&format!("refunds?payment_intent={intent}&limit=100")).await;
    let made = made["data"].as_array().unwrap();
    assert_eq!(made.len(), accepted.len(), "{made:?}");
    assert!(made.iter().all(|r| r["amount"] == 4000), "{made:?}");
    let refund_ids: BTreeSet<&str> = made.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let noted: BTreeSet<&str> =
        accepted.iter().map(|a| a["credit_note"]["stripe_refund_id"].as_str().unwrap()).collect();
    assert_eq!(refund_ids, noted);
    let after = app.call(Method::GET, &format!("/billing/invoices/{id}"), &admin, None).await.json();
    assert_eq!((cents(&after["refunded_amount"]), after["status"].as_str()), (28_000, Some("paid")));

    // Credit note numbers: consecutive, no gap, no repeat.
    let mut numbers: Vec<u32> =
        accepted.iter().map(|a| sequence(a["credit_note"]["credit_note_number"].as_str().unwrap())).collect();
    numbers.sort_unstable();
    let first = numbers[0];
    assert_eq!(numbers, (first..first + 7).collect::<Vec<_>>());

    // The last $20 by default; then nothing is left.
    let (status, last) = refund(&app, &admin, &id, json!({"reason": "rest"})).await;
    assert_eq!((status, last["credit_note"]["amount"].as_f64()), (201, Some(20.0)), "{last}");
    let (status, _) = refund(&app, &admin, &id, json!({"reason": "more"})).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_refund_whose_answer_was_lost_stays_reserved_and_is_completed_under_the_same_key() {
    // Stripe answers the payment, fails the refund with a 500, then answers it.
    let (base, log) = scripted_stripe(vec![200, 500, 200]).await;
    let stripe_base = base.clone();
    let app = TestApp::spawn_with(move |c| {
        c.stripe.stripe_secret_key = Some(portal_core::config::Secret::new(STRIPE_KEY));
        c.stripe.stripe_api_base = stripe_base;
    })
    .await;
    let admin = app.admin_token().await;
    let body = json!({"name": "Lost Co", "company_name": "Lost Co", "billing_email": "ap@lost.example.com",
        "stripe_customer_id": "cus_Scripted1", "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"},
        "billing_settings": {"monthly_fee": 10, "stripe_payment_method_id": "pm_scripted_1"}});
    let r = app.call(Method::POST, "/customers", &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cid = r.json()["id"].as_str().unwrap().to_string();
    let id = recurring_invoice(&app, &admin, &cid, "2026-10-01").await["id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, "/billing/pay-invoice", &admin, Some(json!({"invoice_id": id}))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let (status, lost) = refund(&app, &admin, &id, json!({"amount": 4, "reason": "Partial"})).await;
    assert_eq!((status, lost["error"]["code"].as_str()), (503, Some("upstream_unavailable")), "{lost}");
    let refund_id = lost["error"]["details"]["refund_id"].as_str().expect("the kept refund").to_string();
    let invoice = app.call(Method::GET, &format!("/billing/invoices/{id}"), &admin, None).await.json();
    assert_eq!(
        (invoice["refunded_amount"].as_f64(), invoice["credit_notes"].as_array().map(Vec::len)),
        (Some(0.0), Some(0))
    );
    // The reserved $4 counts: only $6 is left.
    let (status, answer) = refund(&app, &admin, &id, json!({"amount": 7, "reason": "Too much"})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"]["details"]["amount"].as_str().unwrap().contains("at most 6"), "{answer}");

    // The job repeats it once it is stale, under the same key; the credit note follows.
    let config = portal_stripe::StripeConfig {
        stripe_secret_key: Some(portal_core::config::Secret::new(STRIPE_KEY)),
        stripe_api_base: base,
        ..portal_stripe::StripeConfig::default()
    };
    let client = portal_stripe::Stripe::from_config(&config).unwrap().unwrap();
    let early = portal_core::Timestamp::now();
    assert_eq!(portal_billing::refunds::retry_stale(&app.store, &client, early).await.unwrap(), 0, "not stale yet");
    let later = early.plus_secs(portal_billing::refunds::RETRY_AFTER_SECS);
    assert_eq!(portal_billing::refunds::retry_stale(&app.store, &client, later).await.unwrap(), 1);
    let invoice = app.call(Method::GET, &format!("/billing/invoices/{id}"), &admin, None).await.json();
    assert_eq!(invoice["refunded_amount"], 4.0);
    let note_id = invoice["credit_notes"][0]["id"].as_str().unwrap();
    let note = app.call(Method::GET, &format!("/billing/credit-notes/{note_id}"), &admin, None).await.json();
    assert_eq!((note["stripe_refund_id"].as_str(), note["amount"].as_f64()), (Some("re_scripted_1"), Some(4.0)));
    let keys = log.lock().unwrap().clone();
    let refund_key = format!("portal-refund-{refund_id}");
    assert_eq!(keys[1..], [refund_key.clone(), refund_key], "{keys:?}");
    assert_eq!(portal_billing::refunds::retry_stale(&app.store, &client, later).await.unwrap(), 0, "done once");
}

#[tokio::test]
async fn a_repeated_idempotency_key_answers_the_first_refund_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Keyed Co", json!({"monthly_fee": 90})).await;
    let id = recurring_invoice(&app, &admin, &cid, "2026-10-01").await["id"].as_str().unwrap().to_string();
    mark_paid(&app, &admin, &id).await;
    let keyed = || {
        app.send(
            app.request(Method::POST, &format!("/billing/invoices/{id}/refund"))
                .bearer_auth(&admin)
                .header("Idempotency-Key", "refund-keyed-1")
                .json(&json!({"amount": 15, "reason": "Keyed"})),
        )
    };
    let first = keyed().await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = keyed().await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json()["credit_note"], first.json()["credit_note"]);
    let invoice = app.call(Method::GET, &format!("/billing/invoices/{id}"), &admin, None).await.json();
    assert_eq!(
        (invoice["refunded_amount"].as_f64(), invoice["credit_notes"].as_array().map(Vec::len)),
        (Some(15.0), Some(1))
    );
}
