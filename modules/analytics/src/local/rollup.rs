//! Ingest-time rollups: each batch of events updates per-day aggregates in its own write transaction,
//! so a dashboard reads O(days) rows and never the events themselves (which are not kept).
//!
//! Distinct users need more than counters: each user of a customer gets a dense ordinal, and each day
//! keeps the ordinals active that day (and, separately, those first seen that day) as a roaring bitmap.
//! Unions of those bitmaps answer "distinct users over any range" exactly. A user's first-seen day and a
//! session's state (first day, events, engagement) are kept per user and per session, so events that
//! arrive late or out of order move a user's first day or a session's engagement correctly.
//!
//! The tables are opened once per batch (not per row, as `Index` helpers do) because imports write
//! millions of rows.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use portal_core::ids::CustomerId;
use portal_core::table::{decode, encode, key};
use portal_core::{Error, Record, Result};
use portal_core::{TableMut, WriteTx};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use super::bitmap;
use crate::events::Event;
use crate::metrics::{ENGAGED_EVENTS, ENGAGED_MSEC};
use crate::range::Day;
use crate::tables::{DAY_EVENTS, DAY_NEW_USERS, DAY_TOTALS, DAY_USERS, SESSIONS, USERS, USER_COUNTERS};

/// One day's counters for one customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayTotals {
    /// Events logged that day.
    pub events: u64,
    /// Sessions whose first event was that day.
    pub sessions: u64,
    /// Of those, the engaged ones.
    pub engaged_sessions: u64,
    /// Engagement time reported by that day's events.
    pub engagement_msec: u64,
    /// That day's events per platform, in `Platform::ALL` order.
    pub platform_events: [u64; 4],
}

impl Record for DayTotals {}

/// What one batch changes on one day.
#[derive(Default)]
struct DayDelta {
    active: Vec<u32>,
    first_seen_in: Vec<u32>,
    first_seen_out: Vec<u32>,
    events: u64,
    engagement_msec: u64,
    platform_events: [u64; 4],
    sessions: i64,
    engaged_sessions: i64,
}

/// A session's running state: the day of its first event, its events and engagement.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Session {
    day: Day,
    events: u64,
    engagement_msec: u64,
}

impl Session {
    fn engaged(&self) -> bool {
        self.events >= ENGAGED_EVENTS || self.engagement_msec >= ENGAGED_MSEC
    }

    /// day key ‖ events (u64) ‖ engagement msec (u64)
    fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&self.day.to_key());
        out[4..12].copy_from_slice(&self.events.to_be_bytes());
        out[12..].copy_from_slice(&self.engagement_msec.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            day: Day::from_key(bytes)?,
            events: u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?),
            engagement_msec: u64::from_be_bytes(bytes.get(12..20)?.try_into().ok()?),
        })
    }
}

/// A batch's view of one user.
struct UserSlot {
    ordinal: u32,
    stored_first: Option<Day>,
    first: Day,
}

/// ordinal (u32) ‖ first-seen day key
fn encode_user(ordinal: u32, first: Day) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&ordinal.to_be_bytes());
    out[4..].copy_from_slice(&first.to_key());
    out
}

fn decode_user(bytes: &[u8]) -> Option<(u32, Day)> {
    Some((u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?), Day::from_key(bytes.get(4..)?)?))
}

fn read_u64(table: &TableMut<'_>, k: &[u8]) -> Result<u64> {
    Ok(table.get(k)?.and_then(|g| g.as_slice().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0))
}

/// Adds `events` (already validated) to `customer`'s rollups.
pub(crate) fn apply(tx: &WriteTx, customer: CustomerId, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let c = customer.to_key();
    let mut days: BTreeMap<Day, DayDelta> = BTreeMap::new();
    let ordinals = resolve_users(tx, &c, events, &mut days)?;
    tally_sessions(tx, &c, events, &ordinals, &mut days)?;
    let mut names: BTreeMap<(Day, &str), u64> = BTreeMap::new();
    for (e, &ordinal) in events.iter().zip(&ordinals) {
        let d = days.entry(e.day).or_default();
        d.active.push(ordinal);
        d.events += 1;
        d.engagement_msec += e.engagement_msec;
        if let Some(slot) = d.platform_events.get_mut(e.platform.index()) {
            *slot += 1;
        }
        *names.entry((e.day, e.event_name.as_str())).or_default() += 1;
    }
    write_days(tx, &c, &days)?;
    let mut table = tx.table(DAY_EVENTS.raw())?;
    for ((day, name), count) in names {
        let k = key(&[&c, &day.to_key(), name.as_bytes()]);
        let total = read_u64(&table, &k)? + count;
        table.insert(k.as_slice(), total.to_be_bytes().as_slice())?;
    }
    Ok(())
}

/// Gives every user of the batch its ordinal (new users get the next ones) and moves first-seen days
/// that the batch makes earlier. Returns each event's user ordinal.
fn resolve_users(tx: &WriteTx, c: &[u8; 16], events: &[Event], days: &mut BTreeMap<Day, DayDelta>) -> Result<Vec<u32>> {
    let mut users = tx.table(USERS.raw())?;
    let mut counters = tx.table(USER_COUNTERS.raw())?;
    let stored_next =
        counters.get(c.as_slice())?.and_then(|g| g.as_slice().try_into().ok().map(u32::from_be_bytes)).unwrap_or(0);
    let mut next = stored_next;
    let mut slots: HashMap<&str, UserSlot> = HashMap::new();
    let mut ordinals = Vec::with_capacity(events.len());
    for e in events {
        let slot = match slots.entry(e.user_id.as_str()) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let k = key(&[c, e.user_id.as_bytes()]);
                let stored = users.get(k.as_slice())?.and_then(|g| decode_user(&g));
                let slot = match stored {
                    Some((ordinal, first)) => UserSlot { ordinal, stored_first: Some(first), first },
                    None => {
                        let ordinal = next;
                        next = next.checked_add(1).ok_or_else(|| Error::internal("user ordinals exhausted"))?;
                        UserSlot { ordinal, stored_first: None, first: e.day }
                    }
                };
                v.insert(slot)
            }
        };
        slot.first = slot.first.min(e.day);
        ordinals.push(slot.ordinal);
    }
    for (user_id, slot) in &slots {
        if slot.stored_first.is_some_and(|old| old <= slot.first) {
            continue;
        }
        if let Some(old) = slot.stored_first {
            days.entry(old).or_default().first_seen_out.push(slot.ordinal);
        }
        days.entry(slot.first).or_default().first_seen_in.push(slot.ordinal);
        let k = key(&[c, user_id.as_bytes()]);
        users.insert(k.as_slice(), encode_user(slot.ordinal, slot.first).as_slice())?;
    }
    if next != stored_next {
        counters.insert(c.as_slice(), next.to_be_bytes().as_slice())?;
    }
    Ok(ordinals)
}

/// Merges the batch into each session's state and moves the session and engaged-session counts to the
/// session's (possibly earlier) first day and (possibly new) engagement.
fn tally_sessions(
    tx: &WriteTx,
    c: &[u8; 16],
    events: &[Event],
    ordinals: &[u32],
    days: &mut BTreeMap<Day, DayDelta>,
) -> Result<()> {
    let mut batch: HashMap<(u32, &str), Session> = HashMap::new();
    for (e, &ordinal) in events.iter().zip(ordinals) {
        let s = batch.entry((ordinal, e.session_id.as_str())).or_insert(Session {
            day: e.day,
            events: 0,
            engagement_msec: 0,
        });
        s.day = s.day.min(e.day);
        s.events += 1;
        s.engagement_msec += e.engagement_msec;
    }
    let mut table = tx.table(SESSIONS.raw())?;
    for ((ordinal, session_id), mut session) in batch {
        let k = key(&[c, &ordinal.to_be_bytes(), session_id.as_bytes()]);
        let old = table.get(k.as_slice())?.and_then(|g| Session::decode(&g));
        if let Some(old) = old {
            let d = days.entry(old.day).or_default();
            d.sessions -= 1;
            d.engaged_sessions -= i64::from(old.engaged());
            session.day = session.day.min(old.day);
            session.events += old.events;
            session.engagement_msec += old.engagement_msec;
        }
        let d = days.entry(session.day).or_default();
        d.sessions += 1;
        d.engaged_sessions += i64::from(session.engaged());
        table.insert(k.as_slice(), session.encode().as_slice())?;
    }
    Ok(())
}

fn add_signed(value: u64, delta: i64) -> u64 {
    value.saturating_add_signed(delta)
}

fn update_bitmap(table: &mut TableMut<'_>, k: &[u8], change: impl FnOnce(&mut RoaringBitmap)) -> Result<()> {
    let mut set = match table.get(k)? {
        Some(g) => bitmap::decode(&g)?,
        None => RoaringBitmap::new(),
    };
    change(&mut set);
    if set.is_empty() {
        table.remove(k)?;
    } else {
        table.insert(k, bitmap::encode(&set)?.as_slice())?;
    }
    Ok(())
}

fn write_days(tx: &WriteTx, c: &[u8; 16], days: &BTreeMap<Day, DayDelta>) -> Result<()> {
    let mut active = tx.table(DAY_USERS.raw())?;
    let mut first_seen = tx.table(DAY_NEW_USERS.raw())?;
    let mut totals = tx.table(DAY_TOTALS.raw())?;
    for (day, d) in days {
        let k = key(&[c, &day.to_key()]);
        if !d.active.is_empty() {
            update_bitmap(&mut active, &k, |set| set.extend(d.active.iter().copied()))?;
        }
        if !d.first_seen_in.is_empty() || !d.first_seen_out.is_empty() {
            update_bitmap(&mut first_seen, &k, |set| {
                for &o in &d.first_seen_out {
                    set.remove(o);
                }
                set.extend(d.first_seen_in.iter().copied());
            })?;
        }
        let mut t: DayTotals = match totals.get(k.as_slice())? {
            Some(g) => decode(&g)?,
            None => DayTotals::default(),
        };
        t.events += d.events;
        t.engagement_msec += d.engagement_msec;
        for (sum, add) in t.platform_events.iter_mut().zip(d.platform_events) {
            *sum += add;
        }
        t.sessions = add_signed(t.sessions, d.sessions);
        t.engaged_sessions = add_signed(t.engaged_sessions, d.engaged_sessions);
        totals.insert(k.as_slice(), encode(&t)?.as_slice())?;
    }
    Ok(())
}
