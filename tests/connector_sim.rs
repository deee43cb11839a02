//! The Binance connector (`WsFeed` + `BinanceDecoder`) against the Binance simulator over a real
//! loopback socket: combined and SUBSCRIBE forms, keepalive, and reconnect after the venue goes
//! away and comes back on the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maxx_cold::sim::{self, BinanceSimConfig, sample_symbols};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::binance::subscription::{StreamKind, connection, stream_names};
use maxx_hot::feed::ws::{Reconnect, WsFeed, WsTarget};
use maxx_hot::feed::{Control, Decoded};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::records::TickBody;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::{FrameSource, Next};

fn index() -> InstrumentIndex {
    let entry = |s: &str| {
        let mut vs = [None; Venue::COUNT];
        vs[Venue::Binance.index()] = Some(VenueSymbol::new(s).unwrap());
        (Symbol::new(s).unwrap(), vs)
    };
    InstrumentIndex::new([entry("BTCUSDT"), entry("ETHUSDT")]).unwrap()
}

fn feed(addr: SocketAddr, combined: bool, stats: &Arc<FeedStats>) -> WsFeed {
    let symbols: Vec<VenueSymbol> = sample_symbols().iter().map(|s| s.venue_symbol).collect();
    let names = stream_names(&symbols, &[StreamKind::Trade, StreamKind::BookTicker]);
    let (path, subscribe) = connection(&names, combined);
    let target = WsTarget::resolve(&format!("ws://{addr}")).unwrap().with_path(&path);
    let reconnect = Reconnect {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        stale_after: Duration::from_secs(5),
    };
    WsFeed::new(target, subscribe, reconnect, Arc::clone(stats)).unwrap()
}

/// What the test saw from the connector.
#[derive(Debug, Default)]
struct Seen {
    trades: u64,
    quotes: u64,
    results: Vec<i64>,
    shutdowns: u64,
    last_trade_id: [u64; 2],
}

/// Pumps the feed until `done` or the deadline; every frame must decode.
fn pump(feed: &mut WsFeed, seen: &mut Seen, deadline: Instant, what: &str, mut done: impl FnMut(&Seen) -> bool) {
    let index = index();
    let mut decoder = BinanceDecoder::new();
    while !done(seen) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {seen:?}");
        match feed.next() {
            Next::Frame(bytes, meta) => match decoder.decode(bytes, meta, &index) {
                Ok(Decoded::Tick(t)) => match t.body {
                    TickBody::Trade { .. } => {
                        let last = &mut seen.last_trade_id[t.instrument.index()];
                        assert!(t.seq > *last, "trade ids increase within a connection");
                        *last = t.seq;
                        seen.trades += 1;
                    }
                    TickBody::Quote { bid, ask, .. } => {
                        assert!(bid < ask);
                        seen.quotes += 1;
                    }
                },
                Ok(Decoded::Control(Control::Result { id })) => seen.results.push(id),
                Ok(Decoded::Control(Control::ServerShutdown)) => seen.shutdowns += 1,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => panic!(
                    "simulator frame failed to decode: {e} in {}",
                    String::from_utf8_lossy(bytes)
                ),
            },
            Next::Idle => std::thread::yield_now(),
            Next::Malformed | Next::Closed => panic!("a live feed neither closes nor yields malformed lines"),
        }
    }
}

fn sim_config(events_per_sec: u32) -> BinanceSimConfig {
    let mut cfg = BinanceSimConfig::new(11, sample_symbols());
    cfg.events_per_sec = events_per_sec;
    cfg
}

#[test]
fn combined_streams_flow_and_survive_a_venue_restart() {
    let sim = sim::spawn("127.0.0.1:0".parse().unwrap(), sim_config(5_000)).unwrap();
    let addr = sim.local_addr();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut feed = feed(addr, true, &stats);
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    pump(&mut feed, &mut seen, deadline, "ticks", |s| {
        s.trades >= 200 && s.quotes >= 200
    });
    assert_eq!(stats.connects.get(), 1);
    assert!(feed.is_open());

    // The venue goes away: it announces the shutdown, closes, and the feed starts retrying.
    sim.shutdown();
    pump(&mut feed, &mut seen, deadline, "the shutdown notice", |s| {
        s.shutdowns == 1
    });
    while stats.disconnects.get() == 0 {
        assert!(Instant::now() < deadline, "the feed never noticed the disconnect");
        let _ = feed.next();
    }
    // It comes back on the same port; the feed reconnects by itself and data flows again
    // (the new connection's trade ids start over, as on a new venue session).
    let sim = sim::spawn(addr, sim_config(5_000)).unwrap();
    seen.last_trade_id = [0; 2];
    let before = seen.trades;
    pump(&mut feed, &mut seen, deadline, "ticks after the reconnect", |s| {
        s.trades >= before + 200
    });
    assert_eq!(stats.connects.get(), 2, "one reconnect");
    feed.close();
    assert!(matches!(feed.next(), Next::Closed));
    sim.shutdown();
}

#[test]
fn raw_endpoint_subscribes_by_message_and_answers_pings() {
    let mut cfg = sim_config(300);
    // Ping every 50 ms and drop a client that has not answered within 250 ms: a feed that did
    // not pong would be cut many times over while the test collects its trades.
    cfg.ping_interval = Duration::from_millis(50);
    cfg.pong_timeout = Duration::from_millis(250);
    let sim = sim::spawn("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut feed = feed(sim.local_addr(), false, &stats);
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    pump(&mut feed, &mut seen, deadline, "trades over many ping cycles", |s| {
        s.trades >= 300
    });
    assert_eq!(seen.results, [1], "the SUBSCRIBE request was acknowledged");
    assert_eq!(stats.connects.get(), 1);
    assert_eq!(
        stats.disconnects.get(),
        0,
        "pings were answered: the venue never dropped us"
    );
    feed.close();
    sim.shutdown();
}

#[test]
fn an_unreachable_venue_is_retried_without_blocking() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Binance));
    let mut feed = feed(addr, true, &stats);
    // Every call returns at once; after a few backoff periods the venue appears and we connect.
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..1000 {
        assert!(matches!(feed.next(), Next::Idle));
    }
    assert_eq!(stats.connects.get(), 0);
    let sim = sim::spawn(addr, sim_config(1_000)).unwrap();
    let mut seen = Seen::default();
    pump(&mut feed, &mut seen, deadline, "the first ticks", |s| s.trades >= 10);
    assert_eq!(stats.connects.get(), 1);
    sim.shutdown();
}
