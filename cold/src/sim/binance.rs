//! Binance Spot market-data simulator: a WebSocket server on loopback that speaks the stream
//! protocol of `venues.md` §1 and plays the seeded [`MarketGen`] sequence (or a capture).
//!
//! It exists so that the Binance feed handler can be tested against the real wire format
//! (URL forms, combined wrapper, JSON control messages and their errors, ping/pong keepalive,
//! the `serverShutdown` event) without a network, with content that is reproducible from the
//! seed, and so that its failure handling can be tested against injected [`Faults`].
//!
//! What is served:
//! `/ws/<stream>` (one raw stream, payload unwrapped), `/ws` (no stream until a `SUBSCRIBE`)
//! and `/stream?streams=<a>/<b>` (combined: each payload wrapped as
//! `{"stream":...,"data":...}`); `timeUnit=MICROSECOND` switches `E` and `T` to microseconds.
//! Streams are `<symbol>@trade` and `<symbol>@bookTicker` with the symbol in lower case.
//! An unknown path is refused with HTTP 404, an unknown stream or time unit with 400.
//! On the socket, `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY` and
//! `GET_PROPERTY` behave as documented, with the documented error codes 0 to 3.
//! A subscription to an unknown stream is refused with code 2 and the venue's text
//! `Invalid request: invalid stream`, which catches typos in tests.
//! Error replies have the flat shape `venues.md` documents, `{"code":..,"msg":..,"id":..}`.
//!
//! Deliberately not enforced: the 5 incoming messages per second, the 1024 streams per
//! connection and the 300 connections per 5 minutes limits, and the 24-hour disconnect.
//!
//! Where the frames come from ([`BinanceSimConfig`]):
//! - **Shared market** (`shared_market: true`, the default): one [`SharedMarket`] timeline per
//!   simulator, paced in real time from [`spawn`], as on the real venue. A connection joins it
//!   at the live end, so trade ids and update ids are global per symbol: two overlapping
//!   connections see the same trade with the same id, which is what a feed handler's
//!   make-before-break reconnect and deduplication need. `E` and `T` are the event's scheduled
//!   time, the same on every connection. A connection that falls further behind than the
//!   market log keeps (`market_log` events) is dropped as a slow consumer: it gets a best-effort
//!   close frame 1008 `slow consumer`, and [`SimHandle::lagged`] counts it.
//! - **Per-connection replay** (`shared_market: false`): every connection gets a fresh
//!   generator with the seed, so all clients see the same sequence from trade id 1; only `E`
//!   and `T` (the wall clock at send time) differ.
//! - **Capture replay** (`replay: Some(path)`): frames are read from a capture file
//!   (`maxx_hot::capture` format, gzip allowed) when the simulator starts, and every connection
//!   replays it from its first line, paced by the `recv_ns` deltas from the moment it connected
//!   (`shared_market` does not apply). Frames of `trade` and `bookTicker` streams of the listed
//!   symbols are served: a combined frame is sent as captured to a combined connection and
//!   unwrapped to its `data` (byte for byte) for a raw one; a raw frame is sent as captured to a
//!   raw connection and wrapped for a combined one under the stream name derived from `s` and
//!   the event type. Other lines (other streams, unlisted symbols, control replies,
//!   `serverShutdown`, malformed lines) are skipped. Captured frames are never rewritten, so
//!   `timeUnit` does not apply to them. When the capture ends the connection stays open and
//!   keeps pinging, like a quiet market.
//!
//! Events of streams a connection has not subscribed to are skipped, so a later `SUBSCRIBE`
//! joins the sequence where it is, as on the real venue.
//!
//! Faults ([`SimHandle::faults`]) act on every open connection:
//! - `silent`: no market data is sent; the market moves on (a shared-market client that comes
//!   back sees a gap in trade ids), control replies and keepalive pings continue, and the
//!   connection stays open.
//! - `deaf`: the connection stops reading from the client altogether, because tungstenite
//!   answers a ping as soon as it reads it: client pings get no pong, and client pongs and
//!   control messages wait unread in the socket until the switch is turned off, when they are
//!   handled. Binance clients rarely ping, so a deaf server also stops sending its own pings,
//!   and it forgets the pings still unanswered so that it does not drop the client for the
//!   pongs it chose not to read. Market data keeps flowing.
//! - `drop_all`: the TCP connection is closed at once, with no close frame.
//! - `inject_garbage(n)`: `n` text frames from [`GARBAGE_TEXT`] in turn, then one binary frame
//!   that is not valid UTF-8, between market frames.
//! - `announce_shutdown`: the `serverShutdown` event in the connection's raw or combined form,
//!   then a close frame 1001, as on [`SimHandle::shutdown`]; the simulator keeps accepting.
//!
//! Threads: one acceptor (`sim-binance-acc`), one generator in shared mode
//! (`sim-binance-mkt`), and one thread per connection (`sim-binance-conn`). Each connection
//! thread sends what is due and reads the client's control frames, using socket timeouts so
//! that it never waits longer than 20 ms (`POLL`) before checking the shared shutdown flag and
//! the faults.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::capture::{Capture, Line};
use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::ONE;
use serde_json::Value;
use tracing::{debug, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, Uri, header};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, WebSocket};

use super::broadcast::{Cursor, DEFAULT_LOG_CAPACITY, SharedMarket};
use super::faults::{Due, Faults, GARBAGE_TEXT, Seen};
use super::market::{MarketGen, SimEvent, SimSymbol};
use super::server;

/// Longest a thread waits before looking at the shutdown flag again; bounds shutdown latency.
const POLL: Duration = Duration::from_millis(20);
/// Shortest read wait, used when the connection is behind schedule, so that control messages
/// are still read between batches.
const MIN_WAIT: Duration = Duration::from_micros(100);
/// Longest a blocked write may stall the connection loop; the unsent bytes stay buffered.
const WRITE_TIMEOUT: Duration = Duration::from_millis(20);
/// A client that has not completed the HTTP upgrade by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's close frame.
const CLOSE_DRAIN: Duration = Duration::from_millis(50);
/// A client that lets this much unsent data pile up is dropped as a slow consumer.
const MAX_WRITE_BUFFER: usize = 8 << 20;
/// Largest control message accepted from a client; real ones are a few hundred bytes.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Upper bound on the keepalive settings (Binance drops every connection at 24 h anyway); it
/// keeps all deadline arithmetic far from `Instant` overflow.
const MAX_KEEPALIVE: Duration = Duration::from_secs(24 * 60 * 60);
/// Most events sent in one loop turn, so that a connection far behind still reads control
/// messages and pongs.
const MAX_BATCH: usize = 256;
/// The binary frame that follows injected garbage text: not valid UTF-8 (a truncated
/// two-byte sequence, a lone continuation byte and bytes that never occur in UTF-8).
const GARBAGE_BINARY: &[u8] = &[0xC3, 0x28, b'{', 0x80, 0xFE, 0xFF];

/// What the Binance simulator serves and how it keeps connections alive.
#[derive(Clone, Debug)]
pub struct BinanceSimConfig {
    /// Seed of the synthetic market.
    pub seed: u64,
    /// Mean rate of ordinary market events over all symbols; bursts add to it.
    pub events_per_sec: u32,
    /// The instruments listed; stream names use their venue symbol in lower case.
    pub symbols: Vec<SimSymbol>,
    /// Interval between the server's ping frames (Binance: 20 s).
    pub ping_interval: Duration,
    /// A connection whose oldest unanswered ping is older than this is dropped (Binance: 60 s).
    pub pong_timeout: Duration,
    /// One market timeline for the whole simulator, joined at the live end by each connection
    /// (`true`, as on the venue), or a private replay of the seed's sequence from its start for
    /// every connection (`false`, so that all connections see identical frames).
    pub shared_market: bool,
    /// How many events the shared market keeps for connections that fall behind; one that
    /// falls further behind is dropped as a slow consumer. At least 1.
    pub market_log: usize,
    /// Serve the frames of this capture file instead of the generator (see the module docs).
    pub replay: Option<PathBuf>,
}

impl BinanceSimConfig {
    /// A configuration with Binance's keepalive timings, 100 events per second and a shared
    /// market.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            shared_market: true,
            market_log: DEFAULT_LOG_CAPACITY,
            replay: None,
        }
    }
}

impl Default for BinanceSimConfig {
    /// Seed 1 over [`sample_symbols`].
    fn default() -> Self {
        Self::new(1, sample_symbols())
    }
}

/// BTCUSDT and ETHUSDT with Binance's tick and lot sizes, for defaults and tests.
pub fn sample_symbols() -> Vec<SimSymbol> {
    fn listing(name: &str, start: &str, tick: &str, lot: &str) -> SimSymbol {
        // The literals below are valid; a typo fails every test at once.
        SimSymbol {
            venue_symbol: VenueSymbol::new(name).expect("valid symbol literal"),
            start_price: start.parse().expect("valid price literal"),
            tick_size: tick.parse().expect("valid price literal"),
            lot_size: lot.parse().expect("valid quantity literal"),
        }
    }
    vec![
        listing("BTCUSDT", "61837.63", "0.01", "0.00001"),
        listing("ETHUSDT", "2680.51", "0.01", "0.0001"),
    ]
}

/// Starts the simulator on `bind` (port 0 picks a free port) and returns at once.
///
/// # Errors
/// `InvalidInput` if the configuration is unusable (no symbols, a zero rate, a keepalive
/// setting outside 1 ms to 24 h, a bad price grid, two symbols with the same lower-case
/// name, a zero `market_log`); the error from reading the `replay` capture; otherwise the error
/// from binding the socket or starting a thread.
pub fn spawn(bind: SocketAddr, cfg: BinanceSimConfig) -> io::Result<SimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    let keepalive = Duration::from_millis(1)..=MAX_KEEPALIVE;
    if !keepalive.contains(&cfg.ping_interval) || !keepalive.contains(&cfg.pong_timeout) {
        return Err(invalid(
            "ping_interval and pong_timeout must be between 1 ms and 24 h".into(),
        ));
    }
    if cfg.market_log == 0 {
        return Err(invalid("market_log must keep at least one event".into()));
    }
    let market = MarketGen::new(cfg.seed, cfg.events_per_sec, &cfg.symbols).map_err(|e| invalid(e.to_string()))?;
    let mut listings: Vec<Listing> = Vec::with_capacity(cfg.symbols.len());
    for sym in &cfg.symbols {
        let lower = sym.venue_symbol.as_str().to_ascii_lowercase();
        if listings.iter().any(|l| l.lower == lower) {
            return Err(invalid(format!("symbol {lower} is listed twice")));
        }
        listings.push(Listing {
            symbol: sym.venue_symbol,
            lower,
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
    let source = match replay {
        Some(frames) => Source::Replay(frames),
        None if cfg.shared_market => Source::Shared(SharedMarket::start(market, cfg.market_log, "sim-binance-mkt")?),
        None => Source::PerConnection(market),
    };
    let shared = Arc::new(Shared {
        listings,
        source,
        ping_interval: cfg.ping_interval,
        pong_timeout: cfg.pong_timeout,
        faults: Arc::new(Faults::default()),
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        lagged: AtomicU64::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-binance-acc".into()).spawn({
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
    Ok(SimHandle {
        local_addr,
        shared,
        acceptor: Some(acceptor),
    })
}

/// A running simulator. Dropping it shuts it down, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct SimHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address the simulator listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of client connections currently being served, counted from the TCP accept
    /// (so a client whose upgrade has just returned is already counted) until the connection
    /// thread has closed the socket.
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

    /// How many connections have been dropped because they fell further behind the shared
    /// market than its log keeps (always 0 without a shared market).
    pub fn lagged(&self) -> u64 {
        // Acquire pairs with the Release increment made before such a connection closes.
        self.shared.lagged.load(Ordering::Acquire)
    }

    /// Stops accepting, sends `serverShutdown` and a close frame on every connection, closes
    /// them and joins all threads. This takes about 100 ms at most: a 20 ms poll, a 50 ms wait
    /// for the clients' close frames, and 20 ms write timeouts towards clients that do not read.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // Release pairs with the Acquire loads in the acceptor and connection loops.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            warn!("sim-binance acceptor thread panicked");
        }
        // Every connection has ended, so nobody reads the market any more.
        self.shared.stop_market();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where a simulator's market frames come from.
#[derive(Debug)]
enum Source {
    /// A fresh generator, cloned for every connection.
    PerConnection(MarketGen),
    /// One timeline that every connection joins.
    Shared(SharedMarket),
    /// Captured frames, replayed from the start for every connection.
    Replay(Vec<ReplayFrame>),
}

/// State shared by the acceptor and every connection thread; read-only apart from the flag,
/// the counters and the fault switches.
#[derive(Debug)]
struct Shared {
    listings: Vec<Listing>,
    source: Source,
    ping_interval: Duration,
    pong_timeout: Duration,
    faults: Arc<Faults>,
    stop: AtomicBool,
    open: AtomicUsize,
    lagged: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `SimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    fn stop_market(&self) {
        if let Source::Shared(market) = &self.source {
            market.shutdown();
        }
    }

    fn stream_name(&self, stream: StreamId) -> String {
        format!("{}@{}", self.listings[stream.symbol].lower, stream.kind.suffix())
    }

    /// Resolves a stream name such as `btcusdt@bookTicker`; the symbol must be lower case.
    fn parse_stream(&self, name: &str) -> Option<StreamId> {
        parse_stream(&self.listings, name)
    }
}

/// Resolves a stream name such as `btcusdt@bookTicker` against the listings.
fn parse_stream(listings: &[Listing], name: &str) -> Option<StreamId> {
    let (symbol, suffix) = name.split_once('@')?;
    let kind = match suffix {
        "trade" => StreamKind::Trade,
        "bookTicker" => StreamKind::BookTicker,
        _ => return None,
    };
    let symbol = listings.iter().position(|l| l.lower == symbol)?;
    Some(StreamId { symbol, kind })
}

/// One listed instrument: its payload name (`BTCUSDT`) and its stream-name form (`btcusdt`).
#[derive(Debug)]
struct Listing {
    symbol: VenueSymbol,
    lower: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamKind {
    Trade,
    BookTicker,
}

impl StreamKind {
    fn suffix(self) -> &'static str {
        match self {
            StreamKind::Trade => "trade",
            StreamKind::BookTicker => "bookTicker",
        }
    }
}

/// A stream as an index into the listings plus its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StreamId {
    symbol: usize,
    kind: StreamKind,
}

/// What the upgrade request asked for.
#[derive(Debug)]
struct Route {
    combined: bool,
    streams: Vec<StreamId>,
    micros: bool,
}

impl server::Served for Shared {
    const NAME: &'static str = "binance";
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

fn serve(stream: TcpStream, peer: SocketAddr, seen: Seen, shared: &Shared) {
    let configured = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = configured {
        debug!(%peer, error = %e, "sim-binance: cannot configure socket");
        return;
    }
    let Some((ws, route)) = handshake(stream, peer, shared) else {
        return;
    };
    debug!(
        %peer,
        streams = route.streams.len(),
        combined = route.combined,
        "sim-binance: client connected"
    );
    let mut session = Session::new(ws, route, peer, seen, shared);
    session.run();
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Runs the HTTP upgrade, choosing the route from the request path; `None` if the client was
/// refused, gave up, was too slow, or the simulator is shutting down.
fn handshake(stream: TcpStream, peer: SocketAddr, shared: &Shared) -> Option<(WebSocket<TcpStream>, Route)> {
    let mut route = None;
    // The signature, with its large error type, is the one tungstenite's `Callback` requires.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        route = Some(parse_route(request.uri(), shared).map_err(Refusal::into_response)?);
        Ok(response)
    };
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut attempt = tungstenite::accept_hdr_with_config(stream, callback, Some(ws_config()));
    let ws = loop {
        match attempt {
            Ok(ws) => break ws,
            // The socket's read timeout expired mid-request; keep going unless told to stop.
            Err(HandshakeError::Interrupted(mid)) => {
                if shared.stopping() || Instant::now() >= deadline {
                    debug!(%peer, "sim-binance: handshake abandoned");
                    return None;
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                debug!(%peer, error = %e, "sim-binance: handshake refused");
                return None;
            }
        }
    };
    route.map(|route| (ws, route))
}

/// An HTTP error for a refused upgrade.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    body: String,
}

impl Refusal {
    fn new(status: StatusCode, body: String) -> Self {
        Self { status, body }
    }

    fn into_response(self) -> ErrorResponse {
        let mut response = ErrorResponse::new(None);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        *response.body_mut() = Some(self.body);
        response
    }
}

/// Maps the request target to a route, or to the HTTP error the client gets.
fn parse_route(uri: &Uri, shared: &Shared) -> Result<Route, Refusal> {
    let mut micros = false;
    let mut stream_list = None;
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "streams" => stream_list = Some(value),
            "timeUnit" => {
                micros = match value.as_str() {
                    "MICROSECOND" | "microsecond" => true,
                    "MILLISECOND" | "millisecond" => false,
                    _ => {
                        return Err(Refusal::new(
                            StatusCode::BAD_REQUEST,
                            format!("Invalid timeUnit: {value}"),
                        ));
                    }
                }
            }
            // Other parameters are ignored, as the venue ignores what it does not know.
            _ => {}
        }
    }
    let parse = |name: &str| {
        shared
            .parse_stream(name)
            .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, format!("Invalid stream name: {name}")))
    };
    match uri.path() {
        "/ws" | "/ws/" => Ok(Route {
            combined: false,
            streams: Vec::new(),
            micros,
        }),
        "/stream" | "/stream/" => {
            let mut streams: Vec<StreamId> = Vec::new();
            for name in stream_list.as_deref().unwrap_or("").split('/') {
                if name.is_empty() {
                    continue;
                }
                let stream = parse(name)?;
                if !streams.contains(&stream) {
                    streams.push(stream);
                }
            }
            Ok(Route {
                combined: true,
                streams,
                micros,
            })
        }
        path => match path.strip_prefix("/ws/") {
            Some(name) => Ok(Route {
                combined: false,
                streams: vec![parse(&percent_decode(name))?],
                micros,
            }),
            None => Err(Refusal::new(StatusCode::NOT_FOUND, format!("Not found: {path}"))),
        },
    }
}

/// Decodes `%XX` escapes (clients may send `@` as `%40`); malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
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

/// One captured frame the simulator can serve.
#[derive(Debug)]
struct ReplayFrame {
    /// When to send it, from the start of the connection: its `recv_ns` minus the first
    /// line's, never smaller than the previous frame's.
    offset_ns: u64,
    stream: StreamId,
    /// The frame as captured.
    text: String,
    /// Where the event payload is in `text`: all of it for a raw frame, `data` for a combined
    /// one.
    payload: Range<usize>,
    /// Whether it was captured in the combined form.
    combined: bool,
}

/// Reads a capture and keeps the frames of streams the simulator lists.
fn load_replay(path: &Path, listings: &[Listing]) -> io::Result<Vec<ReplayFrame>> {
    let capture = Capture::load(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading the replay capture {}: {e}", path.display())))?;
    let mut frames = Vec::new();
    let mut first_ns = None;
    let mut offset_ns = 0;
    let mut skipped = 0usize;
    for line in capture.lines() {
        let Line::Frame { recv_ns, start, end } = *line else {
            skipped += 1;
            continue;
        };
        let first = *first_ns.get_or_insert(recv_ns);
        // A capture whose clock stepped back sends the frame at once rather than reorder it.
        offset_ns = offset_ns.max(recv_ns.saturating_sub(first));
        let Ok(text) = std::str::from_utf8(capture.frame(start, end)) else {
            skipped += 1;
            continue;
        };
        match classify(text, listings) {
            Some((stream, payload, combined)) => frames.push(ReplayFrame {
                offset_ns,
                stream,
                text: text.to_owned(),
                payload,
                combined,
            }),
            None => skipped += 1,
        }
    }
    if frames.is_empty() {
        warn!(path = %path.display(), skipped, "sim-binance: the replay capture has no frame to serve");
    } else {
        debug!(path = %path.display(), frames = frames.len(), skipped, "sim-binance: replay capture loaded");
    }
    Ok(frames)
}

/// The stream of a captured frame, where its payload is, and whether it is in combined form;
/// `None` for anything the simulator does not serve.
fn classify(text: &str, listings: &[Listing]) -> Option<(StreamId, Range<usize>, bool)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let object = value.as_object()?;
    if let Some(stream) = object.get("stream") {
        if !object.get("data").is_some_and(Value::is_object) {
            return None;
        }
        let stream = parse_stream(listings, stream.as_str()?)?;
        return Some((stream, top_level_value(text, "data")?, true));
    }
    let kind = match object.get("e").map(Value::as_str) {
        Some(Some("trade")) => StreamKind::Trade,
        // Spot's bookTicker has no event type; other Binance markets call it `bookTicker`.
        Some(Some("bookTicker")) => StreamKind::BookTicker,
        None if ["u", "b", "a"].iter().all(|k| object.contains_key(*k)) => StreamKind::BookTicker,
        _ => return None,
    };
    let symbol = object.get("s")?.as_str()?.to_ascii_lowercase();
    let symbol = listings.iter().position(|l| l.lower == symbol)?;
    Some((StreamId { symbol, kind }, 0..text.len(), false))
}

/// The byte range of the value of `key` in the top-level object of `json`, found by scanning
/// rather than parsing so that the value is served byte for byte as captured. `json` has
/// already been parsed successfully; anything unexpected gives `None`.
fn top_level_value(json: &str, key: &str) -> Option<Range<usize>> {
    let b = json.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        let key_start = i;
        i = skip_string(b, i)?;
        // Quotes are ASCII, so these are character boundaries.
        let this_key = &json[key_start + 1..i - 1];
        i = skip_ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_start = i;
        i = skip_value(b, i)?;
        if this_key == key {
            return Some(value_start..i);
        }
        i = skip_ws(b, i);
        if b.get(i) != Some(&b',') {
            return None;
        }
        i += 1;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let end = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(b.len(), |n| i + n);
            (end > i).then_some(end)
        }
    }
}

/// Why a connection loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    /// The `announce_shutdown` fault: announce, then close as on shutdown.
    Maintenance,
    /// The `drop_all` fault: close the socket without a close frame.
    Dropped,
    PongTimeout,
    ClientClosed,
    SlowConsumer,
    /// Fell further behind the shared market than its log keeps.
    Lagged(u64),
    Failed(WsError),
}

/// A decimal with exactly eight places, as Binance prints prices and quantities.
struct Fixed8(i64);

impl fmt::Display for Fixed8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Prices and quantities are never negative.
        write!(f, "{}.{:08}", self.0 / ONE, self.0 % ONE)
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// A connection's position in its source of market frames.
enum Feed {
    /// Its own generator, paced from the connection's start.
    Own {
        market: MarketGen,
        /// The next event, generated ahead so its due time is known.
        next: SimEvent,
    },
    /// A cursor into the simulator's shared market.
    Shared(Cursor),
    /// The index of the next captured frame, paced from the connection's start.
    Replay { next: usize },
}

/// One client connection: its subscriptions, its place in the market, its keepalive state and
/// the faults it has acted on.
struct Session<'a> {
    ws: WebSocket<TcpStream>,
    shared: &'a Shared,
    peer: SocketAddr,
    feed: Feed,
    /// Events due in this turn; kept to reuse its allocation.
    batch: Vec<SimEvent>,
    /// When the connection started; per-connection and capture replays are paced from here.
    start: Instant,
    subs: Vec<StreamId>,
    combined: bool,
    micros: bool,
    /// Pings not yet answered, oldest first, with their payloads.
    pings: VecDeque<(Bytes, Instant)>,
    next_ping: Instant,
    last_ping_ms: u64,
    /// The one-shot fault generations this connection has acted on.
    seen: Seen,
    /// How many garbage texts were sent, so that successive injections go on through the list.
    garbage_sent: usize,
}

impl<'a> Session<'a> {
    fn new(ws: WebSocket<TcpStream>, route: Route, peer: SocketAddr, seen: Seen, shared: &'a Shared) -> Self {
        let feed = match &shared.source {
            Source::PerConnection(market) => {
                let mut market = market.clone();
                let next = market.next_event();
                Feed::Own { market, next }
            }
            Source::Shared(market) => Feed::Shared(market.cursor()),
            Source::Replay(_) => Feed::Replay { next: 0 },
        };
        let start = Instant::now();
        Self {
            ws,
            shared,
            peer,
            feed,
            batch: Vec::with_capacity(MAX_BATCH),
            start,
            subs: route.streams,
            combined: route.combined,
            micros: route.micros,
            pings: VecDeque::new(),
            next_ping: start + shared.ping_interval,
            last_ping_ms: 0,
            // Taken when the connection was accepted: a fault raised before that is not for it.
            seen,
            garbage_sent: 0,
        }
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
                let event = self.render_shutdown();
                // Best effort: the client may already be gone.
                let _ = self.ws.write(Message::text(event));
                self.close(CloseCode::Away, "server shutdown");
                debug!(%peer, maintenance = matches!(end, End::Maintenance), "sim-binance: connection closed by shutdown");
            }
            End::Dropped => {
                // Dropping the socket without a close frame is the whole point of the fault.
                debug!(%peer, "sim-binance: connection dropped by fault injection");
            }
            End::PongTimeout => {
                debug!(%peer, "sim-binance: no pong in time, dropping the connection");
                self.close(CloseCode::Policy, "pong timeout");
            }
            End::ClientClosed => {
                // Sends the close reply tungstenite queued; errors only mean the peer left.
                let _ = self.ws.flush();
                debug!(%peer, "sim-binance: client closed the connection");
            }
            End::SlowConsumer => {
                warn!(%peer, "sim-binance: client does not read, dropping the connection");
            }
            End::Lagged(missed) => {
                // Release pairs with the Acquire load in `SimHandle::lagged`; counted before the
                // close so that a test that sees the connection gone also sees the count.
                self.shared.lagged.fetch_add(1, Ordering::Release);
                warn!(%peer, missed, "sim-binance: client fell behind the market, dropping the connection");
                // Best effort: the close frame queues behind everything the client has not read.
                self.close(CloseCode::Policy, "slow consumer");
            }
            End::Failed(e) => {
                debug!(%peer, error = %e, "sim-binance: connection failed");
            }
        }
    }

    /// One turn of the loop: act on faults, send what is due, keep alive, then wait for the
    /// client until the next thing is due.
    fn turn(&mut self) -> Result<(), End> {
        if self.shared.stopping() {
            return Err(End::Shutdown);
        }
        let shared = self.shared;
        let faults = &*shared.faults;
        let Due {
            drop,
            garbage,
            shutdown,
        } = faults.poll(&mut self.seen);
        if drop {
            return Err(End::Dropped);
        }
        if garbage > 0 {
            self.send_garbage(garbage)?;
        }
        if shutdown {
            return Err(End::Maintenance);
        }
        let deaf = faults.deaf();
        let now = Instant::now();
        let next_due = self.send_due(now, faults.silent())?;
        if deaf {
            // Forget what the client could only have answered by being heard, and ping again
            // one interval after the switch is turned off.
            self.pings.clear();
            self.next_ping = now + self.shared.ping_interval;
        } else if now >= self.next_ping {
            self.ping(now)?;
        }
        let mut wake = now + POLL;
        if let Some(&(_, sent)) = self.pings.front() {
            let deadline = sent + self.shared.pong_timeout;
            if now >= deadline {
                return Err(End::PongTimeout);
            }
            wake = wake.min(deadline);
        }
        match self.ws.flush() {
            Ok(()) => {}
            Err(WsError::Io(e)) if would_block(&e) => {}
            Err(e) => return Err(End::Failed(e)),
        }
        wake = wake.min(self.next_ping);
        if let Some(due) = next_due {
            wake = wake.min(due);
        }
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if deaf {
            // Reading would make tungstenite answer the client's pings, so a deaf connection
            // does not read at all; it only waits for its next event.
            thread::sleep(wait);
            return Ok(());
        }
        if let Err(e) = self.ws.get_ref().set_read_timeout(Some(wait)) {
            return Err(End::Failed(WsError::Io(e)));
        }
        self.read_one()
    }

    /// Sends the market frames that are due (at most `MAX_BATCH`), or only consumes them when
    /// `silent`; returns when the next one is due, if anything more is expected.
    fn send_due(&mut self, now: Instant, silent: bool) -> Result<Option<Instant>, End> {
        let elapsed_ns = now.duration_since(self.start).as_nanos();
        // Taken out of `self` so that rendering can borrow the session; given back at the end.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let next_due = match &mut self.feed {
            Feed::Own { market, next } => {
                while batch.len() < MAX_BATCH && u128::from(next.offset_ns()) <= elapsed_ns {
                    batch.push(std::mem::replace(next, market.next_event()));
                }
                self.start.checked_add(Duration::from_nanos(next.offset_ns()))
            }
            Feed::Shared(cursor) => {
                cursor
                    .read_into(MAX_BATCH, &mut batch)
                    .map_err(|lag| End::Lagged(lag.missed))?;
                cursor.next_due()
            }
            Feed::Replay { .. } => return self.send_replay(elapsed_ns, silent),
        };
        if !silent {
            for event in &batch {
                if let Some(text) = self.render(event) {
                    self.write(Message::text(text))?;
                }
            }
        }
        self.batch = batch;
        Ok(next_due)
    }

    /// [`send_due`](Self::send_due) for a capture replay.
    fn send_replay(&mut self, elapsed_ns: u128, silent: bool) -> Result<Option<Instant>, End> {
        let shared = self.shared;
        let (Source::Replay(frames), Feed::Replay { next }) = (&shared.source, &mut self.feed) else {
            return Ok(None);
        };
        let from = *next;
        let mut to = from;
        while to < frames.len() && to - from < MAX_BATCH && u128::from(frames[to].offset_ns) <= elapsed_ns {
            to += 1;
        }
        *next = to;
        if !silent {
            for frame in &frames[from..to] {
                if self.subs.contains(&frame.stream) {
                    let text = self.render_replay(frame);
                    self.write(Message::text(text))?;
                }
            }
        }
        Ok(frames
            .get(to)
            .and_then(|f| self.start.checked_add(Duration::from_nanos(f.offset_ns))))
    }

    /// Sends `n` garbage texts, going on through [`GARBAGE_TEXT`] where the last injection
    /// stopped, then one binary frame that is not UTF-8.
    fn send_garbage(&mut self, n: u64) -> Result<(), End> {
        debug!(peer = %self.peer, n, "sim-binance: injecting garbage frames");
        for _ in 0..n {
            let text = GARBAGE_TEXT[self.garbage_sent % GARBAGE_TEXT.len()];
            self.garbage_sent = self.garbage_sent.wrapping_add(1);
            self.write(Message::text(text))?;
        }
        self.write(Message::binary(Bytes::from_static(GARBAGE_BINARY)))
    }

    /// Waits for one message from the client (until the read timeout) and handles it.
    fn read_one(&mut self) -> Result<(), End> {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                let reply = self.control(text.as_str());
                self.write(Message::text(reply))
            }
            Ok(Message::Pong(payload)) => {
                match self.pings.iter().position(|(p, _)| *p == payload) {
                    // A pong answers its ping and every older one.
                    Some(i) => drop(self.pings.drain(..=i)),
                    // Unsolicited pongs are allowed but do not keep the connection alive.
                    None => debug!(peer = %self.peer, "sim-binance: unsolicited pong ignored"),
                }
                Ok(())
            }
            Ok(Message::Binary(_)) => {
                debug!(peer = %self.peer, "sim-binance: binary frame ignored");
                Ok(())
            }
            // Tungstenite queues the pong reply to a ping itself.
            Ok(Message::Ping(_) | Message::Frame(_)) => Ok(()),
            Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Err(End::ClientClosed),
            Err(WsError::Io(e)) if would_block(&e) => Ok(()),
            Err(e) => Err(End::Failed(e)),
        }
    }

    /// Queues a message; a write that would block leaves it buffered for the next flush.
    fn write(&mut self, message: Message) -> Result<(), End> {
        match self.ws.write(message) {
            Ok(()) => Ok(()),
            Err(WsError::Io(e)) if would_block(&e) => Ok(()),
            Err(WsError::WriteBufferFull(_)) => Err(End::SlowConsumer),
            Err(e) => Err(End::Failed(e)),
        }
    }

    fn ping(&mut self, now: Instant) -> Result<(), End> {
        // The payload is the wall clock in ms, made unique so that each pong names its ping.
        let ms = (wall_clock_us() / 1000).max(self.last_ping_ms + 1);
        self.last_ping_ms = ms;
        let payload = Bytes::from(ms.to_string());
        self.pings.push_back((payload.clone(), now));
        self.next_ping = now + self.shared.ping_interval;
        self.write(Message::Ping(payload))
    }

    /// Sends a close frame and waits briefly for the client's reply, so the close is clean
    /// when the client is responsive and bounded when it is not.
    fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame));
        let deadline = Instant::now() + CLOSE_DRAIN;
        let _ = self.ws.get_ref().set_read_timeout(Some(Duration::from_millis(10)));
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(_) => {}
                Err(WsError::Io(e)) if would_block(&e) => {}
                Err(_) => break,
            }
        }
    }

    /// `E`/`T` for an event due at `offset_ns`: its scheduled time on a shared market (the same
    /// on every connection), the wall clock at send time on a private one.
    fn event_time(&self, offset_ns: u64) -> u64 {
        let us = match &self.feed {
            Feed::Shared(cursor) => cursor.epoch_unix_ns().saturating_add(offset_ns) / 1000,
            Feed::Own { .. } | Feed::Replay { .. } => wall_clock_us(),
        };
        if self.micros { us } else { us / 1000 }
    }

    /// The frame for `event`, or `None` if this connection does not subscribe to its stream.
    fn render(&self, event: &SimEvent) -> Option<String> {
        let kind = match event {
            SimEvent::Trade(_) => StreamKind::Trade,
            SimEvent::BookTicker(_) => StreamKind::BookTicker,
        };
        let stream = StreamId {
            symbol: event.symbol(),
            kind,
        };
        if !self.subs.contains(&stream) {
            return None;
        }
        let symbol = self.shared.listings[stream.symbol].symbol;
        let payload = match event {
            SimEvent::Trade(t) => {
                let time = self.event_time(t.offset_ns);
                format!(
                    r#"{{"e":"trade","E":{time},"s":"{symbol}","t":{},"p":"{}","q":"{}","T":{time},"m":{},"M":true}}"#,
                    t.trade_id,
                    Fixed8(t.price.raw()),
                    Fixed8(t.qty.raw()),
                    t.buyer_is_maker,
                )
            }
            SimEvent::BookTicker(b) => format!(
                r#"{{"u":{},"s":"{symbol}","b":"{}","B":"{}","a":"{}","A":"{}"}}"#,
                b.update_id,
                Fixed8(b.bid.raw()),
                Fixed8(b.bid_qty.raw()),
                Fixed8(b.ask.raw()),
                Fixed8(b.ask_qty.raw()),
            ),
        };
        Some(self.wrap(&self.shared.stream_name(stream), &payload))
    }

    /// A captured frame in this connection's form: as captured when the forms agree,
    /// unwrapped or wrapped otherwise.
    fn render_replay(&self, frame: &ReplayFrame) -> String {
        if frame.combined == self.combined {
            frame.text.clone()
        } else {
            self.wrap(
                &self.shared.stream_name(frame.stream),
                &frame.text[frame.payload.clone()],
            )
        }
    }

    fn render_shutdown(&self) -> String {
        let us = wall_clock_us();
        let time = if self.micros { us } else { us / 1000 };
        let payload = format!(r#"{{"e":"serverShutdown","E":{time}}}"#);
        self.wrap("!serverShutdown", &payload)
    }

    /// Wraps a payload for combined mode; raw mode sends it as it is.
    fn wrap(&self, stream: &str, payload: &str) -> String {
        if self.combined {
            format!(r#"{{"stream":"{stream}","data":{payload}}}"#)
        } else {
            payload.to_owned()
        }
    }

    /// Handles one JSON control message and returns the reply frame.
    fn control(&mut self, text: &str) -> String {
        let request: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return error_reply(3, &format!("Invalid JSON: {e}"), None),
        };
        let Value::Object(request) = request else {
            return error_reply(2, "Invalid request: expected a JSON object", None);
        };
        let id = match request.get("id") {
            Some(id) if valid_id(id) => id,
            Some(_) => {
                return error_reply(
                    2,
                    "Invalid request: request ID must be a signed 64-bit integer, an alphanumeric \
                     string of at most 36 characters, or null",
                    None,
                );
            }
            None => return error_reply(2, "Invalid request: missing field `id`", None),
        };
        let method = match request.get("method") {
            Some(Value::String(m)) => m.as_str(),
            Some(_) => return error_reply(2, "Invalid request: method must be a string", Some(id)),
            None => return error_reply(2, "Invalid request: missing field `method`", Some(id)),
        };
        let no_params = Vec::new();
        let params = match request.get("params") {
            Some(Value::Array(p)) => p,
            None | Some(Value::Null) => &no_params,
            Some(_) => return error_reply(2, "Invalid request: params must be an array", Some(id)),
        };
        match self.apply(method, params) {
            Ok(result) => ok_reply(&result, id),
            Err((code, msg)) => error_reply(code, &msg, Some(id)),
        }
    }

    /// Runs one control method; `Ok` holds the JSON `result`, `Err` the error code and text.
    fn apply(&mut self, method: &str, params: &[Value]) -> Result<String, (u8, String)> {
        let invalid = |msg: &str| (2, format!("Invalid request: {msg}"));
        match method {
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                // All or nothing: one bad name refuses the whole request.
                let mut streams = Vec::with_capacity(params.len());
                for param in params {
                    let stream = param.as_str().and_then(|name| self.shared.parse_stream(name));
                    let Some(stream) = stream else {
                        debug!(peer = %self.peer, %param, "sim-binance: refused stream");
                        return Err(invalid("invalid stream"));
                    };
                    streams.push(stream);
                }
                if method == "SUBSCRIBE" {
                    for stream in streams {
                        if !self.subs.contains(&stream) {
                            self.subs.push(stream);
                        }
                    }
                } else {
                    self.subs.retain(|s| !streams.contains(s));
                }
                Ok("null".into())
            }
            "LIST_SUBSCRIPTIONS" => {
                if !params.is_empty() {
                    return Err(invalid("too many parameters"));
                }
                let names: Vec<String> = self.subs.iter().map(|s| self.shared.stream_name(*s)).collect();
                Ok(Value::from(names).to_string())
            }
            "SET_PROPERTY" | "GET_PROPERTY" => {
                let max_params = if method == "SET_PROPERTY" { 2 } else { 1 };
                if params.len() > max_params {
                    return Err(invalid("too many parameters"));
                }
                let Some(Value::String(property)) = params.first() else {
                    return Err(invalid("property name must be a string"));
                };
                if property != "combined" {
                    return Err((0, "Unknown property".into()));
                }
                if method == "GET_PROPERTY" {
                    return Ok(self.combined.to_string());
                }
                let Some(Value::Bool(combined)) = params.get(1) else {
                    return Err((1, "Invalid value type: expected Boolean".into()));
                };
                self.combined = *combined;
                Ok("null".into())
            }
            other => Err(invalid(&format!(
                "unknown variant `{other}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, \
                 `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
            ))),
        }
    }
}

/// Request ids may be a signed 64-bit integer, an alphanumeric string of up to 36 characters,
/// or null (`venues.md` §1.2).
fn valid_id(id: &Value) -> bool {
    match id {
        Value::Null => true,
        Value::Number(n) => n.is_i64(),
        Value::String(s) => s.len() <= 36 && s.bytes().all(|b| b.is_ascii_alphanumeric()),
        _ => false,
    }
}

fn ok_reply(result: &str, id: &Value) -> String {
    format!(r#"{{"result":{result},"id":{id}}}"#)
}

fn error_reply(code: u8, msg: &str, id: Option<&Value>) -> String {
    let msg = Value::from(msg);
    match id {
        Some(id) => format!(r#"{{"code":{code},"msg":{msg},"id":{id}}}"#),
        None => format!(r#"{{"code":{code},"msg":{msg}}}"#),
    }
}

/// Microseconds since the Unix epoch; 0 if the clock is before 1970.
fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listings() -> Vec<Listing> {
        sample_symbols()
            .iter()
            .map(|s| Listing {
                symbol: s.venue_symbol,
                lower: s.venue_symbol.as_str().to_ascii_lowercase(),
            })
            .collect()
    }

    fn shared() -> Shared {
        Shared {
            listings: listings(),
            source: Source::PerConnection(MarketGen::new(1, 10, &sample_symbols()).unwrap()),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            faults: Arc::new(Faults::default()),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            lagged: AtomicU64::new(0),
        }
    }

    fn route(target: &str) -> Result<Route, StatusCode> {
        parse_route(&target.parse().unwrap(), &shared()).map_err(|e| e.status)
    }

    #[test]
    fn routes_follow_the_documented_url_forms() {
        let r = route("/ws/btcusdt@trade").unwrap();
        assert!(!r.combined && !r.micros);
        assert_eq!(
            r.streams,
            [StreamId {
                symbol: 0,
                kind: StreamKind::Trade
            }]
        );
        let r = route("/stream?streams=btcusdt@trade/ethusdt@bookTicker&timeUnit=MICROSECOND").unwrap();
        assert!(r.combined && r.micros);
        assert_eq!(r.streams.len(), 2);
        assert_eq!(
            route("/ws/btcusdt%40bookTicker").unwrap().streams[0].kind,
            StreamKind::BookTicker
        );
        assert!(route("/ws").unwrap().streams.is_empty());
        assert_eq!(route("/ws/BTCUSDT@trade").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(route("/ws/btcusdt@depth").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(
            route("/stream?streams=xrpusdt@trade").unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(route("/ws?timeUnit=NANOSECOND").unwrap_err(), StatusCode::BAD_REQUEST);
        assert_eq!(route("/api/v3/depth").unwrap_err(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn percent_decoding_is_lenient() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn decimals_have_eight_places() {
        assert_eq!(Fixed8(6_183_763_000_000).to_string(), "61837.63000000");
        assert_eq!(Fixed8(2_000_000).to_string(), "0.02000000");
        assert_eq!(Fixed8(1).to_string(), "0.00000001");
    }

    #[test]
    fn replies_keep_the_documented_key_order() {
        assert_eq!(ok_reply("null", &Value::from(1)), r#"{"result":null,"id":1}"#);
        assert_eq!(
            error_reply(2, "Invalid request: \"x\"", Some(&Value::from("ab"))),
            r#"{"code":2,"msg":"Invalid request: \"x\"","id":"ab"}"#
        );
        assert!(valid_id(&Value::Null) && valid_id(&Value::from(-5)) && valid_id(&Value::from("a1")));
        assert!(!valid_id(&Value::from(1.5)) && !valid_id(&Value::from("a-b")));
        assert!(!valid_id(&Value::from(u64::MAX)) && !valid_id(&Value::from("x".repeat(37))));
    }

    #[test]
    fn top_level_values_are_found_byte_for_byte() {
        let json = r#"{ "stream" : "a\"}" , "x":[1,{"data":2}], "data" : {"p":"1.0","n":[1, 2]} , "z":null}"#;
        let span = top_level_value(json, "data").unwrap();
        assert_eq!(&json[span], r#"{"p":"1.0","n":[1, 2]}"#);
        assert_eq!(&json[top_level_value(json, "z").unwrap()], "null");
        assert_eq!(top_level_value(json, "missing"), None);
        assert_eq!(top_level_value("[1]", "data"), None);
        assert_eq!(top_level_value(r#"{"data":"#, "data"), None);
    }

    #[test]
    fn captured_frames_are_classified_by_stream() {
        let l = listings();
        let trade = StreamId {
            symbol: 0,
            kind: StreamKind::Trade,
        };
        let ticker = StreamId {
            symbol: 1,
            kind: StreamKind::BookTicker,
        };
        let raw = r#"{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"1.00","q":"2.00","T":1,"m":true,"M":true}"#;
        assert_eq!(classify(raw, &l), Some((trade, 0..raw.len(), false)));
        let raw = r#"{"u":9,"s":"ETHUSDT","b":"1.0","B":"1","a":"2.0","A":"1"}"#;
        assert_eq!(classify(raw, &l), Some((ticker, 0..raw.len(), false)));
        let wrapped = r#"{"stream":"ethusdt@bookTicker","data":{"u":9,"s":"ETHUSDT"}}"#;
        let (stream, span, combined) = classify(wrapped, &l).unwrap();
        assert_eq!((stream, combined), (ticker, true));
        assert_eq!(&wrapped[span], r#"{"u":9,"s":"ETHUSDT"}"#);
        for skipped in [
            r#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate"}}"#,
            r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}"#,
            r#"{"e":"aggTrade","s":"BTCUSDT"}"#,
            r#"{"e":"trade","s":"XRPUSDT"}"#,
            r#"{"result":null,"id":1}"#,
            "not json",
        ] {
            assert_eq!(classify(skipped, &l), None, "{skipped}");
        }
    }
}
