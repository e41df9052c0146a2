//! The billing module's tables.

use portal_core::WriteTx;
use portal_core::{Index, Result, Table};

use crate::model::{Collection, CreditNote, Invoice, Payment, Refund, Totals, UnmatchedPayment};

/// invoice id → invoice
pub(crate) const INVOICES: Table<Invoice> = Table::new("billing.invoices");
/// scope (customer id, or 16 zero bytes for all) ‖ currency → running totals by status
pub(crate) const TOTALS: Table<Totals> = Table::new("billing.totals");
/// The table the invoice indexes below share, each under its tag: an invoice write updates one B-tree
/// for all of them.
const INDEXES: &str = "billing.invoice_indexes";
/// customer id ‖ invoice id
pub(crate) const BY_CUSTOMER: Index = Index::shared(INDEXES, b"\x01");
/// customer id ‖ status index ‖ invoice id (stored status)
pub(crate) const BY_CUSTOMER_STATUS: Index = Index::shared(INDEXES, b"\x02");
/// proposal id ‖ invoice id: the invoices a proposal generated
pub(crate) const BY_PROPOSAL: Index = Index::shared(INDEXES, b"\x03");
/// invoice number → invoice id
pub(crate) const BY_NUMBER: Index = Index::shared(INDEXES, b"\x04");
/// due date key ‖ invoice id, for pending invoices (the overdue sweep)
pub(crate) const DUE: Index = Index::shared(INDEXES, b"\x05");
/// customer id ‖ period start → period end ‖ invoice id: the billed recurring periods
pub(crate) const PERIODS: Index = Index::shared(INDEXES, b"\x06");
/// year (u16) → last invoice sequence number of that year (u32)
pub(crate) const NUMBERS: Index = Index::shared(INDEXES, b"\x07");
/// scope ‖ currency ‖ year-month (u32) → money collected that month (i64)
pub(crate) const PAID_BY_MONTH: Index = Index::shared(INDEXES, b"\x08");

/// customer id ‖ credit note id
pub(crate) const CREDIT_NOTES_BY_CUSTOMER: Index = Index::shared(INDEXES, b"\x09");
/// year (u16) → last credit note sequence number of that year (u32)
pub(crate) const CREDIT_NOTE_NUMBERS: Index = Index::shared(INDEXES, b"\x0a");
/// invoice id ‖ refund id: refunds reserved and not yet done
pub(crate) const PENDING_REFUNDS: Index = Index::shared(INDEXES, b"\x0b");

/// `events` → the `created` time (Unix seconds, i64) of the newest Stripe event reconciliation applied
pub(crate) const STRIPE_SYNC: Index = Index::shared(INDEXES, b"\x0c");

/// next attempt (timestamp key) ‖ invoice id ‖ mail id: the invoice mails still to send
pub(crate) const MAIL_QUEUE: Index = Index::shared(INDEXES, b"\x0d");
/// due date (timestamp key) ‖ invoice id: outstanding invoices with reminders still to come
pub(crate) const REMINDABLE: Index = Index::shared(INDEXES, b"\x0e");
/// invoice id → the day (i32, from the due date) of the last reminder recorded
pub(crate) const REMINDED: Index = Index::shared(INDEXES, b"\x0f");

/// refund id → refund
pub(crate) const REFUNDS: Table<Refund> = Table::new("billing.refunds");
/// credit note id → credit note
pub(crate) const CREDIT_NOTES: Table<CreditNote> = Table::new("billing.credit_notes");

/// invoice id → the payment that settled it
pub(crate) const PAYMENTS: Table<Payment> = Table::new("billing.payments");
/// Stripe PaymentIntent id → the invoice id it paid (refund events name the intent)
pub(crate) const BY_PAYMENT_INTENT: Index = Index::new("billing.invoices_by_payment_intent");
/// invoice id → the state of collecting it through Stripe
pub(crate) const COLLECTIONS: Table<Collection> = Table::new("billing.collections");

/// unmatched payment id → a successful payment that did not pay its invoice, for admins to reconcile
pub(crate) const UNMATCHED_PAYMENTS: Table<UnmatchedPayment> = Table::new("billing.unmatched_payments");

/// Stripe event id → when it was applied (each event is applied once)
pub(crate) const STRIPE_EVENTS: Index = Index::new("billing.stripe_events");

/// Schema 1 kept each invoice index in a table of its own.
const FORMER_TABLES: [(&Index, &str); 8] = [
    (&BY_CUSTOMER, "billing.invoices_by_customer"),
    (&BY_CUSTOMER_STATUS, "billing.invoices_by_customer_status"),
    (&BY_PROPOSAL, "billing.invoices_by_proposal"),
    (&BY_NUMBER, "billing.invoices_by_number"),
    (&DUE, "billing.pending_by_due_date"),
    (&PERIODS, "billing.recurring_periods"),
    (&NUMBERS, "billing.invoice_numbers"),
    (&PAID_BY_MONTH, "billing.paid_by_month"),
];

/// Schema 3 kept the invoice mail queue and the reminder schedule in tables of their own.
const FORMER_MAIL_TABLES: [(&Index, &str); 3] =
    [(&MAIL_QUEUE, "billing.mail_queue"), (&REMINDABLE, "billing.remindable"), (&REMINDED, "billing.reminded")];

/// Schema 1 → 2: the invoice indexes move into their shared table.
pub(crate) fn share_invoice_indexes(tx: &WriteTx) -> Result<()> {
    share(tx, &FORMER_TABLES, 2)
}

/// Schema 3 → 4: the mail queue and the reminder schedule, written with every new invoice, move into the
/// shared table too.
pub(crate) fn share_mail_indexes(tx: &WriteTx) -> Result<()> {
    share(tx, &FORMER_MAIL_TABLES, 4)
}

fn share(tx: &WriteTx, former_tables: &[(&Index, &'static str)], schema: u32) -> Result<()> {
    let mut moved = 0;
    for (index, former) in former_tables {
        moved += index.take_over(tx, former)?;
    }
    tracing::info!(moved, "billing schema {schema}: index entries moved into {INDEXES}");
    Ok(())
}

pub(crate) fn create_all(tx: &WriteTx) -> Result<()> {
    INVOICES.create(tx)?;
    TOTALS.create(tx)?;
    PAYMENTS.create(tx)?;
    COLLECTIONS.create(tx)?;
    UNMATCHED_PAYMENTS.create(tx)?;
    REFUNDS.create(tx)?;
    CREDIT_NOTES.create(tx)?;
    for index in [
        &BY_CUSTOMER,
        &BY_CUSTOMER_STATUS,
        &BY_PROPOSAL,
        &BY_NUMBER,
        &DUE,
        &PERIODS,
        &NUMBERS,
        &PAID_BY_MONTH,
        &MAIL_QUEUE,
        &REMINDABLE,
        &REMINDED,
        &STRIPE_EVENTS,
        &BY_PAYMENT_INTENT,
    ] {
        index.create(tx)?;
    }
    Ok(())
}
