//! Configuration (docs/API.md §3): one typed structure, read once at start-up from the environment,
//! section by section (access, origins, phone policy, limits and store, client address,
//! providers, webhook, logs). Every check of a value lives in this module; what it finds is a
//! [`Problem`] with the variable's name, its kind and a reason.
//!
//! Two kinds of failure:
//! - a hard error ([`ConfigError`]) only for `APP_ENV`/`FLASK_ENV` holding an unknown environment:
//!   we cannot even tell which rules apply;
//! - everything else becomes a [`Problem`] (a variable *missing* or *refused*). The process still
//!   starts, `/api/health` answers `503 degraded` with the names, and `start_call` answers `503`.
//!   No call can be placed on a broken configuration.
//!
//! Secrets are [`SecretString`]s: `Debug` prints `[REDACTED]`, so a stray `{:?}` leaks nothing.
//! Each adapter owns its settings type (`ElevenLabsConfig` in `dispatch::elevenlabs`, …); this
//! module only reads them.

mod bot_check;
mod calls;
mod checks;
mod problem;
mod providers;
mod reader;
mod store;
#[cfg(test)]
mod tests;
mod variables;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::access::ApiKeys;
use crate::bot_check::TurnstileConfig;
use crate::client_ip::ClientIpSource;
use crate::dispatch::elevenlabs::ElevenLabsConfig;
use crate::dispatch::livekit::LiveKitConfig;
use crate::dispatch::ProviderKind;
use crate::logging::LogFormat;
use crate::notify::WebhookConfig;
use crate::phone::{self, E164};
use crate::store::StoreKind;

pub use calls::CallSettings;
pub use problem::{Problem, ProblemKind, Scope};
use reader::Reader;
pub use reader::{ProcessEnv, Source};
pub use variables::VARIABLES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_ip: u32,
    pub per_number: u32,
    pub per_day: Option<u32>,
    pub window_secs: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} must be `development` or `production`")]
    UnknownEnvironment { name: &'static str },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub api_keys: ApiKeys,
    pub public_calls: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_countries: Vec<String>,
    pub default_fallback_phone: Option<E164>,
    pub limits: Limits,
    pub store: StoreKind,
    /// Whether `RATE_LIMIT_STORE` was set (production on `memory` must be chosen explicitly).
    pub store_explicit: bool,
    pub rate_limit_table: Option<String>,
    /// The `postgres` store's connection (`DATABASE_URL`, `DATABASE_CA_CERT`); `None` on the
    /// other stores, or when refused (then a problem says why).
    pub database: Option<crate::store::postgres::PgSettings>,
    /// Keys the HMAC-SHA256 that hashes limit and idempotency keys in the shared store.
    pub rate_limit_hash_key: SecretString,
    /// `CLIENT_IP_SOURCE`, else the platform's own source (the entry point states it).
    pub client_ip_source: ClientIpSource,
    /// The provider used when a request names none; `None` when no provider is available.
    pub provider: Option<ProviderKind>,
    pub elevenlabs: Option<ElevenLabsConfig>,
    pub livekit: Option<LiveKitConfig>,
    pub webhook: Option<WebhookConfig>,
    /// `CRON_SECRET`: the bearer token of `GET /api/outbox/sweep` (Vercel Cron sends it).
    pub cron_secret: Option<SecretString>,
    /// `TURNSTILE_*`: the bot check on anonymous calls (docs/API.md §16); `None` when off.
    pub bot_check: Option<TurnstileConfig>,
    pub calls: CallSettings,
    pub provider_timeout: Duration,
    pub log_format: LogFormat,
    /// On AWS Lambda, the function name: metrics are written as EMF lines under this `Service`.
    pub metrics_service: Option<String>,
    pub problems: Vec<Problem>,
}

/// Minimum length of a production API key.
pub const MIN_KEY_LEN: usize = 32;

/// Minimum length of `CRON_SECRET` in production.
pub const MIN_CRON_SECRET_LEN: usize = 16;

/// Minimum length of `RATE_LIMIT_HASH_KEY` in production.
pub const MIN_HASH_KEY_LEN: usize = 32;

/// The hash key outside production when none is set: fixed, so a local table keeps its
/// meaning across restarts; public, so never good enough for production.
pub const DEVELOPMENT_HASH_KEY: &str = "chamada-development-rate-limit-hash-key";

impl Config {
    /// Reads the process environment for an entry point on `platform` (the client address
    /// source used unless `CLIENT_IP_SOURCE` says otherwise).
    pub fn from_env(platform: ClientIpSource) -> Result<Self, ConfigError> {
        Self::load_on(&ProcessEnv, platform)
    }

    /// Reads and validates every variable from `source`, as the local server would.
    pub fn load(source: &dyn Source) -> Result<Self, ConfigError> {
        Self::load_on(source, ClientIpSource::Socket)
    }

    /// Reads and validates every variable from `source`, one section at a time.
    pub fn load_on(source: &dyn Source, platform: ClientIpSource) -> Result<Self, ConfigError> {
        let environment = environment(source)?;
        let production = environment == Environment::Production;
        let mut r = Reader::new(source, production);

        let (api_keys, public_calls) = access(&mut r);
        let allowed_origins = origins(&mut r, public_calls);
        let (caller_id, default_fallback_phone, allowed_countries) = phone_policy(&mut r);
        let limits = limits(&mut r);
        let store = store::read(&mut r);
        let client_ip_source = client_ip_source(&mut r, platform);
        let providers = providers::read(&mut r, caller_id);
        let webhook = providers::webhook(&mut r);
        let cron_secret = providers::cron_secret(&mut r);
        let bot_check = bot_check::read(&mut r);
        let calls = calls::read(&mut r);
        let log_format = log_format(&mut r);

        Ok(Config {
            environment,
            api_keys,
            public_calls,
            allowed_origins,
            allowed_countries,
            default_fallback_phone,
            limits,
            store: store.kind,
            store_explicit: store.explicit,
            rate_limit_table: store.table,
            database: store.database,
            rate_limit_hash_key: store.hash_key,
            client_ip_source,
            provider: providers.default,
            elevenlabs: providers.elevenlabs,
            livekit: providers.livekit,
            webhook,
            cron_secret,
            bot_check,
            calls,
            provider_timeout: providers.timeout,
            log_format,
            metrics_service: source
                .get("AWS_LAMBDA_FUNCTION_NAME")
                .filter(|name| !name.trim().is_empty()),
            problems: r.into_problems(),
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Whether a problem stops every call (`503 misconfigured` before anything else).
    pub fn blocks_all_calls(&self) -> bool {
        self.problems.iter().any(|p| p.scope == Scope::AllCalls)
    }

    /// Whether calls through `provider` are refused: one of its variables is refused or
    /// missing. Such a call answers `503 misconfigured` and reaches no provider.
    pub fn provider_broken(&self, provider: ProviderKind) -> bool {
        self.problems
            .iter()
            .any(|p| p.scope == Scope::Provider(provider))
    }

    /// Whether anonymous calls are refused: the bot check is half set up (docs/API.md §16).
    pub fn public_calls_broken(&self) -> bool {
        self.problems.iter().any(|p| p.scope == Scope::PublicCalls)
    }

    /// Adds a problem found after loading (e.g. a region the phone metadata does not know).
    pub fn add_problem(
        &mut self,
        name: &'static str,
        kind: ProblemKind,
        reason: &'static str,
        scope: Scope,
    ) {
        problem::add_once(&mut self.problems, name, kind, reason, scope);
    }
}

/// `APP_ENV`, else `FLASK_ENV` (the variable the Flask version read), else development.
fn environment(source: &dyn Source) -> Result<Environment, ConfigError> {
    match (source.get("APP_ENV"), source.get("FLASK_ENV")) {
        (Some(v), _) if !v.trim().is_empty() => checks::environment(&v, "APP_ENV"),
        (_, Some(v)) if !v.trim().is_empty() => checks::environment(&v, "FLASK_ENV"),
        _ => Ok(Environment::Development),
    }
}

/// API keys and whether anonymous calls are allowed.
fn access(r: &mut Reader) -> (ApiKeys, bool) {
    let production = r.production;
    let api_keys = match r.secret("PRODUCTION_API_KEY") {
        Some(raw) => {
            let keys: Vec<&str> = raw
                .expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect();
            if keys
                .iter()
                .any(|k| !k.bytes().all(|b| b.is_ascii_graphic()))
            {
                r.refuse(
                    "PRODUCTION_API_KEY",
                    "keys must be printable ASCII without spaces",
                );
                ApiKeys::default()
            } else if production && keys.iter().any(|k| k.len() < MIN_KEY_LEN) {
                r.refuse(
                    "PRODUCTION_API_KEY",
                    "every key needs 32 characters or more",
                );
                ApiKeys::default()
            } else {
                ApiKeys::new(keys)
            }
        }
        None => ApiKeys::default(),
    };
    if production && api_keys.is_empty() && !r.has_problem("PRODUCTION_API_KEY") {
        r.missing(
            "PRODUCTION_API_KEY",
            "production needs an API key of 32 characters or more",
        );
    }
    let public_calls = r.boolean("PUBLIC_CALLS").unwrap_or(false);
    (api_keys, public_calls)
}

/// The browser origins CORS allows.
fn origins(r: &mut Reader, public_calls: bool) -> Vec<String> {
    let production = r.production;
    let allowed_origins = match r.value("ALLOWED_ORIGINS") {
        Some(raw) => {
            let origins: Vec<String> = raw
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(reason) = origins
                .iter()
                .find_map(|o| checks::origin_problem(o, production))
            {
                r.refuse("ALLOWED_ORIGINS", reason);
                Vec::new()
            } else {
                origins
            }
        }
        None if production => Vec::new(),
        None => vec!["http://localhost:3000".to_string()],
    };
    if production && public_calls && allowed_origins.is_empty() {
        r.missing(
            "ALLOWED_ORIGINS",
            "PUBLIC_CALLS=true needs the https origins of the page that calls",
        );
    }
    allowed_origins
}

/// `CALLER_ID`, `DEFAULT_FALLBACK_PHONE` and the allowed regions (by default `CALLER_ID`'s).
fn phone_policy(r: &mut Reader) -> (Option<E164>, Option<E164>, Vec<String>) {
    let caller_id = r.phone("CALLER_ID");
    let default_fallback_phone = r.phone("DEFAULT_FALLBACK_PHONE");
    let allowed_countries = match r.value("ALLOWED_COUNTRIES") {
        Some(raw) => {
            let list: Vec<String> = raw
                .split(',')
                .map(|c| c.trim().to_ascii_uppercase())
                .filter(|c| !c.is_empty())
                .collect();
            if list.is_empty()
                || list
                    .iter()
                    .any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
            {
                r.refuse(
                    "ALLOWED_COUNTRIES",
                    "expected ISO 3166 alpha-2 codes such as PT,ES",
                );
                Vec::new()
            } else if !list.iter().all(|c| phone::is_known_region(c)) {
                r.refuse(
                    "ALLOWED_COUNTRIES",
                    "names a region libphonenumber does not know: use ISO 3166 codes such as PT,ES",
                );
                Vec::new()
            } else {
                list
            }
        }
        None => vec![caller_id
            .as_ref()
            .and_then(phone::region_of)
            .unwrap_or_else(|| "PT".to_string())],
    };
    (caller_id, default_fallback_phone, allowed_countries)
}

fn limits(r: &mut Reader) -> Limits {
    Limits {
        per_ip: r.number("MAX_REQUESTS_PER_IP", 1, 1000).unwrap_or(3) as u32,
        per_number: r.number("MAX_CALLS_PER_NUMBER", 1, 1000).unwrap_or(3) as u32,
        per_day: r
            .number("MAX_CALLS_PER_DAY", 1, 10_000_000)
            .map(|n| n as u32),
        window_secs: r
            .number("RATE_LIMIT_WINDOW", 1, 366 * 86_400)
            .unwrap_or(86_400),
    }
}

/// `CLIENT_IP_SOURCE` when set, else the platform's own source. The platform is stated by the
/// entry point, never guessed from variables (`vercel env pull` writes `VERCEL=1` into a local
/// `.env.local`).
fn client_ip_source(r: &mut Reader, platform: ClientIpSource) -> ClientIpSource {
    match r.value("CLIENT_IP_SOURCE").as_deref() {
        Some("socket") => ClientIpSource::Socket,
        Some("aws") => ClientIpSource::Aws,
        Some("vercel") => ClientIpSource::Vercel,
        Some(_) => {
            r.refuse("CLIENT_IP_SOURCE", "expected aws, vercel or socket");
            platform
        }
        None => platform,
    }
}

fn log_format(r: &mut Reader) -> LogFormat {
    match r.value("LOG_FORMAT").as_deref() {
        Some("pretty") => LogFormat::Pretty,
        Some("json") | None => LogFormat::Json,
        Some(_) => {
            r.refuse("LOG_FORMAT", "expected json or pretty");
            LogFormat::Json
        }
    }
}
