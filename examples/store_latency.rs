//! Latency of the store operations, memory store next to the DynamoDB store against dynoxide
//! (a DynamoDB-compatible server on 127.0.0.1, over HTTP) and, when `DATABASE_URL` is set, the
//! PostgreSQL store on that database (migrated first; `DATABASE_CA_CERT` read too; a second
//! URL in `DATABASE_URL_2`, e.g. through PgBouncer, is measured as well). Figures for
//! docs/DYNAMODB.md and docs/PERFORMANCE.md:
//!
//!     cargo run --release --example store_latency
//!     DATABASE_URL=postgres://…/bench cargo run --release --example store_latency
//!
//! Sequential operations on one connection, so the figures are per-request latency (client,
//! signing, HTTP, emulator), not throughput. Not a test: nothing is asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use chamada::store::dynamodb::{self, DynamoStore};
use chamada::store::memory::MemoryStore;
use chamada::store::postgres::{self, PgSettings, PgStore};
use chamada::store::{IdempotencyStore, LimitCheck, LimitKind, RateLimiter, Window};
use secrecy::SecretString;

const N: usize = 2000;
const NOON_MS: u64 = 1_795_867_200_000;

fn check(kind: LimitKind, key: String) -> LimitCheck {
    LimitCheck {
        kind,
        key,
        max: 3,
        window: Window::Rolling { ms: 86_400_000 },
    }
}

/// p50 and p99 of `N` runs of `op(i)`.
async fn measure<F, Fut>(mut op: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..N / 10 {
        op(N * 10 + i).await; // warm up
    }
    let mut times = Vec::with_capacity(N);
    for i in 0..N {
        let start = Instant::now();
        op(i).await;
        times.push(start.elapsed());
    }
    times.sort();
    (times[N / 2], times[N * 99 / 100])
}

async fn run(name: &str, limiter: Arc<dyn RateLimiter>, idempotency: Arc<dyn IdempotencyStore>) {
    let rows = [
        (
            "admit, 1 limit (api)",
            measure(|i| {
                let l = limiter.clone();
                async move {
                    let c = [check(LimitKind::Number, format!("number:+3519{i:08}"))];
                    assert!(l.admit(&c, NOON_MS).await.is_ok());
                }
            })
            .await,
        ),
        (
            "admit, 2 limits (web)",
            measure(|i| {
                let l = limiter.clone();
                async move {
                    let c = [
                        check(LimitKind::Ip, format!("ip:10.0.{}.{}", i / 250, i % 250)),
                        check(LimitKind::Number, format!("number:+3518{i:08}")),
                    ];
                    assert!(l.admit(&c, NOON_MS).await.is_ok());
                }
            })
            .await,
        ),
        (
            "refuse, 2 limits (ip full)",
            measure(|i| {
                let l = limiter.clone();
                async move {
                    let c = [
                        check(LimitKind::Ip, "ip:10.0.0.0".into()),
                        check(LimitKind::Number, format!("number:+3517{i:08}")),
                    ];
                    assert!(l.admit(&c, NOON_MS + 1).await.is_ok());
                }
            })
            .await,
        ),
        (
            "idempotency begin",
            measure(|i| {
                let s = idempotency.clone();
                async move {
                    assert!(s.begin(&format!("idem:{i}"), "fp", NOON_MS).await.is_ok());
                }
            })
            .await,
        ),
    ];
    for (what, (p50, p99)) in rows {
        println!(
            "| {name} | {what} | {:.3} ms | {:.3} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}

#[tokio::main]
async fn main() {
    let memory = Arc::new(MemoryStore::new());
    println!("| store | operation | p50 | p99 |\n|---|---|---|---|");
    run("memory", memory.clone(), memory).await;

    let db = dynoxide::Database::memory().expect("in-memory database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(dynoxide::server::serve_with_shutdown(
        listener,
        db,
        std::future::pending(),
    ));
    let sdk = dynamodb::config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "test-access-key-id",
            "test-secret-access-key",
            None,
            None,
            "bench",
        ))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    dynamodb::create_table(&client, "bench").await.unwrap();
    let store = Arc::new(DynamoStore::new(
        client,
        "bench",
        &SecretString::from("test-hash-key-0123456789abcdef0123456789"),
    ));
    run("dynamodb (dynoxide)", store.clone(), store).await;

    let ca = std::env::var("DATABASE_CA_CERT").ok();
    for (name, variable) in [
        ("postgres", "DATABASE_URL"),
        ("postgres (second URL)", "DATABASE_URL_2"),
    ] {
        let Ok(url) = std::env::var(variable) else {
            continue;
        };
        let settings = PgSettings::parse(&SecretString::from(url), ca.as_deref())
            .unwrap_or_else(|(name, why)| panic!("{name} {why}"));
        postgres::migrate(&settings).await.expect("migrate");
        let store = Arc::new(PgStore::new(
            settings,
            &SecretString::from("test-hash-key-0123456789abcdef0123456789"),
        ));
        run(name, store.clone(), store).await;
    }
}
