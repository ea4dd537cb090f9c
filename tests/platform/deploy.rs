//! The deployment descriptors agree with the code: the IAM policies grant exactly the DynamoDB
//! actions the store calls (each function only what its path needs), the functions get every
//! variable the configuration reads, the routes are the ones the router serves, and the outbox
//! (table stream and index, its function, its dead letter queue) is wired as the store writes it.

use std::collections::{BTreeMap, BTreeSet};

use chamada::notify::commands::Command;

const TEMPLATE: &str = include_str!("../../template.yaml");
const VERCEL_JSON: &str = include_str!("../../vercel.json");
const STORE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/dynamodb");
const SRC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The actions an event source mapping needs to read a DynamoDB stream (not the store's).
const STREAM_READ: [&str; 4] = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];

/// The source of the DynamoDB store: every `.rs` file under `src/store/dynamodb/`.
fn store_source() -> String {
    rust_source(STORE_DIR)
}

/// Every `.rs` file under `dir`, concatenated.
fn rust_source(dir: &str) -> String {
    let mut source = String::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
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
    assert!(!source.is_empty(), "no Rust source under {dir}");
    source
}

/// The text of one resource of the template: its `  Name:` line and everything indented under
/// it, up to the next line at the resources' own indentation.
fn resource(name: &str) -> &'static str {
    let resources = TEMPLATE
        .find("\nResources:\n")
        .expect("template.yaml has a Resources section");
    let head = format!("\n  {name}:\n");
    let start = resources
        + TEMPLATE[resources..]
            .find(&head)
            .unwrap_or_else(|| panic!("no resource {name} in template.yaml"))
        + 1;
    let body = start + head.len() - 1;
    let end = TEMPLATE[body..]
        .split_inclusive('\n')
        .scan(body, |at, line| {
            let here = *at;
            *at += line.len();
            Some((here, line))
        })
        .find(|(_, line)| !line.trim().is_empty() && !line.starts_with("   "))
        .map_or(TEMPLATE.len(), |(at, _)| at);
    &TEMPLATE[start..end]
}

/// One event of a function's `Events`: its name's line and everything indented under it.
fn event<'a>(function: &'a str, name: &str) -> &'a str {
    let head = format!("\n        {name}:\n");
    let start = function
        .find(&head)
        .unwrap_or_else(|| panic!("no event {name}"))
        + 1;
    let len: usize = function[start + head.len() - 1..]
        .split_inclusive('\n')
        .take_while(|l| l.trim().is_empty() || l.starts_with("         "))
        .map(str::len)
        .sum();
    &function[start..start + head.len() - 1 + len]
}

/// The build of a function: its `Metadata` block.
fn build(function: &str) -> &str {
    let start = function.find("    Metadata:\n").expect("build metadata");
    let end = function[start..].find("    Properties:\n").unwrap();
    &function[start..start + end]
}

/// The value of `key: value` in `block` (the first such line, trimmed).
fn value<'a>(block: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    block
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key} in\n{block}"))
}

/// The `dynamodb:` actions listed in `block`.
fn dynamodb_actions(block: &str) -> BTreeSet<String> {
    block
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- dynamodb:"))
        .map(|a| format!("dynamodb:{a}"))
        .collect()
}

/// The statements of an IAM policy in `block`, by `Sid`: their actions and their resource.
fn statements(block: &str) -> BTreeMap<String, (BTreeSet<String>, String)> {
    let mut out = BTreeMap::new();
    for chunk in block.split("- Sid: ").skip(1) {
        let sid = chunk.lines().next().unwrap().trim().to_string();
        let mut actions = BTreeSet::new();
        let mut in_actions = false;
        let mut resource = String::new();
        for line in chunk.lines().skip(1).map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            if let Some(action) = line.strip_prefix("Action:") {
                in_actions = action.trim().is_empty();
                if !in_actions {
                    actions.insert(action.trim().to_string());
                }
            } else if let Some(action) = line.strip_prefix("- ").filter(|_| in_actions) {
                actions.insert(action.to_string());
            } else {
                in_actions = false;
                if let Some(r) = line.strip_prefix("Resource: ") {
                    resource = r.to_string();
                }
            }
        }
        out.insert(sid, (actions, resource));
    }
    out
}

/// The environment variables a function's block sets, with their values as written.
fn environment(block: &str) -> BTreeMap<&str, &str> {
    let start = block
        .find("        Variables:\n")
        .expect("the function sets environment variables");
    block[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("          "))
        .filter_map(|l| l.trim().split_once(": "))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_iam_policy_grants_exactly_the_dynamodb_actions_the_store_uses() {
    // Runtime operations of the store, and the IAM action each needs. TransactWriteItems is
    // authorised per item (`Update` and `Put` items). Reading the table's stream is the event
    // source mapping's, not the store's: it is checked in the outbox role's own test.
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
    let granted: BTreeSet<String> = dynamodb_actions(TEMPLATE)
        .into_iter()
        .filter(|a| !STREAM_READ.contains(&a.as_str()))
        .collect();
    assert_eq!(
        granted, used,
        "template.yaml grants differ from what the store calls"
    );
}

/// The HTTP function writes events and never reads the outbox or the stream; the outbox
/// function's role holds exactly what delivery needs, each on its one resource.
#[test]
fn each_function_gets_only_the_access_its_path_needs() {
    let http = resource("ChamadaFunction");
    let http_actions = dynamodb_actions(http);
    for action in STREAM_READ
        .iter()
        .chain(&["dynamodb:Query", "dynamodb:Scan"])
    {
        assert!(
            !http_actions.contains(*action),
            "the HTTP function may {action}"
        );
    }
    assert!(!http.contains("sqs:"), "the HTTP function may use SQS");
    assert_eq!(value(http, "Resource"), "!GetAtt CallsTable.Arn");

    let outbox = resource("OutboxFunction");
    assert_eq!(value(outbox, "Role"), "!GetAtt OutboxFunctionRole.Arn");
    assert!(
        !outbox.contains("Policies:"),
        "the outbox function's permissions belong in OutboxFunctionRole only"
    );
    let role = resource("OutboxFunctionRole");
    assert!(!role.contains("ManagedPolicyArns"), "no managed policy");
    assert!(role.contains("Service: lambda.amazonaws.com"));
    let expected: BTreeMap<String, (BTreeSet<String>, String)> = [
        (
            "OutboxItems",
            set(&["dynamodb:GetItem", "dynamodb:UpdateItem"]),
            "!GetAtt CallsTable.Arn",
        ),
        (
            "OutboxIndex",
            set(&["dynamodb:Query"]),
            "!Sub \"${CallsTable.Arn}/index/outbox\"",
        ),
        (
            "TableStream",
            set(&STREAM_READ),
            "!GetAtt CallsTable.StreamArn",
        ),
        (
            "StreamFailures",
            set(&["sqs:SendMessage"]),
            "!GetAtt OutboxDeadLetterQueue.Arn",
        ),
        (
            "OwnLogs",
            set(&["logs:CreateLogStream", "logs:PutLogEvents"]),
            "!GetAtt OutboxLogs.Arn",
        ),
    ]
    .into_iter()
    .map(|(sid, actions, resource)| (sid.to_string(), (actions, resource.to_string())))
    .collect();
    assert_eq!(statements(role), expected, "OutboxFunctionRole changed");
}

/// Variables that mean nothing on AWS: the local server's sweep interval and the bearer token
/// of Vercel Cron's sweep endpoint (AWS sweeps on a schedule, with no HTTP route).
const NOT_ON_AWS: [&str; 2] = ["WEBHOOK_SWEEP_SECONDS", "CRON_SECRET"];

#[test]
fn the_function_receives_every_variable_the_configuration_reads() {
    let http = environment(resource("ChamadaFunction"));
    for name in chamada::config::VARIABLES {
        if matches!(*name, "FLASK_ENV" | "LOG_FORMAT") || NOT_ON_AWS.contains(name) {
            continue; // APP_ENV is set; LOG_FORMAT is set to json below.
        }
        assert!(
            http.contains_key(name),
            "template.yaml does not pass {name} to the function"
        );
    }
    assert_eq!(http.get("LOG_FORMAT"), Some(&"json"));
    for name in NOT_ON_AWS {
        assert!(!TEMPLATE.contains(name), "template.yaml passes {name}");
    }
    assert!(
        !http.contains_key("CHAMADA_HANDLER"),
        "the HTTP function is the default handler"
    );
}

/// The outbox function runs the same binary, started as the outbox handler, with the store's
/// and the webhook's settings exactly as the HTTP function gets them, and no other secret.
#[test]
fn the_outbox_function_is_the_same_binary_with_the_delivery_settings() {
    let http = resource("ChamadaFunction");
    let outbox = resource("OutboxFunction");
    assert_eq!(
        build(outbox),
        build(http),
        "another build than the HTTP function's"
    );
    for key in ["CodeUri", "Handler", "Runtime", "Architectures"] {
        assert_eq!(value(outbox, key), value(http, key), "{key}");
    }

    let env = environment(outbox);
    assert_eq!(env.get("CHAMADA_HANDLER"), Some(&"outbox"));
    assert!(
        rust_source(SRC_DIR).contains("\"CHAMADA_HANDLER\""),
        "the code never reads CHAMADA_HANDLER"
    );
    let delivery = [
        "APP_ENV",
        "RATE_LIMIT_STORE",
        "RATE_LIMIT_TABLE",
        "RATE_LIMIT_HASH_KEY",
        "MAKE_WEBHOOK_URL",
        "MAKE_WEBHOOK_SECRET",
        "WEBHOOK_TIMEOUT",
        "WEBHOOK_RETRIES",
        "LOG_FORMAT",
    ];
    let http_env = environment(http);
    for name in delivery {
        assert!(chamada::config::VARIABLES.contains(&name), "{name}");
        assert_eq!(env.get(name), http_env.get(name), "{name} differs");
    }
    let names: BTreeSet<&str> = env.keys().copied().collect();
    let expected: BTreeSet<&str> = delivery.into_iter().chain(["CHAMADA_HANDLER"]).collect();
    assert_eq!(names, expected, "the outbox function's variables");
}

/// The table streams new images (the outbox function's trigger) and indexes the outbox by
/// state and due time (the sweep's and list-failed's query).
#[test]
fn the_table_streams_new_images_and_indexes_the_outbox() {
    let table = resource("CallsTable");
    assert_eq!(value(table, "StreamViewType"), "NEW_IMAGE");
    for definition in [
        "        - AttributeName: pk\n          AttributeType: S\n",
        "        - AttributeName: ob_state\n          AttributeType: S\n",
        "        - AttributeName: ob_at\n          AttributeType: N\n",
    ] {
        assert!(table.contains(definition), "no {definition}");
    }
    assert!(table.contains(
        "        - IndexName: outbox
          KeySchema:
            - AttributeName: ob_state
              KeyType: HASH
            - AttributeName: ob_at
              KeyType: RANGE
          Projection:
            ProjectionType: ALL
"
    ));
    assert_eq!(value(table, "SSEEnabled"), "true");
}

/// The names the template relies on are the ones the DynamoDB store writes: the outbox items'
/// key prefix (the stream filter), their state and due-time attributes and the index (the
/// sweep's query).
#[test]
fn the_outbox_names_in_the_template_are_the_stores() {
    let store = store_source();
    for name in ["outbox#", "ob_state", "ob_at", "\"outbox\""] {
        assert!(
            store.contains(name),
            "template.yaml relies on {name}, which src/store/dynamodb/ never spells"
        );
    }
}

/// The stream event retries a failing batch a bounded number of times, halving it to isolate
/// the failing record, reports single records, and keeps what still fails in the dead letter
/// queue; only new or redelivered outbox items (no window counted yet) reach the function; a
/// batch fits in the function's time.
#[test]
fn the_stream_event_bisects_retries_and_keeps_failed_batches() {
    let outbox = resource("OutboxFunction");
    let stream = event(outbox, "Stream");
    assert_eq!(value(stream, "Type"), "DynamoDB");
    assert_eq!(value(stream, "Stream"), "!GetAtt CallsTable.StreamArn");
    assert_eq!(value(stream, "BisectBatchOnFunctionError"), "true");
    let retries: i64 = value(stream, "MaximumRetryAttempts").parse().unwrap();
    assert!(
        (1..=10).contains(&retries),
        "MaximumRetryAttempts {retries}"
    );
    let age: i64 = value(stream, "MaximumRecordAgeInSeconds").parse().unwrap();
    assert!(
        (60..=86_400).contains(&age),
        "MaximumRecordAgeInSeconds {age}"
    );
    assert_eq!(
        value(stream, "FunctionResponseTypes"),
        "[ReportBatchItemFailures]"
    );
    assert!(stream.contains(
        "              OnFailure:\n                Destination: !GetAtt OutboxDeadLetterQueue.Arn\n"
    ));

    let pattern = value(stream, "- Pattern");
    let pattern: serde_json::Value =
        serde_json::from_str(pattern.trim_matches('\'')).expect("the filter is JSON");
    assert_eq!(
        pattern,
        serde_json::json!({"dynamodb": {
            "Keys": {"pk": {"S": [{"prefix": "outbox#"}]}},
            "NewImage": {"attempts": {"N": ["0"]}},
        }}),
        "the stream filter"
    );

    // Each window ends within WEBHOOK_TIMEOUT + 15 s; a batch's windows run within the timeout.
    let max_webhook_timeout: u64 = TEMPLATE
        .split("\n  WebhookTimeout:\n")
        .nth(1)
        .map(|p| value(p.split("\n\n").next().unwrap(), "MaxValue"))
        .unwrap()
        .parse()
        .unwrap();
    let batch: u64 = value(stream, "BatchSize").parse().unwrap();
    let timeout: u64 = value(outbox, "Timeout").parse().unwrap();
    assert!(
        batch * (max_webhook_timeout + 15) < timeout,
        "{batch} windows of {max_webhook_timeout} + 15 s do not fit in {timeout} s"
    );
}

/// A sweep every 5 minutes runs the later windows; the event is the one the handler reads.
#[test]
fn the_sweep_runs_every_five_minutes() {
    let outbox = resource("OutboxFunction");
    let sweep = event(outbox, "Sweep");
    assert_eq!(value(sweep, "Type"), "Schedule");
    assert_eq!(value(sweep, "Schedule"), "rate(5 minutes)");
    let input: serde_json::Value =
        serde_json::from_str(value(sweep, "Input").trim_matches('\'')).unwrap();
    assert_eq!(input, serde_json::json!({"webhooks": "sweep"}));
    assert_eq!(
        serde_json::from_value::<Command>(input).unwrap(),
        Command::Sweep,
        "the outbox handler does not read the schedule's event as a sweep"
    );
    // A failed sweep is not retried: the next one comes anyway.
    assert_eq!(value(sweep, "MaximumRetryAttempts"), "0");
    assert!(outbox.contains("      EventInvokeConfig:\n        MaximumRetryAttempts: 0\n"));
}

/// Batches that failed after their retries land in an encrypted queue kept 14 days, and an
/// alarm says so; given-up events are alarmed whichever function gave up.
#[test]
fn failures_of_either_function_are_alarmed() {
    let queue = resource("OutboxDeadLetterQueue");
    assert_eq!(value(queue, "Type"), "AWS::SQS::Queue");
    assert_eq!(value(queue, "SqsManagedSseEnabled"), "true");
    assert_eq!(value(queue, "MessageRetentionPeriod"), "1209600");

    let dlq = resource("OutboxDeadLetterAlarm");
    assert_eq!(
        value(dlq, "MetricName"),
        "ApproximateNumberOfMessagesVisible"
    );
    assert_eq!(
        value(dlq, "Value"),
        "!GetAtt OutboxDeadLetterQueue.QueueName"
    );
    assert_eq!(value(dlq, "Threshold"), "0");
    assert_eq!(value(dlq, "ComparisonOperator"), "GreaterThanThreshold");
    assert_eq!(value(dlq, "AlarmActions"), "[!Ref AlertsTopic]");

    let webhook = resource("WebhookFailuresAlarm");
    for function in ["ChamadaFunction", "OutboxFunction"] {
        assert!(
            webhook.contains(&format!(
                "              MetricName: WebhookDeliveriesFailed
              Dimensions:
                - Name: Service
                  Value: !Ref {function}
"
            )),
            "WebhookDeliveriesFailed of {function} is not alarmed"
        );
    }
    assert_eq!(value(webhook, "AlarmActions"), "[!Ref AlertsTopic]");
}

/// Every API operation of `openapi.yaml` (as the router serves it) has its route on API
/// Gateway; the page is the local server's only, the sweep endpoint Vercel Cron's (AWS sweeps
/// on a schedule, and nobody outside may start one).
#[test]
fn the_http_api_routes_are_the_documented_operations() {
    let document: serde_json::Value =
        serde_json::from_str(chamada::http::openapi::DOCUMENT).unwrap();
    assert!(
        !TEMPLATE.contains(&format!("Path: {}", chamada::http::OUTBOX_SWEEP)),
        "the sweep endpoint is routed on AWS"
    );
    let mut routes = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") || path == chamada::http::OUTBOX_SWEEP {
            continue;
        }
        // `parameters` beside the methods is the path's parameters, not an operation.
        for method in operations
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| *key != "parameters")
        {
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
        routes, 10,
        "start_call, health, openapi.json and a call's record: GET/POST and OPTIONS each; the \
         two provider webhooks: POST"
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
                // Vercel writes a path parameter `:name` where OpenAPI writes `{name}`.
                r["source"] == path.replace('{', ":").replace('}', "").as_str()
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
/// Every function that gets a secret gets it from such a parameter.
#[test]
fn every_secret_parameter_is_no_echo() {
    for variable in [
        "PRODUCTION_API_KEY",
        "RATE_LIMIT_HASH_KEY",
        "ELEVENLABS_API_KEY",
        "LIVEKIT_API_SECRET",
        "MAKE_WEBHOOK_URL",
        "MAKE_WEBHOOK_SECRET",
        "TURNSTILE_SECRET_KEY",
    ] {
        let needle = format!("          {variable}: ");
        let lines: Vec<&str> = TEMPLATE
            .lines()
            .filter(|l| l.starts_with(&needle))
            .collect();
        assert!(!lines.is_empty(), "{variable} is not passed to a function");
        for line in lines {
            let parameter = line[needle.len()..]
                .strip_prefix("!Ref ")
                .unwrap_or_else(|| panic!("{variable} is not set from a parameter"));
            assert_no_echo(parameter, variable);
        }
    }
}

/// Vercel serves `public/` with vercel.json's static headers: its CSP is the local server's
/// with the bot check on and Cloudflare's script (docs/API.md §2.5, §16) — the page loads the
/// widget only when health says the check is on.
#[test]
fn vercel_serves_the_page_with_the_local_servers_csp_for_turnstile() {
    let vercel: serde_json::Value = serde_json::from_str(VERCEL_JSON).unwrap();
    let headers = vercel["headers"][0]["headers"].as_array().unwrap();
    let csp = headers
        .iter()
        .find(|h| h["key"] == "Content-Security-Policy")
        .and_then(|h| h["value"].as_str())
        .expect("vercel.json sets a CSP");
    assert_eq!(
        csp,
        chamada::http::page::content_security_policy(Some("https://challenges.cloudflare.com"))
    );
    assert!(chamada::bot_check::SCRIPT_URL.starts_with("https://challenges.cloudflare.com/"));
}

fn assert_no_echo(parameter: &str, variable: &str) {
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
