//! Call outcomes for the Make.com webhook (docs/API.md §9). The [`Notifier`] port is what the service
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

mod backoff;
mod make;
mod signature;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

pub use backoff::{parse_retry_after, pause_within, Backoff};
pub use make::{Attempt, Delivery, DeliveryPolicy, MakeWebhook, WebhookConfig, RETRY_ALLOWANCE};
pub use signature::{sign, verify, InvalidSecret, WebhookSecret};

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

/// Who asked for the call: the event's `source` (`"web"` or `"api"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallSource {
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
    pub source: CallSource,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_source_is_sent_as_web_or_api() {
        assert_eq!(serde_json::to_value(CallSource::Web).unwrap(), "web");
        assert_eq!(serde_json::to_value(CallSource::Api).unwrap(), "api");
    }
}
