//! The hosted pages as a customer uses them, in headless Chromium (scripts/browser/pages.mjs) with
//! localstripe's fake Stripe.js: the issue mail arrives at a real SMTP server with the invoice's PDF, its pay
//! link opens the page, a declined card leaves the invoice open, a good card pays it exactly once and a
//! receipt follows, a card that needs 3-D Secure pays once authenticated; the card page saves a card that
//! the API then lists as the default. Screenshots of the pages and a PNG of the PDF are kept under
//! `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::Command;

use portal_core::config::Secret;
use portal_testkit::{LocalStripe, SmtpServer};
use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, recurring_invoice, user_token};
use crate::documents::{keep, text_of};
use crate::helpers::{TestApp, MAIL_WAIT};
use crate::payments::{pay_link, StripeSide, DECLINING_CARD, GOOD_CARD, STRIPE_KEY};

/// localstripe: a card whose bank asks for 3-D Secure.
const AUTHENTICATED_CARD: &str = "4000002500003155";

/// Runs the page script on `url` with `card`, expecting `outcome`; returns the page's text afterwards. (On
/// a blocking thread: the portal under test runs on the test's own.)
async fn use_page(url: &str, card: &str, outcome: &str, shots: &str) -> String {
    let args = [url, card, outcome, shots].map(str::to_string);
    tokio::task::spawn_blocking(move || run_page_script(&args)).await.unwrap()
}

fn run_page_script([url, card, outcome, shots]: &[String; 4]) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg(root.join("scripts/browser/pages.mjs"))
        .args([url, card, outcome])
        .arg(artifacts.join(shots))
        .output()
        .expect("node (scripts/test installs Chromium and playwright-core)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the {outcome} page script failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

async fn invoice_of(app: &TestApp, admin: &str, id: &str) -> Value {
    let r = app.call(Method::GET, &format!("/billing/invoices/{id}"), admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// A portal that charges through localstripe and loads its fake Stripe.js; mail through `smtp` if given.
async fn app_with(ls: &LocalStripe, smtp: Option<&SmtpServer>) -> TestApp {
    let (smtp_url, stripe_base) = (smtp.map(SmtpServer::url), ls.url());
    TestApp::spawn_with(move |c| {
        c.notify.smtp_url = smtp_url.map(Secret::new);
        c.stripe.stripe_secret_key = Some(Secret::new(STRIPE_KEY));
        c.stripe.stripe_publishable_key = Some("pk_test_portal_pages".into());
        c.stripe.stripe_js_url = format!("{stripe_base}js.stripe.com/v3/");
        c.stripe.stripe_api_base = stripe_base;
    })
    .await
}

/// A card form call as a browser makes it: status and JSON.
async fn form_call(url: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_customer_pays_from_the_mail_with_a_new_card_and_saves_a_card_from_a_link() {
    let (smtp, ls) = (SmtpServer::start(), LocalStripe::start());
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls, Some(&smtp)).await;
    let admin = app.admin_token().await;
    let profile = json!({"legal_name": "Northwind Studio GmbH", "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX", "default_locale": "en-US"});
    assert_eq!(app.call(Method::PUT, "/organization", &admin, Some(profile)).await.status, 200);
    let cid = customer(&app, &admin, "Harbor Goods", json!({"monthly_fee": 480, "tax_rate": 25})).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-11-01").await;
    let (id, number) = (invoice["id"].as_str().unwrap(), invoice["invoice_number"].as_str().unwrap());

    // The issue mail: its PDF shows the number and the total, and it links the pay page.
    let mail = smtp.wait_for_mail_with("ap@example.com", number, MAIL_WAIT).await;
    let pdf = mail.attachments.iter().find(|a| a.content_type == "application/pdf").expect("the invoice PDF").bytes();
    keep("pay-page-mail-invoice", &pdf);
    let text = text_of(&pdf);
    assert!(text.contains(number) && text.contains("$600.00"), "{text}");
    let link = mail.body.lines().find_map(|l| l.strip_prefix("Pay online: ")).expect("a pay link").to_string();
    assert!(link.starts_with(&app.url("/pay/")), "{link}");

    // A card that is declined: the form says so, the invoice stays open and nothing is charged.
    let page = use_page(&link, DECLINING_CARD, "declined", "pay-page-card-declined").await;
    assert!(page.contains(number) && page.contains("$600.00"), "{page}");
    assert_eq!(invoice_of(&app, &admin, id).await["status"], "pending");
    let intents = stripe.intents_of(id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_ne!(intents[0]["status"], "succeeded");

    // A good card pays it, once; the receipt follows.
    let page = use_page(&link, GOOD_CARD, "paid", "pay-page-card-paid").await;
    assert!(page.contains("Paid"), "{page}");
    let paid = invoice_of(&app, &admin, id).await;
    assert_eq!((paid["status"].as_str(), paid["total_amount"].as_f64()), (Some("paid"), Some(600.0)));
    let intents = stripe.intents_of(id).await;
    let succeeded: Vec<&Value> = intents.iter().filter(|pi| pi["status"] == "succeeded").collect();
    assert_eq!(succeeded.len(), 1, "{intents:?}");
    assert_eq!((succeeded[0]["amount"].as_i64(), succeeded[0]["currency"].as_str()), (Some(60_000), Some("usd")));
    assert_eq!(paid["stripe_payment_intent_id"], succeeded[0]["id"]);
    let receipt = smtp.wait_for_mail_with("ap@example.com", "Receipt for invoice", MAIL_WAIT).await;
    assert!(receipt.body.contains(number), "{}", receipt.body);
    // A card whose bank asks for 3-D Secure, on the next invoice: the customer passes it on the page
    // (confirmCardPayment) and the invoice is paid.
    let next = recurring_invoice(&app, &admin, &cid, "2026-12-01").await;
    let (next_id, next_number) = (next["id"].as_str().unwrap(), next["invoice_number"].as_str().unwrap());
    let mail = smtp.wait_for_mail_with("ap@example.com", next_number, MAIL_WAIT).await;
    let next_link = mail.body.lines().find_map(|l| l.strip_prefix("Pay online: ")).expect("a pay link").to_string();
    use_page(&next_link, AUTHENTICATED_CARD, "paid", "pay-page-card-3ds").await;
    assert_eq!(invoice_of(&app, &admin, next_id).await["status"], "paid");
    let intents = stripe.intents_of(next_id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["status"], "succeeded");

    // No card was kept: the customer did not ask for it.
    let cards = app.call(Method::GET, &format!("/billing/payment-methods/customer/{cid}"), &admin, None).await;
    assert_eq!(cards.json(), json!([]), "{}", cards.text);

    // The card page, from a link an admin makes: the card saved there becomes the default.
    let r = app.call(Method::POST, &format!("/billing/payment-methods/customer/{cid}/link"), &admin, None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let card_link = r.json()["url"].as_str().unwrap().to_string();
    assert!(card_link.starts_with(&app.url("/cards/")), "{card_link}");
    let page = use_page(&card_link, GOOD_CARD, "saved", "card-page").await;
    assert!(page.contains("Save a card for Harbor Goods"), "{page}");
    let cards = app.call(Method::GET, &format!("/billing/payment-methods/customer/{cid}"), &admin, None).await.json();
    let cards = cards.as_array().unwrap();
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!((cards[0]["last4"].as_str(), cards[0]["is_default"].as_bool()), (Some("4242"), Some(true)));
}

#[tokio::test]
async fn the_card_form_charges_only_a_card_confirmed_for_the_invoices_customer() {
    let ls = LocalStripe::start();
    let stripe = StripeSide::new(&ls);
    let app = app_with(&ls, None).await;
    let admin = app.admin_token().await;
    let payer = customer(&app, &admin, "Payer Co", json!({"monthly_fee": 90})).await;
    let other = customer(&app, &admin, "Other Co", json!({"monthly_fee": 10})).await;
    let invoice = recurring_invoice(&app, &admin, &payer, "2026-11-01").await;
    let (id, number) = (invoice["id"].as_str().unwrap(), invoice["invoice_number"].as_str().unwrap());
    let link = pay_link(&app, number).await;

    // The page loads Stripe.js and the form's script, and its CSP allows exactly those.
    let r = reqwest::get(&link).await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    let html = r.text().await.unwrap();
    let origin = ls.url().trim_end_matches('/').to_string();
    assert!(csp.contains(&format!("script-src {origin} 'sha256-")), "{csp}");
    assert!(csp.contains(&format!("frame-src {origin}")) && csp.contains("default-src 'none'"), "{csp}");
    assert!(html.contains(&format!("<script src=\"{origin}/js.stripe.com/v3/\"></script>")), "{html}");
    assert!(html.contains("id=\"card-form\" hidden"), "the form shows only once Stripe.js runs: {html}");

    // A card confirmed for another customer pays nothing here.
    let r = app.call(Method::POST, "/billing/payment-methods/setup", &admin, Some(json!({"customer_id": other}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let foreign = r.json()["setup_intent_id"].as_str().unwrap().to_string();
    let record = app.call(Method::GET, &format!("/customers/{other}"), &admin, None).await.json();
    stripe.save_card(&foreign, record["stripe_customer_id"].as_str().unwrap(), GOOD_CARD).await;
    let body = json!({"setup_intent_id": foreign, "save": true}).to_string();
    let (status, answer) = form_call(&format!("{link}/card/pay"), &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (422, Some("validation_failed")), "{answer}");
    assert!(stripe.intents_of(id).await.is_empty(), "nothing charged");

    // A setup the customer has not confirmed yet is refused too; a malformed body or id is a 400/422.
    let (status, started) = form_call(&format!("{link}/card"), r#"{"save":false}"#).await;
    assert_eq!(status, 200, "{started}");
    let unconfirmed = started["client_secret"].as_str().unwrap().split("_secret_").next().unwrap().to_string();
    let body = json!({"setup_intent_id": unconfirmed}).to_string();
    let (status, answer) = form_call(&format!("{link}/card/pay"), &body).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (409, Some("conflict")), "{answer}");
    let (status, answer) = form_call(&format!("{link}/card/pay"), "not json").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("bad_request")), "{answer}");
    let (status, answer) = form_call(&format!("{link}/card/pay"), r#"{"setup_intent_id":"../customers"}"#).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        app.call(Method::GET, &format!("/billing/invoices/{id}"), &admin, None).await.json()["status"],
        "pending"
    );

    // A link that opens nothing answers the form in the envelope.
    let (status, answer) = form_call(&app.url("/pay/forged/card"), "{}").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (404, Some("not_found")), "{answer}");

    // Card links: for admins and the customer's own users only.
    let path = format!("/billing/payment-methods/customer/{payer}/link");
    let stranger = user_token(&app, &admin, &other, "someone@other.example").await;
    app.call(Method::POST, &path, &stranger, None).await.assert_error(404, "not_found");
    assert_eq!(app.request(Method::POST, &path).send().await.unwrap().status(), 401);
    let own = user_token(&app, &admin, &payer, "me@payer.example").await;
    let r = app.call(Method::POST, &path, &own, None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first = r.json()["url"].as_str().unwrap().to_string();
    let second = app.call(Method::POST, &path, &admin, None).await.json()["url"].as_str().unwrap().to_string();
    let replaced = reqwest::get(&first).await.unwrap();
    assert_eq!(replaced.status(), 404);
    assert!(replaced.text().await.unwrap().contains("This card link is not valid"));
    let current = reqwest::get(&second).await.unwrap();
    assert_eq!(current.status(), 200);
    assert!(current.text().await.unwrap().contains("No card is saved yet."));
}
