//! End-to-end tests of the Bybit v5 simulator over real loopback sockets with a real tungstenite
//! client, checking the wire format against `venues.md` §3 and decoding every frame it sends
//! with the engine's own [`BybitDecoder`].
//!
//! Nothing here sleeps to synchronise or asserts on timing: every wait reads the socket with a
//! short timeout until the expected condition holds, and fails with a message at a generous
//! deadline. The idle-cut tests keep a client busy (or quiet) for a few idle periods, which is
//! the behaviour under test, not a measurement.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use maxx_cold::sim::bybit::{self, BookUpdates, BybitSimConfig, BybitSimHandle};
use maxx_cold::sim::faults::GARBAGE_TEXT;
use maxx_cold::sim::sample_symbols;
use maxx_hot::feed::bybit::parse::BybitDecoder;
use maxx_hot::feed::{Control, DecodeError, Decoded, FrameMeta, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Stamp, Tick, TickBody};
use serde_json::Value;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

/// How long any condition may take before the test fails; far above what it needs.
const DEADLINE: Duration = Duration::from_secs(10);
/// Client read timeout: how often a waiting loop re-checks its condition and deadline.
const READ_POLL: Duration = Duration::from_millis(20);
/// Idle cut used by the idle tests: short, so that a few periods pass quickly.
const IDLE: Duration = Duration::from_millis(300);

/// `u` of each symbol's first top-of-book change in the simulator.
const FIRST_U: u64 = 1_000_000;

const SPOT: &str = "/v5/public/spot";
const LINEAR: &str = "/v5/public/linear";

type Client = WebSocket<TcpStream>;

fn config(seed: u64) -> BybitSimConfig {
    BybitSimConfig {
        events_per_sec: 2_000,
        ..BybitSimConfig::new(seed, sample_symbols())
    }
}

/// Every connection replays the seed from its start, instead of joining one shared market.
fn private_config(seed: u64) -> BybitSimConfig {
    BybitSimConfig {
        shared_market: false,
        ..config(seed)
    }
}

fn start(cfg: BybitSimConfig) -> BybitSimHandle {
    bybit::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("simulator starts")
}

fn connect(sim: &BybitSimHandle, path: &str) -> Client {
    let stream = TcpStream::connect(sim.local_addr()).expect("tcp connect");
    let url = format!("ws://{}{path}", sim.local_addr());
    let (ws, _) = tungstenite::client(url.as_str(), stream).expect("websocket upgrade");
    ws.get_ref().set_read_timeout(Some(READ_POLL)).unwrap();
    ws
}

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

fn timed_out(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// The next text frame, skipping control frames.
fn read_text(ws: &mut Client, until: Instant, what: &str) -> String {
    loop {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        match ws.read() {
            Ok(Message::Text(text)) => return text.as_str().to_owned(),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("connection failed while waiting for {what}: {e}"),
        }
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
}

fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send request");
}

/// Sends a request and returns the raw reply (the first frame that is not a push), with the
/// pushes that arrived before it.
fn request(ws: &mut Client, text: &str) -> (String, Vec<String>) {
    send(ws, text);
    let until = deadline();
    let mut pushes = Vec::new();
    loop {
        let frame = read_text(ws, until, &format!("the reply to {text}"));
        if json(&frame).get("topic").is_none() {
            return (frame, pushes);
        }
        pushes.push(frame);
    }
}

fn subscribe(ws: &mut Client, topics: &[&str]) -> String {
    let args: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    let (reply, _) = request(
        ws,
        &format!(r#"{{"op":"subscribe","args":[{}],"req_id":"sub"}}"#, args.join(",")),
    );
    assert_eq!(json(&reply)["success"], true, "{reply}");
    reply
}

/// Fails unless `keys` appear in `text` in this order.
fn assert_key_order(text: &str, keys: &[&str]) {
    let mut from = 0;
    for key in keys {
        let quoted = format!("\"{key}\":");
        let at = text[from..]
            .find(&quoted)
            .unwrap_or_else(|| panic!("key {key} missing or out of order in {text}"));
        from += at + quoted.len();
    }
}

/// Plausible epoch milliseconds (after 2020, before 2100).
fn assert_ms(v: &Value) {
    let ms = v.as_u64().unwrap_or_else(|| panic!("{v} is not an integer time"));
    assert!(
        (1_577_836_800_000..4_102_444_800_000).contains(&ms),
        "{ms} is not epoch ms"
    );
}

/// A decimal string with exactly `places` decimals (none: no dot).
fn decimal(v: &Value, places: usize) -> &str {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    match s.split_once('.') {
        Some((int, frac)) => {
            assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()), "{s}");
            assert!(
                frac.len() == places && frac.bytes().all(|b| b.is_ascii_digit()),
                "{s}: not {places} places"
            );
        }
        None => assert!(places == 0 && s.bytes().all(|b| b.is_ascii_digit()), "{s}"),
    }
    s
}

/// Decimal places of prices and sizes in [`sample_symbols`]: ticks 0.01, lots 0.00001 / 0.0001.
fn places(symbol: &str) -> (usize, usize) {
    match symbol {
        "BTCUSDT" => (2, 5),
        "ETHUSDT" => (2, 4),
        other => panic!("unexpected symbol {other}"),
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn index() -> InstrumentIndex {
    InstrumentIndex::new(["BTCUSDT", "ETHUSDT"].map(|name| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Bybit.index()] = Some(VenueSymbol::new(name).unwrap());
        (Symbol::new(name).unwrap(), venues)
    }))
    .unwrap()
}

/// The engine's decoder, fed the frames a client receives.
struct Decoder {
    decoder: BybitDecoder,
    index: InstrumentIndex,
    out: TickBatch,
    frames: u64,
}

impl Decoder {
    fn new() -> Self {
        let index = index();
        Self {
            decoder: BybitDecoder::new(index.len()),
            index,
            out: TickBatch::new(),
            frames: 0,
        }
    }

    /// With the engine's own decoder for a spot connection, which takes only decimal trade ids.
    fn spot() -> Self {
        Self {
            decoder: BybitDecoder::spot(2),
            ..Self::new()
        }
    }

    /// Decodes one frame; the ticks are in `self.out`.
    fn decode(&mut self, frame: &str) -> Result<Decoded, DecodeError> {
        self.frames += 1;
        self.out.clear();
        let meta = FrameMeta {
            recv_ns: self.frames,
            stamp: Stamp(self.frames),
        };
        self.decoder.decode(frame.as_bytes(), meta, &self.index, &mut self.out)
    }
}

fn wait_for_connections(sim: &BybitSimHandle, n: usize) {
    let until = deadline();
    while sim.connections() != n {
        assert!(
            Instant::now() < until,
            "{} connections, expected {n}",
            sim.connections()
        );
        std::thread::yield_now();
    }
}

/// Reads until the server closes the connection; returns the close frame's code, if any.
fn read_until_closed(ws: &mut Client, mut on_text: impl FnMut(&str)) -> Option<CloseCode> {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "the connection was never closed");
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| f.code),
            Ok(Message::Text(text)) => on_text(text.as_str()),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and acks.

#[test]
fn subscribe_is_acked_as_documented_on_both_markets() {
    let sim = start(config(3));
    let mut decoder = Decoder::new();

    let mut spot = connect(&sim, SPOT);
    let (ack, _) = request(
        &mut spot,
        r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.1.BTCUSDT"],"req_id":"10001"}"#,
    );
    assert_key_order(&ack, &["success", "ret_msg", "conn_id", "req_id", "op"]);
    let v = json(&ack);
    assert_eq!(
        (&v["success"], &v["ret_msg"], &v["req_id"], &v["op"]),
        (
            &Value::from(true),
            &Value::from("subscribe"),
            &Value::from("10001"),
            &Value::from("subscribe")
        )
    );
    let spot_conn = v["conn_id"].as_str().unwrap().to_owned();
    assert!(is_uuid(&spot_conn), "{spot_conn}");
    assert_eq!(decoder.decode(&ack), Ok(Decoded::Control(Control::Subscribed)));

    // Linear sends an empty `ret_msg`, and `req_id` is empty when the request had none.
    let mut linear = connect(&sim, LINEAR);
    let (ack, _) = request(&mut linear, r#"{"op":"subscribe","args":["orderbook.1.ETHUSDT"]}"#);
    assert_key_order(&ack, &["success", "ret_msg", "conn_id", "req_id", "op"]);
    let v = json(&ack);
    assert_eq!((&v["ret_msg"], &v["req_id"]), (&Value::from(""), &Value::from("")));
    assert_ne!(
        v["conn_id"].as_str().unwrap(),
        spot_conn,
        "each connection has its own id"
    );
    assert_eq!(decoder.decode(&ack), Ok(Decoded::Control(Control::Subscribed)));

    // Unsubscribing is acked the same way.
    let (ack, _) = request(
        &mut spot,
        r#"{"op":"unsubscribe","args":["publicTrade.BTCUSDT"],"req_id":"7"}"#,
    );
    let v = json(&ack);
    assert_eq!(
        (&v["success"], &v["op"], &v["ret_msg"]),
        (
            &Value::from(true),
            &Value::from("unsubscribe"),
            &Value::from("unsubscribe")
        )
    );
    assert_eq!(decoder.decode(&ack), Ok(Decoded::Control(Control::Result { id: 7 })));
}

#[test]
fn bad_topics_and_oversized_requests_are_rejected_whole() {
    let sim = start(config(3));
    let mut decoder = Decoder::new();
    let mut spot = connect(&sim, SPOT);
    for args in [
        r#"["orderbook.50.BTCUSDT"]"#,
        r#"["publicTrade.XRPUSDT"]"#,
        r#"["publicTrade.btcusdt"]"#,
        r#"["tickers.BTCUSDT"]"#,
        r#"["publicTrade.BTCUSDT","trade.BTCUSDT"]"#,
        r#"[1]"#,
        r#"[]"#,
        r#""publicTrade.BTCUSDT""#,
    ] {
        let (ack, pushes) = request(
            &mut spot,
            &format!(r#"{{"op":"subscribe","args":{args},"req_id":"bad"}}"#),
        );
        assert!(pushes.is_empty(), "pushes without a subscription: {pushes:?}");
        assert_key_order(&ack, &["success", "ret_msg", "conn_id", "req_id", "op"]);
        let v = json(&ack);
        assert_eq!(
            (&v["success"], &v["req_id"], &v["op"]),
            (&Value::from(false), &Value::from("bad"), &Value::from("subscribe")),
            "{args}"
        );
        assert!(!v["ret_msg"].as_str().unwrap().is_empty(), "{ack}");
        assert_eq!(
            decoder.decode(&ack),
            Ok(Decoded::Control(Control::SubscribeRejected)),
            "{args}"
        );
    }
    // Spot takes at most 10 args per request; linear states no such limit.
    let eleven: Vec<&str> = ["\"publicTrade.BTCUSDT\""; 11].to_vec();
    let eleven = format!(r#"{{"op":"subscribe","args":[{}]}}"#, eleven.join(","));
    let (ack, _) = request(&mut spot, &eleven);
    assert_eq!(json(&ack)["success"], false, "{ack}");
    let mut linear = connect(&sim, LINEAR);
    let (ack, _) = request(&mut linear, &eleven);
    assert_eq!(json(&ack)["success"], true, "{ack}");
    // Malformed requests get a refusal too, never a dropped connection.
    for bad in ["not json", "[1]", r#"{"op":1}"#, r#"{"op":"auth","args":[]}"#] {
        let (ack, _) = request(&mut spot, bad);
        assert_eq!(json(&ack)["success"], false, "{bad}: {ack}");
    }
    // Nothing was subscribed on spot: a ping's pong comes with no push before it.
    let (pong, pushes) = request(&mut spot, r#"{"op":"ping"}"#);
    assert!(pushes.is_empty(), "{pushes:?}");
    assert_eq!(json(&pong)["ret_msg"], "pong");
}

#[test]
fn pong_answers_op_ping_in_each_markets_shape() {
    let sim = start(config(3));
    let mut decoder = Decoder::new();
    let mut spot = connect(&sim, SPOT);
    let conn_id = json(&subscribe(&mut spot, &["orderbook.1.BTCUSDT"]))["conn_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (pong, _) = request(&mut spot, r#"{"op":"ping"}"#);
    assert_eq!(
        pong,
        format!(r#"{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","op":"ping"}}"#)
    );
    assert_eq!(decoder.decode(&pong), Ok(Decoded::Control(Control::Heartbeat)));
    let (pong, _) = request(&mut spot, r#"{"req_id":"100001","op":"ping"}"#);
    assert_eq!(
        pong,
        format!(r#"{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","req_id":"100001","op":"ping"}}"#)
    );

    let mut linear = connect(&sim, LINEAR);
    let (pong, _) = request(&mut linear, r#"{"op":"ping"}"#);
    assert_key_order(&pong, &["success", "ret_msg", "conn_id", "req_id", "op"]);
    let v = json(&pong);
    assert_eq!(
        (&v["ret_msg"], &v["req_id"], &v["op"]),
        (&Value::from("pong"), &Value::from(""), &Value::from("ping"))
    );
    assert_eq!(decoder.decode(&pong), Ok(Decoded::Control(Control::Heartbeat)));
}

#[test]
fn unknown_paths_are_refused_with_404() {
    let sim = start(config(3));
    for path in ["/v5/public/option", "/v5/public/inverse", "/ws", "/v5/private"] {
        let stream = TcpStream::connect(sim.local_addr()).unwrap();
        let url = format!("ws://{}{path}", sim.local_addr());
        match tungstenite::client(url.as_str(), stream) {
            Err(HandshakeError::Failure(WsError::Http(response))) => {
                assert_eq!(response.status().as_u16(), 404, "{path}");
            }
            Err(e) => panic!("{path}: expected HTTP 404, got {e}"),
            Ok(_) => panic!("{path}: expected HTTP 404, got an upgrade"),
        }
    }
    // A query string is ignored, as the public endpoints take none.
    let mut ws = connect(&sim, "/v5/public/linear?max_active_time=60s");
    subscribe(&mut ws, &["publicTrade.BTCUSDT"]);
}

#[test]
fn unusable_configuration_is_refused_before_binding() {
    let refused = |cfg: BybitSimConfig| {
        let err = bybit::spawn("127.0.0.1:0".parse().unwrap(), cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    };
    refused(BybitSimConfig {
        idle_timeout: Duration::ZERO,
        ..config(1)
    });
    refused(BybitSimConfig {
        events_per_sec: 0,
        ..config(1)
    });
    refused(BybitSimConfig {
        market_log: 0,
        ..config(1)
    });
    refused(BybitSimConfig {
        symbols: Vec::new(),
        ..config(1)
    });
    let mut twice = sample_symbols();
    twice.push(twice[0]);
    refused(BybitSimConfig {
        symbols: twice,
        ..config(1)
    });
}

// ---------------------------------------------------------------------------------------------
// Pushes.

/// Checks one `publicTrade` push; returns its symbol and its trades' `i` values.
fn check_trades(text: &str, linear: bool) -> (String, Vec<String>) {
    assert_key_order(text, &["topic", "type", "ts", "data"]);
    let v = json(text);
    let topic = v["topic"].as_str().unwrap();
    let symbol = topic.strip_prefix("publicTrade.").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(v["type"], "snapshot");
    assert_ms(&v["ts"]);
    let trades = v["data"].as_array().unwrap_or_else(|| panic!("{text}"));
    assert!(!trades.is_empty() && trades.len() <= 1024, "{text}");
    let (price_places, qty_places) = places(symbol);
    let mut ids = Vec::new();
    for trade in trades {
        let keys: Vec<&str> = trade.as_object().unwrap().keys().map(String::as_str).collect();
        let expected: &[&str] = if linear {
            &["T", "s", "S", "v", "p", "L", "i", "BT", "seq"]
        } else {
            &["T", "s", "S", "v", "p", "i", "BT", "seq"]
        };
        assert_eq!(keys, expected, "{text}");
        assert_ms(&trade["T"]);
        assert_eq!(trade["s"], symbol);
        assert!(trade["S"] == "Buy" || trade["S"] == "Sell", "{text}");
        let qty: Qty = decimal(&trade["v"], qty_places).parse().unwrap();
        let price: Price = decimal(&trade["p"], price_places).parse().unwrap();
        assert!(qty > Qty::ZERO && price > Price::ZERO, "{text}");
        if linear {
            let l = trade["L"].as_str().unwrap();
            assert!(
                ["PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick"].contains(&l),
                "{l}"
            );
        }
        assert_eq!(trade["BT"], false);
        assert!(trade["seq"].as_u64().is_some(), "{text}");
        ids.push(trade["i"].as_str().unwrap().to_owned());
    }
    (symbol.to_owned(), ids)
}

#[test]
fn trades_carry_the_documented_fields_on_both_markets() {
    let sim = start(config(5));
    for linear in [false, true] {
        let mut ws = connect(&sim, if linear { LINEAR } else { SPOT });
        subscribe(&mut ws, &["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]);
        let until = deadline();
        let mut last_id = [None::<u64>; 2];
        let mut ids = Vec::new();
        let mut batched = 0;
        while ids.len() < 300 {
            let text = read_text(&mut ws, until, "trades");
            let (symbol, trade_ids) = check_trades(&text, linear);
            batched += usize::from(trade_ids.len() > 1);
            for id in trade_ids {
                if linear {
                    assert!(is_uuid(&id), "{id}");
                } else {
                    // Spot ids are digits, consecutive per symbol: nothing is lost.
                    let n: u64 = id.parse().unwrap_or_else(|_| panic!("spot id {id} is not a number"));
                    let slot = &mut last_id[usize::from(symbol == "ETHUSDT")];
                    if let Some(last) = *slot {
                        assert_eq!(n, last + 1, "{symbol}");
                    }
                    *slot = Some(n);
                }
                ids.push((symbol.clone(), id));
            }
        }
        // Sweeps through several levels come as one message.
        assert!(batched > 0, "no message carried more than one trade");
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "trade ids repeat within a symbol");
    }
}

/// The `[price, size]` entries of one side of a book push, as sent.
type Entries = Vec<(String, String)>;

/// Checks one `orderbook.1` push; returns its type, `u`, bid and ask entries.
fn check_book(text: &str) -> (String, u64, Entries, Entries) {
    // Level 1 puts `ts` before `type` on both markets.
    assert_key_order(text, &["topic", "ts", "type", "data", "s", "b", "a", "u", "seq", "cts"]);
    let v = json(text);
    let symbol = v["topic"]
        .as_str()
        .unwrap()
        .strip_prefix("orderbook.1.")
        .unwrap_or_else(|| panic!("{text}"));
    assert_ms(&v["ts"]);
    assert_ms(&v["cts"]);
    let data = &v["data"];
    assert_eq!(data["s"], symbol);
    assert!(data["seq"].as_u64().is_some(), "{text}");
    let (price_places, qty_places) = places(symbol);
    let side = |levels: &Value| -> Entries {
        levels
            .as_array()
            .unwrap_or_else(|| panic!("{text}"))
            .iter()
            .map(|l| {
                let l = l.as_array().unwrap();
                assert_eq!(l.len(), 2, "{text}");
                let size = l[1].as_str().unwrap();
                let size = if size == "0" { size } else { decimal(&l[1], qty_places) };
                (decimal(&l[0], price_places).to_owned(), size.to_owned())
            })
            .collect()
    };
    (
        v["type"].as_str().unwrap().to_owned(),
        data["u"].as_u64().unwrap(),
        side(&data["b"]),
        side(&data["a"]),
    )
}

#[test]
fn level_one_books_are_snapshots_by_default() {
    let sim = start(config(5));
    let mut ws = connect(&sim, SPOT);
    subscribe(&mut ws, &["orderbook.1.BTCUSDT"]);
    let until = deadline();
    let mut last_u = 0;
    for _ in 0..200 {
        let text = read_text(&mut ws, until, "book pushes");
        let (kind, u, bids, asks) = check_book(&text);
        assert_eq!(kind, "snapshot");
        assert!(u > last_u, "u went from {last_u} to {u}");
        last_u = u;
        assert_eq!((bids.len(), asks.len()), (1, 1), "{text}");
        let (bid, ask): (Price, Price) = (bids[0].0.parse().unwrap(), asks[0].0.parse().unwrap());
        assert!(bid < ask, "{text}");
    }
}

/// Reads `n` level-1 pushes for BTCUSDT and decodes them; returns the quotes by `u`.
fn book_quotes(sim: &BybitSimHandle, n: usize, deltas: bool) -> Vec<(u64, TickBody)> {
    let mut ws = connect(sim, LINEAR);
    subscribe(&mut ws, &["orderbook.1.BTCUSDT"]);
    let mut decoder = Decoder::new();
    let until = deadline();
    let mut quotes = Vec::new();
    for i in 0..n {
        let text = read_text(&mut ws, until, "book pushes");
        let (kind, _, bids, asks) = check_book(&text);
        // Quiet books are sent again as snapshots after 3 s; at this rate that never happens.
        assert_eq!(kind == "snapshot", i == 0 || !deltas, "push {i} is a {kind}");
        if kind == "delta" {
            // A side that changed price carries the new level and the old one deleted.
            for side in [&bids, &asks] {
                assert!(side.len() <= 2, "{text}");
                assert_eq!(
                    side.iter().filter(|(_, size)| size == "0").count(),
                    side.len() / 2,
                    "{text}"
                );
            }
        }
        match decoder.decode(&text) {
            Ok(Decoded::Tick(Tick { seq, body, .. })) => quotes.push((seq, body)),
            other => panic!("{text} decoded to {other:?}"),
        }
        assert_eq!(decoder.out.gaps, 0, "{text}");
    }
    quotes
}

#[test]
fn level_one_deltas_rebuild_exactly_the_snapshots() {
    // Two simulators of one seed, each replaying the market from its start to every connection,
    // so the same `u` is the same top of book on both (shared markets would each have moved on
    // by the time the second one is read).
    let snapshots = start(BybitSimConfig {
        book_updates: BookUpdates::Snapshots,
        ..private_config(8)
    });
    let deltas = start(BybitSimConfig {
        book_updates: BookUpdates::Deltas,
        ..private_config(8)
    });
    let truth = book_quotes(&snapshots, 400, false);
    let rebuilt = book_quotes(&deltas, 400, true);
    let mut compared = 0;
    for (u, quote) in &rebuilt {
        if let Some((_, expected)) = truth.iter().find(|(t, _)| t == u) {
            assert_eq!(quote, expected, "u {u}");
            compared += 1;
        }
    }
    assert!(compared > 100, "only {compared} updates in common");
}

// ---------------------------------------------------------------------------------------------
// One market timeline.

/// One BTCUSDT trade as a spot connection received it: everything but the message's `ts`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SeenTrade {
    id: u64,
    time: u64,
    side: String,
    price: String,
    size: String,
    seq: u64,
}

/// One BTCUSDT level-1 push as received: type, `u`, `seq`, `cts` and the levels.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SeenBook {
    kind: String,
    u: u64,
    seq: u64,
    cts: u64,
    bids: Entries,
    asks: Entries,
}

/// What one spot connection subscribed to BTCUSDT trades and level 1 has received.
#[derive(Default)]
struct Seen {
    trades: Vec<SeenTrade>,
    books: Vec<SeenBook>,
}

impl Seen {
    /// Reads one push and records it.
    fn read(&mut self, ws: &mut Client, until: Instant) {
        let text = read_text(ws, until, "BTCUSDT pushes");
        let v = json(&text);
        if v["topic"] == "publicTrade.BTCUSDT" {
            check_trades(&text, false);
            for t in v["data"].as_array().unwrap() {
                self.trades.push(SeenTrade {
                    id: t["i"].as_str().unwrap().parse().unwrap(),
                    time: t["T"].as_u64().unwrap(),
                    side: t["S"].as_str().unwrap().to_owned(),
                    price: t["p"].as_str().unwrap().to_owned(),
                    size: t["v"].as_str().unwrap().to_owned(),
                    seq: t["seq"].as_u64().unwrap(),
                });
            }
        } else if v["topic"] == "orderbook.1.BTCUSDT" {
            let (kind, u, bids, asks) = check_book(&text);
            self.books.push(SeenBook {
                kind,
                u,
                seq: v["data"]["seq"].as_u64().unwrap(),
                cts: v["cts"].as_u64().unwrap(),
                bids,
                asks,
            });
        } else {
            panic!("unexpected push {text}");
        }
    }

    fn last_trade(&self) -> u64 {
        self.trades.last().map_or(0, |t| t.id)
    }

    fn last_u(&self) -> u64 {
        self.books.last().map_or(0, |b| b.u)
    }
}

#[test]
fn overlapping_connections_share_one_market_timeline() {
    let sim = start(config(21));
    let topics = ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"];
    let until = deadline();
    let mut early = connect(&sim, SPOT);
    subscribe(&mut early, &topics);
    let mut first = Seen::default();
    while first.trades.len() < 30 || first.books.len() < 30 {
        first.read(&mut early, until);
    }
    let read_before = first.last_trade();
    // The second connection joins while the first is live, as a make-before-break resubscribe
    // would: at the live end, mid-stream, after everything the first one has read.
    let mut late = connect(&sim, SPOT);
    subscribe(&mut late, &topics);
    let mut second = Seen::default();
    while second.trades.len() < 40 || second.books.len() < 40 {
        second.read(&mut late, until);
    }
    let joined = second.trades[0].id;
    assert!(joined > 1, "the later connection joined mid-stream, yet got trade id 1");
    assert!(
        joined > read_before,
        "the later connection saw a trade from before it joined"
    );
    for pair in second.trades.windows(2) {
        assert_eq!(
            pair[1].id,
            pair[0].id + 1,
            "trade ids are consecutive on one connection"
        );
    }
    // Its first book push is a snapshot of the book as it stood, under the current `u`: nothing
    // about it says the connection is new.
    assert_eq!(second.books[0].kind, "snapshot");
    assert!(
        second.books[0].u > FIRST_U,
        "the later connection's book starts from the market's `u`, not the first one"
    );
    // The first connection reads on past everything the second one has seen.
    while first.last_trade() < second.last_trade() || first.last_u() < second.last_u() {
        first.read(&mut early, until);
    }
    // Over the overlap both saw the same trades under the same ids, with the same times and
    // cross sequences (the event's, not the moment each connection sent it).
    let at = first
        .trades
        .iter()
        .position(|t| t.id == joined)
        .expect("the first connection saw the later one's first trade");
    assert_eq!(&first.trades[at..at + second.trades.len()], &second.trades[..]);
    // And the same book under the same `u`, the later connection's opening snapshot included.
    for book in &second.books {
        let same = first
            .books
            .iter()
            .find(|b| b.u == book.u)
            .unwrap_or_else(|| panic!("the first connection never saw u {}", book.u));
        assert_eq!(
            (same.seq, same.cts, &same.bids, &same.asks),
            (book.seq, book.cts, &book.bids, &book.asks),
            "u {}",
            book.u
        );
    }
}

#[test]
fn private_markets_replay_the_seed_to_every_connection() {
    let sim = start(private_config(21));
    let topics = ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"];
    let until = deadline();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(&sim, SPOT);
        subscribe(&mut ws, &topics);
        let mut seen = Seen::default();
        while seen.trades.len() < 30 {
            seen.read(&mut ws, until);
        }
        runs.push(seen);
    }
    // Each connection starts from trade id 1; only the times differ between them.
    let content = |seen: &Seen| -> Vec<(u64, String, String, String, u64)> {
        seen.trades
            .iter()
            .take(30)
            .map(|t| (t.id, t.side.clone(), t.price.clone(), t.size.clone(), t.seq))
            .collect()
    };
    assert_eq!(runs[0].trades[0].id, 1, "a private market starts at trade id 1");
    assert_eq!(content(&runs[0]), content(&runs[1]));
}

#[test]
fn a_reader_that_falls_behind_the_market_log_is_dropped() {
    // A fast market and a short log: a connection whose client stops reading soon stalls on a
    // full socket and falls more than 512 events behind.
    let sim = start(BybitSimConfig {
        events_per_sec: 50_000,
        market_log: 512,
        ..config(5)
    });
    let mut slow = connect(&sim, SPOT);
    send(
        &mut slow,
        r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.1.BTCUSDT","publicTrade.ETHUSDT","orderbook.1.ETHUSDT"]}"#,
    );
    // The client reads nothing until the simulator has given up on it.
    wait_for_connections(&sim, 0);
    assert_eq!(sim.lagged(), 1, "the drop was for lagging, not for another reason");
    // The client then finds what was sent before the drop, and the end of the connection (the
    // close frame is best effort: it may not have fitted behind the unread data).
    let until = deadline();
    loop {
        assert!(
            Instant::now() < until,
            "the slow client never saw the end of its connection"
        );
        match slow.read() {
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(frame.code, CloseCode::Policy);
                assert_eq!(frame.reason.as_str(), "slow consumer");
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every frame decodes.

#[test]
fn every_frame_the_simulator_sends_decodes_without_errors() {
    for (path, updates) in [
        (SPOT, BookUpdates::Snapshots),
        (LINEAR, BookUpdates::Snapshots),
        (SPOT, BookUpdates::Deltas),
        (LINEAR, BookUpdates::Deltas),
    ] {
        let sim = start(BybitSimConfig {
            book_updates: updates,
            ..config(11)
        });
        let mut ws = connect(&sim, path);
        let mut decoder = if path == SPOT { Decoder::spot() } else { Decoder::new() };
        send(
            &mut ws,
            r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.1.BTCUSDT","publicTrade.ETHUSDT","orderbook.1.ETHUSDT"],"req_id":"1"}"#,
        );
        let until = deadline();
        let (mut subscribed, mut heartbeats, mut trades, mut quotes, mut gaps) = (0, 0, 0, 0, 0);
        let mut last_trade_seq = [None::<u64>; 2];
        for n in 0..3_000 {
            if n % 500 == 0 {
                send(&mut ws, r#"{"op":"ping"}"#);
            }
            let text = read_text(&mut ws, until, "frames");
            let decoded = decoder
                .decode(&text)
                .unwrap_or_else(|e| panic!("{path} {updates:?}: {e}: {text}"));
            gaps += decoder.out.gaps;
            match decoded {
                Decoded::Control(Control::Subscribed) => subscribed += 1,
                Decoded::Control(Control::Heartbeat) => heartbeats += 1,
                Decoded::Tick(tick) => {
                    assert!(
                        matches!(tick.body, TickBody::Quote { bid, ask, .. } if bid < ask),
                        "{text}"
                    );
                    quotes += 1;
                }
                Decoded::Ticks => {
                    for tick in decoder.out.as_slice() {
                        assert!(matches!(tick.body, TickBody::Trade { .. }));
                        // Spot trade ids are numbers, consecutive per instrument.
                        if path == SPOT {
                            let last = &mut last_trade_seq[tick.instrument.index()];
                            if let Some(last) = *last {
                                assert_eq!(tick.seq, last + 1, "{text}");
                            }
                            *last = Some(tick.seq);
                        }
                        trades += 1;
                    }
                }
                other => panic!("{path} {updates:?}: unexpected {other:?} from {text}"),
            }
        }
        assert_eq!((subscribed, gaps), (1, 0), "{path} {updates:?}");
        assert!(heartbeats >= 5, "{path} {updates:?}: {heartbeats} pongs");
        assert!(
            trades > 500 && quotes > 500,
            "{path} {updates:?}: {trades} trades, {quotes} quotes"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Idle cut.

#[test]
fn a_client_that_neither_pings_nor_receives_is_cut_after_the_idle_timeout() {
    let sim = start(BybitSimConfig {
        idle_timeout: IDLE,
        ..config(3)
    });
    let mut quiet = connect(&sim, LINEAR);
    assert_eq!(
        read_until_closed(&mut quiet, |t| panic!("unexpected {t}")),
        Some(CloseCode::Normal)
    );
    wait_for_connections(&sim, 0);
}

#[test]
fn pings_or_pushes_keep_a_connection_past_the_idle_timeout() {
    // Longer than `IDLE`, so that a loaded machine pausing this thread between two pings for a
    // moment does not look like an idle client.
    let idle = Duration::from_secs(1);
    let sim = start(BybitSimConfig {
        idle_timeout: idle,
        ..config(3)
    });
    // One client pings every 50 ms and subscribes to nothing; the other only receives pushes.
    let mut pinging = connect(&sim, SPOT);
    let mut receiving = connect(&sim, LINEAR);
    subscribe(&mut receiving, &["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"]);
    for ws in [&mut pinging, &mut receiving] {
        ws.get_ref().set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    }
    let begin = Instant::now();
    let mut next_ping = begin;
    let (mut pongs, mut pushes) = (0, 0);
    while begin.elapsed() < 3 * idle {
        if Instant::now() >= next_ping {
            send(&mut pinging, r#"{"op":"ping"}"#);
            next_ping += Duration::from_millis(50);
        }
        for (ws, count) in [(&mut pinging, &mut pongs), (&mut receiving, &mut pushes)] {
            match ws.read() {
                Ok(Message::Text(_)) => *count += 1,
                Ok(Message::Close(frame)) => panic!("closed while active: {frame:?}"),
                Ok(_) => {}
                Err(e) if timed_out(&e) => {}
                Err(e) => panic!("dropped while active: {e}"),
            }
        }
    }
    assert!(pongs > 0 && pushes > 0, "{pongs} pongs, {pushes} pushes");
    assert_eq!(sim.connections(), 2);
    // Once the pinging client stops, it is cut like any idle one.
    pinging.get_ref().set_read_timeout(Some(READ_POLL)).unwrap();
    assert_eq!(read_until_closed(&mut pinging, |_| {}), Some(CloseCode::Normal));
}

// ---------------------------------------------------------------------------------------------
// Faults and shutdown.

/// Reads frames, decoding each, until `done` says so; it sees each result and its gap count.
fn read_until(ws: &mut Client, decoder: &mut Decoder, what: &str, mut done: impl FnMut(&Decoded, u32) -> bool) {
    let until = deadline();
    loop {
        let text = read_text(ws, until, what);
        let decoded = decoder.decode(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        if done(&decoded, decoder.out.gaps) {
            return;
        }
    }
}

#[test]
fn a_silent_feed_pushes_nothing_and_answers_no_ping_then_resumes_after_a_gap() {
    let sim = start(BybitSimConfig {
        book_updates: BookUpdates::Deltas,
        ..config(9)
    });
    let mut ws = connect(&sim, LINEAR);
    let mut decoder = Decoder::new();
    send(
        &mut ws,
        r#"{"op":"subscribe","args":["orderbook.1.BTCUSDT","orderbook.1.ETHUSDT","publicTrade.BTCUSDT"],"req_id":"1"}"#,
    );
    let mut quotes = 0;
    read_until(&mut ws, &mut decoder, "quotes", |d, _| {
        quotes += usize::from(matches!(d, Decoded::Tick(_)));
        quotes >= 20
    });
    sim.faults().set_silent(true);
    // Frames queued before the switch may still arrive; the ack to a later request marks the
    // point after which nothing but acks may come.
    let (_, _) = request(
        &mut ws,
        r#"{"op":"subscribe","args":["publicTrade.ETHUSDT"],"req_id":"2"}"#,
    );
    send(&mut ws, r#"{"op":"ping"}"#);
    // Hold the silence for a while (the market moves on meanwhile), reading everything.
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet_until {
        match ws.read() {
            Ok(Message::Text(text)) => panic!("a silent feed sent {text}"),
            Ok(Message::Close(frame)) => panic!("a silent feed closed the connection: {frame:?}"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the silent feed dropped the connection: {e}"),
        }
    }
    let (ack, _) = request(
        &mut ws,
        r#"{"op":"subscribe","args":["publicTrade.BTCUSDT"],"req_id":"3"}"#,
    );
    assert_eq!(json(&ack)["req_id"], "3", "acks still flow while silent: {ack}");

    sim.faults().set_silent(false);
    // Pushes resume; the level-1 deltas jump over the changes sent while silent: a gap.
    let mut gaps = 0;
    let mut pong = false;
    send(&mut ws, r#"{"op":"ping"}"#);
    read_until(&mut ws, &mut decoder, "pushes after the silence", |d, g| {
        gaps += g;
        pong |= matches!(d, Decoded::Control(Control::Heartbeat));
        pong && gaps > 0
    });
    assert_eq!(sim.connections(), 1);
}

#[test]
fn a_deaf_server_ignores_op_ping_but_keeps_pushing() {
    let sim = start(config(9));
    let mut ws = connect(&sim, SPOT);
    subscribe(&mut ws, &["publicTrade.BTCUSDT"]);
    sim.faults().set_deaf(true);
    // Requests other than ping are still answered; that ack marks the switch.
    subscribe(&mut ws, &["publicTrade.ETHUSDT"]);
    send(&mut ws, r#"{"op":"ping"}"#);
    let until = deadline();
    let mut pushes = 0;
    while pushes < 200 {
        let text = read_text(&mut ws, until, "trades while deaf");
        assert!(json(&text).get("topic").is_some(), "a deaf server replied: {text}");
        pushes += 1;
    }
    sim.faults().set_deaf(false);
    // The ignored ping stays unanswered; a new one gets its pong.
    let (pong, _) = request(&mut ws, r#"{"op":"ping","req_id":"again"}"#);
    assert_eq!(json(&pong)["req_id"], "again", "{pong}");
}

#[test]
fn a_deaf_server_cuts_a_client_whose_pings_it_ignores() {
    let sim = start(BybitSimConfig {
        idle_timeout: IDLE,
        ..config(9)
    });
    sim.faults().set_deaf(true);
    let mut ws = connect(&sim, LINEAR);
    let until = deadline();
    let mut next_ping = Instant::now();
    loop {
        assert!(Instant::now() < until, "never cut");
        if Instant::now() >= next_ping {
            // The socket may already be closing; a failed send is the cut arriving.
            let _ = ws.send(Message::text(r#"{"op":"ping"}"#));
            next_ping += Duration::from_millis(50);
        }
        match ws.read() {
            Ok(Message::Text(text)) => panic!("a deaf server answered: {text}"),
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
}

/// Reads until the connection fails; panics if a close frame arrives first.
fn expect_abrupt_end(ws: &mut Client) {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "the connection was never dropped");
        match ws.read() {
            Ok(Message::Close(frame)) => panic!("expected an abrupt drop, got a close frame {frame:?}"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_)) => return,
            Err(e) => panic!("expected an abrupt drop, got {e}"),
        }
    }
}

#[test]
fn drop_all_cuts_every_connection_without_a_close_frame() {
    let sim = start(config(9));
    let mut spot = connect(&sim, SPOT);
    let mut linear = connect(&sim, LINEAR);
    subscribe(&mut spot, &["publicTrade.BTCUSDT"]);
    subscribe(&mut linear, &["orderbook.1.ETHUSDT"]);
    sim.faults().drop_all();
    expect_abrupt_end(&mut spot);
    expect_abrupt_end(&mut linear);
    wait_for_connections(&sim, 0);
    // A connection made after the fault starts clean.
    let mut fresh = connect(&sim, SPOT);
    subscribe(&mut fresh, &["publicTrade.BTCUSDT"]);
    read_text(&mut fresh, deadline(), "a trade after the drop");
}

#[test]
fn injected_garbage_arrives_between_pushes_and_is_refused_by_the_decoder() {
    let sim = start(config(9));
    let mut ws = connect(&sim, SPOT);
    let mut decoder = Decoder::new();
    subscribe(&mut ws, &["publicTrade.BTCUSDT"]);
    sim.faults().inject_garbage(6);
    let until = deadline();
    let mut garbage = Vec::new();
    loop {
        assert!(Instant::now() < until, "garbage so far: {garbage:?}");
        match ws.read() {
            Ok(Message::Text(text)) => {
                let decoded = decoder.decode(text.as_str());
                if let Some(g) = GARBAGE_TEXT.iter().find(|g| **g == text.as_str()) {
                    assert!(decoded.is_err(), "garbage {g} decoded to {decoded:?}");
                    garbage.push(*g);
                    continue;
                }
                assert!(garbage.is_empty(), "a push inside the injection: {text}");
                assert_eq!(decoded, Ok(Decoded::Ticks), "{text}");
            }
            Ok(Message::Binary(bytes)) => {
                assert!(std::str::from_utf8(&bytes).is_err(), "the binary frame is valid UTF-8");
                assert!(decoder.decode(&String::from_utf8_lossy(&bytes)).is_err());
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the connection failed during the injection: {e}"),
        }
    }
    let expected: Vec<&str> = GARBAGE_TEXT.iter().cycle().take(6).copied().collect();
    assert_eq!(garbage, expected);
    // The pushes go on after the garbage.
    let text = read_text(&mut ws, deadline(), "a trade after the garbage");
    assert_eq!(decoder.decode(&text), Ok(Decoded::Ticks));
}

#[test]
fn announced_maintenance_closes_connections_but_not_the_venue() {
    let sim = start(config(9));
    let mut spot = connect(&sim, SPOT);
    let mut linear = connect(&sim, LINEAR);
    subscribe(&mut spot, &["publicTrade.BTCUSDT"]);
    subscribe(&mut linear, &["publicTrade.BTCUSDT"]);
    sim.faults().announce_shutdown();
    assert_eq!(read_until_closed(&mut spot, |_| {}), Some(CloseCode::Away));
    assert_eq!(read_until_closed(&mut linear, |_| {}), Some(CloseCode::Away));
    wait_for_connections(&sim, 0);
    let mut fresh = connect(&sim, LINEAR);
    subscribe(&mut fresh, &["publicTrade.ETHUSDT"]);
    read_text(&mut fresh, deadline(), "a trade after the maintenance notice");
}

#[test]
fn shutdown_closes_every_connection() {
    let sim = start(config(9));
    let addr = sim.local_addr();
    let mut spot = connect(&sim, SPOT);
    let mut linear = connect(&sim, LINEAR);
    subscribe(&mut linear, &["orderbook.1.BTCUSDT"]);
    assert_eq!(sim.connections(), 2);
    sim.shutdown();
    assert_eq!(read_until_closed(&mut spot, |_| {}), Some(CloseCode::Away));
    assert_eq!(read_until_closed(&mut linear, |_| {}), Some(CloseCode::Away));
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is still open after shutdown"
    );
}

/// A capture written by a test, plain and gzip-compressed, removed when dropped.
struct TempCapture {
    plain: std::path::PathBuf,
    gzip: std::path::PathBuf,
}

impl TempCapture {
    fn new(name: &str, lines: &[String]) -> Self {
        let base = format!("maxx-sim-bybit-{}-{name}", std::process::id());
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

/// Connects to `path`, subscribes to `topics` and returns the ack and the `n` pushes after it.
fn replayed(sim: &BybitSimHandle, path: &str, topics: &[&str], n: usize) -> (Client, String, Vec<String>) {
    let mut ws = connect(sim, path);
    let args: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    let (ack, early) = request(
        &mut ws,
        &format!(r#"{{"op":"subscribe","args":[{}],"req_id":"replay"}}"#, args.join(",")),
    );
    assert_eq!(json(&ack)["success"], true, "{ack}");
    assert!(early.is_empty(), "pushes before the ack: {early:?}");
    let until = deadline();
    let frames = (0..n).map(|_| read_text(&mut ws, until, "replayed pushes")).collect();
    (ws, ack, frames)
}

#[test]
fn replay_serves_captured_frames_by_topic_byte_for_byte() {
    let trade = |symbol: &str, id: &str, seq: u64| {
        format!(
            r#"{{"topic":"publicTrade.{symbol}","type":"snapshot","ts":1672304486868,"data":[{{"T":1672304486865,"s":"{symbol}","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"{id}","BT":false,"seq":{seq}}}]}}"#
        )
    };
    let level1 = |symbol: &str, u: u64| {
        format!(
            r#"{{"topic":"orderbook.1.{symbol}","ts":1672304484978,"type":"snapshot","data":{{"s":"{symbol}","b":[["16493.50","0.006"]],"a":[["16611.00","0.029"]],"u":{u},"seq":7961638724}},"cts":1672304484976}}"#
        )
    };
    // Spaces show that frames are sent as captured, not re-encoded.
    let btc_trade = r#"{"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": [{"T": 1672304486865, "s": "BTCUSDT", "S": "Sell", "v": "0.001", "p": "16578.50", "i": "2290000000067897133", "BT": false, "seq": 1}]}"#.to_owned();
    let btc_book = level1("BTCUSDT", 18521288);
    let eth_trade = trade("ETHUSDT", "20f43950-d8dd-5b31-9112-a178eb6023af", 2);
    let btc_depth = r#"{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1687940967466,"data":{"s":"BTCUSDT","b":[["30247.20","30.028"]],"a":[["30248.70","0"]],"u":177400507,"seq":66544703342},"cts":1687940967464}"#.to_owned();
    let eth_ticker = r#"{"topic":"tickers.ETHUSDT","ts":1673853746003,"type":"snapshot","cs":2588407389,"data":{"symbol":"ETHUSDT","lastPrice":"1546.42","highPrice24h":"1569.97","lowPrice24h":"1515.82","prevPrice24h":"1524.95","volume24h":"158006.7339","turnover24h":"245069018.28","price24hPcnt":"0.0141","usdIndexPrice":"1546.47"}}"#.to_owned();
    let btc_trade_2 = trade("BTCUSDT", "2290000000067897134", 3);
    let eth_book = level1("ETHUSDT", 3);
    let btc_book_2 = level1("BTCUSDT", 18521289);
    // Each connection's last push comes after every line it must not get, so receiving it
    // proves that those were skipped.
    let lines: Vec<String> = [
        "# Bybit v5 capture written by the test".to_owned(),
        r#"1000000000 {"success":true,"ret_msg":"subscribe","conn_id":"cfbe0e3c","req_id":"1","op":"subscribe"}"#
            .to_owned(),
        format!("1001000000 {btc_trade}"),
        format!("1002000000 {btc_book}"),
        format!("1003000000 {eth_trade}"),
        r#"1003500000 {"success":true,"ret_msg":"pong","conn_id":"cfbe0e3c","op":"ping"}"#.to_owned(),
        // A push-shaped `op` reply is still a reply.
        r#"1003600000 {"op":"subscribe","topic":"publicTrade.BTCUSDT","data":[]}"#.to_owned(),
        "not a capture line".to_owned(),
        r#"1004000000 {"topic":"publicTrade.BTCUSDT","data":["#.to_owned(),
        r#"1004200000 {"topic":"publicTrade.BTCUSDT"}"#.to_owned(),
        format!("1004500000 {}", trade("XRPUSDT", "1", 4)),
        format!("1005000000 {btc_depth}"),
        format!("1005500000 {eth_ticker}"),
        r#"1006000000 {"topic":"kline.1.BTCUSDT","data":[{"start":1672324800000}],"ts":1672324988882,"type":"snapshot"}"#
            .to_owned(),
        format!("1006500000 {}", btc_book.replace("orderbook.1.", "orderbook.7.")),
        format!("1007000000 {btc_trade_2}"),
        format!("1008000000 {eth_book}"),
        format!("1009000000 {btc_book_2}"),
    ]
    .into();
    let capture = TempCapture::new("replay", &lines);
    let replay_config = |path: &std::path::Path| BybitSimConfig {
        replay: Some(path.to_owned()),
        ..config(7)
    };
    let sim = start(replay_config(&capture.plain));

    // Spot, BTC trades and level 1: exactly the captured frames, in order, nothing generated.
    let btc_topics = ["publicTrade.BTCUSDT", "orderbook.1.BTCUSDT"];
    let (mut spot, ack, frames) = replayed(&sim, SPOT, &btc_topics, 4);
    assert_eq!(
        frames,
        [
            btc_trade.clone(),
            btc_book.clone(),
            btc_trade_2.clone(),
            btc_book_2.clone()
        ]
    );
    let conn_id = json(&ack)["conn_id"].as_str().unwrap().to_owned();
    // The simulator still answers pings itself, in the spot shape.
    let (pong, pushes) = request(&mut spot, r#"{"op":"ping"}"#);
    assert_eq!(
        pong,
        format!(r#"{{"success":true,"ret_msg":"pong","conn_id":"{conn_id}","op":"ping"}}"#)
    );
    assert!(pushes.is_empty(), "{pushes:?}");

    // A later connection replays from the first line; a replaying simulator also serves the
    // captured deeper books and tickers.
    let eth_topics = [
        "publicTrade.ETHUSDT",
        "orderbook.50.BTCUSDT",
        "tickers.ETHUSDT",
        "orderbook.1.ETHUSDT",
    ];
    let (_, _, frames) = replayed(&sim, LINEAR, &eth_topics, 4);
    assert_eq!(frames, [eth_trade, btc_depth, eth_ticker, eth_book]);

    // The gzip copy replays the same frames.
    let gz = start(replay_config(&capture.gzip));
    let (_, _, frames) = replayed(&gz, SPOT, &btc_topics, 4);
    assert_eq!(frames, [btc_trade, btc_book, btc_trade_2, btc_book_2]);

    // A capture that cannot be read is refused at start, naming the file.
    let missing = capture.plain.with_extension("missing");
    let err = bybit::spawn("127.0.0.1:0".parse().unwrap(), replay_config(&missing)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
}
