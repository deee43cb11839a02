//! The Alpha families against textbook references.
//!
//! Each reference below is written from the definition in the family's doc comment, separately
//! from the hot code: it recomputes every window from scratch at every trade (no running sums,
//! no deques, no state machine), and uses `f64` wherever the definition is a real number.
//! The series are a generated random walk (always) and the real Binance BTCUSDT trades in
//! `/work/shared/data/hftbacktest/spot/btcusdt_20240808.gz` (when the file is present; skipped
//! with a note otherwise).
//!
//! What must agree, and how:
//! - Whether a family has an opinion (warm-up) must agree exactly, trade by trade.
//! - Every score must agree within `1e-9 · max(1, |reference|)`; scores lie in [-1, 1], so this
//!   is 1e-9 absolute. The hot score is `I32F32`, whose quantum 2⁻³² ≈ 2.3e-10 is inside that.
//! - Breakout is exact: its channel and volume test are integer comparisons in both (the
//!   reference compares the volume ratio as exact rationals, since `f64` would round ties the
//!   hot code decides exactly), and its score is `k / hold`, which `I32F32` holds to 2⁻³².
//! - Mean reversion's reference works in raw price units (integers, exact in `f64`) and
//!   measures deviations from the window's first price, which changes neither the z-score nor
//!   its value but keeps `f64` cancellation (large prices, small spreads) far below 1e-9.
//! - Momentum's reference runs the EMA recursion in `f64` on whole-unit prices; the hot side
//!   runs it in `I64F64`, and the two differ by rounding only (about 1e-12 here).

use std::io::{BufRead, BufReader};
use std::path::Path;

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Factor, Side, Stamp, Tick, TickBody};
use maxx_hot::stage::alpha::{Breakout, BreakoutParams, Family, MeanRev, MeanRevParams, Momentum, MomentumParams};

const REAL_TRADES: &str = "/work/shared/data/hftbacktest/spot/btcusdt_20240808.gz";

/// One trade: price and quantity as decimal text, as a venue sends them.
struct Trade {
    price: String,
    qty: String,
}

/// A decimal string with at most 8 places as a count of 10⁻⁸ (the reference's own parser).
fn raw(text: &str) -> i64 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 8, "{text}");
    let frac = format!("{frac:0<8}");
    int.parse::<i64>().unwrap() * 100_000_000 + frac.parse::<i64>().unwrap()
}

/// A deterministic random walk: cent steps in [-3, 3] with flat runs, quantities with spikes.
fn generated() -> Vec<Trade> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut cents: i64 = 6_183_763;
    let mut out = Vec::new();
    for _ in 0..4000 {
        let r = next();
        if r % 4 != 0 {
            cents += (r >> 8) as i64 % 7 - 3;
        }
        let mut qty_milli = 1 + (r >> 20) % 200;
        if (r >> 40) % 25 == 0 {
            qty_milli *= 30;
        }
        out.push(Trade {
            price: format!("{}.{:02}", cents / 100, cents % 100),
            qty: format!("{}.{:03}", qty_milli / 1000, qty_milli % 1000),
        });
    }
    out
}

/// The `@trade` frames of a capture (`<recv_ns> <json>` lines, gzip), or `None` if absent.
fn real() -> Option<Vec<Trade>> {
    if !Path::new(REAL_TRADES).exists() {
        eprintln!("note: {REAL_TRADES} is absent; only the generated series is checked");
        return None;
    }
    let file = std::fs::File::open(REAL_TRADES).unwrap();
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let mut out = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let Some((_, frame)) = line.split_once(' ') else {
            continue;
        };
        if !frame.contains("@trade") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(frame).unwrap();
        let field = |k: &str| v["data"][k].as_str().unwrap().to_owned();
        out.push(Trade {
            price: field("p"),
            qty: field("q"),
        });
    }
    assert!(out.len() > 1000, "only {} trades in {REAL_TRADES}", out.len());
    Some(out)
}

/// Runs a hot family over the trades, returning its score after each.
fn hot_scores(family: &mut impl Family, trades: &[Trade]) -> Vec<Option<f64>> {
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let tick = Tick {
                instrument: InstrumentId(0),
                venue: Venue::Binance,
                body: TickBody::Trade {
                    price: t.price.parse::<Price>().unwrap(),
                    qty: t.qty.parse::<Qty>().unwrap(),
                    aggressor: Side::Buy,
                },
                seq: i as u64,
                exchange_ns: 0,
                recv_ns: i as u64,
                stamp: Stamp(i as u64),
            };
            family.on_tick(&tick);
            family.score().map(|s| s.to_num::<f64>())
        })
        .collect()
}

fn assert_agree(what: &str, hot: &[Option<f64>], reference: &[Option<f64>]) {
    assert_eq!(hot.len(), reference.len());
    let mut opinions = 0;
    for (i, (h, r)) in hot.iter().zip(reference).enumerate() {
        match (h, r) {
            (None, None) => {}
            (Some(h), Some(r)) => {
                opinions += 1;
                assert!(
                    (h - r).abs() <= 1e-9 * r.abs().max(1.0),
                    "{what}: trade {i}: hot {h} vs reference {r}"
                );
            }
            _ => panic!("{what}: trade {i}: hot {h:?} vs reference {r:?}"),
        }
    }
    assert!(opinions > hot.len() / 2, "{what}: only {opinions} opinions");
}

fn clip(x: f64) -> f64 {
    x.clamp(-1.0, 1.0)
}

/// EMAs seeded with the first price, `ema += (p − ema) · 2 / (n + 1)`; opinion from trade `slow`.
fn momentum_reference(trades: &[Trade], p: MomentumParams) -> Vec<Option<f64>> {
    let (a_fast, a_slow) = (2.0 / (p.fast as f64 + 1.0), 2.0 / (p.slow as f64 + 1.0));
    let (mut fast, mut slow) = (0.0, 0.0);
    let mut out = Vec::new();
    for (i, t) in trades.iter().enumerate() {
        let price: f64 = t.price.parse().unwrap();
        if i == 0 {
            (fast, slow) = (price, price);
        } else {
            fast += (price - fast) * a_fast;
            slow += (price - slow) * a_slow;
        }
        let seen = i + 1;
        out.push((seen >= p.slow as usize).then(|| clip((fast - slow) / slow / (p.scale_bps as f64 / 1e4))));
    }
    out
}

/// `clip(−(p − mean) / sd / z_scale)` over the last `window` prices, population sd, 0 if sd = 0.
fn mean_rev_reference(trades: &[Trade], p: MeanRevParams) -> Vec<Option<f64>> {
    let prices: Vec<i64> = trades.iter().map(|t| raw(&t.price)).collect();
    let n = p.window as usize;
    let z_scale = p.z_scale.to_num::<f64>();
    (0..prices.len())
        .map(|t| {
            if t + 1 < n {
                return None;
            }
            let window = &prices[t + 1 - n..=t];
            let x: Vec<f64> = window.iter().map(|&v| (v - window[0]) as f64).collect();
            let mean = x.iter().sum::<f64>() / n as f64;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            if var == 0.0 {
                return Some(0.0);
            }
            let z = (x[n - 1] - mean) / var.sqrt();
            Some(clip(-z / z_scale))
        })
        .collect()
}

/// Donchian break confirmed by volume, scored by the age of the most recent break.
fn breakout_reference(trades: &[Trade], p: BreakoutParams) -> Vec<Option<f64>> {
    let prices: Vec<i64> = trades.iter().map(|t| raw(&t.price)).collect();
    let qty: Vec<i128> = trades.iter().map(|t| i128::from(raw(&t.qty))).collect();
    let (w, c, hold) = (p.window as usize, p.confirm as usize, p.hold as usize);
    // recent / c ≥ (bits / 2³²) · volume / w, as exact rationals.
    let mult_bits = i128::from(p.volume_mult.to_bits());
    let direction = |t: usize| -> i8 {
        if t < w {
            return 0;
        }
        let channel = &prices[t - w..t];
        let high = *channel.iter().max().unwrap();
        let low = *channel.iter().min().unwrap();
        let volume: i128 = qty[t - w..t].iter().sum();
        let recent: i128 = qty[t + 1 - c..=t].iter().sum();
        let confirmed = recent * w as i128 * (1 << 32) >= mult_bits * volume * c as i128;
        match (confirmed, prices[t] > high, prices[t] < low) {
            (true, true, _) => 1,
            (true, _, true) => -1,
            _ => 0,
        }
    };
    (0..prices.len())
        .map(|t| {
            if t < w {
                return None;
            }
            for age in 0..hold.min(t + 1) {
                let d = direction(t - age);
                if d != 0 {
                    return Some(d as f64 * (hold - age) as f64 / hold as f64);
                }
            }
            Some(0.0)
        })
        .collect()
}

fn check_all(series: &str, trades: &[Trade]) {
    for p in [
        MomentumParams {
            fast: 10,
            slow: 50,
            scale_bps: 1,
        },
        MomentumParams {
            fast: 3,
            slow: 20,
            scale_bps: 25,
        },
    ] {
        let hot = hot_scores(&mut Momentum::new(p), trades);
        assert_agree(
            &format!("{series} momentum {p:?}"),
            &hot,
            &momentum_reference(trades, p),
        );
    }
    for p in [
        MeanRevParams {
            window: 50,
            z_scale: Factor::from_num(2),
        },
        MeanRevParams {
            window: 7,
            z_scale: Factor::from_num(4),
        },
        MeanRevParams {
            window: 300,
            z_scale: "0.7".parse().unwrap(),
        },
    ] {
        let hot = hot_scores(&mut MeanRev::new(p), trades);
        assert_agree(
            &format!("{series} mean_rev {p:?}"),
            &hot,
            &mean_rev_reference(trades, p),
        );
    }
    for p in [
        BreakoutParams {
            window: 100,
            confirm: 10,
            volume_mult: Factor::from_num(1.5),
            hold: 20,
        },
        BreakoutParams {
            window: 20,
            confirm: 20,
            volume_mult: Factor::ONE,
            hold: 7,
        },
        BreakoutParams {
            window: 5,
            confirm: 1,
            volume_mult: Factor::ZERO,
            hold: 1,
        },
    ] {
        let hot = hot_scores(&mut Breakout::new(p), trades);
        let reference = breakout_reference(trades, p);
        let breaks = reference.iter().filter(|s| s.is_some_and(|s| s.abs() == 1.0)).count();
        assert!(breaks > 0, "{series} breakout {p:?}: the series never breaks out");
        assert_agree(&format!("{series} breakout {p:?}"), &hot, &reference);
    }
}

#[test]
fn families_match_their_references_on_a_generated_walk() {
    check_all("generated", &generated());
}

#[test]
fn families_match_their_references_on_real_btcusdt_trades() {
    if let Some(trades) = real() {
        check_all("btcusdt", &trades);
    }
}
