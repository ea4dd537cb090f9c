//! The deployment descriptors agree with the code: the IAM policy grants exactly the DynamoDB
//! actions the store calls, the function gets every variable the configuration reads, and the
//! routes are the ones the router serves.

use std::collections::BTreeSet;

const TEMPLATE: &str = include_str!("../../template.yaml");
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

#[test]
fn the_http_api_routes_are_the_routers_endpoints() {
    for (path, method) in [
        ("/api/start_call", "POST"),
        ("/api/start_call", "OPTIONS"),
        ("/api/health", "GET"),
        ("/api/health", "OPTIONS"),
    ] {
        let route = format!("Path: {path}\n            Method: {method}");
        assert!(
            TEMPLATE.contains(&route),
            "no {method} {path} route in template.yaml"
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
