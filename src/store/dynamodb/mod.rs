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
//! # Failing closed
//! Any error other than a failed condition (unreachable, timed out, throttled past the SDK's
//! retries, or an answer that does not parse) is a [`StoreError`]; the service then answers
//! `503 rate_limit_unavailable` and places no call. Error texts carry operation names and
//! error codes only, never keys.

mod idempotency;
mod item;
mod limit_item;
mod limits;
mod table;

pub use table::create_table;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

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
