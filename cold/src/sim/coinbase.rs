//! Coinbase Advanced Trade market-data simulator: a WebSocket server on loopback that speaks the
//! protocol of `venues.md` §2.1–2.8 and plays the seeded [`MarketGen`] sequence (or a capture).
//!
//! It exists so that the Coinbase feed handler can be tested against the real wire format (the
//! envelope, per-channel subscriptions and their acks, the 5-second subscribe deadline,
//! batched trades, heartbeats, `sequence_num`) and against injected [`Faults`], without a
//! network and with content reproducible from the seed.
//!
//! What is served, on path `/` (any other path is refused with HTTP 404; the query string is
//! ignored):
//! - Nothing until the client subscribes, **one channel per message**, with
//!   `{"type":"subscribe","product_ids":[..],"channel":".."}` (a `jwt` is accepted and
//!   ignored). A client that has not had a subscription accepted within `subscribe_timeout`
//!   (Coinbase: 5 s) is disconnected with a close frame 1008 `subscribe timeout`.
//! - Channels `market_trades`, `ticker` (both need `product_ids`) and `heartbeats` (needs none).
//!   `unsubscribe` without `product_ids` drops the whole channel, as documented. Every
//!   subscribe and unsubscribe is acknowledged with a `subscriptions` message listing the
//!   active subscriptions per channel (`{"subscriptions":{"heartbeats":[],"market_trades":
//!   ["BTC-USD"]}}`, `heartbeats` having no products); the docs describe this message without
//!   printing a sample, so its inner shape is ours.
//! - A refused request (unparsable, unknown `type`, a channel list instead of one `channel`,
//!   a channel the simulator does not serve, an unlisted product, missing `product_ids`) gets
//!   `{"type":"error","message":"Failed to subscribe","reason":".."}` (or `Failed to
//!   unsubscribe` / `Failed to parse message`), the legacy Exchange feed's error shape: the
//!   Advanced Trade docs print no error sample.
//!
//! Every message is an envelope `{"channel","client_id":"","timestamp","sequence_num","events"}`
//! in the docs' key order; `timestamp` is the send time in RFC 3339 with nine fractional digits,
//! and `sequence_num` counts this connection's messages from 0, one by one (a capture replay
//! keeps the captured numbers instead; see below).
//! - `market_trades`: the first message after subscribing is a `snapshot` of the products' most
//!   recent trades this connection has seen (at most 50, possibly none); then the trades of each
//!   250 ms window (`trade_batch`, aligned to the market's clock) go out together as one
//!   `update` when the window closes, in time order. A window with more trades than
//!   `max_trades_per_message` (default 50, inside the decoder's 64) is split over several
//!   messages; the docs give no cap. Trade ids are the generator's per-product ids in decimal
//!   strings; `side` is the **maker's** side, as documented (`BUY` when the resting order
//!   bought, so the aggressor sold); `time` is the trade's own time.
//! - `ticker`: first a `snapshot` of the products whose top of book is known, then one `update`
//!   per change of a product's best bid or ask, carrying the documented fields: `price` is the
//!   last trade's price (the start price before any), the 24-hour and 52-week fields summarise
//!   the trades this connection has seen, and `price_percent_chg_24_h` is measured from the
//!   start price. Coinbase sends a ticker on every match; the generator publishes its book only
//!   through top-of-book events, so the simulator sends one per such event, which keeps every
//!   ticker's best bid and ask exact.
//! - `heartbeats`: one message per `heartbeat_interval` (Coinbase: 1 s) with
//!   `heartbeat_counter` counting up by one from 1, as an integer (the AsyncAPI reference's
//!   type; the docs sample's string is accepted by the decoder too), and `current_time` in the
//!   Go format the docs describe (`2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105`).
//! - Prices and sizes are exact decimal strings with no fixed number of decimals (`"21921.3"`).
//!
//! Where the events come from ([`CoinbaseSimConfig`]):
//! - **Shared market** (`shared_market: true`, the default): one [`SharedMarket`] timeline per
//!   simulator, joined at the live end by each connection, so trade ids are global per product
//!   and two overlapping connections carry the same trades with the same ids and times. A
//!   connection that falls further behind than the market log (`market_log` events) is dropped
//!   with a close frame 1008 `slow consumer`, counted by [`CoinbaseSimHandle::lagged`].
//! - **Per-connection replay** (`shared_market: false`): every connection gets a fresh
//!   generator with the seed, so each starts at trade id 1; times count from the connection.
//! - **Capture replay** (`replay: Some(path)`): envelope frames are read from a capture file
//!   (`maxx_hot::capture` format, gzip allowed) when the simulator starts, and every connection
//!   replays it from its first line, paced by the `recv_ns` deltas from the moment its first
//!   subscription is accepted (on the venue nothing flows before one, so a capture's time zero
//!   is its recorder's subscription; `shared_market` does not apply). A frame is sent, byte for
//!   byte as captured, when the connection subscribes to its channel and, except for
//!   `heartbeats`, to one of the listed products named by a `product_id` anywhere inside its
//!   `events`. A frame is never cut: one that names a subscribed product among others is sent
//!   whole. Besides `market_trades`, `ticker` and `heartbeats`, a replaying simulator accepts
//!   `level2` subscriptions and serves the capture's `l2_data` frames to them. Skipped when
//!   loading: `subscriptions` acks (the simulator sends its own), frames of other channels
//!   (`ticker_batch`, `candles`, `status`, ...), frames naming no listed product, legacy
//!   Exchange messages, error replies and malformed lines.
//!   Nothing is generated: no snapshots on subscribing (the capture's own snapshots are what a
//!   client gets, if it subscribed before their time) and no heartbeats (the captured ones
//!   are served to `heartbeats` subscribers). Captured frames keep the venue's `sequence_num`,
//!   `timestamp` and `heartbeat_counter`, so a client's gap detection sees the original
//!   sequence, and frames of channels or products it did not subscribe to leave gaps in it.
//!   The simulator's own acks repeat the `sequence_num` of the last captured frame sent on the
//!   connection (or, before any, one less than the next captured frame's), which the venue's
//!   rule treats as a late message, so they neither open nor hide a gap. When the capture ends
//!   the connection stays open and quiet (the venue would close an idle channel after 60–90 s;
//!   the simulator does not).
//!
//! Faults ([`CoinbaseSimHandle::faults`]) act on every open connection:
//! - `silent`: no market data (snapshots included) and no heartbeats (the heartbeat counter and
//!   `sequence_num` do not advance for what is not sent); acks and error replies still go out,
//!   WebSocket pings are still answered, and the market moves on, so trades resume after a jump
//!   in trade ids.
//! - `deaf`: WebSocket pings from the client get no pong. Tungstenite queues a pong as soon as
//!   it reads a ping, so the connection's socket writer parses the outgoing frame stream and
//!   drops pong frames while the switch is on; everything else, subscriptions included, works.
//!   Coinbase documents no JSON ping, so there is nothing else to ignore.
//! - `drop_all`: the TCP connection is shut down at once, with no close frame.
//! - `inject_garbage(n)`: `n` text frames from [`GARBAGE_TEXT`] in turn, then one binary frame
//!   that is not valid UTF-8, between market messages.
//! - `announce_shutdown`: Coinbase documents no maintenance notice, so the connection is closed
//!   with a close frame 1001 `going away`, as on [`CoinbaseSimHandle::shutdown`]; the simulator
//!   keeps accepting.
//!
//! Deliberately not modelled: the `level2` (except from a capture), `ticker_batch`, `candles`,
//! `status` and private channels (refused as not served), JWTs, the 8 messages per second and
//! 8 connections per second limits, and the 60–90 s idle close of quiet channels.
//!
//! Threads: one acceptor (`sim-coinbase-acc`), one generator in shared mode
//! (`sim-coinbase-mkt`), and one thread per connection (`sim-coinbase-conn`) that sends what
//! is due and reads the client with socket timeouts of at most 20 ms (`POLL`), so it notices
//! shutdown and faults promptly.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maxx_hot::capture::{Capture, Line};
use maxx_hot::ids::VenueSymbol;
use maxx_hot::num::{Money, ONE, Price, Qty};
use serde_json::Value;
use tracing::{debug, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::{HeaderValue, StatusCode, header};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, HandshakeError, Message, Utf8Bytes, WebSocket};

use super::broadcast::{Cursor, DEFAULT_LOG_CAPACITY, SharedMarket};
use super::faults::{Faults, GARBAGE_TEXT, Seen};
use super::market::{MarketGen, SimBookTicker, SimEvent, SimSymbol, SimTrade};
use super::server;

/// Longest a thread waits before looking at the shutdown flag and the faults again.
const POLL: Duration = Duration::from_millis(20);
/// Shortest read wait, used when the connection is behind schedule, so that client messages
/// are still read between batches.
const MIN_WAIT: Duration = Duration::from_micros(100);
/// Longest a blocked write may stall the connection loop; the unsent bytes stay buffered.
const WRITE_TIMEOUT: Duration = Duration::from_millis(20);
/// A client that has not completed the HTTP upgrade by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection waits for the client's close frame.
const CLOSE_DRAIN: Duration = Duration::from_millis(50);
/// A client that lets this much unsent data pile up (in tungstenite, and again in the socket
/// writer's own buffer) is dropped as a slow consumer.
const MAX_WRITE_BUFFER: usize = 8 << 20;
/// Largest message accepted from a client; real subscribe messages are a few hundred bytes.
const MAX_CLIENT_MESSAGE: usize = 64 << 10;
/// Upper bound on the timing settings; it keeps all deadline arithmetic far from `Instant`
/// overflow.
const MAX_SETTING: Duration = Duration::from_secs(24 * 60 * 60);
/// Most market events handled in one loop turn, so that a connection far behind still reads
/// its client.
const MAX_BATCH: usize = 256;
/// Most trades a `market_trades` snapshot lists.
const SNAPSHOT_TRADES: usize = 50;
/// The binary frame that follows injected garbage text: not valid UTF-8 (a truncated two-byte
/// sequence, a lone continuation byte and bytes that never occur in UTF-8).
const GARBAGE_BINARY: &[u8] = &[0xC3, 0x28, b'{', 0x80, 0xFE, 0xFF];

/// What the Coinbase simulator serves and how it paces it.
#[derive(Clone, Debug)]
pub struct CoinbaseSimConfig {
    /// Seed of the synthetic market.
    pub seed: u64,
    /// Mean rate of ordinary market events over all products; bursts add to it.
    pub events_per_sec: u32,
    /// The products listed, named by their venue symbol (`BTC-USD`).
    pub symbols: Vec<SimSymbol>,
    /// A client without an accepted subscription this long after connecting is disconnected
    /// (Coinbase: 5 s).
    pub subscribe_timeout: Duration,
    /// Interval between heartbeats (Coinbase: 1 s).
    pub heartbeat_interval: Duration,
    /// Length of the window whose trades go out together (Coinbase: 250 ms).
    pub trade_batch: Duration,
    /// Most trades in one `market_trades` message; a fuller window is split. At least 1.
    pub max_trades_per_message: usize,
    /// One market timeline for the whole simulator, joined at the live end by each connection
    /// (`true`, as on the venue), or a private replay of the seed's sequence from its start for
    /// every connection (`false`).
    pub shared_market: bool,
    /// How many events the shared market keeps for connections that fall behind. At least 1.
    pub market_log: usize,
    /// Serve the frames of this capture file instead of the generator (see the module docs).
    pub replay: Option<PathBuf>,
}

impl CoinbaseSimConfig {
    /// A configuration with Coinbase's documented timings, 100 events per second and a shared
    /// market.
    pub fn new(seed: u64, symbols: Vec<SimSymbol>) -> Self {
        Self {
            seed,
            events_per_sec: 100,
            symbols,
            subscribe_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            trade_batch: Duration::from_millis(250),
            max_trades_per_message: 50,
            shared_market: true,
            market_log: DEFAULT_LOG_CAPACITY,
            replay: None,
        }
    }
}

impl Default for CoinbaseSimConfig {
    /// Seed 1 over [`sample_symbols`].
    fn default() -> Self {
        Self::new(1, sample_symbols())
    }
}

/// BTC-USD and ETH-USD with Coinbase's price increments and round lot sizes, for defaults and
/// tests.
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
        listing("BTC-USD", "21921.3", "0.01", "0.0001"),
        listing("ETH-USD", "1260.01", "0.01", "0.001"),
    ]
}

/// Starts the simulator on `bind` (port 0 picks a free port) and returns at once.
///
/// # Errors
/// `InvalidInput` if the configuration is unusable (no symbols, a zero rate, a timing setting
/// outside 1 ms to 24 h, a bad price grid, a product listed twice, a zero
/// `max_trades_per_message` or `market_log`); the error from reading the `replay` capture
/// (with its kind, naming the file); otherwise the error from binding the socket or starting a
/// thread.
pub fn spawn(bind: SocketAddr, cfg: CoinbaseSimConfig) -> io::Result<CoinbaseSimHandle> {
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    let timing = Duration::from_millis(1)..=MAX_SETTING;
    for (name, value) in [
        ("subscribe_timeout", cfg.subscribe_timeout),
        ("heartbeat_interval", cfg.heartbeat_interval),
        ("trade_batch", cfg.trade_batch),
    ] {
        if !timing.contains(&value) {
            return Err(invalid(format!("{name} must be between 1 ms and 24 h")));
        }
    }
    if cfg.max_trades_per_message == 0 {
        return Err(invalid("max_trades_per_message must be at least 1".into()));
    }
    if cfg.market_log == 0 {
        return Err(invalid("market_log must keep at least one event".into()));
    }
    let market = MarketGen::new(cfg.seed, cfg.events_per_sec, &cfg.symbols).map_err(|e| invalid(e.to_string()))?;
    let mut products: Vec<SimSymbol> = Vec::with_capacity(cfg.symbols.len());
    for sym in &cfg.symbols {
        if products.iter().any(|p| p.venue_symbol == sym.venue_symbol) {
            return Err(invalid(format!("product {} is listed twice", sym.venue_symbol)));
        }
        products.push(*sym);
    }
    let replay = match &cfg.replay {
        Some(path) => Some(load_replay(path, &products)?),
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
        None if cfg.shared_market => Source::Shared(SharedMarket::start(market, cfg.market_log, "sim-coinbase-mkt")?),
        None => Source::PerConnection(market),
    };
    let shared = Arc::new(Shared {
        products,
        source,
        subscribe_timeout: cfg.subscribe_timeout,
        heartbeat_interval: cfg.heartbeat_interval,
        trade_batch_ns: u64::try_from(cfg.trade_batch.as_nanos()).unwrap_or(u64::MAX),
        max_trades_per_message: cfg.max_trades_per_message,
        started: Instant::now(),
        faults: Arc::new(Faults::default()),
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        lagged: AtomicU64::new(0),
    });
    let acceptor = thread::Builder::new().name("sim-coinbase-acc".into()).spawn({
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
    Ok(CoinbaseSimHandle {
        local_addr,
        shared,
        acceptor: Some(acceptor),
    })
}

/// A running Coinbase simulator. Dropping it shuts it down, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct CoinbaseSimHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl CoinbaseSimHandle {
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
    /// threads; about 100 ms at most (a 20 ms poll, a 50 ms wait for the clients' close frames,
    /// 20 ms write timeouts towards clients that do not read).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // Release pairs with the Acquire loads in the acceptor and connection loops.
        self.shared.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            warn!("sim-coinbase acceptor thread panicked");
        }
        // Every connection has ended, so nobody reads the market any more.
        self.shared.stop_market();
    }
}

impl Drop for CoinbaseSimHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where a simulator's market events come from.
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
    products: Vec<SimSymbol>,
    source: Source,
    subscribe_timeout: Duration,
    heartbeat_interval: Duration,
    trade_batch_ns: u64,
    max_trades_per_message: usize,
    /// When the simulator started: the monotonic part of heartbeat `current_time`.
    started: Instant,
    faults: Arc<Faults>,
    stop: AtomicBool,
    open: AtomicUsize,
    lagged: AtomicU64,
}

impl Shared {
    fn stopping(&self) -> bool {
        // Acquire pairs with the Release store in `CoinbaseSimHandle::stop_and_join`.
        self.stop.load(Ordering::Acquire)
    }

    fn stop_market(&self) {
        if let Source::Shared(market) = &self.source {
            market.shutdown();
        }
    }

    fn product(&self, symbol: usize) -> &str {
        self.products[symbol].venue_symbol.as_str()
    }

    fn product_index(&self, name: &str) -> Option<usize> {
        product_index(&self.products, name)
    }

    fn replaying(&self) -> bool {
        matches!(self.source, Source::Replay(_))
    }
}

fn product_index(products: &[SimSymbol], name: &str) -> Option<usize> {
    products.iter().position(|p| p.venue_symbol.as_str() == name)
}

/// One captured frame the simulator can serve.
#[derive(Debug)]
struct ReplayFrame {
    /// When to send it, from the connection's first subscription: its `recv_ns` minus the first
    /// line's, never smaller than the previous frame's.
    offset_ns: u64,
    channel: Channel,
    /// The listed products its events name, as indexes, sorted; empty for `heartbeats`.
    products: Vec<usize>,
    /// Its envelope's `sequence_num`, if it has a valid one.
    sequence_num: Option<u64>,
    /// The frame as captured; cloning it shares the bytes.
    text: Utf8Bytes,
}

/// Reads a capture and keeps the frames of channels the simulator serves that name a listed
/// product (or need none).
fn load_replay(path: &Path, products: &[SimSymbol]) -> io::Result<Vec<ReplayFrame>> {
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
        match classify(text, products) {
            Some((channel, products, sequence_num)) => frames.push(ReplayFrame {
                offset_ns,
                channel,
                products,
                sequence_num,
                text: Utf8Bytes::from(text.to_owned()),
            }),
            None => skipped += 1,
        }
    }
    if frames.is_empty() {
        warn!(path = %path.display(), skipped, "sim-coinbase: the replay capture has no frame to serve");
    } else {
        debug!(path = %path.display(), frames = frames.len(), skipped, "sim-coinbase: replay capture loaded");
    }
    Ok(frames)
}

/// The channel of a captured envelope, the listed products its events name and its
/// `sequence_num`; `None` for anything the simulator does not serve.
fn classify(text: &str, products: &[SimSymbol]) -> Option<(Channel, Vec<usize>, Option<u64>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let envelope = value.as_object()?;
    let channel = match envelope.get("channel")?.as_str()? {
        "market_trades" => Channel::MarketTrades,
        "ticker" => Channel::Ticker,
        // The `level2` channel's data arrives under this name (`venues.md` §2.3).
        "l2_data" => Channel::Level2,
        "heartbeats" => Channel::Heartbeats,
        // `subscriptions` acks are the simulator's own to send; other channels are not served.
        _ => return None,
    };
    let events = envelope.get("events")?.as_array()?;
    let sequence_num = envelope.get("sequence_num").and_then(Value::as_u64);
    let mut found = Vec::new();
    if channel != Channel::Heartbeats {
        for event in events {
            collect_products(event, products, &mut found);
        }
        if found.is_empty() {
            return None;
        }
        found.sort_unstable();
        found.dedup();
    }
    Some((channel, found, sequence_num))
}

/// Adds the listed products named by `product_id` keys anywhere in `value`. The recursion is
/// bounded by serde_json's nesting limit of 128.
fn collect_products(value: &Value, products: &[SimSymbol], found: &mut Vec<usize>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "product_id" {
                    found.extend(value.as_str().and_then(|name| product_index(products, name)));
                } else {
                    collect_products(value, products, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_products(item, products, found)),
        _ => {}
    }
}

impl server::Served for Shared {
    const NAME: &'static str = "coinbase";
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
        debug!(%peer, error = %e, "sim-coinbase: cannot configure socket");
        return;
    }
    let conn = Conn {
        stream,
        faults: Arc::clone(&shared.faults),
        filter: None,
        pending: Vec::new(),
    };
    let Some(mut ws) = handshake(conn, peer, shared) else {
        return;
    };
    // From here on the socket carries WebSocket frames, which the writer can parse.
    ws.get_mut().filter = Some(PongFilter::default());
    debug!(%peer, "sim-coinbase: client connected");
    Session::new(ws, peer, seen, shared).run();
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

/// Runs the HTTP upgrade on path `/`; `None` if the client was refused, gave up, was too slow,
/// or the simulator is shutting down.
fn handshake(conn: Conn, peer: SocketAddr, shared: &Shared) -> Option<WebSocket<Conn>> {
    // The signature, with its large error type, is the one tungstenite's `Callback` requires.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match request.uri().path() {
            "/" | "" => Ok(response),
            path => Err(not_found(path)),
        }
    };
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut attempt = tungstenite::accept_hdr_with_config(conn, callback, Some(ws_config()));
    loop {
        match attempt {
            Ok(ws) => return Some(ws),
            // The socket's read timeout expired mid-request; keep going unless told to stop.
            Err(HandshakeError::Interrupted(mid)) => {
                if shared.stopping() || Instant::now() >= deadline {
                    debug!(%peer, "sim-coinbase: handshake abandoned");
                    return None;
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                debug!(%peer, error = %e, "sim-coinbase: handshake refused");
                return None;
            }
        }
    }
}

/// The HTTP 404 for an upgrade on any path but `/`.
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

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The connection's socket, with a writer that can drop outgoing pong frames (the `deaf`
/// fault; see the module docs).
///
/// Until the WebSocket upgrade is done, writes go straight to the socket. After it, every
/// write is accepted whole into `pending`, minus the pong frames dropped while deaf, and as
/// much of `pending` as the socket takes is written at once; the rest waits for the next write
/// or flush. A writer that falls `MAX_WRITE_BUFFER` behind reports `WouldBlock`, so
/// tungstenite's own buffer fills and the client is dropped as a slow consumer.
struct Conn {
    stream: TcpStream,
    faults: Arc<Faults>,
    filter: Option<PongFilter>,
    pending: Vec<u8>,
}

impl Conn {
    /// Writes as much of `pending` as the socket takes without blocking past its timeout.
    fn drain(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => drop(self.pending.drain(..n)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.filter.is_none() {
            return self.stream.write(buf);
        }
        // Try the socket once per call: with its write timeout, every attempt on a full socket
        // costs up to `WRITE_TIMEOUT`.
        let backed_up = self.pending.len() >= MAX_WRITE_BUFFER;
        if backed_up {
            self.drain()?;
            if self.pending.len() >= MAX_WRITE_BUFFER {
                return Err(io::Error::from(ErrorKind::WouldBlock));
            }
        }
        let deaf = self.faults.deaf();
        if let Some(filter) = &mut self.filter {
            filter.feed(buf, deaf, &mut self.pending);
        }
        if !backed_up {
            self.drain()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        if !self.pending.is_empty() {
            return Err(io::Error::from(ErrorKind::WouldBlock));
        }
        self.stream.flush()
    }
}

/// Follows the server's outgoing WebSocket frames byte by byte, passing them on except for
/// pong frames while deaf.
#[derive(Debug, Default)]
struct PongFilter {
    /// The header of the frame being read, until it is complete (at most 2 + 8 + 4 bytes).
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes of the current frame still to pass on (or drop).
    payload_left: u64,
    dropping: bool,
}

/// WebSocket opcode of a pong frame.
const OPCODE_PONG: u8 = 0xA;

impl PongFilter {
    fn feed(&mut self, mut buf: &[u8], deaf: bool, out: &mut Vec<u8>) {
        while let Some((&first, rest)) = buf.split_first() {
            if self.payload_left > 0 {
                let n = usize::try_from(self.payload_left).unwrap_or(usize::MAX).min(buf.len());
                let (payload, rest) = buf.split_at(n);
                if !self.dropping {
                    out.extend_from_slice(payload);
                }
                self.payload_left -= n as u64;
                buf = rest;
                continue;
            }
            self.header[self.header_len] = first;
            self.header_len += 1;
            buf = rest;
            if let Some((len, payload)) = frame_header(&self.header[..self.header_len]) {
                self.dropping = deaf && self.header[0] & 0x0F == OPCODE_PONG;
                if !self.dropping {
                    out.extend_from_slice(&self.header[..len]);
                }
                self.payload_left = payload;
                self.header_len = 0;
            }
        }
    }
}

/// The header length and payload length of a frame whose first bytes are `h`, once `h` holds
/// the whole header (RFC 6455 §5.2); `None` while it does not.
fn frame_header(h: &[u8]) -> Option<(usize, u64)> {
    let [_, b1, rest @ ..] = h else {
        return None;
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let (ext, short) = match b1 & 0x7F {
        126 => (2, 0),
        127 => (8, 0),
        n => (0, u64::from(n)),
    };
    if h.len() < 2 + ext + mask {
        return None;
    }
    let payload = match ext {
        0 => short,
        2 => u64::from(u16::from_be_bytes([rest[0], rest[1]])),
        _ => u64::from_be_bytes(rest[..8].try_into().ok()?),
    };
    Some((2 + ext + mask, payload))
}

/// Why a connection loop ended.
#[derive(Debug)]
enum End {
    Shutdown,
    Announced,
    SubscribeTimeout,
    Dropped,
    ClientClosed,
    SlowConsumer,
    Lagged(u64),
    Failed(WsError),
}

/// A connection's market: its own replay of the seed, a cursor into the shared timeline, or
/// its place in a capture.
enum Timeline {
    Private {
        market: MarketGen,
        next: SimEvent,
    },
    Shared(Cursor),
    Replay {
        /// The index of the next captured frame.
        next: usize,
        /// When the first subscription was accepted: the capture's time zero.
        start: Option<Instant>,
        /// The `sequence_num` of the last captured frame sent, which the simulator's own acks
        /// repeat.
        last_sequence_num: Option<u64>,
    },
}

/// What one connection has seen of a product.
#[derive(Debug)]
struct ProductView {
    top: Option<SimBookTicker>,
    last_price: Price,
    low: Price,
    high: Price,
    volume: Qty,
    /// The most recent trades, oldest first, for `market_trades` snapshots.
    recent: VecDeque<SimTrade>,
}

/// One client connection: its subscriptions, its view of the market, its counters.
struct Session<'a> {
    ws: WebSocket<Conn>,
    shared: &'a Shared,
    peer: SocketAddr,
    seen: Seen,
    timeline: Timeline,
    /// The monotonic instant of market offset 0.
    start: Instant,
    /// The wall clock at market offset 0, in ns since the Unix epoch.
    epoch_ns: u64,
    /// Until a subscription is accepted: when the client is disconnected.
    subscribe_by: Option<Instant>,
    /// The next envelope's `sequence_num` (not used in a capture replay).
    sequence_num: u64,
    /// Per product: the subscriptions of each channel.
    trades: Vec<bool>,
    tickers: Vec<bool>,
    /// Only ever set in a capture replay.
    level2: Vec<bool>,
    heartbeats: bool,
    /// When the next generated heartbeat is due, while subscribed (never in a capture replay).
    next_heartbeat: Option<Instant>,
    heartbeat_counter: u64,
    products: Vec<ProductView>,
    /// The current window's trades of subscribed products.
    pending: Vec<SimTrade>,
    /// The end of the current trade window, as a market offset.
    window_end_ns: u64,
    /// Scratch for the events read in one turn.
    events: Vec<SimEvent>,
}

impl<'a> Session<'a> {
    fn new(ws: WebSocket<Conn>, peer: SocketAddr, seen: Seen, shared: &'a Shared) -> Self {
        let now = Instant::now();
        let (timeline, start, epoch_ns) = match &shared.source {
            Source::PerConnection(market) => {
                let mut market = market.clone();
                let next = market.next_event();
                (Timeline::Private { market, next }, now, wall_clock_ns())
            }
            Source::Shared(market) => {
                let cursor = market.cursor();
                let epoch_ns = cursor.epoch_unix_ns();
                // The shared market counts offsets from its own start; place that start on
                // this thread's monotonic clock through the wall clock, once.
                let age = Duration::from_nanos(wall_clock_ns().saturating_sub(epoch_ns));
                (Timeline::Shared(cursor), now.checked_sub(age).unwrap_or(now), epoch_ns)
            }
            // A capture has its own clock, started by the first subscription.
            Source::Replay(_) => (
                Timeline::Replay {
                    next: 0,
                    start: None,
                    last_sequence_num: None,
                },
                now,
                wall_clock_ns(),
            ),
        };
        let batch = shared.trade_batch_ns;
        let elapsed = u64::try_from(now.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let products = shared
            .products
            .iter()
            .map(|p| ProductView {
                top: None,
                last_price: p.start_price,
                low: p.start_price,
                high: p.start_price,
                volume: Qty::ZERO,
                recent: VecDeque::with_capacity(SNAPSHOT_TRADES),
            })
            .collect();
        Self {
            ws,
            shared,
            peer,
            seen,
            timeline,
            start,
            epoch_ns,
            subscribe_by: now.checked_add(shared.subscribe_timeout),
            sequence_num: 0,
            trades: vec![false; shared.products.len()],
            tickers: vec![false; shared.products.len()],
            level2: vec![false; shared.products.len()],
            heartbeats: false,
            next_heartbeat: None,
            heartbeat_counter: 0,
            products,
            pending: Vec::new(),
            window_end_ns: (elapsed / batch).saturating_add(1).saturating_mul(batch),
            events: Vec::with_capacity(MAX_BATCH),
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
                debug!(%peer, "sim-coinbase: connection closed by shutdown");
            }
            End::Announced => {
                self.close(CloseCode::Away, "going away");
                debug!(%peer, "sim-coinbase: connection closed for maintenance");
            }
            End::SubscribeTimeout => {
                self.close(CloseCode::Policy, "subscribe timeout");
                debug!(%peer, "sim-coinbase: no subscription in time, closing");
            }
            End::Dropped => {
                // A network drop: no close frame, the socket just goes away.
                let _ = self.ws.get_ref().stream.shutdown(Shutdown::Both);
                debug!(%peer, "sim-coinbase: connection dropped (fault)");
            }
            End::ClientClosed => {
                // Sends the close reply tungstenite queued; errors only mean the peer left.
                let _ = self.ws.flush();
                debug!(%peer, "sim-coinbase: client closed the connection");
            }
            End::SlowConsumer => {
                warn!(%peer, "sim-coinbase: client does not read, dropping the connection");
            }
            End::Lagged(missed) => {
                // Release pairs with the Acquire load in `CoinbaseSimHandle::lagged`.
                self.shared.lagged.fetch_add(1, Ordering::Release);
                warn!(%peer, missed, "sim-coinbase: client fell behind the market, dropping it");
                self.close(CloseCode::Policy, "slow consumer");
            }
            End::Failed(e) => debug!(%peer, error = %e, "sim-coinbase: connection failed"),
        }
    }

    /// One turn of the loop: act on faults, send what is due, then wait for the client until
    /// the next thing is due.
    fn turn(&mut self) -> Result<(), End> {
        if self.shared.stopping() {
            return Err(End::Shutdown);
        }
        let due = self.shared.faults.poll(&mut self.seen);
        if due.drop {
            return Err(End::Dropped);
        }
        if due.garbage > 0 {
            self.send_garbage(due.garbage)?;
        }
        if due.shutdown {
            return Err(End::Announced);
        }
        let now = Instant::now();
        if self.subscribe_by.is_some_and(|by| now >= by) {
            return Err(End::SubscribeTimeout);
        }
        self.pump_market(now)?;
        self.heartbeat(now)?;
        match self.ws.flush() {
            Ok(()) => {}
            Err(WsError::Io(e)) if would_block(&e) => {}
            Err(e) => return Err(End::Failed(e)),
        }

        let mut wake = now + POLL;
        if let Some(due) = self.next_event_due() {
            wake = wake.min(due);
        }
        if !self.pending.is_empty()
            && let Some(window) = self.start.checked_add(Duration::from_nanos(self.window_end_ns))
        {
            wake = wake.min(window);
        }
        for at in [self.next_heartbeat, self.subscribe_by].into_iter().flatten() {
            wake = wake.min(at);
        }
        let wait = wake.saturating_duration_since(Instant::now()).max(MIN_WAIT);
        if let Err(e) = self.ws.get_ref().stream.set_read_timeout(Some(wait)) {
            return Err(End::Failed(WsError::Io(e)));
        }
        self.read_one(now)
    }

    /// When the next market event (or captured frame) is due, if one is known.
    fn next_event_due(&self) -> Option<Instant> {
        match &self.timeline {
            Timeline::Private { next, .. } => self.start.checked_add(Duration::from_nanos(next.offset_ns())),
            Timeline::Shared(cursor) => cursor.next_due(),
            Timeline::Replay { next, start, .. } => {
                let Source::Replay(frames) = &self.shared.source else {
                    return None;
                };
                start
                    .as_ref()?
                    .checked_add(Duration::from_nanos(frames.get(*next)?.offset_ns))
            }
        }
    }

    /// Handles every due market event (up to `MAX_BATCH`), then closes the trade window if its
    /// time has passed.
    fn pump_market(&mut self, now: Instant) -> Result<(), End> {
        if let Timeline::Replay { .. } = self.timeline {
            return self.pump_replay(now);
        }
        let elapsed_ns = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        match &mut self.timeline {
            Timeline::Private { market, next } => {
                while events.len() < MAX_BATCH && next.offset_ns() <= elapsed_ns {
                    events.push(std::mem::replace(next, market.next_event()));
                }
            }
            Timeline::Shared(cursor) => {
                cursor
                    .read_into(MAX_BATCH, &mut events)
                    .map_err(|lag| End::Lagged(lag.missed))?;
            }
            Timeline::Replay { .. } => {}
        }
        let mut result = Ok(());
        for event in &events {
            result = match event {
                SimEvent::Trade(trade) => self.on_trade(trade),
                SimEvent::BookTicker(quote) => self.on_quote(quote),
            };
            if result.is_err() {
                break;
            }
        }
        self.events = events;
        result?;
        // Close the window by the clock once every event in it has been read, that is once the
        // next event is due after the window's end.
        if elapsed_ns >= self.window_end_ns {
            let end = self.start.checked_add(Duration::from_nanos(self.window_end_ns));
            let window_complete = match (self.next_event_due(), end) {
                (Some(due), Some(end)) => due >= end,
                (None, _) => true,
                (Some(_), None) => false,
            };
            if window_complete {
                self.flush_trades()?;
                self.window_end_ns = self.window_after(elapsed_ns);
            }
        }
        Ok(())
    }

    /// [`pump_market`](Self::pump_market) for a capture replay: sends the captured frames that
    /// are due (at most `MAX_BATCH`) and that this connection subscribes to, as captured, or
    /// only passes over them while silent.
    fn pump_replay(&mut self, now: Instant) -> Result<(), End> {
        let shared = self.shared;
        let Source::Replay(frames) = &shared.source else {
            return Ok(());
        };
        let Timeline::Replay {
            next,
            start: Some(start),
            ..
        } = &mut self.timeline
        else {
            // Nothing is due before the first subscription.
            return Ok(());
        };
        let elapsed_ns = now.saturating_duration_since(*start).as_nanos();
        let from = *next;
        let mut to = from;
        while to < frames.len() && to - from < MAX_BATCH && u128::from(frames[to].offset_ns) <= elapsed_ns {
            to += 1;
        }
        *next = to;
        if shared.faults.silent() {
            return Ok(());
        }
        for frame in &frames[from..to] {
            if !self.wants(frame) {
                continue;
            }
            if let (Some(n), Timeline::Replay { last_sequence_num, .. }) = (frame.sequence_num, &mut self.timeline) {
                *last_sequence_num = Some(n);
            }
            self.write(Message::Text(frame.text.clone()))?;
        }
        Ok(())
    }

    /// Whether this connection subscribes to a captured frame's channel and, unless it is a
    /// heartbeat, to one of its products.
    fn wants(&self, frame: &ReplayFrame) -> bool {
        let flags = match frame.channel {
            Channel::Heartbeats => return self.heartbeats,
            Channel::MarketTrades => &self.trades,
            Channel::Ticker => &self.tickers,
            Channel::Level2 => &self.level2,
        };
        frame.products.iter().any(|&p| flags[p])
    }

    /// The end of the trade window that holds market offset `offset_ns`.
    fn window_after(&self, offset_ns: u64) -> u64 {
        let batch = self.shared.trade_batch_ns;
        (offset_ns / batch).saturating_add(1).saturating_mul(batch)
    }

    fn on_trade(&mut self, trade: &SimTrade) -> Result<(), End> {
        if trade.offset_ns >= self.window_end_ns {
            self.flush_trades()?;
            self.window_end_ns = self.window_after(trade.offset_ns);
        }
        let view = &mut self.products[trade.symbol];
        view.last_price = trade.price;
        view.low = view.low.min(trade.price);
        view.high = view.high.max(trade.price);
        view.volume = view.volume.checked_add(trade.qty).unwrap_or(Qty::MAX);
        if view.recent.len() == SNAPSHOT_TRADES {
            view.recent.pop_front();
        }
        view.recent.push_back(*trade);
        if self.trades[trade.symbol] {
            self.pending.push(*trade);
        }
        Ok(())
    }

    fn on_quote(&mut self, quote: &SimBookTicker) -> Result<(), End> {
        self.products[quote.symbol].top = Some(*quote);
        if self.tickers[quote.symbol] && !self.shared.faults.silent() {
            let ticker = self.ticker_json(quote.symbol);
            let message = self.envelope("ticker", &format!(r#"[{{"type":"update","tickers":[{ticker}]}}]"#));
            self.write(Message::text(message))?;
        }
        Ok(())
    }

    /// Sends the current window's trades as `update` messages of at most
    /// `max_trades_per_message` trades each (nothing while silent).
    fn flush_trades(&mut self) -> Result<(), End> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut result = Ok(());
        if !self.shared.faults.silent() {
            for chunk in pending.chunks(self.shared.max_trades_per_message) {
                let events = format!(r#"[{{"type":"update","trades":[{}]}}]"#, self.trades_json(chunk));
                let message = self.envelope("market_trades", &events);
                result = self.write(Message::text(message));
                if result.is_err() {
                    break;
                }
            }
        }
        // Keep the vector's capacity for the next window.
        self.pending = pending;
        self.pending.clear();
        result
    }

    fn heartbeat(&mut self, now: Instant) -> Result<(), End> {
        let Some(at) = self.next_heartbeat else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        let interval = self.shared.heartbeat_interval;
        // Keep the beat's phase; after a stall, start again from now rather than burst.
        let next = at + interval;
        self.next_heartbeat = Some(if next <= now { now + interval } else { next });
        if self.shared.faults.silent() {
            return Ok(());
        }
        self.heartbeat_counter += 1;
        let events = format!(
            r#"[{{"current_time":"{}","heartbeat_counter":{}}}]"#,
            go_time(wall_clock_ns(), self.shared.started.elapsed()),
            self.heartbeat_counter
        );
        let message = self.envelope("heartbeats", &events);
        self.write(Message::text(message))
    }

    fn send_garbage(&mut self, n: u64) -> Result<(), End> {
        for text in GARBAGE_TEXT
            .iter()
            .cycle()
            .take(usize::try_from(n).unwrap_or(usize::MAX))
        {
            self.write(Message::text(*text))?;
        }
        self.write(Message::binary(GARBAGE_BINARY))
    }

    /// An envelope for `channel` around `events` (a JSON array), with the next sequence number
    /// (in a capture replay, the captured number it repeats) and the send time.
    fn envelope(&mut self, channel: &str, events: &str) -> String {
        let sequence_num = match &self.timeline {
            Timeline::Replay {
                next,
                last_sequence_num,
                ..
            } => last_sequence_num.unwrap_or_else(|| self.first_replay_sequence(*next)),
            Timeline::Private { .. } | Timeline::Shared(_) => {
                let n = self.sequence_num;
                self.sequence_num += 1;
                n
            }
        };
        format!(
            r#"{{"channel":"{channel}","client_id":"","timestamp":"{}","sequence_num":{sequence_num},"events":{events}}}"#,
            rfc3339(wall_clock_ns())
        )
    }

    /// Before any captured frame is sent, the number an ack carries: one less than that of the
    /// next captured frame from `next` on, so that the first one sent is no gap if it is that
    /// frame; 0 if none is numbered.
    fn first_replay_sequence(&self, next: usize) -> u64 {
        let Source::Replay(frames) = &self.shared.source else {
            return 0;
        };
        frames
            .get(next..)
            .and_then(|rest| rest.iter().find_map(|f| f.sequence_num))
            .map_or(0, |n| n.saturating_sub(1))
    }

    /// Trades as a comma-separated list of JSON objects, in the docs' key order.
    fn trades_json(&self, trades: &[SimTrade]) -> String {
        let mut out = String::with_capacity(trades.len() * 160);
        for (i, t) in trades.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // `side` is the maker's: the resting order bought when the aggressor sold.
            let side = if t.buyer_is_maker { "BUY" } else { "SELL" };
            let _ = write!(
                out,
                r#"{{"trade_id":"{}","product_id":"{}","price":"{}","size":"{}","side":"{side}","time":"{}"}}"#,
                t.trade_id,
                self.shared.product(t.symbol),
                t.price,
                t.qty,
                rfc3339(self.epoch_ns.saturating_add(t.offset_ns)),
            );
        }
        out
    }

    /// One product's ticker object, in the docs' key order; its top of book must be known.
    fn ticker_json(&self, symbol: usize) -> String {
        let view = &self.products[symbol];
        let start = self.shared.products[symbol].start_price;
        let (bid, bid_qty, ask, ask_qty) = match view.top {
            Some(t) => (t.bid, t.bid_qty, t.ask, t.ask_qty),
            None => (start, Qty::ZERO, start, Qty::ZERO),
        };
        format!(
            r#"{{"type":"ticker","product_id":"{}","price":"{}","volume_24_h":"{}","low_24_h":"{}","high_24_h":"{}","low_52_w":"{}","high_52_w":"{}","price_percent_chg_24_h":"{}","best_bid":"{bid}","best_bid_quantity":"{bid_qty}","best_ask":"{ask}","best_ask_quantity":"{ask_qty}"}}"#,
            self.shared.product(symbol),
            view.last_price,
            view.volume,
            view.low,
            view.high,
            view.low,
            view.high,
            percent_change(start, view.last_price),
        )
    }

    /// Waits for one message from the client (until the read timeout) and handles it.
    fn read_one(&mut self, now: Instant) -> Result<(), End> {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                let replies = self.control(text.as_str(), now);
                for reply in replies {
                    self.write(Message::text(reply))?;
                }
                Ok(())
            }
            Ok(Message::Binary(_)) => {
                debug!(peer = %self.peer, "sim-coinbase: binary frame ignored");
                Ok(())
            }
            // Tungstenite queues the pong reply to a ping itself (dropped on its way out while
            // deaf); unsolicited pongs are allowed and ignored.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(()),
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

    /// Sends a close frame and waits briefly for the client's reply, so the close is clean
    /// when the client is responsive and bounded when it is not.
    fn close(&mut self, code: CloseCode, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame));
        let deadline = Instant::now() + CLOSE_DRAIN;
        let _ = self
            .ws
            .get_ref()
            .stream
            .set_read_timeout(Some(Duration::from_millis(10)));
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(_) => {}
                Err(WsError::Io(e)) if would_block(&e) => {}
                Err(_) => break,
            }
        }
    }

    /// Handles one client message and returns the frames to send back.
    fn control(&mut self, text: &str, now: Instant) -> Vec<String> {
        let request = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(request)) => request,
            Ok(_) => return vec![error_reply("Failed to parse message", "expected a JSON object")],
            Err(e) => return vec![error_reply("Failed to parse message", &e.to_string())],
        };
        let subscribe = match request.get("type").and_then(Value::as_str) {
            Some("subscribe") => true,
            Some("unsubscribe") => false,
            other => {
                let reason = format!("unknown message type {}", other.unwrap_or("(none)"));
                return vec![error_reply("Failed to parse message", &reason)];
            }
        };
        let failed = if subscribe {
            "Failed to subscribe"
        } else {
            "Failed to unsubscribe"
        };
        let channel = match request.get("channel") {
            Some(Value::String(channel)) => channel.as_str(),
            Some(_) => return vec![error_reply(failed, "channel must be a string")],
            None => return vec![error_reply(failed, "a channel is required, one per message")],
        };
        let replaying = self.shared.replaying();
        let channel = match channel {
            "market_trades" => Channel::MarketTrades,
            "ticker" => Channel::Ticker,
            "heartbeats" => Channel::Heartbeats,
            // Only a capture has book data to serve.
            "level2" if replaying => Channel::Level2,
            other => {
                let reason = format!("channel {other} is not served by the simulator");
                return vec![error_reply(failed, &reason)];
            }
        };
        let products = match request.get("product_ids") {
            None => None,
            Some(Value::Array(ids)) => {
                let mut products = Vec::with_capacity(ids.len());
                for id in ids {
                    match id.as_str().and_then(|name| self.shared.product_index(name)) {
                        Some(p) => products.push(p),
                        None => return vec![error_reply(failed, &format!("{id} is not a valid product"))],
                    }
                }
                Some(products)
            }
            Some(_) => return vec![error_reply(failed, "product_ids must be an array")],
        };

        let flags = match channel {
            Channel::Heartbeats => {
                self.heartbeats = subscribe;
                // A capture replay serves the captured heartbeats instead of its own.
                self.next_heartbeat = match (subscribe && !replaying, self.next_heartbeat) {
                    (true, None) => Some(now + self.shared.heartbeat_interval),
                    (true, kept) => kept,
                    (false, _) => None,
                };
                None
            }
            Channel::MarketTrades => Some(&mut self.trades),
            Channel::Ticker => Some(&mut self.tickers),
            Channel::Level2 => Some(&mut self.level2),
        };
        if let Some(flags) = flags {
            match (subscribe, products.as_deref()) {
                (true, None | Some([])) => return vec![error_reply(failed, "product_ids is required")],
                (true, Some(products)) => products.iter().for_each(|&p| flags[p] = true),
                (false, None) => flags.iter_mut().for_each(|f| *f = false),
                (false, Some(products)) => products.iter().for_each(|&p| flags[p] = false),
            }
        }
        if subscribe {
            self.subscribe_by = None;
            if let Timeline::Replay {
                start: start @ None, ..
            } = &mut self.timeline
            {
                // The capture's clock starts now, not at the start of this turn.
                *start = Some(Instant::now());
            }
        }

        let mut replies = vec![self.subscriptions_ack()];
        // A capture replay sends the captured snapshots, when their time comes.
        if subscribe && !replaying && !self.shared.faults.silent() {
            let products = products.unwrap_or_default();
            match channel {
                Channel::MarketTrades => replies.push(self.trades_snapshot(&products)),
                Channel::Ticker => replies.push(self.ticker_snapshot(&products)),
                Channel::Heartbeats | Channel::Level2 => {}
            }
        }
        replies
    }

    /// The `subscriptions` message listing what is active now.
    fn subscriptions_ack(&mut self) -> String {
        let mut lists = Vec::new();
        if self.heartbeats {
            lists.push(r#""heartbeats":[]"#.to_string());
        }
        for (name, flags) in [
            ("level2", &self.level2),
            ("market_trades", &self.trades),
            ("ticker", &self.tickers),
        ] {
            let names: Vec<String> = flags
                .iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .map(|(p, _)| format!("\"{}\"", self.shared.product(p)))
                .collect();
            if !names.is_empty() {
                lists.push(format!(r#""{name}":[{}]"#, names.join(",")));
            }
        }
        let events = format!(r#"[{{"subscriptions":{{{}}}}}]"#, lists.join(","));
        self.envelope("subscriptions", &events)
    }

    /// The `market_trades` snapshot: the latest trades this connection has seen of `products`,
    /// in time order.
    fn trades_snapshot(&mut self, products: &[usize]) -> String {
        let mut trades: Vec<SimTrade> = products
            .iter()
            .flat_map(|&p| self.products[p].recent.iter().copied())
            .collect();
        trades.sort_by_key(|t| (t.offset_ns, t.symbol, t.trade_id));
        let keep = SNAPSHOT_TRADES.min(self.shared.max_trades_per_message);
        let trades = &trades[trades.len().saturating_sub(keep)..];
        let events = format!(r#"[{{"type":"snapshot","trades":[{}]}}]"#, self.trades_json(trades));
        self.envelope("market_trades", &events)
    }

    /// The `ticker` snapshot: the products of `products` whose top of book is known.
    fn ticker_snapshot(&mut self, products: &[usize]) -> String {
        let tickers: Vec<String> = products
            .iter()
            .filter(|&&p| self.products[p].top.is_some())
            .map(|&p| self.ticker_json(p))
            .collect();
        let events = format!(r#"[{{"type":"snapshot","tickers":[{}]}}]"#, tickers.join(","));
        self.envelope("ticker", &events)
    }
}

/// The channels the simulator serves; `Level2` only from a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    MarketTrades,
    Ticker,
    Heartbeats,
    Level2,
}

fn error_reply(message: &str, reason: &str) -> String {
    format!(
        r#"{{"type":"error","message":{},"reason":{}}}"#,
        Value::from(message),
        Value::from(reason)
    )
}

/// `(price - start) / start` in percent, exact to 10^-8, rounded toward zero.
fn percent_change(start: Price, price: Price) -> Money {
    let start = i128::from(start.raw().max(1));
    let raw = (i128::from(price.raw()) - start) * 100 * i128::from(ONE) / start;
    Money::from_raw(i64::try_from(raw).unwrap_or(if raw < 0 { i64::MIN } else { i64::MAX })).unwrap_or(Money::ZERO)
}

/// Nanoseconds since the Unix epoch; 0 if the clock is before 1970.
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The civil date and time of `ns` since the epoch: `(year, month, day, hour, minute, second,
/// nanosecond)`, by Howard Hinnant's `civil_from_days`.
fn civil(ns: u64) -> (u64, u64, u64, u64, u64, u64, u64) {
    let secs = ns / 1_000_000_000;
    let days = secs / 86_400;
    let tod = secs % 86_400;
    // Days from 0000-03-01; the epoch is day 719,468 of that count.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (
        year,
        month,
        day,
        tod / 3_600,
        tod / 60 % 60,
        tod % 60,
        ns % 1_000_000_000,
    )
}

/// RFC 3339 in UTC with nine fractional digits: `2023-02-09T20:19:35.396251350Z`.
fn rfc3339(ns: u64) -> String {
    let (y, mo, d, h, mi, s, frac) = civil(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:09}Z")
}

/// Go's `time.Time` string with its monotonic reading, as heartbeat `current_time` carries it:
/// `2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105`.
fn go_time(ns: u64, monotonic: Duration) -> String {
    let (y, mo, d, h, mi, s, frac) = civil(ns);
    format!(
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{frac:09} +0000 UTC m=+{}.{:09}",
        monotonic.as_secs(),
        monotonic.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_rfc3339_and_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_675_973_975_396_251_350), "2023-02-09T20:19:35.396251350Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            go_time(1_687_552_316_121_961_769, Duration::new(91_717, 525_857_105)),
            "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105"
        );
    }

    #[test]
    fn percent_change_is_exact() {
        let p = |s: &str| s.parse::<Price>().unwrap();
        assert_eq!(percent_change(p("100"), p("101.5")).to_string(), "1.5");
        assert_eq!(percent_change(p("22880.5"), p("21932.98")).to_string(), "-4.14116824");
        assert_eq!(percent_change(p("3"), p("4")).to_string(), "33.33333333");
    }

    #[test]
    fn captured_frames_are_classified_by_channel_and_product() {
        let products = sample_symbols();
        let envelope = |channel: &str, seq: &str, events: &str| {
            format!(
                r#"{{"channel":"{channel}","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":{seq},"events":{events}}}"#
            )
        };
        let classify = |text: &str| classify(text, &products);
        let trades = r#"[{"type":"update","trades":[{"trade_id":"1","product_id":"ETH-USD"},{"trade_id":"2","product_id":"BTC-USD"},{"trade_id":"3","product_id":"XRP-USD"},{"product_id":"ETH-USD"}]}]"#;
        assert_eq!(
            classify(&envelope("market_trades", "7", trades)),
            Some((Channel::MarketTrades, vec![0, 1], Some(7)))
        );
        let tickers = r#"[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"BTC-USD"}]}]"#;
        assert_eq!(
            classify(&envelope("ticker", "0", tickers)),
            Some((Channel::Ticker, vec![0], Some(0)))
        );
        let book = r#"[{"type":"update","product_id":"ETH-USD","updates":[]}]"#;
        assert_eq!(
            classify(&envelope("l2_data", "\"x\"", book)),
            Some((Channel::Level2, vec![1], None))
        );
        let beat = r#"[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+1.5","heartbeat_counter":3}]"#;
        assert_eq!(
            classify(&envelope("heartbeats", "3", beat)),
            Some((Channel::Heartbeats, vec![], Some(3)))
        );
        for skipped in [
            envelope("subscriptions", "0", r#"[{"subscriptions":{"ticker":["BTC-USD"]}}]"#),
            envelope("ticker_batch", "1", tickers),
            envelope(
                "candles",
                "1",
                r#"[{"type":"update","candles":[{"product_id":"BTC-USD"}]}]"#,
            ),
            envelope("market_trades", "1", r#"[{"type":"snapshot","trades":[]}]"#),
            envelope("market_trades", "1", r#"[{"trades":[{"product_id":"XRP-USD"}]}]"#),
            envelope("ticker", "1", r#"{"product_id":"BTC-USD"}"#),
            r#"{"type":"match","product_id":"BTC-USD","trade_id":1}"#.to_string(),
            r#"{"type":"error","message":"Failed to subscribe"}"#.to_string(),
            "[1]".to_string(),
            "not json".to_string(),
        ] {
            assert_eq!(classify(&skipped), None, "{skipped}");
        }
    }

    #[test]
    fn frame_headers_are_measured() {
        assert_eq!(frame_header(&[0x8A]), None);
        assert_eq!(frame_header(&[0x8A, 5]), Some((2, 5)));
        assert_eq!(frame_header(&[0x81, 126, 1]), None);
        assert_eq!(frame_header(&[0x81, 126, 1, 0]), Some((4, 256)));
        assert_eq!(frame_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]), Some((10, 65_536)));
        assert_eq!(frame_header(&[0x89, 0x83, 1, 2, 3]), None);
        assert_eq!(frame_header(&[0x89, 0x83, 1, 2, 3, 4]), Some((6, 3)));
    }

    #[test]
    fn the_pong_filter_drops_only_pongs_and_only_while_deaf() {
        let text = [0x81, 3, b'a', b'b', b'c'];
        let pong = [0x8A, 2, b'h', b'i'];
        let big: Vec<u8> = [0x82, 126, 1, 0]
            .into_iter()
            .chain(std::iter::repeat_n(7u8, 256))
            .collect();
        let stream: Vec<u8> = [&text[..], &pong, &big, &pong, &text].concat();
        // Fed in every chunking, deaf drops exactly the two pongs, hearing drops nothing.
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            for deaf in [false, true] {
                let mut filter = PongFilter::default();
                let mut out = Vec::new();
                for piece in stream.chunks(chunk) {
                    filter.feed(piece, deaf, &mut out);
                }
                let expected: Vec<u8> = if deaf {
                    [&text[..], &big, &text].concat()
                } else {
                    stream.clone()
                };
                assert_eq!(out, expected, "chunk {chunk}, deaf {deaf}");
            }
        }
    }
}
