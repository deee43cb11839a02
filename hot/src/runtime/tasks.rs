//! The four kinds of hot task: a stage's state plus the ring ends it owns.
//!
//! Every task has the same shape: `poll` does at most a small, bounded amount of work and says
//! whether it did any; `finished` says whether the task has drained and may stop. Threads run
//! one task (pinned layout) or several in turn (fused layout) through [`AnyTask`], a closed
//! enum, so dispatch is a `match`, never a virtual call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::board::{InstrumentRiskView, SystemRiskView};
use crate::clock::{Clock, SystemClock, mono_ns};
use crate::feed::{Control, Decoded, FrameMeta, Numbering, Sequencing, SkipKind, TickBatch};
use crate::ids::{InstrumentId, InstrumentIndex, Venue};
use crate::records::{ExecReport, Order, OrderIntent, Scope, Stamp, TickBody};
use crate::source::{Decode, FrameSource, Next};
use crate::stage::alpha::{Alpha, AlphaInput, AlphaOut};
use crate::stage::exec::{Exec, ExecEvent, Gateway, MAX_EVENTS_PER_ORDER, latency_histogram};
use crate::stage::risk::{Decision, Risk, RiskCommand};
use crate::wiring::{
    AlphaEnds, BadFrame, BoxedHistogram, CAPTURE_HEADER, ExecEnds, FeedEnds, HistogramOut, HopOut, RiskEnds, Stamped,
};

use super::stats::{AlphaStats, ExecStats, FeedStats, RING_SAMPLE_EVERY, RiskStats, feed_state};

/// Flags shared by every task of one engine, for stopping and draining in order.
///
/// Shutdown runs downstream: `stop` closes the feeds; each stage closes once everything
/// upstream is closed and its inputs are empty; Risk finishes last, after Execution, because it
/// must keep draining Execution's reports.
#[derive(Debug, Default)]
pub struct Flags {
    stop: AtomicBool,
    feeds_open: std::sync::atomic::AtomicUsize,
    alpha_closed: AtomicBool,
    risk_closed: AtomicBool,
    exec_closed: AtomicBool,
}

impl Flags {
    /// Flags for an engine with `feeds` feeds.
    pub fn new(feeds: usize) -> Arc<Self> {
        let f = Self::default();
        f.feeds_open.store(feeds, Ordering::Relaxed);
        Arc::new(f)
    }

    /// Asks the feeds to stop; the rest of the engine drains behind them.
    pub fn request_stop(&self) {
        // Release: pairs with the Acquire in `stop_requested` on the feed threads.
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn close_feed(&self) {
        // Release: every tick this feed pushed happens-before Alpha's Acquire load below.
        self.feeds_open.fetch_sub(1, Ordering::Release);
    }

    fn feeds_closed(&self) -> bool {
        self.feeds_open.load(Ordering::Acquire) == 0
    }

    fn close(flag: &AtomicBool) {
        // Release: the stage's last push happens-before the downstream stage's Acquire load,
        // so "upstream closed and my ring is empty" really means nothing more will come.
        flag.store(true, Ordering::Release);
    }

    fn closed(flag: &AtomicBool) -> bool {
        flag.load(Ordering::Acquire)
    }

    /// Whether Execution has drained and closed (the engine's last order-producing stage).
    pub fn exec_closed(&self) -> bool {
        Self::closed(&self.exec_closed)
    }
}

/// MarketData: a frame source, a decoder and the rings to Alpha and the cold side.
#[derive(Debug)]
pub struct FeedTask<S, D> {
    source: S,
    decoder: D,
    index: Arc<InstrumentIndex>,
    ends: FeedEnds,
    stats: Arc<FeedStats>,
    flags: Arc<Flags>,
    /// The ticks of the current frame; `next` is the first not yet handed to Alpha.
    batch: Box<TickBatch>,
    next: usize,
    last_bad_sample: u64,
    closed: bool,
    close_reported: bool,
    /// Last trade and quote id per instrument, and the connection epoch that sent them.
    seqs: Vec<SeqState>,
    sequencing: Sequencing,
    /// Epoch of the previous frame, to tell the decoder when the connection changes.
    last_epoch: u32,
    /// During a rotation: the two connections were seen to overlap.
    overlap_seen: bool,
    /// No tick for this long (ns) restarts the source; 0 disables (replay).
    stale_after_ns: u64,
    /// Monotonic time of the last tick (or of the last restart).
    last_tick_mono: u64,
    idle_passes: u32,
    /// Decode-time recorder, with hop histograms on (its hand-off is `ends.decode`).
    decode: Option<StageLatency>,
    /// Push stamp of the current batch's ticks (0 with hop histograms off).
    batch_at: u64,
    /// Frames handled, for the decode histogram's hand-over checks.
    passes: u32,
}

/// Where an instrument's numbering stands, for duplicate and gap detection.
#[derive(Clone, Copy, Debug, Default)]
struct SeqState {
    trade: u64,
    trade_epoch: u32,
    quote: u64,
    quote_epoch: u32,
    /// During a rotation: the highest trade / quote id the new connection delivered ahead of
    /// the old one (dropped, because the old connection still owes the ids before it).
    ahead_trade: u64,
    ahead_quote: u64,
}

/// What the numbering says about one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// New data.
    Fresh,
    /// New data after a hole in consecutive ids.
    AfterGap,
    /// Already seen (on this or the other connection of a rotation).
    Duplicate,
}

/// Judges `seq` against the last id seen. During a rotation every id not above the last is a
/// duplicate; outside one, a lower id from a newer connection means the venue renumbered (a new
/// session) and is accepted.
fn judge(numbering: Numbering, last: &mut u64, last_epoch: &mut u32, seq: u64, epoch: u32, rotating: bool) -> Verdict {
    if numbering == Numbering::None {
        return Verdict::Fresh;
    }
    if *last != 0 && seq <= *last && (rotating || epoch == *last_epoch) {
        return Verdict::Duplicate;
    }
    let gap = numbering == Numbering::Consecutive && *last != 0 && seq > *last + 1;
    *last = seq;
    *last_epoch = epoch;
    if gap { Verdict::AfterGap } else { Verdict::Fresh }
}

/// Minimum spacing of bad-frame samples sent to the log, per feed.
const BAD_SAMPLE_EVERY_NS: u64 = 1_000_000_000;

impl<S: FrameSource, D: Decode> FeedTask<S, D> {
    /// A feed task.
    pub fn new(
        source: S,
        decoder: D,
        index: Arc<InstrumentIndex>,
        ends: FeedEnds,
        stats: Arc<FeedStats>,
        flags: Arc<Flags>,
    ) -> Self {
        let seqs = vec![SeqState::default(); index.len()];
        let sequencing = decoder.sequencing();
        let decode = ends.decode.is_some().then(|| StageLatency::new(DEFAULT_HOP_EVERY_NS));
        Self {
            source,
            decoder,
            index,
            ends,
            stats,
            flags,
            batch: Box::new(TickBatch::new()),
            next: 0,
            last_bad_sample: 0,
            closed: false,
            close_reported: false,
            seqs,
            sequencing,
            last_epoch: 0,
            overlap_seen: false,
            stale_after_ns: 0,
            last_tick_mono: 0,
            idle_passes: 0,
            decode,
            batch_at: 0,
            passes: 0,
        }
    }

    /// Hands the decode-time histogram over every `every` (with hop histograms on).
    pub fn with_histogram_every(mut self, every: std::time::Duration) -> Self {
        if self.decode.is_some() {
            self.decode = Some(StageLatency::new(every.as_nanos() as u64));
        }
        self
    }

    /// Restarts the source when no tick has arrived for `after` (spec section 8: 5 s).
    pub fn with_stale_after(mut self, after: std::time::Duration) -> Self {
        self.stale_after_ns = after.as_nanos() as u64;
        self
    }

    /// Called on idle passes: a feed without ticks for `stale_after` is restarted.
    #[inline]
    fn check_stale(&mut self) {
        self.idle_passes = self.idle_passes.wrapping_add(1);
        if self.stale_after_ns == 0 || !self.idle_passes.is_multiple_of(256) {
            return;
        }
        let now = mono_ns();
        if self.last_tick_mono == 0 {
            self.last_tick_mono = now;
        } else if now.saturating_sub(self.last_tick_mono) > self.stale_after_ns {
            self.stats.stale_restarts.inc();
            self.stats.state.set(feed_state::STALE);
            self.last_tick_mono = now;
            self.source.restart();
        }
    }

    /// Which venue.
    pub fn venue(&self) -> Venue {
        self.ends.venue
    }

    /// Hands the current frame's remaining ticks to Alpha; `false` if its ring is full.
    #[inline]
    fn flush_batch(&mut self) -> bool {
        while let Some(tick) = self.batch.as_slice().get(self.next) {
            if self.ends.to_alpha.push(Stamped::new(*tick, self.batch_at)).is_err() {
                return false;
            }
            self.next += 1;
        }
        true
    }

    /// Drops duplicates and counts gaps, then counts and taps the batch and starts handing it
    /// to Alpha.
    ///
    /// During a make-before-break rotation the old connection stays the one that counts: the
    /// new connection's ticks are only compared against it, never passed on. The rotation
    /// finishes once the two are seen to overlap (the new one delivers an id the old one already
    /// did, or the old one reaches an id the new one delivered) and the old one has delivered
    /// every id the new one has shown so far, on every instrument: then the old connection is
    /// closed and, from then on, the new one's ticks above the last id are passed on. Nothing
    /// is missed (the old connection covered everything before the new one's position) and
    /// nothing is doubled (ids not above the last are dropped).
    #[inline]
    fn accept_batch(&mut self, meta: FrameMeta, epoch: u32) {
        let rotating = self.source.rotating();
        let from_new = rotating == Some(epoch);
        let (seqs, sequencing, stats) = (&mut self.seqs, self.sequencing, &self.stats);
        let unnumbered = sequencing.trades == Numbering::None && sequencing.quotes == Numbering::None;
        let mut overlap = from_new && unnumbered;
        self.batch.retain(|t| {
            let Some(st) = seqs.get_mut(t.instrument.index()) else {
                return true;
            };
            let is_trade = matches!(t.body, TickBody::Trade { .. });
            let (numbering, last, last_epoch, ahead) = match t.body {
                TickBody::Trade { .. } => (
                    sequencing.trades,
                    &mut st.trade,
                    &mut st.trade_epoch,
                    &mut st.ahead_trade,
                ),
                TickBody::Quote { .. } => (
                    sequencing.quotes,
                    &mut st.quote,
                    &mut st.quote_epoch,
                    &mut st.ahead_quote,
                ),
            };
            // Only trades prove an overlap when trades are numbered: a venue may open a new
            // connection with a book snapshot from before the join (Bybit), which would
            // "overlap" the old connection's quotes while trades made since are still owed.
            let evidence = is_trade || sequencing.trades == Numbering::None;
            if from_new && numbering != Numbering::None {
                if t.seq <= *last {
                    stats.duplicates.inc();
                    overlap |= evidence;
                } else {
                    *ahead = (*ahead).max(t.seq);
                }
                return false;
            }
            if rotating.is_some() && *ahead != 0 && t.seq >= *ahead {
                overlap |= evidence;
            }
            match judge(numbering, last, last_epoch, t.seq, epoch, rotating.is_some()) {
                Verdict::Duplicate => {
                    stats.duplicates.inc();
                    false
                }
                Verdict::AfterGap => {
                    stats.gaps.inc();
                    true
                }
                Verdict::Fresh => true,
            }
        });
        self.overlap_seen |= overlap;
        // Close the old connection only once it has delivered everything the new one has
        // shown so far: every id the new connection delivered (and we dropped) is then covered.
        let covered = self
            .seqs
            .iter()
            .all(|st| st.ahead_trade <= st.trade && st.ahead_quote <= st.quote);
        if let (true, true, Some(new_epoch)) = (self.overlap_seen, covered, rotating) {
            self.overlap_seen = false;
            self.source.finish_rotation();
            // The new connection inherits the numbering: its ids not above the last are
            // duplicates, not a renumbered session.
            for st in &mut self.seqs {
                st.ahead_trade = 0;
                st.ahead_quote = 0;
                st.trade_epoch = new_epoch;
                st.quote_epoch = new_epoch;
            }
        }
        for tick in self.batch.as_slice() {
            match tick.body {
                TickBody::Trade { .. } => self.stats.trades.inc(),
                TickBody::Quote { .. } => self.stats.quotes.inc(),
            }
            if self.ends.tap.push(*tick).is_err() {
                self.stats.tap_dropped.inc();
            }
        }
        if !self.batch.is_empty() {
            self.stats.last_tick_wall_ns.set(meta.recv_ns);
            self.stats.state.set(feed_state::LIVE);
            if self.stale_after_ns != 0 {
                self.last_tick_mono = meta.stamp.0;
            }
            // A frame without a receive stamp (a benchmark's warm-up) is not measured
            // anywhere down the path either.
            if let Some(decode) = &mut self.decode
                && meta.stamp.0 != 0
            {
                let now = mono_ns();
                decode.record_span(meta.stamp.0, now);
                self.batch_at = now;
            } else {
                self.batch_at = 0;
            }
        }
        self.flush_batch();
    }

    /// Handles at most one frame.
    #[inline]
    pub fn poll(&mut self) -> bool {
        if !self.flush_batch() {
            return false;
        }
        if let (Some(decode), Some(ends)) = (&mut self.decode, &mut self.ends.decode) {
            self.passes = self.passes.wrapping_add(1);
            decode.poll(ends, self.passes);
        }
        if self.closed {
            if !self.close_reported {
                if let (Some(decode), Some(ends)) = (&mut self.decode, &mut self.ends.decode) {
                    decode.finish(ends);
                }
                self.close_reported = true;
                self.flags.close_feed();
            }
            return false;
        }
        if self.flags.stop_requested() {
            self.source.close();
        }
        let (next, epoch) = self.source.next_tagged();
        let (frame, meta) = match next {
            Next::Frame(frame, meta) => (frame, meta),
            Next::Malformed => {
                self.stats.frames.inc();
                self.stats.malformed_lines.inc();
                return true;
            }
            Next::Idle => {
                self.check_stale();
                return false;
            }
            Next::Closed => {
                // Reported to the flags on the next pass, once any pending tick is pushed.
                self.closed = true;
                return true;
            }
        };
        self.stats.frames.inc();
        if let Some(capture) = &mut self.ends.capture
            && !capture_frame(capture, meta.recv_ns, frame)
        {
            self.stats.capture_dropped.inc();
        }
        self.batch.clear();
        self.next = 0;
        if epoch != self.last_epoch {
            self.last_epoch = epoch;
            self.decoder.on_connect();
        }
        let decoded = self.decoder.decode(frame, meta, &self.index, &mut self.batch);
        self.stats.gaps.add(u64::from(self.batch.gaps));
        match decoded {
            Ok(Decoded::Tick(tick)) => {
                // An empty batch always has room for one.
                let _ = self.batch.push(tick);
                self.accept_batch(meta, epoch);
            }
            Ok(Decoded::Ticks) => self.accept_batch(meta, epoch),
            Ok(Decoded::Skipped(kind)) => match kind {
                SkipKind::Depth => self.stats.skipped_depth.inc(),
                SkipKind::AggTrade => self.stats.skipped_agg_trade.inc(),
                SkipKind::Snapshot => self.stats.skipped_snapshot.inc(),
                SkipKind::Other => self.stats.skipped_other.inc(),
            },
            Ok(Decoded::Control(control)) => {
                self.stats.control.inc();
                match control {
                    Control::Error { .. } => self.stats.venue_errors.inc(),
                    Control::SubscribeRejected => self.stats.subscribe_rejected.inc(),
                    Control::Heartbeat => self.stats.heartbeats.inc(),
                    // Maintenance ahead: move to a new connection before this one is cut.
                    Control::ServerShutdown => self.source.rotate(),
                    Control::Result { .. } | Control::Subscribed => {}
                }
            }
            Err(e) => {
                self.stats.bad[e.reason.index()].inc();
                if meta.recv_ns.saturating_sub(self.last_bad_sample) >= BAD_SAMPLE_EVERY_NS || self.last_bad_sample == 0
                {
                    self.last_bad_sample = meta.recv_ns.max(1);
                    let sample = BadFrame::new(self.ends.venue, e.reason.name(), e.field, meta.recv_ns, frame);
                    let _ = self.ends.bad.push(sample);
                }
            }
        }
        true
    }

    /// Whether the feed has closed and handed over its last tick.
    pub fn finished(&self) -> bool {
        self.close_reported
    }
}

/// How often, in polls, a stage with samples waiting reads the clock to see whether its
/// histogram is due even though it recorded nothing lately.
const HAND_OVER_CHECK_EVERY: u32 = 1024;

/// A stage's side of its latency-histogram hand-off: every `every_ns` (or at the end) the
/// filled histogram goes to the cold side in exchange for an empty spare that came back. Two
/// histograms circulate per stage, so a hand-over is two pointer moves; without a spare at hand
/// the stage keeps recording into its current histogram. No allocation, except at the end if no
/// spare came back.
#[derive(Debug)]
struct HandOff {
    spare: Option<BoxedHistogram>,
    every_ns: u64,
    next_ns: u64,
}

impl HandOff {
    fn new(every_ns: u64) -> Self {
        Self {
            spare: None,
            every_ns,
            next_ns: mono_ns().saturating_add(every_ns),
        }
    }

    /// Whether the interval has passed at `now_ns`.
    #[inline]
    fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_ns
    }

    /// Hands the current histogram (holding `samples`) over `ends` through `swap` when the
    /// interval has passed at `now_ns` (or at the end) and an empty spare is at hand; otherwise
    /// the stage keeps recording into the current one. `swap` installs the spare and returns
    /// the filled histogram.
    fn hand_over(
        &mut self,
        ends: &mut HistogramOut,
        samples: u64,
        now_ns: u64,
        last: bool,
        swap: impl FnOnce(BoxedHistogram) -> BoxedHistogram,
    ) {
        if samples == 0 || (!last && !self.due(now_ns)) {
            return;
        }
        if self.spare.is_none() {
            self.spare = ends.hist_back.pop().ok();
        }
        if last && self.spare.is_none() {
            // At shutdown a fresh histogram may be allocated; in steady state we wait for a spare.
            self.spare = Some(Box::new(latency_histogram()));
        }
        if ends.hist_out.slots() == 0 {
            return;
        }
        let Some(spare) = self.spare.take() else { return };
        let full = swap(spare);
        // Cannot fail: a slot was checked above and this thread is the only producer.
        let _ = ends.hist_out.push(full);
        self.next_ns = now_ns.saturating_add(self.every_ns);
    }
}

/// Latency from the triggering tick's receive stamp to the moment a stage produced something
/// (Alpha's intent, Risk's approval), recorded into the stage's own histogram and handed to the
/// cold side like Execution's tick-to-order histogram. The clock is read only when a sample is
/// recorded, and every [`HAND_OVER_CHECK_EVERY`] polls while samples wait: never per tick.
#[derive(Debug)]
struct StageLatency {
    current: BoxedHistogram,
    hand_off: HandOff,
    /// Monotonic time of the last sample.
    last_ns: u64,
}

impl StageLatency {
    /// Allocates the stage's current histogram (at start).
    fn new(every_ns: u64) -> Self {
        Self {
            current: Box::new(latency_histogram()),
            hand_off: HandOff::new(every_ns),
            last_ns: 0,
        }
    }

    /// Records `now − stamp` and gives `now`; a zero stamp (nothing behind it) is not a
    /// sample, and then the clock is not read (0 is given).
    #[inline]
    fn record(&mut self, stamp: Stamp) -> u64 {
        if stamp.0 == 0 {
            return 0;
        }
        let now = mono_ns();
        self.record_span(stamp.0, now);
        now
    }

    /// Records `to − from`; a zero `from` (not stamped) is not a sample.
    #[inline]
    fn record_span(&mut self, from: u64, to: u64) {
        if from == 0 {
            return;
        }
        self.current.saturating_record(to.saturating_sub(from).max(1));
        self.last_ns = to;
    }

    /// Hands the histogram over `ends` if it is due: known without the clock when the last
    /// sample came after the deadline, otherwise checked every [`HAND_OVER_CHECK_EVERY`]
    /// `passes`.
    #[inline]
    fn poll(&mut self, ends: &mut HistogramOut, passes: u32) {
        if self.current.is_empty() {
            return;
        }
        let now = if self.hand_off.due(self.last_ns) {
            self.last_ns
        } else if passes.is_multiple_of(HAND_OVER_CHECK_EVERY) {
            mono_ns()
        } else {
            return;
        };
        self.hand_over(ends, now, false);
    }

    /// Hands over whatever was recorded (the stage is closing).
    fn finish(&mut self, ends: &mut HistogramOut) {
        self.hand_over(ends, mono_ns(), true);
    }

    fn hand_over(&mut self, ends: &mut HistogramOut, now_ns: u64, last: bool) {
        let current = &mut self.current;
        self.hand_off.hand_over(ends, current.len(), now_ns, last, |fresh| {
            std::mem::replace(current, fresh)
        });
    }
}

/// Hand-over interval of a hop histogram until the engine sets one.
const DEFAULT_HOP_EVERY_NS: u64 = 1_000_000_000;

/// A stage's hop recorders, with hop histograms on: the ring hop into the stage (its input's
/// pop − push) and the stage's work (its output's push − its input's pop).
#[derive(Debug)]
struct HopRecorders {
    ring: StageLatency,
    work: StageLatency,
    ends: HopOut,
}

impl HopRecorders {
    /// Recorders for these hand-offs (allocates the two histograms, at start).
    fn new(ends: Option<HopOut>, every_ns: u64) -> Option<Box<Self>> {
        ends.map(|ends| {
            Box::new(Self {
                ring: StageLatency::new(every_ns),
                work: StageLatency::new(every_ns),
                ends,
            })
        })
    }

    #[inline]
    fn poll(&mut self, passes: u32) {
        self.ring.poll(&mut self.ends.ring, passes);
        self.work.poll(&mut self.ends.work, passes);
    }

    fn finish(&mut self) {
        self.ring.finish(&mut self.ends.ring);
        self.work.finish(&mut self.ends.work);
    }
}

/// Alpha with its rings.
#[derive(Debug)]
pub struct AlphaTask {
    alpha: Alpha,
    ends: AlphaEnds,
    stats: Arc<AlphaStats>,
    flags: Arc<Flags>,
    pending: Option<Stamped<OrderIntent>>,
    /// A tick Execution's ring had no room for; Alpha takes no other until it is pushed.
    pending_tick: Option<crate::records::Tick>,
    /// Hop recorders, with hop histograms on.
    hops: Option<Box<HopRecorders>>,
    next_input: usize,
    closed: bool,
    /// Polls so far, for sampling the rings' occupancy.
    passes: u32,
    /// Tick → intent latency.
    latency: StageLatency,
}

impl AlphaTask {
    /// An Alpha task handing its tick → intent histogram over every `histogram_every_ns`;
    /// publishes Alpha's starting weights to the signal board.
    pub fn new(
        alpha: Alpha,
        mut ends: AlphaEnds,
        stats: Arc<AlphaStats>,
        flags: Arc<Flags>,
        histogram_every_ns: u64,
    ) -> Self {
        ends.board.publish_weights(alpha.weights());
        let hops = HopRecorders::new(ends.hops.take(), histogram_every_ns);
        for (gauge, ring) in stats.md_alpha.iter().zip(&ends.ticks) {
            gauge.capacity.set(ring.buffer().capacity() as u64);
        }
        Self {
            latency: StageLatency::new(histogram_every_ns),
            alpha,
            ends,
            stats,
            flags,
            pending: None,
            pending_tick: None,
            hops,
            next_input: 0,
            closed: false,
            passes: 0,
        }
    }

    /// Handles at most one command and one tick. Every signal goes to the tap and to the
    /// signal board; applied weights are published to the board.
    #[inline]
    pub fn poll(&mut self) -> bool {
        self.passes = self.passes.wrapping_add(1);
        if self.passes.is_multiple_of(RING_SAMPLE_EVERY) {
            // Relaxed stores of the feeds' rings' occupancy: gauges for /metrics, no allocation.
            self.stats.heartbeat.add(u64::from(RING_SAMPLE_EVERY));
            for (gauge, ring) in self.stats.md_alpha.iter().zip(&self.ends.ticks) {
                gauge.occupancy.set(ring.slots() as u64);
            }
        }
        self.latency.poll(&mut self.ends.latency, self.passes);
        if let Some(h) = &mut self.hops {
            h.poll(self.passes);
        }
        if !flush(&mut self.pending, &mut self.ends.to_risk) || !flush(&mut self.pending_tick, &mut self.ends.to_exec) {
            return false;
        }
        let mut busy = false;
        if let Some(cmd) = self.ends.commands.pop() {
            self.alpha.process(cmd, &mut |_| {});
            self.stats.commands.inc();
            match cmd {
                AlphaInput::Weights(_) => {
                    self.stats.weight_updates.inc();
                    // What Alpha now uses, which the cold side compares with what it sent.
                    self.ends.board.publish_weights(self.alpha.weights());
                }
                AlphaInput::Sentiment { .. } => self.stats.sentiment_inputs.inc(),
                AlphaInput::Tick(_) => {}
            }
            busy = true;
        }
        let n = self.ends.ticks.len();
        for k in 0..n {
            let i = (self.next_input + k) % n;
            let Ok(Stamped { rec: tick, at }) = self.ends.ticks[i].pop() else {
                continue;
            };
            self.next_input = (i + 1) % n;
            // Not measured: hop histograms off, or a tick without a push stamp.
            let popped = match &mut self.hops {
                Some(h) if at != 0 => {
                    let now = mono_ns();
                    h.ring.record_span(at, now);
                    now
                }
                _ => 0,
            };
            self.stats.ticks.inc();
            if self.ends.to_exec.push(tick).is_err() {
                self.pending_tick = Some(tick);
            }
            let (tap, board, to_risk, stats, pending, latency, hops) = (
                &mut self.ends.tap,
                &self.ends.board,
                &mut self.ends.to_risk,
                &self.stats,
                &mut self.pending,
                &mut self.latency,
                &mut self.hops,
            );
            self.alpha.process(AlphaInput::Tick(tick), &mut |out| match out {
                AlphaOut::Signal(s) => {
                    stats.signals.inc();
                    board.publish(&s);
                    if tap.push(s).is_err() {
                        stats.tap_dropped.inc();
                    }
                }
                AlphaOut::Intent(intent) => {
                    stats.intents.inc();
                    let mut now = latency.record(intent.stamp);
                    let at = match hops {
                        Some(h) if popped != 0 => {
                            if now == 0 {
                                now = mono_ns();
                            }
                            h.work.record_span(popped, now);
                            now
                        }
                        _ => 0,
                    };
                    let intent = Stamped::new(intent, at);
                    if to_risk.push(intent).is_err() {
                        *pending = Some(intent);
                    }
                }
            });
            return true;
        }
        if !busy
            && !self.closed
            && self.pending.is_none()
            && self.pending_tick.is_none()
            && self.flags.feeds_closed()
            && self.ends.ticks.iter().all(|c| c.is_empty())
        {
            self.latency.finish(&mut self.ends.latency);
            if let Some(h) = &mut self.hops {
                h.finish();
            }
            self.closed = true;
            Flags::close(&self.flags.alpha_closed);
        }
        busy
    }

    /// Whether Alpha has drained and closed.
    pub fn finished(&self) -> bool {
        self.closed
    }
}

/// One feed's state gauge, as Risk follows it.
#[derive(Debug)]
struct FeedWatch {
    stats: Arc<FeedStats>,
    /// What Risk was last told; `None` before the first look.
    live: Option<bool>,
}

/// Risk with its rings, the kill switch and the feeds' state gauges.
///
/// Each pass: every report from Execution; then, with nothing held back and room in
/// `risk_exec` for [`Risk::max_trim_orders`] orders, a new kill-switch trip (before anything
/// else) and at most one command; then at most one intent, manual and Alpha's in turn, judged
/// against the feeds' states as they are after it arrived; then every transition to the
/// `risk_events` tap, and the risk board if anything changed.
#[derive(Debug)]
pub struct RiskTask {
    risk: Risk,
    ends: RiskEnds,
    stats: Arc<RiskStats>,
    flags: Arc<Flags>,
    feeds: Vec<FeedWatch>,
    /// No staleness detection (replay): every feed counts as live.
    replay: bool,
    /// The kill-switch generation Risk has acted on.
    kill_seen: u64,
    clock: SystemClock,
    pending: Option<Stamped<Order>>,
    /// Hop recorders, with hop histograms on.
    hops: Option<Box<HopRecorders>>,
    /// Pop stamp of the intent being judged (0 with hop histograms off, or a manual intent).
    popped: u64,
    /// Whose intent goes first on the next pass: the manual queue's (`true`) or Alpha's.
    manual_turn: bool,
    closed: bool,
    finished: bool,
    /// Polls so far, for sampling the rings' occupancy.
    passes: u32,
    /// Tick → approval latency.
    latency: StageLatency,
}

impl RiskTask {
    /// A Risk task following these feeds' state gauges (`replay`: every feed counts as live),
    /// handing its tick → approval histogram over every `histogram_every_ns`. Publishes the
    /// risk board once, so readers see the starting state.
    ///
    /// A kill switch already tripped counts as handled (the engine trips it at build when
    /// Risk starts killed).
    pub fn new(
        risk: Risk,
        mut ends: RiskEnds,
        stats: Arc<RiskStats>,
        flags: Arc<Flags>,
        feeds: Vec<Arc<FeedStats>>,
        replay: bool,
        histogram_every_ns: u64,
    ) -> Self {
        let kill_seen = ends.kill.generation();
        let hops = HopRecorders::new(ends.hops.take(), histogram_every_ns);
        stats.alpha_risk.capacity.set(ends.intents.buffer().capacity() as u64);
        stats.exec_risk.capacity.set(ends.reports.buffer().capacity() as u64);
        let task = Self {
            risk,
            ends,
            stats,
            flags,
            feeds: feeds.into_iter().map(|stats| FeedWatch { stats, live: None }).collect(),
            replay,
            kill_seen,
            clock: SystemClock,
            pending: None,
            hops,
            popped: 0,
            manual_turn: false,
            closed: false,
            finished: false,
            passes: 0,
            latency: StageLatency::new(histogram_every_ns),
        };
        task.publish();
        task
    }

    /// Drains every report, then handles a kill-switch trip, at most one command and one intent.
    #[inline]
    pub fn poll(&mut self) -> bool {
        self.passes = self.passes.wrapping_add(1);
        if self.passes.is_multiple_of(RING_SAMPLE_EVERY) {
            // Relaxed stores of the inbound rings' occupancy (before draining): gauges only.
            self.stats.heartbeat.add(u64::from(RING_SAMPLE_EVERY));
            self.stats.alpha_risk.occupancy.set(self.ends.intents.slots() as u64);
            self.stats.exec_risk.occupancy.set(self.ends.reports.slots() as u64);
        }
        self.latency.poll(&mut self.ends.latency, self.passes);
        if let Some(h) = &mut self.hops {
            h.poll(self.passes);
        }
        let mut busy = false;
        while let Ok(report) = self.ends.reports.pop() {
            self.risk.on_report(&report);
            busy = true;
        }
        let mut changed = busy;
        let clear = flush(&mut self.pending, &mut self.ends.to_exec);
        // Room for everything a command can produce: a trim's orders are never dropped.
        let room = clear && !self.closed && self.ends.to_exec.slots() >= self.risk.max_trim_orders();
        let kill_due = self.ends.kill.generation() != self.kill_seen;
        if room {
            if kill_due {
                self.apply_kill();
                busy = true;
            }
            if let Some(cmd) = self.ends.commands.pop() {
                self.command(cmd);
                busy = true;
            }
        }
        changed |= busy;
        // No intent while an order is held back, or before a new trip is applied.
        if clear && !self.closed && (room || !kill_due) {
            let manual = |i| (Stamped::new(i, 0), true);
            let intent = if self.manual_turn {
                self.ends
                    .manual
                    .pop()
                    .map(manual)
                    .or_else(|| self.ends.intents.pop().ok().map(|i| (i, false)))
            } else {
                self.ends
                    .intents
                    .pop()
                    .ok()
                    .map(|i| (i, false))
                    .or_else(|| self.ends.manual.pop().map(manual))
            };
            self.popped = match (&mut self.hops, &intent) {
                (Some(h), Some((i, _))) if i.at != 0 => {
                    let now = mono_ns();
                    h.ring.record_span(i.at, now);
                    now
                }
                _ => 0,
            };
            // After the intent: a tick's LIVE gauge is written before the tick is pushed, so the
            // state read now is at least as new as the data behind the intent.
            changed |= self.sync_feeds();
            if let Some((intent, manual)) = intent {
                self.manual_turn = !manual;
                if manual {
                    self.stats.manual_intents.inc();
                }
                self.check(&intent.rec);
                busy = true;
                changed = true;
            }
        } else {
            changed |= self.sync_feeds();
        }
        self.drain_transitions();
        if changed {
            self.publish();
        }
        if !self.closed
            && self.pending.is_none()
            && Flags::closed(&self.flags.alpha_closed)
            && self.ends.intents.is_empty()
        {
            // No intent is taken once closed: nothing more to record.
            self.latency.finish(&mut self.ends.latency);
            if let Some(h) = &mut self.hops {
                h.finish();
            }
            self.closed = true;
            Flags::close(&self.flags.risk_closed);
        }
        if self.closed && !busy && self.flags.exec_closed() && self.ends.reports.is_empty() {
            self.finished = true;
        }
        busy
    }

    /// Judges one intent and routes the result.
    #[inline]
    fn check(&mut self, intent: &OrderIntent) {
        match self.risk.check(intent) {
            Decision::Approved(order) => {
                self.stats.approved.inc();
                let mut now = self.latency.record(order.stamp);
                let at = match &mut self.hops {
                    Some(h) if self.popped != 0 => {
                        if now == 0 {
                            now = mono_ns();
                        }
                        h.work.record_span(self.popped, now);
                        now
                    }
                    _ => 0,
                };
                let order = Stamped::new(order, at);
                if self.ends.to_exec.push(order).is_err() {
                    self.pending = Some(order);
                }
            }
            Decision::Refused(refusal) => {
                self.stats.refused[refusal.reason as usize].inc();
                if self.ends.tap.push(refusal).is_err() {
                    self.stats.tap_dropped.inc();
                }
            }
            Decision::Nothing => self.stats.nothing.inc(),
        }
    }

    /// Applies one command. `Kill` trips the shared switch (so Execution stops and cancels too)
    /// and halts Risk; `Resume` lifts the switch only if no trip came after the one Risk acted
    /// on, and then resumes Risk. Callers have reserved room for `max_trim_orders` orders.
    fn command(&mut self, cmd: RiskCommand) {
        self.stats.commands.inc();
        match cmd {
            RiskCommand::Kill => {
                self.ends.kill.trip();
                if self.ends.kill.generation() != self.kill_seen {
                    self.apply_kill();
                }
            }
            RiskCommand::Resume => {
                if self.ends.kill.reset_if(self.kill_seen) {
                    self.on_command(RiskCommand::Resume);
                }
                // Otherwise a newer trip is pending: the next pass applies it and this Resume,
                // issued before it, does not lift it.
            }
            other => self.on_command(other),
        }
    }

    /// Acts on the kill switch's current generation: Risk goes HALTED (reason kill).
    fn apply_kill(&mut self) {
        self.kill_seen = self.ends.kill.generation();
        self.stats.kill_trips.inc();
        self.on_command(RiskCommand::Kill);
    }

    /// Hands a command to Risk; its orders go to Execution, into room reserved by the caller.
    fn on_command(&mut self, cmd: RiskCommand) {
        let now = self.clock.wall_ns();
        let (to_exec, stats) = (&mut self.ends.to_exec, &self.stats);
        self.risk.on_command(cmd, now, &mut |order| {
            stats.risk_orders.inc();
            // Cannot fail: `max_trim_orders` slots were free and this thread is the only
            // producer.
            let _ = to_exec.push(Stamped::new(order, 0));
        });
    }

    /// Tells Risk about every feed whose state changed; `true` if any did.
    #[inline]
    fn sync_feeds(&mut self) -> bool {
        let mut changed = false;
        for f in &mut self.feeds {
            let state = f.stats.state.get();
            let live = self.replay || state == feed_state::LIVE;
            if f.live != Some(live) {
                f.live = Some(live);
                // The last tick's receive time (logical time, so a replay stays deterministic),
                // except after a stale restart, which happens on the wall clock.
                let now = if state == feed_state::STALE {
                    self.clock.wall_ns()
                } else {
                    f.stats.last_tick_wall_ns.get()
                };
                self.risk.on_feed(f.stats.venue, live, now);
                changed = true;
            }
        }
        changed
    }

    /// Every pending transition to the cold side; a full tap drops and counts.
    #[inline]
    fn drain_transitions(&mut self) {
        while let Some(t) = self.risk.pop_transition() {
            self.stats.transitions.inc();
            if self.ends.events.push(t).is_err() {
                self.stats.events_dropped.inc();
            }
        }
    }

    /// Publishes Risk's state on the board and the gauges. No allocation.
    #[inline]
    fn publish(&self) {
        let risk = &self.risk;
        let system = SystemRiskView {
            state: risk.state(Scope::System),
            killed: risk.killed(),
            kelly_clip: risk.kelly_clip(),
            balance: risk.balance(),
            gross_notional: risk.gross_notional(),
            orders: risk.next_order_id().0.saturating_sub(1),
            venues: risk.venue_views(),
        };
        let instruments = risk.exposure().iter().enumerate().map(|(i, e)| InstrumentRiskView {
            state: risk.state(Scope::Instrument(InstrumentId(i as u16))),
            position: e.position,
            open_buy: e.open_buy,
            open_sell: e.open_sell,
        });
        self.ends.board.publish(&system, instruments);
        self.stats.killed.set(u64::from(risk.killed()));
        self.stats.kelly_clip.set(risk.kelly_clip().to_bits() as u64);
        for (gauge, exp) in self.stats.position_raw.iter().zip(risk.exposure()) {
            gauge.set(exp.position.raw() as u64);
        }
    }

    /// Whether Risk has closed and drained Execution's last report.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The gate's state.
    pub fn risk(&self) -> &Risk {
        &self.risk
    }
}

/// Execution with its rings, its latency histogram and the feeds' state gauges.
#[derive(Debug)]
pub struct ExecTask<G: Gateway> {
    exec: Exec<G>,
    ends: ExecEnds,
    stats: Arc<ExecStats>,
    flags: Arc<Flags>,
    clock: SystemClock,
    hand_off: HandOff,
    passes: u32,
    /// Hop recorders, with hop histograms on.
    hops: Option<Box<HopRecorders>>,
    /// Feed state gauges, for the router (a venue whose feed is not live gets no order).
    feeds: Vec<FeedWatch>,
    /// No staleness detection (replay): every venue counts as live.
    replay: bool,
    /// Notes the `exec_notes` ring had no room for.
    notes_dropped: u64,
    /// Ticks taken in a row while an order waited (bounded by `TICKS_BEFORE_ORDER`).
    ticks_while_waiting: u32,
    /// Shutdown started: every open order was asked to cancel; close once they are over, or at
    /// this monotonic time.
    closing: Option<u64>,
    closed: bool,
}

/// How long Execution waits at shutdown for the venues to confirm its cancels.
const CLOSE_GRACE_NS: u64 = 5_000_000_000;

/// Most ticks Execution takes ahead of a waiting order, even older ones: a source whose receive
/// times lag the orders' times (a synthetic feed) cannot hold orders back for ever.
const TICKS_BEFORE_ORDER: u32 = 256;

impl<G: Gateway> ExecTask<G> {
    /// An Execution task handing its histogram over every `histogram_every_ns`, following
    /// these feeds' state gauges (`replay`: every venue counts as live). A venue without a feed
    /// has no market data and counts as not live (outside replay).
    pub fn new(
        mut exec: Exec<G>,
        mut ends: ExecEnds,
        stats: Arc<ExecStats>,
        flags: Arc<Flags>,
        histogram_every_ns: u64,
        feeds: Vec<Arc<FeedStats>>,
        replay: bool,
    ) -> Self {
        for v in Venue::ALL {
            exec.set_feed(v, replay || feeds.iter().any(|f| f.venue == v));
        }
        stats.risk_exec.capacity.set(ends.orders.buffer().capacity() as u64);
        stats.alpha_exec.capacity.set(ends.ticks.buffer().capacity() as u64);
        let hops = HopRecorders::new(ends.hops.take(), histogram_every_ns);
        Self {
            exec,
            ends,
            stats,
            flags,
            clock: SystemClock,
            hand_off: HandOff::new(histogram_every_ns),
            passes: 0,
            hops,
            feeds: feeds.into_iter().map(|stats| FeedWatch { stats, live: None }).collect(),
            replay,
            notes_dropped: 0,
            ticks_while_waiting: 0,
            closing: None,
            closed: false,
        }
    }

    /// Hands on waiting reports (a kill switch's cancels first), then takes at most one command
    /// or tick and one order, when nothing waits and there is room for everything the order
    /// can produce. Of a tick and an order both waiting, the one with the earlier logical time
    /// goes first (the tick on a tie), so an order meets the market it was decided on; after
    /// `TICKS_BEFORE_ORDER` (256) ticks in a row the order goes first whatever their times.
    #[inline]
    pub fn poll(&mut self) -> bool {
        self.sync_feeds();
        if self.passes.is_multiple_of(RING_SAMPLE_EVERY) {
            // Relaxed stores of the inbound rings' occupancy: gauges for /metrics only.
            self.stats.heartbeat.add(u64::from(RING_SAMPLE_EVERY));
            self.stats.risk_exec.occupancy.set(self.ends.orders.slots() as u64);
            self.stats.alpha_exec.occupancy.set(self.ends.ticks.slots() as u64);
        }
        let (tap, to_risk, stats) = (&mut self.ends.tap, &mut self.ends.to_risk, &*self.stats);
        let room = tap.slots().min(to_risk.slots());
        let mut busy = self.exec.poll(mono_ns(), room, &mut |e| emit(tap, to_risk, stats, e));
        let order_ts = self.ends.orders.peek().ok().map(|o| o.rec.ts_ns);
        let patient = self.ticks_while_waiting < TICKS_BEFORE_ORDER;
        let tick_first = |t: &crate::records::Tick| order_ts.is_none_or(|ts| patient && t.recv_ns <= ts);
        if self.exec.backlog() == 0 {
            if let Some(cmd) = self.ends.commands.pop() {
                self.exec.command(cmd);
                stats.commands.inc();
                busy = true;
            } else if self.ends.ticks.peek().is_ok_and(tick_first)
                && let Ok(tick) = self.ends.ticks.pop()
            {
                self.exec.on_tick(&tick);
                stats.ticks.inc();
                if order_ts.is_some() {
                    self.ticks_while_waiting += 1;
                }
                busy = true;
            }
        }
        if self.exec.backlog() == 0
            && tap.slots() >= MAX_EVENTS_PER_ORDER
            && to_risk.slots() >= MAX_EVENTS_PER_ORDER
            && !self.ends.ticks.peek().is_ok_and(tick_first)
            && let Ok(Stamped { rec: order, at }) = self.ends.orders.pop()
        {
            self.ticks_while_waiting = 0;
            let now = self.clock.stamp();
            if self.exec.process(order, now, &mut |e| emit(tap, to_risk, stats, e)) {
                stats.orders.inc();
            }
            if let Some(h) = &mut self.hops
                && at != 0
            {
                h.ring.record_span(at, now.0);
                h.work.record_span(now.0, mono_ns());
            }
            busy = true;
        }
        while let Some(note) = self.exec.pop_note() {
            if self.ends.notes.push(note).is_err() {
                self.notes_dropped += 1;
            }
        }
        if busy {
            self.publish();
        }
        self.passes = self.passes.wrapping_add(1);
        if self.passes.is_multiple_of(1024) || busy {
            self.maybe_hand_over_histogram(false);
        }
        if let Some(h) = &mut self.hops {
            h.poll(self.passes);
        }
        if !busy
            && !self.closed
            && Flags::closed(&self.flags.risk_closed)
            && self.ends.orders.is_empty()
            && self.ends.ticks.is_empty()
            && self.exec.backlog() == 0
        {
            match self.closing {
                None => {
                    // Nothing is left working at the venues once the engine stops.
                    self.exec.shut_down();
                    self.closing = Some(mono_ns().saturating_add(CLOSE_GRACE_NS));
                    busy = true;
                }
                Some(deadline) if self.exec.open_orders() == 0 || mono_ns() >= deadline => {
                    self.publish();
                    self.maybe_hand_over_histogram(true);
                    if let Some(h) = &mut self.hops {
                        h.finish();
                    }
                    self.closed = true;
                    Flags::close(&self.flags.exec_closed);
                }
                Some(_) => {}
            }
        }
        busy
    }

    /// Tells the router about every feed whose state changed.
    #[inline]
    fn sync_feeds(&mut self) {
        for f in &mut self.feeds {
            let live = self.replay || f.stats.state.get() == feed_state::LIVE;
            if f.live != Some(live) {
                f.live = Some(live);
                self.exec.set_feed(f.stats.venue, live);
            }
        }
    }

    /// Mirrors Execution's totals and gauges into its counters. No allocation.
    fn publish(&self) {
        let (c, s) = (self.exec.counters(), &*self.stats);
        for v in Venue::ALL {
            let i = v.index();
            s.routed[i].set(c.routed[i]);
            s.demotions[i].set(c.demotions[i]);
            s.readmissions[i].set(c.readmissions[i]);
            let h = self.exec.venue_health(v);
            s.demoted[i].set(u64::from(h.demoted));
            s.ack_latency_ns[i].set(h.ack_ewma_ns);
        }
        for (counter, n) in s.route_reasons.iter().zip(c.route_reasons) {
            counter.set(n);
        }
        s.maker_orders.set(c.maker_orders);
        s.taker_orders.set(c.taker_orders);
        s.as_asked.set(c.as_asked);
        s.reprices.set(c.reprices);
        s.timeout_takes.set(c.timeout_takes);
        s.timeout_cancels.set(c.timeout_cancels);
        s.maker_fills.set(c.maker_fills);
        s.taker_fills.set(c.taker_fills);
        s.filled.set(c.filled);
        s.strays.set(c.strays);
        s.notes_dropped.set(c.notes_dropped + self.notes_dropped);
        s.open_orders.set(self.exec.open_orders() as u64);
    }

    /// Hands the filled tick-to-order histogram to the cold side when the interval has passed
    /// (or at the end) and an empty spare is at hand; otherwise keeps recording into the current
    /// one.
    fn maybe_hand_over_histogram(&mut self, last: bool) {
        let exec = &mut self.exec;
        self.hand_off
            .hand_over(&mut self.ends.latency, exec.samples(), mono_ns(), last, |fresh| {
                exec.swap_histogram(fresh)
            });
    }

    /// Whether Execution has drained and closed.
    pub fn finished(&self) -> bool {
        self.closed
    }

    /// The stage's state.
    pub fn exec(&self) -> &Exec<G> {
        &self.exec
    }
}

/// Pushes a record held back by a full ring; `true` when nothing is held back any more.
#[inline]
fn flush<T: Copy>(pending: &mut Option<T>, ring: &mut rtrb::Producer<T>) -> bool {
    match *pending {
        None => true,
        Some(record) => {
            let pushed = ring.push(record).is_ok();
            if pushed {
                *pending = None;
            }
            pushed
        }
    }
}

/// Copies one raw frame into the capture ring as `[len u32 LE][recv_ns u64 LE][bytes]`;
/// `false` (and nothing written) if the ring lacks room.
#[inline]
fn capture_frame(ring: &mut rtrb::Producer<u8>, recv_ns: u64, frame: &[u8]) -> bool {
    let Ok(len) = u32::try_from(frame.len()) else {
        return false;
    };
    let Ok(mut chunk) = ring.write_chunk(CAPTURE_HEADER + frame.len()) else {
        return false;
    };
    let mut header = [0u8; CAPTURE_HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&recv_ns.to_le_bytes());
    let (first, second) = chunk.as_mut_slices();
    let mut bytes = header.iter().chain(frame.iter());
    for slot in first.iter_mut().chain(second.iter_mut()) {
        // The chunk has exactly header + frame slots.
        *slot = bytes.next().copied().unwrap_or(0);
    }
    chunk.commit_all();
    true
}

/// Sends one Execution record to Risk (reports only) and to the cold side.
///
/// Neither push can fail: Execution takes an order only after counting
/// [`MAX_EVENTS_PER_ORDER`] free slots in both rings, hands on waiting reports only up to the
/// free slots of both, and is their only producer.
#[inline]
fn emit(
    tap: &mut rtrb::Producer<ExecEvent>,
    to_risk: &mut rtrb::Producer<ExecReport>,
    stats: &ExecStats,
    e: ExecEvent,
) {
    if let ExecEvent::Report(r) = e {
        match r {
            ExecReport::Fill(_) => stats.fills.inc(),
            ExecReport::Reject { reason, .. } => {
                stats.rejects.inc();
                stats.rejected[reason as usize].inc();
            }
            ExecReport::Cancelled { .. } => stats.cancels.inc(),
            ExecReport::Unknown { .. } => stats.unknown.inc(),
            ExecReport::CancelRejected { .. } => stats.cancel_rejects.inc(),
            ExecReport::Ack { .. } | ExecReport::Routed { .. } => {}
        }
        let _ = to_risk.push(r);
    }
    let _ = tap.push(e);
}

/// Any hot task, for threads that run one or several.
///
/// The variants differ in size (Risk's state is the largest); they are not boxed because a
/// handful of tasks live for the engine's lifetime, and a box would add a pointer chase to
/// every poll of the stage inside it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyTask<S, D, G: Gateway> {
    /// A feed.
    Feed(FeedTask<S, D>),
    /// Alpha.
    Alpha(AlphaTask),
    /// Risk.
    Risk(RiskTask),
    /// Execution.
    Exec(ExecTask<G>),
}

impl<S: FrameSource, D: Decode, G: Gateway> AnyTask<S, D, G> {
    /// Polls the task once.
    #[inline]
    pub fn poll(&mut self) -> bool {
        match self {
            AnyTask::Feed(t) => t.poll(),
            AnyTask::Alpha(t) => t.poll(),
            AnyTask::Risk(t) => t.poll(),
            AnyTask::Exec(t) => t.poll(),
        }
    }

    /// Whether the task is done.
    pub fn finished(&self) -> bool {
        match self {
            AnyTask::Feed(t) => t.finished(),
            AnyTask::Alpha(t) => t.finished(),
            AnyTask::Risk(t) => t.finished(),
            AnyTask::Exec(t) => t.finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_finds_duplicates_gaps_and_sessions() {
        let (mut last, mut epoch) = (0u64, 0u32);
        let mut j = |seq, e, rotating| judge(Numbering::Consecutive, &mut last, &mut epoch, seq, e, rotating);
        assert_eq!(j(10, 1, false), Verdict::Fresh);
        assert_eq!(j(11, 1, false), Verdict::Fresh);
        assert_eq!(j(11, 1, false), Verdict::Duplicate, "same id twice on one connection");
        assert_eq!(j(14, 1, false), Verdict::AfterGap, "12 and 13 were missed");
        // A rotation: the new connection (epoch 2) repeats 13 and 14, then moves ahead.
        assert_eq!(j(13, 2, true), Verdict::Duplicate);
        assert_eq!(j(14, 2, true), Verdict::Duplicate);
        assert_eq!(j(15, 2, true), Verdict::Fresh);
        assert_eq!(j(15, 1, true), Verdict::Duplicate, "the old connection lags behind");
        // After a plain reconnect to a venue that renumbered (a new session), ids start over.
        assert_eq!(j(1, 3, false), Verdict::Fresh);
        assert_eq!(j(2, 3, false), Verdict::Fresh);
        let (mut l, mut e) = (0u64, 0u32);
        assert_eq!(judge(Numbering::None, &mut l, &mut e, 5, 1, false), Verdict::Fresh);
        assert_eq!(judge(Numbering::None, &mut l, &mut e, 5, 1, false), Verdict::Fresh);
        assert_eq!(
            judge(Numbering::Increasing, &mut l, &mut e, 5, 1, false),
            Verdict::Fresh
        );
        assert_eq!(
            judge(Numbering::Increasing, &mut l, &mut e, 9, 1, false),
            Verdict::Fresh,
            "increasing ids may skip"
        );
        assert_eq!(
            judge(Numbering::Increasing, &mut l, &mut e, 9, 1, false),
            Verdict::Duplicate
        );
    }
}
