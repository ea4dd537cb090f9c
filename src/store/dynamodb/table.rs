//! The table: created (with TTL) for local runs and tests; `template.yaml` creates it in AWS.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

use super::{not_built, sdk_error, PARTITION_KEY, TTL_ATTRIBUTE};
use crate::store::StoreError;

/// Creates the table (partition key `pk` string, on-demand billing) unless it exists, waits
/// until it is active, and turns TTL on for `expires_at`. Returns whether it was created.
pub async fn create_table(client: &Client, table: &str) -> Result<bool, StoreError> {
    let created = match client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(PARTITION_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(not_built("CreateTable"))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(PARTITION_KEY)
                .key_type(KeyType::Hash)
                .build()
                .map_err(not_built("CreateTable"))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        Ok(_) => true,
        Err(error) if error.code() == Some("ResourceInUseException") => false,
        Err(error) => return Err(sdk_error("CreateTable", error)),
    };
    wait_until_active(client, table).await?;
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

async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::TableStatus;
    // DynamoDB takes seconds to create a table; emulators none. A command-line wait, not a
    // request path.
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| sdk_error("DescribeTable", error))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::unavailable(
        "DescribeTable",
        "gave up: the table did not become active in 60 s",
    ))
}
