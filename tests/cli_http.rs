//! End-to-end tests of the HTTP API's operator surface of `maxx run`, over raw HTTP/1.1 on
//! loopback: the auth matrix of every mutating endpoint (enumerated from `GET /openapi.json`,
//! whose routes are probed against the server), JSON errors for malformed, mistyped, oversized
//! and wrongly typed bodies and for wrong methods, the mutating endpoints' rate limit, and the
//! audit of every control action on the log and on the Redis stream `audit` of a private
//! `redis-server`, with the token never written anywhere.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{RedisServer, Running, TOKEN, TempDir, config_with};
use serde_json::{Value, json};

/// `maxx_cold::http::RATE_BURST`: the mutating endpoints' burst.
const BURST: usize = maxx_cold::http::RATE_BURST as usize;
/// `maxx_cold::http::BODY_LIMIT`.
const BODY_LIMIT: usize = maxx_cold::http::BODY_LIMIT;

fn config() -> String {
    config_with(&[("  wait:", "  wait: park")])
}

/// One answer: status, headers (names lower case) and the body as JSON.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error in {self:?}"))
    }
}

/// A request with `headers` verbatim (`Name: value` lines) and `body`.
fn raw(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: maxx\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req
}

/// Reads one response off `r` (Content-Length or chunked body).
fn read_reply(r: &mut impl BufRead) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = get("content-length") {
        body.resize(n.parse().expect("content-length"), 0);
        r.read_exact(&mut body).expect("body");
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "status {status}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        })
    };
    Reply { status, headers, body }
}

/// Sends `request` on a fresh connection and reads the answer.
fn send(addr: &str, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    // The server may answer (413, 401) and close before reading all of a large body.
    let _ = s.write_all(request);
    read_reply(&mut BufReader::new(s))
}

fn call(run: &Running, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
    send(&run.addr, raw(method, path, headers, body).as_bytes())
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn authorized(run: &Running, path: &str, body: &str) -> Reply {
    let auth = bearer();
    call(run, "POST", path, &[&auth, "Content-Type: application/json"], body)
}

/// A body each mutating endpoint would act on, were it authorized.
fn acting_body(path: &str) -> String {
    match path {
        "/sentiment" => r#"{"symbol":"BTCUSDT","score":0.9}"#.into(),
        "/govern/reweight" => r#"{"weights":{"momentum":0.1,"mean_rev":0.1,"breakout":0.1,"sentiment":0.7}}"#.into(),
        "/risk/state" => r#"{"scope":"*","state":"halted"}"#.into(),
        "/risk/trim" => r#"{"fraction":1}"#.into(),
        "/order" => json!({
            "client_order_id": "noauth-1", "symbol": "BTCUSDT", "side": "buy",
            "qty": "0.001", "type": "market",
        })
        .to_string(),
        "/cancel" => r#"{"client_order_id":"noauth-1"}"#.into(),
        _ => String::new(),
    }
}

/// `(method, path)` of every operation in the OpenAPI document.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

/// What an unauthorized caller must never change.
fn observable(run: &Running) -> Value {
    let (s, risk) = run.get("/risk/state");
    assert_eq!(s, 200, "{risk}");
    let (s, govern) = run.get("/govern");
    assert_eq!(s, 200, "{govern}");
    let operator_transitions: Vec<&Value> = risk["transitions"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["reason"] == "operator").collect())
        .unwrap_or_default();
    json!({
        "killed": risk["system"]["killed"],
        "kill_switch_tripped": risk["system"]["kill_switch_tripped"],
        "saved_halts": risk["system"]["saved_halts"],
        "operator_transitions": operator_transitions,
        "weights": govern["weights"],
        "applied": govern["applied"],
    })
}

#[test]
fn every_mutating_endpoint_refuses_bad_credentials_and_every_rejection_is_json() {
    let dir = TempDir::new("http-auth");
    let path = dir.write("run.yaml", config());
    let run = Running::start(&path);

    // The document lists every route, and the server serves exactly those methods on them.
    let doc = call(&run, "GET", "/openapi.json", &[], "");
    assert_eq!(doc.status, 200, "{doc:?}");
    assert_eq!(doc.body["openapi"], "3.1.0");
    let ops = operations(&doc.body);
    for (method, path) in &ops {
        let concrete = path.replace("{symbol}", "BTCUSDT");
        let r = call(&run, method, &concrete, &[], "");
        assert!(
            ![404, 405].contains(&r.status)
                || (path.contains("{symbol}") && r.status == 404 && r.error().contains("no signal")),
            "{method} {path} is documented but answers {r:?}"
        );
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if ops.iter().any(|(m, p)| m == other && p == path) {
                continue;
            }
            let r = call(&run, other, &concrete, &[], "");
            assert_eq!(r.status, 405, "{other} {path} is not documented: {r:?}");
            assert!(r.error().contains("not allowed"), "{r:?}");
            assert!(r.header("allow").is_some(), "{other} {path}: no Allow header: {r:?}");
        }
    }
    let mutating: Vec<String> = ops
        .iter()
        .filter(|(m, _)| m == "POST")
        .map(|(_, p)| p.clone())
        .collect();
    for expected in [
        "/sentiment",
        "/govern/reweight",
        "/reload",
        "/risk/state",
        "/risk/trim",
        "/risk/kill",
        "/risk/resume",
        "/order",
        "/cancel",
    ] {
        assert!(
            mutating.iter().any(|p| p == expected),
            "{expected} missing from {mutating:?}"
        );
    }

    // The auth matrix: no header, a wrong token, other schemes, an empty bearer.
    let before = observable(&run);
    let wrong = format!("Authorization: Bearer {TOKEN}x");
    let short = format!("Authorization: Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let lower = format!("Authorization: bearer{TOKEN}");
    let credentials: [&[&str]; 7] = [
        &[],
        &[&wrong],
        &[&short],
        &["Authorization: Basic dGVzdDp0ZXN0"],
        &["Authorization: Bearer"],
        &["Authorization: Bearer    "],
        &[&lower],
    ];
    for path in &mutating {
        let body = acting_body(path);
        for creds in credentials {
            let mut headers = creds.to_vec();
            headers.push("Content-Type: application/json");
            let r = call(&run, "POST", path, &headers, &body);
            assert_eq!(r.status, 401, "POST {path} with {creds:?}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "POST {path}: {r:?}");
            assert!(!r.error().is_empty(), "{r:?}");
            assert!(!r.error().contains(TOKEN), "the refusal echoes no token: {r:?}");
        }
    }
    assert_eq!(observable(&run), before, "refused calls changed nothing");
    // The refused order was never entered: cancelling it finds nothing.
    let r = authorized(&run, "/cancel", r#"{"client_order_id":"noauth-1"}"#);
    assert_eq!((r.status, r.body["code"].as_str()), (404, Some("not_found")), "{r:?}");

    // Body problems: 400 with a clear message, after auth, and nothing applied.
    let bad: &[(&str, &str, &str)] = &[
        ("/sentiment", "{not json", "invalid JSON"),
        ("/sentiment", "[1,2]", "JSON object"),
        ("/sentiment", r#"{"symbol":1,"score":0.5}"#, "symbol: expected a string"),
        ("/sentiment", r#"{"symbol":"BTCUSDT","score":"high"}"#, "score"),
        ("/sentiment", r#"{"symbol":"BTCUSDT"}"#, "score: required"),
        ("/govern/reweight", "{\"weights\":", "invalid JSON"),
        (
            "/govern/reweight",
            r#"{"weights":[0.25]}"#,
            "weights: expected an object",
        ),
        ("/risk/state", r#"{"scope":"*","state":7}"#, "state: expected a string"),
        ("/risk/state", r#"{"scope":"*"}"#, "state: required"),
        ("/risk/trim", "{}", "fraction: required"),
        ("/risk/trim", r#"{"fraction":true}"#, "fraction: expected a number"),
        ("/order", "{not json", "invalid JSON"),
        ("/cancel", r#"{"order_id":-1}"#, "order_id"),
        ("/risk/kill", r#"{"really":true}"#, "takes no body"),
        ("/risk/kill", "{not json", "takes no body"),
        ("/risk/resume", "please", "takes no body"),
        ("/reload", "[]", "takes no body"),
    ];
    for (path, body, needle) in bad {
        let r = authorized(&run, path, body);
        assert_eq!(r.status, 400, "POST {path} {body}: {r:?}");
        assert!(
            r.error().contains(needle),
            "POST {path} {body}: {needle:?} not in {r:?}"
        );
    }
    // Bodyless endpoints take nothing or {} (a refused kill tripped nothing above).
    assert_eq!(observable(&run), before, "bad bodies changed nothing");

    // A body that is not JSON by its declared type: 415.
    let auth = bearer();
    let r = call(
        &run,
        "POST",
        "/sentiment",
        &[&auth, "Content-Type: text/plain"],
        r#"{"symbol":"BTCUSDT","score":0.1}"#,
    );
    assert_eq!(r.status, 415, "{r:?}");
    assert!(r.error().contains("application/json"), "{r:?}");
    // curl's -d default is read as JSON, as the README's examples send it.
    let r = call(
        &run,
        "POST",
        "/risk/trim",
        &[&auth, "Content-Type: application/x-www-form-urlencoded"],
        "{}",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.error().contains("fraction: required"), "{r:?}");

    // Oversized bodies: 413, declared or streamed, and nothing applied.
    let big = format!(
        r#"{{"symbol":"BTCUSDT","score":0.9,"pad":"{}"}}"#,
        "x".repeat(BODY_LIMIT)
    );
    for path in ["/sentiment", "/risk/state", "/risk/kill", "/govern/reweight"] {
        let r = authorized(&run, path, &big);
        assert_eq!(r.status, 413, "POST {path}: {r:?}");
        assert!(r.error().contains("larger than"), "{r:?}");
    }
    let mut chunked = format!(
        "POST /risk/kill HTTP/1.1\r\nHost: maxx\r\n{auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..(BODY_LIMIT / 4096 + 2) {
        chunked.push_str(&format!("1000\r\n{}\r\n", " ".repeat(4096)));
    }
    chunked.push_str("0\r\n\r\n");
    let r = send(&run.addr, chunked.as_bytes());
    assert_eq!(r.status, 413, "chunked: {r:?}");
    assert_eq!(observable(&run), before, "oversized bodies changed nothing");

    // Unknown routes and wrong methods: JSON too.
    let r = call(&run, "GET", "/nope", &[], "");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.error().contains("no such endpoint"), "{r:?}");
    let r = call(&run, "GET", "/risk/kill", &[], "");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "{r:?}");
    let r = call(&run, "DELETE", "/order", &[&auth], "");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.error().contains("DELETE"), "{r:?}");

    // And the right token still works: a kill with no body, then with {}.
    let r = authorized(&run, "/risk/kill", "");
    assert_eq!((r.status, &r.body["killed"]), (200, &json!(true)), "{r:?}");
    let r = authorized(&run, "/risk/resume", "{}");
    assert_eq!(r.status, 200, "{r:?}");
    let _ = run.stop();
}

#[test]
fn the_mutating_endpoints_refuse_beyond_their_burst_and_the_kill_switch_still_works() {
    let dir = TempDir::new("http-rate");
    let path = dir.write("run.yaml", config());
    let mut run = Running::start(&path);

    // Authorized requests that fail validation after the guard: each takes a token and
    // applies nothing. They are pipelined on one connection, so they reach the server in order.
    let one = raw(
        "POST",
        "/sentiment",
        &[&bearer(), "Content-Type: application/json"],
        "{}",
    );
    let mut s = TcpStream::connect(&run.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut reader = BufReader::new(s.try_clone().expect("clone"));
    let mut statuses = Vec::new();
    let mut limited = None;
    // The bucket refills at RATE_PER_SEC; pipelined requests come far faster, so a 429 comes
    // soon after the burst (the bound only stops a broken limiter from looping for ever).
    while limited.is_none() && statuses.len() < 50 * BURST {
        s.write_all(one.repeat(50).as_bytes()).expect("send batch");
        for _ in 0..50 {
            let r = read_reply(&mut reader);
            statuses.push(r.status);
            if r.status == 429 && limited.is_none() {
                limited = Some(r);
            }
        }
    }
    let Some(limited) = limited else {
        run.fail(&format!("no 429 after {} requests", statuses.len()));
    };
    assert!(
        statuses[..BURST].iter().all(|&s| s == 400),
        "the burst passes the limiter (and fails validation): {:?}",
        &statuses[..BURST]
    );
    assert!(statuses.iter().all(|&s| s == 400 || s == 429), "{statuses:?}");
    assert!(limited.error().contains("rate limit"), "{limited:?}");
    assert_eq!(limited.body["code"], "resource_exhausted", "{limited:?}");
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {limited:?}"));
    assert!(retry >= 1, "{limited:?}");

    // Reads are not limited, and neither is the kill switch.
    let r = call(&run, "GET", "/risk/state", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = authorized(&run, "/risk/kill", "");
    assert_eq!((r.status, &r.body["killed"]), (200, &json!(true)), "{r:?}");
    let _ = run.stop();
}

#[test]
fn every_control_action_is_audited_on_the_log_and_the_redis_stream_without_the_token() {
    let redis = RedisServer::start();
    let dir = TempDir::new("http-audit");
    let enabled = "  enabled: false               # default false; publish taps to Redis Streams";
    let text = config()
        .replace(enabled, "  enabled: true")
        .replace("url: \"redis://127.0.0.1:6379\"", &format!("url: \"{}\"", redis.url()));
    let path = dir.write("run.yaml", text);
    let mut run = Running::start(&path);

    let wrong = format!("Authorization: Bearer {TOKEN}-wrong");
    let r = call(&run, "POST", "/risk/kill", &[&wrong], "");
    assert_eq!(r.status, 401, "{r:?}");
    let r = authorized(&run, "/sentiment", r#"{"symbol":"BTCUSDT","score":0.25}"#);
    assert_eq!(r.status, 200, "{r:?}");
    // A caller who echoes the token in a body does not get it into the audit either.
    let r = authorized(&run, "/risk/trim", &format!(r#"{{"{TOKEN}":1}}"#));
    assert_eq!(r.status, 400, "{r:?}");

    let entries = run.poll("three entries on the audit stream", |_| {
        let text = redis.cmd(&["XRANGE", "audit", "-", "+"]).unwrap_or_default();
        if text.matches("endpoint").count() >= 3 {
            Ok(text)
        } else {
            Err(text)
        }
    });
    // RESP text: each entry's fields in order, so the statuses follow their endpoints.
    let values: Vec<&str> = entries.lines().filter(|l| !l.starts_with(['*', '$'])).collect();
    let field = |name: &str| -> Vec<&str> { values.windows(2).filter(|w| w[0] == name).map(|w| w[1]).collect() };
    assert_eq!(
        field("endpoint"),
        ["POST /risk/kill", "POST /sentiment", "POST /risk/trim"],
        "{entries}"
    );
    assert_eq!(field("status"), ["401", "200", "400"], "{entries}");
    assert!(field("remote").iter().all(|r| r.starts_with("127.0.0.1:")), "{entries}");
    assert_eq!(field("ts").len(), 3, "{entries}");
    let details = field("detail");
    assert!(details[0].contains("invalid bearer token"), "{entries}");
    assert!(details[1].contains("accepted"), "{entries}");
    assert!(!entries.contains(TOKEN), "the audit stream holds the token: {entries}");

    let (stdout, stderr) = run.stop_with_output();
    let audit_lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["msg"] == "audit")
        .collect();
    let seen: Vec<(String, u64)> = audit_lines
        .iter()
        .map(|v| {
            assert_eq!(v["level"], "info", "{v}");
            assert!(v["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{v}");
            assert!(v["detail"].is_string(), "{v}");
            (
                v["endpoint"].as_str().unwrap_or_default().to_string(),
                v["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("POST /risk/kill".to_string(), 401),
            ("POST /sentiment".to_string(), 200),
            ("POST /risk/trim".to_string(), 400)
        ],
        "{stderr}"
    );
    assert!(!stdout.contains(TOKEN), "stdout holds the token");
    assert!(!stderr.contains(TOKEN), "stderr holds the token");
}
