//! One decoder type and one frame-source type for every venue, so one engine can run feeds of
//! different venues side by side with static dispatch (a `match`, never a virtual call).

use crate::feed::binance::parse::BinanceDecoder;
use crate::feed::bybit::parse::BybitDecoder;
use crate::feed::coinbase::parse::CoinbaseDecoder;
use crate::feed::http_stream::HttpStreamFeed;
use crate::feed::oanda::parse::OandaDecoder;
use crate::feed::ws::WsFeed;
use crate::feed::{DecodeError, Decoded, FrameMeta, Sequencing, TickBatch};
use crate::ids::{InstrumentIndex, Venue};
use crate::source::{Decode, FrameSource, Next, ReplaySource};

/// The decoder of any venue.
#[derive(Debug)]
pub enum AnyDecoder {
    /// Binance Spot.
    Binance(Box<BinanceDecoder>),
    /// Coinbase (Advanced Trade and the legacy Exchange feed).
    Coinbase(Box<CoinbaseDecoder>),
    /// Bybit v5.
    Bybit(Box<BybitDecoder>),
    /// OANDA v20.
    Oanda(Box<OandaDecoder>),
}

impl AnyDecoder {
    /// The decoder for `venue`, sized for `instruments` instruments.
    pub fn for_venue(venue: Venue, instruments: usize) -> AnyDecoder {
        match venue {
            Venue::Binance => AnyDecoder::Binance(Box::default()),
            Venue::Coinbase => AnyDecoder::Coinbase(Box::default()),
            Venue::Bybit => AnyDecoder::Bybit(Box::new(BybitDecoder::spot(instruments))),
            Venue::Oanda => AnyDecoder::Oanda(Box::default()),
        }
    }
}

impl Decode for AnyDecoder {
    #[inline]
    fn decode(
        &mut self,
        frame: &[u8],
        meta: FrameMeta,
        index: &InstrumentIndex,
        out: &mut TickBatch,
    ) -> Result<Decoded, DecodeError> {
        match self {
            AnyDecoder::Binance(d) => Decode::decode(&mut **d, frame, meta, index, out),
            AnyDecoder::Coinbase(d) => Decode::decode(&mut **d, frame, meta, index, out),
            AnyDecoder::Bybit(d) => Decode::decode(&mut **d, frame, meta, index, out),
            AnyDecoder::Oanda(d) => Decode::decode(&mut **d, frame, meta, index, out),
        }
    }

    fn on_connect(&mut self) {
        match self {
            AnyDecoder::Binance(d) => Decode::on_connect(&mut **d),
            AnyDecoder::Coinbase(d) => Decode::on_connect(&mut **d),
            AnyDecoder::Bybit(d) => Decode::on_connect(&mut **d),
            AnyDecoder::Oanda(d) => Decode::on_connect(&mut **d),
        }
    }

    fn sequencing(&self) -> Sequencing {
        match self {
            AnyDecoder::Binance(d) => Decode::sequencing(&**d),
            AnyDecoder::Coinbase(d) => Decode::sequencing(&**d),
            AnyDecoder::Bybit(d) => Decode::sequencing(&**d),
            AnyDecoder::Oanda(d) => Decode::sequencing(&**d),
        }
    }
}

/// Any frame source: a WebSocket, an HTTP stream, or a capture being replayed.
#[derive(Debug)]
pub enum AnySource {
    /// WebSocket (Binance, Coinbase, Bybit).
    Ws(Box<WsFeed>),
    /// Chunked HTTP stream (OANDA).
    Http(Box<HttpStreamFeed>),
    /// A capture in memory.
    Replay(Box<ReplaySource>),
}

impl FrameSource for AnySource {
    #[inline]
    fn next(&mut self) -> Next<'_> {
        match self {
            AnySource::Ws(s) => s.next(),
            AnySource::Http(s) => s.next(),
            AnySource::Replay(s) => s.next(),
        }
    }

    #[inline]
    fn next_tagged(&mut self) -> (Next<'_>, u32) {
        match self {
            AnySource::Ws(s) => s.next_tagged(),
            AnySource::Http(s) => s.next_tagged(),
            AnySource::Replay(s) => s.next_tagged(),
        }
    }

    fn close(&mut self) {
        match self {
            AnySource::Ws(s) => s.close(),
            AnySource::Http(s) => s.close(),
            AnySource::Replay(s) => s.close(),
        }
    }

    fn rotating(&self) -> Option<u32> {
        match self {
            AnySource::Ws(s) => s.rotating(),
            AnySource::Http(s) => s.rotating(),
            AnySource::Replay(s) => s.rotating(),
        }
    }

    fn rotate(&mut self) {
        match self {
            AnySource::Ws(s) => s.rotate(),
            AnySource::Http(s) => s.rotate(),
            AnySource::Replay(s) => s.rotate(),
        }
    }

    fn finish_rotation(&mut self) {
        match self {
            AnySource::Ws(s) => s.finish_rotation(),
            AnySource::Http(s) => s.finish_rotation(),
            AnySource::Replay(s) => s.finish_rotation(),
        }
    }

    fn restart(&mut self) {
        match self {
            AnySource::Ws(s) => s.restart(),
            AnySource::Http(s) => s.restart(),
            AnySource::Replay(s) => s.restart(),
        }
    }
}
