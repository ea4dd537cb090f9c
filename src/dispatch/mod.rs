//! Dispatch (docs/API.md §7): placing the call. One [`CallDispatcher`] per provider; the service picks
//! one per request. A provider call is never retried here: a retry can ring somebody twice.

pub mod elevenlabs;
pub mod livekit;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::phone::E164;

pub use elevenlabs::ElevenLabs;
pub use livekit::LiveKit;

/// The providers a call can go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderKind {
    ElevenLabs,
    LiveKit,
    DryRun,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::ElevenLabs => "elevenlabs",
            ProviderKind::LiveKit => "livekit",
            ProviderKind::DryRun => "dry-run",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "elevenlabs" => Some(ProviderKind::ElevenLabs),
            "livekit" => Some(ProviderKind::LiveKit),
            "dry-run" => Some(ProviderKind::DryRun),
            _ => None,
        }
    }
}

/// What the agent needs to place one call.
#[derive(Debug, Clone)]
pub struct CallRequest {
    pub call_id: Uuid,
    pub to: E164,
    pub name: Option<String>,
    pub variables: BTreeMap<String, String>,
}

/// The provider accepted the call (which does not mean anybody answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// ElevenLabs `conversation_id`, LiveKit `sip_call_id`.
    pub provider_call_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// The provider refused or failed. `reason` is safe to show the caller: no keys, no raw
    /// upstream body; a SIP status such as `486 Busy Here` is kept.
    #[error("{reason}")]
    Provider { reason: String },
    /// No answer within `PROVIDER_TIMEOUT`: the call may or may not have been placed.
    #[error("the provider did not answer in time")]
    Timeout,
}

#[async_trait]
pub trait CallDispatcher: Send + Sync {
    fn kind(&self) -> ProviderKind;
    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError>;
}

/// Validates, limits and notifies exactly as a real call, and places nothing.
#[derive(Debug, Default)]
pub struct DryRun;

#[async_trait]
impl CallDispatcher for DryRun {
    fn kind(&self) -> ProviderKind {
        ProviderKind::DryRun
    }

    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        Ok(PlacedCall {
            provider_call_id: crate::ids::prefixed_uuid("dry-run-", call.call_id),
        })
    }
}

/// The dispatchers this process can use, and the default one.
#[derive(Clone, Default)]
pub struct Dispatchers {
    pub default: Option<ProviderKind>,
    by_kind: BTreeMap<ProviderKind, Arc<dyn CallDispatcher>>,
}

impl Dispatchers {
    pub fn new(default: Option<ProviderKind>) -> Self {
        Dispatchers {
            default,
            by_kind: BTreeMap::new(),
        }
    }

    pub fn with(mut self, dispatcher: Arc<dyn CallDispatcher>) -> Self {
        self.by_kind.insert(dispatcher.kind(), dispatcher);
        self
    }

    /// The dispatcher for `requested`, or the default; `None` when that provider is not
    /// configured here.
    pub fn pick(&self, requested: Option<ProviderKind>) -> Option<&Arc<dyn CallDispatcher>> {
        self.by_kind.get(&requested.or(self.default)?)
    }
}
