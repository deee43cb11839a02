//! Draining the hot → cold taps: the cold side's single view of what the hot path did.
//!
//! [`TapDrain`] empties every tap ring, keeps the Portfolio's exact books (positions, realized
//! and unrealized PnL, fees) from the fills, merges the latency histograms Execution hands
//! over (and hands each one back, emptied), attributes PnL to the signal families
//! ([`Attribution`], the MetaGovernor's reward), and passes every record to a sink: the `--emit`
//! printer in replay, the Redis publisher and logs in `maxx run`.
//! It is plain synchronous code so that replay can call it between two lockstep steps and
//! `maxx run` can call it from a tokio task.

use hdrhistogram::Histogram;

use crate::attribution::Attribution;
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::num::{Money, Price};
use maxx_hot::pnl::Book;
use maxx_hot::records::{ExecReport, Order, Signal, Tick, TickBody, Transition};
use maxx_hot::stage::exec::{ExecEvent, latency_histogram};
use maxx_hot::stage::risk::Refusal;
use maxx_hot::wiring::{BadFrame, ColdEnds};

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
}

/// Aggregates built from the taps.
#[derive(Debug)]
pub struct TapDrain {
    books: Vec<Book>,
    marks: Vec<Price>,
    attribution: Attribution,
    total_latency: Histogram<u64>,
    recent_latency: Histogram<u64>,
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
            books: vec![Book::default(); index.len()],
            marks: vec![Price::ZERO; index.len()],
            attribution: Attribution::new(index.len()),
            total_latency: latency_histogram(),
            recent_latency: latency_histogram(),
            exec_records: 0,
            orders: 0,
            fills: 0,
            rejects: 0,
            cancels: 0,
            signals: 0,
            ticks: 0,
        }
    }

    /// Empties every tap once, passing each record to `sink` in tap order.
    /// Returns the number of records taken.
    pub fn drain(&mut self, ends: &mut ColdEnds, sink: &mut impl FnMut(Record)) -> usize {
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
        for (_, bad) in &mut ends.bad {
            while let Ok(sample) = bad.pop() {
                n += 1;
                sink(Record::Bad(sample));
            }
        }
        while let Ok(mut h) = ends.hist_in.pop() {
            // Both histograms have the same fixed bounds, so adding cannot fail.
            let _ = self.total_latency.add(&*h);
            let _ = self.recent_latency.add(&*h);
            h.reset();
            // The ring has room for every histogram in circulation.
            let _ = ends.hist_back.push(h);
        }
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

    /// Latency since the last call to this method, then cleared (for status lines).
    pub fn take_recent_latency(&mut self) -> Histogram<u64> {
        let h = self.recent_latency.clone();
        self.recent_latency.reset();
        h
    }
}

fn sum(values: impl Iterator<Item = Money>) -> Money {
    values.fold(Money::ZERO, |acc, v| acc.checked_add(v).unwrap_or(acc))
}
