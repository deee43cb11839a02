//! Venue market-data feeds: the types every venue decoder shares.
//!
//! A decoder turns one WebSocket text frame into exactly one [`Decoded`] value or one
//! [`DecodeError`].
//! Frames that are well-formed but carry nothing the engine uses yet (depth diffs, snapshots,
//! aggregate trades, klines) are [`Decoded::Skipped`] with a [`SkipKind`] so the runtime can
//! count them; they are data, not errors.
//! Venue control messages (subscription acknowledgements, request errors, shutdown notices)
//! come back as [`Decoded::Control`] for the connector to act on.
//!
//! Everything here is `Copy` and allocation-free, so counting and forwarding results on the
//! hot thread never touches the heap.
//! Each venue lives in its own folder with the same shape: `mod.rs`, `messages.rs` (the wire
//! vocabulary), `parse.rs` (the decoder) and `subscription.rs`.

use core::fmt;

use crate::records::{Stamp, Tick};

pub mod any;
pub mod binance;
pub mod bybit;
pub mod coinbase;
pub mod http_stream;
pub mod oanda;
mod tape;
pub mod ws;

/// Largest frame a decoder accepts; anything longer is refused with [`DecodeReason::TooLarge`]
/// before it is copied or parsed.
///
/// The largest frame in the 2024-08-08 Binance captures is the REST depth snapshot line at
/// about 64,050 bytes; stream frames are a few hundred bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Most ticks one frame may carry (a Coinbase `market_trades` batch, a Bybit `publicTrade`
/// message, an OANDA price line). A frame with more is refused whole with
/// [`DecodeReason::TooManyTicks`]: the cap keeps the batch a fixed-size array, so decoding never
/// allocates.
pub const MAX_TICKS_PER_FRAME: usize = 64;

/// The ticks decoded from one frame, in wire order, plus what the decoder noticed on the way.
///
/// Owned by the feed task and reused for every frame; decoders that produce several ticks per
/// frame write here and return [`Decoded::Ticks`].
#[derive(Clone, Debug)]
pub struct TickBatch {
    ticks: [Tick; MAX_TICKS_PER_FRAME],
    len: usize,
    /// Sequence gaps the decoder detected in this frame (e.g. a Coinbase `sequence_num` jump).
    pub gaps: u32,
}

impl Default for TickBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl TickBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            ticks: [Tick::EMPTY; MAX_TICKS_PER_FRAME],
            len: 0,
            gaps: 0,
        }
    }

    /// Empties the batch (ticks and gap count).
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
        self.gaps = 0;
    }

    /// Appends a tick; hands it back if the batch is full.
    #[inline]
    pub fn push(&mut self, tick: Tick) -> Result<(), Tick> {
        match self.ticks.get_mut(self.len) {
            Some(slot) => {
                *slot = tick;
                self.len += 1;
                Ok(())
            }
            None => Err(tick),
        }
    }

    /// Keeps only the ticks for which `keep` returns `true`, in order.
    #[inline]
    pub fn retain(&mut self, mut keep: impl FnMut(&Tick) -> bool) {
        let mut kept = 0;
        for i in 0..self.len {
            if keep(&self.ticks[i]) {
                self.ticks[kept] = self.ticks[i];
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// The ticks, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Tick] {
        &self.ticks[..self.len]
    }

    /// Number of ticks.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if there are no ticks.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a venue numbers its ticks, which decides how duplicates and gaps are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbering {
    /// No usable order (hashed ids, local counters): no deduplication, no gap detection.
    None,
    /// Ids only increase (update ids): an id not above the last one is a duplicate.
    Increasing,
    /// Ids increase by exactly one (Binance trade ids per symbol): also detects gaps.
    Consecutive,
}

/// A venue's numbering of trades and of quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequencing {
    /// Trade ids.
    pub trades: Numbering,
    /// Quote update ids.
    pub quotes: Numbering,
}

/// What one frame turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A normalised trade or quote, ready for the ring.
    Tick(Tick),
    /// One or more ticks, written to the [`TickBatch`] passed to the decoder.
    Ticks,
    /// A frame we recognise but do not use yet; the runtime counts these per kind.
    Skipped(SkipKind),
    /// A venue control message for the connector.
    Control(Control),
}

/// Recognised frames that carry no [`Tick`] (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SkipKind {
    /// An order-book diff or a streamed partial book (`depthUpdate`, `<symbol>@depth<N>`).
    Depth = 0,
    /// An aggregate trade; the raw trade stream already carries every print.
    AggTrade = 1,
    /// A REST order-book snapshot written into a capture.
    Snapshot = 2,
    /// Any other event (klines, tickers, average price, block trades, ...).
    Other = 3,
}

impl SkipKind {
    /// Every kind, in index order.
    pub const ALL: [SkipKind; 4] = [SkipKind::Depth, SkipKind::AggTrade, SkipKind::Snapshot, SkipKind::Other];
    /// Number of kinds; sizes per-kind counters.
    pub const COUNT: usize = SkipKind::ALL.len();

    /// Dense index for per-kind counters.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Snake-case name used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            SkipKind::Depth => "depth",
            SkipKind::AggTrade => "agg_trade",
            SkipKind::Snapshot => "snapshot",
            SkipKind::Other => "other",
        }
    }
}

/// A venue control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// A successful response to one of our requests (subscribe, list, set property).
    Result {
        /// The request id we sent, echoed back.
        id: i64,
    },
    /// The venue refused a request.
    Error {
        /// The venue's error code.
        code: i64,
    },
    /// The server is about to go down for maintenance: reconnect now.
    ServerShutdown,
    /// The venue confirmed our subscriptions (Coinbase `subscriptions`, Bybit `success: true`).
    Subscribed,
    /// The venue refused a subscription: the feed cannot work as configured.
    SubscribeRejected,
    /// A venue heartbeat (Coinbase `heartbeats`, OANDA `HEARTBEAT`) or the answer to our ping.
    Heartbeat,
}

/// Why a frame was refused. Each reason has a counter and a stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DecodeReason {
    /// Not valid JSON (syntax error, truncated frame, nesting too deep, empty frame).
    Json = 0,
    /// Valid JSON, but the frame (or the `data` of a combined frame) is not an object.
    NotObject = 1,
    /// A field the message kind requires is absent.
    MissingField = 2,
    /// A field has the wrong JSON type (a number where a decimal string belongs, ...).
    BadType = 3,
    /// A decimal string that is not an exact, well-formed decimal.
    BadDecimal = 4,
    /// A price of zero or below.
    NonPositivePrice = 5,
    /// A trade quantity of zero.
    ZeroQty = 6,
    /// A symbol the instrument index does not list for this venue.
    UnknownSymbol = 7,
    /// A JSON object of no shape this venue's decoder knows.
    UnknownMessage = 8,
    /// An integer out of range: a negative id or time, or a time that overflows nanoseconds.
    OutOfRange = 9,
    /// Longer than [`MAX_FRAME_BYTES`].
    TooLarge = 10,
    /// The frame is not UTF-8.
    Utf8 = 11,
    /// More ticks in one frame than [`MAX_TICKS_PER_FRAME`].
    TooManyTicks = 12,
}

impl DecodeReason {
    /// Every reason, in index order.
    pub const ALL: [DecodeReason; 13] = [
        DecodeReason::Json,
        DecodeReason::NotObject,
        DecodeReason::MissingField,
        DecodeReason::BadType,
        DecodeReason::BadDecimal,
        DecodeReason::NonPositivePrice,
        DecodeReason::ZeroQty,
        DecodeReason::UnknownSymbol,
        DecodeReason::UnknownMessage,
        DecodeReason::OutOfRange,
        DecodeReason::TooLarge,
        DecodeReason::Utf8,
        DecodeReason::TooManyTicks,
    ];
    /// Number of reasons; sizes per-reason counters.
    pub const COUNT: usize = DecodeReason::ALL.len();

    /// Dense index for per-reason counters.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Snake-case name used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            DecodeReason::Json => "json",
            DecodeReason::NotObject => "not_object",
            DecodeReason::MissingField => "missing_field",
            DecodeReason::BadType => "bad_type",
            DecodeReason::BadDecimal => "bad_decimal",
            DecodeReason::NonPositivePrice => "non_positive_price",
            DecodeReason::ZeroQty => "zero_qty",
            DecodeReason::UnknownSymbol => "unknown_symbol",
            DecodeReason::UnknownMessage => "unknown_message",
            DecodeReason::OutOfRange => "out_of_range",
            DecodeReason::TooLarge => "too_large",
            DecodeReason::Utf8 => "utf8",
            DecodeReason::TooManyTicks => "too_many_ticks",
        }
    }
}

impl fmt::Display for DecodeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused frame: why, and which wire field was at fault.
///
/// Small and `Copy` so the hot thread can count it and drop it without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecodeError {
    /// Why the frame was refused.
    pub reason: DecodeReason,
    /// The wire name of the offending field (`"p"`, `"data"`), or `""` for the frame as a whole.
    pub field: &'static str,
}

impl DecodeError {
    /// An error about the frame as a whole.
    #[inline]
    pub const fn frame(reason: DecodeReason) -> Self {
        Self { reason, field: "" }
    }

    /// An error about one field, named as it is spelled on the wire.
    #[inline]
    pub const fn at(reason: DecodeReason, field: &'static str) -> Self {
        Self { reason, field }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(self.reason.name())
        } else {
            write!(f, "{} in field `{}`", self.reason.name(), self.field)
        }
    }
}

impl std::error::Error for DecodeError {}

/// What the connector knows about a frame besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Local receive time (ns since the epoch); the capture's first column on replay.
    pub recv_ns: u64,
    /// Monotonic receive stamp for latency accounting.
    pub stamp: Stamp,
}
