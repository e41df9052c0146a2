//! The GA4 reports behind one dashboard, and how their answers become `Figures`.
//!
//! Each report asks for a count that means what the portal's definition says: distinct users are
//! `totalUsers` (anyone who logged an event), the monthly figure is `totalUsers` over the 30 days ending on
//! `end_date` (not GA4's 28-day `active28DayUsers`), engagement is `userEngagementDuration` over
//! `sessions`, and retention is a weekly cohort report: users whose first session fell in the range's
//! first 7 days (`firstSessionDate`), active again in the week after (`cohortNthWeek` 1).

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::Failure;
use crate::events::Platform;
use crate::metrics::{top_events, Figures, TOP_FEATURES};
use crate::range::{DateRange, Day};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Totals,
    Daily,
    Monthly,
    Events,
    Platforms,
    Retention,
}

fn date_range(r: DateRange) -> Value {
    json!({"startDate": r.start.iso(), "endDate": r.end.iso()})
}

fn named(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|n| json!({ "name": n })).collect())
}

/// The `runReport` bodies of a dashboard, limited to the customer's app's stream when it has one.
pub(crate) fn requests(range: DateRange, stream: Option<&str>) -> Vec<(Kind, Value)> {
    let totals = ["totalUsers", "newUsers", "sessions", "engagedSessions", "eventCount", "userEngagementDuration"];
    let mut out = vec![
        (Kind::Totals, json!({"dateRanges": [date_range(range)], "metrics": named(&totals)})),
        (
            Kind::Daily,
            json!({"dateRanges": [date_range(range)], "dimensions": named(&["date"]),
                   "metrics": named(&["totalUsers"]), "limit": "1000"}),
        ),
        (Kind::Monthly, json!({"dateRanges": [date_range(range.month_window())], "metrics": named(&["totalUsers"])})),
        (
            Kind::Events,
            json!({"dateRanges": [date_range(range)], "dimensions": named(&["eventName"]),
                   "metrics": named(&["eventCount"]),
                   "orderBys": [{"metric": {"metricName": "eventCount"}, "desc": true},
                                {"dimension": {"dimensionName": "eventName"}}],
                   "limit": TOP_FEATURES.to_string()}),
        ),
        (
            Kind::Platforms,
            json!({"dateRanges": [date_range(range)], "dimensions": named(&["platform"]),
                   "metrics": named(&["eventCount"])}),
        ),
    ];
    if let Some((cohort, _)) = range.retention_weeks() {
        out.push((
            Kind::Retention,
            json!({"dimensions": named(&["cohort", "cohortNthWeek"]),
                   "metrics": named(&["cohortActiveUsers", "cohortTotalUsers"]),
                   "cohortSpec": {
                       "cohorts": [{"name": "first_week", "dimension": "firstSessionDate",
                                    "dateRange": date_range(cohort)}],
                       "cohortsRange": {"granularity": "WEEKLY", "startOffset": 0, "endOffset": 1}}}),
        ));
    }
    if let Some(stream) = stream {
        let filter =
            json!({"filter": {"fieldName": "streamId", "stringFilter": {"matchType": "EXACT", "value": stream}}});
        for (_, body) in &mut out {
            body["dimensionFilter"] = filter.clone();
        }
    }
    out
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Cell {
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    #[serde(default)]
    dimension_values: Vec<Cell>,
    #[serde(default)]
    metric_values: Vec<Cell>,
}

/// A `RunReportResponse`; `rows` is absent when there is no data.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    #[serde(default)]
    dimension_headers: Vec<Named>,
    #[serde(default)]
    metric_headers: Vec<Named>,
    #[serde(default)]
    rows: Vec<Row>,
}

fn invalid(why: impl Into<String>) -> Failure {
    Failure::new("INVALID_RESPONSE", why, false)
}

impl Report {
    fn parse(value: Value) -> Result<Self, Failure> {
        serde_json::from_value(value).map_err(|e| invalid(format!("not a RunReportResponse: {e}")))
    }

    fn dimension<'r>(&self, row: &'r Row, name: &str) -> Result<&'r str, Failure> {
        let i = self.dimension_headers.iter().position(|h| h.name == name);
        i.and_then(|i| row.dimension_values.get(i))
            .map(|c| c.value.as_str())
            .ok_or_else(|| invalid(format!("dimension {name} missing")))
    }

    fn number(&self, row: &Row, name: &str) -> Result<f64, Failure> {
        let i = self.metric_headers.iter().position(|h| h.name == name);
        let cell = i.and_then(|i| row.metric_values.get(i)).ok_or_else(|| invalid(format!("metric {name} missing")))?;
        cell.value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| invalid(format!("metric {name} is not a count: {:?}", cell.value)))
    }

    fn count(&self, row: &Row, name: &str) -> Result<u64, Failure> {
        Ok(self.number(row, name)?.round() as u64)
    }

    /// A metric of a report without dimensions (0 when Google sent no row: no data).
    fn single(&self, name: &str) -> Result<u64, Failure> {
        self.rows.first().map_or(Ok(0), |row| self.count(row, name))
    }
}

/// Builds the figures from the answers to [`requests`].
pub(crate) fn assemble(range: DateRange, answers: Vec<(Kind, Value)>) -> Result<Figures, Failure> {
    let mut f = Figures { daily_users: vec![0; range.day_count() as usize], ..Figures::default() };
    for (kind, answer) in answers {
        let report = Report::parse(answer)?;
        match kind {
            Kind::Totals => {
                f.total_users = report.single("totalUsers")?;
                f.new_users = report.single("newUsers")?;
                f.sessions = report.single("sessions")?;
                f.engaged_sessions = report.single("engagedSessions")?;
                f.events = report.single("eventCount")?;
                f.engagement_msec = match report.rows.first() {
                    Some(row) => (report.number(row, "userEngagementDuration")? * 1000.0).round() as u64,
                    None => 0,
                };
            }
            Kind::Daily => {
                for row in &report.rows {
                    let raw = report.dimension(row, "date")?;
                    let date =
                        NaiveDate::parse_from_str(raw, "%Y%m%d").map_err(|_| invalid(format!("bad date {raw:?}")))?;
                    let day = Day::from_date(date);
                    if range.contains(day) {
                        let users = report.count(row, "totalUsers")?;
                        if let Some(slot) = f.daily_users.get_mut((day.0 - range.start.0) as usize) {
                            *slot += users;
                        }
                    }
                }
            }
            Kind::Monthly => f.monthly_users = report.single("totalUsers")?,
            Kind::Events => {
                let mut counts = Vec::with_capacity(report.rows.len());
                for row in &report.rows {
                    counts.push((report.dimension(row, "eventName")?.to_string(), report.count(row, "eventCount")?));
                }
                f.top_events = top_events(counts);
            }
            Kind::Platforms => {
                for row in &report.rows {
                    let platform = Platform::from_google(report.dimension(row, "platform")?);
                    let events = report.count(row, "eventCount")?;
                    if let Some(slot) = f.platform_events.get_mut(platform.index()) {
                        *slot += events;
                    }
                }
            }
            Kind::Retention => {
                for row in &report.rows {
                    f.cohort_users = f.cohort_users.max(report.count(row, "cohortTotalUsers")?);
                    if report.dimension(row, "cohortNthWeek")?.parse::<u32>().ok() == Some(1) {
                        f.retained_users += report.count(row, "cohortActiveUsers")?;
                    }
                }
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> DateRange {
        let d = |s| Day::from_date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
        DateRange { start: d("2026-10-01"), end: d("2026-10-30") }
    }

    #[test]
    fn asks_for_the_streams_reports_and_a_weekly_cohort() {
        let reqs = requests(range(), Some("42"));
        assert_eq!(reqs.len(), 6);
        assert!(reqs.iter().all(|(_, b)| b["dimensionFilter"]["filter"]["stringFilter"]["value"] == "42"));
        let (_, cohort) = reqs.iter().find(|(k, _)| *k == Kind::Retention).unwrap();
        assert_eq!(cohort["cohortSpec"]["cohorts"][0]["dateRange"]["endDate"], "2026-10-07");
        assert!(cohort.get("dateRanges").is_none());
        let (_, monthly) = reqs.iter().find(|(k, _)| *k == Kind::Monthly).unwrap();
        assert_eq!(monthly["dateRanges"][0]["startDate"], "2026-10-01");
        let short = DateRange { start: range().start, end: range().start.plus(12) };
        assert_eq!(requests(short, None).len(), 5);
    }

    #[test]
    fn reads_documented_answers() {
        let totals = json!({"dimensionHeaders": [], "metricHeaders": [
            {"name": "totalUsers", "type": "TYPE_INTEGER"}, {"name": "newUsers", "type": "TYPE_INTEGER"},
            {"name": "sessions", "type": "TYPE_INTEGER"}, {"name": "engagedSessions", "type": "TYPE_INTEGER"},
            {"name": "eventCount", "type": "TYPE_INTEGER"}, {"name": "userEngagementDuration", "type": "TYPE_SECONDS"}],
            "rows": [{"metricValues": [{"value": "412"}, {"value": "37"}, {"value": "900"}, {"value": "450"},
                                       {"value": "5000"}, {"value": "1234.5"}]}],
            "rowCount": 1, "kind": "analyticsData#runReport"});
        let daily = json!({"dimensionHeaders": [{"name": "date"}], "metricHeaders": [{"name": "totalUsers"}],
            "rows": [{"dimensionValues": [{"value": "20261030"}], "metricValues": [{"value": "12"}]},
                     {"dimensionValues": [{"value": "20261001"}], "metricValues": [{"value": "3"}]}]});
        let platforms = json!({"dimensionHeaders": [{"name": "platform"}], "metricHeaders": [{"name": "eventCount"}],
            "rows": [{"dimensionValues": [{"value": "iOS"}], "metricValues": [{"value": "7"}]},
                     {"dimensionValues": [{"value": "Android"}], "metricValues": [{"value": "3"}]}]});
        let cohort = json!({"dimensionHeaders": [{"name": "cohort"}, {"name": "cohortNthWeek"}],
            "metricHeaders": [{"name": "cohortActiveUsers"}, {"name": "cohortTotalUsers"}],
            "rows": [{"dimensionValues": [{"value": "first_week"}, {"value": "0000"}], "metricValues": [{"value": "20"}, {"value": "20"}]},
                     {"dimensionValues": [{"value": "first_week"}, {"value": "0001"}], "metricValues": [{"value": "5"}, {"value": "20"}]}]});
        let empty = json!({"metricHeaders": [{"name": "totalUsers"}], "kind": "analyticsData#runReport"});
        let f = assemble(
            range(),
            vec![
                (Kind::Totals, totals),
                (Kind::Daily, daily),
                (Kind::Platforms, platforms),
                (Kind::Retention, cohort),
                (Kind::Monthly, empty),
            ],
        )
        .unwrap();
        assert_eq!((f.total_users, f.new_users, f.sessions, f.engaged_sessions), (412, 37, 900, 450));
        assert_eq!((f.events, f.engagement_msec, f.monthly_users), (5000, 1_234_500, 0));
        assert_eq!((f.daily_users[0], f.daily_users[29]), (3, 12));
        assert_eq!(f.platform_events, [7, 3, 0, 0]);
        assert_eq!((f.cohort_users, f.retained_users), (20, 5));
    }

    #[test]
    fn refuses_answers_that_are_not_reports() {
        let bad = json!({"metricHeaders": [{"name": "totalUsers"}], "rows": [{"metricValues": [{"value": "x"}]}]});
        assert_eq!(assemble(range(), vec![(Kind::Totals, bad)]).unwrap_err().status, "INVALID_RESPONSE");
    }
}
