//! Hot reload end to end: `maxx run` re-reads its config on a real SIGHUP and on `POST /reload`,
//! applies the reloadable keys (log level, exec parameters, alert webhook, weights schedule)
//! while running, names the keys that need a restart, and refuses a broken file whole.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::{Running, TOKEN, TempDir, config_with, webhook_server};
use serde_json::{Value, json};

/// A free loopback port for the metrics server (picked here so the test knows where to scrape).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `maxx_config_reloads_total{outcome="…"}` from the metrics page.
fn reloads(metrics: &str, outcome: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(metrics).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    let key = format!("maxx_config_reloads_total{{outcome=\"{outcome}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Replaces each `from` (which must occur exactly once) in the file at `path`.
fn edit(path: &std::path::Path, edits: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "{from:?} is not unique in the config");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(path, text).unwrap();
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn sighup_and_post_reload_apply_live_keys_name_restart_keys_and_refuse_broken_files() {
    let (hook_port, bodies) = webhook_server();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = TempDir::new("reload");
    let path = dir.write(
        "run.yaml",
        config_with(&[
            ("  metrics_listen:", &format!("  metrics_listen: \"{metrics}\"")),
            ("  otlp_endpoint:", "  otlp_endpoint: null"),
        ]),
    );
    // RUST_LOG would take precedence over telemetry.log_level for the whole run.
    let mut run = Running::start_with_env(&path, &[], &["RUST_LOG"]);
    run.poll("the metrics page", |_| {
        reloads(&metrics, "rejected").ok_or_else(|| "no reload counters yet".to_string())
    });
    let (_, govern) = run.get("/govern");
    let (_, risk) = run.get("/risk/state");
    let weights = govern["weights"].clone();
    let gross_limit = risk["system"]["gross_notional"]["limit"].clone();

    // A real SIGHUP: the log level, an exec key, the webhook, the reweight schedule (live), and
    // a paper fee (restart only).
    edit(
        &path,
        &[
            ("  log_level: info ", "  log_level: debug "),
            ("  slip_tolerance_pct: 0.05", "  slip_tolerance_pct: 0.1"),
            (
                "  webhook_url: null ",
                &format!("  webhook_url: \"http://127.0.0.1:{hook_port}/hooks/alerts\" "),
            ),
            ("  reweight_cron: \"10 0 * * *\"", "  reweight_cron: \"20 0 * * *\""),
            ("    taker_fee_bps: 7.5", "    taker_fee_bps: 8"),
        ],
    );
    run.signal(libc::SIGHUP);
    run.poll("the SIGHUP reload in force", |r| {
        let (_, v) = r.get("/govern");
        if v["reweight_cron"] == "20 0 * * *" {
            Ok(())
        } else {
            Err(v["reweight_cron"].to_string())
        }
    });

    // Then POST /reload with one more exec key: it names what it applied and what still waits.
    edit(&path, &[("max_reprices: 2 ", "max_reprices: 3 ")]);
    let (s, v) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(sorted(&v["applied"]), ["exec.max_reprices"], "{v}");
    assert_eq!(sorted(&v["restart_required"]), ["exec.paper.taker_fee_bps"], "{v}");
    assert_eq!(
        (v["exec_changed"].clone(), v["needs_restart"].clone()),
        (json!(true), json!(true)),
        "{v}"
    );
    assert_eq!(reloads(&metrics, "applied"), Some(2));

    // The new webhook receives the next alert (an operator kill halts the engine).
    assert_eq!(run.post("/risk/kill", Some(TOKEN), "").0, 200);
    run.poll("the kill alert at the reloaded webhook", |_| {
        let got = bodies.lock().unwrap().clone();
        if got.iter().any(|b| b.contains("\"text\"")) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    });
    assert_eq!(run.post("/risk/resume", Some(TOKEN), "").0, 200);

    // Broken files: bad YAML, then well-formed YAML with a bad value, each next to live changes.
    // Refused whole with 400; weights and limits stay; the refusals are counted.
    let good = std::fs::read_to_string(&path).unwrap();
    edit(
        &path,
        &[
            ("  max_gross_notional: 50000 ", "  max_gross_notional: 100 "),
            ("  slip_tolerance_pct: 0.1", "\tslip_tolerance_pct: 0.2"),
        ],
    );
    let (s, v) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(s, 400, "{v}");
    std::fs::write(&path, &good).unwrap();
    edit(
        &path,
        &[
            ("  max_gross_notional: 50000 ", "  max_gross_notional: 100 "),
            ("    momentum: 0.4", "    momentum: 0.5"),
            ("    mean_rev: 0.3", "    mean_rev: 0.2"),
            ("  slip_tolerance_pct: 0.1", "  slip_tolerance_pct: 101"),
        ],
    );
    let (s, v) = run.post("/reload", Some(TOKEN), "");
    assert_eq!(s, 400, "{v}");
    assert!(
        v.to_string().contains("slip_tolerance_pct"),
        "the problem is named: {v}"
    );
    // SIGHUP with the same broken file: the old config is kept too.
    run.signal(libc::SIGHUP);
    run.poll("the SIGHUP refusal counted", |_| match reloads(&metrics, "rejected") {
        Some(3) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(reloads(&metrics, "applied"), Some(2));
    let (_, govern) = run.get("/govern");
    let (_, risk) = run.get("/risk/state");
    assert_eq!(govern["weights"], weights, "weights unchanged");
    assert_eq!(
        risk["system"]["gross_notional"]["limit"], gross_limit,
        "limits unchanged"
    );

    let stderr = run.stop();
    let lines: Vec<&str> = stderr.lines().collect();
    // The SIGHUP reload's own lines: what it applied, and the key that waits for a restart.
    let sighup = lines
        .iter()
        .position(|l| l.contains("\"msg\":\"config reloaded\""))
        .unwrap_or_else(|| panic!("no reload line:\n{stderr}"));
    for key in [
        "alpha.reweight_cron",
        "exec.slip_tolerance_pct",
        "telemetry.log_level",
        "alerts.webhook_url",
    ] {
        assert!(lines[sighup].contains(key), "{key} not applied: {}", lines[sighup]);
    }
    assert!(
        lines[..sighup]
            .iter()
            .any(|l| l.contains("\"level\":\"warn\"") && l.contains("exec.paper.taker_fee_bps")),
        "the restart-only key is logged at warn:\n{stderr}"
    );
    // Nothing at debug before the level changed; debug lines after it, the POST's answer among them.
    assert!(
        !lines[..sighup].iter().any(|l| l.contains("\"level\":\"debug\"")),
        "debug before the reload:\n{stderr}"
    );
    assert!(
        lines[sighup..].iter().any(|l| l.contains("\"level\":\"debug\"")
            && l.contains("config reload answer")
            && l.contains("exec.max_reprices")),
        "no debug line after the reload to debug:\n{stderr}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("config reload refused")).count(),
        3,
        "each refusal is logged:\n{stderr}"
    );
}
