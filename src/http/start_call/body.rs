//! The body of `POST /api/start_call` (docs/API.md §2): its media type, a bounded read, the JSON and
//! each field's rules. No side effect here.

use std::collections::BTreeMap;

use axum::body::Body;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use serde::Deserialize;

use crate::dispatch::ProviderKind;
use crate::http::error::ApiError;
use crate::phone::E164;
use crate::text::first_invisible;

/// docs/API.md §2: bodies above 16 KiB are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The whole body must arrive within this time (`408 request_timeout`): a client that stalls
/// mid-body holds no connection for longer.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_NAME_CHARS: usize = 100;
const MAX_VARIABLES: usize = 20;
const MAX_VARIABLE_KEY: usize = 40;
const MAX_VARIABLE_VALUE_CHARS: usize = 500;

/// The body of docs/API.md §2. Unknown fields are refused; `null` counts as absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartCallBody {
    phone_number: Option<String>,
    name: Option<String>,
    provider: Option<String>,
    variables: Option<BTreeMap<String, String>>,
    /// The bot check's token (docs/API.md §16), under the widget's own name.
    #[serde(rename = "cf-turnstile-response")]
    captcha_token: Option<String>,
}

/// The body's fields once parsed and checked (docs/API.md §2), before the provider and the phone
/// policy are consulted.
pub(crate) struct Fields {
    pub name: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub provider: Option<ProviderKind>,
    /// The number as sent (or the fallback), not yet through the phone policy.
    pub raw_number: String,
    /// `cf-turnstile-response` as sent: judged by the bot check, never passed to the agent.
    pub captcha_token: Option<String>,
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
        captcha_token: body.captcha_token,
    })
}

pub(super) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The whole body, within [`MAX_BODY_BYTES`] and [`BODY_READ_TIMEOUT`].
pub(super) async fn read(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    read_limited(headers, body, MAX_BODY_BYTES).await
}

/// The whole body, within `max` bytes and [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<bytes::Bytes, ApiError> {
    if let Some(length) = headers.get(CONTENT_LENGTH) {
        let declared = length
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Content-Length is not a number."))?;
        if declared > max as u64 {
            return Err(ApiError::PayloadTooLarge {
                limit_kib: max / 1024,
            });
        }
    }
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, max));
    match read.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) if is_length_limit(&error) => Err(ApiError::PayloadTooLarge {
            limit_kib: max / 1024,
        }),
        // Broken chunked framing, a connection cut mid-body: the request is malformed.
        Ok(Err(_)) => Err(ApiError::bad_request(
            "The request body could not be read (malformed framing or an interrupted upload).",
        )),
        Err(_) => Err(ApiError::RequestTimeout),
    }
}

/// Whether reading stopped at its limit (the only error that means "too large").
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

fn shorten(message: &str) -> String {
    message.chars().take(200).collect()
}
