//! maxx-hot: everything that runs on the pinned, latency-critical threads.
//!
//! Exact money types ([`num`]), identities ([`ids`]), the `Copy` records that travel through the
//! rings ([`records`]), venue decoders and connectors ([`feed`]), the stages and the runtime
//! that wires them onto threads.
//!
//! **Invariant:** nothing here depends on tokio, takes a lock, logs, or allocates in steady
//! state. The cold side talks to this crate only through rings.
#![deny(missing_docs)]

pub mod board;
pub mod capture;
pub mod clock;
pub mod feed;
pub mod gateway;
pub mod ids;
pub mod kill;
pub mod num;
pub mod pnl;
pub mod records;
pub mod runtime;
pub mod source;
pub mod stage;
pub mod stats;
pub mod sync;
pub mod topology;
pub mod wait;
pub mod wiring;
