//! The boards: values a hot thread publishes for any other thread to read. The
//! [`SignalBoard`] holds the latest [`Signal`] of every instrument and the ensemble weights in
//! force, published by the Alpha thread (`GET /signal/{symbol}`, the governor confirming that
//! new weights were applied); the [`RiskBoard`] holds Risk's trading states, exposure and each
//! venue's limit usage (rate, reject ratio, feed), published by the Risk thread
//! (`GET /risk/state`).
//!
//! Each value sits in a seqlock slot made of atomics only, no `unsafe`: a sequence number and the
//! record encoded as `u64` words. The single writer makes the sequence odd, stores the words and
//! makes it even again; a reader loads the sequence, the words, and the sequence again, and
//! retries if the two differ or are odd (a write was in progress). The writer never waits for a
//! reader and never fails: a publish is a dozen plain stores on x86, so Alpha pays almost nothing
//! and the cold side can never hold it up. A reader may retry while Alpha is writing that one
//! slot, which takes nanoseconds.
//!
//! Slots are cache-line padded, so a reader polling one instrument does not slow the writer's
//! stores to another. Every atomic goes through [`crate::sync`], so the protocol is
//! model-checked with loom (see the tests).

use crossbeam::utils::CachePadded;

use crate::ids::{InstrumentId, Venue};
use crate::num::{Money, Qty, SignedQty};
use crate::records::{FAMILIES, Factor, Mix, Signal, SignalSide, Stamp, TradingState};
use crate::stage::alpha::Weights;
use crate::sync::{AtomicU64, Ordering, fence, spin_hint};

/// Words of an encoded [`Signal`]: instrument and side, score, confidence, the mix, and the
/// three times.
const SIGNAL_WORDS: usize = 5 + FAMILIES + 1;

/// One seqlock: a sequence number and `N` words. Written by one thread at a time, read by any.
///
/// The sequence is 0 until the first write and even between writes (it counts two per write,
/// and 2⁶³ writes are out of reach), so 0 means "never written".
struct Slot<const N: usize> {
    seq: AtomicU64,
    words: [AtomicU64; N],
}

impl<const N: usize> Slot<N> {
    fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Stores `data`. Callers guarantee a single writer (or writers ordered by happens-before,
    /// such as the thread that built the task and the thread it was moved to).
    #[inline]
    fn write(&self, data: &[u64; N]) {
        seq_write(&self.seq, &self.words, data.iter().copied());
    }

    /// The last complete write, or `None` if there was none.
    #[inline]
    fn read(&self) -> Option<[u64; N]> {
        let mut data = [0u64; N];
        seq_read(&self.seq, &self.words, &mut data).map(|_| data)
    }
}

/// The seqlock write: makes `seq` odd, stores `data` into `words` (as many as both have), makes
/// `seq` even again. Single writer per `seq` (see [`Slot::write`]). Every slot of both boards
/// goes through this one function and [`seq_read`], which the loom tests check.
#[inline]
fn seq_write(seq: &AtomicU64, words: &[AtomicU64], data: impl IntoIterator<Item = u64>) {
    // Relaxed: the odd value need not publish anything; the fence below orders it before
    // the word stores. A read-modify-write rather than a load and a store (equivalent with
    // one writer) because loom 0.7 stops exploring a thread whose first access to an atomic
    // is a plain load (tokio-rs/loom#392), which would hide the very interleavings the model
    // test is for. Uncontended, it costs the writer one locked instruction per publish.
    let s = seq.fetch_add(1, Ordering::Relaxed);
    // Release fence: pairs with the reader's `fence(Acquire)` in `seq_read`. A reader whose
    // relaxed word load sees any store below synchronises with this fence, so the odd
    // `seq` store above happens-before its re-check of `seq`, which then sees the odd value
    // (or a later one) and retries: a half-written record is never accepted.
    fence(Ordering::Release);
    for (word, value) in words.iter().zip(data) {
        // Relaxed: ordered by the fence above and the Release store below.
        word.store(value, Ordering::Relaxed);
    }
    // Release: pairs with the reader's first `seq.load(Acquire)`. A reader that sees this
    // even value also sees every word stored above (or later ones, which its re-check
    // catches).
    seq.store(s.wrapping_add(2), Ordering::Release);
}

/// The seqlock read: fills `out` (as many words as both have) with the last complete write and
/// returns its sequence number, or `None` (and `out` untouched) if there was none. Retries,
/// never blocks the writer.
#[inline]
fn seq_read(seq: &AtomicU64, words: &[AtomicU64], out: &mut [u64]) -> Option<u64> {
    loop {
        // Acquire: pairs with the writer's closing Release store, so the words loaded next
        // are at least those of the write that made `seq` even.
        let before = seq.load(Ordering::Acquire);
        if before == 0 {
            return None;
        }
        if before & 1 == 1 {
            spin_hint();
            continue;
        }
        for (o, word) in out.iter_mut().zip(words) {
            // Relaxed: ordered after the Acquire load above and before the fence below.
            *o = word.load(Ordering::Relaxed);
        }
        // Acquire fence: pairs with the writer's `fence(Release)` in `seq_write` (see there): if
        // any word came from a newer write, the re-check below sees that write's odd value.
        fence(Ordering::Acquire);
        // Relaxed: ordered after the word loads by the fence above.
        let after = seq.load(Ordering::Relaxed);
        if after == before {
            return Some(before);
        }
        spin_hint();
    }
}

/// The latest signal per instrument and the weights in force; see the module doc.
///
/// Alpha is the only writer ([`publish`](Self::publish), [`publish_weights`](Self::publish_weights));
/// any thread may read, without locks and without ever delaying the writer.
pub struct SignalBoard {
    signals: Box<[CachePadded<Slot<SIGNAL_WORDS>>]>,
    weights: CachePadded<Slot<FAMILIES>>,
    weights_version: CachePadded<AtomicU64>,
}

impl std::fmt::Debug for SignalBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalBoard")
            .field("instruments", &self.signals.len())
            .field("weights_version", &self.weights_version())
            .finish_non_exhaustive()
    }
}

impl SignalBoard {
    /// A board with one empty slot per instrument. Allocates; call while wiring.
    pub fn new(instruments: usize) -> Self {
        Self {
            signals: (0..instruments).map(|_| CachePadded::new(Slot::new())).collect(),
            weights: CachePadded::new(Slot::new()),
            weights_version: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Number of instrument slots.
    pub fn instruments(&self) -> usize {
        self.signals.len()
    }

    /// Replaces the instrument's signal. Single writer (the Alpha thread); an instrument
    /// outside the board is ignored. No allocation, never waits.
    #[inline]
    pub fn publish(&self, signal: &Signal) {
        if let Some(slot) = self.signals.get(signal.instrument.index()) {
            slot.write(&encode(signal));
        }
    }

    /// The instrument's latest signal: `None` before the first publish and for an id outside
    /// the board.
    pub fn read(&self, id: InstrumentId) -> Option<Signal> {
        self.signals.get(id.index())?.read().map(|w| decode(&w))
    }

    /// Records the weights Alpha now uses, then counts the publication in
    /// [`weights_version`](Self::weights_version). Single writer (Alpha). No allocation.
    #[inline]
    pub fn publish_weights(&self, weights: &Weights) {
        self.weights.write(&weights.map(|w| w.to_bits() as u64));
        // Release: pairs with the Acquire load in `weights_version`, so a reader that sees the
        // new count and then calls `weights` gets these weights (or later ones).
        self.weights_version.fetch_add(1, Ordering::Release);
    }

    /// The weights in force: all zero until Alpha first publishes them (when its task is built).
    pub fn weights(&self) -> Weights {
        self.weights
            .read()
            .map_or([Factor::ZERO; FAMILIES], |w| w.map(|b| Factor::from_bits(b as i64)))
    }

    /// How many times weights were published: 1 once Alpha's task is built, plus one per
    /// applied weights command. The cold side reads it before sending weights and waits for it
    /// to move to know the hot thread applied them.
    pub fn weights_version(&self) -> u64 {
        // Acquire: pairs with the Release store in `publish_weights`.
        self.weights_version.load(Ordering::Acquire)
    }
}

/// Words of the system part of the risk board: state and kill flag, Kelly clip, balance, gross
/// notional, orders created.
const RISK_SYSTEM_WORDS: usize = 5;
/// Words of one venue on the risk board (after the system part): orders in the last second and
/// the limit, rejects and the window, the reject ratio limit, flags (feed live, reject ratio
/// high).
const RISK_VENUE_WORDS: usize = 4;
/// Words per instrument on the risk board: state, position, open buy, open sell.
const RISK_INSTRUMENT_WORDS: usize = 4;

/// The system-wide part of Risk's state, as published on the [`RiskBoard`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemRiskView {
    /// The system trading state.
    pub state: TradingState,
    /// Whether Risk is killed (kill switch engaged and not yet resumed).
    pub killed: bool,
    /// The Kelly clip in force (0 before the first publication).
    pub kelly_clip: Factor,
    /// Trading balance.
    pub balance: Money,
    /// Gross exposure over all instruments.
    pub gross_notional: Money,
    /// Orders Risk has created (approved intents and its own trims).
    pub orders: u64,
    /// Each venue's limit usage, by [`Venue::index`].
    pub venues: [VenueRiskView; Venue::COUNT],
}

/// One venue's limit usage as Risk sees it, as published on the [`RiskBoard`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VenueRiskView {
    /// Orders sent to the venue within the second before Risk's latest time
    /// ([`Risk::rate_used`](crate::stage::risk::Risk::rate_used)).
    pub orders_last_sec: u32,
    /// The rate limit in force (`risk.max_orders_per_sec`).
    pub max_orders_per_sec: u32,
    /// Rejects among the venue's last `reject_window` orders.
    pub rejects: u32,
    /// The reject window in force (`risk.reject_window`).
    pub reject_window: u32,
    /// The reject ratio limit in force, a fraction (`risk.reject_ratio_pct / 100`).
    pub reject_limit: Factor,
    /// Whether the reject ratio is above the limit (the venue's instruments are REDUCING).
    pub reject_high: bool,
    /// Whether Risk takes the venue's feed to be live (a stale one makes its instruments
    /// REDUCING).
    pub feed_live: bool,
}

/// One instrument's part of Risk's state, as published on the [`RiskBoard`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstrumentRiskView {
    /// The instrument's trading state (as [`Risk::state`](crate::stage::risk::Risk::state)
    /// reports it for the instrument's scope).
    pub state: TradingState,
    /// Filled position.
    pub position: SignedQty,
    /// Open buy quantity.
    pub open_buy: Qty,
    /// Open sell quantity.
    pub open_sell: Qty,
}

/// One consistent snapshot of the [`RiskBoard`]: every part from the same publication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskView {
    /// How many times Risk has published (0: never; the rest of the view is then all defaults).
    pub version: u64,
    /// System state.
    pub system: SystemRiskView,
    /// Per instrument, by instrument id.
    pub instruments: Vec<InstrumentRiskView>,
}

/// Risk's trading states, exposure and limits usage for any thread to read (`GET /risk/state`,
/// the kill drill), published by the Risk thread after every change.
///
/// Unlike the [`SignalBoard`], whose slots are independent, the whole board is one seqlock over
/// `5 + 4 × venues + 4 × instruments` words (every [`Venue`]): a reader gets the system and every instrument from the same
/// publication, so (for example) a position and the gross notional always agree. The writer
/// stores plain words (no allocation, never waits); a reader allocates its [`RiskView`] and
/// retries while a publication is in progress.
pub struct RiskBoard {
    seq: CachePadded<AtomicU64>,
    words: Box<[AtomicU64]>,
    /// Venues on the board: the first this many of [`Venue::ALL`] (all of them but in the loom
    /// model, which keeps its state space small).
    venues: usize,
    instruments: usize,
}

impl std::fmt::Debug for RiskBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskBoard")
            .field("instruments", &self.instruments)
            .finish_non_exhaustive()
    }
}

impl RiskBoard {
    /// A board for `instruments` instruments and every venue, never published. Allocates; call
    /// while wiring.
    pub fn new(instruments: usize) -> Self {
        Self::with_venues(instruments, Venue::COUNT)
    }

    /// A board for `instruments` instruments and the first `venues` venues (the others read as
    /// defaults).
    fn with_venues(instruments: usize, venues: usize) -> Self {
        let venues = venues.min(Venue::COUNT);
        let len = RISK_SYSTEM_WORDS + RISK_VENUE_WORDS * venues + RISK_INSTRUMENT_WORDS * instruments;
        Self {
            seq: CachePadded::new(AtomicU64::new(0)),
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
            venues,
            instruments,
        }
    }

    /// Number of instruments on the board.
    pub fn instruments(&self) -> usize {
        self.instruments
    }

    /// Publishes the system state and each instrument's, in instrument order (extra ones are
    /// ignored, missing ones keep zeros). Single writer (the Risk thread); no allocation.
    #[inline]
    pub fn publish(&self, system: &SystemRiskView, instruments: impl Iterator<Item = InstrumentRiskView>) {
        let head = [
            u64::from(system.state as u8) | u64::from(system.killed) << 8,
            system.kelly_clip.to_bits() as u64,
            system.balance.raw() as u64,
            system.gross_notional.raw() as u64,
            system.orders,
        ];
        let venues = system.venues.iter().take(self.venues).flat_map(|v| {
            [
                u64::from(v.orders_last_sec) | u64::from(v.max_orders_per_sec) << 32,
                u64::from(v.rejects) | u64::from(v.reject_window) << 32,
                v.reject_limit.to_bits() as u64,
                u64::from(v.feed_live) | u64::from(v.reject_high) << 1,
            ]
        });
        let body = instruments.take(self.instruments).flat_map(|i| {
            [
                u64::from(i.state as u8),
                i.position.raw() as u64,
                i.open_buy.raw() as u64,
                i.open_sell.raw() as u64,
            ]
        });
        seq_write(&self.seq, &self.words, head.into_iter().chain(venues).chain(body));
    }

    /// The latest publication (all defaults and version 0 before the first). Allocates the
    /// view; never delays the writer.
    pub fn read(&self) -> RiskView {
        let mut w = vec![0u64; self.words.len()];
        let Some(seq) = seq_read(&self.seq, &self.words, &mut w) else {
            return RiskView {
                instruments: vec![InstrumentRiskView::default(); self.instruments],
                ..RiskView::default()
            };
        };
        let state = |b: u64| match b & 0xff {
            0 => TradingState::Active,
            1 => TradingState::Reducing,
            // Only `publish` writes these words; 2 is the one value left.
            _ => TradingState::Halted,
        };
        // Raw values were published from valid quantities, so `from_raw` cannot refuse them.
        let qty = |b: u64| Qty::from_raw(b as i64).unwrap_or(Qty::ZERO);
        let money = |b: u64| Money::from_raw(b as i64).unwrap_or(Money::ZERO);
        RiskView {
            version: seq / 2,
            system: SystemRiskView {
                state: state(w[0]),
                killed: (w[0] >> 8) & 1 == 1,
                kelly_clip: Factor::from_bits(w[1] as i64),
                balance: money(w[2]),
                gross_notional: money(w[3]),
                orders: w[4],
                venues: std::array::from_fn(|v| {
                    if v >= self.venues {
                        return VenueRiskView::default();
                    }
                    let at = RISK_SYSTEM_WORDS + RISK_VENUE_WORDS * v;
                    let c = &w[at..at + RISK_VENUE_WORDS];
                    VenueRiskView {
                        orders_last_sec: c[0] as u32,
                        max_orders_per_sec: (c[0] >> 32) as u32,
                        rejects: c[1] as u32,
                        reject_window: (c[1] >> 32) as u32,
                        reject_limit: Factor::from_bits(c[2] as i64),
                        feed_live: c[3] & 1 == 1,
                        reject_high: (c[3] >> 1) & 1 == 1,
                    }
                }),
            },
            instruments: w[RISK_SYSTEM_WORDS + RISK_VENUE_WORDS * self.venues..]
                .chunks_exact(RISK_INSTRUMENT_WORDS)
                .map(|c| InstrumentRiskView {
                    state: state(c[0]),
                    position: SignedQty::from_raw(c[1] as i64).unwrap_or(SignedQty::ZERO),
                    open_buy: qty(c[2]),
                    open_sell: qty(c[3]),
                })
                .collect(),
        }
    }
}

fn side_code(side: SignalSide) -> u64 {
    match side {
        SignalSide::Buy => 0,
        SignalSide::Sell => 1,
        SignalSide::Flat => 2,
    }
}

fn encode(s: &Signal) -> [u64; SIGNAL_WORDS] {
    let mut w = [0u64; SIGNAL_WORDS];
    w[0] = u64::from(s.instrument.0) | side_code(s.side) << 16;
    w[1] = s.score.to_bits() as u64;
    w[2] = s.confidence.to_bits() as u64;
    for (word, m) in w[3..3 + FAMILIES].iter_mut().zip(s.mix) {
        *word = m.to_bits() as u64;
    }
    w[3 + FAMILIES] = s.ts_ns;
    w[4 + FAMILIES] = s.tick_seq;
    w[5 + FAMILIES] = s.stamp.0;
    w
}

fn decode(w: &[u64; SIGNAL_WORDS]) -> Signal {
    let factor = |b: u64| Factor::from_bits(b as i64);
    let mut mix: Mix = [Factor::ZERO; FAMILIES];
    for (m, b) in mix.iter_mut().zip(&w[3..3 + FAMILIES]) {
        *m = factor(*b);
    }
    Signal {
        instrument: InstrumentId(w[0] as u16),
        side: match (w[0] >> 16) & 0xff {
            0 => SignalSide::Buy,
            1 => SignalSide::Sell,
            // Only `encode` writes this word, and a consistent read returns what it wrote.
            _ => SignalSide::Flat,
        },
        score: factor(w[1]),
        confidence: factor(w[2]),
        mix,
        ts_ns: w[3 + FAMILIES],
        tick_seq: w[4 + FAMILIES],
        stamp: Stamp(w[5 + FAMILIES]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal whose every field is derived from `c`, so a torn read shows as a mismatch.
    fn signal(instrument: u16, c: u64) -> Signal {
        let bits = |k: u64| Factor::from_bits((c.wrapping_mul(k) as i64) >> 8);
        Signal {
            instrument: InstrumentId(instrument),
            score: bits(0x9E37_79B9),
            side: [SignalSide::Buy, SignalSide::Sell, SignalSide::Flat][(c % 3) as usize],
            confidence: Factor::from_bits(c as i64),
            mix: [bits(3), -bits(5), bits(7), -bits(11)],
            ts_ns: c,
            tick_seq: c.wrapping_mul(31),
            stamp: Stamp(c ^ 0x5555_5555_5555_5555),
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn signals_and_weights_round_trip_exactly() {
        let board = SignalBoard::new(3);
        assert_eq!(board.read(InstrumentId(1)), None, "nothing before the first publish");
        assert_eq!(board.read(InstrumentId(3)), None, "outside the board");
        for c in [0, 1, 2, 12_345, u64::MAX] {
            let s = signal(1, c);
            board.publish(&s);
            assert_eq!(board.read(InstrumentId(1)), Some(s));
        }
        let extreme = Signal {
            score: -Factor::ONE,
            confidence: Factor::ONE,
            mix: [Factor::MIN, Factor::MAX, Factor::DELTA, -Factor::DELTA],
            ..signal(2, 7)
        };
        board.publish(&extreme);
        assert_eq!(board.read(InstrumentId(2)), Some(extreme));
        assert_eq!(board.read(InstrumentId(0)), None, "other slots untouched");
        // A signal for an instrument outside the board is ignored.
        board.publish(&signal(9, 1));
        assert_eq!(board.instruments(), 3);

        assert_eq!(
            (board.weights(), board.weights_version()),
            ([Factor::ZERO; FAMILIES], 0)
        );
        let w = [
            Factor::from_num(0.4),
            Factor::from_num(0.3),
            Factor::from_num(0.3),
            Factor::ZERO,
        ];
        board.publish_weights(&w);
        assert_eq!((board.weights(), board.weights_version()), (w, 1));
        let w2 = [Factor::from_num(0.25); FAMILIES];
        board.publish_weights(&w2);
        assert_eq!((board.weights(), board.weights_version()), (w2, 2));
    }

    #[cfg(not(loom))]
    #[test]
    fn concurrent_reads_are_never_torn() {
        use std::sync::Arc;

        const N: u64 = 200_000;
        let weights = |c: u64| [c, c + 1, c + 2, c + 3].map(|x| Factor::from_bits(x as i64));
        let board = Arc::new(SignalBoard::new(2));
        let writer = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                for c in 1..=N {
                    board.publish(&signal(1, c));
                    if c % 16 == 0 {
                        board.publish_weights(&weights(c));
                    }
                }
            })
        };
        let (mut last, mut reads, mut last_w) = (0u64, 0u64, 0i64);
        loop {
            // Read once more after the writer finished, then stop; `join` below orders the
            // final checks after every publish.
            let finished = writer.is_finished();
            if let Some(s) = board.read(InstrumentId(1)) {
                let c = s.ts_ns;
                assert_eq!(s, signal(1, c), "torn read");
                assert!(c >= last, "went back from {last} to {c}");
                last = c;
                reads += 1;
            }
            let w = board.weights();
            let c = w[0].to_bits();
            if c != 0 {
                assert_eq!(w, weights(c as u64), "torn weights");
                assert!(c >= last_w);
                last_w = c;
            }
            if finished {
                break;
            }
        }
        writer.join().unwrap();
        // After the writer is done the last values are what a read returns.
        assert_eq!(board.read(InstrumentId(1)), Some(signal(1, N)));
        assert_eq!(board.weights(), weights(N));
        assert_eq!(board.weights_version(), N / 16);
        assert_eq!(board.read(InstrumentId(0)), None);
        assert!(reads > 0);
    }

    /// A risk publication whose every field is derived from `c`, so a mixed read shows.
    #[cfg(not(loom))]
    fn risk_view(c: u64, instruments: usize) -> (SystemRiskView, Vec<InstrumentRiskView>) {
        let states = [TradingState::Active, TradingState::Reducing, TradingState::Halted];
        let raw = |k: u64| (c.wrapping_mul(k) >> 2) as i64;
        let system = SystemRiskView {
            state: states[(c % 3) as usize],
            killed: c % 2 == 1,
            kelly_clip: Factor::from_bits(raw(3)),
            balance: Money::from_raw(-raw(5)).unwrap(),
            gross_notional: Money::from_raw(raw(7)).unwrap(),
            orders: c,
            venues: std::array::from_fn(|v| {
                let x = c.wrapping_add(v as u64);
                VenueRiskView {
                    orders_last_sec: x as u32,
                    max_orders_per_sec: (x >> 3) as u32,
                    rejects: x.wrapping_mul(5) as u32,
                    reject_window: (x >> 7) as u32,
                    reject_limit: Factor::from_bits(raw(23 + v as u64)),
                    reject_high: x.is_multiple_of(2),
                    feed_live: !x.is_multiple_of(3),
                }
            }),
        };
        let list = (0..instruments as u64)
            .map(|i| InstrumentRiskView {
                state: states[(c.wrapping_add(i) % 3) as usize],
                position: SignedQty::from_raw(raw(11 + i) - raw(13)).unwrap(),
                open_buy: Qty::from_raw(raw(17 + i)).unwrap(),
                open_sell: Qty::from_raw(raw(19 + i)).unwrap(),
            })
            .collect();
        (system, list)
    }

    #[cfg(not(loom))]
    #[test]
    fn the_risk_board_round_trips_exactly() {
        let board = RiskBoard::new(3);
        let empty = board.read();
        assert_eq!((empty.version, empty.system), (0, SystemRiskView::default()));
        assert_eq!(empty.instruments, vec![InstrumentRiskView::default(); 3]);
        for (n, c) in [1, 2, u64::MAX, 12_345].into_iter().enumerate() {
            let (system, list) = risk_view(c, 3);
            board.publish(&system, list.iter().copied());
            let seen = board.read();
            assert_eq!(
                (seen.version, seen.system, seen.instruments),
                (n as u64 + 1, system, list)
            );
        }
        // Extra instruments are ignored; missing ones keep zeros.
        let (system, list) = risk_view(5, 4);
        board.publish(&system, list.iter().copied());
        assert_eq!(board.read().instruments, list[..3]);
        board.publish(&system, list.iter().take(1).copied());
        assert_eq!(board.read().instruments[0], list[0]);
        // A board with fewer venues (the loom model's) keeps those and reads the rest as
        // defaults, with the instruments after them.
        let small = RiskBoard::with_venues(2, 1);
        let (system, list) = risk_view(9, 2);
        small.publish(&system, list.iter().copied());
        let seen = small.read();
        assert_eq!(seen.system.venues[0], system.venues[0]);
        assert!(seen.system.venues[1..].iter().all(|v| *v == VenueRiskView::default()));
        assert_eq!((seen.system.orders, seen.instruments), (9, list));
    }

    #[cfg(not(loom))]
    #[test]
    fn concurrent_risk_reads_are_one_publication() {
        use std::sync::Arc;

        const N: u64 = 100_000;
        let board = Arc::new(RiskBoard::new(4));
        let writer = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                for c in 1..=N {
                    let (system, list) = risk_view(c, 4);
                    board.publish(&system, list.into_iter());
                }
            })
        };
        let mut last = 0;
        loop {
            let finished = writer.is_finished();
            let seen = board.read();
            if seen.version > 0 {
                let c = seen.system.orders;
                let (system, list) = risk_view(c, 4);
                assert_eq!((seen.system, &seen.instruments), (system, &list), "mixed read");
                assert_eq!(seen.version, c, "one publication per value of c");
                assert!(c >= last);
                last = c;
            }
            if finished {
                break;
            }
        }
        writer.join().unwrap();
        assert_eq!(board.read().version, N);
    }

    /// A loom model bounded at `preemptions` unless `LOOM_MAX_PREEMPTIONS` says otherwise.
    #[cfg(loom)]
    fn model(preemptions: usize) -> loom::model::Builder {
        let mut model = loom::model::Builder::new();
        if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
            model.preemption_bound = Some(preemptions);
        }
        model
    }

    /// Loom explores the interleavings of one writer publishing twice and a reader reading, and
    /// every value each relaxed load may return: no read is ever a mix of two writes. Two
    /// preemptions keep the run near 15 s (three take about a minute) and already catch each
    /// of these mutations: either fence removed, either seq `Release`/`Acquire` weakened to
    /// `Relaxed`, or the re-check of `seq` skipped.
    #[cfg(loom)]
    #[test]
    fn loom_reads_are_never_torn() {
        let model = model(2);
        model.check(|| {
            let board = loom::sync::Arc::new(SignalBoard::new(1));
            let writer = {
                let board = loom::sync::Arc::clone(&board);
                loom::thread::spawn(move || {
                    board.publish(&signal(0, 1));
                    board.publish(&signal(0, 2));
                })
            };
            let seen = board.read(InstrumentId(0));
            assert!(
                seen.is_none() || seen == Some(signal(0, 1)) || seen == Some(signal(0, 2)),
                "torn read: {seen:?}"
            );
            writer.join().unwrap();
            assert_eq!(board.read(InstrumentId(0)), Some(signal(0, 2)));
        });
    }

    /// The risk board is one seqlock over a slice of words (the same `seq_write` / `seq_read`):
    /// a reader sees the system part and every instrument from one publication. The model
    /// leaves the venue words out (`VENUES = 0`): each word multiplies the values the reader's
    /// relaxed loads may return, and the protocol does not depend on the slice's length. With
    /// one venue (four more words) the same model passes in about three minutes instead of
    /// seconds; `concurrent_risk_reads_are_one_publication` checks every venue's words on real
    /// threads.
    #[cfg(loom)]
    #[test]
    fn loom_risk_reads_are_one_publication() {
        const VENUES: usize = 0;
        let model = model(2);
        model.check(|| {
            let view = |c: u64| {
                let mut system = SystemRiskView {
                    orders: c,
                    balance: Money::from_raw(c as i64 * 3).unwrap(),
                    ..SystemRiskView::default()
                };
                if VENUES > 0 {
                    system.venues[0].orders_last_sec = c as u32 * 7;
                }
                let inst = InstrumentRiskView {
                    open_buy: Qty::from_raw(c as i64 * 5).unwrap(),
                    ..InstrumentRiskView::default()
                };
                (system, inst)
            };
            let board = loom::sync::Arc::new(RiskBoard::with_venues(1, VENUES));
            let writer = {
                let board = loom::sync::Arc::clone(&board);
                loom::thread::spawn(move || {
                    for c in [1, 2] {
                        let (system, inst) = view(c);
                        board.publish(&system, std::iter::once(inst));
                    }
                })
            };
            let seen = board.read();
            if seen.version > 0 {
                let (system, inst) = view(seen.version);
                assert_eq!((seen.system, seen.instruments[0]), (system, inst), "mixed read");
            }
            writer.join().unwrap();
            assert_eq!(board.read().system.orders, 2);
        });
    }

    /// The same for the weights slot and its version counter: a reader that sees version `n`
    /// sees the `n`-th weights or later ones.
    #[cfg(loom)]
    #[test]
    fn loom_weights_follow_their_version() {
        let model = model(3);
        model.check(|| {
            let w = |x: i64| [x, x + 1, x + 2, x + 3].map(Factor::from_bits);
            let board = loom::sync::Arc::new(SignalBoard::new(0));
            let writer = {
                let board = loom::sync::Arc::clone(&board);
                loom::thread::spawn(move || {
                    board.publish_weights(&w(10));
                    board.publish_weights(&w(20));
                })
            };
            let version = board.weights_version();
            let seen = board.weights();
            match version {
                0 => assert!([[Factor::ZERO; FAMILIES], w(10), w(20)].contains(&seen), "{seen:?}"),
                1 => assert!([w(10), w(20)].contains(&seen), "{seen:?}"),
                _ => assert_eq!(seen, w(20)),
            }
            writer.join().unwrap();
        });
    }
}
