//! Customers end to end: the admin's whole flow, validation, what customer users may do, lists and
//! search, idempotent creation, invitations through a real SMTP server, and the isolation matrix.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Reply, TestApp};

const PASSWORD: &str = "correct horse battery";

fn new_customer(company: &str) -> Value {
    json!({
        "name": "Ada Lovelace",
        "company_name": company,
        "billing_email": format!("Billing@{}.example.com", company.to_lowercase().replace(' ', "-")),
        "phone": "+14155550123",
        "address": {"street": "1 Main St", "city": "San Francisco", "state": "CA", "postal_code": "94103", "country": "us"},
        "firebase_project_id": "acme-app-1",
        "billing_settings": {"monthly_fee": 1500.5, "tax_rate": 8.25, "billing_frequency": "quarterly", "billing_day": 31}
    })
}

async fn create(app: &TestApp, admin: &str, body: Value) -> Value {
    let r = app.call(Method::POST, "/customers", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// A customer user of `customer` (created by the admin with a password), signed in; returns its token.
async fn customer_user(app: &TestApp, admin: &str, customer: &str, email: &str) -> String {
    let body = json!({"email": email, "name": "Customer User", "password": PASSWORD});
    let r = app.call(Method::POST, &format!("/customers/{customer}/users"), admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    app.login(email, PASSWORD).await["access_token"].as_str().unwrap().to_string()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn admin_creates_reads_lists_updates_and_deletes_a_customer() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;

    let created = create(&app, &admin, new_customer("Acme")).await;
    assert_eq!(created["name"], "Ada Lovelace");
    assert_eq!(created["company_name"], "Acme");
    assert_eq!(created["status"], "onboarding");
    assert_eq!(created["billing_email"], "billing@acme.example.com");
    assert_eq!(created["address"]["country"], "US");
    assert_eq!(created["firebase_project_id"], "acme-app-1");
    assert!(created.get("stripe_customer_id").is_none());
    assert_eq!(created["created_at"], created["updated_at"]);
    let billing = &created["billing_settings"];
    assert_eq!(billing["customer_id"], created["id"]);
    assert_eq!(billing["monthly_fee"], json!(1500.5));
    assert_eq!(billing["tax_rate"], json!(8.25));
    assert_eq!(billing["currency"], "USD");
    assert_eq!(billing["billing_day"], 31);
    assert_eq!(billing["billing_frequency"], "quarterly");
    assert_eq!(billing["payment_method"], "manual");
    assert_eq!(billing["payment_terms_days"], 30);
    assert_eq!(billing["auto_charge"], false);
    let cid = id(&created);

    let got = app.call(Method::GET, &format!("/customers/{cid}"), &admin, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), created);

    let r = app
        .call(
            Method::PUT,
            &format!("/customers/{cid}"),
            &admin,
            Some(json!({"status": "active", "phone": null, "address": {"city": "Oakland"}, "stripe_customer_id": "cus_Abc123"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let updated = r.json();
    assert_eq!(updated["status"], "active");
    assert!(updated.get("phone").is_none());
    assert_eq!(updated["address"]["city"], "Oakland");
    assert_eq!(updated["address"]["street"], "1 Main St");
    assert_eq!(updated["stripe_customer_id"], "cus_Abc123");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(updated["updated_at"].as_str().unwrap() > created["updated_at"].as_str().unwrap());

    let r = app
        .call(
            Method::PUT,
            &format!("/customers/{cid}/billing"),
            &admin,
            Some(json!({"currency": "jpy", "monthly_fee": 150000, "auto_charge": true, "additional_details": {"po": "PO-7", "seats": 12}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let settings = r.json();
    assert_eq!(settings["currency"], "JPY");
    assert_eq!(settings["monthly_fee"], json!(150000.0));
    assert_eq!(settings["additional_details"], json!({"po": "PO-7", "seats": 12}));
    assert_eq!(settings["tax_rate"], json!(8.25));
    let r = app.call(Method::GET, &format!("/customers/{cid}/billing"), &admin, None).await;
    assert_eq!(r.json(), settings);
    // A fee in yen has no decimals.
    let r =
        app.call(Method::PUT, &format!("/customers/{cid}/billing"), &admin, Some(json!({"monthly_fee": 10.5}))).await;
    assert!(r.assert_error(422, "validation_failed")["details"]["monthly_fee"].is_string());

    let token = customer_user(&app, &admin, &cid, "user@acme.example.com").await;
    let r = app.call(Method::GET, &format!("/customers/{cid}/users"), &admin, None).await;
    assert_eq!(r.status, 200);
    let users = r.json();
    assert_eq!(users.as_array().unwrap().len(), 1);
    assert_eq!(users[0]["email"], "user@acme.example.com");
    assert_eq!(users[0]["customer_id"], json!(cid));
    assert_eq!(users[0]["role"], "customer");
    let me = app.call(Method::GET, "/customers/me", &token, None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["id"], json!(cid));

    // Taken emails are refused portal-wide.
    let r = app
        .call(
            Method::POST,
            &format!("/customers/{cid}/users"),
            &admin,
            Some(json!({"email": "USER@acme.example.com", "name": "Again", "password": PASSWORD})),
        )
        .await;
    r.assert_error(409, "conflict");

    // No invoices or accepted proposals: deleted outright, with its users.
    let r = app.call(Method::DELETE, &format!("/customers/{cid}"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json(), json!({"id": cid, "result": "deleted"}));
    app.call(Method::GET, &format!("/customers/{cid}"), &admin, None).await.assert_error(404, "not_found");
    app.call(Method::GET, "/users/me", &token, None).await.assert_error(401, "unauthorized");
    let r = app.post("/auth/login", json!({"email": "user@acme.example.com", "password": PASSWORD})).await;
    r.assert_error(401, "unauthorized");
    app.call(Method::DELETE, &format!("/customers/{cid}"), &admin, None).await.assert_error(404, "not_found");
}

fn next_cursor(r: &Reply) -> Option<String> {
    r.header("x-next-cursor").map(str::to_string)
}

#[tokio::test]
async fn lists_page_newest_first_and_filter_by_status_and_search() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for (i, company) in
        ["Northwind Traders", "Contoso", "Fabrikam", "Northwind Health", "Tailspin Toys"].iter().enumerate()
    {
        let mut body = new_customer(company);
        body["status"] = json!(if i % 2 == 0 { "active" } else { "pending" });
        ids.push(id(&create(&app, &admin, body).await));
    }
    ids.reverse(); // newest first

    let first = app.call(Method::GET, "/customers?limit=2", &admin, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let page: Vec<String> = first.json().as_array().unwrap().iter().map(id).collect();
    assert_eq!(page, ids[..2]);
    let cursor = next_cursor(&first).expect("X-Next-Cursor");
    assert_eq!(first.header("link"), Some(format!("</customers?limit=2&cursor={cursor}>; rel=\"next\"").as_str()));
    let second = app.call(Method::GET, &format!("/customers?limit=2&cursor={cursor}"), &admin, None).await;
    let page: Vec<String> = second.json().as_array().unwrap().iter().map(id).collect();
    assert_eq!(page, ids[2..4]);
    let cursor = next_cursor(&second).expect("X-Next-Cursor");
    let third = app.call(Method::GET, &format!("/customers?limit=2&cursor={cursor}"), &admin, None).await;
    let page: Vec<String> = third.json().as_array().unwrap().iter().map(id).collect();
    assert_eq!(page, ids[4..]);
    assert!(next_cursor(&third).is_none() && third.header("link").is_none());

    let active = app.call(Method::GET, "/customers?status=active", &admin, None).await.json();
    let names: Vec<&str> = active.as_array().unwrap().iter().map(|c| c["company_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Tailspin Toys", "Fabrikam", "Northwind Traders"]);

    let found = app.call(Method::GET, "/customers?q=NORTHWIND", &admin, None).await.json();
    let names: Vec<&str> = found.as_array().unwrap().iter().map(|c| c["company_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Northwind Health", "Northwind Traders"]);
    let found = app.call(Method::GET, "/customers?q=northwind&status=pending&limit=1", &admin, None).await;
    let rows = found.json();
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|c| c["company_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Northwind Health"]);
    assert!(next_cursor(&found).is_none());
    // The billing email is searched too, and searching survives renames.
    let r = app
        .call(Method::PUT, &format!("/customers/{}", ids[0]), &admin, Some(json!({"company_name": "Wingtip"})))
        .await;
    assert_eq!(r.status, 200);
    let found = app.call(Method::GET, "/customers?q=wingtip", &admin, None).await.json();
    assert_eq!(found.as_array().unwrap().len(), 1);
    let found = app.call(Method::GET, "/customers?q=tailspin", &admin, None).await.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "the old name stays in the billing email: {found}");
    let found = app.call(Method::GET, "/customers?q=zzz", &admin, None).await.json();
    assert_eq!(found, json!([]));

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=xyz", "cursor"),
        ("q=a", "q"),
        ("status=gone", "status"),
    ] {
        let r = app.call(Method::GET, &format!("/customers?{query}"), &admin, None).await;
        let error = r.assert_error(422, "validation_failed");
        assert!(error["details"][field].is_string(), "{query}: {error}");
    }
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cases: Vec<(&str, Value)> = vec![
        ("name", json!({"name": "  "})),
        ("company_name", json!({"company_name": "x".repeat(201)})),
        ("status", json!({"status": "deleted"})),
        ("billing_email", json!({"billing_email": "not-an-email"})),
        ("phone", json!({"phone": "555-1234"})),
        ("address.country", json!({"address": {"street": "1 Main St", "city": "SF", "country": "XX"}})),
        ("address.street", json!({"address": {"street": " ", "city": "SF", "country": "US"}})),
        (
            "address.postal_code",
            json!({"address": {"street": "a", "city": "SF", "country": "US", "postal_code": "<b>"}}),
        ),
        ("firebase_app_id", json!({"firebase_app_id": "abc"})),
        ("firebase_project_id", json!({"firebase_project_id": "Bad_Project"})),
        ("stripe_customer_id", json!({"stripe_customer_id": "pm_123"})),
        ("billing_settings.currency", json!({"billing_settings": {"currency": "XYZ"}})),
        ("billing_settings.billing_day", json!({"billing_settings": {"billing_day": 32}})),
        ("billing_settings.tax_rate", json!({"billing_settings": {"tax_rate": 8.123456}})),
        ("billing_settings.tax_rate", json!({"billing_settings": {"tax_rate": 100.5}})),
        ("billing_settings.payment_terms_days", json!({"billing_settings": {"payment_terms_days": 366}})),
        ("billing_settings.monthly_fee", json!({"billing_settings": {"monthly_fee": 10.005}})),
        ("billing_settings.monthly_fee", json!({"billing_settings": {"monthly_fee": -1}})),
        ("billing_settings.payment_method", json!({"billing_settings": {"payment_method": "cash"}})),
        ("billing_settings.billing_frequency", json!({"billing_settings": {"billing_frequency": "weekly"}})),
        ("billing_settings.additional_details", json!({"billing_settings": {"additional_details": [1, 2]}})),
        (
            "billing_settings.additional_details",
            json!({"billing_settings": {"additional_details": {"blob": "x".repeat(17 * 1024)}}}),
        ),
        (
            "billing_settings.stripe_payment_method_id",
            json!({"billing_settings": {"stripe_payment_method_id": "card_1"}}),
        ),
        ("surprise", json!({"surprise": true})),
    ];
    let mut tried = 0;
    for (field, change) in cases {
        let mut body = new_customer("Valid Co");
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        if let Some(nested) = change.get("billing_settings") {
            let mut settings = new_customer("Valid Co")["billing_settings"].clone();
            for (k, v) in nested.as_object().unwrap() {
                settings[k] = v.clone();
            }
            body["billing_settings"] = settings;
        }
        let r = app.call(Method::POST, "/customers", &admin, Some(body)).await;
        let error = r.assert_error(422, "validation_failed");
        let details = error["details"].as_object().unwrap();
        let named = details.contains_key(field) || details.contains_key(field.rsplit('.').next().unwrap());
        assert!(named, "{field} not named: {error}");
        tried += 1;
    }
    let listed = app.call(Method::GET, "/customers", &admin, None).await.json();
    assert_eq!(listed, json!([]), "an invalid create wrote something");
    eprintln!("{tried} invalid customer bodies refused, none written");

    // Updates are checked the same way and leave the record as it was.
    let created = create(&app, &admin, new_customer("Valid Co")).await;
    let cid = id(&created);
    let r = app
        .call(Method::PUT, &format!("/customers/{cid}"), &admin, Some(json!({"name": "Fine", "billing_email": "nope"})))
        .await;
    assert!(r.assert_error(422, "validation_failed")["details"]["billing_email"].is_string());
    let r = app.call(Method::PUT, &format!("/customers/{cid}/billing"), &admin, Some(json!({"currency": "EUR"}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["monthly_fee"].as_str().unwrap().contains("new currency"), "{error}");
    let after = app.call(Method::GET, &format!("/customers/{cid}"), &admin, None).await.json();
    assert_eq!(after, created);
}

#[tokio::test]
async fn customer_users_change_only_contact_fields_and_never_billing() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = id(&create(&app, &admin, new_customer("Acme")).await);
    let token = customer_user(&app, &admin, &cid, "owner@acme.example.com").await;

    let change = json!({"name": "Grace Hopper", "phone": "+442071234567", "billing_email": "ap@acme.example.com",
        "address": {"street": "2 Side St"}, "status": "onboarding"});
    let r = app.call(Method::PUT, &format!("/customers/{cid}"), &token, Some(change)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let updated = r.json();
    assert_eq!(updated["name"], "Grace Hopper");
    assert_eq!(updated["address"]["street"], "2 Side St");

    for (field, value) in [
        ("status", json!("active")),
        ("company_name", json!("Evil Corp")),
        ("stripe_customer_id", json!("cus_X1")),
        ("firebase_app_id", json!("1:1:web:ab")),
    ] {
        let r = app
            .call(Method::PUT, &format!("/customers/{cid}"), &token, Some(json!({"name": "Sneaky", field: value})))
            .await;
        let error = r.assert_error(403, "forbidden");
        assert!(error["details"][field].is_string(), "{field}: {error}");
    }
    let r = app.call(Method::GET, &format!("/customers/{cid}"), &token, None).await;
    assert_eq!(r.json()["name"], "Grace Hopper", "a refused update wrote something");

    let r = app.call(Method::GET, &format!("/customers/{cid}/billing"), &token, None).await;
    assert_eq!(r.status, 200);
    let r = app.call(Method::PUT, &format!("/customers/{cid}/billing"), &token, Some(json!({"monthly_fee": 0}))).await;
    r.assert_error(403, "forbidden");
    // An admin has no customer of its own.
    app.call(Method::GET, "/customers/me", &admin, None).await.assert_error(403, "forbidden");
    // A user who registered alone has none yet.
    let loner = app.register_and_login("loner@example.com", PASSWORD).await;
    let loner = loner["access_token"].as_str().unwrap();
    app.call(Method::GET, "/customers/me", loner, None).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn creating_twice_with_one_idempotency_key_creates_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let send = |body: Value, key: &'static str| {
        let req =
            app.request(Method::POST, "/customers").bearer_auth(&admin).header("Idempotency-Key", key).json(&body);
        app.send(req)
    };
    let first = send(new_customer("Once"), "create-once-1").await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = send(new_customer("Once"), "create-once-1").await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json(), first.json());
    let other = send(new_customer("Twice"), "create-once-1").await;
    other.assert_error(409, "idempotency_conflict");
    let listed = app.call(Method::GET, "/customers", &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Concurrent first uses of one key: one creates, the others replay it or are told it is in progress.
    let racers = (0..8).map(|_| send(new_customer("Race"), "race-key"));
    let replies = futures_util::future::join_all(racers).await;
    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|r| r.json()["id"] == created[0].json()["id"]));
    assert!(
        replies.iter().all(|r| r.status == 201 || r.status == 409),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let listed = app.call(Method::GET, "/customers?q=race", &admin, None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A key that is not visible ASCII is refused, not ignored (a retry would create a duplicate).
    for key in [&b"cl\xc3\xa9-1"[..], &b"tab\tkey"[..], &b""[..], &[b'k'; 256][..]] {
        let value = reqwest::header::HeaderValue::from_bytes(key).unwrap();
        let req = app.request(Method::POST, "/customers").bearer_auth(&admin).header("Idempotency-Key", value);
        let r = app.send(req.json(&new_customer("Accented"))).await;
        let error = r.assert_error(422, "validation_failed");
        assert!(error["details"]["Idempotency-Key"].is_string(), "{error}");
    }
    let listed = app.call(Method::GET, "/customers?q=accented", &admin, None).await.json();
    assert_eq!(listed, json!([]), "nothing created under a refused key");
}

#[tokio::test]
async fn an_invited_user_sets_a_password_from_the_mail_and_signs_in() {
    let smtp = portal_testkit::SmtpServer::start();
    let url = smtp.url();
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let admin = app.admin_token().await;
    let cid = id(&create(&app, &admin, new_customer("Invited Co")).await);
    let r = app
        .call(
            Method::POST,
            &format!("/customers/{cid}/users"),
            &admin,
            Some(json!({"email": "new@invited.example.com", "name": "New Person"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["customer_id"], json!(cid));
    let mail = smtp.wait_for_mail("new@invited.example.com", Duration::from_secs(20)).await;
    assert!(mail.subject.contains("invitation"), "{}", mail.subject);
    assert!(mail.body.contains("Invited Co"), "{}", mail.body);
    let token =
        mail.body.split("token=").nth(1).expect("link with token").split_whitespace().next().unwrap().to_string();
    // No password yet: signing in fails until the invitation is used.
    app.post("/auth/login", json!({"email": "new@invited.example.com", "password": PASSWORD}))
        .await
        .assert_error(401, "unauthorized");
    let r = app.post("/auth/password-reset/confirm", json!({"token": token, "new_password": PASSWORD})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let login = app.login("new@invited.example.com", PASSWORD).await;
    assert_eq!(login["user"]["customer_id"], json!(cid));
}

#[tokio::test]
async fn an_unreachable_mail_server_leaves_no_invited_user_behind() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", dead.local_addr().unwrap());
    drop(dead);
    let app = TestApp::spawn_with(|c| c.notify.smtp_url = Some(portal_core::config::Secret::new(url))).await;
    let admin = app.admin_token().await;
    let cid = id(&create(&app, &admin, new_customer("Offline Co")).await);
    let body = json!({"email": "later@offline.example.com", "name": "Later"});
    let r = app.call(Method::POST, &format!("/customers/{cid}/users"), &admin, Some(body.clone())).await;
    r.assert_error(503, "upstream_unavailable");
    let users = app.call(Method::GET, &format!("/customers/{cid}/users"), &admin, None).await.json();
    assert_eq!(users, json!([]));
    // With a password no mail is needed.
    let mut body = body;
    body["password"] = json!(PASSWORD);
    let r = app.call(Method::POST, &format!("/customers/{cid}/users"), &admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn isolation_matrix_over_every_customer_endpoint() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let a = id(&create(&app, &admin, new_customer("Alpha")).await);
    let b = id(&create(&app, &admin, new_customer("Beta")).await);
    let token_a = customer_user(&app, &admin, &a, "a@alpha.example.com").await;
    let revoked = customer_user(&app, &admin, &a, "gone@alpha.example.com").await;
    let r = app.call(Method::POST, "/auth/logout", &revoked, None).await;
    assert_eq!(r.status, 204);

    let body = Some(json!({"name": "Changed"}));
    // Endpoints on one customer's id, with whether a customer user may use them on its own customer.
    let on_customer: Vec<(Method, String, Option<Value>, bool)> = vec![
        (Method::GET, "/customers/{id}".into(), None, true),
        (Method::PUT, "/customers/{id}".into(), body.clone(), true),
        (Method::DELETE, "/customers/{id}".into(), None, false),
        (Method::POST, "/customers/{id}/restore".into(), None, false),
        (Method::GET, "/customers/{id}/billing".into(), None, true),
        (Method::PUT, "/customers/{id}/billing".into(), Some(json!({"monthly_fee": 1})), false),
        (Method::POST, "/customers/{id}/users".into(), Some(json!({"email": "x@y.example.com", "name": "X"})), false),
        (Method::GET, "/customers/{id}/users".into(), None, true),
    ];
    let global: Vec<(Method, &str, Option<Value>)> =
        vec![(Method::POST, "/customers", Some(new_customer("Gamma"))), (Method::GET, "/customers", None)];
    let mut cases = 0;
    for (method, path, body, owner_may) in &on_customer {
        // A's user on B's ids: 404 when the operation is open to owners, else 403 (admin only).
        let r = app.call(method.clone(), &path.replace("{id}", &b), &token_a, body.clone()).await;
        if *owner_may {
            r.assert_error(404, "not_found");
        } else {
            r.assert_error(403, "forbidden");
        }
        // A's user on its own customer, for admin-only operations: 403.
        if !owner_may {
            app.call(method.clone(), &path.replace("{id}", &a), &token_a, body.clone())
                .await
                .assert_error(403, "forbidden");
            cases += 1;
        }
        // No token, a revoked session: 401.
        let mut req = app.request(method.clone(), &path.replace("{id}", &a));
        if let Some(body) = body {
            req = req.json(body);
        }
        let r = app.send(req).await;
        r.assert_error(401, "unauthorized");
        assert!(r.header("www-authenticate").is_some());
        app.call(method.clone(), &path.replace("{id}", &a), &revoked, body.clone())
            .await
            .assert_error(401, "unauthorized");
        cases += 3;
    }
    for (method, path, body) in &global {
        app.call(method.clone(), path, &token_a, body.clone()).await.assert_error(403, "forbidden");
        app.send(app.request(method.clone(), path)).await.assert_error(401, "unauthorized");
        app.call(method.clone(), path, &revoked, body.clone()).await.assert_error(401, "unauthorized");
        cases += 3;
    }
    // B is untouched, A's user still sees only A.
    let b_now = app.call(Method::GET, &format!("/customers/{b}"), &admin, None).await.json();
    assert_eq!(b_now["name"], "Ada Lovelace");
    assert_eq!(app.call(Method::GET, "/customers/me", &token_a, None).await.json()["id"], json!(a));
    eprintln!("isolation matrix: {cases} cases, 0 leaks");
}

#[tokio::test]
async fn names_refuse_bidi_overrides_and_invisible_characters() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let mut body = new_customer("Spoof");
    body["company_name"] = json!("Invoice\u{202E}fdp.exe");
    body["name"] = json!("Ada\u{200B}Lovelace");
    let error = app.call(Method::POST, "/customers", &admin, Some(body)).await.assert_error(422, "validation_failed");
    assert!(error["details"]["company_name"].as_str().unwrap().contains("U+202E"), "{error}");
    assert!(error["details"]["name"].as_str().unwrap().contains("U+200B"), "{error}");
    // Scripts that need joiners keep them.
    let mut body = new_customer("Persian");
    body["name"] = json!("مهدی\u{200C}زاده");
    assert_eq!(app.call(Method::POST, "/customers", &admin, Some(body)).await.status, 201);
    let r = app
        .post("/auth/register", json!({"email": "rtl@example.com", "password": PASSWORD, "name": "Eve\u{2066}x"}))
        .await;
    assert!(r.assert_error(422, "validation_failed")["details"]["name"].is_string());
}
