//! The one door to atomics for the crate's hand-written lock-free code ([`crate::board`],
//! [`crate::kill`]).
//!
//! Normally these are the standard library's atomics. Built with `RUSTFLAGS="--cfg loom"`, they
//! are loom's, so the same code can be model-checked: loom runs a test under every
//! interleaving (and every value a relaxed load may legally return) up to its bounds. Code that
//! only counts (`stats::Counter`) or raises flags uses `std` directly; anything whose
//! correctness rests on an `Ordering` goes through here.
//!
//! Under `cfg(loom)` these atomics work only inside `loom::model`, so only the model tests run:
//! `RUSTFLAGS="--cfg loom" cargo test -p maxx-hot --lib -- board kill`.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicU64, Ordering, fence};

/// Says "this thread is waiting for another's progress": a CPU pause hint normally; under loom
/// a yield, without which loom would explore a spinning thread forever.
#[inline]
pub fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
