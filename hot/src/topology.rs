//! Names for how the hot stages are laid onto threads and cores, and how idle threads wait.
//!
//! These are the validated forms of `hot.layout`, `hot.wait` and `hot.cores`; the runtime
//! turns them into threads.

use core::fmt;

use crate::ids::Venue;

/// How hot stages are mapped to threads (`hot.layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `pinned` when there are enough free cores for one per stage plus one for the cold side,
    /// `fused` otherwise.
    Auto,
    /// One thread per stage, each pinned to its configured core.
    Pinned,
    /// Stages that share a core run as one loop on one thread.
    Fused,
}

impl Layout {
    /// Parses `auto`, `pinned` or `fused`.
    pub fn from_name(name: &str) -> Option<Layout> {
        match name {
            "auto" => Some(Layout::Auto),
            "pinned" => Some(Layout::Pinned),
            "fused" => Some(Layout::Fused),
            _ => None,
        }
    }

    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::Pinned => "pinned",
            Layout::Fused => "fused",
        }
    }
}

/// What an idle hot thread does (`hot.wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// Busy-spin with a CPU pause hint: lowest latency, one full core per thread.
    Spin,
    /// Spin for a while, then `sched_yield`: near-spin latency, lets a shared core breathe.
    SpinYield,
    /// Spin briefly, then park with a short timeout: least CPU, wake-up costs microseconds.
    Park,
}

impl WaitKind {
    /// Parses `spin`, `spin_yield` or `park`.
    pub fn from_name(name: &str) -> Option<WaitKind> {
        match name {
            "spin" => Some(WaitKind::Spin),
            "spin_yield" => Some(WaitKind::SpinYield),
            "park" => Some(WaitKind::Park),
            _ => None,
        }
    }

    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            WaitKind::Spin => "spin",
            WaitKind::SpinYield => "spin_yield",
            WaitKind::Park => "park",
        }
    }
}

/// A hot stage, as named in `hot.cores` and in thread names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageName {
    /// The MarketData feed thread of one venue (`md-<venue>`).
    MarketData(Venue),
    /// The Alpha ensemble (`alpha`).
    Alpha,
    /// RiskSentinel (`risk`).
    Risk,
    /// Execution (`exec`).
    Exec,
}

impl StageName {
    /// Parses `md-<venue>`, `alpha`, `risk` or `exec`.
    pub fn from_name(name: &str) -> Option<StageName> {
        match name {
            "alpha" => Some(StageName::Alpha),
            "risk" => Some(StageName::Risk),
            "exec" => Some(StageName::Exec),
            _ => name
                .strip_prefix("md-")
                .and_then(Venue::from_name)
                .map(StageName::MarketData),
        }
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageName::MarketData(v) => write!(f, "md-{v}"),
            StageName::Alpha => f.write_str("alpha"),
            StageName::Risk => f.write_str("risk"),
            StageName::Exec => f.write_str("exec"),
        }
    }
}
