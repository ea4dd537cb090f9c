//! The "call me" page of the local server (`chamada::http::page`): served with a strict CSP
//! and the right types, and the API beside it unchanged. The API-only router has no page.

use axum::body::Body;
use axum::Router;
use chamada::http::page;
use http::Request;
use serde_json::json;

use crate::support::*;

/// The local server's router: the API plus the page.
fn local(t: &TestApp) -> Router {
    page::add_routes(t.router.clone(), &t.app.config)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn assert_hardened(r: &TestResponse) {
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    for directive in [
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} not in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn root_serves_the_page_with_a_strict_csp() {
    let t = TestApp::new(&[]).await;
    let r = send_to(&local(&t), get("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_hardened(&r);
    let html = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(html.contains(r#"<form id="call-form""#));
    assert!(html.contains(r#"<label for="phone">"#));
    assert!(html.contains(r#"aria-live="polite""#));
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert_eq!(html, page::FILES[0].2, "the embedded public/index.html");
    assert_eq!(
        send_to(&local(&t), get("/index.html")).await.body,
        r.body,
        "/index.html is the same page"
    );
}

#[test]
fn page_needs_nothing_the_csp_forbids() {
    // Inline code and other hosts would be blocked by the CSP: the page must not rely on them.
    // (The SVG's `xmlns` names a namespace; it loads nothing.)
    for (path, _, body) in page::FILES {
        assert!(
            !body.contains("http://") && !body.contains("https://") || path == "/favicon.svg",
            "{path} refers to another host"
        );
        assert!(
            !body.contains("@import") && !body.contains("url("),
            "{path} loads more"
        );
    }
    let html = page::FILES[0].2;
    assert_eq!(html.matches("<script").count(), 1, "one script, external");
    assert!(
        !html.contains(" style=") && !html.contains("<style"),
        "no inline styles"
    );
    let handlers = html.split(" on").skip(1).filter(|rest| {
        let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        letters > 0 && rest.as_bytes().get(letters) == Some(&b'=')
    });
    assert_eq!(handlers.count(), 0, "no inline event handlers");
}

#[tokio::test]
async fn assets_are_served_with_their_types() {
    let t = TestApp::new(&[]).await;
    for (path, content_type) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = send_to(&local(&t), get(path)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_hardened(&r);
        assert!(!r.body.is_empty(), "{path}");
    }
    let head = send_to(&local(&t), Request::head("/").body(Body::empty()).unwrap()).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn other_methods_on_the_page_are_a_json_405() {
    let t = TestApp::new(&[]).await;
    let r = send_to(&local(&t), Request::post("/").body(Body::empty()).unwrap()).await;
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn api_routes_still_answer_json_beside_the_page() {
    let t = TestApp::new(&[]).await;
    let router = local(&t);

    let health = send_to(&router, get("/api/health")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(health.json()["status"], "ok");

    let call = send_to(
        &router,
        start_call_request(json!({"phone_number": NUMBER, "name": "Maria"}), &[]),
    )
    .await;
    assert_eq!(call.status, 200, "{:?}", call.body);
    assert_eq!(call.json()["status"], "initiated");
    assert_eq!(t.calls(), 1);

    let refused = send_to(
        &router,
        start_call_request(json!({"phone_number": "+351760123456"}), &[]),
    )
    .await;
    refused.assert_error(422, "destination_not_allowed");
    assert_eq!(t.calls(), 1);

    send_to(&router, get("/nope"))
        .await
        .assert_error(404, "not_found");
    send_to(&router, get("/api/nope"))
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn the_api_only_router_has_no_page() {
    // Lambda and Vercel run `chamada::router` alone: `/` is the API's JSON 404 there.
    let t = TestApp::new(&[]).await;
    t.send(get("/")).await.assert_error(404, "not_found");
    t.send(get("/app.js")).await.assert_error(404, "not_found");
}
