//! The typed reader of the bus streams: decoding, consumer groups, recovery and dead letters.
//!
//! [`decode`] turns one raw stream entry into a [`TypedEntry`]: the entry id, the event's
//! UUIDv7 `key` and a [`StreamRecord`] with exact types (prices, quantities and cash as
//! [`maxx_hot::num`] fixed-point values, times and ids as integers, sides and venues as enums).
//! It is strict on purpose, because it is the check of the publisher's contract: a missing,
//! unknown, repeated or non-canonical field is a [`DecodeError`] naming the stream, the entry
//! id and the field.
//!
//! [`Consumer`] reads one stream through a consumer group, so several processes can share a
//! stream and an entry is processed until someone acknowledges it:
//! - [`Consumer::next_batch`] first claims entries that another (dead) consumer left pending
//!   for longer than [`ConsumerOptions::min_idle`] (`XAUTOCLAIM`, following the cursor), and
//!   otherwise reads new entries (`XREADGROUP ... >`).
//! - The caller acknowledges what it has processed with [`Consumer::ack`] (`XACK`); delivery
//!   is therefore at least once, and a consumer killed before acknowledging loses nothing.
//! - An entry that does not decode is left pending, so it is delivered again after
//!   `min_idle`; on its [`ConsumerOptions::max_deliveries`]-th delivery (the count Redis keeps,
//!   read with `XPENDING`) it is copied with its original fields plus `error` and `source_id`
//!   to the dead-letter stream `<stream>:dead` and acknowledged, in one `MULTI`/`EXEC`, so a
//!   garbage entry is never lost and never blocks the stream.
//! - Both readers connect as their [`RedisEndpoint`] says (password, TLS, timeouts) and retry
//!   connection errors with its capped exponential backoff; after a reconnect the
//!   group is created again if the server lost it (`XGROUP CREATE ... MKSTREAM`).
//!
//! `XAUTOCLAIM` needs Redis 6.2 or later.
//!
//! [`StreamReader`] is the plain reader for operators (`maxx tail`): `XREAD` from an id or from
//! the current end, no group, nothing acknowledged.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maxx_hot::ids::{Symbol, Venue};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::{Factor, Liquidity, OrderKind, Origin, Side, SignalSide, Tif};
use redis::Value;
use redis::aio::MultiplexedConnection;
use tracing::{info, warn};
use uuid::Uuid;

use super::connect::RedisEndpoint;

use super::entry::EntryError;
pub use super::entry::EntryId;

/// Which schema a stream follows, from its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `ticks:<symbol>`: trades.
    Ticks(Symbol),
    /// `signals:<symbol>`: the Alpha ensemble's signals.
    Signals(Symbol),
    /// `orders`: approved orders.
    Orders,
    /// `fills`: executions.
    Fills,
    /// `pnl`: equity and PnL snapshots.
    Pnl,
}

impl Schema {
    /// The schema of `stream`, or why it has none.
    pub fn of(stream: &str) -> Result<Schema, String> {
        let symbol = |s: &str| Symbol::new(s).map_err(|e| format!("stream {stream:?}: bad symbol {s:?} ({e})"));
        match stream.split_once(':') {
            Some(("ticks", s)) => symbol(s).map(Schema::Ticks),
            Some(("signals", s)) => symbol(s).map(Schema::Signals),
            None if stream == "orders" => Ok(Schema::Orders),
            None if stream == "fills" => Ok(Schema::Fills),
            None if stream == "pnl" => Ok(Schema::Pnl),
            _ => Err(format!(
                "stream {stream:?} has no known schema (ticks:<symbol>, signals:<symbol>, orders, fills, pnl)"
            )),
        }
    }
}

/// A trade from `ticks:<symbol>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRecord {
    /// The instrument (from the stream name).
    pub symbol: Symbol,
    /// `ts`: exchange time if the venue gave one, else receive time (ns since the epoch).
    pub ts: u64,
    /// `price`.
    pub price: Price,
    /// `volume`: the trade quantity.
    pub volume: Qty,
    /// `venue`.
    pub venue: Venue,
    /// `recv_ts`: local receive time (ns since the epoch).
    pub recv_ts: u64,
    /// `side`: the aggressor's side.
    pub side: Side,
    /// `seq`: the venue's trade id.
    pub seq: u64,
}

/// A signal from `signals:<symbol>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalRecord {
    /// The instrument (from the stream name).
    pub symbol: Symbol,
    /// `ts` (ns since the epoch).
    pub ts: u64,
    /// `score` in [-1, 1].
    pub score: Factor,
    /// `side`.
    pub side: SignalSide,
    /// `confidence` in [0, 1].
    pub confidence: Factor,
}

/// An order from `orders`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    /// `ts` (ns since the epoch).
    pub ts: u64,
    /// `id`: the engine order id.
    pub id: u64,
    /// `symbol`.
    pub symbol: Symbol,
    /// `qty`.
    pub qty: Qty,
    /// `side`.
    pub side: Side,
    /// `venue`.
    pub venue: Venue,
    /// `type` and `price`: market, or limit at a price.
    pub kind: OrderKind,
    /// `tif`.
    pub tif: Tif,
    /// `origin`.
    pub origin: Origin,
}

/// A fill from `fills`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRecord {
    /// `ts` (ns since the epoch).
    pub ts: u64,
    /// `order_id`.
    pub order_id: u64,
    /// `price`.
    pub price: Price,
    /// `fee` (negative for a rebate).
    pub fee: Money,
    /// `qty`.
    pub qty: Qty,
    /// `side`.
    pub side: Side,
    /// `symbol`.
    pub symbol: Symbol,
    /// `venue`.
    pub venue: Venue,
    /// `liquidity`.
    pub liquidity: Liquidity,
}

impl FillRecord {
    /// The record of a fill the engine made, as its `fills` entry says it.
    pub fn from_fill(fill: &maxx_hot::records::Fill, symbol: Symbol) -> Self {
        Self {
            ts: fill.ts_ns,
            order_id: fill.order_id.0,
            price: fill.price,
            fee: fill.fee,
            qty: fill.qty,
            side: fill.side,
            symbol,
            venue: fill.venue,
            liquidity: fill.liquidity,
        }
    }
}

/// A PnL snapshot from `pnl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PnlRecord {
    /// `ts` (ns since the epoch).
    pub ts: u64,
    /// `equity`.
    pub equity: Money,
    /// `realized`.
    pub realized: Money,
    /// `unrealized`.
    pub unrealized: Money,
}

/// The body of a decoded entry, one variant per stream schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRecord {
    /// From `ticks:<symbol>`.
    Tick(TickRecord),
    /// From `signals:<symbol>`.
    Signal(SignalRecord),
    /// From `orders`.
    Order(OrderRecord),
    /// From `fills`.
    Fill(FillRecord),
    /// From `pnl`.
    Pnl(PnlRecord),
}

impl StreamRecord {
    /// The event's own time (`ts`, ns since the epoch).
    pub fn ts(&self) -> u64 {
        match self {
            StreamRecord::Tick(r) => r.ts,
            StreamRecord::Signal(r) => r.ts,
            StreamRecord::Order(r) => r.ts,
            StreamRecord::Fill(r) => r.ts,
            StreamRecord::Pnl(r) => r.ts,
        }
    }
}

/// One decoded stream entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypedEntry {
    /// The entry id.
    pub id: EntryId,
    /// `key`: the event's deterministic UUIDv7.
    pub key: Uuid,
    /// The fields.
    pub record: StreamRecord,
}

/// A stream entry as Redis holds it: the id and the field/value pairs, in order, as bytes
/// (a foreign writer may have put anything there).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEntry {
    /// The entry id as Redis gave it.
    pub id: String,
    /// Field/value pairs.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Display for RawEntry {
    /// `field=value ...`, bytes that are not UTF-8 shown as replacement characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))?;
        }
        Ok(())
    }
}

/// An entry that does not follow its stream's schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{stream} entry {id}: {problem}")]
pub struct DecodeError {
    /// The stream.
    pub stream: String,
    /// The entry id as Redis gave it.
    pub id: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The stream's name does not say which schema it follows.
    #[error("{0}")]
    UnknownStream(String),
    /// The entry id is not `<ms>-<n>`.
    #[error("entry id is not <ms>-<n>")]
    BadId,
    /// A field of the schema is absent.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field the schema does not have.
    #[error("unknown field `{0}`")]
    Unknown(String),
    /// A field given twice.
    #[error("field `{0}` appears twice")]
    Duplicate(String),
    /// A field whose value is not what the schema says.
    #[error("field `{field}`: {value:?} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value (lossy UTF-8).
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Decodes `raw`, an entry of `stream`, by the stream's schema.
pub fn decode(stream: &str, raw: &RawEntry) -> Result<TypedEntry, DecodeError> {
    let fail = |problem| DecodeError {
        stream: stream.to_string(),
        id: raw.id.clone(),
        problem,
    };
    let kind = Schema::of(stream).map_err(|e| fail(Problem::UnknownStream(e)))?;
    let id: EntryId = raw.id.parse().map_err(|_| fail(Problem::BadId))?;
    let schema: &[&'static str] = match kind {
        Schema::Ticks(_) => &["key", "ts", "price", "volume", "venue", "recv_ts", "side", "seq"],
        Schema::Signals(_) => &["key", "ts", "score", "side", "confidence"],
        Schema::Orders => &[
            "key", "ts", "id", "symbol", "qty", "side", "venue", "type", "price", "tif", "origin",
        ],
        Schema::Fills => &[
            "key",
            "ts",
            "order_id",
            "price",
            "fee",
            "qty",
            "side",
            "symbol",
            "venue",
            "liquidity",
        ],
        Schema::Pnl => &["key", "ts", "equity", "realized", "unrealized"],
    };
    let f = Fields::collect(schema, raw).map_err(fail)?;
    let body = (|| -> Result<(Uuid, StreamRecord), Problem> {
        let key = f.key()?;
        let record = match kind {
            Schema::Ticks(symbol) => StreamRecord::Tick(TickRecord {
                symbol,
                ts: f.u64("ts")?,
                price: f.positive_price("price")?,
                volume: f.positive_qty("volume")?,
                venue: f.venue()?,
                recv_ts: f.u64("recv_ts")?,
                side: f.side()?,
                seq: f.u64("seq")?,
            }),
            Schema::Signals(symbol) => StreamRecord::Signal(SignalRecord {
                symbol,
                ts: f.u64("ts")?,
                score: f.factor("score", -1, 1)?,
                side: f.choice(
                    "side",
                    &[
                        ("buy", SignalSide::Buy),
                        ("sell", SignalSide::Sell),
                        ("flat", SignalSide::Flat),
                    ],
                )?,
                confidence: f.factor("confidence", 0, 1)?,
            }),
            Schema::Orders => StreamRecord::Order(OrderRecord {
                ts: f.u64("ts")?,
                id: f.u64("id")?,
                symbol: f.symbol()?,
                qty: f.positive_qty("qty")?,
                side: f.side()?,
                venue: f.venue()?,
                kind: f.order_kind()?,
                tif: f.choice(
                    "tif",
                    &[
                        ("auto", Tif::Auto),
                        ("gtc", Tif::Gtc),
                        ("ioc", Tif::Ioc),
                        ("fok", Tif::Fok),
                        ("post_only", Tif::PostOnly),
                    ],
                )?,
                origin: f.choice(
                    "origin",
                    &[
                        ("alpha", Origin::Alpha),
                        ("manual", Origin::Manual),
                        ("risk", Origin::Risk),
                    ],
                )?,
            }),
            Schema::Fills => StreamRecord::Fill(FillRecord {
                ts: f.u64("ts")?,
                order_id: f.u64("order_id")?,
                price: f.positive_price("price")?,
                fee: f.decimal::<Money>("fee")?,
                qty: f.positive_qty("qty")?,
                side: f.side()?,
                symbol: f.symbol()?,
                venue: f.venue()?,
                liquidity: f.choice("liquidity", &[("maker", Liquidity::Maker), ("taker", Liquidity::Taker)])?,
            }),
            Schema::Pnl => StreamRecord::Pnl(PnlRecord {
                ts: f.u64("ts")?,
                equity: f.decimal::<Money>("equity")?,
                realized: f.decimal::<Money>("realized")?,
                unrealized: f.decimal::<Money>("unrealized")?,
            }),
        };
        Ok((key, record))
    })();
    let (key, record) = body.map_err(fail)?;
    Ok(TypedEntry { id, key, record })
}

/// The fields of one entry by schema position: each present exactly once, nothing else.
struct Fields<'a> {
    schema: &'a [&'static str],
    values: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn collect(schema: &'a [&'static str], raw: &'a RawEntry) -> Result<Self, Problem> {
        let mut values: Vec<Option<&'a str>> = vec![None; schema.len()];
        for (k, v) in &raw.fields {
            let name = String::from_utf8_lossy(k);
            let Some(at) = schema.iter().position(|s| s.as_bytes() == k.as_slice()) else {
                return Err(Problem::Unknown(name.into_owned()));
            };
            if values[at].is_some() {
                return Err(Problem::Duplicate(name.into_owned()));
            }
            let text = std::str::from_utf8(v).map_err(|_| Problem::Invalid {
                field: schema[at],
                value: String::from_utf8_lossy(v).into_owned(),
                reason: "is not UTF-8".to_string(),
            })?;
            values[at] = Some(text);
        }
        let values = values
            .into_iter()
            .zip(schema)
            .map(|(v, name)| v.ok_or(Problem::Missing(name)))
            .collect::<Result<_, _>>()?;
        Ok(Fields { schema, values })
    }

    fn get(&self, field: &'static str) -> &'a str {
        // Every name asked for is in the schema the fields were collected by.
        self.schema
            .iter()
            .position(|s| *s == field)
            .map_or("", |i| self.values[i])
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> Problem {
        Problem::Invalid {
            field,
            value: self.get(field).to_string(),
            reason: reason.into(),
        }
    }

    fn u64(&self, field: &'static str) -> Result<u64, Problem> {
        canonical_u64(self.get(field)).ok_or_else(|| self.invalid(field, "is not a canonical unsigned integer"))
    }

    fn decimal<T>(&self, field: &'static str) -> Result<T, Problem>
    where
        T: FromStr<Err = maxx_hot::num::DecimalError> + fmt::Display,
    {
        let text = self.get(field);
        let value: T = text
            .parse()
            .map_err(|e| self.invalid(field, format!("is not a decimal ({e})")))?;
        // The publisher prints values the way maxx_hot::num does; anything else is a foreign
        // writer or a publisher bug, and this decoder is where the contract is checked.
        if value.to_string() != text {
            return Err(self.invalid(field, format!("is not canonical (expected {value})")));
        }
        Ok(value)
    }

    fn positive_price(&self, field: &'static str) -> Result<Price, Problem> {
        let p: Price = self.decimal(field)?;
        if p.is_zero() {
            return Err(self.invalid(field, "must be above zero"));
        }
        Ok(p)
    }

    fn positive_qty(&self, field: &'static str) -> Result<Qty, Problem> {
        let q: Qty = self.decimal(field)?;
        if q.is_zero() {
            return Err(self.invalid(field, "must be above zero"));
        }
        Ok(q)
    }

    fn factor(&self, field: &'static str, min: i32, max: i32) -> Result<Factor, Problem> {
        let text = self.get(field);
        let value = Factor::from_str(text).map_err(|e| self.invalid(field, format!("is not a decimal ({e})")))?;
        if value < Factor::from_num(min) || value > Factor::from_num(max) {
            return Err(self.invalid(field, format!("is outside [{min}, {max}]")));
        }
        if value.to_string() != text {
            return Err(self.invalid(field, format!("is not canonical (expected {value})")));
        }
        Ok(value)
    }

    fn choice<T: Copy>(&self, field: &'static str, options: &[(&str, T)]) -> Result<T, Problem> {
        let text = self.get(field);
        options
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.invalid(field, format!("is not one of {}", names.join(", ")))
            })
    }

    fn side(&self) -> Result<Side, Problem> {
        self.choice("side", &[("buy", Side::Buy), ("sell", Side::Sell)])
    }

    fn venue(&self) -> Result<Venue, Problem> {
        Venue::from_name(self.get("venue")).ok_or_else(|| {
            let names: Vec<&str> = Venue::ALL.iter().map(|v| v.name()).collect();
            self.invalid("venue", format!("is not one of {}", names.join(", ")))
        })
    }

    fn symbol(&self) -> Result<Symbol, Problem> {
        Symbol::new(self.get("symbol")).map_err(|e| self.invalid("symbol", format!("is not a symbol ({e})")))
    }

    fn key(&self) -> Result<Uuid, Problem> {
        let text = self.get("key");
        let key = Uuid::parse_str(text).map_err(|e| self.invalid("key", format!("is not a UUID ({e})")))?;
        if key.get_version_num() != 7 {
            return Err(self.invalid("key", "is not a UUIDv7"));
        }
        if key.hyphenated().to_string() != text {
            return Err(self.invalid("key", "is not in canonical lower-case hyphenated form"));
        }
        Ok(key)
    }

    fn order_kind(&self) -> Result<OrderKind, Problem> {
        let price = self.get("price");
        match self.get("type") {
            "market" if price.is_empty() => Ok(OrderKind::Market),
            "market" => Err(self.invalid("price", "must be empty for a market order")),
            "limit" if price.is_empty() => Err(self.invalid("price", "is required for a limit order")),
            "limit" => self.positive_price("price").map(OrderKind::Limit),
            _ => Err(self.invalid("type", "is not one of market, limit")),
        }
    }
}

/// `s` as a u64 if it is written the canonical way (digits only, no leading zero).
fn canonical_u64(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// Failures of the readers, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// Bad arguments: fix the call or the config.
    #[error("{0}")]
    Invalid(String),
    /// Redis could not be reached; the reader retries on the next call.
    #[error("redis at {url}: {source}")]
    Connect {
        /// The URL (without password).
        url: String,
        /// The error.
        source: redis::RedisError,
    },
    /// Redis refused the connection itself (wrong password, bad database): fix the URL.
    #[error("redis at {url} refused the connection: {source}")]
    Handshake {
        /// The URL (without password).
        url: String,
        /// The error.
        source: redis::RedisError,
    },
    /// Redis answered with an error that retrying cannot fix (wrong type, wrong password,
    /// out of memory...).
    #[error("redis refused {command} on {stream}: {source}")]
    Refused {
        /// The command.
        command: &'static str,
        /// The stream.
        stream: String,
        /// The error.
        source: redis::RedisError,
    },
    /// Redis answered something that is not a stream reply.
    #[error("unexpected reply to {command} on {stream}: {reply}")]
    Reply {
        /// The command.
        command: &'static str,
        /// The stream.
        stream: String,
        /// The reply, abridged.
        reply: String,
    },
}

/// Settings of a [`Consumer`].
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Most entries per batch (`COUNT`).
    pub count: usize,
    /// How long one read waits for new entries (`BLOCK`).
    pub block: Duration,
    /// Entries pending longer than this are taken over from their consumer (`XAUTOCLAIM`
    /// min-idle); it must exceed the time the slowest consumer takes to process a batch.
    pub min_idle: Duration,
    /// The delivery on which an entry that still fails to decode goes to `<stream>:dead`.
    pub max_deliveries: u64,
    /// Where a new group starts: `0` (the whole stream, e.g. to rebuild state) or `$` (new
    /// entries only), or an entry id.
    pub start: String,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            count: 100,
            block: Duration::from_secs(1),
            min_idle: Duration::from_secs(30),
            max_deliveries: 5,
            start: "0".to_string(),
        }
    }
}

/// Counters of a consumer, readable from any thread.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Entries decoded and handed to the caller.
    pub delivered: AtomicU64,
    /// Entries taken over from another consumer with `XAUTOCLAIM`.
    pub claimed: AtomicU64,
    /// Entries acknowledged by the caller.
    pub acked: AtomicU64,
    /// Deliveries of entries that failed to decode.
    pub decode_failures: AtomicU64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Connection failures (each followed by a reconnect with backoff).
    pub reconnects: AtomicU64,
    /// Whether the last command reached Redis.
    pub connected: AtomicBool,
}

/// An entry of a batch that failed to decode.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The entry as Redis holds it.
    pub raw: RawEntry,
    /// Why it failed.
    pub error: DecodeError,
    /// How many times it has been delivered (Redis's count).
    pub deliveries: u64,
    /// `true` if it has now been moved to `<stream>:dead` and acknowledged.
    pub dead_lettered: bool,
}

/// What one [`Consumer::next_batch`] returned.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Decoded entries, in stream order within each read; acknowledge them when processed.
    pub entries: Vec<TypedEntry>,
    /// Entries that failed to decode: already handled (left pending or dead-lettered), shown
    /// so the caller can report them.
    pub failures: Vec<Failure>,
}

impl Batch {
    /// `true` if the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.failures.is_empty()
    }
}

/// One connection with reconnect and backoff, shared by both readers.
struct Link {
    client: redis::Client,
    /// The URL for messages, password masked.
    url: String,
    endpoint: RedisEndpoint,
    conn: Option<MultiplexedConnection>,
    backoff: Duration,
    stats: Arc<ConsumerStats>,
}

impl Link {
    fn open(endpoint: RedisEndpoint, block: Duration) -> Result<Self, ConsumeError> {
        endpoint
            .validate()
            .map_err(|e| ConsumeError::Invalid(format!("redis: {e}")))?;
        let client = endpoint.client().map_err(ConsumeError::Invalid)?;
        let mut endpoint = endpoint;
        // A blocked read answers after `block`: only a reply later than the endpoint's
        // response timeout beyond that means a dead link.
        endpoint.response_timeout += block;
        Ok(Link {
            client,
            url: endpoint.redacted_url(),
            backoff: endpoint.reconnect_min,
            endpoint,
            conn: None,
            stats: Arc::new(ConsumerStats::default()),
        })
    }

    /// The connection, made now if there is none; `Ok(false)` means "not connected yet".
    async fn connect(&mut self) -> Result<bool, ConsumeError> {
        if self.conn.is_some() {
            return Ok(false);
        }
        let config = self.endpoint.connection_config();
        match self.client.get_multiplexed_async_connection_with_config(&config).await {
            Ok(c) => {
                self.conn = Some(c);
                self.stats.connected.store(true, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) if is_connection_error(&e) => Err(ConsumeError::Connect {
                url: self.url.clone(),
                source: e,
            }),
            Err(e) => Err(ConsumeError::Handshake {
                url: self.url.clone(),
                source: e,
            }),
        }
    }

    /// Forgets the connection after `error` and waits the backoff.
    async fn lost(&mut self, error: &str) {
        self.conn = None;
        self.stats.connected.store(false, Ordering::Relaxed);
        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        warn!(url = %self.url, error = %error, retry_in_ms = self.backoff.as_millis() as u64, "redis unavailable");
        tokio::time::sleep(self.backoff).await;
        self.backoff = self.endpoint.next_backoff(self.backoff);
    }

    fn ok(&mut self) {
        self.backoff = self.endpoint.reconnect_min;
    }

    async fn query(&mut self, cmd: &redis::Cmd) -> Result<Value, redis::RedisError> {
        match self.conn.as_mut() {
            Some(c) => cmd.query_async(c).await,
            None => Err(redis::RedisError::from((redis::ErrorKind::IoError, "not connected"))),
        }
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

/// A reader of one stream in a consumer group. See the module docs for the delivery rules.
pub struct Consumer {
    link: Link,
    stream: String,
    dead: String,
    group: String,
    name: String,
    options: ConsumerOptions,
    /// When the last `XAUTOCLAIM` pass ran; claiming more often than every `min_idle / 2`
    /// cannot find anything new.
    last_claim: Option<Instant>,
    group_ready: bool,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("url", &self.link.url)
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Connects and creates `group` on `stream` if missing (creating the stream too), starting
    /// at [`ConsumerOptions::start`]. Fails if `stream` has no known schema, the options are
    /// out of range, or Redis cannot be reached now.
    pub async fn new(
        endpoint: impl Into<RedisEndpoint>,
        stream: &str,
        group: &str,
        consumer: &str,
        options: ConsumerOptions,
    ) -> Result<Self, ConsumeError> {
        Schema::of(stream).map_err(ConsumeError::Invalid)?;
        if group.is_empty() || consumer.is_empty() {
            return Err(ConsumeError::Invalid(
                "group and consumer names must not be empty".to_string(),
            ));
        }
        if options.count == 0 {
            return Err(ConsumeError::Invalid("count must be at least 1".to_string()));
        }
        if options.max_deliveries == 0 {
            return Err(ConsumeError::Invalid("max_deliveries must be at least 1".to_string()));
        }
        if options.start != "0" && options.start != "$" && options.start.parse::<EntryId>().is_err() {
            return Err(ConsumeError::Invalid(format!(
                "group start {:?}: expected 0, $ or <ms>-<n>",
                options.start
            )));
        }
        let link = Link::open(endpoint.into(), options.block)?;
        let mut consumer = Consumer {
            link,
            stream: stream.to_string(),
            dead: format!("{stream}:dead"),
            group: group.to_string(),
            name: consumer.to_string(),
            options,
            last_claim: None,
            group_ready: false,
        };
        consumer.link.connect().await?;
        consumer.create_group().await?;
        Ok(consumer)
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.link.stats)
    }

    /// The stream it reads.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// `XGROUP CREATE <stream> <group> <start> MKSTREAM`; an existing group is fine.
    async fn create_group(&mut self) -> Result<(), ConsumeError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&self.options.start)
            .arg("MKSTREAM");
        match self.link.query(&cmd).await {
            Ok(_) => {
                info!(stream = %self.stream, group = %self.group, start = %self.options.start, "consumer group created");
            }
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) if is_connection_error(&e) => {
                return Err(ConsumeError::Connect {
                    url: self.link.url.clone(),
                    source: e,
                });
            }
            Err(e) => return Err(self.refused("XGROUP CREATE", e)),
        }
        self.group_ready = true;
        Ok(())
    }

    fn refused(&self, command: &'static str, source: redis::RedisError) -> ConsumeError {
        ConsumeError::Refused {
            command,
            stream: self.stream.clone(),
            source,
        }
    }

    /// The next batch: entries taken over from dead consumers if any, else new entries
    /// (waiting up to [`ConsumerOptions::block`]; an empty batch means nothing arrived).
    /// Connection errors are retried here with backoff until Redis is back.
    pub async fn next_batch(&mut self) -> Result<Batch, ConsumeError> {
        loop {
            match self.try_batch().await {
                Ok(batch) => {
                    self.link.ok();
                    return Ok(batch);
                }
                Err(Step::Lost(e)) => self.link.lost(&e).await,
                Err(Step::Regroup) => {}
                Err(Step::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn try_batch(&mut self) -> Result<Batch, Step> {
        if self.link.connect().await.map_err(Step::from)? {
            // A server that restarted empty has lost the group (and the stream).
            self.group_ready = false;
        }
        if !self.group_ready {
            self.create_group().await.map_err(Step::from)?;
        }
        let mut raws = Vec::new();
        let due = self.last_claim.is_none_or(|t| t.elapsed() >= self.options.min_idle / 2);
        if due {
            raws = self.claim().await?;
            self.last_claim = Some(Instant::now());
        }
        if raws.is_empty() {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.name)
                .arg("COUNT")
                .arg(self.options.count)
                .arg("BLOCK")
                .arg(self.options.block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(">");
            let reply = self.run("XREADGROUP", &cmd).await?;
            raws = read_reply(&reply).ok_or_else(|| self.bad_reply("XREADGROUP", &reply))?;
        }
        let mut batch = Batch::default();
        for raw in raws {
            match decode(&self.stream, &raw) {
                Ok(entry) => batch.entries.push(entry),
                Err(error) => batch.failures.push(self.failed(raw, error).await?),
            }
        }
        self.link
            .stats
            .delivered
            .fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
        Ok(batch)
    }

    /// Takes over up to `count` entries pending longer than `min_idle`, following the
    /// `XAUTOCLAIM` cursor through the whole pending list.
    async fn claim(&mut self) -> Result<Vec<RawEntry>, Step> {
        let mut out = Vec::new();
        let mut cursor = "0-0".to_string();
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&self.stream)
                .arg(&self.group)
                .arg(&self.name)
                .arg(self.options.min_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.options.count - out.len());
            let reply = self.run("XAUTOCLAIM", &cmd).await?;
            let (next, claimed) = autoclaim_reply(&reply).ok_or_else(|| self.bad_reply("XAUTOCLAIM", &reply))?;
            out.extend(claimed);
            if next == "0-0" || out.len() >= self.options.count {
                break;
            }
            cursor = next;
        }
        if !out.is_empty() {
            self.link.stats.claimed.fetch_add(out.len() as u64, Ordering::Relaxed);
            info!(stream = %self.stream, group = %self.group, consumer = %self.name, entries = out.len(), "took over pending entries");
        }
        Ok(out)
    }

    /// Handles an entry that failed to decode: its delivery count decides whether it stays
    /// pending (to be delivered again) or goes to the dead-letter stream.
    async fn failed(&mut self, raw: RawEntry, error: DecodeError) -> Result<Failure, Step> {
        self.link.stats.decode_failures.fetch_add(1, Ordering::Relaxed);
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.stream).arg(&self.group).arg(&raw.id).arg(&raw.id).arg(1);
        let reply = self.run("XPENDING", &cmd).await?;
        let deliveries = pending_deliveries(&reply).ok_or_else(|| self.bad_reply("XPENDING", &reply))?;
        let dead = deliveries >= self.options.max_deliveries;
        if dead {
            let mut add = redis::cmd("XADD");
            add.arg(&self.dead).arg("*");
            for (k, v) in &raw.fields {
                add.arg(k.as_slice()).arg(v.as_slice());
            }
            add.arg("error").arg(error.to_string()).arg("source_id").arg(&raw.id);
            let mut ack = redis::cmd("XACK");
            ack.arg(&self.stream).arg(&self.group).arg(&raw.id);
            let mut pipe = redis::pipe();
            pipe.atomic().add_command(add).add_command(ack);
            let result: Result<Value, _> = match self.link.conn.as_mut() {
                Some(c) => pipe.query_async(c).await,
                None => Err(redis::RedisError::from((redis::ErrorKind::IoError, "not connected"))),
            };
            match result {
                Ok(_) => {}
                Err(e) if is_connection_error(&e) => return Err(Step::Lost(e.to_string())),
                Err(e) => return Err(Step::Fatal(self.refused("XADD dead-letter", e))),
            }
            self.link.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            warn!(stream = %self.stream, dead_letter = %self.dead, id = %raw.id, deliveries, error = %error, "undecodable entry moved to the dead-letter stream");
        } else {
            warn!(stream = %self.stream, id = %raw.id, deliveries, max_deliveries = self.options.max_deliveries, error = %error, "undecodable entry left pending");
        }
        Ok(Failure {
            raw,
            error,
            deliveries,
            dead_lettered: dead,
        })
    }

    /// Acknowledges processed entries (`XACK`); returns how many were still pending. Retries
    /// connection errors with backoff.
    pub async fn ack(&mut self, ids: &[EntryId]) -> Result<u64, ConsumeError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.stream).arg(&self.group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        loop {
            let attempt = async {
                self.link.connect().await.map_err(Step::from)?;
                self.run("XACK", &cmd).await
            }
            .await;
            match attempt {
                Ok(Value::Int(n)) => {
                    self.link.ok();
                    let n = u64::try_from(n).unwrap_or(0);
                    self.link.stats.acked.fetch_add(n, Ordering::Relaxed);
                    return Ok(n);
                }
                Ok(other) => {
                    return Err(ConsumeError::Reply {
                        command: "XACK",
                        stream: self.stream.clone(),
                        reply: abridged(&other),
                    });
                }
                // The group is gone (deleted, or the server restarted empty): so is every
                // pending entry, and there is nothing left to acknowledge.
                Err(Step::Regroup) => return Ok(0),
                Err(Step::Lost(e)) => self.link.lost(&e).await,
                Err(Step::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn run(&mut self, command: &'static str, cmd: &redis::Cmd) -> Result<Value, Step> {
        match self.link.query(cmd).await {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => Err(Step::Lost(e.to_string())),
            Err(e) if e.code() == Some("NOGROUP") => {
                // The stream or the group was deleted under us: create both again.
                warn!(stream = %self.stream, group = %self.group, "consumer group vanished; creating it again");
                self.group_ready = false;
                Err(Step::Regroup)
            }
            Err(e) => Err(Step::Fatal(self.refused(command, e))),
        }
    }

    fn bad_reply(&self, command: &'static str, reply: &Value) -> Step {
        Step::Fatal(ConsumeError::Reply {
            command,
            stream: self.stream.clone(),
            reply: abridged(reply),
        })
    }
}

/// How one attempt failed: retry after a reconnect, retry after creating the group again, or
/// give up.
enum Step {
    Lost(String),
    Regroup,
    Fatal(ConsumeError),
}

impl From<ConsumeError> for Step {
    fn from(e: ConsumeError) -> Self {
        match e {
            ConsumeError::Connect { source, .. } => Step::Lost(source.to_string()),
            other => Step::Fatal(other),
        }
    }
}

/// Where a [`StreamReader`] starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// Entries added after the reader started (`$`).
    End,
    /// Entries after this id (`0-0` for the whole stream).
    After(EntryId),
}

impl FromStr for ReadFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "$" => Ok(ReadFrom::End),
            "0" => Ok(ReadFrom::After(EntryId::default())),
            _ => s.parse().map(ReadFrom::After).map_err(|e| format!("{e}, 0 or $")),
        }
    }
}

/// A plain reader of one stream (`XREAD`), without a group: nothing is acknowledged and
/// every reader sees every entry. For operators (`maxx tail`).
pub struct StreamReader {
    link: Link,
    stream: String,
    count: usize,
    block: Duration,
    /// The last id returned; `None` until `$` has been resolved to the stream's current top.
    last: Option<EntryId>,
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("url", &self.link.url)
            .field("stream", &self.stream)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// A reader of `stream` from `from`, reading up to `count` entries at a time and waiting up
    /// to `block` for new ones. Connects on the first read.
    pub fn new(
        endpoint: impl Into<RedisEndpoint>,
        stream: &str,
        from: ReadFrom,
        count: usize,
        block: Duration,
    ) -> Result<Self, ConsumeError> {
        if stream.is_empty() {
            return Err(ConsumeError::Invalid("stream name must not be empty".to_string()));
        }
        let link = Link::open(endpoint.into(), block)?;
        let last = match from {
            ReadFrom::End => None,
            ReadFrom::After(id) => Some(id),
        };
        Ok(StreamReader {
            link,
            stream: stream.to_string(),
            count: count.max(1),
            block,
            last,
        })
    }

    /// The reader's counters (`reconnects`, `connected`).
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.link.stats)
    }

    /// The next entries after the last one returned, waiting up to `block`; empty if none
    /// arrived. Connection errors are retried with backoff.
    pub async fn next_batch(&mut self) -> Result<Vec<RawEntry>, ConsumeError> {
        loop {
            match self.try_batch().await {
                Ok(batch) => {
                    self.link.ok();
                    return Ok(batch);
                }
                Err(Step::Lost(e)) => self.link.lost(&e).await,
                // A plain reader has no group; nothing it sends answers NOGROUP.
                Err(Step::Regroup) => {}
                Err(Step::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn try_batch(&mut self) -> Result<Vec<RawEntry>, Step> {
        self.link.connect().await.map_err(Step::from)?;
        let last = match self.last {
            Some(id) => id,
            None => {
                // `$` is resolved once to the current top, so entries added between two reads
                // are never skipped.
                let mut cmd = redis::cmd("XREVRANGE");
                cmd.arg(&self.stream).arg("+").arg("-").arg("COUNT").arg(1);
                let reply = self.run("XREVRANGE", &cmd).await?;
                let top = entries(&reply).ok_or_else(|| self.bad_reply("XREVRANGE", &reply))?;
                let id = match top.first() {
                    Some(e) => {
                        e.id.parse()
                            .map_err(|e: EntryError| self.bad_reply_text("XREVRANGE", e.to_string()))?
                    }
                    None => EntryId::default(),
                };
                self.last = Some(id);
                id
            }
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(self.count)
            .arg("BLOCK")
            .arg(self.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(last.to_string());
        let reply = self.run("XREAD", &cmd).await?;
        let batch = read_reply(&reply).ok_or_else(|| self.bad_reply("XREAD", &reply))?;
        if let Some(e) = batch.last() {
            self.last = Some(
                e.id.parse()
                    .map_err(|e: EntryError| self.bad_reply_text("XREAD", e.to_string()))?,
            );
        }
        Ok(batch)
    }

    async fn run(&mut self, command: &'static str, cmd: &redis::Cmd) -> Result<Value, Step> {
        match self.link.query(cmd).await {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => Err(Step::Lost(e.to_string())),
            Err(e) => Err(Step::Fatal(ConsumeError::Refused {
                command,
                stream: self.stream.clone(),
                source: e,
            })),
        }
    }

    fn bad_reply(&self, command: &'static str, reply: &Value) -> Step {
        self.bad_reply_text(command, abridged(reply))
    }

    fn bad_reply_text(&self, command: &'static str, reply: String) -> Step {
        Step::Fatal(ConsumeError::Reply {
            command,
            stream: self.stream.clone(),
            reply,
        })
    }
}

/// A reply for messages, cut to a readable length.
fn abridged(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// One `[id, [field, value, ...]]`; `Ok(None)` for an entry that is gone (a nil in place of
/// the entry or its fields, as `XAUTOCLAIM` and `XREADGROUP` on history report deletions).
fn entry(v: &Value) -> Option<Option<RawEntry>> {
    let Value::Array(parts) = v else {
        return matches!(v, Value::Nil).then_some(None);
    };
    let [id, fields] = parts.as_slice() else { return None };
    let id = text(id)?;
    let flat: &[Value] = match fields {
        Value::Array(f) => f,
        Value::Map(m) => {
            let fields = m
                .iter()
                .map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                .collect::<Option<_>>()?;
            return Some(Some(RawEntry { id, fields }));
        }
        Value::Nil => return Some(None),
        _ => return None,
    };
    if !flat.len().is_multiple_of(2) {
        return None;
    }
    let fields = flat
        .chunks(2)
        .map(|kv| Some((bytes(&kv[0])?, bytes(&kv[1])?)))
        .collect::<Option<_>>()?;
    Some(Some(RawEntry { id, fields }))
}

/// An array of entries, skipping deleted ones.
fn entries(v: &Value) -> Option<Vec<RawEntry>> {
    let Value::Array(items) = v else { return None };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if let Some(e) = entry(item)? {
            out.push(e);
        }
    }
    Some(out)
}

/// The reply of `XREAD`/`XREADGROUP` on one stream: nil on timeout, else `[[stream, entries]]`
/// (a map in RESP3).
fn read_reply(v: &Value) -> Option<Vec<RawEntry>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                let Value::Array(pair) = s else { return None };
                let [_, list] = pair.as_slice() else { return None };
                out.extend(entries(list)?);
            }
            Some(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, list) in streams {
                out.extend(entries(list)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// `XAUTOCLAIM`'s `[next cursor, entries, (deleted ids)]`.
fn autoclaim_reply(v: &Value) -> Option<(String, Vec<RawEntry>)> {
    let Value::Array(parts) = v else { return None };
    let cursor = text(parts.first()?)?;
    let claimed = entries(parts.get(1)?)?;
    Some((cursor, claimed))
}

/// The delivery count from `XPENDING s g id id 1`: `[[id, consumer, idle, deliveries]]`; an
/// entry no longer pending counts as delivered once.
fn pending_deliveries(v: &Value) -> Option<u64> {
    let Value::Array(rows) = v else { return None };
    let Some(Value::Array(row)) = rows.first() else {
        return rows.is_empty().then_some(1);
    };
    match row.get(3)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: &str, fields: &[(&str, &str)]) -> RawEntry {
        RawEntry {
            id: id.to_string(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    const KEY: &str = "019abc12-3456-7def-8123-456789abcdef";

    fn fill(price: &str) -> RawEntry {
        raw(
            "1764151200123-0",
            &[
                ("key", KEY),
                ("ts", "1764151200123456789"),
                ("order_id", "42"),
                ("price", price),
                ("fee", "0.046"),
                ("qty", "0.001"),
                ("side", "buy"),
                ("symbol", "BTCUSDT"),
                ("venue", "binance"),
                ("liquidity", "taker"),
            ],
        )
    }

    #[test]
    fn decodes_a_fill_exactly() {
        let e = decode("fills", &fill("62650.2")).expect("decodes");
        assert_eq!(
            e.id,
            EntryId {
                ms: 1764151200123,
                seq: 0
            }
        );
        assert_eq!(e.key.to_string(), KEY);
        let StreamRecord::Fill(f) = e.record else {
            panic!("not a fill: {e:?}")
        };
        assert_eq!(f.price.raw(), 6_265_020_000_000);
        assert_eq!(f.fee.to_string(), "0.046");
        assert_eq!(f.order_id, 42);
        assert_eq!(f.liquidity, Liquidity::Taker);
    }

    #[test]
    fn errors_name_stream_entry_and_field() {
        let err = decode("fills", &fill("62650.20")).expect_err("not canonical");
        assert_eq!(
            err.to_string(),
            "fills entry 1764151200123-0: field `price`: \"62650.20\" is not canonical (expected 62650.2)"
        );
        let err = decode("fills", &fill("abc")).expect_err("garbage");
        assert!(
            err.to_string()
                .starts_with("fills entry 1764151200123-0: field `price`: \"abc\" is not a decimal"),
            "{err}"
        );
        let mut extra = fill("1");
        extra.fields.push((b"colour".to_vec(), b"red".to_vec()));
        assert_eq!(
            decode("fills", &extra).expect_err("unknown").problem,
            Problem::Unknown("colour".into())
        );
        let mut short = fill("1");
        short.fields.remove(2);
        assert_eq!(
            decode("fills", &short).expect_err("missing").problem,
            Problem::Missing("order_id")
        );
        let mut twice = fill("1");
        twice.fields.push((b"fee".to_vec(), b"1".to_vec()));
        assert_eq!(
            decode("fills", &twice).expect_err("twice").problem,
            Problem::Duplicate("fee".into())
        );
        assert!(matches!(
            decode("nope", &fill("1")).expect_err("stream").problem,
            Problem::UnknownStream(_)
        ));
    }

    #[test]
    fn order_type_and_price_agree() {
        let order = |kind: &str, price: &str| {
            raw(
                "5-1",
                &[
                    ("key", KEY),
                    ("ts", "5000000"),
                    ("id", "7"),
                    ("symbol", "ETHUSDT"),
                    ("qty", "1.5"),
                    ("side", "sell"),
                    ("venue", "bybit"),
                    ("type", kind),
                    ("price", price),
                    ("tif", "post_only"),
                    ("origin", "alpha"),
                ],
            )
        };
        let StreamRecord::Order(o) = decode("orders", &order("limit", "3000.5")).expect("limit").record else {
            panic!("not an order")
        };
        assert_eq!(o.kind, OrderKind::Limit("3000.5".parse().expect("price")));
        assert_eq!(o.tif, Tif::PostOnly);
        assert!(decode("orders", &order("market", "")).is_ok());
        assert!(decode("orders", &order("market", "1")).is_err());
        assert!(decode("orders", &order("limit", "")).is_err());
        assert!(decode("orders", &order("stop", "1")).is_err());
    }

    #[test]
    fn signal_factors_are_checked_for_range_and_form() {
        let signal = |score: &str, confidence: &str| {
            raw(
                "5-0",
                &[
                    ("key", KEY),
                    ("ts", "5000000"),
                    ("score", score),
                    ("side", "buy"),
                    ("confidence", confidence),
                ],
            )
        };
        let StreamRecord::Signal(s) = decode("signals:ETHUSDT", &signal("0.1", "1")).expect("signal").record else {
            panic!("not a signal")
        };
        assert_eq!((s.score.to_string().as_str(), s.symbol.as_str()), ("0.1", "ETHUSDT"));
        assert!(decode("signals:ETHUSDT", &signal("0.10", "1")).is_err());
        assert!(decode("signals:ETHUSDT", &signal("1.5", "1")).is_err());
        assert!(decode("signals:ETHUSDT", &signal("0.5", "-0.5")).is_err());
    }

    #[test]
    fn entry_ids_and_start_points_parse_strictly() {
        assert_eq!("12-3".parse::<EntryId>(), Ok(EntryId { ms: 12, seq: 3 }));
        assert!("12".parse::<EntryId>().is_err());
        assert!("012-3".parse::<EntryId>().is_err());
        assert!("+1-3".parse::<EntryId>().is_err());
        assert_eq!("$".parse::<ReadFrom>(), Ok(ReadFrom::End));
        assert_eq!("0".parse::<ReadFrom>(), Ok(ReadFrom::After(EntryId::default())));
        assert!("x".parse::<ReadFrom>().is_err());
        assert_eq!(
            super::super::connect::redacted_url("redis://:secret@host:1/0"),
            "redis://***@host:1/0"
        );
    }
}
