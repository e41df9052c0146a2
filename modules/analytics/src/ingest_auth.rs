//! Who may send events: an admin (bearer token or session cookie) or anyone holding an ingest key of the
//! customer (`X-Ingest-Key`). The extractor only collects the credentials and documents the three
//! schemes; the handler checks a key against the store in its own transaction.

use poem::Request;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use portal_core::auth::{AuthFailure, BEARER_SCHEME, COOKIE_SCHEME};
use portal_core::config::Secret;
use portal_core::{Auth, Error, Principal};

use crate::keys::HEADER;

/// Name of the ingest-key scheme in the OpenAPI document.
pub const INGEST_KEY_SCHEME: &str = "ingestKey";

pub enum IngestCaller {
    /// An ingest key (not yet checked).
    Key(Secret),
    /// A signed-in user (the handler requires an admin).
    User(Principal),
}

impl<'a> ApiExtractor<'a> for IngestCaller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Auth as ApiExtractor>::register(registry);
        registry.create_security_scheme(
            INGEST_KEY_SCHEME,
            MetaSecurityScheme {
                ty: "apiKey",
                description: Some(
                    "A customer's ingest key (created by an admin) for sending that customer's app events.",
                ),
                name: Some(HEADER),
                key_in: Some("header"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![BEARER_SCHEME, COOKIE_SCHEME, INGEST_KEY_SCHEME]
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        if let Some(key) = req.headers().get(HEADER) {
            let key = key.to_str().map_err(|_| Error::unauthorized("the ingest key is not valid"))?;
            return Ok(IngestCaller::Key(Secret::new(key.trim())));
        }
        if let Some(principal) = req.extensions().get::<Principal>() {
            return Ok(IngestCaller::User(principal.clone()));
        }
        match req.extensions().get::<AuthFailure>() {
            Some(AuthFailure(e)) => Err(e.clone().into()),
            None => {
                Err(Error::unauthorized(format!("send an ingest key in {HEADER}, or an admin's bearer token")).into())
            }
        }
    }
}
