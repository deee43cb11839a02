//! OANDA v20 pricing-stream simulator: an HTTP/1.1 server on loopback that speaks the stream
//! protocol of `venues.md` §4 and plays the seeded [`MarketGen`] sequence as dealer quotes (or
//! the lines of a capture).
//!
//! It exists so that the OANDA connector (the HTTP streaming transport and the decoder) can be
//! tested against the real wire format without a network or an account: the request line and
//! headers, bearer-token authentication and its error bodies, a chunked body of
//! newline-delimited JSON whose lines may span chunks, heartbeats, conflation, and the faults
//! every simulator honours.
//!
//! What is served: `GET /v3/accounts/{accountID}/pricing/stream?instruments=A%2CB` answered by
//! `200` with `Content-Type: application/octet-stream` and `Transfer-Encoding: chunked`.
//! Each price line has the docs' key order and formats exactly (`asks`, `bids`,
//! `closeoutAsk`, `closeoutBid`, `instrument`, `status`, `time`; prices as strings with the
//! instrument's display precision, taken from its tick size; `liquidity` as an integer of
//! units; `time` RFC 3339 with nine fractional digits, or UNIX seconds with nine decimals when
//! the request says `Accept-Datetime-Format: UNIX`). With `live_fields` the live stream's
//! `"tradeable":true,"type":"PRICE"` follow `time`, keeping the alphabetical order.
//! Each price has [`OandaSimConfig::levels`] levels a side, one tick apart, with liquidity 1, 2,
//! 5 and 10 times the generated size at the best level (the ladder of the docs' USD_CAD lines);
//! the closeout prices are the deepest levels. Trades of the generator are not sent: OANDA is a
//! quote stream. A `{"time":...,"type":"HEARTBEAT"}` line follows every
//! [`OandaSimConfig::heartbeat_interval`] (5 s on the venue), whatever the price traffic.
//! With `snapshot=true` (the default) the current price of each requested instrument is sent
//! first; an instrument the market has not quoted yet is left out.
//!
//! Conflation as documented: at most one price per instrument per
//! [`OandaSimConfig::conflation`] window (250 ms on the venue), the last one of the window, sent
//! when the window closes. Windows start when the connection does, so they are not aligned
//! across connections. A zero window sends every price at once (useful in tests).
//! Lines are collected per loop turn and sent as chunks of at most
//! [`OandaSimConfig::max_chunk_bytes`], so a small value splits lines across chunks.
//!
//! Refusals, each with a JSON `{"errorMessage":...}` body and `Connection: close`: a method
//! other than `GET` is 405, a path other than the stream's 404, a missing or wrong
//! `Authorization: Bearer <token>` 401 (the documented "Insufficient authorization to perform
//! request."), an account other than the configured one 403 (the documented "The provided
//! request was forbidden."), and a missing or unknown instrument, an unknown
//! `Accept-Datetime-Format` or a `snapshot` other than `true`/`false` 400.
//! Other query parameters (`includeHomeConversions`) are ignored.
//! Deliberately not enforced: the 20 streams per IP and 2 new connections per second limits.
//!
//! Where the prices come from, as in the Binance simulator: with `shared_market` (the default)
//! one [`SharedMarket`] timeline per simulator, joined at the live end by each connection, and a
//! price's `time` is its event's scheduled time, the same on every connection (so two
//! overlapping connections carry identical lines for one price); otherwise a private generator
//! per connection, paced from the moment it connected, with times counted from then.
//! A connection that falls further behind the shared market than its log keeps is cut without
//! the last chunk, and [`OandaSimHandle::lagged`] counts it.
//!
//! **Capture replay** (`replay: Some(path)`): the stream's lines are read from a capture file
//! (`maxx_hot::capture` format, gzip allowed) when the simulator starts, and every connection
//! replays it from its first line, paced by the `recv_ns` deltas from the moment its request was
//! accepted (`shared_market` does not apply). Served, each as one line of the chunked body, byte
//! for byte as captured: the price lines (`"type":"PRICE"`, or no `type` with an `instrument`
//! and `bids` or `asks`, as in the docs' samples) of the instruments the request asked for, and
//! every `HEARTBEAT` line. Skipped when loading: prices of instruments the simulator does not
//! list, other message types and malformed lines. Nothing is generated: no snapshot (the
//! capture's first prices play that part), no heartbeats of the simulator's own, no conflation
//! (a captured stream was conflated by the venue), and since captured lines are never
//! rewritten, `Accept-Datetime-Format`, `levels` and `live_fields` do not apply to them. When
//! the capture ends the stream stays open and quiet, so a client's staleness watch will
//! reconnect and get the capture again from its start.
//!
//! Faults ([`OandaSimHandle::faults`]) act on every open connection:
//! - `silent`: no prices and no heartbeats; the market moves on and the connection stays open.
//! - `deaf`: not applicable. OANDA clients send nothing after the request (there is no ping to
//!   ignore), so the switch changes nothing here.
//! - `drop_all`: the TCP connection is closed at once, in the middle of the chunked body.
//! - `inject_garbage(n)`: `n` lines from [`GARBAGE_TEXT`] in turn, then one line that is not
//!   valid UTF-8, between price lines (each line whole, inside the chunked framing).
//! - `announce_shutdown`: OANDA has no maintenance notice, so the stream simply ends cleanly
//!   (the last, empty chunk) and the connection closes, as on [`OandaSimHandle::shutdown`];
//!   the simulator keeps accepting.
//!
//! Threads: one acceptor (`sim-oanda-acc`), one generator with a shared market
//! (`sim-oanda-mkt`), and one thread per connection (`sim-oanda-conn`), which sends what is due
//! and waits on the client's socket with a timeout of at most 20 ms (`POLL`), so that it notices
//! shutdown, faults and a client that has gone.
//! The token is compared but never logged.

use std::fmt::{self, Write as _};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::capture::{Capture, Line};
use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::ONE;
use serde_json::Value;
use tracing::{debug, warn};

use super::broadcast::{Cursor, DEFAULT_LOG_CAPACITY, SharedMarket};
use super::faults::{Due, Faults, GARBAGE_TEXT, Seen};
use super::market::{MarketGen, SimBookTicker, SimEvent, SimSymbol};
use super::server;

/// Longest a thread waits before looking at the shutdown flag and the faults again.
const POLL: Duration = Duration::from_millis(20);
/// Shortest wait between turns.
const MIN_WAIT: Duration = Duration::from_micros(100);
/// Longest a blocked write may stall the connection loop; the unsent bytes stay queued.
const WRITE_TIMEOUT: Duration = Duration::from_millis(20);
/// A client that has not sent its whole request head by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted; real ones are a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 16 << 10;
/// How long a closing connection waits for the client to close its side.
const CLOSE_DRAIN: Duration = Duration::from_millis(50);
/// A client that lets this much unsent data pile up is dropped as a slow consumer.
const MAX_WRITE_BUFFER: usize = 8 << 20;
/// Most events taken from the market in one loop turn.
const MAX_BATCH: usize = 256;
/// Most events a private generator runs ahead to find a first price for every instrument.
const MAX_SNAPSHOT_EVENTS: usize = 100_000;
/// Upper bound on the heartbeat interval; keeps deadline arithmetic far from overflow.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most levels a side: the docs' samples show two (EUR_USD) and four (USD_CAD).
pub const MAX_LEVELS: usize = 4;
/// Liquidity of each level as a multiple of the best level's, as in the docs' USD_CAD lines
/// (1, 2, 5 and 10 million).
const LADDER: [i64; MAX_LEVELS] = [1, 2, 5, 10];
/// The line that follows injected garbage text: not valid UTF-8.
const GARBAGE_BYTES: &[u8] = &[0xC3, 0x28, b'{', 0x80, 0xFE, 0xFF];

/// The account id a default configuration serves.
pub const DEFAULT_ACCOUNT: &str = "101-004-1234567-001";
/// The token a default configuration accepts.
pub const DEFAULT_TOKEN: &str = "sim-oanda-token";

/// `errorMessage` of a 401 (`venues.md` §4.5).
pub const UNAUTHORIZED_MESSAGE: &str = "Insufficient authorization to perform request.";
/// `errorMessage` of a 403 for another account (`venues.md` §4.5).
pub const FORBIDDEN_MESSAGE: &str = "The provided request was forbidden.";

/// What the OANDA simulator serves.
#[derive(Clone)]
pub struct OandaSimConfig {
    /// Seed of the synthetic market.
    pub seed: u64,
    /// Mean rate of ordinary market events over all symbols; bursts add to it. Only quote
    /// events become prices.
    pub events_per_sec: u32,
    /// The instruments listed, named as OANDA does (`EUR_USD`). `liquidity` is an integer of
    /// units, so a generated size is rounded up to whole units (never to zero); a whole-unit lot
    /// size (as in [`fx_symbols`]) keeps it exact.
    pub symbols: Vec<SimSymbol>,
    /// The one account whose stream may be requested.
    pub account_id: String,
    /// The personal access token `Authorization: Bearer` must carry.
    pub token: String,
    /// Interval between heartbeat lines (OANDA: 5 s).
    pub heartbeat_interval: Duration,
    /// Conflation window per instrument (OANDA: 250 ms); zero sends every price.
    pub conflation: Duration,
    /// Levels a side, 1 to [`MAX_LEVELS`].
    pub levels: usize,
    /// Largest chunk; lines longer than this are split across chunks.
    pub max_chunk_bytes: usize,
    /// Add the live stream's `"tradeable":true,"type":"PRICE"` to price lines (the docs'
    /// example lines have neither).
    pub live_fields: bool,
    /// One market timeline for the whole simulator (`true`), or a private generator per
    /// connection (`false`, so every connection sees identical prices).
    pub shared_market: bool,
    /// How many events the shared market keeps for connections that fall behind. At least 1.
    pub market_log: usize,
    /// Serve the lines of this capture file instead of the generator (see the module docs).
    pub replay: Option<PathBuf>,
}

impl fmt::Debug for OandaSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is left out on purpose.
        f.debug_struct("OandaSimConfig")
            .field("seed", &self.seed)
            .field("events_per_sec", &self.events_per_sec)
            .field("symbols", &self.symbols)
            .field("account_id", &self.account_id)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("conflation", &self.conflation)
            .field("levels", &self.levels)
            .field("max_chunk_bytes", &self.max_chunk_bytes)
            .field("live_fields", &self.live_fields)
            .field("shared_market", &self.shared_market)
            .field("market_log", &self.market_log)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl OandaSimConfig {
    /// OANDA's timings (5 s heartbeats, 250 ms conflation), two levels a side, 100 events per
    /// second, a shared market, and the default account and token.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            account_id: DEFAULT_ACCOUNT.to_string(),
            token: DEFAULT_TOKEN.to_string(),
            heartbeat_interval: Duration::from_secs(5),
            conflation: Duration::from_millis(250),
            levels: 2,
            max_chunk_bytes: 16 << 10,
            live_fields: false,
            shared_market: true,
            market_log: DEFAULT_LOG_CAPACITY,
            replay: None,
        }
    }
}

impl Default for OandaSimConfig {
    /// Seed 1 over [`fx_symbols`].
    fn default() -> Self {
        Self::new(1, fx_symbols())
    }
}

/// EUR_USD and USD_JPY with FX price grids (5 and 3 decimals) and liquidity in lots of
/// 10,000 units, for defaults and tests.
pub fn fx_symbols() -> Vec<SimSymbol> {
    fn listing(name: &str, start: &str, tick: &str) -> SimSymbol {
        // The literals below are valid; a typo fails every test at once.
        SimSymbol {
            venue_symbol: VenueSymbol::new(name).expect("valid symbol literal"),
            start_price: start.parse().expect("valid price literal"),
            tick_size: tick.parse().expect("valid price literal"),
            lot_size: "10000".parse().expect("valid quantity literal"),
        }
    }
    vec![
        listing("EUR_USD", "1.08512", "0.00001"),
        listing("USD_JPY", "151.234", "0.001"),
    ]
}

/// Starts the simulator on `bind` (port 0 picks a free port) and returns at once.
///
/// # Errors
/// `InvalidInput` if the configuration is unusable (no symbols, a zero rate, a bad price grid,
/// a symbol listed twice, a heartbeat interval outside 1 ms to 24 h, a conflation window over
/// 24 h, levels outside 1 to [`MAX_LEVELS`], a zero chunk size or market log, an empty account
/// or token, or a token that cannot be a header value); the error from reading the `replay`
/// capture (with its kind, naming the file); otherwise the error from binding the socket or
/// starting a thread.
pub fn spawn(bind: SocketAddr, cfg: OandaSimConfig) -> io::Result<OandaSimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    if !(Duration::from_millis(1)..=MAX_INTERVAL).contains(&cfg.heartbeat_interval) {
        return Err(invalid("heartbeat_interval must be between 1 ms and 24 h".into()));
    }
    if cfg.conflation > MAX_INTERVAL {
        return Err(invalid("conflation must be at most 24 h".into()));
    }
    if !(1..=MAX_LEVELS).contains(&cfg.levels) {
        return Err(invalid(format!("levels must be between 1 and {MAX_LEVELS}")));
    }
    if cfg.max_chunk_bytes == 0 || cfg.market_log == 0 {
        return Err(invalid("max_chunk_bytes and market_log must be at least 1".into()));
    }
    if cfg.account_id.is_empty() || !cfg.account_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(invalid("account_id may hold only ASCII letters, digits and -".into()));
    }
    if cfg.token.is_empty() || !cfg.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("token must be a non-empty word of visible ASCII".into()));
    }
    let market = MarketGen::new(cfg.seed, cfg.events_per_sec, &cfg.symbols).map_err(|e| invalid(e.to_string()))?;
    let mut listings: Vec<Listing> = Vec::with_capacity(cfg.symbols.len());
    for sym in &cfg.symbols {
        if listings.iter().any(|l| l.symbol == sym.venue_symbol) {
            return Err(invalid(format!("symbol {} is listed twice", sym.venue_symbol)));
        }
        listings.push(Listing {
            symbol: sym.venue_symbol,
            tick_raw: sym.tick_size.raw(),
            decimals: decimals_of(sym.tick_size.raw()),
        });
    }
    let replay = match &cfg.replay {
        Some(path) => Some(load_replay(path, &listings)?),
        None => None,
    };

    let listener = TcpListener::bind(bind)?;
    // Non-blocking so that the acceptor can notice shutdown without a wake-up connection.
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    // The shared market starts last, once nothing else can fail, so that its clock starts with
    // the simulator.
    let source = if let Some(lines) = replay {
        Source::Replay(lines)
    } else if cfg.shared_market {
        let shared = SharedMarket::start(market, cfg.market_log, "sim-oanda-mkt")?;
        let tracker = Tracker {
            cursor: shared.cursor(),
            last: vec![None; listings.len()],
            scratch: Vec::new(),
        };
        Source::Shared {
            market: shared,
            tracker: Mutex::new(tracker),
        }
    } else {
        Source::PerConnection(market)
    };
    let shared = Arc::new(Shared {
        listings,
        source,
        account_id: cfg.account_id,
        token: cfg.token,
        heartbeat_interval: cfg.heartbeat_interval,
        conflation: cfg.conflation,
        levels: cfg.levels,
        max_chunk_bytes: cfg.max_chunk_bytes,
        live_fields: cfg.live_fields,
        faults: Faults::default(),
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        lagged: AtomicU64::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-oanda-acc".into()).spawn({
        let shared = Arc::clone(&shared);
        move || server::accept_loop(&listener, &shared)
    });
    let acceptor = match acceptor {
        Ok(acceptor) => acceptor,
        Err(e) => {
            shared.stop_market();
            return Err(e);
        }
    };
    Ok(OandaSimHandle {
        local_addr,
        shared,
        acceptor: Some(acceptor),
    })
}

/// A running simulator. Dropping it shuts it down, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct OandaSimHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl OandaSimHandle {
    /// The address the simulator listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of client connections currently being served, counted from the TCP accept until
    /// the connection thread has closed the socket (refused requests included, briefly).
    pub fn connections(&self) -> usize {
        // Acquire pairs with the Release decrement in `OpenGuard::drop`, so a count that has
        // dropped means that connection's socket is already closed.
        self.shared.open.load(Ordering::Acquire)
    }

    /// The fault switches, shared with every connection thread; see the module docs for what
    /// each one does on this venue.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// How many connections have been cut because they fell further behind the shared market
    /// than its log keeps (always 0 without a shared market).
    pub fn lagged(&self) -> u64 {
        // Acquire pairs with the Release increment made before such a connection closes.
        self.shared.lagged.load(Ordering::Acquire)
    }

    /// Stops accepting, ends every stream with its last chunk, closes the connections and joins
    /// all threads. This takes about 100 ms at most: a 20 ms poll, 20 ms write timeouts towards
    /// clients that do not read, and a 50 ms wait for clients to close their side.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // Release pairs with the Acquire loads in the acceptor and connection loops.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            warn!("sim-oanda acceptor thread panicked");
        }
        // Every connection has ended, so nobody reads the market any more.
        self.shared.stop_market();
    }
}

impl Drop for OandaSimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// One listed instrument.
#[derive(Debug)]
struct Listing {
    symbol: VenueSymbol,
    tick_raw: i64,
    /// Display precision: the decimals of the tick size.
    decimals: u32,
}

/// The newest quote of every instrument, kept by reading the shared market up to where each
/// new connection joins it, for the connection's snapshot.
#[derive(Debug)]
struct Tracker {
    cursor: Cursor,
    last: Vec<Option<SimBookTicker>>,
    scratch: Vec<SimEvent>,
}

/// Where a simulator's prices come from.
#[derive(Debug)]
enum Source {
    /// A fresh generator, cloned for every connection.
    PerConnection(MarketGen),
    /// One timeline that every connection joins, and the snapshot tracker.
    Shared {
        market: SharedMarket,
        tracker: Mutex<Tracker>,
    },
    /// Captured lines, replayed from the start for every connection.
    Replay(Vec<ReplayLine>),
}

/// One captured line the simulator can serve.
#[derive(Debug)]
struct ReplayLine {
    /// When to send it, from the start of the connection: its `recv_ns` minus the first line's,
    /// never smaller than the previous line's.
    offset_ns: u64,
    /// The instrument of a price, as an index into the listings; `None` for a heartbeat.
    instrument: Option<usize>,
    /// The line as captured, without its newline.
    text: Box<[u8]>,
}

/// Reads a capture and keeps the heartbeats and the prices of listed instruments.
fn load_replay(path: &Path, listings: &[Listing]) -> io::Result<Vec<ReplayLine>> {
    let capture = Capture::load(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading the replay capture {}: {e}", path.display())))?;
    let mut lines = Vec::new();
    let mut first_ns = None;
    let mut offset_ns = 0;
    let mut skipped = 0usize;
    for line in capture.lines() {
        let Line::Frame { recv_ns, start, end } = *line else {
            skipped += 1;
            continue;
        };
        let first = *first_ns.get_or_insert(recv_ns);
        // A capture whose clock stepped back sends the line at once rather than reorder it.
        offset_ns = offset_ns.max(recv_ns.saturating_sub(first));
        let text = capture.frame(start, end);
        match classify(text, listings) {
            Some(instrument) => lines.push(ReplayLine {
                offset_ns,
                instrument,
                text: text.into(),
            }),
            None => skipped += 1,
        }
    }
    if lines.is_empty() {
        warn!(path = %path.display(), skipped, "sim-oanda: the replay capture has no line to serve");
    } else {
        debug!(path = %path.display(), lines = lines.len(), skipped, "sim-oanda: replay capture loaded");
    }
    Ok(lines)
}

/// `Some(None)` for a heartbeat line, `Some(Some(i))` for a price of listing `i`, `None` for
/// anything the simulator does not serve. Prices are told apart as `venues.md` §4.2 says: the
/// live stream's carry `"type":"PRICE"`, the docs' samples no `type` but an `instrument` and
/// their levels.
fn classify(line: &[u8], listings: &[Listing]) -> Option<Option<usize>> {
    let value: Value = serde_json::from_slice(line).ok()?;
    let object = value.as_object()?;
    match object.get("type") {
        Some(Value::String(t)) if t == "HEARTBEAT" => return Some(None),
        Some(Value::String(t)) if t == "PRICE" => {}
        None if object.contains_key("bids") || object.contains_key("asks") => {}
        _ => return None,
    }
    let name = object.get("instrument")?.as_str()?;
    let i = listings.iter().position(|l| l.symbol.as_str() == name)?;
    Some(Some(i))
}

/// State shared by the acceptor and every connection thread; read-only apart from the flag,
/// the counters, the tracker and the fault switches.
#[derive(Debug)]
struct Shared {
    listings: Vec<Listing>,
    source: Source,
    account_id: String,
    token: String,
    heartbeat_interval: Duration,
    conflation: Duration,
    levels: usize,
    max_chunk_bytes: usize,
    live_fields: bool,
    faults: Faults,
    stop: AtomicBool,
    open: AtomicUsize,
    lagged: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `OandaSimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    fn stop_market(&self) {
        if let Source::Shared { market, .. } = &self.source {
            market.shutdown();
        }
    }
}

impl server::Served for Shared {
    const NAME: &'static str = "oanda";
    type Ticket = ();

    fn stopping(&self) -> bool {
        Shared::stopping(self)
    }

    fn open(&self) -> &AtomicUsize {
        &self.open
    }

    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn accepted(&self) {}

    fn serve(&self, stream: TcpStream, peer: SocketAddr, (): (), seen: Seen) {
        serve(stream, peer, seen, self);
    }
}

fn serve(mut stream: TcpStream, peer: SocketAddr, seen: Seen, shared: &Shared) {
    let configured = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = configured {
        debug!(%peer, error = %e, "sim-oanda: cannot configure socket");
        return;
    }
    let request = match read_request(&mut stream, shared) {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(refusal) => return refuse(stream, peer, &refusal),
    };
    let route = match route(&request, shared) {
        Ok(route) => route,
        Err(refusal) => return refuse(stream, peer, &refusal),
    };
    debug!(%peer, instruments = route.instruments.len(), "sim-oanda: client connected");
    let mut session = Session::new(stream, route, peer, seen, shared);
    session.run();
}

/// A request the simulator turns down.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        let reason = match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        Self {
            status,
            reason,
            message: message.into(),
        }
    }

    /// The whole response: status line, headers and the JSON error body.
    fn response(&self) -> String {
        let body = format!(
            "{{\"errorMessage\":{}}}",
            serde_json::Value::from(self.message.as_str())
        );
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            self.reason,
            body.len()
        )
    }
}

/// Sends the refusal, closes our side and lets the client read it before the socket goes.
fn refuse(mut stream: TcpStream, peer: SocketAddr, refusal: &Refusal) {
    debug!(%peer, status = refusal.status, message = %refusal.message, "sim-oanda: request refused");
    let _ = stream.write_all(refusal.response().as_bytes());
    drain_and_close(&mut stream);
}

/// Half-closes and reads until the client closes too (or briefly), so that unread request
/// bytes do not turn our close into a reset that could destroy the response in flight.
fn drain_and_close(stream: &mut TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + CLOSE_DRAIN;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
    let mut sink = [0u8; 512];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    /// Header names in lower case, values trimmed.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the request head; `Ok(None)` if the client gave up, was too slow or the simulator is
/// stopping; a refusal for a malformed or oversized head.
fn read_request(stream: &mut TcpStream, shared: &Shared) -> Result<Option<Request>, Refusal> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(end) = find_head_end(&head) {
            break end;
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(Refusal::new(400, "Request header too large"));
        }
        if shared.stopping() || Instant::now() >= deadline {
            return Ok(None);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => {}
            Err(_) => return Ok(None),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let mut lines = text.lines();
    let malformed = || Refusal::new(400, "Malformed request");
    let first = lines.next().ok_or_else(malformed)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(malformed());
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(malformed)?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    }))
}

/// Length of the head including its closing empty line, if it is all there.
fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| data.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// What a stream request asked for.
#[derive(Debug, PartialEq, Eq)]
struct Route {
    /// Indexes into the listings, in the order requested, without repeats.
    instruments: Vec<usize>,
    unix: bool,
    snapshot: bool,
}

/// Checks a request in the order a client's mistakes are best reported: method, path,
/// credentials, account, then the parameters.
fn route(request: &Request, shared: &Shared) -> Result<Route, Refusal> {
    if request.method != "GET" {
        return Err(Refusal::new(405, format!("Method {} is not allowed", request.method)));
    }
    let (path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    let account = path
        .strip_prefix("/v3/accounts/")
        .and_then(|rest| rest.strip_suffix("/pricing/stream"))
        .filter(|a| !a.is_empty() && !a.contains('/'));
    let Some(account) = account else {
        return Err(Refusal::new(404, format!("No resource at {path}")));
    };
    // Compared, never logged.
    let authorized = request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if !authorized {
        return Err(Refusal::new(401, UNAUTHORIZED_MESSAGE));
    }
    if account != shared.account_id {
        return Err(Refusal::new(403, FORBIDDEN_MESSAGE));
    }
    let unix = match request.header("accept-datetime-format") {
        None | Some("RFC3339") => false,
        Some("UNIX") => true,
        Some(_) => {
            return Err(Refusal::new(
                400,
                "Invalid value specified for 'Accept-Datetime-Format'",
            ));
        }
    };
    let mut instruments: Option<Vec<usize>> = None;
    let mut snapshot = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "instruments" => {
                let mut list = Vec::new();
                for name in value.split(',') {
                    let Some(i) = shared.listings.iter().position(|l| l.symbol.as_str() == name) else {
                        return Err(Refusal::new(400, "Invalid value specified for 'instruments'"));
                    };
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
                instruments = Some(list);
            }
            "snapshot" => {
                snapshot = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Refusal::new(400, "Invalid value specified for 'snapshot'")),
                }
            }
            // Other parameters (`includeHomeConversions`) change nothing here.
            _ => {}
        }
    }
    let Some(instruments) = instruments else {
        return Err(Refusal::new(400, "Invalid value specified for 'instruments'"));
    };
    Ok(Route {
        instruments,
        unix,
        snapshot,
    })
}

/// Decodes `%XX` escapes (the comma between instruments is `%2C`); malformed escapes stay.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a connection loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    Maintenance,
    Dropped,
    ClientClosed,
    SlowConsumer,
    Lagged(u64),
    Failed(io::Error),
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The decimals of a tick size given in raw 10^-8 units (`0.00001` → 5, `1` → 0).
fn decimals_of(tick_raw: i64) -> u32 {
    let mut decimals = 8;
    let mut raw = tick_raw;
    while decimals > 0 && raw % 10 == 0 {
        raw /= 10;
        decimals -= 1;
    }
    decimals
}

/// A size as OANDA's integer `liquidity`: whole units, rounded up so that a level is never
/// empty.
fn whole_units(qty: maxx_hot::num::Qty) -> i64 {
    qty.raw() / ONE + i64::from(qty.raw() % ONE != 0)
}

/// A price with exactly `decimals` places, as OANDA prints it (`1.08510`, `151.234`).
struct Decimal {
    raw: i64,
    decimals: u32,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Prices are positive and on the tick grid, so no digit below `decimals` is lost.
        let int = self.raw / ONE;
        if self.decimals == 0 {
            return write!(f, "{int}");
        }
        let frac = (self.raw % ONE) / 10i64.pow(8 - self.decimals);
        write!(f, "{int}.{frac:0width$}", width = self.decimals as usize)
    }
}

/// `ns` since the epoch as RFC 3339 with nine fractional digits, UTC (`...T15:05:47.960449532Z`).
fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `ns` since the epoch as UNIX seconds with nine decimals (`1474383947.960449532`).
fn unix_time(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// The proleptic-Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Nanoseconds since the Unix epoch; 0 if the clock is before 1970.
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A connection's place in its source of prices.
enum Feed {
    /// Its own generator, paced from the connection's start; `base_ns` is the offset of the
    /// last event its snapshot consumed, `start_unix_ns` the wall clock when it connected.
    Own {
        market: MarketGen,
        next: SimEvent,
        base_ns: u64,
        start_unix_ns: u64,
    },
    /// A cursor into the simulator's shared market.
    Shared(Cursor),
    /// The index of the next captured line, paced from the connection's start.
    Replay { next: usize },
}

impl Feed {
    /// The `time` of an event due at `offset_ns`.
    fn time_ns(&self, offset_ns: u64) -> u64 {
        match self {
            Feed::Own {
                base_ns, start_unix_ns, ..
            } => start_unix_ns.saturating_add(offset_ns.saturating_sub(*base_ns)),
            Feed::Shared(cursor) => cursor.epoch_unix_ns().saturating_add(offset_ns),
            // Captured lines keep their own times; nothing generated is timed on a replay.
            Feed::Replay { .. } => wall_clock_ns(),
        }
    }
}

/// One client connection: its instruments, its place in the market, its conflation windows,
/// its output queue and the faults it has acted on.
struct Session<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    peer: SocketAddr,
    feed: Feed,
    /// Events due in this turn; kept to reuse its allocation.
    batch: Vec<SimEvent>,
    start: Instant,
    /// Per listing: whether this connection asked for it.
    subscribed: Vec<bool>,
    unix: bool,
    /// Per listing: the newest price of the current conflation window, not yet sent.
    pending: Vec<Option<SimBookTicker>>,
    window_end: Instant,
    /// When the next generated heartbeat is due (never in a capture replay).
    next_heartbeat: Option<Instant>,
    /// Lines of this turn, before chunking.
    lines: Vec<u8>,
    /// Chunked bytes not yet written; `out[sent..]` is what is left.
    out: Vec<u8>,
    sent: usize,
    /// The one-shot fault generations this connection has acted on.
    seen: Seen,
    /// How many garbage texts were sent, so that successive injections go on through the list.
    garbage_sent: usize,
}

impl<'a> Session<'a> {
    fn new(stream: TcpStream, route: Route, peer: SocketAddr, seen: Seen, shared: &'a Shared) -> Self {
        let n = shared.listings.len();
        let mut subscribed = vec![false; n];
        for &i in &route.instruments {
            subscribed[i] = true;
        }
        let start = Instant::now();
        let (feed, snapshot) = match &shared.source {
            Source::PerConnection(market) => {
                let (feed, snapshot) = own_feed(market.clone(), &subscribed);
                (feed, snapshot)
            }
            Source::Shared { market, tracker } => {
                let mut tracker = tracker.lock().unwrap_or_else(PoisonError::into_inner);
                let cursor = market.cursor();
                catch_up(&mut tracker, cursor.position());
                (Feed::Shared(cursor), tracker.last.clone())
            }
            // The capture's first prices play the snapshot's part.
            Source::Replay(_) => (Feed::Replay { next: 0 }, vec![None; n]),
        };
        // A capture replay serves the captured heartbeats instead of its own.
        let next_heartbeat = match feed {
            Feed::Replay { .. } => None,
            Feed::Own { .. } | Feed::Shared(_) => Some(start + shared.heartbeat_interval),
        };
        let mut session = Self {
            stream,
            shared,
            peer,
            feed,
            batch: Vec::with_capacity(MAX_BATCH),
            start,
            subscribed,
            unix: route.unix,
            pending: vec![None; n],
            window_end: start + shared.conflation,
            next_heartbeat,
            lines: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            sent: 0,
            // Taken when the connection was accepted: a fault raised before that is not for it.
            seen,
            garbage_sent: 0,
        };
        session.out.extend_from_slice(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        if route.snapshot && !shared.faults.silent() {
            let snapshot_time = wall_clock_ns();
            for &i in &route.instruments {
                if let Some(quote) = snapshot[i] {
                    let time = match session.feed {
                        // A private generator's clock starts now.
                        Feed::Own { .. } => snapshot_time,
                        Feed::Shared(_) | Feed::Replay { .. } => session.feed.time_ns(quote.offset_ns),
                    };
                    session.render_price(&quote, time);
                }
            }
        }
        session
    }

    fn run(&mut self) {
        let end = loop {
            if let Err(end) = self.turn() {
                break end;
            }
        };
        let peer = self.peer;
        match end {
            End::Shutdown | End::Maintenance => {
                // The stream ends cleanly: what is queued, then the last chunk. Best effort:
                // the client may already be gone.
                self.frame_chunks();
                self.out.extend_from_slice(b"0\r\n\r\n");
                let deadline = Instant::now() + CLOSE_DRAIN;
                while self.sent < self.out.len() && Instant::now() < deadline && self.flush().is_ok() {}
                drain_and_close(&mut self.stream);
                debug!(%peer, maintenance = matches!(end, End::Maintenance), "sim-oanda: stream ended");
            }
            End::Dropped => {
                // Closing mid-body, with nothing more written, is the whole point of the fault.
                let _ = self.stream.shutdown(Shutdown::Both);
                debug!(%peer, "sim-oanda: connection dropped by fault injection");
            }
            End::ClientClosed => debug!(%peer, "sim-oanda: client closed the connection"),
            End::SlowConsumer => warn!(%peer, "sim-oanda: client does not read, dropping the connection"),
            End::Lagged(missed) => {
                // Release pairs with the Acquire load in `OandaSimHandle::lagged`; counted before
                // the close so that a test that sees the connection gone also sees the count.
                self.shared.lagged.fetch_add(1, Ordering::Release);
                warn!(%peer, missed, "sim-oanda: client fell behind the market, dropping the connection");
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            End::Failed(e) => debug!(%peer, error = %e, "sim-oanda: connection failed"),
        }
    }

    /// One turn: act on faults, queue what is due, write, then wait on the client's socket
    /// until the next thing is due.
    fn turn(&mut self) -> Result<(), End> {
        if self.shared.stopping() {
            return Err(End::Shutdown);
        }
        let faults = &self.shared.faults;
        let Due {
            drop,
            garbage,
            shutdown,
        } = faults.poll(&mut self.seen);
        if drop {
            return Err(End::Dropped);
        }
        if garbage > 0 {
            self.queue_garbage(garbage);
        }
        if shutdown {
            return Err(End::Maintenance);
        }
        let silent = faults.silent();
        let now = Instant::now();
        let next_due = self.take_due(silent)?;
        let conflating = !self.shared.conflation.is_zero();
        if conflating && now >= self.window_end {
            for i in 0..self.pending.len() {
                if let Some(quote) = self.pending[i].take() {
                    let time = self.feed.time_ns(quote.offset_ns);
                    self.render_price(&quote, time);
                }
            }
            while self.window_end <= now {
                self.window_end += self.shared.conflation;
            }
        }
        if let Some(at) = self.next_heartbeat
            && now >= at
        {
            if !silent {
                self.render_heartbeat();
            }
            self.next_heartbeat = Some(now + self.shared.heartbeat_interval);
        }
        self.frame_chunks();
        self.flush()?;

        let mut wake = now + POLL;
        if let Some(at) = self.next_heartbeat {
            wake = wake.min(at);
        }
        if let Some(due) = next_due {
            wake = wake.min(due);
        }
        if conflating && self.pending.iter().any(Option::is_some) {
            wake = wake.min(self.window_end);
        }
        if self.sent < self.out.len() {
            // The socket was full: try again soon.
            wake = wake.min(now + Duration::from_millis(1));
        }
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if let Err(e) = self.stream.set_read_timeout(Some(wait)) {
            return Err(End::Failed(e));
        }
        // The client sends nothing after its request; a read only tells us it has gone.
        let mut sink = [0u8; 256];
        match self.stream.read(&mut sink) {
            Ok(0) => Err(End::ClientClosed),
            Ok(_) => Ok(()),
            Err(e) if would_block(&e) || e.kind() == ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(End::Failed(e)),
        }
    }

    /// Takes the market events that are due, queueing (or, when conflating, holding) the
    /// prices of the instruments asked for; when `silent` they are only consumed. Returns when
    /// the next one is due.
    fn take_due(&mut self, silent: bool) -> Result<Option<Instant>, End> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let next_due = match &mut self.feed {
            Feed::Own {
                market, next, base_ns, ..
            } => {
                let elapsed_ns = self.start.elapsed().as_nanos();
                while batch.len() < MAX_BATCH && u128::from(next.offset_ns().saturating_sub(*base_ns)) <= elapsed_ns {
                    batch.push(std::mem::replace(next, market.next_event()));
                }
                self.start
                    .checked_add(Duration::from_nanos(next.offset_ns().saturating_sub(*base_ns)))
            }
            Feed::Shared(cursor) => {
                cursor
                    .read_into(MAX_BATCH, &mut batch)
                    .map_err(|lag| End::Lagged(lag.missed))?;
                cursor.next_due()
            }
            Feed::Replay { .. } => {
                self.batch = batch;
                return Ok(self.take_replay(silent));
            }
        };
        if silent {
            self.pending.iter_mut().for_each(|p| *p = None);
        } else {
            for event in &batch {
                let SimEvent::BookTicker(quote) = event else { continue };
                if !self.subscribed[quote.symbol] {
                    continue;
                }
                if self.shared.conflation.is_zero() {
                    let time = self.feed.time_ns(quote.offset_ns);
                    self.render_price(quote, time);
                } else {
                    self.pending[quote.symbol] = Some(*quote);
                }
            }
        }
        self.batch = batch;
        Ok(next_due)
    }

    /// [`take_due`](Self::take_due) for a capture replay: queues the captured lines that are due
    /// (at most `MAX_BATCH`) and that this connection asked for, as captured, or only passes
    /// over them while `silent`; returns when the next one is due.
    fn take_replay(&mut self, silent: bool) -> Option<Instant> {
        let shared = self.shared;
        let (Source::Replay(lines), Feed::Replay { next }) = (&shared.source, &mut self.feed) else {
            return None;
        };
        let elapsed_ns = self.start.elapsed().as_nanos();
        let from = *next;
        let mut to = from;
        while to < lines.len() && to - from < MAX_BATCH && u128::from(lines[to].offset_ns) <= elapsed_ns {
            to += 1;
        }
        *next = to;
        if !silent {
            for line in &lines[from..to] {
                if line.instrument.is_none_or(|i| self.subscribed[i]) {
                    self.lines.extend_from_slice(&line.text);
                    self.lines.push(b'\n');
                }
            }
        }
        lines
            .get(to)
            .and_then(|line| self.start.checked_add(Duration::from_nanos(line.offset_ns)))
    }

    /// Queues `n` garbage lines, going on through [`GARBAGE_TEXT`] where the last injection
    /// stopped, then one line that is not UTF-8.
    fn queue_garbage(&mut self, n: u64) {
        debug!(peer = %self.peer, n, "sim-oanda: injecting garbage lines");
        for _ in 0..n {
            let text = GARBAGE_TEXT[self.garbage_sent % GARBAGE_TEXT.len()];
            self.garbage_sent = self.garbage_sent.wrapping_add(1);
            self.lines.extend_from_slice(text.as_bytes());
            self.lines.push(b'\n');
        }
        self.lines.extend_from_slice(GARBAGE_BYTES);
        self.lines.push(b'\n');
    }

    fn time_text(&self, ns: u64) -> String {
        if self.unix { unix_time(ns) } else { rfc3339(ns) }
    }

    /// Appends a price line in the docs' key order.
    fn render_price(&mut self, quote: &SimBookTicker, time_ns: u64) {
        let listing = &self.shared.listings[quote.symbol];
        let price = |raw: i64| Decimal {
            raw,
            decimals: listing.decimals,
        };
        let mut line = String::with_capacity(512);
        let mut deepest_ask = quote.ask.raw();
        line.push_str("{\"asks\":[");
        for (i, mult) in LADDER.iter().take(self.shared.levels).enumerate() {
            let at = quote.ask.raw() + i as i64 * listing.tick_raw;
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                line,
                "{sep}{{\"liquidity\":{},\"price\":\"{}\"}}",
                whole_units(quote.ask_qty) * mult,
                price(at)
            );
            deepest_ask = at;
        }
        let mut deepest_bid = quote.bid.raw();
        line.push_str("],\"bids\":[");
        for (i, mult) in LADDER.iter().take(self.shared.levels).enumerate() {
            let at = quote.bid.raw() - i as i64 * listing.tick_raw;
            // Near zero the book runs out of levels before the price does.
            if at <= 0 {
                break;
            }
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                line,
                "{sep}{{\"liquidity\":{},\"price\":\"{}\"}}",
                whole_units(quote.bid_qty) * mult,
                price(at)
            );
            deepest_bid = at;
        }
        let _ = write!(
            line,
            "],\"closeoutAsk\":\"{}\",\"closeoutBid\":\"{}\",\"instrument\":\"{}\",\"status\":\"tradeable\",\"time\":\"{}\"",
            price(deepest_ask),
            price(deepest_bid),
            listing.symbol,
            self.time_text(time_ns)
        );
        if self.shared.live_fields {
            line.push_str(",\"tradeable\":true,\"type\":\"PRICE\"");
        }
        line.push_str("}\n");
        self.lines.extend_from_slice(line.as_bytes());
    }

    fn render_heartbeat(&mut self) {
        let line = format!(
            "{{\"time\":\"{}\",\"type\":\"HEARTBEAT\"}}\n",
            self.time_text(wall_clock_ns())
        );
        self.lines.extend_from_slice(line.as_bytes());
    }

    /// Moves this turn's lines into the output as chunks of at most `max_chunk_bytes`.
    fn frame_chunks(&mut self) {
        for piece in self.lines.chunks(self.shared.max_chunk_bytes) {
            let _ = write!(self.out, "{:x}\r\n", piece.len());
            self.out.extend_from_slice(piece);
            self.out.extend_from_slice(b"\r\n");
        }
        self.lines.clear();
    }

    /// Writes what the socket takes now; the rest waits for the next turn.
    fn flush(&mut self) -> Result<(), End> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(End::ClientClosed),
                Ok(n) => self.sent += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Failed(e)),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.out.len() - self.sent > MAX_WRITE_BUFFER {
            return Err(End::SlowConsumer);
        }
        Ok(())
    }
}

/// A private generator for one connection, run ahead until every instrument asked for has a
/// price (the snapshot); the connection's clock starts after those events.
fn own_feed(mut market: MarketGen, subscribed: &[bool]) -> (Feed, Vec<Option<SimBookTicker>>) {
    let mut last = vec![None; subscribed.len()];
    let mut base_ns = 0;
    let mut missing = subscribed.iter().filter(|s| **s).count();
    let mut next = market.next_event();
    for _ in 0..MAX_SNAPSHOT_EVENTS {
        if missing == 0 {
            break;
        }
        let event = std::mem::replace(&mut next, market.next_event());
        base_ns = event.offset_ns();
        if let SimEvent::BookTicker(quote) = event
            && subscribed[quote.symbol]
        {
            if last[quote.symbol].is_none() {
                missing -= 1;
            }
            last[quote.symbol] = Some(quote);
        }
    }
    let feed = Feed::Own {
        market,
        next,
        base_ns,
        start_unix_ns: wall_clock_ns(),
    };
    (feed, last)
}

/// Reads the tracker's cursor up to `position` (where a new connection joins), keeping the
/// newest quote of every instrument.
fn catch_up(tracker: &mut Tracker, position: u64) {
    let Tracker { cursor, last, scratch } = tracker;
    while cursor.position() < position {
        scratch.clear();
        let want = usize::try_from(position - cursor.position())
            .unwrap_or(usize::MAX)
            .min(4096);
        match cursor.read_into(want, scratch) {
            Ok(0) => break,
            Ok(_) => {}
            // The log dropped events nobody needed yet: go on from the oldest it keeps.
            Err(_) => continue,
        }
        for event in scratch.iter() {
            if let SimEvent::BookTicker(quote) = event {
                last[quote.symbol] = Some(*quote);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        let symbols = fx_symbols();
        Shared {
            listings: symbols
                .iter()
                .map(|s| Listing {
                    symbol: s.venue_symbol,
                    tick_raw: s.tick_size.raw(),
                    decimals: decimals_of(s.tick_size.raw()),
                })
                .collect(),
            source: Source::PerConnection(MarketGen::new(1, 10, &symbols).unwrap()),
            account_id: DEFAULT_ACCOUNT.into(),
            token: "tok".into(),
            heartbeat_interval: Duration::from_secs(5),
            conflation: Duration::ZERO,
            levels: 2,
            max_chunk_bytes: 100,
            live_fields: false,
            faults: Faults::default(),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    const PATH: &str = "/v3/accounts/101-004-1234567-001/pricing/stream";

    #[test]
    fn routes_check_method_path_token_account_and_parameters() {
        let shared = shared();
        let auth = [("Authorization", "Bearer tok")];
        let status = |r: Result<Route, Refusal>| r.map_err(|e| e.status);
        let ok = route(
            &request("GET", &format!("{PATH}?instruments=USD_JPY%2CEUR_USD%2cUSD_JPY"), &auth),
            &shared,
        );
        assert_eq!(
            ok,
            Ok(Route {
                instruments: vec![1, 0],
                unix: false,
                snapshot: true
            })
        );
        let unix = [("Authorization", "Bearer tok"), ("Accept-Datetime-Format", "UNIX")];
        let r = route(
            &request("GET", &format!("{PATH}?snapshot=false&instruments=EUR_USD&x=1"), &unix),
            &shared,
        );
        assert_eq!(
            r,
            Ok(Route {
                instruments: vec![0],
                unix: true,
                snapshot: false
            })
        );
        let get = |target: &str, headers: &[(&str, &str)]| status(route(&request("GET", target, headers), &shared));
        assert_eq!(status(route(&request("POST", PATH, &auth), &shared)), Err(405));
        assert_eq!(get("/v3/accounts/1/pricing", &auth), Err(404));
        assert_eq!(get("/v3/accounts//pricing/stream", &auth), Err(404));
        assert_eq!(get(&format!("{PATH}?instruments=EUR_USD"), &[]), Err(401));
        assert_eq!(
            get(
                &format!("{PATH}?instruments=EUR_USD"),
                &[("Authorization", "Bearer tok2")]
            ),
            Err(401)
        );
        assert_eq!(
            get(&format!("{PATH}?instruments=EUR_USD"), &[("Authorization", "tok")]),
            Err(401)
        );
        assert_eq!(
            get("/v3/accounts/9/pricing/stream?instruments=EUR_USD", &auth),
            Err(403)
        );
        assert_eq!(get(PATH, &auth), Err(400));
        assert_eq!(get(&format!("{PATH}?instruments="), &auth), Err(400));
        assert_eq!(get(&format!("{PATH}?instruments=EUR_GBP"), &auth), Err(400));
        assert_eq!(
            get(&format!("{PATH}?instruments=EUR_USD&snapshot=yes"), &auth),
            Err(400)
        );
        let bad_format = [("Authorization", "Bearer tok"), ("Accept-Datetime-Format", "ISO")];
        assert_eq!(get(&format!("{PATH}?instruments=EUR_USD"), &bad_format), Err(400));
    }

    #[test]
    fn refusals_carry_the_documented_json_body() {
        let r = Refusal::new(401, UNAUTHORIZED_MESSAGE).response();
        let body = r#"{"errorMessage":"Insufficient authorization to perform request."}"#;
        assert_eq!(
            r,
            format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn prices_and_times_are_printed_like_oanda() {
        assert_eq!(decimals_of(1_000), 5);
        assert_eq!(decimals_of(100_000), 3);
        assert_eq!(decimals_of(ONE), 0);
        assert_eq!(decimals_of(1), 8);
        let d = |raw, decimals| Decimal { raw, decimals }.to_string();
        assert_eq!(d(108_510_000, 5), "1.08510");
        assert_eq!(d(15_123_400_000, 3), "151.234");
        assert_eq!(d(7 * ONE, 0), "7");
        assert_eq!(rfc3339(1_474_383_947_960_449_532), "2016-09-20T15:05:47.960449532Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(unix_time(1_502_462_040_000_000_000), "1502462040.000000000");
        assert_eq!(whole_units("10000".parse().unwrap()), 10_000);
        assert_eq!(whole_units("0.00064".parse().unwrap()), 1);
        assert_eq!(whole_units("2.5".parse().unwrap()), 3);
        assert_eq!(percent_decode("EUR_USD%2CUSD_JPY"), "EUR_USD,USD_JPY");
        assert_eq!(percent_decode("%2"), "%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn captured_lines_are_classified_by_type_and_instrument() {
        let listings = shared().listings;
        let classify = |line: &str| classify(line.as_bytes(), &listings);
        assert_eq!(
            classify(r#"{"time":"2016-09-20T15:05:50.163791738Z","type":"HEARTBEAT"}"#),
            Some(None)
        );
        // The docs' sample shape (no `type`) and the live stream's (`"type":"PRICE"`).
        assert_eq!(
            classify(r#"{"asks":[],"bids":[],"instrument":"USD_JPY","time":"1"}"#),
            Some(Some(1))
        );
        assert_eq!(
            classify(r#"{"instrument":"EUR_USD","tradeable":false,"type":"PRICE"}"#),
            Some(Some(0))
        );
        for skipped in [
            r#"{"asks":[],"bids":[],"instrument":"USD_CAD","time":"1"}"#,
            r#"{"instrument":"EUR_USD","time":"1"}"#,
            r#"{"asks":[],"instrument":"EUR_USD","type":"PRICE_BUCKET"}"#,
            r#"{"type":"PRICE","bids":[]}"#,
            r#"{"errorMessage":"Insufficient authorization to perform request."}"#,
            r#"{"type":7}"#,
            "[1]",
            "not json",
        ] {
            assert_eq!(classify(skipped), None, "{skipped}");
        }
        assert_eq!(super::classify(&[0xC3, 0x28], &listings), None, "not UTF-8");
    }

    #[test]
    fn own_feeds_find_a_snapshot_price_for_every_instrument() {
        let market = MarketGen::new(5, 100, &fx_symbols()).unwrap();
        let (_, snapshot) = own_feed(market.clone(), &[true, true]);
        assert!(snapshot.iter().all(Option::is_some));
        let (_, snapshot) = own_feed(market, &[false, true]);
        assert!(snapshot[0].is_none() && snapshot[1].is_some());
    }
}
