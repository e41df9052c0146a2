//! Invoices and proposals as PDF: who may fetch them, what a reader sees in them (text pulled out with
//! poppler's pdftotext), the same bytes for the same record, milestone amounts as the invoices split them.
//! Each PDF and a PNG of its first page are kept under `target/test-artifacts/` for a person to look at.

use std::path::PathBuf;
use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::billing::{customer, mark_paid, recurring_invoice, user_token};
use crate::helpers::TestApp;
use crate::organization::png;

/// The PDF at `path` as `token` gets it: status, content type, content disposition, bytes.
async fn fetch(app: &TestApp, path: &str, token: &str) -> (u16, String, String, Vec<u8>) {
    let r = app.request(Method::GET, path).bearer_auth(token).send().await.unwrap();
    let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, content_type, disposition) =
        (r.status().as_u16(), header("content-type"), header("content-disposition"));
    (status, content_type, disposition, r.bytes().await.unwrap().to_vec())
}

/// The PDF's text as pdftotext reads it (layout kept, no-break spaces as spaces).
pub(crate) fn text_of(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext").arg("-layout").arg(&path).arg("-").output().expect("pdftotext (poppler-utils)");
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().replace(['\u{a0}', '\u{202f}'], " ")
}

/// Keeps `pdf` and a PNG of its first page as test artifacts.
pub(crate) fn keep(name: &str, pdf: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    let status = Command::new("pdftoppm")
        .args(["-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&path)
        .arg(dir.join(name))
        .status()
        .expect("pdftoppm (poppler-utils)");
    assert!(status.success());
}

#[tokio::test]
async fn an_invoice_pdf_shows_the_invoice_to_those_who_may_see_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let profile = json!({
        "legal_name": "Northwind Studio GmbH",
        "address": {"street": "Torstraße 1", "city": "Berlin", "postal_code": "10119", "country": "DE"},
        "tax_id": "DE123456789",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "invoice_footer": "Northwind Studio GmbH · HRB 12345",
        "default_locale": "de-DE",
    });
    let r = app.call(Method::PUT, "/organization", &admin, Some(profile)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let logo = app.request(Method::PUT, "/organization/logo").bearer_auth(&admin).header("content-type", "image/png");
    let logo = logo.body(png(300, 100)).send().await;
    assert_eq!(logo.unwrap().status(), 200);

    let billing = json!({"monthly_fee": 1234.5, "currency": "EUR", "tax_rate": 19, "billing_day": 1});
    let cid = customer(&app, &admin, "Acme Corporation", billing).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-11-01").await;
    let id = invoice["id"].as_str().unwrap();
    let number = invoice["invoice_number"].as_str().unwrap();
    let costs = json!({"infrastructure_costs": 10.25});
    let r = app.call(Method::PUT, &format!("/billing/invoices/{id}/infrastructure-costs"), &admin, Some(costs)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 1,234.50 + 19 % tax (234.56, half to even) + 10.25 at cost.
    assert_eq!(r.json()["total_amount"], 1479.31);

    let path = format!("/billing/invoices/{id}/pdf");
    let (status, content_type, disposition, pdf) = fetch(&app, &path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/pdf");
    assert_eq!(disposition, format!("inline; filename=\"{number}.pdf\""));
    assert!(pdf.starts_with(b"%PDF-"));
    keep("invoice", &pdf);
    let text = text_of(&pdf);
    for shown in [
        number,
        "Northwind Studio GmbH",
        "10119 Berlin",
        "Acme Corporation",
        "1.234,50 €",
        "Tax (19 %)",
        "234,56 €",
        "10,25 €",
        "1.479,31 €",
        "2026-11-01",
        "IBAN DE89 3704 0044 0532 0130 00",
        "Northwind Studio GmbH · HRB 12345",
    ] {
        assert!(text.contains(shown), "{shown:?} missing from:\n{text}");
    }
    assert!(!text.contains("PAID"), "{text}");

    // The same invoice gives the same bytes, whoever asks; only its own customer's users may ask.
    assert_eq!(fetch(&app, &path, &admin).await.3, pdf);
    let user = user_token(&app, &admin, &cid, "ap@acme.example").await;
    let (status, _, _, as_customer) = fetch(&app, &path, &user).await;
    assert_eq!(status, 200);
    assert_eq!(as_customer, pdf);
    let other = customer(&app, &admin, "Globex", json!({})).await;
    let stranger = user_token(&app, &admin, &other, "ap@globex.example").await;
    app.call(Method::GET, &path, &stranger, None).await.assert_error(404, "not_found");
    app.send(app.request(Method::GET, &path)).await.assert_error(401, "unauthorized");
    let missing = format!("/billing/invoices/{}/pdf", uuid::Uuid::now_v7());
    app.call(Method::GET, &missing, &admin, None).await.assert_error(404, "not_found");

    // Paid: stamped, and no longer asks for money.
    mark_paid(&app, &admin, id).await;
    let (_, _, _, paid) = fetch(&app, &path, &admin).await;
    keep("invoice-paid", &paid);
    let text = text_of(&paid);
    assert!(text.contains("PAID"), "{text}");
    assert!(!text.contains("Amount due"), "{text}");
}

#[tokio::test]
async fn a_proposal_pdf_shows_each_milestone_as_its_invoice_will_bill_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Acme Corporation", json!({"currency": "USD", "tax_rate": 7.5})).await;
    let schedule = json!([
        {"milestone": "Kick-off", "percentage": 33.3333, "due_days": 0},
        {"milestone": "Beta", "percentage": 33.3333},
        {"milestone": "Launch", "percentage": 33.3334, "due_days": 30},
    ]);
    let body = json!({"customer_id": cid, "title": "Website rebuild", "total_amount": 1000.0,
        "billing_schedule": schedule, "monthly_recurring_amount": 99.0});
    let r = app.call(Method::POST, "/proposals", &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let pid = r.json()["id"].as_str().unwrap().to_string();
    let path = format!("/proposals/{pid}/pdf");
    let (status, content_type, _, pdf) = fetch(&app, &path, &admin).await;
    assert_eq!((status, content_type.as_str()), (200, "application/pdf"));
    keep("proposal", &pdf);
    let text = text_of(&pdf);
    for shown in ["Website rebuild", "Acme Corporation", "Kick-off", "on issue", "30 days after issue", "$99.00"] {
        assert!(text.contains(shown), "{shown:?} missing from:\n{text}");
    }

    // The amounts printed are the amounts billed.
    let r = app.call(Method::POST, &format!("/proposals/{pid}/accept"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.call(Method::POST, "/billing/generate-from-proposal", &admin, Some(json!({"proposal_id": pid}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut sum = 0;
    for invoice in r.json().as_array().unwrap() {
        let (net, total) = (invoice["amount"].as_f64().unwrap(), invoice["total_amount"].as_f64().unwrap());
        for amount in [net, total] {
            let shown = format!("${amount:.2}");
            assert!(text.contains(&shown), "{shown} missing from:\n{text}");
        }
        sum += (total * 100.0).round() as i64;
    }
    let with_tax = format!("${},{:03}.{:02}", sum / 100_000, sum / 100 % 1000, sum % 100);
    assert_eq!(with_tax, "$1,075.00");
    assert!(text.contains(&with_tax), "total with tax {with_tax} missing:\n{text}");

    let other = customer(&app, &admin, "Globex", json!({})).await;
    let stranger = user_token(&app, &admin, &other, "ap@globex.example").await;
    app.call(Method::GET, &path, &stranger, None).await.assert_error(404, "not_found");
    app.send(app.request(Method::GET, &path)).await.assert_error(401, "unauthorized");
}
