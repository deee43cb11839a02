//! Execution: takes approved orders to a venue gateway and reports what happened.
//!
//! Gateways sit behind the [`Gateway`] trait and are chosen by generic parameter (static
//! dispatch on the hot path). This version ships the in-process [`PaperVenue`], which fills
//! marketable orders at the touch the order carries, with a configured taker fee, and rests
//! the others until they are cancelled.
//! Execution also records tick-to-order latency (from the tick's receive stamp to the moment the
//! order is handed to the gateway) into its own HdrHistogram, which the runtime hands to the
//! cold side periodically by swapping it for an empty one (no sharing, no allocation).
//!
//! Execution is the last gate of the kill switch ([`KillSwitch`]): it reads the switch before
//! handing any order to the gateway, so an order approved before the trip and still in a ring
//! never leaves (it comes back to Risk as a [`RejectReason::KillSwitch`] reject), and on its
//! first [`Exec::poll`] after a new trip it asks the gateway to cancel every open order, once.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use crate::ids::{InstrumentId, Venue};
use crate::kill::KillSwitch;
use crate::num::{Price, Qty, fee, notional};
use crate::records::{ExecReport, Fill, Liquidity, Order, OrderId, OrderKind, RejectReason, Side, Stamp, Tick};

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
}

/// An operator's request to Execution, from the cold side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecCommand {
    /// Cancel this open order wherever it rests.
    Cancel(OrderId),
}

/// How many resting orders a [`PaperVenue`] holds by default.
pub const PAPER_RESTING: usize = 4096;

/// One order resting at the paper venue.
#[derive(Clone, Copy, Debug)]
struct Resting {
    order_id: OrderId,
    instrument: InstrumentId,
    side: Side,
    qty: Qty,
}

/// The in-process paper venue: immediate taker fills at the order's touch, resting limits.
///
/// A market order buys at the ask and sells at the bid (the last trade if that side is
/// unknown); a limit order fills the same way if it is marketable at that price, and otherwise
/// rests (acknowledged, held in a table of fixed capacity allocated at construction; a full
/// table rejects the order with [`RejectReason::VenueReject`]). Resting orders never fill when
/// the market later crosses them: matching and queue position arrive with the Execution issue;
/// here they only wait to be cancelled ([`Gateway::cancel_all`]). Fees are rounded up to 10^-8
/// (see [`crate::num::fee`]).
#[derive(Debug)]
pub struct PaperVenue {
    venue: Venue,
    taker_fee_bps_milli: i64,
    next_venue_order_id: u64,
    /// Resting orders in arrival order; never grows past its initial capacity.
    resting: Vec<Resting>,
}

impl PaperVenue {
    /// A paper venue charging `taker_fee_bps_milli` thousandths of a basis point per fill, with
    /// room for [`PAPER_RESTING`] resting orders.
    pub fn new(venue: Venue, taker_fee_bps_milli: i64) -> Self {
        Self::with_capacity(venue, taker_fee_bps_milli, PAPER_RESTING)
    }

    /// The same with room for `resting` resting orders. Allocates the table; call while wiring.
    pub fn with_capacity(venue: Venue, taker_fee_bps_milli: i64, resting: usize) -> Self {
        Self {
            venue,
            taker_fee_bps_milli,
            next_venue_order_id: 1,
            resting: Vec::with_capacity(resting),
        }
    }

    /// Number of orders resting now.
    pub fn resting(&self) -> usize {
        self.resting.len()
    }

    /// The venue id the next accepted order gets.
    fn next_id(&mut self) -> u64 {
        let id = self.next_venue_order_id;
        self.next_venue_order_id += 1;
        id
    }
}

impl Gateway for PaperVenue {
    fn venue(&self) -> Venue {
        self.venue
    }

    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        let reject = |reason| ExecReport::Reject {
            order_id: order.id,
            instrument: order.instrument,
            side: order.side,
            qty: order.qty,
            reason,
        };
        let Some(touch) = order.touch.taker_price(order.side) else {
            return out(reject(RejectReason::NoPrice));
        };
        let price: Price = match order.kind {
            OrderKind::Market => touch,
            OrderKind::Limit(limit) => {
                let marketable = match order.side {
                    Side::Buy => limit >= touch,
                    Side::Sell => limit <= touch,
                };
                if !marketable {
                    // `len < capacity` keeps the push below from reallocating.
                    if self.resting.len() >= self.resting.capacity() {
                        return out(reject(RejectReason::VenueReject));
                    }
                    self.resting.push(Resting {
                        order_id: order.id,
                        instrument: order.instrument,
                        side: order.side,
                        qty: order.qty,
                    });
                    let venue_order_id = self.next_id();
                    return out(ExecReport::Ack {
                        order_id: order.id,
                        venue_order_id,
                    });
                }
                touch
            }
        };
        let Some(fee) = notional(price, order.qty).and_then(|n| fee(n, self.taker_fee_bps_milli)) else {
            return out(reject(RejectReason::Overflow));
        };
        let venue_order_id = self.next_id();
        out(ExecReport::Ack {
            order_id: order.id,
            venue_order_id,
        });
        out(ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: self.venue,
            side: order.side,
            price,
            qty: order.qty,
            fee,
            liquidity: Liquidity::Taker,
            last: true,
            // Paper fills happen at the logical time of the market data they fill against,
            // which keeps replays deterministic.
            ts_ns: order.ts_ns,
        }));
    }

    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport)) {
        match self.resting.iter().position(|r| r.order_id == order_id) {
            Some(at) => {
                // `remove` keeps arrival order and never reallocates.
                let r = self.resting.remove(at);
                out(ExecReport::Cancelled {
                    order_id: r.order_id,
                    instrument: r.instrument,
                    side: r.side,
                    qty: r.qty,
                });
            }
            None => out(ExecReport::CancelRejected {
                order_id,
                reason: RejectReason::UnknownOrder,
            }),
        }
    }

    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport)) {
        // Arrival order, so the reports are deterministic; `drain` keeps the capacity.
        for r in self.resting.drain(..) {
            out(ExecReport::Cancelled {
                order_id: r.order_id,
                instrument: r.instrument,
                side: r.side,
                qty: r.qty,
            });
        }
    }

    fn open_capacity(&self) -> usize {
        self.resting.capacity()
    }
}

/// What Execution hands to the cold side, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// An order as sent to the venue.
    Order(Order),
    /// The venue's answer (ack, fill, reject, cancel), or Execution's own reject of an order
    /// the kill switch stopped.
    Report(ExecReport),
}

/// Most records one order can produce through [`Exec::process`]: the order, the routing
/// decision, an ack and a fill (or a reject). The runtime reserves this many slots before it
/// takes an order.
pub const MAX_EVENTS_PER_ORDER: usize = 4;

/// A tick-to-order latency histogram in nanoseconds: 1 ns to 60 s at 3 significant digits,
/// never resized (recording saturates at the top instead of allocating).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Room kept in the report backlog beyond the gateways' open capacity, for reports a gateway's
/// `poll` delivers in one go.
const BACKLOG_SLACK: usize = 64;

/// The Execution stage's state.
#[derive(Debug)]
pub struct Exec<G: Gateway> {
    /// One per venue, in the order given.
    gateways: Vec<G>,
    /// Open orders and the gateway holding each (index into `gateways`), for cancels.
    open: Vec<(OrderId, u8)>,
    /// The most orders open at once: the gateways' open capacities added up.
    open_limit: usize,
    latency: Box<Histogram<u64>>,
    kill: KillSwitch,
    /// The kill-switch generation whose cancel-all has been done.
    kill_seen: u64,
    /// Gateway reports not yet handed on (a cancel-all can produce thousands at once; the
    /// rings take them over several polls). Allocated for the gateways' open capacity; a
    /// gateway that reports more at once makes it grow, which allocates but loses nothing.
    backlog: VecDeque<ExecReport>,
}

impl<G: Gateway> Exec<G> {
    /// Wraps one gateway per venue, guarded by `kill`. A trip that happened before this call
    /// needs no cancel-all (nothing is open at a gateway that has not been used).
    ///
    /// # Panics
    /// With no gateway, more than 255, or two for one venue: wiring errors, never runtime ones.
    pub fn new(gateways: Vec<G>, kill: KillSwitch) -> Self {
        assert!(
            !gateways.is_empty() && gateways.len() < 256,
            "one gateway per venue, at least one"
        );
        for (i, g) in gateways.iter().enumerate() {
            assert!(
                gateways[..i].iter().all(|o| o.venue() != g.venue()),
                "two gateways for {}",
                g.venue()
            );
        }
        let capacity: usize = gateways.iter().map(|g| g.open_capacity()).sum();
        Self {
            open: Vec::with_capacity(capacity),
            open_limit: capacity,
            backlog: VecDeque::with_capacity(capacity + BACKLOG_SLACK),
            gateways,
            latency: Box::new(latency_histogram()),
            kill_seen: kill.generation(),
            kill,
        }
    }

    /// Sends one approved order unless the kill switch is tripped; every record it causes goes
    /// through `out` (at most [`MAX_EVENTS_PER_ORDER`]). Returns whether the order was sent.
    ///
    /// A stopped order is not shown to the gateway: it comes back as
    /// [`ExecReport::Reject`] with [`RejectReason::KillSwitch`], which releases its open
    /// quantity at Risk. Call [`poll`](Self::poll) before each `process`, so the cancel-all of a
    /// new trip comes before any later order.
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
        let route = self
            .gateways
            .iter()
            .position(|g| g.venue() == order.venue)
            .or(if order.pin_venue { None } else { Some(0) });
        let Some(route) = route else {
            out(reject(RejectReason::NoRoute));
            return false;
        };
        if self.open.len() >= self.open_limit {
            out(reject(RejectReason::Overflow));
            return false;
        }
        let gateway = &mut self.gateways[route];
        let order = Order {
            venue: gateway.venue(),
            ..order
        };
        self.latency
            .saturating_record(now.0.saturating_sub(order.stamp.0).max(1));
        out(ExecEvent::Order(order));
        out(ExecEvent::Report(ExecReport::Routed {
            order_id: order.id,
            venue: order.venue,
        }));
        // `len < open_limit <= capacity` was checked above, so this push does not reallocate.
        self.open.push((order.id, route as u8));
        let open = &mut self.open;
        gateway.submit(&order, &mut |r| {
            forget_if_final(open, &r);
            out(ExecEvent::Report(r))
        });
        true
    }

    /// Hands one tick of market data to the gateway of its venue; its reports (fills of resting
    /// paper orders) wait in the backlog for [`poll`](Self::poll).
    #[inline]
    pub fn on_tick(&mut self, tick: &Tick) {
        let (open, backlog) = (&mut self.open, &mut self.backlog);
        if let Some(g) = self.gateways.iter_mut().find(|g| g.venue() == tick.venue) {
            g.on_tick(tick, &mut |r| {
                forget_if_final(open, &r);
                backlog.push_back(r)
            });
        }
    }

    /// Applies an operator command; its reports wait in the backlog for [`poll`](Self::poll).
    pub fn command(&mut self, cmd: ExecCommand) {
        let (open, backlog) = (&mut self.open, &mut self.backlog);
        match cmd {
            ExecCommand::Cancel(order_id) => match open.iter().find(|(id, _)| *id == order_id) {
                Some(&(_, route)) => self.gateways[usize::from(route)].cancel(order_id, &mut |r| {
                    forget_if_final(open, &r);
                    backlog.push_back(r)
                }),
                None => backlog.push_back(ExecReport::CancelRejected {
                    order_id,
                    reason: RejectReason::UnknownOrder,
                }),
            },
        }
    }

    /// After a new kill-switch trip, cancels every open order at every gateway (once per trip);
    /// otherwise lets the gateways read responses. Reports go through `out`, at most `room` of
    /// them; the rest wait in the backlog for the next polls, in order, never dropped.
    /// Returns whether anything happened.
    #[inline]
    pub fn poll(&mut self, now_ns: u64, room: usize, out: &mut impl FnMut(ExecEvent)) -> bool {
        let mut busy = false;
        let (open, backlog) = (&mut self.open, &mut self.backlog);
        let generation = self.kill.generation();
        if generation != self.kill_seen {
            self.kill_seen = generation;
            for g in &mut self.gateways {
                g.cancel_all(&mut |r| {
                    forget_if_final(open, &r);
                    backlog.push_back(r)
                });
            }
            busy = true;
        } else if backlog.is_empty() {
            for g in &mut self.gateways {
                busy |= g.poll(now_ns, &mut |r| {
                    forget_if_final(open, &r);
                    backlog.push_back(r)
                });
            }
        }
        for _ in 0..room {
            let Some(r) = backlog.pop_front() else { break };
            out(ExecEvent::Report(r));
            busy = true;
        }
        busy
    }

    /// Reports waiting for room in the rings. The runtime takes no new order while any wait,
    /// so records reach Risk and the cold side in the order they happened.
    #[inline]
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Orders open at the gateways.
    pub fn open_orders(&self) -> usize {
        self.open.len()
    }

    /// The gateways, one per venue.
    pub fn gateways(&self) -> &[G] {
        &self.gateways
    }

    /// The first gateway (the only one, in single-venue engines).
    pub fn gateway(&self) -> &G {
        &self.gateways[0]
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
}

/// Drops an order from the open table once a report says nothing of it stays open.
#[inline]
fn forget_if_final(open: &mut Vec<(OrderId, u8)>, r: &ExecReport) {
    let id = match *r {
        ExecReport::Fill(Fill {
            order_id, last: true, ..
        })
        | ExecReport::Reject { order_id, .. }
        | ExecReport::Cancelled { order_id, .. } => order_id,
        _ => return,
    };
    if let Some(at) = open.iter().position(|(o, _)| *o == id) {
        open.swap_remove(at);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ids::InstrumentId;
    use crate::records::{OrderId, Origin, Touch};

    fn order(side: Side, kind: OrderKind) -> Order {
        Order {
            id: OrderId(7),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side,
            qty: "0.02".parse().unwrap(),
            kind,
            tif: crate::records::Tif::Gtc,
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
        assert_eq!(out.len(), MAX_EVENTS_PER_ORDER);
        assert!(matches!(
            out[1],
            ExecEvent::Report(ExecReport::Routed {
                venue: Venue::Binance,
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
        assert_eq!(exec.samples(), 1);
        let h = exec.swap_histogram(Box::new(latency_histogram()));
        assert_eq!(h.max(), 250);
        assert_eq!(exec.samples(), 0);
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
}
