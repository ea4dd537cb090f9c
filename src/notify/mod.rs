//! Call outcomes for the Make.com webhook (SPEC §9). The [`Notifier`] port is what the service
//! calls after every dispatch; delivery failures are the notifier's to log, never the caller's
//! error.
//!
//! [`MakeWebhook`] POSTs the event as JSON with Make's `x-make-apikey` and a Standard Webhooks
//! signature ([`sign`]). Delivery retries connection errors, timeouts, 429 and 5xx with capped
//! exponential backoff and full jitter (a `Retry-After` is honoured), never other 4xx, always
//! with the same `webhook-id`.
//!
//! **Time bound.** Each attempt times out after `WEBHOOK_TIMEOUT`; the whole delivery — every
//! attempt and every pause — ends within `WEBHOOK_TIMEOUT + 15 s` ([`RETRY_ALLOWANCE`]; 45 s
//! with the defaults). An attempt never outlives that deadline, and a pause (or a
//! `Retry-After`) that would cross it ends the delivery instead. The call path awaits the
//! delivery, so the function's timeout must cover `PROVIDER_TIMEOUT + WEBHOOK_TIMEOUT + 15 s`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderValue, StatusCode};
use rand::Rng;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::Serialize;
use sha2::Sha256;
use tokio::time::Instant;

use crate::config::WebhookConfig;
use crate::logging;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    #[serde(rename = "call.initiated")]
    CallInitiated,
    #[serde(rename = "call.failed")]
    CallFailed,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallInitiated => "call.initiated",
            EventType::CallFailed => "call.failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An anonymous browser visitor.
    Web,
    /// An authenticated server (API key).
    Api,
}

/// `data` of the event body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallOutcome {
    pub call_id: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub to: String,
    pub name: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub source: Source,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole event as POSTed: `{id, type, created_at, data}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: String,
    pub data: CallOutcome,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers the event, within the notifier's own time budget. Never fails the caller;
    /// answers whether the event was delivered (`true` when there is nothing to deliver), so
    /// failures can be counted.
    async fn notify(&self, event: &Event, request_id: &str) -> bool;
}

/// No `MAKE_WEBHOOK_URL`: outcomes are only logged.
#[derive(Debug, Default)]
pub struct NoWebhook;

#[async_trait]
impl Notifier for NoWebhook {
    async fn notify(&self, _event: &Event, _request_id: &str) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks signatures.

/// The HMAC key of `MAKE_WEBHOOK_SECRET`: the secret's bytes, or, for the Standard Webhooks
/// form `whsec_<base64>`, the decoded bytes.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a whsec_ secret must hold base64 after the prefix")]
pub struct InvalidSecret;

/// Standard base64 with or without its `=` padding, as the Standard Webhooks libraries read
/// a `whsec_` secret; anything else (other alphabets, stray characters) is still refused.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl WebhookSecret {
    pub fn parse(secret: &str) -> Result<Self, InvalidSecret> {
        let key = match secret.strip_prefix("whsec_") {
            Some(encoded) => SECRET_BASE64.decode(encoded).map_err(|_| InvalidSecret)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(InvalidSecret);
        }
        Ok(WebhookSecret(SecretSlice::from(key)))
    }

    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([REDACTED])")
    }
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(secret: &WebhookSecret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", BASE64.encode(tag))
}

/// Whether a `webhook-signature` header (one or more space-separated `v1,<base64>`) holds a
/// valid signature of this message. Compares in constant time; empty, truncated or other
/// versions' signatures never verify. Receivers should also refuse stale timestamps.
pub fn verify(secret: &WebhookSecret, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
    header.split(' ').any(|candidate| {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            return false;
        };
        let Ok(tag) = BASE64.decode(encoded) else {
            return false;
        };
        // `verify_slice` refuses any length but the full 32 bytes.
        secret.mac(id, timestamp, body).verify_slice(&tag).is_ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Delivery.

/// How much longer than one attempt the whole delivery may take (pauses and retries).
pub const RETRY_ALLOWANCE: Duration = Duration::from_secs(15);

/// Capped exponential backoff with full jitter: the pause before retry `n` (1-based) is drawn
/// uniformly from `[0, min(cap, base × 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// The longest pause before retry `n` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A pause before retry `n`, drawn with full jitter.
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_micros() as u64;
        Duration::from_micros(rand::rng().random_range(0..=ceiling))
    }
}

/// Timeouts, retries, backoff and the whole delivery's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub attempt_timeout: Duration,
    pub retries: u32,
    pub backoff: Backoff,
    /// The whole delivery ends within this time.
    pub budget: Duration,
}

impl DeliveryPolicy {
    pub fn from_config(config: &WebhookConfig) -> Self {
        DeliveryPolicy {
            attempt_timeout: config.timeout,
            retries: config.retries,
            backoff: Backoff::default(),
            budget: config.timeout + RETRY_ALLOWANCE,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this status.
    Status(StatusCode),
    /// No answer within the attempt's timeout.
    Timeout,
    /// The receiver could not be reached (DNS, connection refused, TLS, reset).
    Unreachable,
}

impl Attempt {
    fn is_retryable(self) -> bool {
        match self {
            Attempt::Status(s) => s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error(),
            Attempt::Timeout | Attempt::Unreachable => true,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Status(s) => write!(f, "status {}", s.as_u16()),
            Attempt::Timeout => f.write_str("timeout"),
            Attempt::Unreachable => f.write_str("receiver unreachable"),
        }
    }
}

/// The end of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered {
        attempts: u32,
    },
    Failed {
        attempts: u32,
        last: Attempt,
        why: &'static str,
    },
}

/// `MAKE_WEBHOOK_URL` with its secret and delivery policy.
pub struct MakeWebhook {
    http: reqwest::Client,
    url: String,
    /// Sent as `x-make-apikey`, as configured.
    api_key: Option<SecretString>,
    signing: Option<WebhookSecret>,
    policy: DeliveryPolicy,
}

impl MakeWebhook {
    /// `http` is the process's shared client. Fails only on a `whsec_` secret that is not
    /// base64.
    pub fn new(config: &WebhookConfig, http: reqwest::Client) -> Result<Self, InvalidSecret> {
        let signing = config
            .secret
            .as_ref()
            .map(|s| WebhookSecret::parse(s.expose_secret()))
            .transpose()?;
        Ok(MakeWebhook {
            http,
            url: config.url.clone(),
            api_key: config.secret.clone(),
            signing,
            policy: DeliveryPolicy::from_config(config),
        })
    }

    /// Replaces the backoff (tests use milliseconds).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.policy.backoff = Backoff { base, cap };
        self
    }

    /// Replaces the whole delivery's budget.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.policy.budget = budget;
        self
    }

    pub fn policy(&self) -> DeliveryPolicy {
        self.policy
    }

    /// The receiver's host, for logs: Make's URL path is its secret token.
    fn receiver(&self) -> &str {
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        authority.rsplit('@').next().unwrap_or("")
    }

    /// Delivers `event`, retrying as the policy allows.
    pub async fn deliver(&self, event: &Event, request_id: &str) -> Delivery {
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(_) => {
                return Delivery::Failed {
                    attempts: 0,
                    last: Attempt::Unreachable,
                    why: "the event could not be serialised",
                }
            }
        };
        // The budget comes from configuration (at most 315 s); far-future saturates anyway.
        let now = Instant::now();
        let deadline = now.checked_add(self.policy.budget).unwrap_or(now);
        let mut attempts = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            attempts += 1;
            let (outcome, retry_after) = self
                .attempt(&event.id, &body, self.policy.attempt_timeout.min(left))
                .await;
            if let Attempt::Status(s) = outcome {
                if s.is_success() {
                    return Delivery::Delivered { attempts };
                }
            }
            if !outcome.is_retryable() {
                return Delivery::Failed {
                    attempts,
                    last: outcome,
                    why: "the receiver refused the event",
                };
            }
            if attempts > self.policy.retries {
                return Delivery::Failed {
                    attempts,
                    last: outcome,
                    why: "no retries left",
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wanted = retry_after.unwrap_or_else(|| self.policy.backoff.pause(attempts));
            let Some(pause) = pause_within(wanted, left) else {
                return Delivery::Failed {
                    attempts,
                    last: outcome,
                    why: "the next retry would exceed the delivery's time budget",
                };
            };
            tracing::warn!(
                request_id,
                event_id = %event.id,
                attempt = attempts,
                outcome = %outcome,
                pause_ms = pause.as_millis() as u64,
                "Webhook attempt failed; retrying"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// One POST. Returns what happened and the receiver's `Retry-After`, if any.
    async fn attempt(
        &self,
        id: &str,
        body: &[u8],
        timeout: Duration,
    ) -> (Attempt, Option<Duration>) {
        if timeout.is_zero() {
            return (Attempt::Timeout, None);
        }
        let timestamp = unix_seconds(SystemTime::now());
        let mut request = self
            .http
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.api_key {
            if let Ok(mut value) = HeaderValue::from_str(key.expose_secret()) {
                value.set_sensitive(true);
                request = request.header("x-make-apikey", value);
            }
        }
        if let Some(secret) = &self.signing {
            request = request.header("webhook-signature", sign(secret, id, timestamp, body));
        }
        let sent = tokio::time::timeout(timeout, request.body(body.to_vec()).send()).await;
        match sent {
            Err(_) => (Attempt::Timeout, None),
            Ok(Err(error)) if error.is_timeout() => (Attempt::Timeout, None),
            Ok(Err(_)) => (Attempt::Unreachable, None),
            Ok(Ok(response)) => {
                let retry_after = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                (Attempt::Status(response.status()), retry_after)
            }
        }
    }
}

#[async_trait]
impl Notifier for MakeWebhook {
    async fn notify(&self, event: &Event, request_id: &str) -> bool {
        match self.deliver(event, request_id).await {
            Delivery::Delivered { attempts } => {
                tracing::info!(
                    request_id,
                    event_id = %event.id,
                    event_type = event.kind.as_str(),
                    attempts,
                    "Webhook delivered"
                );
                true
            }
            Delivery::Failed {
                attempts,
                last,
                why,
            } => {
                tracing::error!(
                    request_id,
                    event_id = %event.id,
                    event_type = event.kind.as_str(),
                    attempts,
                    last = %last,
                    why,
                    receiver = self.receiver(),
                    "{}",
                    logging::WEBHOOK_FAILED
                );
                false
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The pause before the next attempt, if it ends before the budget does (`left` is what remains
/// of it). Compares durations only: a pause from outside (a receiver's `Retry-After` of any
/// size) is never added to an instant, so no value can overflow.
pub fn pause_within(wanted: Duration, left: Duration) -> Option<Duration> {
    (wanted < left).then_some(wanted)
}

/// `Retry-After` as delay-seconds or an HTTP date; `None` when unreadable (the backoff applies).
/// Any size is read (`u64::MAX` seconds included); [`pause_within`] bounds what is waited.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let ceilings: Vec<u64> = (1..=6).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 500, 500, 500]);
        assert_eq!(b.ceiling(1000), b.cap, "huge retry counts never overflow");
    }

    #[test]
    fn jittered_pauses_stay_within_the_ceiling_and_vary() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let pauses: Vec<Duration> = (0..200).map(|_| b.pause(3)).collect();
        assert!(pauses.iter().all(|p| *p <= Duration::from_millis(400)));
        let distinct: std::collections::BTreeSet<_> = pauses.iter().collect();
        assert!(distinct.len() > 10, "full jitter draws different pauses");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    proptest! {
        /// Whatever a receiver sends as `Retry-After` (numbers of any size, dates in the past or
        /// far future, garbage), reading it never panics and the pause never outlasts what is
        /// left of the budget.
        #[test]
        fn any_retry_after_is_read_without_panic_and_bounded_by_the_budget(
            value in prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                "[0-9]{1,40}",
                (0u64..=253_402_300_799).prop_map(|s| httpdate::fmt_http_date(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(s))),
                "\\PC{0,60}",
            ],
            now_secs in 0u64..=4_000_000_000,
            left_ms in 0u64..=400_000,
        ) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
            let left = Duration::from_millis(left_ms);
            if let Some(wanted) = parse_retry_after(&value, now) {
                if let Some(pause) = pause_within(wanted, left) {
                    prop_assert!(pause < left);
                    prop_assert_eq!(pause, wanted);
                }
            }
        }
    }

    #[test]
    fn the_largest_retry_after_ends_the_delivery_instead_of_overflowing() {
        let huge = parse_retry_after("18446744073709551615", SystemTime::now()).unwrap();
        assert_eq!(huge, Duration::from_secs(u64::MAX));
        assert_eq!(pause_within(huge, Duration::from_secs(45)), None);
        assert_eq!(
            pause_within(Duration::from_secs(2), Duration::from_secs(45)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn only_429_5xx_timeouts_and_unreachable_are_retried() {
        for code in [429, 500, 502, 503, 504] {
            assert!(Attempt::Status(StatusCode::from_u16(code).unwrap()).is_retryable());
        }
        for code in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!Attempt::Status(StatusCode::from_u16(code).unwrap()).is_retryable());
        }
        assert!(Attempt::Timeout.is_retryable());
        assert!(Attempt::Unreachable.is_retryable());
    }

    #[test]
    fn whsec_secrets_must_be_base64_and_nonempty() {
        assert_eq!(
            WebhookSecret::parse("whsec_%%%").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(WebhookSecret::parse("whsec_").unwrap_err(), InvalidSecret);
        assert!(WebhookSecret::parse("test-webhook-secret").is_ok());
        // Standard Webhooks libraries accept the secret with or without its padding.
        let padded = WebhookSecret::parse("whsec_dGVzdC1zZWNyZXQ=").unwrap();
        let unpadded = WebhookSecret::parse("whsec_dGVzdC1zZWNyZXQ").unwrap();
        assert_eq!(
            sign(&padded, "msg_1", 1, b"{}"),
            sign(&unpadded, "msg_1", 1, b"{}")
        );
        // Still refused: URL-safe alphabet, stray characters, broken padding.
        for bad in [
            "whsec_dGVzdC1zZWNyZXQ_",
            "whsec_dGVz dC1z",
            "whsec_dGVzdC1zZWNyZXQ==",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad).unwrap_err(),
                InvalidSecret,
                "{bad}"
            );
        }
        let debug = format!("{:?}", WebhookSecret::parse("test-webhook-secret").unwrap());
        assert!(!debug.contains("test-webhook-secret"));
    }

    #[test]
    fn the_log_names_the_receiver_host_and_never_its_path_token() {
        let hook = MakeWebhook {
            http: reqwest::Client::new(),
            url: "https://user:pw@hook.eu1.make.com/test-path-token?x=1".into(),
            api_key: None,
            signing: None,
            policy: DeliveryPolicy {
                attempt_timeout: Duration::from_secs(1),
                retries: 0,
                backoff: Backoff::default(),
                budget: Duration::from_secs(1),
            },
        };
        assert_eq!(hook.receiver(), "hook.eu1.make.com");
    }
}
