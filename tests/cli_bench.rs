//! End-to-end tests of `maxx bench` against the built binary: the percentile table (every row
//! and column, nonzero counts), the `.hgrm` files (monotone percentiles and counts), the SVG
//! plot (one polyline per run), the floor, tokio and crossbeam baselines and their ratios, the
//! header line naming the layout and the cores the four stages ran on, a capture file as input,
//! and clear errors for impossible parameters. Behaviour only: no timing value is asserted.

mod common;

use std::path::Path;

use common::{TempDir, assert_exit, run, stderr, stdout};

const COLUMNS: [&str; 7] = ["p50", "p90", "p99", "p99.9", "p99.99", "max", "count"];

/// `maxx bench ARGS... --out DIR`, which must exit 0; returns stdout.
fn bench(args: &[&str], out: &Path) -> String {
    let mut all: Vec<String> = vec!["bench".into()];
    all.extend(args.iter().map(|s| (*s).to_string()));
    all.extend(["--out".to_string(), out.display().to_string()]);
    let o = run(&all);
    assert_exit(&o, 0, &format!("maxx {}", all.join(" ")));
    stdout(&o)
}

/// The hops of the per-hop table, in path order.
const HOPS: [&str; 7] = [
    "decode",
    "ring_md_alpha",
    "alpha",
    "ring_alpha_risk",
    "risk",
    "ring_risk_exec",
    "exec",
];

/// The table row starting with `name`: its numbers (p50 … max, count[, ×floor]).
fn row(text: &str, name: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{text}"));
    line[name.len()..]
        .split_whitespace()
        .map(|w| {
            w.trim_end_matches('x')
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("not a number {w:?} in row {line:?}"))
        })
        .collect()
}

/// Checks one row: six latencies in order, a nonzero count.
fn assert_row(text: &str, name: &str) -> Vec<f64> {
    let v = row(text, name);
    assert!(v.len() >= 7, "row {name:?} has {} numbers: {v:?}", v.len());
    for w in v[..6].windows(2) {
        assert!(w[0] <= w[1], "row {name:?}: percentiles not monotone: {v:?}");
    }
    assert!(v[6] > 0.0, "row {name:?}: zero count: {v:?}");
    v
}

/// Parses a `.hgrm` file: (value, percentile, total count) per line; checks the shape.
fn assert_hgrm(path: &Path) -> Vec<(f64, f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let header = text.lines().next().unwrap_or("");
    for col in ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        assert!(
            header.contains(col),
            "{}: header {header:?} lacks {col}",
            path.display()
        );
    }
    let rows: Vec<(f64, f64, u64)> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() == 3 || f.len() == 4, "{}: bad line {l:?}", path.display());
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert!(!rows.is_empty(), "{}: no data line", path.display());
    for w in rows.windows(2) {
        assert!(w[0].0 <= w[1].0, "{}: values not monotone", path.display());
        assert!(w[0].1 <= w[1].1, "{}: percentiles not monotone", path.display());
        assert!(w[0].2 <= w[1].2, "{}: counts not monotone", path.display());
    }
    let last = rows[rows.len() - 1];
    assert!(
        (last.1 - 1.0).abs() < 1e-9,
        "{}: last percentile is {}",
        path.display(),
        last.1
    );
    assert!(last.2 > 0, "{}: zero total count", path.display());
    assert!(text.contains("#[Max"), "{}: no footer", path.display());
    rows
}

fn polylines(svg: &str) -> usize {
    svg.matches("<polyline").count()
}

/// The `4 stages on N core(s) (layout LAYOUT)` header line: names `layout`, and N is between 1
/// and the cores this machine has; returns N.
fn assert_stages_on_cores(text: &str, layout: &str) -> usize {
    let line = text
        .lines()
        .find(|l| l.starts_with("4 stages on "))
        .unwrap_or_else(|| panic!("no `4 stages on N cores` line in:\n{text}"));
    let n: usize = line["4 stages on ".len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no core count in {line:?}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!((1..=cores).contains(&n), "{line:?}: {n} core(s) of {cores}");
    assert!(line.contains(" core"), "{line:?}");
    assert!(
        line.contains(&format!("(layout {layout})")),
        "{line:?} does not name layout {layout}"
    );
    n
}

#[test]
fn flat_out_prints_every_row_and_writes_hgrm_and_svg() {
    let dir = TempDir::new("bench-flat");
    let out = bench(
        &[
            "--frames",
            "20000",
            "--flat-out",
            "--layout",
            "fused",
            "--baseline",
            "floor,tokio",
        ],
        dir.path(),
    );
    let header = out.lines().find(|l| l.starts_with("latency")).expect("table header");
    for col in COLUMNS {
        assert!(
            header.split_whitespace().any(|w| w == col),
            "header lacks {col}: {header}"
        );
    }
    for name in [
        "tick->alpha intent",
        "tick->risk approval",
        "tick->order",
        "floor one-way (cache line)",
        "tokio tick->order",
    ] {
        let v = assert_row(&out, name);
        assert_eq!(v.len(), 8, "row {name:?} has a p50/floor column: {v:?}");
    }
    assert!(out.contains("throughput:") && out.contains("frames/s decoded") && out.contains("orders/s"));
    assert_stages_on_cores(&out, "fused");
    assert!(out.contains("ratios: maxx tick->order p50 / floor p50 = "), "{out}");
    // Per hop: every segment of the path, each against the floor; the ring hops in the ratios.
    assert!(out.contains("per hop ("), "{out}");
    for hop in HOPS {
        let v = assert_row(&out, &format!("  {hop}"));
        assert_eq!(v.len(), 8, "hop {hop} has a p50/floor column: {v:?}");
    }
    // Samples are records on the path: one per intent from Alpha's tick on, one per order from
    // Risk's approval on, so those hops count exactly what the cumulative rows count.
    let count = |name: &str| row(&out, name)[6];
    assert_eq!(count("  alpha "), count("tick->alpha intent"));
    assert_eq!(count("  ring_alpha_risk"), count("tick->alpha intent"));
    for hop in ["  risk ", "  ring_risk_exec", "  exec "] {
        assert_eq!(count(hop), count("tick->order "), "{hop}");
    }
    assert!(count("  ring_md_alpha") >= count("tick->alpha intent"));
    assert!(
        out.contains("ring hop p50 / floor p50: ring_md_alpha ")
            && out.contains("ring_alpha_risk ")
            && out.contains("ring_risk_exec "),
        "{out}"
    );
    assert!(
        out.contains("tokio p50 / maxx p50 = ") && out.contains("tokio p99 / maxx p99 = "),
        "{out}"
    );
    for f in [
        "maxx_tick_to_alpha.hgrm",
        "maxx_tick_to_risk.hgrm",
        "maxx_tick_to_order.hgrm",
        "floor.hgrm",
        "tokio_tick_to_order.hgrm",
    ] {
        assert_hgrm(&dir.path().join(f));
    }
    for hop in HOPS {
        assert_hgrm(&dir.path().join(format!("maxx_hop_{hop}.hgrm")));
    }
    let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    // maxx tick->order, the floor and tokio.
    assert_eq!(polylines(&svg), 3);
}

#[test]
fn crossbeam_baseline_prints_its_row_ratios_and_file() {
    let dir = TempDir::new("bench-crossbeam");
    let out = bench(
        &[
            "--frames",
            "20000",
            "--flat-out",
            "--layout",
            "fused",
            "--baseline",
            "crossbeam",
            "--no-hops",
        ],
        dir.path(),
    );
    assert_stages_on_cores(&out, "fused");
    // Unstamped: no per-hop rows, ratios or files.
    assert!(!out.contains("per hop") && !out.contains("ring hop"), "{out}");
    assert!(!dir.path().join("maxx_hop_decode.hgrm").exists());
    assert_row(&out, "tick->order");
    let v = assert_row(&out, "crossbeam tick->order");
    // No floor in this run: no p50/floor column.
    assert_eq!(v.len(), 7, "crossbeam row: {v:?}");
    let ratios = out
        .lines()
        .find(|l| l.starts_with("ratios: "))
        .unwrap_or_else(|| panic!("no ratios line in:\n{out}"));
    assert!(
        ratios.contains("crossbeam p50 / maxx p50 = ") && ratios.contains("crossbeam p99 / maxx p99 = "),
        "{ratios}"
    );
    assert!(!ratios.contains("tokio"), "{ratios}");
    assert_hgrm(&dir.path().join("crossbeam_tick_to_order.hgrm"));
    let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
    // maxx tick->order and crossbeam.
    assert_eq!(polylines(&svg), 2);
}

#[test]
fn open_loop_adds_the_corrected_row() {
    let dir = TempDir::new("bench-open");
    let out = bench(
        &["--rate", "20000", "--duration", "1s", "--layout", "fused"],
        dir.path(),
    );
    assert!(out.contains("open loop at 20000 frames/s"), "{out}");
    assert_stages_on_cores(&out, "fused");
    for name in [
        "tick->alpha intent",
        "tick->risk approval",
        "tick->order",
        "tick->order (CO-corrected)",
    ] {
        assert_row(&out, name);
    }
    // The correction only adds samples.
    assert!(row(&out, "tick->order (CO-corrected)")[6] >= row(&out, "tick->order ")[6]);
    let raw = assert_hgrm(&dir.path().join("maxx_tick_to_order.hgrm"));
    let corrected = assert_hgrm(&dir.path().join("maxx_tick_to_order_corrected.hgrm"));
    assert!(corrected.last().unwrap().2 >= raw.last().unwrap().2);
    let svg = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
    assert_eq!(polylines(&svg), 2);
}

#[test]
fn capture_file_is_an_input() {
    let dir = TempDir::new("bench-capture");
    // A BTCUSDT market that trends up then down, in Binance's trade format.
    let mut text = String::from("# synthetic capture\n");
    let mut price: i64 = 6_000_000;
    for i in 0..3000u64 {
        price += if (i / 300) % 2 == 0 { 3 } else { -3 };
        text.push_str(&format!(
            "{} {{\"stream\":\"btcusdt@trade\",\"data\":{{\"e\":\"trade\",\"E\":{},\"s\":\"BTCUSDT\",\"t\":{},\"p\":\"{}.{:02}\",\"q\":\"0.01000\",\"T\":{},\"m\":{},\"M\":true}}}}\n",
            1_700_000_000_000_000_000 + i * 1_000_000,
            1_700_000_000_000 + i,
            i + 1,
            price / 100,
            price % 100,
            1_700_000_000_000 + i,
            i % 2 == 0
        ));
    }
    let cap = dir.write("cap.txt", text);
    let out = bench(
        &[
            "--capture",
            cap.to_str().unwrap(),
            "--frames",
            "6000",
            "--layout",
            "fused",
        ],
        &dir.path().join("out"),
    );
    assert!(out.contains("from capture "), "{out}");
    assert!(out.contains("(6000 frames, 6000 ticks, 0 bad;"), "{out}");
    assert_row(&out, "tick->alpha intent");
}

/// `maxx bench ARGS...` must fail (exit 2) and say `needle` on stderr.
fn refused(args: &[&str], needle: &str) {
    let dir = TempDir::new("bench-bad");
    let mut all: Vec<String> = vec!["bench".into()];
    all.extend(args.iter().map(|s| (*s).to_string()));
    all.extend(["--out".to_string(), dir.path().display().to_string()]);
    let o = run(&all);
    assert_exit(&o, 2, &format!("maxx {}", all.join(" ")));
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "stderr of maxx {} lacks {needle:?}:\n{err}",
        all.join(" ")
    );
}

#[test]
fn impossible_parameters_are_refused() {
    refused(&["--rate", "0"], "--rate must be a positive number");
    refused(&["--rate", "-5"], "--rate must be a positive number");
    refused(&["--frames", "0"], "--frames must be at least 1");
    refused(
        &["--capture", "/nonexistent/capture.gz"],
        "cannot read capture /nonexistent/capture.gz",
    );
    let dir = TempDir::new("bench-empty");
    let empty = dir.write("empty.txt", "# nothing\n");
    refused(&["--capture", empty.to_str().unwrap()], "holds no frame");
    refused(&["--baseline", "nonsense"], "unknown baseline");
    refused(&["--soak"], "--soak needs --duration");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 4 {
        refused(&["--layout", "pinned"], "--layout pinned needs one core per stage");
    }
}

#[test]
fn soak_reports_rss_and_latency_at_start_and_end() {
    let dir = TempDir::new("bench-soak");
    let out = bench(
        &["--soak", "--rate", "5000", "--duration", "8s", "--layout", "fused"],
        dir.path(),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("soak: RSS "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(" kB at start, ") && line.contains(" kB at end, ") && line.contains(" kB at most, "),
        "{line}"
    );
    // Memory is locked as `maxx run` locks it, or the report says why not.
    assert!(
        out.contains("; memory locked (mlockall)") || out.contains("; memory not locked: "),
        "{out}"
    );
    assert!(line.ends_with("grew)") || line.ends_with("did not grow)"), "{line}");
    // The whole run measured orders; a one-second window at either end may hold none when the
    // machine is loaded (the windows are the hand-overs, whatever they carry), so those rows
    // are checked for shape only.
    assert_row(&out, "tick->order");
    for name in ["soak start tick->order", "soak end tick->order"] {
        let v = row(&out, name);
        assert!(v.len() >= 7, "row {name:?} has {} numbers: {v:?}", v.len());
        if v[6] > 0.0 {
            for w in v[..6].windows(2) {
                assert!(w[0] <= w[1], "row {name:?}: percentiles not monotone: {v:?}");
            }
        }
    }
}
