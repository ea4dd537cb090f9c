//! `Idempotency-Key` (docs/API.md §8): the key, the fingerprint of the request it names, the claim
//! in the store, and the replay of a kept answer.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET};
use crate::access::Caller;
use crate::app::App;
use crate::client_ip::IpKey;
use crate::http::error::ApiError;
use crate::http::RequestId;
use crate::store::{keys, Begin, Envelope, StoredResponse};

const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// An `Idempotency-Key` as sent: 1–255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of a request, if it sent one (exactly once, well-formed).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let mut values = headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        if values.next().is_some()
            || bytes.is_empty()
            || bytes.len() > 255
            || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        {
            return Err(ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 printable ASCII characters, sent once.",
            ));
        }
        Ok(Some(IdempotencyKey(
            String::from_utf8_lossy(bytes).into_owned(),
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the idempotency fingerprint covers: the request as understood, so formatting
/// differences of the same request (spaces in the number, key order) do not count as a
/// different body.
#[derive(Serialize)]
pub struct Fingerprint<'a> {
    pub phone_number: &'a str,
    pub name: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub variables: &'a BTreeMap<String, String>,
}

/// A key claimed for one request: its place in the store and the request's fingerprint.
#[derive(Debug, Clone)]
pub struct Claim {
    key: String,
    fingerprint: String,
}

impl Claim {
    /// Scopes the key to its caller (an API key's identity, or an anonymous caller's address)
    /// and fingerprints the request as understood.
    pub fn new(
        key: &IdempotencyKey,
        caller: &Caller,
        client: Option<IpKey>,
        request: Fingerprint<'_>,
    ) -> Result<Self, ApiError> {
        let key_id = match caller {
            Caller::Authenticated(id) => Some(id.as_str()),
            Caller::Anonymous => None,
        };
        let scope = keys::idempotency_scope(key_id, client).ok_or(ApiError::Internal)?;
        let canonical = serde_json::to_vec(&request).map_err(|_| ApiError::Internal)?;
        Ok(Claim {
            key: keys::idempotency(&scope, &key.0),
            fingerprint: crate::ids::hex(&Sha256::digest(&canonical)),
        })
    }

    /// Claims the key. `Err` is the answer to give instead of running the request: a replay of
    /// the kept answer, or a refusal.
    pub async fn begin(&self, app: &App, request_id: &RequestId) -> Result<(), Box<Response>> {
        let now = app.clock.now_ms();
        let refused = match app
            .idempotency
            .begin(&self.key, &self.fingerprint, now)
            .await
        {
            Ok(Begin::Started) => return Ok(()),
            Ok(Begin::Replay(stored)) => return Err(Box::new(replay(stored))),
            Ok(Begin::InProgress) => ApiError::RequestInProgress,
            Ok(Begin::Mismatch) => ApiError::IdempotencyKeyReused,
            Err(error) => {
                tracing::error!(request_id = %request_id.0, error = %error, "Idempotency store failed; refusing the call");
                ApiError::RateLimitUnavailable
            }
        };
        Err(Box::new(refused.render(&request_id.0)))
    }

    /// Keeps the answer of a request that reached the provider (a replay must never ring
    /// twice, even after a timeout) together with its webhook event; gives the key back
    /// otherwise, so a retry can succeed. Answers whether the event was recorded.
    pub async fn end(
        &self,
        app: &App,
        response: Response,
        reached_provider: bool,
        event: Option<&Envelope>,
        request_id: &RequestId,
    ) -> (Response, bool) {
        let stored = if reached_provider {
            store(response).await
        } else {
            Err(Box::new(response))
        };
        match stored {
            Ok((stored, response)) => {
                let now = app.clock.now_ms();
                let saved = app
                    .idempotency
                    .complete(&self.key, &self.fingerprint, &stored, event, now)
                    .await;
                if let Err(error) = &saved {
                    tracing::error!(request_id = %request_id.0, error = %error, "Idempotency record not saved");
                }
                (response, saved.is_ok())
            }
            Err(response) => {
                if let Err(error) = app.idempotency.release(&self.key, &self.fingerprint).await {
                    tracing::error!(request_id = %request_id.0, error = %error, "Idempotency key not released");
                }
                (*response, event.is_none())
            }
        }
    }
}

/// Headers a replay repeats (the rest are made fresh: request id, CORS).
const REPLAYED_HEADERS: [HeaderName; 4] = [
    RATELIMIT_LIMIT,
    RATELIMIT_REMAINING,
    RATELIMIT_RESET,
    http::header::RETRY_AFTER,
];

/// Splits a response into what is stored and the response itself (rebuilt from the bytes).
async fn store(response: Response) -> Result<(StoredResponse, Response), Box<Response>> {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Err(Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response()));
    };
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: REPLAYED_HEADERS
            .iter()
            .filter_map(|name| {
                let value = parts.headers.get(name)?.to_str().ok()?;
                Some((name.to_string(), value.to_string()))
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    Ok((stored, Response::from_parts(parts, Body::from(bytes))))
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}
