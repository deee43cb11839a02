//! The typed stream reader against a real `redis-server`: decoding each stream's schema, a
//! consumer group recovering what a killed consumer left pending, garbage entries ending in
//! the dead-letter stream, and reconnecting after the server restarts.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::RedisServer;
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::consume::{Consumer, ConsumerOptions, EntryId, ReadFrom, StreamReader, StreamRecord, decode};
use maxx_hot::ids::Venue;
use maxx_hot::records::{Liquidity, OrderKind, Origin, Side, SignalSide, Tif};
use redis::aio::MultiplexedConnection;

/// How long any condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

const KEY: &str = "019abc12-3456-7def-8123-456789abcdef";

async fn conn(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis")
}

async fn xadd(c: &mut MultiplexedConnection, stream: &str, id: &str, fields: &[(&str, &str)]) {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg(id);
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    let _: String = cmd.query_async(c).await.expect("XADD");
}

fn fill(order_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("key", KEY.to_string()),
        ("ts", "1764151200123456789".to_string()),
        ("order_id", order_id.to_string()),
        ("price", "62650.2".to_string()),
        ("fee", "0.046".to_string()),
        ("qty", "0.001".to_string()),
        ("side", "buy".to_string()),
        ("symbol", "BTCUSDT".to_string()),
        ("venue", "binance".to_string()),
        ("liquidity", "taker".to_string()),
    ]
}

async fn xadd_fill(c: &mut MultiplexedConnection, id: &str, order_id: &str) {
    let f = fill(order_id);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    xadd(c, "fills", id, &pairs).await;
}

fn options() -> ConsumerOptions {
    ConsumerOptions {
        count: 10,
        block: Duration::from_millis(100),
        min_idle: Duration::from_millis(200),
        max_deliveries: 3,
        start: "0".to_string(),
    }
}

/// The server with quick reconnects, so that outages in the tests end soon after Redis is back.
fn endpoint(server: &RedisServer) -> RedisEndpoint {
    RedisEndpoint {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..RedisEndpoint::new(server.url())
    }
}

async fn pending_count(c: &mut MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(c)
        .await
        .expect("XPENDING");
    match reply {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("XPENDING summary: {other:?}"),
        },
        other => panic!("XPENDING summary: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_decodes_to_exact_types() {
    let server = RedisServer::start();
    let mut c = conn(&server).await;
    xadd(
        &mut c,
        "ticks:BTCUSDT",
        "1764151200000-0",
        &[
            ("key", KEY),
            ("ts", "1764151200000111000"),
            ("price", "62650.2"),
            ("volume", "0.5"),
            ("venue", "coinbase"),
            ("recv_ts", "1764151200000222000"),
            ("side", "sell"),
            ("seq", "987654321"),
        ],
    )
    .await;
    xadd(
        &mut c,
        "signals:BTCUSDT",
        "1764151200000-0",
        &[
            ("key", KEY),
            ("ts", "1764151200000222000"),
            ("score", "-0.25"),
            ("side", "sell"),
            ("confidence", "0.75"),
        ],
    )
    .await;
    xadd(
        &mut c,
        "orders",
        "1764151200000-0",
        &[
            ("key", KEY),
            ("ts", "1764151200000222000"),
            ("id", "42"),
            ("symbol", "BTCUSDT"),
            ("qty", "0.001"),
            ("side", "buy"),
            ("venue", "binance"),
            ("type", "limit"),
            ("price", "62650.2"),
            ("tif", "gtc"),
            ("origin", "manual"),
        ],
    )
    .await;
    xadd_fill(&mut c, "1764151200000-0", "42").await;
    xadd(
        &mut c,
        "pnl",
        "1764151200000-0",
        &[
            ("key", KEY),
            ("ts", "1764151200000222000"),
            ("equity", "10000.5"),
            ("realized", "-12.34"),
            ("unrealized", "0"),
        ],
    )
    .await;

    let mut seen = Vec::new();
    for stream in ["ticks:BTCUSDT", "signals:BTCUSDT", "orders", "fills", "pnl"] {
        // The plain reader and a group reader see the same typed entry.
        let mut reader = StreamReader::new(
            endpoint(&server),
            stream,
            ReadFrom::After(EntryId::default()),
            10,
            Duration::from_millis(100),
        )
        .expect("reader");
        let raws = reader.next_batch().await.expect("XREAD");
        assert_eq!(raws.len(), 1, "{stream}: {raws:?}");
        let plain = decode(stream, &raws[0]).unwrap_or_else(|e| panic!("{e}"));
        let mut group = Consumer::new(endpoint(&server), stream, "g", "c1", options())
            .await
            .expect("consumer");
        let batch = group.next_batch().await.expect("XREADGROUP");
        assert!(batch.failures.is_empty(), "{stream}: {:?}", batch.failures);
        assert_eq!(batch.entries, vec![plain], "{stream}");
        assert_eq!(
            plain.id,
            EntryId {
                ms: 1764151200000,
                seq: 0
            }
        );
        assert_eq!(plain.key.to_string(), KEY);
        assert_eq!(group.ack(&[plain.id]).await.expect("XACK"), 1);
        seen.push(plain.record);
    }

    let StreamRecord::Tick(t) = seen[0] else {
        panic!("{:?}", seen[0])
    };
    assert_eq!(t.symbol.as_str(), "BTCUSDT");
    assert_eq!(
        (t.ts, t.recv_ts, t.seq),
        (1764151200000111000, 1764151200000222000, 987654321)
    );
    assert_eq!((t.price.raw(), t.volume.raw()), (6_265_020_000_000, 50_000_000));
    assert_eq!((t.venue, t.side), (Venue::Coinbase, Side::Sell));

    let StreamRecord::Signal(s) = seen[1] else {
        panic!("{:?}", seen[1])
    };
    assert_eq!(
        (s.score.to_string().as_str(), s.confidence.to_string().as_str()),
        ("-0.25", "0.75")
    );
    assert_eq!(s.side, SignalSide::Sell);

    let StreamRecord::Order(o) = seen[2] else {
        panic!("{:?}", seen[2])
    };
    assert_eq!((o.id, o.symbol.as_str(), o.qty.raw()), (42, "BTCUSDT", 100_000));
    assert_eq!(o.kind, OrderKind::Limit("62650.2".parse().expect("price")));
    assert_eq!(
        (o.side, o.venue, o.tif, o.origin),
        (Side::Buy, Venue::Binance, Tif::Gtc, Origin::Manual)
    );

    let StreamRecord::Fill(f) = seen[3] else {
        panic!("{:?}", seen[3])
    };
    assert_eq!(
        (f.order_id, f.price.raw(), f.fee.raw(), f.qty.raw()),
        (42, 6_265_020_000_000, 4_600_000, 100_000)
    );
    assert_eq!(
        (f.side, f.venue, f.liquidity),
        (Side::Buy, Venue::Binance, Liquidity::Taker)
    );

    let StreamRecord::Pnl(p) = seen[4] else {
        panic!("{:?}", seen[4])
    };
    assert_eq!(
        (p.equity.raw(), p.realized.raw(), p.unrealized.raw()),
        (1_000_050_000_000, -1_234_000_000, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumers_pending_entries_are_recovered() {
    let server = RedisServer::start();
    let mut c = conn(&server).await;
    for n in 1..=5 {
        xadd_fill(&mut c, &format!("1764151200000-{n}"), &n.to_string()).await;
    }
    let written: BTreeSet<EntryId> = (1..=5).map(|seq| EntryId { ms: 1764151200000, seq }).collect();

    let mut a = Consumer::new(endpoint(&server), "fills", "portfolio", "a", options())
        .await
        .expect("consumer a");
    let got = a.next_batch().await.expect("a reads");
    assert_eq!(got.entries.iter().map(|e| e.id).collect::<BTreeSet<_>>(), written);
    // Killed before acknowledging anything.
    drop(a);
    assert_eq!(pending_count(&mut c, "fills", "portfolio").await, 5);

    let mut b = Consumer::new(endpoint(&server), "fills", "portfolio", "b", options())
        .await
        .expect("consumer b");
    let mut recovered = BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while recovered != written {
        assert!(Instant::now() < deadline, "b recovered only {recovered:?}");
        let batch = b.next_batch().await.expect("b reads");
        let ids: Vec<EntryId> = batch.entries.iter().map(|e| e.id).collect();
        b.ack(&ids).await.expect("b acks");
        recovered.extend(ids);
    }
    assert_eq!(b.stats().claimed.load(Ordering::Relaxed), 5);
    assert_eq!(pending_count(&mut c, "fills", "portfolio").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_goes_to_the_dead_letter_stream_after_max_deliveries() {
    let server = RedisServer::start();
    let mut c = conn(&server).await;
    xadd_fill(&mut c, "1000-0", "1").await;
    xadd(&mut c, "fills", "1000-1", &[("hello", "world")]).await;
    xadd_fill(&mut c, "1000-2", "2").await;
    let mut bad_price = fill("3");
    bad_price[3].1 = "sixty".to_string();
    let pairs: Vec<(&str, &str)> = bad_price.iter().map(|(k, v)| (*k, v.as_str())).collect();
    xadd(&mut c, "fills", "1000-3", &pairs).await;
    xadd_fill(&mut c, "1000-4", "4").await;

    let mut consumer = Consumer::new(endpoint(&server), "fills", "portfolio", "p", options())
        .await
        .expect("consumer");
    let mut good = BTreeSet::new();
    let mut failures = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let dead: i64 = redis::cmd("XLEN")
            .arg("fills:dead")
            .query_async(&mut c)
            .await
            .expect("XLEN");
        if dead == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-letter stream holds {dead}; failures so far {failures:?}"
        );
        let batch = consumer.next_batch().await.expect("next batch");
        let ids: Vec<EntryId> = batch.entries.iter().map(|e| e.id).collect();
        consumer.ack(&ids).await.expect("ack");
        good.extend(ids);
        failures.extend(batch.failures);
    }
    let expected: BTreeSet<EntryId> = [0, 2, 4].map(|seq| EntryId { ms: 1000, seq }).into();
    assert_eq!(good, expected, "good entries are delivered and acknowledged");
    assert_eq!(pending_count(&mut c, "fills", "portfolio").await, 0);

    // Each garbage entry failed once per delivery, the last of which moved it.
    let of = |id: &str| {
        failures
            .iter()
            .filter(|f| f.raw.id == id)
            .map(|f| f.deliveries)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("1000-1"), [1, 2, 3]);
    assert_eq!(of("1000-3"), [1, 2, 3]);
    assert!(failures.iter().all(|f| f.dead_lettered == (f.deliveries == 3)));
    let stats = consumer.stats();
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 2);

    let mut reader = StreamReader::new(
        endpoint(&server),
        "fills:dead",
        ReadFrom::After(EntryId::default()),
        10,
        Duration::from_millis(100),
    )
    .expect("reader");
    let dead = reader.next_batch().await.expect("read dead letters");
    assert_eq!(dead.len(), 2);
    let field = |i: usize, name: &str| -> String {
        dead[i]
            .fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| panic!("dead letter {i} has no {name}: {:?}", dead[i]))
    };
    assert_eq!(field(0, "source_id"), "1000-1");
    assert_eq!(field(0, "hello"), "world");
    assert_eq!(field(0, "error"), "fills entry 1000-1: unknown field `hello`");
    assert_eq!(field(1, "source_id"), "1000-3");
    assert_eq!(field(1, "order_id"), "3");
    assert!(
        field(1, "error").starts_with("fills entry 1000-3: field `price`: \"sixty\" is not a decimal"),
        "{}",
        field(1, "error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start();
    let mut c = conn(&server).await;
    xadd_fill(&mut c, "1000-0", "1").await;
    let mut consumer = Consumer::new(endpoint(&server), "fills", "portfolio", "p", options())
        .await
        .expect("consumer");
    let first = consumer.next_batch().await.expect("before the restart");
    assert_eq!(first.entries.len(), 1);
    consumer.ack(&[first.entries[0].id]).await.expect("ack");

    server.kill();
    let stats = consumer.stats();
    // The read runs while the server is down and must ride out the outage on its own.
    let reading = tokio::spawn(async move {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "nothing read after the restart");
            let batch = consumer.next_batch().await.expect("after the restart");
            if !batch.entries.is_empty() {
                return batch;
            }
        }
    });
    // The server comes back only once the consumer has seen it gone.
    let deadline = Instant::now() + DEADLINE;
    while stats.reconnects.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the consumer never noticed the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stats.connected.load(Ordering::Relaxed));
    server.restart();
    let mut c = conn(&server).await;
    xadd_fill(&mut c, "2000-0", "2").await;
    let batch = reading.await.expect("reader task");
    assert_eq!(
        batch.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        [EntryId { ms: 2000, seq: 0 }]
    );
    assert!(stats.connected.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plain_reader_starts_at_the_end_without_gaps() {
    let server = RedisServer::start();
    let mut c = conn(&server).await;
    xadd_fill(&mut c, "1000-0", "1").await;
    let mut reader = StreamReader::new(
        endpoint(&server),
        "fills",
        ReadFrom::End,
        10,
        Duration::from_millis(100),
    )
    .expect("reader");
    // Resolves `$` to 1000-0; nothing after it yet.
    assert!(reader.next_batch().await.expect("first read").is_empty());
    xadd_fill(&mut c, "2000-0", "2").await;
    xadd_fill(&mut c, "2000-1", "3").await;
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < 2 {
        assert!(Instant::now() < deadline, "read only {got:?}");
        got.extend(reader.next_batch().await.expect("read").into_iter().map(|e| e.id));
    }
    assert_eq!(got, ["2000-0", "2000-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_errors_not_retries() {
    let server = RedisServer::start();
    let mut c = conn(&server).await;
    let _: () = redis::cmd("SET")
        .arg("fills")
        .arg("not a stream")
        .query_async(&mut c)
        .await
        .expect("SET");
    let err = Consumer::new(endpoint(&server), "fills", "g", "c", options())
        .await
        .expect_err("a string key is not a stream");
    assert!(
        err.to_string()
            .starts_with("redis refused XGROUP CREATE on fills: WRONGTYPE"),
        "{err}"
    );

    let err = Consumer::new(endpoint(&server), "trades", "g", "c", options())
        .await
        .expect_err("no schema");
    assert!(err.to_string().contains("has no known schema"), "{err}");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right")
        .query_async(&mut c)
        .await
        .expect("CONFIG SET");
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port);
    let err = Consumer::new(&url, "orders", "g", "c", options())
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(text.contains("refused") && !text.contains(":wrong@"), "{text}");
}

/// The publisher's entries, written to a real server, decode back to the values they came from:
/// the two sides of the schema agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_built_by_the_publisher_decode_to_their_source_values() {
    use maxx_cold::bus::entry::{EntryBuilder, PnlSnapshot};
    use maxx_cold::taps::Record;
    use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol};
    use maxx_hot::records::{ExecReport, FAMILIES, Factor, Fill, Order, OrderId, Signal, Stamp, Tick, TickBody, Touch};

    const T0: u64 = 1_767_225_600_123_456_789;
    let index = InstrumentIndex::new([(Symbol::new("BTCUSDT").expect("symbol"), [None; Venue::COUNT])]).expect("index");
    let mut builder = EntryBuilder::new("main", &index).expect("builder");
    let price = |s: &str| s.parse::<maxx_hot::num::Price>().expect("price");
    let qty = |s: &str| s.parse::<maxx_hot::num::Qty>().expect("qty");
    let records = [
        Record::Tick(Tick {
            instrument: InstrumentId(0),
            venue: Venue::Bybit,
            body: TickBody::Trade {
                price: price("97000.5"),
                qty: qty("0.012"),
                aggressor: Side::Sell,
            },
            seq: 777,
            exchange_ns: T0,
            recv_ns: T0 + 5_000,
            stamp: Stamp(0),
        }),
        Record::Signal(Signal {
            instrument: InstrumentId(0),
            score: Factor::from_num(-0.5),
            side: SignalSide::Sell,
            confidence: Factor::from_num(0.75),
            mix: [Factor::ZERO; FAMILIES],
            ts_ns: T0,
            tick_seq: 777,
            stamp: Stamp(0),
        }),
        Record::Order(Order {
            id: OrderId(41),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side: Side::Buy,
            qty: qty("1.5"),
            kind: OrderKind::Limit(price("97000.25")),
            tif: Tif::PostOnly,
            pin_venue: false,
            touch: Touch::default(),
            origin: Origin::Risk,
            client_id: 0,
            mix: [Factor::ZERO; FAMILIES],
            reduce_only: false,
            ts_ns: T0,
            stamp: Stamp(0),
        }),
        Record::Report(ExecReport::Fill(Fill {
            order_id: OrderId(41),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side: Side::Buy,
            price: price("97000.25"),
            qty: qty("1.5"),
            fee: "-0.0125".parse().expect("fee"),
            liquidity: Liquidity::Maker,
            last: true,
            ts_ns: T0,
        })),
    ];
    let mut entries: Vec<_> = records
        .iter()
        .map(|r| builder.record(r).expect("builds").expect("carried by a stream"))
        .collect();
    entries.push(
        builder
            .pnl(&PnlSnapshot {
                ts_ns: T0,
                equity: "10012.5".parse().expect("equity"),
                realized: "15".parse().expect("realized"),
                unrealized: "-2.5".parse().expect("unrealized"),
            })
            .expect("pnl entry"),
    );

    let server = RedisServer::start();
    let mut c = conn(&server).await;
    let mut decoded = Vec::new();
    for e in &entries {
        let pairs: Vec<(&str, &str)> = e.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        xadd(&mut c, &e.stream, &e.id, &pairs).await;
        let mut reader = StreamReader::new(
            endpoint(&server),
            &e.stream,
            ReadFrom::After(EntryId::default()),
            10,
            Duration::from_millis(100),
        )
        .expect("reader");
        let raws = reader.next_batch().await.expect("XREAD");
        assert_eq!(raws.len(), 1, "{}", e.stream);
        let typed = decode(&e.stream, &raws[0]).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(typed.id.to_string(), e.id);
        assert_eq!(typed.key.to_string(), e.fields[0].1);
        decoded.push(typed.record);
    }

    let StreamRecord::Tick(t) = decoded[0] else {
        panic!("{:?}", decoded[0])
    };
    assert_eq!(
        (t.symbol.as_str(), t.ts, t.recv_ts, t.seq),
        ("BTCUSDT", T0, T0 + 5_000, 777)
    );
    assert_eq!(
        (t.price, t.volume, t.venue, t.side),
        (price("97000.5"), qty("0.012"), Venue::Bybit, Side::Sell)
    );
    let StreamRecord::Signal(s) = decoded[1] else {
        panic!("{:?}", decoded[1])
    };
    assert_eq!(
        (s.ts, s.score, s.side, s.confidence),
        (T0, Factor::from_num(-0.5), SignalSide::Sell, Factor::from_num(0.75))
    );
    let StreamRecord::Order(o) = decoded[2] else {
        panic!("{:?}", decoded[2])
    };
    assert_eq!(
        (o.id, o.ts, o.qty, o.kind),
        (41, T0, qty("1.5"), OrderKind::Limit(price("97000.25")))
    );
    assert_eq!(
        (o.side, o.venue, o.tif, o.origin),
        (Side::Buy, Venue::Binance, Tif::PostOnly, Origin::Risk)
    );
    let StreamRecord::Fill(f) = decoded[3] else {
        panic!("{:?}", decoded[3])
    };
    assert_eq!(
        (f.order_id, f.ts, f.price, f.qty),
        (41, T0, price("97000.25"), qty("1.5"))
    );
    assert_eq!((f.fee.to_string().as_str(), f.liquidity), ("-0.0125", Liquidity::Maker));
    let StreamRecord::Pnl(p) = decoded[4] else {
        panic!("{:?}", decoded[4])
    };
    assert_eq!(
        (
            p.ts,
            p.equity.to_string(),
            p.realized.to_string(),
            p.unrealized.to_string()
        ),
        (T0, "10012.5".to_string(), "15".to_string(), "-2.5".to_string())
    );
}
