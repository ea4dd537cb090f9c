//! docs/API.md §4: strict CORS, decided before any side effect.

use axum::body::Body;
use http::Request;
use serde_json::json;

use crate::support::*;

const SITE: &str = "https://chamada.example";

fn preflight(path: &str, origin: &str) -> Request<Body> {
    Request::options(path)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_gets_exactly_the_spec_headers() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = t.send(preflight("/api/start_call", SITE)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type, Authorization, Idempotency-Key")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert!(r.header("x-request-id").is_some());

    let r = t.send(preflight("/api/health", SITE)).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
}

#[tokio::test]
async fn answers_to_allowed_origins_expose_the_rate_limit_headers() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = t
        .start_call(json!({"phone_number": NUMBER}), &[("origin", SITE)])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some(SITE));
    let exposed = r.header("access-control-expose-headers").unwrap();
    for name in [
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
        "X-Request-Id",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[tokio::test]
async fn look_alike_origins_are_forbidden_before_any_side_effect() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true"), ("MAX_REQUESTS_PER_IP", "1")]).await;
    for origin in [
        "https://chamada.example.evil.test",
        "https://evilchamada.example",
        "https://evil.test/https://chamada.example",
        "http://chamada.example",
        "https://chamada.example:443",
        "https://chamada.example/",
        "HTTPS://CHAMADA.EXAMPLE",
        "null",
        "*",
        "",
    ] {
        let r = t
            .start_call(json!({"phone_number": NUMBER}), &[("origin", origin)])
            .await;
        r.assert_error(403, "forbidden_origin");
        assert_eq!(r.header("access-control-allow-origin"), None, "{origin}");
        let r = t.send(preflight("/api/start_call", origin)).await;
        assert_eq!(r.status, 403, "preflight from {origin}");
    }
    assert_eq!(t.calls(), 0);
    // Nothing was counted: the single per-IP slot is still free.
    let r = t
        .start_call(json!({"phone_number": NUMBER}), &[("origin", SITE)])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_forbidden_origin_is_refused_even_with_a_valid_key() {
    let t = TestApp::production(&[]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[
                ("origin", "https://evil.test"),
                ("authorization", &bearer(KEY)),
            ],
        )
        .await;
    r.assert_error(403, "forbidden_origin");
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn two_origin_headers_are_forbidden() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("origin", SITE), ("origin", "https://evil.test")],
        )
        .await;
    r.assert_error(403, "forbidden_origin");
}

#[tokio::test]
async fn requests_without_origin_get_no_cors_grant_but_vary() {
    let t = TestApp::new(&[]).await;
    let r = t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("vary"), Some("Origin"));
}

#[tokio::test]
async fn development_allows_localhost_3000_by_default() {
    let t = TestApp::new(&[]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("origin", "http://localhost:3000")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
}
