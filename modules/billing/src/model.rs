//! Stored invoices.

use chrono::{Datelike, NaiveDate};
use poem_openapi::Enum;
use portal_core::ids::CustomerId;
use portal_core::money::TaxRate;
use portal_core::{Currency, Record, Timestamp};
use portal_proposals::model::ProposalId;
use serde::{Deserialize, Serialize};

portal_core::id_type!(
    /// An invoice.
    InvoiceId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
/// Where an invoice stands: `draft`, `pending` (issued, waiting for payment), `paid`, `overdue` (a pending
/// invoice past its due date) or `cancelled`.
pub enum InvoiceStatus {
    Draft,
    Pending,
    Paid,
    Overdue,
    Cancelled,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 5] = [Self::Draft, Self::Pending, Self::Paid, Self::Overdue, Self::Cancelled];

    /// Position in per-status arrays and key byte of the status indexes.
    pub fn index(self) -> usize {
        match self {
            Self::Draft => 0,
            Self::Pending => 1,
            Self::Paid => 2,
            Self::Overdue => 3,
            Self::Cancelled => 4,
        }
    }

    /// Issued and not yet paid.
    pub fn is_outstanding(self) -> bool {
        matches!(self, Self::Pending | Self::Overdue)
    }

    /// Its amounts may still change (infrastructure costs) and it may be cancelled.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Draft | Self::Pending | Self::Overdue)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub description: String,
    pub quantity: u32,
    /// Minor units.
    pub unit_price: i64,
    /// `quantity × unit_price`, minor units.
    pub amount: i64,
}

/// The billing period a recurring invoice covers: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    #[serde(deserialize_with = "portal_core::time::date::deserialize")]
    pub start: NaiveDate,
    #[serde(deserialize_with = "portal_core::time::date::deserialize")]
    pub end: NaiveDate,
}

impl Period {
    /// The last day the period covers (the day before `end`), as people write a period.
    pub fn last_day(&self) -> NaiveDate {
        self.end.pred_opt().unwrap_or(self.end)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invoice {
    pub id: InvoiceId,
    pub customer_id: CustomerId,
    pub proposal_id: Option<ProposalId>,
    /// `INV-YYYY-NNNNNN`.
    pub number: String,
    /// As stored; a pending invoice past its due date reads as overdue before the sweep records it.
    pub status: InvoiceStatus,
    /// Sum of the line items, minor units.
    pub amount: i64,
    pub tax_rate: TaxRate,
    /// `round_half_even(amount × tax_rate / 100)`.
    pub tax_amount: i64,
    /// Passed through at cost, untaxed.
    pub infrastructure_costs: i64,
    /// `amount + tax_amount + infrastructure_costs`.
    pub total_amount: i64,
    pub currency: Currency,
    pub issue_date: Timestamp,
    pub due_date: Timestamp,
    pub paid_date: Option<Timestamp>,
    pub description: Option<String>,
    pub milestone: Option<String>,
    pub line_items: Vec<LineItem>,
    pub payment_method: Option<String>,
    pub stripe_invoice_id: Option<String>,
    pub stripe_payment_intent_id: Option<String>,
    pub period: Option<Period>,
    /// Money returned to the customer after payment (Stripe refunds), minor units, at most `total_amount`.
    #[serde(default)]
    pub refunded_amount: i64,
    /// When the latest refund was recorded.
    #[serde(default)]
    pub refunded_at: Option<Timestamp>,
    /// The credit notes documenting its refunds, oldest first.
    #[serde(default)]
    pub credit_notes: Vec<CreditNoteRef>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Record for Invoice {}

impl Invoice {
    /// The status as of `now`: a pending invoice past its due date is overdue.
    pub fn status_at(&self, now: Timestamp) -> InvoiceStatus {
        match self.status {
            InvoiceStatus::Pending if self.due_date <= now => InvoiceStatus::Overdue,
            s => s,
        }
    }

    /// Recomputes tax and total from the line items and infrastructure costs (the one rule everywhere).
    pub fn recompute(&mut self) {
        self.amount = self.line_items.iter().map(|l| l.amount).sum();
        self.tax_amount = self.tax_rate.tax_on(self.amount);
        self.total_amount = self.amount + self.tax_amount + self.infrastructure_costs;
    }
}

/// Running totals of one scope (all customers, or one) in one currency, by invoice status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub count: [u64; 5],
    /// Sum of `total_amount`, minor units.
    pub sum: [i64; 5],
    /// Sum of `refunded_amount` (of paid invoices), minor units.
    #[serde(default)]
    pub refunded: i64,
}

impl Record for Totals {}

impl Totals {
    /// How many invoices are in `status`, and their sum.
    pub fn of(&self, status: InvoiceStatus) -> (u64, i64) {
        let i = status.index();
        (self.count.get(i).copied().unwrap_or(0), self.sum.get(i).copied().unwrap_or(0))
    }

    /// Counts `n` invoices (negative: takes them away) summing to `amount` in `status`.
    pub fn add(&mut self, status: InvoiceStatus, n: i64, amount: i64) {
        let i = status.index();
        if let (Some(count), Some(sum)) = (self.count.get_mut(i), self.sum.get_mut(i)) {
            *count = count.saturating_add_signed(n);
            *sum += amount;
        }
    }
}

/// The record of money received for an invoice (one per paid invoice), written with the invoice's change
/// to paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub invoice_id: InvoiceId,
    pub customer_id: CustomerId,
    /// Minor units.
    pub amount: i64,
    pub currency: Currency,
    /// `stripe`, `bank_transfer`, …
    pub method: String,
    pub stripe_payment_intent_id: Option<String>,
    pub paid_at: Timestamp,
    pub recorded_at: Timestamp,
}

impl Record for Payment {}

portal_core::id_type!(
    /// A payment that did not match its invoice.
    UnmatchedPaymentId
);

/// A successful payment the portal did not count as paying its invoice: another amount, currency or Stripe
/// customer than the invoice's, or an invoice already paid. The money was taken; an admin reconciles it
/// (refunds it, or records the invoice as paid by hand).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnmatchedPayment {
    pub id: UnmatchedPaymentId,
    pub invoice_id: InvoiceId,
    pub customer_id: CustomerId,
    pub payment_intent_id: String,
    /// In the currency's smallest unit, as Stripe reported it.
    pub amount: i64,
    /// ISO 4217, upper case, as Stripe reported it.
    pub currency: String,
    pub stripe_customer_id: Option<String>,
    /// Why it did not pay the invoice.
    pub reason: String,
    pub received_at: Timestamp,
}

impl Record for UnmatchedPayment {}

/// The state of collecting an invoice through Stripe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Collection {
    /// Charge attempts that ended (declined); the next attempt's Stripe idempotency key uses `attempts + 1`,
    /// so an attempt cut short (timeout, crash) is retried under its own key and never charges twice.
    pub attempts: u32,
    /// Set while an attempt is with Stripe: other payers of the invoice wait (409).
    pub in_flight_since: Option<Timestamp>,
    /// A PaymentIntent Stripe accepted but has not settled (`processing`): its webhook completes the invoice.
    pub processing_intent: Option<String>,
    /// Automatic charges made so far, and when the first of them was declined (retries count from it).
    pub auto_attempts: u32,
    pub first_auto_decline: Option<Timestamp>,
    /// The last decline: Stripe's decline code (or error code) and message.
    pub last_decline: Option<String>,
}

impl Record for Collection {}

/// An attempt in flight longer than this died with its request (Stripe calls time out after 20 s), so
/// another may start.
pub const STALE_ATTEMPT_SECS: i64 = 60;

impl Collection {
    /// Whether a charge is with Stripe or processing there at `now` (the invoice's total must not change,
    /// and it must not be cancelled, until it settles).
    pub fn in_progress(&self, now: Timestamp) -> bool {
        self.processing_intent.is_some()
            || self.in_flight_since.is_some_and(|since| now.micros() - since.micros() < STALE_ATTEMPT_SECS * 1_000_000)
    }
}

/// 4 key bytes that sort like the dates (billing periods are indexed by their days).
pub(crate) fn day_key(date: NaiveDate) -> [u8; 4] {
    ((date.num_days_from_ce() as u32) ^ (1 << 31)).to_be_bytes()
}

pub(crate) fn day_from_key(bytes: &[u8]) -> Option<NaiveDate> {
    let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    NaiveDate::from_num_days_from_ce_opt((u32::from_be_bytes(raw) ^ (1 << 31)) as i32)
}

portal_core::id_type!(
    /// A credit note.
    CreditNoteId
);

portal_core::id_type!(
    /// A refund of an invoice.
    RefundId
);

/// A credit note as its invoice lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteRef {
    pub id: CreditNoteId,
    /// `CN-YYYY-NNNNNN`.
    pub number: String,
    /// Minor units.
    pub amount: i64,
    pub issued_at: Timestamp,
}

/// How a refund's money goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum RefundChannel {
    /// A Stripe refund of the charge that paid the invoice.
    Stripe,
    /// Returned outside Stripe (the invoice was paid by hand); the portal records it.
    Manual,
}

/// Where a refund was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum RefundOrigin {
    /// An admin, through `POST /billing/invoices/{id}/refund`.
    Portal,
    /// Outside the portal (Stripe's dashboard), learned from Stripe's `charge.refunded`.
    Stripe,
}

/// A refund: reserved before Stripe is called, so concurrent refunds never return more than was paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub invoice_id: InvoiceId,
    pub customer_id: CustomerId,
    /// Minor units, in the invoice's currency.
    pub amount: i64,
    pub reason: String,
    pub channel: RefundChannel,
    pub origin: RefundOrigin,
    /// Stripe's refund (`re_…`), once Stripe answered.
    pub stripe_refund_id: Option<String>,
    /// Set when the refund is done; until then it is pending.
    pub credit_note_id: Option<CreditNoteId>,
    pub created_at: Timestamp,
}

impl Record for Refund {}

/// A credit note: the document of a refund, numbered `CN-YYYY-NNNNNN` gaplessly in the refund's own
/// transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreditNote {
    pub id: CreditNoteId,
    pub number: String,
    pub invoice_id: InvoiceId,
    pub invoice_number: String,
    pub customer_id: CustomerId,
    /// Minor units.
    pub amount: i64,
    pub currency: Currency,
    pub reason: String,
    pub refund_id: RefundId,
    pub channel: RefundChannel,
    pub origin: RefundOrigin,
    pub stripe_refund_id: Option<String>,
    pub issued_at: Timestamp,
}

impl Record for CreditNote {}
