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
    format!("number:{number}")
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
