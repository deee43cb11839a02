//! The mock Binance spot REST order entry: `POST`/`GET`/`DELETE /api/v3/order` and
//! `GET /api/v3/time`, as `venues.md` §1.9 and the docs' `errors.md` describe them.
//!
//! Checks, in the venue's order: the IP ban (HTTP 418 with `Retry-After`; a request sent while a
//! 429's `Retry-After` runs earns one), the API key (`X-MBX-APIKEY`; -2014 missing, -2015
//! wrong, HTTP 401), the signature over query string ++ body (-1022), the timestamp rule
//! (-1021), then the order-count limit per interval (HTTP 429, -1015, `Retry-After` to the
//! interval's end), then parameters (-1102 missing, -1100 not a decimal, -1116/-1115/-1117 bad
//! enums, -1121 unknown symbol), filters (-1013 `PRICE_FILTER`, `LOT_SIZE`, `NOTIONAL`) and the
//! matching engine (-2010 insufficient balance, would take, duplicate). Unknown orders: -2013 on
//! a query, -2011 on a cancel. Every response carries `X-MBX-USED-WEIGHT-1M`; order answers
//! carry `X-MBX-ORDER-COUNT-<interval>S`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maxx_hot::clock::mono_ns;
use maxx_hot::num::{Price, Qty};
use serde_json::{Value, json};

use super::{Arrival, Fault, Kind, MockConfig, MockHandle, MockOrder, NewOrder, Refusal, Shared, Status, Tif, counter};

/// Starts a mock Binance spot REST venue on 127.0.0.1:0.
pub fn spawn(config: MockConfig) -> std::io::Result<MockHandle> {
    let shared = Arc::new(Shared::new(config, 1));
    let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
    super::serve(shared, router, "binance")
}

/// A finished answer: status, extra headers, JSON body, and how long to hold it back.
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Value,
    delay: Option<Duration>,
}

fn error(status: StatusCode, code: i64, msg: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: json!({ "code": code, "msg": msg }),
        delay: None,
    }
}

fn ok(body: Value) -> Answer {
    Answer {
        status: StatusCode::OK,
        headers: Vec::new(),
        body,
        delay: None,
    }
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    // First thing, so the arrival time excludes the mock's own checks and matching.
    let arrived_ns = mono_ns();
    s.count(counter::requests);
    if method == Method::POST && uri.path() == "/api/v3/order" && s.recording_arrivals() {
        let client_id = super::form_pairs(&String::from_utf8_lossy(&body))
            .into_iter()
            .find(|(k, _)| k == "newClientOrderId")
            .map(|(_, v)| v)
            .unwrap_or_default();
        s.arrived(Arrival {
            client_id,
            mono_ns: arrived_ns,
        });
    }
    let answer = answer(&s, &method, &uri, &headers, &body);
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (answer.status, answer.body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        "content-type",
        "application/json;charset=UTF-8".parse().expect("static header"),
    );
    for (name, value) in answer.headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    response
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1_000).max(1)
}

fn answer(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Answer {
    let now = s.now_ms();
    let path = uri.path();
    let weight = match (method, path) {
        (&Method::GET, "/api/v3/order") => 4,
        _ => 1,
    };
    let used = {
        let mut book = s.book();
        // The IP ban first: nothing else is looked at.
        if now < book.limited_until_ms && book.banned_until_ms <= now {
            // Kept sending during a 429's Retry-After.
            book.banned_until_ms = now + s.config.ban.as_millis() as u64;
            book.limited_until_ms = 0;
        }
        if now < book.banned_until_ms {
            let until = book.banned_until_ms;
            drop(book);
            s.count(counter::banned);
            let mut a = error(
                StatusCode::IM_A_TEAPOT,
                -1003,
                &format!(
                    "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."
                ),
            );
            a.headers
                .push(("Retry-After".into(), ceil_secs(until - now).to_string()));
            return a;
        }
        book.add_weight(now, weight)
    };
    let mut a = match (method, path) {
        (&Method::GET, "/api/v3/time") => ok(json!({ "serverTime": now })),
        (&Method::POST | &Method::GET | &Method::DELETE, "/api/v3/order") => {
            let query = uri.query().unwrap_or("");
            let body = String::from_utf8_lossy(body);
            match verify(s, headers, query, &body, now) {
                Err(e) => e,
                Ok(params) => {
                    let p = Params(params);
                    match *method {
                        Method::POST => place(s, &p, now),
                        Method::GET => query_order(s, &p),
                        _ => cancel(s, &p, now),
                    }
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, -1000, "Unknown endpoint."),
    };
    a.headers.push(("X-MBX-USED-WEIGHT-1M".into(), used.to_string()));
    a
}

/// Request parameters, query string and body together.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn mandatory(&self, key: &str) -> Result<&str, Answer> {
        self.get(key).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                -1102,
                &format!("Mandatory parameter '{key}' was not sent, was empty/null, or malformed."),
            )
        })
    }

    fn decimal<T: std::str::FromStr>(&self, key: &str) -> Result<T, Answer> {
        self.mandatory(key)?.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                -1100,
                &format!("Illegal characters found in parameter '{key}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."),
            )
        })
    }
}

/// Removes the `signature` parameter from form text; returns the rest and the signature.
fn split_signature(text: &str) -> (String, Option<String>) {
    let mut rest = Vec::new();
    let mut signature = None;
    for part in text.split('&').filter(|p| !p.is_empty()) {
        match part.strip_prefix("signature=") {
            Some(sig) => signature = Some(sig.to_string()),
            None => rest.push(part),
        }
    }
    (rest.join("&"), signature)
}

/// The `SIGNED` checks: key, signature, timestamp. Returns the parameters.
fn verify(s: &Shared, headers: &HeaderMap, query: &str, body: &str, now: u64) -> Result<Vec<(String, String)>, Answer> {
    let key = headers.get("X-MBX-APIKEY").and_then(|v| v.to_str().ok()).unwrap_or("");
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        s.count(counter::key_failures);
        return Err(error(StatusCode::UNAUTHORIZED, -2014, "API-key format invalid."));
    }
    if key != s.config.api_key {
        s.count(counter::key_failures);
        return Err(error(
            StatusCode::UNAUTHORIZED,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        ));
    }
    // totalParams = query string ++ body, without the signature parameter itself.
    let (body_rest, body_sig) = split_signature(body);
    let (total, signature) = match body_sig {
        Some(sig) => (format!("{query}{body_rest}"), Some(sig)),
        None => {
            let (query_rest, sig) = split_signature(query);
            (format!("{query_rest}{body}"), sig)
        }
    };
    let Some(signature) = signature else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        ));
    };
    let expected = super::hmac_sha256_hex(s.config.secret.as_bytes(), total.as_bytes());
    if !expected.eq_ignore_ascii_case(&signature) {
        s.count(counter::signature_failures);
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1022,
            "Signature for this request is not valid.",
        ));
    }
    let mut params = super::form_pairs(query);
    params.extend(super::form_pairs(body));
    let p = Params(params);
    let timestamp: u64 = p.decimal("timestamp")?;
    let window: u64 = match p.get("recvWindow") {
        None => 5_000,
        Some(w) => w.parse().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                -1100,
                "Illegal characters found in parameter 'recvWindow'.",
            )
        })?,
    };
    if window > 60_000 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1131,
            "recvWindow must be less than 60000",
        ));
    }
    if timestamp >= now + 1_000 {
        s.count(counter::timestamp_failures);
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ));
    }
    if now.saturating_sub(timestamp) > window {
        s.count(counter::timestamp_failures);
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    Ok(p.0)
}

fn status_name(o: &MockOrder) -> &'static str {
    match o.status {
        Status::New => "NEW",
        Status::Filled => "FILLED",
        Status::Cancelled => "CANCELED",
        Status::Expired => "EXPIRED",
    }
}

fn type_name(o: &MockOrder) -> &'static str {
    match (o.kind, o.tif) {
        (Kind::Market, _) => "MARKET",
        (Kind::Limit, Tif::PostOnly) => "LIMIT_MAKER",
        (Kind::Limit, _) => "LIMIT",
    }
}

fn tif_name(o: &MockOrder) -> &'static str {
    match o.tif {
        Tif::Ioc => "IOC",
        Tif::Fok => "FOK",
        Tif::Gtc | Tif::PostOnly => "GTC",
    }
}

/// The fields every order answer shares.
fn order_json(o: &MockOrder) -> serde_json::Map<String, Value> {
    let f = super::fixed8;
    let mut m = serde_json::Map::new();
    m.insert("symbol".into(), json!(o.symbol));
    m.insert("orderId".into(), json!(o.id));
    m.insert("orderListId".into(), json!(-1));
    m.insert("clientOrderId".into(), json!(o.client_id));
    m.insert("price".into(), json!(f(o.price.raw())));
    m.insert("origQty".into(), json!(f(o.qty.raw())));
    m.insert("executedQty".into(), json!(f(o.executed.raw())));
    m.insert("origQuoteOrderQty".into(), json!("0.00000000"));
    m.insert("cummulativeQuoteQty".into(), json!(f(o.quote.raw())));
    m.insert("status".into(), json!(status_name(o)));
    m.insert("timeInForce".into(), json!(tif_name(o)));
    m.insert("type".into(), json!(type_name(o)));
    m.insert("side".into(), json!(if o.buy { "BUY" } else { "SELL" }));
    m.insert("workingTime".into(), json!(o.created_ms));
    m.insert("selfTradePreventionMode".into(), json!("NONE"));
    m
}

fn place(s: &Shared, p: &Params, now: u64) -> Answer {
    let window_ms = s.config.order_window.as_millis().max(1) as u64;
    let window_s = (window_ms / 1_000).max(1);
    let header = format!("X-MBX-ORDER-COUNT-{window_s}S");
    let mut book = s.book();
    let fault = book.fault.take();
    match &fault {
        Some(Fault::Reject { code, msg }) => return error(StatusCode::BAD_REQUEST, *code, msg),
        Some(Fault::ServerError { placed: false }) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                -1001,
                "Internal error; unable to process your request. Please try again.",
            );
        }
        _ => {}
    }
    let count = match book.count_order(now, window_ms, s.config.order_limit) {
        Ok((count, _)) => count,
        Err(end) => {
            // Whoever sends anything before the Retry-After we give is banned.
            book.limited_until_ms = now + ceil_secs(end - now) * 1_000;
            drop(book);
            s.count(counter::rate_limited);
            let mut a = error(
                StatusCode::TOO_MANY_REQUESTS,
                -1015,
                &format!(
                    "Too many new orders; current limit is {} orders per {} SECOND.",
                    s.config.order_limit, window_s
                ),
            );
            a.headers.push(("Retry-After".into(), ceil_secs(end - now).to_string()));
            return a;
        }
    };
    let counted = |mut a: Answer| {
        a.headers.push((header.clone(), count.to_string()));
        a
    };
    let new = (|| {
        let symbol = p.mandatory("symbol")?.to_string();
        let buy = match p.mandatory("side")? {
            "BUY" => true,
            "SELL" => false,
            _ => return Err(error(StatusCode::BAD_REQUEST, -1117, "Invalid side.")),
        };
        let (kind, post_only) = match p.mandatory("type")? {
            "MARKET" => (Kind::Market, false),
            "LIMIT" => (Kind::Limit, false),
            "LIMIT_MAKER" => (Kind::Limit, true),
            _ => return Err(error(StatusCode::BAD_REQUEST, -1116, "Invalid orderType.")),
        };
        let tif = if post_only {
            Tif::PostOnly
        } else if kind == Kind::Limit {
            match p.mandatory("timeInForce")? {
                "GTC" => Tif::Gtc,
                "IOC" => Tif::Ioc,
                "FOK" => Tif::Fok,
                _ => return Err(error(StatusCode::BAD_REQUEST, -1115, "Invalid timeInForce.")),
            }
        } else {
            Tif::Ioc
        };
        let qty: Qty = p.decimal("quantity")?;
        let price: Price = if kind == Kind::Limit {
            p.decimal("price")?
        } else {
            Price::ZERO
        };
        let client_id = p
            .get("newClientOrderId")
            .map_or_else(|| format!("mock-{now}"), str::to_string);
        Ok(NewOrder {
            client_id,
            symbol,
            buy,
            kind,
            tif,
            price,
            qty,
        })
    })();
    let new = match new {
        Ok(new) => new,
        Err(a) => return counted(a),
    };
    let index = match book.place(new, now, true) {
        Ok(index) => index,
        Err(refusal) => {
            let (code, msg) = match refusal {
                Refusal::UnknownSymbol => (-1121, "Invalid symbol."),
                Refusal::PriceFilter => (-1013, "Filter failure: PRICE_FILTER"),
                Refusal::LotSize => (-1013, "Filter failure: LOT_SIZE"),
                Refusal::Notional => (-1013, "Filter failure: NOTIONAL"),
                Refusal::Insufficient => (-2010, "Account has insufficient balance for requested action."),
                Refusal::WouldTake => (-2010, "Order would immediately match and take."),
                Refusal::Duplicate => (-2010, "Duplicate order sent."),
            };
            return counted(error(StatusCode::BAD_REQUEST, code, msg));
        }
    };
    let o = book.orders[index].clone();
    drop(book);
    s.count(counter::orders_placed);
    if fault == Some(Fault::ServerError { placed: true }) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        );
    }
    let resp_type = p
        .get("newOrderRespType")
        .unwrap_or(if o.kind == Kind::Market || o.tif != Tif::PostOnly {
            "FULL"
        } else {
            "ACK"
        });
    let mut m = order_json(&o);
    m.insert("transactTime".into(), json!(now));
    let body = match resp_type {
        "ACK" => json!({
            "symbol": o.symbol, "orderId": o.id, "orderListId": -1,
            "clientOrderId": o.client_id, "transactTime": now,
        }),
        "RESULT" => Value::Object(m),
        _ => {
            let fills: Vec<Value> = if o.executed.is_zero() {
                Vec::new()
            } else {
                vec![json!({
                    "price": super::fixed8(o.avg_price.raw()),
                    "qty": super::fixed8(o.executed.raw()),
                    "commission": super::fixed8(o.fee.raw()),
                    "commissionAsset": o.fee_asset,
                    "tradeId": o.id * 10,
                })]
            };
            m.insert("fills".into(), Value::Array(fills));
            Value::Object(m)
        }
    };
    let mut a = counted(ok(body));
    if let Some(Fault::Delay(d)) = fault {
        a.delay = Some(d);
    }
    a
}

/// The order a query or cancel names, by `origClientOrderId` or `orderId`.
fn named(book: &super::Book, p: &Params) -> Result<Option<usize>, Answer> {
    let symbol = p.mandatory("symbol")?;
    let client = p.get("origClientOrderId");
    let id = p.get("orderId").and_then(|i| i.parse().ok());
    if client.is_none() && id.is_none() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        ));
    }
    Ok(book.find(symbol, client, id))
}

fn query_order(s: &Shared, p: &Params) -> Answer {
    let book = s.book();
    let index = match named(&book, p) {
        Err(a) => return a,
        Ok(None) => return error(StatusCode::BAD_REQUEST, -2013, "Order does not exist."),
        Ok(Some(i)) => i,
    };
    let o = book.orders[index].clone();
    drop(book);
    s.count(counter::queries);
    let mut m = order_json(&o);
    m.insert("stopPrice".into(), json!("0.00000000"));
    m.insert("icebergQty".into(), json!("0.00000000"));
    m.insert("time".into(), json!(o.created_ms));
    m.insert("updateTime".into(), json!(o.updated_ms));
    m.insert("isWorking".into(), json!(true));
    ok(Value::Object(m))
}

fn cancel(s: &Shared, p: &Params, now: u64) -> Answer {
    let mut book = s.book();
    let index = match named(&book, p) {
        Err(a) => return a,
        Ok(index) => index,
    };
    let Some(index) = index.filter(|&i| book.cancel(i, now).is_some()) else {
        return error(StatusCode::BAD_REQUEST, -2011, "Unknown order sent.");
    };
    let o = book.orders[index].clone();
    drop(book);
    s.count(counter::orders_cancelled);
    let mut m = order_json(&o);
    m.insert("origClientOrderId".into(), json!(o.client_id));
    m.insert("clientOrderId".into(), json!(format!("cancel-{}", o.id)));
    m.insert("transactTime".into(), json!(now));
    ok(Value::Object(m))
}
