//! The JSON shapes of the analytics endpoints: `AnalyticsMetrics` exactly as the specification draws it,
//! the event batch the portal ingests, and ingest keys.

use poem_openapi::Object;
use portal_core::ids::CustomerId;
use portal_core::Timestamp;

use crate::events::Platform;
use crate::keys::IngestKeyId;

/// An event name and how often it was logged in the range.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct FeatureUsage {
    pub feature: String,
    pub usage_count: u64,
}

/// Share of the range's events per platform, in percent with 2 decimals; the four sum to 100 (all 0
/// when there are no events).
#[derive(Debug, Clone, PartialEq, Object)]
pub struct DeviceBreakdown {
    pub ios: f64,
    pub android: f64,
    pub web: f64,
    pub other: f64,
}

/// Distinct users active on one day.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct UserGrowthPoint {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub users: u64,
}

/// The days the figures cover, both included.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct DataTimeframe {
    /// `YYYY-MM-DD`.
    pub start_date: String,
    /// `YYYY-MM-DD`.
    pub end_date: String,
}

/// App usage of one customer over a range of days. Definitions: see the README's Analytics section.
#[derive(Debug, Clone, PartialEq, Object)]
pub struct AnalyticsMetrics {
    /// Distinct users active on `end_date`.
    pub daily_active_users: u64,
    /// Distinct users active in the 30 days ending on `end_date`.
    pub monthly_active_users: u64,
    /// Users first seen in the range.
    pub new_users: u64,
    /// Distinct users active in the range.
    pub total_users: u64,
    /// Percent (2 decimals) of the users first seen in the range's first 7 days who were active in the 7
    /// days after; 0 for ranges shorter than 14 days.
    pub retention_rate: f64,
    /// Percent (2 decimals) of sessions that were engaged (at least 10 s of engagement or 2 events).
    pub engagement_rate: f64,
    /// Engagement seconds per session (2 decimals).
    pub average_session_duration: f64,
    /// Sessions per user of the range (2 decimals).
    pub sessions_per_user: f64,
    /// Events per user of the range (2 decimals).
    pub events_per_user: f64,
    /// The 10 most logged event names, most logged first (ties by name).
    pub most_active_features: Vec<FeatureUsage>,
    pub device_breakdown: DeviceBreakdown,
    /// Distinct users per day, every day of the range in order.
    pub user_growth_trend: Vec<UserGrowthPoint>,
    pub data_timeframe: DataTimeframe,
}

/// One app event.
#[derive(Debug, Clone, Object)]
#[oai(rename = "AnalyticsEvent", deny_unknown_fields)]
pub struct EventInput {
    /// The app's id for the user (or device); 1–256 characters.
    pub user_id: String,
    /// What happened, e.g. `screen_view`; 1–40 letters, digits and underscores, starting with a letter.
    pub event_name: String,
    /// When, RFC 3339; not before 2000 and at most a day ahead of the portal's clock.
    pub timestamp: String,
    pub platform: Platform,
    /// The app's session id (unique per user); 1–100 characters.
    pub session_id: String,
    /// Foreground time this event reports, in milliseconds (0–86,400,000).
    pub engagement_time_msec: i64,
}

/// A batch of app events, stored all or nothing.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct EventBatch {
    /// 1–1000 events.
    pub events: Vec<EventInput>,
}

/// What a batch left behind.
#[derive(Debug, Clone, Object)]
pub struct EventsStored {
    /// Events stored (the whole batch).
    pub stored: u64,
}

/// A new ingest key; the key itself is shown only here.
#[derive(Debug, Clone, Object)]
pub struct IngestKeyCreated {
    pub id: IngestKeyId,
    pub customer_id: CustomerId,
    /// Send it as `X-Ingest-Key` to `POST /analytics-dashboard/customer/{customer_id}/events`. Only its
    /// hash is kept: store it now.
    pub key: String,
    pub created_at: Timestamp,
}
