//! The analytics module's tables. Only this crate opens them. Per-customer keys start with the
//! customer's 16 id bytes, per-day keys continue with the day's 4 key bytes, so a dashboard reads one
//! contiguous key range per table and removing a customer's data is one range per table.

use portal_core::table::RawTable;
use portal_core::WriteTx;
use portal_core::{Index, Result, Table};

use crate::keys::IngestKey;
use crate::local::rollup::DayTotals;

/// customer ‖ user id → the user's ordinal (u32) ‖ the day it was first seen (day key)
pub(crate) const USERS: Index = Index::new("analytics.users");
/// customer → the next user ordinal (u32)
pub(crate) const USER_COUNTERS: Index = Index::new("analytics.user_counters");
/// customer ‖ user ordinal ‖ session id → the session's day, events and engagement (see `rollup`)
pub(crate) const SESSIONS: Index = Index::new("analytics.sessions");
/// customer ‖ day → ordinals of the users active that day (a serialized roaring bitmap)
pub(crate) const DAY_USERS: Index = Index::new("analytics.day_users");
/// customer ‖ day → ordinals of the users first seen that day (a serialized roaring bitmap)
pub(crate) const DAY_NEW_USERS: Index = Index::new("analytics.day_new_users");
/// customer ‖ day → that day's events, sessions, engagement and platforms
pub(crate) const DAY_TOTALS: Table<DayTotals> = Table::new("analytics.day_totals");
/// customer ‖ day ‖ event name → events of that name that day (u64)
pub(crate) const DAY_EVENTS: Index = Index::new("analytics.day_events");
/// ingest key id → key (without the secret)
pub(crate) const INGEST_KEYS: Table<IngestKey> = Table::new("analytics.ingest_keys");
/// sha256 of the secret → ingest key id
pub(crate) const KEYS_BY_HASH: Index = Index::new("analytics.ingest_keys_by_hash");
/// customer ‖ ingest key id → sha256 of the secret
pub(crate) const KEYS_BY_CUSTOMER: Index = Index::new("analytics.ingest_keys_by_customer");

/// The tables of the local provider's rollups, all keyed by customer first.
pub(crate) fn rollup_tables() -> [RawTable; 7] {
    [
        USERS.raw(),
        USER_COUNTERS.raw(),
        SESSIONS.raw(),
        DAY_USERS.raw(),
        DAY_NEW_USERS.raw(),
        DAY_TOTALS.raw(),
        DAY_EVENTS.raw(),
    ]
}

pub(crate) fn create_all(tx: &WriteTx) -> Result<()> {
    for table in rollup_tables() {
        tx.create_table(table)?;
    }
    INGEST_KEYS.create(tx)?;
    KEYS_BY_HASH.create(tx)?;
    KEYS_BY_CUSTOMER.create(tx)?;
    Ok(())
}
