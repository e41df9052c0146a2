//! `/proposals`: sales proposals with milestone billing schedules; draft → sent → accepted | rejected, and
//! expired once `valid_until` passes. Accepted proposals are financial records: the billing module turns
//! them into invoices and recurring charges, and a customer holding one is archived, never deleted.
#![forbid(unsafe_code)]

mod api;
pub mod document;
pub mod model;
pub mod service;
mod tables;

use std::sync::Arc;
use std::time::Duration;

use portal_core::ids::CustomerId;
use portal_core::WriteTx;
use portal_core::{store, Context, Error, Job, Module, Result, Timestamp};
use portal_customers::{CustomerData, Dependents};

pub use api::{MilestoneView, ProposalView, ProposalsApi};

const SCHEMA_VERSION: u32 = 1;

pub struct ProposalsModule;

/// Accepted proposals keep their customer; the others go with it.
struct CustomerProposals;

impl CustomerData for CustomerProposals {
    fn holds_financial_records(&self, tx: &WriteTx, customer: CustomerId) -> Result<bool> {
        service::any_accepted(tx, customer)
    }

    fn remove_customer(&self, tx: &WriteTx, customer: CustomerId) -> Result<()> {
        service::remove_customer(tx, customer)
    }
}

impl Module for ProposalsModule {
    const NAME: &'static str = "proposals";
    type Api = ProposalsApi;

    fn install(tx: &WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("proposal tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    /// The customers module asks this one before deleting a customer.
    fn register(ctx: &Context) -> Result<()> {
        Dependents::of(ctx).register(Arc::new(CustomerProposals));
        Ok(())
    }

    fn api(ctx: &Context) -> Result<ProposalsApi> {
        Ok(ProposalsApi::new(ctx.store.clone(), portal_documents::renderer(ctx)?))
    }

    /// Records expiry of open proposals past their `valid_until` (reads already show them expired).
    fn jobs(_ctx: &Context) -> Vec<Job> {
        vec![Job::new("proposal-expiry", Duration::from_secs(60), |ctx: Context| async move {
            let expired = ctx.store.write(|tx| service::expire_due(tx, Timestamp::now())).await?;
            if expired > 0 {
                tracing::info!(expired, "proposals expired");
            }
            Ok(())
        })]
    }
}
