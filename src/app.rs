//! The application: the configuration and every port the call path uses, built once per
//! process (at Lambda init, at Vercel cold start, at `cargo run`) and shared by all requests.

use std::sync::Arc;

use crate::after_answer::AfterAnswer;
use crate::bot_check::Turnstile;
use crate::calls::Ports;
use crate::client_ip::ClientIpSource;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Problem, ProblemKind, Scope};
use crate::dispatch::ProviderKind;
use crate::dispatch::{CallDispatcher, Dispatchers, DryRun, ElevenLabs, LiveKit};
use crate::logging;
use crate::metrics::{Metric, Metrics};
use crate::notify::{Deliverer, MakeWebhook, Notifier};
use crate::phone::PhonePolicy;
use crate::store::dynamodb::{self, DynamoStore};
use crate::store::memory::MemoryStore;
use crate::store::postgres::PgStore;
use crate::store::StoreKind;
use crate::store::{CallRecords, IdempotencyStore, Outbox, RateLimiter};

pub struct App {
    pub config: Config,
    /// `None` only when `ALLOWED_COUNTRIES` is refused (then the configuration is degraded).
    pub phone: Option<PhonePolicy>,
    pub limiter: Arc<dyn RateLimiter>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The same store as `idempotency`: an answer and its event are written together.
    pub outbox: Arc<dyn Outbox>,
    /// The same store again: a call's record and the events of its changes.
    pub calls: Arc<dyn CallRecords>,
    pub dispatchers: Dispatchers,
    /// The webhook's receiver; `None` without `MAKE_WEBHOOK_URL` (then no event is written).
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Where delivery runs after the call path wrote an event.
    pub after_answer: AfterAnswer,
    /// The bot check on anonymous calls (docs/API.md §16); `None` when off.
    pub bot_check: Option<Turnstile>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl App {
    /// Start-up of a serverless entry point: configuration from the process environment for
    /// `platform`, logs, every client and the phone metadata — once per process, at init,
    /// never in the handler. Configuration problems are logged, not fatal.
    pub async fn from_env(platform: ClientIpSource) -> Result<App, ConfigError> {
        Self::from_env_reporting(platform, |_| true).await
    }

    /// [`App::from_env`] for a function that uses part of the configuration: only the problems
    /// `relevant` keeps are logged and counted (the outbox function has no API key or provider
    /// to be missing).
    pub async fn from_env_reporting(
        platform: ClientIpSource,
        relevant: fn(&Problem) -> bool,
    ) -> Result<App, ConfigError> {
        let config = Config::from_env(platform)?;
        logging::init(config.log_format);
        let app = App::build(config).await;
        tracing::info!(details = %app.describe(), "Chamada started");
        app.report(relevant);
        Ok(app)
    }

    /// Builds every port the configuration asks for. Never fails: what cannot be built becomes
    /// a configuration problem, reported by health and refused by `start_call`.
    pub async fn build(mut config: Config) -> App {
        // The regions were checked by `config` (unknown ones are refused there).
        let phone = PhonePolicy::new(&config.allowed_countries)
            .ok()
            .filter(|_| !config.allowed_countries.is_empty());
        #[allow(clippy::type_complexity)]
        let (limiter, idempotency, outbox, calls): (
            Arc<dyn RateLimiter>,
            Arc<dyn IdempotencyStore>,
            Arc<dyn Outbox>,
            Arc<dyn CallRecords>,
        ) = match (
            config.store,
            config.rate_limit_table.clone(),
            config.database.clone(),
        ) {
            (StoreKind::DynamoDb, Some(table), _) => {
                // One client per process, from the standard AWS configuration chain.
                let sdk = dynamodb::config_loader().load().await;
                if sdk.region().is_none() {
                    config.add_problem(
                        "AWS_REGION",
                        ProblemKind::Missing,
                        "the DynamoDB store needs AWS_REGION (any region for a local DynamoDB)",
                        Scope::AllCalls,
                    );
                }
                let client = aws_sdk_dynamodb::Client::new(&sdk);
                let store = Arc::new(DynamoStore::new(client, table, &config.rate_limit_hash_key));
                (store.clone(), store.clone(), store.clone(), store)
            }
            (StoreKind::Postgres, _, Some(settings)) => {
                // One connection per process, opened on first use (never at start-up: a
                // database that is down must not stop the instance from answering health).
                let store = Arc::new(PgStore::new(settings, &config.rate_limit_hash_key));
                (store.clone(), store.clone(), store.clone(), store)
            }
            // Without a table (or a database) the configuration already reports
            // RATE_LIMIT_TABLE (DATABASE_URL) missing or refused, and start_call refuses every
            // request.
            _ => {
                let memory = Arc::new(MemoryStore::new());
                (memory.clone(), memory.clone(), memory.clone(), memory)
            }
        };

        let mut dispatchers = Dispatchers::new(config.provider);
        if config.provider == Some(ProviderKind::DryRun) {
            dispatchers = dispatchers.with(Arc::new(DryRun));
        }
        let mut notifier: Option<Arc<dyn Notifier>> = None;
        let mut bot_check = None;
        // One HTTP client per process (`crate::outbound`) for Siteverify, ElevenLabs and the
        // webhook: connections are reused across requests.
        match crate::outbound::http_client() {
            Ok(http) => {
                if let Some(turnstile) = &config.bot_check {
                    bot_check = Some(Turnstile::new(turnstile.clone(), http.clone()));
                }
                if let Some(elevenlabs) = &config.elevenlabs {
                    let timeout = config.provider_timeout;
                    dispatchers = dispatchers.with(Arc::new(ElevenLabs::new(
                        elevenlabs,
                        http.clone(),
                        timeout,
                    )));
                }
                if let Some(livekit) = &config.livekit {
                    dispatchers =
                        dispatchers.with(Arc::new(LiveKit::new(livekit, config.provider_timeout)));
                }
                // A refused secret is a problem `config` reported: no webhook is built.
                if let Some(hook) = config
                    .webhook
                    .as_ref()
                    .and_then(|webhook| MakeWebhook::new(webhook, http).ok())
                {
                    notifier = Some(Arc::new(hook));
                }
            }
            Err(_) => config.add_problem(
                "CALL_PROVIDER",
                ProblemKind::Refused,
                "the HTTPS client could not be built",
                Scope::AllCalls,
            ),
        }

        let config_service = config.metrics_service.clone();
        App {
            config,
            phone,
            limiter,
            idempotency,
            outbox,
            calls,
            dispatchers,
            notifier,
            after_answer: AfterAnswer::Inline,
            bot_check,
            clock: Arc::new(SystemClock),
            metrics: Arc::new(match &config_service {
                Some(service) => Metrics::emf(service.clone()),
                None => Metrics::off(),
            }),
        }
    }

    /// Logs one `Environment variable missing` line per problem (names and reasons, never
    /// values). Entry points call it once at start-up.
    pub fn report_problems(&self) {
        self.report(|_| true);
    }

    fn report(&self, relevant: fn(&Problem) -> bool) {
        let problems: Vec<&Problem> = self
            .config
            .problems
            .iter()
            .filter(|p| relevant(p))
            .collect();
        if !problems.is_empty() {
            self.count(Metric::ConfigurationProblems, problems.len() as u64);
        }
        for problem in problems {
            tracing::error!(
                variable = problem.name,
                kind = problem.kind.as_str(),
                reason = problem.reason,
                "{}",
                logging::ENV_MISSING
            );
        }
    }

    /// The ports the call path uses ([`crate::calls`]).
    pub fn ports(&self) -> Ports<'_> {
        Ports {
            limits: self.config.limits,
            limiter: self.limiter.as_ref(),
            clock: self.clock.as_ref(),
            metrics: &self.metrics,
        }
    }

    /// Counts one metric event now (a no-op unless metrics are on).
    pub fn count(&self, metric: Metric, value: u64) {
        self.metrics.count(metric, value, self.clock.now_ms());
    }

    /// Replaces the metrics sink (tests capture the EMF records).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
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
        self.notifier = Some(notifier);
        self
    }

    /// Replaces the stores: `store` keeps idempotency records, call records and the outbox
    /// (written together).
    pub fn with_stores<S>(mut self, limiter: Arc<dyn RateLimiter>, store: Arc<S>) -> Self
    where
        S: IdempotencyStore + Outbox + CallRecords + 'static,
    {
        self.limiter = limiter;
        self.idempotency = store.clone();
        self.outbox = store.clone();
        self.calls = store;
        self
    }

    /// Where delivery runs after the answer (entry points set their platform's way).
    pub fn with_after_answer(mut self, after_answer: AfterAnswer) -> Self {
        self.after_answer = after_answer;
        self
    }

    /// Delivery of the outbox's events; `None` without a webhook.
    pub fn deliverer(&self) -> Option<Deliverer> {
        let notifier = self.notifier.clone()?;
        Some(Deliverer::new(
            self.outbox.clone(),
            notifier,
            self.clock.clone(),
            self.metrics.clone(),
        ))
    }

    /// The one line the local server prints at start-up.
    pub fn describe(&self) -> String {
        format!(
            "environment={} provider={} store={} client_ip={} webhook={}{}",
            self.config.environment.as_str(),
            self.config.provider.map_or("none", ProviderKind::as_str),
            self.config.store.as_str(),
            self.config.client_ip_source.as_str(),
            if self.config.webhook.is_some() {
                "on"
            } else {
                "off"
            },
            if self.config.problems.is_empty() {
                String::new()
            } else {
                let problems: Vec<String> = self
                    .config
                    .problems
                    .iter()
                    .map(|p| format!("{}:{}", p.name, p.kind.as_str()))
                    .collect();
                format!(" DEGRADED problems={}", problems.join(","))
            },
        )
    }
}
