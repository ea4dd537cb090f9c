//! SPEC §2 `/api/health`: complete or degraded, names never values.

use axum::body::Body;
use http::Request;

use crate::helpers::*;

fn get() -> Request<Body> {
    Request::get("/api/health").body(Body::empty()).unwrap()
}

#[tokio::test]
async fn development_defaults_are_healthy() {
    let t = TestApp::new(&[]).await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["environment"], "development");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["provider"], "dry-run");
    assert_eq!(body["rate_limit_store"], "memory");
    assert_eq!(body["webhook"], false);
    assert!(body.get("missing").is_none());
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn bare_production_is_degraded_with_names_only() {
    let t = TestApp::new(&[
        ("APP_ENV", "production"),
        ("ELEVENLABS_API_KEY", "test-elevenlabs-secret-value"),
    ])
    .await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["status"], "degraded");
    let missing: Vec<&str> = body["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in ["PRODUCTION_API_KEY", "RATE_LIMIT_TABLE", "ELEVEN_AGENT_ID"] {
        assert!(missing.contains(&name), "{name} not in {missing:?}");
    }
    assert!(!String::from_utf8_lossy(&r.body).contains("test-elevenlabs-secret-value"));
}

#[tokio::test]
async fn refused_values_are_named_in_health() {
    let t = TestApp::production(&[("ALLOWED_ORIGINS", "*")]).await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["missing"], serde_json::json!(["ALLOWED_ORIGINS"]));
}

#[tokio::test]
async fn production_on_the_memory_store_says_so() {
    let t = TestApp::production(&[]).await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["rate_limit_store"], "memory");
    assert!(r.json()["warning"].as_str().unwrap().contains("memory"));
}

#[tokio::test]
async fn unknown_regions_in_allowed_countries_degrade_the_configuration() {
    let t = TestApp::new(&[("ALLOWED_COUNTRIES", "PT,ZZ")]).await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["missing"],
        serde_json::json!(["ALLOWED_COUNTRIES"])
    );
    t.start_call(serde_json::json!({"phone_number": NUMBER}), &[])
        .await
        .assert_error(503, "misconfigured");
}
