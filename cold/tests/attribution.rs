//! Per-family PnL attribution: a hand-worked example, the bookkeeping rules, and a property
//! test that the buckets always add up exactly to one `Book` per instrument.

use maxx_cold::attribution::{Attribution, BUCKETS, FamilyPnl, UNATTRIBUTED, bucket_name};
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Money, Price, Qty, SignedQty};
use maxx_hot::pnl::Book;
use maxx_hot::records::{
    ExecReport, FAMILIES, Factor, Fill, Liquidity, Mix, Order, OrderId, OrderKind, Origin, RejectReason, Side, Stamp,
    Touch,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const BTC: InstrumentId = InstrumentId(0);

fn order(id: u64, instrument: InstrumentId, side: Side, qty: Qty, origin: Origin, mix: Mix) -> Order {
    Order {
        id: OrderId(id),
        instrument,
        venue: Venue::Binance,
        side,
        qty,
        kind: OrderKind::Market,
        tif: maxx_hot::records::Tif::Ioc,
        pin_venue: false,
        touch: Touch::default(),
        origin,
        client_id: 0,
        mix,
        reduce_only: false,
        ts_ns: 0,
        stamp: Stamp(0),
    }
}

fn fill(id: u64, instrument: InstrumentId, side: Side, price: Price, qty: Qty, fee: Money, last: bool) -> Fill {
    Fill {
        order_id: OrderId(id),
        instrument,
        venue: Venue::Binance,
        side,
        price,
        qty,
        fee,
        liquidity: Liquidity::Taker,
        last,
        ts_ns: 0,
    }
}

fn d<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn mix(m: [&str; FAMILIES]) -> Mix {
    m.map(|x| x.parse::<Factor>().unwrap())
}

fn shown(p: &[FamilyPnl; BUCKETS], f: impl Fn(&FamilyPnl) -> Money) -> Vec<String> {
    p.iter().map(|x| f(x).to_string()).collect()
}

#[test]
fn two_opposed_families_open_then_close() {
    let mut a = Attribution::new(1);
    // Momentum contributed +0.75 and mean reversion -0.25 to a +0.5 buy signal: shares 1.5 and
    // -0.5. Buying 2 at 100 makes momentum long 3 and mean reversion short 1.
    a.on_order(&order(
        1,
        BTC,
        Side::Buy,
        d("2"),
        Origin::Alpha,
        mix(["0.75", "-0.25", "0", "0"]),
    ));
    a.on_report(&ExecReport::Fill(fill(
        1,
        BTC,
        Side::Buy,
        d("100"),
        d("2"),
        d("0.2"),
        true,
    )));
    let pos: Vec<String> = a.positions(BTC).iter().map(|p| p.to_string()).collect();
    assert_eq!(pos, ["3", "-1", "0", "0", "0"]);
    // Fees follow the quantities traded: 0.2 × 3/2 and 0.2 × -1/2.
    assert_eq!(shown(&a.pnl(), |p| p.fees), ["0.3", "-0.1", "0", "0", "0"]);
    // Nothing is unrealized before a mark.
    assert_eq!(a.pnl()[0].unrealized, Money::ZERO);

    // At 110 momentum is up 3 × 10, mean reversion down 1 × 10; the book is up 2 × 10.
    a.on_mark(BTC, d("110"));
    assert_eq!(shown(&a.pnl(), |p| p.unrealized), ["30", "-10", "0", "0", "0"]);

    // Selling 2 at 110 closes both in proportion to their positions, whatever its own mix.
    a.on_order(&order(
        2,
        BTC,
        Side::Sell,
        d("2"),
        Origin::Alpha,
        mix(["0", "0", "-0.5", "0"]),
    ));
    a.on_report(&ExecReport::Fill(fill(
        2,
        BTC,
        Side::Sell,
        d("110"),
        d("2"),
        d("0.2"),
        true,
    )));
    let p = a.pnl();
    assert_eq!(shown(&p, |p| p.realized), ["30", "-10", "0", "0", "0"]);
    assert_eq!(shown(&p, |p| p.unrealized), ["0", "0", "0", "0", "0"]);
    assert_eq!(shown(&p, |p| p.fees), ["0.6", "-0.2", "0", "0", "0"]);
    assert_eq!(shown(&p, |p| p.net()), ["29.4", "-9.8", "0", "0", "0"]);
    assert!(a.positions(BTC).iter().all(|q| q.is_zero()));
    assert_eq!(a.open_orders(), 0);
}

#[test]
fn a_flip_closes_by_position_and_opens_by_shares() {
    let mut a = Attribution::new(1);
    a.on_order(&order(
        1,
        BTC,
        Side::Buy,
        d("2"),
        Origin::Alpha,
        mix(["0.75", "-0.25", "0", "0"]),
    ));
    a.on_report(&ExecReport::Fill(fill(
        1,
        BTC,
        Side::Buy,
        d("100"),
        d("2"),
        Money::ZERO,
        true,
    )));
    // A sell signal from momentum and breakout alike (shares 0.5, 0, 0.5): selling 3 closes the
    // long 2 (momentum 3, mean_rev -1) and opens 1 short split between momentum and breakout.
    a.on_order(&order(
        2,
        BTC,
        Side::Sell,
        d("3"),
        Origin::Alpha,
        mix(["-0.25", "0", "-0.25", "0"]),
    ));
    a.on_report(&ExecReport::Fill(fill(
        2,
        BTC,
        Side::Sell,
        d("90"),
        d("3"),
        Money::ZERO,
        true,
    )));
    let pos: Vec<String> = a.positions(BTC).iter().map(|p| p.to_string()).collect();
    assert_eq!(pos, ["-0.5", "0", "-0.5", "0", "0"]);
    assert_eq!(shown(&a.pnl(), |p| p.realized), ["-30", "10", "0", "0", "0"]);
    a.on_mark(BTC, d("80"));
    assert_eq!(shown(&a.pnl(), |p| p.unrealized), ["5", "0", "5", "0", "0"]);
}

#[test]
fn manual_unknown_and_unusable_mixes_are_unattributed() {
    let mut a = Attribution::new(1);
    a.on_order(&order(
        1,
        BTC,
        Side::Buy,
        d("1"),
        Origin::Manual,
        mix(["0.5", "0", "0", "0"]),
    ));
    a.on_order(&order(
        2,
        BTC,
        Side::Buy,
        d("1"),
        Origin::Alpha,
        mix(["0", "0", "0", "0"]),
    ));
    // Contributions that cancel exactly cannot be normalised.
    a.on_order(&order(
        3,
        BTC,
        Side::Buy,
        d("1"),
        Origin::Alpha,
        mix(["0.5", "-0.5", "0", "0"]),
    ));
    // Nearly cancelled: shares would be 50 and -49.
    a.on_order(&order(
        4,
        BTC,
        Side::Buy,
        d("1"),
        Origin::Alpha,
        mix(["0.5", "-0.49", "0", "0"]),
    ));
    for id in 1..=5 {
        // Order 5 was never seen.
        a.on_report(&ExecReport::Fill(fill(
            id,
            BTC,
            Side::Buy,
            d("10"),
            d("1"),
            d("0.01"),
            true,
        )));
    }
    let pos = a.positions(BTC);
    assert_eq!(pos[UNATTRIBUTED], d::<SignedQty>("5"));
    assert!(pos[..FAMILIES].iter().all(|q| q.is_zero()));
    assert_eq!(a.pnl()[UNATTRIBUTED].fees, d("0.05"));
    assert_eq!(bucket_name(UNATTRIBUTED), "unattributed");
    assert_eq!(bucket_name(1), "mean_rev");
}

#[test]
fn orders_are_remembered_until_their_last_fill_or_reject() {
    let mut a = Attribution::new(1);
    a.on_order(&order(
        1,
        BTC,
        Side::Buy,
        d("2"),
        Origin::Alpha,
        mix(["0.5", "0", "0", "0"]),
    ));
    a.on_order(&order(
        2,
        BTC,
        Side::Buy,
        d("2"),
        Origin::Alpha,
        mix(["0", "0.5", "0", "0"]),
    ));
    assert_eq!(a.open_orders(), 2);
    a.on_report(&ExecReport::Ack {
        order_id: OrderId(1),
        venue_order_id: 9,
    });
    a.on_report(&ExecReport::Fill(fill(
        1,
        BTC,
        Side::Buy,
        d("10"),
        d("1"),
        Money::ZERO,
        false,
    )));
    assert_eq!(a.open_orders(), 2);
    // The second part of a partial fill is still momentum's.
    a.on_report(&ExecReport::Fill(fill(
        1,
        BTC,
        Side::Buy,
        d("10"),
        d("1"),
        Money::ZERO,
        true,
    )));
    assert_eq!(a.open_orders(), 1);
    assert_eq!(a.positions(BTC)[0], d::<SignedQty>("2"));
    a.on_report(&ExecReport::Reject {
        order_id: OrderId(2),
        instrument: BTC,
        side: Side::Buy,
        qty: d("2"),
        reason: RejectReason::VenueReject,
    });
    assert_eq!(a.open_orders(), 0);
}

/// One order in a generated sequence: its side, origin, mix bits and fills.
#[derive(Clone, Debug)]
struct GenOrder {
    instrument: u16,
    side: Side,
    manual: bool,
    mix: [i64; FAMILIES],
    /// (price raw, qty raw, fee raw) per partial fill.
    fills: Vec<(i64, i64, i64)>,
    /// Mark raw after the order.
    mark: i64,
}

fn gen_order() -> impl Strategy<Value = GenOrder> {
    let factor = prop_oneof![Just(0i64), -(1i64 << 32)..=(1i64 << 32), -1000i64..1000];
    (
        0u16..2,
        any::<bool>(),
        prop::bool::weighted(0.1),
        [factor.clone(), factor.clone(), factor.clone(), factor],
        prop::collection::vec(
            (
                1i64..20_000_000_000_000,
                prop_oneof![1i64..1_000, 1i64..100_000_000_000],
                prop_oneof![Just(0i64), -1_000_000i64..100_000_000],
            ),
            1..4,
        ),
        1i64..20_000_000_000_000,
    )
        .prop_map(|(instrument, buy, manual, mix, fills, mark)| GenOrder {
            instrument,
            side: if buy { Side::Buy } else { Side::Sell },
            manual,
            mix,
            fills,
            mark,
        })
}

fn sum<T>(values: impl Iterator<Item = T>, raw: impl Fn(T) -> i64) -> i64 {
    values.map(raw).sum()
}

proptest! {
    // Failing cases are kept in `cold/proptest-regressions/` and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/attribution.txt"
        )))),
        ..ProptestConfig::default()
    })]

    /// Whatever the fills and mixes, the buckets add up exactly to one `Book` per instrument:
    /// positions, realized PnL, fees and unrealized PnL; and a closed position leaves every
    /// bucket flat.
    #[test]
    fn buckets_sum_exactly_to_the_book(orders in prop::collection::vec(gen_order(), 1..40)) {
        let mut a = Attribution::new(2);
        let mut books = [Book::default(); 2];
        let mut marks: [Option<Price>; 2] = [None; 2];
        for (n, o) in orders.iter().enumerate() {
            let id = n as u64 + 1;
            let inst = InstrumentId(o.instrument);
            let origin = if o.manual { Origin::Manual } else { Origin::Alpha };
            let total: i64 = o.fills.iter().map(|f| f.1).sum();
            a.on_order(&order(id, inst, o.side, Qty::from_raw(total).unwrap(), origin, o.mix.map(Factor::from_bits)));
            for (k, (price, qty, fee)) in o.fills.iter().enumerate() {
                let f = fill(
                    id,
                    inst,
                    o.side,
                    Price::from_raw(*price).unwrap(),
                    Qty::from_raw(*qty).unwrap(),
                    Money::from_raw(*fee).unwrap(),
                    k + 1 == o.fills.len(),
                );
                let before = a.positions(inst);
                let book_before = books[inst.index()];
                books[inst.index()].apply(&f).unwrap();
                a.on_report(&ExecReport::Fill(f));
                let book = &books[inst.index()];
                let pos = a.positions(inst);
                prop_assert_eq!(sum(pos.iter(), |q| q.raw()), book.position.raw());
                if book.position.is_zero() {
                    prop_assert!(pos.iter().all(|q| q.is_zero()));
                }
                // A pure reduction shrinks every bucket toward zero, never past it.
                let reduces = book_before.position.raw().signum() * book.position.raw().signum() > 0
                    && book.position.raw().abs() < book_before.position.raw().abs();
                if reduces {
                    for (b, p) in before.iter().zip(&pos) {
                        prop_assert!(p.raw().abs() <= b.raw().abs() && p.raw().signum() * b.raw().signum() >= 0);
                    }
                }
                let p = a.instrument_pnl(inst);
                prop_assert_eq!(sum(p.iter(), |x| x.realized.raw()), book.realized.raw());
                prop_assert_eq!(sum(p.iter(), |x| x.fees.raw()), book.fees.raw());
                let unrealized = marks[inst.index()].map_or(Money::ZERO, |m| book.unrealized(m));
                prop_assert_eq!(sum(p.iter(), |x| x.unrealized.raw()), unrealized.raw());
            }
            let mark = Price::from_raw(o.mark).unwrap();
            a.on_mark(inst, mark);
            marks[inst.index()] = Some(mark);
            let p = a.instrument_pnl(inst);
            prop_assert_eq!(sum(p.iter(), |x| x.unrealized.raw()), books[inst.index()].unrealized(mark).raw());
        }
        prop_assert_eq!(a.open_orders(), 0);
        prop_assert_eq!(a.overflows(), 0);
        // The totals over instruments add up too.
        let total = a.pnl();
        let realized: i64 = books.iter().map(|b| b.realized.raw()).sum();
        let fees: i64 = books.iter().map(|b| b.fees.raw()).sum();
        let unrealized: i64 = books.iter().zip(&marks).map(|(b, m)| m.map_or(0, |m| b.unrealized(m).raw())).sum();
        prop_assert_eq!(sum(total.iter(), |x| x.realized.raw()), realized);
        prop_assert_eq!(sum(total.iter(), |x| x.fees.raw()), fees);
        prop_assert_eq!(sum(total.iter(), |x| x.unrealized.raw()), unrealized);
    }
}
