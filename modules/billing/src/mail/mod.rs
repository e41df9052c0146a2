//! Invoice mail: the issue mail, reminders, receipts and refund notices. Each mail is recorded in the
//! invoice's own transaction (the change that causes it), under the Message-ID it will be sent with, and
//! queued; a worker sends the queue and marks each mail sent. A crash between sending and marking re-sends
//! that mail under the same Message-ID (mail clients fold the twins); none is skipped.

mod content;
pub(crate) mod reminders;
pub(crate) mod sender;

use poem_openapi::Enum;
use portal_core::ids::CustomerId;
use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{ReadTx, Record, Result, Table, Timestamp};
use serde::{Deserialize, Serialize};

use crate::model::{CreditNoteId, Invoice, InvoiceId, InvoiceStatus};
use crate::tables::MAIL_QUEUE as QUEUE;

portal_core::id_type!(
    /// A mail about an invoice; also its Message-ID (before the sender's domain).
    InvoiceMailId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
/// Why the mail was sent: `issued`, `reminder`, `receipt` (paid), `refund`, or `resent` by an admin.
pub enum MailKind {
    Issued,
    Reminder,
    Receipt,
    Refund,
    Resent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvoiceMail {
    pub id: InvoiceMailId,
    pub invoice_id: InvoiceId,
    pub kind: MailKind,
    /// For reminders: days from the due date (−3: three days before it).
    pub reminder_day: Option<i32>,
    pub to: Vec<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub attempts: u32,
    /// Why the last attempt failed; set when the worker gave up too.
    pub last_error: Option<String>,
    /// The worker stopped trying (after [`sender::MAX_ATTEMPTS`]).
    pub gave_up: bool,
    /// For refund notices: the credit note documenting the refund, attached as PDF.
    #[serde(default)]
    pub credit_note_id: Option<CreditNoteId>,
}

impl Record for InvoiceMail {}

/// invoice id ‖ mail id → the mail
const MAILS: Table<InvoiceMail> = Table::new("billing.invoice_mails");

pub(crate) fn install(tx: &WriteTx) -> Result<()> {
    Ok(MAILS.create(tx)?)
}

/// Records the mails a change of an invoice calls for, in the change's transaction: the issue mail for a
/// new pending invoice, a receipt when it is paid, a notice when more of it is refunded. Reminders follow
/// the invoice while it is outstanding.
pub(crate) fn on_change(tx: &WriteTx, old: Option<&Invoice>, new: &Invoice) -> Result<()> {
    let now = Timestamp::now();
    match old {
        None if new.status == InvoiceStatus::Pending => {
            record(tx, new, MailKind::Issued, None, now)?;
        }
        Some(old) if old.status.is_open() && new.status == InvoiceStatus::Paid => {
            record(tx, new, MailKind::Receipt, None, now)?;
        }
        Some(old) if new.refunded_amount > old.refunded_amount => {
            let mut mail = record(tx, new, MailKind::Refund, None, now)?;
            mail.credit_note_id = new.credit_notes.last().map(|n| n.id);
            MAILS.insert(tx, &key(&[&new.id.to_key(), &mail.id.to_key()]), &mail)?;
        }
        _ => {}
    }
    reminders::follow(tx, old, new)
}

/// Schema 3: invoices outstanding from before invoice mail get a pay link and the reminders still to come
/// (none that would already have gone out: an upgrade sends no burst of reminders).
pub(crate) fn adopt_outstanding(tx: &WriteTx, now: Timestamp) -> Result<usize> {
    let mut outstanding = Vec::new();
    crate::invoices::scan_all(tx, |invoice| {
        if invoice.status.is_outstanding() {
            outstanding.push(invoice);
        }
    })?;
    for invoice in &outstanding {
        let id = invoice.id.to_key();
        if crate::links::current(tx, crate::links::LinkKind::Pay, &id)?.is_none() {
            let expires = invoice.due_date.max(now).plus_secs(crate::links::PAY_LINK_DAYS_AFTER_DUE * 86_400);
            crate::links::issue(tx, crate::links::LinkKind::Pay, &id, expires)?;
        }
        reminders::adopt(tx, invoice, now)?;
    }
    Ok(outstanding.len())
}

/// Records a mail to the invoice's customer and queues it.
pub(crate) fn record(
    tx: &WriteTx,
    invoice: &Invoice,
    kind: MailKind,
    reminder_day: Option<i32>,
    now: Timestamp,
) -> Result<InvoiceMail> {
    let mail = InvoiceMail {
        id: InvoiceMailId::generate(),
        invoice_id: invoice.id,
        kind,
        reminder_day,
        to: recipients(tx, invoice.customer_id)?,
        created_at: now,
        sent_at: None,
        attempts: 0,
        last_error: None,
        gave_up: false,
        credit_note_id: None,
    };
    MAILS.insert(tx, &key(&[&invoice.id.to_key(), &mail.id.to_key()]), &mail)?;
    QUEUE.put(tx, &queue_key(now, invoice.id, mail.id), &[])?;
    Ok(mail)
}

fn queue_key(at: Timestamp, invoice: InvoiceId, mail: InvoiceMailId) -> Vec<u8> {
    key(&[&at.to_key(), &invoice.to_key(), &mail.to_key()])
}

/// Who receives a customer's invoice mail: its billing address and its users who chose invoice mail (and
/// may sign in), each once.
fn recipients(tx: &impl ReadTx, customer: CustomerId) -> Result<Vec<String>> {
    let mut to = Vec::new();
    if let Some(c) = portal_customers::service::get(tx, customer)? {
        to.push(c.billing_email.to_lowercase());
    }
    for user in portal_auth::users::page_by_customer(tx, customer, None, usize::MAX)? {
        let email = user.email.to_lowercase();
        if user.settings.notifications.invoice_emails && !user.disabled && !to.contains(&email) {
            to.push(email);
        }
    }
    to.retain(|address| !address.is_empty());
    Ok(to)
}

/// Mails an issued invoice again on an admin's request, with a new pay link while it is open.
pub fn resend(tx: &WriteTx, caller: &portal_core::Principal, id: InvoiceId, now: Timestamp) -> Result<InvoiceMail> {
    let (invoice, _) = crate::invoices::visible(tx, caller, id)?;
    if invoice.status == InvoiceStatus::Draft {
        return Err(portal_core::Error::conflict("a draft invoice is not sent"));
    }
    if invoice.status.is_outstanding() {
        let expires = invoice.due_date.max(now).plus_secs(crate::links::PAY_LINK_DAYS_AFTER_DUE * 86_400);
        crate::links::issue(tx, crate::links::LinkKind::Pay, &invoice.id.to_key(), expires)?;
    }
    portal_core::audit::record(tx, "billing", "invoice_resend", invoice.id, Some(invoice.customer_id))?;
    record(tx, &invoice, MailKind::Resent, None, now)
}

/// An invoice's mails, oldest first.
pub fn of_invoice(tx: &impl ReadTx, invoice: InvoiceId) -> Result<Vec<InvoiceMail>> {
    let mut mails = Vec::new();
    MAILS.scan_prefix(tx, &invoice.to_key(), |_, mail| {
        mails.push(mail);
        Ok::<_, portal_core::Error>(true)
    })?;
    Ok(mails)
}

/// A mail waiting in the queue, under its queue key.
pub(crate) struct Queued {
    queue_key: Vec<u8>,
    pub mail: InvoiceMail,
}

/// Up to `limit` queued mails whose next attempt is due at `now`, oldest first.
pub(crate) fn due(tx: &impl ReadTx, now: Timestamp, limit: usize) -> Result<Vec<Queued>> {
    let mut keys = Vec::new();
    QUEUE.visit_keys(tx, &[], |k| {
        let due = Timestamp::from_key(k).is_some_and(|at| at <= now);
        if due {
            keys.push(k.to_vec());
        }
        Ok::<_, portal_core::Error>(due && keys.len() < limit)
    })?;
    let record_keys: Vec<&[u8]> = keys.iter().map(|k| key_from(k, 8)).collect();
    let mails = MAILS.get_many(tx, &record_keys)?;
    Ok(keys.into_iter().zip(mails).filter_map(|(queue_key, mail)| Some(Queued { queue_key, mail: mail? })).collect())
}

/// What became of an attempt to send a mail.
pub(crate) enum Attempt {
    Sent(Timestamp),
    /// Failed; tried again at the time given, or never again.
    Failed {
        why: String,
        retry_at: Option<Timestamp>,
    },
}

/// Takes each mail out of the queue (sent, or given up) or moves its next attempt later; for each, whether
/// it was still queued (else another run settled it). Reads what it checks for all of them at once.
pub(crate) fn settle(tx: &WriteTx, settling: &[(&Queued, &Attempt)]) -> Result<Vec<bool>> {
    let record_keys: Vec<&[u8]> = settling.iter().map(|(queued, _)| key_from(&queued.queue_key, 8)).collect();
    let queue_keys: Vec<&[u8]> = settling.iter().map(|(queued, _)| queued.queue_key.as_slice()).collect();
    let records = MAILS.get_many(tx, &record_keys)?;
    let still_queued = QUEUE.contains_many(tx, &queue_keys)?;
    let mut settled = Vec::with_capacity(settling.len());
    for (((queued, attempt), stored), queued_now) in settling.iter().zip(records).zip(still_queued) {
        let Some(mut stored) = stored.filter(|_| queued_now) else {
            settled.push(false); // settled already
            continue;
        };
        QUEUE.remove(tx, &queued.queue_key)?;
        stored.attempts += 1;
        match attempt {
            Attempt::Sent(at) => stored.sent_at = Some(*at),
            Attempt::Failed { why, retry_at } => {
                stored.last_error = Some(why.clone());
                match retry_at {
                    Some(at) => QUEUE.put(tx, &queue_key(*at, stored.invoice_id, stored.id), &[])?,
                    None => stored.gave_up = true,
                }
            }
        }
        MAILS.insert(tx, key_from(&queued.queue_key, 8), &stored)?;
        settled.push(true);
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn a_batch_settles_each_mail_once_and_moves_a_failed_one_later() {
        let (store, invoice) = crate::testing::issued_invoice();
        let now = Timestamp::now();
        store.write_blocking(move |tx| record(tx, &invoice, MailKind::Resent, None, now)).unwrap();
        let queued = std::sync::Arc::new(store.read_blocking(|tx| due(tx, now, 10)).unwrap());
        assert_eq!(queued.iter().map(|q| q.mail.kind).collect::<Vec<_>>(), [MailKind::Issued, MailKind::Resent]);

        let batch = std::sync::Arc::clone(&queued);
        let first = store.write_blocking(move |tx| settle(tx, &[(&batch[0], &Attempt::Sent(now))])).unwrap();
        let (batch, later) = (std::sync::Arc::clone(&queued), now.plus_secs(60));
        let second = store
            .write_blocking(move |tx| {
                let failed = Attempt::Failed { why: "refused".into(), retry_at: Some(later) };
                settle(tx, &[(&batch[0], &Attempt::Sent(now)), (&batch[1], &failed)])
            })
            .unwrap();
        assert_eq!((first, second), (vec![true], vec![false, true]));

        let mails = store.read_blocking(|tx| of_invoice(tx, queued[0].mail.invoice_id)).unwrap();
        let (issued, resent) = (&mails[0], &mails[1]);
        assert_eq!((issued.attempts, issued.sent_at, issued.last_error.as_deref()), (1, Some(now), None));
        assert_eq!((resent.attempts, resent.sent_at, resent.last_error.as_deref()), (1, None, Some("refused")));
        assert!(store.read_blocking(|tx| due(tx, now, 10)).unwrap().is_empty());
        let again = store.read_blocking(|tx| due(tx, later, 10)).unwrap();
        assert_eq!(again.iter().map(|q| (q.mail.id, q.mail.attempts)).collect::<Vec<_>>(), [(resent.id, 1)]);
    }
}
