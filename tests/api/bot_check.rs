//! The bot check on anonymous calls (docs/API.md §16) against a local Siteverify that behaves as
//! Cloudflare documents (tests/support/siteverify.rs): every refusal has its code, uses no limit
//! slot and places no call; the request to Siteverify carries exactly the documented fields;
//! authenticated callers are never asked; and with the variables unset nothing changes.

use axum::body::Body;
use chamada::http::page;
use http::Request;
use serde_json::{json, Value};

use crate::support::siteverify::{Mode, Siteverify};
use crate::support::*;

const ORIGIN: &str = "https://chamada.example";
const SECRET: &str = "test-turnstile-secret-FAKE-0123456789";
const SITE_KEY: &str = "0x4AAAAAAAFAKE_site-key";
/// The manual clock's now (`NOON_MS`), and a challenge solved 30 s before it.
const SOLVED: &str = "2026-11-28T11:59:30Z";

/// Production with public calls for `ORIGIN`, one call per address (so any slot a refusal
/// used would show), and the bot check against `verify_url` with a 1 s timeout.
async fn app(verify_url: &str) -> TestApp {
    TestApp::production(&[
        ("PUBLIC_CALLS", "true"),
        ("MAX_REQUESTS_PER_IP", "1"),
        ("TURNSTILE_SECRET_KEY", SECRET),
        ("TURNSTILE_SITE_KEY", SITE_KEY),
        ("TURNSTILE_VERIFY_URL", verify_url),
        ("TURNSTILE_TIMEOUT", "1"),
    ])
    .await
}

fn with_token(token: &str) -> Value {
    json!({"phone_number": NUMBER, "cf-turnstile-response": token})
}

async fn anonymous(t: &TestApp, body: Value, extra: &[(&str, &str)]) -> TestResponse {
    let mut headers = vec![("origin", ORIGIN)];
    headers.extend_from_slice(extra);
    t.start_call(body, &headers).await
}

/// The `Reason`s of the `CaptchaFailures` records, in order.
fn failure_reasons(t: &TestApp) -> Vec<String> {
    t.metrics
        .captured()
        .into_iter()
        .filter(|r| r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "CaptchaFailures")
        .map(|r| r["Reason"].as_str().unwrap_or("").to_string())
        .collect()
}

/// After a refusal: no call, and the one slot of this address is still free (a valid token
/// now gets its call).
async fn assert_nothing_used(t: &TestApp, fake: &Siteverify) {
    assert_eq!(t.calls(), 0, "a refused request placed a call");
    fake.will_answer(
        "fresh-after-refusal",
        Siteverify::pass("chamada.example", "start_call", SOLVED),
    );
    let r = anonymous(t, with_token("fresh-after-refusal"), &[]).await;
    assert_eq!(
        r.status, 200,
        "the refusal used the only slot: {:?}",
        r.body
    );
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn a_valid_token_places_the_call_and_siteverify_gets_exactly_the_documented_fields() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    fake.will_answer(
        "good-token",
        Siteverify::pass("chamada.example", "start_call", SOLVED),
    );
    let r = anonymous(&t, with_token("good-token"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(t.calls(), 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(fake.content_types(), vec!["application/json".to_string()]);
    let mut fields: Vec<&str> = sent
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["idempotency_key", "remoteip", "response", "secret"]
    );
    assert_eq!(sent["secret"], SECRET);
    assert_eq!(sent["response"], "good-token");
    assert_eq!(
        sent["remoteip"], "203.0.113.10",
        "the address Chamada counts"
    );
    let key = sent["idempotency_key"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(key).is_ok(), "{key}");
    // The token never reaches the agent.
    let call = t.recorder.calls.lock().unwrap()[0].clone();
    assert!(!format!("{call:?}").contains("good-token"));
    assert!(failure_reasons(&t).is_empty());
}

#[tokio::test]
async fn each_refusal_has_its_code_uses_no_slot_and_places_no_call() {
    // (token, what Siteverify answers for it, code, reason)
    let cases: Vec<(&str, Option<Value>, u16, &str, &str)> = vec![
        ("", None, 403, "captcha_required", "missing"),
        ("invalid-token", None, 403, "captcha_invalid", "rejected"),
        (
            "expired-token",
            Some(Siteverify::pass(
                "chamada.example",
                "start_call",
                "2026-11-28T11:54:00Z",
            )),
            403,
            "captcha_invalid",
            "stale",
        ),
        (
            "other-host-token",
            Some(Siteverify::pass("evil.example", "start_call", SOLVED)),
            403,
            "captcha_invalid",
            "hostname",
        ),
        (
            "other-action-token",
            Some(Siteverify::pass("chamada.example", "login", SOLVED)),
            403,
            "captcha_invalid",
            "action",
        ),
        (
            "secret-refused-token",
            Some(json!({"success": false, "error-codes": ["invalid-input-secret"]})),
            503,
            "captcha_unavailable",
            "unavailable",
        ),
    ];
    for (token, answer, status, code, reason) in cases {
        let fake = Siteverify::start().await;
        let t = app(&fake.url).await;
        if let Some(answer) = answer {
            fake.will_answer(token, answer);
        }
        let r = anonymous(&t, with_token(token), &[]).await;
        r.assert_error(status, code);
        assert!(
            r.header("ratelimit-remaining").is_none(),
            "{token}: past the limiter"
        );
        assert_eq!(failure_reasons(&t), vec![reason.to_string()], "{token}");
        assert_nothing_used(&t, &fake).await;
    }
}

#[tokio::test]
async fn a_missing_or_malformed_token_is_refused_without_asking_siteverify() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    let too_long = "a".repeat(2049);
    for (body, code, reason) in [
        (
            json!({"phone_number": NUMBER}),
            "captcha_required",
            "missing",
        ),
        (
            json!({"phone_number": NUMBER, "cf-turnstile-response": null}),
            "captcha_required",
            "missing",
        ),
        (with_token(&too_long), "captcha_invalid", "malformed"),
        (with_token("to ken"), "captcha_invalid", "malformed"),
        (with_token("tokén"), "captcha_invalid", "malformed"),
    ] {
        let r = anonymous(&t, body, &[]).await;
        r.assert_error(403, code);
        assert_eq!(failure_reasons(&t).last().map(String::as_str), Some(reason));
    }
    assert!(fake.requests().is_empty(), "Siteverify was asked");
    // Not a string: the body's shape is wrong (422), before the bot check.
    let r = anonymous(
        &t,
        json!({"phone_number": NUMBER, "cf-turnstile-response": 42}),
        &[],
    )
    .await;
    r.assert_error(422, "invalid_request");
    assert_nothing_used(&t, &fake).await;
}

#[tokio::test]
async fn a_reused_token_is_refused_and_a_retry_of_the_same_request_is_not() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    fake.will_answer(
        "once-token",
        Siteverify::pass("chamada.example", "start_call", SOLVED),
    );
    let key = [("idempotency-key", "page-submission-1")];
    let first = anonymous(&t, with_token("once-token"), &key).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    // The retry of that request (its answer lost): verified again with the same
    // idempotency_key, so the token is not burnt, and the answer is replayed.
    let retry = anonymous(&t, with_token("once-token"), &key).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json()["call_id"], first.json()["call_id"]);
    let keys: Vec<Value> = fake
        .requests()
        .iter()
        .map(|r| r["idempotency_key"].clone())
        .collect();
    assert_eq!(keys[0], keys[1]);
    // The same token in a new request (another key, or none) is a reuse.
    for extra in [&[("idempotency-key", "page-submission-2")][..], &[][..]] {
        let reused = anonymous(&t, with_token("once-token"), extra).await;
        reused.assert_error(403, "captcha_invalid");
    }
    // And from another address with the first request's key too.
    let other = from_peer(
        start_call_request(with_token("once-token"), &[("origin", ORIGIN), key[0]]),
        "198.51.100.7:5000",
    );
    t.send(other).await.assert_error(403, "captcha_invalid");
    assert_eq!(failure_reasons(&t), ["duplicate", "duplicate", "duplicate"]);
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn siteverify_down_slow_or_garbled_fails_closed_with_503() {
    let down = Siteverify::down_url().await;
    let t = app(&down).await;
    let r = anonymous(&t, with_token("any-token"), &[]).await;
    r.assert_error(503, "captcha_unavailable");
    assert_eq!(t.calls(), 0);
    assert_eq!(failure_reasons(&t), ["unavailable"]);

    for mode in [
        Mode::Slow,
        Mode::Status(502),
        Mode::Status(429),
        Mode::Garbage,
    ] {
        let fake = Siteverify::start().await;
        let t = app(&fake.url).await;
        fake.set_mode(mode);
        fake.will_answer(
            "good-token",
            Siteverify::pass("chamada.example", "start_call", SOLVED),
        );
        // A Siteverify that never answers (Slow) ends by TURNSTILE_TIMEOUT: without the bound
        // this request would never return.
        let r = anonymous(&t, with_token("good-token"), &[]).await;
        r.assert_error(503, "captcha_unavailable");
        assert_eq!(failure_reasons(&t), ["unavailable"], "{mode:?}");
        fake.set_mode(Mode::Normal);
        assert_nothing_used(&t, &fake).await;
    }
}

#[tokio::test]
async fn authenticated_callers_are_never_asked() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    let auth = bearer(KEY);
    for body in [json!({"phone_number": NUMBER}), with_token("ignored-token")] {
        let r = t
            .start_call(body, &[("authorization", auth.as_str())])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert!(fake.requests().is_empty());
    assert_eq!(t.calls(), 2);
}

#[tokio::test]
async fn a_refused_number_is_answered_before_the_token_is_spent() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    let r = anonymous(
        &t,
        json!({"phone_number": "+351 800 000 000", "cf-turnstile-response": "kept-token"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        fake.requests().is_empty(),
        "the token was spent on a refused number"
    );
}

#[tokio::test]
async fn off_by_default_and_the_field_is_accepted_and_ignored() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = anonymous(&t, json!({"phone_number": NUMBER}), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = anonymous(&t, with_token("whatever"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let health = t
        .send(Request::get("/api/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.json()["bot_check"], Value::Null);
}

#[tokio::test]
async fn health_gives_the_page_the_public_site_key_never_the_secret() {
    let fake = Siteverify::start().await;
    let t = app(&fake.url).await;
    let r = t
        .send(Request::get("/api/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["bot_check"],
        json!({
            "provider": "turnstile",
            "site_key": SITE_KEY,
            "script_url": "https://challenges.cloudflare.com/turnstile/v0/api.js",
            "test_keys": false
        })
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
}

#[tokio::test]
async fn a_half_set_up_bot_check_stops_anonymous_calls_only() {
    for (set, missing) in [
        (("TURNSTILE_SITE_KEY", SITE_KEY), "TURNSTILE_SECRET_KEY"),
        (("TURNSTILE_SECRET_KEY", SECRET), "TURNSTILE_SITE_KEY"),
    ] {
        let t = TestApp::production(&[("PUBLIC_CALLS", "true"), set]).await;
        let health = t
            .send(Request::get("/api/health").body(Body::empty()).unwrap())
            .await;
        assert_eq!(health.status, 503);
        assert_eq!(health.json()["missing"], json!([missing]));
        anonymous(&t, with_token("t"), &[])
            .await
            .assert_error(503, "misconfigured");
        let auth = bearer(KEY);
        let r = t
            .start_call(
                json!({"phone_number": NUMBER}),
                &[("authorization", auth.as_str())],
            )
            .await;
        assert_eq!(r.status, 200, "{missing}: {:?}", r.body);
        assert_eq!(t.calls(), 1);
    }
}

#[tokio::test]
async fn the_page_csp_allows_the_widget_origin_only_when_the_check_is_on() {
    let get = || Request::get("/").body(Body::empty()).unwrap();
    let off = TestApp::new(&[]).await;
    let r = send_to(
        &page::add_routes(off.router.clone(), &off.app.config),
        get(),
    )
    .await;
    assert_eq!(
        r.header("content-security-policy"),
        Some(page::CONTENT_SECURITY_POLICY_VALUE)
    );
    let on = TestApp::new(&[
        ("TURNSTILE_SECRET_KEY", SECRET),
        ("TURNSTILE_SITE_KEY", SITE_KEY),
        (
            "TURNSTILE_SCRIPT_URL",
            "http://127.0.0.1:4000/turnstile/v0/api.js",
        ),
    ])
    .await;
    let r = send_to(&page::add_routes(on.router.clone(), &on.app.config), get()).await;
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self' http://127.0.0.1:4000;"),
        "{csp}"
    );
    assert!(csp.contains("frame-src http://127.0.0.1:4000;"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}
