//! A small non-blocking HTTP/1.1 request/response client for order entry on the Execution thread.
//!
//! [`HttpClient`] keeps a few keep-alive connections to one venue host (mio sockets, rustls for
//! `https://`) and carries one request at a time on each: a request waits in a FIFO until a
//! connection is free, goes out whole, and its response (status, head, body framed by
//! `Content-Length`, chunked encoding or the connection's close) comes back through
//! [`HttpClient::poll`] with the tag the caller gave it. Several connections instead of
//! pipelining on one keep a slow answer (the venue's matching engine, a lost packet) from holding
//! up every request behind it, and let a request that passed its deadline be abandoned by closing
//! only its own connection.
//!
//! Every call does a bounded amount of non-blocking work and never waits. Each request has a
//! deadline; one that passes it is reported as [`HttpError::TimedOut`], with [`Outcome::Failed`]
//! saying whether any of it was written: an order whose request was written may have reached the
//! venue, and only the caller knows what to do about that (query, never resend). A connection
//! that fails to connect puts the client in a short backoff (doubling up to a cap), during which
//! requests that no live connection can take are refused at once ([`SendError::Down`]) rather
//! than queued towards a deadline they cannot meet.
//!
//! **Invariant:** no allocation per request. Request buffers ([`HttpConfig::request_bytes`]
//! each, [`HttpConfig::max_requests`] of them), the FIFO and each connection's response buffer
//! ([`HttpConfig::response_bytes`]) are allocated when the client is built; a response is parsed
//! in place (a chunked body is de-chunked inside the same buffer) and handed out as slices of it.
//! A response larger than the buffer fails its request ([`HttpError::TooLarge`]). On plain TCP
//! nothing allocates, not even opening a connection (`cold/tests/gateway_binance.rs` and
//! `gateway_bybit.rs` count allocations on the driving thread); with TLS, opening a connection
//! allocates rustls's session state, and rustls's buffered stream may allocate per record.
//!
//! Host names are resolved when the client is built (by [`HttpTarget::resolve`]): the hot thread
//! makes no DNS lookups.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use mio::net::TcpStream;

pub use crate::feed::http_stream::HttpTarget;
pub use crate::feed::ws::{TlsConfig, UrlError};

/// Sizes and timings of an [`HttpClient`].
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Connections kept to the host (each carries one request at a time).
    pub connections: usize,
    /// Requests in flight or waiting at once.
    pub max_requests: usize,
    /// Largest request (line, headers and body).
    pub request_bytes: usize,
    /// Largest response (head and body) on one connection.
    pub response_bytes: usize,
    /// First wait after a failed connect; doubles per failure up to `max_backoff`.
    pub backoff: Duration,
    /// Longest wait after failed connects.
    pub max_backoff: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connections: 4,
            max_requests: 256,
            request_bytes: 4 * 1024,
            response_bytes: 64 * 1024,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// HTTP methods order entry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl Method {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Method::Get => b"GET",
            Method::Post => b"POST",
            Method::Delete => b"DELETE",
        }
    }
}

/// Why a request could not be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Every request slot is in use.
    Full,
    /// No connection is up and reconnecting is in backoff.
    Down,
    /// The request does not fit a request buffer, or a header is not valid.
    TooLarge,
}

/// Why a request failed without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The connection could not be made.
    Connect,
    /// The deadline passed.
    TimedOut,
    /// The connection closed or failed before the response was complete.
    Closed,
    /// The response was not valid HTTP/1.1 (or carried an unsupported coding).
    Protocol,
    /// The response did not fit the response buffer.
    TooLarge,
}

/// A complete response, borrowed from the connection's buffer until the callback returns.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    head: &'a [u8],
    /// The body, de-chunked.
    pub body: &'a [u8],
}

impl Response<'static> {
    /// A response with no head and no body (status 0).
    pub const fn empty() -> Response<'static> {
        Response {
            status: 0,
            head: b"",
            body: b"",
        }
    }
}

impl<'a> Response<'a> {
    /// The value of the first header called `name` (ASCII case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let mut lines = self.head.split(|&b| b == b'\n');
        lines.next();
        for line in lines {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                return Some(trim(&line[colon + 1..]));
            }
        }
        None
    }

    /// A header's value as an unsigned decimal.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        crate::gateway::json::parse_u64(self.header(name)?)
    }
}

/// What became of a request.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The server answered (any status).
    Response(Response<'a>),
    /// No (complete) answer.
    Failed {
        /// Some of the request was written: the server may have acted on it.
        sent: bool,
        /// Why.
        error: HttpError,
    },
}

/// Counters, for the cold side's status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests accepted by [`HttpClient::send`].
    pub requests: u64,
    /// Complete responses.
    pub responses: u64,
    /// Requests that failed without a response.
    pub failures: u64,
    /// Of those, deadlines passed.
    pub timeouts: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connects that failed.
    pub connect_failures: u64,
}

/// A plain or TLS socket.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &s.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// No request.
const NONE: u32 = u32::MAX;

/// One request buffer.
struct Slot {
    buf: Box<[u8]>,
    len: usize,
    tag: u64,
    deadline_ns: u64,
}

/// A connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// No socket.
    Down,
    /// TCP connecting; `slot` waits for it (or [`NONE`]).
    Connecting { slot: u32, since: u64 },
    /// Connected, nothing in flight.
    Idle,
    /// Writing request `slot`, `written` bytes so far.
    Writing { slot: u32, written: usize },
    /// Request `slot` is written; reading its response.
    Reading { slot: u32 },
}

/// How the body of the response being read is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Position inside a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size {
        size: usize,
        digits: u8,
        ext: bool,
        cr: bool,
    },
    Data(usize),
    DataEnd {
        cr: bool,
    },
    Trailer {
        line_start: bool,
    },
    Done,
}

const CHUNK_START: Chunk = Chunk::Size {
    size: 0,
    digits: 0,
    ext: false,
    cr: false,
};

/// Parse state of the response being read; all offsets into the connection's buffer.
#[derive(Clone, Copy, Debug)]
struct Parse {
    /// Length of the head including its blank line; 0 until it is complete.
    head_len: usize,
    status: u16,
    framing: Framing,
    /// The server will close the connection after this response.
    close: bool,
    /// Chunked: next raw byte to decode, end of the decoded body, chunk state.
    raw: usize,
    decoded: usize,
    chunk: Chunk,
}

const PARSE_START: Parse = Parse {
    head_len: 0,
    status: 0,
    framing: Framing::UntilClose,
    close: false,
    raw: 0,
    decoded: 0,
    chunk: CHUNK_START,
};

/// One connection.
struct Conn {
    io: Option<Transport>,
    state: ConnState,
    buf: Box<[u8]>,
    len: usize,
    eof: bool,
    parse: Parse,
}

/// What reading found.
enum Read_ {
    /// Not complete yet.
    More,
    /// Complete: status, head length, body range.
    Done {
        status: u16,
        head: usize,
        body: (usize, usize),
        close: bool,
    },
    Fail(HttpError),
}

/// The client. See the module docs.
pub struct HttpClient {
    target: HttpTarget,
    tls: Option<TlsConfig>,
    config: HttpConfig,
    conns: Vec<Conn>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    queue: VecDeque<u32>,
    /// No new connection before this monotonic time.
    down_until_ns: u64,
    backoff_ns: u64,
    stats: HttpStats,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("target", &self.target.authority)
            .field("tls", &self.target.tls)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client for `target`; `tls` is needed for `https://` targets (the webpki roots if
    /// `None`). Allocates every buffer now.
    pub fn new(target: HttpTarget, tls: Option<TlsConfig>, config: HttpConfig) -> HttpClient {
        let tls = match (target.tls, tls) {
            (true, None) => Some(TlsConfig::webpki_roots()),
            (_, tls) => tls,
        };
        let connections = config.connections.max(1);
        let max_requests = config.max_requests.max(1);
        let conns = (0..connections)
            .map(|_| Conn {
                io: None,
                state: ConnState::Down,
                buf: vec![0; config.response_bytes.max(1024)].into_boxed_slice(),
                len: 0,
                eof: false,
                parse: PARSE_START,
            })
            .collect();
        let slots = (0..max_requests)
            .map(|_| Slot {
                buf: vec![0; config.request_bytes.max(256)].into_boxed_slice(),
                len: 0,
                tag: 0,
                deadline_ns: 0,
            })
            .collect();
        HttpClient {
            target,
            tls,
            backoff_ns: duration_ns(config.backoff),
            config,
            conns,
            slots,
            free: (0..max_requests as u32).rev().collect(),
            queue: VecDeque::with_capacity(max_requests),
            down_until_ns: 0,
            stats: HttpStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> HttpStats {
        self.stats
    }

    /// Requests accepted and not yet answered or failed.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// `true` while connects fail and new connections wait for the backoff.
    pub fn in_backoff(&self, now_ns: u64) -> bool {
        now_ns < self.down_until_ns
    }

    /// Queues a request and starts sending it if a connection is free.
    ///
    /// `target` is the path and query (`/api/v3/order?...`); `headers` are extra headers (the
    /// client adds `Host`, `Content-Length` and, with a body, `Content-Type`). The answer comes
    /// from [`poll`](Self::poll) with `tag`. `deadline_ns` is monotonic.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        tag: u64,
        method: Method,
        target: &[u8],
        headers: &[(&str, &[u8])],
        body: Option<(&str, &[u8])>,
        deadline_ns: u64,
        now_ns: u64,
    ) -> Result<(), SendError> {
        let up = self.conns.iter().any(|c| c.state != ConnState::Down);
        if !up && self.in_backoff(now_ns) {
            return Err(SendError::Down);
        }
        let Some(&index) = self.free.last() else {
            return Err(SendError::Full);
        };
        let slot = &mut self.slots[index as usize];
        let len = write_request(&mut slot.buf, &self.target.authority, method, target, headers, body)
            .ok_or(SendError::TooLarge)?;
        slot.len = len;
        slot.tag = tag;
        slot.deadline_ns = deadline_ns;
        self.free.pop();
        self.queue.push_back(index);
        self.stats.requests += 1;
        self.dispatch(now_ns);
        // A first write attempt now rather than at the next poll.
        for i in 0..self.conns.len() {
            if matches!(self.conns[i].state, ConnState::Writing { .. }) {
                let _ = self.step_write(i);
            }
        }
        Ok(())
    }

    /// Moves every connection forward once, enforces deadlines and hands each finished request
    /// to `on(tag, outcome)`. Returns whether anything happened.
    pub fn poll(&mut self, now_ns: u64, on: &mut impl FnMut(u64, Outcome<'_>)) -> bool {
        let mut busy = false;
        for i in 0..self.conns.len() {
            busy |= self.step(i, now_ns, on);
        }
        // Requests still waiting for a connection.
        while let Some(&index) = self.queue.front() {
            if now_ns < self.slots[index as usize].deadline_ns {
                break;
            }
            self.queue.pop_front();
            self.fail(index, false, HttpError::TimedOut, on);
            busy = true;
        }
        if !self.queue.is_empty() {
            let nothing_up = self.conns.iter().all(|c| c.state == ConnState::Down);
            if nothing_up && self.in_backoff(now_ns) {
                // Nobody can carry them before the backoff ends: fail them now.
                while let Some(index) = self.queue.pop_front() {
                    self.fail(index, false, HttpError::Connect, on);
                }
                busy = true;
            } else {
                busy |= self.dispatch(now_ns);
            }
        }
        busy
    }

    /// Returns a finished request's slot and reports the failure.
    fn fail(&mut self, index: u32, sent: bool, error: HttpError, on: &mut impl FnMut(u64, Outcome<'_>)) {
        self.stats.failures += 1;
        if error == HttpError::TimedOut {
            self.stats.timeouts += 1;
        }
        let tag = self.slots[index as usize].tag;
        self.free.push(index);
        on(tag, Outcome::Failed { sent, error });
    }

    /// Gives waiting requests to idle connections, or starts connections for them.
    fn dispatch(&mut self, now_ns: u64) -> bool {
        let mut busy = false;
        while let Some(&index) = self.queue.front() {
            let idle = (0..self.conns.len()).find(|&i| self.conns[i].state == ConnState::Idle && self.alive(i));
            if let Some(i) = idle {
                self.queue.pop_front();
                self.start_request(i, index);
                busy = true;
                continue;
            }
            if self.in_backoff(now_ns) {
                break;
            }
            let Some(i) = (0..self.conns.len()).find(|&i| self.conns[i].state == ConnState::Down) else {
                break;
            };
            self.queue.pop_front();
            busy = true;
            if !self.connect(i, index, now_ns) {
                // Put it back at the front; the next poll fails it if nothing can carry it.
                self.queue.push_front(index);
                break;
            }
        }
        busy
    }

    /// Checks that an idle connection has not been closed by the server meanwhile; closes it
    /// if it has.
    fn alive(&mut self, i: usize) -> bool {
        let conn = &mut self.conns[i];
        let Some(io) = conn.io.as_mut() else {
            conn.state = ConnState::Down;
            return false;
        };
        let probe = match io {
            Transport::Plain(s) => s.peek(&mut conn.buf[..1]),
            Transport::Tls(s) => s.read(&mut conn.buf[..]),
        };
        match probe {
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            // EOF, an error, or bytes nobody asked for: the connection is not usable.
            _ => {
                close(conn);
                false
            }
        }
    }

    fn start_request(&mut self, i: usize, index: u32) {
        let conn = &mut self.conns[i];
        conn.len = 0;
        conn.eof = false;
        conn.parse = PARSE_START;
        conn.state = ConnState::Writing {
            slot: index,
            written: 0,
        };
    }

    /// Starts a connection that will carry request `index`; `false` if it failed at once (the
    /// backoff is then in effect).
    fn connect(&mut self, i: usize, index: u32, now_ns: u64) -> bool {
        match self.open() {
            Some(io) => {
                let conn = &mut self.conns[i];
                conn.io = Some(io);
                conn.state = ConnState::Connecting {
                    slot: index,
                    since: now_ns,
                };
                true
            }
            None => {
                self.connect_failed(now_ns);
                false
            }
        }
    }

    fn open(&self) -> Option<Transport> {
        let tcp = TcpStream::connect(self.target.addr).ok()?;
        let _ = tcp.set_nodelay(true);
        if !self.target.tls {
            return Some(Transport::Plain(tcp));
        }
        let tls = self.tls.as_ref()?;
        let name = rustls::pki_types::ServerName::try_from(self.target.host().to_string()).ok()?;
        let conn = rustls::ClientConnection::new(Arc::clone(&tls.0), name).ok()?;
        Some(Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    fn connect_failed(&mut self, now_ns: u64) {
        self.stats.connect_failures += 1;
        self.down_until_ns = now_ns.saturating_add(self.backoff_ns);
        self.backoff_ns = (self.backoff_ns * 2).min(duration_ns(self.config.max_backoff));
    }

    /// One step of connection `i`.
    fn step(&mut self, i: usize, now_ns: u64, on: &mut impl FnMut(u64, Outcome<'_>)) -> bool {
        match self.conns[i].state {
            ConnState::Down | ConnState::Idle => false,
            ConnState::Connecting { slot, since } => {
                let deadline = if slot == NONE {
                    since.saturating_add(duration_ns(self.config.max_backoff))
                } else {
                    self.slots[slot as usize].deadline_ns
                };
                let connect = match self.conns[i].io.as_ref() {
                    None => Connect::Failed,
                    Some(io) => {
                        let socket = io.socket();
                        if !matches!(socket.take_error(), Ok(None)) {
                            Connect::Failed
                        } else {
                            match socket.peer_addr() {
                                Ok(_) => Connect::Done,
                                Err(e) if e.kind() == ErrorKind::NotConnected => Connect::Pending,
                                Err(_) => Connect::Failed,
                            }
                        }
                    }
                };
                match connect {
                    Connect::Pending if now_ns < deadline => false,
                    Connect::Pending | Connect::Failed => {
                        close(&mut self.conns[i]);
                        let error = if connect == Connect::Failed {
                            self.connect_failed(now_ns);
                            HttpError::Connect
                        } else {
                            HttpError::TimedOut
                        };
                        if slot != NONE {
                            self.fail(slot, false, error, on);
                        }
                        true
                    }
                    Connect::Done => {
                        self.stats.connects += 1;
                        self.backoff_ns = duration_ns(self.config.backoff);
                        self.down_until_ns = 0;
                        if slot == NONE {
                            self.conns[i].state = ConnState::Idle;
                        } else {
                            self.start_request(i, slot);
                            self.step_write_or_fail(i, on);
                        }
                        true
                    }
                }
            }
            ConnState::Writing { slot, written } => {
                if now_ns >= self.slots[slot as usize].deadline_ns {
                    close(&mut self.conns[i]);
                    self.fail(slot, written > 0, HttpError::TimedOut, on);
                    return true;
                }
                self.step_write_or_fail(i, on)
            }
            ConnState::Reading { slot } => {
                if now_ns >= self.slots[slot as usize].deadline_ns {
                    close(&mut self.conns[i]);
                    self.fail(slot, true, HttpError::TimedOut, on);
                    return true;
                }
                self.step_read(i, slot, on)
            }
        }
    }

    fn step_write_or_fail(&mut self, i: usize, on: &mut impl FnMut(u64, Outcome<'_>)) -> bool {
        match self.step_write(i) {
            Ok(progress) => progress,
            Err(sent) => {
                let ConnState::Writing { slot, .. } = self.conns[i].state else {
                    return true;
                };
                close(&mut self.conns[i]);
                self.fail(slot, sent, HttpError::Closed, on);
                true
            }
        }
    }

    /// Writes as much of the request as the socket takes. `Err(sent)` if the connection failed.
    fn step_write(&mut self, i: usize) -> Result<bool, bool> {
        let conn = &mut self.conns[i];
        let ConnState::Writing { slot, mut written } = conn.state else {
            return Ok(false);
        };
        let Some(io) = conn.io.as_mut() else {
            return Err(written > 0);
        };
        let request = &self.slots[slot as usize].buf[..self.slots[slot as usize].len];
        let before = written;
        let result = loop {
            if written == request.len() {
                // TLS may still hold records of the request: they must leave before we only
                // read.
                break match io.flush() {
                    Ok(()) => {
                        conn.state = ConnState::Reading { slot };
                        return Ok(true);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Ok(true),
                    Err(_) => Err(true),
                };
            }
            match io.write(&request[written..]) {
                Ok(0) => break Err(written > 0),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(written > before),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Err(written > 0),
            }
        };
        // Kept even on failure, so a later look at the state still knows bytes went out.
        conn.state = ConnState::Writing { slot, written };
        result
    }

    /// Reads what the socket has and, once the response is complete, hands it out.
    fn step_read(&mut self, i: usize, slot: u32, on: &mut impl FnMut(u64, Outcome<'_>)) -> bool {
        let mut progress = false;
        loop {
            let conn = &mut self.conns[i];
            match conn.progress() {
                Read_::More => {}
                Read_::Fail(error) => {
                    close(conn);
                    self.fail(slot, true, error, on);
                    return true;
                }
                Read_::Done {
                    status,
                    head,
                    body,
                    close: closing,
                } => {
                    self.stats.responses += 1;
                    let tag = self.slots[slot as usize].tag;
                    self.free.push(slot);
                    let conn = &mut self.conns[i];
                    let response = Response {
                        status,
                        head: &conn.buf[..head],
                        body: &conn.buf[body.0..body.1],
                    };
                    on(tag, Outcome::Response(response));
                    if closing {
                        close(conn);
                    } else {
                        conn.state = ConnState::Idle;
                        conn.len = 0;
                        conn.parse = PARSE_START;
                    }
                    return true;
                }
            }
            // `progress` has seen every byte read so far and wants more.
            let failure = if conn.eof {
                Some(HttpError::Closed)
            } else if conn.len == conn.buf.len() {
                Some(HttpError::TooLarge)
            } else {
                let Conn { io, buf, len, eof, .. } = conn;
                match io.as_mut().map(|io| io.read(&mut buf[*len..])) {
                    None => Some(HttpError::Closed),
                    Some(Ok(0)) => {
                        *eof = true;
                        None
                    }
                    Some(Ok(n)) => {
                        *len += n;
                        None
                    }
                    Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => return progress,
                    Some(Err(e)) if e.kind() == ErrorKind::Interrupted => None,
                    Some(Err(_)) => Some(HttpError::Closed),
                }
            };
            if let Some(error) = failure {
                close(&mut self.conns[i]);
                self.fail(slot, true, error, on);
                return true;
            }
            progress = true;
        }
    }
}

/// Where a connect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Connect {
    Pending,
    Done,
    Failed,
}

fn close(conn: &mut Conn) {
    conn.io = None;
    conn.state = ConnState::Down;
    conn.len = 0;
    conn.eof = false;
    conn.parse = PARSE_START;
}

impl Conn {
    /// Parses what has been read so far.
    fn progress(&mut self) -> Read_ {
        if self.parse.head_len == 0 {
            let data = &self.buf[..self.len];
            let Some(head) = head_end(data) else {
                return if self.eof {
                    Read_::Fail(HttpError::Closed)
                } else {
                    Read_::More
                };
            };
            match parse_head(&data[..head]) {
                Err(e) => return Read_::Fail(e),
                Ok(None) => {
                    // An interim 1xx response: drop it, the final one follows.
                    self.buf.copy_within(head..self.len, 0);
                    self.len -= head;
                    return self.progress();
                }
                Ok(Some(p)) => {
                    self.parse = Parse {
                        head_len: head,
                        raw: head,
                        decoded: head,
                        ..p
                    };
                }
            }
        }
        let p = self.parse;
        let head = p.head_len;
        match p.framing {
            Framing::Length(n) => {
                let have = self.len - head;
                if have > n {
                    // Bytes beyond the response with nothing else asked for.
                    Read_::Fail(HttpError::Protocol)
                } else if have == n {
                    Read_::Done {
                        status: p.status,
                        head,
                        body: (head, head + n),
                        close: p.close,
                    }
                } else if head + n > self.buf.len() {
                    Read_::Fail(HttpError::TooLarge)
                } else if self.eof {
                    Read_::Fail(HttpError::Closed)
                } else {
                    Read_::More
                }
            }
            Framing::UntilClose => {
                if self.eof {
                    Read_::Done {
                        status: p.status,
                        head,
                        body: (head, self.len),
                        close: true,
                    }
                } else {
                    Read_::More
                }
            }
            Framing::Chunked => match self.dechunk() {
                Ok(true) if self.parse.raw == self.len => Read_::Done {
                    status: p.status,
                    head,
                    body: (head, self.parse.decoded),
                    close: p.close,
                },
                Ok(true) => Read_::Fail(HttpError::Protocol),
                Ok(false) if self.eof => Read_::Fail(HttpError::Closed),
                Ok(false) => Read_::More,
                Err(e) => Read_::Fail(e),
            },
        }
    }

    /// Decodes chunked framing in place: data bytes move down to `decoded`, which never passes
    /// `raw`. `Ok(true)` once the last chunk and trailers are read.
    fn dechunk(&mut self) -> Result<bool, HttpError> {
        let p = &mut self.parse;
        while p.raw < self.len {
            match &mut p.chunk {
                Chunk::Done => return Ok(true),
                Chunk::Data(left) => {
                    let n = (*left).min(self.len - p.raw);
                    self.buf.copy_within(p.raw..p.raw + n, p.decoded);
                    p.raw += n;
                    p.decoded += n;
                    *left -= n;
                    if *left == 0 {
                        p.chunk = Chunk::DataEnd { cr: false };
                    }
                    continue;
                }
                chunk => {
                    let b = self.buf[p.raw];
                    p.raw += 1;
                    match chunk {
                        Chunk::Size { size, digits, ext, cr } => match b {
                            b'\n' if *digits > 0 => {
                                *chunk = if *size == 0 {
                                    Chunk::Trailer { line_start: true }
                                } else {
                                    Chunk::Data(*size)
                                };
                            }
                            _ if *cr => return Err(HttpError::Protocol),
                            b'\r' if *digits > 0 => *cr = true,
                            _ if *ext => {}
                            b';' | b' ' | b'\t' if *digits > 0 => *ext = true,
                            _ => match (b as char).to_digit(16) {
                                Some(v) if *digits < 15 => {
                                    *size = (*size << 4) | v as usize;
                                    *digits += 1;
                                }
                                _ => return Err(HttpError::Protocol),
                            },
                        },
                        Chunk::DataEnd { cr } => match b {
                            b'\r' if !*cr => *cr = true,
                            b'\n' => *chunk = CHUNK_START,
                            _ => return Err(HttpError::Protocol),
                        },
                        Chunk::Trailer { line_start } => match b {
                            b'\n' if *line_start => *chunk = Chunk::Done,
                            b'\n' => *line_start = true,
                            b'\r' => {}
                            _ => *line_start = false,
                        },
                        Chunk::Data(_) | Chunk::Done => {}
                    }
                }
            }
        }
        Ok(p.chunk == Chunk::Done)
    }
}

/// Parses a complete head: `Ok(None)` for an interim (1xx) response.
fn parse_head(head: &[u8]) -> Result<Option<Parse>, HttpError> {
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or(b"");
    let rest = status_line.strip_prefix(b"HTTP/1.").ok_or(HttpError::Protocol)?;
    let [minor, b' ', a, b, c, tail @ ..] = rest else {
        return Err(HttpError::Protocol);
    };
    if !minor.is_ascii_digit() || !matches!(tail.first(), None | Some(b' ')) {
        return Err(HttpError::Protocol);
    }
    let mut status = 0u16;
    for d in [a, b, c] {
        if !d.is_ascii_digit() {
            return Err(HttpError::Protocol);
        }
        status = status * 10 + u16::from(d - b'0');
    }
    if (100..200).contains(&status) {
        return Ok(None);
    }
    let mut close = *minor == b'0';
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(HttpError::Protocol)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',').map(trim) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                    return Err(HttpError::Protocol);
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = crate::gateway::json::parse_u64(value).ok_or(HttpError::Protocol)?;
            let n = usize::try_from(n).map_err(|_| HttpError::TooLarge)?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Protocol);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                if option.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            for coding in value.split(|&b| b == b',').map(trim) {
                if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                    return Err(HttpError::Protocol);
                }
            }
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Parse {
        status,
        framing,
        close,
        ..PARSE_START
    }))
}

/// Length of the head in `data` including its closing empty line, if it is all there.
fn head_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = data[from..].iter().position(|&b| b == b'\n') {
        let nl = from + p;
        match data.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if data.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            None => return None,
            Some(_) => {}
        }
        from = nl + 1;
    }
    None
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A header-name character (RFC 9110 `tchar`).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Writes the request into `buf`; `None` if it does not fit or a header is malformed.
fn write_request(
    buf: &mut [u8],
    authority: &str,
    method: Method,
    target: &[u8],
    headers: &[(&str, &[u8])],
    body: Option<(&str, &[u8])>,
) -> Option<usize> {
    let mut w = Writer { buf, len: 0 };
    if !target.starts_with(b"/") || !target.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    w.put(method.as_bytes())?;
    w.put(b" ")?;
    w.put(target)?;
    w.put(b" HTTP/1.1\r\nHost: ")?;
    w.put(authority.as_bytes())?;
    w.put(b"\r\nUser-Agent: maxx/")?;
    w.put(env!("CARGO_PKG_VERSION").as_bytes())?;
    w.put(b"\r\nAccept-Encoding: identity\r\n")?;
    for (name, value) in headers {
        if name.is_empty()
            || !name.bytes().all(token_char)
            || !value.iter().all(|&b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            return None;
        }
        w.put(name.as_bytes())?;
        w.put(b": ")?;
        w.put(value)?;
        w.put(b"\r\n")?;
    }
    let content = body.map_or(&[][..], |(_, b)| b);
    if let Some((content_type, _)) = body {
        w.put(b"Content-Type: ")?;
        w.put(content_type.as_bytes())?;
        w.put(b"\r\n")?;
    }
    if body.is_some() || method != Method::Get {
        w.put(b"Content-Length: ")?;
        w.put(crate::gateway::sign::Decimal::new(content.len() as u64).as_bytes())?;
        w.put(b"\r\n")?;
    }
    w.put(b"\r\n")?;
    w.put(content)?;
    Some(w.len)
}

struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn_with(bytes: &[u8], eof: bool) -> Conn {
        let mut buf = vec![0u8; 1024].into_boxed_slice();
        buf[..bytes.len()].copy_from_slice(bytes);
        Conn {
            io: None,
            state: ConnState::Reading { slot: 0 },
            buf,
            len: bytes.len(),
            eof,
            parse: PARSE_START,
        }
    }

    fn done(conn: &mut Conn) -> Option<(u16, Vec<u8>, bool)> {
        match conn.progress() {
            Read_::Done {
                status, body, close, ..
            } => Some((status, conn.buf[body.0..body.1].to_vec(), close)),
            _ => None,
        }
    }

    #[test]
    fn content_length_bodies() {
        let mut c = conn_with(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false);
        assert!(matches!(c.progress(), Read_::More));
        let mut c = conn_with(b"HTTP/1.1 400 Bad\r\nContent-Length: 5\r\n\r\nhello", false);
        assert_eq!(done(&mut c), Some((400, b"hello".to_vec(), false)));
        let mut c = conn_with(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok",
            false,
        );
        assert_eq!(done(&mut c), Some((200, b"ok".to_vec(), true)));
    }

    #[test]
    fn chunked_bodies_are_decoded_in_place_across_reads() {
        let full =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n";
        for split in [40, 50, 57, 63, full.len()] {
            let mut c = conn_with(&full[..split], false);
            let first = c.progress();
            if split < full.len() {
                assert!(matches!(first, Read_::More), "split {split}");
                c.buf[split..full.len()].copy_from_slice(&full[split..]);
                c.len = full.len();
            }
            assert_eq!(done(&mut c), Some((200, b"Wikipedia".to_vec(), false)), "split {split}");
        }
    }

    #[test]
    fn interim_responses_and_close_framing() {
        let mut c = conn_with(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\n\r\nlater", true);
        assert_eq!(done(&mut c), Some((503, b"later".to_vec(), true)));
        let mut c = conn_with(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcd", false);
        assert!(matches!(c.progress(), Read_::Fail(HttpError::Protocol)));
        let mut c = conn_with(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabcd", true);
        assert!(matches!(c.progress(), Read_::Fail(HttpError::Closed)));
        let mut c = conn_with(b"garbage\r\n\r\n", false);
        assert!(matches!(c.progress(), Read_::Fail(HttpError::Protocol)));
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        let head = b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nx-mbx-used-weight-1m: 12 \r\n\r\n";
        let r = Response {
            status: 429,
            head,
            body: b"",
        };
        assert_eq!(r.header_u64("retry-after"), Some(7));
        assert_eq!(r.header("X-MBX-USED-WEIGHT-1M"), Some(&b"12"[..]));
        assert_eq!(r.header("Missing"), None);
    }

    #[test]
    fn requests_are_written_whole_or_refused() {
        let mut buf = [0u8; 256];
        let n = write_request(
            &mut buf,
            "127.0.0.1:9",
            Method::Post,
            b"/api/v3/order",
            &[("X-MBX-APIKEY", b"key")],
            Some(("application/x-www-form-urlencoded", b"a=1")),
        )
        .unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            text.starts_with("POST /api/v3/order HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"),
            "{text}"
        );
        assert!(text.contains("X-MBX-APIKEY: key\r\n"));
        assert!(text.ends_with("Content-Length: 3\r\n\r\na=1"), "{text}");
        let mut small = [0u8; 32];
        assert_eq!(write_request(&mut small, "h", Method::Get, b"/x", &[], None), None);
        assert_eq!(
            write_request(&mut buf, "h", Method::Get, b"/x", &[("Bad Name", b"v")], None),
            None
        );
    }
}
