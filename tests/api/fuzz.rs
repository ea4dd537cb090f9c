//! The request path under arbitrary input: body bytes, headers and the webhook receiver's
//! `Retry-After`. Whatever arrives, the router answers (no panic), never with a 5xx other than
//! the documented 502/503/504, always with the JSON error shape, and a refused request never
//! reaches the provider. Bounded: `PROPTEST_CASES` (default 256) requests, each bounded in time.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use chamada::dispatch::ProviderKind;
use chamada::dispatch::{DispatchError, PlacedCall};
use chamada::notify::MakeWebhook;
use chamada::notify::WebhookConfig;
use http::{HeaderName, HeaderValue, Request};
use proptest::prelude::*;
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const NAMES: &[&str] = &[
    "content-type",
    "authorization",
    "idempotency-key",
    "origin",
    "x-end-user-ip",
    "x-real-ip",
    "x-forwarded-for",
    "content-length",
    "accept",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"application/json".to_vec()),
        Just(b"application/json; charset=utf-8".to_vec()),
        Just(bearer(KEY).into_bytes()),
        Just(b"https://chamada.example".to_vec()),
        Just(b"203.0.113.7".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..60),
    ]
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::from),
        "\\PC{0,120}".prop_map(Value::from),
        Just(Value::from("+351 912 345 678")),
        Just(Value::from("+351760123456")),
        Just(Value::from("Ana\u{E0041}\u{2028}")),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!([1, "x"])),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let object = (
        text(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z_]{0,45}",
            text(),
            0..4,
        )),
        proptest::option::of(("[a-z_]{1,12}", text())),
    )
        .prop_map(|(number, name, provider, variables, extra)| {
            let mut body = json!({ "phone_number": number });
            if let Some(name) = name {
                body["name"] = name;
            }
            if let Some(provider) = provider {
                body["provider"] = provider;
            }
            if let Some(variables) = variables {
                body["variables"] = json!(variables);
            }
            if let Some((key, value)) = extra {
                body[key] = value;
            }
            body.to_string().into_bytes()
        });
    prop_oneof![
        3 => object,
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
        1 => "[{}\\[\\]\",:0-9a-z ]{0,200}".prop_map(String::into_bytes),
    ]
}

fn retry_after() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        Just("Thu, 01 Jan 1970 00:00:00 GMT".to_string()),
        "[ -~]{0,30}",
    ]
}

fn provider_answer() -> impl Strategy<Value = Result<PlacedCall, DispatchError>> {
    prop_oneof![
        4 => Just(Ok(PlacedCall { provider_call_id: "conv_fuzz".into() })),
        1 => Just(Err(DispatchError::Provider { reason: "ElevenLabs failed (500)".into() })),
        1 => Just(Err(DispatchError::Timeout)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_request_gets_a_documented_answer_and_refusals_never_dispatch(
        headers in proptest::collection::vec((0..NAMES.len(), header_value()), 0..6),
        body in body(),
        anonymous in any::<bool>(),
        retry in retry_after(),
        answer in provider_answer(),
    ) {
        let runtime = runtime();
        runtime.block_on(async {
            let hook = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(503).insert_header("retry-after", retry.as_str()))
                .mount(&hook)
                .await;
            let vars = production(&[
                ("PUBLIC_CALLS", "true"),
                ("MAX_REQUESTS_PER_IP", "1000"),
                ("MAX_CALLS_PER_NUMBER", "1000"),
            ]);
            let vars: Vec<(&str, &str)> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let webhook = MakeWebhook::new(
                &WebhookConfig {
                    url: format!("{}/test-hook", hook.uri()),
                    secret: None,
                    timeout: Duration::from_millis(50),
                    retries: 3,
                    sweep_every: Duration::from_secs(60),
                },
                chamada::outbound::http_client().unwrap(),
            )
            .unwrap()
            .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
            .with_budget(Duration::from_millis(100));
            let recorder = Recorder::new(ProviderKind::ElevenLabs);
            recorder.answer_with(answer);
            let app = Arc::new(
                chamada::App::build(config(&vars))
                    .await
                    .with_dispatcher(recorder.clone())
                    .with_notifier(Arc::new(webhook)),
            );
            let router = chamada::router(app);

            let mut builder = Request::post("/api/start_call");
            if !anonymous {
                builder = builder.header("authorization", bearer(KEY));
            }
            builder = builder.header("content-type", "application/json");
            for (index, value) in &headers {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    builder = builder.header(HeaderName::from_static(NAMES[*index]), value);
                }
            }
            let request = builder.body(Body::from(body.clone())).unwrap();
            let r = send_to(&router, request).await;
            let status = r.status.as_u16();

            prop_assert!(
                status < 500 || [502, 503, 504].contains(&status),
                "{status} for {:?}", String::from_utf8_lossy(&body)
            );
            let calls = recorder.count();
            if status == 200 {
                prop_assert_eq!(calls, 1);
                prop_assert_eq!(&r.json()["status"], "initiated");
            } else {
                let json = r.json();
                prop_assert!(json["error"]["code"].is_string(), "{}", json);
                prop_assert_eq!(json["request_id"].as_str(), r.header("x-request-id"));
                // Only an answer from the provider itself (502/504) follows a dispatch.
                let dispatched = matches!(status, 502 | 504);
                prop_assert_eq!(calls, usize::from(dispatched), "{} {}", status, json);
            }
            Ok(())
        })?;
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}
