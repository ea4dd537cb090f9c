//! Start-up shared by the serverless entry points (Lambda, Vercel): configuration from the
//! environment, logs, every client and the phone metadata — once per process, at init, never in
//! the handler.

use std::sync::Arc;

use crate::{logging, App, Config};

/// Builds the app from the process environment and logs its configuration problems.
pub async fn app_from_env() -> Result<Arc<App>, crate::config::ConfigError> {
    let config = Config::from_env()?;
    logging::init(config.log_format);
    let app = App::build(config).await;
    tracing::info!(details = %app.describe(), "Chamada started");
    app.report_problems();
    Ok(Arc::new(app))
}

/// Vercel: the router behind `vercel_runtime`'s axum layer. `api/*.rs` call this.
pub async fn run_vercel() -> Result<(), vercel_runtime::Error> {
    let app = app_from_env().await?;
    let service = tower::ServiceBuilder::new()
        .layer(vercel_runtime::axum::VercelLayer::new())
        .service(crate::router(app));
    vercel_runtime::run(service).await
}
