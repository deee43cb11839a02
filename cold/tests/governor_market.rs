//! The MetaGovernor on a synthetic market, through the real engine: Binance trade and quote
//! frames → decoder → Alpha (momentum, mean reversion, breakout) → Risk → paper venue → taps →
//! per-family attribution → governor steps → new weights back to Alpha through `alpha_cmd`.
//!
//! The market trends in long legs (up, down, up, …). Momentum and breakout follow the trend and
//! earn; mean reversion leans against it and loses. After a number of steps the governor must
//! have moved weight from mean reversion toward the trend families, never more than
//! `max_step` per weight per step, the weights summing to exactly 1 throughout.

use std::sync::Arc;

use maxx_cold::attribution::Attribution;
use maxx_cold::config;
use maxx_cold::engine::spec;
use maxx_cold::governor::{Decision, Governor, GovernorParams, Trigger};
use maxx_cold::taps::TapDrain;
use maxx_hot::capture::Capture;
use maxx_hot::feed::any::{AnyDecoder, AnySource};
use maxx_hot::ids::Venue;
use maxx_hot::records::Factor;
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::run_lockstep;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::ReplaySource;
use maxx_hot::stage::alpha::{AlphaInput, Weights};
use maxx_hot::stage::exec::PaperVenue;

const BASE_NS: u64 = 1_700_000_000_000_000_000;
/// Trades per trend leg, and between two governor steps.
const LEG: usize = 150;
const LEGS: usize = 24;

fn wire_price(cents: i64) -> String {
    format!("{}.{:02}000000", cents / 100, cents % 100)
}

/// A BTCUSDT capture: a quote and a trade per step; a flat warm-up, then legs of `LEG` trades
/// moving 5.00 per trade, alternating up and down.
fn trending_capture() -> String {
    let mut path = Vec::new();
    let mut cents: i64 = 6_000_000;
    for i in 0..120 {
        path.push(cents + (i % 2));
    }
    for leg in 0..LEGS {
        let step = if leg % 2 == 0 { 500 } else { -500 };
        for _ in 0..LEG {
            cents += step;
            path.push(cents);
        }
    }
    let mut text = String::new();
    let mut t = BASE_NS;
    for (i, &p) in path.iter().enumerate() {
        t += 5_000_000;
        text.push_str(&format!(
            "{t} {{\"stream\":\"btcusdt@bookTicker\",\"data\":{{\"u\":{},\"s\":\"BTCUSDT\",\"b\":\"{}\",\
             \"B\":\"1.50000000\",\"a\":\"{}\",\"A\":\"2.00000000\"}}}}\n",
            5000 + i,
            wire_price(p - 10),
            wire_price(p + 10)
        ));
        t += 5_000_000;
        let ms = t / 1_000_000;
        text.push_str(&format!(
            "{t} {{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"s\":\"BTCUSDT\",\"t\":{},\
             \"p\":\"{}\",\"q\":\"0.01500000\",\"T\":{ms},\"m\":{},\"M\":true}}}}\n",
            1001 + i,
            wire_price(p),
            i % 2 == 1
        ));
    }
    text
}

fn f(s: &str) -> Factor {
    s.parse().unwrap()
}

/// Runs the market through the engine with a governor step after every leg; returns the
/// decisions and the final attribution.
fn run(params: GovernorParams, start: Weights) -> (Vec<Decision>, Attribution) {
    let dir = std::env::temp_dir().join(format!("maxx-governor-market-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("trend-{}.txt", params.seed));
    std::fs::write(&file, trending_capture()).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent_config.yaml");
    let config = config::load(std::path::Path::new(root)).expect("shipped config");
    let mut spec = spec(&config);
    spec.alpha.weights = start;
    let feed = FeedInput {
        venue: Venue::Binance,
        source: AnySource::Replay(Box::new(ReplaySource::new(vec![Capture::load(&file).unwrap()], None))),
        decoder: AnyDecoder::for_venue(Venue::Binance, spec.index.len()),
        stats: Arc::new(FeedStats::new(Venue::Binance)),
    };
    // No fees: the test is about which family is right, not about the fee schedule.
    let Engine { tasks, mut cold, .. } = build(&spec, vec![feed], vec![PaperVenue::new(Venue::Binance, 0)]);
    let alpha_cmd = Arc::clone(&cold.alpha_cmd);
    let mut drain = TapDrain::new(&spec.index);
    let mut governor = Governor::new(params, start);
    let mut decisions = Vec::new();
    let mut next_step = 120 + LEG as u64;
    let mut tasks: Vec<_> = tasks.into_iter().map(|(_, t)| t).collect();
    run_lockstep(&mut tasks, || {
        drain.drain(&mut cold, &mut |_| {});
        if drain.ticks / 2 >= next_step {
            next_step += LEG as u64;
            let d = governor.step(&drain.attribution().pnl(), Trigger::Cron, drain.ticks);
            alpha_cmd.push(AlphaInput::Weights(d.new)).expect("room for weights");
            decisions.push(d);
        }
    });
    let _ = std::fs::remove_file(&file);
    (decisions, drain.attribution().clone())
}

#[test]
fn governor_moves_weight_from_the_losing_family_to_the_winners_within_its_step() {
    let start = [f("0.4"), f("0.3"), f("0.3"), Factor::ZERO];
    let params = GovernorParams {
        seed: 11,
        max_step: f("0.05"),
        min_weight: f("0.05"),
        fixed: [false, false, false, true],
        discount: f("0.9"),
    };
    let (decisions, attribution) = run(params, start);
    assert!(decisions.len() >= LEGS - 2, "{} steps", decisions.len());

    // The market did what it was built to do: trend families earn, mean reversion loses.
    let pnl = attribution.pnl();
    assert!(pnl[0].net() > maxx_hot::num::Money::ZERO, "momentum {:?}", pnl[0]);
    assert!(pnl[1].net() < maxx_hot::num::Money::ZERO, "mean_rev {:?}", pnl[1]);

    for d in &decisions {
        for i in 0..4 {
            let change = (d.new[i] - d.old[i]).abs();
            assert!(change <= f("0.05"), "step {}: {}", d.step, d.explain());
            assert!(d.new[i] >= Factor::ZERO);
        }
        assert_eq!(
            d.new.iter().map(|w| w.to_bits()).sum::<i64>(),
            start.iter().map(|w| w.to_bits()).sum::<i64>()
        );
        assert_eq!(d.new[3], Factor::ZERO, "sentiment is fixed");
        assert!(d.new[1] >= f("0.05"), "floor: {}", d.explain());
    }
    let last = decisions.last().unwrap().new;
    assert!(last[1] < start[1], "mean_rev lost weight: {last:?}");
    assert!(
        last[0] + last[2] > start[0] + start[2],
        "trend families gained: {last:?}"
    );

    // Seeded and reproducible: the same market and seed give the same decisions.
    let (again, _) = run(params, start);
    let a: Vec<_> = decisions.iter().map(|d| (d.old, d.new)).collect();
    let b: Vec<_> = again.iter().map(|d| (d.old, d.new)).collect();
    assert_eq!(a, b);
}
