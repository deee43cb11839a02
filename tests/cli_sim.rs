//! `maxx sim --venue binance --replay FILE`: the standalone simulator serves a capture file's
//! frames to a real WebSocket client, byte for byte, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_simulator_serves_a_capture_from_the_command_line() {
    let trades: Vec<String> = (1..=5)
        .map(|i| {
            format!(
                r#"{{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":{i},"p":"61837.6{i}000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#
            )
        })
        .collect();
    let mut capture = String::from("# a capture written by the test\n");
    for (i, t) in trades.iter().enumerate() {
        capture.push_str(&format!(
            "{} {{\"stream\":\"btcusdt@trade\",\"data\":{t}}}\n",
            1_000_000 + i as u64 * 1_000_000
        ));
    }
    let dir = std::env::temp_dir().join(format!("maxx-cli-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trades.capture");
    std::fs::write(&file, capture).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_maxx"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "sim",
            "--venue",
            "binance",
            "--bind",
            "127.0.0.1:0",
            "--replay",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("ws://127.0.0.1:"), "{first}");

    let (mut ws, _) = tungstenite::connect(format!("{url}/ws/btcusdt@trade")).unwrap();
    for expected in &trades {
        let msg = ws.read().unwrap();
        assert_eq!(
            msg.into_text().unwrap().as_str(),
            expected,
            "raw frames are the capture's payloads, byte for byte"
        );
    }
    // SAFETY: `kill` with a pid we own (our child) and a valid signal number has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(dir).unwrap();
}
