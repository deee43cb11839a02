//! A Redis Streams writer for the cold side's own events (today: the `governor` stream).
//!
//! [`StreamWriter::spawn`] starts a tokio task that owns one connection and appends entries
//! with `XADD <stream> <id> field value …`. Callers never wait on Redis: [`StreamWriter::send`]
//! puts the entry on a bounded queue and returns at once (a full queue drops the entry and
//! counts it). While Redis is down the task keeps the entry at the head of the queue and
//! reconnects with capped exponential backoff, so nothing is lost across an outage.
//!
//! It connects as [`connect::RedisEndpoint`] says (password, TLS, timeouts, reconnect backoff).
//!
//! Entries carry explicit ids (`<unix_ms>-<seq>` chosen by the caller, strictly increasing):
//! re-sending an entry after a reconnect, when the first attempt did land but its reply was
//! lost, is refused by Redis as "equal or smaller than the target stream top item" and counted
//! as a duplicate, so a stream never holds the same entry twice.

pub mod agent_events;
pub mod connect;
pub mod consume;
pub mod entry;
pub mod journal;
pub mod key;
pub mod publish;
pub mod spill;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::{info, warn};

use self::connect::{RedisEndpoint, describe};

/// Entries waiting for Redis; beyond this they are dropped (and counted).
const QUEUE: usize = 1024;

/// One stream entry: an explicit id and its fields, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The stream key, e.g. `governor`.
    pub stream: String,
    /// The entry id, `<ms>-<seq>`, strictly increasing per stream.
    pub id: String,
    /// Field/value pairs.
    pub fields: Vec<(String, String)>,
}

/// Counters of a writer, readable from any thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Entries Redis accepted.
    pub written: AtomicU64,
    /// Entries Redis refused as already present (a re-send after a lost reply).
    pub duplicates: AtomicU64,
    /// Entries dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Connection or command failures (each followed by a reconnect).
    pub errors: AtomicU64,
}

/// The sending half of a stream writer.
#[derive(Clone, Debug)]
pub struct StreamWriter {
    tx: mpsc::Sender<Entry>,
    stats: Arc<WriterStats>,
}

impl StreamWriter {
    /// Starts the writer task on the current tokio runtime. Connecting happens in the task, so
    /// a Redis that is down at start delays entries, never the caller.
    pub fn spawn(endpoint: impl Into<RedisEndpoint>) -> Result<Self, String> {
        let endpoint = endpoint.into();
        endpoint.validate().map_err(|e| format!("redis: {e}"))?;
        let client = endpoint.client()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        tokio::spawn(run(client, endpoint, rx, Arc::clone(&stats)));
        Ok(Self { tx, stats })
    }

    /// Queues an entry; never waits. Returns `false` (and counts it) if the queue is full.
    pub fn send(&self, entry: Entry) -> bool {
        match self.tx.try_send(entry) {
            Ok(()) => true,
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

async fn run(client: redis::Client, endpoint: RedisEndpoint, mut rx: mpsc::Receiver<Entry>, stats: Arc<WriterStats>) {
    let conn_config = endpoint.connection_config();
    let mut conn = None;
    let mut backoff = endpoint.reconnect_min;
    let mut pending: Option<Entry> = None;
    loop {
        let entry = match pending.take() {
            Some(e) => e,
            None => match rx.recv().await {
                Some(e) => e,
                None => return,
            },
        };
        if conn.is_none() {
            match client.get_multiplexed_async_connection_with_config(&conn_config).await {
                Ok(c) => {
                    info!(url = %endpoint.redacted_url(), "redis connected");
                    backoff = endpoint.reconnect_min;
                    conn = Some(c);
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(url = %endpoint.redacted_url(), error = %describe(&e), retry_in_ms = backoff.as_millis() as u64, "redis unavailable");
                    pending = Some(entry);
                    tokio::time::sleep(backoff).await;
                    backoff = endpoint.next_backoff(backoff);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&entry.stream).arg(&entry.id);
        for (k, v) in &entry.fields {
            cmd.arg(k).arg(v);
        }
        match cmd.query_async::<String>(c).await {
            Ok(_) => {
                stats.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.to_string().contains("equal or smaller") => {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                // The server answered and refused (e.g. WRONGTYPE): retrying cannot help.
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, stream = %entry.stream, id = %entry.id, "redis refused the entry; dropped");
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, stream = %entry.stream, "redis write failed; reconnecting");
                conn = None;
                pending = Some(entry);
                tokio::time::sleep(backoff).await;
                backoff = endpoint.next_backoff(backoff);
            }
        }
    }
}
