//! `/healthz` of `maxx run` names its probes (feeds, hot loops, cold loop, Portfolio) and
//! follows its feed: a venue simulator in its own process is stopped
//! (SIGSTOP) so ticks cease, the feed goes stale and `/healthz` answers 503 naming
//! `feed.binance` while `/livez` stays 200; resumed (SIGCONT), ticks flow again and `/healthz`
//! is 200.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Running, TempDir, config_with};
use serde_json::Value;

/// `maxx sim --venue binance` on a free port; returns the process and its `ws://` URL.
fn start_sim() -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_maxx"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["sim", "--venue", "binance", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("maxx sim");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{first}");
    (child, url)
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: `kill` with the pid of our own child and a valid signal number has no memory
    // effects.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({sig})");
}

/// Polls `/healthz` until it answers `status`; returns the body.
fn health(run: &mut Running, status: u16) -> Value {
    run.poll(&format!("/healthz {status}"), |r| {
        let (s, v) = r.get("/healthz");
        if s == status { Ok(v) } else { Err(format!("{s} {v}")) }
    })
}

#[test]
fn healthz_turns_503_when_the_feed_goes_stale_and_200_when_it_is_back() {
    let (mut sim, url) = start_sim();
    let dir = TempDir::new("health-stale");
    let text = config_with(&[
        ("  wait:", "  wait: park"),
        ("    url: sim", &format!("    url: \"{url}\"")),
        ("  stale_after_ms:", "  stale_after_ms: 800"),
        ("  retry_backoff_ms:", "  retry_backoff_ms: 50"),
        ("  backoff_cap_ms:", "  backoff_cap_ms: 200"),
    ]);
    let path = dir.write("run.yaml", text);
    let mut run = Running::start(&path);

    let ok = health(&mut run, 200);
    assert_eq!(ok["status"], "ok", "{ok}");
    assert!(
        ok["checks"]["feed.binance"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("live"),
        "{ok}"
    );
    for probe in ["hot.alpha", "hot.risk", "hot.exec", "cold.loop", "portfolio"] {
        assert_eq!(ok["checks"][probe]["ok"], true, "{probe}: {ok}");
    }

    // The venue stops sending: after stale_after_ms the feed is restarted and reconnects.
    signal(&sim, libc::SIGSTOP);
    let failing = health(&mut run, 503);
    assert_eq!(failing["status"], "failing", "{failing}");
    assert_eq!(failing["failing"], serde_json::json!(["feed.binance"]), "{failing}");
    assert_eq!(failing["checks"]["feed.binance"]["ok"], false);
    assert_eq!(
        failing["checks"]["portfolio"]["ok"], true,
        "the Portfolio runs without Redis"
    );
    // The hot loops keep polling while their market is silent.
    assert_eq!(failing["checks"]["hot.alpha"]["ok"], true, "{failing}");
    let (live, _) = run.get("/livez");
    assert_eq!(live, 200, "liveness does not depend on the feed");

    // The venue is back: ticks flow and the probe passes again.
    signal(&sim, libc::SIGCONT);
    let ok = health(&mut run, 200);
    assert_eq!(ok["failing"], serde_json::json!([]), "{ok}");
    let _ = run.stop();
    signal(&sim, libc::SIGTERM);
    let _ = sim.wait();
}
