//! Everything `portal serve` is configured by: the settings every part shares and each feature's own,
//! flattened into one set of flags and environment variables (so `portal serve --help` and the README's
//! configuration table list everything).

use std::path::PathBuf;

use clap::Args;
use portal_analytics::AnalyticsConfig;
use portal_auth::AuthConfig;
use portal_billing::BillingConfig;
use portal_core::{Context, Store};
use portal_documents::DocumentsConfig;
use portal_notify::NotifyConfig;
use portal_stripe::StripeConfig;
use portal_webhooks::WebhooksConfig;

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub core: portal_core::Config,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub notify: NotifyConfig,

    #[command(flatten)]
    pub stripe: StripeConfig,

    #[command(flatten)]
    pub analytics: AnalyticsConfig,

    #[command(flatten)]
    pub documents: DocumentsConfig,

    #[command(flatten)]
    pub billing: BillingConfig,

    #[command(flatten)]
    pub webhooks: WebhooksConfig,
}

impl Config {
    /// Defaults for a store in `data_dir`, as tests and embedders start it.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            core: portal_core::Config::for_data_dir(data_dir),
            auth: AuthConfig::default(),
            notify: NotifyConfig::default(),
            stripe: StripeConfig::default(),
            analytics: AnalyticsConfig::default(),
            documents: DocumentsConfig::default(),
            billing: BillingConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }

    /// What the modules run with: the store, the shared settings and each feature's own.
    pub fn into_context(self, store: Store) -> Context {
        Context::new(store, self.core)
            .with_settings(self.auth)
            .with_settings(self.notify)
            .with_settings(self.stripe)
            .with_settings(self.analytics)
            .with_settings(self.documents)
            .with_settings(self.billing)
            .with_settings(self.webhooks)
    }
}
