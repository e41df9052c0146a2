//! Refunds of paid invoices, each documented by a credit note. A refund through Stripe is reserved in the
//! store before Stripe is called, so concurrent refunds never return more than was paid; Stripe is called
//! outside any transaction with the refund's own idempotency key; the refund is then completed in one
//! transaction with its credit note and the invoice's refunded amount. A refund whose answer was lost (a
//! timeout, a restart) stays reserved and a job repeats it under the same key, which Stripe answers with
//! the first result. A manually paid invoice's refund is recorded and completed at once. A refund started
//! in Stripe's dashboard arrives as `charge.refunded` and gets its credit note too, once.

use std::time::Duration;

use portal_core::idempotency::Claim;
use portal_core::money::{parse_minor, to_major};
use portal_core::table::{key, key_tail};
use portal_core::WriteTx;
use portal_core::{Context, Error, ErrorCode, Job, Principal, ReadTx, Result, Store, Timestamp};
use portal_stripe::{RefundRequest, Stripe};

use crate::model::{CreditNote, Invoice, InvoiceId, InvoiceStatus, Refund, RefundChannel, RefundId, RefundOrigin};
use crate::tables::{PENDING_REFUNDS, REFUNDS};
use crate::views::RefundView;
use crate::{collect, credit_notes, invoices};

/// A reserved refund older than this whose Stripe call has not been answered is repeated by the job (past
/// any request still waiting for Stripe, whose calls time out sooner).
pub const RETRY_AFTER_SECS: i64 = 360;

/// What an admin asked for: an amount in the invoice's currency (none: all that is left) and why.
#[derive(Debug, Clone)]
pub struct RefundOrder {
    pub amount: Option<f64>,
    pub reason: String,
}

/// A refund reserved in the store.
enum Reserved {
    /// Recorded and done (a manually paid invoice).
    Done(Box<(CreditNote, Invoice)>),
    /// To be made at Stripe, of this PaymentIntent's charge.
    AtStripe(Refund, String),
}

/// Refunds (part of) a paid invoice; answers the refund's credit note and the invoice after it. A Stripe
/// call whose outcome is unknown → 503 with the refund kept reserved (the job completes it). The answer is
/// recorded under `claim` (an `Idempotency-Key`) in the transaction that completes the refund.
pub async fn refund(
    store: &Store,
    stripe: Option<&Stripe>,
    caller: &Principal,
    id: InvoiceId,
    order: RefundOrder,
    claim: &Claim,
) -> Result<(CreditNote, Invoice)> {
    let (caller, can_call_stripe, ticket) = (caller.clone(), stripe.is_some(), claim.clone());
    let reserved =
        store.write(move |tx| reserve(tx, &caller, id, &order, can_call_stripe, &ticket, Timestamp::now())).await?;
    match (reserved, stripe) {
        (Reserved::Done(done), _) => Ok(*done),
        (Reserved::AtStripe(refund, payment_intent), Some(stripe)) => {
            at_stripe(store, stripe, refund, &payment_intent, claim).await
        }
        (Reserved::AtStripe(..), None) => Err(portal_stripe::not_configured()),
    }
}

fn reserve(
    tx: &WriteTx,
    caller: &Principal,
    id: InvoiceId,
    order: &RefundOrder,
    can_call_stripe: bool,
    claim: &Claim,
    now: Timestamp,
) -> Result<Reserved> {
    let (invoice, _) = invoices::visible(tx, caller, id)?;
    if invoice.status != InvoiceStatus::Paid {
        return Err(Error::conflict(format!(
            "only a paid invoice can be refunded; this one is {}",
            invoices::word(invoice.status)
        )));
    }
    let left = invoice.total_amount - invoice.refunded_amount - pending_amount(tx, id)?;
    if left <= 0 {
        return Err(Error::conflict("nothing is left to refund on this invoice")
            .with_detail("refunded_amount", to_major(invoice.refunded_amount, invoice.currency)));
    }
    let amount = match order.amount {
        None => left,
        Some(major) => parse_minor(major, invoice.currency).map_err(|e| Error::invalid("amount", e))?,
    };
    if amount <= 0 {
        return Err(Error::invalid("amount", "must be more than zero"));
    }
    if amount > left {
        let most = to_major(left, invoice.currency);
        return Err(Error::invalid("amount", format!("at most {most} {} is left to refund", invoice.currency)));
    }
    let payment_intent =
        invoice.stripe_payment_intent_id.clone().filter(|_| invoice.payment_method.as_deref() == Some("stripe"));
    let channel = if payment_intent.is_some() { RefundChannel::Stripe } else { RefundChannel::Manual };
    if channel == RefundChannel::Stripe && !can_call_stripe {
        return Err(portal_stripe::not_configured());
    }
    let refund = Refund {
        id: RefundId::generate(),
        invoice_id: id,
        customer_id: invoice.customer_id,
        amount,
        reason: order.reason.clone(),
        channel,
        origin: RefundOrigin::Portal,
        stripe_refund_id: None,
        credit_note_id: None,
        created_at: now,
    };
    REFUNDS.insert(tx, &refund.id.to_key(), &refund)?;
    match payment_intent {
        None => Ok(Reserved::Done(Box::new(complete(tx, refund.id, None, claim, now)?))),
        Some(payment_intent) => {
            PENDING_REFUNDS.put(tx, &key(&[&id.to_key(), &refund.id.to_key()]), &[])?;
            Ok(Reserved::AtStripe(refund, payment_intent))
        }
    }
}

/// Makes a reserved refund at Stripe and records the answer: done (with its credit note), or, when Stripe
/// refused it, released.
async fn at_stripe(
    store: &Store,
    stripe: &Stripe,
    refund: Refund,
    payment_intent: &str,
    claim: &Claim,
) -> Result<(CreditNote, Invoice)> {
    let request = RefundRequest {
        payment_intent,
        amount: refund.amount,
        invoice_id: refund.invoice_id.to_string(),
        refund_id: refund.id.to_string(),
        idempotency_key: format!("portal-refund-{}", refund.id),
    };
    let id = refund.id;
    match stripe.refund(request).await {
        Ok(made) if matches!(made.status.as_str(), "failed" | "canceled") => {
            store.write(move |tx| release(tx, id)).await?;
            Err(Error::new(ErrorCode::Conflict, format!("Stripe did not make the refund (it is {})", made.status)))
        }
        Ok(made) => {
            let claim = claim.clone();
            store.write(move |tx| complete(tx, id, Some(made.id.clone()), &claim, Timestamp::now())).await
        }
        Err(e) if e.code() == ErrorCode::ValidationFailed => {
            store.write(move |tx| release(tx, id)).await?;
            Err(e)
        }
        Err(e) => Err(Error::upstream(
            "Stripe did not confirm the refund; it is kept and completed automatically once Stripe answers",
            e,
        )
        .with_detail("refund_id", id.to_string())),
    }
}

/// Completes a refund: its credit note, the invoice's refunded amount. Done refunds answer as they are.
fn complete(
    tx: &WriteTx,
    id: RefundId,
    stripe_refund_id: Option<String>,
    claim: &Claim,
    now: Timestamp,
) -> Result<(CreditNote, Invoice)> {
    let mut refund = REFUNDS.get(tx, &id.to_key())?.ok_or_else(|| Error::not_found("refund"))?;
    let invoice = invoices::get(tx, refund.invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
    if let Some(done) = refund.credit_note_id {
        let note = credit_notes::get(tx, done)?.ok_or_else(|| Error::internal("a refund's credit note is missing"))?;
        return Ok((note, invoice));
    }
    PENDING_REFUNDS.remove(tx, &key(&[&refund.invoice_id.to_key(), &id.to_key()]))?;
    refund.stripe_refund_id = stripe_refund_id.or(refund.stripe_refund_id);
    let note = credit_notes::issue(tx, &refund, &invoice, now)?;
    refund.credit_note_id = Some(note.id);
    REFUNDS.insert(tx, &id.to_key(), &refund)?;
    let invoice = invoices::add_credit_note(tx, &note)?;
    claim.complete(tx, 201, &RefundView::of(&note, &invoice))?;
    Ok((note, invoice))
}

/// Drops a reservation Stripe refused: nothing went back.
fn release(tx: &WriteTx, id: RefundId) -> Result<()> {
    if let Some(refund) = REFUNDS.get(tx, &id.to_key())?.filter(|r| r.credit_note_id.is_none()) {
        PENDING_REFUNDS.remove(tx, &key(&[&refund.invoice_id.to_key(), &id.to_key()]))?;
        REFUNDS.remove(tx, &id.to_key())?;
        tracing::warn!(refund = %id, invoice = %refund.invoice_id, "Stripe refused a refund; its reservation is released");
    }
    Ok(())
}

/// Money reserved for refunds of the invoice that are not done yet.
fn pending_amount(tx: &impl ReadTx, id: InvoiceId) -> Result<i64> {
    let mut sum = 0;
    PENDING_REFUNDS.visit_keys(tx, &id.to_key(), |k| {
        if let Some(refund) = RefundId::from_key(key_tail(k, 16)).map(|r| REFUNDS.get(tx, &r.to_key())).transpose()? {
            sum += refund.map_or(0, |r| r.amount);
        }
        Ok::<_, Error>(true)
    })?;
    Ok(sum)
}

/// Records what Stripe says was refunded of the charge that paid `invoice`, in total (`charge.refunded`'s
/// `amount_refunded`): the part neither recorded nor reserved here was refunded outside the portal and
/// gets its own refund and credit note. Repeated or late events find nothing new.
pub(crate) fn refunded_at_stripe(
    tx: &WriteTx,
    invoice: &Invoice,
    refunded_total: i64,
    now: Timestamp,
) -> Result<Option<CreditNote>> {
    let known = invoice.refunded_amount + pending_amount(tx, invoice.id)?;
    let new = refunded_total.min(invoice.total_amount) - known;
    if new <= 0 {
        return Ok(None);
    }
    let refund = Refund {
        id: RefundId::generate(),
        invoice_id: invoice.id,
        customer_id: invoice.customer_id,
        amount: new,
        reason: "Refunded through Stripe".into(),
        channel: RefundChannel::Stripe,
        origin: RefundOrigin::Stripe,
        stripe_refund_id: None,
        credit_note_id: None,
        created_at: now,
    };
    REFUNDS.insert(tx, &refund.id.to_key(), &refund)?;
    complete(tx, refund.id, None, &Claim::None, now).map(|(note, _)| Some(note))
}

/// Repeats the Stripe call of every refund reserved longer than [`RETRY_AFTER_SECS`] (same key: Stripe
/// makes it at most once). Returns how many were completed.
pub async fn retry_stale(store: &Store, stripe: &Stripe, now: Timestamp) -> Result<usize> {
    let stale = store.read_blocking(|tx| {
        let mut out = Vec::new();
        PENDING_REFUNDS.visit_keys(tx, &[], |k| {
            let refund =
                RefundId::from_key(key_tail(k, 16)).map(|r| REFUNDS.get(tx, &r.to_key())).transpose()?.flatten();
            if let Some(refund) =
                refund.filter(|r| now.micros() - r.created_at.micros() >= RETRY_AFTER_SECS * 1_000_000)
            {
                out.push(refund);
            }
            Ok::<_, Error>(true)
        })?;
        let mut with_intent = Vec::new();
        for refund in out {
            if let Some(intent) = invoices::get(tx, refund.invoice_id)?.and_then(|i| i.stripe_payment_intent_id) {
                with_intent.push((refund, intent));
            }
        }
        Ok::<_, Error>(with_intent)
    })?;
    let mut completed = 0;
    for (refund, intent) in stale {
        let id = refund.id;
        match at_stripe(store, stripe, refund, &intent, &Claim::None).await {
            Ok(_) => completed += 1,
            Err(e) => tracing::warn!(refund = %id, error = %e, "a reserved refund is still not confirmed by Stripe"),
        }
    }
    Ok(completed)
}

/// Every minute: reserved refunds whose Stripe answer was lost.
pub(crate) fn retry_job() -> Job {
    Job::new("refund-retry", Duration::from_secs(60), |ctx: Context| async move {
        let Some(stripe) = collect::client(&ctx)?.as_ref().clone() else { return Ok(()) };
        let done = retry_stale(&ctx.store, &stripe, Timestamp::now()).await?;
        if done > 0 {
            tracing::info!(done, "reserved refunds completed");
        }
        Ok(())
    })
}
