//! MarketData liveness and recovery, end to end on real parts: the Binance simulator (one shared
//! market, fault switches) over loopback, the real connector, decoder and hot threads, the cold
//! side's feed watch and alerter posting to a local HTTP server, and the capture writer.
//!
//! - a dropped connection and a silent feed are both noticed, reconnected with backoff, alerted
//!   (webhook received) and recovered from; while the feed is stale Risk holds its symbols to
//!   reductions (REDUCING on the risk board, `feed_stale` transitions) and lets them go when it
//!   is live again; garbage frames are counted and survived; the capture replays to the same
//!   counts;
//! - planned make-before-break resubscribes deliver every trade id exactly once.

mod common;

use common::webhook_server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maxx_cold::alerts::{Alerter, FeedWatch, Webhook};
use maxx_cold::config;
use maxx_cold::engine::{feed_target, reconnect, sim_config, spec};
use maxx_cold::replay::{ReplayOptions, replay};
use maxx_cold::taps::{Record, TapDrain};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::ws::WsFeed;
use maxx_hot::ids::Venue;
use maxx_hot::records::{TickBody, TradingState, Transition, TransitionReason};
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{plan, spawn};
use maxx_hot::stage::exec::PaperVenue;
use maxx_hot::topology::{Layout, StageName, WaitKind};

struct Harness {
    drain: TapDrain,
    cold: maxx_hot::wiring::ColdEnds,
    watch: FeedWatch,
    alerter: Alerter,
    trades: BTreeMap<u16, Vec<u64>>,
    /// Every trading-state transition Risk tapped out, in order.
    transitions: Vec<Transition>,
    _rt: tokio::runtime::Runtime,
}

impl Harness {
    /// Drains the taps, runs the feed watch, and keeps every trade id per instrument.
    fn pump(&mut self) {
        let _guard = self._rt.enter();
        let trades = &mut self.trades;
        let transitions = &mut self.transitions;
        self.drain.drain(&mut self.cold, &mut |r| match r {
            Record::Tick(t) if matches!(t.body, TickBody::Trade { .. }) => {
                trades.entry(t.instrument.0).or_default().push(t.seq);
            }
            Record::Transition(t) => transitions.push(t),
            _ => {}
        });
        for alert in self.watch.check() {
            self.alerter.raise(alert);
        }
    }

    fn until(&mut self, what: &str, deadline: Instant, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn shipped() -> maxx_cold::config::Config {
    config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/agent_config.yaml"
    )))
    .unwrap()
}

/// Builds and starts an engine on the shipped config against `sim_addr`.
fn start(
    sim_addr: std::net::SocketAddr,
    stale_after: Duration,
    rotate_every: Option<Duration>,
    capture: bool,
    webhook: Option<Webhook>,
) -> (
    Harness,
    Arc<FeedStats>,
    Arc<maxx_hot::runtime::Flags>,
    maxx_hot::runtime::HotThreads,
) {
    let cfg = shipped();
    let mut spec = spec(&cfg);
    spec.stale_after = Some(stale_after);
    if capture {
        spec.capacities.capture = 4 << 20;
    }
    let (target, subscribe) = feed_target(&cfg, Venue::Binance, &cfg.feeds[&Venue::Binance], Some(sim_addr)).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut rc = reconnect(&cfg);
    rc.initial = Duration::from_millis(50);
    rc.cap = Duration::from_millis(400);
    rc.stale_after = stale_after;
    let mut source = WsFeed::new(target, subscribe, rc, Arc::clone(&stats)).unwrap();
    if let Some(every) = rotate_every {
        source = source.with_rotation(every);
    }
    let feed = FeedInput {
        venue: Venue::Binance,
        source,
        decoder: BinanceDecoder::new(),
        stats: Arc::clone(&stats),
    };
    let Engine {
        tasks,
        cold,
        flags,
        stats: engine_stats,
    } = build(&spec, vec![feed], vec![PaperVenue::new(Venue::Binance, 7_500)]);
    let stages: Vec<StageName> = tasks.iter().map(|(s, _)| *s).collect();
    let placement = plan(
        Layout::Fused,
        &Default::default(),
        &stages,
        &maxx_hot::runtime::available_cores(),
    )
    .unwrap();
    let threads = spawn(&placement.threads, tasks, WaitKind::Park, || {}).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let harness = Harness {
        drain: TapDrain::new(&spec.index),
        cold,
        watch: FeedWatch::new(engine_stats.feeds.clone(), stale_after),
        alerter: Alerter::new(webhook, Duration::from_millis(1)),
        trades: BTreeMap::new(),
        transitions: Vec::new(),
        _rt: rt,
    };
    (harness, stats, flags, threads)
}

fn ticks(s: &FeedStats) -> u64 {
    s.trades.get() + s.quotes.get()
}

/// Whether the risk board shows the Binance feed `live` and every symbol ACTIVE, or the feed
/// stale and every symbol REDUCING.
fn risk_sees(h: &Harness, live: bool) -> bool {
    let view = h.cold.risk_board.read();
    let want = if live {
        TradingState::Active
    } else {
        TradingState::Reducing
    };
    view.version > 0
        && view.system.venues[Venue::Binance.index()].feed_live == live
        && view.instruments.iter().all(|i| i.state == want)
}

/// Per-symbol transitions in `ts` made for a feed change `reason` (to REDUCING for
/// `feed_stale`, to ACTIVE for `feed_live`).
fn feed_transitions(ts: &[Transition], reason: TransitionReason) -> usize {
    let to = if reason == TransitionReason::FeedStale {
        TradingState::Reducing
    } else {
        TradingState::Active
    };
    ts.iter().filter(|t| t.reason == reason && t.to == to).count()
}

fn posted(bodies: &Mutex<Vec<String>>, needle: &str) -> bool {
    bodies.lock().unwrap().iter().any(|b| b.contains(needle))
}

#[test]
fn drops_silence_and_garbage_are_survived_alerted_and_captured() {
    let (port, bodies) = webhook_server();
    let mut sim_cfg = sim_config(&shipped(), Venue::Binance).unwrap().1;
    sim_cfg.events_per_sec = 3_000;
    let sim = maxx_cold::sim::spawn("127.0.0.1:0".parse().unwrap(), sim_cfg).unwrap();
    let hook = Webhook::parse(&format!("http://127.0.0.1:{port}/hooks/feed")).unwrap();
    let (mut h, stats, flags, threads) = start(sim.local_addr(), Duration::from_millis(600), None, true, Some(hook));
    let capture_ring = std::mem::take(&mut h.cold.captures).pop().unwrap().1;
    let dir = std::env::temp_dir().join(format!("maxx-feed-recovery-{}", std::process::id()));
    let recorder = maxx_cold::recorder::spawn(&dir, Venue::Binance, capture_ring).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);

    h.until("first ticks", deadline, |_| ticks(&stats) > 300);
    // 1. The venue drops the connection.
    sim.faults().drop_all();
    h.until("the drop alert", deadline, |_| posted(&bodies, "connection lost"));
    let before = ticks(&stats);
    h.until("recovery after the drop", deadline, |_| {
        stats.connects.get() >= 2 && ticks(&stats) > before + 300 && posted(&bodies, "ticks flowing again")
    });
    h.until("Risk sees the feed live again", deadline, |h| risk_sees(h, true));
    // 2. The venue goes silent: no tick for stale_after restarts the connection.
    let seen = h.transitions.len();
    sim.faults().set_silent(true);
    h.until("the stale alert", deadline, |_| posted(&bodies, "no tick for 600 ms"));
    assert!(stats.stale_restarts.get() >= 1);
    assert_eq!(
        stats.state.get(),
        maxx_hot::runtime::stats::feed_state::STALE,
        "Risk can see the feed is stale"
    );
    // Risk holds every Binance symbol (all of the shipped ones) to reductions, with a
    // transition each that says why.
    h.until("Risk holding the symbols to reductions", deadline, |h| {
        risk_sees(h, false)
    });
    let symbols = h.cold.risk_board.read().instruments.len();
    h.until("a feed_stale transition per symbol", deadline, |h| {
        feed_transitions(&h.transitions[seen..], TransitionReason::FeedStale) == symbols
    });
    let seen = h.transitions.len();
    sim.faults().set_silent(false);
    let before = ticks(&stats);
    h.until("recovery after silence", deadline, |_| ticks(&stats) > before + 300);
    assert_eq!(stats.state.get(), maxx_hot::runtime::stats::feed_state::LIVE);
    h.until("Risk letting the symbols trade again", deadline, |h| {
        risk_sees(h, true) && feed_transitions(&h.transitions[seen..], TransitionReason::FeedLive) == symbols
    });
    // 3. Garbage: three bad texts and one binary frame, counted and skipped.
    let bad_before = stats.bad_total();
    sim.faults().inject_garbage(3);
    let before = ticks(&stats);
    h.until("garbage counted and ticks flowing", deadline, |_| {
        stats.bad_total() >= bad_before + 4 && ticks(&stats) > before + 300
    });
    let body = bodies.lock().unwrap()[0].clone();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["channel"], "#feed");
    assert!(json["text"].as_str().unwrap().starts_with("feed binance:"));

    flags.request_stop();
    h.until("drain", deadline, |_| threads.is_finished());
    threads.join().unwrap();
    h.pump();
    let path = recorder.path().to_path_buf();
    let written = recorder.finish().unwrap();
    sim.shutdown();
    assert_eq!(stats.capture_dropped.get(), 0);
    assert_eq!(written, stats.frames.get(), "every frame received was captured");
    // The capture replays to the same decode counts.
    let opts = ReplayOptions {
        venue: Venue::Binance,
        files: vec![path],
        speed: None,
        emit: None,
        taker_fee_bps_milli: 7_500,
    };
    let summary = replay(&spec(&shipped()), &opts, &mut std::io::sink()).unwrap();
    assert_eq!(summary.frames, stats.frames.get());
    assert_eq!(summary.ticks.trade, stats.trades.get());
    assert_eq!(summary.ticks.quote, stats.quotes.get());
    assert_eq!(summary.bad_frames, stats.bad_total());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn planned_resubscribes_miss_nothing_and_double_nothing() {
    let mut sim_cfg = sim_config(&shipped(), Venue::Binance).unwrap().1;
    sim_cfg.events_per_sec = 4_000;
    let sim = maxx_cold::sim::spawn("127.0.0.1:0".parse().unwrap(), sim_cfg).unwrap();
    let (mut h, stats, flags, threads) = start(
        sim.local_addr(),
        Duration::from_secs(5),
        Some(Duration::from_millis(150)),
        false,
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    h.until("six completed rotations", deadline, |_| {
        stats.rotations.get() >= 6 && stats.connects.get() >= 7
    });
    flags.request_stop();
    h.until("drain", deadline, |_| threads.is_finished());
    threads.join().unwrap();
    h.pump();
    sim.shutdown();
    assert_eq!(
        stats.disconnects.get(),
        1,
        "only the final close: rotations never broke the feed"
    );
    assert_eq!(stats.gaps.get(), 0, "no trade id was missed");
    assert!(stats.duplicates.get() > 0, "the overlaps were seen and deduplicated");
    for (instrument, ids) in &h.trades {
        assert!(
            ids.len() > 50,
            "instrument {instrument}: too few trades to prove anything"
        );
        for pair in ids.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "instrument {instrument}: trade ids must be consecutive, got {pair:?}"
            );
        }
    }
}
