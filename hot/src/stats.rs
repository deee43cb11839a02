//! Counters a hot stage publishes for the cold side to read.
//!
//! Each counter has exactly one writer (the stage's thread), so an increment is a relaxed load
//! plus a relaxed store: no read-modify-write, no lock prefix, no contention. Readers see a
//! value that is at most a few increments old, which is all a metric needs.

use core::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds `n`. Must only be called from the counter's owning thread.
    #[inline]
    pub fn add(&self, n: u64) {
        // Relaxed on both sides: the value carries no happens-before to other data; readers
        // (`get`) only want an eventually up-to-date number.
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Sets an absolute value (for gauges such as a position). Single writer only.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
