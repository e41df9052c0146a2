//! The mail and SMS settings (`portal serve` flattens them).

use clap::Args;
use portal_core::config::Secret;

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

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            mail_from: "Portal <portal@localhost>".into(),
            smtp_timeout_seconds: 10,
            sms_api_base: "https://api.twilio.com".into(),
            sms_account_sid: None,
            sms_auth_token: None,
            sms_from: None,
        }
    }
}
