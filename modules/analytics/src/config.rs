//! The analytics settings (`portal serve` flattens them).

use std::path::PathBuf;

use clap::Args;

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

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            firebase_credentials: None,
            firebase_token_url: None,
            firebase_management_api_base: DEFAULT_FIREBASE_MANAGEMENT_API_BASE.into(),
            ga4_data_api_base: DEFAULT_GA4_DATA_API_BASE.into(),
            analytics_cache_seconds: 300,
            analytics_timeout_seconds: 10,
            analytics_retries: 2,
        }
    }
}
