//! Identity: users, passwords, sessions, access tokens, TOTP two-factor authentication, one-time sign-in
//! codes and password reset, with the `/auth` endpoints. Other modules use its user store (`users`) and
//! its service; the app installs the service as the request `Authenticator`.
#![forbid(unsafe_code)]

pub mod api;
mod authn;
pub mod config;
mod lockout;
pub mod model;
pub mod password;
pub mod service;
mod session_cache;
pub mod sessions;
mod tables;
pub mod tokens;
pub mod totp;
pub mod users;
mod verified_tokens;

use std::time::Duration;

use portal_core::WriteTx;
use portal_core::{store, Context, Error, Job, Module, Result, Role};

pub use api::{AuthApi, UserProfile, UserSettingsView};
pub use authn::{CSRF_COOKIE, CSRF_HEADER};
pub use config::{AuthConfig, Registration};
pub use service::{service, AuthService};

const SCHEMA_VERSION: u32 = 2;

pub struct AuthModule;

impl Module for AuthModule {
    const NAME: &'static str = "auth";
    type Api = AuthApi;

    fn install(tx: &WriteTx) -> Result<()> {
        tables::create_all(tx)?;
        match store::schema_version(tx, Self::NAME)? {
            0 | SCHEMA_VERSION => {}
            // Schema 2: the keys move to `auth.secrets`, which backups leave out.
            1 => drop(tables::KEYS.take_over(tx, tables::FORMER_KEYS)?),
            v => {
                return Err(Error::internal(format!("auth tables have schema {v}; this binary knows {SCHEMA_VERSION}")))
            }
        }
        // A new store, or one restored from a backup (which holds no keys): new keys.
        for name in [b"jwt".as_slice(), b"codes"] {
            if tables::KEYS.get(tx, name)?.is_none() {
                tables::KEYS.put(tx, name, &rand::random::<[u8; 32]>())?;
            }
        }
        store::set_schema_version(tx, Self::NAME, SCHEMA_VERSION)
    }

    fn api(ctx: &Context) -> Result<AuthApi> {
        Ok(AuthApi::new(service(ctx)?))
    }

    fn jobs(_ctx: &Context) -> Vec<Job> {
        vec![Job::new("auth.sweep", Duration::from_secs(300), |ctx| async move {
            let removed = service(&ctx)?.sweep().await?;
            if removed > 0 {
                tracing::info!(removed, "expired sessions and tokens swept");
            }
            Ok(())
        })]
    }
}

/// Creates an admin (the command line's `admin create`, and the first start with `PORTAL_ADMIN_*`).
pub async fn create_admin(ctx: &Context, email: &str, password: &str, name: &str) -> Result<model::User> {
    let email = users::normalize_email(email);
    let mut v = portal_core::error::Validation::default();
    v.check("email", users::validate_email(&email));
    v.check("name", users::validate_name(name));
    v.check("password", password::check_policy(password, &email));
    v.finish()?;
    let hash = password::hash(password.to_string()).await?;
    let user = service::new_user(email, name.trim().to_string(), Role::Admin, None, Some(hash));
    let stored = user.clone();
    ctx.store.write(move |tx| users::insert(tx, &stored)).await?;
    Ok(user)
}

/// What a first start with no admin logs: how to get in.
pub const NO_ADMIN_YET: &str = "no admin yet: stop the portal and run `portal admin create --email you@example.com \
     --password '…'`, or start it with PORTAL_ADMIN_EMAIL and PORTAL_ADMIN_PASSWORD set to create the first admin";

/// On start-up: creates the admin named by `PORTAL_ADMIN_EMAIL`/`PORTAL_ADMIN_PASSWORD` when the store
/// has no admin yet, and says how to create one when neither is there.
pub async fn bootstrap_admin(ctx: &Context) -> Result<()> {
    if ctx.store.read(users::any_admin).await? {
        return Ok(());
    }
    let settings = ctx.settings::<AuthConfig>()?;
    let (Some(email), Some(password)) = (&settings.admin_email, &settings.admin_password) else {
        tracing::warn!("{NO_ADMIN_YET}");
        return Ok(());
    };
    let user = create_admin(ctx, email, password.expose(), "Administrator").await?;
    tracing::info!(user_id = %user.id, "first admin created from PORTAL_ADMIN_EMAIL");
    Ok(())
}
