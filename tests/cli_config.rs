//! End-to-end tests of config validation through the binary: `maxx config check` on the shipped
//! file and on a file with several distinct problems, `maxx run` refusing a bad config before
//! it starts anything, and usage errors for unknown subcommands.

mod common;

use common::{SHIPPED_CONFIG, TempDir, assert_exit, config_with, run, stderr, stdout};

/// The shipped config with four unrelated problems, each at its own key path.
fn broken_config() -> String {
    let text = config_with(&[
        ("  layout:", "  layout: diagonal"),
        ("    sentiment:", "    sentiment: 0.1"),
        ("  reweight_cron:", "  reweight_cron: \"61 0 * * *\""),
    ]);
    // An unknown key inside `market_data`, right after its first key.
    let with_unknown = text.replacen("market_data:\n", "market_data:\n  retry_backof_ms: 250\n", 1);
    assert_ne!(with_unknown, text, "the shipped config has a market_data section");
    with_unknown
}

/// The key paths (and a word of each message) `config check` must report for
/// [`broken_config`].
const PROBLEMS: [(&str, &str); 4] = [
    ("market_data.retry_backof_ms", "unknown"),
    ("hot.layout", "diagonal"),
    ("alpha.weights", "1.1"),
    ("alpha.reweight_cron", "61"),
];

fn assert_lists_every_problem(err: &str, path: &str) {
    assert!(
        err.contains(&format!("{path}: {} problem(s)", PROBLEMS.len())),
        "stderr counts the problems:\n{err}"
    );
    for (key, word) in PROBLEMS {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no problem reported at {key}:\n{err}"));
        assert!(line.contains(word), "the problem at {key} mentions {word:?}: {line}");
    }
}

#[test]
fn shipped_config_checks_ok() {
    let out = run(&["config", "check", SHIPPED_CONFIG]);
    assert_exit(&out, 0, "config check of the shipped config");
    let text = stdout(&out);
    assert!(text.starts_with(&format!("{SHIPPED_CONFIG}: ok")), "{text}");
    assert!(stderr(&out).is_empty(), "no problems reported: {}", stderr(&out));
}

#[test]
fn unchanged_copy_of_the_shipped_config_checks_ok() {
    let dir = TempDir::new("config-copy");
    let path = dir.write("copy.yaml", config_with(&[]));
    let out = run(&["config", "check", path.to_str().expect("utf-8 path")]);
    assert_exit(&out, 0, "config check of a copy of the shipped config");
    assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
}

#[test]
fn config_with_several_problems_lists_each_with_its_key_path() {
    let dir = TempDir::new("config-bad");
    let path = dir.write("bad.yaml", broken_config());
    let p = path.to_str().expect("utf-8 path");
    let out = run(&["config", "check", p]);
    assert_exit(&out, 1, "config check of a broken config");
    assert_lists_every_problem(&stderr(&out), p);
    assert!(!stdout(&out).contains("ok"), "nothing claims success: {}", stdout(&out));
}

#[test]
fn missing_config_file_exits_1() {
    let dir = TempDir::new("config-missing");
    let path = dir.path().join("absent.yaml");
    let p = path.to_str().expect("utf-8 path");
    let out = run(&["config", "check", p]);
    assert_exit(&out, 1, "config check of a missing file");
    assert!(stderr(&out).contains(p), "the message names the file: {}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn run_refuses_to_start_with_a_bad_config() {
    let dir = TempDir::new("config-run");
    let path = dir.write("bad.yaml", broken_config());
    let p = path.to_str().expect("utf-8 path");
    // `--for` bounds the run should validation ever let it through.
    let out = run(&["run", "--config", p, "--for", "2s"]);
    assert_exit(&out, 1, "maxx run with a broken config");
    assert_lists_every_problem(&stderr(&out), p);
    let text = stdout(&out);
    assert!(
        !text.contains("ticks/s"),
        "no status line: the engine never started:\n{text}"
    );
    assert!(
        !text.contains("--- summary"),
        "no summary: the engine never started:\n{text}"
    );
}

#[test]
fn replay_refuses_a_bad_config_too() {
    let dir = TempDir::new("config-replay");
    let path = dir.write("bad.yaml", broken_config());
    let capture = dir.write("capture.txt", "# nothing to replay\n");
    let p = path.to_str().expect("utf-8 path");
    let c = capture.to_str().expect("utf-8 path");
    let out = run(&["replay", "--venue", "binance", "--config", p, c]);
    assert_exit(&out, 1, "maxx replay with a broken config");
    assert_lists_every_problem(&stderr(&out), p);
    assert!(stdout(&out).is_empty());
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = run(&["frobnicate"]);
    assert_exit(&out, 2, "maxx frobnicate");
    let err = stderr(&out);
    assert!(err.contains("frobnicate"), "{err}");
    assert!(err.contains("Usage:"), "{err}");
    assert!(stdout(&out).is_empty());
    let out = run(&["config", "frobnicate"]);
    assert_exit(&out, 2, "maxx config frobnicate");
    assert!(stderr(&out).contains("Usage:"), "{}", stderr(&out));
    let out = run(&["config", "check"]);
    assert_exit(&out, 2, "maxx config check without a path");
}
