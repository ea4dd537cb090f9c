//! The HTTP contract of SPEC §2–§10, through the real router, in process (and the real binaries
//! over HTTP where the point is the process itself).

mod access;
mod cors;
mod deploy;
mod fuzz;
mod health;
mod helpers;
mod idempotency;
mod limits;
mod malformed;
mod metrics;
mod page;
mod properties;
mod providers;
mod readme;
mod reads;
mod refused_settings;
mod server;
mod vercel;
mod webhook;
