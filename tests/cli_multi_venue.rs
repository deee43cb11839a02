//! `maxx run` with all four venues on their simulators (the shipped `config/multi_venue.yaml`):
//! every feed comes up through its real connector, ticks from all of them decode without error,
//! and the run drains and prints its summary.

use std::process::Command;

#[test]
fn four_venues_run_side_by_side() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/config/multi_venue.yaml")).unwrap();
    // Park between passes: the test shares two cores with the rest of the suite.
    let text = text.replace("  wait: spin_yield", "  wait: park");
    // Any free ports for the HTTP API and the gRPC server: other tests run side by side.
    let text = format!("{text}\nhttp:\n  listen: \"127.0.0.1:0\"\ngrpc:\n  listen: \"127.0.0.1:0\"\n");
    let dir = std::env::temp_dir().join(format!("maxx-multi-venue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("multi.yaml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maxx"))
        .current_dir(root)
        .args(["run", "--config", config.to_str().unwrap(), "--for", "4s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().any(|l| l.contains("binance:up")
            && l.contains("coinbase:up")
            && l.contains("bybit:up")
            && l.contains("oanda:up")),
        "a status line shows all four feeds up:\n{stdout}"
    );
    assert!(stdout.contains("bad frames    0\n"), "{stdout}");
    let trades: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ticks         "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a ticks line in the summary");
    assert!(trades > 0, "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}
