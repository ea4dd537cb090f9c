//! The HTTP contract of SPEC §2–§6 and §10, through the real router, in process.

// Shared by every test module; each uses its own part.
#[allow(dead_code)]
mod helpers;
mod providers;
mod webhook;
