//! The AWS outbox function (`CHAMADA_HANDLER=outbox`) fed the DynamoDB stream records of real
//! writes — the call path's, into the embedded DynamoDB-compatible server — in the envelope
//! Lambda gives them (`aws_lambda_events`' `dynamodb::Event`: `Records`, each with
//! `eventSource`, `awsRegion`, `eventSourceARN` around the stream record).
#![cfg(feature = "lambda")]

use std::sync::Arc;
use std::time::Duration;

use chamada::after_answer::AfterAnswer;
use chamada::entry::outbox_lambda;
use chamada::store::{Outbox, OutboxState, RateLimiter};
use chamada::{router, App};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::dynoxide::{Dynoxide, TABLE};
use crate::support::{config, send_to, start_call_request};

const BUDGET: Duration = Duration::from_secs(60);

/// Lambda's event for these stream records.
fn lambda_event(records: Vec<Value>) -> Value {
    let arn = format!(
        "arn:aws:dynamodb:eu-west-1:123456789012:table/{TABLE}/stream/2026-12-01T00:00:00.000"
    );
    let records: Vec<Value> = records
        .into_iter()
        .map(|mut record| {
            record["eventSource"] = json!("aws:dynamodb");
            record["awsRegion"] = json!("eu-west-1");
            record["eventSourceARN"] = json!(arn);
            record
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_function_delivers_each_streamed_event_once_even_when_the_batch_comes_again() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let url = format!("{}/hook", hook.uri());
    let limiter: Arc<dyn RateLimiter> = store.clone();
    let app = App::build(config(&[
        ("MAKE_WEBHOOK_URL", &url),
        ("WEBHOOK_RETRIES", "0"),
    ]))
    .await
    .with_stores(limiter, store.clone())
    .with_after_answer(AfterAnswer::Stream);
    let app = Arc::new(app);
    let api = router(app.clone());
    for number in ["+351912345001", "+351912345002"] {
        let r = send_to(
            &api,
            start_call_request(json!({"phone_number": number}), &[]),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert!(
        hook.received_requests().await.unwrap().is_empty(),
        "on DynamoDB the HTTP function leaves delivery to the stream"
    );

    // Every record of the table's stream: limit counters, call records and outbox items alike
    // (the function delivers the outbox items only).
    let batch = lambda_event(server.stream_records(TABLE));
    let kinds: Vec<&str> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["dynamodb"]["Keys"]["pk"]["S"].as_str()?.split_once('#'))
        .map(|(kind, _)| kind)
        .collect();
    for kind in ["rl", "call", "callref", "outbox"] {
        assert!(
            kinds.contains(&kind),
            "{kind} records in the batch: {kinds:?}"
        );
    }
    let answer = outbox_lambda::handle(&app, batch.clone(), BUDGET)
        .await
        .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let delivered: Vec<String> = hook
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert_ne!(delivered[0], delivered[1]);
    for id in &delivered {
        let item = store
            .get(id)
            .await
            .unwrap()
            .expect("the event is in the outbox");
        assert_eq!(item.state, OutboxState::Delivered);
    }

    // Lambda retries a batch (a timeout, a bisection): nothing is delivered twice.
    outbox_lambda::handle(&app, batch, BUDGET).await.unwrap();
    assert_eq!(hook.received_requests().await.unwrap().len(), 2);

    // The schedule's sweep finds nothing left.
    let swept = outbox_lambda::handle(&app, json!({"webhooks": "sweep"}), BUDGET)
        .await
        .unwrap();
    assert_eq!(swept["delivered"], 0, "{swept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_record_whose_window_cannot_run_is_reported_for_lambda_to_retry() {
    let mut server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let hook = MockServer::start().await;
    let url = format!("{}/hook", hook.uri());
    let limiter: Arc<dyn RateLimiter> = store.clone();
    let app = App::build(config(&[("MAKE_WEBHOOK_URL", &url)]))
        .await
        .with_stores(limiter, store)
        .with_after_answer(AfterAnswer::Stream);
    let app = Arc::new(app);
    let api = router(app.clone());
    let r = send_to(
        &api,
        start_call_request(json!({"phone_number": "+351912345003"}), &[]),
    )
    .await;
    assert_eq!(r.status, 200);
    let batch = lambda_event(server.stream_records(TABLE));
    let outbox_records: Vec<&Value> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["dynamodb"]["Keys"]["pk"]["S"]
                .as_str()
                .unwrap()
                .starts_with("outbox#")
        })
        .collect();
    assert_eq!(outbox_records.len(), 1);
    let sequence = outbox_records[0]["dynamodb"]["SequenceNumber"].clone();

    // The store goes away: the window cannot be claimed; Lambda is told which record failed.
    server.stop().await;
    let answer = outbox_lambda::handle(&app, batch, BUDGET).await.unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": sequence}]})
    );
    assert!(hook.received_requests().await.unwrap().is_empty());
}
