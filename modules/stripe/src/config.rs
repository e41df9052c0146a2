//! The Stripe settings (`portal serve` flattens them).

use clap::Args;
use portal_core::config::Secret;

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

    /// Publishable key (`pk_live_…` / `pk_test_…`): with it the pay and card pages take new cards through
    /// Stripe.js; without it they offer the saved card and bank transfer only.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,

    /// Where the pay and card pages load Stripe.js from (the only script origin their CSP allows).
    #[arg(long, env = "STRIPE_JS_URL", default_value = "https://js.stripe.com/v3/")]
    pub stripe_js_url: String,

    /// Seconds one Stripe call may take before the request fails with 503.
    #[arg(long, env = "STRIPE_TIMEOUT_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub stripe_timeout_seconds: u64,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_version: "2023-10-16".into(),
            stripe_api_base: "https://api.stripe.com/".into(),
            stripe_publishable_key: None,
            stripe_js_url: "https://js.stripe.com/v3/".into(),
            stripe_timeout_seconds: 20,
        }
    }
}
