//! Where the data lives (shared by `serve` and the offline commands).

use std::path::PathBuf;

use clap::Args;

/// The store's page cache unless configured: as fast as 1 GiB on a 1 GB store (the operating system caches
/// the file too), at a fraction of the memory.
pub const DEFAULT_CACHE_MB: u64 = 64;

#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Directory of the store (`portal.redb`); created if missing.
    #[arg(long, env = "PORTAL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Memory for the store's page cache, in MiB; the operating system's file cache holds the rest.
    #[arg(long, env = "PORTAL_CACHE_MB", default_value_t = DEFAULT_CACHE_MB, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_mb: u64,

    /// A PostgreSQL database (15 or newer) to keep the store in instead of the redb file, e.g.
    /// `postgres://portal:secret@db.internal/portal`; several portals may share it.
    #[arg(long, env = "PORTAL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The schema of the PostgreSQL database that holds the portal's tables (created if missing).
    #[arg(long, env = "PORTAL_DATABASE_SCHEMA", default_value = "portal")]
    pub database_schema: String,
}

impl StoreConfig {
    /// The store in `data_dir` with the default cache.
    pub fn new(data_dir: PathBuf) -> Self {
        Self { data_dir, cache_mb: DEFAULT_CACHE_MB, database_url: None, database_schema: "portal".into() }
    }

    pub fn cache_bytes(&self) -> usize {
        usize::try_from(self.cache_mb << 20).unwrap_or(usize::MAX)
    }
}
