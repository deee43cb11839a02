//! The stream publisher against a real `redis-server`: stream contents and schemas, writing
//! the same entries twice (same publisher, and a new one as after a process restart), and a
//! SIGKILLed Redis while ticks, orders and fills flow.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::RedisServer;
use maxx_cold::bus::Entry;
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::entry::{EntryBuilder, PnlSnapshot, StreamKind};
use maxx_cold::bus::publish::{MemorySpill, Outcome, Publisher, PublisherConfig, Retention, Spill};
use maxx_cold::taps::Record;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue};
use maxx_hot::records::{
    ExecReport, FAMILIES, Factor, Fill, Liquidity, Order, OrderId, OrderKind, Origin, Side, Signal, SignalSide, Stamp,
    Tick, TickBody, Tif, Touch,
};

/// 2026-01-01T00:00:00Z in ns.
const T0: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;
/// Generous: a slow shared machine must not fail a correct publisher.
const DEADLINE: Duration = Duration::from_secs(60);

fn index() -> InstrumentIndex {
    InstrumentIndex::new([
        (Symbol::new("BTCUSDT").unwrap(), [None; Venue::COUNT]),
        (Symbol::new("ETHUSDT").unwrap(), [None; Venue::COUNT]),
    ])
    .unwrap()
}

fn trade(instrument: u16, seq: u64, ts: u64) -> Record {
    Record::Tick(Tick {
        instrument: InstrumentId(instrument),
        venue: Venue::Binance,
        body: TickBody::Trade {
            price: "97000.5".parse().unwrap(),
            qty: "0.012".parse().unwrap(),
            aggressor: if seq.is_multiple_of(2) { Side::Buy } else { Side::Sell },
        },
        seq,
        exchange_ns: ts,
        recv_ns: ts + 300_000,
        stamp: Stamp(0),
    })
}

fn quote(ts: u64) -> Record {
    Record::Tick(Tick {
        instrument: InstrumentId(0),
        recv_ns: ts,
        ..Tick::EMPTY
    })
}

fn signal(instrument: u16, ts: u64) -> Record {
    Record::Signal(Signal {
        instrument: InstrumentId(instrument),
        score: "0.25".parse().unwrap(),
        side: SignalSide::Buy,
        confidence: "0.5".parse().unwrap(),
        mix: [Factor::ZERO; FAMILIES],
        ts_ns: ts,
        tick_seq: 1,
        stamp: Stamp(0),
    })
}

fn order(id: u64, ts: u64) -> Record {
    Record::Order(Order {
        id: OrderId(id),
        instrument: InstrumentId((id % 2) as u16),
        venue: Venue::Bybit,
        side: Side::Buy,
        qty: "0.5".parse().unwrap(),
        kind: if id.is_multiple_of(3) {
            OrderKind::Market
        } else {
            OrderKind::Limit("96999.25".parse().unwrap())
        },
        tif: Tif::Gtc,
        pin_venue: true,
        touch: Touch::default(),
        origin: Origin::Manual,
        client_id: id,
        mix: [Factor::ZERO; FAMILIES],
        reduce_only: false,
        ts_ns: ts,
        stamp: Stamp(0),
    })
}

fn fill(order_id: u64, ts: u64) -> Record {
    Record::Report(ExecReport::Fill(Fill {
        order_id: OrderId(order_id),
        instrument: InstrumentId((order_id % 2) as u16),
        venue: Venue::Bybit,
        side: Side::Buy,
        price: "96999.25".parse().unwrap(),
        qty: "0.5".parse().unwrap(),
        fee: "0.0275".parse().unwrap(),
        liquidity: Liquidity::Taker,
        last: true,
        ts_ns: ts,
    }))
}

fn config(url: &str) -> PublisherConfig {
    PublisherConfig {
        endpoint: RedisEndpoint {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(200),
            ..RedisEndpoint::new(url)
        },
        batch: 16,
        ..PublisherConfig::default()
    }
}

/// A short run's worth of entries: every stream, two symbols, several entries sharing a
/// millisecond, and records that no stream carries (a quote, a reject).
fn short_run() -> Vec<Entry> {
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let mut records = Vec::new();
    for i in 0..20u64 {
        let ts = T0 + i * MS / 2;
        records.push(trade((i % 2) as u16, 1000 + i, ts));
        records.push(quote(ts));
        records.push(signal((i % 2) as u16, ts));
        if i.is_multiple_of(4) {
            records.push(order(i, ts));
            records.push(fill(i, ts + 10));
        }
    }
    records.push(Record::Report(ExecReport::Reject {
        order_id: OrderId(99),
        instrument: InstrumentId(0),
        side: Side::Buy,
        qty: "1".parse().unwrap(),
        reason: maxx_hot::records::RejectReason::VenueReject,
    }));
    let mut entries: Vec<Entry> = records.iter().filter_map(|r| b.record(r).unwrap()).collect();
    entries.push(
        b.pnl(&PnlSnapshot {
            ts_ns: T0 + 10 * MS,
            equity: "10000.5".parse().unwrap(),
            realized: "1.25".parse().unwrap(),
            unrealized: "-0.75".parse().unwrap(),
        })
        .unwrap(),
    );
    entries
}

/// Every entry of `stream`, as `(id, fields)`.
fn read_stream(url: &str, stream: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_connection()
        .expect("connect to redis");
    let raw: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .expect("XRANGE");
    raw.into_iter()
        .map(|(id, flat)| {
            let fields = flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
            (id, fields)
        })
        .collect()
}

/// The entries of `stream` among `entries`, in order, as Redis should hold them.
fn expected(entries: &[Entry], stream: &str) -> Vec<(String, Vec<(String, String)>)> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| (e.id.clone(), e.fields.clone()))
        .collect()
}

fn streams(entries: &[Entry]) -> Vec<String> {
    let mut s: Vec<String> = entries.iter().map(|e| e.stream.clone()).collect();
    s.sort();
    s.dedup();
    s
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_hold_every_entry_with_its_schema() {
    let server = RedisServer::start();
    let entries = short_run();
    let p = Publisher::spawn(config(&server.url())).unwrap();
    for e in &entries {
        assert_eq!(p.try_publish(e.clone()), Outcome::Queued);
    }
    let n = entries.len() as u64;
    wait_until("every entry is acknowledged", || p.stats().acknowledged() == n).await;
    assert_eq!(p.stats().written.load(Ordering::Relaxed), n);
    assert_eq!(p.stats().errors.load(Ordering::Relaxed), 0);
    assert!(p.stats().connected.load(Ordering::Relaxed));

    assert_eq!(
        streams(&entries),
        [
            "fills",
            "orders",
            "pnl",
            "signals:BTCUSDT",
            "signals:ETHUSDT",
            "ticks:BTCUSDT",
            "ticks:ETHUSDT"
        ]
    );
    for stream in streams(&entries) {
        assert_eq!(
            read_stream(&server.url(), &stream),
            expected(&entries, &stream),
            "{stream}"
        );
    }

    // The schemas, field by field, as a consumer sees them.
    let names = |stream: &str| -> Vec<String> {
        read_stream(&server.url(), stream)[0]
            .1
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    };
    assert_eq!(
        names("ticks:BTCUSDT"),
        ["key", "ts", "price", "volume", "venue", "recv_ts", "side", "seq"]
    );
    assert_eq!(names("signals:ETHUSDT"), ["key", "ts", "score", "side", "confidence"]);
    assert_eq!(
        names("orders"),
        [
            "key", "ts", "id", "symbol", "qty", "side", "venue", "type", "price", "tif", "origin"
        ]
    );
    assert_eq!(
        names("fills"),
        [
            "key",
            "ts",
            "order_id",
            "price",
            "fee",
            "qty",
            "side",
            "symbol",
            "venue",
            "liquidity"
        ]
    );
    assert_eq!(names("pnl"), ["key", "ts", "equity", "realized", "unrealized"]);
    let first_fill = &read_stream(&server.url(), "fills")[0];
    assert_eq!(first_fill.0, "1767225600000-0");
    let value = |k: &str| first_fill.1.iter().find(|(f, _)| f == k).unwrap().1.clone();
    assert_eq!(value("ts"), "1767225600000000010");
    assert_eq!(value("price"), "96999.25");
    assert_eq!(value("fee"), "0.0275");
    assert_eq!(value("liquidity"), "taker");
    let key = value("key");
    assert_eq!(key.len(), 36);
    assert_eq!(&key[14..15], "7", "UUIDv7");
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_entries_published_twice_are_written_once() {
    let server = RedisServer::start();
    let entries = short_run();
    let n = entries.len() as u64;

    let p = Publisher::spawn(config(&server.url())).unwrap();
    for e in &entries {
        p.try_publish(e.clone());
    }
    wait_until("the first pass is acknowledged", || p.stats().acknowledged() == n).await;
    // Again through the same publisher, as after a lost reply or a reconnect.
    for e in &entries {
        p.try_publish(e.clone());
    }
    wait_until("the second pass is acknowledged", || p.stats().acknowledged() == 2 * n).await;
    assert_eq!(p.stats().written.load(Ordering::Relaxed), n);
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), n);
    p.close().await;

    // Again through a new publisher, as after a process restart replaying what it had.
    let p = Publisher::spawn(config(&server.url())).unwrap();
    for e in &entries {
        p.try_publish(e.clone());
    }
    wait_until("the replay is acknowledged", || p.stats().acknowledged() == n).await;
    assert_eq!(p.stats().written.load(Ordering::Relaxed), 0);
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), n);
    assert_eq!(p.stats().errors.load(Ordering::Relaxed), 0);
    p.close().await;

    for stream in streams(&entries) {
        assert_eq!(
            read_stream(&server.url(), &stream),
            expected(&entries, &stream),
            "{stream}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_market_data_and_keeps_fills() {
    let server = RedisServer::start();
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let mut entries = Vec::new();
    for i in 0..2000u64 {
        entries.push(b.record(&trade(0, i, T0 + i * MS)).unwrap().unwrap());
        if i.is_multiple_of(4) {
            entries.push(b.record(&fill(i, T0 + i * MS)).unwrap().unwrap());
        }
    }
    let mut cfg = config(&server.url());
    cfg.queue = entries.len();
    cfg.retention = Retention {
        ticks: Some(100),
        fills: None,
        ..Retention::default()
    };
    let p = Publisher::spawn(cfg).unwrap();
    for e in &entries {
        assert_eq!(p.try_publish(e.clone()), Outcome::Queued);
    }
    let n = entries.len() as u64;
    wait_until("every entry is acknowledged", || p.stats().acknowledged() == n).await;
    let ticks = read_stream(&server.url(), "ticks:BTCUSDT");
    // `MAXLEN ~ 100` trims whole nodes (100 entries each by default): at least 100 stay, the
    // newest, and far fewer than 2000.
    assert!((100..=300).contains(&ticks.len()), "{} ticks kept", ticks.len());
    assert_eq!(
        ticks.last().unwrap().0,
        entries.iter().rev().find(|e| e.stream == "ticks:BTCUSDT").unwrap().id
    );
    assert_eq!(read_stream(&server.url(), "fills"), expected(&entries, "fills"));
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_loses_no_order_or_fill() {
    let mut server = RedisServer::start_durable();
    let url = server.url();
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let mut cfg = config(&url);
    // A small queue so that the outage fills it: ticks are shed, orders and fills spill.
    cfg.queue = 64;
    let p = Publisher::spawn(cfg).unwrap();

    let mut sent: Vec<Entry> = Vec::new();
    let mut shed_ticks = 0u64;
    let mut i = 0u64;
    let mut publish = |p: &Publisher, sent: &mut Vec<Entry>, shed: &mut u64, i: &mut u64| {
        let ts = T0 + *i * MS / 4;
        let mut records = vec![trade((*i % 2) as u16, *i, ts)];
        if (*i).is_multiple_of(3) {
            records.push(order(*i, ts));
            records.push(fill(*i, ts + 1));
        }
        for r in records {
            let e = b.record(&r).unwrap().unwrap();
            match p.try_publish(e.clone()) {
                Outcome::Shed => *shed += 1,
                Outcome::Queued | Outcome::Spilled => sent.push(e),
                Outcome::Oversized => panic!("an engine entry is never oversized: {e:?}"),
            }
        }
        *i += 1;
    };

    // Before the outage: a first stretch, all acknowledged (and so on disk).
    for _ in 0..300 {
        publish(&p, &mut sent, &mut shed_ticks, &mut i);
    }
    let before = sent.len() as u64;
    wait_until("entries before the outage are acknowledged", || {
        p.stats().acknowledged() == before
    })
    .await;

    // The outage: SIGKILL, ten seconds down while ticks, orders and fills keep coming.
    server.kill();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        publish(&p, &mut sent, &mut shed_ticks, &mut i);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        p.stats().errors.load(Ordering::Relaxed) > 0,
        "the outage went unnoticed"
    );
    assert!(p.stats().spilled.load(Ordering::Relaxed) > 0, "the queue never filled");
    assert!(shed_ticks > 0);
    assert_eq!(p.stats().shed(StreamKind::Ticks), shed_ticks);
    assert_eq!(
        p.stats().shed(StreamKind::Orders) + p.stats().shed(StreamKind::Fills),
        0
    );

    // Back up, with what it had acknowledged; more entries after the restart.
    server.restart();
    for _ in 0..300 {
        publish(&p, &mut sent, &mut shed_ticks, &mut i);
    }
    let total = sent.len() as u64;
    wait_until("every queued or spilled entry is acknowledged", || {
        p.stats().acknowledged() == total
    })
    .await;
    assert!(p.stats().reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(p.stats().refused.load(Ordering::Relaxed), 0);
    assert_eq!(p.stats().spill_depth.load(Ordering::Relaxed), 0);
    assert_eq!(p.stats().queue_depth.load(Ordering::Relaxed), 0);

    // Every order and fill exactly once, in order, as published; every tick not shed too.
    for stream in ["orders", "fills", "ticks:BTCUSDT", "ticks:ETHUSDT"] {
        let got = read_stream(&url, stream);
        let want = expected(&sent, stream);
        assert_eq!(got.len(), want.len(), "{stream}: entry count");
        assert_eq!(got, want, "{stream}");
    }
    let orders = read_stream(&url, "orders");
    assert_eq!(orders.len() as u64, i.div_ceil(3));
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_from_before_is_published_first_and_in_order() {
    let server = RedisServer::start();
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let entries: Vec<Entry> = (0..200u64)
        .flat_map(|i| [order(i, T0 + i * MS), fill(i, T0 + i * MS)])
        .map(|r| b.record(&r).unwrap().unwrap())
        .collect();
    // The first 150 wait in a spill (as a journal holds them after a crash); the queue holds
    // fewer than that, so some of them are still spilled when the rest are published.
    let mut spill = MemorySpill::default();
    for e in &entries[..150] {
        spill.push(e.clone());
    }
    let mut cfg = config(&server.url());
    cfg.queue = 32;
    let p = Publisher::spawn_with_spill(cfg, Box::new(spill)).unwrap();
    for e in &entries[150..] {
        assert_ne!(p.try_publish(e.clone()), Outcome::Shed);
    }
    let n = entries.len() as u64;
    wait_until("every entry is acknowledged", || p.stats().acknowledged() == n).await;
    assert_eq!(p.stats().written.load(Ordering::Relaxed), n);
    for stream in ["orders", "fills"] {
        assert_eq!(
            read_stream(&server.url(), stream),
            expected(&entries, stream),
            "{stream}"
        );
    }
    p.close().await;
}

/// A reply that never comes: Redis holds the batch (`CLIENT PAUSE … WRITE`) past the response
/// timeout, so the publisher gives the connection up and sends the batch again on a new one
/// (the same batch each time, as long as the pause lasts); when the pause ends the stream holds
/// every entry once, in order. (Redis drops the commands of a closed connection unexecuted, so
/// here the re-send is what lands; an earlier copy that did land is the duplicate case of
/// `the_same_entries_published_twice_are_written_once`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_is_sent_again_without_a_second_entry() {
    let server = RedisServer::start();
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let entries: Vec<Entry> = (0..40u64)
        .map(|i| b.record(&order(i, T0 + i * MS)).unwrap().unwrap())
        .collect();
    let mut cfg = config(&server.url());
    cfg.endpoint.response_timeout = Duration::from_millis(300);
    let p = Publisher::spawn(cfg).unwrap();
    p.try_publish(entries[0].clone());
    wait_until("the first entry is written", || p.stats().acknowledged() == 1).await;

    let mut admin = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    for e in &entries[1..] {
        p.try_publish(e.clone());
    }
    wait_until("the publisher gives the held batch up", || {
        p.stats().errors.load(Ordering::Relaxed) >= 1
    })
    .await;
    let n = entries.len() as u64;
    wait_until("every entry is acknowledged", || p.stats().acknowledged() == n).await;
    assert!(p.stats().reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(read_stream(&server.url(), "orders"), expected(&entries, "orders"));
    p.close().await;
}

fn admin(server: &RedisServer, args: &[&str]) {
    let mut c = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query(&mut c).unwrap();
}

/// A Redis out of memory refuses every write (`OOM`): the publisher keeps the entries, counts
/// the errors, and writes them all, in order, once memory is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_out_of_memory_delays_entries_and_loses_none() {
    let server = RedisServer::start();
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let entries: Vec<Entry> = (0..50u64)
        .flat_map(|i| [order(i, T0 + i * MS), fill(i, T0 + i * MS)])
        .map(|r| b.record(&r).unwrap().unwrap())
        .collect();
    admin(&server, &["CONFIG", "SET", "maxmemory", "1"]);
    let p = Publisher::spawn(config(&server.url())).unwrap();
    for e in &entries {
        assert_eq!(p.try_publish(e.clone()), Outcome::Queued);
    }
    wait_until("the refusals are counted", || {
        p.stats().errors.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(p.stats().acknowledged(), 0);
    assert_eq!(p.stats().refused.load(Ordering::Relaxed), 0);

    admin(&server, &["CONFIG", "SET", "maxmemory", "0"]);
    let n = entries.len() as u64;
    wait_until("every entry is acknowledged", || p.stats().acknowledged() == n).await;
    assert_eq!(p.stats().written.load(Ordering::Relaxed), n);
    for stream in ["orders", "fills"] {
        assert_eq!(
            read_stream(&server.url(), stream),
            expected(&entries, stream),
            "{stream}"
        );
    }
    p.close().await;
}

/// A key that is not a stream (`WRONGTYPE`) can never take the entry: it is dropped and
/// counted as refused, and the other streams are written as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_redis_can_never_take_is_refused_and_counted() {
    let server = RedisServer::start();
    admin(&server, &["SET", "fills", "not a stream"]);
    let mut b = EntryBuilder::new("test", &index()).unwrap();
    let entries: Vec<Entry> = (0..10u64)
        .flat_map(|i| [order(i, T0 + i * MS), fill(i, T0 + i * MS)])
        .map(|r| b.record(&r).unwrap().unwrap())
        .collect();
    let p = Publisher::spawn(config(&server.url())).unwrap();
    for e in &entries {
        p.try_publish(e.clone());
    }
    wait_until("every entry is written or refused", || {
        p.stats().written.load(Ordering::Relaxed) == 10 && p.stats().refused.load(Ordering::Relaxed) == 10
    })
    .await;
    assert_eq!(p.stats().errors.load(Ordering::Relaxed), 10);
    assert_eq!(read_stream(&server.url(), "orders"), expected(&entries, "orders"));
    p.close().await;
}
