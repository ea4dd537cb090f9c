//! The Lambda entry point fed real event payloads (API Gateway REST v1, HTTP API v2, Function
//! URL) through `lambda_http`'s own adapter, as `lambda_http::run` does in production.
//! Runs with `--features lambda` (scripts/test passes `--all-features`).
#![cfg(feature = "lambda")]

use std::sync::Arc;

use crate::support::TestApp;
use chamada::App;
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/lambda/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Sends an event through the Lambda router the way `lambda_http::run` does; returns the
/// serialised Lambda response (`statusCode`, `headers`, `body`).
async fn invoke(app: &Arc<App>, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).expect("a valid Lambda event");
    let mut adapter = lambda_http::Adapter::from(chamada::entry::lambda::router(app.clone()));
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

fn status(response: &Value) -> u64 {
    response["statusCode"].as_u64().unwrap()
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn header<'a>(response: &'a Value, name: &str) -> Option<&'a str> {
    response["headers"][name]
        .as_str()
        .or_else(|| response["multiValueHeaders"][name][0].as_str())
}

async fn aws_app() -> TestApp {
    TestApp::new(&[
        ("CLIENT_IP_SOURCE", "aws"),
        ("ALLOWED_ORIGINS", "https://chamada.example"),
    ])
    .await
}

fn with_number(mut event: Value, number: &str) -> Value {
    event["body"] = json!(json!({ "phone_number": number }).to_string());
    event
}

#[tokio::test]
async fn every_event_kind_places_a_call() {
    for name in [
        "rest-v1-start-call.json",
        "http-api-v2-start-call.json",
        "function-url-start-call.json",
    ] {
        let t = aws_app().await;
        let response = invoke(&t.app, fixture(name)).await;
        assert_eq!(status(&response), 200, "{name}: {response}");
        assert_eq!(body(&response)["status"], "initiated", "{name}");
        assert!(header(&response, "x-request-id").is_some(), "{name}");
        assert_eq!(t.calls(), 1, "{name}");
    }
}

#[tokio::test]
async fn health_answers_on_http_api() {
    let t = aws_app().await;
    let response = invoke(&t.app, fixture("http-api-v2-health.json")).await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(body(&response)["status"], "ok");
}

#[tokio::test]
async fn spoofed_forwarding_headers_do_not_escape_the_source_ip_limit() {
    for name in [
        "rest-v1-start-call.json",
        "http-api-v2-start-call.json",
        "function-url-start-call.json",
    ] {
        let t = aws_app().await;
        for i in 0..5 {
            let mut event = with_number(fixture(name), &format!("+3519123450{i:02}"));
            let spoof = format!("203.0.113.{i}");
            for header in [
                "x-forwarded-for",
                "X-Forwarded-For",
                "x-real-ip",
                "X-Real-IP",
            ] {
                if event["headers"].get(header).is_some() {
                    event["headers"][header] = json!(spoof);
                }
                if event["multiValueHeaders"].get(header).is_some() {
                    event["multiValueHeaders"][header] = json!([spoof]);
                }
            }
            let response = invoke(&t.app, event).await;
            let expected = if i < 3 { 200 } else { 429 };
            assert_eq!(
                status(&response),
                expected,
                "{name} request {i}: {response}"
            );
        }
        assert_eq!(t.calls(), 3, "{name}");
    }
}

#[tokio::test]
async fn rest_api_stage_prefixes_are_removed() {
    let t = aws_app().await;
    let mut event = fixture("rest-v1-start-call.json");
    event["path"] = json!("/prod/api/start_call");
    let response = invoke(&t.app, event).await;
    assert_eq!(status(&response), 200, "{response}");
    // And the shape API Gateway really sends (path without the stage, stage in the context).
    let response = invoke(&t.app, fixture("rest-v1-start-call.json")).await;
    assert_eq!(status(&response), 200, "{response}");
    assert_eq!(t.calls(), 2);
}

#[tokio::test]
async fn an_event_without_a_source_ip_is_refused_not_unlimited() {
    let t = aws_app().await;
    let mut event = fixture("http-api-v2-start-call.json");
    event["requestContext"]["http"]
        .as_object_mut()
        .unwrap()
        .remove("sourceIp");
    let response = invoke(&t.app, event).await;
    assert_eq!(status(&response), 400, "{response}");
    assert_eq!(body(&response)["error"]["code"], "invalid_request");
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn cors_preflight_and_refusal_work_through_api_gateway() {
    let t = aws_app().await;
    let response = invoke(&t.app, fixture("http-api-v2-preflight.json")).await;
    assert_eq!(status(&response), 204, "{response}");
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://chamada.example")
    );
    let mut event = fixture("http-api-v2-start-call.json");
    event["headers"]["origin"] = json!("https://evil.test");
    let response = invoke(&t.app, event).await;
    assert_eq!(status(&response), 403, "{response}");
    assert_eq!(t.calls(), 0);
}

#[tokio::test]
async fn base64_bodies_are_decoded() {
    use base64::Engine;
    let t = aws_app().await;
    let mut event = fixture("http-api-v2-start-call.json");
    let raw = event["body"].as_str().unwrap().to_string();
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
    event["isBase64Encoded"] = json!(true);
    let response = invoke(&t.app, event).await;
    assert_eq!(status(&response), 200, "{response}");
}
