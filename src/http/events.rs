//! A call's record and its webhook events: written before the answer, delivered after it the
//! platform's way (docs/API.md §9, §15).

use std::sync::Arc;

use crate::after_answer::{AfterAnswer, Background};
use crate::app::App;
use crate::calls::Placed;
use crate::http::RequestId;
use crate::store::calls::retention_ms;
use crate::store::{CallRecord, CallStatus, Envelope, Step};

/// Keeps the record of the call `placed` describes (docs/API.md §15): its first `status`, the
/// masked number only, the digest of the answer's status token.
pub(crate) async fn keep_record(
    app: &App,
    placed: &Placed,
    status: CallStatus,
    token_digest: Option<&str>,
    request_id: &RequestId,
) {
    let now = app.clock.now_ms();
    let data = &placed.data;
    let record = CallRecord {
        call_id: data.call_id.clone(),
        provider: data.provider.clone(),
        provider_call_id: data.provider_call_id.clone(),
        to_masked: placed.to_masked.clone(),
        source: data.source.as_str().to_string(),
        status,
        created_at_ms: now,
        updated_at_ms: now,
        history: vec![Step { status, at_ms: now }],
        duration_secs: None,
        end_reason: data.error.clone(),
        summary: None,
        successful: None,
        token_hash: token_digest.unwrap_or_default().to_string(),
        expires_at_ms: now + retention_ms(app.config.calls.record_days),
    };
    let call_id = data.call_id.as_str();
    if let Err(error) = app.calls.create(record).await {
        tracing::error!(request_id = %request_id.0, call_id, error = %error, "Call record not kept");
    }
}

/// Writes `event` to the outbox; answers whether it was recorded.
pub(crate) async fn record(app: &App, event: &Envelope, request_id: &RequestId) -> bool {
    match app.outbox.enqueue(event, app.clock.now_ms()).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(request_id = %request_id.0, event_id = %event.id, error = %error, "Webhook event not recorded");
            false
        }
    }
}

/// Starts the delivery of `event`: its first window, where the platform runs work after the
/// answer. An event the store could not record gets one window, without the outbox (nothing
/// would retry it).
pub(crate) async fn deliver(
    app: &Arc<App>,
    event: Envelope,
    recorded: bool,
    background: Option<Background>,
) {
    let Some(deliverer) = app.deliverer() else {
        return;
    };
    let work = async move {
        if recorded {
            if let Err(error) = deliverer.deliver(&event.id).await {
                tracing::error!(event_id = %event.id, error = %error, "Webhook window not run; the sweep will");
            }
        } else {
            deliverer.deliver_unrecorded(&event).await;
        }
    };
    match (&app.after_answer, background) {
        (AfterAnswer::Inline, _) => work.await,
        (AfterAnswer::Spawn, _) => {
            tokio::spawn(work);
        }
        (AfterAnswer::Platform, Some(background)) => background.run(work),
        // Lambda on DynamoDB: the stream's function delivers what was recorded.
        (AfterAnswer::Stream, _) if recorded => {}
        (AfterAnswer::Platform | AfterAnswer::Stream, _) => work.await,
    }
}
