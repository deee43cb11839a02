//! The cold side's levers on a built engine, through the same queues and board the running
//! system uses: new weights are applied and confirmed on the signal board, a sentiment score
//! enters the signals, the Kelly clip shrinks Alpha's orders, and the board holds exactly the
//! last signal the tap carried.

mod common;

use std::sync::Arc;

use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::num::Qty;
use maxx_hot::records::{Factor, Order, Origin, Signal};
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::run_lockstep;
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::stage::alpha::{AlphaInput, FamilyKind};
use maxx_hot::stage::exec::{ExecEvent, PaperVenue};
use maxx_hot::stage::risk::RiskCommand;
use maxx_hot::wiring::Capacities;

use common::{SynthSource, spec};

/// Receive time of the synthetic source's first frame.
const START_NS: u64 = 1_723_161_254_000_000_000;

fn engine() -> Engine<SynthSource, BinanceDecoder, PaperVenue> {
    let feed = FeedInput {
        venue: Venue::Binance,
        source: SynthSource::new(Some(20_000)),
        decoder: BinanceDecoder::new(),
        stats: Arc::new(FeedStats::new(Venue::Binance)),
    };
    build(
        &spec(Capacities::default()),
        vec![feed],
        vec![PaperVenue::new(Venue::Binance, 7_500)],
    )
}

/// Runs the engine to the end of its input; returns every signal and order the cold side saw.
fn run(e: &mut Engine<SynthSource, BinanceDecoder, PaperVenue>) -> (Vec<Signal>, Vec<Order>) {
    let (mut signals, mut orders) = (Vec::new(), Vec::new());
    let mut tasks: Vec<_> = std::mem::take(&mut e.tasks).into_iter().map(|(_, t)| t).collect();
    let cold = &mut e.cold;
    run_lockstep(&mut tasks, || {
        for (_, t) in &mut cold.ticks {
            while t.pop().is_ok() {}
        }
        while let Ok(s) = cold.signals.pop() {
            signals.push(s);
        }
        while let Ok(ev) = cold.exec.pop() {
            if let ExecEvent::Order(o) = ev {
                orders.push(o);
            }
        }
        while let Ok(h) = cold.hist_in.pop() {
            let _ = cold.hist_back.push(h);
        }
        while cold.refusals.pop().is_ok() {}
    });
    (signals, orders)
}

#[test]
fn weights_sentiment_and_kelly_clip_reach_the_hot_stages() {
    let spec_weights = spec(Capacities::default()).alpha.weights;
    let mut e = engine();
    let board = Arc::clone(&e.cold.board);
    assert_eq!(board.instruments(), 1);
    assert_eq!(board.read(InstrumentId(0)), None, "no signal before the first trade");
    // Alpha's task publishes its starting weights when it is built.
    assert_eq!((board.weights(), board.weights_version()), (spec_weights, 1));
    let quarter = Factor::from_num(0.25);
    let equal = [quarter; FamilyKind::COUNT];
    e.cold.alpha_cmd.push(AlphaInput::Weights(equal)).unwrap();
    e.cold
        .alpha_cmd
        .push(AlphaInput::Sentiment {
            instrument: InstrumentId(0),
            score: Factor::ONE,
            ts_ns: START_NS,
        })
        .unwrap();
    e.cold.risk_cmd.push(RiskCommand::KellyClip(quarter)).unwrap();

    let (signals, orders) = run(&mut e);

    // The weights were applied and confirmed on the board.
    assert_eq!((board.weights(), board.weights_version()), (equal, 2));
    let alpha = &e.stats.alpha;
    assert_eq!((alpha.weight_updates.get(), alpha.sentiment_inputs.get()), (1, 1));
    assert_eq!(alpha.commands.get(), 2);
    // The board holds exactly the last signal the tap carried.
    assert!(signals.len() > 1000, "{}", signals.len());
    assert_eq!(alpha.tap_dropped.get(), 0);
    assert_eq!(board.read(InstrumentId(0)), signals.last().copied());
    // Sentiment (1.0, a 900 s half-life, 20 µs of data) speaks in every later signal.
    let s = FamilyKind::Sentiment as usize;
    let late = &signals[signals.len() / 2..];
    assert!(
        late.iter().all(|x| x.mix[s] > Factor::from_num(0.2)),
        "{:?}",
        late[0].mix
    );
    // Alpha targets ±0.01; clipped to a quarter, every order moves 0.0025 or 0.005.
    assert_eq!(e.stats.risk.kelly_clip.get(), quarter.to_bits() as u64);
    assert!(orders.len() >= 4, "{}", orders.len());
    let allowed: [Qty; 2] = ["0.0025".parse().unwrap(), "0.005".parse().unwrap()];
    for o in &orders {
        assert_eq!(o.origin, Origin::Alpha);
        assert!(allowed.contains(&o.qty), "order {o:?}");
    }
}

#[test]
fn without_commands_the_board_follows_the_tap_and_orders_are_full_size() {
    let mut e = engine();
    let board = Arc::clone(&e.cold.board);
    assert_eq!(e.stats.risk.kelly_clip.get(), Factor::ONE.to_bits() as u64);
    let (signals, orders) = run(&mut e);
    assert_eq!(board.read(InstrumentId(0)), signals.last().copied());
    assert_eq!(board.weights_version(), 1);
    assert!(
        signals
            .iter()
            .all(|x| x.mix[FamilyKind::Sentiment as usize] == Factor::ZERO)
    );
    let full: [Qty; 2] = ["0.01".parse().unwrap(), "0.02".parse().unwrap()];
    assert!(orders.len() >= 4);
    assert!(orders.iter().all(|o| full.contains(&o.qty)), "{orders:?}");
}
