//! App events as the local provider stores them, and the rules an event must meet, shared by the
//! ingest endpoint and the BigQuery-export import so both accept exactly the same events.

use poem_openapi::Enum;
use portal_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::range::Day;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename = "AnalyticsPlatform", rename_all = "snake_case")]
pub enum Platform {
    Ios,
    Android,
    Web,
    Other,
}

impl Platform {
    pub const ALL: [Platform; 4] = [Self::Ios, Self::Android, Self::Web, Self::Other];

    /// Position in `ALL` (and in per-platform counters).
    pub fn index(self) -> usize {
        match self {
            Self::Ios => 0,
            Self::Android => 1,
            Self::Web => 2,
            Self::Other => 3,
        }
    }

    /// GA4's `platform` dimension (`iOS`, `Android`, `web`) and the BigQuery export's `platform`
    /// (`IOS`, `ANDROID`, `WEB`); anything else is `other`.
    pub fn from_google(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "ios" => Self::Ios,
            "android" => Self::Android,
            "web" => Self::Web,
            _ => Self::Other,
        }
    }
}

/// A validated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub user_id: String,
    pub event_name: String,
    pub day: Day,
    pub platform: Platform,
    pub session_id: String,
    pub engagement_msec: u64,
}

/// An event as received, before the checks.
pub struct Candidate<'a> {
    pub user_id: &'a str,
    pub event_name: &'a str,
    /// Parsed timestamp, or why it did not parse.
    pub timestamp: Result<Timestamp, String>,
    pub platform: Platform,
    pub session_id: &'a str,
    pub engagement_time_msec: i64,
}

/// Largest engagement one event may report: a whole day.
pub const MAX_ENGAGEMENT_MSEC: i64 = 86_400_000;
const MAX_FUTURE_SECS: i64 = 86_400;
/// 2000-01-01T00:00:00Z: nothing older is app analytics.
const EARLIEST_MICROS: i64 = 946_684_800_000_000;

fn plain_text(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > max {
        return Err(format!("must be 1–{max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// GA4's rule for event names, so names mean the same for both providers.
fn event_name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if value.len() > 40 || !starts_with_letter || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("must be 1–40 letters, digits and underscores, starting with a letter".into());
    }
    Ok(())
}

/// Checks one event; on failure, every bad field with its reason.
pub fn check(c: Candidate<'_>, now: Timestamp) -> Result<Event, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if let Err(why) = plain_text(c.user_id, 256) {
        problems.push(("user_id", why));
    }
    if let Err(why) = event_name(c.event_name) {
        problems.push(("event_name", why));
    }
    if let Err(why) = plain_text(c.session_id, 100) {
        problems.push(("session_id", why));
    }
    if !(0..=MAX_ENGAGEMENT_MSEC).contains(&c.engagement_time_msec) {
        problems.push(("engagement_time_msec", format!("must be between 0 and {MAX_ENGAGEMENT_MSEC}")));
    }
    let day = match c.timestamp {
        Ok(t) if t.micros() < EARLIEST_MICROS => {
            problems.push(("timestamp", "must not be before 2000-01-01".into()));
            None
        }
        Ok(t) if t > now.plus_secs(MAX_FUTURE_SECS) => {
            problems.push(("timestamp", "must not be more than a day in the future".into()));
            None
        }
        Ok(t) => Some(Day::of(t)),
        Err(why) => {
            problems.push(("timestamp", why));
            None
        }
    };
    match day {
        Some(day) if problems.is_empty() => Ok(Event {
            user_id: c.user_id.to_string(),
            event_name: c.event_name.to_string(),
            day,
            platform: c.platform,
            session_id: c.session_id.to_string(),
            engagement_msec: c.engagement_time_msec as u64,
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate<'a>(name: &'a str, ts: &str, msec: i64) -> Candidate<'a> {
        Candidate {
            user_id: "u1",
            event_name: name,
            timestamp: Timestamp::parse(ts),
            platform: Platform::Ios,
            session_id: "s1",
            engagement_time_msec: msec,
        }
    }

    #[test]
    fn accepts_a_good_event() {
        let now = Timestamp::parse("2026-11-24T00:00:00Z").unwrap();
        let e = check(candidate("screen_view", "2026-11-23T10:00:00+02:00", 1500), now).unwrap();
        assert_eq!((e.day.iso(), e.engagement_msec), ("2026-11-23".into(), 1500));
    }

    #[test]
    fn names_every_bad_field() {
        let now = Timestamp::parse("2026-11-24T00:00:00Z").unwrap();
        let fields = |c| check(c, now).unwrap_err().into_iter().map(|(f, _)| f).collect::<Vec<_>>();
        assert_eq!(fields(candidate("1st", "2026-11-23T10:00:00Z", -1)), ["event_name", "engagement_time_msec"]);
        assert_eq!(fields(candidate("ok", "2026-11-26T00:00:00Z", 0)), ["timestamp"]);
        assert_eq!(fields(candidate("ok", "1999-12-31T23:59:59Z", 0)), ["timestamp"]);
        assert_eq!(fields(candidate("ok", "2026-11-23", 0)), ["timestamp"]);
        let long = "a".repeat(41);
        assert_eq!(fields(candidate(&long, "2026-11-23T00:00:00Z", 0)), ["event_name"]);
        let mut c = candidate("ok", "2026-11-23T00:00:00Z", 0);
        c.user_id = "";
        c.session_id = "a\nb";
        assert_eq!(fields(c), ["user_id", "session_id"]);
    }

    #[test]
    fn maps_google_platforms() {
        assert_eq!(Platform::from_google("iOS"), Platform::Ios);
        assert_eq!(Platform::from_google("ANDROID"), Platform::Android);
        assert_eq!(Platform::from_google("web"), Platform::Web);
        assert_eq!(Platform::from_google("(not set)"), Platform::Other);
    }
}
