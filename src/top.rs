//! `maxx top`: a terminal dashboard over the Prometheus endpoint of a running maxx.
//!
//! It knows nothing of the engine's code: it scrapes `GET /metrics` (text exposition format
//! 0.0.4) with a small blocking HTTP/1.1 client over a std `TcpStream`, parses the text itself
//! ([`parse`]), and turns two scrapes into a [`View`]: rates from counter deltas, latency
//! percentiles from the summary's quantiles, ring occupancy, feed, risk and money states.
//! The same `View` is drawn by [`draw`] on the terminal (ratatui, crossterm backend) and, for
//! `--once`, into an off-screen buffer printed as plain text, so the tests read what an
//! operator sees.
//!
//! Rates are counter deltas over the time between the two scrapes. That time is taken from the
//! endpoint's own `maxx_uptime_seconds` when it has sub-second resolution (the server's clock,
//! free of the client's scheduling), else from the client's monotonic clock. A counter that went
//! down (the instance restarted) or a series that is new has no rate yet and shows `-`.
//! A failed scrape never ends the interactive dashboard: the error is shown in the frame, the
//! last good figures stay, and the next scrape is tried at the next interval.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::cli::{DEFAULT_CONFIG, TopArgs};
use crate::commands::load_config;

/// The endpoint used when neither `--url` nor a config gives one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9100/metrics";
/// How long one scrape may take, connect to last byte.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest response accepted (a maxx exposition is a few KiB).
const MAX_RESPONSE: usize = 16 << 20;
/// Reject reasons listed at most (the most frequent).
const MAX_REJECT_LINES: usize = 8;
/// Width of the `--once` rendering.
const ONCE_WIDTH: u16 = 120;

/// Runs `maxx top`.
pub fn top_cmd(args: &TopArgs) -> Result<ExitCode> {
    let url = match metrics_url(args) {
        Ok(url) => url,
        Err(code) => return Ok(code),
    };
    let target = Target::parse(&url)?;
    let interval = Duration::from_millis(args.interval_ms);
    if args.once {
        print!("{}", once(&target, interval)?);
        return Ok(ExitCode::SUCCESS);
    }
    interactive(target, interval)?;
    Ok(ExitCode::SUCCESS)
}

/// `--url`, else `http://<telemetry.metrics_listen>/metrics` from `--config` (or the default
/// config when it exists), else [`DEFAULT_URL`]. A config with problems exits 1 with them listed;
/// a config without a usable address (no metrics server, or port 0) exits 1 asking for `--url`.
fn metrics_url(args: &TopArgs) -> Result<String, ExitCode> {
    if let Some(url) = &args.url {
        return Ok(url.clone());
    }
    let path = match &args.config {
        Some(p) => p.as_path(),
        None if Path::new(DEFAULT_CONFIG).is_file() => Path::new(DEFAULT_CONFIG),
        None => return Ok(DEFAULT_URL.to_string()),
    };
    let config = load_config(path)?;
    match config.telemetry.metrics_listen {
        None => {
            eprintln!(
                "maxx: {}: telemetry.metrics_listen is null (no metrics server); pass --url",
                path.display()
            );
            Err(ExitCode::from(1))
        }
        Some(addr) if addr.port() == 0 => {
            eprintln!(
                "maxx: {}: telemetry.metrics_listen has port 0 (any free port); pass --url with \
                 the address `maxx run` printed on its `metrics` line",
                path.display()
            );
            Err(ExitCode::from(1))
        }
        Some(mut addr) => {
            // A server bound to every interface is reached on loopback.
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            Ok(format!("http://{addr}/metrics"))
        }
    }
}

/// `--once`: two scrapes `interval` apart, one frame as plain text.
fn once(target: &Target, interval: Duration) -> Result<String> {
    let first = Scrape::take(target).with_context(|| format!("cannot scrape {}", target.url))?;
    // Pacing, not synchronisation: the rates are measured over this interval.
    std::thread::sleep(interval);
    let second = Scrape::take(target).with_context(|| format!("cannot scrape {}", target.url))?;
    let view = View::build(&target.url, interval, Some(&first), Some(&second), None);
    Ok(render_text(&view, ONCE_WIDTH))
}

/// The interactive dashboard: scrapes on their own thread (a slow endpoint never delays the
/// keys), the terminal restored on every way out, a panic included (ratatui's hook).
fn interactive(target: Target, interval: Duration) -> Result<()> {
    let url = target.url.clone();
    let (tx, rx) = mpsc::channel::<Result<Scrape, String>>();
    std::thread::Builder::new()
        .name("top-scrape".into())
        .spawn(move || {
            loop {
                let result = Scrape::take(&target).map_err(|e| format!("{e:#}"));
                if tx.send(result).is_err() {
                    return;
                }
                // Pacing between scrapes; the dashboard ends this thread by dropping `rx`.
                std::thread::sleep(interval);
            }
        })
        .context("cannot start the scrape thread")?;
    // `try_init` installs a panic hook that restores the terminal before the panic message.
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            return Err(e).context("cannot take over the terminal (use --once for plain output)");
        }
    };
    let result = dashboard(&mut terminal, &url, interval, &rx);
    ratatui::restore();
    result
}

fn dashboard(
    terminal: &mut ratatui::DefaultTerminal,
    url: &str,
    interval: Duration,
    rx: &mpsc::Receiver<Result<Scrape, String>>,
) -> Result<()> {
    let mut prev: Option<Scrape> = None;
    let mut cur: Option<Scrape> = None;
    let mut error: Option<String> = None;
    // Failed scrapes since the last good one: the operator sees that retrying goes on.
    let mut failures = 0u64;
    let mut dirty = true;
    loop {
        loop {
            match rx.try_recv() {
                Ok(Ok(scrape)) => {
                    prev = cur.take();
                    cur = Some(scrape);
                    error = None;
                    failures = 0;
                    dirty = true;
                }
                Ok(Err(e)) => {
                    failures += 1;
                    error = Some(if failures > 1 {
                        format!("{e} [{failures} attempts in a row]")
                    } else {
                        e
                    });
                    dirty = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => bail!("the scrape thread ended"),
            }
        }
        if dirty {
            let view = View::build(url, interval, prev.as_ref(), cur.as_ref(), error.as_deref());
            terminal.draw(|f| draw(f, &view)).context("cannot draw")?;
            dirty = false;
        }
        if event::poll(Duration::from_millis(100)).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) if quits(&key) => return Ok(()),
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
}

/// `q`, Esc or Ctrl-C (raw mode turns Ctrl-C into a key, not a signal).
fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

// ---------------------------------------------------------------------------------------------
// Scraping: a plain blocking HTTP/1.1 GET.

/// A parsed `http://host[:port][/path]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// The value of the `Host` header.
    pub host_header: String,
    /// The request path (`/metrics` when the URL has none).
    pub path: String,
}

impl Target {
    /// Parses the URL; `https://` and other schemes are refused with a clear error.
    pub fn parse(url: &str) -> Result<Target> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            bail!(
                "{url}: https is not supported; `maxx top` reads the metrics endpoint over plain \
                 http (it listens on loopback): use http://"
            );
        } else {
            bail!("{url}: not an http:// URL (expected e.g. {DEFAULT_URL})");
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            bail!("{url}: expected http://HOST:PORT/PATH");
        }
        let path = match path {
            "" | "/" => "/metrics".to_string(),
            p if p.starts_with('?') => format!("/metrics{p}"),
            p => p.to_string(),
        };
        // A port is present unless the authority ends in a bracketed IPv6 host or has no colon.
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let connect = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            url: url.to_string(),
            authority: connect,
            host_header: authority.to_string(),
            path,
        })
    }
}

/// One successful scrape.
#[derive(Debug)]
pub struct Scrape {
    /// When the response was complete (client's monotonic clock).
    pub at: Instant,
    /// What it said.
    pub metrics: Metrics,
}

impl Scrape {
    /// Scrapes `target` once.
    pub fn take(target: &Target) -> Result<Scrape> {
        let body = http_get(target)?;
        Ok(Scrape {
            at: Instant::now(),
            metrics: parse(&body),
        })
    }
}

/// `GET target.path`, the body of a 200 answer, within [`SCRAPE_TIMEOUT`].
fn http_get(target: &Target) -> Result<String> {
    let deadline = Instant::now() + SCRAPE_TIMEOUT;
    let addrs: Vec<_> = target
        .authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", target.authority))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = match (stream, last) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e).context("connect"),
        (None, None) => bail!("{} resolves to no address", target.authority),
    };
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain;version=0.0.4\r\nUser-Agent: maxx-top\r\n\
         Connection: close\r\n\r\n",
        target.path, target.host_header
    );
    stream.write_all(request.as_bytes()).context("send the request")?;
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(done) = response(&buf)? {
            return done;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no complete answer within {} s", SCRAPE_TIMEOUT.as_secs());
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                bail!("no complete answer within {} s", SCRAPE_TIMEOUT.as_secs())
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("read the answer"),
        };
        if n == 0 {
            // The server closed: what we have is the whole answer, if its head is complete.
            return match response_at_eof(&buf)? {
                Some(done) => done,
                None => bail!("the connection closed before a complete answer"),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            bail!("answer larger than {} MiB", MAX_RESPONSE >> 20);
        }
    }
}

/// The head of an HTTP answer.
struct Head {
    status: u16,
    reason: String,
    body_start: usize,
    content_length: Option<usize>,
    chunked: bool,
}

fn head(buf: &[u8]) -> Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| anyhow!("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x answer: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| anyhow!("bad Content-Length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(Head {
        status,
        reason,
        body_start: end + 4,
        content_length,
        chunked,
    }))
}

/// `Some(answer)` once `buf` holds a complete answer (by Content-Length or chunked framing).
fn response(buf: &[u8]) -> Result<Option<Result<String>>> {
    let Some(h) = head(buf)? else { return Ok(None) };
    let body = &buf[h.body_start..];
    let body = if h.chunked {
        match dechunk(body)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else if let Some(len) = h.content_length {
        if body.len() < len {
            return Ok(None);
        }
        body[..len].to_vec()
    } else {
        // Delimited by the end of the connection.
        return Ok(None);
    };
    Ok(Some(finish(&h, body)))
}

fn response_at_eof(buf: &[u8]) -> Result<Option<Result<String>>> {
    if let Some(done) = response(buf)? {
        return Ok(Some(done));
    }
    let Some(h) = head(buf)? else { return Ok(None) };
    if h.chunked || h.content_length.is_some() {
        return Ok(None);
    }
    Ok(Some(finish(&h, buf[h.body_start..].to_vec())))
}

fn finish(h: &Head, body: Vec<u8>) -> Result<String> {
    if h.status != 200 {
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        let shown: String = text.chars().take(200).collect();
        bail!(
            "HTTP {} {}{}",
            h.status,
            h.reason,
            if shown.is_empty() {
                String::new()
            } else {
                format!(": {shown}")
            }
        );
    }
    String::from_utf8(body).map_err(|_| anyhow!("the metrics text is not UTF-8"))
}

/// Decodes a chunked body; `None` while the last chunk has not arrived.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&data[..eol]).map_err(|_| anyhow!("bad chunk size"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| anyhow!("bad chunk size {size_hex:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// The exposition text format 0.0.4.

/// One sample: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `maxx_feed_ticks_total`.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (NaN and infinities included).
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A parsed exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Every well-formed sample, in the order written.
    pub samples: Vec<Sample>,
    /// Lines that were neither comments, blank nor well-formed samples (skipped).
    pub malformed: usize,
}

impl Metrics {
    /// The samples of metric `name`.
    pub fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The value of the sample of `name` whose labels include all of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name)
            .find(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
    }

    /// `name`'s values summed per value of label `key` (other labels summed over).
    pub fn by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.family(name) {
            if let Some(v) = s.label(key) {
                *out.entry(v.to_string()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

/// Parses exposition text. Comments (`#`, `HELP` and `TYPE` included) and blank lines are
/// skipped; a line that is not a well-formed sample is skipped and counted, never fatal.
pub fn parse(text: &str) -> Metrics {
    let mut m = Metrics::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Some(s) => m.samples.push(s),
            None => m.malformed += 1,
        }
    }
    m
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_sample(line: &str) -> Option<Sample> {
    let mut chars = line.char_indices().peekable();
    let (_, first) = chars.next()?;
    if !is_name_start(first) {
        return None;
    }
    let mut end = line.len();
    while let Some(&(i, c)) = chars.peek() {
        if !is_name_char(c) {
            end = i;
            break;
        }
        chars.next();
    }
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    // Blanks may stand between the name and its labels (as the reference parser allows).
    if let Some(after) = rest.trim_start().strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    // A value must be separated from the name or labels by whitespace.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample { name, labels, value })
}

/// Parses `name="value",...}` (after the `{`); gives the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let name_end = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
        let key = &s[..name_end];
        if key.is_empty() || !key.starts_with(is_name_start) {
            return None;
        }
        s = s[name_end..]
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .strip_prefix('"')?;
        let mut value = String::new();
        let mut it = s.char_indices();
        let close = loop {
            let (i, c) = it.next()?;
            match c {
                '"' => break i,
                '\\' => match it.next()?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    _ => return None,
                },
                '\n' => return None,
                c => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[close + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        // Rust also reads "infinity" and the like; the format does not.
        s if s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The view model: what one frame shows.

/// A feed's connection state (`maxx_feed_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    /// 0: not yet live.
    Waiting,
    /// 1: ticks arriving.
    Live,
    /// 2: no tick for too long.
    Stale,
}

impl FeedState {
    fn from_value(v: f64) -> Option<FeedState> {
        if v == 0.0 {
            Some(FeedState::Waiting)
        } else if v == 1.0 {
            Some(FeedState::Live)
        } else if v == 2.0 {
            Some(FeedState::Stale)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            FeedState::Waiting => "waiting",
            FeedState::Live => "live",
            FeedState::Stale => "STALE",
        }
    }

    fn color(self) -> Color {
        match self {
            FeedState::Waiting => Color::Yellow,
            FeedState::Live => Color::Green,
            FeedState::Stale => Color::Red,
        }
    }
}

/// A risk scope's state (`maxx_risk_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskState {
    /// 0: trading.
    Active,
    /// 1: only risk-reducing orders.
    Reducing,
    /// 2: no new risk.
    Halted,
}

impl RiskState {
    fn from_value(v: f64) -> Option<RiskState> {
        if v == 0.0 {
            Some(RiskState::Active)
        } else if v == 1.0 {
            Some(RiskState::Reducing)
        } else if v == 2.0 {
            Some(RiskState::Halted)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            RiskState::Active => "ACTIVE",
            RiskState::Reducing => "REDUCING",
            RiskState::Halted => "HALTED",
        }
    }

    fn color(self) -> Color {
        match self {
            RiskState::Active => Color::Green,
            RiskState::Reducing => Color::Yellow,
            RiskState::Halted => Color::Red,
        }
    }
}

/// One feed's row.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedRow {
    /// The venue.
    pub venue: String,
    /// Its state, if reported.
    pub state: Option<FeedState>,
    /// Seconds since its last tick.
    pub age: Option<f64>,
    /// Ticks per second, all kinds.
    pub ticks_per_s: Option<f64>,
    /// Frames per second.
    pub frames_per_s: Option<f64>,
    /// Decode errors since start, all reasons.
    pub decode_errors: f64,
    /// Reconnects since start.
    pub reconnects: f64,
}

/// One venue's order flow.
#[derive(Clone, Debug, PartialEq)]
pub struct VenueRow {
    /// The venue.
    pub venue: String,
    /// Orders per second.
    pub orders_per_s: Option<f64>,
    /// Fills per second.
    pub fills_per_s: Option<f64>,
    /// Orders since start.
    pub orders: f64,
    /// Fills since start.
    pub fills: f64,
    /// Open orders now.
    pub open: Option<f64>,
}

/// One ring's occupancy.
#[derive(Clone, Debug, PartialEq)]
pub struct RingRow {
    /// The ring's name.
    pub ring: String,
    /// Slots in use.
    pub used: f64,
    /// Slots in all, if reported.
    pub capacity: Option<f64>,
}

/// Money per currency.
#[derive(Clone, Debug, PartialEq)]
pub struct MoneyRow {
    /// The currency.
    pub currency: String,
    /// Equity.
    pub equity: Option<f64>,
    /// Intraday drawdown as a ratio (0.0123 = 1.23 %).
    pub drawdown: Option<f64>,
    /// The lock-box.
    pub lockbox: Option<f64>,
}

/// Everything one frame shows.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// The endpoint.
    pub url: String,
    /// The refresh interval.
    pub interval: Duration,
    /// The last scrape's error, if it failed.
    pub error: Option<String>,
    /// Whether any scrape has succeeded.
    pub has_data: bool,
    /// Seconds between the two scrapes the rates come from, and whether the server's clock
    /// measured them.
    pub window: Option<(f64, bool)>,
    /// `maxx_uptime_seconds`.
    pub uptime: Option<f64>,
    /// Feeds by venue.
    pub feeds: Vec<FeedRow>,
    /// Ticks per second over every feed.
    pub ticks_per_s: Option<f64>,
    /// Signals per second.
    pub signals_per_s: Option<f64>,
    /// Order flow by venue.
    pub venues: Vec<VenueRow>,
    /// Orders per second over every venue.
    pub orders_per_s: Option<f64>,
    /// Fills per second over every venue.
    pub fills_per_s: Option<f64>,
    /// Rejects by reason: total and per second.
    pub rejects: Vec<(String, f64, Option<f64>)>,
    /// Tick-to-order quantiles in µs, in the order of [`QUANTILES`].
    pub latency_us: Vec<(&'static str, Option<f64>)>,
    /// Tick-to-order observations.
    pub latency_count: Option<f64>,
    /// The mean tick-to-order latency in µs.
    pub latency_mean_us: Option<f64>,
    /// Rings.
    pub rings: Vec<RingRow>,
    /// Threads: CPU % over the window, and seconds since start.
    pub threads: Vec<(String, Option<f64>, f64)>,
    /// Redis connected.
    pub redis_connected: Option<bool>,
    /// Redis publish queue depth.
    pub redis_queue: Option<f64>,
    /// The system-wide risk state (scope `*`).
    pub risk_system: Option<RiskState>,
    /// Scopes other than `*` that are not ACTIVE.
    pub risk_scopes: Vec<(String, RiskState)>,
    /// Whether the kill switch is tripped.
    pub kill_switch: Option<bool>,
    /// Money per currency.
    pub money: Vec<MoneyRow>,
    /// Malformed lines in the last scrape.
    pub malformed: usize,
}

/// The summary quantiles shown, as labelled in the exposition and on screen.
pub const QUANTILES: [(&str, &str); 4] = [("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("0.999", "p99.9")];

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The per-second rate of a counter between two readings; `None` without a previous reading,
/// over an empty window, or when the counter went down (a restart).
fn rate(prev: Option<f64>, cur: Option<f64>, secs: Option<f64>) -> Option<f64> {
    let (p, c, dt) = (prev?, cur?, secs?);
    (dt > 0.0 && c >= p && c.is_finite() && p.is_finite()).then(|| (c - p) / dt)
}

/// The time between two scrapes: the server's uptime delta when it has sub-second resolution
/// and advanced, else the client's clock.
fn window(prev: &Scrape, cur: &Scrape) -> (f64, bool) {
    let up = |s: &Scrape| finite(s.metrics.get("maxx_uptime_seconds", &[]));
    if let (Some(a), Some(b)) = (up(prev), up(cur))
        && b > a
        && (a.fract() != 0.0 || b.fract() != 0.0)
    {
        return (b - a, true);
    }
    (cur.at.saturating_duration_since(prev.at).as_secs_f64(), false)
}

fn sum(m: &Metrics, name: &str) -> Option<f64> {
    let mut it = m.family(name).peekable();
    it.peek()?;
    Some(it.map(|s| s.value).sum())
}

impl View {
    /// The view of the latest scrape `cur`, with rates against `prev`.
    pub fn build(
        url: &str,
        interval: Duration,
        prev: Option<&Scrape>,
        cur: Option<&Scrape>,
        error: Option<&str>,
    ) -> View {
        let empty = Metrics::default();
        let m = cur.map_or(&empty, |s| &s.metrics);
        let p = prev.map(|s| &s.metrics);
        let win = match (prev, cur) {
            (Some(a), Some(b)) => Some(window(a, b)),
            _ => None,
        };
        let secs = win.map(|(s, _)| s);
        let prev_by = |name: &str, key: &str| p.map(|p| p.by(name, key)).unwrap_or_default();
        let prev_sum = |name: &str| p.and_then(|p| sum(p, name));

        // Feeds: every venue any feed family names.
        let ticks = m.by("maxx_feed_ticks_total", "venue");
        let ticks_prev = prev_by("maxx_feed_ticks_total", "venue");
        let frames = m.by("maxx_feed_frames_total", "venue");
        let frames_prev = prev_by("maxx_feed_frames_total", "venue");
        let errors = m.by("maxx_feed_decode_errors_total", "venue");
        let reconnects = m.by("maxx_feed_reconnects_total", "venue");
        let states = m.by("maxx_feed_state", "venue");
        let ages = m.by("maxx_feed_last_tick_age_seconds", "venue");
        let mut venues: Vec<&String> = ticks.keys().chain(frames.keys()).chain(states.keys()).collect();
        venues.sort();
        venues.dedup();
        let feeds = venues
            .into_iter()
            .map(|v| FeedRow {
                venue: v.clone(),
                state: states.get(v).copied().and_then(FeedState::from_value),
                age: finite(ages.get(v).copied()),
                ticks_per_s: rate(ticks_prev.get(v).copied(), ticks.get(v).copied(), secs),
                frames_per_s: rate(frames_prev.get(v).copied(), frames.get(v).copied(), secs),
                decode_errors: errors.get(v).copied().unwrap_or(0.0),
                reconnects: reconnects.get(v).copied().unwrap_or(0.0),
            })
            .collect();

        // Order flow by venue.
        let orders = m.by("maxx_orders_total", "venue");
        let orders_prev = prev_by("maxx_orders_total", "venue");
        let fills = m.by("maxx_fills_total", "venue");
        let fills_prev = prev_by("maxx_fills_total", "venue");
        let open = m.by("maxx_open_orders", "venue");
        let mut flow_venues: Vec<&String> = orders.keys().chain(fills.keys()).chain(open.keys()).collect();
        flow_venues.sort();
        flow_venues.dedup();
        let venue_rows = flow_venues
            .into_iter()
            .map(|v| VenueRow {
                venue: v.clone(),
                orders_per_s: rate(orders_prev.get(v).copied(), orders.get(v).copied(), secs),
                fills_per_s: rate(fills_prev.get(v).copied(), fills.get(v).copied(), secs),
                orders: orders.get(v).copied().unwrap_or(0.0),
                fills: fills.get(v).copied().unwrap_or(0.0),
                open: open.get(v).copied(),
            })
            .collect();

        let rejects_prev = prev_by("maxx_rejects_total", "reason");
        let rejects = m
            .by("maxx_rejects_total", "reason")
            .into_iter()
            .map(|(reason, total)| {
                let r = rate(rejects_prev.get(&reason).copied(), Some(total), secs);
                (reason, total, r)
            })
            .collect();

        let latency_us = QUANTILES
            .iter()
            .map(|(q, shown)| {
                let v = finite(m.get("maxx_tick_to_order_seconds", &[("quantile", q)]));
                (*shown, v.map(|s| s * 1e6))
            })
            .collect();
        let latency_count = finite(m.get("maxx_tick_to_order_seconds_count", &[]));
        let latency_sum = finite(m.get("maxx_tick_to_order_seconds_sum", &[]));
        let latency_mean_us = match (latency_sum, latency_count) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c * 1e6),
            _ => None,
        };

        let capacity = m.by("maxx_ring_capacity", "ring");
        let rings = m
            .by("maxx_ring_occupancy", "ring")
            .into_iter()
            .map(|(ring, used)| RingRow {
                capacity: capacity.get(&ring).copied(),
                ring,
                used,
            })
            .collect();

        let cpu_prev = prev_by("maxx_thread_cpu_seconds_total", "thread");
        let threads = m
            .by("maxx_thread_cpu_seconds_total", "thread")
            .into_iter()
            .map(|(t, total)| {
                let pct = rate(cpu_prev.get(&t).copied(), Some(total), secs).map(|r| r * 100.0);
                (t, pct, total)
            })
            .collect();

        let risk = m.by("maxx_risk_state", "scope");
        let risk_system = risk.get("*").copied().and_then(RiskState::from_value);
        let risk_scopes = risk
            .iter()
            .filter(|(scope, _)| scope.as_str() != "*")
            .filter_map(|(scope, v)| RiskState::from_value(*v).map(|s| (scope.clone(), s)))
            .filter(|(_, s)| *s != RiskState::Active)
            .collect();

        let equity = m.by("maxx_equity", "currency");
        let drawdown = m.by("maxx_drawdown_ratio", "currency");
        let lockbox = m.by("maxx_lockbox", "currency");
        let mut currencies: Vec<&String> = equity.keys().chain(drawdown.keys()).chain(lockbox.keys()).collect();
        currencies.sort();
        currencies.dedup();
        let money = currencies
            .into_iter()
            .map(|c| MoneyRow {
                currency: c.clone(),
                equity: finite(equity.get(c).copied()),
                drawdown: finite(drawdown.get(c).copied()),
                lockbox: finite(lockbox.get(c).copied()),
            })
            .collect();

        View {
            url: url.to_string(),
            interval,
            error: error.map(str::to_string),
            has_data: cur.is_some(),
            window: win,
            uptime: finite(m.get("maxx_uptime_seconds", &[])),
            ticks_per_s: rate(prev_sum("maxx_feed_ticks_total"), sum(m, "maxx_feed_ticks_total"), secs),
            signals_per_s: rate(prev_sum("maxx_signals_total"), sum(m, "maxx_signals_total"), secs),
            orders_per_s: rate(prev_sum("maxx_orders_total"), sum(m, "maxx_orders_total"), secs),
            fills_per_s: rate(prev_sum("maxx_fills_total"), sum(m, "maxx_fills_total"), secs),
            feeds,
            venues: venue_rows,
            rejects,
            latency_us,
            latency_count,
            latency_mean_us,
            rings,
            threads,
            redis_connected: m.get("maxx_redis_connected", &[]).map(|v| v != 0.0),
            redis_queue: finite(m.get("maxx_redis_queue_depth", &[])),
            risk_system,
            risk_scopes,
            kill_switch: m.get("maxx_kill_switch", &[]).map(|v| v != 0.0),
            money,
            malformed: m.malformed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing.

/// `12.3/s`, or `-` without a rate.
fn per_s(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}/s"))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

fn count(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{:.1}s", secs.max(0.0))
    }
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// A titled panel of lines.
struct Panel<'a> {
    title: &'static str,
    lines: Vec<Line<'a>>,
}

impl Panel<'_> {
    fn height(&self) -> u16 {
        u16::try_from(self.lines.len().max(1))
            .unwrap_or(u16::MAX)
            .saturating_add(2)
    }
}

fn header(view: &View) -> Vec<Line<'static>> {
    let mut first = vec![Span::styled("maxx top", bold()), Span::raw(format!("  {}", view.url))];
    if let Some(up) = view.uptime {
        first.push(Span::raw(format!("  up {}", duration(up))));
    }
    first.push(Span::styled(
        format!("  refresh {} ms", view.interval.as_millis()),
        dim(),
    ));
    if let Some((w, server)) = view.window {
        first.push(Span::styled(
            format!(
                "  rates over {w:.2} s ({} clock)",
                if server { "server" } else { "local" }
            ),
            dim(),
        ));
    }
    let second = match (&view.error, view.has_data) {
        (Some(e), true) => Line::from(vec![
            Span::styled(
                "scrape failed: ",
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::styled(e.clone(), Style::default().fg(Color::Red)),
            Span::raw(" (retrying; figures below are from the last good scrape)"),
        ]),
        (Some(e), false) => Line::from(vec![
            Span::styled(
                "cannot scrape: ",
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::styled(e.clone(), Style::default().fg(Color::Red)),
            Span::raw(" (retrying)"),
        ]),
        (None, false) => Line::from(Span::styled("waiting for the first scrape…", dim())),
        (None, true) => {
            let mut spans = vec![
                Span::raw(format!("ticks {}", per_s(view.ticks_per_s))),
                Span::raw(format!("  signals {}", per_s(view.signals_per_s))),
                Span::raw(format!("  orders {}", per_s(view.orders_per_s))),
                Span::raw(format!("  fills {}", per_s(view.fills_per_s))),
            ];
            if view.malformed > 0 {
                spans.push(Span::styled(
                    format!("  ({} malformed line(s) skipped)", view.malformed),
                    Style::default().fg(Color::Yellow),
                ));
            }
            Line::from(spans)
        }
    };
    vec![
        Line::from(first),
        second,
        Line::from(Span::styled("q, Esc or Ctrl-C quits", dim())),
    ]
}

fn feeds_panel(view: &View) -> Panel<'static> {
    let mut lines = vec![Line::styled(
        format!(
            "{:<12} {:<8} {:>10} {:>12} {:>12} {:>10} {:>10}",
            "venue", "state", "last tick", "ticks", "frames", "decode err", "reconnects"
        ),
        dim(),
    )];
    for f in &view.feeds {
        let state = f.state.map_or(Span::raw(format!("{:<8}", "?")), |s| {
            Span::styled(format!("{:<8}", s.name()), Style::default().fg(s.color()))
        });
        lines.push(Line::from(vec![
            Span::raw(format!("{:<12} ", f.venue)),
            state,
            Span::raw(format!(
                " {:>10} {:>12} {:>12} {:>10} {:>10}",
                opt(f.age, |a| format!("{a:.2}s ago")),
                per_s(f.ticks_per_s),
                per_s(f.frames_per_s),
                count(f.decode_errors),
                count(f.reconnects),
            )),
        ]));
    }
    if view.feeds.is_empty() {
        lines.push(Line::styled("no feed metrics", dim()));
    }
    Panel { title: "Feeds", lines }
}

fn flow_panel(view: &View) -> Panel<'static> {
    let mut lines = vec![Line::styled(
        format!(
            "{:<10} {:>9} {:>9} {:>7} {:>7} {:>5}",
            "venue", "orders/s", "fills/s", "orders", "fills", "open"
        ),
        dim(),
    )];
    for v in &view.venues {
        lines.push(Line::raw(format!(
            "{:<10} {:>9} {:>9} {:>7} {:>7} {:>5}",
            v.venue,
            opt(v.orders_per_s, |r| format!("{r:.1}")),
            opt(v.fills_per_s, |r| format!("{r:.1}")),
            count(v.orders),
            count(v.fills),
            opt(v.open, count),
        )));
    }
    // Only the reasons that happened, most frequent first: the exposition lists every reason.
    let mut rejects: Vec<_> = view.rejects.iter().filter(|(_, total, _)| *total > 0.0).collect();
    rejects.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if rejects.is_empty() {
        lines.push(Line::raw("rejects    none"));
    }
    for (reason, total, r) in rejects.iter().take(MAX_REJECT_LINES) {
        lines.push(Line::styled(
            format!("reject {reason:<22} {:>7} {:>9}", count(*total), per_s(*r)),
            Style::default().fg(Color::Yellow),
        ));
    }
    if rejects.len() > MAX_REJECT_LINES {
        lines.push(Line::styled(
            format!("… {} more reject reason(s)", rejects.len() - MAX_REJECT_LINES),
            dim(),
        ));
    }
    Panel {
        title: "Orders and fills",
        lines,
    }
}

fn latency_panel(view: &View) -> Panel<'static> {
    let mut lines: Vec<Line<'static>> = view
        .latency_us
        .iter()
        .map(|(q, v)| Line::raw(format!("{q:<6} {:>12}", opt(*v, |us| format!("{us:.1} µs")))))
        .collect();
    lines.push(Line::raw(format!(
        "{:<6} {:>12}",
        "mean",
        opt(view.latency_mean_us, |us| format!("{us:.1} µs"))
    )));
    lines.push(Line::styled(
        format!("{} orders measured", opt(view.latency_count, count)),
        dim(),
    ));
    Panel {
        title: "Tick to order",
        lines,
    }
}

fn risk_panel(view: &View) -> Panel<'static> {
    let mut lines = Vec::new();
    let system = view.risk_system.map_or(Span::raw("?"), |s| {
        Span::styled(s.name(), Style::default().fg(s.color()).add_modifier(Modifier::BOLD))
    });
    lines.push(Line::from(vec![Span::raw("risk      "), system]));
    for (scope, s) in &view.risk_scopes {
        lines.push(Line::from(vec![
            Span::raw(format!("  {scope:<8}")),
            Span::styled(s.name(), Style::default().fg(s.color())),
        ]));
    }
    let kill = match view.kill_switch {
        Some(true) => Span::styled("TRIPPED", Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)),
        Some(false) => Span::raw("off"),
        None => Span::raw("?"),
    };
    lines.push(Line::from(vec![Span::raw("kill      "), kill]));
    for row in &view.money {
        lines.push(Line::raw(format!(
            "equity    {} {}",
            opt(row.equity, |v| format!("{v:.2}")),
            row.currency
        )));
        let dd = opt(row.drawdown, |d| format!("{:.2}%", d * 100.0));
        let dd_style = match row.drawdown {
            Some(d) if d >= 0.05 => Style::default().fg(Color::Red),
            Some(d) if d >= 0.03 => Style::default().fg(Color::Yellow),
            _ => Style::default(),
        };
        lines.push(Line::from(vec![Span::raw("drawdown  "), Span::styled(dd, dd_style)]));
        if let Some(l) = row.lockbox {
            lines.push(Line::raw(format!("lock-box  {l:.2} {}", row.currency)));
        }
    }
    Panel {
        title: "Risk and equity",
        lines,
    }
}

fn rings_panel(view: &View) -> Panel<'static> {
    let mut lines = Vec::new();
    for r in &view.rings {
        let (cap, pct) = match r.capacity {
            Some(c) if c > 0.0 => (count(c), Some(r.used / c * 100.0)),
            Some(c) => (count(c), None),
            None => ("?".to_string(), None),
        };
        let style = match pct {
            Some(p) if p >= 90.0 => Style::default().fg(Color::Red),
            Some(p) if p >= 50.0 => Style::default().fg(Color::Yellow),
            _ => Style::default(),
        };
        lines.push(Line::styled(
            format!(
                "{:<20} {:>8}/{:<8} {:>7}",
                r.ring,
                count(r.used),
                cap,
                opt(pct, |p| format!("{p:.1}%"))
            ),
            style,
        ));
    }
    if lines.is_empty() {
        lines.push(Line::styled("no ring metrics", dim()));
    }
    Panel { title: "Rings", lines }
}

fn threads_panel(view: &View) -> Panel<'static> {
    let mut lines: Vec<Line<'static>> = view
        .threads
        .iter()
        .map(|(t, pct, total)| {
            Line::raw(format!(
                "{t:<16} {:>7} cpu {:>10}",
                opt(*pct, |p| format!("{p:.1}%")),
                format!("{total:.2}s")
            ))
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("no thread metrics", dim()));
    }
    Panel {
        title: "Threads",
        lines,
    }
}

fn redis_panel(view: &View) -> Panel<'static> {
    let connected = match view.redis_connected {
        Some(true) => Span::styled("connected", Style::default().fg(Color::Green)),
        Some(false) => Span::styled("DISCONNECTED", Style::default().fg(Color::Red)),
        None => Span::styled("not reported (bus off?)", dim()),
    };
    Panel {
        title: "Redis",
        lines: vec![
            Line::from(vec![Span::raw("redis     "), connected]),
            Line::raw(format!("queue     {}", opt(view.redis_queue, count))),
        ],
    }
}

/// Draws one frame of `view` over the whole area.
pub fn draw(frame: &mut Frame<'_>, view: &View) {
    let area = frame.area();
    let head = header(view);
    let rows: Vec<Vec<Panel<'static>>> = if view.has_data {
        vec![
            vec![feeds_panel(view)],
            vec![flow_panel(view), latency_panel(view)],
            vec![risk_panel(view), rings_panel(view)],
            vec![threads_panel(view), redis_panel(view)],
        ]
    } else {
        Vec::new()
    };
    // Side by side when there is room, stacked otherwise.
    let side_by_side = area.width >= 100;
    let mut heights = vec![u16::try_from(head.len()).unwrap_or(3)];
    let mut placed: Vec<Vec<Panel<'static>>> = Vec::new();
    for row in rows {
        if side_by_side {
            heights.push(row.iter().map(Panel::height).max().unwrap_or(0));
            placed.push(row);
        } else {
            for p in row {
                heights.push(p.height());
                placed.push(vec![p]);
            }
        }
    }
    let mut constraints: Vec<Constraint> = heights.iter().map(|h| Constraint::Length(*h)).collect();
    constraints.push(Constraint::Min(0));
    let areas = Layout::default()
        .direction(Direction::Vertical)
        .constraints(constraints)
        .split(area);
    frame.render_widget(Paragraph::new(head), areas[0]);
    for (row, rect) in placed.into_iter().zip(areas.iter().skip(1)) {
        let n = u32::try_from(row.len()).unwrap_or(1);
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints((0..n).map(|_| Constraint::Ratio(1, n)))
            .split(*rect);
        for (panel, col) in row.into_iter().zip(cols.iter()) {
            render_panel(frame, panel, *col);
        }
    }
}

fn render_panel(frame: &mut Frame<'_>, panel: Panel<'static>, rect: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {} ", panel.title), bold()));
    frame.render_widget(Paragraph::new(panel.lines).block(block), rect);
}

/// The height [`draw`] needs at `width` to show everything.
fn needed_height(view: &View, width: u16) -> u16 {
    let mut h = u16::try_from(header(view).len()).unwrap_or(3);
    if view.has_data {
        let rows = [
            vec![feeds_panel(view)],
            vec![flow_panel(view), latency_panel(view)],
            vec![risk_panel(view), rings_panel(view)],
            vec![threads_panel(view), redis_panel(view)],
        ];
        for row in rows {
            if width >= 100 {
                h += row.iter().map(Panel::height).max().unwrap_or(0);
            } else {
                h += row.iter().map(Panel::height).sum::<u16>();
            }
        }
    }
    h
}

/// One frame of `view` as plain text: drawn by [`draw`] into an off-screen buffer, styles
/// dropped, trailing blanks trimmed.
pub fn render_text(view: &View, width: u16) -> String {
    let height = needed_height(view, width);
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    if let Err(e) = terminal.draw(|f| draw(f, view)) {
        match e {}
    }
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_values_and_skips_comments() {
        let text = "# HELP maxx_feed_ticks_total Ticks.\n\
                    # TYPE maxx_feed_ticks_total counter\n\
                    maxx_feed_ticks_total{venue=\"binance\",kind=\"trade\"} 1027\n\
                    \n\
                    maxx_uptime_seconds 12.5\n\
                    maxx_tick_to_order_seconds{quantile=\"0.5\"} NaN\n\
                    big +Inf\n\
                    small -Inf 1700000000000\n\
                    sci 1.5e-6\n\
                    trailing_comma{a=\"1\",} 2\n\
                    spaced { a = \"1\" , b=\"2\" } 3\n";
        let m = parse(text);
        assert_eq!(m.malformed, 0);
        assert_eq!(m.samples.len(), 8);
        assert_eq!(
            m.get("maxx_feed_ticks_total", &[("venue", "binance"), ("kind", "trade")]),
            Some(1027.0)
        );
        assert_eq!(m.get("maxx_uptime_seconds", &[]), Some(12.5));
        assert!(
            m.get("maxx_tick_to_order_seconds", &[("quantile", "0.5")])
                .unwrap()
                .is_nan()
        );
        assert_eq!(m.get("big", &[]), Some(f64::INFINITY));
        assert_eq!(m.get("small", &[]), Some(f64::NEG_INFINITY));
        assert_eq!(m.get("sci", &[]), Some(1.5e-6));
        assert_eq!(m.get("trailing_comma", &[("a", "1")]), Some(2.0));
        assert_eq!(m.get("spaced", &[("a", "1"), ("b", "2")]), Some(3.0));
    }

    #[test]
    fn unescapes_label_values() {
        let m = parse(r#"x{reason="say \"hi\"\\n",path="C:\\dir",multi="a\nb"} 1"#);
        assert_eq!(m.malformed, 0, "{m:?}");
        let s = &m.samples[0];
        assert_eq!(s.label("reason"), Some("say \"hi\"\\n"));
        assert_eq!(s.label("path"), Some("C:\\dir"));
        assert_eq!(s.label("multi"), Some("a\nb"));
        // Braces, commas and `=` inside a quoted value are data.
        let m = parse(r#"y{v="a,b}c=d"} 7"#);
        assert_eq!(m.get("y", &[("v", "a,b}c=d")]), Some(7.0));
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let bad = [
            "1abc 1",               // name starts with a digit
            "noval",                // no value
            "x{a=\"1\"}",           // no value after labels
            "x{a=\"1\"",            // unclosed braces
            "x{a=\"1} 2",           // unterminated quote
            "x{a=1} 2",             // unquoted value
            "x{=\"1\"} 2",          // empty label name
            "x{a=\"\\q\"} 2",       // unknown escape
            "x{a=\"1\" b=\"2\"} 3", // missing comma
            "x abc",                // not a number
            "x infinity",           // not the format's spelling
            "x 1 notatimestamp",    // bad timestamp
            "x 1 2 3",              // trailing field
            "x{a=\"1\"}2",          // value not separated
            "{a=\"1\"} 2",          // no name
            "x{a=\"é\\",            // ends inside an escape
        ];
        let mut text = String::from("good 1\n");
        for b in bad {
            text.push_str(b);
            text.push('\n');
        }
        text.push_str("good2{a=\"b\"} 2\n");
        let m = parse(&text);
        assert_eq!(m.malformed, bad.len(), "{m:?}");
        assert_eq!(m.samples.len(), 2);
        assert_eq!(m.get("good2", &[("a", "b")]), Some(2.0));
        // Arbitrary bytes never panic.
        let junk: String = (0u32..600).filter_map(|i| char::from_u32(i * 7 % 0x3000)).collect();
        let _ = parse(&junk);
        let _ = parse("x{\"\\");
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:9100/metrics").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("127.0.0.1:9100", "/metrics"));
        let t = Target::parse("http://localhost:9100").unwrap();
        assert_eq!(t.path, "/metrics");
        let t = Target::parse("http://[::1]/m?x=1").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:80", "/m?x=1"));
        let e = Target::parse("https://127.0.0.1:9100/metrics").unwrap_err();
        assert!(format!("{e}").contains("https is not supported"), "{e}");
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("http:///metrics").is_err());
    }

    #[test]
    fn http_framing() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert!(response(ok).unwrap().is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde";
        assert_eq!(response(ok).unwrap().unwrap().unwrap(), "abcde");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(response(chunked).unwrap().unwrap().unwrap(), "abcde");
        assert!(response(&chunked[..chunked.len() - 7]).unwrap().is_none());
        let eof = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert!(response(eof).unwrap().is_none());
        assert_eq!(response_at_eof(eof).unwrap().unwrap().unwrap(), "all of it");
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
        let e = response(missing).unwrap().unwrap().unwrap_err();
        assert_eq!(format!("{e}"), "HTTP 404 Not Found: not found");
        assert!(head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    fn scrape(text: &str, at: Instant) -> Scrape {
        Scrape {
            at,
            metrics: parse(text),
        }
    }

    #[test]
    fn rates_from_counter_deltas_over_the_server_clock() {
        let t0 = Instant::now();
        let a = scrape(
            "maxx_uptime_seconds 10.5\nmaxx_feed_ticks_total{venue=\"binance\",kind=\"trade\"} 100\n\
             maxx_feed_ticks_total{venue=\"binance\",kind=\"book\"} 50\n\
             maxx_thread_cpu_seconds_total{thread=\"alpha\"} 3\nmaxx_orders_total{venue=\"binance\"} 9\n",
            t0,
        );
        let b = scrape(
            "maxx_uptime_seconds 12.5\nmaxx_feed_ticks_total{venue=\"binance\",kind=\"trade\"} 300\n\
             maxx_feed_ticks_total{venue=\"binance\",kind=\"book\"} 150\n\
             maxx_thread_cpu_seconds_total{thread=\"alpha\"} 4.5\nmaxx_orders_total{venue=\"binance\"} 5\n",
            t0 + Duration::from_millis(1),
        );
        let v = View::build("u", Duration::from_secs(1), Some(&a), Some(&b), None);
        assert_eq!(v.window, Some((2.0, true)));
        assert_eq!(v.feeds[0].ticks_per_s, Some(150.0));
        assert_eq!(v.ticks_per_s, Some(150.0));
        assert_eq!(v.threads, vec![("alpha".to_string(), Some(75.0), 4.5)]);
        // A counter that went down (a restart) has no rate.
        assert_eq!(v.venues[0].orders_per_s, None);
        // Without a previous scrape, no rates at all.
        let v = View::build("u", Duration::from_secs(1), None, Some(&b), None);
        assert_eq!(v.ticks_per_s, None);
        // Whole-second uptimes are too coarse: the local clock is used.
        let a = scrape("maxx_uptime_seconds 10\nc_total 1\n", t0);
        let b = scrape("maxx_uptime_seconds 11\nc_total 2\n", t0 + Duration::from_millis(500));
        assert_eq!(window(&a, &b), (0.5, false));
    }

    #[test]
    fn renders_an_error_frame_without_data() {
        let v = View::build(
            "http://x/metrics",
            Duration::from_secs(1),
            None,
            None,
            Some("connect: refused"),
        );
        let text = render_text(&v, 80);
        assert!(text.contains("cannot scrape: connect: refused (retrying)"), "{text}");
    }
}
