//! Reconciliation with Stripe, on start and every hour, for what the webhook did not bring (the portal was
//! down, the network failed, a deploy went wrong): the events since the last run are listed from Stripe
//! and applied through the webhook's own exactly-once path, and payments left in flight are settled from
//! their PaymentIntents. Stripe keeps events for 30 days; what a portal down longer missed is not listed
//! any more (its stuck payments are still settled from their PaymentIntents).

use std::time::Duration;

use portal_core::table::key_tail;
use portal_core::WriteTx;
use portal_core::{Context, Error, Job, Result, Store, Timestamp};
use portal_stripe::{ChargeOutcome, Stripe};

use crate::model::{Collection, InvoiceId, STALE_ATTEMPT_SECS};
use crate::tables::{COLLECTIONS, STRIPE_SYNC};
use crate::webhooks::{self, Applied};
use crate::{collect, invoices, refunds};

/// How far back the first run looks, when the portal has never reconciled.
const FIRST_LOOK_BACK_SECS: i64 = 24 * 3600;
/// Events are listed from this long before the newest one applied: Stripe may record an event a little
/// after its `created` time, and applying one twice does nothing.
const OVERLAP_SECS: i64 = 300;
/// Events one run applies at most; the next run goes on from there.
const MAX_EVENTS: usize = 10_000;
const CURSOR: &[u8] = b"events";

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Events the webhook had not brought, applied now.
    pub events_applied: usize,
    /// Payments in flight or processing, settled from their PaymentIntents.
    pub payments_settled: usize,
    /// Reserved refunds completed.
    pub refunds_completed: usize,
}

pub async fn run(store: &Store, stripe: &Stripe, now: Timestamp) -> Result<Reconciled> {
    let mut done = Reconciled::default();
    let since = store.read_blocking(cursor)?.unwrap_or(now.unix_secs() - FIRST_LOOK_BACK_SECS);
    let events = stripe.events_since(since - OVERLAP_SECS, MAX_EVENTS).await?;
    let newest = events.iter().filter_map(|e| e.created).max();
    for event in events {
        let applied = store.write(move |tx| webhooks::apply(tx, &event)).await?;
        done.events_applied += usize::from(applied == Applied::Applied);
    }
    if let Some(newest) = newest {
        store.write(move |tx| set_cursor(tx, newest.max(since))).await?;
    }
    for (id, state) in store.read_blocking(|tx| stuck(tx, now))? {
        match settle_stuck(store, stripe, id, &state, now).await {
            Ok(true) => done.payments_settled += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(invoice = %id, error = %e, "a payment in flight could not be settled from Stripe"),
        }
    }
    done.refunds_completed = refunds::retry_stale(store, stripe, now).await?;
    Ok(done)
}

/// Collections whose attempt has been in flight past its time, or whose PaymentIntent is processing.
fn stuck(tx: &impl portal_core::ReadTx, now: Timestamp) -> Result<Vec<(InvoiceId, Collection)>> {
    let mut out = Vec::new();
    COLLECTIONS.scan_prefix(tx, &[], |k, state| {
        let stale =
            state.in_flight_since.is_some_and(|since| now.micros() - since.micros() >= STALE_ATTEMPT_SECS * 1_000_000);
        if stale || state.processing_intent.is_some() {
            if let Some(id) = InvoiceId::from_key(key_tail(k, 16)) {
                out.push((id, state));
            }
        }
        Ok::<_, Error>(true)
    })?;
    Ok(out)
}

/// Settles one stuck payment from Stripe; whether its invoice's state changed.
async fn settle_stuck(
    store: &Store,
    stripe: &Stripe,
    id: InvoiceId,
    state: &Collection,
    now: Timestamp,
) -> Result<bool> {
    if state.processing_intent.is_some() {
        let before = store.read_blocking(|tx| invoices::get(tx, id))?.map(|i| i.status);
        let after = match collect::refresh(store, stripe, id, now).await {
            Ok(view) => Some(view.invoice.status),
            Err(e) if e.code() == portal_core::ErrorCode::PaymentFailed => None,
            Err(e) => return Err(e),
        };
        return Ok(after.is_none() || after != before);
    }
    // An attempt whose answer was lost: find its PaymentIntent among the customer's.
    let (invoice, stripe_customer) = store.read_blocking(|tx| {
        let invoice = invoices::get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
        let customer = portal_customers::service::get(tx, invoice.customer_id)?.and_then(|c| c.stripe_customer_id);
        Ok::<_, Error>((invoice, customer))
    })?;
    let Some(stripe_customer) = stripe_customer else { return Ok(false) };
    let intents = stripe.payment_intents_of(&stripe_customer).await?;
    let attempt = intents
        .iter()
        .filter(|pi| pi.metadata.get("invoice_id").map(String::as_str) == Some(id.to_string().as_str()))
        .max_by_key(|pi| pi.created);
    let outcome = match attempt {
        Some(pi) => pi.outcome(invoice.total_amount, invoice.currency.as_str()),
        // Stripe never made it: the same attempt (same key) runs again next time.
        None => return store.write(move |tx| collect::release_stale(tx, id, now)).await.map(|()| false),
    };
    let paid = matches!(outcome, ChargeOutcome::Succeeded { .. });
    collect::settle_found(store, id, outcome, now).await?;
    Ok(paid)
}

fn cursor(tx: &impl portal_core::ReadTx) -> Result<Option<i64>> {
    Ok(STRIPE_SYNC.get(tx, CURSOR)?.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(i64::from_be_bytes))
}

/// Moves the cursor forward to `created` (never back: another run may have gone further meanwhile).
fn set_cursor(tx: &WriteTx, created: i64) -> Result<()> {
    if cursor(tx)?.is_some_and(|at| at >= created) {
        return Ok(());
    }
    Ok(STRIPE_SYNC.put(tx, CURSOR, &created.to_be_bytes())?)
}

/// On start, then every hour.
pub(crate) fn job() -> Job {
    Job::new("stripe-reconcile", Duration::from_secs(3600), |ctx: Context| async move {
        let Some(stripe) = collect::client(&ctx)?.as_ref().clone() else { return Ok(()) };
        let done = run(&ctx.store, &stripe, Timestamp::now()).await?;
        if done != Reconciled::default() {
            tracing::info!(?done, "reconciled with Stripe");
        }
        Ok(())
    })
}
