//! The outbox (docs/API.md §9): events written with the answer, delivered after it, retried
//! over hours with the same id, never twice at once; the sweep endpoint. The receiver is a
//! local fake; time is the app's manual clock (an hour passes in a loop, not in a sleep).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use chamada::after_answer::AfterAnswer;
use chamada::notify::commands::{self, Command};
use chamada::store::OutboxState;
use http::Request;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request as Received, ResponseTemplate};

use crate::support::{config, TestApp};

const CRON: &str = "test-cron-secret-0123456789";
const ENOUGH: Duration = Duration::from_secs(600);

async fn receiver(status: u16) -> MockServer {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&hook)
        .await;
    hook
}

/// The dry-run app with a webhook at `hook`: one attempt of at most 1 s per window.
async fn app(hook: &MockServer, after_answer: AfterAnswer) -> TestApp {
    app_with(hook, after_answer, "1").await
}

async fn app_with(hook: &MockServer, after_answer: AfterAnswer, timeout_secs: &str) -> TestApp {
    let url = format!("{}/hook", hook.uri());
    let config = config(&[
        ("MAKE_WEBHOOK_URL", &url),
        ("WEBHOOK_RETRIES", "0"),
        ("WEBHOOK_TIMEOUT", timeout_secs),
        ("CRON_SECRET", CRON),
        ("MAX_REQUESTS_PER_IP", "100"),
    ]);
    TestApp::delivering(config, after_answer).await
}

async fn place_calls(t: &TestApp, n: usize) {
    for i in 0..n {
        let r = t
            .start_call(json!({"phone_number": format!("+3519123450{i:02}")}), &[])
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

fn ids(requests: &[Received]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect()
}

fn counted(ids: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id.as_str()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_receiver_down_for_an_hour_gets_every_event_once_after_it_recovers() {
    let hook = receiver(503).await;
    let t = app(&hook, AfterAnswer::Inline).await;
    place_calls(&t, 3).await;
    let deliverer = t.app.deliverer().unwrap();

    // An hour down, swept every minute: windows fail, none is given up on.
    for _ in 0..60 {
        t.clock.advance_secs(60);
        deliverer.sweep(ENOUGH).await.unwrap();
    }
    let down = hook.received_requests().await.unwrap();
    let down_ids = ids(&down);
    let originals: Vec<&str> = counted(&down_ids).into_keys().collect();
    assert_eq!(originals.len(), 3, "three events, each tried while down");
    assert!(down.len() > 3, "later windows ran during the hour");
    for id in &originals {
        let item = t.app.outbox.get(id).await.unwrap().unwrap();
        assert_eq!(
            item.state,
            OutboxState::Pending,
            "{id} not given up after an hour"
        );
    }

    // Up again: every event is delivered exactly once more, with its original id.
    hook.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    for _ in 0..(12 * 60) {
        t.clock.advance_secs(60);
        deliverer.sweep(ENOUGH).await.unwrap();
    }
    let up = ids(&hook.received_requests().await.unwrap());
    let counts = counted(&up);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), originals);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for id in &originals {
        let item = t.app.outbox.get(id).await.unwrap().unwrap();
        assert_eq!(item.state, OutboxState::Delivered);
    }
}

#[tokio::test]
async fn a_receiver_that_refuses_an_event_ends_its_delivery_at_once() {
    let hook = receiver(400).await;
    let t = app(&hook, AfterAnswer::Inline).await;
    place_calls(&t, 1).await;
    let deliverer = t.app.deliverer().unwrap();
    for _ in 0..24 {
        t.clock.advance_secs(3600);
        deliverer.sweep(ENOUGH).await.unwrap();
    }
    let requests = hook.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "a refusal is final: no later window");
    let id = ids(&requests).remove(0);
    assert_eq!(
        t.app.outbox.get(&id).await.unwrap().unwrap().state,
        OutboxState::Failed
    );
    let failed = t
        .metrics
        .captured()
        .into_iter()
        .filter(|r| r.get("WebhookDeliveriesFailed").is_some())
        .count();
    assert_eq!(failed, 1, "counted once, when given up");

    // An operator lists it and redelivers it once the receiver is fixed.
    let listed = commands::run(&deliverer, &Command::ListFailed, ENOUGH)
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["last_error"], "refused: status 400");
    assert!(
        listed[0].get("body").is_none(),
        "a listing never shows the body"
    );
    hook.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let answer = commands::run(&deliverer, &Command::Redeliver { id: id.clone() }, ENOUGH)
        .await
        .unwrap();
    assert_eq!(answer["window"], "delivered", "{answer}");
    assert_eq!(ids(&hook.received_requests().await.unwrap()), [id]);
}

#[tokio::test]
async fn two_sweepers_never_deliver_one_event_twice() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(50)))
        .mount(&hook)
        .await;
    // Nothing in process delivers: the events wait in the outbox for the sweepers.
    let t = app(&hook, AfterAnswer::Stream).await;
    place_calls(&t, 6).await;
    assert!(hook.received_requests().await.unwrap().is_empty());

    let (a, b) = (t.app.deliverer().unwrap(), t.app.deliverer().unwrap());
    let (ra, rb) = tokio::join!(a.sweep(ENOUGH), b.sweep(ENOUGH));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.delivered + rb.delivered, 6);

    let requests = ids(&hook.received_requests().await.unwrap());
    let counts = counted(&requests);
    assert_eq!(counts.len(), 6);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test]
async fn a_slow_receiver_never_holds_the_answer() {
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(20)))
        .mount(&hook)
        .await;
    // Each attempt may take 30 s, and the receiver takes 20 s: the answer comes without it
    // (a bound, not a measurement: benches/http.rs measures both).
    let t = app_with(&hook, AfterAnswer::Spawn, "30").await;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        t.start_call(json!({"phone_number": "+351912345000"}), &[]),
    )
    .await
    .expect("the answer does not wait for the receiver");
    assert_eq!(answer.status, 200);
    // …and the delivery goes on after it: the receiver gets the event.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hook.received_requests().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the event never left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_answer_and_its_event_are_kept_together_and_a_replay_adds_none() {
    let hook = receiver(200).await;
    let t = app(&hook, AfterAnswer::Stream).await;
    let body = json!({"phone_number": "+351912345000"});
    let key = [("idempotency-key", "order-7")];
    assert_eq!(t.start_call(body.clone(), &key).await.status, 200);
    let replay = t.start_call(body, &key).await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let pending = t.app.outbox.due(u64::MAX, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "one call, one event");
    let event: Value = serde_json::from_str(&pending[0].envelope.body).unwrap();
    assert_eq!(event["type"], "call.initiated");
    assert_eq!(event["id"], pending[0].envelope.id.as_str());
}

async fn sweep(t: &TestApp, authorization: Option<&str>) -> crate::support::TestResponse {
    let mut request = Request::get("/api/outbox/sweep");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    t.send(request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn the_sweep_endpoint_needs_the_cron_secret_and_reports_what_it_did() {
    let hook = receiver(200).await;
    let t = app(&hook, AfterAnswer::Stream).await;
    place_calls(&t, 2).await;

    sweep(&t, None).await.assert_error(401, "unauthorized");
    sweep(&t, Some("Bearer not-the-secret"))
        .await
        .assert_error(401, "unauthorized");
    sweep(&t, Some(CRON))
        .await
        .assert_error(401, "unauthorized");
    assert!(hook.received_requests().await.unwrap().is_empty());

    let r = sweep(&t, Some(&format!("Bearer {CRON}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json(),
        json!({"delivered": 2, "retrying": 0, "failed": 0, "skipped": 0, "more": false})
    );
    assert_eq!(hook.received_requests().await.unwrap().len(), 2);

    // Without CRON_SECRET nobody may sweep.
    let open = TestApp::new(&[]).await;
    sweep(&open, Some(&format!("Bearer {CRON}")))
        .await
        .assert_error(401, "unauthorized");
}
