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

use crate::store::{CallStatus, Envelope};

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
    #[serde(rename = "call.ringing")]
    CallRinging,
    #[serde(rename = "call.answered")]
    CallAnswered,
    #[serde(rename = "call.completed")]
    CallCompleted,
    #[serde(rename = "call.no_answer")]
    CallNoAnswer,
    #[serde(rename = "call.busy")]
    CallBusy,
    #[serde(rename = "call.canceled")]
    CallCanceled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallInitiated => "call.initiated",
            EventType::CallFailed => "call.failed",
            EventType::CallRinging => "call.ringing",
            EventType::CallAnswered => "call.answered",
            EventType::CallCompleted => "call.completed",
            EventType::CallNoAnswer => "call.no_answer",
            EventType::CallBusy => "call.busy",
            EventType::CallCanceled => "call.canceled",
        }
    }

    /// The event that tells Make a call reached `status` (docs/API.md §15).
    pub fn of_status(status: CallStatus) -> Option<EventType> {
        match status {
            CallStatus::Initiated => None,
            CallStatus::Ringing => Some(EventType::CallRinging),
            CallStatus::InProgress => Some(EventType::CallAnswered),
            CallStatus::Completed => Some(EventType::CallCompleted),
            CallStatus::Failed => Some(EventType::CallFailed),
            CallStatus::NoAnswer => Some(EventType::CallNoAnswer),
            CallStatus::Busy => Some(EventType::CallBusy),
            CallStatus::Canceled => Some(EventType::CallCanceled),
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

impl CallSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CallSource::Web => "web",
            CallSource::Api => "api",
        }
    }
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

/// `data` of a status event (docs/API.md §15): what a provider said about a call. Never the
/// number; the transcript only with `FORWARD_TRANSCRIPTS=true`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub call_id: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub status: CallStatus,
    pub at: String,
    pub duration_secs: Option<u64>,
    pub end_reason: Option<String>,
    pub summary: Option<String>,
    pub successful: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<serde_json::Value>,
}

/// A status event as POSTed: `{id, type, created_at, data}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub created_at: String,
    pub data: StatusChange,
}

impl StatusEvent {
    pub fn envelope(&self) -> Envelope {
        Envelope {
            id: self.id.clone(),
            // Strings, numbers and JSON already parsed: serialising cannot fail.
            body: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// A new event id: `msg_` and 32 hex digits.
pub fn event_id() -> String {
    crate::ids::prefixed_simple_uuid("msg_", crate::ids::new_uuid())
}

/// A time as events carry it: RFC 3339, UTC, milliseconds (comparable as strings).
pub fn event_time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
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
        for source in [CallSource::Web, CallSource::Api] {
            assert_eq!(serde_json::to_value(source).unwrap(), source.as_str());
        }
        assert_eq!(CallSource::Web.as_str(), "web");
    }
}
