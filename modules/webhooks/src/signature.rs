//! Standard Webhooks signatures: `v1,` + base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`,
//! one per signing key, separated by spaces.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `webhook-signature` header for `body` sent as `id` at `timestamp` (Unix seconds).
pub fn header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().filter_map(|key| sign(key, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against the independent implementation of the specification's authors.
    #[test]
    fn signatures_verify_with_the_standard_webhooks_library() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let key = crate::secrets::key_of(secret).unwrap();
        let ts = portal_core::Timestamp::now().unix_secs();
        let (id, body) = ("evt_1", br#"{"type":"invoice.paid"}"#.as_slice());
        let signature = header(&[key.clone(), b"another key".to_vec()], id, ts, body);
        assert_eq!(signature.split(' ').count(), 2);
        let mut headers = poem::http::HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        let verifier = standardwebhooks::Webhook::new(secret).unwrap();
        verifier.verify(body, &headers).unwrap();
        let mut tampered = headers.clone();
        tampered.insert("webhook-id", "evt_2".parse().unwrap());
        assert!(verifier.verify(body, &tampered).is_err());
    }
}
