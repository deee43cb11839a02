//! Binance Spot market data: the wire vocabulary ([`messages`]) and the allocation-free
//! decoder ([`parse`]) that turns stream frames into ticks.
//!
//! Stream names, connection paths and SUBSCRIBE messages live in [`subscription`]; the
//! connection itself is the venue-neutral [`crate::feed::ws::WsFeed`]. The decoder depends on
//! neither, so it is tested against docs fixtures and real captures on its own.

pub mod fast;
pub mod messages;
pub mod parse;
pub mod subscription;
