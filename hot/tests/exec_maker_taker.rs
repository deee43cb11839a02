//! The maker/taker rule on constructed books, through `Exec` and a real paper venue: passive
//! or taking by the venue's fee saving against `maker_rebate_threshold_bps`, urgency (signal
//! strength, reduce-only, Risk's own orders), explicit time in force, the IOC bound's rounding,
//! reprices after the passive timeout and then take or cancel, a post-only order refused as it
//! would take, and Risk's open quantity staying exact through every child order.

mod common;

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::kill::KillSwitch;
use maxx_hot::num::{Price, Qty, SignedQty};
use maxx_hot::records::{
    ExecReport, Factor, Liquidity, Order, OrderId, OrderIntent, OrderKind, Origin, RouteReason, Side, Sizing, Stamp,
    Tick, Tif, Touch,
};
use maxx_hot::stage::exec::{CHILD_ID_BIT, Exec, ExecEvent, ExecNote, ExecParams, Fees, OnPassiveTimeout, PaperVenue};
use maxx_hot::stage::risk::{Decision, Risk};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000_000_000_000;

fn p(s: &str) -> Price {
    s.parse().unwrap()
}

fn q(s: &str) -> Qty {
    s.parse().unwrap()
}

fn f(x: f64) -> Factor {
    Factor::from_num(x)
}

/// Maker 2.5 bps, taker 7.5 bps: a 5 bp saving.
const FEES: Fees = Fees {
    maker_bps_milli: 2_500,
    taker_bps_milli: 7_500,
};

fn params() -> ExecParams {
    ExecParams {
        slip: f(0.0005),
        maker_threshold_bps_milli: 1_500,
        urgent_score: f(0.8),
        passive_timeout_ns: 2 * SEC,
        max_reprices: 1,
        on_passive_timeout: OnPassiveTimeout::Take,
        tick_size: vec![p("0.01")],
        ..ExecParams::default()
    }
}

fn exec_with(params: ExecParams, fees: Fees, latency_ns: u64) -> Exec<PaperVenue> {
    Exec::with_params(
        vec![PaperVenue::configured(Venue::Binance, fees, latency_ns, 64)],
        KillSwitch::new(),
        params,
        None,
    )
}

fn quote(at: u64, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Tick {
    common::quote_tick(Venue::Binance, at, bid, bid_qty, ask, ask_qty)
}

fn trade(at: u64, price: &str, qty: &str, aggressor: Side) -> Tick {
    common::trade_tick(Venue::Binance, at, price, qty, aggressor)
}

/// An Alpha order for 1 of instrument 0 with this signal score (split over two families),
/// carrying the touch bid 100 / ask 100.02.
fn alpha(id: u64, side: Side, score: f64) -> Order {
    Order {
        id: OrderId(id),
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        side,
        qty: q("1"),
        kind: OrderKind::Market,
        tif: Tif::Auto,
        pin_venue: false,
        touch: Touch {
            bid: p("100"),
            ask: p("100.02"),
            last: p("100.01"),
        },
        origin: Origin::Alpha,
        client_id: 0,
        mix: [f(score * 0.75), f(score * 0.25), Factor::ZERO, Factor::ZERO],
        reduce_only: false,
        ts_ns: T0,
        stamp: Stamp(0),
    }
}

/// Everything `process` and the following polls hand on.
fn send(exec: &mut Exec<PaperVenue>, order: Order) -> Vec<ExecEvent> {
    let mut out = Vec::new();
    exec.process(order, Stamp(1), &mut |e| out.push(e));
    drain(exec, &mut out);
    out
}

fn drain(exec: &mut Exec<PaperVenue>, out: &mut Vec<ExecEvent>) {
    while exec.poll(0, 64, &mut |e| out.push(e)) {}
}

fn tick(exec: &mut Exec<PaperVenue>, t: Tick) -> Vec<ExecEvent> {
    let mut out = Vec::new();
    exec.on_tick(&t);
    drain(exec, &mut out);
    out
}

fn sent(events: &[ExecEvent]) -> Order {
    events
        .iter()
        .find_map(|e| match e {
            ExecEvent::Order(o) => Some(*o),
            ExecEvent::Report(_) => None,
        })
        .unwrap_or_else(|| panic!("no order in {events:?}"))
}

fn reports(events: &[ExecEvent]) -> Vec<ExecReport> {
    events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::Report(r) => Some(*r),
            ExecEvent::Order(_) => None,
        })
        .collect()
}

fn notes(exec: &mut Exec<PaperVenue>) -> Vec<ExecNote> {
    std::iter::from_fn(|| exec.pop_note()).collect()
}

fn market(exec: &mut Exec<PaperVenue>) {
    tick(exec, quote(T0, "100", "2", "100.02", "1"));
}

#[test]
fn a_fee_saving_at_the_threshold_posts_passively_and_below_it_takes() {
    // Saving 5 bps, threshold exactly 5 bps: post-only at our side's touch.
    let mut exec = exec_with(
        ExecParams {
            maker_threshold_bps_milli: 5_000,
            ..params()
        },
        FEES,
        0,
    );
    market(&mut exec);
    let events = send(&mut exec, alpha(1, Side::Buy, 0.5));
    let o = sent(&events);
    assert_eq!(
        (o.tif, o.kind, o.venue),
        (Tif::PostOnly, OrderKind::Limit(p("100")), Venue::Binance)
    );
    assert!(matches!(
        reports(&events)[..],
        [
            ExecReport::Routed {
                reason: RouteReason::OnlyVenue,
                ..
            },
            ExecReport::Ack { .. }
        ]
    ));
    let sell = sent(&send(&mut exec, alpha(2, Side::Sell, -0.5)));
    assert_eq!((sell.tif, sell.kind), (Tif::PostOnly, OrderKind::Limit(p("100.02"))));
    assert_eq!(exec.counters().maker_orders, 2);

    // One thousandth of a basis point more: the saving no longer pays, it takes.
    let mut exec = exec_with(
        ExecParams {
            maker_threshold_bps_milli: 5_001,
            ..params()
        },
        FEES,
        0,
    );
    market(&mut exec);
    let events = send(&mut exec, alpha(1, Side::Buy, 0.5));
    // 100.02 × 1.0005 = 100.07001: an IOC at 100.07, filled at the ask for what it shows.
    assert_eq!(
        (sent(&events).tif, sent(&events).kind),
        (Tif::Ioc, OrderKind::Limit(p("100.07")))
    );
    let r = reports(&events);
    let ExecReport::Fill(fill) = r[2] else { panic!("{r:?}") };
    assert_eq!(
        (fill.price, fill.qty, fill.liquidity, fill.last),
        (p("100.02"), q("1"), Liquidity::Taker, true)
    );
    assert_eq!(exec.counters().taker_orders, 1);
    // A rebate counts as saving: maker −1 bp, taker 0.5 bp is a 1.5 bp saving, enough.
    let mut exec = exec_with(
        params(),
        Fees {
            maker_bps_milli: -1_000,
            taker_bps_milli: 500,
        },
        0,
    );
    market(&mut exec);
    assert_eq!(sent(&send(&mut exec, alpha(1, Side::Buy, 0.5))).tif, Tif::PostOnly);
}

#[test]
fn urgent_orders_take_and_explicit_orders_go_as_asked() {
    let mut exec = exec_with(params(), FEES, 0);
    market(&mut exec);
    // A signal at 0.9 (≥ 0.8) takes, in either direction; at 0.7 it posts.
    assert_eq!(sent(&send(&mut exec, alpha(1, Side::Buy, 0.9))).tif, Tif::Ioc);
    assert_eq!(sent(&send(&mut exec, alpha(2, Side::Sell, -0.9))).tif, Tif::Ioc);
    assert_eq!(sent(&send(&mut exec, alpha(3, Side::Buy, 0.7))).tif, Tif::PostOnly);
    // Reduce-only and Risk's own orders always take.
    let reduce = Order {
        reduce_only: true,
        ..alpha(4, Side::Sell, 0.1)
    };
    assert_eq!(sent(&send(&mut exec, reduce)).tif, Tif::Ioc);
    let risk = Order {
        origin: Origin::Risk,
        mix: [Factor::ZERO; 4],
        ..alpha(5, Side::Sell, 0.0)
    };
    assert_eq!(sent(&send(&mut exec, risk)).tif, Tif::Ioc);
    // An explicit time in force is sent as asked: a GTC limit rests where it was put.
    let manual = Order {
        tif: Tif::Gtc,
        kind: OrderKind::Limit(p("99.5")),
        origin: Origin::Manual,
        ..alpha(6, Side::Buy, 0.0)
    };
    let o = sent(&send(&mut exec, manual));
    assert_eq!((o.tif, o.kind), (Tif::Gtc, OrderKind::Limit(p("99.5"))));
    let c = exec.counters();
    assert_eq!((c.maker_orders, c.taker_orders, c.as_asked), (1, 4, 1));
}

#[test]
fn the_ioc_bound_is_rounded_to_the_tick_toward_safety_and_kept_within_the_limit() {
    let mut exec = exec_with(
        ExecParams {
            tick_size: vec![p("0.05")],
            urgent_score: Factor::ZERO,
            ..params()
        },
        FEES,
        0,
    );
    market(&mut exec);
    let carrying = |id, side, bid: &str, ask: &str| Order {
        touch: Touch {
            bid: p(bid),
            ask: p(ask),
            last: p(bid),
        },
        ..alpha(id, side, 0.0)
    };
    // 100.05 × 1.0005 = 100.100025: a buy pays at most 100.10 (down to the tick).
    let buy = sent(&send(&mut exec, carrying(1, Side::Buy, "100", "100.05")));
    assert_eq!(buy.kind, OrderKind::Limit(p("100.1")));
    // 100.03 × 0.9995 = 99.979985: a sell accepts at least 100.00 (up to the tick).
    let sell = sent(&send(&mut exec, carrying(2, Side::Sell, "100.03", "100.05")));
    assert_eq!(sell.kind, OrderKind::Limit(p("100")));
    // The order's own limit holds.
    let limited = Order {
        kind: OrderKind::Limit(p("100.05")),
        ..carrying(3, Side::Buy, "100", "100.05")
    };
    assert_eq!(sent(&send(&mut exec, limited)).kind, OrderKind::Limit(p("100.05")));
}

#[test]
fn a_passive_order_is_repriced_after_the_timeout_then_taken() {
    let mut exec = exec_with(params(), FEES, 0);
    market(&mut exec);
    let events = send(&mut exec, alpha(1, Side::Buy, 0.5));
    assert_eq!(sent(&events).kind, OrderKind::Limit(p("100")));
    let mut seen = reports(&events);
    // The bid moves up; nothing happens before the timeout.
    assert!(tick(&mut exec, quote(T0 + SEC, "100.01", "1", "100.03", "1")).is_empty());
    // At the timeout: cancel, and a new post-only order at the new touch for the remainder.
    let r = reports(&tick(&mut exec, quote(T0 + 2 * SEC, "100.01", "1", "100.03", "1")));
    assert!(
        matches!(
            r[..],
            [ExecReport::Ack {
                order_id: OrderId(1),
                venue_order_id: 2
            }]
        ),
        "the replaced child is not reported, its replacement's ack is: {r:?}"
    );
    seen.extend(r);
    let child = OrderId(CHILD_ID_BIT | 1);
    assert_eq!(
        notes(&mut exec),
        [ExecNote::Repriced {
            order_id: OrderId(1),
            child,
            venue: Venue::Binance,
            price: p("100.01"),
            qty: q("1"),
            ts_ns: T0 + 2 * SEC,
        }]
    );
    assert_eq!(exec.gateway().queue(child), Some((q("1"), q("1"))));
    // Sellers at our price: the 1 ahead first, then 0.4 of ours as maker.
    seen.extend(reports(&tick(
        &mut exec,
        trade(T0 + 3 * SEC, "100.01", "1.4", Side::Sell),
    )));
    // Second timeout: the reprices are used up, so the remainder takes within the slip
    // tolerance of the signal's price (100.02 → at most 100.07): it fills at the ask, 100.04.
    let r = reports(&tick(&mut exec, quote(T0 + 4 * SEC, "100.02", "1", "100.04", "5")));
    seen.extend(r);
    assert!(matches!(
        notes(&mut exec)[..],
        [ExecNote::PassiveTimeout {
            order_id: OrderId(1),
            take: true,
            ..
        }]
    ));
    let fills: Vec<_> = seen
        .iter()
        .filter_map(|r| match r {
            ExecReport::Fill(f) => Some((f.order_id, f.price, f.qty, f.liquidity, f.last)),
            _ => None,
        })
        .collect();
    assert_eq!(
        fills,
        [
            (OrderId(1), p("100.01"), q("0.4"), Liquidity::Maker, false),
            (OrderId(1), p("100.04"), q("0.6"), Liquidity::Taker, true),
        ]
    );
    assert!(
        !seen
            .iter()
            .any(|r| matches!(r, ExecReport::Cancelled { .. } | ExecReport::Reject { .. })),
        "Risk sees no release: everything filled: {seen:?}"
    );
    let c = exec.counters();
    assert_eq!((c.reprices, c.timeout_takes, c.filled), (1, 1, 1));
    assert_eq!(exec.open_orders(), 0);
}

#[test]
fn an_unmoved_touch_keeps_the_order_and_a_cancel_timeout_releases_the_remainder_once() {
    let mut exec = exec_with(
        ExecParams {
            max_reprices: 2,
            on_passive_timeout: OnPassiveTimeout::Cancel,
            ..params()
        },
        FEES,
        0,
    );
    market(&mut exec);
    let mut seen = reports(&send(&mut exec, alpha(1, Side::Sell, -0.5)));
    // A buyer through our ask fills 0.3.
    seen.extend(reports(&tick(&mut exec, trade(T0 + SEC, "100.03", "0.3", Side::Buy))));
    // Two timeouts with the touch where it was: the order keeps its place, no reprice.
    for k in [2, 4] {
        assert!(tick(&mut exec, quote(T0 + k * SEC, "100", "2", "100.02", "1")).is_empty());
    }
    assert_eq!(exec.counters().reprices, 0);
    assert_eq!(exec.gateway().queue(OrderId(1)).map(|(open, _)| open), Some(q("0.7")));
    // The third: rounds used up, on_passive_timeout is cancel.
    seen.extend(reports(&tick(
        &mut exec,
        quote(T0 + 6 * SEC, "100", "2", "100.02", "1"),
    )));
    assert_eq!(
        seen.last(),
        Some(&ExecReport::Cancelled {
            order_id: OrderId(1),
            instrument: InstrumentId(0),
            side: Side::Sell,
            qty: q("0.7"),
        })
    );
    assert_eq!(
        seen.iter()
            .filter(|r| matches!(r, ExecReport::Cancelled { .. }))
            .count(),
        1
    );
    assert_eq!(exec.counters().timeout_cancels, 1);
    assert_eq!(exec.open_orders(), 0);
}

#[test]
fn a_post_only_order_refused_as_it_would_take_is_taken_at_once() {
    // 1 ms to the venue: the ask comes down to our bid while the order is on its way.
    let mut exec = exec_with(params(), FEES, MS);
    market(&mut exec);
    let events = send(&mut exec, alpha(1, Side::Buy, 0.5));
    assert_eq!(sent(&events).tif, Tif::PostOnly);
    assert!(tick(&mut exec, quote(T0 + MS / 2, "99.98", "1", "100", "3")).is_empty());
    // The order arrives at T0 + 1 ms and would take: the venue refuses it; Execution sends an
    // IOC at once (sent at T0 + 2 ms, there at T0 + 3 ms), which takes the ask.
    assert!(reports(&tick(&mut exec, quote(T0 + 2 * MS, "99.98", "1", "100", "3"))).is_empty());
    let r = reports(&tick(&mut exec, quote(T0 + 4 * MS, "99.98", "1", "100", "3")));
    let fills: Vec<_> = r
        .iter()
        .filter_map(|r| match r {
            ExecReport::Fill(f) => Some((f.order_id, f.price, f.qty, f.liquidity, f.last, f.ts_ns)),
            _ => None,
        })
        .collect();
    assert_eq!(
        fills,
        [(OrderId(1), p("100"), q("1"), Liquidity::Taker, true, T0 + 3 * MS)]
    );
    assert!(!r.iter().any(|r| matches!(r, ExecReport::Reject { .. })), "{r:?}");
    assert_eq!(exec.counters().timeout_takes, 1);
    // The venue's refusal is not held against it.
    assert_eq!(exec.venue_health(Venue::Binance).rejects, 0);
}

/// Risk, fed every report, ends with the exact position and nothing open, whatever children
/// the order went through.
#[test]
fn risk_open_quantity_stays_exact_through_reprices_partial_fills_and_a_final_cancel() {
    for on_timeout in [OnPassiveTimeout::Take, OnPassiveTimeout::Cancel] {
        let mut risk = Risk::new(common::risk_params());
        let mut exec = exec_with(
            ExecParams {
                on_passive_timeout: on_timeout,
                ..params()
            },
            FEES,
            0,
        );
        tick(&mut exec, quote(T0, "60000", "0.02", "60000.5", "0.004"));
        let intent = OrderIntent {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            sizing: Sizing::Delta(Side::Buy, q("0.01")),
            limit: None,
            tif: Tif::Auto,
            pin_venue: false,
            touch: Touch {
                bid: p("60000"),
                ask: p("60000.5"),
                last: p("60000"),
            },
            origin: Origin::Manual,
            client_id: 1,
            score: Factor::ZERO,
            mix: [Factor::ZERO; 4],
            stop: Price::ZERO,
            reduce_only: false,
            ts_ns: T0,
            stamp: Stamp(0),
        };
        let Decision::Approved(order) = risk.check(&intent) else {
            panic!("refused")
        };
        let mut all = reports(&send(&mut exec, order));
        assert_eq!(risk.exposure()[0].open_buy, q("0.01"));
        for t in [
            // Reprice to 60000.2, then 0.003 fills there behind nobody.
            quote(T0 + 2 * SEC, "60000.2", "0", "60000.5", "0.004"),
            trade(T0 + 3 * SEC, "60000.1", "0.003", Side::Sell),
            // Timeout: take (the ask shows 0.004 of the 0.007 left) or cancel.
            quote(T0 + 4 * SEC, "60000.2", "0.5", "60000.5", "0.004"),
        ] {
            all.extend(reports(&tick(&mut exec, t)));
        }
        for r in &all {
            risk.on_report(r);
        }
        let filled: i64 = all
            .iter()
            .filter_map(|r| match r {
                ExecReport::Fill(f) => Some(f.qty.raw()),
                _ => None,
            })
            .sum();
        let released: i64 = all
            .iter()
            .filter_map(|r| match r {
                ExecReport::Cancelled { qty, .. } | ExecReport::Reject { qty, .. } => Some(qty.raw()),
                _ => None,
            })
            .sum();
        let expected_fill = match on_timeout {
            OnPassiveTimeout::Take => q("0.007"),
            OnPassiveTimeout::Cancel => q("0.003"),
        };
        assert_eq!(filled, expected_fill.raw(), "{on_timeout:?}: {all:?}");
        assert_eq!(filled + released, q("0.01").raw(), "{on_timeout:?}: {all:?}");
        let e = risk.exposure()[0];
        assert_eq!(e.open_buy, Qty::ZERO, "{on_timeout:?}");
        assert_eq!(e.position, SignedQty::from_raw(expected_fill.raw()).unwrap());
        assert!(
            all.iter().all(|r| match r {
                ExecReport::Fill(f) => f.order_id == order.id,
                ExecReport::Cancelled { order_id, .. } | ExecReport::Ack { order_id, .. } => *order_id == order.id,
                _ => true,
            }),
            "Risk only ever sees the engine order id"
        );
        assert_eq!(exec.open_orders(), 0);
    }
}
