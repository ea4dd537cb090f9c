//! [`MakeWebhook`]: delivery of an event to `MAKE_WEBHOOK_URL`, its attempts and the retries
//! loop, within the delivery's time budget (the bound is described in [`super`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::{HeaderValue, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::backoff::{parse_retry_after, pause_within, Backoff};
use super::signature::{sign, InvalidSecret, WebhookSecret};
use super::Notifier;
use crate::store::Envelope;

/// The Make webhook's settings (`MAKE_WEBHOOK_*`, `WEBHOOK_*`), read by `config`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<SecretString>,
    pub timeout: Duration,
    pub retries: u32,
    /// How often the local server sweeps the outbox for events due (`WEBHOOK_SWEEP_SECONDS`).
    pub sweep_every: Duration,
}

/// How much longer than one attempt the whole delivery may take (pauses and retries).
pub const RETRY_ALLOWANCE: Duration = Duration::from_secs(15);

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
            // One attempt needs no allowance for pauses.
            budget: if config.retries == 0 {
                config.timeout
            } else {
                config.timeout + RETRY_ALLOWANCE
            },
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
    /// Whether a later attempt may succeed: a timeout, an unreachable receiver, 408, 429 or a
    /// 5xx. Any other answer means the receiver refused the event: no more attempts.
    pub fn is_retryable(self) -> bool {
        match self {
            Attempt::Status(s) => {
                s == StatusCode::REQUEST_TIMEOUT
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s.is_server_error()
            }
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
        /// The receiver's last `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl Delivery {
    /// Whether the receiver refused the event (a 4xx other than 408 and 429): no later window.
    pub fn refused(&self) -> bool {
        matches!(self, Delivery::Failed { last, .. } if !last.is_retryable())
    }
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
    fn receiver_host(&self) -> &str {
        let rest = self.url.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        authority.rsplit('@').next().unwrap_or("")
    }

    /// One delivery window for `event`: attempts and quick retries as the policy allows,
    /// within its budget.
    async fn window(&self, event: &Envelope, request_id: &str) -> Delivery {
        let body = event.body.as_bytes();
        // The budget comes from configuration (at most 315 s); far-future saturates anyway.
        let now = Instant::now();
        let deadline = now.checked_add(self.policy.budget).unwrap_or(now);
        let mut attempts = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            attempts += 1;
            let (outcome, retry_after) = self
                .attempt(&event.id, body, self.policy.attempt_timeout.min(left))
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
                    retry_after,
                };
            }
            if attempts > self.policy.retries {
                return Delivery::Failed {
                    attempts,
                    last: outcome,
                    why: "no retries left",
                    retry_after,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wanted = retry_after.unwrap_or_else(|| self.policy.backoff.pause(attempts));
            let Some(pause) = pause_within(wanted, left) else {
                return Delivery::Failed {
                    attempts,
                    last: outcome,
                    why: "the next retry would exceed the delivery's time budget",
                    retry_after,
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
    async fn deliver(&self, event: &Envelope, request_id: &str) -> Delivery {
        let delivery = self.window(event, request_id).await;
        if let Delivery::Failed {
            attempts,
            last,
            why,
            ..
        } = &delivery
        {
            tracing::warn!(
                request_id,
                event_id = %event.id,
                attempts,
                last = %last,
                why,
                receiver = self.receiver_host(),
                "Webhook window failed"
            );
        }
        delivery
    }

    fn window_bound(&self) -> Duration {
        self.policy.budget
    }

    fn receiver(&self) -> &str {
        self.receiver_host()
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_408_429_5xx_timeouts_and_unreachable_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(Attempt::Status(StatusCode::from_u16(code).unwrap()).is_retryable());
        }
        for code in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!Attempt::Status(StatusCode::from_u16(code).unwrap()).is_retryable());
        }
        assert!(Attempt::Timeout.is_retryable());
        assert!(Attempt::Unreachable.is_retryable());
    }

    #[test]
    fn the_log_names_the_receiver_host_and_never_its_path_token() {
        let hook = MakeWebhook {
            http: crate::outbound::http_client().unwrap(),
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
        assert_eq!(hook.receiver_host(), "hook.eu1.make.com");
    }
}
