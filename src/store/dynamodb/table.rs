//! The table: created (with TTL, the outbox index and the stream) for local runs and tests;
//! `template.yaml` creates it in AWS. An existing table is brought up to date: the outbox index
//! and the stream are added where missing.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TableDescription, TableStatus,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::{
    not_built, sdk_error, OUTBOX_INDEX, OUTBOX_INDEX_PARTITION, OUTBOX_INDEX_SORT, PARTITION_KEY,
    TTL_ATTRIBUTE,
};
use crate::store::StoreError;

/// How long a new table (with its index) or a stream change may take to become active
/// (DynamoDB: seconds to a few minutes; emulators: none).
const TABLE_WAIT: Duration = Duration::from_secs(5 * 60);
/// How long an index added to an existing table may take to fill (DynamoDB reads every item
/// of the table into it: minutes on a large table).
const INDEX_WAIT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(500);

/// Creates the table unless it exists (partition key `pk` string, on-demand billing, the
/// sparse `outbox` index, a `NEW_IMAGE` stream), adds the index and the stream to an existing
/// table that lacks them, waits until table and index are active, and turns TTL on for
/// `expires_at`. Returns whether the table was created.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, StoreError> {
    let created = match client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attribute_definitions()?))
        .key_schema(key(PARTITION_KEY, KeyType::Hash, "CreateTable")?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(OUTBOX_INDEX)
                .set_key_schema(Some(index_keys("CreateTable")?))
                .projection(all_attributes())
                .build()
                .map_err(not_built("CreateTable"))?,
        )
        .stream_specification(stream()?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        Ok(_) => true,
        Err(error) if error.code() == Some("ResourceInUseException") => false,
        Err(error) => return Err(sdk_error("CreateTable", error)),
    };
    let mut described = wait_until_active(client, table, TABLE_WAIT).await?;
    if !created {
        if !has_outbox_index(&described) {
            add_outbox_index(client, table).await?;
            described = wait_until_active(client, table, INDEX_WAIT).await?;
        }
        if !streams_new_images(&described) {
            enable_stream(client, table, &described).await?;
            wait_until_active(client, table, TABLE_WAIT).await?;
        }
    }
    let ttl = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(TTL_ATTRIBUTE)
                .build()
                .map_err(not_built("UpdateTimeToLive"))?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(created),
        // Already enabled on this attribute.
        Err(error) if error.code() == Some("ValidationException") && !created => Ok(created),
        Err(error) => Err(sdk_error("UpdateTimeToLive", error)),
    }
}

fn attribute_definitions() -> Result<Vec<AttributeDefinition>, StoreError> {
    [
        (PARTITION_KEY, ScalarAttributeType::S),
        (OUTBOX_INDEX_PARTITION, ScalarAttributeType::S),
        (OUTBOX_INDEX_SORT, ScalarAttributeType::N),
    ]
    .into_iter()
    .map(|(name, kind)| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(not_built("CreateTable"))
    })
    .collect()
}

fn key(name: &str, kind: KeyType, operation: &'static str) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(not_built(operation))
}

fn index_keys(operation: &'static str) -> Result<Vec<KeySchemaElement>, StoreError> {
    Ok(vec![
        key(OUTBOX_INDEX_PARTITION, KeyType::Hash, operation)?,
        key(OUTBOX_INDEX_SORT, KeyType::Range, operation)?,
    ])
}

/// Every attribute: `due` and `failed` answer whole events from the index alone.
fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

fn stream() -> Result<StreamSpecification, StoreError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(not_built("CreateTable"))
}

fn has_outbox_index(table: &TableDescription) -> bool {
    table
        .global_secondary_indexes()
        .iter()
        .any(|index| index.index_name() == Some(OUTBOX_INDEX))
}

/// A stream whose records carry the item as written.
fn streams_new_images(table: &TableDescription) -> bool {
    table.stream_specification().is_some_and(|spec| {
        spec.stream_enabled()
            && matches!(
                spec.stream_view_type(),
                Some(StreamViewType::NewImage | StreamViewType::NewAndOldImages)
            )
    })
}

async fn add_outbox_index(client: &Client, table: &str) -> Result<(), StoreError> {
    client
        .update_table()
        .table_name(table)
        .set_attribute_definitions(Some(attribute_definitions()?))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name(OUTBOX_INDEX)
                        .set_key_schema(Some(index_keys("UpdateTable")?))
                        .projection(all_attributes())
                        .build()
                        .map_err(not_built("UpdateTable"))?,
                )
                .build(),
        )
        .send()
        .await
        .map_err(|error| sdk_error("UpdateTable", error))?;
    Ok(())
}

/// Turns the stream on. A stream of another view type (keys only, old images) cannot be
/// changed in place: that is the operator's decision (turning it off loses its records), so
/// it is refused with the reason.
async fn enable_stream(
    client: &Client,
    table: &str,
    described: &TableDescription,
) -> Result<(), StoreError> {
    if described
        .stream_specification()
        .is_some_and(|spec| spec.stream_enabled())
    {
        return Err(StoreError::unavailable(
            "UpdateTable",
            "the table has a stream without new images; the outbox needs NEW_IMAGE \
             (or NEW_AND_OLD_IMAGES): disable it, then run create-table again",
        ));
    }
    client
        .update_table()
        .table_name(table)
        .stream_specification(stream()?)
        .send()
        .await
        .map_err(|error| sdk_error("UpdateTable", error))?;
    Ok(())
}

/// Waits until the table and every index on it are active (a command-line wait, not a
/// request path), and answers its description.
async fn wait_until_active(
    client: &Client,
    table: &str,
    limit: Duration,
) -> Result<TableDescription, StoreError> {
    let polls = (limit.as_millis() / POLL.as_millis()).max(1);
    for _ in 0..polls {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| sdk_error("DescribeTable", error))?;
        if let Some(description) = described.table() {
            let indexes_active = description
                .global_secondary_indexes()
                .iter()
                .all(|index| index.index_status() == Some(&IndexStatus::Active));
            if description.table_status() == Some(&TableStatus::Active) && indexes_active {
                return Ok(description.clone());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(StoreError::unavailable(
        "DescribeTable",
        format!(
            "gave up: the table or its index did not become active in {} s",
            limit.as_secs()
        ),
    ))
}
