//! Hot-path micro-benchmarks, each next to a baseline measured in the same run:
//! - `decode`: our Binance decoder vs a plain `serde_json` typed decode of the same real frame;
//! - `decode_venues`: every venue's decoder, per message type, vs a plain `serde_json` typed
//!   decode of the same frame into the same ticks (see `decode_venues` for the frames);
//! - `decode_captures`: streams of real frames read from `../shared` at run time (Binance Spot
//!   trades and bookTicker, Coinbase legacy match and ticker), each decoder vs its serde_json
//!   baseline over the same frames; a venue whose capture is absent is skipped with a note;
//! - `ring`: one rtrb push + pop of a `Tick` on one thread (the floor of a hop) vs a
//!   `VecDeque` push + pop;
//! - `replay`: a whole capture through decode, Alpha, Risk, Execution and the taps in lockstep.
//!
//! The cross-thread ring hop against the cache-line floor is in `benches/rings.rs`, each
//! stage's cost per tick in `benches/stages.rs`, timestamps and histogram records in
//! `benches/clock.rs`.
//!
//! Run with `cargo bench --bench hot_path`; record the command, toolchain, CPU and tuning state
//! with any figure you quote (README, issue notes).

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::Write;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use maxx_cold::replay::{ReplayOptions, replay};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::bybit::parse::{BybitDecoder, trade_seq};
use maxx_hot::feed::coinbase::parse::{CoinbaseDecoder, parse_rfc3339_ns};
use maxx_hot::feed::oanda::parse::{OandaDecoder, parse_time_ns};
use maxx_hot::feed::{Decoded, FrameMeta, TickBatch};
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use maxx_hot::source::Decode;
use serde::Deserialize;

/// The first `@trade` line of `shared/data/hftbacktest/spot/btcusdt_20240808.gz` (a real
/// Binance Spot combined-stream frame, 2024-08-08), verbatim without the receive-time column.
/// Embedded so the benches run without `../shared`; `check_embedded_frames` compares it with
/// the capture when the capture is there.
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

// `decode_venues`: every venue's decoder next to a serde_json typed decode of the same frame.

/// The first `@bookTicker` line of the same capture as [`TRADE`], verbatim without the
/// receive-time column.
const BINANCE_BOOK_TICKER: &[u8] = br#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;

/// The first legacy `match` line of `shared/data/cryptofeed/COINBASE.ws.28.0` (a real Coinbase
/// Exchange feed capture, 2021-04-17), verbatim without the capture's time prefix.
const COINBASE_MATCH: &[u8] = br#"{"type":"match","trade_id":280232,"maker_order_id":"2a0da34e-61f7-4c36-88e5-c9dd15927b16","taker_order_id":"3c82abaa-c01e-4608-be59-6a1e69742891","side":"sell","size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,"time":"2021-04-17T16:43:37.089723Z"}"#;

/// The first legacy `ticker` line of the same capture, verbatim. Like every ticker of 2021 it
/// has no `best_bid_size`/`best_ask_size`.
const COINBASE_TICKER: &[u8] = br#"{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","price":"14.7775","open_24h":"14.6647","volume_24h":"94381.28000000","low_24h":"14.3691","high_24h":"16.55","volume_30d":"2295579.57000000","best_bid":"14.7550","best_ask":"14.8060","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":881613,"last_size":"0.04"}"#;

/// The Advanced Trade docs sample `shared/fixtures/venues/coinbase/market_trades.json`, with
/// its indentation removed as the venue sends it (no live Advanced Trade capture exists).
const COINBASE_MARKET_TRADES: &[u8] = br#"{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000","product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY","time":"2019-08-14T20:42:27.265Z"}]}]}"#;

/// The Advanced Trade docs sample `coinbase/ticker.json`, indentation removed.
const COINBASE_AT_TICKER: &[u8] = br#"{"channel":"ticker","client_id":"","timestamp":"2023-02-09T20:30:37.167359596Z","sequence_num":0,"events":[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"21932.98","volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"21931.98","best_bid_quantity":"8000.21","best_ask":"21933.98","best_ask_quantity":"8038.07770938"}]}]}"#;

/// The Bybit docs sample `bybit/public_trade_linear.json`, indentation removed.
const BYBIT_PUBLIC_TRADE: &[u8] = br#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":1783284617}]}"#;

/// The Bybit docs have no level-1 sample and say level 1 has the level-50 shape, so this is
/// `bybit/orderbook50_snapshot.json` with its topic renamed to `orderbook.1.BTCUSDT` (as the
/// decoder's own tests do), indentation removed.
const BYBIT_ORDERBOOK1: &[u8] = br#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"],["16493.00","0.100"]],"a":[["16611.00","0.029"],["16612.00","0.213"]],"u":18521288,"seq":7961638724},"cts":1672304484976}"#;

/// The OANDA docs price line `oanda/price_eur_usd.json` (line 1 of the docs' stream example),
/// verbatim, including the run of spaces the docs print after `"bids":`.
const OANDA_PRICE: &[u8] = br#"{"asks":[{"liquidity":10000000,"price":"1.11704"},{"liquidity":10000000,"price":"1.11706"}],"bids":                        [{"liquidity":10000000,"price":"1.11690"},{"liquidity":10000000,"price":"1.11688"}],"closeoutAsk":"1.11708","closeoutBid":"1.11686","instrument":"EUR_USD","status":"tradeable","time":"2016-09-20T15:05:47.960449532Z"}"#;

/// Milliseconds to nanoseconds.
const NS_PER_MS: u64 = 1_000_000;

// The serde_json baselines: `#[derive(Deserialize)]` structs with borrowed `&str` fields for
// exactly the fields our decoders read, then the same conversions (exact decimals, the decoders'
// own time parsers, the instrument lookup) so that both sides produce identical `Tick`s.
// `decode_venues` checks that they do before it measures anything.

#[derive(Deserialize)]
#[allow(dead_code)]
struct BinanceBookTickerCombined<'a> {
    stream: &'a str,
    #[serde(borrow)]
    data: BinanceBookTicker<'a>,
}

#[derive(Deserialize)]
struct BinanceBookTicker<'a> {
    u: u64,
    s: &'a str,
    b: &'a str,
    #[serde(rename = "B")]
    bid_qty: &'a str,
    a: &'a str,
    #[serde(rename = "A")]
    ask_qty: &'a str,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CoinbaseLegacyMatch<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    trade_id: u64,
    sequence: u64,
    product_id: &'a str,
    price: &'a str,
    size: &'a str,
    side: &'a str,
    time: &'a str,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CoinbaseLegacyTicker<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence: u64,
    product_id: &'a str,
    best_bid: &'a str,
    #[serde(borrow)]
    best_bid_size: Option<&'a str>,
    best_ask: &'a str,
    #[serde(borrow)]
    best_ask_size: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CoinbaseEnvelope<'a, E> {
    channel: &'a str,
    timestamp: &'a str,
    sequence_num: u64,
    events: Vec<E>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CoinbaseTradeEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    trades: Vec<CoinbaseTrade<'a>>,
}

#[derive(Deserialize)]
struct CoinbaseTrade<'a> {
    trade_id: &'a str,
    product_id: &'a str,
    price: &'a str,
    size: &'a str,
    side: &'a str,
    time: &'a str,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CoinbaseTickerEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    tickers: Vec<CoinbaseTicker<'a>>,
}

#[derive(Deserialize)]
struct CoinbaseTicker<'a> {
    product_id: &'a str,
    best_bid: &'a str,
    best_bid_quantity: &'a str,
    best_ask: &'a str,
    best_ask_quantity: &'a str,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BybitTrades<'a> {
    topic: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ts: u64,
    #[serde(borrow)]
    data: Vec<BybitTrade<'a>>,
}

#[derive(Deserialize)]
struct BybitTrade<'a> {
    #[serde(rename = "T")]
    time: u64,
    s: &'a str,
    #[serde(rename = "S")]
    side: &'a str,
    v: &'a str,
    p: &'a str,
    i: &'a str,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BybitBook<'a> {
    topic: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ts: u64,
    cts: Option<u64>,
    #[serde(borrow)]
    data: BybitBookData<'a>,
}

#[derive(Deserialize)]
struct BybitBookData<'a> {
    s: &'a str,
    #[serde(borrow)]
    b: Vec<[&'a str; 2]>,
    #[serde(borrow)]
    a: Vec<[&'a str; 2]>,
    u: u64,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct OandaPrice<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    time: &'a str,
    instrument: &'a str,
    #[serde(borrow)]
    bids: Vec<OandaLevel<'a>>,
    #[serde(borrow)]
    asks: Vec<OandaLevel<'a>>,
    tradeable: Option<bool>,
    #[serde(borrow)]
    status: Option<&'a str>,
}

#[derive(Deserialize)]
struct OandaLevel<'a> {
    price: &'a str,
    liquidity: i64,
}

/// A venue price: exact, and refused if zero, as every decoder does.
fn positive(text: &str) -> Option<Price> {
    Price::parse_bytes(text.as_bytes()).ok().filter(|p| !p.is_zero())
}

fn qty(text: &str) -> Option<Qty> {
    Qty::parse_bytes(text.as_bytes()).ok()
}

fn tick(instrument: InstrumentId, venue: Venue, body: TickBody, seq: u64, exchange_ns: u64, meta: FrameMeta) -> Tick {
    Tick {
        instrument,
        venue,
        body,
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    }
}

fn serde_binance_trade(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let c: Combined<'_> = serde_json::from_slice(frame).ok()?;
    let t = c.data;
    let instrument = index.by_venue_symbol(Venue::Binance, t.s.as_bytes())?;
    // `m`: the buyer was the maker, so the seller took liquidity.
    let aggressor = if t.m { Side::Sell } else { Side::Buy };
    let body = TickBody::Trade {
        price: positive(t.p)?,
        qty: qty(t.q).filter(|q| !q.is_zero())?,
        aggressor,
    };
    let exchange_ns = t.trade_time.checked_mul(NS_PER_MS)?;
    out.push(tick(instrument, Venue::Binance, body, t.t, exchange_ns, meta))
        .ok()
}

fn serde_binance_book_ticker(
    frame: &[u8],
    meta: FrameMeta,
    index: &InstrumentIndex,
    out: &mut TickBatch,
) -> Option<()> {
    let c: BinanceBookTickerCombined<'_> = serde_json::from_slice(frame).ok()?;
    let q = c.data;
    let instrument = index.by_venue_symbol(Venue::Binance, q.s.as_bytes())?;
    let body = TickBody::Quote {
        bid: positive(q.b)?,
        bid_qty: qty(q.bid_qty)?,
        ask: positive(q.a)?,
        ask_qty: qty(q.ask_qty)?,
    };
    out.push(tick(instrument, Venue::Binance, body, q.u, 0, meta)).ok()
}

/// Coinbase documents `side` as the maker's side; the aggressor is the other one.
fn coinbase_aggressor(maker_side: &str) -> Option<Side> {
    match maker_side {
        "buy" | "BUY" => Some(Side::Sell),
        "sell" | "SELL" => Some(Side::Buy),
        _ => None,
    }
}

fn serde_coinbase_match(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let m: CoinbaseLegacyMatch<'_> = serde_json::from_slice(frame).ok()?;
    let instrument = index.by_venue_symbol(Venue::Coinbase, m.product_id.as_bytes())?;
    let body = TickBody::Trade {
        price: positive(m.price)?,
        qty: qty(m.size).filter(|q| !q.is_zero())?,
        aggressor: coinbase_aggressor(m.side)?,
    };
    let exchange_ns = parse_rfc3339_ns(m.time.as_bytes()).ok()?;
    out.push(tick(instrument, Venue::Coinbase, body, m.trade_id, exchange_ns, meta))
        .ok()
}

fn serde_coinbase_ticker(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let t: CoinbaseLegacyTicker<'_> = serde_json::from_slice(frame).ok()?;
    let instrument = index.by_venue_symbol(Venue::Coinbase, t.product_id.as_bytes())?;
    let body = TickBody::Quote {
        bid: positive(t.best_bid)?,
        bid_qty: t.best_bid_size.map_or(Some(Qty::ZERO), qty)?,
        ask: positive(t.best_ask)?,
        ask_qty: t.best_ask_size.map_or(Some(Qty::ZERO), qty)?,
    };
    let exchange_ns = match t.time {
        Some(time) => parse_rfc3339_ns(time.as_bytes()).ok()?,
        None => 0,
    };
    out.push(tick(instrument, Venue::Coinbase, body, t.sequence, exchange_ns, meta))
        .ok()
}

fn serde_coinbase_market_trades(
    frame: &[u8],
    meta: FrameMeta,
    index: &InstrumentIndex,
    out: &mut TickBatch,
) -> Option<()> {
    let env: CoinbaseEnvelope<'_, CoinbaseTradeEvent<'_>> = serde_json::from_slice(frame).ok()?;
    for event in &env.events {
        for t in &event.trades {
            let instrument = index.by_venue_symbol(Venue::Coinbase, t.product_id.as_bytes())?;
            let body = TickBody::Trade {
                price: positive(t.price)?,
                qty: qty(t.size).filter(|q| !q.is_zero())?,
                aggressor: coinbase_aggressor(t.side)?,
            };
            let seq = t.trade_id.parse().ok()?;
            let exchange_ns = parse_rfc3339_ns(t.time.as_bytes()).ok()?;
            out.push(tick(instrument, Venue::Coinbase, body, seq, exchange_ns, meta))
                .ok()?;
        }
    }
    Some(())
}

fn serde_coinbase_at_ticker(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let env: CoinbaseEnvelope<'_, CoinbaseTickerEvent<'_>> = serde_json::from_slice(frame).ok()?;
    // A ticker has no time or id of its own: the envelope's stand in.
    let exchange_ns = parse_rfc3339_ns(env.timestamp.as_bytes()).ok()?;
    for event in &env.events {
        for t in &event.tickers {
            let instrument = index.by_venue_symbol(Venue::Coinbase, t.product_id.as_bytes())?;
            let body = TickBody::Quote {
                bid: positive(t.best_bid)?,
                bid_qty: qty(t.best_bid_quantity)?,
                ask: positive(t.best_ask)?,
                ask_qty: qty(t.best_ask_quantity)?,
            };
            out.push(tick(
                instrument,
                Venue::Coinbase,
                body,
                env.sequence_num,
                exchange_ns,
                meta,
            ))
            .ok()?;
        }
    }
    Some(())
}

fn serde_bybit_trades(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let msg: BybitTrades<'_> = serde_json::from_slice(frame).ok()?;
    for t in &msg.data {
        let instrument = index.by_venue_symbol(Venue::Bybit, t.s.as_bytes())?;
        // Bybit sends the taker's side.
        let aggressor = match t.side {
            "Buy" => Side::Buy,
            "Sell" => Side::Sell,
            _ => return None,
        };
        let body = TickBody::Trade {
            price: positive(t.p)?,
            qty: qty(t.v).filter(|q| !q.is_zero())?,
            aggressor,
        };
        let exchange_ns = t.time.checked_mul(NS_PER_MS)?;
        out.push(tick(
            instrument,
            Venue::Bybit,
            body,
            trade_seq(t.i.as_bytes()),
            exchange_ns,
            meta,
        ))
        .ok()?;
    }
    Some(())
}

/// The best level of one side of a Bybit book push: the first entry with a size.
fn bybit_best(levels: &[[&str; 2]]) -> Option<(Price, Qty)> {
    for [price, size] in levels {
        let size = qty(size)?;
        if !size.is_zero() {
            return Some((positive(price)?, size));
        }
    }
    None
}

fn serde_bybit_orderbook1(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let msg: BybitBook<'_> = serde_json::from_slice(frame).ok()?;
    let instrument = index.by_venue_symbol(Venue::Bybit, msg.data.s.as_bytes())?;
    let (bid, bid_qty) = bybit_best(&msg.data.b)?;
    let (ask, ask_qty) = bybit_best(&msg.data.a)?;
    let body = TickBody::Quote {
        bid,
        bid_qty,
        ask,
        ask_qty,
    };
    let exchange_ns = msg.cts.unwrap_or(msg.ts).checked_mul(NS_PER_MS)?;
    out.push(tick(instrument, Venue::Bybit, body, msg.data.u, exchange_ns, meta))
        .ok()
}

fn serde_oanda_price(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex, out: &mut TickBatch) -> Option<()> {
    let p: OandaPrice<'_> = serde_json::from_slice(frame).ok()?;
    if !p.tradeable.unwrap_or(p.status == Some("tradeable")) {
        return None;
    }
    let instrument = index.by_venue_symbol(Venue::Oanda, p.instrument.as_bytes())?;
    let (best_bid, best_ask) = (p.bids.first()?, p.asks.first()?);
    let body = TickBody::Quote {
        bid: positive(best_bid.price)?,
        bid_qty: Qty::from_units(best_bid.liquidity)?,
        ask: positive(best_ask.price)?,
        ask_qty: Qty::from_units(best_ask.liquidity)?,
    };
    let exchange_ns = parse_time_ns(p.time.as_bytes()).ok()?;
    // OANDA sends no sequence; the decoder numbers the quotes of an instrument from 1.
    out.push(tick(instrument, Venue::Oanda, body, 1, exchange_ns, meta))
        .ok()
}

/// The instruments of the frames above, as an engine trading them would list them.
fn venues_index() -> InstrumentIndex {
    let entry = |symbol: &str, venue: Venue, name: &str| {
        let mut vs = [None; Venue::COUNT];
        vs[venue.index()] = Some(VenueSymbol::new(name).unwrap());
        (Symbol::new(symbol).unwrap(), vs)
    };
    let mut btcusdt = entry("BTCUSDT", Venue::Binance, "BTCUSDT");
    btcusdt.1[Venue::Bybit.index()] = Some(VenueSymbol::new("BTCUSDT").unwrap());
    InstrumentIndex::new([
        btcusdt,
        entry("SKLBTC", Venue::Coinbase, "SKL-BTC"),
        entry("BANDGBP", Venue::Coinbase, "BAND-GBP"),
        entry("ETHUSD", Venue::Coinbase, "ETH-USD"),
        entry("BTCUSD", Venue::Coinbase, "BTC-USD"),
        entry("EURUSD", Venue::Oanda, "EUR_USD"),
    ])
    .unwrap()
}

/// Decodes `frame` once and returns its ticks, whichever way the decoder hands them back.
fn decode_once<D: Decode>(decoder: &mut D, frame: &[u8], meta: FrameMeta, index: &InstrumentIndex) -> TickBatch {
    let mut out = TickBatch::new();
    match decoder.decode(frame, meta, index, &mut out) {
        Ok(Decoded::Tick(tick)) => out.push(tick).unwrap(),
        Ok(Decoded::Ticks) => {}
        other => panic!("frame did not decode to ticks: {other:?}"),
    }
    out
}

/// Measures one message: our decoder, then the serde_json baseline, after checking that both
/// produce the same ticks (a baseline that did less would flatter neither side honestly).
fn bench_pair<D, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    index: &InstrumentIndex,
    name: &str,
    frame: &'static [u8],
    mut decoder: D,
    baseline: B,
) where
    D: Decode,
    B: Fn(&[u8], FrameMeta, &InstrumentIndex, &mut TickBatch) -> Option<()>,
{
    let meta = FrameMeta {
        recv_ns: 1_723_161_254_087_896_568,
        stamp: Stamp(1),
    };
    let ours = decode_once(&mut decoder, frame, meta, index);
    let mut out = TickBatch::new();
    baseline(frame, meta, index, &mut out).unwrap_or_else(|| panic!("{name}: the serde_json baseline failed"));
    assert!(!ours.is_empty(), "{name}: no ticks");
    assert_eq!(
        ours.as_slice(),
        out.as_slice(),
        "{name}: the decoder and the baseline disagree"
    );

    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function(format!("{name}/maxx"), |b| {
        b.iter(|| {
            out.clear();
            decoder.decode(black_box(frame), meta, index, &mut out)
        })
    });
    g.bench_function(format!("{name}/serde_json_typed"), |b| {
        b.iter(|| {
            out.clear();
            baseline(black_box(frame), meta, index, &mut out)
        })
    });
}

/// When `../shared` is present, checks that the embedded frames are what their doc comments
/// say: the real ones verbatim lines of their captures, the docs samples the same JSON as their
/// fixtures. Without `../shared` the benches still run, on the embedded copies.
fn check_embedded_frames() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if !shared.is_dir() {
        eprintln!("decode_venues: ../shared not found, embedded frames not compared with their sources");
        return;
    }
    let first_frame = |lines: &mut dyn Iterator<Item = String>, separator: &str, needle: &str| {
        lines
            .filter_map(|line| line.split_once(separator).map(|(_, frame)| frame.to_owned()))
            .find(|frame| frame.contains(needle))
            .unwrap_or_else(|| panic!("no frame with {needle}"))
    };
    let binance = shared.join("data/hftbacktest/spot/btcusdt_20240808.gz");
    let open_binance = || {
        let file = std::fs::File::open(&binance).unwrap();
        std::io::BufRead::lines(std::io::BufReader::new(flate2::read::GzDecoder::new(file))).map(Result::unwrap)
    };
    assert_eq!(
        first_frame(&mut open_binance(), " ", r#""stream":"btcusdt@trade""#).as_bytes(),
        TRADE
    );
    assert_eq!(
        first_frame(&mut open_binance(), " ", r#""stream":"btcusdt@bookTicker""#).as_bytes(),
        BINANCE_BOOK_TICKER
    );
    let coinbase = std::fs::read_to_string(shared.join("data/cryptofeed/COINBASE.ws.28.0")).unwrap();
    let mut lines = coinbase.lines().map(str::to_owned);
    assert_eq!(
        first_frame(&mut lines, ": ", r#""type":"match""#).as_bytes(),
        COINBASE_MATCH
    );
    let mut lines = coinbase.lines().map(str::to_owned);
    assert_eq!(
        first_frame(&mut lines, ": ", r#""type":"ticker""#).as_bytes(),
        COINBASE_TICKER
    );

    let fixtures = shared.join("fixtures/venues");
    for (embedded, file) in [
        (COINBASE_MARKET_TRADES, "coinbase/market_trades.json"),
        (COINBASE_AT_TICKER, "coinbase/ticker.json"),
        (BYBIT_PUBLIC_TRADE, "bybit/public_trade_linear.json"),
        (BYBIT_ORDERBOOK1, "bybit/orderbook50_snapshot.json"),
        (OANDA_PRICE, "oanda/price_eur_usd.json"),
    ] {
        let text = std::fs::read_to_string(fixtures.join(file)).unwrap();
        let text = text.replace("orderbook.50.", "orderbook.1.");
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ours: serde_json::Value = serde_json::from_slice(embedded).unwrap();
        assert_eq!(ours, fixture, "embedded copy of {file}");
    }
    assert_eq!(
        std::fs::read(fixtures.join("oanda/price_eur_usd.json"))
            .unwrap()
            .trim_ascii_end(),
        OANDA_PRICE,
        "the OANDA line is verbatim"
    );
}

/// Every venue's decoder per message type, each next to its serde_json baseline on the same
/// frame: real captured frames where the repo has them (Binance trade and bookTicker, Coinbase
/// legacy match and ticker), the venues' docs samples otherwise.
fn decode_venues(c: &mut Criterion) {
    check_embedded_frames();
    let index = venues_index();
    let mut g = c.benchmark_group("decode_venues");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    let i = &index;
    bench_pair(
        &mut g,
        i,
        "binance_trade_real",
        TRADE,
        BinanceDecoder::new(),
        serde_binance_trade,
    );
    bench_pair(
        &mut g,
        i,
        "binance_book_ticker_real",
        BINANCE_BOOK_TICKER,
        BinanceDecoder::new(),
        serde_binance_book_ticker,
    );
    bench_pair(
        &mut g,
        i,
        "coinbase_match_real",
        COINBASE_MATCH,
        CoinbaseDecoder::new(),
        serde_coinbase_match,
    );
    bench_pair(
        &mut g,
        i,
        "coinbase_ticker_real",
        COINBASE_TICKER,
        CoinbaseDecoder::new(),
        serde_coinbase_ticker,
    );
    bench_pair(
        &mut g,
        i,
        "coinbase_market_trades_docs",
        COINBASE_MARKET_TRADES,
        CoinbaseDecoder::new(),
        serde_coinbase_market_trades,
    );
    bench_pair(
        &mut g,
        i,
        "coinbase_at_ticker_docs",
        COINBASE_AT_TICKER,
        CoinbaseDecoder::new(),
        serde_coinbase_at_ticker,
    );
    bench_pair(
        &mut g,
        i,
        "bybit_public_trade_docs",
        BYBIT_PUBLIC_TRADE,
        BybitDecoder::new(index.len()),
        serde_bybit_trades,
    );
    bench_pair(
        &mut g,
        i,
        "bybit_orderbook1_docs",
        BYBIT_ORDERBOOK1,
        BybitDecoder::new(index.len()),
        serde_bybit_orderbook1,
    );
    bench_pair(
        &mut g,
        i,
        "oanda_price_docs",
        OANDA_PRICE,
        OandaDecoder::new(),
        serde_oanda_price,
    );
    g.finish();
}

// `decode_captures`: streams of real frames read from `../shared` at run time (never copied into
// the repo), each decoder next to its serde_json baseline over the same frames.

/// Frames per capture stream at most.
const CAPTURE_FRAMES: usize = 2_000;

/// A serde_json baseline for one frame.
type Baseline = fn(&[u8], FrameMeta, &InstrumentIndex, &mut TickBatch) -> Option<()>;

/// Frames of a capture, each with the baseline for its message type.
type Frames = Vec<(Vec<u8>, Baseline)>;

/// The Binance capture's first trade and bookTicker frames with their baselines, chosen outside
/// the timing (the baseline is handed its frame type; the decoder finds it itself).
fn binance_capture(shared: &std::path::Path) -> Option<Frames> {
    let file = std::fs::File::open(shared.join("data/hftbacktest/spot/btcusdt_20240808.gz")).ok()?;
    let lines = std::io::BufRead::lines(std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file)));
    let mut frames = Vec::new();
    for line in lines {
        let line = line.ok()?;
        let Some((_, frame)) = line.split_once(' ') else {
            continue;
        };
        let baseline: Baseline = if frame.contains(r#""stream":"btcusdt@trade""#) {
            serde_binance_trade
        } else if frame.contains(r#""stream":"btcusdt@bookTicker""#) {
            serde_binance_book_ticker
        } else {
            continue;
        };
        frames.push((frame.as_bytes().to_vec(), baseline));
        if frames.len() == CAPTURE_FRAMES {
            break;
        }
    }
    Some(frames)
}

/// The Coinbase capture's legacy `match` and `ticker` frames, and an index listing every product
/// they name.
fn coinbase_capture(shared: &std::path::Path) -> Option<(Frames, InstrumentIndex)> {
    let text = std::fs::read_to_string(shared.join("data/cryptofeed/COINBASE.ws.28.0")).ok()?;
    let mut frames = Vec::new();
    let mut products: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((_, frame)) = line.split_once(": ") else {
            continue;
        };
        let baseline: Baseline = if frame.starts_with(r#"{"type":"match""#) {
            serde_coinbase_match
        } else if frame.starts_with(r#"{"type":"ticker""#) {
            serde_coinbase_ticker
        } else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(frame).ok()?;
        let product = v["product_id"].as_str()?.to_owned();
        if !products.contains(&product) {
            products.push(product);
        }
        frames.push((frame.as_bytes().to_vec(), baseline));
        if frames.len() == CAPTURE_FRAMES {
            break;
        }
    }
    let index = InstrumentIndex::new(products.iter().map(|p| {
        let mut vs = [None; Venue::COUNT];
        vs[Venue::Coinbase.index()] = Some(VenueSymbol::new(p).unwrap());
        (Symbol::new(p).unwrap(), vs)
    }))
    .unwrap();
    Some((frames, index))
}

/// Measures a stream: every frame through the decoder, then every frame through its baseline,
/// after checking frame by frame that both produce the same ticks. Frames the decoder does not
/// turn into ticks (e.g. a zero-size trade) are left out of both sides, and counted.
fn bench_stream<D: Decode>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    index: &InstrumentIndex,
    name: &str,
    frames: Frames,
    mut decoder: D,
) {
    let meta = FrameMeta {
        recv_ns: 1_723_161_254_087_896_568,
        stamp: Stamp(1),
    };
    let total = frames.len();
    let mut out = TickBatch::new();
    let frames: Vec<_> = frames
        .into_iter()
        .filter(|(frame, baseline)| {
            let mut ours = TickBatch::new();
            match decoder.decode(frame, meta, index, &mut ours) {
                Ok(Decoded::Tick(t)) => ours.push(t).unwrap(),
                Ok(Decoded::Ticks) if !ours.is_empty() => {}
                _ => return false,
            }
            out.clear();
            baseline(frame, meta, index, &mut out)
                .unwrap_or_else(|| panic!("{name}: the serde_json baseline failed on a frame"));
            assert_eq!(
                ours.as_slice(),
                out.as_slice(),
                "{name}: the decoder and the baseline disagree"
            );
            true
        })
        .collect();
    eprintln!(
        "decode_captures/{name}: {} frames measured, {} left out (no ticks)",
        frames.len(),
        total - frames.len()
    );
    let bytes: usize = frames.iter().map(|(f, _)| f.len()).sum();
    g.throughput(Throughput::Elements(frames.len() as u64));
    eprintln!("decode_captures/{name}: {bytes} bytes in all");
    g.bench_function(format!("{name}/maxx"), |b| {
        b.iter(|| {
            for (frame, _) in &frames {
                out.clear();
                let _ = black_box(decoder.decode(black_box(frame), meta, index, &mut out));
            }
        })
    });
    g.bench_function(format!("{name}/serde_json_typed"), |b| {
        b.iter(|| {
            for (frame, baseline) in &frames {
                out.clear();
                black_box(baseline(black_box(frame), meta, index, &mut out));
            }
        })
    });
}

/// Real capture streams per venue, where `../shared` has one the decoders read: Binance Spot
/// (trades and bookTicker) and Coinbase Exchange legacy (match and ticker). The Bybit captures
/// there are the 2021 v1 API (`trade.*`, `orderBookL2`), which the v5 decoder does not read, and
/// there is no OANDA pricing-stream capture (LEAN's are CSV quotes): those venues are measured
/// on their docs samples in `decode_venues` only.
fn decode_captures(c: &mut Criterion) {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let mut g = c.benchmark_group("decode_captures");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(30);
    match binance_capture(&shared) {
        Some(frames) => bench_stream(
            &mut g,
            &index(),
            "binance_btcusdt_trade_book_ticker",
            frames,
            BinanceDecoder::new(),
        ),
        None => {
            eprintln!("decode_captures: skipped binance (../shared/data/hftbacktest/spot/btcusdt_20240808.gz absent)")
        }
    }
    match coinbase_capture(&shared) {
        Some((frames, index)) => bench_stream(
            &mut g,
            &index,
            "coinbase_legacy_match_ticker",
            frames,
            CoinbaseDecoder::new(),
        ),
        None => eprintln!("decode_captures: skipped coinbase (../shared/data/cryptofeed/COINBASE.ws.28.0 absent)"),
    }
    eprintln!("decode_captures: bybit and oanda have no capture the decoders read; see decode_venues (docs samples)");
    g.finish();
}

criterion_group!(benches, decode, decode_venues, decode_captures, ring, replay_capture);
criterion_main!(benches);
