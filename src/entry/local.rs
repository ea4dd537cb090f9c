//! The local server (`cargo run`): every endpoint on `http://localhost:5001` (`PORT`
//! overrides), `.env.local` read when present, embedded defaults otherwise.
//!
//! `cargo run -- create-table` creates the `RATE_LIMIT_TABLE` DynamoDB table (see
//! `docs/DYNAMODB.md`) wherever the AWS settings point, `AWS_ENDPOINT_URL_DYNAMODB` included.
//! `cargo run -- migrate` creates or updates the PostgreSQL schema `DATABASE_URL` points at
//! (`migrations/`, see `docs/POSTGRES.md`).
//! `cargo run -- webhooks list-failed | redeliver <id> | sweep` manages the shared store's
//! outbox.
//!
//! Webhook events are delivered after each answer on the runtime, and the outbox is swept every
//! `WEBHOOK_SWEEP_SECONDS` for windows due later.

use std::future::Future;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::after_answer::AfterAnswer;
use crate::client_ip::ClientIpSource;
use crate::http::page;
use crate::notify::commands::{self, Command};
use crate::store::StoreKind;
use crate::{logging, router, App, Config};

pub const DEFAULT_PORT: u16 = 5001;

/// A sweep of the local server or the command line starts no window after this long.
const CLI_SWEEP_BUDGET: Duration = Duration::from_secs(600);

/// How long a client may take to send a request's head (request line and headers) before the
/// connection is closed. The body has its own bound on every platform
/// ([`crate::http::BODY_READ_TIMEOUT`]).
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the local server until Ctrl-C.
pub fn main() -> ExitCode {
    // Values already in the environment win over `.env.local`.
    let _ = dotenvy::from_filename(".env.local");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chamada: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => runtime.block_on(serve()),
        ["create-table"] => runtime.block_on(create_table()),
        ["migrate"] => runtime.block_on(migrate()),
        ["webhooks", command @ ..] => match webhook_command(command) {
            Some(command) => runtime.block_on(webhooks(command)),
            None => {
                eprintln!("chamada: expected webhooks list-failed | redeliver <id> | sweep");
                ExitCode::FAILURE
            }
        },
        [other, ..] => {
            eprintln!(
                "chamada: unknown command {other:?} (expected none, create-table, migrate or webhooks)"
            );
            ExitCode::FAILURE
        }
    }
}

fn webhook_command(args: &[&str]) -> Option<Command> {
    match args {
        ["list-failed"] => Some(Command::ListFailed),
        ["redeliver", id] => Some(Command::Redeliver { id: id.to_string() }),
        ["sweep"] => Some(Command::Sweep),
        _ => None,
    }
}

/// `cargo run -- webhooks …`: the outbox of the shared store (DynamoDB) as configured.
async fn webhooks(command: Command) -> ExitCode {
    let config = match Config::from_env(ClientIpSource::Socket) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("chamada: {error}");
            return ExitCode::FAILURE;
        }
    };
    if config.store == StoreKind::Memory {
        eprintln!("chamada: the memory store's outbox lives inside the server process; set RATE_LIMIT_TABLE or RATE_LIMIT_STORE=postgres to manage a shared one");
        return ExitCode::FAILURE;
    }
    let app = App::build(config).await;
    let Some(deliverer) = app.deliverer() else {
        eprintln!("chamada: set MAKE_WEBHOOK_URL: without a webhook there is no outbox");
        return ExitCode::FAILURE;
    };
    match commands::run(&deliverer, &command, CLI_SWEEP_BUDGET).await {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chamada: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sweeps the outbox every `every`, from start-up on (events left by a stopped process are
/// delivered at once).
fn sweep_every(app: &App, every: Duration) {
    let Some(deliverer) = app.deliverer() else {
        return;
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = deliverer.sweep(CLI_SWEEP_BUDGET).await {
                tracing::error!(error = %error, "Outbox sweep failed");
            }
        }
    });
}

/// Applies the migrations of `migrations/` to the database of `DATABASE_URL` (whatever
/// `RATE_LIMIT_STORE` says: the schema is made before the store is switched to it).
async fn migrate() -> ExitCode {
    let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        eprintln!("chamada: set DATABASE_URL to the database to migrate");
        return ExitCode::FAILURE;
    };
    let ca = std::env::var("DATABASE_CA_CERT")
        .ok()
        .filter(|ca| !ca.trim().is_empty());
    let url = secrecy::SecretString::from(url.trim());
    let settings = match crate::store::postgres::PgSettings::parse(&url, ca.as_deref()) {
        Ok(settings) => settings,
        Err((name, why)) => {
            // The reason, never the value (it holds the password).
            eprintln!("chamada: {name} {why}");
            return ExitCode::FAILURE;
        }
    };
    match crate::store::postgres::migrate(&settings).await {
        Ok(migrated) if migrated.applied.is_empty() => {
            println!(
                "Database up to date (schema chamada, version {})",
                migrated.version
            );
            ExitCode::SUCCESS
        }
        Ok(migrated) => {
            println!(
                "Applied {} (schema chamada, version {}; Row Level Security on every table)",
                migrated.applied.join(", "),
                migrated.version
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            // The database's own words (a SQL error names no secret), never the URL.
            let mut why = error.to_string();
            let mut cause = std::error::Error::source(&error);
            while let Some(inner) = cause {
                why = format!("{why}: {inner}");
                cause = inner.source();
            }
            eprintln!("chamada: migrate failed: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the limits table named by `RATE_LIMIT_TABLE`, with TTL on `expires_at`.
async fn create_table() -> ExitCode {
    let Some(table) = std::env::var("RATE_LIMIT_TABLE")
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        eprintln!("chamada: set RATE_LIMIT_TABLE to the table to create");
        return ExitCode::FAILURE;
    };
    let table = table.trim();
    let sdk = crate::store::dynamodb::config_loader().load().await;
    if sdk.region().is_none() {
        eprintln!("chamada: set AWS_REGION (any region for a local DynamoDB)");
        return ExitCode::FAILURE;
    }
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    match crate::store::dynamodb::create_table(&client, table).await {
        Ok(true) => {
            println!("Created table {table} (pk: S, on demand, TTL on expires_at)");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("Table {table} already exists; TTL on expires_at is on");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("chamada: cannot create table {table}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let mut config = match Config::from_env(ClientIpSource::Socket) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("chamada: {error}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(config.log_format);
    let port = match std::env::var("PORT") {
        Ok(value) => match value.trim().parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("chamada: PORT must be a port number, got {value:?}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => DEFAULT_PORT,
    };
    let listener = match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("chamada: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    // The page this server serves calls the API from its own origin.
    for own in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        if !config.allowed_origins.contains(&own) {
            config.allowed_origins.push(own);
        }
    }
    let sweep = config.webhook.as_ref().map(|webhook| webhook.sweep_every);
    let app = App::build(config)
        .await
        .with_after_answer(AfterAnswer::Spawn);
    if let Some(every) = sweep {
        sweep_every(&app, every);
    }
    println!(
        "Chamada listening on http://localhost:{port} ({})",
        app.describe()
    );
    app.report_problems();
    // The API router plus the "call me" page (local server only; Vercel serves `public/`).
    let app = Arc::new(app);
    let service = page::add_routes(router(app.clone()), &app.config);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_on(listener, service, HEAD_READ_TIMEOUT, shutdown).await;
    ExitCode::SUCCESS
}

/// Serves `service` on `listener` over HTTP/1.1 until `shutdown` completes, then lets the
/// connections in flight finish. Every request carries the peer address (`ConnectInfo`); a
/// client that has not sent a whole request head within `head_timeout` is disconnected.
pub async fn serve_on(
    listener: TcpListener,
    service: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: pause rather than spin.
                Err(error) => {
                    tracing::warn!(error = %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), per_request));
        tokio::spawn(async move {
            // A client that goes away or times out ends its own connection; nothing to report.
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
}
