//! The README's curl session is true: every command in it runs against the server binary with
//! curl, and every answer it shows is the answer given (`…` matches whatever changes per run:
//! ids; for `-i`, the headers shown must appear in that order among those sent).

use std::process::Command;

use crate::support::server::Server;

const README: &str = include_str!("../../README.md");

/// One `$ curl …` of the session and the lines shown after it.
struct Step {
    command: String,
    shown: Vec<String>,
}

/// The console block under "A session with curl": its start-up line and its curl steps.
fn session() -> (String, Vec<Step>) {
    let section = README
        .split("## A session with curl")
        .nth(1)
        .expect("the README has a curl session");
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the session is a console block");
    let mut lines = block.lines().peekable();
    let mut startup = String::new();
    let mut steps: Vec<Step> = Vec::new();
    while let Some(line) = lines.next() {
        if line == "$ cargo run" {
            startup = lines.next().expect("a start-up line").to_string();
        } else if let Some(first) = line.strip_prefix("$ ") {
            let mut command = first.to_string();
            while command.ends_with('\\') {
                command.pop();
                command.push_str(lines.next().expect("a continued command").trim_start());
            }
            let mut shown = Vec::new();
            while let Some(next) = lines.peek() {
                if next.starts_with("$ ") || next.starts_with('#') {
                    break;
                }
                shown.push(lines.next().unwrap().to_string());
            }
            while shown.last().is_some_and(|l| l.is_empty()) {
                shown.pop();
            }
            steps.push(Step { command, shown });
        }
    }
    (startup, steps)
}

/// Whether `actual` is `shown` with each `…` standing for any text.
fn matches(shown: &str, actual: &str) -> bool {
    let mut parts = shown.split('…');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return part.is_empty() || rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// A wait in seconds may be a little shorter than shown when a second passed mid-session.
fn same_wait(shown: &str, actual: &str) -> bool {
    for name in ["retry-after: ", "ratelimit-reset: "] {
        if let (Some(s), Some(a)) = (shown.strip_prefix(name), actual.strip_prefix(name)) {
            if let (Ok(s), Ok(a)) = (s.parse::<u64>(), a.trim().parse::<u64>()) {
                return a <= s && s - a <= 5;
            }
        }
    }
    false
}

#[tokio::test]
async fn the_readmes_curl_session_is_what_the_server_answers() {
    let (startup, steps) = session();
    assert!(steps.len() >= 5, "only {} curl steps", steps.len());
    let server = Server::start(&[]).await;
    let port = server.base.trim_start_matches("http://localhost:");
    assert_eq!(
        server
            .first
            .replace(&format!("localhost:{port}"), "localhost:5001"),
        startup,
        "the start-up line"
    );

    for step in &steps {
        let command = step
            .command
            .replace("localhost:5001", &format!("127.0.0.1:{port}"));
        let output = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .expect("sh and curl are installed (scripts/test installs curl)");
        assert!(output.status.success(), "{command} failed: {output:?}");
        let text = String::from_utf8(output.stdout)
            .unwrap()
            .replace("\r\n", "\n");
        let actual: Vec<&str> = text.lines().collect();
        if step.command.starts_with("curl -si") {
            // Head: the shown headers appear in order among those sent; then the body.
            let mut at = 0;
            for shown in &step.shown {
                let found = actual[at..]
                    .iter()
                    .position(|a| matches(shown, a) || same_wait(shown, a));
                match found {
                    Some(offset) => at += offset + 1,
                    None => panic!("`{shown}` not in the answer to {command}:\n{text}"),
                }
            }
        } else {
            assert_eq!(actual.len(), step.shown.len(), "{command}:\n{text}");
            for (shown, actual) in step.shown.iter().zip(&actual) {
                assert!(
                    matches(shown, actual),
                    "{command}:\nshown  {shown}\nactual {actual}"
                );
            }
        }
    }
    server.stop().await;
}

#[test]
fn the_ellipsis_matches_only_what_it_stands_for() {
    assert!(matches(
        r#"{"id":"…","ok":true}"#,
        r#"{"id":"abc","ok":true}"#
    ));
    assert!(!matches(
        r#"{"id":"…","ok":true}"#,
        r#"{"id":"abc","ok":false}"#
    ));
    assert!(matches("x-request-id: …", "x-request-id: 1234"));
    assert!(!matches("exact", "exactly"));
    assert!(same_wait("retry-after: 86400", "retry-after: 86399"));
    assert!(!same_wait("retry-after: 86400", "retry-after: 3600"));
}
