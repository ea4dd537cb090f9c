//! The stores of docs/API.md §5, §8, §9 (the outbox) and §15 (call records) against a real DynamoDB-compatible
//! server (dynoxide, over HTTP, started by each test), a real PostgreSQL (directly and through
//! a real PgBouncer in transaction mode, one cluster per test binary, a database per test) and
//! the memory store, through one conformance suite; then the DynamoDB store through the router
//! and the local server, and what only its outbox has (items, index, transaction, stream) and
//! its call records (items, transactions); then the PostgreSQL store through the router and the
//! local server (exact under contention from several instances behind the pooler, an outage,
//! round trips, TLS, RLS, migrations, cleanup).

mod conformance;
mod dynamodb;
mod dynamodb_calls;
mod dynamodb_outbox;
mod dynoxide;
mod local_server;
mod outbox_function;
mod pg;
mod postgres;
#[path = "../support/mod.rs"]
mod support;

use std::sync::Arc;

use chamada::store::memory::MemoryStore;
use chamada::store::{CallRecords, IdempotencyStore, Outbox, RateLimiter};

/// Idempotency records and the outbox of one store, for the rules that need both (an answer
/// kept with its event).
pub trait CallStore: IdempotencyStore + Outbox {}

impl<T: IdempotencyStore + Outbox + ?Sized> CallStore for T {}

/// Call records and the outbox of one store, for the rules of a status change written with
/// its event.
pub trait RecordStore: CallRecords + Outbox {}

impl<T: CallRecords + Outbox + ?Sized> RecordStore for T {}

/// Runs each conformance function against every store, so they cannot drift.
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
        mod postgres_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
                    let (store, _) = cluster.store(pg::Route::Direct).await;
                    let port: Arc<dyn $port> = store;
                    conformance::$rule(port).await;
                }
            )*
        }
        mod postgres_behind_pgbouncer {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $rule() {
                    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
                    let (store, _) = cluster.store(pg::Route::Pooler).await;
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
    enqueue_is_idempotent_by_id => Outbox,
    due_lists_only_pending_due_unleased_events_earliest_first_and_bounded => Outbox,
    of_twenty_concurrent_claims_of_one_due_event_exactly_one_wins => Outbox,
    a_claim_holds_the_event_until_its_lease_expires => Outbox,
    settling_a_window_that_is_over_changes_nothing => Outbox,
    retry_at_makes_the_event_due_again_at_that_time => Outbox,
    failed_events_are_listed_newest_first_and_redelivered_from_zero => Outbox,
    complete_with_an_event_keeps_the_answer_and_the_event_pending => CallStore,
    complete_after_a_takeover_keeps_the_other_answer_and_still_records_the_event => CallStore,
    a_created_record_reads_back_until_it_expires => CallRecords,
    a_record_is_found_by_its_provider_call_id_while_it_lives => CallRecords,
    creating_a_record_twice_keeps_the_first => CallRecords,
    advance_moves_forward_with_its_event_and_never_back => RecordStore,
    a_final_status_never_changes => RecordStore,
    advancing_an_unknown_or_expired_call_is_unknown_and_writes_nothing => RecordStore,
    of_twenty_concurrent_final_advances_of_one_call_exactly_one_applies => RecordStore,
}
