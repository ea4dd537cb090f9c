//! The bot check on anonymous calls (docs/API.md §16): a Cloudflare Turnstile token, verified
//! with Siteverify. This module owns its settings ([`TurnstileConfig`]), the one request to
//! Siteverify and the verdict on its answer; `http::start_call` decides who is asked and turns a
//! [`Refusal`] into an answer.
//!
//! Fail closed: only an answer that says yes — `success: true`, for one of our hosts, for the
//! `start_call` action, solved within the last 300 s — is a pass. No answer, a slow one, a
//! status other than 200 or a body that is not Siteverify's is [`Reason::Unavailable`].

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Cloudflare's Siteverify endpoint (`TURNSTILE_VERIFY_URL`'s default).
pub const SITEVERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
/// The widget's script (`TURNSTILE_SCRIPT_URL`'s default).
pub const SCRIPT_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/api.js";
/// The action the page renders the widget with; a token for another action is refused.
pub const ACTION: &str = "start_call";
/// Turnstile's own maximum token length.
pub const MAX_TOKEN_CHARS: usize = 2048;
/// A token older than this is refused even if Siteverify accepted it (Turnstile's own validity).
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// How far ahead of our clock a `challenge_ts` may be (clocks differ a little).
pub const MAX_SKEW: Duration = Duration::from_secs(60);
/// Cloudflare's documented test secret keys: their canned answers name `example.com` and no
/// action, so with one of them hostname and action are not checked.
const TEST_SECRETS: [&str; 3] = [
    "1x0000000000000000000000000000000AA",
    "2x0000000000000000000000000000000AA",
    "3x0000000000000000000000000000000AA",
];

/// `TURNSTILE_*` (docs/API.md §3.4).
#[derive(Debug, Clone)]
pub struct TurnstileConfig {
    pub secret: SecretString,
    /// Public by design: the page renders the widget with it.
    pub site_key: String,
    pub verify_url: String,
    pub script_url: String,
    pub timeout: Duration,
}

impl TurnstileConfig {
    /// Whether the secret is one of Cloudflare's test keys (every token passes, canned answers).
    pub fn test_keys(&self) -> bool {
        TEST_SECRETS.contains(&self.secret.expose_secret())
    }

    /// The origin (`scheme://host[:port]`) of the widget's script, for the page's CSP.
    pub fn script_origin(&self) -> String {
        origin_of(&self.script_url)
    }
}

/// Why a token was not a pass: the `Reason` dimension of `CaptchaFailures` and the log's
/// `reason` (docs/API.md §16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Malformed,
    Duplicate,
    Rejected,
    Stale,
    Hostname,
    Action,
    Unavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Duplicate => "duplicate",
            Reason::Rejected => "rejected",
            Reason::Stale => "stale",
            Reason::Hostname => "hostname",
            Reason::Action => "action",
            Reason::Unavailable => "unavailable",
        }
    }
}

/// A token that is not a pass, and for [`Reason::Unavailable`] what went wrong (for the log:
/// never the token, the secret or the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

impl Refusal {
    fn new(reason: Reason) -> Self {
        Refusal {
            reason,
            detail: String::new(),
        }
    }

    fn unavailable(detail: impl Into<String>) -> Self {
        Refusal {
            reason: Reason::Unavailable,
            detail: detail.into(),
        }
    }
}

/// What a pass must show besides `success: true`.
pub struct Expected<'a> {
    /// The hosts of `ALLOWED_ORIGINS`.
    pub origins: &'a [String],
    pub now: SystemTime,
}

/// Siteverify's answer, the fields we judge. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub success: bool,
    #[serde(default, rename = "error-codes")]
    pub error_codes: Vec<String>,
    #[serde(default)]
    pub challenge_ts: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
}

/// The Siteverify client: one per process, on the shared HTTPS client.
pub struct Turnstile {
    config: TurnstileConfig,
    http: reqwest::Client,
    test_keys: bool,
}

impl Turnstile {
    pub fn new(config: TurnstileConfig, http: reqwest::Client) -> Self {
        let test_keys = config.test_keys();
        Turnstile {
            config,
            http,
            test_keys,
        }
    }

    pub fn config(&self) -> &TurnstileConfig {
        &self.config
    }

    /// Asks Siteverify once about a [`well_formed`] token, within the timeout, and judges the
    /// answer.
    pub async fn verify(
        &self,
        token: &str,
        remote_ip: Option<IpAddr>,
        idempotency_key: &str,
        expected: &Expected<'_>,
    ) -> Result<(), Refusal> {
        let mut body = serde_json::json!({
            "secret": self.config.secret.expose_secret(),
            "response": token,
            "idempotency_key": idempotency_key,
        });
        if let Some(ip) = remote_ip {
            body["remoteip"] = serde_json::Value::String(ip.to_string());
        }
        let exchange = async {
            let response = self
                .http
                .post(&self.config.verify_url)
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    Refusal::unavailable(if e.is_connect() { "connect" } else { "request" })
                })?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(Refusal::unavailable(format!("status {}", status.as_u16())));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|_| Refusal::unavailable("body"))?;
            serde_json::from_slice::<Answer>(&bytes).map_err(|_| Refusal::unavailable("body"))
        };
        let answer = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| Refusal::unavailable("timeout"))??;
        judge(&answer, expected, self.test_keys)
    }
}

/// The token as sent: present, at most [`MAX_TOKEN_CHARS`], printable ASCII.
pub fn well_formed(token: Option<&str>) -> Result<&str, Refusal> {
    let token = match token {
        None | Some("") => return Err(Refusal::new(Reason::Missing)),
        Some(token) => token,
    };
    if token.len() > MAX_TOKEN_CHARS || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::new(Reason::Malformed));
    }
    Ok(token)
}

/// The verdict on one Siteverify answer (docs/API.md §16's table). `test_keys`: the canned
/// answers of Cloudflare's test secrets carry no real host or action.
pub fn judge(answer: &Answer, expected: &Expected<'_>, test_keys: bool) -> Result<(), Refusal> {
    if !answer.success {
        // Codes about our request or Cloudflare itself say nothing about the visitor.
        const SERVER_SIDE: [&str; 4] = [
            "missing-input-secret",
            "invalid-input-secret",
            "bad-request",
            "internal-error",
        ];
        if let Some(code) = answer
            .error_codes
            .iter()
            .find(|c| SERVER_SIDE.contains(&c.as_str()))
        {
            return Err(Refusal::unavailable(code.clone()));
        }
        if answer
            .error_codes
            .iter()
            .any(|c| c == "timeout-or-duplicate")
        {
            return Err(Refusal::new(Reason::Duplicate));
        }
        return Err(Refusal::new(Reason::Rejected));
    }
    let solved = answer
        .challenge_ts
        .as_deref()
        .and_then(|ts| humantime::parse_rfc3339_weak(ts).ok())
        .ok_or(Refusal::new(Reason::Stale))?;
    let fresh = match expected.now.duration_since(solved) {
        Ok(age) => age <= MAX_AGE,
        Err(ahead) => ahead.duration() <= MAX_SKEW,
    };
    if !fresh {
        return Err(Refusal::new(Reason::Stale));
    }
    if test_keys {
        return Ok(());
    }
    let host = answer.hostname.as_deref().unwrap_or("");
    if host.is_empty()
        || !expected
            .origins
            .iter()
            .any(|origin| host_of(origin).is_some_and(|h| h.eq_ignore_ascii_case(host)))
    {
        return Err(Refusal::new(Reason::Hostname));
    }
    if answer.action.as_deref() != Some(ACTION) {
        return Err(Refusal::new(Reason::Action));
    }
    Ok(())
}

/// Siteverify's `idempotency_key` for a request with an `Idempotency-Key`: a UUID from SHA-256
/// over the client address, the key and the token, so the retry of one request is verified
/// again without burning its token, and the same token from another address is not.
pub fn derived_idempotency_key(client: Option<IpAddr>, key: &str, token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"chamada/turnstile/v1\0");
    hash.update(client.map(|ip| ip.to_string()).unwrap_or_default());
    hash.update(b"\0");
    hash.update(key.as_bytes());
    hash.update(b"\0");
    hash.update(token.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `scheme://host[:port]` of a URL, read by `http::Uri` (the whole string if it is not one;
/// configuration has already checked it).
fn origin_of(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

/// The host of an origin `scheme://host[:port]`, without an IPv6 literal's brackets.
fn host_of(origin: &str) -> Option<String> {
    let uri = origin.parse::<http::Uri>().ok()?;
    Some(
        uri.host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: &str) -> SystemTime {
        humantime::parse_rfc3339(ts).unwrap()
    }

    fn answer(json: serde_json::Value) -> Answer {
        serde_json::from_value(json).unwrap()
    }

    fn pass() -> serde_json::Value {
        serde_json::json!({
            "success": true, "error-codes": [], "challenge_ts": "2026-11-28T11:59:00.123Z",
            "hostname": "chamada.example", "action": "start_call", "cdata": "",
            "metadata": {"ephemeral_id": "x:FAKE"}
        })
    }

    fn origins() -> Vec<String> {
        vec![
            "https://www.chamada.example".into(),
            "https://chamada.example".into(),
        ]
    }

    fn verdict(json: serde_json::Value, now: &str, test_keys: bool) -> Result<(), Reason> {
        let origins = origins();
        let expected = Expected {
            origins: &origins,
            now: at(now),
        };
        judge(&answer(json), &expected, test_keys).map_err(|r| r.reason)
    }

    #[test]
    fn a_fresh_success_for_our_host_and_action_passes() {
        assert_eq!(verdict(pass(), "2026-11-28T12:00:00Z", false), Ok(()));
        let mut upper = pass();
        upper["hostname"] = "CHAMADA.example".into();
        assert_eq!(verdict(upper, "2026-11-28T12:00:00Z", false), Ok(()));
    }

    #[test]
    fn a_success_is_refused_for_another_host_action_or_an_old_or_future_challenge() {
        let now = "2026-11-28T12:00:00Z";
        for (field, value, reason) in [
            ("hostname", "evil.example", Reason::Hostname),
            ("hostname", "chamada.example.evil.example", Reason::Hostname),
            ("hostname", "", Reason::Hostname),
            ("action", "login", Reason::Action),
            ("action", "", Reason::Action),
            ("challenge_ts", "2026-11-28T11:54:59Z", Reason::Stale),
            ("challenge_ts", "2026-11-28T12:01:01Z", Reason::Stale),
            ("challenge_ts", "yesterday", Reason::Stale),
        ] {
            let mut json = pass();
            json[field] = value.into();
            assert_eq!(verdict(json, now, false), Err(reason), "{field}={value}");
        }
        let mut no_ts = pass();
        no_ts.as_object_mut().unwrap().remove("challenge_ts");
        assert_eq!(verdict(no_ts, now, false), Err(Reason::Stale));
        // Exactly 300 s old still passes; 60 s ahead still passes.
        let mut edge = pass();
        edge["challenge_ts"] = "2026-11-28T11:55:00Z".into();
        assert_eq!(verdict(edge.clone(), now, false), Ok(()));
        edge["challenge_ts"] = "2026-11-28T12:01:00Z".into();
        assert_eq!(verdict(edge, now, false), Ok(()));
    }

    #[test]
    fn failures_are_told_apart_by_who_caused_them() {
        let now = "2026-11-28T12:00:00Z";
        let failed = |codes: &[&str]| serde_json::json!({"success": false, "error-codes": codes});
        assert_eq!(
            verdict(failed(&["timeout-or-duplicate"]), now, false),
            Err(Reason::Duplicate)
        );
        assert_eq!(
            verdict(failed(&["invalid-input-response"]), now, false),
            Err(Reason::Rejected)
        );
        assert_eq!(verdict(failed(&[]), now, false), Err(Reason::Rejected));
        for ours in [
            "invalid-input-secret",
            "missing-input-secret",
            "internal-error",
        ] {
            assert_eq!(
                verdict(failed(&["timeout-or-duplicate", ours]), now, false),
                Err(Reason::Unavailable),
                "{ours}"
            );
        }
    }

    #[test]
    fn test_secret_answers_are_not_checked_for_host_or_action_but_are_for_age() {
        let canned = serde_json::json!({
            "success": true, "error-codes": [], "challenge_ts": "2026-11-28T11:59:59Z",
            "hostname": "example.com", "action": ""
        });
        let now = "2026-11-28T12:00:00Z";
        assert_eq!(verdict(canned.clone(), now, true), Ok(()));
        assert_eq!(verdict(canned, now, false), Err(Reason::Hostname));
        let config = |secret: &str| TurnstileConfig {
            secret: SecretString::from(secret),
            site_key: "1x00000000000000000000AA".into(),
            verify_url: SITEVERIFY_URL.into(),
            script_url: SCRIPT_URL.into(),
            timeout: Duration::from_secs(5),
        };
        assert!(config("1x0000000000000000000000000000000AA").test_keys());
        assert!(!config("0x4AAAAAAAFAKEFAKEFAKEFAKEFAKE").test_keys());
    }

    #[test]
    fn tokens_are_checked_for_shape_before_any_request() {
        assert_eq!(well_formed(None).unwrap_err().reason, Reason::Missing);
        assert_eq!(well_formed(Some("")).unwrap_err().reason, Reason::Missing);
        let long = "a".repeat(MAX_TOKEN_CHARS + 1);
        assert_eq!(
            well_formed(Some(&long)).unwrap_err().reason,
            Reason::Malformed
        );
        assert_eq!(
            well_formed(Some("tok en")).unwrap_err().reason,
            Reason::Malformed
        );
        assert_eq!(
            well_formed(Some("tokén")).unwrap_err().reason,
            Reason::Malformed
        );
        assert_eq!(
            well_formed(Some(&"a".repeat(MAX_TOKEN_CHARS))),
            Ok("a".repeat(MAX_TOKEN_CHARS).as_str())
        );
    }

    #[test]
    fn the_derived_idempotency_key_is_a_uuid_bound_to_address_key_and_token() {
        let ip: IpAddr = "203.0.113.10".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let a = derived_idempotency_key(Some(ip), "key-1", "token-1");
        assert_eq!(a, derived_idempotency_key(Some(ip), "key-1", "token-1"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        assert_ne!(a, derived_idempotency_key(Some(other), "key-1", "token-1"));
        assert_ne!(a, derived_idempotency_key(Some(ip), "key-2", "token-1"));
        assert_ne!(a, derived_idempotency_key(Some(ip), "key-1", "token-2"));
        // No ambiguity between the parts: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            derived_idempotency_key(None, "ab", "c"),
            derived_idempotency_key(None, "a", "bc")
        );
    }

    #[test]
    fn origins_and_hosts_are_read_from_urls() {
        assert_eq!(origin_of(SCRIPT_URL), "https://challenges.cloudflare.com");
        assert_eq!(
            origin_of("http://127.0.0.1:4000/turnstile/v0/api.js"),
            "http://127.0.0.1:4000"
        );
        let host = |origin| host_of(origin).unwrap_or_default();
        assert_eq!(host("https://chamada.example"), "chamada.example");
        assert_eq!(host("http://localhost:5001"), "localhost");
        assert_eq!(host("http://[::1]:5001"), "::1");
    }
}
