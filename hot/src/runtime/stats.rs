//! Per-stage counters, written by one hot thread each and read by the cold side.

use crate::feed::DecodeReason;
use crate::ids::Venue;
use crate::records::{RejectReason, RouteReason};
use crate::stats::Counter;

/// Values of [`FeedStats::state`]: what the feed task knows about its data.
pub mod feed_state {
    /// No tick yet since start or since the last restart.
    pub const WAITING: u64 = 0;
    /// Ticks are arriving.
    pub const LIVE: u64 = 1;
    /// No tick for `stale_after`: the source was restarted and is reconnecting.
    pub const STALE: u64 = 2;
}

/// Occupancy of one hot → hot ring, sampled by the task that consumes it: a relaxed store of
/// `Consumer::slots()` at most once per poll batch (every [`RING_SAMPLE_EVERY`] polls), no
/// allocation, no lock. Read by the cold side's `/metrics`.
#[derive(Debug, Default)]
pub struct RingGauge {
    /// Records waiting in the ring at the last sample.
    pub occupancy: Counter,
    /// The ring's capacity in records (set once, when the task is built).
    pub capacity: Counter,
}

/// A consuming task samples its rings' occupancy once every this many polls: often enough for
/// a gauge scraped every few seconds, rare enough that the extra load of the producer's index
/// (a cache line the producer keeps writing) stays off the per-record cost.
pub const RING_SAMPLE_EVERY: u32 = 64;

/// Counters of one feed.
#[derive(Debug)]
pub struct FeedStats {
    /// Which venue.
    pub venue: Venue,
    /// Frames (or capture lines) received.
    pub frames: Counter,
    /// Trade ticks decoded.
    pub trades: Counter,
    /// Best bid/ask ticks decoded.
    pub quotes: Counter,
    /// Depth updates recognised and skipped.
    pub skipped_depth: Counter,
    /// Aggregate trades recognised and skipped.
    pub skipped_agg_trade: Counter,
    /// Book snapshots recognised and skipped.
    pub skipped_snapshot: Counter,
    /// Other recognised frames skipped.
    pub skipped_other: Counter,
    /// Control frames (subscription results, errors, shutdown notices).
    pub control: Counter,
    /// Error replies from the venue.
    pub venue_errors: Counter,
    /// Subscriptions the venue refused.
    pub subscribe_rejected: Counter,
    /// Venue heartbeats received.
    pub heartbeats: Counter,
    /// Sequence gaps detected (missed messages).
    pub gaps: Counter,
    /// Make-before-break rotations started.
    pub rotations: Counter,
    /// Restarts because no tick arrived for `stale_after`.
    pub stale_restarts: Counter,
    /// Frames not captured because the capture ring was full.
    pub capture_dropped: Counter,
    /// Ticks dropped as duplicates (the same trade or update seen on two connections).
    pub duplicates: Counter,
    /// Frames refused by the decoder, per [`DecodeReason`].
    pub bad: [Counter; DecodeReason::COUNT],
    /// Capture lines without a `<recv_ns> ` prefix.
    pub malformed_lines: Counter,
    /// Ticks not copied to the cold side because its tap was full.
    pub tap_dropped: Counter,
    /// Successful connections.
    pub connects: Counter,
    /// Connections lost or closed.
    pub disconnects: Counter,
    /// Receive time of the last tick (ns since the epoch), a gauge.
    pub last_tick_wall_ns: Counter,
    /// A [`feed_state`] value, a gauge any thread may read (Risk uses it to stop opening
    /// positions on an instrument whose data is stale).
    pub state: Counter,
}

impl FeedStats {
    /// Zeroed counters.
    pub fn new(venue: Venue) -> Self {
        Self {
            venue,
            frames: Counter::new(),
            trades: Counter::new(),
            quotes: Counter::new(),
            skipped_depth: Counter::new(),
            skipped_agg_trade: Counter::new(),
            skipped_snapshot: Counter::new(),
            skipped_other: Counter::new(),
            control: Counter::new(),
            venue_errors: Counter::new(),
            subscribe_rejected: Counter::new(),
            heartbeats: Counter::new(),
            gaps: Counter::new(),
            rotations: Counter::new(),
            stale_restarts: Counter::new(),
            capture_dropped: Counter::new(),
            duplicates: Counter::new(),
            bad: std::array::from_fn(|_| Counter::new()),
            malformed_lines: Counter::new(),
            tap_dropped: Counter::new(),
            connects: Counter::new(),
            disconnects: Counter::new(),
            last_tick_wall_ns: Counter::new(),
            state: Counter::new(),
        }
    }

    /// Frames refused by the decoder, all reasons.
    pub fn bad_total(&self) -> u64 {
        self.bad.iter().map(Counter::get).sum::<u64>() + self.malformed_lines.get()
    }

    /// Frames recognised and skipped, all kinds.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_depth.get() + self.skipped_agg_trade.get() + self.skipped_snapshot.get() + self.skipped_other.get()
    }
}

/// Counters of Alpha.
#[derive(Debug, Default)]
pub struct AlphaStats {
    /// Polls of the stage's loop, counted in steps of [`RING_SAMPLE_EVERY`]: advances while the
    /// thread runs, busy or idle (`/healthz` checks that it does).
    pub heartbeat: Counter,
    /// Ticks processed.
    pub ticks: Counter,
    /// Signals produced.
    pub signals: Counter,
    /// Intents produced.
    pub intents: Counter,
    /// Commands applied.
    pub commands: Counter,
    /// Sentiment scores received (applied, or ignored for an unknown instrument).
    pub sentiment_inputs: Counter,
    /// Weight commands applied (each also published to the signal board).
    pub weight_updates: Counter,
    /// Signals not copied to the cold side because its tap was full.
    pub tap_dropped: Counter,
    /// Occupancy of each `md_alpha[v]` ring, by the feed's position in the engine (the order
    /// of `EngineStats::feeds`), written by Alpha.
    pub md_alpha: [RingGauge; Venue::COUNT],
}

/// Counters of Risk.
#[derive(Debug, Default)]
pub struct RiskStats {
    /// Polls of the stage's loop, counted in steps of [`RING_SAMPLE_EVERY`]: advances while the
    /// thread runs, busy or idle (`/healthz` checks that it does).
    pub heartbeat: Counter,
    /// Intents approved as orders.
    pub approved: Counter,
    /// Intents refused, per [`RejectReason`].
    pub refused: [Counter; RejectReason::COUNT],
    /// Target intents already met.
    pub nothing: Counter,
    /// 1 while the kill switch is engaged.
    pub killed: Counter,
    /// The Kelly clip in force, as the raw bits of its `Factor` (`Factor::from_bits(v as i64)`).
    pub kelly_clip: Counter,
    /// Refusals not copied to the cold side because its tap was full.
    pub tap_dropped: Counter,
    /// Intents taken from the manual queue (HTTP, gRPC, drills).
    pub manual_intents: Counter,
    /// Commands applied from the `risk_cmd` queue.
    pub commands: Counter,
    /// Orders Risk created itself (trims), sent to Execution.
    pub risk_orders: Counter,
    /// Trading-state transitions Risk made.
    pub transitions: Counter,
    /// Transitions not copied to the cold side because the `risk_events` tap was full (the
    /// risk board still shows the state).
    pub events_dropped: Counter,
    /// Kill-switch trips Risk has acted on (one per generation it saw, plus `Kill` commands).
    pub kill_trips: Counter,
    /// Position per instrument, raw 10^-8 units as two's complement.
    pub position_raw: Vec<Counter>,
    /// Occupancy of the `alpha_risk` ring, written by Risk.
    pub alpha_risk: RingGauge,
    /// Occupancy of the `exec_risk` ring, written by Risk.
    pub exec_risk: RingGauge,
}

impl RiskStats {
    /// Zeroed counters for `instruments` instruments.
    pub fn new(instruments: usize) -> Self {
        Self {
            position_raw: (0..instruments).map(|_| Counter::new()).collect(),
            ..Self::default()
        }
    }

    /// Refusals, all reasons.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(Counter::get).sum()
    }
}

/// Counters of Execution.
#[derive(Debug, Default)]
pub struct ExecStats {
    /// Polls of the stage's loop, counted in steps of [`RING_SAMPLE_EVERY`]: advances while the
    /// thread runs, busy or idle (`/healthz` checks that it does).
    pub heartbeat: Counter,
    /// Orders sent to the gateway.
    pub orders: Counter,
    /// Fills received.
    pub fills: Counter,
    /// Rejects, the venue's and the kill switch's.
    pub rejects: Counter,
    /// Rejects per [`RejectReason`] (`kill_switch`: orders the kill switch stopped before the
    /// gateway; `venue_reject`, `no_price`, `overflow`: the venue's).
    pub rejected: [Counter; RejectReason::COUNT],
    /// Orders cancelled (each `Cancelled` report).
    pub cancels: Counter,
    /// Orders whose outcome was lost (timeout, 5xx) until the venue was queried.
    pub unknown: Counter,
    /// Cancels the venue refused (unknown or final orders).
    pub cancel_rejects: Counter,
    /// Operator commands taken.
    pub commands: Counter,
    /// Ticks of market data taken.
    pub ticks: Counter,
    /// Engine orders routed, per venue (by `Venue::index`).
    pub routed: [Counter; Venue::COUNT],
    /// Engine orders routed, per [`RouteReason::index`] (`RouteReason::NAMES`).
    pub route_reasons: [Counter; RouteReason::COUNT],
    /// Orders Execution posted passively (maker) under the maker/taker rule.
    pub maker_orders: Counter,
    /// Orders Execution sent to take (IOC) under the maker/taker rule.
    pub taker_orders: Counter,
    /// Orders with an explicit time in force, sent as asked.
    pub as_asked: Counter,
    /// Passive orders repriced to a new touch.
    pub reprices: Counter,
    /// Passive orders crossed after their time ran out.
    pub timeout_takes: Counter,
    /// Passive orders cancelled after their time ran out.
    pub timeout_cancels: Counter,
    /// Venue demotions for a high reject ratio, per venue.
    pub demotions: [Counter; Venue::COUNT],
    /// Re-admissions after probation, per venue.
    pub readmissions: [Counter; Venue::COUNT],
    /// 1 while the venue is demoted, per venue (a gauge).
    pub demoted: [Counter; Venue::COUNT],
    /// Submit-to-ack latency EWMA in ns of logical time, per venue (a gauge).
    pub ack_latency_ns: [Counter; Venue::COUNT],
    /// Fills that provided liquidity.
    pub maker_fills: Counter,
    /// Fills that took liquidity.
    pub taker_fills: Counter,
    /// Engine orders filled completely.
    pub filled: Counter,
    /// Gateway reports about orders Execution no longer held.
    pub strays: Counter,
    /// Notes not handed to the cold side (Execution's queue or the `exec_notes` ring full).
    pub notes_dropped: Counter,
    /// Engine orders open at the gateways (a gauge).
    pub open_orders: Counter,
    /// Occupancy of the `risk_exec` ring, written by Execution.
    pub risk_exec: RingGauge,
    /// Occupancy of the `alpha_exec` ring, written by Execution.
    pub alpha_exec: RingGauge,
}
