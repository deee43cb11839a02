//! `maxx bench --wire`: wire-to-wire latency, frame sent to order received, over loopback.
//!
//! A frame server on a std thread of this process serves the frames (the seeded simulator's
//! Binance `trade` / `bookTicker` frames, generated up front as `maxx bench` generates them, or a
//! capture's) over a real WebSocket on 127.0.0.1, one every `1/--rate` seconds, and stamps each
//! with [`mono_ns`] just before writing it to the socket. A mock Binance spot REST venue
//! ([`maxx_cold::mockvenue::binance`]) on its own thread stamps each order placement with the
//! same clock when its request is in hand ([`MockHandle::record_arrivals`]). A sample is the
//! difference: the frame's trip into the process, the decoder, Alpha, Risk, Execution, the
//! order's signing and its trip out, all included.
//!
//! Two pipelines take the same frames at the same rate, one after the other, each from a fresh
//! frame server, against the same mock venue:
//!
//! * `maxx`: the real hot path: [`WsFeed`] (mio + tungstenite) and [`BinanceDecoder`] on the
//!   feed thread, the real rings, Alpha, Risk and Execution with the real
//!   [`BinanceSpotGateway`] (mio HTTP client, HMAC signing), placed by the same [`plan`](maxx_hot::runtime::plan) as
//!   `maxx run` (`--layout`);
//! * `tokio`: a tokio-tungstenite client, the same decoder and the same Alpha, Risk and
//!   Execution objects joined by tokio mpsc channels (as `maxx bench --baseline tokio`), and
//!   orders signed with the same HMAC and written as HTTP/1.1 requests on one keep-alive tokio
//!   `TcpStream`; a reader task parses the venue's answers into reports for Risk.
//!
//! The frame servers and the mock venue run on the cold cores (off the hot cores, where a
//! spinning hot thread would starve them) in both runs; the tokio workers may use every core.
//!
//! The report splits each sample at the feed's receive stamp of the triggering tick (taken
//! when the frame is in hand, by the same clock): frame sent → frame in hand (the socket, the
//! kernel and the WebSocket client), and frame in hand → order received (decoding, the stages,
//! signing, the order's socket and the venue's HTTP server).
//!
//! **Attribution is exact, never by timing.** Each order reaches the mock with client id
//! `<pipeline prefix><engine order id>`; the engine's order event (the `exec` tap for maxx)
//! gives that order's triggering tick stamp; the tick tap gives the tick with that stamp, whose
//! instrument, kind and venue sequence (trade id or update id) name exactly one frame, found by
//! decoding every frame once before the run. An order for which any link is missing or
//! ambiguous is counted as unattributed and not sampled. Orders triggered by the first
//! `--warmup` frames are not sampled either.
//!
//! Tuning: the `maxx bench` tuning (see [`crate::bench`]) plus `exec.urgent_score` 0, so every
//! order is an immediate-or-cancel limit (no resting orders, no reprices, whose stamps would be
//! those of much older ticks).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt as _;
use maxx_cold::config::Config;
use maxx_cold::mockvenue::{self, Arrival, MockConfig, MockHandle, MockSymbol};
use maxx_hot::clock::{Clock, SystemClock, mono_ns, wall_ns};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::binance::subscription::{StreamKind, connection, stream_names};
use maxx_hot::feed::ws::{Reconnect, WsFeed, WsTarget};
use maxx_hot::feed::{Decoded, FrameMeta, TickBatch};
use maxx_hot::gateway::binance::{BinanceSpot, BinanceSpotGateway, signature};
use maxx_hot::gateway::rest::{ApiKey, GatewayConfig};
use maxx_hot::gateway::sign::{Secret, hex_str};
use maxx_hot::ids::{InstrumentIndex, Venue, VenueSymbol};
use maxx_hot::kill::KillSwitch;
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::{
    ExecReport, Factor, Fill, Liquidity, Order, OrderId, OrderIntent, OrderKind, RejectReason, Side, Stamp, Tick,
    TickBody, Tif,
};
use maxx_hot::runtime::engine::{Engine, EngineSpec, FeedInput, build};
use maxx_hot::runtime::host::{Locked, lock_memory};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{Placement, available_cores, confine_current_thread, spawn};
use maxx_hot::source::Decode;
use maxx_hot::stage::alpha::{Alpha, AlphaInput, AlphaOut};
use maxx_hot::stage::exec::{Exec, ExecEvent, Gateway};
use maxx_hot::stage::risk::{Decision, Risk};
use maxx_hot::topology::Layout;
use maxx_hot::wiring::BoxedHistogram;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::bench::{BadInput, FrameSet, bad, bench_spec, empty, generate, hgrm, load_capture, svg};
use crate::cli::BenchArgs;

/// Frames per second when `--rate` is not given.
const DEFAULT_RATE: f64 = 2000.0;
/// Run length when neither `--frames` nor `--duration` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Most frames one run sends (each is generated, decoded and stamped up front).
const MAX_FRAMES: u64 = 2_000_000;
/// Most warm-up frames by default (a tenth of the run otherwise).
const DEFAULT_WARMUP: u64 = 2_000;
/// How long the frame server waits for its one client.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The frame server's pause between the client's handshake and the first frame.
const START_DELAY: Duration = Duration::from_millis(100);
/// After the last frame: the run ends once every order sent has arrived and none came for this
/// long ...
const SETTLE: Duration = Duration::from_millis(300);
/// ... or after this long in any case.
const SETTLE_MAX: Duration = Duration::from_secs(5);
/// Longest a write to the WebSocket client may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Channel capacity of the tokio pipeline (the md → alpha ring's).
const CHANNEL_CAPACITY: usize = 8192;
/// Client order id prefixes: which pipeline sent an order.
const PREFIX_MAXX: &str = "wire-maxx-";
const PREFIX_TOKIO: &str = "wire-tokio-";
/// The mock venue's API key pair (`venues.md` §1.9's example pair).
const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const API_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
/// `recvWindow` of every signed request, ms.
const RECV_WINDOW_MS: u32 = 5_000;
/// Percentiles of the table (the last row is the maximum).
const PERCENTILES: [(f64, &str); 4] = [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9")];

/// `maxx bench --wire`: exit 0, 2 on a bad parameter, 1 on a failed run.
pub fn wire_cmd(args: &BenchArgs, config: &Config) -> ExitCode {
    match wire(args, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("maxx bench --wire: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("maxx bench --wire: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The run's resolved parameters.
#[derive(Debug)]
struct WirePlan {
    rate: f64,
    interval_ns: u64,
    total: u64,
    /// `--warmup`; the default depends on how many frames there are.
    warmup: Option<u64>,
    layout: Layout,
    out: PathBuf,
}

fn resolve(args: &BenchArgs) -> Result<WirePlan> {
    let rate = args.rate.unwrap_or(DEFAULT_RATE);
    if !(rate.is_finite() && rate > 0.0) {
        return Err(bad(format!(
            "--rate must be a positive number of frames per second, got {rate}"
        )));
    }
    let interval_ns = (1e9 / rate).round() as u64;
    if interval_ns == 0 {
        return Err(bad(format!("--rate {rate} is above 1e9 frames per second")));
    }
    if args.frames == Some(0) {
        return Err(bad("--frames must be at least 1"));
    }
    let total = match (args.frames, args.duration) {
        (Some(n), _) => n,
        (None, Some(d)) => ((rate * d.as_secs_f64()).round() as u64).max(1),
        (None, None) => ((rate * DEFAULT_DURATION.as_secs_f64()).round() as u64).max(1),
    };
    if total > MAX_FRAMES {
        return Err(bad(format!(
            "--wire sends at most {MAX_FRAMES} frames per run, asked for {total} (lower --rate, --duration or --frames)"
        )));
    }
    let layout = Layout::from_name(&args.layout).ok_or_else(|| bad(format!("unknown layout {:?}", args.layout)))?;
    Ok(WirePlan {
        rate,
        interval_ns,
        total,
        warmup: args.warmup,
        layout,
        out: args.out.clone(),
    })
}

// ---------------------------------------------------------------------------------------------
// Frames and their keys.

/// What names a frame: instrument, trade (`true`) or quote, and the venue sequence (trade id or
/// book update id).
type TickKey = (u16, bool, u64);

fn tick_key(t: &Tick) -> TickKey {
    (t.instrument.0, matches!(t.body, TickBody::Trade { .. }), t.seq)
}

/// The frames to send and, for each tick they carry, the one frame it came from.
#[derive(Debug)]
struct Frames {
    set: FrameSet,
    /// How many are sent (at most the set's length).
    count: usize,
    /// Tick → frame index, for keys that occur once.
    keys: HashMap<TickKey, usize>,
    /// Frames whose tick key occurs more than once (they cannot be told apart).
    ambiguous: usize,
    /// Frames that decode to a tick.
    ticks: usize,
}

/// Decodes every frame once, with the decoder the pipelines use, to key it by its tick.
fn index_frames(set: FrameSet, count: usize, index: &InstrumentIndex) -> Frames {
    let mut decoder = BinanceDecoder::new();
    let mut batch = Box::new(TickBatch::new());
    let mut keys: HashMap<TickKey, usize> = HashMap::with_capacity(count);
    let mut dup: HashMap<TickKey, ()> = HashMap::new();
    let mut ticks = 0;
    let meta = FrameMeta {
        recv_ns: 0,
        stamp: Stamp(0),
    };
    for i in 0..count {
        batch.clear();
        if let Ok(Decoded::Tick(t)) = Decode::decode(&mut decoder, set.frames.get(i), meta, index, &mut batch) {
            ticks += 1;
            let key = tick_key(&t);
            if keys.insert(key, i).is_some() {
                dup.insert(key, ());
            }
        }
    }
    let mut ambiguous = 0;
    for key in dup.keys() {
        keys.remove(key);
        ambiguous += 1;
    }
    Frames {
        set,
        count,
        keys,
        ambiguous,
        ticks,
    }
}

// ---------------------------------------------------------------------------------------------
// The frame server.

/// A one-client WebSocket server on 127.0.0.1 that sends the frames at a fixed rate and stamps
/// each just before writing it.
struct FrameServer {
    addr: SocketAddr,
    count: usize,
    sent: Arc<AtomicU64>,
    close: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<u64>>>>,
}

impl FrameServer {
    fn start(frames: &Frames, interval_ns: u64, name: &str) -> Result<FrameServer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the frame server on 127.0.0.1")?;
        listener
            .set_nonblocking(true)
            .context("setting the frame server's listener non-blocking")?;
        let addr = listener.local_addr().context("the frame server's address")?;
        let sent = Arc::new(AtomicU64::new(0));
        let close = Arc::new(AtomicBool::new(false));
        let data = Arc::clone(&frames.set.frames);
        let count = frames.count;
        let thread = std::thread::Builder::new()
            .name(format!("wire-frames-{name}"))
            .spawn({
                let sent = Arc::clone(&sent);
                let close = Arc::clone(&close);
                move || serve_frames(&listener, &data, count, interval_ns, &sent, &close)
            })
            .context("starting the frame server thread")?;
        Ok(FrameServer {
            addr,
            count,
            sent,
            close,
            thread: Some(thread),
        })
    }

    /// Frames written so far.
    fn sent(&self) -> u64 {
        // Acquire pairs with the Release store after each frame's stamp is written.
        self.sent.load(Ordering::Acquire)
    }

    /// Whether every frame is sent, or the thread has ended (failed).
    fn finished(&self) -> bool {
        self.sent() >= self.count as u64 || self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Closes the connection and returns each frame's send stamp (0: not sent).
    fn finish(mut self) -> Result<Vec<u64>> {
        self.close.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow!("the frame server thread panicked"))?,
            None => Err(anyhow!("the frame server was already finished")),
        }
    }
}

impl Drop for FrameServer {
    fn drop(&mut self) {
        self.close.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The frame server's thread: accept one client, upgrade, send, wait for `close`, close.
fn serve_frames(
    listener: &TcpListener,
    frames: &maxx_hot::runtime::memsource::MemFrames,
    count: usize,
    interval_ns: u64,
    sent: &AtomicU64,
    close: &AtomicBool,
) -> Result<Vec<u64>> {
    use tungstenite::Message;
    let deadline = Instant::now() + CONNECT_WAIT;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline || close.load(Ordering::Acquire) {
                    return Err(anyhow!(
                        "no WebSocket client connected to the frame server within {CONNECT_WAIT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(anyhow!("frame server: accept failed: {e}")),
        }
    };
    stream.set_nonblocking(false).context("frame server socket")?;
    stream.set_nodelay(true).context("frame server socket")?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .context("frame server socket")?;
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .context("frame server socket")?;
    let mut ws = tungstenite::accept(stream).map_err(|e| anyhow!("frame server: WebSocket handshake failed: {e}"))?;
    let mut stamps = vec![0u64; count];
    std::thread::sleep(START_DELAY);
    let start = mono_ns();
    for (i, stamp) in stamps.iter_mut().enumerate() {
        if close.load(Ordering::Acquire) {
            break;
        }
        let due = start + i as u64 * interval_ns;
        let now = mono_ns();
        if due > now {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let bytes = frames.get(i);
        let message = match std::str::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(bytes.to_vec()),
        };
        *stamp = mono_ns();
        ws.send(message)
            .map_err(|e| anyhow!("frame server: sending frame {i} failed: {e}"))?;
        // Release: the stamp above is written before the count that covers it.
        sent.store(i as u64 + 1, Ordering::Release);
    }
    while !close.load(Ordering::Acquire) {
        // Reads answer the client's pings; a read timeout is the idle case.
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = ws.close(None);
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    Ok(stamps)
}

// ---------------------------------------------------------------------------------------------
// The mock venue and the gateway.

/// The symbols the run trades, as the mock lists them.
fn mock_config(config: &Config) -> Result<MockConfig> {
    let sim = config.sim.get(&Venue::Binance);
    let mut c = MockConfig::btcusdt(API_KEY, API_SECRET);
    c.symbols.clear();
    c.balances.clear();
    let huge = Money::from_raw(i64::MAX / 16).unwrap_or(Money::ZERO);
    for s in &config.symbols {
        let Some(vs) = s.venues.get(&Venue::Binance) else {
            continue;
        };
        let assets = s
            .assets
            .as_ref()
            .ok_or_else(|| bad(format!("the base and quote assets of {} are unknown", s.symbol)))?;
        let price = sim
            .and_then(|c| c.start_prices.get(&s.symbol).copied())
            .ok_or_else(|| bad(format!("sim.binance.start_prices has no price for {}", s.symbol)))?;
        c.symbols.push(MockSymbol {
            symbol: vs.as_str().to_string(),
            base: assets.base.clone(),
            quote: assets.quote.clone(),
            tick_size: s.tick_size,
            step_size: s.lot_size,
            min_notional: s.min_notional,
            price,
        });
        for asset in [&assets.base, &assets.quote] {
            if !c.balances.iter().any(|(a, _)| a == asset) {
                c.balances.push((asset.clone(), huge));
            }
        }
    }
    if c.symbols.is_empty() {
        return Err(bad("the config lists no symbol on binance: nothing to trade"));
    }
    // The bench measures latency, not the venue's rate limits.
    c.order_limit = u32::MAX;
    Ok(c)
}

/// The real Binance spot gateway, pointed at the mock.
fn gateway(config: &Config, spec: &EngineSpec, mock: &MockHandle) -> Result<BinanceSpotGateway> {
    let key = ApiKey::new(API_KEY).ok_or_else(|| anyhow!("the bench API key is not valid"))?;
    let mut c = GatewayConfig::new(mock.base_url(), key, Secret::from_bytes(API_SECRET.as_bytes()));
    c.recv_window_ms = RECV_WINDOW_MS;
    c.order_limit = 1_000_000;
    c.client_id_prefix = PREFIX_MAXX.to_string();
    c.instruments = maxx_cold::engine::instrument_specs(config, Venue::Binance).map_err(bad)?;
    // No usage watch: the mock's limits are lifted for the bench.
    BinanceSpotGateway::new(BinanceSpot::new(None, 1, None, 0), c, &spec.index)
        .map_err(|e| anyhow!("building the Binance gateway: {e}"))
}

/// The engine's parameters: the bench tuning, and every order taking (see the module docs).
fn wire_spec(config: &Config) -> EngineSpec {
    let mut s = bench_spec(config, false);
    s.exec.urgent_score = Factor::ZERO;
    s
}

// ---------------------------------------------------------------------------------------------
// Samples.

/// What one pipeline measured.
#[derive(Debug)]
struct WireRun {
    /// Frame sent → order received.
    hist: BoxedHistogram,
    /// Frame sent → frame in hand on the feed (its tick's receive stamp).
    wire_in: BoxedHistogram,
    /// Frame in hand → order received at the venue.
    inside: BoxedHistogram,
    frames_sent: u64,
    /// Orders the pipeline sent (its order events).
    orders: u64,
    /// Orders the mock received.
    arrived: u64,
    /// Arrivals triggered by warm-up frames (not sampled).
    warmup: u64,
    /// Arrivals that could not be traced to one frame.
    unattributed: u64,
    /// Where the pipeline's threads ran, for the header.
    placement: String,
}

/// Traces each arrival to its frame and records frame-sent → order-received.
struct Attribution<'a> {
    prefix: &'a str,
    frames: &'a Frames,
    warmup: u64,
    /// Order id → triggering tick stamp.
    order_stamp: HashMap<u64, u64>,
    /// Tick stamp → tick key (`None`: two ticks had that stamp).
    tick_at: HashMap<u64, Option<TickKey>>,
}

impl Attribution<'_> {
    fn tick(&mut self, t: &Tick) {
        let key = tick_key(t);
        self.tick_at
            .entry(t.stamp.0)
            .and_modify(|k| *k = None)
            .or_insert(Some(key));
    }

    fn order(&mut self, o: &Order) {
        self.order_stamp.insert(o.id.0, o.stamp.0);
    }

    /// The frame an arrival answers and its tick's receive stamp, if it can be traced exactly.
    fn frame_of(&self, a: &Arrival) -> Option<(usize, u64)> {
        let id: u64 = a.client_id.strip_prefix(self.prefix)?.parse().ok()?;
        let stamp = self.order_stamp.get(&id)?;
        let key = (*self.tick_at.get(stamp)?)?;
        Some((*self.frames.keys.get(&key)?, *stamp))
    }

    fn finish(&self, arrivals: &[Arrival], sent: &[u64], frames_sent: u64, orders: u64, placement: String) -> WireRun {
        let (mut hist, mut wire_in, mut inside) = (empty(), empty(), empty());
        let (mut warm, mut unattributed, mut arrived) = (0, 0, 0);
        for a in arrivals.iter().filter(|a| a.client_id.starts_with(self.prefix)) {
            arrived += 1;
            let Some((i, recv)) = self.frame_of(a) else {
                unattributed += 1;
                continue;
            };
            let sent_ns = sent.get(i).copied().unwrap_or(0);
            if sent_ns == 0 || a.mono_ns < sent_ns || recv < sent_ns || a.mono_ns < recv {
                unattributed += 1;
            } else if (i as u64) < self.warmup {
                warm += 1;
            } else {
                hist.saturating_record((a.mono_ns - sent_ns).max(1));
                wire_in.saturating_record((recv - sent_ns).max(1));
                inside.saturating_record((a.mono_ns - recv).max(1));
            }
        }
        WireRun {
            hist,
            wire_in,
            inside,
            frames_sent,
            orders,
            arrived,
            warmup: warm,
            unattributed,
            placement,
        }
    }
}

/// Waits, after the last frame, for the orders still on their way; `orders` and `arrivals`
/// refresh the counts. Returns when every order sent has arrived and nothing came for
/// [`SETTLE`], or after [`SETTLE_MAX`].
fn settled(since: &mut Option<(Instant, usize, Instant)>, orders: u64, arrived: usize) -> bool {
    let now = Instant::now();
    let (first, last_count, last_change) = since.get_or_insert((now, arrived, now));
    if arrived != *last_count {
        *last_count = arrived;
        *last_change = now;
    }
    let quiet = now.duration_since(*last_change) >= SETTLE && arrived as u64 >= orders;
    quiet || now.duration_since(*first) >= SETTLE_MAX
}

fn progress(label: &str, sent: u64, total: usize, orders: u64, arrived: usize) {
    eprint!("\r{label}: {sent}/{total} frames sent, {orders} orders, {arrived} received   ");
    let _ = std::io::stderr().flush();
}

// ---------------------------------------------------------------------------------------------
// The maxx pipeline.

/// Where the hot threads run ([`crate::bench::place`]); the text for the report.
fn place(config: &Config, layout: Layout, available: &[usize]) -> Result<(Placement, String)> {
    let (placement, placed) = crate::bench::place(config, layout, available)?;
    let text = format!(
        "{} ({}; cold side, frame server and venue on cores {:?})",
        placement.layout.name(),
        placed.join(", "),
        placement.cold_cores
    );
    Ok((placement, text))
}

fn run_maxx(
    config: &Config,
    plan_: &WirePlan,
    frames: &Frames,
    mock: &MockHandle,
    placement: &Placement,
    placement_text: String,
) -> Result<WireRun> {
    let spec = wire_spec(config);
    let server = FrameServer::start(frames, plan_.interval_ns, "maxx")?;
    let symbols: Vec<VenueSymbol> = config
        .symbols
        .iter()
        .filter_map(|s| s.venues.get(&Venue::Binance).copied())
        .collect();
    let (path, subscribe) = connection(
        &stream_names(&symbols, &[StreamKind::Trade, StreamKind::BookTicker]),
        true,
    );
    let target = WsTarget::resolve(&format!("ws://{}", server.addr))
        .map_err(|e| anyhow!("frame server address: {e}"))?
        .with_path(&path);
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let reconnect = Reconnect {
        initial: Duration::from_millis(50),
        cap: Duration::from_secs(1),
        stale_after: Duration::from_secs(60),
    };
    let source =
        WsFeed::new(target, subscribe, reconnect, Arc::clone(&stats)).context("creating the WebSocket feed")?;
    let feed = FeedInput {
        venue: Venue::Binance,
        source,
        decoder: BinanceDecoder::new(),
        stats,
    };
    let gw = gateway(config, &spec, mock)?;
    let Engine {
        tasks, mut cold, flags, ..
    } = build(&spec, vec![feed], vec![gw]);
    // As `maxx run` and `maxx bench` do: lock memory once the rings exist, before the threads.
    let memory = match lock_memory(config.hot.lock_memory).map_err(crate::bench::bad)? {
        Locked::Yes => "memory locked (mlockall)".to_string(),
        Locked::No(why) => format!("memory not locked: {why}"),
    };
    let placement_text = format!("{placement_text}; {memory}");
    let threads = spawn(&placement.threads, tasks, config.hot.wait, || {}).context("starting the hot threads")?;

    let mut attr = Attribution {
        prefix: PREFIX_MAXX,
        frames,
        warmup: plan_.warmup.unwrap_or(0),
        order_stamp: HashMap::new(),
        tick_at: HashMap::with_capacity(frames.count),
    };
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut orders = 0u64;
    let mut last_progress = Instant::now();
    let mut settle = None;
    let mut drain = |attr: &mut Attribution<'_>, orders: &mut u64| {
        for (_, c) in &mut cold.ticks {
            while let Ok(t) = c.pop() {
                attr.tick(&t);
            }
        }
        for (_, c) in &mut cold.bad {
            while c.pop().is_ok() {}
        }
        while cold.signals.pop().is_ok() {}
        while cold.refusals.pop().is_ok() {}
        while let Ok(e) = cold.exec.pop() {
            if let ExecEvent::Order(o) = e {
                attr.order(&o);
                *orders += 1;
            }
        }
        while cold.exec_notes.pop().is_ok() {}
        while cold.risk_events.pop().is_ok() {}
        for link in [&mut cold.alpha_hist, &mut cold.risk_hist] {
            while let Ok(mut h) = link.hist_in.pop() {
                h.reset();
                let _ = link.hist_back.push(h);
            }
        }
        while let Ok(mut h) = cold.hist_in.pop() {
            h.reset();
            let _ = cold.hist_back.push(h);
        }
    };
    loop {
        drain(&mut attr, &mut orders);
        arrivals.extend(mock.take_arrivals());
        let done = server.finished();
        if last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            progress("maxx", server.sent(), frames.count, orders, arrivals.len());
        }
        if threads.is_finished() {
            break;
        }
        if done && settled(&mut settle, orders, count_prefixed(&arrivals, PREFIX_MAXX)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!();
    flags.request_stop();
    let frames_sent = server.sent();
    let sent = server.finish()?;
    threads.join().map_err(|e| anyhow!(e))?;
    drain(&mut attr, &mut orders);
    arrivals.extend(mock.take_arrivals());
    Ok(attr.finish(&arrivals, &sent, frames_sent, orders, placement_text))
}

fn count_prefixed(arrivals: &[Arrival], prefix: &str) -> usize {
    arrivals.iter().filter(|a| a.client_id.starts_with(prefix)).count()
}

// ---------------------------------------------------------------------------------------------
// The tokio pipeline.

/// Messages into the tokio pipeline's Execution task.
#[derive(Clone, Copy, Debug)]
enum ExecIn {
    Tick(Tick),
    Order(Order),
}

/// Execution's gateway in the tokio pipeline: orders go to the HTTP sender task, the venue's
/// answers come back from the reader task and are handed to Execution when it polls.
#[derive(Debug)]
struct TokioGateway {
    orders: tokio::sync::mpsc::UnboundedSender<Order>,
    reports: crossbeam::channel::Receiver<ExecReport>,
}

impl Gateway for TokioGateway {
    fn venue(&self) -> Venue {
        Venue::Binance
    }

    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        if self.orders.send(*order).is_err() {
            out(ExecReport::Reject {
                order_id: order.id,
                instrument: order.instrument,
                side: order.side,
                qty: order.qty,
                reason: RejectReason::VenueDown,
            });
        }
    }

    fn cancel(&mut self, _order_id: OrderId, _out: &mut impl FnMut(ExecReport)) {
        // Every order is immediate-or-cancel here (see the module docs): nothing rests.
    }

    fn poll(&mut self, _now_ns: u64, out: &mut impl FnMut(ExecReport)) -> bool {
        let mut any = false;
        while let Ok(r) = self.reports.try_recv() {
            out(r);
            any = true;
        }
        any
    }

    fn cancel_all(&mut self, _out: &mut impl FnMut(ExecReport)) {}

    fn open_capacity(&self) -> usize {
        1024
    }
}

/// A signed Binance order placement as HTTP/1.1 text.
fn order_request(order: &Order, symbol: &str, host: &SocketAddr, secret: &Secret) -> String {
    let side = match order.side {
        Side::Buy => "BUY",
        Side::Sell => "SELL",
    };
    let mut body = format!("symbol={symbol}&side={side}");
    match (order.kind, order.tif) {
        (OrderKind::Market, _) => body.push_str("&type=MARKET"),
        (OrderKind::Limit(p), Tif::PostOnly) => {
            let _ = write!(body, "&type=LIMIT_MAKER&price={p}");
        }
        (OrderKind::Limit(p), tif) => {
            let tif = match tif {
                Tif::Ioc => "IOC",
                Tif::Fok => "FOK",
                _ => "GTC",
            };
            let _ = write!(body, "&type=LIMIT&timeInForce={tif}&price={p}");
        }
    }
    let _ = write!(
        body,
        "&quantity={}&newClientOrderId={PREFIX_TOKIO}{}&newOrderRespType=FULL&recvWindow={RECV_WINDOW_MS}&timestamp={}",
        order.qty,
        order.id.0,
        wall_ns() / 1_000_000
    );
    let sig = signature(secret, b"", body.as_bytes());
    let _ = write!(body, "&signature={}", hex_str(&sig));
    format!(
        "POST /api/v3/order HTTP/1.1\r\nHost: {host}\r\nX-MBX-APIKEY: {API_KEY}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The reports a placement answer means for Execution and Risk.
fn answer_reports(order: &Order, status: u16, body: &[u8], out: &mut impl FnMut(ExecReport)) {
    let reject = |out: &mut dyn FnMut(ExecReport)| {
        out(ExecReport::Reject {
            order_id: order.id,
            instrument: order.instrument,
            side: order.side,
            qty: order.qty,
            reason: RejectReason::VenueReject,
        });
    };
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) if status == 200 => v,
        _ => return reject(out),
    };
    let text = |k: &str| json.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
    out(ExecReport::Ack {
        order_id: order.id,
        venue_order_id: json.get("orderId").and_then(serde_json::Value::as_u64).unwrap_or(0),
    });
    let executed: Qty = text("executedQty").parse().unwrap_or(Qty::ZERO);
    let status = text("status");
    if !executed.is_zero() {
        let price: Price = json
            .get("fills")
            .and_then(|f| f.get(0))
            .and_then(|f| f.get("price"))
            .and_then(serde_json::Value::as_str)
            .and_then(|p| p.parse().ok())
            .unwrap_or(Price::ZERO);
        out(ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: Venue::Binance,
            side: order.side,
            price,
            qty: executed,
            fee: Money::ZERO,
            liquidity: Liquidity::Taker,
            last: status == "FILLED",
            ts_ns: wall_ns(),
        }));
    }
    if matches!(status, "EXPIRED" | "CANCELED" | "REJECTED") {
        out(ExecReport::Cancelled {
            order_id: order.id,
            instrument: order.instrument,
            side: order.side,
            qty: Qty::from_raw(order.qty.raw() - executed.raw()).unwrap_or(Qty::ZERO),
        });
    }
}

/// Reads one HTTP/1.1 response: status and body (`Content-Length` framing).
async fn read_response(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) -> Option<(u16, Vec<u8>)> {
    line.clear();
    if r.read_line(line).await.ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if r.read_line(line).await.ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await.ok()?;
    Some((status, body))
}

fn run_tokio(
    config: &Config,
    plan_: &WirePlan,
    frames: &Frames,
    mock: &MockHandle,
    available: &[usize],
) -> Result<WireRun> {
    use tokio::sync::mpsc;
    let spec = wire_spec(config);
    let workers = available.len().max(1);
    let cores = available.to_vec();
    let shown = cores.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        // This thread is confined to the cold cores; the workers may use every core.
        .on_thread_start(move || {
            confine_current_thread(&cores);
        })
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let server = FrameServer::start(frames, plan_.interval_ns, "tokio")?;
    let ws_url = format!("ws://{}/stream", server.addr);
    let venue_addr = mock.addr();
    let index = Arc::clone(&spec.index);
    let symbols: Vec<String> = index
        .iter()
        .map(|i| {
            i.venue_symbols[Venue::Binance.index()]
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        })
        .collect();
    let mut alpha = Alpha::new(spec.alpha.clone());
    let mut risk = Risk::new(spec.risk.clone());
    let (order_out_tx, mut order_out_rx) = mpsc::unbounded_channel::<Order>();
    let (venue_report_tx, venue_report_rx) = crossbeam::channel::unbounded::<ExecReport>();
    let mut exec = Exec::with_params(
        vec![TokioGateway {
            orders: order_out_tx,
            reports: venue_report_rx,
        }],
        KillSwitch::new(),
        spec.exec.clone(),
        Some(Arc::clone(&spec.index)),
    );
    for v in Venue::ALL {
        exec.set_feed(v, true);
    }
    let orders_written = Arc::new(AtomicU64::new(0));

    let (tick_tx, mut tick_rx) = mpsc::channel::<Tick>(CHANNEL_CAPACITY);
    let (intent_tx, mut intent_rx) = mpsc::channel::<OrderIntent>(CHANNEL_CAPACITY);
    let (exec_tx, mut exec_rx) = mpsc::channel::<ExecIn>(CHANNEL_CAPACITY);
    let order_tx = exec_tx.clone();
    let (report_tx, mut report_rx) = mpsc::unbounded_channel::<ExecReport>();

    // The order connection first: a refused connect is an error before any frame is sent.
    let venue = runtime
        .block_on(tokio::net::TcpStream::connect(venue_addr))
        .with_context(|| format!("connecting to the mock venue at {venue_addr}"))?;
    venue.set_nodelay(true).context("mock venue socket")?;
    let (venue_read, mut venue_write) = venue.into_split();
    let (inflight_tx, mut inflight_rx) = mpsc::unbounded_channel::<Order>();

    let feed = runtime.spawn(async move {
        let stream = tokio::net::TcpStream::connect(server_addr(&ws_url))
            .await
            .map_err(|e| anyhow!("connecting to the frame server: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| anyhow!("frame client socket: {e}"))?;
        let (mut ws, _) = tokio_tungstenite::client_async(ws_url.as_str(), stream)
            .await
            .map_err(|e| anyhow!("tokio-tungstenite handshake: {e}"))?;
        let mut decoder = BinanceDecoder::new();
        let mut batch = Box::new(TickBatch::new());
        let mut seen: Vec<Tick> = Vec::with_capacity(CHANNEL_CAPACITY);
        while let Some(msg) = ws.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(_) => break,
            };
            let meta = FrameMeta {
                recv_ns: wall_ns(),
                stamp: SystemClock.stamp(),
            };
            let bytes: &[u8] = match &msg {
                tungstenite::Message::Text(t) => t.as_bytes(),
                tungstenite::Message::Binary(b) => b,
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            batch.clear();
            if let Ok(Decoded::Tick(t)) = Decode::decode(&mut decoder, bytes, meta, &index, &mut batch) {
                seen.push(t);
                if tick_tx.send(t).await.is_err() {
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(seen)
    });
    let alpha_task = runtime.spawn(async move {
        let mut intents = Vec::with_capacity(8);
        while let Some(tick) = tick_rx.recv().await {
            if exec_tx.send(ExecIn::Tick(tick)).await.is_err() {
                break;
            }
            alpha.process(AlphaInput::Tick(tick), &mut |out| {
                if let AlphaOut::Intent(i) = out {
                    intents.push(i);
                }
            });
            for i in intents.drain(..) {
                let _ = intent_tx.send(i).await;
            }
        }
    });
    let risk_task = runtime.spawn(async move {
        risk.on_feed(Venue::Binance, true, wall_ns());
        loop {
            tokio::select! {
                biased;
                Some(r) = report_rx.recv() => risk.on_report(&r),
                intent = intent_rx.recv() => match intent {
                    Some(i) => {
                        if let Decision::Approved(order) = risk.check(&i)
                            && order_tx.send(ExecIn::Order(order)).await.is_err()
                        {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
    });
    let exec_task = runtime.spawn(async move {
        let mut reports = Vec::with_capacity(16);
        let mut orders: Vec<Order> = Vec::new();
        let on_event = |e: ExecEvent, reports: &mut Vec<ExecReport>, orders: &mut Vec<Order>| match e {
            ExecEvent::Report(r) => reports.push(r),
            ExecEvent::Order(o) => orders.push(o),
        };
        while let Some(msg) = exec_rx.recv().await {
            match msg {
                ExecIn::Tick(t) => exec.on_tick(&t),
                ExecIn::Order(o) => {
                    exec.process(o, SystemClock.stamp(), &mut |e| on_event(e, &mut reports, &mut orders));
                }
            }
            exec.poll(mono_ns(), 64, &mut |e| on_event(e, &mut reports, &mut orders));
            for r in reports.drain(..) {
                let _ = report_tx.send(r);
            }
        }
        orders
    });
    let sender = runtime.spawn({
        let written = Arc::clone(&orders_written);
        async move {
            let secret = Secret::from_bytes(API_SECRET.as_bytes());
            while let Some(order) = order_out_rx.recv().await {
                let symbol = symbols.get(usize::from(order.instrument.0)).map_or("", String::as_str);
                let request = order_request(&order, symbol, &venue_addr, &secret);
                if inflight_tx.send(order).is_err() || venue_write.write_all(request.as_bytes()).await.is_err() {
                    break;
                }
                written.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let reader = runtime.spawn(async move {
        let mut r = BufReader::new(venue_read);
        let mut line = String::new();
        while let Some(order) = inflight_rx.recv().await {
            let Some((status, body)) = read_response(&mut r, &mut line).await else {
                break;
            };
            answer_reports(&order, status, &body, &mut |rep| {
                let _ = venue_report_tx.send(rep);
            });
        }
    });

    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut last_progress = Instant::now();
    let mut settle = None;
    loop {
        arrivals.extend(mock.take_arrivals());
        let done = server.finished();
        let written = orders_written.load(Ordering::Relaxed);
        if last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            progress("tokio", server.sent(), frames.count, written, arrivals.len());
        }
        if feed.is_finished() {
            break;
        }
        if done && settled(&mut settle, written, count_prefixed(&arrivals, PREFIX_TOKIO)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!();
    let frames_sent = server.sent();
    let sent = server.finish()?;
    let (ticks, orders) = runtime.block_on(async {
        let ticks = feed.await.map_err(|e| anyhow!("tokio pipeline feed task: {e}"))??;
        let _ = alpha_task.await;
        let _ = risk_task.await;
        let orders = exec_task
            .await
            .map_err(|e| anyhow!("tokio pipeline Execution task: {e}"))?;
        Ok::<_, anyhow::Error>((ticks, orders))
    })?;
    // Execution (and with it the order channel) is gone: the sender and reader end.
    runtime.block_on(async {
        let _ = sender.await;
    });
    reader.abort();
    arrivals.extend(mock.take_arrivals());
    runtime.shutdown_timeout(Duration::from_secs(1));

    let mut attr = Attribution {
        prefix: PREFIX_TOKIO,
        frames,
        warmup: plan_.warmup.unwrap_or(0),
        order_stamp: HashMap::with_capacity(orders.len()),
        tick_at: HashMap::with_capacity(ticks.len()),
    };
    for t in &ticks {
        attr.tick(t);
    }
    for o in &orders {
        attr.order(o);
    }
    Ok(attr.finish(
        &arrivals,
        &sent,
        frames_sent,
        orders.len() as u64,
        format!("{workers} worker thread(s) on cores {shown:?}, unpinned"),
    ))
}

/// `host:port` of a `ws://host:port/...` URL.
fn server_addr(url: &str) -> String {
    let rest = url.trim_start_matches("ws://");
    rest.split('/').next().unwrap_or(rest).to_string()
}

// ---------------------------------------------------------------------------------------------
// The report.

fn us(h: &BoxedHistogram, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_percentile(p) as f64 / 1000.0
}

fn max_us(h: &BoxedHistogram) -> f64 {
    if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 }
}

fn table(out: &mut String, maxx: &WireRun, tokio: &WireRun) {
    let (m, t) = (&maxx.hist, &tokio.hist);
    let _ = write!(out, "{:<26}", "wire-to-wire (us)");
    for (_, name) in PERCENTILES {
        let _ = write!(out, " {name:>10}");
    }
    let _ = writeln!(out, " {:>10} {:>10}", "max", "samples");
    let row = |out: &mut String, name: &str, h: &BoxedHistogram| {
        let _ = write!(out, "{name:<26}");
        for (p, _) in PERCENTILES {
            let _ = write!(out, " {:>10.3}", us(h, p));
        }
        let _ = writeln!(out, " {:>10.3} {:>10}", max_us(h), h.len());
    };
    row(out, "maxx", &maxx.hist);
    row(out, "tokio", &tokio.hist);
    let _ = write!(out, "{:<26}", "ratio tokio/maxx");
    let ratio = |t: f64, m: f64| if m > 0.0 { format!("{:.2}x", t / m) } else { "-".into() };
    for (p, _) in PERCENTILES {
        let _ = write!(out, " {:>10}", ratio(us(t, p), us(m, p)));
    }
    let _ = writeln!(out, " {:>10}", ratio(max_us(t), max_us(m)));
    // Where the time goes: the split at the feed's receive stamp.
    row(out, "maxx frame->feed", &maxx.wire_in);
    row(out, "maxx feed->venue", &maxx.inside);
    row(out, "tokio frame->feed", &tokio.wire_in);
    row(out, "tokio feed->venue", &tokio.inside);
}

fn wire(args: &BenchArgs, config: &Config) -> Result<()> {
    let plan_ = resolve(args)?;
    let spec = wire_spec(config);
    let (set, asked) = match &args.capture {
        Some(path) => (load_capture(path)?, plan_.total),
        None => (generate(config, args.seed, plan_.total)?, plan_.total),
    };
    // A capture is sent once, never cycled: a repeated frame could not be told apart.
    let count = (asked as usize).min(set.frames.len());
    let frames = index_frames(set, count, &spec.index);
    if frames.ticks == 0 {
        return Err(bad(format!(
            "no frame of {} decodes to a Binance tick of a configured symbol",
            frames.set.origin
        )));
    }
    let warmup = plan_.warmup.unwrap_or_else(|| (count as u64 / 10).min(DEFAULT_WARMUP));
    if warmup >= count as u64 {
        return Err(bad(format!(
            "--warmup {warmup} leaves nothing to measure out of {count} frame(s)"
        )));
    }
    let plan_ = WirePlan {
        warmup: Some(warmup),
        ..plan_
    };
    std::fs::create_dir_all(&plan_.out).with_context(|| format!("creating {}", plan_.out.display()))?;
    // Read the core list once, before anything is pinned; then this thread, and the venue and
    // frame servers it starts, stay off the hot cores (a spinning hot thread would starve them).
    let available = available_cores();
    let (placement, placement_text) = place(config, plan_.layout, &available)?;
    confine_current_thread(&placement.cold_cores);
    let mock =
        mockvenue::spawn_binance(mock_config(config)?).context("starting the mock Binance venue on 127.0.0.1")?;
    mock.record_arrivals();

    let maxx = run_maxx(config, &plan_, &frames, &mock, &placement, placement_text)?;
    // The baseline's workers: by default on the cores the hot threads had, so both pipelines
    // write their orders from the same cores (on a small machine the venue sits on the other
    // core, and waking it from there is most of the trip; see benches/RESULTS.md section 7).
    let tokio_cores = if args.tokio_cores == "all" || placement.threads.iter().any(|t| t.core.is_none()) {
        available.clone()
    } else {
        let mut hot: Vec<usize> = placement.threads.iter().filter_map(|t| t.core).collect();
        hot.sort_unstable();
        hot.dedup();
        hot
    };
    let tokio = run_tokio(config, &plan_, &frames, &mock, &tokio_cores)?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "maxx bench --wire: {count} frames from {}{}, open loop at {} frames/s over a loopback WebSocket; orders over loopback HTTP to a mock Binance venue; warmup {} frames",
        frames.set.origin,
        if (count as u64) < asked {
            format!(" (all of it; {asked} asked)")
        } else {
            String::new()
        },
        plan_.rate,
        warmup
    );
    let _ = writeln!(out, "maxx: layout {}; tokio: {}", maxx.placement, tokio.placement);
    let _ = writeln!(
        out,
        "latency = order request in hand at the venue - frame about to be written by the server (one monotonic clock)"
    );
    table(&mut out, &maxx, &tokio);
    for (name, r) in [("maxx", &maxx), ("tokio", &tokio)] {
        let _ = writeln!(
            out,
            "{name}: frames sent {}, orders sent {}, orders received {}, samples {}, warmup {}, unattributed {}",
            r.frames_sent,
            r.orders,
            r.arrived,
            r.hist.len(),
            r.warmup,
            r.unattributed
        );
    }
    let _ = writeln!(
        out,
        "frames: {} decode to ticks, {} ticks share a key with another frame (not attributable)",
        frames.ticks, frames.ambiguous
    );
    let mut written = Vec::new();
    for (name, h) in [("wire-maxx.hgrm", &maxx.hist), ("wire-tokio.hgrm", &tokio.hist)] {
        let path = plan_.out.join(name);
        std::fs::write(&path, hgrm(h)).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    let plot = plan_.out.join("wire.svg");
    let plotted: [(&str, &BoxedHistogram); 2] =
        [("maxx wire-to-wire", &maxx.hist), ("tokio wire-to-wire", &tokio.hist)];
    std::fs::write(&plot, svg(&plotted)).with_context(|| format!("writing {}", plot.display()))?;
    written.push(plot.display().to_string());
    let _ = writeln!(out, "files: {}", written.join(" "));
    print!("{out}");
    if maxx.hist.is_empty() || tokio.hist.is_empty() {
        eprintln!("maxx bench --wire: warning: a pipeline has no sample (too few frames?)");
    }
    Ok(())
}
