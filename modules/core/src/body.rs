//! `JsonBody<T>`: the JSON request body extractor of every operation. It documents `T` exactly like
//! poem-openapi's `Json<T>`, but answers a body of the wrong shape with a 422 whose `details` name each bad
//! field (`"address.country": "is required"`, `"status": "must be one of: active, inactive"`), checked
//! against `T`'s own schema, instead of one message about the whole body. Bodies that are not JSON at all
//! answer 400, bodies that are not sent as JSON 415.
//!
//! The body's verdict is held back until the handler asks for it with [`JsonBody::into_inner`], after it
//! checked who the caller is and what it may touch: the order of refusals is 401, then 403/404, then
//! 400/415/422, so that a caller who may not use an operation never learns its schema.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;

use crate::error::{Error, ErrorCode};

/// The request body, parsed, or why it was refused. See the module docs.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(Result<T, Error>);

impl<T> JsonBody<T> {
    /// The body, or the 400/415/422 it earned. Call it once the caller's access is settled.
    pub fn into_inner(self) -> Result<T, Error> {
        self.0
    }

    /// [`into_inner`](Self::into_inner) by reference, for closures that may run more than once.
    pub fn get(&self) -> Result<&T, Error> {
        self.0.as_ref().map_err(Clone::clone)
    }
}

/// The content type the API speaks.
pub(crate) const JSON: &str = "application/json; charset=utf-8";

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        Ok(JsonBody(parse::<T>(&data)))
    }
}

/// Documented like poem-openapi's payloads, but the content type is judged with the body, later.
impl<'a, T: ParseFromJSON> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        json_request_meta::<T>()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match refused_content_type(request) {
            Some(refusal) => Ok(JsonBody(Err(refusal))),
            None => <Self as ParsePayload>::from_request(request, body).await,
        }
    }
}

/// How a required JSON body of `T` is documented (as poem-openapi documents its own payloads).
pub(crate) fn json_request_meta<T: Type>() -> Option<MetaRequest> {
    let content = vec![MetaMediaType { content_type: JSON, schema: T::schema_ref() }];
    Some(MetaRequest { description: None, content, required: true })
}

/// Why a body with this request's content type is refused (415), if it is.
pub(crate) fn refused_content_type(request: &Request) -> Option<Error> {
    let why = match request.content_type() {
        Some(content_type) if is_json(content_type) => return None,
        Some(content_type) => format!("unsupported content type `{content_type}`; send application/json"),
        None => "the request has no content type; send application/json".to_string(),
    };
    Some(Error::new(ErrorCode::UnsupportedMediaType, why))
}

/// `application/json` or `application/…+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    content_type
        .parse::<mime::Mime>()
        .is_ok_and(|m| m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
}

/// JSON of `T`'s shape, or the 400/422 naming what is wrong.
fn parse<T: ParseFromJSON>(data: &[u8]) -> Result<T, Error> {
    parse_value(parse_json(data)?)
}

/// Any JSON, or a 400.
pub(crate) fn parse_json(data: &[u8]) -> Result<Value, Error> {
    serde_json::from_slice(data).map_err(|e| Error::bad_request(format!("the request body is not valid JSON: {e}")))
}

/// `value` as a `T`, or the 422 naming each field that does not fit `T`'s schema.
pub(crate) fn parse_value<T: ParseFromJSON>(value: Value) -> Result<T, Error> {
    let shape = shape_of::<T>();
    let mut problems = BTreeMap::new();
    check(&shape.registry, &shape.root, &value, "", &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    T::parse_from_json(Some(value)).map_err(|e| {
        let message = e.into_message();
        let mut problems = BTreeMap::new();
        let field = field_named_in(&message).unwrap_or_else(|| "body".into());
        problems.insert(field, Value::String(plain_reason(&message)));
        invalid(problems)
    })
}

/// The names of the top-level properties of object type `T`.
pub(crate) fn property_names<T: Type>() -> Vec<&'static str> {
    let shape = shape_of::<T>();
    resolve(&shape.registry, &shape.root)
        .map(|s| s.properties.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default()
}

pub(crate) fn invalid(problems: BTreeMap<String, Value>) -> Error {
    let names: Vec<&str> = problems.keys().map(String::as_str).collect();
    Error::new(ErrorCode::ValidationFailed, format!("invalid field(s): {}", names.join(", "))).with_details(problems)
}

/// Why a value of the right JSON type is still out of its schema's bounds: an integer outside its format's
/// range, a string longer or shorter than allowed.
fn out_of_bounds(schema: &MetaSchema, value: &Value) -> Option<String> {
    match value {
        Value::Number(n) if schema.ty == "integer" => {
            let (min, max): (i128, i128) = match schema.format? {
                "uint8" => (0, u8::MAX.into()),
                "uint16" => (0, u16::MAX.into()),
                "uint32" => (0, u32::MAX.into()),
                "uint64" => (0, u64::MAX.into()),
                "int8" => (i8::MIN.into(), i8::MAX.into()),
                "int16" => (i16::MIN.into(), i16::MAX.into()),
                "int32" => (i32::MIN.into(), i32::MAX.into()),
                "int64" => (i64::MIN.into(), i64::MAX.into()),
                _ => return None,
            };
            let n = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))?;
            (n < min || n > max).then(|| format!("must be an integer from {min} to {max}"))
        }
        Value::String(s) => {
            let len = s.chars().count();
            match (schema.min_length, schema.max_length) {
                (_, Some(max)) if len > max => Some(format!("must be at most {max} characters")),
                (Some(min), _) if len < min => Some(format!("must be at least {min} characters")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// poem-openapi's parse errors in plain words, without its internal type names: "failed to parse
/// \"NewAddress\": unknown field `x`. (occurred while parsing \"CreateCustomerRequest\")" → "is not a field
/// of this object".
fn plain_reason(message: &str) -> String {
    let reason = match message.split_once("\": ") {
        Some((head, rest)) if head.starts_with("failed to parse \"") => rest,
        _ => message,
    };
    let reason = reason.split(" (occurred while parsing").next().unwrap_or(reason).trim();
    if reason.starts_with("unknown field") {
        "is not a field of this object".to_string()
    } else if let Some((_, check)) = reason.split_once("verification failed. ") {
        format!("fails the check {check}")
    } else {
        reason.to_string()
    }
}

/// poem-openapi names the field in validator and unknown-field messages: "field `x` …", "unknown field `x`".
fn field_named_in(message: &str) -> Option<String> {
    let start = message.find("field `")? + "field `".len();
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// `T`'s schema and every schema it refers to, computed once per type.
struct Shape {
    registry: Registry,
    root: MetaSchemaRef,
}

fn shape_of<T: Type>() -> Arc<Shape> {
    static SHAPES: OnceLock<Mutex<HashMap<String, Arc<Shape>>>> = OnceLock::new();
    let mut shapes = SHAPES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(shapes.entry(T::name().into_owned()).or_insert_with(|| {
        let mut registry = Registry::new();
        T::register(&mut registry);
        Arc::new(Shape { registry, root: T::schema_ref() })
    }))
}

fn resolve<'a>(registry: &'a Registry, schema: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    match schema {
        MetaSchemaRef::Inline(s) => Some(s),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Records, under the field's dotted path, why `value` does not fit `schema`.
fn check(
    registry: &Registry,
    schema: &MetaSchemaRef,
    value: &Value,
    path: &str,
    problems: &mut BTreeMap<String, Value>,
) {
    let Some(schema) = resolve(registry, schema) else { return };
    let mut complain = |why: String| {
        let key = if path.is_empty() { "body".to_string() } else { path.to_string() };
        problems.entry(key).or_insert(Value::String(why));
    };
    // A documented reference is `allOf: [{$ref}, {description}]`: the value must fit each part.
    if !schema.all_of.is_empty() {
        for part in &schema.all_of {
            check(registry, part, value, path, problems);
        }
        return;
    }
    if !schema.enum_items.is_empty() {
        if !schema.enum_items.contains(value) {
            let allowed: Vec<String> =
                schema.enum_items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect();
            complain(format!("must be one of: {}", allowed.join(", ")));
        }
        return;
    }
    let actual = json_type(value);
    let fits = match schema.ty {
        "object" => actual == "object",
        "string" => actual == "string",
        "integer" => actual == "integer",
        "number" => actual == "integer" || actual == "number",
        "boolean" => actual == "boolean",
        "array" => actual == "array",
        _ => true,
    };
    if !fits {
        complain(format!("must be a{} {}", if schema.ty.starts_with(['a', 'i', 'o']) { "n" } else { "" }, schema.ty));
        return;
    }
    if let Some(why) = out_of_bounds(schema, value) {
        complain(why);
        return;
    }
    match value {
        Value::Object(object) if !schema.properties.is_empty() => {
            let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
            for required in &schema.required {
                if object.get(*required).is_none_or(Value::is_null) {
                    problems.entry(format!("{prefix}{required}")).or_insert(Value::String("is required".into()));
                }
            }
            // Request objects take their own fields only (a typo must not pass as a default).
            if schema.additional_properties.is_none() {
                for key in object.keys().filter(|k| !schema.properties.iter().any(|(name, _)| name == k)) {
                    let why = Value::String("is not a field of this object".into());
                    problems.entry(format!("{prefix}{key}")).or_insert(why);
                }
            }
            for (name, property) in &schema.properties {
                match object.get(*name) {
                    Some(Value::Null) | None => {}
                    Some(v) => check(registry, property, v, &format!("{prefix}{name}"), problems),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    check(registry, item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poem_messages_lose_their_type_names() {
        let nested =
            "failed to parse \"NewAddress\": unknown field `x`. (occurred while parsing \"CreateCustomerRequest\")";
        assert_eq!(plain_reason(nested), "is not a field of this object");
        let check = "failed to parse \"CreateCustomerRequest\": field `name` verification failed. maxLength(5)";
        assert_eq!(plain_reason(check), "fails the check maxLength(5)");
        assert_eq!(plain_reason("something plain"), "something plain");
    }

    #[test]
    fn finds_the_field_in_poem_messages() {
        assert_eq!(field_named_in("field `name` verification failed. maxLength(200)"), Some("name".into()));
        assert_eq!(field_named_in("unknown field `role`."), Some("role".into()));
        assert_eq!(field_named_in("something else"), None);
    }
}
