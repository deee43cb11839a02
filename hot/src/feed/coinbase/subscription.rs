//! Coinbase endpoints and subscribe messages, for Advanced Trade and the legacy Exchange feed.
//!
//! Advanced Trade (`shared/venues.md` §2.1–2.2) takes **one channel per message**:
//! `{"type":"subscribe","product_ids":[...],"channel":"..."}`, sent within 5 seconds of
//! connecting or the server disconnects. Every connection also subscribes to `heartbeats`,
//! because the server closes channels that go 60–90 seconds without an update and the heartbeat
//! keeps quiet ones open; `heartbeats` takes no `product_ids`.
//! Public channels need no JWT, so none is sent.
//! The legacy Exchange feed (§2.9) takes one message naming several channels, with the
//! products at the root.
//!
//! Messages are built with `format!` rather than a JSON library: product names are
//! [`VenueSymbol`]s, which hold only ASCII letters, digits and `-_/.`, so nothing needs escaping.

use std::time::Duration;

use crate::ids::VenueSymbol;

/// Advanced Trade market-data endpoint.
pub const MARKET_DATA_URL: &str = "wss://advanced-trade-ws.coinbase.com";
/// Advanced Trade user-order endpoint (`user`, `futures_balance_summary`, `heartbeats`).
pub const USER_DATA_URL: &str = "wss://advanced-trade-ws-user.coinbase.com";
/// Request path on the Advanced Trade endpoints: subscriptions are messages, not URLs.
pub const PATH: &str = "/";
/// Legacy Exchange public feed.
pub const EXCHANGE_URL: &str = "wss://ws-feed.exchange.coinbase.com";
/// Legacy Exchange authenticated direct feed.
pub const EXCHANGE_DIRECT_URL: &str = "wss://ws-direct.exchange.coinbase.com";
/// Legacy Exchange public sandbox feed.
pub const EXCHANGE_SANDBOX_URL: &str = "wss://ws-feed-public.sandbox.exchange.coinbase.com";
/// Request path on the legacy Exchange endpoints.
pub const EXCHANGE_PATH: &str = "/";
/// Both feeds disconnect a client that has not subscribed this long after connecting.
pub const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(5);

/// An Advanced Trade public channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// `market_trades`: every trade, batched every 250 ms.
    MarketTrades,
    /// `ticker`: last price and best bid/ask on every match.
    Ticker,
    /// `ticker_batch`: the ticker every 5 s, without best bid/ask.
    TickerBatch,
    /// `level2`: the order book (data arrives on `l2_data`).
    Level2,
    /// `heartbeats`: one message per second; keeps the connection open.
    Heartbeats,
    /// `candles`: 5-minute candles updated every second.
    Candles,
    /// `status`: product listings and their status.
    Status,
}

impl ChannelKind {
    /// The channel name, as sent in a subscribe message and spelled in config.
    pub const fn name(self) -> &'static str {
        match self {
            ChannelKind::MarketTrades => "market_trades",
            ChannelKind::Ticker => "ticker",
            ChannelKind::TickerBatch => "ticker_batch",
            ChannelKind::Level2 => "level2",
            ChannelKind::Heartbeats => "heartbeats",
            ChannelKind::Candles => "candles",
            ChannelKind::Status => "status",
        }
    }

    /// Parses a channel name.
    pub fn from_name(name: &str) -> Option<ChannelKind> {
        [
            ChannelKind::MarketTrades,
            ChannelKind::Ticker,
            ChannelKind::TickerBatch,
            ChannelKind::Level2,
            ChannelKind::Heartbeats,
            ChannelKind::Candles,
            ChannelKind::Status,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }
}

/// `"BTC-USD","ETH-USD"`: the products as JSON strings, comma-separated.
fn product_list(products: &[VenueSymbol]) -> String {
    products
        .iter()
        .map(|p| format!("\"{}\"", p.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// One `subscribe` or `unsubscribe` message per channel: `heartbeats` first (without
/// products, and always, whether asked for or not), then `channels` in the order given, each
/// named once.
fn messages(kind: &str, products: &[VenueSymbol], channels: &[ChannelKind]) -> Vec<String> {
    let list = product_list(products);
    let mut out = vec![format!(r#"{{"type":"{kind}","channel":"heartbeats"}}"#)];
    let mut seen = vec![ChannelKind::Heartbeats];
    for &channel in channels {
        if seen.contains(&channel) {
            continue;
        }
        seen.push(channel);
        out.push(format!(
            r#"{{"type":"{kind}","product_ids":[{list}],"channel":"{}"}}"#,
            channel.name()
        ));
    }
    out
}

/// The Advanced Trade subscribe messages for these products and channels: one per channel,
/// `heartbeats` first (without products, and always, whether asked for or not), then `channels`
/// in the order given, each named once.
pub fn subscribe_messages(products: &[VenueSymbol], channels: &[ChannelKind]) -> Vec<String> {
    messages("subscribe", products, channels)
}

/// The matching unsubscribe messages.
pub fn unsubscribe_messages(products: &[VenueSymbol], channels: &[ChannelKind]) -> Vec<String> {
    messages("unsubscribe", products, channels)
}

/// The request path and the messages to send after connecting to Advanced Trade.
pub fn connection(products: &[VenueSymbol], channels: &[ChannelKind]) -> (String, Vec<String>) {
    (PATH.to_string(), subscribe_messages(products, channels))
}

/// A legacy Exchange channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExchangeChannel {
    /// `matches`: every trade (`match`, first a `last_match`).
    Matches,
    /// `ticker`: top of book and last trade on every match.
    Ticker,
    /// `heartbeat`: one message per second per product, with the last trade id.
    Heartbeat,
    /// `level2`: snapshot then `l2update` diffs (authentication required).
    Level2,
    /// `level2_batch`: the same every 50 ms, without authentication.
    Level2Batch,
}

impl ExchangeChannel {
    /// The channel name, as sent in a subscribe message.
    pub const fn name(self) -> &'static str {
        match self {
            ExchangeChannel::Matches => "matches",
            ExchangeChannel::Ticker => "ticker",
            ExchangeChannel::Heartbeat => "heartbeat",
            ExchangeChannel::Level2 => "level2",
            ExchangeChannel::Level2Batch => "level2_batch",
        }
    }
}

/// The one legacy Exchange subscribe message for these products and channels (products at the
/// root apply to every channel).
pub fn exchange_subscribe_message(products: &[VenueSymbol], channels: &[ExchangeChannel]) -> String {
    let names = channels
        .iter()
        .map(|c| format!("\"{}\"", c.name()))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"{{"type":"subscribe","product_ids":[{}],"channels":[{names}]}}"#,
        product_list(products)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> Vec<VenueSymbol> {
        vec![
            VenueSymbol::new("ETH-USD").unwrap(),
            VenueSymbol::new("BTC-USD").unwrap(),
        ]
    }

    #[test]
    fn one_message_per_channel_with_heartbeats_always() {
        let (path, msgs) = connection(&products(), &[ChannelKind::MarketTrades, ChannelKind::Ticker]);
        assert_eq!(path, "/");
        assert_eq!(
            msgs,
            [
                r#"{"type":"subscribe","channel":"heartbeats"}"#,
                r#"{"type":"subscribe","product_ids":["ETH-USD","BTC-USD"],"channel":"market_trades"}"#,
                r#"{"type":"subscribe","product_ids":["ETH-USD","BTC-USD"],"channel":"ticker"}"#,
            ]
        );
        // Asking for heartbeats, or a channel twice, changes nothing.
        let again = subscribe_messages(
            &products(),
            &[
                ChannelKind::Heartbeats,
                ChannelKind::MarketTrades,
                ChannelKind::Ticker,
                ChannelKind::MarketTrades,
            ],
        );
        assert_eq!(again, msgs);
        assert_eq!(
            unsubscribe_messages(&products()[..1], &[ChannelKind::Level2]),
            [
                r#"{"type":"unsubscribe","channel":"heartbeats"}"#,
                r#"{"type":"unsubscribe","product_ids":["ETH-USD"],"channel":"level2"}"#,
            ]
        );
    }

    #[test]
    fn messages_are_the_documented_json() {
        // Same content as `coinbase/subscribe_request_public_no_jwt.json`.
        let ours: serde_json::Value = serde_json::from_str(
            &subscribe_messages(
                &[
                    VenueSymbol::new("ETH-USD").unwrap(),
                    VenueSymbol::new("ETH-EUR").unwrap(),
                ],
                &[ChannelKind::Level2],
            )[1],
        )
        .unwrap();
        let docs: serde_json::Value = serde_json::from_str(
            r#"{"type": "subscribe", "product_ids": ["ETH-USD", "ETH-EUR"], "channel": "level2"}"#,
        )
        .unwrap();
        assert_eq!(ours, docs);
        let legacy = exchange_subscribe_message(
            &products(),
            &[
                ExchangeChannel::Matches,
                ExchangeChannel::Ticker,
                ExchangeChannel::Heartbeat,
            ],
        );
        assert_eq!(
            legacy,
            r#"{"type":"subscribe","product_ids":["ETH-USD","BTC-USD"],"channels":["matches","ticker","heartbeat"]}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&legacy).is_ok());
    }

    #[test]
    fn channel_names_round_trip() {
        for c in [
            ChannelKind::MarketTrades,
            ChannelKind::Ticker,
            ChannelKind::TickerBatch,
            ChannelKind::Level2,
            ChannelKind::Heartbeats,
            ChannelKind::Candles,
            ChannelKind::Status,
        ] {
            assert_eq!(ChannelKind::from_name(c.name()), Some(c));
        }
        assert_eq!(ChannelKind::from_name("l2_data"), None);
        assert_eq!(ExchangeChannel::Level2Batch.name(), "level2_batch");
    }
}
