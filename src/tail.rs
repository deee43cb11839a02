//! `maxx tail STREAM`: prints a Redis stream live, one readable line per entry, for operators.
//!
//! Entries of the bus streams are decoded with the same typed reader the agents use
//! ([`maxx_cold::bus::consume`]), so what `tail` shows is what a consumer would get; an entry
//! that does not decode is printed raw with the reason, never fatal. Streams without a known
//! schema (such as `fills:dead`) are printed raw.
//! Without `--group` it reads with `XREAD` and changes nothing in Redis; with `--group` it
//! reads through that consumer group and acknowledges each entry once printed.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::consume::{
    Consumer, ConsumerOptions, RawEntry, ReadFrom, Schema, StreamReader, StreamRecord, TypedEntry, decode,
};
use maxx_cold::logging::rfc3339;
use maxx_hot::records::{Liquidity, OrderKind, Origin};
use tracing_subscriber::EnvFilter;

use crate::cli::{DEFAULT_CONFIG, TailArgs};
use crate::commands::load_config;

/// The URL used when neither `--redis` nor a config gives one.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// Entries asked for per read.
const BATCH: u64 = 100;
/// How long one read waits for new entries before asking again.
const BLOCK: Duration = Duration::from_secs(1);

/// Runs `maxx tail`.
pub fn tail_cmd(args: &TailArgs) -> Result<ExitCode> {
    let endpoint = match redis_endpoint(args) {
        Ok(endpoint) => endpoint,
        Err(code) => return Ok(code),
    };
    // Reconnect notices go to stderr, so the operator sees why the output paused.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match &args.group {
            Some(group) => tail_group(args, &endpoint, group).await,
            None => tail_plain(args, &endpoint).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--redis URL` (with default timeouts, no TLS CA, any password in the URL), else the config's
/// Redis endpoint (`redis.url`, `redis.password_env`, `redis.tls_ca_file`, timeouts; the given
/// `--config`, or the default config when it exists), else [`DEFAULT_URL`]. A config with
/// problems, or whose password or CA file cannot be read, is reported and exits 1.
fn redis_endpoint(args: &TailArgs) -> Result<RedisEndpoint, ExitCode> {
    if let Some(url) = &args.redis {
        return Ok(RedisEndpoint::new(url.as_str()));
    }
    let path = match &args.config {
        Some(p) => p.as_path(),
        None if Path::new(DEFAULT_CONFIG).is_file() => Path::new(DEFAULT_CONFIG),
        None => return Ok(RedisEndpoint::new(DEFAULT_URL)),
    };
    let config = load_config(path)?;
    RedisEndpoint::from_config(&config.redis).map_err(|e| {
        eprintln!("{}: {e}", path.display());
        ExitCode::from(1)
    })
}

/// Counts printed entries against `--count`.
struct Budget(Option<u64>);

impl Budget {
    /// How many more may be read in one go.
    fn batch(&self) -> u64 {
        self.0.map_or(BATCH, |left| left.min(BATCH))
    }

    /// Takes one; `false` once the budget is spent.
    fn take(&mut self) -> bool {
        match &mut self.0 {
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
            None => true,
        }
    }

    fn spent(&self) -> bool {
        self.0 == Some(0)
    }
}

async fn tail_plain(args: &TailArgs, endpoint: &RedisEndpoint) -> Result<()> {
    let mut budget = Budget(args.count);
    let known = Schema::of(&args.stream).is_ok();
    let mut reader = StreamReader::new(
        endpoint,
        &args.stream,
        args.from.clone(),
        budget.batch() as usize,
        BLOCK,
    )
    .with_context(|| format!("cannot read {}", args.stream))?;
    let mut out = std::io::stdout().lock();
    while !budget.spent() {
        let batch = reader
            .next_batch()
            .await
            .with_context(|| format!("cannot read {}", args.stream))?;
        for raw in batch {
            if !budget.take() {
                break;
            }
            let line = if known {
                match decode(&args.stream, &raw) {
                    Ok(entry) => line(&args.stream, &entry),
                    Err(e) => undecodable(&args.stream, &raw, &e.problem),
                }
            } else {
                format!("{} {} {raw}", args.stream, raw.id)
            };
            if !print(&mut out, &line) {
                return Ok(());
            }
        }
    }
    Ok(())
}

async fn tail_group(args: &TailArgs, endpoint: &RedisEndpoint, group: &str) -> Result<()> {
    let mut budget = Budget(args.count);
    let options = ConsumerOptions {
        count: budget.batch() as usize,
        block: BLOCK,
        start: match &args.from {
            ReadFrom::End => "$".to_string(),
            ReadFrom::After(id) if *id == Default::default() => "0".to_string(),
            ReadFrom::After(id) => id.to_string(),
        },
        ..ConsumerOptions::default()
    };
    let name = format!("tail-{}", std::process::id());
    let mut consumer = Consumer::new(endpoint, &args.stream, group, &name, options)
        .await
        .with_context(|| format!("cannot read {} in group {group}", args.stream))?;
    let mut out = std::io::stdout().lock();
    while !budget.spent() {
        let batch = consumer
            .next_batch()
            .await
            .with_context(|| format!("cannot read {} in group {group}", args.stream))?;
        // Failures are shown as they are delivered; the consumer keeps them pending or moves
        // them to the dead-letter stream, so they are not acknowledged here.
        for f in &batch.failures {
            if !budget.take() {
                break;
            }
            let mut text = undecodable(&args.stream, &f.raw, &f.error.problem);
            if f.dead_lettered {
                text.push_str(&format!(" (moved to {}:dead)", args.stream));
            }
            if !print(&mut out, &text) {
                return Ok(());
            }
        }
        let mut printed = Vec::new();
        for entry in &batch.entries {
            if !budget.take() {
                break;
            }
            if !print(&mut out, &line(&args.stream, entry)) {
                break;
            }
            printed.push(entry.id);
        }
        // Only what was printed is acknowledged; the rest stays pending for the group.
        consumer
            .ack(&printed)
            .await
            .with_context(|| format!("cannot acknowledge entries of {}", args.stream))?;
        if printed.len() < batch.entries.len() && !budget.spent() {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes one line; `false` if stdout is gone (e.g. `maxx tail ... | head`).
fn print(out: &mut impl Write, line: &str) -> bool {
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// An event time in ns since the epoch as RFC 3339 UTC with microseconds.
fn time(ns: u64) -> String {
    rfc3339(ns / 1_000_000_000, (ns % 1_000_000_000 / 1_000) as u32)
}

/// One entry as a line, e.g.
/// `2025-11-26T10:00:00.123456Z fills order 42 buy 0.001 BTCUSDT @ 62650.2 fee 0.046 binance taker`.
pub fn line(stream: &str, entry: &TypedEntry) -> String {
    let ts = time(entry.record.ts());
    match &entry.record {
        StreamRecord::Tick(t) => format!(
            "{ts} {stream} trade {} {} {} {} @ {} {}",
            t.seq,
            t.side.name(),
            t.volume,
            t.symbol,
            t.price,
            t.venue
        ),
        StreamRecord::Signal(s) => format!(
            "{ts} {stream} {} score {} confidence {}",
            s.side.name(),
            s.score,
            s.confidence
        ),
        StreamRecord::Order(o) => {
            let kind = match o.kind {
                OrderKind::Market => "market".to_string(),
                OrderKind::Limit(p) => format!("limit @ {p}"),
            };
            let origin = match o.origin {
                Origin::Alpha => "alpha",
                Origin::Manual => "manual",
                Origin::Risk => "risk",
            };
            format!(
                "{ts} {stream} order {} {} {} {} {kind} {} {} {origin}",
                o.id,
                o.side.name(),
                o.qty,
                o.symbol,
                o.tif.name(),
                o.venue
            )
        }
        StreamRecord::Fill(f) => {
            let liquidity = match f.liquidity {
                Liquidity::Maker => "maker",
                Liquidity::Taker => "taker",
            };
            format!(
                "{ts} {stream} order {} {} {} {} @ {} fee {} {} {liquidity}",
                f.order_id,
                f.side.name(),
                f.qty,
                f.symbol,
                f.price,
                f.fee,
                f.venue
            )
        }
        StreamRecord::Pnl(p) => format!(
            "{ts} {stream} equity {} realized {} unrealized {}",
            p.equity, p.realized, p.unrealized
        ),
    }
}

/// An entry that does not decode: where it is, why, and its raw fields.
fn undecodable(stream: &str, raw: &RawEntry, problem: &dyn std::fmt::Display) -> String {
    format!("{stream} {} undecodable: {problem} | {raw}", raw.id)
}
