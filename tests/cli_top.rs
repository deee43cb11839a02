//! `maxx top --once` against a small local HTTP server that serves a fixed exposition whose
//! counters advance between scrapes: rates from the deltas, latency percentiles, rings, feeds,
//! risk, equity and drawdown as an operator sees them; the endpoint taken from `--config`;
//! clear exits for an unreachable endpoint, an https URL and an HTTP error; the interactive
//! dashboard in a pseudo-terminal (the error shown while the endpoint is down, retried until it
//! answers, `q`/Esc/Ctrl-C quitting with the terminal restored); and end to end against the
//! `/metrics` of a real `maxx run`.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Child;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{DEADLINE, Running, TempDir, assert_exit, config_with, maxx, run, stderr, stdout};

/// The first scrape's text. Uptime has sub-second resolution, so `top` measures the rates over
/// the server's clock: 2.0 s between the two texts, whatever the test machine's scheduling.
const FIRST: &str = r#"# HELP maxx_uptime_seconds Seconds since start.
# TYPE maxx_uptime_seconds gauge
maxx_uptime_seconds 100.25
# TYPE maxx_feed_frames_total counter
maxx_feed_frames_total{venue="binance"} 900
maxx_feed_frames_total{venue="coinbase"} 40
maxx_feed_ticks_total{venue="binance",kind="trade"} 1000
maxx_feed_ticks_total{venue="binance",kind="book"} 500
maxx_feed_ticks_total{venue="coinbase",kind="trade"} 40
maxx_feed_decode_errors_total{venue="binance",reason="bad \"json\""} 2
maxx_feed_reconnects_total{venue="binance"} 0
maxx_feed_reconnects_total{venue="coinbase"} 3
maxx_feed_last_tick_age_seconds{venue="binance"} 0.004
maxx_feed_last_tick_age_seconds{venue="coinbase"} 7.5
maxx_feed_state{venue="binance"} 1
maxx_feed_state{venue="coinbase"} 2
maxx_signals_total 50
maxx_orders_total{venue="binance"} 10
maxx_fills_total{venue="binance"} 8
maxx_rejects_total{reason="rate_limit"} 1
maxx_rejects_total{reason="halted"} 0
maxx_open_orders{venue="binance"} 3
maxx_tick_to_order_seconds{quantile="0.5"} 0.0000123
maxx_tick_to_order_seconds{quantile="0.9"} 0.000025
maxx_tick_to_order_seconds{quantile="0.99"} 0.00008
maxx_tick_to_order_seconds{quantile="0.999"} 0.00031
maxx_tick_to_order_seconds_sum 0.0012
maxx_tick_to_order_seconds_count 80
maxx_ring_occupancy{ring="md_alpha"} 512
maxx_ring_capacity{ring="md_alpha"} 4096
maxx_thread_cpu_seconds_total{thread="md-binance"} 5
maxx_thread_cpu_seconds_total{thread="alpha"} 2
maxx_redis_connected 1
maxx_redis_queue_depth 0
maxx_risk_state{scope="*"} 0
maxx_risk_state{scope="BTCUSDT"} 0
maxx_risk_state{scope="ETHUSDT"} 1
maxx_kill_switch 0
maxx_equity{currency="USDT"} 100010.00
maxx_drawdown_ratio{currency="USDT"} 0.01
maxx_lockbox{currency="USDT"} 6.17
"#;

/// The second scrape's text: 2.0 s later by the server's clock, every counter advanced.
const SECOND: &str = r#"# HELP maxx_uptime_seconds Seconds since start.
# TYPE maxx_uptime_seconds gauge
maxx_uptime_seconds 102.25
maxx_feed_frames_total{venue="binance"} 1300
maxx_feed_frames_total{venue="coinbase"} 40
maxx_feed_ticks_total{venue="binance",kind="trade"} 1400
maxx_feed_ticks_total{venue="binance",kind="book"} 700
maxx_feed_ticks_total{venue="coinbase",kind="trade"} 40
maxx_feed_decode_errors_total{venue="binance",reason="bad \"json\""} 2
maxx_feed_reconnects_total{venue="binance"} 0
maxx_feed_reconnects_total{venue="coinbase"} 3
maxx_feed_last_tick_age_seconds{venue="binance"} 0.004
maxx_feed_last_tick_age_seconds{venue="coinbase"} 9.5
maxx_feed_state{venue="binance"} 1
maxx_feed_state{venue="coinbase"} 2
maxx_signals_total 60
maxx_orders_total{venue="binance"} 14
maxx_fills_total{venue="binance"} 11
maxx_rejects_total{reason="rate_limit"} 3
maxx_rejects_total{reason="halted"} 0
maxx_open_orders{venue="binance"} 3
maxx_tick_to_order_seconds{quantile="0.5"} 0.0000123
maxx_tick_to_order_seconds{quantile="0.9"} 0.000025
maxx_tick_to_order_seconds{quantile="0.99"} 0.00008
maxx_tick_to_order_seconds{quantile="0.999"} 0.00031
maxx_tick_to_order_seconds_sum 0.0015
maxx_tick_to_order_seconds_count 100
maxx_ring_occupancy{ring="md_alpha"} 1024
maxx_ring_capacity{ring="md_alpha"} 4096
maxx_thread_cpu_seconds_total{thread="md-binance"} 6
maxx_thread_cpu_seconds_total{thread="alpha"} 2.5
maxx_redis_connected 1
maxx_redis_queue_depth 7
maxx_risk_state{scope="*"} 0
maxx_risk_state{scope="BTCUSDT"} 0
maxx_risk_state{scope="ETHUSDT"} 1
maxx_kill_switch 0
maxx_equity{currency="USDT"} 100012.35
maxx_drawdown_ratio{currency="USDT"} 0.0123
maxx_lockbox{currency="USDT"} 6.17
this line is not a sample
"#;

/// A one-route HTTP server on a free loopback port: the n-th request gets `answers[n]` (the
/// last one from then on) with `status`. Returns the port and the number of requests served.
fn metrics_server(status: &'static str, answers: Vec<&'static str>) -> (u16, Arc<AtomicUsize>) {
    metrics_server_on(0, status, answers)
}

/// [`metrics_server`] on a given port (0: any free one).
fn metrics_server_on(port: u16, status: &'static str, answers: Vec<&'static str>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let n = count.load(Ordering::SeqCst);
            let body = if request_line.starts_with("GET /metrics ") {
                answer(&answers, n)
            } else {
                "no such route".to_string()
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, served)
}

/// The text of scrape `n`: the given answers in order, then the last one again with its uptime
/// 2 s further on each time, as a server that keeps running would answer. Every pair of
/// consecutive scrapes therefore spans 2.00 s of server clock, however late the test looks.
fn answer(answers: &[&str], n: usize) -> String {
    let last = answers.len() - 1;
    let text = answers[n.min(last)];
    let extra = n.saturating_sub(last);
    if extra == 0 {
        return text.to_string();
    }
    text.lines()
        .map(|line| match line.strip_prefix("maxx_uptime_seconds ") {
            Some(v) => {
                let uptime: f64 = v.parse().expect("a numeric uptime");
                format!("maxx_uptime_seconds {:.2}", uptime + 2.0 * extra as f64)
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The line of `text` that contains every one of `parts`, or a panic showing the frame.
fn line_with<'a>(text: &'a str, parts: &[&str]) -> &'a str {
    text.lines()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
}

fn top_once(url: &str, interval_ms: &str) -> std::process::Output {
    run(&["top", "--once", "--url", url, "--interval-ms", interval_ms])
}

#[test]
fn once_shows_rates_latency_feeds_risk_and_equity() {
    let (port, served) = metrics_server("200 OK", vec![FIRST, SECOND]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = top_once(&url, "200");
    assert_exit(&out, 0, "maxx top --once");
    assert_eq!(served.load(Ordering::SeqCst), 2, "two scrapes");
    let text = stdout(&out);
    // No terminal control sequences in the plain rendering.
    assert!(!text.contains('\u{1b}'), "escape codes in:\n{text}");

    // The header: the endpoint, the window the rates are measured over, the totals.
    line_with(
        &text,
        &["maxx top", &url, "up 1m42s", "rates over 2.00 s (server clock)"],
    );
    line_with(
        &text,
        &[
            "ticks 300.0/s",
            "signals 5.0/s",
            "orders 2.0/s",
            "fills 1.5/s",
            "1 malformed line(s) skipped",
        ],
    );
    // Feeds: ticks (all kinds) and frames per second from the deltas, state, last tick age.
    line_with(
        &text,
        &["binance", "live", "0.00s ago", "300.0/s", "200.0/s", " 2 ", " 0"],
    );
    line_with(&text, &["coinbase", "STALE", "9.50s ago", "0.0/s", " 3"]);
    // Order flow by venue: rates, totals, open orders; rejects by reason.
    line_with(&text, &["binance", " 2.0 ", " 1.5 ", " 14 ", " 11 ", " 3"]);
    line_with(&text, &["reject rate_limit", " 3 ", "1.0/s"]);
    assert!(
        !text.contains("halted"),
        "a reason that never happened is not listed:\n{text}"
    );
    // Tick-to-order percentiles in µs, and the mean from _sum/_count.
    line_with(&text, &["p50", "12.3 µs"]);
    line_with(&text, &["p90", "25.0 µs"]);
    line_with(&text, &["p99 ", "80.0 µs"]);
    line_with(&text, &["p99.9", "310.0 µs"]);
    line_with(&text, &["mean", "15.0 µs"]);
    line_with(&text, &["100 orders measured"]);
    // Rings as used/capacity %, thread CPU % from cpu-seconds deltas.
    line_with(&text, &["md_alpha", "1024/4096", "25.0%"]);
    line_with(&text, &["md-binance", "50.0% cpu"]);
    line_with(&text, &["alpha ", "25.0% cpu"]);
    // Risk: the system scope, the one symbol not ACTIVE, the kill switch; money.
    line_with(&text, &["risk", "ACTIVE"]);
    line_with(&text, &["ETHUSDT", "REDUCING"]);
    assert!(!text.contains("BTCUSDT"), "an ACTIVE symbol is not listed:\n{text}");
    line_with(&text, &["kill", "off"]);
    line_with(&text, &["equity", "100012.35 USDT"]);
    line_with(&text, &["drawdown", "1.23%"]);
    line_with(&text, &["lock-box", "6.17 USDT"]);
    line_with(&text, &["redis", "connected"]);
    line_with(&text, &["queue", "7"]);
}

#[test]
fn unreachable_endpoint_exits_1_naming_the_url() {
    // A port that was free a moment ago and has no listener now.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = top_once(&url, "50");
    assert_exit(&out, 1, "maxx top --once against nothing");
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot scrape {url}")), "{err}");
    assert!(stdout(&out).is_empty(), "nothing on stdout: {}", stdout(&out));
}

#[test]
fn https_and_http_errors_are_refused_clearly() {
    let out = top_once("https://127.0.0.1:9100/metrics", "50");
    assert_exit(&out, 1, "maxx top --once https://");
    assert!(stderr(&out).contains("https is not supported"), "{}", stderr(&out));

    let (port, _) = metrics_server("503 Service Unavailable", vec!["starting"]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = top_once(&url, "50");
    assert_exit(&out, 1, "maxx top --once against a 503");
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot scrape {url}")) && err.contains("HTTP 503"),
        "{err}"
    );
}

#[test]
fn the_endpoint_comes_from_the_config() {
    let (port, served) = metrics_server("200 OK", vec![FIRST, SECOND]);
    let dir = TempDir::new("top-config");
    let listen = format!("  metrics_listen: \"127.0.0.1:{port}\"");
    let config = dir.write("c.yaml", config_with(&[("  metrics_listen:", &listen)]));
    let out = run(&[
        "top",
        "--once",
        "--config",
        config.to_str().unwrap(),
        "--interval-ms",
        "50",
    ]);
    assert_exit(&out, 0, "maxx top --once --config");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    line_with(
        &stdout(&out),
        &[&format!("http://127.0.0.1:{port}/metrics"), "server clock"],
    );

    // Port 0 cannot be scraped: the operator is told to pass --url.
    let config = dir.write(
        "zero.yaml",
        config_with(&[("  metrics_listen:", "  metrics_listen: \"127.0.0.1:0\"")]),
    );
    let out = run(&["top", "--once", "--config", config.to_str().unwrap()]);
    assert_exit(&out, 1, "maxx top --once with metrics_listen port 0");
    assert!(stderr(&out).contains("pass --url"), "{}", stderr(&out));
}

/// The ticks-per-second column of `venue`'s row in the Feeds panel, when the row says `live`.
fn live_tick_rate(frame: &str, venue: &str) -> Option<f64> {
    let row = frame
        .lines()
        .find(|l| l.trim_start_matches('│').starts_with(&format!("{venue} ")))?;
    let fields: Vec<&str> = row.trim_matches('│').split_whitespace().collect();
    if fields.get(1) != Some(&"live") {
        return None;
    }
    fields
        .iter()
        .find_map(|f| f.strip_suffix("/s"))
        .and_then(|r| r.parse().ok())
}

#[test]
fn end_to_end_against_maxx_run() {
    let dir = TempDir::new("top-e2e");
    let config = dir.write(
        "run.yaml",
        config_with(&[("  metrics_listen:", "  metrics_listen: \"127.0.0.1:0\"")]),
    );
    let mut engine = Running::start(&config);
    let url = engine.metrics_url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The simulator's feed goes live shortly after start: ask until the frame shows it.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = top_once(&url, "300");
        assert_exit(&out, 0, "maxx top --once against maxx run");
        let frame = stdout(&out);
        match live_tick_rate(&frame, "binance") {
            Some(rate) if rate > 0.0 => {
                line_with(&frame, &["rates over", "server clock"]);
                line_with(&frame, &["risk", "ACTIVE"]);
                line_with(&frame, &["kill", "off"]);
                line_with(&frame, &["p50"]);
                break;
            }
            _ => assert!(
                Instant::now() < deadline,
                "the binance feed never showed live with ticks flowing:\n{frame}"
            ),
        }
    }
}

/// `maxx top` (interactive) on a pseudo-terminal it has as its controlling terminal; all it
/// writes is collected. Killed when dropped.
struct Tty {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    /// Copies the pty's output into `output` until the child's end closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Tty {
    fn start(args: &[&str]) -> Tty {
        let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the two fd pointers are valid for writes, the name and termios pointers may be
        // null, and `size` is valid for reads for the duration of the call.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty just opened both descriptors; nothing else owns them.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = maxx();
        cmd.args(args)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls (setsid,
        // ioctl) and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own, with the pty (its stdin) as controlling terminal.
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start maxx top on a pty");
        // The child holds the only copies of the slave now: the reader sees EOF when it exits.
        drop(cmd);
        let master = File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), Arc::clone(&output));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Tty {
            child,
            master,
            output,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// The screen as a terminal would show it after everything written so far: cursor moves
    /// (`ESC [ row ; col H`) and text are applied to a 50 × 120 grid; colours, modes and other
    /// sequences are skipped. A redraw writes only the cells that changed, so a word may arrive
    /// in pieces: only the screen shows it whole.
    fn screen(&self) -> String {
        let (rows, cols) = (50usize, 120usize);
        let mut grid = vec![vec![' '; cols]; rows];
        let (mut r, mut c) = (0usize, 0usize);
        let text = self.text();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '\u{1b}' => {
                    if chars.peek() != Some(&'[') {
                        chars.next();
                        continue;
                    }
                    chars.next();
                    let mut params = String::new();
                    let mut last = ' ';
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            last = p;
                            break;
                        }
                        params.push(p);
                    }
                    match last {
                        'H' | 'f' => {
                            let mut it = params.split(';').map(|n| n.parse::<usize>().unwrap_or(1));
                            r = it.next().unwrap_or(1).saturating_sub(1).min(rows - 1);
                            c = it.next().unwrap_or(1).saturating_sub(1).min(cols - 1);
                        }
                        'J' if params == "2" => grid = vec![vec![' '; cols]; rows],
                        _ => {}
                    }
                }
                '\r' => c = 0,
                '\n' => r = (r + 1).min(rows - 1),
                ch if !ch.is_control() => {
                    if c < cols {
                        grid[r][c] = ch;
                    }
                    c += 1;
                }
                _ => {}
            }
        }
        grid.into_iter()
            .map(|row| row.into_iter().collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the screen shows each of `parts`.
    fn wait_for(&mut self, parts: &[&str]) {
        let deadline = Instant::now() + DEADLINE;
        while !parts.iter().all(|p| self.screen().contains(p)) {
            let exited = self.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "maxx top never showed {parts:?} (exited: {exited:?}); the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `keys`, then waits for the exit; gives its success, what was written and whether
    /// the terminal is back in cooked mode.
    fn quit_with(mut self, keys: &[u8]) -> (bool, String, bool) {
        self.master.write_all(keys).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything it wrote before exiting is read once the pty reports its end.
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("the pty reader");
                }
                return (status.success(), self.text(), self.cooked());
            }
            assert!(
                Instant::now() < deadline,
                "maxx top did not quit on {keys:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the pty is back in canonical mode with echo (raw mode undone).
    fn cooked(&self) -> bool {
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: the master fd is open for the life of `self`; `t` is valid for writes.
        let rc = unsafe { libc::tcgetattr(self.master.as_raw_fd(), &mut t) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Leaves the alternate screen: the terminal is given back.
const LEAVE_ALTERNATE_SCREEN: &str = "\u{1b}[?1049l";

#[test]
fn interactive_shows_the_error_retries_and_quits_restoring_the_terminal() {
    // Nothing listens yet: the frame shows the error, and top keeps going.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut tty = Tty::start(&["top", "--url", &url, "--interval-ms", "100"]);
    tty.wait_for(&["cannot scrape: ", "Connection refused", "(retrying)"]);
    assert!(!tty.cooked(), "raw mode while the dashboard runs");

    // The endpoint comes up: the next scrapes fill the frame.
    let (_, served) = metrics_server_on(port, "200 OK", vec![FIRST, SECOND]);
    tty.wait_for(&[
        "binance",
        "live",
        "ETHUSDT",
        "REDUCING",
        "rates over 2.00 s (server clock)",
    ]);
    assert!(served.load(Ordering::SeqCst) >= 1);

    let (ok, text, cooked) = tty.quit_with(b"q");
    assert!(ok, "q quits with success:\n{text}");
    assert!(cooked, "raw mode is undone");
    assert!(
        text.contains(LEAVE_ALTERNATE_SCREEN),
        "the alternate screen is left:\n{text}"
    );
}

#[test]
fn esc_and_ctrl_c_quit_too() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    for (key, name) in [(&b"\x1b"[..], "Esc"), (&b"\x03"[..], "Ctrl-C")] {
        let mut tty = Tty::start(&["top", "--url", &url, "--interval-ms", "100"]);
        tty.wait_for(&["cannot scrape: "]);
        let (ok, text, cooked) = tty.quit_with(key);
        assert!(cooked, "{name}: raw mode is undone");
        assert!(ok, "{name} quits with success:\n{text}");
        assert!(
            text.contains(LEAVE_ALTERNATE_SCREEN),
            "{name}: the alternate screen is left:\n{text}"
        );
    }
}
