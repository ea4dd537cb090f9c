//! What an operator or a schedule asks of the outbox (docs/API.md §9): run a sweep, list the
//! events given up on, redeliver one. The same commands through `cargo run -- webhooks …` and
//! the AWS outbox function (`{"webhooks": "list-failed"}`, …).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::Deliverer;
use crate::store::{OutboxItem, Settle, StoreError};

/// How many failed events a listing shows.
pub const LIST_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "webhooks", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Runs the windows of every due event (within a time budget).
    Sweep,
    /// The events given up on, newest first.
    ListFailed,
    /// Puts a failed (or delivered) event back and runs a window for it now.
    Redeliver { id: String },
}

/// Runs `command`; the answer is JSON for a person or a script.
pub async fn run(
    deliverer: &Deliverer,
    command: &Command,
    budget: Duration,
) -> Result<Value, StoreError> {
    match command {
        Command::Sweep => {
            let report = deliverer.sweep(budget).await?;
            Ok(json!({
                "delivered": report.delivered,
                "retrying": report.retrying,
                "failed": report.failed,
                "skipped": report.skipped,
                "more": report.stopped_early,
            }))
        }
        Command::ListFailed => {
            let failed = deliverer.outbox().failed(LIST_LIMIT).await?;
            Ok(Value::Array(failed.iter().map(describe).collect()))
        }
        Command::Redeliver { id } => {
            let now = deliverer.now_ms();
            if !deliverer.outbox().redeliver(id, now).await? {
                return Ok(json!({"id": id, "redelivered": false,
                    "why": "no such event, or it is pending already"}));
            }
            let window = deliverer.deliver(id).await?;
            Ok(json!({
                "id": id,
                "redelivered": true,
                "window": match window {
                    Some(Settle::Delivered) => "delivered",
                    Some(Settle::RetryAt { .. }) => "failed; a later window is scheduled",
                    Some(Settle::Failed { .. }) => "failed; given up",
                    None => "claimed by another worker",
                },
            }))
        }
    }
}

/// An event as a listing shows it: never its body (it holds the full number).
fn describe(item: &OutboxItem) -> Value {
    let created = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_millis(item.created_at_ms),
    );
    json!({
        "id": item.envelope.id,
        "state": item.state.as_str(),
        "created_at": created.to_string(),
        "windows": item.attempts,
        "last_error": item.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_as_the_documented_events() {
        let read = |v: Value| serde_json::from_value::<Command>(v);
        assert_eq!(read(json!({"webhooks": "sweep"})).unwrap(), Command::Sweep);
        assert_eq!(
            read(json!({"webhooks": "list-failed"})).unwrap(),
            Command::ListFailed
        );
        assert_eq!(
            read(json!({"webhooks": "redeliver", "id": "msg_1"})).unwrap(),
            Command::Redeliver { id: "msg_1".into() }
        );
        assert!(read(json!({"webhooks": "redeliver"})).is_err());
        assert!(read(json!({"webhooks": "drop-table"})).is_err());
    }
}
