//! The deployment descriptors agree with the code: the IAM policy grants exactly the DynamoDB
//! actions the store calls, the function gets every variable the configuration reads, and the
//! routes are the ones the router serves.

use std::collections::BTreeSet;

const TEMPLATE: &str = include_str!("../../template.yaml");
const VERCEL_JSON: &str = include_str!("../../vercel.json");
const STORE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/dynamodb");

/// The source of the DynamoDB store: every `.rs` file under `src/store/dynamodb/`.
fn store_source() -> String {
    let mut source = String::new();
    let mut dirs = vec![std::path::PathBuf::from(STORE_DIR)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(!source.is_empty(), "no store source under {STORE_DIR}");
    source
}

#[test]
fn the_iam_policy_grants_exactly_the_dynamodb_actions_the_store_uses() {
    // Runtime operations of the store, and the IAM action each needs. TransactWriteItems is
    // authorised per item; the store's transactions hold only `Update` items.
    let store = store_source();
    let mut used = BTreeSet::new();
    for (call, action) in [
        (".update_item()", "dynamodb:UpdateItem"),
        (".put_item()", "dynamodb:PutItem"),
        (".delete_item()", "dynamodb:DeleteItem"),
        (".get_item()", "dynamodb:GetItem"),
        (".query()", "dynamodb:Query"),
        (".scan()", "dynamodb:Scan"),
        (".transact_get_items()", "dynamodb:GetItem"),
        ("ConditionCheck::builder()", "dynamodb:ConditionCheckItem"),
        ("Put::builder()", "dynamodb:PutItem"),
        ("Delete::builder()", "dynamodb:DeleteItem"),
        ("Update::builder()", "dynamodb:UpdateItem"),
    ] {
        if store.contains(call) {
            used.insert(action.to_string());
        }
    }
    let granted: BTreeSet<String> = TEMPLATE
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- dynamodb:"))
        .map(|a| format!("dynamodb:{a}"))
        .collect();
    assert_eq!(
        granted, used,
        "template.yaml grants differ from what the store calls"
    );
}

#[test]
fn the_function_receives_every_variable_the_configuration_reads() {
    for name in chamada::config::VARIABLES {
        if matches!(*name, "FLASK_ENV" | "LOG_FORMAT") {
            continue; // APP_ENV is set; LOG_FORMAT is set to json below.
        }
        assert!(
            TEMPLATE.contains(&format!("          {name}: ")),
            "template.yaml does not pass {name} to the function"
        );
    }
    assert!(TEMPLATE.contains("          LOG_FORMAT: json"));
}

/// Every API operation of `openapi.yaml` (as the router serves it) has its route on API
/// Gateway; the page is the local server's only.
#[test]
fn the_http_api_routes_are_the_documented_operations() {
    let document: serde_json::Value =
        serde_json::from_str(chamada::http::openapi::DOCUMENT).unwrap();
    let mut routes = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            let route = format!("Path: {path}\n            Method: {method}");
            routes += 1;
            assert!(
                TEMPLATE.contains(&route),
                "no {method} {path} route in template.yaml"
            );
        }
    }
    assert_eq!(
        routes, 6,
        "start_call, health and openapi.json: GET/POST and OPTIONS each"
    );
}

/// Vercel runs one function per `api/*.rs`; every other API path of the document is rewritten
/// to one of them (each function runs the whole router).
#[test]
fn every_documented_api_path_reaches_a_vercel_function() {
    let document: serde_json::Value =
        serde_json::from_str(chamada::http::openapi::DOCUMENT).unwrap();
    let vercel: serde_json::Value = serde_json::from_str(VERCEL_JSON).unwrap();
    for path in document["paths"].as_object().unwrap().keys() {
        if !path.starts_with("/api/") {
            continue;
        }
        let function = format!("{}.rs", path.trim_start_matches('/'));
        let rewritten = vercel["rewrites"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                r["source"] == path.as_str()
                    && vercel["functions"]
                        .get(format!(
                            "{}.rs",
                            r["destination"].as_str().unwrap().trim_start_matches('/')
                        ))
                        .is_some()
            })
        });
        assert!(
            vercel["functions"].get(&function).is_some() || rewritten,
            "{path} reaches no Vercel function"
        );
    }
}

/// Every parameter that carries a secret is `NoEcho`, so CloudFormation never shows it in the
/// console, `describe-stacks` or events. Make's webhook URL counts: its path is the token.
#[test]
fn every_secret_parameter_is_no_echo() {
    for variable in [
        "PRODUCTION_API_KEY",
        "RATE_LIMIT_HASH_KEY",
        "ELEVENLABS_API_KEY",
        "LIVEKIT_API_SECRET",
        "MAKE_WEBHOOK_URL",
        "MAKE_WEBHOOK_SECRET",
    ] {
        let needle = format!("          {variable}: !Ref ");
        let line = TEMPLATE
            .lines()
            .find(|l| l.starts_with(&needle))
            .unwrap_or_else(|| panic!("{variable} is not set from a parameter"));
        let parameter = &line[needle.len()..];
        let start = TEMPLATE
            .find(&format!("\n  {parameter}:\n"))
            .unwrap_or_else(|| panic!("no parameter {parameter}"));
        let block: String = TEMPLATE[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains("NoEcho: true"),
            "parameter {parameter} ({variable}) is not NoEcho"
        );
    }
}
