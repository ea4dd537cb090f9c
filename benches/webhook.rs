//! Does a slow webhook receiver hold the answer? (issue "Outbox", docs/PERFORMANCE.md)
//!
//!     cargo bench --bench webhook
//!     SAMPLES=2000 cargo bench --bench webhook
//!
//! Three apps as the local server builds them (delivery spawned after the answer, the memory
//! store, the dry-run provider, logs off): one without a webhook, one whose receiver answers at
//! once, one whose receiver takes 20 s to answer every event. Admitted authenticated calls go
//! to each in turn (A, B, C, A, B, C, …, so drift on a shared machine hits all alike), each timed from the request to the whole
//! answer, through the real router in process. Prints p50, p99 and max of each and their
//! ratios. The receiver's connections stay open for 20 s: SAMPLES is bounded by the process's
//! file descriptors.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use chamada::after_answer::AfterAnswer;
use chamada::{router, App, Config};
use http::{Request, StatusCode};
use tower::ServiceExt;

/// A fake key, visibly fake.
const KEY: &str = "test-key-0123456789abcdef0123456789abcdef";
const RECEIVER_DELAY: Duration = Duration::from_secs(20);

fn config(webhook: Option<&str>) -> Config {
    let mut vars: Vec<(&str, &str)> = vec![
        ("APP_ENV", "development"),
        ("PRODUCTION_API_KEY", KEY),
        ("CALL_PROVIDER", "dry-run"),
        ("RATE_LIMIT_STORE", "memory"),
        ("MAX_REQUESTS_PER_IP", "1000"),
        ("MAX_CALLS_PER_NUMBER", "1000"),
        ("RATE_LIMIT_WINDOW", "1"),
        ("WEBHOOK_TIMEOUT", "30"),
    ];
    if let Some(url) = webhook {
        vars.push(("MAKE_WEBHOOK_URL", url));
    }
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("config loads")
}

async fn app(webhook: Option<&str>) -> Router {
    let app = App::build(config(webhook))
        .await
        .with_after_answer(AfterAnswer::Spawn);
    assert!(app.config.problems.is_empty(), "{:?}", app.config.problems);
    router(Arc::new(app))
}

/// A receiver that answers every event after `delay`.
async fn receiver(delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hook = axum::routing::post(move || async move {
        tokio::time::sleep(delay).await;
        StatusCode::OK
    });
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/hook", hook))
            .await
            .unwrap()
    });
    url
}

async fn timed_call(router: &Router, i: u32) -> Duration {
    let body = format!(r#"{{"phone_number":"+35191{:07}"}}"#, i % 1000);
    let mut request = Request::post("/api/start_call")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::from(body))
        .unwrap();
    let peer = SocketAddr::from((Ipv4Addr::from(0xC633_6400 + i % 1000), 40_000));
    request.extensions_mut().insert(ConnectInfo(peer));
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn main() {
    let samples: u32 = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (fast_url, slow_url) = (receiver(Duration::ZERO).await, receiver(RECEIVER_DELAY).await);
        let apps = [
            ("no webhook", app(None).await),
            ("receiver answering at once", app(Some(&fast_url)).await),
            ("receiver taking 20 s", app(Some(&slow_url)).await),
        ];
        for i in 0..100 {
            for (_, router) in &apps {
                timed_call(router, i).await;
            }
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); apps.len()];
        for i in 0..samples {
            for (n, (_, router)) in apps.iter().enumerate() {
                times[n].push(timed_call(router, i).await);
            }
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("start_call, {samples} admitted calls each, interleaved (µs):");
        println!("  {:<30} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
        for ((name, _), t) in apps.iter().zip(times.iter_mut()) {
            t.sort();
            println!(
                "  {name:<30} {:>8.1} {:>8.1} {:>8.1}",
                us(percentile(t, 0.5)),
                us(percentile(t, 0.99)),
                us(t[t.len() - 1])
            );
        }
        let ratio = |a: &[Duration], b: &[Duration], p: f64| us(percentile(a, p)) / us(percentile(b, p));
        println!(
            "  slow / fast receiver: p50 {:.2}×  p99 {:.2}×;  fast receiver / none: p50 {:.2}×  p99 {:.2}×",
            ratio(&times[2], &times[1], 0.5),
            ratio(&times[2], &times[1], 0.99),
            ratio(&times[1], &times[0], 0.5),
            ratio(&times[1], &times[0], 0.99)
        );
    });
    // The receivers' 20 s answers are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
}
