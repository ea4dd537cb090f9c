//! Client IP (SPEC §5): from the platform, never from a header a client can set.
//!
//! The source is a seam: [`ClientIpSource`] says where the address comes from on each platform,
//! and [`client_ip`] reads it from the request. Forwarding headers (`X-Forwarded-For`, a
//! client-sent `X-Real-IP`) are never read, so rotating them buys no extra calls.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use http::request::Parts;

/// Where the client IP comes from (SPEC §5). Never from a header a client can set.
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

/// The address of the client as the platform saw it.
pub fn client_ip(source: ClientIpSource, parts: &Parts) -> Option<IpAddr> {
    match source {
        ClientIpSource::Socket => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
        // Vercel overwrites `x-real-ip` with the address it saw, so on Vercel it is trustworthy.
        ClientIpSource::Vercel => single_ip_header(parts, "x-real-ip"),
        ClientIpSource::Aws => aws_source_ip(parts),
    }
}

/// The one value of a header that must hold exactly one IP address.
pub fn single_ip_header(parts: &Parts, name: &str) -> Option<IpAddr> {
    let mut values = parts.headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok()?.trim().parse().ok()
}

/// The `requestContext` source IP of API Gateway (REST and HTTP API) and Function URLs, which
/// `lambda_http` puts in the request extensions. Only compiled with the `lambda` feature.
#[cfg(feature = "lambda")]
fn aws_source_ip(parts: &Parts) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    let ip = match parts.extensions.get::<RequestContext>()? {
        // REST API (payload v1): `requestContext.identity.sourceIp`.
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        // HTTP API and Function URLs (payload v2): `requestContext.http.sourceIp`.
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    ip.parse().ok()
}

/// Without the `lambda` feature there is no AWS request context: no IP, so the request is
/// refused rather than unlimited.
#[cfg(not(feature = "lambda"))]
fn aws_source_ip(_parts: &Parts) -> Option<IpAddr> {
    None
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

    /// What the logs may show (SPEC §11): the /24 of IPv4, the /64 of IPv6.
    pub fn log_prefix(&self) -> String {
        self.log_prefix_display().to_string()
    }

    /// [`log_prefix`](Self::log_prefix), written only when a log line is (no allocation for a
    /// request whose log level is off).
    pub fn log_prefix_display(self) -> LogPrefix {
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
            IpKey::V4([a, b, c, d]) => write!(f, "{a}.{b}.{c}.{d}"),
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
        assert_eq!(key("203.0.113.7").log_prefix(), "203.0.113.0/24");
        assert_eq!(key("2001:db8:1:2::7").log_prefix(), "2001:db8:1:2::/64");
    }

    #[test]
    fn socket_source_ignores_forwarding_headers() {
        let req = http::Request::builder()
            .header("x-forwarded-for", "198.51.100.1")
            .header("x-real-ip", "198.51.100.2")
            .body(())
            .unwrap();
        let (mut parts, _) = req.into_parts();
        assert_eq!(client_ip(ClientIpSource::Socket, &parts), None);
        parts.extensions.insert(ConnectInfo(
            "192.0.2.10:5555".parse::<SocketAddr>().unwrap(),
        ));
        assert_eq!(
            client_ip(ClientIpSource::Socket, &parts),
            Some("192.0.2.10".parse().unwrap())
        );
    }

    #[test]
    fn vercel_source_reads_one_x_real_ip_only() {
        let req = http::Request::builder()
            .header("x-real-ip", "198.51.100.2")
            .header("x-forwarded-for", "198.51.100.1")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(
            client_ip(ClientIpSource::Vercel, &parts),
            Some("198.51.100.2".parse().unwrap())
        );
        let req = http::Request::builder()
            .header("x-real-ip", "198.51.100.2, 10.0.0.1")
            .body(())
            .unwrap();
        assert_eq!(client_ip(ClientIpSource::Vercel, &req.into_parts().0), None);
    }
}
