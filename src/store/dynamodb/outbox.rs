//! The DynamoDB outbox (in progress: issue "Outbox"). Until it lands, every operation answers
//! "unavailable", so the call path delivers such events once, without the outbox.

use async_trait::async_trait;

use super::DynamoStore;
use crate::store::{Envelope, Outbox, OutboxItem, Settle, StoreError};

fn not_yet() -> StoreError {
    StoreError::unavailable("outbox", "is not built for DynamoDB yet")
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn enqueue(&self, _envelope: &Envelope, _now_ms: u64) -> Result<(), StoreError> {
        Err(not_yet())
    }

    async fn due(&self, _now_ms: u64, _limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        Err(not_yet())
    }

    async fn claim(
        &self,
        _id: &str,
        _now_ms: u64,
        _lease_ms: u64,
    ) -> Result<Option<OutboxItem>, StoreError> {
        Err(not_yet())
    }

    async fn settle(
        &self,
        _id: &str,
        _attempt: u32,
        _result: &Settle,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    async fn failed(&self, _limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        Err(not_yet())
    }

    async fn redeliver(&self, _id: &str, _now_ms: u64) -> Result<bool, StoreError> {
        Err(not_yet())
    }

    async fn get(&self, _id: &str) -> Result<Option<OutboxItem>, StoreError> {
        Err(not_yet())
    }
}
