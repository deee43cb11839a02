//! Binance spot `SIGNED` endpoints (HMAC keys): `signature` = lowercase hex of
//! HMAC-SHA256(secret, totalParams), where totalParams is the query string concatenated with no
//! separator to the request body, exactly as sent (`../shared/venues.md` §1.9).
//!
//! The request text is built by the caller in its own fixed buffer ([`sign::put_param`],
//! [`put_timing`]); [`append_signature`] signs it and appends `&signature=<hex>` in place, so a
//! signed order costs no allocation. `signature` is always the last parameter: of the query string
//! for a query-only request, of the body when there is one. The API key goes in the
//! [`API_KEY_HEADER`] header and is not signed. RSA and Ed25519 keys are not supported here.

use super::sign::{self, Decimal, HexSignature, Secret, SignError};

/// Header carrying the API key on every `SIGNED` (and `USER_STREAM`) request.
pub const API_KEY_HEADER: &str = "X-MBX-APIKEY";

/// Name of the signature parameter.
pub const SIGNATURE_PARAM: &[u8] = b"signature";

/// Name of the timestamp parameter (milliseconds since the Unix epoch here; the venue also takes µs).
pub const TIMESTAMP_PARAM: &[u8] = b"timestamp";

/// Name of the optional receive-window parameter.
pub const RECV_WINDOW_PARAM: &[u8] = b"recvWindow";

/// How long after `timestamp` the venue still accepts a request, in whole milliseconds.
///
/// The venue's default is 5000 ms and its maximum 60000 ms; it also accepts up to three decimals
/// (µs), which this type does not express.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecvWindow(u32);

impl RecvWindow {
    /// The venue's default when `recvWindow` is omitted.
    pub const DEFAULT: RecvWindow = RecvWindow(5_000);
    /// The largest window the venue accepts.
    pub const MAX_MS: u32 = 60_000;

    /// A window of `ms` milliseconds, or `None` outside `1..=60000`.
    pub const fn from_ms(ms: u32) -> Option<RecvWindow> {
        if ms == 0 || ms > Self::MAX_MS {
            None
        } else {
            Some(RecvWindow(ms))
        }
    }

    /// The window in milliseconds.
    pub const fn ms(self) -> u32 {
        self.0
    }
}

/// The venue's timing rule for a signed request: accepted only if
/// `timestamp < serverTime + 1000` and `serverTime - timestamp <= recvWindow` (all in ms).
///
/// A gateway uses it to drop a request that would be refused with -1021 before sending it; a mock
/// venue uses it to decide that refusal.
pub const fn timestamp_accepted(server_time_ms: u64, timestamp_ms: u64, window: RecvWindow) -> bool {
    timestamp_ms < server_time_ms.saturating_add(1_000)
        && server_time_ms.saturating_sub(timestamp_ms) <= window.0 as u64
}

/// Appends the timing parameters to the form text in `buf[..len]`: `recvWindow=<ms>` when
/// `window` is given (otherwise the venue applies its 5000 ms default), then `timestamp=<ms>`,
/// each preceded by `&` unless the text is empty. Returns the new length; on error nothing past
/// `len` is meaningful.
pub fn put_timing(
    buf: &mut [u8],
    len: usize,
    window: Option<RecvWindow>,
    timestamp_ms: u64,
) -> Result<usize, SignError> {
    let mut at = len;
    if let Some(window) = window {
        at = sign::put_param(buf, at, RECV_WINDOW_PARAM, Decimal::new(u64::from(window.0)).as_bytes())?;
    }
    sign::put_param(buf, at, TIMESTAMP_PARAM, Decimal::new(timestamp_ms).as_bytes())
}

/// The signature of a request whose query string is `query` and whose body is `body` (either may
/// be empty): hex HMAC-SHA256 of `query ++ body`, both exactly as sent (already percent-encoded).
pub fn signature(secret: &Secret, query: &[u8], body: &[u8]) -> HexSignature {
    sign::hmac_sha256_hex(secret, &[query, body])
}

/// Signs and appends the signature in place.
///
/// `buf[..len]` is the text that carries the parameters last: the query string of a query-only
/// request (pass an empty `query`), or the body of a request with a body (pass its query string,
/// possibly empty, as `query`). The signature covers `query ++ buf[..len]`, and
/// `&signature=<64 hex>` (without the `&` if the text is empty) is written after `len`.
/// Returns the new length, or [`SignError`] without panicking when `buf` is too small.
pub fn append_signature(secret: &Secret, query: &[u8], buf: &mut [u8], len: usize) -> Result<usize, SignError> {
    let capacity = buf.len();
    if len > capacity {
        return Err(SignError::LengthOutOfBounds { len, capacity });
    }
    let needed = len + usize::from(len > 0) + SIGNATURE_PARAM.len() + 1 + sign::HEX_SIGNATURE_LEN;
    if needed > capacity {
        return Err(SignError::BufferTooSmall { needed, capacity });
    }
    let sig = signature(secret, query, &buf[..len]);
    sign::put_param(buf, len, SIGNATURE_PARAM, &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_window_bounds() {
        assert_eq!(RecvWindow::from_ms(0), None);
        assert_eq!(RecvWindow::from_ms(60_001), None);
        assert_eq!(RecvWindow::from_ms(60_000).map(RecvWindow::ms), Some(60_000));
        assert_eq!(RecvWindow::DEFAULT.ms(), 5_000);
    }

    #[test]
    fn timing_rule_edges() {
        let w = RecvWindow::DEFAULT;
        assert!(timestamp_accepted(10_000, 5_000, w)); // exactly recvWindow old
        assert!(!timestamp_accepted(10_001, 5_000, w)); // one ms too old
        assert!(timestamp_accepted(10_000, 10_999, w)); // 999 ms ahead
        assert!(!timestamp_accepted(10_000, 11_000, w)); // 1000 ms ahead
    }
}
