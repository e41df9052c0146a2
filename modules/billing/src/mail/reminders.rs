//! Reminders: before an outstanding invoice's due date, on it and after it, on the days the schedule names
//! (`PORTAL_INVOICE_REMINDER_DAYS`, default −3, 0, 3, 7, 14), until it is paid or cancelled. A portal that
//! was down sends only the latest reminder it missed, not a burst of them.

use std::time::Duration;

use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{Job, Result, Timestamp};

use super::MailKind;
use crate::config::BillingConfig;
use crate::invoices;
use crate::model::{Invoice, InvoiceId};
use crate::tables::{REMINDABLE, REMINDED};

const DAY_SECS: i64 = 86_400;

/// Puts an invoice on the reminder schedule when it becomes outstanding (`old`: before the change; the
/// job takes it off after its last reminder), and takes it off when it stops being outstanding.
pub(crate) fn follow(tx: &WriteTx, old: Option<&Invoice>, invoice: &Invoice) -> Result<()> {
    let entry = key(&[&invoice.due_date.to_key(), &invoice.id.to_key()]);
    match (old.is_some_and(|old| old.status.is_outstanding()), invoice.status.is_outstanding()) {
        (false, true) => REMINDABLE.put(tx, &entry, &[])?,
        (true, false) => _ = REMINDABLE.remove(tx, &entry)?,
        _ => {}
    }
    Ok(())
}

/// Puts an invoice issued before reminders existed on the schedule, as if every reminder day that has
/// passed had been sent.
pub(crate) fn adopt(tx: &WriteTx, invoice: &Invoice, now: Timestamp) -> Result<()> {
    follow(tx, None, invoice)?;
    let passed = (now.unix_secs() - invoice.due_date.unix_secs()).div_euclid(DAY_SECS);
    let passed = i32::try_from(passed.clamp(-1_000, 1_000)).unwrap_or(0);
    Ok(REMINDED.put(tx, &invoice.id.to_key(), &passed.to_be_bytes())?)
}

/// The reminder due for `invoice` at `now` under `schedule` (sorted days from the due date), after the
/// one for `last` was sent: the latest day that has come, later than `last` and after the invoice was issued.
fn due_day(invoice: &Invoice, schedule: &[i32], last: Option<i32>, now: Timestamp) -> Option<i32> {
    schedule
        .iter()
        .copied()
        .filter(|day| last.is_none_or(|last| *day > last))
        .filter(|day| {
            let at = invoice.due_date.plus_secs(i64::from(*day) * DAY_SECS);
            at <= now && at > invoice.issue_date
        })
        .max()
}

/// Whether a reminder of `schedule` may still come for `invoice` after the one for `last`: one later
/// than it, and after the invoice was issued (an invoice issued long after its due date gets none, and
/// leaves the schedule instead of being read again on every run).
fn any_to_come(invoice: &Invoice, schedule: &[i32], last: Option<i32>) -> bool {
    schedule.iter().any(|day| {
        last.is_none_or(|last| *day > last)
            && invoice.due_date.plus_secs(i64::from(*day) * DAY_SECS) > invoice.issue_date
    })
}

/// Records the reminders due at `now`; returns how many.
pub(crate) fn run(tx: &WriteTx, schedule: &[i32], now: Timestamp) -> Result<usize> {
    let Some(first) = schedule.first() else { return Ok(0) };
    // An invoice's first reminder comes `first` days from its due date: none is due for later due dates.
    let horizon = now.plus_secs(-i64::from(*first) * DAY_SECS);
    let mut candidates = Vec::new();
    REMINDABLE.visit_keys(tx, &[], |k| {
        let within = Timestamp::from_key(k).is_some_and(|due| due <= horizon);
        if within {
            candidates.extend(InvoiceId::from_key(key_from(k, 8)).map(|id| (k.to_vec(), id)));
        }
        Ok::<_, portal_core::Error>(within)
    })?;
    let mut recorded = 0;
    for (entry, id) in candidates {
        let Some(invoice) = invoices::get(tx, id)?.filter(|i| i.status.is_outstanding()) else {
            REMINDABLE.remove(tx, &entry)?;
            continue;
        };
        let mut last = REMINDED
            .get(tx, &id.to_key())?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(i32::from_be_bytes);
        if let Some(day) = due_day(&invoice, schedule, last, now) {
            super::record(tx, &invoice, MailKind::Reminder, Some(day), now)?;
            REMINDED.put(tx, &id.to_key(), &day.to_be_bytes())?;
            recorded += 1;
            last = Some(day);
        }
        if !any_to_come(&invoice, schedule, last) {
            REMINDABLE.remove(tx, &entry)?;
        }
    }
    Ok(recorded)
}

pub(crate) fn job() -> Job {
    Job::new("invoice-reminders", Duration::from_secs(60), |ctx| async move {
        let schedule = ctx.settings::<BillingConfig>()?.reminder_days.days().to_vec();
        let recorded = ctx.store.write(move |tx| run(tx, &schedule, Timestamp::now())).await?;
        if recorded > 0 {
            tracing::info!(recorded, "invoice reminders queued");
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(issued: i64, due: i64) -> Invoice {
        Invoice {
            id: InvoiceId::generate(),
            customer_id: portal_core::ids::CustomerId::generate(),
            proposal_id: None,
            number: "INV-2026-000001".into(),
            status: crate::model::InvoiceStatus::Pending,
            amount: 100,
            tax_rate: portal_core::money::TaxRate::default(),
            tax_amount: 0,
            infrastructure_costs: 0,
            total_amount: 100,
            currency: portal_core::Currency::default(),
            issue_date: day(issued),
            due_date: day(due),
            paid_date: None,
            description: None,
            milestone: None,
            line_items: Vec::new(),
            payment_method: None,
            stripe_invoice_id: None,
            stripe_payment_intent_id: None,
            period: None,
            refunded_amount: 0,
            refunded_at: None,
            credit_notes: Vec::new(),
            created_at: day(issued),
            updated_at: day(issued),
        }
    }

    fn day(n: i64) -> Timestamp {
        Timestamp::from_micros(n * DAY_SECS * 1_000_000)
    }

    #[test]
    fn the_latest_reminder_that_has_come_is_the_one_sent() {
        let schedule = [-3, 0, 3, 7, 14];
        let i = invoice(0, 30);
        assert_eq!(due_day(&i, &schedule, None, day(26)), None);
        assert_eq!(due_day(&i, &schedule, None, day(27)), Some(-3));
        assert_eq!(due_day(&i, &schedule, Some(-3), day(29)), None);
        assert_eq!(due_day(&i, &schedule, Some(-3), day(30)), Some(0));
        // Down from day 31 to day 45: only the 14-day reminder, not 3 and 7 as well.
        assert_eq!(due_day(&i, &schedule, Some(0), day(45)), Some(14));
        assert_eq!(due_day(&i, &schedule, Some(14), day(90)), None);
    }

    #[test]
    fn reminders_are_recorded_once_each_until_the_invoice_is_paid() {
        let (store, invoice) = crate::testing::issued_invoice();
        let due = invoice.due_date;
        let at = move |days: i64| due.plus_secs(days * DAY_SECS);
        let schedule = [-3, 0, 3, 7, 14];
        let run_at = |t: Timestamp| store.write_blocking(move |tx| run(tx, &schedule, t)).unwrap();
        let reminders = || {
            let mails = store.read_blocking(|tx| crate::mail::of_invoice(tx, invoice.id)).unwrap();
            mails.iter().filter(|m| m.kind == MailKind::Reminder).map(|m| m.reminder_day.unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run_at(at(-4)), 0);
        assert_eq!(run_at(at(-3)), 1);
        assert_eq!(run_at(at(-2)), 0, "the same reminder twice");
        assert_eq!(run_at(at(5)), 1);
        assert_eq!(reminders(), [-3, 3], "missed reminders collapse into the latest one");
        store
            .write_blocking(move |tx| {
                crate::invoices::mark_paid(tx, invoice.id, "bank_transfer", at(6), None).map(drop)
            })
            .unwrap();
        assert_eq!(run_at(at(8)), 0, "a paid invoice is reminded of nothing");
        assert_eq!(reminders(), [-3, 3]);
        let mails = store.read_blocking(|tx| crate::mail::of_invoice(tx, invoice.id)).unwrap();
        let kinds: Vec<MailKind> = mails.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [MailKind::Issued, MailKind::Reminder, MailKind::Reminder, MailKind::Receipt]);
        assert_eq!(mails[0].to, ["ap@property.example.com"]);
    }

    #[test]
    fn an_upgrade_gives_outstanding_invoices_a_link_and_only_reminders_still_to_come() {
        let (store, invoice) = crate::testing::issued_invoice();
        let key = invoice.id.to_key();
        let due = invoice.due_date;
        // As a store from before invoice mail holds it: no link, not on the schedule.
        store
            .write_blocking(move |tx| {
                crate::links::forget(tx, crate::links::LinkKind::Pay, &key)?;
                REMINDABLE.remove(tx, &key_of(due, &key))?;
                portal_core::store::set_schema_version(tx, "billing", 2)
            })
            .unwrap();
        // Five days past due when the upgraded portal starts.
        let later = due.plus_secs(5 * DAY_SECS);
        assert_eq!(store.write_blocking(move |tx| crate::mail::adopt_outstanding(tx, later)).unwrap(), 1);
        let link = store.read_blocking(|tx| crate::links::current(tx, crate::links::LinkKind::Pay, &key)).unwrap();
        assert!(link.is_some_and(|l| l.expires_at > later));
        let schedule = [-3, 0, 3, 7, 14];
        assert_eq!(store.write_blocking(move |tx| run(tx, &schedule, later)).unwrap(), 0, "no burst of old reminders");
        let at7 = due.plus_secs(7 * DAY_SECS);
        assert_eq!(store.write_blocking(move |tx| run(tx, &schedule, at7)).unwrap(), 1, "the next one comes");
    }

    fn key_of(due: Timestamp, id: &[u8; 16]) -> Vec<u8> {
        key(&[&due.to_key(), id])
    }

    #[test]
    fn an_invoice_no_reminder_can_reach_leaves_the_schedule() {
        let (store, invoice) = crate::testing::issued_invoice();
        let entries = || {
            store
                .read_blocking(|tx| {
                    let mut n = 0;
                    REMINDABLE.visit_keys(tx, &[], |_| {
                        n += 1;
                        Ok::<_, portal_core::Error>(true)
                    })?;
                    Ok::<_, portal_core::Error>(n)
                })
                .unwrap()
        };
        assert_eq!(entries(), 1);
        // Both days fall before the invoice was issued (it is due in 30 days): it never gets a reminder.
        let schedule = [-40, -35];
        let issued = invoice.issue_date;
        assert_eq!(store.write_blocking(move |tx| run(tx, &schedule, issued)).unwrap(), 0);
        assert_eq!(entries(), 0, "off the schedule, not read again on every run");
    }

    #[test]
    fn no_reminder_falls_before_the_invoice_was_issued() {
        // Due on issue: no "due in 3 days" and no "due today" on top of the issue mail.
        let i = invoice(10, 10);
        assert_eq!(due_day(&i, &[-3, 0, 3], None, day(10)), None);
        assert_eq!(due_day(&i, &[-3, 0, 3], None, day(13)), Some(3));
    }
}
