//! `/analytics-dashboard`: each customer's app analytics (`AnalyticsMetrics`), from the Google Analytics 4
//! property of its Firebase project or from the events sent to the portal, with per-customer isolation
//! through core's access checks. The definitions every provider follows live in [`metrics`] and the
//! README's Analytics section.
#![forbid(unsafe_code)]

mod api;
pub mod config;
pub mod events;
mod firebase;
pub mod import;
mod ingest_auth;
pub mod keys;
pub mod local;
pub mod metrics;
pub mod provider;
pub mod range;
mod tables;
pub mod views;

use std::sync::Arc;

use portal_core::ids::CustomerId;
use portal_core::WriteTx;
use portal_core::{store, Context, Error, Module, Result};
use portal_customers::{CustomerData, Dependents};

pub use api::AnalyticsApi;
pub use config::AnalyticsConfig;
pub use firebase::FirebaseProvider;
pub use provider::{AnalyticsProvider, Providers, Source};

const SCHEMA_VERSION: u32 = 1;

pub struct AnalyticsModule;

/// Analytics are not financial records: a deleted customer's rollups and ingest keys go with it.
struct CustomerAnalytics;

impl CustomerData for CustomerAnalytics {
    fn holds_financial_records(&self, _tx: &WriteTx, _customer: CustomerId) -> Result<bool> {
        Ok(false)
    }

    fn remove_customer(&self, tx: &WriteTx, customer: CustomerId) -> Result<()> {
        keys::remove_customer(tx, customer)?;
        local::remove_customer(tx, customer)
    }
}

impl Module for AnalyticsModule {
    const NAME: &'static str = "analytics";
    type Api = AnalyticsApi;

    fn install(tx: &WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("analytics tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    /// The customers module asks this one before deleting a customer.
    fn register(ctx: &Context) -> Result<()> {
        Dependents::of(ctx).register(Arc::new(CustomerAnalytics));
        Ok(())
    }

    fn api(ctx: &Context) -> Result<AnalyticsApi> {
        let providers = Providers {
            local: Arc::new(local::LocalProvider::new(ctx.store.clone())),
            firebase: FirebaseProvider::from_config(&*ctx.settings::<AnalyticsConfig>()?)?.map(Arc::new),
        };
        Ok(AnalyticsApi::new(ctx.store.clone(), providers))
    }
}
