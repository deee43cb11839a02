//! A non-blocking WebSocket client for feed threads: mio sockets, tungstenite framing.
//!
//! [`WsFeed`] is a [`FrameSource`]: each call to `next` does at most one non-blocking step
//! (start a connect, advance the handshake, or read one message) and never waits. It reconnects
//! by itself with exponential backoff (`market_data.retry_backoff_ms` doubling up to a cap, with
//! deterministic jitter), treats a connection that has been silent for `stale_after` as dead,
//! answers pings (tungstenite queues the pong; the next read flushes it), and sends the venue's
//! subscribe messages after every connect.
//!
//! Host names are resolved by the caller before the feed thread starts: the hot thread makes no
//! DNS lookups. TLS (`wss://`) arrives with the MarketData issue.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::MidHandshake;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, Message, WebSocket};

use crate::clock::{mono_ns, wall_ns};
use crate::feed::{FrameMeta, MAX_FRAME_BYTES};
use crate::records::Stamp;
use crate::runtime::stats::FeedStats;
use crate::source::{FrameSource, Next};

/// Where and how to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsTarget {
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// `host[:port]` for the `Host` header.
    pub authority: String,
    /// Request path and query, e.g. `/stream?streams=btcusdt@trade`.
    pub path: String,
}

/// Why a URL cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub String);

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl WsTarget {
    /// Parses `ws://host[:port][/path]` and resolves the host. Call before the feed thread starts.
    pub fn resolve(url: &str) -> Result<WsTarget, UrlError> {
        let rest = if let Some(rest) = url.strip_prefix("ws://") {
            rest
        } else if url.starts_with("wss://") {
            return Err(UrlError(format!("{url}: wss:// (TLS) is not supported yet; use ws://")));
        } else {
            return Err(UrlError(format!("{url}: expected a ws:// URL")));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(UrlError(format!("{url}: no host")));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| UrlError(format!("{url}: cannot resolve {authority}: {e}")))?
            .next()
            .ok_or_else(|| UrlError(format!("{url}: {authority} resolves to no address")))?;
        Ok(WsTarget {
            addr,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> WsTarget {
        WsTarget {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// Reconnect and liveness settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// First retry delay (`market_data.retry_backoff_ms`).
    pub initial: Duration,
    /// Largest retry delay.
    pub cap: Duration,
    /// A connection silent this long is closed and reopened.
    pub stale_after: Duration,
}

enum State {
    /// Not connected; the next attempt is due at this monotonic time.
    Down { retry_at: u64 },
    /// TCP connected or connecting, WebSocket handshake in progress.
    Handshake {
        mid: MidHandshake<ClientHandshake<TcpStream>>,
        since: u64,
    },
    /// Open.
    Open {
        ws: Box<WebSocket<TcpStream>>,
        last_frame: u64,
        readable: bool,
    },
    /// Closed for good.
    Closed,
}

const SOCKET: Token = Token(0);

/// A reconnecting WebSocket frame source.
pub struct WsFeed {
    target: WsTarget,
    subscribe: Vec<String>,
    reconnect: Reconnect,
    stats: Arc<FeedStats>,
    poll: Poll,
    events: Events,
    state: State,
    current: Option<Message>,
    attempt: u32,
    jitter: u64,
}

impl std::fmt::Debug for WsFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsFeed")
            .field("target", &self.target)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl WsFeed {
    /// A feed that connects to `target` on first use and sends `subscribe` after each connect.
    pub fn new(
        target: WsTarget,
        subscribe: Vec<String>,
        reconnect: Reconnect,
        stats: Arc<FeedStats>,
    ) -> io::Result<Self> {
        let jitter = 0x9E37_79B9_7F4A_7C15 ^ u64::from(target.addr.port());
        Ok(Self {
            target,
            subscribe,
            reconnect,
            stats,
            poll: Poll::new()?,
            events: Events::with_capacity(8),
            state: State::Down { retry_at: 0 },
            current: None,
            attempt: 0,
            jitter,
        })
    }

    /// Whether the connection is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES))
    }

    /// Drops the connection and schedules the next attempt with backoff and jitter.
    fn down(&mut self, now: u64, was_open: bool) {
        if was_open {
            self.stats.disconnects.inc();
        }
        let base = self.reconnect.initial.as_nanos() as u64;
        let cap = self.reconnect.cap.as_nanos() as u64;
        let delay = base.saturating_mul(1u64 << self.attempt.min(20)).min(cap.max(base));
        // xorshift: a deterministic jitter of up to a quarter of the delay.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let jitter = if delay >= 4 { self.jitter % (delay / 4) } else { 0 };
        self.attempt = self.attempt.saturating_add(1);
        let old = std::mem::replace(
            &mut self.state,
            State::Down {
                retry_at: now + delay + jitter,
            },
        );
        if let State::Open { mut ws, .. } = old {
            let _ = self.poll.registry().deregister(ws.get_mut());
        } else if let State::Handshake { mut mid, .. } = old {
            let _ = self.poll.registry().deregister(mid.get_mut().get_mut());
        }
    }

    fn start_connect(&mut self, now: u64) {
        let mut stream = match TcpStream::connect(self.target.addr) {
            Ok(s) => s,
            Err(_) => return self.down(now, false),
        };
        let _ = stream.set_nodelay(true);
        if self
            .poll
            .registry()
            .register(&mut stream, SOCKET, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return self.down(now, false);
        }
        let url = format!("ws://{}{}", self.target.authority, self.target.path);
        let request = match url.into_client_request() {
            Ok(r) => r,
            Err(_) => return self.down(now, false),
        };
        match tungstenite::client::client_with_config(request, stream, Some(Self::config())) {
            Ok((ws, _)) => self.opened(ws, now),
            Err(HandshakeError::Interrupted(mid)) => self.state = State::Handshake { mid, since: now },
            Err(HandshakeError::Failure(_)) => self.down(now, false),
        }
    }

    fn opened(&mut self, mut ws: WebSocket<TcpStream>, now: u64) {
        for msg in &self.subscribe {
            if ws.send(Message::text(msg.clone())).is_err() {
                return self.down(now, false);
            }
        }
        self.stats.connects.inc();
        self.attempt = 0;
        self.state = State::Open {
            ws: Box::new(ws),
            last_frame: now,
            readable: true,
        };
    }
}

impl FrameSource for WsFeed {
    fn next(&mut self) -> Next<'_> {
        self.current = None;
        let now = mono_ns();
        match &mut self.state {
            State::Closed => return Next::Closed,
            State::Down { retry_at } => {
                if now >= *retry_at {
                    self.start_connect(now);
                }
                return Next::Idle;
            }
            State::Handshake { since, .. } => {
                if now.saturating_sub(*since) > self.reconnect.stale_after.as_nanos() as u64 {
                    self.down(now, false);
                    return Next::Idle;
                }
                let _ = self.poll.poll(&mut self.events, Some(Duration::ZERO));
                let State::Handshake { mid, .. } = std::mem::replace(&mut self.state, State::Closed) else {
                    return Next::Idle;
                };
                match mid.handshake() {
                    Ok((ws, _)) => self.opened(ws, now),
                    Err(HandshakeError::Interrupted(mid)) => self.state = State::Handshake { mid, since: now },
                    Err(HandshakeError::Failure(_)) => self.down(now, false),
                }
                return Next::Idle;
            }
            State::Open {
                readable, last_frame, ..
            } => {
                if now.saturating_sub(*last_frame) > self.reconnect.stale_after.as_nanos() as u64 {
                    self.down(now, true);
                    return Next::Idle;
                }
                if !*readable {
                    self.events.clear();
                    if self.poll.poll(&mut self.events, Some(Duration::ZERO)).is_err() || self.events.is_empty() {
                        return Next::Idle;
                    }
                    *readable = true;
                }
            }
        }
        let State::Open {
            ws,
            last_frame,
            readable,
        } = &mut self.state
        else {
            return Next::Idle;
        };
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                *last_frame = now;
                // Stamp when the frame is in hand (after the read and the framing), so
                // tick-to-order measures our own processing, not the wait for data.
                let stamp = Stamp(mono_ns());
                let recv_ns = wall_ns();
                self.current = Some(msg);
                let bytes: &[u8] = match &self.current {
                    Some(Message::Text(t)) => t.as_bytes(),
                    Some(Message::Binary(b)) => b,
                    _ => &[],
                };
                Next::Frame(bytes, FrameMeta { recv_ns, stamp })
            }
            Ok(Message::Close(_)) => {
                self.down(now, true);
                Next::Idle
            }
            Ok(_) => {
                // Ping (pong queued and flushed on the next read), pong, or a raw frame.
                *last_frame = now;
                Next::Idle
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                *readable = false;
                Next::Idle
            }
            Err(_) => {
                self.down(now, true);
                Next::Idle
            }
        }
    }

    fn close(&mut self) {
        if let State::Open { ws, .. } = &mut self.state {
            let _ = ws.close(None);
            let _ = ws.flush();
            self.stats.disconnects.inc();
        }
        self.current = None;
        self.state = State::Closed;
    }
}
