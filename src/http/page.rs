//! The "call me" page (`public/`), served by the local server only.
//!
//! On Vercel the platform serves `public/` itself, and the Lambda function is API-only, so
//! [`router`](super::router) never includes these routes: the local server adds them with
//! [`add_routes`]. The files are embedded at compile time, so the binary serves the page from
//! any working directory.
//!
//! Every page answer carries a strict `Content-Security-Policy` (the page loads nothing but its
//! own files — and, with the bot check on, Turnstile's script and iframe — and talks only to its
//! own origin), `X-Content-Type-Options: nosniff`, and no
//! framing. Methods other than GET/HEAD get the JSON `405` of docs/API.md §10.

use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderName, HeaderValue, StatusCode};

use super::X_REQUEST_ID;
use crate::config::Config;
use crate::http::error::ApiError;

/// The page's policy: its own scripts, styles, images and `fetch` only; no inline code, no
/// plugins, no `<base>` rewriting, no native form submission (the script sends the form, so a
/// page whose script failed can never put a phone number in a URL), and no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// The policy with the bot check on (docs/API.md §16): exactly what Turnstile needs beside the
/// page's own files — its script, and its iframe — from `script_origin`; nothing else changes.
pub fn content_security_policy(script_origin: Option<&str>) -> String {
    match script_origin {
        None => CONTENT_SECURITY_POLICY_VALUE.to_string(),
        Some(origin) => CONTENT_SECURITY_POLICY_VALUE.replace(
            "script-src 'self';",
            &format!("script-src 'self' {origin}; frame-src {origin};"),
        ),
    }
}

const INDEX_HTML: &str = include_str!("../../public/index.html");
const STYLE_CSS: &str = include_str!("../../public/style.css");
const APP_JS: &str = include_str!("../../public/app.js");
const FAVICON_SVG: &str = include_str!("../../public/favicon.svg");

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The page's paths and what each serves (path, content type, body).
pub const FILES: [(&str, &str, &str); 5] = [
    ("/", HTML, INDEX_HTML),
    ("/index.html", HTML, INDEX_HTML),
    ("/style.css", CSS, STYLE_CSS),
    ("/app.js", JS, APP_JS),
    ("/favicon.svg", SVG, FAVICON_SVG),
];

/// Adds the page's routes to a router (the local server's; never the Lambda's or Vercel's).
/// `config` says whether the bot check's widget is loaded (its origin joins the CSP).
pub fn add_routes<S>(mut router: Router<S>, config: &Config) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let origin = config.bot_check.as_ref().map(|t| t.script_origin());
    // The origin passed the URL checks (printable ASCII): a valid header value. Should it
    // not be, the page keeps the strict policy and the widget simply does not load.
    let csp = HeaderValue::from_str(&content_security_policy(origin.as_deref()))
        .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    for (path, content_type, body) in FILES {
        router = router.route(path, file(content_type, body, csp.clone()));
    }
    router
}

fn file<S>(content_type: &'static str, body: &'static str, csp: HeaderValue) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let refused = csp.clone();
    get(move || async move { serve(content_type, body, csp) })
        .fallback(move || async move { method_not_allowed(refused) })
}

fn serve(content_type: &'static str, body: &'static str, csp: HeaderValue) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers, csp);
    // Small files that change with the binary: always revalidate, never serve a stale page.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn method_not_allowed(csp: HeaderValue) -> Response {
    let request_id = crate::ids::uuid(crate::ids::new_uuid());
    let mut response = ApiError::MethodNotAllowed { allow: "GET, HEAD" }.render(&request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    secure(response.headers_mut(), csp);
    response
}

fn secure(headers: &mut http::HeaderMap, csp: HeaderValue) {
    headers.insert(CONTENT_SECURITY_POLICY, csp);
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
}
