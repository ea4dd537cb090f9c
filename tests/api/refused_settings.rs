//! A provider setting that is present and refused places no call: every call that would use
//! that provider answers `503 misconfigured` and nothing reaches a provider. A refused value
//! never falls back to a default (another host, another endpoint, no agent).

use std::sync::Arc;

use axum::Router;
use chamada::{router, App};
use serde_json::json;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::providers::{livekit_vars, start_call, ELEVEN_KEY};
use crate::support::{config, production, NUMBER};

/// A fake provider that must never be called.
async fn untouchable() -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&fake)
        .await;
    fake
}

/// The real app on the production variables plus `extra`, whatever its problems.
async fn app(extra: &[(&str, String)]) -> Router {
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let vars = production(&extra);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    router(Arc::new(App::build(config(&refs)).await))
}

#[tokio::test]
async fn a_placeholder_agent_name_dispatches_nothing_and_dials_nobody() {
    let fake = untouchable().await;
    let mut vars = livekit_vars(&fake.uri(), None);
    vars.push(("LIVEKIT_AGENT_NAME", "your_agent_name".into()));
    let app = app(&vars).await;

    start_call(&app, json!({"phone_number": NUMBER}))
        .await
        .assert_error(503, "misconfigured");
    // Nothing was sent to LiveKit: `expect(0)` is checked when the fake is dropped.
}

#[tokio::test]
async fn a_misspelt_elevenlabs_phone_provider_calls_no_endpoint() {
    let fake = untouchable().await;
    let app = app(&[
        ("ELEVENLABS_API_KEY", ELEVEN_KEY.into()),
        ("ELEVENLABS_API_BASE", fake.uri()),
        ("ELEVENLABS_PHONE_PROVIDER", "sip_trunkk".into()),
    ])
    .await;

    start_call(&app, json!({"phone_number": NUMBER}))
        .await
        .assert_error(503, "misconfigured");
}

#[tokio::test]
async fn a_refused_elevenlabs_host_never_falls_back_to_the_default_host() {
    let app = app(&[
        ("ELEVENLABS_API_KEY", ELEVEN_KEY.into()),
        (
            "ELEVENLABS_API_BASE",
            "http://api.eu.residency.example".into(),
        ),
    ])
    .await;

    // Before the fix this tried api.elevenlabs.io (and answered 502 or 504 here, offline).
    start_call(&app, json!({"phone_number": NUMBER}))
        .await
        .assert_error(503, "misconfigured");
}

#[tokio::test]
async fn a_half_configured_default_provider_is_refused_not_replaced() {
    // ElevenLabs is meant (its key is set) but has holes; LiveKit is complete. The default
    // is ElevenLabs, so its calls are refused rather than quietly sent through LiveKit.
    let livekit = untouchable().await;
    let mut vars = livekit_vars(&livekit.uri(), None);
    vars.retain(|(k, _)| *k != "CALL_PROVIDER");
    vars.push(("CALL_PROVIDER", String::new()));
    vars.push(("ELEVEN_AGENT_ID", String::new()));
    let app = app(&vars).await;

    start_call(&app, json!({"phone_number": NUMBER}))
        .await
        .assert_error(503, "misconfigured");
}

#[tokio::test]
async fn a_sound_provider_still_calls_beside_a_refused_one() {
    let elevenlabs = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "conversation_id": "conv_ok"})),
        )
        .expect(1)
        .mount(&elevenlabs)
        .await;
    let livekit = untouchable().await;
    let mut vars = livekit_vars(&livekit.uri(), None);
    vars.retain(|(k, _)| *k != "CALL_PROVIDER");
    vars.push(("LIVEKIT_AGENT_NAME", "your_agent_name".into()));
    vars.push(("ELEVENLABS_API_KEY", ELEVEN_KEY.into()));
    vars.push(("ELEVENLABS_API_BASE", elevenlabs.uri()));
    let app = app(&vars).await;

    let placed = start_call(
        &app,
        json!({"phone_number": NUMBER, "provider": "elevenlabs"}),
    )
    .await;
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    start_call(
        &app,
        json!({"phone_number": "+351912345679", "provider": "livekit"}),
    )
    .await
    .assert_error(503, "misconfigured");
}
