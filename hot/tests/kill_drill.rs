//! The kill-switch drill (RiskSentinel issue): an engine on real threads with hundreds of
//! resting orders at the paper venue and manual intents still pouring in; the kill file appears
//! (the out-of-band path, read by the `kill-watch` thread). Then:
//!
//! * no order reaches the venue once the switch is tripped: the venue wrapper below reads the
//!   same switch as each order arrives and counts every arrival that finds it tripped (must be
//!   none), and the order/fill tap shows no order after the one in flight at the trip;
//! * orders already approved and waiting inside the hot path are stopped at Execution
//!   (`kill_switch` rejects) and released at Risk;
//! * every resting order, including the one in flight at the trip, gets exactly one Cancelled
//!   report, even through rings too small to take them at once;
//! * Risk ends HALTED by the kill (board and transition tap), and Resume lifts it: orders flow
//!   again;
//! * the hot threads allocate nothing from the first resting order's ack to the end of the
//!   cancels (a counting global allocator, as in `tests/hot_alloc.rs`).
//!
//! The trip point is made exact without timing: the venue holds the Execution thread inside
//! one `submit` until the switch is tripped, so that order is in flight before the trip, and
//! every later order's check by Execution comes after it on the same thread.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use maxx_hot::clock::{mono_ns, wall_ns};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::ids::{InstrumentId, Venue};
use maxx_hot::kill::{KillSwitch, spawn_watcher};
use maxx_hot::num::{Price, Qty};
use maxx_hot::records::{
    ExecReport, Factor, Order, OrderId, OrderIntent, Origin, RejectReason, Scope, Side, Sizing, Stamp, Tif, Touch,
    TradingState, Transition, TransitionReason,
};
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{available_cores, plan, spawn};
use maxx_hot::stage::exec::{ExecEvent, Gateway, PaperVenue};
use maxx_hot::stage::risk::RiskCommand;
use maxx_hot::topology::{Layout, StageName, WaitKind};
use maxx_hot::wiring::{Capacities, ColdEnds};

use common::{SynthSource, spec};

/// Counts heap allocations made on hot threads while armed.
struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static HOT_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static HOT: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counting
// around it touches only an atomic and a const-initialised thread-local `Cell<bool>`, neither of
// which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` came from `System` through this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    if ARMED.load(Ordering::Relaxed) && HOT.with(Cell::get) {
        HOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mark_hot() {
    HOT.with(|h| h.set(true));
}

/// Resting orders placed before the drill.
const RESTING: u64 = 300;
/// The order the venue holds in flight while the switch trips (counted from the first).
const HOLD_AT: u64 = RESTING + 10;
/// Orders approved and waiting for Execution at the trip, at least.
const WAITING: u64 = 5;

/// What the venue saw, shared with the test.
#[derive(Debug, Default)]
struct Drill {
    kill: OnceLock<KillSwitch>,
    arrivals: AtomicU64,
    arrivals_tripped: AtomicU64,
    held: AtomicBool,
    cancel_alls: AtomicU64,
}

impl Drill {
    fn kill(&self) -> &KillSwitch {
        self.kill.get().expect("set right after build")
    }
}

/// The paper venue behind a recorder: every arrival is checked against the kill switch, and
/// arrival `HOLD_AT` waits inside `submit` until the switch is tripped.
#[derive(Debug)]
struct DrillVenue {
    inner: PaperVenue,
    drill: Arc<Drill>,
}

impl Gateway for DrillVenue {
    fn venue(&self) -> Venue {
        self.inner.venue()
    }

    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport)) {
        self.inner.cancel(order_id, out);
    }

    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        let kill = self.drill.kill();
        if kill.is_tripped() {
            self.drill.arrivals_tripped.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.drill.arrivals.fetch_add(1, Ordering::SeqCst) + 1;
        if n == HOLD_AT {
            self.drill.held.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !kill.is_tripped() {
                assert!(Instant::now() < deadline, "the switch never tripped");
                std::thread::yield_now();
            }
        }
        self.inner.submit(order, out);
    }

    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport)) {
        self.drill.cancel_alls.fetch_add(1, Ordering::SeqCst);
        self.inner.cancel_all(out);
    }

    fn open_capacity(&self) -> usize {
        self.inner.open_capacity()
    }
}

/// Everything the cold side drained.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<ExecEvent>,
    transitions: Vec<Transition>,
    /// Client id and reason of every refusal the tap carried.
    refusals: Vec<(u64, RejectReason)>,
}

impl Seen {
    fn pump(&mut self, cold: &mut ColdEnds) {
        for (_, t) in &mut cold.ticks {
            while t.pop().is_ok() {}
        }
        while cold.signals.pop().is_ok() {}
        while let Ok(r) = cold.refusals.pop() {
            self.refusals.push((r.intent.client_id, r.reason));
        }
        while let Ok(e) = cold.exec.pop() {
            self.events.push(e);
        }
        while let Ok(t) = cold.risk_events.pop() {
            self.transitions.push(t);
        }
        while let Ok(h) = cold.hist_in.pop() {
            let _ = cold.hist_back.push(h);
        }
    }

    fn orders(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ExecEvent::Order(o) => Some(o.id.0),
                ExecEvent::Report(_) => None,
            })
            .collect()
    }

    fn reports(&self, f: impl Fn(&ExecReport) -> Option<u64>) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ExecEvent::Report(r) => f(r),
                ExecEvent::Order(_) => None,
            })
            .collect()
    }
}

/// A manual buy limit well below the touch (inside the price collar): it rests at the venue.
fn resting_buy(client_id: u64) -> OrderIntent {
    let p = |s: &str| s.parse::<Price>().unwrap();
    OrderIntent {
        instrument: InstrumentId(0),
        venue: Venue::Binance,
        sizing: Sizing::Delta(Side::Buy, "0.001".parse().unwrap()),
        limit: Some(p("59700")),
        tif: Tif::Gtc,
        pin_venue: true,
        touch: Touch {
            bid: p("60000"),
            ask: p("60000.01"),
            last: p("60000"),
        },
        origin: Origin::Manual,
        client_id,
        score: Factor::ZERO,
        mix: [Factor::ZERO; 4],
        stop: Price::ZERO,
        reduce_only: false,
        ts_ns: wall_ns(),
        stamp: Stamp(mono_ns()),
    }
}

/// Pumps the cold side until `done` holds (or two minutes pass).
fn wait_for(what: &str, seen: &mut Seen, cold: &mut ColdEnds, mut done: impl FnMut(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        seen.pump(cold);
        if done(seen) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn push(q: &crossbeam::queue::ArrayQueue<OrderIntent>, intent: OrderIntent) {
    let mut intent = intent;
    while let Err(back) = q.push(intent) {
        intent = back;
        std::thread::yield_now();
    }
}

#[test]
fn kill_drill_blocks_every_order_cancels_every_resting_one_and_resume_lifts_it() {
    let mut spec = spec(Capacities {
        // Rings far smaller than the cancels: they must wait in Execution's backlog.
        exec_risk: 16,
        tap_exec: 32,
        ..Capacities::default()
    });
    // Alpha stays flat (no confidence reaches 2): every order is a manual one.
    spec.alpha.entry = Factor::from_num(2);
    spec.alpha.exit = Factor::ZERO;
    let limits = &mut spec.risk.instruments[0].limits;
    limits.max_position = "1000".parse().unwrap();
    limits.max_order_notional = "100000".parse().unwrap();
    spec.risk.max_gross_notional = "100000000".parse().unwrap();
    spec.risk.starting_balance = "100000000".parse().unwrap();

    let drill = Arc::new(Drill::default());
    let venue = DrillVenue {
        inner: PaperVenue::new(Venue::Binance, 0),
        drill: Arc::clone(&drill),
    };
    let feed = FeedInput {
        venue: Venue::Binance,
        source: SynthSource::new(None),
        decoder: BinanceDecoder::new(),
        stats: Arc::new(FeedStats::new(Venue::Binance)),
    };
    let Engine {
        tasks,
        mut cold,
        flags,
        stats,
    } = build(&spec, vec![feed], vec![venue]);
    drill.kill.set(cold.kill.clone()).unwrap();
    let kill = cold.kill.clone();
    let board = Arc::clone(&cold.risk_board);
    let manual = Arc::clone(&cold.manual);

    // One thread per stage, so Risk keeps approving while Execution is held in the venue.
    let stages: Vec<StageName> = tasks.iter().map(|(s, _)| *s).collect();
    let cores = available_cores();
    let map = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, cores[i % cores.len()]))
        .collect();
    let placement = plan(Layout::Pinned, &map, &stages, &cores).unwrap();
    let threads = spawn(&placement.threads, tasks, WaitKind::SpinYield, mark_hot).unwrap();

    let mut seen = Seen::default();

    // 1. Resting orders, through the manual queue.
    for id in 1..=RESTING {
        push(&manual, resting_buy(id));
    }
    wait_for("the resting orders' acks", &mut seen, &mut cold, |s| {
        drill.arrivals.load(Ordering::SeqCst) == RESTING
            && s.reports(|r| matches!(r, ExecReport::Ack { .. }).then_some(0)).len() == RESTING as usize
    });
    let open = board.read().instruments[0].open_buy;
    assert_eq!(open, Qty::from_raw(RESTING as i64 * 100_000).unwrap(), "0.001 each");
    assert_eq!(board.read().system.state, TradingState::Active);

    // 2. Intents keep arriving while the kill file appears. From here to the end of the
    // cancels, the hot threads must not allocate.
    ARMED.store(true, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("maxx-kill-drill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kill_file = dir.join("KILL");
    let _ = std::fs::remove_file(&kill_file);
    let watcher = spawn_watcher(kill.clone(), Some(kill_file.clone())).unwrap();
    let stop_feeding = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(RESTING));
    let feeder = {
        let (manual, stop, pushed) = (Arc::clone(&manual), Arc::clone(&stop_feeding), Arc::clone(&pushed));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let id = pushed.load(Ordering::SeqCst) + 1;
                if manual.push(resting_buy(id)).is_ok() {
                    pushed.store(id, Ordering::SeqCst);
                } else {
                    std::thread::yield_now();
                }
            }
        })
    };
    let tripper = {
        let (drill, risk_stats, file) = (Arc::clone(&drill), Arc::clone(&stats.risk), kill_file.clone());
        std::thread::spawn(move || {
            // The venue holds order HOLD_AT in flight; Risk has approved more behind it.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !(drill.held.load(Ordering::SeqCst) && risk_stats.approved.get() >= HOLD_AT + WAITING) {
                assert!(Instant::now() < deadline, "no order in flight");
                std::thread::yield_now();
            }
            std::fs::write(&file, b"drill\n").unwrap();
        })
    };
    tripper.join().unwrap();
    wait_for("the trip", &mut seen, &mut cold, |_| kill.is_tripped());
    // Let more intents arrive after the trip, then stop feeding.
    let after = pushed.load(Ordering::SeqCst) + 20;
    wait_for("intents after the trip", &mut seen, &mut cold, |_| {
        pushed.load(Ordering::SeqCst) >= after
    });
    stop_feeding.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    let pushed = pushed.load(Ordering::SeqCst);

    // 3. Everything settles: nothing open at Risk, every intent judged.
    wait_for("Risk to settle", &mut seen, &mut cold, |_| {
        let v = board.read();
        manual.is_empty()
            && stats.risk.manual_intents.get() == pushed
            && v.instruments[0].open_buy.is_zero()
            && v.system.state == TradingState::Halted
    });

    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(
        HOT_ALLOCS.load(Ordering::SeqCst),
        0,
        "the hot threads allocated during the drill"
    );
    // No order reached the venue with the switch tripped; the tap shows the same.
    assert_eq!(drill.arrivals_tripped.load(Ordering::SeqCst), 0);
    assert_eq!(drill.arrivals.load(Ordering::SeqCst), HOLD_AT);
    let sent = seen.orders();
    assert_eq!(sent, (1..=HOLD_AT).collect::<Vec<_>>(), "orders sent, in id order");
    // Orders approved before Risk saw the trip were stopped at Execution.
    let stopped = seen.reports(|r| match r {
        ExecReport::Reject {
            order_id,
            reason: RejectReason::KillSwitch,
            ..
        } => Some(order_id.0),
        _ => None,
    });
    assert!(stopped.len() as u64 >= WAITING, "{} stopped", stopped.len());
    assert!(stopped.iter().all(|id| *id > HOLD_AT));
    assert_eq!(
        stats.exec.rejected[RejectReason::KillSwitch as usize].get(),
        stopped.len() as u64
    );
    assert_eq!(stats.exec.orders.get(), HOLD_AT);
    assert_eq!(stats.risk.approved.get(), HOLD_AT + stopped.len() as u64);
    // Every intent was judged: approved or refused (after the kill), none lost.
    assert_eq!(
        stats.risk.approved.get() + stats.risk.refused_total() + stats.risk.nothing.get(),
        pushed
    );
    assert!(stats.risk.refused_total() > 0, "intents arrived after Risk halted");
    // One cancel-all; every resting order (the one in flight too) cancelled exactly once.
    assert_eq!(drill.cancel_alls.load(Ordering::SeqCst), 1);
    let cancelled = seen.reports(|r| match r {
        ExecReport::Cancelled { order_id, .. } => Some(order_id.0),
        _ => None,
    });
    assert_eq!(
        cancelled,
        (1..=HOLD_AT).collect::<Vec<_>>(),
        "one cancel per resting order"
    );
    assert_eq!(stats.exec.cancels.get(), HOLD_AT);
    // Risk is HALTED by the kill: on the board and as a transition with its reason.
    let v = board.read();
    assert!(v.system.killed);
    assert_eq!(v.system.state, TradingState::Halted);
    assert_eq!(stats.risk.kill_trips.get(), 1);
    assert!(
        seen.transitions
            .iter()
            .any(|t| t.scope == Scope::System && t.to == TradingState::Halted && t.reason == TransitionReason::Kill),
        "{:?}",
        seen.transitions
    );

    // 4. Resume: the file goes first (it holds the switch down), then the operator's command.
    watcher.stop();
    std::fs::remove_file(&kill_file).unwrap();
    cold.risk_cmd.push(RiskCommand::Resume).unwrap();
    wait_for("the resume", &mut seen, &mut cold, |_| {
        let v = board.read();
        !v.system.killed && v.system.state == TradingState::Active
    });
    assert!(!kill.is_tripped());
    push(&manual, resting_buy(pushed + 1));
    wait_for("an order after the resume", &mut seen, &mut cold, |s| {
        if let Some(r) = s.refusals.iter().find(|r| r.0 == pushed + 1) {
            panic!("refused after the resume: {r:?}; transitions {:?}", s.transitions);
        }
        drill.arrivals.load(Ordering::SeqCst) == HOLD_AT + 1
    });
    assert_eq!(drill.arrivals_tripped.load(Ordering::SeqCst), 0);

    flags.request_stop();
    wait_for("the engine to drain", &mut seen, &mut cold, |_| threads.is_finished());
    threads.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
