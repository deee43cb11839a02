//! Clocks: wall time for records, a monotonic reading for latency.
//!
//! Both read the vDSO (`clock_gettime` without a kernel entry), about 25 ns each on the
//! development machine (design brief section 8). Stages take a [`Clock`] by generic parameter so
//! replays and tests can inject time; nothing on the hot path calls `SystemTime::now` directly.

use crate::records::Stamp;

/// A source of time for the hot path.
pub trait Clock {
    /// Wall-clock nanoseconds since the Unix epoch.
    fn wall_ns(&self) -> u64;
    /// A monotonic reading in nanoseconds, for latency measurement only.
    fn stamp(&self) -> Stamp;
}

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn wall_ns(&self) -> u64 {
        read(libc::CLOCK_REALTIME)
    }

    #[inline]
    fn stamp(&self) -> Stamp {
        Stamp(read(libc::CLOCK_MONOTONIC))
    }
}

/// Reads one POSIX clock in nanoseconds.
#[inline]
fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and both clock ids exist on every Linux;
    // clock_gettime writes only into `ts`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Monotonic nanoseconds now; the same clock as [`SystemClock::stamp`].
#[inline]
pub fn mono_ns() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

/// Wall-clock nanoseconds now; the same clock as [`SystemClock::wall_ns`].
#[inline]
pub fn wall_ns() -> u64 {
    read(libc::CLOCK_REALTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_plausible_and_monotonic() {
        let c = SystemClock;
        // After 2020-01-01 and before 2100.
        assert!(c.wall_ns() > 1_577_836_800_000_000_000 && c.wall_ns() < 4_102_444_800_000_000_000);
        let a = c.stamp();
        let b = c.stamp();
        assert!(b >= a);
    }
}
