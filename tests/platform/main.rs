//! The platforms: the Vercel bridge, the Lambda adapter fed real events, and the deployment
//! descriptors (template.yaml, vercel.json) against the code.

mod deploy;
#[cfg(feature = "lambda")]
mod lambda;
#[path = "../support/mod.rs"]
mod support;
mod vercel;
