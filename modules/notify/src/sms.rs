//! SMS through Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form fields
//! `To`, `From`, `Body`, HTTP basic auth with the account SID and auth token; `201` with the message
//! resource on success, `{code, message, status}` on failure.

use std::time::Duration;

use crate::config::NotifyConfig;
use portal_core::{Error, Result};
use serde::Deserialize;

const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SmsGateway {
    client: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: String,
    from: String,
}

/// Twilio's error body.
#[derive(Deserialize)]
struct GatewayError {
    code: Option<i64>,
    message: Option<String>,
}

impl SmsGateway {
    /// `None` when no account SID is set; a SID without its token or sender is a start-up error.
    pub(crate) fn from_config(config: &NotifyConfig) -> Result<Option<Self>> {
        let Some(account_sid) = config.sms_account_sid.clone() else { return Ok(None) };
        let auth_token = config
            .sms_auth_token
            .as_ref()
            .ok_or_else(|| Error::internal("PORTAL_SMS_ACCOUNT_SID is set but PORTAL_SMS_AUTH_TOKEN is not"))?
            .expose()
            .to_string();
        let from = config
            .sms_from
            .clone()
            .ok_or_else(|| Error::internal("PORTAL_SMS_ACCOUNT_SID is set but PORTAL_SMS_FROM is not"))?;
        let client = reqwest::Client::builder().timeout(GATEWAY_TIMEOUT).build().map_err(Error::internal)?;
        let base = config.sms_api_base.trim_end_matches('/');
        let messages_url = format!("{base}/2010-04-01/Accounts/{account_sid}/Messages.json");
        Ok(Some(Self { client, messages_url, account_sid, auth_token, from }))
    }

    pub(crate) async fn send(&self, to: &str, body: &str) -> Result<()> {
        let response = self
            .client
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[("To", to), ("From", self.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(|e| Error::upstream("the SMS gateway is unavailable", e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let detail = match response.json::<GatewayError>().await {
            Ok(GatewayError { code, message }) => {
                format!("{} (code {})", message.unwrap_or_default(), code.unwrap_or_default())
            }
            Err(_) => String::new(),
        };
        Err(Error::upstream("the SMS gateway refused the message", format!("HTTP {status}: {detail}")))
    }
}
