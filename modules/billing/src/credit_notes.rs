//! Credit notes: the document of each refund, numbered `CN-YYYY-NNNNNN` by the year they are issued,
//! sequentially and gaplessly (the number is drawn in the refund's own transaction, so an aborted refund
//! returns it with everything else).

use chrono::Datelike;
use portal_core::table::{key, key_tail};
use portal_core::WriteTx;
use portal_core::{Error, Principal, ReadTx, Result, Timestamp};
use portal_customers::CustomerScope;

use crate::model::{CreditNote, CreditNoteId, Invoice, Refund};
use crate::tables::{CREDIT_NOTES, CREDIT_NOTES_BY_CUSTOMER, CREDIT_NOTE_NUMBERS};

pub fn get(tx: &impl ReadTx, id: CreditNoteId) -> Result<Option<CreditNote>> {
    Ok(CREDIT_NOTES.get(tx, &id.to_key())?)
}

/// A credit note the caller may see (admins, and its customer's users), with its customer's scope.
pub fn visible(tx: &impl ReadTx, caller: &Principal, id: CreditNoteId) -> Result<(CreditNote, CustomerScope)> {
    portal_customers::expect_scope_of(tx, caller);
    let note = get(tx, id)?.ok_or_else(|| Error::not_found("credit note"))?;
    let scope = portal_customers::scope_of(tx, caller, note.customer_id, "credit note")?;
    Ok((note, scope))
}

/// Up to `fetch` of a customer's credit notes, newest first, older than `after`.
pub fn list(
    tx: &impl ReadTx,
    scope: &CustomerScope,
    after: Option<CreditNoteId>,
    fetch: usize,
) -> Result<Vec<CreditNote>> {
    let cid = scope.id().to_key();
    let after_key = after.map(|id| key(&[&cid, &id.to_key()]));
    let mut out = Vec::new();
    CREDIT_NOTES_BY_CUSTOMER.visit_keys_desc(tx, &cid, after_key.as_deref(), |k| {
        if let Some(note) = CreditNoteId::from_key(key_tail(k, 16)).map(|id| get(tx, id)).transpose()?.flatten() {
            out.push(note);
        }
        Ok::<_, Error>(out.len() < fetch)
    })?;
    Ok(out)
}

/// Issues the credit note of a refund of `invoice`, dated `now`.
pub(crate) fn issue(tx: &WriteTx, refund: &Refund, invoice: &Invoice, now: Timestamp) -> Result<CreditNote> {
    let note = CreditNote {
        id: CreditNoteId::generate(),
        number: next_number(tx, now.datetime().year())?,
        invoice_id: invoice.id,
        invoice_number: invoice.number.clone(),
        customer_id: invoice.customer_id,
        amount: refund.amount,
        currency: invoice.currency,
        reason: refund.reason.clone(),
        refund_id: refund.id,
        channel: refund.channel,
        origin: refund.origin,
        stripe_refund_id: refund.stripe_refund_id.clone(),
        issued_at: now,
    };
    CREDIT_NOTES.insert(tx, &note.id.to_key(), &note)?;
    CREDIT_NOTES_BY_CUSTOMER.put(tx, &key(&[&note.customer_id.to_key(), &note.id.to_key()]), &[])?;
    let view = || portal_webhooks::data(&crate::views::CreditNoteView::from(&note));
    portal_webhooks::emit(tx, portal_webhooks::EventKind::CreditNoteCreated, view)?;
    Ok(note)
}

fn next_number(tx: &WriteTx, year: i32) -> Result<String> {
    let year_key = (year as u16).to_be_bytes();
    let last = CREDIT_NOTE_NUMBERS
        .get(tx, &year_key)?
        .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        .map_or(0, u32::from_be_bytes);
    let next = last.checked_add(1).ok_or_else(|| Error::internal("credit note numbers exhausted"))?;
    CREDIT_NOTE_NUMBERS.put(tx, &year_key, &next.to_be_bytes())?;
    Ok(format!("CN-{year:04}-{next:06}"))
}
