//! The one place the dashboard's definitions turn counts into figures. Both providers only count
//! (`Figures`); rounding, ratios and percentages happen here, so a customer's numbers mean the same
//! whichever provider answered.

use serde::{Deserialize, Serialize};

use crate::events::Platform;
use crate::range::DateRange;
use crate::views::{AnalyticsMetrics, DataTimeframe, DeviceBreakdown, FeatureUsage, UserGrowthPoint};

/// How many event names `most_active_features` lists.
pub const TOP_FEATURES: usize = 10;

/// Seconds of engagement that make a session engaged (or 2 events).
pub const ENGAGED_MSEC: u64 = 10_000;
pub const ENGAGED_EVENTS: u64 = 2;

/// Raw counts of a range, as a provider reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Distinct users per day of the range, `start` first (missing days count 0).
    pub daily_users: Vec<u64>,
    /// Distinct users in the 30 days ending on `end`.
    pub monthly_users: u64,
    /// Users first seen in the range.
    pub new_users: u64,
    /// Distinct users in the range.
    pub total_users: u64,
    /// Users first seen in the range's first 7 days (0 for ranges shorter than 14 days).
    pub cohort_users: u64,
    /// Of those, the users active in the 7 days after.
    pub retained_users: u64,
    /// Sessions that began in the range.
    pub sessions: u64,
    pub engaged_sessions: u64,
    /// Engagement time of the range's events.
    pub engagement_msec: u64,
    pub events: u64,
    /// Event names by count, most first, ties by name; at most [`TOP_FEATURES`].
    pub top_events: Vec<(String, u64)>,
    /// Events per platform, in [`Platform::ALL`] order.
    pub platform_events: [u64; 4],
}

/// `num / den * scale` rounded half up to 2 decimals, in integers so both providers and any client
/// computing the same definition get the same number; 0 when `den` is 0.
pub fn ratio(num: u64, den: u64, scale: u64) -> f64 {
    if den == 0 {
        return 0.0;
    }
    let hundredths = (num as u128 * scale as u128 * 200 + den as u128) / (den as u128 * 2);
    hundredths as f64 / 100.0
}

/// Percentages with 2 decimals summing to exactly 100.00: floors of 0.01 units, the leftover units to
/// the largest remainders (ties to the earlier platform). All 0 when there is nothing to share.
pub fn shares(counts: [u64; 4]) -> [f64; 4] {
    let total: u128 = counts.iter().map(|&c| c as u128).sum();
    if total == 0 {
        return [0.0; 4];
    }
    let mut units = counts.map(|c| c as u128 * 10_000 / total);
    let mut remainders: Vec<(u128, usize)> =
        counts.iter().enumerate().map(|(i, &c)| (c as u128 * 10_000 % total, i)).collect();
    let leftover = 10_000 - units.iter().sum::<u128>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(leftover as usize) {
        if let Some(unit) = units.get_mut(i) {
            *unit += 1;
        }
    }
    units.map(|u| u as f64 / 100.0)
}

/// Event names sorted the dashboard's way (count descending, then name), cut to [`TOP_FEATURES`].
pub fn top_events(mut counts: Vec<(String, u64)>) -> Vec<(String, u64)> {
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(TOP_FEATURES);
    counts
}

pub fn compute(range: DateRange, f: &Figures) -> AnalyticsMetrics {
    let device = shares(f.platform_events);
    let share = |platform: Platform| device.get(platform.index()).copied().unwrap_or_default();
    let trend = range
        .days()
        .enumerate()
        .map(|(i, day)| UserGrowthPoint { date: day.iso(), users: f.daily_users.get(i).copied().unwrap_or(0) })
        .collect();
    AnalyticsMetrics {
        daily_active_users: f.daily_users.last().copied().unwrap_or(0),
        monthly_active_users: f.monthly_users,
        new_users: f.new_users,
        total_users: f.total_users,
        retention_rate: ratio(f.retained_users, f.cohort_users, 100),
        engagement_rate: ratio(f.engaged_sessions, f.sessions, 100),
        average_session_duration: ratio(f.engagement_msec, f.sessions.saturating_mul(1000), 1),
        sessions_per_user: ratio(f.sessions, f.total_users, 1),
        events_per_user: ratio(f.events, f.total_users, 1),
        most_active_features: f
            .top_events
            .iter()
            .map(|(name, count)| FeatureUsage { feature: name.clone(), usage_count: *count })
            .collect(),
        device_breakdown: DeviceBreakdown {
            ios: share(Platform::Ios),
            android: share(Platform::Android),
            web: share(Platform::Web),
            other: share(Platform::Other),
        },
        user_growth_trend: trend,
        data_timeframe: DataTimeframe { start_date: range.start.iso(), end_date: range.end.iso() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::Day;

    #[test]
    fn ratios_round_half_up_to_cents() {
        assert_eq!(ratio(1, 3, 100), 33.33);
        assert_eq!(ratio(2, 3, 100), 66.67);
        assert_eq!(ratio(1, 8, 1), 0.13); // 0.125 rounds up
        assert_eq!(ratio(5, 0, 100), 0.0);
        assert_eq!(ratio(12_345, 2_000, 1), 6.17);
    }

    #[test]
    fn shares_sum_to_exactly_100() {
        assert_eq!(shares([1, 1, 1, 0]), [33.34, 33.33, 33.33, 0.0]);
        assert_eq!(shares([0, 0, 0, 0]), [0.0; 4]);
        assert_eq!(shares([7, 0, 0, 0]), [100.0, 0.0, 0.0, 0.0]);
        for counts in [[3, 7, 11, 13], [1, 2, 3, 994], [999_999, 1, 1, 1], [2, 2, 2, 1]] {
            let units: u64 = shares(counts).iter().map(|p| (p * 100.0).round() as u64).sum();
            assert_eq!(units, 10_000, "{counts:?}");
        }
    }

    #[test]
    fn empty_figures_give_a_zero_dashboard_with_every_day() {
        let range = DateRange { start: Day(20_000), end: Day(20_002) };
        let m = compute(range, &Figures::default());
        assert_eq!((m.daily_active_users, m.total_users, m.retention_rate), (0, 0, 0.0));
        assert_eq!(m.user_growth_trend.len(), 3);
        assert!(m.user_growth_trend.iter().all(|p| p.users == 0));
        assert!(m.most_active_features.is_empty());
        assert_eq!(m.data_timeframe.start_date, Day(20_000).iso());
    }

    #[test]
    fn top_events_sort_by_count_then_name() {
        let counts = (0..15).map(|i| (format!("e{i:02}"), (i % 4) as u64)).collect();
        let top = top_events(counts);
        assert_eq!(top.len(), 10);
        assert_eq!(top[0], ("e03".into(), 3));
        assert_eq!(top[1], ("e07".into(), 3));
    }
}
