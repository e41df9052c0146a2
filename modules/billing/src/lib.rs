//! `/billing`: invoices generated from accepted proposals (one per milestone) and per recurring billing
//! period, numbered `INV-YYYY-NNNNNN` gaplessly, tracked to paid, overdue or cancelled, with running
//! totals for stats and overviews. A scheduler bills each customer's period on its billing day and marks
//! invoices overdue.
#![forbid(unsafe_code)]

mod api;
pub mod invoices;
pub mod milestones;
pub mod model;
pub mod recurring;
pub mod stats;
mod tables;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use portal_core::ids::CustomerId;
use portal_core::{store, Context, Error, Job, Module, Result, Timestamp};
use portal_customers::{CustomerData, Dependents};
use redb::WriteTransaction;

pub use api::BillingApi;

const SCHEMA_VERSION: u32 = 1;

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
    type Api = BillingApi;

    fn install(tx: &WriteTransaction) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("billing tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    fn api(ctx: &Context) -> Result<BillingApi> {
        Dependents::of(ctx).register(Arc::new(CustomerInvoices));
        let webhook_secret = ctx.config.stripe.stripe_webhook_secret.as_ref().map(|s| s.expose().to_string());
        Ok(BillingApi::new(ctx.store.clone(), webhook_secret))
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
        ]
    }
}

/// Bills every listed customer whose current period is not billed yet, one transaction per customer so
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
            Ok(Some(invoice)) => {
                issued += 1;
                tracing::info!(customer = %id, invoice = %invoice.number, "recurring invoice issued");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(customer = %id, error = %e, "recurring invoice not issued"),
        }
    }
    Ok(issued)
}
