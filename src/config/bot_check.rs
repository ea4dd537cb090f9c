//! The bot check section (docs/API.md §16): `TURNSTILE_*`. Its problems stop anonymous calls
//! only ([`Scope::PublicCalls`]); authenticated calls are never asked for a token.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::problem::Scope;
use super::reader::Reader;
use crate::bot_check::{TurnstileConfig, SCRIPT_URL, SITEVERIFY_URL};

const MAX_SECRET_CHARS: usize = 256;
const MAX_SITE_KEY_CHARS: usize = 100;

/// `None` when the bot check is off, or when a problem (reported) keeps it from being built.
pub(super) fn read(r: &mut Reader) -> Option<TurnstileConfig> {
    r.scoped(Scope::PublicCalls, |r| {
        let secret = r.secret("TURNSTILE_SECRET_KEY");
        let site_key = r.value("TURNSTILE_SITE_KEY");
        let verify_url = r.url("TURNSTILE_VERIFY_URL");
        let script_url = r.url("TURNSTILE_SCRIPT_URL");
        let timeout = r.number("TURNSTILE_TIMEOUT", 1, 30).unwrap_or(5);
        let secret = secret.filter(|s| {
            let s = s.expose_secret();
            let ok = s.len() <= MAX_SECRET_CHARS && s.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                r.refuse(
                    "TURNSTILE_SECRET_KEY",
                    "expected the widget's secret key: printable ASCII, at most 256 characters",
                );
            }
            ok
        });
        let site_key = site_key.filter(|k| {
            let ok = k.len() <= MAX_SITE_KEY_CHARS
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                r.refuse(
                    "TURNSTILE_SITE_KEY",
                    "expected the widget's site key: letters, digits, _ and -, at most 100",
                );
            }
            ok
        });
        // One without the other is a bot check half set up: anonymous calls stop until both
        // are there (a refused value already stopped them).
        match (&secret, &site_key) {
            (Some(_), None) if !r.has_problem("TURNSTILE_SITE_KEY") => r.missing(
                "TURNSTILE_SITE_KEY",
                "the bot check needs the widget's site key beside TURNSTILE_SECRET_KEY (the page renders the widget with it)",
            ),
            (None, Some(_)) if !r.has_problem("TURNSTILE_SECRET_KEY") => r.missing(
                "TURNSTILE_SECRET_KEY",
                "the bot check needs the widget's secret key beside TURNSTILE_SITE_KEY (tokens are verified with it)",
            ),
            _ => {}
        }
        let broken = [
            "TURNSTILE_SECRET_KEY",
            "TURNSTILE_SITE_KEY",
            "TURNSTILE_VERIFY_URL",
            "TURNSTILE_SCRIPT_URL",
            "TURNSTILE_TIMEOUT",
        ]
        .iter()
        .any(|name| r.has_problem(name));
        if broken {
            return None;
        }
        Some(TurnstileConfig {
            secret: secret?,
            site_key: site_key?,
            verify_url: verify_url.unwrap_or_else(|| SITEVERIFY_URL.to_string()),
            script_url: script_url.unwrap_or_else(|| SCRIPT_URL.to_string()),
            timeout: Duration::from_secs(timeout),
        })
    })
}
