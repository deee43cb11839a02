//! Local venue simulators: real wire protocols over loopback, fed by a seeded synthetic market.
//!
//! They let the feed handlers, recorders and strategies run end to end without a venue
//! connection, in CI and on a laptop, with every run reproducible from its seed.
//! [`market`] generates the deterministic event sequence; each venue module (for now
//! [`binance`]) serves it over that venue's protocol exactly as `venues.md` documents it.
//!
//! The simulators use std threads and blocking sockets rather than tokio: they are test and
//! development tools, so plain threads keep them independent of any runtime a test may or may
//! not have, and their pacing is easy to follow.

pub mod binance;
pub mod broadcast;
pub mod bybit;
pub mod coinbase;
pub mod faults;
pub mod market;
pub mod oanda;
mod server;

pub use binance::{BinanceSimConfig, SimHandle, sample_symbols, spawn};
pub use broadcast::{Cursor, Lagged, SharedMarket};
pub use bybit::{BookUpdates, BybitSimConfig, BybitSimHandle};
pub use coinbase::{CoinbaseSimConfig, CoinbaseSimHandle};
pub use faults::{Due, Faults, Seen};
pub use market::{MarketError, MarketGen, SimBookTicker, SimEvent, SimSymbol, SimTrade};
pub use oanda::{OandaSimConfig, OandaSimHandle, fx_symbols};
