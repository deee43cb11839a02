//! `maxx run`: start the embedded simulators, the hot threads and the cold side; stop on
//! SIGINT, SIGTERM or `--for`; drain; print the summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use maxx_cold::alerts::{Alerter, FeedState, FeedWatch, Webhook};
use maxx_cold::config::{Config, FeedUrl};
use maxx_cold::engine::spec;
use maxx_cold::recorder;
use maxx_cold::summary::{Latency, summarize};
use maxx_cold::taps::{Record, TapDrain};
use maxx_cold::venues::{RunningSim, feed_source, start_sim};
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::num::Money;
use maxx_hot::runtime::engine::{Engine, EngineStats, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{HotThreads, available_cores, confine_current_thread, plan, spawn};
use maxx_hot::stage::exec::PaperVenue;
use maxx_hot::topology::StageName;
use maxx_hot::wiring::ColdEnds;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

use crate::cli::RunArgs;

/// How often the cold side empties the taps.
const DRAIN_EVERY: Duration = Duration::from_millis(1);
/// How often feed health is checked for alerts.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// At most one webhook POST per feed and alert kind in this period (all are logged).
const ALERT_EVERY: Duration = Duration::from_secs(30);

/// Runs every agent until stopped; returns after the summary is printed.
pub fn run(args: &RunArgs, config: Config) -> Result<()> {
    // Read the core list once, before anything is pinned, and place the stages first: the main
    // thread then confines itself to the cold cores, so the simulators and tokio workers it
    // starts stay off the hot cores, while each hot thread pins itself to its own.
    let cores = available_cores();
    let mut stages: Vec<StageName> = config.enabled_feeds().map(|(v, _)| StageName::MarketData(v)).collect();
    stages.extend([StageName::Alpha, StageName::Risk, StageName::Exec]);
    let placement = plan(config.hot.layout, &config.hot.cores, &stages, &cores).map_err(anyhow::Error::msg)?;
    for t in &placement.threads {
        let stages: Vec<String> = t.stages.iter().map(ToString::to_string).collect();
        info!(thread = %t.name, core = ?t.core, stages = %stages.join(","), "hot thread");
    }
    info!(
        layout = placement.layout.name(),
        wait = config.hot.wait.name(),
        cold_cores = ?placement.cold_cores,
        "hot path placed"
    );
    confine_current_thread(&placement.cold_cores);
    let spec = spec(&config);
    let mut sims: Vec<RunningSim> = Vec::new();
    let mut feeds = Vec::new();
    for (venue, feed) in config.enabled_feeds() {
        let sim = if feed.url == FeedUrl::Sim {
            let handle = start_sim(&config, venue, None, None).map_err(anyhow::Error::msg)?;
            info!(venue = venue.name(), addr = %handle.local_addr(), "simulator listening");
            sims.push(handle);
            sims.last()
        } else {
            None
        };
        let stats = Arc::new(FeedStats::new(venue));
        let (source, decoder) = feed_source(&config, venue, feed, sim, &stats).map_err(anyhow::Error::msg)?;
        feeds.push(FeedInput {
            venue,
            source,
            decoder,
            stats,
        });
    }
    let Engine {
        tasks,
        mut cold,
        flags,
        stats,
    } = build(&spec, feeds, PaperVenue::new(config.exec.paper.taker_fee_bps_milli));
    let mut recorders = Vec::new();
    if let Some(dir) = &config.market_data.capture_dir {
        for (venue, ring) in std::mem::take(&mut cold.captures) {
            let r = recorder::spawn(dir, venue, ring)
                .with_context(|| format!("market_data.capture_dir: {}", dir.display()))?;
            info!(venue = venue.name(), path = %r.path().display(), "capturing raw frames");
            recorders.push(r);
        }
    }
    let threads = spawn(&placement.threads, tasks, config.hot.wait, || {}).context("spawning hot threads")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(placement.cold_cores.len().clamp(1, 4))
        .thread_name("cold")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let index = Arc::clone(&spec.index);
    let outcome = runtime.block_on(cold_side(args, &config, &index, cold, &stats, &flags, threads));
    for s in sims {
        s.shutdown();
    }
    for r in recorders {
        let path = r.path().to_path_buf();
        match r.finish() {
            Ok(frames) => info!(path = %path.display(), frames, "capture closed"),
            Err(e) => warn!(path = %path.display(), error = %e, "capture failed"),
        }
    }
    outcome
}

/// Drains the taps, prints status lines, waits for a stop, then drains the engine to the end.
async fn cold_side(
    args: &RunArgs,
    config: &Config,
    index: &InstrumentIndex,
    mut cold: ColdEnds,
    stats: &EngineStats,
    flags: &maxx_hot::runtime::Flags,
    threads: HotThreads,
) -> Result<()> {
    let started = Instant::now();
    let mut drain = TapDrain::new(index);
    let mut drain_every = tokio::time::interval(DRAIN_EVERY);
    drain_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut status_every = tokio::time::interval(config.hot.status_interval);
    status_every.tick().await;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(100 * 365 * 86_400)));
    tokio::pin!(deadline);
    let mut last = Snapshot::default();
    let mut sink = |r: Record| log_record(index, r);
    let webhook = match &config.alerts.webhook_url {
        Some(url) => Some(Webhook::parse(url).map_err(|e| anyhow::anyhow!("alerts.webhook_url: {e}"))?),
        None => None,
    };
    let mut alerter = Alerter::new(webhook, ALERT_EVERY);
    let mut watch = FeedWatch::new(stats.feeds.clone(), config.market_data.stale_after);
    let mut watch_every = tokio::time::interval(WATCH_EVERY);
    let reason = loop {
        tokio::select! {
            _ = drain_every.tick() => {
                drain.drain(&mut cold, &mut sink);
                if threads.is_finished() {
                    break "hot threads ended";
                }
            }
            _ = status_every.tick() => {
                last = status_line(config, stats, &watch, &mut drain, started, last);
            }
            _ = watch_every.tick() => {
                for alert in watch.check() {
                    alerter.raise(alert);
                }
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = &mut deadline => break "--for elapsed",
        }
    };
    info!(reason, "stopping: feeds close, rings drain");
    flags.request_stop();
    while !threads.is_finished() {
        drain.drain(&mut cold, &mut sink);
        tokio::time::sleep(DRAIN_EVERY).await;
    }
    let joined = threads.join();
    drain.drain(&mut cold, &mut sink);
    let feeds: Vec<&FeedStats> = stats.feeds.iter().map(|f| &**f).collect();
    let summary = summarize(index, &feeds, &stats.alpha, &stats.risk, &stats.exec, &drain);
    println!("--- summary ({:.1}s) ---", started.elapsed().as_secs_f64());
    print!("{}", summary.to_text());
    println!("equity        {}", equity(config, &drain));
    info!(reason, orders = summary.orders, fills = summary.fills, "stopped");
    joined.map_err(anyhow::Error::msg)
}

/// Counters at the previous status line, for rates.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    ticks: u64,
    at: Option<Instant>,
}

fn status_line(
    config: &Config,
    stats: &EngineStats,
    watch: &FeedWatch,
    drain: &mut TapDrain,
    started: Instant,
    last: Snapshot,
) -> Snapshot {
    let now = Instant::now();
    let ticks: u64 = stats.feeds.iter().map(|f| f.trades.get() + f.quotes.get()).sum();
    let secs = last.at.map_or(now - started, |t| now - t).as_secs_f64().max(1e-9);
    let rate = (ticks - last.ticks) as f64 / secs;
    let recent = Latency::of(&drain.take_recent_latency());
    let feeds: Vec<String> = watch
        .health()
        .iter()
        .map(|h| {
            let state = match h.state {
                FeedState::Connected => "up",
                FeedState::Stale => "stale",
                FeedState::Reconnecting => "down",
            };
            format!("{}:{state}", h.venue)
        })
        .collect();
    println!(
        "[{:>5.0}s] ticks/s {:>7.0} | signals {:>8} | orders {:>6} | fills {:>6} | equity {} | p99 tick-to-order {} | {}",
        (now - started).as_secs_f64(),
        rate,
        stats.alpha.signals.get(),
        stats.exec.orders.get(),
        stats.exec.fills.get(),
        equity(config, drain),
        if recent.count == 0 {
            "-".to_string()
        } else {
            format!("{} ns", recent.p99)
        },
        feeds.join(" ")
    );
    Snapshot { ticks, at: Some(now) }
}

/// Starting balance + realized − fees + unrealized.
fn equity(config: &Config, drain: &TapDrain) -> Money {
    let start = config.exec.paper.starting_balance;
    [drain.realized(), drain.fees().neg(), drain.unrealized()]
        .into_iter()
        .fold(start, |acc, v| acc.checked_add(v).unwrap_or(acc))
}

/// Turns records into log lines: orders and fills at info, refusals at debug, bad-frame
/// samples at warn (the hot path sends at most one per feed per second).
fn log_record(index: &InstrumentIndex, r: Record) {
    match r {
        Record::Order(o) => info!(
            order_id = o.id.0,
            symbol = %index.get(o.instrument).symbol,
            side = o.side.name(),
            qty = %o.qty,
            "order sent"
        ),
        Record::Report(maxx_hot::records::ExecReport::Fill(f)) => info!(
            order_id = f.order_id.0,
            symbol = %index.get(f.instrument).symbol,
            side = f.side.name(),
            price = %f.price,
            qty = %f.qty,
            fee = %f.fee,
            "fill"
        ),
        Record::Report(maxx_hot::records::ExecReport::Reject {
            order_id,
            instrument,
            reason,
            ..
        }) => warn!(
            order_id = order_id.0,
            symbol = %index.get(instrument).symbol,
            reason = reason.name(),
            "order rejected by venue"
        ),
        Record::Refusal(x) => debug!(
            symbol = %index.get(x.intent.instrument).symbol,
            reason = x.reason.name(),
            "intent refused by risk"
        ),
        Record::Bad(b) => warn!(
            venue = b.venue.name(),
            reason = b.reason,
            field = b.field,
            frame_len = b.frame_len,
            sample = %b.excerpt(),
            "bad frame skipped"
        ),
        Record::Tick(_) | Record::Signal(_) | Record::Report(_) => {}
    }
}
