//! End-to-end tests of the Binance Spot simulator over real loopback sockets with a real
//! tungstenite client, checking the wire format against `venues.md` §1.
//!
//! Nothing here sleeps to synchronise or asserts on timing: every wait reads the socket with a
//! short timeout until the expected condition holds, and fails with a message at a generous
//! deadline.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use maxx_cold::sim::faults::GARBAGE_TEXT;
use maxx_cold::sim::{self, BinanceSimConfig, SimHandle};
use maxx_hot::num::{Price, Qty};
use serde_json::Value;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, WebSocket};

/// How long any condition may take before the test fails; far above what it needs.
const DEADLINE: Duration = Duration::from_secs(10);
/// Client read timeout: how often a waiting loop re-checks its condition and deadline.
const READ_POLL: Duration = Duration::from_millis(20);

type Client = WebSocket<TcpStream>;

fn config(seed: u64) -> BinanceSimConfig {
    BinanceSimConfig {
        events_per_sec: 2_000,
        ..BinanceSimConfig::new(seed, sim::sample_symbols())
    }
}

/// Every connection replays the seed from its start, instead of joining one shared market.
fn private_config(seed: u64) -> BinanceSimConfig {
    BinanceSimConfig {
        shared_market: false,
        ..config(seed)
    }
}

fn start(cfg: BinanceSimConfig) -> SimHandle {
    sim::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("simulator starts")
}

fn connect(sim: &SimHandle, path: &str) -> Client {
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

/// The next text frame, skipping control frames (reading also answers the server's pings).
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

fn read_json(ws: &mut Client, until: Instant, what: &str) -> Value {
    let text = read_text(ws, until, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
}

fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send control message");
}

/// Sends a request and returns the raw reply, skipping market frames (which carry no `id`).
fn request(ws: &mut Client, text: &str, id: i64) -> String {
    send(ws, text);
    let until = deadline();
    loop {
        let reply = read_text(ws, until, &format!("the reply to request {id}"));
        let value: Value = serde_json::from_str(&reply).unwrap();
        if value.get("id") == Some(&Value::from(id)) {
            return reply;
        }
    }
}

/// Fails unless `keys` appear in `text` in this order (serde_json's map does not keep it).
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

/// A decimal string with exactly eight places, as Binance prints them.
fn eight_decimals(v: &Value) -> &str {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    let (int, frac) = s.split_once('.').unwrap_or_else(|| panic!("{s} has no decimals"));
    assert!(
        !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()),
        "{s} has a bad integer part"
    );
    assert!(
        frac.len() == 8 && frac.bytes().all(|b| b.is_ascii_digit()),
        "{s} does not have exactly 8 decimals"
    );
    s
}

fn price(v: &Value) -> Price {
    let p: Price = eight_decimals(v).parse().unwrap();
    assert!(p.raw() > 0, "price {p} is not positive");
    assert_eq!(p.raw() % 1_000_000, 0, "price {p} is off the 0.01 tick");
    p
}

fn qty(v: &Value) -> Qty {
    let q: Qty = eight_decimals(v).parse().unwrap();
    assert!(q.raw() > 0, "quantity {q} is not positive");
    q
}

/// Plausible epoch milliseconds (after 2020, before 2100).
fn assert_ms(v: &Value) {
    let ms = v.as_u64().unwrap_or_else(|| panic!("{v} is not an integer time"));
    assert!(
        (1_577_836_800_000..4_102_444_800_000).contains(&ms),
        "{ms} is not epoch ms"
    );
}

/// Checks a trade payload and returns `(symbol, t, p, q)`.
fn check_trade(raw: &str, data: &Value) -> (String, u64, Price, Qty) {
    assert_key_order(raw, &["e", "E", "s", "t", "p", "q", "T", "m", "M"]);
    assert_eq!(data.as_object().unwrap().len(), 9, "{raw}");
    assert_eq!(data["e"], "trade");
    assert_ms(&data["E"]);
    assert_ms(&data["T"]);
    assert!(data["m"].is_boolean() && data["M"] == true, "{raw}");
    let symbol = data["s"].as_str().unwrap().to_owned();
    assert!(symbol == "BTCUSDT" || symbol == "ETHUSDT", "{raw}");
    let lot = if symbol == "BTCUSDT" { 1_000 } else { 10_000 };
    let q = qty(&data["q"]);
    assert_eq!(q.raw() % lot, 0, "quantity {q} is off the lot grid");
    (symbol, data["t"].as_u64().unwrap(), price(&data["p"]), q)
}

/// Checks a bookTicker payload and returns `(symbol, u)`.
fn check_book_ticker(raw: &str, data: &Value) -> (String, u64) {
    assert_key_order(raw, &["u", "s", "b", "B", "a", "A"]);
    assert_eq!(data.as_object().unwrap().len(), 6, "{raw}");
    let bid = price(&data["b"]);
    let ask = price(&data["a"]);
    assert!(bid < ask, "crossed book: {raw}");
    qty(&data["B"]);
    qty(&data["A"]);
    let symbol = data["s"].as_str().unwrap().to_owned();
    (symbol, data["u"].as_u64().unwrap())
}

/// Reads raw-stream trades until `n` have arrived and returns their `(t, p, q)`.
fn raw_trades(ws: &mut Client, n: usize) -> Vec<(u64, Price, Qty)> {
    let until = deadline();
    let mut trades = Vec::with_capacity(n);
    while trades.len() < n {
        let raw = read_text(ws, until, "trades");
        let data: Value = serde_json::from_str(&raw).unwrap();
        assert!(data.get("stream").is_none(), "raw stream payload is wrapped: {raw}");
        let (symbol, t, p, q) = check_trade(&raw, &data);
        assert_eq!(symbol, "BTCUSDT");
        trades.push((t, p, q));
    }
    trades
}

fn wait_for_connections(sim: &SimHandle, n: usize, mut meanwhile: impl FnMut()) {
    let until = deadline();
    while sim.connections() != n {
        assert!(
            Instant::now() < until,
            "expected {n} open connections, have {}",
            sim.connections()
        );
        meanwhile();
    }
}

#[test]
fn combined_stream_carries_well_formed_trades_and_book_tickers() {
    let sim = start(config(7));
    let mut ws = connect(
        &sim,
        "/stream?streams=btcusdt@trade/ethusdt@trade/btcusdt@bookTicker/ethusdt@bookTicker",
    );
    let until = deadline();
    let mut last_trade: [Option<u64>; 2] = [None, None];
    let mut last_update = [0u64; 2];
    let (mut trades, mut tickers) = (0, 0);
    while trades < 40 || tickers < 40 {
        let raw = read_text(&mut ws, until, "40 trades and 40 book tickers");
        let frame: Value = serde_json::from_str(&raw).unwrap();
        assert_key_order(&raw, &["stream", "data"]);
        assert_eq!(frame.as_object().unwrap().len(), 2, "{raw}");
        let stream = frame["stream"].as_str().unwrap();
        let data = &frame["data"];
        let (name, kind) = stream.split_once('@').unwrap();
        let (symbol, index) = match kind {
            "trade" => {
                trades += 1;
                let (symbol, t, _, _) = check_trade(&raw, data);
                let i = usize::from(symbol == "ETHUSDT");
                // The connection joins the shared market mid-stream; from there, trade ids
                // rise by exactly 1.
                if let Some(last) = last_trade[i] {
                    assert_eq!(t, last + 1, "{raw}");
                }
                last_trade[i] = Some(t);
                (symbol, i)
            }
            "bookTicker" => {
                tickers += 1;
                let (symbol, u) = check_book_ticker(&raw, data);
                let i = usize::from(symbol == "ETHUSDT");
                assert!(u > last_update[i], "update id did not increase: {raw}");
                last_update[i] = u;
                (symbol, i)
            }
            other => panic!("unexpected stream type {other}"),
        };
        assert_eq!(name, symbol.to_ascii_lowercase(), "stream name and payload disagree");
        assert!(index < 2);
    }
}

#[test]
fn raw_stream_sends_only_unwrapped_trades_and_counts_connections() {
    let sim = start(config(7));
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    assert!(sim.connections() >= 1);
    let trades = raw_trades(&mut ws, 50);
    let first = trades[0].0;
    for (i, (t, _, _)) in trades.iter().enumerate() {
        assert_eq!(*t, first + i as u64, "trade ids must rise by exactly 1");
    }
    ws.close(None).unwrap();
    wait_for_connections(&sim, 0, || {
        // Drives the close handshake; errors just mean the server already hung up.
        let _ = ws.read();
    });
}

#[test]
fn microsecond_time_unit_is_honoured() {
    let sim = start(config(7));
    let mut ws = connect(&sim, "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND");
    let frame = read_json(&mut ws, deadline(), "a trade");
    let e = frame["data"]["E"].as_u64().unwrap();
    assert!(e > 1_577_836_800_000_000, "E = {e} is not in microseconds");
}

#[test]
fn subscribe_list_unsubscribe_on_a_bare_socket() {
    let sim = start(config(7));
    let mut ws = connect(&sim, "/ws");
    // Nothing is subscribed yet, so the reply is the very next frame.
    send(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["ethusdt@bookTicker"],"id":1}"#,
    );
    assert_eq!(
        read_text(&mut ws, deadline(), "the SUBSCRIBE reply"),
        r#"{"result":null,"id":1}"#
    );
    let until = deadline();
    for _ in 0..10 {
        let raw = read_text(&mut ws, until, "book tickers");
        let data: Value = serde_json::from_str(&raw).unwrap();
        let (symbol, _) = check_book_ticker(&raw, &data);
        assert_eq!(symbol, "ETHUSDT");
    }

    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#;
    assert_eq!(request(&mut ws, list, 3), r#"{"result":["ethusdt@bookTicker"],"id":3}"#);
    let sub = r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@bookTicker"],"id":4}"#;
    assert_eq!(request(&mut ws, sub, 4), r#"{"result":null,"id":4}"#);
    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":5}"#;
    assert_eq!(
        request(&mut ws, list, 5),
        r#"{"result":["ethusdt@bookTicker","btcusdt@trade"],"id":5}"#
    );
    let unsub = r#"{"method":"UNSUBSCRIBE","params":["ethusdt@bookTicker"],"id":6}"#;
    assert_eq!(request(&mut ws, unsub, 6), r#"{"result":null,"id":6}"#);
    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":7}"#;
    assert_eq!(request(&mut ws, list, 7), r#"{"result":["btcusdt@trade"],"id":7}"#);
    // From now on only BTCUSDT trades arrive.
    let until = deadline();
    for _ in 0..10 {
        let raw = read_text(&mut ws, until, "trades after UNSUBSCRIBE");
        let data: Value = serde_json::from_str(&raw).unwrap();
        let (symbol, _, _, _) = check_trade(&raw, &data);
        assert_eq!(symbol, "BTCUSDT");
    }
}

#[test]
fn combined_property_wraps_payloads() {
    let sim = start(config(7));
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let get = r#"{"method":"GET_PROPERTY","params":["combined"],"id":1}"#;
    assert_eq!(request(&mut ws, get, 1), r#"{"result":false,"id":1}"#);
    let set = r#"{"method":"SET_PROPERTY","params":["combined",true],"id":2}"#;
    assert_eq!(request(&mut ws, set, 2), r#"{"result":null,"id":2}"#);
    let get = r#"{"method":"GET_PROPERTY","params":["combined"],"id":3}"#;
    assert_eq!(request(&mut ws, get, 3), r#"{"result":true,"id":3}"#);
    let frame = read_json(&mut ws, deadline(), "a wrapped trade");
    assert_eq!(frame["stream"], "btcusdt@trade");
    assert_eq!(frame["data"]["e"], "trade");
}

#[test]
fn bad_requests_get_the_documented_error_codes() {
    let sim = start(config(7));
    // No subscription, so every frame is a reply.
    let mut ws = connect(&sim, "/ws");
    let mut reply = |text: &str| read_reply(&mut ws, text);

    let invalid_json = reply("{not json");
    assert_eq!(invalid_json["code"], 3);
    assert!(invalid_json["msg"].as_str().unwrap().starts_with("Invalid JSON: "));
    assert!(invalid_json.get("id").is_none());

    let unknown = reply(r#"{"method":"SUBSCRIBEE","params":[],"id":2}"#);
    assert_eq!((unknown["code"].clone(), unknown["id"].clone()), (2.into(), 2.into()));
    assert!(
        unknown["msg"]
            .as_str()
            .unwrap()
            .starts_with("Invalid request: unknown variant")
    );

    let no_method = reply(r#"{"params":[],"id":3}"#);
    assert_eq!(no_method["code"], 2);
    assert!(no_method["msg"].as_str().unwrap().contains("method"));

    let bad_stream = reply(r#"{"method":"SUBSCRIBE","params":["btcusdt@depth"],"id":"x4"}"#);
    assert_eq!(
        (bad_stream["code"].clone(), bad_stream["id"].clone()),
        (2.into(), "x4".into())
    );
    assert_eq!(bad_stream["msg"], "Invalid request: invalid stream");

    let bad_id = reply(r#"{"method":"LIST_SUBSCRIPTIONS","id":1.5}"#);
    assert_eq!(bad_id["code"], 2);
    assert!(bad_id.get("id").is_none());

    let too_many = reply(r#"{"method":"GET_PROPERTY","params":["combined","x"],"id":6}"#);
    assert_eq!(too_many["code"], 2);
    assert_eq!(too_many["msg"], "Invalid request: too many parameters");

    let bad_type = reply(r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":7}"#);
    assert_eq!(bad_type["code"], 1);

    let bad_property = reply(r#"{"method":"GET_PROPERTY","params":["colour"],"id":8}"#);
    assert_eq!(
        (bad_property["code"].clone(), bad_property["id"].clone()),
        (0.into(), 8.into())
    );

    // Garbage in a binary frame is ignored, and the connection keeps working.
    ws.send(Message::binary(vec![0xFF, 0x00, 0x13])).unwrap();
    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":null}"#;
    assert_eq!(read_reply(&mut ws, list), serde_json::json!({"result": [], "id": null}));
}

fn read_reply(ws: &mut Client, text: &str) -> Value {
    send(ws, text);
    read_json(ws, deadline(), &format!("the reply to {text}"))
}

#[test]
fn bad_paths_are_refused_with_http_errors() {
    let sim = start(config(7));
    for (path, status) in [
        ("/api/v3/depth", 404),
        ("/ws/xrpusdt@trade", 400),
        ("/ws/btcusdt@kline_1m", 400),
        ("/stream?streams=btcusdt@trade/BTCUSDT@trade", 400),
    ] {
        let stream = TcpStream::connect(sim.local_addr()).unwrap();
        let url = format!("ws://{}{path}", sim.local_addr());
        match tungstenite::client(url.as_str(), stream) {
            Err(HandshakeError::Failure(WsError::Http(response))) => {
                assert_eq!(response.status().as_u16(), status, "{path}");
            }
            Err(e) => panic!("{path}: expected HTTP {status}, got {e}"),
            Ok(_) => panic!("{path}: expected HTTP {status}, got an upgrade"),
        }
    }
    // The simulator is still healthy.
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    raw_trades(&mut ws, 1);
}

/// Reads one frame from a client that must stay connected; returns 1 if it was a ping.
fn read_ping(ws: &mut Client) -> u32 {
    match ws.read() {
        Ok(Message::Ping(payload)) => {
            let text = std::str::from_utf8(&payload).expect("ping payload is text");
            assert!(text.parse::<u64>().is_ok(), "ping payload {text:?} is not a time");
            1
        }
        Ok(_) => 0,
        Err(e) if timed_out(&e) => 0,
        Err(e) => panic!("the ponging client was dropped: {e}"),
    }
}

#[test]
fn server_pings_and_drops_a_client_that_never_pongs() {
    let sim = start(BinanceSimConfig {
        ping_interval: Duration::from_millis(100),
        pong_timeout: Duration::from_secs(1),
        ..config(7)
    });
    // Reading makes tungstenite answer pings, so `live` pongs; `silent` never reads.
    let mut live = connect(&sim, "/ws/btcusdt@trade");
    let mut silent = connect(&sim, "/ws/btcusdt@trade");
    assert_eq!(sim.connections(), 2);

    let mut pings = 0;
    wait_for_connections(&sim, 1, || pings += read_ping(&mut live));
    // The survivor is the client that pongs: it keeps receiving pings.
    let until = deadline();
    while pings < 3 {
        assert!(Instant::now() < until, "only {pings} pings received");
        pings += read_ping(&mut live);
    }

    // The silent client finds its buffered frames, then the server's close.
    silent.get_ref().set_read_timeout(Some(READ_POLL)).unwrap();
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "the silent client was never closed");
        match silent.read() {
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Policy));
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
}

#[test]
fn private_markets_replay_the_seed_to_every_connection() {
    let sim = start(private_config(11));
    let mut a = connect(&sim, "/ws/btcusdt@trade");
    let first = raw_trades(&mut a, 40);
    assert_eq!(first[0].0, 1, "a private market starts at trade id 1");
    let mut b = connect(&sim, "/ws/btcusdt@trade");
    let second = raw_trades(&mut b, 40);
    assert_eq!(first, second);

    let other = start(private_config(12));
    let mut c = connect(&other, "/ws/btcusdt@trade");
    assert_ne!(
        raw_trades(&mut c, 40),
        first,
        "a different seed should give different trades"
    );
}

/// Reads until the server's close: a `serverShutdown` event (wrapped as `!serverShutdown` on a
/// combined connection) must come first, and the close code must be 1001 (going away).
fn expect_shutdown_notice(ws: &mut Client, wrapped: bool) {
    let until = deadline();
    let mut announced = false;
    loop {
        assert!(Instant::now() < until, "the connection was never closed");
        match ws.read() {
            Ok(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                let event = if wrapped {
                    if frame["stream"] != "!serverShutdown" {
                        continue;
                    }
                    &frame["data"]
                } else {
                    &frame
                };
                if event["e"] == "serverShutdown" {
                    assert_key_order(text.as_str(), &["e", "E"]);
                    assert_ms(&event["E"]);
                    announced = true;
                }
            }
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
    assert!(announced, "no serverShutdown event before the close");
}

#[test]
fn shutdown_announces_itself_and_closes_every_connection() {
    let sim = start(config(7));
    let addr = sim.local_addr();
    let mut raw = connect(&sim, "/ws/btcusdt@trade");
    let mut combined = connect(&sim, "/stream?streams=ethusdt@bookTicker");
    assert_eq!(sim.connections(), 2);
    sim.shutdown();

    expect_shutdown_notice(&mut raw, false);
    expect_shutdown_notice(&mut combined, true);
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is still open after shutdown"
    );
}

#[test]
fn unusable_configuration_is_refused_before_binding() {
    let refused = |cfg: BinanceSimConfig| {
        let err = sim::spawn("127.0.0.1:0".parse().unwrap(), cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    };
    refused(BinanceSimConfig {
        ping_interval: Duration::ZERO,
        ..config(1)
    });
    refused(BinanceSimConfig {
        events_per_sec: 0,
        ..config(1)
    });
    refused(BinanceSimConfig {
        symbols: Vec::new(),
        ..config(1)
    });
    let mut twice = sim::sample_symbols();
    twice.push(twice[0]);
    refused(BinanceSimConfig {
        symbols: twice,
        ..config(1)
    });
}

#[test]
fn garbage_and_abrupt_disconnects_never_take_the_simulator_down() {
    use std::io::Write;

    let sim = start(config(7));
    // Not HTTP at all.
    let mut junk = TcpStream::connect(sim.local_addr()).unwrap();
    junk.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").unwrap();
    // A valid upgrade followed by bytes that are not a WebSocket frame.
    let mut bad_frames = connect(&sim, "/ws/btcusdt@trade");
    bad_frames.get_mut().write_all(&[0xFF; 64]).expect("write raw bytes");
    // A client that vanishes without a close frame.
    drop(connect(&sim, "/stream?streams=btcusdt@trade/ethusdt@bookTicker"));
    wait_for_connections(&sim, 0, || {
        let _ = bad_frames.read();
    });
    drop(junk);

    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    assert_eq!(raw_trades(&mut ws, 5).len(), 5);
}

/// Reads raw BTCUSDT trade frames until `n` have arrived; returns each with its trade id.
fn raw_trade_frames(ws: &mut Client, n: usize) -> Vec<(u64, String)> {
    let until = deadline();
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        let raw = read_text(ws, until, "trades");
        let data: Value = serde_json::from_str(&raw).unwrap();
        let (symbol, t, _, _) = check_trade(&raw, &data);
        assert_eq!(symbol, "BTCUSDT");
        frames.push((t, raw));
    }
    frames
}

const ALL_STREAMS: &str = "/stream?streams=btcusdt@trade/btcusdt@bookTicker/ethusdt@trade/ethusdt@bookTicker";

#[test]
fn overlapping_connections_share_one_market_timeline() {
    let sim = start(config(21));
    let mut early = connect(&sim, "/ws/btcusdt@trade");
    let mut seen = raw_trade_frames(&mut early, 30);
    // The second connection joins while the first is live, as a make-before-break reconnect
    // would: it starts at the live end, mid-stream, after everything the first one has read.
    let mut late = connect(&sim, "/ws/btcusdt@trade");
    let joined = raw_trade_frames(&mut late, 40);
    let first = joined[0].0;
    assert!(first > 1, "the later connection joined mid-stream, yet got trade id 1");
    assert!(
        first > seen[seen.len() - 1].0,
        "the later connection saw a trade from before it joined"
    );
    for pair in joined.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "trade ids are contiguous on one connection");
    }
    // The first connection reads on past the second one's last trade.
    let last = joined[joined.len() - 1].0;
    while seen[seen.len() - 1].0 < last {
        seen.extend(raw_trade_frames(&mut early, 1));
    }
    // Over the overlap both saw the same trades under the same ids, in identical frames (the
    // event times are the trade's, not the moment each connection sent it).
    let at = seen
        .iter()
        .position(|(t, _)| *t == first)
        .expect("the first connection saw the later one's first trade");
    assert_eq!(&seen[at..], &joined[..]);
}

#[test]
fn a_reader_that_falls_behind_the_market_log_is_dropped() {
    // A fast market and a short log: a connection whose client stops reading soon stalls on a
    // full socket and falls more than 512 events behind.
    let sim = start(BinanceSimConfig {
        events_per_sec: 50_000,
        market_log: 512,
        ..config(5)
    });
    let mut slow = connect(&sim, ALL_STREAMS);
    // The client reads nothing until the simulator has given up on it.
    wait_for_connections(&sim, 0, std::thread::yield_now);
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

#[test]
fn a_silent_feed_sends_no_data_but_keeps_pinging() {
    let sim = start(BinanceSimConfig {
        ping_interval: Duration::from_millis(20),
        ..config(7)
    });
    sim.faults().set_silent(true);
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let until = deadline();
    let mut pings = 0;
    while pings < 5 {
        assert!(Instant::now() < until, "only {pings} pings while silent");
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(Message::Text(text)) => panic!("a silent feed sent {text}"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the silent feed dropped the connection: {e}"),
        }
    }
    // Control requests are still answered, and the connection is kept.
    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#;
    assert_eq!(request(&mut ws, list, 1), r#"{"result":["btcusdt@trade"],"id":1}"#);
    assert_eq!(sim.connections(), 1);

    sim.faults().set_silent(false);
    let trades = raw_trades(&mut ws, 3);
    // The market moved on meanwhile (the first 100 ms of seed 7 hold BTCUSDT trades, and the
    // feed was silent for five 20 ms ping intervals), so data resumes after a gap.
    assert!(trades[0].0 > 1, "the market stood still while the feed was silent");
}

#[test]
fn a_deaf_server_neither_pings_nor_answers_until_it_hears_again() {
    let sim = start(BinanceSimConfig {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(200),
        ..config(7)
    });
    sim.faults().set_deaf(true);
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    ws.send(Message::Ping(Bytes::from_static(b"hello"))).unwrap();
    send(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":1}"#);
    // 200 trades take about half a second at this rate: many ping intervals and more than the
    // pong timeout, yet no ping, pong or reply may arrive, and the connection must survive.
    let until = deadline();
    let mut trades = 0;
    while trades < 200 {
        assert!(Instant::now() < until, "only {trades} trades while deaf");
        match ws.read() {
            Ok(Message::Text(text)) => {
                let data: Value = serde_json::from_str(text.as_str()).unwrap();
                assert!(data.get("id").is_none(), "a deaf server replied: {text}");
                check_trade(text.as_str(), &data);
                trades += 1;
            }
            Ok(Message::Ping(_)) => panic!("a deaf server pinged"),
            Ok(Message::Pong(_)) => panic!("a deaf server answered a ping"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the deaf server dropped the connection: {e}"),
        }
    }

    // Hearing again, it handles what waited in the socket and resumes its pings.
    sim.faults().set_deaf(false);
    let until = deadline();
    let (mut pong, mut reply, mut pinged) = (false, false, false);
    while !(pong && reply && pinged) {
        assert!(
            Instant::now() < until,
            "after deafness: pong {pong}, reply {reply}, ping {pinged}"
        );
        match ws.read() {
            Ok(Message::Text(text)) if text.as_str().contains("\"id\"") => {
                assert_eq!(text.as_str(), r#"{"result":["btcusdt@trade"],"id":1}"#);
                reply = true;
            }
            Ok(Message::Pong(payload)) => {
                assert_eq!(&payload[..], b"hello");
                pong = true;
            }
            Ok(Message::Ping(_)) => pinged = true,
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("connection failed after deafness: {e}"),
        }
    }
    assert_eq!(sim.connections(), 1);
}

/// Reads until the connection fails; panics if a close frame arrives first (a clean close is
/// not what an abrupt drop looks like).
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
    let sim = start(config(7));
    let mut raw = connect(&sim, "/ws/btcusdt@trade");
    let mut combined = connect(&sim, ALL_STREAMS);
    // Data on both means both connections are being served, so the fault reaches them.
    raw_trades(&mut raw, 1);
    read_json(&mut combined, deadline(), "a combined frame");
    sim.faults().drop_all();
    expect_abrupt_end(&mut raw);
    expect_abrupt_end(&mut combined);
    wait_for_connections(&sim, 0, std::thread::yield_now);
    // A connection made after the fault starts clean.
    let mut fresh = connect(&sim, "/ws/btcusdt@trade");
    assert_eq!(raw_trades(&mut fresh, 3).len(), 3);
}

#[test]
fn injected_garbage_arrives_between_market_frames() {
    let sim = start(config(7));
    let mut ws = connect(&sim, "/ws/btcusdt@trade");
    let mut ids: Vec<u64> = raw_trades(&mut ws, 3).iter().map(|t| t.0).collect();
    sim.faults().inject_garbage(5);
    let until = deadline();
    let mut garbage = Vec::new();
    loop {
        assert!(Instant::now() < until, "garbage so far: {garbage:?}");
        match ws.read() {
            Ok(Message::Text(text)) => {
                if let Some(g) = GARBAGE_TEXT.iter().find(|g| **g == text.as_str()) {
                    garbage.push(*g);
                    continue;
                }
                assert!(garbage.is_empty(), "a market frame inside the injection: {text}");
                let data: Value = serde_json::from_str(text.as_str()).unwrap();
                ids.push(check_trade(text.as_str(), &data).1);
            }
            Ok(Message::Binary(bytes)) => {
                assert!(std::str::from_utf8(&bytes).is_err(), "the binary frame is valid UTF-8");
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the connection failed during the injection: {e}"),
        }
    }
    // Five texts go through the list in turn, starting over after the last.
    let expected: Vec<&str> = GARBAGE_TEXT.iter().cycle().take(5).copied().collect();
    assert_eq!(garbage, expected);
    // The market goes on around the garbage, and nothing is lost.
    ids.extend(raw_trades(&mut ws, 3).iter().map(|t| t.0));
    for pair in ids.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "trade ids around the garbage: {ids:?}");
    }
}

#[test]
fn announced_maintenance_closes_connections_but_not_the_venue() {
    let sim = start(config(7));
    let mut raw = connect(&sim, "/ws/btcusdt@trade");
    let mut combined = connect(&sim, ALL_STREAMS);
    raw_trades(&mut raw, 1);
    read_json(&mut combined, deadline(), "a combined frame");
    sim.faults().announce_shutdown();
    expect_shutdown_notice(&mut raw, false);
    expect_shutdown_notice(&mut combined, true);
    wait_for_connections(&sim, 0, || {
        let _ = raw.read();
        let _ = combined.read();
    });
    // The venue is still up: a new connection is served as usual.
    let mut fresh = connect(&sim, "/ws/btcusdt@trade");
    assert_eq!(raw_trades(&mut fresh, 3).len(), 3);
}

#[test]
fn shutdown_is_prompt_with_deaf_and_stalled_clients() {
    let sim = start(BinanceSimConfig {
        events_per_sec: 20_000,
        ..config(7)
    });
    // One client stops reading after its first frame, the other is talking to a deaf server.
    let mut stalled = connect(&sim, ALL_STREAMS);
    read_json(&mut stalled, deadline(), "a combined frame");
    let mut deaf = connect(&sim, "/ws/btcusdt@trade");
    raw_trades(&mut deaf, 1);
    sim.faults().set_deaf(true);
    let stopper = std::thread::spawn(move || sim.shutdown());
    let until = deadline();
    while !stopper.is_finished() {
        assert!(Instant::now() < until, "shutdown hangs");
        let _ = deaf.read();
    }
    stopper.join().expect("shutdown does not panic");
}

/// A capture file in the test's temporary directory, removed when dropped.
struct TempCapture(PathBuf);

impl TempCapture {
    fn new(name: &str, lines: &[&str]) -> Self {
        let path = std::env::temp_dir().join(format!("maxx-sim-binance-{}-{name}.txt", std::process::id()));
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the capture");
        Self(path)
    }
}

impl Drop for TempCapture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads `n` text frames.
fn texts(ws: &mut Client, n: usize) -> Vec<String> {
    let until = deadline();
    (0..n).map(|_| read_text(ws, until, "replayed frames")).collect()
}

#[test]
fn replay_serves_a_capture_in_each_connection_form() {
    let trade_raw = r#"{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":100,"p":"61000.10","q":"0.5","T":1700000000000,"m":false,"M":true}"#;
    // Spaces inside the wrapper show that payloads are cut out byte for byte, not re-encoded.
    let ticker_data = r#"{"u":7,"s":"ETHUSDT","b":"2600.00","B":"1.5","a":"2600.01","A":"2"}"#;
    let ticker_combined = format!(r#"{{"stream":"ethusdt@bookTicker", "data" : {ticker_data}}}"#);
    let trade_data = r#"{"e":"trade","E":1700000000002,"s":"BTCUSDT","t":101,"p":"61000.20","q":"0.25","T":1700000000002,"m":true,"M":true}"#;
    let trade_combined = format!(r#"{{"stream":"btcusdt@trade","data":{trade_data}}}"#);
    let ticker_raw = r#"{"u":8,"s":"ETHUSDT","b":"2600.01","B":"1","a":"2600.02","A":"3"}"#;
    let eth_trade_raw = r#"{"e":"trade","E":1700000000003,"s":"ETHUSDT","t":55,"p":"2600.02","q":"1","T":1700000000003,"m":false,"M":true}"#;
    let lines = [
        "# written by the test".to_owned(),
        format!("1000000000 {trade_raw}"),
        format!("1000500000 {ticker_combined}"),
        r#"1001000000 {"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT"}}"#.to_owned(),
        "not a capture line".to_owned(),
        r#"1001500000 {"result":null,"id":1}"#.to_owned(),
        r#"1001600000 {"e":"trade","s":"XRPUSDT","t":1}"#.to_owned(),
        format!("1002000000 {trade_combined}"),
        format!("1002500000 {ticker_raw}"),
        format!("1003000000 {eth_trade_raw}"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let capture = TempCapture::new("replay", &lines);
    let sim = start(BinanceSimConfig {
        replay: Some(capture.0.clone()),
        ..config(7)
    });

    // Raw connections get the event itself: as captured, or cut out of the combined wrapper.
    let mut trades = connect(&sim, "/ws/btcusdt@trade");
    assert_eq!(texts(&mut trades, 2), [trade_raw, trade_data]);
    let mut tickers = connect(&sim, "/ws/ethusdt@bookTicker");
    assert_eq!(texts(&mut tickers, 2), [ticker_data, ticker_raw]);
    // A combined connection gets combined frames as captured and raw ones wrapped under the
    // stream name derived from `s` and the event type, in capture order.
    let mut combined = connect(&sim, "/stream?streams=btcusdt@trade/ethusdt@bookTicker/ethusdt@trade");
    let wrap = |stream: &str, data: &str| format!(r#"{{"stream":"{stream}","data":{data}}}"#);
    assert_eq!(
        texts(&mut combined, 5),
        [
            wrap("btcusdt@trade", trade_raw),
            ticker_combined.clone(),
            trade_combined.clone(),
            wrap("ethusdt@bookTicker", ticker_raw),
            wrap("ethusdt@trade", eth_trade_raw),
        ]
    );
    // The capture is over: nothing else was sent, and the connection is still served.
    let list = r#"{"method":"LIST_SUBSCRIPTIONS","id":9}"#;
    assert_eq!(
        read_reply(&mut trades, list),
        serde_json::json!({"result": ["btcusdt@trade"], "id": 9})
    );

    // A capture that cannot be read is refused at start.
    let err = sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        BinanceSimConfig {
            replay: Some(capture.0.with_extension("missing")),
            ..config(7)
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
