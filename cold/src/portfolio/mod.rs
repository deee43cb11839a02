//! The Portfolio agent (cold side): positions, average cost, realized PnL and fees per venue
//! and symbol, rebuilt from the `fills` stream.
//!
//! [`Books`] is the pure state: one [`Book`] (the exact average-cost accounting of
//! `maxx_hot::pnl`, shared with replay) per (venue, symbol), fed with decoded `fills` entries in
//! stream order. [`Portfolio`] is the [`Agent`] that keeps a `Books` current from Redis.
//!
//! # Accounting
//! It is [`Book`]'s, unchanged:
//! - **Position** is the signed sum of filled quantities (buys positive, sells negative).
//! - **Average price** is the cost basis of the open position over its size (average cost).
//!   Opening or adding never rounds; `None` (JSON `null`) when flat.
//! - **Realized** PnL is booked only by fills that reduce the position: the closed quantity at
//!   the fill price against its share of the cost basis (one deterministic truncation toward
//!   zero at 10^-8). A fill that flips the position through zero closes the old side first and
//!   opens the rest at the fill price.
//! - **Fees** are not part of realized PnL: they are summed separately as the venues charge
//!   them (a maker rebate is a negative fee), and `net = realized − fees`.
//!
//! Totals are sums over all books. Every amount is an exact fixed-point
//! [`maxx_hot::num`] value; the JSON snapshot writes them as canonical decimal strings
//! (`"-0.5"`, `"62650.2"`) so that no reader parses them into a float by accident.
//!
//! # Idempotence
//! `Books` remembers the id of the last entry it consumed and ignores any entry whose id is not
//! above it, so reading a stretch of the stream twice never counts a fill twice. Entries that do
//! not decode (a foreign writer, a publisher bug) are counted in `skipped_garbage` under the
//! same rule, and never stop the agent.
//!
//! # Rebuild
//! The agent reads `fills` from the beginning with a plain `XREAD` reader, not a consumer group:
//! a group remembers what it delivered, but books held in memory need every fill again after a
//! restart. This is why `fills` retention is unbounded by default (`redis.retention.fills`).
//! `start` reads into a fresh `Books` until a read returns fewer entries than it asked for
//! (caught up), then swaps it in, so a restart (after a crash loop or a recycle) never adds a
//! fill twice and `snapshot` keeps serving the previous state meanwhile. `run` then follows the
//! stream live. A lost Redis connection ends the attempt with [`AgentError::Retry`]: the
//! [`Supervisor`](crate::agent::Supervisor) backs off and starts the agent again, which rebuilds
//! from the start.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use maxx_hot::ids::{InstrumentId, Symbol, Venue};
use maxx_hot::num::{Money, Price, SignedQty};
use maxx_hot::pnl::Book;
use maxx_hot::records::{Fill, OrderId};
use serde::{Serialize, Serializer};
use tracing::{info, warn};

use crate::agent::{Agent, AgentError, Health, StopSignal, names};
use crate::bus::connect::RedisEndpoint;
use crate::bus::consume::{ConsumeError, EntryId, FillRecord, RawEntry, ReadFrom, StreamReader, StreamRecord, decode};
use crate::config::Config;

/// The stream the Portfolio is built from.
pub const FILLS: &str = "fills";

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
fn sum(values: impl Iterator<Item = Money>) -> Money {
    saturate(values.map(|m| i128::from(m.raw())).sum())
}

/// `realized − fees`, saturating.
fn net(realized: Money, fees: Money) -> Money {
    saturate(i128::from(realized.raw()) - i128::from(fees.raw()))
}

fn saturate(raw: i128) -> Money {
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

fn as_text<T: fmt::Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn opt_text<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn venue_name<S: Serializer>(venue: &Venue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(venue.name())
}

/// Settings of a [`Portfolio`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortfolioOptions {
    /// Most entries per read (`COUNT`).
    pub batch: usize,
    /// How long a live read waits for new fills (`BLOCK`); also bounds how long a caught-up
    /// rebuild waits for its last, empty read. Must be above zero (`BLOCK 0` waits forever).
    pub block: Duration,
    /// How often a pending read checks whether the connection was lost.
    pub watch_every: Duration,
}

impl Default for PortfolioOptions {
    fn default() -> Self {
        Self {
            batch: 512,
            block: Duration::from_millis(250),
            watch_every: Duration::from_millis(50),
        }
    }
}

/// Where the agent is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    NotStarted,
    Rebuilding,
    Live,
    Unreachable(String),
    Failed(String),
    Stopped,
}

/// The Portfolio agent: [`Books`] kept current from `fills`. See the module docs.
#[derive(Debug)]
pub struct Portfolio {
    redis: RedisEndpoint,
    options: PortfolioOptions,
    /// The books served by [`Portfolio::snapshot`]; replaced whole after a rebuild.
    books: Mutex<Books>,
    /// The reader `start` caught up with, handed to `run`.
    reader: Mutex<Option<StreamReader>>,
    status: Mutex<Status>,
    /// Entries read by the rebuild in progress.
    rebuild_read: AtomicU64,
    /// The highest entry id already logged as skipped: every rebuild reads the same garbage
    /// again, and each entry is logged once per process.
    logged_through: Mutex<EntryId>,
}

impl Portfolio {
    /// A Portfolio reading `fills` from the Redis at `redis` (what [`StreamReader::new`] takes:
    /// a URL or a [`RedisEndpoint`] with its timeouts and reconnect backoff). Checks the
    /// address and options now; connects in `start`.
    pub fn new(redis: impl Into<RedisEndpoint>, options: PortfolioOptions) -> Result<Self, ConsumeError> {
        let redis = redis.into();
        if options.batch == 0 {
            return Err(ConsumeError::Invalid("portfolio batch must be at least 1".into()));
        }
        if options.block.is_zero() || options.watch_every.is_zero() {
            return Err(ConsumeError::Invalid(
                "portfolio block and watch_every must be above zero".into(),
            ));
        }
        // Building a reader parses the address without connecting.
        StreamReader::new(&redis, FILLS, ReadFrom::End, options.batch, options.block)?;
        Ok(Self {
            redis,
            options,
            books: Mutex::new(Books::new()),
            reader: Mutex::new(None),
            status: Mutex::new(Status::NotStarted),
            rebuild_read: AtomicU64::new(0),
            logged_through: Mutex::new(EntryId::default()),
        })
    }

    /// The current state, for `GET /pnl`. During a rebuild it is the state before it.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.books).snapshot()
    }

    /// Calls `f` with the current books.
    pub fn with_books<R>(&self, f: impl FnOnce(&Books) -> R) -> R {
        f(&lock(&self.books))
    }

    fn set_status(&self, status: Status) {
        *lock(&self.status) = status;
    }

    /// The next batch from `reader`; `Ok(None)` once `stop` fires. A lost connection is an
    /// [`AgentError::Retry`] at once: the reader would reconnect by itself, but in-memory books
    /// are rebuilt from the start after any outage, by the supervisor's restart.
    async fn read(
        &self,
        reader: &mut StreamReader,
        stop: Option<&mut StopSignal>,
    ) -> Result<Option<Vec<RawEntry>>, AgentError> {
        let stats = reader.stats();
        let lost_before = stats.reconnects.load(Ordering::Relaxed);
        let lost = || stats.reconnects.load(Ordering::Relaxed) > lost_before;
        let mut check = tokio::time::interval(self.options.watch_every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = async {
            match stop {
                Some(s) => s.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        let batch = reader.next_batch();
        tokio::pin!(batch);
        let result = loop {
            tokio::select! {
                result = &mut batch => break result,
                () = &mut stopped => return Ok(None),
                _ = check.tick() => if lost() {
                    return Err(self.unreachable());
                },
            }
        };
        if lost() {
            return Err(self.unreachable());
        }
        match result {
            Ok(entries) => Ok(Some(entries)),
            Err(ConsumeError::Invalid(e)) => {
                self.set_status(Status::Failed(e.clone()));
                Err(AgentError::Fatal(e))
            }
            Err(e) => {
                let e = e.to_string();
                self.set_status(Status::Failed(e.clone()));
                Err(AgentError::Retry(e))
            }
        }
    }

    fn unreachable(&self) -> AgentError {
        let detail = format!(
            "{}: lost the connection while reading `{FILLS}`; rebuilding after a backoff",
            self.redis.redacted_url()
        );
        self.set_status(Status::Unreachable(detail.clone()));
        AgentError::Retry(format!("redis unreachable: {detail}"))
    }

    /// Applies a batch in order; logs each entry that is skipped, once per process.
    fn apply_batch(&self, books: &mut Books, batch: &[RawEntry]) {
        for raw in batch {
            let problem = match decode(FILLS, raw) {
                Ok(entry) => match entry.record {
                    StreamRecord::Fill(fill) => {
                        let overflowed = books.skipped_overflow();
                        books.apply(entry.id, &fill);
                        if books.skipped_overflow() == overflowed {
                            continue;
                        }
                        self.log_once(entry.id, "fill would overflow its book; skipped", raw);
                        continue;
                    }
                    // `decode` of `fills` only gives fills; kept total rather than panicking.
                    other => format!("not a fill: {other:?}"),
                },
                Err(e) => e.to_string(),
            };
            match raw.id.parse::<EntryId>() {
                Ok(id) => {
                    if books.skip_garbage(id) {
                        self.log_once(id, &problem, raw);
                    }
                }
                // Redis never gives such an id; nothing can be counted idempotently.
                Err(e) => warn!(stream = FILLS, error = %e, "entry with an unreadable id; skipped"),
            }
        }
    }

    fn log_once(&self, id: EntryId, problem: &str, raw: &RawEntry) {
        let mut through = lock(&self.logged_through);
        if id > *through {
            *through = id;
            warn!(stream = FILLS, id = %id, error = %problem, entry = %raw, "fills entry skipped");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every point a panic could unwind from.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent for Portfolio {
    fn name(&self) -> &str {
        names::PORTFOLIO
    }

    /// Reads `fills` from the start into fresh books until caught up, then swaps them in.
    async fn start(&self) -> Result<(), AgentError> {
        self.rebuild_read.store(0, Ordering::Relaxed);
        self.set_status(Status::Rebuilding);
        let mut reader = StreamReader::new(
            &self.redis,
            FILLS,
            ReadFrom::After(EntryId::default()),
            self.options.batch,
            self.options.block,
        )
        .map_err(|e| {
            self.set_status(Status::Failed(e.to_string()));
            AgentError::Fatal(e.to_string())
        })?;
        let mut fresh = Books::new();
        loop {
            let Some(batch) = self.read(&mut reader, None).await? else {
                // `read` without a stop signal only ends with a batch or an error.
                continue;
            };
            self.apply_batch(&mut fresh, &batch);
            self.rebuild_read.fetch_add(batch.len() as u64, Ordering::Relaxed);
            if batch.len() < self.options.batch {
                break;
            }
        }
        info!(
            applied = fresh.applied(),
            skipped_garbage = fresh.skipped_garbage(),
            last_id = %fresh.last_id(),
            "portfolio rebuilt from fills"
        );
        *lock(&self.books) = fresh;
        *lock(&self.reader) = Some(reader);
        self.set_status(Status::Live);
        Ok(())
    }

    /// Follows `fills` live until stopped or the connection is lost.
    async fn run(&self, mut stop: StopSignal) -> Result<(), AgentError> {
        let Some(mut reader) = lock(&self.reader).take() else {
            return Err(AgentError::Retry("portfolio run without a completed start".into()));
        };
        loop {
            match self.read(&mut reader, Some(&mut stop)).await? {
                None => return Ok(()),
                Some(batch) => self.apply_batch(&mut lock(&self.books), &batch),
            }
        }
    }

    async fn stop(&self) {
        lock(&self.reader).take();
        let mut status = lock(&self.status);
        if matches!(*status, Status::Live | Status::Rebuilding) {
            *status = Status::Stopped;
        }
    }

    fn health(&self) -> Health {
        let status = lock(&self.status).clone();
        match status {
            Status::Live => {
                let books = lock(&self.books);
                Health::ok(format!(
                    "live: {} fills applied through {}, {} undecodable entries skipped",
                    books.applied(),
                    books.last_id(),
                    books.skipped_garbage()
                ))
            }
            Status::Rebuilding => Health::failing(format!(
                "rebuilding: {} fills read",
                self.rebuild_read.load(Ordering::Relaxed)
            )),
            Status::Unreachable(e) => Health::failing(format!("redis unreachable: {e}")),
            Status::Failed(e) => Health::failing(format!("failed: {e}")),
            Status::NotStarted => Health::failing("not started"),
            Status::Stopped => Health::failing("stopped"),
        }
    }

    /// Nothing in the config concerns the Portfolio yet.
    fn reload(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
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

    #[test]
    fn a_batch_is_applied_in_order_and_garbage_counted_once_per_books() {
        let p = Portfolio::new("redis://127.0.0.1:1", PortfolioOptions::default()).unwrap();
        let good = RawEntry {
            id: "10-0".into(),
            fields: [
                ("key", "019abc12-3456-7def-8123-456789abcdef"),
                ("ts", "1"),
                ("order_id", "1"),
                ("price", "100"),
                ("fee", "0.1"),
                ("qty", "1"),
                ("side", "buy"),
                ("symbol", "BTCUSDT"),
                ("venue", "binance"),
                ("liquidity", "taker"),
            ]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        };
        let garbage = RawEntry {
            id: "11-0".into(),
            fields: vec![(b"colour".to_vec(), b"red".to_vec())],
        };
        let batch = [good, garbage];
        for _ in 0..2 {
            // As a restart does: the same entries into fresh books.
            let mut books = Books::new();
            p.apply_batch(&mut books, &batch);
            p.apply_batch(&mut books, &batch);
            assert_eq!(
                (books.applied(), books.skipped_garbage(), books.last_id()),
                (1, 1, id(11, 0))
            );
        }
        assert_eq!(*lock(&p.logged_through), id(11, 0));
    }

    #[test]
    fn bad_options_are_refused() {
        let zero_batch = PortfolioOptions {
            batch: 0,
            ..PortfolioOptions::default()
        };
        assert!(Portfolio::new("redis://127.0.0.1:1", zero_batch).is_err());
        let zero_block = PortfolioOptions {
            block: Duration::ZERO,
            ..PortfolioOptions::default()
        };
        assert!(Portfolio::new("redis://127.0.0.1:1", zero_block).is_err());
        assert!(Portfolio::new("http://nowhere", PortfolioOptions::default()).is_err());
        let p = Portfolio::new("redis://127.0.0.1:1", PortfolioOptions::default()).unwrap();
        assert_eq!(p.health(), Health::failing("not started"));
        assert_eq!(p.snapshot(), Books::new().snapshot());
    }
}
