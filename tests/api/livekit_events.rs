//! LiveKit webhooks (docs/API.md §15.4): real event shapes (tests/fixtures/providers/livekit),
//! each authorised by a token the official `livekit-api` Python package makes
//! (scripts/provider-sdks), as LiveKit's server makes it.

use std::io::Write;
use std::process::{Command, Stdio};

use axum::body::Body;
use chamada::after_answer::AfterAnswer;
use http::Request;
use serde_json::{json, Value};

use crate::calls::fixture;
use crate::support::{bearer, config, TestApp, TestResponse, KEY};

/// Visibly fake.
const LK_KEY: &str = "APItestFAKEkey";
const LK_SECRET: &str = "test-livekit-secret-FAKE-0123456789abcdef";

/// The JWT LiveKit would send with `body` (the official SDK's `AccessToken.with_sha256`).
fn token(secret: &str, ttl: &str, body: &[u8]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/provider-sdks");
    let mut child = Command::new(script)
        .args([
            "livekit-token",
            "--api-key",
            LK_KEY,
            "--api-secret",
            secret,
            "--ttl",
            ttl,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("scripts/provider-sdks runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn app() -> TestApp {
    let vars = [
        ("PRODUCTION_API_KEY", KEY),
        ("CALL_PROVIDER", "dry-run"),
        ("LIVEKIT_URL", "http://127.0.0.1:9"),
        ("LIVEKIT_API_KEY", LK_KEY),
        ("LIVEKIT_API_SECRET", LK_SECRET),
        ("SIP_TRUNK_ID", "ST_test_trunk"),
        ("CALLER_ID", "+351211234567"),
        ("MAKE_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("MAX_REQUESTS_PER_IP", "100"),
        ("MAX_CALLS_PER_NUMBER", "100"),
    ];
    TestApp::delivering(config(&vars), AfterAnswer::Stream).await
}

/// `fixture`, about the participant of `call_id`.
fn event(name: &str, call_id: &str) -> Vec<u8> {
    let mut event = fixture(&format!("livekit/{name}"));
    event["participant"]["identity"] = json!(format!("phone-{call_id}"));
    serde_json::to_vec(&event).unwrap()
}

async fn post(t: &TestApp, body: &[u8], authorization: Option<&str>) -> TestResponse {
    let mut request =
        Request::post("/api/webhooks/livekit").header("content-type", "application/webhook+json");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    t.send(request.body(Body::from(body.to_vec())).unwrap())
        .await
}

async fn status(t: &TestApp, call_id: &str) -> Value {
    let r = t
        .send(
            Request::get(format!("/api/calls/{call_id}"))
                .header("authorization", bearer(KEY))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.json()
}

async fn call(t: &TestApp, number: &str) -> String {
    let r = t.start_call(json!({"phone_number": number}), &[]).await;
    assert_eq!(r.status, 200);
    r.json()["call_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_rejected_sip_call_is_busy_and_its_replay_changes_nothing() {
    let t = app().await;
    let id = call(&t, "+351912345011").await;
    let body = event("participant_left_busy.json", &id);
    let auth = token(LK_SECRET, "300", &body);
    let r = post(&t, &body, Some(&auth)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let record = status(&t, &id).await;
    assert_eq!(record["status"], "busy");
    assert_eq!(record["end_reason"], "USER_REJECTED");
    assert_eq!(
        record["provider_ids"],
        json!({}),
        "a dry-run call has no provider ids"
    );
    // LiveKit retries; a later "left" of another kind arrives: a final status never changes.
    assert_eq!(post(&t, &body, Some(&auth)).await.status, 200);
    let other = event("participant_left.json", &id);
    post(&t, &other, Some(&token(LK_SECRET, "300", &other))).await;
    assert_eq!(status(&t, &id).await["status"], "busy");
}

#[tokio::test]
async fn each_way_a_sip_call_ends_has_its_status() {
    let t = app().await;
    for (fixture, expected) in [
        ("participant_left.json", "completed"),
        ("participant_left_room_deleted.json", "completed"),
        ("participant_left_no_answer.json", "no_answer"),
        ("participant_left_busy.json", "busy"),
        ("participant_joined_active.json", "in_progress"),
    ] {
        let id = call(&t, "+351912345012").await;
        let body = event(fixture, &id);
        assert_eq!(
            post(&t, &body, Some(&token(LK_SECRET, "300", &body)))
                .await
                .status,
            200
        );
        assert_eq!(status(&t, &id).await["status"], expected, "{fixture}");
    }
}

#[tokio::test]
async fn only_a_token_for_this_body_from_this_key_counts() {
    let t = app().await;
    let id = call(&t, "+351912345013").await;
    let body = event("participant_left.json", &id);
    let mut tampered = body.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 1;
    let good = token(LK_SECRET, "300", &body);
    let cases = [
        (tampered.as_slice(), Some(good.clone())),
        (
            body.as_slice(),
            Some(token("another-secret-0123456789abcdef", "300", &body)),
        ),
        (body.as_slice(), Some(token(LK_SECRET, "-120", &body))),
        (body.as_slice(), None),
    ];
    for (sent, auth) in cases {
        post(&t, sent, auth.as_deref())
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(status(&t, &id).await["status"], "initiated");
    // The agent's own participant, and the room closing, change nothing.
    for other in [
        "participant_joined_agent.json",
        "room_finished.json",
        "participant_joined.json",
    ] {
        let mut event = fixture(&format!("livekit/{other}"));
        if other == "participant_joined.json" {
            event["participant"]["identity"] = json!(format!("phone-{id}"));
        }
        let body = serde_json::to_vec(&event).unwrap();
        assert_eq!(
            post(&t, &body, Some(&token(LK_SECRET, "300", &body)))
                .await
                .status,
            200
        );
    }
    assert_eq!(status(&t, &id).await["status"], "initiated");
}
