//! Lifecycle events: every agent state transition PUBLISHed on the Redis channel `agent.events`.
//!
//! The message is exactly `{agent}:{state}:{timestamp}`, for example
//! `alpha:Running:2026-11-26T01:47:55.123456Z`:
//! - `agent` is an agent name as checked by [`crate::agent::check_name`] (never contains `:`);
//! - `state` is one of `Init`, `Running`, `Recycling`, `CrashLoopBackoff`, `Shutdown`;
//! - `timestamp` is the wall-clock time of the transition, RFC 3339 UTC with microseconds
//!   ([`crate::logging::rfc3339_now`]), the same form as the `ts` of the JSON logs.
//!
//! The timestamp itself contains `:`, so a consumer splits on the first two `:` only
//! ([`parse_event`] does exactly that).
//!
//! Recording a transition never waits on Redis. [`LifecycleEvents::record`] logs the transition
//! (`info!` with `agent` and `state`), updates the per-agent health view
//! ([`LifecycleEvents::states`]) and puts the message on a bounded queue. A tokio task with its
//! own connection ([`RedisEndpoint`]: password, TLS, timeouts) drains the queue in order. While
//! Redis is down the task keeps the message at the head of the queue and reconnects with the
//! endpoint's capped exponential backoff, so transitions raised
//! during an outage are published, in order, once Redis is back. When the queue is full the new
//! message is dropped, counted ([`EventStats::dropped`]) and logged: a lifecycle message is a
//! notification, and the state itself stays visible in the health view and the logs.
//!
//! Pub/sub keeps nothing: a subscriber sees only messages published while it is subscribed. A
//! message whose PUBLISH failed on a broken connection is sent again after the reconnect; it is
//! byte-identical (the timestamp is fixed when the transition happens), so a consumer that
//! saw it before the break can recognise the repeat.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::connect::{RedisEndpoint, describe};
use crate::agent::{LifecycleState, NameError, check_name};

/// The Redis pub/sub channel of lifecycle events.
pub const CHANNEL: &str = "agent.events";

/// Tuning of the publishing task (the reconnect backoff is the endpoint's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventsOptions {
    /// Messages waiting for Redis; beyond this new ones are dropped (and counted).
    pub queue: usize,
}

impl Default for EventsOptions {
    fn default() -> Self {
        // A few transitions per agent per restart: 1024 covers a long outage of a crash-looping
        // agent set.
        Self { queue: 1024 }
    }
}

/// Why the events publisher could not be set up, or a transition could not be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// The options cannot work; fix the caller.
    #[error("agent.events options: {0}")]
    BadOptions(String),
    /// `redis.url` does not parse; fix the config.
    #[error("redis.url {url:?}: {reason}")]
    BadUrl {
        /// The URL given, password masked.
        url: String,
        /// What the Redis client said.
        reason: String,
    },
    /// The agent name cannot appear in a message.
    #[error(transparent)]
    BadName(#[from] NameError),
}

/// Counters of the publisher, readable from any thread.
#[derive(Debug, Default)]
pub struct EventStats {
    /// Messages put on the queue.
    pub queued: AtomicU64,
    /// Messages Redis accepted.
    pub published: AtomicU64,
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Messages Redis refused with an error reply (not retried).
    pub refused: AtomicU64,
    /// Connection or command failures (each followed by a reconnect).
    pub errors: AtomicU64,
}

/// The latest state of one agent, for the health view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentState {
    /// The agent name.
    pub agent: String,
    /// Its current lifecycle state.
    pub state: LifecycleState,
    /// When it entered that state (RFC 3339 UTC, the timestamp of the message).
    pub since: String,
}

/// Records lifecycle transitions: log, health view, and a message on `agent.events`.
/// Cheap to clone; all clones share the queue, the view and the counters.
#[derive(Clone, Debug)]
pub struct LifecycleEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` when Redis is switched off: transitions are only logged and kept in the view.
    tx: Option<mpsc::Sender<String>>,
    states: Mutex<BTreeMap<String, AgentState>>,
    stats: Arc<EventStats>,
}

impl LifecycleEvents {
    /// Starts the publishing task on the current tokio runtime with default options.
    /// Connecting happens in the task, so a Redis that is down delays messages, never the caller.
    pub fn spawn(endpoint: impl Into<RedisEndpoint>) -> Result<Self, EventsError> {
        Self::spawn_with(endpoint, EventsOptions::default())
    }

    /// Like [`LifecycleEvents::spawn`], with explicit options.
    pub fn spawn_with(endpoint: impl Into<RedisEndpoint>, options: EventsOptions) -> Result<Self, EventsError> {
        let endpoint = endpoint.into();
        if options.queue == 0 {
            return Err(EventsError::BadOptions("queue must hold at least one message".into()));
        }
        endpoint.validate().map_err(EventsError::BadOptions)?;
        let client = endpoint.client().map_err(|reason| EventsError::BadUrl {
            url: endpoint.redacted_url(),
            reason,
        })?;
        let (tx, rx) = mpsc::channel(options.queue);
        let stats = Arc::new(EventStats::default());
        tokio::spawn(drain(client, endpoint, rx, Arc::clone(&stats)));
        Ok(Self::with_sender(Some(tx), stats))
    }

    /// A recorder without Redis (`redis.enabled: false`): transitions are logged and kept in
    /// the health view only.
    pub fn log_only() -> Self {
        Self::with_sender(None, Arc::new(EventStats::default()))
    }

    fn with_sender(tx: Option<mpsc::Sender<String>>, stats: Arc<EventStats>) -> Self {
        Self {
            inner: Arc::new(Inner {
                tx,
                states: Mutex::new(BTreeMap::new()),
                stats,
            }),
        }
    }

    /// Records that `agent` entered `state` now; returns the message queued for `agent.events`.
    /// Never waits: a full queue drops the message (counted and logged).
    pub fn record(&self, agent: &str, state: LifecycleState) -> Result<String, EventsError> {
        check_name(agent)?;
        let since = crate::logging::rfc3339_now();
        let message = format_event(agent, state, &since);
        info!(agent, state = state.as_str(), "agent lifecycle");
        {
            // A poisoned lock only means another thread panicked mid-insert; the map is still
            // a valid map, and the health view must keep working.
            let mut states = self.inner.states.lock().unwrap_or_else(|p| p.into_inner());
            states.insert(
                agent.to_string(),
                AgentState {
                    agent: agent.to_string(),
                    state,
                    since,
                },
            );
        }
        if let Some(tx) = &self.inner.tx {
            match tx.try_send(message.clone()) {
                Ok(()) => {
                    self.inner.stats.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    let dropped = self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(
                        agent,
                        state = state.as_str(),
                        dropped,
                        "agent.events queue full; message dropped"
                    );
                }
            }
        }
        Ok(message)
    }

    /// The latest state of every agent seen, ordered by agent name.
    pub fn states(&self) -> Vec<AgentState> {
        let states = self.inner.states.lock().unwrap_or_else(|p| p.into_inner());
        states.values().cloned().collect()
    }

    /// The publisher's counters.
    pub fn stats(&self) -> &EventStats {
        &self.inner.stats
    }

    /// Waits until every queued message has been published or refused, or `timeout` passes;
    /// returns whether the queue is empty. For an orderly exit, so that the final `Shutdown`
    /// messages leave the process.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let s = &self.inner.stats;
            let done = s.published.load(Ordering::Relaxed) + s.refused.load(Ordering::Relaxed);
            if done >= s.queued.load(Ordering::Relaxed) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The message for one transition: `{agent}:{state}:{timestamp}`.
pub fn format_event(agent: &str, state: LifecycleState, timestamp: &str) -> String {
    format!("{agent}:{}:{timestamp}", state.as_str())
}

/// One message of `agent.events`, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The agent name.
    pub agent: String,
    /// The state it entered.
    pub state: LifecycleState,
    /// When, as written (RFC 3339 UTC).
    pub timestamp: String,
}

/// Parses a message of `agent.events`, splitting on the first two `:` only (the timestamp has
/// its own).
pub fn parse_event(message: &str) -> Result<Event, String> {
    let mut parts = message.splitn(3, ':');
    let (Some(agent), Some(state), Some(timestamp)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("agent.events message {message:?} is not agent:state:timestamp"));
    };
    check_name(agent).map_err(|e| format!("agent.events message {message:?}: {e}"))?;
    let state = state
        .parse::<LifecycleState>()
        .map_err(|e| format!("agent.events message {message:?}: {e}"))?;
    if timestamp.is_empty() {
        return Err(format!("agent.events message {message:?} has no timestamp"));
    }
    Ok(Event {
        agent: agent.to_string(),
        state,
        timestamp: timestamp.to_string(),
    })
}

/// The publishing task: one connection, messages in queue order, reconnect with backoff.
async fn drain(client: redis::Client, endpoint: RedisEndpoint, mut rx: mpsc::Receiver<String>, stats: Arc<EventStats>) {
    let conn_config = endpoint.connection_config();
    let mut conn = None;
    let mut backoff = endpoint.reconnect_min;
    let mut pending: Option<String> = None;
    loop {
        let message = match pending.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        if conn.is_none() {
            match client.get_multiplexed_async_connection_with_config(&conn_config).await {
                Ok(c) => {
                    info!(channel = CHANNEL, url = %endpoint.redacted_url(), "redis connected");
                    backoff = endpoint.reconnect_min;
                    conn = Some(c);
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %describe(&e), channel = CHANNEL, url = %endpoint.redacted_url(), retry_in_ms = backoff.as_millis() as u64, "redis unavailable");
                    pending = Some(message);
                    tokio::time::sleep(backoff).await;
                    backoff = endpoint.next_backoff(backoff);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(&message)
            .query_async::<i64>(c)
            .await;
        match sent {
            Ok(_) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                // The server answered and refused (e.g. NOPERM): sending again cannot help.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, channel = CHANNEL, message, "redis refused the lifecycle message; dropped");
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, channel = CHANNEL, "redis publish failed; reconnecting");
                conn = None;
                pending = Some(message);
                tokio::time::sleep(backoff).await;
                backoff = endpoint.next_backoff(backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_agent_state_timestamp_and_parses_back() {
        let m = format_event("alpha", LifecycleState::CrashLoopBackoff, "2026-11-26T01:47:55.123456Z");
        assert_eq!(m, "alpha:CrashLoopBackoff:2026-11-26T01:47:55.123456Z");
        let e = parse_event(&m).unwrap();
        assert_eq!(e.agent, "alpha");
        assert_eq!(e.state, LifecycleState::CrashLoopBackoff);
        assert_eq!(e.timestamp, "2026-11-26T01:47:55.123456Z");
    }

    #[test]
    fn bad_messages_are_refused_with_the_reason() {
        assert!(parse_event("alpha").unwrap_err().contains("not agent:state:timestamp"));
        assert!(parse_event("alpha:Sleeping:2026").unwrap_err().contains("Sleeping"));
        assert!(parse_event("alpha:Running:").unwrap_err().contains("no timestamp"));
        assert!(parse_event(":Running:2026").is_err());
    }

    #[test]
    fn log_only_keeps_the_latest_state_per_agent() {
        let events = LifecycleEvents::log_only();
        events.record("portfolio", LifecycleState::Init).unwrap();
        events.record("alpha", LifecycleState::Init).unwrap();
        let m = events.record("alpha", LifecycleState::Running).unwrap();
        assert!(m.starts_with("alpha:Running:"), "{m}");
        let states = events.states();
        let view: Vec<_> = states.iter().map(|s| (s.agent.as_str(), s.state)).collect();
        assert_eq!(
            view,
            [("alpha", LifecycleState::Running), ("portfolio", LifecycleState::Init)]
        );
        assert_eq!(m, format_event("alpha", LifecycleState::Running, &states[0].since));
    }

    #[test]
    fn a_name_with_a_colon_is_refused() {
        let events = LifecycleEvents::log_only();
        let err = events.record("market_data:binance", LifecycleState::Init).unwrap_err();
        assert!(err.to_string().contains("':'"), "{err}");
        assert!(events.states().is_empty());
    }

    #[tokio::test]
    async fn bad_options_and_urls_are_refused() {
        let zero = EventsOptions { queue: 0 };
        assert!(matches!(
            LifecycleEvents::spawn_with("redis://127.0.0.1:1", zero),
            Err(EventsError::BadOptions(_))
        ));
        let inverted = RedisEndpoint {
            reconnect_min: Duration::from_secs(2),
            reconnect_max: Duration::from_secs(1),
            ..RedisEndpoint::new("redis://127.0.0.1:1")
        };
        assert!(matches!(
            LifecycleEvents::spawn(inverted),
            Err(EventsError::BadOptions(_))
        ));
        assert!(matches!(
            LifecycleEvents::spawn("http://nowhere"),
            Err(EventsError::BadUrl { .. })
        ));
        match LifecycleEvents::spawn("http://:secret@nowhere") {
            Err(e) => assert!(!e.to_string().contains("secret"), "{e}"),
            Ok(_) => panic!("an http url was accepted"),
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        // Port 1 refuses connections, so the first message stays at the head of the task and
        // the single queue slot fills.
        let endpoint = RedisEndpoint {
            reconnect_min: Duration::from_secs(60),
            reconnect_max: Duration::from_secs(60),
            ..RedisEndpoint::new("redis://127.0.0.1:1")
        };
        let events = LifecycleEvents::spawn_with(endpoint, EventsOptions { queue: 1 }).unwrap();
        for _ in 0..5 {
            events.record("alpha", LifecycleState::Init).unwrap();
        }
        let s = events.stats();
        let queued = s.queued.load(Ordering::Relaxed);
        let dropped = s.dropped.load(Ordering::Relaxed);
        assert_eq!(queued + dropped, 5);
        assert!(dropped >= 3, "queued {queued}, dropped {dropped}");
        assert_eq!(events.states().len(), 1);
    }
}
