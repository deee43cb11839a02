//! The Kelly clip: the fraction of its normal size Risk lets a trade have.
//!
//! Spec section 8: when intraday drawdown exceeds `risk.daily_drawdown_pct` the clip drops to
//! 0.25; it returns to 1.0 at the next UTC day. Intraday drawdown is measured from the highest
//! equity observed since the UTC day began (`starting_equity` counts as observed before the
//! first observation). The test is an exact integer comparison,
//! `(peak − equity) × 100 > pct × peak`, with `pct` in its raw fixed-point bits, so no float
//! decides a clip. A non-positive peak has no meaningful percentage and never clips. Once
//! clipped, the clip stays for the rest of the day even if equity recovers. An observation
//! stamped on an earlier day than the last one (a clock step back) counts as the current day.

use maxx_hot::num::Money;
use maxx_hot::records::Factor;
use serde::{Deserialize, Serialize};

/// Nanoseconds in a UTC day (Unix time has no leap seconds).
pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Watches equity and decides the Kelly clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KellyGuard {
    pct: Factor,
    day: Option<u64>,
    peak: Money,
    clip: Factor,
}

/// What a [`KellyGuard`] must remember across a restart, exactly (raw bits and raw money).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KellyState {
    /// The clip, as `Factor` bits.
    pub clip: i64,
    /// The UTC day (days since the epoch) of the last observation, if any.
    pub day: Option<u64>,
    /// The day's peak equity, raw 10⁻⁸ units.
    pub peak: i64,
}

impl KellyGuard {
    /// The normal clip.
    pub const FULL: Factor = Factor::ONE;
    /// The clip after a drawdown beyond the limit.
    pub const CLIPPED: Factor = Factor::from_bits(1 << 30);

    /// A guard clipping beyond `daily_drawdown_pct` percent, before any observation.
    pub fn new(daily_drawdown_pct: Factor, starting_equity: Money) -> Self {
        Self {
            pct: daily_drawdown_pct,
            day: None,
            peak: starting_equity,
            clip: Self::FULL,
        }
    }

    /// A guard continuing from a saved state (the limit comes from the current config).
    pub fn from_state(daily_drawdown_pct: Factor, state: &KellyState) -> Self {
        Self {
            pct: daily_drawdown_pct,
            day: state.day,
            peak: Money::from_raw(state.peak).unwrap_or(Money::ZERO),
            clip: Factor::from_bits(state.clip),
        }
    }

    /// The state to persist.
    pub fn state(&self) -> KellyState {
        KellyState {
            clip: self.clip.to_bits(),
            day: self.day,
            peak: self.peak.raw(),
        }
    }

    /// Changes the limit (config reload); takes effect at the next observation.
    pub fn set_daily_drawdown_pct(&mut self, pct: Factor) {
        self.pct = pct;
    }

    /// Folds in the equity at `now_unix_ns`; returns the new clip only when it changes.
    pub fn observe(&mut self, now_unix_ns: u64, equity: Money) -> Option<Factor> {
        let before = self.clip;
        let day = now_unix_ns / NS_PER_DAY;
        match self.day {
            Some(d) if day > d => {
                self.day = Some(day);
                self.peak = equity;
                self.clip = Self::FULL;
            }
            Some(_) => self.peak = self.peak.max(equity),
            None => {
                self.day = Some(day);
                self.peak = self.peak.max(equity);
            }
        }
        if self.clip == Self::FULL && drawdown_exceeds(self.peak, equity, self.pct) {
            self.clip = Self::CLIPPED;
        }
        (self.clip != before).then_some(self.clip)
    }

    /// The current clip.
    pub fn clip(&self) -> Factor {
        self.clip
    }

    /// The current UTC day's peak equity.
    pub fn peak(&self) -> Money {
        self.peak
    }
}

/// `true` when `equity` is more than `pct` percent below `peak` (exact; false if `peak ≤ 0`).
pub fn drawdown_exceeds(peak: Money, equity: Money, pct: Factor) -> bool {
    let peak = i128::from(peak.raw());
    if peak <= 0 {
        return false;
    }
    let drop = peak - i128::from(equity.raw());
    // drop / peak × 100 > pct_bits / 2³²  ⇔  drop × 100 × 2³² > pct_bits × peak.
    drop * 100 * (1i128 << 32) > i128::from(pct.to_bits()) * peak
}
