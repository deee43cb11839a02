//! Venue order-entry gateways: what the Execution stage talks to when an order leaves the engine.
//!
//! This folder will hold the `Gateway` implementations driven from the Execution hot thread (the
//! paper venues and the real Binance spot and Bybit v5 order-entry clients), their request
//! builders and their reject-code maps. So far it holds request signing: [`sign`] (the shared
//! [`sign::Secret`] and allocation-free HMAC-SHA256 into hex), and one module per venue with that
//! venue's signing rule, [`binance`] and [`bybit`].

pub mod binance;
pub mod bybit;
pub mod sign;
