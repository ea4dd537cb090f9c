//! The memory store's call records: exact, in process.

use std::collections::HashMap;

use async_trait::async_trait;

use super::MemoryStore;
use crate::store::{Advance, CallRecord, CallRecords, Change, Envelope, StoreError};

/// Records by call id, and call ids by the provider's id.
#[derive(Default)]
pub(super) struct Calls {
    records: HashMap<String, CallRecord>,
    by_provider_id: HashMap<String, String>,
}

impl Calls {
    fn prune(&mut self, now_ms: u64) {
        self.records.retain(|_, r| r.expires_at_ms > now_ms);
        let records = &self.records;
        self.by_provider_id.retain(|_, id| records.contains_key(id));
    }
}

#[async_trait]
impl CallRecords for MemoryStore {
    async fn create(&self, record: &CallRecord) -> Result<(), StoreError> {
        let mut calls = self.lock_calls();
        calls.prune(record.created_at_ms);
        if let Some(id) = &record.provider_call_id {
            calls
                .by_provider_id
                .insert(id.clone(), record.call_id.clone());
        }
        calls
            .records
            .entry(record.call_id.clone())
            .or_insert_with(|| record.clone());
        Ok(())
    }

    async fn get(&self, call_id: &str, now_ms: u64) -> Result<Option<CallRecord>, StoreError> {
        let calls = self.lock_calls();
        Ok(calls
            .records
            .get(call_id)
            .filter(|r| r.expires_at_ms > now_ms)
            .cloned())
    }

    async fn find(
        &self,
        provider_call_id: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let calls = self.lock_calls();
        Ok(calls
            .by_provider_id
            .get(provider_call_id)
            .filter(|id| {
                calls
                    .records
                    .get(*id)
                    .is_some_and(|r| r.expires_at_ms > now_ms)
            })
            .cloned())
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
        let Some(record) = calls
            .records
            .get_mut(call_id)
            .filter(|r| r.expires_at_ms > change.at_ms)
        else {
            return Ok(Advance::Unknown);
        };
        if !record.moves_forward(change) {
            return Ok(Advance::Unchanged);
        }
        *record = record.with(change);
        if let Some(event) = event {
            super::outbox::insert(&mut outbox, event, change.at_ms);
        }
        Ok(Advance::Applied(Box::new(record.clone())))
    }
}
