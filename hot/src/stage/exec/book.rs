//! The top of one venue's book for one instrument, as market data last showed it.
//!
//! Execution keeps one per (venue, instrument) for the router and the maker/taker rule; each
//! paper venue keeps one per instrument to fill against. Plain `Copy` data in fixed tables.

use crate::num::{Price, Qty};
use crate::records::{Side, TickBody};

/// Best bid and offer with their sizes, and the last trade. Zero prices mean "not seen yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Top {
    /// Best bid (zero: no bid shown).
    pub bid: Price,
    /// Size at the best bid.
    pub bid_qty: Qty,
    /// Best ask (zero: no ask shown).
    pub ask: Price,
    /// Size at the best ask.
    pub ask_qty: Qty,
    /// Last trade price (zero: none yet).
    pub last: Price,
}

impl Top {
    /// Folds one tick in: a quote replaces both sides, a trade sets the last price.
    #[inline]
    pub fn apply(&mut self, body: &TickBody) {
        match *body {
            TickBody::Trade { price, .. } => self.last = price,
            TickBody::Quote {
                bid,
                bid_qty,
                ask,
                ask_qty,
            } => {
                self.bid = bid;
                self.bid_qty = bid_qty;
                self.ask = ask;
                self.ask_qty = ask_qty;
            }
        }
    }

    /// What a taker on `side` meets: the opposite touch and the size shown there, or, when no
    /// quote has shown that side, the last trade with no size known (`None`); nothing if neither
    /// was seen.
    #[inline]
    pub fn taker(&self, side: Side) -> Option<(Price, Option<Qty>)> {
        let (price, size) = match side {
            Side::Buy => (self.ask, self.ask_qty),
            Side::Sell => (self.bid, self.bid_qty),
        };
        if !price.is_zero() && !size.is_zero() {
            Some((price, Some(size)))
        } else if !self.last.is_zero() {
            Some((self.last, None))
        } else {
            None
        }
    }

    /// Our own side's touch (the bid for a buy, the ask for a sell) and its size; a zero price
    /// when that side has not been shown.
    #[inline]
    pub fn own(&self, side: Side) -> (Price, Qty) {
        match side {
            Side::Buy => (self.bid, self.bid_qty),
            Side::Sell => (self.ask, self.ask_qty),
        }
    }
}
