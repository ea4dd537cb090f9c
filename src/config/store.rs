//! The store section: which store holds the limits, its table, and the key that hashes what
//! it keeps.

use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;
use super::{DEVELOPMENT_HASH_KEY, MIN_HASH_KEY_LEN};
use crate::store::StoreKind;

/// The store section as read.
pub(super) struct StoreSettings {
    pub(super) kind: StoreKind,
    pub(super) explicit: bool,
    pub(super) table: Option<String>,
    pub(super) hash_key: SecretString,
}

pub(super) fn read(r: &mut Reader) -> StoreSettings {
    let production = r.production;
    let table = r.value("RATE_LIMIT_TABLE");
    let (kind, explicit) = match r.value("RATE_LIMIT_STORE").as_deref() {
        Some("memory") => (StoreKind::Memory, true),
        Some("dynamodb") => (StoreKind::DynamoDb, true),
        Some(_) => {
            r.refuse("RATE_LIMIT_STORE", "expected memory or dynamodb");
            (StoreKind::Memory, true)
        }
        None if table.is_some() => (StoreKind::DynamoDb, false),
        None => (StoreKind::Memory, false),
    };
    if kind == StoreKind::DynamoDb && table.is_none() {
        r.missing(
            "RATE_LIMIT_TABLE",
            "RATE_LIMIT_STORE=dynamodb needs the table name in RATE_LIMIT_TABLE",
        );
    }
    if production && kind == StoreKind::Memory && !explicit {
        // Serverless instances share no memory: production must name its store.
        r.missing(
            "RATE_LIMIT_TABLE",
            "production needs a shared store: set RATE_LIMIT_TABLE (DynamoDB), or RATE_LIMIT_STORE=memory to count per instance",
        );
    }
    // Shared stores keep keyed hashes of IPs and numbers: production needs its own key.
    let hash_key_required = production && kind == StoreKind::DynamoDb;
    let hash_key = match r.secret("RATE_LIMIT_HASH_KEY") {
        Some(key) if hash_key_required && key.expose_secret().len() < MIN_HASH_KEY_LEN => {
            r.refuse(
                "RATE_LIMIT_HASH_KEY",
                "needs 32 characters or more in production",
            );
            key
        }
        Some(key) => key,
        None => {
            if hash_key_required && !r.has_problem("RATE_LIMIT_HASH_KEY") {
                r.missing(
                    "RATE_LIMIT_HASH_KEY",
                    "production on DynamoDB needs a secret of 32 characters or more",
                );
            }
            SecretString::from(DEVELOPMENT_HASH_KEY)
        }
    };
    StoreSettings {
        kind,
        explicit,
        table,
        hash_key,
    }
}
