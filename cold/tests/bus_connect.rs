//! Redis connection options against real `redis-server`s: a password from the environment or
//! the URL, TLS with a private CA, a read-only replica, oversized entries, and a server that
//! stops answering (SIGSTOP). In every case orders and fills that Redis did not acknowledge
//! are kept and sent again, and each lands exactly once, in order.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{RedisOptions, RedisServer, TlsFiles};
use maxx_cold::bus::Entry;
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::consume::{EntryId, ReadFrom, StreamReader};
use maxx_cold::bus::publish::{Outcome, Publisher, PublisherConfig, PublisherStats};
use maxx_cold::config::{JournalFsync, RedisConfig, StreamRetention};

/// Generous: a slow shared machine must not fail a correct publisher.
const DEADLINE: Duration = Duration::from_secs(60);
/// An environment variable `cargo test` always sets for the test process; its value serves as
/// the server's password, since a test cannot safely set variables in its own process.
const PASSWORD_VAR: &str = "CARGO_PKG_NAME";

/// The `redis` section of a config for `url`, with quick timeouts and reconnects.
fn redis_config(url: &str) -> RedisConfig {
    RedisConfig {
        enabled: true,
        url: url.to_string(),
        password_env: None,
        tls_ca_file: None,
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        instance: "test".to_string(),
        queue: 1024,
        batch: 8,
        retention: StreamRetention {
            ticks: None,
            signals: None,
            orders: None,
            fills: None,
            pnl: None,
        },
        journal_dir: None,
        journal_fsync: JournalFsync::Never,
        pnl_every: Duration::from_secs(1),
    }
}

fn publisher(redis: &RedisConfig) -> Publisher {
    Publisher::spawn(PublisherConfig::from_redis(redis).expect("endpoint")).expect("publisher")
}

/// Orders and fills, alternating, numbered `range`; ids increase per stream.
fn orders_and_fills(range: std::ops::Range<u64>) -> Vec<Entry> {
    range
        .map(|n| Entry {
            stream: if n.is_multiple_of(2) { "orders" } else { "fills" }.to_string(),
            id: format!("1000-{n}"),
            fields: vec![("n".to_string(), n.to_string())],
        })
        .collect()
}

fn publish_all(p: &Publisher, entries: &[Entry]) {
    for e in entries {
        assert_eq!(p.try_publish(e.clone()), Outcome::Queued, "{e:?}");
    }
}

/// The ids of `entries` on `stream`, in order.
fn ids_of(entries: &[Entry], stream: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.id.clone())
        .collect()
}

/// Every id of `stream`, in order (`XRANGE - +`).
async fn stream_ids(endpoint: &RedisEndpoint, stream: &str) -> Vec<String> {
    let client = endpoint.client().expect("client");
    let mut c = client
        .get_multiplexed_async_connection_with_config(&endpoint.connection_config())
        .await
        .expect("connect");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .expect("XRANGE");
    reply.ids.into_iter().map(|e| e.id).collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn errors(s: &PublisherStats) -> u64 {
    s.errors.load(Ordering::Relaxed)
}

/// Nothing was acknowledged, refused for good or shed.
fn nothing_acknowledged_nothing_dropped(s: &PublisherStats) {
    assert_eq!(s.acknowledged(), 0);
    assert_eq!(s.refused.load(Ordering::Relaxed), 0);
    assert_eq!(s.shed.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_from_the_environment_or_the_url_lets_entries_land() {
    let password = std::env::var(PASSWORD_VAR).expect("cargo test sets CARGO_PKG_NAME");
    let server = RedisServer::start_with(RedisOptions {
        password: Some(password.clone()),
        ..RedisOptions::default()
    });

    // From the environment variable named by redis.password_env.
    let mut redis = redis_config(&server.url());
    redis.password_env = Some(PASSWORD_VAR.to_string());
    let endpoint = RedisEndpoint::from_config(&redis).expect("endpoint");
    assert!(!format!("{endpoint:?}").contains(&password), "{endpoint:?}");
    let p = publisher(&redis);
    let orders: Vec<Entry> = orders_and_fills(0..20)
        .into_iter()
        .filter(|e| e.stream == "orders")
        .collect();
    publish_all(&p, &orders);
    wait_until("orders acknowledged", || p.stats().acknowledged() == 10).await;
    assert_eq!(stream_ids(&endpoint, "orders").await, ids_of(&orders, "orders"));

    // In the URL.
    let in_url = redis_config(&format!("redis://:{password}@127.0.0.1:{}", server.port));
    let p = publisher(&in_url);
    let fills: Vec<Entry> = orders_and_fills(0..20)
        .into_iter()
        .filter(|e| e.stream == "fills")
        .collect();
    publish_all(&p, &fills);
    wait_until("fills acknowledged", || p.stats().acknowledged() == 10).await;
    assert_eq!(stream_ids(&endpoint, "fills").await, ids_of(&fills, "fills"));
}

#[test]
fn an_unreadable_password_or_ca_file_is_named() {
    let mut redis = redis_config("rediss://127.0.0.1:1");
    redis.password_env = Some("MAXX_TEST_SURELY_UNSET_7C1E".to_string());
    let err = RedisEndpoint::from_config(&redis).unwrap_err();
    assert_eq!(
        err,
        "redis.password_env: environment variable MAXX_TEST_SURELY_UNSET_7C1E is not set"
    );

    let mut redis = redis_config("rediss://127.0.0.1:1");
    redis.tls_ca_file = Some(PathBuf::from("/nonexistent/redis-ca.pem"));
    let err = RedisEndpoint::from_config(&redis).unwrap_err();
    assert!(
        err.starts_with("redis.tls_ca_file /nonexistent/redis-ca.pem: cannot read it"),
        "{err}"
    );

    redis.tls_ca_file = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let err = RedisEndpoint::from_config(&redis).unwrap_err();
    assert!(
        err.starts_with("redis.tls_ca_file ") && err.contains("not a PEM certificate file"),
        "{err}"
    );
}

/// A wrong password: the publisher reports and counts the authentication failure, holds every
/// order and fill, and publishes them all, once and in order, when the server takes the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_and_loses_nothing() {
    let server = RedisServer::start_with(RedisOptions {
        password: Some("pw-right".to_string()),
        ..RedisOptions::default()
    });
    let redis = redis_config(&format!("redis://:pw-given@127.0.0.1:{}", server.port));
    let p = publisher(&redis);
    let entries = orders_and_fills(0..30);
    publish_all(&p, &entries);
    wait_until("authentication errors", || {
        errors(p.stats()) >= 3 && p.stats().last_error().is_some_and(|e| e.contains("authentication"))
    })
    .await;
    let last = p.stats().last_error().unwrap();
    assert!(!last.contains("pw-given"), "{last}");
    assert!(last.contains("redis://***@127.0.0.1"), "{last}");
    nothing_acknowledged_nothing_dropped(p.stats());
    assert!(!p.stats().connected.load(Ordering::Relaxed));

    // The server now takes the publisher's password: everything held lands.
    assert_eq!(
        server.cmd(&["CONFIG", "SET", "requirepass", "pw-given"]).as_deref(),
        Some("+OK")
    );
    wait_until("every entry acknowledged", || p.stats().acknowledged() == 30).await;
    let endpoint = RedisEndpoint::new(redis.url.as_str());
    for stream in ["orders", "fills"] {
        assert_eq!(
            stream_ids(&endpoint, stream).await,
            ids_of(&entries, stream),
            "{stream}"
        );
    }
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_publishes_and_reads_back() {
    let tls = TlsFiles::generate();
    let server = RedisServer::start_with(RedisOptions {
        tls: Some(tls.clone()),
        ..RedisOptions::default()
    });
    assert!(server.url().starts_with("rediss://127.0.0.1:"));

    let mut redis = redis_config(&server.url());
    redis.tls_ca_file = Some(tls.cert.clone());
    let endpoint = RedisEndpoint::from_config(&redis).expect("endpoint");
    let p = publisher(&redis);
    let entries = orders_and_fills(0..40);
    publish_all(&p, &entries);
    wait_until("every entry acknowledged over TLS", || p.stats().acknowledged() == 40).await;

    let mut reader = StreamReader::new(
        &endpoint,
        "orders",
        ReadFrom::After(EntryId::default()),
        100,
        Duration::from_millis(100),
    )
    .expect("reader");
    let mut read = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while read.len() < 20 {
        assert!(Instant::now() < deadline, "read {} of 20 orders", read.len());
        read.extend(
            reader
                .next_batch()
                .await
                .expect("XREAD over TLS")
                .into_iter()
                .map(|e| e.id),
        );
    }
    assert_eq!(read, ids_of(&entries, "orders"));
    assert_eq!(stream_ids(&endpoint, "fills").await, ids_of(&entries, "fills"));

    // Without the CA file the server's certificate is not trusted: nothing is acknowledged.
    let untrusted = redis_config(&server.url());
    let p = publisher(&untrusted);
    publish_all(&p, &orders_and_fills(40..50));
    wait_until("a certificate error", || {
        p.stats()
            .last_error()
            .is_some_and(|e| e.to_ascii_lowercase().contains("certificate"))
    })
    .await;
    nothing_acknowledged_nothing_dropped(p.stats());
    assert_eq!(stream_ids(&endpoint, "orders").await, ids_of(&entries, "orders"));
}

/// A read-only replica refuses every XADD: the refusal is counted and shown, the entries are
/// sent again, and once the replica is promoted they land exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_replica_holds_entries_until_it_is_promoted() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(RedisOptions {
        args: vec![
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            master.port.to_string(),
        ],
        ..RedisOptions::default()
    });
    let redis = redis_config(&replica.url());
    let p = publisher(&redis);
    let entries = orders_and_fills(0..30);
    publish_all(&p, &entries);
    wait_until("READONLY refusals, retried", || {
        errors(p.stats()) >= 3 && p.stats().last_error().is_some_and(|e| e.contains("READONLY"))
    })
    .await;
    nothing_acknowledged_nothing_dropped(p.stats());
    assert!(
        p.stats()
            .last_error()
            .unwrap()
            .contains("entries for now (will send again): READONLY"),
        "{:?}",
        p.stats().last_error()
    );

    assert_eq!(replica.cmd(&["REPLICAOF", "NO", "ONE"]).as_deref(), Some("+OK"));
    wait_until("every entry acknowledged", || p.stats().acknowledged() == 30).await;
    let endpoint = RedisEndpoint::new(replica.url());
    for stream in ["orders", "fills"] {
        assert_eq!(
            stream_ids(&endpoint, stream).await,
            ids_of(&entries, stream),
            "{stream}"
        );
    }
    assert_eq!(p.stats().written.load(Ordering::Relaxed), 30);
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), 0);
}

/// An entry above `max_entry_bytes` is refused at the door and counted; the orders and fills
/// around it all land, once and in order. Redis's own `proto-max-bulk-len` (here its minimum,
/// 1 MiB) would close the connection on the entry instead, on every re-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_entry_is_refused_and_wedges_nothing() {
    let server = RedisServer::start_with(RedisOptions {
        args: vec!["--proto-max-bulk-len".to_string(), "1mb".to_string()],
        ..RedisOptions::default()
    });
    let redis = redis_config(&server.url());
    let p = publisher(&redis);
    let before = orders_and_fills(0..10);
    let after = orders_and_fills(11..21);
    publish_all(&p, &before);
    let huge = Entry {
        stream: "fills".to_string(),
        id: "1000-10".to_string(),
        fields: vec![("n".to_string(), "x".repeat(2 << 20))],
    };
    assert_eq!(p.try_publish(huge), Outcome::Oversized);
    publish_all(&p, &after);
    assert_eq!(p.stats().oversized.load(Ordering::Relaxed), 1);
    let last = p.stats().last_error().expect("the refusal is reported");
    assert!(
        last.contains("fills (1000-10) is above max_entry_bytes (524288)"),
        "{last}"
    );

    wait_until("every normal entry acknowledged", || p.stats().acknowledged() == 20).await;
    let endpoint = RedisEndpoint::new(server.url());
    let all: Vec<Entry> = before.into_iter().chain(after).collect();
    for stream in ["orders", "fills"] {
        assert_eq!(stream_ids(&endpoint, stream).await, ids_of(&all, stream), "{stream}");
    }
    assert_eq!(p.stats().duplicates.load(Ordering::Relaxed), 0);
    assert_eq!(p.stats().refused.load(Ordering::Relaxed), 0);
}

/// A server that stops answering (SIGSTOP): the batch times out after the response timeout,
/// the publisher reconnects once the server runs again (SIGCONT), and nothing is lost or
/// doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_times_out_and_loses_nothing() {
    let server = RedisServer::start();
    let mut redis = redis_config(&server.url());
    redis.response_timeout = Duration::from_millis(300);
    redis.connect_timeout = Duration::from_millis(300);
    let p = publisher(&redis);
    let first = orders_and_fills(0..20);
    publish_all(&p, &first);
    wait_until("the first entries acknowledged", || p.stats().acknowledged() == 20).await;

    server.signal("STOP");
    let errors_before = errors(p.stats());
    let second = orders_and_fills(20..60);
    publish_all(&p, &second);
    wait_until("a timed-out batch", || {
        errors(p.stats()) > errors_before && !p.stats().connected.load(Ordering::Relaxed)
    })
    .await;
    assert_eq!(
        p.stats().acknowledged(),
        20,
        "nothing is acknowledged while the server is stopped"
    );

    server.signal("CONT");
    wait_until("every entry acknowledged", || p.stats().acknowledged() == 60).await;
    assert!(p.stats().reconnects.load(Ordering::Relaxed) >= 1);
    let endpoint = RedisEndpoint::new(server.url());
    let all: Vec<Entry> = first.into_iter().chain(second).collect();
    for stream in ["orders", "fills"] {
        assert_eq!(stream_ids(&endpoint, stream).await, ids_of(&all, stream), "{stream}");
    }
}
