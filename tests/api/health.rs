//! `/health` and the headers every response carries.

use crate::helpers::TestApp;

#[tokio::test]
async fn health_reports_ok_with_version_and_database() {
    let app = TestApp::spawn().await;
    let reply = app.get("/health").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = TestApp::spawn().await;
    for path in ["/health", "/no-such-path", "/openapi.json"] {
        let reply = app.get(path).await;
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        let id = reply.header("x-request-id").expect("request id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "generated request id is a uuid: {id}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_replaced_when_not() {
    let app = TestApp::spawn().await;
    let reply = app.send(app.request(reqwest::Method::GET, "/health").header("x-request-id", "abc-123_x.y")).await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123_x.y"));
    let hostile = "a".repeat(65);
    let reply = app.send(app.request(reqwest::Method::GET, "/health").header("x-request-id", &hostile)).await;
    let id = reply.header("x-request-id").unwrap();
    assert_ne!(id, hostile);
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

#[tokio::test]
async fn docs_page_is_self_contained_swagger_ui() {
    let app = TestApp::spawn().await;
    let reply = app.get("/docs").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert!(reply.text.contains("SwaggerUIBundle"), "Swagger UI bundle is inline");
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "unpkg", "cdn"] {
        assert!(!reply.text.contains(external), "external asset reference `{external}`");
    }
    let csp = reply.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'sha256-"), "scripts allowed by hash only: {csp}");
    assert!(!csp.contains("script-src 'unsafe-inline'"));
}
