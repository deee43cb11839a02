//! Coinbase market data, in both of the venue's WebSocket formats: Advanced Trade (the current
//! API: an envelope with `channel`, `sequence_num` and `events[]`) and the legacy Exchange feed
//! (flat messages told apart by `type`, the format of the 2021 captures).
//!
//! The wire vocabulary is in [`messages`], the allocation-free decoder that handles both formats
//! in [`parse`], and endpoints and subscribe messages in [`subscription`]; the connection itself
//! is the venue-neutral [`crate::feed::ws::WsFeed`]. The decoder depends on neither, so it is
//! tested against the docs fixtures, the real capture and the simulator on its own.

pub mod messages;
pub mod parse;
pub mod subscription;
