//! The webhooks module's tables.

use portal_core::WriteTx;
use portal_core::{Index, Result, Table};

use crate::model::{Delivery, Endpoint, Event};

/// endpoint id → endpoint
pub(crate) const ENDPOINTS: Table<Endpoint> = Table::new("webhooks.endpoints");
/// event id → event
pub(crate) const EVENTS: Table<Event> = Table::new("webhooks.events");
/// delivery id → delivery
pub(crate) const DELIVERIES: Table<Delivery> = Table::new("webhooks.deliveries");
const INDEXES: &str = "webhooks.indexes";
/// endpoint id ‖ next attempt time ‖ delivery id, for pending deliveries (the outbox the worker drains,
/// each endpoint's on its own)
pub(crate) const DUE: Index = Index::shared(INDEXES, b"\x01");
/// endpoint id ‖ delivery id
pub(crate) const BY_ENDPOINT: Index = Index::shared(INDEXES, b"\x02");
/// `key` → secret bytes (left out of backups): `endpoints` seals the endpoints' signing secrets
pub(crate) const SECRETS: Index = Index::new("webhooks.secrets");

pub(crate) fn create_all(tx: &WriteTx) -> Result<()> {
    ENDPOINTS.create(tx)?;
    EVENTS.create(tx)?;
    DELIVERIES.create(tx)?;
    for index in [&DUE, &BY_ENDPOINT, &SECRETS] {
        index.create(tx)?;
    }
    Ok(())
}
