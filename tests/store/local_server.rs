//! The local server binary (`cargo run`) on DynamoDB: its `create-table` subcommand makes
//! the table, a restarted server still remembers who used their calls, and an event whose
//! server was killed after answering is delivered by the next one.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::dynoxide::Dynoxide;
use crate::support::receiver::GatedReceiver;

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
    start_with(endpoint, &[])
}

fn start_with(endpoint: &str, extra: &[(&str, &str)]) -> (Child, String) {
    let mut child = command(endpoint, &[])
        .envs(extra.iter().copied())
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
    chamada::outbound::http_client()
        .unwrap()
        .post(format!("{url}/api/start_call"))
        .json(&serde_json::json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap()
}

/// `cargo run -- create-table` against `server`; its stdout.
async fn create_table(server: &Dynoxide) -> String {
    let endpoint = server.endpoint.clone();
    let created = tokio::task::spawn_blocking(move || {
        command(&endpoint, &["create-table"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(created.status.success(), "{created:?}");
    String::from_utf8_lossy(&created.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_on_dynamodb_remembers_callers_across_a_restart() {
    let server = Dynoxide::start().await;
    assert!(create_table(&server)
        .await
        .contains("Created table chamada-local"));

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

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_server_was_killed_after_answering_is_delivered_by_the_next_one() {
    let server = Dynoxide::start().await;
    create_table(&server).await;
    let hook = GatedReceiver::start().await;
    // One attempt of at most 1 s per window (a claim holds the event 6 s), a sweep a second.
    let settings = [
        ("MAKE_WEBHOOK_URL", hook.url.clone()),
        ("WEBHOOK_TIMEOUT", "1".to_string()),
        ("WEBHOOK_RETRIES", "0".to_string()),
        ("WEBHOOK_SWEEP_SECONDS", "1".to_string()),
    ];
    let start_server = |endpoint: String| {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || {
            let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
            start_with(&endpoint, &extra)
        })
    };

    let (mut first, url) = start_server(server.endpoint.clone()).await.unwrap();
    assert_eq!(call(&url).await.status(), 200);
    // Answered; its delivery has begun and the receiver holds it. Then SIGKILL.
    until("the first window reached the receiver", || {
        !hook.ids().is_empty()
    })
    .await;
    first.kill().unwrap();
    first.wait().unwrap();
    let id = hook.ids()[0].clone();

    hook.gate.add_permits(1000);
    let (mut second, _) = start_server(server.endpoint.clone()).await.unwrap();
    until("the next server delivered the event", || {
        hook.ids().len() >= 2
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(hook.ids(), [id.clone(), id], "the same event, once more");
}
