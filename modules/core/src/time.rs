//! `Timestamp`: a UTC instant stored as microseconds since the Unix epoch and printed at the JSON edge as
//! RFC 3339 with a `Z` suffix (`2026-11-24T21:15:44Z`), as the contract shows.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The system clock's instant (read directly: chrono's `Utc::now` also works out the calendar date, and
    /// every request reads the clock for its credential check).
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => Self(i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |micros| -micros)),
        }
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

    /// RFC 3339, UTC, `Z` suffix; fractional seconds only when present (milliseconds when they say it all).
    pub fn to_rfc3339(self) -> String {
        self.rfc3339().as_str().to_owned()
    }

    /// [`Timestamp::to_rfc3339`] without allocating: every timestamp of every view is printed this way.
    pub fn rfc3339(self) -> Rfc3339 {
        let (secs, micros) = (self.0.div_euclid(1_000_000), self.0.rem_euclid(1_000_000));
        let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let Some(date) = iso_date(year, month as u32, day as u32) else {
            // Beyond four-digit years RFC 3339 has no form; print what chrono prints.
            let text = self.datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true);
            return Rfc3339::from_text(&text);
        };
        // Two digits at a time from a table: a timestamp is printed four times in an invoice's view.
        let day_secs = day_secs as u32;
        let ([h0, h1], [mi0, mi1], [s0, s1]) =
            (two_digits(day_secs / 3600), two_digits(day_secs / 60 % 60), two_digits(day_secs % 60));
        let mut out = Rfc3339 { bytes: [0; RFC3339_MAX], len: 0 };
        out.extend(&date);
        out.extend(&[b'T', h0, h1, b':', mi0, mi1, b':', s0, s1]);
        let micros = micros as u32;
        if micros.is_multiple_of(1000) && micros != 0 {
            let millis = micros / 1000;
            let [m1, m2] = two_digits(millis);
            out.extend(&[b'.', b'0' + (millis / 100) as u8, m1, m2]);
        } else if micros != 0 {
            let ([u0, u1], [u2, u3], [u4, u5]) =
                (two_digits(micros / 10_000), two_digits(micros / 100), two_digits(micros));
            out.extend(&[b'.', u0, u1, u2, u3, u4, u5]);
        }
        out.extend(b"Z");
        out
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|dt| Self::from_datetime(dt.with_timezone(&Utc)))
            .map_err(|_| "must be an RFC 3339 date-time, e.g. 2026-11-24T21:15:44Z".to_string())
    }
}

/// The longest text [`Timestamp::rfc3339`] prints (chrono's, for years past 9999, included).
const RFC3339_MAX: usize = 40;

/// A timestamp's RFC 3339 text, on the stack.
pub struct Rfc3339 {
    bytes: [u8; RFC3339_MAX],
    len: usize,
}

impl Rfc3339 {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }

    fn from_text(text: &str) -> Self {
        let mut out = Self { bytes: [0; RFC3339_MAX], len: 0 };
        out.extend(text.as_bytes());
        out
    }

    fn extend(&mut self, bytes: &[u8]) {
        if let Some(slots) = self.bytes.get_mut(self.len..self.len + bytes.len()) {
            slots.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// A day as `YYYY-MM-DD`, for years 0–9999 (outside them there is no four-digit form: `None`).
pub fn iso_date(year: i64, month: u32, day: u32) -> Option<[u8; 10]> {
    let year = u32::try_from(year).ok().filter(|year| *year <= 9999)?;
    let ([y0, y1], [y2, y3]) = (two_digits(year / 100), two_digits(year));
    let ([m0, m1], [d0, d1]) = (two_digits(month), two_digits(day));
    Some([y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1])
}

/// The last two decimal digits of `value`.
fn two_digits(value: u32) -> [u8; 2] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819202122232425262728293031323334353637383940414243444546474849\
                                5051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let at = (value % 100) as usize * 2;
    match PAIRS.get(at..at + 2) {
        Some(&[tens, ones]) => [tens, ones],
        _ => [b'0'; 2],
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
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
    s.serialize_str(t.rfc3339().as_str())
}

/// [`rfc3339`] for an optional timestamp (views skip it when absent).
pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// `#[serde(deserialize_with = "portal_core::time::date::deserialize")]`: a date as chrono writes it
/// (`2026-11-01`), read back by hand when it has that form (chrono's general parser is most of a stored
/// invoice's decoding time).
pub mod date {
    use chrono::NaiveDate;
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NaiveDate, D::Error> {
        struct Date;
        impl serde::de::Visitor<'_> for Date {
            type Value = NaiveDate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a date, YYYY-MM-DD")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<NaiveDate, E> {
                match plain(text) {
                    Some(date) => Ok(date),
                    None => text.parse().map_err(E::custom),
                }
            }
        }
        deserializer.deserialize_str(Date)
    }

    /// `YYYY-MM-DD` with four-digit year; `None` for anything else (chrono reads that).
    fn plain(text: &str) -> Option<NaiveDate> {
        let b = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            b.get(range)?.iter().try_fold(0, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
        };
        if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        NaiveDate::from_ymd_opt(i32::try_from(number(0..4)?).ok()?, number(5..7)?, number(8..10)?)
    }

    #[cfg(test)]
    mod tests {
        use chrono::Datelike;

        use super::*;

        #[test]
        fn reads_back_what_chrono_writes_and_anything_else_as_chrono_does() {
            let decode = |text: &str| -> Result<NaiveDate, serde_json::Error> {
                deserialize(&mut serde_json::Deserializer::from_str(&format!("\"{text}\"")))
            };
            let mut day = NaiveDate::from_ymd_opt(1899, 12, 25).unwrap();
            while day.year() < 2101 {
                let text = serde_json::to_string(&day).unwrap();
                assert_eq!(decode(text.trim_matches('"')).unwrap(), day);
                day = day.succ_opt().unwrap();
            }
            let odd = [
                "2026-02-29",
                "2026-13-01",
                "2026-1-01",
                "2026/01/01",
                "2026-01-01x",
                "２０２６-01-01",
                "+12026-01-01",
            ];
            for text in odd {
                assert_eq!(decode(text).ok(), text.parse::<NaiveDate>().ok(), "{text}");
            }
            assert!(decode("2026-02-29").is_err());
        }
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
    fn prints_what_chrono_prints_for_every_kind_of_instant() {
        let chrono = |t: Timestamp| t.datetime().to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let mut micros = vec![0, 1, -1, 999_999, 1_000, -1_000, 86_399_999_999, 951_782_400_000_000];
        // Every day from 1900 to 2200 at a spread of times of day and fractions, and the far ends.
        micros.extend((-25_567..84_000_i64).map(|day| day * 86_400_000_000 + (day * 7_919_000_013) % 86_400_000_000));
        micros.extend([-62_167_219_200_000_000, 253_402_300_799_999_999, 253_402_300_800_000_000, i64::MIN / 2]);
        for t in micros.into_iter().map(Timestamp::from_micros) {
            assert_eq!(t.to_rfc3339(), chrono(t), "{}", t.micros());
        }
    }

    #[test]
    fn now_is_the_system_clock_in_microseconds() {
        let before = Utc::now().timestamp_micros();
        let now = Timestamp::now().micros();
        let after = Utc::now().timestamp_micros();
        assert!(before <= now && now <= after, "{before} {now} {after}");
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
