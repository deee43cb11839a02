//! Wait strategies for idle hot threads: small zero-sized types, chosen once at thread start.
//!
//! A stage loop calls [`Wait::idle`] after a pass that found no work and [`Wait::reset`] after
//! one that did. Spinning is the default for latency: waking a parked thread costs
//! microseconds (design brief section 8), a ring hop costs about 60 ns.

use std::time::Duration;

use crate::topology::WaitKind;

/// What a hot loop does between passes that found no work.
pub trait Wait {
    /// Called after an idle pass; `idle_passes` counts consecutive idle passes from 1.
    fn idle(&mut self, idle_passes: u32);
}

/// Busy-spin with the CPU's pause hint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl Wait for Spin {
    #[inline]
    fn idle(&mut self, _: u32) {
        core::hint::spin_loop();
    }
}

/// Spin for a few thousand passes, then yield the core once per idle pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpinYield;

/// Idle passes spent spinning before a yielding or parking strategy gives the core away.
const SPIN_PASSES: u32 = 4096;

impl Wait for SpinYield {
    #[inline]
    fn idle(&mut self, idle_passes: u32) {
        if idle_passes < SPIN_PASSES {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Spin briefly, then sleep in short slices.
///
/// Producers never unpark a consumer (that would put a syscall on their path), so a parked
/// thread notices new work at most [`PARK_SLICE`] later. This mode is for laptops and CI, not
/// for production latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct Park;

/// How long a parked hot thread sleeps before it looks at its rings again.
pub const PARK_SLICE: Duration = Duration::from_micros(200);

impl Wait for Park {
    #[inline]
    fn idle(&mut self, idle_passes: u32) {
        if idle_passes < SPIN_PASSES / 16 {
            core::hint::spin_loop();
        } else {
            std::thread::park_timeout(PARK_SLICE);
        }
    }
}

/// Runs `body` with the wait strategy named by `kind`, monomorphised per strategy so the idle
/// call inlines into the loop.
pub fn with_wait<R>(kind: WaitKind, body: impl WaitBody<R>) -> R {
    match kind {
        WaitKind::Spin => body.run(Spin),
        WaitKind::SpinYield => body.run(SpinYield),
        WaitKind::Park => body.run(Park),
    }
}

/// A loop body generic over its wait strategy (a closure cannot be generic, a trait can).
pub trait WaitBody<R> {
    /// Runs the loop with strategy `w`.
    fn run<W: Wait>(self, w: W) -> R;
}
