//! `POST /api/start_call` (SPEC §2): every check that needs the HTTP request, in order, then
//! the call path of [`crate::calls`].
//!
//! Order: method → configuration complete → access (401) → `Content-Type` (415) →
//! `Idempotency-Key` syntax → body size (413), time (408), framing (400) → JSON (400) →
//! fields (422) → provider (503) → phone policy (422) → client address → idempotency (replay,
//! 409, 422) → limits (429) → dispatch (502/504) → webhook. Nothing before the idempotency
//! claim has a side effect; from the claim on, the request runs in its own task to the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cors::{self, OriginCheck};
use super::{error_response, RequestId};
use crate::access::{authenticate, Caller, Denied};
use crate::app::App;
use crate::calls::{Outcome, StartCall};
use crate::client_ip::{client_ip, single_ip_header, IpKey};
use crate::dispatch::ProviderKind;
use crate::http::error::ApiError;
use crate::logging;
use crate::metrics::Metric;
use crate::phone::{PhoneError, E164};
use crate::store::{Begin, LimitStatus, StoredResponse};
use crate::text::first_invisible;

const METHODS: &str = "POST, OPTIONS";
/// SPEC §2: bodies above 16 KiB are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The whole body must arrive within this time (`408 request_timeout`): a client that stalls
/// mid-body holds no connection for longer.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_NAME_CHARS: usize = 100;
const MAX_VARIABLES: usize = 20;
const MAX_VARIABLE_KEY: usize = 40;
const MAX_VARIABLE_VALUE_CHARS: usize = 500;

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Extension(origin): Extension<OriginCheck>,
    request: Request,
) -> Response {
    match *request.method() {
        Method::POST => match post(&app, &request_id, &origin, request).await {
            Ok(response) => response,
            Err(error) => error_response(&error, &request_id),
        },
        Method::OPTIONS => cors::preflight(&origin, METHODS),
        _ => error_response(&ApiError::MethodNotAllowed { allow: METHODS }, &request_id),
    }
}

/// The body of SPEC §2. Unknown fields are refused; `null` counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartCallBody {
    phone_number: Option<String>,
    name: Option<String>,
    provider: Option<String>,
    variables: Option<BTreeMap<String, String>>,
}

/// What the idempotency fingerprint covers: the request as understood, so formatting
/// differences of the same request (spaces in the number, key order) do not count as a
/// different body.
#[derive(Serialize)]
struct Fingerprint<'a> {
    phone_number: &'a str,
    name: Option<&'a str>,
    provider: Option<&'a str>,
    variables: &'a BTreeMap<String, String>,
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
    // Public calls are for browsers of ALLOWED_ORIGINS: in production an anonymous request
    // must come with an allowed Origin; servers use a key.
    let anonymous_allowed = !config.is_production()
        || (config.public_calls && matches!(origin, OriginCheck::Allowed(_)));
    let caller = match authenticate(&config.api_keys, &parts.headers, anonymous_allowed) {
        Ok(caller) => caller,
        Err(denied) => {
            let ip =
                client_ip(config.client_ip_source, &parts).map(|ip| IpKey::new(ip).log_prefix());
            if denied == Denied::InvalidKey {
                tracing::warn!(request_id = %request_id.0, ip = ip.as_deref(), "{}", logging::INVALID_API_KEY);
            } else {
                tracing::warn!(request_id = %request_id.0, ip = ip.as_deref(), "API key required");
            }
            app.count(Metric::AuthenticationFailures, 1);
            return Err(ApiError::Unauthorized);
        }
    };

    require_json(&parts.headers)?;
    let idempotency_key = idempotency_key(&parts.headers)?;
    let bytes = read_body(&parts.headers, body).await?;
    let Fields {
        name,
        variables,
        provider,
        raw_number,
    } = fields(
        &bytes,
        caller.is_authenticated(),
        config.default_fallback_phone.as_ref(),
    )?;
    // A provider with a refused or missing variable places nothing: no fallback to defaults.
    if let Some(kind) = provider.or(config.provider) {
        if config.provider_broken(kind) {
            app.count(Metric::ConfigurationProblems, 1);
            return Err(ApiError::Misconfigured);
        }
    }
    if app.dispatchers.pick(provider).is_none() {
        app.count(Metric::ConfigurationProblems, 1);
        return Err(ApiError::ProviderNotConfigured);
    }

    // Phone policy.
    let policy = app.phone.as_ref().ok_or(ApiError::Misconfigured)?;
    let to = policy.check(&raw_number).map_err(|e| {
        tracing::info!(request_id = %request_id.0, reason = %e, "Destination refused");
        match e {
            PhoneError::Invalid(m) => ApiError::InvalidPhoneNumber(m.to_string()),
            PhoneError::NotAllowed(m) => {
                app.count(Metric::DestinationsRefused, 1);
                ApiError::DestinationNotAllowed(m.to_string())
            }
        }
    })?;

    // Who is counted: the platform's client address for anonymous callers; for a trusted
    // server, the end user it speaks for (`X-End-User-IP`) or nobody.
    let client = match &caller {
        Caller::Anonymous => {
            let ip = client_ip(config.client_ip_source, &parts).ok_or_else(|| {
                ApiError::bad_request("The client address could not be determined.")
            })?;
            Some(IpKey::new(ip))
        }
        Caller::Authenticated(_) => end_user_ip(&parts)?,
    };

    let scope = match (&caller, client) {
        (Caller::Authenticated(key), _) => format!("key:{}", key.as_str()),
        (Caller::Anonymous, Some(ip)) => format!("ip:{ip}"),
        (Caller::Anonymous, None) => return Err(ApiError::Internal),
    };
    // The fingerprint only matters under an `Idempotency-Key`: computed only then.
    let idempotency = match idempotency_key {
        Some(key) => {
            let canonical = serde_json::to_vec(&Fingerprint {
                phone_number: to.e164.as_str(),
                name: name.as_deref(),
                provider: provider.map(ProviderKind::as_str),
                variables: &variables,
            })
            .map_err(|_| ApiError::Internal)?;
            let fingerprint = hex(&Sha256::digest(&canonical));
            Some((format!("idem:{scope}:{key}"), fingerprint))
        }
        None => None,
    };

    let call = StartCall {
        to,
        name,
        variables,
        provider,
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
        idempotency,
        request_id.clone(),
    ));
    task.await.map_err(|_| ApiError::Internal)
}

/// Claims the idempotency key (or replays), runs the call path, and keeps or releases the key.
async fn finish(
    app: Arc<App>,
    call: StartCall,
    idempotency: Option<(String, String)>,
    request_id: RequestId,
) -> Response {
    if let Some((key, fingerprint)) = &idempotency {
        let now = app.clock.now_ms();
        let refused = match app.idempotency.begin(key, fingerprint, now).await {
            Ok(Begin::Started) => None,
            Ok(Begin::Replay(stored)) => return replay(stored),
            Ok(Begin::InProgress) => Some(ApiError::RequestInProgress),
            Ok(Begin::Mismatch) => Some(ApiError::IdempotencyKeyReused),
            Err(error) => {
                tracing::error!(request_id = %request_id.0, error = %error, "Idempotency store failed; refusing the call");
                Some(ApiError::RateLimitUnavailable)
            }
        };
        if let Some(error) = refused {
            return error_response(&error, &request_id);
        }
    }

    let outcome = app.start_call(call, &request_id.0).await;
    let reached_dispatch = matches!(
        outcome.result,
        Ok(_) | Err(ApiError::ProviderError(_)) | Err(ApiError::ProviderTimeout)
    );
    let response = render(&outcome, &request_id);

    let Some((key, fingerprint)) = &idempotency else {
        return response;
    };
    // Answers from dispatch on are kept (a replay must never ring twice, even after a
    // timeout); refusals before dispatch give the key back so a retry can succeed.
    let stored = if reached_dispatch {
        store(response).await
    } else {
        Err(response)
    };
    match stored {
        Ok((stored, response)) => {
            let now = app.clock.now_ms();
            if let Err(error) = app
                .idempotency
                .complete(key, fingerprint, &stored, now)
                .await
            {
                tracing::error!(request_id = %request_id.0, error = %error, "Idempotency record not saved");
            }
            response
        }
        Err(response) => {
            if let Err(error) = app.idempotency.release(key, fingerprint).await {
                tracing::error!(request_id = %request_id.0, error = %error, "Idempotency key not released");
            }
            response
        }
    }
}

/// The body's fields once parsed and checked (SPEC §2), before the provider and the phone
/// policy are consulted.
pub(crate) struct Fields {
    pub name: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub provider: Option<ProviderKind>,
    /// The number as sent (or the fallback), not yet through the phone policy.
    pub raw_number: String,
}

/// Parses the body and checks its fields: `400 invalid_json`, `422 invalid_request`. No side
/// effect; `benches/` measure it through [`crate::http::validate_body`].
pub(crate) fn fields(
    bytes: &[u8],
    authenticated: bool,
    fallback: Option<&E164>,
) -> Result<Fields, ApiError> {
    let body = parse_body(bytes)?;
    if !authenticated && (body.provider.is_some() || body.variables.is_some()) {
        return Err(ApiError::invalid(
            "provider and variables are only accepted from authenticated callers",
        ));
    }
    let name = body.name.as_deref().map(validate_name).transpose()?;
    let variables = body.variables.unwrap_or_default();
    validate_variables(&variables)?;
    let provider = match body.provider.as_deref() {
        None => None,
        Some("elevenlabs") => Some(ProviderKind::ElevenLabs),
        Some("livekit") => Some(ProviderKind::LiveKit),
        Some(_) => return Err(ApiError::invalid("provider must be elevenlabs or livekit")),
    };
    let raw_number = match (body.phone_number, authenticated, fallback) {
        (Some(number), _, _) => number,
        (None, true, Some(fallback)) => fallback.to_string(),
        (None, _, _) => return Err(ApiError::invalid("phone_number is required")),
    };
    Ok(Fields {
        name,
        variables,
        provider,
        raw_number,
    })
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType);
    };
    let essence = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedMediaType)?
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// `Idempotency-Key`: 1–255 printable ASCII characters, sent once.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if values.next().is_some()
        || bytes.is_empty()
        || bytes.len() > 255
        || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, sent once.",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Content-Length is not a number."))?;
        if declared > MAX_BODY_BYTES as u64 {
            return Err(ApiError::PayloadTooLarge);
        }
    }
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    );
    match read.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) if is_length_limit(&error) => Err(ApiError::PayloadTooLarge),
        // Broken chunked framing, a connection cut mid-body: the request is malformed.
        Ok(Err(_)) => Err(ApiError::bad_request(
            "The request body could not be read (malformed framing or an interrupted upload).",
        )),
        Err(_) => Err(ApiError::RequestTimeout),
    }
}

/// Whether reading stopped at [`MAX_BODY_BYTES`] (the only error that means "too large").
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Syntax errors are `400 invalid_json`; well-formed JSON of the wrong shape is
/// `422 invalid_request`. Only an object is a body: serde would otherwise accept a JSON array
/// as a struct, field by field in order.
fn parse_body(bytes: &[u8]) -> Result<StartCallBody, ApiError> {
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
            Err(_) => Err(ApiError::InvalidJson),
        };
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::invalid(format!("Invalid request body: {}", shorten(&e.to_string())))
        }
        _ => ApiError::InvalidJson,
    })
}

fn validate_name(name: &str) -> Result<String, ApiError> {
    // Judged whole, before trimming: a trailing U+2028 or tab is refused, not trimmed away.
    if first_invisible(name).is_some() {
        return Err(ApiError::invalid(INVISIBLE));
    }
    let trimmed = name.trim_matches(' ');
    let chars = trimmed.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(ApiError::invalid("name must be 1 to 100 characters"));
    }
    Ok(trimmed.to_string())
}

/// Why a `name` or `variables` value with a character [`first_invisible`] refuses is refused.
const INVISIBLE: &str = "name and variables values may hold letters, digits, punctuation, symbols and plain spaces only: no control, invisible or formatting characters";

fn validate_variables(variables: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if variables.len() > MAX_VARIABLES {
        return Err(ApiError::invalid("variables holds at most 20 entries"));
    }
    for (key, value) in variables {
        let key_ok = (1..=MAX_VARIABLE_KEY).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(ApiError::invalid(
                "variables keys must match [A-Za-z0-9_]{1,40}",
            ));
        }
        if value.chars().count() > MAX_VARIABLE_VALUE_CHARS {
            return Err(ApiError::invalid(
                "variables values must be at most 500 characters",
            ));
        }
        if first_invisible(value).is_some() {
            return Err(ApiError::invalid(INVISIBLE));
        }
    }
    Ok(())
}

/// `X-End-User-IP` from an authenticated server: one IP address, or absent.
fn end_user_ip(parts: &Parts) -> Result<Option<IpKey>, ApiError> {
    if parts.headers.get("x-end-user-ip").is_none() {
        return Ok(None);
    }
    single_ip_header(parts, "x-end-user-ip")
        .map(|ip| Some(IpKey::new(ip)))
        .ok_or_else(|| ApiError::invalid("X-End-User-IP must be one IP address"))
}

fn render(outcome: &Outcome, request_id: &RequestId) -> Response {
    let mut response = match &outcome.result {
        Ok(started) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "status": "initiated",
                "call_id": started.call_id.to_string(),
                "provider": started.provider.as_str(),
                "provider_call_id": started.provider_call_id,
                "to": started.to,
                "dry_run": started.provider == ProviderKind::DryRun,
            })),
        )
            .into_response(),
        Err(error) => error_response(error, request_id),
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
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

fn rate_limit_headers(headers: &mut HeaderMap, rate: &LimitStatus) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(rate.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(rate.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(rate.reset_secs));
}

/// Headers a replay repeats (the rest are made fresh: request id, CORS).
const REPLAYED_HEADERS: [HeaderName; 4] = [
    RATELIMIT_LIMIT,
    RATELIMIT_REMAINING,
    RATELIMIT_RESET,
    http::header::RETRY_AFTER,
];

/// Splits a response into what is stored and the response itself (rebuilt from the bytes).
async fn store(response: Response) -> Result<(StoredResponse, Response), Response> {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    Ok((stored, Response::from_parts(parts, Body::from(bytes))))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

fn shorten(message: &str) -> String {
    message.chars().take(200).collect()
}

/// Lower-case hex, two digits a byte (one allocation, no formatting machinery).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), expected);
    }
}
