//! The proposals module's tables.

use portal_core::WriteTx;
use portal_core::{Index, Result, Table};

use crate::model::Proposal;

/// proposal id → proposal
pub(crate) const PROPOSALS: Table<Proposal> = Table::new("proposals.proposals");
/// customer id ‖ proposal id
pub(crate) const BY_CUSTOMER: Index = Index::new("proposals.by_customer");
/// customer id ‖ status tag ‖ proposal id
pub(crate) const BY_CUSTOMER_STATUS: Index = Index::new("proposals.by_customer_status");
/// valid_until (big-endian, sign-flipped micros) ‖ proposal id, for open proposals that can expire
pub(crate) const EXPIRY: Index = Index::new("proposals.expiry");

pub(crate) fn create_all(tx: &WriteTx) -> Result<()> {
    PROPOSALS.create(tx)?;
    for index in [&BY_CUSTOMER, &BY_CUSTOMER_STATUS, &EXPIRY] {
        index.create(tx)?;
    }
    Ok(())
}
