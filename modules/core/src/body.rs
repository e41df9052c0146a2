//! `JsonBody<T>`: the JSON request body extractor of every operation. It documents `T` exactly like
//! poem-openapi's `Json<T>`, but answers a body of the wrong shape with a 422 whose `details` name each bad
//! field (`"address.country": "is required"`, `"status": "must be one of: active, inactive"`), checked
//! against `T`'s own schema, instead of one message about the whole body. Bodies that are not JSON at all
//! answer 400.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

use crate::error::{Error, ErrorCode};

#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        content_type.parse::<mime::Mime>().is_ok_and(|m| {
            m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
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
        let data = Vec::<u8>::from_request(request, body).await?;
        let value: Value = serde_json::from_slice(&data)
            .map_err(|e| Error::bad_request(format!("the request body is not valid JSON: {e}")))?;
        let shape = shape_of::<T>();
        let mut problems = BTreeMap::new();
        check(&shape.registry, &shape.root, &value, "", &mut problems);
        if !problems.is_empty() {
            return Err(invalid(problems).into());
        }
        T::parse_from_json(Some(value)).map(JsonBody).map_err(|e| {
            let message = e.into_message();
            let mut problems = BTreeMap::new();
            problems.insert(field_named_in(&message).unwrap_or_else(|| "body".into()), Value::String(message));
            invalid(problems).into()
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

fn invalid(problems: BTreeMap<String, Value>) -> Error {
    let names: Vec<&str> = problems.keys().map(String::as_str).collect();
    Error::new(ErrorCode::ValidationFailed, format!("invalid field(s): {}", names.join(", "))).with_details(problems)
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
    match value {
        Value::Object(object) if !schema.properties.is_empty() => {
            let prefix = if path.is_empty() { String::new() } else { format!("{path}.") };
            for required in &schema.required {
                if object.get(*required).is_none_or(Value::is_null) {
                    problems.entry(format!("{prefix}{required}")).or_insert(Value::String("is required".into()));
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
    fn finds_the_field_in_poem_messages() {
        assert_eq!(field_named_in("field `name` verification failed. maxLength(200)"), Some("name".into()));
        assert_eq!(field_named_in("unknown field `role`."), Some("role".into()));
        assert_eq!(field_named_in("something else"), None);
    }
}
