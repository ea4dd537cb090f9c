//! One limit item: what an attempt writes to it, and what an item read back means (a
//! refusal, a status, or the write to try next).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{epoch_secs, n, number, number_list, Item};
use super::DynamoStore;
use crate::store::{secs_until, LimitCheck, LimitStatus, StoreError, Window, DAY_MS};

/// What one attempt writes for one check.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Append (rolling) or increment (day) under the `< max` condition.
    Append,
    /// Replace a list full of expired entries by its live entries plus this admission, if
    /// the item is still at `version`.
    Replace { version: u64, live: Vec<u64> },
}

/// A condition-failed item, read: why it refused, or what to write instead.
pub(super) enum Verdict {
    Refuse(LimitStatus),
    Retry(Step),
}

/// The parts of one conditional update, for `UpdateItem` or a transaction's `Update`.
pub(super) struct Write {
    pub(super) pk: String,
    pub(super) update: &'static str,
    pub(super) condition: &'static str,
    pub(super) values: HashMap<String, AttributeValue>,
}

fn end_of_day(now_ms: u64) -> u64 {
    (now_ms / DAY_MS + 1) * DAY_MS
}

fn window_ms(check: &LimitCheck) -> Option<u64> {
    match check.window {
        Window::Rolling { ms } => Some(ms),
        Window::UtcDay => None,
    }
}

impl DynamoStore {
    pub(super) fn write(&self, check: &LimitCheck, step: &Step, now_ms: u64) -> Write {
        let pk = self.limit_pk(check);
        let mut values = HashMap::new();
        values.insert(":one".to_string(), n(1));
        match (check.window, step) {
            (Window::Rolling { ms }, Step::Append) => {
                values.insert(":max".into(), n(check.max.into()));
                values.insert(":empty".into(), AttributeValue::L(Vec::new()));
                values.insert(":mine".into(), AttributeValue::L(vec![n(now_ms)]));
                values.insert(":exp".into(), n(epoch_secs(now_ms + ms)));
                Write {
                    pk,
                    update: "SET ts = list_append(if_not_exists(ts, :empty), :mine), expires_at = :exp ADD v :one",
                    condition: "attribute_not_exists(ts) OR size(ts) < :max",
                    values,
                }
            }
            (Window::Rolling { ms }, Step::Replace { version, live }) => {
                let mut list: Vec<AttributeValue> = live.iter().map(|&t| n(t)).collect();
                list.push(n(now_ms));
                let newest = live.iter().copied().max().unwrap_or(now_ms).max(now_ms);
                values.insert(":list".into(), AttributeValue::L(list));
                values.insert(":v".into(), n(*version));
                values.insert(":exp".into(), n(epoch_secs(newest + ms)));
                Write {
                    pk,
                    update: "SET ts = :list, expires_at = :exp ADD v :one",
                    condition: "v = :v",
                    values,
                }
            }
            (Window::UtcDay, _) => {
                values.insert(":max".into(), n(check.max.into()));
                values.insert(":exp".into(), n(epoch_secs(end_of_day(now_ms))));
                Write {
                    pk,
                    update: "ADD n :one SET expires_at = :exp",
                    condition: "attribute_not_exists(n) OR n < :max",
                    values,
                }
            }
        }
    }

    /// Reads the item a failed condition returned (`None`: there is no item any more).
    pub(super) fn verdict(
        check: &LimitCheck,
        old: Option<&Item>,
        now_ms: u64,
    ) -> Result<Verdict, StoreError> {
        let Some(old) = old else {
            // Deleted (TTL) since the condition was evaluated: start afresh.
            return Ok(Verdict::Retry(Step::Append));
        };
        match window_ms(check) {
            Some(window) => {
                let times = number_list(old, "ts")?;
                let version = number(old, "v")?;
                let mut live: Vec<u64> =
                    times.into_iter().filter(|&t| t + window > now_ms).collect();
                live.sort_unstable();
                let max = check.max as usize;
                if live.len() >= max {
                    let free_at = if max > 0 {
                        live[live.len() - max] + window
                    } else {
                        now_ms
                    };
                    Ok(Verdict::Refuse(refused(check, free_at, now_ms)))
                } else {
                    Ok(Verdict::Retry(Step::Replace { version, live }))
                }
            }
            None => {
                let count = number(old, "n")?;
                if count >= u64::from(check.max) {
                    Ok(Verdict::Refuse(refused(check, end_of_day(now_ms), now_ms)))
                } else {
                    Err(StoreError::corrupt(
                        "a day counter below its limit failed its condition",
                    ))
                }
            }
        }
    }

    /// The status after an admission whose resulting item is known.
    pub(super) fn status_from_item(
        check: &LimitCheck,
        item: &Item,
        now_ms: u64,
    ) -> Result<LimitStatus, StoreError> {
        match window_ms(check) {
            Some(window) => {
                let live: Vec<u64> = number_list(item, "ts")?
                    .into_iter()
                    .filter(|&t| t + window > now_ms)
                    .collect();
                Ok(rolling_status(check, &live, window, now_ms))
            }
            None => Ok(day_status(check, number(item, "n")?, now_ms)),
        }
    }

    /// The status after an admission written by `step` in a transaction, which returns no
    /// item: exact after a replace, this admission alone after an append.
    pub(super) fn status_after(check: &LimitCheck, step: &Step, now_ms: u64) -> LimitStatus {
        match (window_ms(check), step) {
            (Some(window), Step::Replace { live, .. }) => {
                let mut all = live.clone();
                all.push(now_ms);
                rolling_status(check, &all, window, now_ms)
            }
            (Some(window), Step::Append) => rolling_status(check, &[now_ms], window, now_ms),
            (None, _) => day_status(check, 1, now_ms),
        }
    }
}

fn refused(check: &LimitCheck, free_at: u64, now_ms: u64) -> LimitStatus {
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: 0,
        reset_secs: secs_until(free_at, now_ms).max(1),
    }
}

fn rolling_status(check: &LimitCheck, live: &[u64], window: u64, now_ms: u64) -> LimitStatus {
    let oldest = live.iter().copied().min().unwrap_or(now_ms);
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: check.max.saturating_sub(live.len() as u32),
        reset_secs: secs_until(oldest + window, now_ms),
    }
}

fn day_status(check: &LimitCheck, count: u64, now_ms: u64) -> LimitStatus {
    LimitStatus {
        kind: check.kind,
        limit: check.max,
        remaining: check
            .max
            .saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)),
        reset_secs: secs_until(end_of_day(now_ms), now_ms),
    }
}
