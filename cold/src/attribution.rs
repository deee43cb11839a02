//! Per-family PnL attribution: which signal family earned (or lost) what.
//!
//! The MetaGovernor rewards each Alpha family by the PnL of the orders it caused. Every order
//! carries its [`Mix`]: each family's contribution to the signal score behind it. Attribution
//! keeps, per instrument, one *virtual* position and cost basis per bucket (the four families
//! plus an [`UNATTRIBUTED`] bucket) and splits every fill across them.
//!
//! # Rules
//!
//! - **Shares.** An Alpha order's shares are its mix normalised to sum 1: `mix_k / Σ mix`. A
//!   family that opposed the signal gets a negative share (it is short what the order buys).
//!   Manual and Risk orders, an all-zero mix, a mix that sums to zero, and a mix so nearly
//!   cancelled that some share would exceed [`MAX_SHARE`] in magnitude go wholly to the
//!   unattributed bucket; the last rule keeps one near-zero score from creating huge offsetting
//!   virtual positions. A fill whose order was never seen (e.g. after a restart) is unattributed.
//! - **Reducing part.** The part of a fill that reduces the instrument's total position is split
//!   across buckets in proportion to each bucket's current virtual position, so every bucket
//!   shrinks by the same fraction and all reach zero together when the position closes. A
//!   bucket whose virtual position has the opposite sign to the total shrinks too (its part has
//!   the opposite sign).
//! - **Opening part.** What is left after the reduction (opening, increasing or flipping) is
//!   split by the order's shares.
//! - **Cost and realized PnL.** Each bucket keeps an average-cost basis like [`Book`]. A bucket
//!   closing `c` of its position `p` removes `cost × c / p` (floored); the few 10⁻¹⁶ left over
//!   against the instrument book's own removal go to the bucket with the largest remaining
//!   position, so the bucket costs always add up to the book's cost basis. The fill's realized
//!   PnL is exactly what `Book` computes for the whole instrument (truncated to 10⁻⁸), and it is
//!   apportioned by each bucket's exact share of it (see below).
//! - **Fees** are split by the quantity each bucket traded in the fill (reducing plus opening
//!   part); a zero-quantity fill's fee follows the order's shares.
//! - **Unrealized PnL** at the instrument's last mark is apportioned the same way from each
//!   bucket's exact `mark × position − cost`. An instrument with no mark yet shows zero
//!   unrealized PnL (rather than `Book`'s `−cost` at a zero mark).
//!
//! # Exact splits
//!
//! Every split is in whole units (10⁻⁸ of quantity or money): each bucket gets its exact
//! proportion rounded down, and the units still missing from the total go one each to the
//! buckets with the largest fractional remainders, ties to the lowest index (the
//! largest-remainder method). This is deterministic, puts every part within one unit of its
//! exact proportion, and never closes more of a bucket than it holds. Hence, per instrument:
//! the bucket positions sum to the real position, and the buckets' realized PnL, fees and
//! unrealized PnL sum **exactly** to one [`Book`] fed the same fills (`cold/tests/attribution.rs`
//! proves it with a property test).
//!
//! Orders are remembered by id from [`Attribution::on_order`] until their last fill or their
//! reject, so memory is bounded by the number of open orders.
//!
//! [`Book`]: maxx_hot::pnl::Book

use std::collections::HashMap;

use maxx_hot::ids::InstrumentId;
use maxx_hot::num::{Money, ONE, Price, SignedQty};
use maxx_hot::records::{ExecReport, FAMILIES, Fill, Mix, Order, OrderId, Origin, Side};
use maxx_hot::stage::alpha::FamilyKind;

/// Number of attribution buckets: one per family plus [`UNATTRIBUTED`].
pub const BUCKETS: usize = FAMILIES + 1;

/// Index of the bucket for manual and Risk orders, unknown orders and unusable mixes.
pub const UNATTRIBUTED: usize = FAMILIES;

/// Largest magnitude a family's share may have; a mix that would need more is unattributed.
pub const MAX_SHARE: i64 = 16;

/// The bucket's name: the family's `alpha.weights` key, or `unattributed`.
pub fn bucket_name(bucket: usize) -> &'static str {
    FamilyKind::ALL.get(bucket).map_or("unattributed", |f| f.name())
}

/// One bucket's attributed PnL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyPnl {
    /// Realized PnL before fees.
    pub realized: Money,
    /// Unrealized PnL at the last marks.
    pub unrealized: Money,
    /// Fees paid (a rebate lowers it).
    pub fees: Money,
}

impl FamilyPnl {
    /// `realized + unrealized − fees`, saturating at the bounds of [`Money`].
    pub fn net(&self) -> Money {
        let net = i128::from(self.realized.raw()) + i128::from(self.unrealized.raw()) - i128::from(self.fees.raw());
        money(net)
    }
}

/// Exact bucket weights of an order (sum positive): the shares' numerators over their sum.
type Shares = [i128; BUCKETS];

const UNATTRIBUTED_SHARES: Shares = {
    let mut s = [0; BUCKETS];
    s[UNATTRIBUTED] = 1;
    s
};

/// One instrument's virtual books, one per bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    /// Virtual positions in 10⁻⁸ base units; they sum to the real position.
    pos: [i128; BUCKETS],
    /// Cost bases in 10⁻¹⁶ quote units (price raw × qty raw); they sum to the book's.
    cost: [i128; BUCKETS],
    /// Realized PnL in 10⁻⁸ quote units.
    realized: [i128; BUCKETS],
    /// Fees in 10⁻⁸ quote units.
    fees: [i128; BUCKETS],
    /// Last mark, if any.
    mark: Option<Price>,
}

/// Per-family attribution of realized and unrealized PnL and fees (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Attribution {
    slots: Vec<Slot>,
    orders: HashMap<OrderId, Shares>,
    overflows: u64,
}

impl Attribution {
    /// An attribution for `instruments` instruments (more are added as their ids appear).
    pub fn new(instruments: usize) -> Self {
        Self {
            slots: vec![Slot::default(); instruments],
            orders: HashMap::new(),
            overflows: 0,
        }
    }

    /// Remembers an order's shares until its last fill or reject.
    pub fn on_order(&mut self, order: &Order) {
        self.orders.insert(order.id, shares(order.origin, &order.mix));
    }

    /// Splits a fill across the buckets; forgets an order after its last fill, its reject or its
    /// cancel.
    pub fn on_report(&mut self, report: &ExecReport) {
        match report {
            ExecReport::Ack { .. }
            | ExecReport::Routed { .. }
            | ExecReport::Unknown { .. }
            | ExecReport::CancelRejected { .. } => {}
            ExecReport::Reject { order_id, .. } | ExecReport::Cancelled { order_id, .. } => {
                self.orders.remove(order_id);
            }
            ExecReport::Fill(fill) => {
                let shares = self.orders.get(&fill.order_id).copied().unwrap_or(UNATTRIBUTED_SHARES);
                if fill.last {
                    self.orders.remove(&fill.order_id);
                }
                let slot = self.slot_mut(fill.instrument);
                match apply(slot, &shares, fill) {
                    Some(next) => *slot = next,
                    // Beyond the range where `Book` itself can compute; the fill is left out.
                    None => self.overflows += 1,
                }
            }
        }
    }

    /// Sets the price unrealized PnL is marked at (the last trade).
    pub fn on_mark(&mut self, instrument: InstrumentId, price: Price) {
        self.slot_mut(instrument).mark = Some(price);
    }

    /// Attributed PnL per bucket over all instruments: the families in `FamilyKind` order,
    /// then [`UNATTRIBUTED`].
    pub fn pnl(&self) -> [FamilyPnl; BUCKETS] {
        let mut realized = [0i128; BUCKETS];
        let mut unrealized = [0i128; BUCKETS];
        let mut fees = [0i128; BUCKETS];
        for slot in &self.slots {
            let u = slot_unrealized(slot);
            for k in 0..BUCKETS {
                realized[k] = realized[k].saturating_add(slot.realized[k]);
                unrealized[k] = unrealized[k].saturating_add(u[k]);
                fees[k] = fees[k].saturating_add(slot.fees[k]);
            }
        }
        to_pnl(&realized, &unrealized, &fees)
    }

    /// Attributed PnL per bucket of one instrument (zeros for an unknown one).
    pub fn instrument_pnl(&self, instrument: InstrumentId) -> [FamilyPnl; BUCKETS] {
        match self.slots.get(instrument.index()) {
            Some(slot) => to_pnl(&slot.realized, &slot_unrealized(slot), &slot.fees),
            None => [FamilyPnl::default(); BUCKETS],
        }
    }

    /// Virtual position per bucket of one instrument; they sum to the real position.
    pub fn positions(&self, instrument: InstrumentId) -> [SignedQty; BUCKETS] {
        let pos = self.slots.get(instrument.index()).map_or([0; BUCKETS], |s| s.pos);
        pos.map(|p| SignedQty::from_raw(clamp_i64(p)).unwrap_or(SignedQty::ZERO))
    }

    /// Orders remembered (sent and neither fully filled nor rejected).
    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }

    /// Fills left out because their arithmetic overflowed (quantities or prices far beyond any
    /// risk limit); always zero in practice.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    fn slot_mut(&mut self, instrument: InstrumentId) -> &mut Slot {
        let i = instrument.index();
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::default());
        }
        &mut self.slots[i]
    }
}

/// An order's bucket weights: its mix signed so that the sum is positive, or unattributed.
fn shares(origin: Origin, mix: &Mix) -> Shares {
    if origin != Origin::Alpha {
        return UNATTRIBUTED_SHARES;
    }
    let bits = mix.map(|m| i128::from(m.to_bits()));
    let sum: i128 = bits.iter().sum();
    let magnitude: i128 = bits.iter().map(|b| b.abs()).sum();
    if sum == 0 || magnitude > i128::from(MAX_SHARE) * sum.abs() {
        return UNATTRIBUTED_SHARES;
    }
    let mut out = [0; BUCKETS];
    for (o, b) in out.iter_mut().zip(bits) {
        *o = b * sum.signum();
    }
    out
}

/// The slot after `fill`, or `None` if some intermediate overflows.
fn apply(slot: &Slot, shares: &Shares, fill: &Fill) -> Option<Slot> {
    let mut s = *slot;
    let qty = i128::from(fill.qty.raw());
    let dir: i128 = match fill.side {
        Side::Buy => 1,
        Side::Sell => -1,
    };
    let price = i128::from(fill.price.raw());
    let total: i128 = s.pos.iter().sum();
    // What each bucket traded in this fill, in the fill's direction of quantity.
    let mut traded = [0i128; BUCKETS];
    let mut closed = 0;
    if total != 0 && total.signum() != dir && qty > 0 {
        let sign = total.signum();
        closed = qty.min(total.abs());
        // Weights in "closing" orientation: their sum is |total| > 0.
        let w = s.pos.map(|p| p * sign);
        let c = split(closed, &w)?;
        let mut removed = [0i128; BUCKETS];
        let mut after = s.pos;
        for k in 0..BUCKETS {
            if w[k] != 0 {
                removed[k] = mul_div_floor(s.cost[k], c[k], w[k])?.0;
            } else {
                // A flat bucket can still carry the rounding residue of an earlier close: it is
                // realized now, so a full close leaves no cost behind.
                removed[k] = s.cost[k];
            }
            after[k] -= c[k] * sign;
        }
        // The instrument book removes trunc(cost × closed / |total|); match it exactly.
        let cost: i128 = s.cost.iter().try_fold(0i128, |a, c| a.checked_add(*c))?;
        let (q, r) = mul_div_floor(cost, closed, total.abs())?;
        let book_removed = if r != 0 && q < 0 { q + 1 } else { q };
        let gap = book_removed - removed.iter().sum::<i128>();
        // A full close removes every bucket's whole cost, so a gap means something is open.
        debug_assert!(gap == 0 || after.iter().any(|p| *p != 0));
        removed[largest_abs(&after)] += gap;
        // Exact realized PnL per bucket in 10⁻¹⁶, and the book's truncated total in 10⁻⁸.
        let mut exact = [0i128; BUCKETS];
        for k in 0..BUCKETS {
            exact[k] = price.checked_mul(c[k] * sign)?.checked_sub(removed[k])?;
        }
        let whole: i128 = exact.iter().try_fold(0i128, |a, e| a.checked_add(*e))?;
        let realized = apportion(whole / i128::from(ONE), &exact, i128::from(ONE));
        for k in 0..BUCKETS {
            s.realized[k] = s.realized[k].checked_add(realized[k])?;
            s.cost[k] -= removed[k];
            traded[k] = c[k];
        }
        s.pos = after;
    }
    let opened = qty - closed;
    if opened > 0 {
        let o = split(opened, shares)?;
        for k in 0..BUCKETS {
            s.pos[k] = s.pos[k].checked_add(o[k] * dir)?;
            s.cost[k] = s.cost[k].checked_add(price.checked_mul(o[k] * dir)?)?;
            traded[k] += o[k];
        }
    }
    let fee = i128::from(fill.fee.raw());
    let fees = if qty > 0 {
        split(fee, &traded)?
    } else {
        split(fee, shares)?
    };
    for (total, part) in s.fees.iter_mut().zip(fees) {
        *total = total.checked_add(part)?;
    }
    Some(s)
}

/// Unrealized PnL per bucket at the slot's mark, apportioned from the exact values.
fn slot_unrealized(slot: &Slot) -> [i128; BUCKETS] {
    let Some(mark) = slot.mark else {
        return [0; BUCKETS];
    };
    let m = i128::from(mark.raw());
    let mut exact = [0i128; BUCKETS];
    for ((e, pos), cost) in exact.iter_mut().zip(&slot.pos).zip(&slot.cost) {
        match m.checked_mul(*pos).and_then(|v| v.checked_sub(*cost)) {
            Some(v) => *e = v,
            None => return [0; BUCKETS],
        }
    }
    let Some(whole) = exact.iter().try_fold(0i128, |a, e| a.checked_add(*e)) else {
        return [0; BUCKETS];
    };
    apportion(whole / i128::from(ONE), &exact, i128::from(ONE))
}

/// Splits `total` in proportion to `weights` (any signs, non-zero sum) into whole units that
/// sum to `total` exactly: floors, then the largest remainders. `None` if the sum is zero or
/// the arithmetic overflows.
fn split(total: i128, weights: &[i128; BUCKETS]) -> Option<[i128; BUCKETS]> {
    let mut sum: i128 = weights.iter().try_fold(0i128, |a, w| a.checked_add(*w))?;
    if sum == 0 {
        return None;
    }
    let mut w = *weights;
    if sum < 0 {
        sum = -sum;
        w = w.map(|x| -x);
    }
    let mut floors = [0i128; BUCKETS];
    let mut rems = [0i128; BUCKETS];
    for k in 0..BUCKETS {
        (floors[k], rems[k]) = mul_div_floor(w[k], total, sum)?;
    }
    Some(distribute(total, floors, &rems))
}

/// Expresses exact values (in units of 1/`unit`) as whole units summing to `target`.
fn apportion(target: i128, exact: &[i128; BUCKETS], unit: i128) -> [i128; BUCKETS] {
    let floors = exact.map(|e| e.div_euclid(unit));
    let rems = exact.map(|e| e.rem_euclid(unit));
    distribute(target, floors, &rems)
}

/// Adds `target − Σ floors` to `floors`, one unit each to the largest remainders first (ties to
/// the lowest index). In every use the gap is between zero and the number of non-zero
/// remainders; any other gap is still spread evenly, so the sum is always exact.
fn distribute(target: i128, mut floors: [i128; BUCKETS], rems: &[i128; BUCKETS]) -> [i128; BUCKETS] {
    let gap = target - floors.iter().sum::<i128>();
    let mut order: [usize; BUCKETS] = std::array::from_fn(|k| k);
    // Stable: equal remainders keep index order.
    order.sort_by(|a, b| rems[*b].cmp(&rems[*a]));
    let n = BUCKETS as i128;
    let (each, extra) = (gap.div_euclid(n), gap.rem_euclid(n));
    for (rank, k) in order.iter().enumerate() {
        floors[*k] += each + i128::from((rank as i128) < extra);
    }
    floors
}

/// `(q, r)` with `q = ⌊a·b/c⌋` and `a·b = q·c + r·sign(c)`, `0 ≤ r < |c|`, for `c ≠ 0`,
/// without forming `a·b`: with `a = q'·c + r'`, `a·b/c = q'·b + r'·b/c`, and `|r'| < |c|` keeps
/// every product small. `None` on overflow.
fn mul_div_floor(a: i128, b: i128, c: i128) -> Option<(i128, i128)> {
    let (b, c) = if c < 0 {
        (b.checked_neg()?, c.checked_neg()?)
    } else {
        (b, c)
    };
    let (q, r) = (a.div_euclid(c), a.rem_euclid(c));
    let rb = r.checked_mul(b)?;
    let quot = q.checked_mul(b)?.checked_add(rb.div_euclid(c))?;
    Some((quot, rb.rem_euclid(c)))
}

/// Index of the largest magnitude, ties to the lowest index.
fn largest_abs(values: &[i128; BUCKETS]) -> usize {
    let mut best = 0;
    for k in 1..BUCKETS {
        if values[k].abs() > values[best].abs() {
            best = k;
        }
    }
    best
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v > 0 { i64::MAX } else { i64::MIN })
}

fn money(v: i128) -> Money {
    Money::from_raw(clamp_i64(v)).unwrap_or(Money::ZERO)
}

fn to_pnl(realized: &[i128; BUCKETS], unrealized: &[i128; BUCKETS], fees: &[i128; BUCKETS]) -> [FamilyPnl; BUCKETS] {
    std::array::from_fn(|k| FamilyPnl {
        realized: money(realized[k]),
        unrealized: money(unrealized[k]),
        fees: money(fees[k]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact_and_largest_remainder() {
        // 10 split 1:1:1 → 4, 3, 3 (equal remainders: lowest index first).
        assert_eq!(split(10, &[1, 1, 1, 0, 0]), Some([4, 3, 3, 0, 0]));
        // Opposing weights: 2 : -1 of 5 → 10, -5.
        assert_eq!(split(5, &[2, -1, 0, 0, 0]), Some([10, -5, 0, 0, 0]));
        assert_eq!(split(7, &[0; BUCKETS]), None);
        // Negative totals (rebates) split with the same rule.
        assert_eq!(split(-10, &[1, 1, 1, 0, 0]).map(|p| p.iter().sum::<i128>()), Some(-10));
    }

    #[test]
    fn mul_div_floor_matches_wide_arithmetic() {
        for (a, b, c) in [
            (7, 3, 2),
            (-7, 3, 2),
            (7, -3, 2),
            (7, 3, -2),
            (1 << 100, 3, 7),
            (-(1 << 100), 5, 9),
        ] {
            let (q, r) = mul_div_floor(a, b, c).unwrap();
            assert_eq!(q * c + r * c.signum(), a * b, "{a} {b} {c}");
            assert!((0..c.abs()).contains(&r));
            // q is the floor: the remainder has the divisor's sign.
            let exact = a * b;
            let floor = exact / c - i128::from(exact % c != 0 && (exact < 0) != (c < 0));
            assert_eq!(q, floor);
        }
    }
}
