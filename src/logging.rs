//! Logs (docs/API.md §11): one JSON object per line on stdout, or `LOG_FORMAT=pretty` for humans.
//!
//! The operators' searches depend on the exact words of these messages; keep them.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// `LOG_FORMAT`: one JSON object per line (default), or human-readable lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

pub const INVALID_API_KEY: &str = "Invalid API key";
pub const RATE_LIMIT_EXCEEDED: &str = "Rate limit exceeded";
pub const CORS_VIOLATION: &str = "CORS violation";
pub const ENV_MISSING: &str = "Environment variable missing";
pub const CALL_INITIATED: &str = "Call initiated";
pub const CALL_FAILED: &str = "Call failed";
pub const WEBHOOK_FAILED: &str = "Webhook delivery failed";
pub const BOT_CHECK_FAILED: &str = "Bot check failed";
pub const BOT_CHECK_UNAVAILABLE: &str = "Bot check unavailable";

/// Installs the global subscriber once; later calls (tests, warm Lambda starts) are no-ops.
/// `RUST_LOG` filters as usual (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match format {
        LogFormat::Json => json_subscriber(filter, std::io::stdout).try_init(),
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stdout)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .compact()
            .finish()
            .try_init(),
    };
}

/// The production JSON lines (docs/API.md §11), filtered by `filter`, each line handed to
/// `writer` whole, in one `write_all`: `logging::init` writes them to stdout; the benchmarks and
/// `examples/request_cost` to a sink, the tests to a buffer.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(filter)
        .with(JsonLines { writer })
}

/// Writes each event as the line `tracing-subscriber`'s JSON formatter wrote (`fmt().json()`,
/// flattened event, no span; the unit tests below pin it byte for byte and compare the two), at
/// a quarter of its instructions and with no allocation (docs/PERFORMANCE.md, "The cost of a
/// logged request (issue 17)"):
///
/// `{"timestamp":"…","level":"INFO","message":"…",<fields in their order>,"target":"…"}`
///
/// The line is built straight into one reused byte buffer: keys and values are written by
/// `serde_json` (its escaping, integers and floats, `null` for a non-finite float), and
/// `Display`/`Debug` fields are escaped as they are formatted, with no `String` or
/// `serde_json::Value` in between. Span fields are not written, as before.
struct JsonLines<W> {
    writer: W,
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with(|line| {
            // A field whose `Display` logs in turn finds the buffer taken: it gets its own.
            let mut own = Vec::new();
            let mut taken = line.try_borrow_mut();
            let line = match taken.as_deref_mut() {
                Ok(line) => line,
                Err(_) => &mut own,
            };
            line.clear();
            write_line(line, event);
            let mut writer = self.writer.make_writer_for(event.metadata());
            if let Err(e) = writer.write_all(line) {
                eprintln!("[chamada] a log line could not be written: {e}");
            }
        });
    }
}

/// One event as one JSON line (with its `\n`) appended to `line`.
fn write_line(line: &mut Vec<u8>, event: &Event<'_>) {
    let metadata = event.metadata();
    line.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(line);
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(metadata.level().as_str().as_bytes()); // "INFO", "WARN", …
    line.push(b'"');
    event.record(&mut Fields(line));
    line.extend_from_slice(b",\"target\":");
    json(line, metadata.target());
    line.extend_from_slice(b"}\n");
}

/// `2026-11-28T12:17:03.123456Z`: RFC 3339, UTC, microseconds, as `tracing-subscriber`'s
/// `SystemTime` timer writes it. humantime (already a dependency) writes the same text digit by
/// digit, where that timer pads seven numbers through `core::fmt` (~2.8k instructions a line);
/// it covers 1970 to 9999 and the timer the rest.
fn timestamp(line: &mut Vec<u8>) {
    let now = SystemTime::now();
    if now < UNIX_EPOCH || write!(line, "{}", humantime::format_rfc3339_micros(now)).is_err() {
        let mut text = String::new();
        let _ = FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut Writer::new(&mut text),
        );
        line.extend_from_slice(text.as_bytes());
    }
}

/// `value` as JSON, appended to `line`. Writing into a `Vec` cannot fail. (A `Display` or
/// `Debug` that returns an error of its own is a bug that serde_json's `collect_str` panics on,
/// as it did under `tracing-subscriber`'s formatter.)
fn json<T: Serialize + ?Sized>(line: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(line, value);
}

/// The event's fields, each as `,"name":value` in the order of the event's field set (the
/// message, when there is one, first).
struct Fields<'a>(&'a mut Vec<u8>);

impl Fields<'_> {
    fn entry<T: Serialize + ?Sized>(&mut self, field: &Field, value: &T) {
        self.0.push(b',');
        json(self.0, field.name());
        self.0.push(b':');
        json(self.0, value);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, &value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, &value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, &value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, &value);
    }
    /// The message, `%` (`Display`) and `?` (`Debug`) fields, and everything else (`Visit`'s
    /// defaults: 128-bit integers, bytes, errors): one JSON string.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, &Text(value));
    }
}

/// A `Debug` value serialised as a JSON string: serde_json's `collect_str` escapes the text
/// piece by piece as it is formatted.
struct Text<'a>(&'a dyn fmt::Debug);

impl Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A header value an attacker controls, made safe to log: at most 100 characters.
pub fn untrusted(value: &[u8]) -> String {
    const MAX_CHARS: usize = 100;
    match std::str::from_utf8(value) {
        // Most values: valid and short enough to keep whole (a character is at least a byte).
        Ok(text) if text.len() <= MAX_CHARS => text.to_owned(),
        _ => String::from_utf8_lossy(value)
            .chars()
            .take(MAX_CHARS)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    #[test]
    fn untrusted_values_are_cut_at_100_characters_and_made_valid() {
        assert_eq!(untrusted(b"/api/start_call"), "/api/start_call");
        let long = "é".repeat(150);
        assert_eq!(untrusted(long.as_bytes()), "é".repeat(100));
        assert_eq!(untrusted("a".repeat(101).as_bytes()), "a".repeat(100));
        assert_eq!(untrusted(b"/x\xff\xfe"), "/x\u{FFFD}\u{FFFD}");
        assert_eq!(untrusted(&[b'a'; 100]), "a".repeat(100));
    }

    /// Every `write` call the subscriber makes, kept apart: a line must arrive in one piece.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Writes {
        type Writer = Writes;
        fn make_writer(&'w self) -> Writes {
            self.clone()
        }
    }

    /// The lines written while `events` runs under the production JSON subscriber at `info`.
    fn lines_of(events: fn()) -> Vec<String> {
        let writes = Writes::default();
        let subscriber = json_subscriber(EnvFilter::new("info"), writes.clone());
        tracing::subscriber::with_default(subscriber, events);
        writes.lines()
    }

    /// The same under `tracing-subscriber`'s own JSON formatter, as production had it before
    /// issue 17: the oracle of the lines above.
    fn tracing_subscriber_lines_of(events: fn()) -> Vec<String> {
        let writes = Writes::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .with_writer(writes.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        writes.lines()
    }

    impl Writes {
        fn lines(&self) -> Vec<String> {
            let writes = self.0.lock().unwrap();
            writes
                .iter()
                .map(|w| {
                    let line = String::from_utf8(w.clone()).expect("UTF-8");
                    assert!(line.ends_with('\n'), "one write per whole line: {line:?}");
                    assert_eq!(line.matches('\n').count(), 1, "one line a write: {line:?}");
                    line.trim_end_matches('\n').to_string()
                })
                .collect()
        }
    }

    /// `2026-11-28T12:17:03.123456Z`: RFC 3339, UTC, microseconds.
    fn is_timestamp(t: &str) -> bool {
        let b = t.as_bytes();
        let digit = |i: usize| b[i].is_ascii_digit();
        b.len() == 27
            && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
                .iter()
                .all(|&i| digit(i))
            && (20..26).all(digit)
            && (b[4], b[7], b[10], b[13], b[16], b[19], b[26])
                == (b'-', b'-', b'T', b':', b':', b'.', b'Z')
    }

    /// The line with its timestamp's value replaced by `T`, and the parsed object.
    fn parsed(line: &str) -> (String, serde_json::Map<String, Value>) {
        let value: Value = serde_json::from_str(line).expect("one JSON object a line");
        let object = value.as_object().expect("an object").clone();
        let timestamp = object["timestamp"].as_str().expect("a timestamp");
        assert!(is_timestamp(timestamp), "{timestamp}");
        (line.replacen(timestamp, "T", 1), object)
    }

    /// The exact lines of docs/API.md §11, recorded from `tracing-subscriber`'s JSON formatter
    /// (flattened event, no span): key order, value types, escaping and number forms. Whatever
    /// writes the lines must keep them byte for byte.
    #[test]
    fn json_lines_keep_their_keys_types_and_order() {
        let lines = lines_of(events);

        // Byte for byte, but for the timestamp's value (`T`).
        let expected = [
            r#"{"timestamp":"T","level":"INFO","message":"request","request_id":"0b5e3f0c-2b1e-4c39-9d3a-6f1f7a0d2c11","method":"POST","path":"/api/start_call","status":200,"latency_ms":0.25,"target":"chamada::logging::tests"}"#,
            r#"{"timestamp":"T","level":"INFO","message":"Call initiated","request_id":"0b5e3f0c-2b1e-4c39-9d3a-6f1f7a0d2c11","call_id":"4a7c1e2d-9f3b-4c5d-8e6f-7a8b9c0d1e2f","provider":"elevenlabs","provider_call_id":"conv_1","to":"+351******678","target":"chamada::logging::tests"}"#,
            r#"{"timestamp":"T","level":"WARN","message":"Rate limit exceeded","limit":"ip","max":3,"retry_after":-2,"degraded":true,"ratio":1.0,"missing":null,"big":18446744073709551615,"reason":"Some(\"quoted \\\"word\\\"\")","origin":"a\"b\\c\nd\te\u0001f é €","target":"chamada::logging::tests"}"#,
            r#"{"timestamp":"T","level":"ERROR","message":"say \"hi\"\n\tthen go","kind":"missing","target":"chamada::logging::tests"}"#,
            r#"{"timestamp":"T","level":"INFO","attempts":2,"target":"chamada::logging::tests"}"#,
            r#"{"timestamp":"T","level":"ERROR","message":"Call failed","reason":"timeout","target":"chamada::logging::tests"}"#,
        ];
        for (line, want) in lines.iter().zip(expected) {
            assert_eq!(parsed(line).0, want);
        }
        assert_eq!(lines.len(), expected.len(), "{lines:#?}");

        // What a JSON reader sees: the documented keys and their types.
        let (_, access) = parsed(&lines[0]);
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["message"], "request");
        assert_eq!(access["request_id"], REQUEST_ID);
        assert_eq!(access["method"], "POST");
        assert_eq!(access["status"].as_u64(), Some(200));
        assert_eq!(access["latency_ms"].as_f64(), Some(0.25));
        assert_eq!(access["target"], "chamada::logging::tests");
        let (_, initiated) = parsed(&lines[1]);
        assert_eq!(initiated["message"], CALL_INITIATED);
        assert_eq!(
            initiated["call_id"],
            uuid::Uuid::from_u128(CALL_ID).to_string()
        );
        assert_eq!(initiated["to"], "+351******678");
        let (_, limited) = parsed(&lines[2]);
        assert_eq!(limited["level"], "WARN");
        assert_eq!(limited["max"].as_u64(), Some(3));
        assert_eq!(limited["retry_after"].as_i64(), Some(-2));
        assert_eq!(limited["degraded"], true);
        assert_eq!(limited["ratio"].as_f64(), Some(1.0));
        assert!(limited["missing"].is_null());
        assert_eq!(limited["big"].as_u64(), Some(u64::MAX));
        assert_eq!(limited["reason"], r#"Some("quoted \"word\"")"#);
        assert_eq!(limited["origin"], "a\"b\\c\nd\te\u{1}f é €");
        let (_, failed) = parsed(&lines[3]);
        assert_eq!(failed["level"], "ERROR");
        assert_eq!(failed["message"], "say \"hi\"\n\tthen go");
        let (_, bare) = parsed(&lines[4]);
        assert!(!bare.contains_key("message"));
        let (_, in_span) = parsed(&lines[5]);
        assert!(!in_span.contains_key("request_id"), "no span fields");
        assert!(!in_span.contains_key("span") && !in_span.contains_key("spans"));
    }

    /// The same lines as `tracing-subscriber`'s JSON formatter, compared live.
    #[test]
    fn json_lines_are_those_of_tracing_subscriber() {
        let ours = lines_of(events);
        let theirs = tracing_subscriber_lines_of(events);
        assert_eq!(ours.len(), theirs.len());
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(parsed(ours).0, parsed(theirs).0);
        }
    }

    /// humantime writes `tracing-subscriber`'s timestamps: ours falls between two of its own
    /// taken just before and after (the same text shape orders as time does).
    #[test]
    fn timestamps_are_those_of_tracing_subscriber() {
        let theirs = || {
            let mut text = String::new();
            FormatTime::format_time(
                &tracing_subscriber::fmt::time::SystemTime,
                &mut Writer::new(&mut text),
            )
            .unwrap();
            text
        };
        let before = theirs();
        let mut ours = Vec::new();
        timestamp(&mut ours);
        let after = theirs();
        let ours = String::from_utf8(ours).unwrap();
        assert!(
            is_timestamp(&ours) && is_timestamp(&before),
            "{ours} {before}"
        );
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
    }

    /// A field whose `Display` logs in turn: the inner event is dropped by `tracing` (no
    /// dispatch within a dispatch), the outer line is whole.
    #[test]
    fn a_field_that_logs_does_not_break_the_line() {
        struct Loud;
        impl fmt::Display for Loud {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::warn!("inner");
                f.write_str("loud")
            }
        }
        let lines = lines_of(|| tracing::info!(value = %Loud, "outer"));
        assert_eq!(
            lines.iter().map(|l| parsed(l).0).collect::<Vec<_>>(),
            [
                r#"{"timestamp":"T","level":"INFO","message":"outer","value":"loud","target":"chamada::logging::tests"}"#
            ]
        );
    }

    const REQUEST_ID: &str = "0b5e3f0c-2b1e-4c39-9d3a-6f1f7a0d2c11";
    const CALL_ID: u128 = 0x4a7c_1e2d_9f3b_4c5d_8e6f_7a8b_9c0d_1e2f;

    /// Lines of every shape the service writes, and a few it could.
    fn events() {
        let request_id = REQUEST_ID.to_string();
        let call_id = uuid::Uuid::from_u128(CALL_ID);
        // The access line (src/http/mod.rs).
        tracing::info!(
            request_id = %request_id,
            method = %http::Method::POST,
            path = %"/api/start_call",
            status = http::StatusCode::OK.as_u16(),
            latency_ms = 0.25_f64,
            "request"
        );
        // `Call initiated` (src/calls.rs): a `&str` field, Display fields, a constant message.
        let request_id = request_id.as_str();
        tracing::info!(
            request_id,
            call_id = %call_id,
            provider = "elevenlabs",
            provider_call_id = %"conv_1",
            to = %"+351******678",
            "{}",
            CALL_INITIATED
        );
        // Every kind of value, and strings that need escaping.
        tracing::warn!(
            limit = "ip",
            max = 3_u32,
            retry_after = -2_i64,
            degraded = true,
            ratio = 1.0_f64,
            missing = f64::NAN,
            big = u64::MAX,
            reason = ?Some("quoted \"word\""),
            origin = %"a\"b\\c\nd\te\u{1}f é €",
            "{}",
            RATE_LIMIT_EXCEEDED
        );
        // A message that needs escaping; a line without a message.
        tracing::error!(kind = "missing", "say \"hi\"\n\tthen {}", "go");
        tracing::info!(attempts = 2_u64);
        // Below `info`: not written.
        tracing::debug!(secret = "not written", "debug line");
        // Inside a span: its fields are not on the line (every line names its own
        // `request_id`).
        let span = tracing::info_span!("request", request_id = "r-span");
        let _entered = span.enter();
        tracing::error!(reason = "timeout", "{}", CALL_FAILED);
    }
}
