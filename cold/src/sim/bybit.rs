//! Bybit v5 public market-data simulator: a WebSocket server on loopback that speaks the
//! protocol of `venues.md` §3 (spot and linear) and plays the seeded [`MarketGen`] sequence (or
//! a capture).
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
//!   message, at most 1024 as on the venue (and never more than one loop turn handles). `seq` is
//!   a per-symbol cross sequence that advances with every market event.
//! - `orderbook.1.<SYMBOL>`: `{"topic","ts","type","data":{"s","b","a","u","seq"},"cts"}`, with
//!   `ts` before `type` as the docs say level-1 pushes have it. `u` advances by one with every
//!   top-of-book change of the symbol, so it is the same on every connection for the same
//!   change; `seq` is the symbol's cross sequence at that change. The first push after
//!   subscribing is a `snapshot` of the current book (sent at once, or as soon as the symbol has
//!   a top of book at all). After that, [`BookUpdates::Snapshots`] (the default) sends every
//!   change as a snapshot, as the docs say level 1 does; [`BookUpdates::Deltas`] sends `delta`s
//!   in the deeper books' form: a changed side carries the new level and, if its price moved, the
//!   old price with size `"0"`; an unchanged side is `[]`. Either way, if nothing changes for
//!   3 seconds the last snapshot is sent again with the same `u`, as documented.
//! - Times: `T` and `cts` are the event's own time and `ts` the wall clock when the message is
//!   written, all in ms since the epoch.
//! - Prices and sizes are printed with as many decimals as the symbol's tick and lot size have
//!   (`"61837.60"`, `"0.00123"`), like Bybit.
//!
//! Where the events come from ([`BybitSimConfig`]):
//! - **Shared market** (`shared_market: true`, the default): one [`SharedMarket`] timeline per
//!   simulator, paced in real time from [`spawn`], as on the real venue. A connection joins it at
//!   the live end, so trade ids, `u` and `seq` are global per symbol: two overlapping
//!   connections carry the same trade under the same id, and the same top of book under the same
//!   `u`, which is what a feed handler's make-before-break resubscribe needs. `T` and `cts` are
//!   the event's scheduled time, the same on every connection. A joining connection learns the
//!   market as it stands (the book, `u`, `seq`, the last trade price for `L`) from a checkpoint:
//!   a second copy of the seeded generator, kept at most a few milliseconds behind the live end
//!   by the acceptor thread and moved on to the exact event where the connection joins, so its
//!   first `orderbook.1` push is the current book under the current `u`, exactly as a connection
//!   that had been open all along would see it. A connection that falls further behind than the
//!   market log keeps (`market_log` events) is dropped with a close frame 1008
//!   `slow consumer`, counted by [`BybitSimHandle::lagged`].
//! - **Per-connection replay** (`shared_market: false`): every connection gets a fresh generator
//!   with the seed and replays the sequence from its start (trade ids from 1, `u` from
//!   1,000,000), so all connections see identical content at identical offsets from their
//!   start; `T` and `cts` are then the wall clock at send time.
//! - **Capture replay** (`replay: Some(path)`): pushes are read from a capture file
//!   (`maxx_hot::capture` format, gzip allowed) when the simulator starts, and every connection
//!   replays it from its first line, paced by the `recv_ns` deltas from the moment its first
//!   subscription is accepted (nothing flows on the venue before one, so a capture's time zero
//!   is its recorder's subscription; `shared_market` does not apply). A frame is sent, byte for
//!   byte as captured, when the connection subscribes to its `topic`. Kept when loading: pushes
//!   whose `topic` is `publicTrade.<SYMBOL>`, `orderbook.<DEPTH>.<SYMBOL>` (depth 1, 50, 200,
//!   500 or 1000) or `tickers.<SYMBOL>` for a listed symbol; a replaying simulator accepts
//!   subscriptions to the deeper books and to `tickers` too, so that their captured pushes can
//!   be served. Skipped when loading: `op` replies (acks and pongs; the simulator sends its
//!   own), topics of unlisted symbols or of kinds not served, lines that are not a JSON object
//!   with a `topic` and `data`, and malformed lines. A capture does not say which endpoint it
//!   came from, so both paths serve the same frames. Nothing is generated: no first snapshot on
//!   subscribing and no 3-second resend (a client gets the capture's own snapshots, if it
//!   subscribed before their time). Pongs, acks and every fault work as in the other modes;
//!   while `silent`, due frames are passed over unsent. When the capture ends the connection
//!   stays open, and is cut when idle like any other.
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
//! limits, options and inverse markets, `tickers` and deeper books (except from a capture).
//!
//! Threads: one acceptor (`sim-bybit-acc`), which also keeps the shared market's checkpoint
//! current; one generator in shared mode (`sim-bybit-mkt`); and one thread per connection
//! (`sim-bybit-conn`), reading the client with socket timeouts of at most 20 ms (`POLL`), so it
//! notices shutdown and faults promptly. Events of topics a connection has not subscribed to are
//! read and skipped (its view of every symbol still moves on), so a later subscription joins the
//! sequence where it is.

use std::fmt::Write as _;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::capture::{Capture, Line};
use maxx_hot::feed::bybit::subscription::{MAX_ARGS_CHARS, Market, SERVER_IDLE_TIMEOUT};
use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::{DECIMALS, ONE, Price, Qty};
use serde_json::Value;
use tracing::{debug, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, header};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, Utf8Bytes, WebSocket};

use super::broadcast::{Cursor, DEFAULT_LOG_CAPACITY, SharedMarket};
use super::faults::{Due, Faults, GARBAGE_TEXT, Seen};
use super::market::{MarketGen, SimBookTicker, SimEvent, SimSymbol, SimTrade};
use super::server;

/// Longest a thread waits before looking at the shutdown flag and the faults again.
const POLL: Duration = Duration::from_millis(20);
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
/// The order book depths Bybit publishes besides level 1 (spot and linear together), served
/// only from a capture.
const DEEP_BOOK_DEPTHS: [u32; 4] = [50, 200, 500, 1000];

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
    /// Seed of the synthetic market.
    pub seed: u64,
    /// Mean rate of ordinary market events over all symbols; bursts add to it.
    pub events_per_sec: u32,
    /// The instruments listed; topics use their venue symbol as it is.
    pub symbols: Vec<SimSymbol>,
    /// A connection with neither a ping nor a push for this long is closed (Bybit: 10 minutes).
    pub idle_timeout: Duration,
    /// How `orderbook.1` changes are sent after the first snapshot.
    pub book_updates: BookUpdates,
    /// One market timeline for the whole simulator, joined at the live end by each connection
    /// (`true`, as on the venue), or a private replay of the seed's sequence from its start for
    /// every connection (`false`, so that all connections see identical content).
    pub shared_market: bool,
    /// How many events the shared market keeps for connections that fall behind; one that
    /// falls further behind is dropped as a slow consumer. At least 1.
    pub market_log: usize,
    /// Serve the pushes of this capture file instead of the generator (see the module docs).
    pub replay: Option<PathBuf>,
}

impl BybitSimConfig {
    /// A configuration with Bybit's idle cut, 100 events per second, snapshot-only level 1 and
    /// a shared market.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            idle_timeout: SERVER_IDLE_TIMEOUT,
            book_updates: BookUpdates::Snapshots,
            shared_market: true,
            market_log: DEFAULT_LOG_CAPACITY,
            replay: None,
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
/// outside 1 ms to 24 h, a bad price grid, a symbol listed twice, a zero `market_log`); the
/// error from reading the `replay` capture (with its kind, naming the file); otherwise the
/// error from binding the socket or starting a thread.
pub fn spawn(bind: SocketAddr, cfg: BybitSimConfig) -> io::Result<BybitSimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    if !(MIN_IDLE..=MAX_IDLE).contains(&cfg.idle_timeout) {
        return Err(invalid("idle_timeout must be between 1 ms and 24 h".into()));
    }
    if cfg.market_log == 0 {
        return Err(invalid("market_log must keep at least one event".into()));
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
    let source = if let Some(frames) = replay {
        Source::Replay(frames)
    } else if cfg.shared_market {
        let checkpoint = Checkpoint {
            symbols: vec![SymbolState::new(); listings.len()],
            market: market.clone(),
            position: 0,
        };
        Source::Shared {
            market: SharedMarket::start(market, cfg.market_log, "sim-bybit-mkt")?,
            checkpoint: Mutex::new(checkpoint),
        }
    } else {
        Source::PerConnection(market)
    };
    let shared = Arc::new(Shared {
        listings,
        source,
        seed: cfg.seed,
        idle_timeout: cfg.idle_timeout,
        book_updates: cfg.book_updates,
        faults: Faults::default(),
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        accepted: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-bybit-acc".into()).spawn({
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

    /// How many connections have been dropped because they fell further behind the shared
    /// market than its log keeps (always 0 without a shared market).
    pub fn lagged(&self) -> u64 {
        // Acquire pairs with the Release increment made before such a connection closes.
        self.shared.lagged.load(Ordering::Acquire)
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
        // Every connection has ended, so nobody reads the market any more.
        self.shared.stop_market();
    }
}

impl Drop for BybitSimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where a simulator's market events come from.
#[derive(Debug)]
enum Source {
    /// A fresh generator, cloned for every connection.
    PerConnection(MarketGen),
    /// One timeline that every connection joins, and what a joining connection needs to know
    /// about the market as it stands.
    Shared {
        market: SharedMarket,
        checkpoint: Mutex<Checkpoint>,
    },
    /// Captured pushes, replayed from the start for every connection.
    Replay(Vec<ReplayFrame>),
}

/// Every symbol's state as of one event of the shared timeline, computed by replaying the seed
/// on a generator of its own: the event at index `i` is the `i`-th event of a fresh generator,
/// so this is exactly what a connection open since the start would know at that point.
#[derive(Debug)]
struct Checkpoint {
    /// Positioned at `position`: its next event is the timeline's event `position`.
    market: MarketGen,
    position: u64,
    symbols: Vec<SymbolState>,
}

impl Checkpoint {
    /// Applies events until the checkpoint stands at `target` (never backwards).
    fn advance_to(&mut self, target: u64) {
        while self.position < target {
            let event = self.market.next_event();
            apply(&mut self.symbols, &event);
            self.position += 1;
        }
    }
}

/// State shared by the acceptor and every connection thread; read-only apart from the flag,
/// the counters, the fault switches and the shared market's checkpoint.
#[derive(Debug)]
struct Shared {
    listings: Vec<Listing>,
    source: Source,
    seed: u64,
    idle_timeout: Duration,
    book_updates: BookUpdates,
    faults: Faults,
    stop: AtomicBool,
    open: AtomicUsize,
    /// Connections accepted so far; numbers each connection's `conn_id`.
    accepted: AtomicU64,
    /// Connections dropped for falling behind the shared market.
    lagged: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `BybitSimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    fn stop_market(&self) {
        if let Source::Shared { market, .. } = &self.source {
            market.shutdown();
        }
    }

    /// Moves the shared market's checkpoint up to everything published so far, so that a
    /// connection joining later only replays the last few milliseconds.
    fn refresh_checkpoint(&self) {
        if let Source::Shared { market, checkpoint } = &self.source {
            let published = market.published();
            lock(checkpoint).advance_to(published);
        }
    }

    /// Resolves a topic this simulator serves: the deeper books and `tickers` only from a
    /// capture.
    fn parse_topic(&self, topic: &str) -> Option<Topic> {
        parse_topic(&self.listings, topic, self.replaying())
    }

    fn replaying(&self) -> bool {
        matches!(self.source, Source::Replay(_))
    }
}

/// Resolves `topic` against the listings; `replay` also admits the topics only a capture has.
fn parse_topic(listings: &[Listing], topic: &str, replay: bool) -> Option<Topic> {
    let (kind, symbol) = if let Some(symbol) = topic.strip_prefix("publicTrade.") {
        (TopicKind::Trade, symbol)
    } else if let Some(symbol) = topic.strip_prefix("orderbook.1.") {
        (TopicKind::Book, symbol)
    } else if let Some(symbol) = topic.strip_prefix("tickers.")
        && replay
    {
        (TopicKind::Ticker, symbol)
    } else if let Some(rest) = topic.strip_prefix("orderbook.")
        && replay
    {
        let (depth, symbol) = rest.split_once('.')?;
        // Only the canonical spelling: `orderbook.050.X` is not a topic the venue knows.
        let depth = DEEP_BOOK_DEPTHS.into_iter().find(|d| d.to_string() == depth)?;
        (TopicKind::Depth(depth), symbol)
    } else {
        return None;
    };
    let symbol = listings.iter().position(|l| l.symbol.as_str() == symbol)?;
    Some(Topic { symbol, kind })
}

/// One captured push the simulator can serve.
#[derive(Debug)]
struct ReplayFrame {
    /// When to send it, from the connection's first subscription: its `recv_ns` minus the first
    /// line's, never smaller than the previous frame's.
    offset_ns: u64,
    /// Its `topic`; the frame goes to the connections subscribed to it.
    topic: Topic,
    /// The frame as captured; cloning it shares the bytes.
    text: Utf8Bytes,
}

/// Reads a capture and keeps the pushes of topics the simulator serves for listed symbols.
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
            Some(topic) => frames.push(ReplayFrame {
                offset_ns,
                topic,
                text: Utf8Bytes::from(text.to_owned()),
            }),
            None => skipped += 1,
        }
    }
    if frames.is_empty() {
        warn!(path = %path.display(), skipped, "sim-bybit: the replay capture has no frame to serve");
    } else {
        debug!(path = %path.display(), frames = frames.len(), skipped, "sim-bybit: replay capture loaded");
    }
    Ok(frames)
}

/// The topic of a captured push, if the simulator serves it; `None` for `op` replies (acks and
/// pongs), anything without a `topic` and `data`, and topics of other kinds or symbols.
fn classify(text: &str, listings: &[Listing]) -> Option<Topic> {
    let value: Value = serde_json::from_str(text).ok()?;
    let push = value.as_object()?;
    if push.contains_key("op") || !push.contains_key("data") {
        return None;
    }
    parse_topic(listings, push.get("topic")?.as_str()?, true)
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
    /// `orderbook.1`.
    Book,
    /// A deeper `orderbook.<depth>`, only from a capture.
    Depth(u32),
    /// `tickers`, only from a capture.
    Ticker,
}

/// A topic as an index into the listings plus its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Topic {
    symbol: usize,
    kind: TopicKind,
}

impl server::Served for Shared {
    const NAME: &'static str = "bybit";
    type Ticket = u64;

    fn stopping(&self) -> bool {
        Shared::stopping(self)
    }

    fn open(&self) -> &AtomicUsize {
        &self.open
    }

    fn faults(&self) -> &Faults {
        &self.faults
    }

    fn accepted(&self) -> u64 {
        self.accepted.fetch_add(1, Ordering::Relaxed)
    }

    fn serve(&self, stream: TcpStream, peer: SocketAddr, number: u64, seen: Seen) {
        serve(stream, peer, number, seen, self);
    }

    fn idle(&self) {
        self.refresh_checkpoint();
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, number: u64, seen: Seen, shared: &Shared) {
    let configured = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(POLL)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = configured {
        debug!(%peer, error = %e, "sim-bybit: cannot configure socket");
        return;
    }
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
    /// Fell further behind the shared market than its log keeps.
    Lagged(u64),
    Failed(WsError),
}

/// Locks the checkpoint. Nothing panics while holding it (advancing only generates events and
/// applies them to in-range symbols), so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

/// What one connection (or the shared market's checkpoint) knows about one symbol's market,
/// whatever it subscribes to.
#[derive(Clone, Copy, Debug)]
struct SymbolState {
    /// The latest top of book, once there has been one.
    top: Option<SimBookTicker>,
    /// `u` of the latest top-of-book change.
    u: u64,
    /// Cross sequence: advances with every event of the symbol.
    cross_seq: u64,
    /// The cross sequence of the latest top-of-book change, which every push of that book
    /// carries (a snapshot on subscribing and a quiet-book resend included).
    book_seq: u64,
    /// Price of the last trade and whether the last price change was upward, for `L`.
    last_trade: Option<Price>,
    last_move_up: bool,
}

impl SymbolState {
    /// Before the market's first event.
    fn new() -> Self {
        Self {
            top: None,
            u: FIRST_UPDATE_ID - 1,
            cross_seq: 0,
            book_seq: 0,
            last_trade: None,
            last_move_up: true,
        }
    }

    /// Records a trade at `price`; returns its tick direction (`L`).
    fn trade(&mut self, price: Price) -> &'static str {
        self.cross_seq += 1;
        let direction = match self.last_trade {
            Some(last) if price > last => {
                self.last_move_up = true;
                "PlusTick"
            }
            Some(last) if price < last => {
                self.last_move_up = false;
                "MinusTick"
            }
            _ if self.last_move_up => "ZeroPlusTick",
            _ => "ZeroMinusTick",
        };
        self.last_trade = Some(price);
        direction
    }

    /// Records a top-of-book change.
    fn book(&mut self, top: SimBookTicker) {
        self.top = Some(top);
        self.u += 1;
        self.cross_seq += 1;
        self.book_seq = self.cross_seq;
    }
}

/// Applies one market event to the state of its symbol.
fn apply(symbols: &mut [SymbolState], event: &SimEvent) {
    let Some(state) = symbols.get_mut(event.symbol()) else {
        return;
    };
    match event {
        SimEvent::Trade(trade) => {
            state.trade(trade.price);
        }
        SimEvent::BookTicker(top) => state.book(*top),
    }
}

/// A connection's market: its own replay of the seed, a cursor into the shared timeline, or
/// its place in a capture.
enum Timeline {
    /// Its own generator, paced from the connection's start.
    Private {
        market: MarketGen,
        /// The next event, generated ahead so its due time is known.
        next: SimEvent,
    },
    /// A cursor into the simulator's shared market.
    Shared(Cursor),
    /// Its place in the captured pushes.
    Replay {
        /// The index of the next captured frame.
        next: usize,
        /// When the first subscription was accepted: the capture's time zero.
        start: Option<Instant>,
    },
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

/// One client connection: its market, subscriptions, place in the market and idle timer.
struct Session<'a> {
    ws: WebSocket<TcpStream>,
    shared: &'a Shared,
    peer: SocketAddr,
    market_kind: Market,
    conn_id: String,
    timeline: Timeline,
    /// Events due in this turn; kept to reuse its allocation.
    events: Vec<SimEvent>,
    /// When the connection started; a private replay is paced from here.
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
        let (timeline, symbols) = match &shared.source {
            Source::PerConnection(market) => {
                let mut market = market.clone();
                let next = market.next_event();
                (
                    Timeline::Private { market, next },
                    vec![SymbolState::new(); shared.listings.len()],
                )
            }
            Source::Shared { market, checkpoint } => {
                // The cursor is taken under the checkpoint's lock, so no later join can have
                // moved the checkpoint past this one's position; the checkpoint then catches up
                // to exactly that position, and the connection starts from what it knows.
                let mut checkpoint = lock(checkpoint);
                let cursor = market.cursor();
                checkpoint.advance_to(cursor.position());
                (Timeline::Shared(cursor), checkpoint.symbols.clone())
            }
            // A capture has its own clock, started by the first subscription.
            Source::Replay(_) => (
                Timeline::Replay { next: 0, start: None },
                vec![SymbolState::new(); shared.listings.len()],
            ),
        };
        let start = Instant::now();
        Self {
            ws,
            shared,
            peer,
            market_kind,
            conn_id,
            timeline,
            events: Vec::with_capacity(MAX_BATCH),
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
            End::Lagged(missed) => {
                // Release pairs with the Acquire load in `BybitSimHandle::lagged`; counted before
                // the close so that a test that sees the connection gone also sees the count.
                self.shared.lagged.fetch_add(1, Ordering::Release);
                warn!(%peer, missed, "sim-bybit: client fell behind the market, dropping the connection");
                // Best effort: the close frame queues behind everything the client has not read.
                self.close(CloseCode::Policy, "slow consumer");
            }
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
        let next_due = self.pump_market(now)?;
        // A capture replay sends the captured snapshots only.
        if !self.shared.replaying() {
            self.resend_quiet_books(now)?;
        }
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
        if let Some(due) = next_due {
            wake = wake.min(due);
        }
        wake = wake.min(self.last_activity + self.shared.idle_timeout);
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if let Err(e) = self.ws.get_ref().set_read_timeout(Some(wait)) {
            return Err(End::Failed(WsError::Io(e)));
        }
        self.read_one().map(drop)
    }

    /// Handles the market events that are due (at most `MAX_BATCH`): every event moves this
    /// connection's view of its symbol on, and subscribed ones are pushed. Returns when the next
    /// event is due, if one is expected.
    fn pump_market(&mut self, now: Instant) -> Result<Option<Instant>, End> {
        if let Timeline::Replay { .. } = self.timeline {
            return self.pump_replay(now);
        }
        // Taken out of `self` so that handling can borrow the session; given back at the end.
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        let next_due = match &mut self.timeline {
            Timeline::Private { market, next } => {
                let elapsed_ns = now.duration_since(self.start).as_nanos();
                while events.len() < MAX_BATCH && u128::from(next.offset_ns()) <= elapsed_ns {
                    events.push(std::mem::replace(next, market.next_event()));
                }
                self.start.checked_add(Duration::from_nanos(next.offset_ns()))
            }
            Timeline::Shared(cursor) => {
                cursor
                    .read_into(MAX_BATCH, &mut events)
                    .map_err(|lag| End::Lagged(lag.missed))?;
                cursor.next_due()
            }
            Timeline::Replay { .. } => None,
        };
        let mut result = Ok(());
        let mut trades: Vec<SimTrade> = Vec::new();
        let mut at = 0;
        while at < events.len() && result.is_ok() {
            result = match events[at] {
                SimEvent::Trade(first) => {
                    // Consecutive trades of one symbol that are due together share a message.
                    trades.clear();
                    while let Some(&SimEvent::Trade(t)) = events.get(at)
                        && t.symbol == first.symbol
                        && trades.len() < MAX_TRADES_PER_MESSAGE
                    {
                        trades.push(t);
                        at += 1;
                    }
                    self.on_trades(&trades, now)
                }
                SimEvent::BookTicker(top) => {
                    at += 1;
                    self.on_book(top, now)
                }
            };
        }
        self.events = events;
        result.map(|()| next_due)
    }

    /// [`pump_market`](Self::pump_market) for a capture replay: sends the captured frames that
    /// are due (at most `MAX_BATCH`) and whose topic this connection subscribes to, as
    /// captured, or only passes over them while silent. Returns when the next frame is due,
    /// once the clock has started.
    fn pump_replay(&mut self, now: Instant) -> Result<Option<Instant>, End> {
        let shared = self.shared;
        let Source::Replay(frames) = &shared.source else {
            return Ok(None);
        };
        let Timeline::Replay {
            next,
            start: Some(start),
        } = &mut self.timeline
        else {
            // Nothing is due before the first subscription.
            return Ok(None);
        };
        let start = *start;
        let elapsed_ns = now.saturating_duration_since(start).as_nanos();
        let from = *next;
        let mut to = from;
        while to < frames.len() && to - from < MAX_BATCH && u128::from(frames[to].offset_ns) <= elapsed_ns {
            to += 1;
        }
        *next = to;
        let next_due = frames
            .get(to)
            .and_then(|f| start.checked_add(Duration::from_nanos(f.offset_ns)));
        if shared.faults.silent() {
            return Ok(next_due);
        }
        for frame in &frames[from..to] {
            if self.subscribed(frame.topic) {
                // Pushes keep the connection from going idle, as in the other modes.
                self.last_activity = now;
                self.write(Message::Text(frame.text.clone()))?;
            }
        }
        Ok(next_due)
    }

    /// The time, in ms since the epoch, of an event due at `offset_ns`: its scheduled time on a
    /// shared market (the same on every connection), the wall clock at send time on a private
    /// replay.
    fn event_ms(&self, offset_ns: u64) -> u64 {
        match &self.timeline {
            Timeline::Shared(cursor) => cursor.epoch_unix_ns().saturating_add(offset_ns) / 1_000_000,
            Timeline::Private { .. } | Timeline::Replay { .. } => wall_clock_ms(),
        }
    }

    /// Records a batch of trades of one symbol and pushes them to a subscriber.
    fn on_trades(&mut self, batch: &[SimTrade], now: Instant) -> Result<(), End> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let symbol = first.symbol;
        let topic = Topic {
            symbol,
            kind: TopicKind::Trade,
        };
        // The symbol's state advances whether or not anyone hears about it.
        let send = self.subscribed(topic) && !self.shared.faults.silent();
        let shared = self.shared;
        let listing = &shared.listings[symbol];
        let linear = self.market_kind == Market::Linear;
        let mut data = String::new();
        for trade in batch {
            let direction = self.symbols[symbol].trade(trade.price);
            if !send {
                continue;
            }
            if !data.is_empty() {
                data.push(',');
            }
            // `S` is the taker's side: the buyer was the maker when the seller took.
            let side = if trade.buyer_is_maker { "Sell" } else { "Buy" };
            let time = self.event_ms(trade.offset_ns);
            let _ = write!(
                data,
                r#"{{"T":{time},"s":"{}","S":"{side}","v":"{}","p":"{}","#,
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
            let _ = write!(
                data,
                r#""i":"{id}","BT":false,"seq":{}}}"#,
                self.symbols[symbol].cross_seq
            );
        }
        if !send {
            return Ok(());
        }
        let text = format!(
            r#"{{"topic":"publicTrade.{}","type":"snapshot","ts":{},"data":[{data}]}}"#,
            listing.symbol,
            wall_clock_ms()
        );
        self.push(text, now)
    }

    /// Records a top-of-book change and pushes it to a subscriber.
    fn on_book(&mut self, top: SimBookTicker, now: Instant) -> Result<(), End> {
        self.symbols[top.symbol].book(top);
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
        let (ts, cts) = (wall_clock_ms(), self.event_ms(top.offset_ns));
        let kind = if delta.is_some() { "delta" } else { "snapshot" };
        let text = format!(
            r#"{{"topic":"orderbook.1.{}","ts":{ts},"type":"{kind}","data":{{"s":"{}","b":[{bids}],"a":[{asks}],"u":{},"seq":{}}},"cts":{cts}}}"#,
            listing.symbol, listing.symbol, state.u, state.book_seq,
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
            if let Timeline::Replay {
                start: start @ None, ..
            } = &mut self.timeline
            {
                // The capture's clock starts with the first accepted subscription.
                *start = Some(now);
            }
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
    fn captured_pushes_are_classified_by_topic() {
        let listings: Vec<Listing> = super::super::binance::sample_symbols()
            .iter()
            .map(|s| Listing {
                symbol: s.venue_symbol,
                price_places: 2,
                qty_places: 5,
            })
            .collect();
        let topic = |symbol, kind| Some(Topic { symbol, kind });
        // The deeper books and `tickers` are topics only of a replaying simulator.
        assert_eq!(parse_topic(&listings, "orderbook.50.BTCUSDT", false), None);
        assert_eq!(parse_topic(&listings, "tickers.ETHUSDT", false), None);
        assert_eq!(
            parse_topic(&listings, "orderbook.1.ETHUSDT", false),
            topic(1, TopicKind::Book)
        );
        assert_eq!(
            parse_topic(&listings, "orderbook.1000.ETHUSDT", true),
            topic(1, TopicKind::Depth(1000))
        );
        for refused in [
            "orderbook.050.BTCUSDT",
            "orderbook.7.BTCUSDT",
            "orderbook.50",
            "tickers.XRPUSDT",
            "publicTrade.btcusdt",
        ] {
            assert_eq!(parse_topic(&listings, refused, true), None, "{refused}");
        }
        let push = |topic: &str| format!(r#"{{"topic":"{topic}","type":"snapshot","ts":1,"data":{{}}}}"#);
        assert_eq!(
            classify(&push("tickers.BTCUSDT"), &listings),
            topic(0, TopicKind::Ticker)
        );
        assert_eq!(
            classify(&push("publicTrade.ETHUSDT"), &listings),
            topic(1, TopicKind::Trade)
        );
        for skipped in [
            r#"{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}"#.to_owned(),
            r#"{"op":"subscribe","topic":"publicTrade.BTCUSDT","data":[]}"#.to_owned(),
            r#"{"topic":"publicTrade.BTCUSDT"}"#.to_owned(),
            r#"{"topic":7,"data":[]}"#.to_owned(),
            push("kline.1.BTCUSDT"),
            "[1]".to_owned(),
            "not json".to_owned(),
        ] {
            assert_eq!(classify(&skipped, &listings), None, "{skipped}");
        }
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
