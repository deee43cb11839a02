//! The Coinbase decoder against the docs fixtures (Advanced Trade and legacy Exchange), the
//! 2021 legacy capture, generated frames (proptest) and a counting allocator.
//!
//! The fixtures and the capture live outside the workspace in `shared/`; when that directory is
//! absent those tests print a note and return, while the same assertions on the fixture texts
//! copied into this file always run.
//! The counting `#[global_allocator]` counts per thread, so tests running in parallel do not
//! disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use maxx_hot::feed::coinbase::parse::{CoinbaseDecoder, TimeError, parse_rfc3339_ns};
use maxx_hot::feed::{
    Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, MAX_TICKS_PER_FRAME, Numbering, SkipKind,
    TickBatch,
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

/// An index listing these Coinbase products, in order, under our own names (`BTC-USD` is
/// `BTCUSD`).
fn index_of(products: &[&str]) -> InstrumentIndex {
    InstrumentIndex::new(products.iter().map(|product| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Coinbase.index()] = Some(VenueSymbol::new(product).unwrap());
        (Symbol::new(&product.replace('-', "")).unwrap(), venues)
    }))
    .unwrap()
}

/// The engine's instruments: BTC-USD is id 0, ETH-USD id 1. The docs examples use only these.
fn index() -> InstrumentIndex {
    index_of(&["BTC-USD", "ETH-USD"])
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

/// What a frame decoded to, with the ticks of a batch taken out of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ticks(Vec<Tick>),
    Other(Decoded),
}

fn run(decoder: &mut CoinbaseDecoder, frame: &[u8], index: &InstrumentIndex) -> Result<Outcome, DecodeError> {
    let mut out = TickBatch::new();
    match decoder.decode(frame, META, index, &mut out)? {
        Decoded::Ticks => Ok(Outcome::Ticks(out.as_slice().to_vec())),
        other => {
            assert!(out.is_empty(), "{other:?} left ticks in the batch");
            Ok(Outcome::Other(other))
        }
    }
}

fn outcome(frame: &[u8]) -> Result<Outcome, DecodeError> {
    run(&mut CoinbaseDecoder::new(), frame, &index())
}

fn skip(kind: SkipKind) -> Result<Outcome, DecodeError> {
    Ok(Outcome::Other(Decoded::Skipped(kind)))
}

fn control(c: Control) -> Result<Outcome, DecodeError> {
    Ok(Outcome::Other(Decoded::Control(c)))
}

fn refused(reason: DecodeReason, field: &'static str) -> Result<Outcome, DecodeError> {
    Err(DecodeError { reason, field })
}

/// `shared/` next to the workspace, or `None` with a note when it is not there.
fn shared_dir(what: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent, skipping the {what} checks", dir.display());
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Docs fixtures.

/// `coinbase/market_trades.json`, verbatim.
const MARKET_TRADES_JSON: &str = r#"{
  "channel": "market_trades",
  "client_id": "",
  "timestamp": "2023-02-09T20:19:35.39625135Z",
  "sequence_num": 0,
  "events": [
    {
      "type": "snapshot",
      "trades": [
        {
          "trade_id": "000000000",
          "product_id": "ETH-USD",
          "price": "1260.01",
          "size": "0.3",
          "side": "BUY",
          "time": "2019-08-14T20:42:27.265Z"
        }
      ]
    }
  ]
}
"#;

/// `coinbase/ticker.json`, verbatim.
const TICKER_JSON: &str = r#"{
  "channel": "ticker",
  "client_id": "",
  "timestamp": "2023-02-09T20:30:37.167359596Z",
  "sequence_num": 0,
  "events": [
    {
      "type": "snapshot",
      "tickers": [
        {
          "type": "ticker",
          "product_id": "BTC-USD",
          "price": "21932.98",
          "volume_24_h": "16038.28770938",
          "low_24_h": "21835.29",
          "high_24_h": "23011.18",
          "low_52_w": "15460",
          "high_52_w": "48240",
          "price_percent_chg_24_h": "-4.15775596190603",
          "best_bid": "21931.98",
          "best_bid_quantity": "8000.21",
          "best_ask": "21933.98",
          "best_ask_quantity": "8038.07770938"
        }
      ]
    }
  ]
}
"#;

/// `coinbase/heartbeats.json`, verbatim.
const HEARTBEATS_JSON: &str = r#"{
  "channel": "heartbeats",
  "client_id": "",
  "timestamp": "2023-06-23T20:31:26.122969572Z",
  "sequence_num": 0,
  "events": [
    {
      "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105",
      "heartbeat_counter": "3049"
    }
  ]
}
"#;

/// `coinbase/level2_snapshot.json`, verbatim.
const LEVEL2_SNAPSHOT_JSON: &str = r#"{
  "channel": "l2_data",
  "client_id": "",
  "timestamp": "2023-02-09T20:32:50.714964855Z",
  "sequence_num": 0,
  "events": [
    {
      "type": "snapshot",
      "product_id": "BTC-USD",
      "updates": [
        {
          "side": "bid",
          "event_time": "1970-01-01T00:00:00Z",
          "price_level": "21921.73",
          "new_quantity": "0.06317902"
        },
        {
          "side": "bid",
          "event_time": "1970-01-01T00:00:00Z",
          "price_level": "21921.3",
          "new_quantity": "0.02"
        }
      ]
    }
  ]
}
"#;

/// `coinbase/subscribe_request_market_trades.json`, verbatim.
const SUBSCRIBE_REQUEST_MARKET_TRADES_JSON: &str = r#"{
  "type": "subscribe",
  "product_ids": ["ETH-USD", "BTC-USD"],
  "channel": "market_trades",
  "jwt": "XYZ"
}
"#;

/// `coinbase/exchange_match.json`, verbatim.
const EXCHANGE_MATCH_JSON: &str = r#"{
  "type": "match",
  "trade_id": 10,
  "sequence": 50,
  "maker_order_id": "ac928c66-ca53-498f-9c13-a110027a60e8",
  "taker_order_id": "132fb6ae-456b-4654-b4e0-d681ac05cea1",
  "time": "2014-11-07T08:19:27.028459Z",
  "product_id": "BTC-USD",
  "size": "5.23512",
  "price": "400.23",
  "side": "sell"
}
"#;

/// `coinbase/exchange_ticker.json`, verbatim.
const EXCHANGE_TICKER_JSON: &str = r#"{
  "type": "ticker",
  "sequence": 37475248783,
  "product_id": "ETH-USD",
  "price": "1285.22",
  "open_24h": "1310.79",
  "volume_24h": "245532.79269678",
  "low_24h": "1280.52",
  "high_24h": "1313.8",
  "volume_30d": "9788783.60117027",
  "best_bid": "1285.04",
  "best_bid_size": "0.46688654",
  "best_ask": "1285.27",
  "best_ask_size": "1.56637040",
  "side": "buy",
  "time": "2022-10-19T23:28:22.061769Z",
  "trade_id": 370843401,
  "last_size": "11.4396987"
}
"#;

/// `coinbase/exchange_heartbeat.json`, verbatim.
const EXCHANGE_HEARTBEAT_JSON: &str = r#"{
  "type": "heartbeat",
  "sequence": 90,
  "last_trade_id": 20,
  "product_id": "BTC-USD",
  "time": "2014-11-07T08:19:28.464459Z"
}
"#;

/// `coinbase/exchange_l2update.json`, verbatim.
const EXCHANGE_L2UPDATE_JSON: &str = r#"{
  "type": "l2update",
  "product_id": "BTC-USD",
  "time": "2019-08-14T20:42:27.265Z",
  "changes": [
    [
      "buy",
      "10101.80000000",
      "0.162567"
    ]
  ]
}
"#;

/// `coinbase/exchange_subscriptions_response.json`, verbatim.
const EXCHANGE_SUBSCRIPTIONS_RESPONSE_JSON: &str = r#"{
  "type": "subscriptions",
  "channels": [
    {
      "name": "level2",
      "product_ids": ["ETH-USD", "ETH-EUR"]
    },
    {
      "name": "heartbeat",
      "product_ids": ["ETH-USD", "ETH-EUR"]
    },
    {
      "name": "ticker",
      "product_ids": ["ETH-USD", "ETH-EUR", "ETH-BTC"]
    }
  ]
}
"#;

fn fixture_market_trades() -> Result<Outcome, DecodeError> {
    Ok(Outcome::Ticks(vec![Tick {
        instrument: InstrumentId(1),
        venue: Venue::Coinbase,
        body: TickBody::Trade {
            price: price("1260.01"),
            qty: qty("0.3"),
            // The maker bought, so the aggressor sold.
            aggressor: Side::Sell,
        },
        seq: 0,
        exchange_ns: 1_565_815_347_265_000_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    }]))
}

fn fixture_ticker() -> Result<Outcome, DecodeError> {
    Ok(Outcome::Ticks(vec![Tick {
        instrument: InstrumentId(0),
        venue: Venue::Coinbase,
        body: TickBody::Quote {
            bid: price("21931.98"),
            bid_qty: qty("8000.21"),
            ask: price("21933.98"),
            ask_qty: qty("8038.07770938"),
        },
        seq: 0,
        exchange_ns: 1_675_974_637_167_359_596,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    }]))
}

fn fixture_exchange_match() -> Result<Outcome, DecodeError> {
    Ok(Outcome::Other(Decoded::Tick(Tick {
        instrument: InstrumentId(0),
        venue: Venue::Coinbase,
        body: TickBody::Trade {
            price: price("400.23"),
            qty: qty("5.23512"),
            // The maker sold (an up-tick), so the aggressor bought.
            aggressor: Side::Buy,
        },
        seq: 10,
        exchange_ns: 1_415_348_367_028_459_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })))
}

fn fixture_exchange_ticker() -> Result<Outcome, DecodeError> {
    Ok(Outcome::Other(Decoded::Tick(Tick {
        instrument: InstrumentId(1),
        venue: Venue::Coinbase,
        body: TickBody::Quote {
            bid: price("1285.04"),
            bid_qty: qty("0.46688654"),
            ask: price("1285.27"),
            ask_qty: qty("1.5663704"),
        },
        seq: 37_475_248_783,
        exchange_ns: 1_666_222_102_061_769_000,
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    })))
}

/// What each docs fixture file decodes to.
fn fixture_expectations() -> Vec<(&'static str, Result<Outcome, DecodeError>)> {
    use DecodeReason::UnknownMessage;
    vec![
        ("market_trades.json", fixture_market_trades()),
        ("ticker.json", fixture_ticker()),
        ("heartbeats.json", control(Control::Heartbeat)),
        ("level2_snapshot.json", skip(SkipKind::Depth)),
        ("candles.json", skip(SkipKind::Other)),
        ("status.json", skip(SkipKind::Other)),
        ("exchange_match.json", fixture_exchange_match()),
        ("exchange_ticker.json", fixture_exchange_ticker()),
        ("exchange_heartbeat.json", control(Control::Heartbeat)),
        ("exchange_l2update.json", skip(SkipKind::Depth)),
        ("exchange_l2update_multi.json", skip(SkipKind::Depth)),
        ("exchange_level2_snapshot.json", skip(SkipKind::Depth)),
        ("exchange_subscriptions_response.json", control(Control::Subscribed)),
        // Our own requests, and REST order responses, never arrive on a market-data stream.
        ("subscribe_request_candles.json", refused(UnknownMessage, "")),
        ("subscribe_request_heartbeats.json", refused(UnknownMessage, "")),
        ("subscribe_request_level2.json", refused(UnknownMessage, "")),
        ("subscribe_request_market_trades.json", refused(UnknownMessage, "")),
        ("subscribe_request_public_no_jwt.json", refused(UnknownMessage, "")),
        ("subscribe_request_status.json", refused(UnknownMessage, "")),
        ("subscribe_request_ticker.json", refused(UnknownMessage, "")),
        ("subscribe_request_ticker_batch.json", refused(UnknownMessage, "")),
        ("subscribe_request_with_jwt.json", refused(UnknownMessage, "")),
        ("unsubscribe_request_public_no_jwt.json", refused(UnknownMessage, "")),
        ("exchange_subscribe_request.json", refused(UnknownMessage, "")),
        ("exchange_subscribe_request_heartbeat.json", refused(UnknownMessage, "")),
        ("exchange_subscribe_request_level2.json", refused(UnknownMessage, "")),
        (
            "exchange_subscribe_request_level2_batch.json",
            refused(UnknownMessage, ""),
        ),
        ("exchange_subscribe_request_ticker.json", refused(UnknownMessage, "")),
        ("exchange_unsubscribe_request.json", refused(UnknownMessage, "")),
        ("rest_create_order_response.json", refused(UnknownMessage, "")),
    ]
}

#[test]
fn docs_fixture_texts_decode_to_the_right_thing() {
    let decode = |text: &str| outcome(text.as_bytes());
    assert_eq!(decode(MARKET_TRADES_JSON), fixture_market_trades());
    assert_eq!(decode(TICKER_JSON), fixture_ticker());
    assert_eq!(decode(HEARTBEATS_JSON), control(Control::Heartbeat));
    assert_eq!(decode(LEVEL2_SNAPSHOT_JSON), skip(SkipKind::Depth));
    assert_eq!(
        decode(SUBSCRIBE_REQUEST_MARKET_TRADES_JSON),
        refused(DecodeReason::UnknownMessage, "")
    );
    assert_eq!(decode(EXCHANGE_MATCH_JSON), fixture_exchange_match());
    assert_eq!(decode(EXCHANGE_TICKER_JSON), fixture_exchange_ticker());
    assert_eq!(decode(EXCHANGE_HEARTBEAT_JSON), control(Control::Heartbeat));
    assert_eq!(decode(EXCHANGE_L2UPDATE_JSON), skip(SkipKind::Depth));
    assert_eq!(
        decode(EXCHANGE_SUBSCRIPTIONS_RESPONSE_JSON),
        control(Control::Subscribed)
    );
    // The live feed sends the heartbeat counter as an integer (the AsyncAPI reference).
    let live = HEARTBEATS_JSON.replace(r#""3049""#, "3049");
    assert_eq!(decode(&live), control(Control::Heartbeat));
    // An index that does not list the docs' products refuses their ticks.
    let other = index_of(&["SOL-USD"]);
    let mut decoder = CoinbaseDecoder::new();
    for text in [
        MARKET_TRADES_JSON,
        TICKER_JSON,
        EXCHANGE_MATCH_JSON,
        EXCHANGE_TICKER_JSON,
    ] {
        assert_eq!(
            run(&mut decoder, text.as_bytes(), &other),
            refused(DecodeReason::UnknownSymbol, "product_id"),
            "{text}"
        );
    }
}

#[test]
fn docs_fixture_files_decode_to_the_right_thing() {
    let Some(shared) = shared_dir("docs fixture") else {
        return;
    };
    let dir = shared.join("fixtures/venues/coinbase");
    let index = index();
    let mut decoder = CoinbaseDecoder::new();
    let expectations = fixture_expectations();
    for (name, expected) in &expectations {
        let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&run(&mut decoder, &text, &index), expected, "{name}");
    }
    // The texts copied into this file are the files' contents.
    for (name, copy) in [
        ("market_trades.json", MARKET_TRADES_JSON),
        ("ticker.json", TICKER_JSON),
        ("heartbeats.json", HEARTBEATS_JSON),
        ("level2_snapshot.json", LEVEL2_SNAPSHOT_JSON),
        (
            "subscribe_request_market_trades.json",
            SUBSCRIBE_REQUEST_MARKET_TRADES_JSON,
        ),
        ("exchange_match.json", EXCHANGE_MATCH_JSON),
        ("exchange_ticker.json", EXCHANGE_TICKER_JSON),
        ("exchange_heartbeat.json", EXCHANGE_HEARTBEAT_JSON),
        ("exchange_l2update.json", EXCHANGE_L2UPDATE_JSON),
        (
            "exchange_subscriptions_response.json",
            EXCHANGE_SUBSCRIPTIONS_RESPONSE_JSON,
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(text.trim_end(), copy.trim_end(), "{name}");
    }
    // Fixtures added later must at least decode without panicking.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !expectations.iter().any(|(n, _)| *n == name) {
            let result = run(&mut decoder, &std::fs::read(&path).unwrap(), &index);
            eprintln!("note: fixture {name} has no expectation here; it decodes to {result:?}");
        }
    }
}

#[test]
fn decoder_trait_forwards_and_declares_its_numbering() {
    let mut decoder = CoinbaseDecoder::new();
    let index = index();
    let heartbeat = |seq: u64| HEARTBEATS_JSON.replace(r#""sequence_num": 0"#, &format!(r#""sequence_num": {seq}"#));
    let gaps = |decoder: &mut CoinbaseDecoder, seq| {
        let mut out = TickBatch::new();
        let decoded = Decode::decode(decoder, heartbeat(seq).as_bytes(), META, &index, &mut out);
        assert_eq!(decoded, Ok(Decoded::Control(Control::Heartbeat)));
        out.gaps
    };
    assert_eq!(gaps(&mut decoder, 1), 0);
    assert_eq!(gaps(&mut decoder, 3), 1);
    Decode::on_connect(&mut decoder);
    assert_eq!(gaps(&mut decoder, 40), 0);
    let sequencing = Decode::sequencing(&decoder);
    assert_eq!(
        (sequencing.trades, sequencing.quotes),
        (Numbering::Increasing, Numbering::None)
    );
}

// ---------------------------------------------------------------------------------------------
// The real legacy Exchange capture.

/// Frames of a cryptofeed capture: each `<unix seconds>.<fraction>: <json>` line, with the
/// receive time in nanoseconds. Connection markers (`<url> <-> ts`), our own sent messages
/// (`<url> <- ts: json`) and configuration lines are left out.
fn cryptofeed_frames(text: &str) -> Vec<(u64, &str)> {
    let mut frames = Vec::new();
    for line in text.lines() {
        let Some((stamp, json)) = line.split_once(": ") else {
            continue;
        };
        let Some((secs, frac)) = stamp.split_once('.') else {
            continue;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(secs) || !digits(frac) || frac.len() > 9 {
            continue;
        }
        let ns = secs.parse::<u64>().unwrap() * 1_000_000_000 + format!("{frac:0<9}").parse::<u64>().unwrap();
        frames.push((ns, json));
    }
    frames
}

/// The ten products of `COINBASE.ws.28.0`.
const CAPTURE_PRODUCTS: [&str; 10] = [
    "SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP", "CRV-EUR", "SKL-GBP",
];

fn capture_text() -> Option<String> {
    let shared = shared_dir("capture")?;
    let path = shared.join("data/cryptofeed/COINBASE.ws.28.0");
    if !path.is_file() {
        eprintln!("note: {} is absent, skipping the capture checks", path.display());
        return None;
    }
    Some(std::fs::read_to_string(&path).unwrap())
}

/// Per-type totals of one capture replay: by the frame's own `type`, and by what it became.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    snapshot: usize,
    l2update: usize,
    ticker: usize,
    matches: usize,
    last_match: usize,
    subscriptions: usize,
    trades: usize,
    quotes: usize,
    depth: usize,
    subscribed: usize,
}

#[test]
fn legacy_capture_decodes_without_errors() {
    let Some(text) = capture_text() else {
        return;
    };
    let frames = cryptofeed_frames(&text);
    let index = index_of(&CAPTURE_PRODUCTS);
    let mut decoder = CoinbaseDecoder::new();
    let mut totals = Totals::default();
    let mut errors = Vec::new();
    let mut last_trade_id = [0u64; CAPTURE_PRODUCTS.len()];
    let mut first_match = None;
    for (n, (recv_ns, json)) in frames.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let kind = value["type"].as_str().unwrap_or("").to_owned();
        match kind.as_str() {
            "snapshot" => totals.snapshot += 1,
            "l2update" => totals.l2update += 1,
            "ticker" => totals.ticker += 1,
            "match" => totals.matches += 1,
            "last_match" => totals.last_match += 1,
            "subscriptions" => totals.subscriptions += 1,
            other => panic!("frame {n}: unexpected type {other:?}"),
        }
        let meta = FrameMeta {
            recv_ns: *recv_ns,
            stamp: Stamp(n as u64),
        };
        let mut out = TickBatch::new();
        let decoded = match decoder.decode(json.as_bytes(), meta, &index, &mut out) {
            Ok(decoded) => decoded,
            Err(e) => {
                errors.push(format!("frame {n}: {e}: {json}"));
                continue;
            }
        };
        match decoded {
            Decoded::Tick(tick) => {
                assert_eq!(
                    (tick.venue, tick.recv_ns, tick.stamp),
                    (Venue::Coinbase, *recv_ns, Stamp(n as u64))
                );
                let product = CAPTURE_PRODUCTS[tick.instrument.index()];
                assert_eq!(value["product_id"], product, "frame {n}");
                assert!(tick.exchange_ns > 1_618_000_000_000_000_000, "frame {n}");
                match tick.body {
                    TickBody::Trade { price, qty, aggressor } => {
                        assert!(price > Price::ZERO && qty > Qty::ZERO);
                        assert_eq!(price, value["price"].as_str().unwrap().parse().unwrap());
                        let maker = value["side"].as_str().unwrap();
                        assert_eq!(aggressor.name(), if maker == "sell" { "buy" } else { "sell" });
                        assert_eq!(tick.seq, value["trade_id"].as_u64().unwrap());
                        // Per product, `last_match` comes first and trade ids only increase.
                        let last = &mut last_trade_id[tick.instrument.index()];
                        assert!(tick.seq > *last, "frame {n}: trade id went back");
                        *last = tick.seq;
                        if kind == "match" && first_match.is_none() {
                            first_match = Some(tick);
                        }
                        totals.trades += 1;
                    }
                    TickBody::Quote {
                        bid,
                        bid_qty,
                        ask,
                        ask_qty,
                    } => {
                        assert!(Price::ZERO < bid && bid <= ask, "frame {n}");
                        // These tickers predate the size fields.
                        assert_eq!((bid_qty, ask_qty), (Qty::ZERO, Qty::ZERO));
                        assert_eq!(tick.seq, value["sequence"].as_u64().unwrap());
                        totals.quotes += 1;
                    }
                }
            }
            Decoded::Skipped(SkipKind::Depth) => totals.depth += 1,
            Decoded::Control(Control::Subscribed) => totals.subscribed += 1,
            other => panic!("frame {n}: unexpected {other:?}"),
        }
    }
    assert!(errors.is_empty(), "{} errors, first: {}", errors.len(), errors[0]);
    assert_eq!(
        totals,
        Totals {
            snapshot: 10,
            l2update: 9_719,
            ticker: 107,
            matches: 97,
            last_match: 10,
            subscriptions: 3,
            trades: 107,
            quotes: 107,
            depth: 9_729,
            subscribed: 3,
        }
    );
    // The first `match` line of the file, field by field.
    let first = first_match.unwrap();
    assert_eq!(first.instrument, InstrumentId(1), "SKL-BTC");
    assert_eq!(
        first.body,
        TickBody::Trade {
            price: price("0.00001305"),
            qty: qty("985"),
            aggressor: Side::Buy
        }
    );
    assert_eq!(first.seq, 280_232);
    assert_eq!(first.exchange_ns, 1_618_677_817_089_723_000);
    assert_eq!(first.recv_ns, 1_618_677_817_129_516_100);
}

#[test]
fn replaying_the_capture_twice_does_not_allocate_the_second_time() {
    let Some(text) = capture_text() else {
        return;
    };
    let frames = cryptofeed_frames(&text);
    let index = index_of(&CAPTURE_PRODUCTS);
    let mut decoder = CoinbaseDecoder::new();
    let mut out = TickBatch::new();
    let mut pass = |decoder: &mut CoinbaseDecoder| {
        let before = allocations();
        let mut ok = 0usize;
        for (recv_ns, json) in &frames {
            out.clear();
            let meta = FrameMeta {
                recv_ns: *recv_ns,
                stamp: Stamp(0),
            };
            ok += usize::from(decoder.decode(json.as_bytes(), meta, &index, &mut out).is_ok());
        }
        assert_eq!(ok, frames.len());
        allocations() - before
    };
    // The first pass grows the buffers once for the 40 KB snapshot lines.
    pass(&mut decoder);
    assert_eq!(pass(&mut decoder), 0);
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

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A canonical decimal (as Coinbase prints them) between `lo` and `lo + span` units.
    fn decimal(&mut self, lo: u64, span: u64) -> String {
        let raw = lo * ONE as u64 + self.below(span * ONE as u64) + 1;
        Price::from_raw(raw as i64).unwrap().to_string()
    }
}

/// Real-format frames of every kind the engine sees: Advanced Trade trade batches of 1 to 64
/// trades, tickers, heartbeats and book messages, and legacy matches and tickers.
fn realistic_frames(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let mut trade_id = 593_468_395u64;
    let mut sequence = 37_475_248_783u64;
    let mut ns = 1_723_161_255_342_123_456u64;
    (0..count)
        .map(|i| {
            let (product, lo) = if rng.below(2) == 0 { ("BTC-USD", 61_000) } else { ("ETH-USD", 2_500) };
            ns += rng.below(50_000_000);
            let stamp = rfc3339(ns, 9);
            let frame = match i % 6 {
                0 => {
                    let n = 1 + rng.below(MAX_TICKS_PER_FRAME as u64) as usize;
                    let trades: Vec<String> = (0..n)
                        .map(|_| {
                            trade_id += 1;
                            ns += rng.below(1_000_000);
                            format!(
                                r#"{{"trade_id":"{trade_id}","product_id":"{product}","price":"{}","size":"{}","side":"{}","time":"{}"}}"#,
                                rng.decimal(lo, 1_000),
                                rng.decimal(0, 5),
                                if rng.below(2) == 0 { "BUY" } else { "SELL" },
                                rfc3339(ns / 1_000 * 1_000, 6),
                            )
                        })
                        .collect();
                    format!(
                        r#"{{"channel":"market_trades","client_id":"","timestamp":"{stamp}","sequence_num":{i},"events":[{{"type":"update","trades":[{}]}}]}}"#,
                        trades.join(",")
                    )
                }
                1 => format!(
                    r#"{{"channel":"ticker","client_id":"","timestamp":"{stamp}","sequence_num":{i},"events":[{{"type":"update","tickers":[{{"type":"ticker","product_id":"{product}","price":"{}","volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"{}","best_bid_quantity":"{}","best_ask":"{}","best_ask_quantity":"{}"}}]}}]}}"#,
                    rng.decimal(lo, 1_000),
                    rng.decimal(lo, 1_000),
                    rng.decimal(0, 5),
                    rng.decimal(lo + 1_000, 1_000),
                    rng.decimal(0, 5),
                ),
                2 => format!(
                    r#"{{"channel":"heartbeats","client_id":"","timestamp":"{stamp}","sequence_num":{i},"events":[{{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":{i}}}]}}"#
                ),
                3 => format!(
                    r#"{{"channel":"l2_data","client_id":"","timestamp":"{stamp}","sequence_num":{i},"events":[{{"type":"update","product_id":"{product}","updates":[{{"side":"offer","event_time":"{stamp}","price_level":"{}","new_quantity":"{}"}}]}}]}}"#,
                    rng.decimal(lo, 1_000),
                    rng.decimal(0, 5),
                ),
                4 => {
                    trade_id += 1;
                    sequence += 1 + rng.below(10);
                    format!(
                        r#"{{"type":"match","trade_id":{trade_id},"maker_order_id":"2a0da34e-61f7-4c36-88e5-c9dd15927b16","taker_order_id":"3c82abaa-c01e-4608-be59-6a1e69742891","side":"{}","size":"{}","price":"{}","product_id":"{product}","sequence":{sequence},"time":"{}"}}"#,
                        if rng.below(2) == 0 { "buy" } else { "sell" },
                        rng.decimal(0, 5),
                        rng.decimal(lo, 1_000),
                        rfc3339(ns / 1_000 * 1_000, 6),
                    )
                }
                _ => {
                    sequence += 1 + rng.below(10);
                    format!(
                        r#"{{"type":"ticker","sequence":{sequence},"product_id":"{product}","price":"{}","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"{}","best_bid_size":"{}","best_ask":"{}","best_ask_size":"{}","side":"buy","time":"{}","trade_id":{trade_id},"last_size":"11.4396987"}}"#,
                        rng.decimal(lo, 1_000),
                        rng.decimal(lo, 1_000),
                        rng.decimal(0, 5),
                        rng.decimal(lo + 1_000, 1_000),
                        rng.decimal(0, 5),
                        rfc3339(ns / 1_000 * 1_000, 6),
                    )
                }
            };
            frame.into_bytes()
        })
        .collect()
}

/// Decodes every frame, expecting no error; returns how many this thread allocated meanwhile.
fn allocations_while_decoding(
    decoder: &mut CoinbaseDecoder,
    frames: &[Vec<u8>],
    index: &InstrumentIndex,
    out: &mut TickBatch,
) -> u64 {
    let before = allocations();
    let mut ok = 0usize;
    let mut ticks = 0usize;
    for (i, frame) in frames.iter().enumerate() {
        out.clear();
        let meta = FrameMeta {
            recv_ns: i as u64,
            stamp: Stamp(i as u64),
        };
        match decoder.decode(frame, meta, index, out) {
            Ok(Decoded::Ticks) => {
                ok += 1;
                ticks += out.len();
            }
            Ok(Decoded::Tick(_)) => {
                ok += 1;
                ticks += 1;
            }
            Ok(_) => ok += 1,
            Err(_) => {}
        }
    }
    let spent = allocations() - before;
    assert_eq!(ok, frames.len(), "every frame decodes");
    assert!(ticks >= frames.len() / 2);
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
    let decoder = std::hint::black_box(CoinbaseDecoder::new());
    assert!(allocations() - before >= 3);
    drop(decoder);
}

#[test]
fn steady_state_decoding_does_not_allocate() {
    let index = index();
    let warm_up = realistic_frames(1_000, 0x9e37_79b9_7f4a_7c15);
    let measured = realistic_frames(10_000, 0xdead_beef_cafe_f00d);
    let mut decoder = CoinbaseDecoder::new();
    let mut out = TickBatch::new();
    allocations_while_decoding(&mut decoder, &warm_up, &index, &mut out);
    assert_eq!(allocations_while_decoding(&mut decoder, &measured, &index, &mut out), 0);
}

// ---------------------------------------------------------------------------------------------
// Generated frames.

/// Writes `ns` since the epoch as RFC 3339 UTC with `digits` fractional digits (0 to 9), which
/// must hold the fraction exactly. The inverse of the decoder's parser, written independently
/// (Howard Hinnant's `civil_from_days`).
fn rfc3339(ns: u64, digits: u32) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        tod / 3_600,
        tod / 60 % 60,
        tod % 60
    );
    if digits > 0 {
        let scale = 10u64.pow(9 - digits);
        assert_eq!(frac % scale, 0, "{digits} digits cannot hold {frac} ns");
        text.push_str(&format!(".{:0width$}", frac / scale, width = digits as usize));
    } else {
        assert_eq!(frac, 0);
    }
    text.push('Z');
    text
}

/// A time in the range venues use (2000 to 2100), with `digits` fractional digits that hold it
/// exactly.
fn time_case() -> impl Strategy<Value = (u64, u32)> {
    (946_684_800u64..4_102_444_800, 0u32..=9, any::<u32>()).prop_map(|(secs, digits, frac)| {
        let scale = 10u64.pow(9 - digits);
        let frac_ns = u64::from(frac) % 1_000_000_000 / scale * scale;
        (secs * 1_000_000_000 + frac_ns, digits)
    })
}

/// Raw 10^-8 counts of a strictly positive decimal, biased toward realistic magnitudes.
fn positive_raw() -> impl Strategy<Value = i64> {
    prop_oneof![1..=10_000_000 * ONE, 1..=i64::MAX]
}

fn decimal_text(raw: i64, padded: bool) -> String {
    if padded {
        format!("{}.{:08}", raw / ONE, raw % ONE)
    } else {
        Price::from_raw(raw).unwrap().to_string()
    }
}

/// How a JSON value may be written wrongly for a field of this type.
#[derive(Clone, Copy, Debug)]
enum Wire {
    Str,
    Int,
}

impl Wire {
    /// Values of other JSON types than the field's.
    fn wrong_values(self) -> &'static [&'static str] {
        match self {
            Wire::Str => &["1", "1.5", "-2", "true", "null", "{}", "[]", r#"["1"]"#, r#"{"a":"1"}"#],
            Wire::Int => &[r#""1x""#, "1.5", "1e3", "false", "null", "{}", "[]", "[1]"],
        }
    }
}

/// A JSON object as a list of fields, so that tests can reorder, drop or retype them.
#[derive(Clone, Debug)]
struct Fields(Vec<(&'static str, Wire, String)>);

impl Fields {
    fn text(&self, spaced: bool) -> String {
        let (sep, colon) = if spaced { (", ", ": ") } else { (",", ":") };
        let body: Vec<String> = self.0.iter().map(|(k, _, v)| format!(r#""{k}"{colon}{v}"#)).collect();
        format!("{{{}}}", body.join(sep))
    }
}

/// One generated trade: its fields and the tick it must give.
fn trade(at_ns: u64) -> impl Strategy<Value = (Fields, Tick)> {
    (
        prop_oneof![Just((0u16, "BTC-USD")), Just((1u16, "ETH-USD"))],
        (positive_raw(), positive_raw(), any::<bool>(), any::<bool>()),
        (
            0u32..=9,
            prop_oneof![Just("BUY"), Just("SELL"), Just("buy"), Just("sell")],
        ),
        Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(move |((id, product), (p, q, pad_p, pad_q), (digits, side), order)| {
            // Keep only the fraction `digits` can hold, so the text is exact.
            let scale = 10u64.pow(9 - digits);
            let ns = at_ns / scale * scale;
            let all = [
                ("trade_id", Wire::Str, String::new()),
                ("product_id", Wire::Str, format!(r#""{product}""#)),
                ("price", Wire::Str, format!(r#""{}""#, decimal_text(p, pad_p))),
                ("size", Wire::Str, format!(r#""{}""#, decimal_text(q, pad_q))),
                ("side", Wire::Str, format!(r#""{side}""#)),
                ("time", Wire::Str, format!(r#""{}""#, rfc3339(ns, digits))),
            ];
            let fields = Fields(order.iter().map(|&i| all[i].clone()).collect());
            let maker_bought = side.eq_ignore_ascii_case("buy");
            let tick = Tick {
                instrument: InstrumentId(id),
                venue: Venue::Coinbase,
                body: TickBody::Trade {
                    price: Price::from_raw(p).unwrap(),
                    qty: Qty::from_raw(q).unwrap(),
                    aggressor: if maker_bought { Side::Sell } else { Side::Buy },
                },
                seq: 0,
                exchange_ns: ns,
                recv_ns: META.recv_ns,
                stamp: META.stamp,
            };
            (fields, tick)
        })
}

/// A valid `market_trades` message with `n` trades spread over one to three events, in time
/// order with increasing ids (so the decoder keeps the wire order), and the ticks it must give.
#[derive(Clone, Debug)]
struct TradesCase {
    trades: Vec<Fields>,
    ticks: Vec<Tick>,
    events: Vec<usize>,
    sequence_num: u64,
    spaced: bool,
}

impl TradesCase {
    fn text(&self) -> String {
        let (sep, colon) = if self.spaced { (", ", ": ") } else { (",", ":") };
        let mut events = Vec::new();
        let mut from = 0;
        for (e, &to) in self.events.iter().enumerate() {
            let kind = if e == 0 { "snapshot" } else { "update" };
            let list: Vec<String> = self.trades[from..to].iter().map(|t| t.text(self.spaced)).collect();
            events.push(format!(
                r#"{{"type"{colon}"{kind}"{sep}"trades"{colon}[{}]}}"#,
                list.join(sep)
            ));
            from = to;
        }
        format!(
            r#"{{"channel"{colon}"market_trades"{sep}"client_id"{colon}""{sep}"timestamp"{colon}"2023-02-09T20:19:35.39625135Z"{sep}"sequence_num"{colon}{}{sep}"events"{colon}[{}]}}"#,
            self.sequence_num,
            events.join(sep)
        )
    }
}

fn trades_case(counts: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = TradesCase> {
    (
        counts,
        946_684_800_000_000_000u64..4_000_000_000_000_000_000,
        any::<u64>(),
    )
        .prop_flat_map(|(n, start_ns, first_id)| {
            let first_id = first_id % (u64::MAX - 1_000);
            let trades: Vec<_> = (0..n).map(|i| trade(start_ns + i as u64 * 1_000_000_000)).collect();
            (
                trades,
                Just(first_id),
                proptest::collection::vec(0..=n, 0..3),
                any::<u64>(),
                any::<bool>(),
            )
        })
        .prop_map(|(trades, first_id, mut cuts, sequence_num, spaced)| {
            let n = trades.len();
            cuts.push(n);
            cuts.sort_unstable();
            let (mut fields, mut ticks) = (Vec::new(), Vec::new());
            for (i, (mut f, mut tick)) in trades.into_iter().enumerate() {
                let id = first_id + i as u64;
                // Leading zeros are allowed: the docs sample's id is "000000000".
                let text = if i % 3 == 0 {
                    format!("{id:020}")
                } else {
                    id.to_string()
                };
                for field in &mut f.0 {
                    if field.0 == "trade_id" {
                        field.2 = format!(r#""{text}""#);
                    }
                }
                tick.seq = id;
                fields.push(f);
                ticks.push(tick);
            }
            TradesCase {
                trades: fields,
                ticks,
                events: cuts,
                sequence_num,
                spaced,
            }
        })
}

/// A valid Advanced Trade ticker message and the quote it must give.
fn ticker_case() -> impl Strategy<Value = (String, Tick)> {
    (
        prop_oneof![Just((0u16, "BTC-USD")), Just((1u16, "ETH-USD"))],
        (positive_raw(), 0..=i64::MAX, positive_raw(), 0..=i64::MAX),
        time_case(),
        any::<u64>(),
    )
        .prop_map(|((id, product), (b, bq, a, aq), (ns, digits), seq)| {
            let text = format!(
                r#"{{"channel":"ticker","client_id":"","timestamp":"{}","sequence_num":{seq},"events":[{{"type":"update","tickers":[{{"type":"ticker","product_id":"{product}","price":"1","best_bid":"{}","best_bid_quantity":"{}","best_ask":"{}","best_ask_quantity":"{}"}}]}}]}}"#,
                rfc3339(ns, digits),
                decimal_text(b, false),
                decimal_text(bq, true),
                decimal_text(a, true),
                decimal_text(aq, false),
            );
            let tick = Tick {
                instrument: InstrumentId(id),
                venue: Venue::Coinbase,
                body: TickBody::Quote {
                    bid: Price::from_raw(b).unwrap(),
                    bid_qty: Qty::from_raw(bq).unwrap(),
                    ask: Price::from_raw(a).unwrap(),
                    ask_qty: Qty::from_raw(aq).unwrap(),
                },
                seq,
                exchange_ns: ns,
                recv_ns: META.recv_ns,
                stamp: META.stamp,
            };
            (text, tick)
        })
}

/// A valid legacy `match` (fields in any order) and the trade it must give.
fn legacy_match_case() -> impl Strategy<Value = (Fields, Tick)> {
    (any::<u64>(), any::<u64>(), time_case(), trade(0)).prop_map(
        |(trade_id, sequence, (ns, digits), (fields, tick))| {
            let mut fields = fields;
            for field in &mut fields.0 {
                match field.0 {
                    "trade_id" => *field = ("trade_id", Wire::Int, trade_id.to_string()),
                    "time" => field.2 = format!(r#""{}""#, rfc3339(ns, digits)),
                    _ => {}
                }
            }
            fields.0.push(("sequence", Wire::Int, sequence.to_string()));
            fields.0.push(("type", Wire::Str, r#""match""#.to_string()));
            fields.0.rotate_right(1);
            let tick = Tick {
                seq: trade_id,
                exchange_ns: ns,
                ..tick
            };
            (fields, tick)
        },
    )
}

/// Fields whose loss or retyping must be reported against that field, in an Advanced Trade
/// trade.
const TRADE_FIELDS: [&str; 6] = ["trade_id", "product_id", "price", "size", "side", "time"];

fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
    CoinbaseDecoder::new().decode(frame, META, &index(), &mut TickBatch::new())
}

/// A successful decode never carries an impossible price or quantity, and never more ticks
/// than a batch holds.
fn assert_sane(frame: &[u8]) {
    let mut out = TickBatch::new();
    let result = CoinbaseDecoder::new().decode(frame, META, &index(), &mut out);
    let check = |tick: &Tick| match tick.body {
        TickBody::Trade { price, qty, .. } => assert!(price > Price::ZERO && qty > Qty::ZERO),
        TickBody::Quote { bid, ask, .. } => assert!(bid > Price::ZERO && ask > Price::ZERO),
    };
    match result {
        Ok(Decoded::Tick(tick)) => check(&tick),
        Ok(Decoded::Ticks) => out.as_slice().iter().for_each(check),
        Ok(_) => assert!(out.is_empty()),
        Err(_) => assert!(out.is_empty()),
    }
}

proptest! {
    // Failing cases are kept in `hot/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/feed_coinbase_decode.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        assert_sane(&bytes);
    }

    #[test]
    fn json_like_noise_never_panics(text in r#"[{}\[\]":,\\ a-zA-Z0-9._TZ+-]{0,300}"#) {
        assert_sane(text.as_bytes());
    }

    #[test]
    fn corrupted_valid_frames_never_panic_or_lie(
        case in trades_case(1..=8),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = case.text().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        assert_sane(&bytes);
    }

    #[test]
    fn generated_trade_batches_round_trip_exactly(case in trades_case(1..=MAX_TICKS_PER_FRAME)) {
        let text = case.text();
        prop_assert_eq!(outcome(text.as_bytes()), Ok(Outcome::Ticks(case.ticks.clone())));
    }

    #[test]
    fn a_batch_in_any_order_comes_out_in_time_order(case in trades_case(2..=16), seed in any::<u64>()) {
        let mut shuffled = case.clone();
        let mut rng = Rng(seed | 1);
        for i in (1..shuffled.trades.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            shuffled.trades.swap(i, j);
        }
        prop_assert_eq!(outcome(shuffled.text().as_bytes()), Ok(Outcome::Ticks(case.ticks)));
    }

    #[test]
    fn more_than_a_batch_holds_is_refused_whole(case in trades_case(MAX_TICKS_PER_FRAME + 1..=100)) {
        let mut out = TickBatch::new();
        let result = CoinbaseDecoder::new().decode(case.text().as_bytes(), META, &index(), &mut out);
        prop_assert_eq!(result, err(DecodeReason::TooManyTicks, ""));
        prop_assert!(out.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error(case in trades_case(1..=4)) {
        let text = case.text();
        let mut decoder = CoinbaseDecoder::new();
        let index = index();
        prop_assert_eq!(run(&mut decoder, text.as_bytes(), &index), Ok(Outcome::Ticks(case.ticks)));
        for len in 0..text.len() {
            let result = run(&mut decoder, &text.as_bytes()[..len], &index);
            prop_assert!(result.is_err(), "prefix of {} bytes decoded to {:?}", len, result);
        }
    }

    #[test]
    fn a_retyped_trade_field_is_a_bad_type(
        mut case in trades_case(1..=4),
        which in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        value in any::<prop::sample::Index>(),
    ) {
        let t = which.index(case.trades.len());
        let f = field.index(case.trades[t].0.len());
        let (key, wire, _) = case.trades[t].0[f].clone();
        let wrong = wire.wrong_values();
        case.trades[t].0[f].2 = wrong[value.index(wrong.len())].to_string();
        prop_assert!(TRADE_FIELDS.contains(&key));
        prop_assert_eq!(decode(case.text().as_bytes()), err(DecodeReason::BadType, key));
    }

    #[test]
    fn a_missing_trade_field_is_named(
        mut case in trades_case(1..=4),
        which in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
    ) {
        let t = which.index(case.trades.len());
        let f = field.index(case.trades[t].0.len());
        let (key, _, _) = case.trades[t].0.remove(f);
        prop_assert_eq!(decode(case.text().as_bytes()), err(DecodeReason::MissingField, key));
    }

    #[test]
    fn generated_tickers_round_trip_exactly((text, tick) in ticker_case()) {
        prop_assert_eq!(outcome(text.as_bytes()), Ok(Outcome::Ticks(vec![tick])));
    }

    #[test]
    fn generated_legacy_matches_round_trip_exactly((fields, tick) in legacy_match_case(), spaced in any::<bool>()) {
        prop_assert_eq!(decode(fields.text(spaced).as_bytes()), Ok(Decoded::Tick(tick)));
    }

    #[test]
    fn a_retyped_legacy_field_is_a_bad_type(
        (mut fields, _) in legacy_match_case(),
        field in any::<prop::sample::Index>(),
        value in any::<prop::sample::Index>(),
    ) {
        // Skip `type`: without it the message is not a match at all.
        let f = 1 + field.index(fields.0.len() - 1);
        let (key, wire, _) = fields.0[f].clone();
        let wrong = wire.wrong_values();
        fields.0[f].2 = wrong[value.index(wrong.len())].to_string();
        prop_assert_eq!(decode(fields.text(false).as_bytes()), err(DecodeReason::BadType, key));
    }

    #[test]
    fn times_round_trip_through_the_parser((ns, digits) in time_case()) {
        prop_assert_eq!(parse_rfc3339_ns(rfc3339(ns, digits).as_bytes()), Ok(ns));
    }

    #[test]
    fn time_noise_never_panics(text in "[0-9:.TZtz+ -]{0,40}") {
        let _ = parse_rfc3339_ns(text.as_bytes());
    }
}

#[test]
fn malformed_trades_say_why() {
    use DecodeReason::*;
    let good = r#"{"channel":"market_trades","timestamp":"2023-02-09T20:19:35Z","sequence_num":3,"events":[{"type":"update","trades":[{"trade_id":"7","product_id":"BTC-USD","price":"1.5","size":"2","side":"SELL","time":"2023-02-09T20:19:35.1Z"}]}]}"#;
    assert!(matches!(outcome(good.as_bytes()), Ok(Outcome::Ticks(t)) if t.len() == 1));
    let bad = |from: &str, to: &str| decode(good.replacen(from, to, 1).as_bytes());
    assert_eq!(
        bad(r#""price":"1.5""#, r#""price":"0""#),
        err(NonPositivePrice, "price")
    );
    assert_eq!(
        bad(r#""price":"1.5""#, r#""price":"-1.5""#),
        err(NonPositivePrice, "price")
    );
    assert_eq!(bad(r#""price":"1.5""#, r#""price":"1e3""#), err(BadDecimal, "price"));
    assert_eq!(bad(r#""price":"1.5""#, r#""price":1.5"#), err(BadType, "price"));
    assert_eq!(bad(r#""size":"2""#, r#""size":"0.000""#), err(ZeroQty, "size"));
    assert_eq!(bad(r#""size":"2""#, r#""size":"-2""#), err(BadDecimal, "size"));
    assert_eq!(bad(r#""side":"SELL""#, r#""side":"UNKNOWN""#), err(BadType, "side"));
    assert_eq!(bad(r#""trade_id":"7""#, r#""trade_id":"7a""#), err(BadType, "trade_id"));
    assert_eq!(bad(r#""trade_id":"7""#, r#""trade_id":7"#), err(BadType, "trade_id"));
    assert_eq!(
        bad(r#""trade_id":"7""#, r#""trade_id":"99999999999999999999""#),
        err(OutOfRange, "trade_id")
    );
    assert_eq!(bad("35.1Z", "35.1"), err(BadType, "time"));
    assert_eq!(
        bad("2023-02-09T20:19:35.1Z", "1960-01-01T00:00:00Z"),
        err(OutOfRange, "time")
    );
    assert_eq!(bad("BTC-USD", "btc-usd"), err(UnknownSymbol, "product_id"));
    assert_eq!(
        bad(r#""sequence_num":3"#, r#""sequence_num":-3"#),
        err(OutOfRange, "sequence_num")
    );
    assert_eq!(
        bad(r#""sequence_num":3"#, r#""sequence_num":"3""#),
        err(BadType, "sequence_num")
    );
    assert_eq!(
        bad(r#""channel":"market_trades""#, r#""channel":1"#),
        err(BadType, "channel")
    );
    assert!(bad(r#""events":["#, r#""events":{"a":["#).is_err());
    assert_eq!(bad(r#""events":[{"#, r#""events":[1,{"#), err(NotObject, "events"));
    assert_eq!(bad(r#""trades":[{"#, r#""trades":[[],{"#), err(NotObject, "trades"));
    assert_eq!(bad(r#""trades":["#, r#""trades":7,"x":["#), err(BadType, "trades"));
    assert_eq!(bad(r#""trades":["#, r#""other":["#), err(MissingField, "trades"));
    assert_eq!(
        bad(r#""type":"update","#, ""),
        Ok(Decoded::Ticks),
        "the event type is not needed"
    );
    assert_eq!(decode(b"{\"type\":\"\xff\"}"), err(Utf8, ""));
    assert_eq!(decode(b""), err(Json, ""));
    assert_eq!(
        decode(br#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","best_bid":"0","best_ask":"1"}"#),
        err(NonPositivePrice, "best_bid")
    );
    assert_eq!(
        decode(br#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","best_bid":"1"}"#),
        err(MissingField, "best_ask")
    );
    // A legacy ticker with only prices (as in 2021) has empty sizes and, without `time`, no
    // exchange time.
    let Ok(Decoded::Tick(tick)) =
        decode(br#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","best_bid":"1","best_ask":"2"}"#)
    else {
        panic!("not a tick");
    };
    assert_eq!(tick.exchange_ns, 0);
    assert_eq!(
        tick.body,
        TickBody::Quote {
            bid: price("1"),
            bid_qty: Qty::ZERO,
            ask: price("2"),
            ask_qty: Qty::ZERO
        }
    );
    assert_eq!(
        decode(br#"{"channel":"ticker","sequence_num":1,"events":[]}"#),
        err(MissingField, "timestamp")
    );
    assert_eq!(
        decode(br#"{"channel":"heartbeats","sequence_num":1,"events":[{}]}"#),
        err(MissingField, "heartbeat_counter")
    );
}

#[test]
fn several_tickers_in_one_message_are_one_batch() {
    let text = TICKER_JSON.replace(
        "        }\n      ]",
        "        },\n        {\"product_id\":\"ETH-USD\",\"best_bid\":\"1\",\"best_bid_quantity\":\"2\",\"best_ask\":\"3\",\"best_ask_quantity\":\"0\"}\n      ]",
    );
    let Ok(Outcome::Ticks(ticks)) = outcome(text.as_bytes()) else {
        panic!("not a batch: {text}");
    };
    assert_eq!(ticks.len(), 2);
    assert_eq!(ticks[1].instrument, InstrumentId(1));
    assert_eq!(ticks[1].seq, ticks[0].seq);
    assert_eq!(ticks[1].exchange_ns, ticks[0].exchange_ns);
    // An empty event list is an empty batch, not an error.
    let empty = r#"{"channel":"market_trades","sequence_num":1,"events":[]}"#;
    assert_eq!(outcome(empty.as_bytes()), Ok(Outcome::Ticks(Vec::new())));
}

#[test]
fn oversized_frames_are_refused_before_parsing() {
    let mut frame = EXCHANGE_MATCH_JSON.as_bytes().to_vec();
    frame.resize(MAX_FRAME_BYTES, b' ');
    assert!(matches!(decode(&frame), Ok(Decoded::Tick(_))));
    frame.push(b' ');
    assert_eq!(decode(&frame), err(DecodeReason::TooLarge, ""));
}

#[test]
fn time_errors_have_names() {
    assert_eq!(TimeError::Malformed.to_string(), "not an RFC 3339 date-time");
    assert_eq!(
        parse_rfc3339_ns(b"2023-02-09T20:19:35.1234567890Z"),
        Err(TimeError::Malformed),
        "ten fractional digits"
    );
}
