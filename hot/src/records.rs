//! The fixed-size `Copy` records that travel through the rings.
//!
//! Each record is plain data: no heap pointers, so moving one through an rtrb slot is a
//! `memcpy` and a ring never owns an allocation.
//! Times are `u64` nanoseconds since the Unix epoch (`*_ns`), except [`Stamp`], which is a
//! monotonic reading used only to measure latency and never printed in deterministic output.

use crate::ids::{InstrumentId, Venue};
use crate::num::{Money, Price, Qty, SignedQty};

/// Deterministic fractional factor (signal scores, confidences, weights): binary fixed point
/// with 32 fractional bits, so the same inputs give bit-identical results on every machine.
pub type Factor = fixed::types::I32F32;

/// Number of signal families in the Alpha ensemble (momentum, mean reversion, breakout,
/// sentiment, in that order: the order of `alpha.weights`).
pub const FAMILIES: usize = 4;

/// Each family's contribution to an ensemble score, in family order: `weight × score / Σ weight`
/// over the families that have an opinion, zero for a family without one. The contributions
/// add up to the score before its clip to [-1, 1] (within 2⁻³² per family, from rounding). The Portfolio side attributes an order's PnL
/// to the families by these; manual and risk orders carry all zeros.
pub type Mix = [Factor; FAMILIES];

/// A monotonic clock reading in nanoseconds, taken when a frame was received.
///
/// Carried from tick to order so that Execution can record tick-to-order latency; it is never
/// part of any emitted record, which keeps replays byte-identical.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub u64);

/// Buy or sell. For trades, the aggressor's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buy (bid side, or a buyer-initiated trade).
    Buy,
    /// Sell (ask side, or a seller-initiated trade).
    Sell,
}

impl Side {
    /// `buy` or `sell`, as printed in records.
    pub const fn name(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// The other side.
    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// What a tick says about the market.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickBody {
    /// One trade print.
    Trade {
        /// Trade price.
        price: Price,
        /// Trade quantity.
        qty: Qty,
        /// The side of the order that took liquidity.
        aggressor: Side,
    },
    /// A new best bid and offer.
    Quote {
        /// Best bid price.
        bid: Price,
        /// Size at the best bid.
        bid_qty: Qty,
        /// Best ask price.
        ask: Price,
        /// Size at the best ask.
        ask_qty: Qty,
    },
}

/// One normalised market-data event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Which venue sent it.
    pub venue: Venue,
    /// Trade or quote.
    pub body: TickBody,
    /// Venue-side sequence: trade id for trades, order-book update id for quotes.
    pub seq: u64,
    /// Exchange event time (ns); 0 when the venue sends none (Binance `bookTicker`).
    pub exchange_ns: u64,
    /// Local receive time (ns since the epoch): the capture file's first column on replay.
    pub recv_ns: u64,
    /// Monotonic receive stamp for latency accounting.
    pub stamp: Stamp,
}

impl Tick {
    /// A placeholder that fills unused slots of fixed-size buffers; never sent anywhere.
    pub const EMPTY: Tick = Tick {
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        body: TickBody::Quote {
            bid: Price::ZERO,
            bid_qty: Qty::ZERO,
            ask: Price::ZERO,
            ask_qty: Qty::ZERO,
        },
        seq: 0,
        exchange_ns: 0,
        recv_ns: 0,
        stamp: Stamp(0),
    };
}

/// Direction of an ensemble signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalSide {
    /// Score above zero.
    Buy,
    /// Score below zero.
    Sell,
    /// Score exactly zero.
    Flat,
}

impl SignalSide {
    /// `buy`, `sell` or `flat`.
    pub const fn name(self) -> &'static str {
        match self {
            SignalSide::Buy => "buy",
            SignalSide::Sell => "sell",
            SignalSide::Flat => "flat",
        }
    }
}

/// The Alpha ensemble's view of one instrument after a tick (`signals:<symbol>` schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signal {
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Weighted ensemble score in [-1, 1].
    pub score: Factor,
    /// Sign of the score.
    pub side: SignalSide,
    /// Confidence in [0, 1].
    pub confidence: Factor,
    /// Each family's contribution to `score`.
    pub mix: Mix,
    /// Receive time of the tick that produced it (ns since the epoch).
    pub ts_ns: u64,
    /// Sequence of the tick that produced it.
    pub tick_seq: u64,
    /// Monotonic stamp of that tick.
    pub stamp: Stamp,
}

/// Who asked for an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The Alpha ensemble.
    Alpha,
    /// An operator (HTTP, gRPC, CLI).
    Manual,
    /// Risk itself, reducing exposure (trim, kill).
    Risk,
}

/// How large an intent is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizing {
    /// Move the position to this level; Risk turns it into a delta using the exact position and
    /// open orders it keeps, so Alpha never has to track fills.
    Target(SignedQty),
    /// Trade exactly this much (manual orders).
    Delta(Side, Qty),
}

/// The market as the intent's author saw it, for collars and paper fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Touch {
    /// Best bid (zero if unknown).
    pub bid: Price,
    /// Best ask (zero if unknown).
    pub ask: Price,
    /// Last trade (zero if unknown).
    pub last: Price,
}

impl Touch {
    /// The price a taker would pay on `side`: the ask for a buy, the bid for a sell, the last
    /// trade if that side of the book is unknown; `None` if nothing is known.
    pub fn taker_price(&self, side: Side) -> Option<Price> {
        let touch = match side {
            Side::Buy => self.ask,
            Side::Sell => self.bid,
        };
        [touch, self.last].into_iter().find(|p| !p.is_zero())
    }
}

/// A request to trade, before Risk has looked at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderIntent {
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Where to trade it.
    pub venue: Venue,
    /// How much.
    pub sizing: Sizing,
    /// Limit price; `None` for a marketable order at the touch.
    pub limit: Option<Price>,
    /// Time in force; [`Tif::Auto`] lets Execution choose maker or taker.
    pub tif: Tif,
    /// `true`: only `venue`; `false`: Execution's router may choose (Alpha's intents).
    pub pin_venue: bool,
    /// Market at the time of the intent.
    pub touch: Touch,
    /// Who asked.
    pub origin: Origin,
    /// Caller's id (manual orders) or 0.
    pub client_id: u64,
    /// The ensemble score behind it (zero for manual orders).
    pub score: Factor,
    /// The families' contributions to `score` (zeros for manual orders).
    pub mix: Mix,
    /// Distance from the entry price to the protective exit the strategy implies (a
    /// volatility stop for Alpha); Risk's per-trade risk is quantity × this. Zero: unknown,
    /// Risk applies `risk.stop.manual_pct` of the price.
    pub stop: Price,
    /// Only reduce exposure: Risk refuses (or trims) the part that would open or grow a
    /// position.
    pub reduce_only: bool,
    /// Receive time of the triggering tick (ns since the epoch).
    pub ts_ns: u64,
    /// Monotonic stamp of the triggering tick.
    pub stamp: Stamp,
}

/// Engine-wide order id: assigned by Risk in approval order, so replays number them alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

/// Order type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderKind {
    /// Take liquidity at the touch.
    Market,
    /// Limit at this price.
    Limit(Price),
}

/// How long an order may work at the venue, and whether it may take liquidity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Tif {
    /// Execution decides: a passive post-only order at the touch or an IOC limit bounded by the
    /// slip tolerance (the maker/taker rule in [`crate::stage::exec`]). Alpha's orders.
    #[default]
    Auto,
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel: what does not fill at once is cancelled.
    Ioc,
    /// Fill or kill: fills whole at once or not at all.
    Fok,
    /// Post-only (limit maker): refused instead of taking liquidity.
    PostOnly,
}

impl Tif {
    /// `auto`, `gtc`, `ioc`, `fok` or `post_only`.
    pub const fn name(self) -> &'static str {
        match self {
            Tif::Auto => "auto",
            Tif::Gtc => "gtc",
            Tif::Ioc => "ioc",
            Tif::Fok => "fok",
            Tif::PostOnly => "post_only",
        }
    }
}

/// An order Risk has approved. Execution accepts nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    /// Engine order id.
    pub id: OrderId,
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Where to send it.
    pub venue: Venue,
    /// Buy or sell.
    pub side: Side,
    /// Quantity.
    pub qty: Qty,
    /// Market or limit.
    pub kind: OrderKind,
    /// Time in force; [`Tif::Auto`] until Execution resolves it.
    pub tif: Tif,
    /// `true`: only `venue` may take it; `false`: Execution's router may choose another venue
    /// that lists the instrument.
    pub pin_venue: bool,
    /// Market at approval time.
    pub touch: Touch,
    /// Who asked.
    pub origin: Origin,
    /// Caller's id or 0.
    pub client_id: u64,
    /// The families' contributions to the signal behind it (zeros unless `origin` is Alpha).
    pub mix: Mix,
    /// The order may only reduce exposure.
    pub reduce_only: bool,
    /// Receive time of the triggering tick (ns since the epoch): the order's logical time.
    pub ts_ns: u64,
    /// Monotonic stamp of the triggering tick.
    pub stamp: Stamp,
}

/// Who provided liquidity in a fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liquidity {
    /// We took liquidity.
    Taker,
    /// We provided it.
    Maker,
}

/// One execution of (part of) an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// The order it belongs to.
    pub order_id: OrderId,
    /// Which instrument.
    pub instrument: InstrumentId,
    /// Where it executed.
    pub venue: Venue,
    /// Our side.
    pub side: Side,
    /// Execution price.
    pub price: Price,
    /// Executed quantity.
    pub qty: Qty,
    /// Fee charged, in quote currency (negative for a rebate).
    pub fee: Money,
    /// Taker or maker.
    pub liquidity: Liquidity,
    /// `true` if the order has nothing left open after this fill.
    pub last: bool,
    /// Fill time (ns since the epoch).
    pub ts_ns: u64,
}

/// Why an order or intent was refused. Each has a counter and a stable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
    /// The kill switch is engaged.
    KillSwitch = 0,
    /// Quantity above `max_order_qty`.
    MaxOrderQty = 1,
    /// Notional above `max_order_notional`.
    MaxOrderNotional = 2,
    /// The resulting position would exceed `max_position`.
    MaxPosition = 3,
    /// No usable price to size or collar the order.
    NoPrice = 4,
    /// Zero quantity after sizing.
    ZeroQty = 5,
    /// Arithmetic would overflow.
    Overflow = 6,
    /// The venue refused it.
    VenueReject = 7,
    /// The venue does not list this instrument.
    NotListed = 8,
    /// Quantity × stop distance above `risk.max_trade_risk_pct` of the trading balance.
    TradeRisk = 9,
    /// Limit price (or the touch) too far from the reference price (`risk.price_collar_pct`).
    PriceCollar = 10,
    /// Gross exposure over all symbols would exceed `risk.max_gross_notional`.
    GrossExposure = 11,
    /// More than `risk.max_orders_per_sec` orders at this venue in the last second.
    RateLimit = 12,
    /// A client order id already used.
    DuplicateClientId = 13,
    /// The order would trade against one of our own resting orders.
    SelfTrade = 14,
    /// The symbol's market data is stale or reconnecting: no new risk.
    FeedNotLive = 15,
    /// Limit price not a multiple of the symbol's `tick_size`.
    OffTick = 16,
    /// Quantity not a multiple of the symbol's `lot_size`.
    OffLot = 17,
    /// Notional below the symbol's `min_notional`.
    MinNotional = 18,
    /// Malformed order: zero, negative or unrepresentable quantity or price, unknown instrument.
    BadInput = 19,
    /// Trading state HALTED (system or symbol): no new orders.
    Halted = 20,
    /// Trading state REDUCING: only orders that reduce exposure.
    Reducing = 21,
    /// Cancelled (kill switch, operator or venue); nothing of it stays open.
    Cancelled = 22,
    /// A post-only order would have taken liquidity.
    PostOnlyWouldTake = 23,
    /// The venue's rate limit (HTTP 429/418, Bybit 10006) or our pre-emptive limiter for it.
    VenueRateLimit = 24,
    /// The venue says the account lacks the balance.
    InsufficientFunds = 25,
    /// The venue's lot, tick or notional filter refused it.
    VenueFilter = 26,
    /// The venue does not know the order.
    UnknownOrder = 27,
    /// The request's timestamp fell outside the venue's receive window.
    ClockSkew = 28,
    /// The venue refused our key, signature or permissions.
    VenueAuth = 29,
    /// The venue was unreachable, or an order whose outcome was unknown turned out never placed.
    VenueDown = 30,
    /// No venue that lists the instrument is admitted by the router (all demoted or down).
    NoRoute = 31,
}

impl RejectReason {
    /// Refusals the engine makes itself without a venue's say: the kill switch stopped the
    /// order, the router found no admitted venue, or the arithmetic would overflow. They say
    /// nothing about a venue's health, so venue reject ratios leave them out.
    pub const fn is_engines_own(self) -> bool {
        matches!(
            self,
            RejectReason::KillSwitch | RejectReason::NoRoute | RejectReason::Overflow
        )
    }

    /// Every reason, in index order.
    pub const ALL: [RejectReason; 32] = [
        RejectReason::KillSwitch,
        RejectReason::MaxOrderQty,
        RejectReason::MaxOrderNotional,
        RejectReason::MaxPosition,
        RejectReason::NoPrice,
        RejectReason::ZeroQty,
        RejectReason::Overflow,
        RejectReason::VenueReject,
        RejectReason::NotListed,
        RejectReason::TradeRisk,
        RejectReason::PriceCollar,
        RejectReason::GrossExposure,
        RejectReason::RateLimit,
        RejectReason::DuplicateClientId,
        RejectReason::SelfTrade,
        RejectReason::FeedNotLive,
        RejectReason::OffTick,
        RejectReason::OffLot,
        RejectReason::MinNotional,
        RejectReason::BadInput,
        RejectReason::Halted,
        RejectReason::Reducing,
        RejectReason::Cancelled,
        RejectReason::PostOnlyWouldTake,
        RejectReason::VenueRateLimit,
        RejectReason::InsufficientFunds,
        RejectReason::VenueFilter,
        RejectReason::UnknownOrder,
        RejectReason::ClockSkew,
        RejectReason::VenueAuth,
        RejectReason::VenueDown,
        RejectReason::NoRoute,
    ];
    /// Number of reasons; sizes per-reason counters.
    pub const COUNT: usize = RejectReason::ALL.len();

    /// Snake-case name used in metrics, logs and records.
    pub const fn name(self) -> &'static str {
        match self {
            RejectReason::KillSwitch => "kill_switch",
            RejectReason::MaxOrderQty => "max_order_qty",
            RejectReason::MaxOrderNotional => "max_order_notional",
            RejectReason::MaxPosition => "max_position",
            RejectReason::NoPrice => "no_price",
            RejectReason::ZeroQty => "zero_qty",
            RejectReason::Overflow => "overflow",
            RejectReason::VenueReject => "venue_reject",
            RejectReason::NotListed => "not_listed",
            RejectReason::TradeRisk => "trade_risk",
            RejectReason::PriceCollar => "price_collar",
            RejectReason::GrossExposure => "gross_exposure",
            RejectReason::RateLimit => "rate_limit",
            RejectReason::DuplicateClientId => "duplicate_client_id",
            RejectReason::SelfTrade => "self_trade",
            RejectReason::FeedNotLive => "feed_not_live",
            RejectReason::OffTick => "off_tick",
            RejectReason::OffLot => "off_lot",
            RejectReason::MinNotional => "min_notional",
            RejectReason::BadInput => "bad_input",
            RejectReason::Halted => "halted",
            RejectReason::Reducing => "reducing",
            RejectReason::Cancelled => "cancelled",
            RejectReason::PostOnlyWouldTake => "post_only_would_take",
            RejectReason::VenueRateLimit => "venue_rate_limit",
            RejectReason::InsufficientFunds => "insufficient_funds",
            RejectReason::VenueFilter => "venue_filter",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::ClockSkew => "clock_skew",
            RejectReason::VenueAuth => "venue_auth",
            RejectReason::VenueDown => "venue_down",
            RejectReason::NoRoute => "no_route",
        }
    }
}

/// A trading state (per system and per symbol; the stricter of the two applies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TradingState {
    /// Normal trading.
    #[default]
    Active = 0,
    /// Only orders that reduce exposure.
    Reducing = 1,
    /// No new orders (operator trims and kill-switch cancels aside).
    Halted = 2,
}

impl TradingState {
    /// `active`, `reducing` or `halted`.
    pub const fn name(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }
}

/// Why a trading state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TransitionReason {
    /// An operator asked (HTTP, gRPC, CLI).
    Operator = 0,
    /// Intraday drawdown beyond `risk.daily_drawdown_pct`.
    Drawdown = 1,
    /// The symbol's feed went stale or is reconnecting.
    FeedStale = 2,
    /// The symbol's feed is live again.
    FeedLive = 3,
    /// The venue's reject ratio went above the limit.
    RejectRatio = 4,
    /// The venue's reject ratio is back under the limit.
    RejectRatioOk = 5,
    /// The kill switch.
    Kill = 6,
    /// Restored from the saved state at start.
    Restored = 7,
}

impl TransitionReason {
    /// Snake-case name for logs and the API.
    pub const fn name(self) -> &'static str {
        match self {
            TransitionReason::Operator => "operator",
            TransitionReason::Drawdown => "drawdown",
            TransitionReason::FeedStale => "feed_stale",
            TransitionReason::FeedLive => "feed_live",
            TransitionReason::RejectRatio => "reject_ratio",
            TransitionReason::RejectRatioOk => "reject_ratio_ok",
            TransitionReason::Kill => "kill",
            TransitionReason::Restored => "restored",
        }
    }
}

/// What a trading state applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole engine.
    System,
    /// One instrument.
    Instrument(InstrumentId),
}

/// A trading-state change, as Risk made it (tapped to the cold side for logs and the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// System or one instrument.
    pub scope: Scope,
    /// State before.
    pub from: TradingState,
    /// State after.
    pub to: TradingState,
    /// Why.
    pub reason: TransitionReason,
    /// When (ns since the epoch: the triggering tick's or command's time).
    pub ts_ns: u64,
}

/// Why Execution's router sent an order where it did (carried by [`ExecReport::Routed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteReason {
    /// The order was pinned to its venue (`pin_venue`); the router did not choose.
    Pinned,
    /// The only venue admitted for the instrument (listed, with a gateway, its feed live, the
    /// gateway up, not demoted).
    OnlyVenue,
    /// The best expected price after fees at the displayed size among the admitted venues.
    BestPrice,
    /// The venue that ranked best is demoted for its reject ratio: the order went to the best
    /// admitted one instead. Carries the demoted venue.
    Failover(Venue),
    /// Every venue that could take the order is demoted: the best of them took it anyway.
    LastResort,
}

impl RouteReason {
    /// Number of kinds (sizes per-reason counters); [`Failover`](Self::Failover) counts as one.
    pub const COUNT: usize = 5;

    /// The kind's index in `0..COUNT`, for counters.
    pub const fn index(self) -> usize {
        match self {
            RouteReason::Pinned => 0,
            RouteReason::OnlyVenue => 1,
            RouteReason::BestPrice => 2,
            RouteReason::Failover(_) => 3,
            RouteReason::LastResort => 4,
        }
    }

    /// The names of the kinds, by [`index`](Self::index).
    pub const NAMES: [&'static str; RouteReason::COUNT] =
        ["pinned", "only_venue", "best_price", "failover", "last_resort"];

    /// `pinned`, `only_venue`, `best_price`, `failover` or `last_resort`.
    pub const fn name(self) -> &'static str {
        RouteReason::NAMES[self.index()]
    }
}

/// Execution's report on one order, sent back to Risk and out to the cold side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecReport {
    /// Execution's router chose the venue (which may differ from the one Risk approved it for,
    /// unless the order was pinned). Comes before anything the venue says about the order.
    Routed {
        /// Engine order id.
        order_id: OrderId,
        /// Where it goes.
        venue: Venue,
        /// Why that venue.
        reason: RouteReason,
    },
    /// The venue accepted the order.
    Ack {
        /// Engine order id.
        order_id: OrderId,
        /// Venue order id.
        venue_order_id: u64,
    },
    /// (Part of) the order executed.
    Fill(Fill),
    /// The order was cancelled (kill switch, operator, venue); nothing of it stays open.
    Cancelled {
        /// Engine order id.
        order_id: OrderId,
        /// Which instrument.
        instrument: InstrumentId,
        /// Our side.
        side: Side,
        /// The quantity that was still open and is now released.
        qty: Qty,
    },
    /// The venue refused the order; nothing of it is open.
    Reject {
        /// Engine order id.
        order_id: OrderId,
        /// Which instrument (so Risk can release the open quantity).
        instrument: InstrumentId,
        /// Our side.
        side: Side,
        /// The refused quantity.
        qty: Qty,
        /// Why.
        reason: RejectReason,
    },
    /// The venue's answer was lost (a timeout, a 5xx, a connection dropped after the request was
    /// written): the order may or may not be live. It stays open at Risk; the gateway resolves
    /// it by querying the venue and then reports what it learnt. It is never resent.
    Unknown {
        /// Engine order id.
        order_id: OrderId,
        /// Which instrument.
        instrument: InstrumentId,
        /// Our side.
        side: Side,
        /// The order's quantity.
        qty: Qty,
    },
    /// A cancel was refused (the order is unknown or already final, or the venue failed);
    /// whatever the order was, it still is.
    CancelRejected {
        /// Engine order id.
        order_id: OrderId,
        /// Why.
        reason: RejectReason,
    },
}
