//! The Binance spot order-entry gateway (`maxx_hot::gateway::binance`) against the mock Binance
//! REST venue (`maxx_cold::mockvenue::binance`) over loopback.
//!
//! Each test starts its own mock on port 0 and drives the gateway from a plain thread exactly as
//! the Execution thread does: `submit` / `cancel`, then `poll` until the reports arrive, with a
//! deadline. The mock verifies signatures with its own HMAC and keeps its own books, so what it
//! counts (requests, orders, signature failures) is the venue's view of what the gateway did.

use std::time::{Duration, Instant};

use maxx_cold::mockvenue::{self, MockConfig, MockHandle};
use maxx_hot::clock::mono_ns;
use maxx_hot::gateway::binance::{BinanceSpot, BinanceSpotGateway};
use maxx_hot::gateway::rest::{ApiKey, GatewayConfig, InstrumentSpec};
use maxx_hot::gateway::sign::Secret;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::{
    ExecReport, Factor, Fill, Liquidity, Order, OrderId, OrderKind, Origin, RejectReason, Side, Stamp, Tif, Touch,
};
use maxx_hot::stage::exec::Gateway;

/// The docs' example key pair (`venues.md` §1.9).
const KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

/// How long any one wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

fn d<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn index() -> InstrumentIndex {
    let vs = VenueSymbol::new("BTCUSDT").unwrap();
    InstrumentIndex::new([(Symbol::new("BTCUSDT").unwrap(), [Some(vs), None, Some(vs), None])]).unwrap()
}

fn mock(configure: impl FnOnce(&mut MockConfig)) -> MockHandle {
    let mut config = MockConfig::btcusdt(KEY, SECRET);
    configure(&mut config);
    mockvenue::spawn_binance(config).unwrap()
}

fn gateway_config(mock: &MockHandle, secret: &str) -> GatewayConfig {
    let mut c = GatewayConfig::new(
        mock.base_url(),
        ApiKey::new(KEY).unwrap(),
        Secret::from_bytes(secret.as_bytes()),
    );
    c.recv_window_ms = 1_000;
    c.request_timeout = Duration::from_millis(500);
    c.resolve_every = Duration::from_millis(50);
    c.poll_open_every = Duration::from_millis(100);
    c.order_limit = 1_000;
    c.taker_fee_bps_milli = 10_000;
    c.maker_fee_bps_milli = 2_000;
    c.instruments = vec![InstrumentSpec {
        symbol: "BTCUSDT".into(),
        price_decimals: 2,
        qty_decimals: 8,
        base_asset: "BTC".into(),
        quote_asset: "USDT".into(),
    }];
    c
}

/// The gateway and everything it reported, driven like the Execution thread drives it.
struct Driver {
    gw: BinanceSpotGateway,
    reports: Vec<ExecReport>,
}

impl Driver {
    fn new(config: GatewayConfig, protocol: BinanceSpot) -> Driver {
        Driver {
            gw: BinanceSpotGateway::new(protocol, config, &index()).unwrap(),
            reports: Vec::new(),
        }
    }

    fn on(mock: &MockHandle) -> Driver {
        Driver::new(gateway_config(mock, SECRET), BinanceSpot::new(None, 1, None, 0))
    }

    fn submit(&mut self, order: Order) {
        let Driver { gw, reports } = self;
        gw.submit(&order, &mut |r| reports.push(r));
    }

    fn cancel(&mut self, id: u64) {
        let Driver { gw, reports } = self;
        gw.cancel(OrderId(id), &mut |r| reports.push(r));
    }

    /// Polls until `done` holds for the reports about order `id`; returns them.
    fn until(&mut self, id: u64, what: &str, done: impl Fn(&[ExecReport]) -> bool) -> Vec<ExecReport> {
        let start = Instant::now();
        loop {
            let mine = self.of(id);
            if done(&mine) {
                return mine;
            }
            assert!(start.elapsed() < WAIT, "{what}: order {id} got {mine:?}");
            let Driver { gw, reports } = self;
            if !gw.poll(mono_ns(), &mut |r| reports.push(r)) {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    }

    /// Polls until `cond` holds on the gateway.
    fn wait(&mut self, what: &str, cond: impl Fn(&BinanceSpotGateway) -> bool) {
        let start = Instant::now();
        while !cond(&self.gw) {
            assert!(start.elapsed() < WAIT, "{what}: {:?}", self.gw);
            let Driver { gw, reports } = self;
            if !gw.poll(mono_ns(), &mut |r| reports.push(r)) {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    }

    fn of(&self, id: u64) -> Vec<ExecReport> {
        self.reports
            .iter()
            .copied()
            .filter(|r| order_of(r) == OrderId(id))
            .collect()
    }
}

fn order_of(r: &ExecReport) -> OrderId {
    match *r {
        ExecReport::Routed { order_id, .. }
        | ExecReport::Ack { order_id, .. }
        | ExecReport::Cancelled { order_id, .. }
        | ExecReport::Reject { order_id, .. }
        | ExecReport::Unknown { order_id, .. }
        | ExecReport::CancelRejected { order_id, .. } => order_id,
        ExecReport::Fill(f) => f.order_id,
    }
}

fn order(id: u64, side: Side, qty: &str, kind: OrderKind, tif: Tif) -> Order {
    Order {
        id: OrderId(id),
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        side,
        qty: d(qty),
        kind,
        tif,
        pin_venue: true,
        touch: Touch::default(),
        origin: Origin::Manual,
        client_id: 0,
        mix: [Factor::ZERO; 4],
        reduce_only: false,
        ts_ns: 0,
        stamp: Stamp(0),
    }
}

fn market(id: u64, side: Side, qty: &str) -> Order {
    order(id, side, qty, OrderKind::Market, Tif::Ioc)
}

fn limit(id: u64, side: Side, qty: &str, price: &str, tif: Tif) -> Order {
    order(id, side, qty, OrderKind::Limit(d(price)), tif)
}

fn is_final(r: &[ExecReport]) -> bool {
    r.iter().any(|r| {
        matches!(
            r,
            ExecReport::Reject { .. } | ExecReport::Cancelled { .. } | ExecReport::Fill(Fill { last: true, .. })
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Counting allocator: allocations made by the current thread (the mock's runtime runs on a
// thread of its own, so only the gateway's are counted on the test's thread).

struct CountingAlloc;

thread_local! {
    /// Allocations (including reallocations) made by this thread. Const-initialised and without
    /// a destructor, so touching it from inside the allocator never allocates.
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn note_allocation() {
    // `try_with` fails only while the thread is being torn down; those are not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(std::cell::Cell::get)
}

// SAFETY: every method forwards its arguments unchanged to `System`, so `System`'s guarantees
// are ours; the only extra work is a thread-local counter update, which does not allocate.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Submits `order` and polls until it is over, without allocating in the harness: `reports`
/// has room and is cleared first. Returns the number of reports.
fn round_trip_quietly<G: Gateway>(gw: &mut G, reports: &mut Vec<ExecReport>, order: Order) -> usize {
    reports.clear();
    assert!(reports.capacity() >= 64);
    gw.submit(&order, &mut |r| reports.push(r));
    let start = Instant::now();
    while !is_final(reports) {
        assert!(start.elapsed() < WAIT, "order {} never ended", order.id.0);
        if !gw.poll(mono_ns(), &mut |r| reports.push(r)) {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    reports.len()
}

fn reject_reason(r: &[ExecReport]) -> Option<RejectReason> {
    r.iter().find_map(|r| match r {
        ExecReport::Reject { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn fills(r: &[ExecReport]) -> Vec<Fill> {
    r.iter()
        .filter_map(|r| match r {
            ExecReport::Fill(f) => Some(*f),
            _ => None,
        })
        .collect()
}

/// Signed requests pass the mock's own verification; a wrong secret is refused with -1022,
/// reported as `VenueAuth`, and places nothing.
#[test]
fn signatures_are_accepted_and_a_wrong_secret_is_venue_auth() {
    let mock = mock(|_| {});
    let mut good = Driver::on(&mock);
    good.submit(market(1, Side::Buy, "0.01"));
    let r = good.until(1, "market order", is_final);
    assert!(matches!(r[0], ExecReport::Ack { venue_order_id: 1, .. }), "{r:?}");
    assert_eq!(mock.counters().signature_failures, 0);

    let mut bad = Driver::new(
        gateway_config(&mock, "not-the-secret"),
        BinanceSpot::new(None, 1, None, 0),
    );
    bad.submit(market(2, Side::Buy, "0.01"));
    let r = bad.until(2, "tampered secret", is_final);
    assert_eq!(reject_reason(&r), Some(RejectReason::VenueAuth), "{r:?}");
    let c = mock.counters();
    assert_eq!((c.signature_failures, c.orders_placed), (1, 1));
}

/// A marketable order: Ack with the venue's id, one taker fill at the mock's price, the
/// buyer's base-asset commission converted to quote.
#[test]
fn a_marketable_order_round_trips_with_price_and_fee() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    g.submit(market(7, Side::Buy, "0.01"));
    let r = g.until(7, "market buy", is_final);
    assert!(
        matches!(
            r[0],
            ExecReport::Ack {
                order_id: OrderId(7),
                venue_order_id: 1
            }
        ),
        "{r:?}"
    );
    let f = fills(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert_eq!(f[0].price, d::<Price>("60000"));
    assert_eq!(f[0].qty, d::<Qty>("0.01"));
    // 10 bps of 0.01 BTC = 0.00001 BTC, at 60000 = 0.6 USDT.
    assert_eq!(f[0].fee, d::<Money>("0.6"));
    assert_eq!(
        (f[0].liquidity, f[0].last, f[0].venue),
        (Liquidity::Taker, true, Venue::Binance)
    );
    // A sell pays in quote directly.
    g.submit(market(8, Side::Sell, "0.02"));
    let r = g.until(8, "market sell", is_final);
    assert_eq!(fills(&r)[0].fee, d::<Money>("1.2"));
    assert_eq!(mock.orders()[0].client_id, "mx-7");
    assert_eq!(g.gw.open_orders(), 0);
}

/// A resting order is acknowledged, polled, filled later as a maker (learnt by query), and
/// another resting order is cancelled with its whole quantity released.
#[test]
fn resting_orders_fill_by_query_or_cancel() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    g.submit(limit(1, Side::Buy, "0.01", "59000", Tif::Gtc));
    g.submit(limit(2, Side::Sell, "0.01", "61000", Tif::Gtc));
    g.until(1, "ack", |r| matches!(r, [ExecReport::Ack { .. }]));
    g.until(2, "ack", |r| matches!(r, [ExecReport::Ack { .. }]));
    let queries = mock.counters().queries;
    g.wait("periodic queries", |_| mock.counters().queries >= queries + 2);
    assert_eq!(g.of(1).len(), 1, "still only acknowledged");

    mock.set_price("BTCUSDT", d("58900"));
    let r = g.until(1, "fill learnt by query", is_final);
    let f = fills(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert_eq!(
        (f[0].price, f[0].liquidity, f[0].last),
        (d("59000"), Liquidity::Maker, true)
    );
    // No commission in an order query: the configured maker estimate, 2 bps of 590.
    assert_eq!(f[0].fee, d::<Money>("0.118"));

    g.cancel(2);
    let r = g.until(2, "cancel", is_final);
    assert!(
        matches!(r[1], ExecReport::Cancelled { qty, side: Side::Sell, .. } if qty == d::<Qty>("0.01")),
        "{r:?}"
    );
    assert_eq!(mock.counters().orders_cancelled, 1);
    assert_eq!(g.gw.open_orders(), 0);
}

/// Venue refusals map to their reasons: LIMIT_MAKER that would take, filter failures, balance.
/// A price finer than the instrument's decimals is refused before any request.
#[test]
fn venue_refusals_map_to_reasons() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    g.submit(limit(1, Side::Buy, "0.01", "61000", Tif::PostOnly));
    g.submit(market(2, Side::Buy, "0.00005"));
    g.submit(market(3, Side::Buy, "0.000015"));
    g.submit(market(4, Side::Buy, "2"));
    g.submit(limit(5, Side::Sell, "0.01", "61000", Tif::Ioc));
    for (id, reason) in [
        (1, RejectReason::PostOnlyWouldTake),
        (2, RejectReason::VenueFilter),
        (3, RejectReason::VenueFilter),
        (4, RejectReason::InsufficientFunds),
    ] {
        let r = g.until(id, "refusal", is_final);
        assert_eq!(reject_reason(&r), Some(reason), "order {id}: {r:?}");
    }
    // An IOC that cannot fill expires: Ack, then the whole quantity cancelled.
    let r = g.until(5, "ioc", is_final);
    assert!(
        matches!(r[..], [ExecReport::Ack { .. }, ExecReport::Cancelled { .. }]),
        "{r:?}"
    );

    let requests = mock.counters().requests;
    g.submit(limit(6, Side::Buy, "0.01", "59000.001", Tif::Gtc));
    assert_eq!(reject_reason(&g.of(6)), Some(RejectReason::VenueFilter));
    assert_eq!(mock.counters().requests, requests, "refused locally");
    assert_eq!(mock.counters().orders_placed, 1, "only the IOC reached the book");
}

/// Past the order-count limit: 429 → `VenueRateLimit`, then nothing reaches the venue until
/// `Retry-After`; a client that ignores the 429 gets 418; after the block, orders flow again.
#[test]
fn rate_limits_block_until_retry_after_and_418_after_ignoring() {
    let mock = mock(|c| {
        c.order_limit = 3;
        c.order_window = Duration::from_secs(2);
        c.ban = Duration::from_secs(1);
    });
    let mut g = Driver::on(&mock);
    let mut limited = None;
    for id in 1..=30 {
        g.submit(market(id, Side::Buy, "0.0001"));
        let r = g.until(id, "order", is_final);
        if let Some(reason) = reject_reason(&r) {
            assert_eq!(reason, RejectReason::VenueRateLimit, "{r:?}");
            limited = Some(id);
            break;
        }
    }
    let limited = limited.expect("the venue's limit was reached");
    assert_eq!(mock.counters().rate_limited, 1);
    assert!(g.gw.orders_blocked(mono_ns()));
    let requests = mock.counters().requests;
    g.submit(market(100, Side::Buy, "0.0001"));
    assert_eq!(
        reject_reason(&g.of(100)),
        Some(RejectReason::VenueRateLimit),
        "refused at once"
    );
    assert_eq!(
        (g.gw.requests_in_flight(), mock.counters().requests),
        (0, requests),
        "nothing sent"
    );

    // Another client on the same IP keeps sending during the Retry-After: banned.
    let mut other = Driver::on(&mock);
    other.submit(market(200, Side::Buy, "0.0001"));
    let r = other.until(200, "banned", is_final);
    assert_eq!(reject_reason(&r), Some(RejectReason::VenueRateLimit), "{r:?}");
    assert_eq!(mock.counters().banned, 1);
    let requests = mock.counters().requests;
    other.submit(market(201, Side::Buy, "0.0001"));
    assert_eq!(reject_reason(&other.of(201)), Some(RejectReason::VenueRateLimit));
    assert_eq!(mock.counters().requests, requests, "banned: nothing sent");

    // Both blocks end; the ban (1 s) and the 429 window are over by then.
    g.wait("429 block over", |gw| !gw.orders_blocked(mono_ns()));
    other.wait("418 block over", |gw| !gw.orders_blocked(mono_ns()));
    let start = Instant::now();
    let mut id = 300;
    loop {
        other.submit(market(id, Side::Buy, "0.0001"));
        let r = other.until(id, "after the ban", is_final);
        if reject_reason(&r).is_none() {
            break;
        }
        // The venue's ban may outlast our estimate by a rounding second: wait it out.
        other.wait("block over", |gw| !gw.orders_blocked(mono_ns()));
        assert!(start.elapsed() < WAIT, "orders never flowed again");
        id += 1;
    }
    assert!(limited >= 2);
}

/// The order-count header makes the gateway stop before the venue's limit: no 429 ever.
#[test]
fn usage_headers_stop_orders_before_the_venue_limit() {
    let mock = mock(|c| {
        c.order_limit = 3;
        c.order_window = Duration::from_secs(2);
    });
    let mut g = Driver::new(
        gateway_config(&mock, SECRET),
        BinanceSpot::new(Some(3), 2, Some(10_000), 0),
    );
    let mut stopped = false;
    for id in 1..=30 {
        let requests = mock.counters().requests;
        g.submit(market(id, Side::Buy, "0.0001"));
        if let Some(reason) = reject_reason(&g.of(id)) {
            assert_eq!(reason, RejectReason::VenueRateLimit);
            assert_eq!(mock.counters().requests, requests, "refused before sending");
            stopped = true;
            break;
        }
        g.until(id, "order", is_final);
    }
    assert!(stopped);
    assert_eq!(mock.counters().rate_limited, 0, "the venue never had to refuse");
}

/// The answer is lost (the mock answers after our deadline) but the order was placed:
/// `Unknown` once, then the query finds it: Ack and Fill. One order at the venue.
#[test]
fn a_timed_out_placement_is_resolved_by_query_and_never_resent() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    mock.delay_next_order(Duration::from_secs(3));
    g.submit(market(1, Side::Buy, "0.01"));
    let r = g.until(1, "resolved", is_final);
    assert!(
        matches!(
            r[0],
            ExecReport::Unknown {
                order_id: OrderId(1),
                ..
            }
        ),
        "{r:?}"
    );
    assert!(matches!(r[1], ExecReport::Ack { venue_order_id: 1, .. }), "{r:?}");
    let f = fills(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert_eq!((f[0].price, f[0].qty, f[0].last), (d("60000"), d("0.01"), true));
    assert_eq!(r.iter().filter(|r| matches!(r, ExecReport::Unknown { .. })).count(), 1);
    assert_eq!(mock.orders().len(), 1, "never resent");
    assert_eq!((g.gw.stats().unknowns, g.gw.stats().resolved), (1, 1));
}

/// A 5xx: when the order was not placed, the queries find nothing and, once the request can no
/// longer be accepted, it is rejected `VenueDown`; when it was placed, it is found.
#[test]
fn a_5xx_is_unknown_until_the_query_says() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    mock.fail_next_order_with_5xx(false);
    g.submit(market(1, Side::Buy, "0.01"));
    let r = g.until(1, "not placed", is_final);
    assert!(matches!(r[0], ExecReport::Unknown { .. }), "{r:?}");
    assert_eq!(reject_reason(&r), Some(RejectReason::VenueDown), "{r:?}");
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(mock.orders().is_empty());

    mock.fail_next_order_with_5xx(true);
    g.submit(market(2, Side::Buy, "0.01"));
    let r = g.until(2, "placed", is_final);
    assert!(
        matches!(
            r[..],
            [ExecReport::Unknown { .. }, ExecReport::Ack { .. }, ExecReport::Fill(_)]
        ),
        "{r:?}"
    );
    assert_eq!(mock.orders().len(), 1);
}

/// The venue's clock runs 5 s ahead: the order is refused -1021 (`ClockSkew`, not resent), the
/// gateway learns the offset, and the next order goes through.
#[test]
fn clock_skew_is_learnt_and_the_next_order_succeeds() {
    let mock = mock(|_| {});
    mock.set_clock_offset_ms(5_000);
    let mut g = Driver::on(&mock);
    g.submit(market(1, Side::Buy, "0.01"));
    let r = g.until(1, "skewed", is_final);
    assert_eq!(reject_reason(&r), Some(RejectReason::ClockSkew), "{r:?}");
    g.wait("offset learnt", |gw| !gw.syncing_clock() && gw.stats().clock_syncs == 1);
    let offset = g.gw.clock_offset_ms();
    assert!((4_000..6_000).contains(&offset), "offset {offset}");
    g.submit(market(2, Side::Buy, "0.01"));
    let r = g.until(2, "after the sync", is_final);
    assert_eq!(reject_reason(&r), None, "{r:?}");
    assert_eq!(mock.counters().timestamp_failures, 1);
    assert_eq!(mock.orders().len(), 1);
}

/// Cancels of orders nobody knows: one the gateway never sent (refused locally), and one the
/// venue filled before the cancel arrived (-2011), whose fill the gateway then learns.
#[test]
fn cancels_of_unknown_orders_are_refused() {
    let mock = mock(|_| {});
    let mut config = gateway_config(&mock, SECRET);
    config.poll_open_every = Duration::from_secs(60);
    let mut g = Driver::new(config, BinanceSpot::new(None, 1, None, 0));
    let requests = mock.counters().requests;
    g.cancel(999);
    assert_eq!(
        g.of(999),
        [ExecReport::CancelRejected {
            order_id: OrderId(999),
            reason: RejectReason::UnknownOrder
        }]
    );
    assert_eq!(mock.counters().requests, requests);

    g.submit(limit(1, Side::Buy, "0.01", "59000", Tif::Gtc));
    g.until(1, "ack", |r| matches!(r, [ExecReport::Ack { .. }]));
    mock.set_price("BTCUSDT", d("58000"));
    g.cancel(1);
    let r = g.until(1, "fill after the refused cancel", is_final);
    assert!(
        r.contains(&ExecReport::CancelRejected {
            order_id: OrderId(1),
            reason: RejectReason::UnknownOrder
        }),
        "{r:?}"
    );
    assert_eq!(fills(&r).len(), 1, "{r:?}");
    assert_eq!(mock.counters().orders_cancelled, 0);
}

/// Once its connection is open, the gateway places, fills, queries and cancels without a single
/// heap allocation on the Execution thread (plain TCP keep-alive; see `gateway::http`).
#[test]
fn the_steady_state_allocates_nothing() {
    let mock = mock(|c| c.order_limit = 1_000);
    let mut config = gateway_config(&mock, SECRET);
    config.http.connections = 1;
    let mut gw = BinanceSpotGateway::new(BinanceSpot::default(), config, &index()).unwrap();
    let mut reports = Vec::with_capacity(64);
    let at_start = allocations();
    drop(std::hint::black_box(Box::new(at_start)));
    assert_eq!(allocations(), at_start + 1, "the counter counts");
    // Warm up: the connection is opened and used once.
    round_trip_quietly(&mut gw, &mut reports, market(1, Side::Buy, "0.001"));
    let before = allocations();
    for id in 2..12 {
        let n = round_trip_quietly(&mut gw, &mut reports, market(id, Side::Buy, "0.001"));
        assert_eq!(n, 2, "ack and fill");
    }
    // A resting order: polled by query, then cancelled.
    reports.clear();
    gw.submit(&limit(20, Side::Buy, "0.001", "59000", Tif::Gtc), &mut |r| {
        reports.push(r)
    });
    let queries = mock.counters().queries;
    let start = Instant::now();
    while mock.counters().queries < queries + 3 {
        assert!(start.elapsed() < WAIT);
        if !gw.poll(mono_ns(), &mut |r| reports.push(r)) {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    gw.cancel(OrderId(20), &mut |r| reports.push(r));
    while !is_final(&reports) {
        assert!(start.elapsed() < WAIT);
        if !gw.poll(mono_ns(), &mut |r| reports.push(r)) {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    assert_eq!(allocations(), before, "allocations in the steady state");
    assert!(
        matches!(reports.last(), Some(ExecReport::Cancelled { .. })),
        "{reports:?}"
    );
}

/// Nobody listens: the order is refused `VenueDown` (it was never written), and while the
/// client backs off, the next one is refused at once.
#[test]
fn an_unreachable_venue_is_venue_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mock = mock(|_| {});
    let mut config = gateway_config(&mock, SECRET);
    config.base_url = format!("http://127.0.0.1:{port}");
    let mut g = Driver {
        gw: BinanceSpotGateway::new(BinanceSpot::default(), config, &index()).unwrap(),
        reports: Vec::new(),
    };
    g.submit(market(1, Side::Buy, "0.01"));
    let r = g.until(1, "connect refused", is_final);
    assert_eq!(
        r,
        [ExecReport::Reject {
            order_id: OrderId(1),
            instrument: InstrumentId(0),
            side: Side::Buy,
            qty: d("0.01"),
            reason: RejectReason::VenueDown,
        }]
    );
    g.submit(market(2, Side::Buy, "0.01"));
    assert_eq!(
        reject_reason(&g.until(2, "backoff", is_final)),
        Some(RejectReason::VenueDown)
    );
    assert_eq!(g.gw.stats().unknowns, 0, "nothing was written, so nothing is unknown");
}

/// The kill switch's cancel-all: every open order is cancelled, including one whose placement
/// is still in flight (its cancel waits for the answer).
#[test]
fn cancel_all_cancels_every_open_order() {
    let mock = mock(|_| {});
    let mut g = Driver::on(&mock);
    g.submit(limit(1, Side::Buy, "0.01", "59000", Tif::Gtc));
    g.submit(limit(2, Side::Buy, "0.01", "58000", Tif::Gtc));
    g.until(1, "ack", |r| matches!(r, [ExecReport::Ack { .. }]));
    g.until(2, "ack", |r| matches!(r, [ExecReport::Ack { .. }]));
    g.submit(limit(3, Side::Sell, "0.01", "61000", Tif::Gtc));
    let Driver { gw, reports } = &mut g;
    gw.cancel_all(&mut |r| reports.push(r));
    for id in 1..=3 {
        let r = g.until(id, "cancelled", is_final);
        assert!(
            matches!(r.last(), Some(ExecReport::Cancelled { qty, .. }) if *qty == d::<Qty>("0.01")),
            "{r:?}"
        );
    }
    assert_eq!(mock.counters().orders_cancelled, 3);
    assert_eq!(g.gw.open_orders(), 0);
    assert!(
        mock.orders()
            .iter()
            .all(|o| o.status == maxx_cold::mockvenue::Status::Cancelled)
    );
}
