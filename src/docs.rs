//! `/docs` (Swagger UI) and `/openapi.json`. Swagger UI's script and styles are embedded in the binary
//! (poem-openapi's `swagger-ui` feature), so the page works with no network. Its inline scripts are
//! allowed by hash in the page's Content-Security-Policy, nothing else may run.

use base64::Engine;
use poem::http::{header, StatusCode};
use poem::{handler, web::Data, Endpoint, EndpointExt, IntoEndpoint, Response};
use sha2::{Digest, Sha256};

/// A ready-made response body and its headers, built once at start-up.
#[derive(Clone)]
struct Page {
    body: bytes::Bytes,
    content_type: &'static str,
    csp: Option<String>,
}

#[handler]
fn serve(page: Data<&Page>) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .content_type(page.content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(page.body.clone());
    if let Some(csp) = &page.csp {
        if let Ok(value) = csp.parse() {
            resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    resp
}

/// `GET /openapi.json`.
pub fn spec_endpoint(spec: String) -> impl Endpoint {
    let page = Page { body: spec.into(), content_type: "application/json; charset=utf-8", csp: None };
    serve.data(page).into_endpoint()
}

/// `GET /docs`: the Swagger UI page for `html`.
pub fn swagger_endpoint(html: String) -> impl Endpoint {
    let csp = swagger_csp(&html);
    let page = Page { body: html.into(), content_type: "text/html; charset=utf-8", csp: Some(csp) };
    serve.data(page).into_endpoint()
}

/// A policy allowing exactly the page's inline scripts (by SHA-256), its inline styles, images from
/// data URLs and API calls to this origin.
fn swagger_csp(html: &str) -> String {
    let hashes: Vec<String> = inline_blocks(html, "script")
        .into_iter()
        .map(|code| {
            let digest = Sha256::digest(code.as_bytes());
            format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
        })
        .collect();
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes.join(" ")
    )
}

/// The contents of every `<tag …>…</tag>` element.
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after_open = &rest[start..];
        let Some(body_start) = after_open.find('>') else { break };
        let body = &after_open[body_start + 1..];
        let Some(end) = body.find(&close) else { break };
        blocks.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_every_inline_script() {
        let html = "<html><script charset=\"UTF-8\">a()</script><p>x</p><script>b()</script></html>";
        assert_eq!(inline_blocks(html, "script"), vec!["a()", "b()"]);
        let csp = swagger_csp(html);
        assert_eq!(csp.matches("'sha256-").count(), 2);
        assert!(!csp.contains("unsafe-eval"));
    }
}
