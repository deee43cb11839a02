//! The strict fast path for the two frames that make up most Binance Spot market data:
//! `trade` and spot `bookTicker`, raw or inside a combined-stream wrapper, written byte for byte
//! the way Binance writes them.
//!
//! The general decoder ([`BinanceDecoder`](super::parse::BinanceDecoder)) runs simd-json over
//! the whole frame and walks the tape; simd-json's parse alone costs more than the "at most half
//! the serde_json time" budget the MarketData issue sets for a trade frame.
//! This module does not parse JSON: it matches one fixed grammar per message, left to right,
//! and reads the values as it passes them.
//! The grammar is exactly what the 2024-08-08 captures and `shared/venues.md` sections 1.3 and
//! 1.4 show:
//!
//! ```text
//! frame    = payload | '{"stream":"' name '","data":' payload '}'
//! payload  = trade | ticker
//! trade    = '{"e":"trade","E":' uint ',"s":"' name '","t":' uint ',"p":"' dec '","q":"' dec
//!            '","T":' uint ',"m":' bool ',"M":' bool '}'
//! ticker   = '{"u":' uint ',"s":"' name '","b":"' dec '","B":"' dec '","a":"' dec '","A":"' dec '"}'
//! uint     = '0' | [1-9][0-9]*            (at most u64::MAX)
//! bool     = 'true' | 'false'
//! name     = printable ASCII except '"' and '\'
//! dec      = what Price::parse_bytes / Qty::parse_bytes accept
//! ```
//!
//! and the frame must end right after the last brace and be at most [`MAX_FRAME_BYTES`] long.
//! No whitespace, no escape, no other key order, no missing or extra key: anything else, and
//! anything that would decode to an error (a zero price, a zero trade quantity, a symbol the
//! index does not list, a time that overflows in nanoseconds), makes [`try_decode`] return
//! `None`, and the caller hands the frame to the general decoder, which stays the reference and
//! the only place errors are produced.
//!
//! **Invariant:** whenever [`try_decode`] returns a tick, the general decoder returns the same
//! tick for the same frame.
//! It holds because every accepted frame is valid JSON whose general decode takes the same
//! route: the grammar is a subset of JSON (no leading zeros, exact literals, only printable
//! ASCII, so also valid UTF-8), each key appears once, so "last occurrence wins" cannot differ,
//! and each value is checked by the same rule the general decoder applies
//! (`Price::parse_bytes` and a non-zero test, `Qty::parse_bytes`, the same symbol lookup, the
//! same millisecond-to-nanosecond overflow check); a string without a backslash is its own
//! unescaped value.
//! `tests/feed_binance_decode.rs` checks it with proptests over generated, mutated, truncated
//! and hostile frames, and over both real captures.
//!
//! Cost, from a quick interleaved release-mode loop (the fastest of 200 batches of 20,000 calls;
//! not a criterion bench): about 100 ns for the real combined trade frame (168 bytes), 90 ns
//! for the raw one and 115 ns for a combined `bookTicker` (146 bytes), against 365 ns for a
//! serde_json typed, borrowed decode of the same trade frame plus its two decimal conversions
//! (the `decode` baseline in `benches/hot_path.rs`; ratio 0.27 to 0.29 over several runs) and
//! 335 ns for the general path. About a quarter of the fast path is `parse_bytes`.
//! rustc 1.95, 2-vCPU AMD EPYC VM, no tuning, other builds running (load average about 4).

use crate::feed::{FrameMeta, MAX_FRAME_BYTES};
use crate::ids::{InstrumentIndex, Venue};
use crate::num::{Price, Qty};
use crate::records::{Side, Tick, TickBody};

/// Milliseconds to nanoseconds.
const NS_PER_MS: u64 = 1_000_000;

/// Decodes `frame` if it is a `trade` or spot `bookTicker` in Binance's exact wire shape (raw or
/// combined) that decodes to a tick; `None` for every other frame, valid or not.
///
/// `None` says nothing about the frame except that the general decoder must look at it.
#[inline]
pub fn try_decode(frame: &[u8], meta: FrameMeta, index: &InstrumentIndex) -> Option<Tick> {
    // The general decoder refuses long frames before parsing; a huge stream name must not
    // slip past that here.
    if frame.len() > MAX_FRAME_BYTES {
        return None;
    }
    let mut c = Cursor { rest: frame };
    let tick = if c.eat(b"{\"stream\":\"") {
        // The general decoder only requires the stream name to be a string.
        c.name()?;
        c.expect(b",\"data\":")?;
        let tick = payload(&mut c, meta, index)?;
        c.expect(b"}")?;
        tick
    } else {
        payload(&mut c, meta, index)?
    };
    c.rest.is_empty().then_some(tick)
}

/// A trade or book-ticker payload object.
#[inline]
fn payload(c: &mut Cursor<'_>, meta: FrameMeta, index: &InstrumentIndex) -> Option<Tick> {
    if c.eat(b"{\"e\":\"trade\",\"E\":") {
        trade(c, meta, index)
    } else if c.eat(b"{\"u\":") {
        book_ticker(c, meta, index)
    } else {
        None
    }
}

/// The rest of a trade payload, after `"E":`.
#[inline]
fn trade(c: &mut Cursor<'_>, meta: FrameMeta, index: &InstrumentIndex) -> Option<Tick> {
    // `E` is not used (the general decoder ignores it too) but must be a valid integer.
    c.uint()?;
    c.expect(b",\"s\":\"")?;
    let instrument = index.by_venue_symbol(Venue::Binance, c.name()?)?;
    c.expect(b",\"t\":")?;
    let seq = c.uint()?;
    c.expect(b",\"p\":\"")?;
    let price = c.price()?;
    c.expect(b",\"q\":\"")?;
    let qty = c.qty()?;
    if qty.is_zero() {
        return None;
    }
    c.expect(b",\"T\":")?;
    let exchange_ns = c.uint()?.checked_mul(NS_PER_MS)?;
    c.expect(b",\"m\":")?;
    let buyer_is_maker = c.bool()?;
    c.expect(b",\"M\":")?;
    c.bool()?;
    c.expect(b"}")?;
    // `m`: the buyer's order was resting, so the seller took liquidity.
    let aggressor = if buyer_is_maker { Side::Sell } else { Side::Buy };
    Some(Tick {
        instrument,
        venue: Venue::Binance,
        body: TickBody::Trade { price, qty, aggressor },
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

/// The rest of a spot book-ticker payload, after `"u":`.
#[inline]
fn book_ticker(c: &mut Cursor<'_>, meta: FrameMeta, index: &InstrumentIndex) -> Option<Tick> {
    let seq = c.uint()?;
    c.expect(b",\"s\":\"")?;
    let instrument = index.by_venue_symbol(Venue::Binance, c.name()?)?;
    c.expect(b",\"b\":\"")?;
    let bid = c.price()?;
    c.expect(b",\"B\":\"")?;
    let bid_qty = c.qty()?;
    c.expect(b",\"a\":\"")?;
    let ask = c.price()?;
    c.expect(b",\"A\":\"")?;
    let ask_qty = c.qty()?;
    c.expect(b"}")?;
    Some(Tick {
        instrument,
        venue: Venue::Binance,
        body: TickBody::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        seq,
        // Spot `bookTicker` carries neither `E` nor `T`.
        exchange_ns: 0,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

/// The unread rest of the frame.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// Consumes `lit` if the rest starts with it.
    #[inline(always)]
    fn eat(&mut self, lit: &[u8]) -> bool {
        match self.rest.strip_prefix(lit) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Consumes `lit` or gives up on the frame.
    #[inline(always)]
    fn expect(&mut self, lit: &[u8]) -> Option<()> {
        self.eat(lit).then_some(())
    }

    /// The bytes up to the next `"`, which is consumed too; the opening quote is already read.
    #[inline(always)]
    fn until_quote(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == b'"')?;
        let text = self.rest.get(..end)?;
        self.rest = self.rest.get(end + 1..)?;
        Some(text)
    }

    /// A string of printable ASCII without escapes (a stream name or a symbol).
    ///
    /// Anything else (a backslash, a control byte, non-ASCII) may be valid JSON whose unescaped
    /// value differs from its bytes, so it is left to the general decoder.
    #[inline(always)]
    fn name(&mut self) -> Option<&'a [u8]> {
        let text = self.until_quote()?;
        text.iter()
            .all(|&b| matches!(b, b' '..=b'~') && b != b'\\')
            .then_some(text)
    }

    /// A strictly positive price string.
    ///
    /// `Price::parse_bytes` accepts only digits and one `.`, so an accepted string holds no
    /// escape and is its own JSON value.
    #[inline(always)]
    fn price(&mut self) -> Option<Price> {
        Price::parse_bytes(self.until_quote()?).ok().filter(|p| !p.is_zero())
    }

    /// A non-negative quantity string (zero allowed; trades check it themselves).
    #[inline(always)]
    fn qty(&mut self) -> Option<Qty> {
        Qty::parse_bytes(self.until_quote()?).ok()
    }

    /// A JSON integer in `0..=u64::MAX`: digits only, no sign, no leading zero.
    ///
    /// Nineteen digits always fit in a `u64`, so the loop runs unchecked (a two-instruction
    /// multiply-add per digit instead of a checked multiply, which made the integers half of
    /// this path's cost in the quick loop); only a twentieth digit is checked, and more
    /// than twenty cannot fit.
    #[inline(always)]
    fn uint(&mut self) -> Option<u64> {
        const ALWAYS_FITS: usize = 19;
        let mut n: u64 = 0;
        let mut len = 0;
        while let Some(&b) = self.rest.get(len) {
            if !b.is_ascii_digit() {
                break;
            }
            if len == ALWAYS_FITS {
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            } else if len > ALWAYS_FITS {
                return None;
            } else {
                // Below 10^19 before this step, so below u64::MAX after it: this cannot wrap.
                n = n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            }
            len += 1;
        }
        // JSON forbids leading zeros; such a frame is the general decoder's to refuse.
        if len == 0 || (len > 1 && self.rest.first() == Some(&b'0')) {
            return None;
        }
        self.rest = self.rest.get(len..)?;
        Some(n)
    }

    /// Exactly `true` or `false`.
    #[inline(always)]
    fn bool(&mut self) -> Option<bool> {
        if self.eat(b"true") {
            Some(true)
        } else if self.eat(b"false") {
            Some(false)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstrumentId, Symbol, VenueSymbol};
    use crate::records::Stamp;

    fn index() -> InstrumentIndex {
        let entry = |name: &str| {
            let mut venues = [None; Venue::COUNT];
            venues[Venue::Binance.index()] = Some(VenueSymbol::new(name).unwrap());
            (Symbol::new(name).unwrap(), venues)
        };
        InstrumentIndex::new([entry("BTCUSDT"), entry("ETHUSDT")]).unwrap()
    }

    const META: FrameMeta = FrameMeta {
        recv_ns: 7,
        stamp: Stamp(9),
    };

    fn fast(frame: &str) -> Option<Tick> {
        try_decode(frame.as_bytes(), META, &index())
    }

    const TRADE: &str = r#"{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}"#;
    const TICKER: &str =
        r#"{"u":50093239212,"s":"ETHUSDT","b":"2500.10000000","B":"3.78826000","a":"2500.11000000","A":"0.00000000"}"#;

    #[test]
    fn real_shapes_are_taken_raw_and_combined() {
        let trade = fast(TRADE).unwrap();
        assert_eq!(trade.instrument, InstrumentId(0));
        assert_eq!(trade.seq, 3_735_683_259);
        assert_eq!(trade.exchange_ns, 1_723_161_255_342_000_000);
        assert_eq!((trade.recv_ns, trade.stamp), (7, Stamp(9)));
        assert_eq!(
            trade.body,
            TickBody::Trade {
                price: "61837.63".parse().unwrap(),
                qty: "0.02".parse().unwrap(),
                aggressor: Side::Sell,
            }
        );
        let combined = format!(r#"{{"stream":"btcusdt@trade","data":{TRADE}}}"#);
        assert_eq!(fast(&combined), Some(trade));
        let ticker = fast(TICKER).unwrap();
        assert_eq!(
            (ticker.instrument, ticker.seq, ticker.exchange_ns),
            (InstrumentId(1), 50_093_239_212, 0)
        );
        assert_eq!(
            ticker.body,
            TickBody::Quote {
                bid: "2500.1".parse().unwrap(),
                bid_qty: "3.78826".parse().unwrap(),
                ask: "2500.11".parse().unwrap(),
                ask_qty: Qty::ZERO,
            }
        );
        let combined = format!(r#"{{"stream":"ethusdt@bookTicker","data":{TICKER}}}"#);
        assert_eq!(fast(&combined), Some(ticker));
        let buyer_took = fast(&TRADE.replace(r#""m":true"#, r#""m":false"#)).unwrap();
        assert!(matches!(
            buyer_took.body,
            TickBody::Trade {
                aggressor: Side::Buy,
                ..
            }
        ));
    }

    #[test]
    fn anything_off_the_exact_shape_is_left_to_the_general_decoder() {
        let off = [
            // Whitespace, trailing bytes, a wrapper with a different key order.
            TRADE.replace(",", ", "),
            format!("{TRADE} "),
            format!("{TRADE}\n"),
            format!(r#"{{"data":{TRADE},"stream":"btcusdt@trade"}}"#),
            format!(r#"{{"stream":"btc\"usdt@trade","data":{TRADE}}}"#),
            format!(r#"{{"stream":"btcusdt@trade","data":{TRADE}}}}}"#),
            // Escapes, leading zeros, signs, numbers where strings belong and vice versa.
            TRADE.replace("BTCUSDT", r"BTC\u0055SDT"),
            TRADE.replace("3735683259", "03735683259"),
            TRADE.replace("3735683259", "+3735683259"),
            TRADE.replace("3735683259", "-1"),
            TRADE.replace("3735683259", "3735683259.0"),
            TRADE.replace("1723161255343", "1723161255343e0"),
            TRADE.replace(r#""61837.63000000""#, "61837.63"),
            TRADE.replace(r#""m":true"#, r#""m":1"#),
            TRADE.replace(r#""M":true"#, r#""M":True"#),
            // Values the general decoder refuses: zero price or quantity, unknown symbol,
            // a time past u64 nanoseconds, an integer past u64.
            TRADE.replace("61837.63000000", "0.00000000"),
            TRADE.replace("0.02000000", "0"),
            TRADE.replace("BTCUSDT", "BTCUSDC"),
            TRADE.replace("1723161255342", "18446744073710"),
            TRADE.replace("3735683259", "18446744073709551616"),
            TICKER.replace("2500.10000000", "0"),
            // A key out of order, dropped or added.
            TRADE.replace(
                r#""E":1723161255343,"s":"BTCUSDT""#,
                r#""s":"BTCUSDT","E":1723161255343"#,
            ),
            TRADE.replace(r#","M":true"#, ""),
            TRADE.replace(r#","M":true"#, r#","M":true,"X":1"#),
            TICKER.replace(r#"{"u""#, r#"{"e":"bookTicker","u""#),
            // Other message kinds.
            r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1}"#.to_string(),
            String::new(),
        ];
        for frame in off {
            assert_eq!(fast(&frame), None, "{frame}");
        }
        // Zero and u64::MAX are integers like any other.
        assert!(fast(&TRADE.replace("3735683259", "0")).is_some());
        assert_eq!(
            fast(&TRADE.replace("3735683259", "18446744073709551615")).map(|t| t.seq),
            Some(u64::MAX)
        );
    }

    #[test]
    fn every_prefix_is_left_to_the_general_decoder() {
        for frame in [TRADE, TICKER] {
            for len in 0..frame.len() {
                assert_eq!(try_decode(&frame.as_bytes()[..len], META, &index()), None);
            }
        }
    }
}
