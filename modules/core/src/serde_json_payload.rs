//! `SerdeJson<T>`: a JSON response written straight from the view's serde `Serialize` into one buffer
//! (by [`crate::json_writer`]), for the hottest reads. poem-openapi's `Json<T>` builds a
//! `serde_json::Value` tree first and then prints it, which costs an allocation per field. The document is the same: the schema is still `T`'s,
//! and each view using this carries a test that both give the same JSON.

use poem::http::{header, HeaderValue};
use poem::{IntoResponse, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::ApiResponse;
use serde::Serialize;

use crate::Error;

/// Large enough for a typical view, so serializing rarely grows the buffer.
const INITIAL_CAPACITY: usize = 1024;
const CONTENT_TYPE: &str = "application/json; charset=utf-8";

pub struct SerdeJson<T>(pub T);

impl<T: Type + Serialize + Send> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(INITIAL_CAPACITY);
        match crate::json_writer::write(&mut body, &self.0) {
            Ok(()) => {
                let mut resp = Response::builder().body(body);
                let headers = resp.headers_mut();
                // Room for what every answer gets on its way out (the security headers, the request id)
                // at once: a header map that grows is copied and hashed again.
                headers.reserve(8);
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                resp
            }
            Err(e) => poem::error::ResponseError::as_response(&Error::internal(format!("writing JSON: {e}"))),
        }
    }
}

impl<T: Type + Serialize + Send> ApiResponse for SerdeJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType { content_type: CONTENT_TYPE, schema: T::schema_ref() }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}
