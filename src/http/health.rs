//! `GET /api/health` (docs/API.md §2): is the configuration complete? Names only, never values.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{Method, StatusCode};
use serde_json::json;

use super::cors::{self, OriginCheck};
use crate::app::App;
use crate::config::ProblemKind;
use crate::dispatch::ProviderKind;
use crate::http::error::ApiError;
use crate::store::StoreKind;

const METHODS: &str = "GET, OPTIONS";

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(origin): Extension<OriginCheck>,
    request: Request,
) -> Result<Response, ApiError> {
    match *request.method() {
        Method::GET | Method::HEAD => Ok(report(&app)),
        Method::OPTIONS => Ok(cors::preflight(&origin, METHODS)),
        _ => Err(ApiError::MethodNotAllowed { allow: METHODS }),
    }
}

fn report(app: &App) -> Response {
    let config = &app.config;
    let mut body = json!({
        "status": if config.problems.is_empty() { "ok" } else { "degraded" },
        "environment": config.environment.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "provider": config.provider.map(ProviderKind::as_str),
        "rate_limit_store": config.store.as_str(),
        "webhook": config.webhook.is_some(),
        // Public by design: the page renders the widget with the site key (§16).
        "bot_check": config.bot_check.as_ref().map(|turnstile| json!({
            "provider": "turnstile",
            "site_key": turnstile.site_key,
            "script_url": turnstile.script_url,
            "test_keys": turnstile.test_keys(),
        })),
    });
    if config.is_production() && config.store == StoreKind::Memory {
        body["warning"] =
            json!("rate_limit_store is memory: every serverless instance counts on its own");
    }
    if config.problems.is_empty() {
        return (StatusCode::OK, Json(body)).into_response();
    }
    // Names, kinds and reasons; never a value.
    let names = |kind: ProblemKind| -> Vec<&str> {
        config
            .problems
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.name)
            .collect()
    };
    body["missing"] = json!(names(ProblemKind::Missing));
    body["refused"] = json!(names(ProblemKind::Refused));
    body["problems"] = config
        .problems
        .iter()
        .map(|p| json!({"name": p.name, "kind": p.kind.as_str(), "reason": p.reason}))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
