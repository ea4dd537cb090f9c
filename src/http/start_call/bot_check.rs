//! The bot check of an anonymous `start_call` (docs/API.md §16): the token judged by
//! [`crate::bot_check`], the refusal turned into its answer, logged and counted. Runs before
//! the idempotency claim and the limits, so a refused request has used nothing of Chamada's.

use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use super::idempotency::IdempotencyKey;
use crate::app::App;
use crate::bot_check::{derived_idempotency_key, well_formed, Expected, Reason, Turnstile};
use crate::client_ip::IpKey;
use crate::http::error::ApiError;
use crate::http::RequestId;
use crate::logging;
use crate::metrics::Metric;

pub(super) async fn check(
    app: &App,
    turnstile: &Turnstile,
    token: Option<&str>,
    client: Option<IpAddr>,
    idempotency_key: Option<&IdempotencyKey>,
    request_id: &RequestId,
) -> Result<(), ApiError> {
    // The token's shape first: a missing or malformed one never reaches Siteverify.
    let refusal = match well_formed(token) {
        Err(refusal) => refusal,
        Ok(token) => {
            let siteverify_key = match idempotency_key {
                Some(key) => derived_idempotency_key(client, key.as_str(), token),
                None => crate::ids::uuid(crate::ids::new_uuid()),
            };
            let expected = Expected {
                origins: &app.config.allowed_origins,
                now: UNIX_EPOCH + Duration::from_millis(app.clock.now_ms()),
            };
            match turnstile
                .verify(token, client, &siteverify_key, &expected)
                .await
            {
                Ok(()) => return Ok(()),
                Err(refusal) => refusal,
            }
        }
    };
    app.count(Metric::CaptchaFailures(refusal.reason), 1);
    let ip = client.map(|ip| IpKey::new(ip).log_prefix());
    let ip = ip.map(tracing::field::display);
    match refusal.reason {
        Reason::Unavailable => {
            tracing::error!(
                request_id = %request_id.0,
                detail = %refusal.detail,
                ip,
                "{}",
                logging::BOT_CHECK_UNAVAILABLE
            );
            Err(ApiError::CaptchaUnavailable)
        }
        reason => {
            tracing::warn!(
                request_id = %request_id.0,
                reason = reason.as_str(),
                ip,
                "{}",
                logging::BOT_CHECK_FAILED
            );
            Err(match reason {
                Reason::Missing => ApiError::CaptchaRequired,
                _ => ApiError::CaptchaInvalid,
            })
        }
    }
}
