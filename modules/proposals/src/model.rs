//! Stored proposals.

use poem_openapi::Enum;
use portal_core::ids::CustomerId;
use portal_core::{Currency, Record, Timestamp};
use serde::{Deserialize, Serialize};

portal_core::id_type!(
    /// A sales proposal.
    ProposalId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
/// Where a proposal stands. A new proposal is a `draft` (or `sent`); clients set only `draft` or `sent`,
/// `accepted` and `rejected` come from their own operations, and an open proposal past `valid_until` is
/// `expired`.
pub enum ProposalStatus {
    Draft,
    Sent,
    Accepted,
    Rejected,
    Expired,
}

impl ProposalStatus {
    /// Still waiting for the customer's answer.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Draft | Self::Sent)
    }

    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::Draft => 1,
            Self::Sent => 2,
            Self::Accepted => 3,
            Self::Rejected => 4,
            Self::Expired => 5,
        }
    }
}

/// One step of the billing schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestone {
    /// Share of the total in ten-thousandths of a percent (33.3333 % → 333_333).
    pub share: u32,
    pub name: String,
    /// Days from invoice issue to due date; none → the customer's payment terms.
    pub due_days: Option<u32>,
}

/// 100 % in milestone share units.
pub const WHOLE: u32 = 1_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub customer_id: CustomerId,
    pub title: String,
    pub description: Option<String>,
    /// As stored; an open proposal past `valid_until` reads as expired before the sweep records it.
    pub status: ProposalStatus,
    /// Minor units of `currency`.
    pub total_amount: i64,
    pub currency: Currency,
    pub billing_schedule: Vec<Milestone>,
    pub valid_until: Option<Timestamp>,
    /// Minor units of `currency`, billed with every recurring invoice once accepted.
    pub monthly_recurring_amount: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub accepted_at: Option<Timestamp>,
    pub rejected_at: Option<Timestamp>,
}

impl Record for Proposal {}

impl Proposal {
    /// The status as of `now`: open proposals past their `valid_until` are expired.
    pub fn status_at(&self, now: Timestamp) -> ProposalStatus {
        match self.valid_until {
            Some(until) if self.status.is_open() && until <= now => ProposalStatus::Expired,
            _ => self.status,
        }
    }
}
