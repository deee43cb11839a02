//! Shared pieces of the hot-path integration tests: a synthetic Binance frame source and a
//! small engine spec.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use maxx_hot::clock::mono_ns;
use maxx_hot::feed::FrameMeta;
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::records::{Factor, Side, Stamp, Tick, TickBody};
use maxx_hot::runtime::engine::EngineSpec;
use maxx_hot::source::{FrameSource, Next};
use maxx_hot::stage::alpha::{AlphaParams, BreakoutParams, MeanRevParams, MomentumParams, SentimentParams};
use maxx_hot::stage::exec::ExecParams;
use maxx_hot::stage::risk::{InstrumentRisk, Limits, RiskParams, SizingMode};
use maxx_hot::wiring::Capacities;

/// Binance combined-stream frames for BTCUSDT: a bookTicker then a trade, over and over, with the
/// price swinging in a slow zigzag so that momentum enters and exits positions.
pub struct SynthSource {
    n: u64,
    limit: Option<u64>,
    buf: Vec<u8>,
    closed: bool,
}

impl SynthSource {
    /// `limit` frames, or endless.
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            n: 0,
            limit,
            buf: Vec::with_capacity(512),
            closed: false,
        }
    }
}

/// Price in cents for step `i`: a zigzag of ±30000 cents around 60000.00 with period 400.
fn cents(i: u64) -> i64 {
    let phase = (i % 400) as i64;
    let tri = if phase < 200 { phase } else { 400 - phase };
    6_000_000 + (tri - 100) * 300
}

impl FrameSource for SynthSource {
    fn next(&mut self) -> Next<'_> {
        if self.closed || self.limit.is_some_and(|l| self.n >= l) {
            self.closed = true;
            return Next::Closed;
        }
        let i = self.n / 2;
        let c = cents(i);
        self.buf.clear();
        let r = if self.n.is_multiple_of(2) {
            write!(
                self.buf,
                r#"{{"stream":"btcusdt@bookTicker","data":{{"u":{},"s":"BTCUSDT","b":"{}.{:02}000000","B":"1.50000000","a":"{}.{:02}000000","A":"2.00000000"}}}}"#,
                i + 1,
                c / 100,
                c % 100,
                (c + 1) / 100,
                (c + 1) % 100
            )
        } else {
            write!(
                self.buf,
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":{},"p":"{}.{:02}000000","q":"0.01000000","T":1723161255342,"m":{},"M":true}}}}"#,
                i + 1,
                c / 100,
                c % 100,
                i.is_multiple_of(3)
            )
        };
        r.expect("formatting into a Vec cannot fail");
        self.n += 1;
        let now = mono_ns();
        Next::Frame(
            &self.buf,
            FrameMeta {
                recv_ns: 1_723_161_254_000_000_000 + self.n,
                stamp: Stamp(now),
            },
        )
    }

    fn close(&mut self) {
        self.closed = true;
    }
}

/// One instrument, BTCUSDT on Binance.
pub fn index() -> Arc<InstrumentIndex> {
    let mut vs = [None; Venue::COUNT];
    vs[Venue::Binance.index()] = Some(VenueSymbol::new("BTCUSDT").unwrap());
    Arc::new(InstrumentIndex::new([(Symbol::new("BTCUSDT").unwrap(), vs)]).unwrap())
}

/// Risk's parameters for BTCUSDT on Binance: limits that let the zigzag trade, Fixed sizing so
/// Alpha's targets go through unscaled, and a collar wide enough for the zigzag's swings.
pub fn risk_params() -> RiskParams {
    RiskParams {
        instruments: vec![InstrumentRisk {
            venue: Venue::Binance,
            limits: Limits {
                max_order_qty: "0.05".parse().unwrap(),
                max_order_notional: "5000".parse().unwrap(),
                max_position: "0.1".parse().unwrap(),
                lot_size: "0.00001".parse().unwrap(),
                tick_size: "0.01".parse().unwrap(),
                min_notional: "10".parse().unwrap(),
            },
        }],
        max_trade_risk: Factor::from_num(0.01),
        collar: Factor::from_num(0.01),
        max_gross_notional: "50000".parse().unwrap(),
        max_orders_per_sec: 1_000_000,
        sizing: SizingMode::Fixed,
        kelly_damping: Factor::from_num(0.5),
        manual_stop: Factor::from_num(0.01),
        reject_ratio: Factor::from_num(0.02),
        reject_window: 200,
        starting_balance: "100000".parse().unwrap(),
        kill: false,
    }
}

/// A spec that trades the zigzag often.
pub fn spec(capacities: Capacities) -> EngineSpec {
    EngineSpec {
        index: index(),
        alpha: AlphaParams {
            weights: [
                Factor::from_num(0.4),
                Factor::from_num(0.3),
                Factor::from_num(0.3),
                Factor::ZERO,
            ],
            entry: Factor::from_num(0.5),
            exit: Factor::from_num(0.1),
            momentum: MomentumParams {
                fast: 5,
                slow: 20,
                scale_bps: 5,
            },
            // On a steady ramp mean reversion reads |z| ≈ √3 against the trend; a wide z_scale
            // keeps it from cancelling momentum, and with constant trade sizes a volume_mult of
            // 1 lets every new extreme confirm a breakout, so the ensemble still trades.
            mean_rev: MeanRevParams {
                window: 20,
                z_scale: Factor::from_num(10),
            },
            breakout: BreakoutParams {
                window: 20,
                confirm: 5,
                volume_mult: Factor::ONE,
                hold: 10,
            },
            sentiment: SentimentParams {
                half_life_ns: 900_000_000_000,
            },
            order_qty: vec!["0.01".parse().unwrap()],
            stop: maxx_hot::stage::alpha::StopParams::default(),
            tick_size: vec!["0.01".parse().unwrap()],
        },
        risk: risk_params(),
        exec: ExecParams::default(),
        histogram_every: Duration::from_millis(10),
        capacities,
        stale_after: None,
    }
}

/// A best bid/offer for instrument 0 at `venue`, received at `at` (ns).
pub fn quote_tick(venue: Venue, at: u64, bid: &str, bid_qty: &str, ask: &str, ask_qty: &str) -> Tick {
    Tick {
        instrument: maxx_hot::ids::InstrumentId(0),
        venue,
        body: TickBody::Quote {
            bid: bid.parse().unwrap(),
            bid_qty: bid_qty.parse().unwrap(),
            ask: ask.parse().unwrap(),
            ask_qty: ask_qty.parse().unwrap(),
        },
        seq: 0,
        exchange_ns: 0,
        recv_ns: at,
        stamp: Stamp(0),
    }
}

/// A trade of instrument 0 at `venue`, received at `at` (ns), `aggressor` taking.
pub fn trade_tick(venue: Venue, at: u64, price: &str, qty: &str, aggressor: Side) -> Tick {
    Tick {
        body: TickBody::Trade {
            price: price.parse().unwrap(),
            qty: qty.parse().unwrap(),
            aggressor,
        },
        ..quote_tick(venue, at, "1", "1", "2", "1")
    }
}
