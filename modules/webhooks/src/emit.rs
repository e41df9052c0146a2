//! Writing events: in the transaction of the change that caused them, with one delivery for each endpoint
//! that listens for the type. A change that rolls back leaves no event; one that commits loses none (the
//! worker sends what is due, again after a crash, under the same `webhook-id`). The worker is woken once
//! the change is committed.

use portal_core::table::key;
use portal_core::WriteTx;
use portal_core::{Error, Result, Timestamp};

use crate::model::{Delivery, DeliveryId, DeliveryStatus, Event, EventId, EventKind};
use crate::tables::{BY_ENDPOINT, DELIVERIES, DUE, ENDPOINTS, EVENTS};

/// Records that `kind` happened, with `data()` (the object as the API shows it) as the payload's `data`.
/// Nothing is written, and `data` not called, when no endpoint listens for it.
pub fn emit(tx: &WriteTx, kind: EventKind, data: impl FnOnce() -> serde_json::Value) -> Result<()> {
    let mut listeners = Vec::new();
    ENDPOINTS.scan_prefix(tx, &[], |_, endpoint| {
        if endpoint.listens_to(kind) {
            listeners.push(endpoint.id);
        }
        Ok::<_, Error>(true)
    })?;
    if listeners.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    let payload = serde_json::json!({ "type": kind.name(), "timestamp": now.to_rfc3339(), "data": data() });
    let event = Event { id: EventId::generate(), kind, body: payload.to_string().into_bytes(), created_at: now };
    EVENTS.insert(tx, &event.id.to_key(), &event)?;
    for endpoint in listeners {
        let delivery = Delivery {
            id: DeliveryId::generate(),
            endpoint_id: endpoint,
            event_id: event.id,
            kind,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            created_at: now,
        };
        DELIVERIES.insert(tx, &delivery.id.to_key(), &delivery)?;
        DUE.put(tx, &crate::worker::due_key(&delivery, now), &[])?;
        BY_ENDPOINT.put(tx, &key(&[&endpoint.to_key(), &delivery.id.to_key()]), &[])?;
    }
    portal_core::store::on_commit(|| crate::worker::NEW_DELIVERIES.notify_one());
    Ok(())
}
