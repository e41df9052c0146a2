//! Recurring invoices: one per billing period. Periods start on the customer's billing day (clamped to the
//! month's last day) every 1, 3 or 12 months, counted from the first billing day on or after the customer
//! was created; one-time billing never recurs. A period is billed once: the periods table refuses any
//! overlap, inside the invoice's own transaction.

use chrono::{Datelike, Months, NaiveDate};
use portal_core::ids::CustomerId;
use portal_core::table::{key, Page};
use portal_core::{Error, ReadTx, Result, Timestamp};
use portal_customers::model::BillingSettings;
use redb::WriteTransaction;

use crate::invoices;
use crate::model::{Invoice, InvoiceId, InvoiceStatus, LineItem, Period};
use crate::tables::PERIODS;

/// 4 key bytes that sort like the dates.
pub(crate) fn day_key(date: NaiveDate) -> [u8; 4] {
    ((date.num_days_from_ce() as u32) ^ (1 << 31)).to_be_bytes()
}

fn day_from_key(bytes: &[u8]) -> Option<NaiveDate> {
    let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    NaiveDate::from_num_days_from_ce_opt((u32::from_be_bytes(raw) ^ (1 << 31)) as i32)
}

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

/// The period `today` falls in, or `None` before the first billing date.
pub fn current_period(created: NaiveDate, billing: &BillingSettings, today: NaiveDate) -> Result<Option<Period>> {
    let months = billing.billing_frequency.months().ok_or_else(one_time)?;
    let mut first = billing_date_in_month_of(created, billing.billing_day);
    if first < created {
        first = months_later(created, 1, billing.billing_day).unwrap_or(first);
    }
    if today < first {
        return Ok(None);
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
        None => {
            let mut first = billing_date_in_month_of(created, billing.billing_day);
            if first < created {
                first = months_later(created, 1, billing.billing_day).unwrap_or(first);
            }
            Ok(Some(period_starting(first, billing)?))
        }
    }
}

/// The invoice already billing part of `period`, if any.
fn overlapping(tx: &impl ReadTx, customer: CustomerId, period: Period) -> Result<Option<InvoiceId>> {
    let cid = customer.to_key();
    let before_end = key(&[&cid, &day_key(period.end)]);
    // Stored periods never overlap, so only the latest one starting before our end can reach into us.
    let latest = PERIODS.page_keys(tx, &Page { prefix: &cid, after: Some(&before_end), limit: 1 })?;
    let mut found = None;
    if let Some(target) = latest.first().map(|k| PERIODS.get(tx, k)).transpose()?.flatten() {
        if day_from_key(&target).is_some_and(|end| end > period.start) {
            found = InvoiceId::from_key(&target[4..]);
        }
    }
    Ok(found)
}

/// The line items of a period: the monthly fee and each accepted proposal's recurring amount, times the
/// months in the period.
fn line_items(tx: &impl ReadTx, customer: CustomerId, billing: &BillingSettings, months: u32) -> Result<Vec<LineItem>> {
    let mut items = Vec::new();
    let mut add = |description: String, monthly: i64| {
        if monthly > 0 {
            items.push(LineItem {
                description,
                quantity: months,
                unit_price: monthly,
                amount: monthly * i64::from(months),
            });
        }
    };
    add("Monthly fee".into(), billing.monthly_fee);
    for proposal in portal_proposals::service::accepted_of_customer(tx, customer)? {
        if proposal.currency != billing.currency {
            tracing::warn!(proposal = %proposal.id, "recurring amount in another currency than the customer's billing; not billed");
            continue;
        }
        add(format!("{} (monthly)", proposal.title), proposal.monthly_recurring_amount);
    }
    Ok(items)
}

/// Generates the invoice of one period (`start` given, or the current one). Refuses (409) a period
/// already billed, a one-time customer, a customer before its first billing date and a period with
/// nothing to bill.
pub fn generate(
    tx: &WriteTransaction,
    customer_id: CustomerId,
    start: Option<NaiveDate>,
    now: Timestamp,
) -> Result<Invoice> {
    let customer = portal_customers::service::get_listed(tx, customer_id)?;
    let billing = portal_customers::service::billing(tx, customer_id)?;
    let today = now.datetime().date_naive();
    let period = match start {
        Some(start) => period_starting(start, &billing)?,
        None => current_period(customer.created_at.datetime().date_naive(), &billing, today)?
            .ok_or_else(|| Error::conflict("the customer's first billing period has not started yet"))?,
    };
    if let Some(existing) = overlapping(tx, customer_id, period)? {
        return Err(Error::conflict(format!("the period {} – {} is already billed", period.start, period.end))
            .with_detail("invoice_id", existing.to_string()));
    }
    let months = billing.billing_frequency.months().ok_or_else(one_time)?;
    let items = line_items(tx, customer_id, &billing, months)?;
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
        description: Some(format!("Recurring charges for {} – {}", period.start, period.end)),
        milestone: None,
        line_items: items,
        payment_method: None,
        stripe_invoice_id: None,
        stripe_payment_intent_id: None,
        period: Some(period),
        refunded_amount: 0,
        refunded_at: None,
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
pub fn run_for(tx: &WriteTransaction, customer_id: CustomerId, now: Timestamp) -> Result<Vec<Invoice>> {
    let billing = portal_customers::service::billing(tx, customer_id)?;
    if billing.billing_frequency.months().is_none() {
        return Ok(Vec::new());
    }
    let customer = portal_customers::service::get_listed(tx, customer_id)?;
    let created = customer.created_at.datetime().date_naive();
    let Some(current) = current_period(created, &billing, now.datetime().date_naive())? else {
        return Ok(Vec::new());
    };
    let mut issued = Vec::new();
    for period in missed_periods(tx, customer_id, &billing, current)?.into_iter().chain([current]) {
        match generate(tx, customer_id, Some(period.start), now) {
            Ok(invoice) => issued.push(invoice),
            Err(e) if e.code() == portal_core::ErrorCode::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    Ok(issued)
}

/// The whole periods between the last billed period and `current`. None when nothing was billed yet (the
/// portal does not bill for the time before it billed a customer) or when the billing day or frequency
/// changed since (the old periods no longer line up).
fn missed_periods(
    tx: &impl ReadTx,
    customer: CustomerId,
    billing: &BillingSettings,
    current: Period,
) -> Result<Vec<Period>> {
    let cid = customer.to_key();
    let mut last_end = None;
    PERIODS.visit_keys_desc(tx, &cid, None, |k| {
        last_end = Some(k.to_vec());
        Ok(false)
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
        missed.push(period);
        start = period.end;
    }
    Ok(missed)
}

fn one_time() -> Error {
    Error::conflict("the customer is billed one time only; one-time billing never recurs")
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
        // Created after the 15th: the first period starts on the next month's 15th.
        let created = d("2026-01-20");
        assert_eq!(current_period(created, &q, d("2026-02-14")).unwrap(), None);
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

    #[test]
    fn day_keys_sort_like_dates() {
        assert!(day_key(d("2026-01-31")) < day_key(d("2026-02-01")));
        assert_eq!(day_from_key(&day_key(d("2026-02-28"))), Some(d("2026-02-28")));
    }
}
