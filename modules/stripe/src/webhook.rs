//! Webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, each v1 an HMAC-SHA256 of
//! `"{t}.{raw body}"` with the endpoint's secret. Several v1 values appear while a secret is being rolled;
//! any one matching is enough. Timestamps more than the tolerance away from now are refused (replays).

use hmac::{Hmac, Mac};
use portal_core::{Error, Result};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Largest accepted distance between the signature's timestamp and now.
pub const TOLERANCE_SECS: i64 = 300;

/// Checks `header` against `body`; `now` in Unix seconds.
pub fn verify(header: &str, body: &[u8], secret: &str, now: i64) -> Result<()> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(decode_hex(sig)),
            _ => {}
        }
    }
    let bad = |why: &str| Error::bad_request(format!("invalid Stripe-Signature: {why}"));
    let timestamp = timestamp.ok_or_else(|| bad("no timestamp"))?;
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(bad("timestamp outside the tolerance"));
    }
    if signatures.is_empty() {
        return Err(bad("no v1 signature"));
    }
    let expected = sign(secret, timestamp, body);
    if signatures.iter().any(|s| s.as_slice().ct_eq(&expected).into()) {
        Ok(())
    } else {
        Err(bad("no signature matches"))
    }
}

/// The v1 signature of `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length, so this never happens; an empty signature matches nothing.
        return Vec::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// An event, read leniently: only what the handlers use.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub created: Option<i64>,
    pub data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

impl Event {
    /// A string field of the event's object (`id`, `customer`, `payment_method`…); an expanded object
    /// counts by its `id`.
    pub fn object_str(&self, field: &str) -> Option<&str> {
        match self.data.object.get(field)? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(o) => o.get("id")?.as_str(),
            _ => None,
        }
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.data.object.get("metadata")?.get(key)?.as_str()
    }

    pub fn object_i64(&self, field: &str) -> Option<i64> {
        self.data.object.get(field)?.as_i64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        let hex: String = sign(secret, t, body).iter().map(|b| format!("{b:02x}")).collect();
        format!("t={t},v1={hex}")
    }

    #[test]
    fn accepts_good_signatures_and_refuses_the_rest() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        assert!(verify(&header("whsec_a", now, body), body, "whsec_a", now).is_ok());
        // During a secret roll the header carries one signature per secret.
        let rolled = format!("{},v1=00ff,{}", header("whsec_old", now, body), &header("whsec_a", now, body)[13..]);
        assert!(verify(&rolled, body, "whsec_a", now).is_ok(), "{rolled}");
        assert!(verify(&header("whsec_b", now, body), body, "whsec_a", now).is_err());
        assert!(verify(&header("whsec_a", now, body), b"{}", "whsec_a", now).is_err());
        assert!(verify(&header("whsec_a", now - 600, body), body, "whsec_a", now).is_err());
        assert!(verify("t=abc,v1=zz", body, "whsec_a", now).is_err());
        assert!(verify("", body, "whsec_a", now).is_err());
    }
}
