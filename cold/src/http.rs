//! The HTTP API (axum), bound to `http.listen`.
//!
//! Read-only endpoints answer from lock-free views the hot path publishes
//! ([`SignalBoard`]), so a slow or hostile client can never stall a hot thread.
//! Mutating endpoints require `Authorization: Bearer <token>` (the token comes from the
//! environment variable `MAXX_API_TOKEN` or from `http.token_file`, and is compared in constant
//! time); without a configured token they are disabled and say so. Every error is JSON:
//! `{"error": "<what is wrong>"}` with a 4xx/5xx status, and a refused request changes nothing.
//!
//! The routes are one list, [`ROUTES`]: the router is built from it and `GET /openapi.json`
//! (an OpenAPI 3.1 document, [`openapi`]) describes it. Every mutating route runs behind one
//! guard, which checks in this order and answers `{"error": …, "code": <gRPC code name>}`:
//!
//! | check | status |
//! |---|---|
//! | bearer token missing, malformed (`Basic …`, `Bearer` alone) or wrong | 401 with `WWW-Authenticate: Bearer` (503 when no token is configured) |
//! | rate limit: one process-wide token bucket, [`RATE_PER_SEC`]/s, burst [`RATE_BURST`]; `POST /risk/kill` is exempt | 429 with `Retry-After` (seconds) |
//! | `Content-Type` given and not JSON (`application/json`, `…+json`, or curl's `-d` default, read as JSON) | 415 |
//! | body above [`BODY_LIMIT`] bytes (declared or streamed) | 413 |
//! | a body on a route that takes none (`/reload`, `/risk/kill`, `/risk/resume`: nothing or `{}`) | 400 |
//!
//! then the handler, whose body problems (invalid JSON, not an object, wrong field type,
//! missing or unknown field, out of range) are 400 with the field named. Every request that
//! reaches a mutating route, authorized or not, leaves an audit record of its outcome: an `info`
//! log line (target `audit`, `msg` `audit`) with `endpoint`, `status`, `detail` (the error, or
//! the answer cut to 200 characters), `remote` (the caller's address), and, with Redis, an entry
//! with `ts`, `endpoint`, `status`, `detail`, `remote` on the stream [`AUDIT_STREAM`]. The token
//! is never part of either. Unknown paths answer 404 and a known path with another method 405
//! (with `Allow`), both JSON; read-only routes are neither limited nor audited.
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
//! | `POST /sweep` | yes | `{"idempotency_key":"…"}`: pay the lock-box out into the `payouts` ledger; a repeated key answers with the same payout; an empty lock-box is a no-op answer |
//! | `GET /openapi.json` | no | the OpenAPI 3.1 document of every route above |
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
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

use crate::bus::{Entry, StreamWriter};
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

    /// A 503 Service Unavailable: try again later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// A 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
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
    /// Pay the lock-box out (`POST /sweep`), once per idempotency key.
    Sweep {
        /// The caller's idempotency key (1 to 128 printable ASCII characters).
        key: String,
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
    /// The writer of the Redis stream `audit` (every control action and its outcome); `None`
    /// without Redis, when the audit is the log line alone.
    pub audit: Option<StreamWriter>,
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

/// Largest request body any endpoint reads, in bytes. A bigger body is refused with 413 before
/// a byte of it reaches a handler, so nothing is applied. Far above any valid request (the
/// largest is an operator weight vector or an order, well under 1 KiB); `/order` and `/cancel`
/// keep their own, smaller limit, the gRPC one ([`crate::grpc::MAX_ORDER_REQUEST`]).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Sustained rate of the mutating endpoints, requests per second, process-wide (one bucket for
/// every caller and every mutating endpoint but `POST /risk/kill`).
pub const RATE_PER_SEC: u64 = 50;

/// Burst of the mutating endpoints: the bucket's size, full at start. Beyond it a request is
/// refused with 429 and `Retry-After` until the bucket refills at [`RATE_PER_SEC`]. Read-only
/// endpoints are not limited (they answer from lock-free views), and neither is
/// `POST /risk/kill`: stopping the engine must never wait behind a flood.
pub const RATE_BURST: u64 = 100;

/// The Redis stream every control action is appended to (with `redis.enabled`).
pub const AUDIT_STREAM: &str = "audit";

/// The longest `detail` an audit record carries, in characters.
const AUDIT_DETAIL_MAX: usize = 200;

/// What a route reads as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: empty or `{}`.
    None,
    /// A JSON object (for `/govern/reweight`, an empty body too).
    Json,
}

/// One route of the API: the single list the router is built from and the OpenAPI document
/// describes, so the two cannot disagree.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The axum path (`/signal/{symbol}`), which is also the OpenAPI path template.
    pub path: &'static str,
    /// Needs the bearer token (every mutating endpoint); audited, size-limited.
    pub auth: bool,
    /// Counts against the mutating endpoints' rate limit.
    pub limited: bool,
    /// The request body.
    pub body: BodyKind,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn read(path: &'static str, summary: &'static str) -> RouteSpec {
    RouteSpec {
        method: "GET",
        path,
        auth: false,
        limited: false,
        body: BodyKind::None,
        summary,
    }
}

const fn control(path: &'static str, body: BodyKind, summary: &'static str) -> RouteSpec {
    RouteSpec {
        method: "POST",
        path,
        auth: true,
        limited: true,
        body,
        summary,
    }
}

/// Every route the API serves.
pub const ROUTES: &[RouteSpec] = &[
    read(
        "/healthz",
        "Readiness: 200 when every health probe passes, else 503 naming the failing ones",
    ),
    read("/livez", "Liveness: 200 while the process can serve"),
    read(
        "/signal/{symbol}",
        "The latest ensemble signal of a symbol, with each family's contribution and the weights in force",
    ),
    read(
        "/pnl",
        "The Portfolio's books: per venue and symbol position, average price, realized PnL, fees; totals",
    ),
    read(
        "/govern",
        "The governor's weights, the weights the hot path applied, and the Kelly clip",
    ),
    read(
        "/risk/state",
        "Trading states, every limit with its usage, Kelly clip, kill switch, recent transitions",
    ),
    read("/openapi.json", "This document"),
    control(
        "/sentiment",
        BodyKind::Json,
        "An external sentiment score in [-1, 1] for the sentiment family",
    ),
    control(
        "/govern/reweight",
        BodyKind::Json,
        "One MetaGovernor step now (empty body or {}), or operator weights",
    ),
    control("/reload", BodyKind::None, "Re-read the config file, as SIGHUP does"),
    control(
        "/risk/state",
        BodyKind::Json,
        "An operator trading-state transition for the system or a symbol",
    ),
    control("/risk/trim", BodyKind::Json, "Reduce positions with reduce-only orders"),
    RouteSpec {
        // The kill switch is never rate-limited: stopping must not wait behind a flood.
        limited: false,
        ..control(
            "/risk/kill",
            BodyKind::None,
            "Trip the kill switch: HALTED, every open order cancelled",
        )
    },
    control("/risk/resume", BodyKind::None, "Lift the kill switch and a system halt"),
    control(
        "/order",
        BodyKind::Json,
        "Submit an order (the gRPC SubmitOrder as JSON), answered with the OrderAck",
    ),
    control(
        "/cancel",
        BodyKind::Json,
        "Cancel an order (the gRPC CancelOrder as JSON), answered with the CancelAck",
    ),
    control(
        "/sweep",
        BodyKind::Json,
        "Pay the PnL lock-box out into the payouts ledger, once per idempotency key",
    ),
];

/// The handler of a route of [`ROUTES`].
fn endpoint(spec: &RouteSpec) -> MethodRouter<Arc<Api>> {
    match (spec.method, spec.path) {
        ("GET", "/healthz") => get(healthz),
        ("GET", "/livez") => get(livez),
        ("GET", "/signal/{symbol}") => get(signal),
        ("GET", "/pnl") => get(pnl),
        ("GET", "/govern") => get(govern_status),
        ("GET", "/risk/state") => get(risk_state),
        ("GET", "/openapi.json") => get(|| async { Json(openapi()) }),
        ("POST", "/sentiment") => post(sentiment),
        ("POST", "/govern/reweight") => post(reweight),
        ("POST", "/reload") => post(reload),
        ("POST", "/risk/state") => post(risk_set_state),
        ("POST", "/risk/trim") => post(risk_trim),
        ("POST", "/risk/kill") => post(risk_kill),
        ("POST", "/risk/resume") => post(risk_resume),
        ("POST", "/order") => post(order),
        ("POST", "/cancel") => post(cancel),
        ("POST", "/sweep") => post(sweep),
        (method, path) => unreachable!("ROUTES names {method} {path}, which has no handler"),
    }
}

/// The router over `api`, built from [`ROUTES`]. Every mutating route runs behind `guard`
/// (auth, rate limit, body limit and content type, audit); unknown paths answer 404 and a
/// known path with another method 405, both as JSON.
pub fn router(api: Arc<Api>) -> Router {
    let shared = Arc::new(Shared {
        bucket: TokenBucket::new(RATE_PER_SEC, RATE_BURST, Instant::now()),
        audit_ids: Mutex::new((0, 0)),
    });
    let mut router = Router::new();
    for spec in ROUTES {
        let mut route = endpoint(spec);
        if spec.auth {
            let guarded = Guarded {
                api: Arc::clone(&api),
                shared: Arc::clone(&shared),
                spec,
            };
            route = route.route_layer(middleware::from_fn_with_state(guarded, guard));
        }
        router = router.route(spec.path, route);
    }
    router
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed here (the Allow header lists the ones that are; GET /openapi.json describes every route)"),
            )
        })
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such endpoint (GET /openapi.json lists them)",
            )
        })
        .with_state(api)
}

/// Binds `addr` and serves until `shutdown` resolves; returns the bound address (port 0 picks
/// a free one) and the server task. Connections carry the caller's address, for the audit.
pub async fn serve(
    addr: SocketAddr,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router(api)
                .layer(crate::telemetry::http_layer())
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    });
    Ok((local, task))
}

/// State the guards of one router share.
#[derive(Debug)]
struct Shared {
    /// The mutating endpoints' rate limit.
    bucket: TokenBucket,
    /// `(ms, seq)` of the last audit entry id, so ids strictly increase.
    audit_ids: Mutex<(u64, u64)>,
}

/// The state of one mutating route's guard.
#[derive(Clone, Debug)]
struct Guarded {
    api: Arc<Api>,
    shared: Arc<Shared>,
    spec: &'static RouteSpec,
}

/// A process-wide token bucket: `burst` tokens, refilled at `rate` per second, counted in
/// thousandths so a refill between two close requests is not rounded away.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    burst_milli: u64,
    /// Thousandths of a token available, and when that was computed.
    state: Mutex<(u64, Instant)>,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate.max(1),
            burst_milli: burst.saturating_mul(1000),
            state: Mutex::new((burst.saturating_mul(1000), now)),
        }
    }

    /// Takes one token at `now`, or says how long until one is available.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        // A panic while holding the lock leaves a valid pair behind: keep using it.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (milli, last) = *state;
        let elapsed_us = u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
        let refill = elapsed_us.saturating_mul(self.rate) / 1000;
        let available = milli.saturating_add(refill).min(self.burst_milli);
        // Time only moves forward for the bucket, even if callers pass instants out of order.
        let at = if now > last { now } else { last };
        if available >= 1000 {
            *state = (available - 1000, at);
            Ok(())
        } else {
            *state = (available, at);
            Err(Duration::from_micros((1000 - available) * 1000 / self.rate))
        }
    }
}

/// The front of every mutating route, in this order: bearer token (401, or 503 when no token
/// is configured), rate limit (429 with `Retry-After`), content type (415), body size (413),
/// a body on a route that takes none (400); then the handler; then the audit record of the
/// outcome, whatever it was.
async fn guard(State(g): State<Guarded>, request: Request, next: Next) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.to_string());
    let response = match admit(&g, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    };
    audit(&g, &remote, response).await
}

/// The checks of `guard` before the handler; the request comes back with its body read.
async fn admit(g: &Guarded, request: Request) -> Result<Request, Response> {
    if let Err(e) = authorize(&g.api, request.headers()) {
        let code = if e.status == StatusCode::UNAUTHORIZED {
            Code::Unauthenticated
        } else {
            Code::Unavailable
        };
        return Err(error_response(e, code));
    }
    if g.spec.limited
        && let Err(wait) = g.shared.bucket.take(Instant::now())
    {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error_response(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit: mutating endpoints take {RATE_PER_SEC} requests/s (burst {RATE_BURST}); nothing was applied, retry after {} s",
                    secs.max(1)
                ),
            ),
            Code::ResourceExhausted,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
        return Err(response);
    }
    let (parts, body) = request.into_parts();
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE)
        && !json_content_type(kind)
    {
        return Err(error_response(
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type {:?}: send JSON (Content-Type: application/json)",
                    kind.to_str()
                        .unwrap_or("(not text)")
                        .chars()
                        .take(60)
                        .collect::<String>()
                ),
            ),
            Code::InvalidArgument,
        ));
    }
    let too_large = || {
        error_response(
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body: larger than {BODY_LIMIT} bytes, the API's limit; nothing was applied"),
            ),
            Code::OutOfRange,
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| too_large())?;
    if g.spec.body == BodyKind::None {
        let text = std::str::from_utf8(&bytes).unwrap_or("?").trim();
        if !(text.is_empty() || text.replace(char::is_whitespace, "") == "{}") {
            return Err(error_response(
                ApiError::bad_request(format!(
                    "body: {} {} takes no body (send none, or {{}})",
                    g.spec.method, g.spec.path
                )),
                Code::InvalidArgument,
            ));
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// `application/json`, any `application/…+json`, or curl's default for `-d`
/// (`application/x-www-form-urlencoded`, read as JSON all the same); parameters such as
/// `charset` are ignored.
fn json_content_type(value: &header::HeaderValue) -> bool {
    let Ok(text) = value.to_str() else { return false };
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || essence == "application/x-www-form-urlencoded"
}

/// An [`ApiError`] with the gRPC code name added to its body.
fn error_response(e: ApiError, code: Code) -> Response {
    let status = e.status;
    let mut response = (status, Json(json!({ "error": e.message, "code": code_name(code) }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    response
}

/// Records the outcome of a control action: an `info` log line (target `audit`, message
/// `audit`) and, with Redis, an entry on the stream [`AUDIT_STREAM`]; then hands the response on.
/// The detail is the error message, or the answer's JSON cut to [`AUDIT_DETAIL_MAX`]
/// characters; the token never appears (it is cut out should a caller echo it in a body).
async fn audit(g: &Guarded, remote: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    // The answer is a JSON body already in memory (a handler's `Json`), so collecting it costs
    // a copy at most; a body that cannot be read is audited (and answered) as empty.
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let detail = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => match v.get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    let mut detail: String = detail.chars().take(AUDIT_DETAIL_MAX).collect();
    if let Some(token) = g.api.token.as_deref().filter(|t| !t.is_empty()) {
        detail = detail.replace(token, "[redacted]");
    }
    let endpoint = format!("{} {}", g.spec.method, g.spec.path);
    let status = parts.status.as_u16();
    tracing::info!(target: "audit", endpoint = %endpoint, status, detail = %detail, remote = %remote, "audit");
    if let Some(writer) = &g.api.audit {
        let now_ns = wall_ns();
        let id = {
            let mut last = g.shared.audit_ids.lock().unwrap_or_else(|e| e.into_inner());
            let ms = now_ns / 1_000_000;
            *last = if ms > last.0 { (ms, 0) } else { (last.0, last.1 + 1) };
            format!("{}-{}", last.0, last.1)
        };
        writer.send(Entry {
            stream: AUDIT_STREAM.to_string(),
            id,
            fields: vec![
                ("ts".into(), now_ns.to_string()),
                ("endpoint".into(), endpoint),
                ("status".into(), status.to_string()),
                ("detail".into(), detail),
                ("remote".into(), remote.to_string()),
            ],
        });
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let mut op = json!({
            "summary": spec.summary,
            "operationId": operation_id(spec),
            "responses": responses(spec),
        });
        if spec.auth {
            op["security"] = json!([{ "bearer": [] }]);
        } else {
            op["security"] = json!([]);
        }
        if spec.path.contains("{symbol}") {
            op["parameters"] = json!([{
                "name": "symbol", "in": "path", "required": true,
                "schema": { "type": "string" }, "example": "BTCUSDT",
            }]);
        }
        if let Some(schema) = request_schema(spec) {
            op["requestBody"] = json!({
                "required": spec.body == BodyKind::Json && spec.path != "/govern/reweight",
                "content": { "application/json": { "schema": schema } },
            });
        }
        let item = paths.entry(spec.path.to_string()).or_insert_with(|| json!({}));
        item[spec.method.to_ascii_lowercase()] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "maxx HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Mutating endpoints (POST) need `Authorization: Bearer <token>`, are limited to \
                 {RATE_PER_SEC} requests/s with a burst of {RATE_BURST} (429 with Retry-After; \
                 POST /risk/kill is exempt), read bodies of at most {BODY_LIMIT} bytes (413) sent as \
                 JSON (415 otherwise), and are audited (log target `audit`, Redis stream \
                 `{AUDIT_STREAM}`). Every error is JSON {{\"error\": \"...\"}}, with a gRPC-style \
                 `code` on mutating endpoints. Decimals are strings or JSON numbers as noted."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": { "type": "string", "description": "what is wrong, in words the caller can act on" },
                        "code": { "type": "string", "description": "the gRPC code name, e.g. invalid_argument (mutating endpoints)" },
                    },
                },
            },
            "responses": {
                "Error": {
                    "description": "a refusal; nothing was applied",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                },
            },
        },
    })
}

/// `GET /risk/state` → `get_risk_state`.
fn operation_id(spec: &RouteSpec) -> String {
    let name: String = spec
        .path
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}_{}", spec.method.to_ascii_lowercase(), name.trim_end_matches('_'))
}

fn decimal_schema(what: &str) -> Value {
    json!({ "type": ["string", "number"], "description": what })
}

/// The request body schema of a route, if it reads one.
fn request_schema(spec: &RouteSpec) -> Option<Value> {
    let object = |required: &[&str], properties: Value| json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties });
    let families = json!({
        "type": "object", "additionalProperties": false,
        "required": ["momentum", "mean_rev", "breakout", "sentiment"],
        "properties": {
            "momentum": decimal_schema(">= 0"), "mean_rev": decimal_schema(">= 0"),
            "breakout": decimal_schema(">= 0"), "sentiment": decimal_schema(">= 0"),
        },
    });
    let side = json!({ "type": "string", "description": "SIDE_BUY | SIDE_SELL (or buy, sell; any case)" });
    Some(match (spec.method, spec.path) {
        (_, _) if spec.body == BodyKind::None && spec.method == "POST" => json!({
            "description": "no body, or {}",
            "type": "object", "maxProperties": 0,
        }),
        ("POST", "/sentiment") => object(
            &["symbol", "score"],
            json!({ "symbol": { "type": "string" }, "score": decimal_schema("in [-1, 1]") }),
        ),
        ("POST", "/govern/reweight") => object(
            &[],
            json!({
                "weights": families,
                "normalise": { "type": "boolean", "description": "scale the weights to sum to 1 (default false: they must)" },
            }),
        ),
        ("POST", "/risk/state") => object(
            &["scope", "state"],
            json!({
                "scope": { "type": "string", "description": "\"*\" (the system) or a symbol" },
                "state": { "enum": ["active", "reducing", "halted"] },
            }),
        ),
        ("POST", "/risk/trim") => object(
            &["fraction"],
            json!({
                "symbol": { "type": "string", "description": "one symbol; all of them when absent" },
                "fraction": decimal_schema("in (0, 1]"),
            }),
        ),
        ("POST", "/order") => object(
            &["client_order_id", "symbol", "side", "qty"],
            json!({
                "client_order_id": { "type": "string" },
                "symbol": { "type": "string" },
                "side": side,
                "qty": { "type": "string", "description": "decimal string" },
                "price": { "type": ["string", "null"], "description": "decimal string; limit orders" },
                "type": { "type": ["string", "null"], "description": "ORDER_TYPE_MARKET | ORDER_TYPE_LIMIT | ORDER_TYPE_LIMIT_MAKER (or short forms)" },
                "time_in_force": { "type": ["string", "null"], "description": "TIME_IN_FORCE_GTC | _IOC | _FOK (or short forms)" },
                "venue": { "type": ["string", "null"] },
            }),
        ),
        ("POST", "/sweep") => object(
            &["idempotency_key"],
            json!({ "idempotency_key": { "type": "string", "minLength": 1, "maxLength": 128, "description": "printable ASCII; a repeated key answers with the same payout" } }),
        ),
        ("POST", "/cancel") => json!({
            "type": "object", "additionalProperties": false,
            "description": "exactly one of client_order_id and order_id",
            "minProperties": 1, "maxProperties": 1,
            "properties": {
                "client_order_id": { "type": "string" },
                "order_id": { "type": ["integer", "string"], "description": "a positive integer" },
            },
        }),
        _ => return None,
    })
}

/// The responses of a route: its success answer and the errors it can give.
fn responses(spec: &RouteSpec) -> Value {
    let ok = |description: &str, properties: Value| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "type": "object", "properties": properties } } },
        })
    };
    let error = json!({ "$ref": "#/components/responses/Error" });
    let mut out = Map::new();
    let success = match (spec.method, spec.path) {
        ("GET", "/healthz") => ok(
            "every probe passes (503 with the same shape, status \"failing\", otherwise)",
            json!({ "status": { "enum": ["ok", "failing"] }, "failing": { "type": "array", "items": { "type": "string" } }, "checks": { "type": "object" }, "uptime_sec": { "type": "integer" } }),
        ),
        ("GET", "/livez") => ok(
            "alive",
            json!({ "status": { "const": "alive" }, "uptime_sec": { "type": "integer" } }),
        ),
        ("GET", "/signal/{symbol}") => ok(
            "the latest signal",
            json!({ "symbol": { "type": "string" }, "score": { "type": "string" }, "side": { "enum": ["buy", "sell", "flat"] }, "confidence": { "type": "string" }, "ts": { "type": "integer" }, "tick_seq": { "type": "integer" }, "contributions": { "type": "object" }, "weights": { "type": "object" } }),
        ),
        ("GET", "/pnl") => ok(
            "the books",
            json!({ "live": { "type": "boolean" }, "status": { "type": "string" } }),
        ),
        ("GET", "/openapi.json") => ok(
            "this document",
            json!({ "openapi": { "type": "string" }, "paths": { "type": "object" } }),
        ),
        ("POST", "/sentiment") => ok(
            "accepted",
            json!({ "symbol": { "type": "string" }, "score": { "type": "string" }, "ts": { "type": "integer" }, "accepted": { "const": true } }),
        ),
        ("POST", "/risk/trim") => ok(
            "accepted",
            json!({ "symbol": { "type": "string" }, "fraction": { "type": "string" }, "accepted": { "const": true } }),
        ),
        ("POST", "/risk/state") => ok(
            "accepted",
            json!({ "accepted": { "const": true }, "state": { "type": "string" } }),
        ),
        ("POST", "/risk/kill") => ok("tripped", json!({ "killed": { "const": true } })),
        ("POST", "/risk/resume") => ok(
            "lifted",
            json!({ "killed": { "const": false }, "resumed": { "const": true } }),
        ),
        ("POST", "/order") => ok(
            "the OrderAck",
            json!({ "client_order_id": { "type": "string" }, "order_id": { "type": "integer" }, "status": { "type": "string" }, "reject_reason": { "type": "string" }, "message": { "type": "string" }, "venue": { "type": "string" }, "venue_order_id": { "type": "string" }, "filled_qty": { "type": "string" }, "avg_price": { "type": "string" }, "symbol": { "type": "string" } }),
        ),
        ("POST", "/sweep") => ok(
            "the payout (swept or repeated), or a no-op when the lock-box is empty",
            json!({ "swept": { "type": "boolean" }, "repeated": { "type": "boolean" }, "payout": { "type": ["object", "null"] }, "lockbox": { "type": "string" }, "message": { "type": "string" } }),
        ),
        ("POST", "/cancel") => ok(
            "the CancelAck",
            json!({ "order_id": { "type": "integer" }, "cancelled": { "type": "boolean" }, "message": { "type": "string" }, "client_order_id": { "type": "string" }, "reason": { "type": "string" }, "cancelled_qty": { "type": "string" } }),
        ),
        // /govern, /risk/state (GET), /govern/reweight, /reload: the cold loop's JSON views.
        _ => ok("the answer", json!({})),
    };
    out.insert("200".into(), success);
    let mut errors: Vec<&str> = vec!["405"];
    if spec.path == "/signal/{symbol}" {
        errors.extend(["400", "404"]);
    }
    if matches!(spec.path, "/pnl" | "/healthz" | "/govern" | "/risk/state") || spec.auth {
        errors.push("503");
    }
    if spec.auth {
        errors.extend(["400", "401", "404", "409", "413", "415"]);
        if spec.limited {
            errors.push("429");
        }
    }
    errors.sort_unstable();
    errors.dedup();
    for status in errors {
        let mut e = error.clone();
        if status == "429" {
            e = json!({
                "description": "rate limited; nothing was applied",
                "headers": { "Retry-After": { "schema": { "type": "integer" }, "description": "seconds" } },
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            });
        } else if status == "401" {
            e = json!({
                "description": "missing, malformed or wrong bearer token; nothing was applied",
                "headers": { "WWW-Authenticate": { "schema": { "const": "Bearer" } } },
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
            });
        }
        out.insert(status.into(), e);
    }
    Value::Object(out)
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

async fn signal(
    State(api): State<Arc<Api>>,
    symbol: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(symbol) = symbol.map_err(|e| ApiError::bad_request(format!("symbol: {}", e.body_text())))?;
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

async fn sentiment(State(api): State<Arc<Api>>, body: Bytes) -> Result<Json<Value>, ApiError> {
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

async fn reweight(State(api): State<Arc<Api>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let weights = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        reweight_body(&object(&body)?)?
    };
    ask(&api, |reply| ControlRequest::Reweight { weights, reply }).await
}

/// The longest idempotency key `POST /sweep` takes.
pub const SWEEP_KEY_MAX: usize = 128;

async fn sweep(State(api): State<Arc<Api>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = object(&body)?;
    let mut key = None;
    for (name, value) in &body {
        match name.as_str() {
            "idempotency_key" => {
                key = Some(value.as_str().ok_or_else(|| {
                    ApiError::bad_request("idempotency_key: expected a string such as \"payout-2026-11-26\"")
                })?)
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown field {other:?} (expected idempotency_key)"
                )));
            }
        }
    }
    let key = key.ok_or_else(|| ApiError::bad_request("idempotency_key: required"))?;
    if key.is_empty() || key.len() > SWEEP_KEY_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!(
            "idempotency_key: 1 to {SWEEP_KEY_MAX} printable ASCII characters without spaces"
        )));
    }
    let key = key.to_string();
    ask(&api, |reply| ControlRequest::Sweep { key, reply }).await
}

async fn reload(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    ask(&api, |reply| ControlRequest::Reload { reply }).await
}

async fn govern_status(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    ask(&api, |reply| ControlRequest::Status { reply }).await
}

async fn risk_state(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    ask(&api, |reply| ControlRequest::RiskState { reply }).await
}

async fn risk_kill(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
    api.kill.trip();
    tracing::warn!("kill switch tripped over HTTP");
    Ok(Json(json!({ "killed": true })))
}

async fn risk_resume(State(api): State<Arc<Api>>) -> Result<Json<Value>, ApiError> {
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

async fn risk_trim(State(api): State<Arc<Api>>, body: Bytes) -> Result<Json<Value>, ApiError> {
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

async fn risk_set_state(State(api): State<Arc<Api>>, body: Bytes) -> Result<Json<Value>, ApiError> {
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

async fn order(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let request = match order_request(&body) {
        Ok(r) => r,
        Err(s) => return status_response(&s),
    };
    match api.desk.submit(&request).await {
        Ok(ack) => Json(ack_json(&ack)).into_response(),
        Err(s) => status_response(&s),
    }
}

async fn cancel(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let request = match cancel_request(&body) {
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
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("missing Authorization: Bearer <token>"));
    };
    let given = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| unauthorized("malformed Authorization header: expected Bearer <token>"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_bucket_gives_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(50, 100, t0);
        for i in 0..100 {
            assert_eq!(bucket.take(t0), Ok(()), "token {i} of the burst");
        }
        let wait = bucket.take(t0).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(20), "one token every 1/50 s");
        // 20 ms later exactly one more token is there.
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(bucket.take(t1), Ok(()));
        assert!(bucket.take(t1).is_err());
        // A long pause refills to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..100 {
            assert_eq!(bucket.take(t2), Ok(()));
        }
        assert!(bucket.take(t2).is_err());
        // An instant from the past neither refills nor breaks the bucket.
        assert!(bucket.take(t0).is_err());
    }

    #[test]
    fn every_mutating_route_is_guarded_and_every_read_is_not() {
        for spec in ROUTES {
            assert_eq!(spec.auth, spec.method == "POST", "{} {}", spec.method, spec.path);
            assert!(spec.limited <= spec.auth, "{} {}", spec.method, spec.path);
            assert!(
                spec.body == BodyKind::None || spec.method == "POST",
                "{} {}",
                spec.method,
                spec.path
            );
        }
        let unlimited: Vec<&str> = ROUTES.iter().filter(|s| s.auth && !s.limited).map(|s| s.path).collect();
        assert_eq!(unlimited, ["/risk/kill"]);
        let pairs: BTreeSet<(&str, &str)> = ROUTES.iter().map(|s| (s.method, s.path)).collect();
        assert_eq!(pairs.len(), ROUTES.len(), "no route listed twice");
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes_served() {
        let doc = openapi();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
                assert!(ids.insert(op["operationId"].as_str().expect("operationId").to_string()));
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert_eq!(secured, method == "post", "{method} {path}: security");
                assert!(op["responses"]["200"].is_object(), "{method} {path}");
                if method == "post" {
                    for status in ["400", "401", "413"] {
                        assert!(op["responses"][status].is_object(), "{method} {path}: {status}");
                    }
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|s| (s.method.to_string(), s.path.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn json_and_curls_default_are_accepted_other_content_types_are_not() {
        let ok = |s: &'static str| json_content_type(&header::HeaderValue::from_static(s));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(ok("application/x-www-form-urlencoded"));
        assert!(!ok("text/plain"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!ok("application/xml"));
    }

    #[test]
    fn operation_ids_read_as_method_and_path() {
        let id = |method, path| {
            operation_id(&RouteSpec {
                method,
                path,
                ..read("/", "")
            })
        };
        assert_eq!(id("GET", "/risk/state"), "get_risk_state");
        assert_eq!(id("GET", "/signal/{symbol}"), "get_signal__symbol");
        assert_eq!(id("GET", "/openapi.json"), "get_openapi_json");
    }
}
