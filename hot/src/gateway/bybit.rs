//! Bybit v5 signed REST requests (HMAC keys): `X-BAPI-SIGN` = lowercase hex of
//! HMAC-SHA256(secret, timestamp + api_key + recv_window + payload), where payload is the query
//! string of a GET or the exact JSON body bytes of a POST (`../shared/venues.md` §3.8).
//!
//! [`sign()`] returns the timestamp, receive window and signature already rendered as the header
//! values, so what is sent is by construction what was signed; nothing is allocated. Also here:
//! the private WebSocket `auth` signature and the venue's timing rule. RSA keys are not supported.

use super::sign::{self, Decimal, HexSignature, Secret};

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "X-BAPI-API-KEY";
/// Header carrying the request timestamp (UTC milliseconds), the one that was signed.
pub const TIMESTAMP_HEADER: &str = "X-BAPI-TIMESTAMP";
/// Header carrying the hex signature.
pub const SIGN_HEADER: &str = "X-BAPI-SIGN";
/// Header carrying the receive window in milliseconds (optional on the wire; we always send it,
/// because it is part of the signed string).
pub const RECV_WINDOW_HEADER: &str = "X-BAPI-RECV-WINDOW";
/// The venue's receive window when the header is absent, in milliseconds.
pub const DEFAULT_RECV_WINDOW_MS: u32 = 5_000;

/// The signed header values of one request, rendered on the stack.
#[derive(Clone, Copy)]
pub struct SignedHeaders {
    timestamp: Decimal,
    recv_window: Decimal,
    sign: HexSignature,
}

impl SignedHeaders {
    /// Value for [`TIMESTAMP_HEADER`].
    pub fn timestamp(&self) -> &str {
        self.timestamp.as_str()
    }

    /// Value for [`RECV_WINDOW_HEADER`].
    pub fn recv_window(&self) -> &str {
        self.recv_window.as_str()
    }

    /// Value for [`SIGN_HEADER`] (64 lowercase hex digits).
    pub fn sign(&self) -> &str {
        sign::hex_str(&self.sign)
    }

    /// All four headers as (name, value) pairs, in the order the docs list them.
    pub fn pairs<'a>(&'a self, api_key: &'a str) -> [(&'static str, &'a str); 4] {
        [
            (API_KEY_HEADER, api_key),
            (TIMESTAMP_HEADER, self.timestamp()),
            (SIGN_HEADER, self.sign()),
            (RECV_WINDOW_HEADER, self.recv_window()),
        ]
    }
}

impl core::fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("timestamp", &self.timestamp())
            .field("recv_window", &self.recv_window())
            .field("sign", &self.sign())
            .finish()
    }
}

/// Signs one request: `payload` is the query string of a GET (without `?`) or the JSON body of a
/// POST, byte for byte as it will be sent; `timestamp_ms` is UTC milliseconds.
pub fn sign(secret: &Secret, api_key: &[u8], timestamp_ms: u64, recv_window_ms: u32, payload: &[u8]) -> SignedHeaders {
    let timestamp = Decimal::new(timestamp_ms);
    let recv_window = Decimal::new(u64::from(recv_window_ms));
    let sign = sign::hmac_sha256_hex(
        secret,
        &[timestamp.as_bytes(), api_key, recv_window.as_bytes(), payload],
    );
    SignedHeaders {
        timestamp,
        recv_window,
        sign,
    }
}

/// Signature for the private WebSocket `{"op":"auth","args":[api_key, expires, signature]}`:
/// hex HMAC-SHA256 of `"GET/realtime" + expires`, `expires_ms` a future UTC millisecond time.
pub fn ws_auth_signature(secret: &Secret, expires_ms: u64) -> HexSignature {
    sign::hmac_sha256_hex(secret, &[b"GET/realtime", Decimal::new(expires_ms).as_bytes()])
}

/// The venue's timing rule: accepted only if
/// `server_time - recv_window <= timestamp < server_time + 1000` (all in ms); otherwise the venue
/// answers `retCode` 10002.
pub const fn timestamp_accepted(server_time_ms: u64, timestamp_ms: u64, recv_window_ms: u32) -> bool {
    server_time_ms.saturating_sub(recv_window_ms as u64) <= timestamp_ms
        && timestamp_ms < server_time_ms.saturating_add(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_rule_edges() {
        assert!(timestamp_accepted(10_000, 5_000, 5_000));
        assert!(!timestamp_accepted(10_000, 4_999, 5_000));
        assert!(timestamp_accepted(10_000, 10_999, 5_000));
        assert!(!timestamp_accepted(10_000, 11_000, 5_000));
    }

    #[test]
    fn headers_carry_what_was_signed() {
        let secret = Secret::from_bytes(b"k");
        let h = sign(&secret, b"XXXXXXXXXX", 1_658_384_314_791, 5_000, b"category=option");
        assert_eq!(h.timestamp(), "1658384314791");
        assert_eq!(h.recv_window(), "5000");
        let again = sign::hmac_sha256_hex(&secret, &[b"1658384314791XXXXXXXXXX5000category=option"]);
        assert_eq!(h.sign(), sign::hex_str(&again));
    }
}
