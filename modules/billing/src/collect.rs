//! Collecting invoices through Stripe, exactly once. An attempt is reserved in the store before Stripe is
//! called (a second payer of the same invoice meets 409 instead of a second charge), Stripe is called
//! outside any store transaction, and the outcome is written in one transaction: the invoice becomes paid
//! with its payment record, or the decline is counted. Each attempt has its own Stripe idempotency key, so
//! an attempt cut short by a timeout or a crash is repeated under the same key and Stripe answers it with
//! the first result instead of charging again. A job charges the invoices of customers with automatic
//! charging on, with retries after declines.

use std::sync::Arc;
use std::time::Duration;

use portal_core::idempotency::Claim;
use portal_core::WriteTx;
use portal_core::{Context, Currency, Error, ErrorCode, Job, ReadTx, Result, Store, Timestamp};
use portal_customers::{system_scope, CustomerScope};
use portal_stripe::{ChargeOutcome, ChargeRequest, Stripe, StripeConfig};

use crate::invoices;
use crate::model::{Collection, Invoice, InvoiceId, InvoiceStatus, STALE_ATTEMPT_SECS};
use crate::tables::COLLECTIONS;
use crate::unmatched::{self, Received};
use crate::views::PaymentView;

/// Automatic retries after the first declined automatic charge, in days from that decline.
pub const AUTO_RETRY_DAYS: [i64; 3] = [1, 3, 7];

/// Who asked for the charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A user through `POST /billing/pay-invoice`.
    Payer,
    /// The customer on the pay page, who can pass 3-D Secure if the bank asks for it.
    Page,
    /// The auto-charge job.
    Auto,
}

/// An attempt reserved in the store.
struct Reservation {
    attempt: u32,
    amount: i64,
    currency: Currency,
    stripe_customer: String,
    payment_method: String,
}

/// The Stripe customer of a portal customer, created on first use. Creation carries an idempotency key
/// (the portal customer's id), so concurrent first payments never make two, also on different portals
/// sharing a PostgreSQL database; the lock in this process only spares Stripe the repeated calls.
pub async fn stripe_customer(store: &Store, stripe: &Stripe, scope: &CustomerScope) -> Result<String> {
    static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let id = scope.id();
    let read = || store.read_blocking(|tx| Ok(portal_customers::service::record(tx, scope)?.customer));
    if let Some(existing) = read()?.stripe_customer_id {
        return Ok(existing);
    }
    let _creating = CREATING.lock().await;
    let customer = read()?;
    if let Some(existing) = customer.stripe_customer_id {
        return Ok(existing);
    }
    let created = stripe.create_customer(&id.to_string(), &customer.name, &customer.billing_email).await?;
    let stored = created.clone();
    store.write(move |tx| portal_customers::service::set_stripe_customer_id(tx, id, &stored)).await?;
    tracing::info!(customer = %id, stripe_customer = %created, "Stripe customer created");
    Ok(created)
}

/// Charges an issued invoice with `payment_method` or the customer's default card at `now` (the job's
/// clock; the time the payment and any decline are recorded with). A paid invoice is
/// recorded (and `claim` completed) in the same transaction; a decline → 402 `payment_failed` with
/// Stripe's codes in `details`, the invoice unchanged.
pub async fn pay(
    store: &Store,
    stripe: &Stripe,
    invoice_id: InvoiceId,
    payment_method: Option<String>,
    trigger: Trigger,
    claim: &Claim,
    now: Timestamp,
) -> Result<PaymentView> {
    let scope = store.read_blocking(|tx| match invoices::get(tx, invoice_id)? {
        Some(invoice) => system_scope(tx, invoice.customer_id).map_err(|_| Error::not_found("invoice")),
        None => Err(Error::not_found("invoice")),
    })?;
    let stripe_customer = stripe_customer(store, stripe, &scope).await?;
    let reservation =
        store.write(move |tx| reserve(tx, invoice_id, stripe_customer.clone(), payment_method.clone(), now)).await?;
    let request = ChargeRequest {
        amount: reservation.amount,
        currency: reservation.currency.as_str(),
        customer: &reservation.stripe_customer,
        payment_method: &reservation.payment_method,
        invoice_id: invoice_id.to_string(),
        idempotency_key: format!("portal-invoice-{invoice_id}-attempt-{}", reservation.attempt),
        customer_present: trigger == Trigger::Page,
    };
    let outcome = stripe.charge(request).await;
    let claim = claim.clone();
    store.write(move |tx| settle(tx, invoice_id, outcome.clone(), trigger, &claim, now)).await?
}

fn reserve(
    tx: &WriteTx,
    id: InvoiceId,
    stripe_customer: String,
    payment_method: Option<String>,
    now: Timestamp,
) -> Result<Reservation> {
    let invoice = invoices::get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
    match invoice.status {
        InvoiceStatus::Pending | InvoiceStatus::Overdue => {}
        InvoiceStatus::Draft => return Err(Error::conflict("a draft invoice is not issued yet and cannot be paid")),
        InvoiceStatus::Paid => return Err(Error::conflict("the invoice is already paid")),
        InvoiceStatus::Cancelled => return Err(Error::conflict("a cancelled invoice cannot be paid")),
    }
    if invoice.total_amount <= 0 {
        return Err(Error::conflict("the invoice has nothing to pay"));
    }
    let payment_method = match payment_method {
        Some(pm) => pm,
        None => portal_customers::service::billing(tx, &system_scope(tx, invoice.customer_id)?)?
            .stripe_payment_method_id
            .ok_or_else(|| {
                Error::invalid("payment_method_id", "the customer has no saved card: save one first or name one")
            })?,
    };
    let mut state = COLLECTIONS.get(tx, &id.to_key())?.unwrap_or_default();
    if let Some(intent) = &state.processing_intent {
        return Err(Error::conflict("a payment of this invoice is processing at Stripe")
            .with_detail("payment_intent_id", intent.clone()));
    }
    if state.in_flight_since.is_some_and(|since| now.micros() - since.micros() < STALE_ATTEMPT_SECS * 1_000_000) {
        return Err(Error::conflict("a payment of this invoice is in progress"));
    }
    state.in_flight_since = Some(now);
    COLLECTIONS.insert(tx, &id.to_key(), &state)?;
    Ok(Reservation {
        attempt: state.attempts + 1,
        amount: invoice.total_amount,
        currency: invoice.currency,
        stripe_customer,
        payment_method,
    })
}

fn settle(
    tx: &WriteTx,
    id: InvoiceId,
    outcome: Result<ChargeOutcome>,
    trigger: Trigger,
    claim: &Claim,
    now: Timestamp,
) -> Result<Result<PaymentView>> {
    let mut state = COLLECTIONS.get(tx, &id.to_key())?.unwrap_or_default();
    state.in_flight_since = None;
    let answer = match outcome {
        // Not charged as far as we know: the same attempt (same key) runs again next time.
        Err(e) => Err(e),
        Ok(ChargeOutcome::Succeeded { payment_intent_id, amount, currency, customer }) => {
            let received = Received {
                payment_intent_id: payment_intent_id.clone(),
                amount,
                currency,
                stripe_customer_id: customer,
            };
            COLLECTIONS.remove(tx, &id.to_key())?;
            let invoice = match paid(tx, id, &received, now)? {
                Ok(invoice) => invoice,
                Err(unmatched) => return Ok(Err(unmatched)),
            };
            let view = PaymentView::new(&invoice, payment_intent_id, "succeeded".into(), now);
            claim.complete(tx, 200, &view)?;
            return Ok(Ok(view));
        }
        Ok(ChargeOutcome::Pending { payment_intent_id, status }) => {
            state.processing_intent = Some(payment_intent_id.clone());
            let invoice = invoices::get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
            let view = PaymentView::new(&invoice, payment_intent_id, status, now);
            claim.complete(tx, 200, &view)?;
            Ok(view)
        }
        Ok(ChargeOutcome::Declined { code, decline_code, message }) => {
            state.attempts += 1;
            // A payment that was processing (3-D Secure) and failed ends here too.
            state.processing_intent = None;
            state.last_decline = Some(decline_code.clone().or_else(|| code.clone()).unwrap_or_default());
            let customer = invoices::get(tx, id)?.map(|i| i.customer_id);
            portal_core::audit::record(tx, "billing", "payment_declined", id, customer)?;
            if trigger == Trigger::Auto {
                declined_automatically(tx, id, &mut state, now)?;
            }
            payment_failed(tx, id, code.as_deref(), decline_code.as_deref(), &message)?;
            let mut error = Error::new(ErrorCode::PaymentFailed, format!("the payment was declined: {message}"))
                .with_detail("invoice_id", id.to_string());
            if let Some(code) = code {
                error = error.with_detail("code", code);
            }
            if let Some(decline_code) = decline_code {
                error = error.with_detail("decline_code", decline_code);
            }
            Err(error)
        }
    };
    COLLECTIONS.insert(tx, &id.to_key(), &state)?;
    Ok(answer)
}

/// Reads the invoice's processing PaymentIntent from Stripe and records its outcome, as its webhook would:
/// the pay page asks once the customer has passed (or failed) 3-D Secure. If the webhook got there first,
/// the invoice's state answers.
pub async fn refresh(store: &Store, stripe: &Stripe, invoice_id: InvoiceId, now: Timestamp) -> Result<PaymentView> {
    let (invoice, state) = store.read_blocking(|tx| {
        let invoice = invoices::get(tx, invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
        Ok((invoice, collection(tx, invoice_id)?))
    })?;
    let Some(intent_id) = state.processing_intent else { return recorded(&invoice, now) };
    let intent = stripe.payment_intent(&intent_id).await?;
    let outcome = intent.outcome(invoice.total_amount, invoice.currency.as_str());
    store
        .write(move |tx| {
            if collection(tx, invoice_id)?.processing_intent.as_deref() != Some(intent_id.as_str()) {
                let invoice = invoices::get(tx, invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
                return Ok(recorded(&invoice, now));
            }
            settle(tx, invoice_id, Ok(outcome.clone()), Trigger::Page, &Claim::None, now)
        })
        .await?
}

/// Records the outcome of an attempt whose answer was lost, as Stripe holds its PaymentIntent
/// (reconciliation).
pub(crate) async fn settle_found(store: &Store, id: InvoiceId, outcome: ChargeOutcome, now: Timestamp) -> Result<()> {
    store
        .write(move |tx| settle(tx, id, Ok(outcome.clone()), Trigger::Payer, &Claim::None, now))
        .await?
        .map(drop)
        .or_else(|e| match e.code() {
            // A decline or a mismatch is recorded by `settle`; the caller learns nothing more from it.
            ErrorCode::PaymentFailed | ErrorCode::Conflict => Ok(()),
            _ => Err(e),
        })
}

/// Frees an attempt that has been in flight past its time and that Stripe never made: the next payment
/// runs it again under the same key.
pub(crate) fn release_stale(tx: &WriteTx, id: InvoiceId, now: Timestamp) -> Result<()> {
    let Some(mut state) = COLLECTIONS.get(tx, &id.to_key())? else { return Ok(()) };
    if state.in_flight_since.is_some_and(|since| now.micros() - since.micros() >= STALE_ATTEMPT_SECS * 1_000_000) {
        state.in_flight_since = None;
        COLLECTIONS.insert(tx, &id.to_key(), &state)?;
    }
    Ok(())
}

/// What the store holds about an invoice's payment when no payment of it is processing.
fn recorded(invoice: &Invoice, now: Timestamp) -> Result<PaymentView> {
    match (&invoice.status, &invoice.stripe_payment_intent_id) {
        (InvoiceStatus::Paid, Some(intent)) => Ok(PaymentView::new(invoice, intent.clone(), "succeeded".into(), now)),
        (InvoiceStatus::Paid, None) => Err(Error::conflict("the invoice is already paid")),
        _ => Err(Error::new(ErrorCode::PaymentFailed, "the payment was not completed")
            .with_detail("invoice_id", invoice.id.to_string())),
    }
}

/// Records a succeeded charge: the invoice becomes paid (unless its webhook got there first), or, when the
/// charge does not match it, the charge is kept as an unmatched payment and the payer told so (409).
fn paid(tx: &WriteTx, id: InvoiceId, received: &Received, now: Timestamp) -> Result<Result<Invoice>> {
    let invoice = invoices::get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
    if let Some(reason) = unmatched::mismatch(tx, &invoice, received)? {
        let kept = unmatched::record(tx, &invoice, received, reason.clone())?;
        return Ok(Err(Error::conflict(format!(
            "the charge did not pay the invoice ({reason}); it is kept for an admin to reconcile"
        ))
        .with_detail("payment_intent_id", kept.payment_intent_id)
        .with_detail("unmatched_payment_id", kept.id.to_string())));
    }
    if invoice.status == InvoiceStatus::Paid {
        return Ok(Ok(invoice));
    }
    invoices::mark_paid(tx, id, "stripe", now, Some(&received.payment_intent_id)).map(Ok)
}

/// Tells the webhook endpoints that a payment of the invoice failed, and why.
fn payment_failed(
    tx: &WriteTx,
    id: InvoiceId,
    code: Option<&str>,
    decline_code: Option<&str>,
    message: &str,
) -> Result<()> {
    let Some(invoice) = invoices::get(tx, id)? else { return Ok(()) };
    let data = || {
        serde_json::json!({
            "invoice_id": id.to_string(),
            "invoice_number": invoice.number,
            "customer_id": invoice.customer_id.to_string(),
            "amount": portal_core::money::to_major(invoice.total_amount, invoice.currency),
            "currency": invoice.currency.as_str(),
            "code": code,
            "decline_code": decline_code,
            "message": message,
        })
    };
    portal_webhooks::emit(tx, portal_webhooks::EventKind::PaymentFailed, data)
}

/// Counts an automatic decline; when the retries have run out the invoice is recorded as overdue.
fn declined_automatically(tx: &WriteTx, id: InvoiceId, state: &mut Collection, now: Timestamp) -> Result<()> {
    state.auto_attempts += 1;
    state.first_auto_decline.get_or_insert(now);
    if state.auto_attempts as usize > AUTO_RETRY_DAYS.len() {
        invoices::mark_overdue_now(tx, id, now)?;
    }
    Ok(())
}

/// Whether the auto-charge job charges the invoice at `now`: once, then again 1, 3 and 7 days after the
/// first decline.
pub fn auto_charge_due(state: &Collection, now: Timestamp) -> bool {
    if state.in_flight_since.is_some() || state.processing_intent.is_some() {
        return false;
    }
    match (state.auto_attempts, state.first_auto_decline) {
        (0, _) => true,
        (n, Some(first)) => AUTO_RETRY_DAYS
            .get(n as usize - 1)
            .is_some_and(|days| now.micros() >= first.micros() + days * 86_400 * 1_000_000),
        (_, None) => false,
    }
}

/// Clears a processing PaymentIntent once its outcome arrives by webhook (`failed`: it counts as a
/// declined attempt).
pub(crate) fn intent_settled(tx: &WriteTx, id: InvoiceId, payment_intent: &str, failed: bool) -> Result<()> {
    let Some(mut state) = COLLECTIONS.get(tx, &id.to_key())? else { return Ok(()) };
    if state.processing_intent.as_deref() != Some(payment_intent) {
        return Ok(());
    }
    state.processing_intent = None;
    if failed {
        state.attempts += 1;
        payment_failed(tx, id, None, None, "the payment failed at Stripe")?;
    }
    Ok(COLLECTIONS.insert(tx, &id.to_key(), &state)?)
}

/// The collection state of an invoice (the auto-charge job's schedule).
pub fn collection(tx: &impl portal_core::ReadTx, id: InvoiceId) -> Result<Collection> {
    Ok(COLLECTIONS.get(tx, &id.to_key())?.unwrap_or_default())
}

/// The shared Stripe client (none without `STRIPE_SECRET_KEY`).
pub fn client(ctx: &Context) -> Result<Arc<Option<Stripe>>> {
    ctx.services.get_or_try_init(|| Stripe::from_config(&*ctx.settings::<StripeConfig>()?))
}

/// What one auto-charge run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AutoChargeRun {
    pub paid: usize,
    pub declined: usize,
    pub failed: usize,
}

/// Charges the open invoices of customers with `auto_charge` and a default card: each invoice once, then
/// again 1, 3 and 7 days after its first decline; after the last decline it is recorded as overdue.
/// Safe to run any time (charges of one invoice never overlap, and a paid invoice is never charged).
pub async fn run_auto_charge(store: &portal_core::Store, stripe: &Stripe, now: Timestamp) -> Result<AutoChargeRun> {
    let due = store.read(move |tx| invoices_due_for_auto_charge(tx, now)).await?;
    let mut run = AutoChargeRun::default();
    for invoice in due {
        let claim = portal_core::idempotency::Claim::None;
        match pay(store, stripe, invoice, None, Trigger::Auto, &claim, now).await {
            Ok(_) => run.paid += 1,
            Err(e) if e.code() == portal_core::ErrorCode::PaymentFailed => {
                run.declined += 1;
                tracing::info!(invoice = %invoice, "automatic charge declined");
            }
            Err(e) => {
                run.failed += 1;
                tracing::warn!(invoice = %invoice, error = %e, "automatic charge not made");
            }
        }
    }
    Ok(run)
}

/// The open invoices the auto-charge job should charge at `now`.
fn invoices_due_for_auto_charge(tx: &impl ReadTx, now: Timestamp) -> Result<Vec<InvoiceId>> {
    let mut customers = Vec::new();
    portal_customers::service::visit_listed(tx, |id| {
        customers.push(id);
        Ok(true)
    })?;
    let mut due = Vec::new();
    for customer in customers {
        let scope = system_scope(tx, customer)?;
        let billing = portal_customers::service::billing(tx, &scope)?;
        if !billing.auto_charge || billing.stripe_payment_method_id.is_none() {
            continue;
        }
        for status in [InvoiceStatus::Pending, InvoiceStatus::Overdue] {
            for invoice in invoices::list(tx, &scope, Some(status), None, usize::MAX)? {
                if invoice.status.is_outstanding() && auto_charge_due(&collection(tx, invoice.id)?, now) {
                    due.push(invoice.id);
                }
            }
        }
    }
    Ok(due)
}

/// The job that charges invoices automatically (nothing without a Stripe key).
pub(crate) fn auto_charge_job() -> Job {
    Job::new("auto-charge", Duration::from_secs(900), |ctx: Context| async move {
        let Some(stripe) = client(&ctx)?.as_ref().clone() else { return Ok(()) };
        run_auto_charge(&ctx.store, &stripe, Timestamp::now()).await.map(|_| ())
    })
}
