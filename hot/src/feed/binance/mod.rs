//! Binance Spot market data: the wire vocabulary ([`messages`]) and the allocation-free
//! decoder ([`parse`]) that turns stream frames into ticks.
//!
//! The connector and the stream subscription (`subscription.rs`) join this folder later; the
//! decoder does not depend on them, so it is tested against docs fixtures and real captures on
//! its own.

pub mod messages;
pub mod parse;
