//! The Bybit v5 public market-data decoder: one WebSocket text frame in, one [`Decoded`] out
//! (trades written to the caller's [`TickBatch`]).
//!
//! Frames are parsed with simd-json into a tape and the tape is walked directly, as in the
//! Binance decoder: decimal strings go straight into [`Price::parse_bytes`] /
//! [`Qty::parse_bytes`], so no float and no owned string ever appears.
//!
//! **Invariant:** no heap allocation per frame once the decoder has seen frames of the sizes
//! it will keep seeing.
//! Each frame is copied into a reusable padded input buffer; simd-json's scratch [`Buffers`]
//! and the node `Vec` of the [`Tape`] are kept between frames, the tape stored emptied as a
//! `Tape<'static>` and re-lifetimed for each frame with simd-json's own [`Tape::reset`].
//! The per-instrument book state is two `Vec`s sized once when the decoder is built.
//! `tests/feed_bybit_decode.rs` proves the invariant with a counting global allocator.
//!
//! What each frame becomes is listed in [`messages`](super::messages). The rules that need
//! state or a choice:
//!
//! * Two flavours. [`BybitDecoder::new`] takes spot and linear frames alike and numbers nothing
//!   the feed task can judge ([`Numbering::None`]). [`BybitDecoder::spot`] is for a spot
//!   connection, the one the engine opens: its trade sequence is the venue's trade id, which
//!   only increases per instrument, so the feed task can deduplicate the overlap of two
//!   connections ([`Numbering::Increasing`] for trades; quotes stay unjudged, see
//!   [`BybitDecoder::sequencing`] for why). The trade-id bullet below says where the two differ.
//! * `publicTrade` messages carry up to 1024 trades on the venue; a message with more than
//!   [`MAX_TICKS_PER_FRAME`] is refused whole as [`DecodeReason::TooManyTicks`] before any of it
//!   is read, and a message with a bad trade is refused whole too (no partial batch).
//!   Block trades (`BT: true`) are ticks like any other: they are prints on the venue's tape.
//! * Trade ids `i` are strings. A string of at most 20 ASCII digits that fits a `u64` (spot) is
//!   that number; anything else (the UUIDs of derivatives) becomes its 64-bit FNV-1a hash, which
//!   is stable across runs and machines but, unlike a spot id, says nothing about order.
//!   The spot decoder takes only the number: a hash among increasing ids could be taken for the
//!   newest trade and make the feed task drop every real one after it as a duplicate, so an id
//!   that is not decimal digits refuses the message as [`DecodeReason::BadDecimal`], and one past
//!   `u64::MAX` as [`DecodeReason::OutOfRange`].
//! * `orderbook.1` keeps the last known best bid and ask per instrument. A `snapshot` replaces
//!   both sides (an empty side is then unknown); in a `delta`, a side whose entries are all
//!   deletions (`"0"` size) or that has no entries keeps its last level, and otherwise the best
//!   entry with a size becomes the level. The docs say level-1 pushes are always snapshots; the
//!   delta rules cover the deeper books' protocol should level 1 ever use it.
//!   A quote is emitted for every push once both sides are known, otherwise the push is
//!   [`SkipKind::Depth`].
//! * Sequence: the last `u` per instrument. A snapshot resets it; a delta whose `u` is not the
//!   last plus one (or that arrives before any snapshot) adds one to [`TickBatch::gaps`]. A delta
//!   whose `u` is not above the last is stale: counted as a gap and not applied, as the docs say
//!   a decreasing `u` is an error. [`BybitDecoder::on_connect`] forgets everything.
//! * `tickers` merges `bid1Price`, `bid1Size`, `ask1Price`, `ask1Size` into per-instrument state,
//!   because linear deltas omit unchanged fields; an empty string counts as absent. A quote is
//!   emitted once all four are known and the push carried at least one of them; a push with none
//!   (spot and option tickers, linear deltas about other fields) is [`SkipKind::Other`].
//! * Quote times: `cts` (matching-engine time) for order books, else `ts`; `ts` for tickers.
//!   Quote `seq`: `u` for order books, `cs` (or 0 if absent) for tickers. Spot tickers carry no
//!   best bid and ask, so on a spot connection every quote's `seq` is `u` of `orderbook.1`.
//! * A reply with `success` is a control message: `op: subscribe` gives
//!   [`Control::Subscribed`] or [`Control::SubscribeRejected`], a pong (`op: ping` on spot and
//!   linear, `op: pong` elsewhere) [`Control::Heartbeat`], any other op [`Control::Result`] with
//!   the numeric `req_id` (0 when it is not a number) or [`Control::Error`] with code 0, because
//!   Bybit replies carry a text reason but no error code.
//!
//! Every malformed input is an `Err` with a [`DecodeReason`]; nothing here panics, and no tick
//! ever carries a zero or negative price. A frame that fails leaves the book state untouched.
//!
//! Cost, from a quick release-mode loop (not a criterion bench) on a busy 2-vCPU AMD EPYC VM,
//! rustc 1.95, where the Binance decoder's combined trade frame took 495 ns (340 ns on the idle
//! machine): a one-trade `publicTrade` push (234 bytes) 625 ns, ten trades (1.3 KB) 4.1 µs, an
//! `orderbook.1` snapshot or delta (190 bytes) 600 ns, the docs' linear ticker (882 bytes,
//! pretty-printed) 1.3 µs, a pong 240 ns, a skipped deeper-book push 470 ns. Most of it is
//! simd-json's own parse, which grows with the frame's length. The spot decoder's stricter id
//! check costs nothing measurable: in a later loop of the same kind (same VM, rustc 1.95), a
//! one-trade spot push took 390-430 ns on either decoder, ten trades 2.7 µs (generic 2.8-3.1 µs),
//! an `orderbook.1` snapshot 410 ns and a pong 150 ns.

use core::fmt;

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::messages::{COMMAND_RESP, Key, Op, PushType, Topic, taker_is_buyer};
use crate::feed::tape::{self, span};
use crate::feed::{
    Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, MAX_TICKS_PER_FRAME, Numbering,
    Sequencing, SkipKind, TickBatch,
};
use crate::ids::{InstrumentId, InstrumentIndex, Venue};
use crate::num::{Price, Qty};
use crate::records::{Side, Tick, TickBody};

/// Deepest nesting accepted. Bybit frames nest four deep (order book: envelope, payload,
/// level list, level); a low limit bounds the parser's stack on hostile input.
const MAX_DEPTH: usize = 16;

/// Bytes simd-json may read past the end of the document.
const PADDING: usize = simd_json::INPUT_PADDING;

/// Frame size the buffers are sized for up front; larger frames grow them once.
///
/// Level-1 book and single-trade frames are 200-400 bytes, a ticker about 900, a batch of 64
/// trades about 12 KiB.
const INITIAL_FRAME_BYTES: usize = 16 * 1024;

/// Milliseconds to nanoseconds.
const NS_PER_MS: u64 = 1_000_000;

/// FNV-1a 64-bit offset basis and prime, for trade ids that are not numbers.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// One price level: a price and the size resting there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Level {
    price: Price,
    qty: Qty,
}

/// What the decoder knows about one instrument's `orderbook.1` stream.
#[derive(Clone, Copy, Debug, Default)]
struct BookTop {
    bid: Option<Level>,
    ask: Option<Level>,
    /// `u` of the last push applied; `None` until the first snapshot of this connection.
    last_u: Option<u64>,
}

/// What the decoder knows about one instrument's `tickers` stream; each field may arrive alone.
#[derive(Clone, Copy, Debug, Default)]
struct TickerTop {
    bid: Option<Price>,
    bid_qty: Option<Qty>,
    ask: Option<Price>,
    ask_qty: Option<Qty>,
}

/// Per-instrument state, indexed by [`InstrumentId`], sized once.
#[derive(Clone, Debug)]
struct State {
    books: Vec<BookTop>,
    tickers: Vec<TickerTop>,
}

/// Decodes Bybit v5 public frames (spot and linear) into ticks, skips and control messages.
///
/// Owns the scratch memory simd-json needs and the top-of-book state of every instrument, so
/// one decoder serves one connection and is reused for every frame; see the module docs for
/// why that makes decoding allocation-free, and for how the spot flavour differs.
pub struct BybitDecoder {
    /// The current frame plus [`PADDING`] bytes; simd-json unescapes strings in place here.
    input: Vec<u8>,
    /// simd-json's structural-index, string and stack scratch.
    buffers: Buffers,
    /// The node `Vec`, always empty between frames.
    tape: Tape<'static>,
    state: State,
    /// Built by [`BybitDecoder::spot`]: trade ids must be decimal numbers, so that they only
    /// increase.
    spot: bool,
}

impl BybitDecoder {
    /// A decoder for spot and linear frames alike, for an engine with `instruments`
    /// instruments (the [`InstrumentIndex`]'s length), with buffers sized for typical frames.
    /// Its ids cannot be judged by the feed task ([`Numbering::None`]): derivatives' trade ids
    /// are hashed UUIDs, and quotes mix the numberings of `orderbook.1` and `tickers`.
    ///
    /// Book and ticker frames about an instrument whose id is `instruments` or more are refused
    /// as [`DecodeReason::UnknownSymbol`]: there is no state to keep for it.
    pub fn new(instruments: usize) -> Self {
        Self {
            input: Vec::with_capacity(INITIAL_FRAME_BYTES + PADDING),
            buffers: Buffers::with_max_depth(INITIAL_FRAME_BYTES, MAX_DEPTH),
            tape: Tape(Vec::with_capacity(INITIAL_FRAME_BYTES / 8)),
            state: State {
                books: vec![BookTop::default(); instruments],
                tickers: vec![TickerTop::default(); instruments],
            },
            spot: false,
        }
    }

    /// A decoder for a spot connection (`/v5/public/spot`), whose trade ids only increase per
    /// instrument ([`Numbering::Increasing`]), so the feed task can drop the trades two
    /// overlapping connections both deliver.
    ///
    /// It differs from [`new`](Self::new) in one rule (module docs): a trade id must be a
    /// decimal `u64`, since a hashed one among them could pass for the newest trade.
    pub fn spot(instruments: usize) -> Self {
        Self {
            spot: true,
            ..Self::new(instruments)
        }
    }

    /// Decodes one frame.
    ///
    /// `meta` supplies the receive time and stamp that every tick carries; `index` maps payload
    /// symbols to our instruments. A single quote comes back as [`Decoded::Tick`]; trades are
    /// written to `out` (expected empty) and come back as [`Decoded::Ticks`]. Sequence gaps are
    /// added to `out.gaps` whatever the result.
    ///
    /// # Errors
    /// A [`DecodeError`] saying why the frame was refused and which field was at fault:
    /// invalid JSON or UTF-8, a frame over [`MAX_FRAME_BYTES`], more than
    /// [`MAX_TICKS_PER_FRAME`] trades, a missing or mistyped field, a bad decimal, a zero or
    /// negative price, a zero trade size, a symbol the index does not list, or an object of no
    /// known shape.
    pub fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::frame(DecodeReason::TooLarge));
        }
        self.input.clear();
        self.input.extend_from_slice(frame);
        self.input.extend_from_slice(&[b' '; PADDING]);
        let mut tape = core::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let decoded = match simd_json::fill_tape_padded(&mut self.input, frame.len(), &mut self.buffers, &mut tape) {
            Ok(()) => read_frame(&tape.0, meta, index, &mut self.state, self.spot, out),
            Err(e) => Err(json_error(&e)),
        };
        // Clearing the tape ends its borrow of `input`, so it can be kept for the next frame.
        self.tape = tape.reset();
        decoded
    }

    /// Forgets every book, ticker and sequence number: a new connection starts from its
    /// snapshots. Does not allocate.
    pub fn on_connect(&mut self) {
        self.state.books.fill(BookTop::default());
        self.state.tickers.fill(TickerTop::default());
    }

    /// Number of instruments the decoder keeps state for.
    pub fn instruments(&self) -> usize {
        self.state.books.len()
    }

    /// Whether this decoder was built by [`spot`](Self::spot).
    pub fn is_spot(&self) -> bool {
        self.spot
    }

    /// How this decoder's ticks are numbered, for the feed task's duplicate and gap checks.
    ///
    /// Trades on spot are [`Numbering::Increasing`]: their `seq` is the venue's trade id, a
    /// decimal integer that increases with every trade of a symbol (not necessarily by one, so
    /// no gap can be proven from it), and `publicTrade` only ever pushes trades made after the
    /// subscription, so a trade id a new connection shares with the old one proves that the old
    /// one has delivered everything from before the new one joined.
    ///
    /// Quotes are [`Numbering::None`] on spot too, although their `seq` (`u` of `orderbook.1`,
    /// the only source of spot quotes) increases with every change of a symbol's book. On
    /// subscribing, Bybit sends a snapshot of the book as it stands, under the `u` of its last
    /// change, which happened before the new connection joined. Judged as an increasing id, that
    /// snapshot is a "duplicate" as soon as the old connection has delivered that change, even
    /// though the old connection may still owe the trades made between that change and the
    /// join; the feed task would take it as proof of overlap, close the old connection early
    /// and lose those trades (a trade id went missing this way in `tests/feed_venues.rs` while
    /// quotes were numbered). A quiet book is also re-sent with the same `u` every 3 s, and `u`
    /// starts again from 1 after a venue restart on the same connection, both of which an "only
    /// increases" rule would drop. Unjudged quotes of the new connection reach Alpha during a
    /// rotation next to the old one's, as Coinbase's do: a repeated quote is harmless, a lost
    /// trade is not.
    ///
    /// Generic ([`new`](Self::new)): trades are [`Numbering::None`] too, as derivatives' trade
    /// ids are UUIDs, whose hashes have no order. The decoder's own `u` check
    /// ([`TickBatch::gaps`]) covers the order book either way.
    pub fn sequencing(&self) -> Sequencing {
        Sequencing {
            trades: if self.spot {
                Numbering::Increasing
            } else {
                Numbering::None
            },
            quotes: Numbering::None,
        }
    }
}

impl crate::source::Decode for BybitDecoder {
    #[inline]
    fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        BybitDecoder::decode(self, frame, meta, index, out)
    }

    fn on_connect(&mut self) {
        BybitDecoder::on_connect(self);
    }

    /// Increasing trade ids for a spot decoder, nothing else; see [`BybitDecoder::sequencing`].
    fn sequencing(&self) -> Sequencing {
        BybitDecoder::sequencing(self)
    }
}

impl fmt::Debug for BybitDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BybitDecoder")
            .field("instruments", &self.state.books.len())
            .field("spot", &self.spot)
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

/// Reads a parsed frame: a push (it has a `topic`) or a control message. `spot` selects the
/// spot decoder's rules.
fn read_frame(
    tape: &[Node<'_>],
    meta: FrameMeta,
    index: &InstrumentIndex,
    state: &mut State,
    spot: bool,
    out: &mut TickBatch,
) -> Result<Decoded, DecodeError> {
    let top = Object::at(tape, 0).ok_or(DecodeError::frame(DecodeReason::NotObject))?;
    if top.has(Key::Topic) {
        return match Topic::from_wire(top.str(Key::Topic)?.as_bytes()) {
            Topic::PublicTrade => read_trades(&top, meta, index, spot, out),
            Topic::OrderBook1 => read_book(&top, meta, index, state, out),
            Topic::OrderBookDeep => Ok(Decoded::Skipped(SkipKind::Depth)),
            Topic::Tickers => read_ticker(&top, meta, index, state),
            Topic::Other => Ok(Decoded::Skipped(SkipKind::Other)),
        };
    }
    if top.has(Key::Success) {
        return read_reply(&top).map(Decoded::Control);
    }
    // The option and private pongs carry no `success`; our own `{"op":"ping"}` never arrives.
    if top.has(Key::Op) && top.str(Key::Op)? == "pong" {
        return Ok(Decoded::Control(Control::Heartbeat));
    }
    Err(DecodeError::frame(DecodeReason::UnknownMessage))
}

/// Reads a reply to one of our requests.
fn read_reply(top: &Object<'_, '_>) -> Result<Control, DecodeError> {
    let success = top.flag(Key::Success)?;
    if top.has(Key::Op) {
        return Ok(match Op::from_wire(top.str(Key::Op)?.as_bytes()) {
            Op::Subscribe if success => Control::Subscribed,
            Op::Subscribe => Control::SubscribeRejected,
            Op::Ping => Control::Heartbeat,
            Op::Other if success => Control::Result { id: top.req_id()? },
            Op::Other => Control::Error { code: 0 },
        });
    }
    // The option market acknowledges a subscription with a `COMMAND_RESP` listing the topics
    // it took and refused.
    if top.has(Key::Type) && top.str(Key::Type)? == COMMAND_RESP {
        if !success {
            return Ok(Control::SubscribeRejected);
        }
        if !top.has(Key::Data) {
            return Ok(Control::Subscribed);
        }
        let data = top.object(Key::Data)?;
        let refused = match data.node_of(Key::FailTopics)? {
            None => 0,
            Some(Node::Array { len, .. }) => len,
            Some(_) => return Err(DecodeError::at(DecodeReason::BadType, Key::FailTopics.wire())),
        };
        return Ok(if refused == 0 {
            Control::Subscribed
        } else {
            Control::SubscribeRejected
        });
    }
    Err(DecodeError::frame(DecodeReason::UnknownMessage))
}

/// Reads a `publicTrade` push into `out`; on error `out` holds no ticks from this frame.
fn read_trades(
    top: &Object<'_, '_>,
    meta: FrameMeta,
    index: &InstrumentIndex,
    spot: bool,
    out: &mut TickBatch,
) -> Result<Decoded, DecodeError> {
    let data = top.required(Key::Data)?;
    let tape = top.tape;
    let Some(&Node::Array { len, .. }) = tape.get(data) else {
        return Err(DecodeError::at(DecodeReason::BadType, Key::Data.wire()));
    };
    if len > MAX_TICKS_PER_FRAME {
        return Err(DecodeError::frame(DecodeReason::TooManyTicks));
    }
    let mut at = data + 1;
    for _ in 0..len {
        let read = next_trade(tape, &mut at, meta, index, spot).and_then(|tick| {
            out.push(tick)
                .map_err(|_| DecodeError::frame(DecodeReason::TooManyTicks))
        });
        if let Err(e) = read {
            // Gaps are the caller's to count; the ticks of a refused frame are not.
            let gaps = out.gaps;
            out.clear();
            out.gaps = gaps;
            return Err(e);
        }
    }
    Ok(Decoded::Ticks)
}

/// Reads the trade at tape position `at` and moves `at` past it.
#[inline]
fn next_trade(
    tape: &[Node<'_>],
    at: &mut usize,
    meta: FrameMeta,
    index: &InstrumentIndex,
    spot: bool,
) -> Result<Tick, DecodeError> {
    let node = tape
        .get(*at)
        .ok_or(DecodeError::at(DecodeReason::Json, Key::Data.wire()))?;
    let trade = Object::at(tape, *at).ok_or(DecodeError::at(DecodeReason::NotObject, Key::Data.wire()))?;
    *at += span(node);
    read_trade(&trade, meta, index, spot)
}

/// Reads one trade of a `publicTrade` push.
fn read_trade(obj: &Object<'_, '_>, meta: FrameMeta, index: &InstrumentIndex, spot: bool) -> Result<Tick, DecodeError> {
    let instrument = obj.instrument(index, Key::Symbol)?;
    let id = obj.str(Key::TradeId)?.as_bytes();
    if id.is_empty() {
        return Err(DecodeError::at(DecodeReason::MissingField, Key::TradeId.wire()));
    }
    let seq = if spot { spot_trade_id(id)? } else { trade_seq(id) };
    let price = obj.price(Key::Price)?;
    let qty = obj.qty(Key::Size)?;
    if qty.is_zero() {
        return Err(DecodeError::at(DecodeReason::ZeroQty, Key::Size.wire()));
    }
    let exchange_ns = obj.time_ns(Key::TradeTime)?;
    // `S` is the taker's side: the side that took liquidity.
    let aggressor = match taker_is_buyer(obj.str(Key::Side)?.as_bytes()) {
        Some(true) => Side::Buy,
        Some(false) => Side::Sell,
        None => return Err(DecodeError::at(DecodeReason::UnknownMessage, Key::Side.wire())),
    };
    Ok(Tick {
        instrument,
        venue: Venue::Bybit,
        body: TickBody::Trade { price, qty, aggressor },
        seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    })
}

/// The tick sequence of a trade id: the number itself when it is one (spot), otherwise its
/// FNV-1a hash (derivatives' UUIDs), so that the same id always gives the same sequence.
pub fn trade_seq(id: &[u8]) -> u64 {
    if !id.is_empty() && id.len() <= 20 && id.iter().all(u8::is_ascii_digit) {
        let number = id.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10).and_then(|acc| acc.checked_add(u64::from(d - b'0')))
        });
        if let Some(number) = number {
            return number;
        }
    }
    fnv1a(id)
}

/// A spot trade id: decimal digits that fit a `u64`, and nothing else.
fn spot_trade_id(id: &[u8]) -> Result<u64, DecodeError> {
    let field = Key::TradeId.wire();
    if id.is_empty() || !id.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::at(DecodeReason::BadDecimal, field));
    }
    id.iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10).and_then(|acc| acc.checked_add(u64::from(d - b'0')))
        })
        .ok_or(DecodeError::at(DecodeReason::OutOfRange, field))
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// Reads an `orderbook.1` push, updates the instrument's top of book and sequence.
fn read_book(
    top: &Object<'_, '_>,
    meta: FrameMeta,
    index: &InstrumentIndex,
    state: &mut State,
    out: &mut TickBatch,
) -> Result<Decoded, DecodeError> {
    let kind = PushType::from_wire(top.str(Key::Type)?.as_bytes())
        .ok_or(DecodeError::at(DecodeReason::UnknownMessage, Key::Type.wire()))?;
    let data = top.object(Key::Data)?;
    let instrument = data.instrument(index, Key::Symbol)?;
    let u = data.uint(Key::UpdateId)?;
    let bid = best_level(data.tape, data.required(Key::Bids)?, Side::Buy)?;
    let ask = best_level(data.tape, data.required(Key::Asks)?, Side::Sell)?;
    let exchange_ns = top.time_or_zero(if top.has(Key::Cts) { Key::Cts } else { Key::Ts })?;
    let book = state
        .books
        .get_mut(instrument.index())
        .ok_or(DecodeError::at(DecodeReason::UnknownSymbol, Key::Symbol.wire()))?;
    match kind {
        PushType::Snapshot => {
            *book = BookTop {
                bid,
                ask,
                last_u: Some(u),
            };
        }
        PushType::Delta => {
            match book.last_u {
                Some(last) if last.checked_add(1) == Some(u) => {}
                Some(last) if u <= last => {
                    out.gaps += 1;
                    return Ok(Decoded::Skipped(SkipKind::Depth));
                }
                _ => out.gaps += 1,
            }
            book.last_u = Some(u);
            book.bid = bid.or(book.bid);
            book.ask = ask.or(book.ask);
        }
    }
    let (Some(bid), Some(ask)) = (book.bid, book.ask) else {
        return Ok(Decoded::Skipped(SkipKind::Depth));
    };
    Ok(Decoded::Tick(Tick {
        instrument,
        venue: Venue::Bybit,
        body: TickBody::Quote {
            bid: bid.price,
            bid_qty: bid.qty,
            ask: ask.price,
            ask_qty: ask.qty,
        },
        seq: u,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    }))
}

/// The best level with a size among the `[price, size]` entries of the list at `at` (highest
/// bid, lowest ask); `None` if every entry is a deletion or there is none. Every entry is
/// validated, deletions included.
fn best_level(tape: &[Node<'_>], at: usize, side: Side) -> Result<Option<Level>, DecodeError> {
    let field = match side {
        Side::Buy => Key::Bids.wire(),
        Side::Sell => Key::Asks.wire(),
    };
    let bad_type = DecodeError::at(DecodeReason::BadType, field);
    let Some(&Node::Array { len, .. }) = tape.get(at) else {
        return Err(bad_type);
    };
    let mut best: Option<Level> = None;
    let mut entry = at + 1;
    for _ in 0..len {
        let (Some(&Node::Array { len: 2, .. }), Some(Node::String(price)), Some(Node::String(qty))) =
            (tape.get(entry), tape.get(entry + 1), tape.get(entry + 2))
        else {
            return Err(bad_type);
        };
        let level = Level {
            price: parse_price(price.as_bytes(), field)?,
            qty: parse_qty(qty.as_bytes(), field)?,
        };
        entry += 3;
        if level.qty.is_zero() {
            continue;
        }
        let better = match (best, side) {
            (None, _) => true,
            (Some(b), Side::Buy) => level.price > b.price,
            (Some(b), Side::Sell) => level.price < b.price,
        };
        if better {
            best = Some(level);
        }
    }
    Ok(best)
}

/// Reads a `tickers` push and merges its best bid and ask into the instrument's state.
fn read_ticker(
    top: &Object<'_, '_>,
    meta: FrameMeta,
    index: &InstrumentIndex,
    state: &mut State,
) -> Result<Decoded, DecodeError> {
    let data = top.object(Key::Data)?;
    let bid = data
        .opt_text(Key::Bid1Price)?
        .map(|t| parse_price(t, Key::Bid1Price.wire()))
        .transpose()?;
    let bid_qty = data
        .opt_text(Key::Bid1Size)?
        .map(|t| parse_qty(t, Key::Bid1Size.wire()))
        .transpose()?;
    let ask = data
        .opt_text(Key::Ask1Price)?
        .map(|t| parse_price(t, Key::Ask1Price.wire()))
        .transpose()?;
    let ask_qty = data
        .opt_text(Key::Ask1Size)?
        .map(|t| parse_qty(t, Key::Ask1Size.wire()))
        .transpose()?;
    if bid.is_none() && bid_qty.is_none() && ask.is_none() && ask_qty.is_none() {
        // Spot and option tickers, and linear deltas about other fields.
        return Ok(Decoded::Skipped(SkipKind::Other));
    }
    let instrument = data.instrument(index, Key::TickerSymbol)?;
    let seq = if top.has(Key::Cs) { top.uint(Key::Cs)? } else { 0 };
    let exchange_ns = top.time_or_zero(Key::Ts)?;
    let ticker = state
        .tickers
        .get_mut(instrument.index())
        .ok_or(DecodeError::at(DecodeReason::UnknownSymbol, Key::TickerSymbol.wire()))?;
    ticker.bid = bid.or(ticker.bid);
    ticker.bid_qty = bid_qty.or(ticker.bid_qty);
    ticker.ask = ask.or(ticker.ask);
    ticker.ask_qty = ask_qty.or(ticker.ask_qty);
    let (Some(bid), Some(bid_qty), Some(ask), Some(ask_qty)) = (ticker.bid, ticker.bid_qty, ticker.ask, ticker.ask_qty)
    else {
        return Ok(Decoded::Skipped(SkipKind::Other));
    };
    Ok(Decoded::Tick(Tick {
        instrument,
        venue: Venue::Bybit,
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
    }))
}

/// A strictly positive price.
#[inline]
fn parse_price(text: &[u8], field: &'static str) -> Result<Price, DecodeError> {
    match Price::parse_bytes(text) {
        Ok(p) if !p.is_zero() => Ok(p),
        Ok(_) => Err(DecodeError::at(DecodeReason::NonPositivePrice, field)),
        // `Price` refuses any sign; a leading minus is a negative price, not a typo.
        Err(_) if text.first() == Some(&b'-') => Err(DecodeError::at(DecodeReason::NonPositivePrice, field)),
        Err(_) => Err(DecodeError::at(DecodeReason::BadDecimal, field)),
    }
}

/// A non-negative size (zero allowed here; trades check it themselves).
#[inline]
fn parse_qty(text: &[u8], field: &'static str) -> Result<Qty, DecodeError> {
    Qty::parse_bytes(text).map_err(|_| DecodeError::at(DecodeReason::BadDecimal, field))
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

impl<'t, 'i> Object<'t, 'i> {
    /// The object at tape position `obj` with every known key located; `None` if there is no
    /// object there.
    ///
    /// For a repeated key the last occurrence wins. Every tape access is checked, so a
    /// malformed tape yields `None` rather than a panic.
    #[inline]
    fn at(tape: &'t [Node<'i>], obj: usize) -> Option<Self> {
        let fields = Fields::collect(tape, obj)?;
        Some(Self { tape, fields })
    }

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
        // `at` only records positions it has read a node at.
        self.tape
            .get(at)
            .copied()
            .ok_or(DecodeError::at(DecodeReason::Json, key.wire()))
    }

    /// `key`'s value, or `None` when the key is absent.
    #[inline]
    fn node_of(&self, key: Key) -> Result<Option<Node<'i>>, DecodeError> {
        if self.has(key) {
            self.node(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The object that is `key`'s value.
    #[inline]
    fn object(&self, key: Key) -> Result<Object<'t, 'i>, DecodeError> {
        let at = self.required(key)?;
        Object::at(self.tape, at).ok_or(DecodeError::at(DecodeReason::NotObject, key.wire()))
    }

    #[inline]
    fn str(&self, key: Key) -> Result<&'i str, DecodeError> {
        match self.node(key)? {
            Node::String(s) => Ok(s),
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    /// A string field that may be absent; an empty string counts as absent.
    #[inline]
    fn opt_text(&self, key: Key) -> Result<Option<&'i [u8]>, DecodeError> {
        if !self.has(key) {
            return Ok(None);
        }
        let text = self.str(key)?.as_bytes();
        Ok((!text.is_empty()).then_some(text))
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

    /// Like [`time_ns`](Self::time_ns), but 0 when the key is absent.
    #[inline]
    fn time_or_zero(&self, key: Key) -> Result<u64, DecodeError> {
        if self.has(key) { self.time_ns(key) } else { Ok(0) }
    }

    /// A strictly positive price.
    #[inline]
    fn price(&self, key: Key) -> Result<Price, DecodeError> {
        parse_price(self.str(key)?.as_bytes(), key.wire())
    }

    /// A non-negative quantity.
    #[inline]
    fn qty(&self, key: Key) -> Result<Qty, DecodeError> {
        parse_qty(self.str(key)?.as_bytes(), key.wire())
    }

    /// The request id echoed in `req_id`: its value when it is a decimal `i64`, else 0.
    #[inline]
    fn req_id(&self) -> Result<i64, DecodeError> {
        match self.opt_text(Key::ReqId)? {
            Some(text) => Ok(core::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// The instrument named by `key`, which Bybit spells exactly as the index does.
    #[inline]
    fn instrument(&self, index: &InstrumentIndex, key: Key) -> Result<InstrumentId, DecodeError> {
        let symbol = self.str(key)?;
        index
            .by_venue_symbol(Venue::Bybit, symbol.as_bytes())
            .ok_or(DecodeError::at(DecodeReason::UnknownSymbol, key.wire()))
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
            venues[Venue::Bybit.index()] = Some(VenueSymbol::new(name).unwrap());
            (Symbol::new(name).unwrap(), venues)
        };
        InstrumentIndex::new([entry("BTCUSDT"), entry("ETHUSDT")]).unwrap()
    }

    const META: FrameMeta = FrameMeta {
        recv_ns: 7,
        stamp: Stamp(9),
    };

    fn err(reason: DecodeReason, field: &'static str) -> Result<Decoded, DecodeError> {
        Err(DecodeError { reason, field })
    }

    struct Harness {
        decoder: BybitDecoder,
        index: InstrumentIndex,
        out: TickBatch,
    }

    impl Harness {
        fn new() -> Self {
            Self {
                decoder: BybitDecoder::new(2),
                index: index(),
                out: TickBatch::new(),
            }
        }

        fn decode(&mut self, frame: &str) -> Result<Decoded, DecodeError> {
            self.out.clear();
            self.decoder.decode(frame.as_bytes(), META, &self.index, &mut self.out)
        }
    }

    fn book(kind: &str, u: u64, bids: &str, asks: &str) -> String {
        format!(
            r#"{{"topic":"orderbook.1.BTCUSDT","ts":1700000000002,"type":"{kind}","data":{{"s":"BTCUSDT","b":[{bids}],"a":[{asks}],"u":{u},"seq":5}},"cts":1700000000001}}"#
        )
    }

    fn quote(bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> TickBody {
        TickBody::Quote {
            bid: bid.parse().unwrap(),
            bid_qty: bid_qty.parse().unwrap(),
            ask: ask.parse().unwrap(),
            ask_qty: ask_qty.parse().unwrap(),
        }
    }

    #[test]
    fn trade_ids_are_numbers_or_stable_hashes() {
        assert_eq!(trade_seq(b"2290000000061666327"), 2_290_000_000_061_666_327);
        assert_eq!(trade_seq(b"0"), 0);
        assert_eq!(trade_seq(b"18446744073709551615"), u64::MAX);
        // One past u64::MAX, a sign, or letters: hashed.
        assert_eq!(trade_seq(b"18446744073709551616"), fnv1a(b"18446744073709551616"));
        assert_eq!(trade_seq(b"-1"), fnv1a(b"-1"));
        let uuid = b"20f43950-d8dd-5b31-9112-a178eb6023af";
        assert_eq!(trade_seq(uuid), trade_seq(uuid));
        assert_ne!(trade_seq(uuid), trade_seq(b"20f43950-d8dd-5b31-9112-a178eb6023ag"));
        // FNV-1a reference vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn level_one_snapshot_then_deltas_keep_the_last_known_side() {
        let mut h = Harness::new();
        let first = h.decode(&book("snapshot", 10, r#"["100.5","2"]"#, r#"["101","3"]"#));
        let Ok(Decoded::Tick(tick)) = first else {
            panic!("{first:?}")
        };
        assert_eq!(tick.body, quote("100.5", "2", "101", "3"));
        assert_eq!((tick.seq, tick.exchange_ns), (10, 1_700_000_000_001_000_000));
        assert_eq!(h.out.gaps, 0);
        // A new bid replaces the old one (the deletion is ignored); the empty ask side keeps.
        let next = h.decode(&book("delta", 11, r#"["100.5","0"],["100.6","1"]"#, ""));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("100.6", "1", "101", "3")));
        // Deletions only: both sides keep their level.
        let next = h.decode(&book("delta", 12, r#"["100.6","0"]"#, r#"["101","0"]"#));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("100.6", "1", "101", "3")));
        assert_eq!(h.out.gaps, 0);
        // A skipped `u` is a gap, but the delta still applies.
        let next = h.decode(&book("delta", 14, "", r#"["100.9","4"]"#));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("100.6", "1", "100.9", "4")));
        assert_eq!(h.out.gaps, 1);
        // A stale delta is a gap and does not apply.
        let next = h.decode(&book("delta", 14, r#"["1","1"]"#, ""));
        assert_eq!(next, Ok(Decoded::Skipped(SkipKind::Depth)));
        assert_eq!(h.out.gaps, 1);
        // A snapshot resets: an empty side is unknown again, and any `u` is fine.
        let next = h.decode(&book("snapshot", 3, r#"["99","1"]"#, ""));
        assert_eq!(next, Ok(Decoded::Skipped(SkipKind::Depth)));
        assert_eq!(h.out.gaps, 0);
        let next = h.decode(&book("delta", 4, "", r#"["99.5","1"]"#));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("99", "1", "99.5", "1") && t.seq == 4));
        assert_eq!(h.out.gaps, 0);
        // A new connection forgets everything: a delta first is a gap and gives no quote.
        h.decoder.on_connect();
        let next = h.decode(&book("delta", 5, r#"["99","1"]"#, ""));
        assert_eq!(next, Ok(Decoded::Skipped(SkipKind::Depth)));
        assert_eq!(h.out.gaps, 1);
    }

    #[test]
    fn the_best_entry_with_a_size_wins() {
        let mut h = Harness::new();
        let next = h.decode(&book(
            "snapshot",
            1,
            r#"["10","1"],["12","0"],["11","2"]"#,
            r#"["15","1"],["13","0"],["14","2"]"#,
        ));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("11", "2", "14", "2")));
    }

    #[test]
    fn bad_book_frames_leave_the_state_alone() {
        use DecodeReason::*;
        let mut h = Harness::new();
        assert!(h.decode(&book("snapshot", 1, r#"["10","1"]"#, r#"["11","1"]"#)).is_ok());
        assert_eq!(
            h.decode(&book("delta", 2, r#"["12","1"]"#, r#"["0","1"]"#)),
            err(NonPositivePrice, "a")
        );
        assert_eq!(h.decode(&book("delta", 2, r#"["12"]"#, "")), err(BadType, "b"));
        assert_eq!(h.decode(&book("delta", 2, r#"[12,"1"]"#, "")), err(BadType, "b"));
        assert_eq!(h.decode(&book("delta", 2, r#"["12","1","3"]"#, "")), err(BadType, "b"));
        assert_eq!(h.decode(&book("delta", 2, r#"["12","x"]"#, "")), err(BadDecimal, "b"));
        assert_eq!(h.decode(&book("update", 2, "", "")), err(UnknownMessage, "type"));
        assert_eq!(
            h.decode(&book("delta", 2, "", "").replace("BTCUSDT\",\"b", "XRPUSDT\",\"b")),
            err(UnknownSymbol, "s")
        );
        let next = h.decode(&book("delta", 2, "", ""));
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("10", "1", "11", "1")));
        assert_eq!(h.out.gaps, 0);
        // An instrument the decoder was not sized for has nowhere to keep state.
        let mut small = BybitDecoder::new(1);
        let frame = book("snapshot", 1, "", "").replace("BTCUSDT", "ETHUSDT");
        assert_eq!(
            small.decode(frame.as_bytes(), META, &index(), &mut TickBatch::new()),
            err(UnknownSymbol, "s")
        );
    }

    #[test]
    fn linear_ticker_deltas_merge_into_the_last_known_quote() {
        let mut h = Harness::new();
        let snapshot = r#"{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"1","bid1Price":"10","bid1Size":"1","ask1Price":"11","ask1Size":"2"},"cs":5,"ts":1700000000000}"#;
        let next = h.decode(snapshot);
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("10", "1", "11", "2") && t.seq == 5));
        let delta = r#"{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Size":"3","ask1Price":""},"cs":6,"ts":1700000000001}"#;
        let next = h.decode(delta);
        assert!(matches!(next, Ok(Decoded::Tick(t)) if t.body == quote("10", "3", "11", "2") && t.seq == 6));
        let other =
            r#"{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","lastPrice":"2"},"cs":7,"ts":1}"#;
        assert_eq!(h.decode(other), Ok(Decoded::Skipped(SkipKind::Other)));
        // On the ETH instrument only one side is known yet.
        let partial =
            r#"{"topic":"tickers.ETHUSDT","type":"delta","data":{"symbol":"ETHUSDT","bid1Price":"5"},"ts":1}"#;
        assert_eq!(h.decode(partial), Ok(Decoded::Skipped(SkipKind::Other)));
        assert_eq!(
            h.decode(&snapshot.replace(r#""bid1Price":"10""#, r#""bid1Price":"0""#)),
            err(DecodeReason::NonPositivePrice, "bid1Price")
        );
    }

    #[test]
    fn replies_are_control_messages() {
        let mut h = Harness::new();
        let control = |c| Ok(Decoded::Control(c));
        assert_eq!(
            h.decode(r#"{"success":true,"ret_msg":"subscribe","conn_id":"x","req_id":"1","op":"subscribe"}"#),
            control(Control::Subscribed)
        );
        assert_eq!(
            h.decode(r#"{"success":false,"ret_msg":"bad","conn_id":"x","req_id":"","op":"subscribe"}"#),
            control(Control::SubscribeRejected)
        );
        assert_eq!(
            h.decode(r#"{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}"#),
            control(Control::Heartbeat)
        );
        assert_eq!(h.decode(r#"{"op":"pong","args":["1"]}"#), control(Control::Heartbeat));
        assert_eq!(
            h.decode(r#"{"success":true,"ret_msg":"","op":"unsubscribe","req_id":"42"}"#),
            control(Control::Result { id: 42 })
        );
        assert_eq!(
            h.decode(r#"{"success":true,"ret_msg":"","op":"auth","req_id":"abc"}"#),
            control(Control::Result { id: 0 })
        );
        assert_eq!(
            h.decode(r#"{"success":false,"ret_msg":"no","op":"unsubscribe"}"#),
            control(Control::Error { code: 0 })
        );
        assert_eq!(
            h.decode(r#"{"success":true,"type":"COMMAND_RESP","data":{"failTopics":["x"],"successTopics":[]}}"#),
            control(Control::SubscribeRejected)
        );
        assert_eq!(
            h.decode(r#"{"success":true,"type":"COMMAND_RESP","data":{"failTopics":[],"successTopics":["x"]}}"#),
            control(Control::Subscribed)
        );
        assert_eq!(h.decode(r#"{"op":"ping"}"#), err(DecodeReason::UnknownMessage, ""));
        assert_eq!(
            h.decode(r#"{"success":1,"op":"ping"}"#),
            err(DecodeReason::BadType, "success")
        );
        assert_eq!(h.decode(r#"{"success":true}"#), err(DecodeReason::UnknownMessage, ""));
        assert_eq!(h.decode(r#"{"retCode":0}"#), err(DecodeReason::UnknownMessage, ""));
    }

    #[test]
    fn a_bad_trade_refuses_the_whole_batch() {
        let mut h = Harness::new();
        let trade = |p: &str| format!(r#"{{"T":1,"s":"BTCUSDT","S":"Sell","v":"1","p":"{p}","i":"7","BT":false}}"#);
        let frame = format!(
            r#"{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{},{}]}}"#,
            trade("1"),
            trade("0")
        );
        h.out.gaps = 3;
        assert_eq!(
            h.decoder.decode(frame.as_bytes(), META, &h.index, &mut h.out),
            err(DecodeReason::NonPositivePrice, "p")
        );
        assert!(h.out.is_empty());
        assert_eq!(h.out.gaps, 3);
    }
}
