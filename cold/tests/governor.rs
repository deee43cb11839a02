//! The MetaGovernor's decision logic: constraints, reproducibility, learning toward the family
//! that earns, restart continuity, the state file, weight validation and the Kelly clip.

use std::path::PathBuf;

use maxx_cold::attribution::{Attribution, BUCKETS, FamilyPnl};
use maxx_cold::governor::kelly::{KellyGuard, NS_PER_DAY, drawdown_exceeds};
use maxx_cold::governor::{
    Choice, Decision, Governor, GovernorParams, GovernorState, Trigger, normalise, validate_weights,
};
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::{
    ExecReport, FAMILIES, Factor, Fill, Liquidity, Order, OrderId, OrderKind, Origin, Side, Stamp, Touch,
};
use maxx_hot::stage::alpha::Weights;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn f(s: &str) -> Factor {
    s.parse().unwrap()
}

fn weights(w: [&str; FAMILIES]) -> Weights {
    w.map(f)
}

fn params(seed: u64) -> GovernorParams {
    GovernorParams {
        seed,
        max_step: f("0.05"),
        min_weight: f("0.05"),
        fixed: [false, false, false, true],
        discount: f("0.9"),
    }
}

fn start() -> Weights {
    weights(["0.4", "0.3", "0.3", "0"])
}

/// Cumulative PnL with `net` as realized PnL per family (money raw).
fn pnl(net: [i64; BUCKETS]) -> [FamilyPnl; BUCKETS] {
    net.map(|n| FamilyPnl {
        realized: Money::from_raw(n).unwrap(),
        ..FamilyPnl::default()
    })
}

fn bits_sum(w: &Weights) -> i64 {
    w.iter().map(|x| x.to_bits()).sum()
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("governor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

proptest! {
    // Failing cases are kept in `cold/proptest-regressions/` and replayed first.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/governor.txt"
        )))),
        ..ProptestConfig::default()
    })]

    /// Over many steps with arbitrary rewards the weights stay non-negative, at or above the
    /// floor, fixed families untouched, each weight moving at most max_step, the sum bit-exact.
    #[test]
    fn constraints_hold_on_every_step(
        seed in any::<u64>(),
        max_step in prop::sample::select(vec!["0.01", "0.05", "0.2", "1"]),
        min_weight in prop::sample::select(vec!["0", "0.02", "0.1"]),
        fixed in [any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()],
        rewards in prop::collection::vec(prop::array::uniform5(-1_000_000_000_000i64..1_000_000_000_000), 1..120),
    ) {
        let p = GovernorParams { seed, max_step: f(max_step), min_weight: f(min_weight), fixed, discount: f("0.8") };
        p.validate().unwrap();
        let w0 = weights(["0.4", "0.3", "0.2", "0.1"]);
        let mut g = Governor::new(p, w0);
        let mut net = [0i64; BUCKETS];
        let mut prev = w0;
        for r in &rewards {
            for k in 0..BUCKETS {
                net[k] += r[k];
            }
            let d = g.step(&pnl(net), Trigger::Cron, 0);
            prop_assert_eq!(d.old, prev);
            prev = d.new;
            prop_assert_eq!(bits_sum(&d.new), bits_sum(&w0));
            prop_assert!(validate_weights(&d.new).is_ok());
            for k in 0..FAMILIES {
                prop_assert!(d.new[k] >= Factor::ZERO);
                if fixed[k] {
                    prop_assert_eq!(d.new[k], w0[k]);
                } else {
                    prop_assert!(d.new[k] >= p.min_weight);
                }
                prop_assert!((d.new[k] - d.old[k]).abs() <= p.max_step);
            }
            prop_assert_eq!(d.changed(), d.choice != Choice::Hold);
            prop_assert_eq!(g.weights(), d.new);
        }
        // Whether it moves at all is the sampler's choice: Thompson sampling may hold on every
        // one of a few steps (with the only free move against the floor, holding can win each
        // draw). That it moves toward the family that earns is shown on fixed seeds below
        // (`weight_moves_toward_the_family_that_earns`).
    }
}

fn run(g: &mut Governor, steps: usize, from: usize, net: &mut [i64; BUCKETS]) -> Vec<Decision> {
    (from..from + steps)
        .map(|i| {
            // A noisy stream: momentum earns about 10 a step, mean reversion loses about 10.
            let noise = [(i * 7 % 11) as i64 - 5, (i * 5 % 13) as i64 - 6, (i * 3 % 7) as i64 - 3];
            net[0] += (10 + noise[0]) * 100_000_000;
            net[1] += (-10 + noise[1]) * 100_000_000;
            net[2] += noise[2] * 100_000_000;
            g.step(&pnl(*net), Trigger::Cron, i as u64 * NS_PER_DAY)
        })
        .collect()
}

#[test]
fn same_seed_and_rewards_give_the_same_decisions() {
    let (mut a, mut b) = (Governor::new(params(42), start()), Governor::new(params(42), start()));
    let (mut na, mut nb) = ([0; BUCKETS], [0; BUCKETS]);
    let da = run(&mut a, 30, 0, &mut na);
    let db = run(&mut b, 30, 0, &mut nb);
    assert_eq!(da, db);
    let json = |d: &[Decision]| serde_json::to_string(d).unwrap();
    assert_eq!(json(&da), json(&db));
    // Another seed samples differently.
    let mut c = Governor::new(params(43), start());
    let dc = run(&mut c, 30, 0, &mut [0; BUCKETS]);
    assert_ne!(
        da.iter().map(|d| d.theta).collect::<Vec<_>>(),
        dc.iter().map(|d| d.theta).collect::<Vec<_>>()
    );
}

#[test]
fn weight_moves_toward_the_family_that_earns() {
    let mut g = Governor::new(params(7), start());
    let decisions = run(&mut g, 20, 0, &mut [0; BUCKETS]);
    for d in &decisions {
        for k in 0..FAMILIES {
            assert!((d.new[k] - d.old[k]).abs() <= f("0.05"), "{}", d.explain());
        }
    }
    let w = g.weights();
    assert!(w[0] > start()[0], "momentum {}", w[0]);
    assert!(w[1] < start()[1], "mean_rev {}", w[1]);
    // With a clear winner it ends where the constraints let it: every other movable weight at
    // the floor, the rest on momentum; sentiment (fixed) untouched.
    assert_eq!(w, weights(["0.9", "0.05", "0.05", "0"]));
    assert_eq!(bits_sum(&w), bits_sum(&start()));
    // Most steps moved weight into momentum or out of mean reversion while they could.
    let toward = decisions
        .iter()
        .filter(|d| matches!(d.choice, Choice::Move { to: 0, .. } | Choice::Move { from: 1, .. }))
        .count();
    assert!(toward >= 10, "{toward} of {}", decisions.len());
}

#[test]
fn attributed_pnl_of_a_trending_market_rewards_momentum() {
    // Price rises 1 per round; every round Alpha buys 1 on a signal where momentum says buy
    // (+0.6) and mean reversion says sell (-0.2), then sells it one round later. Momentum's
    // share is long and earns; mean reversion's share is short and loses.
    let btc = InstrumentId(0);
    let mut a = Attribution::new(1);
    let mut g = Governor::new(params(3), start());
    let buy_mix = weights(["0.6", "-0.2", "0.1", "0"]);
    let mut id = 0;
    let mut price = 100;
    for day in 0..15u64 {
        for side in [Side::Buy, Side::Sell] {
            id += 1;
            price += 1;
            let qty: Qty = "1".parse().unwrap();
            let px = Price::from_units(price).unwrap();
            a.on_order(&Order {
                id: OrderId(id),
                instrument: btc,
                venue: Venue::Binance,
                side,
                qty,
                kind: OrderKind::Market,
                tif: maxx_hot::records::Tif::Ioc,
                pin_venue: false,
                touch: Touch::default(),
                origin: Origin::Alpha,
                client_id: 0,
                mix: if side == Side::Buy {
                    buy_mix
                } else {
                    buy_mix.map(|m| -m)
                },
                reduce_only: false,
                ts_ns: 0,
                stamp: Stamp(0),
            });
            a.on_report(&ExecReport::Fill(Fill {
                order_id: OrderId(id),
                instrument: btc,
                venue: Venue::Binance,
                side,
                price: px,
                qty,
                fee: "0.01".parse().unwrap(),
                liquidity: Liquidity::Taker,
                last: true,
                ts_ns: 0,
            }));
            a.on_mark(btc, px);
        }
        let d = g.step(&a.pnl(), Trigger::Cron, day * NS_PER_DAY);
        assert!(
            d.rewards[0] > Money::ZERO && d.rewards[1] < Money::ZERO,
            "{}",
            d.explain()
        );
    }
    let w = g.weights();
    assert!(w[0] > start()[0] && w[1] < start()[1], "{w:?}");
}

#[test]
fn a_restart_from_the_state_file_continues_identically() {
    let dir = tmp("restart");
    let path = dir.join("governor.json");
    assert_eq!(GovernorState::load(&path), Ok(None));

    let mut never_stopped = Governor::new(params(9), start());
    let mut net = [0; BUCKETS];
    run(&mut never_stopped, 10, 0, &mut net);
    let mut state = never_stopped.state();
    let guard = KellyGuard::new(f("5"), Money::from_units(1000).unwrap());
    state.kelly = Some(guard.state());
    state.save(&path).unwrap();
    // Only the state file remains in the directory: the temporary file was renamed.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["governor.json"]);

    let loaded = GovernorState::load(&path).unwrap().unwrap();
    assert_eq!(loaded, state);
    assert_eq!(
        (loaded.weights(), loaded.base(), loaded.steps()),
        (never_stopped.weights(), start(), 10)
    );
    let mut restarted = Governor::from_state(params(9), loaded.clone()).unwrap();
    assert_eq!(restarted, never_stopped);
    assert_eq!(KellyGuard::from_state(f("5"), &loaded.kelly.unwrap()), guard);

    let mut net2 = net;
    let a = run(&mut never_stopped, 15, 10, &mut net);
    let b = run(&mut restarted, 15, 10, &mut net2);
    assert_eq!(a, b);
    assert_eq!(restarted.steps(), 25);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_or_invalid_state_files_are_refused_with_the_path() {
    let dir = tmp("corrupt");
    let path = dir.join("governor.json");
    std::fs::write(&path, b"{\"version\": 1, \"weights\": [").unwrap();
    let err = GovernorState::load(&path).unwrap_err();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );

    let mut state = Governor::new(params(1), start()).state();
    state.weights[0] += 1 << 20;
    std::fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
    let err = GovernorState::load(&path).unwrap_err();
    assert!(err.contains("weights must sum to 1"), "{err}");

    state = Governor::new(params(1), start()).state();
    state.version = 99;
    state.save(&path).unwrap();
    assert!(GovernorState::load(&path).unwrap_err().contains("version 99"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pnl_baseline_is_set_without_a_reward() {
    let mut g = Governor::new(params(5), start());
    g.set_pnl_baseline(&pnl([500_000_000_000, 0, 0, 0, 0]));
    let d = g.step(&pnl([600_000_000_000, 0, 0, 0, 0]), Trigger::Cron, 0);
    assert_eq!(d.rewards[0], Money::from_units(1000).unwrap());
    assert_eq!(d.trigger.name(), "cron");
}

#[test]
fn no_evidence_means_no_move() {
    let mut g = Governor::new(params(11), start());
    for i in 0..20 {
        let d = g.step(&pnl([0; BUCKETS]), Trigger::Http, i);
        assert_eq!(d.choice, Choice::Hold);
        assert!(d.explain().contains("held"));
    }
    assert_eq!(g.weights(), start());
}

#[test]
fn the_decision_explains_itself_in_json_and_in_words() {
    let mut g = Governor::new(params(7), start());
    let d = run(&mut g, 3, 0, &mut [0; BUCKETS])
        .into_iter()
        .find(|d| d.changed())
        .expect("a clear winner moves weight within three steps");
    let Choice::Move { from, to, amount } = d.choice else {
        unreachable!()
    };
    let v = serde_json::to_value(&d).unwrap();
    let names = ["momentum", "mean_rev", "breakout", "sentiment"];
    assert_eq!(
        v["choice"],
        format!("move {amount} from {} to {}", names[from], names[to])
    );
    assert_eq!(v["trigger"], "cron");
    assert_eq!(v["changed"], true);
    assert_eq!(v["old"]["momentum"], d.old[0].to_string());
    assert_eq!(v["new_bits"]["mean_rev"], d.new[1].to_bits());
    assert_eq!(v["rewards"]["momentum"], d.rewards[0].to_string());
    assert_eq!(v["cumulative"]["unattributed"]["net"], "0");
    assert!(v["theta"]["breakout"].is_f64());
    assert_eq!(v["explain"], d.explain());
    let s = d.explain();
    assert!(
        s.contains(&format!("moved {amount}")) && s.contains("rewards since last step"),
        "{s}"
    );
}

#[test]
fn operator_weights_keep_the_base_until_a_rebase() {
    let mut g = Governor::new(params(1), start());
    let w = weights(["0.25", "0.25", "0.5", "0"]);
    g.set_weights(w);
    assert_eq!((g.weights(), g.base()), (w, start()));
    g.rebase(w);
    assert_eq!(g.state().base(), w);
    // An invalid state is refused rather than resumed.
    let mut bad = g.state();
    bad.weights[3] = -1;
    assert!(Governor::from_state(params(1), bad).unwrap_err().contains("sentiment"));
}

#[test]
fn weights_are_validated_and_normalised_exactly() {
    // Decimals that sum to 1 are accepted although their binary images need not.
    validate_weights(&weights(["0.4", "0.3", "0.3", "0"])).unwrap();
    validate_weights(&weights(["0.1", "0.2", "0.3", "0.4"])).unwrap();
    validate_weights(&weights(["0.35", "0.35", "0.15", "0.15"])).unwrap();
    let e = validate_weights(&weights(["0.5", "-0.1", "0.6", "0"])).unwrap_err();
    assert!(e.contains("mean_rev") && e.contains("negative"), "{e}");
    let e = validate_weights(&weights(["0.4", "0.3", "0.2", "0"])).unwrap_err();
    assert!(e.contains("sum to 1, got 0.9"), "{e}");

    let n = normalise(&weights(["0.2", "0.2", "0.2", "0"])).unwrap();
    assert_eq!(bits_sum(&n), Factor::ONE.to_bits());
    assert!(n[..3].iter().all(|x| (*x - f("0.333333333")).abs() < f("0.000000001")));
    assert_eq!(n[3], Factor::ZERO);
    let exact = weights(["0.25", "0.25", "0.5", "0"]);
    assert_eq!(normalise(&exact).unwrap(), exact);
    assert!(normalise(&weights(["0", "0", "0", "0"])).is_err());
    assert!(normalise(&weights(["1", "-1", "1", "0"])).is_err());
}

#[test]
fn params_are_range_checked() {
    params(0).validate().unwrap();
    assert!(
        GovernorParams {
            discount: Factor::ZERO,
            ..params(0)
        }
        .validate()
        .is_err()
    );
    assert!(
        GovernorParams {
            max_step: Factor::ZERO,
            ..params(0)
        }
        .validate()
        .is_err()
    );
    assert!(
        GovernorParams {
            min_weight: f("-0.1"),
            ..params(0)
        }
        .validate()
        .is_err()
    );
}

const T0: u64 = 19_000 * NS_PER_DAY;

fn m(units: i64) -> Money {
    Money::from_units(units).unwrap()
}

#[test]
fn kelly_clips_beyond_the_daily_drawdown_and_resets_the_next_utc_day() {
    let mut k = KellyGuard::new(f("5"), m(1000));
    assert_eq!(k.clip(), KellyGuard::FULL);
    assert_eq!(k.observe(T0 + 1, m(1100)), None);
    assert_eq!(k.peak(), m(1100));
    // Exactly 5 % below the peak is not beyond it.
    assert_eq!(k.observe(T0 + 2, m(1045)), None);
    assert_eq!(
        k.observe(T0 + 3, Money::from_raw(m(1045).raw() - 1).unwrap()),
        Some(KellyGuard::CLIPPED)
    );
    assert_eq!(KellyGuard::CLIPPED, f("0.25"));
    // The clip holds for the rest of the day, even after a recovery.
    assert_eq!(k.observe(T0 + 4, m(1200)), None);
    assert_eq!(k.clip(), KellyGuard::CLIPPED);
    // The next UTC day starts from a fresh peak and a full clip.
    assert_eq!(k.observe(T0 + NS_PER_DAY, m(900)), Some(KellyGuard::FULL));
    assert_eq!(k.peak(), m(900));
    assert_eq!(k.observe(T0 + NS_PER_DAY + 5, m(880)), None);
    // A stamp from an earlier day counts as today.
    assert_eq!(k.observe(T0 + 9, m(850)), Some(KellyGuard::CLIPPED));
}

#[test]
fn kelly_counts_the_starting_equity_as_the_first_peak_and_survives_a_restart() {
    let mut k = KellyGuard::new(f("5"), m(1000));
    assert_eq!(k.observe(T0, m(940)), Some(KellyGuard::CLIPPED));
    let again = KellyGuard::from_state(f("5"), &k.state());
    assert_eq!(again, k);
    let mut again = again;
    assert_eq!(again.observe(T0 + 1, m(1000)), None);
    assert_eq!(again.observe(T0 + NS_PER_DAY, m(1000)), Some(KellyGuard::FULL));
    // Equity at or below zero has no percentage drawdown.
    assert!(!drawdown_exceeds(Money::ZERO, m(-5), f("5")));
    assert!(drawdown_exceeds(m(100), m(94), f("5.99")));
    assert!(!drawdown_exceeds(m(100), m(94), f("6")));
}
