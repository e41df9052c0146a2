//! `portal analytics import`: loads a Firebase BigQuery export (newline-delimited JSON, one event per
//! line) into a customer's local rollups, so a customer without live Google access still gets its
//! history. Lines pass the same checks as the ingest endpoint; a bad line is skipped and reported, the
//! rest is stored in batches of [`BATCH`] events per transaction.
//!
//! Mapping: the user is `user_id` when set, else `user_pseudo_id` (GA4's blended identity); the time is
//! `event_timestamp` (microseconds, UTC); the session is the `ga_session_id` event parameter; engagement
//! is the `engagement_time_msec` parameter (0 when absent); `platform` `IOS`/`ANDROID`/`WEB`, else other.
//! BigQuery writes INT64 values as JSON strings; numbers are accepted too.

use std::io::BufRead;

use portal_core::ids::CustomerId;
use portal_core::{Result, Store, Timestamp};
use portal_customers::system_scope;
use serde::Deserialize;

use crate::events::{self, Candidate, Event, Platform};

/// Events stored per write transaction.
pub const BATCH: usize = 10_000;
/// Skipped lines whose reason is reported.
const REPORTED_PROBLEMS: usize = 10;

/// An INT64 as BigQuery exports it (a string) or as other tools write it (a number).
#[derive(Deserialize)]
#[serde(untagged)]
enum Int {
    Number(i64),
    Text(String),
}

impl Int {
    fn value(&self) -> Option<i64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize, Default)]
struct ParamValue {
    string_value: Option<String>,
    int_value: Option<Int>,
    double_value: Option<f64>,
    float_value: Option<f64>,
}

impl ParamValue {
    fn as_i64(&self) -> Option<i64> {
        self.int_value
            .as_ref()
            .and_then(Int::value)
            .or_else(|| self.double_value.or(self.float_value).map(|v| v.round() as i64))
            .or_else(|| self.string_value.as_deref().and_then(|s| s.trim().parse().ok()))
    }
}

#[derive(Deserialize)]
struct Param {
    key: String,
    #[serde(default)]
    value: ParamValue,
}

#[derive(Deserialize)]
struct ExportRow {
    event_timestamp: Option<Int>,
    event_name: Option<String>,
    user_pseudo_id: Option<String>,
    user_id: Option<String>,
    platform: Option<String>,
    #[serde(default)]
    event_params: Option<Vec<Param>>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub imported: u64,
    pub skipped: u64,
    /// Why the first skipped lines were skipped (`line N: …`).
    pub problems: Vec<String>,
}

fn param<'a>(params: &'a [Param], key: &str) -> Option<&'a ParamValue> {
    params.iter().find(|p| p.key == key).map(|p| &p.value)
}

/// One export line as an event, or why it cannot be one.
fn parse_line(line: &str, now: Timestamp) -> Result<Event, String> {
    let row: ExportRow = serde_json::from_str(line).map_err(|e| format!("not an export row ({e})"))?;
    let params = row.event_params.as_deref().unwrap_or_default();
    let user = row
        .user_id
        .as_deref()
        .filter(|u| !u.is_empty())
        .or(row.user_pseudo_id.as_deref())
        .ok_or("no user_id or user_pseudo_id")?;
    let micros = row.event_timestamp.as_ref().and_then(Int::value).ok_or("no event_timestamp")?;
    let session = param(params, "ga_session_id").and_then(ParamValue::as_i64).ok_or("no ga_session_id")?;
    let session = session.to_string();
    let candidate = Candidate {
        user_id: user,
        event_name: row.event_name.as_deref().unwrap_or_default(),
        timestamp: Ok(Timestamp::from_micros(micros)),
        platform: Platform::from_google(row.platform.as_deref().unwrap_or_default()),
        session_id: &session,
        engagement_time_msec: param(params, "engagement_time_msec").and_then(ParamValue::as_i64).unwrap_or(0),
    };
    events::check(candidate, now)
        .map_err(|problems| problems.iter().map(|(field, why)| format!("{field} {why}")).collect::<Vec<_>>().join("; "))
}

fn flush(store: &Store, customer: CustomerId, batch: &mut Vec<Event>) -> Result<u64> {
    let events = std::mem::take(batch);
    let n = events.len() as u64;
    store.write_blocking(move |tx| crate::local::store_events(tx, &system_scope(tx, customer)?, &events))?;
    Ok(n)
}

/// Imports `input` into `customer`'s rollups, calling `progress` after each stored batch.
pub fn import(
    store: &Store,
    customer: CustomerId,
    input: impl BufRead,
    mut progress: impl FnMut(&ImportReport),
) -> Result<ImportReport> {
    store.read_blocking(|tx| system_scope(tx, customer).map(drop))?;
    let now = Timestamp::now();
    let mut report = ImportReport::default();
    let mut batch = Vec::with_capacity(BATCH);
    for line in input.lines() {
        let line = line?;
        report.lines += 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, now) {
            Ok(event) => batch.push(event),
            Err(why) => {
                report.skipped += 1;
                if report.problems.len() < REPORTED_PROBLEMS {
                    report.problems.push(format!("line {}: {why}", report.lines));
                }
            }
        }
        if batch.len() >= BATCH {
            report.imported += flush(store, customer, &mut batch)?;
            progress(&report);
        }
    }
    if !batch.is_empty() {
        report.imported += flush(store, customer, &mut batch)?;
    }
    progress(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"event_date":"20261101","event_timestamp":"1793534400000000","event_name":"screen_view",
        "user_pseudo_id":"abc","user_id":null,"platform":"ANDROID","user_first_touch_timestamp":"1793534000000000",
        "event_params":[{"key":"ga_session_id","value":{"int_value":"1793534400"}},
                        {"key":"engagement_time_msec","value":{"int_value":1500}},
                        {"key":"firebase_screen","value":{"string_value":"Home"}}],
        "device":{"category":"mobile"},"geo":{"country":"Germany"},"app_info":{"id":"com.acme"}}"#;

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-24T00:00:00Z").unwrap()
    }

    #[test]
    fn reads_a_bigquery_export_row() {
        let e = parse_line(&ROW.replace('\n', " "), now()).unwrap();
        assert_eq!(e.user_id, "abc");
        assert_eq!(e.event_name, "screen_view");
        assert_eq!(e.day.iso(), "2026-11-01");
        assert_eq!(e.platform, Platform::Android);
        assert_eq!((e.session_id.as_str(), e.engagement_msec), ("1793534400", 1500));
        let with_user = ROW.replace('\n', " ").replace(r#""user_id":null"#, r#""user_id":"u-7""#);
        assert_eq!(parse_line(&with_user, now()).unwrap().user_id, "u-7");
    }

    #[test]
    fn explains_skipped_lines() {
        assert!(parse_line("not json", now()).unwrap_err().starts_with("not an export row"));
        let no_session =
            r#"{"event_timestamp":1793534400000000,"event_name":"x","user_pseudo_id":"a","event_params":[]}"#;
        assert_eq!(parse_line(no_session, now()).unwrap_err(), "no ga_session_id");
        let bad_name = ROW.replace('\n', " ").replace("screen_view", "screen view");
        assert!(parse_line(&bad_name, now()).unwrap_err().starts_with("event_name"));
    }
}
