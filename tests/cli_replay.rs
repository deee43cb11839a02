//! End-to-end tests of `maxx replay`: summary counts, `--emit` records and their determinism,
//! gzip, pacing and command-line errors, run against the built binary.
//!
//! Two kinds of input: the real Binance spot captures under `../shared/data/hftbacktest/spot/`
//! (tests skip with a note when they are absent), and a synthetic capture each test writes
//! itself, so every area is covered on every machine. The synthetic capture is a BTCUSDT
//! market that trends up, then down, then goes flat, strongly enough that the shipped momentum
//! parameters open and close positions; it also holds a comment, a blank line, a malformed
//! line, a truncated frame and a depth update.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use common::{
    TempDir, assert_exit, is_canonical_decimal, json_object, run, shared_data, stderr, stdout, str_field, u64_field,
};
use serde_json::Value;

const BTC_SPOT: &str = "hftbacktest/spot/btcusdt_20240808.gz";
const ETH_SPOT: &str = "hftbacktest/spot/ethusdt_20240808.gz";
const EMIT_KINDS: [&str; 4] = ["ticks", "signals", "orders", "fills"];

// ---------------------------------------------------------------------------------------------
// Helpers

/// `maxx replay --venue binance FILES... EXTRA...`, which must exit 0.
fn replay(files: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["replay".into(), "--venue".into(), "binance".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let out = run(&args);
    assert_exit(&out, 0, &format!("maxx {}", args.join(" ")));
    out
}

/// The summary JSON of a `--json` run, from stdout (no `--emit`) or stderr (with `--emit`):
/// exactly one line of that stream must be a JSON object starting with `{"frames"`.
fn summary_json(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("{\"frames\"")).collect();
    assert_eq!(lines.len(), 1, "expected one summary JSON line in:\n{text}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("summary is not JSON: {e}: {}", lines[0]))
}

/// The summary without its latency figures, which are the only non-deterministic part.
fn without_latency(mut v: Value) -> Value {
    let removed = v.as_object_mut().and_then(|o| o.remove("tick_to_order_ns"));
    assert!(removed.is_some(), "summary has no tick_to_order_ns: {v}");
    v
}

fn count(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for key in path {
        cur = cur
            .get(*key)
            .unwrap_or_else(|| panic!("summary has no {}: {v}", path.join(".")));
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("summary {} is not a count: {cur}", path.join(".")))
}

/// A canonical decimal string as an integer count of 10⁻⁸.
fn units(s: &str) -> i128 {
    assert!(is_canonical_decimal(s), "{s:?} is not a canonical decimal");
    let (neg, body) = s.strip_prefix('-').map_or((false, s), |b| (true, b));
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    assert!(frac.len() <= 8, "{s:?} has more than 8 decimals");
    let v = int.parse::<i128>().expect("integer part") * 100_000_000
        + format!("{frac:0<8}").parse::<i128>().expect("fraction");
    if neg { -v } else { v }
}

/// Non-empty stdout lines of an `--emit` run, each a JSON object.
fn emitted(out: &std::process::Output) -> Vec<serde_json::Map<String, Value>> {
    stdout(out).lines().map(json_object).collect()
}

// ---------------------------------------------------------------------------------------------
// The synthetic capture

/// Capture text, and what a replay of it must report.
struct Synthetic {
    text: String,
    /// Quote and trade lines written (one of each per step).
    steps: u64,
}

const BASE_NS: u64 = 1_700_000_000_000_000_000;

/// `61837.63` style price from cents, in Binance's 8-decimal wire form.
fn wire_price(cents: i64) -> String {
    format!("{}.{:02}000000", cents / 100, cents % 100)
}

/// A BTCUSDT market as Binance combined-stream frames: a quote (spread 0.20 around the price)
/// then a trade every 10 ms. The price wobbles by a cent while the slow EMA warms up, climbs
/// 1.00 per trade, falls 1.50 per trade, then goes flat again: far beyond the EMA spread that
/// gives a full momentum score, so Alpha goes long, short and back to flat.
fn synthetic() -> Synthetic {
    let mut path = Vec::new();
    let mut cents: i64 = 6_000_000;
    for i in 0..110 {
        path.push(cents + (i % 2));
    }
    for _ in 0..120 {
        cents += 100;
        path.push(cents);
    }
    for _ in 0..160 {
        cents -= 150;
        path.push(cents);
    }
    for i in 0..120 {
        path.push(cents + (i % 2));
    }
    let mut text = String::from("# synthetic BTCUSDT capture written by tests/cli_replay.rs\n\n");
    let mut t = BASE_NS;
    for (i, &p) in path.iter().enumerate() {
        if i == 20 {
            // Damage the capture early, where it cannot disturb the trend that follows.
            text.push_str("garbage\n");
            text.push_str(&format!(
                "{t} {{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"E\":17\n"
            ));
            text.push_str(&format!(
                "{t} {{\"stream\":\"btcusdt@depth@100ms\",\"data\":{{\"e\":\"depthUpdate\",\"E\":{},\"s\":\"BTCUSDT\",\
                 \"U\":1,\"u\":2,\"b\":[[\"{}\",\"1.00000000\"]],\"a\":[[\"{}\",\"0.50000000\"]]}}}}\n",
                t / 1_000_000,
                wire_price(p - 10),
                wire_price(p + 10)
            ));
            text.push_str("# a comment in the middle\n\n");
        }
        t += 5_000_000;
        text.push_str(&format!(
            "{t} {{\"stream\":\"btcusdt@bookTicker\",\"data\":{{\"u\":{},\"s\":\"BTCUSDT\",\"b\":\"{}\",\
             \"B\":\"1.50000000\",\"a\":\"{}\",\"A\":\"2.00000000\"}}}}\n",
            5000 + i,
            wire_price(p - 10),
            wire_price(p + 10)
        ));
        t += 5_000_000;
        let ms = t / 1_000_000;
        text.push_str(&format!(
            "{t} {{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"E\":{ms},\"s\":\"BTCUSDT\",\"t\":{},\
             \"p\":\"{}\",\"q\":\"0.01500000\",\"T\":{ms},\"m\":{},\"M\":true}}}}\n",
            1001 + i,
            wire_price(p),
            i % 2 == 1
        ));
    }
    Synthetic {
        text,
        steps: path.len() as u64,
    }
}

/// Writes the synthetic capture as `capture.txt` and a gzip copy as `capture.gz`.
fn write_synthetic(dir: &TempDir) -> (Synthetic, PathBuf, PathBuf) {
    let syn = synthetic();
    let plain = dir.write("capture.txt", &syn.text);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(syn.text.as_bytes()).expect("gzip in memory");
    let gz = dir.write("capture.gz", gz.finish().expect("gzip in memory"));
    (syn, plain, gz)
}

// ---------------------------------------------------------------------------------------------
// Real captures

#[test]
fn real_btc_capture_summary_counts_and_repeatable_json() {
    let Some(file) = shared_data(BTC_SPOT) else { return };
    let a = replay(&[&file], &["--json"]);
    let text = stdout(&a);
    assert_eq!(text.lines().count(), 1, "--json prints one line:\n{text}");
    let first = summary_json(&text);
    assert_eq!(count(&first, &["frames"]), 41_249);
    assert_eq!(count(&first, &["ticks", "trade"]), 9_757);
    assert_eq!(count(&first, &["ticks", "quote"]), 28_040);
    assert_eq!(count(&first, &["skipped", "depth"]), 3_451);
    assert_eq!(count(&first, &["skipped", "snapshot"]), 1);
    assert_eq!(count(&first, &["bad_frames"]), 0);
    assert_eq!(first["bad_by_reason"], serde_json::json!({}));
    assert_eq!(
        count(&first, &["orders"]),
        count(&first, &["fills"]) + count(&first, &["rejects"])
    );
    let b = replay(&[&file], &["--json"]);
    assert_eq!(
        without_latency(first),
        without_latency(summary_json(&stdout(&b))),
        "two replays of the same capture differ beyond latency"
    );
}

#[test]
fn real_btc_capture_emit_ticks_is_canonical_and_byte_identical() {
    let Some(file) = shared_data(BTC_SPOT) else { return };
    let a = replay(&[&file], &["--emit", "ticks", "--json"]);
    let b = replay(&[&file], &["--emit", "ticks", "--json"]);
    assert!(a.stdout == b.stdout, "--emit ticks differs between two runs");
    let text = stdout(&a);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 37_797, "one line per tick (9,757 trades + 28,040 quotes)");
    let mut trades = 0;
    for line in &lines {
        let o = json_object(line);
        assert_eq!(str_field(&o, "venue"), "binance", "{line}");
        assert_eq!(str_field(&o, "symbol"), "BTCUSDT", "{line}");
        u64_field(&o, "exchange_ns");
        assert!(u64_field(&o, "recv_ns") > 1_700_000_000_000_000_000, "{line}");
        let decimals: &[&str] = match str_field(&o, "kind") {
            "trade" => {
                trades += 1;
                u64_field(&o, "trade_id");
                assert!(matches!(str_field(&o, "side"), "buy" | "sell"), "{line}");
                &["price", "qty"]
            }
            "quote" => {
                u64_field(&o, "update_id");
                &["bid", "bid_qty", "ask", "ask_qty"]
            }
            other => panic!("unexpected kind {other:?} in {line}"),
        };
        for key in decimals {
            let v = str_field(&o, key);
            assert!(is_canonical_decimal(v), "{key} {v:?} is not canonical in {line}");
        }
    }
    assert_eq!(trades, 9_757);
    let first_trade = lines
        .iter()
        .map(|l| json_object(l))
        .find(|o| str_field(o, "kind") == "trade")
        .expect("a trade line");
    assert_eq!(str_field(&first_trade, "price"), "61837.63");
    assert_eq!(str_field(&first_trade, "qty"), "0.02");
    assert_eq!(str_field(&first_trade, "side"), "sell");
    assert_eq!(u64_field(&first_trade, "trade_id"), 3_735_683_259);
    assert_eq!(u64_field(&first_trade, "exchange_ns"), 1_723_161_255_342_000_000);
    assert_eq!(u64_field(&first_trade, "recv_ns"), 1_723_161_254_087_896_568);
    // The summary went to stderr, and matches the one a plain --json run prints.
    let summary = summary_json(&stderr(&a));
    assert_eq!(count(&summary, &["frames"]), 41_249);
    assert!(!text.contains("\"frames\""), "the summary leaked into stdout");
}

#[test]
fn real_btc_capture_emit_signals_orders_fills_are_byte_identical() {
    let Some(file) = shared_data(BTC_SPOT) else { return };
    for kind in ["signals", "orders", "fills"] {
        let a = replay(&[&file], &["--emit", kind, "--json"]);
        let b = replay(&[&file], &["--emit", kind, "--json"]);
        assert!(a.stdout == b.stdout, "--emit {kind} differs between two runs");
        assert_eq!(
            without_latency(summary_json(&stderr(&a))),
            without_latency(summary_json(&stderr(&b))),
            "--emit {kind}: summaries differ beyond latency"
        );
        let summary = summary_json(&stderr(&a));
        let lines = emitted(&a);
        let expected = match kind {
            "signals" => count(&summary, &["signals"]),
            "orders" => count(&summary, &["orders"]),
            _ => count(&summary, &["fills"]),
        };
        assert_eq!(lines.len() as u64, expected, "--emit {kind}: one line per record");
        for o in &lines {
            assert_eq!(str_field(o, "kind"), &kind[..kind.len() - 1]);
        }
    }
}

#[test]
fn real_spot_captures_replay_together_and_counts_add_up() {
    let (Some(btc), Some(eth)) = (shared_data(BTC_SPOT), shared_data(ETH_SPOT)) else {
        return;
    };
    let eth_alone = summary_json(&stdout(&replay(&[&eth], &["--json"])));
    let both = summary_json(&stdout(&replay(&[&btc, &eth], &["--json"])));
    assert_eq!(count(&both, &["frames"]), 41_249 + count(&eth_alone, &["frames"]));
    assert_eq!(
        count(&both, &["ticks", "trade"]),
        9_757 + count(&eth_alone, &["ticks", "trade"])
    );
    assert_eq!(
        count(&both, &["ticks", "quote"]),
        28_040 + count(&eth_alone, &["ticks", "quote"])
    );
    assert_eq!(
        count(&both, &["skipped", "depth"]),
        3_451 + count(&eth_alone, &["skipped", "depth"])
    );
    assert_eq!(
        count(&both, &["skipped", "snapshot"]),
        1 + count(&eth_alone, &["skipped", "snapshot"])
    );
    assert_eq!(count(&both, &["bad_frames"]), 0);
    assert!(count(&eth_alone, &["ticks", "trade"]) > 0, "the ETH capture has trades");
}

// ---------------------------------------------------------------------------------------------
// The synthetic capture: always runs

#[test]
fn synthetic_capture_counts_bad_lines_skips_and_trades() {
    let dir = TempDir::new("replay-counts");
    let (syn, plain, _) = write_synthetic(&dir);
    let s = summary_json(&stdout(&replay(&[&plain], &["--json"])));
    // Frames: every quote and trade, the malformed line, the truncated frame and the depth
    // update; the comments and the blank line are not frames.
    assert_eq!(count(&s, &["frames"]), 2 * syn.steps + 3);
    assert_eq!(count(&s, &["ticks", "trade"]), syn.steps);
    assert_eq!(count(&s, &["ticks", "quote"]), syn.steps);
    assert_eq!(count(&s, &["skipped", "depth"]), 1);
    assert_eq!(count(&s, &["skipped", "snapshot"]), 0);
    assert_eq!(count(&s, &["control"]), 0);
    assert_eq!(count(&s, &["bad_frames"]), 2);
    assert_eq!(s["bad_by_reason"], serde_json::json!({"json": 1, "malformed_line": 1}));
    let orders = count(&s, &["orders"]);
    assert!(orders > 0, "the trend must make the shipped config trade: {s}");
    assert_eq!(count(&s, &["fills"]), orders, "every market order fills at the touch");
    assert_eq!(count(&s, &["rejects"]), 0);
    // Execution's breakdown accounts for every order: one venue, so each was its only choice.
    let e = &s["execution"];
    assert_eq!(count(e, &["routed", "binance"]), orders, "{e}");
    assert_eq!(count(e, &["route_reasons", "only_venue"]), orders, "{e}");
    assert_eq!(
        count(e, &["maker"]) + count(e, &["taker"]) + count(e, &["as_asked"]),
        orders,
        "{e}"
    );
    assert_eq!(count(e, &["filled"]), orders, "{e}");
    assert_eq!(e["rejected"], serde_json::json!({}));
    assert!(count(&s, &["intents"]) >= orders);
    assert!(count(&s, &["signals"]) > 0 && count(&s, &["signals"]) <= syn.steps);
    // The market ends flat, far from any threshold, so the position is closed.
    assert_eq!(s["positions"], serde_json::json!({}));
    assert_eq!(s["unrealized_pnl"], "0");
}

#[test]
fn synthetic_capture_gzip_replays_identically_to_plain() {
    let dir = TempDir::new("replay-gzip");
    let (_, plain, gz) = write_synthetic(&dir);
    assert_eq!(&std::fs::read(&gz).expect("read gz")[..2], &[0x1f, 0x8b]);
    let a = summary_json(&stdout(&replay(&[&plain], &["--json"])));
    let b = summary_json(&stdout(&replay(&[&gz], &["--json"])));
    assert_eq!(without_latency(a), without_latency(b));
    for kind in EMIT_KINDS {
        let a = replay(&[&plain], &["--emit", kind]);
        let b = replay(&[&gz], &["--emit", kind]);
        assert!(!a.stdout.is_empty(), "--emit {kind} printed nothing");
        assert!(a.stdout == b.stdout, "--emit {kind}: .gz and plain differ");
    }
}

#[test]
fn synthetic_capture_emit_is_deterministic_and_consistent() {
    let dir = TempDir::new("replay-emit");
    let (syn, plain, _) = write_synthetic(&dir);
    let mut runs: BTreeMap<&str, std::process::Output> = BTreeMap::new();
    for kind in EMIT_KINDS {
        let a = replay(&[&plain], &["--emit", kind, "--json"]);
        let b = replay(&[&plain], &["--emit", kind, "--json"]);
        assert!(!a.stdout.is_empty(), "--emit {kind} printed nothing");
        assert!(a.stdout == b.stdout, "--emit {kind} differs between two runs");
        runs.insert(kind, a);
    }
    let summary = summary_json(&stderr(&runs["fills"]));
    let ticks = emitted(&runs["ticks"]);
    let signals = emitted(&runs["signals"]);
    let orders = emitted(&runs["orders"]);
    let fills = emitted(&runs["fills"]);
    assert_eq!(ticks.len() as u64, 2 * syn.steps);
    assert_eq!(signals.len() as u64, count(&summary, &["signals"]));
    assert_eq!(orders.len() as u64, count(&summary, &["orders"]));
    assert_eq!(fills.len() as u64, count(&summary, &["fills"]));

    // Ticks: canonical decimals, the wire's 8-decimal strings trimmed (0.01500000 -> 0.015).
    for t in &ticks {
        match str_field(t, "kind") {
            "trade" => {
                assert_eq!(str_field(t, "qty"), "0.015");
                assert!(is_canonical_decimal(str_field(t, "price")), "{t:?}");
            }
            "quote" => {
                for k in ["bid", "ask"] {
                    assert!(is_canonical_decimal(str_field(t, k)), "{t:?}");
                }
                assert_eq!(str_field(t, "bid_qty"), "1.5");
                assert_eq!(str_field(t, "ask_qty"), "2");
            }
            other => panic!("unexpected tick kind {other:?}"),
        }
    }
    // Signals: one per trade at most, scores canonical and within [-1, 1].
    for s in &signals {
        let score = str_field(s, "score");
        assert!(is_canonical_decimal(score), "{s:?}");
        let magnitude = score.strip_prefix('-').unwrap_or(score);
        assert!(
            magnitude == "1" || magnitude.starts_with("0"),
            "score within [-1, 1]: {s:?}"
        );
        assert_eq!(str_field(s, "confidence"), magnitude, "confidence is |score|: {s:?}");
        let expected_side = match (score.starts_with('-'), score == "0") {
            (_, true) => "flat",
            (true, false) => "sell",
            (false, false) => "buy",
        };
        assert_eq!(str_field(s, "side"), expected_side, "{s:?}");
    }

    // Orders: ids 1..n in order, each stamped with the receive time of a trade.
    let trade_times: Vec<u64> = ticks
        .iter()
        .filter(|t| str_field(t, "kind") == "trade")
        .map(|t| u64_field(t, "recv_ns"))
        .collect();
    for (i, o) in orders.iter().enumerate() {
        assert_eq!(u64_field(o, "id"), i as u64 + 1, "order ids are 1..n: {o:?}");
        assert_eq!(str_field(o, "symbol"), "BTCUSDT");
        assert_eq!(str_field(o, "origin"), "alpha");
        assert!(is_canonical_decimal(str_field(o, "qty")), "{o:?}");
        assert!(
            trade_times.contains(&u64_field(o, "ts")),
            "order ts is a trade's recv_ns: {o:?}"
        );
    }

    // Fills: one per order, at the touch of the last quote before the triggering trade, with
    // the taker fee (7.5 bps, rounded up to 10^-8); the account starts and ends flat, so the
    // realized PnL is exactly sell proceeds minus buy costs.
    let quotes: Vec<(u64, i128, i128)> = ticks
        .iter()
        .filter(|t| str_field(t, "kind") == "quote")
        .map(|t| {
            (
                u64_field(t, "recv_ns"),
                units(str_field(t, "bid")),
                units(str_field(t, "ask")),
            )
        })
        .collect();
    let mut cash: i128 = 0;
    let mut position: i128 = 0;
    let mut fees: i128 = 0;
    for (f, o) in fills.iter().zip(&orders) {
        for key in ["price", "qty", "fee"] {
            assert!(is_canonical_decimal(str_field(f, key)), "{key} in {f:?}");
        }
        assert_eq!(u64_field(f, "order_id"), u64_field(o, "id"));
        assert_eq!(str_field(f, "side"), str_field(o, "side"));
        assert_eq!(str_field(f, "qty"), str_field(o, "qty"));
        assert_eq!(u64_field(f, "ts"), u64_field(o, "ts"), "a fill carries its tick's time");
        assert_eq!(str_field(f, "liquidity"), "taker");
        let ts = u64_field(f, "ts");
        let &(_, bid, ask) = quotes
            .iter()
            .rev()
            .find(|q| q.0 <= ts)
            .unwrap_or_else(|| panic!("no quote before {f:?}"));
        let price = units(str_field(f, "price"));
        let qty = units(str_field(f, "qty"));
        // price × qty is in 10⁻¹⁶; both are positive, so the rounding up is done unsigned.
        let notional = price * qty;
        assert_eq!(notional % 100_000_000, 0, "notional has at most 8 decimals: {f:?}");
        let fee = u128::try_from(notional * 7_500)
            .expect("positive notional")
            .div_ceil(100_000_000 * 10_000_000);
        let fee = i128::try_from(fee).expect("fee fits");
        assert_eq!(units(str_field(f, "fee")), fee, "taker fee of {f:?}");
        fees += fee;
        match str_field(f, "side") {
            "buy" => {
                assert_eq!(price, ask, "a buy fills at the ask: {f:?}");
                cash -= notional / 100_000_000;
                position += qty;
            }
            "sell" => {
                assert_eq!(price, bid, "a sell fills at the bid: {f:?}");
                cash += notional / 100_000_000;
                position -= qty;
            }
            other => panic!("unexpected side {other:?}"),
        }
    }
    assert_eq!(position, 0, "the fills net to flat");
    assert_eq!(units(summary["fees"].as_str().expect("fees")), fees);
    assert_eq!(units(summary["realized_pnl"].as_str().expect("realized")), cash);
}

#[test]
fn synthetic_capture_text_summary_goes_to_stderr_with_emit() {
    let dir = TempDir::new("replay-stderr");
    let (syn, plain, _) = write_synthetic(&dir);
    let without = replay(&[&plain], &[]);
    let text = stdout(&without);
    let frames_line = format!("frames        {}", 2 * syn.steps + 3);
    assert!(
        text.lines().any(|l| l == frames_line),
        "text summary on stdout:\n{text}"
    );
    assert!(text.contains("bad frames    2 [json: 1, malformed_line: 1]"), "{text}");
    let with = replay(&[&plain], &["--emit", "orders"]);
    let (out, err) = (stdout(&with), stderr(&with));
    assert!(
        err.lines().any(|l| l == frames_line),
        "with --emit the summary is on stderr:\n{err}"
    );
    assert!(
        out.lines().all(|l| l.starts_with("{\"kind\":\"order\"")),
        "stdout holds only orders:\n{out}"
    );
}

#[test]
fn speed_1000_emits_the_same_records_as_max() {
    let dir = TempDir::new("replay-speed");
    let (_, plain, _) = write_synthetic(&dir);
    for kind in EMIT_KINDS {
        let fast = replay(&[&plain], &["--emit", kind, "--speed", "max"]);
        let paced = replay(&[&plain], &["--emit", kind, "--speed", "1000"]);
        assert!(!fast.stdout.is_empty(), "--emit {kind} printed nothing");
        assert!(
            fast.stdout == paced.stdout,
            "--emit {kind}: --speed 1000 differs from max"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn unknown_venue_is_refused_naming_the_known_venues() {
    let dir = TempDir::new("replay-venue");
    let (_, plain, _) = write_synthetic(&dir);
    let out = run(&["replay", "--venue", "kraken", plain.to_str().expect("utf-8 path")]);
    assert_exit(&out, 1, "replay --venue kraken");
    let err = stderr(&out);
    assert!(err.contains("kraken"), "{err}");
    for known in ["binance", "coinbase", "bybit", "oanda"] {
        assert!(err.contains(known), "the message names {known}: {err}");
    }
    assert!(stdout(&out).is_empty());
}

#[test]
fn missing_capture_file_exits_1_naming_the_path() {
    let dir = TempDir::new("replay-missing");
    let missing = dir.path().join("no-such-capture.txt");
    let out = run(&["replay", "--venue", "binance", missing.to_str().expect("utf-8 path")]);
    assert_exit(&out, 1, "replay of a missing file");
    let err = stderr(&out);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_command_lines_are_usage_errors() {
    let dir = TempDir::new("replay-usage");
    let (_, plain, _) = write_synthetic(&dir);
    let file = plain.to_str().expect("utf-8 path");
    let cases: [(&[&str], &str); 5] = [
        (&["replay", "--venue", "binance", "--speed", "abc", file], "--speed"),
        (&["replay", "--venue", "binance", "--speed", "0", file], "--speed"),
        (&["replay", "--venue", "binance", "--emit", "bogus", file], "--emit"),
        (&["replay", "--venue", "binance"], "<FILES>"),
        (&["replay", file], "--venue"),
    ];
    for (args, mentions) in cases {
        let out = run(args);
        assert_exit(&out, 2, &format!("maxx {}", args.join(" ")));
        let err = stderr(&out);
        assert!(
            err.contains(mentions),
            "maxx {}: stderr names {mentions}:\n{err}",
            args.join(" ")
        );
        assert!(stdout(&out).is_empty(), "maxx {}: nothing on stdout", args.join(" "));
    }
}

#[test]
fn canonical_decimal_check_is_strict() {
    for ok in ["0", "1", "61837.63", "0.02", "-0.5", "100000", "0.00000001"] {
        assert!(is_canonical_decimal(ok), "{ok} is canonical");
    }
    for bad in [
        "",
        "-",
        "01",
        "1.",
        "1.0",
        "61837.630",
        "1e5",
        "-0",
        "+1",
        ".5",
        "1.2.3",
        "0.1 ",
    ] {
        assert!(!is_canonical_decimal(bad), "{bad:?} is not canonical");
    }
    assert_eq!(units("61837.63"), 6_183_763_000_000);
    assert_eq!(units("-0.00000001"), -1);
}
