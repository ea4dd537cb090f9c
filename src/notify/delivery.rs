//! Delivery after the answer (docs/API.md §9): one window of an outbox event at a time
//! ([`Deliverer::deliver`]), on a [`Schedule`] over hours, and the sweep that finds the events
//! due ([`Deliverer::sweep`]).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::{Delivery, Notifier};
use crate::clock::Clock;
use crate::logging;
use crate::metrics::{Metric, Metrics};
use crate::store::{Envelope, Outbox, Settle, StoreError};

/// A claim outlasts the longest window by this much (clock skew between instances).
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The longest `Retry-After` a receiver can ask for before the next window.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);

/// Events a sweep reads at a time.
const SWEEP_BATCH: usize = 25;

/// When windows start: the first at once, then after each failed window a wait drawn
/// uniformly between the previous step and the next one (full jitter within the step), never
/// shorter than the receiver's `Retry-After` (up to [`MAX_RETRY_AFTER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    steps: Vec<Duration>,
}

impl Default for Schedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h: seven windows over about 18 hours.
    fn default() -> Self {
        Schedule::new(
            [5, 300, 1800, 7200, 18_000, 36_000]
                .map(Duration::from_secs)
                .to_vec(),
        )
    }
}

impl Schedule {
    /// The waits before the second, third, … windows (each at least the one before).
    pub fn new(steps: Vec<Duration>) -> Self {
        Schedule { steps }
    }

    /// How many windows an event gets.
    pub fn windows(&self) -> u32 {
        self.steps.len() as u32 + 1
    }

    /// The wait before the next window after `windows` windows failed; `None` after the last.
    pub fn after(&self, windows: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let index = (windows as usize).checked_sub(1)?;
        let high = *self.steps.get(index)?;
        let low = index
            .checked_sub(1)
            .and_then(|i| self.steps.get(i))
            .copied()
            .unwrap_or_default()
            .min(high);
        let drawn = rand::rng().random_range(low.as_millis() as u64..=high.as_millis() as u64);
        let floor = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
        Some(Duration::from_millis(drawn).max(floor))
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub delivered: u32,
    /// Windows that failed with a later window scheduled.
    pub retrying: u32,
    /// Events given up on (refused, or their last window failed).
    pub failed: u32,
    /// Due events another worker claimed first.
    pub skipped: u32,
    /// The sweep stopped before its time budget ran out with events still due.
    pub stopped_early: bool,
}

/// Runs delivery windows of the outbox's events.
#[derive(Clone)]
pub struct Deliverer {
    outbox: Arc<dyn Outbox>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    schedule: Schedule,
}

impl Deliverer {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Deliverer {
            outbox,
            notifier,
            clock,
            metrics,
            schedule: Schedule::default(),
        }
    }

    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.outbox
    }

    /// Now, on the deliverer's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn lease_ms(&self) -> u64 {
        (self.notifier.window_bound() + LEASE_MARGIN).as_millis() as u64
    }

    /// Runs the next window of event `id` if it is due and nobody else is running one.
    /// `None`: not due, not there, or claimed by another worker.
    pub async fn deliver(&self, id: &str) -> Result<Option<Settle>, StoreError> {
        let now = self.clock.now_ms();
        let Some(item) = self.outbox.claim(id, now, self.lease_ms()).await? else {
            return Ok(None);
        };
        let delivery = self.notifier.deliver(&item.envelope, id).await;
        let ended = self.clock.now_ms();
        let settle = match &delivery {
            Delivery::Delivered { .. } => Settle::Delivered,
            Delivery::Failed { last, .. } if delivery.refused() => Settle::Failed {
                error: format!("refused: {last}"),
            },
            Delivery::Failed {
                last, retry_after, ..
            } => match self.schedule.after(item.attempts, *retry_after) {
                Some(wait) => Settle::RetryAt {
                    due_at_ms: ended.saturating_add(wait.as_millis() as u64),
                    error: last.to_string(),
                },
                None => Settle::Failed {
                    error: format!("{last} in the last window"),
                },
            },
        };
        if !self
            .outbox
            .settle(id, item.attempts, &settle, ended)
            .await?
        {
            // Our lease ran out and another window began: its outcome is the one kept.
            tracing::warn!(
                event_id = id,
                window = item.attempts,
                "Webhook window outlived its lease"
            );
            return Ok(None);
        }
        match &settle {
            Settle::Delivered => {
                tracing::info!(event_id = id, window = item.attempts, "Webhook delivered");
            }
            Settle::RetryAt { due_at_ms, error } => tracing::warn!(
                event_id = id,
                window = item.attempts,
                last = %error,
                retry_in_ms = due_at_ms.saturating_sub(ended),
                receiver = self.notifier.receiver(),
                "Webhook window failed; next window scheduled"
            ),
            Settle::Failed { error } => {
                self.metrics
                    .count(Metric::WebhookDeliveriesFailed, 1, ended);
                tracing::error!(
                    event_id = id,
                    window = item.attempts,
                    last = %error,
                    receiver = self.notifier.receiver(),
                    "{}",
                    logging::WEBHOOK_FAILED
                );
            }
        }
        Ok(Some(settle))
    }

    /// One window for an event the outbox could not record (the store failed): delivered now
    /// or never, counted as failed when it is not.
    pub async fn deliver_unrecorded(&self, event: &Envelope) {
        let delivery = self.notifier.deliver(event, &event.id).await;
        if !matches!(delivery, Delivery::Delivered { .. }) {
            self.metrics
                .count(Metric::WebhookDeliveriesFailed, 1, self.clock.now_ms());
            tracing::error!(
                event_id = %event.id,
                receiver = self.notifier.receiver(),
                "{}",
                logging::WEBHOOK_FAILED
            );
        }
    }

    /// Runs the windows of every due event, starting no window that could outlast `budget`
    /// (real time, from now).
    pub async fn sweep(&self, budget: Duration) -> Result<SweepReport, StoreError> {
        let started = Instant::now();
        let mut report = SweepReport::default();
        loop {
            let due = self.outbox.due(self.clock.now_ms(), SWEEP_BATCH).await?;
            if due.is_empty() {
                return Ok(report);
            }
            let mut progressed = false;
            for item in due {
                if started.elapsed() + self.notifier.window_bound() > budget {
                    report.stopped_early = true;
                    return Ok(report);
                }
                match self.deliver(&item.envelope.id).await? {
                    Some(Settle::Delivered) => report.delivered += 1,
                    Some(Settle::RetryAt { .. }) => report.retrying += 1,
                    Some(Settle::Failed { .. }) => report.failed += 1,
                    None => report.skipped += 1,
                }
                progressed = true;
            }
            if !progressed {
                return Ok(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_steps_with_jitter_within_each_step() {
        let schedule = Schedule::default();
        assert_eq!(schedule.windows(), 7);
        let secs = |d: Duration| d.as_secs_f64();
        for _ in 0..200 {
            assert!(secs(schedule.after(1, None).unwrap()) <= 5.0);
            let second = secs(schedule.after(2, None).unwrap());
            assert!((5.0..=300.0).contains(&second), "{second}");
            let last = secs(schedule.after(6, None).unwrap());
            assert!((18_000.0..=36_000.0).contains(&last), "{last}");
        }
        assert_eq!(schedule.after(7, None), None, "no window after the seventh");
        assert_eq!(schedule.after(0, None), None);
    }

    #[test]
    fn a_retry_after_lengthens_the_wait_up_to_its_bound() {
        let schedule = Schedule::default();
        let hour = Duration::from_secs(3600);
        assert!(schedule.after(1, Some(hour)).unwrap() >= hour);
        assert_eq!(
            schedule.after(1, Some(Duration::from_secs(u64::MAX))),
            Some(MAX_RETRY_AFTER)
        );
    }
}
