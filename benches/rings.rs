//! One ring hop, each transport next to baselines measured in the same run:
//! - `ring_same_thread`: push + pop of one `Tick` on one thread (the bookkeeping cost of a hop,
//!   no cache line changes hands): rtrb, crossbeam `ArrayQueue`, `std::sync::mpsc::sync_channel`
//!   (`send` + `try_recv`), with a `VecDeque` push + pop as the baseline;
//! - `ring_cross_thread`: a ping-pong between two threads pinned to two different cores (when
//!   the process may use two), one queue each way, the echo thread spinning on its input. Each
//!   sample is a round trip; the figure reported is one way (half the round trip). `floor` is
//!   the physical floor: a sequence number handed over through two `AtomicU64`s on separate
//!   cache lines, spinning; read every other transport as a multiple of it. `mpsc_blocking`
//!   uses a blocking `recv` on both sides (a parked thread is woken for every hop);
//! - `ring_interleaved` (printed, not a Criterion group): the same hops in short blocks taken
//!   in turn, with each transport's ratio to the floor of the same round. On a shared VM the
//!   floor itself drifts by several times over a run, so these paired ratios are the ones to
//!   quote.
//!
//! Run with `cargo bench --bench rings`; record the command, toolchain, CPU and tuning state
//! with any figure you quote (benches/RESULTS.md).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam::queue::ArrayQueue;
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};
use maxx_hot::runtime::{available_cores, confine_current_thread};

/// Ring capacity for every transport (the queues never hold more than one item here).
const CAPACITY: usize = 1024;

/// The record a hot ring carries from a feed to Alpha.
fn tick(seq: u64) -> Tick {
    Tick {
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: Price::from_units(61_837).unwrap(),
            qty: Qty::from_units(1).unwrap(),
            aggressor: Side::Buy,
        },
        seq,
        exchange_ns: seq,
        recv_ns: seq,
        stamp: Stamp(seq),
    }
}

fn same_thread(c: &mut Criterion) {
    let t = tick(1);
    let mut g = c.benchmark_group("ring_same_thread");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));

    let (mut tx, mut rx) = rtrb::RingBuffer::new(CAPACITY);
    g.bench_function("rtrb", |b| {
        b.iter(|| {
            tx.push(black_box(t)).unwrap();
            rx.pop().unwrap()
        })
    });
    let q = ArrayQueue::new(CAPACITY);
    g.bench_function("crossbeam_array_queue", |b| {
        b.iter(|| {
            q.push(black_box(t)).unwrap();
            q.pop().unwrap()
        })
    });
    let (tx, rx) = mpsc::sync_channel(CAPACITY);
    g.bench_function("std_mpsc_sync_channel", |b| {
        b.iter(|| {
            tx.send(black_box(t)).unwrap();
            rx.try_recv().unwrap()
        })
    });
    let mut d = VecDeque::with_capacity(CAPACITY);
    g.bench_function("vecdeque_baseline", |b| {
        b.iter(|| {
            d.push_back(black_box(t));
            d.pop_front().unwrap()
        })
    });
    g.finish();
}

/// A u64 alone on its cache line (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

/// One end of a round trip: sends `seq` and spins until it comes back.
trait Ping: Send {
    fn round_trip(&mut self, seq: u64);
}

/// The echo side, run on its own thread until `stop`.
trait Echo: Send + 'static {
    /// Waits for one item (giving up when `stop` is set) and sends it back; `false` once stopped.
    fn echo(&mut self, stop: &AtomicBool) -> bool;
}

struct FloorPing(Arc<(Line, Line)>);
struct FloorEcho(Arc<(Line, Line)>, u64);

impl Ping for FloorPing {
    #[inline]
    fn round_trip(&mut self, seq: u64) {
        let (to, from) = (&self.0.0, &self.0.1);
        to.0.store(seq, Ordering::Release);
        while from.0.load(Ordering::Acquire) != seq {
            std::hint::spin_loop();
        }
    }
}

impl Echo for FloorEcho {
    #[inline]
    fn echo(&mut self, stop: &AtomicBool) -> bool {
        let (from, to) = (&self.0.0, &self.0.1);
        loop {
            let seq = from.0.load(Ordering::Acquire);
            if seq != self.1 {
                self.1 = seq;
                to.0.store(seq, Ordering::Release);
                return true;
            }
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

struct RtrbPing(rtrb::Producer<Tick>, rtrb::Consumer<Tick>);
struct RtrbEcho(rtrb::Consumer<Tick>, rtrb::Producer<Tick>);

impl Ping for RtrbPing {
    #[inline]
    fn round_trip(&mut self, seq: u64) {
        self.0.push(tick(seq)).unwrap();
        loop {
            if let Ok(t) = self.1.pop() {
                black_box(t);
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl Echo for RtrbEcho {
    #[inline]
    fn echo(&mut self, stop: &AtomicBool) -> bool {
        loop {
            if let Ok(t) = self.0.pop() {
                self.1.push(t).unwrap();
                return true;
            }
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

struct ArrayQueuePing(Arc<ArrayQueue<Tick>>, Arc<ArrayQueue<Tick>>);
struct ArrayQueueEcho(Arc<ArrayQueue<Tick>>, Arc<ArrayQueue<Tick>>);

impl Ping for ArrayQueuePing {
    #[inline]
    fn round_trip(&mut self, seq: u64) {
        self.0.push(tick(seq)).unwrap();
        loop {
            if let Some(t) = self.1.pop() {
                black_box(t);
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl Echo for ArrayQueueEcho {
    #[inline]
    fn echo(&mut self, stop: &AtomicBool) -> bool {
        loop {
            if let Some(t) = self.0.pop() {
                self.1.push(t).unwrap();
                return true;
            }
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

/// `std::sync::mpsc::sync_channel`; `blocking`: `recv` (parks) instead of spinning on `try_recv`.
struct MpscPing(mpsc::SyncSender<Tick>, mpsc::Receiver<Tick>, bool);
struct MpscEcho(mpsc::Receiver<Tick>, mpsc::SyncSender<Tick>, bool);

impl Ping for MpscPing {
    #[inline]
    fn round_trip(&mut self, seq: u64) {
        self.0.send(tick(seq)).unwrap();
        if self.2 {
            black_box(self.1.recv().unwrap());
            return;
        }
        loop {
            if let Ok(t) = self.1.try_recv() {
                black_box(t);
                return;
            }
            std::hint::spin_loop();
        }
    }
}

impl Echo for MpscEcho {
    #[inline]
    fn echo(&mut self, stop: &AtomicBool) -> bool {
        if self.2 {
            // The ping side drops its sender after `stop`, which ends this `recv`.
            return match self.0.recv() {
                Ok(t) => self.1.send(t).is_ok(),
                Err(_) => false,
            };
        }
        loop {
            if let Ok(t) = self.0.try_recv() {
                self.1.send(t).unwrap();
                return true;
            }
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

fn floor_pair() -> (FloorPing, FloorEcho) {
    let lines = Arc::new((Line::default(), Line::default()));
    (FloorPing(Arc::clone(&lines)), FloorEcho(lines, 0))
}

fn rtrb_pair() -> (RtrbPing, RtrbEcho) {
    let (tx1, rx1) = rtrb::RingBuffer::new(CAPACITY);
    let (tx2, rx2) = rtrb::RingBuffer::new(CAPACITY);
    (RtrbPing(tx1, rx2), RtrbEcho(rx1, tx2))
}

fn array_queue_pair() -> (ArrayQueuePing, ArrayQueueEcho) {
    let (a, b) = (Arc::new(ArrayQueue::new(CAPACITY)), Arc::new(ArrayQueue::new(CAPACITY)));
    (ArrayQueuePing(Arc::clone(&a), Arc::clone(&b)), ArrayQueueEcho(a, b))
}

fn mpsc_pair(blocking: bool) -> (MpscPing, MpscEcho) {
    let (tx1, rx1) = mpsc::sync_channel(CAPACITY);
    let (tx2, rx2) = mpsc::sync_channel(CAPACITY);
    (MpscPing(tx1, rx2, blocking), MpscEcho(rx1, tx2, blocking))
}

/// Measures one transport: the echo thread runs for the whole case, pinned to `echo_core`;
/// the calling thread (pinned by the caller) pings. Criterion's time per iteration is one way.
fn ping_pong<P: Ping, E: Echo>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    (ping, mut echo): (P, E),
    echo_core: Option<usize>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = Arc::clone(&stop);
    let handle = thread::Builder::new()
        .name(format!("echo-{name}"))
        .spawn(move || {
            if let Some(core) = echo_core {
                confine_current_thread(&[core]);
            }
            while echo.echo(&echo_stop) {}
        })
        .unwrap();
    let mut ping = Some(ping);
    let mut seq = 0u64;
    g.bench_function(name, |b| {
        let p = ping.as_mut().unwrap();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                seq += 1;
                p.round_trip(seq);
            }
            start.elapsed() / 2
        })
    });
    stop.store(true, Ordering::Relaxed);
    drop(ping); // ends a blocking echo's `recv`
    handle.join().unwrap();
}

fn cross_thread(c: &mut Criterion) {
    // Read once, before anything is pinned (design brief section 8's pitfall).
    let cores = available_cores();
    let (ping_core, echo_core) = match cores.as_slice() {
        [a, b, ..] => (Some(*a), Some(*b)),
        _ => {
            eprintln!("ring_cross_thread: fewer than 2 cores available ({cores:?}); threads unpinned");
            (None, None)
        }
    };
    eprintln!("ring_cross_thread: ping on core {ping_core:?}, echo on core {echo_core:?}");
    if let Some(core) = ping_core {
        confine_current_thread(&[core]);
    }
    let mut g = c.benchmark_group("ring_cross_thread");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(50);
    ping_pong(&mut g, "floor", floor_pair(), echo_core);
    ping_pong(&mut g, "rtrb", rtrb_pair(), echo_core);
    ping_pong(&mut g, "crossbeam_array_queue", array_queue_pair(), echo_core);
    ping_pong(&mut g, "std_mpsc_sync_channel", mpsc_pair(false), echo_core);
    ping_pong(&mut g, "std_mpsc_sync_channel_blocking", mpsc_pair(true), echo_core);
    // The floor again at the end: on a shared VM it drifts, and two readings show by how much.
    ping_pong(&mut g, "floor_again", floor_pair(), echo_core);
    g.finish();
    if ping_core.is_some() {
        confine_current_thread(&cores);
    }
}

/// One block of `trips` round trips on a fresh pair, after a short warm-up; one way, ns.
fn block<P: Ping, E: Echo>((mut ping, mut echo): (P, E), echo_core: Option<usize>, trips: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        if let Some(core) = echo_core {
            confine_current_thread(&[core]);
        }
        while echo.echo(&echo_stop) {}
    });
    for seq in 1..=trips / 10 {
        ping.round_trip(seq);
    }
    let start = Instant::now();
    for seq in trips / 10 + 1..=trips / 10 + trips {
        ping.round_trip(seq);
    }
    let one_way = start.elapsed().as_nanos() as f64 / trips as f64 / 2.0;
    stop.store(true, Ordering::Relaxed);
    drop(ping);
    handle.join().unwrap();
    one_way
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `ring_interleaved`: the cross-thread hops again, outside Criterion, in blocks taken in turn
/// (floor, rtrb, crossbeam, mpsc; `ROUNDS` times), so that the host's drift (vCPUs moved
/// between physical cores) hits every transport alike. Prints each transport's median one-way
/// time and, the figure to quote, the median over rounds of its ratio to that round's floor.
/// Runs unless a Criterion filter is given that does not match its name.
fn interleaved(_: &mut Criterion) {
    const ROUNDS: usize = 21;
    const TRIPS: u64 = 20_000;
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "ring_interleaved".contains(f.as_str())) {
        return;
    }
    let cores = available_cores();
    let (ping_core, echo_core) = match cores.as_slice() {
        [a, b, ..] => (Some(*a), Some(*b)),
        _ => (None, None),
    };
    if let Some(core) = ping_core {
        confine_current_thread(&[core]);
    }
    let names = ["floor", "rtrb", "crossbeam_array_queue", "std_mpsc_sync_channel"];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        ns[0].push(block(floor_pair(), echo_core, TRIPS));
        ns[1].push(block(rtrb_pair(), echo_core, TRIPS));
        ns[2].push(block(array_queue_pair(), echo_core, TRIPS));
        ns[3].push(block(mpsc_pair(false), echo_core, TRIPS));
    }
    if ping_core.is_some() {
        confine_current_thread(&cores);
    }
    println!(
        "ring_interleaved: {ROUNDS} rounds x {TRIPS} round trips per transport, ping core {ping_core:?}, echo core {echo_core:?}"
    );
    println!(
        "ring_interleaved: transport                 one-way ns (min / median / max)   x floor (median of per-round ratios)"
    );
    for (i, name) in names.iter().enumerate() {
        let mut ratios: Vec<f64> = ns[i].iter().zip(&ns[0]).map(|(t, f)| t / f).collect();
        let ratio = median(&mut ratios);
        let mut v = ns[i].clone();
        let med = median(&mut v);
        println!(
            "ring_interleaved: {name:<25} {:>8.1} / {med:>8.1} / {:>8.1}   {ratio:>6.2}",
            v[0],
            v[v.len() - 1]
        );
    }
}

criterion_group!(benches, same_thread, cross_thread, interleaved);
criterion_main!(benches);
