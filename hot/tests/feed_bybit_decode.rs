//! The Bybit v5 decoder against the docs fixtures, the real v5 order-book file from
//! nautilus_trader, generated frames (proptest) and a counting allocator.
//!
//! The fixtures and the order-book file live outside the workspace in `shared/`; when that
//! directory is absent those tests print a note and return, while the same assertions on the
//! fixture texts copied into this file always run.
//! The order-book file is a zip; its one member is stored uncompressed, so the few lines of
//! [`stored_zip_member`] read it (and check its CRC-32) without a zip dependency.
//! The counting `#[global_allocator]` counts per thread, so tests running in parallel do not
//! disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use maxx_hot::feed::any::AnyDecoder;
use maxx_hot::feed::bybit::parse::{BybitDecoder, trade_seq};
use maxx_hot::feed::{
    Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, MAX_TICKS_PER_FRAME, Numbering,
    Sequencing, SkipKind, TickBatch,
};
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{ONE, Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use maxx_hot::source::Decode;
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
        venues[Venue::Bybit.index()] = Some(VenueSymbol::new(name).unwrap());
        (Symbol::new(name).unwrap(), venues)
    }))
    .unwrap()
}

/// The engine's instruments: BTCUSDT is id 0, ETHUSDT id 1.
fn index() -> InstrumentIndex {
    index_of(&["BTCUSDT", "ETHUSDT"])
}

/// Also lists the linear future the docs' ticker example uses.
fn fixture_index() -> InstrumentIndex {
    index_of(&["BTCUSDT", "ETHUSDT", "BTC-26DEC25"])
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

/// A decoder, its index and its batch; `decode` clears the batch first, as the feed task does.
struct Harness {
    decoder: BybitDecoder,
    index: InstrumentIndex,
    out: TickBatch,
}

impl Harness {
    fn new(index: InstrumentIndex) -> Self {
        Self {
            decoder: BybitDecoder::new(index.len()),
            index,
            out: TickBatch::new(),
        }
    }

    /// With the spot decoder.
    fn spot(index: InstrumentIndex) -> Self {
        Self {
            decoder: BybitDecoder::spot(index.len()),
            index,
            out: TickBatch::new(),
        }
    }

    fn decode(&mut self, frame: &[u8]) -> Result<Decoded, DecodeError> {
        self.out.clear();
        self.decoder.decode(frame, META, &self.index, &mut self.out)
    }

    fn decode_str(&mut self, frame: &str) -> Result<Decoded, DecodeError> {
        self.decode(frame.as_bytes())
    }

    /// The ticks of the last frame.
    fn ticks(&self) -> Vec<Tick> {
        self.out.as_slice().to_vec()
    }
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

/// 64-bit FNV-1a, written out here so the decoder's hash is checked against a second copy.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Docs fixtures.

/// `bybit/public_trade_linear.json`, verbatim.
const PUBLIC_TRADE_LINEAR_JSON: &str = r#"{
    "topic": "publicTrade.BTCUSDT",
    "type": "snapshot",
    "ts": 1672304486868,
    "data": [
        {
            "T": 1672304486865,
            "s": "BTCUSDT",
            "S": "Buy",
            "v": "0.001",
            "p": "16578.50",
            "L": "PlusTick",
            "i": "20f43950-d8dd-5b31-9112-a178eb6023af",
            "BT": false,
            "seq": 1783284617
        }
    ]
}
"#;

/// `bybit/orderbook50_snapshot.json`, verbatim.
const ORDERBOOK50_SNAPSHOT_JSON: &str = r#"{
    "topic": "orderbook.50.BTCUSDT",
    "type": "snapshot",
    "ts": 1672304484978,
    "data": {
        "s": "BTCUSDT",
        "b": [
            [
                "16493.50",
                "0.006"
            ],
            [
                "16493.00",
                "0.100"
            ]
        ],
        "a": [
            [
                "16611.00",
                "0.029"
            ],
            [
                "16612.00",
                "0.213"
            ]
        ],
    "u": 18521288,
    "seq": 7961638724
    },
    "cts": 1672304484976
}
"#;

/// `bybit/orderbook50_delta.json`, verbatim.
const ORDERBOOK50_DELTA_JSON: &str = r#"{
    "topic": "orderbook.50.BTCUSDT",
    "type": "delta",
    "ts": 1687940967466,
    "data": {
        "s": "BTCUSDT",
        "b": [
            [
                "30247.20",
                "30.028"
            ],
            [
                "30245.40",
                "0.224"
            ],
            [
                "30242.10",
                "1.593"
            ],
            [
                "30240.30",
                "1.305"
            ],
            [
                "30240.00",
                "0"
            ]
        ],
        "a": [
            [
                "30248.70",
                "0"
            ],
            [
                "30249.30",
                "0.892"
            ],
            [
                "30249.50",
                "1.778"
            ],
            [
                "30249.60",
                "0"
            ],
            [
                "30251.90",
                "2.947"
            ],
            [
                "30252.20",
                "0.659"
            ],
            [
                "30252.50",
                "4.591"
            ]
        ],
        "u": 177400507,
        "seq": 66544703342
    },
    "cts": 1687940967464
}
"#;

/// `bybit/tickers_linear_perpetual.json`, verbatim.
const TICKERS_LINEAR_PERPETUAL_JSON: &str = r#"{
  "topic": "tickers.BTCUSDT",
  "type": "snapshot",
  "data": {
    "symbol": "BTCUSDT",
    "tickDirection": "MinusTick",
    "price24hPcnt": "-0.158315",
    "lastPrice": "66666.60",
    "prevPrice24h": "79206.20",
    "highPrice24h": "79266.30",
    "lowPrice24h": "65076.90",
    "prevPrice1h": "66666.60",
    "markPrice": "66666.60",
    "indexPrice": "115418.19",
    "openInterest": "492373.72",
    "openInterestValue": "32824881841.75",
    "turnover24h": "4936790807.6521",
    "volume24h": "73191.3870",
    "fundingIntervalHour": "8",
    "fundingCap": "0.005",
    "nextFundingTime": "1760342400000",
    "fundingRate": "-0.005",
    "bid1Price": "66666.60",
    "bid1Size": "23789.165",
    "ask1Price": "66666.70",
    "ask1Size": "23775.469",
    "preOpenPrice": "",
    "preQty": "",
    "curPreListingPhase": ""
  },
  "cs": 9532239429,
  "ts": 1760325052630
}
"#;

/// `bybit/tickers_spot.json`, verbatim.
const TICKERS_SPOT_JSON: &str = r#"{
    "topic": "tickers.BTCUSDT",
    "ts": 1673853746003,
    "type": "snapshot",
    "cs": 2588407389,
    "data": {
        "symbol": "BTCUSDT",
        "lastPrice": "21109.77",
        "highPrice24h": "21426.99",
        "lowPrice24h": "20575",
        "prevPrice24h": "20704.93",
        "volume24h": "6780.866843",
        "turnover24h": "141946527.22907118",
        "price24hPcnt": "0.0196",
        "usdIndexPrice": "21120.2400136"
    }
}
"#;

/// `bybit/subscribe_response_spot.json`, verbatim.
const SUBSCRIBE_RESPONSE_SPOT_JSON: &str = r#"{
    "success": true,
    "ret_msg": "subscribe",
    "conn_id": "2324d924-aa4d-45b0-a858-7b8be29ab52b",
    "req_id": "10001",
    "op": "subscribe"
}
"#;

/// `bybit/subscribe_response_linear.json`, verbatim.
const SUBSCRIBE_RESPONSE_LINEAR_JSON: &str = r#"{
    "success": true,
    "ret_msg": "",
    "conn_id": "3cd84cb1-4d06-4a05-930a-2efe5fc70f0f",
    "req_id": "",
    "op": "subscribe"
}
"#;

/// `bybit/subscribe_response_option.json`, verbatim.
const SUBSCRIBE_RESPONSE_OPTION_JSON: &str = r#"{
    "success": true,
    "conn_id": "aa01fbfffe80af37-00000001-000b37b9-7147f432704fd28c-00e1c172",
    "data": {
    "failTopics": [],
    "successTopics": [
        "orderbook.100.BTC-6JAN23-18000-C"
    ]
},
    "type": "COMMAND_RESP"
}
"#;

/// `bybit/pong_spot.json`, verbatim.
const PONG_SPOT_JSON: &str = r#"{
    "success": true,
    "ret_msg": "pong",
    "conn_id": "0970e817-426e-429a-a679-ff7f55e0b16a",
    "op": "ping"
}
"#;

/// `bybit/pong_linear.json`, verbatim.
const PONG_LINEAR_JSON: &str = r#"{
    "success": true,
    "ret_msg": "pong",
    "conn_id": "465772b1-7630-4fdc-a492-e003e6f0f260",
    "req_id": "",
    "op": "ping"
}
"#;

/// `bybit/pong_option.json`, verbatim.
const PONG_OPTION_JSON: &str = r#"{
    "args": [
        "1672916271846"
    ],
    "op": "pong"
}
"#;

/// `bybit/ping_request.json`, verbatim.
const PING_REQUEST_JSON: &str = r#"{"req_id": "100001", "op": "ping"}
"#;

/// The one trade of `public_trade_linear.json`: `S` is the taker's side; the UUID id hashes.
fn fixture_trade() -> Tick {
    Tick {
        instrument: InstrumentId(0),
        venue: Venue::Bybit,
        body: TickBody::Trade {
            price: price("16578.5"),
            qty: qty("0.001"),
            aggressor: Side::Buy,
        },
        seq: 10_637_318_428_570_714_664,
        exchange_ns: 1_672_304_486_865_000_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    }
}

fn fixture_perpetual_ticker() -> Decoded {
    Decoded::Tick(Tick {
        instrument: InstrumentId(0),
        venue: Venue::Bybit,
        body: TickBody::Quote {
            bid: price("66666.6"),
            bid_qty: qty("23789.165"),
            ask: price("66666.7"),
            ask_qty: qty("23775.469"),
        },
        seq: 9_532_239_429,
        exchange_ns: 1_760_325_052_630_000_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })
}

fn fixture_futures_ticker() -> Decoded {
    Decoded::Tick(Tick {
        instrument: InstrumentId(2),
        venue: Venue::Bybit,
        body: TickBody::Quote {
            bid: price("111254.5"),
            bid_qty: qty("0.176"),
            ask: price("131001"),
            ask_qty: qty("0.58"),
        },
        seq: 31_337_927_919,
        exchange_ns: 1_760_409_119_857_000_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })
}

/// What each docs fixture file decodes to (on a fresh decoder).
fn fixture_expectations() -> Vec<(&'static str, Result<Decoded, DecodeError>)> {
    use DecodeReason::UnknownMessage;
    let skip = |k| Ok(Decoded::Skipped(k));
    let control = |c| Ok(Decoded::Control(c));
    vec![
        ("public_trade_linear.json", Ok(Decoded::Ticks)),
        ("orderbook50_snapshot.json", skip(SkipKind::Depth)),
        ("orderbook50_delta.json", skip(SkipKind::Depth)),
        ("tickers_linear_perpetual.json", Ok(fixture_perpetual_ticker())),
        ("tickers_linear_futures.json", Ok(fixture_futures_ticker())),
        // Spot tickers carry no best bid and ask; option tickers spell them differently.
        ("tickers_spot.json", skip(SkipKind::Other)),
        ("tickers_option.json", skip(SkipKind::Other)),
        ("subscribe_response_spot.json", control(Control::Subscribed)),
        ("subscribe_response_linear.json", control(Control::Subscribed)),
        ("subscribe_response_option.json", control(Control::Subscribed)),
        ("subscribe_response_private.json", control(Control::Subscribed)),
        ("pong_spot.json", control(Control::Heartbeat)),
        ("pong_linear.json", control(Control::Heartbeat)),
        ("pong_option.json", control(Control::Heartbeat)),
        ("pong_private.json", control(Control::Heartbeat)),
        ("auth_response.json", control(Control::Result { id: 0 })),
        // Our own requests and REST responses never arrive on a market-data stream.
        ("ping_request.json", err(UnknownMessage, "")),
        ("subscribe_request_multi.json", err(UnknownMessage, "")),
        ("subscribe_request_orderbook1.json", err(UnknownMessage, "")),
        ("unsubscribe_request.json", err(UnknownMessage, "")),
        ("auth_request.json", err(UnknownMessage, "")),
        ("rest_create_order_response.json", err(UnknownMessage, "")),
    ]
}

#[test]
fn docs_fixture_texts_decode_to_the_right_thing() {
    let mut h = Harness::new(fixture_index());
    assert_eq!(h.decode_str(PUBLIC_TRADE_LINEAR_JSON), Ok(Decoded::Ticks));
    assert_eq!(h.ticks(), [fixture_trade()]);
    assert_eq!(fixture_trade().seq, fnv1a(b"20f43950-d8dd-5b31-9112-a178eb6023af"));
    assert_eq!(
        h.decode_str(ORDERBOOK50_SNAPSHOT_JSON),
        Ok(Decoded::Skipped(SkipKind::Depth))
    );
    assert_eq!(
        h.decode_str(ORDERBOOK50_DELTA_JSON),
        Ok(Decoded::Skipped(SkipKind::Depth))
    );
    assert_eq!(
        h.decode_str(TICKERS_LINEAR_PERPETUAL_JSON),
        Ok(fixture_perpetual_ticker())
    );
    assert_eq!(h.decode_str(TICKERS_SPOT_JSON), Ok(Decoded::Skipped(SkipKind::Other)));
    for (text, expected) in [
        (SUBSCRIBE_RESPONSE_SPOT_JSON, Control::Subscribed),
        (SUBSCRIBE_RESPONSE_LINEAR_JSON, Control::Subscribed),
        (SUBSCRIBE_RESPONSE_OPTION_JSON, Control::Subscribed),
        (PONG_SPOT_JSON, Control::Heartbeat),
        (PONG_LINEAR_JSON, Control::Heartbeat),
        (PONG_OPTION_JSON, Control::Heartbeat),
    ] {
        assert_eq!(h.decode_str(text), Ok(Decoded::Control(expected)), "{text}");
    }
    assert_eq!(h.decode_str(PING_REQUEST_JSON), err(DecodeReason::UnknownMessage, ""));
    // A refused subscription: the docs show no sample; `success` false is all it takes.
    let refused = SUBSCRIBE_RESPONSE_SPOT_JSON.replace("true", "false");
    assert_eq!(h.decode_str(&refused), Ok(Decoded::Control(Control::SubscribeRejected)));
    // The engine's own index does not list the docs' future.
    let mut engine = Harness::new(index());
    assert_eq!(
        engine.decode_str(PUBLIC_TRADE_LINEAR_JSON.replace("BTCUSDT", "BTCPERP").as_str()),
        err(DecodeReason::UnknownSymbol, "s")
    );
}

/// The docs have no level-1 sample; level 1 has the level-50 shape (`venues.md` §3.4), so the
/// level-50 fixtures with the topic renamed stand in for it.
#[test]
fn docs_book_fixtures_as_level_one_give_the_best_levels() {
    let mut h = Harness::new(fixture_index());
    let snapshot = ORDERBOOK50_SNAPSHOT_JSON.replace("orderbook.50.", "orderbook.1.");
    assert_eq!(
        h.decode_str(&snapshot),
        Ok(Decoded::Tick(Tick {
            instrument: InstrumentId(0),
            venue: Venue::Bybit,
            body: TickBody::Quote {
                bid: price("16493.5"),
                bid_qty: qty("0.006"),
                ask: price("16611"),
                ask_qty: qty("0.029"),
            },
            seq: 18_521_288,
            exchange_ns: 1_672_304_484_976_000_000,
            recv_ns: META.recv_ns,
            stamp: META.stamp,
        }))
    );
    assert_eq!(h.out.gaps, 0);
    // The delta's `u` is far from the snapshot's: a gap. Its best bid is the highest entry with
    // a size; its best ask skips the deleted 30248.70.
    let delta = ORDERBOOK50_DELTA_JSON.replace("orderbook.50.", "orderbook.1.");
    let Ok(Decoded::Tick(tick)) = h.decode_str(&delta) else {
        panic!("not a quote");
    };
    assert_eq!(h.out.gaps, 1);
    assert_eq!(
        tick.body,
        TickBody::Quote {
            bid: price("30247.2"),
            bid_qty: qty("30.028"),
            ask: price("30249.3"),
            ask_qty: qty("0.892"),
        }
    );
    assert_eq!((tick.seq, tick.exchange_ns), (177_400_507, 1_687_940_967_464_000_000));
}

#[test]
fn docs_fixture_files_decode_to_the_right_thing() {
    let Some(shared) = shared_dir("docs fixture") else {
        return;
    };
    let dir = shared.join("fixtures/venues/bybit");
    let expectations = fixture_expectations();
    for (name, expected) in &expectations {
        let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        // A fresh decoder per file, so the ticker state of one fixture does not leak into the next.
        let mut h = Harness::new(fixture_index());
        assert_eq!(&h.decode(&text), expected, "{name}");
        if *name == "public_trade_linear.json" {
            assert_eq!(h.ticks(), [fixture_trade()]);
        }
    }
    // The texts copied into this file are the files' contents.
    for (name, copy) in [
        ("public_trade_linear.json", PUBLIC_TRADE_LINEAR_JSON),
        ("orderbook50_snapshot.json", ORDERBOOK50_SNAPSHOT_JSON),
        ("orderbook50_delta.json", ORDERBOOK50_DELTA_JSON),
        ("tickers_linear_perpetual.json", TICKERS_LINEAR_PERPETUAL_JSON),
        ("tickers_spot.json", TICKERS_SPOT_JSON),
        ("subscribe_response_spot.json", SUBSCRIBE_RESPONSE_SPOT_JSON),
        ("subscribe_response_linear.json", SUBSCRIBE_RESPONSE_LINEAR_JSON),
        ("subscribe_response_option.json", SUBSCRIBE_RESPONSE_OPTION_JSON),
        ("pong_spot.json", PONG_SPOT_JSON),
        ("pong_linear.json", PONG_LINEAR_JSON),
        ("pong_option.json", PONG_OPTION_JSON),
        ("ping_request.json", PING_REQUEST_JSON),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(text.trim_end(), copy.trim_end(), "{name}");
    }
    // Fixtures added later must at least decode without panicking.
    let mut h = Harness::new(fixture_index());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !expectations.iter().any(|(n, _)| *n == name) {
            let result = h.decode(&std::fs::read(&path).unwrap());
            println!("note: fixture {name} has no expectation here; it decodes to {result:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real v5 order-book file.

/// CRC-32 (IEEE, reflected), bit by bit: the zip checksum, for a few tens of KiB.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The first member of a zip archive, which must be stored (method 0) with its sizes in the
/// local header; the CRC is checked.
fn stored_zip_member(zip: &[u8]) -> Vec<u8> {
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([zip[at], zip[at + 1], zip[at + 2], zip[at + 3]]);
    assert_eq!(u32_at(0), 0x0403_4b50, "not a zip local file header");
    assert_eq!(u16_at(6) & 0x0008, 0, "sizes are in a data descriptor");
    assert_eq!(
        u16_at(8),
        0,
        "the member is compressed; this reader handles stored members only"
    );
    let crc = u32_at(14);
    let size = u32_at(18) as usize;
    let start = 30 + usize::from(u16_at(26)) + usize::from(u16_at(28));
    let member = zip[start..start + size].to_vec();
    assert_eq!(crc32(&member), crc, "CRC mismatch");
    member
}

/// The JSON lines of `nautilus_trader/bybit/xrpusdt-ob500.data.zip`.
fn xrp_book_lines() -> Option<Vec<Vec<u8>>> {
    let shared = shared_dir("order-book file")?;
    let zip = std::fs::read(shared.join("data/nautilus_trader/bybit/xrpusdt-ob500.data.zip")).unwrap();
    let member = stored_zip_member(&zip);
    Some(
        member
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

#[test]
fn crc32_matches_the_reference_vector() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn the_real_500_level_book_decodes_as_depth_without_errors() {
    let Some(lines) = xrp_book_lines() else {
        return;
    };
    assert_eq!(lines.len(), 50);
    // XRPUSDT is not even listed: deeper books are skipped before the symbol is looked at.
    let mut h = Harness::new(index());
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(h.decode(line), Ok(Decoded::Skipped(SkipKind::Depth)), "line {}", n + 1);
        assert_eq!(h.out.gaps, 0);
    }
}

/// Renamed to level 1, the real file exercises the sequence check on real `u` values: one
/// snapshot and 49 contiguous deltas. (The quotes are not a real best bid and ask, because a
/// 500-level delta updates levels far from the top; only their sanity is checked.)
#[test]
fn real_update_ids_are_contiguous_and_a_dropped_push_is_a_gap() {
    let Some(lines) = xrp_book_lines() else {
        return;
    };
    let renamed: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| {
            String::from_utf8(l.clone())
                .unwrap()
                .replacen("orderbook.500.", "orderbook.1.", 1)
                .into_bytes()
        })
        .collect();
    let replay = |skip: Option<usize>| {
        let mut h = Harness::new(index_of(&["XRPUSDT"]));
        let mut gaps = 0;
        let mut quotes = 0;
        for (n, line) in renamed.iter().enumerate() {
            if Some(n) == skip {
                continue;
            }
            let decoded = h.decode(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
            if let Decoded::Tick(Tick {
                body: TickBody::Quote { bid, ask, .. },
                ..
            }) = decoded
            {
                assert!(bid > Price::ZERO && ask > Price::ZERO);
                quotes += 1;
            }
            gaps += h.out.gaps;
        }
        (gaps, quotes)
    };
    assert_eq!(replay(None), (0, 50));
    assert_eq!(replay(Some(20)), (1, 49));
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

    /// A decimal with `places` places, as Bybit prints it, between `lo` and `lo + span` units.
    fn decimal(&mut self, lo: u64, span: u64, places: u32) -> String {
        let unit = 10u64.pow(places);
        let raw = lo * unit + self.next() % (span * unit) + 1;
        format!("{}.{:0width$}", raw / unit, raw % unit, width = places as usize)
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Real-format frames: trade batches (spot and linear ids, or only spot ids when `spot`),
/// level-1 snapshots and deltas, linear tickers and pongs, in proportions like a live feed's.
fn realistic_frames(count: usize, seed: u64, spot: bool) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut trade_id = 2_290_000_000_061_666_327u64;
    let mut u = [18_521_288u64, 7_000_000];
    let mut time_ms = 1_672_304_486_865u64;
    (0..count)
        .map(|i| {
            let which = (rng.next() % 2) as usize;
            let (sym, lo) = [("BTCUSDT", 16_000), ("ETHUSDT", 1_200)][which];
            time_ms += rng.next() % 50;
            let frame = match i % 8 {
                0..=2 => {
                    let n = 1 + rng.next() % 12;
                    let trades: Vec<String> = (0..n)
                        .map(|_| {
                            trade_id += 1;
                            let id = if spot || i.is_multiple_of(2) {
                                trade_id.to_string()
                            } else {
                                rng.uuid()
                            };
                            format!(
                                r#"{{"T":{time_ms},"s":"{sym}","S":"{}","v":"{}","p":"{}","L":"PlusTick","i":"{id}","BT":false,"seq":{}}}"#,
                                if rng.next().is_multiple_of(2) { "Buy" } else { "Sell" },
                                rng.decimal(0, 5, 3),
                                rng.decimal(lo, 1_000, 2),
                                rng.next() % 1_000_000_000,
                            )
                        })
                        .collect();
                    format!(
                        r#"{{"topic":"publicTrade.{sym}","type":"snapshot","ts":{time_ms},"data":[{}]}}"#,
                        trades.join(",")
                    )
                }
                3..=5 => {
                    u[which] += 1;
                    let kind = if i % 16 == 3 { "snapshot" } else { "delta" };
                    format!(
                        r#"{{"topic":"orderbook.1.{sym}","ts":{time_ms},"type":"{kind}","data":{{"s":"{sym}","b":[["{}","{}"]],"a":[["{}","{}"]],"u":{},"seq":{}}},"cts":{time_ms}}}"#,
                        rng.decimal(lo, 1_000, 2),
                        rng.decimal(0, 5, 3),
                        rng.decimal(lo + 1_000, 1_000, 2),
                        rng.decimal(0, 5, 3),
                        u[which],
                        rng.next() % 1_000_000_000_000,
                    )
                }
                6 => format!(
                    r#"{{"topic":"tickers.{sym}","type":"delta","data":{{"symbol":"{sym}","bid1Price":"{}","bid1Size":"{}","ask1Price":"{}","ask1Size":"{}","lastPrice":"1.0"}},"cs":{},"ts":{time_ms}}}"#,
                    rng.decimal(lo, 1_000, 2),
                    rng.decimal(0, 5, 3),
                    rng.decimal(lo + 1_000, 1_000, 2),
                    rng.decimal(0, 5, 3),
                    rng.next() % 1_000_000_000,
                ),
                _ => format!(
                    r#"{{"success":true,"ret_msg":"pong","conn_id":"{}","req_id":"","op":"ping"}}"#,
                    rng.uuid()
                ),
            };
            frame.into_bytes()
        })
        .collect()
}

/// Decodes every frame, expecting no errors; returns how many this thread allocated meanwhile.
fn allocations_while_decoding(h: &mut Harness, frames: &[Vec<u8>]) -> u64 {
    let before = allocations();
    let mut ticks = 0usize;
    for (i, frame) in frames.iter().enumerate() {
        let meta = FrameMeta {
            recv_ns: i as u64,
            stamp: Stamp(i as u64),
        };
        h.out.clear();
        match h.decoder.decode(frame, meta, &h.index, &mut h.out) {
            Ok(Decoded::Tick(_)) => ticks += 1,
            Ok(Decoded::Ticks) => ticks += h.out.len(),
            Ok(_) => {}
            Err(e) => panic!("frame {i}: {e}"),
        }
    }
    let spent = allocations() - before;
    assert!(ticks > frames.len() / 2, "only {ticks} ticks");
    spent
}

#[test]
fn the_counting_allocator_sees_this_threads_allocations() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert_eq!(allocations() - before, 1);
    drop(v);
    let before = allocations();
    let decoder = std::hint::black_box(BybitDecoder::new(2));
    assert!(allocations() - before >= 3);
    drop(decoder);
}

#[test]
fn steady_state_decoding_does_not_allocate() {
    let warm_up = realistic_frames(1_000, 0x9e37_79b9_7f4a_7c15, false);
    let measured = realistic_frames(10_000, 0xdead_beef_cafe_f00d, false);
    let mut h = Harness::new(index());
    allocations_while_decoding(&mut h, &warm_up);
    assert_eq!(allocations_while_decoding(&mut h, &measured), 0);
    // Reconnecting resets the state in place.
    let before = allocations();
    h.decoder.on_connect();
    assert_eq!(allocations() - before, 0);
}

#[test]
fn steady_state_spot_decoding_does_not_allocate() {
    let warm_up = realistic_frames(1_000, 0x9e37_79b9_7f4a_7c15, true);
    let measured = realistic_frames(10_000, 0xdead_beef_cafe_f00d, true);
    let mut h = Harness::spot(index());
    allocations_while_decoding(&mut h, &warm_up);
    assert_eq!(allocations_while_decoding(&mut h, &measured), 0);
    let before = allocations();
    h.decoder.on_connect();
    assert_eq!(allocations() - before, 0);
}

#[test]
fn the_decode_trait_reaches_the_same_decoder() {
    fn through_trait<D: Decode>(d: &mut D, frame: &[u8], index: &InstrumentIndex, out: &mut TickBatch) -> Decoded {
        d.on_connect();
        d.decode(frame, META, index, out).unwrap()
    }
    let mut decoder = BybitDecoder::new(2);
    let mut out = TickBatch::new();
    let decoded = through_trait(&mut decoder, PUBLIC_TRADE_LINEAR_JSON.as_bytes(), &index(), &mut out);
    assert_eq!(decoded, Decoded::Ticks);
    assert_eq!(out.as_slice(), [fixture_trade()]);
    // Hashed ids and mixed quote numberings leave sequencing to the decoder itself.
    assert_eq!(
        Decode::sequencing(&decoder),
        Sequencing {
            trades: Numbering::None,
            quotes: Numbering::None
        }
    );
    assert!(!decoder.is_spot());
    // Spot trade ids only increase; quotes stay unjudged (a subscribe snapshot's `u` predates
    // the connection). The engine's decoder is the spot one.
    let spot_numbering = Sequencing {
        trades: Numbering::Increasing,
        quotes: Numbering::None,
    };
    let spot = BybitDecoder::spot(2);
    assert!(spot.is_spot());
    assert_eq!(Decode::sequencing(&spot), spot_numbering);
    assert_eq!(spot.sequencing(), spot_numbering);
    assert_eq!(AnyDecoder::for_venue(Venue::Bybit, 2).sequencing(), spot_numbering);
}

/// A spot `publicTrade` push of BTCUSDT trades with these ids.
fn spot_trades(ids: &[&str]) -> String {
    let trades: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"T":1700000000000,"s":"BTCUSDT","S":"Buy","v":"0.01","p":"100.5","i":"{id}","BT":false,"seq":1}}"#
            )
        })
        .collect();
    format!(
        r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1700000000001,"data":[{}]}}"#,
        trades.join(",")
    )
}

/// A BTCUSDT level-1 push.
fn level_one(kind: &str, u: u64, bid: &str, ask: &str) -> String {
    format!(
        r#"{{"topic":"orderbook.1.BTCUSDT","ts":1700000000002,"type":"{kind}","data":{{"s":"BTCUSDT","b":[["{bid}","1"]],"a":[["{ask}","2"]],"u":{u},"seq":5}},"cts":1700000000001}}"#
    )
}

#[test]
fn spot_trade_ids_must_be_decimal_numbers() {
    let mut spot = Harness::spot(index());
    assert_eq!(
        spot.decode_str(&spot_trades(&["2290000000061666327", "2290000000061666328"])),
        Ok(Decoded::Ticks)
    );
    let seqs: Vec<u64> = spot.ticks().iter().map(|t| t.seq).collect();
    assert_eq!(seqs, [2_290_000_000_061_666_327, 2_290_000_000_061_666_328]);
    assert_eq!(
        spot.decode_str(&spot_trades(&["0", "18446744073709551615"])),
        Ok(Decoded::Ticks)
    );
    assert_eq!(spot.ticks()[1].seq, u64::MAX);
    // A hash among increasing ids would pass for the newest trade: the message is refused whole.
    for (ids, reason) in [
        (
            &["7", "20f43950-d8dd-5b31-9112-a178eb6023af"][..],
            DecodeReason::BadDecimal,
        ),
        (&["-1"][..], DecodeReason::BadDecimal),
        (&["1.5"][..], DecodeReason::BadDecimal),
        (&[" 1"][..], DecodeReason::BadDecimal),
        (&["7", "18446744073709551616"][..], DecodeReason::OutOfRange),
        (&["100000000000000000000"][..], DecodeReason::OutOfRange),
    ] {
        assert_eq!(spot.decode_str(&spot_trades(ids)), err(reason, "i"), "{ids:?}");
        assert!(spot.out.is_empty(), "{ids:?}");
    }
    assert_eq!(
        spot.decode_str(&spot_trades(&[""])),
        err(DecodeReason::MissingField, "i")
    );
    // The docs' only trade sample is linear, with a UUID: the generic decoder hashes it.
    assert_eq!(
        spot.decode_str(PUBLIC_TRADE_LINEAR_JSON),
        err(DecodeReason::BadDecimal, "i")
    );
    let mut generic = Harness::new(index());
    assert_eq!(generic.decode_str(PUBLIC_TRADE_LINEAR_JSON), Ok(Decoded::Ticks));
    assert_eq!(generic.ticks(), [fixture_trade()]);
}

#[test]
fn spot_quotes_follow_the_same_rules_as_generic_ones() {
    // Only trade ids differ between the flavours: quotes are numbered by `u` (or `cs`) on both,
    // a quiet book re-sent under the same `u` is a quote again, a venue restart (`u` from 1) is
    // no gap, and a linear-shaped ticker still gives a quote.
    let frames = [
        level_one("snapshot", 10, "100", "101"),
        level_one("snapshot", 10, "100", "101"),
        level_one("snapshot", 12, "100.5", "101"),
        level_one("snapshot", 1, "99", "100"),
        level_one("delta", 2, "99.5", "100"),
        TICKERS_SPOT_JSON.to_string(),
        TICKERS_LINEAR_PERPETUAL_JSON.to_string(),
    ];
    let mut spot = Harness::spot(fixture_index());
    let mut generic = Harness::new(fixture_index());
    let mut seqs = Vec::new();
    for frame in &frames {
        let expected = generic.decode_str(frame);
        assert_eq!(spot.decode_str(frame), expected, "{frame}");
        assert_eq!(
            (spot.out.gaps, spot.ticks()),
            (generic.out.gaps, generic.ticks()),
            "{frame}"
        );
        if let Ok(Decoded::Tick(t)) = expected {
            seqs.push(t.seq);
        }
        assert_eq!(spot.out.gaps, 0, "{frame}");
    }
    assert_eq!(seqs, [10, 10, 12, 1, 2, 9_532_239_429]);
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

type Fields = Vec<(&'static str, Wire, String)>;

fn object_text(fields: &Fields, spaced: bool) -> String {
    let (sep, colon) = if spaced { (", ", ": ") } else { (",", ":") };
    let body: Vec<String> = fields.iter().map(|(k, _, v)| format!(r#""{k}"{colon}{v}"#)).collect();
    format!("{{{}}}", body.join(sep))
}

/// A `publicTrade` push as lists of fields, so that tests can reorder, drop or retype them.
#[derive(Clone, Debug)]
struct TradeFrame {
    envelope: Fields,
    trades: Vec<Fields>,
    spaced: bool,
}

impl TradeFrame {
    fn text(&self) -> String {
        let sep = if self.spaced { ", " } else { "," };
        let data: Vec<String> = self.trades.iter().map(|t| object_text(t, self.spaced)).collect();
        let mut envelope = self.envelope.clone();
        for field in &mut envelope {
            if field.0 == "data" {
                field.2 = format!("[{}]", data.join(sep));
            }
        }
        object_text(&envelope, self.spaced)
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

/// A trade id as Bybit writes it (digits on spot, a UUID on derivatives) and its sequence.
fn trade_id() -> impl Strategy<Value = (String, u64)> {
    prop_oneof![
        any::<u64>().prop_map(|n| (n.to_string(), n)),
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(|s| {
            let seq = fnv1a(s.as_bytes());
            (s, seq)
        }),
    ]
}

/// One valid trade object (fields in any order, optional fields or not) and its tick.
fn trade() -> impl Strategy<Value = (Fields, Tick)> {
    (
        symbol(),
        trade_id(),
        (positive_raw(), positive_raw(), any::<bool>(), any::<bool>()),
        0..=u64::MAX / 1_000_000,
        any::<bool>(),
        (any::<bool>(), any::<u64>()),
        Just((0..10).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(
            |((id, sym), (text_id, seq), (p, v, pad_p, pad_v), time_ms, buy, (extras, cross), order)| {
                let all: [(&'static str, Wire, String); 10] = [
                    ("T", Wire::Int, time_ms.to_string()),
                    ("s", Wire::Str, format!(r#""{sym}""#)),
                    ("S", Wire::Str, format!(r#""{}""#, if buy { "Buy" } else { "Sell" })),
                    ("v", Wire::Str, format!(r#""{}""#, decimal_text(v, pad_v))),
                    ("p", Wire::Str, format!(r#""{}""#, decimal_text(p, pad_p))),
                    ("i", Wire::Str, format!(r#""{text_id}""#)),
                    ("L", Wire::Str, r#""ZeroMinusTick""#.to_string()),
                    ("BT", Wire::Bool, "false".to_string()),
                    ("seq", Wire::Int, cross.to_string()),
                    ("RPI", Wire::Bool, "true".to_string()),
                ];
                let fields = order
                    .iter()
                    .filter(|&&i| extras || i < 6)
                    .map(|&i| all[i].clone())
                    .collect();
                let tick = Tick {
                    instrument: InstrumentId(id as u16),
                    venue: Venue::Bybit,
                    body: TickBody::Trade {
                        price: Price::from_raw(p).unwrap(),
                        qty: Qty::from_raw(v).unwrap(),
                        aggressor: if buy { Side::Buy } else { Side::Sell },
                    },
                    seq,
                    exchange_ns: time_ms * 1_000_000,
                    recv_ns: META.recv_ns,
                    stamp: META.stamp,
                };
                (fields, tick)
            },
        )
}

/// A valid `publicTrade` push of `count` trades and the ticks it must give.
fn trade_frame(count: impl Into<proptest::sample::SizeRange>) -> impl Strategy<Value = (TradeFrame, Vec<Tick>)> {
    (
        proptest::collection::vec(trade(), count),
        any::<u64>(),
        any::<bool>(),
        Just((0..4).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(|(trades, ts, spaced, order)| {
            let envelope: [(&'static str, Wire, String); 4] = [
                ("topic", Wire::Str, r#""publicTrade.BTCUSDT""#.to_string()),
                ("type", Wire::Str, r#""snapshot""#.to_string()),
                ("ts", Wire::Int, ts.to_string()),
                ("data", Wire::Str, String::new()),
            ];
            let (fields, ticks): (Vec<Fields>, Vec<Tick>) = trades.into_iter().unzip();
            let frame = TradeFrame {
                envelope: order.iter().map(|&i| envelope[i].clone()).collect(),
                trades: fields,
                spaced,
            };
            (frame, ticks)
        })
}

/// Trade fields whose loss or retyping must be reported against that field.
const TRADE_REQUIRED: [&str; 6] = ["T", "s", "S", "v", "p", "i"];

fn decode_once(frame: &[u8]) -> (Result<Decoded, DecodeError>, TickBatch) {
    let mut out = TickBatch::new();
    let result = BybitDecoder::new(2).decode(frame, META, &index(), &mut out);
    (result, out)
}

fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
    decode_once(frame).0
}

/// A successful decode never carries an impossible price or quantity.
fn assert_sane(result: &Result<Decoded, DecodeError>, out: &TickBatch) {
    let check = |tick: &Tick| match tick.body {
        TickBody::Trade { price, qty, .. } => assert!(price > Price::ZERO && qty > Qty::ZERO),
        TickBody::Quote { bid, ask, .. } => assert!(bid > Price::ZERO && ask > Price::ZERO),
    };
    match result {
        Ok(Decoded::Tick(tick)) => check(tick),
        Ok(Decoded::Ticks) => out.as_slice().iter().for_each(check),
        Ok(_) => {}
        Err(_) => assert!(out.is_empty(), "a refused frame left ticks behind"),
    }
}

fn decode_sane(frame: &[u8]) {
    let (result, out) = decode_once(frame);
    assert_sane(&result, &out);
    let mut out = TickBatch::new();
    let result = BybitDecoder::spot(2).decode(frame, META, &index(), &mut out);
    assert_sane(&result, &out);
}

/// A level as raw 10^-8 counts: price and size.
type RawLevel = (i64, i64);

/// A level-1 push for the book-model property.
#[derive(Clone, Debug)]
struct BookPush {
    snapshot: bool,
    /// Added to the last `u`: 1 is in sequence.
    u_step: u64,
    bid: Option<RawLevel>,
    ask: Option<RawLevel>,
    delete_bid: bool,
}

fn book_push() -> impl Strategy<Value = BookPush> {
    let level = proptest::option::of((1..=1_000_000 * ONE, 0..=100 * ONE));
    (
        proptest::bool::weighted(0.15),
        prop_oneof![8 => Just(1u64), 1 => 2..5u64, 1 => Just(0u64)],
        level.clone(),
        level,
        any::<bool>(),
    )
        .prop_map(|(snapshot, u_step, bid, ask, delete_bid)| BookPush {
            snapshot,
            u_step,
            bid,
            ask,
            delete_bid,
        })
}

fn level_text(level: Option<RawLevel>, delete: Option<i64>) -> String {
    let mut entries = Vec::new();
    if let Some(price) = delete {
        entries.push(format!(r#"["{}","0"]"#, decimal_text(price, false)));
    }
    if let Some((price, size)) = level {
        entries.push(format!(
            r#"["{}","{}"]"#,
            decimal_text(price, false),
            decimal_text(size, true)
        ));
    }
    entries.join(",")
}

proptest! {
    // Failing cases are kept in `hot/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/feed_bybit_decode.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        decode_sane(&bytes);
    }

    #[test]
    fn json_like_noise_never_panics(text in r#"[{}\[\]":,\\ a-zA-Z0-9.eEtfnrul+-]{0,300}"#) {
        decode_sane(text.as_bytes());
    }

    #[test]
    fn corrupted_valid_frames_never_panic_or_lie(
        (frame, _) in trade_frame(1..=8),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = frame.text().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_sane(&bytes);
    }

    #[test]
    fn generated_trade_batches_round_trip_exactly((frame, ticks) in trade_frame(1..=MAX_TICKS_PER_FRAME)) {
        let (result, out) = decode_once(frame.text().as_bytes());
        prop_assert_eq!(result, Ok(Decoded::Ticks));
        prop_assert_eq!(out.as_slice(), ticks.as_slice());
        prop_assert_eq!(out.gaps, 0);
    }

    #[test]
    fn the_spot_decoder_takes_decimal_ids_and_refuses_the_rest(
        (frame, ticks) in trade_frame(1..=MAX_TICKS_PER_FRAME),
    ) {
        let numeric = frame.trades.iter().all(|trade| {
            trade.iter().any(|(key, _, value)| {
                *key == "i" && value.trim_matches('"').bytes().all(|b| b.is_ascii_digit())
            })
        });
        let mut out = TickBatch::new();
        let result = BybitDecoder::spot(2).decode(frame.text().as_bytes(), META, &index(), &mut out);
        if numeric {
            prop_assert_eq!(result, Ok(Decoded::Ticks));
            prop_assert_eq!(out.as_slice(), ticks.as_slice());
        } else {
            prop_assert_eq!(result, err(DecodeReason::BadDecimal, "i"));
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn more_than_the_batch_limit_is_refused_whole(
        (frame, _) in trade_frame(MAX_TICKS_PER_FRAME + 1..=MAX_TICKS_PER_FRAME + 40),
    ) {
        let (result, out) = decode_once(frame.text().as_bytes());
        prop_assert_eq!(result, err(DecodeReason::TooManyTicks, ""));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error((frame, ticks) in trade_frame(1..=3)) {
        let text = frame.text();
        let mut h = Harness::new(index());
        prop_assert_eq!(h.decode_str(&text), Ok(Decoded::Ticks));
        prop_assert_eq!(h.ticks(), ticks);
        for len in 0..text.len() {
            let result = h.decode(&text.as_bytes()[..len]);
            prop_assert!(result.is_err(), "prefix of {} bytes decoded to {:?}", len, result);
            prop_assert!(h.out.is_empty());
        }
    }

    #[test]
    fn a_retyped_trade_field_is_a_bad_type(
        (mut frame, _) in trade_frame(1..=4),
        which_trade in any::<prop::sample::Index>(),
        which_field in any::<prop::sample::Index>(),
        value in any::<prop::sample::Index>(),
    ) {
        let t = which_trade.index(frame.trades.len());
        let candidates: Vec<usize> = (0..frame.trades[t].len())
            .filter(|&i| TRADE_REQUIRED.contains(&frame.trades[t][i].0))
            .collect();
        let i = candidates[which_field.index(candidates.len())];
        let (key, wire, _) = frame.trades[t][i].clone();
        let wrong = wire.wrong_values();
        frame.trades[t][i].2 = wrong[value.index(wrong.len())].to_string();
        prop_assert_eq!(decode(frame.text().as_bytes()), err(DecodeReason::BadType, key));
    }

    #[test]
    fn a_missing_trade_field_is_named(
        (mut frame, _) in trade_frame(1..=4),
        which_trade in any::<prop::sample::Index>(),
        which_field in any::<prop::sample::Index>(),
    ) {
        let t = which_trade.index(frame.trades.len());
        let candidates: Vec<usize> = (0..frame.trades[t].len())
            .filter(|&i| TRADE_REQUIRED.contains(&frame.trades[t][i].0))
            .collect();
        let i = candidates[which_field.index(candidates.len())];
        let (key, _, _) = frame.trades[t].remove(i);
        prop_assert_eq!(decode(frame.text().as_bytes()), err(DecodeReason::MissingField, key));
    }

    /// A stream of level-1 pushes against a reference model of the documented rules: snapshots
    /// replace both sides, deltas keep a side they do not set, deletions never set a side, and
    /// every delta whose `u` is not the last plus one is a gap (and is not applied if stale).
    #[test]
    fn level_one_pushes_follow_the_model(pushes in proptest::collection::vec(book_push(), 1..40)) {
        let mut h = Harness::new(index());
        let (mut bid, mut ask): (Option<RawLevel>, Option<RawLevel>) = (None, None);
        let mut last_u: Option<u64> = None;
        let mut u = 1_000u64;
        for (n, push) in pushes.iter().enumerate() {
            u += push.u_step;
            // A deletion of some other price never sets the side.
            let delete = push.delete_bid.then_some(ONE / 2);
            let frame = format!(
                r#"{{"topic":"orderbook.1.ETHUSDT","ts":5,"type":"{}","data":{{"s":"ETHUSDT","b":[{}],"a":[{}],"u":{u},"seq":1}},"cts":6}}"#,
                if push.snapshot { "snapshot" } else { "delta" },
                level_text(push.bid, delete),
                level_text(push.ask, None),
            );
            let result = h.decode_str(&frame);
            // Zero sizes are deletions: they do not count as a level.
            let with_size = |l: Option<RawLevel>| l.filter(|&(_, size)| size > 0);
            let mut expected_gaps = 0;
            let mut applied = true;
            if push.snapshot {
                bid = with_size(push.bid);
                ask = with_size(push.ask);
            } else {
                if last_u.and_then(|l| l.checked_add(1)) != Some(u) {
                    expected_gaps = 1;
                }
                if last_u.is_some_and(|l| u <= l) {
                    applied = false;
                } else {
                    bid = with_size(push.bid).or(bid);
                    ask = with_size(push.ask).or(ask);
                }
            }
            if applied {
                last_u = Some(u);
            }
            prop_assert_eq!(h.out.gaps, expected_gaps, "push {}", n);
            match (applied, bid, ask) {
                (true, Some((b, bq)), Some((a, aq))) => prop_assert_eq!(
                    result,
                    Ok(Decoded::Tick(Tick {
                        instrument: InstrumentId(1),
                        venue: Venue::Bybit,
                        body: TickBody::Quote {
                            bid: Price::from_raw(b).unwrap(),
                            bid_qty: Qty::from_raw(bq).unwrap(),
                            ask: Price::from_raw(a).unwrap(),
                            ask_qty: Qty::from_raw(aq).unwrap(),
                        },
                        seq: u,
                        exchange_ns: 6_000_000,
                        recv_ns: META.recv_ns,
                        stamp: META.stamp,
                    })),
                    "push {}", n
                ),
                _ => prop_assert_eq!(result, Ok(Decoded::Skipped(SkipKind::Depth)), "push {}", n),
            }
        }
    }
}

#[test]
fn malformed_envelopes_say_why() {
    use DecodeReason::*;
    let trade = r#"{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"2","i":"3"}"#;
    let push = |data: &str| format!(r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":{data}}}"#);
    assert_eq!(decode(push(&format!("[{trade}]")).as_bytes()), Ok(Decoded::Ticks));
    assert_eq!(decode(push("[]").as_bytes()), Ok(Decoded::Ticks));
    assert_eq!(decode(push("{}").as_bytes()), err(BadType, "data"));
    assert_eq!(decode(push("[1]").as_bytes()), err(NotObject, "data"));
    assert_eq!(
        decode(r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot"}"#.as_bytes()),
        err(MissingField, "data")
    );
    assert_eq!(decode(br#"{"topic":1}"#), err(BadType, "topic"));
    assert_eq!(
        decode(br#"{"topic":"kline.1.BTCUSDT","data":[]}"#),
        Ok(Decoded::Skipped(SkipKind::Other))
    );
    assert_eq!(decode(b"[1]"), err(NotObject, ""));
    assert_eq!(decode(b""), err(Json, ""));
    assert_eq!(decode(b"{\"topic\":\"\xff\"}"), err(Utf8, ""));
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""S":"Buy""#, r#""S":"buy""#))).as_bytes()),
        err(UnknownMessage, "S")
    );
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""i":"3""#, r#""i":"""#))).as_bytes()),
        err(MissingField, "i")
    );
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""v":"1""#, r#""v":"0.000""#))).as_bytes()),
        err(ZeroQty, "v")
    );
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""p":"2""#, r#""p":"-2""#))).as_bytes()),
        err(NonPositivePrice, "p")
    );
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""p":"2""#, r#""p":"2e3""#))).as_bytes()),
        err(BadDecimal, "p")
    );
    assert_eq!(
        decode(push(&format!("[{}]", trade.replace(r#""T":1"#, r#""T":-1"#))).as_bytes()),
        err(OutOfRange, "T")
    );
    assert_eq!(
        decode(
            push(&format!(
                "[{}]",
                trade.replace(r#""T":1"#, r#""T":18446744073709551615"#)
            ))
            .as_bytes()
        ),
        err(OutOfRange, "T")
    );
    let book = r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":{"s":"BTCUSDT","b":[],"a":[],"u":1}}"#;
    assert_eq!(decode(book.as_bytes()), Ok(Decoded::Skipped(SkipKind::Depth)));
    assert_eq!(
        decode(book.replace(r#""type":"snapshot","#, "").as_bytes()),
        err(MissingField, "type")
    );
    assert_eq!(decode(book.replace(r#","u":1"#, "").as_bytes()), err(MissingField, "u"));
    assert_eq!(
        decode(book.replace(r#""u":1"#, r#""u":"1""#).as_bytes()),
        err(BadType, "u")
    );
    assert_eq!(
        decode(book.replace(r#""b":[],"#, "").as_bytes()),
        err(MissingField, "b")
    );
    assert_eq!(
        decode(book.replace(r#""a":[]"#, r#""a":{}"#).as_bytes()),
        err(BadType, "a")
    );
    assert_eq!(
        decode(book.replace(r#"{"s""#, r#"[{"s""#).replace("}}", "}]}").as_bytes()),
        err(NotObject, "data")
    );
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let mut frame = PUBLIC_TRADE_LINEAR_JSON.as_bytes().to_vec();
    frame.resize(MAX_FRAME_BYTES, b' ');
    assert_eq!(decode(&frame), Ok(Decoded::Ticks));
    frame.push(b' ');
    assert_eq!(decode(&frame), err(DecodeReason::TooLarge, ""));
}

#[test]
fn trade_seq_is_public_and_matches_the_test_copy() {
    for id in ["1", "20f43950-d8dd-5b31-9112-a178eb6023af", "x", "99999999999999999999"] {
        let expected = id.parse::<u64>().unwrap_or_else(|_| fnv1a(id.as_bytes()));
        assert_eq!(trade_seq(id.as_bytes()), expected, "{id}");
    }
}
