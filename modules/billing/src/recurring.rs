//! Recurring invoices: one per billing period. Periods start on the customer's billing day (clamped to the
//! month's last day) every 1, 3 or 12 months, counted from the first billing day on or after the customer
//! was created; one-time billing never recurs. A customer created between two billing days first gets a
//! partial period, from the day it was created to its first billing day, billed prorated by days: `fee ×
//! days in the partial period ÷ days of the full period ending on that billing day`, half-even to minor
//! units. A period is billed once: the periods table refuses any overlap, inside the invoice's own
//! transaction.

use std::time::Duration;

use chrono::{Datelike, Months, NaiveDate};
use portal_core::ids::CustomerId;
use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{Context, Error, Job, ReadTx, Result, Timestamp};
use portal_customers::model::BillingSettings;
use portal_customers::{system_scope, CustomerScope};

use crate::invoices;
use crate::model::{day_from_key, day_key, Invoice, InvoiceId, InvoiceStatus, LineItem, Period};
use crate::tables::PERIODS;

/// The billing date of the month of `date`: `billing_day`, or the month's last day when shorter.
fn billing_date_in_month_of(date: NaiveDate, billing_day: u8) -> NaiveDate {
    let first = date.with_day(1).unwrap_or(date);
    let last = first.checked_add_months(Months::new(1)).and_then(|d| d.pred_opt()).unwrap_or(first).day();
    first.with_day(u32::from(billing_day).min(last)).unwrap_or(first)
}

fn months_later(date: NaiveDate, months: u32, billing_day: u8) -> Option<NaiveDate> {
    let first = date.with_day(1)?.checked_add_months(Months::new(months))?;
    Some(billing_date_in_month_of(first, billing_day))
}

/// The period starting on `start`, which must be one of the customer's billing dates.
pub fn period_starting(start: NaiveDate, billing: &BillingSettings) -> Result<Period> {
    let months = billing.billing_frequency.months().ok_or_else(one_time)?;
    if billing_date_in_month_of(start, billing.billing_day) != start {
        return Err(Error::invalid(
            "period_start",
            format!("must fall on the customer's billing day ({} of the month, or its last day)", billing.billing_day),
        ));
    }
    let end = months_later(start, months, billing.billing_day)
        .ok_or_else(|| Error::invalid("period_start", "out of range"))?;
    Ok(Period { start, end })
}

/// The customer's first billing date: its billing day on or after the day it was created.
fn first_billing_date(created: NaiveDate, billing_day: u8) -> NaiveDate {
    let first = billing_date_in_month_of(created, billing_day);
    if first < created {
        months_later(created, 1, billing_day).unwrap_or(first)
    } else {
        first
    }
}

/// The partial period from the day the customer was created to its first billing day; none when it was
/// created on a billing day.
fn partial_first_period(created: NaiveDate, billing: &BillingSettings) -> Option<Period> {
    let first = first_billing_date(created, billing.billing_day);
    (first > created).then_some(Period { start: created, end: first })
}

/// The period starting on `start`: a full one from a billing date, or the partial first period from the
/// day the customer was created.
pub fn period_from(start: NaiveDate, created: NaiveDate, billing: &BillingSettings) -> Result<Period> {
    billing.billing_frequency.months().ok_or_else(one_time)?;
    match partial_first_period(created, billing) {
        Some(partial) if partial.start == start => Ok(partial),
        _ => period_starting(start, billing),
    }
}

/// The period `today` falls in (the partial first period included), or `None` before the customer was
/// created.
pub fn current_period(created: NaiveDate, billing: &BillingSettings, today: NaiveDate) -> Result<Option<Period>> {
    let months = billing.billing_frequency.months().ok_or_else(one_time)?;
    let first = first_billing_date(created, billing.billing_day);
    if today < created {
        return Ok(None);
    }
    if today < first {
        return Ok(partial_first_period(created, billing));
    }
    let elapsed = (today.year() - first.year()) * 12 + today.month() as i32 - first.month() as i32;
    let mut k = elapsed.max(0) as u32 / months;
    let mut start = months_later(first, k * months, billing.billing_day).unwrap_or(first);
    if start > today && k > 0 {
        k -= 1;
        start = months_later(first, k * months, billing.billing_day).unwrap_or(first);
    }
    Ok(Some(period_starting(start, billing)?))
}

/// The next period after the current one (or the first), for the overview.
pub fn next_period(created: NaiveDate, billing: &BillingSettings, today: NaiveDate) -> Result<Option<Period>> {
    match current_period(created, billing, today)? {
        Some(current) => Ok(Some(period_starting(current.end, billing)?)),
        None => Ok(Some(period_from(created, created, billing)?)),
    }
}

/// The invoice already billing part of `period`, if any.
fn overlapping(tx: &impl ReadTx, customer: CustomerId, period: Period) -> Result<Option<InvoiceId>> {
    let cid = customer.to_key();
    let before_end = key(&[&cid, &day_key(period.end)]);
    // Stored periods never overlap, so only the latest one starting before our end can reach into us.
    let latest = PERIODS.last_below(tx, &cid, &before_end)?;
    let mut found = None;
    if let Some(target) = latest.map(|k| PERIODS.get(tx, &k)).transpose()?.flatten() {
        if day_from_key(&target).is_some_and(|end| end > period.start) {
            found = InvoiceId::from_key(key_from(&target, 4));
        }
    }
    Ok(found)
}

/// The share of a full period that `period` is: its days over the days of the full period ending where it
/// ends. `None` for a full period.
fn partial_share(period: Period, billing: &BillingSettings, months: u32) -> Option<(u32, u32)> {
    let full_start =
        period.end.checked_sub_months(Months::new(months)).map(|d| billing_date_in_month_of(d, billing.billing_day))?;
    if full_start == period.start {
        return None;
    }
    let days = |from: NaiveDate| u32::try_from((period.end - from).num_days()).unwrap_or(0);
    Some((days(period.start), days(full_start)))
}

fn frequency_word(months: u32) -> &'static str {
    match months {
        1 => "monthly",
        3 => "quarterly",
        _ => "annual",
    }
}

/// The line items of a period: the monthly fee and each accepted proposal's recurring amount, times the
/// months in the period; for a partial period, their share of the full period by days, each line naming
/// its dates and fraction.
fn line_items(
    tx: &impl ReadTx,
    customer: CustomerId,
    billing: &BillingSettings,
    period: Period,
    months: u32,
) -> Result<Vec<LineItem>> {
    let share = partial_share(period, billing, months);
    let last_day = period.end.pred_opt().unwrap_or(period.end);
    let mut items = Vec::new();
    let mut add = |label: String, noun: &str, monthly: i64| {
        if monthly <= 0 {
            return;
        }
        items.push(match share {
            None => LineItem {
                description: label,
                quantity: months,
                unit_price: monthly,
                amount: monthly * i64::from(months),
            },
            Some((days, full)) => {
                let amount = portal_core::money::prorate(monthly * i64::from(months), days, full);
                let fraction = format!("{days}/{full} of the {} {noun}", frequency_word(months));
                let description = format!("{label}: {} – {last_day}, {fraction}", period.start);
                LineItem { description, quantity: 1, unit_price: amount, amount }
            }
        });
    };
    add("Monthly fee".into(), "fee", billing.monthly_fee);
    for proposal in portal_proposals::service::accepted_of_customer(tx, customer)? {
        if proposal.currency != billing.currency {
            tracing::warn!(proposal = %proposal.id, "recurring amount in another currency than the customer's billing; not billed");
            continue;
        }
        add(format!("{} (monthly)", proposal.title), "amount", proposal.monthly_recurring_amount);
    }
    Ok(items)
}

/// Generates the invoice of one period (`start` given, or the current one). Refuses (409) a period
/// already billed, a one-time customer, a customer before its first billing date and a period with
/// nothing to bill.
pub fn generate(tx: &WriteTx, scope: &CustomerScope, start: Option<NaiveDate>, now: Timestamp) -> Result<Invoice> {
    let customer_id = scope.id();
    let record = portal_customers::service::record(tx, scope)?;
    let (customer, billing) = (record.customer, record.billing);
    let today = now.datetime().date_naive();
    let created = customer.created_at.datetime().date_naive();
    let period = match start {
        Some(start) => period_from(start, created, &billing)?,
        None => current_period(created, &billing, today)?
            .ok_or_else(|| Error::conflict("the customer's first billing period has not started yet"))?,
    };
    if let Some(existing) = overlapping(tx, customer_id, period)? {
        return Err(Error::conflict(format!("the period {} – {} is already billed", period.start, period.end))
            .with_detail("invoice_id", existing.to_string()));
    }
    let months = billing.billing_frequency.months().ok_or_else(one_time)?;
    let items = line_items(tx, customer_id, &billing, period, months)?;
    if items.is_empty() {
        return Err(Error::conflict("nothing to bill: no monthly fee and no accepted recurring amounts"));
    }
    let mut invoice = Invoice {
        id: InvoiceId::generate(),
        customer_id,
        proposal_id: None,
        number: String::new(),
        status: InvoiceStatus::Pending,
        amount: 0,
        tax_rate: billing.tax_rate,
        tax_amount: 0,
        infrastructure_costs: 0,
        total_amount: 0,
        currency: billing.currency,
        issue_date: now,
        due_date: now.plus_secs(i64::from(billing.payment_terms_days) * 86_400),
        paid_date: None,
        description: Some(format!("Recurring charges for {} – {}", period.start, period.last_day())),
        milestone: None,
        line_items: items,
        payment_method: None,
        stripe_invoice_id: None,
        stripe_payment_intent_id: None,
        period: Some(period),
        refunded_amount: 0,
        refunded_at: None,
        credit_notes: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    invoice.recompute();
    invoices::insert(tx, invoice)
}

/// Most periods one scheduler run bills for a customer (the portal down for a year of monthly billing).
const MAX_CATCH_UP: usize = 12;

/// The scheduler's run for one customer: bills the current period when due and, first, any periods since
/// the last billed one that passed unbilled (the portal was down through them), oldest first. Quietly skips
/// customers that have nothing to bill now.
pub fn run_for(tx: &WriteTx, scope: &CustomerScope, now: Timestamp) -> Result<Vec<Invoice>> {
    let customer_id = scope.id();
    let record = portal_customers::service::record(tx, scope)?;
    let (customer, billing) = (record.customer, record.billing);
    if billing.billing_frequency.months().is_none() {
        return Ok(Vec::new());
    }
    let created = customer.created_at.datetime().date_naive();
    let Some(current) = current_period(created, &billing, now.datetime().date_naive())? else {
        return Ok(Vec::new());
    };
    let mut issued = Vec::new();
    for period in missed_periods(tx, customer_id, &billing, created, current)?.into_iter().chain([current]) {
        match generate(tx, scope, Some(period.start), now) {
            Ok(invoice) => issued.push(invoice),
            Err(e) if e.code() == portal_core::ErrorCode::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    Ok(issued)
}

/// The whole periods between the last billed period and `current`. None when nothing was billed yet (the
/// portal does not bill for the time before it billed a customer) or when the billing day or frequency
/// changed since (the old periods no longer line up); none that started before the customer was created
/// (an admin may bill those by hand, the scheduler does not).
fn missed_periods(
    tx: &impl ReadTx,
    customer: CustomerId,
    billing: &BillingSettings,
    created: NaiveDate,
    current: Period,
) -> Result<Vec<Period>> {
    let cid = customer.to_key();
    let mut last_end = None;
    PERIODS.visit_keys_desc(tx, &cid, None, |k| {
        last_end = Some(k.to_vec());
        Ok::<_, portal_core::Error>(false)
    })?;
    let Some(last_key) = last_end else { return Ok(Vec::new()) };
    let Some(mut start) = PERIODS.get(tx, &last_key)?.as_deref().and_then(day_from_key) else {
        return Ok(Vec::new());
    };
    let mut missed = Vec::new();
    while start < current.start && missed.len() < MAX_CATCH_UP {
        let Ok(period) = period_starting(start, billing) else { break };
        if period.end > current.start {
            break;
        }
        if period.start >= created {
            missed.push(period);
        }
        start = period.end;
    }
    Ok(missed)
}

fn one_time() -> Error {
    Error::conflict("the customer is billed one time only; one-time billing never recurs")
}

/// Bills every listed customer whose current period (or a period missed since the last billed one) is not
/// billed yet, one transaction per customer so
/// one customer's failure never blocks another's. Safe to run any time: a billed period is never billed
/// again. Returns how many invoices it issued.
pub async fn run_recurring(ctx: &Context) -> Result<usize> {
    let ids = ctx
        .store
        .read(|tx| {
            let mut ids = Vec::new();
            portal_customers::service::visit_listed(tx, |id| {
                ids.push(id);
                Ok(true)
            })?;
            Ok(ids)
        })
        .await?;
    let mut issued = 0;
    for id in ids {
        match ctx.store.write(move |tx| run_for(tx, &system_scope(tx, id)?, Timestamp::now())).await {
            Ok(invoices) => {
                for invoice in invoices {
                    issued += 1;
                    tracing::info!(customer = %id, invoice = %invoice.number, "recurring invoice issued");
                }
            }
            Err(e) => tracing::warn!(customer = %id, error = %e, "recurring invoice not issued"),
        }
    }
    Ok(issued)
}

/// The job that bills every customer's due periods.
pub(crate) fn job() -> Job {
    Job::new("recurring-invoices", Duration::from_secs(3600), |ctx: Context| async move {
        run_recurring(&ctx).await.map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_customers::model::BillingFrequency;

    fn billing(frequency: BillingFrequency, day: u8) -> BillingSettings {
        let mut b = BillingSettings::defaults(CustomerId::generate(), Timestamp::now());
        b.billing_frequency = frequency;
        b.billing_day = day;
        b
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn billing_day_31_is_clamped_to_short_months() {
        let b = billing(BillingFrequency::Monthly, 31);
        let p = period_starting(d("2026-01-31"), &b).unwrap();
        assert_eq!(p.end, d("2026-02-28"));
        let p = period_starting(d("2028-02-29"), &b).unwrap();
        assert_eq!(p.end, d("2028-03-31"));
        assert!(period_starting(d("2026-01-30"), &b).is_err());
    }

    #[test]
    fn current_periods_follow_the_frequency_from_the_first_billing_date() {
        let q = billing(BillingFrequency::Quarterly, 15);
        // Created after the 15th: a partial period up to next month's 15th, then quarters from there.
        let created = d("2026-01-20");
        assert_eq!(current_period(created, &q, d("2026-01-19")).unwrap(), None);
        let p = current_period(created, &q, d("2026-02-14")).unwrap().unwrap();
        assert_eq!((p.start, p.end), (d("2026-01-20"), d("2026-02-15")));
        assert_eq!(partial_share(p, &q, 3), Some((26, 92)));
        let p = current_period(created, &q, d("2026-02-15")).unwrap().unwrap();
        assert_eq!((p.start, p.end), (d("2026-02-15"), d("2026-05-15")));
        let p = current_period(created, &q, d("2026-05-14")).unwrap().unwrap();
        assert_eq!(p.start, d("2026-02-15"));
        let p = current_period(created, &q, d("2026-05-15")).unwrap().unwrap();
        assert_eq!((p.start, p.end), (d("2026-05-15"), d("2026-08-15")));
        let a = billing(BillingFrequency::Annual, 1);
        let p = current_period(d("2025-03-01"), &a, d("2026-11-25")).unwrap().unwrap();
        assert_eq!((p.start, p.end), (d("2026-03-01"), d("2027-03-01")));
        assert!(current_period(created, &billing(BillingFrequency::OneTime, 1), d("2026-05-01")).is_err());
    }

    /// The first period and its share of a full period, for a customer created on `created`.
    fn first(frequency: BillingFrequency, day: u8, created: &str) -> (Period, Option<(u32, u32)>) {
        let b = billing(frequency, day);
        let period = current_period(d(created), &b, d(created)).unwrap().unwrap();
        let months = frequency.months().unwrap();
        (period, partial_share(period, &b, months))
    }

    #[test]
    fn a_customer_created_between_billing_days_first_gets_a_prorated_partial_period() {
        // Created 2 December, billing day 1: 2–31 December is 30 of the 31 days of 1 December – 1 January.
        let (p, share) = first(BillingFrequency::Monthly, 1, "2026-12-02");
        assert_eq!((p.start, p.end), (d("2026-12-02"), d("2027-01-01")));
        assert_eq!(share, Some((30, 31)));
        assert_eq!(portal_core::money::prorate(100_000, 30, 31), 96_774);
        // The next period is a full one from the first billing day.
        let next = next_period(d("2026-12-02"), &billing(BillingFrequency::Monthly, 1), d("2026-12-20")).unwrap();
        assert_eq!(next.map(|n| (n.start, n.end)), Some((d("2027-01-01"), d("2027-02-01"))));
        // Quarterly and annual: the share of the full period ending on the first billing day.
        assert_eq!(first(BillingFrequency::Quarterly, 1, "2026-12-02").1, Some((30, 92)));
        assert_eq!(first(BillingFrequency::Annual, 1, "2026-12-02").1, Some((30, 365)));
        // Billing day 31 in February: 10–28 February of the 28 days from 31 January.
        let (p, share) = first(BillingFrequency::Monthly, 31, "2026-02-10");
        assert_eq!((p.start, p.end, share), (d("2026-02-10"), d("2026-02-28"), Some((18, 28))));
        // Created the day before billing day 31: one day of the 31 from 31 December.
        assert_eq!(first(BillingFrequency::Monthly, 31, "2027-01-30").1, Some((1, 31)));
    }

    #[test]
    fn a_customer_created_on_its_billing_day_starts_with_a_full_period() {
        let (p, share) = first(BillingFrequency::Monthly, 15, "2026-12-15");
        assert_eq!((p.start, p.end, share), (d("2026-12-15"), d("2027-01-15"), None));
        let (p, share) = first(BillingFrequency::Monthly, 31, "2026-12-31");
        assert_eq!((p.start, p.end, share), (d("2026-12-31"), d("2027-01-31"), None));
        // Billing day 31 falls on the 28th in February.
        let (p, share) = first(BillingFrequency::Monthly, 31, "2026-02-28");
        assert_eq!((p.start, p.end, share), (d("2026-02-28"), d("2026-03-31"), None));
        assert_eq!(first(BillingFrequency::Quarterly, 1, "2026-10-01").1, None);
    }

    #[test]
    fn explicit_periods_start_on_a_billing_day_or_the_day_of_creation() {
        let b = billing(BillingFrequency::Monthly, 1);
        let p = period_from(d("2026-12-02"), d("2026-12-02"), &b).unwrap();
        assert_eq!((p.start, p.end), (d("2026-12-02"), d("2027-01-01")));
        assert!(period_from(d("2026-12-03"), d("2026-12-02"), &b).is_err());
        assert!(current_period(d("2026-12-02"), &b, d("2026-12-01")).unwrap().is_none());
    }

    #[test]
    fn day_keys_sort_like_dates() {
        assert!(day_key(d("2026-01-31")) < day_key(d("2026-02-01")));
        assert_eq!(day_from_key(&day_key(d("2026-02-28"))), Some(d("2026-02-28")));
    }
}
