//! Stream publish rate: the publisher's pipelined batches against one `XADD` per round trip,
//! and against `redis-benchmark -P 16` doing `XADD` on the same server in the same run.
//!
//! - **pipelined**: [`Publisher`] with batches of up to 256 entries, the configuration `maxx
//!   run` uses. Entries are real `ticks:<symbol>` entries (key, ts, price, volume, venue,
//!   recv_ts, side, seq) built beforehand; the clock runs from the first `try_publish` until
//!   Redis has acknowledged the last entry.
//! - **one per round trip**: the same publisher with `batch = 1`: each `XADD` waits for its
//!   reply before the next is sent. Only the pipelining differs.
//! - **redis-benchmark**: `redis-benchmark -P 16 -c 1` (one connection, as the publisher has)
//!   and `-P 16 -c 50` (its default client count), `XADD` with the same fields and `*` ids.
//!
//! Each target runs [`ROUNDS`] times in alternation on a private `redis-server` (flushed between
//! runs); the median rate is reported with the ratios pipelined / one-per-round-trip (target
//! at least 5) and pipelined / redis-benchmark (target at least 0.5).
//!
//! Run with `cargo bench -p maxx-cold --bench bus_publish` (`BUS_PUBLISH_N=N` entries per
//! pipelined run, default 200000; the round-trip runs use a fifth of that).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::RedisServer;
use maxx_cold::bus::Entry;
use maxx_cold::bus::entry::EntryBuilder;
use maxx_cold::bus::publish::{Publisher, PublisherConfig, Retention};
use maxx_cold::taps::Record;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue};
use maxx_hot::records::{Side, Stamp, Tick, TickBody};

/// Runs per target.
const ROUNDS: usize = 3;
/// 2026-01-01T00:00:00Z in ns.
const T0: u64 = 1_767_225_600_000_000_000;

fn entries(n: usize) -> Vec<Entry> {
    let index = InstrumentIndex::new([
        (Symbol::new("BTCUSDT").unwrap(), [None; Venue::COUNT]),
        (Symbol::new("ETHUSDT").unwrap(), [None; Venue::COUNT]),
    ])
    .unwrap();
    let mut b = EntryBuilder::new("bench", &index).unwrap();
    (0..n as u64)
        .map(|i| {
            let ts = T0 + i * 250_000;
            let tick = Tick {
                instrument: InstrumentId((i % 2) as u16),
                venue: Venue::Binance,
                body: TickBody::Trade {
                    price: "97000.5".parse().unwrap(),
                    qty: "0.012".parse().unwrap(),
                    aggressor: Side::Buy,
                },
                seq: 1_000_000 + i,
                exchange_ns: ts,
                recv_ns: ts + 300_000,
                stamp: Stamp(0),
            };
            b.record(&Record::Tick(tick)).unwrap().unwrap()
        })
        .collect()
}

fn flush(server: &RedisServer) {
    let mut c = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
}

/// Entries per second through a publisher with batches of `batch`.
fn publisher_rate(rt: &tokio::runtime::Runtime, server: &RedisServer, entries: &[Entry], batch: usize) -> f64 {
    flush(server);
    rt.block_on(async {
        let p = Publisher::spawn(PublisherConfig {
            endpoint: server.url().into(),
            queue: entries.len(),
            batch,
            retention: Retention {
                ticks: None,
                ..Retention::default()
            },
            ..PublisherConfig::default()
        })
        .unwrap();
        // The clock includes connecting (the writer connects on its first batch): about a
        // millisecond, noise against runs of tens of thousands of entries.
        let start = Instant::now();
        for e in entries {
            p.try_publish(e.clone());
        }
        let n = entries.len() as u64;
        let deadline = start + Duration::from_secs(600);
        while p.stats().acknowledged() < n {
            assert!(Instant::now() < deadline, "publisher stalled");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(p.stats().written.load(std::sync::atomic::Ordering::Relaxed), n);
        p.close().await;
        n as f64 / secs
    })
}

/// Requests per second `redis-benchmark` reports for the same `XADD`.
fn redis_benchmark_rate(server: &RedisServer, sample: &Entry, n: usize, clients: usize) -> (f64, String) {
    flush(server);
    let mut args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &server.port.to_string(),
        "-n",
        &n.to_string(),
        "-P",
        "16",
        "-c",
        &clients.to_string(),
        "-q",
        "XADD",
        "bench:rb",
        "*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in &sample.fields {
        args.push(k.clone());
        args.push(v.clone());
    }
    let out = Command::new("redis-benchmark")
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-benchmark ({e}): install the redis-tools package"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // `-q` prints `XADD …: 123456.79 requests per second, p50=…`, after progress lines
    // separated by carriage returns.
    let rate = text
        .split(['\r', '\n'])
        .filter_map(|l| {
            l.split(" requests per second")
                .next()
                .filter(|_| l.contains(" requests per second"))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("unexpected redis-benchmark output: {text:?}"));
    (rate, format!("redis-benchmark {}", args.join(" ")))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("BUS_PUBLISH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = entries(n);
    let few = &all[..n / 5];

    let (mut piped, mut single, mut rb1, mut rb50) = (vec![], vec![], vec![], vec![]);
    let mut commands = (String::new(), String::new());
    for _ in 0..ROUNDS {
        piped.push(publisher_rate(&rt, &server, &all, 256));
        single.push(publisher_rate(&rt, &server, few, 1));
        let (r, c) = redis_benchmark_rate(&server, &all[0], n, 1);
        rb1.push(r);
        commands.0 = c;
        let (r, c) = redis_benchmark_rate(&server, &all[0], n, 50);
        rb50.push(r);
        commands.1 = c;
    }
    let (piped, single, rb1, rb50) = (median(piped), median(single), median(rb1), median(rb50));

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let version = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    println!(
        "bus_publish: {n} tick entries per pipelined run, {} per round-trip run, median of {ROUNDS}",
        few.len()
    );
    println!(
        "cpu: {cpu} ({} threads available)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!("{}", version("rustc", "-V"));
    println!("{}", version("redis-server", "--version"));
    println!("pipelined (batch 256):      {piped:>12.0} entries/s");
    println!("one XADD per round trip:    {single:>12.0} entries/s");
    println!("redis-benchmark -P 16 -c 1: {rb1:>12.0} requests/s   ({})", commands.0);
    println!("redis-benchmark -P 16 -c 50:{rb50:>12.0} requests/s   ({})", commands.1);
    println!(
        "ratio pipelined / one per round trip: {:.2} (target >= 5)",
        piped / single
    );
    println!(
        "ratio pipelined / redis-benchmark -P 16 -c 1:  {:.2} (target >= 0.5)",
        piped / rb1
    );
    println!("ratio pipelined / redis-benchmark -P 16 -c 50: {:.2}", piped / rb50);
}
