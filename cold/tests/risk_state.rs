//! The persisted halt: a HALTED scope is written to `risk.state_file` when it starts, restored
//! as a command after a restart, and forgotten only when a transition lifts it.

use maxx_cold::risk_state::RiskLog;
use maxx_hot::ids::{InstrumentId, InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::records::{Scope, TradingState, Transition, TransitionReason};

fn index() -> InstrumentIndex {
    InstrumentIndex::new(["BTCUSDT", "ETHUSDT"].into_iter().map(|s| {
        let mut venues = [None; Venue::COUNT];
        venues[Venue::Binance.index()] = Some(VenueSymbol::new(s).unwrap());
        (Symbol::new(s).unwrap(), venues)
    }))
    .unwrap()
}

fn t(scope: Scope, from: TradingState, to: TradingState, reason: TransitionReason) -> Transition {
    Transition {
        scope,
        from,
        to,
        reason,
        ts_ns: 7,
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("maxx-risk-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("state/risk.json")
}

#[test]
fn a_halt_survives_a_restart_until_it_is_lifted() {
    let idx = index();
    let path = tmp("survives");
    let mut log = RiskLog::open(Some(&path)).unwrap();
    assert!(log.restore(&idx).unwrap().is_empty());
    use TradingState::*;
    log.record(&idx, t(Scope::System, Active, Halted, TransitionReason::Drawdown))
        .unwrap();
    log.record(
        &idx,
        t(
            Scope::Instrument(InstrumentId(1)),
            Active,
            Reducing,
            TransitionReason::FeedStale,
        ),
    )
    .unwrap();
    assert!(path.is_file(), "saved when the halt started");

    // "Restart".
    let log2 = RiskLog::open(Some(&path)).unwrap();
    assert_eq!(
        log2.restore(&idx).unwrap(),
        vec![(Scope::System, "drawdown".to_string())]
    );

    // The restored halt does not overwrite the original reason; lifting it clears the file.
    let mut log2 = log2;
    log2.record(&idx, t(Scope::System, Active, Halted, TransitionReason::Restored))
        .unwrap();
    assert_eq!(log2.halted()["*"].reason, "drawdown");
    log2.record(&idx, t(Scope::System, Halted, Active, TransitionReason::Operator))
        .unwrap();
    let log3 = RiskLog::open(Some(&path)).unwrap();
    assert!(log3.restore(&idx).unwrap().is_empty());
    assert_eq!(log2.recent_json(&idx).as_array().unwrap().len(), 2);
}

#[test]
fn a_corrupt_state_file_or_an_unknown_symbol_is_an_error_naming_it() {
    let idx = index();
    let path = tmp("corrupt");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{not json").unwrap();
    let e = RiskLog::open(Some(&path)).unwrap_err();
    assert!(e.contains("risk.state_file") && e.contains("risk.json"), "{e}");
    std::fs::write(
        &path,
        r#"{"version":1,"halted":{"DOGEUSDT":{"reason":"operator","ts_ns":1}}}"#,
    )
    .unwrap();
    let e = RiskLog::open(Some(&path)).unwrap().restore(&idx).unwrap_err();
    assert!(e.contains("DOGEUSDT"), "{e}");
}
