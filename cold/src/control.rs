//! The cold side's control plane: the MetaGovernor in service, config reload, the Kelly clip.
//!
//! [`Control`] lives in the cold loop of `maxx run`, next to the tap drain that keeps the
//! per-family PnL attribution, and is the only owner of the governor. It answers
//! [`ControlRequest`]s from the HTTP API, runs a governor step when `alpha.reweight_cron`
//! fires, reloads the config on SIGHUP, and watches equity for the intraday drawdown rule.
//!
//! A reload applies live: `alpha.weights` and `alpha.reweight_cron`; every symbol's risk limits
//! (when the symbol list itself is unchanged); and the global risk keys Risk reads
//! ([`LIVE_RISK_KEYS`]), which are staged together with the symbols' limits and committed by one
//! `CommitLimits`, so Risk switches between two orders; `risk.daily_drawdown_pct` goes to the
//! drawdown guard. Any other change is reported as needing a restart.
//!
//! Every weight change, whatever its source (governor step, operator weights, reload), goes the
//! same way: validated → pushed to the Alpha thread through the cold → hot command queue (it
//! applies between two ticks) → persisted to `governor.state_file` (atomic replace) → logged
//! with its explanation → appended to the Redis stream `governor` when Redis is enabled.
//! If the hot queue is full nothing changes and the caller is told to retry.
//!
//! At start the saved state is resumed when it was derived from the same `alpha.weights` as
//! the config now holds; an operator who edits `alpha.weights` thereby overrides what the
//! governor had learned (the log says which happened). A state file that cannot be read is an
//! error at start: silently dropping learned weights with real money at stake is worse than
//! refusing to start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use crossbeam::queue::ArrayQueue;
use maxx_hot::board::SignalBoard;
use maxx_hot::ids::InstrumentId;
use maxx_hot::num::Money;
use maxx_hot::records::{FAMILIES, Factor, Scope, TradingState, TransitionReason};
use maxx_hot::stage::alpha::{AlphaInput, FamilyKind, Weights};
use maxx_hot::stage::risk::{GlobalLimits, Limits, RiskCommand};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::attribution::FamilyPnl;
use crate::bus::{Entry, StreamWriter};
use crate::config::{self, Config};
use crate::engine::risk_params;
use crate::governor::state::GovernorState;
use crate::governor::{Governor, GovernorParams, KellyGuard, Trigger};
use crate::http::{ApiError, OperatorWeights, Reply};

/// The Redis stream governor decisions are appended to.
pub const STREAM: &str = "governor";

/// The `risk` keys a reload applies while running.
pub const LIVE_RISK_KEYS: [&str; 10] = [
    "max_trade_risk_pct",
    "daily_drawdown_pct",
    "price_collar_pct",
    "max_gross_notional",
    "max_orders_per_sec",
    "sizing",
    "kelly_damping",
    "reject_ratio_pct",
    "reject_window",
    "stop.manual_pct",
];

/// The `risk` keys of [`LIVE_RISK_KEYS`] that differ between `a` and `b`.
fn risk_changes(a: &config::RiskConfig, b: &config::RiskConfig) -> Vec<&'static str> {
    let same = [
        a.max_trade_risk_pct == b.max_trade_risk_pct,
        a.daily_drawdown_pct == b.daily_drawdown_pct,
        a.price_collar_pct == b.price_collar_pct,
        a.max_gross_notional == b.max_gross_notional,
        a.max_orders_per_sec == b.max_orders_per_sec,
        a.sizing == b.sizing,
        a.kelly_damping == b.kelly_damping,
        a.reject_ratio_pct == b.reject_ratio_pct,
        a.reject_window == b.reject_window,
        a.stop.manual_pct == b.stop.manual_pct,
    ];
    LIVE_RISK_KEYS
        .iter()
        .zip(same)
        .filter(|(_, same)| !same)
        .map(|(k, _)| *k)
        .collect()
}

/// `into` with the [`LIVE_RISK_KEYS`] of `from`.
fn take_live_risk(into: &mut config::RiskConfig, from: &config::RiskConfig) {
    into.max_trade_risk_pct = from.max_trade_risk_pct;
    into.daily_drawdown_pct = from.daily_drawdown_pct;
    into.price_collar_pct = from.price_collar_pct;
    into.max_gross_notional = from.max_gross_notional;
    into.max_orders_per_sec = from.max_orders_per_sec;
    into.sizing = from.sizing;
    into.kelly_damping = from.kelly_damping;
    into.reject_ratio_pct = from.reject_ratio_pct;
    into.reject_window = from.reject_window;
    into.stop.manual_pct = from.stop.manual_pct;
}

/// The governor in service.
#[derive(Debug)]
pub struct Control {
    governor: Governor,
    kelly: KellyGuard,
    kelly_clip: Factor,
    state_file: Option<PathBuf>,
    config_path: PathBuf,
    config: Config,
    alpha_cmd: Option<Arc<ArrayQueue<AlphaInput>>>,
    risk_cmd: Option<Arc<ArrayQueue<RiskCommand>>>,
    stream: Option<StreamWriter>,
    /// Reloads refused because the file was invalid.
    pub reload_failures: u64,
    /// Entries sent to the stream in this run.
    published: u64,
    /// Millisecond part of the last stream id (ids never go back, even if the clock does).
    last_ms: u64,
    /// The guard has just clipped: Risk must go HALTED (sent with the clip).
    halt_pending: bool,
}

/// Governor parameters from config.
pub fn params(config: &Config) -> GovernorParams {
    let g = &config.governor;
    GovernorParams {
        seed: g.seed,
        max_step: g.max_step,
        min_weight: g.min_weight,
        fixed: g.fixed,
        discount: g.discount,
    }
}

impl Control {
    /// Builds the governor from config and the saved state (see the module doc). Returns the
    /// weights the hot path must start with and a line saying where they came from.
    pub fn new(config: &Config, config_path: &Path) -> Result<(Self, String), String> {
        let base = config.alpha.weights.to_array();
        let params = params(config);
        let state_file = config.governor.state_file.clone();
        let saved = match &state_file {
            Some(p) => GovernorState::load(p)?,
            None => None,
        };
        let mut kelly = KellyGuard::new(config.risk.daily_drawdown_pct, config.exec.paper.starting_balance);
        let (mut governor, note) = match saved {
            Some(state) if state.base() == base => {
                if let Some(k) = &state.kelly {
                    kelly = KellyGuard::from_state(config.risk.daily_drawdown_pct, k);
                }
                let note = format!(
                    "resumed governor state from {} (step {})",
                    state_file.as_deref().unwrap_or(Path::new("")).display(),
                    state.steps()
                );
                (Governor::from_state(params, state)?, note)
            }
            Some(_) => (
                Governor::new(params, base),
                "alpha.weights differ from the weights the saved governor state started from: the config wins".into(),
            ),
            None => (Governor::new(params, base), "governor starts from alpha.weights".into()),
        };
        // The attribution starts from zero in every run: rewards count from here, not from the
        // cumulative PnL the saved state remembers.
        governor.set_pnl_baseline(&[FamilyPnl::default(); FAMILIES + 1]);
        let control = Self {
            // What Risk starts with; a lower clip restored from the state follows at once.
            kelly_clip: Factor::ONE,
            kelly,
            governor,
            state_file,
            config_path: config_path.to_path_buf(),
            config: config.clone(),
            alpha_cmd: None,
            risk_cmd: None,
            stream: None,
            reload_failures: 0,
            published: 0,
            last_ms: 0,
            halt_pending: false,
        };
        Ok((control, note))
    }

    /// The weights the governor holds (the hot path starts with these).
    pub fn weights(&self) -> Weights {
        self.governor.weights()
    }

    /// Connects the cold → hot command queues and, optionally, the Redis stream writer.
    pub fn connect(
        &mut self,
        alpha_cmd: Arc<ArrayQueue<AlphaInput>>,
        risk_cmd: Arc<ArrayQueue<RiskCommand>>,
        stream: Option<StreamWriter>,
    ) {
        self.alpha_cmd = Some(alpha_cmd);
        self.risk_cmd = Some(risk_cmd);
        self.stream = stream;
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next cron firing strictly after `now_secs` (Unix seconds, UTC).
    pub fn next_reweight(&self, now_secs: u64) -> Option<u64> {
        self.config.alpha.reweight_cron.next_after(now_secs)
    }

    /// One governor step (`weights: None`) or operator weights, applied and recorded.
    pub fn reweight(
        &mut self,
        weights: Option<OperatorWeights>,
        pnl: &[FamilyPnl; FAMILIES + 1],
        trigger: Trigger,
        now_ns: u64,
    ) -> Reply {
        let before = self.governor.state();
        let old = self.governor.weights();
        let decision = match weights {
            None => Some(self.governor.step(pnl, trigger, now_ns)),
            Some(OperatorWeights(w)) => {
                self.governor.set_weights(w);
                None
            }
        };
        let new = self.governor.weights();
        if let Err(e) = self.push_weights(new) {
            // Nothing reached the hot path: forget the step so state and hot path agree.
            self.governor = Governor::from_state(params(&self.config), before).map_err(internal)?;
            return Err(e);
        }
        let persisted = self.persist();
        let body = match &decision {
            Some(d) => {
                info!(
                    trigger = trigger.name(),
                    explain = %d.explain(),
                    old = %weights_text(&old),
                    new = %weights_text(&new),
                    "governor step"
                );
                let mut v = serde_json::to_value(d).map_err(|e| internal(e.to_string()))?;
                v["persisted"] = json!(persisted);
                v
            }
            None => {
                info!(trigger = trigger.name(), old = %weights_text(&old), new = %weights_text(&new), "operator weights applied");
                json!({
                    "trigger": trigger.name(),
                    "old": weights_json(&old),
                    "new": weights_json(&new),
                    "explain": format!("operator set the weights to {}", weights_text(&new)),
                    "persisted": persisted,
                })
            }
        };
        self.publish(now_ns, &body);
        Ok(body)
    }

    /// Re-reads the config file; an invalid file is refused whole and the running config stays.
    /// A change of `alpha.weights` is applied like operator weights; changed per-symbol risk
    /// limits and changed global risk keys ([`LIVE_RISK_KEYS`]) are staged and committed together
    /// (Risk switches between two orders), and a new `risk.daily_drawdown_pct` reaches the
    /// drawdown guard; other changes are reported as needing a restart. If Risk's command queue
    /// cannot take the new limits, nothing is applied and the caller is told to retry.
    pub fn reload(&mut self, pnl: &[FamilyPnl; FAMILIES + 1], now_ns: u64) -> Reply {
        let next = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(problems) => {
                self.reload_failures += 1;
                let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
                error!(path = %self.config_path.display(), problems = %lines.join("; "), "config reload refused; the running config stays");
                return Err(ApiError::bad_request(format!(
                    "config {} refused, the running config stays: {}",
                    self.config_path.display(),
                    lines.join("; ")
                )));
            }
        };
        let mut rest_old = self.config.clone();
        let mut rest_new = next.clone();
        rest_old.alpha.weights = next.alpha.weights;
        rest_new.alpha.reweight_cron = rest_old.alpha.reweight_cron.clone();
        // Per-symbol limits apply live when the symbols themselves are unchanged.
        let limit_changes = self.limit_changes(&next);
        let mut applied_symbols = None;
        if let Some(changes) = &limit_changes {
            rest_old.symbols = next.symbols.clone();
            if !changes.is_empty() {
                applied_symbols = Some(next.symbols.clone());
            }
        }
        // The global risk keys Risk and the drawdown guard read apply live whatever else changed.
        let risk_keys = risk_changes(&self.config.risk, &next.risk);
        take_live_risk(&mut rest_old.risk, &next.risk);
        let old_global = risk_params(&self.config).global();
        let new_global = risk_params(&next).global();
        let global = (old_global != new_global).then_some(new_global);
        let needs_restart = rest_old != rest_new;
        let weights_changed = next.alpha.weights != self.config.alpha.weights;
        let cron_changed = next.alpha.reweight_cron != self.config.alpha.reweight_cron;
        // Keep everything but the keys applied live, so a later reload compares against what runs.
        let mut applied = self.config.clone();
        applied.alpha.weights = next.alpha.weights;
        applied.alpha.reweight_cron = next.alpha.reweight_cron.clone();
        let changes = limit_changes.unwrap_or_default();
        if !changes.is_empty() || global.is_some() {
            self.push_limits(&changes, global)?;
            if let Some(symbols) = applied_symbols {
                applied.symbols = symbols;
            }
            self.config.symbols = applied.symbols.clone();
        }
        if !risk_keys.is_empty() {
            take_live_risk(&mut applied.risk, &next.risk);
            take_live_risk(&mut self.config.risk, &next.risk);
            self.kelly.set_daily_drawdown_pct(next.risk.daily_drawdown_pct);
        }
        let changed_symbols: Vec<String> = changes
            .iter()
            .map(|(id, _)| next.symbols[id.index()].symbol.to_string())
            .collect();
        let mut answer = json!({
            "reloaded": self.config_path.display().to_string(),
            "weights_changed": weights_changed,
            "cron_changed": cron_changed,
            "limits_changed": changed_symbols,
            "risk_changed": risk_keys,
            "needs_restart": needs_restart,
        });
        if weights_changed {
            let w = next.alpha.weights.to_array();
            let previous = std::mem::replace(&mut self.config, applied.clone());
            match self.reweight(Some(OperatorWeights(w)), pnl, Trigger::Reload, now_ns) {
                Ok(v) => answer["weights"] = v,
                Err(e) => {
                    self.config = previous;
                    return Err(e);
                }
            }
            self.governor.rebase(w);
            self.persist();
        }
        self.config = applied;
        if needs_restart {
            warn!(path = %self.config_path.display(), "config reloaded: keys that only apply at start changed (anything but alpha.weights, alpha.reweight_cron, symbols' risk limits and the live risk keys) and take effect at the next restart");
        }
        info!(weights_changed, cron_changed, needs_restart, "config reloaded");
        Ok(answer)
    }

    /// The symbols whose risk limits differ in `next`, with their new limits; `None` when the
    /// symbol list itself changed (names, venues or order), which only a restart can apply.
    fn limit_changes(&self, next: &Config) -> Option<Vec<(InstrumentId, Limits)>> {
        let same = self.config.symbols.len() == next.symbols.len()
            && self
                .config
                .symbols
                .iter()
                .zip(&next.symbols)
                .all(|(a, b)| a.symbol == b.symbol && a.venues == b.venues && a.order_qty == b.order_qty);
        if !same {
            return None;
        }
        let (old, new) = (risk_params(&self.config), risk_params(next));
        Some(
            old.instruments
                .iter()
                .zip(&new.instruments)
                .enumerate()
                .filter(|(_, (a, b))| a.limits != b.limits)
                .map(|(i, (_, b))| (InstrumentId(i as u16), b.limits))
                .collect(),
        )
    }

    /// Stages every changed symbol's limits and the new global limits, if any, and commits them
    /// in one step, so Risk switches between two orders; refuses (changing nothing) if the queue
    /// cannot take them all.
    fn push_limits(&self, changes: &[(InstrumentId, Limits)], global: Option<GlobalLimits>) -> Result<(), ApiError> {
        let Some(q) = &self.risk_cmd else {
            return Err(internal("the hot path is not connected".into()));
        };
        if q.capacity() - q.len() < changes.len() + usize::from(global.is_some()) + 1 {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Risk command queue cannot take the new limits now; nothing was applied, retry shortly",
            ));
        }
        for (instrument, limits) in changes {
            let _ = q.push(RiskCommand::StageLimits {
                instrument: *instrument,
                limits: *limits,
            });
        }
        if let Some(global) = global {
            let _ = q.push(RiskCommand::StageGlobal(global));
        }
        let _ = q.push(RiskCommand::CommitLimits);
        info!(
            symbols = changes.len(),
            global = global.is_some(),
            "risk limits reloaded; in force from the next order"
        );
        Ok(())
    }

    /// `GET /govern`: the governor's weights, what the hot path has applied, the Kelly clip.
    pub fn status(&self, board: &SignalBoard, pnl: &[FamilyPnl; FAMILIES + 1]) -> Value {
        let attributed: serde_json::Map<String, Value> = FamilyKind::ALL
            .iter()
            .map(|f| f.name().to_string())
            .chain(std::iter::once("unattributed".to_string()))
            .zip(pnl.iter())
            .map(|(name, p)| (name, json!(p.net().to_string())))
            .collect();
        json!({
            "weights": weights_json(&self.governor.weights()),
            "applied": weights_json(&board.weights()),
            "applied_version": board.weights_version(),
            "steps": self.governor.state().steps(),
            "kelly_clip": self.kelly_clip.to_string(),
            "equity_peak_today": self.kelly.peak().to_string(),
            "attributed_pnl": attributed,
            "reweight_cron": self.config.alpha.reweight_cron.as_str(),
            "state_file": self.state_file.as_ref().map(|p| p.display().to_string()),
        })
    }

    /// Feeds the current equity to the drawdown guard and sends Risk the guard's Kelly clip
    /// whenever it differs from what Risk has (a full queue is retried at the next call; a clip
    /// restored from the state file reaches Risk at the first call). When the guard clips
    /// (drawdown beyond `risk.daily_drawdown_pct`) the system also goes HALTED for new risk,
    /// and stays so (across restarts) until an operator lifts it; the clip itself returns to 1
    /// at the next UTC day.
    pub fn observe_equity(&mut self, now_ns: u64, equity: Money) {
        // Only a clip the guard makes now halts trading; a clip restored from the state file
        // does not (its halt, if an operator has not lifted it, is restored by Risk's own state).
        if let Some(c) = self.kelly.observe(now_ns, equity) {
            self.halt_pending = c < Factor::ONE;
        }
        let clip = self.kelly.clip();
        if clip == self.kelly_clip && !self.halt_pending {
            return;
        }
        let Some(q) = &self.risk_cmd else { return };
        let halt = self.halt_pending;
        // Two commands: make sure both fit before sending either.
        if q.capacity() - q.len() < 2 {
            warn!("risk command queue full; Kelly clip change deferred");
            return;
        }
        let _ = q.push(RiskCommand::KellyClip(clip));
        if halt {
            let _ = q.push(RiskCommand::SetState {
                scope: Scope::System,
                state: TradingState::Halted,
                reason: TransitionReason::Drawdown,
            });
            error!(equity = %equity, peak = %self.kelly.peak(), "intraday drawdown beyond risk.daily_drawdown_pct: Kelly clip 0.25, trading HALTED until an operator lifts it");
        }
        self.halt_pending = false;
        self.kelly_clip = clip;
        warn!(kelly_clip = %clip, equity = %equity, "Kelly clip changed by the intraday drawdown rule");
        self.persist();
    }

    fn push_weights(&self, w: Weights) -> Result<(), ApiError> {
        let Some(q) = &self.alpha_cmd else {
            return Err(internal("the hot path is not connected".into()));
        };
        q.push(AlphaInput::Weights(w)).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Alpha command queue is full; nothing was applied, retry shortly",
            )
        })
    }

    /// Saves the governor state; `false` (and an error log) if it could not be written.
    fn persist(&self) -> bool {
        let Some(path) = &self.state_file else {
            return false;
        };
        let mut state = self.governor.state();
        state.kelly = Some(self.kelly.state());
        match state.save(path) {
            Ok(()) => true,
            Err(e) => {
                error!(path = %path.display(), error = %e, "governor state not saved");
                false
            }
        }
    }

    fn publish(&mut self, now_ns: u64, body: &Value) {
        let Some(stream) = &self.stream else { return };
        self.published += 1;
        let ms = (now_ns / 1_000_000).max(self.last_ms);
        self.last_ms = ms;
        let steps = self.governor.state().steps();
        let entry = Entry {
            stream: STREAM.to_string(),
            // Strictly increasing within a run (the counter) and across restarts (wall-clock
            // ms); the writer re-sends an entry with the same id, so Redis refuses a duplicate.
            id: format!("{ms}-{}", self.published),
            fields: vec![
                ("key".into(), format!("governor-{steps}-{ms}")),
                ("ts".into(), now_ns.to_string()),
                ("trigger".into(), body["trigger"].as_str().unwrap_or("").to_string()),
                ("old".into(), body["old"].to_string()),
                ("new".into(), body["new"].to_string()),
                (
                    "rewards".into(),
                    body.get("rewards").map_or("null".into(), ToString::to_string),
                ),
                ("explain".into(), body["explain"].as_str().unwrap_or("").to_string()),
            ],
        };
        stream.send(entry);
    }
}

/// Weights as `{family: "decimal"}`.
pub fn weights_json(w: &Weights) -> Value {
    let map: serde_json::Map<String, Value> = FamilyKind::ALL
        .iter()
        .map(|f| (f.name().to_string(), json!(w[*f as usize].to_string())))
        .collect();
    Value::Object(map)
}

fn weights_text(w: &Weights) -> String {
    FamilyKind::ALL
        .iter()
        .map(|f| format!("{}={:.4}", f.name(), w[*f as usize]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}
