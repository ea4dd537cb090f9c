//! Chamada: the backend that starts AI voice-agent phone calls, guarded.
//!
//! One library holds everything; each entry point (local server, Lambda, Vercel) is a few
//! lines that build an [`App`] once and run [`router`]. See `docs/ARCHITECTURE.md` for the path
//! of a request through these modules.

pub mod access;
pub mod after_answer;
pub mod app;
pub mod bot_check;
pub mod calls;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod entry;
pub mod http;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod phone;
pub mod store;
pub mod text;

pub use app::App;
pub use config::Config;
pub use http::router;
