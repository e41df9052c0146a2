//! What outside clients rely on, checked over the served document: refusals come in the order 401, then
//! 403/404, then 400/415/422 (a caller who may not use an operation never learns its schema), and every
//! PUT takes back what its GET gave.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, user_token};
use crate::helpers::{Reply, TestApp};

/// A customer of the admin's with a user, a draft proposal, an invoice and an ingest key.
struct World {
    admin: String,
    user: String,
    customer: String,
    proposal: String,
    invoice: String,
    key_id: String,
    endpoint: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_token().await;
    let customer = customer(app, &admin, "Contract Co", json!({"monthly_fee": 100})).await;
    let user = user_token(app, &admin, &customer, "user@contract.test").await;
    let body = json!({"customer_id": customer, "title": "Draft", "total_amount": 100,
        "billing_schedule": [{"percentage": 100, "milestone": "All"}]});
    let proposal = app.call(Method::POST, "/proposals", &admin, Some(body)).await.json()["id"].clone();
    let body = json!({"customer_id": customer, "period_start": "2026-11-01"});
    let invoice = app.call(Method::POST, "/billing/generate-recurring", &admin, Some(body)).await.json()["id"].clone();
    let keys = format!("/analytics-dashboard/customer/{customer}/ingest-keys");
    let key_id = app.call(Method::POST, &keys, &admin, None).await.json()["id"].clone();
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["invoice.paid"]});
    let endpoint = app.call(Method::POST, "/webhooks/endpoints", &admin, Some(hook)).await.json()["id"].clone();
    let text = |v: Value| v.as_str().expect("id").to_string();
    World {
        admin,
        user,
        customer,
        proposal: text(proposal),
        invoice: text(invoice),
        key_id: text(key_id),
        endpoint: text(endpoint),
    }
}

/// A valid body for each admin-only operation that takes one (the walk below fails on a new one, so that
/// it is never skipped).
fn valid_bodies(w: &World) -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        (
            "POST /customers",
            json!({"name": "N", "company_name": "C", "billing_email": "b@example.com",
                "address": {"street": "1 St", "city": "Berlin", "country": "DE"}}),
        ),
        ("PUT /customers/{customer_id}/billing", json!({"monthly_fee": 200})),
        ("POST /customers/{customer_id}/users", json!({"email": "new@contract.test", "name": "New"})),
        (
            "POST /proposals",
            json!({"customer_id": w.customer, "title": "T", "total_amount": 10,
                "billing_schedule": [{"percentage": 100, "milestone": "All"}]}),
        ),
        ("PUT /proposals/{proposal_id}", json!({"title": "Renamed"})),
        ("PUT /billing/invoices/{invoice_id}/infrastructure-costs", json!({"infrastructure_costs": 12.5})),
        ("POST /billing/invoices/{invoice_id}/mark-paid", json!({"payment_method": "bank_transfer"})),
        ("POST /billing/generate-from-proposal", json!({"proposal_id": w.proposal})),
        ("POST /billing/generate-recurring", json!({"customer_id": w.customer})),
        ("PUT /organization", json!({"legal_name": "Contract Agency Ltd"})),
        ("POST /billing/invoices/{invoice_id}/refund", json!({"reason": "Contract"})),
        ("POST /webhooks/endpoints", json!({"url": "http://127.0.0.1:9/other"})),
        (
            "PUT /webhooks/endpoints/{endpoint_id}",
            json!({"url": "http://127.0.0.1:9/hook", "description": "", "events": [], "enabled": true}),
        ),
        ("POST /webhooks/endpoints/{endpoint_id}/rotate-secret", json!({})),
    ])
}

/// A valid body of each admin-only operation that takes something other than JSON, with its content type.
fn valid_raw_bodies() -> BTreeMap<&'static str, (&'static str, &'static str)> {
    BTreeMap::from([(
        "PUT /organization/logo",
        ("application/octet-stream", r#"<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>"#),
    )])
}

/// Operations documented as admin-only: their summary ends in "(admin)" or "(admin, …)", with the content
/// type of their request body, if they take one.
fn admin_only(doc: &Value) -> Vec<(Method, String, Option<String>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let summary = op["summary"].as_str().unwrap_or("");
            if summary.ends_with("(admin)") || summary.contains("(admin, ") {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let content_type = op["requestBody"]["content"].as_object().and_then(|c| c.keys().next().cloned());
                ops.push((method, path.clone(), content_type));
            }
        }
    }
    ops
}

fn fill(path: &str, w: &World) -> String {
    path.replace("{customer_id}", &w.customer)
        .replace("{proposal_id}", &w.proposal)
        .replace("{invoice_id}", &w.invoice)
        .replace("{key_id}", &w.key_id)
        .replace("{endpoint_id}", &w.endpoint)
        .replace("{delivery_id}", "0190c7a2-0000-7000-8000-000000000000")
}

async fn send(app: &TestApp, method: &Method, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
    let mut req = app.request(method.clone(), path);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    app.send(req).await
}

#[tokio::test]
async fn every_admin_only_operation_answers_a_customer_user_403_whatever_the_body() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let doc = app.get("/openapi.json").await.json();
    let ops = admin_only(&doc);
    assert!(ops.len() >= 20, "the document lists {} admin-only operations", ops.len());
    let (bodies, raw_bodies) = (valid_bodies(&w), valid_raw_bodies());
    for (method, template, content_type) in &ops {
        let path = fill(template, &w);
        let name = format!("{method} {template}");
        let valid = match (content_type, bodies.get(name.as_str()), raw_bodies.get(name.as_str())) {
            (Some(_), Some(body), _) => Some(("application/json", body.to_string())),
            (Some(_), None, Some((content_type, body))) => Some((*content_type, body.to_string())),
            (Some(_), None, None) => panic!("{name} takes a body: add a valid one to valid_bodies"),
            (None, _, _) => None,
        };
        let mut variants =
            vec![None, Some("{}".to_string()), Some("{\"broken".to_string()), Some("[1, 2]".to_string())];
        variants.extend(valid.clone().map(|(_, body)| Some(body)));
        for body in &variants {
            let reply = send(&app, method, &path, Some(&w.user), body.as_deref()).await;
            reply.assert_error(403, "forbidden");
            assert!(reply.json()["error"].get("details").is_none(), "{name} {body:?}: {}", reply.text);
            // Bad query parameters are no different.
            let reply =
                send(&app, method, &format!("{path}?limit=abc&cursor=%ff"), Some(&w.user), body.as_deref()).await;
            reply.assert_error(403, "forbidden");
            // And with no credentials, 401 before anything else.
            send(&app, method, &path, None, body.as_deref()).await.assert_error(401, "unauthorized");
            send(&app, method, &path, Some("not-a-token"), body.as_deref()).await.assert_error(401, "unauthorized");
        }
        // The valid bodies are valid: an admin gets past the body with them.
        if let Some((content_type, body)) = valid {
            let req = app.request(method.clone(), &path).bearer_auth(&w.admin);
            let reply = app.send(req.header("content-type", content_type).body(body)).await;
            assert!(![400, 415, 422].contains(&reply.status.as_u16()), "{name}: {}", reply.text);
        }
    }
}

#[tokio::test]
async fn objects_outside_the_callers_customer_are_404_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let other = customer(&app, &w.admin, "Other Co", json!({"monthly_fee": 100})).await;
    let body = json!({"customer_id": other, "period_start": "2026-11-01"});
    let foreign_invoice = app.call(Method::POST, "/billing/generate-recurring", &w.admin, Some(body)).await.json()
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let put = format!("/customers/{other}");
    for body in ["{\"broken", "[]", "{\"name\": 5}", "{\"bogus\": true}"] {
        send(&app, &Method::PUT, &put, Some(&w.user), Some(body)).await.assert_error(404, "not_found");
        send(&app, &Method::PUT, &put, None, Some(body)).await.assert_error(401, "unauthorized");
    }
    // Not JSON at all: still 404 first.
    let reply = app.send(app.request(Method::PUT, &put).bearer_auth(&w.user).body("name=x")).await;
    reply.assert_error(404, "not_found");
    // On its own customer the same bodies are the caller's to fix.
    let own = format!("/customers/{}", w.customer);
    send(&app, &Method::PUT, &own, Some(&w.user), Some("{\"broken")).await.assert_error(400, "bad_request");
    send(&app, &Method::PUT, &own, Some(&w.user), Some("{\"bogus\": true}"))
        .await
        .assert_error(422, "validation_failed");
    let reply = app.send(app.request(Method::PUT, &own).bearer_auth(&w.user).body("name=x")).await;
    reply.assert_error(415, "unsupported_media_type");
    // An invoice named in the body: 404 for another customer's, whatever else the body holds.
    let pay = json!({"invoice_id": foreign_invoice, "payment_method_id": "pm_x"});
    app.call(Method::POST, "/billing/pay-invoice", &w.user, Some(pay)).await.assert_error(404, "not_found");
}

/// GETs `get`, applies `edit` to the representation and PUTs all of it to `put`.
async fn round_trip(app: &TestApp, token: &str, get: &str, put: &str, edit: impl FnOnce(&mut Value)) -> Reply {
    let mut representation = app.call(Method::GET, get, token, None).await.json();
    edit(&mut representation);
    app.call(Method::PUT, put, token, Some(representation)).await
}

/// Sets the field at `pointer` (`/a/b`), adding it when the representation left it out.
fn set(value: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let object = value.pointer_mut(parent).and_then(Value::as_object_mut);
    object.unwrap_or_else(|| panic!("no object at {parent:?}")).insert(key.to_string(), new);
}

#[tokio::test]
async fn every_put_takes_back_what_its_get_gave_with_one_field_changed() {
    let app = TestApp::spawn().await;
    let w = world(&app).await;
    let (admin, user) = (w.admin.as_str(), w.user.as_str());
    let customer = format!("/customers/{}", w.customer);
    let billing = format!("{customer}/billing");
    let proposal = format!("/proposals/{}", w.proposal);
    let invoice = format!("/billing/invoices/{}", w.invoice);
    let costs = format!("{invoice}/infrastructure-costs");
    let cases: Vec<(&str, &str, &str, &str, Value)> = vec![
        (admin, customer.as_str(), customer.as_str(), "/name", json!("Grace Hopper")),
        (user, customer.as_str(), customer.as_str(), "/phone", json!("+4930123456")),
        (admin, billing.as_str(), billing.as_str(), "/monthly_fee", json!(250.75)),
        (user, "/users/me", "/users/me", "/name", json!("Renamed User")),
        (admin, proposal.as_str(), proposal.as_str(), "/title", json!("Renamed proposal")),
        (admin, invoice.as_str(), costs.as_str(), "/infrastructure_costs", json!(42.5)),
    ];
    // A patched date-time is written the way many JSON libraries write UTC.
    let rewrite_time = |v: &mut Value| {
        if let Some(Value::String(t)) = v.get_mut("created_at") {
            *t = t.replace('Z', "+00:00");
        }
    };
    for (token, get, put, field, value) in cases {
        let reply = round_trip(&app, token, get, put, |r| {
            set(r, field, value.clone());
            rewrite_time(r);
        })
        .await;
        assert_eq!(reply.status, 200, "PUT {put} of the GET with {field} changed: {}", reply.text);
        let after = app.call(Method::GET, get, token, None).await.json();
        assert_eq!(after.pointer(field), Some(&value), "PUT {put} changed {field}: {after}");

        // A read-only field with another value: 422 naming it, nothing written.
        let before = app.call(Method::GET, get, token, None).await.json();
        let reply = round_trip(&app, token, get, put, |r| {
            set(r, "/id", json!("0190f5f6-0000-7000-8000-000000000000"));
            set(r, "/created_at", json!("2001-01-01T00:00:00Z"));
        })
        .await;
        let error = reply.assert_error(422, "validation_failed");
        assert!(error["details"]["id"].is_string() && error["details"]["created_at"].is_string(), "{put}: {error}");
        let unchanged = app.call(Method::GET, get, token, None).await.json();
        assert_eq!(unchanged["updated_at"], before["updated_at"], "{put}: nothing written on a 422");

        // A field neither the PUT nor the GET knows is still unknown.
        let reply = round_trip(&app, token, get, put, |r| set(r, "/bogus", json!(1))).await;
        assert!(reply.assert_error(422, "validation_failed")["details"]["bogus"].is_string(), "{put}");
    }

    // Nested read-only objects: the customer's billing settings are changed through their own PUT.
    let reply =
        round_trip(&app, admin, &customer, &customer, |r| set(r, "/billing_settings/monthly_fee", json!(1))).await;
    assert!(reply.assert_error(422, "validation_failed")["details"]["billing_settings"].is_string());
    // Settings: the `settings` object of the profile goes back to `/users/me/settings`.
    let mut settings = app.call(Method::GET, "/users/me", user, None).await.json()["settings"].clone();
    set(&mut settings, "/locale", json!("de-DE"));
    let reply = app.call(Method::PUT, "/users/me/settings", user, Some(settings)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["settings"]["locale"], "de-DE");
    // A customer user's own profile: the role and customer are an admin's to set (403), other fields 422.
    let reply = round_trip(&app, user, "/users/me", "/users/me", |r| set(r, "/role", json!("admin"))).await;
    reply.assert_error(403, "forbidden");
    let reply = round_trip(&app, user, "/users/me", "/users/me", |r| {
        set(r, "/customer_id", json!("0190f5f6-0000-7000-8000-000000000000"))
    })
    .await;
    reply.assert_error(403, "forbidden");
    // A customer user sending its customer back unchanged may, changing the status may not.
    let reply = round_trip(&app, user, &customer, &customer, |r| set(r, "/status", json!("inactive"))).await;
    reply.assert_error(403, "forbidden");
}
