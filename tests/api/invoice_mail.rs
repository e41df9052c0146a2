//! Invoice mail through a real SMTP server: the issue mail with its PDF and pay link to the billing address
//! and the users who chose invoice mail, the receipt after payment, a resend under a new Message-ID, and
//! each mail's record (Message-ID, recipients, when it went out).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, mark_paid, recurring_invoice, user_token};
use crate::documents::text_of;
use crate::helpers::{TestApp, MAIL_WAIT};

/// The invoice's mail records, once every one of them went out.
pub(crate) async fn sent_mails(app: &TestApp, admin: &str, invoice: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + MAIL_WAIT;
    loop {
        let r = app.call(Method::GET, &format!("/billing/invoices/{invoice}/mails"), admin, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let mails = r.json().as_array().unwrap().clone();
        if mails.len() == count && mails.iter().all(|m| m.get("sent_at").is_some()) {
            return mails;
        }
        assert!(std::time::Instant::now() < deadline, "mails not sent: {mails:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Without a mail server the issue mail goes to the outbox in the transaction that records it sent:
/// once for each recipient, with its pay link, and the record says when.
#[tokio::test]
async fn without_a_mail_server_an_issue_mail_is_kept_once_per_recipient_and_recorded_sent() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Outbox Co", json!({"monthly_fee": 300, "currency": "EUR"})).await;
    user_token(&app, &admin, &cid, "cfo@outbox.example").await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-10-01").await;
    let (id, number) = (invoice["id"].as_str().unwrap(), invoice["invoice_number"].as_str().unwrap());
    let mails = sent_mails(&app, &admin, id, 1).await;
    assert_eq!(mails[0]["to"], json!(["ap@example.com", "cfo@outbox.example"]));
    let kept: Vec<_> = portal_notify::outbox(&app.store, 1_000)
        .unwrap()
        .into_iter()
        .filter(|m| m.subject.as_deref().is_some_and(|s| s.contains(number)))
        .collect();
    let mut to: Vec<&str> = kept.iter().map(|m| m.to.as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["ap@example.com", "cfo@outbox.example"], "{kept:?}");
    assert!(kept.iter().all(|m| m.body.contains("Pay online: ")), "{kept:?}");
    let sent_at = mails[0]["sent_at"].as_str().unwrap();
    assert!(kept.iter().all(|m| m.created_at.to_rfc3339() == sent_at), "kept when recorded sent, {sent_at}: {kept:?}");
}

/// A burst of issue mails, settled a batch at a time without a mail server: each invoice's mail is kept
/// once, under its own subject and pay link, and recorded sent.
#[tokio::test]
async fn without_a_mail_server_a_burst_of_issue_mails_is_kept_once_each() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Burst Co", json!({"monthly_fee": 100, "currency": "EUR"})).await;
    let mut issued = Vec::new();
    for month in 1..=40 {
        let invoice =
            recurring_invoice(&app, &admin, &cid, &format!("{}-{:02}-01", 2023 + month / 12, month % 12 + 1)).await;
        issued.push((
            invoice["id"].as_str().unwrap().to_string(),
            invoice["invoice_number"].as_str().unwrap().to_string(),
        ));
    }
    for (id, _) in &issued {
        sent_mails(&app, &admin, id, 1).await;
    }
    let kept = portal_notify::outbox(&app.store, 1_000).unwrap();
    for (_, number) in &issued {
        let word = format!("{number}:");
        let names = |m: &&portal_notify::OutboxMessage| {
            m.subject.as_deref().and_then(|s| s.split_whitespace().nth(1)) == Some(word.as_str())
        };
        let copies: Vec<_> = kept.iter().filter(names).collect();
        assert_eq!(copies.len(), 1, "{number}: {kept:?}");
        assert_eq!(copies[0].to, "ap@example.com");
        assert!(copies[0].body.contains(number.as_str()) && copies[0].body.contains("Pay online: "), "{:?}", copies[0]);
    }
    assert_eq!(kept.len(), issued.len(), "only the burst's mails: {kept:?}");
}

#[tokio::test]
async fn an_issued_invoice_is_mailed_with_its_pdf_and_pay_link_and_payment_brings_a_receipt() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let admin = app.admin_token().await;
    let profile = json!({"legal_name": "Northwind Studio GmbH", "iban": "DE89370400440532013000",
        "default_locale": "en-US", "invoice_footer": "Northwind Studio GmbH · HRB 12345"});
    assert_eq!(app.call(Method::PUT, "/organization", &admin, Some(profile)).await.status, 200);
    let cid = customer(&app, &admin, "Acme <Corp>", json!({"monthly_fee": 1200, "currency": "USD"})).await;
    user_token(&app, &admin, &cid, "cfo@acme.example").await;
    let quiet = user_token(&app, &admin, &cid, "dev@acme.example").await;
    let off = json!({"notifications": {"invoice_emails": false}});
    assert_eq!(app.call(Method::PUT, "/users/me/settings", &quiet, Some(off)).await.status, 200);

    let invoice = recurring_invoice(&app, &admin, &cid, "2026-11-01").await;
    let (id, number) = (invoice["id"].as_str().unwrap(), invoice["invoice_number"].as_str().unwrap());
    let issued = smtp.wait_for_mail_with("ap@example.com", number, MAIL_WAIT).await;
    assert_eq!(
        issued.subject,
        format!(
            "Invoice {number} from Northwind Studio GmbH: $1,200.00 due {}",
            &invoice["due_date"].as_str().unwrap()[..10]
        )
    );
    let cfo = smtp.wait_for_mail_with("cfo@acme.example", number, MAIL_WAIT).await;
    assert_eq!(cfo.message_id, issued.message_id, "one message to every recipient");

    // The record names the Message-ID the mail went out under, its recipients and when it was sent.
    let mails = sent_mails(&app, &admin, id, 1).await;
    assert_eq!(mails[0]["kind"], "issued");
    assert_eq!(mails[0]["to"], json!(["ap@example.com", "cfo@acme.example"]));
    assert_eq!(issued.message_id, format!("<{}@localhost>", mails[0]["id"].as_str().unwrap()));
    assert!(smtp.all_mail().iter().all(|m| m.to != "dev@acme.example"), "a user who opted out got invoice mail");

    // Text and HTML parts, the pay link to this server, the PDF attached.
    let pay_link = issued.body.lines().find_map(|l| l.strip_prefix("Pay online: ")).expect("pay link").to_string();
    assert!(pay_link.starts_with(&format!("http://{}/pay/", app.addr)), "{pay_link}");
    assert!(issued.body.contains("IBAN DE89 3704 0044 0532 0130 00"), "{}", issued.body);
    let html = issued.html.as_deref().expect("an HTML part");
    assert!(html.contains(&format!("href=\"{pay_link}\"")), "{html}");
    assert!(html.contains("Hello Acme &lt;Corp&gt;,"), "names are escaped in HTML: {html}");
    assert_eq!(issued.attachments.len(), 1);
    let attachment = &issued.attachments[0];
    assert_eq!(
        (attachment.filename.as_str(), attachment.content_type.as_str()),
        (&*format!("{number}.pdf"), "application/pdf")
    );
    let text = text_of(&attachment.bytes());
    assert!(text.contains(number) && text.contains("$1,200.00"), "{text}");
    let unwrapped: String = text.split_whitespace().collect();
    assert!(unwrapped.contains(&pay_link), "the PDF carries the mail's pay link {pay_link}: {text}");
    let served = app.request(Method::GET, &format!("/billing/invoices/{id}/pdf")).bearer_auth(&admin).send().await;
    let served = served.unwrap().bytes().await.unwrap().to_vec();
    assert_eq!(attachment.bytes(), served, "the attachment is the invoice's PDF");

    // Paid by hand: a receipt, with the PDF marked paid and no pay link.
    mark_paid(&app, &admin, id).await;
    let receipt = smtp.wait_for_mail_with("ap@example.com", "Receipt for invoice", MAIL_WAIT).await;
    assert!(
        receipt.body.contains(&format!("we received your payment of $1,200.00 for invoice {number}")),
        "{}",
        receipt.body
    );
    assert!(!receipt.body.contains("Pay online"), "{}", receipt.body);
    assert!(text_of(&receipt.attachments[0].bytes()).contains("PAID"));
    assert_ne!(receipt.message_id, issued.message_id);

    // Sent again by an admin: a new message, recorded like the others; customers' users may not.
    let r = app.call(Method::POST, &format!("/billing/invoices/{id}/send"), &admin, None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["kind"], "resent");
    let cfo_token =
        app.login("cfo@acme.example", "correct horse battery").await["access_token"].as_str().unwrap().to_string();
    app.call(Method::POST, &format!("/billing/invoices/{id}/send"), &cfo_token, None)
        .await
        .assert_error(403, "forbidden");
    let mails = sent_mails(&app, &admin, id, 3).await;
    let kinds: Vec<&str> = mails.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["issued", "receipt", "resent"]);
    let ids: std::collections::BTreeSet<String> =
        smtp.all_mail().iter().filter(|m| m.to == "ap@example.com").map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

#[tokio::test]
async fn a_refund_notice_carries_the_credit_note() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Credit Co", json!({"monthly_fee": 400})).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-11-01").await;
    let (id, number) = (invoice["id"].as_str().unwrap(), invoice["invoice_number"].as_str().unwrap());
    mark_paid(&app, &admin, id).await;
    let body = json!({"amount": 125, "reason": "Hosting credit for the outage"});
    let r = app.call(Method::POST, &format!("/billing/invoices/{id}/refund"), &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let note = r.json()["credit_note"]["credit_note_number"].as_str().unwrap().to_string();

    let mail = smtp.wait_for_mail_with("ap@example.com", "Refund for invoice", MAIL_WAIT).await;
    assert!(mail.body.contains(&format!("We refunded $125.00 of invoice {number}")), "{}", mail.body);
    assert!(mail.body.contains(&format!("The credit note is attached as {note}.pdf.")), "{}", mail.body);
    let names: Vec<&str> = mail.attachments.iter().map(|a| a.filename.as_str()).collect();
    assert_eq!(names, [format!("{number}.pdf"), format!("{note}.pdf")]);
    let text = text_of(&mail.attachments[1].bytes());
    assert!(
        text.contains(&note) && text.contains("$125.00") && text.contains("Hosting credit for the outage"),
        "{text}"
    );
    let invoice_text = text_of(&mail.attachments[0].bytes());
    assert!(invoice_text.contains(&format!("(credit note {note})")), "{invoice_text}");
}
