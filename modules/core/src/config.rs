//! Settings from flags and environment variables, in one place so `portal serve --help` and the
//! README's configuration table list everything. Feature sections are added as their modules arrive.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Largest accepted request body.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the data lives (shared by `serve` and the offline commands).
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Directory of the store (`portal.redb`); created if missing.
    #[arg(long, env = "PORTAL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

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
}

impl Config {
    /// Defaults for a store in `data_dir`, as tests and embedders start it.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            store: StoreConfig { data_dir },
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Text,
            public_url: None,
        }
    }

    /// Whether the portal is reached over TLS (through a proxy that terminates it).
    pub fn served_over_tls(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}
