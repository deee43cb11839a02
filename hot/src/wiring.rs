//! Every ring of the engine, declared in one place with its capacity and its full-policy.
//!
//! | ring | from → to | record | capacity | when full |
//! |---|---|---|---|---|
//! | `md_alpha[v]` | `md-<v>` → `alpha` | [`Stamped`]`<`[`Tick`]`>` | [`cap::MD_ALPHA`] | back-pressure: the feed keeps the tick and stops reading its socket until there is room |
//! | `alpha_exec` | `alpha` → `exec` | [`Tick`] (every tick Alpha takes, for the paper venues' fills, the maker/taker rule and the router's book) | [`cap::ALPHA_EXEC`] | back-pressure: Alpha keeps the tick and takes no other until it is pushed; Execution takes a tick only with an empty report backlog, and takes the next tick before the next order when the tick's receive time is not after the order's time (so an order meets the market it was decided on) |
//! | `exec_cmd` | cold → `exec` | [`ExecCommand`] (cancel one order; new live parameters on a reload) | [`cap::COMMANDS`] | the cold caller gets its command back |
//! | `alpha_risk` | `alpha` → `risk` | [`Stamped`]`<`[`OrderIntent`]`>` | [`cap::ALPHA_RISK`] | back-pressure: Alpha keeps the intent and takes no tick until it is pushed |
//! | `risk_exec` | `risk` → `exec` | [`Stamped`]`<`[`Order`]`>` | [`cap::RISK_EXEC`] | back-pressure: Risk keeps the order and takes no intent; it still drains reports |
//! | `exec_risk` | `exec` → `risk` | [`ExecReport`] | [`cap::EXEC_RISK`] | back-pressure: Execution takes an order only with room for all its reports; Risk drains reports first on every pass, so this cannot deadlock |
//! | `risk_cmd` | cold → `risk` | [`RiskCommand`] | [`cap::COMMANDS`] | the cold caller gets its command back (crossbeam `ArrayQueue`, many producers); Risk takes a command only with room for [`Risk::max_trim_orders`](crate::stage::risk::Risk::max_trim_orders) orders in `risk_exec`, so a trim never drops an order |
//! | `manual` | cold → `risk` | [`OrderIntent`] (HTTP, gRPC, drills) | [`cap::MANUAL`] | the cold caller gets its intent back (`ArrayQueue`, many producers); Risk takes manual and Alpha intents in turn |
//! | `kill` | any → `risk`, `exec` | [`KillSwitch`]: one atomic word | one | never full: tripping is one atomic operation from any thread (HTTP, `maxx kill`, the `kill-watch` thread's signal and file); Execution reads it before every order |
//! | `alpha_cmd` | cold → `alpha` | [`AlphaInput`] weights, sentiment scores | [`cap::COMMANDS`] | the cold caller gets its command back |
//! | `board` | `alpha` → any reader | latest [`Signal`] per instrument, weights in force ([`SignalBoard`]) | one seqlock slot per instrument, one for the weights | never full: each publish overwrites its slot; Alpha never waits, a reader that raced a write retries |
//! | `risk_board` | `risk` → any reader | trading states, exposure, Kelly clip, balance ([`RiskBoard`]) | one seqlock over the whole board | never full: each publish overwrites it; Risk never waits, a reader that raced a write retries |
//! | `tap_ticks[v]` | `md-<v>` → cold | [`Tick`] | [`cap::TAP_TICKS`] | dropped and counted (`tap_dropped`): market data is never worth stalling for |
//! | `tap_signals` | `alpha` → cold | [`Signal`] | [`cap::TAP_SIGNALS`] | dropped and counted |
//! | `tap_refusals` | `risk` → cold | [`Refusal`] | [`cap::TAP_REFUSALS`] | dropped and counted; per-reason counters stay exact |
//! | `risk_events` | `risk` → cold | [`Transition`] (trading-state changes with their reason) | [`cap::TAP_RISK_EVENTS`] | dropped and counted (`events_dropped`); the state itself is always on the `risk_board` |
//! | `tap_exec` | `exec` → cold | [`ExecEvent`] (orders, acks, fills, rejects, cancels) | [`cap::TAP_EXEC`] | **never dropped**: Execution takes an order only when [`MAX_EVENTS_PER_ORDER`](crate::stage::exec::MAX_EVENTS_PER_ORDER) slots are free, so a stalled cold side stalls trading instead of losing a fill; a kill switch's cancel-all is held in Execution's backlog (sized to the gateway's open orders) and handed on as slots free up, before any further order |
//! | `exec_notes` | `exec` → cold | [`ExecNote`] (venue demoted / re-admitted, passive order repriced or timed out) | [`cap::TAP_EXEC_NOTES`] | dropped and counted (`ExecStats::notes_dropped`): the same facts are in Execution's counters and the orders' own records |
//! | `tap_bad` | `md-<v>` → cold | [`BadFrame`] samples | [`cap::TAP_BAD`] | dropped (the per-reason counters are exact; samples are for the log) |
//! | `capture[v]` | `md-<v>` → cold capture writer | raw frame bytes (`[len u32][recv_ns u64][frame]`) | `Capacities::capture` bytes (only with `market_data.capture_dir`) | the frame is not captured and `capture_dropped` counts it: a slow disk never stalls a feed |
//! | `hist_out` / `hist_back` | `alpha`, `risk`, `exec` ⇄ cold, one pair per stage ([`LatencyStage`]) | boxed HdrHistogram | [`cap::HISTOGRAMS`] | two histograms circulate per stage; the stage keeps recording into its current one until a spare comes back |
//! | `hops` | `md-<v>`, `alpha`, `risk`, `exec` ⇄ cold, one pair per [`Hop`] (only with [`Capacities::hop_histograms`]) | boxed HdrHistogram | [`cap::HISTOGRAMS`] | as `hist_out` / `hist_back` |
//!
//! The three rings that carry a tick towards an order (`md_alpha`, `alpha_risk`, `risk_exec`)
//! carry each record as a [`Stamped`] one: with hop histograms on, the producer writes the
//! monotonic time of the push and the consumer records the hop (pop − push) and its own work
//! (its output's push − its input's pop), so a tick-to-order latency splits into decode, three
//! ring hops and three stages, each sample exactly the difference of two stamps on its path.
//! With them off the stamp is 0 and nobody reads the clock for it.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use hdrhistogram::Histogram;
use rtrb::{Consumer, Producer, RingBuffer};

use crate::board::{RiskBoard, SignalBoard};
use crate::ids::Venue;
use crate::kill::KillSwitch;
use crate::records::{ExecReport, Order, OrderIntent, Signal, Tick, Transition};
use crate::stage::alpha::AlphaInput;
use crate::stage::exec::{ExecCommand, ExecEvent, ExecNote};
use crate::stage::risk::{Refusal, RiskCommand};

/// Ring capacities, in records.
pub mod cap {
    /// Feed → Alpha: a burst of ticks the Alpha thread can fall behind by.
    pub const MD_ALPHA: usize = 8192;
    /// Alpha → Execution market data.
    pub const ALPHA_EXEC: usize = 8192;
    /// Alpha → Risk.
    pub const ALPHA_RISK: usize = 1024;
    /// Risk → Execution.
    pub const RISK_EXEC: usize = 1024;
    /// Execution → Risk: room for two reports of every order the Risk→Exec ring can hold, so
    /// Execution never waits on Risk while Risk is busy.
    pub const EXEC_RISK: usize = 4096;
    /// Cold → hot command queues.
    pub const COMMANDS: usize = 64;
    /// Cold → Risk manual intents.
    pub const MANUAL: usize = 1024;
    /// Risk → cold trading-state transitions.
    pub const TAP_RISK_EVENTS: usize = 1024;
    /// Hot → cold tick tap, per feed: about a second of a busy feed.
    pub const TAP_TICKS: usize = 65536;
    /// Hot → cold signal tap.
    pub const TAP_SIGNALS: usize = 65536;
    /// Hot → cold refusal tap.
    pub const TAP_REFUSALS: usize = 4096;
    /// Hot → cold order/fill tap.
    pub const TAP_EXEC: usize = 65536;
    /// Execution → cold side notes.
    pub const TAP_EXEC_NOTES: usize = 1024;
    /// Bad-frame samples.
    pub const TAP_BAD: usize = 16;
    /// Latency histograms in circulation.
    pub const HISTOGRAMS: usize = 4;
}

/// Bytes of the header before each captured frame: its length (u32 LE) and receive time (u64 LE).
pub const CAPTURE_HEADER: usize = 12;

/// Longest excerpt of a bad frame kept for the log.
pub const BAD_SAMPLE_BYTES: usize = 240;

/// A sample of a frame a decoder refused, for the cold side to log.
#[derive(Clone, Copy, Debug)]
pub struct BadFrame {
    /// Which feed.
    pub venue: Venue,
    /// The decoder's reason, as its stable name.
    pub reason: &'static str,
    /// The field involved, or `""`.
    pub field: &'static str,
    /// Receive time.
    pub recv_ns: u64,
    /// Length of the whole frame.
    pub frame_len: usize,
    /// Bytes of `excerpt` in use.
    pub len: u16,
    /// The frame's first bytes.
    pub excerpt: [u8; BAD_SAMPLE_BYTES],
}

impl BadFrame {
    /// Captures the head of `frame`.
    pub fn new(venue: Venue, reason: &'static str, field: &'static str, recv_ns: u64, frame: &[u8]) -> Self {
        let len = frame.len().min(BAD_SAMPLE_BYTES);
        let mut excerpt = [0; BAD_SAMPLE_BYTES];
        excerpt[..len].copy_from_slice(&frame[..len]);
        Self {
            venue,
            reason,
            field,
            recv_ns,
            frame_len: frame.len(),
            len: len as u16,
            excerpt,
        }
    }

    /// The excerpt, lossily as text.
    pub fn excerpt(&self) -> String {
        String::from_utf8_lossy(&self.excerpt[..usize::from(self.len)]).into_owned()
    }
}

/// A boxed latency histogram, moved between a hot stage and the cold side.
pub type BoxedHistogram = Box<Histogram<u64>>;

/// A record on its way through one of the rings towards an order, with the monotonic time
/// (ns) its producer pushed it; 0 when hop histograms are off (or the record did not come
/// through the pipeline, like a Risk trim order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamped<T> {
    /// The record.
    pub rec: T,
    /// Monotonic push time in ns, or 0.
    pub at: u64,
}

impl<T> Stamped<T> {
    /// `rec`, pushed at `at` (0: not stamped).
    #[inline]
    pub const fn new(rec: T, at: u64) -> Self {
        Self { rec, at }
    }
}

/// One segment of the tick-to-order path, measured between two stamps on it. The segments of
/// one order add up exactly to its tick-to-order latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hop {
    /// MarketData: frame received → its ticks pushed to Alpha (decoding, sequencing, tap).
    Decode,
    /// The `md_alpha` ring: pushed → popped by Alpha (every tick).
    MdAlpha,
    /// Alpha: tick popped → intent pushed (ticks that produced an intent).
    Alpha,
    /// The `alpha_risk` ring: pushed → popped by Risk.
    AlphaRisk,
    /// Risk: intent popped → approved order pushed.
    Risk,
    /// The `risk_exec` ring: pushed → popped by Execution (where tick-to-order ends).
    RiskExec,
    /// Execution: order popped → handed to the venue's gateway and its records emitted. After
    /// the end of tick-to-order, so not part of it.
    Exec,
}

impl Hop {
    /// Every hop, in path order.
    pub const ALL: [Hop; 7] = [
        Hop::Decode,
        Hop::MdAlpha,
        Hop::Alpha,
        Hop::AlphaRisk,
        Hop::Risk,
        Hop::RiskExec,
        Hop::Exec,
    ];

    /// Its name in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Hop::Decode => "decode",
            Hop::MdAlpha => "ring_md_alpha",
            Hop::Alpha => "alpha",
            Hop::AlphaRisk => "ring_alpha_risk",
            Hop::Risk => "risk",
            Hop::RiskExec => "ring_risk_exec",
            Hop::Exec => "exec",
        }
    }

    /// Whether it is a ring hop (the others are a stage's own work).
    pub fn is_ring(self) -> bool {
        matches!(self, Hop::MdAlpha | Hop::AlphaRisk | Hop::RiskExec)
    }
}

/// The cold side's end of one hop histogram hand-off.
#[derive(Debug)]
pub struct HopIn {
    /// Which hop.
    pub hop: Hop,
    /// The feed, for [`Hop::Decode`] (one per feed); `None` for the others.
    pub venue: Option<Venue>,
    /// Filled histograms in, empty ones back.
    pub link: HistogramIn,
}

/// A stage's two hop hand-offs: the ring hop into it and its own work.
#[derive(Debug)]
pub struct HopOut {
    /// The inbound ring hop.
    pub ring: HistogramOut,
    /// The stage's work.
    pub work: HistogramOut,
}

/// Creates the hop hand-off for `hop` (`venue` for decoding), its cold end going to `cold`.
fn hop_link(hop: Hop, venue: Option<Venue>, cold: &mut Vec<HopIn>) -> HistogramOut {
    let (out, link) = histogram_link();
    cold.push(HopIn { hop, venue, link });
    out
}

/// A stage's pair of hop hand-offs, when hop histograms are on.
fn hop_pair(ring: Hop, work: Hop, on: bool, cold: &mut Vec<HopIn>) -> Option<HopOut> {
    on.then(|| HopOut {
        ring: hop_link(ring, None, cold),
        work: hop_link(work, None, cold),
    })
}

/// A hot stage that records latency from the triggering tick's receive stamp into its own
/// histogram. Each figure is cumulative from the tick's receipt: decoding and every ring hop
/// before the stage fold into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LatencyStage {
    /// Tick → Alpha's intent.
    Alpha,
    /// Tick → Risk's approval.
    Risk,
    /// Tick → order sent by Execution (the tick-to-order latency).
    Exec,
}

impl LatencyStage {
    /// Every stage, in pipeline order.
    pub const ALL: [LatencyStage; 3] = [LatencyStage::Alpha, LatencyStage::Risk, LatencyStage::Exec];

    /// Its name in metrics and summaries.
    pub fn name(self) -> &'static str {
        match self {
            LatencyStage::Alpha => "alpha",
            LatencyStage::Risk => "risk",
            LatencyStage::Exec => "exec",
        }
    }

    /// Its position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A hot stage's end of its histogram hand-off: filled histograms out, emptied ones back.
#[derive(Debug)]
pub struct HistogramOut {
    /// Filled histograms out.
    pub hist_out: Producer<BoxedHistogram>,
    /// Empty histograms back.
    pub hist_back: Consumer<BoxedHistogram>,
}

/// The cold side's end of one stage's histogram hand-off.
#[derive(Debug)]
pub struct HistogramIn {
    /// Filled histograms.
    pub hist_in: Consumer<BoxedHistogram>,
    /// Where emptied histograms go back.
    pub hist_back: Producer<BoxedHistogram>,
}

/// One stage's histogram hand-off, with one empty spare already on its way back (the stage
/// owns the other): two histograms circulate. Allocates both rings and the spare, at start.
fn histogram_link() -> (HistogramOut, HistogramIn) {
    let (hist_out, hist_in) = RingBuffer::new(cap::HISTOGRAMS);
    let (mut back_tx, back_rx) = RingBuffer::new(cap::HISTOGRAMS);
    let _ = back_tx.push(Box::new(crate::stage::exec::latency_histogram()));
    (
        HistogramOut {
            hist_out,
            hist_back: back_rx,
        },
        HistogramIn {
            hist_in,
            hist_back: back_tx,
        },
    )
}

/// The ends a feed thread owns.
#[derive(Debug)]
pub struct FeedEnds {
    /// Which venue.
    pub venue: Venue,
    /// Ticks to Alpha.
    pub to_alpha: Producer<Stamped<Tick>>,
    /// Tick tap.
    pub tap: Producer<Tick>,
    /// Bad-frame samples.
    pub bad: Producer<BadFrame>,
    /// Raw frames for the capture writer, when capturing.
    pub capture: Option<Producer<u8>>,
    /// Decode-time histograms out and back, with hop histograms on.
    pub decode: Option<HistogramOut>,
}

/// The ends Alpha owns.
#[derive(Debug)]
pub struct AlphaEnds {
    /// One tick ring per feed.
    pub ticks: Vec<Consumer<Stamped<Tick>>>,
    /// Commands from the cold side.
    pub commands: Arc<ArrayQueue<AlphaInput>>,
    /// Intents to Risk.
    pub to_risk: Producer<Stamped<OrderIntent>>,
    /// Every tick, on to Execution.
    pub to_exec: Producer<Tick>,
    /// Signal tap.
    pub tap: Producer<Signal>,
    /// Latest signals and weights, for readers on any thread.
    pub board: Arc<SignalBoard>,
    /// Tick → intent latency histograms out and back.
    pub latency: HistogramOut,
    /// `md_alpha` hop and Alpha's work, with hop histograms on.
    pub hops: Option<HopOut>,
}

/// The ends Risk owns.
#[derive(Debug)]
pub struct RiskEnds {
    /// Intents from Alpha.
    pub intents: Consumer<Stamped<OrderIntent>>,
    /// Reports from Execution.
    pub reports: Consumer<ExecReport>,
    /// Commands from the cold side.
    pub commands: Arc<ArrayQueue<RiskCommand>>,
    /// Manual intents from the cold side.
    pub manual: Arc<ArrayQueue<OrderIntent>>,
    /// Orders to Execution.
    pub to_exec: Producer<Stamped<Order>>,
    /// Refusal tap.
    pub tap: Producer<Refusal>,
    /// Trading-state transitions to the cold side.
    pub events: Producer<Transition>,
    /// Risk's state for readers on any thread.
    pub board: Arc<RiskBoard>,
    /// The kill switch.
    pub kill: KillSwitch,
    /// Tick → approval latency histograms out and back.
    pub latency: HistogramOut,
    /// `alpha_risk` hop and Risk's work, with hop histograms on.
    pub hops: Option<HopOut>,
}

/// The ends Execution owns.
#[derive(Debug)]
pub struct ExecEnds {
    /// Approved orders.
    pub orders: Consumer<Stamped<Order>>,
    /// Market data from Alpha.
    pub ticks: Consumer<Tick>,
    /// Operator commands (cancels) from the cold side.
    pub commands: Arc<ArrayQueue<ExecCommand>>,
    /// Reports back to Risk.
    pub to_risk: Producer<ExecReport>,
    /// Order/fill tap (never dropped).
    pub tap: Producer<ExecEvent>,
    /// Notes for operators (dropped when full).
    pub notes: Producer<ExecNote>,
    /// Tick → order latency histograms out and back.
    pub latency: HistogramOut,
    /// `risk_exec` hop and Execution's work, with hop histograms on.
    pub hops: Option<HopOut>,
    /// The kill switch, read before every order.
    pub kill: KillSwitch,
}

/// The ends the cold side owns.
#[derive(Debug)]
pub struct ColdEnds {
    /// Tick taps, one per feed.
    pub ticks: Vec<(Venue, Consumer<Tick>)>,
    /// Bad-frame samples, one per feed.
    pub bad: Vec<(Venue, Consumer<BadFrame>)>,
    /// Raw frames to capture, one per feed when capturing.
    pub captures: Vec<(Venue, Consumer<u8>)>,
    /// Signal tap.
    pub signals: Consumer<Signal>,
    /// Refusal tap.
    pub refusals: Consumer<Refusal>,
    /// Order/fill tap.
    pub exec: Consumer<ExecEvent>,
    /// Execution's notes: venue demotions and re-admissions, reprices, passive timeouts.
    pub exec_notes: Consumer<ExecNote>,
    /// Execution's filled (tick → order) histograms.
    pub hist_in: Consumer<BoxedHistogram>,
    /// Where Execution's emptied histograms go back.
    pub hist_back: Producer<BoxedHistogram>,
    /// Alpha's (tick → intent) histograms.
    pub alpha_hist: HistogramIn,
    /// Risk's (tick → approval) histograms.
    pub risk_hist: HistogramIn,
    /// Every hop histogram hand-off, in path order (empty with hop histograms off).
    pub hops: Vec<HopIn>,
    /// Commands to Risk.
    pub risk_cmd: Arc<ArrayQueue<RiskCommand>>,
    /// Commands to Alpha.
    pub alpha_cmd: Arc<ArrayQueue<AlphaInput>>,
    /// Commands to Execution (`POST /cancel`, gRPC `CancelOrder`).
    pub exec_cmd: Arc<ArrayQueue<ExecCommand>>,
    /// Alpha's latest signal per instrument and the weights it applied (`GET /signal`,
    /// confirming a reweight).
    pub board: Arc<SignalBoard>,
    /// Manual intents to Risk (`POST /order`, gRPC, drills): they pass the same gate as Alpha's.
    pub manual: Arc<ArrayQueue<OrderIntent>>,
    /// Trading-state transitions, with their reasons.
    pub risk_events: Consumer<Transition>,
    /// Risk's trading states and exposure (`GET /risk/state`).
    pub risk_board: Arc<RiskBoard>,
    /// The kill switch: [`KillSwitch::trip`] halts Risk, stops every order still inside the hot
    /// path and cancels every resting order; Risk's `Resume` command lifts it.
    pub kill: KillSwitch,
}

/// All ring ends of one engine.
#[derive(Debug)]
pub struct Wiring {
    /// One per feed, in the order given to [`wire`].
    pub feeds: Vec<FeedEnds>,
    /// Alpha's.
    pub alpha: AlphaEnds,
    /// Risk's.
    pub risk: RiskEnds,
    /// Execution's.
    pub exec: ExecEnds,
    /// The cold side's.
    pub cold: ColdEnds,
}

/// Ring capacities of one engine; [`Default`] is the table above. Tests shrink them to
/// exercise the full-policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    /// `md_alpha[v]`.
    pub md_alpha: usize,
    /// `alpha_exec`.
    pub alpha_exec: usize,
    /// `alpha_risk`.
    pub alpha_risk: usize,
    /// `risk_exec`.
    pub risk_exec: usize,
    /// `exec_risk`.
    pub exec_risk: usize,
    /// `tap_ticks[v]`.
    pub tap_ticks: usize,
    /// `tap_signals`.
    pub tap_signals: usize,
    /// `tap_refusals`.
    pub tap_refusals: usize,
    /// `tap_exec`.
    pub tap_exec: usize,
    /// `risk_events`.
    pub tap_risk_events: usize,
    /// `capture[v]` in bytes; 0 when not capturing.
    pub capture: usize,
    /// Stamp every record on its way to an order and hand over per-hop histograms
    /// ([`Hop`]): two clock reads more per tick and per stage. Off by default (`maxx bench`
    /// turns it on).
    pub hop_histograms: bool,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            md_alpha: cap::MD_ALPHA,
            alpha_exec: cap::ALPHA_EXEC,
            alpha_risk: cap::ALPHA_RISK,
            risk_exec: cap::RISK_EXEC,
            exec_risk: cap::EXEC_RISK,
            tap_ticks: cap::TAP_TICKS,
            tap_signals: cap::TAP_SIGNALS,
            tap_refusals: cap::TAP_REFUSALS,
            tap_exec: cap::TAP_EXEC,
            tap_risk_events: cap::TAP_RISK_EVENTS,
            capture: 0,
            hop_histograms: false,
        }
    }
}

/// Creates every ring with the default capacities and a signal board without instrument slots:
/// for exercising the rings alone. Engines are wired by [`wire_with`]. All allocation happens
/// here, at start.
pub fn wire(feeds: &[Venue]) -> Wiring {
    wire_with(feeds, 0, Capacities::default())
}

/// Creates every ring with these capacities, both boards with room for `instruments`, and a
/// kill switch that is not tripped.
///
/// `exec_risk` and `tap_exec` are raised to at least
/// [`MAX_EVENTS_PER_ORDER`](crate::stage::exec::MAX_EVENTS_PER_ORDER), below which Execution could
/// never take an order.
pub fn wire_with(feeds: &[Venue], instruments: usize, c: Capacities) -> Wiring {
    let min = crate::stage::exec::MAX_EVENTS_PER_ORDER;
    let mut feed_ends = Vec::new();
    let mut alpha_ticks = Vec::new();
    let mut cold_ticks = Vec::new();
    let mut cold_bad = Vec::new();
    let mut cold_captures = Vec::new();
    let mut hops = Vec::new();
    for &venue in feeds {
        let (to_alpha, from_md) = RingBuffer::new(c.md_alpha);
        let (tap, tap_rx) = RingBuffer::new(c.tap_ticks);
        let (bad, bad_rx) = RingBuffer::new(cap::TAP_BAD);
        let capture = (c.capture > 0).then(|| {
            let (tx, rx) = RingBuffer::new(c.capture);
            cold_captures.push((venue, rx));
            tx
        });
        let decode = c.hop_histograms.then(|| hop_link(Hop::Decode, Some(venue), &mut hops));
        feed_ends.push(FeedEnds {
            venue,
            to_alpha,
            tap,
            bad,
            capture,
            decode,
        });
        alpha_ticks.push(from_md);
        cold_ticks.push((venue, tap_rx));
        cold_bad.push((venue, bad_rx));
    }
    let (alpha_to_risk, risk_intents) = RingBuffer::new(c.alpha_risk);
    let (alpha_to_exec, exec_ticks) = RingBuffer::new(c.alpha_exec.max(1));
    let exec_cmd = Arc::new(ArrayQueue::new(cap::COMMANDS));
    let (risk_to_exec, exec_orders) = RingBuffer::new(c.risk_exec);
    let (exec_to_risk, risk_reports) = RingBuffer::new(c.exec_risk.max(min));
    let (signal_tap, signals) = RingBuffer::new(c.tap_signals);
    let (refusal_tap, refusals) = RingBuffer::new(c.tap_refusals);
    let (exec_tap, exec_events) = RingBuffer::new(c.tap_exec.max(min));
    let (notes_tap, exec_notes) = RingBuffer::new(cap::TAP_EXEC_NOTES);
    let (events_tap, risk_events) = RingBuffer::new(c.tap_risk_events.max(1));
    let (alpha_latency, alpha_hist) = histogram_link();
    let (risk_latency, risk_hist) = histogram_link();
    let (exec_latency, exec_hist) = histogram_link();
    let on = c.hop_histograms;
    let alpha_hops = hop_pair(Hop::MdAlpha, Hop::Alpha, on, &mut hops);
    let risk_hops = hop_pair(Hop::AlphaRisk, Hop::Risk, on, &mut hops);
    let exec_hops = hop_pair(Hop::RiskExec, Hop::Exec, on, &mut hops);
    let risk_cmd = Arc::new(ArrayQueue::new(cap::COMMANDS));
    let alpha_cmd = Arc::new(ArrayQueue::new(cap::COMMANDS));
    let board = Arc::new(SignalBoard::new(instruments));
    let manual = Arc::new(ArrayQueue::new(cap::MANUAL));
    let risk_board = Arc::new(RiskBoard::new(instruments));
    let kill = KillSwitch::new();
    Wiring {
        feeds: feed_ends,
        alpha: AlphaEnds {
            ticks: alpha_ticks,
            commands: Arc::clone(&alpha_cmd),
            to_risk: alpha_to_risk,
            to_exec: alpha_to_exec,
            tap: signal_tap,
            board: Arc::clone(&board),
            latency: alpha_latency,
            hops: alpha_hops,
        },
        risk: RiskEnds {
            intents: risk_intents,
            reports: risk_reports,
            commands: Arc::clone(&risk_cmd),
            manual: Arc::clone(&manual),
            to_exec: risk_to_exec,
            tap: refusal_tap,
            events: events_tap,
            board: Arc::clone(&risk_board),
            kill: kill.clone(),
            latency: risk_latency,
            hops: risk_hops,
        },
        exec: ExecEnds {
            orders: exec_orders,
            ticks: exec_ticks,
            commands: Arc::clone(&exec_cmd),
            to_risk: exec_to_risk,
            tap: exec_tap,
            notes: notes_tap,
            latency: exec_latency,
            hops: exec_hops,
            kill: kill.clone(),
        },
        cold: ColdEnds {
            ticks: cold_ticks,
            bad: cold_bad,
            captures: cold_captures,
            signals,
            refusals,
            exec: exec_events,
            exec_notes,
            hist_in: exec_hist.hist_in,
            hist_back: exec_hist.hist_back,
            alpha_hist,
            risk_hist,
            hops,
            risk_cmd,
            alpha_cmd,
            exec_cmd,
            board,
            manual,
            risk_events,
            risk_board,
            kill,
        },
    }
}
