//! Call records on DynamoDB (docs/API.md §15), in the same table as everything else.
//!
//! # The items
//! - The record: `pk` = `call#<call id>` ([`CALL_KEY_PREFIX`]; call ids are random UUIDs, not
//!   hashed). Its fields as attributes (below), the status's `rank` (N), a `version` (N, 0 when
//!   created, +1 per change) for optimistic concurrency, the end of its life in milliseconds
//!   (`exp_ms`) and as the TTL attribute `expires_at` (epoch seconds, rounded up). Only the
//!   masked number is ever in it (the record has no other).
//! - The way back from the provider's id: `pk` = `callref#<provider call id>`
//!   ([`CALL_REF_KEY_PREFIX`](super::CALL_REF_KEY_PREFIX)) → `call_id`, with the record's
//!   `exp_ms` and `expires_at`.
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `provider`, `source`, `to_masked`, `token_hash` | S | as in [`CallRecord`] |
//! | `provider_call_id` | S | absent when the provider gave none |
//! | `st` | S | the status (`initiated`, `ringing`, …) |
//! | `rank` | N | [`CallStatus::rank`](crate::store::CallStatus::rank) of `st` (for operators: conditions use `version`) |
//! | `created_at`, `updated_at` | N | ms |
//! | `history` | L | of M `{st: S, at: N}`, oldest first |
//! | `duration_secs` | N | absent until known |
//! | `end_reason`, `summary`, `successful` | S | absent until known |
//! | `exp_ms` | N | ms: when the record is forgotten; a read at or after it finds nothing |
//! | `version` | N | changes written so far |
//! | `expires_at` | N | TTL, epoch seconds: `exp_ms` rounded up — cleanup only |
//!
//! An id too long for a key (more than [`MAX_KEY_BYTES`](super::MAX_KEY_BYTES) with its
//! prefix) cannot be in the table: reading or advancing such a call finds nothing, and a
//! provider id that long gets no way back (its record is still kept).
//!
//! # Operations
//! - `create`: the record's `PutItem` on `attribute_not_exists(pk) OR exp_ms <= :now` (a live
//!   record is never overwritten: the first one stays); with a provider id, one
//!   `TransactWriteItems` with the way back (an unconditional `Put`: a provider id used again
//!   points at its latest call, as in the memory store), so neither is kept without the other.
//!   When a live record is there, nothing is written — not even the way back, which the
//!   memory store would still point at the call: only a second `create` of one call with
//!   another provider id tells the two apart, and nothing does that.
//! - `get`, `find`: one consistent `GetItem` each; an item past `exp_ms` that TTL has not
//!   deleted yet reads as none. The way back carries the record's own `exp_ms`, so `find` needs
//!   no second read to know the record is live.
//! - `advance`: a consistent `GetItem`, then — unless the record is unknown, expired, or the
//!   change does not move it forward ([`CallRecord::moves_forward`]) — an `UpdateItem` on
//!   `version = :version AND exp_ms > :at` that sets the new status, rank and time, appends the
//!   step to `history`, sets what the change knows (duration, end reason, summary, success)
//!   and bumps `version`; with an event, that update and the event's `Put` (the outbox's own,
//!   [`new_event`], at the change's time) in one `TransactWriteItems`. Every attribute is
//!   named through `#name` in these expressions (`rank` is a reserved word).
//!
//! # When the version moved
//! A failed version condition means another change won in between. The update asks for the
//! item as it was (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), so the change is decided
//! again on that item without reading it again: usually `Unchanged` (a final status never
//! changes). A `TransactionConflict` or throttling reads again. At most [`MAX_ATTEMPTS`]
//! writes, then the store is unavailable. When only the event's condition failed (an event
//! of that id is kept already: a retried `advance`), the record's update is written alone
//! (`UpdateItem`), as `complete` does for its answer.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::item::{epoch_secs, n, number, optional_number, optional_string, string, Item};
use super::outbox::new_event;
use super::{
    conditional, not_built, outcome, sdk_error, transaction, Conditional, DynamoStore, Outcome,
    CALL_KEY_PREFIX, MAX_ATTEMPTS, PARTITION_KEY, TTL_ATTRIBUTE,
};
use crate::store::{
    Advance, CallRecord, CallRecords, CallStatus, Change, Envelope, Step, StoreError,
};

/// Why `create` or `advance` gave up after [`MAX_ATTEMPTS`] writes.
const CONTENDED: &str = "gave up: the call record kept changing under contention";

/// Writes a record only where none is live at `:now` (none there, or one TTL has not deleted).
const NEW_RECORD: &str = "attribute_not_exists(pk) OR exp_ms <= :now";

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn status(value: CallStatus) -> AttributeValue {
    text(value.as_str())
}

fn step(step: &Step) -> AttributeValue {
    AttributeValue::M(
        [
            ("st".to_string(), status(step.status)),
            ("at".to_string(), n(step.at_ms)),
        ]
        .into(),
    )
}

/// The item of a new record (version 0).
fn record_item(pk: String, record: &CallRecord) -> Item {
    let mut item: Item = [
        (PARTITION_KEY, AttributeValue::S(pk)),
        ("provider", text(&record.provider)),
        ("to_masked", text(&record.to_masked)),
        ("source", text(&record.source)),
        ("st", status(record.status)),
        ("rank", n(record.status.rank().into())),
        ("created_at", n(record.created_at_ms)),
        ("updated_at", n(record.updated_at_ms)),
        (
            "history",
            AttributeValue::L(record.history.iter().map(step).collect()),
        ),
        ("token_hash", text(&record.token_hash)),
        ("exp_ms", n(record.expires_at_ms)),
        ("version", n(0)),
        (TTL_ATTRIBUTE, n(epoch_secs(record.expires_at_ms))),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    let optional = [
        (
            "provider_call_id",
            record.provider_call_id.as_deref().map(text),
        ),
        ("duration_secs", record.duration_secs.map(n)),
        ("end_reason", record.end_reason.as_deref().map(text)),
        ("summary", record.summary.as_deref().map(text)),
        ("successful", record.successful.as_deref().map(text)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_string(), value);
        }
    }
    item
}

/// The way back from the provider's id to `record`.
fn ref_item(pk: String, record: &CallRecord) -> Item {
    [
        (PARTITION_KEY, AttributeValue::S(pk)),
        ("call_id", text(&record.call_id)),
        ("exp_ms", n(record.expires_at_ms)),
        (TTL_ATTRIBUTE, n(epoch_secs(record.expires_at_ms))),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn parse_status(value: &str) -> Result<CallStatus, StoreError> {
    CallStatus::parse(value)
        .ok_or_else(|| StoreError::corrupt("a call record has an unknown status"))
}

fn history(item: &Item) -> Result<Vec<Step>, StoreError> {
    let Some(AttributeValue::L(steps)) = item.get("history") else {
        return Err(StoreError::corrupt("call attribute history is missing"));
    };
    steps
        .iter()
        .map(|value| match value {
            AttributeValue::M(entry) => Ok(Step {
                status: parse_status(string(entry, "st")?)?,
                at_ms: number(entry, "at")?,
            }),
            _ => Err(StoreError::corrupt("call history holds a non-step")),
        })
        .collect()
}

/// A record item read back, and its version.
fn call_record(item: &Item) -> Result<(CallRecord, u64), StoreError> {
    let call_id = string(item, PARTITION_KEY)?
        .strip_prefix(CALL_KEY_PREFIX)
        .ok_or_else(|| StoreError::corrupt("a call record has another kind of key"))?;
    let record = CallRecord {
        call_id: call_id.to_string(),
        provider: string(item, "provider")?.to_string(),
        provider_call_id: optional_string(item, "provider_call_id")?,
        to_masked: string(item, "to_masked")?.to_string(),
        source: string(item, "source")?.to_string(),
        status: parse_status(string(item, "st")?)?,
        created_at_ms: number(item, "created_at")?,
        updated_at_ms: number(item, "updated_at")?,
        history: history(item)?,
        duration_secs: optional_number(item, "duration_secs")?,
        end_reason: optional_string(item, "end_reason")?,
        summary: optional_string(item, "summary")?,
        successful: optional_string(item, "successful")?,
        token_hash: string(item, "token_hash")?.to_string(),
        expires_at_ms: number(item, "exp_ms")?,
    };
    Ok((record, number(item, "version")?))
}

/// The update that moves a record of `version` forward by `change`: only that version, only
/// while the record lives at the change's time. Every attribute is named through `#name`
/// (`rank` is a reserved word in expressions).
struct Move {
    pk: String,
    update: String,
    names: HashMap<String, String>,
    values: Item,
}

impl Move {
    const CONDITION: &'static str = "#version = :version AND #exp_ms > :at";

    fn new(pk: String, version: u64, change: &Change) -> Move {
        let mut update = String::from(
            "SET #st = :st, #rank = :rank, #updated_at = :at, \
             #history = list_append(#history, :step), #version = #version + :one",
        );
        let mut names: HashMap<String, String> =
            ["st", "rank", "updated_at", "history", "version", "exp_ms"]
                .into_iter()
                .map(|name| (format!("#{name}"), name.to_string()))
                .collect();
        let mut values: Item = [
            (":st", status(change.status)),
            (":rank", n(change.status.rank().into())),
            (":at", n(change.at_ms)),
            (
                ":step",
                AttributeValue::L(vec![step(&Step {
                    status: change.status,
                    at_ms: change.at_ms,
                })]),
            ),
            (":one", n(1)),
            (":version", n(version)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        // What the change knows replaces what the record knew ([`CallRecord::with`]).
        let known = [
            ("duration_secs", change.duration_secs.map(n)),
            ("end_reason", change.end_reason.as_deref().map(text)),
            ("summary", change.summary.as_deref().map(text)),
            ("successful", change.successful.as_deref().map(text)),
        ];
        for (name, value) in known {
            if let Some(value) = value {
                update.push_str(&format!(", #{name} = :{name}"));
                names.insert(format!("#{name}"), name.to_string());
                values.insert(format!(":{name}"), value);
            }
        }
        Move {
            pk,
            update,
            names,
            values,
        }
    }
}

/// What one write of a [`Move`] came to.
enum Moved {
    Written,
    /// Not written: decide again on the record as the failed condition returned it (`Some`),
    /// or as a new read finds it (`None`: held by another transaction, throttled, or nothing
    /// returned).
    Again(Option<Item>),
}

impl DynamoStore {
    /// One item, read consistently.
    async fn read(&self, pk: &str) -> Result<Option<Item>, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(pk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| sdk_error("GetItem", error))?;
        Ok(read.item)
    }

    /// The record alone: one conditional `UpdateItem`.
    async fn write_move(&self, change: &Move) -> Result<Moved, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(change.pk.clone()))
            .update_expression(&change.update)
            .condition_expression(Move::CONDITION)
            .set_expression_attribute_names(Some(change.names.clone()))
            .set_expression_attribute_values(Some(change.values.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        if let Err(SdkError::ServiceError(failure)) = &sent {
            if failure.err().is_transaction_conflict_exception() {
                return Ok(Moved::Again(None));
            }
        }
        Ok(match conditional("UpdateItem", sent)? {
            Conditional::Written(_) => Moved::Written,
            // The item as it was (none returned: TTL deleted it, and a new read says so).
            Conditional::Failed(old) => Moved::Again(old),
        })
    }

    /// The record's update and the event's put in one `TransactWriteItems`.
    async fn write_move_with_event(
        &self,
        change: &Move,
        event: &Envelope,
        now_ms: u64,
    ) -> Result<Moved, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(change.pk.clone()))
            .update_expression(&change.update)
            .condition_expression(Move::CONDITION)
            .set_expression_attribute_names(Some(change.names.clone()))
            .set_expression_attribute_values(Some(change.values.clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
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
            Ok(_) => return Ok(Moved::Written),
            Err(cancelled) => cancelled,
        };
        let [record, kept] = cancelled.reasons.as_slice() else {
            return Err(
                StoreError::corrupt("transaction cancelled without one reason per item")
                    .caused_by(cancelled.error),
            );
        };
        let outcomes = outcome(record.code()).and_then(|r| Ok((r, outcome(kept.code())?)));
        match outcomes {
            Err(code) => Err(StoreError::unavailable(
                "TransactWriteItems",
                format!("cancelled: {code}"),
            )
            .caused_by(cancelled.error)),
            // Another change won: decide again on the record as it is now.
            Ok((Outcome::ConditionFailed, _)) => Ok(Moved::Again(record.item().cloned())),
            // The event is kept already (a retried advance): the record alone.
            Ok((Outcome::Passed, Outcome::ConditionFailed)) => self.write_move(change).await,
            // Contended (or, impossibly, cancelled with both conditions holding): again.
            Ok(_) => Ok(Moved::Again(None)),
        }
    }

    /// The record and the way back in one `TransactWriteItems`; a live record stays as it is.
    async fn create_with_ref(&self, record: Put, way_back: Item) -> Result<(), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let way_back = Put::builder()
                .table_name(&self.table)
                .set_item(Some(way_back.clone()))
                .build()
                .map_err(not_built("TransactWriteItems"))?;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(record.clone()).build())
                .transact_items(TransactWriteItem::builder().put(way_back).build())
                .send()
                .await;
            let cancelled = match transaction(sent)? {
                Ok(_) => return Ok(()),
                Err(cancelled) => cancelled,
            };
            let codes: Result<Vec<Outcome>, String> = cancelled
                .reasons
                .iter()
                .map(|reason| outcome(reason.code()))
                .collect();
            match codes.as_deref() {
                Err(code) => {
                    return Err(StoreError::unavailable(
                        "TransactWriteItems",
                        format!("cancelled: {code}"),
                    )
                    .caused_by(cancelled.error))
                }
                // A live record of this id: the first one stays (and so does its way back).
                Ok([Outcome::ConditionFailed, ..]) => return Ok(()),
                // Contended: the same transaction again.
                Ok(_) => {}
            }
        }
        Err(StoreError::unavailable("TransactWriteItems", CONTENDED))
    }
}

#[async_trait]
impl CallRecords for DynamoStore {
    async fn create(&self, record: CallRecord) -> Result<(), StoreError> {
        let record = &record;
        let pk = Self::call_pk(&record.call_id)
            .ok_or_else(|| StoreError::unavailable("PutItem", "call id too long for a key"))?;
        let item = record_item(pk, record);
        let now = n(record.created_at_ms);
        // A provider id too long to be a key has no way back: the record is still kept.
        let way_back = record
            .provider_call_id
            .as_deref()
            .and_then(Self::call_ref_pk)
            .map(|pk| ref_item(pk, record));
        match way_back {
            None => {
                let sent = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(NEW_RECORD)
                    .expression_attribute_values(":now", now)
                    .send()
                    .await;
                // A failed condition: a live record of this id; the first one stays.
                conditional("PutItem", sent).map(|_| ())
            }
            Some(way_back) => {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(NEW_RECORD)
                    .expression_attribute_values(":now", now)
                    .build()
                    .map_err(not_built("TransactWriteItems"))?;
                self.create_with_ref(put, way_back).await
            }
        }
    }

    async fn get(&self, call_id: &str, now_ms: u64) -> Result<Option<CallRecord>, StoreError> {
        let Some(pk) = Self::call_pk(call_id) else {
            return Ok(None);
        };
        let Some(item) = self.read(&pk).await? else {
            return Ok(None);
        };
        let (record, _) = call_record(&item)?;
        Ok((record.expires_at_ms > now_ms).then_some(record))
    }

    async fn find(
        &self,
        provider_call_id: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let Some(pk) = Self::call_ref_pk(provider_call_id) else {
            return Ok(None);
        };
        let Some(item) = self.read(&pk).await? else {
            return Ok(None);
        };
        // The way back lives exactly as long as its record.
        if number(&item, "exp_ms")? <= now_ms {
            return Ok(None);
        }
        Ok(Some(string(&item, "call_id")?.to_string()))
    }

    async fn advance(
        &self,
        call_id: &str,
        change: &Change,
        event: Option<&Envelope>,
    ) -> Result<Advance, StoreError> {
        let Some(pk) = Self::call_pk(call_id) else {
            return Ok(Advance::Unknown);
        };
        let mut known: Option<Item> = None;
        for _ in 0..MAX_ATTEMPTS {
            let item = match known.take() {
                Some(item) => Some(item),
                None => self.read(&pk).await?,
            };
            let Some(item) = item else {
                return Ok(Advance::Unknown);
            };
            let (record, version) = call_record(&item)?;
            if record.expires_at_ms <= change.at_ms {
                return Ok(Advance::Unknown);
            }
            if !record.moves_forward(change) {
                return Ok(Advance::Unchanged);
            }
            let write = Move::new(pk.clone(), version, change);
            let moved = match event {
                None => self.write_move(&write).await?,
                Some(event) => {
                    self.write_move_with_event(&write, event, change.at_ms)
                        .await?
                }
            };
            match moved {
                Moved::Written => return Ok(Advance::Applied(Box::new(record.with(change)))),
                Moved::Again(item) => known = item,
            }
        }
        let operation = if event.is_some() {
            "TransactWriteItems"
        } else {
            "UpdateItem"
        };
        Err(StoreError::unavailable(operation, CONTENDED))
    }
}
