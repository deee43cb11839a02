//! The Alpha families against textbook references.
//!
//! Each reference below is written from the definition in the family's doc comment, separately
//! from the hot code: it recomputes every window from scratch at every trade (no running sums,
//! no deques, no state machine), and uses `f64` wherever the definition is a real number.
//! The series are a generated random walk (always) and the real Binance trades of every spot
//! capture `*.gz` under `../shared/data/hftbacktest/spot/` (BTCUSDT and ETHUSDT at the time of
//! writing; each is checked when present, and the test notes it and checks only the generated
//! series when the folder is absent).
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
//! - Sentiment is driven by time, not by prices: external scores arrive at seeded points of each
//!   series (some a little before the trade that follows, some after it), and the reference is
//!   `s₀ · 2^(−(t − t₀)/half_life)` in `f64` with `powf`, no opinion before the first score or
//!   from 16 half-lives on (an integer comparison, so the opinion must agree exactly). `s₀` is
//!   the score as the hot side holds it (`I32F32`, what the cold side delivers); the hot decay
//!   is integer fixed point (see `decay`), within 2.4e-10 of the exact value. The unit test
//!   `sentiment_decay_matches_powers_of_two` in `hot/src/stage/alpha.rs` checks `decay` itself
//!   over edge and random elapsed times; this one checks the family as Alpha drives it, over the
//!   series' real receive times.

use std::io::{BufRead, BufReader};
use std::path::Path;

use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Factor, Side, Stamp, Tick, TickBody};
use maxx_hot::stage::alpha::{
    Breakout, BreakoutParams, Family, MeanRev, MeanRevParams, Momentum, MomentumParams, Sentiment, SentimentParams,
};

/// The folder of real spot captures (`<recv_ns> <frame>` lines, gzip), next to the workspace.
const SPOT_CAPTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/hftbacktest/spot");

/// One trade: price and quantity as decimal text, as a venue sends them, and its receive time.
struct Trade {
    price: String,
    qty: String,
    recv_ns: u64,
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
    let mut recv_ns: u64 = 1_723_161_254_000_000_000;
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
        // Gaps of up to ~8 ms between trades, and now and then a quiet second.
        recv_ns += 1 + (r >> 48) % 8_000_000 + if (r >> 45) % 64 == 0 { 1_000_000_000 } else { 0 };
        out.push(Trade {
            price: format!("{}.{:02}", cents / 100, cents % 100),
            qty: format!("{}.{:03}", qty_milli / 1000, qty_milli % 1000),
            recv_ns,
        });
    }
    out
}

/// The `@trade` frames of every spot capture, by file name; empty (with a note) if the folder
/// is absent.
fn real() -> Vec<(String, Vec<Trade>)> {
    let Ok(dir) = std::fs::read_dir(SPOT_CAPTURES) else {
        eprintln!("note: {SPOT_CAPTURES} is absent; only the generated series is checked");
        return Vec::new();
    };
    let mut paths: Vec<_> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "gz"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), trades_of(p)))
        .collect()
}

/// The `@trade` frames of one capture.
fn trades_of(path: &Path) -> Vec<Trade> {
    let file = std::fs::File::open(path).unwrap();
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let mut out = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if line.starts_with('#') {
            continue;
        }
        let Some((recv_ns, frame)) = line.split_once(' ') else {
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
            recv_ns: recv_ns.parse().unwrap(),
        });
    }
    assert!(out.len() > 1000, "only {} trades in {}", out.len(), path.display());
    out
}

/// Trade `i` of a series as the hot side sees it.
fn tick(i: usize, t: &Trade) -> Tick {
    Tick {
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: t.price.parse::<Price>().unwrap(),
            qty: t.qty.parse::<Qty>().unwrap(),
            aggressor: Side::Buy,
        },
        seq: i as u64,
        exchange_ns: 0,
        recv_ns: t.recv_ns,
        stamp: Stamp(i as u64),
    }
}

/// Runs a hot family over the trades, returning its score after each.
fn hot_scores(family: &mut impl Family, trades: &[Trade]) -> Vec<Option<f64>> {
    trades
        .iter()
        .enumerate()
        .map(|(i, t)| {
            family.on_tick(&tick(i, t));
            family.score().map(|s| s.to_num::<f64>())
        })
        .collect()
}

/// Checks agreement trade by trade; returns how many trades had an opinion.
fn agree(what: &str, hot: &[Option<f64>], reference: &[Option<f64>]) -> usize {
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
    opinions
}

fn assert_agree(what: &str, hot: &[Option<f64>], reference: &[Option<f64>]) {
    let opinions = agree(what, hot, reference);
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

/// An external sentiment score reaching the family just before trade `at`, stamped `ts_ns`.
struct Arrival {
    at: usize,
    score: Factor,
    ts_ns: u64,
}

/// Seeded arrivals: about one per 150 trades; scores ±1 or uniform in [-1, 1] (to 10⁻⁶), stamped
/// up to two half-lives before the trade, or after it (the trade is then older than the score),
/// or exactly 16 half-lives or one nanosecond less before it (the edge of forgetting).
fn arrivals(trades: &[Trade], half_life_ns: u64, seed: u64) -> Vec<Arrival> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for (at, t) in trades.iter().enumerate() {
        let r = next();
        if r % 150 != 0 {
            continue;
        }
        let score = match (r >> 8) % 8 {
            0 => Factor::ONE,
            1 => -Factor::ONE,
            _ => Factor::from_num(((r >> 16) % 2_000_001) as f64 / 1e6 - 1.0),
        };
        let offset = next() % (2 * half_life_ns);
        let ts_ns = match (r >> 12) % 8 {
            0 | 1 => t.recv_ns + offset,
            2 => t.recv_ns - 16 * half_life_ns,
            3 => t.recv_ns - (16 * half_life_ns - 1),
            _ => t.recv_ns.saturating_sub(offset),
        };
        out.push(Arrival { at, score, ts_ns });
    }
    out
}

/// `s₀ · 2^(−(t − t₀)/half_life)` for the last score `s₀` received at `t₀`, with `t` the trade's
/// receive time (a trade older than the score counts as `t₀`); no opinion before any score or
/// once 16 half-lives have passed.
fn sentiment_reference(trades: &[Trade], p: SentimentParams, arrivals: &[Arrival]) -> Vec<Option<f64>> {
    let h = p.half_life_ns;
    let mut last: Option<(f64, u64)> = None;
    let mut pending = arrivals.iter().peekable();
    let mut out = Vec::new();
    for (i, t) in trades.iter().enumerate() {
        while let Some(a) = pending.next_if(|a| a.at == i) {
            last = Some((a.score.to_num::<f64>(), a.ts_ns));
        }
        out.push(last.and_then(|(s0, t0)| {
            let elapsed = t.recv_ns.saturating_sub(t0);
            (elapsed < 16 * h).then(|| s0 * 2f64.powf(-(elapsed as f64) / h as f64))
        }));
    }
    out
}

/// The hot sentiment family given the same arrivals and trades.
fn sentiment_hot(trades: &[Trade], p: SentimentParams, arrivals: &[Arrival]) -> Vec<Option<f64>> {
    let mut family = Sentiment::new(p);
    let mut pending = arrivals.iter().peekable();
    let mut out = Vec::new();
    for (i, t) in trades.iter().enumerate() {
        while let Some(a) = pending.next_if(|a| a.at == i) {
            family.set(a.score, a.ts_ns);
        }
        family.on_tick(&tick(i, t));
        out.push(family.score().map(|s| s.to_num::<f64>()));
    }
    out
}

fn check_sentiment(series: &str, trades: &[Trade]) {
    let (mut opinions, mut forgotten) = (0, 0);
    for (seed, half_life_ns) in [(1, 1), (2, 50_000_000), (3, 2_000_000_000), (4, 30_000_000_000)] {
        let p = SentimentParams { half_life_ns };
        let arrivals = arrivals(trades, half_life_ns, seed);
        assert!(arrivals.len() > 10, "{series}: only {} arrivals", arrivals.len());
        let reference = sentiment_reference(trades, p, &arrivals);
        opinions += agree(
            &format!("{series} sentiment {p:?}"),
            &sentiment_hot(trades, p, &arrivals),
            &reference,
        );
        forgotten += reference[arrivals[0].at..].iter().filter(|s| s.is_none()).count();
    }
    // Both sides of the 16-half-life edge are exercised.
    assert!(opinions > trades.len(), "{series}: only {opinions} sentiment opinions");
    assert!(forgotten > 0, "{series}: no sentiment score was ever forgotten");
}

fn check_all(series: &str, trades: &[Trade]) {
    check_sentiment(series, trades);
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
fn families_match_their_references_on_real_spot_trades() {
    let captures = real();
    for (name, trades) in &captures {
        check_all(name, trades);
    }
    if !captures.is_empty() {
        eprintln!(
            "checked {} captures: {}",
            captures.len(),
            captures.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
}
