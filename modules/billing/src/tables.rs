//! The billing module's tables.

use portal_core::{Index, Result, Table};
use redb::WriteTransaction;

use crate::model::{Collection, Invoice, Payment, Totals};

/// invoice id → invoice
pub(crate) const INVOICES: Table<Invoice> = Table::new("billing.invoices");
/// customer id ‖ invoice id
pub(crate) const BY_CUSTOMER: Index = Index::new("billing.invoices_by_customer");
/// customer id ‖ status index ‖ invoice id (stored status)
pub(crate) const BY_CUSTOMER_STATUS: Index = Index::new("billing.invoices_by_customer_status");
/// proposal id ‖ invoice id: the invoices a proposal generated
pub(crate) const BY_PROPOSAL: Index = Index::new("billing.invoices_by_proposal");
/// invoice number → invoice id
pub(crate) const BY_NUMBER: Index = Index::new("billing.invoices_by_number");
/// due date key ‖ invoice id, for pending invoices (the overdue sweep)
pub(crate) const DUE: Index = Index::new("billing.pending_by_due_date");
/// customer id ‖ period start → period end ‖ invoice id: the billed recurring periods
pub(crate) const PERIODS: Index = Index::new("billing.recurring_periods");
/// year (u16) → last invoice sequence number of that year (u32)
pub(crate) const NUMBERS: Index = Index::new("billing.invoice_numbers");
/// scope (customer id, or 16 zero bytes for all) ‖ currency → running totals by status
pub(crate) const TOTALS: Table<Totals> = Table::new("billing.totals");
/// scope ‖ currency ‖ year-month (u32) → money collected that month (i64)
pub(crate) const PAID_BY_MONTH: Index = Index::new("billing.paid_by_month");

/// invoice id → the payment that settled it
pub(crate) const PAYMENTS: Table<Payment> = Table::new("billing.payments");
/// Stripe PaymentIntent id → the invoice id it paid (refund events name the intent)
pub(crate) const BY_PAYMENT_INTENT: Index = Index::new("billing.invoices_by_payment_intent");
/// invoice id → the state of collecting it through Stripe
pub(crate) const COLLECTIONS: Table<Collection> = Table::new("billing.collections");

/// Stripe event id → when it was applied (each event is applied once)
pub(crate) const STRIPE_EVENTS: Index = Index::new("billing.stripe_events");

pub(crate) fn create_all(tx: &WriteTransaction) -> Result<()> {
    INVOICES.create(tx)?;
    TOTALS.create(tx)?;
    PAYMENTS.create(tx)?;
    COLLECTIONS.create(tx)?;
    for index in [
        &BY_CUSTOMER,
        &BY_CUSTOMER_STATUS,
        &BY_PROPOSAL,
        &BY_NUMBER,
        &DUE,
        &PERIODS,
        &NUMBERS,
        &PAID_BY_MONTH,
        &STRIPE_EVENTS,
        &BY_PAYMENT_INTENT,
    ] {
        index.create(tx)?;
    }
    Ok(())
}
