//! Bybit v5 public market-data simulator: a WebSocket server on loopback that speaks the
//! protocol of `venues.md` §3 (spot and linear) and plays the seeded [`MarketGen`] sequence.
//!
//! It exists so that the Bybit feed handler can be tested against the real wire format
//! (one endpoint per market, `op` requests and their acks, the JSON ping and its pong, the idle
//! cut) and against injected [`Faults`], without a network and with content reproducible from
//! the seed.
//!
//! What is served:
//! `/v5/public/spot` and `/v5/public/linear` (any other path is refused with HTTP 404; the
//! query string is ignored). Nothing is streamed until the client subscribes with
//! `{"op":"subscribe","args":[..],"req_id":".."}`; topics are `publicTrade.<SYMBOL>` and
//! `orderbook.1.<SYMBOL>` with the symbol exactly as listed (upper case).
//! - Acks have the documented keys in the documented order, `success`, `ret_msg`, `conn_id`,
//!   `req_id` (echoed, `""` when absent), `op`. On success `ret_msg` is the op on spot
//!   (`"subscribe"`) and empty on linear, as in the docs' two samples.
//! - A request is all or nothing: one unknown topic (another depth such as `orderbook.50.X`, an
//!   unlisted symbol, a typo), more than 10 args on spot, args totalling more than 21,000
//!   characters on the connection, or a malformed request refuses the whole request with
//!   `success: false` and a reason in `ret_msg`. The docs show no failure sample, so that
//!   text is ours. `unsubscribe` works the same way; subscribing twice to a topic is harmless.
//! - `{"op":"ping"}` is answered with the documented pong: spot
//!   `{"success":true,"ret_msg":"pong","conn_id":..,"op":"ping"}` (with `req_id` only if the
//!   ping had one), linear the same with `req_id` always present.
//! - A connection that has seen neither a ping nor pushed data for `idle_timeout` (Bybit:
//!   10 minutes) is closed with a close frame 1000 `idle timeout`. Control requests other than
//!   ping do not count, as the docs name only those two.
//!
//! Pushes:
//! - `publicTrade.<SYMBOL>`: `{"topic","type":"snapshot","ts","data":[trades]}` with each trade
//!   `{"T","s","S","v","p","L","i","BT","seq"}`. `S` is the taker's side; `L` (tick direction)
//!   is sent on linear only, as documented; `i` is the generator's trade id in digits on spot and
//!   a UUID derived from it on linear. Consecutive trades of one symbol that are due together
//!   (a sweep through several levels, or a burst when the connection runs behind) share one
//!   message, at most 1024 as on the venue. `seq` is a per-symbol cross sequence that advances
//!   with every market event.
//! - `orderbook.1.<SYMBOL>`: `{"topic","ts","type","data":{"s","b","a","u","seq"},"cts"}`, with
//!   `ts` before `type` as the docs say level-1 pushes have it. `u` advances by one with every
//!   top-of-book change of the symbol, so it is the same on every connection for the same
//!   change. The first push after subscribing is a `snapshot` (sent as soon as the symbol's top
//!   is known). After that, [`BookUpdates::Snapshots`] (the default) sends every change as a
//!   snapshot, as the docs say level 1 does; [`BookUpdates::Deltas`] sends `delta`s in the
//!   deeper books' form: a changed side carries the new level and, if its price moved, the old
//!   price with size `"0"`; an unchanged side is `[]`. Either way, if nothing changes for
//!   3 seconds the last snapshot is sent again with the same `u`, as documented.
//! - Prices and sizes are printed with as many decimals as the symbol's tick and lot size have
//!   (`"61837.60"`, `"0.00123"`), like Bybit.
//!
//! Faults ([`BybitSimHandle::faults`]) act on every open connection:
//! - `silent`: no pushes and no pongs (Bybit's only heartbeat); acks are still sent and the
//!   market moves on, so a level-1 delta stream resumes with a jump in `u` (a gap). The client's
//!   pings still count as activity, so a pinging client is not cut for idleness.
//! - `deaf`: `{"op":"ping"}` is ignored: no pong, and it does not count as activity. Other
//!   requests are answered; WebSocket-level pings are still answered by tungstenite, as they are
//!   not Bybit's keepalive.
//! - `drop_all`: the TCP connection is shut down at once, with no close frame.
//! - `inject_garbage(n)`: `n` text frames from [`GARBAGE_TEXT`] in turn, then one binary frame
//!   that is not valid UTF-8, between pushes.
//! - `announce_shutdown`: Bybit documents no maintenance notice, so the connection is closed
//!   with a close frame 1001 `server maintenance`, as on [`BybitSimHandle::shutdown`]; the
//!   simulator keeps accepting.
//!
//! Deliberately not modelled: the 500 connections per 5 minutes and 1000 connections per IP
//! limits, options and inverse markets, `tickers` and deeper books.
//!
//! Threads: one acceptor (`sim-bybit-acc`) and one thread per connection (`sim-bybit-conn`),
//! each pacing its own copy of the market (every connection replays the seed's sequence from
//! the start, so trade ids and `u` values name the same events on every connection; only the
//! times differ) and reading the client with socket timeouts of at most 20 ms (`POLL`), so it
//! notices shutdown and faults promptly. Events of topics a connection has not subscribed to are
//! generated and skipped, so a later subscription joins the sequence where it is.

use std::fmt::Write as _;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::feed::bybit::subscription::{MAX_ARGS_CHARS, Market, SERVER_IDLE_TIMEOUT};
use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::{DECIMALS, ONE, Price, Qty};
use serde_json::Value;
use tracing::{debug, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, header};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, WebSocket};

use super::faults::{Due, Faults, GARBAGE_TEXT, Seen};
use super::market::{MarketGen, SimBookTicker, SimEvent, SimSymbol, SimTrade};

/// Longest a thread waits before looking at the shutdown flag and the faults again.
const POLL: Duration = Duration::from_millis(20);
/// How often the acceptor polls its non-blocking listener.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Shortest read wait, used when the connection is behind schedule, so that requests are still
/// read between batches.
const MIN_WAIT: Duration = Duration::from_micros(100);
/// Longest a blocked write may stall the connection loop; the unsent bytes stay buffered.
const WRITE_TIMEOUT: Duration = Duration::from_millis(20);
/// A client that has not completed the HTTP upgrade by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's close frame.
const CLOSE_DRAIN: Duration = Duration::from_millis(50);
/// A client that lets this much unsent data pile up is dropped as a slow consumer.
const MAX_WRITE_BUFFER: usize = 8 << 20;
/// Largest request accepted from a client; the args limit keeps real ones near 21 KB.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Bounds on `idle_timeout`; the upper one keeps deadline arithmetic far from overflow.
const MIN_IDLE: Duration = Duration::from_millis(1);
const MAX_IDLE: Duration = Duration::from_secs(24 * 60 * 60);
/// Most events handled in one loop turn, so that a connection far behind still reads requests.
const MAX_BATCH: usize = 256;
/// Most trades in one `publicTrade` message, as documented.
const MAX_TRADES_PER_MESSAGE: usize = 1024;
/// Most args in one spot `subscribe` request.
const SPOT_MAX_ARGS: usize = 10;
/// A level-1 book that has not changed for this long is sent again as the same snapshot.
const QUIET_RESEND: Duration = Duration::from_secs(3);
/// `u` of each symbol's first top-of-book change; far from 1, which means a service restart.
const FIRST_UPDATE_ID: u64 = 1_000_000;
/// The binary frame that follows injected garbage text: not valid UTF-8.
const GARBAGE_BINARY: &[u8] = &[0xC3, 0x28, b'{', 0x80, 0xFE, 0xFF];

/// How `orderbook.1` pushes after the first one are sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BookUpdates {
    /// Every push is a full `snapshot`, as the docs say level 1 is.
    #[default]
    Snapshots,
    /// A `snapshot`, then `delta`s as the deeper books send them; for testing delta handling.
    Deltas,
}

/// What the Bybit simulator serves and when it cuts idle connections.
#[derive(Clone, Debug)]
pub struct BybitSimConfig {
    /// Seed of the synthetic market; every connection replays the sequence of this seed.
    pub seed: u64,
    /// Mean rate of ordinary market events over all symbols; bursts add to it.
    pub events_per_sec: u32,
    /// The instruments listed; topics use their venue symbol as it is.
    pub symbols: Vec<SimSymbol>,
    /// A connection with neither a ping nor a push for this long is closed (Bybit: 10 minutes).
    pub idle_timeout: Duration,
    /// How `orderbook.1` changes are sent after the first snapshot.
    pub book_updates: BookUpdates,
}

impl BybitSimConfig {
    /// A configuration with Bybit's idle cut, 100 events per second and snapshot-only level 1.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            idle_timeout: SERVER_IDLE_TIMEOUT,
            book_updates: BookUpdates::Snapshots,
        }
    }
}

impl Default for BybitSimConfig {
    /// Seed 1 over [`sample_symbols`](super::sample_symbols).
    fn default() -> Self {
        Self::new(1, super::binance::sample_symbols())
    }
}

/// Starts the simulator on `bind` (port 0 picks a free port) and returns at once.
///
/// # Errors
/// `InvalidInput` if the configuration is unusable (no symbols, a zero rate, an idle timeout
/// outside 1 ms to 24 h, a bad price grid, a symbol listed twice); otherwise the error from
/// binding the socket or starting the acceptor thread.
pub fn spawn(bind: SocketAddr, cfg: BybitSimConfig) -> io::Result<BybitSimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    if !(MIN_IDLE..=MAX_IDLE).contains(&cfg.idle_timeout) {
        return Err(invalid("idle_timeout must be between 1 ms and 24 h".into()));
    }
    let market = MarketGen::new(cfg.seed, cfg.events_per_sec, &cfg.symbols).map_err(|e| invalid(e.to_string()))?;
    let mut listings: Vec<Listing> = Vec::with_capacity(cfg.symbols.len());
    for sym in &cfg.symbols {
        if listings.iter().any(|l| l.symbol == sym.venue_symbol) {
            return Err(invalid(format!("symbol {} is listed twice", sym.venue_symbol)));
        }
        listings.push(Listing {
            symbol: sym.venue_symbol,
            price_places: places(sym.tick_size.raw()),
            qty_places: places(sym.lot_size.raw()),
        });
    }

    let listener = TcpListener::bind(bind)?;
    // Non-blocking so that the acceptor can notice shutdown without a wake-up connection.
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        listings,
        market,
        seed: cfg.seed,
        idle_timeout: cfg.idle_timeout,
        book_updates: cfg.book_updates,
        faults: Faults::default(),
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-bybit-acc".into()).spawn({
        let shared = Arc::clone(&shared);
        move || accept_loop(&listener, &shared)
    })?;
    Ok(BybitSimHandle {
        local_addr,
        shared,
        acceptor: Some(acceptor),
    })
}

/// A running simulator. Dropping it shuts it down, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct BybitSimHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl BybitSimHandle {
    /// The address the simulator listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The fault switches, shared with every connection thread; see the module docs for what
    /// each one does on this venue.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Number of client connections currently being served, counted from the TCP accept until
    /// the connection thread has closed the socket.
    pub fn connections(&self) -> usize {
        // Acquire pairs with the Release decrement in `OpenGuard::drop`, so a count that has
        // dropped means that connection's socket is already closed.
        self.shared.open.load(Ordering::Acquire)
    }

    /// Stops accepting, sends a close frame 1001 on every connection, closes them and joins all
    /// threads; about 100 ms at most (a 20 ms poll, a 50 ms wait for the clients' close
    /// frames, 20 ms write timeouts towards clients that do not read).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // Release pairs with the Acquire loads in the acceptor and connection loops.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            warn!("sim-bybit acceptor thread panicked");
        }
    }
}

impl Drop for BybitSimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// State shared by the acceptor and every connection thread; read-only apart from the flag,
/// the counters and the fault switches.
#[derive(Debug)]
struct Shared {
    listings: Vec<Listing>,
    /// A fresh generator, cloned for every connection.
    market: MarketGen,
    seed: u64,
    idle_timeout: Duration,
    book_updates: BookUpdates,
    faults: Faults,
    stop: AtomicBool,
    open: AtomicUsize,
    /// Connections accepted so far; numbers each connection's `conn_id`.
    accepted: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `BybitSimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    /// Resolves a topic this simulator serves.
    fn parse_topic(&self, topic: &str) -> Option<Topic> {
        let (kind, symbol) = if let Some(symbol) = topic.strip_prefix("publicTrade.") {
            (TopicKind::Trade, symbol)
        } else if let Some(symbol) = topic.strip_prefix("orderbook.1.") {
            (TopicKind::Book, symbol)
        } else {
            return None;
        };
        let symbol = self.listings.iter().position(|l| l.symbol.as_str() == symbol)?;
        Some(Topic { symbol, kind })
    }
}

/// One listed instrument and how many decimals its prices and sizes are printed with.
#[derive(Debug)]
struct Listing {
    symbol: VenueSymbol,
    price_places: u32,
    qty_places: u32,
}

/// Decimal places a grid step needs: 2 for 0.01, 0 for 1.
fn places(step_raw: i64) -> u32 {
    let mut places = DECIMALS;
    let mut raw = step_raw;
    while places > 0 && raw != 0 && raw % 10 == 0 {
        raw /= 10;
        places -= 1;
    }
    places
}

/// `raw` 10^-8 units with exactly `places` decimals (more if the value needs them).
fn decimal(raw: i64, places: u32) -> String {
    let (int, frac) = (raw / ONE, raw % ONE);
    let unit = 10i64.pow(DECIMALS - places);
    let places = if frac % unit == 0 { places } else { DECIMALS };
    if places == 0 {
        return int.to_string();
    }
    let frac = frac / 10i64.pow(DECIMALS - places);
    format!("{int}.{frac:0width$}", width = places as usize)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopicKind {
    Trade,
    Book,
}

/// A topic as an index into the listings plus its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Topic {
    symbol: usize,
    kind: TopicKind,
}

/// Decrements the open-connection count when a connection thread ends, even by panic.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        // Release pairs with the Acquire load in `BybitSimHandle::connections`.
        self.0.open.fetch_sub(1, Ordering::Release);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, peer)) => {
                conns.retain(|c| !c.is_finished());
                shared.open.fetch_add(1, Ordering::Release);
                let number = shared.accepted.fetch_add(1, Ordering::Relaxed);
                let guard = OpenGuard(Arc::clone(shared));
                let spawned = thread::Builder::new().name("sim-bybit-conn".into()).spawn(move || {
                    let guard = guard;
                    serve(stream, peer, number, &guard.0);
                });
                // On failure the closure, and with it the guard and the socket, is dropped.
                match spawned {
                    Ok(conn) => conns.push(conn),
                    Err(e) => warn!(%peer, error = %e, "sim-bybit: cannot start a connection thread"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) => {
                // Typically out of file descriptors; back off rather than spin.
                warn!(error = %e, "sim-bybit: accept failed");
                thread::sleep(POLL);
            }
        }
    }
    for conn in conns {
        if conn.join().is_err() {
            warn!("sim-bybit connection thread panicked");
        }
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, number: u64, shared: &Shared) {
    let configured = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = configured {
        debug!(%peer, error = %e, "sim-bybit: cannot configure socket");
        return;
    }
    // The faults a connection must act on are those raised after it was accepted.
    let seen = shared.faults.seen_now();
    let Some((ws, market)) = handshake(stream, peer, shared) else {
        return;
    };
    debug!(%peer, market = market.name(), "sim-bybit: client connected");
    let mut session = Session::new(ws, market, conn_id(shared.seed, number), peer, seen, shared);
    session.run();
}

/// A UUID-shaped connection id, derived from the seed and the connection's number.
fn conn_id(seed: u64, number: u64) -> String {
    uuid(mix(seed ^ 0x636f_6e6e), mix(number))
}

/// A UUID-shaped string from two 64-bit values.
fn uuid(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// SplitMix64's finaliser: spreads nearby inputs over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Runs the HTTP upgrade, choosing the market from the request path; `None` if the client was
/// refused, gave up, was too slow, or the simulator is shutting down.
fn handshake(stream: TcpStream, peer: SocketAddr, shared: &Shared) -> Option<(WebSocket<TcpStream>, Market)> {
    let mut market = None;
    // The signature, with its large error type, is the one tungstenite's `Callback` requires.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let path = request.uri().path();
        match Market::from_path(path) {
            Some(m) => {
                market = Some(m);
                Ok(response)
            }
            None => Err(not_found(path)),
        }
    };
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut attempt = tungstenite::accept_hdr_with_config(stream, callback, Some(ws_config()));
    let ws = loop {
        match attempt {
            Ok(ws) => break ws,
            // The socket's read timeout expired mid-request; keep going unless told to stop.
            Err(HandshakeError::Interrupted(mid)) => {
                if shared.stopping() || Instant::now() >= deadline {
                    debug!(%peer, "sim-bybit: handshake abandoned");
                    return None;
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                debug!(%peer, error = %e, "sim-bybit: handshake refused");
                return None;
            }
        }
    };
    market.map(|m| (ws, m))
}

/// The HTTP 404 for a path that is not a public endpoint.
fn not_found(path: &str) -> ErrorResponse {
    let body = format!("Not found: {path}");
    let mut response = ErrorResponse::new(None);
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.body_mut() = Some(body);
    response
}

/// Why a connection loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    Maintenance,
    Dropped,
    Idle,
    ClientClosed,
    SlowConsumer,
    Failed(WsError),
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970.
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What one connection knows about one symbol's market, whatever it subscribes to.
#[derive(Clone, Copy, Debug)]
struct SymbolState {
    /// The latest top of book, once there has been one.
    top: Option<SimBookTicker>,
    /// `u` of the latest top-of-book change.
    u: u64,
    /// Cross sequence: advances with every event of the symbol.
    cross_seq: u64,
    /// Price of the last trade and whether the last price change was upward, for `L`.
    last_trade: Option<Price>,
    last_move_up: bool,
}

/// One subscribed topic and, for a book, what the client has been sent.
#[derive(Clone, Copy, Debug)]
struct Sub {
    topic: Topic,
    /// The top of book the client last received; `None` until the first snapshot.
    sent: Option<SimBookTicker>,
    /// When this topic last pushed, for the 3-second resend.
    last_push: Instant,
}

/// A `subscribe` or `unsubscribe` request's verdict: the ack's `success` and `ret_msg`.
type Verdict = Result<(), String>;

/// One client connection: its market, subscriptions, copy of the generator and idle timer.
struct Session<'a> {
    ws: WebSocket<TcpStream>,
    shared: &'a Shared,
    peer: SocketAddr,
    market_kind: Market,
    conn_id: String,
    market: MarketGen,
    /// The next market event, generated ahead so its due time is known.
    next: SimEvent,
    start: Instant,
    symbols: Vec<SymbolState>,
    subs: Vec<Sub>,
    /// Total characters of the subscribed topics, against the 21,000 limit.
    args_chars: usize,
    /// Last ping heard or push sent.
    last_activity: Instant,
    seen: Seen,
    /// Garbage frames sent so far, so that injections go through the list in turn.
    garbage_sent: u64,
}

impl<'a> Session<'a> {
    fn new(
        ws: WebSocket<TcpStream>,
        market_kind: Market,
        conn_id: String,
        peer: SocketAddr,
        seen: Seen,
        shared: &'a Shared,
    ) -> Self {
        let mut market = shared.market.clone();
        let next = market.next_event();
        let start = Instant::now();
        let symbols = (0..shared.listings.len())
            .map(|_| SymbolState {
                top: None,
                u: FIRST_UPDATE_ID - 1,
                cross_seq: 0,
                last_trade: None,
                last_move_up: true,
            })
            .collect();
        Self {
            ws,
            shared,
            peer,
            market_kind,
            conn_id,
            market,
            next,
            start,
            symbols,
            subs: Vec::new(),
            args_chars: 0,
            last_activity: start,
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
            End::Shutdown => {
                self.close(CloseCode::Away, "server shutdown");
                debug!(%peer, "sim-bybit: connection closed by shutdown");
            }
            End::Maintenance => {
                self.close(CloseCode::Away, "server maintenance");
                debug!(%peer, "sim-bybit: connection closed for announced maintenance");
            }
            End::Dropped => {
                // No close frame: the peer sees the TCP connection end, as on a network drop.
                let _ = self.ws.get_ref().shutdown(Shutdown::Both);
                debug!(%peer, "sim-bybit: connection dropped by fault");
            }
            End::Idle => {
                self.close(CloseCode::Normal, "idle timeout");
                debug!(%peer, "sim-bybit: no ping and no push in time, closing");
            }
            End::ClientClosed => {
                // Sends the close reply tungstenite queued; errors only mean the peer left.
                let _ = self.ws.flush();
                debug!(%peer, "sim-bybit: client closed the connection");
            }
            End::SlowConsumer => warn!(%peer, "sim-bybit: client does not read, dropping the connection"),
            End::Failed(e) => debug!(%peer, error = %e, "sim-bybit: connection failed"),
        }
    }

    /// One turn of the loop: act on faults, send what is due, then wait for the client until
    /// the next thing is due.
    fn turn(&mut self) -> Result<(), End> {
        if self.shared.stopping() {
            return Err(End::Shutdown);
        }
        let due: Due = self.shared.faults.poll(&mut self.seen);
        if due.drop {
            return Err(End::Dropped);
        }
        if due.garbage > 0 {
            self.send_garbage(due.garbage)?;
        }
        if due.shutdown {
            return Err(End::Maintenance);
        }
        let now = Instant::now();
        let elapsed_ns = now.duration_since(self.start).as_nanos();
        let mut handled = 0;
        while handled < MAX_BATCH && u128::from(self.next.offset_ns()) <= elapsed_ns {
            let event = std::mem::replace(&mut self.next, self.market.next_event());
            handled += 1;
            match event {
                SimEvent::Trade(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_TRADES_PER_MESSAGE
                        && u128::from(self.next.offset_ns()) <= elapsed_ns
                        && matches!(self.next, SimEvent::Trade(t) if t.symbol == first.symbol)
                    {
                        if let SimEvent::Trade(t) = std::mem::replace(&mut self.next, self.market.next_event()) {
                            batch.push(t);
                        }
                    }
                    self.on_trades(&batch, now)?;
                }
                SimEvent::BookTicker(top) => self.on_book(top, now)?,
            }
        }
        self.resend_quiet_books(now)?;
        if now.duration_since(self.last_activity) >= self.shared.idle_timeout {
            // A ping that arrived while this thread was not running still counts: read what is
            // waiting before deciding.
            if let Err(e) = self.ws.get_ref().set_read_timeout(Some(MIN_WAIT)) {
                return Err(End::Failed(WsError::Io(e)));
            }
            while self.read_one()? {}
            if now.duration_since(self.last_activity) >= self.shared.idle_timeout {
                return Err(End::Idle);
            }
        }
        match self.ws.flush() {
            Ok(()) => {}
            Err(WsError::Io(e)) if would_block(&e) => {}
            Err(e) => return Err(End::Failed(e)),
        }
        let mut wake = now + POLL;
        if let Some(due) = self.start.checked_add(Duration::from_nanos(self.next.offset_ns())) {
            wake = wake.min(due);
        }
        wake = wake.min(self.last_activity + self.shared.idle_timeout);
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if let Err(e) = self.ws.get_ref().set_read_timeout(Some(wait)) {
            return Err(End::Failed(WsError::Io(e)));
        }
        self.read_one().map(drop)
    }

    /// Records a batch of trades of one symbol and pushes them to a subscriber.
    fn on_trades(&mut self, batch: &[SimTrade], now: Instant) -> Result<(), End> {
        let symbol = batch[0].symbol;
        let topic = Topic {
            symbol,
            kind: TopicKind::Trade,
        };
        // The symbol's state advances whether or not anyone hears about it.
        let send = self.subscribed(topic) && !self.shared.faults.silent();
        let shared = self.shared;
        let listing = &shared.listings[symbol];
        let linear = self.market_kind == Market::Linear;
        let ms = wall_clock_ms();
        let mut data = String::new();
        let state = &mut self.symbols[symbol];
        for trade in batch {
            state.cross_seq += 1;
            let direction = match state.last_trade {
                Some(last) if trade.price > last => {
                    state.last_move_up = true;
                    "PlusTick"
                }
                Some(last) if trade.price < last => {
                    state.last_move_up = false;
                    "MinusTick"
                }
                _ if state.last_move_up => "ZeroPlusTick",
                _ => "ZeroMinusTick",
            };
            state.last_trade = Some(trade.price);
            if !send {
                continue;
            }
            if !data.is_empty() {
                data.push(',');
            }
            // `S` is the taker's side: the buyer was the maker when the seller took.
            let side = if trade.buyer_is_maker { "Sell" } else { "Buy" };
            let _ = write!(
                data,
                r#"{{"T":{ms},"s":"{}","S":"{side}","v":"{}","p":"{}","#,
                listing.symbol,
                decimal(trade.qty.raw(), listing.qty_places),
                decimal(trade.price.raw(), listing.price_places),
            );
            if linear {
                let _ = write!(data, r#""L":"{direction}","#);
            }
            let id = if linear {
                uuid(mix(trade.trade_id ^ mix(symbol as u64)), mix(trade.trade_id))
            } else {
                trade.trade_id.to_string()
            };
            let _ = write!(data, r#""i":"{id}","BT":false,"seq":{}}}"#, state.cross_seq);
        }
        if !send {
            return Ok(());
        }
        let text = format!(
            r#"{{"topic":"publicTrade.{}","type":"snapshot","ts":{ms},"data":[{data}]}}"#,
            listing.symbol
        );
        self.push(text, now)
    }

    /// Records a top-of-book change and pushes it to a subscriber.
    fn on_book(&mut self, top: SimBookTicker, now: Instant) -> Result<(), End> {
        let state = &mut self.symbols[top.symbol];
        state.top = Some(top);
        state.u += 1;
        state.cross_seq += 1;
        self.push_book(top.symbol, now, false)
    }

    /// Sends the symbol's level-1 book to its subscriber, if any: a snapshot first, then
    /// snapshots or deltas as configured. `resend` repeats the last snapshot unchanged.
    fn push_book(&mut self, symbol: usize, now: Instant, resend: bool) -> Result<(), End> {
        let Some(at) = self.subs.iter().position(|s| {
            s.topic
                == Topic {
                    symbol,
                    kind: TopicKind::Book,
                }
        }) else {
            return Ok(());
        };
        let state = self.symbols[symbol];
        let Some(top) = state.top else {
            return Ok(());
        };
        if self.shared.faults.silent() {
            return Ok(());
        }
        let sub = self.subs[at];
        let delta = match sub.sent {
            Some(sent) if !resend && self.shared.book_updates == BookUpdates::Deltas => Some(sent),
            _ => None,
        };
        let shared = self.shared;
        let listing = &shared.listings[symbol];
        let level = |price: Price, qty: Qty| {
            format!(
                r#"["{}","{}"]"#,
                decimal(price.raw(), listing.price_places),
                decimal(qty.raw(), listing.qty_places)
            )
        };
        let (bids, asks) = match delta {
            None => (level(top.bid, top.bid_qty), level(top.ask, top.ask_qty)),
            Some(sent) => {
                let side = |old: (Price, Qty), new: (Price, Qty), new_first: bool| {
                    if old.0 != new.0 {
                        // A deletion's size is a bare `"0"`, as in the docs' delta sample.
                        let remove = format!(r#"["{}","0"]"#, decimal(old.0.raw(), listing.price_places));
                        let add = level(new.0, new.1);
                        if new_first {
                            format!("{add},{remove}")
                        } else {
                            format!("{remove},{add}")
                        }
                    } else if old.1 != new.1 {
                        level(new.0, new.1)
                    } else {
                        String::new()
                    }
                };
                // Bids are listed best (highest) first, asks best (lowest) first.
                (
                    side((sent.bid, sent.bid_qty), (top.bid, top.bid_qty), top.bid > sent.bid),
                    side((sent.ask, sent.ask_qty), (top.ask, top.ask_qty), top.ask < sent.ask),
                )
            }
        };
        let ms = wall_clock_ms();
        let kind = if delta.is_some() { "delta" } else { "snapshot" };
        let text = format!(
            r#"{{"topic":"orderbook.1.{}","ts":{ms},"type":"{kind}","data":{{"s":"{}","b":[{bids}],"a":[{asks}],"u":{},"seq":{}}},"cts":{ms}}}"#,
            listing.symbol, listing.symbol, state.u, state.cross_seq,
        );
        self.subs[at].sent = Some(top);
        self.subs[at].last_push = now;
        self.push(text, now)
    }

    /// Sends the first snapshot of new book subscriptions, and the quiet-book resend.
    fn resend_quiet_books(&mut self, now: Instant) -> Result<(), End> {
        for i in 0..self.subs.len() {
            let sub = self.subs[i];
            if sub.topic.kind != TopicKind::Book {
                continue;
            }
            if sub.sent.is_none() {
                self.push_book(sub.topic.symbol, now, false)?;
            } else if now.duration_since(sub.last_push) >= QUIET_RESEND {
                self.push_book(sub.topic.symbol, now, true)?;
            }
        }
        Ok(())
    }

    fn subscribed(&self, topic: Topic) -> bool {
        self.subs.iter().any(|s| s.topic == topic)
    }

    /// Queues a push; pushes keep the connection from going idle.
    fn push(&mut self, text: String, now: Instant) -> Result<(), End> {
        self.last_activity = now;
        self.write(Message::text(text))
    }

    fn send_garbage(&mut self, n: u64) -> Result<(), End> {
        for _ in 0..n {
            let text = GARBAGE_TEXT[(self.garbage_sent % GARBAGE_TEXT.len() as u64) as usize];
            self.garbage_sent += 1;
            self.write(Message::text(text))?;
        }
        self.write(Message::Binary(Bytes::from_static(GARBAGE_BINARY)))
    }

    /// Waits for one message from the client (until the read timeout) and handles it;
    /// `Ok(false)` if none came.
    fn read_one(&mut self) -> Result<bool, End> {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                if let Some(reply) = self.request(text.as_str()) {
                    self.write(Message::text(reply))?;
                }
                Ok(true)
            }
            Ok(Message::Binary(_)) => {
                debug!(peer = %self.peer, "sim-bybit: binary frame ignored");
                Ok(true)
            }
            // Tungstenite queues the pong reply to a ping itself; unsolicited pongs mean nothing.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(true),
            Ok(Message::Close(_)) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => Err(End::ClientClosed),
            Err(WsError::Io(e)) if would_block(&e) => Ok(false),
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

    /// Handles one request and returns the reply, if one is due.
    fn request(&mut self, text: &str) -> Option<String> {
        let request = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(request)) => request,
            Ok(_) => return Some(self.ack(false, "Invalid request: expected a JSON object", "", "")),
            Err(e) => return Some(self.ack(false, &format!("Invalid JSON: {e}"), "", "")),
        };
        let req_id = match request.get("req_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let rid = req_id.as_deref().unwrap_or("");
        let op = match request.get("op") {
            Some(Value::String(op)) => op.as_str(),
            _ => return Some(self.ack(false, "Invalid request: op must be a string", rid, "")),
        };
        match op {
            "ping" => self.pong(req_id.as_deref()),
            "subscribe" | "unsubscribe" => {
                let verdict = self.subscription(op == "subscribe", request.get("args"));
                Some(match verdict {
                    // Spot echoes the op on success, linear sends nothing (`venues.md` §3.2).
                    Ok(()) => {
                        let msg = if self.market_kind == Market::Spot { op } else { "" };
                        self.ack(true, msg, rid, op)
                    }
                    Err(reason) => self.ack(false, &reason, rid, op),
                })
            }
            other => Some(self.ack(false, &format!("Invalid request: unsupported op {other}"), rid, other)),
        }
    }

    /// The pong for a ping, or `None` when faults suppress it.
    fn pong(&mut self, req_id: Option<&str>) -> Option<String> {
        if self.shared.faults.deaf() {
            return None;
        }
        self.last_activity = Instant::now();
        if self.shared.faults.silent() {
            return None;
        }
        let conn_id = &self.conn_id;
        Some(match (self.market_kind, req_id) {
            (Market::Spot, None) => {
                format!(r#"{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","op":"ping"}}"#)
            }
            (_, req_id) => format!(
                r#"{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","req_id":{},"op":"ping"}}"#,
                Value::from(req_id.unwrap_or(""))
            ),
        })
    }

    /// Applies a `subscribe` (`add`) or `unsubscribe` request, all or nothing.
    fn subscription(&mut self, add: bool, args: Option<&Value>) -> Verdict {
        let Some(Value::Array(args)) = args else {
            return Err("Invalid request: args must be an array of topics".into());
        };
        if args.is_empty() {
            return Err("Invalid request: args is empty".into());
        }
        if self.market_kind == Market::Spot && args.len() > SPOT_MAX_ARGS {
            return Err(format!("args size >{SPOT_MAX_ARGS}"));
        }
        // The topics this request changes, each once, with their length against the limit.
        let mut changes: Vec<(Topic, usize)> = Vec::with_capacity(args.len());
        for arg in args {
            let Some(name) = arg.as_str() else {
                return Err(format!("Invalid topic: {arg}"));
            };
            let Some(topic) = self.shared.parse_topic(name) else {
                return Err(format!("Invalid topic: {name}"));
            };
            if self.subscribed(topic) != add && !changes.iter().any(|(t, _)| *t == topic) {
                changes.push((topic, name.chars().count()));
            }
        }
        let chars: usize = changes.iter().map(|(_, n)| n).sum();
        if add {
            if self.args_chars + chars > MAX_ARGS_CHARS {
                return Err(format!("args too long: more than {MAX_ARGS_CHARS} characters"));
            }
            self.args_chars += chars;
            let now = Instant::now();
            self.subs.extend(changes.into_iter().map(|(topic, _)| Sub {
                topic,
                sent: None,
                last_push: now,
            }));
        } else {
            self.args_chars -= chars;
            self.subs.retain(|s| !changes.iter().any(|(t, _)| *t == s.topic));
        }
        Ok(())
    }

    /// An ack in the documented key order.
    fn ack(&self, success: bool, ret_msg: &str, req_id: &str, op: &str) -> String {
        format!(
            r#"{{"success":{success},"ret_msg":{},"conn_id":"{}","req_id":{},"op":{}}}"#,
            Value::from(ret_msg),
            self.conn_id,
            Value::from(req_id),
            Value::from(op)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_grid() {
        assert_eq!(places(1_000_000), 2);
        assert_eq!(places(1_000), 5);
        assert_eq!(places(ONE), 0);
        assert_eq!(places(10 * ONE), 0);
        assert_eq!(places(1), 8);
        assert_eq!(decimal(6_183_760_000_000, 2), "61837.60");
        assert_eq!(decimal(123_000, 5), "0.00123");
        assert_eq!(decimal(5 * ONE, 0), "5");
        // A value off the grid is printed exactly rather than rounded.
        assert_eq!(decimal(6_183_760_000_001, 2), "61837.60000001");
    }

    #[test]
    fn ids_are_uuid_shaped_and_stable() {
        let id = conn_id(1, 0);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(id, conn_id(1, 0));
        assert_ne!(id, conn_id(1, 1));
        assert_ne!(id, conn_id(2, 0));
    }
}
