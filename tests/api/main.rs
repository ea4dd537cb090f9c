//! The HTTP contract of docs/API.md §2–§10, through the real router, in process (and the real binaries
//! over HTTP where the point is the process itself).

mod access;
mod bot_check;
mod calls;
mod cors;
mod fuzz;
mod health;
mod idempotency;
mod limits;
mod livekit_events;
mod malformed;
mod metrics;
mod openapi;
mod outbox;
mod page;
mod properties;
mod provider_sdks;
mod providers;
mod readme;
mod reads;
mod refused_settings;
#[path = "../support/mod.rs"]
mod support;
mod webhook;
