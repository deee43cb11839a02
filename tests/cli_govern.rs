//! End-to-end tests of the Alpha/MetaGovernor surface of `maxx run` over real HTTP on loopback:
//! `GET /signal/{symbol}` from the hot path's lock-free board, `POST /sentiment`,
//! `POST /govern/reweight` (governor steps and operator weights, with every bad input refused),
//! weights surviving a restart through the state file, SIGHUP and `POST /reload` of
//! `alpha.weights`, and governor decisions on the Redis stream `governor` of a private
//! `redis-server`.

mod common;

use common::{RedisServer, Running, TOKEN, TempDir, config_with};
use serde_json::Value;

fn config(extra: &[(&str, &str)]) -> String {
    let mut lines = vec![("  wait:", "  wait: park")];
    lines.extend_from_slice(extra);
    config_with(&lines)
}

/// The decimal strings of a `{family: "decimal"}` object, in family order, as f64 for comparison.
fn weights(v: &Value) -> [f64; 4] {
    let f = |k: &str| -> f64 {
        v[k].as_str()
            .unwrap_or_else(|| panic!("weight {k} missing in {v}"))
            .parse()
            .unwrap_or_else(|e| panic!("weight {k} in {v}: {e}"))
    };
    [f("momentum"), f("mean_rev"), f("breakout"), f("sentiment")]
}

fn close(a: [f64; 4], b: [f64; 4]) -> bool {
    a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-8)
}

fn error_text(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_string()
}

#[test]
fn signal_sentiment_and_reweight_over_http_and_weights_survive_restart_and_reload() {
    let dir = TempDir::new("govern-http");
    let path = dir.write("run.yaml", config(&[]));
    let mut run = Running::start(&path);

    // Liveness answers at once; readiness (feeds live, Redis connected) may take a moment.
    let (status, body) = run.get("/livez");
    assert_eq!((status, body["status"].as_str()), (200, Some("alive")), "{body}");
    run.poll("/healthz to report ready", |r| match r.get("/healthz") {
        (200, v) if v["status"] == "ok" => Ok(()),
        (s, v) => Err(format!("{s} {v}")),
    });

    // Unknown symbol: 404 naming the configured ones.
    let (status, body) = run.get("/signal/DOGEUSDT");
    assert_eq!(status, 404, "{body}");
    assert!(error_text(&body).contains("BTCUSDT"), "{body}");

    // A signal arrives once the ensemble has warmed up on the simulator's trades.
    let sig = run.poll("a signal for BTCUSDT", |r| match r.get("/signal/BTCUSDT") {
        (200, v) => Ok(v),
        (s, v) => Err(format!("{s} {v}")),
    });
    assert_eq!(sig["symbol"], "BTCUSDT");
    assert!(
        ["buy", "sell", "flat"].contains(&sig["side"].as_str().unwrap()),
        "{sig}"
    );
    let score: f64 = sig["score"].as_str().unwrap().parse().unwrap();
    assert!((-1.0..=1.0).contains(&score), "{sig}");
    let contributions = weights(&sig["contributions"]);
    assert!(
        (contributions.iter().sum::<f64>() - score).abs() < 1e-6,
        "contributions add up to the score: {sig}"
    );
    assert!(close(weights(&sig["weights"]), [0.4, 0.3, 0.3, 0.0]), "{sig}");

    // Mutating endpoints need the token.
    let good = r#"{"symbol":"BTCUSDT","score":0.6}"#;
    assert_eq!(run.post("/sentiment", None, good).0, 401);
    assert_eq!(run.post("/sentiment", Some("wrong"), good).0, 401);
    for (body, status, says) in [
        (r#"{"symbol":"BTCUSDT","score":1.5}"#, 400, "[-1, 1]"),
        (r#"{"symbol":"BTCUSDT","score":"abc"}"#, 400, "score"),
        (r#"{"symbol":"BTCUSDT"}"#, 400, "score"),
        (r#"{"symbol":"DOGEUSDT","score":0.1}"#, 404, "unknown symbol"),
        (r#"{"symbol":"BTCUSDT","score":0.1,"extra":1}"#, 400, "unknown field"),
        ("{not json", 400, "invalid JSON"),
    ] {
        let (s, v) = run.post("/sentiment", Some(TOKEN), body);
        assert_eq!(s, status, "{body} -> {v}");
        assert!(error_text(&v).contains(says), "{body} -> {v}");
    }
    let (s, v) = run.post("/sentiment", Some(TOKEN), good);
    assert_eq!((s, v["accepted"].as_bool()), (200, Some(true)), "{v}");

    // Bad operator weights: refused, nothing applied.
    for (body, says) in [
        (
            r#"{"weights":{"momentum":0.5,"mean_rev":0.2,"breakout":0.2,"sentiment":0}}"#,
            "sum to exactly 1",
        ),
        (
            r#"{"weights":{"momentum":1.2,"mean_rev":-0.2,"breakout":0,"sentiment":0}}"#,
            ">= 0",
        ),
        (
            r#"{"weights":{"momentum":0.5,"mean_rev":0.5,"breakout":0,"sentiment":0,"vibes":0}}"#,
            "unknown family",
        ),
        (r#"{"weights":{"momentum":1}}"#, "required"),
        (
            r#"{"weights":{"momentum":"NaN","mean_rev":0,"breakout":0,"sentiment":1}}"#,
            "not an exact decimal",
        ),
    ] {
        let (s, v) = run.post("/govern/reweight", Some(TOKEN), body);
        assert_eq!(s, 400, "{body} -> {v}");
        assert!(error_text(&v).contains(says), "{body} -> {v}");
    }
    let (_, status) = run.get("/govern");
    assert!(close(weights(&status["weights"]), [0.4, 0.3, 0.3, 0.0]), "{status}");
    let steps_before = status["steps"]
        .as_u64()
        .unwrap_or_else(|| panic!("no steps in {status}"));

    // A governor step, operator weights and a reload all need the token: without one or with a
    // wrong one they are refused with 401 and change nothing. The file on disk holds other valid
    // weights meanwhile, so a reload that slipped through would show.
    let original = std::fs::read_to_string(&path).unwrap();
    let other = original.replace(
        "    momentum: 0.4\n    mean_rev: 0.3\n",
        "    momentum: 0.1\n    mean_rev: 0.6\n",
    );
    assert_ne!(other, original, "the weights block moved");
    std::fs::write(&path, &other).unwrap();
    let operator = r#"{"weights":{"momentum":0,"mean_rev":0,"breakout":0,"sentiment":1}}"#;
    for (endpoint, body) in [
        ("/govern/reweight", ""),
        ("/govern/reweight", "{}"),
        ("/govern/reweight", operator),
        ("/reload", ""),
    ] {
        for token in [None, Some("wrong")] {
            let (s, v) = run.post(endpoint, token, body);
            assert_eq!(s, 401, "{endpoint} {body:?} with token {token:?} -> {v}");
            assert!(!error_text(&v).is_empty(), "{v}");
        }
    }
    let (_, status) = run.get("/govern");
    assert!(
        close(weights(&status["weights"]), [0.4, 0.3, 0.3, 0.0]),
        "unauthorised requests changed the weights: {status}"
    );
    assert_eq!(
        status["steps"].as_u64(),
        Some(steps_before),
        "unauthorised requests ran a governor step: {status}"
    );
    std::fs::write(&path, &original).unwrap();

    // Operator weights, normalised on request, reach the Alpha thread.
    let (s, v) = run.post(
        "/govern/reweight",
        Some(TOKEN),
        r#"{"weights":{"momentum":5,"mean_rev":2,"breakout":3,"sentiment":0},"normalise":true}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert!(close(weights(&v["new"]), [0.5, 0.2, 0.3, 0.0]), "{v}");
    run.poll("the hot path applying operator weights", |r| {
        let (_, v) = r.get("/govern");
        if close(weights(&v["applied"]), [0.5, 0.2, 0.3, 0.0]) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // A governor step: within the step constraint, sum 1, sentiment (fixed) untouched.
    let (s, step) = run.post("/govern/reweight", Some(TOKEN), "");
    assert_eq!(s, 200, "{step}");
    let (old, new) = (weights(&step["old"]), weights(&step["new"]));
    assert!(close(old, [0.5, 0.2, 0.3, 0.0]), "{step}");
    assert!(
        old.iter().zip(&new).all(|(o, n)| (o - n).abs() <= 0.05 + 1e-9),
        "{step}"
    );
    assert!((new.iter().sum::<f64>() - 1.0).abs() < 1e-8, "{step}");
    assert_eq!(new[3], 0.0, "{step}");
    assert!(step["explain"].as_str().is_some_and(|e| !e.is_empty()), "{step}");
    assert_eq!(step["persisted"], true, "{step}");
    let learned = new;

    // Restart: the state file brings the weights back.
    let _ = run.stop();
    let mut run = Running::start(&path);
    let (_, v) = run.get("/govern");
    assert!(close(weights(&v["weights"]), learned), "after restart: {v}");
    run.poll("the hot path starting with the saved weights", |r| {
        let (_, v) = r.get("/govern");
        if close(weights(&v["applied"]), learned) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // SIGHUP with edited alpha.weights: applied live.
    let edited = std::fs::read_to_string(&path).unwrap().replace(
        "    momentum: 0.4\n    mean_rev: 0.3\n",
        "    momentum: 0.2\n    mean_rev: 0.5\n",
    );
    assert_ne!(
        edited,
        std::fs::read_to_string(&path).unwrap(),
        "the weights block moved"
    );
    std::fs::write(&path, &edited).unwrap();
    run.signal(libc::SIGHUP);
    run.poll("SIGHUP applying the edited weights", |r| {
        let (_, v) = r.get("/govern");
        if close(weights(&v["applied"]), [0.2, 0.5, 0.3, 0.0]) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // An invalid file is refused whole: POST /reload says why, the weights stay.
    std::fs::write(&path, edited.replace("    momentum: 0.2\n", "    momentum: -0.2\n")).unwrap();
    let (s, v) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(s, 400, "{v}");
    assert!(error_text(&v).contains("alpha.weights.momentum"), "{v}");
    run.signal(libc::SIGHUP);
    let (_, v) = run.get("/govern");
    assert!(close(weights(&v["weights"]), [0.2, 0.5, 0.3, 0.0]), "{v}");
    let err = run.stop();
    assert!(err.contains("config reload refused"), "{err}");
}

#[test]
fn the_reweight_cron_runs_governor_steps() {
    let dir = TempDir::new("govern-cron");
    let path = dir.write(
        "run.yaml",
        config(&[("  reweight_cron:", "  reweight_cron: \"* * * * *\"")]),
    );
    let mut run = Running::start(&path);
    let (_, v) = run.get("/govern");
    assert_eq!(v["steps"], 0, "{v}");
    assert_eq!(v["reweight_cron"], "* * * * *", "{v}");
    run.poll("a cron-triggered governor step", |r| {
        let (_, v) = r.get("/govern");
        if v["steps"].as_u64().unwrap_or(0) >= 1 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let err = run.stop();
    assert!(
        err.lines()
            .any(|l| l.contains("governor step") && l.contains("\"trigger\":\"cron\"")),
        "a governor step log line with trigger cron:\n{err}"
    );
}

#[test]
fn governor_decisions_are_appended_to_the_redis_stream() {
    let redis = RedisServer::start();
    let dir = TempDir::new("govern-redis");
    let enabled = "  enabled: false               # default false; publish taps to Redis Streams";
    let text = config(&[])
        .replace(enabled, "  enabled: true")
        .replace("url: \"redis://127.0.0.1:6379\"", &format!("url: \"{}\"", redis.url()));
    let path = dir.write("run.yaml", text);
    let mut run = Running::start(&path);
    for _ in 0..2 {
        let (s, v) = run.post("/govern/reweight", Some(TOKEN), "{}");
        assert_eq!(s, 200, "{v}");
    }
    run.poll("two entries on the governor stream", |_| {
        let n = redis.cmd(&["XLEN", "governor"]).unwrap_or_default();
        if n == ":2" { Ok(()) } else { Err(n) }
    });
    let entries = redis.cmd(&["XRANGE", "governor", "-", "+"]).unwrap_or_default();
    for field in ["trigger", "http", "old", "new", "rewards", "explain", "key"] {
        assert!(entries.contains(field), "{field} missing from {entries}");
    }
    let _ = run.stop();
}
