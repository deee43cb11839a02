//! Execution: turns approved orders into venue orders and reports what happened.
//!
//! Gateways sit behind the [`Gateway`] trait, one per venue, chosen by generic parameter
//! (static dispatch on the hot path); the in-process [`PaperVenue`] is the default one. For
//! every order from Risk, Execution:
//!
//! 1. reads the kill switch ([`KillSwitch`]): a tripped switch stops the order before any
//!    gateway sees it ([`RejectReason::KillSwitch`]), and the first [`Exec::poll`] after a new
//!    trip cancels every open order at every gateway, once;
//! 2. **routes** it (module `route`): a pinned order goes to its venue; otherwise the admitted
//!    venue with the best expected price after fees at the displayed size, with venue health
//!    (reject ratio and fill rate over a rolling window), feed state, connectivity and ack
//!    latency taken into account; nothing admitted: [`RejectReason::NoRoute`];
//! 3. **decides maker or taker** for [`Tif::Auto`] orders (module `maker`): a post-only limit at
//!    our side's touch when the venue's fee saving reaches `maker_rebate_threshold_bps` and the
//!    order is not urgent, else an IOC limit within the slip tolerance. Orders with an explicit
//!    time in force go as asked;
//! 4. works it until nothing is open: passive orders are repriced to the touch after
//!    `passive_timeout_ms` of logical time, then crossed or cancelled.
//!
//! # One engine order, several venue orders
//!
//! Risk knows one order per engine id; a reprice places a new venue order. Execution keeps the
//! engine order for its whole life and works it through child orders at the gateway: the first
//! child carries the engine id, every replacement a fresh id with [`CHILD_ID_BIT`] set (Risk's
//! ids never reach it). Each child is for the whole unfilled remainder, and only one is open at
//! a time. What Risk and the cold side see is the engine order only: `Routed` once, an `Ack`
//! for every child the venue accepts (with that child's venue order id), every `Fill` under the
//! engine id (`last` when the engine order has nothing left), and exactly one final `Cancelled`
//! or `Reject` for the remainder when the engine order ends unfilled. A child cancelled to be
//! replaced is not reported, so Risk never releases the same quantity twice: fills plus the
//! final release always add up to the order's quantity.
//!
//! # Time
//!
//! Every decision runs on logical time: the receive time of the ticks Execution sees and the
//! `ts_ns` of the orders it is given, never the wall clock, so replaying a capture gives the
//! same orders and fills byte for byte. The wall clock is used for tick-to-order latency only
//! (recorded into an HdrHistogram that the runtime swaps for an empty one periodically: no
//! sharing, no allocation).
//!
//! # Reports and the backlog
//!
//! [`Exec::process`] hands at most [`MAX_EVENTS_PER_ORDER`] records to its caller; anything
//! more, and everything caused by ticks, commands, timers and gateway polls, waits in a backlog
//! that [`Exec::poll`] hands on as the rings have room, in order, never dropped. Side notes for
//! operators (venue demoted or re-admitted, reprices, passive timeouts) go to a separate small
//! queue, [`Exec::pop_note`]; they may be dropped (and counted) since the state they describe is
//! also in the counters.

mod book;
mod maker;
mod paper;
mod route;

pub use paper::{DEFAULT_DEPTH_PENALTY_BPS_MILLI, PAPER_INSTRUMENTS, PAPER_RESTING, PaperVenue};
pub use route::HEALTH_WINDOW_CAP;

use std::collections::VecDeque;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::ids::{InstrumentId, InstrumentIndex, Venue};
use crate::kill::KillSwitch;
use crate::num::{Price, Qty};
use crate::records::{
    ExecReport, Factor, Fill, Liquidity, Order, OrderId, OrderKind, RejectReason, RouteReason, Stamp, Tick, Tif,
};

use book::Top;
use route::{Health, Outcome, cost_key};

/// A venue's order entry, driven from the Execution thread.
///
/// Execution holds one gateway per venue it can route to (usually an enum over the paper venue
/// and the real clients, so dispatch stays static). Every answer goes through `out`, either
/// during the call or later from [`poll`](Gateway::poll).
pub trait Gateway {
    /// The venue this gateway trades on.
    fn venue(&self) -> Venue;

    /// Sends an order; what the venue says comes back through `out`, now or from [`poll`].
    ///
    /// [`poll`]: Gateway::poll
    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport));

    /// Cancels one open order: [`ExecReport::Cancelled`] or [`ExecReport::CancelRejected`], now
    /// or from [`poll`](Gateway::poll).
    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport));

    /// Market data of this venue (a paper venue fills resting orders against it).
    fn on_tick(&mut self, _tick: &Tick, _out: &mut impl FnMut(ExecReport)) {}

    /// Reads responses and runs timers (`now_ns` from [`crate::clock::mono_ns`]); returns
    /// `true` if it did any work.
    fn poll(&mut self, _now_ns: u64, _out: &mut impl FnMut(ExecReport)) -> bool {
        false
    }

    /// Cancels every open order at the venue: one [`ExecReport::Cancelled`] per order that was
    /// still open (now or, for a remote venue, from [`poll`](Gateway::poll) as the venue
    /// confirms). The kill switch calls it.
    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport));

    /// The most orders the gateway holds open at once, which bounds the reports one
    /// [`cancel_all`](Gateway::cancel_all) produces. Execution sizes its report backlog with it
    /// when it is built, so cancelling everything allocates nothing.
    fn open_capacity(&self) -> usize;

    /// The venue's fee schedule, if the gateway knows it (the paper venue does); otherwise
    /// Execution uses [`ExecParams::fees`] for the maker/taker rule and the router.
    fn fees(&self) -> Option<Fees> {
        None
    }

    /// Whether the gateway can place orders now (connected, not blocked). A gateway that is
    /// down is not routed to; pinned orders still go to it and get its answer.
    fn is_up(&self) -> bool {
        true
    }
}

/// A venue's fee schedule, in thousandths of a basis point of the notional (7.5 bps = 7500);
/// a negative maker fee is a rebate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fees {
    /// Charged on fills that provided liquidity.
    pub maker_bps_milli: i64,
    /// Charged on fills that took liquidity.
    pub taker_bps_milli: i64,
}

/// An operator's request to Execution, from the cold side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecCommand {
    /// Cancel this open order wherever it rests.
    Cancel(OrderId),
    /// A config reload changed the `exec` keys Execution reads per order: they apply whole,
    /// between two orders (or ticks), from the next decision on.
    Params(LiveExecParams),
}

/// The part of [`ExecParams`] a config reload changes while Execution runs: the maker/taker
/// rule, the passive timer and what follows it, and the router's reject ratio, health window,
/// probation and latency penalty. A plain value (no allocation), carried by
/// [`ExecCommand::Params`].
///
/// The rest stays as built: `depth_penalty_bps` is also the paper venues' model of the book beyond the touch (baked into
/// them at start, so router and venue never disagree), and the fee schedules come from the
/// gateways or `exec.paper`, fixed at start as well.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveExecParams {
    /// See [`ExecParams::slip`].
    pub slip: Factor,
    /// See [`ExecParams::maker_threshold_bps_milli`].
    pub maker_threshold_bps_milli: i64,
    /// See [`ExecParams::urgent_score`].
    pub urgent_score: Factor,
    /// See [`ExecParams::passive_timeout_ns`]: timers already running keep their deadline.
    pub passive_timeout_ns: u64,
    /// See [`ExecParams::max_reprices`].
    pub max_reprices: u32,
    /// See [`ExecParams::on_passive_timeout`].
    pub on_passive_timeout: OnPassiveTimeout,
    /// See [`ExecParams::reject_ratio`]: checked at the next outcome a venue records.
    pub reject_ratio: Factor,
    /// See [`ExecParams::health_window`]: a new length starts every venue's window over, empty
    /// (room for [`HEALTH_WINDOW_CAP`] orders is allocated at start).
    pub health_window: u32,
    /// See [`ExecParams::probation_ns`]: for demotions from now on.
    pub probation_ns: u64,
    /// See [`ExecParams::latency_penalty_bps_milli_per_ms`].
    pub latency_penalty_bps_milli_per_ms: i64,
}

impl ExecParams {
    /// The keys a reload may change while running.
    pub fn live(&self) -> LiveExecParams {
        LiveExecParams {
            slip: self.slip,
            maker_threshold_bps_milli: self.maker_threshold_bps_milli,
            urgent_score: self.urgent_score,
            passive_timeout_ns: self.passive_timeout_ns,
            max_reprices: self.max_reprices,
            on_passive_timeout: self.on_passive_timeout,
            reject_ratio: self.reject_ratio,
            health_window: self.health_window,
            probation_ns: self.probation_ns,
            latency_penalty_bps_milli_per_ms: self.latency_penalty_bps_milli_per_ms,
        }
    }

    /// Takes every key of `live`; the others stay.
    pub fn set_live(&mut self, live: LiveExecParams) {
        let LiveExecParams {
            slip,
            maker_threshold_bps_milli,
            urgent_score,
            passive_timeout_ns,
            max_reprices,
            on_passive_timeout,
            reject_ratio,
            health_window,
            probation_ns,
            latency_penalty_bps_milli_per_ms,
        } = live;
        self.slip = slip;
        self.maker_threshold_bps_milli = maker_threshold_bps_milli;
        self.urgent_score = urgent_score;
        self.passive_timeout_ns = passive_timeout_ns;
        self.max_reprices = max_reprices;
        self.on_passive_timeout = on_passive_timeout;
        self.reject_ratio = reject_ratio;
        self.health_window = health_window;
        self.probation_ns = probation_ns;
        self.latency_penalty_bps_milli_per_ms = latency_penalty_bps_milli_per_ms;
    }
}

/// What happens to a passive order whose reprices are used up (`exec.on_passive_timeout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnPassiveTimeout {
    /// Cross the remainder with an IOC limit within the slip tolerance.
    #[default]
    Take,
    /// Cancel the remainder.
    Cancel,
}

impl OnPassiveTimeout {
    /// `take` or `cancel`.
    pub const fn name(self) -> &'static str {
        match self {
            OnPassiveTimeout::Take => "take",
            OnPassiveTimeout::Cancel => "cancel",
        }
    }
}

/// Execution's parameters (the `exec` config section), validated by the cold side.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecParams {
    /// `slip_tolerance_pct` as a fraction (0.05 % = 0.0005): the IOC bound's distance from the
    /// reference price.
    pub slip: Factor,
    /// `maker_rebate_threshold_bps` in thousandths of a basis point: the fee saving from which
    /// a non-urgent order is posted passively.
    pub maker_threshold_bps_milli: i64,
    /// `urgent_score`: an order whose signal is at least this strong (`|Σ mix|`) takes.
    pub urgent_score: Factor,
    /// `passive_timeout_ms` in ns of logical time.
    pub passive_timeout_ns: u64,
    /// `max_reprices`: reprices of a passive order before `on_passive_timeout` applies.
    pub max_reprices: u32,
    /// `on_passive_timeout`.
    pub on_passive_timeout: OnPassiveTimeout,
    /// `reject_ratio_pct` as a fraction: a venue whose window holds more rejects is demoted.
    pub reject_ratio: Factor,
    /// `health_window`: orders per venue in the health window.
    pub health_window: u32,
    /// `probation_ms` in ns of logical time: how long a demoted venue stays out.
    pub probation_ns: u64,
    /// `latency_penalty_bps_per_ms` in thousandths of a basis point per millisecond of a
    /// venue's ack-latency EWMA, added to its cost when ranking.
    pub latency_penalty_bps_milli_per_ms: i64,
    /// `depth_penalty_bps` in thousandths of a basis point: the price penalty assumed for the
    /// part of an order beyond a venue's displayed size.
    pub depth_penalty_bps_milli: i64,
    /// Fee schedule per venue (by [`Venue::index`]) for gateways that do not know theirs.
    pub fees: [Fees; Venue::COUNT],
    /// Tick size per instrument id (the IOC bound is rounded to it); missing: no rounding.
    pub tick_size: Vec<Price>,
}

impl Default for ExecParams {
    /// The config defaults: 0.05 % slip, 1.5 bps threshold, urgent at 0.8, 2 s passive timeout,
    /// 2 reprices then take, 2 % rejects over 50 orders, 60 s probation, 0.1 bp per ms of ack
    /// latency, 10 bps beyond the touch, fees 2.5 / 7.5 bps.
    fn default() -> Self {
        Self {
            slip: Factor::from_bits(2_147_484), // 0.0005, to the nearest 2^-32
            maker_threshold_bps_milli: 1_500,
            urgent_score: Factor::from_bits(3_435_973_837), // 0.8, to the nearest 2^-32
            passive_timeout_ns: 2_000_000_000,
            max_reprices: 2,
            on_passive_timeout: OnPassiveTimeout::Take,
            reject_ratio: Factor::from_bits(85_899_346), // 0.02, to the nearest 2^-32
            health_window: 50,
            probation_ns: 60_000_000_000,
            latency_penalty_bps_milli_per_ms: 100,
            depth_penalty_bps_milli: 10_000,
            fees: [Fees {
                maker_bps_milli: 2_500,
                taker_bps_milli: 7_500,
            }; Venue::COUNT],
            tick_size: Vec::new(),
        }
    }
}

/// What Execution hands to the cold side, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// An engine order as first sent to its venue (venue, time in force and limit resolved).
    Order(Order),
    /// The venue's answer about an engine order (routing, ack, fill, reject, cancel), or
    /// Execution's own reject of an order it could not send.
    Report(ExecReport),
}

/// A side note for operators: venue health changes and how passive orders are worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecNote {
    /// A venue's reject ratio went above `exec.reject_ratio_pct`: orders avoid it while another
    /// venue can take them, until `until_ns` (logical time).
    Demoted {
        /// The venue.
        venue: Venue,
        /// Rejects in its window.
        rejects: u32,
        /// The window's length.
        window: u32,
        /// When it is admitted again.
        until_ns: u64,
        /// When (logical time).
        ts_ns: u64,
    },
    /// A demoted venue's probation is over: admitted again with an empty window.
    Readmitted {
        /// The venue.
        venue: Venue,
        /// When (logical time).
        ts_ns: u64,
    },
    /// A passive engine order now works as a new post-only child order at the new touch.
    Repriced {
        /// The engine order.
        order_id: OrderId,
        /// The new child order's id at the gateway.
        child: OrderId,
        /// Where.
        venue: Venue,
        /// The new price.
        price: Price,
        /// The remainder it is for.
        qty: Qty,
        /// When (logical time).
        ts_ns: u64,
    },
    /// A passive engine order ran out of time and reprices (or the venue refused it as it would
    /// have taken): its remainder is now crossed (`take`) or cancelled.
    PassiveTimeout {
        /// The engine order.
        order_id: OrderId,
        /// Where.
        venue: Venue,
        /// `true`: crossed with an IOC; `false`: cancelled.
        take: bool,
        /// When (logical time).
        ts_ns: u64,
    },
}

/// Most records one order can produce through [`Exec::process`]: the order, the routing
/// decision, an ack, a (partial) fill and the cancel of an IOC remainder (or a reject). The
/// runtime reserves this many slots before it takes an order; anything beyond waits in the
/// backlog.
pub const MAX_EVENTS_PER_ORDER: usize = 5;

/// Child orders that replace an engine order at a venue have ids with this bit set.
pub const CHILD_ID_BIT: u64 = 1 << 63;

/// A tick-to-order latency histogram in nanoseconds: 1 ns to 60 s at 3 significant digits,
/// never resized (recording saturates at the top instead of allocating).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Room kept in the report backlog and the gateway inbox beyond the gateways' open capacity,
/// for reports a gateway's `poll` delivers in one go.
const BACKLOG_SLACK: usize = 64;

/// Notes kept for the runtime to collect; more are dropped and counted.
const NOTES: usize = 256;

/// Instruments Execution keeps books for when built without an instrument index.
const UNINDEXED_INSTRUMENTS: usize = 256;

/// "No timer" marker.
const NEVER: u64 = u64::MAX;

/// Execution's running totals, mirrored into the runtime's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecCounters {
    /// Engine orders routed, per venue (by [`Venue::index`]).
    pub routed: [u64; Venue::COUNT],
    /// Engine orders routed, per [`RouteReason::index`].
    pub route_reasons: [u64; RouteReason::COUNT],
    /// [`Tif::Auto`] orders posted passively.
    pub maker_orders: u64,
    /// [`Tif::Auto`] orders sent to take (IOC).
    pub taker_orders: u64,
    /// Orders with an explicit time in force, sent as asked.
    pub as_asked: u64,
    /// Passive orders repriced (a cancel and a new post-only order each).
    pub reprices: u64,
    /// Passive orders crossed after their time ran out.
    pub timeout_takes: u64,
    /// Passive orders cancelled after their time ran out.
    pub timeout_cancels: u64,
    /// Demotions per venue.
    pub demotions: [u64; Venue::COUNT],
    /// Re-admissions after probation, per venue.
    pub readmissions: [u64; Venue::COUNT],
    /// Fills that provided liquidity.
    pub maker_fills: u64,
    /// Fills that took liquidity.
    pub taker_fills: u64,
    /// Engine orders filled completely.
    pub filled: u64,
    /// Gateway reports about orders Execution does not hold (late answers; fills among them are
    /// still passed on).
    pub strays: u64,
    /// Notes dropped because nobody collected them.
    pub notes_dropped: u64,
}

/// A venue's health as the router sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenueHealth {
    /// Demoted (avoided while another venue can trade).
    pub demoted: bool,
    /// Rejects in the window.
    pub rejects: u32,
    /// The window's length.
    pub window: u32,
    /// Fill rate in thousandths (1000 before any order).
    pub fill_rate_milli: u64,
    /// Submit-to-ack EWMA in ns of logical time.
    pub ack_ewma_ns: u64,
    /// The venue's feed counts as live.
    pub feed_live: bool,
}

/// How an engine order is worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// Explicit time in force: sent as asked, not worked.
    AsAsked,
    /// Taking with an IOC bound.
    Taker,
    /// Resting post-only at the touch, repriced on a timer.
    Passive,
}

/// What Execution waits for after asking the gateway to cancel the current child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    /// Nothing asked.
    None,
    /// Replace it with a post-only order at the touch.
    Reprice,
    /// Replace it with an IOC within the slip tolerance.
    Take,
    /// End the engine order; `operator`: report a refused cancel.
    Cancel { operator: bool },
}

/// One engine order being worked.
#[derive(Clone, Copy, Debug)]
struct Working {
    /// As Risk approved it.
    order: Order,
    /// Gateway index.
    gw: u8,
    style: Style,
    /// Not filled yet: what the current child is for, and what Risk holds open.
    remaining: Qty,
    /// The current child's id at the gateway.
    child: OrderId,
    /// The current child's limit (zero for a market order).
    price: Price,
    /// Logical time the current child was sent.
    sent_ns: u64,
    acked: bool,
    /// The current child's outcome is in the venue's health window.
    counted: bool,
    reprices: u32,
    /// Passive timer (logical time), or [`NEVER`].
    deadline_ns: u64,
    pending: Pending,
}

/// What to do at a gateway after handling a report.
enum Follow {
    Nothing,
    Submit(usize, Order),
}

/// The Execution stage's state.
#[derive(Debug)]
pub struct Exec<G: Gateway> {
    /// One per venue, in the order given.
    gateways: Vec<G>,
    /// Gateway index per venue.
    gw_of: [Option<usize>; Venue::COUNT],
    /// Fee schedule per venue: the gateway's, else the parameters'.
    fees: [Fees; Venue::COUNT],
    params: ExecParams,
    index: Option<Arc<InstrumentIndex>>,
    /// Top of book per (instrument, venue): `instrument * Venue::COUNT + venue`.
    books: Vec<Top>,
    health: [Health; Venue::COUNT],
    feed_live: [bool; Venue::COUNT],
    /// Engine orders open at the gateways, in arrival order; never grows past `open_limit`.
    work: Vec<Working>,
    /// The most engine orders open at once: the gateways' open capacities added up.
    open_limit: usize,
    /// Gateway reports not yet handled, tagged with the gateway index.
    inbox: VecDeque<(u8, ExecReport)>,
    /// Reports not yet handed on (a cancel-all can produce thousands at once; the rings take
    /// them over several polls). Allocated for the gateways' open capacity; a gateway that
    /// reports more at once makes it grow, which allocates but loses nothing.
    backlog: VecDeque<ExecReport>,
    notes: VecDeque<ExecNote>,
    counters: ExecCounters,
    /// Logical time: the latest tick receive time or order time seen.
    now_ns: u64,
    next_child: u64,
    /// Earliest passive timer, or [`NEVER`].
    next_deadline: u64,
    latency: Box<Histogram<u64>>,
    kill: KillSwitch,
    /// The kill-switch generation whose cancel-all has been done.
    kill_seen: u64,
    /// Shutting down: every open order is being cancelled and none replaced.
    stopping: bool,
}

impl<G: Gateway> Exec<G> {
    /// Wraps one gateway per venue, guarded by `kill`, with default parameters and no
    /// instrument index (every gateway counts as listing every instrument).
    ///
    /// # Panics
    /// As [`with_params`](Self::with_params).
    pub fn new(gateways: Vec<G>, kill: KillSwitch) -> Self {
        Self::with_params(gateways, kill, ExecParams::default(), None)
    }

    /// Wraps one gateway per venue, guarded by `kill`. With an `index`, an unpinned order is
    /// routed only to venues that list its instrument. A trip that happened before this call
    /// needs no cancel-all (nothing is open at a gateway that has not been used). Allocates
    /// every table; nothing allocates afterwards.
    ///
    /// # Panics
    /// With no gateway, more than 255, or two for one venue: wiring errors, never runtime ones.
    pub fn with_params(
        gateways: Vec<G>,
        kill: KillSwitch,
        params: ExecParams,
        index: Option<Arc<InstrumentIndex>>,
    ) -> Self {
        assert!(
            !gateways.is_empty() && gateways.len() < 256,
            "one gateway per venue, at least one"
        );
        let mut gw_of = [None; Venue::COUNT];
        let mut fees = params.fees;
        for (i, g) in gateways.iter().enumerate() {
            let v = g.venue().index();
            assert!(gw_of[v].is_none(), "two gateways for {}", g.venue());
            gw_of[v] = Some(i);
            if let Some(f) = g.fees() {
                fees[v] = f;
            }
        }
        let capacity: usize = gateways.iter().map(|g| g.open_capacity()).sum();
        let instruments = index.as_ref().map_or(UNINDEXED_INSTRUMENTS, |ix| ix.len());
        let window = params.health_window.max(1) as usize;
        Self {
            work: Vec::with_capacity(capacity),
            open_limit: capacity,
            inbox: VecDeque::with_capacity(capacity + BACKLOG_SLACK),
            backlog: VecDeque::with_capacity(capacity + BACKLOG_SLACK),
            notes: VecDeque::with_capacity(NOTES),
            books: vec![Top::default(); instruments * Venue::COUNT],
            health: std::array::from_fn(|_| Health::new(window)),
            feed_live: [true; Venue::COUNT],
            gw_of,
            fees,
            params,
            index,
            gateways,
            counters: ExecCounters::default(),
            now_ns: 0,
            next_child: 1,
            next_deadline: NEVER,
            latency: Box::new(latency_histogram()),
            kill_seen: kill.generation(),
            kill,
            stopping: false,
        }
    }

    /// Sends one approved order unless the kill switch is tripped; every record it causes goes
    /// through `out` (at most [`MAX_EVENTS_PER_ORDER`], the rest waits in the backlog). Returns
    /// whether the order was sent.
    ///
    /// An order that cannot be sent comes back as [`ExecReport::Reject`] (kill switch, no
    /// route, no price, table full), which releases its open quantity at Risk. Call
    /// [`poll`](Self::poll) before each `process`, so the cancel-all of a new trip and any
    /// waiting report come before any later order.
    #[inline]
    pub fn process(&mut self, order: Order, now: Stamp, out: &mut impl FnMut(ExecEvent)) -> bool {
        let reject = |reason| {
            ExecEvent::Report(ExecReport::Reject {
                order_id: order.id,
                instrument: order.instrument,
                side: order.side,
                qty: order.qty,
                reason,
            })
        };
        if self.kill.is_tripped() {
            out(reject(RejectReason::KillSwitch));
            return false;
        }
        self.now_ns = self.now_ns.max(order.ts_ns);
        self.readmit();
        if self.work.len() >= self.open_limit {
            out(reject(RejectReason::Overflow));
            return false;
        }
        let (g, reason) = match self.route(&order) {
            Ok(r) => r,
            Err(why) => {
                out(reject(why));
                return false;
            }
        };
        let venue = self.gateways[g].venue();
        let Some((style, tif, kind)) = self.resolve(&order, venue) else {
            out(reject(RejectReason::NoPrice));
            return false;
        };
        match style {
            Style::AsAsked => self.counters.as_asked += 1,
            Style::Taker => self.counters.taker_orders += 1,
            Style::Passive => self.counters.maker_orders += 1,
        }
        self.counters.routed[venue.index()] += 1;
        self.counters.route_reasons[reason.index()] += 1;
        // An order with no tick behind it (a zero stamp: Risk's trims) has no tick-to-order
        // latency to record.
        if order.stamp.0 != 0 {
            self.latency
                .saturating_record(now.0.saturating_sub(order.stamp.0).max(1));
        }
        let child = Order {
            venue,
            tif,
            kind,
            ..order
        };
        out(ExecEvent::Order(child));
        out(ExecEvent::Report(ExecReport::Routed {
            order_id: order.id,
            venue,
            reason,
        }));
        let deadline_ns = if style == Style::Passive {
            self.timer_from_now()
        } else {
            NEVER
        };
        // `len < open_limit <= capacity` was checked above, so this push does not reallocate.
        self.work.push(Working {
            order,
            gw: g as u8,
            style,
            remaining: order.qty,
            child: order.id,
            price: limit_of(kind).unwrap_or(Price::ZERO),
            sent_ns: self.now_ns,
            acked: false,
            counted: false,
            reprices: 0,
            deadline_ns,
            pending: Pending::None,
        });
        let inbox = &mut self.inbox;
        self.gateways[g].submit(&child, &mut |r| inbox.push_back((g as u8, r)));
        let mut budget = MAX_EVENTS_PER_ORDER - 2;
        self.pump(&mut budget, out);
        true
    }

    /// Hands one tick of market data to the router's book and to the gateway of its venue,
    /// then runs the passive timers that are due by its receive time. Reports wait in the
    /// backlog for [`poll`](Self::poll).
    #[inline]
    pub fn on_tick(&mut self, tick: &Tick) {
        self.now_ns = self.now_ns.max(tick.recv_ns);
        if let Some(top) = self.books.get_mut(book_slot(tick.instrument, tick.venue)) {
            top.apply(&tick.body);
        }
        if let Some(g) = self.gw_of[tick.venue.index()] {
            let inbox = &mut self.inbox;
            self.gateways[g].on_tick(tick, &mut |r| inbox.push_back((g as u8, r)));
        }
        self.pump_quiet();
        self.readmit();
        self.timers();
        self.pump_quiet();
    }

    /// Applies an operator command; its reports wait in the backlog for [`poll`](Self::poll).
    /// A cancel ends the engine order (whatever child works it); the order's final
    /// `Cancelled` comes when the venue confirms. New parameters replace the live ones whole
    /// (commands run between two orders or ticks, never inside one).
    pub fn command(&mut self, cmd: ExecCommand) {
        match cmd {
            ExecCommand::Params(live) => {
                if live.health_window != self.params.health_window {
                    for h in &mut self.health {
                        h.resize(live.health_window.max(1) as usize);
                    }
                }
                self.params.set_live(live);
            }
            ExecCommand::Cancel(order_id) => match self.work.iter().position(|w| w.order.id == order_id) {
                Some(i) => {
                    let w = &mut self.work[i];
                    let ask = w.pending == Pending::None;
                    w.pending = Pending::Cancel { operator: true };
                    if ask {
                        let (g, child) = (usize::from(w.gw), w.child);
                        let inbox = &mut self.inbox;
                        self.gateways[g].cancel(child, &mut |r| inbox.push_back((g as u8, r)));
                        self.pump_quiet();
                    }
                }
                None => self.backlog.push_back(ExecReport::CancelRejected {
                    order_id,
                    reason: RejectReason::UnknownOrder,
                }),
            },
        }
    }

    /// After a new kill-switch trip, cancels every open order at every gateway (once per trip)
    /// and replaces none of them; otherwise lets the gateways read responses. Reports go
    /// through `out`, at most `room` of them; the rest wait in the backlog for the next polls,
    /// in order, never dropped. Returns whether anything happened.
    #[inline]
    pub fn poll(&mut self, now_ns: u64, room: usize, out: &mut impl FnMut(ExecEvent)) -> bool {
        let mut busy = false;
        let generation = self.kill.generation();
        if generation != self.kill_seen {
            self.kill_seen = generation;
            self.cancel_everything();
            busy = true;
        } else if self.backlog.is_empty() {
            let inbox = &mut self.inbox;
            for (g, gateway) in self.gateways.iter_mut().enumerate() {
                busy |= gateway.poll(now_ns, &mut |r| inbox.push_back((g as u8, r)));
            }
            if !self.inbox.is_empty() {
                self.pump_quiet();
            }
        }
        for _ in 0..room {
            let Some(r) = self.backlog.pop_front() else { break };
            out(ExecEvent::Report(r));
            busy = true;
        }
        busy
    }

    /// Shutdown: cancels every open order at every gateway and replaces none from now on. The
    /// reports wait in the backlog (remote venues confirm through [`poll`](Self::poll)).
    pub fn shut_down(&mut self) {
        self.stopping = true;
        self.cancel_everything();
    }

    /// Tells the router whether a venue's feed is live (an unpinned order never goes to a venue
    /// whose feed is not). Every venue counts as live until told otherwise.
    pub fn set_feed(&mut self, venue: Venue, live: bool) {
        self.feed_live[venue.index()] = live;
    }

    /// The oldest side note not yet collected.
    #[inline]
    pub fn pop_note(&mut self) -> Option<ExecNote> {
        self.notes.pop_front()
    }

    /// Reports waiting for room in the rings. The runtime takes no new order while any wait,
    /// so records reach Risk and the cold side in the order they happened.
    #[inline]
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Engine orders open at the gateways.
    pub fn open_orders(&self) -> usize {
        self.work.len()
    }

    /// The gateways, one per venue.
    pub fn gateways(&self) -> &[G] {
        &self.gateways
    }

    /// The first gateway (the only one, in single-venue engines).
    pub fn gateway(&self) -> &G {
        &self.gateways[0]
    }

    /// The gateway of `venue`, if there is one.
    pub fn gateway_of(&self, venue: Venue) -> Option<&G> {
        self.gw_of[venue.index()].map(|g| &self.gateways[g])
    }

    /// The parameters in force.
    pub fn params(&self) -> &ExecParams {
        &self.params
    }

    /// Running totals.
    pub fn counters(&self) -> &ExecCounters {
        &self.counters
    }

    /// A venue's health as the router sees it now.
    pub fn venue_health(&self, venue: Venue) -> VenueHealth {
        let h = &self.health[venue.index()];
        VenueHealth {
            demoted: h.demoted_until.is_some(),
            rejects: h.rejects(),
            window: h.window(),
            fill_rate_milli: h.fill_rate_milli(),
            ack_ewma_ns: h.ack_ewma_ns,
            feed_live: self.feed_live[venue.index()],
        }
    }

    /// Logical time: the latest tick receive time or order time seen.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Swaps the current latency histogram for `fresh` (which must be empty) and returns the
    /// filled one. Moves two boxes; allocates nothing.
    pub fn swap_histogram(&mut self, fresh: Box<Histogram<u64>>) -> Box<Histogram<u64>> {
        std::mem::replace(&mut self.latency, fresh)
    }

    /// Number of latency samples recorded since the last swap.
    pub fn samples(&self) -> u64 {
        self.latency.len()
    }

    // --- routing and the maker/taker rule ---

    /// Chooses the gateway for an order (see module `route`).
    fn route(&self, order: &Order) -> Result<(usize, RouteReason), RejectReason> {
        if order.pin_venue {
            return self.gw_of[order.venue.index()]
                .map(|g| (g, RouteReason::Pinned))
                .ok_or(RejectReason::NoRoute);
        }
        let listing = match &self.index {
            Some(ix) if order.instrument.index() < ix.len() => Some(ix.get(order.instrument).venue_symbols),
            Some(_) => return Err(RejectReason::NoRoute),
            None => None,
        };
        // (cost, fill rate descending, ack latency, venue order): lowest wins.
        type Key = (i128, std::cmp::Reverse<u64>, u64, usize);
        let mut best_eligible: Option<(Key, usize)> = None;
        let mut best_admitted: Option<(Key, usize)> = None;
        let mut admitted = 0;
        for v in Venue::ALL {
            let Some(g) = self.gw_of[v.index()] else { continue };
            let listed = listing.is_none_or(|l| l[v.index()].is_some());
            if !listed || !self.feed_live[v.index()] || !self.gateways[g].is_up() {
                continue;
            }
            let h = &self.health[v.index()];
            let latency_milli = i64::try_from(
                u128::from(h.ack_ewma_ns) * u128::from(self.params.latency_penalty_bps_milli_per_ms.max(0) as u64)
                    / 1_000_000,
            )
            .unwrap_or(i64::MAX / 4);
            let top = self.top(order.instrument, v);
            let cost = cost_key(
                order.side,
                order.qty,
                &top,
                self.fees[v.index()].taker_bps_milli,
                self.params.depth_penalty_bps_milli,
                latency_milli,
            )
            .unwrap_or(i128::MAX);
            let key: Key = (cost, std::cmp::Reverse(h.fill_rate_milli()), h.ack_ewma_ns, v.index());
            if best_eligible.is_none_or(|(k, _)| key < k) {
                best_eligible = Some((key, g));
            }
            if h.demoted_until.is_none() {
                admitted += 1;
                if best_admitted.is_none_or(|(k, _)| key < k) {
                    best_admitted = Some((key, g));
                }
            }
        }
        match (best_admitted, best_eligible) {
            (Some((_, g)), Some((_, best))) => {
                let reason = if g != best {
                    RouteReason::Failover(self.gateways[best].venue())
                } else if admitted == 1 {
                    RouteReason::OnlyVenue
                } else {
                    RouteReason::BestPrice
                };
                Ok((g, reason))
            }
            (None, Some((_, best))) => Ok((best, RouteReason::LastResort)),
            _ => Err(RejectReason::NoRoute),
        }
    }

    /// The maker/taker rule (module `maker`): how the first child of `order` is sent to
    /// `venue`. `None` when it must take but no price is known at all.
    fn resolve(&self, order: &Order, venue: Venue) -> Option<(Style, Tif, OrderKind)> {
        if order.tif != Tif::Auto {
            return Some((Style::AsAsked, order.tif, order.kind));
        }
        let top = self.top(order.instrument, venue);
        let fees = self.fees[venue.index()];
        let passive = !maker::is_urgent(order, self.params.urgent_score)
            && maker::fee_saving(fees.maker_bps_milli, fees.taker_bps_milli) >= self.params.maker_threshold_bps_milli;
        if passive && let Some(p) = maker::passive_price(order.side, &top, &order.touch, limit_of(order.kind)) {
            return Some((Style::Passive, Tif::PostOnly, OrderKind::Limit(p)));
        }
        let bound = self.taker_limit(order, &top)?;
        Some((Style::Taker, Tif::Ioc, OrderKind::Limit(bound)))
    }

    /// The IOC bound of a taking order.
    fn taker_limit(&self, order: &Order, top: &Top) -> Option<Price> {
        let reference = maker::reference(order.side, &order.touch, top)?;
        let tick = self
            .params
            .tick_size
            .get(order.instrument.index())
            .copied()
            .unwrap_or(Price::ZERO);
        maker::taker_bound(order.side, reference, self.params.slip, tick, limit_of(order.kind))
    }

    /// The top of `venue`'s book for `instrument` (empty if not kept).
    fn top(&self, instrument: InstrumentId, venue: Venue) -> Top {
        self.books
            .get(book_slot(instrument, venue))
            .copied()
            .unwrap_or_default()
    }

    // --- working orders ---

    /// A passive timer starting now.
    fn timer_from_now(&mut self) -> u64 {
        let at = self.now_ns.saturating_add(self.params.passive_timeout_ns);
        self.next_deadline = self.next_deadline.min(at);
        at
    }

    /// Handles every gateway report in the inbox (and what they cause), emitting through
    /// `out` while `budget` lasts and the backlog is empty, into the backlog otherwise.
    fn pump(&mut self, budget: &mut usize, out: &mut impl FnMut(ExecEvent)) {
        while let Some((g, r)) = self.inbox.pop_front() {
            if let Follow::Submit(g, order) = self.handle(usize::from(g), r, budget, out) {
                let inbox = &mut self.inbox;
                self.gateways[g].submit(&order, &mut |r| inbox.push_back((g as u8, r)));
            }
        }
    }

    /// [`pump`](Self::pump) with every report going to the backlog.
    fn pump_quiet(&mut self) {
        let mut none = 0;
        self.pump(&mut none, &mut |_| {});
    }

    /// Hands a report on: to `out` while the budget lasts and nothing waits, else to the
    /// backlog.
    #[inline]
    fn emit(&mut self, budget: &mut usize, out: &mut impl FnMut(ExecEvent), r: ExecReport) {
        if *budget > 0 && self.backlog.is_empty() {
            *budget -= 1;
            out(ExecEvent::Report(r));
        } else {
            self.backlog.push_back(r);
        }
    }

    fn note(&mut self, note: ExecNote) {
        if self.notes.len() < NOTES {
            self.notes.push_back(note);
        } else {
            self.counters.notes_dropped += 1;
        }
    }

    /// One gateway report about a child order, translated to the engine order.
    fn handle(&mut self, g: usize, r: ExecReport, budget: &mut usize, out: &mut impl FnMut(ExecEvent)) -> Follow {
        let id = match r {
            ExecReport::Routed { order_id, .. }
            | ExecReport::Ack { order_id, .. }
            | ExecReport::Cancelled { order_id, .. }
            | ExecReport::Reject { order_id, .. }
            | ExecReport::Unknown { order_id, .. }
            | ExecReport::CancelRejected { order_id, .. } => order_id,
            ExecReport::Fill(f) => f.order_id,
        };
        let Some(i) = self.work.iter().position(|w| w.child == id && usize::from(w.gw) == g) else {
            self.counters.strays += 1;
            // The position must follow the venue whatever we thought was open.
            if let ExecReport::Fill(_) = r {
                self.emit(budget, out, r);
            }
            return Follow::Nothing;
        };
        let venue = self.gateways[g].venue();
        let parent = self.work[i].order;
        match r {
            ExecReport::Routed { .. } => {
                self.counters.strays += 1;
                Follow::Nothing
            }
            ExecReport::Ack { venue_order_id, .. } => {
                let w = &mut self.work[i];
                if !w.acked {
                    w.acked = true;
                    let latency = self.now_ns.saturating_sub(w.sent_ns);
                    self.health[venue.index()].ack(latency);
                }
                self.emit(
                    budget,
                    out,
                    ExecReport::Ack {
                        order_id: parent.id,
                        venue_order_id,
                    },
                );
                Follow::Nothing
            }
            ExecReport::Fill(f) => {
                self.outcome(i, venue, Outcome::Filled);
                match f.liquidity {
                    Liquidity::Maker => self.counters.maker_fills += 1,
                    Liquidity::Taker => self.counters.taker_fills += 1,
                }
                let w = &mut self.work[i];
                w.remaining = w.remaining.checked_sub(f.qty).unwrap_or(Qty::ZERO);
                let last = w.remaining.is_zero();
                self.emit(
                    budget,
                    out,
                    ExecReport::Fill(Fill {
                        order_id: parent.id,
                        last,
                        ..f
                    }),
                );
                if last {
                    self.counters.filled += 1;
                    // A cancel still on its way comes back refused, as a stray.
                    self.work.remove(i);
                    Follow::Nothing
                } else if f.last {
                    // The child is over with part of the order left: as if cancelled.
                    self.child_over(i, budget, out)
                } else {
                    Follow::Nothing
                }
            }
            ExecReport::Cancelled { .. } => {
                self.outcome(i, venue, Outcome::Unfilled);
                self.child_over(i, budget, out)
            }
            ExecReport::Reject { reason, .. } => {
                let w = self.work[i];
                if reason == RejectReason::PostOnlyWouldTake && w.style == Style::Passive {
                    // The market came to our price: not the venue's fault. Act as after the
                    // last reprice.
                    self.outcome(i, venue, Outcome::Unfilled);
                    if w.pending == Pending::None || w.pending == Pending::Reprice {
                        self.work[i].pending = self.timeout_action(i, venue);
                    }
                    return self.child_over(i, budget, out);
                }
                self.outcome(i, venue, Outcome::Rejected);
                self.work.remove(i);
                self.emit(
                    budget,
                    out,
                    ExecReport::Reject {
                        order_id: parent.id,
                        instrument: parent.instrument,
                        side: parent.side,
                        qty: w.remaining,
                        reason,
                    },
                );
                Follow::Nothing
            }
            ExecReport::Unknown { .. } => {
                self.outcome(i, venue, Outcome::Rejected);
                let qty = self.work[i].remaining;
                self.emit(
                    budget,
                    out,
                    ExecReport::Unknown {
                        order_id: parent.id,
                        instrument: parent.instrument,
                        side: parent.side,
                        qty,
                    },
                );
                Follow::Nothing
            }
            ExecReport::CancelRejected { reason, .. } => {
                let w = self.work[i];
                self.work[i].pending = Pending::None;
                if w.style == Style::Passive {
                    // Try again at the next timer.
                    self.work[i].deadline_ns = self.timer_from_now();
                }
                if w.pending == (Pending::Cancel { operator: true }) {
                    self.emit(
                        budget,
                        out,
                        ExecReport::CancelRejected {
                            order_id: parent.id,
                            reason,
                        },
                    );
                }
                Follow::Nothing
            }
        }
    }

    /// Records the current child's outcome in its venue's health window, once; demotes the
    /// venue when its reject ratio goes above the limit.
    fn outcome(&mut self, i: usize, venue: Venue, outcome: Outcome) {
        if self.work[i].counted {
            return;
        }
        self.work[i].counted = true;
        let h = &mut self.health[venue.index()];
        if h.record(outcome, self.params.reject_ratio) {
            let until_ns = self.now_ns.saturating_add(self.params.probation_ns);
            h.demoted_until = Some(until_ns);
            let (rejects, window) = (h.rejects(), h.window());
            self.counters.demotions[venue.index()] += 1;
            self.note(ExecNote::Demoted {
                venue,
                rejects,
                window,
                until_ns,
                ts_ns: self.now_ns,
            });
        }
    }

    /// Re-admits every demoted venue whose probation is over, with an empty window.
    fn readmit(&mut self) {
        for v in Venue::ALL {
            let h = &mut self.health[v.index()];
            if h.demoted_until.is_some_and(|until| until <= self.now_ns) {
                h.clear();
                self.counters.readmissions[v.index()] += 1;
                self.note(ExecNote::Readmitted {
                    venue: v,
                    ts_ns: self.now_ns,
                });
            }
        }
    }

    /// What `on_passive_timeout` says for order `i`, counted and noted.
    fn timeout_action(&mut self, i: usize, venue: Venue) -> Pending {
        let take = self.params.on_passive_timeout == OnPassiveTimeout::Take;
        if take {
            self.counters.timeout_takes += 1;
        } else {
            self.counters.timeout_cancels += 1;
        }
        self.work[i].deadline_ns = NEVER;
        self.note(ExecNote::PassiveTimeout {
            order_id: self.work[i].order.id,
            venue,
            take,
            ts_ns: self.now_ns,
        });
        if take {
            Pending::Take
        } else {
            Pending::Cancel { operator: false }
        }
    }

    /// The current child of order `i` is over with part of the order unfilled: replace it as
    /// asked, or end the engine order with one `Cancelled` for the remainder.
    fn child_over(&mut self, i: usize, budget: &mut usize, out: &mut impl FnMut(ExecEvent)) -> Follow {
        let w = self.work[i];
        let venue = self.gateways[usize::from(w.gw)].venue();
        let top = self.top(w.order.instrument, venue);
        let next = if self.stopping || self.kill.is_tripped() {
            Pending::None
        } else {
            w.pending
        };
        let replacement = match next {
            Pending::Reprice => maker::passive_price(w.order.side, &top, &w.order.touch, limit_of(w.order.kind))
                .map(|p| (Tif::PostOnly, p, Style::Passive)),
            Pending::Take => self.taker_limit(&w.order, &top).map(|p| (Tif::Ioc, p, Style::Taker)),
            Pending::None | Pending::Cancel { .. } => None,
        };
        let Some((tif, price, style)) = replacement else {
            self.work.remove(i);
            self.emit(
                budget,
                out,
                ExecReport::Cancelled {
                    order_id: w.order.id,
                    instrument: w.order.instrument,
                    side: w.order.side,
                    qty: w.remaining,
                },
            );
            return Follow::Nothing;
        };
        let id = OrderId(CHILD_ID_BIT | self.next_child);
        self.next_child += 1;
        let deadline_ns = if style == Style::Passive {
            self.timer_from_now()
        } else {
            NEVER
        };
        let now = self.now_ns;
        let e = &mut self.work[i];
        e.child = id;
        e.price = price;
        e.style = style;
        e.sent_ns = now;
        e.acked = false;
        e.counted = false;
        e.pending = Pending::None;
        e.deadline_ns = deadline_ns;
        let order = Order {
            id,
            venue,
            qty: w.remaining,
            kind: OrderKind::Limit(price),
            tif,
            ts_ns: now.max(w.order.ts_ns),
            ..w.order
        };
        if style == Style::Passive {
            self.note(ExecNote::Repriced {
                order_id: w.order.id,
                child: id,
                venue,
                price,
                qty: w.remaining,
                ts_ns: now,
            });
        }
        Follow::Submit(usize::from(w.gw), order)
    }

    /// Runs the passive timers due by now: a reprice round (cancel, then a post-only order at
    /// the new touch when the venue confirms) or, after the last round, the timeout action.
    fn timers(&mut self) {
        if self.now_ns < self.next_deadline || self.stopping || self.kill.is_tripped() {
            return;
        }
        let mut next = NEVER;
        for i in 0..self.work.len() {
            let w = self.work[i];
            if w.style != Style::Passive || w.deadline_ns == NEVER || w.pending != Pending::None {
                continue;
            }
            if w.deadline_ns > self.now_ns {
                next = next.min(w.deadline_ns);
                continue;
            }
            let g = usize::from(w.gw);
            let venue = self.gateways[g].venue();
            let cancel = if w.reprices < self.params.max_reprices {
                let at = self.now_ns.saturating_add(self.params.passive_timeout_ns);
                next = next.min(at);
                let top = self.top(w.order.instrument, venue);
                let price = maker::passive_price(w.order.side, &top, &w.order.touch, limit_of(w.order.kind));
                let e = &mut self.work[i];
                e.reprices += 1;
                e.deadline_ns = at;
                // An unmoved touch keeps the order and its queue place.
                let moved = price.is_some_and(|p| p != w.price);
                if moved {
                    e.pending = Pending::Reprice;
                    self.counters.reprices += 1;
                }
                moved
            } else {
                self.work[i].pending = self.timeout_action(i, venue);
                true
            };
            if cancel {
                let inbox = &mut self.inbox;
                self.gateways[g].cancel(w.child, &mut |r| inbox.push_back((g as u8, r)));
            }
        }
        self.next_deadline = next;
    }

    /// Cancels every open order at every gateway and marks every engine order to end at its
    /// child's cancel (kill switch, shutdown).
    fn cancel_everything(&mut self) {
        for w in &mut self.work {
            w.pending = Pending::Cancel { operator: false };
            w.deadline_ns = NEVER;
        }
        let inbox = &mut self.inbox;
        for (g, gateway) in self.gateways.iter_mut().enumerate() {
            gateway.cancel_all(&mut |r| inbox.push_back((g as u8, r)));
        }
        self.pump_quiet();
    }
}

/// The limit price of an order kind.
#[inline]
fn limit_of(kind: OrderKind) -> Option<Price> {
    match kind {
        OrderKind::Limit(p) => Some(p),
        OrderKind::Market => None,
    }
}

/// Index of (instrument, venue) in the book table.
#[inline]
fn book_slot(instrument: InstrumentId, venue: Venue) -> usize {
    instrument.index() * Venue::COUNT + venue.index()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ids::InstrumentId;
    use crate::records::{OrderId, Origin, Side, Touch};

    fn order(side: Side, kind: OrderKind) -> Order {
        Order {
            id: OrderId(7),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side,
            qty: "0.02".parse().unwrap(),
            kind,
            tif: Tif::Gtc,
            pin_venue: false,
            touch: Touch {
                bid: "61837.63".parse().unwrap(),
                ask: "61837.64".parse().unwrap(),
                last: "61837.63".parse().unwrap(),
            },
            origin: Origin::Alpha,
            client_id: 0,
            mix: [crate::records::Factor::ZERO; 4],
            reduce_only: false,
            ts_ns: 42,
            stamp: Stamp(100),
        }
    }

    fn exec(fee: i64) -> Exec<PaperVenue> {
        Exec::new(vec![PaperVenue::new(Venue::Binance, fee)], KillSwitch::new())
    }

    #[test]
    fn paper_fills_takers_at_the_touch_with_fee() {
        let mut exec = exec(7_500);
        let mut out = Vec::new();
        assert!(exec.process(order(Side::Buy, OrderKind::Market), Stamp(350), &mut |e| out.push(e)));
        assert_eq!(out.len(), 4, "order, routed, ack, fill: {out:?}");
        assert!(matches!(
            out[1],
            ExecEvent::Report(ExecReport::Routed {
                venue: Venue::Binance,
                reason: RouteReason::OnlyVenue,
                ..
            })
        ));
        let ExecEvent::Report(ExecReport::Fill(f)) = out[3] else {
            panic!("{out:?}")
        };
        assert_eq!(f.price.to_string(), "61837.64");
        // 0.02 * 61837.64 = 1236.7528; 7.5 bps = 0.9275646 exactly.
        assert_eq!(f.fee.to_string(), "0.9275646");
        assert_eq!(f.ts_ns, 42);
        assert!(f.last);
        assert_eq!(exec.samples(), 1);
        let h = exec.swap_histogram(Box::new(latency_histogram()));
        assert_eq!(h.max(), 250);
        assert_eq!(exec.samples(), 0);
        assert_eq!(exec.open_orders(), 0);
    }

    #[test]
    fn non_marketable_limits_rest_and_marketable_ones_fill() {
        let mut exec = exec(0);
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        exec.process(order(Side::Buy, limit), Stamp(101), &mut |e| out.push(e));
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(
            out[2],
            ExecEvent::Report(ExecReport::Ack {
                order_id: OrderId(7),
                ..
            })
        ));
        assert_eq!(exec.gateway().resting(), 1);
        out.clear();
        exec.process(order(Side::Sell, limit), Stamp(101), &mut |e| out.push(e));
        let ExecEvent::Report(ExecReport::Fill(f)) = out[3] else {
            panic!("{out:?}")
        };
        assert_eq!(f.price.to_string(), "61837.63");
        assert_eq!(exec.gateway().resting(), 1, "a fill does not rest");
    }

    #[test]
    fn a_full_open_order_table_rejects() {
        let mut exec = Exec::new(vec![PaperVenue::with_capacity(Venue::Binance, 0, 2)], KillSwitch::new());
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        for _ in 0..3 {
            exec.process(order(Side::Buy, limit), Stamp(101), &mut |e| out.push(e));
        }
        assert_eq!(out.len(), 7, "{out:?}");
        assert!(matches!(
            out[6],
            ExecEvent::Report(ExecReport::Reject {
                reason: RejectReason::Overflow,
                ..
            })
        ));
        assert_eq!(exec.open_orders(), 2);
        assert_eq!(exec.gateway().resting(), 2);
    }

    /// The switch stops orders before the gateway, cancels every resting order once per trip,
    /// over as many polls as the rings need, and lets orders through again after a reset.
    #[test]
    fn the_kill_switch_blocks_orders_and_cancels_resting_ones_once() {
        let kill = KillSwitch::new();
        let mut exec = Exec::new(vec![PaperVenue::with_capacity(Venue::Binance, 0, 8)], kill.clone());
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        for id in 1..=5 {
            let o = Order {
                id: OrderId(id),
                ..order(Side::Buy, limit)
            };
            exec.process(o, Stamp(101), &mut |e| out.push(e));
        }
        assert_eq!(exec.gateway().resting(), 5);
        out.clear();
        assert!(!exec.poll(0, 16, &mut |e| out.push(e)), "nothing to do before a trip");

        kill.trip();
        let sent = exec.process(order(Side::Buy, OrderKind::Market), Stamp(101), &mut |e| out.push(e));
        assert!(!sent);
        assert_eq!(
            out,
            [ExecEvent::Report(ExecReport::Reject {
                order_id: OrderId(7),
                instrument: InstrumentId(0),
                side: Side::Buy,
                qty: "0.02".parse().unwrap(),
                reason: RejectReason::KillSwitch,
            })]
        );
        assert_eq!(exec.samples(), 5, "a stopped order is not a latency sample");
        out.clear();
        // Two slots of room per poll: the five cancels arrive over three polls, in order.
        let mut polls = 0;
        while exec.poll(0, 2, &mut |e| out.push(e)) {
            polls += 1;
            assert!(out.len() <= 2 * polls);
        }
        assert_eq!(polls, 3);
        let cancelled: Vec<u64> = out
            .iter()
            .map(|e| match e {
                ExecEvent::Report(ExecReport::Cancelled { order_id, qty, .. }) => {
                    assert_eq!(qty.to_string(), "0.02");
                    order_id.0
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(cancelled, [1, 2, 3, 4, 5]);
        assert_eq!((exec.gateway().resting(), exec.backlog()), (0, 0));
        assert_eq!(exec.open_orders(), 0);
        out.clear();
        assert!(!exec.poll(0, 16, &mut |e| out.push(e)), "one cancel-all per trip");

        kill.reset();
        assert!(exec.process(order(Side::Buy, limit), Stamp(101), &mut |e| out.push(e)));
        assert_eq!(exec.gateway().resting(), 1);
        // A trip and a reset between two polls still cancel everything.
        kill.trip();
        kill.reset();
        out.clear();
        assert!(exec.poll(0, 16, &mut |e| out.push(e)));
        assert!(
            matches!(out[..], [ExecEvent::Report(ExecReport::Cancelled { .. })]),
            "{out:?}"
        );
    }

    /// With resting orders at two venues, one trip cancels every one of them at both venues
    /// (one `Cancelled` each) and nothing reaches either venue after it: an order pinned to
    /// each venue is refused with `KillSwitch` before its gateway, and no `Order` event follows.
    #[test]
    fn the_kill_switch_cancels_resting_orders_at_every_venue() {
        let kill = KillSwitch::new();
        let mut exec = Exec::new(
            vec![
                PaperVenue::with_capacity(Venue::Binance, 0, 8),
                PaperVenue::with_capacity(Venue::Bybit, 0, 8),
            ],
            kill.clone(),
        );
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        let at = |venue: Venue, id: u64| Order {
            id: OrderId(id),
            venue,
            pin_venue: true,
            ..order(Side::Buy, limit)
        };
        // Binance gets orders 1–3, Bybit 11–14; all rest below the ask.
        let ids = [(Venue::Binance, 1), (Venue::Binance, 2), (Venue::Binance, 3)]
            .into_iter()
            .chain((11..=14).map(|id| (Venue::Bybit, id)));
        for (venue, id) in ids {
            assert!(exec.process(at(venue, id), Stamp(101), &mut |e| out.push(e)));
        }
        let resting = |exec: &Exec<PaperVenue>, v: Venue| exec.gateway_of(v).unwrap().resting();
        assert_eq!((resting(&exec, Venue::Binance), resting(&exec, Venue::Bybit)), (3, 4));
        assert_eq!(exec.open_orders(), 7);
        out.clear();

        kill.trip();
        // Orders that arrive after the trip, one pinned to each venue, never reach a gateway.
        for (venue, id) in [(Venue::Binance, 21), (Venue::Bybit, 22)] {
            assert!(!exec.process(at(venue, id), Stamp(101), &mut |e| out.push(e)));
        }
        // Room for three reports per poll: the seven cancels arrive over several polls.
        let mut polls = 0;
        while exec.poll(0, 3, &mut |e| out.push(e)) {
            polls += 1;
            assert!(out.len() <= 2 + 3 * polls, "{out:?}");
        }
        assert_eq!(polls, 3);
        let mut refused = Vec::new();
        let mut cancelled = Vec::new();
        for e in &out {
            match e {
                ExecEvent::Report(ExecReport::Reject {
                    order_id,
                    reason: RejectReason::KillSwitch,
                    ..
                }) => refused.push(order_id.0),
                ExecEvent::Report(ExecReport::Cancelled { order_id, qty, .. }) => {
                    assert_eq!(qty.to_string(), "0.02");
                    cancelled.push(order_id.0);
                }
                other => panic!("nothing but kill-switch refusals and cancels after the trip: {other:?}"),
            }
        }
        assert_eq!(refused, [21, 22]);
        cancelled.sort_unstable();
        assert_eq!(
            cancelled,
            [1, 2, 3, 11, 12, 13, 14],
            "every resting order at both venues"
        );
        assert_eq!((resting(&exec, Venue::Binance), resting(&exec, Venue::Bybit)), (0, 0));
        assert_eq!((exec.open_orders(), exec.backlog()), (0, 0));
        out.clear();
        assert!(!exec.poll(0, 16, &mut |e| out.push(e)), "one cancel-all per trip");
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_switch_tripped_before_building_needs_no_cancel() {
        let kill = KillSwitch::new();
        kill.trip();
        let mut exec = Exec::new(vec![PaperVenue::new(Venue::Binance, 0)], kill);
        let mut out = Vec::new();
        assert!(!exec.poll(0, 16, &mut |e| out.push(e)));
        assert!(!exec.process(order(Side::Buy, OrderKind::Market), Stamp(101), &mut |e| out.push(e)));
        assert_eq!(out.len(), 1);
    }

    /// A reload's parameters replace the live ones whole between two orders: the first order
    /// is posted passively under the shipped threshold, the second takes under the new one,
    /// bounded by the new slip tolerance; what cannot change live stays as built.
    #[test]
    fn new_params_apply_whole_between_two_orders() {
        let fees = Fees {
            maker_bps_milli: 2_500,
            taker_bps_milli: 7_500,
        };
        let mut exec = Exec::with_params(
            vec![PaperVenue::configured(Venue::Binance, fees, 0, 64)],
            KillSwitch::new(),
            ExecParams::default(),
            None,
        );
        let auto = |id| Order {
            id: OrderId(id),
            tif: Tif::Auto,
            ..order(Side::Buy, OrderKind::Market)
        };
        let sent = |out: &[ExecEvent]| match out.first() {
            Some(ExecEvent::Order(o)) => *o,
            other => panic!("expected the order first, got {other:?}"),
        };
        let mut out = Vec::new();
        exec.process(auto(1), Stamp(101), &mut |e| out.push(e));
        // A 5 bp saving reaches the 1.5 bp threshold: posted at our touch.
        let first = sent(&out);
        assert_eq!(first.tif, Tif::PostOnly);
        assert_eq!(first.kind, OrderKind::Limit("61837.63".parse().unwrap()));

        let live = LiveExecParams {
            slip: Factor::from_num(0.01),
            maker_threshold_bps_milli: 10_000,
            urgent_score: Factor::from_num(0.5),
            passive_timeout_ns: 5_000_000_000,
            max_reprices: 0,
            on_passive_timeout: OnPassiveTimeout::Cancel,
            reject_ratio: Factor::from_num(0.1),
            health_window: 20,
            probation_ns: 1_000_000_000,
            latency_penalty_bps_milli_per_ms: 0,
        };
        assert_ne!(exec.params().live(), live);
        let before = exec.params().clone();
        exec.command(ExecCommand::Params(live));
        assert_eq!(exec.params().live(), live, "every live key applies");
        assert_eq!(
            (exec.params().depth_penalty_bps_milli, exec.params().fees),
            (before.depth_penalty_bps_milli, before.fees),
            "the keys fixed at start stay"
        );
        assert_eq!(
            exec.venue_health(Venue::Binance).window,
            20,
            "the router's window follows"
        );
        assert_eq!(exec.backlog(), 0, "a parameter change reports nothing");

        out.clear();
        exec.process(auto(2), Stamp(102), &mut |e| out.push(e));
        // 5 bp is short of 10 bp: it takes, at most 1 % above the ask.
        let second = sent(&out);
        assert_eq!(second.tif, Tif::Ioc);
        let OrderKind::Limit(bound) = second.kind else {
            panic!("{second:?}")
        };
        let ask: Price = "61837.64".parse().unwrap();
        // 1 % to the nearest 2^-32, not rounded to a tick (none given).
        assert!(bound > ask && bound < "62457".parse().unwrap(), "{bound}");
        assert!(
            bound > "62400".parse().unwrap(),
            "the new slip tolerance, not 0.05 %: {bound}"
        );
    }

    #[test]
    fn operator_cancels_end_the_engine_order_and_unknown_ids_are_refused() {
        let mut exec = exec(0);
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        exec.process(order(Side::Buy, limit), Stamp(101), &mut |e| out.push(e));
        out.clear();
        exec.command(ExecCommand::Cancel(OrderId(7)));
        exec.command(ExecCommand::Cancel(OrderId(99)));
        while exec.poll(0, 16, &mut |e| out.push(e)) {}
        assert_eq!(
            out,
            [
                ExecEvent::Report(ExecReport::Cancelled {
                    order_id: OrderId(7),
                    instrument: InstrumentId(0),
                    side: Side::Buy,
                    qty: "0.02".parse().unwrap(),
                }),
                ExecEvent::Report(ExecReport::CancelRejected {
                    order_id: OrderId(99),
                    reason: RejectReason::UnknownOrder,
                }),
            ]
        );
        assert_eq!(exec.open_orders(), 0);
    }
}
