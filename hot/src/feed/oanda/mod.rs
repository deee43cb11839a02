//! OANDA v20 pricing stream: the wire vocabulary ([`messages`]), the allocation-free decoder
//! and time parsers ([`parse`]) and the stream request ([`subscription`]).
//!
//! OANDA is not a WebSocket venue: prices arrive as newline-delimited JSON in one long,
//! chunked HTTP/1.1 response (`venues.md` §4). The connection is the venue-neutral
//! [`HttpStreamFeed`](crate::feed::http_stream::HttpStreamFeed), which hands the decoder one
//! line per frame; the decoder depends on neither, so it is tested against the docs fixtures and
//! real EUR/USD ticks on its own.
//!
//! OANDA is a dealer quote stream: there are no trade prints, so every tick from this venue is
//! a quote (best bid and ask with their liquidity). The stream is conflated to at most four
//! prices per instrument per second and carries no sequence numbers; see [`parse`] for how
//! `seq` is numbered and how stale prices are dropped.
//!
//! Cost, from a quick release-mode loop (not a criterion bench; rustc 1.95, 2-vCPU AMD EPYC VM,
//! no tuning, measured while other builds ran, load about 5): a price line costs about 2 ns a
//! byte (like the Binance decoder, whose cost is mostly simd-json's parse): 530-790 ns for a one-level live line (265 bytes),
//! 610-880 ns for the docs' two-level EUR_USD line (339 bytes), about 1.08 µs for a four-level
//! line (473 bytes); a heartbeat 100-160 ns; the RFC 3339 parse alone 25-37 ns. The Binance
//! combined trade frame took 330-500 ns in the same runs (340 ns unloaded). A scanner that
//! stopped after the best levels would skip most of the parse; nothing needs it yet at four
//! prices per instrument per second.

pub mod messages;
pub mod parse;
pub mod subscription;
