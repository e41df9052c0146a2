//! Stripe webhook events, applied once each (event ids are kept) in one store transaction, with no Stripe
//! call inside it. Events may arrive late, twice or out of order: a paid invoice never moves back.

use portal_core::WriteTx;
use portal_core::{Error, Result, Timestamp};
use portal_stripe::webhook::Event;

use crate::model::{InvoiceId, InvoiceStatus};
use crate::tables::STRIPE_EVENTS;
use crate::unmatched::{self, Received};
use crate::{collect, invoices, refunds};

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Seen before: nothing done again.
    Duplicate,
    /// A type the portal does not act on.
    Ignored,
}

pub fn apply(tx: &WriteTx, event: &Event) -> Result<Applied> {
    if event.id.is_empty() || event.id.len() > 255 {
        return Err(Error::bad_request("the event has no valid id"));
    }
    if STRIPE_EVENTS.contains(tx, event.id.as_bytes())? {
        return Ok(Applied::Duplicate);
    }
    STRIPE_EVENTS.put(tx, event.id.as_bytes(), &Timestamp::now().to_key())?;
    let applied = match event.kind.as_str() {
        "payment_intent.succeeded" => payment_succeeded(tx, event)?,
        // A failed attempt never changes an invoice (a later success, or one before it, stands); it only
        // ends a charge that was processing.
        "payment_intent.payment_failed" => payment_failed(tx, event)?,
        "setup_intent.succeeded" => setup_succeeded(tx, event)?,
        "charge.refunded" => charge_refunded(tx, event)?,
        _ => Applied::Ignored,
    };
    Ok(applied)
}

fn payment_succeeded(tx: &WriteTx, event: &Event) -> Result<Applied> {
    let Some(invoice_id) = event.metadata("invoice_id").and_then(|id| id.parse::<InvoiceId>().ok()) else {
        return Ok(Applied::Ignored);
    };
    let Some(invoice) = invoices::get(tx, invoice_id)? else { return Ok(Applied::Ignored) };
    let Some(intent) = event.object_str("id") else { return Ok(Applied::Ignored) };
    collect::intent_settled(tx, invoice_id, intent, false)?;
    let received = Received {
        payment_intent_id: intent.to_string(),
        amount: event.object_i64("amount_received").or_else(|| event.object_i64("amount")).unwrap_or(0),
        currency: event.object_str("currency").unwrap_or_default().to_string(),
        stripe_customer_id: event.object_str("customer").map(str::to_string),
    };
    if let Some(reason) = unmatched::mismatch(tx, &invoice, &received)? {
        unmatched::record(tx, &invoice, &received, reason)?;
        return Ok(Applied::Applied);
    }
    if !invoice.status.is_open() {
        // The PaymentIntent that paid it, reported again.
        return Ok(Applied::Applied);
    }
    let paid_at = event.object_i64("created").or(event.created).map_or_else(Timestamp::now, |secs| {
        Timestamp::from_micros(secs.saturating_mul(1_000_000)).min(Timestamp::now())
    });
    invoices::mark_paid(tx, invoice_id, "stripe", paid_at, event.object_str("id"))?;
    Ok(Applied::Applied)
}

fn payment_failed(tx: &WriteTx, event: &Event) -> Result<Applied> {
    let invoice = event.metadata("invoice_id").and_then(|id| id.parse::<InvoiceId>().ok());
    let (Some(invoice_id), Some(intent)) = (invoice, event.object_str("id")) else { return Ok(Applied::Ignored) };
    collect::intent_settled(tx, invoice_id, intent, true)?;
    Ok(Applied::Applied)
}

/// A refund (full or partial) of a charge that paid an invoice: `amount_refunded` is the charge's running
/// total, so a repeated or late event changes nothing.
fn charge_refunded(tx: &WriteTx, event: &Event) -> Result<Applied> {
    let invoice = match event.object_str("payment_intent") {
        Some(intent) => invoices::by_payment_intent(tx, intent)?,
        None => None,
    };
    let invoice = invoice.or_else(|| event.metadata("invoice_id").and_then(|id| id.parse::<InvoiceId>().ok()));
    let (Some(invoice_id), Some(refunded)) = (invoice, event.object_i64("amount_refunded")) else {
        return Ok(Applied::Ignored);
    };
    match invoices::get(tx, invoice_id)? {
        Some(i) if i.status == InvoiceStatus::Paid => {
            refunds::refunded_at_stripe(tx, &i, refunded, Timestamp::now())?;
            Ok(Applied::Applied)
        }
        _ => {
            tracing::warn!(invoice = %invoice_id, "refund of an invoice the portal does not hold as paid; ignored");
            Ok(Applied::Ignored)
        }
    }
}

fn setup_succeeded(tx: &WriteTx, event: &Event) -> Result<Applied> {
    let (Some(customer), Some(method)) = (event.object_str("customer"), event.object_str("payment_method")) else {
        return Ok(Applied::Ignored);
    };
    let Some(id) = portal_customers::service::by_stripe_customer_id(tx, customer)? else {
        return Ok(Applied::Ignored);
    };
    let (key, keep) = portal_stripe::KEEP_DEFAULT;
    if event.metadata(key) == Some(keep) {
        // A card given for one payment on the pay page, not to be charged again.
        return Ok(Applied::Ignored);
    }
    portal_customers::service::set_default_payment_method(tx, id, method)?;
    Ok(Applied::Applied)
}
