//! The memory store's outbox: exact, in process, not durable.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;

use super::MemoryStore;
use crate::store::outbox::OUTBOX_RETENTION_MS;
use crate::store::{Envelope, Outbox, OutboxItem, OutboxState, Settle, StoreError};

/// Events past their retention leaving per insert: bounded work on the request path.
pub(super) const FORGET_PER_INSERT: usize = 8;

/// The events by id, and their ids in the order they were written (the oldest leave first).
#[derive(Default)]
pub(super) struct Events {
    pub(super) items: BTreeMap<String, OutboxItem>,
    order: VecDeque<(u64, String)>,
}

impl Events {
    /// Adds `envelope` as pending unless its id is there; forgets a few events past their
    /// retention (the oldest first, never a sweep over all of them).
    pub(super) fn insert(&mut self, envelope: &Envelope, now_ms: u64) {
        for _ in 0..FORGET_PER_INSERT {
            match self.order.front() {
                Some((created, _)) if created + OUTBOX_RETENTION_MS <= now_ms => {}
                _ => break,
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.items.remove(&id);
            }
        }
        if self.items.contains_key(&envelope.id) {
            return;
        }
        self.items.insert(
            envelope.id.clone(),
            OutboxItem {
                envelope: envelope.clone(),
                state: OutboxState::Pending,
                attempts: 0,
                due_at_ms: now_ms,
                lease_until_ms: 0,
                created_at_ms: now_ms,
                last_error: None,
            },
        );
        self.order.push_back((now_ms, envelope.id.clone()));
    }
}

fn claimable(item: &OutboxItem, now_ms: u64) -> bool {
    item.state == OutboxState::Pending && item.due_at_ms <= now_ms && item.lease_until_ms <= now_ms
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn enqueue(&self, envelope: &Envelope, now_ms: u64) -> Result<(), StoreError> {
        self.lock_outbox().insert(envelope, now_ms);
        Ok(())
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let outbox = self.lock_outbox();
        let mut due: Vec<OutboxItem> = outbox
            .items
            .values()
            .filter(|item| claimable(item, now_ms))
            .cloned()
            .collect();
        due.sort_by_key(|item| (item.due_at_ms, item.created_at_ms));
        due.truncate(limit);
        Ok(due)
    }

    async fn claim(
        &self,
        id: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let mut outbox = self.lock_outbox();
        let Some(item) = outbox
            .items
            .get_mut(id)
            .filter(|item| claimable(item, now_ms))
        else {
            return Ok(None);
        };
        item.attempts += 1;
        item.lease_until_ms = now_ms + lease_ms;
        Ok(Some(item.clone()))
    }

    async fn settle(
        &self,
        id: &str,
        attempt: u32,
        result: &Settle,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut outbox = self.lock_outbox();
        let Some(item) = outbox
            .items
            .get_mut(id)
            .filter(|item| item.state == OutboxState::Pending && item.attempts == attempt)
        else {
            return Ok(false);
        };
        item.lease_until_ms = 0;
        match result {
            Settle::Delivered => {
                item.state = OutboxState::Delivered;
                item.last_error = None;
            }
            Settle::RetryAt { due_at_ms, error } => {
                item.due_at_ms = *due_at_ms;
                item.last_error = Some(error.clone());
            }
            Settle::Failed { error } => {
                item.state = OutboxState::Failed;
                item.last_error = Some(error.clone());
            }
        }
        Ok(true)
    }

    async fn failed(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let outbox = self.lock_outbox();
        let mut failed: Vec<OutboxItem> = outbox
            .items
            .values()
            .filter(|item| item.state == OutboxState::Failed)
            .cloned()
            .collect();
        failed.sort_by_key(|item| std::cmp::Reverse(item.created_at_ms));
        failed.truncate(limit);
        Ok(failed)
    }

    async fn redeliver(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut outbox = self.lock_outbox();
        let Some(item) = outbox
            .items
            .get_mut(id)
            .filter(|item| item.state != OutboxState::Pending)
        else {
            return Ok(false);
        };
        item.state = OutboxState::Pending;
        item.attempts = 0;
        item.due_at_ms = now_ms;
        item.lease_until_ms = 0;
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<OutboxItem>, StoreError> {
        Ok(self.lock_outbox().items.get(id).cloned())
    }
}
