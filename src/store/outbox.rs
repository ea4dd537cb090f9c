//! The outbox port (docs/API.md §9): every webhook event is written to the store before the
//! answer, then delivered after it — by a background task, Vercel's `waitUntil`, the DynamoDB
//! stream or a sweep — at least once, with the same id on every attempt.
//!
//! An event is `pending` until a delivery window succeeds (`delivered`) or the last window
//! fails or the receiver refuses it (`failed`). A window is started by [`Outbox::claim`]: a
//! conditional write that takes a lease, so two sweepers (or a stream retry and a sweep) never
//! run the same window at once. [`Outbox::settle`] ends it, only if the claim is still ours.

use async_trait::async_trait;

use super::{StoreError, DAY_MS};

/// How long an event is kept after it is written (delivered, failed or not): then the store
/// forgets it (DynamoDB TTL; the memory store prunes).
pub const OUTBOX_RETENTION_MS: u64 = 7 * DAY_MS;

/// An event as the outbox keeps it: its id (`webhook-id`) and the JSON body POSTed on every
/// attempt (the same bytes each time; the signature and timestamp are made per attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub body: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for its next delivery window (or in one, under a lease).
    Pending,
    Delivered,
    /// Given up: the last window failed, or the receiver refused the event.
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(OutboxState::Pending),
            "delivered" => Some(OutboxState::Delivered),
            "failed" => Some(OutboxState::Failed),
            _ => None,
        }
    }
}

/// One event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub envelope: Envelope,
    pub state: OutboxState,
    /// Delivery windows started so far (0 before the first).
    pub attempts: u32,
    /// When the next window may start (pending events).
    pub due_at_ms: u64,
    /// Until when the window in progress holds the event (0: none).
    pub lease_until_ms: u64,
    pub created_at_ms: u64,
    /// How the last window ended, in words safe to log (`status 503`, `timeout`).
    pub last_error: Option<String>,
}

/// How a delivery window ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Try again in a later window, not before `due_at_ms`.
    RetryAt {
        due_at_ms: u64,
        error: String,
    },
    /// No more windows: the receiver refused the event, or the last window failed.
    Failed {
        error: String,
    },
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Writes `envelope` as pending, due at `now_ms`. An id already there is left as it is.
    async fn enqueue(&self, envelope: &Envelope, now_ms: u64) -> Result<(), StoreError>;

    /// Pending events due at `now_ms` and not under a live lease, earliest due first, at most
    /// `limit`.
    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// Starts the next window of `id`: only if it is pending, due and unleased at `now_ms`.
    /// Counts the window (`attempts + 1`) and holds the event for `lease_ms`. `None`: not
    /// there, not due, or someone else's window is running.
    async fn claim(
        &self,
        id: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxItem>, StoreError>;

    /// Ends window number `attempt` of `id`. Changes nothing (answers `false`) when the event
    /// is no longer in that window (its lease expired and another window began).
    async fn settle(
        &self,
        id: &str,
        attempt: u32,
        result: &Settle,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Failed events, newest first, at most `limit`.
    async fn failed(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// Puts a failed or delivered event back to pending, due at `now_ms`, with its windows
    /// counted from zero again. `false`: no such event, or it is pending already.
    async fn redeliver(&self, id: &str, now_ms: u64) -> Result<bool, StoreError>;

    /// One event by id.
    async fn get(&self, id: &str) -> Result<Option<OutboxItem>, StoreError>;
}
