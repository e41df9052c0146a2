//! The webhooks' settings (`portal serve` flattens them).

use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Args)]
pub struct WebhooksConfig {
    /// `loopback` also accepts `http://` endpoint URLs on loopback addresses (tests, a local receiver);
    /// `never` takes https only. Private, loopback and link-local addresses are refused either way,
    /// except loopback under `loopback`.
    #[arg(long = "webhooks-allow-http", env = "PORTAL_WEBHOOKS_ALLOW_HTTP", value_enum, default_value = "never")]
    pub allow_http: AllowHttp,

    /// Delays before each retry of a failed delivery (comma-separated, `ms`, `s`, `m` or `h`); the first
    /// attempt is immediate, and after the last retry a delivery fails. Each delay gets up to 10 % jitter.
    #[arg(long = "webhooks-retry-delays", env = "PORTAL_WEBHOOKS_RETRY_DELAYS", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = RetryDelays::parse)]
    pub retry_delays: RetryDelays,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_http: AllowHttp::Never,
            retry_delays: RetryDelays::parse("5s,5m,30m,2h,5h,10h,10h").unwrap_or(RetryDelays(Vec::new())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllowHttp {
    Never,
    Loopback,
}

/// The delay before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryDelays(pub Vec<Duration>);

impl RetryDelays {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut delays = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (number, unit) = part.split_at(part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len()));
            let n: u64 = number.parse().map_err(|_| format!("{part:?} is not a delay like 5s, 5m or 2h"))?;
            let delay = match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                _ => return Err(format!("{part:?}: the unit is ms, s, m or h")),
            };
            if delay > Duration::from_secs(24 * 3600) {
                return Err("a delay is at most 24h".into());
            }
            delays.push(delay);
        }
        if delays.len() > 20 {
            return Err("give at most 20 delays".into());
        }
        Ok(Self(delays))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse() {
        let d = RetryDelays::parse("0s, 5s,5m,2h").unwrap().0;
        assert_eq!(d, [0, 5, 300, 7200].map(Duration::from_secs));
        assert_eq!(RetryDelays::parse("100ms,1s").unwrap().0, [Duration::from_millis(100), Duration::from_secs(1)]);
        assert!(RetryDelays::parse("5x").is_err());
        assert!(RetryDelays::parse("25h").is_err());
        assert_eq!(WebhooksConfig::default().retry_delays.0.len(), 7);
    }
}
