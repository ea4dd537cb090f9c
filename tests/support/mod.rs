//! Shared test harness: the real router, in process (no socket), with a manual clock and a
//! dispatcher that records every call it is asked to place.
// Not every test module uses every helper.
#![allow(dead_code)]

pub mod receiver;
pub mod server;
pub mod siteverify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use chamada::after_answer::AfterAnswer;
use chamada::clock::ManualClock;
use chamada::dispatch::ProviderKind;
use chamada::dispatch::{CallDispatcher, CallRequest, DispatchError, PlacedCall};
use chamada::metrics::Metrics;
use chamada::{router, App, Config};
use http::{Request, StatusCode};
use tower::ServiceExt;

/// A fake key, visibly fake, long enough for production.
pub const KEY: &str = "test-key-0123456789abcdef0123456789abcdef";
pub const OTHER_KEY: &str = "test-key-fedcba9876543210fedcba9876543210";
/// 2026-11-28T12:00:00Z, a fixed start for the manual clock.
pub const NOON_MS: u64 = 1_795_867_200_000;
pub const PEER: &str = "203.0.113.10:40000";
pub const NUMBER: &str = "+351912345678";

/// Builds a configuration from exactly these variables (nothing from the process).
pub fn config(vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&move |name: &str| map.get(name).cloned()).expect("config loads")
}

/// Production with a key, public calls for the test origin, the memory store chosen
/// explicitly and the dry-run provider replaced by a recorder.
pub fn production(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("APP_ENV", "production"),
        ("PRODUCTION_API_KEY", KEY),
        ("RATE_LIMIT_STORE", "memory"),
        ("CALL_PROVIDER", "elevenlabs"),
        ("ELEVENLABS_API_KEY", "test-elevenlabs-key"),
        ("ELEVEN_AGENT_ID", "agent_test"),
        ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
        ("ALLOWED_ORIGINS", "https://chamada.example"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}

/// A dispatcher that records calls and answers with a fixed result.
pub struct Recorder {
    kind: ProviderKind,
    pub calls: Mutex<Vec<CallRequest>>,
    answer: Mutex<Result<PlacedCall, DispatchError>>,
}

impl Recorder {
    pub fn new(kind: ProviderKind) -> Arc<Self> {
        Arc::new(Recorder {
            kind,
            calls: Mutex::new(Vec::new()),
            answer: Mutex::new(Ok(PlacedCall {
                provider_call_id: "conv_test_123".into(),
            })),
        })
    }

    pub fn answer_with(&self, answer: Result<PlacedCall, DispatchError>) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl CallDispatcher for Recorder {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        self.calls.lock().unwrap().push(call.clone());
        self.answer.lock().unwrap().clone()
    }
}

pub struct TestApp {
    pub router: Router,
    pub app: Arc<App>,
    pub clock: ManualClock,
    /// Records calls for the configured default provider.
    pub recorder: Arc<Recorder>,
    /// Every metric record the app emitted (EMF, as on Lambda).
    pub metrics: Arc<Metrics>,
}

impl TestApp {
    /// The app on these variables, its default provider replaced by a recorder.
    pub async fn new(vars: &[(&str, &str)]) -> TestApp {
        Self::from_config(config(vars)).await
    }

    pub async fn production(extra: &[(&str, &str)]) -> TestApp {
        let vars = production(extra);
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::new(&refs).await
    }

    pub async fn from_config(config: Config) -> TestApp {
        Self::delivering(config, AfterAnswer::Inline).await
    }

    /// The app on `config`, delivering webhook events `after_answer` (as a platform does).
    pub async fn delivering(config: Config, after_answer: AfterAnswer) -> TestApp {
        let kind = config.provider.unwrap_or(ProviderKind::DryRun);
        let clock = ManualClock::at(NOON_MS);
        let recorder = Recorder::new(kind);
        let metrics = Arc::new(Metrics::capture("chamada-test"));
        let app = App::build(config)
            .await
            .with_clock(Arc::new(clock.clone()))
            .with_metrics(metrics.clone())
            .with_dispatcher(recorder.clone())
            .with_after_answer(after_answer);
        let app = Arc::new(app);
        TestApp {
            router: router(app.clone()),
            app,
            clock,
            recorder,
            metrics,
        }
    }

    pub fn calls(&self) -> usize {
        self.recorder.count()
    }

    /// Sends a request through the router (see [`send_to`]).
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        send_to(&self.router, request).await
    }

    /// `POST /api/start_call` with a JSON body and extra headers.
    pub async fn start_call(
        &self,
        body: serde_json::Value,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        self.send(start_call_request(body, headers)).await
    }
}

/// Sends a request through a router, from `PEER` unless the request carries its own
/// `ConnectInfo`.
pub async fn send_to(router: &Router, mut request: Request<Body>) -> TestResponse {
    if request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_none()
    {
        request
            .extensions_mut()
            .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    }
    let response = router.clone().oneshot(request).await.unwrap();
    TestResponse::read(response).await
}

/// `POST /api/start_call` with a JSON body and extra headers.
pub fn start_call_request(body: serde_json::Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post("/api/start_call").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

pub fn from_peer(mut request: Request<Body>, peer: &str) -> Request<Body> {
    request
        .extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    request
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl TestResponse {
    pub async fn read(response: http::Response<Body>) -> TestResponse {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of a docs/API.md §10 error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {:?}", self.body))
            .to_string()
    }

    /// Asserts the docs/API.md §10 error shape and that the request id matches the header.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "body: {json}");
        assert!(json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(
            json["request_id"].as_str(),
            self.header("x-request-id"),
            "request id in body and header differ"
        );
    }
}
