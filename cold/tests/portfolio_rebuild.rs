//! The Portfolio agent against a real `redis-server`: its account, rebuilt from `fills` and
//! `payouts` and then fed in-process as `maxx run` feeds it, equals books computed here by
//! applying the same fills to `maxx_hot::pnl::Book` directly (every position, average price,
//! realized PnL, fee and count, exactly); a recycle and a fresh agent count nothing twice and
//! miss nothing; a Redis that is down at start crash-loops the agent while in-process fills
//! wait, and the rebuild after it reaches the exact state; entries that do not decode are
//! counted and skipped; sweeps are idempotent by key and survive a restart.
//!
//! Fills reach Redis the way `maxx run` writes them: `Record`s through the `EntryBuilder` and
//! the `Publisher`.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::RedisServer;
use maxx_cold::agent::{LifecycleState, Supervisor, SupervisorConfig, SupervisorHandle};
use maxx_cold::bus::agent_events::LifecycleEvents;
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::consume::EntryId;
use maxx_cold::bus::consume::FillRecord;
use maxx_cold::bus::entry::EntryBuilder;
use maxx_cold::bus::publish::{Outcome, Publisher, PublisherConfig};
use maxx_cold::portfolio::{AccountConfig, AccountView, Payout, Portfolio, PortfolioOptions, SweepPlan};
use maxx_cold::taps::Record;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue};
use maxx_hot::num::{Money, ONE, Price, Qty, fee, notional};
use maxx_hot::pnl::Book;
use maxx_hot::records::{ExecReport, Fill, Liquidity, OrderId, Side};

use LifecycleState::*;

/// 2026-01-01T00:00:00Z in ns.
const T0: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;
/// Generous: a deadline only fails a broken test, it never paces a passing one.
const DEADLINE: Duration = Duration::from_secs(60);
const SYMBOLS: [&str; 3] = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
const VENUES: [Venue; 2] = [Venue::Binance, Venue::Bybit];

fn index() -> InstrumentIndex {
    InstrumentIndex::new(SYMBOLS.map(|s| (Symbol::new(s).unwrap(), [None; Venue::COUNT]))).unwrap()
}

/// A seeded stream of fills over three symbols on two venues: random sides and sizes (one of
/// them a third, so partial closes round), prices around each symbol's level, taker fees and
/// maker rebates as the venues charge them. One fill per millisecond from `t0`.
struct FillGen {
    state: u64,
    n: u64,
    t0: u64,
}

impl FillGen {
    fn new(seed: u64, t0: u64) -> Self {
        Self { state: seed, n: 0, t0 }
    }

    /// SplitMix64.
    fn rand(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_fill(&mut self) -> Fill {
        const QTYS: [&str; 6] = ["0.001", "0.25", "0.5", "1", "1.5", "0.33333333"];
        const LEVELS: [i64; 3] = [97_000, 3_500, 150];
        let r = self.rand();
        let instrument = (r % 3) as usize;
        let venue = VENUES[((r >> 8) % 2) as usize];
        let side = if (r >> 16).is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let qty: Qty = QTYS[((r >> 24) % 6) as usize].parse().unwrap();
        // ± 10 in steps of 0.01.
        let offset = ((r >> 32) % 2001) as i64 - 1000;
        let price = Price::from_raw(LEVELS[instrument] * ONE + offset * 1_000_000).unwrap();
        let liquidity = if (r >> 48).is_multiple_of(3) {
            Liquidity::Maker
        } else {
            Liquidity::Taker
        };
        let traded = notional(price, qty).unwrap();
        let fee = match liquidity {
            Liquidity::Taker => fee(traded, 7_500).unwrap(),
            Liquidity::Maker => fee(traded, 1_000).unwrap().neg(),
        };
        let fill = Fill {
            order_id: OrderId(1_000 + self.n),
            instrument: InstrumentId(instrument as u16),
            venue,
            side,
            price,
            qty,
            fee,
            liquidity,
            last: true,
            ts_ns: self.t0 + self.n * MS,
        };
        self.n += 1;
        fill
    }

    fn take(&mut self, n: usize) -> Vec<Fill> {
        (0..n).map(|_| self.next_fill()).collect()
    }
}

/// Books computed here, independently of the agent: `Book::apply` over the fills in order.
struct Expected {
    books: BTreeMap<(Venue, Symbol), Book>,
    /// Fills that took a position through zero to the other side.
    flips: usize,
    /// Fills that reduced a position without closing it.
    partial_closes: usize,
}

fn expected(fills: &[Fill]) -> Expected {
    let mut e = Expected {
        books: BTreeMap::new(),
        flips: 0,
        partial_closes: 0,
    };
    for f in fills {
        let symbol = Symbol::new(SYMBOLS[f.instrument.0 as usize]).unwrap();
        let book = e.books.entry((f.venue, symbol)).or_default();
        let before = book.position.raw();
        book.apply(f).unwrap();
        let after = book.position.raw();
        if before != 0 && after != 0 && (before > 0) != (after > 0) {
            e.flips += 1;
        }
        if before != 0 && (before > 0) == (after > 0) && after.abs() < before.abs() {
            e.partial_closes += 1;
        }
    }
    e
}

/// The agent's view equals the books computed from `fills`, field by field.
fn assert_books(snapshot: &AccountView, fills: &[Fill]) {
    let e = expected(fills);
    let got: Vec<_> = snapshot
        .positions
        .iter()
        .map(|p| {
            (
                (p.venue, p.symbol),
                p.position,
                p.avg_price,
                p.realized,
                p.fees,
                p.fills,
            )
        })
        .collect();
    let want: Vec<_> = e
        .books
        .iter()
        .map(|(&key, b)| (key, b.position, b.avg_price(), b.realized, b.fees, b.fills))
        .collect();
    assert_eq!(got, want);
    let total = |f: fn(&Book) -> Money| {
        e.books
            .values()
            .map(f)
            .fold(Money::ZERO, |a, b| a.checked_add(b).unwrap())
    };
    let (realized, fees) = (total(|b| b.realized), total(|b| b.fees));
    assert_eq!((snapshot.realized, snapshot.fees), (realized, fees));
    assert_eq!(snapshot.fills_applied, fills.len() as u64);
    assert_eq!(snapshot.skipped_overflow, 0);
}

/// Fills into Redis through the project's own path.
struct Bus {
    publisher: Publisher,
    builder: EntryBuilder,
    sent: u64,
}

impl Bus {
    fn new(url: &str) -> Bus {
        let config = PublisherConfig {
            endpoint: endpoint(url),
            queue: 4096,
            batch: 32,
            ..PublisherConfig::default()
        };
        Bus {
            publisher: Publisher::spawn(config).unwrap(),
            builder: EntryBuilder::new("portfolio-test", &index()).unwrap(),
            sent: 0,
        }
    }

    /// Queues `fills` on the publisher, as `maxx run` does, and returns their entry ids and
    /// records (what the run loop hands the Portfolio).
    fn queue(&mut self, fills: &[Fill]) -> Vec<(EntryId, FillRecord)> {
        let index = index();
        fills
            .iter()
            .map(|f| {
                let entry = self
                    .builder
                    .record(&Record::Report(ExecReport::Fill(*f)))
                    .unwrap()
                    .expect("a fill makes an entry");
                assert_eq!(entry.stream, "fills");
                let id = entry.id.parse().unwrap();
                assert_eq!(self.publisher.try_publish(entry), Outcome::Queued);
                self.sent += 1;
                (id, FillRecord::from_fill(f, index.get(f.instrument).symbol))
            })
            .collect()
    }

    /// Publishes `fills` and waits until Redis has written every one (none refused as a
    /// duplicate); returns what [`Bus::queue`] returns.
    async fn publish(&mut self, fills: &[Fill]) -> Vec<(EntryId, FillRecord)> {
        let queued = self.queue(fills);
        self.written().await;
        queued
    }

    /// Waits until Redis has written everything queued.
    async fn written(&self) {
        let stats = self.publisher.stats();
        wait_until("the publisher has written every fill", || {
            stats.acknowledged() == self.sent
        })
        .await;
        assert_eq!(stats.written.load(Ordering::Relaxed), self.sent);
    }

    /// Publishes the payout of a sweep and returns it as the run loop hands it to the agent.
    async fn payout(&mut self, ts: u64, amount: Money, key: &str) -> Payout {
        let entry = self.builder.payout(ts, amount, "USDT", key).unwrap();
        let id = entry.id.parse().unwrap();
        assert_eq!(self.publisher.try_publish(entry), Outcome::Queued);
        self.sent += 1;
        self.written().await;
        Payout {
            key: key.to_string(),
            amount,
            currency: "USDT".to_string(),
            ts,
            id,
        }
    }
}

/// The account: USDT, 100 000 to start, 20 % of realized gains into the lock-box.
fn account() -> AccountConfig {
    AccountConfig {
        currency: "USDT".to_string(),
        starting: "100000".parse().unwrap(),
        lockbox_pct: "20".parse().unwrap(),
        quotes: SYMBOLS
            .iter()
            .map(|s| (Symbol::new(s).unwrap(), "USDT".to_string()))
            .collect(),
    }
}

/// `url` with short timeouts and backoff, so an outage is noticed and left quickly.
fn endpoint(url: &str) -> RedisEndpoint {
    RedisEndpoint {
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..RedisEndpoint::new(url)
    }
}

fn spawn(url: &str) -> SupervisorHandle<Portfolio> {
    spawn_agent(portfolio(url))
}

fn portfolio(url: &str) -> Portfolio {
    let options = PortfolioOptions {
        // Small batches, so a rebuild takes several reads.
        batch: 64,
        block: Duration::from_millis(100),
    };
    Portfolio::new(Some(endpoint(url)), account(), options).unwrap()
}

fn spawn_agent(agent: Portfolio) -> SupervisorHandle<Portfolio> {
    let policy = SupervisorConfig {
        backoff_start: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        ..SupervisorConfig::default()
    };
    Supervisor::spawn(agent, LifecycleEvents::log_only(), policy).unwrap()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the agent is Running, healthy and has applied `applied` fills and skipped
/// `garbage` entries; returns its view.
async fn caught_up(h: &SupervisorHandle<Portfolio>, applied: u64, garbage: u64) -> AccountView {
    wait_until(&format!("the portfolio is live with {applied} fills"), || {
        let s = h.agent().view();
        h.state() == Running && h.health().ok && s.fills_applied == applied && s.skipped_garbage == garbage
    })
    .await;
    let health = h.health();
    assert!(
        health.detail.starts_with(&format!("live: {applied} fills through ")),
        "{health:?}"
    );
    h.agent().view()
}

/// Hands fills to the agent in-process, as the run loop does.
fn feed(h: &SupervisorHandle<Portfolio>, fills: &[(EntryId, FillRecord)]) {
    for (id, f) in fills {
        h.agent().on_fill(*id, f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_are_rebuilt_fed_in_process_and_never_count_a_fill_twice() {
    let server = RedisServer::start();
    let url = server.url();
    let mut bus = Bus::new(&url);
    let mut fills_gen = FillGen::new(7, T0);

    // Rebuild: the fills are in the stream before the agent starts.
    let mut all = fills_gen.take(150);
    bus.publish(&all).await;
    let h = spawn(&url);
    let snapshot = caught_up(&h, 150, 0).await;
    assert_books(&snapshot, &all);
    assert_eq!(
        snapshot.fills_last_id.to_string(),
        format!("{}-0", (T0 + 149 * MS) / MS)
    );

    // Live: fills the engine makes while it runs are handed over in-process (and published).
    let more = fills_gen.take(150);
    let queued = bus.publish(&more).await;
    feed(&h, &queued);
    // Handed over twice (a retry): counted once.
    feed(&h, &queued[100..]);
    all.extend(more);
    assert_books(&caught_up(&h, 300, 0).await, &all);

    // A recycle keeps the account: still 300, not 600.
    h.recycle().await.unwrap();
    assert_books(&caught_up(&h, 300, 0).await, &all);
    h.shutdown().await;

    // A fresh agent after more fills arrived while none ran.
    let more = fills_gen.take(100);
    bus.publish(&more).await;
    all.extend(more);
    let h = spawn(&url);
    assert_books(&caught_up(&h, 400, 0).await, &all);
    h.shutdown().await;

    // The data exercised what it is meant to.
    let e = expected(&all);
    assert_eq!(e.books.len(), SYMBOLS.len() * VENUES.len());
    assert!(e.flips > 0, "no position flipped through zero");
    assert!(e.partial_closes > 0, "no partial close");
    bus.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_crash_loops_the_agent_and_the_rebuild_then_reaches_the_exact_books() {
    let mut server = RedisServer::start_durable();
    let url = server.url();
    let mut bus = Bus::new(&url);
    let mut fills_gen = FillGen::new(11, T0);
    let mut all = fills_gen.take(200);
    bus.publish(&all).await;

    server.kill();
    let h = spawn(&url);
    let mut states = h.watch();
    tokio::time::timeout(DEADLINE, states.wait_for(|s| *s == CrashLoopBackoff))
        .await
        .expect("CrashLoopBackoff within the deadline")
        .expect("supervisor alive");
    let health = h.health();
    assert!(!health.ok);
    assert!(health.detail.contains("redis unreachable"), "{health:?}");
    // A sweep cannot be decided before the account is known.
    assert!(h.agent().plan_sweep("early").unwrap_err().contains("rebuilt"));

    // The engine goes on: its fills queue in the publisher and reach the agent in-process,
    // where they wait for the rebuild.
    let more = fills_gen.take(50);
    let queued = bus.queue(&more);
    feed(&h, &queued);
    all.extend(more);

    server.restart();
    // Some or all of the 50 are in Redis by the time the rebuild reads: each counts once.
    assert_books(&caught_up(&h, 250, 0).await, &all);
    bus.written().await;
    // Later outages do not touch the account: it is fed in-process.
    server.kill();
    let more = fills_gen.take(10);
    feed(&h, &bus.queue(&more));
    all.extend(more);
    assert_books(&caught_up(&h, 260, 0).await, &all);
    assert_eq!(h.state(), Running);
    server.restart();
    bus.written().await;
    h.shutdown().await;

    // A fresh agent reads all 260 back.
    let h = spawn(&url);
    assert_books(&caught_up(&h, 260, 0).await, &all);
    h.shutdown().await;
    bus.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_are_idempotent_and_the_lockbox_and_payouts_survive_a_restart() {
    let server = RedisServer::start();
    let url = server.url();
    let mut bus = Bus::new(&url);
    let h = spawn(&url);
    caught_up(&h, 0, 0).await;
    assert_eq!(h.agent().plan_sweep("k0").unwrap(), SweepPlan::Empty);

    // A round trip with a gain: buy 1 BTC at 97 000, sell at 97 500, no fees.
    let buy = Fill {
        order_id: OrderId(1),
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        side: Side::Buy,
        price: "97000".parse().unwrap(),
        qty: "1".parse().unwrap(),
        fee: Money::ZERO,
        liquidity: Liquidity::Maker,
        last: true,
        ts_ns: T0,
    };
    let sell = Fill {
        order_id: OrderId(2),
        side: Side::Sell,
        price: "97500".parse().unwrap(),
        ts_ns: T0 + MS,
        ..buy
    };
    feed(&h, &bus.publish(&[buy, sell]).await);
    let v = caught_up(&h, 2, 0).await;
    // 20 % of the 500 gain.
    assert_eq!(v.lockbox.balance.to_string(), "100");
    assert_eq!(v.trading_capital.to_string(), "100400");

    let SweepPlan::Pay(amount) = h.agent().plan_sweep("sweep-1").unwrap() else {
        panic!("a full lock-box pays")
    };
    assert_eq!(amount.to_string(), "100");
    let payout = bus.payout(T0 + 2 * MS, amount, "sweep-1").await;
    assert!(h.agent().on_payout(payout.clone()));
    assert!(!h.agent().on_payout(payout.clone()), "the same payout twice");
    assert_eq!(
        h.agent().plan_sweep("sweep-1").unwrap(),
        SweepPlan::Repeat(payout.clone())
    );
    assert_eq!(h.agent().plan_sweep("sweep-2").unwrap(), SweepPlan::Empty);
    let before = h.agent().view();
    assert_eq!(
        (before.lockbox.balance, before.equity.to_string(), before.payouts.len()),
        (Money::ZERO, "100400".to_string(), 1)
    );
    h.shutdown().await;

    // A fresh agent rebuilds fills and payouts to the same account.
    let h = spawn(&url);
    let after = caught_up(&h, 2, 0).await;
    assert_eq!(after, before);
    assert_eq!(h.agent().plan_sweep("sweep-1").unwrap(), SweepPlan::Repeat(payout));
    h.shutdown().await;
    bus.publisher.close().await;
}

/// `XADD fills * field value …` on a raw connection, as a foreign writer would.
fn xadd_raw(url: &str, fields: &[(&str, &str)]) -> String {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg("fills").arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query::<String>(&mut conn).unwrap()
}

/// Every field of a good fill, with `field` replaced by `value` (or removed if `None`).
fn fill_fields_but(field: &str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
    let good = [
        ("key", "019abc12-3456-7def-8123-456789abcdef"),
        ("ts", "1767225600000000000"),
        ("order_id", "1"),
        ("price", "100"),
        ("fee", "0.1"),
        ("qty", "1"),
        ("side", "buy"),
        ("symbol", "BTCUSDT"),
        ("venue", "binance"),
        ("liquidity", "taker"),
    ];
    good.into_iter()
        .filter_map(|(k, v)| {
            if k == field {
                value.map(|v| (k, v))
            } else {
                Some((k, v))
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_do_not_decode_are_counted_and_skipped() {
    let server = RedisServer::start();
    let url = server.url();
    let mut bus = Bus::new(&url);
    // `XADD *` ids are at least the current time, so the published fills are dated an hour
    // ahead: the raw entries then take the next id after the last fill, and the fills after
    // them (one millisecond apart) stay above.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut fills_gen = FillGen::new(13, now / MS * MS + 3_600_000 * MS);

    let mut all = fills_gen.take(50);
    bus.publish(&all).await;
    xadd_raw(&url, &[("colour", "red")]);
    let more = fills_gen.take(50);
    bus.publish(&more).await;
    all.extend(more);
    xadd_raw(&url, &fill_fields_but("price", Some("abc")));

    // Read by the rebuild.
    let h = spawn(&url);
    let snapshot = caught_up(&h, 100, 2).await;
    assert_books(&snapshot, &all);

    h.shutdown().await;

    // More garbage and fills, then a fresh agent: the rebuild reads all of it and counts each
    // undecodable entry once.
    let garbage = xadd_raw(&url, &fill_fields_but("fee", None));
    let more = fills_gen.take(50);
    bus.publish(&more).await;
    all.extend(more);
    let h = spawn(&url);
    let snapshot = caught_up(&h, 150, 3).await;
    assert_books(&snapshot, &all);
    assert!(snapshot.fills_last_id > garbage.parse::<EntryId>().unwrap());
    h.shutdown().await;
    bus.publisher.close().await;
}

/// Textbook average-cost accounting in plain f64, written apart from `maxx_hot::pnl::Book`:
/// per (venue, symbol) the position and its average price; a fill in the position's direction
/// re-averages, one against it realizes `closed × (price − average)` and opens any remainder at
/// the fill price.
#[derive(Default)]
struct Textbook {
    position: f64,
    average: f64,
    realized: f64,
    fees: f64,
}

impl Textbook {
    fn apply(&mut self, side: Side, price: f64, qty: f64, fee: f64) {
        let signed = if side == Side::Buy { qty } else { -qty };
        self.fees += fee;
        if self.position == 0.0 || (self.position > 0.0) == (signed > 0.0) {
            let size = self.position.abs() + qty;
            self.average = (self.average * self.position.abs() + price * qty) / size;
            self.position += signed;
            return;
        }
        let closed = qty.min(self.position.abs());
        self.realized += closed * (price - self.average) * self.position.signum();
        let opened = qty - closed;
        self.position += signed;
        if self.position.abs() < 1e-12 {
            self.position = 0.0;
            self.average = 0.0;
        } else if opened > 0.0 {
            self.average = price;
        }
    }
}

fn f(x: impl ToString) -> f64 {
    x.to_string().parse().unwrap()
}

#[test]
fn the_account_equals_a_textbook_recomputation_of_the_emitted_fills() {
    // In-process, as `maxx run` feeds it; no Redis.
    let agent = Portfolio::new(None, account(), PortfolioOptions::default()).unwrap();
    let index = index();
    let fills = FillGen::new(21, T0).take(2_000);
    let mut books: BTreeMap<(Venue, Symbol), Textbook> = BTreeMap::new();
    // The highest realized PnL net of fees seen after any fill: the lock-box's high-water mark.
    let mut best_net = 0.0_f64;
    for (i, fill) in fills.iter().enumerate() {
        let symbol = index.get(fill.instrument).symbol;
        agent.on_fill(
            EntryId {
                ms: 1 + i as u64,
                seq: 0,
            },
            &FillRecord::from_fill(fill, symbol),
        );
        books
            .entry((fill.venue, symbol))
            .or_default()
            .apply(fill.side, f(fill.price), f(fill.qty), f(fill.fee));
        let net: f64 = books.values().map(|t| t.realized - t.fees).sum();
        best_net = best_net.max(net);
    }
    let marks = [("BTCUSDT", "97012.34"), ("ETHUSDT", "3499.99"), ("SOLUSDT", "150.5")];
    for (s, m) in marks {
        agent.on_mark(Symbol::new(s).unwrap(), m.parse().unwrap());
    }
    let view = agent.view();
    // Each closing fill may truncate 10^-8 in the exact books; the f64 sums carry ~1e-11
    // relative error: 1e-4 is far above both and far below any accounting mistake.
    let close = |what: &str, got: f64, want: f64| {
        assert!((got - want).abs() < 1e-4, "{what}: account {got}, textbook {want}");
    };
    let mut unrealized_total = 0.0;
    for row in &view.positions {
        let t = &books[&(row.venue, row.symbol)];
        let what = format!("{} {}", row.venue.name(), row.symbol);
        close(&format!("{what} position"), f(row.position), t.position);
        close(&format!("{what} realized"), f(row.realized), t.realized);
        close(&format!("{what} fees"), f(row.fees), t.fees);
        if t.position != 0.0 {
            close(&format!("{what} average"), f(row.avg_price.unwrap()), t.average);
        }
        let mark = f(marks.iter().find(|(s, _)| *s == row.symbol.as_str()).unwrap().1);
        let unrealized = t.position * (mark - t.average);
        close(&format!("{what} unrealized"), f(row.unrealized), unrealized);
        unrealized_total += unrealized;
    }
    assert_eq!(view.positions.len(), books.len());
    let realized: f64 = books.values().map(|t| t.realized).sum();
    let fees: f64 = books.values().map(|t| t.fees).sum();
    close("realized", f(view.realized), realized);
    close("fees", f(view.fees), fees);
    close("unrealized", f(view.unrealized), unrealized_total);
    close("equity", f(view.equity), 100_000.0 + realized - fees + unrealized_total);
    // The lock-box took 20 % of every rise of realized PnL net of fees above its high-water
    // mark: 20 % of the best net seen, all of it still in the box (no sweep); the trading
    // capital is what is left.
    close("lock-box", f(view.lockbox.total_in), 0.2 * best_net);
    close("lock-box balance", f(view.lockbox.balance), 0.2 * best_net);
    close(
        "trading capital",
        f(view.trading_capital),
        f(view.equity) - f(view.lockbox.balance),
    );
}
