//! Bybit v5 public market data (spot and linear): the wire vocabulary ([`messages`]) and the
//! allocation-free decoder ([`parse`]) that turns pushes into ticks.
//!
//! Topics, endpoint paths, subscribe requests and the client ping live in [`subscription`];
//! the connection itself is the venue-neutral [`crate::feed::ws::WsFeed`]. The decoder depends
//! on neither, so it is tested against the docs fixtures, a real v5 order-book file and
//! generated frames on its own.
//!
//! Unlike Binance, Bybit keeps top-of-book state on our side: `orderbook.1` deltas and linear
//! `tickers` deltas leave out what did not change, so [`parse::BybitDecoder`] holds the last
//! known best bid and ask of every instrument in `Vec`s sized when it is built.
//!
//! The decoder comes in two flavours: [`parse::BybitDecoder::spot`] for a spot connection (the
//! one the engine opens), whose trade ids only increase, so the feed task can deduplicate the
//! trades of a make-before-break resubscribe; and [`parse::BybitDecoder::new`], which takes
//! linear frames too (hashed UUID trade ids) but gives the feed task no numbering to judge.

pub mod messages;
pub mod parse;
pub mod subscription;
