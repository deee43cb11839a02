//! Zero heap allocations on the hot threads after warm-up, while real frames flow: the Binance
//! simulator streams over a loopback WebSocket into the real connector, decoder, Alpha, Risk and
//! Execution running on their own threads; a counting global allocator counts every allocation
//! made on a hot thread while armed. While armed, the cold side also pushes a weights command
//! and a sentiment score onto Alpha's command queue, so applying them is counted too.
//!
//! Alpha, Risk and Execution each record latency from the tick's receive stamp into their own
//! histogram and hand it to the cold side; after shutdown every sample has arrived, one per
//! intent, approval and order sent.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maxx_cold::config;
use maxx_cold::engine::{feed_target, reconnect, sim_config, spec};
use maxx_cold::taps::TapDrain;
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::ws::WsFeed;
use maxx_hot::ids::InstrumentId;
use maxx_hot::ids::Venue;
use maxx_hot::records::Factor;
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{available_cores, plan, spawn};
use maxx_hot::stage::alpha::{AlphaInput, FamilyKind};
use maxx_hot::stage::exec::PaperVenue;
use maxx_hot::topology::{Layout as HotLayout, StageName, WaitKind};
use maxx_hot::wiring::{Hop, LatencyStage};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static HOT_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static HOT: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// around it touches only an atomic and a const-initialised thread-local `Cell<bool>`, neither of
// which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    if ARMED.load(Ordering::Relaxed) && HOT.with(Cell::get) {
        HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mark_hot() {
    HOT.with(|h| h.set(true));
}

fn wait_for(what: &str, deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn hot_threads_do_not_allocate_in_steady_state() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/agent_config.yaml");
    let cfg = config::load(std::path::Path::new(path)).expect("shipped config is valid");
    // Trade often so Risk and Execution are busy while we count.
    let mut spec = spec(&cfg);
    spec.alpha.entry = Factor::from_num(0.05);
    spec.alpha.exit = Factor::from_num(0.01);
    spec.alpha.momentum.fast = 2;
    spec.alpha.momentum.slow = 8;
    spec.alpha.momentum.scale_bps = 1;
    spec.histogram_every = Duration::from_millis(5);
    // Full-size orders at such low scores: Kelly would size them near zero (and below the
    // minimum notional), and this test needs orders flowing, not a sizing policy.
    spec.risk.sizing = maxx_hot::stage::risk::SizingMode::Fixed;
    // Every record stamped and every hop recorded and handed over (what `maxx bench` runs):
    // the stamps and their histograms allocate nothing either.
    spec.capacities.hop_histograms = true;

    let (_, mut sim_cfg) = sim_config(&cfg, Venue::Binance).expect("sim.binance configured");
    sim_cfg.events_per_sec = 20_000;
    let sim = maxx_cold::sim::spawn("127.0.0.1:0".parse().unwrap(), sim_cfg).unwrap();
    let feed_cfg = &cfg.feeds[&Venue::Binance];
    let (target, subscribe) = feed_target(&cfg, Venue::Binance, feed_cfg, Some(sim.local_addr())).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let source = WsFeed::new(target, subscribe, reconnect(&cfg), Arc::clone(&stats)).unwrap();
    let feed = FeedInput {
        venue: Venue::Binance,
        source,
        decoder: BinanceDecoder::new(),
        stats,
    };
    let Engine {
        tasks,
        mut cold,
        flags,
        stats,
    } = build(&spec, vec![feed], vec![PaperVenue::new(Venue::Binance, 7_500)]);

    let stages: Vec<StageName> = tasks.iter().map(|(s, _)| *s).collect();
    let cores = available_cores();
    let map = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, cores[i % cores.len()]))
        .collect();
    let placement = plan(HotLayout::Pinned, &map, &stages, &cores).unwrap();
    let threads = spawn(&placement.threads, tasks, WaitKind::SpinYield, mark_hot).unwrap();

    // The cold ends Alpha's commands go through, and the board that confirms them.
    let (alpha_cmd, board) = (Arc::clone(&cold.alpha_cmd), Arc::clone(&cold.board));
    let mut drain = TapDrain::new(&spec.index);
    // Samples per hop, from the hop histograms handed over (and sent back emptied).
    let mut hop_samples = [0u64; 7];
    let mut pump = |drain: &mut TapDrain| {
        drain.drain(&mut cold, &mut |_| {});
        for hop in &mut cold.hops {
            while let Ok(mut h) = hop.link.hist_in.pop() {
                hop_samples[hop.hop as usize] += h.len();
                h.reset();
                hop.link.hist_back.push(h).expect("room for the spare");
            }
        }
    };
    let ticks = || stats.feeds[0].trades.get() + stats.feeds[0].quotes.get();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Warm-up: connected, data flowing, orders filled, every stage's histograms swapped both
    // ways.
    wait_for("warm-up", deadline, || {
        pump(&mut drain);
        ticks() > 5_000
            && stats.exec.orders.get() > 10
            && LatencyStage::ALL.iter().all(|s| drain.stage_latency(*s).len() > 5)
    });
    let (ticks0, orders0, fills0) = (ticks(), stats.exec.orders.get(), drain.fills);
    let (version0, sentiment0) = (board.weights_version(), stats.alpha.sentiment_inputs.get());
    let equal = [Factor::from_num(0.25); FamilyKind::COUNT];
    assert_ne!(board.weights(), equal, "the new weights differ from the running ones");
    ARMED.store(true, Ordering::SeqCst);
    // Commands from the cold side while counting: Alpha applies them between two ticks.
    alpha_cmd.push(AlphaInput::Weights(equal)).expect("room for weights");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    alpha_cmd
        .push(AlphaInput::Sentiment {
            instrument: InstrumentId(0),
            score: Factor::from_num(0.5),
            ts_ns: now_ns,
        })
        .expect("room for a sentiment score");
    wait_for("Alpha applying the weights and the sentiment score", deadline, || {
        pump(&mut drain);
        board.weights_version() > version0 && stats.alpha.sentiment_inputs.get() > sentiment0
    });
    assert_eq!(board.weights(), equal, "the board shows the weights Alpha applied");
    wait_for("steady-state traffic", deadline, || {
        pump(&mut drain);
        ticks() > ticks0 + 30_000 && stats.exec.orders.get() > orders0 + 50
    });
    ARMED.store(false, Ordering::SeqCst);
    let allocations = HOT_ALLOCS.load(Ordering::SeqCst);
    let (ticks1, orders1, fills1) = (ticks(), stats.exec.orders.get(), drain.fills);

    flags.request_stop();
    wait_for("drain", deadline, || {
        pump(&mut drain);
        threads.is_finished()
    });
    threads.join().unwrap();
    // Each stage handed its last histogram over as it closed.
    pump(&mut drain);
    sim.shutdown();
    assert!(fills1 > fills0, "fills flowed while armed");
    assert_eq!(
        allocations,
        0,
        "hot threads allocated {allocations} times while {} ticks and {} orders flowed",
        ticks1 - ticks0,
        orders1 - orders0
    );
    assert_eq!(stats.feeds[0].bad_total(), 0, "the simulator's frames all decode");

    // One latency sample per intent Alpha emitted, per order Risk approved (no manual intents
    // here), per order Execution sent except Risk's trims, which carry no tick stamp. Risk
    // approves a subset of the intents and Execution sends a subset of the approved orders.
    let count = |s: LatencyStage| drain.stage_latency(s).len();
    let (alpha, risk, exec) = (
        count(LatencyStage::Alpha),
        count(LatencyStage::Risk),
        count(LatencyStage::Exec),
    );
    assert_eq!(alpha, stats.alpha.intents.get(), "one tick → intent sample per intent");
    assert_eq!(
        risk,
        stats.risk.approved.get(),
        "one tick → approval sample per approval"
    );
    let (orders, trims) = (stats.exec.orders.get(), stats.risk.risk_orders.get());
    assert!(
        exec <= orders && orders <= exec + trims,
        "tick → order samples {exec}: orders sent {orders}, of which at most {trims} trims"
    );
    assert_eq!(
        drain.latency().len(),
        exec,
        "the exec stage is the tick-to-order histogram"
    );
    assert!(
        alpha >= risk && risk >= exec,
        "alpha {alpha} ≥ risk {risk} ≥ exec {exec}"
    );
    // Every hop was measured: Alpha's work and the ring into Risk once per intent, Risk's work
    // once per approval.
    assert!(
        hop_samples.iter().all(|n| *n > 0),
        "a hop without samples: {hop_samples:?}"
    );
    assert_eq!(hop_samples[Hop::Alpha as usize], alpha);
    assert_eq!(hop_samples[Hop::AlphaRisk as usize], alpha);
    assert_eq!(hop_samples[Hop::Risk as usize], risk);
}
