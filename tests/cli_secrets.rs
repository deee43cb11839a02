//! Secrets never leave the process: a `maxx run` with an API token and a Redis password (from
//! the environment) serves, audits, reloads, sweeps and is refused with wrong credentials, and
//! neither its stdout and stderr, nor any HTTP answer, nor `/metrics`, nor any Redis stream it
//! wrote contains the token or the password.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, TOKEN, TempDir, config_with};

const REDIS_PASSWORD: &str = "redis-pw-5e3c7d";
const PASSWORD_ENV: &str = "MAXX_TEST_REDIS_PASSWORD";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A redis-server that requires `REDIS_PASSWORD`.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--requirepass", REDIS_PASSWORD])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install the redis-server package"));
        let url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pong = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection_with_timeout(Duration::from_millis(500))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.as_deref() == Ok("PONG") {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server on {port} never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", self.port))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr`, the raw answer (status line, headers, body).
fn get_raw(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn assert_clean(what: &str, text: &str) {
    for secret in [TOKEN, REDIS_PASSWORD] {
        assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
    }
}

#[test]
fn no_token_or_password_appears_in_logs_answers_metrics_or_streams() {
    let redis = Redis::start();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = TempDir::new("secrets");
    let text = config_with(&[
        ("  wait:", "  wait: park"),
        (
            "  enabled: false               # default false; publish taps",
            "  enabled: true",
        ),
        (
            "  url: \"redis://127.0.0.1:6379\"",
            &format!("  url: \"redis://127.0.0.1:{}\"", redis.port),
        ),
        ("  password_env:", &format!("  password_env: {PASSWORD_ENV}")),
        ("  metrics_listen:", &format!("  metrics_listen: \"{metrics}\"")),
        ("  log_level:", "  log_level: debug"),
    ]);
    let path = dir.write("run.yaml", text);
    let mut run = Running::start_with_env(&path, &[(PASSWORD_ENV, REDIS_PASSWORD)], &[]);
    run.poll("Redis connected", |r| {
        let (s, v) = r.get("/healthz");
        if s == 200 { Ok(()) } else { Err(format!("{s} {v}")) }
    });

    // Accepted and refused control actions, two carrying the token inside their bodies.
    let mut answers = Vec::new();
    let wrong = format!("{TOKEN}-wrong");
    for (path, token, body) in [
        ("/reload", Some(TOKEN), ""),
        ("/reload", Some(wrong.as_str()), ""),
        ("/sweep", Some(TOKEN), r#"{"idempotency_key":"k1"}"#),
        (
            "/sentiment",
            Some(TOKEN),
            &format!(r#"{{"symbol":"{TOKEN}","score":0.1}}"#) as &str,
        ),
        (
            "/risk/state",
            Some(TOKEN),
            &format!(r#"{{"scope":"*","state":"{TOKEN}"}}"#) as &str,
        ),
        ("/govern/reweight", None, ""),
    ] {
        let (status, v) = run.post(path, token, body);
        // An answer may quote back what its caller sent (who knows it already); what is logged,
        // audited and published must not.
        if !body.contains(TOKEN) {
            answers.push(format!("{path} {status} {v}"));
        }
    }
    for path in [
        "/healthz",
        "/pnl",
        "/risk/state",
        "/govern",
        "/openapi.json",
        "/signal/BTCUSDT",
    ] {
        let (status, v) = run.get(path);
        answers.push(format!("{path} {status} {v}"));
    }
    let scrape = run.poll("a metrics scrape", |_| {
        let raw = get_raw(&metrics, "/metrics");
        if raw.starts_with("HTTP/1.1 200") {
            Ok(raw)
        } else {
            Err(raw)
        }
    });
    assert!(scrape.contains("maxx_redis_connected"), "{scrape}");
    let (stdout, stderr) = run.stop_with_output();

    assert!(stderr.contains("audit"), "the control actions were logged:\n{stderr}");
    assert_clean("stdout", &stdout);
    assert_clean("stderr", &stderr);
    assert_clean("the HTTP answers", &answers.join("\n"));
    assert_clean("/metrics", &scrape);
    let mut con = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys.iter().any(|k| k == "audit"), "{keys:?}");
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
        if kind != "stream" {
            continue;
        }
        let entries: redis::Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query(&mut con)
            .unwrap();
        assert_clean(&format!("stream {key}"), &format!("{entries:?}"));
    }
}
