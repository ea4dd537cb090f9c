//! The stores of docs/API.md §5 and §8 against a real DynamoDB-compatible server (dynoxide, over
//! HTTP, started by each test) and the memory store, through one conformance suite; then the
//! DynamoDB store through the router and the local server.

mod conformance;
mod dynamodb;
mod dynoxide;
mod local_server;
#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;

use chamada::store::memory::MemoryStore;
use chamada::store::{IdempotencyStore, RateLimiter};

/// Runs each conformance function against both stores, so they cannot drift.
macro_rules! conformance {
    ($($rule:ident => $port:ident),* $(,)?) => {
        mod memory_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let store = Arc::new(MemoryStore::new());
                    let port: Arc<dyn $port> = store;
                    conformance::$rule(port).await;
                }
            )*
        }
        mod dynamodb_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let server = dynoxide::Dynoxide::start().await;
                    let (store, _) = server.store().await;
                    let port: Arc<dyn $port> = store;
                    conformance::$rule(port).await;
                }
            )*
        }
    };
}

conformance! {
    rolling_window_frees_a_slot_exactly_one_window_after_its_admission => RateLimiter,
    per_number_limit_counts_every_caller => RateLimiter,
    global_limit_counts_per_utc_day => RateLimiter,
    a_refusal_consumes_nothing => RateLimiter,
    a_refund_gives_back_exactly_one_admission => RateLimiter,
    two_hundred_concurrent_admissions_admit_exactly_the_limit => RateLimiter,
    idempotency_replays_refuses_and_expires => IdempotencyStore,
    an_abandoned_lease_expires_and_release_frees_the_key => IdempotencyStore,
}
