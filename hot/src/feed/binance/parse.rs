//! The Binance Spot market-data decoder: one WebSocket text frame in, one [`Decoded`] out.
//!
//! [`BinanceDecoder::decode`] first offers the frame to [`fast`], a strict byte matcher for
//! `trade` and spot `bookTicker` frames written exactly as Binance writes them (every trade and
//! book-ticker frame in the 2024-08-08 captures).
//! It returns a tick only where the general path below returns the same one, and leaves
//! everything else, errors included, to that path.
//! The rest of these docs describe the general path, [`BinanceDecoder::decode_full`].
//!
//! Frames are parsed with simd-json into a tape (a flat `Vec` of nodes) and the tape is
//! walked directly, reading only the keys the message kind needs; the serde layer is not used.
//! Decimal strings go from the tape straight into [`Price::parse_bytes`] /
//! [`Qty::parse_bytes`], so no float and no owned string ever appears.
//!
//! **Invariant:** no heap allocation per frame once the decoder has seen frames of the sizes
//! it will keep seeing.
//! simd-json parses in place, so each frame is copied into a reusable input buffer (with the
//! padding simd-json's SIMD loads need); its scratch [`Buffers`] and the node `Vec` of the
//! [`Tape`] are kept between frames too.
//! The tape borrows the input it was parsed from, so between frames it is stored emptied as a
//! `Tape<'static>` and re-lifetimed for each frame with simd-json's own [`Tape::reset`], which
//! clears it first; no `unsafe` is needed here.
//! `tests/feed_binance_decode.rs` proves the invariant with a counting global allocator.
//!
//! A frame is read in three steps: record where each known key sits in the top-level object
//! (and in `data` for a combined frame), decide the message kind from which keys are present
//! (see the table in [`messages`](super::messages)), then read and validate the fields that
//! kind needs.
//! Every malformed input is an `Err` with a [`DecodeReason`]; nothing here panics, and no tick
//! ever carries a zero or negative price.
//!
//! Times (`T`, `E`) are read as milliseconds, Binance's default: a connection opened with
//! `timeUnit=MICROSECOND` would need a decoder option, which nothing asks for yet.
//!
//! Cost of the general path, from a quick release-mode loop (not a criterion bench): about
//! 335 ns for a combined trade frame (168 bytes), 310 ns for a combined `bookTicker`, of which
//! about 260 ns is simd-json's own parse (AVX2 path); rustc 1.95, 2-vCPU AMD EPYC VM, no
//! tuning. The fast path takes about 100 ns for the same trade frame (see [`fast`]).

use core::fmt;

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::fast;
use super::messages::{EventType, Key};
use crate::feed::tape;
use crate::feed::{Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, SkipKind};
use crate::ids::{InstrumentId, InstrumentIndex, Venue};
use crate::num::{Price, Qty};
use crate::records::{Side, Tick, TickBody};

/// Deepest nesting accepted. Binance frames nest four deep at most (combined `depthUpdate`:
/// wrapper, payload, level list, level); a low limit bounds the parser's stack on hostile input.
const MAX_DEPTH: usize = 16;

/// Bytes simd-json may read past the end of the document.
const PADDING: usize = simd_json::INPUT_PADDING;

/// Frame size the buffers are sized for up front; larger frames grow them once.
///
/// Trade and `bookTicker` frames are 150-200 bytes, `depthUpdate` frames a few KiB.
const INITIAL_FRAME_BYTES: usize = 4 * 1024;

/// Milliseconds to nanoseconds.
const NS_PER_MS: u64 = 1_000_000;

/// Decodes Binance Spot stream frames, raw or combined, into ticks, skips and control messages.
///
/// Owns the scratch memory simd-json needs, so one decoder serves one connection and is reused
/// for every frame; see the module docs for why that makes decoding allocation-free.
pub struct BinanceDecoder {
    /// The current frame plus [`PADDING`] bytes; simd-json unescapes strings in place here.
    input: Vec<u8>,
    /// simd-json's structural-index, string and stack scratch.
    buffers: Buffers,
    /// The node `Vec`, always empty between frames.
    tape: Tape<'static>,
    /// Decode `aggTrade` frames as trades (the feed subscribed `aggTrade` instead of `trade`);
    /// otherwise they are skipped.
    agg_trades: bool,
}

impl BinanceDecoder {
    /// A decoder with buffers sized for typical stream frames.
    pub fn new() -> Self {
        Self {
            input: Vec::with_capacity(INITIAL_FRAME_BYTES + PADDING),
            buffers: Buffers::with_max_depth(INITIAL_FRAME_BYTES, MAX_DEPTH),
            tape: Tape(Vec::with_capacity(INITIAL_FRAME_BYTES / 8)),
            agg_trades: false,
        }
    }

    /// Decodes `aggTrade` frames as trades instead of skipping them: for feeds configured with
    /// the `aggTrade` stream instead of `trade`.
    pub fn with_agg_trades(mut self) -> Self {
        self.agg_trades = true;
        self
    }

    /// Decodes one frame.
    ///
    /// `meta` supplies the receive time and stamp that every tick carries; `index` maps the
    /// payload's symbol to our instrument.
    ///
    /// # Errors
    /// A [`DecodeError`] saying why the frame was refused and which field was at fault:
    /// invalid JSON or UTF-8, a frame over [`MAX_FRAME_BYTES`], a missing or mistyped field,
    /// a bad decimal, a zero or negative price, a zero trade quantity, a symbol the index does
    /// not list, or an object of no known shape.
    #[inline]
    pub fn decode(&mut self, frame: &[u8], meta: FrameMeta, index: &InstrumentIndex) -> Result<Decoded, DecodeError> {
        // Trades and book tickers in Binance's exact shape skip simd-json; the fast path
        // returns a tick only where this decoder's general path returns the same one.
        if let Some(tick) = fast::try_decode(frame, meta, index) {
            return Ok(Decoded::Tick(tick));
        }
        self.decode_full(frame, meta, index)
    }

    /// Decodes one frame with the general simd-json path only, bypassing [`fast`].
    ///
    /// This is the reference the fast path is tested against; the engine calls
    /// [`decode`](Self::decode).
    ///
    /// # Errors
    /// As [`decode`](Self::decode), which returns exactly what this returns for every input.
    #[doc(hidden)]
    pub fn decode_full(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
    ) -> Result<Decoded, DecodeError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::frame(DecodeReason::TooLarge));
        }
        self.input.clear();
        self.input.extend_from_slice(frame);
        self.input.extend_from_slice(&[b' '; PADDING]);
        let mut tape = core::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let decoded = match simd_json::fill_tape_padded(&mut self.input, frame.len(), &mut self.buffers, &mut tape) {
            Ok(()) => read_frame(&tape.0, meta, index, self.agg_trades),
            Err(e) => Err(json_error(&e)),
        };
        // Clearing the tape ends its borrow of `input`, so it can be kept for the next frame.
        self.tape = tape.reset();
        decoded
    }
}

impl Default for BinanceDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BinanceDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinanceDecoder")
            .field("input_capacity", &self.input.capacity())
            .field("tape_capacity", &self.tape.0.capacity())
            .finish_non_exhaustive()
    }
}

/// Maps a simd-json parse error to a reason; only invalid UTF-8 is told apart from the rest.
#[cold]
fn json_error(e: &simd_json::Error) -> DecodeError {
    match e.error() {
        simd_json::ErrorType::InvalidUtf8 => DecodeError::frame(DecodeReason::Utf8),
        _ => DecodeError::frame(DecodeReason::Json),
    }
}

/// Reads a parsed frame: unwraps a combined frame, then reads the payload.
fn read_frame(
    tape: &[Node<'_>],
    meta: FrameMeta,
    index: &InstrumentIndex,
    agg_trades: bool,
) -> Result<Decoded, DecodeError> {
    let top = Fields::collect(tape, 0).ok_or(DecodeError::frame(DecodeReason::NotObject))?;
    let top = Object { tape, fields: top };
    if top.has(Key::Stream) {
        // The stream name is not needed: the payload says what it is. It must still be a name.
        top.str(Key::Stream)?;
        let data = top.required(Key::Data)?;
        let fields = Fields::collect(tape, data).ok_or(DecodeError::at(DecodeReason::NotObject, Key::Data.wire()))?;
        read_payload(Object { tape, fields }, Framing::Combined, meta, index, agg_trades)
    } else {
        read_payload(top, Framing::Raw, meta, index, agg_trades)
    }
}

/// Whether the payload came inside a `{"stream":..,"data":..}` wrapper.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Raw,
    Combined,
}

/// Decides what a payload is from the keys it has, then reads it.
fn read_payload(
    obj: Object<'_, '_>,
    framing: Framing,
    meta: FrameMeta,
    index: &InstrumentIndex,
    agg_trades: bool,
) -> Result<Decoded, DecodeError> {
    if obj.has(Key::EventType) {
        let event = EventType::from_wire(obj.str(Key::EventType)?.as_bytes());
        return match event {
            EventType::Trade => read_trade(&obj, meta, index).map(Decoded::Tick),
            EventType::BookTicker => read_quote(&obj, meta, index).map(Decoded::Tick),
            EventType::DepthUpdate => Ok(Decoded::Skipped(SkipKind::Depth)),
            EventType::AggTrade if agg_trades => read_agg_trade(&obj, meta, index).map(Decoded::Tick),
            EventType::AggTrade => Ok(Decoded::Skipped(SkipKind::AggTrade)),
            EventType::ServerShutdown => Ok(Decoded::Control(Control::ServerShutdown)),
            EventType::Other => Ok(Decoded::Skipped(SkipKind::Other)),
        };
    }
    // Spot `bookTicker` is the one stream payload without an event type; `u` identifies it.
    if obj.has(Key::UpdateId) {
        return read_quote(&obj, meta, index).map(Decoded::Tick);
    }
    if obj.has(Key::LastUpdateId) {
        // Inside a combined frame it is a `<symbol>@depth<N>` partial book; at the top level,
        // the REST snapshot a capture records before the diffs.
        let kind = match framing {
            Framing::Combined => SkipKind::Depth,
            Framing::Raw => SkipKind::Snapshot,
        };
        return Ok(Decoded::Skipped(kind));
    }
    if obj.has(Key::Result) {
        return Ok(Decoded::Control(Control::Result { id: obj.int(Key::Id)? }));
    }
    if obj.has(Key::Code) {
        return Ok(Decoded::Control(Control::Error {
            code: obj.int(Key::Code)?,
        }));
    }
    Err(DecodeError::frame(DecodeReason::UnknownMessage))
}

/// Reads a `trade` payload.
fn read_trade(obj: &Object<'_, '_>, meta: FrameMeta, index: &InstrumentIndex) -> Result<Tick, DecodeError> {
    let instrument = obj.instrument(index)?;
    let seq = obj.uint(Key::TradeId)?;
    let price = obj.price(Key::Price)?;
    let qty = obj.qty(Key::Qty)?;
    if qty.is_zero() {
        return Err(DecodeError::at(DecodeReason::ZeroQty, Key::Qty.wire()));
    }
    let exchange_ns = obj.time_ns(Key::TradeTime)?;
    // `m`: the buyer's order was resting, so the seller took liquidity.
    let aggressor = if obj.flag(Key::BuyerIsMaker)? {
        Side::Sell
    } else {
        Side::Buy
    };
    Ok(Tick {
        instrument,
        venue: Venue::Binance,
        body: TickBody::Trade { price, qty, aggressor },
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

/// Reads an `aggTrade` payload (one taker order's fills at one price) as a trade whose id is
/// the aggregate trade id `a`, which is consecutive per symbol like trade ids.
fn read_agg_trade(obj: &Object<'_, '_>, meta: FrameMeta, index: &InstrumentIndex) -> Result<Tick, DecodeError> {
    let instrument = obj.instrument(index)?;
    // `a` is the aggregate trade id here (in bookTicker the same letter is the ask).
    let seq = obj.uint(Key::Ask)?;
    let price = obj.price(Key::Price)?;
    let qty = obj.qty(Key::Qty)?;
    if qty.is_zero() {
        return Err(DecodeError::at(DecodeReason::ZeroQty, Key::Qty.wire()));
    }
    let exchange_ns = obj.time_ns(Key::TradeTime)?;
    let aggressor = if obj.flag(Key::BuyerIsMaker)? {
        Side::Sell
    } else {
        Side::Buy
    };
    Ok(Tick {
        instrument,
        venue: Venue::Binance,
        body: TickBody::Trade { price, qty, aggressor },
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

/// Reads a `bookTicker` payload, spot (no time) or futures (`E` and `T`).
///
/// A crossed or locked quote is passed on: the two sides of the book can cross for a moment
/// and consumers decide what to make of it. Zero sizes are passed on too.
fn read_quote(obj: &Object<'_, '_>, meta: FrameMeta, index: &InstrumentIndex) -> Result<Tick, DecodeError> {
    let seq = obj.uint(Key::UpdateId)?;
    let instrument = obj.instrument(index)?;
    let bid = obj.price(Key::Bid)?;
    let bid_qty = obj.qty(Key::BidQty)?;
    let ask = obj.price(Key::Ask)?;
    let ask_qty = obj.qty(Key::AskQty)?;
    let exchange_ns = if obj.has(Key::TradeTime) {
        obj.time_ns(Key::TradeTime)?
    } else if obj.has(Key::EventTime) {
        obj.time_ns(Key::EventTime)?
    } else {
        0
    };
    Ok(Tick {
        instrument,
        venue: Venue::Binance,
        body: TickBody::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

impl tape::WireKey for Key {
    #[inline]
    fn from_wire(bytes: &[u8]) -> Option<Self> {
        Key::from_wire(bytes)
    }

    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

/// Where each known key's value sits in the tape.
type Fields = tape::Fields<Key, { Key::COUNT }>;

/// One JSON object of the frame, with its known keys located.
#[derive(Clone, Copy)]
struct Object<'t, 'i> {
    tape: &'t [Node<'i>],
    fields: Fields,
}

impl<'i> Object<'_, 'i> {
    #[inline]
    fn has(&self, key: Key) -> bool {
        self.fields.at[key as usize] != 0
    }

    /// The tape position of `key`'s value.
    #[inline]
    fn required(&self, key: Key) -> Result<usize, DecodeError> {
        match self.fields.at[key as usize] {
            0 => Err(DecodeError::at(DecodeReason::MissingField, key.wire())),
            at => Ok(at as usize),
        }
    }

    #[inline]
    fn node(&self, key: Key) -> Result<Node<'i>, DecodeError> {
        let at = self.required(key)?;
        // `collect` only records positions it has read a node at.
        self.tape
            .get(at)
            .copied()
            .ok_or(DecodeError::at(DecodeReason::Json, key.wire()))
    }

    #[inline]
    fn str(&self, key: Key) -> Result<&'i str, DecodeError> {
        match self.node(key)? {
            Node::String(s) => Ok(s),
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    /// A non-negative integer (ids, times).
    #[inline]
    fn uint(&self, key: Key) -> Result<u64, DecodeError> {
        match self.node(key)? {
            Node::Static(StaticNode::U64(n)) => Ok(n),
            Node::Static(StaticNode::I64(n)) => {
                u64::try_from(n).map_err(|_| DecodeError::at(DecodeReason::OutOfRange, key.wire()))
            }
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    /// A signed integer (request ids, error codes).
    #[inline]
    fn int(&self, key: Key) -> Result<i64, DecodeError> {
        match self.node(key)? {
            Node::Static(StaticNode::I64(n)) => Ok(n),
            Node::Static(StaticNode::U64(n)) => {
                i64::try_from(n).map_err(|_| DecodeError::at(DecodeReason::OutOfRange, key.wire()))
            }
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    #[inline]
    fn flag(&self, key: Key) -> Result<bool, DecodeError> {
        match self.node(key)? {
            Node::Static(StaticNode::Bool(b)) => Ok(b),
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    /// A time in milliseconds since the epoch, returned in nanoseconds.
    #[inline]
    fn time_ns(&self, key: Key) -> Result<u64, DecodeError> {
        self.uint(key)?
            .checked_mul(NS_PER_MS)
            .ok_or(DecodeError::at(DecodeReason::OutOfRange, key.wire()))
    }

    /// A strictly positive price.
    #[inline]
    fn price(&self, key: Key) -> Result<Price, DecodeError> {
        let text = self.str(key)?.as_bytes();
        match Price::parse_bytes(text) {
            Ok(p) if !p.is_zero() => Ok(p),
            Ok(_) => Err(DecodeError::at(DecodeReason::NonPositivePrice, key.wire())),
            // `Price` refuses any sign; a leading minus is a negative price, not a typo.
            Err(_) if text.first() == Some(&b'-') => Err(DecodeError::at(DecodeReason::NonPositivePrice, key.wire())),
            Err(_) => Err(DecodeError::at(DecodeReason::BadDecimal, key.wire())),
        }
    }

    /// A non-negative quantity (zero allowed here; trades check it themselves).
    #[inline]
    fn qty(&self, key: Key) -> Result<Qty, DecodeError> {
        Qty::parse_bytes(self.str(key)?.as_bytes()).map_err(|_| DecodeError::at(DecodeReason::BadDecimal, key.wire()))
    }

    /// The instrument named by `s`, which Binance spells exactly as the index does.
    #[inline]
    fn instrument(&self, index: &InstrumentIndex) -> Result<InstrumentId, DecodeError> {
        let symbol = self.str(Key::Symbol)?;
        index
            .by_venue_symbol(Venue::Binance, symbol.as_bytes())
            .ok_or(DecodeError::at(DecodeReason::UnknownSymbol, Key::Symbol.wire()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Symbol, VenueSymbol};
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

    fn decode(frame: &str) -> Result<Decoded, DecodeError> {
        BinanceDecoder::new().decode(frame.as_bytes(), META, &index())
    }

    fn err(reason: DecodeReason, field: &'static str) -> Result<Decoded, DecodeError> {
        Err(DecodeError { reason, field })
    }

    const TRADE: &str = r#"{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}"#;

    #[test]
    fn raw_and_combined_trades_decode_alike() {
        let expected = Decoded::Tick(Tick {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            body: TickBody::Trade {
                price: "61837.63".parse().unwrap(),
                qty: "0.02".parse().unwrap(),
                aggressor: Side::Sell,
            },
            seq: 3_735_683_259,
            exchange_ns: 1_723_161_255_342_000_000,
            recv_ns: 7,
            stamp: Stamp(9),
        });
        assert_eq!(decode(TRADE), Ok(expected));
        let combined = format!(r#"{{"stream":"btcusdt@trade","data":{TRADE}}}"#);
        assert_eq!(decode(&combined), Ok(expected));
        let buyer_took = TRADE.replace(r#""m":true"#, r#""m":false"#);
        let Ok(Decoded::Tick(Tick {
            body: TickBody::Trade { aggressor, .. },
            ..
        })) = decode(&buyer_took)
        else {
            panic!("not a trade");
        };
        assert_eq!(aggressor, Side::Buy);
    }

    #[test]
    fn spot_and_futures_book_tickers_are_quotes() {
        let spot = r#"{"u":400900217,"s":"ETHUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"0"}"#;
        let Ok(Decoded::Tick(tick)) = decode(spot) else {
            panic!("not a tick")
        };
        assert_eq!(tick.instrument, InstrumentId(1));
        assert_eq!(tick.seq, 400_900_217);
        assert_eq!(tick.exchange_ns, 0);
        assert_eq!(
            tick.body,
            TickBody::Quote {
                bid: "25.3519".parse().unwrap(),
                bid_qty: "31.21".parse().unwrap(),
                ask: "25.3652".parse().unwrap(),
                ask_qty: Qty::ZERO,
            }
        );
        let futures = r#"{"e":"bookTicker","u":5,"E":1568014460893,"T":1568014460891,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}"#;
        let Ok(Decoded::Tick(tick)) = decode(futures) else {
            panic!("not a tick")
        };
        assert_eq!(tick.exchange_ns, 1_568_014_460_891_000_000);
        let only_event_time =
            r#"{"e":"bookTicker","u":5,"E":1568014460893,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}"#;
        let Ok(Decoded::Tick(tick)) = decode(only_event_time) else {
            panic!("not a tick")
        };
        assert_eq!(tick.exchange_ns, 1_568_014_460_893_000_000);
    }

    #[test]
    fn recognised_frames_without_ticks_are_skipped_or_control() {
        let skipped = |f: &str| {
            decode(f).map(|d| match d {
                Decoded::Skipped(k) => k,
                other => panic!("{other:?}"),
            })
        };
        assert_eq!(
            skipped(r#"{"e":"depthUpdate","U":1,"u":2,"b":[],"a":[]}"#),
            Ok(SkipKind::Depth)
        );
        assert_eq!(
            skipped(r#"{"stream":"x@depth5","data":{"lastUpdateId":1,"bids":[],"asks":[]}}"#),
            Ok(SkipKind::Depth)
        );
        assert_eq!(
            skipped(r#"{"lastUpdateId":1,"bids":[],"asks":[]}"#),
            Ok(SkipKind::Snapshot)
        );
        assert_eq!(skipped(r#"{"e":"aggTrade","a":1}"#), Ok(SkipKind::AggTrade));
        assert_eq!(skipped(r#"{"e":"kline","k":{}}"#), Ok(SkipKind::Other));
        assert_eq!(
            decode(r#"{"result":null,"id":1}"#),
            Ok(Decoded::Control(Control::Result { id: 1 }))
        );
        assert_eq!(
            decode(r#"{"result":["a"],"id":-3}"#),
            Ok(Decoded::Control(Control::Result { id: -3 }))
        );
        assert_eq!(
            decode(r#"{"code":-1121,"msg":"x"}"#),
            Ok(Decoded::Control(Control::Error { code: -1121 }))
        );
        assert_eq!(
            decode(r#"{"e":"serverShutdown","E":1}"#),
            Ok(Decoded::Control(Control::ServerShutdown))
        );
        assert_eq!(
            decode(r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}"#),
            Ok(Decoded::Control(Control::ServerShutdown))
        );
    }

    #[test]
    fn malformed_frames_say_why() {
        use DecodeReason::*;
        assert_eq!(decode(""), err(Json, ""));
        assert_eq!(decode(&TRADE[..TRADE.len() - 1]), err(Json, ""));
        assert_eq!(decode("[1]"), err(NotObject, ""));
        assert_eq!(decode(r#"{"stream":"a","data":[]}"#), err(NotObject, "data"));
        assert_eq!(decode(r#"{"stream":"a"}"#), err(MissingField, "data"));
        assert_eq!(decode(r#"{"stream":1,"data":{}}"#), err(BadType, "stream"));
        assert_eq!(decode(r#"{"x":1}"#), err(UnknownMessage, ""));
        assert_eq!(decode(r#"{"e":1}"#), err(BadType, "e"));
        assert_eq!(decode(r#"{"result":null}"#), err(MissingField, "id"));
        assert_eq!(decode(r#"{"result":null,"id":"a"}"#), err(BadType, "id"));
        assert_eq!(decode(&TRADE.replace("BTCUSDT", "BTCUSDC")), err(UnknownSymbol, "s"));
        assert_eq!(decode(&TRADE.replace("BTCUSDT", "btcusdt")), err(UnknownSymbol, "s"));
        assert_eq!(
            decode(&TRADE.replace(r#""61837.63000000""#, "61837.63")),
            err(BadType, "p")
        );
        assert_eq!(decode(&TRADE.replace("61837.63000000", "6e4")), err(BadDecimal, "p"));
        assert_eq!(
            decode(&TRADE.replace("61837.63000000", "0.00")),
            err(NonPositivePrice, "p")
        );
        assert_eq!(
            decode(&TRADE.replace("61837.63000000", "-1")),
            err(NonPositivePrice, "p")
        );
        assert_eq!(decode(&TRADE.replace("0.02000000", "0")), err(ZeroQty, "q"));
        assert_eq!(decode(&TRADE.replace("0.02000000", "-1")), err(BadDecimal, "q"));
        assert_eq!(decode(&TRADE.replace("3735683259", "-1")), err(OutOfRange, "t"));
        assert_eq!(decode(&TRADE.replace("3735683259", "1.5")), err(BadType, "t"));
        assert_eq!(
            decode(&TRADE.replace("1723161255342", "18446744073709551615")),
            err(OutOfRange, "T")
        );
        assert_eq!(decode(&TRADE.replace(r#""m":true"#, r#""m":1"#)), err(BadType, "m"));
        assert_eq!(decode(&TRADE.replace(r#","m":true"#, "")), err(MissingField, "m"));
        assert_eq!(
            BinanceDecoder::new().decode(b"{\"e\":\"\xff\"}", META, &index()),
            err(Utf8, "")
        );
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(BinanceDecoder::new().decode(&big, META, &index()), err(TooLarge, ""));
    }

    #[test]
    fn one_decoder_survives_errors_between_frames() {
        let mut decoder = BinanceDecoder::new();
        let index = index();
        for _ in 0..3 {
            assert!(decoder.decode(TRADE.as_bytes(), META, &index).is_ok());
            assert!(decoder.decode(&TRADE.as_bytes()[..40], META, &index).is_err());
            assert!(decoder.decode(b"{\"e\":\"trade\"}", META, &index).is_err());
        }
    }

    #[test]
    fn reasons_have_dense_indexes_and_distinct_names() {
        for (i, r) in DecodeReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(DecodeReason::ALL[..i].iter().all(|o| o.name() != r.name()));
        }
        for (i, k) in SkipKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        assert_eq!(
            DecodeError::at(DecodeReason::BadType, "p").to_string(),
            "bad_type in field `p`"
        );
        assert_eq!(DecodeError::frame(DecodeReason::Json).to_string(), "json");
    }
}
