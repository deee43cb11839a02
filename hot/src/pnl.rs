//! Exact position and PnL accounting (average-cost method), shared by replay and Portfolio.
//!
//! The cost basis is kept as an `i128` sum of `price × qty` in 10^-16 units, so opening and
//! adding never round. Closing part of a position removes `cost × closed / |position|`,
//! truncated toward zero; that single, documented rounding is deterministic, so the same fills
//! always give the same realized PnL to the last 10^-8.

use crate::num::{Money, ONE, Price, Qty, SignedQty};
use crate::records::{Fill, Side};

/// Position, cost basis, realized PnL and fees of one instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Book {
    /// Signed position in base units.
    pub position: SignedQty,
    /// Signed cost basis of the open position in 10^-16 quote units (price raw × qty raw).
    cost: i128,
    /// Realized PnL before fees.
    pub realized: Money,
    /// Fees paid (a rebate lowers it).
    pub fees: Money,
    /// Number of fills applied.
    pub fills: u64,
}

impl Book {
    /// Applies a fill. Returns `None` (and leaves the book unchanged) on overflow.
    pub fn apply(&mut self, fill: &Fill) -> Option<()> {
        let mut next = *self;
        let qty = i128::from(fill.qty.raw());
        let signed_qty = match fill.side {
            Side::Buy => qty,
            Side::Sell => -qty,
        };
        let price = i128::from(fill.price.raw());
        let pos = i128::from(self.position.raw());
        let mut realized = 0i128;
        if pos != 0 && (pos > 0) != (signed_qty > 0) {
            // Reducing (and maybe flipping): close min(|pos|, qty) at the fill price.
            let closed = qty.min(pos.abs());
            let cost_removed = self.cost * closed / pos.abs();
            let proceeds = price * closed * pos.signum();
            realized = (proceeds - cost_removed) / i128::from(ONE);
            next.cost -= cost_removed;
            let opened = qty - closed;
            next.cost += price * opened * signed_qty.signum();
        } else {
            next.cost += price * signed_qty;
        }
        next.position = SignedQty::from_raw(i64::try_from(pos + signed_qty).ok()?)?;
        if next.position.is_zero() {
            next.cost = 0;
        }
        next.realized = Money::from_raw(i64::try_from(i128::from(self.realized.raw()) + realized).ok()?)?;
        next.fees = next.fees.checked_add(fill.fee)?;
        next.fills += 1;
        *self = next;
        Some(())
    }

    /// Unrealized PnL of the open position marked at `mark`, truncated toward zero.
    pub fn unrealized(&self, mark: Price) -> Money {
        let pos = i128::from(self.position.raw());
        let value = i128::from(mark.raw()) * pos;
        let pnl = (value - self.cost) / i128::from(ONE);
        Money::from_raw(i64::try_from(pnl).unwrap_or(if pnl > 0 { i64::MAX } else { i64::MIN })).unwrap_or(Money::ZERO)
    }

    /// Average entry price of the open position, or `None` when flat.
    pub fn avg_price(&self) -> Option<Price> {
        let pos = i128::from(self.position.raw());
        if pos == 0 {
            return None;
        }
        Price::from_raw(i64::try_from(self.cost / pos).ok()?)
    }

    /// Quantity still open, unsigned.
    pub fn open_qty(&self) -> Qty {
        self.position.abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstrumentId, Venue};
    use crate::records::{Liquidity, OrderId};

    fn fill(side: Side, price: &str, qty: &str, fee: &str) -> Fill {
        Fill {
            order_id: OrderId(1),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side,
            price: price.parse().unwrap(),
            qty: qty.parse().unwrap(),
            fee: fee.parse().unwrap(),
            liquidity: Liquidity::Taker,
            last: true,
            ts_ns: 0,
        }
    }

    #[test]
    fn round_trip_long_and_short() {
        let mut b = Book::default();
        b.apply(&fill(Side::Buy, "100", "2", "0.1")).unwrap();
        b.apply(&fill(Side::Buy, "101", "1", "0.1")).unwrap();
        assert_eq!(b.avg_price().unwrap().to_string(), "100.33333333");
        assert_eq!(b.unrealized("102".parse().unwrap()).to_string(), "5");
        // Sell 4: closes 3 at 103 (realized 3*103 - 301 = 8), opens 1 short at 103.
        b.apply(&fill(Side::Sell, "103", "4", "0.2")).unwrap();
        assert_eq!(b.realized.to_string(), "8");
        assert_eq!(b.position.to_string(), "-1");
        assert_eq!(b.avg_price().unwrap().to_string(), "103");
        b.apply(&fill(Side::Buy, "100.5", "1", "0.1")).unwrap();
        assert_eq!(b.realized.to_string(), "10.5");
        assert_eq!(b.fees.to_string(), "0.5");
        assert!(b.position.is_zero());
        assert_eq!(b.unrealized("1".parse().unwrap()), Money::ZERO);
    }

    #[test]
    fn partial_close_rounds_toward_zero_deterministically() {
        let mut b = Book::default();
        b.apply(&fill(Side::Buy, "1", "3", "0")).unwrap();
        b.apply(&fill(Side::Buy, "2", "0.00000001", "0")).unwrap();
        b.apply(&fill(Side::Sell, "1", "1", "0")).unwrap();
        // Closing a third of an odd cost basis truncates the last 10^-8.
        assert_eq!(b.realized.raw(), -0);
        let again = {
            let mut c = Book::default();
            c.apply(&fill(Side::Buy, "1", "3", "0")).unwrap();
            c.apply(&fill(Side::Buy, "2", "0.00000001", "0")).unwrap();
            c.apply(&fill(Side::Sell, "1", "1", "0")).unwrap();
            c
        };
        assert_eq!(b, again);
    }
}
