//! Proposals and invoices end to end: the proposal lifecycle, milestone invoices that sum to the cent,
//! recurring periods billed once, gapless numbering under concurrency, infrastructure costs, manual
//! payments, cancellation, stats and overviews checked against the invoice lists, archiving, isolation.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;

const PASSWORD: &str = "correct horse battery";

pub(crate) async fn customer(app: &TestApp, admin: &str, company: &str, billing: Value) -> String {
    let body = json!({
        "name": "Ada Lovelace", "company_name": company, "billing_email": "ap@example.com", "status": "active",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}, "billing_settings": billing,
    });
    let r = app.call(Method::POST, "/customers", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

async fn proposal(app: &TestApp, admin: &str, customer: &str, total: f64, schedule: Value, recurring: f64) -> Value {
    let body = json!({"customer_id": customer, "title": "Website rebuild", "total_amount": total,
        "billing_schedule": schedule, "monthly_recurring_amount": recurring});
    let r = app.call(Method::POST, "/proposals", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

async fn accepted(app: &TestApp, admin: &str, customer: &str, total: f64, schedule: Value, recurring: f64) -> String {
    let p = proposal(app, admin, customer, total, schedule, recurring).await;
    let id = p["id"].as_str().unwrap().to_string();
    let r = app.call(Method::POST, &format!("/proposals/{id}/accept"), admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    id
}

pub(crate) async fn user_token(app: &TestApp, admin: &str, customer: &str, email: &str) -> String {
    let body = json!({"email": email, "name": "Customer User", "password": PASSWORD});
    let r = app.call(Method::POST, &format!("/customers/{customer}/users"), admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    app.login(email, PASSWORD).await["access_token"].as_str().unwrap().to_string()
}

/// Issues the invoice of `customer`'s period starting on `period_start`.
pub(crate) async fn recurring_invoice(app: &TestApp, admin: &str, customer: &str, period_start: &str) -> Value {
    let body = json!({"customer_id": customer, "period_start": period_start});
    let r = app.call(Method::POST, "/billing/generate-recurring", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// Issues the invoice of `customer`'s current period (what the scheduler would bill on the next start).
pub(crate) async fn current_invoice(app: &TestApp, admin: &str, customer: &str) -> Value {
    let r = app.call(Method::POST, "/billing/generate-recurring", admin, Some(json!({"customer_id": customer}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// Marks an invoice paid by bank transfer (admin) and returns it.
pub(crate) async fn mark_paid(app: &TestApp, admin: &str, invoice: &str) -> Value {
    let path = format!("/billing/invoices/{invoice}/mark-paid");
    let r = app.call(Method::POST, &path, admin, Some(json!({"payment_method": "bank_transfer"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Minor units of a JSON amount (2-decimal currencies).
pub(crate) fn cents(v: &Value) -> i64 {
    (v.as_f64().expect("amount") * 100.0).round() as i64
}

#[tokio::test]
async fn proposal_lifecycle_and_schedule_rules() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Acme", json!({})).await;
    let schedule =
        json!([{"percentage": 50, "milestone": "Kick-off", "due_days": 7}, {"percentage": 50, "milestone": "Launch"}]);
    let p = proposal(&app, &admin, &cid, 5000.0, schedule.clone(), 99.5).await;
    assert_eq!(p["status"], "draft");
    assert_eq!(p["currency"], "USD");
    assert_eq!(p["total_amount"], json!(5000.0));
    assert_eq!(p["monthly_recurring_amount"], json!(99.5));
    assert_eq!(
        p["billing_schedule"],
        json!([{"percentage": 50.0, "milestone": "Kick-off", "due_days": 7}, {"percentage": 50.0, "milestone": "Launch"}])
    );
    let pid = p["id"].as_str().unwrap();

    let r = app
        .call(
            Method::PUT,
            &format!("/proposals/{pid}"),
            &admin,
            Some(json!({"status": "sent", "title": "Website rebuild v2"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "sent");
    assert_eq!(r.json()["title"], "Website rebuild v2");
    let r = app.call(Method::PUT, &format!("/proposals/{pid}"), &admin, Some(json!({"status": "accepted"}))).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["status"].is_string());

    let r = app.call(Method::POST, &format!("/proposals/{pid}/accept"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let accepted = r.json();
    assert_eq!(accepted["status"], "accepted");
    assert!(accepted["accepted_at"].is_string());
    app.call(Method::PUT, &format!("/proposals/{pid}"), &admin, Some(json!({"title": "x"})))
        .await
        .assert_error(409, "conflict");
    app.call(Method::DELETE, &format!("/proposals/{pid}"), &admin, None).await.assert_error(409, "conflict");
    app.call(Method::POST, &format!("/proposals/{pid}/reject"), &admin, None).await.assert_error(409, "conflict");
    app.call(Method::POST, &format!("/proposals/{pid}/accept"), &admin, None).await.assert_error(409, "conflict");

    let other = proposal(&app, &admin, &cid, 100.0, json!([{"percentage": 100, "milestone": "All"}]), 0.0).await;
    let oid = other["id"].as_str().unwrap();
    let r = app.call(Method::POST, &format!("/proposals/{oid}/reject"), &admin, None).await;
    assert_eq!(r.json()["status"], "rejected");
    assert!(r.json()["rejected_at"].is_string());
    // Editing a rejected proposal reopens it as a draft; a draft can be deleted.
    let r = app.call(Method::PUT, &format!("/proposals/{oid}"), &admin, Some(json!({"total_amount": 120}))).await;
    assert_eq!(r.json()["status"], "draft", "{}", r.text);
    assert!(r.json().get("rejected_at").is_none());
    assert_eq!(app.call(Method::DELETE, &format!("/proposals/{oid}"), &admin, None).await.status, 204);
    app.call(Method::GET, &format!("/proposals/{oid}"), &admin, None).await.assert_error(404, "not_found");

    // Expiry is seen at read time.
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let body = json!({"customer_id": cid, "title": "Short offer", "total_amount": 10, "status": "sent",
        "billing_schedule": [{"percentage": 100, "milestone": "All"}], "valid_until": soon.to_rfc3339()});
    let r = app.call(Method::POST, "/proposals", &admin, Some(body)).await;
    assert_eq!(r.json()["status"], "sent", "{}", r.text);
    let eid = r.json()["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let r = app.call(Method::GET, &format!("/proposals/{eid}"), &admin, None).await;
    assert_eq!(r.json()["status"], "expired");
    let r = app.call(Method::POST, &format!("/proposals/{eid}/accept"), &admin, None).await;
    assert_eq!(r.assert_error(409, "conflict")["details"]["status"], "expired");
    let listed = app.call(Method::GET, &format!("/proposals/customer/{cid}?status=expired"), &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], json!(eid));

    let bad: Vec<(&str, Value)> = vec![
        ("billing_schedule", json!([{"percentage": 50, "milestone": "Half"}])),
        ("billing_schedule", json!([])),
        (
            "billing_schedule[0].percentage",
            json!([{"percentage": 0, "milestone": "Zero"}, {"percentage": 100, "milestone": "All"}]),
        ),
        (
            "billing_schedule[1].milestone",
            json!([{"percentage": 50, "milestone": "A"}, {"percentage": 50, "milestone": " "}]),
        ),
        ("billing_schedule[0].due_days", json!([{"percentage": 100, "milestone": "A", "due_days": -1}])),
        (
            "billing_schedule[0].percentage",
            json!([{"percentage": 33.33333, "milestone": "A"}, {"percentage": 66.66667, "milestone": "B"}]),
        ),
    ];
    for (field, schedule) in bad {
        let body = json!({"customer_id": cid, "title": "Bad", "total_amount": 10, "billing_schedule": schedule});
        let r = app.call(Method::POST, "/proposals", &admin, Some(body)).await;
        let error = r.assert_error(422, "validation_failed");
        assert!(error["details"][field].is_string(), "{field}: {error}");
    }
    let body = json!({"customer_id": cid, "title": "Bad", "total_amount": 10.001, "billing_schedule": [{"percentage": 100, "milestone": "A"}]});
    let r = app.call(Method::POST, "/proposals", &admin, Some(body)).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["total_amount"].is_string());
    let body = json!({"customer_id": cid, "title": "Bad", "total_amount": 10, "currency": "EUR", "billing_schedule": [{"percentage": 100, "milestone": "A"}]});
    let r = app.call(Method::POST, "/proposals", &admin, Some(body)).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["currency"].is_string());
}

#[tokio::test]
async fn milestone_invoices_sum_to_the_total_to_the_cent_and_are_generated_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Acme", json!({"tax_rate": 8.25, "payment_terms_days": 14})).await;
    let cases = [
        (
            10_000.0,
            json!([{"percentage": 33.33, "milestone": "Design"}, {"percentage": 33.33, "milestone": "Build", "due_days": 30}, {"percentage": 33.34, "milestone": "Launch"}]),
            vec![333_300, 333_300, 333_400],
        ),
        (
            100.0,
            json!([{"percentage": 33.3333, "milestone": "One"}, {"percentage": 33.3333, "milestone": "Two"}, {"percentage": 33.3334, "milestone": "Three"}]),
            vec![3_333, 3_333, 3_334],
        ),
    ];
    let mut numbers = Vec::new();
    for (total, schedule, expected) in cases {
        let pid = accepted(&app, &admin, &cid, total, schedule, 0.0).await;
        let r = app
            .request(Method::POST, "/billing/generate-from-proposal")
            .bearer_auth(&admin)
            .header("Idempotency-Key", format!("gen-{pid}"))
            .json(&json!({"proposal_id": pid}));
        let r = app.send(r).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let invoices = r.json();
        let invoices = invoices.as_array().unwrap();
        let amounts: Vec<i64> = invoices.iter().map(|i| cents(&i["amount"])).collect();
        assert_eq!(amounts, expected);
        assert_eq!(amounts.iter().sum::<i64>(), (total * 100.0) as i64);
        for invoice in invoices {
            assert_eq!(invoice["proposal_id"], json!(pid));
            assert_eq!(invoice["status"], "pending");
            assert_eq!(invoice["currency"], "USD");
            let amount = cents(&invoice["amount"]);
            // round_half_even(amount × 8.25 / 100), independently.
            let tax_x100 = amount * 825;
            let (q, rem) = (tax_x100 / 10_000, tax_x100 % 10_000);
            let tax = if rem * 2 > 10_000 || (rem * 2 == 10_000 && q % 2 == 1) { q + 1 } else { q };
            assert_eq!(cents(&invoice["tax_amount"]), tax, "{invoice}");
            assert_eq!(cents(&invoice["total_amount"]), amount + tax);
            assert_eq!(invoice["line_items"][0]["quantity"], 1);
            assert_eq!(cents(&invoice["line_items"][0]["amount"]), amount);
            let issue = chrono::DateTime::parse_from_rfc3339(invoice["issue_date"].as_str().unwrap()).unwrap();
            let due = chrono::DateTime::parse_from_rfc3339(invoice["due_date"].as_str().unwrap()).unwrap();
            let days = if invoice["milestone"] == "Build" { 30 } else { 14 };
            assert_eq!((due - issue).num_days(), days);
            numbers.push(invoice["invoice_number"].as_str().unwrap().to_string());
        }
        // The same key answers the first result again; without it, a second generation is refused.
        let again = app
            .request(Method::POST, "/billing/generate-from-proposal")
            .bearer_auth(&admin)
            .header("Idempotency-Key", format!("gen-{pid}"))
            .json(&json!({"proposal_id": pid}));
        let again = app.send(again).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.json(), r.json());
        let r =
            app.call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": pid}))).await;
        assert_eq!(r.assert_error(409, "conflict")["details"]["invoice_ids"].as_array().unwrap().len(), 3);
    }
    let year = chrono::Utc::now().format("%Y").to_string();
    let expected: Vec<String> = (1..=6).map(|n| format!("INV-{year}-{n:06}")).collect();
    assert_eq!(numbers, expected);
    let listed = app.call(Method::GET, &format!("/billing/invoices/customer/{cid}"), &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 6);

    // A draft proposal cannot be invoiced.
    let draft = proposal(&app, &admin, &cid, 10.0, json!([{"percentage": 100, "milestone": "All"}]), 0.0).await;
    let r = app
        .call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": draft["id"]})))
        .await;
    r.assert_error(409, "conflict");
}

#[tokio::test]
async fn recurring_invoices_bill_each_period_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(
        &app,
        &admin,
        "Quarterly Co",
        json!({"billing_frequency": "quarterly", "monthly_fee": 1000, "billing_day": 1}),
    )
    .await;
    accepted(&app, &admin, &cid, 500.0, json!([{"percentage": 100, "milestone": "Setup"}]), 250.0).await;
    let r = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2026-10-01"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let invoice = r.json();
    assert_eq!(cents(&invoice["amount"]), 375_000);
    assert_eq!(cents(&invoice["tax_amount"]), 0);
    assert_eq!(cents(&invoice["total_amount"]), 375_000);
    assert!(invoice.get("proposal_id").is_none());
    // The quarter's last day, as people write a period (it ends before 2027-01-01).
    assert_eq!(invoice["description"], "Recurring charges for 2026-10-01 – 2026-12-31");
    let items = invoice["line_items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        (items[0]["quantity"].as_i64(), cents(&items[0]["unit_price"]), cents(&items[0]["amount"])),
        (Some(3), 100_000, 300_000)
    );
    assert_eq!(
        (items[1]["quantity"].as_i64(), cents(&items[1]["unit_price"]), cents(&items[1]["amount"])),
        (Some(3), 25_000, 75_000)
    );

    let again = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2026-10-01"})),
        )
        .await;
    assert_eq!(again.assert_error(409, "conflict")["details"]["invoice_id"], invoice["id"]);
    // An overlapping period is the same period billed twice.
    let overlap = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2026-12-01"})),
        )
        .await;
    overlap.assert_error(409, "conflict");
    let next = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2027-01-01"})),
        )
        .await;
    assert_eq!(next.status, 201, "{}", next.text);
    let off_day = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2027-04-02"})),
        )
        .await;
    assert!(off_day.assert_error(422, "validation_failed")["details"]["period_start"].is_string());
    let one_time = customer(&app, &admin, "Once Co", json!({"billing_frequency": "one_time", "monthly_fee": 10})).await;
    let r = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": one_time, "period_start": "2026-10-01"})),
        )
        .await;
    r.assert_error(409, "conflict");
    let end_of_month = customer(&app, &admin, "Month End", json!({"monthly_fee": 10, "billing_day": 31})).await;
    let r = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": end_of_month, "period_start": "2026-02-28"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Billing day 31 falls on 2026-03-31 next: this period's last day is the 30th.
    assert_eq!(r.json()["description"], "Recurring charges for 2026-02-28 – 2026-03-30", "{}", r.text);
}

/// The first period of a customer created today with billing day `day`, and its share of a full
/// period (days, full days), computed here from the calendar alone.
fn first_period(today: chrono::NaiveDate, day: u32, months: u32) -> (chrono::NaiveDate, chrono::NaiveDate, u32, u32) {
    use chrono::{Datelike, Months, NaiveDate};
    let billing_date = |any: NaiveDate| {
        let first = any.with_day(1).unwrap();
        let last = (first + Months::new(1)).pred_opt().unwrap().day();
        first.with_day(day.min(last)).unwrap()
    };
    let mut first = billing_date(today);
    if first < today {
        first = billing_date(today.with_day(1).unwrap() + Months::new(1));
    }
    if first == today {
        first = billing_date(today.with_day(1).unwrap() + Months::new(months));
    }
    let full_start = billing_date(first - Months::new(months));
    let days = |a: NaiveDate, b: NaiveDate| (b - a).num_days() as u32;
    (today, first, days(today, first), days(full_start, first))
}

/// `n × part ÷ whole` rounded half to even.
fn half_even(n: i64, part: u32, whole: u32) -> i64 {
    let (n, d) = (n as i128 * part as i128, whole as i128);
    let (q, r) = (n / d, n % d);
    (if 2 * r > d || (2 * r == d && q % 2 == 1) { q + 1 } else { q }) as i64
}

#[tokio::test]
async fn a_customer_onboarded_mid_period_is_billed_for_exactly_its_days() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let today = chrono::Utc::now().date_naive();
    let today_day = chrono::Datelike::day(&today);
    // A billing day other than today: the first period is partial.
    let day = if today_day == 1 { 15 } else { 1 };
    for (frequency, months) in [("monthly", 1), ("quarterly", 3), ("annual", 12)] {
        let fee = 1234.56;
        let billing = json!({"billing_frequency": frequency, "monthly_fee": fee, "billing_day": day});
        let cid = customer(&app, &admin, &format!("Mid {frequency}"), billing).await;
        accepted(&app, &admin, &cid, 100.0, json!([{"percentage": 100, "milestone": "Setup"}]), 99.99).await;
        let r = app.call(Method::POST, "/billing/generate-recurring", &admin, Some(json!({"customer_id": cid}))).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let invoice = r.json();
        let (start, end, days, full) = first_period(today, day, months);
        assert!(days < full, "{frequency}: {days}/{full}");
        let word = if frequency == "annual" { "annual" } else { frequency };
        let last = end.pred_opt().unwrap();
        let items = invoice["line_items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{invoice}");
        let expected = [
            (format!("Monthly fee: {start} – {last}, {days}/{full} of the {word} fee"), 123_456),
            (format!("Website rebuild (monthly): {start} – {last}, {days}/{full} of the {word} amount"), 9_999),
        ];
        for (item, (description, monthly)) in items.iter().zip(expected) {
            let amount = half_even(monthly * months as i64, days, full);
            assert_eq!(item["description"], description.as_str());
            assert_eq!((item["quantity"].as_i64(), cents(&item["amount"])), (Some(1), amount), "{item}");
        }
        let total: i64 = items.iter().map(|i| cents(&i["amount"])).sum();
        assert_eq!(cents(&invoice["total_amount"]), total);
        // Billed once: the job's period and this one are the same.
        let again =
            app.call(Method::POST, "/billing/generate-recurring", &admin, Some(json!({"customer_id": cid}))).await;
        again.assert_error(409, "conflict");
        // The next period is a full one from the first billing day.
        let next = app
            .call(
                Method::POST,
                "/billing/generate-recurring",
                &admin,
                Some(json!({"customer_id": cid, "period_start": end.to_string()})),
            )
            .await;
        assert_eq!(next.status, 201, "{}", next.text);
        assert_eq!(cents(&next.json()["amount"]), (123_456 + 9_999) * months as i64);
    }
    // Created on its billing day: a full first period.
    let cid = customer(&app, &admin, "On the day", json!({"monthly_fee": 1000, "billing_day": today_day})).await;
    let r = app.call(Method::POST, "/billing/generate-recurring", &admin, Some(json!({"customer_id": cid}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let invoice = r.json();
    assert_eq!(cents(&invoice["amount"]), 100_000);
    assert_eq!(invoice["line_items"][0]["description"], "Monthly fee");
    assert!(invoice["description"].as_str().unwrap().contains(&today.to_string()), "{invoice}");
}

#[tokio::test]
async fn fifty_concurrent_generations_get_fifty_consecutive_numbers() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Busy Co", json!({"monthly_fee": 10, "billing_day": 1})).await;
    let calls = (0..50).map(|i| {
        let start = format!("{}-{:02}-01", 2020 + i / 12, i % 12 + 1);
        app.call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": start})),
        )
    });
    let replies = futures_util::future::join_all(calls).await;
    let mut numbers = BTreeSet::new();
    for r in &replies {
        assert_eq!(r.status, 201, "{}", r.text);
        numbers.insert(r.json()["invoice_number"].as_str().unwrap().to_string());
    }
    let year = chrono::Utc::now().format("%Y").to_string();
    let expected: BTreeSet<String> = (1..=50).map(|n| format!("INV-{year}-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn infrastructure_costs_payments_and_cancellation() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Infra Co", json!({"tax_rate": 10})).await;
    let pid = accepted(
        &app,
        &admin,
        &cid,
        1000.0,
        json!([{"percentage": 60, "milestone": "A"}, {"percentage": 40, "milestone": "B"}]),
        0.0,
    )
    .await;
    let invoices = app
        .call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": pid})))
        .await
        .json();
    let (a, b) = (invoices[0]["id"].as_str().unwrap(), invoices[1]["id"].as_str().unwrap());

    let r = app
        .call(
            Method::PUT,
            &format!("/billing/invoices/{a}/infrastructure-costs"),
            &admin,
            Some(json!({"infrastructure_costs": 12.34})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let inv = r.json();
    assert_eq!(cents(&inv["infrastructure_costs"]), 1_234);
    assert_eq!(cents(&inv["total_amount"]), 60_000 + 6_000 + 1_234);
    let r = app
        .call(
            Method::PUT,
            &format!("/billing/invoices/{a}/infrastructure-costs"),
            &admin,
            Some(json!({"infrastructure_costs": -1})),
        )
        .await;
    r.assert_error(422, "validation_failed");

    let paid = mark_paid(&app, &admin, a).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["payment_method"], "bank_transfer");
    assert!(paid["paid_date"].is_string());
    app.call(
        Method::PUT,
        &format!("/billing/invoices/{a}/infrastructure-costs"),
        &admin,
        Some(json!({"infrastructure_costs": 1})),
    )
    .await
    .assert_error(409, "conflict");
    app.call(Method::POST, &format!("/billing/invoices/{a}/cancel"), &admin, None).await.assert_error(409, "conflict");
    app.call(
        Method::POST,
        &format!("/billing/invoices/{a}/mark-paid"),
        &admin,
        Some(json!({"payment_method": "manual"})),
    )
    .await
    .assert_error(409, "conflict");

    let r = app.call(Method::POST, &format!("/billing/invoices/{b}/cancel"), &admin, None).await;
    assert_eq!(r.json()["status"], "cancelled");
    app.call(Method::POST, &format!("/billing/invoices/{b}/cancel"), &admin, None).await.assert_error(409, "conflict");
    let paid =
        app.call(Method::GET, &format!("/billing/invoices/customer/{cid}?status=paid"), &admin, None).await.json();
    assert_eq!(paid.as_array().unwrap().len(), 1);
    assert_eq!(paid[0]["id"], json!(a));
}

#[tokio::test]
async fn stats_and_overview_equal_sums_of_the_invoice_lists() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let acme = customer(&app, &admin, "Acme", json!({"monthly_fee": 100, "tax_rate": 19})).await;
    let beta = customer(&app, &admin, "Beta", json!({"monthly_fee": 50.5, "billing_frequency": "quarterly"})).await;
    let _one_time = customer(&app, &admin, "Gamma", json!({"monthly_fee": 999, "billing_frequency": "one_time"})).await;
    accepted(
        &app,
        &admin,
        &acme,
        1234.56,
        json!([{"percentage": 25, "milestone": "A"}, {"percentage": 75, "milestone": "B"}]),
        40.0,
    )
    .await;
    let p = accepted(&app, &admin, &beta, 999.99, json!([{"percentage": 33.3333, "milestone": "A"}, {"percentage": 33.3333, "milestone": "B"}, {"percentage": 33.3334, "milestone": "C"}]), 0.0).await;
    for pid in [p] {
        app.call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": pid}))).await;
    }
    let acme_p = app.call(Method::GET, &format!("/proposals/customer/{acme}"), &admin, None).await.json();
    app.call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": acme_p[0]["id"]})))
        .await;
    app.call(
        Method::POST,
        "/billing/generate-recurring",
        &admin,
        Some(json!({"customer_id": acme, "period_start": "2026-09-01"})),
    )
    .await;
    let beta_list = app.call(Method::GET, &format!("/billing/invoices/customer/{beta}"), &admin, None).await.json();
    app.call(
        Method::POST,
        &format!("/billing/invoices/{}/mark-paid", beta_list[0]["id"].as_str().unwrap()),
        &admin,
        Some(json!({"payment_method": "manual"})),
    )
    .await;
    app.call(Method::POST, &format!("/billing/invoices/{}/cancel", beta_list[1]["id"].as_str().unwrap()), &admin, None)
        .await;

    let mut all = Vec::new();
    for cid in [&acme, &beta] {
        let list = app.call(Method::GET, &format!("/billing/invoices/customer/{cid}"), &admin, None).await.json();
        all.extend(list.as_array().unwrap().clone());
    }
    let sum =
        |status: &str| all.iter().filter(|i| i["status"] == status).map(|i| cents(&i["total_amount"])).sum::<i64>();
    let count = |status: &str| all.iter().filter(|i| i["status"] == status).count() as u64;

    let stats = app.call(Method::GET, "/billing/stats", &admin, None).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    let stats = stats.json();
    let usd = &stats["currencies"][0];
    assert_eq!(usd["currency"], "USD");
    assert_eq!(cents(&usd["revenue_all_time"]), sum("paid"));
    assert_eq!(cents(&usd["revenue_this_month"]), sum("paid"));
    assert_eq!(cents(&usd["outstanding_amount"]), sum("pending") + sum("overdue"));
    assert_eq!(usd["outstanding_count"].as_u64(), Some(count("pending") + count("overdue")));
    assert_eq!(cents(&usd["overdue_amount"]), sum("overdue"));
    // MRR: Acme 100 + 40 recurring, Beta 50.50; Gamma bills once.
    assert_eq!(cents(&usd["mrr"]), 19_050);
    assert_eq!(cents(&usd["arr"]), 19_050 * 12);
    for status in ["pending", "paid", "overdue", "cancelled", "draft"] {
        assert_eq!(stats["invoices_by_status"][status].as_u64(), Some(count(status)), "{status}");
    }
    assert_eq!(stats["customers_by_status"]["active"], 3);

    let overview = app.call(Method::GET, &format!("/billing/customer/{beta}/overview"), &admin, None).await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    let overview = overview.json();
    let beta_now = app.call(Method::GET, &format!("/billing/invoices/customer/{beta}"), &admin, None).await.json();
    let beta_sum = |status: &str| {
        beta_now
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == status)
            .map(|i| cents(&i["total_amount"]))
            .sum::<i64>()
    };
    assert_eq!(cents(&overview["paid_to_date"]), beta_sum("paid"));
    assert_eq!(cents(&overview["outstanding_amount"]), beta_sum("pending") + beta_sum("overdue"));
    assert_eq!(overview["recent_invoices"].as_array().unwrap().len(), 3);
    assert_eq!(overview["recent_invoices"][0]["id"], beta_now[0]["id"]);
    assert_eq!(cents(&overview["next_invoice_amount"]), 15_150);
    assert!(overview["next_invoice_date"].as_str().unwrap().ends_with("-01"));
    assert_eq!(overview["billing_settings"]["billing_frequency"], "quarterly");

    let token = user_token(&app, &admin, &beta, "user@beta.example.com").await;
    let mine = app.call(Method::GET, "/billing/my-billing", &token, None).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    assert_eq!(mine.json()["paid_to_date"], overview["paid_to_date"]);
}

#[tokio::test]
async fn a_customer_with_invoices_is_archived_and_restorable() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Archive Co", json!({"monthly_fee": 10})).await;
    let token = user_token(&app, &admin, &cid, "user@archive.example.com").await;
    let r = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": cid, "period_start": "2026-01-01"})),
        )
        .await;
    let invoice = r.json()["id"].as_str().unwrap().to_string();

    let r = app.call(Method::DELETE, &format!("/customers/{cid}"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["result"], "archived");
    app.call(Method::GET, &format!("/customers/{cid}"), &admin, None).await.assert_error(404, "not_found");
    app.call(Method::GET, &format!("/billing/invoices/{invoice}"), &admin, None).await.assert_error(404, "not_found");
    app.call(Method::GET, "/users/me", &token, None).await.assert_error(401, "unauthorized");
    // The right password of a disabled account answers exactly like a wrong one: no hint that it exists.
    let right = app.post("/auth/login", json!({"email": "user@archive.example.com", "password": PASSWORD})).await;
    let wrong =
        app.post("/auth/login", json!({"email": "user@archive.example.com", "password": "not the password"})).await;
    assert_eq!(right.assert_error(401, "unauthorized"), wrong.assert_error(401, "unauthorized"));
    let archived = app.call(Method::GET, "/customers?archived=true", &admin, None).await.json();
    assert_eq!(archived[0]["id"], json!(cid));

    let r = app.call(Method::POST, &format!("/customers/{cid}/restore"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().get("archived_at").is_none());
    let r = app.call(Method::GET, &format!("/billing/invoices/{invoice}"), &admin, None).await;
    assert_eq!(r.status, 200);
    app.login("user@archive.example.com", PASSWORD).await;
}

#[tokio::test]
async fn isolation_over_every_proposal_and_billing_endpoint() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let a = customer(&app, &admin, "Alpha", json!({"monthly_fee": 10})).await;
    let b = customer(&app, &admin, "Beta", json!({"monthly_fee": 10})).await;
    let token_a = user_token(&app, &admin, &a, "a@alpha.example.com").await;
    let pb = accepted(&app, &admin, &b, 100.0, json!([{"percentage": 100, "milestone": "All"}]), 0.0).await;
    let inv_b = app
        .call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": pb})))
        .await
        .json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Owner-open operations on B's objects: 404, exactly as if missing.
    let not_found = [
        format!("/proposals/customer/{b}"),
        format!("/proposals/{pb}"),
        format!("/billing/customer/{b}/overview"),
        format!("/billing/invoices/customer/{b}"),
        format!("/billing/invoices/{inv_b}"),
    ];
    let mut cases = 0;
    for path in &not_found {
        app.call(Method::GET, path, &token_a, None).await.assert_error(404, "not_found");
        app.send(app.request(Method::GET, path)).await.assert_error(401, "unauthorized");
        cases += 2;
    }
    // Admin-only operations: 403 for a customer user, whatever the ids.
    let forbidden: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/proposals".into(),
            Some(
                json!({"customer_id": a, "title": "x", "total_amount": 1, "billing_schedule": [{"percentage": 100, "milestone": "A"}]}),
            ),
        ),
        (Method::PUT, format!("/proposals/{pb}"), Some(json!({"title": "x"}))),
        (Method::DELETE, format!("/proposals/{pb}"), None),
        (Method::POST, format!("/proposals/{pb}/accept"), None),
        (Method::POST, format!("/proposals/{pb}/reject"), None),
        (Method::GET, "/billing/stats".into(), None),
        (
            Method::PUT,
            format!("/billing/invoices/{inv_b}/infrastructure-costs"),
            Some(json!({"infrastructure_costs": 1})),
        ),
        (Method::POST, format!("/billing/invoices/{inv_b}/cancel"), None),
        (Method::POST, format!("/billing/invoices/{inv_b}/mark-paid"), Some(json!({"payment_method": "manual"}))),
        (Method::POST, "/billing/generate-from-proposal".into(), Some(json!({"proposal_id": pb}))),
        (Method::POST, "/billing/generate-recurring".into(), Some(json!({"customer_id": a}))),
    ];
    for (method, path, body) in &forbidden {
        app.call(method.clone(), path, &token_a, body.clone()).await.assert_error(403, "forbidden");
        cases += 1;
    }
    // A's own data is visible; B's invoice is untouched.
    assert_eq!(app.call(Method::GET, &format!("/billing/invoices/customer/{a}"), &token_a, None).await.status, 200);
    assert_eq!(app.call(Method::GET, "/billing/my-billing", &token_a, None).await.json()["customer_id"], json!(a));
    let inv = app.call(Method::GET, &format!("/billing/invoices/{inv_b}"), &admin, None).await.json();
    assert_eq!(inv["status"], "pending");
    eprintln!("billing isolation: {cases} cases, 0 leaks");
}

#[tokio::test]
async fn an_invoice_past_due_counts_as_overdue_at_once_in_stats_and_overview() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // Due the moment it is issued: overdue before any sweep has recorded it.
    let cid = customer(&app, &admin, "Due Now", json!({"monthly_fee": 70, "payment_terms_days": 0})).await;
    recurring_invoice(&app, &admin, &cid, "2026-01-01").await;
    let stats = app.call(Method::GET, "/billing/stats", &admin, None).await.json();
    let usd = stats["currencies"].as_array().unwrap().iter().find(|c| c["currency"] == "USD").unwrap().clone();
    assert_eq!((usd["overdue_count"].as_u64(), usd["outstanding_count"].as_u64()), (Some(1), Some(1)), "{usd}");
    assert_eq!(cents(&usd["overdue_amount"]), 7000);
    assert_eq!(stats["invoices_by_status"]["overdue"], 1);
    assert_eq!(stats["invoices_by_status"]["pending"], 0);
    let overview = app.call(Method::GET, &format!("/billing/customer/{cid}/overview"), &admin, None).await.json();
    assert_eq!(overview["overdue_count"], 1, "{overview}");
    assert_eq!(cents(&overview["overdue_amount"]), 7000);
    assert_eq!(cents(&overview["outstanding_amount"]), 7000);
}

#[tokio::test]
async fn invoice_lists_page_with_their_cursor_with_and_without_a_status() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Pages", json!({"monthly_fee": 10})).await;
    let mut issued = Vec::new();
    for month in 1..=7 {
        let invoice = recurring_invoice(&app, &admin, &cid, &format!("2030-{month:02}-01")).await;
        issued.push(invoice["id"].as_str().unwrap().to_string());
    }
    for paid in [&issued[1], &issued[4], &issued[5]] {
        mark_paid(&app, &admin, paid).await;
    }
    // Every page through the cursor, as a client walks it.
    let walk = |query: &'static str| {
        let (app, admin, cid) = (&app, &admin, &cid);
        async move {
            // The first page with an empty `cursor=`, as clients that always send it ask.
            let (mut ids, mut cursor) = (Vec::new(), String::new());
            loop {
                let path = format!("/billing/invoices/customer/{cid}?limit=2{query}&cursor={cursor}");
                let r = app.call(Method::GET, &path, admin, None).await;
                assert_eq!(r.status, 200, "{path}: {}", r.text);
                ids.extend(r.json().as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()));
                match r.header("x-next-cursor") {
                    Some(next) => cursor = next.to_string(),
                    None => return ids,
                }
            }
        }
    };
    let newest_first: Vec<String> = issued.iter().rev().cloned().collect();
    assert_eq!(walk("").await, newest_first);
    let paid: Vec<String> = [&issued[5], &issued[4], &issued[1]].map(String::clone).to_vec();
    assert_eq!(walk("&status=paid").await, paid);
    let pending: Vec<String> = [&issued[6], &issued[3], &issued[2], &issued[0]].map(String::clone).to_vec();
    assert_eq!(walk("&status=pending").await, pending);
}
