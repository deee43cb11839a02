//! A non-blocking WebSocket client for feed threads: mio sockets, tungstenite framing.
//!
//! [`WsFeed`] is a [`FrameSource`]: each call to `next` does at most one non-blocking step per
//! connection (start a connect, advance the handshake, or read one message) and never waits.
//! It reconnects by itself with exponential backoff (`market_data.retry_backoff_ms` doubling up
//! to a cap, with deterministic jitter), treats a connection that has been silent for
//! `stale_after` as dead, answers pings (tungstenite queues the pong; the next read flushes it),
//! sends the venue's subscribe messages after every connect, and, where the venue wants it,
//! sends its own keepalive message (Bybit's `{"op":"ping"}`).
//!
//! Planned resubscribes are make-before-break: [`FrameSource::rotate`] (or the
//! `rotate_every` timer) opens a second connection while the first keeps delivering; frames of
//! both arrive, each tagged with its connection's epoch, and the feed task drops the
//! duplicates by trade and update id. When the feed task sees the new connection deliver data
//! the old one has not, it calls [`FrameSource::finish_rotation`] and the old connection is
//! closed. No trade is missed, none is doubled.
//!
//! `wss://` runs TLS (rustls, ring provider) over the same non-blocking socket; the handshake
//! advances step by step like the WebSocket one. Trust anchors are the Mozilla roots
//! (webpki-roots) unless the caller supplies its own [`TlsConfig`].
//!
//! Host names are resolved by the caller before the feed thread starts: the hot thread makes no
//! DNS lookups.

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
    /// `true` for `wss://`.
    pub tls: bool,
}

/// TLS client settings shared by every connection of a process (built once, at start).
#[derive(Clone, Debug)]
pub struct TlsConfig(pub Arc<rustls::ClientConfig>);

impl TlsConfig {
    /// Trusts the Mozilla root certificates bundled with webpki-roots.
    pub fn webpki_roots() -> TlsConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Trusts exactly these roots (a private venue gateway, a test certificate).
    pub fn with_roots(roots: rustls::RootCertStore) -> TlsConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            // The ring provider supports the default versions; this cannot fail.
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"));
        TlsConfig(Arc::new(config))
    }
}

/// A plain or TLS socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
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
    /// Parses `ws://` or `wss://host[:port][/path]` and resolves the host. Call before the feed
    /// thread starts.
    pub fn resolve(url: &str) -> Result<WsTarget, UrlError> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else {
            return Err(UrlError(format!("{url}: expected a ws:// or wss:// URL")));
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
            format!("{authority}:{}", if tls { 443 } else { 80 })
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
            tls,
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> WsTarget {
        WsTarget {
            path: path.to_string(),
            ..self.clone()
        }
    }

    /// The host name, for TLS server name indication and certificate checks.
    pub fn host(&self) -> &str {
        match self.authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => &self.authority,
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

/// One connection's state.
enum State {
    /// Not connected; the next attempt is due at this monotonic time.
    Down { retry_at: u64 },
    /// TCP connected or connecting, WebSocket handshake in progress.
    Handshake {
        mid: MidHandshake<ClientHandshake<Stream>>,
        since: u64,
    },
    /// Open.
    Open {
        ws: Box<WebSocket<Stream>>,
        last_frame: u64,
        last_ping: u64,
        readable: bool,
    },
}

/// One WebSocket connection and the epoch that tags its frames.
struct Conn {
    state: State,
    epoch: u32,
    token: Token,
    /// Data frames received on this connection.
    frames: u64,
}

/// What one step of a connection produced.
enum Step {
    /// A data frame (text or binary).
    Frame(Message),
    /// Nothing now.
    Idle,
    /// The connection failed or closed; `was_open` says whether it had been established.
    Lost { was_open: bool },
}

/// A reconnecting WebSocket frame source.
pub struct WsFeed {
    target: WsTarget,
    tls: Option<TlsConfig>,
    subscribe: Vec<String>,
    keepalive: Option<(Duration, &'static str)>,
    rotate_every: Option<Duration>,
    reconnect: Reconnect,
    stats: Arc<FeedStats>,
    poll: Poll,
    events: Events,
    primary: Conn,
    /// The new connection of a make-before-break rotation.
    secondary: Option<Conn>,
    rotation_started: u64,
    next_epoch: u32,
    frame_epoch: u32,
    primary_opened: u64,
    closed: bool,
    current: Option<Message>,
    attempt: u32,
    jitter: u64,
}

impl std::fmt::Debug for WsFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsFeed")
            .field("target", &self.target)
            .field("epoch", &self.primary.epoch)
            .field("rotating", &self.secondary.is_some())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Read buffer of each connection, and the most one socket read asks for.
///
/// tungstenite's buffer (a `BytesMut`) reclaims consumed space in place when it can, and
/// reallocates otherwise; with a buffer far larger than one socket read, it reaches its end only
/// every few MiB of traffic and steady state does not allocate (`tests/hot_alloc.rs`).
///
/// Known cost, not yet fixed: tungstenite 0.30 zero-fills the whole read window before every
/// socket read (`FrameCodec::read_in`), including the read that finds the socket drained, so
/// each frame pays about two 4 MiB memsets (~100 µs on the development VM; benches/RESULTS.md
/// section 7). A 32 KiB window removes that (frame in hand 106 → 8–12 µs at p50), but then
/// `hot_alloc` saw an occasional allocation in steady state (the buffer reaching its end ~100×
/// more often, sometimes while it could not be reclaimed), so the window stays large until
/// the read path stops depending on tungstenite's buffer management.
pub const READ_BUFFER: usize = 4 << 20;

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

impl Conn {
    fn new(epoch: u32, token: Token, retry_at: u64) -> Self {
        Self {
            state: State::Down { retry_at },
            epoch,
            token,
            frames: 0,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    fn deregister(&mut self, poll: &Poll) {
        match &mut self.state {
            State::Open { ws, .. } => {
                let _ = poll.registry().deregister(ws.get_mut().tcp());
            }
            State::Handshake { mid, .. } => {
                let _ = poll.registry().deregister(mid.get_mut().get_mut().tcp());
            }
            State::Down { .. } => {}
        }
    }

    /// Starts connecting; `Lost` if the attempt fails at once.
    fn start(&mut self, feed: &StepCtx<'_>, now: u64) -> Step {
        let target = feed.target;
        let Ok(mut tcp) = TcpStream::connect(target.addr) else {
            return Step::Lost { was_open: false };
        };
        let _ = tcp.set_nodelay(true);
        if feed
            .poll
            .registry()
            .register(&mut tcp, self.token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return Step::Lost { was_open: false };
        }
        let stream = if target.tls {
            let Some(tls) = feed.tls else {
                return Step::Lost { was_open: false };
            };
            let Ok(name) = rustls::pki_types::ServerName::try_from(target.host().to_string()) else {
                return Step::Lost { was_open: false };
            };
            let Ok(conn) = rustls::ClientConnection::new(Arc::clone(&tls.0), name) else {
                return Step::Lost { was_open: false };
            };
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let scheme = if target.tls { "wss" } else { "ws" };
        let Ok(request) = format!("{scheme}://{}{}", target.authority, target.path).into_client_request() else {
            return Step::Lost { was_open: false };
        };
        match tungstenite::client::client_with_config(request, stream, Some(config())) {
            Ok((ws, _)) => self.opened(ws, feed.subscribe, now),
            Err(HandshakeError::Interrupted(mid)) => {
                self.state = State::Handshake { mid, since: now };
                Step::Idle
            }
            Err(HandshakeError::Failure(_)) => Step::Lost { was_open: false },
        }
    }

    fn opened(&mut self, mut ws: WebSocket<Stream>, subscribe: &[String], now: u64) -> Step {
        for msg in subscribe {
            if ws.send(Message::text(msg.clone())).is_err() {
                return Step::Lost { was_open: false };
            }
        }
        self.state = State::Open {
            ws: Box::new(ws),
            last_frame: now,
            last_ping: now,
            readable: true,
        };
        self.frames = 0;
        Step::Idle
    }

    /// One non-blocking step. `readable` tokens come from the feed's last poll.
    fn step(&mut self, feed: &StepCtx<'_>, now: u64) -> Step {
        match &mut self.state {
            State::Down { retry_at } => {
                if now >= *retry_at {
                    return self.start(feed, now);
                }
                Step::Idle
            }
            State::Handshake { since, .. } => {
                if now.saturating_sub(*since) > feed.stale_after_ns {
                    return Step::Lost { was_open: false };
                }
                let State::Handshake { mid, .. } = std::mem::replace(&mut self.state, State::Down { retry_at: 0 })
                else {
                    return Step::Idle;
                };
                match mid.handshake() {
                    Ok((ws, _)) => self.opened(ws, feed.subscribe, now),
                    Err(HandshakeError::Interrupted(mid)) => {
                        self.state = State::Handshake { mid, since: now };
                        Step::Idle
                    }
                    Err(HandshakeError::Failure(_)) => Step::Lost { was_open: false },
                }
            }
            State::Open {
                ws,
                last_frame,
                last_ping,
                readable,
            } => {
                if now.saturating_sub(*last_frame) > feed.stale_after_ns {
                    return Step::Lost { was_open: true };
                }
                if let Some((every, ping)) = feed.keepalive
                    && now.saturating_sub(*last_ping) >= every.as_nanos() as u64
                {
                    *last_ping = now;
                    // A static payload: sending it allocates nothing.
                    let msg = Message::Text(tungstenite::Utf8Bytes::from_static(ping));
                    if let Err(e) = ws.send(msg)
                        && !matches!(&e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
                    {
                        return Step::Lost { was_open: true };
                    }
                }
                if !*readable && !feed.ready.contains(&self.token) {
                    return Step::Idle;
                }
                *readable = true;
                match ws.read() {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        *last_frame = now;
                        self.frames += 1;
                        Step::Frame(msg)
                    }
                    Ok(Message::Close(_)) => Step::Lost { was_open: true },
                    Ok(_) => {
                        // Ping (pong queued and flushed on the next read), pong, or a raw frame.
                        *last_frame = now;
                        Step::Idle
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                        *readable = false;
                        Step::Idle
                    }
                    Err(_) => Step::Lost { was_open: true },
                }
            }
        }
    }

    fn close(&mut self, poll: &Poll) {
        self.deregister(poll);
        if let State::Open { ws, .. } = &mut self.state {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
        self.state = State::Down { retry_at: u64::MAX };
    }
}

/// What a connection step needs from its feed.
struct StepCtx<'a> {
    target: &'a WsTarget,
    tls: Option<&'a TlsConfig>,
    subscribe: &'a [String],
    poll: &'a Poll,
    keepalive: Option<(Duration, &'static str)>,
    stale_after_ns: u64,
    /// Tokens reported readable by the last poll (at most two connections).
    ready: [Token; 2],
}

const NOT_READY: Token = Token(usize::MAX);

impl WsFeed {
    /// A feed that connects to `target` on first use and sends `subscribe` after each connect.
    pub fn new(
        target: WsTarget,
        subscribe: Vec<String>,
        reconnect: Reconnect,
        stats: Arc<FeedStats>,
    ) -> io::Result<Self> {
        let jitter = 0x9E37_79B9_7F4A_7C15 ^ u64::from(target.addr.port());
        let tls = target.tls.then(TlsConfig::webpki_roots);
        Ok(Self {
            target,
            tls,
            subscribe,
            keepalive: None,
            rotate_every: None,
            reconnect,
            stats,
            poll: Poll::new()?,
            events: Events::with_capacity(8),
            primary: Conn::new(1, Token(0), 0),
            secondary: None,
            rotation_started: 0,
            next_epoch: 2,
            frame_epoch: 1,
            primary_opened: 0,
            closed: false,
            current: None,
            attempt: 0,
            jitter,
        })
    }

    /// Sends `message` every `every` on each open connection (Bybit wants `{"op":"ping"}`
    /// every 20 s; Binance and Coinbase need nothing).
    pub fn with_keepalive(mut self, every: Duration, message: &'static str) -> Self {
        self.keepalive = Some((every, message));
        self
    }

    /// Uses these TLS settings for `wss://` instead of the Mozilla roots.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Rotates the connection make-before-break every `every` (`market_data.resubscribe_sec`).
    pub fn with_rotation(mut self, every: Duration) -> Self {
        self.rotate_every = Some(every);
        self
    }

    /// Whether the primary connection is open.
    pub fn is_open(&self) -> bool {
        self.primary.is_open()
    }

    /// Schedules the primary's next attempt with backoff and jitter.
    fn primary_down(&mut self, now: u64, was_open: bool) {
        if was_open {
            self.stats.disconnects.inc();
        }
        self.primary.deregister(&self.poll);
        // A rotation in progress takes over at once if its connection is up.
        if let Some(next) = self.secondary.take() {
            if next.is_open() {
                self.primary = next;
                self.primary_opened = now;
                return;
            }
            let mut next = next;
            next.deregister(&self.poll);
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
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        let token = self.primary.token;
        self.primary = Conn::new(epoch, token, now + delay + jitter);
    }

    fn ready(&self) -> [Token; 2] {
        let mut ready = [NOT_READY; 2];
        for (slot, e) in ready.iter_mut().zip(self.events.iter()) {
            *slot = e.token();
        }
        ready
    }

    fn start_rotation(&mut self, now: u64) {
        if self.secondary.is_some() || !self.primary.is_open() {
            return;
        }
        let token = Token(1 - self.primary.token.0);
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.secondary = Some(Conn::new(epoch, token, now));
        self.rotation_started = now;
        self.stats.rotations.inc();
    }

    /// Keeps `msg` as the current frame and returns its receive times.
    fn hold(&mut self, msg: Message, epoch: u32) -> FrameMeta {
        // Stamp when the frame is in hand (after the read and the framing), so tick-to-order
        // measures our own processing, not the wait for data.
        let stamp = Stamp(mono_ns());
        let recv_ns = wall_ns();
        self.frame_epoch = epoch;
        self.current = Some(msg);
        FrameMeta { recv_ns, stamp }
    }

    /// The current frame's bytes.
    fn view(&self, meta: Option<FrameMeta>) -> Next<'_> {
        match (meta, &self.current) {
            (Some(meta), Some(Message::Text(t))) => Next::Frame(t.as_bytes(), meta),
            (Some(meta), Some(Message::Binary(b))) => Next::Frame(b, meta),
            _ if self.closed => Next::Closed,
            _ => Next::Idle,
        }
    }

    /// One step of the feed: `Some(meta)` when a frame is held in `self.current`.
    fn advance(&mut self) -> Option<FrameMeta> {
        self.current = None;
        if self.closed {
            return None;
        }
        let now = mono_ns();
        // Readiness: poll only when some connection is waiting for its socket.
        let waiting = [Some(&self.primary), self.secondary.as_ref()]
            .into_iter()
            .flatten()
            .any(|c| matches!(c.state, State::Open { readable: false, .. } | State::Handshake { .. }));
        self.events.clear();
        if waiting {
            let _ = self.poll.poll(&mut self.events, Some(Duration::ZERO));
        }
        if let Some(every) = self.rotate_every
            && self.primary.is_open()
            && now.saturating_sub(self.primary_opened) >= every.as_nanos() as u64
        {
            self.primary_opened = now;
            self.start_rotation(now);
        }
        // The primary is always drained first: during a rotation it stays level with the
        // network, so the new connection can only catch up with it, which is how the feed task
        // proves the two streams overlap before the old one is closed.
        let got = self.step_primary(now).or_else(|| self.step_secondary(now));
        got.map(|(msg, epoch)| self.hold(msg, epoch))
    }
}

impl FrameSource for WsFeed {
    fn next(&mut self) -> Next<'_> {
        let meta = self.advance();
        self.view(meta)
    }

    fn next_tagged(&mut self) -> (Next<'_>, u32) {
        let meta = self.advance();
        let epoch = self.frame_epoch;
        (self.view(meta), epoch)
    }

    fn close(&mut self) {
        if !self.closed && self.primary.is_open() {
            self.stats.disconnects.inc();
        }
        self.primary.close(&self.poll);
        if let Some(mut s) = self.secondary.take() {
            s.close(&self.poll);
        }
        self.current = None;
        self.closed = true;
    }

    fn rotating(&self) -> Option<u32> {
        self.secondary.as_ref().filter(|s| s.is_open()).map(|s| s.epoch)
    }

    fn rotate(&mut self) {
        self.start_rotation(mono_ns());
    }

    fn restart(&mut self) {
        let was_open = self.primary.is_open();
        if let Some(mut s) = self.secondary.take() {
            s.close(&self.poll);
        }
        self.primary.close(&self.poll);
        self.primary_down(mono_ns(), was_open);
    }

    fn finish_rotation(&mut self) {
        let Some(next) = self.secondary.take() else { return };
        if !next.is_open() {
            self.secondary = Some(next);
            return;
        }
        let mut old = std::mem::replace(&mut self.primary, next);
        old.close(&self.poll);
        self.primary_opened = mono_ns();
    }
}

impl WsFeed {
    fn step_primary(&mut self, now: u64) -> Option<(Message, u32)> {
        let was_open = self.primary.is_open();
        let ctx = StepCtx {
            target: &self.target,
            tls: self.tls.as_ref(),
            subscribe: &self.subscribe,
            poll: &self.poll,
            keepalive: self.keepalive,
            stale_after_ns: self.reconnect.stale_after.as_nanos() as u64,
            ready: self.ready(),
        };
        let step = self.primary.step(&ctx, now);
        if !was_open && self.primary.is_open() {
            self.stats.connects.inc();
            self.attempt = 0;
            self.primary_opened = now;
        }
        match step {
            Step::Frame(msg) => Some((msg, self.primary.epoch)),
            Step::Idle => None,
            Step::Lost { was_open } => {
                self.primary_down(now, was_open);
                None
            }
        }
    }

    fn step_secondary(&mut self, now: u64) -> Option<(Message, u32)> {
        let ready = self.ready();
        let ctx = StepCtx {
            target: &self.target,
            tls: self.tls.as_ref(),
            subscribe: &self.subscribe,
            poll: &self.poll,
            keepalive: self.keepalive,
            stale_after_ns: self.reconnect.stale_after.as_nanos() as u64,
            ready,
        };
        let secondary = self.secondary.as_mut()?;
        let was_open = secondary.is_open();
        let step = secondary.step(&ctx, now);
        if !was_open && secondary.is_open() {
            self.stats.connects.inc();
        }
        let epoch = secondary.epoch;
        // A rotation that never delivers is abandoned; the primary carries on.
        let overdue = now.saturating_sub(self.rotation_started) > 2 * ctx.stale_after_ns;
        match step {
            Step::Frame(msg) => Some((msg, epoch)),
            Step::Lost { .. } => {
                if let Some(mut s) = self.secondary.take() {
                    s.deregister(&self.poll);
                }
                None
            }
            Step::Idle if overdue => {
                // The feed task did not finish the rotation in time (no sequenced data to
                // compare): an open new connection takes over, a dead one is abandoned.
                if self.secondary.as_ref().is_some_and(Conn::is_open) {
                    self.finish_rotation();
                } else if let Some(mut s) = self.secondary.take() {
                    s.close(&self.poll);
                }
                None
            }
            Step::Idle => None,
        }
    }
}
