//! The RiskSentinel gate, check by check: each pre-trade control's approve and refuse sides,
//! every trading-state transition, the kill switch, trims, staged limits and Kelly sizing with
//! numbers worked by hand. Everything goes through the public `Risk` API only.

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Money, Price, Qty, SignedQty};
use maxx_hot::records::{
    ExecReport, Factor, Fill, Liquidity, Order, OrderId, OrderIntent, OrderKind, Origin, RejectReason, Scope, Side,
    Sizing, Stamp, Touch, TradingState, Transition, TransitionReason,
};
use maxx_hot::stage::risk::{
    CLIENT_IDS, Decision, GlobalLimits, InstrumentRisk, Limits, OPEN_ORDERS, Risk, RiskCommand, RiskParams, SizingMode,
    TRANSITIONS,
};

const BTC: InstrumentId = InstrumentId(0);
const ETH: InstrumentId = InstrumentId(1);

fn p(s: &str) -> Price {
    s.parse().unwrap()
}
fn q(s: &str) -> Qty {
    s.parse().unwrap()
}
fn m(s: &str) -> Money {
    s.parse().unwrap()
}
fn sq(s: &str) -> SignedQty {
    s.parse().unwrap()
}

fn btc_limits() -> Limits {
    Limits {
        max_order_qty: q("0.05"),
        max_order_notional: m("5000"),
        max_position: q("0.1"),
        lot_size: q("0.00001"),
        tick_size: p("0.01"),
        min_notional: m("10"),
    }
}

fn eth_limits() -> Limits {
    Limits {
        max_order_qty: q("5"),
        max_order_notional: m("20000"),
        max_position: q("20"),
        lot_size: q("0.0001"),
        tick_size: p("0.01"),
        min_notional: m("10"),
    }
}

/// The shipped config's defaults: BTC on Binance, ETH on Bybit (so the two venues can differ).
fn params() -> RiskParams {
    RiskParams {
        instruments: vec![
            InstrumentRisk {
                venue: Venue::Binance,
                limits: btc_limits(),
            },
            InstrumentRisk {
                venue: Venue::Bybit,
                limits: eth_limits(),
            },
        ],
        max_trade_risk: Factor::from_num(0.005),
        collar: Factor::from_num(0.01),
        max_gross_notional: m("50000"),
        max_orders_per_sec: 20,
        sizing: SizingMode::Fixed,
        kelly_damping: Factor::from_num(0.5),
        manual_stop: Factor::from_num(0.01),
        reject_ratio: Factor::from_num(0.02),
        reject_window: 200,
        starting_balance: m("100000"),
        kill: false,
    }
}

fn touch(bid: &str, ask: &str, last: &str) -> Touch {
    Touch {
        bid: p(bid),
        ask: p(ask),
        last: p(last),
    }
}

fn venue_of(i: InstrumentId) -> Venue {
    if i == BTC { Venue::Binance } else { Venue::Bybit }
}

fn base(instrument: InstrumentId, sizing: Sizing, origin: Origin) -> OrderIntent {
    OrderIntent {
        instrument,
        venue: venue_of(instrument),
        sizing,
        limit: None,
        tif: maxx_hot::records::Tif::Auto,
        pin_venue: false,
        touch: if instrument == ETH {
            touch("2700", "2700.01", "2700")
        } else {
            touch("60000", "60001", "60000")
        },
        origin,
        client_id: 0,
        score: Factor::ZERO,
        mix: [Factor::ZERO; 4],
        stop: Price::ZERO,
        reduce_only: false,
        ts_ns: 0,
        stamp: Stamp(0),
    }
}

fn manual(instrument: InstrumentId, side: Side, qty: &str) -> OrderIntent {
    base(instrument, Sizing::Delta(side, q(qty)), Origin::Manual)
}

fn alpha(instrument: InstrumentId, target: &str, score: f64) -> OrderIntent {
    let mut i = base(instrument, Sizing::Target(sq(target)), Origin::Alpha);
    i.score = Factor::from_num(score);
    i
}

fn with_limit(mut i: OrderIntent, price: &str) -> OrderIntent {
    i.limit = Some(p(price));
    i
}

/// A gate whose intents get a time 100 ms apart (well inside the rate limit) unless they name
/// one.
struct Gate {
    r: Risk,
    ts: u64,
}

impl Gate {
    fn new(params: RiskParams) -> Self {
        Self {
            r: Risk::new(params),
            ts: 1_000_000_000_000,
        }
    }

    fn check(&mut self, mut intent: OrderIntent) -> Decision {
        if intent.ts_ns == 0 {
            self.ts += 100_000_000;
            intent.ts_ns = self.ts;
        }
        self.r.check(&intent)
    }

    fn ok(&mut self, intent: OrderIntent) -> Order {
        match self.check(intent) {
            Decision::Approved(o) => o,
            other => panic!("expected an order for {intent:?}, got {other:?}"),
        }
    }

    fn no(&mut self, intent: OrderIntent) -> RejectReason {
        match self.check(intent) {
            Decision::Refused(r) => r.reason,
            other => panic!("expected a refusal for {intent:?}, got {other:?}"),
        }
    }

    fn cmd(&mut self, cmd: RiskCommand) -> Vec<Order> {
        let mut out = Vec::new();
        self.ts += 1;
        self.r.on_command(cmd, self.ts, &mut |o| out.push(o));
        out
    }

    fn fill(&mut self, o: &Order, price: &str) {
        self.fill_part(o, price, o.qty, Money::ZERO, true);
    }

    fn fill_part(&mut self, o: &Order, price: &str, qty: Qty, fee: Money, last: bool) {
        self.r.on_report(&ExecReport::Fill(Fill {
            order_id: o.id,
            instrument: o.instrument,
            venue: o.venue,
            side: o.side,
            price: p(price),
            qty,
            fee,
            liquidity: Liquidity::Taker,
            last,
            ts_ns: self.ts,
        }));
    }

    fn reject(&mut self, o: &Order) {
        self.reject_for(o, RejectReason::VenueReject);
    }

    fn reject_for(&mut self, o: &Order, reason: RejectReason) {
        self.r.on_report(&ExecReport::Reject {
            order_id: o.id,
            instrument: o.instrument,
            side: o.side,
            qty: o.qty,
            reason,
        });
    }

    fn cancel(&mut self, o: &Order) {
        self.r.on_report(&ExecReport::Cancelled {
            order_id: o.id,
            instrument: o.instrument,
            side: o.side,
            qty: o.qty,
        });
    }

    /// Buys (or sells) and fills at once: a position to work with.
    fn position(&mut self, i: InstrumentId, side: Side, qty: &str, price: &str) {
        let o = self.ok(manual(i, side, qty));
        self.fill(&o, price);
    }

    fn transitions(&mut self) -> Vec<Transition> {
        std::iter::from_fn(|| self.r.pop_transition()).collect()
    }
}

fn tr(
    scope: Scope,
    from: TradingState,
    to: TradingState,
    reason: TransitionReason,
) -> (Scope, TradingState, TradingState, TransitionReason) {
    (scope, from, to, reason)
}

fn shapes(ts: &[Transition]) -> Vec<(Scope, TradingState, TradingState, TransitionReason)> {
    ts.iter().map(|t| (t.scope, t.from, t.to, t.reason)).collect()
}

use TradingState::{Active, Halted, Reducing};

// ---- 1. bad input --------------------------------------------------------------------------

#[test]
fn bad_input_is_refused_first_with_a_reason_and_never_panics() {
    let mut g = Gate::new(RiskParams { kill: true, ..params() });
    let mut unknown = manual(BTC, Side::Buy, "0.01");
    unknown.instrument = InstrumentId(7);
    assert_eq!(g.no(unknown), RejectReason::NotListed, "before the kill switch");
    assert_eq!(g.no(manual(BTC, Side::Buy, "0")), RejectReason::ZeroQty);
    let huge = base(BTC, Sizing::Delta(Side::Buy, Qty::MAX), Origin::Manual);
    assert_eq!(g.no(huge), RejectReason::BadInput);
    let huge_target = base(
        BTC,
        Sizing::Target(SignedQty::from_raw(i64::MIN).unwrap()),
        Origin::Alpha,
    );
    assert_eq!(g.no(huge_target), RejectReason::BadInput);
    assert_eq!(
        g.no(with_limit(manual(BTC, Side::Buy, "0.01"), "0")),
        RejectReason::BadInput
    );
    let mut absurd_limit = manual(BTC, Side::Buy, "0.01");
    absurd_limit.limit = Some(Price::MAX);
    assert_eq!(g.no(absurd_limit), RejectReason::BadInput);
    let mut absurd_touch = manual(BTC, Side::Buy, "0.01");
    absurd_touch.touch.bid = Price::MAX;
    assert_eq!(g.no(absurd_touch), RejectReason::BadInput);
    let mut absurd_stop = manual(BTC, Side::Buy, "0.01");
    absurd_stop.stop = Price::MAX;
    assert_eq!(g.no(absurd_stop), RejectReason::BadInput);
    let mut no_price = manual(BTC, Side::Buy, "0.01");
    no_price.touch = Touch::default();
    assert_eq!(g.no(no_price), RejectReason::NoPrice);
    // Well-formed: the next check (the kill switch) speaks; lifted, it is approved.
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::KillSwitch);
    g.cmd(RiskCommand::Resume);
    let o = g.ok(manual(BTC, Side::Buy, "0.01"));
    assert_eq!(
        (o.side, o.qty, o.kind, o.origin),
        (Side::Buy, q("0.01"), OrderKind::Market, Origin::Manual)
    );
}

// ---- 2. kill switch and system states ------------------------------------------------------

#[test]
fn kill_halts_everything_but_trims_and_resume_lifts_it() {
    let mut g = Gate::new(RiskParams { kill: true, ..params() });
    // Starting killed is a transition too.
    let t = g.transitions();
    assert_eq!(
        shapes(&t),
        vec![tr(Scope::System, Active, Halted, TransitionReason::Kill)]
    );
    assert!(g.r.killed());
    assert_eq!(g.r.state(Scope::System), Halted);
    assert_eq!(g.r.effective_state(ETH), Halted);
    let mut reduce = manual(BTC, Side::Sell, "0.01");
    reduce.reduce_only = true;
    assert_eq!(
        g.no(reduce),
        RejectReason::KillSwitch,
        "manual reduce-only is refused too"
    );
    assert_eq!(g.no(alpha(BTC, "0.01", 0.9)), RejectReason::KillSwitch);

    g.cmd(RiskCommand::Resume);
    let t = g.transitions();
    assert_eq!(
        shapes(&t),
        vec![tr(Scope::System, Halted, Active, TransitionReason::Operator)]
    );
    assert_eq!(t[0].ts_ns, g.ts);
    assert!(!g.r.killed());
    g.position(BTC, Side::Buy, "0.02", "60000");

    // Kill on top of a drawdown halt changes no state (no transition) but engages the switch;
    // Resume lifts both.
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Halted,
        reason: TransitionReason::Drawdown,
    });
    g.cmd(RiskCommand::Kill);
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::System, Active, Halted, TransitionReason::Drawdown)]
    );
    assert!(g.r.killed());
    assert_eq!(g.no(manual(BTC, Side::Sell, "0.01")), RejectReason::KillSwitch);
    // A Risk-originated reduce-only intent still passes (the trim path).
    let mut trim = base(BTC, Sizing::Delta(Side::Sell, q("0.01")), Origin::Risk);
    trim.reduce_only = true;
    let o = g.ok(trim);
    assert!(o.reduce_only && o.origin == Origin::Risk);
    // ... but not one that is not reduce-only, nor one that would grow the position.
    let mut grow = base(BTC, Sizing::Delta(Side::Buy, q("0.01")), Origin::Risk);
    assert_eq!(g.no(grow), RejectReason::KillSwitch);
    grow.reduce_only = true;
    assert_eq!(g.no(grow), RejectReason::Reducing);
    g.cmd(RiskCommand::Resume);
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::System, Halted, Active, TransitionReason::Operator)]
    );
    g.ok(manual(BTC, Side::Buy, "0.01"));
}

#[test]
fn drawdown_halts_new_trades_with_the_kelly_clip_at_a_quarter_and_a_restored_halt_holds() {
    let mut g = Gate::new(params());
    g.position(BTC, Side::Buy, "0.02", "60000");
    // What the governor sends on a drawdown: the clip, and the halt.
    g.cmd(RiskCommand::KellyClip(Factor::from_num(0.25)));
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Halted,
        reason: TransitionReason::Drawdown,
    });
    let t = g.transitions();
    assert_eq!(
        shapes(&t),
        vec![tr(Scope::System, Active, Halted, TransitionReason::Drawdown)]
    );
    assert!(!g.r.killed(), "a drawdown halt is not the kill switch");
    assert_eq!(g.r.kelly_clip(), Factor::from_num(0.25));
    assert_eq!(g.no(alpha(BTC, "0.04", 0.9)), RejectReason::Halted);
    assert_eq!(g.no(manual(ETH, Side::Buy, "0.1")), RejectReason::Halted);
    let mut reduce = manual(BTC, Side::Sell, "0.01");
    reduce.reduce_only = true;
    assert_eq!(g.no(reduce), RejectReason::Halted);
    // Trims are never refused.
    let trims = g.cmd(RiskCommand::Trim {
        scope: Scope::System,
        fraction: Factor::from_num(0.5),
    });
    assert_eq!(trims.len(), 1);
    assert_eq!((trims[0].side, trims[0].qty), (Side::Sell, q("0.01")));
    g.fill(&trims[0], "60000");
    // The operator lifts it: Alpha's target is clipped to a quarter: 0.04 × 0.25 = 0.01, which
    // the remaining 0.01 position already meets.
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Active,
        reason: TransitionReason::Operator,
    });
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::System, Halted, Active, TransitionReason::Operator)]
    );
    assert_eq!(g.check(alpha(BTC, "0.04", 0.9)), Decision::Nothing);
    let o = g.ok(alpha(BTC, "0.08", 0.9));
    assert_eq!((o.side, o.qty), (Side::Buy, q("0.01")));

    // After a restart the cold side restores the saved halt; it holds until an operator acts.
    let mut g = Gate::new(params());
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Halted,
        reason: TransitionReason::Restored,
    });
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::System, Active, Halted, TransitionReason::Restored)]
    );
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::Halted);
    // Setting the state it already has is not a transition.
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Halted,
        reason: TransitionReason::Operator,
    });
    assert!(g.transitions().is_empty());
}

#[test]
fn an_instrument_halt_or_reducing_state_is_per_symbol() {
    let mut g = Gate::new(params());
    g.cmd(RiskCommand::SetState {
        scope: Scope::Instrument(BTC),
        state: Halted,
        reason: TransitionReason::Operator,
    });
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::Instrument(BTC), Active, Halted, TransitionReason::Operator)]
    );
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::Halted);
    g.ok(manual(ETH, Side::Buy, "0.1"));
    assert_eq!(g.r.state(Scope::System), Active);
    assert_eq!(g.r.state(Scope::Instrument(BTC)), Halted);
    assert_eq!(g.r.state(Scope::Instrument(ETH)), Active);
    // A system REDUCING applies to every symbol; the stricter of the two wins.
    g.cmd(RiskCommand::SetState {
        scope: Scope::System,
        state: Reducing,
        reason: TransitionReason::Operator,
    });
    assert_eq!(g.r.effective_state(BTC), Halted);
    assert_eq!(g.r.effective_state(ETH), Reducing);
    assert_eq!(g.no(manual(ETH, Side::Buy, "0.1")), RejectReason::Reducing);
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::Halted);
    // An unknown instrument reads HALTED.
    assert_eq!(g.r.state(Scope::Instrument(InstrumentId(9))), Halted);
}

// ---- 3. REDUCING and reduce-only -----------------------------------------------------------

#[test]
fn reducing_passes_only_reductions_and_clips_targets_to_flat() {
    let mut g = Gate::new(params());
    g.position(BTC, Side::Buy, "0.02", "60000");
    g.cmd(RiskCommand::SetState {
        scope: Scope::Instrument(BTC),
        state: Reducing,
        reason: TransitionReason::Operator,
    });
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::Instrument(BTC), Active, Reducing, TransitionReason::Operator)]
    );
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::Reducing);
    assert_eq!(
        g.no(manual(BTC, Side::Sell, "0.03")),
        RejectReason::Reducing,
        "a flip opens a short"
    );
    let o = g.ok(manual(BTC, Side::Sell, "0.02"));
    g.reject(&o);
    // Alpha flips to short: the target is clipped to flat.
    let o = g.ok(alpha(BTC, "-0.02", 0.9));
    assert_eq!((o.side, o.qty), (Side::Sell, q("0.02")));
    g.reject(&o);
    // Alpha wants more: nothing of it reduces.
    assert_eq!(g.no(alpha(BTC, "0.04", 0.9)), RejectReason::Reducing);
    // Open sells already take the reducible room: a second sell may not go past flat.
    let o = g.ok(manual(BTC, Side::Sell, "0.015"));
    assert_eq!(g.no(manual(BTC, Side::Sell, "0.01")), RejectReason::Reducing);
    g.ok(manual(BTC, Side::Sell, "0.005"));
    g.cancel(&o);

    // Open orders on the growing side are not exposure that can be reduced: flat with an open
    // buy, a sell would open a short if the buy were cancelled.
    let mut g = Gate::new(params());
    let buy = g.ok(with_limit(manual(BTC, Side::Buy, "0.01"), "59990"));
    g.cmd(RiskCommand::SetState {
        scope: Scope::Instrument(BTC),
        state: Reducing,
        reason: TransitionReason::Operator,
    });
    assert_eq!(g.no(manual(BTC, Side::Sell, "0.01")), RejectReason::Reducing);
    g.cancel(&buy);
    g.cmd(RiskCommand::SetState {
        scope: Scope::Instrument(BTC),
        state: Active,
        reason: TransitionReason::Operator,
    });
    g.ok(manual(BTC, Side::Sell, "0.01"));
}

#[test]
fn reduce_only_refuses_growth_and_clips_targets() {
    let mut g = Gate::new(params());
    let mut buy = manual(BTC, Side::Buy, "0.01");
    buy.reduce_only = true;
    assert_eq!(g.no(buy), RejectReason::Reducing, "nothing to reduce");
    g.position(BTC, Side::Buy, "0.02", "60000");
    let mut sell = manual(BTC, Side::Sell, "0.03");
    sell.reduce_only = true;
    assert_eq!(g.no(sell), RejectReason::Reducing);
    let mut sell = manual(BTC, Side::Sell, "0.02");
    sell.reduce_only = true;
    let o = g.ok(sell);
    assert!(o.reduce_only);
    g.reject(&o);
    let mut to_short = base(BTC, Sizing::Target(sq("-0.02")), Origin::Manual);
    to_short.reduce_only = true;
    let o = g.ok(to_short);
    assert_eq!((o.side, o.qty, o.reduce_only), (Side::Sell, q("0.02"), true));
}

// ---- 4. feed state ------------------------------------------------------------------------

#[test]
fn a_stale_feed_puts_its_symbols_in_reducing_until_it_is_live_again() {
    let mut g = Gate::new(params());
    g.position(BTC, Side::Buy, "0.02", "60000");
    g.r.on_feed(Venue::Binance, false, 7);
    let t = g.transitions();
    assert_eq!(
        shapes(&t),
        vec![tr(
            Scope::Instrument(BTC),
            Active,
            Reducing,
            TransitionReason::FeedStale
        )]
    );
    assert_eq!(t[0].ts_ns, 7.max(g.ts));
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::FeedNotLive);
    assert_eq!(g.no(alpha(BTC, "0.04", 0.9)), RejectReason::FeedNotLive);
    g.ok(manual(BTC, Side::Sell, "0.01"));
    // ETH trades on Bybit, whose feed is live.
    g.ok(manual(ETH, Side::Buy, "0.1"));
    // Telling it again is not a change.
    g.r.on_feed(Venue::Binance, false, 8);
    assert!(g.transitions().is_empty());
    g.r.on_feed(Venue::Binance, true, 9);
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::Instrument(BTC), Reducing, Active, TransitionReason::FeedLive)]
    );
    g.ok(manual(BTC, Side::Buy, "0.01"));

    // Causes are layered: an operator's REDUCING outlives the feed coming back, and the REDUCING
    // check speaks first.
    g.cmd(RiskCommand::SetState {
        scope: Scope::Instrument(BTC),
        state: Reducing,
        reason: TransitionReason::Operator,
    });
    g.r.on_feed(Venue::Binance, false, 10);
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.01")), RejectReason::Reducing);
    g.r.on_feed(Venue::Binance, true, 11);
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(Scope::Instrument(BTC), Active, Reducing, TransitionReason::Operator)],
        "neither feed event changed the state"
    );
    assert_eq!(g.r.state(Scope::Instrument(BTC)), Reducing);
}

// ---- 5. reject ratio ----------------------------------------------------------------------

#[test]
fn a_venue_reject_ratio_above_the_limit_puts_its_symbols_in_reducing_and_back() {
    let mut g = Gate::new(RiskParams {
        reject_ratio: Factor::from_num(0.1),
        reject_window: 10,
        ..params()
    });
    let orders: Vec<Order> = (0..10).map(|_| g.ok(manual(BTC, Side::Buy, "0.002"))).collect();
    for o in &orders[..8] {
        g.fill(o, "60000");
    }
    g.reject(&orders[8]);
    assert_eq!(
        g.r.venue_rejects(Venue::Binance),
        (1, false),
        "1 of 10 is not above 10 %"
    );
    assert!(g.transitions().is_empty());
    g.reject(&orders[9]);
    assert_eq!(g.r.venue_rejects(Venue::Binance), (2, true));
    let binance = g.r.venue_views()[Venue::Binance.index()];
    assert_eq!(
        (
            binance.rejects,
            binance.reject_window,
            binance.reject_limit,
            binance.reject_high
        ),
        (2, 10, Factor::from_num(0.1), true)
    );
    assert!(binance.feed_live);
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(
            Scope::Instrument(BTC),
            Active,
            Reducing,
            TransitionReason::RejectRatio
        )]
    );
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.001")), RejectReason::Reducing);
    g.ok(manual(ETH, Side::Buy, "0.1"));
    // Reductions still go out; each pushes an old order out of the window. Orders 11–18 keep
    // both rejects (orders 9 and 10) inside; order 19 leaves one.
    for n in 11..=19 {
        let o = g.ok(manual(BTC, Side::Sell, "0.001"));
        g.fill(&o, "60000");
        let t = g.transitions();
        if n < 19 {
            assert!(t.is_empty(), "order {n}");
        } else {
            assert_eq!(
                shapes(&t),
                vec![tr(
                    Scope::Instrument(BTC),
                    Reducing,
                    Active,
                    TransitionReason::RejectRatioOk
                )]
            );
        }
    }
    assert_eq!(g.r.venue_rejects(Venue::Binance), (1, false));
    g.ok(manual(BTC, Side::Buy, "0.001"));
}

#[test]
fn rejects_the_engine_made_itself_leave_the_venue_reject_ratio_alone() {
    let mut g = Gate::new(RiskParams {
        reject_ratio: Factor::from_num(0.1),
        reject_window: 10,
        ..params()
    });
    let orders: Vec<Order> = (0..10).map(|_| g.ok(manual(BTC, Side::Buy, "0.002"))).collect();
    for (o, reason) in orders.iter().zip([
        RejectReason::NoRoute,
        RejectReason::KillSwitch,
        RejectReason::Overflow,
        RejectReason::NoRoute,
    ]) {
        g.reject_for(o, reason);
    }
    assert_eq!(g.r.venue_rejects(Venue::Binance), (0, false), "no venue was asked");
    assert!(g.transitions().is_empty());
    // The venue's own refusals still count.
    g.reject_for(&orders[4], RejectReason::InsufficientFunds);
    g.reject_for(&orders[5], RejectReason::VenueFilter);
    assert_eq!(g.r.venue_rejects(Venue::Binance), (2, true));
}

// ---- 6. tick, lot, min notional, max order ---------------------------------------------------

#[test]
fn tick_and_lot_sizes() {
    let mut g = Gate::new(params());
    assert_eq!(
        g.no(with_limit(manual(BTC, Side::Buy, "0.01"), "59999.995")),
        RejectReason::OffTick
    );
    g.ok(with_limit(manual(BTC, Side::Buy, "0.01"), "59999.99"));
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.001005")), RejectReason::OffLot);
    g.ok(manual(BTC, Side::Buy, "0.00101"));
    // Alpha's targets are rounded to lots before anything is checked.
    let o = g.ok(alpha(BTC, "0.025005", 0.9));
    assert_eq!(o.qty, q("0.01399"), "0.025 less the open 0.01101");
    // A zero lot or tick disables its check.
    g.cmd(RiskCommand::StageLimits {
        instrument: BTC,
        limits: Limits {
            lot_size: Qty::ZERO,
            tick_size: Price::ZERO,
            ..btc_limits()
        },
    });
    g.cmd(RiskCommand::CommitLimits);
    g.ok(with_limit(manual(BTC, Side::Sell, "0.001005"), "59999.995"));
}

#[test]
fn min_notional() {
    let mut g = Gate::new(params());
    // 0.00016 × 60001 = 9.60016 < 10; 0.00017 × 60001 = 10.20017.
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.00016")), RejectReason::MinNotional);
    g.ok(manual(BTC, Side::Buy, "0.00017"));
}

#[test]
fn max_order_quantity_and_notional() {
    let mut g = Gate::new(params());
    g.ok(manual(BTC, Side::Buy, "0.05"));
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.05001")), RejectReason::MaxOrderQty);
    let rich = |qty: &str| {
        let mut i = manual(BTC, Side::Sell, qty);
        i.touch = touch("100100", "100100.01", "100100");
        i
    };
    // 0.05 × 100100 = 5005 > 5000; 0.0499 × 100100 = 4994.99.
    assert_eq!(g.no(rich("0.05")), RejectReason::MaxOrderNotional);
    g.ok(rich("0.0499"));
}

// ---- 7. price collar -----------------------------------------------------------------------

#[test]
fn price_collar_around_the_last_trade_or_the_mid() {
    let mut g = Gate::new(params());
    let collared = |side: Side, limit: &str| with_limit(manual(BTC, side, "0.001"), limit);
    // 1 % of 60000 is 600.
    let o = g.ok(collared(Side::Buy, "60600"));
    g.reject(&o);
    assert_eq!(g.no(collared(Side::Buy, "60600.01")), RejectReason::PriceCollar);
    let o = g.ok(collared(Side::Sell, "59400"));
    g.reject(&o);
    assert_eq!(g.no(collared(Side::Sell, "59399.99")), RejectReason::PriceCollar);
    // A market order is priced at the touch it takes.
    let mut wide = manual(BTC, Side::Buy, "0.001");
    wide.touch = touch("59999", "60600.01", "60000");
    assert_eq!(g.no(wide), RejectReason::PriceCollar);
    wide.touch.ask = p("60600");
    let o = g.ok(wide);
    g.reject(&o);
    // No last trade: the mid is the reference (60000 here, so a 61000 ask is 1.67 % away).
    let mut no_last = manual(BTC, Side::Buy, "0.001");
    no_last.touch = touch("59000", "61000", "0");
    assert_eq!(g.no(no_last), RejectReason::PriceCollar);
    no_last.touch = touch("59990", "60010", "0");
    g.ok(no_last);
    // Nothing to collar against: a one-sided book with no last trade.
    let mut one_sided = with_limit(manual(BTC, Side::Buy, "0.001"), "60000");
    one_sided.touch = touch("0", "60000", "0");
    assert_eq!(g.no(one_sided), RejectReason::NoPrice);
}

// ---- 8. position and gross exposure ---------------------------------------------------------

#[test]
fn max_position_counts_open_orders_and_lets_a_lowered_limit_be_worked_down() {
    let mut g = Gate::new(params());
    let a = g.ok(manual(BTC, Side::Buy, "0.05"));
    let b = g.ok(manual(BTC, Side::Buy, "0.05"));
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.00017")), RejectReason::MaxPosition);
    // The sell side is measured on its own: position 0, no open sells.
    let s = g.ok(manual(BTC, Side::Sell, "0.05"));
    g.cancel(&s);
    g.fill(&a, "60000");
    g.fill(&b, "60000");
    assert_eq!(g.r.exposure()[0].position, sq("0.1"));
    g.cmd(RiskCommand::StageLimits {
        instrument: BTC,
        limits: Limits {
            max_position: q("0.05"),
            ..btc_limits()
        },
    });
    g.cmd(RiskCommand::CommitLimits);
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.001")), RejectReason::MaxPosition);
    // 0.09 is still above 0.05, but smaller than before.
    g.ok(manual(BTC, Side::Sell, "0.01"));
}

#[test]
fn gross_exposure_over_all_symbols_at_last_prices() {
    let mut g = Gate::new(params());
    g.position(BTC, Side::Buy, "0.05", "60000");
    g.position(BTC, Side::Buy, "0.05", "60000"); // 6000
    for _ in 0..3 {
        let o = g.ok(manual(ETH, Side::Buy, "5"));
        g.fill(&o, "2700");
    } // + 40500 = 46500
    assert_eq!(g.r.gross_notional(), m("46500"));
    // 1.3 ETH more is 3510: 50010 > 50000. 1.2 is 3240: 49740.
    assert_eq!(g.no(manual(ETH, Side::Buy, "1.3")), RejectReason::GrossExposure);
    let o = g.ok(manual(ETH, Side::Buy, "1.2"));
    assert_eq!(g.r.gross_notional(), m("49740"), "open orders count");
    g.fill(&o, "2700");
    // ETH rallies to 3000: 6000 + 16.2 × 3000 = 54600, over the limit. New exposure is refused,
    // a reduction is not.
    let at_3000 = |side: Side, qty: &str| {
        let mut i = manual(ETH, side, qty);
        i.touch = touch("3000", "3000.01", "3000");
        i
    };
    assert_eq!(g.no(at_3000(Side::Buy, "0.01")), RejectReason::GrossExposure);
    assert_eq!(g.r.gross_notional(), m("54600"));
    g.ok(at_3000(Side::Sell, "1"));
    g.ok(manual(BTC, Side::Sell, "0.01"));
}

// ---- 9. per-trade risk ---------------------------------------------------------------------

/// Balance 128000 and a risk fraction of 2⁻⁸: exactly 500 per trade (binary-exact fractions
/// keep the boundary exact; 0.005 as `I32F32` is 0.0049999999888).
fn risk_params() -> RiskParams {
    let mut p = params();
    p.instruments[0].limits = Limits {
        max_order_qty: q("10"),
        max_order_notional: m("1000000"),
        max_position: q("10"),
        ..btc_limits()
    };
    RiskParams {
        max_trade_risk: Factor::from_num(1) / 256,
        starting_balance: m("128000"),
        max_gross_notional: m("10000000"),
        ..p
    }
}

#[test]
fn per_trade_risk_is_quantity_times_stop_within_a_fraction_of_the_balance() {
    let mut g = Gate::new(risk_params());
    let stopped = |side: Side, qty: &str, stop: &str| {
        let mut i = manual(BTC, side, qty);
        i.stop = p(stop);
        i
    };
    // 0.5 × 1000 = 500: at the limit. 0.50001 × 1000 = 500.01: over.
    assert_eq!(g.no(stopped(Side::Buy, "0.50001", "1000")), RejectReason::TradeRisk);
    let o = g.ok(stopped(Side::Buy, "0.5", "1000"));
    g.reject(&o);
    // No stop named: 1 % of the price, 600.01 at a 60001 ask; 500 / 600.01 = 0.8333194.
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.83333")), RejectReason::TradeRisk);
    let o = g.ok(manual(BTC, Side::Buy, "0.83331"));
    g.cancel(&o);
    // Alpha's targets are capped to the largest whole-lot quantity within the limit ...
    let mut a = alpha(BTC, "1", 0.9);
    a.stop = p("1000");
    let o = g.ok(a);
    assert_eq!(o.qty, q("0.5"));
    g.fill(&o, "60000");
    // ... and refused only when the cap is zero: 500 / 10⁸ is below one lot.
    let mut a = alpha(BTC, "1", 0.9);
    a.stop = p("100000000");
    assert_eq!(g.no(a), RejectReason::TradeRisk);
    // A reduction carries no new risk, whatever the stop.
    let o = g.ok(stopped(Side::Sell, "0.5", "100000000"));
    g.reject(&o);
    // A flip risks only what lies beyond flat: selling 1 from +0.5 opens 0.5.
    let o = g.ok(stopped(Side::Sell, "1", "1000"));
    g.reject(&o);
    assert_eq!(g.no(stopped(Side::Sell, "1.00001", "1000")), RejectReason::TradeRisk);
    // The balance follows realized PnL and fees exactly: closing 0.5 bought at 60000 at 59000
    // loses 500, and the fee is 1.25.
    let o = g.ok(stopped(Side::Sell, "0.5", "1000"));
    g.fill_part(&o, "59000", q("0.5"), m("1.25"), true);
    assert_eq!(g.r.balance(), m("127498.75"));
    // 127498.75 / 256 = 498.04199…: 0.498 × 1000 passes, 0.49805 does not.
    assert_eq!(g.no(stopped(Side::Buy, "0.49805", "1000")), RejectReason::TradeRisk);
    let o = g.ok(stopped(Side::Buy, "0.498", "1000"));
    g.reject(&o);
    // Profit set aside in the Portfolio's lock-box is no longer trading capital: against
    // 127498.75 − 27498.75 = 100000 the limit is 100000 / 256 = 390.625.
    g.r.on_command(RiskCommand::SetAside(m("27498.75")), 0, &mut |_| {});
    assert_eq!(g.r.set_aside(), m("27498.75"));
    assert_eq!(g.no(stopped(Side::Buy, "0.39063", "1000")), RejectReason::TradeRisk);
    let o = g.ok(stopped(Side::Buy, "0.39062", "1000"));
    g.reject(&o);
    // A negative amount is not a set-aside: ignored.
    g.r.on_command(RiskCommand::SetAside(m("-1")), 0, &mut |_| {});
    assert_eq!(g.r.set_aside(), m("27498.75"));
}

// ---- 10. self-trade prevention --------------------------------------------------------------

#[test]
fn self_trade_prevention_against_our_resting_orders() {
    let mut g = Gate::new(params());
    let spread = |i: OrderIntent| {
        let mut i = i;
        i.touch = touch("60000", "60010", "60000");
        i
    };
    let s1 = g.ok(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60005")));
    let s2 = g.ok(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60008")));
    assert_eq!(
        g.no(spread(with_limit(manual(BTC, Side::Buy, "0.01"), "60005"))),
        RejectReason::SelfTrade
    );
    let b = g.ok(spread(with_limit(manual(BTC, Side::Buy, "0.01"), "60004.99")));
    // A market buy takes the 60010 ask, through both resting sells.
    assert_eq!(g.no(spread(manual(BTC, Side::Buy, "0.01"))), RejectReason::SelfTrade);
    // A sell at or below our resting buy crosses it.
    assert_eq!(
        g.no(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60004.99"))),
        RejectReason::SelfTrade
    );
    g.ok(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60005")));
    // Cancel the best sell: 60005 (the second one) is still resting, so 60006 still crosses it.
    g.cancel(&s1);
    assert_eq!(
        g.no(spread(with_limit(manual(BTC, Side::Buy, "0.01"), "60006"))),
        RejectReason::SelfTrade
    );
    let mut g2 = Gate::new(params());
    let s = g2.ok(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60005")));
    let t = g2.ok(spread(with_limit(manual(BTC, Side::Sell, "0.01"), "60008")));
    g2.cancel(&s);
    assert_eq!(
        g2.no(spread(with_limit(manual(BTC, Side::Buy, "0.01"), "60008"))),
        RejectReason::SelfTrade
    );
    g2.ok(spread(with_limit(manual(BTC, Side::Buy, "0.01"), "60007.99")));
    // A full fill takes the last resting sell off the book: the market buy goes.
    g2.fill(&t, "60008");
    g2.ok(spread(manual(BTC, Side::Buy, "0.01")));
    // A partial fill leaves it resting.
    let r = g.ok(spread(with_limit(manual(BTC, Side::Buy, "0.001"), "60001")));
    g.fill_part(&r, "60001", q("0.0005"), Money::ZERO, false);
    assert_eq!(
        g.no(spread(with_limit(manual(BTC, Side::Sell, "0.001"), "60001"))),
        RejectReason::SelfTrade
    );
    let _ = (s2, b);
}

// ---- 11. duplicate client ids ---------------------------------------------------------------

#[test]
fn duplicate_client_ids_within_the_horizon() {
    let mut g = Gate::new(params());
    let with_id = |id: u64, qty: &str| {
        let mut i = manual(BTC, Side::Buy, qty);
        i.client_id = id;
        i
    };
    let o = g.ok(with_id(42, "0.001"));
    g.cancel(&o);
    assert_eq!(g.no(with_id(42, "0.001")), RejectReason::DuplicateClientId);
    // A refused intent does not use up its id.
    assert_eq!(g.no(with_id(43, "1")), RejectReason::MaxOrderQty);
    let o = g.ok(with_id(43, "0.001"));
    g.cancel(&o);
    // Id 0 means "none": never a duplicate.
    for _ in 0..2 {
        let o = g.ok(with_id(0, "0.001"));
        g.cancel(&o);
    }
    // After CLIENT_IDS newer ids, 42 has left the horizon.
    for id in 1000..1000 + CLIENT_IDS as u64 - 1 {
        let o = g.ok(with_id(id, "0.001"));
        g.cancel(&o);
    }
    assert_eq!(g.no(with_id(43, "0.001")), RejectReason::DuplicateClientId);
    g.ok(with_id(42, "0.001"));
}

// ---- 12. rate limit ------------------------------------------------------------------------

#[test]
fn rate_limit_per_venue_in_a_sliding_second() {
    let mut g = Gate::new(params());
    let at = |i: InstrumentId, ts: u64| {
        let mut x = manual(i, Side::Buy, if i == BTC { "0.001" } else { "0.01" });
        x.ts_ns = ts;
        x
    };
    let t0 = 5_000_000_000;
    assert_eq!(g.r.rate_used(Venue::Binance), 0);
    for k in 0..20 {
        g.ok(at(BTC, t0 + k));
    }
    assert_eq!(g.r.rate_used(Venue::Binance), 20, "the whole limit is used");
    assert_eq!(g.no(at(BTC, t0 + 20)), RejectReason::RateLimit);
    assert_eq!(g.no(at(BTC, t0 + 999_999_999)), RejectReason::RateLimit);
    // Another venue has its own window.
    g.ok(at(ETH, t0 + 20));
    assert_eq!((g.r.rate_used(Venue::Binance), g.r.rate_used(Venue::Bybit)), (20, 1));
    // One second after the oldest, one more fits; then the window slides by one each nanosecond.
    g.ok(at(BTC, t0 + 1_000_000_000));
    assert_eq!(
        g.r.rate_used(Venue::Binance),
        20,
        "the oldest left, the new one came in"
    );
    assert_eq!(g.no(at(BTC, t0 + 1_000_000_000)), RejectReason::RateLimit);
    g.ok(at(BTC, t0 + 1_000_000_001));
    // The usage as the board publishes it, venue by venue; once Risk's time has moved on by a
    // second with no order, nothing is in the window.
    let views = g.r.venue_views();
    assert_eq!(
        (
            views[Venue::Binance.index()].orders_last_sec,
            views[Venue::Binance.index()].max_orders_per_sec
        ),
        (20, 20)
    );
    assert_eq!(views[Venue::Coinbase.index()].orders_last_sec, 0);
    g.r.on_feed(Venue::Coinbase, true, t0 + 2_000_000_001);
    assert_eq!(g.r.rate_used(Venue::Binance), 0);
}

// ---- 13. open-order table ------------------------------------------------------------------

#[test]
fn a_full_open_order_table_refuses_with_overflow_and_ids_skip_taken_slots() {
    let mut p = params();
    p.instruments[0].limits = Limits {
        max_position: q("1000"),
        min_notional: Money::ZERO,
        ..btc_limits()
    };
    p.max_orders_per_sec = 1_000_000;
    let mut g = Gate::new(p);
    let resting = || with_limit(manual(BTC, Side::Buy, "0.00001"), "59990");
    let orders: Vec<Order> = (0..OPEN_ORDERS).map(|_| g.ok(resting())).collect();
    assert_eq!(g.r.open_orders(), OPEN_ORDERS);
    assert_eq!(g.no(resting()), RejectReason::Overflow);
    // Free the slot of order 5: the next id, 4097, maps to the slot of order 1, still taken, so
    // ids 4097–4100 are skipped.
    g.cancel(&orders[4]);
    let o = g.ok(resting());
    assert_eq!(o.id, OrderId(OPEN_ORDERS as u64 + 5));
    assert_eq!(g.no(resting()), RejectReason::Overflow);
}

// ---- 14. trims ----------------------------------------------------------------------------

#[test]
fn trim_emits_reduce_only_market_orders_that_no_state_refuses() {
    let mut g = Gate::new(params());
    g.position(BTC, Side::Buy, "0.03", "60000");
    g.position(ETH, Side::Sell, "0.5", "2700");
    g.cmd(RiskCommand::Kill);
    assert!(g.r.max_trim_orders() >= 2);
    let trims = g.cmd(RiskCommand::Trim {
        scope: Scope::System,
        fraction: Factor::from_num(0.5),
    });
    let got: Vec<_> = trims
        .iter()
        .map(|o| (o.instrument, o.venue, o.side, o.qty, o.kind, o.origin, o.reduce_only))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                BTC,
                Venue::Binance,
                Side::Sell,
                q("0.015"),
                OrderKind::Market,
                Origin::Risk,
                true
            ),
            (
                ETH,
                Venue::Bybit,
                Side::Buy,
                q("0.25"),
                OrderKind::Market,
                Origin::Risk,
                true
            ),
        ]
    );
    assert!(trims[0].id < trims[1].id);
    assert_eq!(trims[0].ts_ns, g.ts);
    assert_eq!(trims[0].touch.last, p("60000"), "priced for the paper venue");
    assert_eq!(g.r.exposure()[0].open_sell, q("0.015"));
    // A second full trim takes only what is not already being sold.
    let again = g.cmd(RiskCommand::Trim {
        scope: Scope::Instrument(BTC),
        fraction: Factor::ONE,
    });
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].side, again[0].qty), (Side::Sell, q("0.015")));
    // Nothing left to reduce, out-of-range fractions and unknown symbols: nothing.
    assert!(
        g.cmd(RiskCommand::Trim {
            scope: Scope::Instrument(BTC),
            fraction: Factor::ONE
        })
        .is_empty()
    );
    for bad in [Factor::ZERO, Factor::from_num(1.5), -Factor::ONE] {
        assert!(
            g.cmd(RiskCommand::Trim {
                scope: Scope::System,
                fraction: bad
            })
            .is_empty()
        );
    }
    assert!(
        g.cmd(RiskCommand::Trim {
            scope: Scope::Instrument(InstrumentId(5)),
            fraction: Factor::ONE
        })
        .is_empty()
    );
    // A third of 0.03 is 0.01; fills bring the position down.
    for o in trims.iter().chain(&again) {
        g.fill(o, if o.instrument == BTC { "60000" } else { "2700" });
    }
    assert_eq!(g.r.exposure()[0].position, SignedQty::ZERO);
    assert_eq!(g.r.exposure()[1].position, sq("-0.25"));
}

// ---- 15. staged limits ---------------------------------------------------------------------

#[test]
fn staged_limits_take_effect_all_at_once_on_commit() {
    let mut g = Gate::new(params());
    let tight_btc = Limits {
        max_order_qty: q("0.01"),
        ..btc_limits()
    };
    let tight_eth = Limits {
        max_order_qty: q("0.1"),
        ..eth_limits()
    };
    g.cmd(RiskCommand::StageLimits {
        instrument: BTC,
        limits: tight_btc,
    });
    // Staged, not in force: the old limits still apply between the two stagings.
    let o = g.ok(manual(BTC, Side::Buy, "0.02"));
    g.cancel(&o);
    g.cmd(RiskCommand::StageLimits {
        instrument: ETH,
        limits: tight_eth,
    });
    g.cmd(RiskCommand::StageLimits {
        instrument: InstrumentId(9),
        limits: tight_eth,
    });
    let o = g.ok(manual(ETH, Side::Buy, "0.2"));
    g.cancel(&o);
    assert_eq!(g.r.limits(), &[btc_limits(), eth_limits()]);
    g.cmd(RiskCommand::CommitLimits);
    assert_eq!(g.r.limits(), &[tight_btc, tight_eth]);
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.02")), RejectReason::MaxOrderQty);
    assert_eq!(g.no(manual(ETH, Side::Buy, "0.2")), RejectReason::MaxOrderQty);
    g.ok(manual(BTC, Side::Buy, "0.01"));
}

#[test]
fn staged_global_limits_take_effect_all_at_once_on_commit() {
    let mut g = Gate::new(params());
    // Ten BTC orders on Binance, two rejected: 2 of the last 200 is 1 %, within the 2 % limit.
    let orders: Vec<Order> = (0..10).map(|_| g.ok(manual(BTC, Side::Buy, "0.001"))).collect();
    g.reject(&orders[0]);
    g.reject(&orders[1]);
    for o in &orders[2..] {
        g.cancel(o);
    }
    assert_eq!(g.r.venue_rejects(Venue::Binance), (2, false));
    let old = params().global();
    let new = GlobalLimits {
        collar: Factor::from_num(0.02),
        max_gross_notional: m("100"),
        max_orders_per_sec: 3,
        reject_ratio: Factor::from_num(0.1),
        reject_window: 10,
        ..old
    };
    g.cmd(RiskCommand::StageGlobal(new));
    // Staged, not in force: 2750 is 1.85 % from the last trade, outside the 1 % collar.
    let eth_at = |qty: &str, ts: u64| {
        let mut i = manual(ETH, Side::Buy, qty);
        i.ts_ns = ts;
        i
    };
    let t = 9_000_000_000_000;
    assert_eq!(g.no(with_limit(eth_at("0.01", t), "2750")), RejectReason::PriceCollar);
    assert_eq!(g.r.global_limits(), old);
    assert!(g.transitions().is_empty());

    g.cmd(RiskCommand::CommitLimits);
    assert_eq!(g.r.global_limits(), new);
    // The narrower window now holds both rejects: 2 of 10 is above 10 %, at the commit.
    assert_eq!(g.r.venue_rejects(Venue::Binance), (2, true));
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(
            Scope::Instrument(BTC),
            Active,
            Reducing,
            TransitionReason::RejectRatio
        )]
    );
    assert_eq!(g.no(manual(BTC, Side::Buy, "0.001")), RejectReason::Reducing);
    // The 2 % collar, the 100 gross limit (27 + 27 + 135 > 100) and three orders a second.
    g.ok(with_limit(eth_at("0.01", t + 1), "2750"));
    g.ok(eth_at("0.01", t + 2));
    assert_eq!(g.no(eth_at("0.05", t + 3)), RejectReason::GrossExposure);
    g.ok(eth_at("0.01", t + 4));
    assert_eq!(g.r.gross_notional(), m("81"));
    assert_eq!(g.no(eth_at("0.004", t + 5)), RejectReason::RateLimit);
    assert_eq!(g.r.rate_used(Venue::Bybit), 3);
    let bybit = g.r.venue_views()[Venue::Bybit.index()];
    assert_eq!((bybit.orders_last_sec, bybit.max_orders_per_sec), (3, 3));
    // Staging the old limits back and committing restores them, and the wider window dilutes
    // the rejects again.
    g.cmd(RiskCommand::StageGlobal(old));
    g.cmd(RiskCommand::CommitLimits);
    assert_eq!(g.r.global_limits(), old);
    assert_eq!(g.r.venue_rejects(Venue::Binance), (2, false));
    assert_eq!(
        shapes(&g.transitions()),
        vec![tr(
            Scope::Instrument(BTC),
            Reducing,
            Active,
            TransitionReason::RejectRatioOk
        )]
    );
    g.ok(eth_at("0.004", t + 6));
}

// ---- 16. Kelly sizing ----------------------------------------------------------------------

#[test]
fn kelly_sizing_worked_by_hand() {
    let mut g = Gate::new(RiskParams {
        sizing: SizingMode::Kelly,
        ..params()
    });
    // No history: the signal's confidence stands for 10 pseudo-trades (KELLY_PRIOR_TRADES),
    // each won with p = (1 + 0.75) / 2 = 0.875, so p = 8.75 / 10 = 0.875, b = 1,
    // kelly = 0.875 − 0.125 = 0.75 (= the confidence); half Kelly 0.375;
    // 0.01 × 0.375 = 0.00375.
    let o = g.ok(alpha(BTC, "0.01", 0.75));
    assert_eq!(o.qty, q("0.00375"));
    g.reject(&o);
    // At the shipped entry threshold (0.5): kelly 0.5, half 0.25, 0.0025.
    let o = g.ok(alpha(BTC, "0.01", 0.5));
    assert_eq!(o.qty, q("0.0025"));
    g.cancel(&o);
    // A score of 0 carries no edge: kelly 0, target 0, nothing to do.
    assert_eq!(g.check(alpha(BTC, "0.01", 0.0)), Decision::Nothing);
    // One win of 30 (0.001 bought at 60000, sold at 90000) and one loss of 10 (sold at 50000);
    // a break-even round trip counts as neither.
    for exit in ["90000", "50000", "60000"] {
        let b = g.ok(manual(BTC, Side::Buy, "0.001"));
        g.fill(&b, "60000");
        let s = g.ok(manual(BTC, Side::Sell, "0.001"));
        g.fill(&s, exit);
    }
    let stats = g.r.trade_stats(BTC).unwrap();
    assert_eq!(
        (stats.wins, stats.losses, stats.win_sum, stats.loss_sum),
        (1, 1, 30 * 100_000_000, 10 * 100_000_000)
    );
    assert_eq!(g.r.balance(), m("100020"));
    // The confidence stands for 10 pseudo-trades won with p = 0.75:
    // p = (1 + 10 × 0.75) / (2 + 10) = 17/24, b = 30 / 10 = 3,
    // kelly = 17/24 − (7/24) / 3 = 11/18; half: 11/36; 0.01 × 11/36 = 0.0030555…, 0.00305.
    let o = g.ok(alpha(BTC, "0.01", 0.5));
    assert_eq!(o.qty, q("0.00305"));
    g.reject(&o);
    // The governor's clip multiplies in: 11/36 × 0.25 = 11/144 → 0.000763…, 0.00076.
    g.cmd(RiskCommand::KellyClip(Factor::from_num(0.25)));
    let o = g.ok(alpha(BTC, "-0.01", -0.5));
    assert_eq!((o.side, o.qty), (Side::Sell, q("0.00076")));
    g.reject(&o);
    // Manual targets are never scaled.
    let o = g.ok(base(BTC, Sizing::Target(sq("0.01")), Origin::Manual));
    assert_eq!(o.qty, q("0.01"));
    g.reject(&o);
    // The per-trade risk cap comes last: 0.5 % of the 100020 balance is 500.1, and a 10⁶ stop
    // allows 500.1 / 10⁶ = 0.0005001, rounded down to lots: 0.0005 instead of 0.00305.
    g.cmd(RiskCommand::KellyClip(Factor::ONE));
    let mut a = alpha(BTC, "0.01", 0.5);
    a.stop = p("1000000");
    assert_eq!(g.ok(a).qty, q("0.0005"));
}

#[test]
fn the_shipped_defaults_trade_alphas_default_sizes_with_a_volatility_stop() {
    // Alpha's defaults: BTC 0.01 (≈ 600 USDT), ETH 0.1 (≈ 270 USDT); stops of a few dollars.
    for sizing in [SizingMode::Fixed, SizingMode::Kelly] {
        let mut g = Gate::new(RiskParams { sizing, ..params() });
        let mut btc = alpha(BTC, "0.01", 0.75);
        btc.stop = p("20");
        let mut eth = alpha(ETH, "0.1", 0.75);
        eth.stop = p("1.5");
        let (b, e) = (g.ok(btc), g.ok(eth));
        let expected = match sizing {
            SizingMode::Fixed => (q("0.01"), q("0.1")),
            SizingMode::Kelly => (q("0.00375"), q("0.0375")),
        };
        assert_eq!((b.qty, e.qty), expected);
    }
}

// ---- 17. transition queue --------------------------------------------------------------------

#[test]
fn the_transition_queue_keeps_the_newest_and_counts_what_it_dropped() {
    let mut g = Gate::new(params());
    let n = TRANSITIONS + 44;
    for k in 0..n {
        g.r.on_feed(Venue::Binance, k % 2 == 1, k as u64);
    }
    assert_eq!(g.r.transitions_dropped(), 44);
    let t = g.transitions();
    assert_eq!(t.len(), TRANSITIONS);
    // Transition k (0-based) happened at ts k; the first 44 were dropped.
    assert_eq!(t[0].ts_ns, 44);
    assert_eq!(t.last().unwrap().ts_ns, n as u64 - 1);
    assert!(g.r.pop_transition().is_none());
}
