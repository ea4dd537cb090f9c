//! docs/API.md §2 `/api/health`: complete or degraded, names never values.

use axum::body::Body;
use http::Request;

use crate::support::*;

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
    assert_eq!(r.json()["refused"], serde_json::json!(["ALLOWED_ORIGINS"]));
    assert_eq!(r.json()["missing"], serde_json::json!([]));
}

/// A new user's first hour: a key that is set but too short is "refused" with the fix named,
/// never "missing", and its value is never shown.
#[tokio::test]
async fn each_problem_has_its_name_kind_and_a_reason_that_names_the_fix() {
    let t = TestApp::new(&[
        ("APP_ENV", "production"),
        ("PRODUCTION_API_KEY", "test-short"),
        ("CALL_PROVIDER", "elevenlabs"),
    ])
    .await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 503);
    let body = r.json();
    let problems = body["problems"].as_array().unwrap();
    let find = |name: &str| {
        problems
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {problems:?}"))
    };
    let key = find("PRODUCTION_API_KEY");
    assert_eq!(key["kind"], "refused");
    assert!(key["reason"].as_str().unwrap().contains("32 characters"));
    let store = find("RATE_LIMIT_TABLE");
    assert_eq!(store["kind"], "missing");
    let reason = store["reason"].as_str().unwrap();
    assert!(
        reason.contains("RATE_LIMIT_STORE=memory") && reason.contains("RATE_LIMIT_TABLE"),
        "{reason}"
    );
    let agent = find("ELEVEN_AGENT_ID");
    assert_eq!(agent["kind"], "missing");
    assert!(agent["reason"]
        .as_str()
        .unwrap()
        .contains("ELEVEN_AGENT_PHONE_NUMBER_ID"));
    assert!(body["refused"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("PRODUCTION_API_KEY")));
    assert!(!body["missing"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("PRODUCTION_API_KEY")));
    assert!(!String::from_utf8_lossy(&r.body).contains("test-short"));
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
        r.json()["refused"],
        serde_json::json!(["ALLOWED_COUNTRIES"])
    );
    t.start_call(serde_json::json!({"phone_number": NUMBER}), &[])
        .await
        .assert_error(503, "misconfigured");
}

/// Supabase's browser variables alone (what the system this replaces used): health says the
/// anon key cannot guard the limits and names the connection string instead; no value shown.
#[tokio::test]
async fn supabases_anon_key_alone_is_explained_by_health() {
    let t = TestApp::new(&[
        ("NEXT_PUBLIC_SUPABASE_URL", "https://fake-ref.supabase.co"),
        ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "fake-anon-key-0123"),
    ])
    .await;
    let r = t.send(get()).await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["missing"], serde_json::json!(["DATABASE_URL"]));
    let reason = body["problems"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("public") && reason.contains("DATABASE_URL") && reason.contains("6543"),
        "{reason}"
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("fake-anon-key-0123"));
}
