//! The paper venue's fill model on constructed books, driven through the `Gateway` trait as
//! Execution drives it: taking at the displayed touch (partial fills, IOC remainders, FOK,
//! post-only, market orders walking the book at the depth penalty), queue position for resting
//! orders (the queue ahead consumed by trades before we fill, trades through our price, quotes
//! moving the touch away or crossing our price), fees (a maker rebate is a negative fee), the
//! latency model (ticks before an order arrives do not touch it; acks and cancels are delayed
//! alike) and cancels by id and all at once.

mod common;

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::{
    ExecReport, Factor, Fill, Liquidity, Order, OrderId, OrderKind, Origin, RejectReason, Side, Stamp, Tick, Tif, Touch,
};
use maxx_hot::stage::exec::{Fees, Gateway, PaperVenue};

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn p(s: &str) -> Price {
    s.parse().unwrap()
}

fn q(s: &str) -> Qty {
    s.parse().unwrap()
}

fn m(s: &str) -> Money {
    s.parse().unwrap()
}

/// Maker 2.5 bps, taker 7.5 bps, `latency_ms` of latency.
fn venue(latency_ms: u64) -> PaperVenue {
    PaperVenue::configured(
        Venue::Binance,
        Fees {
            maker_bps_milli: 2_500,
            taker_bps_milli: 7_500,
        },
        latency_ms * MS,
        64,
    )
}

fn quote(at: u64, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Tick {
    common::quote_tick(Venue::Binance, at, bid, bid_qty, ask, ask_qty)
}

fn trade(at: u64, price: &str, qty: &str, aggressor: Side) -> Tick {
    common::trade_tick(Venue::Binance, at, price, qty, aggressor)
}

fn order(id: u64, side: Side, qty: &str, kind: OrderKind, tif: Tif, at: u64) -> Order {
    Order {
        id: OrderId(id),
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        side,
        qty: q(qty),
        kind,
        tif,
        pin_venue: true,
        touch: Touch::default(),
        origin: Origin::Manual,
        client_id: id,
        mix: [Factor::ZERO; 4],
        reduce_only: false,
        ts_ns: at,
        stamp: Stamp(0),
    }
}

fn limit(price: &str) -> OrderKind {
    OrderKind::Limit(p(price))
}

/// Runs `f` against the venue and returns what it reported.
fn reports(v: &mut PaperVenue, f: impl FnOnce(&mut PaperVenue, &mut dyn FnMut(ExecReport))) -> Vec<ExecReport> {
    let mut out = Vec::new();
    f(v, &mut |r| out.push(r));
    out
}

fn submit(v: &mut PaperVenue, o: Order) -> Vec<ExecReport> {
    reports(v, |v, out| v.submit(&o, &mut |r| out(r)))
}

fn tick(v: &mut PaperVenue, t: Tick) -> Vec<ExecReport> {
    reports(v, |v, out| v.on_tick(&t, &mut |r| out(r)))
}

fn cancel(v: &mut PaperVenue, id: u64) -> Vec<ExecReport> {
    reports(v, |v, out| v.cancel(OrderId(id), &mut |r| out(r)))
}

/// A fill report; `trade` is (price, quantity, fee).
fn fill(id: u64, side: Side, trade: (&str, &str, &str), liquidity: Liquidity, last: bool, at: u64) -> ExecReport {
    let (price, qty, fee) = trade;
    ExecReport::Fill(Fill {
        order_id: OrderId(id),
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        side,
        price: p(price),
        qty: q(qty),
        fee: m(fee),
        liquidity,
        last,
        ts_ns: at,
    })
}

fn cancelled(id: u64, side: Side, qty: &str) -> ExecReport {
    ExecReport::Cancelled {
        order_id: OrderId(id),
        instrument: InstrumentId(0),
        side,
        qty: q(qty),
    }
}

fn ack(id: u64, venue_order_id: u64) -> ExecReport {
    ExecReport::Ack {
        order_id: OrderId(id),
        venue_order_id,
    }
}

#[test]
fn marketable_orders_take_the_displayed_size_and_the_rest_is_cancelled_or_rests() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "2", "100.02", "1"));
    // IOC buy of 3 against 1 shown at the ask: 1 fills at the ask as taker, 2 are cancelled.
    // 100.02 × 1 × 7.5 bps = 0.075015.
    let r = submit(&mut v, order(1, Side::Buy, "3", limit("100.05"), Tif::Ioc, T0 + MS));
    assert_eq!(
        r,
        [
            ack(1, 1),
            fill(
                1,
                Side::Buy,
                ("100.02", "1", "0.075015"),
                Liquidity::Taker,
                false,
                T0 + MS
            ),
            cancelled(1, Side::Buy, "2"),
        ]
    );
    // A market sell takes what the bid shows, then fills whole: the rest walks the book behind
    // it, priced 10 bps worse (100 × 0.999 = 99.9; 49.95 × 7.5 bps = 0.0374625).
    let r = submit(
        &mut v,
        order(2, Side::Sell, "2.5", OrderKind::Market, Tif::Ioc, T0 + MS),
    );
    assert_eq!(
        r[1..],
        [
            fill(2, Side::Sell, ("100", "2", "0.15"), Liquidity::Taker, false, T0 + MS),
            fill(
                2,
                Side::Sell,
                ("99.9", "0.5", "0.0374625"),
                Liquidity::Taker,
                true,
                T0 + MS
            ),
        ]
    );
    // A GTC buy through the ask takes the touch, then rests at its limit, first in line.
    let r = submit(&mut v, order(3, Side::Buy, "3", limit("100.03"), Tif::Gtc, T0 + MS));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(v.queue(OrderId(3)), Some((q("2"), Qty::ZERO)));
    // Everything else waits: a non-marketable IOC is cancelled, a FOK larger than the touch too.
    let r = submit(&mut v, order(4, Side::Buy, "1", limit("99"), Tif::Ioc, T0 + MS));
    assert_eq!(r, [ack(4, 4), cancelled(4, Side::Buy, "1")]);
    let r = submit(&mut v, order(5, Side::Sell, "3", limit("99"), Tif::Fok, T0 + MS));
    assert_eq!(r, [ack(5, 5), cancelled(5, Side::Sell, "3")]);
    let r = submit(&mut v, order(6, Side::Sell, "1.5", limit("99"), Tif::Fok, T0 + MS));
    assert_eq!(
        r,
        [
            ack(6, 6),
            fill(6, Side::Sell, ("100", "1.5", "0.1125"), Liquidity::Taker, true, T0 + MS)
        ]
    );
}

#[test]
fn a_post_only_order_that_would_take_is_rejected() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "2", "100.02", "1"));
    let r = submit(&mut v, order(1, Side::Buy, "1", limit("100.02"), Tif::PostOnly, T0));
    assert_eq!(
        r,
        [ExecReport::Reject {
            order_id: OrderId(1),
            instrument: InstrumentId(0),
            side: Side::Buy,
            qty: q("1"),
            reason: RejectReason::PostOnlyWouldTake,
        }]
    );
    // At the bid it rests behind the 2 shown there.
    let r = submit(&mut v, order(2, Side::Buy, "1", limit("100"), Tif::PostOnly, T0));
    assert_eq!(r, [ack(2, 1)]);
    assert_eq!(v.queue(OrderId(2)), Some((q("1"), q("2"))));
}

#[test]
fn trades_consume_the_queue_ahead_before_we_fill() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "2", "100.02", "1"));
    submit(&mut v, order(1, Side::Buy, "1", limit("100"), Tif::Gtc, T0));
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), q("2"))));
    // A buyer lifting the ask does not touch our bid.
    assert!(tick(&mut v, trade(T0 + MS, "100.02", "5", Side::Buy)).is_empty());
    // Sellers at our price eat the queue ahead first.
    assert!(tick(&mut v, trade(T0 + 2 * MS, "100", "1.5", Side::Sell)).is_empty());
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), q("0.5"))));
    // 0.5 finishes the queue, the other 0.25 fills us as maker at our price, partially:
    // 100 × 0.25 × 2.5 bps = 0.00625.
    assert_eq!(
        tick(&mut v, trade(T0 + 3 * MS, "100", "0.75", Side::Sell)),
        [fill(
            1,
            Side::Buy,
            ("100", "0.25", "0.00625"),
            Liquidity::Maker,
            false,
            T0 + 3 * MS
        )]
    );
    assert_eq!(v.queue(OrderId(1)), Some((q("0.75"), Qty::ZERO)));
    // The next seller fills the rest; the fill carries the tick's time.
    assert_eq!(
        tick(&mut v, trade(T0 + 4 * MS, "100", "3", Side::Sell)),
        [fill(
            1,
            Side::Buy,
            ("100", "0.75", "0.01875"),
            Liquidity::Maker,
            true,
            T0 + 4 * MS
        )]
    );
    assert_eq!(v.resting(), 0);
}

#[test]
fn a_trade_through_our_price_fills_us_up_to_its_size() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "5", "100.02", "1"));
    submit(&mut v, order(1, Side::Buy, "1", limit("100"), Tif::Gtc, T0));
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), q("5"))));
    // A sale below our bid went through our whole level: whatever was ahead of us.
    assert_eq!(
        tick(&mut v, trade(T0 + MS, "99.99", "0.3", Side::Sell)),
        [fill(
            1,
            Side::Buy,
            ("100", "0.3", "0.0075"),
            Liquidity::Maker,
            false,
            T0 + MS
        )]
    );
    assert_eq!(v.queue(OrderId(1)), Some((q("0.7"), Qty::ZERO)));
    // Two of our orders share one trade in arrival order.
    submit(&mut v, order(2, Side::Buy, "1", limit("100"), Tif::Gtc, T0 + MS));
    let r = tick(&mut v, trade(T0 + 2 * MS, "99.98", "1", Side::Sell));
    assert_eq!(
        r,
        [
            fill(
                1,
                Side::Buy,
                ("100", "0.7", "0.0175"),
                Liquidity::Maker,
                true,
                T0 + 2 * MS
            ),
            fill(
                2,
                Side::Buy,
                ("100", "0.3", "0.0075"),
                Liquidity::Maker,
                false,
                T0 + 2 * MS
            ),
        ]
    );
}

#[test]
fn quotes_move_the_queue_and_a_crossing_quote_fills_us_as_maker() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "5", "100.02", "1"));
    submit(&mut v, order(1, Side::Sell, "1", limit("100.02"), Tif::Gtc, T0));
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), q("1"))));
    // Our level shrinks below our place: the cancels were ahead of us.
    assert!(tick(&mut v, quote(T0 + MS, "100", "5", "100.02", "0.4")).is_empty());
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), q("0.4"))));
    // The market ask moves up: we are alone at our price, still resting.
    assert!(tick(&mut v, quote(T0 + 2 * MS, "100.01", "5", "100.03", "2")).is_empty());
    assert_eq!(v.queue(OrderId(1)), Some((q("1"), Qty::ZERO)));
    // A bid at our price crosses us: we fill as maker at our price, up to the bid's size.
    // 100.02 × 0.6 × 2.5 bps = 0.015003.
    assert_eq!(
        tick(&mut v, quote(T0 + 3 * MS, "100.02", "0.6", "100.04", "2")),
        [fill(
            1,
            Side::Sell,
            ("100.02", "0.6", "0.015003"),
            Liquidity::Maker,
            false,
            T0 + 3 * MS
        )]
    );
    // A buy resting behind a level not shown learns its place when the level shows.
    submit(&mut v, order(2, Side::Buy, "1", limit("99.99"), Tif::Gtc, T0 + 3 * MS));
    assert_eq!(v.queue(OrderId(2)), Some((q("1"), Qty::MAX)));
    tick(&mut v, quote(T0 + 4 * MS, "99.99", "3", "100.03", "2"));
    assert_eq!(v.queue(OrderId(2)), Some((q("1"), q("3"))));
}

#[test]
fn a_maker_rebate_is_a_negative_fee() {
    let mut v = PaperVenue::configured(
        Venue::Binance,
        Fees {
            maker_bps_milli: -1_000,
            taker_bps_milli: 4_000,
        },
        0,
        8,
    );
    tick(&mut v, quote(T0, "100", "1", "100.02", "1"));
    submit(&mut v, order(1, Side::Buy, "2", limit("100"), Tif::PostOnly, T0));
    // 100 × 2 × -1 bp = -0.02, a rebate.
    assert_eq!(
        tick(&mut v, trade(T0 + MS, "100", "3", Side::Sell)),
        [fill(
            1,
            Side::Buy,
            ("100", "2", "-0.02"),
            Liquidity::Maker,
            true,
            T0 + MS
        )]
    );
}

/// Polls until `stop` holds of what was reported, or a generous deadline passes.
fn poll_until(v: &mut PaperVenue, stop: impl Fn(&[ExecReport]) -> bool) -> Vec<ExecReport> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut got = Vec::new();
    while !stop(&got) {
        assert!(std::time::Instant::now() < deadline, "only {got:?}");
        v.poll(0, &mut |r| got.push(r));
    }
    got
}

#[test]
fn with_the_wall_clock_an_order_arrives_after_its_latency_without_a_tick() {
    let mut v = venue(2).with_wall_clock();
    let now = maxx_hot::clock::wall_ns();
    tick(&mut v, quote(now, "100", "1", "100.02", "1"));
    let sent = maxx_hot::clock::wall_ns();
    assert!(submit(&mut v, order(1, Side::Buy, "0.5", limit("100.05"), Tif::Ioc, sent)).is_empty());
    // No tick comes: polling alone brings the ack and the fill, once 2 ms have passed.
    let r = poll_until(&mut v, |r| !r.is_empty());
    assert!(maxx_hot::clock::wall_ns() >= sent + 2 * MS);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0], ack(1, 1));
    let ExecReport::Fill(f) = r[1] else { panic!("{r:?}") };
    assert_eq!((f.price, f.qty, f.last), (p("100.02"), q("0.5"), true));
    // It went live at its arrival time, not at the poll's.
    assert_eq!(f.ts_ns, sent + 2 * MS);
    // Nothing on its way: polling does nothing.
    assert!(!v.poll(0, &mut |r| panic!("{r:?}")));
}

#[test]
fn without_the_wall_clock_only_ticks_and_orders_move_the_venue() {
    let mut v = venue(2);
    let now = maxx_hot::clock::wall_ns();
    tick(&mut v, quote(now, "100", "1", "100.02", "1"));
    assert!(submit(&mut v, order(1, Side::Buy, "0.5", limit("100.05"), Tif::Ioc, now)).is_empty());
    // Wait until the wall clock is well past the arrival time, then poll: replays keep their
    // capture's time, so nothing happens until a tick says time has moved.
    while maxx_hot::clock::wall_ns() < now + 4 * MS {
        std::thread::yield_now();
    }
    assert!(!v.poll(0, &mut |r| panic!("{r:?}")));
    let r = tick(&mut v, quote(now + 3 * MS, "100", "1", "100.02", "1"));
    assert_eq!(r.first(), Some(&ack(1, 1)));
}

#[test]
fn ticks_before_an_order_arrives_do_not_touch_it_and_acks_wait_for_the_latency() {
    let mut v = venue(2);
    tick(&mut v, quote(T0, "100", "1", "100.02", "1"));
    // Sent at T0: it reaches the venue at T0 + 2 ms. Nothing is said before.
    assert!(submit(&mut v, order(1, Side::Buy, "1", limit("100"), Tif::Gtc, T0)).is_empty());
    assert_eq!(v.resting(), 1);
    // A sale through our price at T0 + 1 ms happens before we are there.
    assert!(tick(&mut v, trade(T0 + MS, "99.9", "5", Side::Sell)).is_empty());
    // The next tick, at T0 + 3 ms, finds the order arrived (acked at T0 + 2 ms) and then trades
    // against it; the queue was joined behind the 1 shown at 100 then.
    let r = tick(&mut v, trade(T0 + 3 * MS, "99.95", "0.4", Side::Sell));
    assert_eq!(
        r,
        [
            ack(1, 1),
            fill(
                1,
                Side::Buy,
                ("100", "0.4", "0.01"),
                Liquidity::Maker,
                false,
                T0 + 3 * MS
            )
        ]
    );
    // A taker that arrives between ticks fills at its arrival time against the touch then.
    assert!(
        submit(
            &mut v,
            order(2, Side::Buy, "0.5", limit("100.05"), Tif::Ioc, T0 + 3 * MS)
        )
        .is_empty()
    );
    let r = tick(&mut v, quote(T0 + 9 * MS, "100.04", "1", "100.06", "1"));
    assert_eq!(
        r,
        [
            ack(2, 2),
            fill(
                2,
                Side::Buy,
                ("100.02", "0.5", "0.0375075"),
                Liquidity::Taker,
                true,
                T0 + 5 * MS
            )
        ]
    );
    // A cancel takes the latency too: a fill can beat it, and then it is refused.
    assert!(cancel(&mut v, 1).is_empty());
    let r = tick(&mut v, trade(T0 + 10 * MS, "100", "1", Side::Sell));
    assert_eq!(
        r,
        [
            fill(
                1,
                Side::Buy,
                ("100", "0.6", "0.015"),
                Liquidity::Maker,
                true,
                T0 + 10 * MS
            ),
            ExecReport::CancelRejected {
                order_id: OrderId(1),
                reason: RejectReason::UnknownOrder,
            },
        ]
    );
    // Otherwise it lands after the latency and releases what was open then.
    assert!(submit(&mut v, order(3, Side::Sell, "1", limit("101"), Tif::Gtc, T0 + 10 * MS)).is_empty());
    tick(&mut v, quote(T0 + 13 * MS, "100.04", "1", "100.06", "1"));
    assert!(cancel(&mut v, 3).is_empty());
    assert!(tick(&mut v, quote(T0 + 14 * MS, "100.04", "1", "100.06", "1")).is_empty());
    assert_eq!(
        tick(&mut v, quote(T0 + 15 * MS, "100.04", "1", "100.06", "1")),
        [cancelled(3, Side::Sell, "1")]
    );
    assert_eq!(v.resting(), 0);
}

#[test]
fn cancels_by_id_and_all_at_once() {
    let mut v = venue(0);
    tick(&mut v, quote(T0, "100", "1", "100.02", "1"));
    submit(&mut v, order(1, Side::Buy, "1", limit("99"), Tif::Gtc, T0));
    submit(&mut v, order(2, Side::Sell, "2", limit("101"), Tif::Gtc, T0));
    submit(&mut v, order(3, Side::Buy, "3", limit("98"), Tif::Gtc, T0));
    assert_eq!(cancel(&mut v, 2), [cancelled(2, Side::Sell, "2")]);
    assert_eq!(
        cancel(&mut v, 2),
        [ExecReport::CancelRejected {
            order_id: OrderId(2),
            reason: RejectReason::UnknownOrder,
        }]
    );
    let r = reports(&mut v, |v, out| v.cancel_all(&mut |r| out(r)));
    assert_eq!(r, [cancelled(1, Side::Buy, "1"), cancelled(3, Side::Buy, "3")]);
    // Orders still on their way are cancelled too, at once.
    let mut slow = venue(5);
    assert!(submit(&mut slow, order(9, Side::Buy, "1", limit("99"), Tif::Gtc, T0)).is_empty());
    let r = reports(&mut slow, |v, out| v.cancel_all(&mut |r| out(r)));
    assert_eq!(r, [cancelled(9, Side::Buy, "1")]);
    assert!(tick(&mut slow, quote(T0 + 10 * MS, "100", "1", "100.02", "1")).is_empty());
}

#[test]
fn a_full_table_rejects_and_a_trades_only_market_fills_at_the_last_trade() {
    let mut v = PaperVenue::configured(Venue::Binance, Fees::default(), 0, 1);
    tick(&mut v, trade(T0, "100.5", "1", Side::Buy));
    // No quote yet: a taker fills at the last trade, in full.
    let r = submit(&mut v, order(1, Side::Buy, "7", OrderKind::Market, Tif::Ioc, T0));
    assert_eq!(
        r[1],
        fill(1, Side::Buy, ("100.5", "7", "0"), Liquidity::Taker, true, T0)
    );
    submit(&mut v, order(2, Side::Buy, "1", limit("90"), Tif::Gtc, T0));
    let r = submit(&mut v, order(3, Side::Buy, "1", limit("90"), Tif::Gtc, T0));
    assert!(
        matches!(
            r[..],
            [ExecReport::Reject {
                reason: RejectReason::VenueReject,
                ..
            }]
        ),
        "{r:?}"
    );
}
