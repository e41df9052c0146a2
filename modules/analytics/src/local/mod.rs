//! The local provider: analytics computed from the events customers send to the portal (or import from
//! a Firebase BigQuery export), kept as per-day rollups in the store.

mod bitmap;
mod query;
pub(crate) mod rollup;

use async_trait::async_trait;
use portal_core::ids::CustomerId;
use portal_core::table::prefix_range;
use portal_core::WriteTx;
use portal_core::{Result, Store};
use portal_customers::model::Customer;
use portal_customers::CustomerScope;

use crate::events::Event;
use crate::metrics::Figures;
use crate::provider::{AnalyticsProvider, Source};
use crate::range::DateRange;
use crate::tables::rollup_tables;

pub struct LocalProvider {
    store: Store,
}

impl LocalProvider {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AnalyticsProvider for LocalProvider {
    fn source(&self) -> Source {
        Source::Local
    }

    async fn figures(&self, customer: &Customer, range: DateRange) -> Result<Figures> {
        let id = customer.id;
        self.store.read(move |tx| query::figures(tx, id, range)).await
    }
}

/// Adds a batch of validated events to `customer`'s rollups (inside the caller's transaction, so the
/// batch is stored whole or not at all).
pub fn store_events(tx: &WriteTx, scope: &CustomerScope, events: &[Event]) -> Result<()> {
    rollup::apply(tx, scope.id(), events)
}

/// Removes every rollup of a customer being deleted.
pub(crate) fn remove_customer(tx: &WriteTx, customer: CustomerId) -> Result<()> {
    let (start, end) = prefix_range(&customer.to_key());
    for table in rollup_tables() {
        let range = (start.as_ref().map(Vec::as_slice), end.as_ref().map(Vec::as_slice));
        tx.remove_range_raw(table, range)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Platform;
    use crate::range::Day;

    fn event(user: &str, day: i32, session: &str, name: &str, msec: u64, platform: Platform) -> Event {
        Event {
            user_id: user.into(),
            event_name: name.into(),
            day: Day(day),
            platform,
            session_id: session.into(),
            engagement_msec: msec,
        }
    }

    fn sample() -> Vec<Event> {
        use Platform::*;
        vec![
            event("a", 100, "s1", "open", 4_000, Ios),
            event("a", 100, "s1", "tap", 1_000, Ios), // s1: 2 events → engaged
            event("b", 101, "s1", "open", 12_000, Android), // engaged by time
            event("c", 101, "s9", "open", 0, Web),    // not engaged
            event("a", 108, "s2", "tap", 0, Ios),     // a back in week 2
            event("b", 95, "s0", "open", 0, Other),   // b was first seen before the range
            event("d", 110, "s1", "open", 0, Web),
        ]
    }

    fn figures_after(batches: &[Vec<Event>], range: DateRange) -> Figures {
        let store = Store::in_memory().unwrap();
        store.write_blocking(crate::tables::create_all).unwrap();
        let customer = CustomerId::generate();
        for batch in batches {
            let batch = batch.clone();
            store.write_blocking(move |tx| rollup::apply(tx, customer, &batch)).unwrap();
        }
        store.read_blocking(|tx| query::figures(tx, customer, range)).unwrap()
    }

    #[test]
    fn rollups_answer_the_definitions() {
        let range = DateRange { start: Day(100), end: Day(113) };
        let f = figures_after(&[sample()], range);
        let mut daily = vec![0; 14];
        daily[0] = 1;
        daily[1] = 2;
        daily[8] = 1;
        daily[10] = 1;
        assert_eq!(f.daily_users, daily);
        assert_eq!((f.total_users, f.new_users, f.monthly_users), (4, 3, 4));
        assert_eq!((f.cohort_users, f.retained_users), (2, 1)); // a and c first seen in week 1; a returned
        assert_eq!((f.sessions, f.engaged_sessions, f.events, f.engagement_msec), (5, 2, 6, 17_000));
        assert_eq!(f.platform_events, [3, 1, 2, 0]);
        assert_eq!(f.top_events, vec![("open".to_string(), 4), ("tap".to_string(), 2)]);
    }

    #[test]
    fn batch_order_and_splits_do_not_change_the_answer() {
        let range = DateRange { start: Day(90), end: Day(113) };
        let whole = figures_after(&[sample()], range);
        let mut reversed = sample();
        reversed.reverse();
        let singles: Vec<Vec<Event>> = reversed.into_iter().map(|e| vec![e]).collect();
        assert_eq!(figures_after(&singles, range), whole);
        // A session split across batches becomes engaged once its second event arrives.
        let split = vec![vec![sample()[1].clone()], vec![sample()[0].clone()]];
        let f = figures_after(&split, DateRange { start: Day(100), end: Day(100) });
        assert_eq!((f.sessions, f.engaged_sessions), (1, 1));
    }

    #[test]
    fn removing_a_customer_removes_its_rollups_only() {
        let store = Store::in_memory().unwrap();
        store.write_blocking(crate::tables::create_all).unwrap();
        let (gone, kept) = (CustomerId::generate(), CustomerId::generate());
        for c in [gone, kept] {
            store.write_blocking(move |tx| rollup::apply(tx, c, &sample())).unwrap();
        }
        store.write_blocking(move |tx| remove_customer(tx, gone)).unwrap();
        let range = DateRange { start: Day(90), end: Day(113) };
        let f = store.read_blocking(|tx| query::figures(tx, gone, range)).unwrap();
        assert_eq!(f, Figures { daily_users: vec![0; 24], ..Figures::default() });
        let f = store.read_blocking(|tx| query::figures(tx, kept, range)).unwrap();
        assert_eq!(f.total_users, 4);
    }
}
