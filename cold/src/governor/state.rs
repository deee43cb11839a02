//! The governor's persisted state: enough to continue exactly where it stopped.
//!
//! One JSON file holds the weights, the config weights they started from, the step count, the
//! RNG state, the reward statistics, the last cumulative PnL per bucket and the Kelly guard.
//! Every number is stored exactly: weights as `Factor` bits, money as raw 10⁻⁸ units, floats
//! as their IEEE bits, so a restarted governor makes the same next decision as one that never
//! stopped. Saving is atomic: a temporary file in the same directory is written, fsynced and
//! renamed over the old one (then the directory is fsynced), so a crash leaves the old or the
//! new state, never half of one.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use maxx_hot::records::{FAMILIES, Factor};
use maxx_hot::stage::alpha::Weights;
use serde::{Deserialize, Serialize};

use super::kelly::KellyState;
use super::policy::RewardStats;
use super::validate_weights;
use crate::attribution::BUCKETS;

/// Version of the state file layout; a file with another version is refused.
pub const STATE_VERSION: u32 = 1;

/// One family's reward statistics as `f64` bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsBits {
    /// `RewardStats::count` bits.
    pub count: u64,
    /// `RewardStats::sum` bits.
    pub sum: u64,
    /// `RewardStats::sum_sq` bits.
    pub sum_sq: u64,
}

impl StatsBits {
    /// The exact bits of `s`.
    pub fn from_stats(s: &RewardStats) -> Self {
        Self {
            count: s.count.to_bits(),
            sum: s.sum.to_bits(),
            sum_sq: s.sum_sq.to_bits(),
        }
    }

    /// The statistics these bits hold.
    pub fn to_stats(self) -> RewardStats {
        RewardStats {
            count: f64::from_bits(self.count),
            sum: f64::from_bits(self.sum),
            sum_sq: f64::from_bits(self.sum_sq),
        }
    }
}

/// Everything a governor needs to continue exactly (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernorState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Current weights, `Factor` bits in family order.
    pub weights: [i64; FAMILIES],
    /// The config weights the governor started from (`alpha.weights`), `Factor` bits.
    pub base: [i64; FAMILIES],
    /// Steps taken.
    pub steps: u64,
    /// SplitMix64 state.
    pub rng: u64,
    /// Reward statistics per family.
    pub stats: [StatsBits; FAMILIES],
    /// Net attributed PnL per bucket at the last step (raw 10⁻⁸), the baseline of the next rewards.
    pub last_net: [i64; BUCKETS],
    /// The Kelly guard, when the caller stores it here (see [`super::Governor::state`]).
    #[serde(default)]
    pub kelly: Option<KellyState>,
}

impl GovernorState {
    /// The saved weights.
    pub fn weights(&self) -> Weights {
        self.weights.map(Factor::from_bits)
    }

    /// The config weights the saved weights derive from: a restart whose `alpha.weights` equal
    /// these resumes the state; otherwise the config was edited and wins.
    pub fn base(&self) -> Weights {
        self.base.map(Factor::from_bits)
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Reads a state file: `Ok(None)` if it does not exist, an error naming the path if it
    /// cannot be read, does not parse or does not hold valid weights.
    pub fn load(path: &Path) -> Result<Option<GovernorState>, String> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read governor state: {e}", path.display())),
        };
        let state: GovernorState =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: corrupt governor state: {e}", path.display()))?;
        state
            .validate()
            .map_err(|e| format!("{}: invalid governor state: {e}", path.display()))?;
        Ok(Some(state))
    }

    /// Writes the state atomically (temporary file in the same directory, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| format!("{}: cannot {what} governor state: {e}", path.display());
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| fail("encode", &e))?;
        json.push(b'\n');
        crate::files::write_atomically(path, &json).map_err(|e| fail("write", &e))
    }

    /// Checks the version, the weights (as [`validate_weights`] does), the base weights and
    /// that the statistics are finite with a non-negative count.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != STATE_VERSION {
            return Err(format!("version {} (this build reads {STATE_VERSION})", self.version));
        }
        validate_weights(&self.weights.map(Factor::from_bits)).map_err(|e| format!("weights: {e}"))?;
        validate_weights(&self.base.map(Factor::from_bits)).map_err(|e| format!("base: {e}"))?;
        for (i, s) in self.stats.iter().enumerate() {
            let s = s.to_stats();
            if !(s.count.is_finite() && s.sum.is_finite() && s.sum_sq.is_finite() && s.count >= 0.0) {
                return Err(format!("stats of {}: not finite", super::policy::family_name(i)));
            }
        }
        if let Some(k) = &self.kelly
            && !(0 < k.clip && k.clip <= Factor::ONE.to_bits())
        {
            return Err(format!("kelly clip bits {} not in (0, 1]", k.clip));
        }
        Ok(())
    }
}
