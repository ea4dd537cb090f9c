//! Errors (SPEC §10): every refusal is one variant with its code, status and a human sentence.
//! Rendering adds the request id; nothing internal (keys, upstream bodies, causes) reaches the
//! client.

use http::StatusCode;

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
    #[error("The request body is larger than 16 KiB.")]
    PayloadTooLarge,
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
            ApiError::PayloadTooLarge => "payload_too_large",
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
            ApiError::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestInProgress => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ProviderError(_) => StatusCode::BAD_GATEWAY,
            ApiError::ProviderNotConfigured
            | ApiError::RateLimitUnavailable
            | ApiError::Misconfigured => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ProviderTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The JSON body of SPEC §10.
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

/// `{"error": {"code", "message"}, "request_id"}` (SPEC §10), serialised straight from these
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
}
