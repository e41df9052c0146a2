//! `Timestamp`: a UTC instant stored as microseconds since the Unix epoch and printed at the JSON edge as
//! RFC 3339 with a `Z` suffix (`2026-11-24T21:15:44Z`), as the contract shows.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Self(dt.timestamp_micros())
    }

    pub fn datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0).single().unwrap_or_default()
    }

    /// 8 key bytes that sort like the instants (big-endian with the sign bit flipped).
    pub fn to_key(self) -> [u8; 8] {
        ((self.0 as u64) ^ (1 << 63)).to_be_bytes()
    }

    pub fn from_key(bytes: &[u8]) -> Option<Self> {
        let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        Some(Self((u64::from_be_bytes(raw) ^ (1 << 63)) as i64))
    }

    /// Whole seconds since the Unix epoch (JWT and Stripe timestamps).
    pub fn unix_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1_000_000)))
    }

    /// RFC 3339, UTC, `Z` suffix; fractional seconds only when present.
    pub fn to_rfc3339(self) -> String {
        self.datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|dt| Self::from_datetime(dt.with_timezone(&Utc)))
            .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-11-24T21:15:44Z".to_string())
    }
}

impl Type for Timestamp {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Self::parse(&s).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ParseFromParameter for Timestamp {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse(value).map_err(ParseError::custom)
    }
}

impl ToJSON for Timestamp {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.to_rfc3339()))
    }
}

/// `#[serde(serialize_with = "rfc3339")]`: a timestamp in a JSON view, printed as at the JSON edge
/// (the plain `Serialize` of `Timestamp` is the stored microseconds).
pub fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

/// [`rfc3339`] for an optional timestamp (views skip it when absent).
pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_rfc3339_with_z() {
        let t = Timestamp::parse("2026-11-24T21:15:44+00:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T21:15:44Z");
        let t = Timestamp::parse("2026-11-24T23:15:44.5+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T21:15:44.500Z");
    }

    #[test]
    fn keys_sort_like_instants() {
        let times = [-5_000_000i64, -1, 0, 1, 1_700_000_000_000_000].map(Timestamp::from_micros);
        for pair in times.windows(2) {
            assert!(pair[0].to_key() < pair[1].to_key());
        }
        assert_eq!(Timestamp::from_key(&times[0].to_key()), Some(times[0]));
    }

    #[test]
    fn rejects_non_rfc3339() {
        assert!(Timestamp::parse("2026-11-24").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
