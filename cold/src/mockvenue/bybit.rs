//! The mock Bybit v5 REST order entry: `POST /v5/order/create`, `POST /v5/order/cancel`,
//! `GET /v5/order/realtime` and `GET /v5/market/time`, as `venues.md` §3.8 and the docs'
//! `error.mdx` describe them.
//!
//! Every answer is `{retCode, retMsg, result, retExtInfo, time}` with HTTP 200 unless a fault
//! switch asks for a 5xx. Checks: the API key (10003), the signature over timestamp + key +
//! receive window + payload (10004), the timestamp rule (10002), the create endpoint's
//! per-window order limit (10006 with `X-Bapi-Limit`, `X-Bapi-Limit-Status`,
//! `X-Bapi-Limit-Reset-Timestamp`, which every create answer carries), parameters (10001),
//! symbol (170121), filters (170134 price decimals, 170137 quantity decimals, 170140 order value
//! too low), balance (170131), duplicate `orderLinkId` (110072). Create and cancel answer with ids
//! only; fills are read by `/v5/order/realtime`. A post-only order that would take is accepted
//! and cancelled at once with `rejectReason` `EC_PostOnlyWillTakeLiquidity`. A cancel of an order
//! that is unknown or no longer open: 110001 "Order does not exist". A query by `orderLinkId` of
//! an unknown order: `retCode` 0 and an empty list.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maxx_hot::num::{Money, Price, Qty};
use serde_json::{Value, json};

use super::{Fault, Kind, MockConfig, MockHandle, MockOrder, NewOrder, Refusal, Shared, Status, Tif, counter};

/// The first order id the mock hands out (the docs' sample id).
const FIRST_ORDER_ID: u64 = 1_321_003_749_386_327_552;

/// Starts a mock Bybit v5 REST venue on 127.0.0.1:0.
pub fn spawn(config: MockConfig) -> std::io::Result<MockHandle> {
    let shared = Arc::new(Shared::new(config, FIRST_ORDER_ID));
    let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
    super::serve(shared, router, "bybit")
}

/// A finished answer.
struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: String,
    delay: Option<Duration>,
}

fn envelope(code: i64, msg: &str, result: Value, now: u64) -> Answer {
    let body = json!({
        "retCode": code,
        "retMsg": msg,
        "result": result,
        "retExtInfo": {},
        "time": now,
    });
    Answer {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: body.to_string(),
        delay: None,
    }
}

fn error(code: i64, msg: &str, now: u64) -> Answer {
    envelope(code, msg, json!({}), now)
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.count(counter::requests);
    let answer = answer(&s, &method, &uri, &headers, &body);
    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (answer.status, answer.body).into_response();
    let h = response.headers_mut();
    h.insert(
        "content-type",
        "application/json; charset=utf-8".parse().expect("static header"),
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

fn answer(s: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Answer {
    let now = s.now_ms();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let body = String::from_utf8_lossy(body);
    match (method, path) {
        (&Method::GET, "/v5/market/time") => envelope(
            0,
            "OK",
            json!({ "timeSecond": (now / 1_000).to_string(), "timeNano": (u128::from(now) * 1_000_000).to_string() }),
            now,
        ),
        (&Method::POST, "/v5/order/create") => match verify(s, headers, &body, now) {
            Err(a) => a,
            Ok(()) => create(s, &body, now),
        },
        (&Method::POST, "/v5/order/cancel") => match verify(s, headers, &body, now) {
            Err(a) => a,
            Ok(()) => cancel(s, &body, now),
        },
        (&Method::GET, "/v5/order/realtime") => match verify(s, headers, query, now) {
            Err(a) => a,
            Ok(()) => realtime(s, query, now),
        },
        _ => {
            let mut a = error(10017, "route not found", now);
            a.status = StatusCode::NOT_FOUND;
            a
        }
    }
}

/// Key, signature and timestamp; `payload` is the query string of a GET or the body of a POST.
fn verify(s: &Shared, headers: &HeaderMap, payload: &str, now: u64) -> Result<(), Answer> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = header("X-BAPI-API-KEY");
    if key != s.config.api_key {
        s.count(counter::key_failures);
        return Err(error(10003, "API key is invalid.", now));
    }
    let timestamp = header("X-BAPI-TIMESTAMP");
    let recv_window = match header("X-BAPI-RECV-WINDOW") {
        "" => "5000",
        w => w,
    };
    let origin = format!("{timestamp}{key}{recv_window}{payload}");
    let expected = super::hmac_sha256_hex(s.config.secret.as_bytes(), origin.as_bytes());
    if !expected.eq_ignore_ascii_case(header("X-BAPI-SIGN")) {
        s.count(counter::signature_failures);
        return Err(error(10004, &format!("error sign! origin_string[{origin}]"), now));
    }
    let (Ok(ts), Ok(window)) = (timestamp.parse::<u64>(), recv_window.parse::<u64>()) else {
        return Err(error(
            10001,
            "params error: X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW",
            now,
        ));
    };
    if !(now.saturating_sub(window) <= ts && ts < now + 1_000) {
        s.count(counter::timestamp_failures);
        return Err(error(
            10002,
            &format!(
                "invalid request, please check your server timestamp or recv_window param. req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]"
            ),
            now,
        ));
    }
    Ok(())
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn create(s: &Shared, body: &str, now: u64) -> Answer {
    let window_ms = s.config.order_window.as_millis().max(1) as u64;
    let limit = s.config.order_limit;
    let mut book = s.book();
    let fault = book.fault.take();
    match &fault {
        Some(Fault::Reject { code, msg }) => return error(*code, msg, now),
        Some(Fault::ServerError { placed: false }) => {
            return Answer {
                status: StatusCode::BAD_GATEWAY,
                headers: Vec::new(),
                body: "<html><body>502 Bad Gateway</body></html>".into(),
                delay: None,
            };
        }
        _ => {}
    }
    let limit_headers = |left: u32, reset: u64| {
        vec![
            ("X-Bapi-Limit".to_string(), limit.to_string()),
            ("X-Bapi-Limit-Status".to_string(), left.to_string()),
            ("X-Bapi-Limit-Reset-Timestamp".to_string(), reset.to_string()),
        ]
    };
    let (left, reset) = match book.count_order(now, window_ms, limit) {
        Ok((count, end)) => (limit - count, end),
        Err(end) => {
            drop(book);
            s.count(counter::rate_limited);
            let mut a = error(10006, "Too many visits!", now);
            a.headers = limit_headers(0, end);
            return a;
        }
    };
    let with_limits = |mut a: Answer| {
        a.headers = limit_headers(left, reset);
        a
    };
    let params_error = |what: &str| error(10001, &format!("params error: {what}"), now);
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return with_limits(params_error("body is not JSON"));
    };
    let new = (|| {
        if text(&v, "category") != Some("spot") {
            return Err(params_error("category"));
        }
        let symbol = text(&v, "symbol").ok_or_else(|| params_error("symbol"))?.to_string();
        let buy = match text(&v, "side") {
            Some("Buy") => true,
            Some("Sell") => false,
            _ => return Err(params_error("side")),
        };
        let kind = match text(&v, "orderType") {
            Some("Market") => Kind::Market,
            Some("Limit") => Kind::Limit,
            _ => return Err(params_error("orderType")),
        };
        let tif = match (kind, text(&v, "timeInForce")) {
            (Kind::Market, _) => Tif::Ioc,
            (Kind::Limit, None | Some("GTC")) => Tif::Gtc,
            (Kind::Limit, Some("IOC")) => Tif::Ioc,
            (Kind::Limit, Some("FOK")) => Tif::Fok,
            (Kind::Limit, Some("PostOnly")) => Tif::PostOnly,
            _ => return Err(params_error("timeInForce")),
        };
        let mut qty: Qty = text(&v, "qty")
            .and_then(|q| q.parse().ok())
            .ok_or_else(|| params_error("qty"))?;
        let price: Price = match kind {
            Kind::Limit => text(&v, "price")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| params_error("price"))?,
            Kind::Market => Price::ZERO,
        };
        // A spot market buy's qty is in the quote coin unless marketUnit says baseCoin.
        let base_units = match text(&v, "marketUnit") {
            None => !(kind == Kind::Market && buy),
            Some("baseCoin") => true,
            Some("quoteCoin") => false,
            Some(_) => return Err(params_error("marketUnit")),
        };
        if kind == Kind::Market && !base_units {
            let sym = book
                .symbol(&symbol)
                .ok_or_else(|| error(170121, "Invalid symbol.", now))?;
            let step = sym.step_size.raw().max(1);
            let raw = i128::from(qty.raw()) * 100_000_000 / i128::from(sym.price.raw().max(1));
            qty = Qty::from_raw((raw as i64 / step) * step).unwrap_or(Qty::ZERO);
        }
        let client_id = text(&v, "orderLinkId").map_or_else(|| format!("mock-{now}"), str::to_string);
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
        Err(a) => return with_limits(a),
    };
    let index = match book.place(new, now, false) {
        Ok(i) => i,
        Err(refusal) => {
            let (code, msg) = match refusal {
                Refusal::UnknownSymbol => (170121, "Invalid symbol."),
                Refusal::PriceFilter => (170134, "Order price has too many decimals."),
                Refusal::LotSize => (170137, "Order quantity has too many decimals."),
                Refusal::Notional => (170140, "Order value exceeded lower limit."),
                Refusal::Insufficient => (170131, "Insufficient balance."),
                Refusal::Duplicate => (110072, "OrderLinkedID is duplicate."),
                Refusal::WouldTake => (170135, "Order would immediately match and take."),
            };
            return with_limits(error(code, msg, now));
        }
    };
    let o = book.orders[index].clone();
    drop(book);
    s.count(counter::orders_placed);
    if fault == Some(Fault::ServerError { placed: true }) {
        return Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: Vec::new(),
            body: "<html><body>503 Service Temporarily Unavailable</body></html>".into(),
            delay: None,
        };
    }
    let mut a = with_limits(envelope(
        0,
        "OK",
        json!({ "orderId": o.id.to_string(), "orderLinkId": o.client_id }),
        now,
    ));
    if let Some(Fault::Delay(d)) = fault {
        a.delay = Some(d);
    }
    a
}

fn cancel(s: &Shared, body: &str, now: u64) -> Answer {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return error(10001, "params error: body is not JSON", now);
    };
    let Some(symbol) = text(&v, "symbol") else {
        return error(10001, "params error: symbol", now);
    };
    let client = text(&v, "orderLinkId");
    let id = text(&v, "orderId").and_then(|i| i.parse().ok());
    if client.is_none() && id.is_none() {
        return error(10001, "params error: orderId or orderLinkId", now);
    }
    let mut book = s.book();
    let found = book.find(symbol, client, id);
    let Some(index) = found.filter(|&i| book.cancel(i, now).is_some()) else {
        return error(110001, "Order does not exist", now);
    };
    let o = book.orders[index].clone();
    drop(book);
    s.count(counter::orders_cancelled);
    envelope(
        0,
        "OK",
        json!({ "orderId": o.id.to_string(), "orderLinkId": o.client_id }),
        now,
    )
}

fn order_json(o: &MockOrder) -> Value {
    let c = super::canonical;
    let (status, reject, cancel_type) = match o.status {
        Status::New => ("New", "EC_NoError", "UNKNOWN"),
        Status::Filled => ("Filled", "EC_NoError", "UNKNOWN"),
        Status::Cancelled if o.post_only_cancelled => ("Cancelled", "EC_PostOnlyWillTakeLiquidity", "UNKNOWN"),
        Status::Cancelled => ("Cancelled", "EC_NoError", "CancelByUser"),
        Status::Expired => ("Cancelled", "EC_NoImmediateQtyToFill", "UNKNOWN"),
    };
    let leaves = if o.status == Status::New {
        o.qty.checked_sub(o.executed).unwrap_or(Qty::ZERO)
    } else {
        Qty::ZERO
    };
    let tif = match o.tif {
        Tif::Gtc => "GTC",
        Tif::Ioc => "IOC",
        Tif::Fok => "FOK",
        Tif::PostOnly => "PostOnly",
    };
    json!({
        "orderId": o.id.to_string(),
        "orderLinkId": o.client_id,
        "blockTradeId": "",
        "symbol": o.symbol,
        "price": c(o.price.raw()),
        "qty": c(o.qty.raw()),
        "side": if o.buy { "Buy" } else { "Sell" },
        "isLeverage": "0",
        "positionIdx": 0,
        "orderStatus": status,
        "cancelType": cancel_type,
        "rejectReason": reject,
        "avgPrice": if o.avg_price.is_zero() { String::new() } else { c(o.avg_price.raw()) },
        "leavesQty": c(leaves.raw()),
        "leavesValue": c(maxx_hot::num::notional(o.price, leaves).unwrap_or(Money::ZERO).raw()),
        "cumExecQty": c(o.executed.raw()),
        "cumExecValue": c(o.quote.raw()),
        "cumExecFee": c(o.fee.raw()),
        "timeInForce": tif,
        "orderType": if o.kind == Kind::Market { "Market" } else { "Limit" },
        "stopOrderType": "",
        "orderIv": "",
        "triggerPrice": "0",
        "takeProfit": "0",
        "stopLoss": "0",
        "tpTriggerBy": "",
        "slTriggerBy": "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": "",
        "reduceOnly": false,
        "closeOnTrigger": false,
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "createdTime": o.created_ms.to_string(),
        "updatedTime": o.updated_ms.to_string(),
    })
}

fn realtime(s: &Shared, query: &str, now: u64) -> Answer {
    let params = super::form_pairs(query);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    if get("category") != Some("spot") {
        return error(10001, "params error: category", now);
    }
    let symbol = get("symbol");
    let client = get("orderLinkId");
    let id = get("orderId").and_then(|i| i.parse::<u64>().ok());
    let book = s.book();
    let list: Vec<Value> = book
        .orders
        .iter()
        .filter(|o| symbol.is_none_or(|sym| sym == o.symbol))
        .filter(|o| match (client, id) {
            // By id: open or closed.
            (Some(c), _) => c == o.client_id,
            (None, Some(i)) => i == o.id,
            // Otherwise open orders only.
            (None, None) => o.status == Status::New,
        })
        .rev()
        .map(order_json)
        .collect();
    drop(book);
    s.count(counter::queries);
    envelope(
        0,
        "OK",
        json!({ "list": list, "nextPageCursor": "", "category": "spot" }),
        now,
    )
}
