//! The outbox on DynamoDB (docs/API.md §9): one item per event in the same table, listed
//! through a sparse global secondary index, never a Scan.
//!
//! # The item
//! `pk` is `outbox#<event id>` ([`OUTBOX_KEY_PREFIX`]; ids are random `msg_…`, not hashed, so
//! an operator can find one). Attributes:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `st` | S | `pending`, `delivered` or `failed` — the state, always there |
//! | `attempts` | N | delivery windows started (0 before the first, and after a redelivery) |
//! | `due_at` | N | ms: when the next window may start |
//! | `lease_until` | N | ms: until when the running window holds the event (0: none) |
//! | `created_at` | N | ms: when the event was written |
//! | `last_error` | S | how the last window ended (absent until one failed) |
//! | `body` | S | the JSON POSTed on every attempt (it holds the call's number and name) |
//! | `ob_state` | S | index partition: `pending` or `failed` while in that state, else absent |
//! | `ob_at` | N | index sort: `due_at` while pending, `created_at` once failed, else absent |
//! | `expires_at` | N | TTL (epoch seconds): `created_at` + [`OUTBOX_RETENTION_MS`] |
//!
//! # Listing: the `outbox` index
//! [`OUTBOX_INDEX`] (partition `ob_state`, sort `ob_at`, all attributes projected) is sparse:
//! a delivered event drops both attributes and leaves it. `due` queries `pending` with
//! `ob_at <= now` in index order (earliest due first), filters out events under a live lease
//! (`lease_until <= now`; `Limit` counts the events read before the filter, so it pages until
//! it has `limit` events or the index has no more), and sorts what it keeps by due time, then
//! creation, then id. `failed` queries `failed` backwards (newest written first).
//!
//! An index is eventually consistent: `due` may list an event claimed or settled a moment ago,
//! or miss one written a moment ago (the stream or the next sweep picks it up). It only
//! proposes; [`Outbox::claim`] is the arbiter, a conditional `UpdateItem` on the item itself
//! (`st = pending AND due_at <= now AND lease_until <= now`, `ADD attempts 1`, a new lease,
//! `ALL_NEW`), so two workers never run one window. `settle` is conditional on
//! `st = pending AND attempts = :attempt` (still our window), `redeliver` on
//! `st <> pending`, `enqueue` on no such item. `get` is a consistent `GetItem`.
//!
//! # The stream
//! The table's stream (`NEW_IMAGE`) carries every write; the AWS function filters it to
//! outbox items with `attempts` 0 (a new or redelivered event: a claim or a retry schedule has
//! `attempts` ≥ 1, and the sweep runs those).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue};

use super::item::{epoch_secs, n, number, Item};
use super::{
    conditional, not_built, sdk_error, Conditional, DynamoStore, OUTBOX_INDEX,
    OUTBOX_INDEX_PARTITION, OUTBOX_INDEX_SORT, OUTBOX_KEY_PREFIX, PARTITION_KEY, TTL_ATTRIBUTE,
};
use crate::store::outbox::OUTBOX_RETENTION_MS;
use crate::store::{Envelope, Outbox, OutboxItem, OutboxState, Settle, StoreError};

/// The most index pages one `due` or `failed` reads. Every page but the last ends on `limit`
/// evaluated events, so only events under a lease (as many as windows running at once) or a
/// 1 MB page can make it read more than one; past this it answers with what it has.
const MAX_PAGES: usize = 16;

/// What `enqueue` and `complete` write for a new event: the item and its condition.
pub(super) struct NewEvent {
    pub(super) item: Item,
    pub(super) condition: &'static str,
    pub(super) values: Item,
}

/// The new pending item for `envelope`, due now, and the condition that writes it only where
/// no event of that id is kept: none there, or one past its retention that TTL has not
/// deleted yet (as the memory store forgets it).
pub(super) fn new_event(envelope: &Envelope, now_ms: u64) -> NewEvent {
    let pending = AttributeValue::S(OutboxState::Pending.as_str().into());
    let item: Item = [
        (
            PARTITION_KEY,
            AttributeValue::S(DynamoStore::outbox_pk(&envelope.id)),
        ),
        ("st", pending.clone()),
        ("attempts", n(0)),
        ("due_at", n(now_ms)),
        ("lease_until", n(0)),
        ("created_at", n(now_ms)),
        ("body", AttributeValue::S(envelope.body.clone())),
        (OUTBOX_INDEX_PARTITION, pending),
        (OUTBOX_INDEX_SORT, n(now_ms)),
        (TTL_ATTRIBUTE, n(epoch_secs(now_ms + OUTBOX_RETENTION_MS))),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    match now_ms.checked_sub(OUTBOX_RETENTION_MS) {
        Some(stale) => NewEvent {
            item,
            condition: "attribute_not_exists(pk) OR created_at <= :stale",
            values: [(":stale".to_string(), n(stale))].into(),
        },
        None => NewEvent {
            item,
            condition: "attribute_not_exists(pk)",
            values: Item::new(),
        },
    }
}

impl NewEvent {
    /// The same write as one item of a `TransactWriteItems`.
    pub(super) fn into_put(self, table: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(table)
            .set_item(Some(self.item))
            .condition_expression(self.condition)
            .set_expression_attribute_values((!self.values.is_empty()).then_some(self.values))
            .build()
            .map_err(not_built("TransactWriteItems"))
    }
}

/// An outbox item read back.
fn outbox_item(item: &Item) -> Result<OutboxItem, StoreError> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::corrupt(format!(
            "outbox attribute {name} is missing"
        ))),
    };
    let pk = text(PARTITION_KEY)?;
    let id = pk
        .strip_prefix(OUTBOX_KEY_PREFIX)
        .ok_or_else(|| StoreError::corrupt("an outbox item has another kind of key"))?;
    let state = OutboxState::parse(&text("st")?)
        .ok_or_else(|| StoreError::corrupt("an outbox item has an unknown state"))?;
    let attempts = u32::try_from(number(item, "attempts")?)
        .map_err(|error| StoreError::corrupt("outbox attempts out of range").caused_by(error))?;
    let last_error = match item.get("last_error") {
        None => None,
        Some(AttributeValue::S(value)) => Some(value.clone()),
        Some(_) => {
            return Err(StoreError::corrupt(
                "outbox attribute last_error is not text",
            ))
        }
    };
    Ok(OutboxItem {
        envelope: Envelope {
            id: id.to_string(),
            body: text("body")?,
        },
        state,
        attempts,
        due_at_ms: number(item, "due_at")?,
        lease_until_ms: number(item, "lease_until")?,
        created_at_ms: number(item, "created_at")?,
        last_error,
    })
}

fn state(value: OutboxState) -> AttributeValue {
    AttributeValue::S(value.as_str().into())
}

/// How an index query is asked: which listing, and which events it keeps.
enum Listing {
    /// Pending, due and unleased at this time, earliest due first.
    Due { now_ms: u64 },
    /// Failed, newest first.
    Failed,
}

impl DynamoStore {
    /// Writes a new event unless one of that id is kept (a failed condition is that case).
    pub(super) async fn put_event(
        &self,
        envelope: &Envelope,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let event = new_event(envelope, now_ms);
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(event.item))
            .condition_expression(event.condition)
            .set_expression_attribute_values((!event.values.is_empty()).then_some(event.values))
            .send()
            .await;
        conditional("PutItem", sent).map(|_| ())
    }

    /// Up to `limit` events of `listing`, from the index, page after page.
    async fn list(&self, listing: Listing, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page_size = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        for _ in 0..MAX_PAGES {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OUTBOX_INDEX)
                .limit(page_size)
                .set_exclusive_start_key(start.take());
            let query = match listing {
                Listing::Due { now_ms } => query
                    .key_condition_expression("ob_state = :state AND ob_at <= :now")
                    .filter_expression("lease_until <= :now")
                    .expression_attribute_values(":state", state(OutboxState::Pending))
                    .expression_attribute_values(":now", n(now_ms))
                    .scan_index_forward(true),
                Listing::Failed => query
                    .key_condition_expression("ob_state = :state")
                    .expression_attribute_values(":state", state(OutboxState::Failed))
                    .scan_index_forward(false),
            };
            let page = query
                .send()
                .await
                .map_err(|error| sdk_error("Query", error))?;
            for item in page.items() {
                found.push(outbox_item(item)?);
            }
            start = page.last_evaluated_key().cloned();
            if found.len() >= limit || start.is_none() {
                break;
            }
        }
        if let Listing::Due { .. } = listing {
            // The index orders by due time only; ties go by creation, then id, as in the
            // memory store.
            found.sort_by(|a, b| {
                (a.due_at_ms, a.created_at_ms, &a.envelope.id).cmp(&(
                    b.due_at_ms,
                    b.created_at_ms,
                    &b.envelope.id,
                ))
            });
        }
        found.truncate(limit);
        Ok(found)
    }

    /// A conditional `UpdateItem` of event `id`: whether the condition held and it was written.
    async fn update_event(
        &self,
        id: &str,
        update: &str,
        condition: &str,
        values: Item,
    ) -> Result<bool, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(Self::outbox_pk(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        Ok(matches!(
            conditional("UpdateItem", sent)?,
            Conditional::Written(_)
        ))
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn enqueue(&self, envelope: &Envelope, now_ms: u64) -> Result<(), StoreError> {
        self.put_event(envelope, now_ms).await
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.list(Listing::Due { now_ms }, limit).await
    }

    async fn claim(
        &self,
        id: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(Self::outbox_pk(id)))
            .update_expression("SET lease_until = :lease ADD attempts :one")
            .condition_expression("st = :pending AND due_at <= :now AND lease_until <= :now")
            .expression_attribute_values(":pending", state(OutboxState::Pending))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":lease", n(now_ms.saturating_add(lease_ms)))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match conditional("UpdateItem", sent)? {
            Conditional::Written(output) => {
                let item = output
                    .attributes()
                    .ok_or_else(|| StoreError::corrupt("a claim returned no item"))?;
                outbox_item(item).map(Some)
            }
            // Not there, not pending, not due, or another window holds it.
            Conditional::Failed(_) => Ok(None),
        }
    }

    async fn settle(
        &self,
        id: &str,
        attempt: u32,
        result: &Settle,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut values: Item = [
            (":pending".to_string(), state(OutboxState::Pending)),
            (":attempt".to_string(), n(attempt.into())),
            (":zero".to_string(), n(0)),
        ]
        .into();
        let update = match result {
            Settle::Delivered => {
                values.insert(":delivered".into(), state(OutboxState::Delivered));
                "SET st = :delivered, lease_until = :zero REMOVE ob_state, ob_at, last_error"
            }
            Settle::RetryAt { due_at_ms, error } => {
                values.insert(":due".into(), n(*due_at_ms));
                values.insert(":error".into(), AttributeValue::S(error.clone()));
                "SET due_at = :due, ob_at = :due, lease_until = :zero, last_error = :error"
            }
            Settle::Failed { error } => {
                values.insert(":failed".into(), state(OutboxState::Failed));
                values.insert(":error".into(), AttributeValue::S(error.clone()));
                "SET st = :failed, ob_state = :failed, ob_at = created_at, lease_until = :zero, \
                 last_error = :error"
            }
        };
        // A failed condition: the window is over (its lease ran out and another began, or
        // another window settled the event).
        self.update_event(id, update, "st = :pending AND attempts = :attempt", values)
            .await
    }

    async fn failed(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.list(Listing::Failed, limit).await
    }

    async fn redeliver(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let values: Item = [
            (":pending".to_string(), state(OutboxState::Pending)),
            (":now".to_string(), n(now_ms)),
            (":zero".to_string(), n(0)),
        ]
        .into();
        // A failed condition: no such event (the condition keeps UpdateItem from creating
        // one), or it is pending already. `last_error` stays, as in the memory store.
        self.update_event(
            id,
            "SET st = :pending, ob_state = :pending, ob_at = :now, due_at = :now, \
             attempts = :zero, lease_until = :zero",
            "attribute_exists(pk) AND st <> :pending",
            values,
        )
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<OutboxItem>, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(Self::outbox_pk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| sdk_error("GetItem", error))?;
        read.item().map(outbox_item).transpose()
    }
}
