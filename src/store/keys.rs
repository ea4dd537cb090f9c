//! The store's keys, spelled in one place. Stores that share a table hash them
//! (`RATE_LIMIT_HASH_KEY`); the prefixes keep kinds apart.

use std::fmt::Display;

use crate::client_ip::IpKey;
use crate::phone::E164;

/// The per-IP limit of one address (an IPv4 address or an IPv6 /64).
pub fn ip(ip: IpKey) -> String {
    format!("ip:{ip}")
}

/// The status reads (`GET /api/calls/{call_id}`) of one address.
pub fn status_reads(ip: IpKey) -> String {
    format!("reads:{ip}")
}

/// The per-number limit of one destination.
pub fn number(number: &E164) -> String {
    let mut key = String::with_capacity(7 + number.as_str().len());
    key.push_str("number:");
    key.push_str(number.as_str());
    key
}

/// The global limit of one UTC day (days since the epoch).
pub fn global(day: u64) -> String {
    format!("global:{day}")
}

/// An idempotency record: the key as sent, scoped to its caller ([`idempotency_scope`]).
pub fn idempotency(scope: &str, key: impl Display) -> String {
    format!("idem:{scope}:{key}")
}

/// Whose idempotency keys these are: an API key's identity, or an anonymous caller's address.
pub fn idempotency_scope(key_id: Option<&str>, ip: Option<IpKey>) -> Option<String> {
    match (key_id, ip) {
        (Some(id), _) => Some(format!("key:{id}")),
        (None, Some(ip)) => Some(format!("ip:{ip}")),
        (None, None) => None,
    }
}

/// The keyed hash of what shared stores keep (DynamoDB, PostgreSQL): hex HMAC-SHA256 keyed
/// with `RATE_LIMIT_HASH_KEY`, with a domain so that equal strings in different roles never
/// share a hash. Both stores spell the same key the same way.
#[derive(Clone)]
pub struct KeyHasher(hmac::Hmac<sha2::Sha256>);

impl KeyHasher {
    pub fn new(hash_key: &secrecy::SecretString) -> Self {
        use hmac::Mac;
        use secrecy::ExposeSecret;
        KeyHasher(
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(hash_key.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length"),
        )
    }

    /// Hex HMAC-SHA256 of the domain, a zero byte and `value`.
    pub fn hash(&self, domain: &str, value: &str) -> String {
        use hmac::Mac;
        let mut mac = self.0.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        crate::ids::hex(&mac.finalize().into_bytes())
    }

    /// The stored key of a limit (`rl#…`).
    pub fn limit(&self, key: &str) -> String {
        format!("rl#{}", self.hash("limit", key))
    }

    /// The stored key of an idempotency record (`idem#…`).
    pub fn idempotency(&self, key: &str) -> String {
        format!("idem#{}", self.hash("idempotency", key))
    }

    /// The stored form of a request fingerprint.
    pub fn fingerprint(&self, fingerprint: &str) -> String {
        self.hash("fingerprint", fingerprint)
    }
}
