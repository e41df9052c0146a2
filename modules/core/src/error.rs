//! The one error type of the portal and its one mapping to the spec's error envelope
//! `{"error":{"code","message","details"}}` and HTTP status codes.

use std::collections::BTreeMap;
use std::fmt;

use poem::http::{header, HeaderValue, StatusCode};
use poem::{error::ResponseError, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Enum, Object};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Machine-readable error codes; each has exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    ValidationFailed,
    Unauthorized,
    TwoFactorRequired,
    PaymentFailed,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    IdempotencyConflict,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    HeadersTooLarge,
    RateLimited,
    Internal,
    UpstreamUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::TwoFactorRequired => StatusCode::UNAUTHORIZED,
            Self::PaymentFailed => StatusCode::PAYMENT_REQUIRED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict | Self::IdempotencyConflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::ValidationFailed => "validation_failed",
            Self::Unauthorized => "unauthorized",
            Self::TwoFactorRequired => "two_factor_required",
            Self::PaymentFailed => "payment_failed",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::Conflict => "conflict",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::UpstreamUnavailable => "upstream_unavailable",
        }
    }
}

/// The body of every non-2xx response.
#[derive(Debug, Object)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

/// What went wrong, for machines (`code`, `details`) and people (`message`).
#[derive(Debug, Object)]
pub struct ErrorObject {
    pub code: ErrorCode,
    pub message: String,
    /// Per-field reasons for `validation_failed`; other context for the rest.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<BTreeMap<String, serde_json::Value>>,
}

/// An error on its way to the client. Internal causes are logged, never shown.
#[derive(Clone)]
pub struct Error {
    code: ErrorCode,
    message: String,
    details: Option<BTreeMap<String, serde_json::Value>>,
    retry_after_secs: Option<u64>,
    /// The hidden cause of an `internal` or `upstream_unavailable` error, for the log only.
    cause: Option<String>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: None, retry_after_secs: None, cause: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// One invalid field; use [`Validation`] to collect several.
    pub fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        let mut v = Validation::default();
        v.add(field, why);
        v.into_error()
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `what` names the kind of object, e.g. "customer".
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(ErrorCode::RateLimited, "too many requests; retry later");
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    /// An outside service (Stripe, SMTP, Google) failed; `cause` is logged, not shown.
    pub fn upstream(message: impl Into<String>, cause: impl fmt::Display) -> Self {
        let mut e = Self::new(ErrorCode::UpstreamUnavailable, message);
        e.cause = Some(cause.to_string());
        e
    }

    /// Anything unexpected. The client sees a generic message; `cause` goes to the log.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(ErrorCode::Internal, "internal error");
        e.cause = Some(cause.to_string());
        e
    }

    pub fn with_details(mut self, details: BTreeMap<String, serde_json::Value>) -> Self {
        self.details = Some(details);
        self
    }

    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.details.get_or_insert_with(BTreeMap::new).insert(key.into(), value.into());
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> Option<&BTreeMap<String, serde_json::Value>> {
        self.details.as_ref()
    }

    /// The envelope, for operations that document an error status of their own (402 on payments).
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorObject { code: self.code, message: self.message.clone(), details: self.details.clone() },
        }
    }

    /// The envelope as JSON bytes.
    pub fn body(&self) -> Vec<u8> {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.as_str().into());
        error.insert("message".into(), self.message.clone().into());
        if let Some(details) = &self.details {
            let details = details.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            error.insert("details".into(), serde_json::Value::Object(details));
        }
        let envelope = serde_json::json!({ "error": error });
        serde_json::to_vec(&envelope)
            .unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}".to_vec())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.code.as_str())
            .field("message", &self.message)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {} ({cause})", self.code.as_str(), self.message),
            None => write!(f, "{}: {}", self.code.as_str(), self.message),
        }
    }
}

impl std::error::Error for Error {}

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        self.code.status()
    }

    fn as_response(&self) -> Response {
        if let Some(cause) = &self.cause {
            tracing::error!(code = self.code.as_str(), %cause, "request failed");
        }
        let mut resp = Response::builder()
            .status(self.code.status())
            .content_type("application/json; charset=utf-8")
            .body(self.body());
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code.status() == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The statuses documented on every operation, with why each can happen.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Malformed request (bad JSON, bad parameter)"),
    (401, "Missing, invalid, expired or revoked credentials"),
    (403, "Authenticated but not allowed (role, CSRF)"),
    (404, "No such object, or not visible to the caller"),
    (408, "The request body did not arrive in time"),
    (409, "Conflicts with the current state"),
    (413, "Request body larger than 1 MiB"),
    (415, "Request body is not JSON"),
    (422, "A field is invalid; details name each field"),
    (429, "Rate limited; see Retry-After"),
    (500, "Internal error"),
    (503, "An outside service or the store is unavailable"),
];

impl ApiResponse for Error {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorEnvelope::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorEnvelope::register(registry);
    }
}

/// Collects per-field validation failures so one 422 names every bad field.
#[derive(Debug, Default)]
pub struct Validation {
    fields: BTreeMap<String, serde_json::Value>,
}

impl Validation {
    pub fn add(&mut self, field: impl Into<String>, why: impl Into<String>) {
        self.fields.entry(field.into()).or_insert_with(|| serde_json::Value::String(why.into()));
    }

    /// Records the error of `result` under `field` and returns its value, if any.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(why) => {
                self.add(field, why);
                None
            }
        }
    }

    /// Whether `field` already has a complaint.
    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn into_error(self) -> Error {
        let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
        let message = format!("invalid field(s): {}", names.join(", "));
        Error::new(ErrorCode::ValidationFailed, message).with_details(self.fields)
    }

    /// `Ok(())` when nothing was added.
    pub fn finish(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

macro_rules! internal_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::internal(e)
            }
        })*
    };
}

/// A database server that cannot be reached is a service unavailable for now (503, to try again); any
/// other failure of the store is internal.
impl From<portal_store::StoreError> for Error {
    fn from(e: portal_store::StoreError) -> Self {
        match e.is_unreachable() {
            true => Error::upstream("the database cannot be reached; try again shortly", e),
            false => Error::internal(e),
        }
    }
}

internal_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::SavepointError,
    rmp_serde::encode::Error,
    rmp_serde::decode::Error,
    std::io::Error,
    tokio::task::JoinError,
);
