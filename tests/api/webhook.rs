//! The Make webhook (docs/API.md §9): Standard Webhooks signatures, `x-make-apikey`, the event body,
//! and delivery — retried on 429, 5xx, timeouts and unreachable receivers with one
//! `webhook-id`, never on other 4xx, and always within its time budget.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chamada::notify::WebhookConfig;
use chamada::notify::{
    sign, verify, Attempt, CallOutcome, CallSource, Delivery, Event, EventType, MakeWebhook,
    Notifier, WebhookSecret,
};
use hmac::{Hmac, Mac};
use http::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Sha256;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::providers::{real_app, start_call};
use crate::support::NUMBER;

const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const VECTOR_TS: u64 = 1649367553;
const VECTOR_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
const VECTOR_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
const HOOK_SECRET: &str = "test-webhook-secret-0123456789";
const HOOK_PATH: &str = "/test-hook-token";

fn vector_secret() -> WebhookSecret {
    WebhookSecret::parse(VECTOR_SECRET).unwrap()
}

#[test]
fn signature_matches_the_standard_webhooks_test_vector() {
    let secret = vector_secret();
    assert_eq!(
        sign(&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY.as_bytes()),
        VECTOR_SIGNATURE
    );
    assert!(verify(
        &secret,
        VECTOR_ID,
        VECTOR_TS,
        VECTOR_BODY.as_bytes(),
        VECTOR_SIGNATURE
    ));
    let rotated = format!("v1,bm90IHRoZSByaWdodCBzaWduYXR1cmUgYXQgYWxsIQ== {VECTOR_SIGNATURE}");
    assert!(
        verify(
            &secret,
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY.as_bytes(),
            &rotated
        ),
        "any of several space-separated signatures may match"
    );
}

#[test]
fn empty_truncated_or_altered_signatures_never_verify() {
    let secret = vector_secret();
    let body = VECTOR_BODY.as_bytes();
    let full = VECTOR_SIGNATURE;
    let tag = BASE64.decode(&full[3..]).unwrap();
    let truncated_tag = format!("v1,{}", BASE64.encode(&tag[..16]));
    for candidate in [
        "",
        "v1,",
        "v1",
        " ",
        &full[..full.len() - 1],
        &full[..10],
        &truncated_tag,
        &full[3..],
        &full.replacen("v1,", "v2,", 1),
        &full.replacen("v1,", "v1a,", 1),
    ] {
        assert!(
            !verify(&secret, VECTOR_ID, VECTOR_TS, body, candidate),
            "{candidate:?} verified"
        );
    }
    assert!(!verify(&secret, "msg_other", VECTOR_TS, body, full));
    assert!(!verify(&secret, VECTOR_ID, VECTOR_TS + 1, body, full));
    assert!(!verify(&secret, VECTOR_ID, VECTOR_TS, b"{}", full));
    let other = WebhookSecret::parse("whsec_dGVzdC1vdGhlci1zZWNyZXQ=").unwrap();
    assert!(!verify(&other, VECTOR_ID, VECTOR_TS, body, full));
}

#[test]
fn a_plain_secret_keys_the_hmac_with_its_own_bytes() {
    let mut mac = Hmac::<Sha256>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
    mac.update(b"msg_1.1700000000.{}");
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    let secret = WebhookSecret::parse(HOOK_SECRET).unwrap();
    assert_eq!(sign(&secret, "msg_1", 1_700_000_000, b"{}"), expected);
}

// ---------------------------------------------------------------------------------------------
// Through the router: what a placed or failed call posts.

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn elevenlabs(status: u16) -> MockServer {
    let fake = MockServer::start().await;
    let template = if status == 200 {
        ResponseTemplate::new(200)
            .set_body_json(json!({"success": true, "conversation_id": "conv_hook"}))
    } else {
        ResponseTemplate::new(status)
    };
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&fake)
        .await;
    fake
}

/// Checks the headers of one delivery and returns its body.
fn assert_signed(request: &wiremock::Request, secret: &WebhookSecret) -> Value {
    let get = |name: &str| {
        request
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(get("content-type"), "application/json");
    assert_eq!(get("x-make-apikey"), HOOK_SECRET);
    let id = get("webhook-id");
    let timestamp: u64 = get("webhook-timestamp").parse().unwrap();
    assert!(timestamp.abs_diff(unix_now()) < 60, "a current timestamp");
    assert!(
        verify(
            secret,
            &id,
            timestamp,
            &request.body,
            &get("webhook-signature")
        ),
        "the signature verifies"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], id.as_str(), "webhook-id is the event id");
    body
}

#[tokio::test]
async fn placed_call_is_posted_signed_with_every_event_field() {
    let provider = elevenlabs(200).await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&hook)
        .await;
    let url = format!("{}{HOOK_PATH}", hook.uri());
    let app = real_app(&[
        ("ELEVENLABS_API_BASE", &provider.uri()),
        ("MAKE_WEBHOOK_URL", &url),
        ("MAKE_WEBHOOK_SECRET", HOOK_SECRET),
    ])
    .await;

    let response = start_call(
        &app,
        json!({"phone_number": NUMBER, "name": "Maria", "variables": {"lead_id": "42"}}),
    )
    .await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    let answer = response.json();
    let requests = hook.received_requests().await.unwrap();
    let body = assert_signed(&requests[0], &WebhookSecret::parse(HOOK_SECRET).unwrap());
    assert_eq!(body["type"], "call.initiated");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["data"],
        json!({
            "call_id": answer["call_id"],
            "provider": "elevenlabs",
            "provider_call_id": "conv_hook",
            "to": NUMBER,
            "name": "Maria",
            "variables": {"lead_id": "42"},
            "source": "api",
            "dry_run": false
        })
    );
}

#[tokio::test]
async fn failed_call_is_posted_as_call_failed_with_the_safe_reason() {
    let provider = elevenlabs(500).await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&hook)
        .await;
    let url = format!("{}{HOOK_PATH}", hook.uri());
    let whsec = format!("whsec_{}", BASE64.encode("test-signing-key-bytes"));
    let app = real_app(&[
        ("ELEVENLABS_API_BASE", &provider.uri()),
        ("MAKE_WEBHOOK_URL", &url),
        ("MAKE_WEBHOOK_SECRET", &whsec),
    ])
    .await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(502, "provider_error");
    let request = &hook.received_requests().await.unwrap()[0];
    assert_eq!(request.headers["x-make-apikey"], whsec.as_str());
    let id = request.headers["webhook-id"].to_str().unwrap();
    let ts: u64 = request.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let signature = request.headers["webhook-signature"].to_str().unwrap();
    let decoded = WebhookSecret::parse(&whsec).unwrap();
    assert!(
        verify(&decoded, id, ts, &request.body, signature),
        "keyed with the decoded bytes"
    );
    let raw = WebhookSecret::parse(&whsec["whsec_".len()..]).unwrap();
    assert!(!verify(&raw, id, ts, &request.body, signature));
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "call.failed");
    assert_eq!(body["data"]["provider_call_id"], Value::Null);
    assert_eq!(body["data"]["error"], "ElevenLabs failed (500)");
}

#[tokio::test]
async fn a_refused_webhook_never_fails_a_placed_call() {
    let provider = elevenlabs(200).await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .expect(1)
        .mount(&hook)
        .await;
    let url = format!("{}{HOOK_PATH}", hook.uri());
    let app = real_app(&[
        ("ELEVENLABS_API_BASE", &provider.uri()),
        ("MAKE_WEBHOOK_URL", &url),
        ("MAKE_WEBHOOK_SECRET", HOOK_SECRET),
    ])
    .await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json()["provider_call_id"], "conv_hook");
}

// ---------------------------------------------------------------------------------------------
// Delivery policy, on the notifier itself (millisecond backoff: no test sleeps for seconds).

fn event() -> Event {
    Event {
        id: "msg_test_delivery".into(),
        kind: EventType::CallInitiated,
        created_at: "2026-11-28T12:00:00.000Z".into(),
        data: CallOutcome {
            call_id: "00000000-0000-4000-8000-000000000000".into(),
            provider: "elevenlabs".into(),
            provider_call_id: Some("conv_test".into()),
            to: NUMBER.into(),
            name: None,
            variables: BTreeMap::new(),
            source: CallSource::Api,
            dry_run: false,
            error: None,
        },
    }
}

fn notifier(url: String, retries: u32, attempt_timeout: Duration) -> MakeWebhook {
    let config = WebhookConfig {
        url,
        secret: Some(SecretString::from(HOOK_SECRET)),
        timeout: attempt_timeout,
        retries,
        sweep_every: Duration::from_secs(60),
    };
    MakeWebhook::new(&config, chamada::outbound::http_client().unwrap())
        .unwrap()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

async fn hook_url(server: &MockServer) -> String {
    format!("{}{HOOK_PATH}", server.uri())
}

#[tokio::test]
async fn receiver_answering_503_503_200_gets_three_deliveries_with_one_webhook_id() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .and(header("webhook-id", "msg_test_delivery"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&hook)
        .await;
    let webhook = notifier(hook_url(&hook).await, 3, Duration::from_secs(5));

    let delivery = webhook.deliver(&event().envelope(), "req-test").await;

    assert_eq!(delivery, Delivery::Delivered { attempts: 3 });
    let requests = hook.received_requests().await.unwrap();
    assert_eq!(requests.len(), 3);
    let secret = WebhookSecret::parse(HOOK_SECRET).unwrap();
    let bodies: Vec<Value> = requests.iter().map(|r| assert_signed(r, &secret)).collect();
    assert!(requests
        .iter()
        .all(|r| r.headers["webhook-id"] == "msg_test_delivery"));
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the same event every time"
    );
}

#[tokio::test]
async fn receiver_answering_400_gets_exactly_one_delivery() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400))
        .expect(1)
        .mount(&hook)
        .await;
    let webhook = notifier(hook_url(&hook).await, 3, Duration::from_secs(5));

    let delivery = webhook.deliver(&event().envelope(), "req-test").await;

    assert!(
        matches!(delivery, Delivery::Failed { attempts: 1, last: Attempt::Status(s), .. } if s == StatusCode::BAD_REQUEST),
        "{delivery:?}"
    );
    hook.verify().await;
}

#[tokio::test]
async fn receiver_answering_429_is_retried() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&hook)
        .await;
    let webhook = notifier(hook_url(&hook).await, 3, Duration::from_secs(5));

    assert_eq!(
        webhook.deliver(&event().envelope(), "req-test").await,
        Delivery::Delivered { attempts: 2 }
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_ends_the_delivery_instead_of_waiting() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&hook)
        .await;
    let webhook = notifier(hook_url(&hook).await, 3, Duration::from_secs(5));

    let started = Instant::now();
    let delivery = webhook.deliver(&event().envelope(), "req-test").await;

    assert!(
        matches!(delivery, Delivery::Failed { attempts: 1, .. }),
        "the millisecond backoff would have retried had Retry-After been ignored: {delivery:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn unreachable_receiver_is_retried_then_reported() {
    // A port that was just free: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let webhook = notifier(
        format!("http://127.0.0.1:{port}{HOOK_PATH}"),
        2,
        Duration::from_secs(5),
    );

    let delivery = webhook.deliver(&event().envelope(), "req-test").await;

    assert!(
        matches!(
            delivery,
            Delivery::Failed {
                attempts: 3,
                last: Attempt::Unreachable,
                ..
            }
        ),
        "{delivery:?}"
    );
}

#[tokio::test]
async fn hanging_receiver_times_out_and_is_retried() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .expect(2)
        .mount(&hook)
        .await;
    let webhook = notifier(hook_url(&hook).await, 1, Duration::from_millis(200));

    let started = Instant::now();
    let delivery = webhook.deliver(&event().envelope(), "req-test").await;

    assert!(
        matches!(
            delivery,
            Delivery::Failed {
                attempts: 2,
                last: Attempt::Timeout,
                ..
            }
        ),
        "{delivery:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn delivery_never_outlives_its_budget() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(100)))
        .mount(&hook)
        .await;
    let budget = Duration::from_millis(350);
    let webhook = notifier(hook_url(&hook).await, 10, Duration::from_secs(5)).with_budget(budget);

    let started = Instant::now();
    let delivery = webhook.deliver(&event().envelope(), "req-test").await;
    let took = started.elapsed();

    let Delivery::Failed { attempts, .. } = delivery else {
        panic!("{delivery:?}")
    };
    assert!(attempts < 11, "the budget, not the retry count, ended it");
    // Ten retries of 100 ms each would take over a second.
    assert!(took < budget + Duration::from_millis(400), "took {took:?}");
}

#[test]
fn the_default_policy_is_documented_in_numbers() {
    let config = WebhookConfig {
        url: "https://hook.example/test".into(),
        secret: None,
        timeout: Duration::from_secs(30),
        retries: 3,
        sweep_every: Duration::from_secs(60),
    };
    let policy = MakeWebhook::new(&config, chamada::outbound::http_client().unwrap())
        .unwrap()
        .policy();
    assert_eq!(policy.attempt_timeout, Duration::from_secs(30));
    assert_eq!(policy.retries, 3);
    assert_eq!(
        policy.budget,
        Duration::from_secs(45),
        "WEBHOOK_TIMEOUT + 15 s"
    );
}

#[tokio::test]
async fn a_whsec_secret_that_is_not_base64_degrades_the_configuration() {
    let vars = crate::support::production(&[
        ("MAKE_WEBHOOK_URL", "http://127.0.0.1:9/test-hook"),
        ("MAKE_WEBHOOK_SECRET", "whsec_not*base64!"),
    ]);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = chamada::App::build(crate::support::config(&refs)).await;
    let router = chamada::router(std::sync::Arc::new(app));

    let request = http::Request::get("/api/health")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = crate::support::TestResponse::read(
        tower::ServiceExt::oneshot(router, request).await.unwrap(),
    )
    .await;

    assert_eq!(response.status, 503);
    assert_eq!(response.json()["refused"], json!(["MAKE_WEBHOOK_SECRET"]));
}
