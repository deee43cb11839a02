//! The Coinbase market-data wire vocabulary: the field names the decoder reads, the Advanced
//! Trade channels and the legacy Exchange message types it tells apart.
//!
//! Coinbase speaks two formats over WebSocket (`shared/venues.md` section 2):
//! Advanced Trade wraps everything in an envelope (`channel`, `timestamp`, `sequence_num`,
//! `events[]`), while the legacy Exchange feed (ex-Pro, the format of the 2021 captures) sends
//! flat objects told apart by `type`.
//! Both use the same spelling for the fields they share (`product_id`, `price`, `side`, ...), so
//! one key table serves both, and the decoder dispatches on which of `type` and `channel` a
//! frame has:
//!
//! | Frame | Recognised by | Becomes |
//! | --- | --- | --- |
//! | request error (either format) | `"type":"error"` | control: subscribe rejected, or error |
//! | legacy `match`, `last_match` | `type` | a trade tick |
//! | legacy `ticker` | `type` | a quote tick |
//! | legacy `l2update`, `snapshot` | `type` | skipped, depth |
//! | legacy `subscriptions` | `type` | control: subscribed |
//! | legacy `heartbeat` | `type` | control: heartbeat |
//! | our own `subscribe` / `unsubscribe` | `type` | error: unknown message (never sent to us) |
//! | any other legacy `type` | `type` | skipped, other |
//! | `market_trades` | `channel` | trade ticks (a batch) |
//! | `ticker` | `channel` | quote ticks (a batch) |
//! | `l2_data` | `channel` | skipped, depth |
//! | `heartbeats` | `channel` | control: heartbeat |
//! | `subscriptions` | `channel` | control: subscribed |
//! | `ticker_batch`, `candles`, `status`, any other channel | `channel` | skipped, other |
//!
//! Unknown types and channels are skipped rather than refused because the docs say new message
//! types may appear at any time and must be ignored.

/// A wire key the decoder reads. Its discriminant indexes the decoder's per-object field table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Key {
    /// `channel`: the Advanced Trade channel of an envelope (`market_trades`, `l2_data`, ...).
    Channel = 0,
    /// `timestamp`: the envelope's RFC 3339 send time.
    Timestamp = 1,
    /// `sequence_num`: the envelope's message counter.
    SequenceNum = 2,
    /// `events`: the envelope's payload list.
    Events = 3,
    /// `type`: the legacy message type, an event's `snapshot`/`update`, or `error`.
    Type = 4,
    /// `trades`: the trades of a `market_trades` event.
    Trades = 5,
    /// `tickers`: the tickers of a `ticker` event.
    Tickers = 6,
    /// `heartbeat_counter`: a heartbeat's counter (a string in the docs sample, an integer live).
    HeartbeatCounter = 7,
    /// `trade_id`: a decimal string in Advanced Trade, an integer in the legacy feed.
    TradeId = 8,
    /// `product_id`: the venue symbol (`BTC-USD`).
    ProductId = 9,
    /// `price`: trade price (decimal string).
    Price = 10,
    /// `size`: trade quantity (decimal string).
    Size = 11,
    /// `side`: the **maker's** side of a trade (`BUY`/`SELL`, legacy `buy`/`sell`).
    Side = 12,
    /// `time`: trade time (RFC 3339).
    Time = 13,
    /// `best_bid`: best bid price of a ticker.
    BestBid = 14,
    /// `best_bid_quantity`: size at the best bid (Advanced Trade).
    BestBidQuantity = 15,
    /// `best_ask`: best ask price of a ticker.
    BestAsk = 16,
    /// `best_ask_quantity`: size at the best ask (Advanced Trade).
    BestAskQuantity = 17,
    /// `best_bid_size`: size at the best bid (legacy; absent in the 2021 captures).
    BestBidSize = 18,
    /// `best_ask_size`: size at the best ask (legacy; absent in the 2021 captures).
    BestAskSize = 19,
    /// `sequence`: the legacy per-product sequence number.
    Sequence = 20,
    /// `message`: the text of an error.
    Message = 21,
    /// `reason`: the detail of an error (legacy feed).
    Reason = 22,
}

impl Key {
    /// Number of keys; sizes the decoder's field table.
    pub const COUNT: usize = 23;

    /// The key as spelled on the wire; also the `field` of a decode error about it.
    pub const fn wire(self) -> &'static str {
        match self {
            Key::Channel => "channel",
            Key::Timestamp => "timestamp",
            Key::SequenceNum => "sequence_num",
            Key::Events => "events",
            Key::Type => "type",
            Key::Trades => "trades",
            Key::Tickers => "tickers",
            Key::HeartbeatCounter => "heartbeat_counter",
            Key::TradeId => "trade_id",
            Key::ProductId => "product_id",
            Key::Price => "price",
            Key::Size => "size",
            Key::Side => "side",
            Key::Time => "time",
            Key::BestBid => "best_bid",
            Key::BestBidQuantity => "best_bid_quantity",
            Key::BestAsk => "best_ask",
            Key::BestAskQuantity => "best_ask_quantity",
            Key::BestBidSize => "best_bid_size",
            Key::BestAskSize => "best_ask_size",
            Key::Sequence => "sequence",
            Key::Message => "message",
            Key::Reason => "reason",
        }
    }

    /// The key these bytes spell, or `None` for a key the decoder does not read.
    ///
    /// Matching on the length first keeps most unknown keys (`volume_24_h`, `maker_order_id`,
    /// `client_id`, ...) to one or two comparisons.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Option<Key> {
        match bytes.len() {
            4 => match bytes {
                b"type" => Some(Key::Type),
                b"size" => Some(Key::Size),
                b"side" => Some(Key::Side),
                b"time" => Some(Key::Time),
                _ => None,
            },
            5 => match bytes {
                b"price" => Some(Key::Price),
                _ => None,
            },
            6 => match bytes {
                b"events" => Some(Key::Events),
                b"trades" => Some(Key::Trades),
                b"reason" => Some(Key::Reason),
                _ => None,
            },
            7 => match bytes {
                b"channel" => Some(Key::Channel),
                b"tickers" => Some(Key::Tickers),
                b"message" => Some(Key::Message),
                _ => None,
            },
            8 => match bytes {
                b"trade_id" => Some(Key::TradeId),
                b"best_bid" => Some(Key::BestBid),
                b"best_ask" => Some(Key::BestAsk),
                b"sequence" => Some(Key::Sequence),
                _ => None,
            },
            9 => match bytes {
                b"timestamp" => Some(Key::Timestamp),
                _ => None,
            },
            10 => match bytes {
                b"product_id" => Some(Key::ProductId),
                _ => None,
            },
            12 => match bytes {
                b"sequence_num" => Some(Key::SequenceNum),
                _ => None,
            },
            13 => match bytes {
                b"best_bid_size" => Some(Key::BestBidSize),
                b"best_ask_size" => Some(Key::BestAskSize),
                _ => None,
            },
            17 => match bytes {
                b"heartbeat_counter" => Some(Key::HeartbeatCounter),
                b"best_bid_quantity" => Some(Key::BestBidQuantity),
                b"best_ask_quantity" => Some(Key::BestAskQuantity),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The `channel` of an Advanced Trade envelope, as far as the decoder tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `market_trades`: batches of trades.
    MarketTrades,
    /// `ticker`: top of book and last price, sent on every match.
    Ticker,
    /// `ticker_batch`: the ticker every 5 s, without best bid/ask.
    TickerBatch,
    /// `l2_data`: the `level2` channel's book snapshot and updates.
    L2Data,
    /// `heartbeats`: one message per second.
    Heartbeats,
    /// `subscriptions`: the acknowledgement of a subscribe or unsubscribe.
    Subscriptions,
    /// Any other channel (`candles`, `status`, `user`, or one added later).
    Other,
}

impl Channel {
    /// The channel these bytes spell; unknown names are [`Channel::Other`].
    ///
    /// `level2` is accepted as a spelling of `l2_data`: it is the name one subscribes with,
    /// and a server that echoed it would still be sending book data.
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> Channel {
        match bytes {
            b"market_trades" => Channel::MarketTrades,
            b"ticker" => Channel::Ticker,
            b"ticker_batch" => Channel::TickerBatch,
            b"l2_data" | b"level2" => Channel::L2Data,
            b"heartbeats" => Channel::Heartbeats,
            b"subscriptions" => Channel::Subscriptions,
            _ => Channel::Other,
        }
    }
}

/// The `type` of a flat (legacy Exchange, or error) message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `match`: one trade.
    Match,
    /// `last_match`: the most recent trade, sent once after subscribing to `matches`.
    LastMatch,
    /// `ticker`: top of book and last trade.
    Ticker,
    /// `l2update`: an order-book diff.
    L2Update,
    /// `snapshot`: the full book sent when a `level2` subscription starts.
    Snapshot,
    /// `subscriptions`: the acknowledgement listing every subscribed channel.
    Subscriptions,
    /// `heartbeat`: one message per second per product.
    Heartbeat,
    /// `error`: a refused request.
    Error,
    /// `subscribe` or `unsubscribe`: our own requests, which the venue never sends.
    Request,
    /// Any other type (`received`, `open`, `done`, `change`, `status`, ...).
    Other,
}

impl MessageType {
    /// The type these bytes spell; unknown names are [`MessageType::Other`].
    #[inline]
    pub fn from_wire(bytes: &[u8]) -> MessageType {
        match bytes {
            b"match" => MessageType::Match,
            b"last_match" => MessageType::LastMatch,
            b"ticker" => MessageType::Ticker,
            b"l2update" => MessageType::L2Update,
            b"snapshot" => MessageType::Snapshot,
            b"subscriptions" => MessageType::Subscriptions,
            b"heartbeat" => MessageType::Heartbeat,
            b"error" => MessageType::Error,
            b"subscribe" | b"unsubscribe" => MessageType::Request,
            _ => MessageType::Other,
        }
    }
}

/// The maker's side of a trade as the wire spells it: `BUY`/`SELL` in Advanced Trade,
/// `buy`/`sell` in the legacy feed.
///
/// Either case is accepted in either format: the two feeds already disagree on case, and a
/// venue changing it should not stop the feed. Anything else is `None`.
#[inline]
pub fn maker_is_buyer(bytes: &[u8]) -> Option<bool> {
    if bytes.eq_ignore_ascii_case(b"buy") {
        Some(true)
    } else if bytes.eq_ignore_ascii_case(b"sell") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_KEYS: [Key; Key::COUNT] = [
        Key::Channel,
        Key::Timestamp,
        Key::SequenceNum,
        Key::Events,
        Key::Type,
        Key::Trades,
        Key::Tickers,
        Key::HeartbeatCounter,
        Key::TradeId,
        Key::ProductId,
        Key::Price,
        Key::Size,
        Key::Side,
        Key::Time,
        Key::BestBid,
        Key::BestBidQuantity,
        Key::BestAsk,
        Key::BestAskQuantity,
        Key::BestBidSize,
        Key::BestAskSize,
        Key::Sequence,
        Key::Message,
        Key::Reason,
    ];

    #[test]
    fn every_key_round_trips_through_its_wire_name() {
        for (i, key) in ALL_KEYS.into_iter().enumerate() {
            assert_eq!(key as usize, i);
            assert_eq!(Key::from_wire(key.wire().as_bytes()), Some(key));
        }
        for unknown in [
            "",
            "client_id",
            "volume_24_h",
            "maker_order_id",
            "Type",
            "last_size",
            "current_time",
        ] {
            assert_eq!(Key::from_wire(unknown.as_bytes()), None, "{unknown}");
        }
    }

    #[test]
    fn channels_and_types_are_told_apart_and_unknowns_are_other() {
        assert_eq!(Channel::from_wire(b"market_trades"), Channel::MarketTrades);
        assert_eq!(Channel::from_wire(b"ticker"), Channel::Ticker);
        assert_eq!(Channel::from_wire(b"ticker_batch"), Channel::TickerBatch);
        assert_eq!(Channel::from_wire(b"l2_data"), Channel::L2Data);
        assert_eq!(Channel::from_wire(b"level2"), Channel::L2Data);
        assert_eq!(Channel::from_wire(b"heartbeats"), Channel::Heartbeats);
        assert_eq!(Channel::from_wire(b"subscriptions"), Channel::Subscriptions);
        assert_eq!(Channel::from_wire(b"candles"), Channel::Other);
        assert_eq!(Channel::from_wire(b"Ticker"), Channel::Other);
        assert_eq!(MessageType::from_wire(b"match"), MessageType::Match);
        assert_eq!(MessageType::from_wire(b"last_match"), MessageType::LastMatch);
        assert_eq!(MessageType::from_wire(b"ticker"), MessageType::Ticker);
        assert_eq!(MessageType::from_wire(b"l2update"), MessageType::L2Update);
        assert_eq!(MessageType::from_wire(b"snapshot"), MessageType::Snapshot);
        assert_eq!(MessageType::from_wire(b"subscriptions"), MessageType::Subscriptions);
        assert_eq!(MessageType::from_wire(b"heartbeat"), MessageType::Heartbeat);
        assert_eq!(MessageType::from_wire(b"error"), MessageType::Error);
        assert_eq!(MessageType::from_wire(b"subscribe"), MessageType::Request);
        assert_eq!(MessageType::from_wire(b"unsubscribe"), MessageType::Request);
        assert_eq!(MessageType::from_wire(b"done"), MessageType::Other);
    }

    #[test]
    fn maker_sides_in_either_case() {
        assert_eq!(maker_is_buyer(b"BUY"), Some(true));
        assert_eq!(maker_is_buyer(b"buy"), Some(true));
        assert_eq!(maker_is_buyer(b"SELL"), Some(false));
        assert_eq!(maker_is_buyer(b"sell"), Some(false));
        assert_eq!(maker_is_buyer(b"UNKNOWN_ORDER_SIDE"), None);
        assert_eq!(maker_is_buyer(b""), None);
    }
}
