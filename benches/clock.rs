//! What measuring costs: a timestamp, an HdrHistogram record, and the pair a stage pays per
//! order (read the clock, record now − the order's stamp).
//! - `timestamp`: `Instant::now()`, the project's clocks (`maxx_hot::clock::mono_ns`,
//!   `wall_ns`, `SystemClock::stamp`) and, on x86_64, a raw `rdtsc` (the project has no TSC
//!   clock yet: this is what one would pay before converting ticks to ns);
//! - `histogram`: `record` and `saturating_record` into the project's latency histogram
//!   (`maxx_hot::stage::exec::latency_histogram`), values cycling over a realistic spread;
//! - `timestamp_plus_record`: the per-order overhead, each clock followed by a
//!   `saturating_record` of its elapsed value.
//!
//! Run with `cargo bench --bench clock`; record the command, toolchain, CPU and tuning state
//! with any figure you quote (benches/RESULTS.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use maxx_hot::clock::{Clock, SystemClock, mono_ns, wall_ns};
use maxx_hot::stage::exec::latency_histogram;

/// Latencies (ns) from 300 ns to ~1 ms, so records land in different buckets as they would.
fn values() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            300 + (x % 4096) * (1 + (x >> 60))
        })
        .collect()
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no preconditions on x86_64; it reads the time-stamp counter.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

fn timestamp(c: &mut Criterion) {
    let mut g = c.benchmark_group("timestamp");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    g.bench_function("maxx_mono_ns", |b| b.iter(mono_ns));
    g.bench_function("maxx_wall_ns", |b| b.iter(wall_ns));
    let clock = SystemClock;
    g.bench_function("maxx_system_clock_stamp", |b| b.iter(|| black_box(&clock).stamp()));
    #[cfg(target_arch = "x86_64")]
    g.bench_function("rdtsc_raw", |b| b.iter(rdtsc));
    g.finish();
}

fn histogram(c: &mut Criterion) {
    let values = values();
    let mut g = c.benchmark_group("histogram");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    let mut h = latency_histogram();
    let mut i = 0usize;
    g.bench_function("record", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            h.record(black_box(values[i])).unwrap()
        })
    });
    let mut h = latency_histogram();
    g.bench_function("saturating_record", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            h.saturating_record(black_box(values[i]))
        })
    });
    g.finish();
}

fn timestamp_plus_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("timestamp_plus_record");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    // Each iteration reads the clock once and records the time since the previous read (an
    // order's age, in the small-latency buckets a hot path fills), as a stage does per order.
    let mut h = latency_histogram();
    let mut last = Instant::now();
    g.bench_function("instant_now", |b| {
        b.iter(|| {
            let now = Instant::now();
            h.saturating_record(now.duration_since(last).as_nanos() as u64);
            last = now;
        })
    });
    let mut h = latency_histogram();
    let mut last = mono_ns();
    g.bench_function("maxx_mono_ns", |b| {
        b.iter(|| {
            let now = mono_ns();
            h.saturating_record(now.saturating_sub(last).max(1));
            last = now;
        })
    });
    #[cfg(target_arch = "x86_64")]
    {
        let mut h = latency_histogram();
        let mut last = rdtsc();
        // Ticks, not ns: a TSC clock would scale by a calibrated factor (one multiply and shift).
        g.bench_function("rdtsc_raw", |b| {
            b.iter(|| {
                let now = rdtsc();
                h.saturating_record(now.wrapping_sub(last).max(1));
                last = now;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, timestamp, histogram, timestamp_plus_record);
criterion_main!(benches);
