//! The validated configuration: plain data built only by the walker in `validate.rs`.
//!
//! Every value here has already been checked, so components read limits and settings straight
//! from these types and never re-parse text.
//! Numbers use maxx-hot's exact types: money and sizes are decimal fixed point ([`Price`],
//! [`Qty`], [`Money`]); weights, thresholds and percentages are deterministic [`Factor`]s;
//! periods are [`Duration`]s. Maps whose order is visible use `BTreeMap`, so iteration order
//! is the same on every run.
//! Field names follow the YAML keys, minus the `_ms`/`_sec` suffix where the type carries the
//! unit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use maxx_hot::feed::binance::subscription::StreamKind;
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::Factor;
use maxx_hot::stage::exec::OnPassiveTimeout;
use maxx_hot::topology::{Layout, StageName, WaitKind};

use super::cron::Cron;

/// A whole, validated `agent_config.yaml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `market_data`: reconnect and resubscribe policy of the feeds.
    pub market_data: MarketDataConfig,
    /// `alpha`: ensemble weights, reweight schedule, thresholds, family parameters.
    pub alpha: AlphaConfig,
    /// `risk`: RiskSentinel's account-level limits.
    pub risk: RiskConfig,
    /// `exec`: execution tolerances and the paper venue.
    pub exec: ExecConfig,
    /// `symbols`: the instruments traded, in id order (see [`Config::instrument_index`]).
    pub symbols: Vec<SymbolConfig>,
    /// `feeds`: one market-data connection per venue.
    pub feeds: BTreeMap<Venue, FeedConfig>,
    /// `sim`: the built-in venue simulators, per venue.
    pub sim: BTreeMap<Venue, SimConfig>,
    /// `hot`: thread layout of the hot path.
    pub hot: HotConfig,
    /// `redis`: the Redis Streams bus.
    pub redis: RedisConfig,
    /// `http`: the HTTP API.
    pub http: HttpConfig,
    /// `grpc`: the gRPC ExecutionService.
    pub grpc: GrpcConfig,
    /// `telemetry`: metrics, traces and logs.
    pub telemetry: TelemetryConfig,
    /// `alerts`: where failure alerts are posted.
    pub alerts: AlertsConfig,
    /// `governor`: the MetaGovernor's policy and state.
    pub governor: GovernorConfig,
    /// `portfolio`: the account currency and the PnL lock-box.
    pub portfolio: PortfolioConfig,
}

impl Config {
    /// The dense instrument table: ids follow the order of [`Config::symbols`].
    ///
    /// # Panics
    /// Only if the config was edited after validation so that a symbol, or a venue symbol on
    /// one venue, appears twice; validation refuses exactly those files.
    pub fn instrument_index(&self) -> InstrumentIndex {
        InstrumentIndex::new(self.symbols.iter().map(SymbolConfig::index_entry))
            .expect("validated config has unique symbols and venue symbols")
    }

    /// Resolves relative file paths written in the config (`governor.state_file`,
    /// `risk.state_file`, `risk.kill_file`, `redis.journal_dir`, `redis.tls_ca_file`) against
    /// `dir`, the directory of the config file, so that a run's state lives next to its config
    /// whatever the working directory.
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        for p in [
            &mut self.governor.state_file,
            &mut self.risk.state_file,
            &mut self.risk.kill_file,
            &mut self.redis.journal_dir,
            &mut self.redis.tls_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The feeds that are switched on, in venue order.
    pub fn enabled_feeds(&self) -> impl Iterator<Item = (Venue, &FeedConfig)> {
        self.feeds.iter().filter(|(_, f)| f.enabled).map(|(v, f)| (*v, f))
    }
}

/// `market_data`.
#[derive(Clone, Debug, PartialEq)]
pub struct MarketDataConfig {
    /// `retry_backoff_ms`: the first reconnect delay, doubled on each further attempt.
    pub retry_backoff: Duration,
    /// `resubscribe_sec`: planned resubscribe period.
    pub resubscribe: Duration,
    /// `stale_after_ms`: no tick for this long means the feed is dead and is reconnected.
    pub stale_after: Duration,
    /// `backoff_cap_ms`: the reconnect delay never grows past this (>= `retry_backoff`).
    pub backoff_cap: Duration,
    /// `capture_dir`: where raw frames are captured, or `None` for no capture.
    pub capture_dir: Option<PathBuf>,
}

/// `alpha`.
#[derive(Clone, Debug, PartialEq)]
pub struct AlphaConfig {
    /// `weights`: the ensemble weights, summing to exactly 1.
    pub weights: Weights,
    /// `reweight_cron`: when the MetaGovernor re-weights the ensemble (UTC).
    pub reweight_cron: Cron,
    /// `entry_threshold`: |score| at or above which Alpha targets a position, in (0, 1].
    pub entry_threshold: Factor,
    /// `exit_threshold`: |score| below which Alpha targets flat, in [0, entry_threshold).
    pub exit_threshold: Factor,
    /// `momentum`: the momentum family's parameters.
    pub momentum: MomentumConfig,
    /// `mean_rev`: the mean-reversion family's parameters.
    pub mean_rev: MeanRevConfig,
    /// `breakout`: the breakout family's parameters.
    pub breakout: BreakoutConfig,
    /// `sentiment`: the sentiment family's parameters.
    pub sentiment: SentimentConfig,
}

/// `alpha.sentiment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentimentConfig {
    /// `half_life_sec`: an external score halves in this time; no opinion after 16 half-lives.
    pub half_life: Duration,
}

/// `alpha.weights`: one weight per signal family, each in [0, 1], summing to exactly 1 as
/// written in decimal (the sum is checked before conversion to fixed point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weights {
    /// Trend following.
    pub momentum: Factor,
    /// Mean reversion.
    pub mean_rev: Factor,
    /// Channel breakout.
    pub breakout: Factor,
    /// Externally supplied sentiment.
    pub sentiment: Factor,
}

impl Weights {
    /// The YAML keys, in family order.
    pub const KEYS: [&'static str; 4] = ["momentum", "mean_rev", "breakout", "sentiment"];

    /// The weights in family order (momentum, mean_rev, breakout, sentiment), which is the
    /// order of the hot Alpha stage's `FamilyKind`.
    pub fn to_array(&self) -> [Factor; 4] {
        [self.momentum, self.mean_rev, self.breakout, self.sentiment]
    }
}

/// `alpha.momentum`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MomentumConfig {
    /// `fast`: fast EMA length in trades, >= 1 and < `slow`.
    pub fast: u32,
    /// `slow`: slow EMA length in trades; also the warm-up.
    pub slow: u32,
    /// `scale_bps`: relative EMA spread, in basis points, that maps to a full score of ±1.
    pub scale_bps: u32,
}

/// `alpha.mean_rev`: `score = clip(−z / z_scale, −1, 1)` with `z` the trade price's z-score
/// against the last `window` trade prices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanRevConfig {
    /// `window`: rolling window in trades, in [2, 100000]; also the warm-up.
    pub window: u32,
    /// `z_scale`: |z| that maps to a full score of ±1, in (0, 100].
    pub z_scale: Factor,
}

/// `alpha.breakout`: a Donchian channel break confirmed by volume, decaying over `hold` trades.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakoutConfig {
    /// `window`: channel length in trades, in [2, 100000].
    pub window: u32,
    /// `confirm`: trades whose volume confirms a break, in [1, window].
    pub confirm: u32,
    /// `volume_mult`: multiple of the channel's average volume per trade that the confirming
    /// trades must reach on average, in [0, 1000].
    pub volume_mult: Factor,
    /// `hold`: trades over which a break's score decays linearly to 0, in [1, 1000000].
    pub hold: u32,
}

/// `risk`.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskConfig {
    /// `max_trade_risk_pct`: largest risk of one trade, in percent of balance, in (0, 100].
    pub max_trade_risk_pct: Factor,
    /// `daily_drawdown_pct`: intraday drawdown, in percent, that halts risk-increasing trades.
    pub daily_drawdown_pct: Factor,
    /// `kill_switch`: start with the kill switch engaged (no new orders until lifted).
    pub kill_switch: bool,
    /// `price_collar_pct`: a limit price (or the touch) this far from the reference price (last
    /// trade, else mid) is refused; percent, in (0, 100].
    pub price_collar_pct: Factor,
    /// `max_gross_notional`: largest gross exposure over all symbols (positions plus open
    /// orders at last prices), quote currency, > 0.
    pub max_gross_notional: Money,
    /// `max_orders_per_sec`: orders per venue in any sliding one-second window, >= 1.
    pub max_orders_per_sec: u32,
    /// `sizing`: `kelly` (damped Kelly fraction of `order_qty`) or `fixed` (`order_qty`).
    pub sizing: SizingMode,
    /// `kelly_damping`: multiple of the Kelly fraction traded (0.5 = half Kelly), in (0, 1].
    pub kelly_damping: Factor,
    /// `reject_ratio_pct`: venue reject ratio, percent, above which its symbols go REDUCING.
    pub reject_ratio_pct: Factor,
    /// `reject_window`: the last this many orders per venue count for the reject ratio.
    pub reject_window: u32,
    /// `stop`: the protective exit that per-trade risk is measured to.
    pub stop: StopConfig,
    /// `state_file`: where a HALTED state is kept across restarts (relative to the config
    /// file's directory); `None` keeps nothing.
    pub state_file: Option<PathBuf>,
    /// `kill_file`: if this file appears, the kill switch trips (works even when the HTTP side
    /// is wedged); relative to the config file's directory; `None` disables the path.
    pub kill_file: Option<PathBuf>,
}

/// `risk.sizing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizingMode {
    /// `order_qty` × Kelly clip.
    Fixed,
    /// `order_qty` × damped Kelly fraction × Kelly clip.
    Kelly,
}

impl SizingMode {
    /// `fixed` or `kelly`.
    pub const fn name(self) -> &'static str {
        match self {
            SizingMode::Fixed => "fixed",
            SizingMode::Kelly => "kelly",
        }
    }
}

/// `risk.stop`: Alpha's volatility stop, `max(vol_mult × EWMA |Δprice|, min_ticks × tick_size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopConfig {
    /// `vol_mult`: multiple of the average absolute trade-to-trade move, in (0, 1000].
    pub vol_mult: Factor,
    /// `vol_window`: EWMA span in trades, in [2, 100000].
    pub vol_window: u32,
    /// `min_ticks`: the stop is never closer than this many ticks, in [1, 1000000].
    pub min_ticks: u32,
    /// `manual_pct`: stop distance assumed for orders that name none (manual), percent of price.
    pub manual_pct: Factor,
}

/// `exec`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecConfig {
    /// `slip_tolerance_pct`: largest accepted slippage of a taking order from the signal's
    /// reference price, in percent; the IOC limit's distance from it.
    pub slip_tolerance_pct: Factor,
    /// `maker_rebate_threshold_bps`: the fee saving of a maker over a taker fill at the chosen
    /// venue (taker fee − maker fee, a rebate adding to it), in basis points, from which a
    /// non-urgent order is posted passively to earn it.
    pub maker_rebate_threshold_bps: Factor,
    /// `urgent_score`: an order whose signal score is at least this strong in absolute value
    /// takes liquidity, in [0, 1] (reduce-only and Risk's orders always do).
    pub urgent_score: Factor,
    /// `passive_timeout_ms`: how long a passive order may wait unfilled before it is repriced
    /// (logical time), > 0.
    pub passive_timeout: Duration,
    /// `max_reprices`: reprices of a passive order before `on_passive_timeout` applies.
    pub max_reprices: u32,
    /// `on_passive_timeout`: what happens then, `take` (cross with an IOC) or `cancel`.
    pub on_passive_timeout: OnPassiveTimeout,
    /// `reject_ratio_pct`: a venue whose reject ratio over its health window is above this
    /// percent is demoted by the router.
    pub reject_ratio_pct: Factor,
    /// `health_window`: the last this many orders per venue count for its health.
    pub health_window: u32,
    /// `probation_ms`: how long a demoted venue stays demoted (logical time).
    pub probation: Duration,
    /// `latency_penalty_bps_per_ms`, in thousandths of a basis point per millisecond of a
    /// venue's ack-latency average.
    pub latency_penalty_bps_milli_per_ms: i64,
    /// `depth_penalty_bps`, in thousandths of a basis point: the price penalty assumed for the
    /// part of an order beyond a venue's displayed size.
    pub depth_penalty_bps_milli: i64,
    /// `paper`: the in-process paper venues.
    pub paper: PaperConfig,
    /// `live`: real order entry, per venue (Binance and Bybit so far). A venue listed here
    /// trades through its REST gateway; every other venue keeps its paper venue.
    pub live: BTreeMap<Venue, LiveVenueConfig>,
}

/// Longest `exec.live.<venue>.client_id_prefix`: the engine appends `-<run>-` (the start time in
/// base-36 seconds, seven characters until the year 4453), and a venue gateway takes at most 16
/// characters of prefix before the order id.
pub const CLIENT_ID_PREFIX_MAX: usize = 7;

/// `exec.live.<venue>`: one venue's REST order entry.
///
/// The API key and secret are never in the config: they come from `MAXX_<VENUE>_API_KEY` and
/// `MAXX_<VENUE>_API_SECRET` at start. The fee estimate for fills whose fee the venue does not
/// report is `exec.paper.venues.<venue>`'s schedule, the same schedule the router and the
/// maker/taker rule use for the venue, so switching a venue live leaves routing unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveVenueConfig {
    /// `base_url`: `http://` or `https://` scheme, host and optional port; no path.
    pub base_url: String,
    /// `recv_window_ms`: receive window sent with every signed request, in [1, 60000].
    pub recv_window_ms: u32,
    /// `request_timeout_ms`: deadline of every request.
    pub request_timeout: Duration,
    /// `order_limit`: our own rate limit, at most this many orders ...
    pub order_limit: u32,
    /// `order_window_ms`: ... per this sliding window.
    pub order_window: Duration,
    /// `open_capacity`: most orders open at the venue at once.
    pub open_capacity: usize,
    /// `client_id_prefix`: start of every client order id, at most [`CLIENT_ID_PREFIX_MAX`]
    /// characters of `A-Z a-z 0-9 - _`; the engine appends a part unique to the run.
    pub client_id_prefix: String,
}

/// `exec.paper`: fees are integer thousandths of a basis point (7.5 bps = 7500), the unit
/// `maxx_hot::num::fee` takes, so fractional fee tiers stay exact.
#[derive(Clone, Debug, PartialEq)]
pub struct PaperConfig {
    /// `taker_fee_bps`, in thousandths of a basis point; >= 0.
    pub taker_fee_bps_milli: i64,
    /// `maker_fee_bps`, in thousandths of a basis point; negative is a rebate.
    pub maker_fee_bps_milli: i64,
    /// `latency_us`: logical time between us and a paper venue's matching engine.
    pub latency: Duration,
    /// `starting_balance`: quote-currency cash the paper account starts with; > 0.
    pub starting_balance: Money,
    /// `venues`: per-venue schedules; a venue not listed, or a key not given, takes the values
    /// above. Stored complete.
    pub venues: BTreeMap<Venue, PaperVenueConfig>,
}

impl PaperConfig {
    /// The schedule of `venue`: its own entry, or the defaults above.
    pub fn venue(&self, venue: Venue) -> PaperVenueConfig {
        self.venues.get(&venue).copied().unwrap_or(PaperVenueConfig {
            taker_fee_bps_milli: self.taker_fee_bps_milli,
            maker_fee_bps_milli: self.maker_fee_bps_milli,
            latency: self.latency,
        })
    }
}

/// `exec.paper.venues.<venue>`, with the defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaperVenueConfig {
    /// `taker_fee_bps`, in thousandths of a basis point.
    pub taker_fee_bps_milli: i64,
    /// `maker_fee_bps`, in thousandths of a basis point; negative is a rebate.
    pub maker_fee_bps_milli: i64,
    /// `latency_us`.
    pub latency: Duration,
}

/// One entry of `symbols`.
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolConfig {
    /// `symbol`: our canonical name.
    pub symbol: Symbol,
    /// `venues`: the venue's own name for it, per venue (at least one).
    pub venues: BTreeMap<Venue, VenueSymbol>,
    /// `order_qty`: the position Alpha targets at full signal; > 0, a multiple of `lot_size`.
    pub order_qty: Qty,
    /// `max_order_qty`: largest single order RiskSentinel lets through; >= `order_qty`.
    pub max_order_qty: Qty,
    /// `max_order_notional`: largest single order value in quote currency; > 0.
    pub max_order_notional: Money,
    /// `max_position`: largest absolute position; >= `order_qty`.
    pub max_position: Qty,
    /// `tick_size`: price increment (used by the simulator); > 0.
    pub tick_size: Price,
    /// `lot_size`: quantity increment; > 0.
    pub lot_size: Qty,
    /// `min_notional`: smallest order value in quote currency; >= 0.
    pub min_notional: Money,
    /// `base` and `quote`: the instrument's assets, as written or derived from `symbol`
    /// ([`Assets::from_symbol`]); `None` when neither is possible, which only a venue with
    /// live order entry refuses.
    pub assets: Option<Assets>,
}

/// The two assets of a spot instrument (`BTC` and `USDT` for `BTCUSDT`): live order entry
/// needs them to read fees charged in either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assets {
    /// What is bought and sold (`BTC`).
    pub base: String,
    /// What it is priced in (`USDT`): fees are accounted in it.
    pub quote: String,
}

impl Assets {
    /// Quote assets recognised at the end of a symbol written without a separator. The longest
    /// match wins (`BTCFDUSD` is FDUSD, not USD).
    pub const KNOWN_QUOTES: [&'static str; 15] = [
        "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "JPY", "TRY", "BRL", "BTC", "ETH", "BNB",
    ];

    /// Derives the assets from a symbol: `BTC-USD`, `EUR_USD` and `BTC/USDT` split at the
    /// separator; `BTCUSDT` splits before the longest of [`Assets::KNOWN_QUOTES`] it ends with.
    /// `None` when neither rule gives two valid codes ([`Assets::valid_code`]).
    pub fn from_symbol(symbol: &str) -> Option<Assets> {
        let (base, quote) = match symbol.split_once(['-', '_', '/']) {
            Some(parts) => parts,
            None => {
                let quote = Self::KNOWN_QUOTES
                    .iter()
                    .filter(|q| symbol.len() > q.len() && symbol.ends_with(*q))
                    .max_by_key(|q| q.len())?;
                symbol.split_at(symbol.len() - quote.len())
            }
        };
        (Self::valid_code(base) && Self::valid_code(quote)).then(|| Assets {
            base: base.to_string(),
            quote: quote.to_string(),
        })
    }

    /// An asset code is 1 to 16 ASCII letters and digits (what the venues' gateways accept).
    pub fn valid_code(code: &str) -> bool {
        maxx_hot::gateway::rest::Asset::new(code).is_some()
    }
}

impl SymbolConfig {
    /// The `(symbol, per-venue names)` pair [`InstrumentIndex::new`] takes.
    pub fn index_entry(&self) -> (Symbol, [Option<VenueSymbol>; Venue::COUNT]) {
        let mut names = [None; Venue::COUNT];
        for (venue, name) in &self.venues {
            names[venue.index()] = Some(*name);
        }
        (self.symbol, names)
    }
}

/// One entry of `feeds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// `enabled`: whether MarketData connects to this venue.
    pub enabled: bool,
    /// `url`: where to connect.
    pub url: FeedUrl,
    /// `streams`: which market-data streams to subscribe, in the order written, no duplicates.
    pub streams: Vec<StreamKind>,
    /// `combined`: use the combined-stream endpoint (`/stream?streams=...`).
    pub combined: bool,
    /// `account_id`: the account whose pricing stream to open (OANDA); `None` for other venues
    /// and for the simulator.
    pub account_id: Option<String>,
    /// `token_env`: the environment variable holding the venue's bearer token (OANDA); the token
    /// itself is never written in the config or logged.
    pub token_env: String,
}

/// Where a feed connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedUrl {
    /// `sim`: start the embedded simulator (`sim.<venue>`) and connect to it over loopback.
    Sim,
    /// A `ws://` or `wss://` URL (or, for OANDA's HTTP stream, `http://` or `https://`), as
    /// written.
    Ws(String),
}

/// One entry of `sim`: a built-in venue simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// `seed`: RNG seed; the same seed gives the same market.
    pub seed: u64,
    /// `events_per_sec`: market events generated per second, in [1, 1_000_000].
    pub events_per_sec: u32,
    /// `bind`: where the simulator listens (port 0 picks a free port).
    pub bind: SocketAddr,
    /// `start_prices`: first price per canonical symbol; each a multiple of its `tick_size`.
    pub start_prices: BTreeMap<Symbol, Price>,
}

/// `hot`.
#[derive(Clone, Debug, PartialEq)]
pub struct HotConfig {
    /// `layout`: how stages map to threads.
    pub layout: Layout,
    /// `wait`: what an idle hot thread does.
    pub wait: WaitKind,
    /// `cores`: core index per stage, for `pinned` and `fused`; availability is checked at run
    /// time, not here.
    pub cores: BTreeMap<StageName, usize>,
    /// `histogram_interval_ms`: how often Alpha, Risk and Execution hand their latency histograms to the cold side.
    pub histogram_interval: Duration,
    /// `status_interval_ms`: status line period of `maxx run`.
    pub status_interval: Duration,
    /// `lock_memory`: `mlockall` at start (`auto`, `true`, `false`).
    pub lock_memory: maxx_hot::runtime::host::LockMemory,
}

/// `redis`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `enabled`: publish taps to Redis Streams.
    pub enabled: bool,
    /// `url`: `redis://host:port[/db]`, `rediss://host:port[/db]` (TLS) or `unix:///path`.
    pub url: String,
    /// `password_env`: name of the environment variable holding the password; `None` for none
    /// (or a password in the URL).
    pub password_env: Option<String>,
    /// `tls_ca_file`: PEM root certificates trusted for a `rediss://` URL instead of the
    /// system's, resolved against the config file's directory when relative.
    pub tls_ca_file: Option<PathBuf>,
    /// `connect_timeout_ms`: longest wait to connect.
    pub connect_timeout: Duration,
    /// `response_timeout_ms`: longest wait for a reply before the connection counts as lost.
    pub response_timeout: Duration,
    /// `reconnect_min_ms`: first reconnect delay, doubled on each further failure.
    pub reconnect_min: Duration,
    /// `reconnect_max_ms`: largest reconnect delay (>= `reconnect_min`).
    pub reconnect_max: Duration,
    /// `instance`: this engine's name in every entry key's source identity (1 to 64 characters
    /// of `[A-Za-z0-9_.-]`); two engines writing one Redis must have different names.
    pub instance: String,
    /// `queue`: entries waiting for Redis before ticks and signals are shed and orders, fills
    /// and PnL spill.
    pub queue: usize,
    /// `batch`: most entries in one pipelined write.
    pub batch: usize,
    /// `retention`: how many entries each stream kind keeps.
    pub retention: StreamRetention,
    /// `journal_dir`: the journal for orders, fills and PnL that are not yet in Redis, resolved
    /// against the config file's directory when relative; `None` keeps them in memory only.
    pub journal_dir: Option<PathBuf>,
    /// `journal_fsync`: when journal appends are forced to disk.
    pub journal_fsync: JournalFsync,
    /// `pnl_every_ms`: period of `pnl` entries (one is also published after every fill).
    pub pnl_every: Duration,
}

/// `redis.retention`: `MAXLEN ~` per stream kind; `None` (written `0`) keeps every entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamRetention {
    /// `ticks`: each `ticks:<symbol>` stream.
    pub ticks: Option<u64>,
    /// `signals`: each `signals:<symbol>` stream.
    pub signals: Option<u64>,
    /// `orders`.
    pub orders: Option<u64>,
    /// `fills`.
    pub fills: Option<u64>,
    /// `pnl`.
    pub pnl: Option<u64>,
}

/// `redis.journal_fsync`: when the journal forces appends to disk. Every choice survives a
/// crash of the process; they differ on power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalFsync {
    /// `always`: every append is synced before it counts as kept.
    Always,
    /// `every_ms: N`: at most the last `N` ms of appends can be lost on power loss.
    EveryMs(u64),
    /// `never`: the operating system writes appends back when it chooses.
    Never,
}

/// `portfolio`: the Portfolio agent's accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortfolioConfig {
    /// `currency`: the account currency — the one `exec.paper.starting_balance`, equity, the
    /// drawdown rule and the lock-box are counted in; `None` takes the quote asset of the
    /// first symbol.
    pub currency: Option<String>,
    /// `lockbox_pct`: percent, in [0, 100], of each rise of realized PnL (net of fees) above
    /// its high-water mark that moves into the lock-box.
    pub lockbox_pct: Money,
}

impl Config {
    /// The account currency: `portfolio.currency`, else the quote asset of the first symbol,
    /// else `USD`.
    pub fn account_currency(&self) -> String {
        self.portfolio
            .currency
            .clone()
            .or_else(|| {
                self.symbols
                    .first()
                    .and_then(|s| s.assets.as_ref())
                    .map(|a| a.quote.clone())
            })
            .unwrap_or_else(|| "USD".to_string())
    }
}

/// `governor`: the MetaGovernor (re-weights `alpha.weights` at `alpha.reweight_cron`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GovernorConfig {
    /// `seed`: RNG seed of the Thompson sampler; the same seed and rewards give the same steps.
    pub seed: u64,
    /// `max_step`: largest change of any one weight in one step, in (0, 1].
    pub max_step: Factor,
    /// `min_weight`: floor of every weight the governor moves, in [0, 0.25].
    pub min_weight: Factor,
    /// `fixed`: families whose weight the governor never changes, in family order.
    pub fixed: [bool; 4],
    /// `discount`: weight of past rewards per step, in (0, 1].
    pub discount: Factor,
    /// `state_file`: where weights and policy state persist across restarts, resolved against
    /// the config file's directory when relative; `None` keeps nothing.
    pub state_file: Option<PathBuf>,
}

/// `http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// `enabled`: serve the HTTP API.
    pub enabled: bool,
    /// `listen`: listen address of the HTTP API.
    pub listen: SocketAddr,
    /// `token_file`: file holding the bearer token; `None` means env `MAXX_API_TOKEN` only.
    pub token_file: Option<PathBuf>,
}

/// `grpc`: the gRPC server (ExecutionService and RiskService).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConfig {
    /// `enabled`: serve gRPC.
    pub enabled: bool,
    /// `listen`: listen address of the gRPC server.
    pub listen: SocketAddr,
}

/// `telemetry`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// `metrics_listen`: listen address of the Prometheus `/metrics` server (port 0: any free
    /// port), or `None` for no metrics server.
    pub metrics_listen: Option<SocketAddr>,
    /// `otlp_endpoint`: OTLP export target (`http://` or `https://`), or `None` for no export.
    pub otlp_endpoint: Option<String>,
    /// `log_level`: the least severe level logged.
    pub log_level: LogLevel,
    /// `log_format`: JSON lines or human-readable text.
    pub log_format: LogFormat,
}

/// `telemetry.log_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl LogLevel {
    /// Every level, most verbose first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The config spelling (also what `tracing`'s `EnvFilter` accepts).
    pub const fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// `telemetry.log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `json`: one JSON object per line.
    Json,
    /// `text`: human-readable lines.
    Text,
}

impl LogFormat {
    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        [LogFormat::Json, LogFormat::Text]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// `alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// `webhook_url`: Slack-compatible webhook (`http://` or `https://`), or `None` for log and
    /// metric only.
    pub webhook_url: Option<String>,
}
