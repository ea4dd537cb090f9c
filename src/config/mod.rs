//! Configuration (SPEC §3): one typed structure, read once at start-up from the environment.
//!
//! Two kinds of failure:
//! - a hard error ([`ConfigError`]) only for `APP_ENV`/`FLASK_ENV` holding an unknown environment:
//!   we cannot even tell which rules apply;
//! - everything else becomes a [`Problem`] (a variable *missing* or *refused*). The process still
//!   starts, `/api/health` answers `503 degraded` with the names, and `start_call` answers `503`.
//!   No call can be placed on a broken configuration.
//!
//! Secrets are [`SecretString`]s: `Debug` prints `[REDACTED]`, so a stray `{:?}` leaks nothing.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::access::ApiKeys;
use crate::phone::{self, E164};

/// Where a value comes from: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderKind {
    ElevenLabs,
    LiveKit,
    DryRun,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::ElevenLabs => "elevenlabs",
            ProviderKind::LiveKit => "livekit",
            ProviderKind::DryRun => "dry-run",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "elevenlabs" => Some(ProviderKind::ElevenLabs),
            "livekit" => Some(ProviderKind::LiveKit),
            "dry-run" => Some(ProviderKind::DryRun),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    DynamoDb,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::DynamoDb => "dynamodb",
        }
    }
}

/// Where the client IP comes from (SPEC §5). Never from a header a client can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The TCP peer address (local server).
    Socket,
    /// API Gateway / Function URL `requestContext` source IP.
    Aws,
    /// Vercel's `x-real-ip`, which Vercel overwrites.
    Vercel,
}

impl ClientIpSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIpSource::Socket => "socket",
            ClientIpSource::Aws => "aws",
            ClientIpSource::Vercel => "vercel",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElevenLabsNumbers {
    Twilio,
    SipTrunk,
}

#[derive(Debug, Clone)]
pub struct ElevenLabsConfig {
    pub api_key: SecretString,
    pub agent_id: String,
    pub agent_phone_number_id: String,
    /// Without a trailing slash.
    pub api_base: String,
    pub numbers: ElevenLabsNumbers,
}

#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    pub url: String,
    pub api_key: String,
    pub api_secret: SecretString,
    pub sip_trunk_id: String,
    pub caller_id: E164,
    pub agent_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Option<SecretString>,
    pub timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_ip: u32,
    pub per_number: u32,
    pub per_day: Option<u32>,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Required and absent.
    Missing,
    /// Present but refused: malformed, weak, or a template placeholder.
    Refused,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Refused => "refused",
        }
    }
}

/// Which calls a problem stops. No call is ever placed on a value that was refused: a refused
/// value never falls back to a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every call: `start_call` answers `503 misconfigured`.
    AllCalls,
    /// Every call that would use this provider (named in the request, or the default one):
    /// `503 misconfigured`. Calls through another, sound provider go on.
    Provider(ProviderKind),
    /// No provider is configured at all: calls find none (`503 provider_not_configured`).
    NoProvider,
}

/// One variable that keeps the configuration from being complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub name: &'static str,
    pub kind: ProblemKind,
    /// Why, and what to set: for health and the start-up log. Never contains the value.
    pub reason: &'static str,
    pub scope: Scope,
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
    /// Keys the HMAC-SHA256 that hashes limit and idempotency keys in the shared store.
    pub rate_limit_hash_key: SecretString,
    pub client_ip_source: ClientIpSource,
    /// Whether `CLIENT_IP_SOURCE` was set (else the source was detected from the platform's
    /// variables, which the local server ignores: `vercel env pull` writes `VERCEL=1`).
    pub client_ip_source_explicit: bool,
    /// The provider used when a request names none; `None` when no provider is available.
    pub provider: Option<ProviderKind>,
    pub elevenlabs: Option<ElevenLabsConfig>,
    pub livekit: Option<LiveKitConfig>,
    pub webhook: Option<WebhookConfig>,
    pub provider_timeout: Duration,
    pub log_format: LogFormat,
    /// On AWS Lambda, the function name: metrics are written as EMF lines under this `Service`.
    pub metrics_service: Option<String>,
    pub problems: Vec<Problem>,
}

/// Every variable the configuration reads, in the order `.env.example` documents them.
pub const VARIABLES: &[&str] = &[
    "APP_ENV",
    "FLASK_ENV",
    "PRODUCTION_API_KEY",
    "PUBLIC_CALLS",
    "ALLOWED_ORIGINS",
    "ALLOWED_COUNTRIES",
    "CALLER_ID",
    "DEFAULT_FALLBACK_PHONE",
    "MAX_REQUESTS_PER_IP",
    "MAX_CALLS_PER_NUMBER",
    "MAX_CALLS_PER_DAY",
    "RATE_LIMIT_WINDOW",
    "RATE_LIMIT_STORE",
    "RATE_LIMIT_TABLE",
    "RATE_LIMIT_HASH_KEY",
    "CLIENT_IP_SOURCE",
    "CALL_PROVIDER",
    "PROVIDER_TIMEOUT",
    "ELEVENLABS_API_KEY",
    "ELEVEN_AGENT_ID",
    "ELEVEN_AGENT_PHONE_NUMBER_ID",
    "ELEVENLABS_API_BASE",
    "ELEVENLABS_PHONE_PROVIDER",
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "SIP_TRUNK_ID",
    "LIVEKIT_AGENT_NAME",
    "MAKE_WEBHOOK_URL",
    "MAKE_WEBHOOK_SECRET",
    "WEBHOOK_TIMEOUT",
    "WEBHOOK_RETRIES",
    "LOG_FORMAT",
];

/// Minimum length of a production API key.
pub const MIN_KEY_LEN: usize = 32;

/// Minimum length of `RATE_LIMIT_HASH_KEY` in production.
pub const MIN_HASH_KEY_LEN: usize = 32;

/// The hash key outside production when none is set: fixed, so a local table keeps its
/// meaning across restarts; public, so never good enough for production.
pub const DEVELOPMENT_HASH_KEY: &str = "chamada-development-rate-limit-hash-key";

/// A `.env` template value that was never filled in (`your_…`, `sk_your_…`).
fn is_placeholder(value: &str) -> bool {
    value.to_ascii_lowercase().contains("your_")
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&ProcessEnv)
    }

    /// Reads and validates every variable from `source`.
    pub fn load(source: &dyn Source) -> Result<Self, ConfigError> {
        let environment = match (source.get("APP_ENV"), source.get("FLASK_ENV")) {
            (Some(v), _) if !v.trim().is_empty() => parse_environment(&v, "APP_ENV")?,
            (_, Some(v)) if !v.trim().is_empty() => parse_environment(&v, "FLASK_ENV")?,
            _ => Environment::Development,
        };
        let mut r = Reader {
            source,
            production: environment == Environment::Production,
            problems: Vec::new(),
            scope: Scope::AllCalls,
        };
        let production = r.production;

        // Access.
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

        // CORS.
        let allowed_origins = match r.value("ALLOWED_ORIGINS") {
            Some(raw) => {
                let origins: Vec<String> = raw
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(reason) = origins.iter().find_map(|o| origin_problem(o, production)) {
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

        // Phone policy.
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
                } else {
                    list
                }
            }
            None => vec![caller_id
                .as_ref()
                .and_then(phone::region_of)
                .unwrap_or_else(|| "PT".to_string())],
        };

        // Limits.
        let limits = Limits {
            per_ip: r.number("MAX_REQUESTS_PER_IP", 1, 1000).unwrap_or(3) as u32,
            per_number: r.number("MAX_CALLS_PER_NUMBER", 1, 1000).unwrap_or(3) as u32,
            per_day: r
                .number("MAX_CALLS_PER_DAY", 1, 10_000_000)
                .map(|n| n as u32),
            window_secs: r
                .number("RATE_LIMIT_WINDOW", 1, 366 * 86_400)
                .unwrap_or(86_400),
        };
        let rate_limit_table = r.value("RATE_LIMIT_TABLE");
        let (store, store_explicit) = match r.value("RATE_LIMIT_STORE").as_deref() {
            Some("memory") => (StoreKind::Memory, true),
            Some("dynamodb") => (StoreKind::DynamoDb, true),
            Some(_) => {
                r.refuse("RATE_LIMIT_STORE", "expected memory or dynamodb");
                (StoreKind::Memory, true)
            }
            None if rate_limit_table.is_some() => (StoreKind::DynamoDb, false),
            None => (StoreKind::Memory, false),
        };
        if store == StoreKind::DynamoDb && rate_limit_table.is_none() {
            r.missing(
                "RATE_LIMIT_TABLE",
                "RATE_LIMIT_STORE=dynamodb needs the table name in RATE_LIMIT_TABLE",
            );
        }
        if production && store == StoreKind::Memory && !store_explicit {
            // Serverless instances share no memory: production must name its store.
            r.missing(
                "RATE_LIMIT_TABLE",
                "production needs a shared store: set RATE_LIMIT_TABLE (DynamoDB), or RATE_LIMIT_STORE=memory to count per instance",
            );
        }
        // Shared stores keep keyed hashes of IPs and numbers: production needs its own key.
        let hash_key_required = production && store == StoreKind::DynamoDb;
        let rate_limit_hash_key = match r.secret("RATE_LIMIT_HASH_KEY") {
            Some(key) if hash_key_required && key.expose_secret().len() < MIN_HASH_KEY_LEN => {
                r.refuse(
                    "RATE_LIMIT_HASH_KEY",
                    "needs 32 characters or more in production",
                );
                key
            }
            Some(key) => key,
            None => {
                if hash_key_required && !r.has_problem("RATE_LIMIT_HASH_KEY") {
                    r.missing(
                        "RATE_LIMIT_HASH_KEY",
                        "production on DynamoDB needs a secret of 32 characters or more",
                    );
                }
                SecretString::from(DEVELOPMENT_HASH_KEY)
            }
        };
        let client_ip_source = match r.value("CLIENT_IP_SOURCE").as_deref() {
            Some("socket") => ClientIpSource::Socket,
            Some("aws") => ClientIpSource::Aws,
            Some("vercel") => ClientIpSource::Vercel,
            Some(_) => {
                r.refuse("CLIENT_IP_SOURCE", "expected aws, vercel or socket");
                ClientIpSource::Socket
            }
            None => detect_ip_source(source),
        };
        let client_ip_source_explicit = source
            .get("CLIENT_IP_SOURCE")
            .is_some_and(|v| !v.trim().is_empty());

        // Providers.
        let provider_timeout =
            Duration::from_secs(r.number("PROVIDER_TIMEOUT", 1, 120).unwrap_or(10));
        let elevenlabs = r.elevenlabs();
        let livekit = r.livekit(caller_id.clone());
        let requested = match r.value("CALL_PROVIDER") {
            Some(v) => match ProviderKind::parse(&v) {
                Some(kind) => Some(kind),
                None => {
                    r.refuse("CALL_PROVIDER", "expected elevenlabs, livekit or dry-run");
                    None
                }
            },
            None => None,
        };
        let provider = match requested {
            Some(ProviderKind::DryRun) if production => {
                r.refuse(
                    "CALL_PROVIDER",
                    "production never dry-runs: choose elevenlabs or livekit",
                );
                None
            }
            Some(kind) => {
                // Chosen: a group that is not there at all is a hole to report, not a reason
                // to fall back to another provider.
                if let Some((names, reason)) = required_group(kind) {
                    r.scope = Scope::Provider(kind);
                    r.require_group(names, reason);
                    r.scope = Scope::AllCalls;
                }
                Some(kind)
            }
            None if r.has_problem("CALL_PROVIDER") => None,
            // The first provider whose variables are there, even if they are refused: then its
            // calls answer 503 rather than go through the next provider.
            None if !elevenlabs.is_absent() => Some(ProviderKind::ElevenLabs),
            None if !livekit.is_absent() => Some(ProviderKind::LiveKit),
            None if production => {
                r.scope = Scope::NoProvider;
                r.missing(
                    "CALL_PROVIDER",
                    "no call provider: set the ELEVENLABS_* or the LIVEKIT_* variables (production never dry-runs)",
                );
                r.scope = Scope::AllCalls;
                None
            }
            None => Some(ProviderKind::DryRun),
        };
        let elevenlabs = elevenlabs.ready();
        let livekit = livekit.ready();

        // Webhook.
        let webhook = r.webhook();

        let log_format = match r.value("LOG_FORMAT").as_deref() {
            Some("pretty") => LogFormat::Pretty,
            Some("json") | None => LogFormat::Json,
            Some(_) => {
                r.refuse("LOG_FORMAT", "expected json or pretty");
                LogFormat::Json
            }
        };

        Ok(Config {
            environment,
            api_keys,
            public_calls,
            allowed_origins,
            allowed_countries,
            default_fallback_phone,
            limits,
            store,
            store_explicit,
            rate_limit_table,
            rate_limit_hash_key,
            client_ip_source,
            client_ip_source_explicit,
            provider,
            elevenlabs,
            livekit,
            webhook,
            provider_timeout,
            log_format,
            metrics_service: source
                .get("AWS_LAMBDA_FUNCTION_NAME")
                .filter(|name| !name.trim().is_empty()),
            problems: r.problems,
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

    /// Adds a problem found after loading (e.g. a region the phone metadata does not know).
    pub fn add_problem(
        &mut self,
        name: &'static str,
        kind: ProblemKind,
        reason: &'static str,
        scope: Scope,
    ) {
        add_once(&mut self.problems, name, kind, reason, scope);
    }
}

const ELEVENLABS_REQUIRED: &[&str] = &[
    "ELEVENLABS_API_KEY",
    "ELEVEN_AGENT_ID",
    "ELEVEN_AGENT_PHONE_NUMBER_ID",
];
const ELEVENLABS_HOLE: &str =
    "ElevenLabs calls need ELEVENLABS_API_KEY, ELEVEN_AGENT_ID and ELEVEN_AGENT_PHONE_NUMBER_ID";
/// Any of these set means ElevenLabs is meant to be used.
const ELEVENLABS_ANY: &[&str] = &[
    "ELEVENLABS_API_KEY",
    "ELEVEN_AGENT_ID",
    "ELEVEN_AGENT_PHONE_NUMBER_ID",
    "ELEVENLABS_API_BASE",
    "ELEVENLABS_PHONE_PROVIDER",
];
const LIVEKIT_REQUIRED: &[&str] = &[
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "SIP_TRUNK_ID",
    "CALLER_ID",
];
const LIVEKIT_HOLE: &str =
    "LiveKit calls need LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET, SIP_TRUNK_ID and CALLER_ID";
/// Any of these set means LiveKit is meant to be used (`CALLER_ID` alone does not: it also
/// sets the default region).
const LIVEKIT_ANY: &[&str] = &[
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "SIP_TRUNK_ID",
    "LIVEKIT_AGENT_NAME",
];

/// The variables a provider cannot do without, and the reason that names them.
fn required_group(kind: ProviderKind) -> Option<(&'static [&'static str], &'static str)> {
    match kind {
        ProviderKind::ElevenLabs => Some((ELEVENLABS_REQUIRED, ELEVENLABS_HOLE)),
        ProviderKind::LiveKit => Some((LIVEKIT_REQUIRED, LIVEKIT_HOLE)),
        ProviderKind::DryRun => None,
    }
}

/// A provider's settings as read: not there at all, complete, or there and unusable (a value
/// refused or a required one missing; the problems say which).
enum Setting<T> {
    Absent,
    Ready(T),
    Broken,
}

impl<T> Setting<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Setting::Absent)
    }

    fn ready(self) -> Option<T> {
        match self {
            Setting::Ready(value) => Some(value),
            Setting::Absent | Setting::Broken => None,
        }
    }
}

fn parse_environment(value: &str, name: &'static str) -> Result<Environment, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "development" => Ok(Environment::Development),
        "production" => Ok(Environment::Production),
        _ => Err(ConfigError::UnknownEnvironment { name }),
    }
}

/// Vercel sets `VERCEL=1`; Lambda sets `AWS_LAMBDA_FUNCTION_NAME`.
fn detect_ip_source(source: &dyn Source) -> ClientIpSource {
    if source.get("VERCEL").is_some_and(|v| v == "1") {
        ClientIpSource::Vercel
    } else if source.get("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        ClientIpSource::Aws
    } else {
        ClientIpSource::Socket
    }
}

/// Why an `ALLOWED_ORIGINS` entry is refused, if it is. Origins are compared byte for byte with
/// what browsers send, so only the canonical serialisation `scheme://host[:port]` can ever match.
fn origin_problem(origin: &str, production: bool) -> Option<&'static str> {
    if origin == "*" || origin == "null" {
        return Some("wildcards and null are never allowed");
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Some("expected scheme://host[:port]");
    };
    if scheme != "https" && scheme != "http" {
        return Some("expected an http or https origin");
    }
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', '*'])
        || authority
            .bytes()
            .any(|b| b.is_ascii_uppercase() || !b.is_ascii_graphic())
    {
        return Some("expected a lower-case scheme://host[:port] with no path");
    }
    if production && scheme == "http" && !is_loopback_authority(authority) {
        return Some("production origins must be https (localhost excepted)");
    }
    None
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// An outbound URL: https, or http to a loopback host (local fakes in tests and development).
fn url_problem(url: &str) -> Option<&'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some("expected an http(s) URL");
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || url.bytes().any(|b| !b.is_ascii_graphic()) {
        return Some("expected an http(s) URL");
    }
    match scheme {
        "https" | "wss" => None,
        "http" | "ws" if is_loopback_authority(authority) => None,
        "http" | "ws" => Some("plain http is only allowed to localhost"),
        _ => Some("expected an http(s) URL"),
    }
}

/// Adds a problem unless its variable already has one (the first reason found is kept).
fn add_once(
    problems: &mut Vec<Problem>,
    name: &'static str,
    kind: ProblemKind,
    reason: &'static str,
    scope: Scope,
) {
    if !problems.iter().any(|p| p.name == name) {
        problems.push(Problem {
            name,
            kind,
            reason,
            scope,
        });
    }
}

/// Reads variables and collects problems.
struct Reader<'a> {
    source: &'a dyn Source,
    production: bool,
    problems: Vec<Problem>,
    /// The scope of the problems found now (a provider's while its group is read).
    scope: Scope,
}

impl Reader<'_> {
    fn push(&mut self, name: &'static str, kind: ProblemKind, reason: &'static str) {
        add_once(&mut self.problems, name, kind, reason, self.scope);
    }

    fn has_problem(&self, name: &str) -> bool {
        self.problems.iter().any(|p| p.name == name)
    }

    fn missing(&mut self, name: &'static str, reason: &'static str) {
        self.push(name, ProblemKind::Missing, reason);
    }

    fn refuse(&mut self, name: &'static str, reason: &'static str) {
        self.push(name, ProblemKind::Refused, reason);
    }

    /// A trimmed, non-empty value. A template placeholder is refused in production and treated
    /// as unset in development (so a copied `.env.example` runs on the dry-run provider).
    fn value(&mut self, name: &'static str) -> Option<String> {
        let value = self.source.get(name)?.trim().to_string();
        if value.is_empty() {
            return None;
        }
        if is_placeholder(&value) {
            if self.production {
                self.refuse(name, "still holds a placeholder of the .env template");
            }
            return None;
        }
        Some(value)
    }

    fn secret(&mut self, name: &'static str) -> Option<SecretString> {
        self.value(name).map(SecretString::from)
    }

    fn boolean(&mut self, name: &'static str) -> Option<bool> {
        match self.value(name)?.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => {
                self.refuse(name, "expected true or false");
                None
            }
        }
    }

    fn number(&mut self, name: &'static str, min: u64, max: u64) -> Option<u64> {
        let raw = self.value(name)?;
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.refuse(name, "expected a whole number in range");
                None
            }
        }
    }

    fn phone(&mut self, name: &'static str) -> Option<E164> {
        let raw = self.value(name)?;
        match phone::normalize(&raw) {
            Ok(n) => Some(n),
            Err(_) => {
                self.refuse(name, "expected an E.164 number");
                None
            }
        }
    }

    fn url(&mut self, name: &'static str) -> Option<String> {
        let raw = self.value(name)?;
        match url_problem(&raw) {
            None => Some(raw.trim_end_matches('/').to_string()),
            Some(reason) => {
                self.refuse(name, reason);
                None
            }
        }
    }

    /// Marks every absent variable of a provider group as missing.
    fn require_group(&mut self, names: &[&'static str], reason: &'static str) {
        for &name in names {
            if self.source.get(name).is_none_or(|v| v.trim().is_empty()) {
                self.missing(name, reason);
            }
        }
    }

    /// A group counts as intended when any of its variables holds a value (a development
    /// placeholder does not count: a copied `.env.example` runs on the dry-run provider).
    fn group_intended(&self, names: &[&'static str]) -> bool {
        names.iter().any(|n| {
            self.source
                .get(n)
                .is_some_and(|v| !v.trim().is_empty() && (self.production || !is_placeholder(&v)))
        })
    }

    /// Reads one provider's group with its problems scoped to it: complete, absent, or broken
    /// (a value refused, or an intended group with a hole).
    fn provider_group<T>(
        &mut self,
        kind: ProviderKind,
        any: &[&'static str],
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Setting<T> {
        let before = self.problems.len();
        self.scope = Scope::Provider(kind);
        let value = read(self);
        let intended = self.group_intended(any);
        if intended && value.is_none() {
            if let Some((names, reason)) = required_group(kind) {
                self.require_group(names, reason);
            }
        }
        self.scope = Scope::AllCalls;
        if self.problems.len() > before {
            Setting::Broken
        } else {
            match value {
                Some(value) => Setting::Ready(value),
                None => Setting::Absent,
            }
        }
    }

    fn elevenlabs(&mut self) -> Setting<ElevenLabsConfig> {
        self.provider_group(ProviderKind::ElevenLabs, ELEVENLABS_ANY, |r| {
            let api_key = r.secret("ELEVENLABS_API_KEY");
            let agent_id = r.value("ELEVEN_AGENT_ID");
            let agent_phone_number_id = r.value("ELEVEN_AGENT_PHONE_NUMBER_ID");
            let api_base = r
                .url("ELEVENLABS_API_BASE")
                .unwrap_or_else(|| "https://api.elevenlabs.io".to_string());
            let numbers = match r.value("ELEVENLABS_PHONE_PROVIDER").as_deref() {
                None | Some("twilio") => ElevenLabsNumbers::Twilio,
                Some("sip-trunk") | Some("sip_trunk") => ElevenLabsNumbers::SipTrunk,
                Some(_) => {
                    r.refuse("ELEVENLABS_PHONE_PROVIDER", "expected twilio or sip-trunk");
                    ElevenLabsNumbers::Twilio
                }
            };
            Some(ElevenLabsConfig {
                api_key: api_key?,
                agent_id: agent_id?,
                agent_phone_number_id: agent_phone_number_id?,
                api_base,
                numbers,
            })
        })
    }

    fn livekit(&mut self, caller_id: Option<E164>) -> Setting<LiveKitConfig> {
        self.provider_group(ProviderKind::LiveKit, LIVEKIT_ANY, |r| {
            let url = r.url("LIVEKIT_URL");
            let api_key = r.value("LIVEKIT_API_KEY");
            let api_secret = r.secret("LIVEKIT_API_SECRET");
            let sip_trunk_id = r.value("SIP_TRUNK_ID");
            let agent_name = r.value("LIVEKIT_AGENT_NAME");
            Some(LiveKitConfig {
                url: url?,
                api_key: api_key?,
                api_secret: api_secret?,
                sip_trunk_id: sip_trunk_id?,
                caller_id: caller_id?,
                agent_name,
            })
        })
    }

    fn webhook(&mut self) -> Option<WebhookConfig> {
        let url = self.url("MAKE_WEBHOOK_URL");
        let secret = self.secret("MAKE_WEBHOOK_SECRET");
        let timeout = Duration::from_secs(self.number("WEBHOOK_TIMEOUT", 1, 300).unwrap_or(30));
        let retries = self.number("WEBHOOK_RETRIES", 0, 10).unwrap_or(3) as u32;
        let url = url?;
        if self.production && secret.is_none() && !self.has_problem("MAKE_WEBHOOK_SECRET") {
            // Production webhooks are authenticated and signed.
            self.missing(
                "MAKE_WEBHOOK_SECRET",
                "production webhooks are signed: set MAKE_WEBHOOK_SECRET",
            );
        }
        Some(WebhookConfig {
            url,
            secret,
            timeout,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&move |name: &str| map.get(name).cloned())
    }

    const STRONG: &str = "test-key-0123456789abcdef0123456789abcdef";

    fn names(c: &Config) -> Vec<&'static str> {
        c.problems.iter().map(|p| p.name).collect()
    }

    #[test]
    fn defaults_are_a_complete_development_configuration() {
        let c = load(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.provider, Some(ProviderKind::DryRun));
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.allowed_origins, vec!["http://localhost:3000"]);
        assert_eq!(c.allowed_countries, vec!["PT"]);
        assert_eq!(
            c.limits,
            Limits {
                per_ip: 3,
                per_number: 3,
                per_day: None,
                window_secs: 86_400
            }
        );
    }

    #[test]
    fn app_env_wins_over_flask_env_and_unknown_values_are_fatal() {
        let c = load(&[("APP_ENV", "development"), ("FLASK_ENV", "production")]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        let c = load(&[("FLASK_ENV", "production")]).unwrap();
        assert_eq!(c.environment, Environment::Production);
        assert_eq!(
            load(&[("APP_ENV", "staging")]).unwrap_err(),
            ConfigError::UnknownEnvironment { name: "APP_ENV" }
        );
    }

    #[test]
    fn bare_production_is_degraded_with_the_missing_names() {
        let c = load(&[("APP_ENV", "production")]).unwrap();
        let n = names(&c);
        assert!(n.contains(&"PRODUCTION_API_KEY"), "{n:?}");
        assert!(n.contains(&"RATE_LIMIT_TABLE"), "{n:?}");
        assert!(n.contains(&"CALL_PROVIDER"), "{n:?}");
        assert_eq!(c.provider, None);
    }

    #[test]
    fn production_refuses_weak_settings() {
        let base = [
            ("APP_ENV", "production"),
            ("RATE_LIMIT_STORE", "memory"),
            ("CALL_PROVIDER", "elevenlabs"),
            ("ELEVENLABS_API_KEY", "test-elevenlabs-key"),
            ("ELEVEN_AGENT_ID", "agent_test"),
            ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            load(&v).unwrap()
        };
        assert!(with(&[("PRODUCTION_API_KEY", STRONG)]).problems.is_empty());
        assert_eq!(
            names(&with(&[("PRODUCTION_API_KEY", "short-key")])),
            ["PRODUCTION_API_KEY"]
        );
        assert_eq!(
            names(&with(&[("PRODUCTION_API_KEY", "your_production_api_key")])),
            ["PRODUCTION_API_KEY"]
        );
        assert_eq!(
            names(&with(&[
                ("PRODUCTION_API_KEY", STRONG),
                ("ALLOWED_ORIGINS", "*")
            ])),
            ["ALLOWED_ORIGINS"]
        );
        assert_eq!(
            names(&with(&[
                ("PRODUCTION_API_KEY", STRONG),
                (
                    "ALLOWED_ORIGINS",
                    "https://chamada.example,http://chamada.example"
                )
            ])),
            ["ALLOWED_ORIGINS"]
        );
        assert!(with(&[
            ("PRODUCTION_API_KEY", STRONG),
            (
                "ALLOWED_ORIGINS",
                "https://chamada.example,http://localhost:3000"
            )
        ])
        .problems
        .is_empty());
        assert_eq!(
            names(&with(&[
                ("PRODUCTION_API_KEY", STRONG),
                ("ELEVENLABS_API_KEY", "sk_your_elevenlabs_api_key")
            ])),
            ["ELEVENLABS_API_KEY"]
        );
    }

    #[test]
    fn one_short_key_among_several_refuses_them_all() {
        let long2 = "test-key-fedcba9876543210fedcba9876543210";
        let c = load(&[
            ("APP_ENV", "production"),
            ("PRODUCTION_API_KEY", &format!("{STRONG}, {long2}, tiny")),
        ])
        .unwrap();
        assert!(names(&c).contains(&"PRODUCTION_API_KEY"));
        assert!(c.api_keys.is_empty());
        let c = load(&[
            ("APP_ENV", "production"),
            ("PRODUCTION_API_KEY", &format!("{STRONG}, {long2}")),
        ])
        .unwrap();
        assert_eq!(c.api_keys.len(), 2);
    }

    #[test]
    fn production_on_dynamodb_needs_its_own_long_hash_key() {
        let base = [
            ("APP_ENV", "production"),
            ("PRODUCTION_API_KEY", STRONG),
            ("RATE_LIMIT_TABLE", "chamada-limits"),
            ("CALL_PROVIDER", "elevenlabs"),
            ("ELEVENLABS_API_KEY", "test-elevenlabs-key"),
            ("ELEVEN_AGENT_ID", "agent_test"),
            ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            load(&v).unwrap()
        };
        let c = with(&[]);
        assert_eq!(c.store, StoreKind::DynamoDb);
        assert_eq!(names(&c), ["RATE_LIMIT_HASH_KEY"]);
        assert_eq!(c.problems[0].kind, ProblemKind::Missing);
        let c = with(&[("RATE_LIMIT_HASH_KEY", "test-hash-key-short")]);
        assert_eq!(names(&c), ["RATE_LIMIT_HASH_KEY"]);
        assert_eq!(c.problems[0].kind, ProblemKind::Refused);
        let c = with(&[(
            "RATE_LIMIT_HASH_KEY",
            "test-hash-key-0123456789abcdef0123456789",
        )]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert!(!format!("{c:?}").contains("test-hash-key-0123456789abcdef0123456789"));
        // Development and memory stores fall back to the fixed development key.
        let c = load(&[("RATE_LIMIT_TABLE", "chamada-limits")]).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.rate_limit_hash_key.expose_secret(), DEVELOPMENT_HASH_KEY);
    }

    #[test]
    fn production_never_dry_runs() {
        let c = load(&[("APP_ENV", "production"), ("CALL_PROVIDER", "dry-run")]).unwrap();
        assert_eq!(c.provider, None);
        assert!(names(&c).contains(&"CALL_PROVIDER"));
    }

    #[test]
    fn malformed_origins_never_match_anything_and_are_refused() {
        for bad in [
            "https://Chamada.example",
            "https://chamada.example/",
            "chamada.example",
            "null",
            "ftp://chamada.example",
        ] {
            let c = load(&[("ALLOWED_ORIGINS", bad)]).unwrap();
            assert_eq!(names(&c), ["ALLOWED_ORIGINS"], "{bad}");
        }
    }

    #[test]
    fn a_half_configured_provider_reports_its_holes() {
        let c = load(&[("ELEVENLABS_API_KEY", "test-elevenlabs-key")]).unwrap();
        assert_eq!(
            names(&c),
            ["ELEVEN_AGENT_ID", "ELEVEN_AGENT_PHONE_NUMBER_ID"]
        );
        assert!(c
            .problems
            .iter()
            .all(|p| p.scope == Scope::Provider(ProviderKind::ElevenLabs)));
        // The half-configured provider is the default: its calls are refused, never dry-run.
        assert_eq!(c.provider, Some(ProviderKind::ElevenLabs));
        assert!(c.provider_broken(ProviderKind::ElevenLabs));
        assert!(!c.blocks_all_calls());
    }

    #[test]
    fn the_configured_provider_is_the_default_elevenlabs_first() {
        let c = load(&[
            ("ELEVENLABS_API_KEY", "test-elevenlabs-key"),
            ("ELEVEN_AGENT_ID", "agent_test"),
            ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
            ("LIVEKIT_URL", "https://livekit.example"),
            ("LIVEKIT_API_KEY", "APItestkey"),
            ("LIVEKIT_API_SECRET", "test-livekit-secret"),
            ("SIP_TRUNK_ID", "ST_test"),
            ("CALLER_ID", "+351211234567"),
        ])
        .unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.provider, Some(ProviderKind::ElevenLabs));
        assert!(c.livekit.is_some());
    }

    #[test]
    fn allowed_countries_default_to_the_region_of_caller_id() {
        let c = load(&[("CALLER_ID", "+442079460000")]).unwrap();
        assert_eq!(c.allowed_countries, vec!["GB"]);
        let c = load(&[("ALLOWED_COUNTRIES", "pt, es")]).unwrap();
        assert_eq!(c.allowed_countries, vec!["PT", "ES"]);
        let c = load(&[("ALLOWED_COUNTRIES", "Portugal")]).unwrap();
        assert_eq!(names(&c), ["ALLOWED_COUNTRIES"]);
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_clamped() {
        for (name, value) in [
            ("MAX_REQUESTS_PER_IP", "0"),
            ("MAX_REQUESTS_PER_IP", "-1"),
            ("MAX_CALLS_PER_NUMBER", "three"),
            ("RATE_LIMIT_WINDOW", "99999999999"),
            ("PUBLIC_CALLS", "maybe"),
        ] {
            let c = load(&[(name, value)]).unwrap();
            assert_eq!(names(&c), [name], "{name}={value}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = load(&[
            ("PRODUCTION_API_KEY", STRONG),
            ("ELEVENLABS_API_KEY", "test-elevenlabs-key-visible"),
            ("ELEVEN_AGENT_ID", "agent_test"),
            ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
            ("MAKE_WEBHOOK_URL", "https://hook.example/abc"),
            ("MAKE_WEBHOOK_SECRET", "test-webhook-secret-visible"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(STRONG));
        assert!(!debug.contains("test-elevenlabs-key-visible"));
        assert!(!debug.contains("test-webhook-secret-visible"));
    }

    #[test]
    fn production_webhooks_must_be_signed_and_http_only_to_localhost() {
        let c = load(&[
            ("APP_ENV", "production"),
            ("MAKE_WEBHOOK_URL", "https://hook.example/abc"),
        ])
        .unwrap();
        assert!(names(&c).contains(&"MAKE_WEBHOOK_SECRET"));
        let c = load(&[("MAKE_WEBHOOK_URL", "http://hook.example/abc")]).unwrap();
        assert_eq!(names(&c), ["MAKE_WEBHOOK_URL"]);
        let c = load(&[("MAKE_WEBHOOK_URL", "http://127.0.0.1:9/hook")]).unwrap();
        assert!(c.problems.is_empty());
    }

    #[test]
    fn every_variable_is_documented_in_the_template_and_the_readme() {
        let template = include_str!("../../.env.example");
        let readme = include_str!("../../README.md");
        for name in VARIABLES {
            assert!(template.contains(name), "{name} missing from .env.example");
            assert!(readme.contains(name), "{name} missing from README.md");
        }
    }

    #[test]
    fn a_copied_template_runs_the_dry_run_provider_in_development() {
        let vars: Vec<(String, String)> = include_str!("../../.env.example")
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                let v = v.split(" #").next().unwrap_or(v).trim();
                (k.trim().to_string(), v.to_string())
            })
            .collect();
        let map: HashMap<String, String> = vars.into_iter().collect();
        let c = Config::load(&move |name: &str| map.get(name).cloned()).unwrap();
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.provider, Some(ProviderKind::DryRun));
        assert!(c.api_keys.is_empty());
        assert!(c.webhook.is_none());
    }
}
