//! The governor's policy: discounted reward statistics, Thompson sampling, candidate moves.
//!
//! Each step the reward of family *j* is the change of its net attributed PnL since the
//! previous step (in quote units). Per family the governor keeps discounted sums with discount
//! γ: effective count `n ← γn + 1`, `s ← γs + r`, `s2 ← γs2 + r²`; mean `s/n`, variance
//! `s2/n − mean²` (never below zero).
//!
//! **Posterior.** θ_j ~ Normal(mean_j, (variance_j + σ₀²) / (n_j + 1)). The prior variance σ₀²
//! comes from the data's own scale: the average over the families the governor may move of
//! their discounted mean square reward `s2/n`. It makes a family seen for few steps uncertain in
//! proportion to how large rewards are at all, whatever the currency and position size. While
//! every reward has been zero it is zero, so a governor with no evidence samples θ = 0
//! everywhere and holds.
//!
//! **Candidates.** The current weights, and for every ordered pair (i → j) of distinct families
//! that are not fixed, the weights with δ = min(max_step, w_i − min_weight) moved from i to j
//! (skipped when δ ≤ 0). Moving a fixed-point amount from one weight to another keeps the sum
//! bit-exact, keeps every weight ≥ min_weight (so ≥ 0) and changes no weight by more than
//! max_step.
//!
//! **Choice.** The candidate maximising Σ_j w_j θ_j. Relative to holding, a move gains exactly
//! δ (θ_j − θ_i), so that is what is compared: the largest strictly positive gain wins, ties go
//! to the first candidate in (i, j) order, and if no gain is positive the weights are kept.
//!
//! **Determinism.** The statistics and samples are `f64`, but use only +, −, ×, ÷ and √, which
//! IEEE 754 rounds correctly, so every platform computes the same bits; state files store the
//! bits. Weights never touch a float: they stay [`Factor`]s and only ever move by δ.

use maxx_hot::records::{FAMILIES, Factor};
use maxx_hot::stage::alpha::{FamilyKind, Weights};

use super::GovernorParams;
use super::rng::SplitMix64;

/// Discounted statistics of one family's rewards.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RewardStats {
    /// Discounted number of rewards seen (`Σ γ^age`).
    pub count: f64,
    /// Discounted sum of rewards.
    pub sum: f64,
    /// Discounted sum of squared rewards.
    pub sum_sq: f64,
}

impl RewardStats {
    /// Folds in one reward after discounting the past by `discount`.
    pub fn update(&mut self, reward: f64, discount: f64) {
        self.count = discount * self.count + 1.0;
        self.sum = discount * self.sum + reward;
        self.sum_sq = discount * self.sum_sq + reward * reward;
    }

    /// Discounted mean (zero before any reward).
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count } else { 0.0 }
    }

    /// Discounted mean square (zero before any reward).
    pub fn mean_square(&self) -> f64 {
        if self.count > 0.0 {
            self.sum_sq / self.count
        } else {
            0.0
        }
    }

    /// Discounted variance, never negative.
    pub fn variance(&self) -> f64 {
        let mean = self.mean();
        let v = self.mean_square() - mean * mean;
        if v > 0.0 { v } else { 0.0 }
    }
}

/// What a step did with the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The current weights were kept.
    Hold,
    /// `amount` of weight moved from family `from` to family `to` (indices in family order).
    Move {
        /// The family that lost weight.
        from: usize,
        /// The family that gained it.
        to: usize,
        /// How much moved (0 < amount ≤ max_step).
        amount: Factor,
    },
}

impl Choice {
    /// `hold`, or e.g. `move 0.05 from mean_rev to momentum`.
    pub fn describe(&self) -> String {
        match self {
            Choice::Hold => "hold".to_string(),
            Choice::Move { from, to, amount } => {
                format!("move {amount} from {} to {}", family_name(*from), family_name(*to))
            }
        }
    }

    /// The weights after this choice.
    pub fn apply(&self, weights: &Weights) -> Weights {
        let mut w = *weights;
        if let Choice::Move { from, to, amount } = *self {
            w[from] -= amount;
            w[to] += amount;
        }
        w
    }
}

/// The family's `alpha.weights` key.
pub fn family_name(family: usize) -> &'static str {
    FamilyKind::ALL.get(family).map_or("?", |f| f.name())
}

/// Every move the constraints allow from `weights`, in (from, to) order.
pub fn candidates(weights: &Weights, params: &GovernorParams) -> Vec<Choice> {
    let mut out = Vec::new();
    for (from, w) in weights.iter().enumerate() {
        if params.fixed[from] {
            continue;
        }
        let room = w.saturating_sub(params.min_weight);
        let amount = params.max_step.min(room);
        if amount <= Factor::ZERO {
            continue;
        }
        for to in 0..FAMILIES {
            if to != from && !params.fixed[to] {
                out.push(Choice::Move { from, to, amount });
            }
        }
    }
    out
}

/// The prior variance σ₀²: the mean over non-fixed families of their discounted mean square.
pub fn prior_variance(stats: &[RewardStats; FAMILIES], fixed: &[bool; FAMILIES]) -> f64 {
    let mut sum = 0.0;
    let mut n = 0.0;
    for (s, f) in stats.iter().zip(fixed) {
        if !f {
            sum += s.mean_square();
            n += 1.0;
        }
    }
    if n > 0.0 { sum / n } else { 0.0 }
}

/// One θ per family from its normal posterior (always four draws, fixed families included, so
/// the random sequence does not depend on which families are fixed).
pub fn sample(stats: &[RewardStats; FAMILIES], prior: f64, rng: &mut SplitMix64) -> [f64; FAMILIES] {
    let mut theta = [0.0; FAMILIES];
    for (t, s) in theta.iter_mut().zip(stats) {
        let z = rng.normal();
        let var = (s.variance() + prior) / (s.count + 1.0);
        *t = s.mean() + var.sqrt() * z;
    }
    theta
}

/// The candidate with the largest positive gain δ(θ_to − θ_from) over holding, or `Hold`.
pub fn choose(weights: &Weights, theta: &[f64; FAMILIES], params: &GovernorParams) -> Choice {
    let mut best = Choice::Hold;
    let mut best_gain = 0.0;
    for c in candidates(weights, params) {
        if let Choice::Move { from, to, amount } = c {
            let gain = amount.to_num::<f64>() * (theta[to] - theta[from]);
            if gain > best_gain {
                best = c;
                best_gain = gain;
            }
        }
    }
    best
}
