//! The service account the portal reads Google Analytics with (`FIREBASE_CREDENTIALS`): Google's JSON
//! key file. Read once at start-up, so a missing or broken file stops the portal with a clear message
//! instead of failing every dashboard later. The private key never leaves this struct's signer.

use std::path::Path;

use jsonwebtoken::EncodingKey;
use portal_core::{Error, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    private_key_id: String,
    private_key: String,
    client_email: String,
    token_uri: String,
}

pub(crate) struct ServiceAccount {
    pub client_email: String,
    pub key_id: String,
    /// Where Google expects the token request (also the JWT's audience).
    pub token_uri: String,
    pub key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl ServiceAccount {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::internal(format!("cannot read FIREBASE_CREDENTIALS {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|why| Error::internal(format!("FIREBASE_CREDENTIALS {}: {why}", path.display())))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| format!("not a service-account key file ({e})"))?;
        if file.kind != "service_account" {
            return Err(format!("the key file is of type {:?}, not \"service_account\"", file.kind));
        }
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| "private_key is not an RSA private key in PEM".to_string())?;
        Ok(Self { client_email: file.client_email, key_id: file.private_key_id, token_uri: file.token_uri, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_service_account() {
        assert!(ServiceAccount::parse("{}").unwrap_err().contains("not a service-account key file"));
        let user =
            r#"{"type":"authorized_user","private_key_id":"k","private_key":"x","client_email":"a@b","token_uri":"t"}"#;
        assert!(ServiceAccount::parse(user).unwrap_err().contains("authorized_user"));
        let bad_key = user.replace("authorized_user", "service_account");
        let why = ServiceAccount::parse(&bad_key).unwrap_err();
        assert!(why.contains("private_key") && !why.contains('x'), "{why}");
    }
}
