//! Real providers (docs/API.md §7) against local fakes: the bytes on the wire are what ElevenLabs and
//! LiveKit expect, their refusals become safe `502`s, a hanging provider a `504`, and nothing is
//! ever retried. The last tests run the real local server binary end to end.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chamada::{router, App};
use hmac::{Hmac, Mac};
use http::Request;
use livekit_protocol as proto;
use prost::Message;
use serde_json::{json, Value};
use sha2::Sha256;
use tower::ServiceExt;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{bearer, config, production, TestResponse, KEY, NUMBER, PEER};

pub const ELEVEN_KEY: &str = "test-elevenlabs-key-0123456789";
pub const LK_KEY: &str = "APItestkey";
pub const LK_SECRET: &str = "test-livekit-secret-0123456789abcdef";
const TWILIO_PATH: &str = "/v1/convai/twilio/outbound-call";
const SIP_TRUNK_PATH: &str = "/v1/convai/sip-trunk/outbound-call";
const DISPATCH_PATH: &str = "/twirp/livekit.AgentDispatchService/CreateDispatch";
const SIP_PATH: &str = "/twirp/livekit.SIP/CreateSIPParticipant";

/// The real app (real dispatchers and notifier, no recorder) on the production variables plus
/// `extra`.
pub async fn real_app(extra: &[(&str, &str)]) -> Router {
    let mut extra = extra.to_vec();
    extra.push(("ELEVENLABS_API_KEY", ELEVEN_KEY));
    let vars = production(&extra);
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = config(&refs);
    assert!(config.problems.is_empty(), "{:?}", config.problems);
    router(Arc::new(App::build(config).await))
}

/// The LiveKit variables for a fake at `uri`.
pub fn livekit_vars(uri: &str, agent: Option<&'static str>) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("LIVEKIT_URL", uri.to_string()),
        ("LIVEKIT_API_KEY", LK_KEY.to_string()),
        ("LIVEKIT_API_SECRET", LK_SECRET.to_string()),
        ("SIP_TRUNK_ID", "ST_test_trunk".to_string()),
        ("CALLER_ID", "+351211234567".to_string()),
        ("CALL_PROVIDER", "livekit".to_string()),
    ];
    if let Some(agent) = agent {
        vars.push(("LIVEKIT_AGENT_NAME", agent.to_string()));
    }
    vars
}

fn refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `POST /api/start_call` through the router, authenticated, from `PEER`.
pub async fn start_call(router: &Router, body: Value) -> TestResponse {
    let mut request = Request::post("/api/start_call")
        .header("content-type", "application/json")
        .header("authorization", bearer(KEY))
        .body(Body::from(body.to_string()))
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    TestResponse::read(router.clone().oneshot(request).await.unwrap()).await
}

fn header_str<'a>(request: &'a wiremock::Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

fn conversation(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "success": true,
        "message": "Success",
        "conversation_id": id,
        "callSid": "CA0000test"
    }))
}

// ---------------------------------------------------------------------------------------------
// ElevenLabs

#[tokio::test]
async fn elevenlabs_call_sends_the_documented_request_and_returns_the_conversation_id() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .and(header("xi-api-key", ELEVEN_KEY))
        .and(header("content-type", "application/json"))
        .respond_with(conversation("conv_test_twilio"))
        .expect(1)
        .mount(&fake)
        .await;
    let app = real_app(&[("ELEVENLABS_API_BASE", &fake.uri())]).await;

    let response = start_call(
        &app,
        json!({"phone_number": "+351 912-345-678", "name": "Maria",
               "variables": {"lead_id": "42", "call_id": "spoofed", "name": "spoofed"}}),
    )
    .await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    let answer = response.json();
    assert_eq!(answer["provider"], "elevenlabs");
    assert_eq!(answer["provider_call_id"], "conv_test_twilio");
    assert_eq!(answer["dry_run"], false);
    let call_id = answer["call_id"].as_str().unwrap();
    let sent = &fake.received_requests().await.unwrap()[0];
    assert_eq!(
        sent.body_json::<Value>().unwrap(),
        json!({
            "agent_id": "agent_test",
            "agent_phone_number_id": "phnum_test",
            "to_number": NUMBER,
            "conversation_initiation_client_data": {
                "dynamic_variables": {"lead_id": "42", "name": "Maria", "call_id": call_id}
            }
        }),
        "variables named name or call_id never override the real ones"
    );
}

#[tokio::test]
async fn elevenlabs_sip_trunk_numbers_use_the_sip_trunk_endpoint() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SIP_TRUNK_PATH))
        .and(header("xi-api-key", ELEVEN_KEY))
        .respond_with(conversation("conv_test_sip"))
        .expect(1)
        .mount(&fake)
        .await;
    let app = real_app(&[
        ("ELEVENLABS_API_BASE", &fake.uri()),
        ("ELEVENLABS_PHONE_PROVIDER", "sip-trunk"),
    ])
    .await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json()["provider_call_id"], "conv_test_sip");
    let sent = &fake.received_requests().await.unwrap()[0];
    let body: Value = sent.body_json().unwrap();
    let vars = &body["conversation_initiation_client_data"]["dynamic_variables"];
    assert_eq!(
        vars["name"], "",
        "name is always present for the agent prompt"
    );
    assert_eq!(vars["call_id"], response.json()["call_id"]);
}

#[tokio::test]
async fn elevenlabs_refusals_become_safe_provider_errors() {
    let echo = format!("key {ELEVEN_KEY} cannot call {NUMBER}");
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (
            ResponseTemplate::new(401)
                .set_body_json(json!({"detail": {"status": "invalid_api_key", "message": echo}})),
            "ElevenLabs rejected the API key (401: invalid_api_key)",
        ),
        (
            ResponseTemplate::new(422).set_body_json(
                json!({"detail": [{"loc": ["body", "to_number"], "msg": echo, "type": "value_error"}]}),
            ),
            "ElevenLabs rejected the request (422: body.to_number)",
        ),
        (
            ResponseTemplate::new(429).set_body_string(echo.clone()),
            "ElevenLabs is rate limiting or out of concurrent calls (429)",
        ),
        (
            ResponseTemplate::new(503).set_body_string(echo.clone()),
            "ElevenLabs failed (503)",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"success": false, "message": echo})),
            "ElevenLabs did not place the call (success: false)",
        ),
        (
            ResponseTemplate::new(200).set_body_string(echo.clone()),
            "ElevenLabs answered with an unreadable body",
        ),
    ];
    for (template, reason) in cases {
        let fake = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(TWILIO_PATH))
            .respond_with(template)
            .expect(1)
            .mount(&fake)
            .await;
        let app = real_app(&[("ELEVENLABS_API_BASE", &fake.uri())]).await;

        let response = start_call(&app, json!({"phone_number": NUMBER})).await;

        response.assert_error(502, "provider_error");
        let message = response.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.ends_with(reason),
            "{message:?} should end with {reason:?}"
        );
        let text = String::from_utf8_lossy(&response.body);
        assert!(
            !text.contains(ELEVEN_KEY),
            "the key never reaches the caller"
        );
        assert!(
            !text.contains("cannot call"),
            "the upstream body never reaches the caller"
        );
    }
}

#[tokio::test]
async fn elevenlabs_500_is_a_502_after_exactly_one_request() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&fake)
        .await;
    let app = real_app(&[("ELEVENLABS_API_BASE", &fake.uri())]).await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(502, "provider_error");
    fake.verify().await;
}

#[tokio::test]
async fn hanging_elevenlabs_is_a_504_within_provider_timeout() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .respond_with(conversation("conv_too_late").set_delay(Duration::from_secs(30)))
        .expect(1)
        .mount(&fake)
        .await;
    let app = real_app(&[
        ("ELEVENLABS_API_BASE", &fake.uri()),
        ("PROVIDER_TIMEOUT", "1"),
    ])
    .await;

    let started = Instant::now();
    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(504, "provider_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "answered before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// LiveKit

fn sip_answer(sip_call_id: &str) -> ResponseTemplate {
    let info = proto::SipParticipantInfo {
        participant_id: "PA_test".into(),
        participant_identity: "phone".into(),
        room_name: "call".into(),
        sip_call_id: sip_call_id.into(),
    };
    ResponseTemplate::new(200).set_body_raw(info.encode_to_vec(), "application/protobuf")
}

fn dispatch_answer() -> ResponseTemplate {
    let dispatch = proto::AgentDispatch {
        id: "AD_test".into(),
        agent_name: "test-agent".into(),
        ..Default::default()
    };
    ResponseTemplate::new(200).set_body_raw(dispatch.encode_to_vec(), "application/protobuf")
}

/// Verifies an HS256 JWT with `secret`, independently of the library that signed it, and
/// returns its claims.
fn verify_jwt(token: &str, secret: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the token is signed with LIVEKIT_API_SECRET");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(claims["iss"], LK_KEY, "iss is the API key");
    assert!(claims["exp"].as_u64().unwrap() > now, "not expired");
    assert!(
        claims["nbf"].as_u64().unwrap_or(0) <= now + 5,
        "already valid"
    );
    claims
}

fn bearer_token(request: &wiremock::Request) -> &str {
    header_str(request, "authorization")
        .strip_prefix("Bearer ")
        .expect("a bearer token")
}

#[tokio::test]
async fn livekit_call_dispatches_the_agent_then_dials_with_signed_protobuf_requests() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DISPATCH_PATH))
        .and(header("content-type", "application/protobuf"))
        .respond_with(dispatch_answer())
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .and(header("content-type", "application/protobuf"))
        .respond_with(sip_answer("SCL_test_123"))
        .expect(1)
        .mount(&fake)
        .await;
    let vars = livekit_vars(&fake.uri(), Some("test-agent"));
    let app = real_app(&refs(&vars)).await;

    let response = start_call(
        &app,
        json!({"phone_number": NUMBER, "name": "Maria", "variables": {"lead_id": "42"}}),
    )
    .await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    let answer = response.json();
    assert_eq!(answer["provider"], "livekit");
    assert_eq!(answer["provider_call_id"], "SCL_test_123");
    let call_id = answer["call_id"].as_str().unwrap();
    let room = format!("call-{call_id}");
    let metadata = json!({"phone_number": NUMBER, "call_id": call_id, "name": "Maria",
                          "variables": {"lead_id": "42"}});

    let requests = fake.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let (dispatch, sip) = (&requests[0], &requests[1]);
    assert_eq!(
        dispatch.url.path(),
        DISPATCH_PATH,
        "the agent is dispatched first"
    );

    let claims = verify_jwt(bearer_token(dispatch), LK_SECRET);
    assert_eq!(claims["video"]["roomAdmin"], true);
    assert_eq!(claims["video"]["room"], room.as_str());
    let body = proto::CreateAgentDispatchRequest::decode(dispatch.body.as_slice()).unwrap();
    assert_eq!(body.agent_name, "test-agent");
    assert_eq!(body.room, room);
    assert_eq!(
        serde_json::from_str::<Value>(&body.metadata).unwrap(),
        metadata
    );

    let claims = verify_jwt(bearer_token(sip), LK_SECRET);
    assert_eq!(claims["sip"]["call"], true, "the sip.call grant");
    let body = proto::CreateSipParticipantRequest::decode(sip.body.as_slice()).unwrap();
    assert_eq!(body.sip_trunk_id, "ST_test_trunk");
    assert_eq!(body.sip_call_to, NUMBER);
    assert_eq!(body.sip_number, "+351211234567");
    assert_eq!(body.room_name, room);
    assert_eq!(body.participant_identity, format!("phone-{call_id}"));
    assert_eq!(body.participant_name, "Maria");
    assert_eq!(
        serde_json::from_str::<Value>(&body.participant_metadata).unwrap(),
        metadata
    );
    assert!(
        !body.wait_until_answered,
        "initiated means dialling, not answered"
    );
}

#[tokio::test]
async fn livekit_without_an_agent_name_only_dials() {
    let fake = MockServer::start().await;
    Mock::given(path(DISPATCH_PATH))
        .respond_with(dispatch_answer())
        .expect(0)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .respond_with(sip_answer("SCL_no_agent"))
        .expect(1)
        .mount(&fake)
        .await;
    let vars = livekit_vars(&fake.uri(), None);
    let app = real_app(&refs(&vars)).await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.json()["provider_call_id"], "SCL_no_agent");
    fake.verify().await;
}

#[tokio::test]
async fn livekit_busy_callee_keeps_its_sip_status_in_the_502() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": "resource_exhausted",
            "msg": format!("call to {NUMBER} failed"),
            "meta": {"sip_status_code": "486", "sip_status": "Busy Here"}
        })))
        .expect(1)
        .mount(&fake)
        .await;
    let vars = livekit_vars(&fake.uri(), None);
    let app = real_app(&refs(&vars)).await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(502, "provider_error");
    let message = response.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("486 Busy Here"), "{message}");
    assert!(
        !message.contains(NUMBER),
        "Twirp's free text is not repeated: {message}"
    );
}

#[tokio::test]
async fn livekit_500_is_a_502_after_exactly_one_request() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"code": "internal", "msg": "boom"})),
        )
        .expect(1)
        .mount(&fake)
        .await;
    let vars = livekit_vars(&fake.uri(), None);
    let app = real_app(&refs(&vars)).await;

    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(502, "provider_error");
    fake.verify().await;
}

#[tokio::test]
async fn hanging_livekit_is_a_504_within_provider_timeout() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .respond_with(sip_answer("SCL_too_late").set_delay(Duration::from_secs(30)))
        .expect(1)
        .mount(&fake)
        .await;
    let mut vars = livekit_vars(&fake.uri(), None);
    vars.push(("PROVIDER_TIMEOUT", "1".into()));
    let app = real_app(&refs(&vars)).await;

    let started = Instant::now();
    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(504, "provider_timeout");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn livekit_agent_dispatch_and_dial_share_one_provider_timeout() {
    let fake = MockServer::start().await;
    Mock::given(path(DISPATCH_PATH))
        .respond_with(dispatch_answer().set_delay(Duration::from_millis(900)))
        .mount(&fake)
        .await;
    Mock::given(path(SIP_PATH))
        .respond_with(sip_answer("SCL_too_late").set_delay(Duration::from_millis(900)))
        .mount(&fake)
        .await;
    let mut vars = livekit_vars(&fake.uri(), Some("test-agent"));
    vars.push(("PROVIDER_TIMEOUT", "1".into()));
    let app = real_app(&refs(&vars)).await;

    let started = Instant::now();
    let response = start_call(&app, json!({"phone_number": NUMBER})).await;

    response.assert_error(504, "provider_timeout");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1600),
        "each request alone fits in the timeout; together they must not: {took:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The local server binary, end to end.

const E2E_FAILING: &str = "+351912345670";
const E2E_LIVEKIT: &str = "+351961234567";
const E2E_ELEVEN_KEY: &str = "test-e2e-elevenlabs-key-abcdef0123";
const E2E_LK_SECRET: &str = "test-e2e-livekit-secret-abcdef0123";
const E2E_HOOK_SECRET: &str = "test-e2e-webhook-secret-abcdef0123";
const E2E_HOOK_TOKEN: &str = "test-e2e-hook-path-token";

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Run {
    /// `(status, body)` per call, in order.
    answers: Vec<(u16, Value)>,
    /// Every stdout line after the listening line.
    logs: Vec<String>,
}

/// Starts `chamada` in production with a key, every provider and the webhook on local fakes,
/// places three calls (ElevenLabs accepted, ElevenLabs failing, LiveKit accepted) and returns
/// the answers and every log line.
async fn run_local_server() -> Run {
    let eleven = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .and(header("xi-api-key", E2E_ELEVEN_KEY))
        .and(body_partial_json(json!({"to_number": NUMBER})))
        .respond_with(conversation("conv_e2e"))
        .expect(1)
        .mount(&eleven)
        .await;
    Mock::given(method("POST"))
        .and(path(TWILIO_PATH))
        .and(body_partial_json(json!({"to_number": E2E_FAILING})))
        .respond_with(ResponseTemplate::new(500).set_body_string(format!("{E2E_FAILING} failed")))
        .expect(1)
        .mount(&eleven)
        .await;
    let livekit = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DISPATCH_PATH))
        .respond_with(dispatch_answer())
        .expect(1)
        .mount(&livekit)
        .await;
    Mock::given(method("POST"))
        .and(path(SIP_PATH))
        .respond_with(sip_answer("SCL_e2e"))
        .expect(1)
        .mount(&livekit)
        .await;
    let hook = MockServer::start().await;
    let hook_path = format!("/{E2E_HOOK_TOKEN}");
    Mock::given(method("POST"))
        .and(path(hook_path.as_str()))
        .and(header("x-make-apikey", E2E_HOOK_SECRET))
        .and(body_partial_json(json!({"type": "call.failed"})))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path(hook_path.as_str()))
        .and(header("x-make-apikey", E2E_HOOK_SECRET))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&hook)
        .await;

    let child = Command::new(env!("CARGO_BIN_EXE_chamada"))
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PORT", "0")
        .env("APP_ENV", "production")
        .env("PRODUCTION_API_KEY", KEY)
        .env("RATE_LIMIT_STORE", "memory")
        .env("CALL_PROVIDER", "elevenlabs")
        .env("ELEVENLABS_API_KEY", E2E_ELEVEN_KEY)
        .env("ELEVEN_AGENT_ID", "agent_test")
        .env("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test")
        .env("ELEVENLABS_API_BASE", eleven.uri())
        .env("LIVEKIT_URL", livekit.uri())
        .env("LIVEKIT_API_KEY", LK_KEY)
        .env("LIVEKIT_API_SECRET", E2E_LK_SECRET)
        .env("SIP_TRUNK_ID", "ST_test_trunk")
        .env("CALLER_ID", "+351211234567")
        .env("LIVEKIT_AGENT_NAME", "test-agent")
        .env("MAKE_WEBHOOK_URL", format!("{}{hook_path}", hook.uri()))
        .env("MAKE_WEBHOOK_SECRET", E2E_HOOK_SECRET)
        .env("WEBHOOK_RETRIES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the chamada binary starts");
    let mut server = Server(child);
    let stdout = server.0.stdout.take().unwrap();
    let mut stderr = server.0.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            panic!("the server printed nothing; stderr: {err}")
        });
    let port: u16 = first
        .strip_prefix("Chamada listening on http://localhost:")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    assert!(first.contains("environment=production"), "{first}");
    assert!(!first.contains("DEGRADED"), "{first}");

    let client = chamada::outbound::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for body in [
        json!({"phone_number": NUMBER, "name": "Maria", "variables": {"lead_id": "42"}}),
        json!({"phone_number": E2E_FAILING}),
        json!({"phone_number": E2E_LIVEKIT, "provider": "livekit"}),
    ] {
        let response = client
            .post(format!("http://127.0.0.1:{port}/api/start_call"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        answers.push((status, response.json::<Value>().await.unwrap()));
    }

    // Delivery runs after the answers: wait for the four webhook requests (the failed call's
    // event twice, with 503) before stopping the server.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hook.received_requests().await.unwrap_or_default().len() < 4
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server); // kill, then read the rest of stdout to its end
    reader.join().unwrap();
    let logs: Vec<String> = lines.try_iter().collect();
    eleven.verify().await;
    livekit.verify().await;
    hook.verify().await;
    Run { answers, logs }
}

#[tokio::test]
async fn local_server_places_calls_end_to_end_in_production() {
    let run = run_local_server().await;

    let (status, body) = &run.answers[0];
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["status"], "initiated");
    assert_eq!(body["provider"], "elevenlabs");
    assert_eq!(body["provider_call_id"], "conv_e2e");
    assert_eq!(body["to"], NUMBER);
    assert_eq!(body["dry_run"], false);
    let (status, body) = &run.answers[1];
    assert_eq!(*status, 502, "{body}");
    assert_eq!(body["error"]["code"], "provider_error");
    let (status, body) = &run.answers[2];
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["provider"], "livekit");
    assert_eq!(body["provider_call_id"], "SCL_e2e");
}

#[tokio::test]
async fn local_server_logs_carry_no_secret_and_no_full_number() {
    let run = run_local_server().await;

    let all = run.logs.join("\n");
    // The call.failed event's first window fails (503 twice): a later window is scheduled.
    for needed in ["Call initiated", "Call failed", "Webhook window failed"] {
        assert!(all.contains(needed), "no {needed:?} line in:\n{all}");
    }
    assert!(
        all.contains("+351******678"),
        "numbers are masked, not dropped"
    );
    let forbidden = [
        KEY,
        E2E_ELEVEN_KEY,
        E2E_LK_SECRET,
        E2E_HOOK_SECRET,
        E2E_HOOK_TOKEN,
        NUMBER,
        &NUMBER[1..],
        &NUMBER[4..],
        E2E_FAILING,
        &E2E_FAILING[4..],
        E2E_LIVEKIT,
        &E2E_LIVEKIT[4..],
        "Bearer",
    ];
    for line in &run.logs {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not one JSON object: {line}"
        );
        for secret in forbidden {
            assert!(!line.contains(secret), "{secret:?} leaked in: {line}");
        }
    }
}

#[tokio::test]
async fn health_reports_the_active_provider_and_the_webhook() {
    let mut vars = livekit_vars("http://127.0.0.1:9", None);
    vars.push(("MAKE_WEBHOOK_URL", "http://127.0.0.1:9/test-hook".into()));
    vars.push(("MAKE_WEBHOOK_SECRET", "test-webhook-secret".into()));
    let app = real_app(&refs(&vars)).await;

    let request = Request::get("/api/health").body(Body::empty()).unwrap();
    let response = TestResponse::read(app.oneshot(request).await.unwrap()).await;

    assert_eq!(response.status, 200, "{:?}", response.body);
    let health = response.json();
    assert_eq!(health["provider"], "livekit");
    assert_eq!(health["webhook"], true);
    assert!(!response
        .body
        .windows(19)
        .any(|w| w == b"test-webhook-secret"));
}
