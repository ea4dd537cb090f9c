//! Call records (docs/API.md §15): what happened to each call after `start_call` answered. A
//! status only moves forward ([`CallStatus::rank`]); each change is written together with the
//! webhook event that tells Make about it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Envelope, StoreError, DAY_MS};

/// How long a record is kept unless `CALL_RECORD_DAYS` says otherwise.
pub const DEFAULT_RECORD_DAYS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Failed,
    NoAnswer,
    Busy,
    Canceled,
}

impl CallStatus {
    /// The order statuses move in: a change to a rank at or below the current one is dropped.
    /// Every final status has the same, highest rank: a final status never changes.
    pub fn rank(self) -> u8 {
        match self {
            CallStatus::Initiated => 0,
            CallStatus::Ringing => 1,
            CallStatus::InProgress => 2,
            CallStatus::Completed
            | CallStatus::Failed
            | CallStatus::NoAnswer
            | CallStatus::Busy
            | CallStatus::Canceled => 3,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 3
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in_progress",
            CallStatus::Completed => "completed",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no_answer",
            CallStatus::Busy => "busy",
            CallStatus::Canceled => "canceled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::InProgress,
            CallStatus::Completed,
            CallStatus::Failed,
            CallStatus::NoAnswer,
            CallStatus::Busy,
            CallStatus::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// One step of a call's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub status: CallStatus,
    pub at_ms: u64,
}

/// A call as the store keeps it. Never the full number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    /// The number as logs show it (`+351******678`).
    pub to_masked: String,
    /// `web` or `api`.
    pub source: String,
    pub status: CallStatus,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub history: Vec<Step>,
    pub duration_secs: Option<u64>,
    pub end_reason: Option<String>,
    pub summary: Option<String>,
    pub successful: Option<String>,
    /// Hex SHA-256 of the status token (§15.1).
    pub token_hash: String,
    /// When the store forgets the record.
    pub expires_at_ms: u64,
}

impl CallRecord {
    /// The record after `change` (the caller checked that it moves forward).
    pub fn with(&self, change: &Change) -> CallRecord {
        let mut next = self.clone();
        next.status = change.status;
        next.updated_at_ms = change.at_ms;
        next.history.push(Step {
            status: change.status,
            at_ms: change.at_ms,
        });
        next.duration_secs = change.duration_secs.or(next.duration_secs);
        next.end_reason = change.end_reason.clone().or(next.end_reason);
        next.summary = change.summary.clone().or(next.summary);
        next.successful = change.successful.clone().or(next.successful);
        next
    }

    /// Whether `change` would move this call forward.
    pub fn moves_forward(&self, change: &Change) -> bool {
        change.status.rank() > self.status.rank()
    }
}

/// What a provider event says about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub status: CallStatus,
    pub at_ms: u64,
    pub duration_secs: Option<u64>,
    pub end_reason: Option<String>,
    pub summary: Option<String>,
    pub successful: Option<String>,
}

impl Change {
    pub fn to(status: CallStatus, at_ms: u64) -> Change {
        Change {
            status,
            at_ms,
            duration_secs: None,
            end_reason: None,
            summary: None,
            successful: None,
        }
    }
}

/// What [`CallRecords::advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The call moved forward (and its event was written with it).
    Applied(Box<CallRecord>),
    /// The change does not move the call forward: nothing written.
    Unchanged,
    /// No such call (never created, or expired).
    Unknown,
}

/// Milliseconds a record is kept for `days`.
pub fn retention_ms(days: u64) -> u64 {
    days * DAY_MS
}

#[async_trait]
pub trait CallRecords: Send + Sync {
    /// Writes a new record (and, for a provider-assigned id, the way back from it). Taken by
    /// value: the memory store keeps it as it is, without a copy.
    async fn create(&self, record: CallRecord) -> Result<(), StoreError>;

    /// The record of `call_id`, unless it expired.
    async fn get(&self, call_id: &str, now_ms: u64) -> Result<Option<CallRecord>, StoreError>;

    /// The call the provider knows as `provider_call_id`.
    async fn find(&self, provider_call_id: &str, now_ms: u64)
        -> Result<Option<String>, StoreError>;

    /// Moves `call_id` forward by `change` — only if it ranks above the current status — and
    /// writes `event` in the same write.
    async fn advance(
        &self,
        call_id: &str,
        change: &Change,
        event: Option<&Envelope>,
    ) -> Result<Advance, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward_and_finals_never_change() {
        let mut record = CallRecord {
            call_id: "c".into(),
            provider: "elevenlabs".into(),
            provider_call_id: None,
            to_masked: "+351******678".into(),
            source: "api".into(),
            status: CallStatus::Initiated,
            created_at_ms: 0,
            updated_at_ms: 0,
            history: vec![],
            duration_secs: None,
            end_reason: None,
            summary: None,
            successful: None,
            token_hash: String::new(),
            expires_at_ms: 1,
        };
        assert!(record.moves_forward(&Change::to(CallStatus::Ringing, 1)));
        record = record.with(&Change::to(CallStatus::InProgress, 2));
        assert!(!record.moves_forward(&Change::to(CallStatus::Ringing, 3)));
        record = record.with(&Change::to(CallStatus::Completed, 4));
        for late in [CallStatus::Failed, CallStatus::Busy, CallStatus::InProgress] {
            assert!(!record.moves_forward(&Change::to(late, 5)), "{late:?}");
        }
        assert_eq!(CallStatus::parse("no_answer"), Some(CallStatus::NoAnswer));
        assert_eq!(record.history.len(), 2);
    }
}
