//! Health probes for `GET /healthz`: a fixed list of named checks, each answering at once from
//! state its owner already keeps (atomics, a supervisor's state), so probing never waits on
//! Redis, a venue or a hot thread.
//!
//! The list is built once at start ([`HealthBoard::add`]) and read by any number of HTTP
//! handlers; a probe is a closure over an `Arc` of what it watches. [`HealthBoard::check`]
//! runs every probe and reports the failing ones by name.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::agent::Health;

/// A probe: answers at once, never blocks.
pub type Probe = Box<dyn Fn() -> Health + Send + Sync>;

/// The named probes behind `/healthz`.
#[derive(Default)]
pub struct HealthBoard {
    probes: Vec<(String, Probe)>,
}

impl fmt::Debug for HealthBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.probes.iter().map(|(name, _)| name))
            .finish()
    }
}

/// The answers of every probe, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// `(name, answer)` per probe.
    pub checks: Vec<(String, Health)>,
}

impl HealthReport {
    /// Whether every probe passed (also when there are none).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, h)| h.ok)
    }

    /// The names of the failing probes.
    pub fn failing(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|(_, h)| !h.ok)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// `{"status": "ok"|"failing", "failing": [...], "checks": {name: {"ok", "detail"}}}`.
    pub fn to_json(&self) -> Value {
        let checks: Map<String, Value> = self
            .checks
            .iter()
            .map(|(name, h)| (name.clone(), json!({ "ok": h.ok, "detail": h.detail })))
            .collect();
        json!({
            "status": if self.ok() { "ok" } else { "failing" },
            "failing": self.failing(),
            "checks": checks,
        })
    }
}

impl HealthBoard {
    /// An empty board: healthy until a probe is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a probe under `name` (`redis.publisher`, `feed.binance`, `portfolio`, …).
    pub fn add(&mut self, name: impl Into<String>, probe: impl Fn() -> Health + Send + Sync + 'static) {
        self.probes.push((name.into(), Box::new(probe)));
    }

    /// The probe names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.probes.iter().map(|(name, _)| name.as_str())
    }

    /// Runs every probe.
    pub fn check(&self) -> HealthReport {
        HealthReport {
            checks: self
                .probes
                .iter()
                .map(|(name, probe)| (name.clone(), probe()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn empty_board_is_healthy() {
        let report = HealthBoard::new().check();
        assert!(report.ok());
        assert_eq!(report.to_json()["status"], "ok");
        assert_eq!(report.to_json()["failing"], json!([]));
    }

    #[test]
    fn a_failing_probe_names_itself_and_follows_its_state() {
        let up = Arc::new(AtomicBool::new(false));
        let mut board = HealthBoard::new();
        board.add("always", || Health::ok("fine"));
        let watched = Arc::clone(&up);
        board.add("redis", move || {
            if watched.load(Ordering::Relaxed) {
                Health::ok("connected")
            } else {
                Health::failing("not connected: connection refused")
            }
        });
        assert_eq!(board.names().collect::<Vec<_>>(), ["always", "redis"]);

        let report = board.check();
        assert!(!report.ok());
        assert_eq!(report.failing(), ["redis"]);
        let v = report.to_json();
        assert_eq!(v["status"], "failing");
        assert_eq!(v["checks"]["redis"]["detail"], "not connected: connection refused");
        assert_eq!(v["checks"]["always"]["ok"], true);

        up.store(true, Ordering::Relaxed);
        let report = board.check();
        assert!(report.ok());
        assert_eq!(report.to_json()["checks"]["redis"]["detail"], "connected");
    }
}
