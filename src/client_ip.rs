//! Client IP (docs/API.md §5): from the platform, never from a header a client can set.
//!
//! The source is a seam: [`ClientIpSource`] says where the address comes from on each platform;
//! the HTTP layer reads it from the request (`http::client_addr`), the Lambda adapter turns
//! the request context into an [`AwsSourceIp`]. Forwarding headers (`X-Forwarded-For`, a
//! client-sent `X-Real-IP`) are never read, so rotating them buys no extra calls.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Where the client IP comes from (docs/API.md §5). Never from a header a client can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The TCP peer address (local server).
    Socket,
    /// API Gateway / Function URL `requestContext` source IP.
    Aws,
    /// Vercel's `x-real-ip`, which Vercel overwrites.
    Vercel,
}

impl ClientIpSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIpSource::Socket => "socket",
            ClientIpSource::Aws => "aws",
            ClientIpSource::Vercel => "vercel",
        }
    }
}

/// The address an API Gateway or Function URL `requestContext` gives, attached to the request
/// by the Lambda adapter (`entry::lambda`) as a plain value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsSourceIp(pub IpAddr);

/// The one value of a header that must hold exactly one IP address (values as sent).
pub fn single_ip<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<IpAddr> {
    let mut values = values.into_iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// The unit the per-IP limit counts: an IPv4 address (IPv4-mapped IPv6 folded to IPv4), or an
/// IPv6 /64 (one customer's network, which can hold billions of addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4([u8; 4]),
    V6Prefix64([u8; 8]),
}

impl IpKey {
    pub fn new(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    IpKey::V6Prefix64(prefix)
                }
            },
        }
    }

    /// What the logs may show (docs/API.md §11): the /24 of IPv4, the /64 of IPv6. Written only when
    /// a log line is (no allocation for a request whose log level is off).
    pub fn log_prefix(self) -> LogPrefix {
        LogPrefix(self)
    }
}

/// The loggable prefix of an [`IpKey`], as [`fmt::Display`].
#[derive(Debug, Clone, Copy)]
pub struct LogPrefix(IpKey);

impl fmt::Display for LogPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpKey::V4([a, b, c, _]) => write!(f, "{a}.{b}.{c}.0/24"),
            key @ IpKey::V6Prefix64(_) => write!(f, "{key}"),
        }
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpKey::V4(octets) => {
                // Dotted decimal in one piece (four integers through `core::fmt` cost ~1k
                // instructions, and this key is built on every counted request).
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, &octet) in octets.iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        text[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        text[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + octet % 10;
                    len += 1;
                }
                f.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
            }
            IpKey::V6Prefix64(p) => {
                let mut octets = [0u8; 16];
                octets[..8].copy_from_slice(p);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IpKey {
        IpKey::new(s.parse().unwrap())
    }

    #[test]
    fn ipv4_keys_are_written_as_std_writes_the_address() {
        for octets in [
            [0, 9, 10, 99],
            [100, 199, 200, 255],
            [1, 22, 203, 7],
            [255; 4],
        ] {
            let address = std::net::Ipv4Addr::from(octets);
            assert_eq!(IpKey::new(address.into()).to_string(), address.to_string());
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_folds_to_ipv4() {
        assert_eq!(key("::ffff:203.0.113.7"), key("203.0.113.7"));
        assert_eq!(key("::ffff:203.0.113.7").to_string(), "203.0.113.7");
    }

    #[test]
    fn ipv6_is_keyed_per_64() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn log_prefixes_hide_the_host_part() {
        assert_eq!(
            key("203.0.113.7").log_prefix().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            key("2001:db8:1:2::7").log_prefix().to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
