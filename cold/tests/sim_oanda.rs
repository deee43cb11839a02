//! End-to-end tests of the OANDA v20 pricing-stream simulator over real loopback sockets with a
//! plain std `TcpStream` client, checking the wire format against `venues.md` §4.
//!
//! The client here parses HTTP and the chunked framing itself, independently of the hot side's
//! `HttpStreamFeed`, so that the two cannot share a misreading of the protocol.
//! Nothing here sleeps to synchronise or asserts on timing: every wait reads the socket with a
//! short timeout until the expected condition holds, and fails with a message at a generous
//! deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use maxx_cold::sim::faults::GARBAGE_TEXT;
use maxx_cold::sim::oanda::{self, DEFAULT_ACCOUNT, DEFAULT_TOKEN, FORBIDDEN_MESSAGE, UNAUTHORIZED_MESSAGE};
use maxx_cold::sim::{OandaSimConfig, OandaSimHandle, fx_symbols};
use maxx_hot::feed::oanda::parse::{OandaDecoder, parse_rfc3339_ns, parse_unix_ns};
use maxx_hot::feed::{Decoded, FrameMeta, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::TickBody;
use serde_json::Value;

/// How long any condition may take before the test fails; far above what it needs.
const DEADLINE: Duration = Duration::from_secs(10);
/// Client read timeout: how often a waiting loop re-checks its condition and deadline.
const READ_POLL: Duration = Duration::from_millis(20);

const STREAM: &str = "/v3/accounts/101-004-1234567-001/pricing/stream";

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

/// A fast market with no conflation, so tests get many prices quickly.
fn config() -> OandaSimConfig {
    OandaSimConfig {
        events_per_sec: 2_000,
        conflation: Duration::ZERO,
        ..OandaSimConfig::new(7, fx_symbols())
    }
}

fn start(cfg: OandaSimConfig) -> OandaSimHandle {
    oanda::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("simulator starts")
}

fn auth() -> String {
    format!("Bearer {DEFAULT_TOKEN}")
}

/// A minimal HTTP/1.1 client: one request, then the response read by hand.
struct Client {
    stream: TcpStream,
    /// Bytes received after the head and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into lines.
    body: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    /// The size of every data chunk, in order.
    chunk_sizes: Vec<usize>,
    /// The last (empty) chunk has arrived.
    ended: bool,
    /// The server closed the connection.
    eof: bool,
}

impl Client {
    fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Client {
        Self::request(addr, "GET", target, headers)
    }

    fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Client {
        let mut stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_read_timeout(Some(READ_POLL)).unwrap();
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut client = Client {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            status: 0,
            headers: Vec::new(),
            chunk_sizes: Vec::new(),
            ended: false,
            eof: false,
        };
        let until = deadline();
        let end = loop {
            if let Some(i) = client.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(!client.eof, "connection closed before the response head");
            assert!(Instant::now() < until, "timed out waiting for the response head");
            client.fill();
        };
        let head = String::from_utf8(client.raw.drain(..end).collect()).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        client.status = status_line[9..12].parse().unwrap();
        client.headers = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header {l:?}"));
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        client
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// One read with the poll timeout.
    fn fill(&mut self) {
        let mut buf = [0u8; 8192];
        match self.stream.read(&mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => self.eof = true,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) {
        while !self.ended {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size_text = size_text.split(';').next().unwrap().trim();
            let size = usize::from_str_radix(size_text, 16).unwrap_or_else(|e| panic!("chunk size {size_text:?}: {e}"));
            let need = eol + 2 + size + 2;
            if self.raw.len() < need {
                return;
            }
            assert_eq!(&self.raw[need - 2..need], b"\r\n", "chunk data not followed by CRLF");
            if size == 0 {
                self.ended = true;
            } else {
                self.body.extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
                self.chunk_sizes.push(size);
            }
            self.raw.drain(..need);
        }
    }

    /// The next body line (without its newline); `None` once the body has ended or the
    /// connection closed.
    fn next_line(&mut self, until: Instant) -> Option<Vec<u8>> {
        loop {
            self.dechunk();
            if let Some(i) = self.body.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=i).collect();
                return Some(line[..i].to_vec());
            }
            if self.ended || self.eof {
                return None;
            }
            assert!(Instant::now() < until, "timed out waiting for a line");
            self.fill();
        }
    }

    fn next_json(&mut self, until: Instant) -> (String, Value) {
        let line = self.next_line(until).expect("a line before the stream ended");
        let text = String::from_utf8(line).expect("lines are UTF-8");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("line is not JSON ({e}): {text}"));
        (text, value)
    }

    /// A `Content-Length` body, read whole.
    fn length_body(&mut self) -> String {
        let len: usize = self
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let until = deadline();
        while self.raw.len() < len {
            assert!(!self.eof && Instant::now() < until, "body cut short");
            self.fill();
        }
        String::from_utf8(self.raw.drain(..len).collect()).unwrap()
    }

    /// Waits until the server closes the connection.
    fn wait_eof(&mut self, until: Instant) {
        while !self.eof {
            assert!(Instant::now() < until, "the server never closed the connection");
            self.fill();
        }
        self.dechunk();
    }
}

fn stream_target(instruments: &str) -> String {
    format!("{STREAM}?instruments={instruments}")
}

/// Connects to the stream of `instruments` with the right token.
fn open(sim: &OandaSimHandle, instruments: &str, extra: &[(&str, &str)]) -> Client {
    let auth = auth();
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let client = Client::get(sim.local_addr(), &stream_target(instruments), &headers);
    assert_eq!(client.status, 200);
    client
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

const PRICE_KEYS: [&str; 7] = [
    "asks",
    "bids",
    "closeoutAsk",
    "closeoutBid",
    "instrument",
    "status",
    "time",
];

/// A price string with exactly `decimals` places, on the tick grid.
fn checked_price(v: &Value, decimals: usize) -> Price {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    let (int, frac) = s.split_once('.').unwrap_or_else(|| panic!("{s} has no decimals"));
    assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()), "{s}");
    assert!(
        frac.len() == decimals && frac.bytes().all(|b| b.is_ascii_digit()),
        "{s}: not {decimals} decimals"
    );
    let p: Price = s.parse().unwrap();
    assert!(p > Price::ZERO, "{s}");
    p
}

/// Checks one side's levels: one tick apart, liquidity on the 1-2-5-10 ladder; returns the
/// best price and its liquidity.
fn check_levels(levels: &Value, decimals: usize, tick: i64, ask: bool, count: usize) -> (Price, i64) {
    let levels = levels.as_array().unwrap();
    assert_eq!(levels.len(), count);
    let best = checked_price(&levels[0]["price"], decimals);
    let base = levels[0]["liquidity"].as_i64().expect("liquidity is an integer");
    assert!(
        base > 0 && base % 10_000 == 0,
        "liquidity {base} is not in lots of 10,000"
    );
    for (i, level) in levels.iter().enumerate() {
        assert_eq!(keys(level), ["liquidity", "price"]);
        let p = checked_price(&level["price"], decimals);
        let step = i as i64 * tick;
        let expected = if ask { best.raw() + step } else { best.raw() - step };
        assert_eq!(p.raw(), expected, "level {i} is not {i} ticks from the best");
        assert_eq!(level["liquidity"].as_i64().unwrap(), base * [1, 2, 5, 10][i]);
    }
    (best, base)
}

fn index() -> InstrumentIndex {
    let entry = |ours: &str, theirs: &str| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Oanda.index()] = Some(VenueSymbol::new(theirs).unwrap());
        (Symbol::new(ours).unwrap(), venues)
    };
    InstrumentIndex::new([entry("EURUSD", "EUR_USD"), entry("USDJPY", "USD_JPY")]).unwrap()
}

#[test]
fn prices_have_the_documented_shape_and_decode() {
    let mut cfg = config();
    cfg.levels = 4;
    let sim = start(cfg);
    let mut client = open(&sim, "EUR_USD%2CUSD_JPY", &[]);
    assert_eq!(client.header("content-type"), Some("application/octet-stream"));
    assert_eq!(client.header("transfer-encoding"), Some("chunked"));
    let index = index();
    let mut decoder = OandaDecoder::new();
    let mut last_time = [0u64; 2];
    let mut seen = [0usize; 2];
    let until = deadline();
    while seen.iter().sum::<usize>() < 300 || seen.contains(&0) {
        let (text, line) = client.next_json(until);
        if line["type"] == "HEARTBEAT" {
            continue;
        }
        assert_eq!(keys(&line), PRICE_KEYS, "{text}");
        let instrument = line["instrument"].as_str().unwrap();
        let (i, decimals, tick) = match instrument {
            "EUR_USD" => (0, 5, 1_000),
            "USD_JPY" => (1, 3, 100_000),
            other => panic!("instrument {other} was not asked for"),
        };
        let (bid, bid_liq) = check_levels(&line["bids"], decimals, tick, false, 4);
        let (ask, ask_liq) = check_levels(&line["asks"], decimals, tick, true, 4);
        assert!(bid < ask, "{text}");
        assert_eq!(line["status"], "tradeable");
        assert_eq!(
            checked_price(&line["closeoutBid"], decimals).raw(),
            bid.raw() - 3 * tick
        );
        assert_eq!(
            checked_price(&line["closeoutAsk"], decimals).raw(),
            ask.raw() + 3 * tick
        );
        let time = line["time"].as_str().unwrap();
        assert_eq!(time.len(), 30, "nine fractional digits: {time}");
        let ns = parse_rfc3339_ns(time.as_bytes()).unwrap();
        assert!(ns > 1_577_836_800_000_000_000, "{time} is before 2020");
        assert!(ns >= last_time[i], "times go back: {text}");
        last_time[i] = ns;
        seen[i] += 1;
        // The hot decoder reads the same line to the same numbers.
        let meta = FrameMeta::default();
        match decoder.decode(text.as_bytes(), meta, &index, &mut TickBatch::new()) {
            Ok(Decoded::Tick(tick)) => {
                assert_eq!(tick.instrument.index(), i);
                assert_eq!(tick.exchange_ns, ns);
                let TickBody::Quote {
                    bid: b,
                    bid_qty,
                    ask: a,
                    ask_qty,
                } = tick.body
                else {
                    panic!("not a quote")
                };
                assert_eq!((b, a), (bid, ask));
                assert_eq!(
                    (bid_qty, ask_qty),
                    (Qty::from_units(bid_liq).unwrap(), Qty::from_units(ask_liq).unwrap())
                );
            }
            other => panic!("{other:?} from {text}"),
        }
    }
    sim.shutdown();
}

#[test]
fn heartbeats_have_the_documented_shape() {
    let sim = start(OandaSimConfig {
        events_per_sec: 1,
        heartbeat_interval: Duration::from_millis(20),
        ..config()
    });
    // Only USD_JPY: with one event a second, most lines are heartbeats.
    let mut client = open(&sim, "USD_JPY", &[]);
    let until = deadline();
    let mut heartbeats = 0;
    while heartbeats < 5 {
        let (text, line) = client.next_json(until);
        if line["type"] != "HEARTBEAT" {
            assert_eq!(line["instrument"], "USD_JPY");
            continue;
        }
        assert_eq!(keys(&line), ["time", "type"], "{text}");
        parse_rfc3339_ns(line["time"].as_str().unwrap().as_bytes()).unwrap();
        heartbeats += 1;
    }
    sim.shutdown();
}

#[test]
fn unix_times_and_the_live_fields() {
    let sim = start(OandaSimConfig {
        live_fields: true,
        heartbeat_interval: Duration::from_millis(50),
        ..config()
    });
    let mut client = open(&sim, "EUR_USD", &[("Accept-Datetime-Format", "UNIX")]);
    let until = deadline();
    let (mut prices, mut heartbeats) = (0, 0);
    while prices < 20 || heartbeats < 1 {
        let (text, line) = client.next_json(until);
        let time = line["time"].as_str().unwrap();
        let (secs, frac) = time.split_once('.').unwrap_or_else(|| panic!("{time}"));
        assert!(secs.bytes().all(|b| b.is_ascii_digit()) && frac.len() == 9, "{time}");
        assert!(parse_unix_ns(time.as_bytes()).unwrap() > 1_577_836_800_000_000_000);
        if line["type"] == "HEARTBEAT" {
            heartbeats += 1;
            continue;
        }
        let mut expected = PRICE_KEYS.to_vec();
        expected.extend(["tradeable", "type"]);
        assert_eq!(keys(&line), expected, "{text}");
        assert_eq!(
            (&line["tradeable"], &line["type"]),
            (&Value::Bool(true), &Value::from("PRICE"))
        );
        prices += 1;
    }
    sim.shutdown();
}

#[test]
fn refusals_have_the_documented_status_and_body() {
    let sim = start(config());
    let addr = sim.local_addr();
    let auth = auth();
    let good = [("Authorization", auth.as_str())];
    // Method, target, headers, expected status and message ("" for one we do not pin).
    type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case<'_>; 8] = [
        ("GET", stream_target("EUR_USD"), &[], 401, UNAUTHORIZED_MESSAGE),
        (
            "GET",
            stream_target("EUR_USD"),
            &[("Authorization", "Bearer wrong")],
            401,
            UNAUTHORIZED_MESSAGE,
        ),
        (
            "GET",
            "/v3/accounts/001-001-0000000-001/pricing/stream?instruments=EUR_USD".into(),
            &good,
            403,
            FORBIDDEN_MESSAGE,
        ),
        (
            "GET",
            stream_target("EUR_USD%2CXAU_USD"),
            &good,
            400,
            "Invalid value specified for 'instruments'",
        ),
        (
            "GET",
            STREAM.into(),
            &good,
            400,
            "Invalid value specified for 'instruments'",
        ),
        (
            "GET",
            stream_target("EUR_USD"),
            &[("Authorization", auth.as_str()), ("Accept-Datetime-Format", "ISO")],
            400,
            "Invalid value specified for 'Accept-Datetime-Format'",
        ),
        (
            "GET",
            format!("/v3/accounts/{DEFAULT_ACCOUNT}/pricing?instruments=EUR_USD"),
            &good,
            404,
            "",
        ),
        ("POST", stream_target("EUR_USD"), &good, 405, ""),
    ];
    for (method, target, headers, status, message) in cases {
        let mut client = Client::request(addr, method, &target, headers);
        assert_eq!(client.status, status, "{method} {target}");
        assert_eq!(client.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_str(&client.length_body()).unwrap();
        assert_eq!(keys(&body), ["errorMessage"]);
        if !message.is_empty() {
            assert_eq!(body["errorMessage"], message, "{method} {target}");
        }
        client.wait_eof(deadline());
    }
    sim.shutdown();
}

#[test]
fn private_markets_start_with_a_snapshot_and_repeat_the_same_prices() {
    let sim = start(OandaSimConfig {
        shared_market: false,
        ..config()
    });
    // The snapshot: one price per instrument, in the order asked for, before anything else.
    let mut client = open(&sim, "USD_JPY%2CEUR_USD", &[]);
    let until = deadline();
    let first: Vec<Value> = (0..2).map(|_| client.next_json(until).1).collect();
    assert_eq!(
        (&first[0]["instrument"], &first[1]["instrument"]),
        (&Value::from("USD_JPY"), &Value::from("EUR_USD"))
    );
    // Without it, two connections see the same prices in the same order (times differ).
    let prices = |client: &mut Client| -> Vec<(String, String, String)> {
        let until = deadline();
        let mut out = Vec::new();
        while out.len() < 100 {
            let (_, line) = client.next_json(until);
            if line["type"] != "HEARTBEAT" {
                let text = |v: &Value| v.as_str().unwrap().to_string();
                out.push((
                    text(&line["instrument"]),
                    text(&line["bids"][0]["price"]),
                    text(&line["asks"][0]["price"]),
                ));
            }
        }
        out
    };
    let mut a = open(&sim, "EUR_USD%2CUSD_JPY", &[]);
    let mut b = open(&sim, "EUR_USD,USD_JPY", &[]);
    let from_a = prices(&mut a);
    assert_eq!(from_a, prices(&mut b));
    let mut c = Client::get(
        sim.local_addr(),
        &format!("{}&snapshot=false", stream_target("EUR_USD%2CUSD_JPY")),
        &[("Authorization", &auth())],
    );
    // The same prices, minus the two snapshot lines at the start.
    let without_snapshot = prices(&mut c);
    assert_eq!(without_snapshot[..98], from_a[2..]);
    sim.shutdown();
}

#[test]
fn lines_span_chunks_when_chunks_are_small() {
    let sim = start(OandaSimConfig {
        max_chunk_bytes: 7,
        ..config()
    });
    let mut client = open(&sim, "EUR_USD", &[]);
    let until = deadline();
    for _ in 0..50 {
        let (text, _) = client.next_json(until);
        assert!(text.len() > 7);
    }
    assert!(
        client.chunk_sizes.iter().all(|&n| (1..=7).contains(&n)),
        "{:?}",
        client.chunk_sizes
    );
    assert!(client.chunk_sizes.len() > 50 * 10);
    sim.shutdown();
}

#[test]
fn conflation_keeps_at_most_one_price_per_window() {
    // Windows and heartbeats share the period: per instrument, at most about one price per
    // heartbeat, against hundreds of market events in each window.
    let period = Duration::from_millis(40);
    let sim = start(OandaSimConfig {
        events_per_sec: 20_000,
        conflation: period,
        heartbeat_interval: period,
        ..config()
    });
    let mut client = open(&sim, "EUR_USD%2CUSD_JPY", &[("x", "y")]);
    let until = deadline();
    let (mut heartbeats, mut prices) = (0u32, [0u32; 2]);
    while heartbeats < 15 {
        let (_, line) = client.next_json(until);
        match line["instrument"].as_str() {
            Some("EUR_USD") => prices[0] += 1,
            Some("USD_JPY") => prices[1] += 1,
            _ => heartbeats += 1,
        }
    }
    // The heartbeat clock restarts after each beat and so runs a little slow against the
    // windows; twice the count (plus the snapshot) is a bound no unconflated stream meets.
    for p in prices {
        assert!(
            p >= 2 && p <= 2 * heartbeats + 2,
            "{prices:?} prices in {heartbeats} heartbeats"
        );
    }
    sim.shutdown();
}

#[test]
fn faults_drop_garbage_and_a_clean_end() {
    let sim = start(config());
    let until = deadline();

    // Garbage: each line whole, in the documented order, then a line that is not UTF-8.
    let mut client = open(&sim, "EUR_USD", &[]);
    client.next_json(until);
    sim.faults().inject_garbage(3);
    let mut garbage = Vec::new();
    while garbage.len() < 4 {
        let line = client.next_line(until).expect("the stream goes on");
        if serde_json::from_slice::<Value>(&line).is_err() || line.starts_with(br#"{"price""#) {
            garbage.push(line);
        }
    }
    for (i, text) in GARBAGE_TEXT[..3].iter().enumerate() {
        assert_eq!(garbage[i], text.as_bytes());
    }
    assert!(std::str::from_utf8(&garbage[3]).is_err());
    client.next_json(until);

    // Deaf changes nothing: there are no pings on this venue.
    sim.faults().set_deaf(true);
    for _ in 0..20 {
        client.next_json(until);
    }
    sim.faults().set_deaf(false);

    // Drop: the connection closes in the middle of the body, without the last chunk.
    sim.faults().drop_all();
    client.wait_eof(until);
    assert!(!client.ended, "a dropped stream has no last chunk");

    // Maintenance: the stream ends cleanly, and the simulator keeps accepting.
    let mut client = open(&sim, "EUR_USD", &[]);
    client.next_json(until);
    sim.faults().announce_shutdown();
    while client.next_line(until).is_some() {}
    assert!(client.ended, "the stream ends with its last chunk");
    client.wait_eof(until);
    let mut client = open(&sim, "EUR_USD", &[]);
    client.next_json(until);

    // Shutdown ends every stream cleanly and closes every connection.
    let mut other = open(&sim, "USD_JPY", &[]);
    other.next_json(until);
    while sim.connections() != 2 {
        assert!(Instant::now() < until, "connections: {}", sim.connections());
        std::thread::yield_now();
    }
    sim.shutdown();
    for c in [&mut client, &mut other] {
        while c.next_line(until).is_some() {}
        assert!(c.ended);
        c.wait_eof(until);
    }
}

#[test]
fn a_silent_stream_sends_nothing_until_it_speaks_again() {
    let sim = start(OandaSimConfig {
        heartbeat_interval: Duration::from_millis(10),
        ..config()
    });
    sim.faults().set_silent(true);
    let mut client = open(&sim, "EUR_USD", &[]);
    // Ten heartbeat intervals and then some: no snapshot, no price, no heartbeat.
    let quiet_until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < quiet_until {
        client.fill();
        assert!(
            client.raw.is_empty() && !client.eof,
            "a silent stream sent {:?}",
            client.raw
        );
    }
    sim.faults().set_silent(false);
    let until = deadline();
    let mut heartbeats = 0;
    while heartbeats < 2 {
        if client.next_json(until).1["type"] == "HEARTBEAT" {
            heartbeats += 1;
        }
    }
    sim.shutdown();
}

#[test]
fn connections_are_counted_until_closed() {
    let sim = start(config());
    let until = deadline();
    let mut a = open(&sim, "EUR_USD", &[]);
    let b = open(&sim, "USD_JPY", &[]);
    a.next_json(until);
    while sim.connections() != 2 {
        assert!(Instant::now() < until);
        std::thread::yield_now();
    }
    drop(b);
    while sim.connections() != 1 {
        assert!(Instant::now() < until, "the closed client is still counted");
        std::thread::yield_now();
    }
    assert_eq!(sim.lagged(), 0);
    sim.shutdown();
}

#[test]
fn fractional_lot_sizes_give_whole_unit_liquidity() {
    // The engine's default lot size is 0.00001; liquidity stays a positive integer.
    let mut symbols = fx_symbols();
    for s in &mut symbols {
        s.lot_size = "0.00001".parse().unwrap();
    }
    let sim = start(OandaSimConfig {
        levels: 4,
        symbols,
        ..config()
    });
    let mut client = open(&sim, "EUR_USD", &[]);
    let until = deadline();
    for _ in 0..50 {
        let (text, line) = client.next_json(until);
        if line["type"] == "HEARTBEAT" {
            continue;
        }
        for side in ["bids", "asks"] {
            for level in line[side].as_array().unwrap() {
                assert!(level["liquidity"].as_i64().is_some_and(|l| l >= 1), "{text}");
            }
        }
    }
    sim.shutdown();
}

#[test]
fn bad_configurations_are_refused() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let refused = |cfg: OandaSimConfig| oanda::spawn(addr, cfg).map(|_| ()).unwrap_err().kind();
    assert_eq!(
        refused(OandaSimConfig { levels: 0, ..config() }),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        refused(OandaSimConfig { levels: 5, ..config() }),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        refused(OandaSimConfig {
            max_chunk_bytes: 0,
            ..config()
        }),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        refused(OandaSimConfig {
            token: String::new(),
            ..config()
        }),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        refused(OandaSimConfig {
            account_id: "a/b".into(),
            ..config()
        }),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        refused(OandaSimConfig {
            heartbeat_interval: Duration::ZERO,
            ..config()
        }),
        ErrorKind::InvalidInput
    );
    let twice = [fx_symbols(), fx_symbols()].concat();
    assert_eq!(refused(OandaSimConfig::new(1, twice)), ErrorKind::InvalidInput);
    // The token never shows in the configuration's debug output.
    let cfg = OandaSimConfig {
        token: "s3cr3t".into(),
        ..config()
    };
    assert!(!format!("{cfg:?}").contains("s3cr3t"));
}

/// A capture written by a test, plain and gzip-compressed, removed when dropped.
struct TempCapture {
    plain: std::path::PathBuf,
    gzip: std::path::PathBuf,
}

impl TempCapture {
    fn new(name: &str, lines: &[String]) -> Self {
        let base = format!("maxx-sim-oanda-{}-{name}", std::process::id());
        let plain = std::env::temp_dir().join(format!("{base}.txt"));
        let gzip = std::env::temp_dir().join(format!("{base}.txt.gz"));
        let text = lines.join("\n") + "\n";
        std::fs::write(&plain, &text).expect("write the capture");
        std::fs::write(&gzip, gzip_stored(text.as_bytes())).expect("write the gzip capture");
        Self { plain, gzip }
    }
}

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.plain);
        let _ = std::fs::remove_file(&self.gzip);
    }
}

/// `data` as one gzip member (RFC 1952) of stored, uncompressed deflate blocks (RFC 1951
/// §3.2.4): a valid gzip file without a compressor, since cold's tests do not depend on one.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut rest = data;
    loop {
        let (block, after) = rest.split_at(rest.len().min(0xFFFF));
        let len = u16::try_from(block.len()).unwrap();
        out.push(u8::from(after.is_empty()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
        rest = after;
        if rest.is_empty() {
            break;
        }
    }
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

/// Reads `n` body lines.
fn lines(client: &mut Client, n: usize) -> Vec<String> {
    let until = deadline();
    (0..n)
        .map(|_| {
            let line = client.next_line(until).expect("a line before the stream ended");
            String::from_utf8(line).expect("lines are UTF-8")
        })
        .collect()
}

#[test]
fn replay_serves_captured_prices_and_heartbeats_byte_for_byte() {
    // The docs' sample shape (no `type`), with its odd spacing kept.
    let eur = r#"{"asks":[{"liquidity":10000000,"price":"1.11704"},{"liquidity":10000000,"price":"1.11706"}],"bids":                        [{"liquidity":10000000,"price":"1.11690"},{"liquidity":10000000,"price":"1.11688"}],"closeoutAsk":"1.11708","closeoutBid":"1.11686","instrument":"EUR_USD","status":"tradeable","time":"2016-09-20T15:05:47.960449532Z"}"#;
    // The live stream's shape.
    let jpy = r#"{"asks":[{"liquidity":1000000,"price":"151.240"}],"bids":[{"liquidity":1000000,"price":"151.230"}],"closeoutAsk":"151.240","closeoutBid":"151.230","instrument":"USD_JPY","status":"tradeable","time":"2016-09-20T15:05:48.157162748Z","tradeable":true,"type":"PRICE"}"#;
    let eur_later = r#"{ "asks" : [{"liquidity":10000000,"price":"1.11705"}], "bids" : [{"liquidity":10000000,"price":"1.11691"}], "closeoutAsk" : "1.11705", "closeoutBid" : "1.11691", "instrument" : "EUR_USD", "status" : "tradeable", "time" : "2016-09-20T15:05:48.2Z" }"#;
    let jpy_later = r#"{"asks":[{"liquidity":2000000,"price":"151.241"}],"bids":[{"liquidity":2000000,"price":"151.231"}],"closeoutAsk":"151.241","closeoutBid":"151.231","instrument":"USD_JPY","status":"tradeable","time":"2016-09-20T15:05:49.1Z","tradeable":true,"type":"PRICE"}"#;
    let beat = r#"{"time":"2016-09-20T15:05:50.163791738Z","type":"HEARTBEAT"}"#;
    let last_beat = r#"{"time":"2016-09-20T15:05:55.163791738Z","type":"HEARTBEAT"}"#;
    // Every connection's last line is the capture's last, so receiving it proves that every
    // line it must not get was skipped.
    let capture_lines: Vec<String> = [
        "# OANDA pricing stream written by the test".to_owned(),
        format!("1000000000 {eur}"),
        format!("1001000000 {beat}"),
        format!("1002000000 {jpy}"),
        r#"1003000000 {"asks":[{"liquidity":1000000,"price":"1.32149"}],"bids":[{"liquidity":1000000,"price":"1.32128"}],"closeoutAsk":"1.32153","closeoutBid":"1.32124","instrument":"USD_CAD","status":"tradeable","time":"2016-09-20T15:05:48.3Z"}"#.to_owned(),
        "not a capture line".to_owned(),
        r#"1004000000 {"instrument":"EUR_USD","type":"PRICE_BUCKET"}"#.to_owned(),
        r#"1005000000 {"errorMessage":"Insufficient authorization to perform request."}"#.to_owned(),
        r#"1005500000 {"asks":[{"liquidity":1"#.to_owned(),
        format!("1006000000 {eur_later}"),
        format!("1007000000 {jpy_later}"),
        format!("1008000000 {last_beat}"),
    ]
    .into();
    let capture = TempCapture::new("replay", &capture_lines);
    let replay_config = |path: &std::path::Path| OandaSimConfig {
        replay: Some(path.to_owned()),
        // Neither generated heartbeats nor conflation may touch a captured stream.
        heartbeat_interval: Duration::from_millis(1),
        conflation: Duration::from_millis(250),
        ..config()
    };
    let sim = start(replay_config(&capture.plain));

    let mut euro = open(&sim, "EUR_USD", &[]);
    assert_eq!(lines(&mut euro, 4), [eur, beat, eur_later, last_beat]);
    // Captured lines are never rewritten: a UNIX time format changes nothing.
    let mut both = open(&sim, "USD_JPY%2CEUR_USD", &[("Accept-Datetime-Format", "UNIX")]);
    assert_eq!(lines(&mut both, 6), [eur, beat, jpy, eur_later, jpy_later, last_beat]);
    // The capture is over, and both streams stay open.
    assert!(!euro.ended && !both.ended);
    assert_eq!(sim.connections(), 2);

    // The gzip copy replays the same lines, here through chunks smaller than a line.
    let gz = start(OandaSimConfig {
        max_chunk_bytes: 16,
        ..replay_config(&capture.gzip)
    });
    let mut yen = open(&gz, "USD_JPY", &[]);
    assert_eq!(lines(&mut yen, 4), [beat, jpy, jpy_later, last_beat]);
    assert!(yen.chunk_sizes.iter().all(|&n| n <= 16), "{:?}", yen.chunk_sizes);

    // A capture that cannot be read is refused at start, naming the file.
    let missing = capture.plain.with_extension("missing");
    let err = oanda::spawn("127.0.0.1:0".parse().unwrap(), replay_config(&missing)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    sim.shutdown();
    gz.shutdown();
}
