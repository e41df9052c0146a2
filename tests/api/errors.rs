//! Every error class renders the envelope: unknown routes, wrong methods, bad JSON, invalid fields,
//! oversized bodies, wrong content types, panics and internal failures (without internals).
//! The app's own routes cover what they can; a small fixture API wrapped in the app's exact middleware
//! covers the body-parsing cases.

use poem::listener::TcpAcceptor;
use poem::{IntoEndpoint, Server};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, OpenApiService};
use portal_core::{Error, JsonBody};
use reqwest::Method;

use crate::helpers::{Reply, TestApp};

#[tokio::test]
async fn unknown_route_is_404_envelope() {
    let app = TestApp::spawn().await;
    app.get("/no-such-path").await.assert_error(404, "not_found");
    app.get("/health/extra").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn wrong_method_is_405_envelope() {
    let app = TestApp::spawn().await;
    app.send(app.request(Method::POST, "/health")).await.assert_error(405, "method_not_allowed");
    app.send(app.request(Method::DELETE, "/health")).await.assert_error(405, "method_not_allowed");
}

/// With the production defaults (rate limits on): unknown paths, files under `/docs`, wrong methods on the
/// two documents and on API routes all answer in the envelope with the security headers, signed in or not.
#[tokio::test]
async fn every_unknown_route_answers_in_the_envelope_with_rate_limits_on() {
    let app = TestApp::spawn_with(|c| c.core.rate_limit.mode = portal_core::config::RateLimitMode::On).await;
    let token = app.admin_token().await;
    let cases = [
        (Method::GET, "/no-such-path", 404, "not_found"),
        (Method::GET, "/docs/", 404, "not_found"),
        (Method::GET, "/docs/swagger-ui.css", 404, "not_found"),
        (Method::GET, "/docs/index.html", 404, "not_found"),
        (Method::GET, "/openapi.json/x", 404, "not_found"),
        (Method::POST, "/openapi.json", 405, "method_not_allowed"),
        (Method::DELETE, "/docs", 405, "method_not_allowed"),
        (Method::PUT, "/health", 405, "method_not_allowed"),
        (Method::PATCH, "/customers", 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        for bearer in [None, Some(token.as_str())] {
            let mut req = app.request(method.clone(), path);
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            }
            let reply = app.send(req).await;
            reply.assert_error(status, code);
            assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{method} {path}");
            assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{method} {path}");
            assert!(reply.header("content-security-policy").is_some(), "{method} {path}");
            assert!(reply.header("x-request-id").is_some(), "{method} {path}");
        }
    }
    // The documents themselves still answer.
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert!(spec.json()["paths"]["/customers"].is_object());
    let docs = app.send(app.request(Method::HEAD, "/docs")).await;
    assert_eq!(docs.status, 200);
}

#[tokio::test]
async fn head_of_an_operation_answers_as_its_get_without_a_body() {
    let app = TestApp::spawn().await;
    let get = app.get("/health").await;
    assert_eq!(get.json()["status"], "ok");
    let head = app.send(app.request(Method::HEAD, "/health")).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.text, "");
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert_eq!(head.header("x-content-type-options"), Some("nosniff"));
    // A HEAD where only POST is routed is refused like any other method (the envelope is a body: not sent).
    let refused = app.send(app.request(Method::HEAD, "/auth/login")).await;
    assert_eq!((refused.status.as_u16(), refused.text.as_str()), (405, ""));
    assert_eq!(refused.header("content-type"), Some("application/json; charset=utf-8"));
}

#[tokio::test]
async fn two_mib_body_is_413_envelope_with_or_without_content_length() {
    let app = TestApp::spawn().await;
    let big = vec![b' '; 2 * 1024 * 1024];
    let reply = app
        .send(app.request(Method::POST, "/health").header("content-type", "application/json").body(big.clone()))
        .await;
    reply.assert_error(413, "payload_too_large");
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));

    // A chunked body has no Content-Length: the limit applies while reading.
    let stream = futures_util::stream::iter(
        big.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let reply = app
        .send(
            app.request(Method::POST, "/health")
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    reply.assert_error(413, "payload_too_large");
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct Echo {
    name: String,
    count: u32,
}

struct Fixture;

#[OpenApi]
impl Fixture {
    #[oai(path = "/echo", method = "post")]
    async fn echo(&self, body: JsonBody<Echo>) -> Result<Json<Echo>, Error> {
        let body = body.into_inner()?;
        if body.count > 10 {
            return Err(Error::invalid("count", "must be at most 10"));
        }
        Ok(Json(body))
    }

    #[oai(path = "/items", method = "get")]
    async fn items(&self, limit: Query<Option<u32>>) -> Result<Json<Vec<u32>>, Error> {
        Ok(Json((0..limit.0.unwrap_or(3)).collect()))
    }

    #[oai(path = "/panic", method = "get")]
    async fn panic(&self) -> Result<Json<Echo>, Error> {
        panic!("boom with secret-detail")
    }

    #[oai(path = "/fail", method = "get")]
    async fn fail(&self) -> Result<Json<Echo>, Error> {
        Err(Error::internal("disk on fire: secret-detail"))
    }
}

/// The fixture API behind the app's middleware, on port 0.
async fn fixture() -> (String, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ep = portal::app::with_middleware(
        OpenApiService::new(Fixture, "fixture", "1").into_endpoint(),
        false,
        std::time::Duration::from_secs(10),
    );
    tokio::spawn(Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(ep));
    (base, reqwest::Client::new())
}

async fn reply(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.unwrap();
    Reply { status: resp.status(), headers: resp.headers().clone(), text: resp.text().await.unwrap() }
}

#[tokio::test]
async fn malformed_json_is_400_envelope() {
    let (base, client) = fixture().await;
    let r =
        reply(client.post(format!("{base}/echo")).header("content-type", "application/json").body("{\"name\": ")).await;
    let error = r.assert_error(400, "bad_request");
    assert!(error["message"].as_str().unwrap().contains("not valid JSON"), "{error}");
}

#[tokio::test]
async fn wrong_shape_is_422_and_invalid_field_names_the_field() {
    let (base, client) = fixture().await;
    let r = reply(client.post(format!("{base}/echo")).json(&serde_json::json!({"name": "x", "count": "many"}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert_eq!(error["details"]["count"], "must be an integer");
    let r = reply(client.post(format!("{base}/echo")).json(&serde_json::json!({"count": 1}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert_eq!(error["details"]["name"], "is required");
    let r =
        reply(client.post(format!("{base}/echo")).json(&serde_json::json!({"name": "x", "count": 1, "extra": true})))
            .await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["extra"].is_string(), "{error}");
    let r = reply(client.post(format!("{base}/echo")).json(&serde_json::json!([1, 2]))).await;
    let error = r.assert_error(422, "validation_failed");
    assert_eq!(error["details"]["body"], "must be an object");
    let r = reply(client.post(format!("{base}/echo")).json(&serde_json::json!({"name": "x", "count": 11}))).await;
    let error = r.assert_error(422, "validation_failed");
    assert_eq!(error["details"]["count"], "must be at most 10");
    let r = reply(client.post(format!("{base}/echo")).json(&serde_json::json!({"name": "x", "count": 2}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 2);
}

#[tokio::test]
async fn bad_query_parameter_is_422_naming_it() {
    let (base, client) = fixture().await;
    let r = reply(client.get(format!("{base}/items?limit=lots"))).await;
    let error = r.assert_error(422, "validation_failed");
    assert!(error["details"]["limit"].is_string(), "{error}");
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415_envelope() {
    let (base, client) = fixture().await;
    let r = reply(client.post(format!("{base}/echo")).header("content-type", "text/plain").body("{}")).await;
    r.assert_error(415, "unsupported_media_type");
    let r = reply(client.post(format!("{base}/echo")).body("{}")).await;
    r.assert_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn panics_and_internal_failures_are_500_without_internals() {
    let (base, client) = fixture().await;
    for path in ["/panic", "/fail"] {
        let r = reply(client.get(format!("{base}{path}"))).await;
        let error = r.assert_error(500, "internal");
        assert_eq!(error["message"], "internal error");
        assert!(!r.text.contains("secret-detail"), "internals leaked: {}", r.text);
        assert!(r.header("x-request-id").is_some());
    }
}

/// Every bad field is named by its path, in plain words: no internal type names or parser traces.
#[tokio::test]
async fn details_name_fields_by_path_in_plain_words() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let body = serde_json::json!({"name": "N", "company_name": "C", "billing_email": "b@example.com",
        "stripe_customer_id": "x".repeat(300),
        "address": {"street": "1 St", "city": "Berlin", "country": "DE", "colour": "blue"},
        "billing_settings": {"billing_day": -1, "payment_terms_days": 99_999_999_999u64}});
    let reply = app.call(Method::POST, "/customers", &admin, Some(body)).await;
    let error = reply.assert_error(422, "validation_failed");
    let details = &error["details"];
    assert_eq!(details["stripe_customer_id"], "must be at most 255 characters", "{error}");
    assert_eq!(details["address.colour"], "is not a field of this object", "{error}");
    assert_eq!(details["billing_settings.billing_day"], "must be an integer from 0 to 4294967295", "{error}");
    assert_eq!(details["billing_settings.payment_terms_days"], "must be an integer from 0 to 4294967295");
    for internal in ["Request", "Input", "uint32", "occurred while parsing", "failed to parse"] {
        assert!(!reply.text.contains(internal), "{internal} in {}", reply.text);
    }
}

/// Sends `request` on a connection of its own and reads the answer until the server closes it.
async fn raw_answer(app: &TestApp, request: Vec<u8>) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(&request).await.expect("request sent");
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("answer read");
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {answer}"));
    (head.to_ascii_lowercase(), serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")))
}

#[tokio::test]
async fn requests_too_large_or_malformed_to_parse_are_answered_in_the_envelope_with_the_headers() {
    let app = TestApp::spawn().await;
    let many_headers: String = (0..150).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let long_target = format!("/health?{}", "a".repeat(70_000));
    let cases = [
        (format!("GET /health HTTP/1.1\r\nHost: portal\r\n{many_headers}\r\n"), "431", "headers_too_large"),
        (format!("GET {long_target} HTTP/1.1\r\nHost: portal\r\n\r\n"), "414", "uri_too_long"),
        ("GET /health HTTP/1.1\r\nHost portal\r\n\r\n".to_string(), "400", "bad_request"),
        ("BREW\u{1}POT /health HTTP/1.1\r\n\r\n".to_string(), "400", "bad_request"),
    ];
    for (request, status, code) in cases {
        let (head, body) = raw_answer(&app, request.into_bytes()).await;
        assert!(head.starts_with(&format!("http/1.1 {status} ")), "{head}");
        assert_eq!(body["error"]["code"], code, "{body}");
        for header in [
            "content-type: application/json",
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'none'",
            "x-frame-options: deny",
            "referrer-policy: no-referrer",
            "cache-control: no-store",
            "x-request-id: ",
        ] {
            assert!(head.contains(header), "{status}: no {header} in {head}");
        }
    }
    // Requests the server can read still get the app's answers on the same kind of connection.
    let (head, body) =
        raw_answer(&app, b"GET /health HTTP/1.1\r\nHost: portal\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body["status"], "ok");
}
