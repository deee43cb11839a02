//! Shared pieces of the maxx fuzz targets: the instrument index every decoder target uses, the
//! loop that feeds one fuzz input to a decoder as a short sequence of frames, and the invariants
//! every decoded tick and every parsed decimal must satisfy.
//!
//! The targets live in `fuzz_targets/`; `README.md` says how to run them and what they found.
//! A violated invariant is a `panic!`, which libFuzzer reports as a crash and saves the input of.

use maxx_hot::feed::{Decoded, FrameMeta, MAX_TICKS_PER_FRAME, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{DecimalError, Money, Price, Qty, SignedQty};
use maxx_hot::records::{Stamp, Tick, TickBody};
use maxx_hot::source::Decode;

/// Splits one fuzz input into frames. It is a control character, which JSON forbids everywhere
/// (even inside strings), so splitting on it never cuts a valid frame in two, and a docs fixture
/// copied verbatim is a one-frame input.
pub const FRAME_SEPARATOR: u8 = 0x1e;

/// Like [`FRAME_SEPARATOR`], and also calls [`Decode::on_connect`] before the next frame, so
/// the fuzzer can reach the "state forgotten on reconnect" paths of the stateful decoders.
pub const RECONNECT_SEPARATOR: u8 = 0x1d;

/// Most frames one input is split into; the rest of the input is ignored. Enough to build a
/// book from a snapshot and walk it through a few deltas, small enough to keep runs fast.
pub const MAX_FRAMES: usize = 16;

/// Receive time of the first frame; frame `i` gets this plus `i`, so a tick can be checked
/// against the metadata of the very frame it came from.
const RECV_NS_BASE: u64 = 1_723_161_254_000_000_000;

/// The instruments every decoder target is given: the symbols each venue uses in the docs
/// fixtures (`shared/fixtures/venues/`) and in the simulators (`cold/src/sim/`), all in one
/// index as an engine trading every venue would have it. Instruments listed on other venues
/// only are deliberately present, so a decoder that maps a payload to an instrument its venue
/// does not list is caught.
const INSTRUMENTS: [(&str, [Option<&str>; Venue::COUNT]); 11] = [
    // (canonical, [binance, coinbase, bybit, oanda])
    ("BTCUSDT", [Some("BTCUSDT"), None, Some("BTCUSDT"), None]),
    ("ETHUSDT", [Some("ETHUSDT"), None, Some("ETHUSDT"), None]),
    ("BNBUSDT", [Some("BNBUSDT"), None, Some("BNBUSDT"), None]),
    ("BNBBTC", [Some("BNBBTC"), None, None, None]),
    ("XRPUSDT", [Some("XRPUSDT"), None, Some("XRPUSDT"), None]),
    ("BTCUSD", [None, Some("BTC-USD"), None, None]),
    ("ETHUSD", [None, Some("ETH-USD"), None, None]),
    ("ETHEUR", [None, Some("ETH-EUR"), None, None]),
    ("EURUSD", [None, None, None, Some("EUR_USD")]),
    ("USDJPY", [None, None, None, Some("USD_JPY")]),
    ("USDCAD", [None, None, None, Some("USD_CAD")]),
];

/// Builds the index of [`INSTRUMENTS`]. Called once per process by each target.
pub fn index() -> InstrumentIndex {
    let entries = INSTRUMENTS.iter().map(|(symbol, names)| {
        let venue_symbols = names.map(|name| name.map(|n| VenueSymbol::new(n).expect("valid venue symbol")));
        (Symbol::new(symbol).expect("valid symbol"), venue_symbols)
    });
    InstrumentIndex::new(entries).expect("the fuzz index is consistent")
}

/// Feeds `data` to `decoder` as up to [`MAX_FRAMES`] frames and checks every result.
///
/// The decoder is built fresh for every input by the caller, so a crash reproduces from its
/// input alone; the frames of one input share it, so the stateful paths (order books, sequence
/// numbers, per-instrument times) are exercised too.
///
/// # Panics
/// When a decoder panics itself, or when a result breaks an invariant (see [`check_tick`]).
pub fn run_decoder<D: Decode>(decoder: &mut D, venue: Venue, index: &InstrumentIndex, data: &[u8]) {
    let mut out = TickBatch::new();
    let mut rest = data;
    for frame_no in 0..MAX_FRAMES as u64 {
        let end = rest
            .iter()
            .position(|&b| b == FRAME_SEPARATOR || b == RECONNECT_SEPARATOR)
            .unwrap_or(rest.len());
        let frame = &rest[..end];
        let meta = FrameMeta {
            recv_ns: RECV_NS_BASE + frame_no,
            stamp: Stamp(frame_no + 1),
        };
        // The feed task hands every decoder an empty batch.
        out.clear();
        let result = decoder.decode(frame, meta, index, &mut out);
        assert!(out.len() <= MAX_TICKS_PER_FRAME, "batch of {} ticks", out.len());
        match result {
            Ok(Decoded::Tick(tick)) => check_tick(&tick, venue, index, meta),
            Ok(Decoded::Ticks) => {
                for tick in out.as_slice() {
                    check_tick(tick, venue, index, meta);
                }
            }
            Ok(Decoded::Skipped(_) | Decoded::Control(_)) | Err(_) => {}
        }
        // Whatever the result, nothing left in the batch may be invalid: a consumer that
        // forgot to check the result must still never see a zero price.
        for tick in out.as_slice() {
            check_tick(tick, venue, index, meta);
        }
        let Some(&separator) = rest.get(end) else {
            break;
        };
        if separator == RECONNECT_SEPARATOR {
            decoder.on_connect();
        }
        rest = &rest[end + 1..];
    }
}

/// The invariants of one emitted tick.
///
/// # Panics
/// If the tick names another venue, an instrument outside the index or one this venue does not
/// list, has a zero or negative price (either side of a quote), a zero trade quantity, or does
/// not carry the receive time and stamp of the frame it came from.
pub fn check_tick(tick: &Tick, venue: Venue, index: &InstrumentIndex, meta: FrameMeta) {
    assert_eq!(tick.venue, venue, "tick from the wrong venue: {tick:?}");
    assert!(
        tick.instrument.index() < index.len(),
        "instrument outside the index: {tick:?}"
    );
    assert!(
        index.get(tick.instrument).venue_symbols[venue.index()].is_some(),
        "instrument not listed on {venue}: {tick:?}"
    );
    assert_eq!(tick.recv_ns, meta.recv_ns, "recv_ns not the frame's: {tick:?}");
    assert_eq!(tick.stamp, meta.stamp, "stamp not the frame's: {tick:?}");
    match tick.body {
        TickBody::Trade { price, qty, .. } => {
            assert!(price.raw() > 0, "trade price not positive: {tick:?}");
            assert!(qty.raw() > 0, "trade qty not positive: {tick:?}");
        }
        TickBody::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        } => {
            assert!(bid.raw() > 0, "bid not positive: {tick:?}");
            assert!(ask.raw() > 0, "ask not positive: {tick:?}");
            assert!(
                bid_qty.raw() >= 0 && ask_qty.raw() >= 0,
                "negative quote size: {tick:?}"
            );
        }
    }
}

/// Checks all four decimal types on one input: whatever parses prints in canonical form and
/// parses back to the same value, and acceptance and value agree with [`reference_parse`].
///
/// # Panics
/// On any disagreement.
pub fn check_decimal(data: &[u8]) {
    check_decimal_type(data, false, Price::parse_bytes, Price::raw);
    check_decimal_type(data, false, Qty::parse_bytes, Qty::raw);
    check_decimal_type(data, true, Money::parse_bytes, Money::raw);
    check_decimal_type(data, true, SignedQty::parse_bytes, SignedQty::raw);
}

fn check_decimal_type<T>(
    data: &[u8],
    allow_negative: bool,
    parse: fn(&[u8]) -> Result<T, DecimalError>,
    raw: fn(T) -> i64,
) where
    T: Copy + PartialEq + core::fmt::Debug + core::fmt::Display,
{
    let parsed = parse(data);
    let expected = reference_parse(data, allow_negative);
    assert_eq!(
        parsed.map(raw).ok(),
        expected,
        "parser and reference disagree on {:?}",
        String::from_utf8_lossy(data)
    );
    let Ok(value) = parsed else {
        return;
    };
    if !allow_negative {
        assert!(raw(value) >= 0, "negative value from an unsigned type: {value:?}");
    }
    let text = value.to_string();
    assert_eq!(parse(text.as_bytes()), Ok(value), "round trip through {text:?}");
    // The printed form is canonical: printing the re-parsed value gives the same text, and it
    // has no trailing zero after a point and no trailing point.
    if text.contains('.') {
        assert!(!text.ends_with('0') && !text.ends_with('.'), "not canonical: {text:?}");
    }
}

/// An independent, deliberately simple parser of the same grammar, in `i128` so it cannot
/// overflow where the real one has to be careful: `-?` (only if `allow_negative`), one or more
/// digits, optionally `.` and one or more digits, of which only the first eight may be non-zero.
/// `None` if the input is refused or the value does not fit an `i64` count of 10^-8 units.
pub fn reference_parse(data: &[u8], allow_negative: bool) -> Option<i64> {
    let (negative, body) = match data.split_first() {
        Some((b'-', rest)) if allow_negative => (true, rest),
        _ => (false, data),
    };
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], Some(&body[dot + 1..])),
        None => (body, None),
    };
    if int.is_empty() || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let frac = frac.unwrap_or(b"");
    if body.contains(&b'.') && frac.is_empty() {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) || frac.iter().skip(8).any(|&b| b != b'0') {
        return None;
    }
    // Leading zeros are allowed in any number; skip them so the i128 never sees them.
    let significant = &int[int.iter().position(|&b| b != b'0').unwrap_or(int.len())..];
    if significant.len() > 20 {
        return None;
    }
    let mut value: i128 = 0;
    for &d in significant {
        value = value * 10 + i128::from(d - b'0');
    }
    for place in 0..8 {
        value = value * 10 + frac.get(place).map_or(0, |&d| i128::from(d - b'0'));
    }
    if negative {
        value = -value;
    }
    i64::try_from(value).ok()
}
