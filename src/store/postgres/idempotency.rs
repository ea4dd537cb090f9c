//! Idempotency records on PostgreSQL (docs/API.md §8): `begin` is one call of
//! `chamada.idempotency_begin` (claim, or read the live record it collided with, under its row
//! lock); `complete` one call of `chamada.idempotency_complete` (the kept answer and the
//! webhook event in one transaction); `release` one conditional `DELETE`.

use async_trait::async_trait;
use tokio_postgres::types::Type;

use super::{get, int, PgStore};
use crate::store::outbox::OUTBOX_RETENTION_MS;
use crate::store::{
    Begin, Envelope, IdempotencyStore, StoreError, StoredResponse, IDEMPOTENCY_LEASE_MS,
    IDEMPOTENCY_TTL_MS,
};

const BEGIN: &str = "select outcome, kept from chamada.idempotency_begin($1, $2, $3, $4)";
const COMPLETE: &str = "select chamada.idempotency_complete($1, $2, $3, $4, $5, $6, $7, $8)";
const RELEASE: &str =
    "delete from chamada.idempotency where key = $1 and fingerprint = $2 and not done";

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn begin(&self, key: &str, fingerprint: &str, now_ms: u64) -> Result<Begin, StoreError> {
        let key = self.hasher.idempotency(key);
        let fp = self.hasher.fingerprint(fingerprint);
        let now = int(now_ms);
        let lease = int(IDEMPOTENCY_LEASE_MS);
        let row = self
            .query_one(
                "idempotency_begin",
                BEGIN,
                &[
                    (&key, Type::TEXT),
                    (&fp, Type::TEXT),
                    (&now, Type::INT8),
                    (&lease, Type::INT8),
                ],
            )
            .await?;
        let outcome: &str = get(&row, "outcome")?;
        match outcome {
            "started" => Ok(Begin::Started),
            "in_progress" => Ok(Begin::InProgress),
            "mismatch" => Ok(Begin::Mismatch),
            "replay" => {
                let kept: Option<&str> = get(&row, "kept")?;
                let response = serde_json::from_str(kept.unwrap_or_default())
                    .map_err(|e| StoreError::corrupt("kept answer unreadable").caused_by(e))?;
                Ok(Begin::Replay(response))
            }
            _ => Err(StoreError::corrupt(
                "idempotency_begin answered an unknown outcome",
            )),
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
        event: Option<&Envelope>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let key = self.hasher.idempotency(key);
        let fp = self.hasher.fingerprint(fingerprint);
        let kept = serde_json::to_string(response)
            .map_err(|e| StoreError::corrupt("answer not serialisable").caused_by(e))?;
        let now = int(now_ms);
        let ttl = int(IDEMPOTENCY_TTL_MS);
        let event_id = event.map(|e| e.id.as_str());
        let event_body = event.map(|e| e.body.as_str());
        let retention = int(OUTBOX_RETENTION_MS);
        self.query(
            "idempotency_complete",
            COMPLETE,
            &[
                (&key, Type::TEXT),
                (&fp, Type::TEXT),
                (&kept, Type::TEXT),
                (&now, Type::INT8),
                (&ttl, Type::INT8),
                (&event_id, Type::TEXT),
                (&event_body, Type::TEXT),
                (&retention, Type::INT8),
            ],
        )
        .await?;
        Ok(())
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let key = self.hasher.idempotency(key);
        let fp = self.hasher.fingerprint(fingerprint);
        self.query(
            "idempotency_release",
            RELEASE,
            &[(&key, Type::TEXT), (&fp, Type::TEXT)],
        )
        .await?;
        Ok(())
    }
}
