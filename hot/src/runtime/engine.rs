//! Assembles one engine: rings, stages and tasks, from plain, validated parameters.
//!
//! The cold side turns the validated config into an [`EngineSpec`]; this module wires every
//! ring, both boards and the kill switch, sized to the instruments
//! ([`crate::wiring::wire_with`]), builds each stage, and returns the tasks ready to be run on
//! threads ([`super::spawn`]) or in lockstep ([`super::run_lockstep`]), plus the cold side's
//! ends (boards, manual queue and kill switch included) and the counters.

use std::sync::Arc;
use std::time::Duration;

use crate::ids::{InstrumentIndex, Venue};
use crate::source::{Decode, FrameSource};
use crate::stage::alpha::{Alpha, AlphaParams};
use crate::stage::exec::{Exec, ExecParams, Gateway};
use crate::stage::risk::{Risk, RiskParams};
use crate::topology::StageName;
use crate::wiring::{Capacities, ColdEnds, wire_with};

use super::stats::{AlphaStats, ExecStats, FeedStats, RiskStats};
use super::tasks::{AlphaTask, AnyTask, ExecTask, FeedTask, Flags, RiskTask};

/// Everything the hot stages need, validated.
#[derive(Clone, Debug)]
pub struct EngineSpec {
    /// The instruments.
    pub index: Arc<InstrumentIndex>,
    /// Alpha parameters.
    pub alpha: AlphaParams,
    /// Risk's limits and parameters; `risk.kill` starts the engine with the kill switch
    /// tripped.
    pub risk: RiskParams,
    /// Execution's parameters: the maker/taker rule, routing and venue health.
    pub exec: ExecParams,
    /// How often Alpha, Risk and Execution each hand over their latency histogram.
    pub histogram_every: Duration,
    /// Ring capacities.
    pub capacities: Capacities,
    /// No tick for this long restarts a live feed (`market_data.stale_after_ms`); `None` in
    /// replay, which also makes every feed count as live for Risk and Execution's router
    /// (otherwise a feed is live for them only while its state gauge says `LIVE`: not before
    /// its first tick, not while it reconnects after going stale).
    pub stale_after: Option<Duration>,
}

/// One feed's source, decoder and counters.
#[derive(Debug)]
pub struct FeedInput<S, D> {
    /// Which venue.
    pub venue: Venue,
    /// Where frames come from.
    pub source: S,
    /// How they are decoded.
    pub decoder: D,
    /// Its counters (shared with the source, which counts connects).
    pub stats: Arc<FeedStats>,
}

/// Counters of every stage.
#[derive(Clone, Debug)]
pub struct EngineStats {
    /// One per feed, in feed order.
    pub feeds: Vec<Arc<FeedStats>>,
    /// Alpha's.
    pub alpha: Arc<AlphaStats>,
    /// Risk's.
    pub risk: Arc<RiskStats>,
    /// Execution's.
    pub exec: Arc<ExecStats>,
}

/// A built engine, not yet running.
#[derive(Debug)]
pub struct Engine<S, D, G: Gateway> {
    /// Tasks by stage, feeds first, then Alpha, Risk, Execution.
    pub tasks: Vec<(StageName, AnyTask<S, D, G>)>,
    /// The cold side's ring ends.
    pub cold: ColdEnds,
    /// Stop and drain flags.
    pub flags: Arc<Flags>,
    /// Counters.
    pub stats: EngineStats,
}

/// Wires and builds an engine with these feeds and these gateways (one per venue orders may be
/// routed to).
pub fn build<S: FrameSource, D: Decode, G: Gateway>(
    spec: &EngineSpec,
    feeds: Vec<FeedInput<S, D>>,
    gateways: Vec<G>,
) -> Engine<S, D, G> {
    let venues: Vec<Venue> = feeds.iter().map(|f| f.venue).collect();
    let risk = Risk::new(spec.risk.clone());
    // Risk takes a command only with room for a whole trim in `risk_exec`; a smaller ring
    // would never have it.
    let mut capacities = spec.capacities;
    capacities.risk_exec = capacities.risk_exec.max(risk.max_trim_orders()).max(1);
    let wiring = wire_with(&venues, spec.index.len(), capacities);
    if spec.risk.kill {
        // Before Execution and Risk's task read it, so both count this trip as handled.
        wiring.cold.kill.trip();
    }
    let flags = Flags::new(feeds.len());
    let mut tasks = Vec::new();
    let mut feed_stats = Vec::new();
    for (input, ends) in feeds.into_iter().zip(wiring.feeds) {
        feed_stats.push(Arc::clone(&input.stats));
        let task = FeedTask::new(
            input.source,
            input.decoder,
            Arc::clone(&spec.index),
            ends,
            input.stats,
            Arc::clone(&flags),
        )
        .with_stale_after(spec.stale_after.unwrap_or_default())
        .with_histogram_every(spec.histogram_every);
        tasks.push((StageName::MarketData(input.venue), AnyTask::Feed(task)));
    }
    let alpha_stats = Arc::new(AlphaStats::default());
    let risk_stats = Arc::new(RiskStats::new(spec.index.len()));
    let exec_stats = Arc::new(ExecStats::default());
    let alpha = AlphaTask::new(
        Alpha::new(spec.alpha.clone()),
        wiring.alpha,
        Arc::clone(&alpha_stats),
        Arc::clone(&flags),
        spec.histogram_every.as_nanos() as u64,
    );
    let risk = RiskTask::new(
        risk,
        wiring.risk,
        Arc::clone(&risk_stats),
        Arc::clone(&flags),
        feed_stats.clone(),
        spec.stale_after.is_none(),
        spec.histogram_every.as_nanos() as u64,
    );
    let kill = wiring.exec.kill.clone();
    let exec = ExecTask::new(
        Exec::with_params(gateways, kill, spec.exec.clone(), Some(Arc::clone(&spec.index))),
        wiring.exec,
        Arc::clone(&exec_stats),
        Arc::clone(&flags),
        spec.histogram_every.as_nanos() as u64,
        feed_stats.clone(),
        spec.stale_after.is_none(),
    );
    tasks.push((StageName::Alpha, AnyTask::Alpha(alpha)));
    tasks.push((StageName::Risk, AnyTask::Risk(risk)));
    tasks.push((StageName::Exec, AnyTask::Exec(exec)));
    Engine {
        tasks,
        cold: wiring.cold,
        flags,
        stats: EngineStats {
            feeds: feed_stats,
            alpha: alpha_stats,
            risk: risk_stats,
            exec: exec_stats,
        },
    }
}
