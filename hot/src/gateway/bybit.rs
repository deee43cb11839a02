//! Bybit v5 order entry over REST: the signing rule, and [`BybitSpot`], the [`Protocol`] that
//! makes [`RestGateway`] a Bybit gateway ([`BybitGateway`]).
//!
//! # Signing
//!
//! HMAC keys: `X-BAPI-SIGN` = lowercase hex of HMAC-SHA256(secret, timestamp + api_key +
//! recv_window + payload), where payload is the query string of a GET or the exact JSON body
//! bytes of a POST (`../shared/venues.md` §3.8).
//!
//! [`sign()`] returns the timestamp, receive window and signature already rendered as the header
//! values, so what is sent is by construction what was signed; nothing is allocated. Also here:
//! the private WebSocket `auth` signature and the venue's timing rule. RSA keys are not supported.
//!
//! # Requests
//!
//! * place: `POST /v5/order/create` with `{"category":"spot","symbol":..,"side":"Buy"|"Sell",
//!   "orderType":"Market"|"Limit","qty":..,"price":..,"timeInForce":"GTC"|"IOC"|"FOK"|"PostOnly",
//!   "orderLinkId":"<prefix><engine id>"}`; a market order adds `"marketUnit":"baseCoin"` so that
//!   `qty` is in the base coin for buys too (spot market buys default to quote units);
//! * query: `GET /v5/order/realtime?category=spot&symbol=..&orderLinkId=..` (closed orders are
//!   returned too when queried by `orderLinkId`);
//! * cancel: `POST /v5/order/cancel` with `{"category":"spot","symbol":..,"orderLinkId":..}`;
//! * time: `GET /v5/market/time`.
//!
//! # Answers
//!
//! Create and cancel answer only with ids, so every accepted order (and every accepted cancel)
//! is followed by a query, which reports fills and the final state. Fills come from
//! `cumExecQty`, `cumExecValue` and `cumExecFee`. The fee of a spot buy is charged in the base
//! coin (the coin received), of a sell in the quote coin; a buy's fee is converted to quote at
//! the order's average price (`avgPrice`, else `cumExecValue / cumExecQty`), truncated to 10^-8.
//! A post-only order that would take is accepted and then cancelled by the venue with
//! `rejectReason` `EC_PostOnlyWillTakeLiquidity`: it is reported as an [`ExecReport::Reject`]
//! with `PostOnlyWouldTake` (after its `Ack`).
//!
//! `retCode` (`error.mdx`) to reject reason:
//!
//! | `retCode` | Reason |
//! | --- | --- |
//! | 110003, 110017, 170124, 170132, 170133, 170134, 170136, 170137, 170140, 170193, 170194 (price, quantity or value limits and precision) | `VenueFilter` |
//! | 110004, 110007, 110012, 110044, 110045, 170131 (balance) | `InsufficientFunds` |
//! | 10002 (timestamp outside `recv_window`) | `ClockSkew` (and the clock offset is learnt) |
//! | 10003, 10004, 10005, 10007, 10009, 10010, HTTP 401 (key, signature, permission, IP) | `VenueAuth` |
//! | 10006 (per-UID limit) | `VenueRateLimit`; new orders stop until `X-Bapi-Limit-Reset-Timestamp` |
//! | 10018, HTTP 403 (IP limit) | `VenueRateLimit`; every request stops for the configured IP block (the docs: at least ten minutes) |
//! | HTTP 429 (system protection) | `VenueRateLimit`; new orders stop for a second |
//! | 110001, 170213 (order does not exist) | the order is unknown (`UnknownOrder` for a cancel) |
//! | 10016 (internal error), HTTP 5xx: status unknown | `Unknown`, resolved by query |
//! | 10001 and every other code | `VenueReject` |
//!
//! A query by `orderLinkId` of an order the venue does not know answers `retCode` 0 with an empty
//! list: that is the "does not exist" that resolves an unknown placement as never placed.
//!
//! Usage headers: a create answer with `X-Bapi-Limit-Status: 0` stops new orders until
//! `X-Bapi-Limit-Reset-Timestamp`, before the venue would refuse with 10006.
//!
//! [`ExecReport::Reject`]: crate::records::ExecReport::Reject

use super::http::{Method, Response};
use super::json::{Obj, parse_u64};
use super::rest::{
    Answer, Built, Call, HeaderValue, Listing, MAX_HEADERS, OrderState, Protocol, RestGateway, SignCx, Status, Usage,
};
use super::sign::{self, Decimal, HexSignature, Secret};
use crate::ids::Venue;
use crate::num::{Money, ONE, Price, Qty, notional, write_raw};
use crate::records::{OrderKind, RejectReason, Side, Tif};

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

/// A Bybit v5 order-entry gateway.
pub type BybitGateway = RestGateway<BybitSpot>;

/// Bybit v5's REST order-entry protocol for spot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BybitSpot {
    /// The `category` sent with every request. Only `spot` is supported: market orders carry
    /// the spot-only `marketUnit`, and fees are read by the spot rule (a buy's fee in the base
    /// coin). Linear and inverse contracts need their own protocol.
    pub category: &'static str,
}

impl Default for BybitSpot {
    fn default() -> Self {
        BybitSpot { category: "spot" }
    }
}

/// Content type of a JSON body.
const JSON: &str = "application/json";

/// A small writer over a fixed buffer; `None` once it overflows.
struct Text<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Text<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.len = sign::put(self.buf, self.len, bytes).ok()?;
        Some(())
    }

    /// `"key":"value"` with a leading comma unless first; `value` must need no JSON escaping
    /// (symbols, ids and decimals here are plain ASCII without quotes or backslashes).
    fn field(&mut self, key: &str, value: &[u8]) -> Option<()> {
        if value.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        if self.len > 1 {
            self.put(b",")?;
        }
        self.put(b"\"")?;
        self.put(key.as_bytes())?;
        self.put(b"\":\"")?;
        self.put(value)?;
        self.put(b"\"")
    }

    fn decimal(&mut self, key: &str, raw: i64) -> Option<()> {
        let mut text = [0u8; 24];
        let n = write_raw(raw, &mut text);
        self.field(key, &text[..n])
    }
}

/// A venue order id: Bybit spot ids are decimal strings; any other form is hashed (FNV-1a) so
/// that the engine still gets a stable number for it.
fn venue_order_id(text: &[u8]) -> u64 {
    parse_u64(text).unwrap_or_else(|| {
        text.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    })
}

/// Maps a non-zero `retCode`.
fn ret_code_answer(code: i64, reset_ms: Option<u64>) -> Answer {
    match code {
        10002 => Answer::ClockSkew,
        10003 | 10004 | 10005 | 10007 | 10009 | 10010 => Answer::Reject(RejectReason::VenueAuth),
        10006 => Answer::RateLimited {
            all: false,
            retry_after_ms: None,
            reset_ms,
        },
        10018 => Answer::RateLimited {
            all: true,
            retry_after_ms: None,
            reset_ms: None,
        },
        10016 => Answer::Ambiguous,
        110001 | 170213 => Answer::NotFound,
        110004 | 110007 | 110012 | 110044 | 110045 | 170131 => Answer::Reject(RejectReason::InsufficientFunds),
        110003 | 110017 | 170124 | 170132 | 170133 | 170134 | 170136 | 170137 | 170140 | 170193 | 170194 => {
            Answer::Reject(RejectReason::VenueFilter)
        }
        _ => Answer::Reject(RejectReason::VenueReject),
    }
}

/// One order of a `/v5/order/realtime` list → its state.
fn order_state(order: &Obj<'_>, side: Side) -> Option<OrderState> {
    let qty = |key| Qty::parse_bytes(order.text(key)?).ok();
    let cum_qty = qty("cumExecQty").unwrap_or(Qty::ZERO);
    let cum_quote = order
        .text("cumExecValue")
        .and_then(|t| Money::parse_bytes(t).ok())
        .unwrap_or(Money::ZERO);
    let fee_raw = order
        .text("cumExecFee")
        .and_then(|t| Money::parse_bytes(t).ok())
        .unwrap_or(Money::ZERO);
    let cum_fee = match side {
        Side::Sell => fee_raw,
        Side::Buy => {
            // Charged in the base coin: convert at the average price.
            let avg = order
                .text("avgPrice")
                .and_then(|t| Price::parse_bytes(t).ok())
                .filter(|p| !p.is_zero())
                .or_else(|| {
                    let raw = i128::from(cum_quote.raw()) * i128::from(ONE) / i128::from(cum_qty.raw().max(1));
                    i64::try_from(raw).ok().and_then(Price::from_raw)
                })
                .unwrap_or(Price::ZERO);
            Qty::from_raw(fee_raw.raw().max(0))
                .and_then(|f| notional(avg, f))
                .unwrap_or(Money::ZERO)
        }
    };
    let reject = order.text("rejectReason").unwrap_or(b"");
    let status = match order.text("orderStatus")? {
        b"Filled" => Status::Filled,
        b"Cancelled" | b"PartiallyFilledCanceled" | b"Deactivated" => {
            Status::Closed((reject == b"EC_PostOnlyWillTakeLiquidity").then_some(RejectReason::PostOnlyWouldTake))
        }
        b"Rejected" => Status::Closed(Some(RejectReason::VenueReject)),
        // New, PartiallyFilled, Untriggered, Triggered: open.
        _ => Status::Open,
    };
    Some(OrderState {
        venue_order_id: venue_order_id(order.text("orderId")?),
        status,
        cum_qty,
        cum_quote,
        cum_fee: Some(cum_fee),
        has_fills: false,
    })
}

impl Protocol for BybitSpot {
    const VENUE: Venue = Venue::Bybit;

    fn build(&self, call: &Call<'_>, cx: &SignCx<'_>, target: &mut [u8], body: &mut [u8]) -> Option<Built> {
        let none = HeaderValue::new(b"")?;
        let mut headers = [("", none); MAX_HEADERS];
        let (method, target_len, body_len) = match *call {
            Call::Time => (Method::Get, sign::put(target, 0, b"/v5/market/time").ok()?, None),
            Call::Query { listing, client_id } => {
                const PATH: &[u8] = b"/v5/order/realtime?";
                let start = sign::put(target, 0, PATH).ok()?;
                let q = &mut target[start..];
                let mut n = sign::put_param(q, 0, b"category", self.category.as_bytes()).ok()?;
                n = sign::put_param_encoded(q, n, b"symbol", listing.symbol.as_bytes()).ok()?;
                n = sign::put_param_encoded(q, n, b"orderLinkId", client_id).ok()?;
                (Method::Get, start + n, None)
            }
            Call::Place {
                listing,
                client_id,
                side,
                qty,
                kind,
                tif,
            } => {
                let mut t = Text { buf: body, len: 0 };
                t.put(b"{")?;
                t.field("category", self.category.as_bytes())?;
                t.field("symbol", listing.symbol.as_bytes())?;
                t.field("side", if side == Side::Buy { b"Buy" } else { b"Sell" })?;
                match kind {
                    OrderKind::Market => {
                        t.field("orderType", b"Market")?;
                        t.decimal("qty", qty.raw())?;
                        t.field("marketUnit", b"baseCoin")?;
                    }
                    OrderKind::Limit(price) => {
                        t.field("orderType", b"Limit")?;
                        t.decimal("qty", qty.raw())?;
                        t.decimal("price", price.raw())?;
                        let tif: &[u8] = match tif {
                            Tif::Ioc => b"IOC",
                            Tif::Fok => b"FOK",
                            Tif::PostOnly => b"PostOnly",
                            Tif::Gtc | Tif::Auto => b"GTC",
                        };
                        t.field("timeInForce", tif)?;
                    }
                }
                t.field("orderLinkId", client_id)?;
                t.put(b"}")?;
                let n = t.len;
                (Method::Post, sign::put(target, 0, b"/v5/order/create").ok()?, Some(n))
            }
            Call::Cancel { listing, client_id } => {
                let mut t = Text { buf: body, len: 0 };
                t.put(b"{")?;
                t.field("category", self.category.as_bytes())?;
                t.field("symbol", listing.symbol.as_bytes())?;
                t.field("orderLinkId", client_id)?;
                t.put(b"}")?;
                let n = t.len;
                (Method::Post, sign::put(target, 0, b"/v5/order/cancel").ok()?, Some(n))
            }
        };
        let mut header_count = 0;
        if !matches!(call, Call::Time) {
            let payload: &[u8] = match body_len {
                Some(n) => &body[..n],
                None => target
                    .get(..target_len)?
                    .splitn(2, |&b| b == b'?')
                    .nth(1)
                    .unwrap_or(b""),
            };
            let signed = sign(
                cx.secret,
                cx.api_key.as_bytes(),
                cx.timestamp_ms,
                cx.recv_window_ms,
                payload,
            );
            for (dst, (name, value)) in headers.iter_mut().zip(signed.pairs("")) {
                let value = if name == API_KEY_HEADER {
                    cx.api_key.as_bytes()
                } else {
                    value.as_bytes()
                };
                *dst = (name, HeaderValue::new(value)?);
            }
            header_count = 4;
        }
        Some(Built {
            method,
            target_len,
            body: body_len.map(|n| (JSON, n)),
            headers,
            header_count,
        })
    }

    fn answer(&self, call: &Call<'_>, side: Side, response: &Response<'_>) -> Answer {
        let reset_ms = response.header_u64("X-Bapi-Limit-Reset-Timestamp");
        match response.status {
            200 => {}
            401 => return Answer::Reject(RejectReason::VenueAuth),
            403 => {
                return Answer::RateLimited {
                    all: true,
                    retry_after_ms: None,
                    reset_ms: None,
                };
            }
            429 => {
                return Answer::RateLimited {
                    all: false,
                    retry_after_ms: Some(1_000),
                    reset_ms: None,
                };
            }
            s if s >= 500 => return Answer::Ambiguous,
            _ => {}
        }
        let Some(obj) = Obj::parse(response.body) else {
            return if response.status == 200 {
                Answer::Ambiguous
            } else {
                Answer::Reject(RejectReason::VenueReject)
            };
        };
        let Some(code) = obj.i64("retCode") else {
            return Answer::Ambiguous;
        };
        if code != 0 {
            return ret_code_answer(code, reset_ms);
        }
        let result = obj.get("result").and_then(|v| v.as_obj());
        match call {
            Call::Time => {
                let nano = result.and_then(|r| r.u64("timeNano")).map(|ns| ns / 1_000_000);
                nano.or_else(|| obj.u64("time")).map_or(Answer::Ambiguous, Answer::Time)
            }
            Call::Place { .. } | Call::Cancel { .. } => Answer::Accepted {
                venue_order_id: result.and_then(|r| r.text("orderId")).map(venue_order_id),
            },
            Call::Query { client_id, .. } => {
                let Some(list) = result.and_then(|r| r.get("list")).and_then(|l| l.as_arr()) else {
                    return Answer::Ambiguous;
                };
                let mine = list
                    .iter()
                    .filter_map(|v| v.as_obj())
                    .find(|o| o.text("orderLinkId") == Some(*client_id));
                match mine {
                    None => Answer::NotFound,
                    Some(order) => order_state(&order, side).map_or(Answer::Ambiguous, Answer::Order),
                }
            }
        }
    }

    fn each_fill(
        &self,
        _listing: &Listing,
        _side: Side,
        _response: &Response<'_>,
        _f: &mut dyn FnMut(Price, Qty, Money),
    ) {
        // Bybit answers never list fills; they are learnt from queries.
    }

    fn usage(&self, call: &Call<'_>, response: &Response<'_>, _venue_now_ms: u64) -> Option<Usage> {
        if !matches!(call, Call::Place { .. }) {
            // Other endpoints have limits of their own; these headers speak of them.
            return None;
        }
        let left = response.header_u64("X-Bapi-Limit-Status")?;
        let reset = response.header_u64("X-Bapi-Limit-Reset-Timestamp")?;
        (left == 0).then_some(Usage {
            all: false,
            until_ms: reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ret_codes_map_to_reasons() {
        assert_eq!(
            ret_code_answer(170131, None),
            Answer::Reject(RejectReason::InsufficientFunds)
        );
        assert_eq!(ret_code_answer(170137, None), Answer::Reject(RejectReason::VenueFilter));
        assert_eq!(ret_code_answer(10002, None), Answer::ClockSkew);
        assert_eq!(ret_code_answer(10004, None), Answer::Reject(RejectReason::VenueAuth));
        assert_eq!(ret_code_answer(110001, None), Answer::NotFound);
        assert_eq!(ret_code_answer(10016, None), Answer::Ambiguous);
        assert_eq!(ret_code_answer(10001, None), Answer::Reject(RejectReason::VenueReject));
        assert_eq!(
            ret_code_answer(10006, Some(5)),
            Answer::RateLimited {
                all: false,
                retry_after_ms: None,
                reset_ms: Some(5)
            }
        );
    }

    #[test]
    fn buy_fees_in_base_are_converted_at_the_average_price() {
        let body = br#"{"orderId":"1321003749386327552","orderLinkId":"mx-1","orderStatus":"Filled",
            "avgPrice":"60000","cumExecQty":"0.01","cumExecValue":"600","cumExecFee":"0.00001","rejectReason":"EC_NoError"}"#;
        let o = Obj::parse(body).unwrap();
        let buy = order_state(&o, Side::Buy).unwrap();
        assert_eq!(buy.venue_order_id, 1_321_003_749_386_327_552);
        assert_eq!(buy.status, Status::Filled);
        assert_eq!(buy.cum_fee.unwrap().to_string(), "0.6");
        let sell = order_state(&o, Side::Sell).unwrap();
        assert_eq!(sell.cum_fee.unwrap().to_string(), "0.00001");
        assert_ne!(venue_order_id(b"fd4300ae-7847-404e-b947-b46980a4d140"), 0);
    }

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
