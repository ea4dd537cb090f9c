//! Calls after the answer (docs/API.md §15): the status token, `GET /api/calls/{call_id}`, and
//! ElevenLabs' post-call webhooks — real payload shapes (tests/fixtures/providers), signed as
//! ElevenLabs signs; the official SDK judges the same bytes in `provider_sdks.rs`.

use axum::body::Body;
use chamada::after_answer::AfterAnswer;
use chamada::store::CallStatus;
use hmac::{Hmac, Mac};
use http::Request;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{bearer, config, TestApp, TestResponse, KEY, NOON_MS};

pub const SECRET: &str = "test-elevenlabs-webhook-secret";

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `ElevenLabs-Signature` for `body` at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v0={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn app(extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("PRODUCTION_API_KEY", KEY),
        ("ELEVENLABS_WEBHOOK_SECRET", SECRET),
        ("MAKE_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
    ];
    vars.extend_from_slice(extra);
    // Events stay in the outbox (nothing delivers in process): the tests read them there.
    TestApp::delivering(config(&vars), AfterAnswer::Stream).await
}

/// An anonymous call; its answer.
async fn place(t: &TestApp, number: &str) -> Value {
    let r = t.start_call(json!({"phone_number": number}), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json()
}

async fn read(t: &TestApp, call_id: &str, headers: &[(&str, &str)]) -> TestResponse {
    let mut request = Request::get(format!("/api/calls/{call_id}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    t.send(request.body(Body::empty()).unwrap()).await
}

pub async fn post_event(t: &TestApp, body: &[u8], signature: Option<&str>) -> TestResponse {
    let mut request =
        Request::post("/api/webhooks/elevenlabs").header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("elevenlabs-signature", signature);
    }
    t.send(request.body(Body::from(body.to_vec())).unwrap())
        .await
}

fn now_secs() -> u64 {
    NOON_MS / 1000
}

/// The transcription fixture, about `call_id` (Chamada's dynamic variable).
fn transcription(call_id: &str) -> Vec<u8> {
    let mut event = fixture("elevenlabs/post_call_transcription.json");
    event["data"]["conversation_initiation_client_data"]["dynamic_variables"]["call_id"] =
        json!(call_id);
    serde_json::to_vec(&event).unwrap()
}

/// The busy fixture, about the call the provider knows as `conversation_id`.
fn busy(conversation_id: &str) -> Vec<u8> {
    let mut event = fixture("elevenlabs/call_initiation_failure_sip_busy.json");
    event["data"]["conversation_id"] = json!(conversation_id);
    serde_json::to_vec(&event).unwrap()
}

async fn pending_events(t: &TestApp) -> Vec<Value> {
    t.app
        .outbox
        .due(u64::MAX, 100)
        .await
        .unwrap()
        .iter()
        .map(|item| serde_json::from_str(&item.envelope.body).unwrap())
        .collect()
}

#[tokio::test]
async fn the_page_reads_its_calls_status_with_its_token_and_nothing_more() {
    let t = app(&[]).await;
    let answer = place(&t, "+351912345678").await;
    let (call_id, token) = (
        answer["call_id"].as_str().unwrap(),
        answer["status_token"].as_str().unwrap(),
    );
    assert_eq!(token.len(), 43);

    let r = read(&t, call_id, &[("x-status-token", token)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "call_id",
            "created_at",
            "duration_secs",
            "history",
            "status",
            "updated_at"
        ]
    );
    assert_eq!(body["status"], "initiated");
    assert_eq!(body["history"][0]["status"], "initiated");

    // With a key: the whole record, never the full number.
    let r = read(&t, call_id, &[("authorization", &bearer(KEY))]).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["to"], "+351******678");
    assert_eq!(body["provider"], "dry-run");
    assert_eq!(body["source"], "web");
    assert!(!String::from_utf8_lossy(&r.body).contains("912345678"));
}

#[tokio::test]
async fn without_the_right_token_every_read_is_the_same_404() {
    let t = app(&[]).await;
    let mine = place(&t, "+351912345001").await;
    let theirs = place(&t, "+351912345002").await;
    let id = mine["call_id"].as_str().unwrap();
    let cases: [(&str, Vec<(&str, &str)>); 6] = [
        (id, vec![]),
        (id, vec![("x-status-token", "not-the-token")]),
        (
            id,
            vec![("x-status-token", theirs["status_token"].as_str().unwrap())],
        ),
        (
            "00000000-0000-4000-8000-000000000000",
            vec![("x-status-token", mine["status_token"].as_str().unwrap())],
        ),
        ("not-a-call-id", vec![]),
        (
            id,
            vec![
                ("x-status-token", mine["status_token"].as_str().unwrap()),
                ("x-status-token", mine["status_token"].as_str().unwrap()),
            ],
        ),
    ];
    for (call_id, headers) in cases {
        let r = read(&t, call_id, &headers).await;
        r.assert_error(404, "not_found");
        assert_eq!(r.json()["error"]["message"], "There is nothing here.");
    }
    // The token in the URL counts for nothing.
    let token = mine["status_token"].as_str().unwrap();
    read(&t, &format!("{id}?status_token={token}"), &[])
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn status_reads_are_limited_per_address() {
    let t = app(&[("MAX_STATUS_READS_PER_MINUTE", "3")]).await;
    let answer = place(&t, "+351912345003").await;
    let (id, token) = (
        answer["call_id"].as_str().unwrap(),
        answer["status_token"].as_str().unwrap(),
    );
    for _ in 0..3 {
        assert_eq!(read(&t, id, &[("x-status-token", token)]).await.status, 200);
    }
    let r = read(&t, id, &[("x-status-token", token)]).await;
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    t.clock.advance_secs(60);
    assert_eq!(read(&t, id, &[("x-status-token", token)]).await.status, 200);
}

#[tokio::test]
async fn a_transcription_completes_the_call_once_and_tells_make_once() {
    let t = app(&[]).await;
    let answer = place(&t, "+351912345004").await;
    let id = answer["call_id"].as_str().unwrap();
    let body = transcription(id);
    let signed = signature(SECRET, now_secs(), &body);

    let r = post_event(&t, &body, Some(&signed)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json(), json!({"received": true}));
    let record = read(&t, id, &[("authorization", &bearer(KEY))])
        .await
        .json();
    assert_eq!(record["status"], "completed");
    assert_eq!(record["duration_secs"], 37);
    assert_eq!(record["successful"], "success");
    assert!(record["summary"].as_str().unwrap().len() > 10, "{record}");

    // ElevenLabs retries the same event; a late failure arrives: nothing moves, nothing is sent.
    assert_eq!(post_event(&t, &body, Some(&signed)).await.status, 200);
    let late = busy(answer["provider_call_id"].as_str().unwrap());
    let r = post_event(&t, &late, Some(&signature(SECRET, now_secs(), &late))).await;
    assert_eq!(r.status, 200);
    let record = read(&t, id, &[("authorization", &bearer(KEY))])
        .await
        .json();
    assert_eq!(record["status"], "completed");

    let events = pending_events(&t).await;
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "call.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    assert_eq!(completed[0]["data"]["call_id"], id);
    assert_eq!(completed[0]["data"]["duration_secs"], 37);
    assert!(
        completed[0]["data"].get("transcript").is_none(),
        "transcripts stay home"
    );
    assert!(
        !completed[0].to_string().contains("912345004"),
        "never the number"
    );
}

#[tokio::test]
async fn transcripts_go_to_make_only_when_asked() {
    let t = app(&[("FORWARD_TRANSCRIPTS", "true")]).await;
    let id = place(&t, "+351912345005").await["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = transcription(&id);
    post_event(&t, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    let events = pending_events(&t).await;
    let completed = events
        .iter()
        .find(|e| e["type"] == "call.completed")
        .unwrap();
    assert_eq!(completed["data"]["transcript"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_busy_line_is_found_by_the_providers_id_and_reported_as_busy() {
    let t = app(&[]).await;
    let answer = place(&t, "+351912345006").await;
    let body = busy(answer["provider_call_id"].as_str().unwrap());
    let r = post_event(&t, &body, Some(&signature(SECRET, now_secs(), &body))).await;
    assert_eq!(r.status, 200);
    let id = answer["call_id"].as_str().unwrap();
    let token = answer["status_token"].as_str().unwrap();
    let status = read(&t, id, &[("x-status-token", token)]).await.json();
    assert_eq!(status["status"], "busy");
    let events = pending_events(&t).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "call.busy").count(),
        1
    );
    assert_eq!(
        CallStatus::parse(status["status"].as_str().unwrap()),
        Some(CallStatus::Busy)
    );
}

#[tokio::test]
async fn a_bad_stale_or_missing_signature_changes_nothing() {
    let t = app(&[]).await;
    let answer = place(&t, "+351912345007").await;
    let id = answer["call_id"].as_str().unwrap();
    let body = transcription(id);
    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    let now = now_secs();
    let cases: [(&[u8], Option<String>); 5] = [
        (&tampered, Some(signature(SECRET, now, &body))),
        (&body, Some(signature("another-secret", now, &body))),
        (&body, Some(signature(SECRET, now - 31 * 60, &body))),
        (&body, Some(signature(SECRET, now + 31 * 60, &body))),
        (&body, None),
    ];
    for (sent, header) in cases {
        post_event(&t, sent, header.as_deref())
            .await
            .assert_error(401, "unauthorized");
    }
    // Without ELEVENLABS_WEBHOOK_SECRET no event is accepted.
    let open = TestApp::delivering(config(&[]), AfterAnswer::Stream).await;
    post_event(&open, &body, Some(&signature(SECRET, now, &body)))
        .await
        .assert_error(401, "unauthorized");

    let record = read(&t, id, &[("authorization", &bearer(KEY))])
        .await
        .json();
    assert_eq!(record["status"], "initiated");
    let failures = t
        .metrics
        .captured()
        .into_iter()
        .filter(|r| r.get("ProviderSignatureFailures").is_some())
        .count();
    assert_eq!(failures, 5);
}

#[tokio::test]
async fn audio_and_events_about_unknown_calls_are_acknowledged_and_change_nothing() {
    let t = app(&[]).await;
    let audio = serde_json::to_vec(&fixture("elevenlabs/post_call_audio.json")).unwrap();
    let r = post_event(&t, &audio, Some(&signature(SECRET, now_secs(), &audio))).await;
    assert_eq!(r.status, 200);
    let stranger = transcription("00000000-0000-4000-8000-00000000dead");
    let r = post_event(
        &t,
        &stranger,
        Some(&signature(SECRET, now_secs(), &stranger)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(pending_events(&t).await.is_empty());
    let unknown = t
        .metrics
        .captured()
        .into_iter()
        .filter(|r| r.get("UnknownCallEvents").is_some())
        .count();
    assert_eq!(
        unknown, 1,
        "audio is not about a status: only the stranger counts"
    );
}
