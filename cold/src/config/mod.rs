//! Configuration: `agent_config.yaml` in, a fully validated [`Config`] out.
//!
//! Loading has two stages, so that no component ever sees an unchecked value:
//! 1. [`raw`]: YAML text becomes a plain tree of nodes, with every number kept as the exact
//!    text written in the file (money never passes through `f64`).
//! 2. [`validate`]: a hand-written walker checks that tree against the schema, collecting
//!    *every* problem with its key path (`risk.daily_drawdown_pct`, `symbols[1].venues.kraken`),
//!    and only when there is none builds the typed [`Config`] out of maxx-hot's exact types.
//!
//! Unknown keys are errors everywhere, spec keys are required, extension keys default to the
//! values shipped in `config/agent_config.yaml` (which documents every key). A rejected file
//! is rejected whole: hot reload keeps the running config and reports the [`ConfigErrors`].

mod cron;
mod model;
mod raw;
mod validate;
mod walk;

use std::fmt;
use std::path::Path;

pub use cron::Cron;
pub use maxx_hot::feed::binance::subscription::StreamKind;
pub use model::{
    AlertsConfig, AlphaConfig, Assets, BreakoutConfig, CLIENT_ID_PREFIX_MAX, Config, ExecConfig, FeedConfig, FeedUrl,
    GovernorConfig, GrpcConfig, HotConfig, HttpConfig, JournalFsync, LiveVenueConfig, LogFormat, LogLevel,
    MarketDataConfig, MeanRevConfig, MomentumConfig, PaperConfig, RedisConfig, RiskConfig, SentimentConfig, SimConfig,
    SizingMode, StopConfig, StreamRetention, SymbolConfig, TelemetryConfig, Weights,
};

/// Where `maxx run` looks for its config when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/agent_config.yaml";

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Problem {
    /// Where: a key path such as `alpha.weights.momentum` or `symbols[1].venues.kraken`;
    /// `line L column C` for YAML syntax errors; the file name when it cannot be read;
    /// `(root)` when the document is not a mapping.
    pub path: String,
    /// What is wrong, e.g. `must be a number between 0 and 100, got "abc"`.
    pub message: String,
}

/// Every problem found in a config file, in the order they were found.
///
/// Displayed as one `path: message` line per problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The key paths of all problems, in order (handy in tests and summaries).
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.path.as_str()).collect()
    }
}

/// Parses and validates config text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let tree = raw::parse_tree(text).map_err(|p| ConfigErrors(vec![p]))?;
    let mut walker = walk::Walker::default();
    match validate::config(&mut walker, &tree) {
        Some(config) if walker.problems.is_empty() => Ok(config),
        _ => {
            if walker.problems.is_empty() {
                // Every reader reports before giving up; this only guards against a reader
                // that forgot to, so that a refusal is never silent.
                walker.report("(root)", "internal error: config refused without a reason");
            }
            Err(ConfigErrors(walker.problems))
        }
    }
}

/// Reads and validates a config file; a read error is reported as one problem on the path.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Problem {
            path: path.display().to_string(),
            message: format!("cannot read file: {e}"),
        }])
    })?;
    let mut config = parse(&text)?;
    config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
    Ok(config)
}

/// `maxx config check PATH`: the same as [`load`]; the CLI prints each problem and exits 1.
pub fn check_file(path: &Path) -> Result<Config, ConfigErrors> {
    load(path)
}
