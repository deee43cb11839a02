//! The whole hot path on real threads: every frame decoded reaches Alpha, every approved order
//! reaches Execution and the cold side, every fill reaches Risk and the cold side — at end of
//! input, on a stop request, and with tiny rings that force every back-pressure rule to act.

mod common;

use std::sync::Arc;

use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::ids::Venue;
use maxx_hot::records::ExecReport;
use maxx_hot::runtime::engine::{Engine, EngineSpec, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{AnyTask, plan, run_lockstep, spawn};
use maxx_hot::stage::exec::{ExecEvent, PaperVenue};
use maxx_hot::topology::{Layout, StageName, WaitKind};
use maxx_hot::wiring::{Capacities, ColdEnds, Hop};

use common::{SynthSource, spec};

/// What the cold side saw.
#[derive(Debug, Default)]
struct Seen {
    ticks: u64,
    signals: u64,
    orders: u64,
    fills: u64,
    rejects: u64,
    histograms: u64,
    latency_samples: u64,
    last_order_id: u64,
    /// Samples per hop, in [`Hop::ALL`] order (with hop histograms on).
    hop_samples: [u64; 7],
}

fn drain(cold: &mut ColdEnds, seen: &mut Seen) {
    for (_, t) in &mut cold.ticks {
        while t.pop().is_ok() {
            seen.ticks += 1;
        }
    }
    while cold.signals.pop().is_ok() {
        seen.signals += 1;
    }
    while let Ok(e) = cold.exec.pop() {
        match e {
            ExecEvent::Order(o) => {
                seen.orders += 1;
                assert_eq!(
                    o.id.0,
                    seen.last_order_id + 1,
                    "orders reach the cold side in id order, none missing"
                );
                seen.last_order_id = o.id.0;
            }
            ExecEvent::Report(ExecReport::Fill(_)) => seen.fills += 1,
            ExecEvent::Report(ExecReport::Reject { .. } | ExecReport::Cancelled { .. }) => seen.rejects += 1,
            ExecEvent::Report(
                ExecReport::Ack { .. }
                | ExecReport::Routed { .. }
                | ExecReport::Unknown { .. }
                | ExecReport::CancelRejected { .. },
            ) => {}
        }
    }
    while let Ok(mut h) = cold.hist_in.pop() {
        seen.histograms += 1;
        seen.latency_samples += h.len();
        h.reset();
        cold.hist_back.push(h).unwrap();
    }
    for hop in &mut cold.hops {
        while let Ok(mut h) = hop.link.hist_in.pop() {
            seen.hop_samples[hop.hop as usize] += h.len();
            h.reset();
            hop.link.hist_back.push(h).unwrap();
        }
    }
    while cold.refusals.pop().is_ok() {}
}

fn engine(spec: &EngineSpec, limit: Option<u64>) -> Engine<SynthSource, BinanceDecoder, PaperVenue> {
    let feed = FeedInput {
        venue: Venue::Binance,
        source: SynthSource::new(limit),
        decoder: BinanceDecoder::new(),
        stats: Arc::new(FeedStats::new(Venue::Binance)),
    };
    build(spec, vec![feed], vec![PaperVenue::new(Venue::Binance, 7_500)])
}

fn assert_consistent(e: &Engine<SynthSource, BinanceDecoder, PaperVenue>, seen: &Seen) {
    let feed = &e.stats.feeds[0];
    let decoded = feed.trades.get() + feed.quotes.get();
    assert_eq!(feed.bad_total(), 0);
    assert_eq!(e.stats.alpha.ticks.get(), decoded, "every decoded tick reached Alpha");
    assert_eq!(
        seen.ticks + feed.tap_dropped.get(),
        decoded,
        "ticks tapped or counted as dropped"
    );
    assert_eq!(
        seen.signals + e.stats.alpha.tap_dropped.get(),
        e.stats.alpha.signals.get()
    );
    assert_eq!(
        e.stats.risk.approved.get(),
        e.stats.exec.orders.get(),
        "every approved order reached Execution"
    );
    assert_eq!(
        seen.orders,
        e.stats.exec.orders.get(),
        "every order reached the cold side"
    );
    assert_eq!(seen.fills, e.stats.exec.fills.get(), "every fill reached the cold side");
    assert_eq!(
        seen.fills + seen.rejects,
        seen.orders,
        "every order was filled or rejected"
    );
    assert_eq!(
        seen.latency_samples, seen.orders,
        "one latency sample per order, all handed over"
    );
    assert!(seen.orders >= 4, "the zigzag should trade: {seen:?}");
    if e.cold.hops.is_empty() {
        assert_eq!(seen.hop_samples, [0; 7]);
        return;
    }
    // One sample per record on each segment of the path: every frame decoded (one tick each),
    // every tick through md_alpha, every intent made by Alpha and taken by Risk, every approved
    // order through risk_exec and Execution.
    let hops: Vec<Hop> = e.cold.hops.iter().map(|h| h.hop).collect();
    assert_eq!(hops, Hop::ALL, "one hand-off per hop, in path order");
    let intents = e.stats.alpha.intents.get();
    let expected = [
        decoded,
        e.stats.alpha.ticks.get(),
        intents,
        intents,
        e.stats.risk.approved.get(),
        e.stats.exec.orders.get(),
        e.stats.exec.orders.get(),
    ];
    for (hop, (got, want)) in Hop::ALL.iter().zip(seen.hop_samples.iter().zip(expected)) {
        assert_eq!(*got, want, "samples of hop {}", hop.name());
    }
}

#[test]
fn fused_thread_drains_everything_at_end_of_input() {
    let spec = spec(Capacities::default());
    let mut e = engine(&spec, Some(40_000));
    let stages: Vec<StageName> = e.tasks.iter().map(|(s, _)| *s).collect();
    let placement = plan(Layout::Fused, &Default::default(), &stages, &[0]).unwrap();
    let threads = spawn(
        &placement.threads,
        std::mem::take(&mut e.tasks),
        WaitKind::SpinYield,
        || {},
    )
    .unwrap();
    let mut seen = Seen::default();
    while !threads.is_finished() {
        drain(&mut e.cold, &mut seen);
        std::thread::yield_now();
    }
    threads.join().unwrap();
    drain(&mut e.cold, &mut seen);
    assert_eq!(e.stats.feeds[0].frames.get(), 40_000);
    assert_consistent(&e, &seen);
}

#[test]
fn pinned_threads_drain_everything_after_a_stop_request() {
    let spec = spec(Capacities::default());
    let mut e = engine(&spec, None);
    let stages: Vec<StageName> = e.tasks.iter().map(|(s, _)| *s).collect();
    let cores = maxx_hot::runtime::available_cores();
    let map = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, cores[i % cores.len()]))
        .collect();
    let placement = plan(Layout::Pinned, &map, &stages, &cores).unwrap();
    assert_eq!(placement.threads.len(), 4);
    let threads = spawn(&placement.threads, std::mem::take(&mut e.tasks), WaitKind::Park, || {}).unwrap();
    let mut seen = Seen::default();
    // Run until a good number of orders went through, then stop in the middle of the flow.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.orders < 20 {
        assert!(std::time::Instant::now() < deadline, "no orders flowed: {seen:?}");
        drain(&mut e.cold, &mut seen);
        std::thread::yield_now();
    }
    e.flags.request_stop();
    while !threads.is_finished() {
        drain(&mut e.cold, &mut seen);
        std::thread::yield_now();
    }
    threads.join().unwrap();
    drain(&mut e.cold, &mut seen);
    assert_consistent(&e, &seen);
}

#[test]
fn tiny_rings_apply_back_pressure_and_lose_nothing() {
    let tiny = Capacities {
        md_alpha: 2,
        alpha_exec: 1,
        alpha_risk: 1,
        risk_exec: 1,
        exec_risk: 4,
        tap_ticks: 4,
        tap_signals: 4,
        tap_refusals: 1,
        tap_exec: 4,
        tap_risk_events: 1,
        capture: 0,
        // Stamping every record on the way must not change what back-pressure does.
        hop_histograms: true,
    };
    let spec = spec(tiny);
    let mut e = engine(&spec, Some(20_000));
    let mut tasks: Vec<_> = std::mem::take(&mut e.tasks).into_iter().map(|(_, t)| t).collect();
    assert!(matches!(tasks[0], AnyTask::Feed(_)));
    let mut seen = Seen::default();
    let mut calls = 0u64;
    let mut exec_tap_full = 0u64;
    let cold = &mut e.cold;
    run_lockstep(&mut tasks, || {
        calls += 1;
        // The cold side only looks at the order/fill tap now and then: Execution must wait,
        // not drop.
        if cold.exec.slots() == 4 {
            exec_tap_full += 1;
        }
        if calls.is_multiple_of(7) {
            drain(cold, &mut seen);
        } else {
            for (_, t) in &mut cold.ticks {
                while t.pop().is_ok() {
                    seen.ticks += 1;
                }
            }
        }
    });
    drain(&mut e.cold, &mut seen);
    assert!(
        exec_tap_full > 0,
        "the order/fill tap never filled up: the test proved nothing"
    );
    assert_eq!(e.stats.feeds[0].frames.get(), 20_000);
    assert_consistent(&e, &seen);
}
