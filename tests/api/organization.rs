//! The agency's own profile and logo: admins only, every field checked, a PUT takes back what the GET gave,
//! logos checked for what they are and how big.

use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, user_token};
use crate::helpers::TestApp;

/// A whole PNG of `width`×`height` grey pixels.
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(&vec![0x80; (width * height) as usize]).unwrap();
    writer.finish().unwrap();
    out
}

async fn upload(app: &TestApp, token: &str, content_type: &str, bytes: Vec<u8>) -> crate::helpers::Reply {
    // The file's bytes under any content type; the format comes from the content.
    app.send(
        app.request(Method::PUT, "/organization/logo")
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(bytes),
    )
    .await
}

fn full_profile() -> Value {
    json!({
        "legal_name": "Northwind Studio GmbH",
        "address": {"street": "Torstraße 1", "city": "Berlin", "state": "", "postal_code": "10119", "country": "de"},
        "tax_id": "DE123456789",
        "email": "Billing@Northwind.example",
        "phone": "+493012345678",
        "website": "https://northwind.example",
        "iban": "de89 3704 0044 0532 0130 00",
        "bic": "cobadeffxxx",
        "bank_details": "Commerzbank Berlin\nPlease quote the invoice number.",
        "invoice_footer": "Northwind Studio GmbH · Managing director: A. Lovelace · HRB 12345",
        "default_locale": "de-DE",
    })
}

#[tokio::test]
async fn admins_fill_in_the_profile_and_every_field_is_checked() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    let empty = app.call(Method::GET, "/organization", &admin, None).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    let empty = empty.json();
    assert_eq!((empty["legal_name"].as_str(), empty["default_locale"].as_str()), (Some(""), Some("en-US")));
    assert!(empty.get("logo").is_none() && empty.get("iban").is_none(), "{empty}");

    let r = app.call(Method::PUT, "/organization", &admin, Some(full_profile())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let saved = r.json();
    assert_eq!(saved["iban"], "DE89370400440532013000");
    assert_eq!(saved["bic"], "COBADEFFXXX");
    assert_eq!(saved["email"], "billing@northwind.example");
    assert_eq!(saved["address"]["country"], "DE");
    assert_eq!(saved["bank_details"], "Commerzbank Berlin\nPlease quote the invoice number.");
    assert!(saved["updated_at"].is_string());
    assert_eq!(app.call(Method::GET, "/organization", &admin, None).await.json(), saved);

    // The GET's representation goes back with one field changed; `null` clears an optional one.
    let mut back = saved.clone();
    back["invoice_footer"] = json!("Thank you!");
    back["tax_id"] = Value::Null;
    let r = app.call(Method::PUT, "/organization", &admin, Some(back)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["invoice_footer"], "Thank you!");
    assert!(r.json().get("tax_id").is_none(), "{}", r.text);

    // Every bad field named at once; nothing written.
    let bad = json!({
        "iban": "DE88 3704 0044 0532 0130 00",
        "bic": "COBA1EFF",
        "website": "northwind.example",
        "email": "not-an-email",
        "address": {"country": "XX"},
        "default_locale": "german",
        "legal_name": "Evil\u{202e}Corp",
    });
    let r = app.call(Method::PUT, "/organization", &admin, Some(bad)).await;
    let error = r.assert_error(422, "validation_failed");
    for field in ["iban", "bic", "website", "email", "address.country", "default_locale", "legal_name"] {
        assert!(error["details"][field].is_string(), "{field} not named: {error}");
    }
    let now = app.call(Method::GET, "/organization", &admin, None).await.json();
    assert_eq!(now["iban"], "DE89370400440532013000", "a refused update wrote something");

    // Changing where customers pay is in the audit trail.
    let trail = app.call(Method::GET, "/audit?module=organization", &admin, None).await;
    assert_eq!(trail.status, 200, "{}", trail.text);
    assert_eq!(trail.json().as_array().map(Vec::len), Some(2), "{}", trail.text);
}

#[tokio::test]
async fn customer_users_may_not_read_or_change_the_profile_whatever_they_send() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Acme", json!({})).await;
    let user = user_token(&app, &admin, &cid, "user@acme.example").await;
    app.call(Method::GET, "/organization", &user, None).await.assert_error(403, "forbidden");
    for body in [json!({"iban": "stolen"}), json!({"nonsense": true}), json!(42)] {
        app.call(Method::PUT, "/organization", &user, Some(body)).await.assert_error(403, "forbidden");
    }
    upload(&app, &user, "application/octet-stream", png(10, 10)).await.assert_error(403, "forbidden");
    app.call(Method::GET, "/organization/logo", &user, None).await.assert_error(403, "forbidden");
}

#[tokio::test]
async fn logos_are_pngs_or_safe_svgs_of_at_most_512_kib() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    app.call(Method::GET, "/organization/logo", &admin, None).await.assert_error(404, "not_found");

    let logo = png(240, 80);
    let r = upload(&app, &admin, "image/png", logo.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["logo"]["content_type"], "image/png");
    assert_eq!(r.json()["logo"]["bytes"], logo.len());
    let fetched = app.request(Method::GET, "/organization/logo").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/octet-stream"));
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), logo.as_slice());

    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 4 1"><text>Northwind</text></svg>"#;
    let r = upload(&app, &admin, "image/svg+xml", svg.as_bytes().to_vec()).await;
    assert_eq!(r.json()["logo"]["content_type"], "image/svg+xml", "{}", r.text);

    // Refused, and the SVG above stays.
    let scripted = r#"<svg xmlns="http://www.w3.org/2000/svg"><script>fetch('/x')</script></svg>"#;
    let r = upload(&app, &admin, "application/octet-stream", scripted.as_bytes().to_vec()).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["logo"].as_str().unwrap().contains("scripts"));
    let r = upload(&app, &admin, "image/gif", b"GIF89a not a png".to_vec()).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["logo"].as_str().unwrap().contains("PNG or an SVG"));
    // A PNG's header and end around nothing: it looks whole, but documents could not draw it.
    let mut hollow = png(10, 10);
    let idat = hollow.windows(4).position(|w| w == b"IDAT").unwrap() - 4;
    let iend = hollow.windows(4).position(|w| w == b"IEND").unwrap() - 4;
    hollow.drain(idat..iend);
    let r = upload(&app, &admin, "image/png", hollow).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["logo"].as_str().unwrap().contains("cannot be read"));
    let mut huge = png(100, 100);
    huge.splice(33..33, vec![0u8; 600 * 1024]);
    upload(&app, &admin, "application/octet-stream", huge).await.assert_error(413, "payload_too_large");
    let kept = app.call(Method::GET, "/organization", &admin, None).await.json();
    assert_eq!(kept["logo"]["content_type"], "image/svg+xml");

    let r = app.call(Method::DELETE, "/organization/logo", &admin, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    app.call(Method::DELETE, "/organization/logo", &admin, None).await.assert_error(404, "not_found");
    assert!(app.call(Method::GET, "/organization", &admin, None).await.json().get("logo").is_none());
}
