//! The AWS outbox function (`CHAMADA_HANDLER=outbox`, template.yaml): the same binary as the
//! HTTP function, fed by the table's DynamoDB stream, a schedule, and operators.
//!
//! - Stream records of outbox items: one window per event (the claim makes a stream retry and
//!   a sweep harmless). A store error fails that record only (`batchItemFailures`), so Lambda
//!   retries it, bisecting the batch; after the retries it goes to the dead letter queue, and
//!   the sweep still finds the event pending.
//! - `{"webhooks": "sweep"}` (the schedule), `{"webhooks": "list-failed"}`,
//!   `{"webhooks": "redeliver", "id": "msg_…"}` (operators, `aws lambda invoke`).

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::App;
use crate::config::Problem;
use crate::notify::commands::{self, Command};
use crate::notify::Deliverer;
use crate::store::dynamodb::outbox_event_id;

/// Time kept back from the invocation's deadline for the answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

pub async fn run(app: Arc<App>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            let left = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            handle(&app, event.payload, left.saturating_sub(ANSWER_MARGIN)).await
        }
    }))
    .await
}

/// A batch of DynamoDB stream records, as Lambda delivers it (the fields read here; the shape
/// is `aws_lambda_events`' `dynamodb::Event`).
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<EventRecord>,
}

#[derive(Debug, Deserialize)]
pub struct EventRecord {
    #[serde(rename = "dynamodb")]
    pub change: StreamRecord,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamRecord {
    /// The item's key in DynamoDB JSON: `{"pk": {"S": "outbox#msg_…"}}`.
    #[serde(default)]
    pub keys: Value,
    pub sequence_number: Option<String>,
}

/// The configuration problems this function reports: its store, its webhook, its logs (it
/// is given no API key and no provider).
pub fn relevant(problem: &Problem) -> bool {
    [
        "RATE_LIMIT_",
        "MAKE_WEBHOOK_",
        "WEBHOOK_",
        "LOG_FORMAT",
        "APP_ENV",
        "AWS_",
    ]
    .iter()
    .any(|prefix| problem.name.starts_with(prefix))
}

/// One invocation: stream records, or a command. `budget` bounds a sweep.
pub async fn handle(app: &App, payload: Value, budget: Duration) -> Result<Value, Error> {
    let stream_batch = payload.get("Records").is_some();
    let command = if stream_batch {
        None
    } else {
        Some(serde_json::from_value::<Command>(payload.clone())?)
    };
    let Some(deliverer) = app.deliverer() else {
        // Without a webhook nothing is written to the outbox: a sweep or a batch has nothing to
        // do (and must not fail, or the alarms would fire for a stack without a webhook).
        return match command {
            None | Some(Command::Sweep) => Ok(json!({"batchItemFailures": []})),
            Some(_) => Err("no MAKE_WEBHOOK_URL: there is no outbox to manage".into()),
        };
    };
    match command {
        None => {
            let event: StreamEvent = serde_json::from_value(payload)?;
            Ok(stream(&deliverer, &event.records).await)
        }
        Some(command) => Ok(commands::run(&deliverer, &command, budget).await?),
    }
}

/// A window for each outbox event of the batch; the records whose window could not run.
async fn stream(deliverer: &Deliverer, records: &[EventRecord]) -> Value {
    let mut failures = Vec::new();
    for record in records {
        let Some(id) = outbox_id(record) else {
            continue;
        };
        if let Err(error) = deliverer.deliver(id).await {
            tracing::error!(event_id = id, error = %error, "Webhook window not run from the stream");
            if let Some(sequence) = &record.change.sequence_number {
                failures.push(json!({"itemIdentifier": sequence}));
            }
        }
    }
    json!({"batchItemFailures": failures})
}

/// The event id of an outbox item's record (`pk` = `outbox#<id>`).
fn outbox_id(record: &EventRecord) -> Option<&str> {
    let pk = record.change.keys.get("pk")?.get("S")?.as_str()?;
    outbox_event_id(pk)
}
