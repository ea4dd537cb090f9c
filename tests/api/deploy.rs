//! The deployment descriptors agree with the code: the IAM policy grants exactly the DynamoDB
//! actions the store calls, the function gets every variable the configuration reads, and the
//! routes are the ones the router serves.

use std::collections::BTreeSet;

const TEMPLATE: &str = include_str!("../../template.yaml");
const STORE: &str = include_str!("../../src/store/dynamodb.rs");

#[test]
fn the_iam_policy_grants_exactly_the_dynamodb_actions_the_store_uses() {
    // Runtime operations of the store, and the IAM action each needs. TransactWriteItems is
    // authorised per item; the store's transactions hold only `Update` items.
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
        if STORE.contains(call) {
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
