//! Logs (docs/API.md §11): one JSON object per line on stdout, or `LOG_FORMAT=pretty` for humans.
//!
//! The operators' searches depend on the exact words of these messages; keep them.

use tracing_subscriber::EnvFilter;

/// `LOG_FORMAT`: one JSON object per line (default), or human-readable lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

pub const INVALID_API_KEY: &str = "Invalid API key";
pub const RATE_LIMIT_EXCEEDED: &str = "Rate limit exceeded";
pub const CORS_VIOLATION: &str = "CORS violation";
pub const ENV_MISSING: &str = "Environment variable missing";
pub const CALL_INITIATED: &str = "Call initiated";
pub const CALL_FAILED: &str = "Call failed";
pub const WEBHOOK_FAILED: &str = "Webhook delivery failed";
pub const BOT_CHECK_FAILED: &str = "Bot check failed";
pub const BOT_CHECK_UNAVAILABLE: &str = "Bot check unavailable";

/// Installs the global subscriber once; later calls (tests, warm Lambda starts) are no-ops.
/// `RUST_LOG` filters as usual (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .compact()
            .try_init(),
    };
}

/// A header value an attacker controls, made safe to log: at most 100 characters.
pub fn untrusted(value: &[u8]) -> String {
    String::from_utf8_lossy(value).chars().take(100).collect()
}
