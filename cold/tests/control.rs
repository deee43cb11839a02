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
