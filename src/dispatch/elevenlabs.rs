//! ElevenLabs Conversational AI outbound calls (docs/API.md §7).
//!
//! One `POST {ELEVENLABS_API_BASE}/v1/convai/{twilio|sip-trunk}/outbound-call` per call, never
//! retried, bounded by `PROVIDER_TIMEOUT`. Whatever ElevenLabs answers is reduced to a short,
//! classified reason: the upstream body (which may echo the number, the key or Twilio's own
//! error text) never reaches the caller or the log.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderValue, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ProviderKind;
use super::{CallDispatcher, CallRequest, DispatchError, PlacedCall};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElevenLabsNumbers {
    Twilio,
    SipTrunk,
}

/// The ElevenLabs settings (`ELEVENLABS_*`, `ELEVEN_AGENT_*`), read by `config`.
#[derive(Debug, Clone)]
pub struct ElevenLabsConfig {
    pub api_key: SecretString,
    pub agent_id: String,
    pub agent_phone_number_id: String,
    /// Without a trailing slash.
    pub api_base: String,
    pub numbers: ElevenLabsNumbers,
}

/// The most of an answer we read: ElevenLabs answers a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub struct ElevenLabs {
    http: reqwest::Client,
    endpoint: String,
    api_key: SecretString,
    agent_id: String,
    agent_phone_number_id: String,
    timeout: Duration,
}

/// The request body of both outbound-call endpoints.
#[derive(Debug, Serialize)]
struct OutboundCall<'a> {
    agent_id: &'a str,
    agent_phone_number_id: &'a str,
    to_number: &'a str,
    conversation_initiation_client_data: ClientData,
}

#[derive(Debug, Serialize)]
struct ClientData {
    dynamic_variables: BTreeMap<String, String>,
}

/// The part of the answer we use. Everything else (`message`, `callSid`, `sip_call_id`) is
/// ignored on purpose.
#[derive(Debug, Deserialize)]
struct Answer {
    success: Option<bool>,
    conversation_id: Option<String>,
}

impl ElevenLabs {
    /// `http` is the process's shared client; `timeout` bounds the whole exchange.
    pub fn new(config: &ElevenLabsConfig, http: reqwest::Client, timeout: Duration) -> Self {
        let numbers = match config.numbers {
            ElevenLabsNumbers::Twilio => "twilio",
            ElevenLabsNumbers::SipTrunk => "sip-trunk",
        };
        ElevenLabs {
            http,
            endpoint: format!("{}/v1/convai/{numbers}/outbound-call", config.api_base),
            api_key: config.api_key.clone(),
            agent_id: config.agent_id.clone(),
            agent_phone_number_id: config.agent_phone_number_id.clone(),
            timeout,
        }
    }

    /// `dynamic_variables`: the caller's variables, then `name` and `call_id`, which win over
    /// variables of the same name. `name` is always present (empty when not given) so an agent
    /// prompt that mentions `{{name}}` never fails on a missing variable.
    fn dynamic_variables(call: &CallRequest) -> BTreeMap<String, String> {
        let mut vars = call.variables.clone();
        vars.insert("name".into(), call.name.clone().unwrap_or_default());
        vars.insert("call_id".into(), call.call_id.to_string());
        vars
    }

    async fn exchange(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        let body = OutboundCall {
            agent_id: &self.agent_id,
            agent_phone_number_id: &self.agent_phone_number_id,
            to_number: call.to.as_str(),
            conversation_initiation_client_data: ClientData {
                dynamic_variables: Self::dynamic_variables(call),
            },
        };
        let mut key = HeaderValue::from_str(self.api_key.expose_secret())
            .map_err(|_| provider("ELEVENLABS_API_KEY is not a valid header value"))?;
        key.set_sensitive(true);
        let response = self
            .http
            .post(&self.endpoint)
            .header("xi-api-key", key)
            .header(http::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let bytes = read_capped(response).await?;
        interpret(status, &bytes)
    }
}

#[async_trait]
impl CallDispatcher for ElevenLabs {
    fn kind(&self) -> ProviderKind {
        ProviderKind::ElevenLabs
    }

    async fn place(&self, call: &CallRequest) -> Result<PlacedCall, DispatchError> {
        tokio::time::timeout(self.timeout, self.exchange(call))
            .await
            .unwrap_or(Err(DispatchError::Timeout))
    }
}

fn provider(reason: impl Into<String>) -> DispatchError {
    DispatchError::Provider {
        reason: reason.into(),
    }
}

/// A reqwest error says which URL failed; only its kind is kept.
fn transport_error(error: reqwest::Error) -> DispatchError {
    if error.is_timeout() {
        DispatchError::Timeout
    } else if error.is_connect() {
        provider("ElevenLabs could not be reached")
    } else {
        provider("the request to ElevenLabs failed")
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, DispatchError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(provider("ElevenLabs answered with an oversized body"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Turns ElevenLabs' answer into a placed call or a safe reason.
fn interpret(status: StatusCode, body: &[u8]) -> Result<PlacedCall, DispatchError> {
    if !status.is_success() {
        let code = status.as_u16();
        let detail = safe_detail(body);
        let with_detail = |text: &str| match &detail {
            Some(d) => format!("{text} ({code}: {d})"),
            None => format!("{text} ({code})"),
        };
        return Err(provider(match code {
            401 => with_detail("ElevenLabs rejected the API key"),
            403 => with_detail("ElevenLabs refused access to the agent or number"),
            404 => with_detail("ElevenLabs did not find the agent or phone number"),
            422 | 400 => with_detail("ElevenLabs rejected the request"),
            429 => with_detail("ElevenLabs is rate limiting or out of concurrent calls"),
            500..=599 => format!("ElevenLabs failed ({code})"),
            _ => format!("ElevenLabs answered with an unexpected status ({code})"),
        }));
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| provider("ElevenLabs answered with an unreadable body"))?;
    if answer.success == Some(false) {
        return Err(provider(
            "ElevenLabs did not place the call (success: false)",
        ));
    }
    match answer.conversation_id {
        Some(id) if is_safe_id(&id) => Ok(PlacedCall {
            provider_call_id: id,
        }),
        _ => Err(provider(
            "ElevenLabs answered without a usable conversation_id",
        )),
    }
}

fn is_safe_id(id: &str) -> bool {
    (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// What may be repeated from an error body: machine words only, never free text. ElevenLabs
/// answers `{"detail": {"status": "invalid_api_key", "message": "…"}}` or, for validation,
/// FastAPI's `{"detail": [{"loc": ["body", "to_number"], "msg": "…"}]}`. The `status` word or
/// the field path is kept; messages (which can quote the input) are not.
fn safe_detail(body: &[u8]) -> Option<String> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let detail = json.get("detail")?;
    if let Some(status) = detail.get("status").and_then(Value::as_str) {
        return is_word(status).then(|| status.to_string());
    }
    let loc = detail.as_array()?.first()?.get("loc")?.as_array()?;
    let parts: Vec<String> = loc
        .iter()
        .take(4)
        .map(|p| match p {
            Value::String(s) if is_word(s) => Some(s.clone()),
            // An array index; a longer number could be the callee's.
            Value::Number(n) => n.as_u64().filter(|&i| i < 100).map(|i| i.to_string()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("."))
}

/// A short snake_case word (a code or a field name), safe to repeat. No digits: a digit run
/// from upstream text could be a phone number.
fn is_word(s: &str) -> bool {
    (1..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(status: u16, body: &str) -> String {
        match interpret(StatusCode::from_u16(status).unwrap(), body.as_bytes()) {
            Err(DispatchError::Provider { reason }) => reason,
            other => panic!("expected a provider error, got {other:?}"),
        }
    }

    #[test]
    fn conversation_id_is_the_provider_call_id() {
        let placed = interpret(
            StatusCode::OK,
            br#"{"success":true,"message":"ok","conversation_id":"conv_123","callSid":"CA1"}"#,
        )
        .unwrap();
        assert_eq!(placed.provider_call_id, "conv_123");
    }

    #[test]
    fn error_bodies_keep_only_machine_words() {
        let r = reason(
            401,
            r#"{"detail":{"status":"invalid_api_key","message":"key test-elevenlabs-key is wrong"}}"#,
        );
        assert_eq!(r, "ElevenLabs rejected the API key (401: invalid_api_key)");
        let r = reason(
            422,
            r#"{"detail":[{"loc":["body","to_number"],"msg":"+351912345678 is bad","type":"x"}]}"#,
        );
        assert_eq!(r, "ElevenLabs rejected the request (422: body.to_number)");
        let r = reason(
            422,
            r#"{"detail":[{"loc":["body","Not A Word +351"],"msg":"x"}]}"#,
        );
        assert_eq!(r, "ElevenLabs rejected the request (422)");
        assert_eq!(
            reason(502, "<html>bad gateway</html>"),
            "ElevenLabs failed (502)"
        );
    }

    #[test]
    fn no_digit_run_from_an_error_body_is_repeated() {
        for body in [
            r#"{"detail":{"status":"351912345678"}}"#,
            r#"{"detail":{"status":"busy_351912345678"}}"#,
            r#"{"detail":[{"loc":["body",351912345678],"msg":"x"}]}"#,
        ] {
            let r = reason(422, body);
            assert!(!r.contains("3519"), "{body}: {r}");
        }
        let r = reason(
            422,
            r#"{"detail":[{"loc":["body","variables",3],"msg":"x"}]}"#,
        );
        assert_eq!(r, "ElevenLabs rejected the request (422: body.variables.3)");
    }

    #[test]
    fn success_false_and_missing_ids_are_refusals() {
        assert!(reason(
            200,
            r#"{"success":false,"message":"Twilio said no to +351912345678"}"#
        )
        .contains("success: false"));
        assert!(
            reason(200, r#"{"success":true,"conversation_id":null}"#).contains("conversation_id")
        );
        assert!(
            reason(200, r#"{"success":true,"conversation_id":"<script>"}"#)
                .contains("conversation_id")
        );
        assert!(reason(200, "not json").contains("unreadable"));
    }
}
