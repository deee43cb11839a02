//! The command line: `maxx run | replay | sim | config check | kill | tail | top | bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// The default config, relative to the working directory.
pub const DEFAULT_CONFIG: &str = "config/agent_config.yaml";

/// maxx: an autonomous trading engine with a pinned, lock-free hot path.
#[derive(Debug, Parser)]
#[command(name = "maxx", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every agent: feeds, alpha, risk, execution (paper) and the cold side.
    Run(RunArgs),
    /// Replay captured venue frames through the hot path with the paper venue.
    Replay(ReplayArgs),
    /// Run a local venue simulator.
    Sim(SimArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Trip the kill switch of the running instance: HALTED, every open order cancelled.
    Kill(KillArgs),
    /// Print a Redis stream live, one readable line per entry.
    Tail(TailArgs),
    /// Terminal dashboard over a running instance's Prometheus endpoint.
    Top(TopArgs),
    /// Drive the real hot path from in-memory frames and report HDR latency percentiles,
    /// against baselines measured in the same run.
    Bench(BenchArgs),
}

/// `maxx bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Config file (instruments, alpha, risk, paper venue, `sim.binance` seed and prices,
    /// `hot.wait`); the bench tunes Alpha and Risk so that orders happen (see the README).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Binance capture file (`<recv_ns> <frame>` lines, `.gz` read transparently) instead of
    /// the seeded simulator's frames.
    #[arg(long)]
    pub capture: Option<PathBuf>,
    /// Frames to hand over (cycling through the frame set); default 200000, or rate x duration.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Open loop: frames per second, each stamped with its scheduled time.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "flat_out")]
    pub rate: Option<f64>,
    /// As fast as the ring to Alpha takes them (the default).
    #[arg(long)]
    pub flat_out: bool,
    /// Stop after this long (e.g. `1s`, `10m`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Frames run through the pipeline before measuring (default: a tenth, at most 10000).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Thread layout: `auto`, `pinned` (one core per stage) or `fused`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "pinned", "fused"])]
    pub layout: String,
    /// Directory for the `.hgrm` files and `latency.svg`.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Baselines measured in the same run, comma-separated: `floor`, `tokio`, `crossbeam`.
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<String>,
    /// Simulator seed (default: `sim.binance.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Soak: report RSS and tick-to-order at the start and the end of the run (needs
    /// `--duration`).
    #[arg(long)]
    pub soak: bool,
    /// Leave the records unstamped: no per-hop table (decode, each ring hop, each stage), and
    /// two clock reads fewer per tick and per stage, to measure what the stamps cost.
    #[arg(long)]
    pub no_hops: bool,
    /// Wire to wire: a loopback WebSocket server sends the frames at `--rate` (default 2000/s)
    /// to the real feed; orders go over loopback HTTP to a mock Binance venue; the latency is
    /// frame sent to order received, against a tokio-tungstenite pipeline in the same run.
    #[arg(long, conflicts_with_all = ["soak", "flat_out", "baseline"])]
    pub wire: bool,
    /// `--wire` only: the cores the tokio baseline's workers may use, one worker per core:
    /// `same` (default: the cores maxx's hot threads were given, so both pipelines write their
    /// orders from the same cores) or `all` (every available core).
    #[arg(long, default_value = "same", value_parser = ["same", "all"], requires = "wire")]
    pub tokio_cores: String,
}

/// `maxx top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The metrics endpoint; defaults to `http://<telemetry.metrics_listen>/metrics` from the
    /// config, else `http://127.0.0.1:9100/metrics`. Plain http only.
    #[arg(long)]
    pub url: Option<String>,
    /// Config file to take `telemetry.metrics_listen` from (default:
    /// `config/agent_config.yaml` if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Refresh interval in milliseconds; rates are measured over it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub interval_ms: u64,
    /// No terminal takeover: scrape twice, `--interval-ms` apart, print one frame as plain text
    /// and exit (1 if the endpoint cannot be scraped).
    #[arg(long)]
    pub once: bool,
}

/// `maxx tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The stream: `ticks:<symbol>`, `signals:<symbol>`, `orders`, `fills` or `pnl` (any other
    /// stream is printed raw).
    pub stream: String,
    /// Read through this consumer group (created if missing) and acknowledge what is printed.
    #[arg(long)]
    pub group: Option<String>,
    /// Where to start: `$` for new entries only, `0` for the whole stream, or an entry id
    /// (`<ms>-<n>`) to print what follows it. With `--group`, where a new group starts.
    #[arg(long, default_value = "$")]
    pub from: maxx_cold::bus::consume::ReadFrom,
    /// Redis URL; defaults to the config's `redis.url`, else `redis://127.0.0.1:6379`.
    #[arg(long)]
    pub redis: Option<String>,
    /// Exit after printing this many entries.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Config file to take `redis.url` from (default: `config/agent_config.yaml` if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `maxx kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Config file of the running instance (its `http.listen`, token and `risk.kill_file`).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// HTTP address of the instance, when it differs from `http.listen` (e.g. bound to port 0).
    #[arg(long)]
    pub addr: Option<std::net::SocketAddr>,
}

/// `maxx run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Stop after this long (e.g. `30s`, `500ms`, `5m`); runs until SIGINT/SIGTERM otherwise.
    #[arg(long = "for", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// `maxx replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The venue whose wire format the captures hold.
    #[arg(long)]
    pub venue: String,
    /// Capture files (`<recv_ns> <frame>` lines, `.gz` read transparently), replayed in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `max` (default) or a multiple of real time such as `1` or `10`.
    #[arg(long, default_value = "max", value_parser = parse_speed)]
    pub speed: Speed,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print one JSON object per record of this kind: ticks, signals, orders or fills.
    #[arg(long, value_parser = ["ticks", "signals", "orders", "fills"])]
    pub emit: Option<String>,
    /// Config file (instruments, alpha, risk and paper-venue settings).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

/// Replay pacing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Speed {
    /// As fast as possible.
    Max,
    /// This multiple of real time.
    Times(f64),
}

/// `maxx sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Which venue to simulate.
    #[arg(long)]
    pub venue: String,
    /// Address to listen on (overrides `sim.<venue>.bind`).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Serve this capture file's frames (paced by their receive times, to each connection)
    /// instead of the synthetic market.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Config file (instruments and simulator settings).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Stop after this long; runs until SIGINT/SIGTERM otherwise.
    #[arg(long = "for", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// `maxx config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: exit 0 if it is valid, 1 with every problem listed otherwise.
    Check {
        /// The file to check.
        path: PathBuf,
    },
}

/// Parses `250ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 500ms, 5m, 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("duration must be greater than zero".to_string());
    }
    Ok(d)
}

/// Parses `max` or a positive multiple of real time.
pub fn parse_speed(s: &str) -> Result<Speed, String> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Speed::Times(x)),
        _ => Err(format!(
            "invalid speed {s:?}: use `max` or a positive number such as 1 or 10"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_speeds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("10"), Ok(Speed::Times(10.0)));
        assert!(parse_speed("-1").is_err());
        assert!(parse_speed("NaN").is_err());
    }
}
