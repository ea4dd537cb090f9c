//! The HTTP contract of SPEC §2–§6 and §10, through the real router, in process.

mod helpers;
