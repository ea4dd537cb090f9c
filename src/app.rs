//! The application: the configuration and every port the call path uses, built once per
//! process (at Lambda init, at Vercel cold start, at `cargo run`) and shared by all requests.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ProblemKind, ProviderKind, StoreKind};
use crate::dispatch::{CallDispatcher, Dispatchers, DryRun};
use crate::logging;
use crate::phone::PhonePolicy;
use crate::store::dynamodb::{self, DynamoStore};
use crate::store::memory::MemoryStore;
use crate::store::{IdempotencyStore, RateLimiter};
use crate::webhook::{NoWebhook, Notifier};

pub struct App {
    pub config: Config,
    /// `None` only when `ALLOWED_COUNTRIES` is refused (then the configuration is degraded).
    pub phone: Option<PhonePolicy>,
    pub limiter: Arc<dyn RateLimiter>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub dispatchers: Dispatchers,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Builds every port the configuration asks for. Never fails: what cannot be built becomes
    /// a configuration problem, reported by health and refused by `start_call`.
    pub async fn build(mut config: Config) -> App {
        let phone = if config.allowed_countries.is_empty() {
            None
        } else {
            match PhonePolicy::new(&config.allowed_countries) {
                Ok(policy) => Some(policy),
                Err(_) => {
                    config.add_problem(
                        "ALLOWED_COUNTRIES",
                        ProblemKind::Refused,
                        "names a region libphonenumber does not know",
                    );
                    None
                }
            }
        };

        let (limiter, idempotency): (Arc<dyn RateLimiter>, Arc<dyn IdempotencyStore>) =
            match (config.store, config.rate_limit_table.clone()) {
                (StoreKind::DynamoDb, Some(table)) => {
                    // One client per process, from the standard AWS configuration chain.
                    let sdk = dynamodb::config_loader().load().await;
                    if sdk.region().is_none() {
                        config.add_problem(
                            "AWS_REGION",
                            ProblemKind::Missing,
                            "the DynamoDB store needs a region",
                        );
                    }
                    let client = aws_sdk_dynamodb::Client::new(&sdk);
                    let store =
                        Arc::new(DynamoStore::new(client, table, &config.rate_limit_hash_key));
                    (store.clone(), store)
                }
                // Without a table the configuration already reports RATE_LIMIT_TABLE missing
                // and start_call refuses every request.
                _ => {
                    let memory = Arc::new(MemoryStore::new());
                    (memory.clone(), memory)
                }
            };

        let mut dispatchers = Dispatchers::new(config.provider);
        if config.provider == Some(ProviderKind::DryRun) {
            dispatchers = dispatchers.with(Arc::new(DryRun));
        }

        App {
            config,
            phone,
            limiter,
            idempotency,
            dispatchers,
            notifier: Arc::new(NoWebhook),
            clock: Arc::new(SystemClock),
        }
    }

    /// Logs one `Environment variable missing` line per problem (names and reasons, never
    /// values). Entry points call it once at start-up.
    pub fn report_problems(&self) {
        for problem in &self.config.problems {
            tracing::error!(
                variable = problem.name,
                kind = ?problem.kind,
                reason = problem.reason,
                "{}",
                logging::ENV_MISSING
            );
        }
    }

    /// Replaces the clock (tests move time instead of sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces or adds a dispatcher (tests count calls with a recording dispatcher).
    pub fn with_dispatcher(mut self, dispatcher: Arc<dyn CallDispatcher>) -> Self {
        self.dispatchers = self.dispatchers.with(dispatcher);
        self
    }

    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    pub fn with_stores(
        mut self,
        limiter: Arc<dyn RateLimiter>,
        idempotency: Arc<dyn IdempotencyStore>,
    ) -> Self {
        self.limiter = limiter;
        self.idempotency = idempotency;
        self
    }

    /// The one line the local server prints at start-up.
    pub fn describe(&self) -> String {
        format!(
            "environment={} provider={} store={} webhook={}{}",
            self.config.environment.as_str(),
            self.config.provider.map_or("none", ProviderKind::as_str),
            self.config.store.as_str(),
            if self.config.webhook.is_some() {
                "on"
            } else {
                "off"
            },
            if self.config.problems.is_empty() {
                String::new()
            } else {
                format!(
                    " DEGRADED missing={}",
                    self.config.problem_names().join(",")
                )
            },
        )
    }
}
