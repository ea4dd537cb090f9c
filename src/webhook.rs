//! Call outcomes for the Make.com webhook (SPEC §9). The [`Notifier`] port is what the service
//! calls after every dispatch; delivery failures are the notifier's to log, never the caller's
//! error.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventType {
    #[serde(rename = "call.initiated")]
    CallInitiated,
    #[serde(rename = "call.failed")]
    CallFailed,
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
    /// Delivers the event, within the notifier's own time budget. Never fails the caller.
    async fn notify(&self, event: &Event, request_id: &str);
}

/// No `MAKE_WEBHOOK_URL`: outcomes are only logged.
#[derive(Debug, Default)]
pub struct NoWebhook;

#[async_trait]
impl Notifier for NoWebhook {
    async fn notify(&self, _event: &Event, _request_id: &str) {}
}
