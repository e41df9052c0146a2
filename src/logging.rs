//! The log: one line per event on stderr, as text or JSON. Every line logged while a request runs
//! carries its `request_id`, taken from the request's task (a tracing span per request cost more than
//! the rest of the log line), and each request ends with one line from `portal::access`: method, path,
//! status and latency, which [`access`] writes without tracing's formatter, to the same lines.
//!
//! Text: `2026-11-30T04:40:38.189245Z  INFO portal::access: request finished method=GET path=/health
//! status=200 latency_ms=0.12 request_id=…`. JSON: `{"timestamp":…,"level":"INFO","target":…,
//! "fields":{"message":…,…},"request_id":…}`.

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::io::{Stderr, Write as _};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portal_core::audit::RequestId;
use portal_core::chrono::DateTime;
use portal_core::config::LogFormat;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::log_writer::{self, BatchedWriter, FlushGuard};

/// Logs to stderr through a writer thread (see [`log_writer`]), filtered by `PORTAL_LOG` (default
/// `info`); the returned guard writes out what is still waiting when dropped.
pub fn init(format: LogFormat) -> std::io::Result<FlushGuard> {
    let filter = EnvFilter::try_from_env("PORTAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = log_writer::batched(std::io::stderr())?;
    let json = format == LogFormat::Json;
    let _ = DIRECT.set(Direct { writer: writer.clone(), json });
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).event_format(Lines { json }).init();
    Ok(guard)
}

/// Where [`access`] writes its lines itself, once [`init`] installed the portal's log.
struct Direct {
    writer: BatchedWriter<Stderr>,
    json: bool,
}

static DIRECT: OnceLock<Direct> = OnceLock::new();

const ACCESS: &str = "portal::access";
const FINISHED: &str = "request finished";

/// A request's line in the access log.
pub struct Access<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
}

thread_local! {
    static ACCESS_LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Logs a finished request (`portal::access`, INFO): the line [`Lines`] writes for the event, but, with
/// the portal's log installed, written straight into its buffer (tracing's visit of the fields, twice for
/// text, was a twelfth of a GET's instructions); through tracing otherwise (tests' subscribers).
pub fn access(request: &Access<'_>) {
    if !tracing::enabled!(target: ACCESS, tracing::Level::INFO) {
        return;
    }
    let Some(direct) = DIRECT.get() else {
        let latency_ms = request.latency.as_micros() as f64 / 1000.0;
        let Access { method, path, status, .. } = *request;
        tracing::info!(target: ACCESS, method, path, status, latency_ms, "request finished");
        return;
    };
    ACCESS_LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        let id = RequestId::current();
        let _ = write_access_line(&mut *line, direct.json, request, id.as_ref().map(RequestId::as_str));
        let _ = direct.writer.make_writer().write_all(line.as_bytes());
    });
}

/// The access line as [`Lines`] formats `tracing::info!(target: ACCESS, method, path, status, latency_ms,
/// "request finished")` with `latency_ms` in whole microseconds.
fn write_access_line(out: &mut impl Write, json: bool, request: &Access<'_>, id: Option<&str>) -> fmt::Result {
    let micros = u64::try_from(request.latency.as_micros()).unwrap_or(u64::MAX);
    if json {
        out.write_str("{\"timestamp\":\"")?;
        write_timestamp(out)?;
        out.write_str("\",\"level\":\"INFO\",\"target\":\"portal::access\",\"fields\":{\"message\":\"")?;
        out.write_str(FINISHED)?;
        out.write_str("\",\"method\":")?;
        write_json_str(out, request.method)?;
        out.write_str(",\"path\":")?;
        write_json_str(out, request.path)?;
        out.write_str(",\"status\":")?;
        write_decimal(out, u64::from(request.status), 1)?;
        out.write_str(",\"latency_ms\":")?;
        write_millis(out, micros, false)?;
        out.write_char('}')?;
        if let Some(id) = id {
            out.write_str(",\"request_id\":")?;
            write_json_str(out, id)?;
        }
        out.write_str("}\n")
    } else {
        write_timestamp(out)?;
        out.write_str(padded(&tracing::Level::INFO))?;
        out.write_str(ACCESS)?;
        out.write_str(": ")?;
        out.write_str(FINISHED)?;
        out.write_str(" method=")?;
        write_text_value(out, request.method)?;
        out.write_str(" path=")?;
        write_text_value(out, request.path)?;
        out.write_str(" status=")?;
        write_decimal(out, u64::from(request.status), 1)?;
        out.write_str(" latency_ms=")?;
        write_millis(out, micros, true)?;
        if let Some(id) = id {
            out.write_str(" request_id=")?;
            out.write_str(id)?;
        }
        out.write_char('\n')
    }
}

/// `micros / 1000` as that `f64` prints, by `Debug` (`1.0`) or `Display` (`1`): the same digits for any
/// latency under 30 years, as a decimal of up to 15 digits goes to the `f64` nearest it and back.
fn write_millis(out: &mut impl Write, micros: u64, debug: bool) -> fmt::Result {
    let (whole, fraction) = (micros / 1000, micros % 1000);
    write_decimal(out, whole, 1)?;
    let (digits, width) = match fraction {
        0 if debug => (0, 1),
        0 => return Ok(()),
        f if f % 100 == 0 => (f / 100, 1),
        f if f % 10 == 0 => (f / 10, 2),
        f => (f, 3),
    };
    out.write_char('.')?;
    write_decimal(out, digits, width)
}

/// `n` in decimal, with leading zeros up to `width` digits (`write!` spends a few hundred instructions on
/// its format machinery).
fn write_decimal(out: &mut impl Write, mut n: u64, width: usize) -> fmt::Result {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while start > 0 && (n > 0 || start + width > digits.len()) {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
    }
    digits.get(start.min(19)..).unwrap_or_default().iter().try_for_each(|&digit| out.write_char(char::from(digit)))
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
            if let Some(id) = RequestId::current() {
                out.write_str(",\"request_id\":")?;
                write_json_str(&mut out, id.as_str())?;
            }
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
            if let Some(id) = RequestId::current() {
                write!(out, " request_id={id}")?;
            }
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
        out.write_str(&second.1)?;
        out.write_char('.')?;
        write_decimal(out, u64::from(now.subsec_micros()), 6)?;
        out.write_char('Z')
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

/// A text field's value: as it is when plain, else quoted and escaped as `Debug` does.
fn write_text_value(out: &mut impl Write, value: &str) -> fmt::Result {
    match plain(value) {
        true => out.write_str(value),
        false => write!(out, "{value:?}"),
    }
}

/// Whether a text value can stand unquoted: not empty, no space, quote, `=` or control character.
fn plain(value: &str) -> bool {
    let clean_byte = |b: u8| b > b' ' && b != b'"' && b != b'=' && b != 0x7f;
    let clean_char = |c: char| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=';
    let bytes = value.as_bytes();
    // Eight bytes at a time while none could need quoting (every path of an access line); the exact
    // checks for the rest.
    let quick = bytes.len() >= 8
        && bytes.chunks_exact(8).all(ascii_word_plain)
        && bytes.last_chunk::<8>().is_some_and(|tail| ascii_word_plain(tail));
    quick
        || (!value.is_empty()
            && if value.is_ascii() { value.bytes().all(clean_byte) } else { value.chars().all(clean_char) })
}

/// Whether eight bytes are all ASCII that can stand unquoted (none a space, control, `"`, `=`, DEL or
/// above): SWAR tests that may only err towards "no", which the exact check then answers.
fn ascii_word_plain(word: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let Ok(word) = <[u8; 8]>::try_from(word) else { return false };
    let w = u64::from_ne_bytes(word);
    let below_or_space = w.wrapping_sub(ONES * 0x21) & !w;
    let equals = |byte: u8| {
        let x = w ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x
    };
    // 0x7f + 1 sets the high bit; bytes from 0x80 have it already.
    let del_or_high = w | w.wrapping_add(ONES);
    (below_or_space | equals(b'"') | equals(b'=') | del_or_high) & HIGHS == 0
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |out| out.write_str(value));
        } else {
            self.field(field, |out| write_text_value(out, value));
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
    use std::future::Future;
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
        RequestId::plain("req-1").unwrap().scope(async {
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

    /// A line without its timestamp (text), or parsed without it (JSON).
    fn untimed(line: &str, json: bool) -> String {
        match json {
            true => {
                let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                value.as_object_mut().unwrap().remove("timestamp").unwrap();
                value.to_string()
            }
            false => line.split_once(' ').unwrap().1.to_string(),
        }
    }

    #[tokio::test]
    async fn the_access_line_written_directly_is_the_line_tracing_writes() {
        let paths = [
            "/billing/invoices/01a2",
            "/a b",
            "/quote\"=",
            "/Zoë",
            "",
            "/billing/invoices/a b",
            "/billing/invoices=1",
            "/billing/invoices/Zoë",
            "/billing/in\u{7f}voices",
        ];
        let micros = [0, 1, 10, 100, 132, 1_000, 1_500, 12_340, 1_234_567];
        for json in [false, true] {
            for (path, micros) in paths.iter().flat_map(|p| micros.iter().map(move |m| (*p, *m))) {
                for id in [Some("req-1"), None] {
                    let request = Access { method: "GET", path, status: 404, latency: Duration::from_micros(micros) };
                    let mut direct = String::new();
                    write_access_line(&mut direct, json, &request, id).unwrap();
                    let latency_ms = micros as f64 / 1000.0;
                    let log = async {
                        tracing::info!(target: ACCESS, method = "GET", path, status = 404u16, latency_ms, "request finished");
                    };
                    let traced = match id {
                        Some(id) => lines(json, RequestId::plain(id).unwrap().scope(log)).await,
                        None => lines(json, log).await,
                    };
                    assert_eq!(direct.matches('\n').count(), 1);
                    assert_eq!(untimed(direct.trim_end(), json), untimed(&traced[0], json), "{direct}");
                }
            }
        }
    }

    #[test]
    fn a_value_is_plain_exactly_when_no_character_needs_quoting() {
        let exact = |value: &str| {
            !value.is_empty() && value.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=')
        };
        // Every ASCII character and a few others (a space that is not ASCII, a letter, a line separator)
        // at every place of values one to twenty characters long, which the checks of eight bytes at a
        // time see at each position of a word and of the last, overlapping word.
        let others = ['\u{a0}', 'ë', '\u{2028}', '\u{7f}'];
        for len in 0..=20 {
            for at in 0..len.max(1) {
                for c in (0..128u8).map(char::from).chain(others) {
                    let value: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(plain(&value), exact(&value), "{value:?}");
                }
            }
        }
    }

    #[test]
    fn milliseconds_print_as_their_float_does() {
        let large = [999_999_999, 86_400_000_000, 946_080_000_000_000 - 7];
        for micros in (0..200_000).chain(large) {
            let ms = micros as f64 / 1000.0;
            let (mut debug, mut display) = (String::new(), String::new());
            write_millis(&mut debug, micros, true).unwrap();
            write_millis(&mut display, micros, false).unwrap();
            assert_eq!(debug, format!("{ms:?}"));
            assert_eq!(display, format!("{ms}"));
        }
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
