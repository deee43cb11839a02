//! Binance stream names, connection paths and SUBSCRIBE messages.
//!
//! Stream names use the lower-case symbol (`btcusdt@trade`, `btcusdt@bookTicker`). The combined
//! form puts every stream in the URL (`/stream?streams=a/b`) and wraps each payload as
//! `{"stream":…,"data":…}`; the raw form uses `/ws/<stream>` for one stream, or `/ws` plus a
//! JSON `SUBSCRIBE` request for several.

use crate::ids::VenueSymbol;

/// A Binance market-data stream type maxx consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// `<symbol>@trade`: every trade.
    Trade,
    /// `<symbol>@bookTicker`: every best bid/ask change.
    BookTicker,
    /// `<symbol>@aggTrade`: one message per taker order (Binance only); use instead of `trade`.
    AggTrade,
}

impl StreamKind {
    /// The suffix after `@`, also the config spelling.
    pub const fn name(self) -> &'static str {
        match self {
            StreamKind::Trade => "trade",
            StreamKind::BookTicker => "bookTicker",
            StreamKind::AggTrade => "aggTrade",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(name: &str) -> Option<StreamKind> {
        match name {
            "trade" => Some(StreamKind::Trade),
            "bookTicker" => Some(StreamKind::BookTicker),
            "aggTrade" => Some(StreamKind::AggTrade),
            _ => None,
        }
    }
}

/// Every `<symbol>@<kind>` stream name for these symbols and kinds, symbol-major.
pub fn stream_names(symbols: &[VenueSymbol], kinds: &[StreamKind]) -> Vec<String> {
    symbols
        .iter()
        .flat_map(|s| {
            kinds
                .iter()
                .map(move |k| format!("{}@{}", s.as_str().to_ascii_lowercase(), k.name()))
        })
        .collect()
}

/// The request path and the messages to send after connecting.
pub fn connection(streams: &[String], combined: bool) -> (String, Vec<String>) {
    match (combined, streams) {
        (true, _) => (format!("/stream?streams={}", streams.join("/")), Vec::new()),
        (false, [one]) => (format!("/ws/{one}"), Vec::new()),
        (false, many) => {
            let params: Vec<String> = many.iter().map(|s| format!("\"{s}\"")).collect();
            (
                "/ws".to_string(),
                vec![format!(
                    "{{\"method\":\"SUBSCRIBE\",\"params\":[{}],\"id\":1}}",
                    params.join(",")
                )],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_messages() {
        let names = stream_names(
            &[
                VenueSymbol::new("BTCUSDT").unwrap(),
                VenueSymbol::new("ETHUSDT").unwrap(),
            ],
            &[StreamKind::Trade, StreamKind::BookTicker],
        );
        assert_eq!(
            names,
            [
                "btcusdt@trade",
                "btcusdt@bookTicker",
                "ethusdt@trade",
                "ethusdt@bookTicker"
            ]
        );
        assert_eq!(
            connection(&names, true).0,
            "/stream?streams=btcusdt@trade/btcusdt@bookTicker/ethusdt@trade/ethusdt@bookTicker"
        );
        assert_eq!(
            connection(&names[..1], false),
            ("/ws/btcusdt@trade".to_string(), vec![])
        );
        let (path, msgs) = connection(&names[..2], false);
        assert_eq!(path, "/ws");
        assert_eq!(
            msgs,
            [r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker"],"id":1}"#]
        );
    }
}
