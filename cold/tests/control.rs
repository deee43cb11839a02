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
    assert!(risk.pop().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
