//! Provider events in (docs/API.md §15.3, §15.4): verified on the raw body before anything is
//! read, then a forward-only change of the call's record, written with the webhook event that
//! tells Make.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha2::Sha256;

use super::events;
use super::start_call::read_limited;
use super::RequestId;
use crate::after_answer::Background;
use crate::app::App;
use crate::dispatch::ProviderKind;
use crate::http::error::ApiError;
use crate::metrics::Metric;
use crate::notify::{event_id, event_time, EventType, StatusChange, StatusEvent};
use crate::store::{Advance, CallStatus, Change};

/// Transcripts make large bodies.
pub const MAX_PROVIDER_EVENT_BYTES: usize = 2 * 1024 * 1024;
/// How far an ElevenLabs signature's timestamp may be from now.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(30 * 60);

const METHODS: &str = "POST";

/// `POST /api/webhooks/elevenlabs`.
pub async fn elevenlabs(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    let now_ms = app.clock.now_ms();
    let (event, background) = verified(
        &app,
        request,
        ProviderKind::ElevenLabs,
        &request_id,
        |headers, body| elevenlabs_signed(&app, headers, body, now_ms),
    )
    .await?;
    let Some(change) = elevenlabs_change(&event, now_ms) else {
        // post_call_audio and anything new: acknowledged, never stored.
        return Ok(received());
    };
    let data = &event["data"];
    let named = data["conversation_initiation_client_data"]["dynamic_variables"]["call_id"]
        .as_str()
        .map(str::to_string);
    let call_id = match named {
        Some(id) => Some(id),
        None => match data["conversation_id"].as_str() {
            Some(conversation) => app.calls.find(conversation, now_ms).await.map_err(store)?,
            None => None,
        },
    };
    let transcript = app
        .config
        .calls
        .forward_transcripts
        .then(|| data["transcript"].clone())
        .filter(|t| !t.is_null());
    advance(
        &app,
        ProviderKind::ElevenLabs,
        call_id.as_deref(),
        &change,
        transcript,
        background,
        &request_id,
    )
    .await?;
    Ok(received())
}

/// `POST /api/webhooks/livekit`.
pub async fn livekit(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Result<Response, ApiError> {
    let (event, background) = verified(
        &app,
        request,
        ProviderKind::LiveKit,
        &request_id,
        |headers, body| livekit_signed(&app, headers, body),
    )
    .await?;
    let now_ms = app.clock.now_ms();
    let Some((call_id, change)) = livekit_change(&event, now_ms) else {
        return Ok(received());
    };
    advance(
        &app,
        ProviderKind::LiveKit,
        Some(&call_id),
        &change,
        None,
        background,
        &request_id,
    )
    .await?;
    Ok(received())
}

/// `Authorization`: a JWT signed (HS256) with `LIVEKIT_API_SECRET`, issued by
/// `LIVEKIT_API_KEY` (the `livekit-api` crate's verifier), whose `sha256` claim is the base64
/// SHA-256 of the raw body. Without LiveKit configured, nothing is.
fn livekit_signed(app: &App, headers: &HeaderMap, body: &[u8]) -> bool {
    use base64::Engine;
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let Some(livekit) = &app.config.livekit else {
        return false;
    };
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(token), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(token) = token.to_str() else {
        return false;
    };
    let verifier = livekit_api::access_token::TokenVerifier::with_api_key(
        &livekit.api_key,
        livekit.api_secret.expose_secret(),
    );
    let Ok(claims) = verifier.verify(token.trim_start_matches("Bearer ")) else {
        return false;
    };
    let Ok(claimed) = base64::engine::general_purpose::STANDARD.decode(&claims.sha256) else {
        return false;
    };
    let actual = sha2::Sha256::digest(body);
    claimed.len() == actual.len() && bool::from(claimed.ct_eq(&actual))
}

/// What a LiveKit event says about a call (docs/API.md §15.4): only the SIP participant
/// `phone-<call_id>` counts. Outbound calls join `dialing`; ringing and answering change an
/// attribute, which sends no webhook; the participant's leaving tells how the call ended.
fn livekit_change(event: &Value, now_ms: u64) -> Option<(String, Change)> {
    let participant = &event["participant"];
    let call_id = participant["identity"].as_str()?.strip_prefix("phone-")?;
    uuid::Uuid::parse_str(call_id).ok()?;
    let call_status = participant["attributes"]["sip.callStatus"].as_str();
    let status = match event["event"].as_str()? {
        "participant_joined" => match call_status? {
            "ringing" => CallStatus::Ringing,
            "active" => CallStatus::InProgress,
            _ => return None,
        },
        "participant_left" | "participant_connection_aborted" => {
            match (participant["disconnectReason"].as_str(), call_status) {
                (Some("USER_REJECTED"), _) => CallStatus::Busy,
                (Some("USER_UNAVAILABLE"), _) | (_, Some("ringing")) => CallStatus::NoAnswer,
                (_, Some("active" | "hangup")) => CallStatus::Completed,
                (Some("CLIENT_INITIATED" | "ROOM_DELETED"), _) => CallStatus::Completed,
                _ => CallStatus::Failed,
            }
        }
        _ => return None,
    };
    let mut change = Change::to(status, now_ms);
    change.end_reason = participant["disconnectReason"].as_str().map(str::to_string);
    Some((call_id.to_string(), change))
}

/// A provider's POST, its raw body verified by `signed` before anything is read: the event as
/// JSON, and where work after the answer runs.
async fn verified(
    app: &App,
    request: Request,
    provider: ProviderKind,
    request_id: &RequestId,
    signed: impl FnOnce(&HeaderMap, &[u8]) -> bool,
) -> Result<(Value, Option<Background>), ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: METHODS });
    }
    let (parts, body) = request.into_parts();
    let background = parts.extensions.get::<Background>().cloned();
    let body = read_limited(&parts.headers, body, MAX_PROVIDER_EVENT_BYTES).await?;
    if !signed(&parts.headers, &body) {
        tracing::warn!(request_id = %request_id.0, provider = provider.as_str(), "Invalid provider signature");
        app.count(Metric::ProviderSignatureFailures(provider), 1);
        return Err(ApiError::Unauthorized);
    }
    let event = serde_json::from_slice(&body).map_err(|_| ApiError::InvalidJson)?;
    Ok((event, background))
}

fn received() -> Response {
    (StatusCode::OK, Json(json!({"received": true}))).into_response()
}

fn store(error: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %error, "Call record store failed");
    ApiError::RateLimitUnavailable
}

/// `ElevenLabs-Signature: t=<unix>,v0=<hex HMAC-SHA256 of "{t}.{body}">`, keyed with
/// `ELEVENLABS_WEBHOOK_SECRET`, within [`SIGNATURE_TOLERANCE`] of now. Without a secret,
/// nothing is.
fn elevenlabs_signed(app: &App, headers: &HeaderMap, body: &[u8], now_ms: u64) -> bool {
    let Some(secret) = &app.config.calls.elevenlabs_webhook_secret else {
        return false;
    };
    let mut values = headers.get_all("elevenlabs-signature").iter();
    let (Some(header), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(header) = header.to_str() else {
        return false;
    };
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v0", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    let now = now_ms / 1000;
    if now.abs_diff(timestamp) > SIGNATURE_TOLERANCE.as_secs() {
        return false;
    }
    let mac = || {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    };
    // Constant time, each candidate checked (no early exit on the first match).
    signatures.iter().fold(false, |ok, signature| {
        mac().verify_slice(signature).is_ok() | ok
    })
}

/// What an ElevenLabs event says about its call; `None` for events that change nothing.
fn elevenlabs_change(event: &Value, now_ms: u64) -> Option<Change> {
    let data = &event["data"];
    let text = |v: &Value| v.as_str().map(str::to_string);
    match event["type"].as_str()? {
        "post_call_transcription" => {
            let status = match data["status"].as_str() {
                Some("done") => CallStatus::Completed,
                _ => CallStatus::Failed,
            };
            let metadata = &data["metadata"];
            Some(Change {
                status,
                at_ms: now_ms,
                duration_secs: metadata["call_duration_secs"].as_u64(),
                end_reason: text(&metadata["termination_reason"]),
                summary: text(&data["analysis"]["transcript_summary"]),
                successful: text(&data["analysis"]["call_successful"]),
            })
        }
        "call_initiation_failure" => {
            let reason = data["failure_reason"].as_str().unwrap_or("failed");
            let status = match reason {
                "busy" => CallStatus::Busy,
                "no-answer" | "no_answer" => CallStatus::NoAnswer,
                _ => CallStatus::Failed,
            };
            let mut change = Change::to(status, now_ms);
            change.end_reason = Some(reason.to_string());
            Some(change)
        }
        _ => None,
    }
}

/// Moves the call forward and writes the event that tells Make, then starts its delivery.
async fn advance(
    app: &Arc<App>,
    provider: ProviderKind,
    call_id: Option<&str>,
    change: &Change,
    transcript: Option<Value>,
    background: Option<Background>,
    request_id: &RequestId,
) -> Result<(), ApiError> {
    let current = match call_id {
        Some(id) => app.calls.get(id, change.at_ms).await.map_err(store)?,
        None => None,
    };
    let (Some(call_id), Some(current)) = (call_id, current) else {
        unknown(app, provider, request_id);
        return Ok(());
    };
    if !current.moves_forward(change) {
        return Ok(());
    }
    let event = EventType::of_status(change.status)
        .filter(|_| app.notifier.is_some())
        .map(|kind| StatusEvent {
            id: event_id(),
            kind,
            created_at: event_time(change.at_ms),
            data: StatusChange {
                call_id: call_id.to_string(),
                provider: current.provider.clone(),
                provider_call_id: current.provider_call_id.clone(),
                status: change.status,
                at: event_time(change.at_ms),
                duration_secs: change.duration_secs.or(current.duration_secs),
                end_reason: change.end_reason.clone(),
                summary: change.summary.clone(),
                successful: change.successful.clone(),
                transcript,
            },
        })
        .map(|event| event.envelope());
    let advanced = app
        .calls
        .advance(call_id, change, event.as_ref())
        .await
        .map_err(store)?;
    match advanced {
        Advance::Applied(record) => {
            tracing::info!(request_id = %request_id.0, call_id, provider = provider.as_str(), status = record.status.as_str(), "Call status changed");
            if let Some(event) = event {
                events::deliver(app, event, true, background).await;
            }
        }
        Advance::Unchanged => {}
        Advance::Unknown => unknown(app, provider, request_id),
    }
    Ok(())
}

fn unknown(app: &App, provider: ProviderKind, request_id: &RequestId) {
    tracing::warn!(request_id = %request_id.0, provider = provider.as_str(), "Provider event for an unknown call");
    app.count(Metric::UnknownCallEvents(provider), 1);
}
