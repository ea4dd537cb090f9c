//! The DynamoDB SDK sends through the service's one HTTP stack ([`crate::outbound`]): `reqwest`
//! on the shared rustls configuration, HTTP/1.1.
//!
//! Why not the SDK's default client (`aws-smithy-http-client`): it links a second hyper client,
//! HTTP/2 (`h2`, ~0.6 MB of the binary, unused by DynamoDB's HTTP/1.1 endpoints) and reads the
//! system trust store at start-up (~150 files here, part of the ~7 ms DynamoDB added to a cold
//! start; docs/PERFORMANCE.md). Why not a published adapter: `aws-smithy-http-client-reqwest`
//! 0.1 turns on reqwest's HTTP/2 and reports every transport error as non-retryable;
//! `smithy-transport-reqwest` 0.1 builds its own clients, so they cannot share the TLS
//! configuration. This is the SDK's documented extension point (`HttpClient`), ~100 lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// The connect and read timeouts a connector was built for.
type Timeouts = (Option<Duration>, Option<Duration>);

/// The SDK's HTTP client: one `reqwest` client per distinct timeout setting (the process uses
/// one), built on first use and kept, so connections are pooled across requests.
#[derive(Debug, Default)]
pub struct SdkHttp {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for SdkHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        // A poisoned lock only means another thread panicked while inserting: the map is
        // still whole.
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(Connector::new(key.0, key.1)))
            .clone()
    }
}

#[derive(Debug, Clone)]
struct Connector {
    /// The error is kept as text: building fails only on a TLS configuration reqwest does not
    /// take, and then every call reports it.
    client: Result<reqwest::Client, Arc<str>>,
}

impl Connector {
    fn new(connect: Option<Duration>, read: Option<Duration>) -> Self {
        let mut builder = crate::outbound::client_builder();
        if let Some(timeout) = connect {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = read {
            builder = builder.read_timeout(timeout);
        }
        Connector {
            client: builder.build().map_err(|e| e.to_string().into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the HTTPS client could not be built: {0}")]
struct NoClient(Arc<str>);

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => {
                let error = ConnectorError::other(Box::new(NoClient(e.clone())), None);
                return HttpConnectorFuture::ready(Err(error));
            }
        };
        let request = match request.try_into_http1x() {
            Ok(request) => request.map(reqwest::Body::wrap),
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(Box::new(e)))),
        };
        let request = match reqwest::Request::try_from(request) {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(classify(e))),
        };
        HttpConnectorFuture::new(async move {
            let response = client.execute(request).await.map_err(classify)?;
            let response = http::Response::from(response).map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(Box::new(e), None))
        })
    }
}

/// Sorts a transport error the way the SDK's retry strategy reads it: a timeout, and an I/O
/// failure (connection refused — never connected, so always safe to retry — reset, or a body
/// cut short) are transient and retried; a request reqwest cannot build is the caller's.
/// reqwest files every failure of a sent request under `is_request`, hyper's connection errors
/// included, so that kind is transport, not the caller's.
fn classify(error: reqwest::Error) -> ConnectorError {
    if error.is_timeout() {
        ConnectorError::timeout(Box::new(error))
    } else if error.is_builder() {
        ConnectorError::user(Box::new(error))
    } else if error.is_connect() {
        ConnectorError::io(Box::new(error)).never_connected()
    } else if error.is_request() || error.is_body() || error.is_decode() {
        ConnectorError::io(Box::new(error))
    } else {
        ConnectorError::other(Box::new(error), None)
    }
}
