//! docs/API.md §3: who may start a call.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn production_refuses_anonymous_calls_with_401_and_www_authenticate() {
    let t = TestApp::production(&[]).await;
    let r = t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn a_valid_key_places_the_call_in_production() {
    let t = TestApp::production(&[]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("authorization", &bearer(KEY))],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = r.json();
    assert_eq!(body["status"], "initiated");
    assert_eq!(body["provider"], "elevenlabs");
    assert_eq!(body["provider_call_id"], "conv_test_123");
    assert_eq!(body["to"], NUMBER);
    assert_eq!(body["dry_run"], false);
    assert!(uuid::Uuid::parse_str(body["call_id"].as_str().unwrap()).is_ok());
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn every_key_of_a_comma_separated_list_is_accepted() {
    let keys = format!("{KEY},{OTHER_KEY}");
    let t = TestApp::production(&[("PRODUCTION_API_KEY", &keys)]).await;
    for key in [KEY, OTHER_KEY] {
        let r = t
            .start_call(
                json!({"phone_number": NUMBER}),
                &[("authorization", &bearer(key))],
            )
            .await;
        assert_eq!(r.status, 200, "{key}: {:?}", r.body);
    }
}

#[tokio::test]
async fn a_wrong_key_is_401_even_where_anonymous_calls_are_allowed() {
    for t in [
        TestApp::new(&[]).await,
        TestApp::production(&[("PUBLIC_CALLS", "true")]).await,
    ] {
        for auth in [
            bearer("test-key-wrong-wrong-wrong-wrong-wrong-wrong"),
            "Bearer".to_string(),
            format!("Basic {KEY}"),
            KEY.to_string(),
        ] {
            let r = t
                .start_call(json!({"phone_number": NUMBER}), &[("authorization", &auth)])
                .await;
            r.assert_error(401, "unauthorized");
        }
        assert_eq!(t.calls(), 0);
    }
}

#[tokio::test]
async fn public_calls_open_production_to_anonymous_browsers() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("origin", "https://chamada.example")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(t.calls(), 1);
}

/// Public calls are for browsers of ALLOWED_ORIGINS: an anonymous request with no `Origin`
/// (a script, a bot) gets `401` in production, as a server without a key would.
#[tokio::test]
async fn public_calls_need_an_allowed_origin_from_anonymous_callers_in_production() {
    let t = TestApp::production(&[("PUBLIC_CALLS", "true")]).await;
    let r = t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(t.calls(), 0);
    // A server with a key needs no Origin.
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("authorization", &bearer(KEY))],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn development_allows_anonymous_calls() {
    let t = TestApp::new(&[]).await;
    let r = t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["dry_run"], true);
    assert_eq!(r.json()["provider"], "dry-run");
}

#[tokio::test]
async fn anonymous_callers_cannot_choose_the_provider_or_send_variables() {
    let t = TestApp::new(&[]).await;
    for body in [
        json!({"phone_number": NUMBER, "provider": "elevenlabs"}),
        json!({"phone_number": NUMBER, "variables": {"lead_id": "42"}}),
    ] {
        t.start_call(body, &[])
            .await
            .assert_error(422, "invalid_request");
    }
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn authenticated_callers_pass_variables_and_name_to_the_agent() {
    let t = TestApp::production(&[]).await;
    let r = t
        .start_call(
            json!({"phone_number": "+351 912-345-678", "name": " Maria ", "variables": {"lead_id": "42"}}),
            &[("authorization", &bearer(KEY))],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let calls = t.recorder.calls.lock().unwrap();
    assert_eq!(calls[0].to.as_str(), NUMBER);
    assert_eq!(calls[0].name.as_deref(), Some("Maria"));
    assert_eq!(
        calls[0].variables.get("lead_id").map(String::as_str),
        Some("42")
    );
}

#[tokio::test]
async fn default_fallback_phone_serves_authenticated_callers_only() {
    let t = TestApp::production(&[
        ("DEFAULT_FALLBACK_PHONE", "+351912000111"),
        ("PUBLIC_CALLS", "true"),
    ])
    .await;
    let r = t
        .start_call(json!({}), &[("authorization", &bearer(KEY))])
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["to"], "+351912000111");
    t.start_call(json!({}), &[("origin", "https://chamada.example")])
        .await
        .assert_error(422, "invalid_request");
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn a_weak_production_configuration_places_no_call() {
    let t = TestApp::production(&[("PRODUCTION_API_KEY", "short")]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("authorization", "Bearer short")],
        )
        .await;
    r.assert_error(503, "misconfigured");
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn production_without_a_provider_answers_provider_not_configured() {
    let t = TestApp::new(&[
        ("APP_ENV", "production"),
        ("PRODUCTION_API_KEY", KEY),
        ("RATE_LIMIT_STORE", "memory"),
    ])
    .await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("authorization", &bearer(KEY))],
        )
        .await;
    r.assert_error(503, "provider_not_configured");
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn naming_an_unconfigured_provider_answers_provider_not_configured() {
    let t = TestApp::production(&[]).await;
    let r = t
        .start_call(
            json!({"phone_number": NUMBER, "provider": "livekit"}),
            &[("authorization", &bearer(KEY))],
        )
        .await;
    r.assert_error(503, "provider_not_configured");
    assert_eq!(t.calls(), 0);
}
