//! The Bybit v5 public market-data wire vocabulary: the keys the decoder reads, the topics it
//! tells apart, and the `type` and `op` values that decide what a frame is.
//!
//! Bybit wraps every push in an envelope (`topic`, `type`, `ts`, `data`, and `cts` or `cs`) whose
//! `topic` names the stream, so the decoder reads the topic first and only then the payload.
//! Control frames carry no topic; they are told apart by `success` and `op`.
//! One key table serves every object level: `s` is the symbol both in a trade and in an order
//! book payload, `seq` is not read at all, and the decoder looks up only the keys the object in
//! hand can hold.
//!
//! Shapes, as documented in `shared/venues.md` section 3 (the fixtures under
//! `shared/fixtures/venues/bybit/`):
//!
//! | Frame | Recognised by | Becomes |
//! | --- | --- | --- |
//! | trades | `topic` `publicTrade.<symbol>` | up to 64 trade ticks |
//! | top of book | `topic` `orderbook.1.<symbol>`, `type` `snapshot` or `delta` | a quote tick once both sides are known |
//! | deeper book | `topic` `orderbook.<N>.<symbol>`, `N` other than 1 | skipped, depth |
//! | tickers (linear) | `topic` `tickers.<symbol>` with `bid1Price` ... `ask1Size` | a quote tick once all four are known |
//! | tickers (spot, option) | `topic` `tickers.<symbol>` without them | skipped, other |
//! | klines, liquidations, ... | any other `topic` | skipped, other |
//! | subscribe ack | `success` and `"op":"subscribe"` | control: subscribed, or subscribe rejected |
//! | option subscribe ack | `success` and `"type":"COMMAND_RESP"` | control: subscribed, or rejected if `failTopics` is not empty |
//! | pong (spot, linear) | `success` and `"op":"ping"` | control: heartbeat |
//! | pong (option, private) | `"op":"pong"` | control: heartbeat |
//! | other request replies | `success` and any other `op` | control: result, or error |

/// A wire key the decoder reads. Its discriminant indexes the decoder's per-object field table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Key {
    /// `topic`: the stream a push belongs to (`publicTrade.BTCUSDT`).
    Topic = 0,
    /// `type`: `snapshot` or `delta` on a push, `COMMAND_RESP` on an option subscribe ack.
    Type = 1,
    /// `ts`: when the venue generated the message (ms since the epoch).
    Ts = 2,
    /// `data`: the payload, an array of trades or one object.
    Data = 3,
    /// `cts`: matching-engine time of an order-book push (ms), comparable with trade `T`.
    Cts = 4,
    /// `cs`: cross sequence of a ticker push.
    Cs = 5,
    /// `success`: present in every reply to a request.
    Success = 6,
    /// `op`: the request a reply answers (`subscribe`, `ping`), or `pong`.
    Op = 7,
    /// `req_id`: the request id we sent, echoed back as a string.
    ReqId = 8,
    /// `T`: trade (fill) time (ms since the epoch).
    TradeTime = 9,
    /// `s`: venue symbol in a trade or an order-book payload.
    Symbol = 10,
    /// `S`: the taker's side, `Buy` or `Sell`.
    Side = 11,
    /// `v`: trade size (decimal string).
    Size = 12,
    /// `p`: trade price (decimal string).
    Price = 13,
    /// `i`: trade id, a string (digits on spot, a UUID on derivatives).
    TradeId = 14,
    /// `b`: bid levels, `[price, size]` pairs, best first.
    Bids = 15,
    /// `a`: ask levels, `[price, size]` pairs, best first.
    Asks = 16,
    /// `u`: order-book update id, one more per push of a book stream.
    UpdateId = 17,
    /// `symbol`: venue symbol in a ticker payload.
    TickerSymbol = 18,
    /// `bid1Price`: best bid price of a linear ticker.
    Bid1Price = 19,
    /// `bid1Size`: size at the best bid of a linear ticker.
    Bid1Size = 20,
    /// `ask1Price`: best ask price of a linear ticker.
    Ask1Price = 21,
    /// `ask1Size`: size at the best ask of a linear ticker.
    Ask1Size = 22,
    /// `failTopics`: topics an option subscribe ack refused.
    FailTopics = 23,
}

impl Key {
    /// Number of keys; sizes the decoder's field table.
    pub const COUNT: usize = 24;

    /// The key as spelled on the wire; also the `field` of a decode error about it.
    pub const fn wire(self) -> &'static str {
        match self {
            Key::Topic => "topic",
            Key::Type => "type",
            Key::Ts => "ts",
            Key::Data => "data",
            Key::Cts => "cts",
            Key::Cs => "cs",
            Key::Success => "success",
            Key::Op => "op",
            Key::ReqId => "req_id",
            Key::TradeTime => "T",
            Key::Symbol => "s",
            Key::Side => "S",
            Key::Size => "v",
            Key::Price => "p",
            Key::TradeId => "i",
            Key::Bids => "b",
            Key::Asks => "a",
            Key::UpdateId => "u",
            Key::TickerSymbol => "symbol",
            Key::Bid1Price => "bid1Price",
            Key::Bid1Size => "bid1Size",
            Key::Ask1Price => "ask1Price",
            Key::Ask1Size => "ask1Size",
            Key::FailTopics => "failTopics",
        }
    }

    /// The key these bytes spell, or `None` for a key the decoder does not read.
    ///
    /// Matching on the length first keeps the one-letter trade and book keys to a single
    /// comparison; tickers carry some thirty keys, most of which fall through here unread.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Option<Key> {
        match bytes {
            [c] => match c {
                b'T' => Some(Key::TradeTime),
                b's' => Some(Key::Symbol),
                b'S' => Some(Key::Side),
                b'v' => Some(Key::Size),
                b'p' => Some(Key::Price),
                b'i' => Some(Key::TradeId),
                b'b' => Some(Key::Bids),
                b'a' => Some(Key::Asks),
                b'u' => Some(Key::UpdateId),
                _ => None,
            },
            b"ts" => Some(Key::Ts),
            b"cs" => Some(Key::Cs),
            b"op" => Some(Key::Op),
            b"cts" => Some(Key::Cts),
            b"type" => Some(Key::Type),
            b"data" => Some(Key::Data),
            b"topic" => Some(Key::Topic),
            b"req_id" => Some(Key::ReqId),
            b"symbol" => Some(Key::TickerSymbol),
            b"success" => Some(Key::Success),
            b"bid1Price" => Some(Key::Bid1Price),
            b"bid1Size" => Some(Key::Bid1Size),
            b"ask1Price" => Some(Key::Ask1Price),
            b"ask1Size" => Some(Key::Ask1Size),
            b"failTopics" => Some(Key::FailTopics),
            _ => None,
        }
    }
}

/// What a push's `topic` says it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `publicTrade.<symbol>`: a batch of trades.
    PublicTrade,
    /// `orderbook.1.<symbol>`: the best bid and ask.
    OrderBook1,
    /// `orderbook.<N>.<symbol>` for any other depth (50, 200, 500, 1000, `rpi`, ...).
    OrderBookDeep,
    /// `tickers.<symbol>`: 24-hour statistics, with the best bid and ask on linear markets.
    Tickers,
    /// Any other topic (`kline.1.BTCUSDT`, `allLiquidation.BTCUSDT`, `tickers_lt.X`, ...).
    Other,
}

impl Topic {
    /// Prefix of a trade topic.
    pub const PUBLIC_TRADE: &'static str = "publicTrade.";
    /// Prefix of every order-book topic.
    pub const ORDER_BOOK: &'static str = "orderbook.";
    /// Prefix of a level-1 order-book topic.
    pub const ORDER_BOOK_1: &'static str = "orderbook.1.";
    /// Prefix of a ticker topic.
    pub const TICKERS: &'static str = "tickers.";

    /// The kind of topic these bytes name. The symbol after the prefix is not checked here:
    /// the payload names the instrument itself.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Topic {
        if bytes.starts_with(Self::PUBLIC_TRADE.as_bytes()) {
            Topic::PublicTrade
        } else if bytes.starts_with(Self::ORDER_BOOK_1.as_bytes()) {
            Topic::OrderBook1
        } else if bytes.starts_with(Self::ORDER_BOOK.as_bytes()) {
            Topic::OrderBookDeep
        } else if bytes.starts_with(Self::TICKERS.as_bytes()) {
            Topic::Tickers
        } else {
            Topic::Other
        }
    }
}

/// The `type` of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushType {
    /// `snapshot`: the whole state; an order book resets to it.
    Snapshot,
    /// `delta`: changes to the last state; absent fields and levels are unchanged.
    Delta,
}

impl PushType {
    /// The push type these bytes spell, or `None` for anything else.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Option<PushType> {
        match bytes {
            b"snapshot" => Some(PushType::Snapshot),
            b"delta" => Some(PushType::Delta),
            _ => None,
        }
    }
}

/// The `type` of the option market's subscribe acknowledgement.
pub const COMMAND_RESP: &str = "COMMAND_RESP";

/// The `op` of a reply: which request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `subscribe`.
    Subscribe,
    /// `ping` (spot and linear pongs echo the request's op) or `pong` (option, private).
    Ping,
    /// Any other request (`unsubscribe`, `auth`, ...).
    Other,
}

impl Op {
    /// The op these bytes spell.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Op {
        match bytes {
            b"subscribe" => Op::Subscribe,
            b"ping" | b"pong" => Op::Ping,
            _ => Op::Other,
        }
    }
}

/// The taker side of a trade, `S`.
#[inline]
pub fn taker_is_buyer(bytes: &[u8]) -> Option<bool> {
    match bytes {
        b"Buy" => Some(true),
        b"Sell" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KEYS: [Key; Key::COUNT] = [
        Key::Topic,
        Key::Type,
        Key::Ts,
        Key::Data,
        Key::Cts,
        Key::Cs,
        Key::Success,
        Key::Op,
        Key::ReqId,
        Key::TradeTime,
        Key::Symbol,
        Key::Side,
        Key::Size,
        Key::Price,
        Key::TradeId,
        Key::Bids,
        Key::Asks,
        Key::UpdateId,
        Key::TickerSymbol,
        Key::Bid1Price,
        Key::Bid1Size,
        Key::Ask1Price,
        Key::Ask1Size,
        Key::FailTopics,
    ];

    #[test]
    fn every_key_round_trips_through_its_wire_name() {
        for (i, key) in ALL_KEYS.into_iter().enumerate() {
            assert_eq!(key as usize, i);
            assert_eq!(Key::from_wire(key.wire().as_bytes()), Some(key));
        }
        for unread in [
            &b"seq"[..],
            b"L",
            b"BT",
            b"RPI",
            b"ret_msg",
            b"conn_id",
            b"lastPrice",
            b"",
        ] {
            assert_eq!(Key::from_wire(unread), None);
        }
    }

    #[test]
    fn topics_are_told_apart_by_prefix() {
        assert_eq!(Topic::from_wire(b"publicTrade.BTCUSDT"), Topic::PublicTrade);
        assert_eq!(Topic::from_wire(b"orderbook.1.BTCUSDT"), Topic::OrderBook1);
        assert_eq!(Topic::from_wire(b"orderbook.50.BTCUSDT"), Topic::OrderBookDeep);
        assert_eq!(Topic::from_wire(b"orderbook.10.BTCUSDT"), Topic::OrderBookDeep);
        assert_eq!(Topic::from_wire(b"orderbook.500.XRPUSDT"), Topic::OrderBookDeep);
        assert_eq!(Topic::from_wire(b"tickers.BTCUSDT"), Topic::Tickers);
        assert_eq!(Topic::from_wire(b"tickers_lt.BTC3LUSDT"), Topic::Other);
        assert_eq!(Topic::from_wire(b"kline.1.BTCUSDT"), Topic::Other);
        assert_eq!(Topic::from_wire(b"publicTrade"), Topic::Other);
        assert_eq!(Topic::from_wire(b""), Topic::Other);
    }

    #[test]
    fn push_types_ops_and_sides() {
        assert_eq!(PushType::from_wire(b"snapshot"), Some(PushType::Snapshot));
        assert_eq!(PushType::from_wire(b"delta"), Some(PushType::Delta));
        assert_eq!(PushType::from_wire(b"Snapshot"), None);
        assert_eq!(Op::from_wire(b"subscribe"), Op::Subscribe);
        assert_eq!(Op::from_wire(b"ping"), Op::Ping);
        assert_eq!(Op::from_wire(b"pong"), Op::Ping);
        assert_eq!(Op::from_wire(b"unsubscribe"), Op::Other);
        assert_eq!(taker_is_buyer(b"Buy"), Some(true));
        assert_eq!(taker_is_buyer(b"Sell"), Some(false));
        assert_eq!(taker_is_buyer(b"buy"), None);
    }
}
