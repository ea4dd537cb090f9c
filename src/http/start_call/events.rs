//! The webhook event of a call: written to the outbox before the answer, delivered after it
//! the platform's way (docs/API.md §9).

use std::sync::Arc;

use crate::after_answer::{AfterAnswer, Background};
use crate::app::App;
use crate::http::RequestId;
use crate::store::Envelope;

/// Writes `event` to the outbox; answers whether it was recorded.
pub(super) async fn record(app: &App, event: &Envelope, request_id: &RequestId) -> bool {
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
pub(super) async fn deliver(
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
