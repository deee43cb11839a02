//! The OANDA decoder against the docs fixtures, real EUR/USD quotes (Lean's OANDA tick files,
//! turned into price lines), generated lines (proptest) and a counting allocator.
//!
//! No raw OANDA stream capture exists (`shared/data/README.md` §3), so the real data are the
//! Lean `ms_since_midnight,bid,ask` rows written as the docs' price lines: the prices and times
//! are real, the line shape is the documented one.
//! The fixtures and data live outside the workspace in `shared/`; when that directory is
//! absent those tests print a note and return, while the same assertions on the fixture
//! texts copied into this file always run.
//! The counting `#[global_allocator]` counts per thread, so tests running in parallel do not
//! disturb each other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};

use maxx_hot::feed::oanda::parse::{OandaDecoder, TimeError, parse_rfc3339_ns, parse_time_ns, parse_unix_ns};
use maxx_hot::feed::{Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, SkipKind, TickBatch};
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{ONE, Price, Qty};
use maxx_hot::records::{Stamp, Tick, TickBody};
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

/// EURUSD is id 0, USDJPY id 1, USDCAD id 2.
const INSTRUMENTS: [(&str, &str); 3] = [("EURUSD", "EUR_USD"), ("USDJPY", "USD_JPY"), ("USDCAD", "USD_CAD")];

fn index() -> InstrumentIndex {
    InstrumentIndex::new(INSTRUMENTS.iter().map(|(ours, theirs)| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Oanda.index()] = Some(VenueSymbol::new(theirs).unwrap());
        (Symbol::new(ours).unwrap(), venues)
    }))
    .unwrap()
}

const META: FrameMeta = FrameMeta {
    recv_ns: 11,
    stamp: Stamp(13),
};

fn price(s: &str) -> Price {
    s.parse().unwrap()
}

fn units(n: i64) -> Qty {
    Qty::from_units(n).unwrap()
}

fn err(reason: DecodeReason, field: &'static str) -> Result<Decoded, DecodeError> {
    Err(DecodeError { reason, field })
}

fn decode_with(decoder: &mut OandaDecoder, frame: &[u8]) -> Result<Decoded, DecodeError> {
    decoder.decode(frame, META, &index(), &mut TickBatch::new())
}

fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
    decode_with(&mut OandaDecoder::new(), frame)
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

/// The proleptic-Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`),
/// written here independently of the decoder's own date arithmetic.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Local time `secs` (seconds since the epoch, shifted by the zone) as `YYYY-MM-DDTHH:MM:SS`.
fn civil_text(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `ns` as OANDA writes it: RFC 3339, UTC, nine fractional digits.
fn rfc3339(ns: u64) -> String {
    format!("{}.{:09}Z", civil_text((ns / 1_000_000_000) as i64), ns % 1_000_000_000)
}

// ---------------------------------------------------------------------------------------------
// Docs fixtures.

/// `oanda/heartbeat.json`, verbatim.
const HEARTBEAT_JSON: &str = r#"{"time":"2016-09-20T15:05:50.163791738Z","type":"HEARTBEAT"}
"#;

/// `oanda/price_eur_usd.json`, verbatim.
const PRICE_EUR_USD_JSON: &str = r#"{"asks":[{"liquidity":10000000,"price":"1.11704"},{"liquidity":10000000,"price":"1.11706"}],"bids":                        [{"liquidity":10000000,"price":"1.11690"},{"liquidity":10000000,"price":"1.11688"}],"closeoutAsk":"1.11708","closeoutBid":"1.11686","instrument":"EUR_USD","status":"tradeable","time":"2016-09-20T15:05:47.960449532Z"}
"#;

/// `oanda/pricing_stream.jsonl`, verbatim.
const PRICING_STREAM_JSONL: &str = r#"{"asks":[{"liquidity":10000000,"price":"1.11704"},{"liquidity":10000000,"price":"1.11706"}],"bids":                        [{"liquidity":10000000,"price":"1.11690"},{"liquidity":10000000,"price":"1.11688"}],"closeoutAsk":"1.11708","closeoutBid":"1.11686","instrument":"EUR_USD","status":"tradeable","time":"2016-09-20T15:05:47.960449532Z"}
{"asks":[{"liquidity":1000000,"price":"1.32149"},{"liquidity":2000000,"price":"1.32150"},{"liquidity":5000000,"price":"1.32151"},{"liquidity":10000000,"price":"1.32153"}],"bids":[{"liquidity":1000000,"price":"1.32128"},{"liquidity":2000000,"price":"1.32127"},{"liquidity":5000000,"price":"1.32126"},{"liquidity":10000000,"price":"1.32124"}],"closeoutAsk":"1.32153","closeoutBid":"1.32124","instrument":"USD_CAD","status":"tradeable","time":"2016-09-20T15:05:48.157162748Z"}
{"asks":[{"liquidity":1000000,"price":"1.32145"},{"liquidity":2000000,"price":"1.32146"},{"liquidity":5000000,"price":"1.32147"},{"liquidity":10000000,"price":"1.32149"}],"bids":[{"liquidity":1000000,"price":"1.32123"},{"liquidity":2000000,"price":"1.32122"},{"liquidity":5000000,"price":"1.32121"},{"liquidity":10000000,"price":"1.32119"}],"closeoutAsk":"1.32149","closeoutBid":"1.32119","instrument":"USD_CAD","status":"tradeable","time":"2016-09-20T15:05:48.272079801Z"}
{"asks":[{"liquidity":1000000,"price":"1.32147"},{"liquidity":2000000,"price":"1.32148"},{"liquidity":5000000,"price":"1.32149"},{"liquidity":10000000,"price":"1.32151"}],"bids":[{"liquidity":1000000,"price":"1.32126"},{"liquidity":2000000,"price":"1.32125"},{"liquidity":5000000,"price":"1.32124"},{"liquidity":10000000,"price":"1.32122"}],"closeoutAsk":"1.32151","closeoutBid":"1.32122","instrument":"USD_CAD","status":"tradeable","time":"2016-09-20T15:05:48.540813660Z"}
{"time":"2016-09-20T15:05:50.163791738Z","type":"HEARTBEAT"}
"#;

/// `oanda/rest_pricing_response.json`, verbatim.
const REST_PRICING_RESPONSE_JSON: &str = r#"{
  "prices": [
    {
      "asks": [
        {
          "liquidity": 10000000,
          "price": "1.13028"
        },
        {
          "liquidity": 10000000,
          "price": "1.13030"
        }
      ],
      "bids": [
        {
          "liquidity": 10000000,
          "price": "1.13015"
        },
        {
          "liquidity": 10000000,
          "price": "1.13013"
        }
      ],
      "closeoutAsk": "1.13032",
      "closeoutBid": "1.13011",
      "instrument": "EUR_USD",
      "quoteHomeConversionFactors": {
        "negativeUnits": "0.95904000",
        "positiveUnits": "0.95886000"
      },
      "status": "tradeable",
      "time": "2016-06-22T18:41:36.201836422Z",
      "unitsAvailable": {
        "default": {
          "long": "2013434",
          "short": "2014044"
        },
        "openOnly": {
          "long": "2013434",
          "short": "2014044"
        },
        "reduceFirst": {
          "long": "2013434",
          "short": "2014044"
        },
        "reduceOnly": {
          "long": "0",
          "short": "0"
        }
      }
    },
    {
      "asks": [
        {
          "liquidity": 1000000,
          "price": "1.28260"
        },
        {
          "liquidity": 2000000,
          "price": "1.28261"
        },
        {
          "liquidity": 5000000,
          "price": "1.28262"
        },
        {
          "liquidity": 10000000,
          "price": "1.28264"
        }
      ],
      "bids": [
        {
          "liquidity": 1000000,
          "price": "1.28241"
        },
        {
          "liquidity": 2000000,
          "price": "1.28240"
        },
        {
          "liquidity": 5000000,
          "price": "1.28239"
        },
        {
          "liquidity": 10000000,
          "price": "1.28237"
        }
      ],
      "closeoutAsk": "1.28264",
      "closeoutBid": "1.28237",
      "instrument": "USD_CAD",
      "quoteHomeConversionFactors": {
        "negativeUnits": "0.74785000",
        "positiveUnits": "0.74759000"
      },
      "status": "tradeable",
      "time": "2016-06-22T18:41:36.042678456Z",
      "unitsAvailable": {
        "default": {
          "long": "2275373",
          "short": "2276522"
        },
        "openOnly": {
          "long": "2275373",
          "short": "2276522"
        },
        "reduceFirst": {
          "long": "2275373",
          "short": "2276522"
        },
        "reduceOnly": {
          "long": "0",
          "short": "0"
        }
      }
    }
  ]
}
"#;

fn quote(instrument: u16, seq: u64, time: &str, bid: (&str, i64), ask: (&str, i64)) -> Result<Decoded, DecodeError> {
    Ok(Decoded::Tick(Tick {
        instrument: InstrumentId(instrument),
        venue: Venue::Oanda,
        body: TickBody::Quote {
            bid: price(bid.0),
            bid_qty: units(bid.1),
            ask: price(ask.0),
            ask_qty: units(ask.1),
        },
        seq,
        exchange_ns: parse_rfc3339_ns(time.as_bytes()).unwrap(),
        recv_ns: META.recv_ns,
        stamp: META.stamp,
    }))
}

/// What the five lines of `pricing_stream.jsonl` decode to, in order, with one decoder.
fn stream_expectations() -> Vec<Result<Decoded, DecodeError>> {
    vec![
        quote(
            0,
            1,
            "2016-09-20T15:05:47.960449532Z",
            ("1.11690", 10_000_000),
            ("1.11704", 10_000_000),
        ),
        quote(
            2,
            1,
            "2016-09-20T15:05:48.157162748Z",
            ("1.32128", 1_000_000),
            ("1.32149", 1_000_000),
        ),
        quote(
            2,
            2,
            "2016-09-20T15:05:48.272079801Z",
            ("1.32123", 1_000_000),
            ("1.32145", 1_000_000),
        ),
        quote(
            2,
            3,
            "2016-09-20T15:05:48.540813660Z",
            ("1.32126", 1_000_000),
            ("1.32147", 1_000_000),
        ),
        Ok(Decoded::Control(Control::Heartbeat)),
    ]
}

/// What each whole fixture file decodes to with a fresh decoder.
fn file_expectations() -> Vec<(&'static str, Result<Decoded, DecodeError>)> {
    vec![
        ("heartbeat.json", Ok(Decoded::Control(Control::Heartbeat))),
        ("price_eur_usd.json", stream_expectations()[0]),
        // The REST response is one object holding a `prices` list: not a stream line.
        ("rest_pricing_response.json", err(DecodeReason::UnknownMessage, "")),
    ]
}

#[test]
fn docs_fixture_texts_decode_to_the_right_thing() {
    let mut decoder = OandaDecoder::new();
    let lines: Vec<&str> = PRICING_STREAM_JSONL.lines().collect();
    assert_eq!(lines.len(), 5);
    // The first line has the docs' run of spaces after `"bids":`.
    assert!(lines[0].contains(r#""bids":                        [{"#));
    for (n, (line, expected)) in lines.iter().zip(stream_expectations()).enumerate() {
        assert_eq!(decode_with(&mut decoder, line.as_bytes()), expected, "line {}", n + 1);
    }
    assert_eq!(decoder.last_seq(InstrumentId(2)), 3);
    let fresh = |text: &str| decode(text.as_bytes());
    assert_eq!(fresh(PRICE_EUR_USD_JSON), stream_expectations()[0]);
    assert_eq!(fresh(HEARTBEAT_JSON), Ok(Decoded::Control(Control::Heartbeat)));
    assert_eq!(fresh(REST_PRICING_RESPONSE_JSON), err(DecodeReason::UnknownMessage, ""));
    // The REST response's two price objects are price lines in every other respect.
    let rest = REST_PRICING_RESPONSE_JSON;
    let first = rest.find("\n    {").unwrap()..rest.find("\n    },").unwrap() + 6;
    let second = first.end + 1..rest.rfind("\n    }").unwrap() + 6;
    assert_eq!(
        fresh(&rest[first]),
        quote(
            0,
            1,
            "2016-06-22T18:41:36.201836422Z",
            ("1.13015", 10_000_000),
            ("1.13028", 10_000_000)
        )
    );
    assert_eq!(
        fresh(&rest[second]),
        quote(
            2,
            1,
            "2016-06-22T18:41:36.042678456Z",
            ("1.28241", 1_000_000),
            ("1.28260", 1_000_000)
        )
    );
    // An engine that does not list USD_CAD counts those lines as unknown.
    let eur_only = InstrumentIndex::new([(Symbol::new("EURUSD").unwrap(), {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Oanda.index()] = Some(VenueSymbol::new("EUR_USD").unwrap());
        venues
    })])
    .unwrap();
    assert_eq!(
        OandaDecoder::new().decode(lines[1].as_bytes(), META, &eur_only, &mut TickBatch::new()),
        err(DecodeReason::UnknownSymbol, "instrument")
    );
}

#[test]
fn docs_fixture_files_decode_to_the_right_thing() {
    let Some(shared) = shared_dir("docs fixture") else {
        return;
    };
    let dir = shared.join("fixtures/venues/oanda");
    for (name, expected) in file_expectations() {
        let text = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decode(&text), expected, "{name}");
    }
    let stream = std::fs::read_to_string(dir.join("pricing_stream.jsonl")).unwrap();
    let mut decoder = OandaDecoder::new();
    for (n, (line, expected)) in stream.lines().zip(stream_expectations()).enumerate() {
        assert_eq!(
            decode_with(&mut decoder, line.as_bytes()),
            expected,
            "pricing_stream.jsonl line {}",
            n + 1
        );
    }
    // The texts copied into this file are the files' contents.
    for (name, copy) in [
        ("heartbeat.json", HEARTBEAT_JSON),
        ("price_eur_usd.json", PRICE_EUR_USD_JSON),
        ("pricing_stream.jsonl", PRICING_STREAM_JSONL),
        ("rest_pricing_response.json", REST_PRICING_RESPONSE_JSON),
    ] {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), copy, "{name}");
    }
    // Fixtures added later must at least decode without panicking.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !file_expectations().iter().any(|(n, _)| *n == name) && name != "pricing_stream.jsonl" {
            let result = decode(&std::fs::read(&path).unwrap());
            println!("note: fixture {name} has no expectation here; it decodes to {result:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real EUR/USD quotes.

/// The one file stored in a zip archive, inflated. Reads the central directory (so a data
/// descriptor would not matter), including its zip64 extra field (Lean's archives have one),
/// and supports the two methods zip writers use, stored and deflate.
fn unzip_single(path: &Path) -> Vec<u8> {
    let zip = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u16_at = |at: usize| u16::from_le_bytes([zip[at], zip[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes([zip[at], zip[at + 1], zip[at + 2], zip[at + 3]]) as usize;
    let eocd = (0..=zip.len() - 22)
        .rev()
        .find(|&at| u32_at(at) == 0x0605_4b50)
        .expect("end of central directory");
    let cd = u32_at(eocd + 16);
    assert_eq!(u32_at(cd), 0x0201_4b50, "central directory entry");
    let method = u16_at(cd + 10);
    let (mut compressed, mut size) = (u32_at(cd + 20), u32_at(cd + 24));
    let local = u32_at(cd + 42);
    // Sizes of 0xFFFFFFFF live in the zip64 extra field (id 1): uncompressed, then compressed.
    let u64_at = |at: usize| u64::from_le_bytes(zip[at..at + 8].try_into().unwrap()) as usize;
    let mut extra = cd + 46 + u16_at(cd + 28);
    let extra_end = extra + u16_at(cd + 30);
    while extra + 4 <= extra_end {
        let (id, len) = (u16_at(extra), u16_at(extra + 2));
        if id == 1 {
            let mut at = extra + 4;
            if size == 0xFFFF_FFFF {
                size = u64_at(at);
                at += 8;
            }
            if compressed == 0xFFFF_FFFF {
                compressed = u64_at(at);
            }
        }
        extra += 4 + len;
    }
    assert_eq!(u32_at(local), 0x0403_4b50, "local file header");
    let data = local + 30 + u16_at(local + 26) + u16_at(local + 28);
    let raw = &zip[data..data + compressed];
    let out = match method {
        0 => raw.to_vec(),
        8 => {
            let mut out = Vec::with_capacity(size);
            flate2::read::DeflateDecoder::new(raw).read_to_end(&mut out).unwrap();
            out
        }
        m => panic!("{}: compression method {m}", path.display()),
    };
    assert_eq!(out.len(), size);
    out
}

/// Days from 1970-01-01 to `yyyymmdd`, by counting: independent of both date algorithms.
fn days_since_epoch(yyyymmdd: &str) -> i64 {
    let (y, m, d): (i64, u32, u32) = (
        yyyymmdd[..4].parse().unwrap(),
        yyyymmdd[4..6].parse().unwrap(),
        yyyymmdd[6..].parse().unwrap(),
    );
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let years: i64 = (1970..y).map(|y| if leap(y) { 366 } else { 365 }).sum();
    years + month_days[..(m - 1) as usize].iter().sum::<i64>() + i64::from(d) - 1
}

#[test]
fn real_eur_usd_quotes_decode_exactly() {
    let Some(shared) = shared_dir("Lean EUR/USD") else {
        return;
    };
    let dir = shared.join("data/lean/oanda_tick_eurusd");
    // The two Sunday files (21:00 UTC open) and a full weekday: 27,986 quotes.
    let mut total = 0;
    for (date, unix) in [("20140504", false), ("20140511", true), ("20140501", false)] {
        let csv = unzip_single(&dir.join(format!("{date}_quote.zip")));
        let midnight_ns = days_since_epoch(date) as u64 * 86_400 * 1_000_000_000;
        let mut decoder = OandaDecoder::new();
        let mut newest = 0;
        let (mut ticks, mut stale) = (0u64, 0u64);
        for (n, row) in String::from_utf8(csv).unwrap().lines().enumerate() {
            let cols: Vec<&str> = row.trim_end().split(',').collect();
            let [ms, bid, ask] = cols[..] else {
                panic!("{date} row {}: {row:?}", n + 1)
            };
            let ns = midnight_ns + ms.parse::<u64>().unwrap() * 1_000_000;
            let time = if unix {
                format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
            } else {
                rfc3339(ns)
            };
            // The docs' key order; Lean keeps no sizes, so the liquidity is made up.
            let line = format!(
                r#"{{"asks":[{{"liquidity":1000000,"price":"{ask}"}}],"bids":[{{"liquidity":1000000,"price":"{bid}"}}],"closeoutAsk":"{ask}","closeoutBid":"{bid}","instrument":"EUR_USD","status":"tradeable","time":"{time}"}}"#
            );
            let got = decode_with(&mut decoder, line.as_bytes());
            if ns < newest {
                assert_eq!(got, Ok(Decoded::Skipped(SkipKind::Other)), "{date} row {}", n + 1);
                stale += 1;
                continue;
            }
            newest = ns;
            ticks += 1;
            let expected = Tick {
                instrument: InstrumentId(0),
                venue: Venue::Oanda,
                body: TickBody::Quote {
                    bid: price(bid),
                    bid_qty: units(1_000_000),
                    ask: price(ask),
                    ask_qty: units(1_000_000),
                },
                seq: ticks,
                exchange_ns: ns,
                recv_ns: META.recv_ns,
                stamp: META.stamp,
            };
            assert_eq!(got, Ok(Decoded::Tick(expected)), "{date} row {}: {line}", n + 1);
        }
        assert!(ticks > 1000, "{date}: only {ticks} quotes");
        println!("{date}: {ticks} quotes, {stale} out of order");
        total += ticks + stale;
    }
    // The README counts newlines; the last row of each file has none.
    assert_eq!(total, (1_163 + 1) + (2_642 + 1) + (24_178 + 1));
}

// ---------------------------------------------------------------------------------------------
// Times.

/// RFC 3339 text for `secs` + `frac` (given as its digits) in a zone `offset_min` minutes
/// ahead of UTC.
fn rfc3339_in_zone(secs: u64, frac: &str, offset_min: i32) -> String {
    let local = civil_text(secs as i64 + i64::from(offset_min) * 60);
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    let zone = if offset_min == 0 {
        "Z".to_string()
    } else {
        let a = offset_min.unsigned_abs();
        format!("{}{:02}:{:02}", if offset_min < 0 { '-' } else { '+' }, a / 60, a % 60)
    };
    format!("{local}{frac}{zone}")
}

/// A time as text in either format, and its value in ns.
fn time_case() -> impl Strategy<Value = (String, u64)> {
    (
        2 * 86_400u64..16_000_000_000,
        0usize..=9,
        0u32..1_000_000_000,
        -1439i32..=1439,
        any::<bool>(),
    )
        .prop_map(|(secs, digits, nanos, offset_min, unix)| {
            let frac = format!("{nanos:09}")[..digits].to_string();
            let frac_ns = if digits == 0 {
                0
            } else {
                frac.parse::<u64>().unwrap() * 10u64.pow(9 - digits as u32)
            };
            let ns = secs * 1_000_000_000 + frac_ns;
            let text = match (unix, digits) {
                (true, 0) => secs.to_string(),
                (true, _) => format!("{secs}.{frac}"),
                (false, _) => rfc3339_in_zone(secs, &frac, offset_min),
            };
            (text, ns)
        })
}

#[test]
fn times_at_the_edges() {
    assert_eq!(parse_rfc3339_ns(rfc3339(0).as_bytes()), Ok(0));
    assert_eq!(parse_rfc3339_ns(rfc3339(u64::MAX).as_bytes()), Ok(u64::MAX));
    assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    assert_eq!(parse_unix_ns(b"18446744073.709551615"), Ok(u64::MAX));
    assert_eq!(parse_time_ns(b"2554-07-21T23:34:34Z"), Err(TimeError::Range));
    assert_eq!(parse_time_ns(b"9999-12-31T23:59:59Z"), Err(TimeError::Range));
    assert_eq!(parse_time_ns(b"0000-01-01T00:00:00Z"), Err(TimeError::Range));
    assert_eq!(parse_time_ns(b"yesterday"), Err(TimeError::Syntax));
    assert_eq!(TimeError::Syntax.reason(), DecodeReason::BadDecimal);
    assert_eq!(TimeError::Range.reason(), DecodeReason::OutOfRange);
}

// ---------------------------------------------------------------------------------------------
// Generated lines.

/// How a JSON value may be written wrongly for a field of this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    Str,
    Array,
    Bool,
}

impl Wire {
    /// Values of other JSON types than the field's.
    fn wrong_values(self) -> &'static [&'static str] {
        match self {
            Wire::Str => &["1", "1.5", "-2", "true", "null", "{}", "[]", r#"["EUR_USD"]"#],
            Wire::Array => &["1", r#""[]""#, "true", "null", "{}", r#"{"price":"1"}"#],
            Wire::Bool => &["1", "0", r#""true""#, "null", "{}", "[]"],
        }
    }
}

/// A line as a list of fields, so that tests can reorder, drop or retype them.
#[derive(Clone, Debug)]
struct Line {
    fields: Vec<(&'static str, Wire, String)>,
    spaced: bool,
}

impl Line {
    fn text(&self) -> String {
        let (sep, colon) = if self.spaced { (", ", ": ") } else { (",", ":") };
        let body = self
            .fields
            .iter()
            .map(|(k, _, v)| format!(r#""{k}"{colon}{v}"#))
            .collect::<Vec<_>>()
            .join(sep);
        format!("{{{body}}}")
    }
}

fn decimal_text(raw: i64, padded: bool) -> String {
    if padded {
        format!("{}.{:08}", raw / ONE, raw % ONE)
    } else {
        Price::from_raw(raw).unwrap().to_string()
    }
}

/// Raw 10^-8 counts of a strictly positive decimal, biased toward FX magnitudes.
fn positive_raw() -> impl Strategy<Value = i64> {
    prop_oneof![1..=1_000 * ONE, 1..=i64::MAX]
}

/// A price level: price raw, liquidity units, price padded to eight decimals, price key first.
fn level() -> impl Strategy<Value = (i64, i64, bool, bool)> {
    (
        positive_raw(),
        prop_oneof![0..=100_000_000i64, 0..=i64::MAX / ONE],
        any::<bool>(),
        any::<bool>(),
    )
}

fn levels_text(levels: &[(i64, i64, bool, bool)]) -> String {
    let items: Vec<String> = levels
        .iter()
        .map(|&(p, l, padded, price_first)| {
            let p = format!(r#""price":"{}""#, decimal_text(p, padded));
            let l = format!(r#""liquidity":{l}"#);
            if price_first {
                format!("{{{p},{l}}}")
            } else {
                format!("{{{l},{p}}}")
            }
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A valid, tradeable price line (any key order, with or without `type`, `tradeable` and
/// `status`, one to four levels a side, either time format) and the tick it must give.
fn price_case() -> impl Strategy<Value = (Line, Tick)> {
    (
        0..INSTRUMENTS.len(),
        proptest::collection::vec(level(), 1..=4),
        proptest::collection::vec(level(), 1..=4),
        time_case(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        Just((0..9).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(
            |(id, bids, asks, (time, ns), (with_type, with_tradeable, with_status, spaced), order)| {
                let all = [
                    ("type", Wire::Str, r#""PRICE""#.to_string()),
                    ("time", Wire::Str, format!(r#""{time}""#)),
                    ("bids", Wire::Array, levels_text(&bids)),
                    ("asks", Wire::Array, levels_text(&asks)),
                    (
                        "closeoutBid",
                        Wire::Str,
                        format!(r#""{}""#, decimal_text(bids[bids.len() - 1].0, false)),
                    ),
                    (
                        "closeoutAsk",
                        Wire::Str,
                        format!(r#""{}""#, decimal_text(asks[asks.len() - 1].0, false)),
                    ),
                    ("tradeable", Wire::Bool, "true".to_string()),
                    ("status", Wire::Str, r#""tradeable""#.to_string()),
                    ("instrument", Wire::Str, format!(r#""{}""#, INSTRUMENTS[id].1)),
                ];
                let keep = |k: &str| match k {
                    "type" => with_type,
                    "tradeable" => with_tradeable,
                    "status" => with_status,
                    _ => true,
                };
                let line = Line {
                    fields: order.iter().map(|&i| all[i].clone()).filter(|f| keep(f.0)).collect(),
                    spaced,
                };
                let tick = Tick {
                    instrument: InstrumentId(id as u16),
                    venue: Venue::Oanda,
                    body: TickBody::Quote {
                        bid: Price::from_raw(bids[0].0).unwrap(),
                        bid_qty: units(bids[0].1),
                        ask: Price::from_raw(asks[0].0).unwrap(),
                        ask_qty: units(asks[0].1),
                    },
                    seq: 1,
                    exchange_ns: ns,
                    recv_ns: META.recv_ns,
                    stamp: META.stamp,
                };
                (line, tick)
            },
        )
}

/// A successful decode never carries an impossible price.
fn assert_sane(result: &Result<Decoded, DecodeError>) {
    if let Ok(Decoded::Tick(tick)) = result {
        match tick.body {
            TickBody::Quote { bid, ask, .. } => assert!(bid > Price::ZERO && ask > Price::ZERO),
            TickBody::Trade { .. } => panic!("OANDA has no trades: {tick:?}"),
        }
        assert_eq!(tick.venue, Venue::Oanda);
    }
}

proptest! {
    // Failing cases are kept in `hot/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/feed_oanda_decode.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        assert_sane(&decode(&bytes));
    }

    #[test]
    fn json_like_noise_never_panics(text in r#"[{}\[\]":,\\ a-zA-Z0-9._TZ+-]{0,300}"#) {
        assert_sane(&decode(text.as_bytes()));
    }

    #[test]
    fn corrupted_valid_lines_never_panic_or_lie(
        (line, _) in price_case(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = line.text().into_bytes();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        assert_sane(&decode(&bytes));
    }

    #[test]
    fn generated_prices_round_trip_exactly((line, tick) in price_case()) {
        prop_assert_eq!(decode(line.text().as_bytes()), Ok(Decoded::Tick(tick)));
    }

    #[test]
    fn generated_times_parse_exactly((text, ns) in time_case()) {
        prop_assert_eq!(parse_time_ns(text.as_bytes()), Ok(ns));
    }

    #[test]
    fn every_truncation_is_an_error((line, tick) in price_case()) {
        let text = line.text();
        let mut decoder = OandaDecoder::new();
        prop_assert_eq!(decode_with(&mut decoder, text.as_bytes()), Ok(Decoded::Tick(tick)));
        for len in 0..text.len() {
            let result = decode_with(&mut decoder, &text.as_bytes()[..len]);
            prop_assert!(result.is_err(), "prefix of {} bytes decoded to {:?}", len, result);
        }
    }

    #[test]
    fn a_retyped_field_is_a_bad_type(
        (mut line, _) in price_case(),
        which in any::<prop::sample::Index>(),
        value in any::<prop::sample::Index>(),
    ) {
        let has = |line: &Line, key: &str| line.fields.iter().any(|f| f.0 == key);
        // `status` is read only when `tradeable` is absent; closeouts are never read.
        let candidates: Vec<usize> = (0..line.fields.len())
            .filter(|&i| match line.fields[i].0 {
                "closeoutBid" | "closeoutAsk" => false,
                "status" => !has(&line, "tradeable"),
                _ => true,
            })
            .collect();
        let i = candidates[which.index(candidates.len())];
        let (key, wire, _) = line.fields[i].clone();
        let wrong = wire.wrong_values();
        line.fields[i].2 = wrong[value.index(wrong.len())].to_string();
        prop_assert_eq!(decode(line.text().as_bytes()), err(DecodeReason::BadType, key));
    }

    #[test]
    fn a_missing_field_is_named(
        (mut line, _) in price_case(),
        which in 0usize..4,
    ) {
        let key = ["instrument", "time", "bids", "asks"][which];
        line.fields.retain(|f| f.0 != key);
        let typed = line.fields.iter().any(|f| f.0 == "type");
        // Without `type` or `instrument` nothing says what the line is.
        let expected = if key == "instrument" && !typed {
            err(DecodeReason::UnknownMessage, "")
        } else {
            err(DecodeReason::MissingField, key)
        };
        prop_assert_eq!(decode(line.text().as_bytes()), expected);
    }

    #[test]
    fn closed_markets_are_skipped((mut line, _) in price_case(), by_status in any::<bool>()) {
        line.fields.retain(|f| f.0 != "tradeable" && f.0 != "status");
        if by_status {
            line.fields.push(("status", Wire::Str, r#""non-tradeable""#.to_string()));
        } else {
            line.fields.push(("tradeable", Wire::Bool, "false".to_string()));
        }
        prop_assert_eq!(decode(line.text().as_bytes()), Ok(Decoded::Skipped(SkipKind::Other)));
    }
}

#[test]
fn oversized_lines_are_refused_before_parsing() {
    let mut frame = PRICE_EUR_USD_JSON.trim_end().as_bytes().to_vec();
    frame.resize(MAX_FRAME_BYTES, b' ');
    assert!(matches!(decode(&frame), Ok(Decoded::Tick(_))));
    frame.push(b' ');
    assert_eq!(decode(&frame), err(DecodeReason::TooLarge, ""));
}

#[test]
fn one_decoder_survives_errors_between_lines() {
    let mut decoder = OandaDecoder::new();
    let lines: Vec<&str> = PRICING_STREAM_JSONL.lines().collect();
    for (line, expected) in lines.iter().zip(stream_expectations()) {
        assert!(decode_with(&mut decoder, &line.as_bytes()[..40]).is_err());
        assert!(decode_with(&mut decoder, b"\xff\xfe").is_err());
        assert_eq!(decode_with(&mut decoder, line.as_bytes()), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Allocation.

#[test]
fn decoding_allocates_nothing_after_warm_up() {
    let index = index();
    let mut decoder = OandaDecoder::new();
    let mut batch = TickBatch::new();
    // Prices with ever newer times (so each is a fresh quote, not a skipped stale one), for
    // every instrument, in both time formats, plus heartbeats and malformed lines.
    let base = 1_474_383_947_960_449_532u64;
    let lines: Vec<String> = (0..3_000u64)
        .map(|i| {
            let ns = base + i * 250_000_000;
            let time = if i % 2 == 0 {
                rfc3339(ns)
            } else {
                format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
            };
            match i % 5 {
                4 => format!(r#"{{"time":"{time}","type":"HEARTBEAT"}}"#),
                3 => format!(r#"{{"type":"PRICE","instrument":"EUR_USD","bids":[],"asks":[],"time":"{time}"}}"#),
                n => {
                    let instrument = INSTRUMENTS[n as usize].1;
                    PRICING_STREAM_JSONL
                        .lines()
                        .nth(1)
                        .unwrap()
                        .replace("USD_CAD", instrument)
                        .replace("2016-09-20T15:05:48.157162748Z", &time)
                }
            }
        })
        .collect();
    let mut run = |lines: &[String]| {
        let before = allocations();
        let (mut ticks, mut heartbeats, mut errors) = (0, 0, 0);
        for line in lines {
            batch.clear();
            match decoder.decode(line.as_bytes(), META, &index, &mut batch) {
                Ok(Decoded::Tick(_)) => ticks += 1,
                Ok(Decoded::Control(Control::Heartbeat)) => heartbeats += 1,
                Ok(other) => panic!("{other:?}"),
                Err(_) => errors += 1,
            }
        }
        (allocations() - before, ticks, heartbeats, errors)
    };
    // Warm-up: the buffers reach their size on the first lines.
    run(&lines[..10]);
    assert_eq!(run(&lines[10..]), (0, 1_794, 598, 598));
}
