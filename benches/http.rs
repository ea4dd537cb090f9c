//! The in-process cost of one request (issue 6), with divan: time per request and the heap
//! allocations it makes (divan's `AllocProfiler`, counted only inside the timed code).
//!
//!     cargo bench --bench http                          # every benchmark
//!     cargo bench --bench http -- start_call            # a filter
//!     cargo bench --bench http -- --sample-count 30     # shorter
//!
//! Everything runs through the real router (`tower::ServiceExt::oneshot`, no socket) on a
//! current-thread runtime, the memory store and the dry-run provider, as `cargo run` does.
//! Requests are built outside the timed code. Admitted requests rotate through 500 numbers and
//! 500 client addresses while a manual clock moves 1 ms per request under a 1 s window, so the
//! limiter admits every one of them and its maps stay at a steady size. Logging is off (no
//! subscriber) except in `with_json_logs`, which writes the production JSON lines to a sink.
//! See docs/PERFORMANCE.md for the figures.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use chamada::clock::ManualClock;
use chamada::phone::PhonePolicy;
use chamada::store::memory::MemoryStore;
use chamada::store::{Admission, LimitCheck, LimitKind, RateLimiter, Window};
use chamada::{router, App, Config};
use divan::{AllocProfiler, Bencher};
use http::{Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

/// A fake key, visibly fake.
const KEY: &str = "test-key-0123456789abcdef0123456789abcdef";
const NOON_MS: u64 = 1_795_867_200_000;
const ORIGIN: &str = "http://localhost:3000";
/// Distinct numbers and addresses the admitted requests rotate through.
const POOL: u32 = 500;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: Vec<(String, String)> = [
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
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Config::load(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("config loads")
}

/// The service as `cargo run` builds it, on a manual clock.
struct Service {
    rt: Runtime,
    router: Router,
    clock: ManualClock,
}

impl Service {
    fn new(extra: &[(&str, &str)]) -> Service {
        let rt = runtime();
        let clock = ManualClock::at(NOON_MS);
        let app = rt
            .block_on(App::build(config(extra)))
            .with_clock(Arc::new(clock.clone()));
        assert!(app.config.problems.is_empty(), "{:?}", app.config.problems);
        Service {
            rt,
            router: router(Arc::new(app)),
            clock,
        }
    }

    /// Sends one request and reads the whole answer.
    fn send(&self, request: Request<Body>) -> (StatusCode, bytes::Bytes) {
        self.rt.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            (status, body)
        })
    }
}

fn peer(i: u32) -> SocketAddr {
    // 198.51.100.0 onwards (TEST-NET-2), one address per request slot.
    SocketAddr::from((Ipv4Addr::from(0xC633_6400 + i % POOL), 40_000))
}

/// A valid Portuguese mobile number, one of `POOL`.
fn number(i: u32) -> String {
    format!("+35191{:07}", i % POOL)
}

fn post(body: String, headers: &[(&str, &str)], from: SocketAddr) -> Request<Body> {
    let mut builder = Request::post("/api/start_call").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::from(body)).expect("request");
    request.extensions_mut().insert(ConnectInfo(from));
    request
}

fn browser_call(i: u32) -> Request<Body> {
    let body = format!(r#"{{"phone_number":"{}","name":"Maria"}}"#, number(i));
    post(body, &[("origin", ORIGIN)], peer(i))
}

/// Admitted `start_call` requests, as a browser and as a server with a key.
mod start_call {
    use super::*;

    /// Browser (anonymous, `Origin`): per-IP, per-number and per-day limits, dry-run dispatch.
    #[divan::bench]
    fn admitted_browser(bencher: Bencher) {
        let service = Service::new(&[]);
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                service.clock.advance_ms(1);
                browser_call(i)
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::OK);
                body
            });
    }

    /// Server with a key (SHA-256 of the key, constant-time compare), variables, no IP limit.
    #[divan::bench]
    fn admitted_api_key(bencher: Bencher) {
        let service = Service::new(&[]);
        let auth = format!("Bearer {KEY}");
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                service.clock.advance_ms(1);
                let body = format!(
                    r#"{{"phone_number":"{}","name":"Maria","variables":{{"lead_id":"42"}}}}"#,
                    number(i)
                );
                post(body, &[("authorization", &auth)], peer(i))
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::OK);
                body
            });
    }
}

/// Refused requests: each stops at its own check.
mod refused {
    use super::*;

    /// A wrong key: 401 after the digest comparison.
    #[divan::bench]
    fn unauthorized_401(bencher: Bencher) {
        let service = Service::new(&[]);
        let auth = "Bearer test-key-wrong-wrong-wrong-wrong-wrong-wrong";
        bencher
            .with_inputs(|| {
                post(
                    r#"{"phone_number":"+351912345678"}"#.to_string(),
                    &[("authorization", auth)],
                    peer(1),
                )
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                body
            });
    }

    /// A foreign `Origin`: 403 in the frame, before the handler.
    #[divan::bench]
    fn forbidden_origin_403(bencher: Bencher) {
        let service = Service::new(&[]);
        bencher
            .with_inputs(|| {
                post(
                    r#"{"phone_number":"+351912345678"}"#.to_string(),
                    &[("origin", "https://evil.example")],
                    peer(1),
                )
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::FORBIDDEN);
                body
            });
    }

    /// A toll-free number: 422 `destination_not_allowed`, after the whole phone policy.
    #[divan::bench]
    fn destination_not_allowed_422(bencher: Bencher) {
        let service = Service::new(&[]);
        bencher
            .with_inputs(|| {
                post(
                    r#"{"phone_number":"+351800123456","name":"Maria"}"#.to_string(),
                    &[("origin", ORIGIN)],
                    peer(1),
                )
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                body
            });
    }

    /// An unknown field: 422 `invalid_request` from the body check (serde's message).
    #[divan::bench]
    fn invalid_request_422(bencher: Bencher) {
        let service = Service::new(&[]);
        bencher
            .with_inputs(|| {
                post(
                    r#"{"phone_number":"+351912345678","age":42}"#.to_string(),
                    &[("origin", ORIGIN)],
                    peer(1),
                )
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                body
            });
    }

    /// The number's limit is full: 429 from the limiter, after every validation.
    #[divan::bench]
    fn rate_limited_429(bencher: Bencher) {
        let service = Service::new(&[
            ("MAX_CALLS_PER_NUMBER", "1"),
            ("RATE_LIMIT_WINDOW", "86400"),
        ]);
        let (status, _) = service.send(browser_call(0));
        assert_eq!(status, StatusCode::OK);
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                // The same full number every time, from another address each time.
                let body = format!(r#"{{"phone_number":"{}","name":"Maria"}}"#, number(0));
                post(body, &[("origin", ORIGIN)], peer(i))
            })
            .bench_local_values(|request| {
                let (status, body) = service.send(request);
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                body
            });
    }
}

/// `GET /api/health`.
#[divan::bench]
fn health(bencher: Bencher) {
    let service = Service::new(&[]);
    bencher
        .with_inputs(|| {
            let mut request = Request::get("/api/health")
                .body(Body::empty())
                .expect("request");
            request.extensions_mut().insert(ConnectInfo(peer(1)));
            request
        })
        .bench_local_values(|request| {
            let (status, body) = service.send(request);
            assert_eq!(status, StatusCode::OK);
            body
        });
}

/// The phone policy alone (`PhonePolicy::check`) and its construction.
mod phone {
    use super::*;

    #[divan::bench]
    fn check_allowed_mobile(bencher: Bencher) {
        let policy = PhonePolicy::new(&["PT"]).expect("PT");
        bencher.bench_local(|| policy.check(divan::black_box("+351 912 345 678")));
    }

    #[divan::bench]
    fn check_refused_toll_free(bencher: Bencher) {
        let policy = PhonePolicy::new(&["PT"]).expect("PT");
        bencher.bench_local(|| policy.check(divan::black_box("+351800123456")));
    }

    #[divan::bench]
    fn check_refused_other_country(bencher: Bencher) {
        let policy = PhonePolicy::new(&["PT"]).expect("PT");
        bencher.bench_local(|| policy.check(divan::black_box("+14155550123")));
    }

    /// Start-up cost: the small database of one region plus the regex warm-up.
    #[divan::bench(sample_count = 20)]
    fn policy_new_pt() -> PhonePolicy {
        PhonePolicy::new(divan::black_box(&["PT"])).expect("PT")
    }

    /// Start-up cost with the regions of a European deployment (shared +1 not included).
    #[divan::bench(sample_count = 20)]
    fn policy_new_pt_es_gb_fr_de() -> PhonePolicy {
        PhonePolicy::new(divan::black_box(&["PT", "ES", "GB", "FR", "DE"])).expect("regions")
    }
}

/// The limiter alone on the memory store (`RateLimiter::admit`).
mod limiter {
    use super::*;

    fn checks(i: u32) -> Vec<LimitCheck> {
        let window = Window::Rolling { ms: 1000 };
        vec![
            LimitCheck {
                kind: LimitKind::Ip,
                key: format!("ip:{}", peer(i).ip()),
                max: 1000,
                window,
            },
            LimitCheck {
                kind: LimitKind::Number,
                key: format!("number:{}", number(i)),
                max: 1000,
                window,
            },
            LimitCheck {
                kind: LimitKind::Global,
                key: format!("global:{}", NOON_MS / 86_400_000),
                max: 10_000_000,
                window: Window::UtcDay,
            },
        ]
    }

    /// Three limits (IP, number, day), admitted.
    #[divan::bench]
    fn admit_memory_3_limits(bencher: Bencher) {
        let rt = runtime();
        let store = MemoryStore::new();
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                (checks(i), NOON_MS + u64::from(i))
            })
            .bench_local_refs(|(checks, now)| {
                let admission = rt.block_on(store.admit(checks, *now)).expect("memory");
                assert!(matches!(admission, Admission::Admitted(_)));
                admission
            });
    }

    /// A full number limit: refused, nothing counted.
    #[divan::bench]
    fn refuse_memory(bencher: Bencher) {
        let rt = runtime();
        let store = MemoryStore::new();
        let full = |i: u32| {
            let mut c = checks(i);
            c[1].key = "number:+351910000000".into();
            c[1].max = 1;
            c[1].window = Window::Rolling { ms: 86_400_000 };
            c
        };
        rt.block_on(store.admit(&full(0), NOON_MS)).expect("memory");
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                full(i)
            })
            .bench_local_refs(|checks| {
                let admission = rt.block_on(store.admit(checks, NOON_MS)).expect("memory");
                assert!(matches!(admission, Admission::Refused { .. }));
                admission
            });
    }
}

/// Request validation alone: body parse and field checks, as the handler runs them.
mod validation {
    use super::*;

    #[divan::bench]
    fn browser_body(bencher: Bencher) {
        let body = br#"{"phone_number":"+351 912 345 678","name":"Maria"}"#;
        bencher.bench_local(|| chamada::http::validate_body(divan::black_box(body), false));
    }

    #[divan::bench]
    fn api_body_with_variables(bencher: Bencher) {
        let body = br#"{"phone_number":"+351912345678","name":"Maria","provider":"elevenlabs","variables":{"lead_id":"42","campaign":"black_friday","locale":"pt-PT"}}"#;
        bencher.bench_local(|| chamada::http::validate_body(divan::black_box(body), true));
    }

    #[divan::bench]
    fn unknown_field_refused(bencher: Bencher) {
        let body = br#"{"phone_number":"+351912345678","age":42}"#;
        bencher.bench_local(|| chamada::http::validate_body(divan::black_box(body), false));
    }
}

/// The admitted browser call again, with the production logs on: the JSON lines of
/// `logging::init` (`logging::json_subscriber`: access line, `Call initiated`) formatted and
/// written to a sink.
mod with_json_logs {
    use super::*;

    #[divan::bench]
    fn admitted_browser(bencher: Bencher) {
        let subscriber = chamada::logging::json_subscriber(
            tracing_subscriber::EnvFilter::new("info"),
            std::io::sink,
        );
        let dispatch = tracing::Dispatch::new(subscriber);
        let service = Service::new(&[]);
        let mut i = 0u32;
        bencher
            .with_inputs(|| {
                i = i.wrapping_add(1);
                service.clock.advance_ms(1);
                browser_call(i)
            })
            .bench_local_values(|request| {
                tracing::dispatcher::with_default(&dispatch, || {
                    let (status, body) = service.send(request);
                    assert_eq!(status, StatusCode::OK);
                    body
                })
            });
    }
}
