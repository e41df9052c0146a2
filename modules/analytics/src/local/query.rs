//! Dashboard reads of the local provider: a handful of key-range scans over the per-day rollups, so a
//! query costs O(days in the range), whatever the number of events behind it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use portal_core::ids::CustomerId;
use portal_core::table::{decode, key, key_from, RawTable};
use portal_core::{ReadTx, Result};
use roaring::RoaringBitmap;

use super::bitmap;
use super::rollup::DayTotals;
use crate::metrics::{top_events, Figures};
use crate::range::{DateRange, Day};
use crate::tables::{DAY_EVENTS, DAY_NEW_USERS, DAY_TOTALS, DAY_USERS};

/// Visits `(day, rest of key, value)` of `customer`'s rows of a per-day table in `range`.
fn scan_days(
    tx: &impl ReadTx,
    table: RawTable,
    c: &[u8; 16],
    range: DateRange,
    mut visit: impl FnMut(Day, &[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let lo = key(&[c, &range.start.to_key()]);
    let hi = key(&[c, &range.end.plus(1).to_key()]);
    tx.scan_raw(table, (Bound::Included(lo.as_slice()), Bound::Excluded(hi.as_slice())), false, |k, v| {
        if let Some(day) = Day::from_key(key_from(k, 16)) {
            visit(day, key_from(k, 20), v)?;
        }
        Ok(true)
    })
}

fn bitmaps(tx: &impl ReadTx, table: RawTable, c: &[u8; 16], range: DateRange) -> Result<BTreeMap<Day, RoaringBitmap>> {
    let mut out = BTreeMap::new();
    scan_days(tx, table, c, range, |day, _, v| {
        out.insert(day, bitmap::decode(v)?);
        Ok(())
    })?;
    Ok(out)
}

pub(crate) fn figures(tx: &impl ReadTx, customer: CustomerId, range: DateRange) -> Result<Figures> {
    let c = customer.to_key();
    let month = range.month_window();
    let wide = DateRange { start: range.start.min(month.start), end: range.end };
    let active = bitmaps(tx, DAY_USERS.raw(), &c, wide)?;
    let first_seen = bitmaps(tx, DAY_NEW_USERS.raw(), &c, range)?;
    let on =
        |sets: &BTreeMap<Day, RoaringBitmap>, r: DateRange| bitmap::union(sets.range(r.start..=r.end).map(|(_, s)| s));

    let mut f = Figures {
        daily_users: range.days().map(|d| active.get(&d).map_or(0, RoaringBitmap::len)).collect(),
        monthly_users: on(&active, month).len(),
        total_users: on(&active, range).len(),
        new_users: first_seen.values().map(RoaringBitmap::len).sum(),
        ..Figures::default()
    };
    if let Some((cohort_days, week)) = range.retention_weeks() {
        let cohort = on(&first_seen, cohort_days);
        f.cohort_users = cohort.len();
        f.retained_users = cohort.intersection_len(&on(&active, week));
    }

    scan_days(tx, DAY_TOTALS.raw(), &c, range, |_, _, v| {
        let t: DayTotals = decode(v)?;
        f.events += t.events;
        f.sessions += t.sessions;
        f.engaged_sessions += t.engaged_sessions;
        f.engagement_msec += t.engagement_msec;
        for (sum, add) in f.platform_events.iter_mut().zip(t.platform_events) {
            *sum += add;
        }
        Ok(())
    })?;

    let mut names: HashMap<String, u64> = HashMap::new();
    scan_days(tx, DAY_EVENTS.raw(), &c, range, |_, name, v| {
        let count = v.try_into().map(u64::from_be_bytes).unwrap_or(0);
        *names.entry(String::from_utf8_lossy(name).into_owned()).or_default() += count;
        Ok(())
    })?;
    f.top_events = top_events(names.into_iter().collect());
    Ok(f)
}
