//! The audit trail: each change is recorded with its actor (user, role, request id) in the change's own
//! transaction; admins read it newest first with filters; a refused change leaves no entry.

use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, recurring_invoice, user_token};
use crate::helpers::TestApp;

async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app.call(Method::GET, &format!("/audit{query}"), token, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json().as_array().unwrap().clone()
}

fn actions(entries: &[Value]) -> Vec<(String, String)> {
    entries.iter().map(|e| (e["module"].as_str().unwrap().into(), e["action"].as_str().unwrap().into())).collect()
}

#[tokio::test]
async fn changes_are_recorded_with_their_actor_and_read_back_by_filter() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let me = app.call(Method::GET, "/users/me", &admin, None).await.json();
    let admin_id = me["id"].as_str().unwrap().to_string();

    let body = json!({"name": "Ada", "company_name": "Trail Co", "billing_email": "ap@trail.example.com",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}, "billing_settings": {"monthly_fee": 10}});
    let created = app
        .send(
            app.request(Method::POST, "/customers")
                .bearer_auth(&admin)
                .header("X-Request-Id", "req-create-1")
                .json(&body),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = created.json()["id"].as_str().unwrap().to_string();

    let entries = audit(&app, &admin, &format!("?object_id={cid}")).await;
    assert_eq!(actions(&entries), [("customers".into(), "create".into())], "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["user_id"], admin_id.as_str());
    assert_eq!(e["role"], "admin");
    assert_eq!(e["request_id"], "req-create-1");
    assert_eq!(e["customer_id"], cid.as_str());
    assert!(e["at"].is_string() && e["id"].is_string());

    // A refused change records nothing.
    let before = audit(&app, &admin, "?limit=200").await.len();
    let r = app.call(Method::PUT, &format!("/customers/{cid}/billing"), &admin, Some(json!({"billing_day": 40}))).await;
    r.assert_error(422, "validation_failed");
    assert_eq!(audit(&app, &admin, "?limit=200").await.len(), before);

    // An invoice issued and paid: two entries on it, newest first, both under the customer.
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-01-01").await["id"].as_str().unwrap().to_string();
    let r = app
        .call(
            Method::POST,
            &format!("/billing/invoices/{invoice}/mark-paid"),
            &admin,
            Some(json!({"payment_method": "bank_transfer"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let on_invoice = audit(&app, &admin, &format!("?object_id={invoice}")).await;
    assert_eq!(actions(&on_invoice), [("billing".into(), "paid".into()), ("billing".into(), "issue".into())]);
    let of_customer = audit(&app, &admin, &format!("?customer_id={cid}")).await;
    assert!(of_customer.iter().all(|e| e["customer_id"] == cid.as_str()), "{of_customer:?}");
    assert_eq!(
        actions(&of_customer)[..3],
        [("billing".into(), "paid".into()), ("billing".into(), "issue".into()), ("customers".into(), "create".into())]
    );
    let billing_only = audit(&app, &admin, &format!("?customer_id={cid}&module=billing")).await;
    assert_eq!(billing_only.len(), 2);

    // A customer user: its sign-in is recorded (not signed in yet, so no actor) and it may not read the trail.
    let user = user_token(&app, &admin, &cid, "u@trail.example.com").await;
    app.call(Method::GET, "/audit", &user, None).await.assert_error(403, "forbidden");
    app.get("/audit").await.assert_error(401, "unauthorized");
    let me = app.call(Method::GET, "/users/me", &user, None).await.json();
    let user_id = me["id"].as_str().unwrap();
    let on_user = audit(&app, &admin, &format!("?object_id={user_id}")).await;
    assert_eq!(actions(&on_user), [("auth".into(), "sign_in".into()), ("users".into(), "create".into())]);
    assert!(on_user[0].get("user_id").is_none(), "{:?}", on_user[0]);
    let by_admin = audit(&app, &admin, &format!("?user_id={admin_id}&limit=200")).await;
    assert!(by_admin.iter().all(|e| e["user_id"] == admin_id.as_str()));
    assert!(by_admin.iter().any(|e| e["object_id"] == user_id && e["action"] == "create"));

    // Paging: one at a time, in order, no entry twice.
    let all = audit(&app, &admin, "?limit=200").await;
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_string();
    loop {
        let r = app.call(Method::GET, &format!("/audit{query}"), &admin, None).await;
        seen.extend(r.json().as_array().unwrap().iter().map(|e| e["id"].clone()));
        match r.header("x-next-cursor") {
            Some(cursor) => query = format!("?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|e| e["id"].clone()).collect::<Vec<_>>());
    app.call(Method::GET, "/audit?user_id=nope", &admin, None).await.assert_error(422, "validation_failed");
}

#[tokio::test]
async fn the_portals_own_jobs_and_deletions_are_recorded_too() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let due = customer(&app, &admin, "Due Co", json!({"monthly_fee": 5, "payment_terms_days": 0})).await;
    let invoice = recurring_invoice(&app, &admin, &due, "2026-01-01").await["id"].as_str().unwrap().to_string();
    // What the overdue sweep does, outside any request: the portal itself is the actor.
    let marked = app.store.write(|tx| portal_billing::invoices::mark_overdue(tx, portal_core::Timestamp::now())).await;
    assert_eq!(marked.unwrap(), 1);
    let entries = audit(&app, &admin, &format!("?object_id={invoice}")).await;
    assert_eq!(actions(&entries)[0], ("billing".into(), "overdue".into()), "{entries:?}");
    for field in ["user_id", "role", "request_id"] {
        assert!(entries[0].get(field).is_none(), "{field} on a job's entry: {:?}", entries[0]);
    }

    let gone = customer(&app, &admin, "Gone Co", json!({"monthly_fee": 5})).await;
    let r = app.call(Method::DELETE, &format!("/customers/{gone}"), &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let entries = audit(&app, &admin, &format!("?customer_id={gone}")).await;
    assert_eq!(actions(&entries)[0], ("customers".into(), "delete".into()), "{entries:?}");
}
