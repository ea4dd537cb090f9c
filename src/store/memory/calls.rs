//! The memory store's call records: exact, in process. Records and the provider-id index live
//! in sharded maps that forget expired entries a few at a time (`sharded.rs`): creating a
//! record never walks every record (it did: one `retain` over all of them per call).
//!
//! Bounded: at most [`MAX_RECORDS`] records (and as many provider ids); past it the oldest
//! leave first. `CALL_RECORD_DAYS` keeps a record for 30 days: unbounded, a process under
//! steady load grew by ~1.6 GB per million calls, the limiter's state included
//! (docs/PERFORMANCE.md). The shared stores keep theirs outside.

use async_trait::async_trait;

use super::sharded::{Expiring, Sharded, SHARDS};
use super::MemoryStore;
use crate::store::{Advance, CallRecord, CallRecords, Change, Envelope, StoreError};

/// The most call records a memory store holds: a loaded server peaked at 30.0 MiB RSS with
/// this bound and at 54.7 MiB with 16,384, past issue 6's 32 MB (docs/PERFORMANCE.md); it is
/// ten minutes of status polling at 6 calls a second. A shard holds its share, so the oldest of a full shard
/// leaves for a new one.
pub(super) const MAX_RECORDS: usize = 4_096;
const RECORDS_PER_SHARD: usize = MAX_RECORDS / SHARDS;

/// Records by call id, and call ids by the provider's id.
#[derive(Default)]
pub(super) struct Calls {
    records: Sharded<CallRecord>,
    by_provider_id: Sharded<ProviderRef>,
}

/// A provider's id for a call: which record, and until when.
struct ProviderRef {
    call_id: String,
    expires_at_ms: u64,
}

impl Expiring for CallRecord {
    fn next_look(&self) -> u64 {
        self.expires_at_ms
    }

    fn settle(&mut self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }
}

impl Expiring for ProviderRef {
    fn next_look(&self) -> u64 {
        self.expires_at_ms
    }

    fn settle(&mut self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }
}

impl Calls {
    fn live(&self, call_id: &str, now_ms: u64) -> Option<&CallRecord> {
        self.records
            .get(self.records.id(call_id))
            .filter(|r| r.expires_at_ms > now_ms)
    }

    /// How many records are held (tests of the bounded tidy).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }
}

#[async_trait]
impl CallRecords for MemoryStore {
    async fn create(&self, record: CallRecord) -> Result<(), StoreError> {
        let mut calls = self.lock_calls();
        let now_ms = record.created_at_ms;
        let id = calls.records.id(&record.call_id);
        calls.records.tidy(id, now_ms);
        if calls.records.get(id).is_none() {
            calls.records.make_room(id, RECORDS_PER_SHARD);
        }
        if let Some(provider_call_id) = &record.provider_call_id {
            let provider = calls.by_provider_id.id(provider_call_id);
            calls.by_provider_id.tidy(provider, now_ms);
            if calls.by_provider_id.get(provider).is_none() {
                calls.by_provider_id.make_room(provider, RECORDS_PER_SHARD);
            }
            calls.by_provider_id.insert(
                provider,
                ProviderRef {
                    call_id: record.call_id.clone(),
                    expires_at_ms: record.expires_at_ms,
                },
            );
        }
        calls.records.get_or_insert_with(id, || record);
        Ok(())
    }

    async fn get(&self, call_id: &str, now_ms: u64) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.lock_calls().live(call_id, now_ms).cloned())
    }

    async fn find(
        &self,
        provider_call_id: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let calls = self.lock_calls();
        let provider = calls.by_provider_id.id(provider_call_id);
        Ok(calls
            .by_provider_id
            .get(provider)
            .filter(|r| calls.live(&r.call_id, now_ms).is_some())
            .map(|r| r.call_id.clone()))
    }

    async fn advance(
        &self,
        call_id: &str,
        change: &Change,
        event: Option<&Envelope>,
    ) -> Result<Advance, StoreError> {
        // One write, as far as any reader can tell: the record and the outbox locked together.
        let mut calls = self.lock_calls();
        let mut outbox = self.lock_outbox();
        let id = calls.records.id(call_id);
        let Some(record) = calls
            .records
            .get_mut(id)
            .filter(|r| r.expires_at_ms > change.at_ms)
        else {
            return Ok(Advance::Unknown);
        };
        if !record.moves_forward(change) {
            return Ok(Advance::Unchanged);
        }
        *record = record.with(change);
        if let Some(event) = event {
            outbox.insert(event, change.at_ms);
        }
        Ok(Advance::Applied(Box::new(record.clone())))
    }
}
