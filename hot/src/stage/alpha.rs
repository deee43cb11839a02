//! Alpha: the signal ensemble. Ticks in; signals and order intents out.
//!
//! Each family (momentum today; mean reversion, breakout and sentiment arrive with the Alpha
//! issue) implements [`Family`] and keeps O(1) state per instrument. The ensemble score is the
//! weighted mean of the families that currently have an opinion: a family that is warming up or
//! not yet built is left out and the remaining weights are renormalised, so a single live family
//! is not diluted by weights that belong to absent ones.
//!
//! Sizing is by target: when |score| crosses `entry_threshold` Alpha targets a full
//! `order_qty` position in the signal's direction; below `exit_threshold` it targets flat; in
//! between it holds. Risk turns targets into orders, so Alpha never needs to see fills.
//!
//! All arithmetic is fixed-point (`fixed`), so a replay gives bit-identical signals.

use fixed::types::I64F64;

use crate::ids::InstrumentId;
use crate::num::{Qty, SignedQty};
use crate::records::{Factor, OrderIntent, Origin, Signal, SignalSide, Sizing, Tick, TickBody, Touch};

/// The families of the ensemble, in the order of `alpha.weights`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyKind {
    /// Trend following.
    Momentum = 0,
    /// Mean reversion.
    MeanRev = 1,
    /// Channel breakout.
    Breakout = 2,
    /// Externally supplied sentiment.
    Sentiment = 3,
}

impl FamilyKind {
    /// Number of families.
    pub const COUNT: usize = 4;
    /// All families.
    pub const ALL: [FamilyKind; 4] = [
        FamilyKind::Momentum,
        FamilyKind::MeanRev,
        FamilyKind::Breakout,
        FamilyKind::Sentiment,
    ];

    /// The key used in `alpha.weights`.
    pub const fn name(self) -> &'static str {
        match self {
            FamilyKind::Momentum => "momentum",
            FamilyKind::MeanRev => "mean_rev",
            FamilyKind::Breakout => "breakout",
            FamilyKind::Sentiment => "sentiment",
        }
    }
}

/// Ensemble weights, one per family, non-negative and summing to one (validated in config).
pub type Weights = [Factor; FamilyKind::COUNT];

/// One signal family for one instrument.
pub trait Family {
    /// Folds a tick into the family's state.
    fn on_tick(&mut self, tick: &Tick);
    /// The current score in [-1, 1], or `None` while the family has no opinion.
    fn score(&self) -> Option<Factor>;
}

/// Momentum parameters (`alpha.momentum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MomentumParams {
    /// Fast EMA length in trades.
    pub fast: u32,
    /// Slow EMA length in trades; also the warm-up.
    pub slow: u32,
    /// Relative EMA spread, in basis points, that maps to a full score of ±1.
    pub scale_bps: u32,
}

/// Fast/slow EMA spread of trade prices, relative to the slow EMA, scaled and clipped to ±1:
/// `score = clip(((ema_fast − ema_slow) / ema_slow) / (scale_bps / 10⁴), −1, 1)`,
/// with `ema += (price − ema) · 2 / (n + 1)` per trade. Quotes are ignored.
#[derive(Clone, Copy, Debug)]
pub struct Momentum {
    alpha_fast: I64F64,
    alpha_slow: I64F64,
    scale: I64F64,
    fast: I64F64,
    slow: I64F64,
    seen: u32,
    warmup: u32,
}

impl Momentum {
    /// A fresh indicator.
    pub fn new(p: MomentumParams) -> Self {
        let two = I64F64::from_num(2);
        Self {
            alpha_fast: two / I64F64::from_num(p.fast.max(1) + 1),
            alpha_slow: two / I64F64::from_num(p.slow.max(1) + 1),
            scale: I64F64::from_num(p.scale_bps.max(1)) / I64F64::from_num(10_000),
            fast: I64F64::ZERO,
            slow: I64F64::ZERO,
            seen: 0,
            warmup: p.slow.max(1),
        }
    }
}

impl Family for Momentum {
    #[inline]
    fn on_tick(&mut self, tick: &Tick) {
        let TickBody::Trade { price, .. } = tick.body else {
            return;
        };
        // Work in whole quote units so the i64 integer part of I64F64 cannot overflow.
        let p = I64F64::from_num(price.raw()) / I64F64::from_num(crate::num::ONE);
        if self.seen == 0 {
            self.fast = p;
            self.slow = p;
        } else {
            self.fast += (p - self.fast) * self.alpha_fast;
            self.slow += (p - self.slow) * self.alpha_slow;
        }
        self.seen = self.seen.saturating_add(1);
    }

    #[inline]
    fn score(&self) -> Option<Factor> {
        if self.seen < self.warmup || self.slow <= I64F64::ZERO {
            return None;
        }
        let rel = (self.fast - self.slow) / self.slow;
        let s = (rel / self.scale).clamp(I64F64::NEG_ONE, I64F64::ONE);
        Some(Factor::from_num(s))
    }
}

/// Validated Alpha parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlphaParams {
    /// Ensemble weights.
    pub weights: Weights,
    /// |score| at or above which Alpha targets a position.
    pub entry: Factor,
    /// |score| below which Alpha targets flat.
    pub exit: Factor,
    /// Momentum parameters.
    pub momentum: MomentumParams,
    /// Full-signal target size per instrument, indexed by [`InstrumentId`].
    pub order_qty: Vec<Qty>,
}

/// Per-instrument state.
#[derive(Clone, Copy, Debug)]
struct Instrument {
    momentum: Momentum,
    touch: Touch,
    /// -1, 0 or +1: the direction of the current target.
    target: i8,
}

/// Something Alpha produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaOut {
    /// The ensemble view after a trade.
    Signal(Signal),
    /// A change of target position.
    Intent(OrderIntent),
}

/// What reaches Alpha.
#[derive(Clone, Copy, Debug)]
pub enum AlphaInput {
    /// A market-data tick.
    Tick(Tick),
    /// New ensemble weights, applied between two ticks.
    Weights(Weights),
}

/// The Alpha stage's state.
#[derive(Debug)]
pub struct Alpha {
    params: AlphaParams,
    instruments: Vec<Instrument>,
}

impl Alpha {
    /// Builds the stage for `params.order_qty.len()` instruments.
    pub fn new(params: AlphaParams) -> Self {
        let one = Instrument {
            momentum: Momentum::new(params.momentum),
            touch: Touch::default(),
            target: 0,
        };
        let instruments = vec![one; params.order_qty.len()];
        Self { params, instruments }
    }

    /// Processes one input; produces up to one signal and one intent through `out`.
    #[inline]
    pub fn process(&mut self, input: AlphaInput, out: &mut impl FnMut(AlphaOut)) {
        match input {
            AlphaInput::Tick(tick) => self.on_tick(&tick, out),
            AlphaInput::Weights(w) => self.params.weights = w,
        }
    }

    fn on_tick(&mut self, tick: &Tick, out: &mut impl FnMut(AlphaOut)) {
        let Some(inst) = self.instruments.get_mut(tick.instrument.index()) else {
            return;
        };
        match tick.body {
            TickBody::Quote { bid, ask, .. } => {
                inst.touch.bid = bid;
                inst.touch.ask = ask;
                return;
            }
            TickBody::Trade { price, .. } => inst.touch.last = price,
        }
        inst.momentum.on_tick(tick);
        let scores = [inst.momentum.score(), None, None, None];
        let Some(score) = ensemble(&self.params.weights, &scores) else {
            return;
        };
        let side = if score > Factor::ZERO {
            SignalSide::Buy
        } else if score < Factor::ZERO {
            SignalSide::Sell
        } else {
            SignalSide::Flat
        };
        let confidence = score.abs();
        out(AlphaOut::Signal(Signal {
            instrument: tick.instrument,
            score,
            side,
            confidence,
            ts_ns: tick.recv_ns,
            tick_seq: tick.seq,
            stamp: tick.stamp,
        }));
        let target = if confidence >= self.params.entry {
            if score > Factor::ZERO { 1 } else { -1 }
        } else if confidence < self.params.exit {
            0
        } else {
            inst.target
        };
        if target != inst.target {
            inst.target = target;
            let qty = self.params.order_qty[tick.instrument.index()];
            out(AlphaOut::Intent(OrderIntent {
                instrument: tick.instrument,
                venue: tick.venue,
                sizing: Sizing::Target(match target {
                    0 => SignedQty::ZERO,
                    t => qty.signed(t > 0),
                }),
                limit: None,
                touch: inst.touch,
                origin: Origin::Alpha,
                client_id: 0,
                score,
                ts_ns: tick.recv_ns,
                stamp: tick.stamp,
            }));
        }
    }

    /// The last touch Alpha saw for an instrument.
    pub fn touch(&self, id: InstrumentId) -> Option<Touch> {
        self.instruments.get(id.index()).map(|i| i.touch)
    }

    /// Current weights.
    pub fn weights(&self) -> &Weights {
        &self.params.weights
    }
}

/// The weighted mean of the scores that are present, or `None` if none is (or all present
/// families have zero weight).
pub fn ensemble(weights: &Weights, scores: &[Option<Factor>; FamilyKind::COUNT]) -> Option<Factor> {
    let mut num = I64F64::ZERO;
    let mut den = I64F64::ZERO;
    for (w, s) in weights.iter().zip(scores) {
        if let Some(s) = s {
            let w = I64F64::from_num(*w);
            num += w * I64F64::from_num(*s);
            den += w;
        }
    }
    if den <= I64F64::ZERO {
        return None;
    }
    Some(Factor::from_num((num / den).clamp(I64F64::NEG_ONE, I64F64::ONE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Venue;
    use crate::num::Price;
    use crate::records::{Side, Stamp};

    fn trade(price: i64, seq: u64) -> Tick {
        Tick {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            body: TickBody::Trade {
                price: Price::from_units(price).unwrap(),
                qty: Qty::from_units(1).unwrap(),
                aggressor: Side::Buy,
            },
            seq,
            exchange_ns: 0,
            recv_ns: seq,
            stamp: Stamp(seq),
        }
    }

    fn params() -> AlphaParams {
        AlphaParams {
            weights: [
                Factor::from_num(0.4),
                Factor::from_num(0.3),
                Factor::from_num(0.3),
                Factor::ZERO,
            ],
            entry: Factor::from_num(0.5),
            exit: Factor::from_num(0.1),
            momentum: MomentumParams {
                fast: 2,
                slow: 4,
                scale_bps: 10,
            },
            order_qty: vec!["0.01".parse().unwrap()],
        }
    }

    #[test]
    fn rising_prices_give_a_buy_target_then_flat_when_momentum_fades() {
        let mut alpha = Alpha::new(params());
        let mut out = Vec::new();
        for (i, p) in [100, 100, 100, 100, 101, 102, 103].into_iter().enumerate() {
            alpha.process(AlphaInput::Tick(trade(p, i as u64)), &mut |o| out.push(o));
        }
        let intents: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                AlphaOut::Intent(i) => Some(i.sizing),
                AlphaOut::Signal(_) => None,
            })
            .collect();
        assert_eq!(intents, vec![Sizing::Target("0.01".parse().unwrap())]);
        // Signals start after the slow warm-up (4 trades) and the last one is a strong buy.
        let signals: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                AlphaOut::Signal(s) => Some(*s),
                AlphaOut::Intent(_) => None,
            })
            .collect();
        assert_eq!(signals.len(), 4);
        assert_eq!(signals.last().unwrap().side, SignalSide::Buy);
        assert_eq!(signals.last().unwrap().score, Factor::ONE);
        out.clear();
        for (i, p) in std::iter::repeat_n(103, 30).enumerate() {
            alpha.process(AlphaInput::Tick(trade(p, 100 + i as u64)), &mut |o| out.push(o));
        }
        assert!(
            out.iter()
                .any(|o| matches!(o, AlphaOut::Intent(i) if i.sizing == Sizing::Target(crate::num::SignedQty::ZERO)))
        );
    }

    #[test]
    fn ensemble_renormalises_over_present_families() {
        let w = params().weights;
        let half = Factor::from_num(0.5);
        assert_eq!(ensemble(&w, &[Some(half), None, None, None]), Some(half));
        assert_eq!(ensemble(&w, &[None, None, None, Some(half)]), None);
        // Weights 0.5 and 0.25 are exact in binary: (0.5 - 0.25) / 0.75 = 1/3, truncated.
        let w = [
            Factor::from_num(0.5),
            Factor::from_num(0.25),
            Factor::from_num(0.25),
            Factor::ZERO,
        ];
        let third = ensemble(&w, &[Some(Factor::ONE), Some(-Factor::ONE), None, None]).unwrap();
        assert!((third - Factor::from_num(1.0 / 3.0)).abs() <= Factor::DELTA, "{third}");
    }
}
