//! The HTTP contract of SPEC §2–§6 and §10, through the real router, in process.

mod access;
mod cors;
mod health;
mod helpers;
mod idempotency;
mod limits;
mod malformed;
mod page;
mod properties;
mod server;
