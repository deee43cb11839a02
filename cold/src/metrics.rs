//! Prometheus `/metrics` for `maxx run`: the text exposition format 0.0.4, rendered by hand
//! from counters and snapshots that already exist, on its own listener
//! (`telemetry.metrics_listen`).
//!
//! Nothing here can slow the hot path. Every value is a relaxed atomic load (the hot stages'
//! single-writer counters, the ring gauges they sample once per poll batch), a seqlock read of
//! a board (`RiskBoard`), or a snapshot the cold loop refreshes between two drain passes
//! ([`TapGauges::sample`]: the taps' occupancy and the merged latency histograms' quantiles;
//! [`FlowObserver`]: fills and open orders per venue from the order/fill tap, which is
//! never dropped, so they are exact). Per-thread CPU time comes from `/proc/self/task/*/stat`.
//!
//! Naming follows the Prometheus conventions: `maxx_` prefix, base units in the name
//! (`_seconds`), counters end in `_total`, every family has `# HELP` and `# TYPE`, and each
//! family's samples are written together. `promtool check metrics` accepts the output
//! (`tests/cli_metrics.rs`); `config/grafana-dashboard.json` is built on these names.
//!
//! Latency comes from the hot stages' HdrHistograms, merged on the cold side over the whole run
//! and exported as summaries: `maxx_tick_to_order_seconds` (Execution's tick → order sent) and
//! `maxx_stage_latency_seconds{stage}` with `stage="alpha"` (tick → intent), `"risk"` (tick →
//! approval) and `"exec"` (tick → order sent: the same samples as `maxx_tick_to_order_seconds`).
//! Every stage's figure is cumulative from the tick's receive stamp: decoding and each ring hop
//! fold into the next stage's figure, so these are not per-hop times (those come with the
//! benchmarks). Risk and Execution count manual orders too (stamped when the desk received
//! them); Risk's trims carry no stamp and are not counted.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use crossbeam::queue::ArrayQueue;
use maxx_hot::board::RiskBoard;
use maxx_hot::clock::wall_ns;
use maxx_hot::feed::DecodeReason;
use maxx_hot::ids::{InstrumentIndex, Venue};
use maxx_hot::kill::KillSwitch;
use maxx_hot::records::{ExecReport, OrderIntent, RejectReason};
use maxx_hot::runtime::engine::EngineStats;
use maxx_hot::runtime::stats::RingGauge;
use maxx_hot::stage::alpha::AlphaInput;
use maxx_hot::stage::exec::ExecCommand;
use maxx_hot::stage::risk::RiskCommand;
use maxx_hot::wiring::{ColdEnds, LatencyStage};

use crate::bus::entry::StreamKind;
use crate::bus::publish::StatsHandle;
use crate::control::ReloadCounters;
use crate::portfolio::Portfolio;
use crate::taps::{Record, TapDrain, TapObserver};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Quantiles of the latency summaries.
pub const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// Every metric family `/metrics` can serve (Redis and Portfolio families only when those run).
/// The dashboard test checks its queries against this list.
pub const FAMILIES: &[&str] = &[
    "maxx_up",
    "maxx_uptime_seconds",
    "maxx_build_info",
    "maxx_feed_frames_total",
    "maxx_feed_ticks_total",
    "maxx_feed_decode_errors_total",
    "maxx_feed_reconnects_total",
    "maxx_feed_last_tick_age_seconds",
    "maxx_feed_state",
    "maxx_feed_gaps_total",
    "maxx_signals_total",
    "maxx_orders_total",
    "maxx_fills_total",
    "maxx_rejects_total",
    "maxx_open_orders",
    "maxx_tick_to_order_seconds",
    "maxx_stage_latency_seconds",
    "maxx_ring_occupancy",
    "maxx_ring_capacity",
    "maxx_ring_drops_total",
    "maxx_thread_cpu_seconds_total",
    "maxx_redis_connected",
    "maxx_redis_queue_depth",
    "maxx_redis_spill_depth",
    "maxx_redis_publish_lag_seconds",
    "maxx_redis_written_total",
    "maxx_redis_shed_total",
    "maxx_redis_errors_total",
    "maxx_config_reloads_total",
    "maxx_risk_state",
    "maxx_kill_switch",
    "maxx_kelly_clip",
    "maxx_equity",
    "maxx_drawdown_ratio",
    "maxx_lockbox",
];

/// A tap the cold side drains, named as in the table of `maxx_hot::wiring`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tap {
    Ticks(Venue),
    Bad(Venue),
    Signals,
    Refusals,
    RiskEvents,
    Exec,
    ExecNotes,
    Histograms,
}

impl Tap {
    fn label(self) -> String {
        match self {
            Tap::Ticks(v) => format!("tap_ticks[{}]", v.name()),
            Tap::Bad(v) => format!("tap_bad[{}]", v.name()),
            Tap::Signals => "tap_signals".into(),
            Tap::Refusals => "tap_refusals".into(),
            Tap::RiskEvents => "risk_events".into(),
            Tap::Exec => "tap_exec".into(),
            Tap::ExecNotes => "exec_notes".into(),
            Tap::Histograms => "hist_out".into(),
        }
    }
}

/// Calls `f` with each tap the cold side holds, its records waiting and its capacity, always in
/// the same order. No allocation.
fn visit_taps(cold: &ColdEnds, mut f: impl FnMut(Tap, usize, usize)) {
    for (v, c) in &cold.ticks {
        f(Tap::Ticks(*v), c.slots(), c.buffer().capacity());
    }
    for (v, c) in &cold.bad {
        f(Tap::Bad(*v), c.slots(), c.buffer().capacity());
    }
    f(Tap::Signals, cold.signals.slots(), cold.signals.buffer().capacity());
    f(Tap::Refusals, cold.refusals.slots(), cold.refusals.buffer().capacity());
    f(
        Tap::RiskEvents,
        cold.risk_events.slots(),
        cold.risk_events.buffer().capacity(),
    );
    f(Tap::Exec, cold.exec.slots(), cold.exec.buffer().capacity());
    f(
        Tap::ExecNotes,
        cold.exec_notes.slots(),
        cold.exec_notes.buffer().capacity(),
    );
    f(Tap::Histograms, cold.hist_in.slots(), cold.hist_in.buffer().capacity());
}

#[derive(Debug)]
struct TapGauge {
    tap: Tap,
    label: String,
    capacity: u64,
    occupancy: AtomicU64,
}

/// One merged latency histogram as last sampled for `/metrics`.
#[derive(Debug, Default)]
struct LatencyGauge {
    /// Samples in the merged histogram at the last refresh.
    count: AtomicU64,
    /// Sum of the samples (ns), from the histogram's buckets.
    sum_ns: AtomicU64,
    /// [`QUANTILES`] in ns.
    quantiles_ns: [AtomicU64; QUANTILES.len()],
}

impl LatencyGauge {
    /// Refreshes the figures when `h` gained samples since the last refresh.
    fn sample(&self, h: &hdrhistogram::Histogram<u64>) {
        if h.len() == self.count.load(Relaxed) {
            return;
        }
        for (slot, (q, _)) in self.quantiles_ns.iter().zip(QUANTILES) {
            slot.store(h.value_at_quantile(q), Relaxed);
        }
        // Each sample counted at its bucket's value: the sum only grows as samples arrive.
        let sum: u128 = h
            .iter_recorded()
            .map(|v| u128::from(v.value_iterated_to()) * u128::from(v.count_at_value()))
            .sum();
        self.sum_ns.store(u64::try_from(sum).unwrap_or(u64::MAX), Relaxed);
        self.count.store(h.len(), Relaxed);
    }

    /// (count, sum in ns, quantiles in ns), each loaded once.
    fn load(&self) -> (u64, u64, [u64; QUANTILES.len()]) {
        (
            self.count.load(Relaxed),
            self.sum_ns.load(Relaxed),
            std::array::from_fn(|i| self.quantiles_ns[i].load(Relaxed)),
        )
    }
}

/// What the cold loop samples for `/metrics` between two drain passes: the taps' occupancy
/// (their consumers are the loop's) and the latency histograms the drain merges, one per
/// [`LatencyStage`] (Execution's is also the tick-to-order one).
#[derive(Debug)]
pub struct TapGauges {
    taps: Vec<TapGauge>,
    stages: [LatencyGauge; LatencyStage::ALL.len()],
}

impl TapGauges {
    /// Gauges for the taps of `cold`.
    pub fn new(cold: &ColdEnds) -> Self {
        let mut taps = Vec::new();
        visit_taps(cold, |tap, _, capacity| {
            taps.push(TapGauge {
                tap,
                label: tap.label(),
                capacity: capacity as u64,
                occupancy: AtomicU64::new(0),
            })
        });
        Self {
            taps,
            stages: Default::default(),
        }
    }

    /// Records each tap's occupancy (call before draining: what the hot side has handed over
    /// since the last pass) and, for each stage whose merged histogram gained samples since the
    /// last call, its latency quantiles. Relaxed stores only; a few atomic loads per tap.
    pub fn sample(&self, cold: &ColdEnds, drain: &TapDrain) {
        let mut k = 0;
        visit_taps(cold, |tap, slots, _| {
            if let Some(g) = self.taps.get(k).filter(|g| g.tap == tap) {
                g.occupancy.store(slots as u64, Relaxed);
            }
            k += 1;
        });
        for stage in LatencyStage::ALL {
            self.stages[stage.index()].sample(drain.stage_latency(stage));
        }
    }
}

/// Fills and open orders per venue, kept by [`FlowObserver`] from the order/fill tap.
#[derive(Debug, Default)]
pub struct OrderFlow {
    fills: [AtomicU64; Venue::COUNT],
    open: [AtomicU64; Venue::COUNT],
}

/// Follows engine orders on the order/fill tap: `Routed` opens one at its venue; a fill with
/// nothing left, `Cancelled` or `Reject` closes it. Published once per drain pass.
#[derive(Debug)]
pub struct FlowObserver {
    flow: Arc<OrderFlow>,
    venue_of: HashMap<u64, Venue>,
    fills: [u64; Venue::COUNT],
    open: [u64; Venue::COUNT],
}

impl FlowObserver {
    fn close(&mut self, order_id: u64) {
        if let Some(v) = self.venue_of.remove(&order_id) {
            self.open[v.index()] = self.open[v.index()].saturating_sub(1);
        }
    }
}

impl TapObserver for FlowObserver {
    fn record(&mut self, record: &Record) {
        let Record::Report(report) = record else { return };
        match *report {
            ExecReport::Routed { order_id, venue, .. } => {
                if self.venue_of.insert(order_id.0, venue).is_none() {
                    self.open[venue.index()] += 1;
                }
            }
            ExecReport::Fill(f) => {
                self.fills[f.venue.index()] += 1;
                if f.last {
                    self.close(f.order_id.0);
                }
            }
            ExecReport::Cancelled { order_id, .. } | ExecReport::Reject { order_id, .. } => self.close(order_id.0),
            ExecReport::Ack { .. } | ExecReport::Unknown { .. } | ExecReport::CancelRejected { .. } => {}
        }
    }

    fn pass_done(&mut self) {
        for i in 0..Venue::COUNT {
            self.flow.fills[i].store(self.fills[i], Relaxed);
            self.flow.open[i].store(self.open[i], Relaxed);
        }
    }
}

/// The cold → hot command queues, read with `len()` (any thread).
#[derive(Debug)]
struct Queues {
    alpha_cmd: Arc<ArrayQueue<AlphaInput>>,
    risk_cmd: Arc<ArrayQueue<RiskCommand>>,
    exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    manual: Arc<ArrayQueue<OrderIntent>>,
}

/// Everything `/metrics` reads, built once in `maxx run`.
#[derive(Debug)]
pub struct MetricsSources {
    /// The instruments (risk state per symbol).
    pub index: Arc<InstrumentIndex>,
    /// The hot stages' counters and ring gauges.
    pub stats: EngineStats,
    /// Taps and latency, sampled by the cold loop.
    pub taps: Arc<TapGauges>,
    /// Fills and open orders per venue.
    pub flow: Arc<OrderFlow>,
    queues: Queues,
    /// Risk's published state.
    pub risk_board: Arc<RiskBoard>,
    /// The kill switch.
    pub kill: KillSwitch,
    /// Config reloads by outcome.
    pub reloads: Arc<ReloadCounters>,
    /// The Redis publisher's counters, when Redis is enabled.
    pub redis: Option<StatsHandle>,
    /// The Portfolio agent (equity, drawdown, lock-box).
    pub portfolio: Option<Arc<Portfolio>>,
    /// When the process started serving.
    pub started: Instant,
}

impl MetricsSources {
    /// Sources over an engine's counters and the cold side's ends (queues, boards, taps).
    pub fn new(index: Arc<InstrumentIndex>, stats: EngineStats, cold: &ColdEnds, reloads: Arc<ReloadCounters>) -> Self {
        Self {
            index,
            stats,
            taps: Arc::new(TapGauges::new(cold)),
            flow: Arc::default(),
            queues: Queues {
                alpha_cmd: Arc::clone(&cold.alpha_cmd),
                risk_cmd: Arc::clone(&cold.risk_cmd),
                exec_cmd: Arc::clone(&cold.exec_cmd),
                manual: Arc::clone(&cold.manual),
            },
            risk_board: Arc::clone(&cold.risk_board),
            kill: cold.kill.clone(),
            reloads,
            redis: None,
            portfolio: None,
            started: Instant::now(),
        }
    }

    /// With the Redis publisher's counters.
    pub fn with_redis(mut self, redis: Option<StatsHandle>) -> Self {
        self.redis = redis;
        self
    }

    /// With the Portfolio agent.
    pub fn with_portfolio(mut self, portfolio: Arc<Portfolio>) -> Self {
        self.portfolio = Some(portfolio);
        self
    }

    /// The tap observer that keeps [`MetricsSources::flow`]; add it to the drain.
    pub fn flow_observer(&self) -> FlowObserver {
        FlowObserver {
            flow: Arc::clone(&self.flow),
            venue_of: HashMap::new(),
            fills: [0; Venue::COUNT],
            open: [0; Venue::COUNT],
        }
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let mut o = Exposition::default();
        self.process(&mut o);
        self.feeds(&mut o);
        self.trading(&mut o);
        self.latency(&mut o);
        self.rings(&mut o);
        threads(&mut o);
        self.redis(&mut o);
        self.risk(&mut o);
        self.account(&mut o);
        o.text
    }

    fn process(&self, o: &mut Exposition) {
        o.family("maxx_up", "gauge", "1 while the process serves metrics.");
        o.sample("maxx_up", &[], 1u64);
        o.family("maxx_uptime_seconds", "gauge", "Seconds since the cold side started.");
        o.sample("maxx_uptime_seconds", &[], Float(self.started.elapsed().as_secs_f64()));
        o.family("maxx_build_info", "gauge", "Always 1; the build's version in a label.");
        o.sample("maxx_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1u64);
        o.family(
            "maxx_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP, POST /reload) by outcome: applied, or rejected with the running config kept.",
        );
        o.sample(
            "maxx_config_reloads_total",
            &[("outcome", "applied")],
            self.reloads.applied.load(Relaxed),
        );
        o.sample(
            "maxx_config_reloads_total",
            &[("outcome", "rejected")],
            self.reloads.rejected.load(Relaxed),
        );
    }

    fn feeds(&self, o: &mut Exposition) {
        let feeds = &self.stats.feeds;
        o.family("maxx_feed_frames_total", "counter", "Frames received per feed.");
        for f in feeds {
            o.sample("maxx_feed_frames_total", &[("venue", f.venue.name())], f.frames.get());
        }
        o.family("maxx_feed_ticks_total", "counter", "Ticks decoded per feed and kind.");
        for f in feeds {
            let venue = f.venue.name();
            o.sample(
                "maxx_feed_ticks_total",
                &[("venue", venue), ("kind", "trade")],
                f.trades.get(),
            );
            o.sample(
                "maxx_feed_ticks_total",
                &[("venue", venue), ("kind", "quote")],
                f.quotes.get(),
            );
        }
        o.family(
            "maxx_feed_decode_errors_total",
            "counter",
            "Frames the decoder refused, per feed and reason (malformed_line: a capture line without its receive time).",
        );
        for f in feeds {
            let venue = f.venue.name();
            for r in DecodeReason::ALL {
                o.sample(
                    "maxx_feed_decode_errors_total",
                    &[("venue", venue), ("reason", r.name())],
                    f.bad[r.index()].get(),
                );
            }
            o.sample(
                "maxx_feed_decode_errors_total",
                &[("venue", venue), ("reason", "malformed_line")],
                f.malformed_lines.get(),
            );
        }
        o.family(
            "maxx_feed_reconnects_total",
            "counter",
            "Reconnects per feed: connections lost plus restarts of a stale feed.",
        );
        for f in feeds {
            o.sample(
                "maxx_feed_reconnects_total",
                &[("venue", f.venue.name())],
                f.disconnects.get() + f.stale_restarts.get(),
            );
        }
        o.family(
            "maxx_feed_last_tick_age_seconds",
            "gauge",
            "Seconds since the feed's last tick was received (NaN before the first).",
        );
        let now = wall_ns();
        for f in feeds {
            let last = f.last_tick_wall_ns.get();
            let age = if last == 0 {
                f64::NAN
            } else {
                now.saturating_sub(last) as f64 / 1e9
            };
            o.sample(
                "maxx_feed_last_tick_age_seconds",
                &[("venue", f.venue.name())],
                Float(age),
            );
        }
        o.family("maxx_feed_state", "gauge", "Feed state: 0 waiting, 1 live, 2 stale.");
        for f in feeds {
            o.sample("maxx_feed_state", &[("venue", f.venue.name())], f.state.get());
        }
        o.family(
            "maxx_feed_gaps_total",
            "counter",
            "Sequence gaps (missed messages) per feed.",
        );
        for f in feeds {
            o.sample("maxx_feed_gaps_total", &[("venue", f.venue.name())], f.gaps.get());
        }
    }

    fn trading(&self, o: &mut Exposition) {
        let (alpha, risk, exec) = (&self.stats.alpha, &self.stats.risk, &self.stats.exec);
        let venues = self.index.venues();
        o.family("maxx_signals_total", "counter", "Signals Alpha produced.");
        o.sample("maxx_signals_total", &[], alpha.signals.get());
        o.family(
            "maxx_orders_total",
            "counter",
            "Engine orders Execution routed, per venue.",
        );
        for v in &venues {
            o.sample(
                "maxx_orders_total",
                &[("venue", v.name())],
                exec.routed[v.index()].get(),
            );
        }
        o.family("maxx_fills_total", "counter", "Fills received, per venue.");
        for v in &venues {
            o.sample(
                "maxx_fills_total",
                &[("venue", v.name())],
                self.flow.fills[v.index()].load(Relaxed),
            );
        }
        o.family(
            "maxx_rejects_total",
            "counter",
            "Rejections by reason: stage=risk for intents Risk refused, stage=exec for orders the venue (or the kill switch) rejected.",
        );
        for r in RejectReason::ALL {
            let i = r as usize;
            o.sample(
                "maxx_rejects_total",
                &[("reason", r.name()), ("stage", "risk")],
                risk.refused[i].get(),
            );
            o.sample(
                "maxx_rejects_total",
                &[("reason", r.name()), ("stage", "exec")],
                exec.rejected[i].get(),
            );
        }
        o.family("maxx_open_orders", "gauge", "Engine orders open at each venue.");
        for v in &venues {
            o.sample(
                "maxx_open_orders",
                &[("venue", v.name())],
                self.flow.open[v.index()].load(Relaxed),
            );
        }
    }

    fn latency(&self, o: &mut Exposition) {
        let stages = self.taps.stages.each_ref().map(LatencyGauge::load);
        // One summary's samples: the quantiles (NaN before the first sample), `_sum`, `_count`.
        let summary = |o: &mut Exposition, name: &str, labels: &[(&str, &str)], figures| {
            let (count, sum_ns, quantiles_ns): (u64, u64, [u64; QUANTILES.len()]) = figures;
            for (ns, (_, q)) in quantiles_ns.into_iter().zip(QUANTILES) {
                let v = if count == 0 { f64::NAN } else { ns as f64 / 1e9 };
                let mut with_q = labels.to_vec();
                with_q.push(("quantile", q));
                o.sample(name, &with_q, Float(v));
            }
            o.sample(&format!("{name}_sum"), labels, Float(sum_ns as f64 / 1e9));
            o.sample(&format!("{name}_count"), labels, count);
        };
        let name = "maxx_tick_to_order_seconds";
        o.family(
            name,
            "summary",
            "Tick receive to order sent, over the whole run (Execution's HdrHistogram, merged on the cold side).",
        );
        summary(o, name, &[], stages[LatencyStage::Exec.index()]);
        let name = "maxx_stage_latency_seconds";
        o.family(
            name,
            "summary",
            "Tick receive to each stage's output over the whole run, cumulative (decode and ring hops fold into the next stage): stage=alpha intent, risk approval, exec order sent.",
        );
        for stage in LatencyStage::ALL {
            summary(o, name, &[("stage", stage.name())], stages[stage.index()]);
        }
    }

    fn rings(&self, o: &mut Exposition) {
        // (ring, occupancy, capacity, drops): drops are `None` for a ring whose full-policy is
        // back-pressure (it never drops) and for `tap_bad` (samples only, not counted).
        let mut rows: Vec<(String, u64, u64, Option<u64>)> = Vec::new();
        let (alpha, risk, exec) = (&self.stats.alpha, &self.stats.risk, &self.stats.exec);
        let hot = |g: &RingGauge| (g.occupancy.get(), g.capacity.get());
        for (i, f) in self.stats.feeds.iter().enumerate() {
            if let Some(g) = alpha.md_alpha.get(i) {
                let (occ, cap) = hot(g);
                rows.push((format!("md_alpha[{}]", f.venue.name()), occ, cap, Some(0)));
            }
        }
        for (name, g) in [
            ("alpha_exec", &exec.alpha_exec),
            ("alpha_risk", &risk.alpha_risk),
            ("risk_exec", &exec.risk_exec),
            ("exec_risk", &risk.exec_risk),
        ] {
            let (occ, cap) = hot(g);
            rows.push((name.to_string(), occ, cap, Some(0)));
        }
        let q = &self.queues;
        for (name, len, cap) in [
            ("alpha_cmd", q.alpha_cmd.len(), q.alpha_cmd.capacity()),
            ("risk_cmd", q.risk_cmd.len(), q.risk_cmd.capacity()),
            ("exec_cmd", q.exec_cmd.len(), q.exec_cmd.capacity()),
            ("manual", q.manual.len(), q.manual.capacity()),
        ] {
            // A full queue hands the command back to its cold caller: nothing is dropped.
            rows.push((name.to_string(), len as u64, cap as u64, Some(0)));
        }
        for g in &self.taps.taps {
            let drops = match g.tap {
                Tap::Ticks(v) => self
                    .stats
                    .feeds
                    .iter()
                    .find(|f| f.venue == v)
                    .map(|f| f.tap_dropped.get()),
                Tap::Bad(_) => None,
                Tap::Signals => Some(alpha.tap_dropped.get()),
                Tap::Refusals => Some(risk.tap_dropped.get()),
                Tap::RiskEvents => Some(risk.events_dropped.get()),
                Tap::ExecNotes => Some(exec.notes_dropped.get()),
                Tap::Exec | Tap::Histograms => Some(0),
            };
            rows.push((g.label.clone(), g.occupancy.load(Relaxed), g.capacity, drops));
        }
        o.family(
            "maxx_ring_occupancy",
            "gauge",
            "Records waiting in each ring and queue (hot rings sampled by their consumer once per poll batch, taps by the cold loop before each drain).",
        );
        for (ring, occ, _, _) in &rows {
            o.sample("maxx_ring_occupancy", &[("ring", ring)], *occ);
        }
        o.family(
            "maxx_ring_capacity",
            "gauge",
            "Capacity of each ring and queue, in records.",
        );
        for (ring, _, cap, _) in &rows {
            o.sample("maxx_ring_capacity", &[("ring", ring)], *cap);
        }
        o.family(
            "maxx_ring_drops_total",
            "counter",
            "Records dropped because a ring was full (0 where the full-policy is back-pressure; see hot/src/wiring.rs).",
        );
        for (ring, _, _, drops) in &rows {
            if let Some(d) = drops {
                o.sample("maxx_ring_drops_total", &[("ring", ring)], *d);
            }
        }
    }

    fn redis(&self, o: &mut Exposition) {
        let Some(s) = &self.redis else { return };
        o.family(
            "maxx_redis_connected",
            "gauge",
            "1 while the stream publisher holds a working Redis connection.",
        );
        o.sample("maxx_redis_connected", &[], u64::from(s.connected.load(Relaxed)));
        o.family("maxx_redis_queue_depth", "gauge", "Entries queued for Redis.");
        o.sample("maxx_redis_queue_depth", &[], s.queue_depth.load(Relaxed));
        o.family(
            "maxx_redis_spill_depth",
            "gauge",
            "Entries in the spill (orders, fills, pnl held while the queue is full or Redis is down).",
        );
        o.sample("maxx_redis_spill_depth", &[], s.spill_depth.load(Relaxed));
        o.family(
            "maxx_redis_publish_lag_seconds",
            "gauge",
            "Queueing to Redis's reply, for the last entry written.",
        );
        o.sample(
            "maxx_redis_publish_lag_seconds",
            &[],
            Float(s.last_lag_us.load(Relaxed) as f64 / 1e6),
        );
        o.family("maxx_redis_written_total", "counter", "Entries Redis accepted.");
        o.sample("maxx_redis_written_total", &[], s.written.load(Relaxed));
        o.family(
            "maxx_redis_shed_total",
            "counter",
            "Entries shed because the queue was full, by stream kind (only ticks and signals may be shed).",
        );
        for k in StreamKind::ALL {
            o.sample("maxx_redis_shed_total", &[("kind", k.name())], s.shed(k));
        }
        o.family(
            "maxx_redis_errors_total",
            "counter",
            "Failed connects, lost connections, and refused batches or entries.",
        );
        o.sample("maxx_redis_errors_total", &[], s.errors.load(Relaxed));
    }

    fn risk(&self, o: &mut Exposition) {
        let view = self.risk_board.read();
        o.family(
            "maxx_risk_state",
            "gauge",
            "Trading state per scope (\"*\" is the whole system): 0 active, 1 reducing, 2 halted.",
        );
        o.sample("maxx_risk_state", &[("scope", "*")], view.system.state as u8);
        for (i, v) in self.index.iter().zip(&view.instruments) {
            o.sample("maxx_risk_state", &[("scope", i.symbol.as_str())], v.state as u8);
        }
        o.family("maxx_kill_switch", "gauge", "1 while the kill switch is tripped.");
        o.sample(
            "maxx_kill_switch",
            &[],
            u64::from(self.kill.is_tripped() || view.system.killed),
        );
        o.family(
            "maxx_kelly_clip",
            "gauge",
            "The Kelly clip Risk applies to sizing (1 = none; 0.25 after the drawdown rule fires).",
        );
        o.sample("maxx_kelly_clip", &[], Float(view.system.kelly_clip.to_num::<f64>()));
    }

    fn account(&self, o: &mut Exposition) {
        let Some(p) = &self.portfolio else { return };
        let (currency, equity, drawdown_pct, lockbox) =
            p.with_account(|a| (a.config().currency.clone(), a.equity(), a.drawdown_pct(), a.lockbox()));
        let labels = [("currency", currency.as_str())];
        o.family(
            "maxx_equity",
            "gauge",
            "Equity in the account currency (the Portfolio's).",
        );
        o.sample(
            "maxx_equity",
            &labels,
            Decimal(equity.raw().into(), maxx_hot::num::DECIMALS),
        );
        o.family(
            "maxx_drawdown_ratio",
            "gauge",
            "Intraday drawdown from the UTC day's high of performance equity, as a ratio (0.05 = 5 %).",
        );
        // Percent with 8 decimals is the ratio with 10.
        o.sample(
            "maxx_drawdown_ratio",
            &labels,
            Decimal(drawdown_pct.raw().into(), maxx_hot::num::DECIMALS + 2),
        );
        o.family(
            "maxx_lockbox",
            "gauge",
            "The PnL lock-box balance (not trading capital).",
        );
        o.sample(
            "maxx_lockbox",
            &labels,
            Decimal(lockbox.raw().into(), maxx_hot::num::DECIMALS),
        );
    }
}

/// Per-thread CPU time from `/proc/self/task/*/stat`, summed by thread name (threads that share
/// a name, such as tokio's blocking pool, are one series).
fn threads(o: &mut Exposition) {
    let tick = clock_ticks_per_second();
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            // A thread that ended between the listing and the read is simply skipped.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks)) = parse_task_stat(&stat) {
                *by_name.entry(name.to_string()).or_default() += ticks;
            }
        }
    }
    o.family(
        "maxx_thread_cpu_seconds_total",
        "counter",
        "CPU time (user + system) per thread name, from /proc/self/task/*/stat.",
    );
    for (name, ticks) in &by_name {
        o.sample(
            "maxx_thread_cpu_seconds_total",
            &[("thread", name)],
            Float(*ticks as f64 / tick as f64),
        );
    }
}

/// `(comm, utime + stime)` from one `/proc/<pid>/task/<tid>/stat` line. The name sits between
/// the first `(` and the last `)` (it may itself hold spaces and parentheses); utime and stime
/// are fields 14 and 15 of the line, the 12th and 13th after the name.
fn parse_task_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// `sysconf(_SC_CLK_TCK)` without unsafe code: the C library answers it from the `AT_CLKTCK`
/// entry of the auxiliary vector, which `/proc/self/auxv` holds (native-endian word pairs).
/// 100, Linux's USER_HZ, if it cannot be read.
fn clock_ticks_per_second() -> u64 {
    const AT_CLKTCK: u64 = 17;
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|auxv| auxv_value(&auxv, AT_CLKTCK))
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    auxv.chunks_exact(2 * W).find_map(|pair| {
        let word = |b: &[u8]| {
            let mut a = [0u8; W];
            a.copy_from_slice(b);
            usize::from_ne_bytes(a) as u64
        };
        (word(&pair[..W]) == key).then(|| word(&pair[W..]))
    })
}

/// A float sample value: `NaN`, `+Inf`, `-Inf` spelled as the format wants.
struct Float(f64);

/// An exact decimal: `raw` in units of 10^-`scale`.
struct Decimal(i128, u32);

/// A value in the exposition format.
trait SampleValue {
    fn write(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for u8 {
    fn write(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for Float {
    fn write(&self, out: &mut String) {
        let v = self.0;
        if v.is_nan() {
            out.push_str("NaN");
        } else if v.is_infinite() {
            out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

impl SampleValue for Decimal {
    fn write(&self, out: &mut String) {
        let Decimal(raw, scale) = *self;
        let unit = 10i128.pow(scale);
        let (int, frac) = (raw.unsigned_abs() / unit as u128, raw.unsigned_abs() % unit as u128);
        if raw < 0 {
            out.push('-');
        }
        let _ = write!(out, "{int}");
        if frac != 0 {
            let digits = format!("{frac:0width$}", width = scale as usize);
            let _ = write!(out, ".{}", digits.trim_end_matches('0'));
        }
    }
}

/// The text being built.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` of a family; its samples follow.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line; label values escaped.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(k);
                self.text.push_str("=\"");
                escape_label(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        value.write(&mut self.text);
        self.text.push('\n');
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

async fn metrics(State(sources): State<Arc<MetricsSources>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT_TYPE_0_0_4)], sources.render())
}

/// Serves `GET /metrics` on `addr` (port 0: any free port) until `shutdown` completes; returns
/// the bound address and the server's task.
pub async fn serve(
    addr: SocketAddr,
    sources: Arc<MetricsSources>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().route("/metrics", get(metrics)).with_state(sources);
    let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_stat_names_may_hold_spaces_and_parentheses() {
        let line = "4242 (md (x) 1) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 9 0 100 0 0\n";
        assert_eq!(parse_task_stat(line), Some(("md (x) 1", 281)));
        let plain = "17 (alpha) R 1 17 17 0 -1 4194368 100 0 0 0 1234 56 0 0 -100 0 1 0 5 0 0";
        assert_eq!(parse_task_stat(plain), Some(("alpha", 1290)));
        assert_eq!(parse_task_stat("17 alpha R"), None);
        assert_eq!(parse_task_stat("17 (alpha) R 1 2"), None);
    }

    #[test]
    fn clock_ticks_come_from_the_auxiliary_vector() {
        let w = std::mem::size_of::<usize>();
        let mut auxv = Vec::new();
        for (k, v) in [(6usize, 4096usize), (17, 250), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv.len(), 6 * w);
        assert_eq!(auxv_value(&auxv, 17), Some(250));
        assert_eq!(auxv_value(&auxv, 99), None);
        // This process's own: Linux reports USER_HZ, 100 on every mainstream architecture.
        assert_eq!(clock_ticks_per_second(), 100);
    }

    #[test]
    fn samples_are_escaped_and_spelled_as_the_format_wants() {
        let mut o = Exposition::default();
        o.family("x_total", "counter", "Help with \\ and\nnewline.");
        o.sample("x_total", &[("a", "q\"uo\\te\nd"), ("b", "*")], 7u64);
        o.sample("x_total", &[], Float(f64::NAN));
        o.sample("x_total", &[], Float(f64::INFINITY));
        o.sample("x_total", &[], Float(-f64::INFINITY));
        o.sample("x_total", &[], Float(0.25));
        o.sample("x_total", &[], Decimal(-1_250_000_000, 8));
        o.sample("x_total", &[], Decimal(5, 10));
        o.sample("x_total", &[], Decimal(0, 8));
        assert_eq!(
            o.text,
            "# HELP x_total Help with \\\\ and\\nnewline.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uo\\\\te\\nd\",b=\"*\"} 7\nx_total NaN\nx_total +Inf\nx_total -Inf\n\
             x_total 0.25\nx_total -12.5\nx_total 0.0000000005\nx_total 0\n"
        );
    }

    #[test]
    fn open_orders_and_fills_follow_the_exec_tap() {
        use maxx_hot::ids::InstrumentId;
        use maxx_hot::num::{Money, Price, Qty};
        use maxx_hot::records::{Fill, Liquidity, OrderId, RouteReason, Side};
        let sources_flow = Arc::new(OrderFlow::default());
        let mut obs = FlowObserver {
            flow: Arc::clone(&sources_flow),
            venue_of: HashMap::new(),
            fills: [0; Venue::COUNT],
            open: [0; Venue::COUNT],
        };
        let routed = |id, venue| {
            Record::Report(ExecReport::Routed {
                order_id: OrderId(id),
                venue,
                reason: RouteReason::OnlyVenue,
            })
        };
        let fill = |id, venue, last| {
            Record::Report(ExecReport::Fill(Fill {
                order_id: OrderId(id),
                instrument: InstrumentId(0),
                venue,
                side: Side::Buy,
                price: Price::ZERO,
                qty: Qty::ZERO,
                fee: Money::ZERO,
                liquidity: Liquidity::Taker,
                last,
                ts_ns: 0,
            }))
        };
        for r in [
            routed(1, Venue::Binance),
            routed(2, Venue::Binance),
            routed(3, Venue::Bybit),
            fill(1, Venue::Binance, false),
            fill(1, Venue::Binance, true),
            fill(3, Venue::Bybit, false),
        ] {
            obs.record(&r);
        }
        obs.record(&Record::Report(ExecReport::Cancelled {
            order_id: OrderId(2),
            instrument: InstrumentId(0),
            side: Side::Buy,
            qty: Qty::ZERO,
        }));
        obs.pass_done();
        let load = |a: &[AtomicU64; Venue::COUNT], v: Venue| a[v.index()].load(Relaxed);
        assert_eq!(load(&sources_flow.fills, Venue::Binance), 2);
        assert_eq!(load(&sources_flow.fills, Venue::Bybit), 1);
        assert_eq!(load(&sources_flow.open, Venue::Binance), 0);
        assert_eq!(load(&sources_flow.open, Venue::Bybit), 1);
    }
}
