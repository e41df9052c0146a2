//! The `Idempotency-Key` header as an operation's parameter. poem-openapi's `Header<String>` drops a value
//! that is not visible ASCII, and the write would then run unprotected (a retry making a duplicate); this
//! one keeps such a value as refused, for [`crate::idempotency::begin`] to answer 422 once the caller's
//! access is settled.

use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaParamIn, MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::error::{Error, Result};

/// The header as sent: absent, a key, or a value that cannot be one. Declare it as
/// `#[oai(name = "Idempotency-Key")] key: IdempotencyKey`.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(Option<std::result::Result<String, ()>>);

impl IdempotencyKey {
    /// The key, if one was sent: 1–255 visible ASCII characters, else 422.
    pub fn get(&self) -> Result<Option<&str>> {
        match &self.0 {
            None => Ok(None),
            Some(Ok(key)) if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(key))
            }
            Some(_) => Err(Error::invalid("Idempotency-Key", "must be 1–255 visible ASCII characters")),
        }
    }
}

impl<'a> ApiExtractor<'a> for IdempotencyKey {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;
    type ParamType = String;
    type ParamRawType = String;

    fn register(registry: &mut Registry) {
        <String as Type>::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(<String as Type>::schema_ref())
    }

    fn param_raw_type(&self) -> Option<&Self::ParamRawType> {
        self.0.as_ref().and_then(|v| v.as_ref().ok())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let value = request.headers().get(param_opts.name);
        Ok(Self(value.map(|v| v.to_str().map(str::to_string).map_err(|_| ()))))
    }
}
