//! `/billing`: invoices generated from accepted proposals (one per milestone) and per recurring billing
//! period, numbered `INV-YYYY-NNNNNN` gaplessly, tracked to paid, overdue or cancelled, with running
//! totals for stats and overviews. A scheduler bills each customer's period on its billing day and marks
//! invoices overdue.
#![forbid(unsafe_code)]

mod api;
pub mod cards;
pub mod collect;
mod config;
pub mod credit_notes;
mod credit_notes_api;
pub mod document;
pub mod invoices;
pub mod links;
pub mod mail;
pub mod milestones;
pub mod model;
mod payments_api;
pub mod reconcile;
pub mod recurring;
pub mod refunds;
pub mod stats;
mod tables;
#[cfg(test)]
mod testing;
pub mod unmatched;
pub mod views;
pub mod webhooks;

use std::sync::Arc;

use portal_core::ids::CustomerId;
use portal_core::WriteTx;
use portal_core::{store, Context, Error, Job, Module, Result, Timestamp};
use portal_customers::{CustomerData, Dependents};

pub use api::BillingApi;
pub use collect::{run_auto_charge, AutoChargeRun};
pub use config::{BillingConfig, ReminderDays};
pub use credit_notes_api::CreditNotesApi;
pub use payments_api::PaymentsApi;
use portal_stripe::StripeConfig;
pub use recurring::run_recurring;

/// 2: the invoice indexes share one table; 3: invoice mail (outstanding invoices get pay links and
/// reminders); 4: the mail queue and the reminder schedule share the indexes' table.
const SCHEMA_VERSION: u32 = 4;

pub struct BillingModule;

/// Invoices are financial records: a customer with any is archived, never deleted.
struct CustomerInvoices;

impl CustomerData for CustomerInvoices {
    fn holds_financial_records(&self, tx: &WriteTx, customer: CustomerId) -> Result<bool> {
        invoices::any_for_customer(tx, customer)
    }

    fn remove_customer(&self, _tx: &WriteTx, _customer: CustomerId) -> Result<()> {
        Ok(())
    }
}

impl Module for BillingModule {
    const NAME: &'static str = "billing";
    type Api = (BillingApi, PaymentsApi, CreditNotesApi);

    fn install(tx: &WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        links::install(tx)?;
        mail::install(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            1 => {
                tables::share_invoice_indexes(tx)?;
                mail::adopt_outstanding(tx, Timestamp::now())?;
                store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION)
            }
            2 => {
                mail::adopt_outstanding(tx, Timestamp::now())?;
                store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION)
            }
            3 => {
                tables::share_mail_indexes(tx)?;
                store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION)
            }
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("billing tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    /// The customers module asks this one before deleting a customer.
    fn register(ctx: &Context) -> Result<()> {
        Dependents::of(ctx).register(Arc::new(CustomerInvoices));
        Ok(())
    }

    fn api(ctx: &Context) -> Result<Self::Api> {
        let webhook_secret =
            ctx.settings::<StripeConfig>()?.stripe_webhook_secret.as_ref().map(|s| s.expose().to_string());
        let stripe = collect::client(ctx)?;
        Ok((
            BillingApi::new(ctx, webhook_secret)?,
            PaymentsApi::new(ctx, (*stripe).clone())?,
            CreditNotesApi::new(ctx, (*stripe).clone())?,
        ))
    }

    fn jobs(_ctx: &Context) -> Vec<Job> {
        vec![
            invoices::overdue_job(),
            recurring::job(),
            collect::auto_charge_job(),
            refunds::retry_job(),
            reconcile::job(),
            mail::sender::job(),
            mail::reminders::job(),
        ]
    }
}
