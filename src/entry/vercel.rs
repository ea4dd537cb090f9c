//! Vercel: the router behind `vercel_runtime`'s axum layer. Each `api/*.rs` function calls
//! [`run`]; Vercel's `x-real-ip` is the client address unless `CLIENT_IP_SOURCE` says otherwise.

use crate::client_ip::ClientIpSource;
use crate::App;

/// Builds the app once per instance, then serves invocations.
pub async fn run() -> Result<(), vercel_runtime::Error> {
    let app = App::from_env(ClientIpSource::Vercel).await?;
    let service = tower::ServiceBuilder::new()
        .layer(vercel_runtime::axum::VercelLayer::new())
        .service(crate::router(app));
    vercel_runtime::run(service).await
}
