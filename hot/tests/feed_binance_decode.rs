//! The Binance decoder against the docs fixtures, the 2024-08-08 real captures, generated
//! frames (proptest) and a counting allocator, and its strict fast path against its general
//! simd-json path.
//!
//! The fast path (`feed::binance::fast`) may only ever return a tick the general path
//! (`BinanceDecoder::decode_full`) returns for the same frame, and the public `decode` must
//! equal `decode_full` on every input. Every frame these tests decode goes through that check
//! (see `agree`), and the "Fast path" section aims generated, edited, reshaped and hostile
//! frames right at the fast path's grammar.
//!
//! The fixtures and captures live outside the workspace in `shared/`; when that directory is
//! absent those tests print a note and return, while the same assertions on the fixture
//! texts copied into this file always run.
//! The counting `#[global_allocator]` counts per thread, so tests running in parallel do not
//! disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use maxx_hot::feed::binance::fast;
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::{Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, SkipKind};
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{ONE, Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

// ---------------------------------------------------------------------------------------------
// Counting allocator.

/// Forwards to the system allocator, counting allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    /// Allocations (including reallocations) made by this thread so far. Const-initialised and
    /// without a destructor, so touching it from inside the allocator never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` fails only while the thread is being torn down; those are not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s guarantees
// are ours; the only extra work is a thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Shared helpers.

fn index_of(names: &[&str]) -> InstrumentIndex {
    InstrumentIndex::new(names.iter().map(|name| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Binance.index()] = Some(VenueSymbol::new(name).unwrap());
        (Symbol::new(name).unwrap(), venues)
    }))
    .unwrap()
}

/// The engine's instruments: BTCUSDT is id 0, ETHUSDT id 1.
fn index() -> InstrumentIndex {
    index_of(&["BTCUSDT", "ETHUSDT"])
}

/// Also lists the symbols the docs examples use.
fn fixture_index() -> InstrumentIndex {
    index_of(&["BTCUSDT", "ETHUSDT", "BNBBTC", "BNBUSDT"])
}

const META: FrameMeta = FrameMeta {
    recv_ns: 11,
    stamp: Stamp(13),
};

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

fn qty(s: &str) -> Qty {
    s.parse().unwrap()
}

fn err(reason: DecodeReason, field: &'static str) -> Result<Decoded, DecodeError> {
    Err(DecodeError { reason, field })
}

/// Decodes `frame` through the public entry point and returns the result and whether the fast
/// path took the frame, after checking that the three ways agree: the public `decode` equals the
/// general path's `decode_full`, and a tick from the fast path is exactly what the general path
/// returns.
///
/// Both calls use the one `decoder`, so its reuse between frames is exercised as well.
fn agree(
    decoder: &mut BinanceDecoder,
    index: &InstrumentIndex,
    frame: &[u8],
    meta: FrameMeta,
) -> (Result<Decoded, DecodeError>, bool) {
    let full = decoder.decode_full(frame, meta, index);
    let public = decoder.decode(frame, meta, index);
    let fast = fast::try_decode(frame, meta, index);
    let shown = || String::from_utf8_lossy(frame).into_owned();
    assert_eq!(public, full, "decode and decode_full disagree on {:?}", shown());
    if let Some(tick) = fast {
        assert_eq!(
            full,
            Ok(Decoded::Tick(tick)),
            "the fast path took {:?} but the general path disagrees",
            shown()
        );
    }
    (public, fast.is_some())
}

/// `shared/` next to the workspace, or `None` with a note when it is not there.
fn shared_dir(what: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("note: {} is absent, skipping the {what} checks", dir.display());
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Docs fixtures.

/// `binance/trade.json`, verbatim.
const TRADE_JSON: &str = r#"{
    "e": "trade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "t": 12345,
    "p": "0.001",
    "q": "100",
    "T": 1672515782136,
    "m": true,
    "M": true
}
"#;

/// `binance/book_ticker.json`, verbatim.
const BOOK_TICKER_JSON: &str = r#"{
    "u": 400900217,
    "s": "BNBUSDT",
    "b": "25.35190000",
    "B": "31.21000000",
    "a": "25.36520000",
    "A": "40.66000000"
}
"#;

/// `binance/depth_update.json`, verbatim.
const DEPTH_UPDATE_JSON: &str = r#"{
    "e": "depthUpdate",
    "E": 1672515782136,
    "s": "BNBBTC",
    "U": 157,
    "u": 160,
    "b": [
        [
            "0.0024",
            "10"
        ]
    ],
    "a": [
        [
            "0.0026",
            "100"
        ]
    ]
}
"#;

/// `binance/agg_trade.json`, verbatim.
const AGG_TRADE_JSON: &str = r#"{
    "e": "aggTrade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "a": 12345,
    "p": "0.001",
    "q": "100",
    "f": 100,
    "l": 105,
    "T": 1672515782136,
    "m": true,
    "M": true
}
"#;

/// `binance/server_shutdown_raw.json`, verbatim.
const SERVER_SHUTDOWN_RAW_JSON: &str = r#"{
  "e": "serverShutdown",
  "E": 1770123456789
}
"#;

/// `binance/server_shutdown_combined.json`, verbatim.
const SERVER_SHUTDOWN_COMBINED_JSON: &str = r#"{
  "stream": "!serverShutdown",
  "data": {
    "e": "serverShutdown",
    "E": 1770123456789
  }
}
"#;

/// `binance/subscribe_response.json`, verbatim.
const SUBSCRIBE_RESPONSE_JSON: &str = r#"{
    "result": null,
    "id": 1
}
"#;

fn fixture_trade() -> Decoded {
    Decoded::Tick(Tick {
        instrument: InstrumentId(2),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: price("0.001"),
            qty: qty("100"),
            aggressor: Side::Sell,
        },
        seq: 12345,
        exchange_ns: 1_672_515_782_136_000_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })
}

fn fixture_book_ticker() -> Decoded {
    Decoded::Tick(Tick {
        instrument: InstrumentId(3),
        venue: Venue::Binance,
        body: TickBody::Quote {
            bid: price("25.3519"),
            bid_qty: qty("31.21"),
            ask: price("25.3652"),
            ask_qty: qty("40.66"),
        },
        seq: 400_900_217,
        exchange_ns: 0,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })
}

/// What each docs fixture file decodes to.
fn fixture_expectations() -> Vec<(&'static str, Result<Decoded, DecodeError>)> {
    use DecodeReason::UnknownMessage;
    let skip = |k| Ok(Decoded::Skipped(k));
    let control = |c| Ok(Decoded::Control(c));
    vec![
        ("trade.json", Ok(fixture_trade())),
        ("book_ticker.json", Ok(fixture_book_ticker())),
        ("depth_update.json", skip(SkipKind::Depth)),
        ("agg_trade.json", skip(SkipKind::AggTrade)),
        ("server_shutdown_raw.json", control(Control::ServerShutdown)),
        ("server_shutdown_combined.json", control(Control::ServerShutdown)),
        ("subscribe_response.json", control(Control::Result { id: 1 })),
        ("unsubscribe_response.json", control(Control::Result { id: 312 })),
        ("list_subscriptions_response.json", control(Control::Result { id: 3 })),
        ("set_property_response.json", control(Control::Result { id: 5 })),
        ("get_property_response.json", control(Control::Result { id: 2 })),
        ("rest_error.json", control(Control::Error { code: -1121 })),
        ("rest_depth_snapshot.json", skip(SkipKind::Snapshot)),
        ("partial_depth.json", skip(SkipKind::Snapshot)),
        ("kline.json", skip(SkipKind::Other)),
        ("mini_ticker.json", skip(SkipKind::Other)),
        ("ticker_24hr.json", skip(SkipKind::Other)),
        ("ticker_1h_rolling.json", skip(SkipKind::Other)),
        ("avg_price.json", skip(SkipKind::Other)),
        ("block_trade.json", skip(SkipKind::Other)),
        ("reference_price.json", skip(SkipKind::Other)),
        // Our own requests and REST order responses never arrive on a market-data stream.
        ("subscribe_request.json", err(UnknownMessage, "")),
        ("unsubscribe_request.json", err(UnknownMessage, "")),
        ("list_subscriptions_request.json", err(UnknownMessage, "")),
        ("set_property_request.json", err(UnknownMessage, "")),
        ("get_property_request.json", err(UnknownMessage, "")),
        ("rest_new_order_ack.json", err(UnknownMessage, "")),
        ("rest_new_order_result.json", err(UnknownMessage, "")),
        ("rest_new_order_full.json", err(UnknownMessage, "")),
        ("hmac_signing_vectors.json", err(UnknownMessage, "")),
    ]
}

#[test]
fn docs_fixture_texts_decode_to_the_right_thing() {
    let docs = fixture_index();
    let mut decoder = BinanceDecoder::new();
    let mut decode = |text: &str| agree(&mut decoder, &docs, text.as_bytes(), META).0;
    assert_eq!(decode(TRADE_JSON), Ok(fixture_trade()));
    assert_eq!(decode(BOOK_TICKER_JSON), Ok(fixture_book_ticker()));
    assert_eq!(decode(DEPTH_UPDATE_JSON), Ok(Decoded::Skipped(SkipKind::Depth)));
    assert_eq!(decode(AGG_TRADE_JSON), Ok(Decoded::Skipped(SkipKind::AggTrade)));
    assert_eq!(
        decode(SERVER_SHUTDOWN_RAW_JSON),
        Ok(Decoded::Control(Control::ServerShutdown))
    );
    assert_eq!(
        decode(SERVER_SHUTDOWN_COMBINED_JSON),
        Ok(Decoded::Control(Control::ServerShutdown))
    );
    assert_eq!(
        decode(SUBSCRIBE_RESPONSE_JSON),
        Ok(Decoded::Control(Control::Result { id: 1 }))
    );
    // The engine's own index does not list the docs' symbols.
    let engine = index();
    assert_eq!(
        decoder.decode(TRADE_JSON.as_bytes(), META, &engine),
        err(DecodeReason::UnknownSymbol, "s")
    );
    assert_eq!(
        decoder.decode(BOOK_TICKER_JSON.as_bytes(), META, &engine),
        err(DecodeReason::UnknownSymbol, "s")
    );
}

#[test]
fn docs_fixture_files_decode_to_the_right_thing() {
    let Some(shared) = shared_dir("docs fixture") else {
        return;
    };
    let dir = shared.join("fixtures/venues/binance");
    let index = fixture_index();
    let mut decoder = BinanceDecoder::new();
    let expectations = fixture_expectations();
    for (name, expected) in &expectations {
        let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&agree(&mut decoder, &index, &text, META).0, expected, "{name}");
    }
    // The texts copied into this file are the files' contents.
    for (name, copy) in [
        ("trade.json", TRADE_JSON),
        ("book_ticker.json", BOOK_TICKER_JSON),
        ("depth_update.json", DEPTH_UPDATE_JSON),
        ("agg_trade.json", AGG_TRADE_JSON),
        ("server_shutdown_raw.json", SERVER_SHUTDOWN_RAW_JSON),
        ("server_shutdown_combined.json", SERVER_SHUTDOWN_COMBINED_JSON),
        ("subscribe_response.json", SUBSCRIBE_RESPONSE_JSON),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(text.trim_end(), copy.trim_end(), "{name}");
    }
    // Fixtures added later must at least decode without panicking.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !expectations.iter().any(|(n, _)| *n == name) {
            let result = decoder.decode(&std::fs::read(&path).unwrap(), META, &index);
            println!("note: fixture {name} has no expectation here; it decodes to {result:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real captures.

/// Per-kind totals of one capture replay.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    trades: usize,
    quotes: usize,
    depth: usize,
    snapshots: usize,
    other: usize,
    /// Frames the fast path took: every trade and every book ticker, since the captures hold
    /// them exactly as Binance sends them.
    fast: usize,
}

/// Reads a capture (`<recv_ns> <frame>` per line, gzip) into memory.
fn read_capture(path: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut lines = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        while line.last().is_some_and(|b| b.is_ascii_whitespace()) {
            line.pop();
        }
        let space = line
            .iter()
            .position(|&b| b == b' ')
            .expect("a `<recv_ns> <frame>` line");
        let recv_ns = std::str::from_utf8(&line[..space]).unwrap().parse().unwrap();
        lines.push((recv_ns, line[space + 1..].to_vec()));
    }
    lines
}

/// Replays a capture, checking every tick against what the capture itself guarantees.
fn replay(lines: &[(u64, Vec<u8>)], instrument: InstrumentId) -> (Totals, Option<Tick>) {
    let index = index();
    let mut decoder = BinanceDecoder::new();
    let mut totals = Totals::default();
    let mut first_trade = None;
    let mut last_trade_id = None;
    let mut last_update_id = 0;
    for (n, (recv_ns, frame)) in lines.iter().enumerate() {
        let meta = FrameMeta {
            recv_ns: *recv_ns,
            stamp: Stamp(n as u64),
        };
        let (decoded, took_fast) = agree(&mut decoder, &index, frame, meta);
        totals.fast += usize::from(took_fast);
        let decoded = decoded.unwrap_or_else(|e| panic!("line {}: {e}: {}", n + 1, String::from_utf8_lossy(frame)));
        match decoded {
            Decoded::Tick(tick) => {
                assert_eq!((tick.venue, tick.instrument), (Venue::Binance, instrument));
                assert_eq!((tick.recv_ns, tick.stamp), (*recv_ns, Stamp(n as u64)));
                match tick.body {
                    TickBody::Trade { price, qty, .. } => {
                        assert!(price > Price::ZERO && qty > Qty::ZERO);
                        assert!(tick.exchange_ns > 1_700_000_000_000_000_000);
                        // The captures hold every trade: ids are consecutive.
                        if let Some(last) = last_trade_id {
                            assert_eq!(tick.seq, last + 1, "line {}", n + 1);
                        }
                        last_trade_id = Some(tick.seq);
                        first_trade.get_or_insert(tick);
                        totals.trades += 1;
                    }
                    TickBody::Quote { bid, ask, .. } => {
                        // Crossing is allowed by the decoder; these captures simply hold none.
                        assert!(Price::ZERO < bid && bid < ask, "line {}", n + 1);
                        assert_eq!(tick.exchange_ns, 0, "spot bookTicker has no time");
                        assert!(tick.seq >= last_update_id);
                        last_update_id = tick.seq;
                        totals.quotes += 1;
                    }
                }
            }
            Decoded::Skipped(SkipKind::Depth) => totals.depth += 1,
            Decoded::Skipped(SkipKind::Snapshot) => totals.snapshots += 1,
            other => {
                println!("line {}: {other:?}", n + 1);
                totals.other += 1;
            }
        }
    }
    (totals, first_trade)
}

fn capture(name: &str) -> Option<Vec<(u64, Vec<u8>)>> {
    let shared = shared_dir("capture")?;
    Some(read_capture(&shared.join("data/hftbacktest/spot").join(name)))
}

#[test]
fn btcusdt_capture_decodes_without_errors() {
    let Some(lines) = capture("btcusdt_20240808.gz") else {
        return;
    };
    let (totals, first) = replay(&lines, InstrumentId(0));
    assert_eq!(
        totals,
        Totals {
            trades: 9_757,
            quotes: 28_040,
            depth: 3_451,
            snapshots: 1,
            other: 0,
            fast: 9_757 + 28_040,
        }
    );
    let first = first.unwrap();
    assert_eq!(
        first.body,
        TickBody::Trade {
            price: price("61837.63"),
            qty: qty("0.02"),
            aggressor: Side::Sell
        }
    );
    assert_eq!(first.seq, 3_735_683_259);
    assert_eq!(first.exchange_ns, 1_723_161_255_342_000_000);
    assert_eq!(first.recv_ns, 1_723_161_254_087_896_568);
}

#[test]
fn ethusdt_capture_decodes_without_errors() {
    let Some(lines) = capture("ethusdt_20240808.gz") else {
        return;
    };
    let (totals, _) = replay(&lines, InstrumentId(1));
    assert_eq!(
        totals,
        Totals {
            trades: 6_106,
            quotes: 24_077,
            depth: 3_434,
            snapshots: 1,
            other: 0,
            fast: 6_106 + 24_077,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Zero allocation.

/// A small deterministic generator (xorshift64*), so the frames are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A decimal with eight places, as Binance prints it, between `lo` and `lo + span` units.
    fn decimal(&mut self, lo: u64, span: u64) -> String {
        let raw = lo * ONE as u64 + self.next() % (span * ONE as u64) + 1;
        format!("{}.{:08}", raw / ONE as u64, raw % ONE as u64)
    }
}

/// Real-format frames in equal shares: trades and book tickers, combined and raw.
fn realistic_frames(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut trade_id = 3_735_683_259u64;
    let mut update_id = 50_093_239_212u64;
    let mut time_ms = 1_723_161_255_342u64;
    (0..count)
        .map(|i| {
            let (sym, lo) = if rng.next().is_multiple_of(2) { ("BTCUSDT", 61_000) } else { ("ETHUSDT", 2_500) };
            time_ms += rng.next() % 50;
            let payload = if i % 2 == 0 {
                trade_id += 1;
                format!(
                    r#"{{"e":"trade","E":{},"s":"{sym}","t":{trade_id},"p":"{}","q":"{}","T":{time_ms},"m":{},"M":true}}"#,
                    time_ms + 1,
                    rng.decimal(lo, 1_000),
                    rng.decimal(0, 5),
                    rng.next().is_multiple_of(2),
                )
            } else {
                update_id += 1 + rng.next() % 9;
                format!(
                    r#"{{"u":{update_id},"s":"{sym}","b":"{}","B":"{}","a":"{}","A":"{}"}}"#,
                    rng.decimal(lo, 1_000),
                    rng.decimal(0, 5),
                    rng.decimal(lo + 1_000, 1_000),
                    rng.decimal(0, 5),
                )
            };
            let frame = if (i / 2) % 2 == 0 {
                let kind = if i % 2 == 0 { "trade" } else { "bookTicker" };
                format!(r#"{{"stream":"{}@{kind}","data":{payload}}}"#, sym.to_ascii_lowercase())
            } else {
                payload
            };
            frame.into_bytes()
        })
        .collect()
}

/// One of the decoder's two entry points: `BinanceDecoder::decode` or `BinanceDecoder::decode_full`.
type Path = fn(&mut BinanceDecoder, &[u8], FrameMeta, &InstrumentIndex) -> Result<Decoded, DecodeError>;

/// Decodes every frame through `path`, expecting ticks; returns how many this thread allocated
/// meanwhile.
fn allocations_while_decoding(
    decoder: &mut BinanceDecoder,
    path: Path,
    frames: &[Vec<u8>],
    index: &InstrumentIndex,
) -> u64 {
    let before = allocations();
    let mut ticks = 0usize;
    for (i, frame) in frames.iter().enumerate() {
        let meta = FrameMeta {
            recv_ns: i as u64,
            stamp: Stamp(i as u64),
        };
        if let Ok(Decoded::Tick(_)) = path(decoder, frame, meta, index) {
            ticks += 1;
        }
    }
    let spent = allocations() - before;
    assert_eq!(ticks, frames.len(), "every frame is a tick");
    spent
}

#[test]
fn the_counting_allocator_sees_this_threads_allocations() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert_eq!(allocations() - before, 1);
    drop(v);
    // And it sees the decoder's: a fresh one allocates its buffers.
    let before = allocations();
    let decoder = std::hint::black_box(BinanceDecoder::new());
    assert!(allocations() - before >= 3);
    drop(decoder);
}

#[test]
fn steady_state_decoding_does_not_allocate() {
    let index = index();
    let warm_up = realistic_frames(1_000, 0x9e37_79b9_7f4a_7c15);
    let measured = realistic_frames(10_000, 0xdead_beef_cafe_f00d);
    // Real-format frames all take the fast path through `decode`; `decode_full` shows the
    // general path, which every other frame takes, is allocation-free too.
    let paths: [(&str, Path); 2] = [
        ("decode", BinanceDecoder::decode),
        ("decode_full", BinanceDecoder::decode_full),
    ];
    for (name, path) in paths {
        let mut decoder = BinanceDecoder::new();
        allocations_while_decoding(&mut decoder, path, &warm_up, &index);
        assert_eq!(
            allocations_while_decoding(&mut decoder, path, &measured, &index),
            0,
            "{name}"
        );
    }
}

#[test]
fn replaying_a_capture_twice_does_not_allocate_the_second_time() {
    let Some(lines) = capture("btcusdt_20240808.gz") else {
        return;
    };
    let index = index();
    let mut decoder = BinanceDecoder::new();
    let pass = |decoder: &mut BinanceDecoder| {
        let before = allocations();
        let mut ok = 0usize;
        for (recv_ns, frame) in &lines {
            ok += usize::from(
                decoder
                    .decode(
                        frame,
                        FrameMeta {
                            recv_ns: *recv_ns,
                            stamp: Stamp(0),
                        },
                        &index,
                    )
                    .is_ok(),
            );
        }
        assert_eq!(ok, lines.len());
        allocations() - before
    };
    // The first pass grows the buffers once for the 64 KB snapshot line.
    pass(&mut decoder);
    assert_eq!(pass(&mut decoder), 0);
}

// ---------------------------------------------------------------------------------------------
// Generated frames.

/// How a JSON value may be written wrongly for a field of this type.
#[derive(Clone, Copy, Debug)]
enum Wire {
    Str,
    Int,
    Bool,
}

impl Wire {
    /// Values of other JSON types than the field's.
    fn wrong_values(self) -> &'static [&'static str] {
        match self {
            Wire::Str => &["1", "1.5", "-2", "true", "null", "{}", "[]", r#"["1"]"#, r#"{"a":"1"}"#],
            Wire::Int => &[r#""1""#, "1.5", "1e3", "false", "null", "{}", "[]", "[1]"],
            Wire::Bool => &["1", "0", r#""true""#, "null", "{}", "[]"],
        }
    }
}

/// A frame as a list of fields, so that tests can reorder, drop or retype them.
#[derive(Clone, Debug)]
struct Frame {
    fields: Vec<(&'static str, Wire, String)>,
    combined: Option<String>,
    spaced: bool,
}

impl Frame {
    fn text(&self) -> String {
        let sep = if self.spaced { ", " } else { "," };
        let colon = if self.spaced { ": " } else { ":" };
        let body = self
            .fields
            .iter()
            .map(|(k, _, v)| format!(r#""{k}"{colon}{v}"#))
            .collect::<Vec<_>>()
            .join(sep);
        match &self.combined {
            Some(stream) => format!(r#"{{"stream"{colon}"{stream}"{sep}"data"{colon}{{{body}}}}}"#),
            None => format!("{{{body}}}"),
        }
    }
}

fn decimal_text(raw: i64, padded: bool) -> String {
    if padded {
        format!("{}.{:08}", raw / ONE, raw % ONE)
    } else {
        Price::from_raw(raw).unwrap().to_string()
    }
}

/// Raw 10^-8 counts of a strictly positive decimal, biased toward realistic magnitudes.
fn positive_raw() -> impl Strategy<Value = i64> {
    prop_oneof![1..=10_000_000 * ONE, 1..=i64::MAX]
}

fn symbol() -> impl Strategy<Value = (usize, &'static str)> {
    prop_oneof![Just((0usize, "BTCUSDT")), Just((1usize, "ETHUSDT"))]
}

/// A valid trade frame (fields in any order, raw or combined) and the tick it must give.
fn trade_case() -> impl Strategy<Value = (Frame, Tick)> {
    (
        symbol(),
        any::<u64>(),
        positive_raw(),
        positive_raw(),
        0..=u64::MAX / 1_000_000,
        any::<u64>(),
        any::<bool>(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        Just((0..9).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(
            |((id, sym), t, p, q, time_ms, event_ms, m, (pad_p, pad_q, combined, spaced), order)| {
                let all = [
                    ("e", Wire::Str, r#""trade""#.to_string()),
                    ("E", Wire::Int, event_ms.to_string()),
                    ("s", Wire::Str, format!(r#""{sym}""#)),
                    ("t", Wire::Int, t.to_string()),
                    ("p", Wire::Str, format!(r#""{}""#, decimal_text(p, pad_p))),
                    ("q", Wire::Str, format!(r#""{}""#, decimal_text(q, pad_q))),
                    ("T", Wire::Int, time_ms.to_string()),
                    ("m", Wire::Bool, m.to_string()),
                    ("M", Wire::Bool, "true".to_string()),
                ];
                let frame = Frame {
                    fields: order.iter().map(|&i| all[i].clone()).collect(),
                    combined: combined.then(|| format!("{}@trade", sym.to_ascii_lowercase())),
                    spaced,
                };
                let tick = Tick {
                    instrument: InstrumentId(id as u16),
                    venue: Venue::Binance,
                    body: TickBody::Trade {
                        price: Price::from_raw(p).unwrap(),
                        qty: Qty::from_raw(q).unwrap(),
                        aggressor: if m { Side::Sell } else { Side::Buy },
                    },
                    seq: t,
                    exchange_ns: time_ms * 1_000_000,
                    recv_ns: META.recv_ns,
                    stamp: META.stamp,
                };
                (frame, tick)
            },
        )
}

/// A valid spot book-ticker frame and the tick it must give.
fn quote_case() -> impl Strategy<Value = (Frame, Tick)> {
    (
        symbol(),
        any::<u64>(),
        (positive_raw(), 0..=i64::MAX, positive_raw(), 0..=i64::MAX),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(|((id, sym), u, (b, bq, a, aq), (pad, combined, spaced), order)| {
            let all = [
                ("u", Wire::Int, u.to_string()),
                ("s", Wire::Str, format!(r#""{sym}""#)),
                ("b", Wire::Str, format!(r#""{}""#, decimal_text(b, pad))),
                ("B", Wire::Str, format!(r#""{}""#, decimal_text(bq, pad))),
                ("a", Wire::Str, format!(r#""{}""#, decimal_text(a, !pad))),
                ("A", Wire::Str, format!(r#""{}""#, decimal_text(aq, !pad))),
            ];
            let frame = Frame {
                fields: order.iter().map(|&i| all[i].clone()).collect(),
                combined: combined.then(|| format!("{}@bookTicker", sym.to_ascii_lowercase())),
                spaced,
            };
            let tick = Tick {
                instrument: InstrumentId(id as u16),
                venue: Venue::Binance,
                body: TickBody::Quote {
                    bid: Price::from_raw(b).unwrap(),
                    bid_qty: Qty::from_raw(bq).unwrap(),
                    ask: Price::from_raw(a).unwrap(),
                    ask_qty: Qty::from_raw(aq).unwrap(),
                },
                seq: u,
                exchange_ns: 0,
                recv_ns: META.recv_ns,
                stamp: META.stamp,
            };
            (frame, tick)
        })
}

fn any_case() -> impl Strategy<Value = (Frame, Tick)> {
    prop_oneof![trade_case(), quote_case()]
}

/// Fields whose loss or retyping must be reported against that field.
const REQUIRED: [&str; 12] = ["e", "s", "t", "p", "q", "T", "m", "u", "b", "B", "a", "A"];

/// Decodes with a fresh decoder, checking on the way that the fast path, the general path and
/// the public entry point agree on this input (see [`agree`]).
fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
    agree(&mut BinanceDecoder::new(), &index(), frame, META).0
}

/// A successful decode never carries an impossible price or quantity.
fn assert_sane(result: &Result<Decoded, DecodeError>) {
    if let Ok(Decoded::Tick(tick)) = result {
        match tick.body {
            TickBody::Trade { price, qty, .. } => assert!(price > Price::ZERO && qty > Qty::ZERO),
            TickBody::Quote { bid, ask, .. } => assert!(bid > Price::ZERO && ask > Price::ZERO),
        }
    }
}

proptest! {
    // Failing cases are kept in `hot/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/feed_binance_decode.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        assert_sane(&decode(&bytes));
    }

    #[test]
    fn json_like_noise_never_panics(text in r#"[{}\[\]":,\\ a-zA-Z0-9.eEtfnrul+-]{0,300}"#) {
        assert_sane(&decode(text.as_bytes()));
    }

    #[test]
    fn corrupted_valid_frames_never_panic_or_lie(
        (frame, _) in any_case(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = frame.text().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        assert_sane(&decode(&bytes));
    }

    #[test]
    fn generated_trades_round_trip_exactly((frame, tick) in trade_case()) {
        prop_assert_eq!(decode(frame.text().as_bytes()), Ok(Decoded::Tick(tick)));
    }

    #[test]
    fn generated_quotes_round_trip_exactly((frame, tick) in quote_case()) {
        prop_assert_eq!(decode(frame.text().as_bytes()), Ok(Decoded::Tick(tick)));
    }

    #[test]
    fn every_truncation_is_an_error((frame, tick) in any_case()) {
        let text = frame.text();
        let mut decoder = BinanceDecoder::new();
        let index = index();
        prop_assert_eq!(decoder.decode(text.as_bytes(), META, &index), Ok(Decoded::Tick(tick)));
        for len in 0..text.len() {
            let result = decoder.decode(&text.as_bytes()[..len], META, &index);
            prop_assert!(result.is_err(), "prefix of {} bytes decoded to {:?}", len, result);
        }
    }

    #[test]
    fn a_retyped_field_is_a_bad_type(
        (mut frame, _) in any_case(),
        which in any::<prop::sample::Index>(),
        value in any::<prop::sample::Index>(),
    ) {
        let candidates: Vec<usize> = (0..frame.fields.len())
            .filter(|&i| REQUIRED.contains(&frame.fields[i].0))
            .collect();
        let i = candidates[which.index(candidates.len())];
        let (key, wire, _) = frame.fields[i].clone();
        let wrong = wire.wrong_values();
        frame.fields[i].2 = wrong[value.index(wrong.len())].to_string();
        prop_assert_eq!(decode(frame.text().as_bytes()), err(DecodeReason::BadType, key));
    }

    #[test]
    fn a_missing_field_is_named(
        (mut frame, _) in any_case(),
        which in any::<prop::sample::Index>(),
    ) {
        let candidates: Vec<usize> = (0..frame.fields.len())
            .filter(|&i| REQUIRED.contains(&frame.fields[i].0))
            .collect();
        let i = candidates[which.index(candidates.len())];
        let (key, _, _) = frame.fields.remove(i);
        // Without `e` (trades) or `u` (book tickers) nothing says what the payload is.
        let expected = if key == "e" || key == "u" {
            err(DecodeReason::UnknownMessage, "")
        } else {
            err(DecodeReason::MissingField, key)
        };
        prop_assert_eq!(decode(frame.text().as_bytes()), expected);
    }
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let mut frame = TRADE_JSON.as_bytes().to_vec();
    frame.resize(MAX_FRAME_BYTES, b' ');
    assert_eq!(decode(&frame), err(DecodeReason::UnknownSymbol, "s"));
    frame.push(b' ');
    assert_eq!(decode(&frame), err(DecodeReason::TooLarge, ""));
}

// ---------------------------------------------------------------------------------------------
// Fast path.
//
// The fast path matches one fixed grammar per message; these tests generate frames in exactly
// that grammar (which it must take, and decode as the general path does), then break them one
// way after another (bytes, fields, shape), and check after each break, through `agree`, that
// whatever the fast path still takes the general path decodes identically, and that the public
// `decode` is the general path's result on every input.

/// Real frames from `btcusdt_20240808.gz` and `ethusdt_20240808.gz`, verbatim.
const REAL_COMBINED_TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
const REAL_COMBINED_TICKER: &str = r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#;

/// The payloads of the real frames, as a raw stream sends them.
fn real_frames() -> [String; 4] {
    let payload = |f: &str| f[f.find(r#""data":"#).unwrap() + 7..f.len() - 1].to_string();
    [
        REAL_COMBINED_TRADE.to_string(),
        REAL_COMBINED_TICKER.to_string(),
        payload(REAL_COMBINED_TRADE),
        payload(REAL_COMBINED_TICKER),
    ]
}

/// Bytes that mean something to the grammar or to JSON, plus a few that never should appear.
const INTERESTING: &[u8] = b" \t\n\r\\\"{}[]:,.+-0123456789eEtrufalsn@_aAbBpqmMTsSxX\x00\x01\x1f\x7f\x80\xc3\xff";

/// Any `u64`, biased toward the edges the integer reader must get right.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0..1_000u64, Just(0), Just(u64::MAX), Just(u64::MAX - 1)]
}

/// A millisecond time whose nanoseconds fit in a `u64`, biased toward the largest.
fn edgy_time_ms() -> impl Strategy<Value = u64> {
    const LAST: u64 = u64::MAX / 1_000_000;
    prop_oneof![0..=LAST, Just(LAST), Just(0), 1_700_000_000_000..1_800_000_000_000u64]
}

/// Ways of printing a decimal that `parse_bytes` accepts: Binance's eight places, canonical,
/// and with leading zeros and zeros past the eighth place.
fn decimal_styled(raw: i64, style: u8) -> String {
    match style {
        0 => format!("{}.{:08}", raw / ONE, raw % ONE),
        1 => Price::from_raw(raw).unwrap().to_string(),
        _ => format!("00{}.{:08}000", raw / ONE, raw % ONE),
    }
}

/// A stream name: the real kind, or any printable ASCII without `"` and `\`.
fn stream_name(kind: &'static str) -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just(kind).prop_map(|k| format!("btcusdt@{k}")),
        r"[ -!#-\[\]-~]{0,24}",
    ])
}

/// A trade frame in Binance's exact shape (canonical key order, no whitespace, raw or
/// combined) with random values, and the tick it must give.
fn exact_trade_case() -> impl Strategy<Value = (Frame, Tick)> {
    (
        symbol(),
        (edgy_u64(), edgy_u64(), edgy_time_ms()),
        (positive_raw(), positive_raw(), 0u8..3, 0u8..3),
        (any::<bool>(), any::<bool>()),
        stream_name("trade"),
    )
        .prop_map(
            |((id, sym), (event_ms, t, time_ms), (p, q, p_style, q_style), (m, big_m), stream)| {
                let frame = Frame {
                    fields: vec![
                        ("e", Wire::Str, r#""trade""#.to_string()),
                        ("E", Wire::Int, event_ms.to_string()),
                        ("s", Wire::Str, format!(r#""{sym}""#)),
                        ("t", Wire::Int, t.to_string()),
                        ("p", Wire::Str, format!(r#""{}""#, decimal_styled(p, p_style))),
                        ("q", Wire::Str, format!(r#""{}""#, decimal_styled(q, q_style))),
                        ("T", Wire::Int, time_ms.to_string()),
                        ("m", Wire::Bool, m.to_string()),
                        ("M", Wire::Bool, big_m.to_string()),
                    ],
                    combined: stream,
                    spaced: false,
                };
                let tick = Tick {
                    instrument: InstrumentId(id as u16),
                    venue: Venue::Binance,
                    body: TickBody::Trade {
                        price: Price::from_raw(p).unwrap(),
                        qty: Qty::from_raw(q).unwrap(),
                        aggressor: if m { Side::Sell } else { Side::Buy },
                    },
                    seq: t,
                    exchange_ns: time_ms * 1_000_000,
                    recv_ns: META.recv_ns,
                    stamp: META.stamp,
                };
                (frame, tick)
            },
        )
}

/// A spot book-ticker frame in Binance's exact shape with random values, and its tick.
fn exact_quote_case() -> impl Strategy<Value = (Frame, Tick)> {
    (
        symbol(),
        edgy_u64(),
        (positive_raw(), 0..=i64::MAX, positive_raw(), 0..=i64::MAX),
        (0u8..3, 0u8..3, 0u8..3, 0u8..3),
        stream_name("bookTicker"),
    )
        .prop_map(|((id, sym), u, (b, bq, a, aq), (sb, sbq, sa, saq), stream)| {
            let frame = Frame {
                fields: vec![
                    ("u", Wire::Int, u.to_string()),
                    ("s", Wire::Str, format!(r#""{sym}""#)),
                    ("b", Wire::Str, format!(r#""{}""#, decimal_styled(b, sb))),
                    ("B", Wire::Str, format!(r#""{}""#, decimal_styled(bq, sbq))),
                    ("a", Wire::Str, format!(r#""{}""#, decimal_styled(a, sa))),
                    ("A", Wire::Str, format!(r#""{}""#, decimal_styled(aq, saq))),
                ],
                combined: stream,
                spaced: false,
            };
            let tick = Tick {
                instrument: InstrumentId(id as u16),
                venue: Venue::Binance,
                body: TickBody::Quote {
                    bid: Price::from_raw(b).unwrap(),
                    bid_qty: Qty::from_raw(bq).unwrap(),
                    ask: Price::from_raw(a).unwrap(),
                    ask_qty: Qty::from_raw(aq).unwrap(),
                },
                seq: u,
                exchange_ns: 0,
                recv_ns: META.recv_ns,
                stamp: META.stamp,
            };
            (frame, tick)
        })
}

fn exact_case() -> impl Strategy<Value = (Frame, Tick)> {
    prop_oneof![exact_trade_case(), exact_quote_case()]
}

/// Field values that are wrong, borderline or right in a different spelling, for any field:
/// numbers JSON refuses or that overflow, strings the fast path must not read as their bytes
/// (escapes), decimals that decode to errors, near-miss literals, other JSON types.
const HOSTILE_VALUES: &[&str] = &[
    // Integers.
    "0",
    "00",
    "01",
    "-0",
    "-1",
    "+1",
    "1.0",
    "1e3",
    "1E3",
    "0x10",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "184467440737095516150",
    "18446744073709",
    "18446744073710",
    "9223372036854775807",
    "9223372036854775808",
    "1723161255342",
    // Strings, symbols and event types.
    r#""BTCUSDT""#,
    r#""ETHUSDT""#,
    r#""BTC\u0055SDT""#,
    r#""\u0042TCUSDT""#,
    r#""BTCUSD\u0054""#,
    r#""BTCUSDT\u0000""#,
    r#""btcusdt""#,
    r#""BTCUSDT ""#,
    r#"" BTCUSDT""#,
    r#""""#,
    r#""trade""#,
    r#""tr\u0061de""#,
    r#""Trade""#,
    r#""bookTicker""#,
    r#""aggTrade""#,
    "\"BTC\u{e9}USDT\"",
    "\"BTCUSDT\u{1}\"",
    // Decimals.
    r#""61837.63000000""#,
    r#""0""#,
    r#""0.00000000""#,
    r#""-1""#,
    r#""-0""#,
    r#""+1""#,
    r#""1e3""#,
    r#"".5""#,
    r#""5.""#,
    r#""1..2""#,
    r#""1.000000001""#,
    r#""1.000000000""#,
    r#""92233720368.54775807""#,
    r#""92233720368.54775808""#,
    r#""\u0031.5""#,
    r#""1\u002e5""#,
    r#""1.5\"""#,
    r#""1.5\\""#,
    r#""1 ""#,
    r#""0.00000001""#,
    "61837.63",
    // Booleans and other JSON types.
    "true",
    "false",
    "True",
    "tru",
    "falsee",
    "1",
    "null",
    r#""true""#,
    "[]",
    "{}",
    "[1]",
    r#"{"a":1}"#,
    "",
];

/// Stream names with escapes (valid, invalid, cut short), non-ASCII or control bytes: the fast
/// path must leave every one of them to the general path.
const HOSTILE_STREAMS: &[&str] = &[
    r#"btc\"usdt@trade"#,
    r"btcusdt\/trade",
    r"btcusdt\u0040trade",
    r"\\",
    r"btc\xusdt",
    r"btc\u00",
    r"btc\",
    "btc\u{e9}",
    "btc\u{1}usdt",
    "btc\tusdt",
    "",
    "\u{7f}",
];

/// One edit of a frame's bytes.
#[derive(Clone, Debug)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = || prop_oneof![any::<u8>(), prop::sample::select(INTERESTING)];
    prop_oneof![
        (any::<prop::sample::Index>(), byte()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<prop::sample::Index>(), byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<prop::sample::Index>().prop_map(Edit::Remove),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    match edit {
        Edit::Set(_, _) | Edit::Remove(_) | Edit::Truncate(_) if bytes.is_empty() => {}
        Edit::Set(at, b) => {
            let i = at.index(bytes.len());
            bytes[i] = *b;
        }
        Edit::Insert(at, b) => {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, *b);
        }
        Edit::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
        Edit::Truncate(at) => bytes.truncate(at.index(bytes.len())),
    }
}

/// How a frame's shape may be changed while its values stay valid.
#[derive(Clone, Copy, Debug)]
enum Reshape {
    /// Swap two fields.
    Swap,
    /// Drop a field.
    Drop,
    /// Repeat a field at the end with another field's value (the general path keeps the last).
    Repeat,
    /// Add a key the decoder does not read.
    Extra,
    /// Leave the fields alone (whitespace and wrapping may still change).
    Keep,
}

proptest! {
    // Failing cases are kept in `hot/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/feed_binance_decode.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn exact_frames_take_the_fast_path_and_decode_as_the_general_path_does((frame, tick) in exact_case()) {
        let text = frame.text();
        prop_assert_eq!(fast::try_decode(text.as_bytes(), META, &index()), Some(tick));
        let (result, took_fast) = agree(&mut BinanceDecoder::new(), &index(), text.as_bytes(), META);
        prop_assert!(took_fast);
        prop_assert_eq!(result, Ok(Decoded::Tick(tick)));
    }

    #[test]
    fn edited_exact_frames_agree(
        (frame, _) in exact_case(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let mut bytes = frame.text().into_bytes();
        let mut decoder = BinanceDecoder::new();
        let index = index();
        for e in &edits {
            apply(&mut bytes, e);
            assert_sane(&agree(&mut decoder, &index, &bytes, META).0);
        }
    }

    #[test]
    fn hostile_values_in_exact_frames_agree(
        (mut frame, _) in exact_case(),
        which in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(HOSTILE_VALUES)), 1..3),
        stream in prop::option::of(prop::sample::select(HOSTILE_STREAMS)),
    ) {
        for (at, value) in which {
            let i = at.index(frame.fields.len());
            frame.fields[i].2 = value.to_string();
        }
        if let Some(name) = stream {
            frame.combined = Some(name.to_string());
        }
        assert_sane(&agree(&mut BinanceDecoder::new(), &index(), frame.text().as_bytes(), META).0);
    }

    #[test]
    fn reshaped_exact_frames_agree(
        (mut frame, _) in exact_case(),
        reshape in prop::sample::select(&[Reshape::Swap, Reshape::Drop, Reshape::Repeat, Reshape::Extra, Reshape::Keep][..]),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        spaced in any::<bool>(),
        rewrap in any::<bool>(),
    ) {
        let len = frame.fields.len();
        let (a, b) = (a.index(len), b.index(len));
        match reshape {
            Reshape::Swap => frame.fields.swap(a, b),
            Reshape::Drop => {
                frame.fields.remove(a);
            }
            Reshape::Repeat => {
                let (key, wire, _) = frame.fields[a].clone();
                let value = frame.fields[b].2.clone();
                frame.fields.push((key, wire, value));
            }
            Reshape::Extra => frame.fields.insert(a, ("X", Wire::Int, "1".to_string())),
            Reshape::Keep => {}
        }
        frame.spaced = spaced;
        if rewrap {
            frame.combined = match frame.combined {
                Some(_) => None,
                None => Some("btcusdt@trade".to_string()),
            };
        }
        let (_, took_fast) = agree(&mut BinanceDecoder::new(), &index(), frame.text().as_bytes(), META);
        // Only an untouched shape, or a swap of a field with itself, may still be fast.
        let untouched = matches!(reshape, Reshape::Keep) || (matches!(reshape, Reshape::Swap) && a == b);
        if !untouched || spaced {
            prop_assert!(!took_fast, "took {}", frame.text());
        }
    }
}

#[test]
fn every_single_byte_edit_of_real_frames_agrees() {
    let index = index();
    let mut decoder = BinanceDecoder::new();
    let mut fast_edits = 0usize;
    for frame in real_frames() {
        let original = frame.into_bytes();
        let (result, took_fast) = agree(&mut decoder, &index, &original, META);
        assert!(took_fast && result.is_ok());
        let mut check = |bytes: &[u8]| fast_edits += usize::from(agree(&mut decoder, &index, bytes, META).1);
        for i in 0..=original.len() {
            check(&original[..i]);
            for &b in INTERESTING {
                let mut inserted = original.clone();
                inserted.insert(i, b);
                check(&inserted);
                if i < original.len() {
                    let mut set = original.clone();
                    set[i] = b;
                    check(&set);
                }
            }
            if i < original.len() {
                let mut removed = original.clone();
                removed.remove(i);
                check(&removed);
            }
        }
    }
    // Some edits only change a value (a digit, `true` to `false`...), and those stay fast.
    assert!(fast_edits > 0);
}

/// The real frames as fields, so that single values can be replaced: combined trade, combined
/// book ticker, raw trade, raw book ticker.
fn real_frames_as_fields() -> [Frame; 4] {
    let trade = |combined: bool| Frame {
        fields: vec![
            ("e", Wire::Str, r#""trade""#.to_string()),
            ("E", Wire::Int, "1723161255343".to_string()),
            ("s", Wire::Str, r#""BTCUSDT""#.to_string()),
            ("t", Wire::Int, "3735683259".to_string()),
            ("p", Wire::Str, r#""61837.63000000""#.to_string()),
            ("q", Wire::Str, r#""0.02000000""#.to_string()),
            ("T", Wire::Int, "1723161255342".to_string()),
            ("m", Wire::Bool, "true".to_string()),
            ("M", Wire::Bool, "true".to_string()),
        ],
        combined: combined.then(|| "btcusdt@trade".to_string()),
        spaced: false,
    };
    let ticker = |combined: bool| Frame {
        fields: vec![
            ("u", Wire::Int, "50093239212".to_string()),
            ("s", Wire::Str, r#""BTCUSDT""#.to_string()),
            ("b", Wire::Str, r#""61837.63000000""#.to_string()),
            ("B", Wire::Str, r#""3.78826000""#.to_string()),
            ("a", Wire::Str, r#""61837.64000000""#.to_string()),
            ("A", Wire::Str, r#""1.54698000""#.to_string()),
        ],
        combined: combined.then(|| "btcusdt@bookTicker".to_string()),
        spaced: false,
    };
    [trade(true), ticker(true), trade(false), ticker(false)]
}

#[test]
fn every_hostile_value_in_every_field_of_real_frames_agrees() {
    let index = index();
    let mut decoder = BinanceDecoder::new();
    let frames = real_frames_as_fields();
    for (frame, text) in frames.iter().zip(real_frames()) {
        assert_eq!(frame.text(), text);
    }
    for frame in frames {
        for i in 0..frame.fields.len() {
            for value in HOSTILE_VALUES {
                let mut hostile = frame.clone();
                hostile.fields[i].2 = value.to_string();
                assert_sane(&agree(&mut decoder, &index, hostile.text().as_bytes(), META).0);
            }
        }
        if frame.combined.is_some() {
            for name in HOSTILE_STREAMS {
                let mut hostile = frame.clone();
                hostile.combined = Some(name.to_string());
                assert_sane(&agree(&mut decoder, &index, hostile.text().as_bytes(), META).0);
            }
        }
    }
}

#[test]
fn the_fast_path_defers_every_error_to_the_general_path() {
    use DecodeReason::*;
    let trade = real_frames()[2].clone();
    let ticker = real_frames()[3].clone();
    let cases = [
        (
            trade.replace("61837.63000000", "0.00000000"),
            err(NonPositivePrice, "p"),
        ),
        (trade.replace("0.02000000", "0"), err(ZeroQty, "q")),
        (trade.replace("BTCUSDT", "BTCUSDC"), err(UnknownSymbol, "s")),
        (trade.replace("1723161255342", "18446744073710"), err(OutOfRange, "T")),
        (ticker.replace("61837.63000000", "0"), err(NonPositivePrice, "b")),
        (ticker.replace("61837.64000000", "0.0"), err(NonPositivePrice, "a")),
        (ticker.replace("BTCUSDT", "ETHUSDC"), err(UnknownSymbol, "s")),
        (ticker.replace("3.78826000", "1e3"), err(BadDecimal, "B")),
    ];
    for (frame, expected) in cases {
        assert_eq!(fast::try_decode(frame.as_bytes(), META, &index()), None, "{frame}");
        assert_eq!(decode(frame.as_bytes()), expected, "{frame}");
    }
    // An escaped symbol is valid JSON for BTCUSDT: not fast, but a BTCUSDT tick all the same.
    let escaped = trade.replace("BTCUSDT", r"BTC\u0055SDT");
    assert_eq!(fast::try_decode(escaped.as_bytes(), META, &index()), None);
    assert_eq!(decode(escaped.as_bytes()), decode(trade.as_bytes()));
}

#[test]
fn the_fast_path_keeps_the_frame_size_limit() {
    // A combined trade whose stream name pads it to exactly the limit, then one byte past it.
    let at_limit = |extra: usize| {
        let frame = REAL_COMBINED_TRADE.replace("btcusdt@trade", "");
        let name = "x".repeat(MAX_FRAME_BYTES - frame.len() + extra);
        REAL_COMBINED_TRADE.replace("btcusdt@trade", &name)
    };
    let largest = at_limit(0);
    assert_eq!(largest.len(), MAX_FRAME_BYTES);
    let (result, took_fast) = agree(&mut BinanceDecoder::new(), &index(), largest.as_bytes(), META);
    assert!(took_fast && result.is_ok());
    let too_large = at_limit(1);
    assert_eq!(fast::try_decode(too_large.as_bytes(), META, &index()), None);
    assert_eq!(decode(too_large.as_bytes()), err(DecodeReason::TooLarge, ""));
}
