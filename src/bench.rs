//! `maxx bench`: drives the real hot path from in-memory frames and reports HDR latency.
//!
//! Frames (the seeded simulator's Binance `trade` / `bookTicker` frames, generated up front,
//! or a capture file) are handed by [`MemSource`] to the real Binance decoder on the feed
//! thread; the real rings, Alpha, Risk and Execution (paper venue) run on threads placed by the
//! same [`plan`] `maxx run` uses. The latency figures are the stages' own histograms (the ones
//! `maxx_stage_latency_seconds` exports), merged on this thread as they are handed over:
//! tick → Alpha's intent, tick → Risk's approval, tick → order (Execution). Each is measured from
//! the frame's hand-over stamp: in open loop (`--rate`) its *scheduled* time, so waiting behind a
//! slow pipeline counts; flat out, the moment the ring took it.
//!
//! Baselines in the same run: `floor` (a cache-line ping-pong between two cores: the physical
//! cost of one hop), `tokio` (the same Alpha, Risk and Execution objects and the same decoder,
//! joined by tokio mpsc channels on a multi-thread runtime) and `crossbeam` (the same again on
//! unpinned std threads joined by bounded crossbeam channels, blocking receives). Every figure is
//! printed as a ratio against them, because absolute times on shared development machines are
//! noise. The report's header says how many cores the four stages ran on and in which layout:
//! `--layout fused --baseline tokio` is the 4-stages-on-2-cores comparison against tokio.
//!
//! Per hop: unless `--no-hops`, every record on its way to an order carries the monotonic time
//! it was pushed into its ring ([`maxx_hot::wiring::Stamped`]) and each stage records the hop
//! into it and its own work ([`Hop`]): decode, `md_alpha`, Alpha, `alpha_risk`, Risk,
//! `risk_exec` (together exactly tick → order, sample by sample) and Execution's hand-off to the
//! venue. Each hop is printed as a multiple of the floor.
//!
//! Bench tuning (what it changes from the config, so orders happen often enough to measure):
//! Alpha's entry / exit thresholds 0.05 / 0.01, Risk's `max_orders_per_sec` 100000,
//! `max_gross_notional` unbounded, each symbol's `max_order_qty`, `max_position` and
//! `max_order_notional` × 100, fixed sizing, kill switch off, every feed counted live.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use maxx_cold::config::Config;
use maxx_cold::engine::{paper_venue, spec};
use maxx_cold::sim::{MarketGen, SimEvent, SimSymbol};
use maxx_hot::capture::{Capture, Line};
use maxx_hot::clock::{Clock, SystemClock, mono_ns, wall_ns};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::{Decoded, TickBatch};
use maxx_hot::ids::Venue;
use maxx_hot::num::{Money, Qty};
use maxx_hot::records::{ExecReport, Factor, Order, OrderIntent, Tick};
use maxx_hot::runtime::engine::{Engine, EngineSpec, FeedInput, build};
use maxx_hot::runtime::host::{Locked, lock_memory};
use maxx_hot::runtime::memsource::{MemFrames, MemProgress, MemSource, Pacing};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{Placement, available_cores, confine_current_thread, plan, spawn};
use maxx_hot::source::{Decode, FrameSource, Next};
use maxx_hot::stage::alpha::{Alpha, AlphaInput, AlphaOut};
use maxx_hot::stage::exec::{Exec, ExecEvent, latency_histogram};
use maxx_hot::stage::risk::{Decision, Risk, SizingMode};
use maxx_hot::topology::{Layout, StageName};
use maxx_hot::wiring::{BoxedHistogram, HistogramIn, Hop};

use crate::cli::BenchArgs;

/// Distinct frames generated from the simulator at most; longer runs cycle through them.
const MAX_DISTINCT_FRAMES: u64 = 200_000;
/// Frames when neither `--frames` nor `--duration` says.
const DEFAULT_FRAMES: u64 = 200_000;
/// Round trips per floor sample (the sample is their mean one-way time).
const FLOOR_BATCH: u64 = 8;
/// Floor samples.
const FLOOR_SAMPLES: u64 = 100_000;
/// Channel capacity of the tokio and crossbeam baselines (the md → alpha ring's).
const TOKIO_CAPACITY: usize = 8192;
/// Histograms in the soak's start and end windows.
const SOAK_WINDOW: usize = 5;
/// Percentiles of the table.
const PERCENTILES: [(f64, &str); 5] = [
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
];

/// A bad benchmark parameter: reported on stderr, exit 2 (like clap's own argument errors).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

pub(crate) fn bad(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(msg.into()))
}

/// `maxx bench`: exit 0, 2 on a bad parameter, 1 on a failed run.
pub fn bench_cmd(args: &BenchArgs, config: &Config) -> ExitCode {
    match bench(args, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("maxx bench: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("maxx bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Which baselines to run.
#[derive(Clone, Copy, Debug, Default)]
struct Baselines {
    floor: bool,
    tokio: bool,
    crossbeam: bool,
}

/// The run's resolved parameters.
#[derive(Debug)]
struct Plan {
    pacing: Pacing,
    total: u64,
    warmup: u64,
    deadline: Option<Duration>,
    layout: Layout,
    out: PathBuf,
    baselines: Baselines,
    soak: bool,
    /// Stamp records and report each hop.
    hops: bool,
}

fn resolve(args: &BenchArgs) -> Result<Plan> {
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(bad(format!(
            "--rate must be a positive number of frames per second, got {r}"
        )));
    }
    if args.frames == Some(0) {
        return Err(bad("--frames must be at least 1"));
    }
    let pacing = match args.rate {
        Some(r) => {
            let interval_ns = (1e9 / r).round() as u64;
            if interval_ns == 0 {
                return Err(bad(format!("--rate {r} is above 1e9 frames per second")));
            }
            Pacing::Rate { interval_ns }
        }
        None => Pacing::FlatOut,
    };
    let total = match (args.frames, args.rate, args.duration) {
        (Some(n), _, _) => n,
        (None, Some(r), Some(d)) => ((r * d.as_secs_f64()).round() as u64).max(1),
        (None, None, Some(_)) => u64::MAX,
        (None, _, None) => DEFAULT_FRAMES,
    };
    let warmup = args.warmup.unwrap_or_else(|| (total / 10).min(10_000));
    if warmup >= total {
        return Err(bad(format!(
            "--warmup {warmup} leaves nothing to measure out of {total} frame(s)"
        )));
    }
    let layout = Layout::from_name(&args.layout).ok_or_else(|| bad(format!("unknown layout {:?}", args.layout)))?;
    let mut baselines = Baselines::default();
    for b in &args.baseline {
        match b.as_str() {
            "floor" => baselines.floor = true,
            "tokio" => baselines.tokio = true,
            "crossbeam" => baselines.crossbeam = true,
            other => {
                return Err(bad(format!(
                    "unknown baseline {other:?} (available: floor, tokio, crossbeam)"
                )));
            }
        }
    }
    if args.soak && args.duration.is_none() {
        return Err(bad("--soak needs --duration (e.g. --duration 10m)"));
    }
    Ok(Plan {
        pacing,
        total,
        warmup,
        deadline: args.duration,
        layout,
        out: args.out.clone(),
        baselines,
        soak: args.soak,
        hops: !args.no_hops,
    })
}

/// Where the frames came from, for the header line.
#[derive(Debug)]
pub(crate) struct FrameSet {
    pub(crate) frames: Arc<MemFrames>,
    pub(crate) origin: String,
}

/// The simulator's instruments on Binance, from the config's symbols and `sim.binance`.
fn sim_symbols(config: &Config) -> Result<(u64, Vec<SimSymbol>)> {
    let sim = config.sim.get(&Venue::Binance);
    let mut out = Vec::new();
    for s in &config.symbols {
        let Some(venue_symbol) = s.venues.get(&Venue::Binance).copied() else {
            continue;
        };
        let start_price = sim
            .and_then(|c| c.start_prices.get(&s.symbol).copied())
            .ok_or_else(|| bad(format!("sim.binance.start_prices has no price for {}", s.symbol)))?;
        out.push(SimSymbol {
            venue_symbol,
            start_price,
            tick_size: s.tick_size,
            lot_size: s.lot_size,
        });
    }
    if out.is_empty() {
        return Err(bad("the config lists no symbol on binance: nothing to generate"));
    }
    Ok((sim.map_or(1, |c| c.seed), out))
}

/// A price or quantity (10⁻⁸ units) as Binance prints it.
fn fixed8(raw: i64) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let a = raw.unsigned_abs();
    format!("{sign}{}.{:08}", a / 100_000_000, a % 100_000_000)
}

/// `n` seeded simulator frames, in the combined-stream form (`{"stream":…,"data":…}`).
pub(crate) fn generate(config: &Config, seed: Option<u64>, n: u64) -> Result<FrameSet> {
    let (config_seed, symbols) = sim_symbols(config)?;
    let seed = seed.unwrap_or(config_seed);
    let mut market = MarketGen::new(seed, 1_000, &symbols).map_err(|e| anyhow!("simulator: {e}"))?;
    let names: Vec<(String, String)> = symbols
        .iter()
        .map(|s| (s.venue_symbol.to_string(), s.venue_symbol.to_string().to_lowercase()))
        .collect();
    // A fixed epoch keeps the frames a pure function of the seed.
    let epoch_ms: u64 = 1_700_000_000_000;
    let mut frames = MemFrames::new();
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        let event = market.next_event();
        let (upper, lower) = &names[event.symbol()];
        match event {
            SimEvent::Trade(t) => {
                let time = epoch_ms + t.offset_ns / 1_000_000;
                let _ = write!(
                    line,
                    r#"{{"stream":"{lower}@trade","data":{{"e":"trade","E":{time},"s":"{upper}","t":{},"p":"{}","q":"{}","T":{time},"m":{},"M":true}}}}"#,
                    t.trade_id,
                    fixed8(t.price.raw()),
                    fixed8(t.qty.raw()),
                    t.buyer_is_maker
                );
            }
            SimEvent::BookTicker(b) => {
                let _ = write!(
                    line,
                    r#"{{"stream":"{lower}@bookTicker","data":{{"u":{},"s":"{upper}","b":"{}","B":"{}","a":"{}","A":"{}"}}}}"#,
                    b.update_id,
                    fixed8(b.bid.raw()),
                    fixed8(b.bid_qty.raw()),
                    fixed8(b.ask.raw()),
                    fixed8(b.ask_qty.raw())
                );
            }
        }
        frames.push(line.as_bytes());
    }
    Ok(FrameSet {
        origin: format!("seeded simulator (seed {seed}, {} symbol(s))", symbols.len()),
        frames: Arc::new(frames),
    })
}

/// Every frame of a capture file.
pub(crate) fn load_capture(path: &Path) -> Result<FrameSet> {
    let capture = Capture::load(path).map_err(|e| bad(format!("cannot read capture {}: {e}", path.display())))?;
    let mut frames = MemFrames::new();
    for line in capture.lines() {
        if let Line::Frame { start, end, .. } = *line {
            frames.push(capture.frame(start, end));
        }
    }
    if frames.is_empty() {
        return Err(bad(format!("capture {} holds no frame", path.display())));
    }
    Ok(FrameSet {
        origin: format!("capture {} ({} frames)", path.display(), frames.len()),
        frames: Arc::new(frames),
    })
}

/// The engine's parameters with the bench tuning (see the module docs).
pub(crate) fn bench_spec(config: &Config, soak: bool) -> EngineSpec {
    let mut s = spec(config);
    s.alpha.entry = Factor::from_num(5) / Factor::from_num(100);
    s.alpha.exit = Factor::from_num(1) / Factor::from_num(100);
    s.risk.max_orders_per_sec = 100_000;
    s.risk.max_gross_notional = Money::from_raw(i64::MAX / 4).unwrap_or(s.risk.max_gross_notional);
    s.risk.sizing = SizingMode::Fixed;
    // A flip from a full long to a full short is twice the order size: let it through.
    for i in &mut s.risk.instruments {
        let l = &mut i.limits;
        l.max_order_qty = Qty::from_raw(l.max_order_qty.raw().saturating_mul(100)).unwrap_or(l.max_order_qty);
        l.max_position = Qty::from_raw(l.max_position.raw().saturating_mul(100)).unwrap_or(l.max_position);
        l.max_order_notional =
            Money::from_raw(l.max_order_notional.raw().saturating_mul(100)).unwrap_or(l.max_order_notional);
    }
    s.risk.kill = false;
    s.stale_after = None;
    s.histogram_every = if soak {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(200)
    };
    s
}

/// What one engine run measured.
#[derive(Debug)]
struct EngineRun {
    alpha: BoxedHistogram,
    risk: BoxedHistogram,
    exec: BoxedHistogram,
    /// Each hop's histogram, in path order (empty with `--no-hops`).
    hops: Vec<(Hop, BoxedHistogram)>,
    frames: u64,
    ticks: u64,
    bad_frames: u64,
    intents: u64,
    approved: u64,
    refused: u64,
    refusals: String,
    orders: u64,
    fills: u64,
    span: Duration,
    max_late_ns: u64,
    placement: String,
    /// Whether memory was locked, or why not.
    memory: String,
    /// `4 stages on 2 cores (layout fused)`.
    stages_on_cores: String,
    soak: Option<Soak>,
}

/// The soak's start and end.
#[derive(Debug)]
struct Soak {
    rss_start_kb: u64,
    /// The last reading taken while the hot threads still ran (not after the join).
    rss_end_kb: u64,
    /// The highest reading after the start one.
    rss_peak_kb: u64,
    start: BoxedHistogram,
    end: BoxedHistogram,
}

pub(crate) fn empty() -> BoxedHistogram {
    Box::new(latency_histogram())
}

/// Moves every handed-over histogram into `acc` and sends it back empty; `true` if any came.
fn take(link: &mut HistogramIn, acc: &mut BoxedHistogram, mut each: impl FnMut(&BoxedHistogram)) -> bool {
    let mut any = false;
    while let Ok(mut h) = link.hist_in.pop() {
        let _ = acc.add(&*h);
        each(&h);
        h.reset();
        let _ = link.hist_back.push(h);
        any = true;
    }
    any
}

/// Resident set size in kB, from `/proc/self/status`.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The four hot stages `maxx bench` runs: one feed, Alpha, Risk, Execution.
pub(crate) const STAGES: [StageName; 4] = [
    StageName::MarketData(Venue::Binance),
    StageName::Alpha,
    StageName::Risk,
    StageName::Exec,
];

/// Where the hot threads run: the same [`plan`] as `maxx run` (`hot.cores`), or one core per
/// stage for `--layout pinned`, leaving the first core to the cold side when there is one to
/// spare. Gives the placement and one `stage+stage on core N` entry per thread.
pub(crate) fn place(config: &Config, layout: Layout, available: &[usize]) -> Result<(Placement, Vec<String>)> {
    let cores = match layout {
        Layout::Pinned => {
            if available.len() < STAGES.len() {
                return Err(bad(format!(
                    "--layout pinned needs one core per stage ({} stages) but this process may use {} core(s) {available:?}; use --layout fused or auto",
                    STAGES.len(),
                    available.len()
                )));
            }
            let skip = usize::from(available.len() > STAGES.len());
            STAGES
                .iter()
                .copied()
                .zip(available.iter().copied().skip(skip))
                .collect()
        }
        _ => config.hot.cores.clone(),
    };
    let placement = plan(layout, &cores, &STAGES, available).map_err(|e| bad(e.to_string()))?;
    let placed = placement
        .threads
        .iter()
        .map(|t| {
            let names: Vec<String> = t.stages.iter().map(ToString::to_string).collect();
            match t.core {
                Some(c) => format!("{} on core {c}", names.join("+")),
                None => format!("{} unpinned", names.join("+")),
            }
        })
        .collect();
    Ok((placement, placed))
}

/// Runs the real engine over the frames.
fn run_engine(config: &Config, plan_: &Plan, frames: &FrameSet, progress_label: &str) -> Result<EngineRun> {
    let mut spec = bench_spec(config, plan_.soak);
    spec.capacities.hop_histograms = plan_.hops;
    let available = available_cores();
    let stages = STAGES;
    let (placement, placed) = place(config, plan_.layout, &available)?;
    let placement_text = format!("{} ({})", placement.layout.name(), placed.join(", "));
    // Cores the hot threads may run on: their pinned cores, or every available one when any
    // thread is left to the scheduler.
    let hot_cores = if placement.threads.iter().any(|t| t.core.is_none()) {
        available.len()
    } else {
        let mut pinned: Vec<usize> = placement.threads.iter().filter_map(|t| t.core).collect();
        pinned.sort_unstable();
        pinned.dedup();
        pinned.len()
    };
    let stages_on_cores = format!(
        "{} stages on {hot_cores} core{} (layout {})",
        stages.len(),
        if hot_cores == 1 { "" } else { "s" },
        placement.layout.name()
    );

    let progress = Arc::new(MemProgress::default());
    let source = MemSource::new(
        Arc::clone(&frames.frames),
        plan_.pacing,
        plan_.total,
        plan_.warmup,
        plan_.deadline,
        Arc::clone(&progress),
    );
    let feed = FeedInput {
        venue: Venue::Binance,
        source,
        decoder: BinanceDecoder::new(),
        stats: Arc::new(FeedStats::new(Venue::Binance)),
    };
    let Engine {
        tasks, mut cold, stats, ..
    } = build(&spec, vec![feed], vec![paper_venue(config, Venue::Binance)]);
    // As `maxx run` does: lock memory once the rings and buffers exist, so locking faults them
    // in and the hot threads take no page faults (and the soak's RSS does not creep up as
    // ring pages are first touched).
    let memory = match lock_memory(config.hot.lock_memory).map_err(bad)? {
        Locked::Yes => "memory locked (mlockall)".to_string(),
        Locked::No(why) => format!("memory not locked: {why}"),
    };
    let threads = spawn(&placement.threads, tasks, config.hot.wait, || {}).context("starting the hot threads")?;
    confine_current_thread(&placement.cold_cores);

    let (mut alpha, mut risk, mut exec) = (empty(), empty(), empty());
    let mut hops: Vec<(Hop, BoxedHistogram)> = cold.hops.iter().map(|h| (h.hop, empty())).collect();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut soak_start: Option<(BoxedHistogram, usize, u64)> = plan_.soak.then(|| (empty(), 0, 0));
    // The end window: a ring of histograms allocated (and touched) now, reused in turn, so the
    // bench's own bookkeeping does not grow RSS during the soak.
    let mut soak_end: Vec<(BoxedHistogram, bool)> = Vec::new();
    if plan_.soak {
        for _ in 0..SOAK_WINDOW {
            let mut h = empty();
            h.saturating_record(1);
            h.reset();
            soak_end.push((h, false));
        }
    }
    let mut soak_next = 0usize;
    // RSS read while the threads run: (last, highest) after the start reading.
    let mut rss_now = (0u64, 0u64);
    let mut exec_link = HistogramIn {
        hist_in: cold.hist_in,
        hist_back: cold.hist_back,
    };
    loop {
        let finished = threads.is_finished();
        for (_, c) in &mut cold.ticks {
            while c.pop().is_ok() {}
        }
        for (_, c) in &mut cold.bad {
            while c.pop().is_ok() {}
        }
        while cold.signals.pop().is_ok() {}
        while cold.refusals.pop().is_ok() {}
        while cold.exec.pop().is_ok() {}
        while cold.exec_notes.pop().is_ok() {}
        while cold.risk_events.pop().is_ok() {}
        take(&mut cold.alpha_hist, &mut alpha, |_| {});
        take(&mut cold.risk_hist, &mut risk, |_| {});
        for (link, (_, acc)) in cold.hops.iter_mut().zip(&mut hops) {
            take(&mut link.link, acc, |_| {});
        }
        take(&mut exec_link, &mut exec, |h| {
            if !plan_.soak {
                return;
            }
            if let Some((start, n, rss)) = &mut soak_start
                && *n < SOAK_WINDOW
            {
                let _ = start.add(&**h);
                *n += 1;
                if *n == SOAK_WINDOW {
                    *rss = rss_kb();
                }
                return;
            }
            let (slot, used) = &mut soak_end[soak_next % SOAK_WINDOW];
            slot.reset();
            let _ = slot.add(&**h);
            *used = true;
            soak_next += 1;
            let rss = rss_kb();
            rss_now = (rss, rss_now.1.max(rss));
        });
        if last_progress.elapsed() >= Duration::from_millis(200) || finished {
            last_progress = Instant::now();
            let handed = progress.handed.load(Ordering::Relaxed);
            let line = match (plan_.total, plan_.deadline) {
                (u64::MAX, Some(d)) => format!("{:>5.1}s / {:.0}s", started.elapsed().as_secs_f64(), d.as_secs_f64()),
                (total, _) => {
                    let pct = handed as f64 * 100.0 / total as f64;
                    let filled = ((pct / 5.0) as usize).min(20);
                    format!("[{}{}] {pct:>5.1}%", "#".repeat(filled), "-".repeat(20 - filled))
                }
            };
            eprint!(
                "\r{progress_label}: {line}  {handed} frames  {} orders   ",
                stats.exec.orders.get()
            );
            let _ = std::io::stderr().flush();
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!();
    threads.join().map_err(|e| anyhow!(e))?;
    take(&mut cold.alpha_hist, &mut alpha, |_| {});
    take(&mut cold.risk_hist, &mut risk, |_| {});
    take(&mut exec_link, &mut exec, |_| {});
    for (link, (_, acc)) in cold.hops.iter_mut().zip(&mut hops) {
        take(&mut link.link, acc, |_| {});
    }

    let first = progress.first_ns.load(Ordering::Relaxed);
    let last = progress.last_ns.load(Ordering::Relaxed);
    let feed = &stats.feeds[0];
    let soak = match soak_start {
        Some((start, _, rss_start)) => {
            let mut end = empty();
            for (h, used) in &soak_end {
                if *used {
                    let _ = end.add(&**h);
                }
            }
            Some(Soak {
                rss_start_kb: rss_start,
                rss_end_kb: if rss_now.0 == 0 { rss_start } else { rss_now.0 },
                rss_peak_kb: rss_now.1.max(rss_start),
                start,
                end,
            })
        }
        None => None,
    };
    Ok(EngineRun {
        alpha,
        risk,
        exec,
        hops,
        frames: feed.frames.get(),
        ticks: feed.trades.get() + feed.quotes.get(),
        bad_frames: feed.bad.iter().map(|c| c.get()).sum(),
        intents: stats.alpha.intents.get(),
        approved: stats.risk.approved.get(),
        refused: stats.risk.refused.iter().map(|c| c.get()).sum(),
        refusals: maxx_hot::records::RejectReason::ALL
            .iter()
            .zip(&stats.risk.refused)
            .filter(|(_, c)| c.get() > 0)
            .map(|(r, c)| format!("{r:?} {}", c.get()))
            .collect::<Vec<_>>()
            .join(", "),
        orders: stats.exec.orders.get(),
        fills: stats.exec.fills.get(),
        span: Duration::from_nanos(last.saturating_sub(first).max(1)),
        max_late_ns: progress.max_late_ns.load(Ordering::Relaxed),
        placement: placement_text,
        memory,
        stages_on_cores,
        soak,
    })
}

/// One-way cache-line latency between two cores: a ping-pong of two `AtomicU64` on separate
/// cache lines, each sample the mean one-way time of [`FLOOR_BATCH`] round trips.
fn floor(cores: (usize, usize)) -> BoxedHistogram {
    #[repr(align(128))]
    #[derive(Default)]
    struct Padded(AtomicU64);
    #[derive(Default)]
    struct Lines {
        ping: Padded,
        pong: Padded,
    }
    let lines = Arc::new(Lines::default());
    let peer = Arc::clone(&lines);
    let (a, b) = cores;
    let responder = std::thread::Builder::new()
        .name("bench-floor-b".into())
        .spawn(move || {
            confine_current_thread(&[b]);
            let mut seen = 0;
            loop {
                let v = peer.ping.0.load(Ordering::Acquire);
                if v == u64::MAX {
                    return;
                }
                if v != seen {
                    seen = v;
                    peer.pong.0.store(v, Ordering::Release);
                } else {
                    std::hint::spin_loop();
                }
            }
        })
        .ok();
    let caller = std::thread::Builder::new().name("bench-floor-a".into()).spawn(move || {
        confine_current_thread(&[a]);
        let mut hist = empty();
        let mut seq = 0u64;
        let warm = FLOOR_SAMPLES / 10;
        for i in 0..FLOOR_SAMPLES + warm {
            let t0 = mono_ns();
            for _ in 0..FLOOR_BATCH {
                seq += 1;
                lines.ping.0.store(seq, Ordering::Release);
                while lines.pong.0.load(Ordering::Acquire) != seq {
                    std::hint::spin_loop();
                }
            }
            let one_way = mono_ns().saturating_sub(t0) / (2 * FLOOR_BATCH);
            if i >= warm {
                hist.saturating_record(one_way.max(1));
            }
        }
        lines.ping.0.store(u64::MAX, Ordering::Release);
        hist
    });
    let hist = match caller {
        Ok(h) => h.join().unwrap_or_else(|_| empty()),
        Err(_) => empty(),
    };
    if let Some(r) = responder {
        let _ = r.join();
    }
    hist
}

/// Messages into the tokio baseline's Execution task.
#[derive(Clone, Copy, Debug)]
enum ExecIn {
    Tick(Tick),
    Order(Order),
}

/// The tokio baseline: the same decoder and stage objects joined by tokio mpsc channels on a
/// multi-thread runtime; returns Execution's tick-to-order histogram and the order count.
fn tokio_baseline(config: &Config, plan_: &Plan, frames: &FrameSet, workers: usize) -> Result<(BoxedHistogram, u64)> {
    use tokio::sync::mpsc;
    let spec = bench_spec(config, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?;
    let mut source = MemSource::new(
        Arc::clone(&frames.frames),
        plan_.pacing,
        plan_.total,
        plan_.warmup,
        plan_.deadline,
        Arc::new(MemProgress::default()),
    );
    let index = Arc::clone(&spec.index);
    let mut alpha = Alpha::new(spec.alpha.clone());
    let mut risk = Risk::new(spec.risk.clone());
    let mut exec = Exec::with_params(
        vec![paper_venue(config, Venue::Binance)],
        maxx_hot::kill::KillSwitch::new(),
        spec.exec.clone(),
        Some(Arc::clone(&spec.index)),
    );
    for v in Venue::ALL {
        exec.set_feed(v, true);
    }
    runtime.block_on(async move {
        let (tick_tx, mut tick_rx) = mpsc::channel::<Tick>(TOKIO_CAPACITY);
        let (intent_tx, mut intent_rx) = mpsc::channel::<OrderIntent>(TOKIO_CAPACITY);
        let (exec_tx, mut exec_rx) = mpsc::channel::<ExecIn>(TOKIO_CAPACITY);
        // Risk's orders go to the same Execution inbox as Alpha's ticks.
        let order_tx = exec_tx.clone();
        let (report_tx, mut report_rx) = mpsc::unbounded_channel::<ExecReport>();
        let feed = tokio::spawn(async move {
            let mut decoder = BinanceDecoder::new();
            let mut batch = Box::new(TickBatch::new());
            loop {
                let tick = match source.next_tagged().0 {
                    Next::Frame(frame, meta) => {
                        batch.clear();
                        match Decode::decode(&mut decoder, frame, meta, &index, &mut batch) {
                            Ok(Decoded::Tick(t)) => Some(t),
                            _ => None,
                        }
                    }
                    Next::Idle => {
                        tokio::task::yield_now().await;
                        None
                    }
                    Next::Malformed => None,
                    Next::Closed => break,
                };
                if let Some(t) = tick
                    && tick_tx.send(t).await.is_err()
                {
                    break;
                }
            }
        });
        let alpha_task = tokio::spawn(async move {
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
        let risk_task = tokio::spawn(async move {
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
        let exec_task = tokio::spawn(async move {
            let mut reports = Vec::with_capacity(16);
            let mut orders = 0u64;
            while let Some(msg) = exec_rx.recv().await {
                match msg {
                    ExecIn::Tick(t) => exec.on_tick(&t),
                    ExecIn::Order(o) => {
                        if exec.process(o, SystemClock.stamp(), &mut |e| {
                            if let ExecEvent::Report(r) = e {
                                reports.push(r);
                            }
                        }) {
                            orders += 1;
                        }
                    }
                }
                exec.poll(mono_ns(), 64, &mut |e| {
                    if let ExecEvent::Report(r) = e {
                        reports.push(r);
                    }
                });
                for r in reports.drain(..) {
                    let _ = report_tx.send(r);
                }
            }
            (exec.swap_histogram(empty()), orders)
        });
        let _ = feed.await;
        let _ = alpha_task.await;
        let _ = risk_task.await;
        exec_task.await.map_err(|e| anyhow!("tokio baseline: {e}"))
    })
}

/// The crossbeam baseline: the same decoder and stage objects as the tokio baseline, each
/// stage on its own unpinned std thread, joined by bounded crossbeam channels with blocking
/// receives (reports back to Risk unbounded, as in the tokio baseline); returns Execution's
/// tick-to-order histogram and the order count.
fn crossbeam_baseline(config: &Config, plan_: &Plan, frames: &FrameSet) -> Result<(BoxedHistogram, u64)> {
    use crossbeam::channel::{bounded, select, unbounded};
    let spec = bench_spec(config, false);
    let mut source = MemSource::new(
        Arc::clone(&frames.frames),
        plan_.pacing,
        plan_.total,
        plan_.warmup,
        plan_.deadline,
        Arc::new(MemProgress::default()),
    );
    let index = Arc::clone(&spec.index);
    let mut alpha = Alpha::new(spec.alpha.clone());
    let mut risk = Risk::new(spec.risk.clone());
    let mut exec = Exec::with_params(
        vec![paper_venue(config, Venue::Binance)],
        maxx_hot::kill::KillSwitch::new(),
        spec.exec.clone(),
        Some(Arc::clone(&spec.index)),
    );
    for v in Venue::ALL {
        exec.set_feed(v, true);
    }
    let (tick_tx, tick_rx) = bounded::<Tick>(TOKIO_CAPACITY);
    let (intent_tx, intent_rx) = bounded::<OrderIntent>(TOKIO_CAPACITY);
    let (exec_tx, exec_rx) = bounded::<ExecIn>(TOKIO_CAPACITY);
    // Risk's orders go to the same Execution inbox as Alpha's ticks.
    let order_tx = exec_tx.clone();
    let (report_tx, report_rx) = unbounded::<ExecReport>();
    std::thread::scope(|s| {
        let spawn = |name: &str| std::thread::Builder::new().name(format!("bench-cb-{name}"));
        let feed = spawn("feed").spawn_scoped(s, move || {
            let mut decoder = BinanceDecoder::new();
            let mut batch = Box::new(TickBatch::new());
            loop {
                let tick = match source.next_tagged().0 {
                    Next::Frame(frame, meta) => {
                        batch.clear();
                        match Decode::decode(&mut decoder, frame, meta, &index, &mut batch) {
                            Ok(Decoded::Tick(t)) => Some(t),
                            _ => None,
                        }
                    }
                    Next::Idle => {
                        std::thread::yield_now();
                        None
                    }
                    Next::Malformed => None,
                    Next::Closed => break,
                };
                if let Some(t) = tick
                    && tick_tx.send(t).is_err()
                {
                    break;
                }
            }
        })?;
        let alpha_thread = spawn("alpha").spawn_scoped(s, move || {
            let mut intents = Vec::with_capacity(8);
            for tick in tick_rx {
                if exec_tx.send(ExecIn::Tick(tick)).is_err() {
                    break;
                }
                alpha.process(AlphaInput::Tick(tick), &mut |out| {
                    if let AlphaOut::Intent(i) = out {
                        intents.push(i);
                    }
                });
                for i in intents.drain(..) {
                    let _ = intent_tx.send(i);
                }
            }
        })?;
        let risk_thread = spawn("risk").spawn_scoped(s, move || {
            risk.on_feed(Venue::Binance, true, wall_ns());
            loop {
                // Reports first (the tokio baseline's `biased` select).
                while let Ok(r) = report_rx.try_recv() {
                    risk.on_report(&r);
                }
                select! {
                    recv(report_rx) -> r => {
                        if let Ok(r) = r {
                            risk.on_report(&r);
                        }
                    }
                    recv(intent_rx) -> i => match i {
                        Ok(i) => {
                            if let Decision::Approved(order) = risk.check(&i)
                                && order_tx.send(ExecIn::Order(order)).is_err()
                            {
                                break;
                            }
                        }
                        Err(_) => break,
                    },
                }
            }
        })?;
        let exec_thread = spawn("exec").spawn_scoped(s, move || {
            let mut reports = Vec::with_capacity(16);
            let mut orders = 0u64;
            for msg in exec_rx {
                match msg {
                    ExecIn::Tick(t) => exec.on_tick(&t),
                    ExecIn::Order(o) => {
                        if exec.process(o, SystemClock.stamp(), &mut |e| {
                            if let ExecEvent::Report(r) = e {
                                reports.push(r);
                            }
                        }) {
                            orders += 1;
                        }
                    }
                }
                exec.poll(mono_ns(), 64, &mut |e| {
                    if let ExecEvent::Report(r) = e {
                        reports.push(r);
                    }
                });
                for r in reports.drain(..) {
                    let _ = report_tx.send(r);
                }
            }
            (exec.swap_histogram(empty()), orders)
        })?;
        let _ = feed.join();
        let _ = alpha_thread.join();
        let _ = risk_thread.join();
        exec_thread
            .join()
            .map_err(|_| anyhow!("crossbeam baseline: the Execution thread panicked"))
    })
}

/// Percentile value in µs.
fn us(h: &BoxedHistogram, p: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_percentile(p) as f64 / 1000.0
}

fn row(out: &mut String, name: &str, h: &BoxedHistogram, floor_p50: Option<f64>) {
    let _ = write!(out, "{name:<30}");
    for (p, _) in PERCENTILES {
        let _ = write!(out, " {:>9.3}", us(h, p));
    }
    let max = if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 };
    let _ = write!(out, " {max:>10.3} {:>10}", h.len());
    if let Some(f) = floor_p50.filter(|f| *f > 0.0) {
        let _ = write!(out, " {:>8.1}x", us(h, 50.0) / f);
    }
    out.push('\n');
}

/// The HdrHistogram plotter format (`Value Percentile TotalCount 1/(1-Percentile)`), values in µs.
pub(crate) fn hgrm(h: &BoxedHistogram) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, sd) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / 1000.0, h.stdev() / 1000.0)
    };
    let max = if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 };
    let _ = writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(out, "#[Max     = {max:12.3}, Total count    = {:12}]", h.len());
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        (2 * 10u64.pow(h.sigfig().into())).next_power_of_two()
    );
    out
}

/// Points `(log10 1/(1−p), latency µs)` of a histogram, for the plot.
fn curve(h: &BoxedHistogram) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    // The last point (p = 1) is drawn at 1 − 1/count: as far as the samples resolve.
    let top = (1.0 - 1.0 / h.len().max(2) as f64).min(0.999_999);
    h.iter_quantiles(5)
        .map(|v| {
            let q = v.quantile_iterated_to().min(top);
            (
                (1.0 / (1.0 - q)).log10(),
                (v.value_iterated_to() as f64 / 1000.0).max(0.001),
            )
        })
        .collect()
}

/// A latency-by-percentile plot of every run: x is 1/(1−p) on a log axis, y is latency (µs) on
/// a log axis. Written by hand: one `<polyline>` per run.
pub(crate) fn svg(runs: &[(&str, &BoxedHistogram)]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 520.0;
    const L: f64 = 80.0;
    const R: f64 = 220.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
    let curves: Vec<Vec<(f64, f64)>> = runs.iter().map(|(_, h)| curve(h)).collect();
    let all = curves.iter().flatten();
    let x_max = all.clone().map(|p| p.0).fold(1.0_f64, f64::max).ceil().max(1.0);
    let y_lo = all.clone().map(|p| p.1.log10()).fold(f64::INFINITY, f64::min);
    let y_hi = all.map(|p| p.1.log10()).fold(f64::NEG_INFINITY, f64::max);
    let (y_lo, y_hi) = if y_lo.is_finite() && y_hi.is_finite() {
        (y_lo.floor(), y_hi.ceil().max(y_lo.floor() + 1.0))
    } else {
        (-1.0, 3.0)
    };
    let px = |x: f64| L + x / x_max * (W - L - R);
    let py = |y: f64| T + (y_hi - y.log10()) / (y_hi - y_lo) * (H - T - B);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">maxx bench: latency by percentile</text>"#,
        (W - R + L) / 2.0
    );
    for d in 0..=(x_max as u32) {
        let x = px(f64::from(d));
        let label = match d {
            0 => "0%".to_string(),
            d => {
                let p = 100.0 - 100.0 / 10f64.powi(d as i32);
                format!("{p}%")
            }
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            H - B,
            H - B + 18.0
        );
    }
    let mut e = y_lo;
    while e <= y_hi {
        let y = T + (y_hi - e) / (y_hi - y_lo) * (H - T - B);
        let v = 10f64.powf(e);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log 1/(1-p))</text>"#,
        (W - R + L) / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (µs, log)</text>"#,
        (H - B + T) / 2.0,
        (H - B + T) / 2.0
    );
    for (i, ((name, _), pts)) in runs.iter().zip(&curves).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let name = name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let points: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#,
            points.join(" ")
        );
        let ly = T + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            W - R + 15.0,
            ly - 4.0,
            W - R + 35.0,
            ly + 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn bench(args: &BenchArgs, config: &Config) -> Result<()> {
    let plan_ = resolve(args)?;
    let available = available_cores();
    if plan_.layout == Layout::Pinned && available.len() < 4 {
        return Err(bad(format!(
            "--layout pinned needs one core per stage (4 stages) but this process may use {} core(s) {available:?}; use --layout fused or auto",
            available.len()
        )));
    }
    let frames = match &args.capture {
        Some(path) => load_capture(path)?,
        None => generate(config, args.seed, plan_.total.min(MAX_DISTINCT_FRAMES))?,
    };
    std::fs::create_dir_all(&plan_.out).with_context(|| format!("creating {}", plan_.out.display()))?;

    let floor_hist = if plan_.baselines.floor {
        let cores = match available.as_slice() {
            [.., a, b] => (*a, *b),
            _ => {
                return Err(bad(format!(
                    "--baseline floor needs two cores (a ping-pong between them) but this process may use {available:?}"
                )));
            }
        };
        eprintln!("floor: cache-line ping-pong between cores {} and {}", cores.0, cores.1);
        Some(floor(cores))
    } else {
        None
    };
    let run = run_engine(config, &plan_, &frames, "maxx")?;
    let tokio = if plan_.baselines.tokio {
        let (h, orders) = tokio_baseline(config, &plan_, &frames, available.len())?;
        Some((h, orders))
    } else {
        None
    };
    let crossbeam = if plan_.baselines.crossbeam {
        let (h, orders) = crossbeam_baseline(config, &plan_, &frames)?;
        Some((h, orders))
    } else {
        None
    };
    // Coordinated-omission correction of tick-to-order (open loop only). The samples are orders,
    // so the expected interval between them is the run's mean interval between orders (at
    // least the frame interval): HdrHistogram's `record_correct` rule, applied after the fact.
    let corrected = match plan_.pacing {
        Pacing::Rate { interval_ns } if !run.exec.is_empty() && run.orders > 0 => {
            let expected = (run.span.as_nanos() as u64 / run.orders).max(interval_ns);
            Some((Box::new(run.exec.clone_correct(expected)), expected))
        }
        _ => None,
    };
    let floor_p50 = floor_hist.as_ref().map(|f| us(f, 50.0));

    let mut out = String::new();
    let pacing = match plan_.pacing {
        Pacing::FlatOut => "flat out".to_string(),
        Pacing::Rate { interval_ns } => format!("open loop at {} frames/s", 1e9 / interval_ns as f64),
    };
    let _ = writeln!(
        out,
        "maxx bench: {} frames from {}, {pacing}, warmup {} frames; layout {}",
        run.frames, frames.origin, plan_.warmup, run.placement
    );
    let _ = writeln!(
        out,
        "{} of the {} this process may use; {}{}",
        run.stages_on_cores,
        available.len(),
        run.memory,
        match (&tokio, &crossbeam) {
            (None, None) => "",
            _ => "; the baselines' threads are unpinned",
        }
    );
    let _ = write!(out, "{:<30}", "latency (us)");
    for (_, name) in PERCENTILES {
        let _ = write!(out, " {name:>9}");
    }
    let _ = write!(out, " {:>10} {:>10}", "max", "count");
    if floor_p50.is_some() {
        let _ = write!(out, " {:>9}", "p50/floor");
    }
    out.push('\n');
    row(&mut out, "tick->alpha intent", &run.alpha, floor_p50);
    row(&mut out, "tick->risk approval", &run.risk, floor_p50);
    row(&mut out, "tick->order", &run.exec, floor_p50);
    if let Some((c, _)) = &corrected {
        row(&mut out, "tick->order (CO-corrected)", c, floor_p50);
    }
    if let Some(f) = &floor_hist {
        row(&mut out, "floor one-way (cache line)", f, floor_p50);
    }
    if let Some((t, _)) = &tokio {
        row(&mut out, "tokio tick->order", t, floor_p50);
    }
    if let Some((c, _)) = &crossbeam {
        row(&mut out, "crossbeam tick->order", c, floor_p50);
    }
    if !run.hops.is_empty() {
        let _ = writeln!(
            out,
            "per hop (each sample the difference of two stamps on the path; decode..ring_risk_exec add up to tick->order, exec comes after it):"
        );
        for (hop, h) in &run.hops {
            row(&mut out, &format!("  {}", hop.name()), h, floor_p50);
        }
        let path: f64 = run
            .hops
            .iter()
            .filter(|(hop, _)| *hop != Hop::Exec)
            .map(|(_, h)| us(h, 50.0))
            .sum();
        let _ = writeln!(
            out,
            "  sum of the six segments' p50s {path:.3} us; tick->order p50 {:.3} us (p50s of different populations: a guide, not an identity)",
            us(&run.exec, 50.0)
        );
    }
    let secs = run.span.as_secs_f64();
    let _ = writeln!(
        out,
        "throughput: {:.0} frames/s decoded, {:.0} orders/s ({} frames, {} ticks, {} bad; {} intents, {} approved, {} refused, {} orders, {} fills in {secs:.3} s)",
        run.frames as f64 / secs,
        run.orders as f64 / secs,
        run.frames,
        run.ticks,
        run.bad_frames,
        run.intents,
        run.approved,
        run.refused,
        run.orders,
        run.fills
    );
    if !run.refusals.is_empty() {
        let _ = writeln!(out, "risk refusals: {}", run.refusals);
    }
    if let Pacing::Rate { .. } = plan_.pacing {
        let _ = writeln!(
            out,
            "open loop: latencies count from each frame's scheduled time; largest hand-over delay behind schedule {:.3} us{}",
            run.max_late_ns as f64 / 1000.0,
            match &corrected {
                Some((_, e)) => format!(
                    "; CO correction with an expected interval of {:.3} us between orders",
                    *e as f64 / 1000.0
                ),
                None => String::new(),
            }
        );
    }
    let maxx_p50 = us(&run.exec, 50.0);
    let maxx_p99 = us(&run.exec, 99.0);
    let mut ratios = Vec::new();
    if let Some(f) = floor_p50.filter(|f| *f > 0.0) {
        ratios.push(format!("maxx tick->order p50 / floor p50 = {:.1}x", maxx_p50 / f));
        let rings: Vec<String> = run
            .hops
            .iter()
            .filter(|(hop, h)| hop.is_ring() && !h.is_empty())
            .map(|(hop, h)| format!("{} {:.1}x", hop.name(), us(h, 50.0) / f))
            .collect();
        if !rings.is_empty() {
            ratios.push(format!("ring hop p50 / floor p50: {}", rings.join(", ")));
        }
    }
    if let Some((t, _)) = &tokio
        && maxx_p50 > 0.0
        && maxx_p99 > 0.0
    {
        ratios.push(format!(
            "tokio p50 / maxx p50 = {:.1}x, tokio p99 / maxx p99 = {:.1}x",
            us(t, 50.0) / maxx_p50,
            us(t, 99.0) / maxx_p99
        ));
    }
    if let Some((c, _)) = &crossbeam
        && maxx_p50 > 0.0
        && maxx_p99 > 0.0
    {
        ratios.push(format!(
            "crossbeam p50 / maxx p50 = {:.1}x, crossbeam p99 / maxx p99 = {:.1}x",
            us(c, 50.0) / maxx_p50,
            us(c, 99.0) / maxx_p99
        ));
    }
    if !ratios.is_empty() {
        let _ = writeln!(out, "ratios: {}", ratios.join("; "));
    }
    if let Some(s) = &run.soak {
        let grew = s.rss_end_kb > s.rss_start_kb;
        let _ = writeln!(
            out,
            "soak: RSS {} kB at start, {} kB at end, {} kB at most, read while the hot threads ran ({}{} kB: {})",
            s.rss_start_kb,
            s.rss_end_kb,
            s.rss_peak_kb,
            if grew { "+" } else { "" },
            s.rss_end_kb as i64 - s.rss_start_kb as i64,
            if grew { "grew" } else { "did not grow" }
        );
        row(&mut out, "soak start tick->order", &s.start, floor_p50);
        row(&mut out, "soak end tick->order", &s.end, floor_p50);
    }

    // Files.
    let mut files: Vec<(String, &BoxedHistogram)> = vec![
        ("maxx_tick_to_alpha.hgrm".into(), &run.alpha),
        ("maxx_tick_to_risk.hgrm".into(), &run.risk),
        ("maxx_tick_to_order.hgrm".into(), &run.exec),
    ];
    for (hop, h) in &run.hops {
        files.push((format!("maxx_hop_{}.hgrm", hop.name()), h));
    }
    let mut plotted: Vec<(&str, &BoxedHistogram)> = vec![("maxx tick->order", &run.exec)];
    if let Some((c, _)) = &corrected {
        files.push(("maxx_tick_to_order_corrected.hgrm".into(), c));
        plotted.push(("maxx tick->order (CO-corrected)", c));
    }
    if let Some(f) = &floor_hist {
        files.push(("floor.hgrm".into(), f));
        plotted.push(("floor one-way", f));
    }
    if let Some((t, _)) = &tokio {
        files.push(("tokio_tick_to_order.hgrm".into(), t));
        plotted.push(("tokio tick->order", t));
    }
    if let Some((c, _)) = &crossbeam {
        files.push(("crossbeam_tick_to_order.hgrm".into(), c));
        plotted.push(("crossbeam tick->order", c));
    }
    let mut written = Vec::new();
    for (name, h) in &files {
        let path = plan_.out.join(name);
        std::fs::write(&path, hgrm(h)).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    let plot = plan_.out.join("latency.svg");
    std::fs::write(&plot, svg(&plotted)).with_context(|| format!("writing {}", plot.display()))?;
    written.push(plot.display().to_string());
    let _ = writeln!(out, "files: {}", written.join(" "));
    print!("{out}");
    if run.exec.is_empty() {
        eprintln!("maxx bench: warning: no order was sent: no tick-to-order figure (too few frames?)");
    }
    Ok(())
}
