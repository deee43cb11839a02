//! Bybit v5 public endpoints, topic names, `subscribe` requests and the client ping.
//!
//! Bybit has one endpoint per market (`/v5/public/spot`, `/v5/public/linear`) and no streams in
//! the URL: after connecting, the client sends `{"op":"subscribe","args":[topics],"req_id":..}`
//! and, to stay connected, `{"op":"ping"}` every 20 seconds (the server closes a connection
//! that has seen neither a ping nor pushed data for 10 minutes).
//! Topic names use the upper-case symbol (`publicTrade.BTCUSDT`, `orderbook.1.BTCUSDT`).
//!
//! The documented limits on a public connection (`venues.md` §3.5) are enforced here rather
//! than discovered as a rejected subscription: the `args` of all requests on one connection
//! total at most 21,000 characters, and a spot request carries at most 10 args (so several
//! requests are built); linear states no per-request limit.

use core::fmt;
use std::time::Duration;

use crate::ids::VenueSymbol;

/// The client keepalive message; its reply is a pong ([`crate::feed::Control::Heartbeat`]).
pub const PING: &str = r#"{"op":"ping"}"#;

/// How often to send [`PING`], as Bybit recommends.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long the server keeps a connection that has seen neither a ping nor pushed data.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Most characters the `args` of one public connection may hold in total.
pub const MAX_ARGS_CHARS: usize = 21_000;

/// Most args in one spot `subscribe` request.
pub const SPOT_MAX_ARGS_PER_REQUEST: usize = 10;

/// A Bybit public market, each with its own endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Market {
    /// Spot pairs.
    Spot,
    /// USDT and USDC perpetuals and USDT futures.
    Linear,
}

impl Market {
    /// Every market.
    pub const ALL: [Market; 2] = [Market::Spot, Market::Linear];

    /// The WebSocket path on `stream.bybit.com` (or a simulator).
    pub const fn path(self) -> &'static str {
        match self {
            Market::Spot => "/v5/public/spot",
            Market::Linear => "/v5/public/linear",
        }
    }

    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Linear => "linear",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<Market> {
        Market::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The market a request path names, if any.
    pub fn from_path(path: &str) -> Option<Market> {
        Market::ALL.into_iter().find(|m| m.path() == path)
    }

    /// Most args one `subscribe` request may carry on this market.
    pub const fn max_args_per_request(self) -> Option<usize> {
        match self {
            Market::Spot => Some(SPOT_MAX_ARGS_PER_REQUEST),
            Market::Linear => None,
        }
    }
}

/// A Bybit topic type maxx consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// `publicTrade.<symbol>`: every trade, in batches.
    PublicTrade,
    /// `orderbook.1.<symbol>`: the best bid and ask, every 10 ms when it changes.
    OrderBook1,
    /// `tickers.<symbol>`: statistics; on linear markets also the best bid and ask.
    Tickers,
}

impl TopicKind {
    /// The topic prefix, up to and including the last dot.
    pub const fn prefix(self) -> &'static str {
        match self {
            TopicKind::PublicTrade => "publicTrade.",
            TopicKind::OrderBook1 => "orderbook.1.",
            TopicKind::Tickers => "tickers.",
        }
    }

    /// The config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            TopicKind::PublicTrade => "publicTrade",
            TopicKind::OrderBook1 => "orderbook.1",
            TopicKind::Tickers => "tickers",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<TopicKind> {
        [TopicKind::PublicTrade, TopicKind::OrderBook1, TopicKind::Tickers]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The topic for one symbol, which Bybit spells in upper case.
    pub fn topic(self, symbol: &VenueSymbol) -> String {
        format!("{}{}", self.prefix(), symbol.as_str())
    }
}

/// Every topic for these symbols and kinds, symbol-major.
pub fn topics(symbols: &[VenueSymbol], kinds: &[TopicKind]) -> Vec<String> {
    symbols
        .iter()
        .flat_map(|s| kinds.iter().map(move |k| k.topic(s)))
        .collect()
}

/// Why no set of requests can subscribe these topics on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// No topics: there is nothing to subscribe to.
    NoTopics,
    /// The args would total more than [`MAX_ARGS_CHARS`]; spread them over more connections.
    TooLong {
        /// Their total length, as counted against the limit.
        chars: usize,
    },
    /// A topic holds a character that cannot appear unescaped in a JSON string.
    BadTopic,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::NoTopics => f.write_str("no topics to subscribe to"),
            SubscribeError::TooLong { chars } => write!(
                f,
                "subscription args total {chars} characters, more than the {MAX_ARGS_CHARS} Bybit allows per connection"
            ),
            SubscribeError::BadTopic => f.write_str("a topic holds a quote, backslash or control character"),
        }
    }
}

impl std::error::Error for SubscribeError {}

/// One `subscribe` request, keys in the documented order: `{"op":"subscribe","args":[..],"req_id":".."}`.
pub fn subscribe_request(topics: &[String], req_id: &str) -> String {
    let args: Vec<String> = topics.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"{{"op":"subscribe","args":[{}],"req_id":"{req_id}"}}"#,
        args.join(",")
    )
}

/// The `subscribe` requests that take these topics on one connection of `market`, split to
/// respect the per-request limit, with `req_id`s `"1"`, `"2"`, ...
///
/// The length counted against [`MAX_ARGS_CHARS`] is each topic plus its two quotes and a
/// separator, so the limit holds however Bybit counts the array's punctuation.
///
/// # Errors
/// [`SubscribeError`] if there are no topics, if they are too long for one connection, or if a
/// topic could not be written into JSON as it is.
pub fn subscribe_messages(market: Market, topics: &[String]) -> Result<Vec<String>, SubscribeError> {
    if topics.is_empty() {
        return Err(SubscribeError::NoTopics);
    }
    if topics
        .iter()
        .any(|t| t.is_empty() || t.chars().any(|c| c == '"' || c == '\\' || c.is_control()))
    {
        return Err(SubscribeError::BadTopic);
    }
    let chars: usize = topics.iter().map(|t| t.chars().count() + 3).sum();
    if chars > MAX_ARGS_CHARS {
        return Err(SubscribeError::TooLong { chars });
    }
    let per_request = market.max_args_per_request().unwrap_or(topics.len());
    Ok(topics
        .chunks(per_request)
        .enumerate()
        .map(|(i, chunk)| subscribe_request(chunk, &(i + 1).to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(names: &[&str]) -> Vec<VenueSymbol> {
        names.iter().map(|n| VenueSymbol::new(n).unwrap()).collect()
    }

    #[test]
    fn topics_paths_and_ping() {
        let names = topics(
            &symbols(&["BTCUSDT", "ETHUSDT"]),
            &[TopicKind::PublicTrade, TopicKind::OrderBook1],
        );
        assert_eq!(
            names,
            [
                "publicTrade.BTCUSDT",
                "orderbook.1.BTCUSDT",
                "publicTrade.ETHUSDT",
                "orderbook.1.ETHUSDT"
            ]
        );
        assert_eq!(Market::Spot.path(), "/v5/public/spot");
        assert_eq!(Market::Linear.path(), "/v5/public/linear");
        assert_eq!(Market::from_path("/v5/public/linear"), Some(Market::Linear));
        assert_eq!(Market::from_path("/v5/public/option"), None);
        assert_eq!(Market::from_name("spot"), Some(Market::Spot));
        assert_eq!(TopicKind::from_name("orderbook.1"), Some(TopicKind::OrderBook1));
        assert_eq!(TopicKind::from_name("orderbook.50"), None);
        assert_eq!(PING, r#"{"op":"ping"}"#);
        assert_eq!(PING_INTERVAL, Duration::from_secs(20));
    }

    #[test]
    fn one_request_carries_the_documented_shape() {
        let names = topics(&symbols(&["BTCUSDT"]), &[TopicKind::PublicTrade, TopicKind::OrderBook1]);
        assert_eq!(
            subscribe_messages(Market::Linear, &names).unwrap(),
            [r#"{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.1.BTCUSDT"],"req_id":"1"}"#]
        );
    }

    #[test]
    fn spot_requests_hold_at_most_ten_args() {
        let many: Vec<String> = (0..23).map(|i| format!("publicTrade.S{i}USDT")).collect();
        let spot = subscribe_messages(Market::Spot, &many).unwrap();
        assert_eq!(spot.len(), 3);
        assert!(spot[0].ends_with(r#""req_id":"1"}"#) && spot[2].ends_with(r#""req_id":"3"}"#));
        let counts: Vec<usize> = spot.iter().map(|m| m.matches("publicTrade.").count()).collect();
        assert_eq!(counts, [10, 10, 3]);
        assert_eq!(subscribe_messages(Market::Linear, &many).unwrap().len(), 1);
    }

    #[test]
    fn limits_and_bad_topics_are_refused() {
        assert_eq!(subscribe_messages(Market::Spot, &[]), Err(SubscribeError::NoTopics));
        let long: Vec<String> = (0..1_000).map(|i| format!("orderbook.1.SYMBOL{i:06}")).collect();
        assert!(matches!(
            subscribe_messages(Market::Linear, &long),
            Err(SubscribeError::TooLong { chars }) if chars > MAX_ARGS_CHARS
        ));
        assert!(subscribe_messages(Market::Linear, &long[..700]).is_ok());
        assert_eq!(
            subscribe_messages(Market::Linear, &["a\"b".to_string()]),
            Err(SubscribeError::BadTopic)
        );
    }
}
