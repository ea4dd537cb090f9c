//! Access policy (docs/API.md §3): who may start a call.
//!
//! Keys are kept only as SHA-256 digests and compared in constant time against the digest of the
//! presented key, so neither the comparison time nor the key length leaks, and every configured
//! key is compared (no early exit) so the position of a match does not leak either.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// The configured API keys, as digests, each with its identity (derived once, not per request).
/// `Debug` shows only how many there are.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<([u8; 32], KeyId)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} configured)", self.keys.len())
    }
}

impl ApiKeys {
    pub fn new<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        let keys = keys
            .into_iter()
            .map(|k| {
                let digest: [u8; 32] = Sha256::digest(k.as_ref().as_bytes()).into();
                (digest, KeyId::from_digest(&digest))
            })
            .collect();
        ApiKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The identity of the matching key, compared in constant time over all keys.
    pub fn verify(&self, presented: &[u8]) -> Option<KeyId> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = 0u8;
        let mut index = 0u32;
        for (i, (candidate, _)) in self.keys.iter().enumerate() {
            let hit = candidate.ct_eq(&digest);
            found |= hit.unwrap_u8();
            index.conditional_assign(&(i as u32), hit);
        }
        (found == 1).then(|| self.keys[index as usize].1.clone())
    }
}

/// A stable, non-secret identity for a key (scopes idempotency keys to their caller). Derived
/// from the key's digest, so it survives reordering the comma-separated key list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn from_digest(digest: &[u8; 32]) -> Self {
        let scoped: [u8; 32] = Sha256::new()
            .chain_update(b"chamada key id\0")
            .chain_update(digest)
            .finalize()
            .into();
        KeyId(crate::ids::hex(&scoped[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A call's status token (docs/API.md §15.1): 32 random bytes, base64url without padding, for
/// the page to read its own call. Only its digest is kept.
pub struct StatusToken {
    pub token: String,
    /// Hex SHA-256 of the token, as the call record keeps it.
    pub digest: String,
}

impl StatusToken {
    pub fn new() -> StatusToken {
        use base64::Engine;
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let digest = crate::ids::hex(&Sha256::digest(token.as_bytes()));
        StatusToken { token, digest }
    }

    /// Whether `presented` is the token whose digest is `digest`, in constant time (digests of
    /// equal length are compared, so the token's length does not show either).
    pub fn matches(presented: &[u8], digest: &str) -> bool {
        let presented = crate::ids::hex(&Sha256::digest(presented));
        presented.as_bytes().ct_eq(digest.as_bytes()).into()
    }
}

impl Default for StatusToken {
    fn default() -> Self {
        StatusToken::new()
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Authenticated(KeyId),
}

impl Caller {
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Caller::Authenticated(_))
    }
}

/// Why a request was refused by the access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `Authorization` present but not a valid key: never falls back to anonymous.
    InvalidKey,
    /// No `Authorization` where one is required (production without `PUBLIC_CALLS`).
    KeyRequired,
}

/// Decides who is asking from every `Authorization` value sent (as bytes, in order).
/// `anonymous_allowed` is true in development, or in production with `PUBLIC_CALLS=true`.
pub fn authenticate(
    keys: &ApiKeys,
    authorization: &[&[u8]],
    anonymous_allowed: bool,
) -> Result<Caller, Denied> {
    let mut values = authorization.iter();
    let Some(value) = values.next() else {
        return if anonymous_allowed {
            Ok(Caller::Anonymous)
        } else {
            Err(Denied::KeyRequired)
        };
    };
    if values.next().is_some() {
        return Err(Denied::InvalidKey);
    }
    let bytes = *value;
    // `Bearer` is case-insensitive (RFC 9110 §11.1); exactly one space, then the token.
    if bytes.len() <= 7 || !bytes[..7].eq_ignore_ascii_case(b"bearer ") {
        return Err(Denied::InvalidKey);
    }
    let token = &bytes[7..];
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Err(Denied::InvalidKey);
    }
    keys.verify(token)
        .map(Caller::Authenticated)
        .ok_or(Denied::InvalidKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const KEY_B: &str = "test-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn every_configured_key_is_accepted_and_identified_stably() {
        let keys = ApiKeys::new([KEY_A, KEY_B]);
        let a = authenticate(&keys, &[format!("Bearer {KEY_A}").as_bytes()], false);
        let b = authenticate(&keys, &[format!("bearer {KEY_B}").as_bytes()], false);
        let (Ok(Caller::Authenticated(a)), Ok(Caller::Authenticated(b))) = (a, b) else {
            panic!("a configured key was refused");
        };
        assert_ne!(a, b);
        let reordered = ApiKeys::new([KEY_B, KEY_A]);
        assert_eq!(reordered.verify(KEY_A.as_bytes()), Some(a));
    }

    #[test]
    fn a_wrong_key_never_falls_back_to_anonymous() {
        let keys = ApiKeys::new([KEY_A]);
        for bad in [
            &b"Bearer test-key-wrong"[..],
            b"Bearer ",
            b"Bearer  test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"Basic dGVzdDp0ZXN0",
            b"test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"Bearer test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"Bearer test-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            b"Bearer \xfftest",
        ] {
            assert_eq!(
                authenticate(&keys, &[bad], true),
                Err(Denied::InvalidKey),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn two_authorization_headers_are_refused_even_if_one_is_valid() {
        let keys = ApiKeys::new([KEY_A]);
        let good = format!("Bearer {KEY_A}");
        assert_eq!(
            authenticate(&keys, &[good.as_bytes(), b"Bearer nope"], true),
            Err(Denied::InvalidKey)
        );
    }

    #[test]
    fn anonymous_is_allowed_only_when_the_policy_says_so() {
        let keys = ApiKeys::new([KEY_A]);
        assert_eq!(authenticate(&keys, &[], true), Ok(Caller::Anonymous));
        assert_eq!(authenticate(&keys, &[], false), Err(Denied::KeyRequired));
    }

    #[test]
    fn no_configured_keys_means_no_key_is_valid() {
        let keys = ApiKeys::default();
        assert_eq!(
            authenticate(&keys, &[b"Bearer anything-at-all"], true),
            Err(Denied::InvalidKey)
        );
    }

    #[test]
    fn a_status_token_matches_only_itself() {
        let a = StatusToken::new();
        let b = StatusToken::new();
        assert_eq!(a.token.len(), 43, "32 bytes, base64url without padding");
        assert_ne!(a.token, b.token);
        assert!(StatusToken::matches(a.token.as_bytes(), &a.digest));
        assert!(!StatusToken::matches(b.token.as_bytes(), &a.digest));
        assert!(!StatusToken::matches(b"", &a.digest));
        assert!(!a.digest.contains(&a.token), "only the digest is kept");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let keys = ApiKeys::new([KEY_A]);
        assert_eq!(format!("{keys:?}"), "ApiKeys(1 configured)");
    }
}
