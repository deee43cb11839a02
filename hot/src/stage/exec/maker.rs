//! The maker/taker rule for orders that leave the choice to Execution ([`Tif::Auto`]).
//!
//! An order is **posted passively** — a post-only limit at our own side's touch (the bid for a
//! buy, the ask for a sell) on the chosen venue — when both hold:
//!
//! * the fee saving of a maker fill over a taker fill on that venue, `taker − maker` in basis
//!   points (a negative maker fee is a rebate and adds to the saving), is at least
//!   `exec.maker_rebate_threshold_bps`;
//! * the order is not urgent. Urgent: reduce-only orders, Risk's own orders (trims), and orders
//!   whose signal is strong, `|Σ mix| ≥ exec.urgent_score` (the mix adds up to the ensemble
//!   score).
//!
//! Otherwise it **takes**: an IOC limit at the reference price ± `exec.slip_tolerance_pct`,
//! rounded to the instrument's tick in the safe direction (down for a buy, up for a sell), so
//! it never pays more than the tolerance. The reference is the touch the order carries (the ask
//! for a buy, the bid for a sell, the last trade if that side is unknown): the market at the
//! decision, so the tolerance bounds slippage from the signal's price whichever venue the
//! router picks. Only when the order carries no price at all is the chosen venue's current
//! touch used. An order with a limit price never goes beyond it, passive or taking.
//!
//! A passive order that has not filled `exec.passive_timeout_ms` after it was posted (logical
//! time: the receive times of the ticks Execution sees) is repriced to the new touch: the
//! working order is cancelled and a post-only order for the unfilled remainder is placed, up
//! to `exec.max_reprices` times (a round where the touch has not moved keeps the order and its
//! queue place, and still counts). After the last round `exec.on_passive_timeout` decides: `take`
//! crosses the remainder with the IOC bound above (still from the signal's price, so a market
//! that ran away is not chased), `cancel` cancels it. A post-only order the venue refuses
//! because the market moved onto its price is handled the same way at once.

use crate::num::Price;
use crate::records::{Factor, Order, Origin, Side, Touch};

use super::book::Top;

/// Whether the order must trade now: reduce-only, Risk's own, or a signal at least
/// `urgent_score` strong.
#[inline]
pub(crate) fn is_urgent(order: &Order, urgent_score: Factor) -> bool {
    if order.reduce_only || order.origin == Origin::Risk {
        return true;
    }
    let score = order.mix.iter().fold(Factor::ZERO, |a, m| a.saturating_add(*m));
    score.saturating_abs() >= urgent_score
}

/// The fee saving of a maker fill over a taker fill, in thousandths of a basis point.
#[inline]
pub(crate) fn fee_saving(maker_bps_milli: i64, taker_bps_milli: i64) -> i64 {
    taker_bps_milli.saturating_sub(maker_bps_milli)
}

/// Where a passive order rests: our side's touch on the venue (else the touch the order
/// carries), never beyond the order's own limit. `None` if no price is known for that side.
#[inline]
pub(crate) fn passive_price(side: Side, top: &Top, touch: &Touch, limit: Option<Price>) -> Option<Price> {
    let venue = top.own(side).0;
    let carried = match side {
        Side::Buy => touch.bid,
        Side::Sell => touch.ask,
    };
    let own = if venue.is_zero() { carried } else { venue };
    if own.is_zero() {
        return None;
    }
    Some(match (side, limit) {
        (Side::Buy, Some(l)) => own.min(l),
        (Side::Sell, Some(l)) => own.max(l),
        _ => own,
    })
}

/// The reference price of a taking order: the touch the order carries, else the venue's.
#[inline]
pub(crate) fn reference(side: Side, touch: &Touch, top: &Top) -> Option<Price> {
    touch.taker_price(side).or_else(|| top.taker(side).map(|(p, _)| p))
}

/// The IOC bound: `reference × (1 ± slip)`, rounded to a multiple of `tick` toward the safe
/// side (down for a buy, up for a sell, and the ± part itself rounded the same way), then held
/// within the order's own limit. `slip` is a fraction (0.0005 for 0.05 %); `tick` zero means
/// the finest step. `None` only when no positive price results.
#[inline]
pub(crate) fn taker_bound(
    side: Side,
    reference: Price,
    slip: Factor,
    tick: Price,
    limit: Option<Price>,
) -> Option<Price> {
    let r = i128::from(reference.raw());
    let bits = i128::from(slip.max(Factor::ZERO).to_bits());
    let t = i128::from(tick.raw().max(1));
    let raw = match side {
        Side::Buy => {
            // floor(r × slip): never more than the tolerance, then down to the tick.
            let b = r + ((r * bits) >> 32);
            b.div_euclid(t) * t
        }
        Side::Sell => {
            // ceil(r × slip): never less than the tolerance allows, then up to the tick.
            let off = (r * bits + ((1i128 << 32) - 1)) >> 32;
            let b = r - off;
            let up = (b + t - 1).div_euclid(t) * t;
            up.max(t)
        }
    };
    let bound = Price::from_raw(i64::try_from(raw).ok()?).filter(|p| !p.is_zero())?;
    Some(match (side, limit) {
        (Side::Buy, Some(l)) => bound.min(l),
        (Side::Sell, Some(l)) => bound.max(l),
        _ => bound,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn p(s: &str) -> Price {
        s.parse().unwrap()
    }

    #[test]
    fn the_ioc_bound_rounds_toward_safety() {
        let slip = Factor::from_num(0.0005); // 0.05 %
        let tick = p("0.01");
        // 61837.64 × 1.0005 = 61868.55882: a buy may pay at most 61868.55.
        assert_eq!(
            taker_bound(Side::Buy, p("61837.64"), slip, tick, None),
            Some(p("61868.55"))
        );
        // 61837.63 × 0.9995 = 61806.711185: a sell accepts at least 61806.72.
        assert_eq!(
            taker_bound(Side::Sell, p("61837.63"), slip, tick, None),
            Some(p("61806.72"))
        );
        // A limit holds: a buy limited below the bound pays at most its limit.
        assert_eq!(
            taker_bound(Side::Buy, p("61837.64"), slip, tick, Some(p("61840"))),
            Some(p("61840"))
        );
        // Zero slip on a price on the tick is the price itself.
        assert_eq!(
            taker_bound(Side::Sell, p("100.05"), Factor::ZERO, tick, None),
            Some(p("100.05"))
        );
        // A full 100 % slip on a sell still leaves one tick, never zero.
        assert_eq!(taker_bound(Side::Sell, p("100"), Factor::ONE, tick, None), Some(tick));
    }

    #[test]
    fn passive_prices_follow_the_venue_then_the_order() {
        let top = Top {
            bid: p("100"),
            bid_qty: p_qty("1"),
            ask: p("100.02"),
            ask_qty: p_qty("1"),
            last: p("100.01"),
        };
        let touch = Touch {
            bid: p("99"),
            ask: p("101"),
            last: p("100"),
        };
        assert_eq!(passive_price(Side::Buy, &top, &touch, None), Some(p("100")));
        assert_eq!(passive_price(Side::Sell, &top, &touch, None), Some(p("100.02")));
        assert_eq!(passive_price(Side::Buy, &top, &touch, Some(p("99.5"))), Some(p("99.5")));
        assert_eq!(passive_price(Side::Buy, &Top::default(), &touch, None), Some(p("99")));
        assert_eq!(passive_price(Side::Buy, &Top::default(), &Touch::default(), None), None);
    }

    fn p_qty(s: &str) -> crate::num::Qty {
        s.parse().unwrap()
    }
}
