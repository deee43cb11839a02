//! An in-memory frame source for benchmarks: pre-built venue frames handed to the real decoder
//! on the feed thread, with no socket in between.
//!
//! [`MemFrames`] holds every frame in one contiguous buffer (built once, before the run);
//! [`MemSource`] hands them over in order, cycling through them until `total` frames have gone
//! out (or a deadline passes). Each frame's monotonic stamp is its hand-over time: in
//! [`Pacing::Rate`] (open loop) the frame's *scheduled* time `t0 + i × interval`, so a source
//! that falls behind charges the delay to the frames that waited (no coordinated omission at
//! the source); in [`Pacing::FlatOut`] the moment the feed task asks for it, which is as soon
//! as the ring to Alpha has room. The first `warmup` frames carry a zero stamp, which every
//! stage treats as "no tick behind it": they run through the whole pipeline but record no
//! latency sample.
//!
//! Each pass over the frames after the first is a new connection epoch, so the feed task's
//! duplicate detection starts over instead of dropping the repeated trade ids.
//!
//! No allocation, lock or log after construction: one relaxed store per frame into
//! [`MemProgress`], which the driver reads for its progress line and throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{mono_ns, wall_ns};
use crate::feed::FrameMeta;
use crate::records::Stamp;
use crate::source::{FrameSource, Next};

/// Frames in one buffer, with their boundaries.
#[derive(Debug, Default)]
pub struct MemFrames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl MemFrames {
    /// No frames yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one frame.
    pub fn push(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
    }

    /// How many frames.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Frame `i` (`i < len`).
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// How frames are released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as the feed task takes them; stamped when handed over.
    FlatOut,
    /// Open loop: frame `i` is due `i × interval_ns` after the first and stamped with that
    /// scheduled time, however late it is actually handed over.
    Rate {
        /// Nanoseconds between scheduled frames (> 0).
        interval_ns: u64,
    },
}

/// What the source has done so far, for the driver (written by the feed thread only).
#[derive(Debug, Default)]
pub struct MemProgress {
    /// Frames handed over.
    pub handed: AtomicU64,
    /// Monotonic time of the first hand-over (0 before it).
    pub first_ns: AtomicU64,
    /// Monotonic time of the latest hand-over.
    pub last_ns: AtomicU64,
    /// Largest lateness seen in open loop: hand-over time minus scheduled time, in ns.
    pub max_late_ns: AtomicU64,
    /// Set once the source has closed.
    pub done: AtomicU64,
}

/// Hands [`MemFrames`] to a feed task.
#[derive(Debug)]
pub struct MemSource {
    frames: Arc<MemFrames>,
    pacing: Pacing,
    total: u64,
    warmup: u64,
    deadline_ns: Option<u64>,
    sent: u64,
    pos: usize,
    epoch: u32,
    start_mono: u64,
    start_wall: u64,
    progress: Arc<MemProgress>,
    closed: bool,
}

impl MemSource {
    /// Hands over `total` frames (cycling through `frames`), the first `warmup` of them without
    /// a latency stamp; stops early at `deadline` after the first hand-over if one is given.
    /// `frames` must not be empty.
    pub fn new(
        frames: Arc<MemFrames>,
        pacing: Pacing,
        total: u64,
        warmup: u64,
        deadline: Option<std::time::Duration>,
        progress: Arc<MemProgress>,
    ) -> Self {
        Self {
            frames,
            pacing,
            total,
            warmup,
            deadline_ns: deadline.map(|d| d.as_nanos() as u64),
            sent: 0,
            pos: 0,
            epoch: 0,
            start_mono: 0,
            start_wall: 0,
            progress,
            closed: false,
        }
    }

    fn close_now(&mut self) {
        self.closed = true;
        self.progress.done.store(1, Ordering::Release);
    }
}

impl FrameSource for MemSource {
    fn next(&mut self) -> Next<'_> {
        self.next_tagged().0
    }

    #[inline]
    fn next_tagged(&mut self) -> (Next<'_>, u32) {
        if self.closed || self.frames.is_empty() {
            if !self.closed {
                self.close_now();
            }
            return (Next::Closed, self.epoch);
        }
        if self.sent >= self.total {
            self.close_now();
            return (Next::Closed, self.epoch);
        }
        let now = mono_ns();
        if self.sent == 0 {
            self.start_mono = now;
            self.start_wall = wall_ns();
            self.progress.first_ns.store(now, Ordering::Relaxed);
        } else if let Some(d) = self.deadline_ns
            && now.saturating_sub(self.start_mono) >= d
        {
            self.close_now();
            return (Next::Closed, self.epoch);
        }
        let at = match self.pacing {
            Pacing::FlatOut => now,
            Pacing::Rate { interval_ns } => {
                let due = self.start_mono.saturating_add(self.sent.saturating_mul(interval_ns));
                if now < due {
                    return (Next::Idle, self.epoch);
                }
                let late = now - due;
                if late > self.progress.max_late_ns.load(Ordering::Relaxed) {
                    self.progress.max_late_ns.store(late, Ordering::Relaxed);
                }
                due
            }
        };
        if self.pos == self.frames.len() {
            // A new pass: a new epoch, so repeated ids are a renumbered session, not duplicates.
            self.pos = 0;
            self.epoch = self.epoch.wrapping_add(1);
        }
        let i = self.pos;
        self.pos += 1;
        let stamp = if self.sent < self.warmup { Stamp(0) } else { Stamp(at) };
        self.sent += 1;
        self.progress.handed.store(self.sent, Ordering::Relaxed);
        self.progress.last_ns.store(now, Ordering::Relaxed);
        let meta = FrameMeta {
            recv_ns: self.start_wall.saturating_add(at.saturating_sub(self.start_mono)),
            stamp,
        };
        (Next::Frame(self.frames.get(i), meta), self.epoch)
    }

    fn close(&mut self) {
        if !self.closed {
            self.close_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_with_new_epochs_stamps_after_warmup_and_closes() {
        let mut frames = MemFrames::new();
        frames.push(b"a");
        frames.push(b"bc");
        let progress = Arc::new(MemProgress::default());
        let mut s = MemSource::new(Arc::new(frames), Pacing::FlatOut, 5, 2, None, Arc::clone(&progress));
        let mut seen = Vec::new();
        loop {
            match s.next_tagged() {
                (Next::Frame(f, meta), epoch) => seen.push((f.to_vec(), meta.stamp.0 != 0, epoch)),
                (Next::Closed, _) => break,
                _ => {}
            }
        }
        let expect: Vec<(Vec<u8>, bool, u32)> = vec![
            (b"a".to_vec(), false, 0),
            (b"bc".to_vec(), false, 0),
            (b"a".to_vec(), true, 1),
            (b"bc".to_vec(), true, 1),
            (b"a".to_vec(), true, 2),
        ];
        assert_eq!(seen, expect);
        assert_eq!(progress.handed.load(Ordering::Relaxed), 5);
        assert_eq!(progress.done.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn open_loop_stamps_the_schedule() {
        let mut frames = MemFrames::new();
        frames.push(b"x");
        let progress = Arc::new(MemProgress::default());
        let mut s = MemSource::new(
            Arc::new(frames),
            Pacing::Rate { interval_ns: 1_000 },
            3,
            0,
            None,
            progress,
        );
        let mut stamps = Vec::new();
        while stamps.len() < 3 {
            if let (Next::Frame(_, meta), _) = s.next_tagged() {
                stamps.push(meta.stamp.0);
            }
        }
        assert_eq!(stamps[1] - stamps[0], 1_000);
        assert_eq!(stamps[2] - stamps[0], 2_000);
    }
}
