//! The stream publisher: a bounded queue in front of one Redis connection, written in
//! pipelined `XADD` batches.
//!
//! The drain loop hands every [`Entry`] to [`Publisher::try_publish`], which never waits on
//! Redis: it takes a short lock on the queue, appends, wakes the writer task and returns.
//! The writer task takes up to [`PublisherConfig::batch`] entries at a time, sends them as one
//! pipeline of `XADD <stream> [MAXLEN ~ <n>] <id> field value …` and reads one reply per entry.
//!
//! Idempotency comes from the explicit ids ([`super::entry::StreamIds`]): each stream has one
//! writer and strictly increasing ids, so an entry sent again (after a reconnect, a lost reply,
//! or a journal replay) is refused by Redis as "equal or smaller than the target stream top
//! item" and counted as a duplicate, never written twice. This holds for any number of
//! re-sends, unlike Redis 8.6's idempotent XADD, which remembers only a bounded window.
//!
//! When the queue is full, the policy depends on the stream ([`StreamKind::sheddable`]):
//! ticks and signals are shed and counted per kind; orders, fills, PnL and other streams are
//! never dropped but go to the [`Spill`] in order. The default spill is [`MemorySpill`], an
//! unbounded in-memory queue whose depth is a metric; the journal plugs in a durable one with
//! [`Publisher::spawn_with_spill`] ([`super::spill::JournalSpill`]). A durable spill is
//! write-ahead ([`Spill::write_ahead`]): every never-drop entry passes through it, even when the
//! queue has room, and it is told once Redis has answered the entry ([`Spill::answered`]), so a
//! crash loses nothing not yet answered. Once anything is in the spill, every later never-drop
//! entry goes there too, and the writer moves spilled entries back into the queue, oldest
//! first, as room frees: per stream, entries reach Redis in the order they were published,
//! which the id rule above needs (an entry overtaken by a later one of its stream would be
//! refused).
//!
//! Oversized entries: an entry whose stream, id, field names and values add up to more than
//! [`PublisherConfig::max_entry_bytes`] is refused by [`Publisher::try_publish`] at once
//! ([`Outcome::Oversized`]), counted in `oversized`, logged as an error with its stream and id,
//! and never queued. Redis answers a bulk string above its `proto-max-bulk-len` by closing the
//! connection, so such an entry, once queued, would fail its batch on every re-send and hold
//! back everything behind it; refused at the door, it cannot wedge the queue. The default bound
//! (512 KiB) is far above any entry the engine makes (a few hundred bytes) and below the
//! smallest `proto-max-bulk-len` Redis accepts (1 MiB).
//!
//! The connection is [`PublisherConfig::endpoint`] ([`RedisEndpoint`]: password, TLS, connect
//! and response timeouts, reconnect backoff). The last failure, in words, is kept in
//! [`PublisherStats::last_error`] for health reports.
//!
//! Failures, sorted by what the writer does:
//! - connection lost, timeout or no reply: reconnect with capped exponential backoff and send
//!   the unacknowledged batch again (the ids make that harmless);
//! - a refusal that can clear (`OOM`, `READONLY`, `LOADING`, `MASTERDOWN`, `BUSY`, `TRYAGAIN`,
//!   `NOAUTH`, `WRONGPASS`, `NOPERM`, `CLUSTERDOWN`): keep the refused entries, back off and
//!   send them again; the entries Redis took in the same batch count as written;
//! - any other refusal (e.g. `WRONGTYPE`: the key is not a stream): sending again cannot help;
//!   the entry is dropped, counted in `refused`, and logged with its stream and id.
//!
//! Limit: if a refusal that can clear clears within one pipeline, a later entry of the same
//! stream may be written ahead of the refused one, which is then refused on re-send as below
//! the top (counted as a duplicate). Redis refuses whole batches for these conditions in
//! practice (memory, role and auth do not flip between two commands of one pipeline).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::Entry;
use super::connect::{RedisEndpoint, describe};
use super::entry::{EntryId, StreamKind};
use crate::config::RedisConfig;

/// How many entries each stream keeps (`XADD … MAXLEN ~ <n>`); `None` keeps everything.
///
/// `~` lets Redis trim whole macro nodes, so a stream holds at least `n` entries and a little
/// more; exact trimming would cost a node rewrite on every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Each `ticks:<symbol>` stream.
    pub ticks: Option<u64>,
    /// Each `signals:<symbol>` stream.
    pub signals: Option<u64>,
    /// `orders`.
    pub orders: Option<u64>,
    /// `fills`.
    pub fills: Option<u64>,
    /// `pnl`.
    pub pnl: Option<u64>,
    /// Any other stream.
    pub other: Option<u64>,
}

impl Default for Retention {
    /// Market data and its derivatives are bounded (about a day of a busy symbol); orders and
    /// fills are kept whole because the Portfolio rebuilds its books from `fills`.
    fn default() -> Self {
        Self {
            ticks: Some(1_000_000),
            signals: Some(1_000_000),
            orders: None,
            fills: None,
            pnl: Some(1_000_000),
            other: Some(100_000),
        }
    }
}

impl Retention {
    /// The bound for streams of `kind`.
    pub const fn maxlen(&self, kind: StreamKind) -> Option<u64> {
        match kind {
            StreamKind::Ticks => self.ticks,
            StreamKind::Signals => self.signals,
            StreamKind::Orders => self.orders,
            StreamKind::Fills => self.fills,
            StreamKind::Pnl => self.pnl,
            StreamKind::Other => self.other,
        }
    }
}

/// What the publisher needs; [`validate`](Self::validate) refuses unusable values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherConfig {
    /// Where and how to connect; its response timeout bounds the wait for a batch's replies,
    /// and its backoff spaces reconnects and re-sends.
    pub endpoint: RedisEndpoint,
    /// Entries the queue holds before the full-queue policy applies.
    pub queue: usize,
    /// Most entries in one pipeline.
    pub batch: usize,
    /// Per-stream retention.
    pub retention: Retention,
    /// Largest entry accepted, in bytes of stream name, id, field names and values; larger
    /// ones are refused at enqueue time (see the module doc).
    pub max_entry_bytes: usize,
}

/// Default [`PublisherConfig::max_entry_bytes`].
pub const MAX_ENTRY_BYTES: usize = 512 * 1024;

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            endpoint: RedisEndpoint::default(),
            queue: 65_536,
            batch: 256,
            retention: Retention::default(),
            max_entry_bytes: MAX_ENTRY_BYTES,
        }
    }
}

impl PublisherConfig {
    /// The publisher settings of the config's `redis` section, with its endpoint
    /// ([`RedisEndpoint::from_config`]: fails if the password variable or the CA file cannot
    /// be read); streams of no known kind keep the default bound.
    pub fn from_redis(redis: &RedisConfig) -> Result<Self, PublishError> {
        let r = &redis.retention;
        Ok(Self {
            endpoint: RedisEndpoint::from_config(redis).map_err(PublishError::Endpoint)?,
            queue: redis.queue,
            batch: redis.batch,
            retention: Retention {
                ticks: r.ticks,
                signals: r.signals,
                orders: r.orders,
                fills: r.fills,
                pnl: r.pnl,
                other: Retention::default().other,
            },
            ..Self::default()
        })
    }

    /// Checks every value, naming the first bad one.
    pub fn validate(&self) -> Result<(), PublishError> {
        self.endpoint.client().map_err(|reason| PublishError::BadUrl {
            url: self.endpoint.redacted_url(),
            reason,
        })?;
        let bad = |what: &str| Err(PublishError::BadConfig(what.to_string()));
        if self.queue == 0 {
            return bad("queue must hold at least one entry");
        }
        if self.batch == 0 {
            return bad("batch must be at least one entry");
        }
        if self.max_entry_bytes == 0 {
            return bad("max_entry_bytes must be above zero");
        }
        for kind in StreamKind::ALL {
            if self.retention.maxlen(kind) == Some(0) {
                return Err(PublishError::BadConfig(format!(
                    "retention for {} streams must be at least 1 entry (or unbounded)",
                    kind.name()
                )));
            }
        }
        self.endpoint.validate().map_err(PublishError::BadConfig)
    }
}

/// Why a publisher could not start.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PublishError {
    /// The URL does not parse.
    #[error("redis url {url:?}: {reason}")]
    BadUrl {
        /// The URL given, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value is out of range.
    #[error("publisher config: {0}")]
    BadConfig(String),
    /// The password or the CA file named by the config cannot be read.
    #[error("{0}")]
    Endpoint(String),
}

/// Where never-drop entries wait when the queue is full, oldest first.
///
/// The publisher calls it under its queue lock, from both the publishing thread and the writer
/// task, so an implementation must be quick and must not block on the network.
pub trait Spill: Send + std::fmt::Debug {
    /// Keeps an entry after all those kept before.
    fn push(&mut self, entry: Entry);
    /// Takes the oldest entry.
    fn pop(&mut self) -> Option<Entry>;
    /// Entries held.
    fn len(&self) -> usize;
    /// `true` if it holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `true` for a spill that outlives the process (a journal): then every never-drop entry
    /// passes through it on its way to the queue, even when the queue has room, so that a
    /// crash loses none of them.
    fn write_ahead(&self) -> bool {
        false
    }
    /// Redis has answered an entry this spill handed out with [`pop`](Self::pop) (written,
    /// already present, or refused for good): the spill need not keep it any longer. Called
    /// in the order Redis answered, which is the order of `pop` except around a refusal that
    /// is retried.
    fn answered(&mut self, entry: &Entry) {
        let _ = entry;
    }
}

/// The default [`Spill`]: in memory, unbounded (its depth is the `spill_depth` metric).
/// It keeps orders, fills and PnL through an outage of any length as long as memory lasts,
/// but not through a crash of the process: that needs the journal.
#[derive(Debug, Default)]
pub struct MemorySpill(VecDeque<Entry>);

impl Spill for MemorySpill {
    fn push(&mut self, entry: Entry) {
        self.0.push_back(entry);
    }

    fn pop(&mut self) -> Option<Entry> {
        self.0.pop_front()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// A shared handle on a [`Publisher`]'s counters ([`Publisher::stats_handle`]); dereferences
/// to [`PublisherStats`].
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl std::ops::Deref for StatsHandle {
    type Target = PublisherStats;

    fn deref(&self) -> &PublisherStats {
        &self.0.stats
    }
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.stats.fmt(f)
    }
}

/// What [`Publisher::try_publish`] did with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In the queue.
    Queued,
    /// In the spill (the queue was full, or older never-drop entries are spilled).
    Spilled,
    /// Dropped and counted: the queue was full and the stream may be shed.
    Shed,
    /// Refused, counted and logged: larger than [`PublisherConfig::max_entry_bytes`].
    Oversized,
}

/// The publisher's counters, readable from any thread.
///
/// Every access is `Relaxed`: each counter is a number on its own, and no other data is
/// published through it, so no happens-before edge is needed.
#[derive(Debug, Default)]
pub struct PublisherStats {
    /// Entries Redis accepted.
    pub written: AtomicU64,
    /// Entries Redis refused as at or below the stream's top: already written.
    pub duplicates: AtomicU64,
    /// Entries shed because the queue was full, by [`StreamKind::index`].
    pub shed: [AtomicU64; StreamKind::COUNT],
    /// Entries that went to the spill.
    pub spilled: AtomicU64,
    /// Entries Redis refused for good (e.g. `WRONGTYPE`) and that were dropped.
    pub refused: AtomicU64,
    /// Entries refused at enqueue time as larger than `max_entry_bytes`.
    pub oversized: AtomicU64,
    /// Failed connects, lost connections, and refused batches or entries.
    pub errors: AtomicU64,
    /// Connections made after the first.
    pub reconnects: AtomicU64,
    /// Entries in the queue, as of the last change.
    pub queue_depth: AtomicU64,
    /// Entries in the spill, as of the last change.
    pub spill_depth: AtomicU64,
    /// Microseconds from queueing to Redis's reply, for the last entry written.
    pub last_lag_us: AtomicU64,
    /// `true` while the writer holds a working connection.
    pub connected: AtomicBool,
    /// The last failure in words (connect, write, refusal), URL password masked; `None`
    /// until the first one. Not cleared by a success: compare with `connected`.
    last_error: Mutex<Option<String>>,
}

impl PublisherStats {
    /// Entries shed of `kind`.
    pub fn shed(&self, kind: StreamKind) -> u64 {
        self.shed[kind.index()].load(Ordering::Relaxed)
    }

    /// Entries Redis holds because of this publisher: written plus duplicates.
    pub fn acknowledged(&self) -> u64 {
        self.written.load(Ordering::Relaxed) + self.duplicates.load(Ordering::Relaxed)
    }

    /// The last failure in words, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn failed(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }
}

/// Bytes an entry puts on the wire, roughly: stream, id, field names and values.
fn entry_bytes(e: &Entry) -> usize {
    e.stream.len() + e.id.len() + e.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

struct Queued {
    entry: Entry,
    at: Instant,
    /// Came out of the spill, which is told once Redis has answered it.
    from_spill: bool,
}

struct State {
    queue: VecDeque<Queued>,
    spill: Box<dyn Spill>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    notify: Notify,
    stats: PublisherStats,
    capacity: usize,
    max_entry_bytes: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock guards plain queues that every step leaves consistent, so a panic while it
        // was held leaves nothing half-done to recover from.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn depths(&self, st: &State) {
        self.stats.queue_depth.store(st.queue.len() as u64, Ordering::Relaxed);
        self.stats.spill_depth.store(st.spill.len() as u64, Ordering::Relaxed);
    }
}

/// The publishing half; the writer task runs until [`close`](Self::close) or until the handle
/// is dropped and everything queued has been written.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts the writer task on the current tokio runtime with a [`MemorySpill`].
    /// Connecting happens in the task: a Redis that is down at start delays entries, never
    /// the caller.
    pub fn spawn(config: PublisherConfig) -> Result<Self, PublishError> {
        Self::spawn_with_spill(config, Box::new(MemorySpill::default()))
    }

    /// Starts the writer task with `spill` for never-drop entries that find the queue full.
    /// Entries already in `spill` are published first, in order.
    pub fn spawn_with_spill(config: PublisherConfig, spill: Box<dyn Spill>) -> Result<Self, PublishError> {
        config.validate()?;
        let client = config.endpoint.client().map_err(|reason| PublishError::BadUrl {
            url: config.endpoint.redacted_url(),
            reason,
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(config.queue.min(1 << 16)),
                spill,
                closed: false,
            }),
            notify: Notify::new(),
            stats: PublisherStats::default(),
            capacity: config.queue,
            max_entry_bytes: config.max_entry_bytes,
        });
        {
            // Entries the spill already holds go first: move them into the queue now, so that
            // nothing published before the writer's first look can overtake them.
            let mut st = shared.lock();
            promote(&mut st, shared.capacity);
            shared.depths(&st);
        }
        let task = tokio::spawn(write_loop(client, config, Arc::clone(&shared)));
        Ok(Self {
            shared,
            task: Some(task),
        })
    }

    /// Queues an entry without waiting; see the module doc for the full-queue policy.
    pub fn try_publish(&self, entry: Entry) -> Outcome {
        let kind = StreamKind::of(&entry.stream);
        let shared = &*self.shared;
        let size = entry_bytes(&entry);
        if size > shared.max_entry_bytes {
            shared.stats.oversized.fetch_add(1, Ordering::Relaxed);
            let text = format!(
                "entry of {size} bytes on {} ({}) is above max_entry_bytes ({}); refused",
                entry.stream, entry.id, shared.max_entry_bytes
            );
            error!(stream = %entry.stream, id = %entry.id, bytes = size, limit = shared.max_entry_bytes, "redis publisher: entry too large; refused");
            shared.stats.failed(text);
            return Outcome::Oversized;
        }
        let mut st = shared.lock();
        let full = st.queue.len() >= shared.capacity;
        let outcome = if kind.sheddable() {
            if full {
                shared.stats.shed[kind.index()].fetch_add(1, Ordering::Relaxed);
                return Outcome::Shed;
            }
            st.queue.push_back(Queued {
                entry,
                at: Instant::now(),
                from_spill: false,
            });
            Outcome::Queued
        } else if full || !st.spill.is_empty() {
            st.spill.push(entry);
            shared.stats.spilled.fetch_add(1, Ordering::Relaxed);
            Outcome::Spilled
        } else if st.spill.write_ahead() {
            // Kept by the spill first, then queued at once: the queue has room and nothing
            // older is spilled, so this is the entry `promote` moves.
            st.spill.push(entry);
            promote(&mut st, shared.capacity);
            Outcome::Queued
        } else {
            st.queue.push_back(Queued {
                entry,
                at: Instant::now(),
                from_spill: false,
            });
            Outcome::Queued
        };
        shared.depths(&st);
        drop(st);
        shared.notify.notify_one();
        outcome
    }

    /// The counters.
    pub fn stats(&self) -> &PublisherStats {
        &self.shared.stats
    }

    /// The counters behind an `Arc`, for readers that outlive a borrow of the publisher (the
    /// `/metrics` endpoint).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.shared))
    }

    /// A health probe for `/healthz`: ok while the writer holds a working connection, failing
    /// with the last error otherwise; both say how much is waiting.
    pub fn probe(&self) -> impl Fn() -> crate::agent::Health + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || {
            let s = &shared.stats;
            let queued = s.queue_depth.load(Ordering::Relaxed);
            let spilled = s.spill_depth.load(Ordering::Relaxed);
            if s.connected.load(Ordering::Relaxed) {
                crate::agent::Health::ok(format!(
                    "connected: {} entries acknowledged, {queued} queued, {spilled} spilled",
                    s.acknowledged()
                ))
            } else {
                let why = s.last_error().unwrap_or_else(|| "no connection yet".to_string());
                crate::agent::Health::failing(format!("not connected: {why}; {queued} queued, {spilled} spilled"))
            }
        }
    }

    /// Stops taking entries and waits until the writer has written (or had refused) everything
    /// queued and spilled. While Redis is down this waits for it: bound it with a timeout.
    pub async fn close(mut self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
        if let Some(task) = self.task.take() {
            // The task ends on its own; a join error means it panicked, already reported.
            let _ = task.await;
        }
    }
}

/// How [`Publisher::close_within`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// `true` if everything queued and spilled was answered by Redis in time.
    pub drained: bool,
    /// Entries still queued or spilled when the wait ended (a batch being sent at that moment
    /// is not counted).
    pub left: usize,
    /// Final [`PublisherStats::written`].
    pub written: u64,
    /// Final [`PublisherStats::duplicates`].
    pub duplicates: u64,
    /// Final sum of [`PublisherStats::shed`] over every kind.
    pub shed: u64,
    /// Final [`PublisherStats::refused`].
    pub refused: u64,
}

impl Publisher {
    /// [`close`](Self::close), waiting at most `limit`; what is left stays in the spill (the
    /// journal keeps it for the next start).
    pub async fn close_within(self, limit: Duration) -> Closed {
        let shared = Arc::clone(&self.shared);
        let drained = tokio::time::timeout(limit, self.close()).await.is_ok();
        let left = {
            let st = shared.lock();
            st.queue.len() + st.spill.len()
        };
        let stats = &shared.stats;
        Closed {
            drained,
            left,
            written: stats.written.load(Ordering::Relaxed),
            duplicates: stats.duplicates.load(Ordering::Relaxed),
            shed: stats.shed.iter().map(|s| s.load(Ordering::Relaxed)).sum(),
            refused: stats.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Let the task finish what is queued, then end, instead of waiting forever.
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
    }
}

/// Each existing stream's top entry id (`XREVRANGE <stream> + - COUNT 1`), so that a writer
/// that starts again can resume its ids above what the stream holds
/// ([`super::entry::StreamIds::resume`]); streams that do not exist are left out. Waits at most
/// `limit` in all.
pub async fn stream_tops(
    endpoint: impl Into<RedisEndpoint>,
    streams: &[String],
    limit: Duration,
) -> Result<BTreeMap<String, EntryId>, String> {
    let endpoint = endpoint.into();
    let url = endpoint.redacted_url();
    let client = endpoint.client()?;
    let ask = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&endpoint.connection_config())
            .await?;
        let mut tops = BTreeMap::new();
        for stream in streams {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
            if let Some(entry) = reply.ids.first() {
                let top = entry
                    .id
                    .parse::<EntryId>()
                    .map_err(|e| redis::RedisError::from((redis::ErrorKind::TypeError, "stream top", e.to_string())))?;
                tops.insert(stream.clone(), top);
            }
        }
        Ok::<_, redis::RedisError>(tops)
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(tops)) => Ok(tops),
        Ok(Err(e)) => Err(format!("reading the streams' tops from {url}: {}", describe(&e))),
        Err(_) => Err(format!(
            "reading the streams' tops from {url}: no answer within {limit:?}"
        )),
    }
}

/// What one reply says about its entry.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Written,
    Duplicate,
    /// Refused for a reason that can clear: send again later.
    Retry(String),
    /// Refused for good.
    Refused(String),
}

fn classify(reply: &Value) -> Reply {
    match reply {
        Value::ServerError(e) => {
            let detail = e.details().unwrap_or("");
            let text = format!("{} {detail}", e.code());
            if detail.contains("equal or smaller than the target stream top item") {
                Reply::Duplicate
            } else if matches!(
                e.code(),
                "OOM"
                    | "READONLY"
                    | "LOADING"
                    | "MASTERDOWN"
                    | "BUSY"
                    | "TRYAGAIN"
                    | "NOAUTH"
                    | "WRONGPASS"
                    | "NOPERM"
                    | "CLUSTERDOWN"
            ) {
                Reply::Retry(text)
            } else {
                Reply::Refused(text)
            }
        }
        _ => Reply::Written,
    }
}

fn xadd_pipeline(batch: &[Queued], retention: &Retention) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for q in batch {
        let e = &q.entry;
        let cmd = pipe.cmd("XADD").arg(&e.stream);
        if let Some(n) = retention.maxlen(StreamKind::of(&e.stream)) {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg(&e.id);
        for (k, v) in &e.fields {
            cmd.arg(k).arg(v);
        }
    }
    pipe
}

/// Moves spilled entries, oldest first, into the queue while it has room.
fn promote(st: &mut State, capacity: usize) {
    while st.queue.len() < capacity {
        let Some(entry) = st.spill.pop() else { break };
        st.queue.push_back(Queued {
            entry,
            at: Instant::now(),
            from_spill: true,
        });
    }
}

async fn write_loop(client: redis::Client, config: PublisherConfig, shared: Arc<Shared>) {
    let stats = &shared.stats;
    let endpoint = &config.endpoint;
    let url = endpoint.redacted_url();
    let conn_config = endpoint.connection_config();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut connected_before = false;
    let mut backoff = endpoint.reconnect_min;
    // Taken from the queue and not yet acknowledged by Redis, in queue order.
    let mut batch: Vec<Queued> = Vec::with_capacity(config.batch);
    loop {
        if batch.is_empty() {
            // Registered before looking, so a wake-up between the look and the wait is kept.
            let notified = shared.notify.notified();
            let closed = {
                let mut st = shared.lock();
                // Refill from the spill before and after taking the batch: before, so that a
                // spill holding entries from an earlier run is not left waiting on an empty
                // queue; after, so that the room the batch made is used at once.
                promote(&mut st, shared.capacity);
                let n = st.queue.len().min(config.batch);
                batch.extend(st.queue.drain(..n));
                promote(&mut st, shared.capacity);
                shared.depths(&st);
                st.closed
            };
            if batch.is_empty() {
                if closed {
                    return;
                }
                notified.await;
                continue;
            }
        }

        let Some(c) = conn.as_mut() else {
            match client.get_multiplexed_async_connection_with_config(&conn_config).await {
                Ok(c) => {
                    if connected_before {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected_before = true;
                    stats.connected.store(true, Ordering::Relaxed);
                    info!(url = %url, "redis publisher connected");
                    conn = Some(c);
                }
                Err(e) => {
                    let reason = describe(&e);
                    warn!(url = %url, error = %reason, retry_in_ms = backoff.as_millis() as u64, "redis unavailable; entries wait");
                    stats.failed(format!("connecting to {url}: {reason}"));
                    tokio::time::sleep(backoff).await;
                    backoff = endpoint.next_backoff(backoff);
                }
            }
            continue;
        };

        let pipe = xadd_pipeline(&batch, &config.retention);
        let replies = match c.req_packed_commands(&pipe, 0, batch.len()).await {
            Ok(r) if r.len() == batch.len() => r,
            outcome => {
                // The batch's fate is unknown (some entries may have landed): reconnect and
                // send it whole again; what landed comes back as duplicates.
                let reason = match outcome {
                    Ok(r) => format!("{} replies for {} entries", r.len(), batch.len()),
                    Err(e) => describe(&e),
                };
                stats.connected.store(false, Ordering::Relaxed);
                warn!(url = %url, error = %reason, entries = batch.len(), retry_in_ms = backoff.as_millis() as u64, "redis write failed; reconnecting");
                stats.failed(format!("writing to {url}: {reason}"));
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = endpoint.next_backoff(backoff);
                continue;
            }
        };

        let now = Instant::now();
        let mut retry_reason = None;
        let mut kept = Vec::new();
        let mut answered = Vec::new();
        for (q, reply) in batch.drain(..).zip(&replies) {
            let reply = classify(reply);
            if q.from_spill && !matches!(reply, Reply::Retry(_)) {
                answered.push(q.entry.clone());
            }
            match reply {
                Reply::Written => {
                    stats.written.fetch_add(1, Ordering::Relaxed);
                    let lag = now.saturating_duration_since(q.at).as_micros();
                    stats
                        .last_lag_us
                        .store(u64::try_from(lag).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
                Reply::Duplicate => {
                    stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Reply::Retry(reason) => {
                    retry_reason = Some(reason);
                    kept.push(q);
                }
                Reply::Refused(reason) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    error!(stream = %q.entry.stream, id = %q.entry.id, error = %reason, "redis refused the entry for good; dropped");
                    stats.failed(format!(
                        "{url} refused {} {} for good: {reason}",
                        q.entry.stream, q.entry.id
                    ));
                }
            }
        }
        batch = kept;
        if !answered.is_empty() {
            let mut st = shared.lock();
            for entry in &answered {
                st.spill.answered(entry);
            }
        }
        match retry_reason {
            Some(reason) => {
                warn!(url = %url, error = %reason, entries = batch.len(), retry_in_ms = backoff.as_millis() as u64, "redis refused entries for now; will send again");
                stats.failed(format!(
                    "{url} refused {} entries for now (will send again): {reason}",
                    batch.len()
                ));
                tokio::time::sleep(backoff).await;
                backoff = endpoint.next_backoff(backoff);
            }
            None => backoff = endpoint.reconnect_min,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: &str, id: &str) -> Entry {
        Entry {
            stream: stream.to_string(),
            id: id.to_string(),
            fields: vec![("k".to_string(), "v".to_string())],
        }
    }

    fn server_error(code: &str, detail: &str) -> Value {
        let v = redis::parse_redis_value(format!("-{code} {detail}\r\n").as_bytes()).unwrap();
        assert!(matches!(v, Value::ServerError(_)), "{v:?}");
        v
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(classify(&Value::BulkString(b"1-0".to_vec())), Reply::Written);
        assert_eq!(
            classify(&server_error(
                "ERR",
                "The ID specified in XADD is equal or smaller than the target stream top item"
            )),
            Reply::Duplicate
        );
        assert!(matches!(
            classify(&server_error(
                "OOM",
                "command not allowed when used memory > 'maxmemory'."
            )),
            Reply::Retry(_)
        ));
        assert!(matches!(
            classify(&server_error(
                "READONLY",
                "You can't write against a read only replica."
            )),
            Reply::Retry(_)
        ));
        assert!(matches!(
            classify(&server_error(
                "WRONGTYPE",
                "Operation against a key holding the wrong kind of value"
            )),
            Reply::Refused(_)
        ));
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(PublisherConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut PublisherConfig)| {
            let mut c = PublisherConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.endpoint.url = "http://x".into()).starts_with("redis url \"http://x\""));
        let shown = bad(|c| c.endpoint.url = "http://:secret@x".into());
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            bad(|c| c.queue = 0),
            "publisher config: queue must hold at least one entry"
        );
        assert_eq!(
            bad(|c| c.batch = 0),
            "publisher config: batch must be at least one entry"
        );
        assert_eq!(
            bad(|c| c.retention.fills = Some(0)),
            "publisher config: retention for fills streams must be at least 1 entry (or unbounded)"
        );
        assert_eq!(
            bad(|c| c.endpoint.reconnect_max = Duration::from_millis(1)),
            "publisher config: reconnect_max must not be below reconnect_min"
        );
        assert_eq!(
            bad(|c| c.endpoint.response_timeout = Duration::ZERO),
            "publisher config: response_timeout must be above zero"
        );
        assert_eq!(
            bad(|c| c.max_entry_bytes = 0),
            "publisher config: max_entry_bytes must be above zero"
        );
    }

    #[test]
    fn pipeline_carries_retention_and_ids() {
        let batch = [
            Queued {
                entry: entry("ticks:BTCUSDT", "5-0"),
                at: Instant::now(),
                from_spill: false,
            },
            Queued {
                entry: entry("fills", "6-0"),
                at: Instant::now(),
                from_spill: false,
            },
        ];
        let retention = Retention {
            ticks: Some(10),
            ..Retention::default()
        };
        let packed = String::from_utf8(xadd_pipeline(&batch, &retention).get_packed_pipeline())
            .unwrap()
            .replace("\r\n", " ");
        assert_eq!(
            packed,
            "*8 $4 XADD $13 ticks:BTCUSDT $6 MAXLEN $1 ~ $2 10 $3 5-0 $1 k $1 v \
             *5 $4 XADD $5 fills $3 6-0 $1 k $1 v "
        );
    }

    /// The full-queue policy, with no Redis to drain the queue (the URL points nowhere, so the
    /// writer keeps the first batch and waits).
    #[tokio::test]
    async fn full_queue_sheds_market_data_and_spills_the_rest() {
        let config = PublisherConfig {
            endpoint: RedisEndpoint::new("redis://127.0.0.1:1"),
            queue: 2,
            batch: 1,
            ..PublisherConfig::default()
        };
        let p = Publisher::spawn(config).unwrap();
        // Fill the queue while the writer holds nothing yet: it may take one entry as its
        // batch at any moment, so fill until the queue reports full.
        let mut n = 0;
        while p.stats().queue_depth.load(Ordering::Relaxed) < 2 {
            assert_eq!(p.try_publish(entry("orders", &format!("1-{n}"))), Outcome::Queued);
            n += 1;
            assert!(n < 10, "queue never filled");
        }
        assert_eq!(p.try_publish(entry("ticks:X", "1-0")), Outcome::Shed);
        assert_eq!(p.try_publish(entry("signals:X", "1-0")), Outcome::Shed);
        assert_eq!(p.try_publish(entry("fills", "1-0")), Outcome::Spilled);
        assert_eq!(p.try_publish(entry("pnl", "1-0")), Outcome::Spilled);
        assert_eq!(p.stats().shed(StreamKind::Ticks), 1);
        assert_eq!(p.stats().shed(StreamKind::Signals), 1);
        assert_eq!(p.stats().shed(StreamKind::Orders), 0);
        assert_eq!(p.stats().spilled.load(Ordering::Relaxed), 2);
        assert_eq!(p.stats().spill_depth.load(Ordering::Relaxed), 2);
    }

    /// A write-ahead spill that remembers what passed through it.
    #[derive(Debug, Default)]
    struct Recording {
        seen: Arc<Mutex<Vec<String>>>,
        held: VecDeque<Entry>,
    }

    impl Spill for Recording {
        fn push(&mut self, entry: Entry) {
            self.seen.lock().unwrap().push(entry.stream.clone());
            self.held.push_back(entry);
        }

        fn pop(&mut self) -> Option<Entry> {
            self.held.pop_front()
        }

        fn len(&self) -> usize {
            self.held.len()
        }

        fn write_ahead(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_write_ahead_spill_sees_every_never_drop_entry_and_no_market_data() {
        let config = PublisherConfig {
            endpoint: RedisEndpoint::new("redis://127.0.0.1:1"),
            ..PublisherConfig::default()
        };
        let spill = Recording::default();
        let seen = Arc::clone(&spill.seen);
        let p = Publisher::spawn_with_spill(config, Box::new(spill)).unwrap();
        for (stream, id) in [
            ("ticks:X", "1-0"),
            ("orders", "1-0"),
            ("signals:X", "1-0"),
            ("fills", "1-0"),
            ("pnl", "1-0"),
        ] {
            // The queue has room: everything is queued, the never-drop entries by way of the spill.
            assert_eq!(p.try_publish(entry(stream, id)), Outcome::Queued);
        }
        assert_eq!(*seen.lock().unwrap(), ["orders", "fills", "pnl"]);
        assert_eq!(p.stats().spilled.load(Ordering::Relaxed), 0);
        assert_eq!(p.stats().spill_depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_redis_section_maps_to_the_publisher() {
        let redis = crate::config::RedisConfig {
            enabled: true,
            url: "redis://127.0.0.1:7000".to_string(),
            password_env: None,
            tls_ca_file: None,
            connect_timeout: Duration::from_millis(300),
            response_timeout: Duration::from_millis(400),
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(20),
            instance: "maxx".to_string(),
            queue: 10,
            batch: 3,
            retention: crate::config::StreamRetention {
                ticks: Some(5),
                signals: Some(6),
                orders: None,
                fills: None,
                pnl: Some(7),
            },
            journal_dir: None,
            journal_fsync: crate::config::JournalFsync::Always,
            pnl_every: Duration::from_secs(1),
        };
        let c = PublisherConfig::from_redis(&redis).unwrap();
        assert_eq!(
            (c.endpoint.url.as_str(), c.queue, c.batch),
            ("redis://127.0.0.1:7000", 10, 3)
        );
        assert_eq!(
            [
                c.endpoint.connect_timeout,
                c.endpoint.response_timeout,
                c.endpoint.reconnect_min,
                c.endpoint.reconnect_max
            ],
            [300, 400, 10, 20].map(Duration::from_millis)
        );
        assert_eq!(
            [
                StreamKind::Ticks,
                StreamKind::Signals,
                StreamKind::Orders,
                StreamKind::Fills,
                StreamKind::Pnl
            ]
            .map(|k| c.retention.maxlen(k)),
            [Some(5), Some(6), None, None, Some(7)]
        );
        assert!(c.validate().is_ok());
    }
}
