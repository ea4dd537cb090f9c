//! The providers' settings (ElevenLabs, LiveKit, dry-run), which one is the default, and the
//! Make webhook's. Each provider's group is read with its problems scoped to it, so a broken
//! provider stops its own calls and never falls back to another one.

use std::time::Duration;

use super::problem::Scope;
use super::reader::Reader;
use crate::dispatch::elevenlabs::{ElevenLabsConfig, ElevenLabsNumbers};
use crate::dispatch::livekit::LiveKitConfig;
use crate::dispatch::ProviderKind;
use secrecy::{ExposeSecret, SecretString};

use crate::notify::{WebhookConfig, WebhookSecret};
use crate::phone::E164;

/// The providers section as read.
pub(super) struct Providers {
    /// The provider used when a request names none; `None` when none is available.
    pub(super) default: Option<ProviderKind>,
    pub(super) elevenlabs: Option<ElevenLabsConfig>,
    pub(super) livekit: Option<LiveKitConfig>,
    pub(super) timeout: Duration,
}

pub(super) fn read(r: &mut Reader, caller_id: Option<E164>) -> Providers {
    let production = r.production;
    let timeout = Duration::from_secs(r.number("PROVIDER_TIMEOUT", 1, 120).unwrap_or(10));
    let elevenlabs = elevenlabs(r);
    let livekit = livekit(r, caller_id);
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
    let default = match requested {
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
                r.scoped(Scope::Provider(kind), |r| r.require_group(names, reason));
            }
            Some(kind)
        }
        None if r.has_problem("CALL_PROVIDER") => None,
        // The first provider whose variables are there, even if they are refused: then its
        // calls answer 503 rather than go through the next provider.
        None if !elevenlabs.is_absent() => Some(ProviderKind::ElevenLabs),
        None if !livekit.is_absent() => Some(ProviderKind::LiveKit),
        None if production => {
            r.scoped(Scope::NoProvider, |r| {
                r.missing(
                    "CALL_PROVIDER",
                    "no call provider: set the ELEVENLABS_* or the LIVEKIT_* variables (production never dry-runs)",
                )
            });
            None
        }
        None => Some(ProviderKind::DryRun),
    };
    Providers {
        default,
        elevenlabs: elevenlabs.ready(),
        livekit: livekit.ready(),
        timeout,
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

/// Reads one provider's group with its problems scoped to it: complete, absent, or broken
/// (a value refused, or an intended group with a hole).
fn group<T>(
    r: &mut Reader,
    kind: ProviderKind,
    any: &[&'static str],
    read: impl FnOnce(&mut Reader) -> Option<T>,
) -> Setting<T> {
    let before = r.problem_count();
    let value = r.scoped(Scope::Provider(kind), |r| {
        let value = read(r);
        if value.is_none() && r.group_intended(any) {
            if let Some((names, reason)) = required_group(kind) {
                r.require_group(names, reason);
            }
        }
        value
    });
    if r.problem_count() > before {
        Setting::Broken
    } else {
        match value {
            Some(value) => Setting::Ready(value),
            None => Setting::Absent,
        }
    }
}

fn elevenlabs(r: &mut Reader) -> Setting<ElevenLabsConfig> {
    group(r, ProviderKind::ElevenLabs, ELEVENLABS_ANY, |r| {
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

fn livekit(r: &mut Reader, caller_id: Option<E164>) -> Setting<LiveKitConfig> {
    group(r, ProviderKind::LiveKit, LIVEKIT_ANY, |r| {
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

pub(super) fn webhook(r: &mut Reader) -> Option<WebhookConfig> {
    let url = r.url("MAKE_WEBHOOK_URL");
    let secret = r.secret("MAKE_WEBHOOK_SECRET");
    let timeout = Duration::from_secs(r.number("WEBHOOK_TIMEOUT", 1, 300).unwrap_or(30));
    let retries = r.number("WEBHOOK_RETRIES", 0, 10).unwrap_or(3) as u32;
    let sweep_every = Duration::from_secs(r.number("WEBHOOK_SWEEP_SECONDS", 1, 3600).unwrap_or(60));
    if secret
        .as_ref()
        .is_some_and(|s| WebhookSecret::parse(s.expose_secret()).is_err())
    {
        r.refuse(
            "MAKE_WEBHOOK_SECRET",
            "a whsec_ secret must hold base64 after the prefix",
        );
    }
    let url = url?;
    if r.production && secret.is_none() && !r.has_problem("MAKE_WEBHOOK_SECRET") {
        // Production webhooks are authenticated and signed.
        r.missing(
            "MAKE_WEBHOOK_SECRET",
            "production webhooks are signed: set MAKE_WEBHOOK_SECRET",
        );
    }
    Some(WebhookConfig {
        url,
        secret,
        timeout,
        retries,
        sweep_every,
    })
}

/// `CRON_SECRET`: at least [`super::MIN_CRON_SECRET_LEN`] characters in production (Vercel's advice:
/// a random string of 16 or more).
pub(super) fn cron_secret(r: &mut Reader) -> Option<SecretString> {
    let secret = r.secret("CRON_SECRET")?;
    if r.production && secret.expose_secret().len() < super::MIN_CRON_SECRET_LEN {
        r.refuse("CRON_SECRET", "needs 16 characters or more in production");
        return None;
    }
    Some(secret)
}
