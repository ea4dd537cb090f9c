//! `openapi.yaml` and the router in step: the served document, its paths and methods, its
//! error codes (docs/API.md §2.3). Schemathesis (scripts/schemathesis) then checks the answers
//! against the schemas.

use std::collections::BTreeSet;

use axum::body::Body;
use chamada::http::error::ApiError;
use chamada::http::{page, API_PATHS, OPENAPI, START_CALL};
use http::Request;
use serde_json::Value;

use crate::support::{bearer, send_to, TestApp, KEY};

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

async fn document(t: &TestApp) -> Value {
    let r = t
        .send(Request::get(OPENAPI).body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-request-id").is_some());
    r.json()
}

#[tokio::test]
async fn the_document_is_served_as_openapi_3_1_json() {
    let t = TestApp::new(&[]).await;
    let doc = document(&t).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    // Status codes are YAML integers: JSON keys are strings.
    assert!(doc["paths"][START_CALL]["post"]["responses"]["200"].is_object());
}

#[tokio::test]
async fn the_documented_paths_are_the_routers() {
    let t = TestApp::new(&[]).await;
    let doc = document(&t).await;
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut routed: BTreeSet<&str> = API_PATHS.into();
    routed.extend(page::FILES.iter().map(|(path, _, _)| *path));
    assert_eq!(documented, routed);
}

/// Every documented method of every path is answered (not 404, not 405); every other method
/// is `405` with an `Allow` that names exactly the documented ones.
#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let t = TestApp::new(&[("PRODUCTION_API_KEY", KEY)]).await;
    let doc = document(&t).await;
    // The local server's whole surface: the API and the page.
    let router = page::add_routes(t.router.clone(), &t.app.config);
    for (template, operations) in doc["paths"].as_object().unwrap() {
        // A path parameter gets a well-formed value; its handler may then answer 404 (no such
        // call), which is not the router's 404: what matters is that no documented method is
        // a 405.
        let path = &template.replace("{call_id}", "00000000-0000-4000-8000-000000000000");
        let parameterised = path != template;
        let documented: BTreeSet<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .filter(|m| METHODS.contains(&m.as_str()))
            .collect();
        for method in METHODS {
            let request = Request::builder()
                .method(method)
                .uri(path.as_str())
                .header("content-type", "application/json")
                .header("authorization", bearer(KEY))
                .body(Body::from("{}"))
                .unwrap();
            let r = send_to(&router, request).await;
            if documented.contains(method) {
                assert!(
                    r.status != 405 && (parameterised || r.status != 404),
                    "{method} {path} is documented but answered {}",
                    r.status
                );
                continue;
            }
            assert_eq!(r.status, 405, "{method} {path} is not documented");
            let allowed: BTreeSet<String> = r
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"))
                .split(',')
                .map(|m| m.trim().to_string())
                .filter(|m| m != "HEAD")
                .collect();
            assert_eq!(allowed, documented, "Allow of {path}");
        }
    }
}

#[tokio::test]
async fn the_documented_error_codes_are_the_services() {
    let t = TestApp::new(&[]).await;
    let doc = document(&t).await;
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let service: BTreeSet<&str> = ApiError::CODES.into_iter().collect();
    assert_eq!(documented, service);
    // Each code a response names (a `code` property with an `enum`) is one the service has.
    let mut named = Vec::new();
    code_enums(&doc, &mut named);
    assert!(!named.is_empty(), "no response names its codes");
    for code in named {
        assert!(
            service.contains(code.as_str()),
            "{code} is documented, never answered"
        );
    }
}

fn code_enums(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(codes) = map.get("code").and_then(|c| c["enum"].as_array()) {
                found.extend(codes.iter().filter_map(|c| c.as_str().map(str::to_string)));
            }
            map.values().for_each(|v| code_enums(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| code_enums(v, found)),
        _ => {}
    }
}
