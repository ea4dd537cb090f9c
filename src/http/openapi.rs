//! `GET /api/openapi.json` (docs/API.md §2.3): the contract's machine-readable twin,
//! `openapi.yaml`, as JSON (converted at build time by `build.rs`).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};

use super::cors::{self, OriginCheck};
use crate::http::error::ApiError;

/// The OpenAPI document, as served.
pub const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

const METHODS: &str = "GET, OPTIONS";

pub async fn handle(
    Extension(origin): Extension<OriginCheck>,
    request: Request,
) -> Result<Response, ApiError> {
    match *request.method() {
        Method::GET | Method::HEAD => {
            let mut response = (StatusCode::OK, DOCUMENT).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(response)
        }
        Method::OPTIONS => Ok(cors::preflight(&origin, METHODS)),
        _ => Err(ApiError::MethodNotAllowed { allow: METHODS }),
    }
}
