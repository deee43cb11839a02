//! Faults an operator or a test can inject into a running simulator.
//!
//! One [`Faults`] value is shared by every connection of a simulator. Switches (`silent`,
//! `deaf`) act while they are on; one-shot faults (`drop_all`, `inject_garbage`,
//! `announce_shutdown`) bump a generation counter, and each connection acts once for every
//! generation it has not seen yet — so a fault reaches the connections open at that moment,
//! and connections made later start clean.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Fault switches and one-shot fault generations.
#[derive(Debug, Default)]
pub struct Faults {
    silent: AtomicBool,
    deaf: AtomicBool,
    drop_gen: AtomicU64,
    garbage_gen: AtomicU64,
    shutdown_gen: AtomicU64,
}

/// The one-shot generations a connection has acted on, taken when it is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    drop_gen: u64,
    garbage_gen: u64,
    shutdown_gen: u64,
}

/// What a connection should do now, from [`Faults::poll`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Close the TCP connection at once, without a close frame (a network drop).
    pub drop: bool,
    /// Send this many garbage frames (truncated JSON, invalid UTF-8, a binary frame).
    pub garbage: u64,
    /// Send the venue's maintenance notice (Binance `serverShutdown`), then close.
    pub shutdown: bool,
}

impl Faults {
    /// While on, the simulator sends no market data and no heartbeats (a silent feed).
    pub fn set_silent(&self, on: bool) {
        // Relaxed: a switch observed a few messages late changes nothing a test relies on.
        self.silent.store(on, Ordering::Relaxed);
    }

    /// Whether the feed is silent.
    pub fn silent(&self) -> bool {
        self.silent.load(Ordering::Relaxed)
    }

    /// While on, the simulator ignores the client's pings (WebSocket pings or the venue's JSON
    /// ping), so a client that needs pongs sees none.
    pub fn set_deaf(&self, on: bool) {
        self.deaf.store(on, Ordering::Relaxed);
    }

    /// Whether pings are ignored.
    pub fn deaf(&self) -> bool {
        self.deaf.load(Ordering::Relaxed)
    }

    /// Every open connection is dropped abruptly.
    pub fn drop_all(&self) {
        self.drop_gen.fetch_add(1, Ordering::Relaxed);
    }

    /// Every open connection sends `n` garbage frames.
    pub fn inject_garbage(&self, n: u64) {
        self.garbage_gen.fetch_add(n, Ordering::Relaxed);
    }

    /// Every open connection announces maintenance and closes.
    pub fn announce_shutdown(&self) {
        self.shutdown_gen.fetch_add(1, Ordering::Relaxed);
    }

    /// The generations as of now, for a connection just accepted: taken before it is counted
    /// as open, so that every fault raised while it is open is newer.
    pub fn seen_now(&self) -> Seen {
        Seen {
            drop_gen: self.drop_gen.load(Ordering::Relaxed),
            garbage_gen: self.garbage_gen.load(Ordering::Relaxed),
            shutdown_gen: self.shutdown_gen.load(Ordering::Relaxed),
        }
    }

    /// What a connection that has seen `seen` must do now; updates `seen`.
    pub fn poll(&self, seen: &mut Seen) -> Due {
        let now = self.seen_now();
        let due = Due {
            drop: now.drop_gen != seen.drop_gen,
            garbage: now.garbage_gen - seen.garbage_gen,
            shutdown: now.shutdown_gen != seen.shutdown_gen,
        };
        *seen = now;
        due
    }
}

/// Garbage frames a simulator sends when asked: what a broken or hostile venue might.
pub const GARBAGE_TEXT: [&str; 4] = [
    r#"{"e":"trade","E":17231612553"#,
    r#"{"price":"-1","qty":"0"}"#,
    "not json at all",
    r#"{"data":{"p":"1e400","q":[]}}"#,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_faults_reach_each_open_connection_once() {
        let f = Faults::default();
        let mut a = f.seen_now();
        f.inject_garbage(2);
        f.drop_all();
        let mut b = f.seen_now();
        assert_eq!(
            f.poll(&mut a),
            Due {
                drop: true,
                garbage: 2,
                shutdown: false
            }
        );
        assert_eq!(f.poll(&mut a), Due::default());
        assert_eq!(f.poll(&mut b), Due::default());
        f.announce_shutdown();
        assert!(f.poll(&mut b).shutdown);
        f.set_silent(true);
        assert!(f.silent());
    }
}
