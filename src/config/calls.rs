//! The call records section (docs/API.md §15): how long records are kept, how often the page
//! may read one, the ElevenLabs webhook secret, whether transcripts go to Make.

use secrecy::SecretString;

use super::reader::Reader;
use crate::store::calls::DEFAULT_RECORD_DAYS;

#[derive(Debug, Clone)]
pub struct CallSettings {
    /// `CALL_RECORD_DAYS`.
    pub record_days: u64,
    /// `MAX_STATUS_READS_PER_MINUTE`, per client address.
    pub status_reads_per_minute: u32,
    /// `ELEVENLABS_WEBHOOK_SECRET`: without it every ElevenLabs webhook is refused.
    pub elevenlabs_webhook_secret: Option<SecretString>,
    /// `FORWARD_TRANSCRIPTS`: personal data, off by default.
    pub forward_transcripts: bool,
}

pub(super) fn read(r: &mut Reader) -> CallSettings {
    CallSettings {
        record_days: r
            .number("CALL_RECORD_DAYS", 1, 366)
            .unwrap_or(DEFAULT_RECORD_DAYS),
        status_reads_per_minute: r
            .number("MAX_STATUS_READS_PER_MINUTE", 1, 10_000)
            .unwrap_or(60) as u32,
        elevenlabs_webhook_secret: r.secret("ELEVENLABS_WEBHOOK_SECRET"),
        forward_transcripts: r.boolean("FORWARD_TRANSCRIPTS").unwrap_or(false),
    }
}
