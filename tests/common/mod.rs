//! Helpers shared by the end-to-end tests of the `maxx` binary (`tests/cli_*.rs`): running the
//! binary from the package root, per-test temporary directories, copies of the shipped config
//! with some lines replaced, the shared capture files, and checks on emitted values.
//!
//! Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};

/// The package root: the working directory of every run, so `config/agent_config.yaml` (the
/// binary's default config) resolves.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The shipped config, relative to [`ROOT`].
pub const SHIPPED_CONFIG: &str = "config/agent_config.yaml";

/// A `maxx` command with [`ROOT`] as its working directory.
pub fn maxx() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_maxx"));
    cmd.current_dir(ROOT);
    cmd
}

/// Runs `maxx args...` to completion.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    maxx()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_maxx")))
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Panics with both streams unless the process exited with `code`.
pub fn assert_exit(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// A directory under the system temp dir, unique to one test, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/maxx-<tag>-<pid>-<nanos>-<n>`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("maxx-{tag}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The shipped config's text.
pub fn shipped_config() -> String {
    let p = Path::new(ROOT).join(SHIPPED_CONFIG);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The shipped config with lines replaced: for each `(prefix, line)`, exactly one line of the
/// file must start with `prefix`, and it becomes `line`. Panics otherwise, so a change in the
/// shipped file's layout fails loudly instead of silently testing the defaults.
pub fn config_with(replacements: &[(&str, &str)]) -> String {
    let text = shipped_config();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (prefix, new) in replacements {
        let hits: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with(prefix)).collect();
        assert_eq!(
            hits.len(),
            1,
            "expected exactly one line of {SHIPPED_CONFIG} to start with {prefix:?}, found {}",
            hits.len()
        );
        lines[hits[0]] = (*new).to_string();
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // Tests run side by side: the HTTP API, the gRPC server and the metrics endpoint take any
    // free port unless a test chose one.
    out.replace("listen: \"127.0.0.1:8080\"", "listen: \"127.0.0.1:0\"")
        .replace("listen: \"127.0.0.1:50051\"", "listen: \"127.0.0.1:0\"")
        .replace("metrics_listen: \"127.0.0.1:9100\"", "metrics_listen: \"127.0.0.1:0\"")
}

/// A file under `../shared/data/`, or `None` (with a note on stderr) when it is absent, so the
/// test that needs it can skip.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = Path::new(ROOT).join("../shared/data").join(rel);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: {} is absent", p.display());
        None
    }
}

/// Whether `s` is a canonical decimal as the engine prints money: optional `-`, no leading
/// zeros, no trailing fractional zeros, no exponent, no `-0`.
pub fn is_canonical_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let int_ok = !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) && !f.ends_with('0'));
    let not_negative_zero = !(s.starts_with('-') && body == "0");
    int_ok && frac_ok && not_negative_zero
}

/// Parses one emitted line as a JSON object.
pub fn json_object(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(other) => panic!("not a JSON object: {other} (line {line:?})"),
        Err(e) => panic!("not JSON: {e} (line {line:?})"),
    }
}

/// A string field of an emitted object.
pub fn str_field<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    obj.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("field {key:?} is not a string in {obj:?}"))
}

/// An unsigned integer field of an emitted object.
pub fn u64_field(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> u64 {
    obj.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("field {key:?} is not an unsigned integer in {obj:?}"))
}

/// One HTTP/1.1 request over a fresh loopback connection (`Connection: close`); returns the
/// status and the body parsed as JSON (`Value::Null` for an empty body).
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let payload = if chunked { dechunk(payload) } else { payload.to_string() };
    let json = if payload.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {payload:?}"))
    };
    (status, json)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A private `redis-server` on a free loopback port, persisting nothing; killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers PING. Panics naming the package if the binary is
    /// missing.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install the redis-server package"));
        let server = RedisServer { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while server.cmd(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {port} never answered PING"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs a command through `redis-cli`-free RESP over TCP; returns the raw reply text, or
    /// `None` if the server is not reachable.
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_millis(500))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        // Read until the reply stops growing (the caller only inspects the text).
        loop {
            match s.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        Some(String::from_utf8_lossy(&buf[..got]).trim_end().to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API token the `Running` helper gives `maxx run`.
pub const TOKEN: &str = "test-token-7f3a";
/// How long `Running` waits for anything (long enough for a once-a-minute cron to fire after
/// start-up on a loaded machine).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

/// A `maxx run` child; killed if the test fails.
pub struct Running {
    /// The child process.
    pub child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr_reader: Option<JoinHandle<String>>,
    /// The HTTP API's address.
    pub addr: String,
    /// The gRPC server's address.
    pub grpc: String,
}

impl Running {
    pub fn start(config: &std::path::Path) -> Running {
        Running::start_with_env(config, &[], &[])
    }

    /// The same with `set` added to the child's environment and `unset` removed from it.
    pub fn start_with_env(config: &std::path::Path, set: &[(&str, &str)], unset: &[&str]) -> Running {
        let mut cmd = maxx();
        cmd.args(["run", "--config", config.to_str().expect("utf-8 path")])
            .env("MAXX_API_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in unset {
            cmd.env_remove(var);
        }
        let mut child = cmd.envs(set.iter().copied()).spawn().expect("start maxx run");
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_reader = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }));
        let mut run = Running {
            child,
            lines,
            stdout: Vec::new(),
            stderr_reader,
            addr: String::new(),
            grpc: String::new(),
        };
        let deadline = Instant::now() + DEADLINE;
        while run.addr.is_empty() || run.grpc.is_empty() {
            if let Ok(line) = run.lines.recv_timeout(Duration::from_millis(200)) {
                if let Some(url) = line.strip_prefix("http") {
                    run.addr = url.trim().trim_start_matches("http://").to_string();
                }
                if let Some(url) = line.strip_prefix("grpc") {
                    run.grpc = url.trim().trim_start_matches("grpc://").to_string();
                }
                run.stdout.push(line);
            }
            if let Ok(Some(status)) = run.child.try_wait() {
                run.fail(&format!(
                    "maxx exited ({status}) before the HTTP API and the gRPC server came up"
                ));
            }
            if Instant::now() > deadline {
                run.fail(&format!(
                    "no `{}` line on stdout",
                    if run.addr.is_empty() {
                        "http  http://…"
                    } else {
                        "grpc  grpc://…"
                    }
                ));
            }
        }
        run
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http(&self.addr, "GET", path, None, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        http(&self.addr, "POST", path, token, Some(body))
    }

    /// Polls `cond` until it gives `Ok`, or fails with the last `Err`.
    pub fn poll<T>(&mut self, what: &str, mut cond: impl FnMut(&Running) -> Result<T, String>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen = match cond(self) {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("maxx exited ({status}) while waiting for {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}; last seen: {seen}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// The `/metrics` URL `maxx run` printed (`metrics  http://…/metrics`), reading stdout
    /// further until the line comes; fails if it does not.
    pub fn metrics_url(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(url) = self.stdout.iter().find_map(|l| l.strip_prefix("metrics")) {
                return url.trim().to_string();
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.stdout.push(line);
                continue;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("maxx exited ({status}) before printing its metrics address"));
            }
            if Instant::now() > deadline {
                self.fail("no `metrics  http://…/metrics` line on stdout");
            }
        }
    }

    /// SIGINT, then waits for a clean exit; returns stderr.
    pub fn stop(self) -> String {
        self.stop_with_output().1
    }

    /// SIGINT, then waits for a clean exit; returns all of stdout and stderr.
    pub fn stop_with_output(mut self) -> (String, String) {
        self.signal(libc::SIGINT);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let err = self
                    .stderr_reader
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                assert!(status.success(), "maxx exited with {status}\n{err}");
                self.stdout.extend(self.lines.try_iter());
                return (self.stdout.join("\n"), err);
            }
            assert!(Instant::now() < deadline, "maxx did not stop after SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn fail(&mut self, msg: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout.extend(self.lines.try_iter());
        let err = self
            .stderr_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "{msg}\n--- stdout ---\n{}\n--- stderr ---\n{err}",
            self.stdout.join("\n")
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP server on a free loopback port that stores every request body it receives and
/// answers 200: the receiving end of alert webhooks.
pub fn webhook_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = std::sync::Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut line) = (0usize, String::new());
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_ok() {
                store.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}
