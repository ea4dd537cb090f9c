//! Security and outcome metrics, so operators hear about abuse before the bill does.
//!
//! On AWS Lambda each event is one CloudWatch Embedded Metric Format (EMF) line on stdout: a JSON
//! object whose `_aws.CloudWatchMetrics` block tells CloudWatch which fields are metrics and
//! which are dimensions. No SDK call, no extra round trip: Lambda already ships stdout to
//! CloudWatch Logs, which extracts the metrics. Elsewhere (Vercel, local) the metrics are off and
//! the same events stay greppable through their log lines (see `logging`).
//!
//! Dimensions are few and fixed: `Service` (the function name) on every metric, plus at most
//! `LimitKind`, `Provider` or `Reason` — never a phone number, an IP or a key.

use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::bot_check;
use crate::dispatch::ProviderKind;
use crate::store::LimitKind;

pub const NAMESPACE: &str = "Chamada";

/// Why a call failed, as a metric dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    ProviderError,
    ProviderTimeout,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::ProviderError => "provider_error",
            FailureClass::ProviderTimeout => "provider_timeout",
        }
    }
}

/// Every event the operators measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A wrong or missing API key (401).
    AuthenticationFailures,
    /// A request from an origin that is not allowed (403).
    CorsViolations,
    /// A call refused by a limit (429), per limit kind.
    RateLimitRefusals(LimitKind),
    /// A real number the phone policy will not call (premium rate, foreign, ...).
    DestinationsRefused,
    /// Variables missing or refused: once per problem at start-up, once per refused call.
    ConfigurationProblems,
    /// The rate-limit store failed, so calls are refused (fail closed).
    RateLimitStoreErrors,
    /// A provider accepted a call.
    CallsInitiated(ProviderKind),
    /// A provider refused a call or timed out.
    CallsFailed(ProviderKind, FailureClass),
    /// A webhook delivery failed after its retries.
    WebhookDeliveriesFailed,
    /// A provider webhook (ElevenLabs, LiveKit) with a bad, stale or missing signature.
    ProviderSignatureFailures(ProviderKind),
    /// A verified provider event about a call Chamada has no record of.
    UnknownCallEvents(ProviderKind),
    /// An anonymous call refused by the bot check (403), or not judged because Siteverify
    /// gave no verdict (503), per reason (docs/API.md §16).
    CaptchaFailures(bot_check::Reason),
}

impl Metric {
    /// Every metric name the code emits (the template's alarms are checked against this list).
    pub const NAMES: [&'static str; 12] = [
        "AuthenticationFailures",
        "CorsViolations",
        "RateLimitRefusals",
        "DestinationsRefused",
        "ConfigurationProblems",
        "RateLimitStoreErrors",
        "CallsInitiated",
        "CallsFailed",
        "WebhookDeliveriesFailed",
        "ProviderSignatureFailures",
        "UnknownCallEvents",
        "CaptchaFailures",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::AuthenticationFailures => "AuthenticationFailures",
            Metric::CorsViolations => "CorsViolations",
            Metric::RateLimitRefusals(_) => "RateLimitRefusals",
            Metric::DestinationsRefused => "DestinationsRefused",
            Metric::ConfigurationProblems => "ConfigurationProblems",
            Metric::RateLimitStoreErrors => "RateLimitStoreErrors",
            Metric::CallsInitiated(_) => "CallsInitiated",
            Metric::CallsFailed(..) => "CallsFailed",
            Metric::WebhookDeliveriesFailed => "WebhookDeliveriesFailed",
            Metric::ProviderSignatureFailures(_) => "ProviderSignatureFailures",
            Metric::UnknownCallEvents(_) => "UnknownCallEvents",
            Metric::CaptchaFailures(_) => "CaptchaFailures",
        }
    }

    /// The detail dimensions (beyond `Service`), with their values.
    pub fn details(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Metric::RateLimitRefusals(kind) => vec![("LimitKind", kind.as_str())],
            Metric::CallsInitiated(provider)
            | Metric::ProviderSignatureFailures(provider)
            | Metric::UnknownCallEvents(provider) => vec![("Provider", provider.as_str())],
            Metric::CallsFailed(provider, class) => {
                vec![("Provider", provider.as_str()), ("Reason", class.as_str())]
            }
            Metric::CaptchaFailures(reason) => vec![("Reason", reason.as_str())],
            _ => Vec::new(),
        }
    }
}

enum Sink {
    /// Not on AWS: metrics are not written (the log lines carry the events).
    Off,
    /// EMF lines on stdout.
    Stdout,
    /// Records kept in memory (tests).
    Capture(Mutex<Vec<Value>>),
}

/// Where metrics go, and the `Service` dimension they carry.
pub struct Metrics {
    service: String,
    sink: Sink,
}

impl Metrics {
    pub fn off() -> Self {
        Metrics {
            service: String::new(),
            sink: Sink::Off,
        }
    }

    /// EMF on stdout, for the Lambda function `service`.
    pub fn emf(service: impl Into<String>) -> Self {
        Metrics {
            service: service.into(),
            sink: Sink::Stdout,
        }
    }

    /// EMF records kept in memory, for tests.
    pub fn capture(service: impl Into<String>) -> Self {
        Metrics {
            service: service.into(),
            sink: Sink::Capture(Mutex::new(Vec::new())),
        }
    }

    /// The records captured so far (empty unless built with [`Metrics::capture`]).
    pub fn captured(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Capture(records) => records.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => Vec::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Counts `value` occurrences of `metric` at `now_ms`.
    pub fn count(&self, metric: Metric, value: u64, now_ms: u64) {
        match &self.sink {
            Sink::Off => {}
            Sink::Stdout => {
                let line = self.record(metric, value, now_ms).to_string();
                // One write of one line: EMF records must not interleave with other output.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
            }
            Sink::Capture(records) => records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.record(metric, value, now_ms)),
        }
    }

    /// The EMF record of one count.
    pub fn record(&self, metric: Metric, value: u64, now_ms: u64) -> Value {
        let details = metric.details();
        let mut dimension_sets = vec![json!(["Service"])];
        if !details.is_empty() {
            let mut set = vec!["Service"];
            set.extend(details.iter().map(|(name, _)| *name));
            dimension_sets.push(json!(set));
        }
        let mut record = Map::new();
        record.insert(
            "_aws".into(),
            json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
                }],
            }),
        );
        record.insert("Service".into(), json!(self.service));
        for (name, value) in details {
            record.insert(name.into(), json!(value));
        }
        record.insert(metric.name().into(), json!(value));
        Value::Object(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_valid_emf_for_its_fields() {
        let m = Metrics::capture("chamada-fn");
        let r = m.record(
            Metric::CallsFailed(ProviderKind::LiveKit, FailureClass::ProviderTimeout),
            1,
            1_795_867_200_000,
        );
        let block = &r["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(block["Namespace"], "Chamada");
        assert_eq!(r["_aws"]["Timestamp"], 1_795_867_200_000u64);
        assert_eq!(block["Metrics"][0]["Name"], "CallsFailed");
        assert_eq!(block["Metrics"][0]["Unit"], "Count");
        assert_eq!(r["CallsFailed"], 1);
        assert_eq!(
            block["Dimensions"],
            json!([["Service"], ["Service", "Provider", "Reason"]])
        );
        assert_eq!(r["Provider"], "livekit");
        assert_eq!(r["Reason"], "provider_timeout");
        assert_eq!(r["Service"], "chamada-fn");
    }

    #[test]
    fn names_list_every_metric() {
        let all = [
            Metric::AuthenticationFailures,
            Metric::CorsViolations,
            Metric::RateLimitRefusals(LimitKind::Ip),
            Metric::DestinationsRefused,
            Metric::ConfigurationProblems,
            Metric::RateLimitStoreErrors,
            Metric::CallsInitiated(ProviderKind::ElevenLabs),
            Metric::CallsFailed(ProviderKind::ElevenLabs, FailureClass::ProviderError),
            Metric::WebhookDeliveriesFailed,
            Metric::ProviderSignatureFailures(ProviderKind::LiveKit),
            Metric::UnknownCallEvents(ProviderKind::ElevenLabs),
            Metric::CaptchaFailures(bot_check::Reason::Unavailable),
        ];
        let names: Vec<&str> = all.iter().map(|m| m.name()).collect();
        assert_eq!(names, Metric::NAMES);
    }

    #[test]
    fn off_writes_nothing() {
        let m = Metrics::off();
        m.count(Metric::CorsViolations, 1, 0);
        assert!(m.captured().is_empty());
        assert!(!m.is_on());
    }
}
