//! Standard Webhooks signatures of the events ([`sign`], [`verify`]), keyed with
//! `MAKE_WEBHOOK_SECRET` ([`WebhookSecret`]: its bytes, or the decoded `whsec_` form).

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// The HMAC key of `MAKE_WEBHOOK_SECRET`: the secret's bytes, or, for the Standard Webhooks
/// form `whsec_<base64>`, the decoded bytes.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a whsec_ secret must hold base64 after the prefix")]
pub struct InvalidSecret;

/// Standard base64 with or without its `=` padding, as the Standard Webhooks libraries read
/// a `whsec_` secret; anything else (other alphabets, stray characters) is still refused.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl WebhookSecret {
    pub fn parse(secret: &str) -> Result<Self, InvalidSecret> {
        let key = match secret.strip_prefix("whsec_") {
            Some(encoded) => SECRET_BASE64.decode(encoded).map_err(|_| InvalidSecret)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(WebhookSecret(SecretSlice::from(key)))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// Whether a `webhook-signature` header (one or more space-separated `v1,<base64>`) holds a
/// valid signature of this message. Compares in constant time; empty, truncated or other
/// versions' signatures never verify. Receivers should also refuse stale timestamps.
pub fn verify(secret: &WebhookSecret, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = BASE64.decode(encoded) else {
            return false;
        };
        // `verify_slice` refuses any length but the full 32 bytes.
        secret.mac(id, timestamp, body).verify_slice(&tag).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whsec_secrets_must_be_base64_and_nonempty() {
        assert_eq!(
            WebhookSecret::parse("whsec_%%%").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), InvalidSecret);
        assert!(WebhookSecret::parse("test-webhook-secret").is_ok());
        // Standard Webhooks libraries accept the secret with or without its padding.
        let padded = WebhookSecret::parse("whsec_dGVzdC1zZWNyZXQ=").unwrap();
        let unpadded = WebhookSecret::parse("whsec_dGVzdC1zZWNyZXQ").unwrap();
        assert_eq!(
            sign(&padded, "msg_1", 1, b"{}"),
            sign(&unpadded, "msg_1", 1, b"{}")
        );
        // Still refused: URL-safe alphabet, stray characters, broken padding.
        for bad in [
            "whsec_dGVzdC1zZWNyZXQ_",
            "whsec_dGVz dC1z",
            "whsec_dGVzdC1zZWNyZXQ==",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad).unwrap_err(),
                InvalidSecret,
                "{bad}"
            );
        }
        let debug = format!("{:?}", WebhookSecret::parse("test-webhook-secret").unwrap());
        assert!(!debug.contains("test-webhook-secret"));
    }
}
