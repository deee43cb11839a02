//! RiskSentinel: the single gate every order passes before Execution sees it.
//!
//! Risk keeps the exact position and open quantity of every instrument from Execution's
//! reports, resolves target-sized intents into deltas against that exposure, and approves or
//! refuses each intent. A refusal is data ([`Decision::Refused`] with a [`RejectReason`]), not
//! an error; only [`Order`]s that came out of [`Risk::check`] reach Execution.
//!
//! Checks in this first version: kill switch, max order quantity, max order notional and max
//! position per symbol (position plus open orders on the same side). The RiskSentinel issue adds
//! the remaining market-access controls behind the same `check`.
//!
//! The Kelly clip (set by the governor through [`RiskCommand::KellyClip`], 1 by default and 0.25
//! after an intraday drawdown above 5 %) scales every target Alpha asks for before it is
//! resolved: the target becomes `target × clip`, rounded toward zero to a whole number of the
//! instrument's lots. Manual and Risk-originated orders are never scaled.

use crate::num::{Money, Qty, SignedQty, notional};
use crate::records::{ExecReport, Factor, Order, OrderId, OrderIntent, OrderKind, Origin, RejectReason, Side, Sizing};

/// Limits of one instrument (`symbols[*]` in config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single order.
    pub max_order_qty: Qty,
    /// Largest single order's notional in quote currency.
    pub max_order_notional: Money,
    /// Largest absolute position, counting open orders that would add to it.
    pub max_position: Qty,
    /// Quantity increment (`symbols[*].lot_size`): Kelly-clipped targets are rounded toward
    /// zero to a multiple of it; zero disables the rounding.
    pub lot_size: Qty,
}

/// A command from the cold side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskCommand {
    /// Engage the kill switch: refuse every new order.
    Kill,
    /// Lift the kill switch.
    Resume,
    /// Scale Alpha's targets by this fraction, in (0, 1]; any other value is ignored (the cold
    /// side validates it first).
    KellyClip(Factor),
}

/// What Risk decided about an intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send this order.
    Approved(Order),
    /// Do not send; why.
    Refused(Refusal),
    /// The target is already met by position and open orders: nothing to do.
    Nothing,
}

/// A refused intent and the reason, for counters and the cold side's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The intent as received.
    pub intent: OrderIntent,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Exposure of one instrument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// Filled position.
    pub position: SignedQty,
    /// Open buy quantity.
    pub open_buy: Qty,
    /// Open sell quantity.
    pub open_sell: Qty,
}

impl Exposure {
    /// Position plus open buys minus open sells: where we end up if everything open fills.
    fn net(&self) -> i128 {
        i128::from(self.position.raw()) + i128::from(self.open_buy.raw()) - i128::from(self.open_sell.raw())
    }
}

/// The Risk stage's state.
#[derive(Debug)]
pub struct Risk {
    limits: Vec<Limits>,
    exposure: Vec<Exposure>,
    kill: bool,
    kelly_clip: Factor,
    next_order_id: u64,
}

impl Risk {
    /// Builds the gate with per-instrument limits (indexed by instrument id).
    pub fn new(limits: Vec<Limits>, kill: bool) -> Self {
        let exposure = vec![Exposure::default(); limits.len()];
        Self {
            limits,
            exposure,
            kill,
            kelly_clip: Factor::ONE,
            next_order_id: 1,
        }
    }

    /// Decides about one intent.
    pub fn check(&mut self, intent: &OrderIntent) -> Decision {
        let refuse = |reason| {
            Decision::Refused(Refusal {
                intent: *intent,
                reason,
            })
        };
        let i = intent.instrument.index();
        let (Some(limits), Some(exp)) = (self.limits.get(i), self.exposure.get(i)) else {
            return refuse(RejectReason::NotListed);
        };
        let (side, qty) = match intent.sizing {
            Sizing::Delta(side, qty) => (side, qty),
            Sizing::Target(target) => {
                let target = match intent.origin {
                    Origin::Alpha => clip_target(target, self.kelly_clip, limits.lot_size),
                    Origin::Manual | Origin::Risk => i128::from(target.raw()),
                };
                let delta = target - exp.net();
                if delta == 0 {
                    return Decision::Nothing;
                }
                let Some(qty) = i64::try_from(delta.unsigned_abs()).ok().and_then(Qty::from_raw) else {
                    return refuse(RejectReason::Overflow);
                };
                (if delta > 0 { Side::Buy } else { Side::Sell }, qty)
            }
        };
        if self.kill {
            return refuse(RejectReason::KillSwitch);
        }
        if qty.is_zero() {
            return refuse(RejectReason::ZeroQty);
        }
        if qty > limits.max_order_qty {
            return refuse(RejectReason::MaxOrderQty);
        }
        let Some(price) = intent.limit.or_else(|| intent.touch.taker_price(side)) else {
            return refuse(RejectReason::NoPrice);
        };
        let Some(value) = notional(price, qty) else {
            return refuse(RejectReason::Overflow);
        };
        if value > limits.max_order_notional {
            return refuse(RejectReason::MaxOrderNotional);
        }
        // Worst case on this side: position plus every open order on the same side plus this one.
        let worst = match side {
            Side::Buy => i128::from(exp.position.raw()) + i128::from(exp.open_buy.raw()) + i128::from(qty.raw()),
            Side::Sell => i128::from(exp.position.raw()) - i128::from(exp.open_sell.raw()) - i128::from(qty.raw()),
        };
        if worst.unsigned_abs() > limits.max_position.raw() as u128 {
            return refuse(RejectReason::MaxPosition);
        }
        let exp = &mut self.exposure[i];
        let open = match side {
            Side::Buy => &mut exp.open_buy,
            Side::Sell => &mut exp.open_sell,
        };
        let Some(next_open) = open.checked_add(qty) else {
            return refuse(RejectReason::Overflow);
        };
        *open = next_open;
        let id = OrderId(self.next_order_id);
        self.next_order_id += 1;
        Decision::Approved(Order {
            id,
            instrument: intent.instrument,
            venue: intent.venue,
            side,
            qty,
            kind: intent.limit.map_or(OrderKind::Market, OrderKind::Limit),
            touch: intent.touch,
            origin: intent.origin,
            client_id: intent.client_id,
            mix: intent.mix,
            reduce_only: intent.reduce_only,
            ts_ns: intent.ts_ns,
            stamp: intent.stamp,
        })
    }

    /// Folds an Execution report into positions and open quantities.
    pub fn on_report(&mut self, report: &ExecReport) {
        match *report {
            ExecReport::Ack { .. } => {}
            ExecReport::Fill(fill) => {
                let Some(exp) = self.exposure.get_mut(fill.instrument.index()) else {
                    return;
                };
                let open = match fill.side {
                    Side::Buy => &mut exp.open_buy,
                    Side::Sell => &mut exp.open_sell,
                };
                *open = open.checked_sub(fill.qty).unwrap_or(Qty::ZERO);
                let signed = fill.qty.signed(fill.side == Side::Buy);
                exp.position = exp.position.checked_add(signed).unwrap_or(exp.position);
            }
            ExecReport::Reject {
                instrument, side, qty, ..
            }
            | ExecReport::Cancelled {
                instrument, side, qty, ..
            } => {
                let Some(exp) = self.exposure.get_mut(instrument.index()) else {
                    return;
                };
                let open = match side {
                    Side::Buy => &mut exp.open_buy,
                    Side::Sell => &mut exp.open_sell,
                };
                *open = open.checked_sub(qty).unwrap_or(Qty::ZERO);
            }
        }
    }

    /// Applies an operator command.
    pub fn on_command(&mut self, cmd: RiskCommand) {
        match cmd {
            RiskCommand::Kill => self.kill = true,
            RiskCommand::Resume => self.kill = false,
            RiskCommand::KellyClip(clip) => {
                if clip > Factor::ZERO && clip <= Factor::ONE {
                    self.kelly_clip = clip;
                }
            }
        }
    }

    /// The Kelly clip in force, in (0, 1].
    pub fn kelly_clip(&self) -> Factor {
        self.kelly_clip
    }

    /// Whether the kill switch is engaged.
    pub fn killed(&self) -> bool {
        self.kill
    }

    /// Exposure of every instrument, by id.
    pub fn exposure(&self) -> &[Exposure] {
        &self.exposure
    }

    /// The id the next approved order will get.
    pub fn next_order_id(&self) -> OrderId {
        OrderId(self.next_order_id)
    }
}

/// `target × clip` in raw units, truncated toward zero, then toward zero to a multiple of
/// `lot` (when `lot` is not zero). With `clip = 1` a target that is a whole number of lots comes
/// back unchanged.
#[inline]
fn clip_target(target: SignedQty, clip: Factor, lot: Qty) -> i128 {
    // |raw| < 2⁶³ and clip's bits ≤ 2³²: the product fits i128; `/` truncates toward zero.
    let scaled = i128::from(target.raw()) * i128::from(clip.to_bits()) / (1i128 << 32);
    let lot = i128::from(lot.raw());
    // `%` keeps the dividend's sign, so subtracting it also moves toward zero.
    if lot > 0 { scaled - scaled % lot } else { scaled }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{InstrumentId, Venue};
    use crate::num::Price;
    use crate::records::{Factor, Fill, Liquidity, Origin, Stamp, Touch};

    fn risk() -> Risk {
        Risk::new(
            vec![Limits {
                max_order_qty: "0.05".parse().unwrap(),
                max_order_notional: "5000".parse().unwrap(),
                max_position: "0.1".parse().unwrap(),
                lot_size: "0.00001".parse().unwrap(),
            }],
            false,
        )
    }

    fn intent(sizing: Sizing) -> OrderIntent {
        OrderIntent {
            instrument: InstrumentId(0),
            venue: Venue::Binance,
            sizing,
            limit: None,
            touch: Touch {
                bid: "60000".parse().unwrap(),
                ask: "60001".parse().unwrap(),
                last: Price::ZERO,
            },
            origin: Origin::Alpha,
            client_id: 0,
            score: Factor::ZERO,
            mix: [Factor::ZERO; 4],
            stop: Price::ZERO,
            reduce_only: false,
            ts_ns: 1,
            stamp: Stamp(1),
        }
    }

    fn target(q: &str) -> OrderIntent {
        intent(Sizing::Target(q.parse().unwrap()))
    }

    fn fill(order: &Order) -> ExecReport {
        ExecReport::Fill(Fill {
            order_id: order.id,
            instrument: order.instrument,
            venue: order.venue,
            side: order.side,
            price: order.touch.taker_price(order.side).unwrap(),
            qty: order.qty,
            fee: Money::ZERO,
            liquidity: Liquidity::Taker,
            last: true,
            ts_ns: 1,
        })
    }

    #[test]
    fn targets_resolve_against_position_and_open_orders() {
        let mut r = risk();
        let Decision::Approved(o1) = r.check(&target("0.02")) else {
            panic!()
        };
        assert_eq!(
            (o1.side, o1.qty.to_string(), o1.id),
            (Side::Buy, "0.02".into(), OrderId(1))
        );
        // Same target while the order is open: nothing to do.
        assert_eq!(r.check(&target("0.02")), Decision::Nothing);
        r.on_report(&fill(&o1));
        assert_eq!(r.exposure()[0].position.to_string(), "0.02");
        let Decision::Approved(o2) = r.check(&target("-0.02")) else {
            panic!()
        };
        assert_eq!((o2.side, o2.qty.to_string()), (Side::Sell, "0.04".into()));
        // A venue reject releases the open quantity.
        r.on_report(&ExecReport::Reject {
            order_id: o2.id,
            instrument: o2.instrument,
            side: o2.side,
            qty: o2.qty,
            reason: RejectReason::VenueReject,
        });
        assert_eq!(r.exposure()[0].open_sell, Qty::ZERO);
    }

    #[test]
    fn every_limit_refuses_with_its_reason() {
        let mut r = risk();
        let reason = |d: Decision| match d {
            Decision::Refused(x) => Some(x.reason),
            _ => None,
        };
        assert_eq!(reason(r.check(&target("0.06"))), Some(RejectReason::MaxOrderQty));
        // 0.05 at 60001 is 3000.05: within notional. 0.05 at a 200000 ask is not.
        let mut rich = target("0.05");
        rich.touch.ask = "200000".parse().unwrap();
        assert_eq!(reason(r.check(&rich)), Some(RejectReason::MaxOrderNotional));
        let mut no_price = target("0.01");
        no_price.touch = Touch::default();
        assert_eq!(reason(r.check(&no_price)), Some(RejectReason::NoPrice));
        for _ in 0..2 {
            assert!(matches!(
                r.check(&intent(Sizing::Delta(Side::Buy, "0.05".parse().unwrap()))),
                Decision::Approved(_)
            ));
        }
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Buy, "0.01".parse().unwrap())))),
            Some(RejectReason::MaxPosition)
        );
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Buy, Qty::ZERO)))),
            Some(RejectReason::ZeroQty)
        );
        r.on_command(RiskCommand::Kill);
        assert_eq!(
            reason(r.check(&intent(Sizing::Delta(Side::Sell, "0.01".parse().unwrap())))),
            Some(RejectReason::KillSwitch)
        );
        r.on_command(RiskCommand::Resume);
        assert!(matches!(
            r.check(&intent(Sizing::Delta(Side::Sell, "0.01".parse().unwrap()))),
            Decision::Approved(_)
        ));
        let mut unknown = target("0.01");
        unknown.instrument = InstrumentId(9);
        assert_eq!(reason(r.check(&unknown)), Some(RejectReason::NotListed));
    }

    fn approved(d: Decision) -> Order {
        match d {
            Decision::Approved(o) => o,
            other => panic!("expected an order, got {other:?}"),
        }
    }

    #[test]
    fn kelly_clip_scales_alpha_targets_to_whole_lots() {
        let mut r = risk();
        assert_eq!(r.kelly_clip(), Factor::ONE);
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)));
        assert_eq!(r.kelly_clip(), Factor::from_num(0.25));
        // 0.01 × 0.25 = 0.0025: 250 lots of 0.00001.
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0025".into()));
        r.on_report(&fill(&o));
        // Same target again: already met at the clipped size.
        assert_eq!(r.check(&target("0.01")), Decision::Nothing);
        // Back to 1: the full target, so the rest is bought.
        r.on_command(RiskCommand::KellyClip(Factor::ONE));
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0075".into()));
        r.on_report(&fill(&o));
        assert_eq!(r.exposure()[0].position.to_string(), "0.01");
        // Flat is flat at any clip.
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)));
        let o = approved(r.check(&target("0")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Sell, "0.01".into()));
    }

    #[test]
    fn kelly_clip_rounds_toward_zero_on_an_odd_lot() {
        let mut r = risk();
        r.limits[0].lot_size = "0.0003".parse().unwrap();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)));
        // 0.0025 is 8.33 lots of 0.0003: 8 lots, 0.0024, on both sides.
        let o = approved(r.check(&target("0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Buy, "0.0024".into()));
        r.on_report(&ExecReport::Reject {
            order_id: o.id,
            instrument: o.instrument,
            side: o.side,
            qty: o.qty,
            reason: RejectReason::VenueReject,
        });
        let o = approved(r.check(&target("-0.01")));
        assert_eq!((o.side, o.qty.to_string()), (Side::Sell, "0.0024".into()));
        // A clip that leaves less than a lot targets flat.
        let mut r = risk();
        r.limits[0].lot_size = "0.01".parse().unwrap();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.5)));
        assert_eq!(r.check(&target("0.01")), Decision::Nothing);
    }

    #[test]
    fn kelly_clip_leaves_manual_orders_alone_and_ignores_bad_values() {
        let mut r = risk();
        r.on_command(RiskCommand::KellyClip(Factor::from_num(0.25)));
        for bad in [Factor::ZERO, -Factor::from_num(0.5), Factor::from_num(1.5)] {
            r.on_command(RiskCommand::KellyClip(bad));
            assert_eq!(r.kelly_clip(), Factor::from_num(0.25), "{bad} ignored");
        }
        let o = approved(r.check(&intent(Sizing::Delta(Side::Buy, "0.01".parse().unwrap()))));
        assert_eq!(o.qty.to_string(), "0.01", "manual deltas are not scaled");
        let mut manual_target = target("0.03");
        manual_target.origin = Origin::Manual;
        let o = approved(r.check(&manual_target));
        assert_eq!(
            o.qty.to_string(),
            "0.02",
            "nor are manual targets: 0.03 less the open 0.01"
        );
        // The kill switch and the clip are independent.
        r.on_command(RiskCommand::Kill);
        r.on_command(RiskCommand::Resume);
        assert_eq!(r.kelly_clip(), Factor::from_num(0.25));
    }
}
