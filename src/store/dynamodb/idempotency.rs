//! Idempotency records on DynamoDB (docs/API.md §8).
//!
//! # Idempotency: one round trip to begin
//! `begin` is a conditional `PutItem` (no item, or its lease/record has expired by `exp_ms`)
//! that returns the old item when the condition fails; its fingerprint and state tell
//! `Replay`, `InProgress` and `Mismatch` apart. `complete` and `release` are conditional on
//! the fingerprint, like the memory store.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use super::item::{epoch_secs, n, string};
use super::{conditional, Conditional, DynamoStore, PARTITION_KEY, TTL_ATTRIBUTE};
use crate::store::Envelope;
use crate::store::{
    Begin, IdempotencyStore, StoreError, StoredResponse, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn begin(&self, key: &str, fingerprint: &str, now_ms: u64) -> Result<Begin, StoreError> {
        let fp = self.hash("fingerprint", fingerprint);
        let lease_until = now_ms + IDEMPOTENCY_LEASE_MS;
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(self.idempotency_pk(key)))
            .item("fp", AttributeValue::S(fp.clone()))
            .item("st", AttributeValue::S(IN_PROGRESS.into()))
            .item("exp_ms", n(lease_until))
            .item(TTL_ATTRIBUTE, n(epoch_secs(lease_until)))
            .condition_expression("attribute_not_exists(pk) OR exp_ms <= :now")
            .expression_attribute_values(":now", n(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match conditional("PutItem", sent)? {
            Conditional::Written(_) => return Ok(Begin::Started),
            Conditional::Failed(Some(old)) => old,
            Conditional::Failed(None) => {
                return Err(StoreError::corrupt("a failed begin returned no item"))
            }
        };
        if string(&old, "fp")? != fp {
            return Ok(Begin::Mismatch);
        }
        match string(&old, "st")? {
            IN_PROGRESS => Ok(Begin::InProgress),
            DONE => {
                let response: StoredResponse = serde_json::from_str(string(&old, "resp")?)
                    .map_err(|error| {
                        StoreError::corrupt("a stored answer does not parse").caused_by(error)
                    })?;
                Ok(Begin::Replay(response))
            }
            _ => Err(StoreError::corrupt(
                "an idempotency record has an unknown state",
            )),
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        event: Option<&Envelope>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if event.is_some() {
            // The DynamoDB outbox is not written yet (issue "Outbox", in progress).
            return Err(StoreError::unavailable(
                "TransactWriteItems",
                "the DynamoDB outbox is not built yet",
            ));
        }
        let body = serde_json::to_string(response).map_err(|error| {
            StoreError::corrupt("an answer does not serialise").caused_by(error)
        })?;
        let expires = now_ms + IDEMPOTENCY_TTL_MS;
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(self.idempotency_pk(key)))
            .update_expression("SET st = :done, resp = :resp, exp_ms = :exp, expires_at = :secs")
            .condition_expression("fp = :fp")
            .expression_attribute_values(":done", AttributeValue::S(DONE.into()))
            .expression_attribute_values(":resp", AttributeValue::S(body))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":secs", n(epoch_secs(expires)))
            .expression_attribute_values(
                ":fp",
                AttributeValue::S(self.hash("fingerprint", fingerprint)),
            )
            .send()
            .await;
        // A failed condition: taken over by a request with another body, nothing of ours to
        // complete.
        conditional("UpdateItem", sent).map(|_| ())
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let sent = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(self.idempotency_pk(key)))
            .condition_expression("fp = :fp AND st = :in_progress")
            .expression_attribute_values(
                ":fp",
                AttributeValue::S(self.hash("fingerprint", fingerprint)),
            )
            .expression_attribute_values(":in_progress", AttributeValue::S(IN_PROGRESS.into()))
            .send()
            .await;
        // A failed condition: not ours, or already finished; nothing to release.
        conditional("DeleteItem", sent).map(|_| ())
    }
}
