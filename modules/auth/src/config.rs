//! The sign-in settings (`portal serve` flattens them).

use clap::{Args, ValueEnum};
use portal_core::config::Secret;

/// Sign-in, sessions and tokens.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// HS256 key for access tokens (at least 32 bytes); generated and kept in the store when unset.
    #[arg(long, env = "PORTAL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// Minutes a session may sit unused before it ends.
    #[arg(long, env = "PORTAL_SESSION_IDLE_MINUTES", default_value_t = 30)]
    pub session_idle_minutes: u32,

    /// Hours after which a session ends however active it is.
    #[arg(long, env = "PORTAL_SESSION_ABSOLUTE_HOURS", default_value_t = 12)]
    pub session_absolute_hours: u32,

    /// `open` lets anyone register at `/auth/register`; `closed` refuses it (admins create users).
    #[arg(long, env = "PORTAL_REGISTRATION", value_enum, default_value = "open")]
    pub registration: Registration,

    /// Email of the first admin, created at start-up when the store has no admin yet.
    #[arg(long, env = "PORTAL_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of that first admin.
    #[arg(long, env = "PORTAL_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            registration: Registration::Open,
            admin_email: None,
            admin_password: None,
        }
    }
}
