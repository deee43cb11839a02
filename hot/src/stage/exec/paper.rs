//! The in-process paper venue: a deterministic model of one venue's matching for our orders.
//!
//! It sees the venue's market data through [`Gateway::on_tick`] and keeps the top of each
//! instrument's book (price and displayed size on both sides, last trade). Everything happens
//! at logical time: the receive time of the ticks and the `ts_ns` of the orders it is given,
//! never the wall clock, so the same ticks and orders give the same reports, byte for byte.
//!
//! * **Latency.** An order sent at `t` reaches the venue at `t + latency` (`latency_us` of
//!   logical time): only then is it acknowledged and matched, and ticks before that do not
//!   touch it. Cancels take the same time (a fill can beat a cancel). A zero latency makes both
//!   immediate. The venue's clock advances with the ticks and the orders it sees, so an order
//!   in flight goes live at the first tick (or order) at or after its arrival time. With
//!   [`PaperVenue::with_wall_clock`] (`maxx run`) it also follows the wall clock while an
//!   order or cancel is on its way, so a quiet market does not hold an ack back; replays leave
//!   it off, their time is the capture's.
//! * **Taking.** A marketable order (a market order, or a limit at or through the opposite
//!   touch) fills at the displayed touch, at most the displayed size: an IOC remainder is
//!   cancelled, a GTC remainder rests at its limit (first in its queue, having taken the whole
//!   touch), FOK fills whole or is cancelled. A market order fills whole, as at a venue: the
//!   part beyond the displayed size walks the book, which is not shown, and fills in one more
//!   execution at the touch worsened by the depth penalty ([`PaperVenue::with_depth_penalty`],
//!   10 bps by default). A post-only order that would take is rejected
//!   ([`RejectReason::PostOnlyWouldTake`]). With no quote yet (a trades-only feed) it fills at
//!   the last trade, or at the touch the order carries, in full.
//! * **Resting: queue position.** A resting order joins behind the displayed size at its price
//!   (nothing ahead if it improves the touch; an unknown amount if its level is not shown,
//!   learnt when the level shows). A trade at its price by an aggressor on the other side
//!   consumes the queue ahead first, then fills us (partially if the trade is smaller). A trade
//!   through our price (a sell below our bid) fills us up to the trade's size. A quote that
//!   moves the touch away leaves us resting, first at our level; a quote that shrinks our level
//!   below our queue place moves us up (cancels ahead of us). A quote crossing our price
//!   (an ask at or below our buy) fills us as maker at our price, up to the size shown.
//!   Several of our orders share each trade and crossing quote in arrival order.
//! * **Fees** per fill: maker or taker rate of this venue, in thousandths of a basis point,
//!   rounded up to 10^-8 against us ([`crate::num::fee`]); a negative maker rate is a rebate.
//! * **Reports** follow the gateway contract: `Ack` when the order goes live, a `Fill` per
//!   execution (`last` when nothing stays open), `Cancelled` for what was left open, `Reject`
//!   for a refusal (a full table: [`RejectReason::VenueReject`]). A cancel that finds its order
//!   gone, or finished while the cancel was on its way, is refused with
//!   [`RejectReason::UnknownOrder`]. The kill switch's cancel-all acts at once.
//!
//! Orders live in one table of fixed capacity and books in another, both allocated at
//! construction: nothing allocates afterwards.

use crate::ids::{InstrumentId, Venue};
use crate::num::{Price, Qty, fee, notional};
use crate::records::{
    ExecReport, Fill, Liquidity, Order, OrderId, OrderKind, RejectReason, Side, Tick, TickBody, Tif, Touch,
};

use super::book::Top;
use super::{Fees, Gateway};

/// How many orders (resting or in flight) a [`PaperVenue`] holds by default.
pub const PAPER_RESTING: usize = 4096;

/// Instruments a paper venue keeps a book for (ids at or above it are not modelled: their
/// orders fill at the touch they carry and never rest-fill).
pub const PAPER_INSTRUMENTS: usize = 256;

/// The default depth penalty: 10 bps.
pub const DEFAULT_DEPTH_PENALTY_BPS_MILLI: i64 = 10_000;

/// "No event pending" and "size unknown" markers.
const NEVER: u64 = u64::MAX;

/// One of our orders at the paper venue.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: OrderId,
    instrument: InstrumentId,
    side: Side,
    kind: OrderKind,
    tif: Tif,
    /// The market the order carried, for prices when the venue has shown none.
    touch: Touch,
    /// Still open (unfilled).
    open: Qty,
    /// Displayed quantity ahead of us at our price (`Qty::MAX`: our level is not shown).
    ahead: Qty,
    /// Live at the venue (acknowledged).
    live: bool,
    /// Logical time it reaches the venue.
    live_at: u64,
    /// Logical time a cancel reaches the venue, or [`NEVER`].
    cancel_at: u64,
}

impl Entry {
    fn limit(&self) -> Option<Price> {
        match self.kind {
            OrderKind::Limit(p) => Some(p),
            OrderKind::Market => None,
        }
    }
}

/// The paper venue: see the module documentation for the model.
#[derive(Debug)]
pub struct PaperVenue {
    venue: Venue,
    fees: Fees,
    latency_ns: u64,
    /// Price penalty, in thousandths of a basis point, for the part of a market order beyond
    /// the displayed size.
    depth_penalty_bps_milli: i64,
    /// The venue's logical clock: the latest tick receive time or order time seen.
    now_ns: u64,
    next_venue_order_id: u64,
    /// Our orders in arrival order; never grows past its initial capacity.
    orders: Vec<Entry>,
    /// Top of book per instrument id; fixed length.
    books: Vec<Top>,
    /// Earliest pending arrival or cancel time, or [`NEVER`].
    next_due: u64,
    /// Whether [`Gateway::poll`] moves the clock to the wall clock.
    wall_clock: bool,
}

impl PaperVenue {
    /// A paper venue charging `taker_fee_bps_milli` thousandths of a basis point on every fill,
    /// maker or taker, with no latency and room for [`PAPER_RESTING`] orders.
    pub fn new(venue: Venue, taker_fee_bps_milli: i64) -> Self {
        Self::with_capacity(venue, taker_fee_bps_milli, PAPER_RESTING)
    }

    /// The same with room for `resting` orders. Allocates the tables; call while wiring.
    pub fn with_capacity(venue: Venue, taker_fee_bps_milli: i64, resting: usize) -> Self {
        let fees = Fees {
            maker_bps_milli: taker_fee_bps_milli,
            taker_bps_milli: taker_fee_bps_milli,
        };
        Self::configured(venue, fees, 0, resting)
    }

    /// A paper venue with its own fee schedule, `latency_ns` of logical time between us and
    /// its matching engine (each way for cancels, one way for orders), and room for `resting`
    /// orders. Allocates the tables; call while wiring.
    pub fn configured(venue: Venue, fees: Fees, latency_ns: u64, resting: usize) -> Self {
        Self {
            venue,
            fees,
            latency_ns,
            depth_penalty_bps_milli: DEFAULT_DEPTH_PENALTY_BPS_MILLI,
            now_ns: 0,
            next_venue_order_id: 1,
            orders: Vec::with_capacity(resting),
            books: vec![Top::default(); PAPER_INSTRUMENTS],
            next_due: NEVER,
            wall_clock: false,
        }
    }

    /// The same venue whose clock also follows the wall clock ([`crate::clock::wall_ns`], the
    /// clock of live ticks' receive times): each [`Gateway::poll`] with an order or cancel on
    /// its way moves the clock to now, so it arrives `latency` after it was sent whether or not
    /// a tick comes. For live trading only: a replay's logical time is the capture's.
    pub fn with_wall_clock(mut self) -> Self {
        self.wall_clock = true;
        self
    }

    /// The same venue filling the part of a market order beyond the displayed size at
    /// `bps_milli` thousandths of a basis point worse than the touch (`exec.depth_penalty_bps`).
    pub fn with_depth_penalty(mut self, bps_milli: i64) -> Self {
        self.depth_penalty_bps_milli = bps_milli;
        self
    }

    /// Orders held now (resting or on their way).
    pub fn resting(&self) -> usize {
        self.orders.len()
    }

    /// The logical latency in ns.
    pub fn latency_ns(&self) -> u64 {
        self.latency_ns
    }

    /// The venue's logical clock (ns since the epoch).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The open quantity and the displayed quantity ahead of order `id` in its queue, if it is
    /// held (`Qty::MAX` ahead: its level is not shown). For tests and inspection.
    pub fn queue(&self, id: OrderId) -> Option<(Qty, Qty)> {
        self.orders.iter().find(|e| e.id == id).map(|e| (e.open, e.ahead))
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_venue_order_id;
        self.next_venue_order_id += 1;
        id
    }

    fn book(&self, instrument: InstrumentId) -> Top {
        self.books.get(instrument.index()).copied().unwrap_or_default()
    }

    /// Moves the clock to `t` and carries out every arrival and cancel due by then, in time
    /// order (ties: arrival order, an order's arrival before its cancel).
    fn advance(&mut self, t: u64, out: &mut impl FnMut(ExecReport)) {
        self.now_ns = self.now_ns.max(t);
        while self.next_due <= self.now_ns {
            let mut pick: Option<(u64, usize)> = None;
            let mut next = NEVER;
            for (i, e) in self.orders.iter().enumerate() {
                let due = if !e.live { e.live_at } else { e.cancel_at };
                if due == NEVER {
                    continue;
                }
                if due <= self.now_ns {
                    if pick.is_none_or(|(d, _)| due < d) {
                        pick = Some((due, i));
                    }
                } else {
                    next = next.min(due);
                }
            }
            let Some((at, i)) = pick else {
                self.next_due = next;
                break;
            };
            if self.orders[i].live {
                self.cancel_now(i, out);
            } else {
                self.arrive(i, at, out);
            }
        }
    }

    /// Order `i` reaches the matching engine at `at`: refused, or acknowledged and then
    /// filled against the touch and/or left resting.
    fn arrive(&mut self, i: usize, at: u64, out: &mut impl FnMut(ExecReport)) {
        let e = self.orders[i];
        let book = self.book(e.instrument);
        // What a taker meets: the displayed touch, else the last trade or the order's own
        // touch with no size limit.
        let taker = book
            .taker(e.side)
            .or_else(|| e.touch.taker_price(e.side).map(|p| (p, None)));
        let marketable = match (e.kind, taker) {
            (OrderKind::Market, Some(_)) => true,
            (OrderKind::Limit(l), Some((p, _))) => match e.side {
                Side::Buy => l >= p,
                Side::Sell => l <= p,
            },
            (_, None) => false,
        };
        let refuse = if e.tif == Tif::PostOnly && marketable {
            Some(RejectReason::PostOnlyWouldTake)
        } else if e.kind == OrderKind::Market && taker.is_none() {
            Some(RejectReason::NoPrice)
        } else {
            None
        };
        if let Some(reason) = refuse {
            self.finish(i, out);
            return out(ExecReport::Reject {
                order_id: e.id,
                instrument: e.instrument,
                side: e.side,
                qty: e.open,
                reason,
            });
        }
        let venue_order_id = self.next_id();
        self.orders[i].live = true;
        out(ExecReport::Ack {
            order_id: e.id,
            venue_order_id,
        });
        let immediate = matches!(e.tif, Tif::Ioc | Tif::Fok) || e.kind == OrderKind::Market;
        if let (true, Some((price, size))) = (marketable, taker) {
            let take = size.map_or(e.open, |s| s.min(e.open));
            if e.tif == Tif::Fok && take < e.open {
                return self.cancel_now(i, out);
            }
            if !self.fill(i, price, take, Liquidity::Taker, at, out) {
                return;
            }
            if e.kind == OrderKind::Market {
                // A market order fills whole: the rest walks the book behind the touch, which is
                // not shown, at the depth penalty.
                let rest = self.orders[i].open;
                let worse = beyond(price, e.side, self.depth_penalty_bps_milli);
                self.fill(i, worse, rest, Liquidity::Taker, at, out);
                return;
            }
            if immediate {
                return self.cancel_now(i, out);
            }
            // The rest rests at its limit, having taken the whole touch: first in line.
            self.orders[i].ahead = Qty::ZERO;
            return;
        }
        if immediate {
            return self.cancel_now(i, out);
        }
        let price = e.limit().unwrap_or(Price::ZERO);
        self.orders[i].ahead = join(&book, e.side, price);
    }

    /// Fills `qty` of order `i` at `price`; returns whether the order is still held. A zero
    /// quantity reports nothing.
    fn fill(
        &mut self,
        i: usize,
        price: Price,
        qty: Qty,
        liquidity: Liquidity,
        at: u64,
        out: &mut impl FnMut(ExecReport),
    ) -> bool {
        if qty.is_zero() {
            return true;
        }
        let e = &mut self.orders[i];
        let rate = match liquidity {
            Liquidity::Maker => self.fees.maker_bps_milli,
            Liquidity::Taker => self.fees.taker_bps_milli,
        };
        let open = e.open.checked_sub(qty).unwrap_or(Qty::ZERO);
        e.open = open;
        let e = *e;
        // Within risk limits neither overflows; if one did, the fill is still reported (the
        // position must follow the venue) with a zero fee.
        let fee_paid = notional(price, qty).and_then(|n| fee(n, rate)).unwrap_or_default();
        out(ExecReport::Fill(Fill {
            order_id: e.id,
            instrument: e.instrument,
            venue: self.venue,
            side: e.side,
            price,
            qty,
            fee: fee_paid,
            liquidity,
            last: open.is_zero(),
            ts_ns: at,
        }));
        if open.is_zero() {
            self.finish(i, out);
            false
        } else {
            true
        }
    }

    /// Cancels what is left of order `i` now and reports it.
    fn cancel_now(&mut self, i: usize, out: &mut impl FnMut(ExecReport)) {
        let e = self.orders.remove(i);
        out(ExecReport::Cancelled {
            order_id: e.id,
            instrument: e.instrument,
            side: e.side,
            qty: e.open,
        });
    }

    /// Drops order `i` (filled or refused); a cancel still on its way is refused now.
    fn finish(&mut self, i: usize, out: &mut impl FnMut(ExecReport)) {
        let e = self.orders.remove(i);
        if e.cancel_at != NEVER {
            out(ExecReport::CancelRejected {
                order_id: e.id,
                reason: RejectReason::UnknownOrder,
            });
        }
    }

    /// A trade print against our resting orders of its instrument, in arrival order.
    fn on_trade(&mut self, tick: &Tick, price: Price, qty: Qty, aggressor: Side, out: &mut impl FnMut(ExecReport)) {
        let mut avail = qty;
        let mut i = 0;
        while i < self.orders.len() && !avail.is_zero() {
            let e = self.orders[i];
            let Some(level) = e.limit() else {
                i += 1;
                continue;
            };
            if !e.live || e.instrument != tick.instrument || e.side == aggressor {
                i += 1;
                continue;
            }
            // Better than our price for the aggressor: they went through our level.
            let through = match e.side {
                Side::Buy => price < level,
                Side::Sell => price > level,
            };
            let take = if through {
                self.orders[i].ahead = Qty::ZERO;
                avail.min(e.open)
            } else if price == level {
                let used = avail.min(e.ahead);
                self.orders[i].ahead = e.ahead.checked_sub(used).unwrap_or(Qty::ZERO);
                avail.checked_sub(used).unwrap_or(Qty::ZERO).min(e.open)
            } else {
                Qty::ZERO
            };
            avail = avail.checked_sub(take).unwrap_or(Qty::ZERO);
            if self.fill(i, level, take, Liquidity::Maker, tick.recv_ns, out) {
                i += 1;
            }
        }
    }

    /// A new touch against our resting orders of its instrument: crossing orders fill as
    /// makers, the others' queue places follow their level.
    fn on_quote(&mut self, tick: &Tick, book: &Top, out: &mut impl FnMut(ExecReport)) {
        let mut ask_left = book.ask_qty;
        let mut bid_left = book.bid_qty;
        let mut i = 0;
        while i < self.orders.len() {
            let e = self.orders[i];
            let Some(level) = e.limit() else {
                i += 1;
                continue;
            };
            if !e.live || e.instrument != tick.instrument {
                i += 1;
                continue;
            }
            let (other, other_left, own, own_qty) = match e.side {
                Side::Buy => (book.ask, &mut ask_left, book.bid, book.bid_qty),
                Side::Sell => (book.bid, &mut bid_left, book.ask, book.ask_qty),
            };
            let crosses = !other.is_zero()
                && match e.side {
                    Side::Buy => other <= level,
                    Side::Sell => other >= level,
                };
            if crosses {
                let take = (*other_left).min(e.open);
                *other_left = other_left.checked_sub(take).unwrap_or(Qty::ZERO);
                if !self.fill(i, level, take, Liquidity::Maker, tick.recv_ns, out) {
                    continue;
                }
            }
            if !own.is_zero() {
                let moved_away = match e.side {
                    Side::Buy => own < level,
                    Side::Sell => own > level,
                };
                let a = &mut self.orders[i].ahead;
                if moved_away {
                    // The touch moved away from our price: no one shown is ahead of us.
                    *a = Qty::ZERO;
                } else if own == level {
                    *a = (*a).min(own_qty);
                }
            }
            i += 1;
        }
    }
}

/// `price` worsened for a taker on `side` by `bps_milli` thousandths of a basis point, rounded
/// against the taker to 10^-8.
fn beyond(price: Price, side: Side, bps_milli: i64) -> Price {
    let p = i128::from(price.raw());
    let off = (p * i128::from(bps_milli.max(0)) + 9_999_999) / 10_000_000;
    let raw = match side {
        Side::Buy => p + off,
        Side::Sell => (p - off).max(1),
    };
    i64::try_from(raw).ok().and_then(Price::from_raw).unwrap_or(price)
}

/// Queue ahead of a new resting order at `price`: the displayed size if it joins the touch,
/// nothing if it improves it (or no quote was seen), unknown ([`Qty::MAX`]) if it is behind it.
fn join(book: &Top, side: Side, price: Price) -> Qty {
    let (touch, size) = book.own(side);
    if touch.is_zero() {
        return Qty::ZERO;
    }
    let improves = match side {
        Side::Buy => price > touch,
        Side::Sell => price < touch,
    };
    if improves {
        Qty::ZERO
    } else if price == touch {
        size
    } else {
        Qty::MAX
    }
}

impl Gateway for PaperVenue {
    fn venue(&self) -> Venue {
        self.venue
    }

    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        self.advance(order.ts_ns, out);
        // `len < capacity` keeps the push below from reallocating.
        if self.orders.len() >= self.orders.capacity() || order.qty.is_zero() {
            return out(ExecReport::Reject {
                order_id: order.id,
                instrument: order.instrument,
                side: order.side,
                qty: order.qty,
                reason: RejectReason::VenueReject,
            });
        }
        let live_at = self.now_ns.saturating_add(self.latency_ns);
        self.orders.push(Entry {
            id: order.id,
            instrument: order.instrument,
            side: order.side,
            kind: order.kind,
            tif: if order.tif == Tif::Auto { Tif::Gtc } else { order.tif },
            touch: order.touch,
            open: order.qty,
            ahead: Qty::ZERO,
            live: false,
            live_at,
            cancel_at: NEVER,
        });
        self.next_due = self.next_due.min(live_at);
        self.advance(self.now_ns, out);
    }

    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport)) {
        let Some(i) = self.orders.iter().position(|e| e.id == order_id) else {
            return out(ExecReport::CancelRejected {
                order_id,
                reason: RejectReason::UnknownOrder,
            });
        };
        if self.orders[i].cancel_at != NEVER {
            // A cancel is already on its way; this one changes nothing.
            return;
        }
        let at = self.now_ns.saturating_add(self.latency_ns);
        self.orders[i].cancel_at = at;
        self.next_due = self.next_due.min(at);
        self.advance(self.now_ns, out);
    }

    fn poll(&mut self, _now_ns: u64, out: &mut impl FnMut(ExecReport)) -> bool {
        // Nothing on its way (the common case) costs one comparison.
        if !self.wall_clock || self.next_due == NEVER {
            return false;
        }
        let now = crate::clock::wall_ns();
        if now < self.next_due {
            return false;
        }
        self.advance(now, out);
        true
    }

    fn on_tick(&mut self, tick: &Tick, out: &mut impl FnMut(ExecReport)) {
        if tick.venue != self.venue {
            return;
        }
        // Arrivals and cancels due before this tick happen against the book as it was.
        self.advance(tick.recv_ns, out);
        let Some(slot) = self.books.get(tick.instrument.index()).copied() else {
            return;
        };
        let mut book = slot;
        book.apply(&tick.body);
        self.books[tick.instrument.index()] = book;
        match tick.body {
            TickBody::Trade { price, qty, aggressor } => self.on_trade(tick, price, qty, aggressor, out),
            TickBody::Quote { .. } => self.on_quote(tick, &book, out),
        }
    }

    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport)) {
        // Arrival order, so the reports are deterministic; `drain` keeps the capacity.
        for e in self.orders.drain(..) {
            out(ExecReport::Cancelled {
                order_id: e.id,
                instrument: e.instrument,
                side: e.side,
                qty: e.open,
            });
        }
        self.next_due = NEVER;
    }

    fn open_capacity(&self) -> usize {
        self.orders.capacity()
    }

    fn fees(&self) -> Option<Fees> {
        Some(self.fees)
    }
}
