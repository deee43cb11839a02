//! The `maxx` binary's library half: command-line parsing and the wiring of hot and cold for
//! each subcommand. `main.rs` only dispatches and maps errors to exit codes.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod commands;
pub mod run;
pub mod tail;
pub mod top;
pub mod wire;
