//! Mock order-entry venues: Binance spot and Bybit v5 REST servers on loopback, for tests of the
//! order-entry gateways (`maxx_hot::gateway`) over real sockets.
//!
//! Each mock speaks its venue's documented wire format (`../shared/venues.md` §1.9 and §3.8):
//! it checks the API key header, verifies the signature with its own HMAC-SHA256 (written here
//! from RFC 6234 and RFC 2104, sharing no code with the gateway's signer), enforces the
//! timestamp window, validates parameters and the symbol's filters, keeps balances, enforces the
//! venue's order rate limit with its headers, and answers with the documented error codes and
//! bodies. Matching is deliberately simple: each symbol has a reference price; a marketable
//! order fills in full at that price (taker), any other order rests (GTC) or expires (IOC, FOK),
//! and a post-only order that would take is refused (Binance) or cancelled (Bybit). Moving the
//! reference price ([`MockHandle::set_price`]) fills the resting orders it crosses, at their own
//! price, as makers.
//!
//! Fees follow the venues' spot rule: a buy pays its fee in the base asset it receives, a sell in
//! the quote asset.
//!
//! Fault switches on the handle act on the next order placement only: [`MockHandle::delay_next_order`]
//! (placed, answered late), [`MockHandle::fail_next_order_with_5xx`] (placed or not, answered
//! with a 5xx), [`MockHandle::reject_next_order_with`] (a chosen venue error), and a shifted server
//! clock ([`MockHandle::set_clock_offset_ms`]).
//!
//! Each mock runs its own single-threaded tokio runtime on a thread of its own, so a test drives
//! it from plain threads; dropping the handle stops it.

pub mod binance;
pub mod bybit;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use maxx_hot::num::{Money, Price, Qty, fee, notional};

pub use binance::spawn as spawn_binance;
pub use bybit::spawn as spawn_bybit;

// ---------------------------------------------------------------------------------------------
// Configuration.

/// One symbol the mock lists.
#[derive(Clone, Debug)]
pub struct MockSymbol {
    /// The venue's symbol (`BTCUSDT`).
    pub symbol: String,
    /// Base asset (`BTC`).
    pub base: String,
    /// Quote asset (`USDT`).
    pub quote: String,
    /// Prices must be multiples of this.
    pub tick_size: Price,
    /// Quantities must be multiples of this.
    pub step_size: Qty,
    /// Smallest order value (price × quantity).
    pub min_notional: Money,
    /// The reference price marketable orders fill at.
    pub price: Price,
}

/// A mock venue's settings.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// The one API key it accepts.
    pub api_key: String,
    /// The secret of that key.
    pub secret: String,
    /// Listed symbols.
    pub symbols: Vec<MockSymbol>,
    /// Free balances at start, per asset.
    pub balances: Vec<(String, Money)>,
    /// Order placements accepted per `order_window` (Binance: per account interval; Bybit: per
    /// UID per window of the create endpoint).
    pub order_limit: u32,
    /// The rate-limit interval (fixed windows aligned to the server clock). Binance's header
    /// name follows it (`X-MBX-ORDER-COUNT-10S` for 10 s); use whole seconds there.
    pub order_window: Duration,
    /// Binance: how long an IP that kept sending after a 429 is banned (HTTP 418).
    pub ban: Duration,
    /// Taker fee, thousandths of a basis point.
    pub taker_fee_bps_milli: i64,
    /// Maker fee, thousandths of a basis point.
    pub maker_fee_bps_milli: i64,
}

impl MockConfig {
    /// One symbol, `BTCUSDT` (tick 0.01, step 0.00001, min notional 5) at 60000, with 100000
    /// USDT and 1 BTC, 10 orders per second, a 2 s ban, 10 bps taker and 2 bps maker fees.
    pub fn btcusdt(api_key: &str, secret: &str) -> MockConfig {
        let money = |s: &str| s.parse::<Money>().unwrap_or_default();
        MockConfig {
            api_key: api_key.to_string(),
            secret: secret.to_string(),
            symbols: vec![MockSymbol {
                symbol: "BTCUSDT".into(),
                base: "BTC".into(),
                quote: "USDT".into(),
                tick_size: "0.01".parse().unwrap_or_default(),
                step_size: "0.00001".parse().unwrap_or_default(),
                min_notional: "5".parse().unwrap_or_default(),
                price: "60000".parse().unwrap_or_default(),
            }],
            balances: vec![("USDT".into(), money("100000")), ("BTC".into(), money("1"))],
            order_limit: 10,
            order_window: Duration::from_secs(1),
            ban: Duration::from_secs(2),
            taker_fee_bps_milli: 10_000,
            maker_fee_bps_milli: 2_000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counters and faults.

/// What the mock has seen, for assertions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// HTTP requests received (every endpoint, including refused ones).
    pub requests: u64,
    /// Requests refused for their signature.
    pub signature_failures: u64,
    /// Requests refused for their API key.
    pub key_failures: u64,
    /// Requests refused for their timestamp.
    pub timestamp_failures: u64,
    /// Orders accepted by the matching engine.
    pub orders_placed: u64,
    /// Orders cancelled by a cancel request.
    pub orders_cancelled: u64,
    /// Order queries answered.
    pub queries: u64,
    /// Rate-limit refusals (Binance 429, Bybit 10006).
    pub rate_limited: u64,
    /// Ban refusals (Binance 418).
    pub banned: u64,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    requests: AtomicU64,
    signature_failures: AtomicU64,
    key_failures: AtomicU64,
    timestamp_failures: AtomicU64,
    orders_placed: AtomicU64,
    orders_cancelled: AtomicU64,
    queries: AtomicU64,
    rate_limited: AtomicU64,
    banned: AtomicU64,
}

/// One-shot fault for the next placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Place, then answer after this long.
    Delay(Duration),
    /// Answer with a 5xx; place first if `placed`.
    ServerError { placed: bool },
    /// Refuse with this venue code and message.
    Reject { code: i64, msg: String },
}

// ---------------------------------------------------------------------------------------------
// The matching engine.

/// Order type, as the mock understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Market.
    Market,
    /// Limit.
    Limit,
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tif {
    /// Good till cancelled.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Post-only (Binance `LIMIT_MAKER`).
    PostOnly,
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Resting, nothing filled.
    New,
    /// Filled in full.
    Filled,
    /// Cancelled by request (or, Bybit, a post-only that would take).
    Cancelled,
    /// Expired (IOC/FOK without a fill).
    Expired,
}

/// One order at the mock.
#[derive(Clone, Debug)]
pub struct MockOrder {
    /// Venue order id.
    pub id: u64,
    /// Client order id.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// `true` for a buy.
    pub buy: bool,
    /// Market or limit.
    pub kind: Kind,
    /// Time in force.
    pub tif: Tif,
    /// Limit price (zero for market).
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Executed quantity.
    pub executed: Qty,
    /// Executed quote amount.
    pub quote: Money,
    /// Average execution price (zero if none).
    pub avg_price: Price,
    /// Fee charged, in `fee_asset`.
    pub fee: Money,
    /// The fee's asset.
    pub fee_asset: String,
    /// `true` if the fill took liquidity.
    pub taker: bool,
    /// Status.
    pub status: Status,
    /// Set when the venue itself cancelled it (Bybit post-only).
    pub post_only_cancelled: bool,
    /// Creation time (server ms).
    pub created_ms: u64,
    /// Last change (server ms).
    pub updated_ms: u64,
}

/// Why the matching engine refused an order; each venue module maps these to its codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnknownSymbol,
    PriceFilter,
    LotSize,
    Notional,
    Insufficient,
    WouldTake,
    Duplicate,
}

/// A new order, validated for syntax by the venue module.
pub(crate) struct NewOrder {
    pub client_id: String,
    pub symbol: String,
    pub buy: bool,
    pub kind: Kind,
    pub tif: Tif,
    pub price: Price,
    pub qty: Qty,
}

/// Balances per asset: free and locked.
#[derive(Clone, Copy, Debug, Default)]
struct Balance {
    free: i64,
    locked: i64,
}

pub(crate) struct Book {
    symbols: Vec<MockSymbol>,
    balances: HashMap<String, Balance>,
    pub(crate) orders: Vec<MockOrder>,
    next_id: u64,
    taker_fee: i64,
    maker_fee: i64,
    /// Rate limit: the current window's index and count.
    pub(crate) window: (u64, u32),
    /// Binance: a 429 was given; requests before this server time earn a ban.
    pub(crate) limited_until_ms: u64,
    /// Binance: banned until this server time.
    pub(crate) banned_until_ms: u64,
    /// Binance: request weight per minute window.
    pub(crate) weight: (u64, u64),
    pub(crate) fault: Option<Fault>,
}

impl Book {
    fn new(config: &MockConfig, first_id: u64) -> Book {
        Book {
            symbols: config.symbols.clone(),
            balances: config
                .balances
                .iter()
                .map(|(a, m)| {
                    (
                        a.clone(),
                        Balance {
                            free: m.raw(),
                            locked: 0,
                        },
                    )
                })
                .collect(),
            orders: Vec::new(),
            next_id: first_id,
            taker_fee: config.taker_fee_bps_milli,
            maker_fee: config.maker_fee_bps_milli,
            window: (0, 0),
            limited_until_ms: 0,
            banned_until_ms: 0,
            weight: (0, 0),
            fault: None,
        }
    }

    pub(crate) fn symbol(&self, name: &str) -> Option<&MockSymbol> {
        self.symbols.iter().find(|s| s.symbol == name)
    }

    /// Counts one order in the rate-limit window of `window_ms` at `now_ms`; `Err(window_end)`
    /// if the window is full.
    pub(crate) fn count_order(&mut self, now_ms: u64, window_ms: u64, limit: u32) -> Result<(u32, u64), u64> {
        let index = now_ms / window_ms;
        if self.window.0 != index {
            self.window = (index, 0);
        }
        let end = (index + 1) * window_ms;
        if self.window.1 >= limit {
            return Err(end);
        }
        self.window.1 += 1;
        Ok((self.window.1, end))
    }

    /// Adds `weight` to the minute window and returns the minute's total.
    pub(crate) fn add_weight(&mut self, now_ms: u64, weight: u64) -> u64 {
        let minute = now_ms / 60_000;
        if self.weight.0 != minute {
            self.weight = (minute, 0);
        }
        self.weight.1 += weight;
        self.weight.1
    }

    fn balance(&mut self, asset: &str) -> &mut Balance {
        self.balances.entry(asset.to_string()).or_default()
    }

    /// Validates, matches and records an order. `post_only_refuses`: a post-only order that
    /// would take is refused (Binance) rather than accepted and cancelled (Bybit).
    pub(crate) fn place(&mut self, new: NewOrder, now_ms: u64, post_only_refuses: bool) -> Result<usize, Refusal> {
        let sym = self.symbol(&new.symbol).cloned().ok_or(Refusal::UnknownSymbol)?;
        if new.kind == Kind::Limit && (new.price.is_zero() || new.price.raw() % sym.tick_size.raw().max(1) != 0) {
            return Err(Refusal::PriceFilter);
        }
        if new.qty.is_zero() || new.qty.raw() % sym.step_size.raw().max(1) != 0 {
            return Err(Refusal::LotSize);
        }
        if self.orders.iter().any(|o| o.client_id == new.client_id) {
            return Err(Refusal::Duplicate);
        }
        let marketable = match new.kind {
            Kind::Market => true,
            Kind::Limit if new.buy => new.price >= sym.price,
            Kind::Limit => new.price <= sym.price,
        };
        let value_price = if new.kind == Kind::Market { sym.price } else { new.price };
        let value = notional(value_price, new.qty).ok_or(Refusal::Notional)?;
        if value < sym.min_notional {
            return Err(Refusal::Notional);
        }
        if marketable && new.tif == Tif::PostOnly && post_only_refuses {
            return Err(Refusal::WouldTake);
        }
        // What the order needs: quote for a buy (at its limit when it rests, at the reference
        // when it fills), base for a sell.
        let fill_price = sym.price;
        let (asset, need) = if new.buy {
            let at = if marketable { fill_price } else { new.price };
            (sym.quote.clone(), notional(at, new.qty).ok_or(Refusal::Notional)?.raw())
        } else {
            (sym.base.clone(), new.qty.raw())
        };
        let resting = !marketable && new.tif == Tif::Gtc;
        let consumes = (marketable && new.tif != Tif::PostOnly) || resting;
        if consumes && self.balance(&asset).free < need {
            return Err(Refusal::Insufficient);
        }
        let id = self.next_id;
        self.next_id += 1;
        let fee_asset = if new.buy { sym.base.clone() } else { sym.quote.clone() };
        self.orders.push(MockOrder {
            id,
            client_id: new.client_id,
            symbol: new.symbol,
            buy: new.buy,
            kind: new.kind,
            tif: new.tif,
            price: if new.kind == Kind::Limit {
                new.price
            } else {
                Price::ZERO
            },
            qty: new.qty,
            executed: Qty::ZERO,
            quote: Money::ZERO,
            avg_price: Price::ZERO,
            fee: Money::ZERO,
            fee_asset,
            taker: false,
            status: Status::New,
            post_only_cancelled: false,
            created_ms: now_ms,
            updated_ms: now_ms,
        });
        let index = self.orders.len() - 1;
        if marketable && new.tif == Tif::PostOnly {
            let o = &mut self.orders[index];
            o.status = Status::Cancelled;
            o.post_only_cancelled = true;
        } else if marketable {
            self.fill(index, fill_price, true, now_ms);
        } else if resting {
            let b = self.balance(&asset);
            b.free -= need;
            b.locked += need;
        } else {
            self.orders[index].status = Status::Expired;
        }
        Ok(index)
    }

    /// Fills order `index` in full at `price`.
    fn fill(&mut self, index: usize, price: Price, taker: bool, now_ms: u64) {
        let o = self.orders[index].clone();
        let sym = self.symbol(&o.symbol).cloned();
        let Some(sym) = sym else { return };
        let value = notional(price, o.qty).unwrap_or(Money::ZERO);
        let rate = if taker { self.taker_fee } else { self.maker_fee };
        let was_resting = o.status == Status::New && !taker;
        // Release what a resting order locked.
        if was_resting {
            let (asset, locked) = if o.buy {
                (sym.quote.clone(), notional(o.price, o.qty).map_or(0, |m| m.raw()))
            } else {
                (sym.base.clone(), o.qty.raw())
            };
            let b = self.balance(&asset);
            b.locked -= locked;
            b.free += locked;
        }
        let fee_paid = if o.buy {
            // In base: the quantity received times the rate.
            fee(Money::from_raw(o.qty.raw()).unwrap_or(Money::ZERO), rate).unwrap_or(Money::ZERO)
        } else {
            fee(value, rate).unwrap_or(Money::ZERO)
        };
        if o.buy {
            self.balance(&sym.quote).free -= value.raw();
            self.balance(&sym.base).free += o.qty.raw() - fee_paid.raw();
        } else {
            self.balance(&sym.base).free -= o.qty.raw();
            self.balance(&sym.quote).free += value.raw() - fee_paid.raw();
        }
        let o = &mut self.orders[index];
        o.executed = o.qty;
        o.quote = value;
        o.avg_price = price;
        o.fee = fee_paid;
        o.taker = taker;
        o.status = Status::Filled;
        o.updated_ms = now_ms;
    }

    /// Cancels an open order; `None` if it is unknown or not open.
    pub(crate) fn cancel(&mut self, index: usize, now_ms: u64) -> Option<()> {
        let o = self.orders.get(index)?.clone();
        if o.status != Status::New {
            return None;
        }
        let sym = self.symbol(&o.symbol).cloned()?;
        let (asset, locked) = if o.buy {
            (sym.quote, notional(o.price, o.qty).map_or(0, |m| m.raw()))
        } else {
            (sym.base, o.qty.raw())
        };
        let b = self.balance(&asset);
        b.locked -= locked;
        b.free += locked;
        let o = &mut self.orders[index];
        o.status = Status::Cancelled;
        o.updated_ms = now_ms;
        Some(())
    }

    /// Moves the reference price; resting orders it crosses fill at their price as makers.
    fn set_price(&mut self, symbol: &str, price: Price, now_ms: u64) {
        if let Some(s) = self.symbols.iter_mut().find(|s| s.symbol == symbol) {
            s.price = price;
        }
        for i in 0..self.orders.len() {
            let o = &self.orders[i];
            let crossed = o.symbol == symbol
                && o.status == Status::New
                && if o.buy { price <= o.price } else { price >= o.price };
            if crossed {
                let at = o.price;
                self.fill(i, at, false, now_ms);
            }
        }
    }

    /// The index of the order with this client id or venue id.
    pub(crate) fn find(&self, symbol: &str, client_id: Option<&str>, id: Option<u64>) -> Option<usize> {
        self.orders.iter().position(|o| {
            o.symbol == symbol && (client_id.is_some_and(|c| c == o.client_id) || id.is_some_and(|i| i == o.id))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Arrivals.

/// One order placement as it reached the mock, for latency measurements in the same process
/// (`maxx bench --wire`): its client order id and when its request was in hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The request's `newClientOrderId` (Binance) or `orderLinkId` (Bybit); empty if it had none.
    pub client_id: String,
    /// [`maxx_hot::clock::mono_ns`] when the handler received the whole request (head and
    /// body read, before any check).
    pub mono_ns: u64,
}

// ---------------------------------------------------------------------------------------------
// Shared state and the handle.

pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    book: Mutex<Book>,
    counters: AtomicCounters,
    clock_offset_ms: AtomicI64,
    /// Order placements as they arrived, while [`MockHandle::record_arrivals`] is on.
    arrivals: Mutex<Option<Vec<Arrival>>>,
}

impl Shared {
    pub(crate) fn new(config: MockConfig, first_id: u64) -> Shared {
        Shared {
            book: Mutex::new(Book::new(&config, first_id)),
            config,
            counters: AtomicCounters::default(),
            clock_offset_ms: AtomicI64::new(0),
            arrivals: Mutex::new(None),
        }
    }

    /// Whether order placements are being recorded ([`MockHandle::record_arrivals`]).
    pub(crate) fn recording_arrivals(&self) -> bool {
        self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Records one order placement, if recording is on.
    pub(crate) fn arrived(&self, arrival: Arrival) {
        if let Some(log) = self.arrivals.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            log.push(arrival);
        }
    }

    /// The book; a panic elsewhere while it was held does not poison the mock for later tests.
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's clock, ms since the epoch (shifted by the configured offset).
    pub(crate) fn now_ms(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        wall.saturating_add_signed(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn count(&self, which: fn(&AtomicCounters) -> &AtomicU64) {
        which(&self.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// Counter selectors for [`Shared::count`].
pub(crate) mod counter {
    use super::AtomicCounters;
    use std::sync::atomic::AtomicU64;

    pub(crate) fn requests(c: &AtomicCounters) -> &AtomicU64 {
        &c.requests
    }
    pub(crate) fn signature_failures(c: &AtomicCounters) -> &AtomicU64 {
        &c.signature_failures
    }
    pub(crate) fn key_failures(c: &AtomicCounters) -> &AtomicU64 {
        &c.key_failures
    }
    pub(crate) fn timestamp_failures(c: &AtomicCounters) -> &AtomicU64 {
        &c.timestamp_failures
    }
    pub(crate) fn orders_placed(c: &AtomicCounters) -> &AtomicU64 {
        &c.orders_placed
    }
    pub(crate) fn orders_cancelled(c: &AtomicCounters) -> &AtomicU64 {
        &c.orders_cancelled
    }
    pub(crate) fn queries(c: &AtomicCounters) -> &AtomicU64 {
        &c.queries
    }
    pub(crate) fn rate_limited(c: &AtomicCounters) -> &AtomicU64 {
        &c.rate_limited
    }
    pub(crate) fn banned(c: &AtomicCounters) -> &AtomicU64 {
        &c.banned
    }
}

/// A running mock venue. Dropping it stops the server.
pub struct MockHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl MockHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it has seen so far.
    pub fn counters(&self) -> Counters {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            requests: get(&c.requests),
            signature_failures: get(&c.signature_failures),
            key_failures: get(&c.key_failures),
            timestamp_failures: get(&c.timestamp_failures),
            orders_placed: get(&c.orders_placed),
            orders_cancelled: get(&c.orders_cancelled),
            queries: get(&c.queries),
            rate_limited: get(&c.rate_limited),
            banned: get(&c.banned),
        }
    }

    /// Starts recording every order placement request as it arrives (an [`Arrival`] each,
    /// whether or not the mock then accepts it); recording costs a lock per placement, so it is
    /// off until asked for. Binance only: the Bybit mock records nothing.
    pub fn record_arrivals(&self) {
        let mut log = self.shared.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if log.is_none() {
            *log = Some(Vec::new());
        }
    }

    /// The placements recorded since recording started or since the last call, in arrival
    /// order; recording stays on.
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        let mut log = self.shared.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Every order the mock holds, in arrival order.
    pub fn orders(&self) -> Vec<MockOrder> {
        self.shared.book().orders.clone()
    }

    /// The free balance of `asset`.
    pub fn free_balance(&self, asset: &str) -> Money {
        let book = self.shared.book();
        Money::from_raw(book.balances.get(asset).map_or(0, |b| b.free)).unwrap_or(Money::ZERO)
    }

    /// The next placement is made, and answered only after `delay`.
    pub fn delay_next_order(&self, delay: Duration) {
        self.shared.book().fault = Some(Fault::Delay(delay));
    }

    /// The next placement is answered with a 5xx; the order is placed first if `placed`.
    pub fn fail_next_order_with_5xx(&self, placed: bool) {
        self.shared.book().fault = Some(Fault::ServerError { placed });
    }

    /// The next placement is refused with this venue error code and message.
    pub fn reject_next_order_with(&self, code: i64, msg: &str) {
        self.shared.book().fault = Some(Fault::Reject {
            code,
            msg: msg.to_string(),
        });
    }

    /// Shifts the server's clock by `ms` (positive: the server is ahead of us).
    pub fn set_clock_offset_ms(&self, ms: i64) {
        self.shared.clock_offset_ms.store(ms, Ordering::Relaxed);
    }

    /// Moves `symbol`'s reference price; resting orders it crosses fill (as makers).
    pub fn set_price(&self, symbol: &str, price: Price) {
        let now = self.shared.now_ms();
        self.shared.book().set_price(symbol, price, now);
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts `router` on 127.0.0.1:0 on a thread with its own runtime.
pub(crate) fn serve(shared: Arc<Shared>, router: axum::Router, name: &str) -> std::io::Result<MockHandle> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new()
        .name(format!("mock-{name}"))
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        })?;
    Ok(MockHandle {
        addr,
        shared,
        stop: Some(stop),
        thread: Some(thread),
    })
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by both venues.

/// Splits `a=1&b=2` into percent-decoded pairs, in order.
pub(crate) fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `value` with exactly 8 decimals, as Binance prints amounts (`"4000.00000000"`).
pub(crate) fn fixed8(raw: i64) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let m = raw.unsigned_abs();
    format!("{sign}{}.{:08}", m / 100_000_000, m % 100_000_000)
}

/// Canonical decimal text of a raw 10^-8 value.
pub(crate) fn canonical(raw: i64) -> String {
    Money::from_raw(raw).map_or_else(|| "0".into(), |m| m.to_string())
}

/// Lowercase hex HMAC-SHA256 of `message` under `key` (RFC 2104 over [`sha256`]).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(BLOCK + message.len());
    inner.extend(k.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(message);
    let inner_hash = sha256(&inner);
    let mut outer = Vec::with_capacity(BLOCK + 32);
    outer.extend(k.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&inner_hash);
    sha256(&outer).iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (FIPS 180-4 / RFC 6234), plainly written; the mock's only hash.
pub fn sha256(message: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ];
    let mut data = message.to_vec();
    let bit_len = (message.len() as u64).wrapping_mul(8);
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&bit_len.to_be_bytes());
    for block in data.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_hmac_match_published_vectors() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Binance's worked example (venues.md §1.9, vector 1).
        assert_eq!(
            hmac_sha256_hex(
                b"NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
                b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
            ),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // A key longer than a block is hashed first (RFC 4231 test case 6).
        assert_eq!(
            hmac_sha256_hex(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn forms_and_amounts() {
        assert_eq!(
            form_pairs("symbol=%EF%BC%91&a=b+c&empty="),
            vec![
                ("symbol".to_string(), "１".to_string()),
                ("a".to_string(), "b c".to_string()),
                ("empty".to_string(), String::new())
            ]
        );
        assert_eq!(fixed8(400_000_000_000), "4000.00000000");
        assert_eq!(fixed8(1), "0.00000001");
        assert_eq!(canonical(150_000_000), "1.5");
    }
}
