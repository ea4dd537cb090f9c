//! `POST /api/start_call` (docs/API.md §2): every check that needs the HTTP request, in order, then
//! the use case of [`crate::calls`].
//!
//! Order: method → configuration complete → access (401) → `Content-Type` (415) →
//! `Idempotency-Key` syntax → body size (413), time (408), framing (400) → JSON (400) →
//! fields (422) → provider (503) → phone policy (422) → client address → bot check of anonymous
//! callers (403, 503) → idempotency (replay, 409, 422) → limits (429) → dispatch (502/504) →
//! webhook. Nothing before the idempotency claim has a side effect (the bot check spends the
//! visitor's token at Cloudflare, nothing of ours); from the claim on, the request runs in its
//! own task to the end.

mod body;
mod bot_check;
mod idempotency;

pub use body::BODY_READ_TIMEOUT;
pub(crate) use body::{fields, read_limited};

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use axum::Extension;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::client_addr::{client_ip, header_ip};
use super::cors::{self, OriginCheck};
use super::events;
use super::RequestId;
use crate::access::{authenticate, Caller, Denied, StatusToken};
use crate::after_answer::Background;
use crate::app::App;
use crate::calls::{CallError, Outcome, StartCall};
use crate::client_ip::IpKey;
use crate::dispatch::{CallDispatcher, ProviderKind};
use crate::http::error::ApiError;
use crate::logging;
use crate::metrics::Metric;
use crate::phone::{AllowedNumber, PhoneError};
use crate::store::{CallStatus, LimitStatus};
use idempotency::{Claim, Fingerprint, IdempotencyKey};

const METHODS: &str = "POST, OPTIONS";

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Extension(origin): Extension<OriginCheck>,
    request: Request,
) -> Result<Response, ApiError> {
    match *request.method() {
        Method::POST => post(&app, &request_id, &origin, request).await,
        Method::OPTIONS => Ok(cors::preflight(&origin, METHODS)),
        _ => Err(ApiError::MethodNotAllowed { allow: METHODS }),
    }
}

async fn post(
    app: &Arc<App>,
    request_id: &RequestId,
    origin: &OriginCheck,
    request: Request,
) -> Result<Response, ApiError> {
    let config = &app.config;
    if config.blocks_all_calls() {
        app.count(Metric::ConfigurationProblems, 1);
        return Err(ApiError::Misconfigured);
    }
    let (parts, body) = request.into_parts();
    let background = parts.extensions.get::<Background>().cloned();
    let peer = client_ip(config.client_ip_source, &parts);
    let caller = caller(app, &parts.headers, origin, peer, request_id)?;
    if matches!(caller, Caller::Anonymous) && config.public_calls_broken() {
        app.count(Metric::ConfigurationProblems, 1);
        return Err(ApiError::Misconfigured);
    }

    body::require_json(&parts.headers)?;
    let idempotency_key = IdempotencyKey::from_headers(&parts.headers)?;
    let bytes = body::read(&parts.headers, body).await?;
    let fields = fields(
        &bytes,
        caller.is_authenticated(),
        config.default_fallback_phone.as_ref(),
    )?;
    let dispatcher = dispatcher(app, fields.provider)?;
    let to = destination(app, &fields.raw_number, request_id)?;

    // Who is counted: the platform's client address for anonymous callers; for a trusted
    // server, the end user it speaks for (`X-End-User-IP`) or nobody.
    let client = match &caller {
        Caller::Anonymous => Some(IpKey::new(peer.ok_or_else(|| {
            ApiError::bad_request("The client address could not be determined.")
        })?)),
        Caller::Authenticated(_) => end_user_ip(&parts)?,
    };
    // Anonymous callers prove they are people before anything of ours is used (§16).
    if let (Caller::Anonymous, Some(turnstile)) = (&caller, &app.bot_check) {
        bot_check::check(
            app,
            turnstile,
            fields.captcha_token.as_deref(),
            peer,
            idempotency_key.as_ref(),
            request_id,
        )
        .await?;
    }
    // The fingerprint only matters under an `Idempotency-Key`: computed only then.
    let claim = match &idempotency_key {
        Some(key) => Some(Claim::new(
            key,
            &caller,
            client,
            Fingerprint {
                phone_number: to.e164.as_str(),
                name: fields.name.as_deref(),
                provider: fields.provider.map(ProviderKind::as_str),
                variables: &fields.variables,
            },
        )?),
        None => None,
    };

    let call = StartCall {
        to,
        name: fields.name,
        variables: fields.variables,
        caller,
        client,
    };
    // From here on the request has effects (an idempotency claim, a limit slot, a call), so
    // it runs to completion in its own task whatever the client does: hyper drops a
    // handler whose client disconnects, and a call placed without its record would ring
    // again on the retry. The handler only waits for the answer.
    let task = tokio::spawn(finish(
        Arc::clone(app),
        call,
        dispatcher,
        claim,
        request_id.clone(),
        background,
    ));
    task.await.map_err(|_| ApiError::Internal)
}

/// Who is asking: a key's holder, or an anonymous visitor where the policy allows one.
fn caller(
    app: &App,
    headers: &HeaderMap,
    origin: &OriginCheck,
    peer: Option<IpAddr>,
    request_id: &RequestId,
) -> Result<Caller, ApiError> {
    let config = &app.config;
    // Public calls are for browsers of ALLOWED_ORIGINS: in production an anonymous request
    // must come with an allowed Origin; servers use a key.
    let anonymous_allowed = !config.is_production()
        || (config.public_calls && matches!(origin, OriginCheck::Allowed(_)));
    let authorization: Vec<&[u8]> = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    authenticate(&config.api_keys, &authorization, anonymous_allowed).map_err(|denied| {
        let ip = peer.map(|ip| IpKey::new(ip).log_prefix());
        let ip = ip.map(tracing::field::display);
        if denied == Denied::InvalidKey {
            tracing::warn!(request_id = %request_id.0, ip, "{}", logging::INVALID_API_KEY);
        } else {
            tracing::warn!(request_id = %request_id.0, ip, "API key required");
        }
        app.count(Metric::AuthenticationFailures, 1);
        ApiError::Unauthorized
    })
}

/// The dispatcher of the provider the request names, or the default one — chosen once. A
/// provider with a refused or missing variable places nothing: no fallback to defaults.
fn dispatcher(
    app: &App,
    requested: Option<ProviderKind>,
) -> Result<Arc<dyn CallDispatcher>, ApiError> {
    if let Some(kind) = requested.or(app.config.provider) {
        if app.config.provider_broken(kind) {
            app.count(Metric::ConfigurationProblems, 1);
            return Err(ApiError::Misconfigured);
        }
    }
    match app.dispatchers.pick(requested) {
        Some(dispatcher) => Ok(Arc::clone(dispatcher)),
        None => {
            app.count(Metric::ConfigurationProblems, 1);
            Err(ApiError::ProviderNotConfigured)
        }
    }
}

/// The phone policy's verdict on the number (docs/API.md §6).
fn destination(app: &App, raw: &str, request_id: &RequestId) -> Result<AllowedNumber, ApiError> {
    let policy = app.phone.as_ref().ok_or(ApiError::Misconfigured)?;
    policy.check(raw).map_err(|e| {
        tracing::info!(request_id = %request_id.0, reason = %e, "Destination refused");
        match e {
            PhoneError::Invalid(m) => ApiError::InvalidPhoneNumber(m.to_string()),
            PhoneError::NotAllowed(m) => {
                app.count(Metric::DestinationsRefused, 1);
                ApiError::DestinationNotAllowed(m.to_string())
            }
        }
    })
}

/// Claims the idempotency key (or replays), runs the call path, keeps or releases the key,
/// writes the webhook event to the outbox with the answer, and starts its delivery.
async fn finish(
    app: Arc<App>,
    call: StartCall,
    dispatcher: Arc<dyn CallDispatcher>,
    claim: Option<Claim>,
    request_id: RequestId,
    background: Option<Background>,
) -> Response {
    if let Some(claim) = &claim {
        if let Err(answer) = claim.begin(&app, &request_id).await {
            return *answer;
        }
    }
    let mut outcome = app
        .ports()
        .start_call(call, dispatcher.as_ref(), &request_id.0)
        .await;
    let reached_provider = match &outcome.result {
        Ok(_) => true,
        Err(error) => error.reached_provider(),
    };
    // The page reads its call's status with this token (docs/API.md §15.1).
    let token = outcome.result.is_ok().then(StatusToken::new);
    let placed = outcome.placed.take();
    if let Some(placed) = &placed {
        let status = match &outcome.result {
            Err(CallError::Provider(_)) => CallStatus::Failed,
            // A timeout may still ring: the provider's own events will tell.
            Ok(_) | Err(_) => CallStatus::Initiated,
        };
        let digest = token.as_ref().map(|t| t.digest.as_str());
        events::keep_record(&app, placed, status, digest, &request_id).await;
    }
    // An event is written only when there is a receiver to deliver it to.
    let event = placed
        .filter(|_| app.notifier.is_some())
        .map(|placed| placed.into_event().envelope());
    let response = render(outcome, token.as_ref(), &request_id);
    let (response, recorded) = match &claim {
        Some(claim) => {
            claim
                .end(
                    &app,
                    response,
                    reached_provider,
                    event.as_ref(),
                    &request_id,
                )
                .await
        }
        None => {
            let recorded = match &event {
                Some(event) => events::record(&app, event, &request_id).await,
                None => true,
            };
            (response, recorded)
        }
    };
    if let Some(event) = event {
        events::deliver(&app, event, recorded, background).await;
    }
    response
}

/// `X-End-User-IP` from an authenticated server: one IP address, or absent.
fn end_user_ip(parts: &Parts) -> Result<Option<IpKey>, ApiError> {
    if parts.headers.get("x-end-user-ip").is_none() {
        return Ok(None);
    }
    header_ip(&parts.headers, "x-end-user-ip")
        .map(|ip| Some(IpKey::new(ip)))
        .ok_or_else(|| ApiError::invalid("X-End-User-IP must be one IP address"))
}

/// The answer to a placed call (docs/API.md §2), written straight from these fields; in the
/// alphabetical order `serde_json::json!` gave them before, so the bytes are the same.
#[derive(serde::Serialize)]
struct Initiated<'a> {
    call_id: &'a str,
    dry_run: bool,
    provider: &'a str,
    provider_call_id: &'a str,
    status: &'static str,
    status_token: Option<&'a str>,
    to: &'a str,
}

fn render(outcome: Outcome, token: Option<&StatusToken>, request_id: &RequestId) -> Response {
    let mut response = match outcome.result {
        Ok(started) => {
            let mut call_id = uuid::Uuid::encode_buffer();
            let body = Initiated {
                call_id: started.call_id.hyphenated().encode_lower(&mut call_id),
                dry_run: started.provider == ProviderKind::DryRun,
                provider: started.provider.as_str(),
                provider_call_id: &started.provider_call_id,
                status: "initiated",
                status_token: token.map(|t| t.token.as_str()),
                to: &started.to,
            };
            super::json_answer(StatusCode::OK, &body)
        }
        Err(error) => ApiError::from(error).render(&request_id.0),
    };
    if let Some(rate) = outcome.rate {
        rate_limit_headers(response.headers_mut(), &rate);
    }
    response
}

// Header names built at compile time: a `&str` name is parsed and validated on every insert.
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn rate_limit_headers(headers: &mut HeaderMap, rate: &LimitStatus) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(rate.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(rate.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(rate.reset_secs));
}
