//! Operations: each security or outcome event emits exactly one valid EMF record with the right
//! metric, unit, value and dimensions, and no record carries a key, a number or an IP. The
//! template's alarms only name metrics the code emits.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chamada::dispatch::DispatchError;
use chamada::metrics::Metric;
use chamada::notify::{Attempt, Delivery, Notifier};
use chamada::store::Envelope;
use chamada::store::{Admission, LimitCheck, RateLimiter, StoreError};
use chamada::{router, App};
use serde_json::{json, Value};

use crate::support::*;

/// The records of one metric name.
fn named(t: &TestApp, name: &str) -> Vec<Value> {
    t.metrics
        .captured()
        .into_iter()
        .filter(|r| r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == name)
        .collect()
}

/// Valid EMF: every declared metric and dimension is a field of the record, of the right type.
fn assert_valid_emf(record: &Value) {
    let aws = &record["_aws"];
    assert!(aws["Timestamp"].is_u64(), "{record}");
    let blocks = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert_eq!(blocks.len(), 1);
    let block = &blocks[0];
    assert_eq!(block["Namespace"], "Chamada");
    for metric in block["Metrics"].as_array().unwrap() {
        let name = metric["Name"].as_str().unwrap();
        assert!(
            record[name].is_number(),
            "metric {name} has no value: {record}"
        );
        assert_eq!(metric["Unit"], "Count");
    }
    for set in block["Dimensions"].as_array().unwrap() {
        let set = set.as_array().unwrap();
        assert!(!set.is_empty() && set.len() <= 3, "{record}");
        for dimension in set {
            let d = dimension.as_str().unwrap();
            assert!(record[d].is_string(), "dimension {d} missing: {record}");
        }
    }
    let text = record.to_string();
    for secret in [KEY, "912345", "203.0.113", "test-elevenlabs-key"] {
        assert!(!text.contains(secret), "a record carries {secret}: {text}");
    }
}

fn assert_one(t: &TestApp, name: &str, dimensions: &[(&str, &str)]) {
    let records = named(t, name);
    assert_eq!(records.len(), 1, "{name}: {records:?}");
    let record = &records[0];
    assert_valid_emf(record);
    assert_eq!(record[name], 1);
    assert_eq!(record["Service"], "chamada-test");
    let sets = &record["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    let mut expected = vec![json!(["Service"])];
    if !dimensions.is_empty() {
        let mut set = vec!["Service"];
        set.extend(dimensions.iter().map(|(d, _)| *d));
        expected.push(json!(set));
    }
    assert_eq!(sets, &json!(expected), "{record}");
    for (d, v) in dimensions {
        assert_eq!(record[*d], *v, "{record}");
    }
}

#[tokio::test]
async fn a_cors_violation_counts_once() {
    let t = TestApp::new(&[]).await;
    t.start_call(
        json!({"phone_number": NUMBER}),
        &[("origin", "https://evil.test")],
    )
    .await;
    assert_one(&t, "CorsViolations", &[]);
    assert_eq!(t.metrics.captured().len(), 1);
}

#[tokio::test]
async fn a_wrong_key_counts_one_authentication_failure() {
    let t = TestApp::production(&[]).await;
    t.start_call(
        json!({"phone_number": NUMBER}),
        &[("authorization", "Bearer test-key-nope")],
    )
    .await;
    assert_one(&t, "AuthenticationFailures", &[]);
}

#[tokio::test]
async fn a_refused_destination_counts_once() {
    let t = TestApp::new(&[]).await;
    t.start_call(json!({"phone_number": "+351760123456"}), &[])
        .await;
    assert_one(&t, "DestinationsRefused", &[]);
}

#[tokio::test]
async fn rate_limit_refusals_count_per_limit_kind() {
    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "1")]).await;
    t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    t.start_call(json!({"phone_number": "+351912345001"}), &[])
        .await;
    assert_one(&t, "RateLimitRefusals", &[("LimitKind", "ip")]);
}

#[tokio::test]
async fn placed_and_failed_calls_count_per_provider_and_reason() {
    let t = TestApp::production(&[]).await;
    let auth = bearer(KEY);
    t.start_call(json!({"phone_number": NUMBER}), &[("authorization", &auth)])
        .await;
    assert_one(&t, "CallsInitiated", &[("Provider", "elevenlabs")]);
    t.recorder.answer_with(Err(DispatchError::Timeout));
    t.start_call(
        json!({"phone_number": "+351912345001"}),
        &[("authorization", &auth)],
    )
    .await;
    assert_one(
        &t,
        "CallsFailed",
        &[("Provider", "elevenlabs"), ("Reason", "provider_timeout")],
    );
}

#[tokio::test]
async fn a_misconfigured_service_counts_each_refused_call() {
    let t = TestApp::new(&[("ALLOWED_COUNTRIES", "ZZ")]).await;
    t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    assert_one(&t, "ConfigurationProblems", &[]);
}

#[tokio::test]
async fn configuration_problems_are_counted_at_start_up() {
    let t = TestApp::new(&[("ALLOWED_COUNTRIES", "ZZ"), ("PUBLIC_CALLS", "maybe")]).await;
    t.app.report_problems();
    let records = named(&t, "ConfigurationProblems");
    assert_eq!(records.len(), 1);
    assert_valid_emf(&records[0]);
    assert_eq!(records[0]["ConfigurationProblems"], 2);
}

struct FailingNotifier;

#[async_trait]
impl Notifier for FailingNotifier {
    async fn deliver(&self, _event: &Envelope, _request_id: &str) -> Delivery {
        Delivery::Failed {
            attempts: 1,
            last: Attempt::Status(http::StatusCode::BAD_REQUEST),
            why: "the receiver refused the event",
            retry_after: None,
        }
    }

    fn window_bound(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn receiver(&self) -> &str {
        "hook.example"
    }
}

struct BrokenStore;

#[async_trait]
impl RateLimiter for BrokenStore {
    async fn admit(&self, _: &[LimitCheck], _: u64) -> Result<Admission, StoreError> {
        Err(StoreError::unavailable("UpdateItem", "unreachable").caused_by("connection refused"))
    }

    async fn refund(&self, _: &[LimitCheck], _: u64) -> Result<(), StoreError> {
        Err(StoreError::unavailable("UpdateItem", "unreachable").caused_by("connection refused"))
    }
}

#[tokio::test]
async fn failed_webhooks_and_store_errors_count_once() {
    let t = TestApp::new(&[]).await;
    let metrics = t.metrics.clone();
    let app = App::build(config(&[]))
        .await
        .with_metrics(metrics.clone())
        .with_notifier(Arc::new(FailingNotifier));
    let r = send_to(
        &router(Arc::new(app)),
        start_call_request(json!({"phone_number": NUMBER}), &[]),
    )
    .await;
    assert_eq!(r.status, 200, "a failed webhook never fails the call");
    assert_one(&t, "WebhookDeliveriesFailed", &[]);

    let broken = Arc::new(BrokenStore);
    let app = App::build(config(&[]))
        .await
        .with_metrics(metrics)
        .with_stores(broken, Arc::new(chamada::store::memory::MemoryStore::new()));
    let r = send_to(
        &router(Arc::new(app)),
        start_call_request(json!({"phone_number": NUMBER}), &[]),
    )
    .await;
    r.assert_error(503, "rate_limit_unavailable");
    assert_one(&t, "RateLimitStoreErrors", &[]);
}

#[tokio::test]
async fn successful_requests_emit_only_their_outcome() {
    let t = TestApp::new(&[]).await;
    t.start_call(json!({"phone_number": NUMBER}), &[]).await;
    let names: Vec<String> = t
        .metrics
        .captured()
        .iter()
        .map(|r| {
            r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["CallsInitiated"]);
}

/// The alarms in template.yaml must watch metrics the code really emits, in its namespace.
#[test]
fn the_template_alarms_name_only_emitted_metrics() {
    let template = include_str!("../../template.yaml");
    let emitted: BTreeSet<&str> = Metric::NAMES.into_iter().collect();
    let mut alarmed = BTreeSet::new();
    // Every alarm names its namespace before its metric. AWS's own metrics (the dead letter
    // queue, the outbox function's errors) are AWS's to emit.
    let mut namespace = "";
    for line in template.lines() {
        let line = line.trim();
        if let Some(ns) = line.strip_prefix("Namespace: ") {
            namespace = ns.trim();
            assert!(
                matches!(namespace, "Chamada" | "AWS/SQS" | "AWS/Lambda"),
                "alarm namespace {namespace}"
            );
        }
        if let Some(name) = line.strip_prefix("MetricName: ") {
            if namespace == "Chamada" {
                alarmed.insert(name.trim().to_string());
            }
        }
    }
    assert!(alarmed.len() >= 5, "too few alarmed metrics: {alarmed:?}");
    for name in &alarmed {
        assert!(
            emitted.contains(name.as_str()),
            "template alarms on {name}, which the code never emits"
        );
    }
    for required in [
        "AuthenticationFailures",
        "CorsViolations",
        "ConfigurationProblems",
        "CallsFailed",
        "CallsInitiated",
        "WebhookDeliveriesFailed",
    ] {
        assert!(alarmed.contains(required), "no alarm watches {required}");
    }
}
