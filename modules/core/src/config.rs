//! The settings every part of the portal shares, from flags and environment variables: where the data
//! lives, the address, logs, the public URL, connection and rate limits. Each feature crate has its own
//! settings (a clap `Args` struct) and the binary flattens them all into `portal serve`.

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

/// The shared settings of `portal serve`.
#[derive(Debug, Clone, Args)]
#[group(id = "SharedConfig")]
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
    pub rate_limit: RateLimitConfig,
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

impl Config {
    /// Defaults for a store in `data_dir`, as tests and embedders start it.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            store: StoreConfig::new(data_dir),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Text,
            public_url: None,
            connections: ConnectionConfig {
                max_connections: 4096,
                max_connections_per_ip: 64,
                request_timeout_seconds: 10,
            },
            rate_limit: RateLimitConfig {
                mode: RateLimitMode::On,
                auth_per_minute: 5,
                profile_per_minute: 30,
                read_per_minute: 60,
                write_per_minute: 20,
                trusted_proxies: Vec::new(),
            },
        }
    }

    /// Whether the portal is reached over TLS (through a proxy that terminates it).
    pub fn served_over_tls(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}
