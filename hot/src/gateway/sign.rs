//! Shared request-signing primitives for venue order entry: the [`Secret`] key, HMAC-SHA256 into
//! a fixed lowercase-hex buffer, and small writers that build request text in caller-owned buffers.
//!
//! Nothing here allocates after [`Secret`] is built: the HMAC key schedule is computed once at
//! start, a signature is a `[u8; 64]` on the stack, and the writers fail with [`SignError`]
//! instead of growing or panicking when a buffer is too small.
//! The secret never reaches a log: [`Secret`]'s `Debug` prints `Secret(***)` and it has no
//! `Display`, no accessor and no `Clone`.

use core::fmt;

use ring::hmac;

/// Length of a hex HMAC-SHA256 signature: 32 bytes, two hex digits each.
pub const HEX_SIGNATURE_LEN: usize = 64;

/// A lowercase-hex HMAC-SHA256 signature, always ASCII.
pub type HexSignature = [u8; HEX_SIGNATURE_LEN];

/// Why a request could not be written or signed; allocation-free, so it can cross the hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The caller's buffer cannot hold the text: `needed` bytes in total, `capacity` available.
    /// Nothing past the old length was kept; the caller may retry with a larger buffer.
    BufferTooSmall {
        /// Total length the buffer would need.
        needed: usize,
        /// The buffer's length.
        capacity: usize,
    },
    /// The existing length given by the caller lies past the end of its buffer.
    LengthOutOfBounds {
        /// The length the caller passed.
        len: usize,
        /// The buffer's length.
        capacity: usize,
    },
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { needed, capacity } => {
                write!(f, "request buffer too small: need {needed} bytes, have {capacity}")
            }
            Self::LengthOutOfBounds { len, capacity } => {
                write!(f, "request length {len} is past the end of a {capacity}-byte buffer")
            }
        }
    }
}

impl std::error::Error for SignError {}

/// An HMAC-SHA256 secret key for one venue account.
///
/// Only the prepared HMAC key is kept (ring pads and hashes it once); the raw text is dropped as
/// soon as the key is built. `Debug` prints `Secret(***)`; there is deliberately no way to read
/// the key back.
pub struct Secret(hmac::Key);

impl Secret {
    /// Reads the secret from the environment variable `var`.
    ///
    /// The error names the variable and the problem (unset, empty, not UTF-8) and never contains
    /// the value.
    pub fn from_env(var: &str) -> Result<Secret, String> {
        match std::env::var(var) {
            Ok(value) if value.is_empty() => Err(format!("environment variable {var} is empty")),
            Ok(value) => Ok(Self::from_bytes(value.as_bytes())),
            Err(std::env::VarError::NotPresent) => Err(format!("environment variable {var} is not set")),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("environment variable {var} is not valid UTF-8")),
        }
    }

    /// Builds a secret from its raw bytes (for a venue secret string: its UTF-8 bytes, as the
    /// venues key HMAC with the text itself, not a decoding of it).
    pub fn from_bytes(key: &[u8]) -> Secret {
        Secret(hmac::Key::new(hmac::HMAC_SHA256, key))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Lowercase-hex HMAC-SHA256 of the concatenation of `parts`, keyed with `secret`.
///
/// Taking the message in parts lets callers sign `query ++ body` (Binance) or
/// `timestamp ++ key ++ window ++ payload` (Bybit) without first copying them together.
pub fn hmac_sha256_hex(secret: &Secret, parts: &[&[u8]]) -> HexSignature {
    let mut ctx = hmac::Context::with_key(&secret.0);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = [0u8; HEX_SIGNATURE_LEN];
    hex_lower(tag.as_ref(), &mut out);
    out
}

/// Writes `bytes` as lowercase hex into `out`, two digits per byte; `out` must be exactly twice
/// as long as `bytes` (a shorter `out` is filled as far as it goes).
fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

/// The signature as `&str` (a [`HexSignature`] is ASCII by construction).
pub fn hex_str(sig: &HexSignature) -> &str {
    // Every byte written by `hex_lower` is an ASCII hex digit, so this cannot fail.
    core::str::from_utf8(sig).unwrap_or("")
}

/// An unsigned integer rendered in decimal ASCII on the stack (at most 20 digits for `u64`).
#[derive(Clone, Copy)]
pub struct Decimal {
    buf: [u8; 20],
    start: u8,
}

impl Decimal {
    /// Renders `value` in decimal with no sign, padding or separators.
    pub fn new(mut value: u64) -> Decimal {
        let mut buf = [0u8; 20];
        let mut start = buf.len();
        loop {
            start -= 1;
            // `value % 10` is below 10, so the cast cannot truncate.
            buf[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        // `start` is at most 19 here.
        Decimal {
            buf,
            start: start as u8,
        }
    }

    /// The digits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }

    /// The digits as `&str`.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.as_str())
    }
}

/// Appends `bytes` to `buf[..len]` and returns the new length, or fails without writing anything
/// past `len` when they do not fit.
pub fn put(buf: &mut [u8], len: usize, bytes: &[u8]) -> Result<usize, SignError> {
    let capacity = buf.len();
    if len > capacity {
        return Err(SignError::LengthOutOfBounds { len, capacity });
    }
    let needed = len + bytes.len();
    if needed > capacity {
        return Err(SignError::BufferTooSmall { needed, capacity });
    }
    buf[len..needed].copy_from_slice(bytes);
    Ok(needed)
}

/// Appends `key=value` to the form/query text in `buf[..len]`, preceded by `&` unless the text is
/// empty; `value` must already be percent-encoded (or be known to need none, e.g. digits).
/// On error nothing is appended (`buf` past `len` may hold scratch bytes).
pub fn put_param(buf: &mut [u8], len: usize, key: &[u8], value: &[u8]) -> Result<usize, SignError> {
    let needed = len + usize::from(len > 0) + key.len() + 1 + value.len();
    check_room(buf, len, needed)?;
    let mut at = len;
    if len > 0 {
        at = put(buf, at, b"&")?;
    }
    at = put(buf, at, key)?;
    at = put(buf, at, b"=")?;
    put(buf, at, value)
}

/// Like [`put_param`], but percent-encodes `value`: every byte outside the RFC 3986 unreserved
/// set (`A-Z a-z 0-9 - . _ ~`) becomes `%XY` with uppercase hex, so non-ASCII symbols are signed
/// in the form Binance's docs show (`１` → `%EF%BC%91`).
pub fn put_param_encoded(buf: &mut [u8], len: usize, key: &[u8], value: &[u8]) -> Result<usize, SignError> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let encoded_len: usize = value.iter().map(|&b| if is_unreserved(b) { 1 } else { 3 }).sum();
    let needed = len + usize::from(len > 0) + key.len() + 1 + encoded_len;
    check_room(buf, len, needed)?;
    let mut at = put_param(buf, len, key, b"")?;
    for &b in value {
        at = if is_unreserved(b) {
            put(buf, at, &[b])?
        } else {
            put(
                buf,
                at,
                &[b'%', DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]],
            )?
        };
    }
    Ok(at)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_room(buf: &[u8], len: usize, needed: usize) -> Result<(), SignError> {
    let capacity = buf.len();
    if len > capacity {
        Err(SignError::LengthOutOfBounds { len, capacity })
    } else if needed > capacity {
        Err(SignError::BufferTooSmall { needed, capacity })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let secret = Secret::from_bytes(b"Jefe");
        let sig = hmac_sha256_hex(&secret, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex_str(&sig),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn decimal_renders_extremes() {
        assert_eq!(Decimal::new(0).as_str(), "0");
        assert_eq!(Decimal::new(1_499_827_319_559).as_str(), "1499827319559");
        assert_eq!(Decimal::new(u64::MAX).as_str(), u64::MAX.to_string());
    }

    #[test]
    fn put_refuses_bad_lengths() {
        let mut buf = [0u8; 4];
        assert_eq!(
            put(&mut buf, 5, b""),
            Err(SignError::LengthOutOfBounds { len: 5, capacity: 4 })
        );
        assert_eq!(
            put(&mut buf, 2, b"abc"),
            Err(SignError::BufferTooSmall { needed: 5, capacity: 4 })
        );
        assert_eq!(put(&mut buf, 2, b"ab"), Ok(4));
    }
}
