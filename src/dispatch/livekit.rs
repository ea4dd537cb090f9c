//! LiveKit SIP outbound calls (docs/API.md §7), through the `livekit-api` crate.
//!
//! Per call: with `LIVEKIT_AGENT_NAME`, an agent dispatch into the new room `call-<call_id>`
//! first (so the agent is there when the callee picks up), then `CreateSIPParticipant` on
//! `SIP_TRUNK_ID`, which dials the number into that room. The whole sequence is bounded by
//! `PROVIDER_TIMEOUT` and never retried: the crate's region failover (which would replay a
//! dial against another region) is switched off.

use std::time::Duration;

use async_trait::async_trait;
use livekit_api::services::sip::CreateSIPParticipantOptions;
use livekit_api::services::{LiveKitApi, ServerError, ServiceError, SipCallError};
use livekit_protocol as proto;
use secrecy::ExposeSecret;
use serde_json::json;

use super::ProviderKind;
use super::{CallDispatcher, CallRequest, DispatchError, PlacedCall};
use crate::phone::E164;
use secrecy::SecretString;

/// The LiveKit settings (`LIVEKIT_*`, `SIP_TRUNK_ID`, `CALLER_ID`), read by `config`.
#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    pub url: String,
    pub api_key: String,
    pub api_secret: SecretString,
    pub sip_trunk_id: String,
    pub caller_id: E164,
    pub agent_name: Option<String>,
}

pub struct LiveKit {
    api: LiveKitApi,
    sip_trunk_id: String,
    caller_id: E164,
    agent_name: Option<String>,
    timeout: Duration,
}

impl LiveKit {
    /// Builds the API client once (it holds its own connection pool: the crate uses its own
    /// `reqwest` and does not accept ours). `LIVEKIT_URL` may be `wss://`, `https://` or
    /// `http://`; the crate speaks Twirp over the matching http(s) scheme.
    pub fn new(config: &LiveKitConfig, timeout: Duration) -> Self {
        let api = LiveKitApi::with_api_key(
            &config.url,
            &config.api_key,
            config.api_secret.expose_secret(),
        )
        .with_failover(false)
        .with_request_timeout(timeout);
        LiveKit {
            api,
            sip_trunk_id: config.sip_trunk_id.clone(),
            caller_id: config.caller_id.clone(),
            agent_name: config.agent_name.clone(),
            timeout,
        }
    }

    /// The room every call gets to itself.
    pub fn room_name(call: &CallRequest) -> String {
        format!("call-{}", call.call_id)
    }

    /// What the agent reads: the same JSON for the dispatch and the participant.
    pub fn metadata(call: &CallRequest) -> String {
        json!({
            "phone_number": call.to.as_str(),
            "call_id": call.call_id.to_string(),
            "name": call.name,
            "variables": call.variables,
        })
        .to_string()
    }

    async fn exchange(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        let room = Self::room_name(call);
        let metadata = Self::metadata(call);
        if let Some(agent_name) = &self.agent_name {
            let request = proto::CreateAgentDispatchRequest {
                agent_name: agent_name.clone(),
                room: room.clone(),
                metadata: metadata.clone(),
                ..Default::default()
            };
            self.api
                .agent_dispatch()
                .create_dispatch(request)
                .await
                .map_err(|e| classify("agent dispatch", &e))?;
        }
        let options = CreateSIPParticipantOptions {
            participant_identity: format!("phone-{}", call.call_id),
            participant_name: call.name.clone(),
            participant_metadata: Some(metadata),
            sip_number: Some(self.caller_id.as_str().to_string()),
            // Return once the call is dialling: "initiated" means accepted, not answered.
            wait_until_answered: Some(false),
            timeout: Some(self.timeout),
            ..Default::default()
        };
        let info = self
            .api
            .sip()
            .create_sip_participant(
                self.sip_trunk_id.clone(),
                call.to.as_str().to_string(),
                room,
                options,
                None,
            )
            .await
            .map_err(|e| classify("SIP call", &e))?;
        // An accepted call without a SIP call id is still placed: fall back to the participant.
        let id = if info.sip_call_id.is_empty() {
            info.participant_id
        } else {
            info.sip_call_id
        };
        if id.is_empty() {
            return Err(DispatchError::Provider {
                reason: "LiveKit accepted the call without an id".into(),
            });
        }
        Ok(PlacedCall {
            provider_call_id: id,
        })
    }
}

#[async_trait]
impl CallDispatcher for LiveKit {
    fn kind(&self) -> ProviderKind {
        ProviderKind::LiveKit
    }

    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        // Each request already times out on its own; this bounds the pair.
        tokio::time::timeout(self.timeout, self.exchange(call))
            .await
            .unwrap_or(Err(DispatchError::Timeout))
    }
}

/// A safe reason for a LiveKit failure. Kept: the SIP status code with its standard reason
/// phrase (`486 Busy Here`) and the Twirp code (`not_found`). Dropped: the reason phrase the
/// far end sent (it can carry the number: `480 Subscriber 351912345678 unavailable`), Twirp's
/// free-text `msg`, other error metadata, and transport errors' text (which carries the URL).
fn classify(step: &str, error: &ServiceError) -> DispatchError {
    let reason = match error {
        ServiceError::Twirp(ServerError::Twirp(code)) => {
            let code_word = twirp_code(&code.code).unwrap_or("unknown");
            match SipCallError::from_error(error)
                .and_then(|sip| sip.sip_status_code())
                .and_then(|status| u16::try_from(status).ok())
                .filter(|status| (100..=699).contains(status))
            {
                Some(status) => match sip_reason_phrase(status) {
                    Some(phrase) => format!("LiveKit {step} failed: {status} {phrase}"),
                    None => format!("LiveKit {step} failed: SIP {status} ({code_word})"),
                },
                None => format!("LiveKit returned an error for the {step} ({code_word})"),
            }
        }
        ServiceError::Twirp(ServerError::Request(e)) if e.is_timeout() => {
            return DispatchError::Timeout
        }
        ServiceError::Twirp(ServerError::Request(e)) if e.is_connect() => {
            "LiveKit could not be reached".into()
        }
        // A non-Twirp error body (a proxy's HTML page) fails to decode as JSON here.
        ServiceError::Twirp(ServerError::Request(e)) if e.is_decode() => {
            format!("LiveKit answered the {step} with an unreadable error")
        }
        ServiceError::Twirp(ServerError::Request(_)) => {
            format!("the LiveKit {step} request failed")
        }
        ServiceError::Twirp(ServerError::Url(_)) => "LIVEKIT_URL is not a usable URL".into(),
        ServiceError::Twirp(ServerError::Prost(_)) => {
            format!("LiveKit answered the {step} with an unreadable body")
        }
        ServiceError::AccessToken(_) => "the LiveKit access token could not be signed".into(),
        ServiceError::Env(_) => "LiveKit credentials are missing".into(),
    };
    DispatchError::Provider { reason }
}

/// One of Twirp's error codes (`not_found`, `resource_exhausted`, …), which are lower-case
/// words; anything else is not repeated.
fn twirp_code(code: &str) -> Option<&str> {
    let ok =
        (1..=40).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    ok.then_some(code)
}

/// The standard reason phrase of a SIP final response (RFC 3261 §21 and the RFCs that added
/// codes since), so the phrase a caller reads is ours, never the far end's.
fn sip_reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        180 => "Ringing",
        183 => "Session Progress",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::services::ServerErrorCode;
    use std::collections::HashMap;

    fn twirp(code: &str, meta: &[(&str, &str)]) -> ServiceError {
        ServiceError::Twirp(ServerError::Twirp(ServerErrorCode {
            code: code.into(),
            msg: "dialing +351912345678 failed".into(),
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }))
    }

    fn reason(e: DispatchError) -> String {
        match e {
            DispatchError::Provider { reason } => reason,
            DispatchError::Timeout => panic!("expected a provider error"),
        }
    }

    #[test]
    fn sip_status_is_kept_and_the_message_is_not() {
        let r = reason(classify(
            "SIP call",
            &twirp(
                "resource_exhausted",
                &[("sip_status_code", "486"), ("sip_status", "Busy Here")],
            ),
        ));
        assert_eq!(r, "LiveKit SIP call failed: 486 Busy Here");
        let r = reason(classify("SIP call", &twirp("not_found", &[])));
        assert_eq!(r, "LiveKit returned an error for the SIP call (not_found)");
        assert!(!r.contains("351"));
    }

    #[test]
    fn the_far_ends_reason_phrase_never_reaches_the_caller() {
        let r = reason(classify(
            "SIP call",
            &twirp(
                "unavailable",
                &[
                    ("sip_status_code", "480"),
                    ("sip_status", "Subscriber 351912345678 unavailable"),
                ],
            ),
        ));
        assert_eq!(r, "LiveKit SIP call failed: 480 Temporarily Unavailable");
        // A Twirp code with digits is not repeated either.
        let r = reason(classify("SIP call", &twirp("e351912345678", &[])));
        assert_eq!(r, "LiveKit returned an error for the SIP call (unknown)");
        // A status code no table knows keeps its number and the Twirp word only.
        let r = reason(classify(
            "SIP call",
            &twirp(
                "unavailable",
                &[("sip_status_code", "499"), ("sip_status", "x 12345")],
            ),
        ));
        assert_eq!(r, "LiveKit SIP call failed: SIP 499 (unavailable)");
    }

    #[test]
    fn odd_sip_reason_phrases_are_not_repeated() {
        let r = reason(classify(
            "SIP call",
            &twirp(
                "unavailable",
                &[("sip_status_code", "503"), ("sip_status", "<b>\u{7}")],
            ),
        ));
        assert_eq!(r, "LiveKit SIP call failed: 503 Service Unavailable");
    }
}
