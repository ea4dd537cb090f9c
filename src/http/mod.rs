//! The one HTTP router every entry point runs (local server, Lambda, Vercel).
//!
//! A request's path: `frame` gives it an id and judges its `Origin` (a forbidden origin stops
//! here, before any side effect), then the route's handler runs, then `frame` adds the CORS
//! headers and `X-Request-Id` to whatever came back and writes the access log line.

mod calls;
mod client_addr;
pub mod cors;
pub mod error;
mod events;
mod health;
pub mod openapi;
mod outbox;
pub mod page;
mod provider_events;
pub(crate) mod start_call;

pub use start_call::BODY_READ_TIMEOUT;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use http::{HeaderValue, StatusCode};

use crate::app::App;
use crate::logging;
use cors::OriginCheck;
use error::{ApiError, Unrendered};

/// `X-Request-Id`, built once (a `&str` header name is parsed on every insert).
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The id of one request: in every answer's `X-Request-Id`, every error body and every log line.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Request validation alone (body parse and field checks of `start_call`, no side effect), as
/// the handler runs it. For `benches/`; not part of the service's interface.
#[doc(hidden)]
pub fn validate_body(bytes: &[u8], authenticated: bool) -> Result<(), ApiError> {
    start_call::fields(bytes, authenticated, None).map(|_| ())
}

/// The API's paths, the same on every platform (`openapi.yaml` lists each with its methods).
pub const START_CALL: &str = "/api/start_call";
pub const HEALTH: &str = "/api/health";
pub const OPENAPI: &str = "/api/openapi.json";
pub const OUTBOX_SWEEP: &str = "/api/outbox/sweep";
pub const CALL: &str = "/api/calls/{call_id}";
pub const ELEVENLABS_WEBHOOK: &str = "/api/webhooks/elevenlabs";
pub const LIVEKIT_WEBHOOK: &str = "/api/webhooks/livekit";
/// Every path the router answers (the local server adds the page's, `page::FILES`).
pub const API_PATHS: [&str; 7] = [
    START_CALL,
    HEALTH,
    OPENAPI,
    OUTBOX_SWEEP,
    CALL,
    ELEVENLABS_WEBHOOK,
    LIVEKIT_WEBHOOK,
];

/// Builds the router. Paths are the same on every platform.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(START_CALL, any(start_call::handle))
        .route(HEALTH, any(health::handle))
        .route(OPENAPI, any(openapi::handle))
        .route(OUTBOX_SWEEP, any(outbox::handle))
        .route(CALL, any(calls::handle))
        .route(ELEVENLABS_WEBHOOK, any(provider_events::elevenlabs))
        .route(LIVEKIT_WEBHOOK, any(provider_events::livekit))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), frame))
        .with_state(app)
}

async fn frame(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId(crate::ids::uuid(crate::ids::new_uuid()));
    let method = request.method().clone();
    let path = logging::untrusted(request.uri().path().as_bytes());
    let origin = cors::check(&app.config, request.headers());

    let mut response = match &origin {
        OriginCheck::Forbidden(value) => {
            tracing::warn!(
                request_id = %request_id.0,
                origin = %logging::untrusted(value.as_bytes()),
                path = %path,
                "{}",
                logging::CORS_VIOLATION
            );
            app.count(crate::metrics::Metric::CorsViolations, 1);
            ApiError::ForbiddenOrigin.render(&request_id.0)
        }
        _ => {
            request.extensions_mut().insert(request_id.clone());
            request.extensions_mut().insert(origin.clone());
            let response = next.run(request).await;
            match response.extensions().get::<Unrendered>() {
                Some(Unrendered(error)) => error.render(&request_id.0),
                None => response,
            }
        }
    };

    cors::decorate(response.headers_mut(), &origin);
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    // `&str` fields, not `%Display` ones: written as they are, without a pass through
    // `core::fmt` (the same JSON strings).
    tracing::info!(
        request_id = request_id.0.as_str(),
        method = method.as_str(),
        path = path.as_str(),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The most headers an answer of ours carries: `Content-Type`, three `RateLimit-*`,
/// `Retry-After` or `WWW-Authenticate` or `Allow`, `Vary`, two CORS headers, `X-Request-Id`,
/// and room to spare.
const ANSWER_HEADERS: usize = 12;

/// A JSON answer: `body` serialised into its bytes, in a header map made with room for every
/// header the answer gets on its way out. axum's `Json` starts the map at six, so the
/// rate-limit and CORS headers made it grow and rehash on every call (~3k instructions,
/// docs/PERFORMANCE.md).
pub(crate) fn json_answer(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let mut bytes = Vec::with_capacity(256);
    let (status, content_type, bytes) = match serde_json::to_writer(&mut bytes, body) {
        Ok(()) => (status, "application/json", bytes),
        // Our bodies are strings, numbers and string-keyed maps, which always serialise; if
        // one ever did not, the answer is what axum's `Json` gives.
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            error.to_string().into_bytes(),
        ),
    };
    let mut response = Response::new(axum::body::Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    *headers = http::HeaderMap::with_capacity(ANSWER_HEADERS);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
