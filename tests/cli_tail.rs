//! `maxx tail` against a private `redis-server`: readable lines per stream kind, garbage shown
//! raw with the reason, live reading from the end, `--count`, reading through a consumer group
//! (and acknowledging), and the URL taken from `--config`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{RedisServer, TempDir, assert_exit, config_with, run, stdout};

const KEY: &str = "019abc12-3456-7def-8123-456789abcdef";
const TS: &str = "1764151200123456789";
const TIME: &str = "2025-11-26T10:00:00.123456Z";

fn xadd(server: &RedisServer, stream: &str, id: &str, fields: &[(&str, &str)]) {
    let mut args = vec!["XADD", stream, id];
    for (k, v) in fields {
        args.push(k);
        args.push(v);
    }
    let reply = server.cmd(&args).expect("redis answers");
    assert!(reply.contains(id), "XADD {stream} {id}: {reply}");
}

fn fill(server: &RedisServer, id: &str, order_id: &str, side: &str, price: &str, fee: &str) {
    xadd(
        server,
        "fills",
        id,
        &[
            ("key", KEY),
            ("ts", TS),
            ("order_id", order_id),
            ("price", price),
            ("fee", fee),
            ("qty", "0.001"),
            ("side", side),
            ("symbol", "BTCUSDT"),
            ("venue", "binance"),
            ("liquidity", "taker"),
        ],
    );
}

fn tail(server: &RedisServer, args: &[&str]) -> Vec<String> {
    let url = server.url();
    let mut all = vec!["tail"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--redis", &url]);
    let out = run(&all);
    assert_exit(&out, 0, &format!("maxx {}", all.join(" ")));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn each_stream_prints_readable_lines_and_garbage_raw() {
    let server = RedisServer::start();
    fill(&server, "1764151200123-0", "42", "buy", "62650.2", "0.046");
    xadd(&server, "fills", "1764151200123-1", &[("hello", "world")]);
    fill(&server, "1764151200123-2", "43", "sell", "62651", "-0.01");
    fill(&server, "1764151200123-3", "44", "sell", "62652", "0");
    assert_eq!(
        tail(&server, &["fills", "--from", "0", "--count", "3"]),
        [
            format!("{TIME} fills order 42 buy 0.001 BTCUSDT @ 62650.2 fee 0.046 binance taker"),
            "fills 1764151200123-1 undecodable: unknown field `hello` | hello=world".to_string(),
            format!("{TIME} fills order 43 sell 0.001 BTCUSDT @ 62651 fee -0.01 binance taker"),
        ],
        "--count 3 stops before the fourth entry"
    );
    // From an id: what follows it.
    assert_eq!(
        tail(&server, &["fills", "--from", "1764151200123-2", "--count", "1"]),
        [format!(
            "{TIME} fills order 44 sell 0.001 BTCUSDT @ 62652 fee 0 binance taker"
        )]
    );

    xadd(
        &server,
        "orders",
        "1764151200123-0",
        &[
            ("key", KEY),
            ("ts", TS),
            ("id", "42"),
            ("symbol", "BTCUSDT"),
            ("qty", "0.001"),
            ("side", "buy"),
            ("venue", "binance"),
            ("type", "limit"),
            ("price", "62650.2"),
            ("tif", "gtc"),
            ("origin", "alpha"),
        ],
    );
    assert_eq!(
        tail(&server, &["orders", "--from", "0", "--count", "1"]),
        [format!(
            "{TIME} orders order 42 buy 0.001 BTCUSDT limit @ 62650.2 gtc binance alpha"
        )]
    );

    xadd(
        &server,
        "ticks:BTCUSDT",
        "1764151200123-0",
        &[
            ("key", KEY),
            ("ts", TS),
            ("price", "62650.2"),
            ("volume", "0.5"),
            ("venue", "bybit"),
            ("recv_ts", TS),
            ("side", "sell"),
            ("seq", "777"),
        ],
    );
    assert_eq!(
        tail(&server, &["ticks:BTCUSDT", "--from", "0", "--count", "1"]),
        [format!(
            "{TIME} ticks:BTCUSDT trade 777 sell 0.5 BTCUSDT @ 62650.2 bybit"
        )]
    );

    xadd(
        &server,
        "signals:BTCUSDT",
        "1764151200123-0",
        &[
            ("key", KEY),
            ("ts", TS),
            ("score", "0.5"),
            ("side", "buy"),
            ("confidence", "0.25"),
        ],
    );
    assert_eq!(
        tail(&server, &["signals:BTCUSDT", "--from", "0", "--count", "1"]),
        [format!("{TIME} signals:BTCUSDT buy score 0.5 confidence 0.25")]
    );

    xadd(
        &server,
        "pnl",
        "1764151200123-0",
        &[
            ("key", KEY),
            ("ts", TS),
            ("equity", "10000.5"),
            ("realized", "-12.34"),
            ("unrealized", "3"),
        ],
    );
    assert_eq!(
        tail(&server, &["pnl", "--from", "0", "--count", "1"]),
        [format!("{TIME} pnl equity 10000.5 realized -12.34 unrealized 3")]
    );

    // A stream without a schema is printed raw.
    xadd(&server, "governor", "5-0", &[("step", "1"), ("weights", "0.25,0.75")]);
    assert_eq!(
        tail(&server, &["governor", "--from", "0", "--count", "1"]),
        ["governor 5-0 step=1 weights=0.25,0.75"]
    );
}

#[test]
fn live_tail_prints_only_entries_added_after_it_started() {
    let server = RedisServer::start();
    fill(&server, "1000-0", "999", "buy", "1", "0");
    let mut child = common::maxx()
        .args(["tail", "fills", "--count", "1", "--redis", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start maxx tail");
    let out = child.stdout.take().expect("piped stdout");
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Entries keep arriving until tail prints one: it started at some point in this sequence.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let line = loop {
        n += 1;
        fill(&server, &format!("2000-{n}"), &n.to_string(), "sell", "2", "0");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            break line;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("maxx tail printed nothing");
        }
    };
    let order: u64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no order id in {line:?}"));
    assert!(
        (1..=n).contains(&order),
        "printed {line:?}, written after start: 1..={n}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "maxx tail --count 1 did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn group_tail_acknowledges_what_it_prints() {
    let server = RedisServer::start();
    fill(&server, "1000-0", "1", "buy", "1", "0");
    fill(&server, "1000-1", "2", "buy", "1", "0");
    let lines = tail(&server, &["fills", "--group", "ops", "--from", "0", "--count", "2"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("order 1 buy") && lines[1].contains("order 2 buy"),
        "{lines:?}"
    );
    // XPENDING summary: nothing pending in the group.
    let pending = server.cmd(&["XPENDING", "fills", "ops"]).expect("redis answers");
    assert!(pending.starts_with("*4\r\n:0\r\n"), "{pending:?}");
    // The group remembers where it is: a second run sees only what is new.
    fill(&server, "1000-2", "3", "buy", "1", "0");
    let lines = tail(&server, &["fills", "--group", "ops", "--count", "1"]);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("order 3 buy"), "{lines:?}");
}

#[test]
fn the_url_comes_from_the_config_and_bad_arguments_are_refused() {
    let server = RedisServer::start();
    fill(&server, "1000-0", "7", "buy", "1", "0");
    let dir = TempDir::new("tail");
    let url_line = format!("  url: \"{}\"", server.url());
    let config = dir.write("c.yaml", config_with(&[("  url: \"redis://", &url_line)]));
    let out = run(&[
        "tail",
        "fills",
        "--from",
        "0",
        "--count",
        "1",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    assert_exit(&out, 0, "tail with --config");
    assert!(stdout(&out).contains("order 7 buy"), "{}", stdout(&out));

    let out = run(&["tail", "fills", "--from", "yesterday"]);
    assert_exit(&out, 2, "bad --from");
    assert!(
        common::stderr(&out).contains("invalid stream entry id"),
        "{}",
        common::stderr(&out)
    );
    let out = run(&["tail", "fills", "--count", "0"]);
    assert_exit(&out, 2, "--count 0");
    let out = run(&["tail", "nope", "--group", "g", "--redis", &server.url()]);
    assert_exit(&out, 1, "group on a stream without a schema");
    assert!(
        common::stderr(&out).contains("has no known schema"),
        "{}",
        common::stderr(&out)
    );
}
