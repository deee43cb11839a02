//! Alpha: the signal ensemble. Ticks in; signals and order intents out.
//!
//! Each family (momentum, mean reversion, breakout and sentiment) implements [`Family`], does
//! O(1) work per tick and allocates only at construction (the windowed families own fixed rings
//! sized by their `window`). Sentiment is fed from outside: the cold side sends a score in
//! [-1, 1] as [`AlphaInput::Sentiment`] between two ticks, and it decays over a half-life,
//! evaluated at each following trade of its instrument. The ensemble score is the
//! weighted mean of the families that currently have an opinion: a family that is warming up or
//! not yet built is left out and the remaining weights are renormalised, so a single live family
//! is not diluted by weights that belong to absent ones.
//!
//! Sizing is by target: when |score| crosses `entry_threshold` Alpha targets a full
//! `order_qty` position in the signal's direction; below `exit_threshold` it targets flat; in
//! between it holds. Risk turns targets into orders, so Alpha never needs to see fills.
//!
//! Every intent carries a volatility stop ([`VolStop`]): the distance from entry to the
//! protective exit the strategy implies, `max(vol_mult × EWMA |Δ trade price|, min_ticks ×
//! tick_size)`. Risk measures per-trade risk as quantity × this distance and caps Alpha's size so
//! that it stays within `risk.max_trade_risk_pct` of the balance.
//!
//! All arithmetic is fixed-point (`fixed`), so a replay gives bit-identical signals.

use fixed::types::I64F64;

use crate::ids::InstrumentId;
use crate::num::{Price, Qty, SignedQty};
use crate::records::{Factor, Mix, OrderIntent, Origin, Signal, SignalSide, Sizing, Tick, TickBody, Tif, Touch};

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
    pub const COUNT: usize = crate::records::FAMILIES;
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

/// Mean-reversion parameters (`alpha.mean_rev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeanRevParams {
    /// Rolling window in trades, in [2, [`Self::MAX_WINDOW`]]; also the warm-up.
    pub window: u32,
    /// |z-score| that maps to a full score of ±1 (> 0).
    pub z_scale: Factor,
}

impl MeanRevParams {
    /// The longest window: the fixed-point z-score needs `window ≤ 2¹⁷` (see `z_bits`).
    pub const MAX_WINDOW: u32 = 100_000;
}

/// Z-score of the trade price against the mean and population standard deviation of the last
/// `window` trade prices (the current trade included), negated, scaled and clipped to ±1:
/// `z = (p − mean) / sd`, `score = clip(−z / z_scale, −1, 1)`; a price above the mean sells.
///
/// The window's prices sit in a ring allocated at construction. Running sums are exact
/// integers: `S = Σd` and `Q = Σd²` over `d = price − anchor` in raw `Price` units (the anchor
/// is the first trade's price, which keeps `d` small; variance and `p − mean` do not depend on
/// it). With `n` the window length, `n·(p − mean) = n·d − S` and `n²·var = n·Q − S²` are exact,
/// so `z = (n·d − S) / √(n·Q − S²)` and the only rounding is the integer square root of the
/// (normalised) denominator and one fixed-point division, about 2⁻⁴⁶ relative.
/// A window of identical prices (`sd = 0`) scores 0; a window whose sums would overflow `i128`
/// (prices some 10¹¹ units apart) has no opinion. Quotes are ignored.
#[derive(Clone, Debug)]
pub struct MeanRev {
    ring: Box<[i64]>,
    anchor: i64,
    sum: i128,
    sum_sq: i128,
    last: i64,
    seen: u64,
    z_scale: I64F64,
}

impl MeanRev {
    /// A fresh indicator; allocates the window's ring.
    pub fn new(p: MeanRevParams) -> Self {
        let z_scale = I64F64::from_num(p.z_scale);
        Self {
            ring: vec![0; p.window.clamp(2, MeanRevParams::MAX_WINDOW) as usize].into_boxed_slice(),
            anchor: 0,
            sum: 0,
            sum_sq: 0,
            last: 0,
            seen: 0,
            z_scale: if z_scale > I64F64::ZERO { z_scale } else { I64F64::ONE },
        }
    }

    fn window(&self) -> u64 {
        self.ring.len() as u64
    }
}

/// `num / √den` as `I64F64` bits, for `den > 0` and `|num| ≤ √(n·den)` with `n ≤ 2¹⁷`
/// (Samuelson's inequality bounds |z| by √(n − 1), which keeps every shift below in range).
///
/// `den` is shifted by an even amount so it has 93 or 94 significant bits; its floor square root
/// then has 47, and `num` is shifted by half as much, so the quotient keeps about 46 bits.
fn z_bits(num: i128, den: u128) -> i128 {
    let bits = 128 - den.leading_zeros() as i32;
    let mut shift = 94 - bits;
    if shift % 2 != 0 {
        shift -= 1;
    }
    let (den, num) = if shift >= 0 {
        (den << shift, num << (shift / 2))
    } else {
        (den >> -shift, num >> (-shift / 2))
    };
    let root = den.isqrt() as i128;
    (num << 64) / root
}

impl Family for MeanRev {
    #[inline]
    fn on_tick(&mut self, tick: &Tick) {
        let TickBody::Trade { price, .. } = tick.body else {
            return;
        };
        let raw = price.raw();
        if self.seen == 0 {
            self.anchor = raw;
        }
        let slot = (self.seen % self.window()) as usize;
        if self.seen >= self.window() {
            let old = i128::from(self.ring[slot]) - i128::from(self.anchor);
            // Wrapping add and subtract are exact modulo 2¹²⁸, so the sums are exactly the
            // window's whenever the window's true sums fit, whatever came before.
            self.sum = self.sum.wrapping_sub(old);
            self.sum_sq = self.sum_sq.wrapping_sub(old.wrapping_mul(old));
        }
        let d = i128::from(raw) - i128::from(self.anchor);
        self.sum = self.sum.wrapping_add(d);
        self.sum_sq = self.sum_sq.wrapping_add(d.wrapping_mul(d));
        self.ring[slot] = raw;
        self.last = raw;
        self.seen += 1;
    }

    #[inline]
    fn score(&self) -> Option<Factor> {
        let n = self.window();
        if self.seen < n {
            return None;
        }
        let n = i128::from(n);
        let d = i128::from(self.last) - i128::from(self.anchor);
        let num = n.checked_mul(d)?.checked_sub(self.sum)?;
        let den = n
            .checked_mul(self.sum_sq)?
            .checked_sub(self.sum.checked_mul(self.sum)?)?;
        if den <= 0 {
            // Every price in the window is the same (den is never negative: Cauchy–Schwarz).
            return Some(Factor::ZERO);
        }
        let z = I64F64::from_bits(z_bits(num, den as u128));
        let s = (-z).saturating_div(self.z_scale).clamp(I64F64::NEG_ONE, I64F64::ONE);
        Some(Factor::from_num(s))
    }
}

/// Breakout parameters (`alpha.breakout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakoutParams {
    /// Channel length in trades (at least 2); the family has an opinion from trade `window + 1`.
    pub window: u32,
    /// Number of most recent trades whose volume confirms a break, in [1, window].
    pub confirm: u32,
    /// Multiple of the channel's average volume the confirming trades must reach (>= 0).
    pub volume_mult: Factor,
    /// Trades over which the score of a break decays linearly to 0 (at least 1).
    pub hold: u32,
}

/// A fixed-capacity monotonic deque of `(trade number, price)`: the front is the maximum
/// (`MAX = true`) or minimum of the prices pushed since the last `expire`. O(1) amortised,
/// no allocation after construction.
#[derive(Clone, Debug)]
struct Extremum<const MAX: bool> {
    buf: Box<[(u64, i64)]>,
    head: usize,
    len: usize,
}

impl<const MAX: bool> Extremum<MAX> {
    fn new(cap: usize) -> Self {
        Self {
            buf: vec![(0, 0); cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn at(&self, i: usize) -> usize {
        (self.head + i) % self.buf.len()
    }

    fn front(&self) -> Option<i64> {
        (self.len > 0).then(|| self.buf[self.head].1)
    }

    /// Drops entries with a trade number at or below `oldest_gone`.
    fn expire(&mut self, oldest_gone: u64) {
        while self.len > 0 && self.buf[self.head].0 <= oldest_gone {
            self.head = (self.head + 1) % self.buf.len();
            self.len -= 1;
        }
    }

    /// Pushes a trade, first dropping the entries it dominates. The caller expires before
    /// pushing, so at most `cap` entries (one window) are ever held.
    fn push(&mut self, n: u64, price: i64) {
        while self.len > 0 {
            let back = self.buf[self.at(self.len - 1)].1;
            let dominated = if MAX { back <= price } else { back >= price };
            if !dominated {
                break;
            }
            self.len -= 1;
        }
        debug_assert!(self.len < self.buf.len());
        let slot = self.at(self.len);
        self.buf[slot] = (n, price);
        self.len += 1;
    }
}

/// Donchian-channel breakout confirmed by volume. For each trade `t` with price `p`, once
/// `window` trades precede it:
///
/// - `high`, `low`: the highest and lowest price of the `window` trades before `t`;
/// - `recent`: the quantity traded in the last `confirm` trades, `t` included;
/// - `volume`: the quantity traded in the `window` trades before `t`;
/// - confirmed when `recent / confirm ≥ volume_mult · volume / window`, compared exactly as
///   `recent · window · 2³² ≥ bits(volume_mult) · volume · confirm` in `i128`
///   (`volume_mult` is `I32F32`, whose bits are the value times 2³²);
/// - `p > high` and confirmed starts an up break (direction +1) at age 0, `p < low` and
///   confirmed a down break (−1); any other trade ages the current break by one;
/// - `score = direction · (hold − age) / hold` while `age < hold`, else 0 (the break is over).
///
/// A new break replaces the current one. Prices and quantities stay exact integers; the
/// score is the only division. Quotes are ignored.
#[derive(Clone, Debug)]
pub struct Breakout {
    qty: Box<[i64]>,
    high: Extremum<true>,
    low: Extremum<false>,
    volume: i128,
    recent: i128,
    confirm: u64,
    volume_mult_bits: i128,
    hold: u32,
    direction: i8,
    age: u32,
    seen: u64,
}

impl Breakout {
    /// A fresh indicator; allocates the window's ring and deques.
    pub fn new(p: BreakoutParams) -> Self {
        let window = p.window.max(2) as usize;
        Self {
            qty: vec![0; window].into_boxed_slice(),
            high: Extremum::new(window),
            low: Extremum::new(window),
            volume: 0,
            recent: 0,
            confirm: u64::from(p.confirm.clamp(1, window as u32)),
            volume_mult_bits: i128::from(p.volume_mult.max(Factor::ZERO).to_bits()),
            hold: p.hold.max(1),
            direction: 0,
            age: 0,
            seen: 0,
        }
    }

    fn window(&self) -> u64 {
        self.qty.len() as u64
    }
}

impl Family for Breakout {
    #[inline]
    fn on_tick(&mut self, tick: &Tick) {
        let TickBody::Trade { price, qty, .. } = tick.body else {
            return;
        };
        let (t, w) = (self.seen, self.window());
        let (p, q) = (price.raw(), i128::from(qty.raw()));
        // Read the quantities leaving both sums before this trade overwrites its slot.
        let leaving_window = if t >= w {
            i128::from(self.qty[(t % w) as usize])
        } else {
            0
        };
        let leaving_recent = if t >= self.confirm {
            i128::from(self.qty[((t - self.confirm) % w) as usize])
        } else {
            0
        };
        self.recent += q - leaving_recent;
        if t >= w {
            // Saturating: only absurd quantities (near i64::MAX raw) could reach the bounds.
            let lhs = self.recent.saturating_mul(i128::from(w)).saturating_mul(1 << 32);
            let rhs = self
                .volume_mult_bits
                .saturating_mul(self.volume)
                .saturating_mul(i128::from(self.confirm));
            let confirmed = lhs >= rhs;
            let up = self.high.front().is_some_and(|h| p > h);
            let down = self.low.front().is_some_and(|l| p < l);
            if confirmed && (up || down) {
                self.direction = if up { 1 } else { -1 };
                self.age = 0;
            } else if self.direction != 0 {
                self.age += 1;
                if self.age >= self.hold {
                    self.direction = 0;
                    self.age = 0;
                }
            }
            self.high.expire(t - w);
            self.low.expire(t - w);
        }
        self.volume += q - leaving_window;
        self.qty[(t % w) as usize] = qty.raw();
        self.high.push(t, p);
        self.low.push(t, p);
        self.seen += 1;
    }

    #[inline]
    fn score(&self) -> Option<Factor> {
        if self.seen <= self.window() {
            return None;
        }
        if self.direction == 0 {
            return Some(Factor::ZERO);
        }
        let left = I64F64::from_num(self.hold - self.age) / I64F64::from_num(self.hold);
        Some(Factor::from_num(if self.direction > 0 { left } else { -left }))
    }
}

/// Sentiment parameters (`alpha.sentiment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentimentParams {
    /// Time in which an external score halves, in ns (> 0; 0 is taken as 1).
    pub half_life_ns: u64,
}

/// Whole half-lives after which a sentiment score is forgotten: by then it has shrunk below
/// 2⁻¹⁶ of itself.
pub const SENTIMENT_LIFETIME: u64 = 16;

/// 1.0 in unsigned Q63 fixed point (63 fraction bits), the format of [`decay`]'s internals.
const ONE_Q63: u64 = 1 << 63;

/// ln 2 in unsigned Q64, rounded to nearest.
const LN2_Q64: u64 = 0xB172_17F7_D1CF_79AC;

/// `2^(−j/16)` for j = 0..15 in Q63, rounded to nearest (computed with 200-bit arithmetic;
/// `decay_table_holds_sixteenth_powers_of_one_half` re-derives them).
const POW2_NEG_SIXTEENTHS_Q63: [u64; 16] = [
    0x8000_0000_0000_0000,
    0x7A92_BE8A_9243_6616,
    0x7560_6373_EE92_1C97,
    0x7066_6F76_154A_7089,
    0x6BA2_7E65_6B4E_B57A,
    0x6712_460A_8FC2_4072,
    0x62B3_9508_AA83_6D6F,
    0x5E84_51CF_AC06_1B5F,
    0x5A82_7999_FCEF_3242,
    0x56AC_1F75_2150_A563,
    0x52FF_6B54_D8A8_9C75,
    0x4F7A_9930_48D0_88D7,
    0x4C1B_F828_C6DC_54B8,
    0x48E1_E9B9_D588_E19B,
    0x45CA_E0F1_F545_EB73,
    0x42D5_61B3_E624_3D8A,
];

#[inline]
fn mul_q63(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) >> 63) as u64
}

/// `2^(−f)` in Q63 for a fraction `f = frac / 2⁶⁴` in [0, 1).
///
/// The top four bits of `f` pick `2^(−j/16)` from a table; the rest, `g < 1/16`, gives
/// `2^(−g) = e^(−x)` with `x = g·ln 2 < 0.0434`, summed as the Taylor series to `x⁶/6!` in
/// Horner form. The first omitted term is below `x⁷/7! < 6·10⁻¹⁴`; each of the eight rounded
/// Q63 steps adds at most 2⁻⁶³.
#[inline]
fn pow2_neg_frac_q63(frac: u64) -> u64 {
    let j = (frac >> 60) as usize;
    let g = frac & ((1 << 60) - 1);
    // Q64 × Q64 = Q128; shifting by 65 leaves Q63.
    let x = ((u128::from(g) * u128::from(LN2_Q64)) >> 65) as u64;
    // e^(−x) = 1 − x(1 − x/2(1 − x/3(1 − x/4(1 − x/5(1 − x/6))))); every partial value is in
    // (0, 1], so nothing leaves Q63's range.
    let mut t = ONE_Q63;
    for n in (1..=6u64).rev() {
        t = ONE_Q63 - mul_q63(x, t) / n;
    }
    mul_q63(POW2_NEG_SIXTEENTHS_Q63[j], t)
}

/// `score · 2^(−elapsed/half_life)`, or `None` once [`SENTIMENT_LIFETIME`] half-lives have
/// passed. Integer and fixed-point only, so it is bit-identical everywhere.
///
/// Whole half-lives `k = elapsed / half_life` are a right shift; the remaining fraction
/// `f = (elapsed mod half_life) / half_life` is taken to 64 bits, and `2^(−f)` is a table entry
/// `2^(−j/16)` (the top four bits of `f`) times `e^(−x)` for the rest (`x < ln 2 / 16`), summed
/// as a degree-6 Taylor series, all in 63-bit fixed point. The product is truncated toward zero
/// to a `Factor`. Error against the exact value: below 2⁻³² (the final truncation) plus about
/// 10⁻¹³ (the series' first omitted term is under 6·10⁻¹⁴), so under 2.4·10⁻¹⁰ absolute for
/// |score| ≤ 1.
pub fn decay(score: Factor, elapsed_ns: u64, half_life_ns: u64) -> Option<Factor> {
    let h = half_life_ns.max(1);
    let k = elapsed_ns / h;
    if k >= SENTIMENT_LIFETIME {
        return None;
    }
    let rem = elapsed_ns % h;
    // rem < h, so the quotient is below 2⁶⁴.
    let frac = ((u128::from(rem) << 64) / u128::from(h)) as u64;
    let factor = pow2_neg_frac_q63(frac);
    let bits = score.to_bits();
    // |bits| ≤ 2⁶³ and factor ≤ 2⁶³: the product fits u128; truncating the magnitude rounds
    // toward zero, the same for both signs.
    let magnitude = (u128::from(bits.unsigned_abs()) * u128::from(factor)) >> (63 + k);
    // Only `Factor::MIN` with no decay at all reaches 2⁶³; saturate it.
    let magnitude = i64::try_from(magnitude).unwrap_or(i64::MAX);
    Some(Factor::from_bits(if bits < 0 { -magnitude } else { magnitude }))
}

/// An external sentiment score that decays by half every `half_life`:
/// `score(t) = s₀ · 2^(−(t − t₀) / half_life)`, with `s₀` the last score received (clamped to
/// [-1, 1]), `t₀` its arrival time and `t` the receive time of the latest tick (a tick older
/// than the score counts as `t = t₀`). No opinion before the first score, nor once
/// [`SENTIMENT_LIFETIME`] (16) half-lives have passed since it arrived. A new score replaces
/// the old one. See [`decay`] for the arithmetic and its error bound.
#[derive(Clone, Copy, Debug)]
pub struct Sentiment {
    half_life_ns: u64,
    /// The last score received and its arrival time (ns since the epoch), if any.
    last: Option<(Factor, u64)>,
    /// Receive time of the latest tick.
    now_ns: u64,
}

impl Sentiment {
    /// No score yet.
    pub fn new(p: SentimentParams) -> Self {
        Self {
            half_life_ns: p.half_life_ns.max(1),
            last: None,
            now_ns: 0,
        }
    }

    /// Takes a new score (clamped to [-1, 1]) that arrived at `ts_ns`.
    #[inline]
    pub fn set(&mut self, score: Factor, ts_ns: u64) {
        self.last = Some((score.clamp(-Factor::ONE, Factor::ONE), ts_ns));
    }

    /// The decayed score at time `t_ns`.
    #[inline]
    pub fn score_at(&self, t_ns: u64) -> Option<Factor> {
        let (s0, t0) = self.last?;
        decay(s0, t_ns.saturating_sub(t0), self.half_life_ns)
    }
}

impl Family for Sentiment {
    #[inline]
    fn on_tick(&mut self, tick: &Tick) {
        self.now_ns = tick.recv_ns;
    }

    #[inline]
    fn score(&self) -> Option<Factor> {
        self.score_at(self.now_ns)
    }
}

/// Volatility-stop parameters (`risk.stop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopParams {
    /// Multiple of the average absolute trade-to-trade move.
    pub vol_mult: Factor,
    /// EWMA span in trades; also the warm-up.
    pub vol_window: u32,
    /// The stop is never closer than this many ticks.
    pub min_ticks: u32,
}

impl Default for StopParams {
    /// 4 × the EWMA over 50 trades, at least 10 ticks.
    fn default() -> Self {
        Self {
            vol_mult: Factor::from_num(4),
            vol_window: 50,
            min_ticks: 10,
        }
    }
}

/// A volatility stop: `max(vol_mult × ewma, min_ticks × tick_size)`, rounded up to 10⁻⁸, where
/// `ewma` follows |Δ trade price| in raw price units with `ewma += (|Δ| − ewma) · 2 / (span + 1)`.
/// During the warm-up (the first `span` moves) it is the plain mean of the moves so far, which
/// then seeds the average; before the second trade only the tick floor applies. The EWMA is
/// `I64F64` in raw units: exact to 2⁻⁶⁴ of 10⁻⁸ per step, and any move of a valid price fits.
#[derive(Clone, Copy, Debug)]
pub struct VolStop {
    alpha: I64F64,
    span: u32,
    mult: I64F64,
    floor: i64,
    last: Option<i64>,
    moves: u32,
    ewma: I64F64,
}

impl VolStop {
    /// A fresh stop for an instrument with this tick size.
    pub fn new(p: StopParams, tick_size: Price) -> Self {
        let span = p.vol_window.max(1);
        Self {
            alpha: I64F64::from_num(2) / I64F64::from_num(span + 1),
            span,
            mult: I64F64::from_num(p.vol_mult).max(I64F64::ZERO),
            floor: tick_size.raw().saturating_mul(i64::from(p.min_ticks)),
            last: None,
            moves: 0,
            ewma: I64F64::ZERO,
        }
    }

    /// Folds one trade price in.
    #[inline]
    pub fn on_trade(&mut self, price: Price) {
        let p = price.raw();
        if let Some(last) = self.last.replace(p) {
            let d = I64F64::from_num(p.abs_diff(last));
            self.moves = self.moves.saturating_add(1);
            let weight = if self.moves <= self.span {
                I64F64::ONE / I64F64::from_num(self.moves)
            } else {
                self.alpha
            };
            self.ewma += (d - self.ewma) * weight;
        }
    }

    /// The average absolute move, raw price units.
    pub fn ewma(&self) -> I64F64 {
        self.ewma
    }

    /// The stop distance now.
    #[inline]
    pub fn stop(&self) -> Price {
        let vol = self
            .mult
            .saturating_mul(self.ewma)
            .saturating_ceil()
            .saturating_to_num::<i64>();
        Price::from_raw(vol.max(self.floor).max(0)).unwrap_or(Price::ZERO)
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
    /// Mean-reversion parameters.
    pub mean_rev: MeanRevParams,
    /// Breakout parameters.
    pub breakout: BreakoutParams,
    /// Sentiment parameters.
    pub sentiment: SentimentParams,
    /// Full-signal target size per instrument, indexed by [`InstrumentId`].
    pub order_qty: Vec<Qty>,
    /// The volatility stop every intent carries.
    pub stop: StopParams,
    /// Price increment per instrument, indexed by [`InstrumentId`] (the stop's floor is in
    /// ticks); a missing entry counts as zero.
    pub tick_size: Vec<Price>,
}

/// Per-instrument state.
#[derive(Clone, Debug)]
struct Instrument {
    momentum: Momentum,
    mean_rev: MeanRev,
    breakout: Breakout,
    sentiment: Sentiment,
    stop: VolStop,
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
    /// An external sentiment score for one instrument, applied between two ticks. It emits
    /// nothing itself: the instrument's next trade produces a signal that includes it.
    Sentiment {
        /// Which instrument (an unknown id is ignored).
        instrument: InstrumentId,
        /// The score in [-1, 1] (validated by the cold side; clamped here too).
        score: Factor,
        /// Arrival time (ns since the epoch), on the same clock as the ticks' `recv_ns`.
        ts_ns: u64,
    },
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
        let instruments = (0..params.order_qty.len())
            .map(|i| Instrument {
                momentum: Momentum::new(params.momentum),
                mean_rev: MeanRev::new(params.mean_rev),
                breakout: Breakout::new(params.breakout),
                sentiment: Sentiment::new(params.sentiment),
                stop: VolStop::new(params.stop, params.tick_size.get(i).copied().unwrap_or(Price::ZERO)),
                touch: Touch::default(),
                target: 0,
            })
            .collect();
        Self { params, instruments }
    }

    /// Processes one input; produces up to one signal and one intent through `out`.
    #[inline]
    pub fn process(&mut self, input: AlphaInput, out: &mut impl FnMut(AlphaOut)) {
        match input {
            AlphaInput::Tick(tick) => self.on_tick(&tick, out),
            AlphaInput::Weights(w) => self.params.weights = w,
            AlphaInput::Sentiment {
                instrument,
                score,
                ts_ns,
            } => {
                if let Some(inst) = self.instruments.get_mut(instrument.index()) {
                    inst.sentiment.set(score, ts_ns);
                }
            }
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
            TickBody::Trade { price, .. } => {
                inst.touch.last = price;
                inst.stop.on_trade(price);
            }
        }
        inst.momentum.on_tick(tick);
        inst.mean_rev.on_tick(tick);
        inst.breakout.on_tick(tick);
        inst.sentiment.on_tick(tick);
        let mut scores = [None; FamilyKind::COUNT];
        scores[FamilyKind::Momentum as usize] = inst.momentum.score();
        scores[FamilyKind::MeanRev as usize] = inst.mean_rev.score();
        scores[FamilyKind::Breakout as usize] = inst.breakout.score();
        scores[FamilyKind::Sentiment as usize] = inst.sentiment.score();
        let Some((score, mix)) = ensemble(&self.params.weights, &scores) else {
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
            mix,
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
                tif: Tif::Auto,
                pin_venue: false,
                touch: inst.touch,
                origin: Origin::Alpha,
                client_id: 0,
                score,
                mix,
                stop: inst.stop.stop(),
                reduce_only: false,
                ts_ns: tick.recv_ns,
                stamp: tick.stamp,
            }));
        }
    }

    /// The volatility stop an intent for this instrument would carry now.
    pub fn stop(&self, id: InstrumentId) -> Option<Price> {
        self.instruments.get(id.index()).map(|i| i.stop.stop())
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

/// The weighted mean of the scores that are present and each family's contribution to it, or
/// `None` if no score is present (or all present families have zero weight).
pub fn ensemble(weights: &Weights, scores: &[Option<Factor>; FamilyKind::COUNT]) -> Option<(Factor, Mix)> {
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
    let mut mix = [Factor::ZERO; FamilyKind::COUNT];
    for ((m, w), s) in mix.iter_mut().zip(weights).zip(scores) {
        if let Some(s) = s {
            *m = Factor::from_num(I64F64::from_num(*w) * I64F64::from_num(*s) / den);
        }
    }
    Some((Factor::from_num((num / den).clamp(I64F64::NEG_ONE, I64F64::ONE)), mix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Venue;
    use crate::num::Price;
    use crate::records::{Side, Stamp};

    fn trade(price: i64, seq: u64) -> Tick {
        trade_qty(price, 1, seq)
    }

    fn trade_qty(price: i64, qty: i64, seq: u64) -> Tick {
        Tick {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            body: TickBody::Trade {
                price: Price::from_units(price).unwrap(),
                qty: Qty::from_units(qty).unwrap(),
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
            mean_rev: MeanRevParams {
                window: 4,
                z_scale: Factor::from_num(2),
            },
            breakout: BreakoutParams {
                window: 4,
                confirm: 2,
                volume_mult: Factor::ONE,
                hold: 4,
            },
            sentiment: SentimentParams { half_life_ns: 1_000 },
            order_qty: vec!["0.01".parse().unwrap()],
            stop: StopParams::default(),
            tick_size: vec!["0.01".parse().unwrap()],
        }
    }

    #[test]
    fn volatility_stop_is_the_warm_up_mean_then_an_ewma_with_a_tick_floor() {
        let mut v = VolStop::new(StopParams::default(), "0.01".parse().unwrap());
        // No move yet: the floor, 10 ticks of 0.01.
        assert_eq!(v.stop().to_string(), "0.1");
        v.on_trade(Price::from_units(100).unwrap());
        assert_eq!(v.stop().to_string(), "0.1");
        // Moves 1, 2, 1: warm-up mean 4/3, × 4 = 5.3333…, rounded up at 10⁻⁸.
        for p in [101, 99, 100] {
            v.on_trade(Price::from_units(p).unwrap());
        }
        assert_eq!(v.stop().to_string(), "5.33333334");
        // Constant moves of 1 through the 50-trade warm-up: exactly 1, stop 4.
        let mut v = VolStop::new(StopParams::default(), "0.01".parse().unwrap());
        for n in 0..=50 {
            v.on_trade(Price::from_units(100 + n % 2).unwrap());
        }
        assert_eq!(v.stop().to_string(), "4");
        // After the warm-up one flat trade decays it by 2/51: 4 × 49/51 = 3.843137254…
        v.on_trade(Price::from_units(100).unwrap());
        assert_eq!(v.stop().to_string(), "3.84313726");
        // Tiny moves: the floor wins.
        let mut v = VolStop::new(StopParams::default(), "0.5".parse().unwrap());
        v.on_trade("100".parse().unwrap());
        v.on_trade("100.5".parse().unwrap());
        assert_eq!(v.stop().to_string(), "5");
    }

    #[test]
    fn intents_carry_the_volatility_stop() {
        let mut p = params();
        p.weights = [Factor::ONE, Factor::ZERO, Factor::ZERO, Factor::ZERO];
        let mut a = Alpha::new(p);
        let mut intents = Vec::new();
        for (seq, p) in (1..).zip([100, 101, 102, 103, 104, 105, 106, 107, 108]) {
            a.process(AlphaInput::Tick(trade(p, seq)), &mut |o| {
                if let AlphaOut::Intent(i) = o {
                    intents.push(i);
                }
            });
        }
        assert!(!intents.is_empty(), "a steady rise trades");
        // Every move is 1: the stop is 4 × 1 from the second trade on.
        assert!(intents.iter().all(|i| i.stop.to_string() == "4"), "{intents:?}");
        assert_eq!(a.stop(InstrumentId(0)).unwrap().to_string(), "4");
    }

    #[test]
    fn rising_prices_give_a_buy_target_then_flat_when_momentum_fades() {
        let mut p = params();
        p.weights = [Factor::ONE, Factor::ZERO, Factor::ZERO, Factor::ZERO];
        let mut alpha = Alpha::new(p);
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
        let z = Factor::ZERO;
        assert_eq!(
            ensemble(&w, &[Some(half), None, None, None]),
            Some((half, [half, z, z, z]))
        );
        assert_eq!(ensemble(&w, &[None, None, None, Some(half)]), None);
        // Weights 0.5 and 0.25 are exact in binary: (0.5 - 0.25) / 0.75 = 1/3, truncated.
        let w = [
            Factor::from_num(0.5),
            Factor::from_num(0.25),
            Factor::from_num(0.25),
            Factor::ZERO,
        ];
        let (third, mix) = ensemble(&w, &[Some(Factor::ONE), Some(-Factor::ONE), None, None]).unwrap();
        assert!((third - Factor::from_num(1.0 / 3.0)).abs() <= Factor::DELTA, "{third}");
        // Contributions: 0.5 / 0.75 = 2/3 and -0.25 / 0.75 = -1/3; they add up to the score.
        assert!((mix[0] - Factor::from_num(2.0 / 3.0)).abs() <= Factor::DELTA);
        assert!((mix[1] + Factor::from_num(1.0 / 3.0)).abs() <= Factor::DELTA);
        assert_eq!(&mix[2..], &[z, z]);
        assert!((mix[0] + mix[1] - third).abs() <= 2 * Factor::DELTA);
    }
    fn scores<F: Family>(family: &mut F, trades: &[(i64, i64)]) -> Vec<Option<Factor>> {
        trades
            .iter()
            .enumerate()
            .map(|(i, &(p, q))| {
                family.on_tick(&trade_qty(p, q, i as u64));
                family.score()
            })
            .collect()
    }

    fn close(a: Option<Factor>, b: f64) -> bool {
        a.is_some_and(|a| (a.to_num::<f64>() - b).abs() <= 1e-9)
    }

    #[test]
    fn mean_rev_scores_the_negated_z_score_of_the_window() {
        let mut m = MeanRev::new(MeanRevParams {
            window: 4,
            z_scale: Factor::from_num(2),
        });
        let s = scores(&mut m, &[(100, 1), (102, 1), (98, 1), (100, 1), (104, 1), (100, 1)]);
        assert_eq!(&s[..3], &[None, None, None]);
        // [100, 102, 98, 100]: mean 100, price at the mean.
        assert_eq!(s[3], Some(Factor::ZERO));
        // [102, 98, 100, 104]: mean 101, var (1 + 9 + 1 + 9) / 4 = 5, z = 3 / √5.
        assert!(close(s[4], -(3.0 / 5f64.sqrt()) / 2.0), "{:?}", s[4]);
        // [98, 100, 104, 100]: mean 100.5, var (6.25 + 0.25 + 12.25 + 0.25) / 4 = 4.75.
        assert!(close(s[5], (0.5 / 4.75f64.sqrt()) / 2.0), "{:?}", s[5]);
        // A flat window scores 0; a far outlier clips to -1.
        let mut m = MeanRev::new(MeanRevParams {
            window: 3,
            z_scale: Factor::from_num(0.5),
        });
        let s = scores(&mut m, &[(7, 1), (7, 1), (7, 1), (7, 1), (9, 1)]);
        assert_eq!(&s[2..], &[Some(Factor::ZERO), Some(Factor::ZERO), Some(-Factor::ONE)]);
        // Quotes change nothing.
        let before = m.score();
        let mut quote = trade(1, 99);
        quote.body = TickBody::Quote {
            bid: Price::from_units(1).unwrap(),
            bid_qty: Qty::ZERO,
            ask: Price::from_units(2).unwrap(),
            ask_qty: Qty::ZERO,
        };
        m.on_tick(&quote);
        assert_eq!(m.score(), before);
    }

    #[test]
    fn mean_rev_keeps_precision_on_tight_windows_at_realistic_prices() {
        // Prices 61837.63 ± 0.01: raw sums are large but the z-score is unaffected.
        let mut m = MeanRev::new(MeanRevParams {
            window: 3,
            z_scale: Factor::from_num(4),
        });
        for (i, cents) in [6_183_763_i64, 6_183_764, 6_183_762].into_iter().enumerate() {
            let mut t = trade(0, i as u64);
            t.body = TickBody::Trade {
                price: Price::from_raw(cents * 1_000_000).unwrap(),
                qty: Qty::from_units(1).unwrap(),
                aggressor: Side::Buy,
            };
            m.on_tick(&t);
        }
        // [.63, .64, .62]: mean .63, population sd 0.01·√(2/3), last .62 gives z = −√1.5.
        assert!(close(m.score(), 1.5f64.sqrt() / 4.0), "{:?}", m.score());
    }

    #[test]
    fn breakout_needs_a_new_extreme_and_volume_then_decays() {
        let mut b = Breakout::new(BreakoutParams {
            window: 3,
            confirm: 1,
            volume_mult: Factor::from_num(2),
            hold: 2,
        });
        let s = scores(
            &mut b,
            &[
                (10, 1),
                (11, 1),
                (12, 1),
                // Above the channel high 12 with volume 3 ≥ 2 · (3 / 3) · 1: up break.
                (13, 3),
                // Decays: (hold - 1) / hold.
                (13, 1),
                // Over after `hold` trades.
                (13, 1),
                // Below the channel low 13 but volume 1 < 2 · (5 / 3): not confirmed.
                (12, 1),
                // Below the channel low 12 with volume 4 ≥ 2 · (3 / 3): down break.
                (11, 4),
            ],
        );
        let half = Some(Factor::from_num(0.5));
        assert_eq!(
            s,
            vec![
                None,
                None,
                None,
                Some(Factor::ONE),
                half,
                Some(Factor::ZERO),
                Some(Factor::ZERO),
                Some(-Factor::ONE),
            ]
        );
    }

    #[test]
    fn breakout_channel_forgets_trades_that_leave_the_window() {
        // confirm = window and volume_mult = 0: every new extreme counts.
        let mut b = Breakout::new(BreakoutParams {
            window: 2,
            confirm: 2,
            volume_mult: Factor::ZERO,
            hold: 1,
        });
        // After 20, 5, 6 the channel of (5, 6) no longer holds 20, so 7 breaks up; then 4
        // breaks below (6, 7); 6 is inside (7, 4).
        let s = scores(&mut b, &[(20, 1), (5, 1), (6, 1), (7, 1), (4, 1), (6, 1)]);
        let one = Some(Factor::ONE);
        let zero = Some(Factor::ZERO);
        assert_eq!(s, vec![None, None, zero, one, Some(-Factor::ONE), zero]);
    }

    #[test]
    fn all_three_families_feed_the_ensemble() {
        let mut alpha = Alpha::new(params());
        let mut out = Vec::new();
        for (i, p) in [100, 100, 100, 100, 100, 101].into_iter().enumerate() {
            alpha.process(AlphaInput::Tick(trade(p, i as u64)), &mut |o| out.push(o));
        }
        let AlphaOut::Signal(last) = out.iter().rev().find(|o| matches!(o, AlphaOut::Signal(_))).unwrap() else {
            unreachable!()
        };
        let mut m = Momentum::new(params().momentum);
        let mut r = MeanRev::new(params().mean_rev);
        let mut b = Breakout::new(params().breakout);
        for (i, p) in [100, 100, 100, 100, 100, 101].into_iter().enumerate() {
            m.on_tick(&trade(p, i as u64));
            r.on_tick(&trade(p, i as u64));
            b.on_tick(&trade(p, i as u64));
        }
        let (expected, mix) = ensemble(&params().weights, &[m.score(), r.score(), b.score(), None]).unwrap();
        assert_eq!(last.score, expected);
        assert_eq!(last.mix, mix);
        // Breakout (+1) and mean reversion (-1: the only move, above a flat mean) both speak.
        assert_eq!(b.score(), Some(Factor::ONE));
        assert!(r.score().unwrap() < Factor::ZERO);
    }

    #[test]
    fn decay_table_holds_sixteenth_powers_of_one_half() {
        for (j, &t) in POW2_NEG_SIXTEENTHS_Q63.iter().enumerate() {
            let exact = 2f64.powf(-(j as f64) / 16.0);
            assert!((t as f64 / ONE_Q63 as f64 - exact).abs() < 1e-15, "entry {j}");
        }
        // Independently of f64: each entry is the first one to the j-th power, and the first to
        // the 16th is one half (a few Q63 ulps of rounding per multiplication).
        let mut power = ONE_Q63;
        for (j, &t) in POW2_NEG_SIXTEENTHS_Q63.iter().enumerate() {
            assert!(power.abs_diff(t) <= 2 * j as u64, "entry {j}: {power:#x} vs {t:#x}");
            power = mul_q63(power, POW2_NEG_SIXTEENTHS_Q63[1]);
        }
        assert!(power.abs_diff(ONE_Q63 / 2) <= 32, "{power:#x}");
        assert!(LN2_Q64 as f64 / 2f64.powi(64) - std::f64::consts::LN_2 < 1e-16);
    }

    #[test]
    fn sentiment_decay_matches_powers_of_two() {
        let half_lives: [u64; 10] = [
            1,
            2,
            3,
            7,
            1_000,
            999_983,
            1_000_000_000,
            900_000_000_000,
            604_800_000_000_000,
            1 << 59,
        ];
        let scores = [1.0, -1.0, 0.37, -0.8125, 1e-6];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut checked, mut worst) = (0, 0f64);
        for &h in &half_lives {
            let edges = [0, 1, h / 2, h - 1, h, h + 1, 3 * h + h / 3, 16 * h - 1];
            let random = (0..400).map(|_| next() % (16 * h));
            for dt in edges.into_iter().chain(random) {
                for &s0 in &scores {
                    let got = decay(Factor::from_num(s0), dt, h).expect("within 16 half-lives");
                    let s0 = Factor::from_num(s0).to_num::<f64>();
                    let exact = s0 * 2f64.powf(-(dt as f64 / h as f64));
                    let err = (got.to_num::<f64>() - exact).abs();
                    assert!(err <= 1e-8, "h {h} dt {dt} s0 {s0}: {got} vs {exact}");
                    worst = worst.max(err);
                    checked += 1;
                }
            }
            assert_eq!(
                decay(Factor::ONE, 16 * h, h),
                None,
                "h {h}: forgotten after 16 half-lives"
            );
            assert_eq!(decay(Factor::ONE, u64::MAX, h), None);
        }
        // The documented bound: one Factor ulp (2⁻³²) plus the series and rounding (~1e-13).
        assert!(worst < 2.4e-10, "worst error {worst}");
        assert!(checked > 20_000);
        // Whole half-lives are exact shifts.
        let half = Factor::from_num(0.5);
        assert_eq!(decay(half, 0, 10), Some(half));
        assert_eq!(decay(half, 10, 10), Some(Factor::from_num(0.25)));
        assert_eq!(decay(-half, 30, 10), Some(Factor::from_num(-0.0625)));
        assert_eq!(decay(Factor::ZERO, 5, 10), Some(Factor::ZERO));
    }

    #[test]
    fn sentiment_has_an_opinion_only_between_a_score_and_sixteen_half_lives() {
        let mut s = Sentiment::new(SentimentParams { half_life_ns: 100 });
        assert_eq!(s.score(), None, "no score yet");
        s.on_tick(&trade(1, 5_000));
        assert_eq!(s.score(), None, "ticks alone give no opinion");
        s.set(Factor::from_num(0.5), 10_000);
        // The last tick is older than the score: it counts as the score's own time.
        assert_eq!(s.score(), Some(Factor::from_num(0.5)));
        s.on_tick(&trade(1, 10_100));
        assert_eq!(s.score(), Some(Factor::from_num(0.25)));
        s.on_tick(&trade(1, 10_000 + 16 * 100 - 1));
        // Just short of 16 half-lives: 0.5 · 2^(−15.99), above 0.5 · 2⁻¹⁶.
        let (lo, hi) = (Factor::from_num(0.5 / 65_536.0), Factor::from_num(0.5 / 32_768.0));
        assert!(s.score().is_some_and(|x| x > lo && x < hi), "{:?}", s.score());
        s.on_tick(&trade(1, 10_000 + 16 * 100));
        assert_eq!(s.score(), None, "forgotten after 16 half-lives");
        // A new score replaces the old one; out-of-range scores are clamped.
        s.set(Factor::from_num(3), 11_600);
        assert_eq!(s.score(), Some(Factor::ONE));
        s.set(Factor::from_num(-7), 11_600);
        assert_eq!(s.score(), Some(-Factor::ONE));
    }

    fn signals(out: &[AlphaOut]) -> Vec<Signal> {
        out.iter()
            .filter_map(|o| match o {
                AlphaOut::Signal(s) => Some(*s),
                AlphaOut::Intent(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_sentiment_score_enters_the_next_signal_as_the_ensemble_says() {
        let mut p = params();
        p.weights = [Factor::from_num(0.25); FamilyKind::COUNT];
        let h = p.sentiment.half_life_ns;
        let prices = [100, 100, 100, 100, 100, 101];
        let mut alpha = Alpha::new(p.clone());
        let mut out = Vec::new();
        for (i, price) in prices.into_iter().enumerate() {
            alpha.process(AlphaInput::Tick(trade(price, i as u64)), &mut |o| out.push(o));
        }
        let before = *signals(&out).last().unwrap();
        assert_eq!(before.mix[FamilyKind::Sentiment as usize], Factor::ZERO);
        // The score arrives at t = 10; it emits nothing by itself.
        let (s0, t0) = (Factor::from_num(-0.8), 10);
        out.clear();
        alpha.process(
            AlphaInput::Sentiment {
                instrument: InstrumentId(0),
                score: s0,
                ts_ns: t0,
            },
            &mut |o| out.push(o),
        );
        assert!(out.is_empty());
        // A later ingest for an unknown instrument is ignored.
        alpha.process(
            AlphaInput::Sentiment {
                instrument: InstrumentId(7),
                score: Factor::ONE,
                ts_ns: t0,
            },
            &mut |o| out.push(o),
        );
        // The next trade, half a half-life later, carries the decayed score in its ensemble.
        let t = t0 + h / 2;
        alpha.process(AlphaInput::Tick(trade(101, t)), &mut |o| out.push(o));
        let last = *signals(&out).last().unwrap();
        let (mut m, mut r, mut b) = (
            Momentum::new(p.momentum),
            MeanRev::new(p.mean_rev),
            Breakout::new(p.breakout),
        );
        for (i, price) in prices.into_iter().enumerate() {
            for f in [&mut m as &mut dyn Family, &mut r, &mut b] {
                f.on_tick(&trade(price, i as u64));
            }
        }
        for f in [&mut m as &mut dyn Family, &mut r, &mut b] {
            f.on_tick(&trade(101, t));
        }
        let sentiment = decay(s0, t - t0, h).unwrap();
        assert!((sentiment.to_num::<f64>() + 0.8 * 0.5f64.sqrt()).abs() < 1e-9);
        let (score, mix) = ensemble(&p.weights, &[m.score(), r.score(), b.score(), Some(sentiment)]).unwrap();
        assert_eq!((last.score, last.mix), (score, mix));
        let s = FamilyKind::Sentiment as usize;
        // Four equal weights, all present: sentiment contributes a quarter of its score.
        assert!((mix[s] - sentiment / 4).abs() <= Factor::DELTA, "{}", mix[s]);
        let without = ensemble(&p.weights, &[m.score(), r.score(), b.score(), None])
            .unwrap()
            .0;
        assert!(last.score < without, "a negative sentiment pulls the score down");
    }

    #[test]
    fn sentiment_with_zero_weight_changes_no_score() {
        // params() gives sentiment weight 0, the shipped default.
        let run = |with_sentiment: bool| {
            let mut alpha = Alpha::new(params());
            let mut out = Vec::new();
            for (i, price) in [100, 100, 100, 100, 100, 101, 102, 101].into_iter().enumerate() {
                if with_sentiment && i == 3 {
                    alpha.process(
                        AlphaInput::Sentiment {
                            instrument: InstrumentId(0),
                            score: Factor::ONE,
                            ts_ns: 3,
                        },
                        &mut |o| out.push(o),
                    );
                }
                alpha.process(AlphaInput::Tick(trade(price, i as u64)), &mut |o| out.push(o));
            }
            out
        };
        let (plain, with) = (run(false), run(true));
        assert!(!signals(&plain).is_empty());
        assert_eq!(plain, with, "same signals, mixes and intents");
        assert!(
            signals(&with)
                .iter()
                .all(|s| s.mix[FamilyKind::Sentiment as usize] == Factor::ZERO)
        );
    }

    #[test]
    fn sentiment_alone_speaks_on_the_next_trade() {
        let mut p = params();
        p.weights = [Factor::ZERO, Factor::ZERO, Factor::ZERO, Factor::ONE];
        let mut alpha = Alpha::new(p);
        let mut out = Vec::new();
        alpha.process(AlphaInput::Tick(trade(100, 1)), &mut |o| out.push(o));
        assert!(out.is_empty(), "no family has an opinion yet");
        alpha.process(
            AlphaInput::Sentiment {
                instrument: InstrumentId(0),
                score: Factor::from_num(0.75),
                ts_ns: 2,
            },
            &mut |o| out.push(o),
        );
        assert!(out.is_empty());
        alpha.process(AlphaInput::Tick(trade(100, 2)), &mut |o| out.push(o));
        let s = signals(&out);
        assert_eq!(s.len(), 1);
        let three_quarters = Factor::from_num(0.75);
        assert_eq!((s[0].score, s[0].side), (three_quarters, SignalSide::Buy));
        assert_eq!(s[0].mix, [Factor::ZERO, Factor::ZERO, Factor::ZERO, three_quarters]);
        // 0.75 ≥ entry 0.5: a buy target.
        assert!(out.iter().any(|o| matches!(o, AlphaOut::Intent(_))));
    }

    /// The weighted mean of the present scores in plain f64, written apart from [`ensemble`].
    fn weighted_f64(w: &Weights, scores: &[Option<Factor>; FamilyKind::COUNT]) -> f64 {
        let (mut num, mut den) = (0f64, 0f64);
        for (w, s) in w.iter().zip(scores) {
            if let Some(s) = s {
                num += w.to_num::<f64>() * s.to_num::<f64>();
                den += w.to_num::<f64>();
            }
        }
        num / den
    }

    #[test]
    fn new_weights_apply_whole_between_two_ticks() {
        let p = params();
        let old = p.weights;
        // Exact in binary, and giving sentiment (weight 0 before) a say.
        let new = [
            Factor::from_num(0.125),
            Factor::from_num(0.5),
            Factor::from_num(0.125),
            Factor::from_num(0.25),
        ];
        // Separate family instances see the same trades and sentiment score as Alpha; their
        // scores are what each of Alpha's signals must combine.
        let mut m = Momentum::new(p.momentum);
        let mut r = MeanRev::new(p.mean_rev);
        let mut b = Breakout::new(p.breakout);
        let mut sent = Sentiment::new(p.sentiment);
        let mut alpha = Alpha::new(p.clone());
        let mut out = Vec::new();
        let mut seq = 0u64;
        let mut trade_both = |alpha: &mut Alpha, out: &mut Vec<AlphaOut>, sent: &mut Sentiment, price: i64| {
            seq += 1;
            let t = trade(price, seq);
            alpha.process(AlphaInput::Tick(t), &mut |o| out.push(o));
            for f in [&mut m as &mut dyn Family, &mut r, &mut b, sent] {
                f.on_tick(&t);
            }
            [m.score(), r.score(), b.score(), sent.score()]
        };
        let mut before_scores = [None; FamilyKind::COUNT];
        for (i, price) in [100, 100, 100, 100, 100, 101, 103, 102].into_iter().enumerate() {
            if i == 6 {
                // A sentiment score while its weight is still 0: present, but without a say.
                let (score, ts_ns) = (Factor::from_num(-0.5), i as u64);
                alpha.process(
                    AlphaInput::Sentiment {
                        instrument: InstrumentId(0),
                        score,
                        ts_ns,
                    },
                    &mut |o| out.push(o),
                );
                sent.set(score, ts_ns);
            }
            before_scores = trade_both(&mut alpha, &mut out, &mut sent, price);
        }
        assert!(before_scores.iter().all(Option::is_some), "{before_scores:?}");
        let before = *signals(&out).last().expect("signals before the switch");
        let expected = ensemble(&old, &before_scores).unwrap();
        assert_eq!(
            (before.score, before.mix),
            expected,
            "the last signal uses the old weights"
        );
        assert!((before.score.to_num::<f64>() - weighted_f64(&old, &before_scores)).abs() < 1e-8);
        assert_eq!(before.mix[FamilyKind::Sentiment as usize], Factor::ZERO);

        // The switch itself emits nothing; Alpha holds the whole new vector at once.
        out.clear();
        alpha.process(AlphaInput::Weights(new), &mut |o| out.push(o));
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(alpha.weights(), &new);

        let after_scores = trade_both(&mut alpha, &mut out, &mut sent, 104);
        let after = signals(&out);
        assert_eq!(after.len(), 1, "{out:?}");
        let after = after[0];
        let expected = ensemble(&new, &after_scores).unwrap();
        assert_eq!(
            (after.score, after.mix),
            expected,
            "the first signal uses the new weights"
        );
        assert!((after.score.to_num::<f64>() - weighted_f64(&new, &after_scores)).abs() < 1e-8);
        // The weights made the difference: the old ones would have scored this trade otherwise,
        // and sentiment now contributes.
        assert_ne!(ensemble(&old, &after_scores).unwrap().0, after.score);
        assert_ne!(after.mix[FamilyKind::Sentiment as usize], Factor::ZERO);
        let sum: Factor = after.mix.iter().copied().sum();
        assert!((sum - after.score).abs() <= 4 * Factor::DELTA, "{after:?}");
    }
}
