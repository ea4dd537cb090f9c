//! Errors (docs/API.md §10): every refusal is one variant with its code, status and a human sentence.
//! Rendering adds the request id; nothing internal (keys, upstream bodies, causes) reaches the
//! client.
//!
//! A handler returns `Err(ApiError)`; its [`IntoResponse`] sets the status and headers and
//! leaves the error in the response's extensions, where the router's frame writes the body
//! with the request id ([`ApiError::render`]). Code that must keep the whole answer (an
//! idempotent reply) renders it at once with `render`.

use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::calls::CallError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("The request body is not valid JSON.")]
    InvalidJson,
    #[error("{message}")]
    InvalidRequest { status: StatusCode, message: String },
    #[error("{0}")]
    InvalidPhoneNumber(String),
    #[error("{0}")]
    DestinationNotAllowed(String),
    #[error("A valid API key is required.")]
    Unauthorized,
    #[error("This origin is not allowed to call this API.")]
    ForbiddenOrigin,
    #[error("There is nothing here.")]
    NotFound,
    #[error("This method is not allowed here.")]
    MethodNotAllowed { allow: &'static str },
    #[error("A request with this Idempotency-Key is still being processed.")]
    RequestInProgress,
    #[error("The request body is larger than {limit_kib} KiB.")]
    PayloadTooLarge { limit_kib: usize },
    #[error("The request body must be JSON (Content-Type: application/json).")]
    UnsupportedMediaType,
    #[error("This Idempotency-Key was already used with a different request body.")]
    IdempotencyKeyReused,
    #[error("Too many calls. Try again in {}.", readable_wait(*retry_after))]
    RateLimited { retry_after: u64 },
    #[error("Something went wrong on our side.")]
    Internal,
    #[error("The call provider refused the call: {0}")]
    ProviderError(String),
    #[error("No call provider is configured for this request.")]
    ProviderNotConfigured,
    #[error("Rate limiting is unavailable, so no call can be placed right now.")]
    RateLimitUnavailable,
    #[error("The service is not fully configured, so no call can be placed.")]
    Misconfigured,
    #[error("The call provider did not answer in time.")]
    ProviderTimeout,
    #[error("The request body did not arrive in time.")]
    RequestTimeout,
    #[error("The webhook outbox could not be read, so nothing was delivered.")]
    OutboxUnavailable,
    #[error("Complete the check that shows you are a person, then send your request again.")]
    CaptchaRequired,
    #[error("The check that shows you are a person failed or expired. Complete it again, then send your request again.")]
    CaptchaInvalid,
    #[error("The check that shows you are a person cannot be verified right now, so no call was placed. Please try again in a few minutes.")]
    CaptchaUnavailable,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson => "invalid_json",
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::InvalidPhoneNumber(_) => "invalid_phone_number",
            ApiError::DestinationNotAllowed(_) => "destination_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::ForbiddenOrigin => "forbidden_origin",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RequestInProgress => "request_in_progress",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal => "internal_error",
            ApiError::ProviderError(_) => "provider_error",
            ApiError::ProviderNotConfigured => "provider_not_configured",
            ApiError::RateLimitUnavailable => "rate_limit_unavailable",
            ApiError::Misconfigured => "misconfigured",
            ApiError::ProviderTimeout => "provider_timeout",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::OutboxUnavailable => "outbox_unavailable",
            ApiError::CaptchaRequired => "captcha_required",
            ApiError::CaptchaInvalid => "captcha_invalid",
            ApiError::CaptchaUnavailable => "captcha_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson => StatusCode::BAD_REQUEST,
            ApiError::InvalidRequest { status, .. } => *status,
            ApiError::InvalidPhoneNumber(_)
            | ApiError::DestinationNotAllowed(_)
            | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenOrigin | ApiError::CaptchaRequired | ApiError::CaptchaInvalid => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestInProgress => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ProviderError(_) => StatusCode::BAD_GATEWAY,
            ApiError::ProviderNotConfigured
            | ApiError::RateLimitUnavailable
            | ApiError::Misconfigured
            | ApiError::OutboxUnavailable
            | ApiError::CaptchaUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Every code this service can answer with, for the OpenAPI document's test.
    pub const CODES: [&'static str; 24] = [
        "invalid_json",
        "invalid_request",
        "invalid_phone_number",
        "destination_not_allowed",
        "unauthorized",
        "forbidden_origin",
        "not_found",
        "method_not_allowed",
        "request_in_progress",
        "payload_too_large",
        "unsupported_media_type",
        "idempotency_key_reused",
        "rate_limited",
        "internal_error",
        "provider_error",
        "provider_not_configured",
        "rate_limit_unavailable",
        "misconfigured",
        "provider_timeout",
        "request_timeout",
        "outbox_unavailable",
        "captcha_required",
        "captcha_invalid",
        "captcha_unavailable",
    ];

    /// The whole answer: status, the headers the status calls for, and the JSON body of
    /// docs/API.md §10 with the request id.
    pub fn render(&self, request_id: &str) -> Response {
        let mut response = super::json_answer(self.status(), &self.body(request_id));
        self.add_headers(&mut response);
        response
    }

    fn add_headers(&self, response: &mut Response) {
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::RateLimited { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
    }

    /// The JSON body of docs/API.md §10.
    pub fn body<'a>(&self, request_id: &'a str) -> ErrorBody<'a> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
            request_id,
        }
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::RateLimited { retry_after } => ApiError::RateLimited { retry_after },
            CallError::LimitsUnavailable => ApiError::RateLimitUnavailable,
            CallError::Provider(reason) => ApiError::ProviderError(reason),
            CallError::ProviderTimeout => ApiError::ProviderTimeout,
        }
    }
}

/// Status and headers now; the body is written by the router's frame, which knows the
/// request id (an error is never answered without it).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        self.add_headers(&mut response);
        response.extensions_mut().insert(Unrendered(self));
        response
    }
}

/// An error answer whose body the frame still has to write.
#[derive(Debug, Clone)]
pub(crate) struct Unrendered(pub ApiError);

/// `{"error": {"code", "message"}, "request_id"}` (docs/API.md §10), serialised straight from these
/// fields (no intermediate `serde_json::Value`).
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail,
    pub request_id: &'a str,
}

#[derive(Debug, serde::Serialize)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
}

/// A wait as a person reads it: "45 seconds", "12 minutes", "23 hours 5 minutes", "3 days".
/// Rounded up, so nobody is told to come back before the slot frees (`Retry-After` keeps the
/// exact seconds).
pub fn readable_wait(secs: u64) -> String {
    fn unit(n: u64, one: &str) -> String {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    }
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    if secs < 60 {
        return unit(secs, "second");
    }
    let minutes = secs.div_ceil(60);
    if minutes < 60 {
        return unit(minutes, "minute");
    }
    if secs < 2 * DAY {
        let (h, m) = (minutes / 60, minutes % 60);
        return match m {
            0 => unit(h, "hour"),
            m => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        };
    }
    let hours = secs.div_ceil(HOUR);
    match (hours / 24, hours % 24) {
        (d, 0) => unit(d, "day"),
        (d, h) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_a_person_would_say_them() {
        for (secs, said) in [
            (0, "0 seconds"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "1 minute"),
            (61, "2 minutes"),
            (3599, "1 hour"),
            (3600, "1 hour"),
            (3660, "1 hour 1 minute"),
            (86_399, "24 hours"),
            (86_400, "24 hours"),
            (90_000, "25 hours"),
            (2 * 86_400, "2 days"),
            (2 * 86_400 + 1, "2 days 1 hour"),
            (366 * 86_400, "366 days"),
        ] {
            assert_eq!(readable_wait(secs), said, "{secs} s");
        }
        assert_eq!(
            ApiError::RateLimited {
                retry_after: 86_399
            }
            .to_string(),
            "Too many calls. Try again in 24 hours."
        );
    }

    #[test]
    fn codes_lists_every_variants_code_once() {
        let every = [
            ApiError::InvalidJson,
            ApiError::invalid("x"),
            ApiError::InvalidPhoneNumber("x".into()),
            ApiError::DestinationNotAllowed("x".into()),
            ApiError::Unauthorized,
            ApiError::ForbiddenOrigin,
            ApiError::NotFound,
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::RequestInProgress,
            ApiError::PayloadTooLarge { limit_kib: 16 },
            ApiError::UnsupportedMediaType,
            ApiError::IdempotencyKeyReused,
            ApiError::RateLimited { retry_after: 1 },
            ApiError::Internal,
            ApiError::ProviderError("x".into()),
            ApiError::ProviderNotConfigured,
            ApiError::RateLimitUnavailable,
            ApiError::Misconfigured,
            ApiError::ProviderTimeout,
            ApiError::RequestTimeout,
            ApiError::OutboxUnavailable,
            ApiError::CaptchaRequired,
            ApiError::CaptchaInvalid,
            ApiError::CaptchaUnavailable,
        ];
        let codes: std::collections::BTreeSet<_> = every.iter().map(ApiError::code).collect();
        assert_eq!(codes.len(), ApiError::CODES.len());
        assert!(ApiError::CODES.iter().all(|c| codes.contains(c)));
    }
}
