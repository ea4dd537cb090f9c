//! `GET /api/outbox/sweep` (docs/API.md §2.6): runs the webhook windows that are due. Vercel
//! Cron calls it with `Authorization: Bearer $CRON_SECRET`; any scheduler can.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{HeaderMap, Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::cors::{self, OriginCheck};
use super::RequestId;
use crate::app::App;
use crate::http::error::ApiError;
use crate::metrics::Metric;
use crate::notify::commands::{self, Command};

const METHODS: &str = "GET, OPTIONS";

/// A sweep starts no window after this much of its request's time: Vercel's function
/// (`maxDuration` 60 s) answers before it is cut off.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(50);

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Extension(origin): Extension<OriginCheck>,
    request: Request,
) -> Result<Response, ApiError> {
    match *request.method() {
        Method::GET => sweep(&app, request.headers(), &request_id).await,
        Method::OPTIONS => Ok(cors::preflight(&origin, METHODS)),
        _ => Err(ApiError::MethodNotAllowed { allow: METHODS }),
    }
}

async fn sweep(
    app: &App,
    headers: &HeaderMap,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    if !authorised(app, headers) {
        tracing::warn!(request_id = %request_id.0, "Invalid cron secret");
        app.count(Metric::AuthenticationFailures, 1);
        return Err(ApiError::Unauthorized);
    }
    let Some(deliverer) = app.deliverer() else {
        // No webhook: nothing is ever written to the outbox.
        let nothing =
            json!({"delivered": 0, "retrying": 0, "failed": 0, "skipped": 0, "more": false});
        return Ok((StatusCode::OK, Json(nothing)).into_response());
    };
    match commands::run(&deliverer, &Command::Sweep, SWEEP_BUDGET).await {
        Ok(report) => Ok((StatusCode::OK, Json(report)).into_response()),
        Err(error) => {
            tracing::error!(request_id = %request_id.0, error = %error, "Outbox sweep failed");
            Err(ApiError::OutboxUnavailable)
        }
    }
}

/// `Authorization: Bearer <CRON_SECRET>`, compared in constant time (as digests, so the
/// length does not show either). Without `CRON_SECRET` nobody is.
fn authorised(app: &App, headers: &HeaderMap) -> bool {
    let Some(secret) = &app.config.cron_secret else {
        return false;
    };
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(token) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    let expected = Sha256::digest(secret.expose_secret().as_bytes());
    Sha256::digest(token).ct_eq(&expected).into()
}
