//! A local stand-in for Cloudflare's Siteverify (docs/API.md §16) that behaves as the real one
//! documents: each token answers what the test set for it once; a second verification of the
//! token with another `idempotency_key` is `timeout-or-duplicate`, with the same key the same
//! answer again; an unknown token is `invalid-input-response`. Every request body is kept, so
//! tests assert the exact wire format. It can also be slow (never answers), fail with a status,
//! or answer something that is not JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers as Cloudflare does.
    Normal,
    /// Holds every request without answering (the caller's timeout must end it).
    Slow,
    /// Answers with this status and an HTML page.
    Status(u16),
    /// Answers 200 with a body that is not Siteverify's JSON.
    Garbage,
}

#[derive(Default)]
struct State {
    /// Every request: its `Content-Type` and its body as JSON (`Value::Null` when not JSON).
    requests: Vec<(String, Value)>,
    /// What a token answers at its first verification.
    answers: HashMap<String, Value>,
    /// Tokens already verified, with the idempotency key and the answer of that verification.
    spent: HashMap<String, (Option<String>, Value)>,
}

#[derive(Clone)]
pub struct Siteverify {
    pub url: String,
    state: Arc<Mutex<State>>,
    mode: Arc<Mutex<Mode>>,
}

impl Siteverify {
    pub async fn start() -> Siteverify {
        let state = Arc::new(Mutex::new(State::default()));
        let mode = Arc::new(Mutex::new(Mode::Normal));
        let (s, m) = (state.clone(), mode.clone());
        let verify = axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (state, mode) = (s.clone(), m.clone());
            async move { answer(&state, &mode, &headers, &body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/turnstile/v0/siteverify",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move {
            let app = axum::Router::new().route("/turnstile/v0/siteverify", verify);
            axum::serve(listener, app).await.unwrap()
        });
        Siteverify { url, state, mode }
    }

    /// A URL where nothing listens (connection refused).
    pub async fn down_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}/turnstile/v0/siteverify")
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// `token` will answer `answer` at its first verification.
    pub fn will_answer(&self, token: &str, answer: Value) {
        self.state
            .lock()
            .unwrap()
            .answers
            .insert(token.to_string(), answer);
    }

    /// A pass as Cloudflare writes it, for `hostname` and `action`, solved at `challenge_ts`.
    pub fn pass(hostname: &str, action: &str, challenge_ts: &str) -> Value {
        json!({
            "success": true,
            "error-codes": [],
            "challenge_ts": challenge_ts,
            "hostname": hostname,
            "action": action,
            "cdata": "",
            "metadata": {"ephemeral_id": "x:FAKE-EPHEMERAL"}
        })
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Every request's `Content-Type`, in order.
    pub fn content_types(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.requests.iter().map(|(ct, _)| ct.clone()).collect()
    }
}

async fn answer(
    state: &Mutex<State>,
    mode: &Mutex<Mode>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state
        .lock()
        .unwrap()
        .requests
        .push((content_type, parsed.clone()));
    let mode = *mode.lock().unwrap();
    match mode {
        Mode::Slow => return std::future::pending::<Response>().await,
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            return (status, "<html>upstream trouble</html>").into_response();
        }
        Mode::Garbage => return (StatusCode::OK, "<html>challenge page</html>").into_response(),
        Mode::Normal => {}
    }
    let (Some(token), Some(_secret)) = (parsed["response"].as_str(), parsed["secret"].as_str())
    else {
        return axum::Json(json!({"success": false, "error-codes": ["bad-request"]}))
            .into_response();
    };
    let key = parsed["idempotency_key"].as_str().map(str::to_string);
    let mut state = state.lock().unwrap();
    if let Some((first_key, first_answer)) = state.spent.get(token) {
        let verdict = if key.is_some() && *first_key == key {
            first_answer.clone()
        } else {
            json!({"success": false, "error-codes": ["timeout-or-duplicate"]})
        };
        return axum::Json(verdict).into_response();
    }
    let verdict =
        state.answers.get(token).cloned().unwrap_or_else(
            || json!({"success": false, "error-codes": ["invalid-input-response"]}),
        );
    state
        .spent
        .insert(token.to_string(), (key, verdict.clone()));
    axum::Json(verdict).into_response()
}
