//! poem's and poem-openapi's own failures (unknown route, wrong method, bad parameter, bad JSON, wrong
//! content type) as our [`Error`], so that every layer that turns an error into a response renders the
//! same envelope.

use poem::error::{MethodNotAllowedError, NotFoundError};
use poem::http::StatusCode;
use poem_openapi::error::{ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError};

use crate::config::BODY_LIMIT_BYTES;
use crate::error::{Error, ErrorCode};

impl Error {
    /// Ours as they are; poem's and poem-openapi's with the matching code; anything else is internal,
    /// its text kept for the log only.
    pub fn from_poem(err: poem::Error) -> Error {
        let status = err.status();
        let err = match err.downcast::<Error>() {
            Ok(ours) => return ours,
            Err(err) => err,
        };
        if err.is::<NotFoundError>() {
            Error::new(ErrorCode::NotFound, "no such route")
        } else if err.is::<MethodNotAllowedError>() {
            Error::new(ErrorCode::MethodNotAllowed, "method not allowed for this route")
        } else if let Some(e) = err.downcast_ref::<ParseParamError>() {
            Error::invalid(e.name, e.reason.clone())
        } else if err.is::<ParsePathError>() {
            Error::new(ErrorCode::NotFound, "no such object")
        } else if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
            payload_error(&e.reason)
        } else if let Some(e) = err.downcast_ref::<ContentTypeError>() {
            Error::new(ErrorCode::UnsupportedMediaType, format!("{e}; send application/json"))
        } else {
            match status {
                StatusCode::NOT_FOUND => Error::new(ErrorCode::NotFound, "no such route"),
                StatusCode::METHOD_NOT_ALLOWED => Error::new(ErrorCode::MethodNotAllowed, "method not allowed"),
                StatusCode::UNAUTHORIZED => Error::unauthorized("missing or invalid credentials"),
                StatusCode::FORBIDDEN => Error::forbidden("forbidden"),
                StatusCode::PAYLOAD_TOO_LARGE => Error::payload_too_large(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    Error::new(ErrorCode::UnsupportedMediaType, "send application/json")
                }
                s if s.is_client_error() => Error::bad_request(err.to_string()),
                _ => Error::internal(err.to_string()),
            }
        }
    }

    /// A request body over the limit.
    pub fn payload_too_large() -> Error {
        Error::new(ErrorCode::PayloadTooLarge, format!("request body exceeds {BODY_LIMIT_BYTES} bytes"))
    }
}

/// A body that is not JSON at all is a 400; JSON of the wrong shape is a 422 with the reason.
fn payload_error(reason: &str) -> Error {
    let syntax = ["expected", "EOF", "trailing", "invalid", "key must be a string", "control character"];
    if reason.contains("line") && reason.contains("column") && syntax.iter().any(|s| reason.contains(s)) {
        Error::bad_request(format!("the request body is not valid JSON: {reason}"))
    } else {
        Error::new(ErrorCode::ValidationFailed, format!("the request body does not match the schema: {reason}"))
            .with_detail("body", reason.to_string())
    }
}
