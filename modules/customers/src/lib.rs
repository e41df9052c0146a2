//! `/customers`: customer accounts, their billing settings and their users, with per-customer isolation
//! through one scope type ([`scope::CustomerScope`]) that every module's customer data goes through. Other modules read customers through [`service`]'s functions and register
//! their per-customer data in [`Dependents`] so deletion never destroys a financial record.
#![forbid(unsafe_code)]

mod api;
pub mod dependents;
pub mod model;
pub mod scope;
mod search;
pub mod service;
mod tables;
mod validate;

use portal_core::{store, Context, Error, Module, Result};

const SCHEMA_VERSION: u32 = 1;

pub use api::{BillingSettingsView, CustomerView, CustomersApi};
pub use dependents::{CustomerData, Dependents};
pub use scope::{expect_scope_of, scope, scope_of, system_scope, CustomerScope};

pub struct CustomersModule;

impl Module for CustomersModule {
    const NAME: &'static str = "customers";
    type Api = CustomersApi;

    fn install(tx: &portal_core::WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            SCHEMA_VERSION => Ok(()),
            v => Err(Error::internal(format!("customer tables have schema {v}; this binary knows {SCHEMA_VERSION}"))),
        }
    }

    fn api(ctx: &Context) -> Result<CustomersApi> {
        Ok(CustomersApi::new(ctx.store.clone(), portal_auth::service(ctx)?, Dependents::of(ctx)))
    }
}
