//! The real local server binary as a test peer: started on a free port in an empty directory,
//! its JSON log lines read as they come.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::KEY;

pub struct Server {
    pub base: String,
    /// The start-up line.
    pub first: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Lines already read by [`Server::wait_for`].
    seen: Vec<String>,
}

impl Server {
    /// Starts `chamada` on a free port with exactly these variables, in an empty directory (so
    /// no developer's `.env.local` is read), and waits for its start-up line.
    pub async fn start(vars: &[(&str, &str)]) -> Server {
        Self::start_with_env_file(vars, None).await
    }

    /// The same, with this `.env.local` in the server's directory.
    pub async fn start_with_env_file(vars: &[(&str, &str)], env_local: Option<&str>) -> Server {
        let dir = std::env::temp_dir().join(format!("chamada-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(contents) = env_local {
            std::fs::write(dir.join(".env.local"), contents).unwrap();
        }
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
        Server {
            base,
            first,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `within`) for a log line containing `words`, and returns it.
    pub async fn wait_for(&mut self, words: &str, within: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .ok()??;
            self.seen.push(line.clone());
            if line.contains(words) {
                return Some(line);
            }
        }
    }

    /// Stops the server and returns every log line it printed after the start-up line.
    pub async fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill().await;
        let mut out = std::mem::take(&mut self.seen);
        while let Some(line) = self.lines.recv().await {
            out.push(line);
        }
        out
    }
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
