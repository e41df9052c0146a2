//! Days and date ranges of the dashboards: a `Day` is a UTC calendar day counted from 1970-01-01, so
//! ranges are plain integer intervals and rollup keys sort by date. `start_date`/`end_date` are parsed
//! here, with the 422s that name the bad parameter.

use chrono::{Days, NaiveDate, Utc};
use portal_core::{Error, Result, Timestamp};

/// Longest range a dashboard covers, in days (a leap year).
pub const MAX_DAYS: u32 = 366;
/// The range when none is given: the 30 days ending today.
pub const DEFAULT_DAYS: u32 = 30;
/// The window of `monthly_active_users`: the 30 days ending on `end_date`.
pub const MONTH_DAYS: u32 = 30;

/// A UTC calendar day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    pub fn from_date(date: NaiveDate) -> Self {
        Self((date - NaiveDate::default()).num_days() as i32)
    }

    pub fn date(self) -> NaiveDate {
        let epoch = NaiveDate::default();
        if self.0 >= 0 {
            epoch.checked_add_days(Days::new(self.0 as u64))
        } else {
            epoch.checked_sub_days(Days::new(self.0.unsigned_abs() as u64))
        }
        .unwrap_or(epoch)
    }

    pub fn of(t: Timestamp) -> Self {
        Self(t.micros().div_euclid(86_400_000_000) as i32)
    }

    pub fn today() -> Self {
        Self::from_date(Utc::now().date_naive())
    }

    pub fn plus(self, days: i32) -> Self {
        Self(self.0.saturating_add(days))
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        self.date().format("%Y-%m-%d").to_string()
    }

    /// 4 key bytes that sort like the days (big-endian with the sign bit flipped).
    pub fn to_key(self) -> [u8; 4] {
        ((self.0 as u32) ^ (1 << 31)).to_be_bytes()
    }

    pub fn from_key(bytes: &[u8]) -> Option<Self> {
        let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        Some(Self((u32::from_be_bytes(raw) ^ (1 << 31)) as i32))
    }
}

/// Inclusive range of days, `start <= end`, at most [`MAX_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    pub start: Day,
    pub end: Day,
}

impl DateRange {
    /// Days in the range (at least 1).
    pub fn day_count(&self) -> u32 {
        (self.end.0 - self.start.0 + 1) as u32
    }

    pub fn days(&self) -> impl Iterator<Item = Day> {
        (self.start.0..=self.end.0).map(Day)
    }

    pub fn contains(&self, day: Day) -> bool {
        self.start <= day && day <= self.end
    }

    /// The 30 days ending on `end` (the window of monthly active users; it may begin before `start`).
    pub fn month_window(&self) -> DateRange {
        DateRange { start: self.end.plus(1 - MONTH_DAYS as i32), end: self.end }
    }

    /// Retention's cohort (users first seen in the range's first 7 days) and the week they must come
    /// back in (the 7 days after), when the range is long enough to hold both.
    pub fn retention_weeks(&self) -> Option<(DateRange, DateRange)> {
        (self.day_count() >= 14).then(|| {
            let cohort = DateRange { start: self.start, end: self.start.plus(6) };
            let week = DateRange { start: self.start.plus(7), end: self.start.plus(13) };
            (cohort, week)
        })
    }
}

/// Parses a strict `YYYY-MM-DD`.
fn parse_day(field: &str, value: &str) -> Result<Day> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .map(Day::from_date)
        .ok_or_else(|| Error::invalid(field, "must be a calendar date as YYYY-MM-DD"))
}

/// The dashboard range from the `start_date` and `end_date` parameters: `end_date` defaults to `today`,
/// `start_date` to 29 days before `end_date`.
pub fn parse_range(start: Option<&str>, end: Option<&str>, today: Day) -> Result<DateRange> {
    let end_day = match end.filter(|s| !s.is_empty()) {
        Some(s) => parse_day("end_date", s)?,
        None => today,
    };
    let start_day = match start.filter(|s| !s.is_empty()) {
        Some(s) => parse_day("start_date", s)?,
        None => end_day.plus(1 - DEFAULT_DAYS as i32),
    };
    if start_day > end_day {
        return Err(Error::invalid(
            "start_date",
            format!("must not be after end_date ({}, today when not given)", end_day.iso()),
        ));
    }
    let range = DateRange { start: start_day, end: end_day };
    if range.day_count() > MAX_DAYS {
        return Err(Error::invalid(
            "start_date",
            format!("the range may span at most {MAX_DAYS} days; this one spans {}", range.day_count()),
        ));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_core::ErrorCode;

    fn day(s: &str) -> Day {
        Day::from_date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    fn field_of(e: &Error) -> String {
        e.details().unwrap().keys().next().unwrap().clone()
    }

    #[test]
    fn days_round_trip_and_sort() {
        assert_eq!(day("1970-01-01"), Day(0));
        assert_eq!(day("2026-11-24").iso(), "2026-11-24");
        assert_eq!(Day(-1).iso(), "1969-12-31");
        assert!(Day(-1).to_key() < Day(0).to_key() && Day(0).to_key() < Day(20_000).to_key());
        assert_eq!(Day::from_key(&Day(-5).to_key()), Some(Day(-5)));
        let t = Timestamp::parse("2026-11-24T23:59:59.999Z").unwrap();
        assert_eq!(Day::of(t), day("2026-11-24"));
        assert_eq!(Day::of(Timestamp::from_micros(-1)), Day(-1));
    }

    #[test]
    fn defaults_to_the_30_days_ending_today() {
        let today = day("2026-11-24");
        let r = parse_range(None, None, today).unwrap();
        assert_eq!((r.start.iso(), r.end.iso(), r.day_count()), ("2026-10-26".into(), "2026-11-24".into(), 30));
        let r = parse_range(None, Some("2026-02-28"), today).unwrap();
        assert_eq!(r.start.iso(), "2026-01-30");
        assert_eq!(r.month_window().start.iso(), "2026-01-30");
    }

    #[test]
    fn refuses_bad_dates_reversed_and_long_ranges() {
        let today = day("2026-11-24");
        for bad in ["2026-13-01", "2026-02-30", "26-01-01", "2026-1-01", "yesterday", "2026-01-01T00:00:00Z"] {
            let e = parse_range(Some(bad), None, today).unwrap_err();
            assert_eq!((e.code(), field_of(&e)), (ErrorCode::ValidationFailed, "start_date".into()), "{bad}");
            let e = parse_range(None, Some(bad), today).unwrap_err();
            assert_eq!(field_of(&e), "end_date", "{bad}");
        }
        let e = parse_range(Some("2026-11-02"), Some("2026-11-01"), today).unwrap_err();
        assert_eq!(field_of(&e), "start_date");
        assert!(parse_range(Some("2025-11-24"), Some("2026-11-24"), today).is_ok()); // 366 days
        let e = parse_range(Some("2025-11-23"), Some("2026-11-24"), today).unwrap_err();
        assert_eq!(field_of(&e), "start_date");
    }

    #[test]
    fn retention_needs_two_weeks() {
        let r = DateRange { start: Day(100), end: Day(112) };
        assert!(r.retention_weeks().is_none());
        let r = DateRange { start: Day(100), end: Day(113) };
        let (cohort, week) = r.retention_weeks().unwrap();
        assert_eq!((cohort.start, cohort.end, week.start, week.end), (Day(100), Day(106), Day(107), Day(113)));
    }
}
