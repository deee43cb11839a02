//! A non-blocking HTTP/1.1 streaming client for feed threads: mio sockets, our own framing.
//!
//! Some venues stream over one long HTTP response instead of a WebSocket: OANDA's pricing
//! stream is a `GET` answered by `200` with a chunked body of newline-delimited JSON
//! (`venues.md` §4.1). [`HttpStreamFeed`] is the [`FrameSource`] for them: it sends the request,
//! reads the status line and headers, removes the chunked framing (or reads a body delimited by
//! `Content-Length` or by the connection's close), splits the body into lines and returns one
//! line per [`next`](FrameSource::next) as a frame. A line may span chunks and a chunk may hold
//! many lines; chunk boundaries mean nothing to the lines.
//!
//! It mirrors [`WsFeed`](crate::feed::ws::WsFeed): each call does at most one non-blocking step
//! per connection and never waits; it reconnects by itself with exponential backoff and
//! deterministic jitter ([`Reconnect`]); a connection without a line (data or heartbeat) for
//! `stale_after` is dropped and reopened, and so is a connect or response head that takes
//! longer than that; and planned resubscribes can be make-before-break
//! ([`FrameSource::rotate`], [`HttpStreamFeed::with_rotation`]), with every frame tagged by its
//! connection's epoch. Connections opened (a `200` received) and lost are counted in
//! [`FeedStats::connects`] and [`FeedStats::disconnects`].
//!
//! A status other than `200` is the venue refusing the request (there is no in-band
//! acknowledgement on such streams): it is counted in [`FeedStats::venue_errors`] (and, for a
//! client error other than 408 and 429, in [`FeedStats::subscribe_rejected`]), its body (up to
//! [`MAX_ERROR_BODY_BYTES`]) is kept as a [`Rejection`] for the cold side to log (the hot side
//! never logs), and the request is retried after the backoff. A `401` puts the feed in the
//! distinct [`StreamState::Unauthorized`] until a request succeeds, and its retries wait the
//! full backoff cap: a wrong token does not fix itself, and the venue limits new connections.
//!
//! **Invariant:** no heap allocation per line. Each connection owns a fixed read buffer
//! ([`READ_BUFFER_BYTES`]) and a fixed line buffer of [`MAX_FRAME_BYTES`] (+1 for a CR),
//! allocated once when the feed is built. A line that lies whole in the read buffer is returned
//! as a slice of it without a copy; one that spans reads or chunks is assembled in the line
//! buffer. A line longer than [`MAX_FRAME_BYTES`] is never returned: it is counted as
//! [`DecodeReason::TooLarge`] (in `FeedStats::bad` and `FeedStats::frames`, as the decoder would
//! have counted it) and skipped up to its newline. `tests/connector_oanda.rs` proves the
//! invariant against the OANDA simulator with a counting allocator.
//!
//! Lines end at `\n`; a `\r` before it is removed, and empty lines are skipped (they still
//! count as a sign of life). The head may use bare `\n` line ends too (RFC 9112 §2.2).
//!
//! `https://` runs TLS (rustls, ring provider, through [`TlsConfig`] as for `wss://`) over the
//! same non-blocking socket: the socket sits behind a small `Transport` enum with `Read` and
//! `Write`, and the handshake advances inside the first writes of the request, so nothing above
//! it knows the difference. The zero-allocation invariant is proven over plain TCP; rustls's
//! buffered stream API may allocate per TLS record.
//!
//! Host names are resolved by the caller before the feed thread starts: the hot thread makes no
//! DNS lookups.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::clock::{mono_ns, wall_ns};
pub use crate::feed::ws::{Reconnect, TlsConfig, UrlError};
use crate::feed::{DecodeReason, FrameMeta, MAX_FRAME_BYTES};
use crate::records::Stamp;
use crate::runtime::stats::FeedStats;
use crate::source::{FrameSource, Next};

/// Size of each connection's read buffer: one `read` fills at most this much.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most bytes of an error body kept in a [`Rejection`].
pub const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;
/// Rejections kept for the cold side; when it does not collect them, the oldest make way.
pub const REJECTION_LOG: usize = 16;

// ---------------------------------------------------------------------------------------------
// Target and request.

/// Where and what to request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// Resolved socket address.
    pub addr: SocketAddr,
    /// `host[:port]` for the `Host` header.
    pub authority: String,
    /// Request path and query, e.g. `/v3/accounts/1/pricing/stream?instruments=EUR_USD`.
    pub path: String,
    /// `true` for `https://`.
    pub tls: bool,
}

impl HttpTarget {
    /// Parses `http://` or `https://host[:port][/path]` and resolves the host. Call before the
    /// feed thread starts.
    ///
    /// # Errors
    /// A [`UrlError`] for another scheme, no host, or a host that does not resolve.
    pub fn resolve(url: &str) -> Result<HttpTarget, UrlError> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else {
            return Err(UrlError(format!("{url}: expected an http:// or https:// URL")));
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
        Ok(HttpTarget {
            addr,
            authority: authority.to_string(),
            path: path.to_string(),
            tls,
        })
    }

    /// The same server with another path.
    pub fn with_path(&self, path: &str) -> HttpTarget {
        HttpTarget {
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

/// A header-name character (RFC 9110 `tchar`).
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request bytes, built once. Error messages never quote a header value: one of them is
/// usually a credential.
fn build_request<K, V>(target: &HttpTarget, headers: impl IntoIterator<Item = (K, V)>) -> io::Result<Vec<u8>>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let invalid = |msg: String| io::Error::new(ErrorKind::InvalidInput, msg);
    if !target.path.starts_with('/') || !target.path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "request path {:?} must start with / and hold only visible ASCII",
            target.path
        )));
    }
    if target.authority.is_empty() || !target.authority.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "host {:?} is not a valid Host header",
            target.authority
        )));
    }
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: maxx/{}\r\nAccept-Encoding: identity\r\n",
        target.path,
        target.authority,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if name.is_empty() || !name.bytes().all(token_char) {
            return Err(invalid(format!("{name:?} is not a header name")));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t') {
            return Err(invalid(format!(
                "the value of header {name} is not a valid header value"
            )));
        }
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Ok(request.into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Response reader: HTTP/1.1 head, body framing and line splitting, without I/O.

/// A violation of HTTP/1.1 framing; the connection is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtoError {
    /// The status line is not `HTTP/1.x NNN ...`.
    BadStatusLine,
    /// A header line without a colon, a malformed or conflicting `Content-Length`.
    BadHeader,
    /// No end of the head within [`MAX_HEAD_BYTES`].
    HeadTooLarge,
    /// A transfer or content coding other than `chunked` and `identity`.
    UnsupportedEncoding,
    /// A malformed chunk size line or chunk end.
    BadChunk,
    /// The connection closed before the head or a framed body was complete.
    Truncated,
}

/// Where a returned line's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineAt {
    /// In the read buffer (the line arrived whole in one read and one chunk).
    Read { start: usize, end: usize },
    /// In the line buffer (assembled across reads or chunks).
    Assembled { len: usize },
}

/// What the reader found next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    /// The final response head, with its status.
    Head { status: u16 },
    /// A line of the body, without its line end.
    Line(LineAt),
    /// An empty line.
    Blank,
    /// A line longer than [`MAX_FRAME_BYTES`], skipped.
    Oversized,
    /// Nothing until more bytes are read.
    NeedMore,
    /// The body has ended (last chunk, `Content-Length` reached, or close).
    End,
    /// The stream is not valid HTTP/1.1.
    Error(ProtoError),
}

/// How the body is delimited, and where the reader stands in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// Before the (final) response head.
    Head,
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunk),
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// Neither: the body ends when the connection closes.
    UntilClose,
    /// Ended (or failed); nothing more is read.
    Done,
}

/// Position inside a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the hex size so far, its digit count, whether an extension (or
    /// whitespace) has started, and whether a CR has been seen.
    Size { size: u64, digits: u8, ext: bool, cr: bool },
    /// In chunk data: this many bytes left.
    Data(u64),
    /// After chunk data, expecting its CRLF.
    DataEnd { cr: bool },
    /// After the last (zero-size) chunk: trailer fields until an empty line.
    Trailer { line_start: bool },
}

const CHUNK_SIZE_START: Chunk = Chunk::Size {
    size: 0,
    digits: 0,
    ext: false,
    cr: false,
};

/// A body segment, or why there is none.
enum Seg {
    Data(usize, usize),
    NeedMore,
    End,
    Bad(ProtoError),
}

/// Turns the bytes of one response into a head and body lines. Owns fixed buffers; reused for
/// every connection of its slot.
struct Reader {
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The peer has closed its side.
    eof: bool,
    /// A line that spans reads or chunks, assembled.
    line: Box<[u8]>,
    line_len: usize,
    /// Skipping the rest of an oversized line.
    discarding: bool,
    body: Body,
}

impl Reader {
    fn new() -> Self {
        Self {
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            // One extra byte for the CR of a CRLF after a line of exactly MAX_FRAME_BYTES.
            line: vec![0; MAX_FRAME_BYTES + 1].into_boxed_slice(),
            line_len: 0,
            discarding: false,
            body: Body::Head,
        }
    }

    /// Forgets the previous response, for a new connection.
    fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.line_len = 0;
        self.discarding = false;
        self.body = Body::Head;
    }

    /// Reads once from `source` into the free end of the buffer, after moving unread bytes to
    /// the front; a zero-byte read marks the end of the stream.
    fn read_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let space = &mut self.buf[self.end..];
        if space.is_empty() {
            // Only a head could fill the buffer, and heads are capped well below its size.
            return Err(ErrorKind::InvalidData.into());
        }
        let n = source.read(space)?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(n)
    }

    /// The bytes of a line returned by [`next`](Self::next), valid until the next read.
    fn bytes(&self, at: LineAt) -> &[u8] {
        match at {
            LineAt::Read { start, end } => self.buf.get(start..end).unwrap_or(&[]),
            LineAt::Assembled { len } => self.line.get(..len).unwrap_or(&[]),
        }
    }

    /// The next thing in the stream; [`Event::NeedMore`] when the buffered bytes are used up.
    fn next(&mut self) -> Event {
        loop {
            let (s, e) = match self.body {
                Body::Done => return Event::End,
                Body::Head => match self.parse_head() {
                    // An interim (1xx) response; the final one follows.
                    Ok(Some(_)) if self.body == Body::Head => continue,
                    Ok(Some(status)) => return Event::Head { status },
                    Ok(None) if self.eof => return self.fail(ProtoError::Truncated),
                    Ok(None) => return Event::NeedMore,
                    Err(e) => return self.fail(e),
                },
                _ => match self.segment() {
                    Seg::Data(s, e) => (s, e),
                    Seg::NeedMore if !self.eof => return Event::NeedMore,
                    Seg::NeedMore if self.body == Body::UntilClose => return self.finish(),
                    Seg::NeedMore => return self.fail(ProtoError::Truncated),
                    Seg::End => return self.finish(),
                    Seg::Bad(e) => return self.fail(e),
                },
            };
            match self.buf[s..e].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let nl = s + i;
                    self.consume(i + 1);
                    if self.line_len == 0 && !self.discarding {
                        // The whole line is in the read buffer: no copy.
                        let end = if nl > s && self.buf[nl - 1] == b'\r' {
                            nl - 1
                        } else {
                            nl
                        };
                        return match end - s {
                            0 => Event::Blank,
                            n if n > MAX_FRAME_BYTES => Event::Oversized,
                            _ => Event::Line(LineAt::Read { start: s, end }),
                        };
                    }
                    let fits = self.append(s, nl);
                    return self.take_line(fits);
                }
                None => {
                    self.consume(e - s);
                    if !self.discarding && !self.append(s, e) {
                        self.discarding = true;
                        self.line_len = 0;
                    }
                }
            }
        }
    }

    fn fail(&mut self, e: ProtoError) -> Event {
        self.body = Body::Done;
        Event::Error(e)
    }

    /// The body has ended: a last line without a newline is still a line.
    fn finish(&mut self) -> Event {
        self.body = Body::Done;
        if self.line_len == 0 && !self.discarding {
            return Event::End;
        }
        self.take_line(true)
    }

    /// Copies `buf[s..e]` onto the assembled line; `false` (and nothing copied) if it would
    /// not fit.
    fn append(&mut self, s: usize, e: usize) -> bool {
        let n = e - s;
        let Some(dst) = self.line.get_mut(self.line_len..self.line_len + n) else {
            return false;
        };
        dst.copy_from_slice(&self.buf[s..e]);
        self.line_len += n;
        true
    }

    /// Hands out the assembled line (or reports it oversized) and starts a new one.
    fn take_line(&mut self, fits: bool) -> Event {
        let discarded = std::mem::take(&mut self.discarding) || !fits;
        let mut len = std::mem::take(&mut self.line_len);
        if discarded {
            return Event::Oversized;
        }
        if len > 0 && self.line[len - 1] == b'\r' {
            len -= 1;
        }
        match len {
            0 => Event::Blank,
            n if n > MAX_FRAME_BYTES => Event::Oversized,
            _ => Event::Line(LineAt::Assembled { len }),
        }
    }

    /// Marks `n` body bytes at `start` as read.
    fn consume(&mut self, n: usize) {
        self.start += n;
        match &mut self.body {
            Body::Length(left) | Body::Chunked(Chunk::Data(left)) => *left -= n as u64,
            _ => {}
        }
    }

    /// The next run of body data in the buffer, stepping over chunk framing.
    fn segment(&mut self) -> Seg {
        loop {
            let avail = self.end - self.start;
            let chunk = match &mut self.body {
                Body::Length(0) => return Seg::End,
                Body::Length(left) => {
                    if avail == 0 {
                        return Seg::NeedMore;
                    }
                    let n = (*left).min(avail as u64) as usize;
                    return Seg::Data(self.start, self.start + n);
                }
                Body::UntilClose if avail == 0 => return Seg::NeedMore,
                Body::UntilClose => return Seg::Data(self.start, self.end),
                Body::Head | Body::Done => return Seg::End,
                Body::Chunked(chunk) => chunk,
            };
            if let Chunk::Data(left) = *chunk {
                if left == 0 {
                    *chunk = Chunk::DataEnd { cr: false };
                    continue;
                }
                if avail == 0 {
                    return Seg::NeedMore;
                }
                let n = left.min(avail as u64) as usize;
                return Seg::Data(self.start, self.start + n);
            }
            if avail == 0 {
                return Seg::NeedMore;
            }
            let b = self.buf[self.start];
            self.start += 1;
            match chunk {
                Chunk::Size { size, digits, ext, cr } => match b {
                    b'\n' if *digits > 0 => {
                        *chunk = if *size == 0 {
                            Chunk::Trailer { line_start: true }
                        } else {
                            Chunk::Data(*size)
                        };
                    }
                    _ if *cr => return Seg::Bad(ProtoError::BadChunk),
                    b'\r' if *digits > 0 => *cr = true,
                    // Chunk extensions (`;name=value`) carry nothing we use.
                    _ if *ext => {}
                    b';' | b' ' | b'\t' if *digits > 0 => *ext = true,
                    _ => match (b as char).to_digit(16) {
                        // Fifteen hex digits are 60 bits: no overflow, and no real chunk is
                        // anywhere near that size.
                        Some(v) if *digits < 15 => {
                            *size = (*size << 4) | u64::from(v);
                            *digits += 1;
                        }
                        _ => return Seg::Bad(ProtoError::BadChunk),
                    },
                },
                Chunk::DataEnd { cr } => match b {
                    b'\r' if !*cr => *cr = true,
                    b'\n' => *chunk = CHUNK_SIZE_START,
                    _ => return Seg::Bad(ProtoError::BadChunk),
                },
                Chunk::Trailer { line_start } => match b {
                    b'\n' if *line_start => return Seg::End,
                    b'\n' => *line_start = true,
                    b'\r' => {}
                    _ => *line_start = false,
                },
                Chunk::Data(_) => {}
            }
        }
    }

    /// Parses the response head once it is complete: `Ok(None)` until then. Sets the body
    /// framing; leaves `body` at [`Body::Head`] after an interim (1xx) response.
    fn parse_head(&mut self) -> Result<Option<u16>, ProtoError> {
        let data = &self.buf[self.start..self.end];
        let Some(len) = head_end(data) else {
            return if data.len() >= MAX_HEAD_BYTES {
                Err(ProtoError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        if len > MAX_HEAD_BYTES {
            return Err(ProtoError::HeadTooLarge);
        }
        let mut lines = data[..len].split(|&b| b == b'\n').map(trim_cr);
        let status = parse_status(lines.next().unwrap_or(b""))?;
        let mut chunked = false;
        let mut length: Option<u64> = None;
        for line in lines {
            if line.is_empty() {
                break;
            }
            let colon = line.iter().position(|&b| b == b':').ok_or(ProtoError::BadHeader)?;
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.is_empty() || !name.iter().all(|&b| token_char(b)) {
                return Err(ProtoError::BadHeader);
            }
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                for coding in value.split(|&b| b == b',').map(trim) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                        return Err(ProtoError::UnsupportedEncoding);
                    }
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_decimal(value).ok_or(ProtoError::BadHeader)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ProtoError::BadHeader);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"content-encoding") {
                for coding in value.split(|&b| b == b',').map(trim) {
                    if !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity") {
                        return Err(ProtoError::UnsupportedEncoding);
                    }
                }
            }
        }
        self.start += len;
        self.body = if (100..200).contains(&status) && status != 101 {
            Body::Head
        } else if status == 204 || status == 304 {
            Body::Length(0)
        } else if chunked {
            // Chunked framing wins over a Content-Length (RFC 9112 §6.3).
            Body::Chunked(CHUNK_SIZE_START)
        } else if let Some(n) = length {
            Body::Length(n)
        } else {
            Body::UntilClose
        };
        Ok(Some(status))
    }
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

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
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

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &b| n * 10 + u64::from(b - b'0')))
}

/// `HTTP/1.x NNN[ reason]` → `NNN`.
fn parse_status(line: &[u8]) -> Result<u16, ProtoError> {
    let bad = ProtoError::BadStatusLine;
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(bad)?;
    let [minor, b' ', a, b, c, tail @ ..] = rest else {
        return Err(bad);
    };
    if !minor.is_ascii_digit() || !matches!(tail.first(), None | Some(b' ')) {
        return Err(bad);
    }
    let mut status = 0u16;
    for d in [a, b, c] {
        if !d.is_ascii_digit() {
            return Err(bad);
        }
        status = status * 10 + u16::from(d - b'0');
    }
    if status < 100 {
        return Err(bad);
    }
    Ok(status)
}

// ---------------------------------------------------------------------------------------------
// The feed.

/// A request the server refused: its status and (the start of) its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status (401, 400, 404, 429, 503, ...).
    pub status: u16,
    /// The body, up to [`MAX_ERROR_BODY_BYTES`], invalid UTF-8 replaced.
    pub body: String,
}

impl Rejection {
    /// `true` for 401: the credentials were refused.
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }

    /// The `errorMessage` of a JSON error body (OANDA's shape), if there is one.
    pub fn error_message(&self) -> Option<String> {
        self.json_field("errorMessage")
    }

    /// The `errorCode` of a JSON error body, as text (OANDA sends it only sometimes).
    pub fn error_code(&self) -> Option<String> {
        self.json_field("errorCode")
    }

    /// A top-level string or number of a JSON object body.
    fn json_field(&self, key: &str) -> Option<String> {
        use simd_json::prelude::{ValueAsScalar, ValueObjectAccess};
        // This runs on the cold side, once per refusal; a copy is fine.
        let mut bytes = self.body.trim().as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).ok()?;
        let field = value.get(key)?;
        if let Some(s) = field.as_str() {
            return Some(s.to_owned());
        }
        field.as_i64().map(|n| n.to_string())
    }
}

/// What the feed is doing, for status lines and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Connecting, or waiting for the response head.
    Connecting,
    /// Streaming.
    Open,
    /// Lost (or never made) its connection; retrying after the backoff.
    Down,
    /// The last response was `401`: the credentials are refused. Retrying at the backoff cap.
    Unauthorized,
    /// The last response had this other non-`200` status. Retrying after the backoff.
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// Closed for good by [`FrameSource::close`].
    Closed,
}

/// The byte stream under HTTP; everything above only needs `Read`, `Write` and the socket to
/// register.
enum Transport {
    /// Plain TCP (`http://`).
    Plain(TcpStream),
    /// TLS over the same non-blocking socket (`https://`).
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &mut s.sock,
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

/// One connection's state.
enum State {
    /// Not connected; the next attempt is due at this monotonic time.
    Down { retry_at: u64 },
    /// TCP connecting, then writing the request (`written` bytes so far).
    Connecting { io: Transport, since: u64, written: usize },
    /// Request sent, reading the response head.
    Head { io: Transport, since: u64, readable: bool },
    /// A non-`200` head: reading its body for the [`Rejection`].
    Refused {
        io: Transport,
        since: u64,
        readable: bool,
        status: u16,
        body: Vec<u8>,
    },
    /// `200`: streaming lines.
    Open {
        io: Transport,
        last_line: u64,
        readable: bool,
    },
}

/// One connection, its reader and the epoch that tags its frames.
struct Conn {
    state: State,
    epoch: u32,
    token: Token,
    reader: Reader,
}

/// What one step of a connection produced.
enum Step {
    /// A body line.
    Line(LineAt),
    /// An oversized line was skipped.
    Oversized,
    /// Nothing now.
    Idle,
    /// The connection failed or closed; `was_open` says whether it had been streaming.
    Lost { was_open: bool },
    /// The server refused the request.
    Refused(Rejection),
}

/// What a connection step needs from its feed.
struct StepCtx<'a> {
    target: &'a HttpTarget,
    tls: Option<&'a TlsConfig>,
    request: &'a [u8],
    poll: &'a Poll,
    stale_after_ns: u64,
    /// Tokens reported ready by the last poll (at most two connections).
    ready: [Token; 2],
}

const NOT_READY: Token = Token(usize::MAX);

impl Conn {
    fn new(token: Token) -> Self {
        Self {
            state: State::Down { retry_at: 0 },
            epoch: 0,
            token,
            reader: Reader::new(),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    fn is_down(&self) -> bool {
        matches!(self.state, State::Down { .. })
    }

    /// Whether the connection waits for its socket (so the feed should poll).
    fn waiting(&self) -> bool {
        matches!(
            self.state,
            State::Connecting { .. }
                | State::Head { readable: false, .. }
                | State::Refused { readable: false, .. }
                | State::Open { readable: false, .. }
        )
    }

    fn io(&mut self) -> Option<&mut Transport> {
        match &mut self.state {
            State::Down { .. } => None,
            State::Connecting { io, .. }
            | State::Head { io, .. }
            | State::Refused { io, .. }
            | State::Open { io, .. } => Some(io),
        }
    }

    fn deregister(&mut self, poll: &Poll) {
        if let Some(io) = self.io() {
            let _ = poll.registry().deregister(io.socket());
        }
    }

    /// Deregisters and drops the socket; the connection stays down until rescheduled.
    fn close(&mut self, poll: &Poll) {
        self.deregister(poll);
        self.state = State::Down { retry_at: u64::MAX };
    }

    /// Starts connecting; `Lost` if the attempt fails at once.
    fn start(&mut self, ctx: &StepCtx<'_>, now: u64) -> Step {
        self.reader.reset();
        let Ok(mut tcp) = TcpStream::connect(ctx.target.addr) else {
            return Step::Lost { was_open: false };
        };
        let _ = tcp.set_nodelay(true);
        if ctx
            .poll
            .registry()
            .register(&mut tcp, self.token, Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return Step::Lost { was_open: false };
        }
        let io = if ctx.target.tls {
            // The handshake itself runs inside the first writes of the request.
            let Some(tls) = ctx.tls else {
                return Step::Lost { was_open: false };
            };
            let Ok(name) = rustls::pki_types::ServerName::try_from(ctx.target.host().to_string()) else {
                return Step::Lost { was_open: false };
            };
            let Ok(conn) = rustls::ClientConnection::new(Arc::clone(&tls.0), name) else {
                return Step::Lost { was_open: false };
            };
            Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Transport::Plain(tcp)
        };
        self.state = State::Connecting {
            io,
            since: now,
            written: 0,
        };
        Step::Idle
    }

    /// One non-blocking step.
    fn step(&mut self, ctx: &StepCtx<'_>, now: u64) -> Step {
        let stale = |since: u64| now.saturating_sub(since) > ctx.stale_after_ns;
        match &mut self.state {
            State::Down { retry_at } => {
                if now >= *retry_at {
                    return self.start(ctx, now);
                }
                Step::Idle
            }
            State::Connecting { io, since, written } => {
                if stale(*since) {
                    return Step::Lost { was_open: false };
                }
                // A non-blocking connect is done when the socket has a peer; an error on the
                // socket means it failed (refused, unreachable).
                let socket = io.socket();
                match socket.take_error() {
                    Ok(None) => {}
                    Ok(Some(_)) | Err(_) => return Step::Lost { was_open: false },
                }
                match socket.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => return Step::Idle,
                    Err(_) => return Step::Lost { was_open: false },
                }
                while *written < ctx.request.len() {
                    match io.write(&ctx.request[*written..]) {
                        Ok(0) => return Step::Lost { was_open: false },
                        Ok(n) => *written += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Idle,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Step::Lost { was_open: false },
                    }
                }
                // TLS may still hold the request's records: they must be on the wire before
                // only reads are watched.
                match io.flush() {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                        return Step::Idle;
                    }
                    Err(_) => return Step::Lost { was_open: false },
                }
                // Only reads matter from here on.
                if ctx
                    .poll
                    .registry()
                    .reregister(io.socket(), self.token, Interest::READABLE)
                    .is_err()
                {
                    return Step::Lost { was_open: false };
                }
                let State::Connecting { io, .. } = std::mem::replace(&mut self.state, State::Down { retry_at: 0 })
                else {
                    return Step::Idle;
                };
                self.state = State::Head {
                    io,
                    since: now,
                    readable: true,
                };
                self.pump(ctx, now)
            }
            State::Head { since, .. } => {
                if stale(*since) {
                    return Step::Lost { was_open: false };
                }
                self.pump(ctx, now)
            }
            State::Refused { since, .. } => {
                if stale(*since) {
                    // The body never ended: keep what came.
                    return self.refusal();
                }
                self.pump(ctx, now)
            }
            State::Open { last_line, .. } => {
                if stale(*last_line) {
                    return Step::Lost { was_open: true };
                }
                self.pump(ctx, now)
            }
        }
    }

    fn lost(&self) -> Step {
        Step::Lost {
            was_open: self.is_open(),
        }
    }

    /// The refusal with the body read so far.
    fn refusal(&mut self) -> Step {
        match &mut self.state {
            State::Refused { status, body, .. } => Step::Refused(Rejection {
                status: *status,
                body: String::from_utf8_lossy(body).into_owned(),
            }),
            _ => Step::Lost { was_open: false },
        }
    }

    /// Works through buffered bytes, reading at most once, until there is something to return.
    fn pump(&mut self, ctx: &StepCtx<'_>, now: u64) -> Step {
        let mut did_read = false;
        loop {
            match self.reader.next() {
                Event::NeedMore => {
                    if did_read {
                        return Step::Idle;
                    }
                    let (io, readable) = match &mut self.state {
                        State::Head { io, readable, .. }
                        | State::Refused { io, readable, .. }
                        | State::Open { io, readable, .. } => (io, readable),
                        State::Down { .. } | State::Connecting { .. } => return Step::Idle,
                    };
                    if !*readable && !ctx.ready.contains(&self.token) {
                        return Step::Idle;
                    }
                    *readable = true;
                    match self.reader.read_from(io) {
                        Ok(_) => did_read = true,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            *readable = false;
                            return Step::Idle;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return self.lost(),
                    }
                }
                Event::Head { status } => {
                    let State::Head { io, readable, .. } =
                        std::mem::replace(&mut self.state, State::Down { retry_at: 0 })
                    else {
                        return Step::Lost { was_open: false };
                    };
                    self.state = if status == 200 {
                        State::Open {
                            io,
                            last_line: now,
                            readable,
                        }
                    } else {
                        State::Refused {
                            io,
                            since: now,
                            readable,
                            status,
                            body: Vec::new(),
                        }
                    };
                }
                Event::Line(at) => match &mut self.state {
                    State::Open { last_line, .. } => {
                        *last_line = now;
                        return Step::Line(at);
                    }
                    State::Refused { body, .. } => {
                        let line = self.reader.bytes(at);
                        let room = MAX_ERROR_BODY_BYTES.saturating_sub(body.len());
                        body.extend_from_slice(&line[..line.len().min(room)]);
                        if body.len() >= MAX_ERROR_BODY_BYTES {
                            return self.refusal();
                        }
                        body.push(b'\n');
                    }
                    _ => return Step::Lost { was_open: false },
                },
                Event::Blank => {
                    if let State::Open { last_line, .. } = &mut self.state {
                        *last_line = now;
                    }
                }
                Event::Oversized => {
                    if let State::Open { last_line, .. } = &mut self.state {
                        *last_line = now;
                        return Step::Oversized;
                    }
                }
                Event::End | Event::Error(_) => {
                    return match self.state {
                        State::Refused { .. } => self.refusal(),
                        _ => self.lost(),
                    };
                }
            }
        }
    }
}

/// A reconnecting HTTP/1.1 streaming frame source: one body line per frame.
pub struct HttpStreamFeed {
    target: HttpTarget,
    tls: Option<TlsConfig>,
    /// The request bytes, with every header; never printed (they hold the credentials).
    request: Vec<u8>,
    reconnect: Reconnect,
    rotate_every: Option<Duration>,
    stats: Arc<FeedStats>,
    poll: Poll,
    events: Events,
    /// Two connection slots, so a rotation can overlap; buffers are allocated once.
    conns: [Conn; 2],
    primary: usize,
    /// Whether the other slot holds a rotation's new connection.
    rotating: bool,
    rotation_started: u64,
    next_epoch: u32,
    frame_epoch: u32,
    primary_opened: u64,
    closed: bool,
    /// The frame handed out by the last `next`: its slot and line.
    current: Option<(usize, LineAt)>,
    attempt: u32,
    jitter: u64,
    turn: bool,
    /// The status of the last refusal, until a request succeeds.
    refused: Option<u16>,
    last_rejection: Option<Rejection>,
    rejections: Arc<ArrayQueue<Rejection>>,
}

impl std::fmt::Debug for HttpStreamFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request is left out on purpose: its headers hold the credentials.
        f.debug_struct("HttpStreamFeed")
            .field("target", &self.target)
            .field("state", &self.state())
            .field("epoch", &self.conns[self.primary].epoch)
            .field("rotating", &self.rotating)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl HttpStreamFeed {
    /// A feed that requests `GET target.path` with `headers` (plus `Host`, `User-Agent` and
    /// `Accept-Encoding: identity`) on first use and after every loss; over TLS with the Mozilla
    /// roots when the target is `https://` (see [`with_tls`](Self::with_tls)).
    ///
    /// # Errors
    /// `InvalidInput` for a path, host or header that cannot be sent (the message never quotes
    /// a header value); otherwise the error from creating the poller.
    pub fn new<K, V>(
        target: HttpTarget,
        headers: impl IntoIterator<Item = (K, V)>,
        reconnect: Reconnect,
        stats: Arc<FeedStats>,
    ) -> io::Result<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let request = build_request(&target, headers)?;
        let jitter = 0x9E37_79B9_7F4A_7C15 ^ u64::from(target.addr.port());
        let tls = target.tls.then(TlsConfig::webpki_roots);
        let mut conns = [Conn::new(Token(0)), Conn::new(Token(1))];
        conns[0].epoch = 1;
        conns[1].state = State::Down { retry_at: u64::MAX };
        Ok(Self {
            target,
            tls,
            request,
            reconnect,
            rotate_every: None,
            stats,
            poll: Poll::new()?,
            events: Events::with_capacity(8),
            conns,
            primary: 0,
            rotating: false,
            rotation_started: 0,
            next_epoch: 2,
            frame_epoch: 1,
            primary_opened: 0,
            closed: false,
            current: None,
            attempt: 0,
            jitter,
            turn: false,
            refused: None,
            last_rejection: None,
            rejections: Arc::new(ArrayQueue::new(REJECTION_LOG)),
        })
    }

    /// Uses these TLS settings for `https://` instead of the Mozilla roots.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Rotates the connection make-before-break every `every` (`market_data.resubscribe_sec`).
    pub fn with_rotation(mut self, every: Duration) -> Self {
        self.rotate_every = Some(every);
        self
    }

    /// Whether the primary connection is streaming.
    pub fn is_open(&self) -> bool {
        self.conns[self.primary].is_open()
    }

    /// What the feed is doing.
    pub fn state(&self) -> StreamState {
        let primary = &self.conns[self.primary];
        if self.closed {
            StreamState::Closed
        } else if primary.is_open() {
            StreamState::Open
        } else {
            match self.refused {
                Some(401) => StreamState::Unauthorized,
                Some(status) => StreamState::Rejected { status },
                None if primary.is_down() => StreamState::Down,
                None => StreamState::Connecting,
            }
        }
    }

    /// The last refusal, if any.
    pub fn last_rejection(&self) -> Option<&Rejection> {
        self.last_rejection.as_ref()
    }

    /// The queue every refusal is pushed to, for the cold side to pop and log (the oldest is
    /// dropped when it is full).
    pub fn rejections(&self) -> Arc<ArrayQueue<Rejection>> {
        Arc::clone(&self.rejections)
    }

    fn secondary(&self) -> usize {
        1 - self.primary
    }

    /// Counts and keeps a refusal.
    fn refusal(&mut self, rejection: Rejection) {
        self.stats.venue_errors.inc();
        let status = rejection.status;
        if (400..500).contains(&status) && status != 408 && status != 429 {
            self.stats.subscribe_rejected.inc();
        }
        self.refused = Some(status);
        let _ = self.rejections.force_push(rejection.clone());
        self.last_rejection = Some(rejection);
    }

    /// Schedules the primary's next attempt with backoff and jitter.
    fn primary_down(&mut self, now: u64, was_open: bool) {
        if was_open {
            self.stats.disconnects.inc();
        }
        let p = self.primary;
        self.conns[p].close(&self.poll);
        // A rotation in progress takes over at once if its connection is up.
        if self.rotating {
            self.rotating = false;
            let s = self.secondary();
            if self.conns[s].is_open() {
                self.primary = s;
                self.primary_opened = now;
                return;
            }
            self.conns[s].close(&self.poll);
        }
        let base = self.reconnect.initial.as_nanos() as u64;
        let cap = self.reconnect.cap.as_nanos() as u64;
        let delay = if self.refused == Some(401) {
            // Refused credentials stay refused: retry at the cap, not in a burst.
            cap.max(base)
        } else {
            base.saturating_mul(1u64 << self.attempt.min(20)).min(cap.max(base))
        };
        // xorshift: a deterministic jitter of up to a quarter of the delay.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let jitter = if delay >= 4 { self.jitter % (delay / 4) } else { 0 };
        self.attempt = self.attempt.saturating_add(1);
        let conn = &mut self.conns[p];
        conn.epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        conn.state = State::Down {
            retry_at: now.saturating_add(delay).saturating_add(jitter),
        };
    }

    fn ready(&self) -> [Token; 2] {
        let mut ready = [NOT_READY; 2];
        for (slot, e) in ready.iter_mut().zip(self.events.iter()) {
            *slot = e.token();
        }
        ready
    }

    fn start_rotation(&mut self, now: u64) {
        if self.rotating || !self.is_open() {
            return;
        }
        let s = self.secondary();
        let conn = &mut self.conns[s];
        conn.epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        conn.state = State::Down { retry_at: now };
        self.rotating = true;
        self.rotation_started = now;
        self.stats.rotations.inc();
    }

    /// Counts a skipped oversized line as the decoder would have counted a frame that large.
    fn oversized(&self) {
        self.stats.frames.inc();
        self.stats.bad[DecodeReason::TooLarge.index()].inc();
    }

    fn step_primary(&mut self, now: u64) -> Option<(usize, LineAt)> {
        let p = self.primary;
        let was_open = self.conns[p].is_open();
        let step = {
            let ctx = StepCtx {
                target: &self.target,
                tls: self.tls.as_ref(),
                request: &self.request,
                poll: &self.poll,
                stale_after_ns: self.reconnect.stale_after.as_nanos() as u64,
                ready: self.ready(),
            };
            self.conns[p].step(&ctx, now)
        };
        if !was_open && self.conns[p].is_open() {
            self.stats.connects.inc();
            self.attempt = 0;
            self.refused = None;
            self.primary_opened = now;
        }
        match step {
            Step::Line(at) => Some((p, at)),
            Step::Idle => None,
            Step::Oversized => {
                self.oversized();
                None
            }
            Step::Lost { was_open } => {
                self.primary_down(now, was_open);
                None
            }
            Step::Refused(rejection) => {
                self.refusal(rejection);
                self.primary_down(now, false);
                None
            }
        }
    }

    fn step_secondary(&mut self, now: u64) -> Option<(usize, LineAt)> {
        if !self.rotating {
            return None;
        }
        let s = self.secondary();
        let was_open = self.conns[s].is_open();
        let step = {
            let ctx = StepCtx {
                target: &self.target,
                tls: self.tls.as_ref(),
                request: &self.request,
                poll: &self.poll,
                stale_after_ns: self.reconnect.stale_after.as_nanos() as u64,
                ready: self.ready(),
            };
            self.conns[s].step(&ctx, now)
        };
        if !was_open && self.conns[s].is_open() {
            self.stats.connects.inc();
        }
        // A rotation that never delivers is abandoned; the primary carries on.
        let overdue = now.saturating_sub(self.rotation_started) > 2 * self.reconnect.stale_after.as_nanos() as u64;
        match step {
            Step::Line(at) => Some((s, at)),
            Step::Oversized => {
                self.oversized();
                None
            }
            Step::Lost { was_open } => {
                if was_open {
                    self.stats.disconnects.inc();
                }
                self.conns[s].close(&self.poll);
                self.rotating = false;
                None
            }
            Step::Refused(rejection) => {
                self.refusal(rejection);
                self.conns[s].close(&self.poll);
                self.rotating = false;
                None
            }
            Step::Idle if overdue => {
                // The feed task did not finish the rotation in time: an open new connection
                // takes over, a dead one is abandoned.
                if self.conns[s].is_open() {
                    self.finish_rotation();
                } else {
                    self.conns[s].close(&self.poll);
                    self.rotating = false;
                }
                None
            }
            Step::Idle => None,
        }
    }

    /// One step of the feed: `Some(meta)` when a line is held in `self.current`.
    fn advance(&mut self) -> Option<FrameMeta> {
        self.current = None;
        if self.closed {
            return None;
        }
        let now = mono_ns();
        // Readiness: poll only when some connection is waiting for its socket.
        let waiting = self.conns[self.primary].waiting() || (self.rotating && self.conns[self.secondary()].waiting());
        self.events.clear();
        if waiting {
            let _ = self.poll.poll(&mut self.events, Some(Duration::ZERO));
        }
        if let Some(every) = self.rotate_every
            && self.is_open()
            && now.saturating_sub(self.primary_opened) >= every.as_nanos() as u64
        {
            self.primary_opened = now;
            self.start_rotation(now);
        }
        // Alternate which connection is read first, so an overlap drains both.
        self.turn = !self.turn;
        let got = if self.turn {
            self.step_secondary(now).or_else(|| self.step_primary(now))
        } else {
            self.step_primary(now).or_else(|| self.step_secondary(now))
        };
        let (slot, at) = got?;
        // Stamp when the line is in hand, so tick-to-order measures our own processing, not
        // the wait for data.
        let stamp = Stamp(mono_ns());
        let recv_ns = wall_ns();
        self.frame_epoch = self.conns[slot].epoch;
        self.current = Some((slot, at));
        Some(FrameMeta { recv_ns, stamp })
    }

    /// The current frame's bytes.
    fn view(&self, meta: Option<FrameMeta>) -> Next<'_> {
        match (meta, self.current) {
            (Some(meta), Some((slot, at))) => Next::Frame(self.conns[slot].reader.bytes(at), meta),
            _ if self.closed => Next::Closed,
            _ => Next::Idle,
        }
    }
}

impl FrameSource for HttpStreamFeed {
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
        if !self.closed && self.is_open() {
            self.stats.disconnects.inc();
        }
        let s = self.secondary();
        if !self.closed && self.rotating && self.conns[s].is_open() {
            self.stats.disconnects.inc();
        }
        let p = self.primary;
        self.conns[p].close(&self.poll);
        self.conns[s].close(&self.poll);
        self.rotating = false;
        self.current = None;
        self.closed = true;
    }

    fn rotating(&self) -> Option<u32> {
        let s = &self.conns[self.secondary()];
        (self.rotating && s.is_open()).then_some(s.epoch)
    }

    fn rotate(&mut self) {
        self.start_rotation(mono_ns());
    }

    fn restart(&mut self) {
        let was_open = self.conns[self.primary].is_open();
        if self.rotating {
            let s = self.secondary();
            self.conns[s].close(&self.poll);
            self.rotating = false;
        }
        self.primary_down(mono_ns(), was_open);
    }

    fn finish_rotation(&mut self) {
        let s = self.secondary();
        if !self.rotating || !self.conns[s].is_open() {
            return;
        }
        let old = self.primary;
        // A planned close, not a lost connection: no disconnect is counted (and no alert).
        self.conns[old].close(&self.poll);
        self.primary = s;
        self.rotating = false;
        self.primary_opened = mono_ns();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Venue;
    use std::io::Cursor;
    use std::net::TcpListener;
    use std::time::Instant;

    // -----------------------------------------------------------------------------------------
    // The reader, fed from memory.

    /// Feeds `input` to a reader in reads of the given sizes (cycled) and collects what it
    /// reports, lines as text.
    fn run(input: &[u8], reads: &[usize]) -> Vec<String> {
        let mut reader = Reader::new();
        let mut source = Cursor::new(input.to_vec());
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match reader.next() {
                Event::NeedMore => {
                    let want = reads[i % reads.len()].max(1);
                    i += 1;
                    let mut limited = (&mut source).take(want as u64);
                    reader.read_from(&mut limited).unwrap();
                }
                Event::Head { status } => out.push(format!("head {status}")),
                Event::Line(at) => out.push(String::from_utf8_lossy(reader.bytes(at)).into_owned()),
                Event::Blank => out.push("blank".into()),
                Event::Oversized => out.push("oversized".into()),
                Event::End => {
                    out.push("end".into());
                    return out;
                }
                Event::Error(e) => {
                    out.push(format!("error {e:?}"));
                    return out;
                }
            }
        }
    }

    /// A chunked response carrying `body`, cut into chunks of the given sizes (cycled).
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let mut at = 0;
        let mut i = 0;
        while at < body.len() {
            let n = sizes[i % sizes.len()].max(1).min(body.len() - at);
            i += 1;
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&body[at..at + n]);
            out.extend_from_slice(b"\r\n");
            at += n;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    const BODY: &[u8] = b"{\"type\":\"HEARTBEAT\"}\n{\"a\":1}\r\nline three\n";
    const LINES: [&str; 3] = [r#"{"type":"HEARTBEAT"}"#, r#"{"a":1}"#, "line three"];

    fn expected(lines: &[&str]) -> Vec<String> {
        let mut v = vec!["head 200".to_string()];
        v.extend(lines.iter().map(|s| s.to_string()));
        v.push("end".into());
        v
    }

    #[test]
    fn lines_survive_every_chunk_and_read_boundary() {
        for chunk in 1..=BODY.len() {
            for read in [1, 2, 3, 7, 64, 4096] {
                let input = chunked(BODY, &[chunk]);
                assert_eq!(run(&input, &[read]), expected(&LINES), "chunk {chunk}, read {read}");
            }
        }
        // Uneven chunks and reads.
        let input = chunked(BODY, &[5, 1, 17, 2]);
        assert_eq!(run(&input, &[3, 11, 1, 29]), expected(&LINES));
    }

    proptest::proptest! {
        #[test]
        fn any_lines_survive_any_chunking_and_reads(
            lines in proptest::collection::vec("[ -~]{0,40}", 0..20),
            crlf in proptest::collection::vec(proptest::bool::ANY, 20),
            chunks in proptest::collection::vec(1usize..50, 1..8),
            reads in proptest::collection::vec(1usize..80, 1..8),
        ) {
            let mut body = Vec::new();
            let mut want = vec!["head 200".to_string()];
            for (i, line) in lines.iter().enumerate() {
                // A CR that ends a line's text would be taken for the CR of a CRLF.
                let line = line.trim_end_matches('\r');
                body.extend_from_slice(line.as_bytes());
                body.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
                want.push(if line.is_empty() { "blank".into() } else { line.to_string() });
            }
            want.push("end".into());
            proptest::prop_assert_eq!(run(&chunked(&body, &chunks), &reads), want);
        }
    }

    #[test]
    fn chunk_extensions_upper_case_sizes_bare_lf_and_trailers() {
        // Body `0123456789\n\nb\n`: an extension, a size with whitespace and an extension,
        // bare LF after a size and after data, upper-case hex, and a trailer field.
        let input = b"HTTP/1.1 200 OK\nTransfer-Encoding: Chunked\n\n\
            A;name=value\r\n0123456789\r\n\
            2 ; x\n\n\n\n\
            2\r\nb\n\r\n\
            0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(run(input, &[1]), ["head 200", "0123456789", "blank", "b", "end"]);
        assert_eq!(run(input, &[4096]), ["head 200", "0123456789", "blank", "b", "end"]);
        let unknown = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-custom, chunked\r\n\r\n";
        assert_eq!(run(unknown, &[4096]), ["error UnsupportedEncoding"]);
    }

    #[test]
    fn bodies_by_length_and_by_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nab\ncd\r\nlastXXXXXX";
        assert_eq!(run(by_length, &[5]), ["head 200", "ab", "cd", "last", "end"]);
        let by_close = b"HTTP/1.0 200 OK\r\n\r\nab\ncd\nunterminated";
        assert_eq!(run(by_close, &[3]), ["head 200", "ab", "cd", "unterminated", "end"]);
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab\n";
        assert_eq!(run(interim, &[2]), ["head 200", "ab", "end"]);
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(run(empty, &[2]), ["head 204", "end"]);
    }

    #[test]
    fn oversized_lines_are_skipped_to_the_next_newline() {
        let mut body = vec![b'x'; MAX_FRAME_BYTES + 1];
        body.extend_from_slice(b"\nnext\n");
        let exact = vec![b'y'; MAX_FRAME_BYTES];
        body.extend_from_slice(&exact);
        body.extend_from_slice(b"\r\n");
        let mut huge = vec![b'z'; 3 * MAX_FRAME_BYTES];
        huge.push(b'\n');
        body.extend_from_slice(&huge);
        body.extend_from_slice(b"tail\n");
        for (chunks, reads) in [
            (vec![4096], vec![1000]),
            (vec![70_000], vec![65_536]),
            (vec![1, 65_535], vec![7]),
        ] {
            let got = run(&chunked(&body, &chunks), &reads);
            assert_eq!(got.len(), 7, "{chunks:?}");
            assert_eq!(&got[..3], ["head 200", "oversized", "next"]);
            assert_eq!(
                got[3].len(),
                MAX_FRAME_BYTES,
                "a line of exactly the limit passes, CR removed"
            );
            assert_eq!(&got[4..], ["oversized", "tail", "end"]);
        }
    }

    #[test]
    fn heads_and_framing_errors() {
        let r = |input: &[u8]| run(input, &[4096]);
        assert_eq!(
            r(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}"),
            ["head 401", "{}", "end"]
        );
        assert_eq!(r(b"HTTP/2 200 OK\r\n\r\n"), ["error BadStatusLine"]);
        assert_eq!(r(b"HTTP/1.1 2000 OK\r\n\r\n"), ["error BadStatusLine"]);
        assert_eq!(r(b"HTTP/1.1 20 OK\r\n\r\n"), ["error BadStatusLine"]);
        assert_eq!(r(b"garbage\r\n\r\n"), ["error BadStatusLine"]);
        assert_eq!(r(b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n"), ["error BadHeader"]);
        assert_eq!(r(b"HTTP/1.1 200 OK\r\nBad name: x\r\n\r\n"), ["error BadHeader"]);
        assert_eq!(
            r(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            ["error BadHeader"]
        );
        assert_eq!(r(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), ["error BadHeader"]);
        assert_eq!(
            r(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"),
            ["error UnsupportedEncoding"]
        );
        assert_eq!(r(b"HTTP/1.1 200 OK\r\nConte"), ["error Truncated"]);
        let chunk = |rest: &[u8]| {
            let mut v = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            v.extend_from_slice(rest);
            r(&v)
        };
        assert_eq!(chunk(b"g\r\n"), ["head 200", "error BadChunk"]);
        assert_eq!(chunk(b"\r\n"), ["head 200", "error BadChunk"]);
        assert_eq!(chunk(b"2\rx\n"), ["head 200", "error BadChunk"]);
        assert_eq!(chunk(b"2\r\nabX\r\n"), ["head 200", "error BadChunk"]);
        assert_eq!(chunk(b"1000000000000000\r\n"), ["head 200", "error BadChunk"]);
        assert_eq!(chunk(b"5\r\nab\n"), ["head 200", "ab", "error Truncated"]);
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        long.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(run(&long, &[100]), ["error HeadTooLarge"]);
        // Chunked wins over a length.
        assert_eq!(
            r(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab\n\r\n0\r\n\r\n"),
            ["head 200", "ab", "end"]
        );
    }

    #[test]
    fn requests_carry_the_headers_and_refuse_injection() {
        let target = HttpTarget {
            addr: "127.0.0.1:80".parse().unwrap(),
            authority: "example.com".into(),
            path: "/v3/x?instruments=EUR_USD%2CUSD_JPY".into(),
            tls: false,
        };
        let req = build_request(
            &target,
            [("Authorization", "Bearer t0k"), ("Accept-Datetime-Format", "RFC3339")],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(req).unwrap(),
            format!(
                "GET /v3/x?instruments=EUR_USD%2CUSD_JPY HTTP/1.1\r\nHost: example.com\r\nUser-Agent: maxx/{}\r\n\
                 Accept-Encoding: identity\r\nAuthorization: Bearer t0k\r\nAccept-Datetime-Format: RFC3339\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let e = build_request(&target, [("Authorization", "Bearer secret\r\nX: 1")]).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(build_request(&target, [("Bad Name", "x")]).is_err());
        assert!(build_request(&target.with_path("/a b"), std::iter::empty::<(&str, &str)>()).is_err());
        assert!(HttpTarget::resolve("ws://example.com/").is_err());
        assert!(HttpTarget::resolve("http:///x").is_err());
        let t = HttpTarget::resolve("http://127.0.0.1:8080/v3").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str(), t.addr.port(), t.tls, t.host()),
            ("127.0.0.1:8080", "/v3", 8080, false, "127.0.0.1")
        );
        let t = HttpTarget::resolve("https://127.0.0.1").unwrap();
        assert_eq!((t.path.as_str(), t.addr.port(), t.tls), ("/", 443, true));
        assert_eq!(HttpTarget::resolve("http://127.0.0.1").unwrap().addr.port(), 80);
    }

    #[test]
    fn rejections_expose_the_json_error() {
        let r = Rejection {
            status: 401,
            body: "{\"errorMessage\":\"Insufficient authorization to perform request.\"}\n".into(),
        };
        assert!(r.is_unauthorized());
        assert_eq!(
            r.error_message().as_deref(),
            Some("Insufficient authorization to perform request.")
        );
        assert_eq!(r.error_code(), None);
        let r = Rejection {
            status: 400,
            body: r#"{"errorCode":"X","errorMessage":"bad"}"#.into(),
        };
        assert_eq!(
            (r.error_code().as_deref(), r.error_message().as_deref()),
            (Some("X"), Some("bad"))
        );
        let r = Rejection {
            status: 503,
            body: "<html>busy</html>".into(),
        };
        assert_eq!(r.error_message(), None);
    }

    // -----------------------------------------------------------------------------------------
    // The feed, against a scripted server on loopback.

    /// What the scripted server does with one connection.
    struct Script {
        /// Byte pieces written one after another (each one flushed on its own).
        pieces: Vec<Vec<u8>>,
        /// Keep the connection open afterwards until the server is dropped.
        hold: bool,
    }

    /// A server that answers each accepted connection with the next script and records the
    /// request heads it received.
    struct Scripted {
        addr: SocketAddr,
        requests: Arc<std::sync::Mutex<Vec<String>>>,
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Scripted {
        fn start(scripts: Vec<Script>) -> Self {
            use std::sync::atomic::Ordering;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let thread = std::thread::spawn({
                let requests = Arc::clone(&requests);
                let stop = Arc::clone(&stop);
                move || {
                    let mut held = Vec::new();
                    let mut scripts = scripts.into_iter();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((mut s, _)) = listener.accept() else {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        };
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && std::io::Read::read(&mut s, &mut byte).unwrap_or(0) == 1 {
                            head.push(byte[0]);
                        }
                        requests
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&head).into_owned());
                        let Some(script) = scripts.next() else { continue };
                        for piece in &script.pieces {
                            if std::io::Write::write_all(&mut s, piece).is_err() {
                                break;
                            }
                            let _ = std::io::Write::flush(&mut s);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if script.hold {
                            held.push(s);
                        }
                    }
                }
            });
            Self {
                addr,
                requests,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Scripted {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn reconnect(stale_after: Duration) -> Reconnect {
        Reconnect {
            initial: Duration::from_millis(5),
            cap: Duration::from_millis(50),
            stale_after,
        }
    }

    fn feed(addr: SocketAddr, stale_after: Duration, stats: &Arc<FeedStats>) -> HttpStreamFeed {
        let target = HttpTarget::resolve(&format!("http://{addr}/stream?x=1")).unwrap();
        HttpStreamFeed::new(
            target,
            [("Authorization", "Bearer t")],
            reconnect(stale_after),
            Arc::clone(stats),
        )
        .unwrap()
    }

    /// Pumps until `n` frames have arrived or `done` holds.
    fn pump(feed: &mut HttpStreamFeed, n: usize, mut done: impl FnMut(&HttpStreamFeed) -> bool) -> Vec<(String, u32)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n && !done(feed) {
            assert!(
                Instant::now() < deadline,
                "timed out with {got:?}, state {:?}",
                feed.state()
            );
            match feed.next_tagged() {
                (Next::Frame(bytes, _), epoch) => got.push((String::from_utf8_lossy(bytes).into_owned(), epoch)),
                (Next::Idle, _) => std::thread::yield_now(),
                other => panic!("{other:?}"),
            }
        }
        got
    }

    /// A chunked response carrying `body` whose stream stays open: no last chunk.
    fn open_chunked(body: &[u8]) -> Vec<u8> {
        let mut v = chunked(body, &[10_000]);
        v.truncate(v.len() - b"0\r\n\r\n".len());
        v
    }

    fn split_everywhere(body: &[u8]) -> Vec<Vec<u8>> {
        // Every byte its own write: lines and framing arrive in the smallest pieces TCP allows.
        chunked(body, &[3, 1, 5]).into_iter().map(|b| vec![b]).collect()
    }

    #[test]
    fn a_chunked_stream_becomes_lines_and_a_close_is_a_disconnect() {
        let server = Scripted::start(vec![Script {
            pieces: split_everywhere(BODY),
            hold: false,
        }]);
        let stats = Arc::new(FeedStats::new(Venue::Oanda));
        let mut feed = feed(server.addr, Duration::from_secs(10), &stats);
        let got = pump(&mut feed, 3, |_| false);
        assert_eq!(got.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), LINES);
        assert!(got.iter().all(|(_, epoch)| *epoch == 1));
        assert_eq!(stats.connects.get(), 1);
        // The body ended with its last chunk: the feed notices and plans a reconnect.
        pump(&mut feed, usize::MAX, |_| stats.disconnects.get() == 1);
        let request = server.requests.lock().unwrap()[0].clone();
        assert!(request.starts_with("GET /stream?x=1 HTTP/1.1\r\n"), "{request}");
        assert!(request.contains(&format!("\r\nHost: {}\r\n", server.addr)), "{request}");
        assert!(request.contains("\r\nAuthorization: Bearer t\r\n"), "{request}");
        feed.close();
        assert!(matches!(feed.next(), Next::Closed));
        assert_eq!(feed.state(), StreamState::Closed);
    }

    #[test]
    fn a_401_is_a_distinct_state_with_the_venue_message() {
        let body = r#"{"errorMessage":"Insufficient authorization to perform request."}"#;
        let refusal = format!(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let server = Scripted::start(vec![Script {
            pieces: vec![refusal.into_bytes()],
            hold: true,
        }]);
        let stats = Arc::new(FeedStats::new(Venue::Oanda));
        let mut feed = feed(server.addr, Duration::from_secs(10), &stats);
        let log = feed.rejections();
        let got = pump(&mut feed, usize::MAX, |f| f.state() == StreamState::Unauthorized);
        assert!(got.is_empty());
        let rejection = feed.last_rejection().unwrap();
        assert_eq!(rejection.status, 401);
        assert_eq!(
            rejection.error_message().as_deref(),
            Some("Insufficient authorization to perform request.")
        );
        assert_eq!(log.pop().as_ref(), Some(rejection));
        assert_eq!(
            (
                stats.connects.get(),
                stats.venue_errors.get(),
                stats.subscribe_rejected.get()
            ),
            (0, 1, 1)
        );
    }

    #[test]
    fn an_oversized_line_is_counted_and_skipped() {
        let mut body = vec![b'x'; MAX_FRAME_BYTES + 10];
        body.extend_from_slice(b"\nafter\n");
        let pieces = vec![open_chunked(&body)];
        let server = Scripted::start(vec![Script { pieces, hold: true }]);
        let stats = Arc::new(FeedStats::new(Venue::Oanda));
        let mut feed = feed(server.addr, Duration::from_secs(10), &stats);
        let got = pump(&mut feed, 1, |_| false);
        assert_eq!(got[0].0, "after");
        assert_eq!(stats.bad[DecodeReason::TooLarge.index()].get(), 1);
        assert_eq!(stats.frames.get(), 1);
    }

    #[test]
    fn a_silent_stream_is_stale_and_reopened() {
        let first = Script {
            pieces: vec![open_chunked(b"one\n")],
            hold: true,
        };
        let second = Script {
            pieces: vec![open_chunked(b"two\n")],
            hold: true,
        };
        let server = Scripted::start(vec![first, second]);
        let stats = Arc::new(FeedStats::new(Venue::Oanda));
        let mut feed = feed(server.addr, Duration::from_millis(100), &stats);
        let got = pump(&mut feed, 2, |_| false);
        assert_eq!(got, [("one".to_string(), 1), ("two".to_string(), 2)]);
        assert_eq!((stats.connects.get(), stats.disconnects.get()), (2, 1));
    }
}
