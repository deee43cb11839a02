//! End-to-end tests of the Binance Spot simulator over real loopback sockets with a real
//! tungstenite client, checking the wire format against `venues.md` §1.
//!
//! Nothing here sleeps to synchronise or asserts on timing: every wait reads the socket with a
//! short timeout until the expected condition holds, and fails with a message at a generous
//! deadline.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use maxx_cold::sim::{self, BinanceSimConfig, SimHandle};
use maxx_hot::num::{Price, Qty};
use serde_json::Value;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

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
                // Trade ids start at 1 on a fresh connection and rise by exactly 1.
                assert_eq!(t, last_trade[i].map_or(1, |last| last + 1), "{raw}");
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
    for (i, (t, _, _)) in trades.iter().enumerate() {
        assert_eq!(*t, i as u64 + 1, "trade ids must be 1, 2, 3, ...");
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
fn connections_with_the_same_seed_see_the_same_trades() {
    let sim = start(config(11));
    let mut a = connect(&sim, "/ws/btcusdt@trade");
    let first = raw_trades(&mut a, 40);
    let mut b = connect(&sim, "/ws/btcusdt@trade");
    let second = raw_trades(&mut b, 40);
    assert_eq!(first, second);

    let other = start(config(12));
    let mut c = connect(&other, "/ws/btcusdt@trade");
    assert_ne!(
        raw_trades(&mut c, 40),
        first,
        "a different seed should give different trades"
    );
}

#[test]
fn shutdown_announces_itself_and_closes_every_connection() {
    let sim = start(config(7));
    let addr = sim.local_addr();
    let mut raw = connect(&sim, "/ws/btcusdt@trade");
    let mut combined = connect(&sim, "/stream?streams=ethusdt@bookTicker");
    assert_eq!(sim.connections(), 2);
    sim.shutdown();

    for (ws, wrapped) in [(&mut raw, false), (&mut combined, true)] {
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
