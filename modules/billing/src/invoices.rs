//! The invoice store: every write goes through [`save`], which keeps the indexes and the running totals in
//! step inside the caller's transaction; numbering; reads with access checks; state changes.

use std::time::Duration;

use chrono::Datelike;
use portal_core::ids::CustomerId;
use portal_core::money::parse_non_negative_minor;
use portal_core::table::{key, key_from, key_tail};
use portal_core::WriteTx;
use portal_core::{Context, Currency, Error, Job, Principal, ReadTx, Result, Timestamp};
use portal_customers::CustomerScope;
use portal_proposals::model::ProposalId;

use portal_webhooks::EventKind;

use crate::links::{self, LinkKind};
use crate::model::{day_key, CreditNote, CreditNoteRef, Invoice, InvoiceId, InvoiceStatus, Payment, Totals};
use crate::tables::{
    BY_CUSTOMER, BY_CUSTOMER_STATUS, BY_NUMBER, BY_PAYMENT_INTENT, BY_PROPOSAL, COLLECTIONS, DUE, INVOICES, NUMBERS,
    PAID_BY_MONTH, PAYMENTS, PERIODS, TOTALS,
};
use crate::views::InvoiceView;

/// The scope of the portal-wide totals.
pub(crate) const ALL: [u8; 16] = [0; 16];

// ---- reads ----

pub fn get(tx: &impl ReadTx, id: InvoiceId) -> Result<Option<Invoice>> {
    Ok(INVOICES.get(tx, &id.to_key())?)
}

/// Many invoices, in the order of `ids` (one read).
pub fn get_many(tx: &impl ReadTx, ids: &[InvoiceId]) -> Result<Vec<Option<Invoice>>> {
    let keys: Vec<_> = ids.iter().map(|id| id.to_key()).collect();
    Ok(INVOICES.get_many(tx, &keys.iter().map(|k| k.as_slice()).collect::<Vec<_>>())?)
}

/// Visits every invoice (migrations).
pub(crate) fn scan_all(tx: &impl ReadTx, mut visit: impl FnMut(Invoice)) -> Result<()> {
    INVOICES.scan_prefix(tx, &[], |_, invoice| {
        visit(invoice);
        Ok::<_, Error>(true)
    })
}

/// An invoice the caller may see (admin, or a user of its customer, which must not be archived), with
/// the caller's scope on that customer.
pub fn visible(tx: &impl ReadTx, caller: &Principal, id: InvoiceId) -> Result<(Invoice, CustomerScope)> {
    portal_customers::expect_scope_of(tx, caller);
    let invoice = get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
    let scope = portal_customers::scope_of(tx, caller, invoice.customer_id, "invoice")?;
    Ok((invoice, scope))
}

/// Up to `fetch` of a customer's invoices, newest first, older than `after`; `status` filters on the
/// status as of now (a pending invoice past due counts as overdue).
///
/// The customer comes as a scope, so a handler that skipped the access check does not compile:
///
/// ```compile_fail
/// use portal_core::ids::CustomerId;
///
/// fn handler(tx: &portal_core::redb::ReadTransaction, id: CustomerId) {
///     let _ = portal_billing::invoices::list(tx, id, None, None, 50);
/// }
/// ```
///
/// ```
/// use portal_core::ids::CustomerId;
/// use portal_core::{Principal, Result};
///
/// fn handler(tx: &portal_core::redb::ReadTransaction, caller: &Principal, id: CustomerId) -> Result<()> {
///     let scope = portal_customers::scope(tx, caller, id)?;
///     portal_billing::invoices::list(tx, &scope, None, None, 50)?;
///     Ok(())
/// }
/// ```
pub fn list(
    tx: &impl ReadTx,
    scope: &CustomerScope,
    status: Option<InvoiceStatus>,
    after: Option<InvoiceId>,
    fetch: usize,
) -> Result<Vec<Invoice>> {
    let now = Timestamp::now();
    let cid = scope.id().to_key();
    let (index, prefix) = match status {
        // Stored pending and overdue both may read as overdue: walk the customer's whole list.
        Some(InvoiceStatus::Overdue) | None => (&BY_CUSTOMER, cid.to_vec()),
        Some(s) => (&BY_CUSTOMER_STATUS, key(&[&cid, &[s.index() as u8]])),
    };
    let mut after_key = after.map(|id| key(&[&prefix, &id.to_key()]));
    let mut out = Vec::new();
    // A page of index keys, then its invoices in one batched read; a filter that dropped some reads
    // on from the last key, in pages of at least `FILTERED_PAGE`.
    while out.len() < fetch {
        let want = if status.is_some() { (fetch - out.len()).max(FILTERED_PAGE) } else { fetch - out.len() };
        let mut keys = Vec::with_capacity(want.min(256));
        index.visit_keys_desc(tx, &prefix, after_key.as_deref(), |k| {
            keys.push(k.to_vec());
            Ok::<_, Error>(keys.len() < want)
        })?;
        let ids: Vec<&[u8]> = keys.iter().map(|k| key_tail(k, 16)).collect();
        for invoice in INVOICES.get_many(tx, &ids)?.into_iter().flatten() {
            if out.len() < fetch && status.is_none_or(|s| s == invoice.status_at(now)) {
                out.push(invoice);
            }
        }
        if keys.len() < want {
            break;
        }
        after_key = keys.pop();
    }
    Ok(out)
}

/// Index keys read at a time by a list filtered by status.
const FILTERED_PAGE: usize = 64;

/// Whether the customer has any invoice (a financial record).
pub fn any_for_customer(tx: &impl ReadTx, customer: CustomerId) -> Result<bool> {
    Ok(BY_CUSTOMER.any_with_prefix(tx, &customer.to_key())?)
}

/// The invoices a proposal generated, in milestone order.
pub fn of_proposal(tx: &impl ReadTx, proposal: ProposalId) -> Result<Vec<InvoiceId>> {
    let mut ids = Vec::new();
    BY_PROPOSAL.visit_keys_desc(tx, &proposal.to_key(), None, |k| {
        ids.extend(InvoiceId::from_key(key_from(k, 16)));
        Ok::<_, portal_core::Error>(true)
    })?;
    ids.reverse();
    Ok(ids)
}

/// Running totals of a scope (`ALL` or a customer id) per currency.
pub fn totals(tx: &impl ReadTx, scope: &[u8; 16]) -> Result<Vec<(Currency, Totals)>> {
    let mut out = Vec::new();
    TOTALS.scan_prefix(tx, scope, |k, totals| {
        if let Some(currency) = std::str::from_utf8(key_from(k, 16)).ok().and_then(|c| Currency::parse(c).ok()) {
            out.push((currency, totals));
        }
        Ok::<_, portal_core::Error>(true)
    })?;
    Ok(out)
}

/// Running totals as of `now`: pending invoices past their due date count as overdue even before the
/// sweep records them (only those few are read, through the due-date index).
pub fn totals_at(tx: &impl ReadTx, scope: &[u8; 16], now: Timestamp) -> Result<Vec<(Currency, Totals)>> {
    let mut out = totals(tx, scope)?;
    let mut due = Vec::new();
    DUE.visit_keys_desc(tx, &[], Some(&now.to_key()), |k| {
        due.extend(InvoiceId::from_key(key_from(k, 8)));
        Ok::<_, portal_core::Error>(true)
    })?;
    for id in due {
        let Some(invoice) = get(tx, id)?.filter(|i| i.status == InvoiceStatus::Pending) else { continue };
        if *scope != ALL && *scope != invoice.customer_id.to_key() {
            continue;
        }
        if let Some((_, t)) = out.iter_mut().find(|(c, _)| *c == invoice.currency) {
            t.add(InvoiceStatus::Pending, -1, -invoice.total_amount);
            t.add(InvoiceStatus::Overdue, 1, invoice.total_amount);
        }
    }
    Ok(out)
}

/// Money collected in `currency` during the month `year_month` (`2026 * 100 + 11`).
pub fn paid_in_month(tx: &impl ReadTx, scope: &[u8; 16], currency: Currency, year_month: u32) -> Result<i64> {
    let k = key(&[scope, currency.as_str().as_bytes(), &year_month.to_be_bytes()]);
    Ok(PAID_BY_MONTH.get(tx, &k)?.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map_or(0, i64::from_be_bytes))
}

pub fn year_month(t: Timestamp) -> u32 {
    let d = t.datetime();
    d.year() as u32 * 100 + d.month()
}

// ---- writes ----

/// The next number of `year`: `INV-YYYY-NNNNNN`. Drawn inside the invoice's own write transaction, so
/// numbers are sequential and gapless: an aborted write returns its number with everything else.
pub(crate) fn next_number(tx: &WriteTx, year: i32) -> Result<String> {
    let year_key = (year as u16).to_be_bytes();
    let last =
        NUMBERS.get(tx, &year_key)?.and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok()).map_or(0, u32::from_be_bytes);
    let next = last.checked_add(1).ok_or_else(|| Error::internal("invoice numbers exhausted"))?;
    NUMBERS.put(tx, &year_key, &next.to_be_bytes())?;
    Ok(format!("INV-{year:04}-{next:06}"))
}

/// A new invoice numbered by its issue year.
pub(crate) fn insert(tx: &WriteTx, mut invoice: Invoice) -> Result<Invoice> {
    invoice.number = next_number(tx, invoice.issue_date.datetime().year())?;
    save(tx, None, &invoice)?;
    Ok(invoice)
}

/// Writes `new` over `old` (none for a new invoice), moving index entries and running totals.
pub(crate) fn save(tx: &WriteTx, old: Option<&Invoice>, new: &Invoice) -> Result<()> {
    let action = match old {
        None => "issue",
        Some(old) if old.status != new.status => word(new.status),
        Some(old) if old.refunded_amount != new.refunded_amount => "refund",
        Some(_) => "update",
    };
    portal_core::audit::record(tx, "billing", action, new.id, Some(new.customer_id))?;
    if let Some(old) = old {
        unindex(tx, old)?;
        account(tx, old, -1)?;
    }
    let (cid, id) = (new.customer_id.to_key(), new.id.to_key());
    // An invoice's customer, number, proposal and period never change once it exists: their entries are
    // written when it is created, not again with each change.
    if old.is_none() {
        BY_CUSTOMER.put(tx, &key(&[&cid, &id]), &[])?;
        BY_NUMBER.put(tx, new.number.as_bytes(), &id)?;
        if let Some(p) = new.proposal_id {
            BY_PROPOSAL.put(tx, &key(&[&p.to_key(), &id]), &[])?;
        }
        if let Some(period) = new.period {
            let start = day_key(period.start);
            PERIODS.put(tx, &key(&[&cid, &start]), &key(&[&day_key(period.end), &id]))?;
        }
    }
    BY_CUSTOMER_STATUS.put(tx, &key(&[&cid, &[new.status.index() as u8], &id]), &[])?;
    if new.status == InvoiceStatus::Pending {
        DUE.put(tx, &key(&[&new.due_date.to_key(), &id]), &[])?;
    }
    account(tx, new, 1)?;
    INVOICES.insert(tx, &id, new)?;
    if old.is_none() && new.status.is_outstanding() {
        let expires = new.due_date.plus_secs(links::PAY_LINK_DAYS_AFTER_DUE * 86_400);
        links::issue_first(tx, LinkKind::Pay, &id, expires)?;
    }
    announce(tx, old, new)?;
    crate::mail::on_change(tx, old, new)
}

/// Tells the webhook endpoints what became of the invoice, with the invoice as the API shows it.
fn announce(tx: &WriteTx, old: Option<&Invoice>, new: &Invoice) -> Result<()> {
    let was = old.map(|o| o.status);
    let kind = match new.status {
        _ if old.is_some_and(|o| o.refunded_amount < new.refunded_amount) => Some(EventKind::InvoiceRefunded),
        status if was == Some(status) => None,
        InvoiceStatus::Pending if was.is_none_or(|s| s == InvoiceStatus::Draft) => Some(EventKind::InvoiceIssued),
        InvoiceStatus::Paid => Some(EventKind::InvoicePaid),
        InvoiceStatus::Overdue => Some(EventKind::InvoiceOverdue),
        InvoiceStatus::Cancelled => Some(EventKind::InvoiceCancelled),
        InvoiceStatus::Pending | InvoiceStatus::Draft => None,
    };
    match kind {
        Some(kind) => portal_webhooks::emit(tx, kind, || portal_webhooks::data(&InvoiceView::from(new))),
        None => Ok(()),
    }
}

fn unindex(tx: &WriteTx, old: &Invoice) -> Result<()> {
    let (cid, id) = (old.customer_id.to_key(), old.id.to_key());
    BY_CUSTOMER_STATUS.remove(tx, &key(&[&cid, &[old.status.index() as u8], &id]))?;
    DUE.remove(tx, &key(&[&old.due_date.to_key(), &id]))?;
    Ok(())
}

/// Adds (`sign` 1) or removes (`sign` -1) an invoice's share of the running totals, portal-wide and for
/// its customer.
fn account(tx: &WriteTx, invoice: &Invoice, sign: i64) -> Result<()> {
    for scope in [ALL, invoice.customer_id.to_key()] {
        let k = key(&[&scope, invoice.currency.as_str().as_bytes()]);
        let mut totals = TOTALS.get(tx, &k)?.unwrap_or_default();
        totals.add(invoice.status, sign, sign * invoice.total_amount);
        totals.refunded += sign * invoice.refunded_amount;
        TOTALS.insert(tx, &k, &totals)?;
        if let (InvoiceStatus::Paid, Some(paid)) = (invoice.status, invoice.paid_date) {
            // Revenue is net of refunds, counted in the month the payment arrived.
            let collected = invoice.total_amount - invoice.refunded_amount;
            let month = key(&[&scope, invoice.currency.as_str().as_bytes(), &year_month(paid).to_be_bytes()]);
            let before = paid_in_month(tx, &scope, invoice.currency, year_month(paid))?;
            PAID_BY_MONTH.put(tx, &month, &(before + sign * collected).to_be_bytes())?;
        }
    }
    Ok(())
}

/// Whether a charge of the invoice is with Stripe now (see `Collection::in_progress`).
fn collection_in_progress(tx: &impl portal_core::ReadTx, id: InvoiceId) -> Result<bool> {
    let state = COLLECTIONS.get(tx, &id.to_key())?.unwrap_or_default();
    Ok(state.in_progress(Timestamp::now()))
}

/// Sets the pass-through infrastructure costs of an open invoice and recomputes its total.
pub fn set_infrastructure_costs(tx: &WriteTx, caller: &Principal, id: InvoiceId, costs: f64) -> Result<Invoice> {
    let (old, _) = visible(tx, caller, id)?;
    if !old.status.is_open() {
        return Err(Error::conflict(format!("a {} invoice can no longer change", word(old.status))));
    }
    // A charge of the old total may be with Stripe: the total stands until it has settled.
    if collection_in_progress(tx, id)? {
        return Err(Error::conflict("a payment of this invoice is in progress; its total cannot change now"));
    }
    let minor =
        parse_non_negative_minor(costs, old.currency).map_err(|why| Error::invalid("infrastructure_costs", why))?;
    let mut new = old.clone();
    new.infrastructure_costs = minor;
    new.recompute();
    new.updated_at = Timestamp::now().max(old.updated_at);
    save(tx, Some(&old), &new)?;
    Ok(new)
}

/// Cancels an unpaid invoice.
pub fn cancel(tx: &WriteTx, caller: &Principal, id: InvoiceId) -> Result<Invoice> {
    let (old, _) = visible(tx, caller, id)?;
    if !old.status.is_open() {
        return Err(Error::conflict(format!("a {} invoice cannot be cancelled", word(old.status))));
    }
    if collection_in_progress(tx, id)? {
        return Err(Error::conflict("a payment of this invoice is in progress; it cannot be cancelled now"));
    }
    let mut new = old.clone();
    new.status = InvoiceStatus::Cancelled;
    new.updated_at = Timestamp::now().max(old.updated_at);
    save(tx, Some(&old), &new)?;
    Ok(new)
}

/// Records a payment of an open invoice (`method`: how it was paid) with its payment record, in one
/// transaction. Paid invoices never change again, except for refunds.
pub fn mark_paid(
    tx: &WriteTx,
    id: InvoiceId,
    method: &str,
    paid_at: Timestamp,
    payment_intent: Option<&str>,
) -> Result<Invoice> {
    let old = get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
    if !old.status.is_open() {
        return Err(Error::conflict(format!("a {} invoice cannot be paid", word(old.status))));
    }
    let mut new = old.clone();
    new.status = InvoiceStatus::Paid;
    new.paid_date = Some(paid_at);
    new.payment_method = Some(method.to_string());
    if let Some(intent) = payment_intent {
        new.stripe_payment_intent_id = Some(intent.to_string());
        BY_PAYMENT_INTENT.put(tx, intent.as_bytes(), &id.to_key())?;
    }
    new.updated_at = Timestamp::now().max(old.updated_at);
    save(tx, Some(&old), &new)?;
    PAYMENTS.insert(
        tx,
        &id.to_key(),
        &Payment {
            invoice_id: id,
            customer_id: new.customer_id,
            amount: new.total_amount,
            currency: new.currency,
            method: method.to_string(),
            stripe_payment_intent_id: new.stripe_payment_intent_id.clone(),
            paid_at,
            recorded_at: Timestamp::now(),
        },
    )?;
    Ok(new)
}

/// The payment recorded for an invoice, if it is paid.
pub fn payment(tx: &impl ReadTx, id: InvoiceId) -> Result<Option<Payment>> {
    Ok(PAYMENTS.get(tx, &id.to_key())?)
}

/// The invoice a Stripe PaymentIntent paid.
pub fn by_payment_intent(tx: &impl ReadTx, payment_intent: &str) -> Result<Option<InvoiceId>> {
    Ok(BY_PAYMENT_INTENT.get(tx, payment_intent.as_bytes())?.and_then(|b| InvoiceId::from_key(&b)))
}

/// Records a refund of a paid invoice, documented by `note`: the refunded amount grows by the note's (never
/// past the total) and the invoice lists the note. A paid invoice stays paid; its lines never change.
pub(crate) fn add_credit_note(tx: &WriteTx, note: &CreditNote) -> Result<Invoice> {
    let old = get(tx, note.invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
    if old.status != InvoiceStatus::Paid {
        return Err(Error::conflict(format!("a {} invoice has nothing to refund", word(old.status))));
    }
    let mut new = old.clone();
    new.refunded_amount = (old.refunded_amount + note.amount).min(old.total_amount);
    new.refunded_at = Some(note.issued_at);
    new.credit_notes.push(CreditNoteRef {
        id: note.id,
        number: note.number.clone(),
        amount: note.amount,
        issued_at: note.issued_at,
    });
    new.updated_at = Timestamp::now().max(old.updated_at);
    save(tx, Some(&old), &new)?;
    Ok(new)
}

/// Records a pending invoice as overdue before its due date (its automatic charges have failed).
pub fn mark_overdue_now(tx: &WriteTx, id: InvoiceId, now: Timestamp) -> Result<()> {
    if let Some(old) = get(tx, id)?.filter(|i| i.status == InvoiceStatus::Pending) {
        let mut new = old.clone();
        new.status = InvoiceStatus::Overdue;
        new.updated_at = now.max(old.updated_at);
        save(tx, Some(&old), &new)?;
    }
    Ok(())
}

/// Records as overdue every pending invoice whose due date has passed; returns how many.
pub fn mark_overdue(tx: &WriteTx, now: Timestamp) -> Result<usize> {
    let mut due = Vec::new();
    DUE.visit_keys_desc(tx, &[], Some(&now.to_key()), |k| {
        due.extend(InvoiceId::from_key(key_from(k, 8)));
        Ok::<_, portal_core::Error>(true)
    })?;
    for id in &due {
        if let Some(old) = get(tx, *id)?.filter(|i| i.status == InvoiceStatus::Pending) {
            let mut new = old.clone();
            new.status = InvoiceStatus::Overdue;
            new.updated_at = now.max(old.updated_at);
            save(tx, Some(&old), &new)?;
        }
    }
    Ok(due.len())
}

pub(crate) fn word(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Draft => "draft",
        InvoiceStatus::Pending => "pending",
        InvoiceStatus::Paid => "paid",
        InvoiceStatus::Overdue => "overdue",
        InvoiceStatus::Cancelled => "cancelled",
    }
}

/// The job that marks invoices overdue once their due date has passed.
pub(crate) fn overdue_job() -> Job {
    Job::new("invoice-overdue", Duration::from_secs(60), |ctx: Context| async move {
        let marked = ctx.store.write(|tx| mark_overdue(tx, Timestamp::now())).await?;
        if marked > 0 {
            tracing::info!(marked, "invoices marked overdue");
        }
        Ok(())
    })
}
