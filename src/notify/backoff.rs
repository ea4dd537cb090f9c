//! The retry schedule of a delivery: capped exponential backoff with full jitter
//! ([`Backoff`]), a receiver's `Retry-After` ([`parse_retry_after`]), and the rule that no pause
//! crosses the delivery's deadline ([`pause_within`]).

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Capped exponential backoff with full jitter: the pause before retry `n` (1-based) is drawn
/// uniformly from `[0, min(cap, base × 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// The longest pause before retry `n` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A pause before retry `n`, drawn with full jitter.
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_micros() as u64;
        Duration::from_micros(rand::rng().random_range(0..=ceiling))
    }
}

/// The pause before the next attempt, if it ends before the budget does (`left` is what remains
/// of it). Compares durations only: a pause from outside (a receiver's `Retry-After` of any
/// size) is never added to an instant, so no value can overflow.
pub fn pause_within(wanted: Duration, left: Duration) -> Option<Duration> {
    (wanted < left).then_some(wanted)
}

/// `Retry-After` as delay-seconds or an HTTP date; `None` when unreadable (the backoff applies).
/// Any size is read (`u64::MAX` seconds included); [`pause_within`] bounds what is waited.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let ceilings: Vec<u64> = (1..=6).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 500, 500, 500]);
        assert_eq!(b.ceiling(1000), b.cap, "huge retry counts never overflow");
    }

    #[test]
    fn jittered_pauses_stay_within_the_ceiling_and_vary() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let pauses: Vec<Duration> = (0..200).map(|_| b.pause(3)).collect();
        assert!(pauses.iter().all(|p| *p <= Duration::from_millis(400)));
        let distinct: std::collections::BTreeSet<_> = pauses.iter().collect();
        assert!(distinct.len() > 10, "full jitter draws different pauses");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    proptest! {
        /// Whatever a receiver sends as `Retry-After` (numbers of any size, dates in the past or
        /// far future, garbage), reading it never panics and the pause never outlasts what is
        /// left of the budget.
        #[test]
        fn any_retry_after_is_read_without_panic_and_bounded_by_the_budget(
            value in prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                "[0-9]{1,40}",
                (0u64..=253_402_300_799).prop_map(|s| httpdate::fmt_http_date(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(s))),
                "\\PC{0,60}",
            ],
            now_secs in 0u64..=4_000_000_000,
            left_ms in 0u64..=400_000,
        ) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
            let left = Duration::from_millis(left_ms);
            if let Some(wanted) = parse_retry_after(&value, now) {
                if let Some(pause) = pause_within(wanted, left) {
                    prop_assert!(pause < left);
                    prop_assert_eq!(pause, wanted);
                }
            }
        }
    }

    #[test]
    fn the_largest_retry_after_ends_the_delivery_instead_of_overflowing() {
        let huge = parse_retry_after("18446744073709551615", SystemTime::now()).unwrap();
        assert_eq!(huge, Duration::from_secs(u64::MAX));
        assert_eq!(pause_within(huge, Duration::from_secs(45)), None);
        assert_eq!(
            pause_within(Duration::from_secs(2), Duration::from_secs(45)),
            Some(Duration::from_secs(2))
        );
    }
}
