//! The order-entry state machine shared by the REST venues, and what a venue plugs into it.
//!
//! [`RestGateway<P>`] implements [`Gateway`] for any venue protocol `P` ([`Protocol`]): the
//! venue module writes and signs requests and maps responses to an [`Answer`]; everything else
//! is here, once, for every venue: the table of open orders, the [`Unknown`] rule, fill tracking,
//! rate-limit blocks, the clock offset and the timers. Binance spot and Bybit v5 plug in as
//! [`super::binance::BinanceSpot`] and [`super::bybit::BybitSpot`].
//!
//! # Orders and reports
//!
//! Each order gets a slot in a fixed table ([`GatewayConfig::open_capacity`]) and a client order
//! id derived from its engine id: [`GatewayConfig::client_id_prefix`] followed by the id in
//! decimal (`mx-42`). The venue answers by that id, so an order whose answer was lost can be
//! found again without ever being resent.
//!
//! * An answer with the order's state reports [`ExecReport::Ack`] once, then a
//!   [`ExecReport::Fill`] for every execution not yet reported, then, when the order is over,
//!   either the last fill (`last: true`), [`ExecReport::Cancelled`] for what was left open (an
//!   IOC remainder, a cancel), or [`ExecReport::Reject`] when the venue closed it unfilled for a
//!   reason of its own (a Bybit post-only order that would have taken).
//! * Fills listed in a placement answer (Binance `FULL`) are reported one by one, as takers.
//!   Fills learnt from an order query come as one fill per query for the quantity executed since
//!   the last one, at the average price of that quantity (from the cumulative quote amount,
//!   truncated to 10^-8); an order that has rested is a maker from then on. When the venue gives
//!   the cumulative fee it is used; otherwise (Binance's order query has none) the fee is
//!   estimated from [`GatewayConfig::maker_fee_bps_milli`] / `taker_fee_bps_milli`, rounded up.
//! * Resting orders are queried every [`GatewayConfig::poll_open_every`] until they are over.
//!
//! # The unknown rule
//!
//! When a placement's answer is lost after its request was (even partly) written — a deadline
//! passed, the connection dropped, a 5xx, or the venue's own "status unknown" code — the gateway
//! reports [`ExecReport::Unknown`] once and queries the order by its client id every
//! [`GatewayConfig::resolve_every`] until the venue answers: found → Ack, fills and final state as
//! above; "no such order" → [`ExecReport::Reject`] with [`RejectReason::VenueDown`]. The order is
//! never resent. A "no such order" is trusted only once the venue can no longer accept the lost
//! request: its signed timestamp plus the receive window (plus one second for the venue's
//! tolerance of early timestamps) is past on the venue's clock. Before that the order might still
//! be on its way to the matching engine, so the query is repeated. A request that was never
//! written (no connection, backoff) is a plain [`RejectReason::VenueDown`] reject.
//!
//! # Rate limits
//!
//! Three layers, so that the venue's limit is never the first to trip:
//! our own sliding window ([`GatewayConfig::order_limit`] orders per `order_window`), the usage
//! the venue reports in its headers (the protocol turns them into a block before the venue's
//! limit), and the venue's refusals (HTTP 429/418, Bybit 10006, HTTP 403), which block until the
//! time the venue names (`Retry-After`, the limit's reset timestamp). While a block on new orders
//! holds, every order is rejected at once with [`RejectReason::VenueRateLimit`] without touching
//! the network; while a block on all requests holds (Binance 429/418, Bybit 403), queries wait and
//! cancels are refused with [`ExecReport::CancelRejected`] (`VenueRateLimit`).
//!
//! # Clock
//!
//! Signed requests carry the venue's time as we estimate it: wall clock plus an offset, zero
//! at start. When the venue refuses a request for its timestamp (Binance -1021, Bybit 10002) the
//! order is rejected with [`RejectReason::ClockSkew`] (not resent: its moment has passed), the
//! venue's time is fetched, and the offset becomes the venue's time minus the midpoint of our
//! request's round trip. Orders submitted while that fetch is in flight are rejected with
//! `ClockSkew` at once rather than sent to be refused.
//!
//! # Hot path
//!
//! After construction no step allocates: requests are written into fixed buffers, responses are
//! read by [`super::json`] in place, the order table and the limiter are fixed arrays, and
//! reports go straight to the caller's closure. Over plain TCP the whole cycle (place, fill,
//! query, cancel, reconnect) allocates nothing, which `cold/tests/gateway_*.rs` check with a
//! counting allocator; over TLS, rustls allocates when a connection opens and may per record
//! ([`super::http`]).
//!
//! Fill times (`Fill::ts_ns`) are the wall-clock time the gateway learnt of the fill, not the
//! venue's execution time.
//!
//! [`Unknown`]: ExecReport::Unknown

use std::time::Duration;

use crate::clock::{mono_ns, wall_ns};
use crate::gateway::http::{HttpClient, HttpConfig, HttpTarget, Method, Outcome, Response, SendError, TlsConfig};
use crate::gateway::sign::{Decimal, Secret};
use crate::ids::{InstrumentId, InstrumentIndex, Venue, VenueSymbol};
use crate::num::{Money, ONE, Price, Qty, fee, notional};
use crate::records::{ExecReport, Fill, Liquidity, Order, OrderId, OrderKind, RejectReason, Side, Tif};
use crate::stage::exec::{Fees, Gateway};

// ---------------------------------------------------------------------------------------------
// Configuration.

/// An API key: sent as a header (and, for Bybit, signed). Not a secret in the HMAC sense, but
/// kept out of logs all the same: `Debug` prints `ApiKey(***)`.
pub struct ApiKey(Box<[u8]>);

impl ApiKey {
    /// A key from its text; `None` if it is empty or holds a byte a header cannot carry.
    pub fn new(key: &str) -> Option<ApiKey> {
        (!key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())).then(|| ApiKey(key.as_bytes().into()))
    }

    /// Reads the key from the environment variable `var`. The error names the variable, never
    /// the value.
    pub fn from_env(var: &str) -> Result<ApiKey, String> {
        let value = std::env::var(var).map_err(|_| format!("environment variable {var} is not set or not UTF-8"))?;
        ApiKey::new(value.trim()).ok_or_else(|| format!("environment variable {var} is empty or not a valid API key"))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A coin or currency code (`BTC`, `USDT`), stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    len: u8,
    bytes: [u8; 16],
}

impl Asset {
    /// An asset code of 1 to 16 ASCII letters and digits.
    pub fn new(code: &str) -> Option<Asset> {
        if code.is_empty() || code.len() > 16 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut bytes = [0; 16];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Some(Asset {
            len: code.len() as u8,
            bytes,
        })
    }

    /// The code's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Asset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Asset({})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// How one instrument is traded on the gateway's venue, from config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    /// Our canonical symbol (`BTCUSDT`); the venue's symbol comes from the [`InstrumentIndex`].
    pub symbol: String,
    /// Decimals the venue accepts in a price (a finer price is refused locally, `VenueFilter`).
    pub price_decimals: u8,
    /// Decimals the venue accepts in a quantity.
    pub qty_decimals: u8,
    /// The base asset (`BTC`).
    pub base_asset: String,
    /// The quote asset (`USDT`): fees are reported in it.
    pub quote_asset: String,
}

/// One instrument as the gateway trades it, resolved at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The venue's symbol.
    pub symbol: VenueSymbol,
    /// Decimals allowed in a price.
    pub price_decimals: u8,
    /// Decimals allowed in a quantity.
    pub qty_decimals: u8,
    /// Base asset.
    pub base: Asset,
    /// Quote asset.
    pub quote: Asset,
}

/// Everything a REST gateway needs, checked by [`RestGateway::new`].
#[derive(Debug)]
pub struct GatewayConfig {
    /// `https://api.binance.com`, `https://api.bybit.com`, or `http://127.0.0.1:<port>` for a
    /// mock. Only the scheme, host and port are used.
    pub base_url: String,
    /// The API key.
    pub api_key: ApiKey,
    /// The HMAC secret.
    pub secret: Secret,
    /// Receive window sent with every signed request, in ms (1..=60000).
    pub recv_window_ms: u32,
    /// Deadline of every request.
    pub request_timeout: Duration,
    /// How often an order in the unknown state is queried.
    pub resolve_every: Duration,
    /// How often a resting order is queried for fills.
    pub poll_open_every: Duration,
    /// Our own limit: at most this many orders ...
    pub order_limit: u32,
    /// ... per this sliding window.
    pub order_window: Duration,
    /// How long every request stops after the venue says the IP is blocked without saying for
    /// how long (Bybit's HTTP 403: its docs say to wait at least ten minutes).
    pub ip_block: Duration,
    /// Most orders open at once (the order table's size).
    pub open_capacity: usize,
    /// Fee rate used for fills whose fee the venue does not report, maker side, in thousandths
    /// of a basis point.
    pub maker_fee_bps_milli: i64,
    /// The same, taker side.
    pub taker_fee_bps_milli: i64,
    /// Prefix of client order ids; the engine id follows in decimal. Make it unique per engine
    /// run (engine ids restart at each run, client ids must not repeat); at most 16 characters
    /// of `A-Z a-z 0-9 - _`.
    pub client_id_prefix: String,
    /// The instruments this gateway trades.
    pub instruments: Vec<InstrumentSpec>,
    /// Connection pool and buffer sizes.
    pub http: HttpConfig,
    /// TLS roots for `https://` (the bundled webpki roots when `None`).
    pub tls: Option<TlsConfig>,
}

impl GatewayConfig {
    /// A configuration with the usual timings: 5 s receive window, 2 s request deadline,
    /// unknown orders queried every 250 ms, resting orders every second, 10 orders per second of
    /// our own, 1024 open orders, no fee estimate, prefix `mx-`, no instruments.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey, secret: Secret) -> GatewayConfig {
        GatewayConfig {
            base_url: base_url.into(),
            api_key,
            secret,
            recv_window_ms: 5_000,
            request_timeout: Duration::from_secs(2),
            resolve_every: Duration::from_millis(250),
            poll_open_every: Duration::from_secs(1),
            order_limit: 10,
            order_window: Duration::from_secs(1),
            ip_block: Duration::from_secs(600),
            open_capacity: 1024,
            maker_fee_bps_milli: 0,
            taker_fee_bps_milli: 0,
            client_id_prefix: "mx-".to_string(),
            instruments: Vec::new(),
            http: HttpConfig::default(),
            tls: None,
        }
    }

    /// Reads the API key and secret from `MAXX_<VENUE>_API_KEY` and `MAXX_<VENUE>_API_SECRET`
    /// (`MAXX_BINANCE_API_KEY`, `MAXX_BYBIT_API_SECRET`, ...). Errors name the variable only.
    pub fn credentials_from_env(venue: Venue) -> Result<(ApiKey, Secret), String> {
        let upper = venue.name().to_ascii_uppercase();
        let key = ApiKey::from_env(&format!("MAXX_{upper}_API_KEY"))?;
        let secret = Secret::from_env(&format!("MAXX_{upper}_API_SECRET"))?;
        Ok((key, secret))
    }
}

/// Why a gateway could not be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// What a venue protocol provides.

/// The request a protocol is asked to write.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    /// Place an order.
    Place {
        /// The instrument.
        listing: &'a Listing,
        /// Our client order id.
        client_id: &'a [u8],
        /// Side.
        side: Side,
        /// Quantity.
        qty: Qty,
        /// Market or limit.
        kind: OrderKind,
        /// Time in force (never [`Tif::Auto`] here).
        tif: Tif,
    },
    /// Query one order by client id.
    Query {
        /// The instrument.
        listing: &'a Listing,
        /// Our client order id.
        client_id: &'a [u8],
    },
    /// Cancel one order by client id.
    Cancel {
        /// The instrument.
        listing: &'a Listing,
        /// Our client order id.
        client_id: &'a [u8],
    },
    /// Fetch the venue's time (unsigned).
    Time,
}

/// Credentials and timing for signing one request.
#[derive(Debug)]
pub struct SignCx<'a> {
    /// The API key.
    pub api_key: &'a ApiKey,
    /// The secret.
    pub secret: &'a Secret,
    /// Receive window, ms.
    pub recv_window_ms: u32,
    /// The request's timestamp on the venue's clock as we estimate it, ms.
    pub timestamp_ms: u64,
}

/// A short header value stored inline (keys, timestamps, signatures).
#[derive(Clone, Copy)]
pub struct HeaderValue {
    len: u8,
    bytes: [u8; 128],
}

impl HeaderValue {
    /// Copies `value`; `None` if longer than 128 bytes.
    pub fn new(value: &[u8]) -> Option<HeaderValue> {
        let mut bytes = [0; 128];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(HeaderValue {
            len: value.len() as u8,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for HeaderValue {
    // Header values include the API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderValue(..)")
    }
}

/// Most extra headers a protocol adds to one request.
pub const MAX_HEADERS: usize = 4;

/// A request written by a protocol into the gateway's scratch buffers.
#[derive(Clone, Copy, Debug)]
pub struct Built {
    /// The method.
    pub method: Method,
    /// Bytes of the path and query in the target buffer.
    pub target_len: usize,
    /// Bytes of body in the body buffer, with its content type; `None` for no body.
    pub body: Option<(&'static str, usize)>,
    /// Extra headers.
    pub headers: [(&'static str, HeaderValue); MAX_HEADERS],
    /// How many of `headers` are used.
    pub header_count: usize,
}

/// What the venue says an order is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Open at the venue (new or partly filled).
    Open,
    /// Completely filled.
    Filled,
    /// Over with part left unfilled: cancelled, expired (IOC, FOK), or closed by the venue;
    /// `Some(reason)` when the venue closed it for a reason worth a reject if nothing filled.
    Closed(Option<RejectReason>),
}

/// An order's state as one venue answer gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderState {
    /// The venue's id for the order.
    pub venue_order_id: u64,
    /// Where it stands.
    pub status: Status,
    /// Cumulative executed quantity.
    pub cum_qty: Qty,
    /// Cumulative executed quote amount.
    pub cum_quote: Money,
    /// Cumulative fee in quote terms, when the venue reports one.
    pub cum_fee: Option<Money>,
    /// The answer lists the individual fills ([`Protocol::each_fill`]).
    pub has_fills: bool,
}

/// A venue answer, mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The order's state.
    Order(OrderState),
    /// Accepted, with nothing said about the order's state (Bybit's create and cancel): query.
    Accepted {
        /// The venue's order id, when given.
        venue_order_id: Option<u64>,
    },
    /// The venue's time, ms (for [`Call::Time`]).
    Time(u64),
    /// The venue does not know the order.
    NotFound,
    /// A definite refusal.
    Reject(RejectReason),
    /// A rate limit: stop for `retry_after_ms` (from now), or until the venue's `reset_ms`
    /// (venue clock), or a default.
    RateLimited {
        /// Every request must stop, not just new orders (an IP-level limit or ban).
        all: bool,
        /// How long to stop, when the venue says so relative to now.
        retry_after_ms: Option<u64>,
        /// When to resume on the venue's clock, when it says so.
        reset_ms: Option<u64>,
    },
    /// The request's timestamp was outside the receive window.
    ClockSkew,
    /// The outcome is not known (5xx, the venue's own "unknown" code).
    Ambiguous,
}

/// A block the venue's usage headers call for before its limit is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Every request, or only new orders.
    pub all: bool,
    /// Until this time on the venue's clock, ms.
    pub until_ms: u64,
}

/// A venue's REST order-entry protocol: request writing and signing, answer mapping.
pub trait Protocol {
    /// The venue.
    const VENUE: Venue;

    /// Writes `call` into `target` (path and query) and `body`, signed with `cx`. `None` if it
    /// does not fit.
    fn build(&self, call: &Call<'_>, cx: &SignCx<'_>, target: &mut [u8], body: &mut [u8]) -> Option<Built>;

    /// Maps a response to `call`.
    fn answer(&self, call: &Call<'_>, side: Side, response: &Response<'_>) -> Answer;

    /// Calls `f(price, qty, fee_in_quote)` for every fill listed in a placement answer whose
    /// state said [`OrderState::has_fills`].
    fn each_fill(&self, listing: &Listing, side: Side, response: &Response<'_>, f: &mut dyn FnMut(Price, Qty, Money));

    /// A block the usage headers of a response to `call` ask for, if any.
    fn usage(&self, call: &Call<'_>, response: &Response<'_>, venue_now_ms: u64) -> Option<Usage>;
}

// ---------------------------------------------------------------------------------------------
// The gateway.

/// Request kinds, in the low byte of a tag.
const PLACE: u64 = 1;
const QUERY: u64 = 2;
const CANCEL: u64 = 3;
const TIME: u64 = 4;

/// No timer.
const NEVER: u64 = u64::MAX;

/// Where an order stands with us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The slot is free.
    Free,
    /// The placement is in flight.
    Placing,
    /// The placement's outcome is unknown; querying.
    Unknown,
    /// Accepted; open or being learnt about.
    Open,
}

/// Where a cancel stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelState {
    /// None asked.
    None,
    /// Asked while the placement was in flight: sent once the venue has answered.
    Wanted,
    /// In flight.
    Sent,
    /// Accepted by the venue (or possibly done, the answer lost): the next query settles it.
    Settling {
        /// The venue confirmed it.
        confirmed: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    phase: Phase,
    generation: u32,
    order_id: OrderId,
    instrument: InstrumentId,
    side: Side,
    qty: Qty,
    acked: bool,
    /// Seen open after its placement: later fills are maker fills.
    rested: bool,
    filled: Qty,
    quote: Money,
    fee: Money,
    /// The placement's signed timestamp (venue clock, ms).
    placed_ms: u64,
    cancel: CancelState,
    query_in_flight: bool,
    query_due_ns: u64,
}

const FREE_SLOT: Slot = Slot {
    phase: Phase::Free,
    generation: 0,
    order_id: OrderId(0),
    instrument: InstrumentId(0),
    side: Side::Buy,
    qty: Qty::ZERO,
    acked: false,
    rested: false,
    filled: Qty::ZERO,
    quote: Money::ZERO,
    fee: Money::ZERO,
    placed_ms: 0,
    cancel: CancelState::None,
    query_in_flight: false,
    query_due_ns: NEVER,
};

/// Counters, for the cold side's status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Placements sent.
    pub orders_sent: u64,
    /// Orders refused locally (rate limit, block, clock sync, precision, table full, down).
    pub local_rejects: u64,
    /// Orders the venue refused, or closed unfilled for a reason (post-only).
    pub venue_rejects: u64,
    /// Unknown outcomes reported.
    pub unknowns: u64,
    /// Unknown outcomes resolved by query (found, or found never placed).
    pub resolved: u64,
    /// Queries sent.
    pub queries: u64,
    /// Cancels sent.
    pub cancels: u64,
    /// Venue rate-limit answers (429, 418, 10006, 403) and usage blocks.
    pub rate_limited: u64,
    /// Clock offsets learnt.
    pub clock_syncs: u64,
}

/// A REST order-entry gateway for one venue. See the module docs.
pub struct RestGateway<P: Protocol> {
    http: HttpClient,
    core: Core<P>,
}

/// Everything but the HTTP client, so response handlers can borrow it while the client hands
/// them a response. Handlers never send: they set timers, and [`Core::run_timers`] sends.
struct Core<P: Protocol> {
    protocol: P,
    api_key: ApiKey,
    secret: Secret,
    recv_window_ms: u32,
    timeout_ns: u64,
    resolve_ns: u64,
    poll_open_ns: u64,
    ip_block_ns: u64,
    maker_fee: i64,
    taker_fee: i64,
    prefix: Box<[u8]>,
    listings: Vec<Option<Listing>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Send times of the last `order_limit` orders (a ring).
    sent_at: Vec<u64>,
    sent_next: usize,
    window_ns: u64,
    /// New orders refused until then (monotonic ns).
    block_orders_until: u64,
    /// Every request held until then.
    block_all_until: u64,
    /// Venue time minus our wall clock, ms.
    offset_ms: i64,
    /// A time request is in flight, sent at this wall time (ms).
    syncing_since_ms: Option<u64>,
    /// A time request should be sent.
    sync_wanted: bool,
    /// Earliest timer.
    next_timer_ns: u64,
    target: Box<[u8]>,
    body: Box<[u8]>,
    stats: GatewayStats,
}

impl<P: Protocol> std::fmt::Debug for RestGateway<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestGateway")
            .field("venue", &P::VENUE)
            .field("http", &self.http)
            .field("stats", &self.core.stats)
            .field("offset_ms", &self.core.offset_ms)
            .finish_non_exhaustive()
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<P: Protocol> RestGateway<P> {
    /// Builds the gateway: checks the config, resolves the host, looks every instrument up in
    /// `index` for its symbol on [`Protocol::VENUE`], and allocates every table and buffer.
    /// No connection is opened until the first request.
    pub fn new(protocol: P, config: GatewayConfig, index: &InstrumentIndex) -> Result<Self, ConfigError> {
        let err = |m: String| ConfigError(format!("{} gateway: {m}", P::VENUE));
        let target = HttpTarget::resolve(&config.base_url).map_err(|e| err(e.0))?;
        if config.recv_window_ms == 0 || config.recv_window_ms > 60_000 {
            return Err(err(format!(
                "recv_window_ms {} is outside 1..=60000",
                config.recv_window_ms
            )));
        }
        if config.order_limit == 0 || config.order_window.is_zero() {
            return Err(err("order_limit and order_window must be positive".into()));
        }
        let prefix = &config.client_id_prefix;
        if prefix.len() > 16
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(format!(
                "client_id_prefix {prefix:?} must be at most 16 of A-Z a-z 0-9 - _"
            )));
        }
        let mut listings = vec![None; index.len()];
        for spec in &config.instruments {
            let id = index
                .by_symbol(&spec.symbol)
                .ok_or_else(|| err(format!("instrument {} is not configured", spec.symbol)))?;
            let symbol = index.get(id).venue_symbols[P::VENUE.index()]
                .ok_or_else(|| err(format!("{} is not listed on {}", spec.symbol, P::VENUE)))?;
            if spec.price_decimals > 8 || spec.qty_decimals > 8 {
                return Err(err(format!("{}: decimals above 8", spec.symbol)));
            }
            let asset =
                |code: &str| Asset::new(code).ok_or_else(|| err(format!("{}: bad asset code {code:?}", spec.symbol)));
            listings[id.index()] = Some(Listing {
                symbol,
                price_decimals: spec.price_decimals,
                qty_decimals: spec.qty_decimals,
                base: asset(&spec.base_asset)?,
                quote: asset(&spec.quote_asset)?,
            });
        }
        let capacity = config.open_capacity.clamp(1, 1 << 24);
        let http = HttpClient::new(target, config.tls, config.http);
        let core = Core {
            protocol,
            api_key: config.api_key,
            secret: config.secret,
            recv_window_ms: config.recv_window_ms,
            timeout_ns: duration_ns(config.request_timeout),
            resolve_ns: duration_ns(config.resolve_every),
            poll_open_ns: duration_ns(config.poll_open_every),
            ip_block_ns: duration_ns(config.ip_block),
            maker_fee: config.maker_fee_bps_milli,
            taker_fee: config.taker_fee_bps_milli,
            prefix: config.client_id_prefix.as_bytes().into(),
            listings,
            slots: vec![FREE_SLOT; capacity],
            free: (0..capacity as u32).rev().collect(),
            sent_at: vec![0; config.order_limit as usize],
            sent_next: 0,
            window_ns: duration_ns(config.order_window),
            block_orders_until: 0,
            block_all_until: 0,
            offset_ms: 0,
            syncing_since_ms: None,
            sync_wanted: false,
            next_timer_ns: NEVER,
            target: vec![0; 2048].into_boxed_slice(),
            body: vec![0; 2048].into_boxed_slice(),
            stats: GatewayStats::default(),
        };
        Ok(RestGateway { http, core })
    }

    /// The protocol (its settings).
    pub fn protocol(&self) -> &P {
        &self.core.protocol
    }

    /// The counters.
    pub fn stats(&self) -> GatewayStats {
        self.core.stats
    }

    /// The HTTP client's counters.
    pub fn http_stats(&self) -> crate::gateway::http::HttpStats {
        self.http.stats()
    }

    /// Venue time minus our wall clock, ms, as last learnt.
    pub fn clock_offset_ms(&self) -> i64 {
        self.core.offset_ms
    }

    /// `true` while the venue's time is wanted or being fetched.
    pub fn syncing_clock(&self) -> bool {
        self.core.sync_wanted || self.core.syncing_since_ms.is_some()
    }

    /// Orders the gateway holds (placing, unknown or open).
    pub fn open_orders(&self) -> usize {
        self.core.slots.len() - self.core.free.len()
    }

    /// Requests in flight or waiting for a connection.
    pub fn requests_in_flight(&self) -> usize {
        self.http.in_flight()
    }

    /// `true` if new orders are refused now for a rate limit (monotonic `now_ns`).
    pub fn orders_blocked(&self, now_ns: u64) -> bool {
        self.core.orders_blocked(now_ns)
    }

    /// The client order id prefix ([`GatewayConfig::client_id_prefix`]).
    pub fn client_id_prefix(&self) -> &str {
        // Checked at construction to be ASCII letters, digits, `-` and `_`.
        std::str::from_utf8(&self.core.prefix).unwrap_or_default()
    }

    /// The client order id of `order_id` (`<prefix><id>`), written into `buf`.
    pub fn client_id<'b>(&self, order_id: OrderId, buf: &'b mut [u8; 40]) -> &'b [u8] {
        client_id(&self.core.prefix, order_id, buf)
    }
}

impl<P: Protocol> Core<P> {
    fn orders_blocked(&self, now_ns: u64) -> bool {
        now_ns < self.block_orders_until.max(self.block_all_until)
    }

    fn venue_now_ms(&self) -> u64 {
        (wall_ns() / 1_000_000).saturating_add_signed(self.offset_ms)
    }

    fn tag(&self, slot: usize, kind: u64) -> u64 {
        (u64::from(self.slots[slot].generation) << 32) | ((slot as u64) << 8) | kind
    }

    /// Writes and sends one request; returns the timestamp it was signed with.
    fn send(&mut self, http: &mut HttpClient, call: &Call<'_>, tag: u64, now_ns: u64) -> Result<u64, SendError> {
        let timestamp_ms = self.venue_now_ms();
        let cx = SignCx {
            api_key: &self.api_key,
            secret: &self.secret,
            recv_window_ms: self.recv_window_ms,
            timestamp_ms,
        };
        let built = self
            .protocol
            .build(call, &cx, &mut self.target, &mut self.body)
            .ok_or(SendError::TooLarge)?;
        let mut headers: [(&str, &[u8]); MAX_HEADERS] = [("", &[]); MAX_HEADERS];
        for (dst, (name, value)) in headers.iter_mut().zip(built.headers.iter()).take(built.header_count) {
            *dst = (name, value.as_bytes());
        }
        let body = built.body.map(|(content_type, len)| (content_type, &self.body[..len]));
        http.send(
            tag,
            built.method,
            &self.target[..built.target_len],
            &headers[..built.header_count],
            body,
            now_ns.saturating_add(self.timeout_ns),
            now_ns,
        )?;
        Ok(timestamp_ms)
    }

    /// Our own sliding window: `true` if one more order now stays within it.
    fn window_allows(&self, now_ns: u64) -> bool {
        let oldest = self.sent_at[self.sent_next];
        oldest == 0 || now_ns.saturating_sub(oldest) >= self.window_ns
    }

    fn free_slot(&mut self, s: usize) {
        let generation = self.slots[s].generation.wrapping_add(1);
        self.slots[s] = Slot {
            generation,
            ..FREE_SLOT
        };
        self.free.push(s as u32);
    }

    fn find(&self, order_id: OrderId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.phase != Phase::Free && s.order_id == order_id)
    }

    /// Queries slot `s` at `due_ns` (or earlier if already due earlier).
    fn schedule(&mut self, s: usize, due_ns: u64) {
        let slot = &mut self.slots[s];
        slot.query_due_ns = slot.query_due_ns.min(due_ns);
        self.next_timer_ns = self.next_timer_ns.min(due_ns);
    }

    /// Wakes the timers at `at_ns`.
    fn wake(&mut self, at_ns: u64) {
        self.next_timer_ns = self.next_timer_ns.min(at_ns);
    }

    /// Applies a rate-limit answer.
    fn block(&mut self, all: bool, retry_after_ms: Option<u64>, reset_ms: Option<u64>, now_ns: u64) {
        self.stats.rate_limited += 1;
        let wait_ms = match (retry_after_ms, reset_ms) {
            (Some(ms), _) => ms,
            (None, Some(reset)) => reset.saturating_sub(self.venue_now_ms()),
            // Nothing said: the IP block's length for an IP-level refusal, else a second.
            (None, None) if all => self.ip_block_ns / 1_000_000,
            (None, None) => 1_000,
        };
        self.block_until(all, now_ns.saturating_add(wait_ms.saturating_mul(1_000_000)));
    }

    fn block_until(&mut self, all: bool, until_ns: u64) {
        let field = if all {
            &mut self.block_all_until
        } else {
            &mut self.block_orders_until
        };
        *field = (*field).max(until_ns);
    }

    fn want_clock_sync(&mut self, now_ns: u64) {
        if self.syncing_since_ms.is_none() {
            self.sync_wanted = true;
            self.wake(now_ns);
        }
    }

    /// Reports what a venue answer says about slot `s`'s order.
    fn apply(
        &mut self,
        s: usize,
        state: &OrderState,
        response: &Response<'_>,
        now_ns: u64,
        out: &mut impl FnMut(ExecReport),
    ) {
        let slot = self.slots[s];
        let Some(listing) = self.listings[slot.instrument.index()] else {
            return;
        };
        if !slot.acked {
            out(ExecReport::Ack {
                order_id: slot.order_id,
                venue_order_id: state.venue_order_id,
            });
            self.slots[s].acked = true;
        }
        if slot.phase == Phase::Unknown {
            self.stats.resolved += 1;
        }
        self.slots[s].phase = Phase::Open;
        let done = state.status != Status::Open;
        let all_filled = state.status == Status::Filled || (done && state.cum_qty >= slot.qty);
        let ts_ns = wall_ns();
        let fill = |price: Price, qty: Qty, fee: Money, liquidity: Liquidity, last: bool| {
            ExecReport::Fill(Fill {
                order_id: slot.order_id,
                instrument: slot.instrument,
                venue: P::VENUE,
                side: slot.side,
                price,
                qty,
                fee,
                liquidity,
                last,
                ts_ns,
            })
        };
        // Listed fills first (the placement answer), one report each, as takers.
        if state.has_fills && state.cum_qty > slot.filled {
            let mut count = 0usize;
            self.protocol
                .each_fill(&listing, slot.side, response, &mut |_, _, _| count += 1);
            let (mut seen, mut filled, mut quote, mut fees) = (0usize, slot.filled, slot.quote, slot.fee);
            // One report is held back so that `last` is decided on the final one.
            let mut held: Option<(Price, Qty, Money)> = None;
            self.protocol.each_fill(&listing, slot.side, response, &mut |p, q, f| {
                seen += 1;
                filled = filled.checked_add(q).unwrap_or(filled);
                quote = notional(p, q).and_then(|n| quote.checked_add(n)).unwrap_or(quote);
                fees = fees.checked_add(f).unwrap_or(fees);
                if let Some((p, q, f)) = held.replace((p, q, f)) {
                    out(fill(p, q, f, Liquidity::Taker, false));
                }
            });
            if let Some((p, q, f)) = held {
                let last = seen == count && all_filled && filled >= state.cum_qty;
                out(fill(p, q, f, Liquidity::Taker, last));
            }
            let slot = &mut self.slots[s];
            slot.filled = filled;
            slot.quote = quote;
            slot.fee = fees;
        }
        // Whatever executed beyond what was reported, as one fill at its average price.
        let slot = self.slots[s];
        if state.cum_qty > slot.filled {
            let qty = Qty::from_raw(state.cum_qty.raw() - slot.filled.raw()).unwrap_or(Qty::ZERO);
            let dquote = i128::from(state.cum_quote.raw()) - i128::from(slot.quote.raw());
            let raw = (dquote.max(0) * i128::from(ONE)) / i128::from(qty.raw().max(1));
            let price = i64::try_from(raw).ok().and_then(Price::from_raw).unwrap_or(Price::ZERO);
            let liquidity = if slot.rested {
                Liquidity::Maker
            } else {
                Liquidity::Taker
            };
            let fee_now = match state.cum_fee {
                Some(total) => total.checked_sub(slot.fee).unwrap_or(Money::ZERO),
                None => {
                    let rate = match liquidity {
                        Liquidity::Maker => self.maker_fee,
                        Liquidity::Taker => self.taker_fee,
                    };
                    notional(price, qty).and_then(|n| fee(n, rate)).unwrap_or(Money::ZERO)
                }
            };
            out(fill(price, qty, fee_now, liquidity, all_filled));
            let slot = &mut self.slots[s];
            slot.filled = state.cum_qty;
            slot.quote = state.cum_quote;
            slot.fee = slot.fee.checked_add(fee_now).unwrap_or(slot.fee);
        }
        let slot = self.slots[s];
        if state.status == Status::Open {
            self.slots[s].rested = true;
            let due = match slot.cancel {
                // Waited for the placement's answer: goes out now.
                CancelState::Wanted => {
                    self.wake(now_ns);
                    now_ns.saturating_add(self.poll_open_ns)
                }
                CancelState::Settling { confirmed: false } => {
                    // The lost cancel did not happen: the order is still open.
                    self.slots[s].cancel = CancelState::None;
                    out(ExecReport::CancelRejected {
                        order_id: slot.order_id,
                        reason: RejectReason::VenueDown,
                    });
                    now_ns.saturating_add(self.poll_open_ns)
                }
                // Accepted, not yet visible as closed: look again soon.
                CancelState::Settling { confirmed: true } => now_ns.saturating_add(self.resolve_ns),
                _ => now_ns.saturating_add(self.poll_open_ns),
            };
            self.schedule(s, due);
            return;
        }
        let remaining = slot.qty.checked_sub(slot.filled).unwrap_or(Qty::ZERO);
        if !(all_filled || remaining.is_zero()) {
            match state.status {
                Status::Closed(Some(reason)) if slot.filled.is_zero() => {
                    self.stats.venue_rejects += 1;
                    out(ExecReport::Reject {
                        order_id: slot.order_id,
                        instrument: slot.instrument,
                        side: slot.side,
                        qty: slot.qty,
                        reason,
                    });
                }
                _ => out(ExecReport::Cancelled {
                    order_id: slot.order_id,
                    instrument: slot.instrument,
                    side: slot.side,
                    qty: remaining,
                }),
            }
        }
        let ours = matches!(slot.cancel, CancelState::Settling { .. } | CancelState::Sent);
        if slot.cancel != CancelState::None && (all_filled || remaining.is_zero() || !ours) {
            // The order ended by itself before the cancel could act on it.
            out(ExecReport::CancelRejected {
                order_id: slot.order_id,
                reason: RejectReason::UnknownOrder,
            });
        }
        self.free_slot(s);
    }

    /// Sends the cancel of slot `s`, or refuses it.
    fn send_cancel(&mut self, http: &mut HttpClient, s: usize, now_ns: u64, out: &mut impl FnMut(ExecReport)) {
        let slot = self.slots[s];
        let mut refuse = |reason| {
            out(ExecReport::CancelRejected {
                order_id: slot.order_id,
                reason,
            })
        };
        if now_ns < self.block_all_until {
            self.slots[s].cancel = CancelState::None;
            return refuse(RejectReason::VenueRateLimit);
        }
        let Some(listing) = self.listings[slot.instrument.index()] else {
            return;
        };
        let mut id = [0u8; 40];
        let client = client_id(&self.prefix, slot.order_id, &mut id);
        let tag = self.tag(s, CANCEL);
        match self.send(
            http,
            &Call::Cancel {
                listing: &listing,
                client_id: client,
            },
            tag,
            now_ns,
        ) {
            Ok(_) => {
                self.stats.cancels += 1;
                self.slots[s].cancel = CancelState::Sent;
            }
            Err(e) => {
                self.slots[s].cancel = CancelState::None;
                refuse(match e {
                    SendError::Full => RejectReason::VenueRateLimit,
                    SendError::Down => RejectReason::VenueDown,
                    SendError::TooLarge => RejectReason::VenueReject,
                });
            }
        }
    }

    fn send_query(&mut self, http: &mut HttpClient, s: usize, now_ns: u64) {
        let slot = self.slots[s];
        let Some(listing) = self.listings[slot.instrument.index()] else {
            return;
        };
        let mut id = [0u8; 40];
        let client = client_id(&self.prefix, slot.order_id, &mut id);
        let tag = self.tag(s, QUERY);
        self.slots[s].query_due_ns = NEVER;
        match self.send(
            http,
            &Call::Query {
                listing: &listing,
                client_id: client,
            },
            tag,
            now_ns,
        ) {
            Ok(_) => {
                self.stats.queries += 1;
                self.slots[s].query_in_flight = true;
            }
            Err(_) => self.schedule(s, now_ns.saturating_add(self.resolve_ns)),
        }
    }

    /// Handles one finished request. Sends nothing; follow-ups go through the timers.
    fn on_outcome(&mut self, tag: u64, outcome: Outcome<'_>, now_ns: u64, out: &mut impl FnMut(ExecReport)) {
        let kind = tag & 0xff;
        if kind == TIME {
            let sent_ms = self.syncing_since_ms.take().unwrap_or(0);
            if let Outcome::Response(r) = outcome
                && let Answer::Time(venue_ms) = self.protocol.answer(&Call::Time, Side::Buy, &r)
            {
                let now_ms = wall_ns() / 1_000_000;
                let mid = sent_ms + now_ms.saturating_sub(sent_ms) / 2;
                self.offset_ms = venue_ms as i64 - mid as i64;
                self.stats.clock_syncs += 1;
            }
            return;
        }
        let s = ((tag >> 8) & 0xff_ffff) as usize;
        let Some(slot) = self.slots.get(s).copied() else {
            return;
        };
        if slot.phase == Phase::Free || u64::from(slot.generation) != tag >> 32 {
            return;
        }
        let Some(listing) = self.listings[slot.instrument.index()] else {
            return;
        };
        let mut id = [0u8; 40];
        let client = client_id(&self.prefix, slot.order_id, &mut id);
        let call = match kind {
            PLACE => Call::Place {
                listing: &listing,
                client_id: client,
                side: slot.side,
                qty: slot.qty,
                kind: OrderKind::Market,
                tif: Tif::Gtc,
            },
            QUERY => Call::Query {
                listing: &listing,
                client_id: client,
            },
            _ => Call::Cancel {
                listing: &listing,
                client_id: client,
            },
        };
        let (answer, response) = match outcome {
            Outcome::Response(r) => {
                let venue_now = self.venue_now_ms();
                if let Some(usage) = self.protocol.usage(&call, &r, venue_now) {
                    self.stats.rate_limited += 1;
                    let wait_ms = usage.until_ms.saturating_sub(venue_now);
                    self.block_until(usage.all, now_ns.saturating_add(wait_ms.saturating_mul(1_000_000)));
                }
                (self.protocol.answer(&call, slot.side, &r), r)
            }
            Outcome::Failed { sent: false, .. } => (Answer::Reject(RejectReason::VenueDown), EMPTY_RESPONSE),
            Outcome::Failed { sent: true, .. } => (Answer::Ambiguous, EMPTY_RESPONSE),
        };
        let reject = ExecReport::Reject {
            order_id: slot.order_id,
            instrument: slot.instrument,
            side: slot.side,
            qty: slot.qty,
            reason: RejectReason::VenueReject,
        };
        let with_reason = |reason| match reject {
            ExecReport::Reject {
                order_id,
                instrument,
                side,
                qty,
                ..
            } => ExecReport::Reject {
                order_id,
                instrument,
                side,
                qty,
                reason,
            },
            other => other,
        };
        match kind {
            PLACE => match answer {
                Answer::Order(state) => self.apply(s, &state, &response, now_ns, out),
                Answer::Accepted { venue_order_id } => {
                    out(ExecReport::Ack {
                        order_id: slot.order_id,
                        venue_order_id: venue_order_id.unwrap_or(0),
                    });
                    let sl = &mut self.slots[s];
                    sl.acked = true;
                    sl.phase = Phase::Open;
                    // The venue said nothing of fills: ask now (a wanted cancel goes too).
                    self.schedule(s, now_ns);
                }
                Answer::Ambiguous => {
                    self.stats.unknowns += 1;
                    out(ExecReport::Unknown {
                        order_id: slot.order_id,
                        instrument: slot.instrument,
                        side: slot.side,
                        qty: slot.qty,
                    });
                    self.slots[s].phase = Phase::Unknown;
                    self.schedule(s, now_ns);
                }
                other => {
                    let reason = match other {
                        Answer::Reject(reason) => reason,
                        Answer::ClockSkew => {
                            self.want_clock_sync(now_ns);
                            RejectReason::ClockSkew
                        }
                        Answer::RateLimited {
                            all,
                            retry_after_ms,
                            reset_ms,
                        } => {
                            self.block(all, retry_after_ms, reset_ms, now_ns);
                            RejectReason::VenueRateLimit
                        }
                        _ => RejectReason::VenueReject,
                    };
                    self.stats.venue_rejects += 1;
                    out(with_reason(reason));
                    if slot.cancel != CancelState::None {
                        out(ExecReport::CancelRejected {
                            order_id: slot.order_id,
                            reason: RejectReason::UnknownOrder,
                        });
                    }
                    self.free_slot(s);
                }
            },
            QUERY => {
                self.slots[s].query_in_flight = false;
                let retry = now_ns.saturating_add(self.resolve_ns);
                match answer {
                    Answer::Order(state) => self.apply(s, &state, &response, now_ns, out),
                    Answer::NotFound if slot.phase == Phase::Unknown => {
                        // Trusted only once the lost request can no longer be accepted.
                        let expired = slot
                            .placed_ms
                            .saturating_add(u64::from(self.recv_window_ms))
                            .saturating_add(1_000);
                        if self.venue_now_ms() > expired {
                            self.stats.resolved += 1;
                            out(with_reason(RejectReason::VenueDown));
                            if slot.cancel != CancelState::None {
                                out(ExecReport::CancelRejected {
                                    order_id: slot.order_id,
                                    reason: RejectReason::UnknownOrder,
                                });
                            }
                            self.free_slot(s);
                        } else {
                            self.schedule(s, retry);
                        }
                    }
                    Answer::RateLimited {
                        all,
                        retry_after_ms,
                        reset_ms,
                    } => {
                        self.block(all, retry_after_ms, reset_ms, now_ns);
                        self.schedule(s, retry);
                    }
                    Answer::ClockSkew => {
                        self.want_clock_sync(now_ns);
                        self.schedule(s, retry);
                    }
                    // An accepted order the venue no longer lists (it keeps closed orders for a
                    // while only): keep asking, at the open-order pace, so nothing is assumed.
                    Answer::NotFound => self.schedule(s, now_ns.saturating_add(self.poll_open_ns)),
                    _ => self.schedule(s, retry),
                }
            }
            _ => match answer {
                Answer::Order(state) => {
                    self.slots[s].cancel = CancelState::Settling { confirmed: true };
                    self.apply(s, &state, &response, now_ns, out);
                }
                Answer::Accepted { .. } => {
                    self.slots[s].cancel = CancelState::Settling { confirmed: true };
                    self.schedule(s, now_ns);
                }
                Answer::Ambiguous => {
                    // It may have been cancelled: the next query says.
                    self.slots[s].cancel = CancelState::Settling { confirmed: false };
                    self.schedule(s, now_ns);
                }
                other => {
                    self.slots[s].cancel = CancelState::None;
                    let reason = match other {
                        Answer::NotFound => {
                            // Filled or closed meanwhile, or never placed: find out.
                            self.schedule(s, now_ns);
                            RejectReason::UnknownOrder
                        }
                        Answer::Reject(reason) => reason,
                        Answer::ClockSkew => {
                            self.want_clock_sync(now_ns);
                            RejectReason::ClockSkew
                        }
                        Answer::RateLimited {
                            all,
                            retry_after_ms,
                            reset_ms,
                        } => {
                            self.block(all, retry_after_ms, reset_ms, now_ns);
                            RejectReason::VenueRateLimit
                        }
                        _ => RejectReason::VenueReject,
                    };
                    out(ExecReport::CancelRejected {
                        order_id: slot.order_id,
                        reason,
                    });
                }
            },
        }
    }

    /// Runs due timers: the clock fetch, queries of unknown and open orders, cancels that
    /// waited for their placement's answer.
    fn run_timers(&mut self, http: &mut HttpClient, now_ns: u64, out: &mut impl FnMut(ExecReport)) -> bool {
        if now_ns < self.next_timer_ns {
            return false;
        }
        self.next_timer_ns = NEVER;
        if now_ns < self.block_all_until {
            // Nothing goes out: look again when the block ends.
            self.next_timer_ns = self.block_all_until;
            return false;
        }
        let mut busy = false;
        if self.sync_wanted {
            let sent_ms = wall_ns() / 1_000_000;
            if self.send(http, &Call::Time, TIME, now_ns).is_ok() {
                self.sync_wanted = false;
                self.syncing_since_ms = Some(sent_ms);
            } else {
                self.wake(now_ns.saturating_add(self.resolve_ns));
            }
            busy = true;
        }
        for s in 0..self.slots.len() {
            let slot = self.slots[s];
            if matches!(slot.phase, Phase::Free | Phase::Placing) {
                continue;
            }
            if slot.cancel == CancelState::Wanted {
                self.send_cancel(http, s, now_ns, out);
                busy = true;
            }
            if slot.query_due_ns <= now_ns && !slot.query_in_flight {
                self.send_query(http, s, now_ns);
                busy = true;
            }
            let due = self.slots[s].query_due_ns;
            if self.slots[s].phase != Phase::Free && due != NEVER {
                self.next_timer_ns = self.next_timer_ns.min(due);
            }
        }
        busy
    }

    fn submit(&mut self, http: &mut HttpClient, order: &Order, out: &mut impl FnMut(ExecReport)) {
        let now_ns = mono_ns();
        let mut local = |stats: &mut GatewayStats, reason| {
            stats.local_rejects += 1;
            out(ExecReport::Reject {
                order_id: order.id,
                instrument: order.instrument,
                side: order.side,
                qty: order.qty,
                reason,
            })
        };
        let Some(listing) = self.listings.get(order.instrument.index()).copied().flatten() else {
            return local(&mut self.stats, RejectReason::NotListed);
        };
        let bad_price =
            matches!(order.kind, OrderKind::Limit(p) if p.is_zero() || !fits_decimals(p.raw(), listing.price_decimals));
        let reason = if order.qty.is_zero() || (order.kind == OrderKind::Market && order.tif == Tif::PostOnly) {
            Some(RejectReason::BadInput)
        } else if self.orders_blocked(now_ns) || !self.window_allows(now_ns) {
            Some(RejectReason::VenueRateLimit)
        } else if self.sync_wanted || self.syncing_since_ms.is_some() {
            Some(RejectReason::ClockSkew)
        } else if bad_price || !fits_decimals(order.qty.raw(), listing.qty_decimals) {
            Some(RejectReason::VenueFilter)
        } else if self.find(order.id).is_some() {
            Some(RejectReason::DuplicateClientId)
        } else if self.free.is_empty() {
            Some(RejectReason::VenueReject)
        } else {
            None
        };
        if let Some(reason) = reason {
            return local(&mut self.stats, reason);
        }
        let Some(s) = self.free.pop().map(|s| s as usize) else {
            return;
        };
        let generation = self.slots[s].generation;
        self.slots[s] = Slot {
            phase: Phase::Placing,
            generation,
            order_id: order.id,
            instrument: order.instrument,
            side: order.side,
            qty: order.qty,
            ..FREE_SLOT
        };
        let tif = if order.tif == Tif::Auto { Tif::Gtc } else { order.tif };
        let mut id = [0u8; 40];
        let client = client_id(&self.prefix, order.id, &mut id);
        let call = Call::Place {
            listing: &listing,
            client_id: client,
            side: order.side,
            qty: order.qty,
            kind: order.kind,
            tif,
        };
        let tag = self.tag(s, PLACE);
        match self.send(http, &call, tag, now_ns) {
            Ok(timestamp_ms) => {
                self.stats.orders_sent += 1;
                self.slots[s].placed_ms = timestamp_ms;
                self.sent_at[self.sent_next] = now_ns.max(1);
                self.sent_next = (self.sent_next + 1) % self.sent_at.len();
            }
            Err(e) => {
                self.free_slot(s);
                local(
                    &mut self.stats,
                    match e {
                        SendError::Full => RejectReason::VenueRateLimit,
                        SendError::Down => RejectReason::VenueDown,
                        SendError::TooLarge => RejectReason::VenueReject,
                    },
                );
            }
        }
    }

    /// Cancels slot `s` now, or once its placement is answered.
    fn cancel_slot(&mut self, http: &mut HttpClient, s: usize, now_ns: u64, out: &mut impl FnMut(ExecReport)) {
        match (self.slots[s].phase, self.slots[s].cancel) {
            (Phase::Free, _) => {}
            // One cancel at a time: the pending one answers for both.
            (_, CancelState::Wanted | CancelState::Sent | CancelState::Settling { .. }) => {}
            (Phase::Placing, CancelState::None) => self.slots[s].cancel = CancelState::Wanted,
            _ => self.send_cancel(http, s, now_ns, out),
        }
    }
}

/// A response with nothing in it, for answers that carry no listed fills.
const EMPTY_RESPONSE: Response<'static> = Response::empty();

/// Writes `<prefix><id>` into `buf`.
fn client_id<'b>(prefix: &[u8], order_id: OrderId, buf: &'b mut [u8; 40]) -> &'b [u8] {
    let digits = Decimal::new(order_id.0);
    let n = prefix.len().min(16);
    buf[..n].copy_from_slice(&prefix[..n]);
    let d = digits.as_bytes();
    buf[n..n + d.len()].copy_from_slice(d);
    &buf[..n + d.len()]
}

/// Parses a client order id back into the engine id, if it has our prefix.
pub fn parse_client_id(prefix: &[u8], id: &[u8]) -> Option<OrderId> {
    crate::gateway::json::parse_u64(id.strip_prefix(prefix)?).map(OrderId)
}

/// `true` if `raw` (10^-8 units) has no digits beyond `decimals`.
fn fits_decimals(raw: i64, decimals: u8) -> bool {
    let unit = 10i64.pow(8u32.saturating_sub(u32::from(decimals)));
    raw % unit == 0
}

impl<P: Protocol> Gateway for RestGateway<P> {
    fn venue(&self) -> Venue {
        P::VENUE
    }

    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        self.core.submit(&mut self.http, order, out);
    }

    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport)) {
        match self.core.find(order_id) {
            Some(s) => self.core.cancel_slot(&mut self.http, s, mono_ns(), out),
            None => out(ExecReport::CancelRejected {
                order_id,
                reason: RejectReason::UnknownOrder,
            }),
        }
    }

    fn poll(&mut self, now_ns: u64, out: &mut impl FnMut(ExecReport)) -> bool {
        let Self { http, core } = self;
        let mut busy = http.poll(now_ns, &mut |tag, outcome| core.on_outcome(tag, outcome, now_ns, out));
        busy |= core.run_timers(http, now_ns, out);
        busy
    }

    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport)) {
        let now_ns = mono_ns();
        for s in 0..self.core.slots.len() {
            self.core.cancel_slot(&mut self.http, s, now_ns, out);
        }
    }

    fn open_capacity(&self) -> usize {
        self.core.slots.len()
    }

    /// The configured estimate ([`GatewayConfig::maker_fee_bps_milli`], `taker_fee_bps_milli`):
    /// the rate fills are charged at when the venue does not report their fee, so the router and
    /// the maker/taker rule assume what the gateway will book.
    fn fees(&self) -> Option<Fees> {
        Some(Fees {
            maker_bps_milli: self.core.maker_fee,
            taker_bps_milli: self.core.taker_fee,
        })
    }

    /// `false` while an order sent now would be refused without reaching the matching engine:
    /// the venue has blocked new orders or every request (a rate limit, a ban, an IP block), the
    /// connection is in its reconnect backoff after failed connects, or the clock offset is being
    /// re-learnt after a timestamp refusal.
    fn is_up(&self) -> bool {
        let now_ns = mono_ns();
        !self.core.orders_blocked(now_ns) && !self.http.in_backoff(now_ns) && !self.syncing_clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip() {
        let mut buf = [0u8; 40];
        let id = client_id(b"mx-", OrderId(4_294_967_297), &mut buf);
        assert_eq!(id, b"mx-4294967297");
        assert_eq!(parse_client_id(b"mx-", id), Some(OrderId(4_294_967_297)));
        assert_eq!(parse_client_id(b"zz-", id), None);
    }

    #[test]
    fn decimals_are_checked_exactly() {
        assert!(fits_decimals(123_450_000, 4));
        assert!(!fits_decimals(123_450_001, 4));
        assert!(fits_decimals(1, 8));
        assert!(fits_decimals(300_000_000, 0));
        assert!(!fits_decimals(150_000_000, 0));
    }

    /// A gateway for `BTCUSDT` on Binance against `url`, with a known fee estimate.
    fn gateway(url: &str) -> RestGateway<crate::gateway::binance::BinanceSpot> {
        use crate::ids::Symbol;
        let vs = VenueSymbol::new("BTCUSDT").unwrap();
        let index = InstrumentIndex::new([(Symbol::new("BTCUSDT").unwrap(), [Some(vs), None, None, None])]).unwrap();
        let mut c = GatewayConfig::new(url, ApiKey::new("key").unwrap(), Secret::from_bytes(b"secret"));
        c.maker_fee_bps_milli = -250;
        c.taker_fee_bps_milli = 7_500;
        c.instruments = vec![InstrumentSpec {
            symbol: "BTCUSDT".into(),
            price_decimals: 2,
            qty_decimals: 5,
            base_asset: "BTC".into(),
            quote_asset: "USDT".into(),
        }];
        RestGateway::new(crate::gateway::binance::BinanceSpot::default(), c, &index).unwrap()
    }

    fn market_buy(id: u64) -> Order {
        use crate::records::{Factor, Origin, Stamp, Touch};
        Order {
            id: OrderId(id),
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            side: Side::Buy,
            qty: "0.001".parse().unwrap(),
            kind: OrderKind::Market,
            tif: Tif::Ioc,
            pin_venue: true,
            touch: Touch::default(),
            origin: Origin::Manual,
            client_id: 0,
            mix: [Factor::ZERO; 4],
            reduce_only: false,
            ts_ns: 0,
            stamp: Stamp(0),
        }
    }

    /// Polls until `done` holds; panics after a generous deadline.
    fn poll_until(
        gw: &mut RestGateway<crate::gateway::binance::BinanceSpot>,
        what: &str,
        done: impl Fn(&RestGateway<crate::gateway::binance::BinanceSpot>) -> bool,
    ) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !done(gw) {
            assert!(std::time::Instant::now() < deadline, "{what}: {gw:?}");
            if !gw.poll(mono_ns(), &mut |_| {}) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn fees_are_the_configured_estimate() {
        let gw = gateway("http://127.0.0.1:9");
        assert_eq!(
            gw.fees(),
            Some(Fees {
                maker_bps_milli: -250,
                taker_bps_milli: 7_500
            })
        );
        assert_eq!(gw.client_id_prefix(), "mx-");
        // Nothing has been sent yet: the gateway counts as up.
        assert!(gw.is_up());
    }

    #[test]
    fn a_venue_that_cannot_be_reached_is_down_until_the_backoff_ends() {
        // A port nobody listens on: the connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut gw = gateway(&format!("http://127.0.0.1:{port}"));
        let mut reports = Vec::new();
        gw.submit(&market_buy(1), &mut |r| reports.push(r));
        poll_until(&mut gw, "the refused connect", |g| !g.is_up());
        // The backoff ends (50 ms, doubling to 2 s) and nothing new fails: up again.
        poll_until(&mut gw, "the end of the backoff", |g| g.is_up());
    }

    #[test]
    fn a_rate_limit_answer_takes_the_venue_down() {
        use std::io::{Read, Write};
        // One HTTP 429 with Retry-After (Binance's answer to too many orders), then silence.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"code":-1015,"msg":"Too many new orders; current limit is 1 orders per SECOND."}"#;
            let head = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 60\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes()).unwrap();
            // Held open so the gateway's keep-alive connection stays quiet.
            let _ = s.read(&mut buf);
        });
        let mut gw = gateway(&format!("http://{addr}"));
        assert!(gw.is_up());
        let mut reports = Vec::new();
        gw.submit(&market_buy(1), &mut |r| reports.push(r));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while reports.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no answer: {gw:?}");
            gw.poll(mono_ns(), &mut |r| reports.push(r));
        }
        assert!(
            matches!(
                reports[..],
                [ExecReport::Reject {
                    reason: RejectReason::VenueRateLimit,
                    ..
                }]
            ),
            "{reports:?}"
        );
        assert!(!gw.is_up(), "blocked for 60 s: {gw:?}");
        drop(gw);
        server.join().unwrap();
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let key = ApiKey::new("verysecretkey").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        let value = HeaderValue::new(b"verysecretkey").unwrap();
        assert!(!format!("{value:?}").contains("verysecret"));
        assert!(ApiKey::new("has space").is_none());
    }
}
