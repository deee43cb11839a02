//! Each hot stage's compute cost per tick, with no rings: straight calls on one thread.
//!
//! The stream is the real BTCUSDT capture `shared/data/hftbacktest/spot/btcusdt_20240808.gz`
//! (Binance Spot trades and bookTicker quotes, 2024-08-08) decoded once by the Binance
//! decoder; without `../shared` a synthetic trade stream stands in (the run says which). The
//! stages are built from `config/agent_config.yaml` as the engine builds them (Alpha, Risk,
//! Execution over the paper venue).
//!
//! Setup runs the three stages in lockstep over the stream once (Execution sees the tick, then
//! Alpha; each intent goes to Risk, each approved order to Execution, each report back to Risk)
//! and records every input each stage received, in order. Each case then replays one stage's
//! recorded inputs into a fresh instance of that stage (built outside the timing), so it does
//! exactly the work it did in the chain, and nothing else:
//! - `alpha`: every tick through `Alpha::process`;
//! - `risk`: every intent through `Risk::check` and every report through `Risk::on_report`;
//! - `exec`: every tick through `Exec::on_tick` (the paper venue matches resting orders),
//!   every approved order through `Exec::process`, and a `poll` after each tick;
//! - `chain`: the three together, as recorded (the sum, plus the glue).
//!
//! Throughput is per tick of the stream for every case, so the figures add up; the run prints
//! how many intents, orders and reports the stream produced for per-intent readings.
//!
//! Run with `cargo bench --bench stages`; record the command, toolchain, CPU and tuning state
//! with any figure you quote (benches/RESULTS.md).

use std::hint::black_box;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::{Decoded, FrameMeta, TickBatch};
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::kill::KillSwitch;
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{ExecReport, Order, OrderIntent, Side, Stamp, Tick, TickBody};
use maxx_hot::runtime::engine::EngineSpec;
use maxx_hot::source::Decode;
use maxx_hot::stage::alpha::{Alpha, AlphaInput, AlphaOut};
use maxx_hot::stage::exec::{Exec, ExecEvent, PaperVenue};
use maxx_hot::stage::risk::{Decision, Risk};

/// Paper taker fee, thousandths of a basis point (7.5 bps, as the replay bench).
const TAKER_FEE_BPS_MILLI: i64 = 7_500;
/// Room Execution may fill per poll (a ring's free slots in the engine).
const POLL_ROOM: usize = 64;
/// At most this many ticks of the capture.
const MAX_TICKS: usize = 40_000;

fn spec() -> EngineSpec {
    let cfg = maxx_cold::config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/agent_config.yaml"
    )))
    .unwrap();
    maxx_cold::engine::spec(&cfg)
}

/// The capture's trades and quotes, decoded; `None` without `../shared`.
fn capture_ticks(spec: &EngineSpec) -> Option<Vec<Tick>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/hftbacktest/spot/btcusdt_20240808.gz");
    let file = std::fs::File::open(&path).ok()?;
    let lines = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)).lines();
    let mut decoder = BinanceDecoder::new();
    let mut batch = TickBatch::new();
    let mut ticks = Vec::new();
    for line in lines {
        let line = line.ok()?;
        let Some((recv, frame)) = line.split_once(' ') else {
            continue;
        };
        let Ok(recv_ns) = recv.parse::<u64>() else {
            continue;
        };
        let meta = FrameMeta {
            recv_ns,
            stamp: Stamp(recv_ns),
        };
        batch.clear();
        match Decode::decode(&mut decoder, frame.as_bytes(), meta, &spec.index, &mut batch) {
            Ok(Decoded::Tick(t)) => ticks.push(t),
            Ok(Decoded::Ticks) => ticks.extend_from_slice(batch.as_slice()),
            _ => {}
        }
        if ticks.len() >= MAX_TICKS {
            break;
        }
    }
    Some(ticks)
}

/// A stand-in when the capture is absent: BTCUSDT trades oscillating around 60 000.
fn synthetic_ticks() -> Vec<Tick> {
    (0..20_000u64)
        .map(|i| {
            let cents = 6_000_000 + ((i % 400) as i64 - 200).abs() * 300;
            let recv_ns = 1_723_161_254_000_000_000 + i * 1_000_000;
            Tick {
                instrument: InstrumentId(0),
                venue: Venue::Binance,
                body: TickBody::Trade {
                    price: Price::parse_bytes(format!("{}.{:02}", cents / 100, cents % 100).as_bytes()).unwrap(),
                    qty: Qty::parse_bytes(b"0.01").unwrap(),
                    aggressor: if i % 3 == 0 { Side::Sell } else { Side::Buy },
                },
                seq: i + 1,
                exchange_ns: recv_ns,
                recv_ns,
                stamp: Stamp(recv_ns),
            }
        })
        .collect()
}

/// One input to Risk, in the order it arrived.
#[derive(Clone, Copy)]
enum RiskIn {
    Intent(OrderIntent),
    Report(ExecReport),
}

/// One input to Execution, in the order it arrived.
#[derive(Clone, Copy)]
enum ExecIn {
    Tick(Tick),
    Order(Order, Stamp),
    Poll(u64),
}

/// Every stage's inputs over one lockstep pass of the stream.
struct Recorded {
    ticks: Vec<Tick>,
    risk: Vec<RiskIn>,
    exec: Vec<ExecIn>,
    intents: usize,
    orders: usize,
    reports: usize,
    fills: usize,
}

fn exec_stage(spec: &EngineSpec) -> Exec<PaperVenue> {
    Exec::with_params(
        vec![PaperVenue::new(Venue::Binance, TAKER_FEE_BPS_MILLI)],
        KillSwitch::new(),
        spec.exec.clone(),
        Some(Arc::clone(&spec.index)),
    )
}

/// The three stages, fresh.
fn build(spec: &EngineSpec) -> (Alpha, Risk, Exec<PaperVenue>) {
    (
        Alpha::new(spec.alpha.clone()),
        Risk::new(spec.risk.clone()),
        exec_stage(spec),
    )
}

/// Hands Execution's reports to Risk, recording them when `rec` is given.
fn to_risk(reports: &mut Vec<ExecReport>, risk: &mut Risk, rec: &mut Option<&mut Recorded>) {
    for r in reports.drain(..) {
        if let Some(rec) = rec.as_deref_mut() {
            rec.risk.push(RiskIn::Report(r));
            rec.reports += 1;
            rec.fills += usize::from(matches!(r, ExecReport::Fill(_)));
        }
        risk.on_report(&r);
    }
}

/// Runs the three stages in lockstep over `ticks`; with `rec`, keeps their inputs.
fn chain((alpha, risk, exec): &mut (Alpha, Risk, Exec<PaperVenue>), ticks: &[Tick], mut rec: Option<&mut Recorded>) {
    let mut intents: Vec<OrderIntent> = Vec::with_capacity(4);
    let mut reports: Vec<ExecReport> = Vec::with_capacity(64);
    for t in ticks {
        let now_ns = t.recv_ns;
        exec.on_tick(t);
        exec.poll(now_ns, POLL_ROOM, &mut |e| {
            if let ExecEvent::Report(r) = e {
                reports.push(r);
            }
        });
        if let Some(rec) = rec.as_deref_mut() {
            rec.exec.push(ExecIn::Tick(*t));
            rec.exec.push(ExecIn::Poll(now_ns));
        }
        to_risk(&mut reports, risk, &mut rec);
        alpha.process(AlphaInput::Tick(*t), &mut |o| {
            if let AlphaOut::Intent(i) = o {
                intents.push(i);
            }
        });
        for intent in intents.drain(..) {
            if let Some(rec) = rec.as_deref_mut() {
                rec.risk.push(RiskIn::Intent(intent));
                rec.intents += 1;
            }
            if let Decision::Approved(order) = risk.check(&intent) {
                let now = Stamp(t.stamp.0 + 1_000);
                if let Some(rec) = rec.as_deref_mut() {
                    rec.exec.push(ExecIn::Order(order, now));
                    rec.orders += 1;
                }
                exec.process(order, now, &mut |e| {
                    if let ExecEvent::Report(r) = e {
                        reports.push(r);
                    }
                });
                to_risk(&mut reports, risk, &mut rec);
            }
        }
    }
}

fn record(spec: &EngineSpec, ticks: Vec<Tick>) -> Recorded {
    let mut rec = Recorded {
        ticks: Vec::new(),
        risk: Vec::new(),
        exec: Vec::new(),
        intents: 0,
        orders: 0,
        reports: 0,
        fills: 0,
    };
    chain(&mut build(spec), &ticks, Some(&mut rec));
    rec.ticks = ticks;
    rec
}

fn stages(c: &mut Criterion) {
    let spec = spec();
    let (ticks, source) = match capture_ticks(&spec) {
        Some(t) if !t.is_empty() => (t, "capture btcusdt_20240808.gz"),
        _ => {
            eprintln!("stages: ../shared/data/hftbacktest/spot/btcusdt_20240808.gz not found; synthetic stream");
            (synthetic_ticks(), "synthetic")
        }
    };
    let rec = record(&spec, ticks);
    let trades = rec
        .ticks
        .iter()
        .filter(|t| matches!(t.body, TickBody::Trade { .. }))
        .count();
    eprintln!(
        "stages: {source}: {} ticks ({trades} trades, {} quotes) -> {} intents, {} orders, {} reports ({} fills)",
        rec.ticks.len(),
        rec.ticks.len() - trades,
        rec.intents,
        rec.orders,
        rec.reports,
        rec.fills
    );

    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(rec.ticks.len() as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("alpha", |b| {
        b.iter_batched(
            || Alpha::new(spec.alpha.clone()),
            |mut alpha| {
                for t in &rec.ticks {
                    alpha.process(AlphaInput::Tick(*t), &mut |o| {
                        black_box(o);
                    });
                }
                alpha
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("risk", |b| {
        b.iter_batched(
            || Risk::new(spec.risk.clone()),
            |mut risk| {
                for input in &rec.risk {
                    match input {
                        RiskIn::Intent(i) => {
                            black_box(risk.check(i));
                        }
                        RiskIn::Report(r) => risk.on_report(r),
                    }
                }
                risk
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("exec", |b| {
        b.iter_batched(
            || exec_stage(&spec),
            |mut exec| {
                let mut out = |e: ExecEvent| {
                    black_box(e);
                };
                for input in &rec.exec {
                    match *input {
                        ExecIn::Tick(t) => exec.on_tick(&t),
                        ExecIn::Order(order, now) => {
                            exec.process(order, now, &mut out);
                        }
                        ExecIn::Poll(now_ns) => {
                            exec.poll(now_ns, POLL_ROOM, &mut out);
                        }
                    }
                }
                exec
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("chain", |b| {
        b.iter_batched(
            || build(&spec),
            |mut stages| {
                chain(&mut stages, &rec.ticks, None);
                stages
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
