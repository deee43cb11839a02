//! Binance Spot market-data simulator: a WebSocket server on loopback that speaks the stream
//! protocol of `venues.md` §1 and plays the seeded [`MarketGen`] sequence.
//!
//! It exists so that the Binance feed handler can be tested against the real wire format
//! (URL forms, combined wrapper, JSON control messages and their errors, ping/pong keepalive,
//! the `serverShutdown` event) without a network, with content that is reproducible from the
//! seed.
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
//! Threads: one acceptor (`sim-binance-acc`) and one thread per connection
//! (`sim-binance-conn`). Each connection thread both paces its own copy of the market and reads
//! the client's control frames, using socket timeouts so that it never waits longer than
//! 20 ms (`POLL`) before checking the shared shutdown flag.
//!
//! Every connection gets a fresh generator with the configured seed, so all clients see the
//! same sequence; only the event times `E`/`T` (the wall clock at send time) differ.
//! Events of streams a connection has not subscribed to are generated and skipped, so a later
//! `SUBSCRIBE` joins the sequence where it is, as on the real venue.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::ONE;
use serde_json::Value;
use tracing::{debug, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, Uri, header};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, WebSocket};

use super::market::{MarketGen, SimEvent, SimSymbol};

/// Longest a thread waits before looking at the shutdown flag again; bounds shutdown latency.
const POLL: Duration = Duration::from_millis(20);
/// How often the acceptor polls its non-blocking listener.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
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

/// What the Binance simulator serves and how it keeps connections alive.
#[derive(Clone, Debug)]
pub struct BinanceSimConfig {
    /// Seed of the synthetic market; every connection replays the sequence of this seed.
    pub seed: u64,
    /// Mean rate of ordinary market events over all symbols; bursts add to it.
    pub events_per_sec: u32,
    /// The instruments listed; stream names use their venue symbol in lower case.
    pub symbols: Vec<SimSymbol>,
    /// Interval between the server's ping frames (Binance: 20 s).
    pub ping_interval: Duration,
    /// A connection whose oldest unanswered ping is older than this is dropped (Binance: 60 s).
    pub pong_timeout: Duration,
}

impl BinanceSimConfig {
    /// A configuration with Binance's keepalive timings and 100 events per second.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
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
/// name); otherwise the error from binding the socket or starting the acceptor thread.
pub fn spawn(bind: SocketAddr, cfg: BinanceSimConfig) -> io::Result<SimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    let keepalive = Duration::from_millis(1)..=MAX_KEEPALIVE;
    if !keepalive.contains(&cfg.ping_interval) || !keepalive.contains(&cfg.pong_timeout) {
        return Err(invalid(
            "ping_interval and pong_timeout must be between 1 ms and 24 h".into(),
        ));
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

    let listener = TcpListener::bind(bind)?;
    // Non-blocking so that the acceptor can notice shutdown without a wake-up connection.
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        listings,
        market,
        ping_interval: cfg.ping_interval,
        pong_timeout: cfg.pong_timeout,
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-binance-acc".into()).spawn({
        let shared = Arc::clone(&shared);
        move || accept_loop(&listener, &shared)
    })?;
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
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// State shared by the acceptor and every connection thread; read-only apart from the flag
/// and the counter.
#[derive(Debug)]
struct Shared {
    listings: Vec<Listing>,
    /// A fresh generator, cloned for every connection.
    market: MarketGen,
    ping_interval: Duration,
    pong_timeout: Duration,
    stop: AtomicBool,
    open: AtomicUsize,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `SimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    fn stream_name(&self, stream: StreamId) -> String {
        format!("{}@{}", self.listings[stream.symbol].lower, stream.kind.suffix())
    }

    /// Resolves a stream name such as `btcusdt@bookTicker`; the symbol must be lower case.
    fn parse_stream(&self, name: &str) -> Option<StreamId> {
        let (symbol, suffix) = name.split_once('@')?;
        let kind = match suffix {
            "trade" => StreamKind::Trade,
            "bookTicker" => StreamKind::BookTicker,
            _ => return None,
        };
        let symbol = self.listings.iter().position(|l| l.lower == symbol)?;
        Some(StreamId { symbol, kind })
    }
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

/// Decrements the open-connection count when a connection thread ends, even by panic.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        // Release pairs with the Acquire load in `SimHandle::connections`.
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
                let guard = OpenGuard(Arc::clone(shared));
                let spawned = thread::Builder::new().name("sim-binance-conn".into()).spawn(move || {
                    let guard = guard;
                    serve(stream, peer, &guard.0);
                });
                // On failure the closure, and with it the guard and the socket, is dropped.
                match spawned {
                    Ok(conn) => conns.push(conn),
                    Err(e) => {
                        warn!(%peer, error = %e, "sim-binance: cannot start a connection thread")
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) => {
                // Typically out of file descriptors; back off rather than spin.
                warn!(error = %e, "sim-binance: accept failed");
                thread::sleep(POLL);
            }
        }
    }
    for conn in conns {
        if conn.join().is_err() {
            warn!("sim-binance connection thread panicked");
        }
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
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
    let mut session = Session::new(ws, route, peer, shared);
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

/// Why a connection loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    PongTimeout,
    ClientClosed,
    SlowConsumer,
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

/// One client connection: its subscriptions, its copy of the market and its keepalive state.
struct Session<'a> {
    ws: WebSocket<TcpStream>,
    shared: &'a Shared,
    peer: SocketAddr,
    market: MarketGen,
    /// The next market event, generated ahead so its due time is known.
    next: SimEvent,
    start: Instant,
    subs: Vec<StreamId>,
    combined: bool,
    micros: bool,
    /// Pings not yet answered, oldest first, with their payloads.
    pings: VecDeque<(Bytes, Instant)>,
    next_ping: Instant,
    last_ping_ms: u64,
}

impl<'a> Session<'a> {
    fn new(ws: WebSocket<TcpStream>, route: Route, peer: SocketAddr, shared: &'a Shared) -> Self {
        let mut market = shared.market.clone();
        let next = market.next_event();
        let start = Instant::now();
        Self {
            ws,
            shared,
            peer,
            market,
            next,
            start,
            subs: route.streams,
            combined: route.combined,
            micros: route.micros,
            pings: VecDeque::new(),
            next_ping: start + shared.ping_interval,
            last_ping_ms: 0,
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
                let event = self.render_shutdown();
                // Best effort: the client may already be gone.
                let _ = self.ws.write(Message::text(event));
                self.close(CloseCode::Away, "server shutdown");
                debug!(%peer, "sim-binance: connection closed by shutdown");
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
            End::Failed(e) => {
                debug!(%peer, error = %e, "sim-binance: connection failed");
            }
        }
    }

    /// One turn of the loop: send what is due, keep alive, then wait for the client until the
    /// next thing is due.
    fn turn(&mut self) -> Result<(), End> {
        if self.shared.stopping() {
            return Err(End::Shutdown);
        }
        let now = Instant::now();
        let elapsed_ns = now.duration_since(self.start).as_nanos();
        for _ in 0..MAX_BATCH {
            if u128::from(self.next.offset_ns()) > elapsed_ns {
                break;
            }
            let event = std::mem::replace(&mut self.next, self.market.next_event());
            if let Some(text) = self.render(&event) {
                self.write(Message::text(text))?;
            }
        }
        if now >= self.next_ping {
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
        if let Some(due) = self.start.checked_add(Duration::from_nanos(self.next.offset_ns())) {
            wake = wake.min(due);
        }
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if let Err(e) = self.ws.get_ref().set_read_timeout(Some(wait)) {
            return Err(End::Failed(WsError::Io(e)));
        }
        self.read_one()
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

    fn event_time(&self) -> u64 {
        let us = wall_clock_us();
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
                let time = self.event_time();
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

    fn render_shutdown(&self) -> String {
        let payload = format!(r#"{{"e":"serverShutdown","E":{}}}"#, self.event_time());
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

    fn shared() -> Shared {
        let symbols = sample_symbols();
        Shared {
            listings: symbols
                .iter()
                .map(|s| Listing {
                    symbol: s.venue_symbol,
                    lower: s.venue_symbol.as_str().to_ascii_lowercase(),
                })
                .collect(),
            market: MarketGen::new(1, 10, &symbols).unwrap(),
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
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
}
