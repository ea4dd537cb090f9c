//! Ports to the shared state of the call path: the rate limiter (docs/API.md §5) and idempotency
//! records (docs/API.md §8). Each has an in-memory implementation ([`memory`]); a DynamoDB store
//! ([`dynamodb`]) and a PostgreSQL store ([`postgres`]) implement the same traits, and one
//! conformance suite runs against all three.
//!
//! Stores receive the time from the caller (milliseconds since the epoch) and never read a
//! clock, so the rules are the same whatever the store and tests need no sleeping.

pub mod calls;
pub mod dynamodb;
pub mod keys;
pub mod memory;
pub mod outbox;
pub mod postgres;

use std::borrow::Cow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use calls::{Advance, CallRecord, CallRecords, CallStatus, Change, Step};
pub use outbox::{Envelope, Outbox, OutboxItem, OutboxState, Settle};

/// Where limits and idempotency records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    DynamoDb,
    Postgres,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::DynamoDb => "dynamodb",
            StoreKind::Postgres => "postgres",
        }
    }
}

pub const DAY_MS: u64 = 86_400_000;

/// Which limit a check belongs to; also the metric and log label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Ip,
    Number,
    Global,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Ip => "ip",
            LimitKind::Number => "number",
            LimitKind::Global => "global",
        }
    }
}

/// How admissions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// At most `max` admissions in any span of this many milliseconds: exact, not bucketed.
    Rolling { ms: u64 },
    /// At most `max` admissions per UTC calendar day; the key carries the day.
    UtcDay,
}

/// One limit that a request must fit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCheck {
    pub kind: LimitKind,
    /// Identifies the counted thing (already scoped and, for shared stores, hashed).
    pub key: String,
    pub max: u32,
    pub window: Window,
}

/// The state of one limit after a decision, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    pub kind: LimitKind,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the next slot frees (rounded up); 0 when nothing is counted.
    pub reset_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted under every limit.
    Admitted(Vec<LimitStatus>),
    /// Counted under none. `by` is the limit with the longest wait (a request needs a slot in
    /// every limit), with `remaining` 0 and `reset_secs` = the exact `Retry-After`.
    Refused { by: LimitStatus },
}

impl Admission {
    /// The limit the `RateLimit-*` headers describe: the most restrictive one (fewest
    /// remaining, then the longest reset).
    pub fn headline(&self) -> Option<LimitStatus> {
        match self {
            Admission::Admitted(all) => all.iter().copied().min_by(|a, b| {
                a.remaining
                    .cmp(&b.remaining)
                    .then(b.reset_secs.cmp(&a.reset_secs))
            }),
            Admission::Refused { by } => Some(*by),
        }
    }
}

/// The cause kept under a [`StoreError`]: the SDK's error, a parse error.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store could not answer. The text names the operation and what went wrong (an error
/// code at most), never keys or values, so it may be logged as it is (`error = %error`); the
/// cause, when there is one, is the [`source`](std::error::Error::source), which `{:?}` and a
/// walk of the error chain show.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Unreachable, timed out, throttled past the retries, refused, or the items kept changing
    /// under contention.
    #[error("store unavailable: {operation} {failure}")]
    Unavailable {
        /// The store operation, such as `UpdateItem`.
        operation: &'static str,
        /// What went wrong: `timed out`, `refused: ThrottlingException`, …
        failure: Cow<'static, str>,
        #[source]
        source: Option<Cause>,
    },
    /// The store answered something this code cannot read.
    #[error("store answered something unexpected: {what}")]
    Corrupt {
        what: Cow<'static, str>,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    /// `operation` failed, in the words of `failure`.
    pub fn unavailable(operation: &'static str, failure: impl Into<Cow<'static, str>>) -> Self {
        StoreError::Unavailable {
            operation,
            failure: failure.into(),
            source: None,
        }
    }

    /// An answer that cannot be read, described by `what`.
    pub fn corrupt(what: impl Into<Cow<'static, str>>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source: None,
        }
    }

    /// The same error, caused by `cause`.
    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            StoreError::Unavailable { source, .. } | StoreError::Corrupt { source, .. } => {
                *source = Some(cause.into());
            }
        }
        self
    }
}

/// The rolling-window limiter. All-or-nothing: a request is counted under every check or none.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    async fn admit(&self, checks: &[LimitCheck], now_ms: u64) -> Result<Admission, StoreError>;

    /// Gives back the admission counted at `admitted_at_ms` under each of `checks` (the
    /// provider definitely placed nothing). A rolling limit finds that admission by its time
    /// and gives back nothing when it is not there (expired, or already given back); a UTC-day
    /// counter only counts, so each admission is refunded once, by the request that made it.
    async fn refund(&self, checks: &[LimitCheck], admitted_at_ms: u64) -> Result<(), StoreError>;
}

/// A response kept for replay under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// This request owns the key now; finish with `complete` or `release`.
    Started,
    /// The same request already finished: replay this.
    Replay(StoredResponse),
    /// The same request is still running.
    InProgress,
    /// The key was used with a different body.
    Mismatch,
}

/// How long a finished answer is replayed.
pub const IDEMPOTENCY_TTL_MS: u64 = DAY_MS;
/// How long an unfinished request holds its key before another may take it over (a crashed
/// instance must not block a key for a day). Longer than any provider call plus webhook.
pub const IDEMPOTENCY_LEASE_MS: u64 = 10 * 60 * 1000;

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request whose body hashes to `fingerprint`, or says why not.
    async fn begin(&self, key: &str, fingerprint: &str, now_ms: u64) -> Result<Begin, StoreError>;
    /// Stores the answer to replay and, in the same write, the webhook event of the call it
    /// answers (the outbox), so neither is kept without the other.
    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        event: Option<&Envelope>,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Gives the key back without an answer (the request ended before dispatch).
    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError>;
}

/// Seconds from `now_ms` until `at_ms`, rounded up.
pub fn secs_until(at_ms: u64, now_ms: u64) -> u64 {
    at_ms.saturating_sub(now_ms).div_ceil(1000)
}

/// The UTC day number of a time, for `Window::UtcDay` keys.
pub fn utc_day(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}
