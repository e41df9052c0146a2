//! `/users/me`: the signed-in user's own profile (name, phone, email, password) and settings.
#![forbid(unsafe_code)]

mod api;
mod service;

use portal_core::{Context, Module, Result};

pub use api::UsersApi;

pub struct UsersModule;

impl Module for UsersModule {
    const NAME: &'static str = "users";
    type Api = UsersApi;

    /// Users live in the auth module's tables; this module has none of its own.
    fn install(_tx: &portal_core::WriteTx) -> Result<()> {
        Ok(())
    }

    fn api(ctx: &Context) -> Result<UsersApi> {
        Ok(UsersApi::new(portal_auth::service(ctx)?))
    }
}
