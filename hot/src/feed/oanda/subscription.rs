//! The OANDA v20 price-stream request: hosts, path and query, headers, and the documented
//! connection limits (`venues.md` §4.1 and §4.3).
//!
//! OANDA has no subscribe message: the instrument set is part of the request URL, and the
//! HTTP status of the response is the only acknowledgement. Changing the set means a new
//! request. The connection itself is the venue-neutral
//! [`HttpStreamFeed`](crate::feed::http_stream::HttpStreamFeed).
//!
//! The bearer token travels in a header; [`StreamRequest`]'s `Debug` output redacts it, and
//! nothing on the hot side logs, so the token is never printed by this crate.

use core::fmt;
use std::time::Duration;

use crate::ids::VenueSymbol;

/// Live streaming host (`https://`; TLS arrives with the MarketData issue).
pub const STREAM_HOST_LIVE: &str = "stream-fxtrade.oanda.com";
/// Practice (demo account) streaming host.
pub const STREAM_HOST_PRACTICE: &str = "stream-fxpractice.oanda.com";

/// The venue sends a heartbeat line this often, whatever the price traffic.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// The docs advise treating a stream as dead after "well over 5 s (e.g. 10–15 s)" without a
/// line; this is the upper end, so a slow heartbeat is never mistaken for a dead stream.
pub const RECOMMENDED_STALE_AFTER: Duration = Duration::from_secs(15);
/// At most this many active streams per IP address; more are rejected (*Development Guide*).
pub const MAX_STREAMS_PER_IP: usize = 20;
/// At most this many new connections per second; more are rejected (*Development Guide*).
pub const MAX_NEW_CONNECTIONS_PER_SEC: u32 = 2;
/// The shortest reconnect delay that keeps one feed within [`MAX_NEW_CONNECTIONS_PER_SEC`].
pub const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Prices per instrument per second the stream sends at most (one per 250 ms window).
pub const MAX_PRICES_PER_SEC: u32 = 4;
/// Instruments one request may name.
///
/// **Ours, not OANDA's:** the docs document no per-stream instrument limit (only the
/// per-IP stream and connection-rate limits above). The cap keeps the request line short
/// (about 900 bytes at 100 names) and catches a runaway config; OANDA lists about 120
/// instruments in all.
pub const MAX_INSTRUMENTS_PER_STREAM: usize = 100;

/// How the venue should write `time` fields (`Accept-Datetime-Format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DatetimeFormat {
    /// `2016-09-20T15:05:47.960449532Z` (the venue's default).
    #[default]
    Rfc3339,
    /// `1474383947.960449532`: epoch seconds as a decimal string.
    Unix,
}

impl DatetimeFormat {
    /// The header value.
    pub const fn header_value(self) -> &'static str {
        match self {
            DatetimeFormat::Rfc3339 => "RFC3339",
            DatetimeFormat::Unix => "UNIX",
        }
    }
}

/// Why a stream request cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// No instrument named.
    NoInstruments,
    /// More than [`MAX_INSTRUMENTS_PER_STREAM`] instruments.
    TooManyInstruments(usize),
    /// An instrument that is not `BASE_QUOTE` in upper-case letters and digits.
    BadInstrument(String),
    /// An account id with characters other than ASCII letters, digits and `-`
    /// (OANDA's are `{site}-{division}-{user}-{account}`, e.g. `101-004-1234567-001`).
    BadAccount(String),
    /// An empty token, or one with characters a header value cannot carry.
    BadToken,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NoInstruments => f.write_str("no instrument to stream"),
            RequestError::TooManyInstruments(n) => {
                write!(f, "{n} instruments on one stream; at most {MAX_INSTRUMENTS_PER_STREAM}")
            }
            RequestError::BadInstrument(s) => write!(f, "instrument {s:?} is not of the form BASE_QUOTE"),
            RequestError::BadAccount(s) => write!(f, "account id {s:?} may hold only ASCII letters, digits and -"),
            RequestError::BadToken => f.write_str("the access token is empty or not a valid header value"),
        }
    }
}

impl std::error::Error for RequestError {}

/// The request path and headers of one pricing stream. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// `/v3/accounts/<account>/pricing/stream?instruments=EUR_USD%2CUSD_JPY`.
    pub path: String,
    /// `Authorization` and `Accept-Datetime-Format`; `Host` is the transport's.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for StreamRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if name.eq_ignore_ascii_case("authorization") {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("StreamRequest")
            .field("path", &self.path)
            .field("headers", &headers)
            .finish()
    }
}

/// An OANDA instrument name: `BASE_QUOTE`, upper-case letters and digits on both sides.
fn valid_instrument(name: &str) -> bool {
    let part = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    name.split_once('_')
        .is_some_and(|(base, quote)| part(base) && part(quote))
}

/// The stream path for `account` and `instruments`, in the order given, duplicates dropped.
///
/// The comma between names is sent as `%2C`, as the docs' example does.
///
/// # Errors
/// See [`RequestError`].
pub fn stream_path(account: &str, instruments: &[VenueSymbol]) -> Result<String, RequestError> {
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(RequestError::BadAccount(account.to_string()));
    }
    let mut names: Vec<&str> = Vec::with_capacity(instruments.len());
    for symbol in instruments {
        let name = symbol.as_str();
        if !valid_instrument(name) {
            return Err(RequestError::BadInstrument(name.to_string()));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(RequestError::NoInstruments);
    }
    if names.len() > MAX_INSTRUMENTS_PER_STREAM {
        return Err(RequestError::TooManyInstruments(names.len()));
    }
    Ok(format!(
        "/v3/accounts/{account}/pricing/stream?instruments={}",
        names.join("%2C")
    ))
}

/// The path and headers of a pricing stream.
///
/// `token` is the personal access token; the caller reads it from the environment on the cold
/// side and must not log it.
///
/// # Errors
/// See [`RequestError`].
pub fn stream_request(
    account: &str,
    instruments: &[VenueSymbol],
    token: &str,
    format: DatetimeFormat,
) -> Result<StreamRequest, RequestError> {
    let path = stream_path(account, instruments)?;
    // A header value is visible ASCII (and inner spaces); a token is a plain word.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::BadToken);
    }
    Ok(StreamRequest {
        path,
        headers: vec![
            ("Authorization".to_string(), format!("Bearer {token}")),
            ("Accept-Datetime-Format".to_string(), format.header_value().to_string()),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(names: &[&str]) -> Vec<VenueSymbol> {
        names.iter().map(|n| VenueSymbol::new(n).unwrap()).collect()
    }

    #[test]
    fn the_path_names_every_instrument_once() {
        assert_eq!(
            stream_path("101-004-1234567-001", &syms(&["EUR_USD", "USD_JPY", "EUR_USD"])).unwrap(),
            "/v3/accounts/101-004-1234567-001/pricing/stream?instruments=EUR_USD%2CUSD_JPY"
        );
        assert_eq!(stream_path("1", &[]), Err(RequestError::NoInstruments));
        assert!(matches!(
            stream_path("1", &syms(&["EURUSD"])),
            Err(RequestError::BadInstrument(_))
        ));
        assert!(matches!(
            stream_path("1", &syms(&["eur_usd"])),
            Err(RequestError::BadInstrument(_))
        ));
        assert!(matches!(
            stream_path("1/../2", &syms(&["EUR_USD"])),
            Err(RequestError::BadAccount(_))
        ));
        let many: Vec<VenueSymbol> = (0..=MAX_INSTRUMENTS_PER_STREAM)
            .map(|i| VenueSymbol::new(&format!("X{i}_USD")).unwrap())
            .collect();
        assert_eq!(
            stream_path("1", &many),
            Err(RequestError::TooManyInstruments(MAX_INSTRUMENTS_PER_STREAM + 1))
        );
        assert!(stream_path("1", &many[..MAX_INSTRUMENTS_PER_STREAM]).is_ok());
    }

    #[test]
    fn headers_carry_the_token_and_debug_hides_it() {
        let r = stream_request("1", &syms(&["EUR_USD"]), "s3cr3t-token", DatetimeFormat::Unix).unwrap();
        assert_eq!(
            r.headers,
            [
                ("Authorization".to_string(), "Bearer s3cr3t-token".to_string()),
                ("Accept-Datetime-Format".to_string(), "UNIX".to_string()),
            ]
        );
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>") && shown.contains("UNIX"), "{shown}");
        assert_eq!(
            stream_request("1", &syms(&["EUR_USD"]), "", DatetimeFormat::Rfc3339),
            Err(RequestError::BadToken)
        );
        assert_eq!(
            stream_request("1", &syms(&["EUR_USD"]), "a\r\nX: y", DatetimeFormat::Rfc3339),
            Err(RequestError::BadToken)
        );
        assert_eq!(DatetimeFormat::default().header_value(), "RFC3339");
    }
}
