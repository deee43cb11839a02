//! maxx-cold: the services off the hot path (config, taps, venue simulators, portfolio,
//! telemetry).
#![forbid(unsafe_code)]

pub mod agent;
pub mod alerts;
pub mod attribution;
pub mod bus;
pub mod config;
pub mod control;
pub mod desk;
pub mod emit;
pub mod engine;
pub mod files;
pub mod gateways;
pub mod governor;
pub mod grpc;
pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mockvenue;
pub mod portfolio;
pub mod recorder;
pub mod replay;
pub mod risk_state;
pub mod sim;
pub mod summary;
pub mod taps;
pub mod telemetry;
pub mod venues;
