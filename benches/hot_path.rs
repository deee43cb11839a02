//! Hot-path micro-benchmarks, each next to a baseline measured in the same run:
//! - `decode`: our Binance decoder vs a plain `serde_json` typed decode of the same real frame;
//! - `ring`: one rtrb push + pop of a `Tick` on one thread (the floor of a hop) vs a
//!   `VecDeque` push + pop;
//! - `replay`: a whole capture through decode, Alpha, Risk, Execution and the taps in lockstep.
//!
//! Run with `cargo bench --bench hot_path`; record the command, toolchain, CPU and tuning state
//! with any figure you quote (README, issue notes).

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use maxx_cold::replay::{ReplayOptions, replay};
use maxx_hot::feed::FrameMeta;
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use serde::Deserialize;

const TRADE: &[u8] = br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Combined<'a> {
    stream: &'a str,
    #[serde(borrow)]
    data: Trade<'a>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Trade<'a> {
    e: &'a str,
    #[serde(rename = "E")]
    event_time: u64,
    s: &'a str,
    t: u64,
    p: &'a str,
    q: &'a str,
    #[serde(rename = "T")]
    trade_time: u64,
    m: bool,
}

fn index() -> InstrumentIndex {
    let mut vs = [None; Venue::COUNT];
    vs[Venue::Binance.index()] = Some(VenueSymbol::new("BTCUSDT").unwrap());
    InstrumentIndex::new([(Symbol::new("BTCUSDT").unwrap(), vs)]).unwrap()
}

fn decode(c: &mut Criterion) {
    let index = index();
    let mut decoder = BinanceDecoder::new();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("maxx_binance_trade", |b| {
        b.iter(|| decoder.decode(black_box(TRADE), FrameMeta::default(), &index).unwrap())
    });
    g.bench_function("serde_json_typed_trade_baseline", |b| {
        b.iter(|| {
            let c: Combined<'_> = serde_json::from_slice(black_box(TRADE)).unwrap();
            // Include the decimal conversion so both sides produce exact values.
            (
                Price::parse_bytes(c.data.p.as_bytes()).unwrap(),
                Qty::parse_bytes(c.data.q.as_bytes()).unwrap(),
            )
        })
    });
    g.finish();
}

fn ring(c: &mut Criterion) {
    let tick = Tick {
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: Price::from_units(1).unwrap(),
            qty: Qty::from_units(1).unwrap(),
            aggressor: Side::Buy,
        },
        seq: 1,
        exchange_ns: 1,
        recv_ns: 1,
        stamp: Stamp(1),
    };
    let mut g = c.benchmark_group("ring");
    let (mut tx, mut rx) = rtrb::RingBuffer::new(1024);
    g.bench_function("rtrb_push_pop_tick", |b| {
        b.iter(|| {
            tx.push(black_box(tick)).unwrap();
            rx.pop().unwrap()
        })
    });
    let mut q = VecDeque::with_capacity(1024);
    g.bench_function("vecdeque_push_pop_tick_baseline", |b| {
        b.iter(|| {
            q.push_back(black_box(tick));
            q.pop_front().unwrap()
        })
    });
    g.finish();
}

fn replay_capture(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("maxx-bench-{}.capture", std::process::id()));
    let mut text = Vec::new();
    for i in 0..20_000u64 {
        let cents = 6_000_000 + ((i % 400) as i64 - 200).abs() * 300;
        let frame = format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{},"p":"{}.{:02}","q":"0.01","T":1,"m":{}}}}}"#,
            i + 1,
            cents / 100,
            cents % 100,
            i % 3 == 0
        );
        writeln!(text, "{} {frame}", 1_723_161_254_000_000_000 + i).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    let cfg = maxx_cold::config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/agent_config.yaml"
    )))
    .unwrap();
    let spec = maxx_cold::engine::spec(&cfg);
    let opts = ReplayOptions {
        venue: Venue::Binance,
        files: vec![path.clone()],
        speed: None,
        emit: None,
        taker_fee_bps_milli: 7_500,
    };
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(20_000));
    g.sample_size(10);
    g.bench_function("lockstep_20k_trades", |b| {
        b.iter(|| replay(&spec, &opts, &mut std::io::sink()).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_file(path);
}

criterion_group!(benches, decode, ring, replay_capture);
criterion_main!(benches);
