//! The OANDA connector (`HttpStreamFeed` + `OandaDecoder`) against the OANDA simulator over a
//! real loopback socket: prices and heartbeats, a refused token, reconnects after a dropped and
//! after a silent stream, garbage lines, a make-before-break rotation, and no allocation per
//! line in steady state (a counting allocator, per thread).
//!
//! Nothing here sleeps to synchronise or asserts on timing: every wait pumps the feed until a
//! condition holds and fails with a message at a generous deadline.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maxx_cold::sim::oanda::{self, DEFAULT_ACCOUNT, DEFAULT_TOKEN, UNAUTHORIZED_MESSAGE};
use maxx_cold::sim::{OandaSimConfig, OandaSimHandle, fx_symbols};
use maxx_hot::feed::http_stream::{HttpStreamFeed, HttpTarget, Reconnect, StreamState};
use maxx_hot::feed::oanda::parse::OandaDecoder;
use maxx_hot::feed::oanda::subscription::{DatetimeFormat, stream_request};
use maxx_hot::feed::{Control, DecodeReason, Decoded, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::records::TickBody;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::source::{FrameSource, Next};

// ---------------------------------------------------------------------------------------------
// Counting allocator.

/// Forwards to the system allocator, counting allocations made by the current thread.
struct CountingAlloc;

thread_local! {
    /// Allocations made by this thread so far; const-initialised, so reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with` fails only while the thread is being torn down; those are not counted.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards its arguments unchanged to `System`; the only extra work is a
// thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn index() -> InstrumentIndex {
    let entry = |ours: &str, theirs: &str| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Oanda.index()] = Some(VenueSymbol::new(theirs).unwrap());
        (Symbol::new(ours).unwrap(), venues)
    };
    InstrumentIndex::new([entry("EURUSD", "EUR_USD"), entry("USDJPY", "USD_JPY")]).unwrap()
}

/// A fast market without conflation, heartbeats every 50 ms.
fn sim_config() -> OandaSimConfig {
    OandaSimConfig {
        events_per_sec: 2_000,
        conflation: Duration::ZERO,
        heartbeat_interval: Duration::from_millis(50),
        ..OandaSimConfig::new(3, fx_symbols())
    }
}

fn start(cfg: OandaSimConfig) -> OandaSimHandle {
    oanda::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("simulator starts")
}

fn feed(addr: SocketAddr, token: &str, stale_after: Duration, stats: &Arc<FeedStats>) -> HttpStreamFeed {
    let instruments: Vec<VenueSymbol> = fx_symbols().iter().map(|s| s.venue_symbol).collect();
    let request = stream_request(DEFAULT_ACCOUNT, &instruments, token, DatetimeFormat::Rfc3339).unwrap();
    let target = HttpTarget::resolve(&format!("http://{addr}"))
        .unwrap()
        .with_path(&request.path);
    let reconnect = Reconnect {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        stale_after,
    };
    HttpStreamFeed::new(target, request.headers, reconnect, Arc::clone(stats)).unwrap()
}

/// What the test saw from the connector.
#[derive(Debug, Default)]
struct Seen {
    quotes: u64,
    heartbeats: u64,
    skipped: u64,
    /// Decode errors per reason.
    bad: [u64; DecodeReason::COUNT],
    /// The last `seq` per instrument, which the decoder numbers 1, 2, 3, ...
    seq: [u64; 2],
    /// The newest price time per instrument.
    newest_ns: [u64; 2],
    /// The epoch of the last frame.
    epoch: u32,
}

/// Pumps the feed until `done` or the deadline, checking every tick.
fn pump(
    feed: &mut HttpStreamFeed,
    decoder: &mut OandaDecoder,
    seen: &mut Seen,
    what: &str,
    mut done: impl FnMut(&Seen, &HttpStreamFeed) -> bool,
) {
    let index = index();
    let mut batch = TickBatch::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(seen, feed) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {seen:?}, {feed:?}"
        );
        let (next, epoch) = feed.next_tagged();
        match next {
            Next::Frame(bytes, meta) => {
                seen.epoch = epoch;
                match decoder.decode(bytes, meta, &index, &mut batch) {
                    Ok(Decoded::Tick(t)) => {
                        let i = t.instrument.index();
                        let TickBody::Quote { bid, ask, .. } = t.body else {
                            panic!("OANDA has no trades: {t:?}")
                        };
                        assert!(bid < ask, "{t:?}");
                        assert_eq!(t.seq, seen.seq[i] + 1, "the decoder numbers quotes 1, 2, 3, ...");
                        assert!(t.exchange_ns >= seen.newest_ns[i], "stale prices are skipped");
                        seen.seq[i] = t.seq;
                        seen.newest_ns[i] = t.exchange_ns;
                        seen.quotes += 1;
                    }
                    Ok(Decoded::Control(Control::Heartbeat)) => seen.heartbeats += 1,
                    Ok(Decoded::Skipped(_)) => seen.skipped += 1,
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(e) => seen.bad[e.reason.index()] += 1,
                }
            }
            Next::Idle => std::thread::yield_now(),
            Next::Malformed | Next::Closed => panic!("a live feed neither closes nor yields malformed lines"),
        }
    }
}

fn bad_total(seen: &Seen) -> u64 {
    seen.bad.iter().sum()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn prices_and_heartbeats_flow() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices and heartbeats", |s, _| {
        s.quotes >= 300 && s.heartbeats >= 3 && s.seq.iter().all(|&n| n > 0)
    });
    assert_eq!(bad_total(&seen), 0, "every simulator line decodes: {seen:?}");
    assert_eq!((stats.connects.get(), stats.disconnects.get()), (1, 0));
    assert_eq!(feed.state(), StreamState::Open);
    assert_eq!(seen.epoch, 1);
    feed.close();
    assert!(matches!(feed.next(), Next::Closed));
    assert_eq!(stats.disconnects.get(), 1);
    sim.shutdown();
}

#[test]
fn a_wrong_token_is_unauthorized_and_yields_nothing() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), "not-the-token", Duration::from_secs(5), &stats);
    let rejections = feed.rejections();
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "the 401", |_, f| {
        f.state() == StreamState::Unauthorized
    });
    // It keeps retrying (at the backoff cap), and keeps being refused.
    pump(&mut feed, &mut decoder, &mut seen, "a second refusal", |_, _| {
        stats.venue_errors.get() >= 2
    });
    assert_eq!(feed.state(), StreamState::Unauthorized);
    assert_eq!((seen.quotes, seen.heartbeats, stats.connects.get()), (0, 0, 0));
    let rejection = feed.last_rejection().unwrap();
    assert_eq!(rejection.status, 401);
    assert_eq!(rejection.error_message().as_deref(), Some(UNAUTHORIZED_MESSAGE));
    assert_eq!(
        rejections.pop().unwrap().error_message().as_deref(),
        Some(UNAUTHORIZED_MESSAGE)
    );
    assert!(stats.subscribe_rejected.get() >= 2);
    // The token never shows in the feed's debug output.
    assert!(!format!("{feed:?}").contains("not-the-token"));
    sim.shutdown();
}

#[test]
fn a_dropped_stream_is_reopened() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices", |s, _| s.quotes >= 50);
    sim.faults().drop_all();
    pump(&mut feed, &mut decoder, &mut seen, "the drop", |_, _| {
        stats.disconnects.get() == 1
    });
    let before = seen.quotes;
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "prices after the reconnect",
        |s, _| s.quotes >= before + 50 && s.epoch == 2,
    );
    assert_eq!(stats.connects.get(), 2);
    assert_eq!(bad_total(&seen), 0, "{seen:?}");
    sim.shutdown();
}

#[test]
fn a_silent_stream_is_stale_and_reopened() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    // Heartbeats come every 50 ms, so 300 ms without a line is a dead stream.
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_millis(300), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices", |s, _| s.quotes >= 50);
    sim.faults().set_silent(true);
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "the stale stream to be dropped",
        |_, _| stats.disconnects.get() >= 1 && stats.connects.get() >= 2,
    );
    sim.faults().set_silent(false);
    let (before, epoch) = (seen.quotes, seen.epoch);
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "prices once the venue speaks again",
        |s, _| s.quotes >= before + 50 && s.heartbeats >= 1,
    );
    assert!(seen.epoch > epoch, "the prices come on a new connection");
    assert_eq!(bad_total(&seen), 0, "{seen:?}");
    sim.shutdown();
}

#[test]
fn garbage_lines_are_counted_and_survived() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices", |s, _| s.quotes >= 20);
    sim.faults().inject_garbage(4);
    pump(&mut feed, &mut decoder, &mut seen, "the garbage", |s, _| {
        bad_total(s) == 5
    });
    let before = seen.quotes;
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "prices after the garbage",
        |s, _| s.quotes >= before + 50,
    );
    // Truncated JSON and prose; two objects of no known shape; a line that is not UTF-8.
    let bad = |r: DecodeReason| seen.bad[r.index()];
    assert_eq!(bad(DecodeReason::UnknownMessage), 2, "{seen:?}");
    assert_eq!(bad(DecodeReason::Utf8) + bad(DecodeReason::Json), 3, "{seen:?}");
    assert_eq!((stats.connects.get(), stats.disconnects.get()), (1, 0));
    sim.shutdown();
}

#[test]
fn a_rotation_is_make_before_break() {
    let sim = start(sim_config());
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices", |s, _| s.quotes >= 20);
    feed.rotate();
    pump(&mut feed, &mut decoder, &mut seen, "the new connection", |_, f| {
        f.rotating().is_some()
    });
    let new_epoch = feed.rotating().unwrap();
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "a line from the new connection",
        |s, _| s.epoch == new_epoch,
    );
    // The feed task finishes a rotation once the new connection delivers; here we do.
    feed.finish_rotation();
    assert_eq!(feed.rotating(), None);
    let before = seen.quotes;
    pump(
        &mut feed,
        &mut decoder,
        &mut seen,
        "prices on the new connection",
        |s, _| s.quotes >= before + 50,
    );
    assert_eq!(seen.epoch, new_epoch);
    // The planned close of the old connection is not a disconnect.
    assert_eq!(
        (stats.rotations.get(), stats.connects.get(), stats.disconnects.get()),
        (1, 2, 0)
    );
    // Both connections carried the same prices for a while; the older copies were skipped.
    assert_eq!(bad_total(&seen), 0, "{seen:?}");
    sim.shutdown();
}

/// A one-connection TLS front for the simulator (a certificate made for the test), copying
/// bytes both ways until either side closes.
fn tls_front(upstream: SocketAddr) -> (u16, rcgen::CertifiedKey<rcgen::KeyPair>, std::thread::JoinHandle<()>) {
    use std::io::{ErrorKind, Read, Write};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), tcp);
        let mut up = std::net::TcpStream::connect(upstream).unwrap();
        up.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        let mut buf = vec![0u8; 16 << 10];
        let quiet = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        loop {
            match tls.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => up.write_all(&buf[..n]).unwrap(),
                Err(e) if quiet(&e) => {}
                Err(_) => return,
            }
            match up.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                        return;
                    }
                }
                Err(e) if quiet(&e) => {}
                Err(_) => return,
            }
        }
    });
    (port, cert, handle)
}

#[test]
fn https_streams_through_tls() {
    let sim = start(sim_config());
    let (port, cert, front) = tls_front(sim.local_addr());
    let instruments: Vec<VenueSymbol> = fx_symbols().iter().map(|s| s.venue_symbol).collect();
    let request = stream_request(DEFAULT_ACCOUNT, &instruments, DEFAULT_TOKEN, DatetimeFormat::Unix).unwrap();
    let target = HttpTarget::resolve(&format!("https://localhost:{port}"))
        .unwrap()
        .with_path(&request.path);
    assert!(target.tls);
    assert_eq!(target.host(), "localhost");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let reconnect = Reconnect {
        initial: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        stale_after: Duration::from_secs(5),
    };
    let mut feed = HttpStreamFeed::new(target, request.headers, reconnect, Arc::clone(&stats))
        .unwrap()
        .with_tls(maxx_hot::feed::http_stream::TlsConfig::with_roots(roots));
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "prices over TLS", |s, _| {
        s.quotes >= 100 && s.heartbeats >= 1
    });
    assert_eq!(bad_total(&seen), 0, "{seen:?}");
    assert_eq!(stats.connects.get(), 1);
    feed.close();
    front.join().unwrap();
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
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(addr, DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    // Every call returns at once; after a few backoff periods the venue appears and we connect.
    for _ in 0..1000 {
        assert!(matches!(feed.next(), Next::Idle));
    }
    assert_eq!(stats.connects.get(), 0);
    assert_ne!(feed.state(), StreamState::Open);
    let sim = oanda::spawn(addr, sim_config()).unwrap();
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    pump(&mut feed, &mut decoder, &mut seen, "the first prices", |s, _| {
        s.quotes >= 10
    });
    assert_eq!(stats.connects.get(), 1);
    sim.shutdown();
}

#[test]
fn transport_and_decoder_allocate_nothing_per_line() {
    let sim = start(OandaSimConfig {
        heartbeat_interval: Duration::from_millis(20),
        max_chunk_bytes: 100,
        ..sim_config()
    });
    let stats = Arc::new(FeedStats::new(Venue::Oanda));
    let mut feed = feed(sim.local_addr(), DEFAULT_TOKEN, Duration::from_secs(5), &stats);
    let mut decoder = OandaDecoder::new();
    let mut seen = Seen::default();
    // Warm-up: connect, and let the decoder's buffers reach their size.
    pump(&mut feed, &mut decoder, &mut seen, "warm-up", |s, _| {
        s.quotes >= 100 && s.heartbeats >= 1
    });
    let index = index();
    let mut batch = TickBatch::new();
    let (mut quotes, mut heartbeats) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = allocations();
    while quotes < 2_000 || heartbeats < 5 {
        assert!(
            Instant::now() < deadline,
            "timed out: {quotes} quotes, {heartbeats} heartbeats"
        );
        if let Next::Frame(bytes, meta) = feed.next() {
            batch.clear();
            match decoder.decode(bytes, meta, &index, &mut batch) {
                Ok(Decoded::Tick(_)) => quotes += 1,
                Ok(Decoded::Control(Control::Heartbeat)) => heartbeats += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let allocated = allocations() - before;
    assert_eq!(
        allocated, 0,
        "{allocated} allocations over {quotes} quotes and {heartbeats} heartbeats"
    );
    assert_eq!(stats.connects.get(), 1, "no reconnect during the count");
    sim.shutdown();
}
