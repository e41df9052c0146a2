//! `PutBody<T, V>`: the body of a PUT, which takes back what the matching GET gave. `T` holds the fields
//! the operation may change; `V` is the representation the GET returns. A client that reads `V`, changes
//! one field and sends it all back gets `V`'s read-only fields (`id`, `created_at`, nested read-only
//! objects …) ignored when they still hold the current values, and a 422 naming each one it changed. A
//! field neither `T` nor `V` knows stays a 422 as an unknown field.
//!
//! Like [`JsonBody`](crate::JsonBody), the verdict waits until the handler has settled the caller's access
//! and read the current `V`: [`PutBody::into_inner`].

use std::collections::BTreeMap;
use std::marker::PhantomData;

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaRequest, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ToJSON, Type};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::{Map, Value};

use crate::body::{invalid, json_request_meta, parse_json, parse_value, property_names, refused_content_type, JSON};
use crate::error::Error;

/// See the module docs.
pub struct PutBody<T, V> {
    parsed: Result<T, Error>,
    /// `V`'s read-only fields as the body sent them.
    read_only: Map<String, Value>,
    view: PhantomData<fn() -> V>,
}

impl<T, V: ToJSON> PutBody<T, V> {
    /// The names of the read-only fields the body sent with another value than `current` holds.
    pub fn changed_read_only(&self, current: &V) -> Vec<String> {
        let current = current.to_json().unwrap_or(Value::Null);
        self.read_only
            .iter()
            .filter(|(name, sent)| !same(sent, current.get(name.as_str()).unwrap_or(&Value::Null)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The changes, or the 400/415/422 the body earned: its own shape first, then each read-only field
    /// it changed. Call it once the caller's access is settled.
    pub fn into_inner(self, current: &V) -> Result<T, Error> {
        let changed = self.changed_read_only(current);
        let parsed = self.parsed?;
        if !changed.is_empty() {
            let problems: BTreeMap<String, Value> = changed
                .into_iter()
                .map(|name| (name, Value::String("is read-only: send it unchanged or leave it out".into())))
                .collect();
            return Err(invalid(problems));
        }
        Ok(parsed)
    }
}

impl<T: ParseFromJSON, V: Type> PutBody<T, V> {
    fn from_bytes(data: &[u8]) -> Self {
        let mut read_only = Map::new();
        let parsed = parse_json(data).and_then(|mut value| {
            if let Value::Object(fields) = &mut value {
                read_only = take_read_only(fields, &property_names::<T>(), &property_names::<V>());
            }
            parse_value::<T>(value)
        });
        Self { parsed, read_only, view: PhantomData }
    }
}

/// Moves out of `fields` those that only the representation (`view`) has, not the changes (`writable`).
fn take_read_only(fields: &mut Map<String, Value>, writable: &[&str], view: &[&str]) -> Map<String, Value> {
    let names: Vec<String> = fields
        .keys()
        .filter(|name| !writable.contains(&name.as_str()) && view.contains(&name.as_str()))
        .cloned()
        .collect();
    names.into_iter().filter_map(|name| fields.remove(&name).map(|value| (name, value))).collect()
}

/// Whether a value sent back is the value the GET gave, as a client's JSON library may have rewritten
/// it: numbers by value (`10.5` = `10.50`), times by instant (`…Z` = `…+00:00`), ids in any case, `null`
/// for an absent field, objects by the fields sent.
fn same(sent: &Value, current: &Value) -> bool {
    match (sent, current) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) => a == b || same_instant(a, b) || same_uuid(a, b),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(name, x)| same(x, b.get(name).unwrap_or(&Value::Null))),
        (a, b) => a == b,
    }
}

fn same_instant(a: &str, b: &str) -> bool {
    match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn same_uuid(a: &str, b: &str) -> bool {
    matches!((uuid::Uuid::parse_str(a), uuid::Uuid::parse_str(b)), (Ok(a), Ok(b)) if a == b)
}

impl<T: Type, V: Send> Payload for PutBody<T, V> {
    const CONTENT_TYPE: &'static str = JSON;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON, V: Type> ParsePayload for PutBody<T, V> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = <Vec<u8> as FromRequest>::from_request(request, body).await?;
        Ok(Self::from_bytes(&data))
    }
}

/// Documented as `T`, like [`JsonBody`](crate::JsonBody).
impl<'a, T: ParseFromJSON, V: Type> ApiExtractor<'a> for PutBody<T, V> {
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
            Some(refusal) => Ok(Self { parsed: Err(refusal), read_only: Map::new(), view: PhantomData }),
            None => <Self as ParsePayload>::from_request(request, body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_rewritten_by_client_libraries_are_the_same() {
        assert!(same(&json!(10.5), &json!(10.50)));
        assert!(same(&json!(10), &json!(10.0)));
        assert!(same(&json!("2026-12-02T05:40:28.123456Z"), &json!("2026-12-02T05:40:28.123456+00:00")));
        assert!(same(&json!("0193A3B4-0000-7000-8000-000000000001"), &json!("0193a3b4-0000-7000-8000-000000000001")));
        assert!(same(&json!(null), &json!(null)));
        assert!(same(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(same(&json!({"a": 1, "c": null}), &json!({"a": 1})));
    }

    #[test]
    fn changed_values_are_not_the_same() {
        assert!(!same(&json!(10.5), &json!(10.51)));
        assert!(!same(&json!("2026-12-02T05:40:28Z"), &json!("2026-12-02T05:40:29Z")));
        assert!(!same(&json!({"a": 2}), &json!({"a": 1})));
        assert!(!same(&json!([1, 2]), &json!([1])));
        assert!(!same(&json!("x"), &json!(null)));
        assert!(!same(&json!(0), &json!(false)));
    }

    #[test]
    fn only_fields_of_the_representation_alone_are_read_only() {
        let mut fields = json!({"name": "n", "id": "i", "bogus": 1}).as_object().cloned().unwrap_or_default();
        let taken = take_read_only(&mut fields, &["name"], &["id", "name"]);
        assert_eq!(Value::Object(taken), json!({"id": "i"}));
        assert_eq!(Value::Object(fields), json!({"name": "n", "bogus": 1}));
    }
}
