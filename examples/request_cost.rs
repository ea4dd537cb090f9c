//! Instructions per request, for callgrind (docs/PERFORMANCE.md): wall time on a shared 2-core
//! machine is noisy, instruction counts are not. Sends `N` requests of one kind through the
//! router in process (memory store, dry-run provider, like `benches/http.rs`); only
//! `measured` is counted:
//!
//!     cargo build --release --example request_cost
//!     valgrind --tool=callgrind --toggle-collect='*request_cost*measured*' \
//!         --callgrind-out-file=/dev/null target/release/examples/request_cost admitted 2000
//!
//! (`scripts/callgrind` runs every kind and divides.) Kinds: `admitted`, `admitted-logs`,
//! `health`, `401`, `403`, `422`, `429`. Requests are built outside `measured`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use chamada::clock::ManualClock;
use chamada::{router, App, Config};
use http::{Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789abcdef0123456789abcdef";
const NOON_MS: u64 = 1_795_867_200_000;
const ORIGIN: &str = "http://localhost:3000";
const POOL: u32 = 500;

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "admitted".into());
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(1000);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limits: &[(&str, &str)] = if kind == "429" {
        &[
            ("MAX_CALLS_PER_NUMBER", "1"),
            ("RATE_LIMIT_WINDOW", "86400"),
        ]
    } else {
        &[]
    };
    let clock = ManualClock::at(NOON_MS);
    let app = rt
        .block_on(App::build(config(limits)))
        .with_clock(Arc::new(clock.clone()));
    let router = router(Arc::new(app));
    if kind == "admitted-logs" {
        // The production JSON subscriber of `logging::init`, writing to a sink.
        let subscriber = chamada::logging::json_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            std::io::sink,
        );
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    }

    let (expect, make): (StatusCode, Box<dyn Fn(u32) -> Request<Body>>) = match kind.as_str() {
        "admitted" | "admitted-logs" => (StatusCode::OK, Box::new(browser_call)),
        "health" => (
            StatusCode::OK,
            Box::new(|i| {
                let mut r = Request::get("/api/health").body(Body::empty()).unwrap();
                r.extensions_mut().insert(ConnectInfo(peer(i)));
                r
            }),
        ),
        "401" => (
            StatusCode::UNAUTHORIZED,
            Box::new(|i| {
                post(
                    r#"{"phone_number":"+351912345678"}"#,
                    &[(
                        "authorization",
                        "Bearer test-key-wrong-wrong-wrong-wrong-wrong-wrong",
                    )],
                    i,
                )
            }),
        ),
        "403" => (
            StatusCode::FORBIDDEN,
            Box::new(|i| {
                post(
                    r#"{"phone_number":"+351912345678"}"#,
                    &[("origin", "https://evil.example")],
                    i,
                )
            }),
        ),
        "422" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Box::new(|i| {
                post(
                    r#"{"phone_number":"+351800123456","name":"Maria"}"#,
                    &[("origin", ORIGIN)],
                    i,
                )
            }),
        ),
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            Box::new(|i| {
                post(
                    r#"{"phone_number":"+351910000000","name":"Maria"}"#,
                    &[("origin", ORIGIN)],
                    i,
                )
            }),
        ),
        other => panic!("unknown kind {other}"),
    };
    if kind == "429" {
        // Fill the number's limit.
        assert_eq!(send(&rt, &router, browser_call(0)), StatusCode::OK);
    }
    // One warm-up request of the kind (first-use costs are start-up, not per request).
    assert_eq!(send(&rt, &router, make(POOL + 1)), expect);
    for i in 0..n {
        clock.advance_ms(1);
        let request = make(i);
        let status = measured(&rt, &router, request);
        assert_eq!(status, expect);
    }
}

/// The counted part: one request through the router, answer read.
#[inline(never)]
fn measured(rt: &Runtime, router: &Router, request: Request<Body>) -> StatusCode {
    send(rt, router, request)
}

fn send(rt: &Runtime, router: &Router, request: Request<Body>) -> StatusCode {
    rt.block_on(async {
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        status
    })
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(&str, &str)> = vec![
        ("APP_ENV", "development"),
        ("PRODUCTION_API_KEY", KEY),
        ("CALL_PROVIDER", "dry-run"),
        ("RATE_LIMIT_STORE", "memory"),
        ("ALLOWED_COUNTRIES", "PT"),
        ("ALLOWED_ORIGINS", ORIGIN),
        ("CLIENT_IP_SOURCE", "socket"),
        ("MAX_REQUESTS_PER_IP", "1000"),
        ("MAX_CALLS_PER_NUMBER", "1000"),
        ("MAX_CALLS_PER_DAY", "10000000"),
        ("RATE_LIMIT_WINDOW", "1"),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("config loads")
}

fn peer(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0xC633_6400 + i % POOL), 40_000))
}

fn browser_call(i: u32) -> Request<Body> {
    let body = format!(
        r#"{{"phone_number":"+35191{:07}","name":"Maria"}}"#,
        i % POOL
    );
    post(&body, &[("origin", ORIGIN)], i)
}

fn post(body: &str, headers: &[(&str, &str)], i: u32) -> Request<Body> {
    let mut builder = Request::post("/api/start_call").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::from(body.to_string())).unwrap();
    request.extensions_mut().insert(ConnectInfo(peer(i)));
    request
}
