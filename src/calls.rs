//! The use case: a validated request becomes a call. Limits (docs/API.md §5), dispatch
//! (docs/API.md §7), the webhook event (docs/API.md §9) and the operators' log lines
//! (docs/API.md §11). It takes the ports it needs
//! ([`Ports`]) and the dispatcher already chosen, and answers in its own terms ([`CallError`]);
//! the HTTP layer turns that into statuses and bodies.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::access::Caller;
use crate::client_ip::IpKey;
use crate::clock::Clock;
use crate::config::Limits;
use crate::dispatch::{CallDispatcher, CallRequest, DispatchError, ProviderKind};
use crate::logging;
use crate::metrics::{FailureClass, Metric, Metrics};
use crate::notify::{event_id, event_time, CallOutcome, CallSource, Event, EventType};
use crate::phone::AllowedNumber;
use crate::store::{
    keys, utc_day, Admission, LimitCheck, LimitKind, LimitStatus, RateLimiter, Window,
};

/// A request that passed every validation: what to call, for whom, counted against what.
#[derive(Debug, Clone)]
pub struct StartCall {
    pub to: AllowedNumber,
    pub name: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub caller: Caller,
    /// The address the per-IP limit counts; `None` for an authenticated server that did not
    /// speak for an end user.
    pub client: Option<IpKey>,
}

/// The call the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub call_id: Uuid,
    pub provider: ProviderKind,
    pub provider_call_id: String,
    pub to: String,
}

/// Why a call was not placed, or did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A limit is full; the slot frees in `retry_after` seconds.
    #[error("a limit is full for {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The limits could not be counted, so nothing was placed (fail closed).
    #[error("the limits could not be counted")]
    LimitsUnavailable,
    /// The provider refused the call; `reason` is safe to show the caller.
    #[error("the provider refused the call: {0}")]
    Provider(String),
    /// The provider did not answer in time; the call may have gone out.
    #[error("the provider did not answer in time")]
    ProviderTimeout,
}

impl CallError {
    /// Whether the provider was asked (the answer is then kept for idempotent replays: a
    /// retry must never ring twice).
    pub fn reached_provider(&self) -> bool {
        matches!(self, CallError::Provider(_) | CallError::ProviderTimeout)
    }
}

/// The result, and the limit the `RateLimit-*` headers describe once the limiter has run.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Started, CallError>,
    pub rate: Option<LimitStatus>,
    /// A call the provider was asked to place: its record and its webhook event
    /// (`call.initiated` or `call.failed`, which the caller writes to the outbox with the
    /// answer) are made from it.
    pub placed: Option<Placed>,
}

/// What is known of a call the provider was asked to place. The webhook event is made from it
/// only where there is a webhook ([`Placed::into_event`]): its id and time are not written
/// for nothing on every call.
#[derive(Debug)]
pub struct Placed {
    pub kind: EventType,
    pub at_ms: u64,
    /// The number as logs and the call record show it.
    pub to_masked: String,
    pub data: CallOutcome,
}

impl Placed {
    /// The webhook event: a new id, the time the outcome was known, the outcome.
    pub fn into_event(self) -> Event {
        Event {
            id: event_id(),
            kind: self.kind,
            created_at: event_time(self.at_ms),
            data: self.data,
        }
    }
}

/// What the use case needs from the application, and nothing more.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub limits: Limits,
    pub limiter: &'a dyn RateLimiter,
    pub clock: &'a dyn Clock,
    pub metrics: &'a Metrics,
}

impl Ports<'_> {
    fn count(&self, metric: Metric, value: u64) {
        self.metrics.count(metric, value, self.clock.now_ms());
    }

    /// The limits that apply to this request, in the order they are checked.
    pub fn limit_checks(&self, call: &StartCall, now_ms: u64) -> Vec<LimitCheck> {
        let limits = self.limits;
        let window = Window::Rolling {
            ms: limits.window_secs * 1000,
        };
        let mut checks = Vec::with_capacity(3);
        if let Some(ip) = call.client {
            checks.push(LimitCheck {
                kind: LimitKind::Ip,
                key: keys::ip(ip),
                max: limits.per_ip,
                window,
            });
        }
        checks.push(LimitCheck {
            kind: LimitKind::Number,
            key: keys::number(&call.to.e164),
            max: limits.per_number,
            window,
        });
        if let Some(per_day) = limits.per_day {
            checks.push(LimitCheck {
                kind: LimitKind::Global,
                key: keys::global(utc_day(now_ms)),
                max: per_day,
                window: Window::UtcDay,
            });
        }
        checks
    }

    /// Counts the request under its limits, places the call through `dispatcher`, reports the
    /// outcome.
    pub async fn start_call(
        &self,
        call: StartCall,
        dispatcher: &dyn CallDispatcher,
        request_id: &str,
    ) -> Outcome {
        // Written only into log lines that are on: nothing is formatted for a level that is off.
        let masked = call.to.e164.masked();
        let ip_prefix = call.client.map(|ip| ip.log_prefix());

        let now_ms = self.clock.now_ms();
        let checks = self.limit_checks(&call, now_ms);
        let admission = match self.limiter.admit(&checks, now_ms).await {
            Ok(admission) => admission,
            Err(error) => {
                tracing::error!(request_id, error = %error, "Rate limit store failed; refusing the call");
                self.count(Metric::RateLimitStoreErrors, 1);
                return Outcome {
                    result: Err(CallError::LimitsUnavailable),
                    rate: None,
                    placed: None,
                };
            }
        };
        let mut rate = admission.headline();
        if let Admission::Refused { by } = admission {
            self.count(Metric::RateLimitRefusals(by.kind), 1);
            tracing::warn!(
                request_id,
                limit = by.kind.as_str(),
                max = by.limit,
                retry_after = by.reset_secs,
                to = %masked,
                ip = ip_prefix.map(tracing::field::display),
                "{}",
                logging::RATE_LIMIT_EXCEEDED
            );
            return Outcome {
                result: Err(CallError::RateLimited {
                    retry_after: by.reset_secs,
                }),
                rate,
                placed: None,
            };
        }

        let provider = dispatcher.kind();
        let request = CallRequest {
            call_id: crate::ids::new_uuid(),
            to: call.to.e164.clone(),
            name: call.name.clone(),
            variables: call.variables.clone(),
        };
        let placed = dispatcher.place(&request).await;
        let (result, event_kind, error) = match placed {
            Ok(placed) => {
                let mut call_id = Uuid::encode_buffer();
                tracing::info!(
                    request_id,
                    call_id = &*request.call_id.hyphenated().encode_lower(&mut call_id),
                    provider = provider.as_str(),
                    provider_call_id = placed.provider_call_id.as_str(),
                    to = %masked,
                    "{}",
                    logging::CALL_INITIATED
                );
                self.count(Metric::CallsInitiated(provider), 1);
                let started = Started {
                    call_id: request.call_id,
                    provider,
                    provider_call_id: placed.provider_call_id,
                    to: call.to.e164.to_string(),
                };
                (Ok(started), EventType::CallInitiated, None)
            }
            Err(error) => {
                tracing::error!(
                    request_id,
                    call_id = %request.call_id,
                    provider = provider.as_str(),
                    reason = %error,
                    to = %masked,
                    "{}",
                    logging::CALL_FAILED
                );
                let (call_error, class) = match &error {
                    DispatchError::Provider { reason } => (
                        CallError::Provider(reason.clone()),
                        FailureClass::ProviderError,
                    ),
                    DispatchError::Timeout => {
                        (CallError::ProviderTimeout, FailureClass::ProviderTimeout)
                    }
                };
                // A definite refusal placed nothing: the visitor gets the slot back, so an
                // outage does not burn everyone's quota. Not after a timeout, where the call
                // may have gone out.
                if matches!(error, DispatchError::Provider { .. }) {
                    match self.limiter.refund(&checks, now_ms).await {
                        Ok(()) => {
                            if let Some(status) = rate.as_mut() {
                                status.remaining = (status.remaining + 1).min(status.limit);
                            }
                        }
                        Err(store_error) => {
                            tracing::warn!(request_id, error = %store_error, "Limit slot not given back after a provider refusal");
                        }
                    }
                }
                self.count(Metric::CallsFailed(provider, class), 1);
                (
                    Err(call_error),
                    EventType::CallFailed,
                    Some(error.to_string()),
                )
            }
        };

        let placed = Placed {
            kind: event_kind,
            at_ms: self.clock.now_ms(),
            to_masked: masked.to_string(),
            data: CallOutcome {
                call_id: crate::ids::uuid(request.call_id),
                provider: provider.as_str().to_string(),
                provider_call_id: result.as_ref().ok().map(|s| s.provider_call_id.clone()),
                to: call.to.e164.to_string(),
                name: call.name,
                variables: call.variables,
                source: if call.caller.is_authenticated() {
                    CallSource::Api
                } else {
                    CallSource::Web
                },
                dry_run: provider == ProviderKind::DryRun,
                error,
            },
        };
        Outcome {
            result,
            rate,
            placed: Some(placed),
        }
    }
}
