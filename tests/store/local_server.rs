//! The local server binary (`cargo run`) on DynamoDB: its `create-table` subcommand makes
//! the table, and a restarted server still remembers who used their calls.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::dynoxide::Dynoxide;

const BIN: &str = env!("CARGO_BIN_EXE_chamada");

/// The binary with exactly these settings (nothing inherited, no `.env.local`).
fn command(endpoint: &str, args: &[&str]) -> Command {
    let dir = std::env::temp_dir();
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "test-access-key-id")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-access-key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RATE_LIMIT_TABLE", "chamada-local")
        .env("MAX_CALLS_PER_NUMBER", "2")
        .env("PORT", "0");
    command
}

/// Starts the server; returns it and its base URL, read from its first stdout line.
fn start(endpoint: &str) -> (Child, String) {
    let mut child = command(endpoint, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the chamada binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    let url = first
        .strip_prefix("Chamada listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_string();
    assert!(first.contains("store=dynamodb"), "{first}");
    assert!(!first.contains("DEGRADED"), "{first}");
    // Keep draining the logs so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

async fn call(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/api/start_call"))
        .json(&serde_json::json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_on_dynamodb_remembers_callers_across_a_restart() {
    let server = Dynoxide::start().await;
    let endpoint = server.endpoint.clone();
    let created = tokio::task::spawn_blocking(move || {
        command(&endpoint, &["create-table"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(created.status.success(), "{created:?}");
    assert!(String::from_utf8_lossy(&created.stdout).contains("Created table chamada-local"));

    let endpoint = server.endpoint.clone();
    let (mut first, url) = tokio::task::spawn_blocking(move || start(&endpoint))
        .await
        .unwrap();
    for _ in 0..2 {
        let response = call(&url).await;
        assert_eq!(response.status(), 200);
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let endpoint = server.endpoint.clone();
    let (mut second, url) = tokio::task::spawn_blocking(move || start(&endpoint))
        .await
        .unwrap();
    let response = call(&url).await;
    let retry_after = response.headers().get("retry-after").cloned();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry_after: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((86_000..=86_400).contains(&retry_after), "{retry_after}");
}
