//! Agent lifecycles of `maxx run` on the Redis channel `agent.events`: a SUBSCRIBE client sees
//! every agent go Init → Running at start, Alpha and the MetaGovernor go Recycling → Running on
//! a config reload (SIGHUP), and every agent go Shutdown at the end, each message exactly
//! `{agent}:{state}:{timestamp}`. Against a private `redis-server`.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{DEADLINE, RedisServer, Running, TempDir, config_with};

const CHANNEL: &str = "agent.events";

/// The agents of the shipped config (one feed, Binance).
const AGENTS: [&str; 6] = [
    "market_data.binance",
    "alpha",
    "risk_sentinel",
    "execution",
    "meta_governor",
    "portfolio",
];

/// Every message published on `agent.events`, from a subscription made before `maxx run`
/// starts.
fn subscribe(redis: &RedisServer) -> mpsc::Receiver<String> {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_connection().expect("connect to the private redis-server");
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(CHANNEL).expect("SUBSCRIBE");
        let _ = ready_tx.send(());
        while let Ok(msg) = pubsub.get_message() {
            let Ok(payload) = msg.get_payload::<String>() else {
                return;
            };
            if tx.send(payload).is_err() {
                return;
            }
        }
    });
    ready_rx.recv_timeout(DEADLINE).expect("subscribed");
    rx
}

/// Messages until `n` have arrived for `state`, in arrival order; checks each one's form.
fn collect(rx: &mpsc::Receiver<String>, seen: &mut Vec<(String, String)>, state: &str, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    while seen.iter().filter(|(_, s)| s == state).count() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = rx
            .recv_timeout(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|_| panic!("waiting for {n} {state} events; seen {seen:?}"));
        let mut parts = msg.splitn(3, ':');
        let (agent, st, ts) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        // RFC 3339 UTC with microseconds: 2026-11-25T10:00:00.123456Z.
        let b = ts.as_bytes();
        assert!(
            b.len() == 27 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[26] == b'Z',
            "timestamp of {msg:?}"
        );
        seen.push((agent.to_string(), st.to_string()));
    }
}

/// The states `agent` went through, in order.
fn states_of<'a>(seen: &'a [(String, String)], agent: &str) -> Vec<&'a str> {
    seen.iter()
        .filter(|(a, _)| a == agent)
        .map(|(_, s)| s.as_str())
        .collect()
}

#[test]
fn every_agent_publishes_its_lifecycle_on_agent_events() {
    let redis = RedisServer::start();
    let rx = subscribe(&redis);
    let dir = TempDir::new("agents");
    let text = config_with(&[(
        "  enabled: false               # default false; publish taps",
        "  enabled: true",
    )])
    .replace("url: \"redis://127.0.0.1:6379\"", &format!("url: \"{}\"", redis.url()));
    let path = dir.write("run.yaml", text);
    let run = Running::start(&path);
    let mut seen = Vec::new();
    collect(&rx, &mut seen, "Running", AGENTS.len());
    for agent in AGENTS {
        assert_eq!(states_of(&seen, agent), ["Init", "Running"], "{seen:?}");
    }

    // A reload the config accepts: the agents that take it live recycle.
    run.signal(libc::SIGHUP);
    collect(&rx, &mut seen, "Recycling", 2);
    collect(&rx, &mut seen, "Running", AGENTS.len() + 2);

    let _ = run.stop();
    collect(&rx, &mut seen, "Shutdown", AGENTS.len());
    for agent in ["alpha", "meta_governor"] {
        assert_eq!(
            states_of(&seen, agent),
            ["Init", "Running", "Recycling", "Running", "Shutdown"],
            "{seen:?}"
        );
    }
    // The Portfolio (a supervised cold agent) takes a reload without recycling.
    for agent in ["market_data.binance", "risk_sentinel", "execution", "portfolio"] {
        assert_eq!(states_of(&seen, agent), ["Init", "Running", "Shutdown"], "{seen:?}");
    }
    // Nothing from agents that do not exist.
    assert!(seen.iter().all(|(a, _)| AGENTS.contains(&a.as_str())), "{seen:?}");
}
