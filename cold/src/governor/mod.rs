//! The MetaGovernor's decision logic: re-weighting the Alpha ensemble by attributed PnL.
//!
//! [`Governor::step`] takes the cumulative per-family PnL from
//! [`Attribution::pnl`](crate::attribution::Attribution::pnl), turns its change since the last
//! step into one reward per family, and runs one step of Thompson sampling over a few candidate
//! weight vectors ([`policy`] documents the posterior and the candidates). It returns a
//! [`Decision`] that says what it saw and did, for the log line, the HTTP response and the
//! `governor` stream. The weights it chooses always satisfy the constraints: non-negative, every
//! weight the governor moves stays at or above `min_weight`, fixed families never change, no
//! weight changes by more than `max_step` per step, and the sum stays bit-exact.
//!
//! This module is pure logic: no tokio, no clock, and no IO except [`GovernorState`]'s file.
//! The caller owns scheduling (cron, HTTP), applying weights to the hot path and persisting.
//! [`KellyGuard`] decides the Kelly clip from equity.

pub mod kelly;
pub mod policy;
pub mod rng;
pub mod state;

use maxx_hot::num::Money;
use maxx_hot::records::{FAMILIES, Factor};
use maxx_hot::stage::alpha::Weights;
use serde::Serialize;

use crate::attribution::{BUCKETS, FamilyPnl};
pub use kelly::{KellyGuard, KellyState};
use policy::family_name;
pub use policy::{Choice, RewardStats};
use rng::SplitMix64;
pub use state::GovernorState;

/// How far the sum of weights may be from 1, in units of 2⁻³² (one ulp of [`Factor`]).
///
/// Decimal weights such as 0.4 have no exact binary image; parsing rounds each to the nearest
/// ulp, so four weights whose decimals sum to exactly 1 sum to within 2 ulp of 1 in fixed point.
/// Allowing one ulp per family accepts every such set and nothing visibly different from 1.
pub const WEIGHT_SUM_TOLERANCE_ULP: i64 = FAMILIES as i64;

/// The governor's constraints and learning parameters (config `governor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GovernorParams {
    /// Seed of the Thompson sampler.
    pub seed: u64,
    /// Largest change of any one weight in one step.
    pub max_step: Factor,
    /// The governor never takes a non-fixed family's weight below this (it does not raise a
    /// weight an operator set lower, but never lowers it further).
    pub min_weight: Factor,
    /// Families whose weight the governor never changes (by default: sentiment).
    pub fixed: [bool; FAMILIES],
    /// Weight of the past per step when averaging rewards, in (0, 1]; 1 never forgets.
    pub discount: Factor,
}

impl GovernorParams {
    /// Checks the ranges: max_step in (0, 1], min_weight in [0, 1], discount in (0, 1].
    pub fn validate(&self) -> Result<(), String> {
        if !(Factor::ZERO < self.max_step && self.max_step <= Factor::ONE) {
            return Err(format!("max_step {} must be in (0, 1]", self.max_step));
        }
        if !(Factor::ZERO <= self.min_weight && self.min_weight <= Factor::ONE) {
            return Err(format!("min_weight {} must be in [0, 1]", self.min_weight));
        }
        if !(Factor::ZERO < self.discount && self.discount <= Factor::ONE) {
            return Err(format!("discount {} must be in (0, 1]", self.discount));
        }
        Ok(())
    }
}

/// Checks that every weight is non-negative and that they sum to 1 within
/// [`WEIGHT_SUM_TOLERANCE_ULP`] ulp. The message names the offending family or the sum.
pub fn validate_weights(w: &[Factor; FAMILIES]) -> Result<(), String> {
    for (i, x) in w.iter().enumerate() {
        if *x < Factor::ZERO {
            return Err(format!("weight of {} is negative ({x})", family_name(i)));
        }
    }
    let sum: i128 = w.iter().map(|x| i128::from(x.to_bits())).sum();
    let one = i128::from(Factor::ONE.to_bits());
    if (sum - one).abs() > i128::from(WEIGHT_SUM_TOLERANCE_ULP) {
        let shown = i64::try_from(sum).map_or_else(
            |_| fixed::types::I64F64::from_bits(sum << 32).to_string(),
            |b| Factor::from_bits(b).to_string(),
        );
        return Err(format!("weights must sum to 1, got {shown}"));
    }
    Ok(())
}

/// Scales non-negative weights with a positive sum to sum to exactly 1 (bit-exact): each
/// weight becomes `w × 1 / Σw` rounded down to an ulp, and the ulps still missing go one each to
/// the largest remainders (ties to the lowest index). Weights already summing to exactly 1
/// come back unchanged. Only for callers that ask for normalisation.
pub fn normalise(w: &[Factor; FAMILIES]) -> Result<Weights, String> {
    for (i, x) in w.iter().enumerate() {
        if *x < Factor::ZERO {
            return Err(format!("weight of {} is negative ({x})", family_name(i)));
        }
    }
    let bits = w.map(|x| i128::from(x.to_bits()));
    let sum: i128 = bits.iter().sum();
    if sum == 0 {
        return Err("weights sum to 0; nothing to normalise".to_string());
    }
    let one = i128::from(Factor::ONE.to_bits());
    let mut out = bits.map(|b| b * one / sum);
    let rems = bits.map(|b| b * one % sum);
    let missing = one - out.iter().sum::<i128>();
    let mut order: [usize; FAMILIES] = std::array::from_fn(|k| k);
    order.sort_by(|a, b| rems[*b].cmp(&rems[*a]));
    for k in order.iter().take(missing as usize) {
        out[*k] += 1;
    }
    // Every part is at most 1, so the bits fit.
    Ok(out.map(|b| Factor::from_bits(b as i64)))
}

/// What started a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `alpha.reweight_cron` fired.
    Cron,
    /// `POST /govern/reweight`.
    Http,
    /// A config reload (SIGHUP or `POST /reload`) that changed `alpha.weights`.
    Reload,
}

impl Trigger {
    /// `cron`, `http` or `reload`.
    pub const fn name(self) -> &'static str {
        match self {
            Trigger::Cron => "cron",
            Trigger::Http => "http",
            Trigger::Reload => "reload",
        }
    }
}

/// One governor step: what it saw, what it sampled and what it did.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Step number, from 1.
    pub step: u64,
    /// What started it.
    pub trigger: Trigger,
    /// When (ns since the epoch), as given by the caller.
    pub ts_ns: u64,
    /// Weights before the step.
    pub old: Weights,
    /// Weights after the step (equal to `old` on `Hold`).
    pub new: Weights,
    /// Change of each bucket's net attributed PnL since the previous step (the families'
    /// rewards; the unattributed bucket is shown, never learned from).
    pub rewards: [Money; BUCKETS],
    /// Cumulative attributed PnL per bucket, as passed in.
    pub cumulative: [FamilyPnl; BUCKETS],
    /// The sampled θ per family (expected reward per step, quote units).
    pub theta: [f64; FAMILIES],
    /// Hold, or the move made.
    pub choice: Choice,
}

impl Decision {
    /// `true` if the weights changed.
    pub fn changed(&self) -> bool {
        self.old != self.new
    }

    /// One sentence for the log line.
    pub fn explain(&self) -> String {
        let action = match self.choice {
            Choice::Hold => "held the weights (no move beat them)".to_string(),
            Choice::Move { from, to, amount } => format!(
                "moved {amount} from {} to {} (sampled θ {} > {})",
                family_name(from),
                family_name(to),
                short(self.theta[to]),
                short(self.theta[from]),
            ),
        };
        let weights = |w: &Weights| {
            (0..FAMILIES)
                .map(|k| format!("{} {}", family_name(k), w[k]))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let rewards = (0..FAMILIES)
            .map(|k| format!("{} {}", family_name(k), self.rewards[k]))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "governor step {} ({}) {action}: weights {} -> {}; rewards since last step {rewards}",
            self.step,
            self.trigger.name(),
            weights(&self.old),
            weights(&self.new),
        )
    }
}

fn short(x: f64) -> String {
    format!("{x:.4}")
}

/// One value per family, serialised with the family names as keys.
#[derive(Serialize)]
struct PerFamily<T> {
    momentum: T,
    mean_rev: T,
    breakout: T,
    sentiment: T,
}

impl<T> PerFamily<T> {
    fn new(f: impl Fn(usize) -> T) -> Self {
        Self {
            momentum: f(0),
            mean_rev: f(1),
            breakout: f(2),
            sentiment: f(3),
        }
    }
}

/// One value per bucket: the families and `unattributed`.
#[derive(Serialize)]
struct PerBucket<T> {
    #[serde(flatten)]
    families: PerFamily<T>,
    unattributed: T,
}

impl<T> PerBucket<T> {
    fn new(f: impl Fn(usize) -> T) -> Self {
        Self {
            families: PerFamily::new(&f),
            unattributed: f(FAMILIES),
        }
    }
}

#[derive(Serialize)]
struct PnlView {
    realized: String,
    unrealized: String,
    fees: String,
    net: String,
}

#[derive(Serialize)]
struct DecisionView<'a> {
    step: u64,
    trigger: &'static str,
    ts_ns: u64,
    choice: String,
    changed: bool,
    old: PerFamily<String>,
    new: PerFamily<String>,
    old_bits: PerFamily<i64>,
    new_bits: PerFamily<i64>,
    rewards: PerBucket<String>,
    cumulative: PerBucket<PnlView>,
    theta: PerFamily<f64>,
    explain: &'a str,
}

/// JSON shape: `step`, `trigger`, `ts_ns`, `choice` (`hold` or `move 0.05 from a to b`),
/// `changed`, `old`/`new` (weights as decimal strings by family), `old_bits`/`new_bits` (raw
/// `Factor` bits), `rewards` (decimal strings by bucket),
/// `cumulative` (`realized`, `unrealized`, `fees`, `net` by bucket), `theta` (numbers by
/// family) and `explain` (the log sentence).
impl Serialize for Decision {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let explain = self.explain();
        DecisionView {
            step: self.step,
            trigger: self.trigger.name(),
            ts_ns: self.ts_ns,
            choice: self.choice.describe(),
            changed: self.changed(),
            old: PerFamily::new(|k| self.old[k].to_string()),
            new: PerFamily::new(|k| self.new[k].to_string()),
            old_bits: PerFamily::new(|k| self.old[k].to_bits()),
            new_bits: PerFamily::new(|k| self.new[k].to_bits()),
            rewards: PerBucket::new(|k| self.rewards[k].to_string()),
            cumulative: PerBucket::new(|k| {
                let p = &self.cumulative[k];
                PnlView {
                    realized: p.realized.to_string(),
                    unrealized: p.unrealized.to_string(),
                    fees: p.fees.to_string(),
                    net: p.net().to_string(),
                }
            }),
            theta: PerFamily::new(|k| self.theta[k]),
            explain: &explain,
        }
        .serialize(serializer)
    }
}

/// The MetaGovernor's policy state: weights, reward statistics, RNG.
#[derive(Clone, Debug, PartialEq)]
pub struct Governor {
    params: GovernorParams,
    weights: Weights,
    base: Weights,
    steps: u64,
    rng: SplitMix64,
    stats: [RewardStats; FAMILIES],
    last_net: [Money; BUCKETS],
}

impl Governor {
    /// A governor starting from `weights` (validated by the caller), with no rewards seen and a
    /// zero PnL baseline.
    pub fn new(params: GovernorParams, weights: Weights) -> Self {
        Self {
            params,
            weights,
            base: weights,
            steps: 0,
            rng: SplitMix64::new(params.seed),
            stats: [RewardStats::default(); FAMILIES],
            last_net: [Money::ZERO; BUCKETS],
        }
    }

    /// A governor continuing exactly from a saved state; an invalid state is an error. The seed
    /// in `params` is ignored: the RNG continues from the state. `state.kelly` is the caller's,
    /// for [`KellyGuard::from_state`].
    ///
    /// The next reward is measured from the saved `last_net`. If the attribution does not
    /// continue from the same cumulative PnL (a fresh process starts it at zero), call
    /// [`Governor::set_pnl_baseline`] with its current PnL first, or the first reward after the
    /// restart is the lost history.
    pub fn from_state(params: GovernorParams, state: GovernorState) -> Result<Self, String> {
        state.validate()?;
        Ok(Self {
            params,
            weights: state.weights.map(Factor::from_bits),
            base: state.base.map(Factor::from_bits),
            steps: state.steps,
            rng: SplitMix64::new(state.rng),
            stats: state.stats.map(|s| s.to_stats()),
            last_net: state.last_net.map(|m| Money::from_raw(m).unwrap_or(Money::ZERO)),
        })
    }

    /// The state to persist. `kelly` is `None`; a caller that keeps a [`KellyGuard`] sets it
    /// to `Some(guard.state())` before saving.
    pub fn state(&self) -> GovernorState {
        GovernorState {
            version: state::STATE_VERSION,
            weights: self.weights.map(|w| w.to_bits()),
            base: self.base.map(|w| w.to_bits()),
            steps: self.steps,
            rng: self.rng.state(),
            stats: self.stats.map(|s| state::StatsBits::from_stats(&s)),
            last_net: self.last_net.map(|m| m.raw()),
            kelly: None,
        }
    }

    /// One step: learn from the PnL change since the last step, sample, maybe move weight.
    pub fn step(&mut self, pnl: &[FamilyPnl; BUCKETS], trigger: Trigger, now_unix_ns: u64) -> Decision {
        let net = pnl.map(|p| p.net());
        let rewards: [Money; BUCKETS] = std::array::from_fn(|k| {
            let r = i128::from(net[k].raw()) - i128::from(self.last_net[k].raw());
            Money::from_raw(i64::try_from(r).unwrap_or(if r > 0 { i64::MAX } else { i64::MIN })).unwrap_or(Money::ZERO)
        });
        let discount = self.params.discount.to_num::<f64>();
        for (s, r) in self.stats.iter_mut().zip(&rewards) {
            s.update(r.raw() as f64 / maxx_hot::num::ONE as f64, discount);
        }
        self.last_net = net;
        self.steps += 1;
        let prior = policy::prior_variance(&self.stats, &self.params.fixed);
        let theta = policy::sample(&self.stats, prior, &mut self.rng);
        let choice = policy::choose(&self.weights, &theta, &self.params);
        let old = self.weights;
        self.weights = choice.apply(&old);
        Decision {
            step: self.steps,
            trigger,
            ts_ns: now_unix_ns,
            old,
            new: self.weights,
            rewards,
            cumulative: *pnl,
            theta,
            choice,
        }
    }

    /// Resets the reward baseline to `pnl` without learning from the difference: for a restart
    /// whose attribution starts again from zero, so the next reward is not the lost history.
    pub fn set_pnl_baseline(&mut self, pnl: &[FamilyPnl; BUCKETS]) {
        self.last_net = pnl.map(|p| p.net());
    }

    /// The current weights.
    pub fn weights(&self) -> Weights {
        self.weights
    }

    /// The config weights the governor's weights derive from (see [`Governor::rebase`]).
    pub fn base(&self) -> Weights {
        self.base
    }

    /// Replaces the weights (operator override or SIGHUP reload; validated by the caller). The
    /// base is unchanged; reward statistics are kept: they describe the families, not the
    /// weights.
    pub fn set_weights(&mut self, w: Weights) {
        self.weights = w;
    }

    /// Records `base` as the config weights the current weights derive from (after a reload
    /// changed `alpha.weights`), so a restart with that config resumes this state.
    pub fn rebase(&mut self, base: Weights) {
        self.base = base;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The parameters.
    pub fn params(&self) -> &GovernorParams {
        &self.params
    }

    /// Replaces the parameters (config reload); the RNG continues, so the seed only matters
    /// for a governor started without state.
    pub fn set_params(&mut self, params: GovernorParams) {
        self.params = params;
    }

    /// The per-family reward statistics.
    pub fn stats(&self) -> &[RewardStats; FAMILIES] {
        &self.stats
    }
}
