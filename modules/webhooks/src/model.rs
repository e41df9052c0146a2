//! What the webhooks module stores: endpoints, events and their deliveries.

use poem_openapi::Enum;
use portal_core::{Record, Timestamp};
use serde::{Deserialize, Serialize};

portal_core::id_type!(
    /// A registered webhook endpoint.
    EndpointId
);
portal_core::id_type!(
    /// An event: one change, sent to every endpoint that listens for its type under the same `webhook-id`.
    EventId
);
portal_core::id_type!(
    /// One event on its way to one endpoint.
    DeliveryId
);

/// What happened. The names are what `type` says in the payload and what endpoints filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Enum)]
pub enum EventKind {
    #[oai(rename = "customer.created")]
    #[serde(rename = "customer.created")]
    CustomerCreated,
    #[oai(rename = "customer.updated")]
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    #[oai(rename = "customer.archived")]
    #[serde(rename = "customer.archived")]
    CustomerArchived,
    #[oai(rename = "proposal.sent")]
    #[serde(rename = "proposal.sent")]
    ProposalSent,
    #[oai(rename = "proposal.accepted")]
    #[serde(rename = "proposal.accepted")]
    ProposalAccepted,
    #[oai(rename = "proposal.rejected")]
    #[serde(rename = "proposal.rejected")]
    ProposalRejected,
    #[oai(rename = "proposal.expired")]
    #[serde(rename = "proposal.expired")]
    ProposalExpired,
    #[oai(rename = "invoice.issued")]
    #[serde(rename = "invoice.issued")]
    InvoiceIssued,
    #[oai(rename = "invoice.paid")]
    #[serde(rename = "invoice.paid")]
    InvoicePaid,
    #[oai(rename = "invoice.overdue")]
    #[serde(rename = "invoice.overdue")]
    InvoiceOverdue,
    #[oai(rename = "invoice.cancelled")]
    #[serde(rename = "invoice.cancelled")]
    InvoiceCancelled,
    #[oai(rename = "invoice.refunded")]
    #[serde(rename = "invoice.refunded")]
    InvoiceRefunded,
    #[oai(rename = "credit_note.created")]
    #[serde(rename = "credit_note.created")]
    CreditNoteCreated,
    #[oai(rename = "payment.failed")]
    #[serde(rename = "payment.failed")]
    PaymentFailed,
}

impl EventKind {
    /// The type's name, as in the payload.
    pub fn name(self) -> &'static str {
        match self {
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::CustomerArchived => "customer.archived",
            Self::ProposalSent => "proposal.sent",
            Self::ProposalAccepted => "proposal.accepted",
            Self::ProposalRejected => "proposal.rejected",
            Self::ProposalExpired => "proposal.expired",
            Self::InvoiceIssued => "invoice.issued",
            Self::InvoicePaid => "invoice.paid",
            Self::InvoiceOverdue => "invoice.overdue",
            Self::InvoiceCancelled => "invoice.cancelled",
            Self::InvoiceRefunded => "invoice.refunded",
            Self::CreditNoteCreated => "credit_note.created",
            Self::PaymentFailed => "payment.failed",
        }
    }
}

/// A signing secret, sealed with the module's key (AES-256-GCM); `expires_at` is set on a secret replaced
/// by rotation, which keeps signing until then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedSecret {
    pub nonce: Vec<u8>,
    pub sealed: Vec<u8>,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub url: String,
    pub description: String,
    /// The event types it receives; empty: all.
    pub events: Vec<EventKind>,
    pub enabled: bool,
    /// Why the portal disabled it (the endpoint answered 410 Gone).
    pub disabled_reason: Option<String>,
    /// The current secret first, then those being rotated out.
    pub secrets: Vec<SealedSecret>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Record for Endpoint {}

impl Endpoint {
    pub fn listens_to(&self, kind: EventKind) -> bool {
        self.enabled && (self.events.is_empty() || self.events.contains(&kind))
    }
}

/// An event as sent: the exact body every endpoint receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub kind: EventKind,
    pub body: Vec<u8>,
    pub created_at: Timestamp,
}

impl Record for Event {}

impl Event {
    /// The `webhook-id` header: the same on every attempt and for every endpoint.
    pub fn webhook_id(&self) -> String {
        format!("evt_{}", self.id.0.simple())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Attempts ran out, or the endpoint was disabled or removed.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    /// The endpoint's HTTP status; none when no answer came.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    pub kind: EventKind,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// When it is tried next, while pending.
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Record for Delivery {}
