//! The log: one line per event on stderr, as text or JSON. Every line logged while a request runs
//! carries its `request_id`, taken from the request's task (a tracing span per request cost more than
//! the rest of the log line), and each request ends with one line from `portal::access`: method, path,
//! status and latency.
//!
//! Text: `2026-11-30T04:40:38.189245Z  INFO portal::access: request finished method=GET path=/health
//! status=200 latency_ms=0.12 request_id=…`. JSON: `{"timestamp":…,"level":"INFO","target":…,
//! "fields":{"message":…,…},"request_id":…}`.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use portal_core::chrono::DateTime;
use portal_core::config::LogFormat;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::log_writer::{self, FlushGuard};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `request` with `id` on every line it logs. Not an `async fn`, which would hold `request` twice in
/// its state.
pub fn with_request_id<F: Future>(id: String, request: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, request)
}

/// Logs to stderr through a writer thread (see [`log_writer`]), filtered by `PORTAL_LOG` (default
/// `info`); the returned guard writes out what is still waiting when dropped.
pub fn init(format: LogFormat) -> std::io::Result<FlushGuard> {
    let filter = EnvFilter::try_from_env("PORTAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_writer::batched(std::io::stderr())?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .event_format(Lines { json: format == LogFormat::Json })
        .init();
    Ok(guard)
}

/// Formats events as the portal's log lines.
pub struct Lines {
    pub json: bool,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut out: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        if self.json {
            out.write_str("{\"timestamp\":\"")?;
            write_timestamp(&mut out)?;
            write!(out, "\",\"level\":\"{}\",\"target\":", meta.level())?;
            write_json_str(&mut out, meta.target())?;
            out.write_str(",\"fields\":{")?;
            let mut fields = JsonFields { out: &mut out, first: true, result: Ok(()) };
            event.record(&mut fields);
            fields.result?;
            out.write_char('}')?;
            // Outside a request there is no id: nothing to write.
            REQUEST_ID
                .try_with(|id| out.write_str(",\"request_id\":").and_then(|()| write_json_str(&mut out, id)))
                .unwrap_or(Ok(()))?;
            out.write_str("}\n")
        } else {
            write_timestamp(&mut out)?;
            out.write_str(padded(meta.level()))?;
            out.write_str(meta.target())?;
            out.write_str(": ")?;
            let mut fields = TextFields { out: &mut out, message: true, result: Ok(()) };
            event.record(&mut fields);
            fields.message = false;
            event.record(&mut fields);
            fields.result?;
            REQUEST_ID.try_with(|id| write!(out, " request_id={id}")).unwrap_or(Ok(()))?;
            out.write_char('\n')
        }
    }
}

/// The level right-aligned in five columns, between spaces (`{:>5}` formats it slower).
fn padded(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => " ERROR ",
        tracing::Level::WARN => "  WARN ",
        tracing::Level::INFO => "  INFO ",
        tracing::Level::DEBUG => " DEBUG ",
        tracing::Level::TRACE => " TRACE ",
    }
}

thread_local! {
    /// The last second formatted on this thread, and its text: most lines share their second.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-11-30T04:40:38.189245Z` (UTC, microseconds).
fn write_timestamp(out: &mut impl Write) -> fmt::Result {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != now.as_secs() {
            let at = DateTime::from_timestamp(now.as_secs() as i64, 0).unwrap_or_default();
            *second = (now.as_secs(), at.format("%Y-%m-%dT%H:%M:%S").to_string());
        }
        write!(out, "{}.{:06}Z", second.1, now.subsec_micros())
    })
}

/// Text fields: the message first (first pass), then `name=value` pairs (second pass).
struct TextFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    message: bool,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    fn field(&mut self, field: &Field, write_value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() || (field.name() == "message") != self.message {
            return;
        }
        self.result = if self.message {
            write_value(self.out)
        } else {
            self.out
                .write_char(' ')
                .and_then(|()| self.out.write_str(field.name()))
                .and_then(|()| self.out.write_char('='))
                .and_then(|()| write_value(self.out))
        };
    }
}

/// Whether a text value can stand unquoted: not empty, no space, quote, `=` or control character.
fn plain(value: &str) -> bool {
    let clean_byte = |b: u8| b > b' ' && b != b'"' && b != b'=' && b != 0x7f;
    let clean_char = |c: char| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=';
    !value.is_empty() && if value.is_ascii() { value.bytes().all(clean_byte) } else { value.chars().all(clean_char) }
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" || plain(value) {
            self.field(field, |out| out.write_str(value));
        } else {
            self.field(field, |out| write!(out, "{value:?}"));
        }
    }

    // Numbers written directly: tracing's default passes them through `Debug` as `dyn` values.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| write!(out, "{value:?}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write!(out, "{value:?}"));
    }
}

/// JSON fields: `"name":value`, numbers and booleans as such, everything else as a string.
struct JsonFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn field(&mut self, field: &Field, write_value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.first) { "" } else { "," };
        self.result = self
            .out
            .write_str(separator)
            .and_then(|()| write_json_str(self.out, field.name()))
            .and_then(|()| self.out.write_char(':'))
            .and_then(|()| write_value(self.out));
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.field(field, |out| write!(out, "{value}"));
        } else {
            self.field(field, |out| out.write_str("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| write_json_str(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| write_json_str(out, &format!("{value:?}")));
    }
}

/// `s` as a JSON string literal.
fn write_json_str(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        let escaped = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.write_str(&s[plain_from..i])?;
        if escaped.is_empty() {
            write!(out, "\\u{:04x}", c as u32)?;
        } else {
            out.write_str(escaped)?;
        }
        plain_from = i + c.len_utf8();
    }
    out.write_str(&s[plain_from..])?;
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The lines `log` writes in the given format.
    async fn lines(json: bool, log: impl Future<Output = ()>) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).event_format(Lines { json }).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        log.await;
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    async fn request_and_after() {
        with_request_id("req-1".into(), async {
            tracing::info!(target: "portal::access", method = "GET", path = "/a b", status = 200u16, latency_ms = 0.5, "request finished");
        })
        .await;
        tracing::warn!(error = "quote \" and\nnewline", "outside a request");
        tracing::warn!(user_agent = "bell\u{7}", name = "Zoë", "control characters are escaped");
    }

    #[tokio::test]
    async fn text_lines_carry_the_request_id_inside_a_request_only() {
        let lines = lines(false, request_and_after()).await;
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].ends_with(": control characters are escaped user_agent=\"bell\\u{7}\" name=Zoë"),
            "{}",
            lines[2]
        );
        let (stamp, rest) = lines[0].split_once(' ').unwrap();
        assert!(DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
        assert_eq!(
            rest,
            " INFO portal::access: request finished method=GET path=\"/a b\" status=200 latency_ms=0.5 request_id=req-1"
        );
        assert!(
            lines[1].ends_with(" WARN portal::logging::tests: outside a request error=\"quote \\\" and\\nnewline\"")
        );
    }

    #[tokio::test]
    async fn json_lines_parse_and_keep_their_types() {
        let lines = lines(true, request_and_after()).await;
        let access: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["target"], "portal::access");
        assert_eq!(access["request_id"], "req-1");
        assert_eq!(
            access["fields"],
            serde_json::json!({"message": "request finished", "method": "GET", "path": "/a b", "status": 200, "latency_ms": 0.5})
        );
        assert!(DateTime::parse_from_rfc3339(access["timestamp"].as_str().unwrap()).is_ok());
        let outside: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(outside["fields"]["error"], "quote \" and\nnewline");
        assert!(outside.get("request_id").is_none());
    }
}
