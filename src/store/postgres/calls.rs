//! Call records on PostgreSQL (docs/API.md §15): a row per call, the masked number only. A
//! status change is one call of `chamada.call_advance`: a conditional `UPDATE` (a higher rank,
//! a live record) and the event's `INSERT` in one transaction.

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::{get, int, PgStore};
use crate::store::outbox::OUTBOX_RETENTION_MS;
use crate::store::{Advance, CallRecord, CallRecords, Change, Envelope, StoreError};

const CREATE: &str = "insert into chamada.calls as c (call_id, provider, provider_call_id, \
     to_masked, source, status, status_rank, created_at_ms, updated_at_ms, history, \
     duration_secs, end_reason, summary, successful, token_hash, expires_at_ms) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15, $16) \
     on conflict (call_id) do update set provider = excluded.provider, \
       provider_call_id = excluded.provider_call_id, to_masked = excluded.to_masked, \
       source = excluded.source, status = excluded.status, status_rank = excluded.status_rank, \
       created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms, \
       history = excluded.history, duration_secs = excluded.duration_secs, \
       end_reason = excluded.end_reason, summary = excluded.summary, \
       successful = excluded.successful, token_hash = excluded.token_hash, \
       expires_at_ms = excluded.expires_at_ms \
     where c.expires_at_ms <= excluded.created_at_ms";
const GET: &str = "select chamada.call_json(c) as record from chamada.calls c \
     where call_id = $1 and expires_at_ms > $2";
const FIND: &str = "select call_id from chamada.calls \
     where provider_call_id = $1 and expires_at_ms > $2 order by created_at_ms desc limit 1";
const ADVANCE: &str = "select outcome, call_record \
     from chamada.call_advance($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

fn record(json: &str) -> Result<CallRecord, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt("call record unreadable").caused_by(e))
}

#[async_trait]
impl CallRecords for PgStore {
    async fn create(&self, r: CallRecord) -> Result<(), StoreError> {
        let r = &r;
        let history = serde_json::to_string(&r.history)
            .map_err(|e| StoreError::corrupt("history not serialisable").caused_by(e))?;
        let rank = i16::from(r.status.rank());
        let created = int(r.created_at_ms);
        let updated = int(r.updated_at_ms);
        let duration = r.duration_secs.map(int);
        let expires = int(r.expires_at_ms);
        self.query(
            "call_create",
            CREATE,
            &[
                (&r.call_id, Type::TEXT),
                (&r.provider, Type::TEXT),
                (&r.provider_call_id, Type::TEXT),
                (&r.to_masked, Type::TEXT),
                (&r.source, Type::TEXT),
                (&r.status.as_str(), Type::TEXT),
                (&rank, Type::INT2),
                (&created, Type::INT8),
                (&updated, Type::INT8),
                (&history, Type::TEXT),
                (&duration, Type::INT8),
                (&r.end_reason, Type::TEXT),
                (&r.summary, Type::TEXT),
                (&r.successful, Type::TEXT),
                (&r.token_hash, Type::TEXT),
                (&expires, Type::INT8),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get(&self, call_id: &str, now_ms: u64) -> Result<Option<CallRecord>, StoreError> {
        let now = int(now_ms);
        let rows = self
            .query(
                "call_get",
                GET,
                &[(&call_id, Type::TEXT), (&now, Type::INT8)],
            )
            .await?;
        rows.first()
            .map(|row| record(get(row, "record")?))
            .transpose()
    }

    async fn find(
        &self,
        provider_call_id: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let now = int(now_ms);
        let rows = self
            .query(
                "call_find",
                FIND,
                &[(&provider_call_id, Type::TEXT), (&now, Type::INT8)],
            )
            .await?;
        rows.first().map(|row| get(row, "call_id")).transpose()
    }

    async fn advance(
        &self,
        call_id: &str,
        change: &Change,
        event: Option<&Envelope>,
    ) -> Result<Advance, StoreError> {
        let rank = i16::from(change.status.rank());
        let at = int(change.at_ms);
        let duration = change.duration_secs.map(int);
        let event_id = event.map(|e| e.id.as_str());
        let event_body = event.map(|e| e.body.as_str());
        let retention = int(OUTBOX_RETENTION_MS);
        let row = self
            .query_one(
                "call_advance",
                ADVANCE,
                &[
                    (&call_id, Type::TEXT),
                    (&change.status.as_str(), Type::TEXT),
                    (&rank, Type::INT2),
                    (&at, Type::INT8),
                    (&duration, Type::INT8),
                    (&change.end_reason, Type::TEXT),
                    (&change.summary, Type::TEXT),
                    (&change.successful, Type::TEXT),
                    (&event_id, Type::TEXT),
                    (&event_body, Type::TEXT),
                    (&retention, Type::INT8),
                ],
            )
            .await?;
        let outcome: &str = get(&row, "outcome")?;
        match outcome {
            "applied" => {
                let json: Option<&str> = get(&row, "call_record")?;
                let json = json.ok_or_else(|| StoreError::corrupt("applied without a record"))?;
                Ok(Advance::Applied(Box::new(record(json)?)))
            }
            "unchanged" => Ok(Advance::Unchanged),
            "unknown" => Ok(Advance::Unknown),
            _ => Err(StoreError::corrupt(
                "call_advance answered an unknown outcome",
            )),
        }
    }
}
