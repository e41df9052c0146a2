//! Stats and overviews from the running totals (kept in each invoice's own transaction) and the status
//! indexes: no scan of the invoices. Figures are as of the moment asked: an invoice past its due date is
//! overdue at once, not after the next sweep.

use std::collections::BTreeMap;

use portal_core::ids::CustomerId;
use portal_core::money::to_major;
use portal_core::{Currency, ReadTx, Result, Timestamp};
use portal_customers::model::{BillingSettings, CustomerStatus};
use portal_customers::service::CustomerRecord;
use portal_customers::{system_scope, CustomerScope};

use crate::invoices::{self, ALL};
use crate::model::{InvoiceStatus, Totals};
use crate::recurring;
use crate::views::{
    BillingOverview, BillingStats, BillingSummary, CurrencyStats, CustomerStatusCounts, InvoiceStatusCounts,
    InvoiceView,
};

fn slot(totals: &Totals, status: InvoiceStatus) -> (u64, i64) {
    totals.of(status)
}

/// Monthly recurring revenue of one customer, in its billing currency.
fn monthly_recurring(tx: &impl ReadTx, customer: CustomerId, billing: &BillingSettings) -> Result<i64> {
    let mut mrr = if billing.billing_frequency.months().is_some() { billing.monthly_fee } else { 0 };
    for p in portal_proposals::service::accepted_of_customer(tx, customer)? {
        if p.currency == billing.currency {
            mrr += p.monthly_recurring_amount;
        }
    }
    Ok(mrr)
}

pub fn stats(tx: &impl ReadTx, now: Timestamp) -> Result<BillingStats> {
    let this_month = invoices::year_month(now);
    let mut mrr: BTreeMap<Currency, i64> = BTreeMap::new();
    let mut active = Vec::new();
    portal_customers::service::visit_by_status(tx, CustomerStatus::Active, |id| {
        active.push(id);
        Ok(true)
    })?;
    for id in active {
        let billing = portal_customers::service::billing(tx, &system_scope(tx, id)?)?;
        *mrr.entry(billing.currency).or_default() += monthly_recurring(tx, id, &billing)?;
    }
    let mut by_status = InvoiceStatusCounts::default();
    let mut currencies = Vec::new();
    let totals = invoices::totals_at(tx, &ALL, now)?;
    for (currency, _) in &totals {
        mrr.entry(*currency).or_default();
    }
    for (currency, recurring) in mrr {
        let t = totals.iter().find(|(c, _)| *c == currency).map(|(_, t)| t.clone()).unwrap_or_default();
        let (paid_n, paid) = slot(&t, InvoiceStatus::Paid);
        let (pending_n, pending) = slot(&t, InvoiceStatus::Pending);
        let (overdue_n, overdue) = slot(&t, InvoiceStatus::Overdue);
        by_status.draft += t.of(InvoiceStatus::Draft).0;
        by_status.pending += pending_n;
        by_status.paid += paid_n;
        by_status.overdue += overdue_n;
        by_status.cancelled += t.of(InvoiceStatus::Cancelled).0;
        let money = |minor| to_major(minor, currency);
        currencies.push(CurrencyStats {
            currency: currency.to_string(),
            revenue_all_time: money(paid - t.refunded),
            revenue_this_month: money(invoices::paid_in_month(tx, &ALL, currency, this_month)?),
            refunded_amount: money(t.refunded),
            outstanding_amount: money(pending + overdue),
            outstanding_count: pending_n + overdue_n,
            overdue_amount: money(overdue),
            overdue_count: overdue_n,
            mrr: money(recurring),
            arr: money(recurring * 12),
        });
    }
    let mut customers = CustomerStatusCounts::default();
    for (status, n) in portal_customers::service::count_by_status(tx)? {
        match status {
            CustomerStatus::Active => customers.active = n,
            CustomerStatus::Inactive => customers.inactive = n,
            CustomerStatus::Onboarding => customers.onboarding = n,
            CustomerStatus::Pending => customers.pending = n,
        }
    }
    Ok(BillingStats { currencies, invoices_by_status: by_status, customers_by_status: customers, generated_at: now })
}

pub fn overview(tx: &impl ReadTx, scope: &CustomerScope, now: Timestamp) -> Result<BillingOverview> {
    let customer_id = scope.id();
    let CustomerRecord { customer, billing } = portal_customers::service::record(tx, scope)?;
    let currency = billing.currency;
    let totals = invoices::totals_at(tx, &customer_id.to_key(), now)?
        .into_iter()
        .find(|(c, _)| *c == currency)
        .map(|(_, t)| t)
        .unwrap_or_default();
    let (pending_n, pending) = slot(&totals, InvoiceStatus::Pending);
    let (overdue_n, overdue) = slot(&totals, InvoiceStatus::Overdue);
    let (_, paid) = slot(&totals, InvoiceStatus::Paid);
    let today = now.datetime().date_naive();
    let next = match billing.billing_frequency.months() {
        Some(months) => recurring::next_period(customer.created_at.datetime().date_naive(), &billing, today)?
            .map(|p| {
                let amount = monthly_recurring(tx, customer_id, &billing)? * i64::from(months);
                Ok::<_, portal_core::Error>((p.start.to_string(), amount + billing.tax_rate.tax_on(amount)))
            })
            .transpose()?,
        None => None,
    };
    let recent = invoices::list(tx, scope, None, None, 5)?;
    let money = |minor| to_major(minor, currency);
    Ok(BillingOverview {
        customer_id,
        currency: currency.to_string(),
        outstanding_amount: money(pending + overdue),
        outstanding_count: pending_n + overdue_n,
        overdue_amount: money(overdue),
        overdue_count: overdue_n,
        paid_to_date: money(paid - totals.refunded),
        next_invoice_date: next.as_ref().map(|(date, _)| date.clone()),
        next_invoice_amount: next.map(|(_, amount)| money(amount)),
        recent_invoices: recent.iter().map(|i| InvoiceView::at(i, now)).collect(),
        billing_settings: BillingSummary {
            payment_method: billing.payment_method,
            billing_frequency: billing.billing_frequency,
            monthly_fee: money(billing.monthly_fee),
            currency: currency.to_string(),
            billing_day: billing.billing_day,
            auto_charge: billing.auto_charge,
            tax_rate: billing.tax_rate.percent(),
            payment_terms_days: billing.payment_terms_days,
            has_saved_payment_method: billing.stripe_payment_method_id.is_some(),
        },
    })
}
