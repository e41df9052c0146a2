//! The customers module's tables. Only this crate opens them; other modules call `customers::…` functions
//! with their own transaction.

use portal_core::WriteTx;
use portal_core::{Index, Result, Table};

use crate::model::{BillingSettings, Customer};

/// customer id → customer (archived ones too)
pub(crate) const CUSTOMERS: Table<Customer> = Table::new("customers.customers");
/// customer id → its billing settings
pub(crate) const BILLING: Table<BillingSettings> = Table::new("customers.billing_settings");
/// customer id of every customer that is not archived (the unfiltered list)
pub(crate) const LISTED: Index = Index::new("customers.listed");
/// customer id of every archived customer
pub(crate) const ARCHIVED: Index = Index::new("customers.archived");
/// status tag ‖ customer id, for customers that are not archived
pub(crate) const BY_STATUS: Index = Index::new("customers.by_status");
/// search gram ‖ customer id, for customers that are not archived (see `search`)
pub(crate) const SEARCH: Index = Index::new("customers.search");
/// search gram → how many customers hold it (big-endian u64), so a search walks the rarest gram
pub(crate) const GRAM_COUNTS: Index = Index::new("customers.search_gram_counts");
/// Stripe customer id → customer id (unique)
pub(crate) const BY_STRIPE_ID: Index = Index::new("customers.by_stripe_id");

pub(crate) fn create_all(tx: &WriteTx) -> Result<()> {
    CUSTOMERS.create(tx)?;
    BILLING.create(tx)?;
    for index in [&LISTED, &ARCHIVED, &BY_STATUS, &SEARCH, &GRAM_COUNTS, &BY_STRIPE_ID] {
        index.create(tx)?;
    }
    Ok(())
}
