//! The Binance Spot market-data wire vocabulary: the field names the decoder reads and the
//! event types it tells apart.
//!
//! Binance spells fields as one-letter keys whose meaning depends on the message
//! (`b` is a best-bid price in `bookTicker` but a list of bid levels in `depthUpdate`), so the
//! decoder first records where each key it knows sits in a frame, then decides the message
//! kind, then reads the fields that kind needs.
//! Every other key (`M`, `U`, `f`, `l`, `msg`, ...) is skipped without a look.
//!
//! Shapes, as documented in `shared/venues.md` section 1 and seen in the 2024-08-08 captures:
//!
//! | Frame | Recognised by | Becomes |
//! | --- | --- | --- |
//! | `{"stream":"<name>","data":{...}}` | `stream` and `data` | whatever `data` is |
//! | trade | `"e":"trade"` | a trade tick |
//! | bookTicker (spot) | no `e`, has `u` | a quote tick |
//! | bookTicker (futures) | `"e":"bookTicker"` | a quote tick |
//! | depthUpdate | `"e":"depthUpdate"` | skipped, depth |
//! | partial book stream | `lastUpdateId` inside a combined frame | skipped, depth |
//! | REST depth snapshot | `lastUpdateId` at the top level | skipped, snapshot |
//! | aggTrade | `"e":"aggTrade"` | skipped, aggregate trade |
//! | kline, tickers, avgPrice, ... | any other `e` | skipped, other |
//! | request response | `result` and `id` | control: result |
//! | request error | `code` | control: error |
//! | serverShutdown | `"e":"serverShutdown"` | control: shutdown |

/// A wire key the decoder reads. Its discriminant indexes the decoder's per-frame field table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Key {
    /// `stream`: the stream name in a combined frame (`btcusdt@trade`, `!serverShutdown`).
    Stream = 0,
    /// `data`: the payload of a combined frame.
    Data = 1,
    /// `e`: event type.
    EventType = 2,
    /// `E`: event time (ms since the epoch).
    EventTime = 3,
    /// `s`: venue symbol, upper case in payloads.
    Symbol = 4,
    /// `t`: trade id.
    TradeId = 5,
    /// `p`: trade price (decimal string).
    Price = 6,
    /// `q`: trade quantity (decimal string).
    Qty = 7,
    /// `T`: trade or transaction time (ms since the epoch).
    TradeTime = 8,
    /// `m`: `true` when the buyer was the resting order, i.e. the aggressor sold.
    BuyerIsMaker = 9,
    /// `u`: order-book update id (`bookTicker`), or the last update id (`depthUpdate`).
    UpdateId = 10,
    /// `b`: best bid price (`bookTicker`), or bid levels (`depthUpdate`).
    Bid = 11,
    /// `B`: size at the best bid.
    BidQty = 12,
    /// `a`: best ask price (`bookTicker`), or ask levels (`depthUpdate`).
    Ask = 13,
    /// `A`: size at the best ask.
    AskQty = 14,
    /// `lastUpdateId`: order-book id of a snapshot or partial book.
    LastUpdateId = 15,
    /// `result`: present in every response to a request.
    Result = 16,
    /// `id`: the request id echoed in a response.
    Id = 17,
    /// `code`: the error code of a refused request.
    Code = 18,
}

impl Key {
    /// Number of keys; sizes the decoder's field table.
    pub const COUNT: usize = 19;

    /// The key as spelled on the wire; also the `field` of a decode error about it.
    pub const fn wire(self) -> &'static str {
        match self {
            Key::Stream => "stream",
            Key::Data => "data",
            Key::EventType => "e",
            Key::EventTime => "E",
            Key::Symbol => "s",
            Key::TradeId => "t",
            Key::Price => "p",
            Key::Qty => "q",
            Key::TradeTime => "T",
            Key::BuyerIsMaker => "m",
            Key::UpdateId => "u",
            Key::Bid => "b",
            Key::BidQty => "B",
            Key::Ask => "a",
            Key::AskQty => "A",
            Key::LastUpdateId => "lastUpdateId",
            Key::Result => "result",
            Key::Id => "id",
            Key::Code => "code",
        }
    }

    /// The key these bytes spell, or `None` for a key the decoder does not read.
    ///
    /// Matching on the length first keeps the common one-letter keys to a single comparison.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Option<Key> {
        match bytes {
            [c] => match c {
                b'e' => Some(Key::EventType),
                b'E' => Some(Key::EventTime),
                b's' => Some(Key::Symbol),
                b't' => Some(Key::TradeId),
                b'p' => Some(Key::Price),
                b'q' => Some(Key::Qty),
                b'T' => Some(Key::TradeTime),
                b'm' => Some(Key::BuyerIsMaker),
                b'u' => Some(Key::UpdateId),
                b'b' => Some(Key::Bid),
                b'B' => Some(Key::BidQty),
                b'a' => Some(Key::Ask),
                b'A' => Some(Key::AskQty),
                _ => None,
            },
            b"stream" => Some(Key::Stream),
            b"data" => Some(Key::Data),
            b"lastUpdateId" => Some(Key::LastUpdateId),
            b"result" => Some(Key::Result),
            b"id" => Some(Key::Id),
            b"code" => Some(Key::Code),
            _ => None,
        }
    }
}

/// The value of the `e` field, as far as the decoder tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `trade`: one raw trade.
    Trade,
    /// `bookTicker`: best bid and offer (the futures spelling; spot sends no `e`).
    BookTicker,
    /// `depthUpdate`: an order-book diff.
    DepthUpdate,
    /// `aggTrade`: an aggregate trade.
    AggTrade,
    /// `serverShutdown`: maintenance notice, reconnect now.
    ServerShutdown,
    /// Any other event (`kline`, `24hrTicker`, `avgPrice`, `blockTrade`, ...).
    Other,
}

impl EventType {
    /// The event type these bytes spell; unknown names are [`EventType::Other`].
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> EventType {
        match bytes {
            b"trade" => EventType::Trade,
            b"bookTicker" => EventType::BookTicker,
            b"depthUpdate" => EventType::DepthUpdate,
            b"aggTrade" => EventType::AggTrade,
            b"serverShutdown" => EventType::ServerShutdown,
            _ => EventType::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KEYS: [Key; Key::COUNT] = [
        Key::Stream,
        Key::Data,
        Key::EventType,
        Key::EventTime,
        Key::Symbol,
        Key::TradeId,
        Key::Price,
        Key::Qty,
        Key::TradeTime,
        Key::BuyerIsMaker,
        Key::UpdateId,
        Key::Bid,
        Key::BidQty,
        Key::Ask,
        Key::AskQty,
        Key::LastUpdateId,
        Key::Result,
        Key::Id,
        Key::Code,
    ];

    #[test]
    fn every_key_round_trips_through_its_wire_name() {
        for (i, key) in ALL_KEYS.into_iter().enumerate() {
            assert_eq!(key as usize, i);
            assert_eq!(Key::from_wire(key.wire().as_bytes()), Some(key));
        }
        assert_eq!(Key::from_wire(b"M"), None);
        assert_eq!(Key::from_wire(b"msg"), None);
        assert_eq!(Key::from_wire(b""), None);
    }

    #[test]
    fn event_types_are_told_apart_and_unknowns_are_other() {
        assert_eq!(EventType::from_wire(b"trade"), EventType::Trade);
        assert_eq!(EventType::from_wire(b"bookTicker"), EventType::BookTicker);
        assert_eq!(EventType::from_wire(b"depthUpdate"), EventType::DepthUpdate);
        assert_eq!(EventType::from_wire(b"aggTrade"), EventType::AggTrade);
        assert_eq!(EventType::from_wire(b"serverShutdown"), EventType::ServerShutdown);
        assert_eq!(EventType::from_wire(b"kline"), EventType::Other);
        assert_eq!(EventType::from_wire(b"Trade"), EventType::Other);
    }
}
