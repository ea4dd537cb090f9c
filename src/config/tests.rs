//! The configuration rules, one test per rule.

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

#[test]
fn the_client_address_source_is_the_platforms_unless_set() {
    use crate::client_ip::ClientIpSource;
    let vercel_env = |name: &str| (name == "VERCEL").then(|| "1".to_string());
    // The platform is stated by the entry point; VERCEL=1 in a local .env.local changes nothing.
    let local = Config::load(&vercel_env).unwrap();
    assert_eq!(local.client_ip_source, ClientIpSource::Socket);
    let on_vercel = Config::load_on(&vercel_env, ClientIpSource::Vercel).unwrap();
    assert_eq!(on_vercel.client_ip_source, ClientIpSource::Vercel);
    let explicit = |name: &str| (name == "CLIENT_IP_SOURCE").then(|| "aws".to_string());
    let set = Config::load_on(&explicit, ClientIpSource::Vercel).unwrap();
    assert_eq!(set.client_ip_source, ClientIpSource::Aws);
}

#[test]
fn every_value_is_judged_while_loading_not_later() {
    // Regions libphonenumber does not know, and a whsec_ secret that is not base64: both are
    // configuration problems of the loader, before any port is built.
    let c = load(&[
        ("ALLOWED_COUNTRIES", "PT,ZZ"),
        ("MAKE_WEBHOOK_URL", "https://hook.example/abc"),
        ("MAKE_WEBHOOK_SECRET", "whsec_not base64!"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["ALLOWED_COUNTRIES", "MAKE_WEBHOOK_SECRET"]);
    assert!(c.problems.iter().all(|p| p.kind == ProblemKind::Refused));
    assert!(c.blocks_all_calls());
    let fine = load(&[("ALLOWED_COUNTRIES", "PT,ES,BR")]).unwrap();
    assert!(fine.problems.is_empty(), "{:?}", fine.problems);
}

#[test]
fn a_production_cron_secret_needs_sixteen_characters() {
    let short = load(&[("APP_ENV", "production"), ("CRON_SECRET", "short")]).unwrap();
    assert!(names(&short).contains(&"CRON_SECRET"));
    let c = load(&[
        ("APP_ENV", "production"),
        ("CRON_SECRET", "a-cron-secret-of-26-chars"),
    ])
    .unwrap();
    assert!(!names(&c).contains(&"CRON_SECRET"));
    assert!(c.cron_secret.is_some());
}

#[test]
fn the_bot_check_is_off_by_default_and_on_with_both_keys() {
    let c = load(&[]).unwrap();
    assert!(c.bot_check.is_none());
    let c = load(&[
        ("TURNSTILE_SECRET_KEY", "test-turnstile-secret-FAKE"),
        ("TURNSTILE_SITE_KEY", "0x4AAAAAAA-FAKE_key"),
    ])
    .unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    let turnstile = c.bot_check.expect("on");
    assert_eq!(turnstile.verify_url, crate::bot_check::SITEVERIFY_URL);
    assert_eq!(turnstile.script_url, crate::bot_check::SCRIPT_URL);
    assert_eq!(turnstile.timeout, Duration::from_secs(5));
    assert_eq!(
        turnstile.script_origin(),
        "https://challenges.cloudflare.com"
    );
}

#[test]
fn bot_check_values_are_refused_and_stop_anonymous_calls_only() {
    let both = [
        ("TURNSTILE_SECRET_KEY", "test-turnstile-secret-FAKE"),
        ("TURNSTILE_SITE_KEY", "0x4AAAAAAA-FAKE_key"),
    ];
    for (name, value) in [
        ("TURNSTILE_SECRET_KEY", "has a space"),
        ("TURNSTILE_SITE_KEY", "key<script>"),
        ("TURNSTILE_VERIFY_URL", "http://siteverify.example/verify"),
        ("TURNSTILE_SCRIPT_URL", "ftp://challenges.example/api.js"),
        ("TURNSTILE_TIMEOUT", "0"),
        ("TURNSTILE_TIMEOUT", "31"),
    ] {
        let mut vars = both.to_vec();
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
        let c = load(&vars).unwrap();
        assert_eq!(names(&c), vec![name], "{name}={value}");
        assert_eq!(c.problems[0].kind, ProblemKind::Refused, "{name}");
        assert!(
            c.bot_check.is_none(),
            "{name}={value}: a refused value never falls back"
        );
        assert!(c.public_calls_broken() && !c.blocks_all_calls(), "{name}");
    }
}

#[test]
fn postgres_needs_a_connection_string_it_can_read_and_never_shows_it() {
    let c = load(&[("RATE_LIMIT_STORE", "postgres")]).unwrap();
    assert_eq!(c.store, StoreKind::Postgres);
    assert_eq!(names(&c), ["DATABASE_URL"]);
    assert_eq!(c.problems[0].kind, ProblemKind::Missing);
    let c = load(&[
        ("RATE_LIMIT_STORE", "postgres"),
        ("DATABASE_URL", "mysql://nope"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["DATABASE_URL"]);
    assert_eq!(c.problems[0].kind, ProblemKind::Refused);
    assert!(!c.problems[0].reason.contains("mysql"));
    let url = "postgres://postgres.ref:fake-password-x1@aws-0-eu-west-1.pooler.supabase.com:6543/postgres";
    let c = load(&[("RATE_LIMIT_STORE", "postgres"), ("DATABASE_URL", url)]).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    assert!(c.database.is_some());
    assert!(!format!("{c:?}").contains("fake-password-x1"));
    // Unencrypted to a remote host: refused, never downgraded.
    let c = load(&[
        ("RATE_LIMIT_STORE", "postgres"),
        ("DATABASE_URL", &format!("{url}?sslmode=disable")),
    ])
    .unwrap();
    assert_eq!(names(&c), ["DATABASE_URL"]);
    let c = load(&[
        ("RATE_LIMIT_STORE", "postgres"),
        ("DATABASE_URL", url),
        ("DATABASE_CA_CERT", "/nonexistent/prod-ca-2021.crt"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["DATABASE_CA_CERT"]);
}

#[test]
fn production_on_postgres_needs_its_own_long_hash_key() {
    let c = load(&[
        ("APP_ENV", "production"),
        ("PRODUCTION_API_KEY", STRONG),
        ("RATE_LIMIT_STORE", "postgres"),
        (
            "DATABASE_URL",
            "postgres://chamada:fake-password@db.example.test:5432/postgres",
        ),
        ("CALL_PROVIDER", "elevenlabs"),
        ("ELEVENLABS_API_KEY", "test-elevenlabs-key"),
        ("ELEVEN_AGENT_ID", "agent_test"),
        ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["RATE_LIMIT_HASH_KEY"]);
}

#[test]
fn supabases_public_anon_key_alone_is_explained_never_used() {
    let c = load(&[
        ("NEXT_PUBLIC_SUPABASE_URL", "https://fake-ref.supabase.co"),
        ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "fake-anon-key"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["DATABASE_URL"]);
    assert_eq!(c.problems[0].kind, ProblemKind::Missing);
    assert!(
        c.problems[0].reason.contains("public"),
        "{}",
        c.problems[0].reason
    );
    assert!(c.problems[0].reason.contains("6543"));
    assert_eq!(c.store, StoreKind::Memory);
    // With a connection string but the limits elsewhere: said too.
    let c = load(&[
        ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "fake-anon-key"),
        ("DATABASE_URL", "postgres://chamada@127.0.0.1/chamada"),
    ])
    .unwrap();
    assert_eq!(names(&c), ["RATE_LIMIT_STORE"]);
    let c = load(&[
        ("NEXT_PUBLIC_SUPABASE_ANON_KEY", "fake-anon-key"),
        ("RATE_LIMIT_STORE", "postgres"),
        ("DATABASE_URL", "postgres://chamada@127.0.0.1/chamada"),
    ])
    .unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
}
