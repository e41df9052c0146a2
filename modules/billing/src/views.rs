//! What the billing endpoints answer: invoices as SPEC.md shows them, stats and overviews.

use poem_openapi::Object;
use portal_core::ids::CustomerId;
use portal_core::money::to_major;
use portal_core::time::{rfc3339, rfc3339_opt};
use portal_core::{Currency, Timestamp};
use portal_customers::model::{BillingFrequency, PaymentMethod};
use portal_proposals::model::ProposalId;
use serde::Serialize;

use crate::model::{
    CreditNote, CreditNoteId, Invoice, InvoiceId, InvoiceStatus, LineItem, RefundChannel, RefundOrigin,
};

#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "InvoiceLineItem")]
pub struct LineItemView {
    pub description: String,
    pub quantity: i64,
    pub unit_price: f64,
    /// `quantity × unit_price`.
    pub amount: f64,
}

impl LineItemView {
    fn of(item: LineItem, currency: Currency) -> Self {
        Self {
            description: item.description,
            quantity: i64::from(item.quantity),
            unit_price: to_major(item.unit_price, currency),
            amount: to_major(item.amount, currency),
        }
    }
}

/// An invoice. `amount` is the sum of the line items, `tax_amount = round_half_even(amount × tax_rate /
/// 100)` with the customer's tax rate when issued, and `total_amount = amount + tax_amount +
/// infrastructure_costs` (infrastructure costs pass through untaxed).
// Also `Serialize`, for `SerdeJson` on the hot reads and on the answers of the writes that return an
// invoice; a test below keeps both outputs equal.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename = "Invoice")]
pub struct InvoiceView {
    pub id: InvoiceId,
    pub customer_id: CustomerId,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<ProposalId>,
    /// `INV-YYYY-NNNNNN`, sequential and gapless per year.
    pub invoice_number: String,
    pub status: InvoiceStatus,
    pub amount: f64,
    pub tax_amount: f64,
    pub total_amount: f64,
    pub currency: String,
    #[serde(serialize_with = "rfc3339")]
    pub issue_date: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub due_date: Timestamp,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339_opt")]
    pub paid_date: Option<Timestamp>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub infrastructure_costs: f64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestone: Option<String>,
    pub line_items: Vec<LineItemView>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_invoice_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_payment_intent_id: Option<String>,
    /// Money returned after payment (Stripe refunds); a paid invoice stays `paid`.
    pub refunded_amount: f64,
    /// When the latest refund was recorded.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339_opt")]
    pub refunded_at: Option<Timestamp>,
    /// The credit notes documenting its refunds, oldest first.
    pub credit_notes: Vec<InvoiceCreditNote>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: Timestamp,
}

impl InvoiceView {
    /// The invoice as of `now` (a pending invoice past due reads as overdue).
    pub fn at(i: &Invoice, now: Timestamp) -> Self {
        Self::of(i.clone(), now)
    }

    /// [`InvoiceView::at`] for an invoice read only to be answered: its text moves into the view.
    pub fn of(i: Invoice, now: Timestamp) -> Self {
        let money = |minor| to_major(minor, i.currency);
        Self {
            id: i.id,
            customer_id: i.customer_id,
            proposal_id: i.proposal_id,
            status: i.status_at(now),
            amount: money(i.amount),
            tax_amount: money(i.tax_amount),
            total_amount: money(i.total_amount),
            currency: i.currency.to_string(),
            issue_date: i.issue_date,
            due_date: i.due_date,
            paid_date: i.paid_date,
            infrastructure_costs: money(i.infrastructure_costs),
            line_items: i.line_items.into_iter().map(|l| LineItemView::of(l, i.currency)).collect(),
            refunded_amount: money(i.refunded_amount),
            refunded_at: i.refunded_at,
            credit_notes: i
                .credit_notes
                .into_iter()
                .map(|n| InvoiceCreditNote {
                    id: n.id,
                    credit_note_number: n.number,
                    amount: money(n.amount),
                    created_at: n.issued_at,
                })
                .collect(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            invoice_number: i.number,
            description: i.description,
            milestone: i.milestone,
            payment_method: i.payment_method,
            stripe_invoice_id: i.stripe_invoice_id,
            stripe_payment_intent_id: i.stripe_payment_intent_id,
        }
    }
}

/// A credit note as its invoice lists it.
#[derive(Debug, Clone, Object, Serialize)]
pub struct InvoiceCreditNote {
    pub id: CreditNoteId,
    /// `CN-YYYY-NNNNNN`.
    pub credit_note_number: String,
    /// Refunded, in the invoice's currency.
    pub amount: f64,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: Timestamp,
}

/// A credit note: the document of a refund of a paid invoice.
#[derive(Debug, Clone, Object)]
#[oai(rename = "CreditNote")]
pub struct CreditNoteView {
    pub id: CreditNoteId,
    /// `CN-YYYY-NNNNNN`, sequential and gapless per year.
    pub credit_note_number: String,
    pub invoice_id: InvoiceId,
    pub invoice_number: String,
    pub customer_id: CustomerId,
    /// Refunded, in the invoice's currency.
    pub amount: f64,
    pub currency: String,
    pub reason: String,
    pub channel: RefundChannel,
    pub origin: RefundOrigin,
    /// Stripe's refund (`re_…`), when the portal made it.
    #[oai(skip_serializing_if_is_none)]
    pub stripe_refund_id: Option<String>,
    pub created_at: Timestamp,
}

/// A refund done: its credit note and the invoice after it.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Refund")]
pub struct RefundView {
    pub credit_note: CreditNoteView,
    pub invoice: InvoiceView,
}

impl RefundView {
    pub fn of(note: &CreditNote, invoice: &Invoice) -> Self {
        Self { credit_note: note.into(), invoice: invoice.into() }
    }
}

impl From<&CreditNote> for CreditNoteView {
    fn from(n: &CreditNote) -> Self {
        Self {
            id: n.id,
            credit_note_number: n.number.clone(),
            invoice_id: n.invoice_id,
            invoice_number: n.invoice_number.clone(),
            customer_id: n.customer_id,
            amount: to_major(n.amount, n.currency),
            currency: n.currency.to_string(),
            reason: n.reason.clone(),
            channel: n.channel,
            origin: n.origin,
            stripe_refund_id: n.stripe_refund_id.clone(),
            created_at: n.issued_at,
        }
    }
}

impl From<&Invoice> for InvoiceView {
    fn from(i: &Invoice) -> Self {
        Self::at(i, Timestamp::now())
    }
}

/// Invoice counts by status.
#[derive(Debug, Clone, Default, Object)]
pub struct InvoiceStatusCounts {
    pub draft: u64,
    pub pending: u64,
    pub paid: u64,
    pub overdue: u64,
    pub cancelled: u64,
}

/// Customer counts by status (archived customers not counted).
#[derive(Debug, Clone, Default, Object)]
pub struct CustomerStatusCounts {
    pub active: u64,
    pub inactive: u64,
    pub onboarding: u64,
    pub pending: u64,
}

/// The money of one currency.
#[derive(Debug, Clone, Object)]
pub struct CurrencyStats {
    pub currency: String,
    /// Paid invoices, all time, net of refunds.
    pub revenue_all_time: f64,
    /// Paid invoices whose payment fell in the current calendar month (UTC), net of their refunds.
    pub revenue_this_month: f64,
    /// Refunds of paid invoices, all time.
    pub refunded_amount: f64,
    /// Pending and overdue invoices.
    pub outstanding_amount: f64,
    pub outstanding_count: u64,
    pub overdue_amount: f64,
    pub overdue_count: u64,
    /// Monthly recurring revenue: active customers' monthly fees (one-time billing excluded) plus their
    /// accepted proposals' monthly recurring amounts.
    pub mrr: f64,
    /// `12 × mrr`.
    pub arr: f64,
}

/// Portal-wide billing figures.
#[derive(Debug, Clone, Object)]
pub struct BillingStats {
    /// One entry per currency in use.
    pub currencies: Vec<CurrencyStats>,
    pub invoices_by_status: InvoiceStatusCounts,
    pub customers_by_status: CustomerStatusCounts,
    pub generated_at: Timestamp,
}

/// A customer's billing settings in short.
#[derive(Debug, Clone, Object)]
pub struct BillingSummary {
    pub payment_method: PaymentMethod,
    pub billing_frequency: BillingFrequency,
    pub monthly_fee: f64,
    pub currency: String,
    pub billing_day: u8,
    pub auto_charge: bool,
    pub tax_rate: f64,
    pub payment_terms_days: u16,
    /// A card is saved for automatic charges.
    pub has_saved_payment_method: bool,
}

/// One customer's billing at a glance (amounts in its billing currency).
#[derive(Debug, Clone, Object)]
pub struct BillingOverview {
    pub customer_id: CustomerId,
    pub currency: String,
    /// Pending and overdue invoices.
    pub outstanding_amount: f64,
    pub outstanding_count: u64,
    pub overdue_amount: f64,
    pub overdue_count: u64,
    /// Paid invoices, net of refunds.
    pub paid_to_date: f64,
    /// Start of the next billing period (none for one-time billing).
    #[oai(skip_serializing_if_is_none)]
    pub next_invoice_date: Option<String>,
    /// Expected total of that invoice, tax included, at today's fee and recurring amounts.
    #[oai(skip_serializing_if_is_none)]
    pub next_invoice_amount: Option<f64>,
    /// The 5 newest invoices.
    pub recent_invoices: Vec<InvoiceView>,
    pub billing_settings: BillingSummary,
}

/// The answer of `POST /billing/pay-invoice`: the invoice after the payment (`paid` when `status` is
/// `succeeded`) and Stripe's PaymentIntent.
#[derive(Debug, Clone, Object)]
pub struct PaymentView {
    pub invoice: InvoiceView,
    /// Stripe's PaymentIntent.
    pub payment_intent_id: String,
    /// The PaymentIntent's status: `succeeded`, or `processing` when Stripe settles it later (the webhook
    /// then marks the invoice paid).
    pub status: String,
}

impl PaymentView {
    pub fn new(invoice: &Invoice, payment_intent_id: String, status: String, now: Timestamp) -> Self {
        Self { invoice: InvoiceView::at(invoice, now), payment_intent_id, status }
    }
}

/// A card saved at Stripe for the customer.
#[derive(Debug, Clone, Object)]
pub struct PaymentMethodView {
    /// Stripe's PaymentMethod id (`pm_…`).
    pub id: String,
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
    /// The card automatic charges and payments without a named card use.
    pub is_default: bool,
}

/// A SetupIntent for saving a card: confirm it in the browser with Stripe.js.
#[derive(Debug, Clone, Object)]
pub struct SetupIntentView {
    pub client_secret: String,
    pub setup_intent_id: String,
    /// The customer the card is saved for.
    pub customer_id: CustomerId,
}

/// A link to the page where the customer saves a card, without signing in.
#[derive(Debug, Clone, Object)]
pub struct CardLinkView {
    /// `{PORTAL_PUBLIC_URL}/cards/{token}`: opens the card page for this customer only.
    pub url: String,
    /// The link stops working then, or when a newer link is made for the customer.
    pub expires_at: Timestamp,
    pub customer_id: CustomerId,
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    fn invoice(with_options: bool) -> InvoiceView {
        let t = Timestamp::parse("2026-11-24T21:15:44.5Z").unwrap();
        let some = |s: &str| with_options.then(|| s.to_string());
        InvoiceView {
            id: InvoiceId::generate(),
            customer_id: CustomerId::generate(),
            proposal_id: with_options.then(ProposalId::generate),
            invoice_number: "INV-2026-000042".into(),
            status: InvoiceStatus::Paid,
            amount: 3333.33,
            tax_amount: 0.1,
            total_amount: 1e15,
            currency: "USD".into(),
            issue_date: t,
            due_date: t.plus_secs(86_400),
            paid_date: with_options.then_some(t),
            description: some("Milestone \"2\" — Café ✓ \\ \n tab\t"),
            infrastructure_costs: 0.0,
            milestone: some("Design"),
            line_items: vec![LineItemView {
                description: "Hosting \u{1F680}".into(),
                quantity: 3,
                unit_price: 19.99,
                amount: 59.97,
            }],
            payment_method: some("stripe"),
            stripe_invoice_id: some("in_1"),
            stripe_payment_intent_id: some("pi_1"),
            refunded_amount: 12.5,
            refunded_at: with_options.then_some(t),
            credit_notes: vec![InvoiceCreditNote {
                id: CreditNoteId::generate(),
                credit_note_number: "CN-2026-000007".into(),
                amount: 12.5,
                created_at: t,
            }],
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn serde_output_equals_the_documented_json() {
        for with_options in [true, false] {
            let view = invoice(with_options);
            let direct: serde_json::Value = serde_json::from_slice(&serde_json::to_vec(&view).unwrap()).unwrap();
            assert_eq!(direct, view.to_json().unwrap(), "with optional fields: {with_options}");
        }
    }
}

/// A successful payment that did not pay its invoice (another amount, currency or Stripe customer, or an
/// invoice already paid or cancelled): the money was taken, and an admin reconciles it.
#[derive(Debug, Clone, Object)]
#[oai(rename = "UnmatchedPayment")]
pub struct UnmatchedPaymentView {
    pub id: crate::model::UnmatchedPaymentId,
    pub invoice_id: InvoiceId,
    pub customer_id: CustomerId,
    /// Stripe's PaymentIntent.
    pub payment_intent_id: String,
    /// In the currency's smallest unit (cents for USD), exactly as Stripe reported it.
    pub amount_minor: i64,
    /// ISO 4217, as Stripe reported it.
    pub currency: String,
    #[oai(skip_serializing_if_is_none)]
    pub stripe_customer_id: Option<String>,
    /// Why it did not pay the invoice.
    pub reason: String,
    pub received_at: Timestamp,
}

impl From<&crate::model::UnmatchedPayment> for UnmatchedPaymentView {
    fn from(p: &crate::model::UnmatchedPayment) -> Self {
        Self {
            id: p.id,
            invoice_id: p.invoice_id,
            customer_id: p.customer_id,
            payment_intent_id: p.payment_intent_id.clone(),
            amount_minor: p.amount,
            currency: p.currency.clone(),
            stripe_customer_id: p.stripe_customer_id.clone(),
            reason: p.reason.clone(),
            received_at: p.received_at,
        }
    }
}

/// A mail about an invoice, as recorded before it was sent.
#[derive(Debug, Clone, Object)]
#[oai(rename = "InvoiceMail")]
pub struct InvoiceMailView {
    /// Also the mail's Message-ID, before `@` and the sender's domain.
    pub id: crate::mail::InvoiceMailId,
    pub invoice_id: InvoiceId,
    pub kind: crate::mail::MailKind,
    /// For reminders: days from the due date (−3: three days before it).
    #[oai(skip_serializing_if_is_none)]
    pub reminder_day: Option<i32>,
    pub to: Vec<String>,
    pub created_at: Timestamp,
    /// When the mail server took it; absent while it waits or after the portal gave up.
    #[oai(skip_serializing_if_is_none)]
    pub sent_at: Option<Timestamp>,
    pub attempts: u32,
    /// Why the last attempt failed.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// True once the portal stopped trying.
    pub gave_up: bool,
}

impl From<&crate::mail::InvoiceMail> for InvoiceMailView {
    fn from(m: &crate::mail::InvoiceMail) -> Self {
        Self {
            id: m.id,
            invoice_id: m.invoice_id,
            kind: m.kind,
            reminder_day: m.reminder_day,
            to: m.to.clone(),
            created_at: m.created_at,
            sent_at: m.sent_at,
            attempts: m.attempts,
            last_error: m.last_error.clone(),
            gave_up: m.gave_up,
        }
    }
}
