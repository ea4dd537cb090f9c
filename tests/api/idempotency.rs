//! docs/API.md §8: Idempotency-Key replays the first answer, refuses a different body, and refuses a
//! duplicate while the first is still running.

use std::sync::Arc;

use async_trait::async_trait;
use chamada::dispatch::ProviderKind;
use chamada::dispatch::{CallDispatcher, CallRequest, DispatchError, PlacedCall};
use chamada::{router, App};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::support::*;

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer_without_a_second_call() {
    let t = TestApp::new(&[]).await;
    let body = json!({"phone_number": NUMBER, "name": "Maria"});
    let first = t
        .start_call(body.clone(), &[("idempotency-key", "order-42")])
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = t.start_call(body, &[("idempotency-key", "order-42")]).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json(), first.json());
    assert_eq!(
        second.header("ratelimit-remaining"),
        first.header("ratelimit-remaining")
    );
    assert_eq!(t.calls(), 1);
    // No limit consumed by the replay: two more calls fit under the per-IP limit of 3.
    for i in 1..3 {
        let r = t
            .start_call(json!({"phone_number": format!("+3519123450{i:02}")}), &[])
            .await;
        assert_eq!(r.status, 200, "call {i}");
    }
}

#[tokio::test]
async fn formatting_differences_of_the_same_request_still_replay() {
    let t = TestApp::new(&[]).await;
    let key = [("idempotency-key", "same-thing")];
    assert_eq!(
        t.start_call(json!({"phone_number": NUMBER}), &key)
            .await
            .status,
        200
    );
    let r = t
        .start_call(json!({"phone_number": "+351 912-345-678"}), &key)
        .await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_refused() {
    let t = TestApp::new(&[]).await;
    let key = [("idempotency-key", "order-43")];
    assert_eq!(
        t.start_call(json!({"phone_number": NUMBER}), &key)
            .await
            .status,
        200
    );
    let r = t
        .start_call(json!({"phone_number": NUMBER, "name": "Other"}), &key)
        .await;
    r.assert_error(422, "idempotency_key_reused");
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn validation_failures_are_not_stored() {
    let t = TestApp::new(&[]).await;
    let key = [("idempotency-key", "retry-me")];
    let r = t
        .start_call(json!({"phone_number": "+351760123456"}), &key)
        .await;
    r.assert_error(422, "destination_not_allowed");
    let r = t.start_call(json!({"phone_number": NUMBER}), &key).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn a_rate_limited_attempt_gives_its_key_back() {
    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "1"), ("RATE_LIMIT_WINDOW", "60")]).await;
    assert_eq!(
        t.start_call(json!({"phone_number": NUMBER}), &[])
            .await
            .status,
        200
    );
    let key = [("idempotency-key", "after-the-limit")];
    let body = json!({"phone_number": "+351912345001"});
    assert_eq!(t.start_call(body.clone(), &key).await.status, 429);
    t.clock.advance_secs(60);
    let r = t.start_call(body, &key).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn provider_failures_are_replayed_so_a_retry_never_rings_twice() {
    let t = TestApp::production(&[]).await;
    t.recorder.answer_with(Err(DispatchError::Timeout));
    let auth = bearer(KEY);
    let headers = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "slow-one"),
    ];
    t.start_call(json!({"phone_number": NUMBER}), &headers)
        .await
        .assert_error(504, "provider_timeout");
    let r = t
        .start_call(json!({"phone_number": NUMBER}), &headers)
        .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(t.calls(), 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let t = TestApp::new(&[]).await;
    let key = [("idempotency-key", "shared-name")];
    assert_eq!(
        t.start_call(json!({"phone_number": NUMBER}), &key)
            .await
            .status,
        200
    );
    let request = http::Request::post("/api/start_call")
        .header("content-type", "application/json")
        .header("idempotency-key", "shared-name")
        .body(axum::body::Body::from(
            json!({"phone_number": NUMBER}).to_string(),
        ))
        .unwrap();
    let r = t.send(from_peer(request, "192.0.2.200:1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(t.calls(), 2);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_refused() {
    let t = TestApp::new(&[]).await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\there"] {
        let r = t
            .start_call(json!({"phone_number": NUMBER}), &[("idempotency-key", key)])
            .await;
        r.assert_error(400, "invalid_request");
    }
    let r = t
        .start_call(
            json!({"phone_number": NUMBER}),
            &[("idempotency-key", "a"), ("idempotency-key", "b")],
        )
        .await;
    r.assert_error(400, "invalid_request");
    assert_eq!(t.calls(), 0);
}

/// Holds every call until released, and says when one has started.
struct Gate {
    started: Notify,
    release: Semaphore,
}

#[async_trait]
impl CallDispatcher for Gate {
    fn kind(&self) -> ProviderKind {
        ProviderKind::DryRun
    }

    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        self.started.notify_one();
        let _permit = self.release.acquire().await.unwrap();
        Ok(PlacedCall {
            provider_call_id: format!("gated-{}", call.call_id),
        })
    }
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_running_gets_409() {
    let gate = Arc::new(Gate {
        started: Notify::new(),
        release: Semaphore::new(0),
    });
    let app = App::build(config(&[])).await.with_dispatcher(gate.clone());
    let router = router(Arc::new(app));
    let call = || {
        start_call_request(
            json!({"phone_number": NUMBER}),
            &[("idempotency-key", "in-flight")],
        )
    };
    let first = {
        let router = router.clone();
        let request = call();
        tokio::spawn(async move { send_to(&router, request).await })
    };
    gate.started.notified().await;
    send_to(&router, call())
        .await
        .assert_error(409, "request_in_progress");
    gate.release.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let third = send_to(&router, call()).await;
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
}
