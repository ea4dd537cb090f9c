//! The PostgreSQL store (Supabase or any PostgreSQL 13+): limits (docs/API.md §5),
//! idempotency records (§8), the webhook outbox (§9) and call records (§15), in the schema
//! `chamada` that `cargo run -- migrate` creates (`migrations/*.sql`, [`migrate`]).
//!
//! # One round trip per port call, behind a transaction-mode pooler
//! Each port call is one statement — a call of one of the migration's SQL functions, or one
//! plain `INSERT`/`UPDATE`/`SELECT` — sent with [`Client::query_typed`]: Parse, Bind,
//! Describe, Execute and Sync of the *unnamed* statement in one write, answered in one read.
//! No named prepared statement, no `SET`, no session state outlives the statement's own
//! transaction, so Supabase's Supavisor (port 6543) and PgBouncer in transaction mode can
//! hand every statement to another server connection. Admission locks its limit rows in key
//! order inside the function, so it is exact under contention without retries.
//!
//! # Keys
//! As on DynamoDB ([`KeyHasher`]): limits `rl#<hex HMAC>`, idempotency records `idem#<hex
//! HMAC>`, the fingerprint keyed-hashed too; outbox and call ids as they are (random ids).
//!
//! # Failing closed
//! One connection per process (a warm serverless instance), opened on first use, within
//! [`CONNECT_TIMEOUT`]; every statement within [`STATEMENT_TIMEOUT`] (the functions also bound
//! their lock waits with `lock_timeout`). A connection that fails, closes or times out is
//! dropped and the next call opens a new one: a database restart costs the calls made while it
//! is down (`503 rate_limit_unavailable`, no call placed), never a restart of Chamada. Error
//! texts carry the operation and a SQLSTATE at most, never keys, values or the connection
//! string; the driver's error is kept as the source.
//!
//! # TLS
//! rustls (ring), always verifying the server's certificate and name: against
//! `DATABASE_CA_CERT` when set (Supabase's own CA: docs/POSTGRES.md), else Mozilla's roots
//! (webpki-roots). A connection to a host that is not loopback is always encrypted
//! (`sslmode=prefer` becomes `require`; `disable` is refused by the configuration).

mod calls;
mod idempotency;
mod limits;
pub mod migrate;
mod outbox;
mod tls;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use self::tls::MakeRustls;
use super::keys::KeyHasher;
use super::StoreError;

pub use migrate::{migrate, Migrated};

/// Connecting, TLS and authentication included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
/// One statement, from sending it to its last row.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(2000);

/// What the store needs to connect: the connection string as read (kept secret: it holds the
/// password) and the certificates of the CA that signs the server's, if not a public one.
#[derive(Clone)]
pub struct PgSettings {
    config: tokio_postgres::Config,
    tls: MakeRustls,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection string, user or password.
        f.debug_struct("PgSettings").finish_non_exhaustive()
    }
}

/// Why a connection setting was refused, in words safe to log (never the value).
pub type Refusal = &'static str;

impl PgSettings {
    /// Reads `DATABASE_URL` (a `postgres://` URL or `key=value` pairs) and `DATABASE_CA_CERT`
    /// (PEM text, or the path of a PEM file).
    pub fn parse(
        url: &SecretString,
        ca: Option<&str>,
    ) -> Result<PgSettings, (&'static str, Refusal)> {
        let mut config = parse_url(url.expose_secret()).map_err(|why| ("DATABASE_URL", why))?;
        let tls = MakeRustls::new(ca).map_err(|why| ("DATABASE_CA_CERT", why))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("chamada");
        Ok(PgSettings { config, tls })
    }
}

/// The connection string as tokio-postgres reads it, made to verify and encrypt.
fn parse_url(url: &str) -> Result<tokio_postgres::Config, Refusal> {
    // libpq's verify modes: this client always verifies the certificate and the host name.
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|_| {
        "not a PostgreSQL connection string (postgres://user:password@host:port/database)"
    })?;
    if config.get_hosts().is_empty() {
        return Err("names no host");
    }
    if config.get_user().is_none() {
        return Err("names no user");
    }
    let remote = config.get_hosts().iter().any(|host| match host {
        Host::Tcp(name) => !is_loopback(name),
        #[cfg(unix)]
        Host::Unix(_) => false,
    });
    if remote {
        match config.get_ssl_mode() {
            SslMode::Disable => return Err(
                "sslmode=disable to a host that is not loopback: the connection must be encrypted",
            ),
            _ => {
                config.ssl_mode(SslMode::Require);
            }
        }
    }
    Ok(config)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The PostgreSQL store: one connection, opened on first use and again after a failure.
pub struct PgStore {
    settings: PgSettings,
    client: Mutex<Option<Arc<Client>>>,
    hasher: KeyHasher,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A statement's parameters: each value with its type (the unnamed statement is parsed with
/// them, so the server never has to guess).
type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

impl PgStore {
    /// A store on `settings`, keying hashes with `hash_key`. Connects on first use.
    pub fn new(settings: PgSettings, hash_key: &SecretString) -> Self {
        PgStore {
            settings,
            client: Mutex::new(None),
            hasher: KeyHasher::new(hash_key),
        }
    }

    /// The open connection, or a new one.
    async fn client(&self, operation: &'static str) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        *slot = None;
        let client = connect(&self.settings, operation).await?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Drops `client` if it is still the store's connection: the next call opens another.
    async fn forget(&self, client: &Arc<Client>) {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
    }

    /// Runs one statement (one round trip) and returns its rows.
    async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(operation).await?;
        let sent = tokio::time::timeout(STATEMENT_TIMEOUT, client.query_typed(sql, params)).await;
        match sent {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(error)) => {
                // A refusal by the database (a SQLSTATE) leaves the connection usable;
                // anything else may not have.
                if error.code().is_none() {
                    self.forget(&client).await;
                }
                Err(pg_error(operation, error))
            }
            Err(_) => {
                // The statement may still be running on this connection: start afresh.
                self.forget(&client).await;
                Err(StoreError::unavailable(operation, "timed out"))
            }
        }
    }

    /// The one row a statement answers.
    async fn query_one(
        &self,
        operation: &'static str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row, StoreError> {
        self.query(operation, sql, params)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::corrupt(format!("{operation} answered no row")))
    }
}

/// A new connection on `settings`, its background task spawned.
async fn connect(
    settings: &PgSettings,
    operation: &'static str,
) -> Result<Arc<Client>, StoreError> {
    let connecting = settings.config.connect(settings.tls.clone());
    let (client, connection) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(error)) => return Err(pg_error(operation, error)),
        Err(_) => return Err(StoreError::unavailable(operation, "connect timed out")),
    };
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(error = %failure(&error), "PostgreSQL connection closed");
        }
    });
    Ok(Arc::new(client))
}

/// A driver failure in words safe to log: the SQLSTATE of a refusal, or the kind of failure.
fn failure(error: &tokio_postgres::Error) -> Cow<'static, str> {
    if let Some(code) = error.code() {
        return format!("refused: SQLSTATE {}", code.code()).into();
    }
    if error.is_closed() {
        return "connection closed".into();
    }
    // tokio-postgres's own words for its TLS step (an unverified certificate, a wrong name).
    if error.to_string().contains("TLS handshake") {
        return "TLS handshake failed".into();
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => "unreachable".into(),
            };
        }
        source = cause.source();
    }
    "failed".into()
}

fn pg_error(operation: &'static str, error: tokio_postgres::Error) -> StoreError {
    StoreError::unavailable(operation, failure(&error)).caused_by(error)
}

/// A time or count for the database (which has no unsigned integers).
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A column the database answered, as an unsigned number.
fn unsigned(row: &Row, column: &str) -> Result<u64, StoreError> {
    let value: i64 = get(row, column)?;
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("negative {column}")))
}

/// A column of a row, typed.
fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(column).map_err(|error| {
        StoreError::corrupt(format!("column {column} unreadable")).caused_by(error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Result<tokio_postgres::Config, Refusal> {
        parse_url(url)
    }

    #[test]
    fn a_remote_host_is_always_encrypted_and_verify_modes_are_read_as_require() {
        let pooler = parsed(
            "postgres://postgres.ref:fake-password@aws-0-eu-west-1.pooler.supabase.com:6543/postgres",
        )
        .unwrap();
        assert_eq!(pooler.get_ssl_mode(), SslMode::Require);
        assert_eq!(pooler.get_ports(), [6543]);
        let verify = parsed(
            "postgres://chamada:fake-password@db.example.test:5432/postgres?sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(verify.get_ssl_mode(), SslMode::Require);
        assert!(
            parsed("postgres://chamada:fake@db.example.test/postgres?sslmode=disable").is_err()
        );
    }

    #[test]
    fn loopback_may_go_unencrypted_and_nonsense_is_refused_without_repeating_it() {
        let local = parsed("postgres://chamada@127.0.0.1:5432/chamada?sslmode=disable").unwrap();
        assert_eq!(local.get_ssl_mode(), SslMode::Disable);
        assert!(parsed("postgres://chamada@localhost/chamada?sslmode=disable").is_ok());
        assert!(parsed("postgres://chamada@[::1]:5432/chamada?sslmode=disable").is_ok());
        for bad in [
            "not a url",
            "postgres://",
            "postgres://host-only/db",
            "mysql://a:b@c/d",
        ] {
            let refusal = parsed(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(!refusal.contains(bad), "{refusal}");
        }
    }

    #[test]
    fn settings_debug_shows_no_connection_string() {
        let url = SecretString::from("postgres://chamada:fake-password-123@127.0.0.1/chamada");
        let settings = PgSettings::parse(&url, None).unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("fake-password-123"), "{shown}");
    }
}
