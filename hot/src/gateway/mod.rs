//! Venue order-entry gateways: what the Execution stage talks to when an order leaves the engine.
//!
//! The real venues' REST order entry lives here; the in-process paper venue lives with the
//! Execution stage ([`crate::stage::exec`]). Layers, bottom up:
//!
//! * [`sign`]: the shared [`sign::Secret`] and allocation-free HMAC-SHA256 into hex;
//! * [`http`]: a non-blocking HTTP/1.1 client (mio, rustls for `https://`), a few keep-alive
//!   connections, one request at a time on each, fixed buffers, per-request deadlines;
//! * [`json`]: an allocation-free reader for the venues' small JSON answers;
//! * [`rest`]: [`rest::RestGateway`], the order-entry state machine every REST venue shares
//!   (order table, the unknown-outcome rule, fills, rate-limit blocks, clock offset), which
//!   implements [`crate::stage::exec::Gateway`] for any [`rest::Protocol`];
//! * one module per venue with its signing rule, its requests and its reject-code map:
//!   [`binance`] ([`binance::BinanceSpotGateway`]) and [`bybit`] ([`bybit::BybitGateway`]).
//!
//! Configuration: [`rest::GatewayConfig`] (base URL, key, secret, receive window, deadlines,
//! poll intervals, our own rate limit, per-instrument decimals and assets). Real keys come from
//! the environment, `MAXX_BINANCE_API_KEY` / `MAXX_BINANCE_API_SECRET` and
//! `MAXX_BYBIT_API_KEY` / `MAXX_BYBIT_API_SECRET` ([`rest::GatewayConfig::credentials_from_env`]);
//! neither the key nor the secret has a `Debug` or `Display` that shows it.
//! Coinbase and OANDA order entry will follow the same shape.
//!
//! `cold/src/mockvenue` serves mock Binance and Bybit order entry on loopback for the tests in
//! `cold/tests/gateway_binance.rs` and `gateway_bybit.rs`.

pub mod binance;
pub mod bybit;
pub mod http;
pub mod json;
pub mod rest;
pub mod sign;
