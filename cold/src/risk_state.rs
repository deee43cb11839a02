//! The RiskSentinel's cold-side memory: recent trading-state transitions and the persisted halt.
//!
//! Risk on the hot path decides every transition and taps it out as a [`Transition`];
//! [`RiskLog`] keeps the last [`RECENT`] of them for `GET /risk/state` and the logs, and keeps
//! which scopes are HALTED in `risk.state_file` (atomic replace), so that a halt survives a
//! restart until an operator lifts it (spec section 8). At start, [`RiskLog::restore`] turns the
//! saved halts back into `SetState { .., Halted, Restored }` commands for Risk, sent before the
//! hot threads take their first tick.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use maxx_hot::ids::InstrumentIndex;
use maxx_hot::records::{Scope, TradingState, Transition, TransitionReason};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Transitions kept for the API.
pub const RECENT: usize = 64;

/// What `risk.state_file` holds: the scopes that are HALTED, by symbol (`"*"` is the system).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHalts {
    /// Format version.
    pub version: u32,
    /// Scope (`"*"` or a symbol) → why it was halted and when.
    pub halted: BTreeMap<String, SavedHalt>,
}

/// One saved halt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHalt {
    /// The transition reason's name.
    pub reason: String,
    /// When (ns since the epoch).
    pub ts_ns: u64,
}

/// Recent transitions and the persisted halts.
#[derive(Debug)]
pub struct RiskLog {
    recent: VecDeque<Transition>,
    saved: SavedHalts,
    path: Option<PathBuf>,
    /// Transitions seen.
    pub transitions: u64,
}

const SYSTEM: &str = "*";

impl RiskLog {
    /// Loads `path` (a missing file means nothing is halted; an unreadable or corrupt one is an
    /// error naming the path: a halt must not be lost silently).
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let saved = match path {
            Some(p) => match std::fs::read(p) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| format!("risk.state_file {}: not a risk state file ({e})", p.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedHalts::default(),
                Err(e) => return Err(format!("risk.state_file {}: {e}", p.display())),
            },
            None => SavedHalts::default(),
        };
        Ok(Self {
            recent: VecDeque::with_capacity(RECENT),
            saved,
            path: path.map(Path::to_path_buf),
            transitions: 0,
        })
    }

    /// The saved halts as commands' arguments: `(scope, reason it was halted for)`. Symbols no
    /// longer configured are reported back as errors rather than dropped.
    pub fn restore(&self, index: &InstrumentIndex) -> Result<Vec<(Scope, String)>, String> {
        let mut out = Vec::new();
        for (key, halt) in &self.saved.halted {
            let scope = if key == SYSTEM {
                Scope::System
            } else {
                Scope::Instrument(index.by_symbol(key).ok_or_else(|| {
                    format!(
                        "risk.state_file: symbol {key} is halted but no longer configured; \
                         lift it by removing its entry from the file"
                    )
                })?)
            };
            out.push((scope, halt.reason.clone()));
        }
        Ok(out)
    }

    /// Records a transition; saves the halts when a HALTED state starts or ends.
    pub fn record(&mut self, index: &InstrumentIndex, t: Transition) -> Result<(), String> {
        self.transitions += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(t);
        let key = scope_key(index, t.scope);
        let changed = if t.to == TradingState::Halted {
            // A restored halt keeps its original reason and time.
            if t.reason == TransitionReason::Restored && self.saved.halted.contains_key(&key) {
                false
            } else {
                self.saved.halted.insert(
                    key,
                    SavedHalt {
                        reason: t.reason.name().to_string(),
                        ts_ns: t.ts_ns,
                    },
                );
                true
            }
        } else {
            self.saved.halted.remove(&key).is_some()
        };
        if changed { self.save() } else { Ok(()) }
    }

    /// Whether anything is halted (per the saved state).
    pub fn halted(&self) -> &BTreeMap<String, SavedHalt> {
        &self.saved.halted
    }

    /// The recent transitions as JSON, newest last.
    pub fn recent_json(&self, index: &InstrumentIndex) -> Value {
        Value::Array(self.recent.iter().map(|t| transition_json(index, t)).collect())
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut saved = self.saved.clone();
        saved.version = 1;
        let bytes = serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())?;
        crate::files::write_atomically(path, &bytes).map_err(|e| format!("risk.state_file {}: {e}", path.display()))
    }
}

/// One transition as JSON.
pub fn transition_json(index: &InstrumentIndex, t: &Transition) -> Value {
    json!({
        "scope": scope_key(index, t.scope),
        "from": t.from.name(),
        "to": t.to.name(),
        "reason": t.reason.name(),
        "ts": t.ts_ns,
    })
}

/// `"*"` for the system, else the symbol.
pub fn scope_key(index: &InstrumentIndex, scope: Scope) -> String {
    match scope {
        Scope::System => SYSTEM.to_string(),
        Scope::Instrument(id) if id.index() < index.len() => index.get(id).symbol.to_string(),
        Scope::Instrument(id) => format!("#{}", id.0),
    }
}

/// `GET /risk/state`: states, every limit with its usage, Kelly clip, kill switch, refusals per
/// reason and the recent transitions.
///
/// `venues` has one entry per venue that lists a configured symbol: `orders_last_sec` (orders
/// Risk sent there within the second before its latest event) against `max_orders_per_sec`,
/// `rejects` among the last `reject_window` orders as `reject_ratio_pct` against
/// `reject_limit_pct` (`reject_ratio_high`: its symbols are REDUCING for it), and `feed`
/// (`live`, or `stale` while Risk holds its symbols to reductions). The rate limit, window and
/// ratio limit are the ones Risk has in force, from its own publication.
pub fn risk_state_json(
    config: &crate::config::Config,
    index: &InstrumentIndex,
    view: &maxx_hot::board::RiskView,
    stats: &maxx_hot::runtime::stats::RiskStats,
    kill_tripped: bool,
    log: &RiskLog,
) -> Value {
    let r = &config.risk;
    let mut symbols = serde_json::Map::new();
    for (i, s) in config.symbols.iter().enumerate() {
        let v = view.instruments.get(i).copied().unwrap_or_default();
        let pos = i128::from(v.position.raw());
        let worst = (pos + i128::from(v.open_buy.raw())).max(-(pos - i128::from(v.open_sell.raw())));
        let used = maxx_hot::num::Qty::from_raw(i64::try_from(worst.max(0)).unwrap_or(i64::MAX))
            .map_or_else(|| worst.to_string(), |q| q.to_string());
        symbols.insert(
            s.symbol.to_string(),
            json!({
                "state": v.state.name(),
                "position": v.position.to_string(),
                "open_buy": v.open_buy.to_string(),
                "open_sell": v.open_sell.to_string(),
                "max_position": { "limit": s.max_position.to_string(), "used": used },
                "max_order_qty": s.max_order_qty.to_string(),
                "max_order_notional": s.max_order_notional.to_string(),
                "min_notional": s.min_notional.to_string(),
                "tick_size": s.tick_size.to_string(),
                "lot_size": s.lot_size.to_string(),
            }),
        );
    }
    let mut venues = serde_json::Map::new();
    for venue in index.venues() {
        let v = view.system.venues[venue.index()];
        venues.insert(venue.name().to_string(), venue_json(&v));
    }
    let refusals: serde_json::Map<String, Value> = maxx_hot::records::RejectReason::ALL
        .iter()
        .map(|reason| (reason.name().to_string(), json!(stats.refused[*reason as usize].get())))
        .collect();
    json!({
        "published": view.version,
        "system": {
            "state": view.system.state.name(),
            "killed": view.system.killed,
            "kill_switch_tripped": kill_tripped,
            "kelly_clip": view.system.kelly_clip.to_string(),
            "balance": view.system.balance.to_string(),
            "gross_notional": { "limit": r.max_gross_notional.to_string(), "used": view.system.gross_notional.to_string() },
            "orders": view.system.orders,
            "saved_halts": serde_json::to_value(log.halted()).unwrap_or(Value::Null),
        },
        "limits": {
            "max_trade_risk_pct": r.max_trade_risk_pct.to_string(),
            "daily_drawdown_pct": r.daily_drawdown_pct.to_string(),
            "price_collar_pct": r.price_collar_pct.to_string(),
            "max_orders_per_sec": r.max_orders_per_sec,
            "reject_ratio_pct": r.reject_ratio_pct.to_string(),
            "reject_window": r.reject_window,
            "sizing": r.sizing.name(),
            "kelly_damping": r.kelly_damping.to_string(),
        },
        "symbols": symbols,
        "venues": venues,
        "approved": stats.approved.get(),
        "refused": refusals,
        "transitions": log.recent_json(index),
    })
}

/// One venue's usage of the rate limit and the reject ratio, and its feed as Risk sees it.
pub fn venue_json(v: &maxx_hot::board::VenueRiskView) -> Value {
    json!({
        "orders_last_sec": v.orders_last_sec,
        "max_orders_per_sec": v.max_orders_per_sec,
        "rejects": v.rejects,
        "reject_window": v.reject_window,
        "reject_ratio_pct": percent(u128::from(v.rejects) * 100, u128::from(v.reject_window)),
        "reject_limit_pct": percent(u128::try_from(v.reject_limit.to_bits()).unwrap_or(0) * 100, 1 << 32),
        "reject_ratio_high": v.reject_high,
        "feed": if v.feed_live { "live" } else { "stale" },
    })
}

/// `num / den` as a decimal string rounded half up to four decimals, trailing zeros dropped
/// ("0" for a zero denominator). Exact integer arithmetic.
fn percent(num: u128, den: u128) -> String {
    if den == 0 {
        return "0".into();
    }
    let scaled = (num * 10_000 + den / 2) / den;
    let (int, frac) = (scaled / 10_000, scaled % 10_000);
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:04}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_exact_decimals() {
        assert_eq!(percent(100, 200), "0.5");
        assert_eq!(percent(0, 200), "0");
        assert_eq!(percent(5, 0), "0");
        assert_eq!(percent(100, 3), "33.3333");
        assert_eq!(percent(200, 3), "66.6667");
        // 2 % as the fraction Risk holds (0.02 in 32 fractional bits) reads back as 2.
        let two = maxx_hot::records::Factor::from_num(2) / maxx_hot::records::Factor::from_num(100);
        assert_eq!(percent(u128::try_from(two.to_bits()).unwrap() * 100, 1 << 32), "2");
    }
}
