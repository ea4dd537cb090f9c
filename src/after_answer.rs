//! Work that runs after the answer (webhook delivery), and where each platform runs it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A piece of work for after the answer.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How the app delivers what the call path wrote to the outbox.
#[derive(Clone)]
pub enum AfterAnswer {
    /// Before answering, as part of the request (AWS Lambda on the memory store: a frozen
    /// instance runs nothing after its answer). Also what `App::build` starts with, so tests
    /// see the delivery done when the answer arrives.
    Inline,
    /// On the runtime, after the answer (the local server).
    Spawn,
    /// By the platform, after the answer: each request carries a [`Background`] (Vercel's
    /// `waitUntil`); without one, nothing runs in process.
    Platform,
    /// Not in process at all: the DynamoDB stream's function delivers (AWS Lambda on DynamoDB).
    Stream,
}

/// Runs a task after the answer, the platform's way; a request extension set by the entry
/// point (Vercel's adapter puts `waitUntil` here).
#[derive(Clone)]
pub struct Background(Arc<dyn Fn(Task) + Send + Sync>);

impl Background {
    pub fn new(run: impl Fn(Task) + Send + Sync + 'static) -> Self {
        Background(Arc::new(run))
    }

    /// On the current tokio runtime.
    pub fn spawn() -> Self {
        Background::new(|task| {
            tokio::spawn(task);
        })
    }

    pub fn run(&self, task: impl Future<Output = ()> + Send + 'static) {
        (self.0)(Box::pin(task));
    }
}
