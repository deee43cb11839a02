//! End-to-end tests of order entry on `maxx run`: the gRPC ExecutionService driven by a real
//! Python grpcio client (`tests/python/exec_client.py`, stubs generated from
//! `proto/execution.proto` at test time with `grpc_tools.protoc`), and the same contract over
//! HTTP (`POST /order`, `POST /cancel`): fills, a resting limit, idempotent resubmission,
//! ALREADY_EXISTS, cancels, NOT_FOUND / FAILED_PRECONDITION, every malformed field, missing
//! tokens and the kill switch.
//!
//! The engine trades nothing by itself here (only the sentiment family has weight, and it has no
//! opinion), so the only orders are the tests' own; the price collar is widened to 5% so a buy
//! 3% under the market rests at the paper venue.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ROOT, Running, TOKEN, TempDir, config_with};
use serde_json::{Value, json};

/// `maxx run` with a silent Alpha, a 5% collar and parked hot threads.
fn config() -> String {
    config_with(&[
        ("  wait:", "  wait: park"),
        ("    momentum:", "    momentum: 0"),
        ("    mean_rev:", "    mean_rev: 0"),
        ("    breakout:", "    breakout: 0"),
        ("    sentiment:", "    sentiment: 1"),
        ("  price_collar_pct:", "  price_collar_pct: 5.0"),
    ])
}

/// How to install the Python packages the client needs (the versions CI installs, `.ci/run`).
const PY_INSTALL: &str = "python3 -m pip install --user -r tests/python/requirements.txt";

/// Fails (never skips) when python3 or its grpc packages are missing.
fn require_python_grpc() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc, google.protobuf"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 is needed for the gRPC client test and could not be started ({e}): install python3 and then `{PY_INSTALL}` (.ci/run does both)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "python3 lacks the grpc packages: `{PY_INSTALL}` (.ci/run does this)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
}

/// Generates the Python stubs of both `.proto` files into `dir`.
fn python_stubs(dir: &Path) {
    let proto = Path::new(ROOT).join("proto");
    let out = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto.display()))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .args(["execution.proto", "risk.proto"])
        .output()
        .expect("run grpc_tools.protoc");
    assert!(
        out.status.success(),
        "grpc_tools.protoc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stub in ["execution_pb2.py", "execution_pb2_grpc.py"] {
        assert!(dir.join(stub).is_file(), "protoc wrote no {stub}");
    }
}

#[test]
fn a_python_grpc_client_submits_cancels_and_meets_every_refusal() {
    require_python_grpc();
    let dir = TempDir::new("orders-py");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stub dir");
    python_stubs(&stubs);
    let path = dir.write("run.yaml", config());
    let mut run = Running::start(&path);

    let script = Path::new(ROOT).join("tests/python/exec_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--grpc", &run.grpc, "--http", &run.addr, "--token", TOKEN])
        .env("PYTHONPATH", &stubs)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        run.fail(&format!(
            "exec_client.py exited with {}\n--- its stdout\n{stdout}\n--- its stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for check in [
        "ok reflection",
        "ok unauthenticated",
        "ok marketable order filled",
        "ok resting limit accepted",
        "ok idempotent resubmission",
        "ok changed resubmission refused",
        "ok cancelled",
        "ok cancel refusals",
        "ok invalid arguments (24 cases)",
        "ok halted",
        "ok resumed",
        "exec_client: all 11 checks passed",
    ] {
        assert!(stdout.lines().any(|l| l == check), "no {check:?} in\n{stdout}");
    }
    let stderr = run.stop();
    assert!(stderr.contains("manual order entered"), "{stderr}");
    assert!(stderr.contains("cancel requested"), "{stderr}");
}

/// `POST path` with the token; the body as JSON text.
fn post(run: &Running, path: &str, body: &str) -> (u16, Value) {
    run.post(path, Some(TOKEN), body)
}

/// What Risk answers before the engine has seen the market: no price yet, or the feed not yet
/// live.
const NO_MARKET_YET: [&str; 2] = ["no_price", "feed_not_live"];

fn market(id: &str) -> String {
    format!(r#"{{"client_order_id":"{id}","symbol":"BTCUSDT","side":"buy","qty":"0.001","type":"market"}}"#)
}

/// The quantity a market order's ack says executed: all of it (`FILLED`), or part of it with the
/// rest cancelled (`CANCELLED`: the paper venue fills against the displayed size).
fn executed(ack: &Value) -> maxx_hot::num::Qty {
    let filled: maxx_hot::num::Qty = ack["filled_qty"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("filled_qty");
    match ack["status"].as_str() {
        Some("ORDER_STATUS_FILLED") => assert_eq!(filled.to_string(), "0.001", "{ack}"),
        Some("ORDER_STATUS_CANCELLED") => assert!(!filled.is_zero(), "nothing executed: {ack}"),
        _ => panic!("a market order neither filled nor partly filled: {ack}"),
    }
    filled
}

/// 3% under `price`, floored to the 0.01 tick.
fn three_percent_under(price: &str) -> String {
    let raw: i128 = price
        .parse::<maxx_hot::num::Price>()
        .expect("decimal price")
        .raw()
        .into();
    let tick = 1_000_000; // 0.01 in 10^-8 units
    let under = raw * 97 / 100 / tick * tick;
    maxx_hot::num::Price::from_raw(under as i64)
        .expect("positive")
        .to_string()
}

fn assert_error(what: &str, (status, body): (u16, Value), want_status: u16, code: &str, needle: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(needle), "{what}: {error:?} lacks {needle:?}");
}

#[test]
fn orders_and_cancels_over_http_follow_the_grpc_contract() {
    let dir = TempDir::new("orders-http");
    let path = dir.write("run.yaml", config());
    let mut run = Running::start(&path);

    // Without the token nothing is entered.
    let (status, body) = run.post("/order", None, &market("h-noauth"));
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{body}"
    );
    let (status, body) = run.post("/order", Some("wrong"), &market("h-noauth"));
    assert_eq!(status, 401, "{body}");
    let (status, body) = run.post("/cancel", None, r#"{"client_order_id":"h-noauth"}"#);
    assert_eq!(status, 401, "{body}");

    // A market order fills; until the engine has a price, Risk refuses it (no_price), and each
    // attempt takes a fresh id.
    let mut attempt = 0;
    let fill = run.poll("a market fill over HTTP", |r| {
        attempt += 1;
        let (status, v) = post(r, "/order", &market(&format!("h-mkt-{attempt}")));
        let nothing_taken = v["status"] == "ORDER_STATUS_CANCELLED" && v["filled_qty"] == "0";
        if status == 200 && (NO_MARKET_YET.contains(&v["reject_reason"].as_str().unwrap_or_default()) || nothing_taken)
        {
            Err(v.to_string())
        } else {
            Ok((status, v))
        }
    });
    let (status, fill) = fill;
    assert_eq!(status, 200, "{fill}");
    let mut bought = executed(&fill);
    assert_eq!(fill["venue"], "binance", "{fill}");
    assert!(fill["order_id"].as_u64().unwrap_or(0) > 0, "{fill}");
    assert!(
        !fill["venue_order_id"].as_str().unwrap_or_default().is_empty(),
        "{fill}"
    );
    let avg = fill["avg_price"].as_str().expect("avg_price").to_string();
    assert!(common::is_canonical_decimal(&avg), "{fill}");

    // A buy limit 3% under the market rests.
    let price = three_percent_under(&avg);
    let rest = format!(
        r#"{{"client_order_id":"h-rest","symbol":"BTCUSDT","side":"buy","qty":"0.001","price":"{price}","type":"limit","time_in_force":"gtc"}}"#
    );
    let (status, ack) = post(&run, "/order", &rest);
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["status"], "ORDER_STATUS_ACCEPTED", "{ack}");
    assert_eq!(
        (ack["client_order_id"].as_str(), ack["symbol"].as_str()),
        (Some("h-rest"), Some("BTCUSDT"))
    );
    assert!(!ack["venue_order_id"].as_str().unwrap_or_default().is_empty(), "{ack}");
    let order_id = ack["order_id"].as_u64().expect("order_id");

    // The same order, also written with the proto's enum names and a trailing zero, is the same
    // ack; different contents are a conflict.
    assert_eq!(post(&run, "/order", &rest), (200, ack.clone()));
    let same = format!(
        r#"{{"client_order_id":"h-rest","symbol":"BTCUSDT","side":"SIDE_BUY","qty":"0.0010","price":"{price}","type":"ORDER_TYPE_LIMIT","time_in_force":"TIME_IN_FORCE_GTC","venue":null}}"#
    );
    assert_eq!(post(&run, "/order", &same), (200, ack.clone()));
    assert_error(
        "changed resubmission",
        post(&run, "/order", &rest.replace("\"qty\":\"0.001\"", "\"qty\":\"0.002\"")),
        409,
        "already_exists",
        "h-rest",
    );

    // Cancel it by engine id; again (either id) is a conflict, unknown ids are not found.
    let (status, c) = post(&run, "/cancel", &format!(r#"{{"order_id":{order_id}}}"#));
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["cancelled"].as_bool(), c["order_id"].as_u64()),
        (Some(true), Some(order_id)),
        "{c}"
    );
    assert_eq!(
        (c["client_order_id"].as_str(), c["cancelled_qty"].as_str()),
        (Some("h-rest"), Some("0.001"))
    );
    assert_error(
        "cancel again",
        post(&run, "/cancel", r#"{"client_order_id":"h-rest"}"#),
        409,
        "failed_precondition",
        "already final",
    );
    assert_error(
        "cancel again by id",
        post(&run, "/cancel", &format!(r#"{{"order_id":"{order_id}"}}"#)),
        409,
        "failed_precondition",
        "already final",
    );
    assert_error(
        "cancel unknown",
        post(&run, "/cancel", r#"{"client_order_id":"h-never"}"#),
        404,
        "not_found",
        "h-never",
    );
    assert_error(
        "cancel unknown id",
        post(&run, "/cancel", r#"{"order_id":987654321}"#),
        404,
        "not_found",
        "987654321",
    );
    for (body, needle) in [
        (r#"{}"#, "target"),
        (r#"{"client_order_id":"h-rest","order_id":1}"#, "not both"),
        (r#"{"order_id":-1}"#, "order_id"),
        (r#"{"order_id":0}"#, "order_id"),
        (r#"{"id":1}"#, "unknown field"),
    ] {
        assert_error(body, post(&run, "/cancel", body), 400, "invalid_argument", needle);
    }

    // Every malformed field is a 400 naming it, and enters nothing.
    let base = json!({
        "client_order_id": "h-bad", "symbol": "BTCUSDT", "side": "buy", "qty": "0.001",
        "type": "limit", "price": price,
    });
    let order = |changes: Value| {
        let mut o = base.clone();
        for (k, v) in changes.as_object().expect("an object of changes") {
            o[k] = v.clone();
        }
        o.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (order(json!({"symbol": "DOGEUSDT"})), "configured: BTCUSDT, ETHUSDT"),
        (order(json!({"symbol": "X".repeat(5_000)})), "symbol"),
        (order(json!({"qty": "0"})), "qty: must be > 0"),
        (order(json!({"qty": "-1"})), "qty: must be > 0"),
        (order(json!({"qty": "NaN"})), "qty"),
        (order(json!({"qty": "0.000000001"})), "more than 8 decimals"),
        (order(json!({"qty": "0.000001"})), "lot size"),
        (order(json!({"qty": 0.001})), "not a JSON number"),
        (order(json!({"price": "60000.005"})), "tick size"),
        (order(json!({"price": null})), "price: required"),
        (order(json!({"type": "market"})), "price: must be empty"),
        (
            order(json!({"type": "market", "price": "", "time_in_force": "gtc"})),
            "GTC is not allowed",
        ),
        (
            order(json!({"type": "limit_maker", "time_in_force": "ioc"})),
            "IOC and FOK",
        ),
        (
            order(json!({"side": "up"})),
            "side: expected one of SIDE_BUY, SIDE_SELL",
        ),
        (order(json!({"side": "unspecified"})), "side"),
        (order(json!({"type": "stop"})), "type"),
        (order(json!({"venue": "nasdaq"})), "unknown venue"),
        (order(json!({"venue": "coinbase"})), "does not list BTCUSDT"),
        (order(json!({"client_order_id": "bad id"})), "client_order_id"),
        (order(json!({"client_order_id": "c".repeat(37)})), "client_order_id"),
        (order(json!({"colour": "red"})), "unknown field"),
        ("[1,2]".to_string(), "expected a JSON object"),
        ("{not json".to_string(), "invalid JSON"),
    ];
    for (body, needle) in &cases {
        assert_error(body, post(&run, "/order", body), 400, "invalid_argument", needle);
    }
    assert_error(
        "oversized body",
        post(&run, "/order", &order(json!({"symbol": "X".repeat(20_000)}))),
        413,
        "out_of_range",
        "larger than",
    );
    assert_error(
        "bad requests enter nothing",
        post(&run, "/cancel", r#"{"client_order_id":"h-bad"}"#),
        404,
        "not_found",
        "h-bad",
    );

    // While the kill switch is engaged orders fail their precondition, resubmitted or not.
    let (status, v) = post(&run, "/risk/kill", "");
    assert_eq!(status, 200, "{v}");
    for _ in 0..2 {
        assert_error(
            "order while killed",
            post(&run, "/order", &market("h-halted")),
            409,
            "failed_precondition",
            "kill_switch",
        );
    }
    let (status, v) = post(&run, "/risk/resume", "");
    assert_eq!(status, 200, "{v}");
    run.poll("ACTIVE after resume", |r| {
        let (_, v) = r.get("/risk/state");
        if v["system"]["state"] == "active" && v["system"]["killed"] == false {
            Ok(())
        } else {
            Err(v["system"].to_string())
        }
    });
    let (status, v) = post(&run, "/order", &market("h-after"));
    assert_eq!(status, 200, "{v}");
    bought = bought.checked_add(executed(&v)).expect("small");

    // Risk's books agree: what the two market buys executed is the whole position.
    let want = bought.to_string();
    run.poll("Risk's position after two fills", |r| {
        let (_, v) = r.get("/risk/state");
        let symbol = &v["symbols"]["BTCUSDT"];
        if symbol["position"] == want.as_str() && symbol["open_buy"] == "0" {
            Ok(())
        } else {
            Err(symbol.to_string())
        }
    });
    let _ = run.stop();
}
