//! Paid means paid in full: a successful Stripe payment pays its invoice only when it is exactly the
//! invoice's total, in its currency, by its customer's Stripe customer, and the invoice is still open.
//! Any other success (a wrong amount, a foreign customer, a second payment) is kept as an unmatched
//! payment with an audit entry, for an admin to reconcile, and the invoice stays as it was.

use portal_core::table::Page;
use portal_core::WriteTx;
use portal_core::{ReadTx, Result, Timestamp};

use crate::model::{Invoice, InvoiceStatus, UnmatchedPayment, UnmatchedPaymentId};
use crate::tables::UNMATCHED_PAYMENTS;

/// A successful payment as Stripe reported it (its PaymentIntent).
#[derive(Debug, Clone)]
pub struct Received {
    pub payment_intent_id: String,
    /// In the currency's smallest unit.
    pub amount: i64,
    /// ISO 4217, any case.
    pub currency: String,
    pub stripe_customer_id: Option<String>,
}

/// Why `received` does not pay `invoice`, if it does not. A payment that already paid the invoice (the same
/// PaymentIntent reported twice) is no mismatch.
pub fn mismatch(tx: &impl ReadTx, invoice: &Invoice, received: &Received) -> Result<Option<String>> {
    if invoice.stripe_payment_intent_id.as_deref() == Some(received.payment_intent_id.as_str()) {
        return Ok(None);
    }
    if !invoice.status.is_open() {
        let state = if invoice.status == InvoiceStatus::Paid { "already paid" } else { "cancelled" };
        return Ok(Some(format!("the invoice is {state}")));
    }
    let currency = received.currency.to_ascii_uppercase();
    if currency != invoice.currency.as_str() {
        return Ok(Some(format!("paid in {currency}, the invoice is in {}", invoice.currency.as_str())));
    }
    if received.amount != invoice.total_amount {
        return Ok(Some(format!(
            "paid {} minor units, the invoice's total is {}",
            received.amount, invoice.total_amount
        )));
    }
    let expected = portal_customers::service::get(tx, invoice.customer_id)?.and_then(|c| c.stripe_customer_id);
    match (&received.stripe_customer_id, &expected) {
        (Some(got), Some(want)) if got == want => Ok(None),
        (got, _) => Ok(Some(format!(
            "paid by Stripe customer {}, not the invoice's customer's",
            got.as_deref().unwrap_or("(none)")
        ))),
    }
}

/// Keeps `received` as an unmatched payment of `invoice`, with an audit entry on the invoice.
pub fn record(tx: &WriteTx, invoice: &Invoice, received: &Received, reason: String) -> Result<UnmatchedPayment> {
    let unmatched = UnmatchedPayment {
        id: UnmatchedPaymentId::generate(),
        invoice_id: invoice.id,
        customer_id: invoice.customer_id,
        payment_intent_id: received.payment_intent_id.clone(),
        amount: received.amount,
        currency: received.currency.to_ascii_uppercase(),
        stripe_customer_id: received.stripe_customer_id.clone(),
        reason,
        received_at: Timestamp::now(),
    };
    UNMATCHED_PAYMENTS.insert(tx, &unmatched.id.to_key(), &unmatched)?;
    portal_core::audit::record(tx, "billing", "payment_unmatched", invoice.id, Some(invoice.customer_id))?;
    tracing::warn!(
        invoice = %invoice.id,
        payment_intent = %unmatched.payment_intent_id,
        reason = %unmatched.reason,
        "a payment did not match its invoice; kept for an admin to reconcile"
    );
    Ok(unmatched)
}

/// Up to `fetch` unmatched payments, newest first, older than `after`.
pub fn list(tx: &impl ReadTx, after: Option<UnmatchedPaymentId>, fetch: usize) -> Result<Vec<UnmatchedPayment>> {
    let after = after.map(|id| id.to_key());
    let page = Page { prefix: &[], after: after.as_ref().map(|k| k.as_slice()), limit: fetch };
    Ok(UNMATCHED_PAYMENTS.page(tx, &page)?.into_iter().map(|(_, p)| p).collect())
}
