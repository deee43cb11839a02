//! One live market per simulator, shared by all of its connections, as on a real venue.
//!
//! A real venue runs one timeline: a trade happens once, carries one trade id, and every
//! connection that is subscribed at that moment receives it; a connection opened later joins
//! the stream where it is. Feed handlers rely on that to deduplicate the overlap of two
//! connections (make-before-break reconnects, redundant lines), so a simulator that replays a
//! private copy of the market to every connection cannot test them.
//!
//! [`SharedMarket`] gives a simulator that timeline. A background thread runs the seeded
//! [`MarketGen`], paced in real time from the moment the market starts, and appends each event
//! to a bounded log: a ring of the last `capacity` events, each with an absolute index (the
//! first event ever published has index 0). Every connection reads the log through its own
//! [`Cursor`], which starts at the live end and returns events in order.
//! A cursor that falls further behind than the log keeps gets [`Lagged`], with the number of
//! events it missed, and continues from the oldest event still kept (or, with
//! [`Cursor::skip_to_live`], from the live end); the venue decides whether that means dropping
//! the client or resynchronising it.
//!
//! The content is deterministic: the event at index `i` is the `i`-th event of a fresh
//! `MarketGen` with the same seed, whoever reads it and whenever. Only the index at which a
//! client joins depends on timing.
//!
//! This is cold-side test tooling, so a `Mutex` and two `Condvar`s are the right tools: readers
//! take the lock once per batch, and the generator publishes in batches when it runs behind.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::market::{MarketGen, SimEvent};

/// A log size that holds a few seconds of even a fast simulated market (about 4 MiB of events).
pub const DEFAULT_LOG_CAPACITY: usize = 65_536;

/// Most events the generator publishes under one lock acquisition when it is behind schedule,
/// so that readers are never kept waiting for long.
const PUBLISH_BATCH: usize = 1024;

/// Longest the generator sleeps without looking at the clock again. Waking for nothing is
/// harmless; it only bounds the effect of a clock that jumps.
const MAX_SLEEP: Duration = Duration::from_millis(100);

/// The events a cursor skipped because the log no longer held them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fell behind the shared market and missed {missed} events")]
pub struct Lagged {
    /// How many events were dropped from the log before the cursor read them.
    pub missed: u64,
}

/// A market timeline generated once and read by any number of [`Cursor`]s.
///
/// Dropping it stops and joins the generator thread, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct SharedMarket {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A reader's position in a [`SharedMarket`]; each connection owns one.
#[derive(Debug)]
pub struct Cursor {
    inner: Arc<Inner>,
    /// Absolute index of the next event to return.
    next: u64,
}

/// What the generator thread and the cursors share.
#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Notified when events are published or the market stops; cursors wait on it.
    published: Condvar,
    /// Notified when the market stops; the generator waits on it between events.
    stop: Condvar,
    capacity: usize,
    /// Event offsets count from here.
    start: Instant,
    /// The wall clock at `start`, in ns since the Unix epoch.
    epoch_unix_ns: u64,
}

#[derive(Debug)]
struct State {
    /// The last `capacity` events, oldest first.
    log: VecDeque<SimEvent>,
    /// Absolute index of `log[0]`.
    first: u64,
    /// Offset of the next event the generator will publish.
    pending_ns: u64,
    stopped: bool,
}

impl State {
    /// Absolute index of the next event to be published: the live end.
    fn end(&self) -> u64 {
        self.first + self.log.len() as u64
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and the state is consistent between
        // statements anyway, so a poisoned lock is still safe to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn due(&self, offset_ns: u64) -> Option<Instant> {
        self.start.checked_add(Duration::from_nanos(offset_ns))
    }
}

impl SharedMarket {
    /// Starts the generator thread (named `thread_name`) with `market`, keeping the last
    /// `capacity` events; the timeline's clock starts now.
    ///
    /// # Errors
    /// `InvalidInput` if `capacity` is zero; otherwise the error from starting the thread.
    pub fn start(market: MarketGen, capacity: usize, thread_name: &str) -> io::Result<SharedMarket> {
        if capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the shared market log must keep at least one event",
            ));
        }
        let mut market = market;
        let first = market.next_event();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                log: VecDeque::new(),
                first: 0,
                pending_ns: first.offset_ns(),
                stopped: false,
            }),
            published: Condvar::new(),
            stop: Condvar::new(),
            capacity,
            start: Instant::now(),
            epoch_unix_ns: wall_clock_ns(),
        });
        let thread = thread::Builder::new().name(thread_name.into()).spawn({
            let inner = Arc::clone(&inner);
            move || generate(&inner, market, first)
        })?;
        Ok(SharedMarket {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A new reader positioned at the live end: its first event is the next one published.
    pub fn cursor(&self) -> Cursor {
        let next = self.inner.lock().end();
        Cursor {
            inner: Arc::clone(&self.inner),
            next,
        }
    }

    /// How many events have been published since the start (the live end's index).
    pub fn published(&self) -> u64 {
        self.inner.lock().end()
    }

    /// How many events the log keeps.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The wall clock when the timeline started, in ns since the Unix epoch; an event happens
    /// at `epoch_unix_ns() + offset_ns`.
    pub fn epoch_unix_ns(&self) -> u64 {
        self.inner.epoch_unix_ns
    }

    /// Stops the generator and joins its thread. Cursors still return the events already
    /// published, then nothing. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.inner.lock().stopped = true;
        self.inner.stop.notify_all();
        self.inner.published.notify_all();
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            warn!("shared market generator thread panicked");
        }
    }
}

impl Drop for SharedMarket {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The generator thread: publishes every event whose time has come, then sleeps until the
/// next one is due or the market stops.
fn generate(inner: &Inner, mut market: MarketGen, first: SimEvent) {
    let mut next = first;
    let mut batch: Vec<SimEvent> = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        // Generated outside the lock, so readers only wait for the copy into the log.
        let elapsed = inner.start.elapsed().as_nanos();
        while batch.len() < PUBLISH_BATCH && u128::from(next.offset_ns()) <= elapsed {
            batch.push(std::mem::replace(&mut next, market.next_event()));
        }
        let mut state = inner.lock();
        if state.stopped {
            return;
        }
        let published = batch.len();
        for event in batch.drain(..) {
            if state.log.len() == inner.capacity {
                state.log.pop_front();
                state.first += 1;
            }
            state.log.push_back(event);
        }
        state.pending_ns = next.offset_ns();
        if published > 0 {
            inner.published.notify_all();
        }
        if published == PUBLISH_BATCH {
            // Behind schedule: publish the rest at once, after letting readers in.
            continue;
        }
        let wait = inner
            .due(next.offset_ns())
            .map_or(MAX_SLEEP, |due| due.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if !wait.is_zero() {
            // A spurious or early wake-up just goes round the loop again.
            drop(inner.stop.wait_timeout(state, wait));
        }
    }
}

impl Cursor {
    /// Absolute index of the next event this cursor returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next event if it has been published, without waiting.
    ///
    /// # Errors
    /// [`Lagged`] if the log has dropped events this cursor had not read; the cursor then
    /// continues from the oldest event the log still keeps.
    pub fn try_next(&mut self) -> Result<Option<SimEvent>, Lagged> {
        let state = self.inner.lock();
        take_one(&mut self.next, &state)
    }

    /// Appends up to `max` published events to `out` under one lock, returning how many.
    ///
    /// # Errors
    /// [`Lagged`], as for [`try_next`](Self::try_next); nothing is appended then.
    pub fn read_into(&mut self, max: usize, out: &mut Vec<SimEvent>) -> Result<usize, Lagged> {
        let state = self.inner.lock();
        let from = index_in(&mut self.next, &state)?;
        let n = (state.log.len() - from).min(max);
        out.extend(state.log.range(from..from + n).copied());
        self.next += n as u64;
        Ok(n)
    }

    /// The next event, waiting up to `timeout` for it to be published; `Ok(None)` on timeout
    /// or once the market has stopped and everything published has been read.
    ///
    /// # Errors
    /// [`Lagged`], as for [`try_next`](Self::try_next).
    pub fn wait_next(&mut self, timeout: Duration) -> Result<Option<SimEvent>, Lagged> {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.inner.lock();
        loop {
            if let Some(event) = take_one(&mut self.next, &state)? {
                return Ok(Some(event));
            }
            let left = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(Instant::now()));
            if state.stopped || left.is_zero() {
                return Ok(None);
            }
            state = self
                .inner
                .published
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// When the next event for this cursor is due: in the past if it is already published
    /// (or the cursor has lagged), the scheduled time of the generator's next event otherwise,
    /// and `None` once the market has stopped and the cursor has read everything.
    pub fn next_due(&self) -> Option<Instant> {
        let state = self.inner.lock();
        if self.next < state.first {
            return Some(Instant::now());
        }
        if let Some(event) = state.log.get((self.next - state.first) as usize) {
            return Some(self.inner.due(event.offset_ns()).unwrap_or_else(Instant::now));
        }
        if state.stopped {
            return None;
        }
        self.inner.due(state.pending_ns)
    }

    /// Moves to the live end, as a client that resynchronises would; returns how many
    /// published events were skipped (including any the log had already dropped).
    pub fn skip_to_live(&mut self) -> u64 {
        let end = self.inner.lock().end();
        let skipped = end - self.next;
        self.next = end;
        skipped
    }

    /// The wall clock when the timeline started, in ns since the Unix epoch; an event happens
    /// at `epoch_unix_ns() + offset_ns`, the same instant for every connection.
    pub fn epoch_unix_ns(&self) -> u64 {
        self.inner.epoch_unix_ns
    }
}

/// Position of the cursor index `next` in the log, or the lag (after which `next` has moved
/// to the oldest kept event).
fn index_in(next: &mut u64, state: &State) -> Result<usize, Lagged> {
    if *next < state.first {
        let missed = state.first - *next;
        *next = state.first;
        return Err(Lagged { missed });
    }
    // Never beyond the live end: a cursor only advances over published events.
    Ok((*next - state.first) as usize)
}

fn take_one(next: &mut u64, state: &State) -> Result<Option<SimEvent>, Lagged> {
    let from = index_in(next, state)?;
    let event = state.log.get(from).copied();
    if event.is_some() {
        *next += 1;
    }
    Ok(event)
}

/// Nanoseconds since the Unix epoch; 0 if the clock is before 1970.
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::binance::sample_symbols;

    /// Far above what any wait here needs; only reached when something is broken.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn market_gen(seed: u64) -> MarketGen {
        MarketGen::new(seed, 50_000, &sample_symbols()).unwrap()
    }

    /// The events of a fresh generator from index `from`, `n` of them.
    fn reference(seed: u64, from: u64, n: usize) -> Vec<SimEvent> {
        let mut g = market_gen(seed);
        for _ in 0..from {
            g.next_event();
        }
        (0..n).map(|_| g.next_event()).collect()
    }

    /// Reads `n` events, waiting for each, failing at the deadline.
    fn read(cursor: &mut Cursor, n: usize) -> Vec<SimEvent> {
        let until = Instant::now() + DEADLINE;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            assert!(Instant::now() < until, "only {} of {n} events arrived", out.len());
            if let Some(e) = cursor.wait_next(Duration::from_millis(20)).unwrap() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn cursors_read_the_seeded_sequence_from_where_they_join() {
        let market = SharedMarket::start(market_gen(3), 1 << 20, "test-mkt").unwrap();
        let mut early = market.cursor();
        let first = early.position();
        let a = read(&mut early, 200);
        assert_eq!(a, reference(3, first, 200));

        // A later cursor joins at the live end, mid-stream, and agrees on the overlap.
        let mut late = market.cursor();
        let joined = late.position();
        assert!(joined >= first + 200);
        let b = read(&mut late, 100);
        assert_eq!(b, reference(3, joined, 100));
        let behind = usize::try_from(joined - early.position()).unwrap();
        let overlap = read(&mut early, behind + 100);
        assert_eq!(&overlap[overlap.len() - 100..], &b[..]);
        market.shutdown();
    }

    #[test]
    fn a_cursor_that_falls_behind_is_told_what_it_missed() {
        let market = SharedMarket::start(market_gen(5), 8, "test-mkt").unwrap();
        let mut slow = market.cursor();
        let mut pace = market.cursor();
        let joined = slow.position();
        // Let the market run well past what the log keeps, without reading `slow`; `pace` only
        // serves to wait for publications (and may lag itself, which is fine).
        let until = Instant::now() + DEADLINE;
        while market.published() < joined + 40 {
            assert!(Instant::now() < until, "the market stalled");
            let _ = pace.wait_next(Duration::from_millis(20));
        }
        let err = slow.try_next().unwrap_err();
        // 40 or more were published and the log keeps 8, so at least 32 were lost.
        assert!(err.missed >= 32, "{err}");
        let resumed = slow.position();
        assert_eq!(resumed, joined + err.missed);
        // Reading goes on from the oldest kept event, with the right content.
        let next = slow.try_next().unwrap().expect("the oldest kept event");
        assert_eq!(next, reference(5, resumed, 1)[0]);

        let before = slow.position();
        let skipped = slow.skip_to_live();
        assert_eq!(slow.position(), before + skipped);
        let mut batch = Vec::new();
        // At the live end nothing is lost, whatever arrives next.
        assert!(slow.read_into(4, &mut batch).is_ok());
    }

    #[test]
    fn shutdown_joins_and_cursors_drain_what_was_published() {
        let market = SharedMarket::start(market_gen(9), 1024, "test-mkt").unwrap();
        let mut cursor = market.cursor();
        read(&mut cursor, 10);
        market.shutdown();
        let end = market.published();
        // Whatever was published before the stop is still readable, then nothing.
        while cursor.position() < end {
            assert!(cursor.try_next().unwrap().is_some());
        }
        assert_eq!(cursor.wait_next(DEADLINE).unwrap(), None);
        assert_eq!(cursor.next_due(), None);
        assert_eq!(market.published(), end, "the generator stopped");
        market.shutdown();
    }

    #[test]
    fn zero_capacity_is_refused() {
        let err = SharedMarket::start(market_gen(1), 0, "test-mkt").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
