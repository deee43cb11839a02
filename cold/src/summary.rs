//! The end-of-run summary printed by `maxx run` and `maxx replay`, as text or one JSON object.
//!
//! Everything except the latency figures (`tick_to_order_ns`, and the per-stage figures of the
//! text summary, which the JSON leaves out) is a pure function of the input, so two replays of
//! the same capture print the same summary apart from the latency figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use maxx_hot::feed::DecodeReason;
use maxx_hot::ids::{InstrumentIndex, Venue};
use maxx_hot::records::{RejectReason, RouteReason};
use maxx_hot::runtime::stats::{AlphaStats, ExecStats, FeedStats, RiskStats};
use maxx_hot::stats::Counter;
use maxx_hot::wiring::LatencyStage;
use serde::Serialize;

use crate::taps::TapDrain;

/// Ticks by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickCounts {
    /// Trades.
    pub trade: u64,
    /// Best bid/ask updates.
    pub quote: u64,
}

/// Recognised frames skipped, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    /// Depth diffs and partial books.
    pub depth: u64,
    /// Aggregate trades.
    pub agg_trade: u64,
    /// REST snapshots.
    pub snapshot: u64,
    /// Anything else recognised.
    pub other: u64,
}

/// How Execution worked its orders: routing, maker or taker, outcomes. Counts only what
/// happened (empty maps are left out of the text form).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExecCounts {
    /// Engine orders routed, by venue.
    pub routed: BTreeMap<&'static str, u64>,
    /// Engine orders routed, by route reason.
    pub route_reasons: BTreeMap<&'static str, u64>,
    /// Orders posted passively under the maker/taker rule.
    pub maker: u64,
    /// Orders sent to take (IOC) under the maker/taker rule.
    pub taker: u64,
    /// Orders with an explicit time in force, sent as asked.
    pub as_asked: u64,
    /// Passive orders repriced to a new touch.
    pub reprices: u64,
    /// Passive orders crossed after their time ran out.
    pub timeout_takes: u64,
    /// Passive orders cancelled after their time ran out.
    pub timeout_cancels: u64,
    /// Engine orders filled completely.
    pub filled: u64,
    /// `Cancelled` reports (IOC remainders, operator cancels, the kill switch).
    pub cancels: u64,
    /// Rejects, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Orders whose outcome was lost until the venue was queried.
    pub unknown: u64,
    /// Venue demotions for a high reject ratio, by venue.
    pub demotions: BTreeMap<&'static str, u64>,
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Maximum.
    pub max: u64,
}

impl Latency {
    /// Percentiles of a histogram (zeros if empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Frames (capture lines or WebSocket messages) received, all feeds.
    pub frames: u64,
    /// Ticks decoded.
    pub ticks: TickCounts,
    /// Frames recognised but not used yet.
    pub skipped: SkipCounts,
    /// Venue control frames (subscription results, errors, shutdown notices).
    pub control: u64,
    /// Frames refused, all reasons.
    pub bad_frames: u64,
    /// Frames refused, by reason (only reasons that occurred).
    pub bad_by_reason: BTreeMap<&'static str, u64>,
    /// Signals produced by Alpha.
    pub signals: u64,
    /// Order intents produced by Alpha.
    pub intents: u64,
    /// Intents Risk refused, by reason (only reasons that occurred).
    pub refused: BTreeMap<&'static str, u64>,
    /// Orders sent.
    pub orders: u64,
    /// Fills.
    pub fills: u64,
    /// Venue rejects.
    pub rejects: u64,
    /// Execution's breakdown.
    pub execution: ExecCounts,
    /// Realized PnL before fees, quote currency.
    pub realized_pnl: String,
    /// Fees paid.
    pub fees: String,
    /// Unrealized PnL at the last trade prices.
    pub unrealized_pnl: String,
    /// Position per symbol at the end (non-zero only).
    pub positions: BTreeMap<String, String>,
    /// Tick-to-order latency (not deterministic).
    pub tick_to_order_ns: Latency,
    /// Latency from the tick's receive stamp to each stage's output, by
    /// [`LatencyStage::index`] (not deterministic; text only: the JSON keeps its one latency
    /// field).
    #[serde(skip)]
    pub stage_latency_ns: [Latency; LatencyStage::ALL.len()],
}

/// Assembles the summary from the stages' counters and the cold side's aggregates.
pub fn summarize(
    index: &InstrumentIndex,
    feeds: &[&FeedStats],
    alpha: &AlphaStats,
    risk: &RiskStats,
    exec: &ExecStats,
    drain: &TapDrain,
) -> Summary {
    let mut s = Summary::default();
    for f in feeds {
        s.frames += f.frames.get();
        s.ticks.trade += f.trades.get();
        s.ticks.quote += f.quotes.get();
        s.skipped.depth += f.skipped_depth.get();
        s.skipped.agg_trade += f.skipped_agg_trade.get();
        s.skipped.snapshot += f.skipped_snapshot.get();
        s.skipped.other += f.skipped_other.get();
        s.control += f.control.get();
        s.bad_frames += f.bad_total();
        for reason in DecodeReason::ALL {
            let n = f.bad[reason.index()].get();
            if n > 0 {
                *s.bad_by_reason.entry(reason.name()).or_default() += n;
            }
        }
        if f.malformed_lines.get() > 0 {
            *s.bad_by_reason.entry("malformed_line").or_default() += f.malformed_lines.get();
        }
    }
    s.signals = alpha.signals.get();
    s.intents = alpha.intents.get();
    for (i, c) in risk.refused.iter().enumerate() {
        if c.get() > 0 {
            s.refused.insert(reject_name(i), c.get());
        }
    }
    s.orders = exec.orders.get();
    s.fills = exec.fills.get();
    s.rejects = exec.rejects.get();
    s.execution = exec_counts(exec);
    s.realized_pnl = drain.realized().to_string();
    s.fees = drain.fees().to_string();
    s.unrealized_pnl = drain.unrealized().to_string();
    for (inst, book) in index.iter().zip(drain.books()) {
        if !book.position.is_zero() {
            s.positions.insert(inst.symbol.to_string(), book.position.to_string());
        }
    }
    s.tick_to_order_ns = Latency::of(drain.latency());
    s.stage_latency_ns = LatencyStage::ALL.map(|stage| Latency::of(drain.stage_latency(stage)));
    s
}

fn exec_counts(exec: &ExecStats) -> ExecCounts {
    let per_venue =
        |counters: &[Counter; Venue::COUNT]| nonzero(Venue::ALL.iter().map(|v| (v.name(), counters[v.index()].get())));
    ExecCounts {
        routed: per_venue(&exec.routed),
        route_reasons: nonzero(
            RouteReason::NAMES
                .iter()
                .zip(&exec.route_reasons)
                .map(|(n, c)| (*n, c.get())),
        ),
        maker: exec.maker_orders.get(),
        taker: exec.taker_orders.get(),
        as_asked: exec.as_asked.get(),
        reprices: exec.reprices.get(),
        timeout_takes: exec.timeout_takes.get(),
        timeout_cancels: exec.timeout_cancels.get(),
        filled: exec.filled.get(),
        cancels: exec.cancels.get(),
        rejected: nonzero(exec.rejected.iter().enumerate().map(|(i, c)| (reject_name(i), c.get()))),
        unknown: exec.unknown.get(),
        demotions: per_venue(&exec.demotions),
    }
}

/// The named counts that are not zero.
fn nonzero(counts: impl Iterator<Item = (&'static str, u64)>) -> BTreeMap<&'static str, u64> {
    counts.filter(|&(_, n)| n > 0).collect()
}

fn reject_name(i: usize) -> &'static str {
    RejectReason::ALL.get(i).map_or("unknown", |r| r.name())
}

impl Summary {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let l = &self.tick_to_order_ns;
        let _ = writeln!(out, "frames        {}", self.frames);
        let _ = writeln!(
            out,
            "ticks         {} trades, {} quotes",
            self.ticks.trade, self.ticks.quote
        );
        let _ = writeln!(
            out,
            "skipped       {} depth, {} aggTrade, {} snapshot, {} other",
            self.skipped.depth, self.skipped.agg_trade, self.skipped.snapshot, self.skipped.other
        );
        let _ = writeln!(out, "control       {}", self.control);
        let _ = writeln!(
            out,
            "bad frames    {}{}",
            self.bad_frames,
            by_reason(&self.bad_by_reason)
        );
        let _ = writeln!(out, "signals       {}", self.signals);
        let _ = writeln!(
            out,
            "intents       {} ({} refused{})",
            self.intents,
            self.refused.values().sum::<u64>(),
            by_reason(&self.refused)
        );
        let _ = writeln!(out, "orders        {}", self.orders);
        let _ = writeln!(out, "fills         {} ({} rejects)", self.fills, self.rejects);
        let e = &self.execution;
        let _ = writeln!(
            out,
            "execution     {} maker, {} taker, {} as asked; {} filled, {} cancels, {} reprices, {} timeouts (taken {}), {} unknown",
            e.maker,
            e.taker,
            e.as_asked,
            e.filled,
            e.cancels,
            e.reprices,
            e.timeout_takes + e.timeout_cancels,
            e.timeout_takes,
            e.unknown
        );
        let _ = writeln!(
            out,
            "routing       by venue{}, by reason{}{}",
            by_reason(&e.routed),
            by_reason(&e.route_reasons),
            if e.demotions.is_empty() {
                String::new()
            } else {
                format!(", demotions{}", by_reason(&e.demotions))
            }
        );
        if !e.rejected.is_empty() {
            let _ = writeln!(out, "rejected by   {}", by_reason(&e.rejected).trim_start());
        }
        let _ = writeln!(out, "realized pnl  {}", self.realized_pnl);
        let _ = writeln!(out, "fees          {}", self.fees);
        let _ = writeln!(out, "unrealized    {}", self.unrealized_pnl);
        let positions: Vec<String> = self.positions.iter().map(|(s, q)| format!("{s} {q}")).collect();
        let _ = writeln!(
            out,
            "positions     {}",
            if positions.is_empty() {
                "flat".to_string()
            } else {
                positions.join(", ")
            }
        );
        let _ = writeln!(
            out,
            "tick-to-order p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns ({} samples)",
            l.p50, l.p99, l.p99_9, l.max, l.count
        );
        if self.stage_latency_ns.iter().any(|l| l.count > 0) {
            let stages: Vec<String> = LatencyStage::ALL
                .iter()
                .map(|stage| {
                    let l = &self.stage_latency_ns[stage.index()];
                    format!("{} p50 {} ns, p99 {} ns ({})", stage.name(), l.p50, l.p99, l.count)
                })
                .collect();
            let _ = writeln!(out, "tick-to-stage {}", stages.join("; "));
        }
        out
    }
}

fn by_reason(m: &BTreeMap<&'static str, u64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" [{}]", parts.join(", "))
}
