//! Idempotency records on DynamoDB (docs/API.md §8).
//!
//! # Idempotency: one round trip to begin
//! `begin` is a conditional `PutItem` (no item, or its lease/record has expired by `exp_ms`)
//! that returns the old item when the condition fails; its fingerprint and state tell
//! `Replay`, `InProgress` and `Mismatch` apart. `complete` and `release` are conditional on
//! the fingerprint, like the memory store.
//!
//! # Completing with an event: one transaction
//! `complete` with a webhook event writes the answer and the outbox item in one
//! `TransactWriteItems` (the record's `UpdateItem` and the event's `PutItem`, each with its
//! own condition). When only one condition fails, the other write is made alone, so the event
//! is kept even when the record was taken over: see `write_done_with_event`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::item::{epoch_secs, n, string, Item};
use super::outbox::new_event;
use super::{
    conditional, not_built, outcome, transaction, Conditional, DynamoStore, Outcome, MAX_ATTEMPTS,
    PARTITION_KEY, TTL_ATTRIBUTE,
};
use crate::store::Envelope;
use crate::store::{
    Begin, IdempotencyStore, StoreError, StoredResponse, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";

/// Why `complete` gave up after [`MAX_ATTEMPTS`] transactions.
const CONTENDED: &str =
    "gave up: the idempotency record or the event kept changing under contention";

/// The write that completes a record: the answer to replay, on the condition that the record
/// still belongs to this request's body.
struct Done {
    pk: String,
    values: Item,
}

impl Done {
    const UPDATE: &'static str = "SET st = :done, resp = :resp, exp_ms = :exp, expires_at = :secs";
    const CONDITION: &'static str = "fp = :fp";
}

impl DynamoStore {
    fn done(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        now_ms: u64,
    ) -> Result<Done, StoreError> {
        let body = serde_json::to_string(response).map_err(|error| {
            StoreError::corrupt("an answer does not serialise").caused_by(error)
        })?;
        let expires = now_ms + IDEMPOTENCY_TTL_MS;
        let values: Item = [
            (":done", AttributeValue::S(DONE.into())),
            (":resp", AttributeValue::S(body)),
            (":exp", n(expires)),
            (":secs", n(epoch_secs(expires))),
            (
                ":fp",
                AttributeValue::S(self.hash("fingerprint", fingerprint)),
            ),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        Ok(Done {
            pk: self.idempotency_pk(key),
            values,
        })
    }

    /// The record alone: one conditional `UpdateItem`. A failed condition means the record
    /// was taken over by a request with another body (or is gone): nothing of ours to
    /// complete, as in the memory store.
    async fn write_done(&self, done: Done) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(done.pk))
            .update_expression(Done::UPDATE)
            .condition_expression(Done::CONDITION)
            .set_expression_attribute_values(Some(done.values))
            .send()
            .await;
        conditional("UpdateItem", sent).map(|_| ())
    }

    /// The record and the event in one `TransactWriteItems`: the record's update (as
    /// [`write_done`](Self::write_done)) and the event's put (as `enqueue`), so neither is
    /// kept without the other.
    ///
    /// A transaction is all or nothing, but the two conditions are independent rules, so a
    /// cancellation is resolved item by item, keeping the memory store's answer:
    /// - the record's condition failed (taken over by another body, or gone): the answer is
    ///   not ours to keep, but the event is: the call was placed and its receiver must hear
    ///   of it. The event is written alone (`PutItem`, a second round trip, rare).
    /// - the event is already kept (a retried `complete`): the record alone (`UpdateItem`).
    /// - both: nothing to write.
    /// - another transaction held an item, or throttling: the same transaction again, at
    ///   most [`MAX_ATTEMPTS`] in all, then the store is unavailable.
    async fn write_done_with_event(
        &self,
        done: Done,
        event: &Envelope,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let update = Update::builder()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(done.pk.clone()))
                .update_expression(Done::UPDATE)
                .condition_expression(Done::CONDITION)
                .set_expression_attribute_values(Some(done.values.clone()))
                .build()
                .map_err(not_built("TransactWriteItems"))?;
            let put = new_event(event, now_ms).into_put(&self.table)?;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(update).build())
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await;
            let cancelled = match transaction(sent)? {
                Ok(_) => return Ok(()),
                Err(cancelled) => cancelled,
            };
            let reasons = cancelled.reasons.as_slice();
            let outcomes = match reasons {
                [record, event] => {
                    outcome(record.code()).and_then(|r| Ok((r, outcome(event.code())?)))
                }
                _ => {
                    return Err(StoreError::corrupt(
                        "transaction cancelled without one reason per item",
                    )
                    .caused_by(cancelled.error))
                }
            };
            match outcomes {
                Err(code) => {
                    return Err(StoreError::unavailable(
                        "TransactWriteItems",
                        format!("cancelled: {code}"),
                    )
                    .caused_by(cancelled.error))
                }
                Ok((Outcome::ConditionFailed, Outcome::Passed)) => {
                    return self.put_event(event, now_ms).await
                }
                Ok((Outcome::Passed, Outcome::ConditionFailed)) => {
                    return self.write_done(done).await
                }
                Ok((Outcome::ConditionFailed, Outcome::ConditionFailed)) => return Ok(()),
                // Contended (or, impossibly, cancelled with both conditions holding): again.
                Ok(_) => {}
            }
        }
        Err(StoreError::unavailable("TransactWriteItems", CONTENDED))
    }
}

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
        let done = self.done(key, fingerprint, response, now_ms)?;
        match event {
            None => self.write_done(done).await,
            Some(event) => self.write_done_with_event(done, event, now_ms).await,
        }
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
