//! Call outcomes for the Make.com webhook (docs/API.md §9), delivered through the outbox.
//!
//! The call path writes each event to the store's outbox before it answers
//! ([`crate::store::Outbox`]); delivery runs after the answer ([`Deliverer`]): a background
//! task (local server), Vercel's `waitUntil`, the DynamoDB stream (Lambda), and a sweep for
//! events due for a later window. Each *window* is one [`Notifier::deliver`]: attempts and quick
//! retries within `WEBHOOK_TIMEOUT + 15 s` ([`RETRY_ALLOWANCE`]). Windows follow the
//! [`Schedule`] over hours, with the same `webhook-id` on every attempt and a fresh timestamp
//! and signature each time ([`sign`]).
//!
//! [`MakeWebhook`] POSTs the event as JSON with Make's `x-make-apikey` and a Standard Webhooks
//! signature. An attempt is retried after a connection error, a timeout, 408, 429 or 5xx (a
//! `Retry-After` is honoured within bounds); any other 4xx means the receiver refused the event
//! and no later window is tried.

mod backoff;
pub mod commands;
mod delivery;
mod make;
mod signature;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::store::Envelope;

pub use backoff::{parse_retry_after, pause_within, Backoff};
pub use delivery::{Deliverer, Schedule, SweepReport};
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

impl Event {
    /// The event as the outbox keeps it: its id and the JSON body every attempt sends.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            id: self.id.clone(),
            // Plain strings, numbers and maps: serialising cannot fail.
            body: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// The receiver of the events: one delivery window at a time.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Runs one delivery window for `event`: its attempts and quick retries, within
    /// [`Notifier::window_bound`].
    async fn deliver(&self, event: &Envelope, request_id: &str) -> Delivery;

    /// The longest one window can take (a claim's lease outlasts it).
    fn window_bound(&self) -> Duration;

    /// The receiver's host, for logs (never its path: Make's path is its token).
    fn receiver(&self) -> &str;
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
