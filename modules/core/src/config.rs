//! Settings from flags and environment variables, in one place so `portal serve --help` and the
//! README's configuration table list everything. Feature sections are added as their modules arrive.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

/// A setting that must not appear in logs or `Debug` output (keys, passwords, URLs with credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub use portal_store::{StoreConfig, DEFAULT_CACHE_MB};

/// Settings of `portal serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub store: StoreConfig,

    /// Address to listen on.
    #[arg(long, env = "PORTAL_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Log line format.
    #[arg(long, env = "PORTAL_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Public base URL (used in links sent by mail; https turns on Secure cookies and HSTS).
    #[arg(long, env = "PORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,

    #[command(flatten)]
    pub connections: ConnectionConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub notify: NotifyConfig,

    #[command(flatten)]
    pub rate_limit: RateLimitConfig,

    #[command(flatten)]
    pub stripe: StripeConfig,

    #[command(flatten)]
    pub analytics: AnalyticsConfig,
}

/// Limits on client connections, so that slow or greedy clients cannot take the server from the others.
#[derive(Debug, Clone, Args)]
pub struct ConnectionConfig {
    /// Open connections at most; beyond it new ones are closed at once (also kept below the process's
    /// file limit).
    #[arg(long, env = "PORTAL_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Open connections at most per client IP (trusted proxies count only toward the total).
    #[arg(long, env = "PORTAL_MAX_CONNECTIONS_PER_IP", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// Seconds a client has to send a request's headers, and its body, once it starts one; and how long an
    /// idle keep-alive connection stays open.
    #[arg(long, env = "PORTAL_REQUEST_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_seconds: u64,
}

/// Stripe: payments, saved cards and webhooks. Without a secret key the payment endpoints answer 503.
#[derive(Debug, Clone, Args)]
pub struct StripeConfig {
    /// Secret API key (`sk_live_…` / `sk_test_…`).
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Signing secret of the webhook endpoint (`whsec_…`).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,

    /// Stripe API version; this build speaks 2023-10-16.
    #[arg(long, env = "STRIPE_API_VERSION", default_value = "2023-10-16")]
    pub stripe_api_version: String,

    /// Base URL of the Stripe API (a local test server in tests).
    #[arg(long, env = "STRIPE_API_BASE", default_value = "https://api.stripe.com/")]
    pub stripe_api_base: String,

    /// Seconds one Stripe call may take before the request fails with 503.
    #[arg(long, env = "STRIPE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub stripe_timeout_seconds: u64,
}

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

/// Outgoing mail and SMS. With neither configured, messages go to the log and the store's outbox.
#[derive(Debug, Clone, Args)]
pub struct NotifyConfig {
    /// SMTP server, e.g. `smtp://user:pass@mail.example.com:587` (STARTTLS required for any remote host),
    /// `smtps://…:465` (TLS), `smtp://127.0.0.1:2525` (plain on loopback) or `…?tls=none` (plain, explicitly).
    #[arg(long, env = "PORTAL_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,

    /// Sender of outgoing mail.
    #[arg(long, env = "PORTAL_MAIL_FROM", default_value = "Portal <portal@localhost>")]
    pub mail_from: String,

    /// Seconds one mail may take to send (connecting and the whole SMTP exchange) before the request that
    /// sends it fails with 503.
    #[arg(long, env = "PORTAL_SMTP_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub smtp_timeout_seconds: u64,

    /// Base URL of the SMS gateway speaking Twilio's Messages API.
    #[arg(long, env = "PORTAL_SMS_API_BASE", default_value = "https://api.twilio.com")]
    pub sms_api_base: String,

    /// Account SID of the SMS gateway (SMS is off when unset).
    #[arg(long, env = "PORTAL_SMS_ACCOUNT_SID")]
    pub sms_account_sid: Option<String>,

    /// Auth token of the SMS gateway.
    #[arg(long, env = "PORTAL_SMS_AUTH_TOKEN", hide_env_values = true)]
    pub sms_auth_token: Option<Secret>,

    /// Sender number (E.164) of outgoing SMS.
    #[arg(long, env = "PORTAL_SMS_FROM")]
    pub sms_from: Option<String>,
}

/// Request rate limits per class, per signed-in user or else per client IP.
#[derive(Debug, Clone, Args)]
pub struct RateLimitConfig {
    /// `on`, or `off` for load tests.
    #[arg(long = "rate-limit", env = "PORTAL_RATE_LIMIT", value_enum, default_value = "on")]
    pub mode: RateLimitMode,

    /// Sign-in and other /auth requests per minute.
    #[arg(long, env = "PORTAL_RATE_LIMIT_AUTH", default_value_t = 5)]
    pub auth_per_minute: u32,

    /// /users profile requests per minute.
    #[arg(long, env = "PORTAL_RATE_LIMIT_PROFILE", default_value_t = 30)]
    pub profile_per_minute: u32,

    /// Other reads per minute.
    #[arg(long, env = "PORTAL_RATE_LIMIT_READ", default_value_t = 60)]
    pub read_per_minute: u32,

    /// Other writes per minute.
    #[arg(long, env = "PORTAL_RATE_LIMIT_WRITE", default_value_t = 20)]
    pub write_per_minute: u32,

    /// Proxies whose `X-Forwarded-For` is believed (comma-separated IPs); none by default.
    #[arg(long, env = "PORTAL_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimitMode {
    On,
    Off,
}

/// App analytics. With a service account, customers with a Firebase project read their figures from the
/// project's Google Analytics 4 property; everyone else's come from the events sent to the portal.
#[derive(Debug, Clone, Args)]
pub struct AnalyticsConfig {
    /// Service-account JSON file with read access to the customers' Firebase projects and GA4 properties.
    #[arg(long, env = "FIREBASE_CREDENTIALS")]
    pub firebase_credentials: Option<PathBuf>,

    /// OAuth token endpoint to use instead of the credentials' `token_uri`.
    #[arg(long, env = "FIREBASE_TOKEN_URL")]
    pub firebase_token_url: Option<String>,

    /// Base URL of the Firebase Management API.
    #[arg(long, env = "FIREBASE_MANAGEMENT_API_BASE", default_value = DEFAULT_FIREBASE_MANAGEMENT_API_BASE)]
    pub firebase_management_api_base: String,

    /// Base URL of the Google Analytics Data API.
    #[arg(long, env = "GA4_DATA_API_BASE", default_value = DEFAULT_GA4_DATA_API_BASE)]
    pub ga4_data_api_base: String,

    /// Seconds a dashboard read from Google Analytics is reused (GA4 quotas per property are small).
    #[arg(long, env = "PORTAL_ANALYTICS_CACHE_SECONDS", default_value_t = 300)]
    pub analytics_cache_seconds: u64,

    /// Seconds one call to Google may take.
    #[arg(long, env = "PORTAL_ANALYTICS_TIMEOUT_SECONDS", default_value_t = 10)]
    pub analytics_timeout_seconds: u64,

    /// Retries, with backoff, of a call Google answered with 429 or 5xx or not at all.
    #[arg(long, env = "PORTAL_ANALYTICS_RETRIES", default_value_t = 2)]
    pub analytics_retries: u32,
}

pub const DEFAULT_FIREBASE_MANAGEMENT_API_BASE: &str = "https://firebase.googleapis.com";
pub const DEFAULT_GA4_DATA_API_BASE: &str = "https://analyticsdata.googleapis.com";

impl Config {
    /// Defaults for a store in `data_dir`, as tests and embedders start it.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            store: StoreConfig::new(data_dir),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Text,
            public_url: None,
            auth: AuthConfig {
                jwt_secret: None,
                session_idle_minutes: 30,
                session_absolute_hours: 12,
                registration: Registration::Open,
                admin_email: None,
                admin_password: None,
            },
            connections: ConnectionConfig {
                max_connections: 4096,
                max_connections_per_ip: 64,
                request_timeout_seconds: 10,
            },
            notify: NotifyConfig {
                smtp_url: None,
                mail_from: "Portal <portal@localhost>".into(),
                smtp_timeout_seconds: 10,
                sms_api_base: "https://api.twilio.com".into(),
                sms_account_sid: None,
                sms_auth_token: None,
                sms_from: None,
            },
            rate_limit: RateLimitConfig {
                mode: RateLimitMode::On,
                auth_per_minute: 5,
                profile_per_minute: 30,
                read_per_minute: 60,
                write_per_minute: 20,
                trusted_proxies: Vec::new(),
            },
            stripe: StripeConfig {
                stripe_secret_key: None,
                stripe_webhook_secret: None,
                stripe_api_version: "2023-10-16".into(),
                stripe_api_base: "https://api.stripe.com/".into(),
                stripe_timeout_seconds: 20,
            },
            analytics: AnalyticsConfig {
                firebase_credentials: None,
                firebase_token_url: None,
                firebase_management_api_base: DEFAULT_FIREBASE_MANAGEMENT_API_BASE.into(),
                ga4_data_api_base: DEFAULT_GA4_DATA_API_BASE.into(),
                analytics_cache_seconds: 300,
                analytics_timeout_seconds: 10,
                analytics_retries: 2,
            },
        }
    }

    /// Whether the portal is reached over TLS (through a proxy that terminates it).
    pub fn served_over_tls(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}
