//! A generated app-usage dataset and the dashboard it must produce, computed here from the raw events
//! with plain sets and loops (no rollups, no shared code with the portal), following the README's
//! definitions.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};

/// One raw event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub user: String,
    pub name: String,
    /// Microseconds since the epoch.
    pub micros: i64,
    /// `ios`, `android`, `web` or `other`.
    pub platform: &'static str,
    pub session: String,
    pub msec: u64,
}

impl Ev {
    pub fn day(&self) -> NaiveDate {
        Utc.timestamp_micros(self.micros).unwrap().date_naive()
    }

    pub fn rfc3339(&self) -> String {
        Utc.timestamp_micros(self.micros).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    pub fn to_json(&self) -> Value {
        json!({"user_id": self.user, "event_name": self.name, "timestamp": self.rfc3339(),
               "platform": self.platform, "session_id": self.session, "engagement_time_msec": self.msec})
    }
}

/// splitmix64: a small deterministic generator, so the dataset is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const NAMES: [&str; 14] = [
    "screen_view",
    "tap_buy",
    "search",
    "add_to_cart",
    "share",
    "login",
    "logout",
    "open_settings",
    "play_video",
    "like",
    "comment",
    "scroll",
    "notification_open",
    "purchase",
];
const PLATFORMS: [&str; 4] = ["ios", "android", "web", "other"];

/// `users` users (ids prefixed `prefix`) active between `from` and `to`: each has a first day, comes back
/// on some later days, runs 1–2 sessions a day of 1–4 events; some sessions cross midnight.
pub fn generate(seed: u64, prefix: &str, users: u32, from: NaiveDate, to: NaiveDate) -> Vec<Ev> {
    let mut rng = Rng::new(seed);
    let span = (to - from).num_days() as u64 + 1;
    let mut out = Vec::new();
    for u in 0..users {
        let user = format!("{prefix}{u:04}");
        let first = from + chrono::Days::new(rng.below(span));
        let main_platform = match rng.below(10) {
            0..=3 => "ios",
            4..=6 => "android",
            7..=8 => "web",
            _ => "other",
        };
        let loyalty = rng.below(100);
        let mut day = first;
        let mut session_no = 0;
        while day <= to {
            for _ in 0..1 + rng.below(2) {
                session_no += 1;
                let session = format!("{}", 1_000_000 + session_no * 7 + rng.below(5));
                let platform = if rng.below(10) == 0 { PLATFORMS[rng.below(4) as usize] } else { main_platform };
                let late = rng.below(12) == 0;
                let start_secs = if late { 86_400 - 5 - rng.below(20) as i64 } else { rng.below(80_000) as i64 };
                let mut t = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap()).timestamp_micros()
                    + start_secs * 1_000_000;
                for _ in 0..1 + rng.below(4) {
                    let name = NAMES[(rng.below(NAMES.len() as u64) * rng.below(NAMES.len() as u64) / 13) as usize];
                    let msec = [0, 800, 2_500, 4_000, 9_999, 10_000, 15_000][rng.below(7) as usize];
                    out.push(Ev {
                        user: user.clone(),
                        name: name.into(),
                        micros: t,
                        platform,
                        session: session.clone(),
                        msec,
                    });
                    t += (1 + rng.below(30) as i64) * 1_000_000;
                }
            }
            let gap = if loyalty < 30 {
                1 + rng.below(3)
            } else if loyalty < 70 {
                2 + rng.below(9)
            } else {
                30
            };
            day = day + chrono::Days::new(gap);
        }
    }
    out
}

/// `num / den * scale` in hundredths, rounded half up (the README's rounding rule).
fn hundredths(num: u64, den: u64, scale: u64) -> f64 {
    if den == 0 {
        return 0.0;
    }
    let h = (num as u128 * scale as u128 * 200 + den as u128) / (2 * den as u128);
    h as f64 / 100.0
}

/// Largest-remainder percentages in hundredths (ties to the earlier platform).
fn percentages(counts: [u64; 4]) -> [f64; 4] {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return [0.0; 4];
    }
    let mut floors: Vec<(u64, u64, usize)> =
        counts.iter().enumerate().map(|(i, &c)| (c * 10_000 / total, c * 10_000 % total, i)).collect();
    let mut left = 10_000 - floors.iter().map(|f| f.0).sum::<u64>();
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&a, &b| floors[b].1.cmp(&floors[a].1).then(a.cmp(&b)));
    for i in order {
        if left == 0 {
            break;
        }
        floors[i].0 += 1;
        left -= 1;
    }
    [0, 1, 2, 3].map(|i| floors[i].0 as f64 / 100.0)
}

/// The dashboard JSON for `start..=end`, straight from the raw events.
pub fn expected(events: &[Ev], start: NaiveDate, end: NaiveDate) -> Value {
    let in_range = |d: NaiveDate| start <= d && d <= end;
    let mut active: BTreeMap<NaiveDate, HashSet<&str>> = BTreeMap::new();
    let mut first_seen: HashMap<&str, NaiveDate> = HashMap::new();
    for e in events {
        active.entry(e.day()).or_default().insert(&e.user);
        let f = first_seen.entry(&e.user).or_insert(e.day());
        *f = (*f).min(e.day());
    }
    let users_between = |a: NaiveDate, b: NaiveDate| -> HashSet<&str> {
        active.range(a..=b).flat_map(|(_, users)| users.iter().copied()).collect()
    };
    let total = users_between(start, end).len() as u64;
    let monthly = users_between(end - chrono::Days::new(29), end).len() as u64;
    let new_users = first_seen.values().filter(|d| in_range(**d)).count() as u64;
    let days = (end - start).num_days() + 1;
    let (cohort, retained) = if days >= 14 {
        let cohort: HashSet<&str> = first_seen
            .iter()
            .filter(|(_, d)| start <= **d && **d <= start + chrono::Days::new(6))
            .map(|(u, _)| *u)
            .collect();
        let back = users_between(start + chrono::Days::new(7), start + chrono::Days::new(13));
        (cohort.len() as u64, cohort.intersection(&back).count() as u64)
    } else {
        (0, 0)
    };

    // Sessions belong to the day of their first event; engaged over all their events.
    let mut sessions: HashMap<(&str, &str), (i64, u64, u64)> = HashMap::new();
    for e in events {
        let s = sessions.entry((&e.user, &e.session)).or_insert((e.micros, 0, 0));
        s.0 = s.0.min(e.micros);
        s.1 += 1;
        s.2 += e.msec;
    }
    let mut session_count = 0;
    let mut engaged = 0;
    for (first, n, msec) in sessions.values() {
        if in_range(Utc.timestamp_micros(*first).unwrap().date_naive()) {
            session_count += 1;
            engaged += u64::from(*n >= 2 || *msec >= 10_000);
        }
    }
    let ranged: Vec<&Ev> = events.iter().filter(|e| in_range(e.day())).collect();
    let event_count = ranged.len() as u64;
    let msec: u64 = ranged.iter().map(|e| e.msec).sum();
    let mut names: HashMap<&str, u64> = HashMap::new();
    let mut platforms = [0u64; 4];
    for e in &ranged {
        *names.entry(&e.name).or_default() += 1;
        platforms[PLATFORMS.iter().position(|p| *p == e.platform).unwrap()] += 1;
    }
    let mut names: Vec<(&str, u64)> = names.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    names.truncate(10);
    let device = percentages(platforms);
    let trend: Vec<Value> = (0..days)
        .map(|i| {
            let d = start + chrono::Days::new(i as u64);
            json!({"date": d.format("%Y-%m-%d").to_string(), "users": active.get(&d).map_or(0, |u| u.len())})
        })
        .collect();
    json!({
        "daily_active_users": active.get(&end).map_or(0, |u| u.len()),
        "monthly_active_users": monthly,
        "new_users": new_users,
        "total_users": total,
        "retention_rate": hundredths(retained, cohort, 100),
        "engagement_rate": hundredths(engaged, session_count, 100),
        "average_session_duration": hundredths(msec, session_count * 1000, 1),
        "sessions_per_user": hundredths(session_count, total, 1),
        "events_per_user": hundredths(event_count, total, 1),
        "most_active_features": names.iter().map(|(n, c)| json!({"feature": n, "usage_count": c})).collect::<Vec<_>>(),
        "device_breakdown": {"ios": device[0], "android": device[1], "web": device[2], "other": device[3]},
        "user_growth_trend": trend,
        "data_timeframe": {"start_date": start.format("%Y-%m-%d").to_string(), "end_date": end.format("%Y-%m-%d").to_string()},
    })
}
