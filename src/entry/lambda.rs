//! AWS Lambda (`lambda_http`): the same router, with API Gateway stage prefixes removed.
//!
//! The client address comes from `requestContext` only, attached as an [`AwsSourceIp`];
//! forwarding headers are never read on AWS, since API Gateway appends to a client-sent
//! `X-Forwarded-For`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use lambda_http::request::RequestContext;
use tower::util::MapRequest;
use tower::ServiceExt;

use crate::after_answer::AfterAnswer;
use crate::client_ip::{AwsSourceIp, ClientIpSource};
use crate::store::StoreKind;
use crate::App;

/// The service `lambda_http::run` drives: the router behind stage stripping.
pub type LambdaService = MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request>;

/// The router for Lambda: `/prod/api/health` on a REST API stage `prod` is `/api/health`.
/// (Equivalent to `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH`, without depending on it. The path is
/// rewritten before routing, which a `Router::layer` could not do.)
pub fn router(app: Arc<App>) -> LambdaService {
    crate::router(app).map_request(adapt as fn(_) -> _)
}

/// Translates the Lambda request for the router: the stage prefix off the path, the request
/// context's source address as a plain [`AwsSourceIp`].
fn adapt(mut request: lambda_http::Request) -> lambda_http::Request {
    if let Some(ip) = source_ip(&request) {
        request.extensions_mut().insert(AwsSourceIp(ip));
    }
    strip_stage(request)
}

/// The `requestContext` source IP of API Gateway (REST and HTTP API) and Function URLs.
fn source_ip(request: &lambda_http::Request) -> Option<IpAddr> {
    let ip = match request.extensions().get::<RequestContext>()? {
        // REST API (payload v1): `requestContext.identity.sourceIp`.
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        // HTTP API and Function URLs (payload v2): `requestContext.http.sourceIp`.
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }?;
    ip.parse().ok()
}

fn strip_stage(mut request: lambda_http::Request) -> lambda_http::Request {
    let stage = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage.filter(|s| s != "$default" && !s.is_empty()) else {
        return request;
    };
    let prefix = format!("/{stage}/");
    let uri = request.uri();
    if let Some(rest) = uri.path().strip_prefix(&prefix[..prefix.len() - 1]) {
        if rest.starts_with('/') {
            let path_and_query = match uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            };
            if let Ok(new_uri) = path_and_query.parse() {
                *request.uri_mut() = new_uri;
            }
        }
    }
    request
}

/// The Lambda entry point: init once, then serve events — HTTP events, or the outbox's
/// (`CHAMADA_HANDLER=outbox`: the stream, the sweep schedule, operators).
pub async fn run() -> Result<(), lambda_http::Error> {
    if std::env::var("CHAMADA_HANDLER").as_deref() == Ok("outbox") {
        let app =
            App::from_env_reporting(ClientIpSource::Aws, crate::entry::outbox_lambda::relevant)
                .await?;
        return crate::entry::outbox_lambda::run(Arc::new(app)).await;
    }
    let app = App::from_env(ClientIpSource::Aws).await?;
    // A frozen instance runs nothing after its answer: on DynamoDB the stream's function
    // delivers; on the memory store (one instance's own outbox) delivery runs before it.
    let after_answer = match app.config.store {
        StoreKind::DynamoDb => AfterAnswer::Stream,
        // No stream to deliver from: before the answer, as on the memory store.
        StoreKind::Memory | StoreKind::Postgres => AfterAnswer::Inline,
    };
    lambda_http::run(router(Arc::new(app.with_after_answer(after_answer)))).await
}
