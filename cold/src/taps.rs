//! Draining the hot → cold taps: the cold side's single view of what the hot path did.
//!
//! [`TapDrain`] empties every tap ring, keeps the Portfolio's exact books (positions, realized
//! and unrealized PnL, fees) from the fills, merges the latency histograms Alpha, Risk and
//! Execution hand over (and hands each one back, emptied), attributes PnL to the signal families
//! ([`Attribution`], the MetaGovernor's reward), and passes every record to a sink: the `--emit`
//! printer in replay, the Redis publisher and logs in `maxx run`.
//! It is plain synchronous code so that replay can call it between two lockstep steps and
//! `maxx run` can call it from a tokio task.
//!
//! [`TapObserver`]s see every record too, before the sink, and are told when a pass ends: the
//! order desk ([`crate::desk`]) follows its orders that way, batching its updates per pass.

use hdrhistogram::Histogram;

use crate::attribution::Attribution;
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::num::{Money, Price};
use maxx_hot::pnl::Book;
use maxx_hot::records::{ExecReport, Order, Signal, Tick, TickBody, Transition};
use maxx_hot::stage::exec::{ExecEvent, ExecNote, latency_histogram};
use maxx_hot::stage::risk::Refusal;
use maxx_hot::wiring::{BadFrame, BoxedHistogram, ColdEnds, LatencyStage};
use rtrb::{Consumer, Producer};

/// One record taken off a tap.
#[derive(Clone, Copy, Debug)]
pub enum Record {
    /// A tick.
    Tick(Tick),
    /// A signal.
    Signal(Signal),
    /// An order as sent.
    Order(Order),
    /// A venue report (ack, fill, reject).
    Report(ExecReport),
    /// A refused intent.
    Refusal(Refusal),
    /// A sample of a bad frame.
    Bad(BadFrame),
    /// A trading-state change Risk made.
    Transition(Transition),
    /// Execution's note: a venue demoted or re-admitted, a passive order repriced or timed out.
    Note(ExecNote),
}

/// Something that sees every record a [`TapDrain`] takes, in tap order, before the sink.
///
/// It runs on the drain's thread, inside the drain loop, so it must not block: copy what it
/// needs in [`record`](Self::record) and publish it once per pass in
/// [`pass_done`](Self::pass_done).
pub trait TapObserver: Send + std::fmt::Debug {
    /// One record, as the sink will see it.
    fn record(&mut self, record: &Record);

    /// The drain has emptied every tap once (called after every [`TapDrain::drain`], also one
    /// that took nothing).
    fn pass_done(&mut self) {}
}

/// Aggregates built from the taps.
#[derive(Debug)]
pub struct TapDrain {
    observers: Vec<Box<dyn TapObserver>>,
    books: Vec<Book>,
    marks: Vec<Price>,
    attribution: Attribution,
    total_latency: Histogram<u64>,
    recent_latency: Histogram<u64>,
    /// Tick → intent (Alpha) and tick → approval (Risk) over the whole run.
    alpha_latency: Histogram<u64>,
    risk_latency: Histogram<u64>,
    /// Records taken off the order/fill tap (never dropped, so this is exact).
    pub exec_records: u64,
    /// Orders seen.
    pub orders: u64,
    /// Fills seen.
    pub fills: u64,
    /// Venue rejects seen.
    pub rejects: u64,
    /// Cancels seen.
    pub cancels: u64,
    /// Signals seen on the tap (may be fewer than produced if the tap overflowed).
    pub signals: u64,
    /// Ticks seen on the tap.
    pub ticks: u64,
}

impl TapDrain {
    /// A drain for the instruments of `index`.
    pub fn new(index: &InstrumentIndex) -> Self {
        Self {
            observers: Vec::new(),
            books: vec![Book::default(); index.len()],
            marks: vec![Price::ZERO; index.len()],
            attribution: Attribution::new(index.len()),
            total_latency: latency_histogram(),
            recent_latency: latency_histogram(),
            alpha_latency: latency_histogram(),
            risk_latency: latency_histogram(),
            exec_records: 0,
            orders: 0,
            fills: 0,
            rejects: 0,
            cancels: 0,
            signals: 0,
            ticks: 0,
        }
    }

    /// Adds an observer: from now on it sees every record before the sink.
    pub fn observe(&mut self, observer: Box<dyn TapObserver>) {
        self.observers.push(observer);
    }

    /// Empties every tap once, passing each record to the observers and then to `sink`, in tap
    /// order. Returns the number of records taken.
    pub fn drain(&mut self, ends: &mut ColdEnds, sink: &mut impl FnMut(Record)) -> usize {
        let mut observers = std::mem::take(&mut self.observers);
        let n = if observers.is_empty() {
            self.drain_into(ends, sink)
        } else {
            let n = self.drain_into(ends, &mut |r: Record| {
                for o in &mut observers {
                    o.record(&r);
                }
                sink(r)
            });
            for o in &mut observers {
                o.pass_done();
            }
            n
        };
        self.observers = observers;
        n
    }

    fn drain_into(&mut self, ends: &mut ColdEnds, sink: &mut impl FnMut(Record)) -> usize {
        let mut n = 0;
        for (_, tap) in &mut ends.ticks {
            while let Ok(tick) = tap.pop() {
                if let TickBody::Trade { price, .. } = tick.body
                    && let Some(m) = self.marks.get_mut(tick.instrument.index())
                {
                    *m = price;
                    self.attribution.on_mark(tick.instrument, price);
                }
                self.ticks += 1;
                n += 1;
                sink(Record::Tick(tick));
            }
        }
        while let Ok(signal) = ends.signals.pop() {
            self.signals += 1;
            n += 1;
            sink(Record::Signal(signal));
        }
        while let Ok(event) = ends.exec.pop() {
            self.exec_records += 1;
            n += 1;
            match event {
                ExecEvent::Order(order) => {
                    self.orders += 1;
                    self.attribution.on_order(&order);
                    sink(Record::Order(order));
                }
                ExecEvent::Report(report) => {
                    self.attribution.on_report(&report);
                    match report {
                        ExecReport::Fill(fill) => {
                            self.fills += 1;
                            if let Some(book) = self.books.get_mut(fill.instrument.index()) {
                                // An overflowing fill leaves the book as it was; it cannot
                                // happen within risk limits.
                                let _ = book.apply(&fill);
                            }
                        }
                        ExecReport::Reject { .. } => self.rejects += 1,
                        ExecReport::Cancelled { .. } => self.cancels += 1,
                        ExecReport::Ack { .. }
                        | ExecReport::Routed { .. }
                        | ExecReport::Unknown { .. }
                        | ExecReport::CancelRejected { .. } => {}
                    }
                    sink(Record::Report(report));
                }
            }
        }
        while let Ok(refusal) = ends.refusals.pop() {
            n += 1;
            sink(Record::Refusal(refusal));
        }
        while let Ok(t) = ends.risk_events.pop() {
            n += 1;
            sink(Record::Transition(t));
        }
        while let Ok(note) = ends.exec_notes.pop() {
            n += 1;
            sink(Record::Note(note));
        }
        for (_, bad) in &mut ends.bad {
            while let Ok(sample) = bad.pop() {
                n += 1;
                sink(Record::Bad(sample));
            }
        }
        merge(
            &mut ends.hist_in,
            &mut ends.hist_back,
            &mut [&mut self.total_latency, &mut self.recent_latency],
        );
        merge(
            &mut ends.alpha_hist.hist_in,
            &mut ends.alpha_hist.hist_back,
            &mut [&mut self.alpha_latency],
        );
        merge(
            &mut ends.risk_hist.hist_in,
            &mut ends.risk_hist.hist_back,
            &mut [&mut self.risk_latency],
        );
        n
    }

    /// Per-instrument books, by instrument id.
    pub fn books(&self) -> &[Book] {
        &self.books
    }

    /// The PnL of each signal family (the MetaGovernor's reward).
    pub fn attribution(&self) -> &Attribution {
        &self.attribution
    }

    /// Last trade price per instrument (zero if none yet).
    pub fn marks(&self) -> &[Price] {
        &self.marks
    }

    /// Total realized PnL before fees.
    pub fn realized(&self) -> Money {
        sum(self.books.iter().map(|b| b.realized))
    }

    /// Total fees.
    pub fn fees(&self) -> Money {
        sum(self.books.iter().map(|b| b.fees))
    }

    /// Total unrealized PnL at the last trade prices.
    pub fn unrealized(&self) -> Money {
        sum(self.books.iter().zip(&self.marks).map(|(b, m)| b.unrealized(*m)))
    }

    /// Tick-to-order latency over the whole run.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.total_latency
    }

    /// Latency from the tick's receive stamp to `stage`'s output over the whole run: Alpha's
    /// intents, Risk's approvals, Execution's orders sent (the same histogram as
    /// [`latency`](Self::latency)).
    pub fn stage_latency(&self, stage: LatencyStage) -> &Histogram<u64> {
        match stage {
            LatencyStage::Alpha => &self.alpha_latency,
            LatencyStage::Risk => &self.risk_latency,
            LatencyStage::Exec => &self.total_latency,
        }
    }

    /// Latency since the last call to this method, then cleared (for status lines).
    pub fn take_recent_latency(&mut self) -> Histogram<u64> {
        let h = self.recent_latency.clone();
        self.recent_latency.reset();
        h
    }
}

/// Adds every filled histogram a stage handed over into each of `into`, and hands it back
/// emptied.
fn merge(full: &mut Consumer<BoxedHistogram>, back: &mut Producer<BoxedHistogram>, into: &mut [&mut Histogram<u64>]) {
    while let Ok(mut h) = full.pop() {
        for total in into.iter_mut() {
            // Every latency histogram has the same fixed bounds, so adding cannot fail.
            let _ = total.add(&*h);
        }
        h.reset();
        // The ring has room for every histogram in circulation.
        let _ = back.push(h);
    }
}

fn sum(values: impl Iterator<Item = Money>) -> Money {
    values.fold(Money::ZERO, |acc, v| acc.checked_add(v).unwrap_or(acc))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use maxx_hot::ids::{InstrumentId, Symbol, Venue, VenueSymbol};
    use maxx_hot::records::{OrderId, TickBody};
    use maxx_hot::wiring::wire;

    use super::*;

    /// Writes what it sees into a shared log.
    #[derive(Debug)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl TapObserver for Log {
        fn record(&mut self, record: &Record) {
            self.0.lock().unwrap().push(kind(record).to_string());
        }

        fn pass_done(&mut self) {
            self.0.lock().unwrap().push("pass".to_string());
        }
    }

    fn kind(r: &Record) -> &'static str {
        match r {
            Record::Tick(_) => "tick",
            Record::Order(_) => "order",
            Record::Report(_) => "report",
            Record::Note(_) => "note",
            _ => "other",
        }
    }

    #[test]
    fn observers_see_every_record_before_the_sink_and_every_pass() {
        let mut names = [None; Venue::COUNT];
        names[Venue::Binance.index()] = Some(VenueSymbol::new("BTCUSDT").unwrap());
        let index = InstrumentIndex::new([(Symbol::new("BTCUSDT").unwrap(), names)]).unwrap();
        let mut w = wire(&[Venue::Binance]);
        let mut drain = TapDrain::new(&index);
        let log = Arc::new(Mutex::new(Vec::new()));
        drain.observe(Box::new(Log(Arc::clone(&log))));

        let tick = Tick {
            instrument: InstrumentId(0),
            body: TickBody::Trade {
                price: "100".parse().unwrap(),
                qty: "1".parse().unwrap(),
                aggressor: maxx_hot::records::Side::Buy,
            },
            ..Tick::EMPTY
        };
        w.feeds[0].tap.push(tick).unwrap();
        let report = ExecReport::Ack {
            order_id: OrderId(1),
            venue_order_id: 9,
        };
        w.exec.tap.push(ExecEvent::Report(report)).unwrap();
        let note = ExecNote::Readmitted {
            venue: Venue::Binance,
            ts_ns: 5,
        };
        w.exec.notes.push(note).unwrap();
        let mut sunk = Vec::new();
        let n = drain.drain(&mut w.cold, &mut |r| {
            // The observer has already seen this record.
            assert_eq!(log.lock().unwrap().last().map(String::as_str), Some(kind(&r)));
            sunk.push(kind(&r));
        });
        assert_eq!((n, sunk.as_slice()), (3, ["tick", "report", "note"].as_slice()));
        assert_eq!(drain.drain(&mut w.cold, &mut |_| {}), 0);
        assert_eq!(*log.lock().unwrap(), ["tick", "report", "note", "pass", "pass"]);
        // The drain's own aggregates are unchanged by observing.
        assert_eq!((drain.ticks, drain.exec_records), (1, 1));
        assert_eq!(drain.marks()[0].to_string(), "100");
    }
}
