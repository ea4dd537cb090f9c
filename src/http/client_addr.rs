//! The client's address as the platform gives it, read from the request (docs: `client_ip`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::request::Parts;
use http::HeaderMap;

use crate::client_ip::{single_ip, AwsSourceIp, ClientIpSource};

/// The address of the client as the platform saw it.
pub fn client_ip(source: ClientIpSource, parts: &Parts) -> Option<IpAddr> {
    match source {
        ClientIpSource::Socket => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip()),
        // Vercel overwrites `x-real-ip` with the address it saw, so on Vercel it is trustworthy.
        ClientIpSource::Vercel => header_ip(&parts.headers, "x-real-ip"),
        // Without the Lambda adapter there is no request context: no address, so the request
        // is refused rather than unlimited.
        ClientIpSource::Aws => parts
            .extensions
            .get::<AwsSourceIp>()
            .map(|AwsSourceIp(ip)| *ip),
    }
}

/// The one IP address a header must hold, sent once.
pub fn header_ip(headers: &HeaderMap, name: &str) -> Option<IpAddr> {
    single_ip(headers.get_all(name).iter().map(|v| v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
