//! [`Books`]: one exact average-cost [`Book`] per (venue, symbol), fed with `fills` entries in
//! stream order and idempotent by entry id.

use std::collections::BTreeMap;
use std::fmt;

use maxx_hot::ids::{InstrumentId, Symbol, Venue};
use maxx_hot::num::{Money, Price, SignedQty};
use maxx_hot::pnl::Book;
use maxx_hot::records::{Fill, OrderId};
use serde::{Serialize, Serializer};

use crate::bus::consume::{EntryId, FillRecord};

/// The books of every (venue, symbol) that has had a fill, and what was read to build them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Books {
    books: BTreeMap<(Venue, Symbol), Book>,
    last_id: EntryId,
    applied: u64,
    skipped_garbage: u64,
    skipped_overflow: u64,
}

impl Books {
    /// Empty books; nothing read yet (`last_id` is `0-0`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the fill of entry `id`, unless `id` is not above the last entry consumed
    /// (already counted). Returns whether the fill changed the books. A fill that would
    /// overflow its book is consumed but not applied, and counted in `skipped_overflow`.
    pub fn apply(&mut self, id: EntryId, fill: &FillRecord) -> bool {
        if id <= self.last_id {
            return false;
        }
        self.last_id = id;
        let hot = Fill {
            order_id: OrderId(fill.order_id),
            // `Book` does not read the instrument; the key of the map says which one it is.
            instrument: InstrumentId(0),
            venue: fill.venue,
            side: fill.side,
            price: fill.price,
            qty: fill.qty,
            fee: fill.fee,
            liquidity: fill.liquidity,
            last: false,
            ts_ns: fill.ts,
        };
        let book = self.books.entry((fill.venue, fill.symbol)).or_default();
        if book.apply(&hot).is_none() {
            self.skipped_overflow += 1;
            return false;
        }
        self.applied += 1;
        true
    }

    /// Counts entry `id` as one that does not decode, unless `id` is not above the last entry
    /// consumed. Returns whether it was counted.
    pub fn skip_garbage(&mut self, id: EntryId) -> bool {
        if id <= self.last_id {
            return false;
        }
        self.last_id = id;
        self.skipped_garbage += 1;
        true
    }

    /// The book of `symbol` on `venue`, if it has had a fill.
    pub fn book(&self, venue: Venue, symbol: Symbol) -> Option<&Book> {
        self.books.get(&(venue, symbol))
    }

    /// Every book, ordered by venue then symbol.
    pub fn iter(&self) -> impl Iterator<Item = (Venue, Symbol, &Book)> {
        self.books.iter().map(|(&(v, s), b)| (v, s, b))
    }

    /// The id of the last entry consumed (applied, garbage or overflowing); `0-0` if none.
    pub fn last_id(&self) -> EntryId {
        self.last_id
    }

    /// Fills applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Entries that did not decode.
    pub fn skipped_garbage(&self) -> u64 {
        self.skipped_garbage
    }

    /// Fills that would have overflowed their book (never seen with real sizes).
    pub fn skipped_overflow(&self) -> u64 {
        self.skipped_overflow
    }

    /// Realized PnL of all books, before fees.
    pub fn total_realized(&self) -> Money {
        sum(self.books.values().map(|b| b.realized))
    }

    /// Fees of all books.
    pub fn total_fees(&self) -> Money {
        sum(self.books.values().map(|b| b.fees))
    }

    /// A serialisable copy of the state.
    pub fn snapshot(&self) -> Snapshot {
        let positions = self
            .iter()
            .map(|(venue, symbol, b)| PositionView {
                venue,
                symbol,
                position: b.position,
                avg_price: b.avg_price(),
                realized: b.realized,
                fees: b.fees,
                net: net(b.realized, b.fees),
                fills: b.fills,
            })
            .collect();
        let (realized, fees) = (self.total_realized(), self.total_fees());
        Snapshot {
            positions,
            totals: Totals {
                realized,
                fees,
                net: net(realized, fees),
            },
            last_id: self.last_id,
            applied: self.applied,
            skipped_garbage: self.skipped_garbage,
            skipped_overflow: self.skipped_overflow,
        }
    }
}

/// Exact sum, saturating at the bounds of [`Money`] (±92 billion, far beyond any real book).
pub(super) fn sum(values: impl Iterator<Item = Money>) -> Money {
    saturate(values.map(|m| i128::from(m.raw())).sum())
}

/// `realized − fees`, saturating.
pub(super) fn net(realized: Money, fees: Money) -> Money {
    saturate(i128::from(realized.raw()) - i128::from(fees.raw()))
}

pub(super) fn saturate(raw: i128) -> Money {
    let clamped = raw.clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    Money::from_raw(clamped as i64).unwrap_or(Money::ZERO)
}

/// The Portfolio's state for operators (`GET /pnl`). Amounts are exact; in JSON they are
/// canonical decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// One row per (venue, symbol) that has had a fill, ordered by venue then symbol.
    pub positions: Vec<PositionView>,
    /// Sums over all rows.
    pub totals: Totals,
    /// The last `fills` entry consumed (`0-0` before the first).
    #[serde(serialize_with = "as_text")]
    pub last_id: EntryId,
    /// Fills applied.
    pub applied: u64,
    /// Entries of `fills` that did not decode.
    pub skipped_garbage: u64,
    /// Fills that would have overflowed their book.
    pub skipped_overflow: u64,
}

/// One venue and symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PositionView {
    /// The venue.
    #[serde(serialize_with = "venue_name")]
    pub venue: Venue,
    /// The symbol.
    #[serde(serialize_with = "as_text")]
    pub symbol: Symbol,
    /// Signed position (long positive).
    #[serde(serialize_with = "as_text")]
    pub position: SignedQty,
    /// Average entry price of the open position; `None` when flat.
    #[serde(serialize_with = "opt_text")]
    pub avg_price: Option<Price>,
    /// Realized PnL before fees.
    #[serde(serialize_with = "as_text")]
    pub realized: Money,
    /// Fees paid (rebates lower it).
    #[serde(serialize_with = "as_text")]
    pub fees: Money,
    /// `realized − fees`.
    #[serde(serialize_with = "as_text")]
    pub net: Money,
    /// Fills applied.
    pub fills: u64,
}

/// Sums over all books.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Realized PnL before fees.
    #[serde(serialize_with = "as_text")]
    pub realized: Money,
    /// Fees.
    #[serde(serialize_with = "as_text")]
    pub fees: Money,
    /// `realized − fees`.
    #[serde(serialize_with = "as_text")]
    pub net: Money,
}

pub(super) fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

pub(super) fn opt_text<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

pub(super) fn venue_name<S: Serializer>(venue: &Venue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(venue.name())
}

#[cfg(test)]
mod tests {
    use maxx_hot::records::{Liquidity, Side};

    use super::*;

    fn fill(venue: Venue, symbol: &str, side: Side, price: &str, qty: &str, fee: &str) -> FillRecord {
        FillRecord {
            ts: 1,
            order_id: 1,
            price: price.parse().unwrap(),
            fee: fee.parse().unwrap(),
            qty: qty.parse().unwrap(),
            side,
            symbol: Symbol::new(symbol).unwrap(),
            venue,
            liquidity: Liquidity::Taker,
        }
    }

    fn id(ms: u64, seq: u64) -> EntryId {
        EntryId { ms, seq }
    }

    #[test]
    fn entries_not_above_the_last_one_are_ignored() {
        let mut b = Books::new();
        let buy = fill(Venue::Binance, "BTCUSDT", Side::Buy, "100", "2", "0.1");
        assert!(b.apply(id(5, 0), &buy));
        assert!(!b.apply(id(5, 0), &buy), "the same entry again");
        assert!(!b.apply(id(4, 9), &buy), "an older entry");
        assert!(!b.skip_garbage(id(5, 0)));
        assert!(b.skip_garbage(id(5, 1)));
        assert!(!b.skip_garbage(id(5, 1)));
        assert!(!b.apply(id(5, 1), &buy), "an id consumed as garbage");
        assert!(b.apply(id(6, 0), &buy));
        assert_eq!((b.applied(), b.skipped_garbage(), b.last_id()), (2, 1, id(6, 0)));
        let book = b.book(Venue::Binance, Symbol::new("BTCUSDT").unwrap()).unwrap();
        assert_eq!(book.position.to_string(), "4");
        assert_eq!(book.fills, 2);
        assert_eq!(book.fees.to_string(), "0.2");
    }

    #[test]
    fn books_are_kept_per_venue_and_symbol_with_fees_apart() {
        let mut b = Books::new();
        let fills = [
            fill(Venue::Binance, "BTCUSDT", Side::Buy, "100", "2", "0.1"),
            fill(Venue::Bybit, "BTCUSDT", Side::Sell, "101", "1", "-0.01"),
            fill(Venue::Binance, "BTCUSDT", Side::Sell, "103", "3", "0.2"),
            fill(Venue::Binance, "ETHUSDT", Side::Buy, "10", "1", "0"),
        ];
        for (i, f) in fills.iter().enumerate() {
            assert!(b.apply(id(i as u64 + 1, 0), f));
        }
        let s = b.snapshot();
        let rows: Vec<_> = s
            .positions
            .iter()
            .map(|p| {
                (
                    p.venue.name(),
                    p.symbol.as_str().to_string(),
                    p.position.to_string(),
                    p.avg_price.map(|a| a.to_string()),
                    p.realized.to_string(),
                    p.fees.to_string(),
                    p.net.to_string(),
                    p.fills,
                )
            })
            .collect();
        let row = |v, s: &str, pos: &str, avg: Option<&str>, r: &str, f: &str, n: &str, c| {
            (
                v,
                s.to_string(),
                pos.to_string(),
                avg.map(str::to_string),
                r.to_string(),
                f.to_string(),
                n.to_string(),
                c,
            )
        };
        assert_eq!(
            rows,
            [
                // Long 2 at 100, sell 3 at 103: realizes 6, flips to short 1 at 103.
                row("binance", "BTCUSDT", "-1", Some("103"), "6", "0.3", "5.7", 2),
                row("binance", "ETHUSDT", "1", Some("10"), "0", "0", "0", 1),
                // A rebate is a negative fee and raises net.
                row("bybit", "BTCUSDT", "-1", Some("101"), "0", "-0.01", "0.01", 1),
            ]
        );
        assert_eq!(
            (
                s.totals.realized.to_string(),
                s.totals.fees.to_string(),
                s.totals.net.to_string()
            ),
            ("6".to_string(), "0.29".to_string(), "5.71".to_string())
        );
    }

    #[test]
    fn the_snapshot_serialises_amounts_as_exact_decimal_strings() {
        let mut b = Books::new();
        b.apply(
            id(7, 3),
            &fill(Venue::Coinbase, "SOLUSDT", Side::Buy, "150.5", "0.1", "0.015"),
        );
        b.apply(
            id(7, 4),
            &fill(Venue::Coinbase, "SOLUSDT", Side::Sell, "151", "0.1", "0.015"),
        );
        b.skip_garbage(id(8, 0));
        let json = serde_json::to_value(b.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "positions": [{
                    "venue": "coinbase",
                    "symbol": "SOLUSDT",
                    "position": "0",
                    "avg_price": null,
                    "realized": "0.05",
                    "fees": "0.03",
                    "net": "0.02",
                    "fills": 2
                }],
                "totals": {"realized": "0.05", "fees": "0.03", "net": "0.02"},
                "last_id": "8-0",
                "applied": 2,
                "skipped_garbage": 1,
                "skipped_overflow": 0
            })
        );
    }

    #[test]
    fn a_fill_that_would_overflow_is_consumed_not_applied() {
        let mut b = Books::new();
        let huge = fill(Venue::Binance, "BTCUSDT", Side::Buy, "1", "92233720368", "0");
        assert!(b.apply(id(1, 0), &huge));
        assert!(!b.apply(id(2, 0), &huge), "the position would pass i64");
        assert_eq!((b.applied(), b.skipped_overflow(), b.last_id()), (1, 1, id(2, 0)));
    }
}
