//! JSON-lines logs: `{"ts":…,"level":…,"msg":…, …fields}` on stderr.
//!
//! `ts` is RFC 3339 UTC with microseconds, `level` is lower case, `msg` is the event's message,
//! and every other field of the event (`symbol`, `order_id`, `venue`, …) follows at the top
//! level. Only cold threads log: the hot path counts, and the cold side turns counts and
//! samples into log lines.
//!
//! The level filter is reloadable ([`level_filter`], [`set_log_level`]): a config reload that
//! changes `telemetry.log_level` changes what is logged from the next event on. `RUST_LOG`, when
//! set (and valid) at start, takes precedence over the config for the whole run.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;

use crate::config::LogLevel;

/// Changes the running level filter (the handle of [`level_filter`]'s reload layer).
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The process's reloadable log filter, once [`level_filter`] has made it.
struct LevelControl {
    set: SetFilter,
    /// `RUST_LOG` chose the filter at start: the config's level does not apply.
    from_env: bool,
}

static LEVEL: OnceLock<LevelControl> = OnceLock::new();

/// The log filter of the process, reloadable through [`set_log_level`]: `RUST_LOG` if it is set
/// and valid (it then wins over the config for the whole run), else `level`. Put it on the
/// output layer (`fmt_layer.with_filter(level_filter(level))`). The first call in a process
/// owns the reload handle; a later one gets a filter that does not reload.
pub fn level_filter<S>(level: LogLevel) -> reload::Layer<EnvFilter, S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let env = EnvFilter::try_from_default_env().ok();
    let from_env = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(level.name()));
    let (layer, handle) = reload::Layer::new(filter);
    let _ = LEVEL.set(LevelControl {
        set: Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
        from_env,
    });
    layer
}

/// Logs at `level` and above from now on (a config reload of `telemetry.log_level`). Refused,
/// with the reason, when `RUST_LOG` chose the filter at start (it keeps precedence) or when this
/// process has no reloadable filter ([`level_filter`] was never called).
pub fn set_log_level(level: LogLevel) -> Result<(), String> {
    let Some(control) = LEVEL.get() else {
        return Err("this process has no reloadable log filter".into());
    };
    if control.from_env {
        return Err(format!(
            "RUST_LOG is set and takes precedence over telemetry.log_level ({}) until a restart without it",
            level.name()
        ));
    }
    (control.set)(EnvFilter::new(level.name()))
}

/// How often the flusher writes what was logged to stderr.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// Buffered bytes that wake the flusher before its next period.
const FLUSH_AT: usize = 64 * 1024;
/// Most bytes held for stderr; lines beyond it are dropped and counted.
const BUFFER_CAP: usize = 16 * 1024 * 1024;

/// Log output that never makes a logging thread wait for stderr.
///
/// Formatted lines are appended to one in-memory buffer (a short lock, a copy); the `log-flush`
/// thread writes the buffer to stderr every [`FLUSH_EVERY`], or sooner once 64 KiB are waiting,
/// and at the end. So the cold thread that answers an order never pays for a write system call
/// or for waking whoever reads the pipe (a log shipper, a terminal). Lines keep their order.
/// If stderr stops taking data, the buffer stops at 16 MiB: further lines are dropped and
/// counted, and the flusher reports the count in a `warn` line once stderr moves again.
///
/// Dropping the `LogSink` (or calling [`finish`](Self::finish)) writes everything still
/// buffered; a process killed outright loses at most the last [`FLUSH_EVERY`] of lines.
#[derive(Debug)]
pub struct LogSink {
    shared: Arc<LogShared>,
    flusher: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct LogShared {
    buf: Mutex<Vec<u8>>,
    cap: usize,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl LogShared {
    fn buf(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves whole lines behind: keep using the buffer.
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer handed to `tracing_subscriber` (one per event).
#[derive(Clone, Debug)]
pub struct LogWriter {
    shared: Arc<LogShared>,
    flusher: Option<std::thread::Thread>,
}

impl LogSink {
    /// Starts the flusher thread, writing to stderr. Falls back to writing straight to stderr
    /// (no thread) if the thread cannot be started.
    pub fn start() -> LogSink {
        LogSink::to(io::stderr(), BUFFER_CAP)
    }

    fn to(out: impl Write + Send + 'static, cap: usize) -> LogSink {
        let shared = Arc::new(LogShared {
            buf: Mutex::new(Vec::new()),
            cap,
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_loop(&s, out))
            .ok();
        LogSink { shared, flusher }
    }

    /// A writer for the subscriber.
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            shared: Arc::clone(&self.shared),
            flusher: self.flusher.as_ref().map(|h| h.thread().clone()),
        }
    }

    /// Writes everything buffered and stops the flusher.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(h) = self.flusher.take() {
            self.shared.stop.store(true, Ordering::Release);
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flush_loop(shared: &LogShared, mut dest: impl Write) {
    let mut out = Vec::new();
    loop {
        let stopping = shared.stop.load(Ordering::Acquire);
        std::mem::swap(&mut *shared.buf(), &mut out);
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let line = serde_json::json!({
                "ts": rfc3339_now(),
                "level": "warn",
                "msg": "log lines dropped: stderr did not keep up",
                "target": module_path!(),
                "dropped": dropped,
            });
            let _ = writeln!(out, "{line}");
        }
        if !out.is_empty() {
            let _ = dest.write_all(&out);
            let _ = dest.flush();
            out.clear();
        }
        if stopping {
            return;
        }
        std::thread::park_timeout(FLUSH_EVERY);
    }
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let Some(flusher) = &self.flusher else {
            return io::stderr().write(bytes);
        };
        let mut buf = self.shared.buf();
        if buf.len() + bytes.len() > self.shared.cap {
            drop(buf);
            // A formatted event arrives in one write, so this drops whole lines.
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes.len());
        }
        let was_below = buf.len() < FLUSH_AT;
        buf.extend_from_slice(bytes);
        let wake = was_below && buf.len() >= FLUSH_AT;
        drop(buf);
        if wake {
            flusher.unpark();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

/// The event formatter behind `telemetry.log_format: json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

/// An event's fields as JSON members: `msg` apart (it goes first), every other field
/// appended as `,"name":value` in the order the event gives them.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: String,
}

impl Fields {
    fn key(&mut self, field: &Field) -> Option<&mut String> {
        if field.name() == "message" {
            return None;
        }
        self.rest.push(',');
        push_json_str(&mut self.rest, field.name());
        self.rest.push(':');
        Some(&mut self.rest)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match self.key(field) {
            Some(out) => push_json_str(out, &text),
            None => self.msg = text,
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match self.key(field) {
            Some(out) => push_json_str(out, value),
            None => self.msg = value.to_string(),
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        match self.key(field) {
            Some(out) => {
                let _ = write!(out, "{value}");
            }
            None => self.msg = value.to_string(),
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match self.key(field) {
            Some(out) => {
                let _ = write!(out, "{value}");
            }
            None => self.msg = value.to_string(),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        match self.key(field) {
            Some(out) => out.push_str(if value { "true" } else { "false" }),
            None => self.msg = value.to_string(),
        }
    }
}

/// Appends `text` as a JSON string (quoted, escaped).
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128 + fields.msg.len() + fields.rest.len());
        line.push_str("{\"ts\":\"");
        line.push_str(&rfc3339_now());
        line.push_str("\",\"level\":\"");
        line.push_str(level_name(*event.metadata().level()));
        line.push_str("\",\"msg\":");
        push_json_str(&mut line, &fields.msg);
        line.push_str(",\"target\":");
        push_json_str(&mut line, event.metadata().target());
        line.push_str(&fields.rest);
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_micros())
}

/// Formats seconds since the epoch plus microseconds as RFC 3339 UTC.
pub fn rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Counts the events that pass the filter in front of it.
    #[derive(Clone, Default)]
    struct Count(Arc<AtomicU64>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The only test in this binary that makes the process's level filter.
    #[test]
    fn set_log_level_changes_the_running_filter_unless_rust_log_chose_it() {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let count = Count::default();
        let seen = || count.0.load(Ordering::Relaxed);
        let subscriber = tracing_subscriber::registry().with(count.clone().with_filter(level_filter(LogLevel::Info)));
        tracing::subscriber::with_default(subscriber, || {
            let rust_log = EnvFilter::try_from_default_env().is_ok();
            if rust_log {
                let err = set_log_level(LogLevel::Debug).unwrap_err();
                assert!(err.contains("RUST_LOG"), "{err}");
                return;
            }
            tracing::debug!("below info");
            tracing::info!("at info");
            assert_eq!(seen(), 1);
            set_log_level(LogLevel::Debug).expect("reloaded");
            tracing::debug!("at debug now");
            assert_eq!(seen(), 2, "debug passes after the change");
            set_log_level(LogLevel::Error).expect("reloaded");
            tracing::warn!("below error");
            tracing::error!("at error");
            assert_eq!(seen(), 3);
        });
    }

    /// An output the test can read, which can be made to stall.
    #[derive(Clone, Default)]
    struct Out {
        bytes: Arc<Mutex<Vec<u8>>>,
        stalled: Arc<Mutex<()>>,
    }

    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _wait = self.stalled.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.bytes.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn every_line_from_every_thread_arrives_whole_and_in_each_threads_order() {
        let out = Out::default();
        let sink = LogSink::to(out.clone(), BUFFER_CAP);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = sink.writer();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.finish();
        let lines = out.lines();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let mine: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..2000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine.len(), 2000);
            assert!(
                mine.iter().zip(&expected).all(|(a, b)| *a == b),
                "thread {t} out of order"
            );
        }
    }

    #[test]
    fn lines_are_written_without_waiting_for_the_end() {
        let out = Out::default();
        let sink = LogSink::to(out.clone(), BUFFER_CAP);
        sink.writer().write_all(b"early\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.lines().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the flusher never wrote");
            std::thread::yield_now();
        }
        assert_eq!(out.lines(), vec!["early"]);
        drop(sink);
    }

    #[test]
    fn a_stalled_output_drops_whole_lines_beyond_the_cap_and_says_how_many() {
        let out = Out::default();
        let stall = out.stalled.lock().unwrap();
        let sink = LogSink::to(out.clone(), 100);
        let mut w = sink.writer();
        // The buffer holds ten of these lines, and the flusher can hold at most one buffer's
        // worth while it waits on the stalled output: most of the thousand are dropped.
        let written = 1000;
        for i in 0..written {
            w.write_all(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        drop(stall);
        sink.finish();
        let lines = out.lines();
        let kept = lines.iter().filter(|l| l.starts_with("line ")).count() as u64;
        let reports: Vec<Value> = lines
            .iter()
            .filter(|l| l.contains("log lines dropped"))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let dropped: u64 = reports.iter().map(|r| r["dropped"].as_u64().unwrap()).sum();
        assert!(
            !reports.is_empty() && reports.iter().all(|r| r["level"] == "warn"),
            "{lines:?}"
        );
        assert!(dropped >= 800, "{dropped} dropped");
        assert_eq!(kept + dropped, written, "every line is kept or counted");
        assert!(
            lines.iter().all(|l| l.len() == 9 || l.contains("log lines dropped")),
            "only whole lines"
        );
    }

    #[test]
    fn json_lines_put_ts_level_msg_target_first_then_the_fields_escaped() {
        let out = Out::default();
        let sink = LogSink::to(out.clone(), BUFFER_CAP);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.writer())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                symbol = "BTC\"USD\\T",
                order_id = 42u64,
                delta = -3i64,
                ok = true,
                price = %"62650.2",
                note = "line\nbreak\u{1}",
                "order {} sent",
                7
            );
        });
        sink.finish();
        let lines = out.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v: Value = serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "ts", "level", "msg", "target", "symbol", "order_id", "delta", "ok", "price", "note"
            ]
        );
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "order 7 sent");
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["symbol"], "BTC\"USD\\T");
        assert_eq!(
            (v["order_id"].as_u64(), v["delta"].as_i64(), v["ok"].as_bool()),
            (Some(42), Some(-3), Some(true))
        );
        assert_eq!(v["price"], "62650.2");
        assert_eq!(v["note"], "line\nbreak\u{1}");
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.len() == 27 && ts.ends_with('Z'), "{ts}");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_723_161_255, 343_000), "2024-08-08T23:54:15.343000Z");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
    }
}
