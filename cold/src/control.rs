//! The cold side's control plane: the MetaGovernor in service, config reload, the Kelly clip.
//!
//! [`Control`] lives in the cold loop of `maxx run`, next to the tap drain that keeps the
//! per-family PnL attribution, and is the only owner of the governor. It answers
//! [`ControlRequest`]s from the HTTP API, runs a governor step when `alpha.reweight_cron`
//! fires, reloads the config on SIGHUP, and watches equity for the intraday drawdown rule.
//!
//! A reload applies live: `alpha.weights` and `alpha.reweight_cron`; every symbol's risk limits
//! (when the symbol list itself is unchanged); the global risk keys Risk reads
//! ([`LIVE_RISK_KEYS`]), which are staged together with the symbols' limits and committed by one
//! `CommitLimits`, so Risk switches between two orders; `risk.daily_drawdown_pct` goes to the
//! drawdown guard; the `exec` keys Execution reads per order ([`LIVE_EXEC_KEYS`]), sent whole as
//! one `ExecCommand::Params`; `telemetry.log_level` (the running log filter, unless `RUST_LOG`
//! set it at start); and `alerts.webhook_url` (the run loop takes it from [`Control::config`]
//! after the reload). The answer lists every changed key by path, under `applied` or
//! `restart_required`; the latter are logged at warn. Nothing reaches a hot thread unless every
//! queue involved has room for its part, so a reload applies whole or not at all.
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
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use crossbeam::queue::ArrayQueue;
use maxx_hot::board::SignalBoard;
use maxx_hot::ids::InstrumentId;
use maxx_hot::num::Money;
use maxx_hot::records::{FAMILIES, Factor, Scope, TradingState, TransitionReason};
use maxx_hot::stage::alpha::{AlphaInput, FamilyKind, Weights};
use maxx_hot::stage::exec::{ExecCommand, LiveExecParams};
use maxx_hot::stage::risk::{GlobalLimits, Limits, RiskCommand};
use serde_json::{Value, json};
use serde_yaml_ng::Value as Yaml;
use tracing::{debug, error, info, warn};

use crate::attribution::FamilyPnl;
use crate::bus::{Entry, StreamWriter};
use crate::config::{self, Config};
use crate::engine::{exec_params, risk_params};
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

/// The `exec` keys a reload applies while running (Execution takes them between two orders).
/// `depth_penalty_bps`, the fee schedules (`exec.paper`) and the gateways (`exec.live`) are
/// built into the paper venues and the live gateways at start and need a restart.
pub const LIVE_EXEC_KEYS: [&str; 10] = [
    "slip_tolerance_pct",
    "maker_rebate_threshold_bps",
    "urgent_score",
    "passive_timeout_ms",
    "max_reprices",
    "on_passive_timeout",
    "reject_ratio_pct",
    "health_window",
    "probation_ms",
    "latency_penalty_bps_per_ms",
];

/// The keys of a `symbols` entry that apply live (Risk's per-symbol limits), when the symbol
/// list itself (names, venues, `order_qty`) is unchanged. `tick_size` and `lot_size` reach Risk
/// at once too, but Alpha's stops, Execution's IOC rounding and the live gateways keep theirs
/// until a restart, so they are reported as needing one.
pub const LIVE_SYMBOL_KEYS: [&str; 4] = ["max_order_qty", "max_order_notional", "max_position", "min_notional"];

/// What a reload stages at Risk: the symbols whose limits changed, and the new global limits.
type LimitPush<'a> = (&'a [(InstrumentId, Limits)], Option<GlobalLimits>);

/// `into` with the [`LIVE_EXEC_KEYS`] of `from`.
fn take_live_exec(into: &mut config::ExecConfig, from: &config::ExecConfig) {
    into.slip_tolerance_pct = from.slip_tolerance_pct;
    into.maker_rebate_threshold_bps = from.maker_rebate_threshold_bps;
    into.urgent_score = from.urgent_score;
    into.passive_timeout = from.passive_timeout;
    into.max_reprices = from.max_reprices;
    into.on_passive_timeout = from.on_passive_timeout;
    into.reject_ratio_pct = from.reject_ratio_pct;
    into.health_window = from.health_window;
    into.probation = from.probation;
    into.latency_penalty_bps_milli_per_ms = from.latency_penalty_bps_milli_per_ms;
}

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

/// Config reloads by outcome, readable from any thread (`maxx_config_reloads_total`).
///
/// `Relaxed` everywhere: each counter is a number on its own and publishes no other data.
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// Reloads whose file was valid and whose live keys were applied.
    pub applied: AtomicU64,
    /// Reloads refused (invalid file, or a change the hot path could not take); the running
    /// config stayed.
    pub rejected: AtomicU64,
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
    /// The file's text as last applied (keys that need a restart keep their running value),
    /// parsed for naming changed keys by path.
    raw: Yaml,
    alpha_cmd: Option<Arc<ArrayQueue<AlphaInput>>>,
    risk_cmd: Option<Arc<ArrayQueue<RiskCommand>>>,
    exec_cmd: Option<Arc<ArrayQueue<ExecCommand>>>,
    stream: Option<StreamWriter>,
    /// Reloads refused because the file was invalid.
    pub reload_failures: u64,
    /// Reloads applied and refused (SIGHUP and `POST /reload`), for `/metrics`.
    reloads: Arc<ReloadCounters>,
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
            raw: read_raw(config_path).unwrap_or(Yaml::Null),
            alpha_cmd: None,
            risk_cmd: None,
            exec_cmd: None,
            stream: None,
            reload_failures: 0,
            reloads: Arc::default(),
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

    /// Connects Execution's command queue, which carries the live `exec` keys a reload
    /// changes; without it such a reload is refused (nothing applied).
    pub fn connect_exec(&mut self, exec_cmd: Arc<ArrayQueue<ExecCommand>>) {
        self.exec_cmd = Some(exec_cmd);
    }

    /// The config in force: the file as last reloaded, except keys that need a restart, which
    /// keep the values the process started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next cron firing strictly after `now_secs` (Unix seconds, UTC).
    pub fn next_reweight(&self, now_secs: u64) -> Option<u64> {
        self.config.alpha.reweight_cron.next_after(now_secs)
    }

    /// One governor step (`weights: None`) or operator weights, applied and recorded.
    #[tracing::instrument(name = "governor.reweight", skip_all, fields(otel.name = "governor reweight", trigger = ?trigger))]
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
    /// drawdown guard; changed [`LIVE_EXEC_KEYS`] go to Execution as one
    /// [`ExecCommand::Params`]; a new `telemetry.log_level` changes the running log filter; a
    /// new `alerts.webhook_url` is in [`config`](Self::config) for the run loop. The answer
    /// names every changed key by path under `applied` or `restart_required` (those are logged
    /// at warn). If a command queue cannot take its part, nothing is applied and the caller is
    /// told to retry.
    #[tracing::instrument(name = "config.reload", skip_all, fields(otel.name = "config reload"))]
    pub fn reload(&mut self, pnl: &[FamilyPnl; FAMILIES + 1], now_ns: u64) -> Reply {
        let outcome = self.reload_once(pnl, now_ns);
        let counter = if outcome.is_ok() {
            &self.reloads.applied
        } else {
            &self.reloads.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// The reload counters, shared with the metrics endpoint.
    pub fn reload_counters(&self) -> Arc<ReloadCounters> {
        Arc::clone(&self.reloads)
    }

    fn reload_once(&mut self, pnl: &[FamilyPnl; FAMILIES + 1], now_ns: u64) -> Reply {
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
        // The file just validated, so it parses; should it have changed since, the paths below
        // fall back to whole sections.
        let raw_next = read_raw(&self.config_path).unwrap_or(Yaml::Null);
        let mut rest_old = self.config.clone();
        let mut rest_new = next.clone();
        rest_old.alpha.weights = next.alpha.weights;
        rest_new.alpha.reweight_cron = rest_old.alpha.reweight_cron.clone();
        // Per-symbol limits apply live when the symbols themselves are unchanged.
        let limit_changes = self.limit_changes(&next);
        let symbols_same = limit_changes.is_some();
        if symbols_same {
            for (old, new) in rest_old.symbols.iter_mut().zip(&next.symbols) {
                take_live_symbol(old, new);
            }
        }
        // The global risk keys Risk and the drawdown guard read apply live whatever else changed.
        let risk_keys = risk_changes(&self.config.risk, &next.risk);
        take_live_risk(&mut rest_old.risk, &next.risk);
        let old_global = risk_params(&self.config).global();
        let new_global = risk_params(&next).global();
        let global = (old_global != new_global).then_some(new_global);
        // So do the exec keys Execution reads per order.
        take_live_exec(&mut rest_old.exec, &next.exec);
        let old_exec = exec_params(&self.config).live();
        let new_exec = exec_params(&next).live();
        let exec = (old_exec != new_exec).then_some(new_exec);
        rest_old.alerts = next.alerts.clone();
        rest_old.telemetry.log_level = next.telemetry.log_level;
        let weights_changed = next.alpha.weights != self.config.alpha.weights;
        let cron_changed = next.alpha.reweight_cron != self.config.alpha.reweight_cron;
        let changes = limit_changes.unwrap_or_default();
        let limits = (!changes.is_empty() || global.is_some()).then_some((changes.as_slice(), global));

        // Every queue must take its part before any is touched: a reload applies whole.
        self.check_room(limits, exec.is_some(), weights_changed)?;
        if let Some(params) = exec {
            self.push_exec(params)?;
        }
        // Keep everything but the keys applied live, so a later reload compares against what runs.
        let mut applied = self.config.clone();
        applied.alpha.weights = next.alpha.weights;
        applied.alpha.reweight_cron = next.alpha.reweight_cron.clone();
        take_live_exec(&mut applied.exec, &next.exec);
        applied.alerts = next.alerts.clone();
        if let Some((changes, global)) = limits {
            self.push_limits(changes, global)?;
        }
        if symbols_same {
            for (old, new) in applied.symbols.iter_mut().zip(&next.symbols) {
                take_live_symbol(old, new);
            }
        }
        if !risk_keys.is_empty() {
            take_live_risk(&mut applied.risk, &next.risk);
            self.kelly.set_daily_drawdown_pct(next.risk.daily_drawdown_pct);
        }
        // The log level: the running filter, unless RUST_LOG chose it at start.
        let mut level_refused = None;
        if next.telemetry.log_level != self.config.telemetry.log_level {
            match crate::logging::set_log_level(next.telemetry.log_level) {
                Ok(()) => applied.telemetry.log_level = next.telemetry.log_level,
                Err(why) => level_refused = Some(why),
            }
        }
        let (mut applied_keys, mut restart_keys, raw_in_force) =
            classify(&self.config, &next, &self.raw, &raw_next, symbols_same);
        if level_refused.is_some() {
            applied_keys.retain(|k| k != "telemetry.log_level");
            restart_keys.push("telemetry.log_level".into());
        }
        // Never silent: a section whose start-only keys differ but whose paths the text did
        // not show (an edit between the two reads) is named whole.
        for section in sections_differing(&rest_old, &rest_new) {
            if !restart_keys
                .iter()
                .any(|k| k == section || k.starts_with(&format!("{section}.")) || k.starts_with(&format!("{section}[")))
            {
                restart_keys.push(section.to_string());
            }
        }
        let needs_restart = !restart_keys.is_empty();
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
            "exec_changed": exec.is_some(),
            "applied": applied_keys,
            "restart_required": restart_keys,
            "needs_restart": needs_restart,
        });
        if let Some(why) = &level_refused {
            answer["log_level"] = json!(why);
        }
        if weights_changed {
            let w = next.alpha.weights.to_array();
            let previous = std::mem::replace(&mut self.config, applied.clone());
            match self.reweight(Some(OperatorWeights(w)), pnl, Trigger::Reload, now_ns) {
                Ok(v) => answer["weights"] = v,
                Err(e) => {
                    // Not expected: the room was checked and only this loop feeds Alpha.
                    self.config = previous;
                    return Err(e);
                }
            }
            self.governor.rebase(w);
            self.persist();
        }
        self.config = applied;
        self.raw = raw_in_force;
        if let Some(why) = &level_refused {
            warn!(reason = %why, "config reloaded: telemetry.log_level not changed");
        }
        if needs_restart {
            warn!(path = %self.config_path.display(), keys = %restart_keys.join(", "), "config reloaded: these keys only apply at start and take effect at the next restart");
        }
        info!(weights_changed, cron_changed, applied = %applied_keys.join(", "), needs_restart, "config reloaded");
        // The whole answer, for whoever runs at debug (after a reload to debug, this is the
        // first line the new level lets through).
        debug!(answer = %answer, "config reload answer");
        Ok(answer)
    }

    /// Refuses (503, nothing applied) unless every queue a reload needs has room for its part.
    fn check_room(&self, limits: Option<LimitPush<'_>>, exec: bool, weights: bool) -> Result<(), ApiError> {
        let busy = |what: &str| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the {what} command queue cannot take the new config now; nothing was applied, retry shortly"),
            )
        };
        let disconnected = || internal("the hot path is not connected".into());
        if let Some((changes, global)) = limits {
            let q = self.risk_cmd.as_ref().ok_or_else(disconnected)?;
            if q.capacity() - q.len() < changes.len() + usize::from(global.is_some()) + 1 {
                return Err(busy("Risk"));
            }
        }
        if exec {
            let q = self.exec_cmd.as_ref().ok_or_else(disconnected)?;
            if q.is_full() {
                return Err(busy("Execution"));
            }
        }
        if weights {
            let q = self.alpha_cmd.as_ref().ok_or_else(disconnected)?;
            if q.is_full() {
                return Err(busy("Alpha"));
            }
        }
        Ok(())
    }

    /// Sends Execution its new live parameters, whole. The queue is shared with order entry's
    /// cancels, so it may have filled since [`check_room`](Self::check_room): then nothing has
    /// been applied yet and the caller is told to retry.
    fn push_exec(&self, params: LiveExecParams) -> Result<(), ApiError> {
        let Some(q) = &self.exec_cmd else {
            return Err(internal("the hot path is not connected".into()));
        };
        q.push(ExecCommand::Params(params)).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the Execution command queue cannot take the new config now; nothing was applied, retry shortly",
            )
        })?;
        info!("exec parameters reloaded; in force from the next order");
        Ok(())
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
                .map(|(i, (a, b))| {
                    // Tick and lot sizes stay as the rest of the engine has them until a restart.
                    let limits = Limits {
                        tick_size: a.limits.tick_size,
                        lot_size: a.limits.lot_size,
                        ..b.limits
                    };
                    (InstrumentId(i as u16), a.limits, limits)
                })
                .filter(|(_, a, b)| a != b)
                .map(|(i, _, b)| (i, b))
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

/// `into` with the [`LIVE_SYMBOL_KEYS`] of `from`.
fn take_live_symbol(into: &mut config::SymbolConfig, from: &config::SymbolConfig) {
    into.max_order_qty = from.max_order_qty;
    into.max_order_notional = from.max_order_notional;
    into.max_position = from.max_position;
    into.min_notional = from.min_notional;
}

/// The config file as a YAML tree (only for naming changed keys; [`config::load`] validates).
fn read_raw(path: &Path) -> Option<Yaml> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_yaml_ng::from_str(&text).ok()
}

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `exec.slip_tolerance_pct`, `symbols[0].max_position`, `alpha.weights.momentum`.
fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn key_text(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).map_or_else(|_| "?".into(), |t| t.trim().to_string()),
    }
}

/// Every leaf path whose value differs between `a` and `b` (a key present on one side only
/// counts; lists of different lengths differ as a whole).
fn diff_yaml(a: Option<&Yaml>, b: Option<&Yaml>, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match (a, b) {
        (Some(Yaml::Mapping(x)), Some(Yaml::Mapping(y))) => {
            let keys = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k)));
            for k in keys {
                path.push(Step::Key(key_text(k)));
                diff_yaml(x.get(k), y.get(k), path, out);
                path.pop();
            }
        }
        (Some(Yaml::Sequence(x)), Some(Yaml::Sequence(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                path.push(Step::Index(i));
                diff_yaml(Some(p), Some(q), path, out);
                path.pop();
            }
        }
        (a, b) if a != b => out.push(path.clone()),
        _ => {}
    }
}

/// Whether a reload applies the key at `path` live (`symbols_same`: the symbol list is
/// unchanged, so the symbols' limits can be).
fn is_live(path: &[Step], symbols_same: bool) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map(|s| match s {
            Step::Key(k) => k.as_str(),
            Step::Index(_) => "",
        })
        .collect();
    match keys.as_slice() {
        ["alpha", "weights", ..] | ["alpha", "reweight_cron"] => true,
        ["risk", "stop", "manual_pct"] => true,
        ["risk", key] => LIVE_RISK_KEYS.contains(key),
        ["exec", key] => LIVE_EXEC_KEYS.contains(key),
        ["symbols", "", key] => symbols_same && LIVE_SYMBOL_KEYS.contains(key),
        ["telemetry", "log_level"] | ["alerts", "webhook_url"] => true,
        _ => false,
    }
}

/// Sets the value at `path` in `root` (`None`: removes it); a path that no longer fits the tree
/// is left alone.
fn put(root: &mut Yaml, path: &[Step], value: Option<Yaml>) {
    let Some((last, parents)) = path.split_last() else {
        if let Some(v) = value {
            *root = v;
        }
        return;
    };
    let mut node = root;
    for step in parents {
        let next = match (step, node) {
            (Step::Key(k), Yaml::Mapping(m)) => m.get_mut(k.as_str()),
            (Step::Index(i), Yaml::Sequence(v)) => v.get_mut(*i),
            _ => None,
        };
        let Some(n) = next else { return };
        node = n;
    }
    match (last, node, value) {
        (Step::Key(k), Yaml::Mapping(m), Some(v)) => {
            m.insert(Yaml::String(k.clone()), v);
        }
        (Step::Key(k), Yaml::Mapping(m), None) => {
            m.remove(k.as_str());
        }
        (Step::Index(i), Yaml::Sequence(v), Some(x)) if *i < v.len() => v[*i] = x,
        _ => {}
    }
}

fn get<'a>(root: &'a Yaml, path: &[Step]) -> Option<&'a Yaml> {
    path.iter().try_fold(root, |node, step| match (step, node) {
        (Step::Key(k), Yaml::Mapping(m)) => m.get(k.as_str()),
        (Step::Index(i), Yaml::Sequence(v)) => v.get(*i),
        _ => None,
    })
}

/// The config sections whose validated values differ.
fn sections_differing(a: &Config, b: &Config) -> Vec<&'static str> {
    [
        ("market_data", a.market_data == b.market_data),
        ("alpha", a.alpha == b.alpha),
        ("risk", a.risk == b.risk),
        ("exec", a.exec == b.exec),
        ("symbols", a.symbols == b.symbols),
        ("feeds", a.feeds == b.feeds),
        ("sim", a.sim == b.sim),
        ("hot", a.hot == b.hot),
        ("redis", a.redis == b.redis),
        ("http", a.http == b.http),
        ("grpc", a.grpc == b.grpc),
        ("telemetry", a.telemetry == b.telemetry),
        ("alerts", a.alerts == b.alerts),
        ("governor", a.governor == b.governor),
        ("portfolio", a.portfolio == b.portfolio),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(name, _)| name)
    .collect()
}

/// The changed keys of a reload by path: applied live, and needing a restart; and the file's
/// tree as it now runs (the new file with the restart-only keys as they were). Paths come from
/// the two files' text, kept only in sections whose validated values differ (so writing `1.0`
/// for `1`, or a default out, is no change).
fn classify(
    old: &Config,
    new: &Config,
    raw_old: &Yaml,
    raw_new: &Yaml,
    symbols_same: bool,
) -> (Vec<String>, Vec<String>, Yaml) {
    let empty = Yaml::Mapping(serde_yaml_ng::Mapping::new());
    let as_map = |y: &Yaml| if y.is_mapping() { y.clone() } else { empty.clone() };
    let (raw_old, mut in_force) = (as_map(raw_old), as_map(raw_new));
    let differing = sections_differing(old, new);
    let mut paths = Vec::new();
    diff_yaml(Some(&raw_old), Some(&in_force), &mut Vec::new(), &mut paths);
    let (mut applied, mut restart) = (Vec::new(), Vec::new());
    for path in paths {
        let section = match path.first() {
            Some(Step::Key(k)) => k.as_str(),
            _ => "",
        };
        if !differing.contains(&section) {
            continue;
        }
        if is_live(&path, symbols_same) {
            applied.push(path_text(&path));
        } else {
            put(&mut in_force, &path, get(&raw_old, &path).cloned());
            restart.push(path_text(&path));
        }
    }
    (applied, restart, in_force)
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
