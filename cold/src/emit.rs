//! One JSON object per record, for `maxx replay --emit` and logs.
//!
//! Prices, quantities, fees and scores are canonical decimal strings (never JSON numbers, so
//! no consumer rounds them through a float); times are integer nanoseconds; `side` is `buy` or
//! `sell` (for trades, the aggressor's side). Field order is fixed by the structs below and
//! monotonic stamps are never printed, so the same input gives byte-identical lines.

use maxx_hot::ids::InstrumentIndex;
use maxx_hot::records::{ExecReport, Liquidity, Order, OrderKind, Origin, Signal, Tick, TickBody};
use serde::Serialize;

/// Which records `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitKind {
    /// Ticks.
    Ticks,
    /// Signals.
    Signals,
    /// Orders.
    Orders,
    /// Fills.
    Fills,
}

impl EmitKind {
    /// Parses `ticks`, `signals`, `orders` or `fills`.
    pub fn from_name(name: &str) -> Option<EmitKind> {
        match name {
            "ticks" => Some(EmitKind::Ticks),
            "signals" => Some(EmitKind::Signals),
            "orders" => Some(EmitKind::Orders),
            "fills" => Some(EmitKind::Fills),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct TradeLine<'a> {
    kind: &'static str,
    venue: &'static str,
    symbol: &'a str,
    trade_id: u64,
    exchange_ns: u64,
    recv_ns: u64,
    price: String,
    qty: String,
    side: &'static str,
}

#[derive(Serialize)]
struct QuoteLine<'a> {
    kind: &'static str,
    venue: &'static str,
    symbol: &'a str,
    update_id: u64,
    exchange_ns: u64,
    recv_ns: u64,
    bid: String,
    bid_qty: String,
    ask: String,
    ask_qty: String,
}

#[derive(Serialize)]
struct SignalLine<'a> {
    kind: &'static str,
    symbol: &'a str,
    ts: u64,
    score: String,
    side: &'static str,
    confidence: String,
    tick_seq: u64,
}

#[derive(Serialize)]
struct OrderLine<'a> {
    kind: &'static str,
    id: u64,
    symbol: &'a str,
    venue: &'static str,
    side: &'static str,
    qty: String,
    #[serde(rename = "type")]
    order_type: &'static str,
    price: Option<String>,
    origin: &'static str,
    ts: u64,
}

#[derive(Serialize)]
struct FillLine<'a> {
    kind: &'static str,
    order_id: u64,
    symbol: &'a str,
    venue: &'static str,
    side: &'static str,
    price: String,
    qty: String,
    fee: String,
    liquidity: &'static str,
    ts: u64,
}

fn to_line(value: &impl Serialize) -> String {
    // Serialising these plain structs of strings and integers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// A tick as one JSON line.
pub fn tick_line(index: &InstrumentIndex, t: &Tick) -> String {
    let symbol = index.get(t.instrument).symbol;
    match t.body {
        TickBody::Trade { price, qty, aggressor } => to_line(&TradeLine {
            kind: "trade",
            venue: t.venue.name(),
            symbol: symbol.as_str(),
            trade_id: t.seq,
            exchange_ns: t.exchange_ns,
            recv_ns: t.recv_ns,
            price: price.to_string(),
            qty: qty.to_string(),
            side: aggressor.name(),
        }),
        TickBody::Quote {
            bid,
            bid_qty,
            ask,
            ask_qty,
        } => to_line(&QuoteLine {
            kind: "quote",
            venue: t.venue.name(),
            symbol: symbol.as_str(),
            update_id: t.seq,
            exchange_ns: t.exchange_ns,
            recv_ns: t.recv_ns,
            bid: bid.to_string(),
            bid_qty: bid_qty.to_string(),
            ask: ask.to_string(),
            ask_qty: ask_qty.to_string(),
        }),
    }
}

/// A signal as one JSON line (`signals:<symbol>` fields plus provenance).
pub fn signal_line(index: &InstrumentIndex, s: &Signal) -> String {
    to_line(&SignalLine {
        kind: "signal",
        symbol: index.get(s.instrument).symbol.as_str(),
        ts: s.ts_ns,
        score: s.score.to_string(),
        side: s.side.name(),
        confidence: s.confidence.to_string(),
        tick_seq: s.tick_seq,
    })
}

/// An order as one JSON line (`orders` fields plus provenance).
pub fn order_line(index: &InstrumentIndex, o: &Order) -> String {
    let (order_type, price) = match o.kind {
        OrderKind::Market => ("market", None),
        OrderKind::Limit(p) => ("limit", Some(p.to_string())),
    };
    to_line(&OrderLine {
        kind: "order",
        id: o.id.0,
        symbol: index.get(o.instrument).symbol.as_str(),
        venue: o.venue.name(),
        side: o.side.name(),
        qty: o.qty.to_string(),
        order_type,
        price,
        origin: origin_name(o.origin),
        ts: o.ts_ns,
    })
}

/// A fill as one JSON line (`fills` fields plus provenance); `None` for other reports.
pub fn fill_line(index: &InstrumentIndex, r: &ExecReport) -> Option<String> {
    let ExecReport::Fill(f) = r else { return None };
    Some(to_line(&FillLine {
        kind: "fill",
        order_id: f.order_id.0,
        symbol: index.get(f.instrument).symbol.as_str(),
        venue: f.venue.name(),
        side: f.side.name(),
        price: f.price.to_string(),
        qty: f.qty.to_string(),
        fee: f.fee.to_string(),
        liquidity: match f.liquidity {
            Liquidity::Taker => "taker",
            Liquidity::Maker => "maker",
        },
        ts: f.ts_ns,
    }))
}

/// `alpha`, `manual` or `risk`.
pub const fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Alpha => "alpha",
        Origin::Manual => "manual",
        Origin::Risk => "risk",
    }
}
