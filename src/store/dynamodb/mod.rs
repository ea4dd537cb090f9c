//! The DynamoDB store: limits (SPEC §5) and idempotency records (SPEC §8) shared by every
//! serverless instance, in one table (`RATE_LIMIT_TABLE`, partition key `pk` string, TTL
//! attribute `expires_at` in epoch seconds).
//!
//! # Keys
//! `pk` is `rl#` or `idem#` followed by the hex HMAC-SHA256, keyed with
//! `RATE_LIMIT_HASH_KEY`, of the limit key (`ip:…`, `number:…`, `global:<day>`) or of the
//! scoped idempotency key. Neither raw IPs, numbers nor API keys reach the table; the stored
//! request fingerprint is keyed-hashed too. (A replayed answer is stored as it was sent, so
//! it holds the `to` number it answered with, for 24 hours.)
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
//!
//! # Idempotency: one round trip to begin
//! `begin` is a conditional `PutItem` (no item, or its lease/record has expired by `exp_ms`)
//! that returns the old item when the condition fails; its fingerprint and state tell
//! `Replay`, `InProgress` and `Mismatch` apart. `complete` and `release` are conditional on
//! the fingerprint, like the memory store.
//!
//! # Failing closed
//! Any error other than a failed condition (unreachable, timed out, throttled past the SDK's
//! retries, or an answer that does not parse) is a [`StoreError`]; the service then answers
//! `503 rate_limit_unavailable` and places no call. Error texts carry operation names and
//! error codes only, never keys.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{
    secs_until, Admission, Begin, IdempotencyStore, LimitCheck, LimitStatus, RateLimiter,
    StoreError, StoredResponse, Window, DAY_MS, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

/// The most writes one admission makes: the common case needs one, a list full of expired
/// entries two; more only under contention on the same key.
pub const MAX_ATTEMPTS: usize = 4;
/// Per attempt (connect plus answer), and for the whole operation with its retry.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2000);
/// Attempts per SDK operation (the first and one retry of a transient failure).
pub const SDK_MAX_ATTEMPTS: u32 = 2;

/// The table's partition key and TTL attribute (the same as `template.yaml` declares).
pub const PARTITION_KEY: &str = "pk";
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// The standard AWS configuration chain (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`,
/// credentials from the environment, profile, container or instance), with a rustls HTTPS
/// client, short timeouts and one retry. Callers may override more before `load()`.
pub fn config_loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(ATTEMPT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(SDK_MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50)),
        )
}

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
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(PARTITION_KEY)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        Ok(_) => true,
        Err(error) if error.code() == Some("ResourceInUseException") => false,
        Err(error) => return Err(sdk_error("CreateTable", &error)),
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
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(created),
        // Already enabled on this attribute.
        Err(error) if error.code() == Some("ValidationException") && !created => Ok(created),
        Err(error) => Err(sdk_error("UpdateTimeToLive", &error)),
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
            .map_err(|e| sdk_error("DescribeTable", &e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable(
        "table did not become active in 60 s".into(),
    ))
}

pub struct DynamoStore {
    client: Client,
    table: String,
    hasher: Hmac<Sha256>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// A store on `client` (built once per process), keying hashes with `hash_key`.
    pub fn new(client: Client, table: impl Into<String>, hash_key: &SecretString) -> Self {
        let hasher = <Hmac<Sha256> as Mac>::new_from_slice(hash_key.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        DynamoStore {
            client,
            table: table.into(),
            hasher,
        }
    }

    /// Hex HMAC-SHA256 of `value`, with a domain so that equal strings in different roles
    /// never share a hash.
    fn hash(&self, domain: &str, value: &str) -> String {
        let mut mac = self.hasher.clone();
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn limit_pk(&self, check: &LimitCheck) -> String {
        format!("rl#{}", self.hash("limit", &check.key))
    }

    fn idempotency_pk(&self, key: &str) -> String {
        format!("idem#{}", self.hash("idempotency", key))
    }
}

// ---------------------------------------------------------------------------------------
// Limits

/// What one attempt writes for one check.
#[derive(Debug, Clone)]
enum Step {
    /// Append (rolling) or increment (day) under the `< max` condition.
    Append,
    /// Replace a list full of expired entries by its live entries plus this admission, if
    /// the item is still at `version`.
    Replace { version: u64, live: Vec<u64> },
}

/// A condition-failed item, read: why it refused, or what to write instead.
enum Verdict {
    Refuse(LimitStatus),
    Retry(Step),
}

/// The parts of one conditional update, for `UpdateItem` or a transaction's `Update`.
struct Write {
    pk: String,
    update: &'static str,
    condition: &'static str,
    values: HashMap<String, AttributeValue>,
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn epoch_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

fn end_of_day(now_ms: u64) -> u64 {
    (now_ms / DAY_MS + 1) * DAY_MS
}

fn window_ms(check: &LimitCheck) -> Option<u64> {
    match check.window {
        Window::Rolling { ms } => Some(ms),
        Window::UtcDay => None,
    }
}

impl DynamoStore {
    fn write(&self, check: &LimitCheck, step: &Step, now_ms: u64) -> Write {
        let pk = self.limit_pk(check);
        let mut values = HashMap::new();
        values.insert(":one".to_string(), n(1));
        match (check.window, step) {
            (Window::Rolling { ms }, Step::Append) => {
                values.insert(":max".into(), n(check.max.into()));
                values.insert(":empty".into(), AttributeValue::L(Vec::new()));
                values.insert(":mine".into(), AttributeValue::L(vec![n(now_ms)]));
                values.insert(":exp".into(), n(epoch_secs(now_ms + ms)));
                Write {
                    pk,
                    update: "SET ts = list_append(if_not_exists(ts, :empty), :mine), expires_at = :exp ADD v :one",
                    condition: "attribute_not_exists(ts) OR size(ts) < :max",
                    values,
                }
            }
            (Window::Rolling { ms }, Step::Replace { version, live }) => {
                let mut list: Vec<AttributeValue> = live.iter().map(|&t| n(t)).collect();
                list.push(n(now_ms));
                let newest = live.iter().copied().max().unwrap_or(now_ms).max(now_ms);
                values.insert(":list".into(), AttributeValue::L(list));
                values.insert(":v".into(), n(*version));
                values.insert(":exp".into(), n(epoch_secs(newest + ms)));
                Write {
                    pk,
                    update: "SET ts = :list, expires_at = :exp ADD v :one",
                    condition: "v = :v",
                    values,
                }
            }
            (Window::UtcDay, _) => {
                values.insert(":max".into(), n(check.max.into()));
                values.insert(":exp".into(), n(epoch_secs(end_of_day(now_ms))));
                Write {
                    pk,
                    update: "ADD n :one SET expires_at = :exp",
                    condition: "attribute_not_exists(n) OR n < :max",
                    values,
                }
            }
        }
    }

    /// Reads the item a failed condition returned (`None`: there is no item any more).
    fn verdict(
        check: &LimitCheck,
        old: Option<&HashMap<String, AttributeValue>>,
        now_ms: u64,
    ) -> Result<Verdict, StoreError> {
        let Some(old) = old else {
            // Deleted (TTL) since the condition was evaluated: start afresh.
            return Ok(Verdict::Retry(Step::Append));
        };
        match window_ms(check) {
            Some(window) => {
                let times = number_list(old, "ts")?;
                let version = number(old, "v")?;
                let mut live: Vec<u64> =
                    times.into_iter().filter(|&t| t + window > now_ms).collect();
                live.sort_unstable();
                let max = check.max as usize;
                if live.len() >= max {
                    let free_at = if max > 0 {
                        live[live.len() - max] + window
                    } else {
                        now_ms
                    };
                    Ok(Verdict::Refuse(refused(check, free_at, now_ms)))
                } else {
                    Ok(Verdict::Retry(Step::Replace { version, live }))
                }
            }
            None => {
                let count = number(old, "n")?;
                if count >= u64::from(check.max) {
                    Ok(Verdict::Refuse(refused(check, end_of_day(now_ms), now_ms)))
                } else {
                    Err(StoreError::Corrupt(
                        "a day counter below its limit failed its condition".into(),
                    ))
                }
            }
        }
    }

    /// The status after an admission whose resulting item is known.
    fn status_from_item(
        check: &LimitCheck,
        item: &HashMap<String, AttributeValue>,
        now_ms: u64,
    ) -> Result<LimitStatus, StoreError> {
        match window_ms(check) {
            Some(window) => {
                let live: Vec<u64> = number_list(item, "ts")?
                    .into_iter()
                    .filter(|&t| t + window > now_ms)
                    .collect();
                Ok(rolling_status(check, &live, window, now_ms))
            }
            None => Ok(day_status(check, number(item, "n")?, now_ms)),
        }
    }

    /// The status after an admission written by `step` in a transaction, which returns no
    /// item: exact after a replace, this admission alone after an append.
    fn status_after(check: &LimitCheck, step: &Step, now_ms: u64) -> LimitStatus {
        match (window_ms(check), step) {
            (Some(window), Step::Replace { live, .. }) => {
                let mut all = live.clone();
                all.push(now_ms);
                rolling_status(check, &all, window, now_ms)
            }
            (Some(window), Step::Append) => rolling_status(check, &[now_ms], window, now_ms),
            (None, _) => day_status(check, 1, now_ms),
        }
    }

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
            match sent {
                Ok(output) => {
                    let item = output
                        .attributes()
                        .ok_or_else(|| StoreError::Corrupt("UpdateItem returned no item".into()))?;
                    let status = Self::status_from_item(check, item, now_ms)?;
                    return Ok(Admission::Admitted(vec![status]));
                }
                Err(SdkError::ServiceError(failure))
                    if failure.err().is_conditional_check_failed_exception() =>
                {
                    let old = match failure.err() {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(e) => e.item(),
                        _ => None,
                    };
                    match Self::verdict(check, old, now_ms)? {
                        Verdict::Refuse(by) => return Ok(Admission::Refused { by }),
                        Verdict::Retry(next) => step = next,
                    }
                }
                Err(error) => return Err(sdk_error("UpdateItem", &error)),
            }
        }
        Err(StoreError::Unavailable(
            "limit item kept changing under contention".into(),
        ))
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
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let failure = match sent {
                Ok(_) => {
                    let statuses = checks
                        .iter()
                        .zip(&steps)
                        .map(|(check, step)| Self::status_after(check, step, now_ms))
                        .collect();
                    return Ok(Admission::Admitted(statuses));
                }
                Err(SdkError::ServiceError(failure))
                    if failure.err().is_transaction_canceled_exception() =>
                {
                    failure
                }
                Err(error) => return Err(sdk_error("TransactWriteItems", &error)),
            };
            let reasons = match failure.err() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => e.cancellation_reasons(),
                _ => &[],
            };
            if reasons.len() != checks.len() {
                return Err(StoreError::Corrupt(
                    "transaction cancelled without one reason per item".into(),
                ));
            }
            let mut refused_by: Option<LimitStatus> = None;
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
                        return Err(StoreError::Unavailable(format!(
                            "TransactWriteItems cancelled: {other}"
                        )))
                    }
                }
            }
            if let Some(by) = refused_by {
                return Ok(Admission::Refused { by });
            }
        }
        Err(StoreError::Unavailable(
            "limit items kept changing under contention".into(),
        ))
    }
}

fn refused(check: &LimitCheck, free_at: u64, now_ms: u64) -> LimitStatus {
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: 0,
        reset_secs: secs_until(free_at, now_ms).max(1),
    }
}

fn rolling_status(check: &LimitCheck, live: &[u64], window: u64, now_ms: u64) -> LimitStatus {
    let oldest = live.iter().copied().min().unwrap_or(now_ms);
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: check.max.saturating_sub(live.len() as u32),
        reset_secs: secs_until(oldest + window, now_ms),
    }
}

fn day_status(check: &LimitCheck, count: u64, now_ms: u64) -> LimitStatus {
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: check
            .max
            .saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)),
        reset_secs: secs_until(end_of_day(now_ms), now_ms),
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
            return match sent {
                Ok(_) => Ok(()),
                Err(SdkError::ServiceError(f))
                    if f.err().is_conditional_check_failed_exception() =>
                {
                    Ok(())
                }
                Err(error) => Err(sdk_error("UpdateItem", &error)),
            };
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
                .map_err(|error| sdk_error("GetItem", &error))?;
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
            match sent {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(f))
                    if f.err().is_conditional_check_failed_exception() => {}
                Err(error) => return Err(sdk_error("UpdateItem", &error)),
            }
        }
        Err(StoreError::Unavailable(
            "limit item kept changing under contention".into(),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Idempotency

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
        let failure = match sent {
            Ok(_) => return Ok(Begin::Started),
            Err(SdkError::ServiceError(failure))
                if failure.err().is_conditional_check_failed_exception() =>
            {
                failure
            }
            Err(error) => return Err(sdk_error("PutItem", &error)),
        };
        let old = match failure.err() {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => e.item(),
            _ => None,
        }
        .ok_or_else(|| StoreError::Corrupt("a failed begin returned no item".into()))?;
        if string(old, "fp")? != fp {
            return Ok(Begin::Mismatch);
        }
        match string(old, "st")? {
            IN_PROGRESS => Ok(Begin::InProgress),
            DONE => {
                let response: StoredResponse = serde_json::from_str(string(old, "resp")?)
                    .map_err(|_| StoreError::Corrupt("a stored answer does not parse".into()))?;
                Ok(Begin::Replay(response))
            }
            _ => Err(StoreError::Corrupt(
                "an idempotency record has an unknown state".into(),
            )),
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(response)
            .map_err(|_| StoreError::Corrupt("an answer does not serialise".into()))?;
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
        match sent {
            Ok(_) => Ok(()),
            // Taken over by a request with another body: nothing of ours to complete.
            Err(SdkError::ServiceError(f)) if f.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(error) => Err(sdk_error("UpdateItem", &error)),
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
        match sent {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(f)) if f.err().is_conditional_check_failed_exception() => {
                Ok(())
            }
            Err(error) => Err(sdk_error("DeleteItem", &error)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading items and errors

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a whole number"))),
        _ => Err(StoreError::Corrupt(format!("attribute {name} is missing"))),
    }
}

fn number_list(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Vec<u64>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::N(t) => t.parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} holds a non-number"))),
        _ => Err(StoreError::Corrupt(format!("attribute {name} is missing"))),
    }
}

fn string<'a>(
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(StoreError::Corrupt(format!("attribute {name} is missing"))),
    }
}

/// An SDK failure, described by kind and error code only (no request content).
fn sdk_error<E, R>(operation: &str, error: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata,
{
    let what = match error {
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out".to_string(),
        SdkError::DispatchFailure(_) => "unreachable".to_string(),
        SdkError::ResponseError(_) => "answered something unreadable".to_string(),
        SdkError::ConstructionFailure(_) => "request could not be built".to_string(),
        SdkError::ServiceError(failure) => {
            format!(
                "refused: {}",
                failure.err().code().unwrap_or("unknown error")
            )
        }
        _ => "failed".to_string(),
    };
    StoreError::Unavailable(format!("{operation} {what}"))
}
