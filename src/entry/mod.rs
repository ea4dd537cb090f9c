//! The three ways the router runs: one local process, AWS Lambda, Vercel functions.

#[cfg(feature = "lambda")]
pub mod lambda;
pub mod local;
#[cfg(feature = "lambda")]
pub mod outbox_lambda;
pub mod vercel;
