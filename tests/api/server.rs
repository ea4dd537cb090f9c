//! The real local server binary over real HTTP: it starts, answers, limits, and logs JSON lines
//! with the operators' words and without secrets or full numbers.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::helpers::KEY;

pub struct Server {
    pub base: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Server {
    /// Starts `chamada` on a free port with exactly these variables, in an empty directory (so
    /// no developer's `.env.local` is read), and waits for its start-up line.
    pub async fn start(vars: &[(&str, &str)]) -> Server {
        let dir = std::env::temp_dir().join(format!("chamada-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_chamada"));
        command
            .env_clear()
            .env("PORT", "0")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in vars {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the chamada binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .expect("start-up line within 30 s")
            .expect("the server printed a start-up line");
        let base = first
            .strip_prefix("Chamada listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected start-up line: {first}"))
            .to_string();
        Server { base, child, lines }
    }

    /// Stops the server and returns every log line it printed after the start-up line.
    pub async fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill().await;
        let mut out = Vec::new();
        while let Some(line) = self.lines.recv().await {
            out.push(line);
        }
        out
    }
}

#[tokio::test]
async fn the_local_server_serves_calls_refusals_and_limits_over_http() {
    let server = Server::start(&[("PRODUCTION_API_KEY", KEY)]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/start_call", server.base);

    let health: Value = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider"], "dry-run");

    let numbers = ["+351912345678", "+351912345001", "+351912345002"];
    for number in numbers {
        let r = http
            .post(&url)
            .json(&json!({ "phone_number": number, "name": "Maria" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "initiated");
        assert_eq!(body["dry_run"], true);
    }
    let r = http
        .post(&url)
        .json(&json!({ "phone_number": "+351912345003" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "86400");

    let r = http
        .post(&url)
        .json(&json!({ "phone_number": "+351760123456" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .post(&url)
        .bearer_auth("test-key-wrong-wrong-wrong-wrong-wrong-wrong")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .header("origin", "https://evil.test")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The server's own origin (the page it serves) is allowed.
    let own = server.base.clone();
    let r = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", &own)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], own.as_str());

    let logs = server.stop().await;
    assert_logs_are_clean(
        &logs,
        &[
            "912345678",
            "912345001",
            "912345002",
            "912345003",
            "760123456",
        ],
    );
    let joined = logs.join("\n");
    for words in [
        "Call initiated",
        "Rate limit exceeded",
        "Invalid API key",
        "CORS violation",
    ] {
        assert!(joined.contains(words), "no `{words}` line in:\n{joined}");
    }
    assert!(joined.contains("+351******678"), "masked number missing");
}

/// Every line is one JSON object; request lines carry a request id; nothing secret leaks.
pub fn assert_logs_are_clean(logs: &[String], numbers: &[&str]) {
    assert!(!logs.is_empty());
    for line in logs {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(value["message"].is_string(), "{line}");
        if value["message"] == "request" {
            assert!(value["request_id"].is_string(), "{line}");
        }
        assert!(!line.contains(KEY), "a key was logged: {line}");
        assert!(
            !line.contains("test-key-wrong"),
            "a presented key was logged: {line}"
        );
        assert!(
            !line.contains("203.0.113.10"),
            "a full IP was logged: {line}"
        );
        for n in numbers {
            assert!(!line.contains(n), "a full number was logged: {line}");
        }
    }
}

#[tokio::test]
async fn a_production_server_with_a_broken_configuration_starts_and_says_why() {
    let server = Server::start(&[("APP_ENV", "production"), ("PRODUCTION_API_KEY", "short")]).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    let r = http
        .post(format!("{}/api/start_call", server.base))
        .bearer_auth("short")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let logs = server.stop().await;
    let missing: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("Environment variable missing"))
        .collect();
    assert!(
        missing.iter().any(|l| l.contains("PRODUCTION_API_KEY")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("\"short\"")),
        "a refused value was logged"
    );
}
