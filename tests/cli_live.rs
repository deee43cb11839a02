//! End-to-end tests of live order entry on `maxx run`: with `exec.live.binance` and
//! `exec.live.bybit` pointing at the mock Binance Spot and Bybit v5 REST venues
//! (`maxx_cold::mockvenue`, started in this process on loopback), an order pinned to a venue
//! over `POST /order` leaves through that venue's REST gateway, signed with the key and secret
//! from the environment, and its HTTP answer is the venue's. The mocks verify every signature
//! with their own HMAC and keep their own books, so what they hold is the venue's view.
//!
//! The market comes from the built-in simulator (the Binance feed), which Risk prices orders
//! against; the mocks fill marketable orders at their own reference price. Alpha is silent
//! (only the sentiment family has weight, and it has no opinion), so the only orders are the
//! tests' own. A missing credential stops the start with an error naming the variable.

mod common;

use std::process::{Command, Stdio};

use common::{Running, TOKEN, TempDir, config_with, maxx};
use maxx_cold::mockvenue::{self, MockConfig, MockHandle, MockOrder};
use serde_json::Value;

/// The Binance docs' example key pair (`venues.md` §1.9).
const BINANCE_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
const BINANCE_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
/// A key pair for the Bybit mock.
const BYBIT_KEY: &str = "XXXXXXXXXXbybitkey42";
const BYBIT_SECRET: &str = "XXXXXXXXXXbybitsecret0123456789abcdef";

/// Every credential variable `maxx run` could read: cleared from the child's environment first,
/// so a developer's own keys never reach a test run.
const CREDENTIAL_VARS: [&str; 4] = [
    "MAXX_BINANCE_API_KEY",
    "MAXX_BINANCE_API_SECRET",
    "MAXX_BYBIT_API_KEY",
    "MAXX_BYBIT_API_SECRET",
];

/// The shipped config with a silent Alpha, parked hot threads, BTCUSDT also listed on Bybit, and
/// live order entry for both venues at `binance_url` and `bybit_url`.
fn config(binance_url: &str, bybit_url: &str) -> String {
    let live = format!(
        "    venues: {{}}
  live:
    binance: {{base_url: \"{binance_url}\", client_id_prefix: e2e}}
    bybit: {{base_url: \"{bybit_url}\", client_id_prefix: e2e, recv_window_ms: 10000}}"
    );
    config_with(&[
        ("  wait:", "  wait: park"),
        ("    momentum:", "    momentum: 0"),
        ("    mean_rev:", "    mean_rev: 0"),
        ("    breakout:", "    breakout: 0"),
        ("    sentiment:", "    sentiment: 1"),
        ("  price_collar_pct:", "  price_collar_pct: 5.0"),
        (
            "    venues: {binance: BTCUSDT}",
            "    venues: {binance: BTCUSDT, bybit: BTCUSDT}",
        ),
        ("    venues: {}", &live),
    ])
}

/// Posts market buys of 0.001 BTCUSDT pinned to `venue` (a fresh client order id each time)
/// until the engine has a market to price them against; returns the first real answer.
fn market_buy(run: &mut Running, venue: &str) -> (u16, Value) {
    let mut attempt = 0;
    run.poll(&format!("an order priced for {venue}"), |run| {
        attempt += 1;
        let body = format!(
            r#"{{"client_order_id":"live-{venue}-{attempt}","symbol":"BTCUSDT","side":"buy","qty":"0.001","type":"market","venue":"{venue}"}}"#
        );
        let (status, v) = run.post("/order", Some(TOKEN), &body);
        // Until the feed is live and a price is known, Risk refuses the order and nothing
        // reaches the venue.
        let waiting = ["no_price", "feed_not_live"].contains(&v["reject_reason"].as_str().unwrap_or_default());
        if status == 200 && waiting { Err(v.to_string()) } else { Ok((status, v)) }
    })
}

/// Checks that the venue's answer came back over HTTP and that the mock holds exactly that
/// order, correctly signed, under our client id prefix.
fn assert_filled_at(mock: &MockHandle, venue: &str, (status, ack): (u16, Value)) {
    assert_eq!(status, 200, "{venue}: {ack}");
    assert_eq!(ack["status"], "ORDER_STATUS_FILLED", "{venue}: {ack}");
    assert_eq!(ack["venue"], venue, "{ack}");
    // The mock fills marketable orders at its reference price, not the simulator's.
    assert_eq!(
        (ack["filled_qty"].as_str(), ack["avg_price"].as_str()),
        (Some("0.001"), Some("60000")),
        "{ack}"
    );
    let order_id = ack["order_id"].as_u64().expect("order_id");
    let orders: Vec<MockOrder> = mock.orders();
    assert_eq!(
        orders.len(),
        1,
        "{venue}: exactly the one order reached the venue: {orders:?}"
    );
    let o = &orders[0];
    assert_eq!(ack["venue_order_id"], o.id.to_string(), "{venue}: {ack} vs {o:?}");
    // `e2e-<run in base 36>-<engine order id>`.
    let run = o
        .client_id
        .strip_prefix("e2e-")
        .and_then(|rest| rest.strip_suffix(&format!("-{order_id}")))
        .unwrap_or_else(|| panic!("{venue}: client id {:?} is not e2e-<run>-{order_id}", o.client_id));
    assert!(
        !run.is_empty() && run.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{venue}: run part {run:?}"
    );
    assert!(o.buy && o.symbol == "BTCUSDT", "{venue}: {o:?}");
    assert_eq!(o.qty.to_string(), "0.001", "{venue}: {o:?}");
    assert_eq!(o.status, mockvenue::Status::Filled, "{venue}: {o:?}");
    let c = mock.counters();
    assert_eq!(
        (c.signature_failures, c.key_failures, c.timestamp_failures),
        (0, 0, 0),
        "{venue}: every request was signed with the right key and in time: {c:?}"
    );
    assert_eq!(c.orders_placed, 1, "{venue}: {c:?}");
}

#[test]
fn orders_pinned_to_a_live_venue_reach_it_signed_and_answer_with_its_fill() {
    let binance = mockvenue::binance::spawn(MockConfig::btcusdt(BINANCE_KEY, BINANCE_SECRET)).expect("binance mock");
    let bybit = mockvenue::bybit::spawn(MockConfig::btcusdt(BYBIT_KEY, BYBIT_SECRET)).expect("bybit mock");
    let dir = TempDir::new("live");
    let path = dir.write("run.yaml", config(&binance.base_url(), &bybit.base_url()));
    let mut run = Running::start_with_env(
        &path,
        &[
            ("MAXX_BINANCE_API_KEY", BINANCE_KEY),
            ("MAXX_BINANCE_API_SECRET", BINANCE_SECRET),
            ("MAXX_BYBIT_API_KEY", BYBIT_KEY),
            ("MAXX_BYBIT_API_SECRET", BYBIT_SECRET),
        ],
        &CREDENTIAL_VARS,
    );

    let answer = market_buy(&mut run, "binance");
    assert_filled_at(&binance, "binance", answer);
    // Bybit answers a placement with its id only; the gateway learns the fill by query.
    let answer = market_buy(&mut run, "bybit");
    assert_filled_at(&bybit, "bybit", answer);
    assert!(bybit.counters().queries >= 1, "{:?}", bybit.counters());

    let (stdout, stderr) = run.stop_with_output();
    for (venue, url) in [("binance", binance.base_url()), ("bybit", bybit.base_url())] {
        let logged = stderr.lines().any(|l| {
            l.contains("order entry")
                && l.contains(&format!("\"venue\":\"{venue}\""))
                && l.contains("\"mode\":\"live\"")
                && l.contains(&url)
        });
        assert!(logged, "no live order entry line for {venue} at {url}:\n{stderr}");
    }
    for secret in [BINANCE_KEY, BINANCE_SECRET, BYBIT_KEY, BYBIT_SECRET] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a credential was printed"
        );
    }
}

#[test]
fn a_missing_credential_stops_the_start_naming_the_variable() {
    let dir = TempDir::new("live-creds");
    // Nothing listens there; the start must fail before any request.
    let path = dir.write("run.yaml", config("http://127.0.0.1:9", "http://127.0.0.1:9"));
    for (missing, present, value) in [
        ("MAXX_BINANCE_API_KEY", "MAXX_BINANCE_API_SECRET", BINANCE_SECRET),
        ("MAXX_BINANCE_API_SECRET", "MAXX_BINANCE_API_KEY", BINANCE_KEY),
    ] {
        let mut cmd: Command = maxx();
        cmd.args(["run", "--config", path.to_str().expect("utf-8 path"), "--for", "60s"])
            .env("MAXX_API_TOKEN", TOKEN)
            .stdin(Stdio::null());
        for var in CREDENTIAL_VARS {
            cmd.env_remove(var);
        }
        let out = cmd.env(present, value).output().expect("run maxx");
        let (stdout, stderr) = (common::stdout(&out), common::stderr(&out));
        assert_eq!(
            out.status.code(),
            Some(1),
            "without {missing}: {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        assert!(
            stderr.contains(&format!("exec.live.binance: environment variable {missing} is not set")),
            "{stderr}"
        );
        assert!(
            !stdout.contains(value) && !stderr.contains(value),
            "the {present} value was printed"
        );
        // Refused before the engine started: no summary, no order entry.
        assert!(!stdout.contains("--- summary"), "{stdout}");
    }
}
