//! The rate limiter on PostgreSQL (docs/API.md §5): one call of `chamada.admit` per request,
//! which locks the request's limit rows in key order and decides every check under the locks,
//! as the memory store does. Exact under contention (admissions of one key wait for each
//! other's row lock), all or nothing, one round trip; `RateLimit-*` figures exact for every
//! limit.

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::{get, int, PgStore};
use crate::store::{
    secs_until, Admission, LimitCheck, LimitStatus, RateLimiter, StoreError, Window,
};

const ADMIT: &str = "select idx, admitted, count, at_ms from chamada.admit($1, $2, $3, $4)";
const REFUND: &str = "select chamada.refund($1, $2, $3)";

impl PgStore {
    /// The stored keys, maxima and windows (0: a UTC day) of `checks`.
    fn limit_arrays(&self, checks: &[LimitCheck]) -> (Vec<String>, Vec<i32>, Vec<i64>) {
        let keys = checks.iter().map(|c| self.hasher.limit(&c.key)).collect();
        let max = checks
            .iter()
            .map(|c| i32::try_from(c.max).unwrap_or(i32::MAX))
            .collect();
        let windows = checks
            .iter()
            .map(|c| match c.window {
                // A rolling window of 0 ms would count nothing: at least 1 ms.
                Window::Rolling { ms } => int(ms.max(1)),
                Window::UtcDay => 0,
            })
            .collect();
        (keys, max, windows)
    }
}

#[async_trait]
impl RateLimiter for PgStore {
    async fn admit(&self, checks: &[LimitCheck], now_ms: u64) -> Result<Admission, StoreError> {
        if checks.is_empty() {
            return Ok(Admission::Admitted(Vec::new()));
        }
        let (keys, max, windows) = self.limit_arrays(checks);
        let now = int(now_ms);
        let rows = self
            .query(
                "admit",
                ADMIT,
                &[
                    (&keys, Type::TEXT_ARRAY),
                    (&max, Type::INT4_ARRAY),
                    (&windows, Type::INT8_ARRAY),
                    (&now, Type::INT8),
                ],
            )
            .await?;
        if rows.len() != checks.len() {
            return Err(StoreError::corrupt(
                "admit answered a row count unlike the checks",
            ));
        }
        let mut admitted = None;
        let mut statuses = Vec::with_capacity(checks.len());
        let mut refused: Option<LimitStatus> = None;
        for (i, (row, check)) in rows.iter().zip(checks).enumerate() {
            let idx: i32 = get(row, "idx")?;
            if usize::try_from(idx).ok() != Some(i + 1) {
                return Err(StoreError::corrupt("admit answered rows out of order"));
            }
            let this: bool = get(row, "admitted")?;
            if *admitted.get_or_insert(this) != this {
                return Err(StoreError::corrupt("admit answered a mixed decision"));
            }
            let count = u32::try_from(get::<i32>(row, "count")?)
                .map_err(|_| StoreError::corrupt("negative count"))?;
            let at_ms = super::unsigned(row, "at_ms")?;
            if this {
                statuses.push(LimitStatus {
                    kind: check.kind,
                    limit: check.max,
                    remaining: check.max.saturating_sub(count),
                    reset_secs: secs_until(at_ms, now_ms),
                });
            } else if count >= check.max {
                let status = LimitStatus {
                    kind: check.kind,
                    limit: check.max,
                    remaining: 0,
                    reset_secs: secs_until(at_ms, now_ms).max(1),
                };
                // The limit with the longest wait; the first of equals.
                if refused.is_none_or(|r| status.reset_secs > r.reset_secs) {
                    refused = Some(status);
                }
            }
        }
        match (admitted, refused) {
            (Some(true), _) => Ok(Admission::Admitted(statuses)),
            (_, Some(by)) => Ok(Admission::Refused { by }),
            _ => Err(StoreError::corrupt("admit refused without a full limit")),
        }
    }

    async fn refund(&self, checks: &[LimitCheck], admitted_at_ms: u64) -> Result<(), StoreError> {
        if checks.is_empty() {
            return Ok(());
        }
        let (keys, _, windows) = self.limit_arrays(checks);
        let at = int(admitted_at_ms);
        self.query(
            "refund",
            REFUND,
            &[
                (&keys, Type::TEXT_ARRAY),
                (&windows, Type::INT8_ARRAY),
                (&at, Type::INT8),
            ],
        )
        .await?;
        Ok(())
    }
}
