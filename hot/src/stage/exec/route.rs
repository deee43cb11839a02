//! Smart order routing: which venue takes an order that is not pinned.
//!
//! The candidates are the venues that list the instrument (the [`InstrumentIndex`]'s venue
//! symbols) and have a gateway. A candidate is **eligible** when its feed is live and its
//! gateway is up ([`Gateway::is_up`](super::Gateway::is_up)), and **admitted** when it is also
//! not demoted. Eligible venues are ranked by an integer cost key, lowest first:
//!
//! * the expected price of taking the order's quantity now: what the venue's displayed touch
//!   shows fills at the touch, the rest at the touch worsened by `exec.depth_penalty_bps` (the
//!   book beyond the touch is not seen); a venue that has shown only trades is ranked at its
//!   last trade with no size limit; one that has shown nothing ranks last;
//! * plus its taker fee in basis points (the router prices immediate execution);
//! * plus `exec.latency_penalty_bps_per_ms` for every millisecond of its ack-latency EWMA;
//!
//! all as `price × (1 ± bps)` in exact integers, so venues quoting different prices compare
//! directly. Ties go to the better fill rate, then the lower ack latency, then the venue order.
//! The best admitted venue takes the order. Reasons ([`RouteReason`]): `only_venue` when one
//! venue is admitted, `best_price` when several are, `failover` when the best eligible venue is
//! demoted and another took the order, `last_resort` when every eligible venue is demoted (the
//! best of them takes it: a demoted venue is only avoided while another can trade). With no
//! eligible venue the order is rejected with [`RejectReason::NoRoute`](crate::records::RejectReason::NoRoute).
//!
//! # Venue health
//!
//! Every order placed at a venue (each reprice is an order of its own) counts once in the
//! venue's window of its last `exec.health_window` orders: filled (any fill), rejected (a venue
//! reject other than post-only-would-take, or an outcome lost as `Unknown`), or neither. The
//! reject ratio is rejects ÷ `health_window`: orders not yet seen count as clean, so the
//! smallest sample that can demote a venue is the window itself, and a venue's first orders
//! cannot demote it on one reject. Above `exec.reject_ratio_pct` the venue is demoted until
//! `exec.probation_ms` of logical time has passed; then it is admitted again with an empty
//! window. The fill rate (fills ÷ orders seen, all of them when none is seen yet) breaks ties.
//! Ack latency is an EWMA (weight 1/8) of submit-to-ack in logical time per venue.

use crate::records::{Factor, Side};

#[cfg(doc)]
use crate::ids::InstrumentIndex;
#[cfg(doc)]
use crate::records::RouteReason;

use super::book::Top;

/// Order outcomes each venue's health window has room for: the largest `exec.health_window`
/// config accepts (a larger starting value enlarges it), so a reload can change the window
/// live without allocating.
pub const HEALTH_WINDOW_CAP: u32 = 100_000;

/// What one order placed at a venue came to, for the health window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Outcome {
    /// Ended without a fill, and not by a venue fault (cancelled, expired, would have taken).
    Unfilled = 0,
    /// At least one fill.
    Filled = 1,
    /// Refused by the venue, or its outcome was lost.
    Rejected = 2,
}

/// One venue's health: a window of outcomes, demotion and ack latency.
#[derive(Debug)]
pub(crate) struct Health {
    /// Ring of the last `window` outcomes; allocated once.
    outcomes: Vec<Outcome>,
    next: usize,
    seen: usize,
    rejects: u32,
    fills: u32,
    /// Logical time the venue is admitted again; `None` while admitted.
    pub demoted_until: Option<u64>,
    /// Submit-to-ack EWMA in ns; zero before the first ack.
    pub ack_ewma_ns: u64,
    acks: u64,
}

impl Health {
    /// A clean window of `window` orders, with room for [`HEALTH_WINDOW_CAP`] (or `window`,
    /// if larger) so that [`resize`](Self::resize) never allocates.
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        let mut outcomes = Vec::with_capacity(window.max(HEALTH_WINDOW_CAP as usize));
        outcomes.resize(window, Outcome::Unfilled);
        Self {
            outcomes,
            next: 0,
            seen: 0,
            rejects: 0,
            fills: 0,
            demoted_until: None,
            ack_ewma_ns: 0,
            acks: 0,
        }
    }

    /// Records one order's outcome. Returns `true` if the reject ratio is now above `limit`
    /// (a fraction) while the venue is admitted: the caller demotes it.
    pub fn record(&mut self, outcome: Outcome, limit: Factor) -> bool {
        let w = self.outcomes.len();
        if self.seen == w {
            match self.outcomes[self.next] {
                Outcome::Rejected => self.rejects -= 1,
                Outcome::Filled => self.fills -= 1,
                Outcome::Unfilled => {}
            }
        } else {
            self.seen += 1;
        }
        self.outcomes[self.next] = outcome;
        self.next = (self.next + 1) % w;
        match outcome {
            Outcome::Rejected => self.rejects += 1,
            Outcome::Filled => self.fills += 1,
            Outcome::Unfilled => {}
        }
        self.demoted_until.is_none() && self.ratio_high(limit)
    }

    /// rejects ÷ window > limit, exactly.
    fn ratio_high(&self, limit: Factor) -> bool {
        let w = self.outcomes.len() as i128;
        (i128::from(self.rejects) << 32) > i128::from(limit.to_bits()) * w
    }

    /// Rejects in the window.
    pub fn rejects(&self) -> u32 {
        self.rejects
    }

    /// The window's length.
    pub fn window(&self) -> u32 {
        self.outcomes.len() as u32
    }

    /// Fill rate in thousandths (1000 before any order is seen).
    pub fn fill_rate_milli(&self) -> u64 {
        if self.seen == 0 {
            1000
        } else {
            u64::from(self.fills) * 1000 / self.seen as u64
        }
    }

    /// A new window length (a config reload): the window starts over empty, within the room
    /// allocated at start (a longer window than that is cut to it); a demotion in force and
    /// the ack-latency average stay. Allocates nothing.
    pub fn resize(&mut self, window: usize) {
        let window = window.clamp(1, self.outcomes.capacity());
        if window == self.outcomes.len() {
            return;
        }
        self.outcomes.clear();
        self.outcomes.resize(window, Outcome::Unfilled);
        self.next = 0;
        self.seen = 0;
        self.rejects = 0;
        self.fills = 0;
    }

    /// Starts over with an empty window (re-admission after probation).
    pub fn clear(&mut self) {
        self.next = 0;
        self.seen = 0;
        self.rejects = 0;
        self.fills = 0;
        self.demoted_until = None;
    }

    /// Folds one submit-to-ack latency into the EWMA (the first sample sets it).
    pub fn ack(&mut self, latency_ns: u64) {
        self.ack_ewma_ns = if self.acks == 0 {
            latency_ns
        } else {
            let e = i128::from(self.ack_ewma_ns);
            (e + (i128::from(latency_ns) - e) / 8).max(0) as u64
        };
        self.acks += 1;
    }
}

/// One in 10^7: a whole price is 10^7 thousandths of a basis point.
const UNIT_MILLI_BPS: i128 = 10_000_000;

/// The cost key of taking `qty` on `side` at a venue showing `top` (lower is better), with the
/// venue's taker fee and latency penalty in thousandths of a basis point and the depth penalty
/// on the part beyond the displayed size. `None` if the venue has shown no price.
#[inline]
pub(crate) fn cost_key(
    side: Side,
    qty: crate::num::Qty,
    top: &Top,
    taker_fee_milli: i64,
    depth_penalty_milli: i64,
    latency_penalty_milli: i64,
) -> Option<i128> {
    let (price, size) = top.taker(side)?;
    let q = i128::from(qty.raw()).max(1);
    let beyond = match size {
        Some(s) => (q - i128::from(s.raw())).max(0),
        None => 0,
    };
    // The share of the order beyond the touch, as a penalty in milli-bps of the price.
    let depth = i128::from(depth_penalty_milli) * beyond / q;
    let bps = i128::from(taker_fee_milli) + depth + i128::from(latency_penalty_milli);
    let p = i128::from(price.raw());
    Some(match side {
        // A buy pays price × (1 + bps): minimise it.
        Side::Buy => p * (UNIT_MILLI_BPS + bps),
        // A sell receives price × (1 − bps): maximise it, i.e. minimise its negation.
        Side::Sell => -(p * (UNIT_MILLI_BPS - bps)),
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_window_demotes_above_the_ratio_and_forgets_old_orders() {
        let limit = Factor::from_num(0.02);
        let mut h = Health::new(50);
        // One reject in 50 is 2 %: not above.
        assert!(!h.record(Outcome::Rejected, limit));
        for _ in 0..48 {
            assert!(!h.record(Outcome::Filled, limit));
        }
        // A second reject: 4 % > 2 %.
        assert!(h.record(Outcome::Rejected, limit));
        assert_eq!((h.rejects(), h.window()), (2, 50));
        assert_eq!(h.fill_rate_milli(), 48 * 1000 / 50);
        // 50 more fills push both rejects out of the window.
        for _ in 0..50 {
            h.record(Outcome::Filled, limit);
        }
        assert_eq!(h.rejects(), 0);
        assert_eq!(h.fill_rate_milli(), 1000);
    }

    #[test]
    fn cost_prefers_the_cheaper_venue_after_fees_and_depth() {
        let p = |s: &str| s.parse().unwrap();
        let q = |s: &str| s.parse().unwrap();
        let a = Top {
            ask: p("100.00"),
            ask_qty: q("1"),
            ..Top::default()
        };
        let b = Top {
            ask: p("100.01"),
            ask_qty: q("1"),
            ..Top::default()
        };
        // 1 bp is 0.01 at 100: b at 100.01 with 1 bp less fee ties a; with 2 bps less it wins.
        let ka = cost_key(Side::Buy, q("1"), &a, 7_500, 0, 0).unwrap();
        let kb = cost_key(Side::Buy, q("1"), &b, 5_500, 0, 0).unwrap();
        assert!(kb < ka);
        // Twice the displayed size on a: half of it pays a 10 bp depth penalty (5 bps overall).
        let ka2 = cost_key(Side::Buy, q("2"), &a, 7_500, 10_000, 0).unwrap();
        assert_eq!(ka2, 100_00000000i128 * (10_000_000 + 7_500 + 5_000));
        assert_eq!(cost_key(Side::Buy, q("1"), &Top::default(), 0, 0, 0), None);
    }
}
