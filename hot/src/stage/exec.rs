//! Execution: takes approved orders to a venue gateway and reports what happened.
//!
//! Gateways sit behind the [`Gateway`] trait and are chosen by generic parameter (static
//! dispatch on the hot path). This first version ships the in-process [`PaperVenue`], which
//! fills marketable orders at the touch the order carries, with a configured taker fee.
//! Execution also records tick-to-order latency (from the tick's receive stamp to the moment the
//! order is handed to the gateway) into its own HdrHistogram, which the runtime hands to the
//! cold side periodically by swapping it for an empty one (no sharing, no allocation).

use hdrhistogram::Histogram;

use crate::num::{fee, notional};
use crate::records::{ExecReport, Fill, Liquidity, Order, OrderKind, RejectReason, Side, Stamp};

/// A venue's order entry, driven from the Execution thread.
pub trait Gateway {
    /// Sends an order; what the venue says comes back through `out`, now or from [`poll`].
    ///
    /// [`poll`]: Gateway::poll
    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport));

    /// Gives the gateway a chance to read responses; returns `true` if it did any work.
    fn poll(&mut self, _out: &mut impl FnMut(ExecReport)) -> bool {
        false
    }
}

/// The in-process paper venue: immediate taker fills at the order's touch.
///
/// A market order buys at the ask and sells at the bid (the last trade if that side is
/// unknown); a limit order fills the same way if it is marketable at that price and is
/// rejected otherwise, because resting orders and queue position arrive with the Execution
/// issue. Fees are rounded up to 10^-8 (see [`crate::num::fee`]).
#[derive(Debug)]
pub struct PaperVenue {
    taker_fee_bps_milli: i64,
    next_venue_order_id: u64,
}

impl PaperVenue {
    /// A paper venue charging `taker_fee_bps_milli` thousandths of a basis point per fill.
    pub fn new(taker_fee_bps_milli: i64) -> Self {
        Self {
            taker_fee_bps_milli,
            next_venue_order_id: 1,
        }
    }
}

impl Gateway for PaperVenue {
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
        let price = match order.kind {
            OrderKind::Market => touch,
            OrderKind::Limit(limit) => {
                let marketable = match order.side {
                    Side::Buy => limit >= touch,
                    Side::Sell => limit <= touch,
                };
                if !marketable {
                    return out(reject(RejectReason::VenueReject));
                }
                touch
            }
        };
        let Some(fee) = notional(price, order.qty).and_then(|n| fee(n, self.taker_fee_bps_milli)) else {
            return out(reject(RejectReason::Overflow));
        };
        let venue_order_id = self.next_venue_order_id;
        self.next_venue_order_id += 1;
        out(ExecReport::Ack {
            order_id: order.id,
            venue_order_id,
        });
        out(ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: order.venue,
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
}

/// What Execution hands to the cold side, in the order it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecEvent {
    /// An order as sent to the venue.
    Order(Order),
    /// The venue's answer (ack, fill, reject).
    Report(ExecReport),
}

/// Most records one order can produce through [`Exec::process`]: the order, an ack and a fill
/// (or a reject). The runtime reserves this many slots before it takes an order.
pub const MAX_EVENTS_PER_ORDER: usize = 3;

/// A tick-to-order latency histogram in nanoseconds: 1 ns to 60 s at 3 significant digits,
/// never resized (recording saturates at the top instead of allocating).
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// The Execution stage's state.
#[derive(Debug)]
pub struct Exec<G: Gateway> {
    gateway: G,
    latency: Box<Histogram<u64>>,
}

impl<G: Gateway> Exec<G> {
    /// Wraps a gateway.
    pub fn new(gateway: G) -> Self {
        Self {
            gateway,
            latency: Box::new(latency_histogram()),
        }
    }

    /// Sends one approved order; every record it causes goes through `out`.
    #[inline]
    pub fn process(&mut self, order: Order, now: Stamp, out: &mut impl FnMut(ExecEvent)) {
        self.latency
            .saturating_record(now.0.saturating_sub(order.stamp.0).max(1));
        out(ExecEvent::Order(order));
        self.gateway.submit(&order, &mut |r| out(ExecEvent::Report(r)));
    }

    /// Lets the gateway read responses.
    #[inline]
    pub fn poll(&mut self, out: &mut impl FnMut(ExecEvent)) -> bool {
        self.gateway.poll(&mut |r| out(ExecEvent::Report(r)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstrumentId, Venue};
    use crate::records::{OrderId, Origin, Touch};

    fn order(side: Side, kind: OrderKind) -> Order {
        Order {
            id: OrderId(7),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side,
            qty: "0.02".parse().unwrap(),
            kind,
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

    #[test]
    fn paper_fills_takers_at_the_touch_with_fee() {
        let mut exec = Exec::new(PaperVenue::new(7_500));
        let mut out = Vec::new();
        exec.process(order(Side::Buy, OrderKind::Market), Stamp(350), &mut |e| out.push(e));
        assert_eq!(out.len(), MAX_EVENTS_PER_ORDER);
        let ExecEvent::Report(ExecReport::Fill(f)) = out[2] else {
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
    fn non_marketable_limits_are_rejected() {
        let mut exec = Exec::new(PaperVenue::new(0));
        let mut out = Vec::new();
        let limit = OrderKind::Limit("61000".parse().unwrap());
        exec.process(order(Side::Buy, limit), Stamp(101), &mut |e| out.push(e));
        assert!(matches!(
            out[1],
            ExecEvent::Report(ExecReport::Reject {
                reason: RejectReason::VenueReject,
                ..
            })
        ));
        out.clear();
        exec.process(order(Side::Sell, limit), Stamp(101), &mut |e| out.push(e));
        let ExecEvent::Report(ExecReport::Fill(f)) = out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(f.price.to_string(), "61837.63");
    }
}
