//! The store section: which store holds the limits, its table or database, and the key that
//! hashes what it keeps.

use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;
use super::{DEVELOPMENT_HASH_KEY, MIN_HASH_KEY_LEN};
use crate::store::postgres::PgSettings;
use crate::store::StoreKind;

/// Supabase's browser variables: public by design, never what guards the limits.
const SUPABASE_PUBLIC: [&str; 2] = ["NEXT_PUBLIC_SUPABASE_URL", "NEXT_PUBLIC_SUPABASE_ANON_KEY"];

/// The store section as read.
pub(super) struct StoreSettings {
    pub(super) kind: StoreKind,
    pub(super) explicit: bool,
    pub(super) table: Option<String>,
    pub(super) database: Option<PgSettings>,
    pub(super) hash_key: SecretString,
}

pub(super) fn read(r: &mut Reader) -> StoreSettings {
    let production = r.production;
    let table = r.value("RATE_LIMIT_TABLE");
    let (kind, explicit) = match r.value("RATE_LIMIT_STORE").as_deref() {
        Some("memory") => (StoreKind::Memory, true),
        Some("dynamodb") => (StoreKind::DynamoDb, true),
        Some("postgres") => (StoreKind::Postgres, true),
        Some(_) => {
            r.refuse("RATE_LIMIT_STORE", "expected memory, dynamodb or postgres");
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
    let database = database(r, kind);
    if production && kind == StoreKind::Memory && !explicit && !r.has_problem("DATABASE_URL") {
        // Serverless instances share no memory: production must name its store.
        r.missing(
            "RATE_LIMIT_TABLE",
            "production needs a shared store: set RATE_LIMIT_TABLE (DynamoDB), RATE_LIMIT_STORE=postgres with DATABASE_URL, or RATE_LIMIT_STORE=memory to count per instance",
        );
    }
    // Shared stores keep keyed hashes of IPs and numbers: production needs its own key.
    let hash_key_required = production && kind != StoreKind::Memory;
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
                    "production on a shared store needs a secret of 32 characters or more",
                );
            }
            SecretString::from(DEVELOPMENT_HASH_KEY)
        }
    };
    StoreSettings {
        kind,
        explicit,
        table,
        database,
        hash_key,
    }
}

/// `DATABASE_URL` and `DATABASE_CA_CERT` for the `postgres` store. Supabase's public browser
/// variables alone are explained, never used: the anon key guards nothing.
fn database(r: &mut Reader, kind: StoreKind) -> Option<PgSettings> {
    let url = r.secret("DATABASE_URL");
    let ca = r.value("DATABASE_CA_CERT");
    let supabase_public = SUPABASE_PUBLIC.iter().any(|name| r.value(name).is_some());
    if url.is_none() && (kind == StoreKind::Postgres || supabase_public) {
        r.missing(
            "DATABASE_URL",
            if supabase_public {
                "NEXT_PUBLIC_SUPABASE_URL and NEXT_PUBLIC_SUPABASE_ANON_KEY are public browser keys and cannot guard the limits: set DATABASE_URL to the database's connection string (Supabase: Connect, Transaction pooler, port 6543) and RATE_LIMIT_STORE=postgres"
            } else {
                "RATE_LIMIT_STORE=postgres needs the connection string in DATABASE_URL"
            },
        );
        return None;
    }
    if supabase_public && kind != StoreKind::Postgres {
        r.missing(
            "RATE_LIMIT_STORE",
            "Supabase's variables are set but the limits are not in its database: set RATE_LIMIT_STORE=postgres (the anon key is never used)",
        );
    }
    if kind != StoreKind::Postgres {
        return None;
    }
    match PgSettings::parse(&url?, ca.as_deref()) {
        Ok(settings) => Some(settings),
        Err(("DATABASE_CA_CERT", why)) => {
            r.refuse("DATABASE_CA_CERT", why);
            None
        }
        Err((_, why)) => {
            r.refuse("DATABASE_URL", why);
            None
        }
    }
}
