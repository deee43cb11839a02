//! Agent lifecycles observed on the Redis channel `agent.events` by a SUBSCRIBE client of a
//! real redis-server: the exact `{agent}:{state}:{timestamp}` messages, in order, for a
//! recycled agent, a crash-looping agent and an agent whose transitions happen while Redis is
//! down.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::RedisServer;
use maxx_cold::agent::{
    Agent, AgentError, Health, Lifecycle, LifecycleState, StopSignal, Supervisor, SupervisorConfig,
};
use maxx_cold::bus::agent_events::{CHANNEL, LifecycleEvents, parse_event};
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::config::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use LifecycleState::*;

/// Generous: a deadline only fails a broken test, it never paces a passing one.
const DEADLINE: Duration = Duration::from_secs(30);

/// A SUBSCRIBE client of `agent.events` on its own thread, handing each payload over.
struct Subscriber {
    messages: mpsc::UnboundedReceiver<String>,
}

impl Subscriber {
    /// Subscribes and waits until the server counts the subscription, so that nothing
    /// published afterwards can be missed.
    fn start(server: &RedisServer) -> Subscriber {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe(CHANNEL).unwrap();
            ready_tx.send(()).unwrap();
            // Ends when the server goes away or the test is over.
            while let Ok(msg) = pubsub.get_message() {
                if tx.send(msg.get_payload::<String>().unwrap()).is_err() {
                    return;
                }
            }
        });
        ready_rx.recv_timeout(DEADLINE).expect("subscribed");
        let deadline = std::time::Instant::now() + DEADLINE;
        while !server
            .cmd(&["PUBSUB", "NUMSUB", CHANNEL])
            .is_some_and(|r| r.ends_with(":1"))
        {
            assert!(std::time::Instant::now() < deadline, "subscription never registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        Subscriber { messages: rx }
    }

    /// The next message, checked to be exactly `{agent}:{state}:{RFC 3339 UTC with µs}`.
    async fn next(&mut self, agent: &str, state: LifecycleState) -> String {
        let message = tokio::time::timeout(DEADLINE, self.messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no message for {agent}:{state}"))
            .expect("subscriber alive");
        let prefix = format!("{agent}:{state}:");
        assert!(message.starts_with(&prefix), "expected {prefix}…, got {message:?}");
        let timestamp = &message[prefix.len()..];
        assert_rfc3339_micros(timestamp);
        let event = parse_event(&message).unwrap();
        assert_eq!(
            (event.agent.as_str(), event.state, event.timestamp.as_str()),
            (agent, state, timestamp)
        );
        message
    }

    /// The sequence of states for one agent, each checked as in [`Subscriber::next`]; the
    /// timestamps never go back.
    async fn expect(&mut self, agent: &str, states: &[LifecycleState]) {
        let mut last = String::new();
        for &state in states {
            let message = self.next(agent, state).await;
            let timestamp = message.splitn(3, ':').nth(2).unwrap().to_string();
            assert!(timestamp >= last, "{timestamp} before {last}");
            last = timestamp;
        }
    }

    /// Asserts nothing else was published: a marker PUBLISHed now, after the publisher's
    /// last PUBLISH was answered, is the next message the subscriber gets.
    async fn assert_drained(&mut self, server: &RedisServer, events: &LifecycleEvents) {
        assert!(events.flush(DEADLINE).await, "publisher queue never emptied");
        server.cmd(&["PUBLISH", CHANNEL, "end-of-test"]).expect("server up");
        let next = tokio::time::timeout(DEADLINE, self.messages.recv())
            .await
            .expect("marker arrives")
            .expect("subscriber alive");
        assert_eq!(next, "end-of-test", "unexpected message");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn assert_rfc3339_micros(t: &str) {
    let shape: String = t.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "timestamp {t:?}");
}

/// A well-behaved agent: starts, runs until asked to stop, accepts reloads unless told not to.
#[derive(Default)]
struct Steady {
    starts: AtomicU32,
    stops: AtomicU32,
    reloads: AtomicU32,
    refuse_reloads: AtomicBool,
}

impl Agent for Steady {
    fn name(&self) -> &str {
        "portfolio"
    }

    async fn start(&self) -> Result<(), AgentError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn run(&self, mut stop: StopSignal) -> Result<(), AgentError> {
        stop.stopped().await;
        Ok(())
    }

    async fn stop(&self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }

    fn health(&self) -> Health {
        Health::ok("steady")
    }

    fn reload(&self, _config: &Config) -> Result<(), String> {
        if self.refuse_reloads.load(Ordering::SeqCst) {
            return Err("portfolio.lockbox cannot change while positions are open".into());
        }
        self.reloads.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Fails to start on attempt 1, fails while running on attempts 2 and 3 (after running at
/// least `runs_for`), then runs until stopped.
struct Flaky {
    attempts: AtomicU32,
    runs_for: Duration,
}

impl Flaky {
    fn new(runs_for: Duration) -> Self {
        Self {
            attempts: AtomicU32::new(0),
            runs_for,
        }
    }
}

impl Agent for Flaky {
    fn name(&self) -> &str {
        "meta_governor"
    }

    async fn start(&self) -> Result<(), AgentError> {
        match self.attempts.fetch_add(1, Ordering::SeqCst) + 1 {
            1 => Err(AgentError::Retry("state file locked".into())),
            _ => Ok(()),
        }
    }

    async fn run(&self, mut stop: StopSignal) -> Result<(), AgentError> {
        if self.attempts.load(Ordering::SeqCst) <= 3 {
            // A lower bound on the time spent Running, which is all the reset policy reads.
            tokio::time::sleep(self.runs_for).await;
            return Err(AgentError::Retry("policy server connection reset".into()));
        }
        stop.stopped().await;
        Ok(())
    }

    async fn stop(&self) {}

    fn health(&self) -> Health {
        Health::ok("policy loaded")
    }

    fn reload(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
}

fn shipped_config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent_config.yaml");
    maxx_cold::config::load(&path).expect("the shipped config is valid")
}

fn quick_backoff(reset_after: Duration) -> SupervisorConfig {
    SupervisorConfig {
        backoff_start: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        reset_after,
        stop_grace: Duration::from_secs(5),
    }
}

async fn wait_state(mut watch: tokio::sync::watch::Receiver<LifecycleState>, state: LifecycleState) {
    tokio::time::timeout(DEADLINE, watch.wait_for(|s| *s == state))
        .await
        .unwrap_or_else(|_| panic!("never reached {state}"))
        .expect("supervisor alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycled_agent_publishes_init_running_recycling_running_shutdown() {
    let server = RedisServer::start();
    let mut sub = Subscriber::start(&server);
    let events = LifecycleEvents::spawn(server.url()).unwrap();

    let handle = Supervisor::spawn(Steady::default(), events.clone(), SupervisorConfig::default()).unwrap();
    wait_state(handle.watch(), Running).await;
    assert_eq!(handle.health(), Health::ok("steady"));

    handle.reload(shipped_config()).await.unwrap();
    handle.agent().refuse_reloads.store(true, Ordering::SeqCst);
    let refused = handle.reload(shipped_config()).await.unwrap_err();
    assert!(refused.contains("lockbox"), "{refused}");
    assert_eq!(handle.agent().reloads.load(Ordering::SeqCst), 1);

    handle.recycle().await.unwrap();
    wait_state(handle.watch(), Running).await;
    let agent = Arc::clone(handle.agent());
    handle.shutdown().await;

    sub.expect("portfolio", &[Init, Running, Recycling, Running, Shutdown])
        .await;
    sub.assert_drained(&server, &events).await;
    assert_eq!(agent.starts.load(Ordering::SeqCst), 2);
    assert_eq!(agent.stops.load(Ordering::SeqCst), 2);
    let states = events.states();
    assert_eq!(states.len(), 1);
    assert_eq!((states[0].agent.as_str(), states[0].state), ("portfolio", Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_backs_off_with_growing_delays_then_recovers() {
    let server = RedisServer::start();
    let mut sub = Subscriber::start(&server);
    let events = LifecycleEvents::spawn(server.url()).unwrap();

    // reset_after far above any run: every failure counts towards the backoff.
    let handle = Supervisor::spawn(
        Flaky::new(Duration::ZERO),
        events.clone(),
        quick_backoff(Duration::from_secs(3600)),
    )
    .unwrap();
    sub.expect(
        "meta_governor",
        &[
            Init,
            CrashLoopBackoff, // start failed
            Init,
            Running,
            CrashLoopBackoff, // run failed
            Init,
            Running,
            CrashLoopBackoff, // run failed
            Init,
            Running, // recovered
        ],
    )
    .await;
    wait_state(handle.watch(), Running).await;
    assert_eq!(
        handle.backoffs(),
        [10, 20, 40].map(Duration::from_millis),
        "doubling from backoff_start"
    );
    assert!(handle.health().ok);
    assert_eq!(handle.agent().attempts.load(Ordering::SeqCst), 4);
    handle.shutdown().await;
    sub.expect("meta_governor", &[Shutdown]).await;
    sub.assert_drained(&server, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_healthy_running_starts_the_backoff_again() {
    let server = RedisServer::start();
    let mut sub = Subscriber::start(&server);
    let events = LifecycleEvents::spawn(server.url()).unwrap();

    // Each run lasts at least 20 ms, above reset_after: the run failures are new problems.
    let handle = Supervisor::spawn(
        Flaky::new(Duration::from_millis(20)),
        events.clone(),
        quick_backoff(Duration::from_millis(5)),
    )
    .unwrap();
    sub.expect(
        "meta_governor",
        &[
            Init,
            CrashLoopBackoff,
            Init,
            Running,
            CrashLoopBackoff,
            Init,
            Running,
            CrashLoopBackoff,
            Init,
            Running,
        ],
    )
    .await;
    assert_eq!(handle.backoffs(), [10, 10, 10].map(Duration::from_millis));
    handle.shutdown().await;
    sub.expect("meta_governor", &[Shutdown]).await;
    sub.assert_drained(&server, &events).await;
}

/// Fails to start in a way retrying cannot fix.
struct Misconfigured;

impl Agent for Misconfigured {
    fn name(&self) -> &str {
        "execution"
    }

    async fn start(&self) -> Result<(), AgentError> {
        Err(AgentError::Fatal("exec.venue kraken has no credentials".into()))
    }

    async fn run(&self, _stop: StopSignal) -> Result<(), AgentError> {
        unreachable!("never started")
    }

    async fn stop(&self) {}

    fn health(&self) -> Health {
        Health::failing("not started")
    }

    fn reload(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_start_error_shuts_the_agent_down_without_retrying() {
    let server = RedisServer::start();
    let mut sub = Subscriber::start(&server);
    let events = LifecycleEvents::spawn(server.url()).unwrap();
    let handle = Supervisor::spawn(Misconfigured, events.clone(), quick_backoff(Duration::from_secs(60))).unwrap();
    sub.expect("execution", &[Init, Shutdown]).await;
    sub.assert_drained(&server, &events).await;
    wait_state(handle.watch(), Shutdown).await;
    assert!(!handle.health().ok);
    assert!(handle.backoffs().is_empty());
    assert!(handle.recycle().await.unwrap_err().contains("shut down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_transitions_are_refused_and_never_published() {
    let server = RedisServer::start();
    let mut sub = Subscriber::start(&server);
    let events = LifecycleEvents::spawn(server.url()).unwrap();

    let mut life = Lifecycle::new("alpha", events.clone()).unwrap();
    for bad in [Recycling, Init] {
        let err = life.to(bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("agent alpha: lifecycle transition Init -> {bad} is not allowed")
        );
    }
    life.to(Running).unwrap();
    assert!(life.to(Init).is_err());
    life.to(Shutdown).unwrap();
    for after in LifecycleState::ALL {
        assert!(life.to(after).is_err(), "Shutdown -> {after}");
    }
    assert!(Lifecycle::new("market_data:binance", events.clone()).is_err());

    sub.expect("alpha", &[Init, Running, Shutdown]).await;
    sub.assert_drained(&server, &events).await;
}

/// A TCP path to the redis-server that the test can cut: while closed, connections are accepted
/// and dropped at once. Pub/sub keeps nothing, so after a restart the subscriber must be in
/// place before the publisher can reach the server again; the gate orders the two.
struct Gate {
    open: Arc<AtomicBool>,
    addr: SocketAddr,
}

impl Gate {
    async fn start(upstream_port: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let gate = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { open, addr }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn set(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_during_a_redis_outage_arrive_in_order_after_the_restart() {
    let mut server = RedisServer::start();
    let gate = Gate::start(server.port).await;
    let mut sub = Subscriber::start(&server);
    let endpoint = RedisEndpoint {
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..RedisEndpoint::new(gate.url())
    };
    let events = LifecycleEvents::spawn(endpoint).unwrap();

    let mut life = Lifecycle::new("risk_sentinel", events.clone()).unwrap();
    life.to(Running).unwrap();
    sub.expect("risk_sentinel", &[Init, Running]).await;

    server.kill();
    gate.set(false);
    life.to(Recycling).unwrap();
    life.to(Running).unwrap();
    life.to(Shutdown).unwrap();
    // The health view does not wait for Redis.
    assert_eq!(events.states()[0].state, Shutdown);

    server.restart();
    let mut sub = Subscriber::start(&server);
    gate.set(true);
    sub.expect("risk_sentinel", &[Recycling, Running, Shutdown]).await;
    sub.assert_drained(&server, &events).await;
    let stats = events.stats();
    assert_eq!(stats.published.load(Ordering::Relaxed), 5);
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    assert!(stats.errors.load(Ordering::Relaxed) >= 1, "the outage was seen");
}
