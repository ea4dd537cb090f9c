//! Vercel: the router behind `vercel_runtime`. Each `api/*.rs` function calls [`run`];
//! Vercel's `x-real-ip` is the client address unless `CLIENT_IP_SOURCE` says otherwise.
//!
//! The runtime's own axum layer drops its per-request state, and with it `waitUntil`; this
//! adapter keeps it: each request carries a [`Background`] that registers work with the
//! invocation, so webhook delivery runs after the answer and the invocation stays alive until
//! it ends (bounded by the function's `maxDuration`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vercel_runtime::{AppState, ResponseBody};

use crate::after_answer::{AfterAnswer, Background};
use crate::client_ip::ClientIpSource;
use crate::App;

/// Builds the app once per instance, then serves invocations.
pub async fn run() -> Result<(), vercel_runtime::Error> {
    let app = App::from_env(ClientIpSource::Vercel).await?;
    let app = Arc::new(app.with_after_answer(AfterAnswer::Platform));
    vercel_runtime::run(Adapter(crate::router(app))).await
}

/// The router as a `vercel_runtime` service.
#[derive(Clone)]
pub struct Adapter(pub Router);

impl tower::Service<(AppState, vercel_runtime::Request)> for Adapter {
    type Response = vercel_runtime::Response<ResponseBody>;
    type Error = vercel_runtime::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (state, request): (AppState, vercel_runtime::Request)) -> Self::Future {
        let router = self.0.clone();
        Box::pin(async move {
            let background = Background::new(move |task| state.wait_until(task));
            let response = invoke(router, background, request).await?;
            Ok(response.map(ResponseBody::from))
        })
    }
}

/// One invocation: the whole body (Vercel has buffered it), the router with `background` in
/// the request's extensions, the whole answer.
pub async fn invoke<B>(
    router: Router,
    background: Background,
    request: http::Request<B>,
) -> Result<http::Response<Bytes>, vercel_runtime::Error>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<vercel_runtime::Error>,
{
    let (mut parts, body) = request.into_parts();
    let bytes = body.collect().await.map_err(Into::into)?.to_bytes();
    parts.extensions.insert(background);
    let request = http::Request::from_parts(parts, Body::from(bytes));
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await?;
    Ok(http::Response::from_parts(parts, bytes))
}
