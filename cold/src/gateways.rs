//! The gateway Execution drives for each venue: the paper venue (the default) or a real
//! order-entry client, chosen per venue by config.
//!
//! [`VenueGateway`] is a closed enum, so the Execution thread dispatches with a `match`, never
//! a virtual call; each variant forwards to its own [`Gateway`] implementation.

use maxx_hot::gateway::binance::BinanceSpotGateway;
use maxx_hot::gateway::bybit::BybitGateway;
use maxx_hot::ids::Venue;
use maxx_hot::records::{ExecReport, Order, OrderId, Tick};
use maxx_hot::stage::exec::{Fees, Gateway, PaperVenue};

/// One venue's order entry.
#[derive(Debug)]
// The real clients carry their fixed buffers inline; a handful live for the engine's lifetime
// and a box would add a pointer chase to every call on the Execution thread.
#[allow(clippy::large_enum_variant)]
pub enum VenueGateway {
    /// The in-process paper venue, filling against the venue's market data.
    Paper(PaperVenue),
    /// Binance Spot over signed REST.
    Binance(BinanceSpotGateway),
    /// Bybit v5 spot over signed REST.
    Bybit(BybitGateway),
}

impl VenueGateway {
    /// `paper` or `live`.
    pub fn mode(&self) -> &'static str {
        match self {
            VenueGateway::Paper(_) => "paper",
            VenueGateway::Binance(_) | VenueGateway::Bybit(_) => "live",
        }
    }

    /// The start of the client order ids a live gateway sends (`mx-sedk00-`); `None` on paper.
    pub fn client_id_prefix(&self) -> Option<&str> {
        match self {
            VenueGateway::Paper(_) => None,
            VenueGateway::Binance(g) => Some(g.client_id_prefix()),
            VenueGateway::Bybit(g) => Some(g.client_id_prefix()),
        }
    }
}

/// Forwards one call to the variant's gateway.
macro_rules! each {
    ($self:ident, $g:ident => $call:expr) => {
        match $self {
            VenueGateway::Paper($g) => $call,
            VenueGateway::Binance($g) => $call,
            VenueGateway::Bybit($g) => $call,
        }
    };
}

impl Gateway for VenueGateway {
    #[inline]
    fn venue(&self) -> Venue {
        each!(self, g => g.venue())
    }

    #[inline]
    fn submit(&mut self, order: &Order, out: &mut impl FnMut(ExecReport)) {
        each!(self, g => g.submit(order, out))
    }

    #[inline]
    fn cancel(&mut self, order_id: OrderId, out: &mut impl FnMut(ExecReport)) {
        each!(self, g => g.cancel(order_id, out))
    }

    #[inline]
    fn on_tick(&mut self, tick: &Tick, out: &mut impl FnMut(ExecReport)) {
        each!(self, g => g.on_tick(tick, out))
    }

    #[inline]
    fn poll(&mut self, now_ns: u64, out: &mut impl FnMut(ExecReport)) -> bool {
        each!(self, g => g.poll(now_ns, out))
    }

    fn cancel_all(&mut self, out: &mut impl FnMut(ExecReport)) {
        each!(self, g => g.cancel_all(out))
    }

    fn open_capacity(&self) -> usize {
        each!(self, g => g.open_capacity())
    }

    fn fees(&self) -> Option<Fees> {
        each!(self, g => g.fees())
    }

    #[inline]
    fn is_up(&self) -> bool {
        each!(self, g => g.is_up())
    }
}
