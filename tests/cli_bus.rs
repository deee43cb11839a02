//! End-to-end tests of the Redis Streams bus in `maxx run`, against a private `redis-server`.
//!
//! Covered: a run with `redis.enabled` publishes `ticks:BTCUSDT`, `orders`, `fills` and `pnl`
//! entries that decode with the consumer's schema decoder, with every order and fill the run's
//! summary counts present exactly once; a second run against the same Redis and journal
//! continues the streams above their tops and writes no entry twice; a redis-server SIGKILLed
//! mid-run and restarted (append-only file, fsync always) ends with every order and fill once,
//! in order; a `maxx run` SIGKILLed while Redis is down publishes its journaled orders and
//! fills at the next start, once each.
//!
//! Nothing here sleeps to synchronise: each wait polls a condition with a deadline.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{RedisServer, Running, TOKEN, TempDir, config_with};
use maxx_cold::bus::consume::{EntryId, RawEntry, StreamRecord, TypedEntry, decode};
use maxx_cold::bus::journal::{FsyncPolicy, Journal};
use maxx_cold::portfolio::Books;
use serde_json::Value;

/// What Risk answers before the engine has seen the market.
const NO_MARKET_YET: [&str; 2] = ["no_price", "feed_not_live"];

/// The shipped config with the bus on, publishing to `url`, journaling in `journal`.
fn config(url: &str, journal: &Path) -> String {
    config_with(&[
        ("  wait:", "  wait: park"),
        (
            "  enabled: false               # default false; publish taps",
            "  enabled: true",
        ),
        ("  url: \"redis://127.0.0.1:6379\"", &format!("  url: \"{url}\"")),
        (
            "  journal_dir: null",
            &format!("  journal_dir: \"{}\"", journal.display()),
        ),
        ("  pnl_every_ms:", "  pnl_every_ms: 200"),
    ])
}

/// Every entry of `stream`, oldest first, as Redis holds it.
fn xrange(con: &mut redis::Connection, stream: &str) -> Vec<RawEntry> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(con)
        .unwrap_or_else(|e| panic!("XRANGE {stream}: {e}"));
    let redis::Value::Array(entries) = reply else {
        panic!("XRANGE {stream}: not an array: {reply:?}")
    };
    entries
        .into_iter()
        .map(|e| {
            let redis::Value::Array(mut parts) = e else {
                panic!("XRANGE {stream}: entry is not an array")
            };
            let fields = parts.pop().expect("fields");
            let id: String = redis::from_redis_value(&parts.pop().expect("id")).expect("id text");
            let redis::Value::Array(flat) = fields else {
                panic!("XRANGE {stream}: fields are not an array")
            };
            let flat: Vec<Vec<u8>> = flat
                .iter()
                .map(|v| redis::from_redis_value(v).expect("field bytes"))
                .collect();
            RawEntry {
                id,
                fields: flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect(),
            }
        })
        .collect()
}

/// Every entry of `stream`, decoded with the consumer's schema (the contract); panics naming
/// the first entry that does not follow it.
fn decoded(con: &mut redis::Connection, stream: &str) -> Vec<TypedEntry> {
    xrange(con, stream)
        .iter()
        .map(|raw| decode(stream, raw).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Waits until the Portfolio of `maxx run` (`GET /pnl`) is live and has consumed at least
/// `at_least` fills, then checks that its books equal books recomputed from scratch over the
/// `fills` stream up to the last entry it consumed: it missed nothing and counted nothing twice,
/// whatever the process went through.
fn assert_portfolio_matches_fills(run: &mut Running, url: &str, at_least: usize) -> Value {
    let pnl = run.poll("the Portfolio live with every fill", |r| {
        let (status, body) = r.get("/pnl");
        let applied = body["fills_applied"].as_u64().unwrap_or(0) as usize;
        if status == 200 && body["live"] == true && applied >= at_least {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    });
    let last: EntryId = pnl["fills_last_id"]
        .as_str()
        .expect("fills_last_id")
        .parse()
        .expect("entry id");
    let client = redis::Client::open(url).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");
    let mut books = Books::new();
    for raw in xrange(&mut con, "fills") {
        let id: EntryId = raw.id.parse().expect("entry id");
        if id > last {
            break;
        }
        let typed = decode("fills", &raw).unwrap_or_else(|e| panic!("{e}"));
        let StreamRecord::Fill(fill) = typed.record else {
            panic!("not a fill: {typed:?}")
        };
        assert!(books.apply(id, &fill), "entry {id} applies once");
    }
    let want = serde_json::to_value(books.snapshot()).expect("snapshot json");
    let rows = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("positions")
            .iter()
            .map(|p| {
                serde_json::json!([
                    p["venue"],
                    p["symbol"],
                    p["position"],
                    p["avg_price"],
                    p["realized"],
                    p["fees"],
                    p["fills"]
                ])
            })
            .collect()
    };
    assert_eq!(
        rows(&pnl["positions"]),
        rows(&want["positions"]),
        "GET /pnl positions vs the fills stream:\n{pnl}\n{want}"
    );
    assert_eq!(pnl["realized"], want["totals"]["realized"], "{pnl}");
    assert_eq!(pnl["fees"], want["totals"]["fees"], "{pnl}");
    assert_eq!(pnl["fills_applied"], want["applied"], "{pnl}");
    pnl
}

/// Waits until `GET /healthz` answers `status` and, for a 503, names `failing` among the failing.
fn wait_health(run: &mut Running, status: u16, failing: &str) -> Value {
    run.poll(&format!("/healthz {status} {failing}"), |r| {
        let (s, body) = r.get("/healthz");
        let named = body["failing"]
            .as_array()
            .is_some_and(|f| f.iter().any(|n| n == failing));
        if s == status && (status == 200 || named) {
            Ok(body)
        } else {
            Err(format!("{s} {body}"))
        }
    })
}

/// How long a redis-server may take to come up.
const REDIS_UP: Duration = Duration::from_secs(20);

/// A redis-server that persists every write (append-only file, fsync always) in its own
/// directory, on a port chosen once, so that a SIGKILL loses nothing it acknowledged and a
/// restart on the same port finds the data again.
struct DurableRedis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl DurableRedis {
    /// A free port, with no server on it yet.
    fn reserve(dir: PathBuf) -> DurableRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        std::fs::create_dir_all(&dir).expect("redis data directory");
        DurableRedis { child: None, port, dir }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits until it answers PING.
    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install the redis-server package"));
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("redis url");
        let deadline = Instant::now() + REDIS_UP;
        loop {
            let pong = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.as_deref() == Ok("PONG") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The entries a journal holds not yet acknowledged, read from a copy of its directory (the
/// journal has one owner; the copy has none).
fn journal_pending(dir: &Path, scratch: &Path) -> Vec<maxx_cold::bus::Entry> {
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).expect("scratch directory");
    for item in std::fs::read_dir(dir).expect("journal directory").flatten() {
        std::fs::copy(item.path(), scratch.join(item.file_name())).expect("copy a journal file");
    }
    let (_, pending) = Journal::open(scratch, FsyncPolicy::Never).expect("open the journal copy");
    pending
}

/// `XLEN stream`, 0 when Redis cannot be asked.
fn xlen(url: &str, stream: &str) -> usize {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .and_then(|mut c| redis::cmd("XLEN").arg(stream).query::<usize>(&mut c))
        .unwrap_or(0)
}

/// Posts market orders until `n` have filled at least in part; returns their engine order ids.
fn fill_market_orders(run: &mut Running, tag: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut attempt = 0;
        let id = run.poll(&format!("market order {i} to fill"), |r| {
            attempt += 1;
            let body = format!(
                r#"{{"client_order_id":"{tag}-{i}-{attempt}","symbol":"BTCUSDT","side":"buy","qty":"0.001","type":"market"}}"#
            );
            let (status, v): (u16, Value) = r.post("/order", Some(TOKEN), &body);
            let filled = v["filled_qty"].as_str().is_some_and(|q| q != "0");
            let order_id = v["order_id"]
                .as_u64()
                .or_else(|| v["order_id"].as_str().and_then(|s| s.parse().ok()));
            if status == 200 && filled {
                order_id.ok_or_else(|| format!("no order_id: {v}"))
            } else if status == 200 && NO_MARKET_YET.contains(&v["reject_reason"].as_str().unwrap_or_default()) {
                Err(v.to_string())
            } else if status == 200 {
                Err(format!("not filled: {v}"))
            } else {
                Err(format!("{status}: {v}"))
            }
        });
        ids.push(id);
    }
    ids
}

/// The leading integer of a summary line's value (`fills         3 (0 rejects)` -> 3).
fn summary_count(stdout: &str, label: &str) -> usize {
    let start = stdout
        .find("--- summary")
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    stdout[start..]
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(' ')))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} count in the summary:\n{stdout}"))
}

/// Ids strictly increasing and keys distinct: nothing written twice.
fn assert_once(stream: &str, entries: &[TypedEntry]) {
    let ids: Vec<EntryId> = entries.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{stream}: ids not increasing");
    let keys: BTreeSet<_> = entries.iter().map(|e| e.key).collect();
    assert_eq!(keys.len(), entries.len(), "{stream}: a key appears twice");
}

/// Engine order ids of `orders`, in stream order.
fn order_ids(entries: &[TypedEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| match e.record {
            StreamRecord::Order(o) => o.id,
            other => panic!("not an order: {other:?}"),
        })
        .collect()
}

#[test]
fn a_run_publishes_every_order_and_fill_once_and_a_restart_adds_no_duplicates() {
    let redis = RedisServer::start();
    let dir = TempDir::new("bus-run");
    let journal = dir.path().join("journal");
    let path = dir.write("run.yaml", config(&redis.url(), &journal));
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");

    let mut run = Running::start(&path);
    fill_market_orders(&mut run, "first", 3);
    assert_portfolio_matches_fills(&mut run, &redis.url(), 3);
    run.poll("ticks and pnl entries in Redis", |_| {
        let ticks = redis.cmd(&["XLEN", "ticks:BTCUSDT"]).unwrap_or_default();
        let pnl = redis.cmd(&["XLEN", "pnl"]).unwrap_or_default();
        if ticks.starts_with(":") && ticks != ":0" && pnl.starts_with(":") && pnl != ":0" {
            Ok(())
        } else {
            Err(format!("XLEN ticks:BTCUSDT {ticks}, XLEN pnl {pnl}"))
        }
    });
    let (stdout, stderr) = run.stop_with_output();
    let orders_counted = summary_count(&stdout, "orders");
    let fills_counted = summary_count(&stdout, "fills");
    assert!(stdout.contains("bus           written"), "no bus line:\n{stdout}");
    assert!(
        !stderr.contains("did not take every entry"),
        "the bus drained at shutdown:\n{stderr}"
    );

    let ticks = decoded(&mut con, "ticks:BTCUSDT");
    assert!(!ticks.is_empty());
    assert!(ticks.iter().all(|t| matches!(t.record, StreamRecord::Tick(_))));
    assert_once("ticks:BTCUSDT", &ticks);
    let orders = decoded(&mut con, "orders");
    assert_once("orders", &orders);
    let ids = order_ids(&orders);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "an order id appears twice: {ids:?}"
    );
    assert_eq!(orders.len(), orders_counted, "orders in Redis vs the summary");
    let fills = decoded(&mut con, "fills");
    assert_once("fills", &fills);
    assert_eq!(fills.len(), fills_counted, "fills in Redis vs the summary");
    assert!(fills.len() >= 3, "at least the three market orders filled");
    let known: BTreeSet<u64> = ids.iter().copied().collect();
    for f in &fills {
        let StreamRecord::Fill(fill) = f.record else {
            panic!("not a fill: {f:?}")
        };
        assert!(
            known.contains(&fill.order_id),
            "fill of an unknown order {}",
            fill.order_id
        );
    }
    let pnl = decoded(&mut con, "pnl");
    assert!(!pnl.is_empty());
    assert!(pnl.iter().all(|p| matches!(p.record, StreamRecord::Pnl(_))));
    assert_once("pnl", &pnl);

    // A second run on the same Redis and journal: the streams continue above their tops and
    // nothing of the first run is written again.
    let mut run = Running::start(&path);
    // The Portfolio rebuilds the first run's books from `fills` before it goes live.
    assert_portfolio_matches_fills(&mut run, &redis.url(), fills.len());
    fill_market_orders(&mut run, "second", 1);
    assert_portfolio_matches_fills(&mut run, &redis.url(), fills.len() + 1);
    let (stdout, _) = run.stop_with_output();
    let orders_second = summary_count(&stdout, "orders");
    let fills_second = summary_count(&stdout, "fills");
    let orders_after = decoded(&mut con, "orders");
    assert_once("orders", &orders_after);
    assert_eq!(
        &orders_after[..orders.len()],
        &orders[..],
        "the first run's orders are untouched"
    );
    assert_eq!(orders_after.len(), orders.len() + orders_second);
    let fills_after = decoded(&mut con, "fills");
    assert_once("fills", &fills_after);
    assert_eq!(fills_after.len(), fills.len() + fills_second);
    assert_once("pnl", &decoded(&mut con, "pnl"));
    assert_once("ticks:BTCUSDT", &decoded(&mut con, "ticks:BTCUSDT"));
}

#[test]
fn redis_killed_mid_run_and_restarted_ends_with_every_order_and_fill_once_in_order() {
    let dir = TempDir::new("bus-redis-kill");
    let mut redis = DurableRedis::reserve(dir.path().join("redis"));
    redis.start();
    let path = dir.write("run.yaml", config(&redis.url(), &dir.path().join("journal")));
    let mut run = Running::start(&path);
    wait_health(&mut run, 200, "");
    let before = fill_market_orders(&mut run, "up", 2);
    run.poll("the first orders in Redis", |_| {
        let n = xlen(&redis.url(), "orders");
        if n >= before.len() {
            Ok(())
        } else {
            Err(format!("XLEN orders {n}"))
        }
    });

    redis.kill();
    // /healthz turns 503 naming Redis (and the Portfolio, which reads from it); /livez stays 200.
    let body = wait_health(&mut run, 503, "redis");
    assert!(
        body["checks"]["redis"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not connected")),
        "{body}"
    );
    assert_eq!(run.get("/livez").0, 200);
    // Orders and fills while Redis is down wait in the publisher (and the journal).
    let during = fill_market_orders(&mut run, "down", 2);
    redis.start();
    let after = fill_market_orders(&mut run, "back", 1);
    wait_health(&mut run, 200, "");
    let want = before.len() + during.len() + after.len();
    run.poll("every order in Redis after the restart", |_| {
        let n = xlen(&redis.url(), "orders");
        if n >= want {
            Ok(())
        } else {
            Err(format!("XLEN orders {n}, want at least {want}"))
        }
    });
    // The Portfolio went through CrashLoopBackoff while Redis was gone and rebuilt after it.
    assert_portfolio_matches_fills(&mut run, &redis.url(), want);
    let (stdout, _) = run.stop_with_output();

    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");
    let orders = decoded(&mut con, "orders");
    assert_once("orders", &orders);
    assert_eq!(
        orders.len(),
        summary_count(&stdout, "orders"),
        "orders in Redis vs the summary"
    );
    let ids = order_ids(&orders);
    // One run gives increasing order ids: the stream holds them in the order they were sent.
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "orders out of order: {ids:?}");
    for id in before.iter().chain(&during).chain(&after) {
        assert!(ids.contains(id), "order {id} missing from {ids:?}");
    }
    let fills = decoded(&mut con, "fills");
    assert_once("fills", &fills);
    assert_eq!(
        fills.len(),
        summary_count(&stdout, "fills"),
        "fills in Redis vs the summary"
    );
    // Each market order was acknowledged filled before the next was sent: their fills must
    // come in that order.
    let ours: Vec<u64> = before.iter().chain(&during).chain(&after).copied().collect();
    let mut seen = Vec::new();
    for f in &fills {
        let StreamRecord::Fill(fill) = f.record else {
            panic!("not a fill: {f:?}")
        };
        if ours.contains(&fill.order_id) && seen.last() != Some(&fill.order_id) {
            seen.push(fill.order_id);
        }
    }
    assert_eq!(
        seen, ours,
        "fills of the market orders, in the order the orders were sent"
    );
    assert_once("pnl", &decoded(&mut con, "pnl"));
}

#[test]
fn a_run_killed_while_redis_is_down_publishes_its_journal_at_the_next_start_once() {
    let dir = TempDir::new("bus-engine-kill");
    let journal = dir.path().join("journal");
    let mut redis = DurableRedis::reserve(dir.path().join("redis"));
    let path = dir.write("run.yaml", config(&redis.url(), &journal));

    // No Redis yet: orders, fills and pnl can only reach the journal.
    let mut run = Running::start(&path);
    let first = fill_market_orders(&mut run, "dark", 3);
    let scratch = dir.path().join("journal-copy");
    run.poll("the fills in the journal", |_| {
        let pending = journal_pending(&journal, &scratch);
        let fills = pending.iter().filter(|e| e.stream == "fills").count();
        if fills >= first.len() {
            Ok(())
        } else {
            Err(format!("{fills} fills journaled"))
        }
    });
    let _ = run.child.kill();
    let _ = run.child.wait();
    drop(run);
    let pending = journal_pending(&journal, &scratch);
    let keys = |stream: &str| -> Vec<String> {
        pending
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| {
                e.fields
                    .iter()
                    .find(|(k, _)| k == "key")
                    .expect("a key field")
                    .1
                    .clone()
            })
            .collect()
    };
    let (journaled_orders, journaled_fills) = (keys("orders"), keys("fills"));
    assert!(journaled_orders.len() >= first.len());

    redis.start();
    let mut run = Running::start(&path);
    fill_market_orders(&mut run, "lit", 1);
    let (stdout, _) = run.stop_with_output();

    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");
    for (stream, journaled, counted) in [
        ("orders", &journaled_orders, summary_count(&stdout, "orders")),
        ("fills", &journaled_fills, summary_count(&stdout, "fills")),
    ] {
        let entries = decoded(&mut con, stream);
        assert_once(stream, &entries);
        assert_eq!(
            entries.len(),
            journaled.len() + counted,
            "{stream}: the journal's entries, then the second run's"
        );
        let head: Vec<String> = entries[..journaled.len()].iter().map(|e| e.key.to_string()).collect();
        assert_eq!(&head, journaled, "{stream}: the journal's entries come first, in order");
    }
    assert_once("pnl", &decoded(&mut con, "pnl"));
}

/// `XADD fills <id> …` of one fill, written as the engine writes them.
fn seed_fill(redis: &RedisServer, id: &str, side: &str, price: &str, qty: &str) {
    let ts = format!("{}", id.split('-').next().unwrap().parse::<u64>().unwrap() * 1_000_000);
    let reply = redis.cmd(&[
        "XADD",
        "fills",
        id,
        "key",
        "019abc12-3456-7def-8123-456789abcdef",
        "ts",
        &ts,
        "order_id",
        "1",
        "price",
        price,
        "fee",
        "0",
        "qty",
        qty,
        "side",
        side,
        "symbol",
        "BTCUSDT",
        "venue",
        "binance",
        "liquidity",
        "maker",
    ]);
    assert!(
        reply.as_deref().is_some_and(|r| r.contains(id)),
        "XADD fills {id}: {reply:?}"
    );
}

#[test]
fn the_lockbox_is_swept_once_per_key_and_the_payout_survives_a_restart() {
    let redis = RedisServer::start();
    // A profitable round trip from an earlier life of the engine: 1 BTC bought at 60 000 and
    // sold at 61 000. The Portfolio rebuilds it at start: 20 % of the 1 000 goes to the lock-box.
    seed_fill(&redis, "1000-0", "buy", "60000", "1");
    seed_fill(&redis, "1001-0", "sell", "61000", "1");
    let dir = TempDir::new("bus-sweep");
    let path = dir.write("run.yaml", config(&redis.url(), &dir.path().join("journal")));
    let mut run = Running::start(&path);
    let pnl = run.poll("the rebuilt lock-box", |r| {
        let (status, v) = r.get("/pnl");
        if status == 200 && v["live"] == true && v["lockbox"]["total_in"] == "200" {
            Ok(v)
        } else {
            Err(format!("{status} {v}"))
        }
    });
    // The engine may trade meanwhile; whatever the lock-box holds now is what a sweep pays.
    assert!(pnl["lockbox"]["balance"].as_str().is_some_and(|b| b != "0"), "{pnl}");

    // Without a token: refused, nothing paid.
    let (status, _) = run.post("/sweep", None, r#"{"idempotency_key":"day-1"}"#);
    assert_eq!(status, 401);
    let (status, v) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":""}"#);
    assert_eq!(status, 400, "{v}");
    let (status, v) = run.post("/sweep", Some(TOKEN), r#"{"key":"day-1"}"#);
    assert_eq!(status, 400, "{v}");

    let (status, first) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":"day-1"}"#);
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (first["swept"].as_bool(), first["repeated"].as_bool()),
        (Some(true), Some(false)),
        "{first}"
    );
    let payout = first["payout"].clone();
    assert_eq!(payout["currency"], "USDT");
    assert_eq!(payout["key"], "day-1");
    let amount = payout["amount"].as_str().unwrap().to_string();
    // The lock-box only grows until it is paid: at least the 200 of the seeded round trip.
    let exact: maxx_hot::num::Money = amount.parse().unwrap();
    assert!(exact >= "200".parse().unwrap(), "{first}");

    // The same key again: the same payout, nothing paid twice; another key: the box is empty.
    let (status, again) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":"day-1"}"#);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["swept"].as_bool(), again["repeated"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(again["payout"], payout);
    let (status, empty) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":"day-2"}"#);
    assert_eq!(status, 200, "{empty}");
    let swept_again = empty["swept"].as_bool() == Some(true);
    if !swept_again {
        assert!(empty["message"].as_str().unwrap().contains("empty"), "{empty}");
    }

    // The payout is on the ledger stream, once.
    run.poll("the payout in Redis", |_| {
        let n = xlen(&redis.url(), "payouts");
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("XLEN payouts {n}"))
        }
    });
    let before = run.get("/pnl").1;
    let _ = run.stop_with_output();
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");
    let ledger = xrange(&mut con, "payouts");
    assert_eq!(ledger.len(), if swept_again { 2 } else { 1 });
    let first_entry = maxx_cold::portfolio::decode_payout(&ledger[0]).unwrap();
    assert_eq!(
        (first_entry.key.as_str(), first_entry.amount.to_string()),
        ("day-1", amount.clone())
    );

    // A restart rebuilds the same ledger and lock-box; the key still answers the same payout.
    let mut run = Running::start(&path);
    let after = run.poll("the rebuilt payouts", |r| {
        let (status, v) = r.get("/pnl");
        if status == 200 && v["live"] == true {
            Ok(v)
        } else {
            Err(format!("{status} {v}"))
        }
    });
    assert_eq!(after["payouts"], before["payouts"], "{after}");
    assert_eq!(after["lockbox"]["paid"], before["lockbox"]["paid"]);
    let (status, again) = run.post("/sweep", Some(TOKEN), r#"{"idempotency_key":"day-1"}"#);
    assert_eq!(status, 200);
    assert_eq!(again["payout"], payout);
    assert_eq!(again["repeated"], true);
    let _ = run.stop();
    assert_eq!(xlen(&redis.url(), "payouts"), ledger.len(), "no payout written twice");
}
