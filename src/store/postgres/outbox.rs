//! The outbox on PostgreSQL (docs/API.md §9): one statement per call. A claim is a conditional
//! `UPDATE` (pending, due, unleased at `now`), so of any number of workers exactly one starts
//! a window; `due` is a call of `chamada.outbox_due`, which also runs the cleanup now and then.

use async_trait::async_trait;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::{get, int, unsigned, PgStore};
use crate::store::outbox::OUTBOX_RETENTION_MS;
use crate::store::{Envelope, Outbox, OutboxItem, OutboxState, Settle, StoreError};

const COLUMNS: &str =
    "id, body, state, attempts, due_at_ms, lease_until_ms, created_at_ms, last_error";

const ENQUEUE: &str = "select chamada.outbox_enqueue($1, $2, $3, $4)";

fn item(row: &Row) -> Result<OutboxItem, StoreError> {
    let state: &str = get(row, "state")?;
    Ok(OutboxItem {
        envelope: Envelope {
            id: get(row, "id")?,
            body: get(row, "body")?,
        },
        state: OutboxState::parse(state)
            .ok_or_else(|| StoreError::corrupt("outbox state unknown"))?,
        attempts: u32::try_from(get::<i32>(row, "attempts")?)
            .map_err(|_| StoreError::corrupt("negative attempts"))?,
        due_at_ms: unsigned(row, "due_at_ms")?,
        lease_until_ms: unsigned(row, "lease_until_ms")?,
        created_at_ms: unsigned(row, "created_at_ms")?,
        last_error: get(row, "last_error")?,
    })
}

fn items(rows: &[Row]) -> Result<Vec<OutboxItem>, StoreError> {
    rows.iter().map(item).collect()
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl Outbox for PgStore {
    async fn enqueue(&self, envelope: &Envelope, now_ms: u64) -> Result<(), StoreError> {
        let now = int(now_ms);
        let retention = int(OUTBOX_RETENTION_MS);
        self.query(
            "outbox_enqueue",
            ENQUEUE,
            &[
                (&envelope.id, Type::TEXT),
                (&envelope.body, Type::TEXT),
                (&now, Type::INT8),
                (&retention, Type::INT8),
            ],
        )
        .await?;
        Ok(())
    }

    async fn due(&self, now_ms: u64, max: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("select {COLUMNS} from chamada.outbox_due($1, $2::int4)");
        let now = int(now_ms);
        let max = limit(max).min(i64::from(i32::MAX));
        let rows = self
            .query(
                "outbox_due",
                &sql,
                &[(&now, Type::INT8), (&max, Type::INT8)],
            )
            .await?;
        items(&rows)
    }

    async fn claim(
        &self,
        id: &str,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!(
            "update chamada.outbox set attempts = attempts + 1, lease_until_ms = $2 + $3 \
             where id = $1 and state = 'pending' and due_at_ms <= $2 and lease_until_ms <= $2 \
             returning {COLUMNS}"
        );
        let now = int(now_ms);
        let lease = int(lease_ms);
        let rows = self
            .query(
                "outbox_claim",
                &sql,
                &[(&id, Type::TEXT), (&now, Type::INT8), (&lease, Type::INT8)],
            )
            .await?;
        rows.first().map(item).transpose()
    }

    async fn settle(
        &self,
        id: &str,
        attempt: u32,
        result: &Settle,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        const SETTLE: &str = "update chamada.outbox \
             set lease_until_ms = 0, state = $3, due_at_ms = coalesce($4, due_at_ms), \
                 last_error = $5 \
             where id = $1 and state = 'pending' and attempts = $2 returning id";
        let (state, due, error): (&str, Option<i64>, Option<&str>) = match result {
            Settle::Delivered => ("delivered", None, None),
            Settle::RetryAt { due_at_ms, error } => {
                ("pending", Some(int(*due_at_ms)), Some(error.as_str()))
            }
            Settle::Failed { error } => ("failed", None, Some(error.as_str())),
        };
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let rows = self
            .query(
                "outbox_settle",
                SETTLE,
                &[
                    (&id, Type::TEXT),
                    (&attempt, Type::INT4),
                    (&state, Type::TEXT),
                    (&due, Type::INT8),
                    (&error, Type::TEXT),
                ],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn failed(&self, max: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "select {COLUMNS} from chamada.outbox where state = 'failed' \
             order by created_at_ms desc limit $1"
        );
        let max = limit(max);
        let rows = self
            .query("outbox_failed", &sql, &[(&max, Type::INT8)])
            .await?;
        items(&rows)
    }

    async fn redeliver(&self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        const REDELIVER: &str = "update chamada.outbox \
             set state = 'pending', attempts = 0, due_at_ms = $2, lease_until_ms = 0 \
             where id = $1 and state <> 'pending' returning id";
        let now = int(now_ms);
        let rows = self
            .query(
                "outbox_redeliver",
                REDELIVER,
                &[(&id, Type::TEXT), (&now, Type::INT8)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn get(&self, id: &str) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!("select {COLUMNS} from chamada.outbox where id = $1");
        let rows = self.query("outbox_get", &sql, &[(&id, Type::TEXT)]).await?;
        rows.first().map(item).transpose()
    }
}
