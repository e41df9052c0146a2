//! Cross-cutting request handling: request id and access log line, security headers, body size limit,
//! the caller's credentials and rate limit, and the error envelope that every failure (including poem's
//! own: unknown route, wrong method, bad JSON, wrong content type, panics) is rendered in.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use poem::error::ReadBodyError;
use poem::http::{header, HeaderName, HeaderValue, Method};
use poem::{Endpoint, IntoResponse, Request, Response};
use portal_core::auth::SharedAuthenticator;
use portal_core::config::BODY_LIMIT_BYTES;
use portal_core::rate_limit::RateLimiter;
use portal_core::{Error, ErrorCode};

use crate::logging::Access;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

use portal_core::audit::RequestId;

/// Accepts a client's request id when it is short and plain; otherwise makes one.
fn request_id_of(req: &Request) -> RequestId {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::plain)
        .unwrap_or_else(RequestId::generate)
}

/// Every request's own handling, in one layer (each layer costs a request its own moves of the request
/// and of the nested futures): an id, echoed in `X-Request-Id` and carried by every log line of the
/// request; the body size limit; every error and panic in the envelope; the security headers; and the
/// access log line with method, path, status and latency.
pub async fn handle<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    tls: bool,
    body_deadline: Duration,
) -> poem::Result<Response> {
    let id = request_id_of(&req);
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let started = Instant::now();
    let header = HeaderValue::from_str(id.as_str());
    id.scope(async move {
        let mut resp = match limit_body(&mut req, body_deadline).await {
            // `E::call`: through `Arc`'s own `Endpoint` the request's future would gain a layer to copy.
            Ok(()) => match AssertUnwindSafe(E::call(&ep, req)).catch_unwind().await {
                Ok(result) => result.map(IntoResponse::into_response).unwrap_or_else(render_error),
                Err(panic) => panic_response(panic),
            },
            Err(e) => e.as_response_envelope(),
        };
        add_security_headers(&mut resp, tls);
        crate::logging::access(&Access {
            method: method.as_str(),
            path: uri.path(),
            status: resp.status().as_u16(),
            latency: started.elapsed(),
        });
        if let Ok(value) = header {
            resp.headers_mut().insert(REQUEST_ID, value);
        }
        Ok(resp)
    })
    .await
}

/// What the routes need from the app before they run: the credential check and the rate limiter.
pub struct Gate {
    pub authenticator: SharedAuthenticator,
    pub limiter: Arc<RateLimiter>,
}

/// The caller resolved from its credentials, then held to its rate limit, then the route run as its audit
/// actor: one layer for the three (see [`handle`]).
pub async fn admit<E: Endpoint>(ep: Arc<E>, mut req: Request, gate: Arc<Gate>) -> poem::Result<Response> {
    let actor = portal_core::auth::identify(&mut req, &*gate.authenticator).await;
    actor.scope(portal_core::rate_limit::limit(&*ep, req, &gate.limiter)).await
}

/// The contract's headers, checked when compiled rather than on every response.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'")),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
];

const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// Adds the contract's headers to a response (pages that set their own CSP, like `/docs`, keep it).
pub fn add_security_headers(resp: &mut Response, tls: bool) {
    let headers = resp.headers_mut();
    headers.reserve(SECURITY_HEADERS.len() + 2);
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(value);
    }
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
}

/// Refuses bodies over 1 MiB with 413 (by `Content-Length` when given, else while reading the body) and
/// bodies that do not arrive within `deadline` with 408: a body is read whole here, so no handler waits on
/// a client that trickles it.
async fn limit_body(req: &mut Request, deadline: Duration) -> Result<(), Error> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > BODY_LIMIT_BYTES as u64 => Err(Error::payload_too_large()),
        Some(0) => Ok(()),
        None if req.method() == Method::GET || req.method() == Method::HEAD => Ok(()),
        // Boxed: the body read is a large future, and reads (most requests) never get here.
        _ => Box::pin(read_body_within_limits(req, deadline)).await,
    }
}

/// Reads the body, up to the size limit and within `deadline`, and puts it back into the request.
async fn read_body_within_limits(req: &mut Request, deadline: Duration) -> Result<(), Error> {
    let read = tokio::time::timeout(deadline, req.take_body().into_bytes_limit(BODY_LIMIT_BYTES)).await;
    let bytes = read
        .map_err(|_| {
            Error::new(
                ErrorCode::RequestTimeout,
                format!("the request body did not arrive within {} s", deadline.as_secs()),
            )
        })?
        .map_err(|e| match e {
            ReadBodyError::PayloadTooLarge => Error::payload_too_large(),
            other => Error::bad_request(format!("cannot read the request body: {other}")),
        })?;
    req.set_body(bytes);
    Ok(())
}

/// Maps any `poem::Error` to the envelope (see [`Error::from_poem`]).
pub fn render_error(err: poem::Error) -> Response {
    Error::from_poem(err).as_response_envelope()
}

/// A panic in a handler: a 500 envelope, details only in the log.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::internal(format!("handler panicked: {what}")).as_response_envelope()
}

/// Our errors as responses, in the envelope.
trait AsEnvelope {
    fn as_response_envelope(&self) -> Response;
}

impl AsEnvelope for Error {
    fn as_response_envelope(&self) -> Response {
        poem::error::ResponseError::as_response(self)
    }
}
