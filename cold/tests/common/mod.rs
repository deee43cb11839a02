//! Helpers shared by the cold crate's integration tests: a private `redis-server`.
//!
//! Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a [`RedisServer`] is started beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// Extra command-line arguments, e.g. `["--replicaof", "127.0.0.1", "6379"]`.
    pub args: Vec<String>,
    /// `--requirepass`; [`RedisServer::cmd`] then authenticates first.
    pub password: Option<String>,
    /// Serve TLS only (`--port 0 --tls-port <port>`) with this certificate.
    pub tls: Option<TlsFiles>,
    /// Persist every write before replying (`--appendonly yes --appendfsync always`) in this
    /// directory, so a SIGKILL loses nothing acknowledged and a restart finds the data again.
    pub durable_dir: Option<PathBuf>,
}

/// A self-signed certificate for `127.0.0.1` and `localhost` and its key, as PEM files in a
/// fresh directory; the certificate is its own CA.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The directory holding both files.
    pub dir: PathBuf,
    /// The certificate, PEM; also the CA file clients trust.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Generates a certificate and key with rcgen and writes them to a new temporary directory.
    pub fn generate() -> TlsFiles {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("rcgen");
        let dir = std::env::temp_dir().join(format!(
            "maxx-redis-tls-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("tls dir");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
        TlsFiles { dir, cert, key }
    }
}

/// A private `redis-server` on a free loopback port, persisting nothing; killed on drop. It can
/// be SIGKILLed and restarted on the same port, to test outages, and paused with SIGSTOP.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port (the TLS port for a TLS server).
    pub port: u16,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts one and waits until it answers PING. Panics naming the package if the binary is
    /// missing.
    pub fn start() -> RedisServer {
        Self::start_with(RedisOptions::default())
    }

    /// Starts one with `options` and waits until it is up (answers PING, or for TLS accepts
    /// connections).
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            options,
        };
        server.restart();
        server
    }

    /// A server that persists every write before replying, in a fresh directory removed when
    /// it is dropped ([`RedisOptions::durable_dir`]).
    pub fn start_durable() -> RedisServer {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("maxx-redis-aof-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis data directory");
        Self::start_with(RedisOptions {
            durable_dir: Some(dir),
            ..RedisOptions::default()
        })
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` for a TLS server; no password.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("server running");
        let ok = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// SIGKILLs the server (no shutdown, nothing saved) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted) and waits until
    /// it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let mut args: Vec<String> = match &self.options.tls {
            None => vec!["--port".into(), port],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        args.extend(
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
                .iter()
                .map(|a| a.to_string()),
        );
        if let Some(p) = &self.options.password {
            args.extend(["--requirepass".to_string(), p.clone()]);
        }
        if let Some(dir) = &self.options.durable_dir {
            // Later arguments win over the `--appendonly no` above.
            args.extend(["--appendonly", "yes", "--appendfsync", "always", "--dir"].map(String::from));
            args.push(dir.display().to_string());
        }
        args.extend(self.options.args.iter().cloned());
        let child = Command::new("redis-server")
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): install the redis-server package"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let up = |s: &Self| match &s.options.tls {
            // The TLS port speaks TLS only; listening is as far as a plain socket can tell.
            Some(_) => TcpStream::connect(("127.0.0.1", s.port)).is_ok(),
            None => s.cmd(&["PING"]).as_deref() == Some("+PONG"),
        };
        while !up(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command as RESP over a fresh connection (after `AUTH` when the server has a
    /// password); returns the raw reply text (read until the server pauses for 500 ms), or
    /// `None` if the server is not reachable. Plain TCP only, so `None` for a TLS server. Slow
    /// by design: for PING and one-off checks; tests read streams with the `redis` crate.
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        if self.options.tls.is_some() {
            return None;
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        let resp = |args: &[&str]| {
            let mut req = format!("*{}\r\n", args.len());
            for a in args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            req
        };
        let mut req = String::new();
        if let Some(p) = &self.options.password {
            req.push_str(&resp(&["AUTH", p]));
        }
        req.push_str(&resp(args));
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match s.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
            if got == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let text = String::from_utf8_lossy(&buf[..got]).trim_end().to_string();
        match &self.options.password {
            Some(_) => Some(text.strip_prefix("+OK\r\n").unwrap_or(&text).to_string()),
            None => Some(text),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(tls) = &self.options.tls {
            let _ = std::fs::remove_dir_all(&tls.dir);
        }
        if let Some(dir) = &self.options.durable_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
