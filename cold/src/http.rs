//! The HTTP API (axum), bound to `http.bind`.
//!
//! Read-only endpoints answer from lock-free views the hot path publishes
//! ([`SignalBoard`]), so a slow or hostile client can never stall a hot thread.
//! Mutating endpoints require `Authorization: Bearer <token>` (the token comes from the
//! environment variable `MAXX_API_TOKEN` or from `http.token_file`); without a configured
//! token they are disabled and say so. Every error is JSON: `{"error": "<what is wrong>"}`
//! with a 4xx/5xx status, and a refused request changes nothing.
//!
//! | endpoint | auth | does |
//! |---|---|---|
//! | `GET /healthz` | no | readiness: 200 `{"status":"ok", …}` when every health probe passes (feeds live, Redis connected, cold agents running), else 503 `{"status":"failing", "failing":[names], "checks":{name:{ok, detail}}}` |
//! | `GET /livez` | no | liveness: 200 `{"status":"alive", "uptime_sec":…}` while the process can serve |
//! | `GET /pnl` | no | the Portfolio's books rebuilt from `fills`: per venue and symbol position, average price, realized, fees, net; totals; `live` once caught up |
//! | `GET /signal/{symbol}` | no | the latest ensemble signal of a symbol, with each family's contribution and the weights in force |
//! | `POST /sentiment` | yes | `{"symbol":"BTCUSDT","score":0.6}`: an external sentiment score in [-1, 1] for the sentiment family |
//! | `POST /govern/reweight` | yes | one MetaGovernor step now (empty body or `{}`), or operator weights `{"weights":{…},"normalise":false}` |
//! | `GET /govern` | no | the governor's weights, the weights the hot path has applied, and the Kelly clip |
//! | `POST /reload` | yes | re-read the config file, as SIGHUP does |
//! | `GET /risk/state` | no | trading states, every limit with its usage, Kelly clip, kill switch, recent transitions |
//! | `POST /risk/trim` | yes | `{"fraction":0.5}` or `{"symbol":"BTCUSDT","fraction":1}`: reduce positions with reduce-only orders |
//! | `POST /risk/state` | yes | `{"scope":"BTCUSDT"\|"*","state":"active"\|"reducing"\|"halted"}`: an operator transition |
//! | `POST /risk/kill` | yes | trip the kill switch: HALTED, every open order cancelled, nothing in flight leaves |
//! | `POST /risk/resume` | yes | lift the kill switch and a system halt |
//! | `POST /order` | yes | submit an order: the gRPC `SubmitOrder` as JSON (same field names, decimal strings), answered with the `OrderAck` |
//! | `POST /cancel` | yes | `{"client_order_id":…}` or `{"order_id":…}`: the gRPC `CancelOrder`, answered with the `CancelAck` |
//!
//! `/order` and `/cancel` go to the order desk ([`Desk`]), which the gRPC ExecutionService
//! shares, so both speak one contract. Enum fields take the proto names (`"SIDE_BUY"`,
//! `"ORDER_TYPE_LIMIT"`, `"TIME_IN_FORCE_GTC"`) or their short forms (`"buy"`, `"limit"`,
//! `"gtc"`, any case); answers give the proto names. Their errors carry the gRPC code too:
//! `{"error": "...", "code": "invalid_argument"}`, with the HTTP status of [`http_status`]
//! (ALREADY_EXISTS and FAILED_PRECONDITION are both 409: the `code` tells them apart).
//!
//! Requests that need the governor or the config go to the cold loop as [`ControlRequest`]s
//! (it owns the governor and the PnL attribution), and the handler awaits its answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam::queue::ArrayQueue;
use maxx_hot::board::SignalBoard;
use maxx_hot::clock::wall_ns;
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::kill::KillSwitch;
use maxx_hot::num::Money;
use maxx_hot::records::{FAMILIES, Factor, Scope, Signal, TradingState, TransitionReason};
use maxx_hot::stage::alpha::{AlphaInput, FamilyKind};
use maxx_hot::stage::risk::RiskCommand;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use crate::desk::Desk;
use crate::grpc::pb;
use crate::health::HealthBoard;
use crate::portfolio::Portfolio;

/// Environment variable holding the API bearer token.
pub const TOKEN_ENV: &str = "MAXX_API_TOKEN";

/// An error answer: a status and a message for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, in words the caller can act on.
    pub message: String,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What a control request answers: a JSON body or an error.
pub type Reply = Result<Value, ApiError>;

/// Operator-supplied ensemble weights, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperatorWeights(pub [Factor; FAMILIES]);

/// A request the cold loop answers (it owns the governor, the attribution and the config).
#[derive(Debug)]
pub enum ControlRequest {
    /// Run one governor step now, or apply operator weights.
    Reweight {
        /// `None`: let the governor decide; `Some`: apply these.
        weights: Option<OperatorWeights>,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Re-read the config file (`POST /reload`; SIGHUP does the same without a reply).
    Reload {
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// The governor's view for `GET /govern`.
    Status {
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// The RiskSentinel's view for `GET /risk/state`.
    RiskState {
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Api {
    /// Symbols ↔ instrument ids.
    pub index: Arc<InstrumentIndex>,
    /// The hot path's latest signals and weights.
    pub board: Arc<SignalBoard>,
    /// Cold → Alpha commands (sentiment scores).
    pub alpha_cmd: Arc<ArrayQueue<AlphaInput>>,
    /// Cold → Risk commands (trims, operator states, resume).
    pub risk_cmd: Arc<ArrayQueue<RiskCommand>>,
    /// The engine's kill switch (tripped directly: no queue, no cold loop in the way).
    pub kill: KillSwitch,
    /// `risk.kill_file`: while it exists the switch trips again, so resuming refuses.
    pub kill_file: Option<std::path::PathBuf>,
    /// Requests to the cold loop.
    pub control: mpsc::Sender<ControlRequest>,
    /// The bearer token of mutating endpoints; `None` disables them.
    pub token: Option<String>,
    /// When the API started, for `/livez` and `/healthz`.
    pub started: Instant,
    /// The probes behind `/healthz`.
    pub health: Arc<HealthBoard>,
    /// The Portfolio agent behind `GET /pnl`; `None` without Redis (it is built from `fills`).
    pub portfolio: Option<Arc<Portfolio>>,
    /// The order desk behind `POST /order` and `POST /cancel`.
    pub desk: Arc<Desk>,
}

/// Reads the API token: `MAXX_API_TOKEN` if set and non-empty, else the first line of
/// `token_file`. An unreadable or empty file is an error (a typo must not silently disable auth).
pub fn load_token(token_file: Option<&std::path::Path>) -> Result<Option<String>, String> {
    if let Ok(t) = std::env::var(TOKEN_ENV)
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("http.token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!("http.token_file {}: the file is empty", path.display()));
    }
    Ok(Some(token.to_string()))
}

/// The router over `api`.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/signal/{symbol}", get(signal))
        .route("/pnl", get(pnl))
        .route("/sentiment", post(sentiment))
        .route("/govern", get(govern_status))
        .route("/govern/reweight", post(reweight))
        .route("/reload", post(reload))
        .route("/risk/state", get(risk_state).post(risk_set_state))
        .route("/risk/trim", post(risk_trim))
        .route("/risk/kill", post(risk_kill))
        .route("/risk/resume", post(risk_resume))
        .route("/order", post(order))
        .route("/cancel", post(cancel))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(api)
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound address (port 0 picks
/// a free one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(listener, router(api))
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
}

/// Readiness: 200 when every probe passes, 503 naming the ones that fail.
async fn healthz(State(api): State<Arc<Api>>) -> Response {
    let report = api.health.check();
    let mut body = report.to_json();
    body["uptime_sec"] = json!(api.started.elapsed().as_secs());
    let status = if report.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The Portfolio's books: positions, average prices, realized PnL and fees per venue and symbol.
async fn pnl(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    let Some(portfolio) = &api.portfolio else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Portfolio: it is built from the fills stream, so it needs redis.enabled: true",
        ));
    };
    let health = crate::agent::Agent::health(&**portfolio);
    let mut body = serde_json::to_value(portfolio.view())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("pnl snapshot: {e}")))?;
    body["live"] = json!(health.ok);
    body["status"] = json!(health.detail);
    Ok(Json(body))
}

/// Liveness: 200 while the process can answer at all.
async fn livez(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!({ "status": "alive", "uptime_sec": api.started.elapsed().as_secs() }))
}

async fn signal(State(api): State<Arc<Api>>, Path(symbol): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = instrument(&api.index, &symbol)?;
    let Some(s) = api.board.read(id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no signal yet for {symbol}: the ensemble has not scored a trade of it since start"),
        ));
    };
    Ok(Json(signal_json(&symbol, &s, &api.board.weights())))
}

/// The `signals:<symbol>` fields plus the families' contributions and the weights in force.
fn signal_json(symbol: &str, s: &Signal, weights: &[Factor; FAMILIES]) -> Value {
    json!({
        "symbol": symbol,
        "score": s.score.to_string(),
        "side": s.side.name(),
        "confidence": s.confidence.to_string(),
        "ts": s.ts_ns,
        "tick_seq": s.tick_seq,
        "contributions": crate::control::weights_json(&s.mix),
        "weights": crate::control::weights_json(weights),
    })
}

async fn sentiment(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let body = object(&body)?;
    let mut symbol = None;
    let mut score = None;
    for (key, value) in &body {
        match key.as_str() {
            "symbol" => {
                symbol = Some(
                    value
                        .as_str()
                        .ok_or_else(|| ApiError::bad_request("symbol: expected a string such as \"BTCUSDT\""))?,
                )
            }
            "score" => score = Some(decimal(value, "score")?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected symbol, score)"
                )));
            }
        }
    }
    let symbol = symbol.ok_or_else(|| ApiError::bad_request("symbol: required"))?;
    let score = score.ok_or_else(|| ApiError::bad_request("score: required, a number in [-1, 1]"))?;
    if score.raw().unsigned_abs() > maxx_hot::num::ONE as u64 {
        return Err(ApiError::bad_request(format!("score: must be in [-1, 1], got {score}")));
    }
    let id = instrument(&api.index, symbol)?;
    let factor = to_factor(score)?;
    let ts_ns = wall_ns();
    api.alpha_cmd
        .push(AlphaInput::Sentiment {
            instrument: id,
            score: factor,
            ts_ns,
        })
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Alpha command queue is full; nothing was applied, retry shortly",
            )
        })?;
    tracing::info!(symbol, score = %score, "sentiment score accepted");
    Ok(Json(
        json!({ "symbol": symbol, "score": score.to_string(), "ts": ts_ns, "accepted": true }),
    ))
}

async fn reweight(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let weights = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        reweight_body(&object(&body)?)?
    };
    ask(&api, |reply| ControlRequest::Reweight { weights, reply }).await
}

async fn reload(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    ask(&api, |reply| ControlRequest::Reload { reply }).await
}

async fn govern_status(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    ask(&api, |reply| ControlRequest::Status { reply }).await
}

async fn risk_state(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    ask(&api, |reply| ControlRequest::RiskState { reply }).await
}

async fn risk_kill(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    api.kill.trip();
    tracing::warn!("kill switch tripped over HTTP");
    Ok(Json(json!({ "killed": true })))
}

async fn risk_resume(State(api): State<Arc<Api>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    if let Some(file) = api.kill_file.as_ref().filter(|f| f.exists()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the kill file {} exists and would trip the switch again: remove it first",
                file.display()
            ),
        ));
    }
    // Risk lifts the switch itself, and only if no newer trip has happened, so a kill racing
    // this resume wins.
    push_risk(&api, RiskCommand::Resume)?;
    tracing::warn!("kill switch and system halt lifted over HTTP");
    Ok(Json(json!({ "killed": false, "resumed": true })))
}

async fn risk_trim(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let body = object(&body)?;
    let mut scope = Scope::System;
    let mut fraction = None;
    let mut symbol = "*".to_string();
    for (key, value) in &body {
        match key.as_str() {
            "symbol" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("symbol: expected a string such as \"BTCUSDT\""))?;
                scope = Scope::Instrument(instrument(&api.index, s)?);
                symbol = s.to_string();
            }
            "fraction" => {
                let d = decimal(value, "fraction")?;
                if d.raw() <= 0 || d.raw() > maxx_hot::num::ONE {
                    return Err(ApiError::bad_request(format!("fraction: must be in (0, 1], got {d}")));
                }
                fraction = Some(to_factor(d)?);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected symbol, fraction)"
                )));
            }
        }
    }
    let fraction = fraction.ok_or_else(|| ApiError::bad_request("fraction: required, in (0, 1]"))?;
    push_risk(&api, RiskCommand::Trim { scope, fraction })?;
    tracing::warn!(symbol = %symbol, fraction = %fraction, "trim requested over HTTP");
    Ok(Json(
        json!({ "symbol": symbol, "fraction": fraction.to_string(), "accepted": true }),
    ))
}

async fn risk_set_state(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    authorize(&api, &headers)?;
    let body = object(&body)?;
    let mut scope = None;
    let mut state = None;
    for (key, value) in &body {
        let text = value
            .as_str()
            .ok_or_else(|| ApiError::bad_request(format!("{key}: expected a string")))?;
        match key.as_str() {
            "scope" => {
                scope = Some(if text == "*" {
                    Scope::System
                } else {
                    Scope::Instrument(instrument(&api.index, text)?)
                })
            }
            "state" => {
                state = Some(match text {
                    "active" => TradingState::Active,
                    "reducing" => TradingState::Reducing,
                    "halted" => TradingState::Halted,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "state: expected active, reducing or halted, got {other:?}"
                        )));
                    }
                })
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected scope, state)"
                )));
            }
        }
    }
    let scope = scope.ok_or_else(|| ApiError::bad_request("scope: required, \"*\" or a symbol"))?;
    let state = state.ok_or_else(|| ApiError::bad_request("state: required, active, reducing or halted"))?;
    push_risk(
        &api,
        RiskCommand::SetState {
            scope,
            state,
            reason: TransitionReason::Operator,
        },
    )?;
    Ok(Json(json!({ "accepted": true, "state": state.name() })))
}

/// Largest `/order` or `/cancel` body, in bytes (the gRPC limit too).
const ORDER_BODY_LIMIT: usize = crate::grpc::MAX_ORDER_REQUEST;

async fn order(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match authorize(&api, &headers)
        .map_err(api_status)
        .and_then(|()| order_request(&body))
    {
        Ok(r) => r,
        Err(s) => return status_response(&s),
    };
    match api.desk.submit(&request).await {
        Ok(ack) => Json(ack_json(&ack)).into_response(),
        Err(s) => status_response(&s),
    }
}

async fn cancel(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match authorize(&api, &headers)
        .map_err(api_status)
        .and_then(|()| cancel_request(&body))
    {
        Ok(r) => r,
        Err(s) => return status_response(&s),
    };
    match api.desk.cancel(&request).await {
        Ok(ack) => Json(cancel_json(&ack)).into_response(),
        Err(s) => status_response(&s),
    }
}

/// The HTTP status of a gRPC code, for the JSON mirror of the ExecutionService.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::OutOfRange => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The snake-case name of a gRPC code (`"invalid_argument"`), the `code` of an error body.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// `{"error": message, "code": name}` with the code's HTTP status.
fn status_response(s: &Status) -> Response {
    let status = http_status(s.code());
    let body = json!({ "error": s.message(), "code": code_name(s.code()) });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// An auth refusal as the gRPC status the ExecutionService would give.
fn api_status(e: ApiError) -> Status {
    match e.status {
        StatusCode::UNAUTHORIZED => Status::unauthenticated(e.message),
        StatusCode::SERVICE_UNAVAILABLE => Status::unavailable(e.message),
        _ => Status::invalid_argument(e.message),
    }
}

/// A JSON body as an object, within [`ORDER_BODY_LIMIT`].
fn order_object(body: &[u8]) -> Result<Map<String, Value>, Status> {
    if body.len() > ORDER_BODY_LIMIT {
        return Err(Status::out_of_range(format!(
            "body: larger than {ORDER_BODY_LIMIT} bytes"
        )));
    }
    object(body).map_err(|e| Status::invalid_argument(e.message))
}

/// A string field; `null` reads as empty where `optional`.
fn text_field(value: &Value, key: &str, optional: bool) -> Result<String, Status> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null if optional => Ok(String::new()),
        Value::Number(_) if matches!(key, "qty" | "price") => Err(Status::invalid_argument(format!(
            "{key}: give a decimal string such as \"0.001\", not a JSON number (numbers may pass through a float)"
        ))),
        _ => Err(Status::invalid_argument(format!("{key}: expected a string"))),
    }
}

/// An enum field by proto name (`"SIDE_BUY"`) or short name (`"buy"`, any case); `null` is
/// unspecified.
fn enum_field(
    value: &Value,
    key: &str,
    prefix: &str,
    parse: fn(&str) -> Option<i32>,
    names: &[&str],
) -> Result<i32, Status> {
    let refuse = || {
        Status::invalid_argument(format!(
            "{key}: expected one of {} (or the same without {prefix}, any case)",
            names.join(", ")
        ))
    };
    match value {
        Value::Null => Ok(0),
        Value::String(s) if s.len() <= 64 => {
            let upper = s.to_ascii_uppercase();
            parse(&upper)
                .or_else(|| parse(&format!("{prefix}{upper}")))
                .filter(|v| *v != 0)
                .ok_or_else(refuse)
        }
        _ => Err(refuse()),
    }
}

/// The `POST /order` body as the gRPC request; field checks are the desk's.
fn order_request(body: &[u8]) -> Result<pb::OrderRequest, Status> {
    let mut r = pb::OrderRequest::default();
    for (key, value) in &order_object(body)? {
        match key.as_str() {
            "client_order_id" => r.client_order_id = text_field(value, key, false)?,
            "symbol" => r.symbol = text_field(value, key, false)?,
            "qty" => r.qty = text_field(value, key, false)?,
            "price" => r.price = text_field(value, key, true)?,
            "venue" => r.venue = text_field(value, key, true)?,
            "side" => {
                r.side = enum_field(
                    value,
                    key,
                    "SIDE_",
                    |s| pb::Side::from_str_name(s).map(|v| v as i32),
                    &["SIDE_BUY", "SIDE_SELL"],
                )?
            }
            "type" => {
                r.r#type = enum_field(
                    value,
                    key,
                    "ORDER_TYPE_",
                    |s| pb::OrderType::from_str_name(s).map(|v| v as i32),
                    &["ORDER_TYPE_MARKET", "ORDER_TYPE_LIMIT", "ORDER_TYPE_LIMIT_MAKER"],
                )?
            }
            "time_in_force" => {
                r.time_in_force = enum_field(
                    value,
                    key,
                    "TIME_IN_FORCE_",
                    |s| pb::TimeInForce::from_str_name(s).map(|v| v as i32),
                    &["TIME_IN_FORCE_GTC", "TIME_IN_FORCE_IOC", "TIME_IN_FORCE_FOK"],
                )?
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown field {:?} (expected client_order_id, symbol, side, qty, price, type, time_in_force, venue)",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    Ok(r)
}

/// The `POST /cancel` body as the gRPC request: exactly one of `client_order_id` and
/// `order_id` (a number or a string of digits).
fn cancel_request(body: &[u8]) -> Result<pb::CancelRequest, Status> {
    use pb::cancel_request::Target;
    let mut target = None;
    for (key, value) in &order_object(body)? {
        let t = match key.as_str() {
            "client_order_id" => Target::ClientOrderId(text_field(value, key, false)?),
            "order_id" => Target::OrderId(
                value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                    .ok_or_else(|| Status::invalid_argument("order_id: expected a positive integer"))?,
            ),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown field {:?} (expected client_order_id or order_id)",
                    other.chars().take(40).collect::<String>()
                )));
            }
        };
        if target.replace(t).is_some() {
            return Err(Status::invalid_argument("give client_order_id or order_id, not both"));
        }
    }
    Ok(pb::CancelRequest { target })
}

/// An `OrderAck` as JSON, with the proto's field names and enum names.
pub fn ack_json(a: &pb::OrderAck) -> Value {
    let status = pb::OrderStatus::try_from(a.status).unwrap_or(pb::OrderStatus::Unspecified);
    json!({
        "client_order_id": a.client_order_id,
        "order_id": a.order_id,
        "status": status.as_str_name(),
        "reject_reason": a.reject_reason,
        "message": a.message,
        "venue": a.venue,
        "venue_order_id": a.venue_order_id,
        "filled_qty": a.filled_qty,
        "avg_price": a.avg_price,
        "symbol": a.symbol,
    })
}

/// A `CancelAck` as JSON, with the proto's field names.
pub fn cancel_json(a: &pb::CancelAck) -> Value {
    json!({
        "order_id": a.order_id,
        "cancelled": a.cancelled,
        "message": a.message,
        "client_order_id": a.client_order_id,
        "reason": a.reason,
        "cancelled_qty": a.cancelled_qty,
    })
}

fn push_risk(api: &Api, cmd: RiskCommand) -> Result<(), ApiError> {
    api.risk_cmd.push(cmd).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Risk command queue is full; nothing was applied, retry shortly",
        )
    })
}

/// Sends a request to the cold loop and waits for its answer.
async fn ask(api: &Api, make: impl FnOnce(oneshot::Sender<Reply>) -> ControlRequest) -> Result<Json<Value>, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the engine is shutting down");
    api.control.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())?.map(Json)
}

/// `{"weights": {family: decimal, …}, "normalise": bool}`; `{}` means a governor step.
fn reweight_body(body: &Map<String, Value>) -> Result<Option<OperatorWeights>, ApiError> {
    let mut weights = None;
    let mut normalise = false;
    for (key, value) in body {
        match key.as_str() {
            "weights" => weights = Some(value),
            "normalise" | "normalize" => {
                normalise = value
                    .as_bool()
                    .ok_or_else(|| ApiError::bad_request(format!("{key}: expected true or false")))?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected weights, normalise)"
                )));
            }
        }
    }
    let Some(weights) = weights else {
        if normalise {
            return Err(ApiError::bad_request("normalise: given without weights"));
        }
        return Ok(None);
    };
    parse_weights(weights, normalise).map(Some)
}

/// Operator weights: every family named once, each a decimal >= 0; the sum must be exactly 1
/// on the decimals as written, unless `normalise` asks to scale them to 1.
pub fn parse_weights(value: &Value, normalise: bool) -> Result<OperatorWeights, ApiError> {
    let map = value.as_object().ok_or_else(|| {
        ApiError::bad_request("weights: expected an object {momentum, mean_rev, breakout, sentiment}")
    })?;
    let mut exact = [None; FAMILIES];
    for (key, v) in map {
        let Some(f) = FamilyKind::ALL.iter().find(|f| f.name() == key) else {
            let names: Vec<&str> = FamilyKind::ALL.iter().map(|f| f.name()).collect();
            return Err(ApiError::bad_request(format!(
                "weights: unknown family {key:?} (expected {})",
                names.join(", ")
            )));
        };
        let d = decimal(v, &format!("weights.{key}"))?;
        if d.raw() < 0 {
            return Err(ApiError::bad_request(format!("weights.{key}: must be >= 0, got {d}")));
        }
        exact[*f as usize] = Some(d);
    }
    let mut raw = [0i64; FAMILIES];
    for (f, slot) in FamilyKind::ALL.iter().zip(&exact) {
        raw[*f as usize] = slot
            .ok_or_else(|| ApiError::bad_request(format!("weights.{}: required (give every family)", f.name())))?
            .raw();
    }
    let sum: i128 = raw.iter().map(|&r| i128::from(r)).sum();
    if sum == 0 {
        return Err(ApiError::bad_request(
            "weights: all zero; at least one must be positive",
        ));
    }
    let one = i128::from(maxx_hot::num::ONE);
    if sum != one && !normalise {
        let shown = Money::from_raw(i64::try_from(sum).unwrap_or(i64::MAX)).map_or(sum.to_string(), |m| m.to_string());
        return Err(ApiError::bad_request(format!(
            "weights: must sum to exactly 1, got {shown} (send \"normalise\": true to scale them)"
        )));
    }
    // Scale in exact integers of 1e-8 (a no-op when the sum is 1), then to fixed point; the
    // rounding left over goes to the largest weight, so the fixed-point sum is the image of 1.
    let mut scaled = [0i64; FAMILIES];
    let mut total = 0i128;
    for (s, &r) in scaled.iter_mut().zip(&raw) {
        *s = (i128::from(r) * one / sum) as i64;
        total += i128::from(*s);
    }
    let largest = (0..FAMILIES).max_by_key(|&i| (scaled[i], usize::MAX - i)).unwrap_or(0);
    scaled[largest] += (one - total) as i64;
    let mut out = [Factor::ZERO; FAMILIES];
    for (o, s) in out.iter_mut().zip(scaled) {
        *o = to_factor(Money::from_raw(s).ok_or_else(|| ApiError::bad_request("weights: out of range"))?)?;
    }
    // Binary images of decimals such as 0.3 are inexact: put the difference on the largest weight
    // so the weights sum to exactly Factor 1, as the governor's pair moves keep them.
    let fsum: Factor = out.iter().copied().sum();
    out[largest] += Factor::ONE - fsum;
    Ok(OperatorWeights(out))
}

/// Checks the bearer token in constant time.
fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &api.token else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("mutating endpoints are disabled: no API token is configured (set {TOKEN_ENV} or http.token_file)"),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>"))?;
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    let differ = a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0;
    if differ {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token"));
    }
    Ok(())
}

fn instrument(index: &InstrumentIndex, symbol: &str) -> Result<maxx_hot::ids::InstrumentId, ApiError> {
    let unknown = || {
        let known: Vec<&str> = index.iter().map(|i| i.symbol.as_str()).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown symbol {symbol:?} (configured: {})", known.join(", ")),
        )
    };
    index.by_symbol(symbol).ok_or_else(unknown)
}

/// A JSON object body.
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("body: expected a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("body: invalid JSON: {e}"))),
    }
}

/// An exact decimal from a JSON number or string, at most 8 decimals.
fn decimal(value: &Value, what: &str) -> Result<Money, ApiError> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return Err(ApiError::bad_request(format!("{what}: expected a number"))),
    };
    text.parse::<Money>()
        .map_err(|e| ApiError::bad_request(format!("{what}: not an exact decimal ({text:?}: {e})")))
}

fn to_factor(d: Money) -> Result<Factor, ApiError> {
    d.to_string()
        .parse::<Factor>()
        .map_err(|_| ApiError::bad_request(format!("{d} does not fit a 32.32 fixed-point factor")))
}
