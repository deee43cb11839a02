//! Smart order routing on constructed books, through `Exec` and real paper venues: the better
//! venue after fees at the displayed size; a venue over the reject ratio demoted, orders failing
//! over to the venue with the better fill rate, and re-admitted after probation; a venue whose
//! feed is not live left out; no admitted venue is `NoRoute`; the ack-latency penalty. Then a
//! long pseudo-random session over two venues (passive and taking orders, reprices, partial
//! fills, latency, cancels) that gives identical records when run twice and allocates nothing
//! in steady state (a counting global allocator, as in `tests/hot_alloc.rs`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::kill::KillSwitch;
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{
    ExecReport, Factor, Order, OrderId, OrderKind, Origin, RejectReason, RouteReason, Side, Stamp, Tick, TickBody, Tif,
    Touch,
};
use maxx_hot::stage::exec::{Exec, ExecCommand, ExecEvent, ExecNote, ExecParams, Fees, PaperVenue};

// --- a counting allocator for this thread only ---

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// around it touches only an atomic and a const-initialised thread-local `Cell<bool>`, neither of
// which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    // `try_with`: the thread-local may already be gone while a thread shuts down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// --- constructed markets ---

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000_000_000_000;
const BTC: InstrumentId = InstrumentId(0);
const EUR: InstrumentId = InstrumentId(1);

fn p(s: &str) -> Price {
    s.parse().unwrap()
}

fn q(s: &str) -> Qty {
    s.parse().unwrap()
}

/// BTCUSDT on Binance, Coinbase and Bybit; EURUSD on OANDA only.
fn index() -> Arc<InstrumentIndex> {
    let vs = |s| Some(VenueSymbol::new(s).unwrap());
    let mut btc = [None; Venue::COUNT];
    for v in [Venue::Binance, Venue::Coinbase, Venue::Bybit] {
        btc[v.index()] = vs("BTCUSDT");
    }
    let mut eur = [None; Venue::COUNT];
    eur[Venue::Oanda.index()] = vs("EUR_USD");
    Arc::new(
        InstrumentIndex::new([
            (Symbol::new("BTCUSDT").unwrap(), btc),
            (Symbol::new("EURUSD").unwrap(), eur),
        ])
        .unwrap(),
    )
}

fn fees(taker_bps_milli: i64) -> Fees {
    Fees {
        maker_bps_milli: taker_bps_milli,
        taker_bps_milli,
    }
}

/// Every order takes (`urgent_score` 0), so routing alone decides where it fills.
fn takers() -> ExecParams {
    ExecParams {
        urgent_score: Factor::ZERO,
        tick_size: vec![p("0.01"), p("0.00001")],
        ..ExecParams::default()
    }
}

/// One paper venue per `(venue, taker fee, latency, capacity)`.
fn exec(venues: &[(Venue, i64, u64, usize)], params: ExecParams) -> Exec<PaperVenue> {
    let gateways = venues
        .iter()
        .map(|&(v, fee, latency, cap)| PaperVenue::configured(v, fees(fee), latency, cap))
        .collect();
    Exec::with_params(gateways, KillSwitch::new(), params, Some(index()))
}

fn quote(venue: Venue, at: u64, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Tick {
    common::quote_tick(venue, at, bid, bid_qty, ask, ask_qty)
}

fn order(id: u64, side: Side, qty: &str) -> Order {
    Order {
        id: OrderId(id),
        instrument: BTC,
        venue: Venue::Binance,
        side,
        qty: q(qty),
        kind: OrderKind::Market,
        tif: Tif::Auto,
        pin_venue: false,
        touch: Touch {
            bid: p("99.98"),
            ask: p("100.02"),
            last: p("100"),
        },
        origin: Origin::Alpha,
        client_id: 0,
        mix: [Factor::ZERO; 4],
        reduce_only: false,
        ts_ns: T0,
        stamp: Stamp(0),
    }
}

/// A manual order pinned to `venue` with this limit and time in force.
fn pinned(id: u64, venue: Venue, side: Side, limit: &str, tif: Tif) -> Order {
    Order {
        venue,
        pin_venue: true,
        tif,
        kind: OrderKind::Limit(p(limit)),
        origin: Origin::Manual,
        ..order(id, side, "1")
    }
}

fn send(exec: &mut Exec<PaperVenue>, o: Order) -> Vec<ExecReport> {
    let mut out = Vec::new();
    exec.process(o, Stamp(1), &mut |e| out.push(e));
    while exec.poll(0, 64, &mut |e| out.push(e)) {}
    out.into_iter()
        .filter_map(|e| match e {
            ExecEvent::Report(r) => Some(r),
            ExecEvent::Order(_) => None,
        })
        .collect()
}

fn tick(exec: &mut Exec<PaperVenue>, t: Tick) -> Vec<ExecReport> {
    exec.on_tick(&t);
    let mut out = Vec::new();
    while exec.poll(0, 64, &mut |e| out.push(e)) {}
    out.into_iter()
        .filter_map(|e| match e {
            ExecEvent::Report(r) => Some(r),
            ExecEvent::Order(_) => None,
        })
        .collect()
}

/// Where the order was routed and why.
fn routed(reports: &[ExecReport]) -> (Venue, RouteReason) {
    match reports.first() {
        Some(&ExecReport::Routed { venue, reason, .. }) => (venue, reason),
        other => panic!("not routed: {other:?} in {reports:?}"),
    }
}

fn filled_at(reports: &[ExecReport]) -> Vec<(Venue, Price, Qty)> {
    reports
        .iter()
        .filter_map(|r| match r {
            ExecReport::Fill(f) => Some((f.venue, f.price, f.qty)),
            _ => None,
        })
        .collect()
}

fn rejected(reports: &[ExecReport]) -> Option<RejectReason> {
    reports.iter().find_map(|r| match r {
        ExecReport::Reject { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn orders_go_to_the_better_venue_after_fees_at_the_displayed_size() {
    // Binance: ask 100.00 showing 5, taker 10 bps. Bybit: ask 100.02 showing 0.5, taker 5 bps.
    let mut exec = exec(
        &[(Venue::Binance, 10_000, 0, 64), (Venue::Bybit, 5_000, 0, 64)],
        takers(),
    );
    tick(&mut exec, quote(Venue::Binance, T0, "99.98", "5", "100", "5"));
    tick(&mut exec, quote(Venue::Bybit, T0, "99.96", "5", "100.02", "0.5"));
    // 0.5: Binance costs 100 × 1.001 = 100.1, Bybit 100.02 × 1.0005 = 100.07.
    let r = send(&mut exec, order(1, Side::Buy, "0.5"));
    assert_eq!(routed(&r), (Venue::Bybit, RouteReason::BestPrice));
    assert_eq!(filled_at(&r), [(Venue::Bybit, p("100.02"), q("0.5"))]);
    // 2: Bybit shows only 0.5; the other 1.5 pays the 10 bp depth penalty (7.5 bps over the
    // order): 100.02 × 1.00125 = 100.145 > 100.1 at Binance, which shows all of it.
    let r = send(&mut exec, order(2, Side::Buy, "2"));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::BestPrice));
    assert_eq!(filled_at(&r), [(Venue::Binance, p("100"), q("2"))]);
    // A sell: Binance 99.98 × 0.999 = 99.880 against Bybit 99.96 × 0.9995 = 99.910.
    let r = send(&mut exec, order(3, Side::Sell, "1"));
    assert_eq!(routed(&r), (Venue::Bybit, RouteReason::BestPrice));
    // A pinned order goes where it was sent, however it ranks.
    let r = send(&mut exec, pinned(4, Venue::Binance, Side::Buy, "100.05", Tif::Ioc));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::Pinned));
    let c = exec.counters();
    assert_eq!(
        (c.routed[Venue::Binance.index()], c.routed[Venue::Bybit.index()]),
        (2, 2)
    );
    assert_eq!(c.route_reasons[RouteReason::Pinned.index()], 1);
}

#[test]
fn a_venue_over_the_reject_ratio_is_demoted_orders_fail_over_and_it_is_readmitted_after_probation() {
    let params = ExecParams {
        probation_ns: 10 * SEC,
        ..takers()
    };
    // Binance has room for one open order only: further orders are refused by the venue.
    let mut exec = exec(
        &[
            (Venue::Binance, 7_500, 0, 1),
            (Venue::Coinbase, 7_500, 0, 64),
            (Venue::Bybit, 7_500, 0, 64),
        ],
        params,
    );
    tick(&mut exec, quote(Venue::Binance, T0, "99.99", "10", "100", "10"));
    tick(&mut exec, quote(Venue::Coinbase, T0, "99.98", "10", "100.01", "10"));
    tick(&mut exec, quote(Venue::Bybit, T0, "99.98", "10", "100.01", "10"));
    // Coinbase and Bybit rank alike on price; Coinbase's IOCs below the market never fill,
    // Bybit's at the market do: Bybit has the better fill rate.
    for id in [1, 2] {
        let r = send(&mut exec, pinned(id, Venue::Coinbase, Side::Buy, "99", Tif::Ioc));
        assert!(filled_at(&r).is_empty());
        let r = send(&mut exec, pinned(10 + id, Venue::Bybit, Side::Buy, "100.05", Tif::Ioc));
        assert_eq!(filled_at(&r).len(), 1);
    }
    assert_eq!(exec.venue_health(Venue::Coinbase).fill_rate_milli, 0);
    assert_eq!(exec.venue_health(Venue::Bybit).fill_rate_milli, 1_000);
    // An order resting at Binance fills its table.
    let r = send(&mut exec, pinned(20, Venue::Binance, Side::Buy, "90", Tif::Gtc));
    assert!(matches!(r[..], [_, ExecReport::Ack { .. }]), "{r:?}");

    // Binance ranks best, and refuses. One reject in a window of 50 is 2 %: not above.
    let r = send(&mut exec, order(21, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::BestPrice));
    assert_eq!(rejected(&r), Some(RejectReason::VenueReject));
    assert!(!exec.venue_health(Venue::Binance).demoted);
    // A second: 4 % > 2 %. Demoted, with a note for the operators.
    let r = send(&mut exec, order(22, Side::Buy, "1"));
    assert_eq!(rejected(&r), Some(RejectReason::VenueReject));
    let h = exec.venue_health(Venue::Binance);
    assert!(h.demoted);
    assert_eq!((h.rejects, h.window), (2, 50));
    let notes: Vec<ExecNote> = std::iter::from_fn(|| exec.pop_note()).collect();
    assert_eq!(
        notes,
        [ExecNote::Demoted {
            venue: Venue::Binance,
            rejects: 2,
            window: 50,
            until_ns: T0 + 10 * SEC,
            ts_ns: T0,
        }]
    );
    // The next order fails over to the venue with the better fill rate.
    let r = send(&mut exec, order(23, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Bybit, RouteReason::Failover(Venue::Binance)));
    assert_eq!(filled_at(&r), [(Venue::Bybit, p("100.01"), q("1"))]);
    assert_eq!(exec.counters().demotions[Venue::Binance.index()], 1);

    // The resting order goes; probation ends with the first tick at or after T0 + 10 s.
    exec.command(ExecCommand::Cancel(OrderId(20)));
    tick(
        &mut exec,
        quote(Venue::Binance, T0 + 9 * SEC, "99.99", "10", "100", "10"),
    );
    let r = send(&mut exec, order(24, Side::Buy, "1"));
    assert_eq!(
        routed(&r).1,
        RouteReason::Failover(Venue::Binance),
        "still on probation"
    );
    tick(
        &mut exec,
        quote(Venue::Binance, T0 + 10 * SEC, "99.99", "10", "100", "10"),
    );
    let h = exec.venue_health(Venue::Binance);
    assert!(!h.demoted);
    assert_eq!(h.rejects, 0, "a fresh window");
    assert!(matches!(
        exec.pop_note(),
        Some(ExecNote::Readmitted {
            venue: Venue::Binance,
            ts_ns
        }) if ts_ns == T0 + 10 * SEC
    ));
    let r = send(&mut exec, order(25, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::BestPrice));
    assert_eq!(filled_at(&r), [(Venue::Binance, p("100"), q("1"))]);
    assert_eq!(exec.counters().readmissions[Venue::Binance.index()], 1);
}

#[test]
fn a_venue_whose_feed_is_not_live_is_left_out_and_nothing_admitted_is_no_route() {
    let mut exec = exec(
        &[(Venue::Binance, 7_500, 0, 64), (Venue::Bybit, 7_500, 0, 64)],
        takers(),
    );
    tick(&mut exec, quote(Venue::Binance, T0, "99.99", "10", "100", "10"));
    tick(&mut exec, quote(Venue::Bybit, T0, "99.98", "10", "100.01", "10"));
    assert_eq!(routed(&send(&mut exec, order(1, Side::Buy, "1"))).0, Venue::Binance);
    exec.set_feed(Venue::Binance, false);
    assert!(!exec.venue_health(Venue::Binance).feed_live);
    assert_eq!(
        routed(&send(&mut exec, order(2, Side::Buy, "1"))),
        (Venue::Bybit, RouteReason::OnlyVenue)
    );
    // A pinned order is sent as asked.
    let r = send(&mut exec, pinned(3, Venue::Binance, Side::Buy, "100.05", Tif::Ioc));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::Pinned));
    // No feed live: nothing admitted.
    exec.set_feed(Venue::Bybit, false);
    assert_eq!(
        send(&mut exec, order(4, Side::Buy, "1")),
        [ExecReport::Reject {
            order_id: OrderId(4),
            instrument: BTC,
            side: Side::Buy,
            qty: q("1"),
            reason: RejectReason::NoRoute,
        }]
    );
    // EURUSD is listed only on OANDA, which has no gateway here; nor can an order be pinned
    // there.
    let eur = Order {
        instrument: EUR,
        ..order(5, Side::Buy, "1")
    };
    assert_eq!(rejected(&send(&mut exec, eur)), Some(RejectReason::NoRoute));
    let oanda = Order {
        instrument: EUR,
        ..pinned(6, Venue::Oanda, Side::Buy, "1.1", Tif::Gtc)
    };
    assert_eq!(rejected(&send(&mut exec, oanda)), Some(RejectReason::NoRoute));
    exec.set_feed(Venue::Binance, true);
    exec.set_feed(Venue::Bybit, true);
    assert_eq!(exec.open_orders(), 0);
}

#[test]
fn a_demoted_venue_still_trades_when_no_other_venue_can() {
    // Binance, with room for one open order, is the only venue that can trade: Bybit's feed is
    // not live.
    let mut exec = exec(&[(Venue::Binance, 7_500, 0, 1), (Venue::Bybit, 7_500, 0, 64)], takers());
    exec.set_feed(Venue::Bybit, false);
    tick(&mut exec, quote(Venue::Binance, T0, "99.99", "10", "100", "10"));
    send(&mut exec, pinned(1, Venue::Binance, Side::Buy, "90", Tif::Gtc));
    for id in [2, 3] {
        let r = send(&mut exec, order(id, Side::Buy, "1"));
        assert_eq!(routed(&r), (Venue::Binance, RouteReason::OnlyVenue));
        assert_eq!(rejected(&r), Some(RejectReason::VenueReject));
    }
    assert!(exec.venue_health(Venue::Binance).demoted);
    exec.command(ExecCommand::Cancel(OrderId(1)));
    let r = send(&mut exec, order(4, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::LastResort));
    assert_eq!(filled_at(&r), [(Venue::Binance, p("100"), q("1"))]);
}

#[test]
fn slow_acks_cost_a_venue_its_place() {
    // Same book and fees; Binance is 5 ms of logical time away, Bybit answers at once.
    let mut exec = exec(
        &[(Venue::Binance, 7_500, 5 * MS, 64), (Venue::Bybit, 7_500, 0, 64)],
        takers(),
    );
    tick(&mut exec, quote(Venue::Binance, T0, "99.99", "10", "100", "10"));
    tick(&mut exec, quote(Venue::Bybit, T0, "99.99", "10", "100", "10"));
    // A tie: the venue order decides.
    let r = send(&mut exec, order(1, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Binance, RouteReason::BestPrice));
    // The ack comes with the first Binance tick after the order arrived (T0 + 5 ms).
    let r = tick(
        &mut exec,
        quote(Venue::Binance, T0 + 6 * MS, "99.99", "10", "100", "10"),
    );
    assert!(matches!(r[0], ExecReport::Ack { .. }), "{r:?}");
    assert_eq!(exec.venue_health(Venue::Binance).ack_ewma_ns, 6 * MS);
    // 6 ms × 0.1 bp/ms = 0.6 bp: Bybit now ranks first.
    let r = send(&mut exec, order(2, Side::Buy, "1"));
    assert_eq!(routed(&r), (Venue::Bybit, RouteReason::BestPrice));
}

// --- a long session: determinism and no allocation ---

/// A small deterministic generator (PCG-style LCG), so the session needs no RNG crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the session saw, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Event(ExecEvent),
    Note(ExecNote),
}

/// Two venues (Binance 1 ms away, Bybit at once; maker 1 bp, takers 5 and 6 bps) and a market
/// that wanders a cent at a time.
struct Session {
    exec: Exec<PaperVenue>,
    rng: Lcg,
    mid: [i64; 2],
    step: u64,
    next_id: u64,
}

impl Session {
    fn new() -> Self {
        let params = ExecParams {
            passive_timeout_ns: 30 * MS,
            max_reprices: 1,
            tick_size: vec![p("0.01"), p("0.00001")],
            ..ExecParams::default()
        };
        let gateways = vec![
            PaperVenue::configured(
                Venue::Binance,
                Fees {
                    maker_bps_milli: 1_000,
                    taker_bps_milli: 5_000,
                },
                MS,
                512,
            ),
            PaperVenue::configured(
                Venue::Bybit,
                Fees {
                    maker_bps_milli: 1_000,
                    taker_bps_milli: 6_000,
                },
                0,
                512,
            ),
        ];
        Self {
            exec: Exec::with_params(gateways, KillSwitch::new(), params, Some(index())),
            rng: Lcg(42),
            mid: [10_000_000, 10_000_100],
            step: 0,
            next_id: 1,
        }
    }

    /// One millisecond: a quote and, every other time, a trade on each venue; sometimes an order
    /// or a cancel.
    /// Everything seen goes to `sink`. Allocates nothing.
    fn step(&mut self, sink: &mut impl FnMut(Seen)) {
        self.step += 1;
        let t = T0 + self.step * MS;
        let cents = |c: i64| Price::from_raw(c * 1_000_000).unwrap();
        let lots = |n: u64| Qty::from_raw(n as i64 * 1_000_000).unwrap();
        for (i, venue) in [Venue::Binance, Venue::Bybit].into_iter().enumerate() {
            self.mid[i] += self.rng.below(3) as i64 - 1;
            let (bid, ask) = (self.mid[i] - 1, self.mid[i] + 1);
            let quote = Tick {
                instrument: BTC,
                venue,
                body: TickBody::Quote {
                    bid: cents(bid),
                    bid_qty: lots(1 + self.rng.below(200)),
                    ask: cents(ask),
                    ask_qty: lots(1 + self.rng.below(200)),
                },
                seq: self.step,
                exchange_ns: 0,
                recv_ns: t,
                stamp: Stamp(0),
            };
            self.exec.on_tick(&quote);
            if self.rng.below(2) == 0 {
                continue;
            }
            let aggressor = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
            let at = match aggressor {
                Side::Buy => ask + self.rng.below(2) as i64,
                Side::Sell => bid - self.rng.below(2) as i64,
            };
            let trade = Tick {
                body: TickBody::Trade {
                    price: cents(at),
                    qty: lots(1 + self.rng.below(40)),
                    aggressor,
                },
                ..quote
            };
            self.exec.on_tick(&trade);
        }
        self.drain(sink);
        if self.step.is_multiple_of(3) {
            let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
            let score = self.rng.below(200) as i64 - 100;
            let half = Factor::from_num(score) / Factor::from_num(200);
            let id = self.next_id;
            self.next_id += 1;
            let o = Order {
                id: OrderId(id),
                side,
                qty: lots(1 + self.rng.below(150)),
                touch: Touch {
                    bid: cents(self.mid[0] - 1),
                    ask: cents(self.mid[0] + 1),
                    last: cents(self.mid[0]),
                },
                mix: [half, half, Factor::ZERO, Factor::ZERO],
                ts_ns: t,
                ..order(id, side, "1")
            };
            self.exec.process(o, Stamp(t), &mut |e| sink(Seen::Event(e)));
            self.drain(sink);
        }
        if self.step.is_multiple_of(97) {
            let id = self.next_id.saturating_sub(1 + self.rng.below(4));
            self.exec.command(ExecCommand::Cancel(OrderId(id)));
            self.drain(sink);
        }
    }

    fn drain(&mut self, sink: &mut impl FnMut(Seen)) {
        while self.exec.poll(0, 16, &mut |e| sink(Seen::Event(e))) {}
        while let Some(n) = self.exec.pop_note() {
            sink(Seen::Note(n));
        }
    }
}

#[test]
fn the_same_ticks_and_orders_give_the_same_records() {
    let run = || {
        let mut s = Session::new();
        let mut seen = Vec::new();
        for _ in 0..4_000 {
            s.step(&mut |e| seen.push(e));
        }
        (seen, *s.exec.counters())
    };
    let (a, counters) = run();
    let (b, _) = run();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "two runs differ");
    // The session exercised what it should.
    assert!(counters.maker_orders > 20 && counters.taker_orders > 20, "{counters:?}");
    assert!(counters.reprices > 0 && counters.timeout_takes > 0, "{counters:?}");
    assert!(counters.maker_fills > 0 && counters.taker_fills > 0, "{counters:?}");
    assert!(
        counters.routed[Venue::Binance.index()] > 0 && counters.routed[Venue::Bybit.index()] > 0,
        "{counters:?}"
    );
    let partial = a
        .iter()
        .any(|e| matches!(e, Seen::Event(ExecEvent::Report(ExecReport::Fill(f))) if !f.last));
    assert!(partial, "some fills are partial");
    // Every engine order that ended: fills and the final release add up to its quantity.
    let mut open: std::collections::BTreeMap<u64, i64> = Default::default();
    for e in &a {
        match e {
            Seen::Event(ExecEvent::Order(o)) => {
                open.insert(o.id.0, o.qty.raw());
            }
            Seen::Event(ExecEvent::Report(ExecReport::Fill(f))) => {
                let left = open.get_mut(&f.order_id.0).expect("a fill of a known order");
                *left -= f.qty.raw();
                assert_eq!(*left == 0, f.last, "{f:?}");
                if f.last {
                    open.remove(&f.order_id.0);
                }
            }
            Seen::Event(ExecEvent::Report(ExecReport::Cancelled { order_id, qty, .. })) => {
                assert_eq!(open.remove(&order_id.0), Some(qty.raw()), "released once, exactly");
            }
            Seen::Event(ExecEvent::Report(ExecReport::Reject { order_id, qty, .. })) => {
                if let Some(left) = open.remove(&order_id.0) {
                    assert_eq!(left, qty.raw());
                }
            }
            _ => {}
        }
    }
}

#[test]
fn a_long_session_allocates_nothing_in_steady_state() {
    let mut s = Session::new();
    let mut checksum = 0u64;
    let mut records = 0u64;
    let mut sink = |e: Seen| {
        records += 1;
        if let Seen::Event(ExecEvent::Report(ExecReport::Fill(f))) = e {
            checksum = checksum.wrapping_mul(31).wrapping_add(f.qty.raw() as u64);
        }
    };
    // Warm up: every table has been touched.
    for _ in 0..2_000 {
        s.step(&mut sink);
    }
    ALLOCS.store(0, Ordering::Relaxed);
    ARMED.with(|a| a.set(true));
    for _ in 0..20_000 {
        s.step(&mut sink);
    }
    ARMED.with(|a| a.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "Execution allocated in steady state");
    let c = s.exec.counters();
    assert!(c.reprices > 100 && c.maker_fills > 100 && c.taker_fills > 100, "{c:?}");
    assert!(records > 20_000 && checksum != 0);
}
