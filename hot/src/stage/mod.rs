//! The hot stages. Each owns its state and exposes one `process`-style method over its inputs;
//! the runtime's tasks connect them to their rings.

pub mod alpha;
pub mod exec;
pub mod risk;
