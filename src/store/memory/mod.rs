//! The in-memory store: exact, and right for one process (`cargo run`, tests). Serverless
//! instances share no memory, so production on this store must be chosen explicitly
//! (docs/API.md §5) and health says so.

mod calls;
mod outbox;
mod sharded;

use std::sync::Mutex;

use async_trait::async_trait;
use smallvec::SmallVec;

use sharded::{Expiring, Sharded};

use super::{
    secs_until, Admission, Begin, Envelope, IdempotencyStore, LimitCheck, LimitStatus, RateLimiter,
    StoreError, StoredResponse, Window, DAY_MS, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

/// Limits, idempotency records and the outbox of one process. The outbox is not durable: a
/// process that stops loses the events it has not delivered (docs/API.md §9).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    outbox: Mutex<outbox::Events>,
    calls: Mutex<calls::Calls>,
}

/// Limits and idempotency records, in maps that grow and shrink a little on every operation
/// (`sharded.rs`), so memory follows the live keys and no request pays for the whole state.
#[derive(Default)]
struct Inner {
    counters: Sharded<Counter>,
    records: Sharded<Record>,
}

enum Counter {
    /// Admission times, oldest first, each within the window (up to four inline: the usual
    /// limits hold no heap allocation).
    Rolling {
        window_ms: u64,
        times: SmallVec<[u64; 4]>,
    },
    /// A count for one UTC day, ending at `ends_ms`.
    Day { count: u32, ends_ms: u64 },
}

struct Record {
    fingerprint: String,
    state: RecordState,
}

enum RecordState {
    InProgress {
        lease_until_ms: u64,
    },
    Done {
        response: StoredResponse,
        expires_ms: u64,
    },
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied admission (all mutation
        // happens after every check), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, calls::Calls> {
        // Every change is one assignment under the lock: nothing half-applied.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_outbox(&self) -> std::sync::MutexGuard<'_, outbox::Events> {
        // Every outbox change is one assignment under the lock: nothing half-applied.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many keys the store holds (limits and idempotency), for tests of the sweep.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.counters.len() + inner.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Counter {
    fn prune(&mut self, now_ms: u64) {
        match self {
            Counter::Rolling { window_ms, times } => {
                let gone = times
                    .iter()
                    .take_while(|&&t| t + *window_ms <= now_ms)
                    .count();
                if gone > 0 {
                    times.drain(..gone);
                }
            }
            Counter::Day { count, ends_ms } => {
                if *ends_ms <= now_ms {
                    *count = 0;
                }
            }
        }
    }

    fn is_idle(&self) -> bool {
        match self {
            Counter::Rolling { times, .. } => times.is_empty(),
            Counter::Day { count, .. } => *count == 0,
        }
    }
}

impl Expiring for Counter {
    fn next_look(&self) -> u64 {
        match self {
            // Idle once its newest admission leaves the window.
            Counter::Rolling { window_ms, times } => times.last().map_or(0, |t| t + window_ms),
            Counter::Day { ends_ms, .. } => *ends_ms,
        }
    }

    fn settle(&mut self, now_ms: u64) -> bool {
        self.prune(now_ms);
        !self.is_idle()
    }
}

impl Record {
    fn expires_ms(&self) -> u64 {
        match &self.state {
            RecordState::InProgress { lease_until_ms } => *lease_until_ms,
            RecordState::Done { expires_ms, .. } => *expires_ms,
        }
    }
}

impl Expiring for Record {
    fn next_look(&self) -> u64 {
        self.expires_ms()
    }

    fn settle(&mut self, now_ms: u64) -> bool {
        self.expires_ms() > now_ms
    }
}

#[async_trait]
impl RateLimiter for MemoryStore {
    async fn admit(&self, checks: &[LimitCheck], now_ms: u64) -> Result<Admission, StoreError> {
        let mut inner = self.lock();
        let ids: SmallVec<[_; 4]> = checks.iter().map(|c| inner.counters.id(&c.key)).collect();
        for &id in &ids {
            inner.counters.tidy(id, now_ms);
        }

        // Decide under one lock, before changing anything: all or nothing.
        let mut refused: Option<LimitStatus> = None;
        for (check, &id) in checks.iter().zip(&ids) {
            let counter = inner
                .counters
                .get_or_insert_with(id, || new_counter(check.window, now_ms));
            counter.prune(now_ms);
            let (count, free_at) = match counter {
                Counter::Rolling { window_ms, times } => {
                    let n = times.len();
                    let max = check.max as usize;
                    // The slot frees when enough old admissions leave the window that one more
                    // fits: the (n - max)th oldest.
                    let free_at = if n >= max && max > 0 {
                        times[n - max] + *window_ms
                    } else {
                        now_ms
                    };
                    (n as u64, free_at)
                }
                Counter::Day { count, ends_ms } => (*count as u64, *ends_ms),
            };
            if count >= check.max as u64 {
                let status = LimitStatus {
                    kind: check.kind,
                    limit: check.max,
                    remaining: 0,
                    reset_secs: secs_until(free_at, now_ms).max(1),
                };
                if refused.is_none_or(|r| status.reset_secs > r.reset_secs) {
                    refused = Some(status);
                }
            }
        }
        if let Some(by) = refused {
            return Ok(Admission::Refused { by });
        }

        let mut statuses = Vec::with_capacity(checks.len());
        for (check, &id) in checks.iter().zip(&ids) {
            let Some(counter) = inner.counters.get_mut(id) else {
                return Err(StoreError::corrupt("counter vanished under lock"));
            };
            let (count, reset_at) = match counter {
                Counter::Rolling { window_ms, times } => {
                    times.push(now_ms);
                    let oldest = times.first().copied().unwrap_or(now_ms);
                    (times.len() as u32, oldest + *window_ms)
                }
                Counter::Day { count, ends_ms } => {
                    *count += 1;
                    (*count, *ends_ms)
                }
            };
            statuses.push(LimitStatus {
                kind: check.kind,
                limit: check.max,
                remaining: check.max.saturating_sub(count),
                reset_secs: secs_until(reset_at, now_ms),
            });
        }
        Ok(Admission::Admitted(statuses))
    }

    async fn refund(&self, checks: &[LimitCheck], admitted_at_ms: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for check in checks {
            let id = inner.counters.id(&check.key);
            match inner.counters.get_mut(id) {
                Some(Counter::Rolling { times, .. }) => {
                    if let Some(at) = times.iter().rposition(|&t| t == admitted_at_ms) {
                        times.remove(at);
                    }
                }
                Some(Counter::Day { count, ends_ms }) if admitted_at_ms < *ends_ms => {
                    *count = count.saturating_sub(1);
                }
                Some(Counter::Day { .. }) | None => {}
            }
        }
        Ok(())
    }
}

fn new_counter(window: Window, now_ms: u64) -> Counter {
    match window {
        Window::Rolling { ms } => Counter::Rolling {
            window_ms: ms,
            times: SmallVec::new(),
        },
        Window::UtcDay => Counter::Day {
            count: 0,
            ends_ms: (now_ms / DAY_MS + 1) * DAY_MS,
        },
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin(&self, key: &str, fingerprint: &str, now_ms: u64) -> Result<Begin, StoreError> {
        let mut inner = self.lock();
        let id = inner.records.id(key);
        inner.records.tidy(id, now_ms);
        if let Some(record) = inner.records.get(id) {
            let live = match &record.state {
                RecordState::InProgress { lease_until_ms } => *lease_until_ms > now_ms,
                RecordState::Done { expires_ms, .. } => *expires_ms > now_ms,
            };
            if live {
                if record.fingerprint != fingerprint {
                    return Ok(Begin::Mismatch);
                }
                return Ok(match &record.state {
                    RecordState::InProgress { .. } => Begin::InProgress,
                    RecordState::Done { response, .. } => Begin::Replay(response.clone()),
                });
            }
        }
        inner.records.insert(
            id,
            Record {
                fingerprint: fingerprint.to_string(),
                state: RecordState::InProgress {
                    lease_until_ms: now_ms + IDEMPOTENCY_LEASE_MS,
                },
            },
        );
        Ok(Begin::Started)
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        event: Option<&Envelope>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        // One write, as far as any reader can tell: both locks are held together.
        let mut inner = self.lock();
        let mut outbox = self.lock_outbox();
        let id = inner.records.id(key);
        if let Some(record) = inner.records.get_mut(id) {
            if record.fingerprint == fingerprint {
                record.state = RecordState::Done {
                    response: response.clone(),
                    expires_ms: now_ms + IDEMPOTENCY_TTL_MS,
                };
            }
        }
        if let Some(event) = event {
            outbox.insert(event, now_ms);
        }
        Ok(())
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let id = inner.records.id(key);
        let owned = inner.records.get(id).is_some_and(|r| {
            r.fingerprint == fingerprint && matches!(r.state, RecordState::InProgress { .. })
        });
        if owned {
            inner.records.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LimitKind;

    #[tokio::test]
    async fn idle_keys_are_swept_so_memory_follows_live_keys() {
        let store = MemoryStore::new();
        for i in 0..100u64 {
            let check = LimitCheck {
                kind: LimitKind::Ip,
                key: format!("ip:{i}"),
                max: 3,
                window: Window::Rolling { ms: 1000 },
            };
            store.admit(&[check], 0).await.unwrap();
        }
        assert_eq!(store.len(), 100);
        let mut inner = store.lock();
        inner.counters.settle_all(1000);
        inner.records.settle_all(1000);
        drop(inner);
        assert!(store.is_empty());
    }

    fn record(call_id: &str, created_at_ms: u64, expires_at_ms: u64) -> crate::store::CallRecord {
        crate::store::CallRecord {
            call_id: call_id.to_string(),
            provider: "dry-run".into(),
            provider_call_id: Some(format!("dry-run-{call_id}")),
            to_masked: "+351******678".into(),
            source: "api".into(),
            status: crate::store::CallStatus::Initiated,
            created_at_ms,
            updated_at_ms: created_at_ms,
            history: Vec::new(),
            duration_secs: None,
            end_reason: None,
            summary: None,
            successful: None,
            token_hash: String::new(),
            expires_at_ms,
        }
    }

    #[tokio::test]
    async fn call_records_are_bounded_and_the_oldest_leave_first() {
        use crate::store::CallRecords;
        let store = MemoryStore::new();
        let made = 2 * calls::MAX_RECORDS as u64;
        for i in 0..made {
            // Live for the whole test: only the bound can make them leave.
            store
                .create(record(&format!("call-{i}"), i, 1_000_000_000 + i))
                .await
                .unwrap();
        }
        let held = store.lock_calls().len();
        assert!(
            held <= calls::MAX_RECORDS && held > calls::MAX_RECORDS * 9 / 10,
            "{held}"
        );
        assert!(
            store.get("call-0", made).await.unwrap().is_none(),
            "oldest gone"
        );
        assert!(store.find("dry-run-call-0", made).await.unwrap().is_none());
        let newest = format!("call-{}", made - 1);
        assert!(
            store.get(&newest, made).await.unwrap().is_some(),
            "newest kept"
        );
        assert_eq!(
            store
                .find(&format!("dry-run-{newest}"), made)
                .await
                .unwrap()
                .as_deref(),
            Some(newest.as_str())
        );
    }

    #[tokio::test]
    async fn expired_call_records_leave_a_few_per_new_call_and_stay_unreadable() {
        use crate::store::CallRecords;
        let store = MemoryStore::new();
        for i in 0..1000u64 {
            store
                .create(record(&format!("old-{i}"), i, 10_000))
                .await
                .unwrap();
        }
        // Well under the bound (`calls::MAX_RECORDS`), so only expiry can make them leave.
        assert_eq!(store.lock_calls().len(), 1000);
        // Past their expiry they are not readable, even before they leave.
        assert!(store.get("old-7", 10_000).await.unwrap().is_none());
        assert!(store.find("dry-run-old-7", 10_000).await.unwrap().is_none());
        // One new call does not walk them all (the old code did: one retain per call)…
        store.create(record("new-0", 20_000, 99_000)).await.unwrap();
        let after_one = store.lock_calls().len();
        assert!(after_one > 1000 - 20, "{after_one}");
        // …and steady calls forget them all.
        for i in 1..1000u64 {
            store
                .create(record(&format!("new-{i}"), 20_000 + i, 99_000))
                .await
                .unwrap();
        }
        assert_eq!(
            store.lock_calls().len(),
            1000,
            "only the new records are left"
        );
        assert!(store.get("new-5", 30_000).await.unwrap().is_some());
        assert_eq!(
            store
                .find("dry-run-new-5", 30_000)
                .await
                .unwrap()
                .as_deref(),
            Some("new-5")
        );
    }

    #[tokio::test]
    async fn events_past_their_retention_leave_a_few_per_new_event() {
        use crate::store::outbox::OUTBOX_RETENTION_MS;
        let store = MemoryStore::new();
        let envelope = |id: String| Envelope {
            id,
            body: "{}".into(),
        };
        for i in 0..100u64 {
            store.lock_outbox().insert(&envelope(format!("old-{i}")), i);
        }
        let later = OUTBOX_RETENTION_MS + 1000;
        store.lock_outbox().insert(&envelope("new-0".into()), later);
        assert_eq!(
            store.lock_outbox().items.len(),
            101 - outbox::FORGET_PER_INSERT
        );
        for i in 1..20u64 {
            store
                .lock_outbox()
                .insert(&envelope(format!("new-{i}")), later + i);
        }
        assert_eq!(
            store.lock_outbox().items.len(),
            20,
            "only the new events are left"
        );
        assert!(store.lock_outbox().items.contains_key("new-0"));
    }
}
