//! `cargo run -- migrate`: the versioned SQL of `migrations/` applied in order, each once.
//!
//! Each migration runs as one simple-protocol query holding its SQL and the row that records
//! it in `chamada.schema_migrations`: one implicit transaction, so a migration is applied
//! whole or not at all, and nothing relies on session state (it works through a
//! transaction-mode pooler). A transaction-scoped advisory lock keeps two migrators apart;
//! the SQL is written to be harmless when run again, so running `migrate` twice, or at once
//! from two places, changes nothing the second time.

use tokio_postgres::SimpleQueryMessage;

use super::{connect, pg_error, PgSettings};
use crate::store::StoreError;

/// Every migration: its version, name and SQL, in order. Versions are never reused.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_store",
    include_str!("../../../migrations/0001_store.sql"),
)];

/// The advisory lock migrations hold (an arbitrary, fixed number: "chamada" in ASCII).
const LOCK: i64 = 0x63_68_61_6d_61_64_61;

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The names of the migrations applied now, in order.
    pub applied: Vec<&'static str>,
    /// The version the database is at now.
    pub version: i32,
}

/// Applies every migration the database has not recorded.
pub async fn migrate(settings: &PgSettings) -> Result<Migrated, StoreError> {
    let client = connect(settings, "migrate").await?;
    client
        .batch_execute(&format!(
            "select pg_advisory_xact_lock({LOCK}); \
             create schema if not exists chamada; \
             create table if not exists chamada.schema_migrations ( \
                 version integer primary key, name text not null, \
                 applied_at timestamptz not null default now()); \
             alter table chamada.schema_migrations enable row level security; \
             revoke all on chamada.schema_migrations from public;"
        ))
        .await
        .map_err(|e| pg_error("migrate", e))?;
    let done = client
        .simple_query("select version from chamada.schema_migrations")
        .await
        .map_err(|e| pg_error("migrate", e))?;
    let done: Vec<i32> = done
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let name_sql = name.replace('\'', "''");
        client
            .batch_execute(&format!(
                "select pg_advisory_xact_lock({LOCK});\n{sql}\n;\
                 insert into chamada.schema_migrations (version, name) \
                 values ({version}, '{name_sql}') on conflict (version) do nothing;"
            ))
            .await
            .map_err(|e| pg_error("migrate", e))?;
        applied.push(*name);
    }
    let version = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
    Ok(Migrated { applied, version })
}
