//! The rate limiter on DynamoDB (docs/API.md §5).
//!
//! # Limits: one item per key, one round trip in the common case
//! - A rolling limit is a short list `ts` of admission times (ms), at most `max` long, and a
//!   version `v` bumped by every write. Admission appends the current time with the condition
//!   `attribute_not_exists(ts) OR size(ts) < :max`. Entries are never removed on this path,
//!   so a full list may hold expired entries: the condition is then stricter than the rule,
//!   never looser.
//! - A UTC-day limit is a counter `n` under a key that carries the day: `ADD n :one` with
//!   `attribute_not_exists(n) OR n < :max`.
//! - One check is one `UpdateItem` (`ALL_NEW` on success, so the `RateLimit-*` figures are
//!   exact). Two or three checks are one `TransactWriteItems`, so a request is counted under
//!   every limit or none (a refusal consumes nothing), with the same conditions.
//! - A failed condition returns the item as it was (`ReturnValuesOnConditionCheckFailure =
//!   ALL_OLD`, per item in a transaction). From it the store decides exactly, as the memory
//!   store does: if `max` entries are still inside the window, the request is refused and
//!   `Retry-After` is the time until the blocking entry leaves the window, rounded up — one
//!   round trip. If the list is full only because of expired entries, a second write replaces
//!   the list with its live entries plus this admission, on the condition `v = :v` (the list
//!   is unchanged) — two round trips.
//! - Only contention (another instance rewrote the same list between our two writes, or a
//!   DynamoDB `TransactionConflict`) needs more: the store retries with what the failure
//!   returned, at most [`MAX_ATTEMPTS`] writes, then fails closed.
//! - Expiry is decided from the times in the item and `now`, inside the conditions or from the
//!   returned item, never from TTL deletion; `expires_at` only lets DynamoDB clean up.
//!
//! A transaction returns no item on success, so after a multi-limit admission the figures for
//! appended keys count this admission only (an upper bound of `remaining`); single-limit
//! admissions, refusals and `Retry-After` are exact.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::item::{n, number, number_list};
use super::limit_item::{Step, Verdict};
use super::{
    conditional, not_built, sdk_error, transaction, Conditional, DynamoStore, MAX_ATTEMPTS,
    PARTITION_KEY,
};
use crate::store::{Admission, LimitCheck, LimitStatus, RateLimiter, StoreError, Window};

/// Why an admission or refund gave up after [`MAX_ATTEMPTS`] writes.
const CONTENDED: &str = "gave up: the limit items kept changing under contention";

impl DynamoStore {
    async fn admit_one(&self, check: &LimitCheck, now_ms: u64) -> Result<Admission, StoreError> {
        let mut step = Step::Append;
        for _ in 0..MAX_ATTEMPTS {
            let write = self.write(check, &step, now_ms);
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(write.pk))
                .update_expression(write.update)
                .condition_expression(write.condition)
                .set_expression_attribute_values(Some(write.values))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match conditional("UpdateItem", sent)? {
                Conditional::Written(output) => {
                    let item = output
                        .attributes()
                        .ok_or_else(|| StoreError::corrupt("UpdateItem returned no item"))?;
                    let status = Self::status_from_item(check, item, now_ms)?;
                    return Ok(Admission::Admitted(vec![status]));
                }
                Conditional::Failed(old) => match Self::verdict(check, old.as_ref(), now_ms)? {
                    Verdict::Refuse(by) => return Ok(Admission::Refused { by }),
                    Verdict::Retry(next) => step = next,
                },
            }
        }
        Err(StoreError::unavailable("UpdateItem", CONTENDED))
    }

    async fn admit_all(&self, checks: &[LimitCheck], now_ms: u64) -> Result<Admission, StoreError> {
        let mut steps: Vec<Step> = vec![Step::Append; checks.len()];
        for _ in 0..MAX_ATTEMPTS {
            let mut items = Vec::with_capacity(checks.len());
            for (check, step) in checks.iter().zip(&steps) {
                let write = self.write(check, step, now_ms);
                let update = Update::builder()
                    .table_name(&self.table)
                    .key(PARTITION_KEY, AttributeValue::S(write.pk))
                    .update_expression(write.update)
                    .condition_expression(write.condition)
                    .set_expression_attribute_values(Some(write.values))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(not_built("TransactWriteItems"))?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let cancelled = match transaction(sent)? {
                Ok(_) => {
                    let statuses = checks
                        .iter()
                        .zip(&steps)
                        .map(|(check, step)| Self::status_after(check, step, now_ms))
                        .collect();
                    return Ok(Admission::Admitted(statuses));
                }
                Err(cancelled) => cancelled,
            };
            let reasons = &cancelled.reasons;
            if reasons.len() != checks.len() {
                return Err(StoreError::corrupt(
                    "transaction cancelled without one reason per item",
                )
                .caused_by(cancelled.error));
            }
            let mut refused_by: Option<LimitStatus> = None;
            let mut unexpected: Option<String> = None;
            for (i, (check, reason)) in checks.iter().zip(reasons).enumerate() {
                match reason.code() {
                    // Passed; cancelled because of another item. Same write again.
                    None | Some("None") => {}
                    Some("ConditionalCheckFailed") => {
                        match Self::verdict(check, reason.item(), now_ms)? {
                            Verdict::Refuse(status) => {
                                if refused_by.is_none_or(|r| status.reset_secs > r.reset_secs) {
                                    refused_by = Some(status);
                                }
                            }
                            Verdict::Retry(next) => steps[i] = next,
                        }
                    }
                    // Another transaction held the item, or it was throttled: try again
                    // with what we know.
                    Some("TransactionConflict")
                    | Some("ThrottlingError")
                    | Some("ProvisionedThroughputExceeded") => {}
                    Some(other) => {
                        unexpected = Some(other.to_string());
                        break;
                    }
                }
            }
            if let Some(code) = unexpected {
                return Err(StoreError::unavailable(
                    "TransactWriteItems",
                    format!("cancelled: {code}"),
                )
                .caused_by(cancelled.error));
            }
            if let Some(by) = refused_by {
                return Ok(Admission::Refused { by });
            }
        }
        Err(StoreError::unavailable("TransactWriteItems", CONTENDED))
    }
}

#[async_trait]
impl RateLimiter for DynamoStore {
    async fn admit(&self, checks: &[LimitCheck], now_ms: u64) -> Result<Admission, StoreError> {
        match checks {
            [] => Ok(Admission::Admitted(Vec::new())),
            [one] => self.admit_one(one, now_ms).await,
            _ => self.admit_all(checks, now_ms).await,
        }
    }

    async fn refund(&self, checks: &[LimitCheck], admitted_at_ms: u64) -> Result<(), StoreError> {
        for check in checks {
            self.refund_one(check, admitted_at_ms).await?;
        }
        Ok(())
    }
}

impl DynamoStore {
    /// A day counter: one conditional decrement. A rolling list: read it (consistent), then
    /// remove the entry at its index on the condition that the list is unchanged (`v = :v`),
    /// retrying under contention like an admission. Rare (only after a provider refusal), so
    /// two round trips are fine.
    async fn refund_one(&self, check: &LimitCheck, admitted_at_ms: u64) -> Result<(), StoreError> {
        let pk = self.limit_pk(check);
        if check.window == Window::UtcDay {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(pk))
                .update_expression("ADD n :minus")
                .condition_expression("n > :zero")
                .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
                .expression_attribute_values(":zero", n(0))
                .send()
                .await;
            // A failed condition: the counter is at zero already, nothing to give back.
            return conditional("UpdateItem", sent).map(|_| ());
        }
        for _ in 0..MAX_ATTEMPTS {
            let read = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(pk.clone()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| sdk_error("GetItem", error))?;
            let Some(item) = read.item() else {
                return Ok(());
            };
            let times = number_list(item, "ts")?;
            let Some(index) = times.iter().rposition(|&t| t == admitted_at_ms) else {
                return Ok(());
            };
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(pk.clone()))
                .update_expression(format!("REMOVE ts[{index}] ADD v :one"))
                .condition_expression("v = :v")
                .expression_attribute_values(":v", n(number(item, "v")?))
                .expression_attribute_values(":one", n(1))
                .send()
                .await;
            // A failed condition: the list changed since it was read; read it again.
            if let Conditional::Written(_) = conditional("UpdateItem", sent)? {
                return Ok(());
            }
        }
        Err(StoreError::unavailable("UpdateItem", CONTENDED))
    }
}
