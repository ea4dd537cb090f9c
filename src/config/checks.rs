//! Checks of single values: the environment name, origins, outbound URLs, template placeholders.

use super::{ConfigError, Environment};

/// A `.env` template value that was never filled in (`your_…`, `sk_your_…`).
pub(super) fn is_placeholder(value: &str) -> bool {
    value.to_ascii_lowercase().contains("your_")
}

pub(super) fn environment(value: &str, name: &'static str) -> Result<Environment, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "development" => Ok(Environment::Development),
        "production" => Ok(Environment::Production),
        _ => Err(ConfigError::UnknownEnvironment { name }),
    }
}

/// Why an `ALLOWED_ORIGINS` entry is refused, if it is. Origins are compared byte for byte with
/// what browsers send, so only the canonical serialisation `scheme://host[:port]` can ever match.
pub(super) fn origin_problem(origin: &str, production: bool) -> Option<&'static str> {
    if origin == "*" || origin == "null" {
        return Some("wildcards and null are never allowed");
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Some("expected scheme://host[:port]");
    };
    if scheme != "https" && scheme != "http" {
        return Some("expected an http or https origin");
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', '*'])
        || authority
            .bytes()
            .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic())
    {
        return Some("expected a lower-case scheme://host[:port] with no path");
    }
    if production && scheme == "http" && !is_loopback_authority(authority) {
        return Some("production origins must be https (localhost excepted)");
    }
    None
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// An outbound URL: https, or http to a loopback host (local fakes in tests and development).
pub(super) fn url_problem(url: &str) -> Option<&'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("expected an http(s) URL");
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || url.bytes().any(|b| !b.is_ascii_graphic()) {
        return Some("expected an http(s) URL");
    }
    match scheme {
        "https" | "wss" => None,
        "http" | "ws" if is_loopback_authority(authority) => None,
        "http" | "ws" => Some("plain http is only allowed to localhost"),
        _ => Some("expected an http(s) URL"),
    }
}
