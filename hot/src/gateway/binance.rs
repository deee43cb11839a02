//! Binance spot order entry over REST: the request-signing rule, and [`BinanceSpot`], the
//! [`Protocol`] that makes [`RestGateway`] a Binance spot gateway ([`BinanceSpotGateway`]).
//!
//! # Signing
//!
//! `SIGNED` endpoints (HMAC keys): `signature` = lowercase hex of HMAC-SHA256(secret,
//! totalParams), where totalParams is the query string concatenated with no separator to the
//! request body, exactly as sent (`../shared/venues.md` §1.9).
//!
//! The request text is built by the caller in its own fixed buffer ([`sign::put_param`],
//! [`put_timing`]); [`append_signature`] signs it and appends `&signature=<hex>` in place, so a
//! signed order costs no allocation. `signature` is always the last parameter: of the query string
//! for a query-only request, of the body when there is one. The API key goes in the
//! [`API_KEY_HEADER`] header and is not signed. RSA and Ed25519 keys are not supported here.
//!
//! # Requests
//!
//! * place: `POST /api/v3/order`, every parameter in the form body: `symbol`, `side`, `type`
//!   (`MARKET`, `LIMIT`, or `LIMIT_MAKER` for post-only), `timeInForce` (`GTC`/`IOC`/`FOK`, limit
//!   orders only), `quantity`, `price`, `newClientOrderId` (`<prefix><engine id>`),
//!   `newOrderRespType=FULL`, `recvWindow`, `timestamp`, `signature`;
//! * query: `GET /api/v3/order?symbol=..&origClientOrderId=..` (signed);
//! * cancel: `DELETE /api/v3/order?symbol=..&origClientOrderId=..` (signed);
//! * time: `GET /api/v3/time`.
//!
//! Prices and quantities are written in their canonical decimal form (no exponent, no trailing
//! zeros), exactly as [`Price`] and [`Qty`] hold them.
//!
//! # Answers
//!
//! A `FULL` placement answer lists its fills; each is reported as a taker fill. The fee is the
//! fill's `commission` when `commissionAsset` is the quote asset; when it is the base asset it
//! is converted at the fill's price (`commission × price`, truncated to 10^-8); when it is a third
//! asset (BNB fee discount) the venue gives no rate to convert it here, so the fee reported is an
//! estimate in quote terms at [`BinanceSpot::foreign_fee_bps_milli`] of the fill's notional. The
//! order query has no commission at all: fills learnt from it carry the gateway's configured fee
//! estimate ([`super::rest::GatewayConfig::maker_fee_bps_milli`]). The exact fees are in the
//! account's trade list, which a later reconciliation can read.
//!
//! Error codes (`errors.md`) map to reject reasons as follows:
//!
//! | Answer | Reason |
//! | --- | --- |
//! | -1013 (filter failure: `PRICE_FILTER`, `LOT_SIZE`, `NOTIONAL`, ...), -1111 (precision) | `VenueFilter` |
//! | -2010 "Account has insufficient balance for requested action." | `InsufficientFunds` |
//! | -2010 "Order would immediately match and take." | `PostOnlyWouldTake` |
//! | -2010 other messages, -1100, -1102, -1121 and every other code | `VenueReject` |
//! | -1021 (timestamp outside `recvWindow`) | `ClockSkew` (and the clock offset is learnt) |
//! | -1022 (signature), -2014 (key format), -2015 (key, IP or permission), HTTP 401 | `VenueAuth` |
//! | HTTP 429 / -1015 / -1003, HTTP 418 | `VenueRateLimit`, every request stops until `Retry-After` |
//! | -2011 "Unknown order sent.", -2013 "Order does not exist." | the order is unknown (`UnknownOrder` for a cancel; `VenueDown` once an unknown placement is confirmed absent) |
//! | HTTP 5xx, -1007 (timeout), -1006 (unexpected response): status unknown | `Unknown`, resolved by query |
//!
//! Usage headers: `X-MBX-ORDER-COUNT-10S` (or the interval configured) on an order answer at or
//! above [`BinanceSpot::order_count_limit`] stops new orders until the interval's next boundary on
//! the venue's clock; `X-MBX-USED-WEIGHT-1M` at or above [`BinanceSpot::weight_limit`] stops
//! every request until the next minute.

use super::http::{Method, Response};
use super::json::{Obj, Value};
use super::rest::{
    Answer, Built, Call, HeaderValue, Listing, MAX_HEADERS, OrderState, Protocol, RestGateway, SignCx, Status, Usage,
};
use super::sign::{self, Decimal, HexSignature, Secret, SignError};
use crate::ids::Venue;
use crate::num::{Money, Price, Qty, fee, notional, write_raw};
use crate::records::{OrderKind, RejectReason, Side, Tif};

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

/// A Binance spot order-entry gateway.
pub type BinanceSpotGateway = RestGateway<BinanceSpot>;

/// Binance spot's REST order-entry protocol, with the venue limits it watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinanceSpot {
    /// Stop new orders when the order count of the interval reaches this (the account's
    /// `ORDERS` limit, or less for headroom); `None`: do not watch.
    pub order_count_limit: Option<u64>,
    /// The order-count interval, seconds (10 for `X-MBX-ORDER-COUNT-10S`).
    pub order_count_interval_s: u64,
    /// Stop every request when the IP's used weight of the minute reaches this; `None`: do not
    /// watch.
    pub weight_limit: Option<u64>,
    /// Fee rate assumed for a fill whose commission is charged in a third asset, in
    /// thousandths of a basis point.
    pub foreign_fee_bps_milli: i64,
    order_count_header: String,
}

impl Default for BinanceSpot {
    /// Watches 90 orders per 10 s and 5400 weight per minute (90 % of the docs' example limits
    /// of 100 and 6000), and assumes 7.5 bps on third-asset commissions (the BNB-discounted
    /// base rate).
    fn default() -> Self {
        Self::new(Some(90), 10, Some(5_400), 7_500)
    }
}

impl BinanceSpot {
    /// A protocol watching `order_count_limit` orders per `order_count_interval_s` seconds and
    /// `weight_limit` weight per minute.
    pub fn new(
        order_count_limit: Option<u64>,
        order_count_interval_s: u64,
        weight_limit: Option<u64>,
        foreign_fee_bps_milli: i64,
    ) -> BinanceSpot {
        let interval = order_count_interval_s.max(1);
        BinanceSpot {
            order_count_limit,
            order_count_interval_s: interval,
            weight_limit,
            foreign_fee_bps_milli,
            order_count_header: format!("X-MBX-ORDER-COUNT-{interval}S"),
        }
    }
}

/// Content type of a form body.
const FORM: &str = "application/x-www-form-urlencoded";

/// Writes a decimal value in canonical form.
fn put_decimal(buf: &mut [u8], len: usize, key: &[u8], raw: i64) -> Option<usize> {
    let mut text = [0u8; 24];
    let n = write_raw(raw, &mut text);
    sign::put_param(buf, len, key, &text[..n]).ok()
}

/// The order's `status` → our [`Status`].
fn status(text: &[u8]) -> Status {
    match text {
        b"FILLED" => Status::Filled,
        b"CANCELED" | b"EXPIRED" | b"EXPIRED_IN_MATCH" => Status::Closed(None),
        b"REJECTED" => Status::Closed(Some(RejectReason::VenueReject)),
        // NEW, PARTIALLY_FILLED, PENDING_NEW, PENDING_CANCEL: still open.
        _ => Status::Open,
    }
}

fn decimal<T>(obj: &Obj<'_>, key: &str, parse: fn(&[u8]) -> Result<T, crate::num::DecimalError>) -> Option<T> {
    parse(obj.text(key)?).ok()
}

/// Maps an error answer: `code` and `msg` of the JSON body, and the HTTP status.
fn error_answer(
    call: &Call<'_>,
    http_status: u16,
    code: Option<i64>,
    msg: &[u8],
    retry_after_ms: Option<u64>,
) -> Answer {
    let contains = |needle: &[u8]| msg.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if http_status == 429 || http_status == 418 || matches!(code, Some(-1015 | -1003)) {
        // The venue always says `Retry-After`; without it, an order-count interval for a 429,
        // the shortest ban (two minutes) for a 418.
        let default_ms = if http_status == 418 { 120_000 } else { 10_000 };
        return Answer::RateLimited {
            all: true,
            retry_after_ms: Some(retry_after_ms.unwrap_or(default_ms)),
            reset_ms: None,
        };
    }
    if http_status >= 500 {
        return Answer::Ambiguous;
    }
    match code {
        Some(-1007 | -1006) => Answer::Ambiguous,
        Some(-1021) => Answer::ClockSkew,
        Some(-1022 | -2014 | -2015) => Answer::Reject(RejectReason::VenueAuth),
        Some(-1013 | -1111) => Answer::Reject(RejectReason::VenueFilter),
        Some(-2010) if contains(b"insufficient balance") => Answer::Reject(RejectReason::InsufficientFunds),
        Some(-2010) if contains(b"immediately match and take") => Answer::Reject(RejectReason::PostOnlyWouldTake),
        Some(-2013) => Answer::NotFound,
        Some(-2011)
            if contains(b"unknown order") || matches!(call, Call::Cancel { .. }) && contains(b"does not exist") =>
        {
            Answer::NotFound
        }
        None if http_status == 401 => Answer::Reject(RejectReason::VenueAuth),
        _ => Answer::Reject(RejectReason::VenueReject),
    }
}

impl Protocol for BinanceSpot {
    const VENUE: Venue = Venue::Binance;

    fn build(&self, call: &Call<'_>, cx: &SignCx<'_>, target: &mut [u8], body: &mut [u8]) -> Option<Built> {
        let key = HeaderValue::new(cx.api_key.as_bytes())?;
        let window = RecvWindow::from_ms(cx.recv_window_ms);
        let signed_headers = [(API_KEY_HEADER, key); MAX_HEADERS];
        const PATH: &[u8] = b"/api/v3/order";
        match *call {
            Call::Time => {
                let n = sign::put(target, 0, b"/api/v3/time").ok()?;
                Some(Built {
                    method: Method::Get,
                    target_len: n,
                    body: None,
                    headers: signed_headers,
                    header_count: 0,
                })
            }
            Call::Place {
                listing,
                client_id,
                side,
                qty,
                kind,
                tif,
            } => {
                let mut n = sign::put_param_encoded(body, 0, b"symbol", listing.symbol.as_bytes()).ok()?;
                let side = match side {
                    Side::Buy => &b"BUY"[..],
                    Side::Sell => b"SELL",
                };
                n = sign::put_param(body, n, b"side", side).ok()?;
                let (order_type, tif) = match (kind, tif) {
                    (OrderKind::Market, _) => (&b"MARKET"[..], None),
                    (OrderKind::Limit(_), Tif::PostOnly) => (&b"LIMIT_MAKER"[..], None),
                    (OrderKind::Limit(_), Tif::Ioc) => (&b"LIMIT"[..], Some(&b"IOC"[..])),
                    (OrderKind::Limit(_), Tif::Fok) => (&b"LIMIT"[..], Some(&b"FOK"[..])),
                    (OrderKind::Limit(_), Tif::Gtc | Tif::Auto) => (&b"LIMIT"[..], Some(&b"GTC"[..])),
                };
                n = sign::put_param(body, n, b"type", order_type).ok()?;
                if let Some(tif) = tif {
                    n = sign::put_param(body, n, b"timeInForce", tif).ok()?;
                }
                n = put_decimal(body, n, b"quantity", qty.raw())?;
                if let OrderKind::Limit(price) = kind {
                    n = put_decimal(body, n, b"price", price.raw())?;
                }
                n = sign::put_param_encoded(body, n, b"newClientOrderId", client_id).ok()?;
                n = sign::put_param(body, n, b"newOrderRespType", b"FULL").ok()?;
                n = put_timing(body, n, window, cx.timestamp_ms).ok()?;
                n = append_signature(cx.secret, b"", body, n).ok()?;
                Some(Built {
                    method: Method::Post,
                    target_len: sign::put(target, 0, PATH).ok()?,
                    body: Some((FORM, n)),
                    headers: signed_headers,
                    header_count: 1,
                })
            }
            Call::Query { listing, client_id } | Call::Cancel { listing, client_id } => {
                // The query string follows `?`; it is what gets signed.
                let start = sign::put(target, 0, PATH).ok()? + 1;
                *target.get_mut(start - 1)? = b'?';
                let q = &mut target[start..];
                let mut n = sign::put_param_encoded(q, 0, b"symbol", listing.symbol.as_bytes()).ok()?;
                n = sign::put_param_encoded(q, n, b"origClientOrderId", client_id).ok()?;
                n = put_timing(q, n, window, cx.timestamp_ms).ok()?;
                n = append_signature(cx.secret, b"", q, n).ok()?;
                let method = if matches!(call, Call::Query { .. }) {
                    Method::Get
                } else {
                    Method::Delete
                };
                Some(Built {
                    method,
                    target_len: start + n,
                    body: None,
                    headers: signed_headers,
                    header_count: 1,
                })
            }
        }
    }

    fn answer(&self, call: &Call<'_>, _side: Side, response: &Response<'_>) -> Answer {
        let obj = Obj::parse(response.body);
        let retry_after_ms = response.header_u64("Retry-After").map(|s| s.saturating_mul(1_000));
        if response.status != 200 {
            let code = obj.and_then(|o| o.i64("code"));
            let msg = obj.and_then(|o| o.text("msg")).unwrap_or(b"");
            return error_answer(call, response.status, code, msg, retry_after_ms);
        }
        let Some(obj) = obj else {
            // A 200 we cannot read: the request may well have been acted on.
            return Answer::Ambiguous;
        };
        if let Call::Time = call {
            return obj.u64("serverTime").map_or(Answer::Ambiguous, Answer::Time);
        }
        if let Some(code) = obj.i64("code") {
            let msg = obj.text("msg").unwrap_or(b"");
            return error_answer(call, response.status, Some(code), msg, retry_after_ms);
        }
        let state = (|| {
            Some(OrderState {
                venue_order_id: obj.u64("orderId")?,
                status: status(obj.text("status")?),
                cum_qty: decimal(&obj, "executedQty", Qty::parse_bytes)?,
                cum_quote: decimal(&obj, "cummulativeQuoteQty", Money::parse_bytes)?,
                cum_fee: None,
                has_fills: matches!(obj.get("fills"), Some(Value::Arr(a)) if a.iter().next().is_some()),
            })
        })();
        state.map_or(Answer::Ambiguous, Answer::Order)
    }

    fn each_fill(&self, listing: &Listing, _side: Side, response: &Response<'_>, f: &mut dyn FnMut(Price, Qty, Money)) {
        let Some(fills) = Obj::parse(response.body)
            .and_then(|o| o.get("fills"))
            .and_then(|v| v.as_arr())
        else {
            return;
        };
        for fill in fills.iter().filter_map(|v| v.as_obj()) {
            let (Some(price), Some(qty)) = (
                decimal(&fill, "price", Price::parse_bytes),
                decimal(&fill, "qty", Qty::parse_bytes),
            ) else {
                continue;
            };
            let commission = decimal(&fill, "commission", Money::parse_bytes).unwrap_or(Money::ZERO);
            let asset = fill.text("commissionAsset").unwrap_or(b"");
            let fee_quote = if asset == listing.quote.as_bytes() {
                commission
            } else if asset == listing.base.as_bytes() {
                Qty::from_raw(commission.raw().max(0))
                    .and_then(|c| notional(price, c))
                    .unwrap_or(Money::ZERO)
            } else if commission.is_zero() {
                Money::ZERO
            } else {
                notional(price, qty)
                    .and_then(|n| fee(n, self.foreign_fee_bps_milli))
                    .unwrap_or(Money::ZERO)
            };
            f(price, qty, fee_quote);
        }
    }

    fn usage(&self, call: &Call<'_>, response: &Response<'_>, venue_now_ms: u64) -> Option<Usage> {
        if let (Some(limit), Some(used)) = (self.weight_limit, response.header_u64("X-MBX-USED-WEIGHT-1M"))
            && used >= limit
        {
            return Some(Usage {
                all: true,
                until_ms: next_boundary(venue_now_ms, 60_000),
            });
        }
        if let Call::Place { .. } = call
            && let (Some(limit), Some(count)) = (self.order_count_limit, response.header_u64(&self.order_count_header))
            && count >= limit
        {
            return Some(Usage {
                all: false,
                until_ms: next_boundary(venue_now_ms, self.order_count_interval_s * 1_000),
            });
        }
        None
    }
}

/// The next multiple of `interval_ms` after `now_ms`: where the venue's fixed interval counters
/// reset.
fn next_boundary(now_ms: u64, interval_ms: u64) -> u64 {
    let interval = interval_ms.max(1);
    (now_ms / interval + 1) * interval
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
    fn error_codes_map_to_reasons() {
        let place = Call::Time;
        let m = |status, code, msg: &str| error_answer(&place, status, Some(code), msg.as_bytes(), Some(2_000));
        assert_eq!(
            m(400, -1013, "Filter failure: LOT_SIZE"),
            Answer::Reject(RejectReason::VenueFilter)
        );
        assert_eq!(
            m(400, -2010, "Account has insufficient balance for requested action."),
            Answer::Reject(RejectReason::InsufficientFunds)
        );
        assert_eq!(
            m(400, -2010, "Order would immediately match and take."),
            Answer::Reject(RejectReason::PostOnlyWouldTake)
        );
        assert_eq!(
            m(400, -1021, "Timestamp for this request is outside of the recvWindow."),
            Answer::ClockSkew
        );
        assert_eq!(
            m(400, -1022, "Signature for this request is not valid."),
            Answer::Reject(RejectReason::VenueAuth)
        );
        assert_eq!(
            m(401, -2015, "Invalid API-key, IP, or permissions for action."),
            Answer::Reject(RejectReason::VenueAuth)
        );
        assert_eq!(
            m(429, -1015, "Too many new orders"),
            Answer::RateLimited {
                all: true,
                retry_after_ms: Some(2_000),
                reset_ms: None
            }
        );
        assert_eq!(m(400, -2013, "Order does not exist."), Answer::NotFound);
        assert_eq!(m(400, -2011, "Unknown order sent."), Answer::NotFound);
        assert_eq!(
            m(400, -1007, "Timeout waiting for response from backend server."),
            Answer::Ambiguous
        );
        assert_eq!(m(503, 0, ""), Answer::Ambiguous);
        assert_eq!(
            m(400, -1102, "Mandatory parameter"),
            Answer::Reject(RejectReason::VenueReject)
        );
    }

    #[test]
    fn interval_boundaries() {
        assert_eq!(next_boundary(1_000, 10_000), 10_000);
        assert_eq!(next_boundary(10_000, 10_000), 20_000);
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
