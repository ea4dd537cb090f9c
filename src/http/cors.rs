//! CORS (docs/API.md §4): exact byte match against `ALLOWED_ORIGINS`, decided before any side effect.

use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ALLOW, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::Config;

pub const EXPOSE_HEADERS: &str =
    "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, X-Request-Id, Idempotent-Replayed";
pub const ALLOW_HEADERS: &str = "Content-Type, Authorization, Idempotency-Key";

/// What the `Origin` header says about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`: not a browser; judged by the access policy alone.
    Absent,
    /// An allowed origin (the exact value to echo).
    Allowed(HeaderValue),
    /// Present and not allowed (or sent twice): `403 forbidden_origin`.
    Forbidden(HeaderValue),
}

pub fn check(config: &Config, headers: &HeaderMap) -> OriginCheck {
    let mut values = headers.get_all(ORIGIN).iter();
    let Some(origin) = values.next() else {
        return OriginCheck::Absent;
    };
    if values.next().is_some() {
        return OriginCheck::Forbidden(origin.clone());
    }
    let bytes = origin.as_bytes();
    if config
        .allowed_origins
        .iter()
        .any(|allowed| allowed.as_bytes() == bytes)
    {
        OriginCheck::Allowed(origin.clone())
    } else {
        OriginCheck::Forbidden(origin.clone())
    }
}

/// Adds the CORS headers every answer carries.
pub fn decorate(headers: &mut HeaderMap, origin: &OriginCheck) {
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if let OriginCheck::Allowed(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
}

/// The answer to `OPTIONS`: a preflight for an allowed origin, or the `Allow` list for a
/// non-browser. (A forbidden origin never gets here.)
pub fn preflight(origin: &OriginCheck, methods: &'static str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static(methods));
    if matches!(origin, OriginCheck::Allowed(_)) {
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}
