//! End-to-end tests of the RiskSentinel surface of `maxx run` over real HTTP on loopback:
//! `GET /risk/state` (states, limits and usage, refusals, transitions), operator transitions,
//! trims, the kill switch over HTTP, `maxx kill` and the kill file, and a HALTED state that
//! survives a restart until an operator lifts it.

mod common;

use common::{Running, TOKEN, TempDir, config_with, maxx, webhook_server};
use serde_json::Value;

/// A busy Alpha (low thresholds, short EMAs), so intents keep coming while a test waits for one.
fn busy_config() -> String {
    config_with(&[
        ("  wait:", "  wait: park"),
        ("  entry_threshold:", "  entry_threshold: 0.2"),
        ("  exit_threshold:", "  exit_threshold: 0.05"),
        ("    fast:", "    fast: 2"),
        ("    slow:", "    slow: 8"),
        // Every order takes at once (no passive order left working, no paper latency), so a
        // trim's result is the whole story: nothing opened before it fills after it.
        ("  urgent_score:", "  urgent_score: 0"),
        ("    latency_us:", "    latency_us: 0"),
    ])
}

fn system_state(run: &Running) -> (String, bool) {
    let (status, v) = run.get("/risk/state");
    assert_eq!(status, 200, "{v}");
    (
        v["system"]["state"].as_str().unwrap_or_default().to_string(),
        v["system"]["killed"].as_bool().unwrap_or_default(),
    )
}

fn transitions(v: &Value) -> Vec<(String, String, String)> {
    v["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("scope"), s("to"), s("reason"))
        })
        .collect()
}

#[test]
fn risk_state_operator_states_trim_kill_and_a_halt_that_survives_restart() {
    let dir = TempDir::new("risk-http");
    let path = dir.write("run.yaml", busy_config());
    let mut run = Running::start(&path);

    // The state shows every limit with its usage.
    let v = run.poll("Risk's first publication with orders", |r| {
        let (_, v) = r.get("/risk/state");
        if v["published"].as_u64().unwrap_or(0) > 0 && v["approved"].as_u64().unwrap_or(0) > 0 {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(v["system"]["state"], "active", "{v}");
    assert_eq!(v["system"]["gross_notional"]["limit"], "50000", "{v}");
    assert_eq!(v["symbols"]["BTCUSDT"]["max_position"]["limit"], "0.1", "{v}");
    assert!(v["symbols"]["BTCUSDT"]["max_position"]["used"].is_string(), "{v}");
    assert_eq!(v["limits"]["sizing"], "kelly", "{v}");
    assert!(v["refused"]["price_collar"].is_u64(), "{v}");
    // Per venue (the shipped config trades on Binance only): the rate limit, the reject ratio
    // and the feed as Risk has them in force.
    let venues = v["venues"].as_object().unwrap();
    assert_eq!(venues.keys().collect::<Vec<_>>(), ["binance"], "{v}");
    let binance = &v["venues"]["binance"];
    let used = binance["orders_last_sec"].as_u64().unwrap();
    assert!(used <= 20, "{v}");
    assert_eq!(binance["max_orders_per_sec"], 20, "{v}");
    assert_eq!(binance["reject_window"], 200, "{v}");
    assert_eq!(binance["reject_limit_pct"], "2", "{v}");
    assert!(
        binance["rejects"].is_u64() && binance["reject_ratio_pct"].is_string(),
        "{v}"
    );
    assert_eq!(binance["reject_ratio_high"], false, "{v}");
    assert_eq!(binance["feed"], "live", "{v}");

    // Bad operator input: refused, nothing changes.
    for (body, status) in [
        (r#"{"scope":"*","state":"paused"}"#, 400),
        (r#"{"scope":"DOGEUSDT","state":"halted"}"#, 404),
        (r#"{"state":"halted"}"#, 400),
    ] {
        let (s, v) = run.post("/risk/state", Some(TOKEN), body);
        assert_eq!(s, status, "{body} -> {v}");
    }
    for (body, status) in [
        (r#"{"fraction":0}"#, 400),
        (r#"{"fraction":1.5}"#, 400),
        (r#"{"symbol":"DOGEUSDT","fraction":0.5}"#, 404),
        (r#"{}"#, 400),
    ] {
        let (s, v) = run.post("/risk/trim", Some(TOKEN), body);
        assert_eq!(s, status, "{body} -> {v}");
    }
    assert_eq!(run.post("/risk/kill", None, "").0, 401);
    assert_eq!(system_state(&run), ("active".into(), false));

    // An operator puts one symbol into REDUCING and back.
    let (s, v) = run.post("/risk/state", Some(TOKEN), r#"{"scope":"ETHUSDT","state":"reducing"}"#);
    assert_eq!(s, 200, "{v}");
    run.poll("ETHUSDT reducing", |r| {
        let (_, v) = r.get("/risk/state");
        if v["symbols"]["ETHUSDT"]["state"] == "reducing" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    run.post("/risk/state", Some(TOKEN), r#"{"scope":"ETHUSDT","state":"active"}"#);
    run.poll("ETHUSDT active again", |r| {
        let (_, v) = r.get("/risk/state");
        if v["symbols"]["ETHUSDT"]["state"] == "active" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // An operator halt stops new risk; a trim still flattens the positions (reduce-only orders
    // are the one thing HALTED lets through).
    let (s, v) = run.post("/risk/state", Some(TOKEN), r#"{"scope":"*","state":"halted"}"#);
    assert_eq!(s, 200, "{v}");
    run.poll("system HALTED by the operator", |r| {
        let st = system_state(r);
        if st == ("halted".into(), false) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    let (s, v) = run.post("/risk/trim", Some(TOKEN), r#"{"fraction":1}"#);
    assert_eq!((s, v["accepted"].as_bool()), (200, Some(true)), "{v}");
    run.poll("every position flat after the trim", |r| {
        let (_, v) = r.get("/risk/state");
        let flat = ["BTCUSDT", "ETHUSDT"]
            .iter()
            .all(|s| v["symbols"][s]["position"] == "0");
        if flat { Ok(()) } else { Err(v["symbols"].to_string()) }
    });
    run.post("/risk/state", Some(TOKEN), r#"{"scope":"*","state":"active"}"#);
    run.poll("system ACTIVE again", |r| {
        let st = system_state(r);
        if st == ("active".into(), false) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });

    // The kill switch over HTTP: HALTED, killed, and no further approvals.
    let (s, v) = run.post("/risk/kill", Some(TOKEN), "");
    assert_eq!(s, 200, "{v}");
    run.poll("HALTED by the kill switch", |r| {
        let st = system_state(r);
        if st == ("halted".into(), true) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    let (_, v) = run.get("/risk/state");
    assert!(
        transitions(&v).contains(&("*".into(), "halted".into(), "kill".into())),
        "{v}"
    );
    // Wait for the next intent to meet the switch; until then and after, nothing is approved.
    let approved = v["approved"].as_u64().unwrap();
    let refused = v["refused"]["kill_switch"].as_u64().unwrap();
    let v = run.poll("an intent refused by the kill switch", |r| {
        let (_, v) = r.get("/risk/state");
        if v["refused"]["kill_switch"].as_u64().unwrap_or(0) > refused {
            Ok(v)
        } else {
            Err(v["refused"].to_string())
        }
    });
    assert_eq!(
        v["approved"].as_u64().unwrap(),
        approved,
        "nothing approved while killed: {v}"
    );

    // The halt survives a restart.
    let _ = run.stop();
    let mut run = Running::start(&path);
    run.poll("HALTED restored after the restart", |r| {
        let st = system_state(r);
        if st.0 == "halted" {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    let (_, v) = run.get("/risk/state");
    assert_eq!(v["system"]["saved_halts"]["*"]["reason"], "kill", "{v}");
    assert!(
        transitions(&v).contains(&("*".into(), "halted".into(), "restored".into())),
        "{v}"
    );

    // An operator lifts it.
    let (s, v) = run.post("/risk/resume", Some(TOKEN), "");
    assert_eq!(s, 200, "{v}");
    run.poll("ACTIVE after resume", |r| {
        let st = system_state(r);
        if st == ("active".into(), false) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    let _ = run.stop();
    let run = Running::start(&path);
    let (_, v) = run.get("/risk/state");
    assert!(v["system"]["saved_halts"].as_object().unwrap().is_empty(), "{v}");
    let _ = run.stop();
}

#[test]
fn maxx_kill_trips_over_http_or_through_the_kill_file() {
    let dir = TempDir::new("risk-kill-cli");
    // Alerts go to a local webhook: each trip and each resume is one.
    let (port, alerts) = webhook_server();
    let text = config_with(&[
        ("  wait:", "  wait: park"),
        (
            "  webhook_url:",
            &format!("  webhook_url: \"http://127.0.0.1:{port}/hook\""),
        ),
    ]);
    let path = dir.write("run.yaml", text);
    let mut run = Running::start(&path);

    // Over HTTP, with the address of the running instance.
    let out = maxx()
        .args(["kill", "--config", path.to_str().unwrap(), "--addr", &run.addr])
        .env("MAXX_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("over HTTP"));
    run.poll("HALTED by maxx kill", |r| {
        let st = system_state(r);
        if st == ("halted".into(), true) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    run.poll("the kill-switch alert at the webhook", |_| {
        let got = alerts.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("kill switch tripped")) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    let (s, v) = run.post("/risk/resume", Some(TOKEN), "");
    assert_eq!(s, 200, "{v}");
    run.poll("the resume alert at the webhook", |_| {
        let got = alerts.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("trading active again")) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    run.poll("ACTIVE after resume", |r| {
        let st = system_state(r);
        if st == ("active".into(), false) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });

    // Without a reachable HTTP API (port 0 in the file, no --addr), `maxx kill` writes the kill
    // file, and the engine's watcher thread trips the switch.
    let out = maxx()
        .args(["kill", "--config", path.to_str().unwrap()])
        .env("MAXX_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kill_file = dir.path().join("maxx-state/KILL");
    assert!(kill_file.is_file(), "{}", String::from_utf8_lossy(&out.stdout));
    run.poll("HALTED by the kill file", |r| {
        let st = system_state(r);
        if st == ("halted".into(), true) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    // Resuming while the file exists is refused: it would trip again at once.
    let (s, v) = run.post("/risk/resume", Some(TOKEN), "");
    assert_eq!(s, 409, "{v}");
    std::fs::remove_file(&kill_file).unwrap();
    let (s, _) = run.post("/risk/resume", Some(TOKEN), "");
    assert_eq!(s, 200);
    run.poll("ACTIVE after the file is gone", |r| {
        let st = system_state(r);
        if st == ("active".into(), false) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });

    // SIGUSR2 is the third door.
    run.signal(libc::SIGUSR2);
    run.poll("HALTED by SIGUSR2", |r| {
        let st = system_state(r);
        if st == ("halted".into(), true) {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    });
    let _ = run.stop();
}

#[test]
fn sighup_applies_changed_risk_limits_between_two_orders() {
    let dir = TempDir::new("risk-sighup");
    let path = dir.write("run.yaml", busy_config());
    let mut run = Running::start(&path);
    run.poll("orders approved", |r| {
        let (_, v) = r.get("/risk/state");
        if v["approved"].as_u64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    // Raise every symbol's minimum notional far above any order: from the reload on, Risk
    // refuses them all with min_notional.
    let text = std::fs::read_to_string(&path).unwrap();
    let raised = text.replace("    min_notional: 10 ", "    min_notional: 1000000 ");
    assert_ne!(raised, text, "the min_notional line moved");
    std::fs::write(&path, raised).unwrap();
    let (s, v) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["limits_changed"], serde_json::json!(["BTCUSDT"]), "{v}");
    assert_eq!(v["needs_restart"], false, "{v}");
    let (_, v) = run.get("/risk/state");
    assert_eq!(v["symbols"]["BTCUSDT"]["min_notional"], "1000000", "{v}");
    run.poll("an order refused for min_notional", |r| {
        let (_, v) = r.get("/risk/state");
        if v["refused"]["min_notional"].as_u64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(v["refused"].to_string())
        }
    });
    let _ = run.stop();
}

#[test]
fn sighup_applies_changed_global_risk_limits_between_two_orders() {
    let dir = TempDir::new("risk-sighup-global");
    let path = dir.write("run.yaml", busy_config());
    let mut run = Running::start(&path);
    run.poll("orders approved", |r| {
        let (_, v) = r.get("/risk/state");
        if v["approved"].as_u64().unwrap_or(0) > 0 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    // Lower the gross exposure limit below any order and the rate limit: global keys, which a
    // reload now applies without a restart.
    let text = std::fs::read_to_string(&path).unwrap();
    let lowered = text
        .replace("  max_gross_notional: 50000 ", "  max_gross_notional: 1 ")
        .replace("  max_orders_per_sec: 20 ", "  max_orders_per_sec: 7 ");
    assert!(
        lowered.contains("  max_gross_notional: 1 ") && lowered.contains("  max_orders_per_sec: 7 "),
        "the risk lines moved"
    );
    let (_, before) = run.get("/risk/state");
    let refused_before = before["refused"]["gross_exposure"].as_u64().unwrap();
    std::fs::write(&path, lowered).unwrap();
    run.signal(libc::SIGHUP);
    // The new limits reach the page (the config in force) and Risk (its own publication).
    run.poll("the reloaded limits in force", |r| {
        let (_, v) = r.get("/risk/state");
        if v["system"]["gross_notional"]["limit"] == "1" && v["venues"]["binance"]["max_orders_per_sec"] == 7 {
            Ok(())
        } else {
            Err(format!("{} {}", v["system"], v["venues"]))
        }
    });
    // Orders Alpha had approved before now grow exposure past the limit and are refused.
    run.poll("an order refused for gross exposure", |r| {
        let (_, v) = r.get("/risk/state");
        if v["refused"]["gross_exposure"].as_u64().unwrap_or(0) > refused_before {
            Ok(())
        } else {
            Err(v["refused"].to_string())
        }
    });
    // Nothing else needed a restart: the engine kept running and says so in its log.
    let stderr = run.stop();
    assert!(!stderr.contains("take effect at the next restart"), "{stderr}");
}
