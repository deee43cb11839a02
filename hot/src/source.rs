//! Where a feed's frames come from: a live connection or a capture in memory.
//!
//! A feed task pulls one frame at a time from its [`FrameSource`] and hands it to its
//! [`Decode`]r; the same task code serves `maxx run` (WebSocket) and `maxx replay` (capture).

use crate::capture::{Capture, Line};
use crate::clock::mono_ns;
use crate::feed::{DecodeError, Decoded, FrameMeta, Numbering, Sequencing, TickBatch};
use crate::ids::InstrumentIndex;
use crate::records::Stamp;

/// The result of asking a source for its next frame.
#[derive(Debug)]
pub enum Next<'a> {
    /// A frame and when it was received.
    Frame(&'a [u8], FrameMeta),
    /// A line of the source that cannot be a frame (malformed capture line).
    Malformed,
    /// Nothing right now.
    Idle,
    /// The source has ended and will produce nothing more.
    Closed,
}

/// A producer of raw venue frames.
pub trait FrameSource {
    /// The next frame, if one is ready; must not block.
    fn next(&mut self) -> Next<'_>;
    /// Stops the source (closes its connection); later calls return [`Next::Closed`].
    fn close(&mut self);

    /// Like [`next`](FrameSource::next), plus the connection epoch of the frame: it changes
    /// with every new connection, so per-connection decoder state can start over and the
    /// frames of two overlapping connections can be told apart. Sources with one connection
    /// at a time may keep this default (epoch 0).
    fn next_tagged(&mut self) -> (Next<'_>, u32) {
        (self.next(), 0)
    }

    /// While a make-before-break rotation has its new connection open: that connection's epoch.
    fn rotating(&self) -> Option<u32> {
        None
    }

    /// Starts a make-before-break rotation (a planned resubscribe, or a venue's maintenance
    /// notice); sources that cannot rotate ignore it.
    fn rotate(&mut self) {}

    /// Ends a rotation: the old connection is closed and the new one carries on.
    fn finish_rotation(&mut self) {}

    /// Drops the connection and reconnects with backoff (the feed went stale).
    fn restart(&mut self) {}
}

/// A venue's decoder, as the feed task uses it.
///
/// A decoder returns a single tick as [`Decoded::Tick`], or writes several to `out` and returns
/// [`Decoded::Ticks`]; `out` arrives empty.
pub trait Decode {
    /// Decodes one frame.
    fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError>;

    /// Called when frames start coming from another connection: per-connection state
    /// (sequence numbers) starts over.
    fn on_connect(&mut self) {}

    /// How this venue numbers trades and quotes.
    fn sequencing(&self) -> Sequencing {
        Sequencing {
            trades: Numbering::None,
            quotes: Numbering::None,
        }
    }
}

impl Decode for crate::feed::binance::parse::BinanceDecoder {
    #[inline]
    fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        _out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        crate::feed::binance::parse::BinanceDecoder::decode(self, frame, meta, index)
    }

    /// Trade ids are consecutive per symbol; `bookTicker` update ids only increase.
    fn sequencing(&self) -> Sequencing {
        Sequencing {
            trades: Numbering::Consecutive,
            quotes: Numbering::Increasing,
        }
    }
}

/// Replays captures from memory, optionally paced by their receive times.
#[derive(Debug)]
pub struct ReplaySource {
    captures: Vec<Capture>,
    file: usize,
    line: usize,
    pace: Option<Pace>,
    closed: bool,
}

/// Pacing: frame `i` is released `(recv_ns_i − recv_ns_0) / speed` after the first.
#[derive(Clone, Copy, Debug)]
struct Pace {
    speed: f64,
    first_recv_ns: Option<u64>,
    start_mono: u64,
}

impl ReplaySource {
    /// Replays `captures` in order; `speed` of `None` means as fast as possible.
    pub fn new(captures: Vec<Capture>, speed: Option<f64>) -> Self {
        let pace = speed.map(|speed| Pace {
            speed,
            first_recv_ns: None,
            start_mono: 0,
        });
        Self {
            captures,
            file: 0,
            line: 0,
            pace,
            closed: false,
        }
    }
}

impl FrameSource for ReplaySource {
    fn next(&mut self) -> Next<'_> {
        if self.closed {
            return Next::Closed;
        }
        while self.file < self.captures.len() && self.line >= self.captures[self.file].lines().len() {
            self.file += 1;
            self.line = 0;
        }
        let Some(capture) = self.captures.get(self.file) else {
            self.closed = true;
            return Next::Closed;
        };
        match capture.lines()[self.line] {
            Line::Malformed { .. } => {
                self.line += 1;
                Next::Malformed
            }
            Line::Frame { recv_ns, start, end } => {
                if let Some(pace) = &mut self.pace {
                    let now = mono_ns();
                    let first = *pace.first_recv_ns.get_or_insert_with(|| {
                        pace.start_mono = now;
                        recv_ns
                    });
                    // Pacing is wall-clock behaviour by definition; the float only schedules
                    // when a frame is released, never what it contains.
                    let due = pace.start_mono + (recv_ns.saturating_sub(first) as f64 / pace.speed) as u64;
                    if now < due {
                        return Next::Idle;
                    }
                }
                self.line += 1;
                let stamp = Stamp(mono_ns());
                Next::Frame(capture.frame(start, end), FrameMeta { recv_ns, stamp })
            }
        }
    }

    fn close(&mut self) {
        self.closed = true;
    }
}
