//! End-to-end tests of the Coinbase Advanced Trade simulator over real loopback sockets with a
//! real tungstenite client, checking the wire format against `venues.md` §2 and decoding every
//! frame with the engine's own `CoinbaseDecoder`.
//!
//! Nothing here sleeps to synchronise or asserts on timing: every wait reads the socket with a
//! short timeout until the expected condition holds, and fails with a message at a generous
//! deadline. Where a test must show that something does *not* happen (a silent feed, a deaf
//! server), it uses an ordering witness: the server handles a client's messages in order, so a
//! reply to a later request proves the earlier one has been handled.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use maxx_cold::sim::coinbase::{self, CoinbaseSimConfig, CoinbaseSimHandle};
use maxx_cold::sim::faults::GARBAGE_TEXT;
use maxx_hot::feed::coinbase::parse::{CoinbaseDecoder, parse_rfc3339_ns};
use maxx_hot::feed::coinbase::subscription::{ChannelKind, connection, subscribe_messages};
use maxx_hot::feed::{Control, Decoded, FrameMeta, TickBatch};
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{Side, TickBody};
use serde_json::Value;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Bytes, Error as WsError, HandshakeError, Message, WebSocket};

/// How long any condition may take before the test fails; far above what it needs.
const DEADLINE: Duration = Duration::from_secs(10);
/// Client read timeout: how often a waiting loop re-checks its condition and deadline.
const READ_POLL: Duration = Duration::from_millis(20);
/// Heartbeat interval in tests, so that counting heartbeats is quick.
const HEARTBEAT: Duration = Duration::from_millis(50);

type Client = WebSocket<TcpStream>;

/// The subscribe timeout is one no test run reaches (a test that holds an unsubscribed connection
/// open must not meet it first on a slow machine); the timeout's own test sets a short one.
fn config(seed: u64) -> CoinbaseSimConfig {
    CoinbaseSimConfig {
        events_per_sec: 2_000,
        subscribe_timeout: Duration::from_secs(600),
        heartbeat_interval: HEARTBEAT,
        ..CoinbaseSimConfig::new(seed, coinbase::sample_symbols())
    }
}

/// Every connection replays the seed from its start, instead of joining one shared market.
fn private_config(seed: u64) -> CoinbaseSimConfig {
    CoinbaseSimConfig {
        shared_market: false,
        ..config(seed)
    }
}

fn start(cfg: CoinbaseSimConfig) -> CoinbaseSimHandle {
    coinbase::spawn("127.0.0.1:0".parse().unwrap(), cfg).expect("simulator starts")
}

fn connect(sim: &CoinbaseSimHandle) -> Client {
    upgrade(sim, TcpStream::connect(sim.local_addr()).expect("tcp connect"))
}

/// Runs the WebSocket upgrade on a TCP connection to the simulator.
fn upgrade(sim: &CoinbaseSimHandle, stream: TcpStream) -> Client {
    let url = format!("ws://{}/", sim.local_addr());
    let (ws, _) = tungstenite::client(url.as_str(), stream).expect("websocket upgrade");
    ws.get_ref().set_read_timeout(Some(READ_POLL)).unwrap();
    ws
}

fn products() -> Vec<VenueSymbol> {
    coinbase::sample_symbols().iter().map(|s| s.venue_symbol).collect()
}

/// Connects and subscribes to `heartbeats`, `market_trades` and `ticker` for both products,
/// with the engine's own subscribe messages.
fn subscribed(sim: &CoinbaseSimHandle) -> Client {
    let mut ws = connect(sim);
    let (path, messages) = connection(&products(), &[ChannelKind::MarketTrades, ChannelKind::Ticker]);
    assert_eq!(path, "/");
    for message in messages {
        send(&mut ws, &message);
    }
    ws
}

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

fn timed_out(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).expect("send a client message");
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

/// An RFC 3339 UTC time with exactly nine fractional digits, as nanoseconds.
fn nine_digit_time(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a time string"));
    assert_eq!(
        s.len(),
        "2023-02-09T20:19:35.396251350Z".len(),
        "{s} does not have 9 fractional digits"
    );
    assert_eq!(&s[19..20], ".", "{s}");
    let ns = parse_rfc3339_ns(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"));
    assert!(ns > 1_577_836_800_000_000_000, "{s} is before 2020");
    ns
}

/// An exact decimal string in canonical form (no padding zeros, as Coinbase prints them).
fn canonical(v: &Value) -> &str {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a decimal string"));
    let q: Qty = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    assert_eq!(q.to_string(), s, "{s} is not canonical");
    s
}

fn price(v: &Value) -> Price {
    let p: Price = canonical(v).parse().unwrap();
    assert!(p > Price::ZERO, "price {p} is not positive");
    assert_eq!(p.raw() % 1_000_000, 0, "price {p} is off the 0.01 tick");
    p
}

fn index() -> InstrumentIndex {
    let entry = |product: &str| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Coinbase.index()] = Some(VenueSymbol::new(product).unwrap());
        (Symbol::new(&product.replace('-', "")).unwrap(), venues)
    };
    InstrumentIndex::new([entry("BTC-USD"), entry("ETH-USD")]).unwrap()
}

/// Decodes a frame with the engine's decoder; it must succeed and reveal no gap.
fn decode(decoder: &mut CoinbaseDecoder, index: &InstrumentIndex, text: &str) -> (Decoded, TickBatch) {
    let mut out = TickBatch::new();
    let decoded = decoder
        .decode(text.as_bytes(), FrameMeta::default(), index, &mut out)
        .unwrap_or_else(|e| panic!("simulator frame failed to decode: {e} in {text}"));
    assert_eq!(out.gaps, 0, "a sequence gap in {text}");
    (decoded, out)
}

/// What a subscribed client saw, checked frame by frame.
#[derive(Debug, Default)]
struct Seen {
    acks: usize,
    trade_messages: usize,
    batched_messages: usize,
    snapshots: usize,
    trades: usize,
    tickers: usize,
    heartbeats: u64,
    next_sequence_num: u64,
    last_trade_id: HashMap<String, u64>,
}

impl Seen {
    /// Checks one frame against the documented shapes and the decoder, and counts it.
    fn check(&mut self, decoder: &mut CoinbaseDecoder, index: &InstrumentIndex, raw: &str) {
        let frame = json(raw);
        assert_key_order(raw, &["channel", "client_id", "timestamp", "sequence_num", "events"]);
        assert_eq!(frame.as_object().unwrap().len(), 5, "{raw}");
        assert_eq!(frame["client_id"], "");
        nine_digit_time(&frame["timestamp"]);
        // `sequence_num` counts this connection's messages from 0, one by one.
        assert_eq!(frame["sequence_num"], self.next_sequence_num, "{raw}");
        self.next_sequence_num += 1;
        let events = frame["events"].as_array().unwrap();
        let (decoded, out) = decode(decoder, index, raw);
        match frame["channel"].as_str().unwrap() {
            "subscriptions" => {
                assert_eq!(decoded, Decoded::Control(Control::Subscribed));
                assert!(events[0]["subscriptions"].is_object(), "{raw}");
                self.acks += 1;
            }
            "heartbeats" => {
                assert_eq!(decoded, Decoded::Control(Control::Heartbeat));
                let counter = events[0]["heartbeat_counter"].as_u64().unwrap();
                assert_eq!(counter, self.heartbeats + 1, "heartbeat counters rise by one");
                self.heartbeats = counter;
                let current = events[0]["current_time"].as_str().unwrap();
                assert!(current.contains(" +0000 UTC m=+"), "{current}");
            }
            "market_trades" => {
                assert_eq!(decoded, Decoded::Ticks);
                assert_eq!(events.len(), 1);
                let kind = events[0]["type"].as_str().unwrap();
                if self.trade_messages == 0 {
                    assert_eq!(kind, "snapshot", "the first market_trades message is a snapshot");
                    self.snapshots += 1;
                } else {
                    assert_eq!(kind, "update", "{raw}");
                }
                self.trade_messages += 1;
                let trades = events[0]["trades"].as_array().unwrap();
                assert_eq!(out.len(), trades.len());
                if kind == "update" {
                    assert!(!trades.is_empty(), "an empty update was sent");
                    self.batched_messages += usize::from(trades.len() > 1);
                }
                let mut times = Vec::new();
                for (trade, tick) in trades.iter().zip(out.as_slice()) {
                    let text = serde_json::to_string(trade).unwrap();
                    assert_eq!(trade.as_object().unwrap().len(), 6, "{text}");
                    let product = trade["product_id"].as_str().unwrap().to_owned();
                    let id: u64 = trade["trade_id"].as_str().unwrap().parse().unwrap();
                    if let Some(last) = self.last_trade_id.get(&product) {
                        assert_eq!(id, last + 1, "trade ids of {product} are contiguous: {raw}");
                    }
                    self.last_trade_id.insert(product, id);
                    let p = price(&trade["price"]);
                    let q: Qty = canonical(&trade["size"]).parse().unwrap();
                    let time = nine_digit_time(&trade["time"]);
                    times.push(time);
                    let maker = trade["side"].as_str().unwrap();
                    // The decoder turns the maker's side into the aggressor's.
                    let aggressor = match maker {
                        "BUY" => Side::Sell,
                        "SELL" => Side::Buy,
                        other => panic!("side {other}"),
                    };
                    assert_eq!(
                        tick.body,
                        TickBody::Trade {
                            price: p,
                            qty: q,
                            aggressor
                        }
                    );
                    assert_eq!((tick.seq, tick.exchange_ns), (id, time));
                    self.trades += 1;
                }
                assert!(
                    times.windows(2).all(|w| w[0] <= w[1]),
                    "trades out of time order: {raw}"
                );
                if kind == "update" {
                    let span = times.last().unwrap() - times.first().unwrap();
                    assert!(span < 250_000_000, "an update spans more than one 250 ms window: {raw}");
                }
                if !trades.is_empty() {
                    assert_key_order(raw, &["trade_id", "product_id", "price", "size", "side", "time"]);
                }
            }
            "ticker" => {
                assert_eq!(decoded, Decoded::Ticks);
                let tickers = events[0]["tickers"].as_array().unwrap();
                assert_eq!(out.len(), tickers.len());
                for (ticker, tick) in tickers.iter().zip(out.as_slice()) {
                    let bid = price(&ticker["best_bid"]);
                    let ask = price(&ticker["best_ask"]);
                    assert!(bid < ask, "crossed book: {raw}");
                    let TickBody::Quote { bid_qty, ask_qty, .. } = tick.body else {
                        panic!("not a quote");
                    };
                    assert_eq!(bid_qty.to_string(), canonical(&ticker["best_bid_quantity"]));
                    assert_eq!(ask_qty.to_string(), canonical(&ticker["best_ask_quantity"]));
                    price(&ticker["price"]);
                    self.tickers += 1;
                }
                if !tickers.is_empty() {
                    assert_key_order(
                        raw,
                        &[
                            "type",
                            "product_id",
                            "price",
                            "volume_24_h",
                            "low_24_h",
                            "high_24_h",
                            "low_52_w",
                            "high_52_w",
                            "price_percent_chg_24_h",
                            "best_bid",
                            "best_bid_quantity",
                            "best_ask",
                            "best_ask_quantity",
                        ],
                    );
                }
            }
            other => panic!("unexpected channel {other}: {raw}"),
        }
    }
}

/// Reads and checks frames until `done` holds.
fn watch(ws: &mut Client, seen: &mut Seen, what: &str, done: impl Fn(&Seen) -> bool) {
    let index = index();
    let mut decoder = CoinbaseDecoder::new();
    let until = deadline();
    while !done(seen) {
        let raw = read_text(ws, until, what);
        seen.check(&mut decoder, &index, &raw);
    }
}

#[test]
fn a_subscribed_client_gets_acks_batched_trades_tickers_and_heartbeats() {
    let sim = start(config(7));
    let mut ws = subscribed(&sim);
    let mut seen = Seen::default();
    watch(&mut ws, &mut seen, "trades, tickers and heartbeats", |s| {
        s.trades >= 300 && s.tickers >= 50 && s.heartbeats >= 3 && s.batched_messages >= 3
    });
    assert_eq!(seen.acks, 3, "one ack per subscribe message");
    assert_eq!(seen.snapshots, 1);
    assert!(seen.last_trade_id.contains_key("BTC-USD") && seen.last_trade_id.contains_key("ETH-USD"));
}

#[test]
fn a_full_window_is_split_and_every_frame_decodes() {
    let sim = start(CoinbaseSimConfig {
        max_trades_per_message: 3,
        events_per_sec: 5_000,
        ..private_config(3)
    });
    let mut ws = subscribed(&sim);
    let mut seen = Seen::default();
    let mut decoder = CoinbaseDecoder::new();
    let index = index();
    let until = deadline();
    let mut full = 0;
    while full < 20 || seen.trades < 500 {
        let raw = read_text(&mut ws, until, "split trade windows");
        let frame = json(&raw);
        if frame["channel"] == "market_trades" {
            let n = frame["events"][0]["trades"].as_array().unwrap().len();
            assert!(n <= 3, "{n} trades in one message");
            full += usize::from(n == 3);
        }
        seen.check(&mut decoder, &index, &raw);
    }
    assert!(seen.batched_messages > 0);
}

#[test]
fn acks_list_the_active_subscriptions_and_unsubscribe_stops_a_channel() {
    let sim = start(config(5));
    let mut ws = connect(&sim);
    send(
        &mut ws,
        r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"ticker","jwt":"ignored"}"#,
    );
    let until = deadline();
    let ack = json(&read_text(&mut ws, until, "the ticker ack"));
    assert_eq!(ack["channel"], "subscriptions");
    assert_eq!(
        ack["events"][0]["subscriptions"],
        serde_json::json!({"ticker": ["BTC-USD"]})
    );
    for message in subscribe_messages(&products(), &[ChannelKind::MarketTrades]) {
        send(&mut ws, &message);
    }
    // Read up to the market_trades ack (tickers and the heartbeats ack may come first).
    let all = loop {
        let frame = json(&read_text(&mut ws, until, "the market_trades ack"));
        if frame["channel"] == "subscriptions" && frame["events"][0]["subscriptions"].get("market_trades").is_some() {
            break frame;
        }
    };
    assert_eq!(
        all["events"][0]["subscriptions"],
        serde_json::json!({"heartbeats": [], "market_trades": ["BTC-USD", "ETH-USD"], "ticker": ["BTC-USD"]})
    );
    // Without product_ids, unsubscribe drops the whole channel.
    send(&mut ws, r#"{"type":"unsubscribe","channel":"ticker"}"#);
    let after = loop {
        let frame = json(&read_text(&mut ws, until, "the unsubscribe ack"));
        if frame["channel"] == "subscriptions" {
            break frame;
        }
    };
    assert_eq!(
        after["events"][0]["subscriptions"],
        serde_json::json!({"heartbeats": [], "market_trades": ["BTC-USD", "ETH-USD"]})
    );
    // Everything after the ack was sent after the unsubscribe was handled: no more tickers.
    let mut trade_messages = 0;
    while trade_messages < 10 {
        let frame = json(&read_text(&mut ws, until, "trades after the unsubscribe"));
        assert_ne!(frame["channel"], "ticker", "a ticker after unsubscribing");
        trade_messages += usize::from(frame["channel"] == "market_trades");
    }
}

#[test]
fn bad_requests_are_refused_with_error_messages() {
    let sim = start(config(5));
    let mut ws = connect(&sim);
    let index = index();
    let mut decoder = CoinbaseDecoder::new();
    let mut reply = |request: &str| {
        send(&mut ws, request);
        let text = read_text(&mut ws, deadline(), &format!("the reply to {request}"));
        assert_key_order(&text, &["type", "message", "reason"]);
        let (decoded, _) = decode(&mut decoder, &index, &text);
        (json(&text), decoded)
    };
    let rejected = Decoded::Control(Control::SubscribeRejected);
    for (request, reason) in [
        (
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channels":["ticker"]}"#,
            "a channel is required, one per message",
        ),
        (
            r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"level2"}"#,
            "channel level2 is not served by the simulator",
        ),
        (
            r#"{"type":"subscribe","product_ids":["XRP-USD"],"channel":"ticker"}"#,
            r#""XRP-USD" is not a valid product"#,
        ),
        (
            r#"{"type":"subscribe","channel":"market_trades"}"#,
            "product_ids is required",
        ),
        (
            r#"{"type":"subscribe","product_ids":"BTC-USD","channel":"ticker"}"#,
            "product_ids must be an array",
        ),
    ] {
        let (error, decoded) = reply(request);
        assert_eq!(error["type"], "error");
        assert_eq!(error["message"], "Failed to subscribe", "{request}");
        assert_eq!(error["reason"], reason, "{request}");
        assert_eq!(decoded, rejected, "{request}");
    }
    let (error, decoded) = reply(r#"{"type":"unsubscribe","product_ids":["NOPE"],"channel":"ticker"}"#);
    assert_eq!(error["message"], "Failed to unsubscribe");
    assert_eq!(decoded, rejected);
    for request in ["{not json", "[1]", r#"{"type":"hello"}"#] {
        let (error, decoded) = reply(request);
        assert_eq!(error["message"], "Failed to parse message", "{request}");
        assert_eq!(decoded, Decoded::Control(Control::Error { code: 0 }), "{request}");
    }
    // A binary frame is ignored, and the connection keeps working.
    ws.send(Message::binary(vec![0xFF, 0x00, 0x13])).unwrap();
    send(&mut ws, r#"{"type":"subscribe","channel":"heartbeats"}"#);
    let ack = json(&read_text(&mut ws, deadline(), "the heartbeats ack"));
    assert_eq!(ack["events"][0]["subscriptions"], serde_json::json!({"heartbeats": []}));
    assert_eq!(ack["sequence_num"], 0, "error replies carry no sequence number");
}

/// Reads until the server closes the connection; returns the close frame's code and reason.
fn expect_close(ws: &mut Client) -> (CloseCode, String) {
    let until = deadline();
    loop {
        assert!(Instant::now() < until, "the connection was never closed");
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return (frame.code, frame.reason.as_str().to_owned()),
            Ok(Message::Close(None)) => panic!("a close frame without a code"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
}

fn wait_for_connections(sim: &CoinbaseSimHandle, n: usize, mut meanwhile: impl FnMut()) {
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
fn a_client_that_does_not_subscribe_in_time_is_disconnected() {
    let sim = start(CoinbaseSimConfig {
        subscribe_timeout: Duration::from_millis(200),
        ..config(5)
    });
    let mut idle = connect(&sim);
    // A client that subscribes at once outlives the deadline: ten 50 ms heartbeats take longer
    // than 200 ms, and it is never closed meanwhile.
    let mut busy = connect(&sim);
    send(&mut busy, r#"{"type":"subscribe","channel":"heartbeats"}"#);
    let mut seen = Seen::default();
    watch(&mut busy, &mut seen, "ten heartbeats", |s| s.heartbeats >= 10);
    // A refused subscription does not count.
    send(
        &mut idle,
        r#"{"type":"subscribe","channel":"level2","product_ids":["BTC-USD"]}"#,
    );
    assert_eq!(
        expect_close(&mut idle),
        (CloseCode::Policy, "subscribe timeout".to_string())
    );
    wait_for_connections(&sim, 1, || {
        let _ = idle.read();
    });
}

#[test]
fn client_pings_are_answered_unless_the_server_is_deaf() {
    let sim = start(config(5));
    let mut ws = connect(&sim);
    let until = deadline();
    // Reads until the ack of a subscribe sent after the ping; returns the pong payloads seen.
    let ping_then_ack = |ws: &mut Client, payload: &'static [u8]| {
        ws.send(Message::Ping(Bytes::from_static(payload))).unwrap();
        send(ws, r#"{"type":"subscribe","channel":"heartbeats"}"#);
        let mut pongs = Vec::new();
        loop {
            assert!(Instant::now() < until, "no ack");
            match ws.read() {
                Ok(Message::Pong(p)) => pongs.push(p.to_vec()),
                Ok(Message::Text(text)) if json(text.as_str())["channel"] == "subscriptions" => return pongs,
                Ok(_) => {}
                Err(e) if timed_out(&e) => {}
                Err(e) => panic!("the connection failed: {e}"),
            }
        }
    };
    assert_eq!(ping_then_ack(&mut ws, b"one"), [b"one".to_vec()]);
    // While deaf, the ping is read (the ack after it proves it) but never answered.
    sim.faults().set_deaf(true);
    assert!(
        ping_then_ack(&mut ws, b"two").is_empty(),
        "a deaf server answered a ping"
    );
    sim.faults().set_deaf(false);
    assert_eq!(ping_then_ack(&mut ws, b"three"), [b"three".to_vec()]);
    // The deaf spell cost nothing else: heartbeats keep coming, in sequence, and decode.
    let mut decoder = CoinbaseDecoder::new();
    let index = index();
    let until = deadline();
    let mut last: Option<(u64, u64)> = None;
    let mut beats = 0;
    while beats < 3 {
        let raw = read_text(&mut ws, until, "heartbeats after the deaf spell");
        let frame = json(&raw);
        let seq = frame["sequence_num"].as_u64().unwrap();
        let counter = frame["events"][0]["heartbeat_counter"].as_u64().unwrap();
        if let Some((last_seq, last_counter)) = last {
            assert_eq!((seq, counter), (last_seq + 1, last_counter + 1), "{raw}");
        }
        last = Some((seq, counter));
        assert_eq!(
            decode(&mut decoder, &index, &raw).0,
            Decoded::Control(Control::Heartbeat)
        );
        beats += 1;
    }
}

#[test]
fn a_silent_feed_sends_no_data_and_no_heartbeats() {
    let sim = start(config(9));
    sim.faults().set_silent(true);
    let mut ws = subscribed(&sim);
    let mut seen = Seen::default();
    // Acks still come, with no snapshot after them.
    watch(&mut ws, &mut seen, "the three acks", |s| s.acks == 3);
    // Ten heartbeat intervals of silence: nothing at all may arrive.
    let quiet = Instant::now();
    while quiet.elapsed() < 10 * HEARTBEAT {
        match ws.read() {
            Ok(Message::Text(text)) => panic!("a silent feed sent {text}"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the silent feed dropped the connection: {e}"),
        }
    }
    assert_eq!(sim.connections(), 1);
    sim.faults().set_silent(false);
    // The stream resumes with no gap in `sequence_num` and the heartbeat counter at 1; the
    // first market_trades message is an update now (the snapshot was withheld), so it is
    // counted as the "first" message by hand.
    seen.trade_messages = 1;
    watch(&mut ws, &mut seen, "data after the silence", |s| {
        s.heartbeats >= 2 && s.trades >= 20 && s.tickers >= 5
    });
}

#[test]
fn drop_all_cuts_the_connection_without_a_close_frame() {
    let sim = start(config(9));
    let mut ws = subscribed(&sim);
    let mut seen = Seen::default();
    watch(&mut ws, &mut seen, "a heartbeat", |s| s.heartbeats >= 1);
    sim.faults().drop_all();
    let until = deadline();
    let end = loop {
        assert!(Instant::now() < until, "the connection was never dropped");
        match ws.read() {
            Ok(Message::Close(frame)) => panic!("a dropped connection sent a close frame {frame:?}"),
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            end,
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_)
        ),
        "{end}"
    );
    wait_for_connections(&sim, 0, std::thread::yield_now);
    // The fault was one-shot: a new connection works.
    let mut again = subscribed(&sim);
    let mut seen = Seen::default();
    watch(&mut again, &mut seen, "data on a new connection", |s| s.trades >= 10);
}

#[test]
fn injected_garbage_arrives_between_messages_and_fails_to_decode() {
    let sim = start(config(9));
    let mut ws = subscribed(&sim);
    let mut seen = Seen::default();
    let mut decoder = CoinbaseDecoder::new();
    let index = index();
    watch(&mut ws, &mut seen, "a heartbeat", |s| s.heartbeats >= 1);
    sim.faults().inject_garbage(5);
    let until = deadline();
    let mut garbage = Vec::new();
    loop {
        assert!(Instant::now() < until, "no binary frame after the garbage");
        match ws.read() {
            Ok(Message::Text(text)) => {
                let text = text.as_str();
                if GARBAGE_TEXT.contains(&text) {
                    let mut out = TickBatch::new();
                    assert!(
                        decoder
                            .decode(text.as_bytes(), FrameMeta::default(), &index, &mut out)
                            .is_err(),
                        "garbage decoded: {text}"
                    );
                    garbage.push(text.to_owned());
                } else {
                    seen.check(&mut decoder, &index, text);
                }
            }
            Ok(Message::Binary(bytes)) => {
                assert!(
                    std::str::from_utf8(&bytes).is_err(),
                    "the binary garbage is valid UTF-8"
                );
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("the connection failed: {e}"),
        }
    }
    let expected: Vec<String> = GARBAGE_TEXT.iter().cycle().take(5).map(|s| s.to_string()).collect();
    assert_eq!(garbage, expected);
    // The stream goes on, in sequence.
    let trades = seen.trades;
    watch(&mut ws, &mut seen, "data after the garbage", |s| {
        s.trades >= trades + 10
    });
}

#[test]
fn announced_maintenance_closes_with_going_away_and_the_simulator_keeps_accepting() {
    let sim = start(config(9));
    let mut a = subscribed(&sim);
    let mut b = connect(&sim);
    // Accepted but not yet upgraded: a connection counts as open from its accept, so the
    // notice must reach it too, however late its own thread gets going.
    let c = TcpStream::connect(sim.local_addr()).expect("tcp connect");
    wait_for_connections(&sim, 3, std::thread::yield_now);
    sim.faults().announce_shutdown();
    assert_eq!(expect_close(&mut a), (CloseCode::Away, "going away".to_string()));
    assert_eq!(expect_close(&mut b), (CloseCode::Away, "going away".to_string()));
    let mut c = upgrade(&sim, c);
    assert_eq!(expect_close(&mut c), (CloseCode::Away, "going away".to_string()));
    let mut again = subscribed(&sim);
    let mut seen = Seen::default();
    watch(&mut again, &mut seen, "data after the maintenance", |s| s.trades >= 10);
}

#[test]
fn shutdown_closes_every_connection_and_the_listener() {
    let sim = start(config(9));
    let addr = sim.local_addr();
    let mut a = subscribed(&sim);
    let mut b = connect(&sim);
    wait_for_connections(&sim, 2, std::thread::yield_now);
    sim.shutdown();
    assert_eq!(expect_close(&mut a).0, CloseCode::Away);
    assert_eq!(expect_close(&mut b).0, CloseCode::Away);
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is still open after shutdown"
    );
}

/// Reads BTC-USD trades until `n` have arrived; returns each as its JSON text by trade id.
fn btc_trades(ws: &mut Client, n: usize) -> Vec<(u64, String)> {
    let until = deadline();
    let mut trades = Vec::new();
    while trades.len() < n {
        let frame = json(&read_text(ws, until, "BTC-USD trades"));
        if frame["channel"] != "market_trades" {
            continue;
        }
        for trade in frame["events"][0]["trades"].as_array().unwrap() {
            if trade["product_id"] == "BTC-USD" {
                let id = trade["trade_id"].as_str().unwrap().parse().unwrap();
                trades.push((id, trade.to_string()));
            }
        }
    }
    trades
}

fn trades_only(sim: &CoinbaseSimHandle) -> Client {
    let mut ws = connect(sim);
    send(
        &mut ws,
        r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}"#,
    );
    ws
}

#[test]
fn overlapping_connections_share_one_market_timeline() {
    let sim = start(config(21));
    let mut early = trades_only(&sim);
    let mut seen = btc_trades(&mut early, 30);
    let mut late = trades_only(&sim);
    let joined = btc_trades(&mut late, 40);
    let last = joined[joined.len() - 1].0;
    while seen[seen.len() - 1].0 < last {
        seen.extend(btc_trades(&mut early, 1));
    }
    // Every trade the later connection saw, the earlier one saw too, with the same id, price,
    // size, side and time.
    for trade in &joined {
        assert!(seen.contains(trade), "the connections disagree on {trade:?}");
    }
}

#[test]
fn private_markets_replay_the_seed_to_every_connection() {
    let sim = start(private_config(11));
    let strip_time = |trades: Vec<(u64, String)>| -> Vec<(u64, Value)> {
        trades
            .into_iter()
            .map(|(id, text)| {
                let mut trade = json(&text);
                trade.as_object_mut().unwrap().remove("time");
                (id, trade)
            })
            .collect()
    };
    let mut a = trades_only(&sim);
    let first = strip_time(btc_trades(&mut a, 60));
    let mut b = trades_only(&sim);
    let second = strip_time(btc_trades(&mut b, 60));
    // Each connection's snapshot reaches back to id 1 unless it subscribed late; compare from
    // the later of the two starts.
    let from = first[0].0.max(second[0].0);
    let a_from = first.iter().position(|(id, _)| *id == from).unwrap();
    let b_from = second.iter().position(|(id, _)| *id == from).unwrap();
    let n = (first.len() - a_from).min(second.len() - b_from);
    assert!(n >= 20, "too little overlap: {n} trades");
    assert_eq!(first[a_from..a_from + n], second[b_from..b_from + n]);
    for (i, (id, _)) in first.iter().enumerate() {
        assert_eq!(*id, first[0].0 + i as u64, "ids are contiguous");
    }
}

#[test]
fn a_reader_that_falls_behind_the_market_log_is_dropped() {
    // A fast market and a short log: a client that stops reading soon stalls its connection on
    // a full socket, and the connection falls more than 512 events behind.
    let sim = start(CoinbaseSimConfig {
        events_per_sec: 50_000,
        market_log: 512,
        ..config(5)
    });
    let mut slow = subscribed(&sim);
    wait_for_connections(&sim, 0, std::thread::yield_now);
    assert_eq!(sim.lagged(), 1, "the drop was for lagging, not for another reason");
    // The client finds what was sent before the drop, then the end of the connection (the
    // close frame is best effort: it may not fit behind the unread data).
    let until = deadline();
    loop {
        assert!(
            Instant::now() < until,
            "the slow client never saw the end of its connection"
        );
        match slow.read() {
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(
                    (frame.code, frame.reason.as_str()),
                    (CloseCode::Policy, "slow consumer")
                );
                break;
            }
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(_) => break,
        }
    }
}

#[test]
fn only_the_root_path_is_served() {
    let sim = start(config(1));
    let stream = TcpStream::connect(sim.local_addr()).unwrap();
    let url = format!("ws://{}/ws", sim.local_addr());
    match tungstenite::client(url.as_str(), stream) {
        Err(HandshakeError::Failure(WsError::Http(response))) => assert_eq!(response.status().as_u16(), 404),
        Err(e) => panic!("expected HTTP 404, got {e}"),
        Ok(_) => panic!("expected HTTP 404, got an upgrade"),
    }
}

#[test]
fn unusable_configuration_is_refused_before_binding() {
    let refused = |cfg: CoinbaseSimConfig| {
        let err = coinbase::spawn("127.0.0.1:0".parse().unwrap(), cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    };
    refused(CoinbaseSimConfig {
        subscribe_timeout: Duration::ZERO,
        ..config(1)
    });
    refused(CoinbaseSimConfig {
        trade_batch: Duration::from_secs(25 * 60 * 60),
        ..config(1)
    });
    refused(CoinbaseSimConfig {
        max_trades_per_message: 0,
        ..config(1)
    });
    refused(CoinbaseSimConfig {
        events_per_sec: 0,
        ..config(1)
    });
    refused(CoinbaseSimConfig {
        symbols: Vec::new(),
        ..config(1)
    });
    let mut twice = coinbase::sample_symbols();
    twice.push(twice[0]);
    refused(CoinbaseSimConfig {
        symbols: twice,
        ..config(1)
    });
}

/// A capture written by a test, plain and gzip-compressed, removed when dropped.
struct TempCapture {
    plain: std::path::PathBuf,
    gzip: std::path::PathBuf,
}

impl TempCapture {
    fn new(name: &str, lines: &[String]) -> Self {
        let base = format!("maxx-sim-coinbase-{}-{name}", std::process::id());
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

/// An Advanced Trade envelope as the venue prints it.
fn captured(channel: &str, sequence_num: u64, events: &str) -> String {
    format!(
        r#"{{"channel":"{channel}","client_id":"","timestamp":"2023-02-09T20:19:35.{sequence_num:09}Z","sequence_num":{sequence_num},"events":{events}}}"#
    )
}

/// Connects, sends one subscribe message, and returns its ack and the `n` text frames after it.
fn replayed(sim: &CoinbaseSimHandle, subscribe: &str, n: usize) -> (Client, String, Vec<String>) {
    let mut ws = connect(sim);
    send(&mut ws, subscribe);
    let until = deadline();
    let ack = read_text(&mut ws, until, "the ack");
    assert_eq!(json(&ack)["channel"], "subscriptions", "{ack}");
    let frames = (0..n).map(|_| read_text(&mut ws, until, "replayed frames")).collect();
    (ws, ack, frames)
}

#[test]
fn replay_serves_captured_frames_by_channel_and_product_byte_for_byte() {
    let trade = |id: u32, product: &str| {
        format!(
            r#"{{"trade_id":"{id}","product_id":"{product}","price":"21921.3","size":"0.3","side":"BUY","time":"2023-02-09T20:19:35.1Z"}}"#
        )
    };
    let ticker = |product: &str| {
        format!(
            r#"{{"type":"ticker","product_id":"{product}","price":"21932.98","volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"21931.98","best_bid_quantity":"8000.21","best_ask":"21933.98","best_ask_quantity":"8038.07770938"}}"#
        )
    };
    let beat = |counter: u32| {
        format!(
            r#"[{{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":"{counter}"}}]"#
        )
    };
    let btc_trades = captured(
        "market_trades",
        1,
        &format!(r#"[{{"type":"snapshot","trades":[{}]}}]"#, trade(1, "BTC-USD")),
    );
    let both_tickers = captured(
        "ticker",
        2,
        &format!(
            r#"[{{"type":"snapshot","tickers":[{},{}]}}]"#,
            ticker("BTC-USD"),
            ticker("ETH-USD")
        ),
    );
    let first_beat = captured("heartbeats", 3, &beat(3049));
    // Spaces show that frames are sent as captured, not re-encoded.
    let btc_book = r#"{"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z", "sequence_num": 6, "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [{"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "21921.73", "new_quantity": "0.06317902"}]}]}"#.to_owned();
    // One frame with trades of both products reaches a subscriber of either, whole.
    let mixed_trades = captured(
        "market_trades",
        9,
        &format!(
            r#"[{{"type":"update","trades":[{},{}]}}]"#,
            trade(2, "ETH-USD"),
            trade(3, "BTC-USD")
        ),
    );
    let eth_ticker = captured(
        "ticker",
        10,
        &format!(r#"[{{"type":"update","tickers":[{}]}}]"#, ticker("ETH-USD")),
    );
    let last_beat = captured("heartbeats", 11, &beat(3050));
    let eth_book = captured(
        "l2_data",
        12,
        r#"[{"type":"update","product_id":"ETH-USD","updates":[{"side":"offer","event_time":"2023-02-09T20:32:51.1Z","price_level":"1260.02","new_quantity":"0"}]}]"#,
    );
    // Each connection's last frame comes after every line it must not get, so receiving it
    // proves that those were skipped.
    let lines: Vec<String> = [
        "# Advanced Trade capture written by the test".to_owned(),
        format!(
            "1000000000 {}",
            captured(
                "subscriptions",
                0,
                r#"[{"subscriptions":{"market_trades":["BTC-USD"]}}]"#
            )
        ),
        format!("1001000000 {btc_trades}"),
        format!("1002000000 {both_tickers}"),
        format!("1003000000 {first_beat}"),
        format!(
            "1004000000 {}",
            captured(
                "market_trades",
                4,
                &format!(r#"[{{"type":"update","trades":[{}]}}]"#, trade(1, "ETH-USD"))
            )
        ),
        format!(
            "1004500000 {}",
            captured(
                "ticker",
                5,
                &format!(r#"[{{"type":"update","tickers":[{}]}}]"#, ticker("BTC-USD"))
            )
        ),
        format!("1005000000 {btc_book}"),
        "not a capture line".to_owned(),
        format!(
            "1006000000 {}",
            captured(
                "market_trades",
                7,
                &format!(r#"[{{"type":"update","trades":[{}]}}]"#, trade(9, "XRP-USD"))
            )
        ),
        format!(
            "1007000000 {}",
            captured(
                "ticker_batch",
                8,
                &format!(r#"[{{"type":"update","tickers":[{}]}}]"#, ticker("BTC-USD"))
            )
        ),
        r#"1008000000 {"type":"match","trade_id":10,"product_id":"BTC-USD","price":"21921.3","size":"1","side":"sell"}"#
            .to_owned(),
        r#"1008500000 {"type":"error","message":"Failed to subscribe","reason":"test"}"#.to_owned(),
        format!("1009000000 {mixed_trades}"),
        format!("1010000000 {eth_ticker}"),
        format!("1011000000 {last_beat}"),
        format!("1012000000 {eth_book}"),
    ]
    .into();
    let capture = TempCapture::new("replay", &lines);
    let replay_config = |path: &std::path::Path| CoinbaseSimConfig {
        replay: Some(path.to_owned()),
        // Generated heartbeats would show up between the captured frames.
        heartbeat_interval: Duration::from_millis(1),
        ..config(7)
    };
    let sim = start(replay_config(&capture.plain));

    // Trades of BTC-USD only: the snapshot, then the mixed update; the engine's decoder sees the
    // captured numbers, so the frames the connection did not subscribe to show as a gap.
    let subscribe_trades = r#"{"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}"#;
    let (mut trades, ack, frames) = replayed(&sim, subscribe_trades, 2);
    assert_eq!(frames, [btc_trades.clone(), mixed_trades.clone()]);
    assert_eq!(
        json(&ack)["events"][0]["subscriptions"],
        serde_json::json!({"market_trades": ["BTC-USD"]})
    );
    let index = index();
    let mut decoder = CoinbaseDecoder::new();
    let mut gaps = |text: &str| {
        let mut out = TickBatch::new();
        let decoded = decoder
            .decode(text.as_bytes(), FrameMeta::default(), &index, &mut out)
            .unwrap_or_else(|e| panic!("{e} in {text}"));
        (decoded, out.gaps)
    };
    // The ack comes just before the first captured number, so that number is no gap.
    assert_eq!(json(&ack)["sequence_num"], 0);
    assert_eq!(gaps(&ack), (Decoded::Control(Control::Subscribed), 0));
    assert_eq!(gaps(&frames[0]), (Decoded::Ticks, 0));
    assert_eq!(gaps(&frames[1]), (Decoded::Ticks, 1), "sequence 1 to 9 is a gap");
    // Later acks repeat the last captured number, which is no gap either.
    send(&mut trades, r#"{"type":"subscribe","channel":"heartbeats"}"#);
    let ack = read_text(&mut trades, deadline(), "the heartbeats ack");
    assert_eq!(json(&ack)["sequence_num"], 9, "{ack}");
    assert_eq!(
        json(&ack)["events"][0]["subscriptions"],
        serde_json::json!({"heartbeats": [], "market_trades": ["BTC-USD"]})
    );
    assert_eq!(gaps(&ack), (Decoded::Control(Control::Subscribed), 0));

    // Tickers of ETH-USD: the snapshot that names it among others, then its update.
    let (_, _, frames) = replayed(
        &sim,
        r#"{"type":"subscribe","product_ids":["ETH-USD"],"channel":"ticker"}"#,
        2,
    );
    assert_eq!(frames, [both_tickers, eth_ticker]);
    // Heartbeats: every captured one, and none of the simulator's own.
    let (_, ack, frames) = replayed(&sim, r#"{"type":"subscribe","channel":"heartbeats"}"#, 2);
    assert_eq!(frames, [first_beat, last_beat]);
    assert_eq!(
        json(&ack)["events"][0]["subscriptions"],
        serde_json::json!({"heartbeats": []})
    );
    // A replaying simulator serves `level2` from the captured `l2_data` frames.
    let (_, ack, frames) = replayed(
        &sim,
        r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channel":"level2"}"#,
        2,
    );
    assert_eq!(frames, [btc_book, eth_book]);
    let ack = json(&ack);
    assert_eq!(
        ack["events"][0]["subscriptions"],
        serde_json::json!({"level2": ["BTC-USD", "ETH-USD"]})
    );
    assert_eq!(ack["sequence_num"], 0);

    // The gzip copy replays the same frames.
    let gz = start(replay_config(&capture.gzip));
    let (_, _, frames) = replayed(&gz, subscribe_trades, 2);
    assert_eq!(frames, [btc_trades, mixed_trades]);

    // A capture that cannot be read is refused at start, naming the file.
    let missing = capture.plain.with_extension("missing");
    let err = coinbase::spawn("127.0.0.1:0".parse().unwrap(), replay_config(&missing)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
}
