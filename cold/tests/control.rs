//! `Control`, the governor in service, without the HTTP layer: the intraday drawdown rule
//! reaches Risk's command queue as a Kelly clip and a HALTED state (the clip is lifted the next
//! UTC day; the halt only by an operator), weights
//! changes reach Alpha's command queue, and a full queue refuses a change without losing the
//! governor's state.

use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use maxx_cold::attribution::{BUCKETS, FamilyPnl};
use maxx_cold::config;
use maxx_cold::control::Control;
use maxx_cold::governor::Trigger;
use maxx_cold::http::OperatorWeights;
use maxx_hot::num::Money;
use maxx_hot::records::{Factor, Scope, TradingState, TransitionReason};
use maxx_hot::stage::alpha::AlphaInput;
use maxx_hot::stage::risk::RiskCommand;

const DAY_NS: u64 = 86_400 * 1_000_000_000;

fn control() -> (Control, Arc<ArrayQueue<AlphaInput>>, Arc<ArrayQueue<RiskCommand>>) {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent_config.yaml"));
    let mut config = config::load(path).expect("shipped config");
    config.governor.state_file = None;
    let (mut c, _) = Control::new(&config, path).expect("control");
    let alpha = Arc::new(ArrayQueue::new(2));
    let risk = Arc::new(ArrayQueue::new(2));
    c.connect(Arc::clone(&alpha), Arc::clone(&risk), None);
    (c, alpha, risk)
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

#[test]
fn a_drawdown_beyond_the_limit_clips_kelly_until_the_next_utc_day() {
    let (mut c, _, risk) = control();
    let day = 20_000 * DAY_NS;
    // Shipped: starting balance 100000, daily drawdown 5 %.
    c.observe_equity(day + 1, money("100000"));
    c.observe_equity(day + 2, money("96000"));
    assert!(risk.pop().is_none(), "4 % is within the limit");
    c.observe_equity(day + 3, money("94999.99"));
    assert_eq!(risk.pop(), Some(RiskCommand::KellyClip(Factor::from_num(0.25))));
    assert_eq!(risk.pop(), Some(halted_for_drawdown()));
    // A recovery the same day keeps the clip; the next day lifts it.
    c.observe_equity(day + 4, money("100000"));
    assert!(risk.pop().is_none());
    c.observe_equity(day + DAY_NS, money("100000"));
    assert_eq!(risk.pop(), Some(RiskCommand::KellyClip(Factor::ONE)));
}

#[test]
fn a_full_risk_queue_defers_the_clip_until_there_is_room() {
    let (mut c, _, risk) = control();
    risk.push(RiskCommand::Resume).unwrap();
    risk.push(RiskCommand::Resume).unwrap();
    let day = 20_000 * DAY_NS;
    c.observe_equity(day, money("90000"));
    assert_eq!(risk.len(), 2, "nothing pushed while full");
    while risk.pop().is_some() {}
    c.observe_equity(day + 1, money("90000"));
    assert_eq!(risk.pop(), Some(RiskCommand::KellyClip(Factor::from_num(0.25))));
    assert_eq!(risk.pop(), Some(halted_for_drawdown()));
}

fn halted_for_drawdown() -> RiskCommand {
    RiskCommand::SetState {
        scope: Scope::System,
        state: TradingState::Halted,
        reason: TransitionReason::Drawdown,
    }
}

#[test]
fn weights_reach_alpha_and_a_full_queue_changes_nothing() {
    let (mut c, alpha, _) = control();
    let pnl = [FamilyPnl::default(); BUCKETS];
    let w = [
        Factor::from_num(0.5),
        Factor::from_num(0.25),
        Factor::from_num(0.25),
        Factor::ZERO,
    ];
    let answer = c
        .reweight(Some(OperatorWeights(w)), &pnl, Trigger::Http, 1)
        .expect("applied");
    assert_eq!(answer["new"]["momentum"], "0.5");
    assert!(matches!(alpha.pop(), Some(AlphaInput::Weights(got)) if got == w));
    assert_eq!(c.weights(), w);

    // Fill the queue: the next change is refused with 503 and the governor keeps its weights.
    while alpha.push(AlphaInput::Weights(w)).is_ok() {}
    let other = [
        Factor::from_num(0.25),
        Factor::from_num(0.5),
        Factor::from_num(0.25),
        Factor::ZERO,
    ];
    let err = c
        .reweight(Some(OperatorWeights(other)), &pnl, Trigger::Http, 2)
        .unwrap_err();
    assert_eq!(err.status.as_u16(), 503, "{}", err.message);
    assert_eq!(c.weights(), w);
    let err = c.reweight(None, &pnl, Trigger::Http, 3).unwrap_err();
    assert_eq!(err.status.as_u16(), 503);
    assert_eq!(c.weights(), w);
}

/// The whole drawdown path with real parts: Control sees equity fall past
/// `risk.daily_drawdown_pct`, its commands reach a real `Risk` (in the order the queue holds
/// them, as the Risk thread applies them), Risk publishes on a real `RiskBoard` and its
/// transitions go to the `RiskLog`; `GET /risk/state`'s body then shows the system HALTED, the
/// Kelly clip at 0.25 and the drawdown transition, and Risk refuses new risk with `Halted`.
#[test]
fn a_drawdown_halts_risk_with_a_quarter_kelly_clip_and_risk_state_shows_it() {
    use maxx_cold::engine::risk_params;
    use maxx_cold::risk_state::{RiskLog, risk_state_json};
    use maxx_hot::board::{InstrumentRiskView, RiskBoard, SystemRiskView};
    use maxx_hot::ids::InstrumentId;
    use maxx_hot::records::{OrderIntent, Origin, RejectReason, Side, Sizing, Stamp, Tif, Touch};
    use maxx_hot::runtime::stats::RiskStats;
    use maxx_hot::stage::risk::{Decision, Risk};

    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent_config.yaml"));
    let mut config = config::load(path).expect("shipped config");
    config.governor.state_file = None;
    let (mut control, _) = Control::new(&config, path).expect("control");
    let queue = Arc::new(ArrayQueue::new(8));
    control.connect(Arc::new(ArrayQueue::new(2)), Arc::clone(&queue), None);
    let index = config.instrument_index();
    let mut risk = Risk::new(risk_params(&config));
    let board = RiskBoard::new(index.len());
    let stats = RiskStats::new(index.len());
    let mut log = RiskLog::open(None).unwrap();

    // What the Risk thread does between two intents: apply the commands, log the transitions,
    // publish.
    let deliver = |risk: &mut Risk, log: &mut RiskLog, now: u64| {
        while let Some(cmd) = queue.pop() {
            risk.on_command(cmd, now, &mut |_| panic!("no trim was asked for"));
        }
        while let Some(t) = risk.pop_transition() {
            log.record(&index, t).unwrap();
        }
        let system = SystemRiskView {
            state: risk.state(Scope::System),
            killed: risk.killed(),
            kelly_clip: risk.kelly_clip(),
            balance: risk.balance(),
            gross_notional: risk.gross_notional(),
            orders: risk.next_order_id().0 - 1,
            venues: risk.venue_views(),
        };
        let instruments = risk.exposure().iter().enumerate().map(|(i, e)| InstrumentRiskView {
            state: risk.state(Scope::Instrument(InstrumentId(i as u16))),
            position: e.position,
            open_buy: e.open_buy,
            open_sell: e.open_sell,
        });
        board.publish(&system, instruments);
    };

    let day = 20_000 * DAY_NS;
    // Within the limit: 4 % down from the 100000 peak. Nothing reaches Risk.
    control.observe_equity(day + 1, money("100000"));
    control.observe_equity(day + 2, money("96000"));
    deliver(&mut risk, &mut log, day + 2);
    let v = risk_state_json(&config, &index, &board.read(), &stats, false, &log);
    assert_eq!(
        (v["system"]["state"].as_str(), v["system"]["kelly_clip"].as_str()),
        (Some("active"), Some("1")),
        "{v}"
    );

    // Past it: 5.00001 % down.
    control.observe_equity(day + 3, money("94999.99"));
    deliver(&mut risk, &mut log, day + 3);
    assert_eq!(risk.state(Scope::System), TradingState::Halted);
    assert_eq!(risk.kelly_clip(), Factor::from_num(0.25));
    assert!(!risk.killed(), "a drawdown halt is not the kill switch");
    let v = risk_state_json(&config, &index, &board.read(), &stats, false, &log);
    assert_eq!(v["system"]["state"], "halted", "{v}");
    assert_eq!(v["system"]["killed"], false, "{v}");
    assert_eq!(v["system"]["kelly_clip"], "0.25", "{v}");
    assert_eq!(v["system"]["saved_halts"]["*"]["reason"], "drawdown", "{v}");
    let transitions = v["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{v}");
    let t = &transitions[0];
    assert_eq!(
        (&t["scope"], &t["from"], &t["to"], &t["reason"], &t["ts"]),
        (
            &json("*"),
            &json("active"),
            &json("halted"),
            &json("drawdown"),
            &serde_json::json!(day + 3)
        ),
        "{v}"
    );
    // Every symbol faces the system halt: new risk is refused.
    let btc = index.by_symbol("BTCUSDT").unwrap();
    let intent = OrderIntent {
        instrument: btc,
        venue: maxx_hot::ids::Venue::Binance,
        sizing: Sizing::Delta(Side::Buy, "0.001".parse().unwrap()),
        limit: None,
        tif: Tif::Auto,
        pin_venue: false,
        touch: Touch {
            bid: "60000".parse().unwrap(),
            ask: "60001".parse().unwrap(),
            last: "60000".parse().unwrap(),
        },
        origin: Origin::Manual,
        client_id: 0,
        score: Factor::ZERO,
        mix: [Factor::ZERO; 4],
        stop: maxx_hot::num::Price::ZERO,
        reduce_only: false,
        ts_ns: day + 4,
        stamp: Stamp(0),
    };
    assert!(
        matches!(risk.check(&intent), Decision::Refused(r) if r.reason == RejectReason::Halted),
        "new risk is refused while halted"
    );
}

fn json(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.to_string())
}

/// A reload that changes global risk keys stages them for Risk with one commit (no restart
/// needed) and hands the new drawdown limit to the guard at once.
#[test]
fn a_reload_applies_global_risk_keys_live_and_the_new_drawdown_limit() {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent_config.yaml")).unwrap();
    let dir = std::env::temp_dir().join(format!("maxx-control-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.yaml");
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write(&shipped);
    // The state files land in the temporary directory, next to the config.
    let config = config::load(&path).expect("shipped config");
    let (mut c, _) = Control::new(&config, &path).expect("control");
    let risk = Arc::new(ArrayQueue::new(4));
    c.connect(Arc::new(ArrayQueue::new(2)), Arc::clone(&risk), None);
    let pnl = [FamilyPnl::default(); BUCKETS];

    let edit = |from: &str, to: &str, text: &str| {
        assert!(text.contains(from), "{from} moved in the shipped config");
        text.replace(from, to)
    };
    let edited = edit("  max_gross_notional: 50000 ", "  max_gross_notional: 100 ", &shipped);
    let edited = edit("  daily_drawdown_pct: 5.0", "  daily_drawdown_pct: 2.0", &edited);
    write(&edited);
    let answer = c.reload(&pnl, 1).expect("reloaded");
    assert_eq!(answer["needs_restart"], false, "{answer}");
    assert_eq!(
        answer["risk_changed"],
        serde_json::json!(["daily_drawdown_pct", "max_gross_notional"]),
        "{answer}"
    );
    let staged = match risk.pop() {
        Some(RiskCommand::StageGlobal(g)) => g,
        other => panic!("expected the staged global limits, got {other:?}"),
    };
    assert_eq!(staged.max_gross_notional, money("100"));
    assert_eq!(
        staged,
        maxx_hot::stage::risk::GlobalLimits {
            max_gross_notional: money("100"),
            ..maxx_cold::engine::risk_params(&config).global()
        },
        "only the edited key differs"
    );
    assert_eq!(risk.pop(), Some(RiskCommand::CommitLimits));
    assert!(risk.pop().is_none());
    assert_eq!(c.config().risk.max_gross_notional, money("100"));

    // The guard clips at 2 % now: 97000 is 3 % below the 100000 peak.
    let day = 20_000 * DAY_NS;
    c.observe_equity(day, money("100000"));
    c.observe_equity(day + 1, money("97000"));
    assert_eq!(risk.pop(), Some(RiskCommand::KellyClip(Factor::from_num(0.25))));
    assert_eq!(risk.pop(), Some(halted_for_drawdown()));

    // The same file again changes nothing; a key Risk cannot take live still needs a restart.
    assert_eq!(
        c.reload(&pnl, 2).expect("reloaded")["risk_changed"],
        serde_json::json!([])
    );
    assert!(risk.pop().is_none());
    write(&edit("  kill_switch: false", "  kill_switch: true", &edited));
    let answer = c.reload(&pnl, 3).expect("reloaded");
    assert_eq!(answer["needs_restart"], true, "{answer}");
    assert_eq!(
        answer["restart_required"],
        serde_json::json!(["risk.kill_switch"]),
        "{answer}"
    );
    assert!(risk.pop().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A temporary copy of the shipped config and a `Control` reading it, with every command queue
/// connected (Alpha 2, Risk 8, Execution 4 slots).
struct Reloading {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    shipped: String,
    control: Control,
    alpha: Arc<ArrayQueue<AlphaInput>>,
    risk: Arc<ArrayQueue<RiskCommand>>,
    exec: Arc<ArrayQueue<maxx_hot::stage::exec::ExecCommand>>,
}

impl Reloading {
    fn new(name: &str) -> Self {
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/agent_config.yaml")).unwrap();
        let dir = std::env::temp_dir().join(format!("maxx-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.yaml");
        std::fs::write(&path, &shipped).unwrap();
        let config = config::load(&path).expect("shipped config");
        let (mut control, _) = Control::new(&config, &path).expect("control");
        let (alpha, risk, exec) = (
            Arc::new(ArrayQueue::new(2)),
            Arc::new(ArrayQueue::new(8)),
            Arc::new(ArrayQueue::new(4)),
        );
        control.connect(Arc::clone(&alpha), Arc::clone(&risk), None);
        control.connect_exec(Arc::clone(&exec));
        Self {
            dir,
            path,
            shipped,
            control,
            alpha,
            risk,
            exec,
        }
    }

    /// The shipped file with each `(from, to)` replaced once.
    fn write(&self, edits: &[(&str, &str)]) {
        let mut text = self.shipped.clone();
        for (from, to) in edits {
            assert_eq!(
                text.matches(from).count(),
                1,
                "{from:?} is not unique in the shipped config"
            );
            text = text.replacen(from, to, 1);
        }
        std::fs::write(&self.path, text).unwrap();
    }

    fn reload(&mut self) -> Result<serde_json::Value, maxx_cold::http::ApiError> {
        self.control.reload(&[FamilyPnl::default(); BUCKETS], 1)
    }
}

impl Drop for Reloading {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Changed exec keys reach Execution as exactly one `Params` command holding all of them, and
/// the answer names every changed key: the live ones under `applied`, the rest (a paper fee, a
/// feed setting, the log level in a process without a reloadable filter) under
/// `restart_required`, which a later reload of the same file still reports.
#[test]
fn a_reload_sends_changed_exec_keys_as_one_params_command_and_names_every_key() {
    use maxx_hot::stage::exec::ExecCommand;

    let mut r = Reloading::new("exec");
    r.write(&[
        ("  slip_tolerance_pct: 0.05", "  slip_tolerance_pct: 0.1"),
        ("  maker_rebate_threshold_bps: 1.5", "  maker_rebate_threshold_bps: 4"),
        ("passive_timeout_ms: 2000 ", "passive_timeout_ms: 3000 "),
        ("on_passive_timeout: take ", "on_passive_timeout: cancel "),
        ("health_window: 50 ", "health_window: 20 "),
        ("    taker_fee_bps: 7.5", "    taker_fee_bps: 8"),
        ("    max_position: 1\n", "    max_position: 2\n"),
        ("  log_level: info ", "  log_level: debug "),
        ("  webhook_url: null ", "  webhook_url: \"http://127.0.0.1:9/hook\" "),
    ]);
    let answer = r.reload().expect("reloaded");
    assert_eq!(
        strings(&answer["applied"]),
        [
            "alerts.webhook_url",
            "exec.health_window",
            "exec.maker_rebate_threshold_bps",
            "exec.on_passive_timeout",
            "exec.passive_timeout_ms",
            "exec.slip_tolerance_pct",
            "symbols[1].max_position",
        ],
        "{answer}"
    );
    assert_eq!(
        strings(&answer["restart_required"]),
        ["exec.paper.taker_fee_bps", "telemetry.log_level"],
        "{answer}"
    );
    assert_eq!(answer["needs_restart"], true);
    assert_eq!(answer["exec_changed"], true);
    assert!(
        answer["log_level"]
            .as_str()
            .unwrap()
            .contains("no reloadable log filter"),
        "{answer}"
    );

    // Exactly one Params command, with every new value.
    let next = config::load(&r.path).unwrap();
    let sent = match r.exec.pop() {
        Some(ExecCommand::Params(p)) => p,
        other => panic!("expected the new exec parameters, got {other:?}"),
    };
    assert!(r.exec.pop().is_none(), "one command");
    assert_eq!(sent, maxx_cold::engine::exec_params(&next).live());
    assert_eq!(sent.slip, Factor::from_num(0.1) / Factor::from_num(100));
    assert_eq!(sent.maker_threshold_bps_milli, 4_000);
    assert_eq!(sent.passive_timeout_ns, 3_000_000_000);
    assert_eq!(sent.health_window, 20);
    assert_eq!(sent.on_passive_timeout, maxx_hot::stage::exec::OnPassiveTimeout::Cancel);
    // The symbol's new limit went to Risk, staged and committed.
    assert!(
        matches!(r.risk.pop(), Some(RiskCommand::StageLimits { limits, .. }) if limits.max_position == "2".parse::<maxx_hot::num::Qty>().unwrap())
    );
    assert_eq!(r.risk.pop(), Some(RiskCommand::CommitLimits));
    assert!(r.risk.pop().is_none() && r.alpha.pop().is_none());

    // What runs: the live keys new, the restart-only ones as started.
    let running = r.control.config();
    assert_eq!(running.exec.health_window, 20);
    assert_eq!(running.exec.paper.taker_fee_bps_milli, 7_500);
    assert_eq!(running.alerts.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    assert_eq!(running.telemetry.log_level, config::LogLevel::Info);

    // The same file again: nothing to send, the restart-only keys still wait for a restart.
    let again = r.reload().expect("reloaded");
    assert!(r.exec.pop().is_none() && r.risk.pop().is_none());
    assert_eq!(strings(&again["applied"]), Vec::<String>::new(), "{again}");
    assert_eq!(
        strings(&again["restart_required"]),
        ["exec.paper.taker_fee_bps", "telemetry.log_level"],
        "{again}"
    );
    // Back to the shipped file: the live keys return (one more Params), nothing waits.
    r.write(&[]);
    let back = r.reload().expect("reloaded");
    assert_eq!(strings(&back["restart_required"]), Vec::<String>::new(), "{back}");
    assert!(matches!(r.exec.pop(), Some(ExecCommand::Params(p)) if p.health_window == 50));
}

/// A full Execution queue refuses the reload whole: nothing reaches Risk or Alpha, the running
/// config stays, and the refusal is counted.
#[test]
fn a_full_exec_queue_refuses_the_whole_reload() {
    use maxx_hot::records::OrderId;
    use maxx_hot::stage::exec::ExecCommand;
    use std::sync::atomic::Ordering;

    let mut r = Reloading::new("exec-full");
    while r.exec.push(ExecCommand::Cancel(OrderId(1))).is_ok() {}
    r.write(&[
        ("  slip_tolerance_pct: 0.05", "  slip_tolerance_pct: 0.1"),
        ("  max_gross_notional: 50000 ", "  max_gross_notional: 100 "),
        ("    max_position: 1\n", "    max_position: 2\n"),
    ]);
    let err = r.reload().unwrap_err();
    assert_eq!(err.status.as_u16(), 503, "{}", err.message);
    assert!(r.risk.pop().is_none() && r.alpha.pop().is_none());
    assert_eq!(r.control.config().risk.max_gross_notional, money("50000"));
    assert_eq!(r.control.config().symbols[1].max_position, "1".parse().unwrap());
    assert_eq!(r.control.reload_counters().rejected.load(Ordering::Relaxed), 1);
    // With room again, the same file applies.
    while r.exec.pop().is_some() {}
    let answer = r.reload().expect("reloaded");
    assert_eq!(answer["needs_restart"], false, "{answer}");
    assert!(matches!(r.exec.pop(), Some(ExecCommand::Params(_))));
    assert_eq!(r.control.reload_counters().applied.load(Ordering::Relaxed), 1);
}

/// A broken file (bad YAML; valid YAML with a bad value) is refused whole with 400: nothing is
/// sent, weights and limits stay, and the refusal is counted.
#[test]
fn a_broken_file_is_refused_whole_and_counted() {
    use std::sync::atomic::Ordering;

    let mut r = Reloading::new("broken");
    let weights = r.control.weights();
    let counters = r.control.reload_counters();
    let before = r.control.config().clone();
    for edits in [
        // A tab where YAML wants spaces, with a live key changed next to it.
        &[
            ("  slip_tolerance_pct: 0.05", "\tslip_tolerance_pct: 0.1"),
            ("  max_gross_notional: 50000 ", "  max_gross_notional: 100 "),
        ][..],
        // Well-formed, but a percent above 100 next to valid live changes.
        &[
            ("  slip_tolerance_pct: 0.05", "  slip_tolerance_pct: 101"),
            ("  max_gross_notional: 50000 ", "  max_gross_notional: 100 "),
        ][..],
    ] {
        r.write(edits);
        let err = r.reload().unwrap_err();
        assert_eq!(err.status.as_u16(), 400, "{}", err.message);
        assert!(err.message.contains("the running config stays"), "{}", err.message);
    }
    assert!(r.exec.pop().is_none() && r.risk.pop().is_none() && r.alpha.pop().is_none());
    assert_eq!(r.control.weights(), weights);
    assert!(*r.control.config() == before, "the running config stays");
    assert_eq!(counters.rejected.load(Ordering::Relaxed), 2);
    assert_eq!(counters.applied.load(Ordering::Relaxed), 0);
    assert_eq!(r.control.reload_failures, 2);
}
