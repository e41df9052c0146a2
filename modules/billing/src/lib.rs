//! `/billing`: invoices generated from accepted proposals (one per milestone) and per recurring billing
//! period, numbered `INV-YYYY-NNNNNN` gaplessly, tracked to paid, overdue or cancelled, with running
//! totals for stats and overviews. A scheduler bills each customer's period on its billing day and marks
//! invoices overdue.
#![forbid(unsafe_code)]

mod api;
pub mod collect;
pub mod invoices;
pub mod milestones;
pub mod model;
mod payments_api;
pub mod recurring;
pub mod stats;
mod tables;
pub mod unmatched;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use portal_core::ids::CustomerId;
use portal_core::{store, Context, Error, Job, Module, Result, Timestamp};
use portal_customers::{CustomerData, Dependents};
use redb::WriteTransaction;

pub use api::BillingApi;
pub use payments_api::PaymentsApi;
use portal_stripe::{Stripe, StripeConfig};

/// 2: the invoice indexes share one table.
const SCHEMA_VERSION: u32 = 2;

pub struct BillingModule;

/// Invoices are financial records: a customer with any is archived, never deleted.
struct CustomerInvoices;

impl CustomerData for CustomerInvoices {
    fn holds_financial_records(&self, tx: &WriteTransaction, customer: CustomerId) -> Result<bool> {
        invoices::any_for_customer(tx, customer)
    }

    fn remove_customer(&self, _tx: &WriteTransaction, _customer: CustomerId) -> Result<()> {
        Ok(())
    }
}

impl Module for BillingModule {
    const NAME: &'static str = "billing";
    type Api = (BillingApi, PaymentsApi);

    fn install(tx: &WriteTransaction) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            1 => {
                tables::share_invoice_indexes(tx)?;
                store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION)
            }
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("billing tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    fn api(ctx: &Context) -> Result<Self::Api> {
        Dependents::of(ctx).register(Arc::new(CustomerInvoices));
        let webhook_secret =
            ctx.settings::<StripeConfig>()?.stripe_webhook_secret.as_ref().map(|s| s.expose().to_string());
        let stripe = stripe_client(ctx)?;
        Ok((BillingApi::new(ctx.store.clone(), webhook_secret), PaymentsApi::new(ctx.store.clone(), (*stripe).clone())))
    }

    fn jobs(_ctx: &Context) -> Vec<Job> {
        vec![
            Job::new("invoice-overdue", Duration::from_secs(60), |ctx: Context| async move {
                let marked = ctx.store.write(|tx| invoices::mark_overdue(tx, Timestamp::now())).await?;
                if marked > 0 {
                    tracing::info!(marked, "invoices marked overdue");
                }
                Ok(())
            }),
            Job::new("recurring-invoices", Duration::from_secs(3600), |ctx: Context| async move {
                run_recurring(&ctx).await.map(|_| ())
            }),
            Job::new("auto-charge", Duration::from_secs(900), |ctx: Context| async move {
                let Some(stripe) = stripe_client(&ctx)?.as_ref().clone() else { return Ok(()) };
                run_auto_charge(&ctx.store, &stripe, Timestamp::now()).await.map(|_| ())
            }),
        ]
    }
}

/// The shared Stripe client (none without `STRIPE_SECRET_KEY`).
fn stripe_client(ctx: &Context) -> Result<Arc<Option<Stripe>>> {
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
    let due = store.read(move |tx| auto_charge_due(tx, now)).await?;
    let mut run = AutoChargeRun::default();
    for invoice in due {
        let claim = portal_core::idempotency::Claim::None;
        match collect::pay(store, stripe, invoice, None, collect::Trigger::Auto, &claim, now).await {
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
fn auto_charge_due(tx: &redb::ReadTransaction, now: Timestamp) -> Result<Vec<model::InvoiceId>> {
    let mut customers = Vec::new();
    portal_customers::service::visit_listed(tx, |id| {
        customers.push(id);
        Ok(true)
    })?;
    let mut due = Vec::new();
    for customer in customers {
        let billing = portal_customers::service::billing(tx, customer)?;
        if !billing.auto_charge || billing.stripe_payment_method_id.is_none() {
            continue;
        }
        for status in [model::InvoiceStatus::Pending, model::InvoiceStatus::Overdue] {
            for invoice in invoices::list(tx, customer, Some(status), None, usize::MAX)? {
                if invoice.status.is_outstanding()
                    && collect::auto_charge_due(&collect::collection(tx, invoice.id)?, now)
                {
                    due.push(invoice.id);
                }
            }
        }
    }
    Ok(due)
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
        match ctx.store.write(move |tx| recurring::run_for(tx, id, Timestamp::now())).await {
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
