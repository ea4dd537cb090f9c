//! `GET /api/calls/{call_id}` (docs/API.md §15.2): a call's record for its API caller, its
//! status and times for the page that holds its status token. Anything that does not prove a
//! right to the call is the same `404`.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use super::client_addr::client_ip;
use super::cors::{self, OriginCheck};
use super::RequestId;
use crate::access::{authenticate, Caller, StatusToken};
use crate::app::App;
use crate::client_ip::IpKey;
use crate::http::error::ApiError;
use crate::metrics::Metric;
use crate::store::{keys, Admission, CallRecord, LimitCheck, LimitKind, Window};

const METHODS: &str = "GET, OPTIONS";
const X_STATUS_TOKEN: &str = "x-status-token";

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Extension(origin): Extension<OriginCheck>,
    Path(call_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    match *request.method() {
        Method::GET | Method::HEAD => read(&app, &call_id, request, &request_id).await,
        Method::OPTIONS => Ok(cors::preflight(&origin, METHODS)),
        _ => Err(ApiError::MethodNotAllowed { allow: METHODS }),
    }
}

async fn read(
    app: &App,
    call_id: &str,
    request: Request,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let authorization: Vec<&[u8]> = parts
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let caller = authenticate(&app.config.api_keys, &authorization, true).map_err(|_| {
        app.count(Metric::AuthenticationFailures, 1);
        ApiError::Unauthorized
    })?;
    if caller == Caller::Anonymous {
        let ip = client_ip(app.config.client_ip_source, &parts)
            .ok_or_else(|| ApiError::bad_request("The client address could not be determined."))?;
        limit_reads(app, IpKey::new(ip), request_id).await?;
    }
    if uuid::Uuid::parse_str(call_id).is_err() {
        return Err(ApiError::NotFound);
    }
    let record = app
        .calls
        .get(call_id, app.clock.now_ms())
        .await
        .map_err(|error| {
            tracing::error!(request_id = %request_id.0, error = %error, "Call record not read");
            ApiError::RateLimitUnavailable
        })?
        .ok_or(ApiError::NotFound)?;
    let body = match caller {
        Caller::Authenticated(_) => whole(&record),
        Caller::Anonymous if token_matches(&parts.headers, &record) => status_only(&record),
        Caller::Anonymous => return Err(ApiError::NotFound),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `MAX_STATUS_READS_PER_MINUTE` per client address.
async fn limit_reads(app: &App, ip: IpKey, request_id: &RequestId) -> Result<(), ApiError> {
    let check = LimitCheck {
        kind: LimitKind::Ip,
        key: keys::status_reads(ip),
        max: app.config.calls.status_reads_per_minute,
        window: Window::Rolling { ms: 60_000 },
    };
    match app.limiter.admit(&[check], app.clock.now_ms()).await {
        Ok(Admission::Admitted(_)) => Ok(()),
        Ok(Admission::Refused { by }) => {
            app.count(Metric::RateLimitRefusals(LimitKind::Ip), 1);
            Err(ApiError::RateLimited {
                retry_after: by.reset_secs,
            })
        }
        Err(error) => {
            tracing::error!(request_id = %request_id.0, error = %error, "Rate limit store failed; refusing the read");
            app.count(Metric::RateLimitStoreErrors, 1);
            Err(ApiError::RateLimitUnavailable)
        }
    }
}

/// `X-Status-Token`, sent once, against the record's digest (constant time).
fn token_matches(headers: &HeaderMap, record: &CallRecord) -> bool {
    let mut values = headers.get_all(X_STATUS_TOKEN).iter();
    match (values.next(), values.next()) {
        (Some(token), None) => StatusToken::matches(token.as_bytes(), &record.token_hash),
        _ => false,
    }
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// What the page may see: status and times.
fn status_only(record: &CallRecord) -> Value {
    json!({
        "call_id": record.call_id,
        "status": record.status.as_str(),
        "created_at": rfc3339(record.created_at_ms),
        "updated_at": rfc3339(record.updated_at_ms),
        "history": record
            .history
            .iter()
            .map(|step| json!({"status": step.status.as_str(), "at": rfc3339(step.at_ms)}))
            .collect::<Vec<_>>(),
        "duration_secs": record.duration_secs,
    })
}

/// The provider's names for the call: what it returned, and what Chamada named it by
/// (LiveKit's room and participant are `call-<call_id>` and `phone-<call_id>`).
fn provider_ids(record: &CallRecord) -> Value {
    let id = &record.provider_call_id;
    match record.provider.as_str() {
        "elevenlabs" => json!({"conversation_id": id}),
        "livekit" => json!({
            "room": format!("call-{}", record.call_id),
            "participant_identity": format!("phone-{}", record.call_id),
            "sip_call_id": id,
        }),
        _ => json!({}),
    }
}

/// What the API caller may see: the whole record, never the full number.
fn whole(record: &CallRecord) -> Value {
    let mut body = status_only(record);
    body["provider"] = json!(record.provider);
    body["provider_call_id"] = json!(record.provider_call_id);
    body["provider_ids"] = provider_ids(record);
    body["to"] = json!(record.to_masked);
    body["source"] = json!(record.source);
    body["end_reason"] = json!(record.end_reason);
    body["summary"] = json!(record.summary);
    body["successful"] = json!(record.successful);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallStatus, Step};

    fn record(provider: &str, id: Option<&str>) -> CallRecord {
        CallRecord {
            call_id: "00000000-0000-4000-8000-000000000007".into(),
            provider: provider.into(),
            provider_call_id: id.map(str::to_string),
            to_masked: "+351******678".into(),
            source: "api".into(),
            status: CallStatus::Initiated,
            created_at_ms: 0,
            updated_at_ms: 0,
            history: vec![Step {
                status: CallStatus::Initiated,
                at_ms: 0,
            }],
            duration_secs: None,
            end_reason: None,
            summary: None,
            successful: None,
            token_hash: String::new(),
            expires_at_ms: 1,
        }
    }

    #[test]
    fn each_provider_names_its_call_its_own_way() {
        let livekit = provider_ids(&record("livekit", Some("SCL_1")));
        assert_eq!(
            livekit,
            json!({
                "room": "call-00000000-0000-4000-8000-000000000007",
                "participant_identity": "phone-00000000-0000-4000-8000-000000000007",
                "sip_call_id": "SCL_1",
            })
        );
        let elevenlabs = provider_ids(&record("elevenlabs", Some("conv_1")));
        assert_eq!(elevenlabs, json!({"conversation_id": "conv_1"}));
        let whole = whole(&record("elevenlabs", Some("conv_1")));
        assert!(whole.get("token_hash").is_none(), "the digest never leaves");
    }
}
