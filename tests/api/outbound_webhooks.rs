//! Outbound webhooks against a local receiver that checks every signature with the Standard Webhooks
//! authors' own library: events reach the endpoints that listen for them, written with the change that
//! caused them; failures are retried under the same `webhook-id`; `Retry-After` and 410 are honoured;
//! deliveries are listed and replayed; URLs that would reach private networks are refused; secrets rotate
//! with both signatures during the overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::HeaderMap;
use portal_webhooks::{AllowHttp, RetryDelays};
use reqwest::Method;
use serde_json::{json, Value};

use crate::billing::{customer, mark_paid, recurring_invoice, user_token};
use crate::helpers::TestApp;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Whether a secret the receiver trusted when the request came verified it.
    pub verified: bool,
}

impl Received {
    pub(crate) fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_string()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap().to_string()
    }

    /// Whether `secret` signed it, as the Standard Webhooks library checks (within its 5-minute tolerance).
    pub(crate) fn signed_by(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).unwrap().verify(&self.body, &self.headers).is_ok()
    }
}

/// How the receiver answers the `n`th request (from 1) for a `webhook-id`: status and `Retry-After`.
pub(crate) type Answer = Arc<dyn Fn(&str, usize) -> (u16, Option<u64>) + Send + Sync>;

/// What the receiver holds: every request, the attempts per `webhook-id`, each event's `data.id`, and the
/// secrets it verifies with.
#[derive(Default)]
pub(crate) struct State {
    pub log: Vec<Received>,
    pub attempts: HashMap<String, usize>,
    pub data_ids: HashMap<String, String>,
    trusted: Vec<String>,
}

/// A local HTTP server that records every request and answers as told.
pub(crate) struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub(crate) async fn start(answer: Answer) -> Self {
        use poem::{handler, web::Data, Body, EndpointExt, Request, Response, Route};

        type Shared = Arc<Mutex<State>>;

        #[handler]
        async fn receive(req: &Request, body: Body, state: Data<&Shared>, answer: Data<&Answer>) -> Response {
            let body = body.into_vec().await.unwrap_or_default();
            let id = req.header("webhook-id").unwrap_or_default().to_string();
            let data_id = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["data"]["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            let n = {
                let mut state = state.0.lock().unwrap();
                let verified = state
                    .trusted
                    .iter()
                    .any(|secret| standardwebhooks::Webhook::new(secret).unwrap().verify(&body, req.headers()).is_ok());
                state.log.push(Received { headers: req.headers().clone(), body, at: Instant::now(), verified });
                state.data_ids.insert(id.clone(), data_id);
                let n = state.attempts.entry(id.clone()).or_default();
                *n += 1;
                *n
            };
            let (status, retry_after) = answer.0(&id, n);
            let mut r = Response::builder().status(poem::http::StatusCode::from_u16(status).unwrap());
            if let Some(secs) = retry_after {
                r = r.header("retry-after", secs.to_string());
            }
            r.finish()
        }

        let state: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let app = Route::new().at("/hook", poem::post(receive)).data(state.clone()).data(answer);
        tokio::spawn(poem::Server::new(poem::listener::TcpListener::bind(addr.to_string())).run(app));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { url: format!("http://{addr}/hook"), state }
    }

    /// Verifies every request from now on with `secret` too.
    pub(crate) fn trust(&self, secret: &str) {
        self.state.lock().unwrap().trusted.push(secret.to_string());
    }

    pub(crate) fn all(&self) -> Vec<Received> {
        self.state.lock().unwrap().log.clone()
    }

    /// Looks at the state without copying it.
    pub(crate) fn with<T>(&self, look: impl FnOnce(&State) -> T) -> T {
        look(&self.state.lock().unwrap())
    }

    /// Waits until `done` holds for what arrived (20 s at most).
    async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self.all();
            if done(&all) {
                return all;
            }
            assert!(Instant::now() < deadline, "{what}: got {:?}", all.iter().map(Received::kind).collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn always(status: u16) -> Answer {
    Arc::new(move |_, _| (status, None))
}

/// A portal that may send webhooks to loopback over http, retrying after 100, 200 and 300 ms.
async fn app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.webhooks.allow_http = AllowHttp::Loopback;
        c.webhooks.retry_delays = RetryDelays::parse("100ms,200ms,300ms").unwrap();
    })
    .await
}

async fn register(app: &TestApp, admin: &str, url: &str, events: Value) -> (String, String) {
    let body = json!({"url": url, "description": "ERP", "events": events});
    let r = app.call(Method::POST, "/webhooks/endpoints", admin, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_") && portal_webhooks::key_of(&secret).is_some_and(|k| k.len() == 32));
    (created["id"].as_str().unwrap().to_string(), secret)
}

/// An endpoint's deliveries, once none is pending any more (the worker records an attempt just after the
/// receiver answered it).
async fn deliveries(app: &TestApp, admin: &str, endpoint: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.call(Method::GET, &format!("/webhooks/endpoints/{endpoint}/deliveries"), admin, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let listed = r.json().as_array().unwrap().clone();
        if listed.iter().all(|d| d["status"] != "pending") || Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Changes a customer's phone as an API client does: the record as GET gives it, one field changed.
async fn change_phone(app: &TestApp, admin: &str, customer: &str, phone: &str) {
    let mut record = app.call(Method::GET, &format!("/customers/{customer}"), admin, None).await.json();
    record["phone"] = json!(phone);
    let r = app.call(Method::PUT, &format!("/customers/{customer}"), admin, Some(record)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn events_reach_the_endpoints_that_listen_for_them_signed() {
    let app = app().await;
    let admin = app.admin_token().await;
    let erp = Receiver::start(always(204)).await;
    let books = Receiver::start(always(200)).await;
    let (erp_id, erp_secret) = register(&app, &admin, &erp.url, json!([])).await;
    let (_, books_secret) = register(&app, &admin, &books.url, json!(["invoice.paid"])).await;
    let shown = app.call(Method::GET, &format!("/webhooks/endpoints/{erp_id}"), &admin, None).await.json();
    assert!(shown.get("secret").is_none(), "the secret is shown once: {shown}");
    assert_eq!((shown["events"].clone(), shown["enabled"].clone()), (json!([]), json!(true)));

    let cid = customer(&app, &admin, "Hooked Co", json!({"monthly_fee": 100})).await;
    let invoice = recurring_invoice(&app, &admin, &cid, "2026-10-01").await;
    let id = invoice["id"].as_str().unwrap();
    // A refused change (nothing to refund yet) writes no event.
    let r =
        app.call(Method::POST, &format!("/billing/invoices/{id}/refund"), &admin, Some(json!({"reason": "x"}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    mark_paid(&app, &admin, id).await;
    let r = app
        .call(
            Method::POST,
            &format!("/billing/invoices/{id}/refund"),
            &admin,
            Some(json!({"amount": 30, "reason": "Late"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let expected = ["customer.created", "invoice.issued", "invoice.paid", "credit_note.created", "invoice.refunded"];
    let got = erp.wait_until("every event at the ERP", |all| all.len() >= expected.len()).await;
    let kinds: Vec<String> = got.iter().map(Received::kind).collect();
    assert_eq!(kinds, expected, "in the order they happened, once each");
    for r in &got {
        assert!(r.signed_by(&erp_secret), "{:?}", r.headers);
        assert!(!r.signed_by(&books_secret));
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(got[0].json()["data"]["id"], cid);
    assert_eq!(got[2].json()["data"]["status"], "paid");
    assert_eq!(got[2].json()["data"]["invoice_number"], invoice["invoice_number"]);
    assert_eq!(got[3].json()["data"]["amount"], 30.0);
    assert_eq!(got[4].json()["data"]["refunded_amount"], 30.0);
    assert!(got[0].json()["timestamp"].as_str().unwrap().ends_with('Z'));

    // The bookkeeping endpoint listens for payments only: the same event under the same webhook-id.
    let paid = books.wait_until("the payment at the books", |all| !all.is_empty()).await;
    assert_eq!(paid.iter().map(Received::kind).collect::<Vec<_>>(), ["invoice.paid"]);
    assert!(paid[0].signed_by(&books_secret));
    assert_eq!(paid[0].id(), got[2].id());
    let listed = deliveries(&app, &admin, &erp_id).await;
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|d| d["status"] == "succeeded" && d["attempts"][0]["status_code"] == 204), "{listed:?}");
    assert_eq!(listed[0]["event_type"], "invoice.refunded", "newest first");
}

#[tokio::test]
async fn failed_deliveries_are_retried_under_the_same_id_and_gone_endpoints_are_disabled() {
    let app = app().await;
    let admin = app.admin_token().await;
    // Fails the first two attempts of every event, then takes it.
    let flaky = Receiver::start(Arc::new(|_, n| if n <= 2 { (500, None) } else { (200, None) })).await;
    // Asks to wait 1 s the first time.
    let busy = Receiver::start(Arc::new(|_, n| if n == 1 { (429, Some(1)) } else { (200, None) })).await;
    let gone = Receiver::start(always(410)).await;
    let (flaky_id, secret) = register(&app, &admin, &flaky.url, json!(["customer.created"])).await;
    let (busy_id, _) = register(&app, &admin, &busy.url, json!(["customer.created"])).await;
    let (gone_id, _) = register(&app, &admin, &gone.url, json!(["customer.created"])).await;

    customer(&app, &admin, "Retry Co", json!({})).await;
    let got = flaky.wait_until("three attempts", |all| all.len() >= 3).await;
    assert!(got.iter().all(|r| r.id() == got[0].id() && r.signed_by(&secret)), "one webhook-id, each attempt signed");
    let listed = deliveries(&app, &admin, &flaky_id).await;
    let codes: Vec<&Value> = listed[0]["attempts"].as_array().unwrap().iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    assert_eq!(listed[0]["status"], "succeeded");
    assert_eq!(listed[0]["webhook_id"], got[0].id().as_str());

    let waited = busy.wait_until("the retry after Retry-After", |all| all.len() >= 2).await;
    let gap = waited[1].at - waited[0].at;
    assert!(gap >= Duration::from_millis(950), "Retry-After: 1 was honoured ({gap:?})");

    gone.wait_until("the 410", |all| !all.is_empty()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let endpoint = loop {
        let e = app.call(Method::GET, &format!("/webhooks/endpoints/{gone_id}"), &admin, None).await.json();
        if e["enabled"] == false || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"].as_str().unwrap().contains("410"), "{endpoint}");
    customer(&app, &admin, "After Gone Co", json!({})).await;
    flaky.wait_until("the next event", |all| all.len() >= 6).await;
    assert_eq!(gone.all().len(), 1, "a disabled endpoint gets nothing more");

    // A delivered event can be sent again, under its id.
    let first = &deliveries(&app, &admin, &busy_id).await[1];
    let path = format!("/webhooks/endpoints/{busy_id}/deliveries/{}/retry", first["id"].as_str().unwrap());
    let r = app.call(Method::POST, &path, &admin, None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let replayed = first["webhook_id"].as_str().unwrap().to_string();
    busy.wait_until("the replay", |all| all.iter().filter(|r| r.id() == replayed).count() == 3).await;
}

#[tokio::test]
async fn endpoints_are_for_admins_reach_no_private_network_and_rotate_their_secret() {
    let app = app().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Viewer Co", json!({})).await;
    let user = user_token(&app, &admin, &cid, "viewer@viewer.example").await;
    app.call(Method::GET, "/webhooks/endpoints", &user, None).await.assert_error(403, "forbidden");
    app.call(Method::POST, "/webhooks/endpoints", &user, Some(json!({"nonsense": true})))
        .await
        .assert_error(403, "forbidden");
    assert_eq!(app.request(Method::GET, "/webhooks/endpoints").send().await.unwrap().status(), 401);

    for url in [
        "http://hooks.example.com/x",
        "https://10.0.0.7/x",
        "https://169.254.169.254/latest",
        "ftp://127.0.0.1/",
        "https://user:pw@127.0.0.1/",
    ] {
        let r = app.call(Method::POST, "/webhooks/endpoints", &admin, Some(json!({"url": url}))).await;
        let e = r.assert_error(422, "validation_failed");
        assert!(e["details"]["url"].is_string(), "{url}: {e}");
    }
    let r = app
        .call(
            Method::POST,
            "/webhooks/endpoints",
            &admin,
            Some(json!({"url": "https://x", "events": ["invoice.lost"]})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);

    // A PUT takes back what the GET gave.
    let receiver = Receiver::start(always(200)).await;
    let (id, old_secret) = register(&app, &admin, &receiver.url, json!(["customer.updated"])).await;
    let mut shown = app.call(Method::GET, &format!("/webhooks/endpoints/{id}"), &admin, None).await.json();
    shown["description"] = json!("ERP, production");
    let r = app.call(Method::PUT, &format!("/webhooks/endpoints/{id}"), &admin, Some(shown.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["description"], "ERP, production");
    let mut private = shown.clone();
    private["url"] = json!("https://192.168.1.1/hook");
    app.call(Method::PUT, &format!("/webhooks/endpoints/{id}"), &admin, Some(private))
        .await
        .assert_error(422, "validation_failed");

    // Rotation: for the overlap both secrets sign; with none, only the new one.
    let r = app.call(Method::POST, &format!("/webhooks/endpoints/{id}/rotate-secret"), &admin, Some(json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new_secret = r.json()["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);
    assert!(r.json()["previous_secret_expires_at"].is_string());
    change_phone(&app, &admin, &cid, "+49301234567").await;
    let got = receiver.wait_until("the update", |all| !all.is_empty()).await;
    assert_eq!(got[0].headers["webhook-signature"].to_str().unwrap().split(' ').count(), 2);
    assert!(got[0].signed_by(&old_secret) && got[0].signed_by(&new_secret));
    let body = json!({"previous_secret_expires_in_seconds": 0});
    let r = app.call(Method::POST, &format!("/webhooks/endpoints/{id}/rotate-secret"), &admin, Some(body)).await;
    let newest = r.json()["secret"].as_str().unwrap().to_string();
    change_phone(&app, &admin, &cid, "+49307654321").await;
    let got = receiver.wait_until("the second update", |all| all.len() >= 2).await;
    assert!(got[1].signed_by(&newest) && !got[1].signed_by(&new_secret) && !got[1].signed_by(&old_secret));

    let r = app.call(Method::DELETE, &format!("/webhooks/endpoints/{id}"), &admin, None).await;
    assert_eq!(r.status, 204);
    app.call(Method::GET, &format!("/webhooks/endpoints/{id}"), &admin, None).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_delays_only_itself() {
    let app = app().await;
    let admin = app.admin_token().await;
    // Takes every connection and never answers (the portal waits 15 s for each).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let prompt = Receiver::start(always(200)).await;
    register(&app, &admin, &silent_url, json!(["customer.created"])).await;
    register(&app, &admin, &prompt.url, json!(["customer.created"])).await;
    let started = Instant::now();
    for n in 0..40 {
        customer(&app, &admin, &format!("Busy Co {n}"), json!({})).await;
    }
    prompt.wait_until("every event at the answering endpoint", |all| all.len() >= 40).await;
    assert!(started.elapsed() < Duration::from_secs(10), "held up by the silent endpoint: {:?}", started.elapsed());
}
