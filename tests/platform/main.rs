//! The platforms: the local server binary over HTTP, the Vercel bridge, the Lambda adapter fed
//! real events, and the deployment descriptors (template.yaml, vercel.json) against the code.

mod deploy;
#[cfg(feature = "lambda")]
mod lambda;
mod server;
#[path = "../support/mod.rs"]
mod support;
mod vercel;
