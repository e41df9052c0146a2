//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step) with replay refusal (a step is
//! accepted once) and single-use recovery codes stored as SHA-256.

use base64::Engine;
use portal_core::{Error, Result};
use totp_rs::{Algorithm, Builder, Totp};

use crate::model::TwoFactor;
use crate::tokens::sha256;

const ISSUER: &str = "Portal";
pub const RECOVERY_CODES: usize = 10;

/// A fresh 160-bit secret.
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; 20]>().to_vec()
}

fn totp(secret: &[u8], account: &str) -> Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| Error::internal(format!("TOTP setup: {e}")))
}

/// What an authenticator app needs: the base32 secret, the `otpauth://` URI and that URI as a QR PNG.
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
    pub qr_png_base64: String,
}

pub fn enrolment(secret: &[u8], account: &str) -> Result<Enrolment> {
    let totp = totp(secret, account)?;
    let uri = totp.to_url().map_err(|e| Error::internal(format!("TOTP URI: {e}")))?;
    let png = totp.to_qr_png().map_err(|e| Error::internal(format!("TOTP QR code: {e}")))?;
    Ok(Enrolment {
        secret: totp.secret().to_base32(),
        uri,
        qr_png_base64: base64::engine::general_purpose::STANDARD.encode(png),
    })
}

/// The time step `code` matches for `secret` at `unix_secs`, if any.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: u64) -> Result<Option<u64>> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, "")?.check(code, unix_secs))
}

/// Ten recovery codes (`xxxxx-xxxxx`) and their hashes.
pub fn recovery_codes() -> (Vec<String>, Vec<[u8; 32]>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw: [u8; 10] = rand::random();
            #[allow(clippy::indexing_slicing)] // taken modulo the alphabet's length
            let chars: String = raw.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect();
    let hashes = codes.iter().map(|c| sha256(c)).collect();
    (codes, hashes)
}

/// Checks a second-factor code against a confirmed 2FA setup and, when it is good, consumes it (the
/// time step, or the recovery code). Returns whether it was accepted.
pub fn accept(two_factor: &mut TwoFactor, code: &str, unix_secs: u64) -> Result<bool> {
    let Some(secret) = two_factor.secret.clone() else { return Ok(false) };
    if let Some(step) = matching_step(&secret, code, unix_secs)? {
        if step <= two_factor.last_step {
            return Ok(false);
        }
        two_factor.last_step = step;
        return Ok(true);
    }
    let hash = sha256(&code.trim().to_lowercase());
    if let Some(pos) = two_factor.recovery_hashes.iter().position(|h| *h == hash) {
        two_factor.recovery_hashes.remove(pos);
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_at(secret: &[u8], t: u64) -> String {
        totp(secret, "").unwrap().generate(t).to_string()
    }

    #[test]
    fn codes_work_once_within_one_step_of_skew() {
        let secret = new_secret();
        let mut tf = TwoFactor { secret: Some(secret.clone()), ..Default::default() };
        let t = 1_800_000_000;
        assert!(accept(&mut tf, &code_at(&secret, t - 30), t).unwrap(), "previous step accepted");
        assert!(!accept(&mut tf, &code_at(&secret, t - 30), t).unwrap(), "replay refused");
        assert!(accept(&mut tf, &code_at(&secret, t), t).unwrap());
        assert!(!accept(&mut tf, &code_at(&secret, t - 90), t).unwrap(), "too old");
        assert!(!accept(&mut tf, "12345", t).unwrap());
    }

    #[test]
    fn recovery_codes_are_single_use() {
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut tf = TwoFactor { secret: Some(new_secret()), recovery_hashes: hashes, ..Default::default() };
        assert!(accept(&mut tf, &codes[3], 0).unwrap());
        assert!(!accept(&mut tf, &codes[3], 0).unwrap());
        assert_eq!(tf.recovery_hashes.len(), 9);
    }

    #[test]
    fn enrolment_gives_uri_and_png() {
        let e = enrolment(&new_secret(), "jane@example.com").unwrap();
        assert!(e.uri.starts_with("otpauth://totp/Portal:jane%40example.com?secret="), "{}", e.uri);
        let png = base64::engine::general_purpose::STANDARD.decode(&e.qr_png_base64).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
    }
}
