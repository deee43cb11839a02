//! `maxx run` serves Prometheus metrics on `telemetry.metrics_listen`: every family the
//! dashboard and `maxx top` rely on is there with sane values, counters never go back between
//! two scrapes, config reloads are counted by outcome, the per-stage latency summaries fill as
//! the engine trades, and `promtool check metrics` (Debian package `prometheus`) accepts the
//! exposition. The shipped Grafana dashboard queries only
//! families that `/metrics` serves.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::{DEADLINE, RedisServer, TempDir, config_with, maxx};
use maxx_cold::metrics::FAMILIES;

/// A `maxx run` child that announced its metrics address; killed when dropped.
struct Metered {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    addr: String,
}

impl Metered {
    fn start(config: &std::path::Path) -> Metered {
        let mut child = maxx()
            .args(["run", "--config", config.to_str().expect("utf-8 path")])
            .env("MAXX_API_TOKEN", common::TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start maxx run");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut m = Metered {
            child,
            lines,
            seen: Vec::new(),
            addr: String::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        while m.addr.is_empty() {
            if let Ok(line) = m.lines.recv_timeout(Duration::from_millis(200)) {
                if let Some(url) = line.strip_prefix("metrics") {
                    let url = url.trim().trim_start_matches("http://");
                    m.addr = url.trim_end_matches("/metrics").to_string();
                }
                m.seen.push(line);
            }
            if let Ok(Some(status)) = m.child.try_wait() {
                m.fail(&format!("maxx exited ({status}) before printing its metrics address"));
            }
            if Instant::now() > deadline {
                m.fail("no `metrics  http://…/metrics` line on stdout");
            }
        }
        m
    }

    fn fail(&mut self, msg: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.seen.extend(self.lines.try_iter());
        panic!("{msg}\n--- stdout ---\n{}", self.seen.join("\n"));
    }

    /// GET /metrics: the content type and the body.
    fn scrape(&self) -> (String, String) {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send request");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
        assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
            "a rendered page has a length: {head}"
        );
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        (content_type, body.to_string())
    }

    /// Scrapes until `cond` holds on the parsed page, or fails with the last page.
    fn scrape_until(&mut self, what: &str, cond: impl Fn(&Page) -> bool) -> Page {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let page = Page::parse(&self.scrape().1);
            if cond(&page) {
                return page;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("maxx exited ({status}) while waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}; last page:\n{}", page.text));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape: samples by series (`name{labels}` as written), families by `# TYPE`.
struct Page {
    text: String,
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    helps: BTreeSet<String>,
}

impl Page {
    fn parse(text: &str) -> Page {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut helps = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{name} typed twice"
                );
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("# HELP name text");
                assert!(!help.trim().is_empty(), "{name}: empty help");
                helps.insert(name.to_string());
            } else if !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("series value");
                let v = match value {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
                };
                assert!(samples.insert(series.to_string(), v).is_none(), "{series} twice");
            }
        }
        Page {
            text: text.to_string(),
            samples,
            types,
            helps,
        }
    }

    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }

    /// Samples of a family (its own name, or `_sum` / `_count` for a summary).
    fn of<'p>(&'p self, family: &'p str) -> impl Iterator<Item = (&'p String, f64)> + 'p {
        self.samples.iter().filter_map(move |(s, v)| {
            let name = s.split('{').next().unwrap_or(s);
            let base = name.strip_suffix("_sum").or_else(|| name.strip_suffix("_count"));
            (name == family || (base == Some(family) && self.types.get(family).map(String::as_str) == Some("summary")))
                .then_some((s, *v))
        })
    }

    fn ticks(&self, venue: &str) -> f64 {
        ["trade", "quote"]
            .iter()
            .map(|k| self.get(&format!("maxx_feed_ticks_total{{venue=\"{venue}\",kind=\"{k}\"}}")))
            .sum()
    }

    /// Series that are counters: `_total` families and a summary's `_sum` and `_count`.
    fn counters(&self) -> Vec<(&String, f64)> {
        self.samples
            .iter()
            .filter(|(s, _)| {
                let name = s.split('{').next().unwrap_or(s);
                let summary =
                    |base: Option<&str>| base.is_some_and(|b| self.types.get(b).is_some_and(|t| t == "summary"));
                self.types.get(name).is_some_and(|t| t == "counter")
                    || summary(name.strip_suffix("_sum"))
                    || summary(name.strip_suffix("_count"))
            })
            .map(|(s, v)| (s, *v))
            .collect()
    }
}

/// `promtool check metrics` on `text`: must exit 0 and say nothing (no lint problem).
fn promtool_check(text: &str) {
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: install the Debian package `prometheus` (apt-get install prometheus), \
             which ships /usr/bin/promtool; this test validates /metrics with it"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{said}\n--- page ---\n{text}"
    );
    assert!(said.trim().is_empty(), "promtool check metrics found problems:\n{said}");
}

/// The shipped config with the metrics server on a free port and the Redis bus on.
fn config(redis_url: &str) -> String {
    config_with(&[
        ("  metrics_listen:", "  metrics_listen: \"127.0.0.1:0\""),
        (
            "  enabled: false               # default false; publish taps",
            "  enabled: true",
        ),
        ("  url: \"redis://127.0.0.1:6379\"", &format!("  url: \"{redis_url}\"")),
    ])
}

#[test]
fn metrics_serve_every_family_with_sane_values_and_promtool_accepts_them() {
    let redis = RedisServer::start();
    let dir = TempDir::new("metrics");
    let path = dir.write("run.yaml", config(&redis.url()));
    let mut m = Metered::start(&path);
    let (content_type, _) = m.scrape();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");

    // The simulator's ticks arrive and the feed is live.
    let first = m.scrape_until("ticks from the simulator and a live feed", |p| {
        p.ticks("binance") > 0.0 && p.get("maxx_feed_state{venue=\"binance\"}") == 1.0
    });
    promtool_check(&first.text);

    // Every family is served, with its help and type, and at least one sample.
    for family in FAMILIES {
        assert!(first.types.contains_key(*family), "family {family} has no # TYPE");
        assert!(first.helps.contains(*family), "family {family} has no # HELP");
        assert!(first.of(family).next().is_some(), "family {family} has no sample");
    }
    for (family, kind) in &first.types {
        assert!(
            FAMILIES.contains(&family.as_str()),
            "{family} is served but not listed in FAMILIES"
        );
        assert_eq!(kind == "counter", family.ends_with("_total"), "{family}: {kind}");
    }

    // Values that hold in any healthy run.
    assert_eq!(first.get("maxx_up"), 1.0);
    assert_eq!(first.get("maxx_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(first.get("maxx_uptime_seconds") > 0.0);
    assert!(first.get("maxx_feed_frames_total{venue=\"binance\"}") >= first.ticks("binance"));
    let age = first.get("maxx_feed_last_tick_age_seconds{venue=\"binance\"}");
    assert!(age.is_finite() && age >= 0.0, "last tick age {age}");
    assert_eq!(first.get("maxx_risk_state{scope=\"*\"}"), 0.0);
    assert_eq!(first.get("maxx_risk_state{scope=\"BTCUSDT\"}"), 0.0);
    assert_eq!(first.get("maxx_kill_switch"), 0.0);
    assert_eq!(first.get("maxx_kelly_clip"), 1.0);
    assert!(first.get("maxx_equity{currency=\"USDT\"}") > 0.0);
    assert_eq!(first.get("maxx_drawdown_ratio{currency=\"USDT\"}"), 0.0);
    assert_eq!(first.get("maxx_lockbox{currency=\"USDT\"}"), 0.0);
    for ring in [
        "md_alpha[binance]",
        "alpha_exec",
        "alpha_risk",
        "risk_exec",
        "exec_risk",
        "tap_ticks[binance]",
        "tap_exec",
    ] {
        let cap = first.get(&format!("maxx_ring_capacity{{ring=\"{ring}\"}}"));
        let occ = first.get(&format!("maxx_ring_occupancy{{ring=\"{ring}\"}}"));
        assert!(cap > 0.0 && (0.0..=cap).contains(&occ), "{ring}: {occ} of {cap}");
    }
    assert_eq!(
        first.get("maxx_ring_capacity{ring=\"md_alpha[binance]\"}"),
        maxx_hot::wiring::cap::MD_ALPHA as f64
    );
    assert_eq!(
        first.get("maxx_ring_drops_total{ring=\"tap_exec\"}"),
        0.0,
        "orders and fills are never dropped"
    );
    assert!(
        first
            .of("maxx_thread_cpu_seconds_total")
            .any(|(s, _)| s.contains("thread=\"maxx\"")),
        "the main thread is listed by its name"
    );
    let count = first.get("maxx_tick_to_order_seconds_count");
    for q in ["0.5", "0.9", "0.99", "0.999"] {
        let v = first.get(&format!("maxx_tick_to_order_seconds{{quantile=\"{q}\"}}"));
        assert!(
            if count == 0.0 { v.is_nan() } else { v >= 0.0 },
            "quantile {q}: {v} with {count} samples"
        );
    }
    check_stage_latency(&first);

    // Every stage's latency summary fills once the engine trades: one sample per intent Alpha
    // emitted, per order Risk approved, per order Execution sent (the tick-to-order samples).
    let trading = m.scrape_until("latency samples from every stage", |p| {
        STAGES
            .iter()
            .all(|s| p.get(&format!("maxx_stage_latency_seconds_count{{stage=\"{s}\"}}")) > 0.0)
    });
    promtool_check(&trading.text);
    check_stage_latency(&trading);
    m.scrape_until("the Redis publisher connected", |p| {
        p.get("maxx_redis_connected") == 1.0
    });
    // The hot threads (named by their stages or cores) accumulate CPU time (in clock ticks).
    m.scrape_until("CPU time on a hot thread", |p| {
        p.of("maxx_thread_cpu_seconds_total")
            .filter(|(s, _)| {
                ["hot-", "md-", "alpha", "risk", "exec"]
                    .iter()
                    .any(|h| s.contains(&format!("thread=\"{h}")))
            })
            .any(|(_, v)| v > 0.0)
    });

    // Reloads are counted by outcome: the file as it is applies; a broken one is refused.
    m.signal(libc::SIGHUP);
    m.scrape_until("an applied reload", |p| {
        p.get("maxx_config_reloads_total{outcome=\"applied\"}") == 1.0
    });
    std::fs::write(&path, "market_data: [not, a, mapping]\n").expect("break the config");
    m.signal(libc::SIGHUP);
    let before = m.scrape_until("a rejected reload", |p| {
        p.get("maxx_config_reloads_total{outcome=\"rejected\"}") == 1.0
    });

    // Counters only grow: a later scrape, once more ticks have arrived.
    let after = m.scrape_until("more ticks", |p| p.ticks("binance") > before.ticks("binance"));
    promtool_check(&after.text);
    for (series, v) in before.counters() {
        assert!(v >= 0.0, "{series} = {v}");
        let later = after.get(series);
        assert!(later >= v, "{series} went back from {v} to {later}");
    }
    assert_eq!(after.get("maxx_config_reloads_total{outcome=\"applied\"}"), 1.0);
    // Latency summaries only gain samples; Execution's are orders it sent, which the routed
    // counters of a later scrape include (each stage hands its histogram over on its own
    // schedule, so counts of different stages on one page are not compared).
    check_stage_latency(&after);
    for s in STAGES {
        let series = format!("maxx_stage_latency_seconds_count{{stage=\"{s}\"}}");
        assert!(after.get(&series) >= before.get(&series), "{series} went back");
    }
    let routed: f64 = after.of("maxx_orders_total").map(|(_, v)| v).sum();
    let sent = before.get("maxx_stage_latency_seconds_count{stage=\"exec\"}");
    assert!(sent <= routed, "{sent} tick-to-order samples, {routed} orders routed");
}

/// The stages of `maxx_stage_latency_seconds`.
const STAGES: [&str; 3] = ["alpha", "risk", "exec"];

/// Each stage's latency summary is on the page: every quantile (NaN before the first sample,
/// otherwise a duration), `_sum` and `_count`; the `exec` stage is the tick-to-order summary.
fn check_stage_latency(p: &Page) {
    assert_eq!(
        p.types.get("maxx_stage_latency_seconds").map(String::as_str),
        Some("summary")
    );
    for s in STAGES {
        let count = p.get(&format!("maxx_stage_latency_seconds_count{{stage=\"{s}\"}}"));
        let sum = p.get(&format!("maxx_stage_latency_seconds_sum{{stage=\"{s}\"}}"));
        assert!(count >= 0.0 && count.fract() == 0.0, "stage {s}: count {count}");
        assert!(
            if count == 0.0 { sum == 0.0 } else { sum > 0.0 },
            "stage {s}: sum {sum}, count {count}"
        );
        for q in ["0.5", "0.9", "0.99", "0.999"] {
            let v = p.get(&format!("maxx_stage_latency_seconds{{stage=\"{s}\",quantile=\"{q}\"}}"));
            assert!(
                if count == 0.0 { v.is_nan() } else { v > 0.0 },
                "stage {s} quantile {q}: {v} with {count} samples"
            );
        }
    }
    for suffix in ["_count", "_sum"] {
        assert_eq!(
            p.get(&format!("maxx_stage_latency_seconds{suffix}{{stage=\"exec\"}}")),
            p.get(&format!("maxx_tick_to_order_seconds{suffix}")),
            "the exec stage is the tick-to-order histogram"
        );
    }
    for q in ["0.5", "0.9", "0.99", "0.999"] {
        let stage = p.get(&format!(
            "maxx_stage_latency_seconds{{stage=\"exec\",quantile=\"{q}\"}}"
        ));
        let t2o = p.get(&format!("maxx_tick_to_order_seconds{{quantile=\"{q}\"}}"));
        assert!(
            stage == t2o || (stage.is_nan() && t2o.is_nan()),
            "quantile {q}: {stage} vs {t2o}"
        );
    }
    assert_eq!(
        p.of("maxx_stage_latency_seconds").count(),
        3 * 6,
        "3 stages × (4 quantiles, _sum, _count)"
    );
}

/// Every metric name an `expr` of `config/grafana-dashboard.json` uses.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = std::path::Path::new(common::ROOT).join("config/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&json, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no queries");
    let mut names = BTreeSet::new();
    for e in &exprs {
        let b = e.as_bytes();
        let mut i = 0;
        while let Some(at) = e[i..].find("maxx_") {
            let start = i + at;
            let boundary = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
            let end = start
                + e[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(e.len() - start);
            if boundary {
                names.insert(e[start..end].to_string());
            }
            i = end;
        }
    }
    assert!(!names.is_empty(), "the dashboard's queries name no maxx metric");
    names
}

#[test]
fn the_dashboard_queries_only_served_families() {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(common::ROOT).join("config/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(json["panels"].as_array().is_some_and(|p| !p.is_empty()), "no panels");
    assert!(
        json["__inputs"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["name"] == "DS_PROMETHEUS")),
        "the dashboard takes its Prometheus data source as the input DS_PROMETHEUS"
    );
    for name in dashboard_metrics() {
        // A summary's series are its name, `_sum` and `_count`.
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| *b == "maxx_tick_to_order_seconds"))
            .unwrap_or(&name);
        assert!(
            FAMILIES.contains(&family),
            "the dashboard queries {name}, which /metrics does not serve"
        );
    }
}
