//! RiskSentinel: the single gate every order passes before Execution sees it.
//!
//! Risk keeps the exact position, open quantity, open orders, realized PnL and fees of every
//! instrument from Execution's reports, resolves target-sized intents into deltas against that
//! exposure, and approves or refuses each intent. A refusal is data ([`Decision::Refused`] with a
//! [`RejectReason`]), not an error; only [`Order`]s that came out of [`Risk::check`] (or a
//! [`RiskCommand::Trim`]) reach Execution. The controls follow what market-access rules ask of a
//! broker's pre-trade gate (SEC 15c3-5, FIA, MiFID II RTS 6): every order, algorithmic or manual,
//! passes the same checks on the hot path.
//!
//! # Sizing
//!
//! A [`Sizing::Delta`] is traded as given. A [`Sizing::Target`] becomes `target − net`, where net
//! is position plus open buys minus open sells (zero: [`Decision::Nothing`]). Alpha's targets are
//! scaled first: by the Kelly clip in [`SizingMode::Fixed`], by `kelly × kelly_damping × clip` in
//! [`SizingMode::Kelly`], rounded toward zero to whole lots (delta too). Kelly per instrument: each
//! fill that reduces |position| closes a trade whose realized PnL (average cost, [`Book`]) is a
//! win if > 0 and a loss if < 0 (break-even counts as neither); `p = (wins + N × (1 + |score|) / 2)
//! / (wins + losses + N)` with `N` = [`KELLY_PRIOR_TRADES`]: the signal's confidence stands for
//! `N` pseudo-trades won with probability `(1 + c) / 2`, so with no history Kelly is `c` itself,
//! evidence takes over as trades close, and one early loss cannot size every later order to zero
//! (which would stop the trades that could show the edge);
//! `b = avg win / avg loss`
//! (1 until both a win and a loss exist), `kelly = p − (1 − p) / b` clamped to [0, 1]. All of it
//! is `fixed` `I64F64`. Manual and Risk targets are never scaled.
//!
//! # Checks, in order (the first failure wins)
//!
//! 1. **Bad input.** Unknown instrument → `NotListed`; zero delta → `ZeroQty`; quantity, target,
//!    limit, stop or touch price above 10⁹ units, or a zero limit → `BadInput`; no price at all
//!    (no limit and no touch on the taker side or last) → `NoPrice`.
//! 2. **HALTED** (system or instrument, the stricter applies): everything is refused
//!    (`KillSwitch` while the kill switch is engaged, else `Halted`) except reduce-only intents of
//!    [`Origin::Risk`] (trims), which go on to the checks below.
//! 3. **REDUCING** (system, instrument, venue reject ratio) or a `reduce_only` intent: only the
//!    reducing part passes. An order reduces when it is on the side opposite the filled position
//!    and, even if every open order on its side fills too, it does not go past flat (open
//!    orders on the growing side are not counted as exposure that could be reduced: they may
//!    be cancelled). A delta that is not wholly reducing is refused (`Reducing`); a target is
//!    clipped to its reducing part (rounded down to lots) and refused only if nothing is left.
//! 4. **Feed not live** for the instrument's venue: the same rule with `FeedNotLive` (new risk
//!    refused, reductions pass).
//! 5. **Tick/lot.** A limit price must be a multiple of `tick_size` (`OffTick`), the quantity of
//!    `lot_size` (`OffLot`); zero disables either.
//! 6. **Min notional**: `price × qty < min_notional` → `MinNotional`.
//! 7. **Max order** quantity (`MaxOrderQty`) and notional (`MaxOrderNotional`).
//! 8. **Price collar.** Reference = the intent's last trade, else the mid of its touch (none:
//!    `NoPrice`). A limit, or for a market order the touch price it would take, further than
//!    `collar × reference` from it → `PriceCollar`.
//! 9. **Max position**: position plus every open order on the order's side plus the order, in
//!    absolute value, above `max_position` → `MaxPosition`.
//! 10. **Gross exposure**: Σ over instruments of `max(|pos + open buys|, |pos − open sells|) ×
//!     mark` with this order added, above `max_gross_notional` → `GrossExposure`. The mark is the
//!     last trade (else mid) of the latest well-formed intent, or the last fill price.
//!     Checks 9 and 10 never refuse an order that does not make its measure larger, so a
//!     lowered limit or a price move can always be worked down.
//! 11. **Per-trade risk**: `opening qty × stop ≤ max_trade_risk × balance` (risk rounded up,
//!     allowance down, to 10⁻⁸), where opening qty is the part of the order beyond its reducing
//!     part (a reduction carries no new risk), stop is `intent.stop` or `manual_stop × price`
//!     (rounded up) when zero, and balance is `starting_balance + realized − fees` from fills.
//!     Alpha targets are **capped** to the largest whole-lot quantity within the limit before
//!     checks 5–10 see them; they are refused (`TradeRisk`) only if the cap is zero, and other
//!     intents are refused instead of capped.
//! 12. **Self-trade**: a buy at or above one of our resting sell limits on the instrument, or a
//!     sell at or below a resting buy, → `SelfTrade`. A market order is priced at the touch it
//!     would take, so it crosses any resting opposite order at or inside the touch.
//! 13. **Duplicate client id**: a non-zero `client_id` equal to one of the last
//!     [`CLIENT_IDS`] approved client ids → `DuplicateClientId`. Refused intents do not use
//!     up their id, so a caller can retry.
//! 14. **Rate limit**: `max_orders_per_sec` orders already sent to the intent's venue within
//!     one second before `intent.ts_ns` (a sliding window over a ring of the last
//!     `max_orders_per_sec` send times; trims count) → `RateLimit`.
//!
//! After the checks, an approval needs a free slot in the open-order table ([`OPEN_ORDERS`]
//! slots, addressed by `order id mod OPEN_ORDERS`; an id whose slot is taken by an older
//! resting order is skipped, so ids stay increasing but may have gaps) and room in the open
//! quantity; otherwise `Overflow`. Every check is O(1) except the gross sum, O(instruments), and a
//! reject-ratio or feed transition, which visits the venue's instruments; a report that takes
//! away the best resting price of a side walks that instrument's open orders (an intrusive list)
//! to find the next. Nothing allocates after [`Risk::new`].
//!
//! # Trading states
//!
//! Each instrument's own state is the strictest of its operator layer ([`RiskCommand::SetState`]),
//! REDUCING while its venue's feed is stale ([`Risk::on_feed`]), and REDUCING while its venue's
//! reject ratio is high. The system state is its operator layer, or HALTED while the kill
//! switch is engaged. The state in force for an order is the stricter of system and instrument.
//! Every change of a state (not a no-op) queues a [`Transition`] with the cause that made it:
//! `Kill` (kill switch), `Operator` (`Resume`, which lifts the kill switch and sets the system
//! ACTIVE), whatever reason a `SetState` names (operator, drawdown, restored), `FeedStale` /
//! `FeedLive`, `RejectRatio` / `RejectRatioOk`. Because the causes are layered, a feed coming back
//! only returns an instrument to ACTIVE if nothing else holds it. Only `Resume` lifts the kill
//! switch: `SetState(System, ACTIVE)` while killed leaves the system HALTED. Feeds are assumed
//! live until told otherwise. An order counts toward the rate limit and reject window of the
//! intent's venue (where it is sent); an instrument's feed and reject-ratio state follow its
//! configured [`InstrumentRisk::venue`]. The queue holds [`TRANSITIONS`] (or four per instrument, if more); when full
//! the oldest is overwritten and counted ([`Risk::transitions_dropped`]).
//!
//! The reject ratio of a venue is taken over its last `reject_window` orders (approved or
//! trimmed): rejects / `reject_window` > `reject_ratio`. Orders not yet sent count as clean, so a
//! venue's first orders cannot trip it on one reject. Every [`ExecReport::Reject`] counts but the
//! engine's own ([`RejectReason::is_engines_own`]: kill switch, no route, overflow). Only
//! new orders move the window, and in REDUCING only reductions are sent, so an operator's
//! `Resume` or `SetState(System, ACTIVE, Operator)` also clears every venue's window (the
//! operator has looked); otherwise a venue with nothing left to reduce would stay REDUCING.
//!
//! # Commands
//!
//! [`RiskCommand::Trim`] emits, per instrument in scope with a position, one reduce-only market
//! order of `fraction × |position|` (rounded down to lots, at most the reducing capacity) of
//! [`Origin::Risk`]; trims bypass the checks (they only reduce) and are emitted in any state.
//! [`RiskCommand::StageLimits`] (one instrument's limits) and [`RiskCommand::StageGlobal`] (the
//! limits that apply to every instrument: per-trade risk, collar, gross exposure, rate limit,
//! sizing, Kelly damping, manual stop, reject ratio and window) write a staging copy;
//! [`RiskCommand::CommitLimits`] puts every staged limit in force at once, between two intents.
//! The rate-limit ring and the reject window are allocated at [`Risk::new`] for the largest
//! value config accepts ([`MAX_ORDERS_PER_SEC_CAP`], [`REJECT_WINDOW_CAP`]; pages never written
//! are never touched), so a new rate or window applies without allocating: the ring keeps the
//! send times of that many orders and the window the outcome of that many, whatever the value
//! in force. A new window is recounted over the orders it now covers (O(window), once per
//! commit) and a new ratio or window may move a venue in or out of REDUCING at the commit.
//!
//! # Usage
//!
//! [`Risk::rate_used`] (orders sent to a venue within the second before Risk's latest time,
//! among the last `max_orders_per_sec`), [`Risk::venue_rejects`] and [`Risk::feed_live`] give
//! each venue's usage of its limits for the board (`GET /risk/state`).

use fixed::types::I64F64;

use crate::board::VenueRiskView;
use crate::ids::{InstrumentId, Venue};
use crate::num::{Money, ONE, Price, Qty, SignedQty, notional};
use crate::pnl::Book;
use crate::records::{
    ExecReport, Factor, Order, OrderId, OrderIntent, OrderKind, Origin, RejectReason, Scope, Side, Sizing, Stamp, Tif,
    Touch, TradingState, Transition, TransitionReason,
};

/// Pseudo-trades the signal's confidence stands for in the Kelly win-rate estimate.
pub const KELLY_PRIOR_TRADES: u32 = 10;

/// Capacity of the open-order table: at most this many orders open at once.
pub const OPEN_ORDERS: usize = 4096;
/// How many recent client order ids are remembered for the duplicate check.
pub const CLIENT_IDS: usize = 4096;
/// Minimum capacity of the transition queue.
pub const TRANSITIONS: usize = 256;
/// Largest quantity or price (raw) the gate considers: 10⁹ units. Anything above is bad input.
const ABSURD: i64 = 1_000_000_000 * ONE;
/// One second in nanoseconds: the rate limit's window.
const SECOND_NS: u64 = 1_000_000_000;
/// Send times each venue's rate-limit ring holds: the largest `risk.max_orders_per_sec` config
/// accepts (a larger starting value enlarges the ring), so a reload can raise the limit live.
pub const MAX_ORDERS_PER_SEC_CAP: u32 = 100_000;
/// Order outcomes each venue's reject window holds: the largest `risk.reject_window` config
/// accepts (a larger starting value enlarges it), so a reload can widen the window live.
pub const REJECT_WINDOW_CAP: u32 = 100_000;

/// Limits of one instrument (`symbols[*]` in config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single order.
    pub max_order_qty: Qty,
    /// Largest single order's notional in quote currency.
    pub max_order_notional: Money,
    /// Largest absolute position, counting open orders that would add to it.
    pub max_position: Qty,
    /// Quantity increment (`symbols[*].lot_size`); zero disables the lot check and rounding.
    pub lot_size: Qty,
    /// Price increment (`symbols[*].tick_size`); zero disables the tick check.
    pub tick_size: Price,
    /// Smallest order value in quote currency (`symbols[*].min_notional`).
    pub min_notional: Money,
}

/// One instrument as Risk sees it: where it trades and its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrumentRisk {
    /// The venue whose feed and reject ratio govern the instrument's trading state.
    pub venue: Venue,
    /// Its limits.
    pub limits: Limits,
}

/// How Alpha's targets are sized (`risk.sizing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizingMode {
    /// `target × kelly_clip`.
    Fixed,
    /// `target × damped Kelly fraction × kelly_clip`.
    Kelly,
}

/// The limits that apply to every instrument and can change while running
/// ([`RiskCommand::StageGlobal`]); the same fields as in [`RiskParams`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalLimits {
    /// Largest per-trade risk as a fraction of the trading balance.
    pub max_trade_risk: Factor,
    /// Price collar as a fraction of the reference price.
    pub collar: Factor,
    /// Largest gross exposure over all instruments.
    pub max_gross_notional: Money,
    /// Orders per venue in any sliding one-second window (at most the ring's capacity; more
    /// is taken as the capacity).
    pub max_orders_per_sec: u32,
    /// Fixed or Kelly sizing of Alpha targets.
    pub sizing: SizingMode,
    /// Multiple of the Kelly fraction traded.
    pub kelly_damping: Factor,
    /// Stop distance as a fraction of price for intents whose `stop` is zero.
    pub manual_stop: Factor,
    /// Venue reject ratio above which its instruments go REDUCING (fraction).
    pub reject_ratio: Factor,
    /// Orders per venue the reject ratio is taken over (at most the window's capacity; more is
    /// taken as the capacity); 0 disables it.
    pub reject_window: u32,
}

/// Everything Risk needs from validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskParams {
    /// Per instrument, indexed by [`InstrumentId`].
    pub instruments: Vec<InstrumentRisk>,
    /// Largest per-trade risk as a fraction of the trading balance (`max_trade_risk_pct / 100`).
    pub max_trade_risk: Factor,
    /// Price collar as a fraction of the reference price (`price_collar_pct / 100`).
    pub collar: Factor,
    /// Largest gross exposure over all instruments.
    pub max_gross_notional: Money,
    /// Orders per venue in any sliding one-second window.
    pub max_orders_per_sec: u32,
    /// Fixed or Kelly sizing of Alpha targets.
    pub sizing: SizingMode,
    /// Multiple of the Kelly fraction traded (0.5 = half Kelly).
    pub kelly_damping: Factor,
    /// Stop distance as a fraction of price for intents whose `stop` is zero.
    pub manual_stop: Factor,
    /// Venue reject ratio above which its instruments go REDUCING (fraction).
    pub reject_ratio: Factor,
    /// Number of most recent orders per venue the reject ratio is taken over; 0 disables it.
    pub reject_window: u32,
    /// Trading balance before any fill.
    pub starting_balance: Money,
    /// Start killed (system HALTED).
    pub kill: bool,
}

impl RiskParams {
    /// The limits among these that apply to every instrument.
    pub fn global(&self) -> GlobalLimits {
        GlobalLimits {
            max_trade_risk: self.max_trade_risk,
            collar: self.collar,
            max_gross_notional: self.max_gross_notional,
            max_orders_per_sec: self.max_orders_per_sec,
            sizing: self.sizing,
            kelly_damping: self.kelly_damping,
            manual_stop: self.manual_stop,
            reject_ratio: self.reject_ratio,
            reject_window: self.reject_window,
        }
    }

    fn set_global(&mut self, g: GlobalLimits) {
        self.max_trade_risk = g.max_trade_risk;
        self.collar = g.collar;
        self.max_gross_notional = g.max_gross_notional;
        self.max_orders_per_sec = g.max_orders_per_sec;
        self.sizing = g.sizing;
        self.kelly_damping = g.kelly_damping;
        self.manual_stop = g.manual_stop;
        self.reject_ratio = g.reject_ratio;
        self.reject_window = g.reject_window;
    }
}

/// A command from the cold side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskCommand {
    /// Engage the kill switch: system HALTED, refuse every new order but trims.
    Kill,
    /// Lift the kill switch and set the system ACTIVE.
    Resume,
    /// Scale Alpha's targets by this fraction, in (0, 1]; any other value is ignored (the cold
    /// side validates it first).
    KellyClip(Factor),
    /// Set a trading state (operator, drawdown, restored at start).
    SetState {
        /// System or one instrument.
        scope: Scope,
        /// The new state.
        state: TradingState,
        /// Why.
        reason: TransitionReason,
    },
    /// Reduce positions by `fraction`, in (0, 1], with reduce-only market orders; any other
    /// fraction is ignored.
    Trim {
        /// System (every instrument) or one instrument.
        scope: Scope,
        /// Fraction of each position to close.
        fraction: Factor,
    },
    /// Stage new limits for one instrument; they take effect at the next
    /// [`RiskCommand::CommitLimits`].
    StageLimits {
        /// Which instrument.
        instrument: InstrumentId,
        /// Its new limits.
        limits: Limits,
    },
    /// Stage new limits for every instrument (per-trade risk, collar, gross exposure, rate,
    /// sizing, reject ratio...); they take effect at the next [`RiskCommand::CommitLimits`].
    StageGlobal(GlobalLimits),
    /// Put every staged limit, per instrument and global, in force at once, between two orders.
    CommitLimits,
    /// Profit the Portfolio has set aside (everything that went into its lock-box, paid out or
    /// not): it is no longer trading capital, so per-trade risk is sized against
    /// `balance − set_aside`. Negative values are ignored.
    SetAside(Money),
}

/// What Risk decided about an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send this order.
    Approved(Order),
    /// Do not send; why.
    Refused(Refusal),
    /// The target is already met by position and open orders: nothing to do.
    Nothing,
}

/// A refused intent and the reason, for counters and the cold side's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The intent as received.
    pub intent: OrderIntent,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Exposure of one instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Filled position.
    pub position: SignedQty,
    /// Open buy quantity.
    pub open_buy: Qty,
    /// Open sell quantity.
    pub open_sell: Qty,
}

impl Exposure {
    /// Position plus open buys minus open sells: where we end up if everything open fills.
    fn net(&self) -> i128 {
        i128::from(self.position.raw()) + i128::from(self.open_buy.raw()) - i128::from(self.open_sell.raw())
    }

    /// Position if every open order on `side` fills.
    fn worst(&self, side: Side) -> i128 {
        let pos = i128::from(self.position.raw());
        match side {
            Side::Buy => pos + i128::from(self.open_buy.raw()),
            Side::Sell => pos - i128::from(self.open_sell.raw()),
        }
    }

    /// How much an order on `side` can trade and still only reduce: up to flat, counting every
    /// open order on that side as filled.
    fn reducible(&self, side: Side) -> i128 {
        let pos = i128::from(self.position.raw());
        match side {
            Side::Buy => (-pos - i128::from(self.open_buy.raw())).max(0),
            Side::Sell => (pos - i128::from(self.open_sell.raw())).max(0),
        }
    }

    /// The larger of the two worst cases, in absolute raw units: what gross exposure counts.
    fn gross_qty(&self) -> i128 {
        self.worst(Side::Buy).abs().max(self.worst(Side::Sell).abs())
    }
}

/// Closed trades of one instrument, for Kelly sizing and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradeStats {
    /// Closing fills with a positive realized PnL.
    pub wins: u64,
    /// Closing fills with a negative realized PnL.
    pub losses: u64,
    /// Sum of the wins, raw 10⁻⁸ quote units.
    pub win_sum: i128,
    /// Sum of the losses as a positive amount, raw 10⁻⁸ quote units.
    pub loss_sum: i128,
}

/// Per-instrument state besides exposure and limits.
#[derive(Clone, Copy, Debug)]
struct Inst {
    venue: Venue,
    /// Operator layer (SetState).
    op_state: TradingState,
    /// The instrument's own state as last published in a transition.
    state: TradingState,
    /// Latest known market: non-zero fields of well-formed intents' touches; for trims.
    touch: Touch,
    /// Latest reference price (intent last/mid, or fill price); prices gross exposure.
    mark: Price,
    book: Book,
    stats: TradeStats,
    /// Highest resting buy limit and lowest resting sell limit, for self-trade prevention.
    best_buy: Option<Price>,
    best_sell: Option<Price>,
    /// First open-order slot of this instrument (intrusive list), or [`NONE`].
    head: u32,
}

/// No slot.
const NONE: u32 = u32::MAX;

/// One open order.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Engine order id; 0 marks a free slot.
    id: u64,
    instrument: u16,
    venue: Venue,
    side: Side,
    limit: Option<Price>,
    remaining: Qty,
    /// Position of the order in its venue's reject window (1-based); 0 when not counted.
    reject_seq: u64,
    prev: u32,
    next: u32,
}

const FREE: Slot = Slot {
    id: 0,
    instrument: 0,
    venue: Venue::Binance,
    side: Side::Buy,
    limit: None,
    remaining: Qty::ZERO,
    reject_seq: 0,
    prev: NONE,
    next: NONE,
};

/// Rate-limit ring and reject-ratio window of one venue.
#[derive(Clone, Debug)]
struct VenueState {
    /// Send times of the last orders (ring of [`MAX_ORDERS_PER_SEC_CAP`] or more; the limit
    /// looks at the last `max_orders_per_sec` of them).
    sent_ns: Vec<u64>,
    /// Index of the oldest send time held.
    sent_head: usize,
    sent_len: usize,
    /// Outcome per order of the last [`REJECT_WINDOW_CAP`] or more (ring indexed by
    /// `(seq − 1) % capacity`); the ratio counts the last `reject_window` of them.
    rejected: Vec<bool>,
    /// Orders counted so far (the last one's seq).
    orders: u64,
    /// Rejects among the last `reject_window` orders (the window in force).
    rejects: u32,
    reject_high: bool,
    feed_live: bool,
}

/// Fixed-capacity set of recent client ids with FIFO eviction: a ring for the order and an
/// open-addressing table (twice the ring, linear probing, backward-shift deletion) for lookup.
#[derive(Clone, Debug)]
struct RecentIds {
    ring: Vec<u64>,
    head: usize,
    len: usize,
    table: Vec<u64>,
    shift: u32,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        let size = (cap * 2).next_power_of_two();
        Self {
            ring: vec![0; cap],
            head: 0,
            len: 0,
            table: vec![0; size],
            shift: 64 - size.trailing_zeros(),
        }
    }

    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn find(&self, id: u64) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        loop {
            match self.table[i] {
                0 => return None,
                x if x == id => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn contains(&self, id: u64) -> bool {
        id != 0 && self.find(id).is_some()
    }

    fn remove(&mut self, id: u64) {
        let Some(mut hole) = self.find(id) else { return };
        let mask = self.table.len() - 1;
        self.table[hole] = 0;
        let mut i = (hole + 1) & mask;
        while self.table[i] != 0 {
            let home = self.home(self.table[i]);
            // Move the entry back into the hole unless its home lies cyclically in (hole, i].
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.table[hole] = self.table[i];
                self.table[i] = 0;
                hole = i;
            }
            i = (i + 1) & mask;
        }
    }

    fn insert(&mut self, id: u64) {
        if id == 0 || self.ring.is_empty() || self.contains(id) {
            return;
        }
        let cap = self.ring.len();
        if self.len == cap {
            let old = self.ring[self.head];
            self.remove(old);
            self.ring[self.head] = id;
            self.head = (self.head + 1) % cap;
        } else {
            self.ring[(self.head + self.len) % cap] = id;
            self.len += 1;
        }
        let mask = self.table.len() - 1;
        let mut i = self.home(id);
        while self.table[i] != 0 {
            i = (i + 1) & mask;
        }
        self.table[i] = id;
    }
}

/// The Risk stage's state.
#[derive(Debug)]
pub struct Risk {
    params: RiskParams,
    limits: Vec<Limits>,
    staged: Vec<Limits>,
    staged_global: GlobalLimits,
    exposure: Vec<Exposure>,
    insts: Vec<Inst>,
    venues: Vec<VenueState>,
    slots: Vec<Slot>,
    open_count: usize,
    client_ids: RecentIds,
    transitions: Vec<Transition>,
    tr_head: usize,
    tr_len: usize,
    tr_dropped: u64,
    system_state: TradingState,
    kill: bool,
    kelly_clip: Factor,
    /// Starting balance + realized − fees, raw.
    balance: i128,
    /// Profit set aside in the Portfolio's lock-box, raw ([`RiskCommand::SetAside`]).
    set_aside: i128,
    next_order_id: u64,
    /// Latest time seen (intents, fills, commands, feed events): stamps transitions that a
    /// report without a time causes.
    now_ns: u64,
}

impl Risk {
    /// Builds the gate; every table is allocated here and never again.
    pub fn new(params: RiskParams) -> Self {
        let limits: Vec<Limits> = params.instruments.iter().map(|i| i.limits).collect();
        let n = limits.len();
        let insts = params
            .instruments
            .iter()
            .map(|i| Inst {
                venue: i.venue,
                op_state: TradingState::Active,
                state: TradingState::Active,
                touch: Touch::default(),
                mark: Price::ZERO,
                book: Book::default(),
                stats: TradeStats::default(),
                best_buy: None,
                best_sell: None,
                head: NONE,
            })
            .collect();
        // Zeroed allocations, one per venue (a clone would copy, and so touch, every page):
        // the pages of the rings are only touched as orders fill them.
        let venue = || VenueState {
            sent_ns: vec![0; params.max_orders_per_sec.max(MAX_ORDERS_PER_SEC_CAP) as usize],
            sent_head: 0,
            sent_len: 0,
            rejected: vec![false; params.reject_window.max(REJECT_WINDOW_CAP) as usize],
            orders: 0,
            rejects: 0,
            reject_high: false,
            feed_live: true,
        };
        let tr_cap = TRANSITIONS.max(4 * n);
        let mut risk = Self {
            staged: limits.clone(),
            staged_global: params.global(),
            limits,
            exposure: vec![Exposure::default(); n],
            insts,
            venues: (0..Venue::COUNT).map(|_| venue()).collect(),
            slots: vec![FREE; OPEN_ORDERS],
            open_count: 0,
            client_ids: RecentIds::new(CLIENT_IDS),
            transitions: vec![
                Transition {
                    scope: Scope::System,
                    from: TradingState::Active,
                    to: TradingState::Active,
                    reason: TransitionReason::Operator,
                    ts_ns: 0,
                };
                tr_cap
            ],
            tr_head: 0,
            tr_len: 0,
            tr_dropped: 0,
            system_state: TradingState::Active,
            kill: false,
            kelly_clip: Factor::ONE,
            balance: i128::from(params.starting_balance.raw()),
            set_aside: 0,
            next_order_id: 1,
            now_ns: 0,
            params,
        };
        if risk.params.kill {
            risk.set_system(|r| r.kill = true, TransitionReason::Kill);
        }
        risk
    }

    /// Decides about one intent (see the module doc for the checks and their order).
    pub fn check(&mut self, intent: &OrderIntent) -> Decision {
        self.now_ns = self.now_ns.max(intent.ts_ns);
        match self.evaluate(intent) {
            Ok(Some(order)) => Decision::Approved(order),
            Ok(None) => Decision::Nothing,
            Err(reason) => Decision::Refused(Refusal {
                intent: *intent,
                reason,
            }),
        }
    }

    fn evaluate(&mut self, intent: &OrderIntent) -> Result<Option<Order>, RejectReason> {
        use RejectReason as R;
        // 1. Bad input.
        let i = intent.instrument.index();
        if i >= self.limits.len() {
            return Err(R::NotListed);
        }
        let t = intent.touch;
        if [t.bid, t.ask, t.last, intent.stop].iter().any(|p| p.raw() > ABSURD)
            || intent.limit.is_some_and(|l| l.is_zero() || l.raw() > ABSURD)
        {
            return Err(R::BadInput);
        }
        self.observe(i, &t);
        let limits = self.limits[i];
        let exp = self.exposure[i];
        let lot = i128::from(limits.lot_size.raw());
        let alpha_target = intent.origin == Origin::Alpha && matches!(intent.sizing, Sizing::Target(_));
        let (side, mut qty) = match intent.sizing {
            Sizing::Delta(side, q) => {
                if q.is_zero() {
                    return Err(R::ZeroQty);
                }
                (side, i128::from(q.raw()))
            }
            Sizing::Target(target) => {
                if target.raw().unsigned_abs() > ABSURD as u64 {
                    return Err(R::BadInput);
                }
                let mut delta = match intent.origin {
                    Origin::Alpha => {
                        let fraction = self.fraction(i, intent.score);
                        scale_to_lot(i128::from(target.raw()), fraction, lot) - exp.net()
                    }
                    Origin::Manual | Origin::Risk => i128::from(target.raw()) - exp.net(),
                };
                if alpha_target {
                    delta = floor_lot(delta, lot);
                }
                if delta == 0 {
                    return Ok(None);
                }
                (if delta > 0 { Side::Buy } else { Side::Sell }, delta.abs())
            }
        };
        if qty > i128::from(ABSURD) {
            return Err(R::BadInput);
        }
        let price = intent.limit.or_else(|| t.taker_price(side)).ok_or(R::NoPrice)?;

        // 2. HALTED.
        let inst = self.insts[i];
        let venue_state = &self.venues[inst.venue.index()];
        let strict = self
            .system_effective()
            .max(inst.op_state)
            .max(if venue_state.reject_high {
                TradingState::Reducing
            } else {
                TradingState::Active
            });
        if strict == TradingState::Halted && !(intent.origin == Origin::Risk && intent.reduce_only) {
            return Err(if self.kill { R::KillSwitch } else { R::Halted });
        }

        // 3–4. REDUCING / reduce-only, then a stale feed: only the reducing part passes.
        let reducible = exp.reducible(side);
        let restrict = if intent.reduce_only || strict >= TradingState::Reducing {
            Some(R::Reducing)
        } else if !venue_state.feed_live {
            Some(R::FeedNotLive)
        } else {
            None
        };
        if let Some(reason) = restrict
            && qty > reducible
        {
            if !matches!(intent.sizing, Sizing::Target(_)) {
                return Err(reason);
            }
            qty = floor_lot(reducible, lot);
            if qty == 0 {
                return Err(reason);
            }
        }

        // 11 (sizing part). Per-trade risk: Alpha targets are capped before the other checks.
        let stop = if intent.stop.is_zero() {
            mul_factor_ceil(i128::from(price.raw()), self.params.manual_stop)
        } else {
            i128::from(intent.stop.raw())
        };
        let allowed = mul_factor_floor((self.balance - self.set_aside).max(0), self.params.max_trade_risk);
        let mut trade_risk_refused = trade_risk(qty, reducible, stop) > allowed;
        if trade_risk_refused && alpha_target {
            // stop > 0 here, or the risk would be zero.
            let max_open = floor_lot(allowed * i128::from(ONE) / stop, lot);
            let capped = floor_lot(qty.min(reducible) + max_open, lot).min(qty);
            if capped > 0 {
                qty = capped;
                trade_risk_refused = false;
            }
        }
        let qty_raw = i64::try_from(qty).map_err(|_| R::Overflow)?;
        let order_qty = Qty::from_raw(qty_raw).ok_or(R::BadInput)?;

        // 5. Tick and lot.
        if let Some(l) = intent.limit
            && !limits.tick_size.is_zero()
            && l.raw() % limits.tick_size.raw() != 0
        {
            return Err(R::OffTick);
        }
        if lot > 0 && qty % lot != 0 {
            return Err(R::OffLot);
        }

        // 6–7. Min notional, max order quantity and notional.
        let value = notional(price, order_qty).ok_or(R::Overflow)?;
        if value < limits.min_notional {
            return Err(R::MinNotional);
        }
        if order_qty > limits.max_order_qty {
            return Err(R::MaxOrderQty);
        }
        if value > limits.max_order_notional {
            return Err(R::MaxOrderNotional);
        }

        // 8. Price collar.
        let reference = if !t.last.is_zero() {
            i128::from(t.last.raw())
        } else if !t.bid.is_zero() && !t.ask.is_zero() {
            (i128::from(t.bid.raw()) + i128::from(t.ask.raw())) / 2
        } else {
            return Err(R::NoPrice);
        };
        let distance = (i128::from(price.raw()) - reference).abs();
        if distance << 32 > i128::from(self.params.collar.to_bits()) * reference {
            return Err(R::PriceCollar);
        }

        // 9. Max position, on the order's side, counting every open order on it.
        let signed = if side == Side::Buy { qty } else { -qty };
        let worst_old = exp.worst(side);
        let worst_new = worst_old + signed;
        if worst_new.abs() > i128::from(limits.max_position.raw()) && worst_new.abs() > worst_old.abs() {
            return Err(R::MaxPosition);
        }

        // 10. Gross exposure at the marks, with this order added.
        let mut after = exp;
        let open = match side {
            Side::Buy => &mut after.open_buy,
            Side::Sell => &mut after.open_sell,
        };
        *open = open.checked_add(order_qty).ok_or(R::Overflow)?;
        let others = self.gross_raw() - value_at(exp.gross_qty(), inst.mark);
        let mark = if inst.mark.is_zero() { price } else { inst.mark };
        let old_contrib = value_at(exp.gross_qty(), mark);
        let new_contrib = value_at(after.gross_qty(), mark);
        let gross = others + new_contrib;
        if gross > i128::from(self.params.max_gross_notional.raw()) && new_contrib > old_contrib {
            return Err(R::GrossExposure);
        }

        // 11. Per-trade risk (refusal).
        if trade_risk_refused {
            return Err(R::TradeRisk);
        }

        // 12. Self-trade prevention against our resting limits.
        let crosses = match side {
            Side::Buy => inst.best_sell.is_some_and(|s| price >= s),
            Side::Sell => inst.best_buy.is_some_and(|b| price <= b),
        };
        if crosses {
            return Err(R::SelfTrade);
        }

        // 13. Duplicate client id.
        if self.client_ids.contains(intent.client_id) {
            return Err(R::DuplicateClientId);
        }

        // 14. Rate limit per venue.
        if !self.rate_allows(intent.venue, intent.ts_ns) {
            return Err(R::RateLimit);
        }

        // Approved: book it.
        if self.open_count == OPEN_ORDERS {
            return Err(R::Overflow);
        }
        let kind = intent.limit.map_or(OrderKind::Market, OrderKind::Limit);
        self.exposure[i] = after;
        self.client_ids.insert(intent.client_id);
        let order = Order {
            id: OrderId(0),
            instrument: intent.instrument,
            venue: intent.venue,
            side,
            qty: order_qty,
            kind,
            tif: intent.tif,
            pin_venue: intent.pin_venue,
            touch: intent.touch,
            origin: intent.origin,
            client_id: intent.client_id,
            mix: intent.mix,
            reduce_only: intent.reduce_only,
            ts_ns: intent.ts_ns,
            stamp: intent.stamp,
        };
        Ok(Some(self.book_order(order)))
    }

    /// Assigns the id and records a new order everywhere but in the exposure: open-order table,
    /// rate ring, reject window.
    fn book_order(&mut self, mut order: Order) -> Order {
        let recorded = self.open_count < OPEN_ORDERS;
        if recorded {
            while self.slots[slot_of(self.next_order_id)].id != 0 {
                self.next_order_id += 1;
            }
        }
        order.id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        self.rate_push(order.venue, order.ts_ns);
        let reject_seq = self.reject_send(order.venue);
        if recorded {
            let limit = match order.kind {
                OrderKind::Limit(p) => Some(p),
                OrderKind::Market => None,
            };
            self.open_insert(Slot {
                id: order.id.0,
                instrument: order.instrument.0,
                venue: order.venue,
                side: order.side,
                limit,
                remaining: order.qty,
                reject_seq,
                prev: NONE,
                next: NONE,
            });
        }
        order
    }

    /// Folds an Execution report into positions, open orders, PnL and reject ratios.
    pub fn on_report(&mut self, report: &ExecReport) {
        match *report {
            // Still open, wherever the router sent it. The reject window stays with the venue
            // the order was approved for: Execution's router demotes a rejecting venue and
            // fails over first; Risk's ratio is the backstop for when that does not help.
            ExecReport::Routed { .. }
            | ExecReport::Ack { .. }
            | ExecReport::Unknown { .. }
            | ExecReport::CancelRejected { .. } => {}
            ExecReport::Fill(fill) => {
                self.now_ns = self.now_ns.max(fill.ts_ns);
                let i = fill.instrument.index();
                let (Some(exp), Some(inst)) = (self.exposure.get_mut(i), self.insts.get_mut(i)) else {
                    return;
                };
                let open = match fill.side {
                    Side::Buy => &mut exp.open_buy,
                    Side::Sell => &mut exp.open_sell,
                };
                *open = open.checked_sub(fill.qty).unwrap_or(Qty::ZERO);
                // The position follows every fill, whatever the PnL book can compute: exposure
                // must never lag the venue.
                let signed = fill.qty.signed(fill.side == Side::Buy);
                exp.position = exp.position.checked_add(signed).unwrap_or(exp.position);
                let before = inst.book;
                if inst.book.apply(&fill).is_some() {
                    let realized = i128::from(inst.book.realized.raw()) - i128::from(before.realized.raw());
                    let fees = i128::from(inst.book.fees.raw()) - i128::from(before.fees.raw());
                    self.balance += realized - fees;
                    let reducing =
                        !before.position.is_zero() && (before.position.raw() > 0) != (fill.side == Side::Buy);
                    if reducing && realized > 0 {
                        inst.stats.wins += 1;
                        inst.stats.win_sum += realized;
                    } else if reducing && realized < 0 {
                        inst.stats.losses += 1;
                        inst.stats.loss_sum -= realized;
                    }
                }
                if !fill.price.is_zero() && fill.price.raw() <= ABSURD {
                    inst.mark = fill.price;
                }
                let s = slot_of(fill.order_id.0);
                if self.slots[s].id == fill.order_id.0 && fill.order_id.0 != 0 {
                    let remaining = self.slots[s].remaining.checked_sub(fill.qty).unwrap_or(Qty::ZERO);
                    self.slots[s].remaining = remaining;
                    if remaining.is_zero() || fill.last {
                        self.open_remove(s);
                    }
                }
            }
            ExecReport::Reject {
                order_id,
                instrument,
                side,
                qty,
                reason,
            } => {
                self.release(instrument, side, qty);
                let s = slot_of(order_id.0);
                if order_id.0 != 0 && self.slots[s].id == order_id.0 {
                    let slot = self.slots[s];
                    self.open_remove(s);
                    // Orders the engine stopped itself say nothing about the venue.
                    if !reason.is_engines_own() {
                        self.reject_mark(slot.venue, slot.reject_seq);
                    }
                }
            }
            ExecReport::Cancelled {
                order_id,
                instrument,
                side,
                qty,
            } => {
                self.release(instrument, side, qty);
                let s = slot_of(order_id.0);
                if order_id.0 != 0 && self.slots[s].id == order_id.0 {
                    self.open_remove(s);
                }
            }
        }
    }

    /// Applies an operator command; a trim emits its reduce-only orders through `out` (at most
    /// [`Risk::max_trim_orders`]).
    pub fn on_command(&mut self, cmd: RiskCommand, now_ns: u64, out: &mut impl FnMut(Order)) {
        self.now_ns = self.now_ns.max(now_ns);
        match cmd {
            RiskCommand::Kill => self.set_system(|r| r.kill = true, TransitionReason::Kill),
            RiskCommand::Resume => {
                self.set_system(
                    |r| {
                        r.kill = false;
                        r.system_state = TradingState::Active;
                    },
                    TransitionReason::Operator,
                );
                self.clear_reject_windows();
            }
            RiskCommand::KellyClip(clip) => {
                if clip > Factor::ZERO && clip <= Factor::ONE {
                    self.kelly_clip = clip;
                }
            }
            RiskCommand::SetAside(amount) => {
                if amount.raw() >= 0 {
                    self.set_aside = i128::from(amount.raw());
                }
            }
            RiskCommand::SetState {
                scope: Scope::System,
                state,
                reason,
            } => {
                self.set_system(|r| r.system_state = state, reason);
                if state == TradingState::Active && reason == TransitionReason::Operator {
                    self.clear_reject_windows();
                }
            }
            RiskCommand::SetState {
                scope: Scope::Instrument(id),
                state,
                reason,
            } => {
                if let Some(inst) = self.insts.get_mut(id.index()) {
                    inst.op_state = state;
                    self.refresh(id.index(), reason);
                }
            }
            RiskCommand::Trim { scope, fraction } => {
                if fraction <= Factor::ZERO || fraction > Factor::ONE {
                    return;
                }
                let range = match scope {
                    Scope::System => 0..self.insts.len(),
                    Scope::Instrument(id) if id.index() < self.insts.len() => id.index()..id.index() + 1,
                    Scope::Instrument(_) => 0..0,
                };
                for i in range {
                    if let Some(order) = self.trim_one(i, fraction, now_ns) {
                        out(order);
                    }
                }
            }
            RiskCommand::StageLimits { instrument, limits } => {
                if let Some(slot) = self.staged.get_mut(instrument.index()) {
                    *slot = limits;
                }
            }
            RiskCommand::StageGlobal(global) => self.staged_global = global,
            RiskCommand::CommitLimits => {
                self.limits.copy_from_slice(&self.staged);
                self.commit_global();
            }
        }
    }

    /// One trim order for instrument `i`, if it has anything to reduce.
    fn trim_one(&mut self, i: usize, fraction: Factor, now_ns: u64) -> Option<Order> {
        let exp = self.exposure[i];
        let pos = i128::from(exp.position.raw());
        let side = match pos {
            0 => return None,
            p if p > 0 => Side::Sell,
            _ => Side::Buy,
        };
        let lot = i128::from(self.limits[i].lot_size.raw());
        let want = floor_lot(mul_factor_floor(pos.abs(), fraction), lot);
        let qty = want.min(floor_lot(exp.reducible(side), lot));
        let qty = Qty::from_raw(i64::try_from(qty).ok()?).filter(|q| !q.is_zero())?;
        let open = match side {
            Side::Buy => &mut self.exposure[i].open_buy,
            Side::Sell => &mut self.exposure[i].open_sell,
        };
        *open = open.checked_add(qty)?;
        let inst = self.insts[i];
        let touch = Touch {
            last: if inst.touch.last.is_zero() {
                inst.mark
            } else {
                inst.touch.last
            },
            ..inst.touch
        };
        Some(self.book_order(Order {
            id: OrderId(0),
            instrument: InstrumentId(i as u16),
            venue: inst.venue,
            side,
            qty,
            kind: OrderKind::Market,
            // Trims take liquidity at once, on whichever venue the router finds best.
            tif: Tif::Ioc,
            pin_venue: false,
            touch,
            origin: Origin::Risk,
            client_id: 0,
            mix: [Factor::ZERO; crate::records::FAMILIES],
            reduce_only: true,
            ts_ns: now_ns,
            stamp: Stamp(0),
        }))
    }

    /// A venue's feed went live or stale: its instruments go REDUCING (`FeedStale`) and come
    /// back when it is live again and nothing else holds them (`FeedLive`).
    pub fn on_feed(&mut self, venue: Venue, live: bool, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let v = &mut self.venues[venue.index()];
        if v.feed_live == live {
            return;
        }
        v.feed_live = live;
        let reason = if live {
            TransitionReason::FeedLive
        } else {
            TransitionReason::FeedStale
        };
        self.refresh_venue(venue, reason);
    }

    /// The oldest pending trading-state transition.
    pub fn pop_transition(&mut self) -> Option<Transition> {
        if self.tr_len == 0 {
            return None;
        }
        let t = self.transitions[self.tr_head];
        self.tr_head = (self.tr_head + 1) % self.transitions.len();
        self.tr_len -= 1;
        Some(t)
    }

    /// Transitions overwritten before anyone popped them.
    pub fn transitions_dropped(&self) -> u64 {
        self.tr_dropped
    }

    /// The state of a scope: for the system, its own state (HALTED while killed); for an
    /// instrument, its own state (operator, feed and reject-ratio layers), not counting the
    /// system's. An unknown instrument reads HALTED. The state in force for an instrument's
    /// orders is [`Risk::effective_state`].
    pub fn state(&self, scope: Scope) -> TradingState {
        match scope {
            Scope::System => self.system_effective(),
            Scope::Instrument(id) => self.insts.get(id.index()).map_or(TradingState::Halted, |i| i.state),
        }
    }

    /// The stricter of the system's and the instrument's state: what its orders face.
    pub fn effective_state(&self, id: InstrumentId) -> TradingState {
        self.state(Scope::System).max(self.state(Scope::Instrument(id)))
    }

    /// Whether the kill switch is engaged.
    pub fn killed(&self) -> bool {
        self.kill
    }

    /// The Kelly clip in force, in (0, 1].
    pub fn kelly_clip(&self) -> Factor {
        self.kelly_clip
    }

    /// Exposure of every instrument, by id.
    pub fn exposure(&self) -> &[Exposure] {
        &self.exposure
    }

    /// Limits in force, by instrument id.
    pub fn limits(&self) -> &[Limits] {
        &self.limits
    }

    /// Closed-trade statistics of one instrument (Kelly inputs).
    pub fn trade_stats(&self, id: InstrumentId) -> Option<TradeStats> {
        self.insts.get(id.index()).map(|i| i.stats)
    }

    /// Rejects among a venue's last `reject_window` orders, and whether that is above the ratio.
    pub fn venue_rejects(&self, venue: Venue) -> (u32, bool) {
        let v = &self.venues[venue.index()];
        (v.rejects, v.reject_high)
    }

    /// Orders sent to `venue` within the second before Risk's latest time (the latest intent,
    /// fill, command or feed event), counted among the last `max_orders_per_sec`: the rate
    /// limit's usage. The next order at that time is refused (`RateLimit`) when this equals
    /// `max_orders_per_sec`. O(log max_orders_per_sec); send times are taken to be in order (a
    /// time that went back only makes the count approximate, never the limit itself).
    pub fn rate_used(&self, venue: Venue) -> u32 {
        let v = &self.venues[venue.index()];
        let cap = v.sent_ns.len();
        let k = v.sent_len.min(self.params.max_orders_per_sec as usize);
        let at = |j: usize| v.sent_ns[(v.sent_head + v.sent_len - k + j) % cap];
        // The first of the last `k` sends that is less than a second old.
        let (mut lo, mut hi) = (0, k);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.now_ns.saturating_sub(at(mid)) < SECOND_NS {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        (k - lo) as u32
    }

    /// Whether Risk takes `venue`'s feed to be live (feeds are live until told otherwise).
    pub fn feed_live(&self, venue: Venue) -> bool {
        self.venues[venue.index()].feed_live
    }

    /// Every venue's limit usage for the [`RiskBoard`](crate::board::RiskBoard), by
    /// [`Venue::index`]. No allocation.
    pub fn venue_views(&self) -> [VenueRiskView; Venue::COUNT] {
        std::array::from_fn(|i| {
            let venue = Venue::ALL[i];
            let v = &self.venues[venue.index()];
            VenueRiskView {
                orders_last_sec: self.rate_used(venue),
                max_orders_per_sec: self.params.max_orders_per_sec,
                rejects: v.rejects,
                reject_window: self.params.reject_window,
                reject_limit: self.params.reject_ratio,
                reject_high: v.reject_high,
                feed_live: v.feed_live,
            }
        })
    }

    /// The limits that apply to every instrument, in force.
    pub fn global_limits(&self) -> GlobalLimits {
        self.params.global()
    }

    /// The latest time Risk has seen (intents, fills, commands, feed events), ns.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Orders in the open-order table.
    pub fn open_orders(&self) -> usize {
        self.open_count
    }

    /// Trading balance: starting balance + realized PnL − fees, exact, from fills (saturated to
    /// the `Money` range).
    pub fn balance(&self) -> Money {
        Money::from_raw(saturate(self.balance)).unwrap_or(Money::ZERO)
    }

    /// Profit set aside in the lock-box ([`RiskCommand::SetAside`]); per-trade risk is sized
    /// against `balance − set_aside`.
    pub fn set_aside(&self) -> Money {
        Money::from_raw(saturate(self.set_aside)).unwrap_or(Money::ZERO)
    }

    /// Gross exposure: Σ over instruments of `max(|pos + open buys|, |pos − open sells|)` at
    /// each instrument's mark (saturated to the `Money` range).
    pub fn gross_notional(&self) -> Money {
        Money::from_raw(saturate(self.gross_raw())).unwrap_or(Money::ZERO)
    }

    /// The id the next approved order will get (unless its table slot is still taken).
    pub fn next_order_id(&self) -> OrderId {
        OrderId(self.next_order_id)
    }

    /// At most this many orders one trim emits (one per instrument), so a caller can reserve
    /// ring space before sending the command.
    pub fn max_trim_orders(&self) -> usize {
        self.insts.len()
    }

    // ---- internals -------------------------------------------------------------------------

    fn system_effective(&self) -> TradingState {
        if self.kill {
            TradingState::Halted
        } else {
            self.system_state
        }
    }

    /// Applies a change to the system layer and queues a transition if the state changed.
    fn set_system(&mut self, change: impl FnOnce(&mut Self), reason: TransitionReason) {
        let from = self.system_effective();
        change(self);
        let to = self.system_effective();
        if from != to {
            self.push_transition(Transition {
                scope: Scope::System,
                from,
                to,
                reason,
                ts_ns: self.now_ns,
            });
        }
    }

    /// Recomputes instrument `i`'s own state from its layers; queues a transition on change.
    fn refresh(&mut self, i: usize, reason: TransitionReason) {
        let inst = self.insts[i];
        let v = &self.venues[inst.venue.index()];
        let layer = if !v.feed_live || v.reject_high {
            TradingState::Reducing
        } else {
            TradingState::Active
        };
        let to = inst.op_state.max(layer);
        if to != inst.state {
            self.insts[i].state = to;
            self.push_transition(Transition {
                scope: Scope::Instrument(InstrumentId(i as u16)),
                from: inst.state,
                to,
                reason,
                ts_ns: self.now_ns,
            });
        }
    }

    fn refresh_venue(&mut self, venue: Venue, reason: TransitionReason) {
        for i in 0..self.insts.len() {
            if self.insts[i].venue == venue {
                self.refresh(i, reason);
            }
        }
    }

    fn push_transition(&mut self, t: Transition) {
        let cap = self.transitions.len();
        if self.tr_len == cap {
            self.transitions[self.tr_head] = t;
            self.tr_head = (self.tr_head + 1) % cap;
            self.tr_dropped += 1;
        } else {
            self.transitions[(self.tr_head + self.tr_len) % cap] = t;
            self.tr_len += 1;
        }
    }

    /// Takes the market view of a well-formed intent: its non-zero touch fields and its
    /// reference price as the mark.
    fn observe(&mut self, i: usize, t: &Touch) {
        let inst = &mut self.insts[i];
        for (mine, theirs) in [
            (&mut inst.touch.bid, t.bid),
            (&mut inst.touch.ask, t.ask),
            (&mut inst.touch.last, t.last),
        ] {
            if !theirs.is_zero() {
                *mine = theirs;
            }
        }
        if !t.last.is_zero() {
            inst.mark = t.last;
        } else if !t.bid.is_zero() && !t.ask.is_zero() {
            let mid = (i128::from(t.bid.raw()) + i128::from(t.ask.raw())) / 2;
            inst.mark = Price::from_raw(mid as i64).unwrap_or(inst.mark);
        }
    }

    /// Gross exposure in raw quote units.
    fn gross_raw(&self) -> i128 {
        self.exposure
            .iter()
            .zip(&self.insts)
            .map(|(e, i)| value_at(e.gross_qty(), i.mark))
            .sum()
    }

    /// The fraction Alpha's targets are scaled by, in [0, 1].
    fn fraction(&self, i: usize, score: Factor) -> I64F64 {
        let clip = I64F64::from_num(self.kelly_clip);
        match self.params.sizing {
            SizingMode::Fixed => clip,
            SizingMode::Kelly => {
                let one = I64F64::ONE;
                let s = self.insts[i].stats;
                let confidence = I64F64::from_num(score).saturating_abs().min(one);
                let n = I64F64::from_num(KELLY_PRIOR_TRADES);
                let prior = (one + confidence) / 2 * n;
                let wins = I64F64::saturating_from_num(s.wins);
                let trades = I64F64::saturating_from_num(s.wins.saturating_add(s.losses)).saturating_add(n);
                let p = (wins.saturating_add(prior)).saturating_div(trades).min(one);
                let kelly = if s.wins == 0 || s.losses == 0 {
                    p.saturating_mul_int(2) - one
                } else {
                    let avg_win = I64F64::saturating_from_num(s.win_sum).saturating_div(wins);
                    let avg_loss =
                        I64F64::saturating_from_num(s.loss_sum).saturating_div(I64F64::saturating_from_num(s.losses));
                    // (1 − p) / b = (1 − p) × avg loss / avg win.
                    p - (one - p).saturating_mul(avg_loss).saturating_div(avg_win)
                };
                let kelly = kelly.clamp(I64F64::ZERO, one);
                (kelly * I64F64::from_num(self.params.kelly_damping).clamp(I64F64::ZERO, one) * clip)
                    .clamp(I64F64::ZERO, one)
            }
        }
    }

    /// Whether fewer than `max_orders_per_sec` orders went to `venue` in the second before
    /// `ts_ns`: the `max_orders_per_sec`-th most recent send is at least a second old.
    fn rate_allows(&self, venue: Venue, ts_ns: u64) -> bool {
        let v = &self.venues[venue.index()];
        let k = self.params.max_orders_per_sec as usize;
        if k == 0 {
            return false;
        }
        if v.sent_len < k {
            return true;
        }
        let kth = v.sent_ns[(v.sent_head + v.sent_len - k) % v.sent_ns.len()];
        ts_ns.saturating_sub(kth) >= SECOND_NS
    }

    fn rate_push(&mut self, venue: Venue, ts_ns: u64) {
        let v = &mut self.venues[venue.index()];
        let cap = v.sent_ns.len();
        if v.sent_len == cap {
            v.sent_ns[v.sent_head] = ts_ns;
            v.sent_head = (v.sent_head + 1) % cap;
        } else {
            v.sent_ns[(v.sent_head + v.sent_len) % cap] = ts_ns;
            v.sent_len += 1;
        }
    }

    /// Counts a new order in its venue's reject window; returns its seq (from 1).
    fn reject_send(&mut self, venue: Venue) -> u64 {
        let w = self.reject_window();
        let v = &mut self.venues[venue.index()];
        let cap = v.rejected.len() as u64;
        let seq = v.orders + 1;
        // The order leaving the window in force.
        if w > 0 && seq > w {
            let out = ((seq - w - 1) % cap) as usize;
            if v.rejected[out] {
                v.rejects -= 1;
            }
        }
        // The slot of the order `cap` back, outside any window: it becomes this order's.
        v.rejected[((seq - 1) % cap) as usize] = false;
        v.orders = seq;
        self.reject_eval(venue);
        seq
    }

    /// Marks order `seq` of `venue` as rejected if the ring still holds it; it counts if it is
    /// inside the window in force.
    fn reject_mark(&mut self, venue: Venue, seq: u64) {
        let w = self.reject_window();
        let v = &mut self.venues[venue.index()];
        let cap = v.rejected.len() as u64;
        if seq == 0 || seq > v.orders || v.orders - seq >= cap {
            return;
        }
        let slot = ((seq - 1) % cap) as usize;
        if !v.rejected[slot] {
            v.rejected[slot] = true;
            if v.orders - seq < w {
                v.rejects += 1;
            }
        }
        self.reject_eval(venue);
    }

    /// The reject window in force, at most the ring's capacity.
    fn reject_window(&self) -> u64 {
        u64::from(self.params.reject_window)
    }

    /// Recounts a venue's rejects over the window in force (after it changed).
    fn reject_recount(&mut self, venue: Venue) {
        let w = self.reject_window();
        let v = &mut self.venues[venue.index()];
        let cap = v.rejected.len() as u64;
        let first = v.orders - v.orders.min(w);
        v.rejects = (first..v.orders).filter(|seq| v.rejected[(seq % cap) as usize]).count() as u32;
        self.reject_eval(venue);
    }

    /// Puts the staged global limits in force; a new reject ratio or window re-evaluates every
    /// venue (which may queue transitions).
    fn commit_global(&mut self) {
        let mut g = self.staged_global;
        // Never beyond what the rings hold (config validates within them).
        g.max_orders_per_sec = g.max_orders_per_sec.min(self.venues[0].sent_ns.len() as u32);
        g.reject_window = g.reject_window.min(self.venues[0].rejected.len() as u32);
        let old = self.params.global();
        if g == old {
            return;
        }
        self.params.set_global(g);
        if g.reject_window != old.reject_window || g.reject_ratio != old.reject_ratio {
            for venue in Venue::ALL {
                self.reject_recount(venue);
            }
        }
    }

    fn reject_eval(&mut self, venue: Venue) {
        let w = i128::from(self.params.reject_window);
        let v = &mut self.venues[venue.index()];
        let high = i128::from(v.rejects) << 32 > i128::from(self.params.reject_ratio.to_bits()) * w;
        if high != v.reject_high {
            v.reject_high = high;
            let reason = if high {
                TransitionReason::RejectRatio
            } else {
                TransitionReason::RejectRatioOk
            };
            self.refresh_venue(venue, reason);
        }
    }

    /// Forgets every venue's rejects (an operator's `Resume` or system ACTIVE): without it a
    /// venue held in REDUCING by its reject ratio could only recover by sending reductions,
    /// and with nothing left to reduce it would stay there.
    fn clear_reject_windows(&mut self) {
        for venue in Venue::ALL {
            let v = &mut self.venues[venue.index()];
            // Only the slots of orders counted so far can be set.
            let used = usize::try_from(v.orders).map_or(v.rejected.len(), |n| n.min(v.rejected.len()));
            v.rejected[..used].fill(false);
            v.rejects = 0;
            self.reject_eval(venue);
        }
    }

    fn release(&mut self, instrument: InstrumentId, side: Side, qty: Qty) {
        let Some(exp) = self.exposure.get_mut(instrument.index()) else {
            return;
        };
        let open = match side {
            Side::Buy => &mut exp.open_buy,
            Side::Sell => &mut exp.open_sell,
        };
        *open = open.checked_sub(qty).unwrap_or(Qty::ZERO);
    }

    fn open_insert(&mut self, mut slot: Slot) {
        let s = slot_of(slot.id);
        let i = usize::from(slot.instrument);
        let inst = &mut self.insts[i];
        slot.next = inst.head;
        if inst.head != NONE {
            self.slots[inst.head as usize].prev = s as u32;
        }
        inst.head = s as u32;
        if let Some(p) = slot.limit {
            match slot.side {
                Side::Buy => inst.best_buy = Some(inst.best_buy.map_or(p, |b| b.max(p))),
                Side::Sell => inst.best_sell = Some(inst.best_sell.map_or(p, |b| b.min(p))),
            }
        }
        self.slots[s] = slot;
        self.open_count += 1;
    }

    fn open_remove(&mut self, s: usize) {
        let slot = self.slots[s];
        let i = usize::from(slot.instrument);
        if slot.prev != NONE {
            self.slots[slot.prev as usize].next = slot.next;
        } else {
            self.insts[i].head = slot.next;
        }
        if slot.next != NONE {
            self.slots[slot.next as usize].prev = slot.prev;
        }
        self.slots[s] = FREE;
        self.open_count -= 1;
        let inst = self.insts[i];
        let best = match slot.side {
            Side::Buy => inst.best_buy,
            Side::Sell => inst.best_sell,
        };
        if slot.limit.is_some() && slot.limit == best {
            // The best resting price left: walk this instrument's open orders only.
            let mut found: Option<Price> = None;
            let mut at = inst.head;
            while at != NONE {
                let o = self.slots[at as usize];
                if o.side == slot.side
                    && let Some(p) = o.limit
                {
                    found = Some(match (found, slot.side) {
                        (None, _) => p,
                        (Some(f), Side::Buy) => f.max(p),
                        (Some(f), Side::Sell) => f.min(p),
                    });
                }
                at = o.next;
            }
            match slot.side {
                Side::Buy => self.insts[i].best_buy = found,
                Side::Sell => self.insts[i].best_sell = found,
            }
        }
    }
}

#[inline]
fn slot_of(id: u64) -> usize {
    (id % OPEN_ORDERS as u64) as usize
}

#[inline]
fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x > 0 { i64::MAX } else { i64::MIN })
}

/// Rounds toward zero to a multiple of `lot` (unchanged when `lot` is zero).
#[inline]
fn floor_lot(x: i128, lot: i128) -> i128 {
    // `%` keeps the dividend's sign, so subtracting it moves toward zero.
    if lot > 0 { x - x % lot } else { x }
}

/// `target × fraction` in raw units, truncated toward zero, then toward zero to a multiple of
/// `lot`. With a fraction of 1 a whole number of lots comes back unchanged.
#[inline]
fn scale_to_lot(target: i128, fraction: I64F64, lot: i128) -> i128 {
    // |target| ≤ 10¹⁷ and fraction's bits ≤ 2⁶⁴: the product fits i128; `/` truncates toward 0.
    floor_lot(target * fraction.to_bits() / (1i128 << 64), lot)
}

/// `x × f` (f ≥ 0 expected) truncated toward zero.
#[inline]
fn mul_factor_floor(x: i128, f: Factor) -> i128 {
    (x * i128::from(f.to_bits())) >> 32
}

/// `x × f` for x ≥ 0, rounded up.
#[inline]
fn mul_factor_ceil(x: i128, f: Factor) -> i128 {
    let p = x * i128::from(f.to_bits());
    (p + (1 << 32) - 1) >> 32
}

/// Value of `qty` raw units at `price`, raw quote units, truncated.
#[inline]
fn value_at(qty: i128, price: Price) -> i128 {
    qty * i128::from(price.raw()) / i128::from(ONE)
}

/// Risk of the opening part of an order (`qty` beyond `reducible`) at `stop`, raw quote units,
/// rounded up.
#[inline]
fn trade_risk(qty: i128, reducible: i128, stop: i128) -> i128 {
    let opening = qty - qty.min(reducible);
    let p = opening * stop.max(0);
    (p + i128::from(ONE) - 1) / i128::from(ONE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstrumentId, Venue};
    use crate::num::Price;
    use crate::records::{Factor, Fill, Liquidity, Origin, Stamp, Touch};

    fn params() -> RiskParams {
        RiskParams {
            instruments: vec![InstrumentRisk {
                venue: Venue::Binance,
                limits: Limits {
                    max_order_qty: "0.05".parse().unwrap(),
                    max_order_notional: "5000".parse().unwrap(),
                    max_position: "0.1".parse().unwrap(),
                    lot_size: "0.00001".parse().unwrap(),
                    tick_size: "0.01".parse().unwrap(),
                    min_notional: "10".parse().unwrap(),
                },
            }],
            max_trade_risk: Factor::from_num(0.005),
            collar: Factor::from_num(0.01),
            max_gross_notional: "50000".parse().unwrap(),
            max_orders_per_sec: 20,
            sizing: SizingMode::Fixed,
            kelly_damping: Factor::from_num(0.5),
            manual_stop: Factor::from_num(0.01),
            reject_ratio: Factor::from_num(0.02),
            reject_window: 200,
            starting_balance: "100000".parse().unwrap(),
            kill: false,
        }
    }

    fn risk() -> Risk {
        Risk::new(params())
    }

    fn intent(sizing: Sizing) -> OrderIntent {
        OrderIntent {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            sizing,
            limit: None,
            tif: crate::records::Tif::Auto,
            pin_venue: false,
            touch: Touch {
                bid: "60000".parse().unwrap(),
                ask: "60001".parse().unwrap(),
                last: Price::ZERO,
            },
            origin: Origin::Alpha,
            client_id: 0,
            score: Factor::ZERO,
            mix: [Factor::ZERO; 4],
            stop: Price::ZERO,
            reduce_only: false,
            ts_ns: 1,
            stamp: Stamp(1),
        }
    }

    fn target(q: &str) -> OrderIntent {
        intent(Sizing::Target(q.parse().unwrap()))
    }

    fn fill(order: &Order) -> ExecReport {
        ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: order.venue,
            side: order.side,
            price: order.touch.taker_price(order.side).unwrap(),
            qty: order.qty,
            fee: Money::ZERO,
            liquidity: Liquidity::Taker,
            last: true,
            ts_ns: 1,
        })
    }

    #[test]
    fn targets_resolve_against_position_and_open_orders() {
        let mut r = risk();
        let Decision::Approved(o1) = r.check(&target("0.02")) else {
            panic!()
        };
        assert_eq!(
            (o1.side, o1.qty.to_string(), o1.id),
            (Side::Buy, "0.02".into(), OrderId(1))
        );
        // Same target while the order is open: nothing to do.
        assert_eq!(r.check(&target("0.02")), Decision::Nothing);
        r.on_report(&fill(&o1));
        assert_eq!(r.exposure()[0].position.to_string(), "0.02");
        let Decision::Approved(o2) = r.check(&target("-0.02")) else {
            panic!()
        };
        assert_eq!((o2.side, o2.qty.to_string()), (Side::Sell, "0.04".into()));
        // A venue reject releases the open quantity.
        r.on_report(&ExecReport::Reject {
            order_id: o2.id,
            instrument: o2.instrument,
            side: o2.side,
            qty: o2.qty,
            reason: RejectReason::VenueReject,
        });
        assert_eq!(r.exposure()[0].open_sell, Qty::ZERO);
    }

    #[test]
    fn every_limit_refuses_with_its_reason() {
        let mut r = risk();
        let reason = |d: Decision| match d {
            Decision::Refused(x) => Some(x.reason),
            _ => None,
        };
        assert_eq!(reason(r.check(&target("0.06"))), Some(RejectReason::MaxOrderQty));
        // 0.05 at 60001 is 3000.05: within notional. 0.05 at a 200000 ask is not.
        let mut rich = target("0.05");
        rich.touch.ask = "200000".parse().unwrap();
        assert_eq!(reason(r.check(&rich)), Some(RejectReason::MaxOrderNotional));
        let mut no_price = target("0.01");
        no_price.touch = Touch::default();
        assert_eq!(reason(r.check(&no_price)), Some(RejectReason::NoPrice));
        for _ in 0..2 {
            assert!(matches!(
                r.check(&intent(Sizing::Delta(Side::Buy, "0.05".parse().unwrap()))),
                Decision::Approved(_)
            ));
        }
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Buy, "0.01".parse().unwrap())))),
            Some(RejectReason::MaxPosition)
        );
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Buy, Qty::ZERO)))),
            Some(RejectReason::ZeroQty)
        );
        r.on_command(RiskCommand::Kill, 0, &mut |_| {});
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Sell, "0.01".parse().unwrap())))),
            Some(RejectReason::KillSwitch)
        );
        r.on_command(RiskCommand::Resume, 0, &mut |_| {});
        assert!(matches!(
            r.check(&intent(Sizing::Delta(Side::Sell, "0.01".parse().unwrap()))),
            Decision::Approved(_)
        ));
        let mut unknown = target("0.01");
        unknown.instrument = InstrumentId(9);
        assert_eq!(reason(r.check(&unknown)), Some(RejectReason::NotListed));
    }

    fn approved(d: Decision) -> Order {
        match d {
            Decision::Approved(o) => o,
            other => panic!("expected an order, got {other:?}"),
        }
    }

    #[test]
    fn kelly_clip_scales_alpha_targets_to_whole_lots() {
        let mut r = risk();
        assert_eq!(r.kelly_clip(), Factor::ONE);
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)), 0, &mut |_| {});
        assert_eq!(r.kelly_clip(), Factor::from_num(0.25));
        // 0.01 × 0.25 = 0.0025: 250 lots of 0.00001.
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0025".into()));
        r.on_report(&fill(&o));
        // Same target again: already met at the clipped size.
        assert_eq!(r.check(&target("0.01")), Decision::Nothing);
        // Back to 1: the full target, so the rest is bought.
        r.on_command(RiskCommand::KellyClip(Factor::ONE), 0, &mut |_| {});
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0075".into()));
        r.on_report(&fill(&o));
        assert_eq!(r.exposure()[0].position.to_string(), "0.01");
        // Flat is flat at any clip.
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)), 0, &mut |_| {});
        let o = approved(r.check(&target("0")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Sell, "0.01".into()));
    }

    #[test]
    fn kelly_clip_rounds_toward_zero_on_an_odd_lot() {
        let mut r = risk();
        r.limits[0].lot_size = "0.0003".parse().unwrap();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)), 0, &mut |_| {});
        // 0.0025 is 8.33 lots of 0.0003: 8 lots, 0.0024, on both sides.
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0024".into()));
        r.on_report(&ExecReport::Reject {
            order_id: o.id,
            instrument: o.instrument,
            side: o.side,
            qty: o.qty,
            reason: RejectReason::VenueReject,
        });
        let o = approved(r.check(&target("-0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Sell, "0.0024".into()));
        // A clip that leaves less than a lot targets flat.
        let mut r = risk();
        r.limits[0].lot_size = "0.01".parse().unwrap();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.5)), 0, &mut |_| {});
        assert_eq!(r.check(&target("0.01")), Decision::Nothing);
    }

    #[test]
    fn kelly_clip_leaves_manual_orders_alone_and_ignores_bad_values() {
        let mut r = risk();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)), 0, &mut |_| {});
        for bad in [Factor::ZERO, -Factor::from_num(0.5), Factor::from_num(1.5)] {
            r.on_command(RiskCommand::KellyClip(bad), 0, &mut |_| {});
            assert_eq!(r.kelly_clip(), Factor::from_num(0.25), "{bad} ignored");
        }
        let o = approved(r.check(&intent(Sizing::Delta(Side::Buy, "0.01".parse().unwrap()))));
        assert_eq!(o.qty.to_string(), "0.01", "manual deltas are not scaled");
        let mut manual_target = target("0.03");
        manual_target.origin = Origin::Manual;
        let o = approved(r.check(&manual_target));
        assert_eq!(
            o.qty.to_string(),
            "0.02",
            "nor are manual targets: 0.03 less the open 0.01"
        );
        // The kill switch and the clip are independent.
        r.on_command(RiskCommand::Kill, 0, &mut |_| {});
        r.on_command(RiskCommand::Resume, 0, &mut |_| {});
        assert_eq!(r.kelly_clip(), Factor::from_num(0.25));
    }

    #[test]
    fn recent_ids_evict_in_fifo_order_and_survive_probe_chains() {
        let mut ids = RecentIds::new(8);
        for id in 1..=8 {
            ids.insert(id);
        }
        assert!((1..=8).all(|id| ids.contains(id)));
        for id in 9..=100 {
            ids.insert(id * 7919);
            // Exactly the last eight inserted are present.
            let present: Vec<u64> = (1..=100)
                .flat_map(|k| [k, k * 7919])
                .filter(|&x| ids.contains(x))
                .collect();
            assert_eq!(present.len(), 8, "after {id}");
            assert!(ids.contains(id * 7919));
        }
        assert!(!ids.contains(0));
    }
}
