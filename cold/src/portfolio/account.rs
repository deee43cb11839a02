//! [`Account`]: the whole picture the Portfolio keeps — [`Books`] per venue and symbol, marks,
//! cash per currency, equity, the intraday drawdown, the lock-box and the payouts ledger.
//!
//! # Accounting
//! - **Positions, realized PnL, fees**: [`Books`] (average cost; see `maxx_hot::pnl::Book`).
//! - **Marks**: the latest mid (or trade price) per symbol, given by the run loop. A position
//!   without a mark yet is valued at its average price (unrealized 0).
//! - **Unrealized** per book: `Book::unrealized(mark)`, truncated toward zero at 10^-8.
//! - **Currencies**: each symbol is accounted in its quote asset. The account currency
//!   (`portfolio.currency`) holds the starting balance, the lock-box and the payouts; other
//!   currencies are reported on their own and never converted (no FX rates are assumed).
//! - **Equity** of a currency = starting balance (account currency only) + realized − fees +
//!   unrealized − payouts (account currency only). **Cash** of a currency = starting balance +
//!   sell notionals − buy notionals − fees − payouts, summed exactly (10^-16) and truncated once;
//!   cash + position value equals equity up to the 10^-8 truncations of closing fills.
//! - **Lock-box**: whenever realized PnL net of fees in the account currency rises above its
//!   high-water mark, `lockbox_pct` % of the rise (truncated at 10^-8) moves into the lock-box and
//!   the mark rises to it; a fall never takes anything back. The lock-box is not trading capital:
//!   `trading_capital = equity − lockbox`. `POST /sweep` pays the whole lock-box out: the payout is
//!   recorded (stream `payouts`), the lock-box goes to 0 and cash and equity fall by the amount.
//! - **Drawdown**: measured on *performance equity* = equity + everything paid out, so that a
//!   payout is not a loss. Per UTC day: the first observation of the day is its start, the
//!   highest its high-water mark; `drawdown_pct = (high − now) / high × 100`.
//!
//! Fills are idempotent by entry id ([`Books`]); payouts by entry id and by idempotency key, so
//! a rebuild from the streams reaches the same state whatever was read twice.

use std::collections::BTreeMap;

use maxx_hot::ids::Symbol;
use maxx_hot::num::{Money, ONE, Price};
use maxx_hot::records::Side;
use serde::Serialize;

use super::books::{Books, as_text, net, opt_text, saturate, sum, venue_name};
use crate::bus::consume::{EntryId, FillRecord};

const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// What an [`Account`] is counted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountConfig {
    /// The account currency (`USDT`).
    pub currency: String,
    /// Cash in the account currency at the start (`exec.paper.starting_balance`).
    pub starting: Money,
    /// Percent (0 to 100) of each rise of realized PnL above its high-water mark that goes
    /// into the lock-box.
    pub lockbox_pct: Money,
    /// The quote asset of each symbol; a symbol not listed is accounted in the account
    /// currency.
    pub quotes: BTreeMap<Symbol, String>,
}

/// One payout of the lock-box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payout {
    /// The caller's idempotency key.
    pub key: String,
    /// The amount paid out, in `currency`.
    #[serde(serialize_with = "as_text")]
    pub amount: Money,
    /// The account currency.
    pub currency: String,
    /// When (ns since the epoch).
    pub ts: u64,
    /// Its entry id on the `payouts` stream.
    #[serde(serialize_with = "as_text")]
    pub id: EntryId,
}

/// What a sweep with a given key would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SweepPlan {
    /// The key was used before: answer with that payout again, change nothing.
    Repeat(Payout),
    /// The lock-box is empty: nothing to pay.
    Empty,
    /// Pay this amount out.
    Pay(Money),
}

/// Day start and high of performance equity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Day {
    day: u64,
    start: Money,
    high: Money,
}

/// The Portfolio's accounts. See the module docs for the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    config: AccountConfig,
    books: Books,
    marks: BTreeMap<Symbol, Price>,
    /// Cash flows of fills per currency, in 10^-16 units.
    flows: BTreeMap<String, i128>,
    /// Realized PnL net of fees (account currency) that the lock-box has taken its share of.
    lockbox_mark: Money,
    /// Everything that went into the lock-box.
    lockbox_in: Money,
    payouts: Vec<Payout>,
    payouts_last: EntryId,
    day: Option<Day>,
}

impl Account {
    /// An account with no fills, marks or payouts yet.
    pub fn new(config: AccountConfig) -> Self {
        Self {
            config,
            books: Books::new(),
            marks: BTreeMap::new(),
            flows: BTreeMap::new(),
            lockbox_mark: Money::ZERO,
            lockbox_in: Money::ZERO,
            payouts: Vec::new(),
            payouts_last: EntryId::default(),
            day: None,
        }
    }

    /// What it counts in.
    pub fn config(&self) -> &AccountConfig {
        &self.config
    }

    /// The books (positions, realized, fees; ids consumed).
    pub fn books(&self) -> &Books {
        &self.books
    }

    /// Mutable books, for counting entries that do not decode.
    pub fn books_mut(&mut self) -> &mut Books {
        &mut self.books
    }

    /// The quote currency of `symbol`.
    pub fn currency_of(&self, symbol: Symbol) -> &str {
        self.config.quotes.get(&symbol).unwrap_or(&self.config.currency)
    }

    /// Applies the fill of `fills` entry `id` (ignored if `id` is not above the last one
    /// consumed); returns whether it changed the books.
    pub fn apply_fill(&mut self, id: EntryId, fill: &FillRecord) -> bool {
        if !self.books.apply(id, fill) {
            return false;
        }
        let notional = i128::from(fill.price.raw()) * i128::from(fill.qty.raw());
        let fee = i128::from(fill.fee.raw()) * i128::from(ONE);
        let flow = match fill.side {
            Side::Buy => -notional - fee,
            Side::Sell => notional - fee,
        };
        let currency = self.currency_of(fill.symbol).to_string();
        *self.flows.entry(currency).or_default() += flow;
        self.take_lockbox_share();
        true
    }

    /// Realized PnL net of fees in the account currency.
    fn realized_net(&self) -> Money {
        let acct = &self.config.currency;
        let books = || {
            self.books
                .iter()
                .filter(|(_, s, _)| self.currency_of(*s) == acct.as_str())
        };
        net(
            sum(books().map(|(_, _, b)| b.realized)),
            sum(books().map(|(_, _, b)| b.fees)),
        )
    }

    /// Moves the lock-box's share of any rise of realized PnL above its mark.
    fn take_lockbox_share(&mut self) {
        let now = self.realized_net();
        if now <= self.lockbox_mark {
            return;
        }
        let rise = i128::from(now.raw()) - i128::from(self.lockbox_mark.raw());
        let share = rise * i128::from(self.config.lockbox_pct.raw()) / (100 * i128::from(ONE));
        self.lockbox_in = saturate(i128::from(self.lockbox_in.raw()) + share);
        self.lockbox_mark = now;
    }

    /// Every mark.
    pub fn marks(&self) -> impl Iterator<Item = (Symbol, Price)> + '_ {
        self.marks.iter().map(|(s, p)| (*s, *p))
    }

    /// Sets the mark of `symbol`; a zero price (no market yet) is ignored.
    pub fn mark(&mut self, symbol: Symbol, price: Price) {
        if price.raw() > 0 {
            self.marks.insert(symbol, price);
        }
    }

    /// What a sweep with `key` would do now.
    pub fn plan_sweep(&self, key: &str) -> SweepPlan {
        if let Some(p) = self.payouts.iter().find(|p| p.key == key) {
            return SweepPlan::Repeat(p.clone());
        }
        let lockbox = self.lockbox();
        if lockbox.raw() <= 0 {
            SweepPlan::Empty
        } else {
            SweepPlan::Pay(lockbox)
        }
    }

    /// Records a payout (from a sweep, or read back from `payouts`); ignored if its id is not
    /// above the last one or its key was used. Returns whether it was recorded.
    pub fn apply_payout(&mut self, payout: Payout) -> bool {
        if payout.id <= self.payouts_last || self.payouts.iter().any(|p| p.key == payout.key) {
            return false;
        }
        self.payouts_last = payout.id;
        self.payouts.push(payout);
        true
    }

    /// The id of the last `payouts` entry recorded.
    pub fn payouts_last(&self) -> EntryId {
        self.payouts_last
    }

    /// Every payout, oldest first.
    pub fn payouts(&self) -> &[Payout] {
        &self.payouts
    }

    /// Everything paid out (account currency).
    pub fn paid(&self) -> Money {
        sum(self.payouts.iter().map(|p| p.amount))
    }

    /// Everything that went into the lock-box, paid out or not: profit that is no longer
    /// trading capital (what Risk is told to set aside).
    pub fn set_aside(&self) -> Money {
        self.lockbox_in
    }

    /// The lock-box balance: everything that went in, less what was paid out.
    pub fn lockbox(&self) -> Money {
        net(self.lockbox_in, self.paid())
    }

    fn unrealized_of(&self, symbol: Symbol, book: &maxx_hot::pnl::Book) -> Money {
        match self.marks.get(&symbol) {
            Some(m) => book.unrealized(*m),
            None => Money::ZERO,
        }
    }

    /// The figures of one currency.
    fn currency_view(&self, currency: &str) -> CurrencyView {
        let acct = currency == self.config.currency;
        let books: Vec<_> = self
            .books
            .iter()
            .filter(|(_, s, _)| self.currency_of(*s) == currency)
            .collect();
        let realized = sum(books.iter().map(|(_, _, b)| b.realized));
        let fees = sum(books.iter().map(|(_, _, b)| b.fees));
        let unrealized = sum(books.iter().map(|(_, s, b)| self.unrealized_of(*s, b)));
        let (starting, paid) = if acct {
            (self.config.starting, self.paid())
        } else {
            (Money::ZERO, Money::ZERO)
        };
        let equity = saturate(
            i128::from(starting.raw()) + i128::from(realized.raw()) - i128::from(fees.raw())
                + i128::from(unrealized.raw())
                - i128::from(paid.raw()),
        );
        let flows = self.flows.get(currency).copied().unwrap_or(0) / i128::from(ONE);
        let cash = saturate(i128::from(starting.raw()) + flows - i128::from(paid.raw()));
        CurrencyView {
            cash,
            realized,
            fees,
            net: net(realized, fees),
            unrealized,
            equity,
        }
    }

    /// The `pnl` stream's figures in the account currency: equity, realized PnL net of fees,
    /// unrealized PnL.
    pub fn headline(&self) -> (Money, Money, Money) {
        let v = self.currency_view(&self.config.currency);
        (v.equity, v.net, v.unrealized)
    }

    /// Equity in the account currency.
    pub fn equity(&self) -> Money {
        self.currency_view(&self.config.currency).equity
    }

    /// Equity plus everything paid out: what the drawdown rule watches.
    pub fn performance_equity(&self) -> Money {
        saturate(i128::from(self.equity().raw()) + i128::from(self.paid().raw()))
    }

    /// Equity less the lock-box: the capital Risk sizes trades against.
    pub fn trading_capital(&self) -> Money {
        net(self.equity(), self.lockbox())
    }

    /// Records performance equity at `now_ns` for the intraday drawdown (a new UTC day starts
    /// from the first observation in it).
    pub fn observe(&mut self, now_ns: u64) {
        let perf = self.performance_equity();
        let today = now_ns / NS_PER_DAY;
        match &mut self.day {
            Some(d) if d.day == today => d.high = d.high.max(perf),
            slot => {
                *slot = Some(Day {
                    day: today,
                    start: perf,
                    high: perf,
                })
            }
        }
    }

    /// Intraday drawdown from the day's high, in percent with 8 decimals (truncated); 0 before
    /// the first observation or while the high is not positive.
    pub fn drawdown_pct(&self) -> Money {
        let Some(d) = self.day else { return Money::ZERO };
        let high = i128::from(d.high.raw());
        if high <= 0 {
            return Money::ZERO;
        }
        let fall = (high - i128::from(self.performance_equity().raw())).max(0);
        saturate(fall * 100 * i128::from(ONE) / high)
    }

    /// The whole picture, for `GET /pnl`.
    pub fn view(&self) -> AccountView {
        let acct = self.config.currency.clone();
        let mut currencies: Vec<String> = self
            .books
            .iter()
            .map(|(_, s, _)| self.currency_of(s).to_string())
            .collect();
        currencies.push(acct.clone());
        currencies.sort();
        currencies.dedup();
        let by_currency = currencies.iter().map(|c| (c.clone(), self.currency_view(c))).collect();
        let main = self.currency_view(&acct);
        let positions = self
            .books
            .iter()
            .map(|(venue, symbol, b)| PositionRow {
                venue,
                symbol,
                currency: self.currency_of(symbol).to_string(),
                position: b.position,
                avg_price: b.avg_price(),
                mark: self.marks.get(&symbol).copied(),
                realized: b.realized,
                fees: b.fees,
                unrealized: self.unrealized_of(symbol, b),
                fills: b.fills,
            })
            .collect();
        AccountView {
            currency: acct,
            equity: main.equity,
            realized: main.realized,
            unrealized: main.unrealized,
            fees: main.fees,
            cash: main.cash,
            starting_balance: self.config.starting,
            trading_capital: self.trading_capital(),
            lockbox: LockboxView {
                pct: self.config.lockbox_pct,
                balance: self.lockbox(),
                total_in: self.lockbox_in,
                paid: self.paid(),
                realized_mark: self.lockbox_mark,
            },
            drawdown: DrawdownView {
                day_start: self.day.map(|d| d.start),
                day_high: self.day.map(|d| d.high),
                performance_equity: self.performance_equity(),
                pct: self.drawdown_pct(),
            },
            by_currency,
            positions,
            payouts: self.payouts.clone(),
            fills_last_id: self.books.last_id(),
            payouts_last_id: self.payouts_last,
            fills_applied: self.books.applied(),
            skipped_garbage: self.books.skipped_garbage(),
            skipped_overflow: self.books.skipped_overflow(),
        }
    }
}

/// One currency's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CurrencyView {
    /// Cash.
    #[serde(serialize_with = "as_text")]
    pub cash: Money,
    /// Realized PnL before fees.
    #[serde(serialize_with = "as_text")]
    pub realized: Money,
    /// Fees.
    #[serde(serialize_with = "as_text")]
    pub fees: Money,
    /// Realized − fees.
    #[serde(serialize_with = "as_text")]
    pub net: Money,
    /// Unrealized PnL at the marks.
    #[serde(serialize_with = "as_text")]
    pub unrealized: Money,
    /// Equity.
    #[serde(serialize_with = "as_text")]
    pub equity: Money,
}

/// One venue and symbol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PositionRow {
    /// The venue.
    #[serde(serialize_with = "venue_name")]
    pub venue: maxx_hot::ids::Venue,
    /// The symbol.
    #[serde(serialize_with = "as_text")]
    pub symbol: Symbol,
    /// Its quote currency.
    pub currency: String,
    /// Signed position.
    #[serde(serialize_with = "as_text")]
    pub position: maxx_hot::num::SignedQty,
    /// Average entry price; `null` when flat.
    #[serde(serialize_with = "opt_text")]
    pub avg_price: Option<Price>,
    /// The mark; `null` before the first one.
    #[serde(serialize_with = "opt_text")]
    pub mark: Option<Price>,
    /// Realized PnL before fees.
    #[serde(serialize_with = "as_text")]
    pub realized: Money,
    /// Fees.
    #[serde(serialize_with = "as_text")]
    pub fees: Money,
    /// Unrealized PnL at the mark.
    #[serde(serialize_with = "as_text")]
    pub unrealized: Money,
    /// Fills applied.
    pub fills: u64,
}

/// The lock-box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LockboxView {
    /// Percent of each rise of realized PnL that goes in.
    #[serde(serialize_with = "as_text")]
    pub pct: Money,
    /// What it holds now.
    #[serde(serialize_with = "as_text")]
    pub balance: Money,
    /// Everything that went in.
    #[serde(serialize_with = "as_text")]
    pub total_in: Money,
    /// Everything paid out.
    #[serde(serialize_with = "as_text")]
    pub paid: Money,
    /// The realized-PnL high-water mark it last took a share of.
    #[serde(serialize_with = "as_text")]
    pub realized_mark: Money,
}

/// The intraday drawdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DrawdownView {
    /// Performance equity at the day's first observation.
    #[serde(serialize_with = "opt_text")]
    pub day_start: Option<Money>,
    /// The day's highest performance equity.
    #[serde(serialize_with = "opt_text")]
    pub day_high: Option<Money>,
    /// Equity plus payouts, now.
    #[serde(serialize_with = "as_text")]
    pub performance_equity: Money,
    /// Percent below the day's high.
    #[serde(serialize_with = "as_text")]
    pub pct: Money,
}

/// Everything `GET /pnl` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account currency.
    pub currency: String,
    /// Equity (account currency).
    #[serde(serialize_with = "as_text")]
    pub equity: Money,
    /// Realized PnL before fees (account currency).
    #[serde(serialize_with = "as_text")]
    pub realized: Money,
    /// Unrealized PnL (account currency).
    #[serde(serialize_with = "as_text")]
    pub unrealized: Money,
    /// Fees (account currency).
    #[serde(serialize_with = "as_text")]
    pub fees: Money,
    /// Cash (account currency).
    #[serde(serialize_with = "as_text")]
    pub cash: Money,
    /// The starting balance.
    #[serde(serialize_with = "as_text")]
    pub starting_balance: Money,
    /// Equity less the lock-box.
    #[serde(serialize_with = "as_text")]
    pub trading_capital: Money,
    /// The lock-box.
    pub lockbox: LockboxView,
    /// The intraday drawdown.
    pub drawdown: DrawdownView,
    /// Per currency.
    pub by_currency: BTreeMap<String, CurrencyView>,
    /// Per venue and symbol.
    pub positions: Vec<PositionRow>,
    /// The payouts ledger, oldest first.
    pub payouts: Vec<Payout>,
    /// The last `fills` entry consumed.
    #[serde(serialize_with = "as_text")]
    pub fills_last_id: EntryId,
    /// The last `payouts` entry recorded.
    #[serde(serialize_with = "as_text")]
    pub payouts_last_id: EntryId,
    /// Fills applied.
    pub fills_applied: u64,
    /// `fills` entries that did not decode.
    pub skipped_garbage: u64,
    /// Fills that would have overflowed a book.
    pub skipped_overflow: u64,
}

#[cfg(test)]
mod tests {
    use maxx_hot::ids::Venue;
    use maxx_hot::records::Liquidity;

    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap()
    }

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn account(pct: &str) -> Account {
        Account::new(AccountConfig {
            currency: "USDT".into(),
            starting: money("1000"),
            lockbox_pct: money(pct),
            quotes: [
                (sym("BTCUSDT"), "USDT".to_string()),
                (sym("EUR_USD"), "USD".to_string()),
            ]
            .into_iter()
            .collect(),
        })
    }

    fn fill(symbol: &str, side: Side, price: &str, qty: &str, fee: &str) -> FillRecord {
        FillRecord {
            ts: 1,
            order_id: 1,
            price: price.parse().unwrap(),
            fee: money(fee),
            qty: qty.parse().unwrap(),
            side,
            symbol: sym(symbol),
            venue: Venue::Binance,
            liquidity: Liquidity::Taker,
        }
    }

    fn id(ms: u64) -> EntryId {
        EntryId { ms, seq: 0 }
    }

    #[test]
    fn equity_cash_and_unrealized_follow_fills_and_marks() {
        let mut a = account("0");
        assert!(a.apply_fill(id(1), &fill("BTCUSDT", Side::Buy, "100", "2", "0.2")));
        assert!(!a.apply_fill(id(1), &fill("BTCUSDT", Side::Buy, "100", "2", "0.2")));
        // No mark yet: valued at cost.
        assert_eq!(a.equity(), money("999.8"));
        a.mark(sym("BTCUSDT"), "105".parse().unwrap());
        // 1000 − 0.2 fee + 2 × (105 − 100).
        assert_eq!(a.equity(), money("1009.8"));
        let v = a.view();
        assert_eq!(v.cash, money("799.8"));
        assert_eq!(v.unrealized, money("10"));
        a.apply_fill(id(2), &fill("BTCUSDT", Side::Sell, "110", "1", "0.1"));
        let v = a.view();
        assert_eq!(
            (v.realized, v.fees, v.unrealized),
            (money("10"), money("0.3"), money("5"))
        );
        assert_eq!(v.cash, money("909.7"));
        assert_eq!(v.equity, money("1014.7"));
        // cash + position × mark = equity here (no truncation happened).
        assert_eq!(money("909.7").checked_add(money("105")).unwrap(), v.equity);
    }

    #[test]
    fn other_quote_currencies_are_reported_apart_and_not_converted() {
        let mut a = account("0");
        a.apply_fill(id(1), &fill("EUR_USD", Side::Buy, "1.1", "1000", "0"));
        a.mark(sym("EUR_USD"), "1.2".parse().unwrap());
        let v = a.view();
        assert_eq!(v.equity, money("1000"), "the account currency is untouched");
        let usd = v.by_currency["USD"];
        assert_eq!(
            (usd.cash, usd.unrealized, usd.equity),
            (money("-1100"), money("100"), money("100"))
        );
    }

    #[test]
    fn the_lockbox_takes_its_share_of_each_new_high_of_realized_pnl_only() {
        let mut a = account("20");
        a.apply_fill(id(1), &fill("BTCUSDT", Side::Buy, "100", "1", "0"));
        a.apply_fill(id(2), &fill("BTCUSDT", Side::Sell, "150", "1", "0"));
        assert_eq!(a.lockbox(), money("10"), "20 % of 50");
        // A loss does not take anything back; the next gain counts only above the old high.
        a.apply_fill(id(3), &fill("BTCUSDT", Side::Buy, "100", "1", "0"));
        a.apply_fill(id(4), &fill("BTCUSDT", Side::Sell, "70", "1", "0"));
        assert_eq!(a.lockbox(), money("10"));
        a.apply_fill(id(5), &fill("BTCUSDT", Side::Buy, "100", "1", "0"));
        a.apply_fill(id(6), &fill("BTCUSDT", Side::Sell, "140", "1", "0"));
        // Net realized 50 − 30 + 40 = 60: 10 above the old high of 50.
        assert_eq!(a.lockbox(), money("12"));
        assert_eq!(a.trading_capital(), money("1048"));
    }

    #[test]
    fn sweeps_pay_the_lockbox_once_per_key_and_never_count_as_drawdown() {
        let mut a = account("50");
        assert_eq!(a.plan_sweep("k1"), SweepPlan::Empty);
        a.apply_fill(id(1), &fill("BTCUSDT", Side::Buy, "100", "1", "0"));
        a.apply_fill(id(2), &fill("BTCUSDT", Side::Sell, "120", "1", "0"));
        a.observe(5);
        assert_eq!(a.plan_sweep("k1"), SweepPlan::Pay(money("10")));
        let payout = Payout {
            key: "k1".into(),
            amount: money("10"),
            currency: "USDT".into(),
            ts: 6,
            id: id(6),
        };
        assert!(a.apply_payout(payout.clone()));
        assert!(!a.apply_payout(payout.clone()), "the same entry again");
        assert_eq!(a.plan_sweep("k1"), SweepPlan::Repeat(payout));
        assert_eq!(a.plan_sweep("k2"), SweepPlan::Empty);
        assert_eq!(
            (a.lockbox(), a.equity(), a.view().cash),
            (Money::ZERO, money("1010"), money("1010"))
        );
        a.observe(7);
        assert_eq!(a.drawdown_pct(), Money::ZERO, "a payout is not a loss");
    }

    #[test]
    fn drawdown_is_measured_from_the_days_high_and_restarts_each_utc_day() {
        let mut a = account("0");
        a.apply_fill(id(1), &fill("BTCUSDT", Side::Buy, "100", "10", "0"));
        a.mark(sym("BTCUSDT"), "100".parse().unwrap());
        a.observe(1);
        a.mark(sym("BTCUSDT"), "120".parse().unwrap());
        a.observe(2);
        a.mark(sym("BTCUSDT"), "114".parse().unwrap());
        a.observe(3);
        // High 1200, now 1140: 5 %.
        assert_eq!(a.drawdown_pct(), money("5"));
        a.observe(NS_PER_DAY + 1);
        assert_eq!(a.drawdown_pct(), Money::ZERO, "a new day starts at the current equity");
        assert_eq!(a.view().drawdown.day_start, Some(money("1140")));
    }
}
