//! The OANDA v20 pricing-stream decoder: one newline-delimited JSON line in, one [`Decoded`]
//! out; and the allocation-free time parsers it needs.
//!
//! Lines are parsed with simd-json into a tape and the tape is walked directly, exactly as the
//! Binance decoder does (see [`crate::feed::binance::parse`] for why the buffers and the tape
//! are kept between frames): no serde, no float, no owned string.
//! Prices go from the tape straight into [`Price::parse_bytes`]; `liquidity` is a JSON integer
//! of units and becomes a whole-unit [`Qty`].
//!
//! **Invariant:** no heap allocation per line once the decoder has seen lines of the sizes it
//! will keep seeing, and once it has met each instrument (the per-instrument state is a `Vec`
//! reserved for [`INITIAL_INSTRUMENTS`] up front).
//! `tests/feed_oanda_decode.rs` proves it with a counting global allocator.
//!
//! What becomes of each line is tabled in [`messages`](super::messages). Three decisions:
//!
//! * **`seq` is ours.** OANDA sends no sequence number or update id (`venues.md` §4.3), so a
//!   quote's `seq` is a per-instrument counter kept here: the first quote of an instrument is 1,
//!   and every quote the decoder emits for it adds one. The counter is not reset when the
//!   connection changes ([`Decode::on_connect`] keeps its default), so within one decoder's life
//!   `(instrument, seq)` names one quote, and a replay of a capture numbers its quotes exactly as
//!   the live run did. [`Decode::sequencing`] says [`Numbering::None`]: the feed task must not
//!   treat these numbers as venue ids (no duplicate or gap detection comes from them).
//! * **Stale prices are skipped.** The docs say to "use `time` to discard stale or out-of-order
//!   prices per instrument". A price whose `time` is strictly older than the newest already
//!   emitted for its instrument is [`Decoded::Skipped`]`(`[`SkipKind::Other`]`)`; this drops the
//!   older overlap of two connections (a reconnect's snapshot, a rotation) without a venue id.
//!   A price with the *same* time passes: it is the same price again, harmless to a consumer,
//!   while dropping it would risk dropping a genuinely new price if two ever shared a stamp.
//! * **Closed markets are skipped.** A price with `"tradeable":false` (or, when `tradeable` is
//!   absent, a `status` other than `"tradeable"`) is [`Decoded::Skipped`]`(`[`SkipKind::Other`]`)`:
//!   OANDA keeps streaming the last price while a market is closed (weekends), and a paper fill
//!   against a price nobody can trade on would be fiction. It does not advance `seq`.
//!
//! Every malformed input is an `Err` with a [`DecodeReason`]; nothing here panics, and no tick
//! ever carries a zero or negative price. Errors about a best level name it as
//! `bids[0].price`, `asks[0].liquidity` and so on.
//!
//! Cost: see the module docs of [`super`] (about 2 ns per line byte).

use core::fmt;

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::messages::{ASK_FIELDS, BID_FIELDS, Key, LevelFields, LineType, PriceStatus};
use crate::feed::tape;
use crate::feed::{
    Control, DecodeError, DecodeReason, Decoded, FrameMeta, MAX_FRAME_BYTES, Numbering, Sequencing, SkipKind, TickBatch,
};
use crate::ids::{InstrumentId, InstrumentIndex, Venue};
use crate::num::{Price, Qty};
use crate::records::{Tick, TickBody};
use crate::source::Decode;

/// Deepest nesting accepted. A price line nests three deep (line, level list, level); a low
/// limit bounds the parser's stack on hostile input.
const MAX_DEPTH: usize = 8;

/// Bytes simd-json may read past the end of the document.
const PADDING: usize = simd_json::INPUT_PADDING;

/// Line size the buffers are sized for up front; larger lines grow them once.
///
/// A four-level price line is about 450 bytes, a heartbeat 60.
const INITIAL_FRAME_BYTES: usize = 4 * 1024;

/// Instruments the per-instrument state is reserved for, so that meeting a new instrument does
/// not allocate either (OANDA lists about 120 instruments; an engine trades a handful).
pub const INITIAL_INSTRUMENTS: usize = 64;

/// What the decoder remembers about one instrument.
#[derive(Clone, Copy, Debug, Default)]
struct InstrumentState {
    /// `seq` of the last quote emitted (0: none yet).
    seq: u64,
    /// `time` of the newest quote emitted, in ns since the epoch.
    newest_ns: u64,
}

/// Decodes OANDA v20 pricing-stream lines into quote ticks, heartbeats and skips.
///
/// Owns the scratch memory simd-json needs and the per-instrument counters, so one decoder
/// serves one feed and is reused for every line.
pub struct OandaDecoder {
    /// The current line plus [`PADDING`] bytes; simd-json unescapes strings in place here.
    input: Vec<u8>,
    /// simd-json's structural-index, string and stack scratch.
    buffers: Buffers,
    /// The node `Vec`, always empty between lines.
    tape: Tape<'static>,
    /// Per instrument, indexed by [`InstrumentId`]; grows to the largest id met.
    instruments: Vec<InstrumentState>,
}

impl OandaDecoder {
    /// A decoder with buffers sized for typical stream lines.
    pub fn new() -> Self {
        Self {
            input: Vec::with_capacity(INITIAL_FRAME_BYTES + PADDING),
            buffers: Buffers::with_max_depth(INITIAL_FRAME_BYTES, MAX_DEPTH),
            tape: Tape(Vec::with_capacity(INITIAL_FRAME_BYTES / 8)),
            instruments: Vec::with_capacity(INITIAL_INSTRUMENTS),
        }
    }

    /// Decodes one line (without its newline).
    ///
    /// `meta` supplies the receive time and stamp that every tick carries; `index` maps the
    /// line's `instrument` to ours. A price always comes back as [`Decoded::Tick`]; `out` is not
    /// written (the signature is [`Decode`]'s).
    ///
    /// # Errors
    /// A [`DecodeError`] saying why the line was refused and which field was at fault:
    /// invalid JSON or UTF-8, a line over [`MAX_FRAME_BYTES`], a missing or mistyped field,
    /// an empty `bids` or `asks`, a bad decimal or time, a zero or negative price, a liquidity
    /// out of range, an instrument the index does not list, or an object of no known shape.
    pub fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        _out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::frame(DecodeReason::TooLarge));
        }
        self.input.clear();
        self.input.extend_from_slice(frame);
        self.input.extend_from_slice(&[b' '; PADDING]);
        let mut tape = core::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let decoded = match simd_json::fill_tape_padded(&mut self.input, frame.len(), &mut self.buffers, &mut tape) {
            Ok(()) => read_line(&tape.0, meta, index, &mut self.instruments),
            Err(e) => Err(json_error(&e)),
        };
        // Clearing the tape ends its borrow of `input`, so it can be kept for the next line.
        self.tape = tape.reset();
        decoded
    }

    /// The `seq` of the last quote emitted for `instrument` (0 if none yet).
    pub fn last_seq(&self, instrument: InstrumentId) -> u64 {
        self.instruments.get(instrument.index()).map_or(0, |s| s.seq)
    }
}

impl Default for OandaDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OandaDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OandaDecoder")
            .field("input_capacity", &self.input.capacity())
            .field("tape_capacity", &self.tape.0.capacity())
            .field("instruments", &self.instruments.len())
            .finish_non_exhaustive()
    }
}

impl Decode for OandaDecoder {
    #[inline]
    fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        OandaDecoder::decode(self, frame, meta, index, out)
    }

    /// Quote numbers are the decoder's own counters, not venue ids; OANDA has no trades.
    fn sequencing(&self) -> Sequencing {
        Sequencing {
            trades: Numbering::None,
            quotes: Numbering::None,
        }
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

/// Decides what a parsed line is from its keys, then reads it.
fn read_line(
    tape: &[Node<'_>],
    meta: FrameMeta,
    index: &InstrumentIndex,
    instruments: &mut Vec<InstrumentState>,
) -> Result<Decoded, DecodeError> {
    let fields = Fields::collect(tape, 0).ok_or(DecodeError::frame(DecodeReason::NotObject))?;
    let obj = Object { tape, fields };
    if obj.has(Key::Type) {
        return match LineType::from_wire(obj.str(Key::Type)?.as_bytes()) {
            // A heartbeat proves the stream alive; its time is not needed, so not checked.
            LineType::Heartbeat => Ok(Decoded::Control(Control::Heartbeat)),
            LineType::Price => read_price(&obj, meta, index, instruments),
            LineType::Other => Ok(Decoded::Skipped(SkipKind::Other)),
        };
    }
    // The docs' example price lines have no `type`; an instrument says what they are.
    if obj.has(Key::Instrument) {
        return read_price(&obj, meta, index, instruments);
    }
    Err(DecodeError::frame(DecodeReason::UnknownMessage))
}

/// Reads a price line into a quote, or skips it (closed market, stale).
///
/// A crossed or locked quote is passed on, as with every venue: consumers decide what to make
/// of it. A zero liquidity is passed on too.
fn read_price(
    obj: &Object<'_, '_>,
    meta: FrameMeta,
    index: &InstrumentIndex,
    instruments: &mut Vec<InstrumentState>,
) -> Result<Decoded, DecodeError> {
    let tradeable = if obj.has(Key::Tradeable) {
        obj.flag(Key::Tradeable)?
    } else if obj.has(Key::Status) {
        PriceStatus::from_wire(obj.str(Key::Status)?.as_bytes()) == PriceStatus::Tradeable
    } else {
        true
    };
    if !tradeable {
        return Ok(Decoded::Skipped(SkipKind::Other));
    }
    let instrument = obj.instrument(index)?;
    let (bid, bid_qty) = obj.best_level(Key::Bids, BID_FIELDS)?;
    let (ask, ask_qty) = obj.best_level(Key::Asks, ASK_FIELDS)?;
    let exchange_ns = obj.time_ns(Key::Time)?;
    let at = instrument.index();
    if instruments.len() <= at {
        // Reserved for INITIAL_INSTRUMENTS in `new`, so this grows in place for those.
        instruments.resize(at + 1, InstrumentState::default());
    }
    let Some(state) = instruments.get_mut(at) else {
        return Err(DecodeError::at(DecodeReason::UnknownSymbol, Key::Instrument.wire()));
    };
    if exchange_ns < state.newest_ns {
        return Ok(Decoded::Skipped(SkipKind::Other));
    }
    state.newest_ns = exchange_ns;
    state.seq += 1;
    Ok(Decoded::Tick(Tick {
        instrument,
        venue: Venue::Oanda,
        body: TickBody::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        },
        seq: state.seq,
        exchange_ns,
        recv_ns: meta.recv_ns,
        stamp: meta.stamp,
    }))
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

/// One JSON object of the line, with its known keys located.
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

    /// The value node of `key`; `field` names it in errors.
    #[inline]
    fn node_named(&self, key: Key, field: &'static str) -> Result<(usize, Node<'i>), DecodeError> {
        let at = match self.fields.at[key as usize] {
            0 => return Err(DecodeError::at(DecodeReason::MissingField, field)),
            at => at as usize,
        };
        // `collect` only records positions it has read a node at.
        let node = self
            .tape
            .get(at)
            .copied()
            .ok_or(DecodeError::at(DecodeReason::Json, field))?;
        Ok((at, node))
    }

    #[inline]
    fn str_named(&self, key: Key, field: &'static str) -> Result<&'i str, DecodeError> {
        match self.node_named(key, field)?.1 {
            Node::String(s) => Ok(s),
            _ => Err(DecodeError::at(DecodeReason::BadType, field)),
        }
    }

    #[inline]
    fn str(&self, key: Key) -> Result<&'i str, DecodeError> {
        self.str_named(key, key.wire())
    }

    #[inline]
    fn flag(&self, key: Key) -> Result<bool, DecodeError> {
        match self.node_named(key, key.wire())?.1 {
            Node::Static(StaticNode::Bool(b)) => Ok(b),
            _ => Err(DecodeError::at(DecodeReason::BadType, key.wire())),
        }
    }

    /// The instrument named by `instrument`, which OANDA spells exactly as the index does.
    #[inline]
    fn instrument(&self, index: &InstrumentIndex) -> Result<InstrumentId, DecodeError> {
        let symbol = self.str(Key::Instrument)?;
        index
            .by_venue_symbol(Venue::Oanda, symbol.as_bytes())
            .ok_or(DecodeError::at(DecodeReason::UnknownSymbol, Key::Instrument.wire()))
    }

    /// The time in `key`, RFC 3339 or UNIX seconds, in ns since the epoch.
    #[inline]
    fn time_ns(&self, key: Key) -> Result<u64, DecodeError> {
        parse_time_ns(self.str(key)?.as_bytes()).map_err(|e| DecodeError::at(e.reason(), key.wire()))
    }

    /// The first (best) level of the `bids` or `asks` array: its price and liquidity.
    #[inline]
    fn best_level(&self, side: Key, names: LevelFields) -> Result<(Price, Qty), DecodeError> {
        let (at, node) = self.node_named(side, names.side)?;
        match node {
            Node::Array { len: 0, .. } => return Err(DecodeError::at(DecodeReason::MissingField, names.level)),
            Node::Array { .. } => {}
            _ => return Err(DecodeError::at(DecodeReason::BadType, names.side)),
        }
        let fields = Fields::collect(self.tape, at + 1).ok_or(DecodeError::at(DecodeReason::BadType, names.level))?;
        let level = Object {
            tape: self.tape,
            fields,
        };
        let text = level.str_named(Key::Price, names.price)?.as_bytes();
        let price = match Price::parse_bytes(text) {
            Ok(p) if !p.is_zero() => p,
            Ok(_) => return Err(DecodeError::at(DecodeReason::NonPositivePrice, names.price)),
            // `Price` refuses any sign; a leading minus is a negative price, not a typo.
            Err(_) if text.first() == Some(&b'-') => {
                return Err(DecodeError::at(DecodeReason::NonPositivePrice, names.price));
            }
            Err(_) => return Err(DecodeError::at(DecodeReason::BadDecimal, names.price)),
        };
        let out_of_range = DecodeError::at(DecodeReason::OutOfRange, names.liquidity);
        let units = match level.node_named(Key::Liquidity, names.liquidity)?.1 {
            Node::Static(StaticNode::U64(n)) => i64::try_from(n).map_err(|_| out_of_range)?,
            Node::Static(StaticNode::I64(n)) if n >= 0 => n,
            Node::Static(StaticNode::I64(_)) => return Err(out_of_range),
            _ => return Err(DecodeError::at(DecodeReason::BadType, names.liquidity)),
        };
        let qty = Qty::from_units(units).ok_or(out_of_range)?;
        Ok((price, qty))
    }
}

// ---------------------------------------------------------------------------------------------
// Times.

/// Why a time string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeError {
    /// Not of the form the format requires (a missing separator, a letter, too many digits).
    Syntax,
    /// Well formed, but no such instant, or one before 1970 or past what `u64` ns can hold
    /// (2554-07-21T23:34:33.709551615Z).
    Range,
}

impl TimeError {
    /// The decode reason this error is counted under (see the [`messages`](super::messages) docs).
    pub const fn reason(self) -> DecodeReason {
        match self {
            TimeError::Syntax => DecodeReason::BadDecimal,
            TimeError::Range => DecodeReason::OutOfRange,
        }
    }
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeError::Syntax => f.write_str("malformed time"),
            TimeError::Range => f.write_str("time out of range"),
        }
    }
}

impl std::error::Error for TimeError {}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Parses an OANDA `DateTime` in either format the stream may use: RFC 3339
/// (`2016-09-20T15:05:47.960449532Z`) or UNIX seconds (`1474383947.960449532`), into ns since
/// the epoch. The two are told apart by the `-` after a four-digit year.
///
/// # Errors
/// [`TimeError::Syntax`] or [`TimeError::Range`], see [`parse_rfc3339_ns`] and [`parse_unix_ns`].
#[inline]
pub fn parse_time_ns(bytes: &[u8]) -> Result<u64, TimeError> {
    if bytes.get(4) == Some(&b'-') {
        parse_rfc3339_ns(bytes)
    } else {
        parse_unix_ns(bytes)
    }
}

/// Parses a UNIX time string, `seconds[.fraction]` with one to nine fractional digits, into ns.
///
/// # Errors
/// [`TimeError::Syntax`] for anything but digits with at most one inner `.` and nine
/// decimals; [`TimeError::Range`] past `u64` ns.
pub fn parse_unix_ns(bytes: &[u8]) -> Result<u64, TimeError> {
    let (int, frac) = match bytes.iter().position(|&b| b == b'.') {
        Some(dot) => (&bytes[..dot], Some(&bytes[dot + 1..])),
        None => (bytes, None),
    };
    if int.is_empty() || int.len() > 20 || !int.iter().all(u8::is_ascii_digit) {
        return Err(TimeError::Syntax);
    }
    let mut secs: u64 = 0;
    for &b in int {
        secs = secs
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(b - b'0')))
            .ok_or(TimeError::Range)?;
    }
    let nanos = match frac {
        None => 0,
        Some(frac) => fraction_ns(frac)?,
    };
    secs.checked_mul(NS_PER_SEC)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or(TimeError::Range)
}

/// One to nine fractional-second digits as nanoseconds.
#[inline]
fn fraction_ns(digits: &[u8]) -> Result<u64, TimeError> {
    if digits.is_empty() || digits.len() > 9 {
        return Err(TimeError::Syntax);
    }
    let mut ns: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(TimeError::Syntax);
        }
        ns = ns * 10 + u64::from(b - b'0');
    }
    // At most nine digits were read, so the scale is at least 10^0.
    Ok(ns * 10u64.pow(9 - digits.len() as u32))
}

/// Reads exactly `N` ASCII digits at `at` as a number.
#[inline]
fn digits<const N: usize>(bytes: &[u8], at: usize) -> Result<u32, TimeError> {
    let Some(field) = bytes.get(at..at + N) else {
        return Err(TimeError::Syntax);
    };
    let mut v = 0u32;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(TimeError::Syntax);
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Ok(v)
}

#[inline]
fn expect(bytes: &[u8], at: usize, allowed: &[u8]) -> Result<(), TimeError> {
    match bytes.get(at) {
        Some(b) if allowed.contains(b) => Ok(()),
        _ => Err(TimeError::Syntax),
    }
}

/// Days from 1970-01-01 to the given proleptic-Gregorian date (Howard Hinnant's
/// `days_from_civil`), exact for every year the four-digit field can hold.
#[inline]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[inline]
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 `date-time` into ns since the epoch, without allocating.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, with `t`/`z` in either case as RFC 3339
/// allows. A leap second (`:60`) is read as the first instant of the next minute, as POSIX time
/// has no place for it. More than nine fractional digits are refused: OANDA sends nine, and
/// anything finer would have to be rounded.
///
/// # Errors
/// [`TimeError::Syntax`] for a malformed string; [`TimeError::Range`] for an impossible date or
/// time of day, or an instant before 1970 or past `u64` ns.
pub fn parse_rfc3339_ns(bytes: &[u8]) -> Result<u64, TimeError> {
    let year = digits::<4>(bytes, 0)?;
    expect(bytes, 4, b"-")?;
    let month = digits::<2>(bytes, 5)?;
    expect(bytes, 7, b"-")?;
    let day = digits::<2>(bytes, 8)?;
    expect(bytes, 10, b"Tt")?;
    let hour = digits::<2>(bytes, 11)?;
    expect(bytes, 13, b":")?;
    let minute = digits::<2>(bytes, 14)?;
    expect(bytes, 16, b":")?;
    let second = digits::<2>(bytes, 17)?;
    let mut at = 19;
    let mut nanos = 0;
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        let len = bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        nanos = fraction_ns(&bytes[start..start + len])?;
        at = start + len;
    }
    // The zone: `Z`, or an offset that says how far local time is ahead of UTC.
    let offset_secs: i64 = match bytes.get(at) {
        Some(b'Z' | b'z') if bytes.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if bytes.len() == at + 6 => {
            let oh = digits::<2>(bytes, at + 1)?;
            expect(bytes, at + 3, b":")?;
            let om = digits::<2>(bytes, at + 4)?;
            if oh > 23 || om > 59 {
                return Err(TimeError::Range);
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if sign == b'+' { secs } else { -secs }
        }
        _ => return Err(TimeError::Syntax),
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(TimeError::Range);
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimeError::Range);
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).map_err(|_| TimeError::Range)?;
    secs.checked_mul(NS_PER_SEC)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or(TimeError::Range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Symbol, VenueSymbol};
    use crate::records::Stamp;

    fn index() -> InstrumentIndex {
        let entry = |ours: &str, theirs: &str| {
            let mut venues = [None; Venue::COUNT];
            venues[Venue::Oanda.index()] = Some(VenueSymbol::new(theirs).unwrap());
            (Symbol::new(ours).unwrap(), venues)
        };
        InstrumentIndex::new([entry("EURUSD", "EUR_USD"), entry("USDJPY", "USD_JPY")]).unwrap()
    }

    const META: FrameMeta = FrameMeta {
        recv_ns: 7,
        stamp: Stamp(9),
    };

    fn decode_with(decoder: &mut OandaDecoder, line: &str) -> Result<Decoded, DecodeError> {
        decoder.decode(line.as_bytes(), META, &index(), &mut TickBatch::new())
    }

    fn decode(line: &str) -> Result<Decoded, DecodeError> {
        decode_with(&mut OandaDecoder::new(), line)
    }

    fn err(reason: DecodeReason, field: &'static str) -> Result<Decoded, DecodeError> {
        Err(DecodeError { reason, field })
    }

    const PRICE: &str = r#"{"type":"PRICE","time":"2016-09-20T15:05:47.960449532Z","bids":[{"price":"1.11690","liquidity":10000000},{"price":"1.11688","liquidity":10000000}],"asks":[{"price":"1.11704","liquidity":1000000}],"closeoutBid":"1.11686","closeoutAsk":"1.11708","status":"tradeable","tradeable":true,"instrument":"EUR_USD"}"#;

    #[test]
    fn a_price_is_a_quote_of_its_best_levels() {
        let expected = Decoded::Tick(Tick {
            instrument: InstrumentId(0),
            venue: Venue::Oanda,
            body: TickBody::Quote {
                bid: "1.1169".parse().unwrap(),
                bid_qty: Qty::from_units(10_000_000).unwrap(),
                ask: "1.11704".parse().unwrap(),
                ask_qty: Qty::from_units(1_000_000).unwrap(),
            },
            seq: 1,
            exchange_ns: 1_474_383_947_960_449_532,
            recv_ns: 7,
            stamp: Stamp(9),
        });
        assert_eq!(decode(PRICE), Ok(expected));
        // The docs' form: no `type`, no `tradeable`.
        let bare = PRICE
            .replace(r#""type":"PRICE","#, "")
            .replace(r#","tradeable":true"#, "");
        assert_eq!(decode(&bare), Ok(expected));
        let unix = PRICE.replace("2016-09-20T15:05:47.960449532Z", "1474383947.960449532");
        assert_eq!(decode(&unix), Ok(expected));
    }

    #[test]
    fn seq_counts_quotes_per_instrument_and_stale_prices_are_skipped() {
        let mut d = OandaDecoder::new();
        let seq = |r: Result<Decoded, DecodeError>| match r {
            Ok(Decoded::Tick(t)) => (t.instrument.0, t.seq),
            other => panic!("{other:?}"),
        };
        let jpy = PRICE
            .replace("EUR_USD", "USD_JPY")
            .replace("1.11690", "151.234")
            .replace("1.11704", "151.241");
        assert_eq!(seq(decode_with(&mut d, PRICE)), (0, 1));
        assert_eq!(seq(decode_with(&mut d, &jpy)), (1, 1));
        // The same time again passes; an older one is stale.
        assert_eq!(seq(decode_with(&mut d, PRICE)), (0, 2));
        let older = PRICE.replace("47.960449532Z", "47.960449531Z");
        assert_eq!(decode_with(&mut d, &older), Ok(Decoded::Skipped(SkipKind::Other)));
        let newer = PRICE.replace("47.960449532Z", "48Z");
        assert_eq!(seq(decode_with(&mut d, &newer)), (0, 3));
        assert_eq!(d.last_seq(InstrumentId(0)), 3);
        assert_eq!(d.last_seq(InstrumentId(1)), 1);
        // Errors and skips do not consume numbers.
        assert!(decode_with(&mut d, &jpy.replace("151.234", "0")).is_err());
        assert_eq!(seq(decode_with(&mut d, &jpy)), (1, 2));
    }

    #[test]
    fn heartbeats_closed_markets_and_other_types() {
        assert_eq!(
            decode(r#"{"time":"2016-09-20T15:05:50.163791738Z","type":"HEARTBEAT"}"#),
            Ok(Decoded::Control(Control::Heartbeat))
        );
        assert_eq!(
            decode(r#"{"type":"HEARTBEAT"}"#),
            Ok(Decoded::Control(Control::Heartbeat))
        );
        let skipped = Ok(Decoded::Skipped(SkipKind::Other));
        assert_eq!(
            decode(&PRICE.replace(r#""tradeable":true"#, r#""tradeable":false"#)),
            skipped
        );
        let no_flag = PRICE.replace(r#","tradeable":true"#, "");
        assert_eq!(
            decode(&no_flag.replace(r#""tradeable""#, r#""non-tradeable""#)),
            skipped
        );
        assert_eq!(decode(&no_flag.replace(r#""tradeable""#, r#""invalid""#)), skipped);
        // `tradeable` wins over the older `status`.
        assert!(matches!(
            decode(&PRICE.replace(r#""status":"tradeable""#, r#""status":"non-tradeable""#)),
            Ok(Decoded::Tick(_))
        ));
        assert_eq!(decode(r#"{"type":"CANDLE","x":1}"#), skipped);
    }

    #[test]
    fn malformed_lines_say_why() {
        use DecodeReason::*;
        assert_eq!(decode(""), err(Json, ""));
        assert_eq!(decode(&PRICE[..PRICE.len() - 1]), err(Json, ""));
        assert_eq!(decode("[1]"), err(NotObject, ""));
        assert_eq!(decode(r#"{"x":1}"#), err(UnknownMessage, ""));
        assert_eq!(decode(r#"{"type":1}"#), err(BadType, "type"));
        assert_eq!(
            decode(&PRICE.replace("EUR_USD", "EUR_GBP")),
            err(UnknownSymbol, "instrument")
        );
        assert_eq!(decode(&PRICE.replace(r#""EUR_USD""#, "1")), err(BadType, "instrument"));
        assert_eq!(
            decode(&PRICE.replace(r#""tradeable":true"#, r#""tradeable":"yes""#)),
            err(BadType, "tradeable")
        );
        let no_flag = PRICE.replace(r#","tradeable":true"#, "");
        assert_eq!(
            decode(&no_flag.replace(r#""status":"tradeable""#, r#""status":1"#)),
            err(BadType, "status")
        );
        assert_eq!(
            decode(&PRICE.replace(r#""1.11690""#, "1.1169")),
            err(BadType, "bids[0].price")
        );
        assert_eq!(
            decode(&PRICE.replace("1.11690", "1e0")),
            err(BadDecimal, "bids[0].price")
        );
        assert_eq!(
            decode(&PRICE.replace("1.11704", "0.000")),
            err(NonPositivePrice, "asks[0].price")
        );
        assert_eq!(
            decode(&PRICE.replace("1.11704", "-1")),
            err(NonPositivePrice, "asks[0].price")
        );
        assert_eq!(
            decode(&PRICE.replace(":1000000}", ":-5}")),
            err(OutOfRange, "asks[0].liquidity")
        );
        assert_eq!(
            decode(&PRICE.replace(":1000000}", ":1.5}")),
            err(BadType, "asks[0].liquidity")
        );
        assert_eq!(
            decode(&PRICE.replace(":1000000}", r#":"1"}"#)),
            err(BadType, "asks[0].liquidity")
        );
        assert_eq!(
            decode(&PRICE.replace(":1000000}", ":92233720369}")),
            err(OutOfRange, "asks[0].liquidity")
        );
        assert_eq!(
            decode(&PRICE.replace(":1000000}", ":18446744073709551615}")),
            err(OutOfRange, "asks[0].liquidity")
        );
        assert_eq!(
            decode(&PRICE.replace(r#","liquidity":1000000}"#, "}")),
            err(MissingField, "asks[0].liquidity")
        );
        let empty_asks = PRICE.replace(r#"[{"price":"1.11704","liquidity":1000000}]"#, "[]");
        assert_eq!(decode(&empty_asks), err(MissingField, "asks[0]"));
        let flat_asks = PRICE.replace(r#"[{"price":"1.11704","liquidity":1000000}]"#, r#"["1.11704"]"#);
        assert_eq!(decode(&flat_asks), err(BadType, "asks[0]"));
        let asks_obj = PRICE.replace(r#"[{"price":"1.11704","liquidity":1000000}]"#, "{}");
        assert_eq!(decode(&asks_obj), err(BadType, "asks"));
        let no_bids = PRICE.replace(
            r#""bids":[{"price":"1.11690","liquidity":10000000},{"price":"1.11688","liquidity":10000000}],"#,
            "",
        );
        assert_eq!(decode(&no_bids), err(MissingField, "bids"));
        assert_eq!(decode(&PRICE.replace("15:05:47", "15-05-47")), err(BadDecimal, "time"));
        assert_eq!(decode(&PRICE.replace("09-20T", "02-30T")), err(OutOfRange, "time"));
        assert_eq!(
            decode(&PRICE.replace(r#""2016-09-20T15:05:47.960449532Z""#, "1")),
            err(BadType, "time")
        );
        let no_time = PRICE.replace(r#""time":"2016-09-20T15:05:47.960449532Z","#, "");
        assert_eq!(decode(&no_time), err(MissingField, "time"));
        assert_eq!(
            OandaDecoder::new().decode(b"{\"type\":\"\xff\"}", META, &index(), &mut TickBatch::new()),
            err(Utf8, "")
        );
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert_eq!(
            OandaDecoder::new().decode(&big, META, &index(), &mut TickBatch::new()),
            err(TooLarge, "")
        );
    }

    #[test]
    fn rfc3339_times() {
        let t = |s: &str| parse_rfc3339_ns(s.as_bytes());
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("1970-01-01T00:00:00.000000001Z"), Ok(1));
        assert_eq!(t("2016-09-20T15:05:47.960449532Z"), Ok(1_474_383_947_960_449_532));
        assert_eq!(t("2016-09-20t15:05:47.96z"), Ok(1_474_383_947_960_000_000));
        assert_eq!(t("2016-09-20T17:05:47.960449532+02:00"), Ok(1_474_383_947_960_449_532));
        assert_eq!(t("2016-09-20T10:35:47.960449532-04:30"), Ok(1_474_383_947_960_449_532));
        assert_eq!(t("2000-02-29T00:00:00Z"), Ok(951_782_400_000_000_000));
        assert_eq!(t("2016-12-31T23:59:60Z"), t("2017-01-01T00:00:00Z"));
        assert_eq!(t("2554-07-21T23:34:33.709551615Z"), Ok(u64::MAX));
        assert_eq!(t("2554-07-21T23:34:33.709551616Z"), Err(TimeError::Range));
        assert_eq!(t("1969-12-31T23:59:59Z"), Err(TimeError::Range));
        assert_eq!(t("1970-01-01T00:30:00+01:00"), Err(TimeError::Range));
        assert_eq!(t("2001-02-29T00:00:00Z"), Err(TimeError::Range));
        assert_eq!(t("2001-13-01T00:00:00Z"), Err(TimeError::Range));
        assert_eq!(t("2001-01-01T24:00:00Z"), Err(TimeError::Range));
        assert_eq!(t("2001-01-01T00:00:00+24:00"), Err(TimeError::Range));
        for bad in [
            "",
            "2016-09-20",
            "2016-09-20T15:05:47",
            "2016-09-20T15:05:47.Z",
            "2016-09-20T15:05:47.1234567890Z",
            "2016-09-20 15:05:47Z",
            "2016-09-20T15:05:47ZZ",
            "2016-09-20T15:05:47+0200",
            "16-09-20T15:05:47Z",
            "2016-9-20T15:05:47Z",
            "2016-09-20T15:05:4xZ",
            "+016-09-20T15:05:47Z",
        ] {
            assert_eq!(t(bad), Err(TimeError::Syntax), "{bad}");
        }
    }

    #[test]
    fn unix_times() {
        let t = |s: &str| parse_unix_ns(s.as_bytes());
        assert_eq!(t("1502462040.000000000"), Ok(1_502_462_040_000_000_000));
        assert_eq!(t("1502462040"), Ok(1_502_462_040_000_000_000));
        assert_eq!(t("1502462040.5"), Ok(1_502_462_040_500_000_000));
        assert_eq!(t("0.000000001"), Ok(1));
        assert_eq!(t("18446744073.709551615"), Ok(u64::MAX));
        assert_eq!(t("18446744073.709551616"), Err(TimeError::Range));
        assert_eq!(t("99999999999999999999"), Err(TimeError::Range));
        for bad in [
            "",
            ".5",
            "1.",
            "1.2.3",
            "-1",
            "+1",
            "1e9",
            "1.0000000001",
            " 1",
            "123456789012345678901",
        ] {
            assert_eq!(t(bad), Err(TimeError::Syntax), "{bad}");
        }
        assert_eq!(parse_time_ns(b"1474383947.960449532"), Ok(1_474_383_947_960_449_532));
        assert_eq!(
            parse_time_ns(b"2016-09-20T15:05:47.960449532Z"),
            Ok(1_474_383_947_960_449_532)
        );
    }
}
