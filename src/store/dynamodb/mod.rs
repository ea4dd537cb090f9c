//! The DynamoDB store: limits (docs/API.md §5), idempotency records (docs/API.md §8), the
//! webhook outbox (docs/API.md §9) and call records (docs/API.md §15) shared by every
//! serverless instance, in one table (`RATE_LIMIT_TABLE`, partition key `pk` string, TTL
//! attribute `expires_at` in epoch seconds, the sparse index [`OUTBOX_INDEX`], a `NEW_IMAGE`
//! stream).
//!
//! # Keys
//! `pk` is `rl#` or `idem#` followed by the hex HMAC-SHA256, keyed with
//! `RATE_LIMIT_HASH_KEY`, of the limit key (`ip:…`, `number:…`, `global:<day>`) or of the
//! scoped idempotency key. Neither raw IPs, numbers nor API keys reach these keys; the stored
//! request fingerprint is keyed-hashed too. (A replayed answer is stored as it was sent, so
//! it holds the `to` number it answered with, for 24 hours.) Outbox items are
//! `outbox#<event id>`, unhashed (random ids); their body is the webhook event as sent, with
//! the call's number and name, kept for the outbox retention (7 days). Call records are
//! `call#<call id>` and the way back from a provider's id `callref#<provider call id>`, both
//! unhashed (random ids); a record holds the masked number only.
//!
//! # Failing closed
//! Any error other than a failed condition (unreachable, timed out, throttled past the SDK's
//! retries, or an answer that does not parse) is a [`StoreError`]; the service then answers
//! `503 rate_limit_unavailable` and places no call. Error texts carry operation names and
//! error codes only, never keys; the SDK's error is kept as the error's source.
//!
//! # Files
//! This one: the client configuration, [`DynamoStore`] and its keys, and the handling of SDK
//! answers every operation shares (`sdk_error`, `conditional`, `transaction`, `outcome`).
//! `limits` is the [`RateLimiter`](crate::store::RateLimiter), with `limit_item` (what an
//! attempt writes to a limit item and what an item read back means); `idempotency` the
//! [`IdempotencyStore`](crate::store::IdempotencyStore) (with the one-transaction completion
//! that writes the outbox item too); `outbox` the [`Outbox`](crate::store::Outbox); `calls`
//! the [`CallRecords`](crate::store::CallRecords) (a status change and its event in one
//! transaction); `item` reads and writes attribute values; `table` creates the table for local
//! runs and tests.

mod calls;
mod http;
mod idempotency;
mod item;
mod limit_item;
mod limits;
mod outbox;
mod table;

pub use table::create_table;

use std::borrow::Cow;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::Client;
use secrecy::SecretString;

use self::item::Item;
use super::keys::KeyHasher;
use super::{LimitCheck, StoreError};

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

/// The prefix of an outbox item's `pk`: `outbox#<event id>`, the id as it is (not hashed: ids
/// are random and personal to nobody, and an operator must be able to find one).
pub const OUTBOX_KEY_PREFIX: &str = "outbox#";
/// The prefixes of a call record's `pk` (`call#<call id>`) and of the way back from the
/// provider's id (`callref#<provider call id>`): ids as they are, not hashed (call ids are random
/// UUIDs, provider ids the provider's own random ids; neither is personal).
pub const CALL_KEY_PREFIX: &str = "call#";
pub const CALL_REF_KEY_PREFIX: &str = "callref#";
/// The longest partition key DynamoDB accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 2048;

/// The sparse global secondary index listing pending and failed events (never a Scan): its
/// partition key holds `pending` or `failed` only while the event is in that state, its sort
/// key the time it is listed by (pending: due; failed: written), in milliseconds.
pub const OUTBOX_INDEX: &str = "outbox";
pub const OUTBOX_INDEX_PARTITION: &str = "ob_state";
pub const OUTBOX_INDEX_SORT: &str = "ob_at";

/// The event id an outbox item's `pk` holds (as in a stream record's `Keys`); `None` for the
/// table's other items.
pub fn outbox_event_id(pk: &str) -> Option<&str> {
    pk.strip_prefix(OUTBOX_KEY_PREFIX)
}

/// The standard AWS configuration chain (`AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB`,
/// credentials from the environment, profile, container or instance), sending through the
/// service's HTTPS stack ([`http`]), with short timeouts and one retry. Callers may override
/// more before `load()`.
pub fn config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http::SdkHttp::default())
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

pub struct DynamoStore {
    client: Client,
    table: String,
    hasher: KeyHasher,
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
        let hasher = KeyHasher::new(hash_key);
        DynamoStore {
            client,
            table: table.into(),
            hasher,
        }
    }

    /// Hex HMAC-SHA256 of `value`, with a domain so that equal strings in different roles
    /// never share a hash.
    fn hash(&self, domain: &str, value: &str) -> String {
        self.hasher.hash(domain, value)
    }

    fn limit_pk(&self, check: &LimitCheck) -> String {
        self.hasher.limit(&check.key)
    }

    fn idempotency_pk(&self, key: &str) -> String {
        self.hasher.idempotency(key)
    }

    fn outbox_pk(id: &str) -> String {
        format!("{OUTBOX_KEY_PREFIX}{id}")
    }

    /// The key of `call_id`'s record; `None` when it would be too long to be a key (no record
    /// can be kept under it).
    fn call_pk(call_id: &str) -> Option<String> {
        key(CALL_KEY_PREFIX, call_id)
    }

    /// The key of the way back from `provider_call_id`; `None` when it would be too long.
    fn call_ref_pk(provider_call_id: &str) -> Option<String> {
        key(CALL_REF_KEY_PREFIX, provider_call_id)
    }
}

/// `prefix` and `id`, if that fits in a partition key.
fn key(prefix: &str, id: &str) -> Option<String> {
    (prefix.len() + id.len() <= MAX_KEY_BYTES).then(|| format!("{prefix}{id}"))
}

/// An SDK failure: its kind and error code in the text (no request content), and as the
/// source the SDK's own error (not the raw HTTP answer the `SdkError` also holds).
fn sdk_error<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure: Cow<'static, str> = match &error {
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "timed out".into(),
        SdkError::DispatchFailure(_) => "unreachable".into(),
        SdkError::ResponseError(_) => "answered something unreadable".into(),
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        SdkError::ServiceError(failure) => format!(
            "refused: {}",
            failure.err().code().unwrap_or("unknown error")
        )
        .into(),
        _ => "failed".into(),
    };
    StoreError::Unavailable {
        operation,
        failure,
        source: error.into_source().ok(),
    }
}

/// A `TransactWriteItems` a condition or a conflict cancelled: each item's reason, in the order
/// of the items, and the SDK's error (kept as the cause of whatever the caller makes of it).
pub(super) struct Cancelled {
    pub reasons: Vec<CancellationReason>,
    pub error: TransactWriteItemsError,
}

/// The answer to `TransactWriteItems`: written, or cancelled; any other failure is an error.
pub(super) fn transaction<T, R>(
    sent: Result<T, SdkError<TransactWriteItemsError, R>>,
) -> Result<Result<T, Cancelled>, StoreError> {
    match sent {
        Ok(output) => Ok(Ok(output)),
        Err(SdkError::ServiceError(failure))
            if failure.err().is_transaction_canceled_exception() =>
        {
            let error = failure.into_err();
            let reasons = match &error {
                TransactWriteItemsError::TransactionCanceledException(e) => {
                    e.cancellation_reasons().to_vec()
                }
                _ => Vec::new(),
            };
            Ok(Err(Cancelled { reasons, error }))
        }
        Err(error) => Err(sdk_error("TransactWriteItems", error)),
    }
}

/// What became of one item of a cancelled `TransactWriteItems`, from its cancellation reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its condition held (the transaction was cancelled because of another item).
    Passed,
    ConditionFailed,
    /// Another transaction held the item, or it was throttled: the same transaction again.
    Contended,
}

/// The [`Outcome`] of a cancellation reason's code; any other code, as it is.
pub(super) fn outcome(code: Option<&str>) -> Result<Outcome, String> {
    match code {
        None | Some("None") => Ok(Outcome::Passed),
        Some("ConditionalCheckFailed") => Ok(Outcome::ConditionFailed),
        Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded") => {
            Ok(Outcome::Contended)
        }
        Some(other) => Err(other.to_string()),
    }
}

/// A request its builder refused (a required field missing: a bug here, not the store), in the
/// words [`sdk_error`] uses for the same failure inside the SDK.
fn not_built(operation: &'static str) -> impl FnOnce(BuildError) -> StoreError {
    move |error| StoreError::unavailable(operation, "request could not be built").caused_by(error)
}

/// What a conditional single-item write came to.
enum Conditional<T> {
    /// Written: the operation's output.
    Written(T),
    /// The condition failed. The item as it was, when the request asked for it
    /// (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) and there was one.
    Failed(Option<Item>),
}

/// The errors of the single-item writes: a failed condition carries the item as it was.
trait ConditionFailure {
    fn is_condition_failed(&self) -> bool;
    /// The item the failed condition returned (`None` for any other error).
    fn into_old_item(self) -> Option<Item>;
}

macro_rules! condition_failure {
    ($($error:ty),*) => {$(
        impl ConditionFailure for $error {
            fn is_condition_failed(&self) -> bool {
                self.is_conditional_check_failed_exception()
            }

            fn into_old_item(self) -> Option<Item> {
                match self {
                    Self::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                }
            }
        }
    )*};
}

condition_failure!(PutItemError, UpdateItemError, DeleteItemError);

/// What `sent`, the answer to a conditional `operation`, came to: written, or the condition
/// failed (with the old item when asked for); any other failure is a [`StoreError`].
fn conditional<T, E, R>(
    operation: &'static str,
    sent: Result<T, SdkError<E, R>>,
) -> Result<Conditional<T>, StoreError>
where
    E: ConditionFailure + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(output) => Ok(Conditional::Written(output)),
        Err(SdkError::ServiceError(failure)) if failure.err().is_condition_failed() => {
            Ok(Conditional::Failed(failure.into_err().into_old_item()))
        }
        Err(error) => Err(sdk_error(operation, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LimitKind, Window};

    /// The keys already in the table stay the keys: `rl#`/`idem#` and the lowercase hex of
    /// the HMAC-SHA256 of the domain, a zero byte and the key.
    #[test]
    fn partition_keys_are_the_prefixed_lowercase_hex_hmac() {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .build();
        let store = DynamoStore::new(
            Client::from_conf(config),
            "table",
            &SecretString::from("test-hash-key-0123456789abcdef0123456789"),
        );
        let check = LimitCheck {
            kind: LimitKind::Ip,
            key: "a limit key".into(),
            max: 3,
            window: Window::UtcDay,
        };
        assert_eq!(
            store.limit_pk(&check),
            "rl#6a1403512ce2130f0a244fc603308266d3ac4397725eecd8821de064078ee00d"
        );
        assert_eq!(
            store.idempotency_pk("k1"),
            "idem#72d93bcdf26423ab7b7ada621233617de0d705934a48d6e48c2601b836a05091"
        );
    }

    /// Outbox items are found by the event id as it is, and only they carry one.
    #[test]
    fn outbox_keys_are_the_prefixed_event_id_unhashed() {
        assert_eq!(DynamoStore::outbox_pk("msg_01ab"), "outbox#msg_01ab");
        assert_eq!(outbox_event_id("outbox#msg_01ab"), Some("msg_01ab"));
        assert_eq!(outbox_event_id("idem#72d93bcd"), None);
        assert_eq!(outbox_event_id("rl#6a140351"), None);
    }

    /// Call records are found by their ids as they are; an id too long for a key has none
    /// (and is no outbox event, so the stream's function skips it).
    #[test]
    fn call_keys_are_the_prefixed_ids_unhashed_and_bounded() {
        let call = "6a0c54f4-8d1e-4c3b-9a47-0c2f9e4b7d11";
        let pk = DynamoStore::call_pk(call).unwrap();
        assert_eq!(pk, format!("call#{call}"));
        assert_eq!(outbox_event_id(&pk), None);
        assert_eq!(
            DynamoStore::call_ref_pk("conv_01").as_deref(),
            Some("callref#conv_01")
        );
        let longest = "x".repeat(MAX_KEY_BYTES - CALL_REF_KEY_PREFIX.len());
        assert_eq!(
            DynamoStore::call_ref_pk(&longest).map(|k| k.len()),
            Some(MAX_KEY_BYTES)
        );
        assert_eq!(DynamoStore::call_ref_pk(&format!("{longest}x")), None);
        assert_eq!(DynamoStore::call_pk(&"y".repeat(MAX_KEY_BYTES)), None);
    }
}
