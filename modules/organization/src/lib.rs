//! `/organization`: the agency's own profile (legal name, address, tax id, contact, bank details, invoice
//! footer, default locale) and logo, which documents and mail show. One record: the portal serves one agency.
#![forbid(unsafe_code)]

mod api;
pub mod letterhead;
pub mod logo;
pub mod model;
pub mod service;

use portal_core::WriteTx;
use portal_core::{store, Context, Error, Module, Result};

pub use api::{OrganizationApi, OrganizationView};

const SCHEMA_VERSION: u32 = 1;

pub struct OrganizationModule;

impl Module for OrganizationModule {
    const NAME: &'static str = "organization";
    type Api = OrganizationApi;

    fn install(tx: &WriteTx) -> Result<()> {
        service::PROFILE.create(tx)?;
        service::LOGO.create(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 => store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION),
            SCHEMA_VERSION => Ok(()),
            v => {
                Err(Error::internal(format!("organization tables have schema {v}; this binary knows {SCHEMA_VERSION}")))
            }
        }
    }

    fn api(ctx: &Context) -> Result<OrganizationApi> {
        Ok(OrganizationApi::new(ctx.store.clone(), portal_documents::renderer(ctx)?))
    }
}
