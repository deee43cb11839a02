//! End-to-end tests of `maxx bench --wire` against the built binary: a short real run over
//! loopback (frame server → WebSocket feed → hot path → Binance gateway → mock venue, and the
//! tokio-tungstenite pipeline against the same frames), the report's table and counts, every
//! order attributed to its frame, the `.hgrm` files and the plot, a capture as input, and clear
//! errors for bad input. Behaviour only: no timing value is asserted.

mod common;

use std::path::Path;

use common::{TempDir, assert_exit, run, stderr, stdout};

/// Columns of the table, in order.
const COLUMNS: [&str; 6] = ["p50", "p90", "p99", "p99.9", "max", "samples"];
/// Width of the table's label column.
const LABEL: usize = 26;

/// `maxx bench --wire ARGS... --out DIR`, which must exit 0; returns stdout.
fn wire(args: &[&str], out: &Path) -> String {
    let mut all: Vec<String> = vec!["bench".into(), "--wire".into()];
    all.extend(args.iter().map(|s| (*s).to_string()));
    all.extend(["--out".to_string(), out.display().to_string()]);
    let o = run(&all);
    assert_exit(&o, 0, &format!("maxx {}", all.join(" ")));
    stdout(&o)
}

/// The table row labelled exactly `name`: its fields after the label.
fn row<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.len() > LABEL && l[..LABEL].trim_end() == name)
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{text}"));
    line[LABEL..].split_whitespace().collect()
}

/// A latency row: four percentiles and the maximum in order, then the sample count.
fn latency_row(text: &str, name: &str) -> (Vec<f64>, u64) {
    let fields = row(text, name);
    assert_eq!(fields.len(), 6, "row {name:?}: {fields:?}");
    let values: Vec<f64> = fields[..5]
        .iter()
        .map(|w| w.parse().unwrap_or_else(|_| panic!("row {name:?}: not a number {w:?}")))
        .collect();
    for w in values.windows(2) {
        assert!(w[0] <= w[1], "row {name:?}: not monotone: {values:?}");
    }
    let count = fields[5]
        .parse()
        .unwrap_or_else(|_| panic!("row {name:?}: bad count {:?}", fields[5]));
    (values, count)
}

/// `<pipeline>: frames sent N, orders sent N, orders received N, samples N, warmup N,
/// unattributed N` as numbers by name.
fn counts(text: &str, pipeline: &str) -> std::collections::HashMap<String, u64> {
    let prefix = format!("{pipeline}: frames sent ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no count line for {pipeline} in:\n{text}"));
    line[pipeline.len() + 2..]
        .split(", ")
        .map(|part| {
            let (name, n) = part.rsplit_once(' ').unwrap_or_else(|| panic!("bad part {part:?}"));
            (
                name.to_string(),
                n.parse().unwrap_or_else(|_| panic!("bad number in {part:?}")),
            )
        })
        .collect()
}

/// The shape every report has, whatever was measured; returns each pipeline's counts.
fn assert_report(out: &str, frames: u64) -> [std::collections::HashMap<String, u64>; 2] {
    assert!(out.starts_with("maxx bench --wire: "), "{out}");
    let header = row(out, "wire-to-wire (us)");
    assert_eq!(header, COLUMNS, "{out}");
    latency_row(out, "maxx");
    latency_row(out, "tokio");
    let ratios = row(out, "ratio tokio/maxx");
    assert_eq!(ratios.len(), 5, "{out}");
    for name in [
        "maxx frame->feed",
        "maxx feed->venue",
        "tokio frame->feed",
        "tokio feed->venue",
    ] {
        latency_row(out, name);
    }
    let both = ["maxx", "tokio"].map(|p| counts(out, p));
    for (p, c) in ["maxx", "tokio"].iter().zip(&both) {
        assert_eq!(c["frames sent"], frames, "{p}: {out}");
        assert_eq!(c["unattributed"], 0, "{p}: every order is traced to its frame: {out}");
        assert_eq!(
            c["orders received"],
            c["samples"] + c["warmup"],
            "{p}: every received order is a sample or a warm-up order: {out}"
        );
        assert!(c["orders received"] <= c["orders sent"], "{p}: {out}");
        let (_, samples) = latency_row(out, p);
        assert_eq!(samples, c["samples"], "{p}: {out}");
    }
    both
}

/// The `.hgrm` file's header and its last line's total count.
fn hgrm_total(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let header = text.lines().next().unwrap_or("");
    for col in ["Value", "Percentile", "TotalCount"] {
        assert!(header.contains(col), "{}: header {header:?}", path.display());
    }
    let total = text
        .lines()
        .find_map(|l| l.split("Total count    =").nth(1))
        .unwrap_or_else(|| panic!("{}: no total count:\n{text}", path.display()));
    total
        .trim()
        .trim_end_matches(']')
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: bad total {total:?}", path.display()))
}

#[test]
fn a_short_run_measures_both_pipelines_and_attributes_every_order() {
    let dir = TempDir::new("bench-wire");
    let out_dir = dir.path().join("out");
    let out = wire(&["--rate", "1000", "--duration", "3s"], &out_dir);
    let [maxx, tokio] = assert_report(&out, 3000);
    assert!(maxx["samples"] > 0, "maxx took no sample: {out}");
    assert!(tokio["samples"] > 0, "tokio took no sample: {out}");
    assert!(out.contains("from seeded simulator"), "{out}");
    assert!(out.contains("open loop at 1000 frames/s"), "{out}");
    // By default the tokio workers get the cores maxx's hot threads were pinned to.
    let line = out
        .lines()
        .find(|l| l.starts_with("maxx: layout "))
        .expect("placement line");
    let (maxx_part, tokio_part) = line.split_once("; tokio: ").expect("both placements");
    let mut hot: Vec<usize> = maxx_part
        .split("on core ")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    hot.sort_unstable();
    hot.dedup();
    assert!(!hot.is_empty(), "no pinned hot core in {line:?}");
    assert_eq!(tokio_cores(tokio_part), hot, "{line}");
    assert_eq!(hgrm_total(&out_dir.join("wire-maxx.hgrm")), maxx["samples"]);
    assert_eq!(hgrm_total(&out_dir.join("wire-tokio.hgrm")), tokio["samples"]);
    let svg = std::fs::read_to_string(out_dir.join("wire.svg")).expect("wire.svg is written");
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    assert!(out.contains("files: "), "{out}");
}

#[test]
fn a_capture_is_sent_once_at_the_rate() {
    let dir = TempDir::new("bench-wire-capture");
    // A BTCUSDT market that trends up then down, in Binance's combined trade format.
    let mut text = String::from("# synthetic capture\n");
    let mut price: i64 = 6_000_000;
    for i in 0..1500u64 {
        price += if (i / 150) % 2 == 0 { 3 } else { -3 };
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
    // More frames asked than the capture holds: it is sent once, not cycled.
    let out = wire(
        &[
            "--capture",
            cap.to_str().unwrap(),
            "--rate",
            "1000",
            "--frames",
            "5000",
            "--tokio-cores",
            "all",
        ],
        &dir.path().join("out"),
    );
    // `--tokio-cores all`: one worker per available core.
    let line = out
        .lines()
        .find(|l| l.starts_with("maxx: layout "))
        .expect("placement line");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tokio_part = line.split_once("; tokio: ").expect("both placements").1;
    assert_eq!(tokio_cores(tokio_part).len(), cores, "{line}");
    assert!(out.contains("1500 frames from capture "), "{out}");
    assert!(out.contains("(all of it; 5000 asked)"), "{out}");
    assert_report(&out, 1500);
    assert!(
        out.contains("frames: 1500 decode to ticks, 0 ticks share a key"),
        "{out}"
    );
}

/// The core list of `N worker thread(s) on cores [a, b], unpinned`.
fn tokio_cores(text: &str) -> Vec<usize> {
    let list = text
        .split_once("on cores [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .unwrap_or_else(|| panic!("no core list in {text:?}"))
        .0;
    list.split(", ")
        .map(|c| c.trim().parse().expect("a core number"))
        .collect()
}

/// `maxx bench --wire ARGS...` must fail with exit `code` and say `needle` on stderr.
fn refused(args: &[&str], code: i32, needle: &str) {
    let dir = TempDir::new("bench-wire-bad");
    let mut all: Vec<String> = vec!["bench".into(), "--wire".into()];
    all.extend(args.iter().map(|s| (*s).to_string()));
    all.extend(["--out".to_string(), dir.path().display().to_string()]);
    let o = run(&all);
    assert_exit(&o, code, &format!("maxx {}", all.join(" ")));
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "stderr of maxx {} lacks {needle:?}:\n{err}",
        all.join(" ")
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    refused(&["--rate", "0"], 2, "--rate must be a positive number");
    refused(&["--rate", "-5"], 2, "--rate must be a positive number");
    refused(&["--frames", "0"], 2, "--frames must be at least 1");
    refused(
        &["--rate", "1000", "--frames", "10", "--warmup", "10"],
        2,
        "leaves nothing to measure",
    );
    refused(&["--frames", "3000000"], 2, "at most 2000000 frames");
    refused(
        &["--capture", "/nonexistent/capture.gz"],
        2,
        "cannot read capture /nonexistent/capture.gz",
    );
    let dir = TempDir::new("bench-wire-foreign");
    let foreign = dir.write(
        "foreign.txt",
        "1 {\"e\":\"trade\",\"s\":\"DOGEUSDT\",\"t\":1,\"p\":\"1\",\"q\":\"1\",\"T\":1,\"m\":true}\n",
    );
    refused(
        &["--capture", foreign.to_str().unwrap()],
        2,
        "decodes to a Binance tick of a configured symbol",
    );
    // `--wire` measures wire to wire only: the in-memory bench's options do not combine with it.
    refused(&["--soak", "--duration", "1s"], 2, "cannot be used with");
    refused(&["--baseline", "tokio"], 2, "cannot be used with");
}
