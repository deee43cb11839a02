//! Per-venue wiring from validated config: the embedded simulators and each feed's connection
//! (URL, subscribe messages, keepalive, rotation, token).
//!
//! Everything venue-specific that `maxx run` needs lives here, so the run loop itself treats
//! all venues alike through [`AnySource`] and [`AnyDecoder`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use maxx_hot::feed::any::{AnyDecoder, AnySource};
use maxx_hot::feed::binance::parse::BinanceDecoder;
use maxx_hot::feed::binance::subscription::StreamKind;
use maxx_hot::feed::bybit::subscription as bybit;
use maxx_hot::feed::coinbase::subscription as coinbase;
use maxx_hot::feed::http_stream::{HttpStreamFeed, HttpTarget};
use maxx_hot::feed::oanda::subscription as oanda;
use maxx_hot::feed::ws::{WsFeed, WsTarget};
use maxx_hot::ids::{Venue, VenueSymbol};
use maxx_hot::runtime::stats::FeedStats;

use crate::config::{Config, FeedConfig, FeedUrl};
use crate::engine::{feed_target, reconnect, venue_symbols};
use crate::sim::{self, Faults, SimSymbol};

/// A running embedded simulator of any venue.
#[derive(Debug)]
pub enum RunningSim {
    /// Binance.
    Binance(sim::SimHandle),
    /// Coinbase Advanced Trade.
    Coinbase(sim::CoinbaseSimHandle),
    /// Bybit v5.
    Bybit(sim::BybitSimHandle),
    /// OANDA v20 (with the account and token it accepts).
    Oanda(sim::OandaSimHandle, String, String),
}

impl RunningSim {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            RunningSim::Binance(h) => h.local_addr(),
            RunningSim::Coinbase(h) => h.local_addr(),
            RunningSim::Bybit(h) => h.local_addr(),
            RunningSim::Oanda(h, ..) => h.local_addr(),
        }
    }

    /// Its fault switches.
    pub fn faults(&self) -> &Faults {
        match self {
            RunningSim::Binance(h) => h.faults(),
            RunningSim::Coinbase(h) => h.faults(),
            RunningSim::Bybit(h) => h.faults(),
            RunningSim::Oanda(h, ..) => h.faults(),
        }
    }

    /// Stops it.
    pub fn shutdown(self) {
        match self {
            RunningSim::Binance(h) => h.shutdown(),
            RunningSim::Coinbase(h) => h.shutdown(),
            RunningSim::Bybit(h) => h.shutdown(),
            RunningSim::Oanda(h, ..) => h.shutdown(),
        }
    }
}

/// The simulator's instruments for `venue`, from `symbols` and `sim.<venue>.start_prices`.
fn sim_symbols(config: &Config, venue: Venue) -> Option<(u64, u32, SocketAddr, Vec<SimSymbol>)> {
    let s = config.sim.get(&venue)?;
    let symbols = config
        .symbols
        .iter()
        .filter_map(|c| {
            let venue_symbol = *c.venues.get(&venue)?;
            let start_price = *s.start_prices.get(&c.symbol)?;
            Some(SimSymbol {
                venue_symbol,
                start_price,
                tick_size: c.tick_size,
                lot_size: c.lot_size,
            })
        })
        .collect();
    Some((s.seed, s.events_per_sec, s.bind, symbols))
}

/// Starts the simulator configured under `sim.<venue>`; with `replay`, it serves that capture
/// file's frames instead of its synthetic market.
pub fn start_sim(
    config: &Config,
    venue: Venue,
    bind: Option<SocketAddr>,
    replay: Option<PathBuf>,
) -> Result<RunningSim, String> {
    let (seed, rate, configured, symbols) =
        sim_symbols(config, venue).ok_or_else(|| format!("sim.{venue} is not configured"))?;
    let bind = bind.unwrap_or(configured);
    let io = |e: std::io::Error| format!("starting the {venue} simulator on {bind}: {e}");
    Ok(match venue {
        Venue::Binance => {
            let mut cfg = sim::BinanceSimConfig::new(seed, symbols);
            cfg.events_per_sec = rate;
            cfg.replay = replay;
            RunningSim::Binance(sim::spawn(bind, cfg).map_err(io)?)
        }
        Venue::Coinbase => {
            let mut cfg = sim::CoinbaseSimConfig::new(seed, symbols);
            cfg.events_per_sec = rate;
            cfg.replay = replay;
            RunningSim::Coinbase(sim::coinbase::spawn(bind, cfg).map_err(io)?)
        }
        Venue::Bybit => {
            let mut cfg = sim::BybitSimConfig::new(seed, symbols);
            cfg.events_per_sec = rate;
            cfg.replay = replay;
            RunningSim::Bybit(sim::bybit::spawn(bind, cfg).map_err(io)?)
        }
        Venue::Oanda => {
            let mut cfg = sim::OandaSimConfig::new(seed, symbols);
            cfg.events_per_sec = rate;
            cfg.replay = replay;
            let (account, token) = (cfg.account_id.clone(), cfg.token.clone());
            RunningSim::Oanda(sim::oanda::spawn(bind, cfg).map_err(io)?, account, token)
        }
    })
}

/// The feed's connection and decoder: from its URL, or from the embedded simulator `sim`.
pub fn feed_source(
    config: &Config,
    venue: Venue,
    feed: &FeedConfig,
    sim: Option<&RunningSim>,
    stats: &Arc<FeedStats>,
) -> Result<(AnySource, AnyDecoder), String> {
    let decoder = match venue {
        // A feed subscribed to aggTrade (instead of trade) decodes aggregate trades as trades.
        Venue::Binance if feed.streams.contains(&StreamKind::AggTrade) => {
            AnyDecoder::Binance(Box::new(BinanceDecoder::new().with_agg_trades()))
        }
        _ => AnyDecoder::for_venue(venue, config.symbols.len()),
    };
    let symbols: Vec<VenueSymbol> = venue_symbols(config, venue);
    let base = match (&feed.url, sim) {
        (FeedUrl::Sim, Some(s)) => match venue {
            Venue::Oanda => format!("http://{}", s.local_addr()),
            _ => format!("ws://{}", s.local_addr()),
        },
        (FeedUrl::Sim, None) => return Err(format!("feeds.{venue}.url is `sim` but no simulator is running")),
        (FeedUrl::Ws(url), _) => url.trim_end_matches('/').to_string(),
    };
    let rc = reconnect(config);
    let resubscribe = config.market_data.resubscribe;
    let ws = |path: &str, subscribe: Vec<String>| -> Result<WsFeed, String> {
        let target = WsTarget::resolve(&base).map_err(|e| e.to_string())?.with_path(path);
        WsFeed::new(target, subscribe, rc, Arc::clone(stats)).map_err(|e| e.to_string())
    };
    let source = match venue {
        Venue::Binance => {
            let (target, subscribe) =
                feed_target(config, venue, feed, sim.map(RunningSim::local_addr)).map_err(|e| e.to_string())?;
            let f = WsFeed::new(target, subscribe, rc, Arc::clone(stats)).map_err(|e| e.to_string())?;
            AnySource::Ws(Box::new(f.with_rotation(resubscribe)))
        }
        Venue::Coinbase => {
            let channels: Vec<coinbase::ChannelKind> = feed
                .streams
                .iter()
                .map(|k| match k {
                    StreamKind::Trade | StreamKind::AggTrade => coinbase::ChannelKind::MarketTrades,
                    StreamKind::BookTicker => coinbase::ChannelKind::Ticker,
                })
                .collect();
            let (path, subscribe) = coinbase::connection(&symbols, &channels);
            AnySource::Ws(Box::new(ws(&path, subscribe)?.with_rotation(resubscribe)))
        }
        Venue::Bybit => {
            let kinds: Vec<bybit::TopicKind> = feed
                .streams
                .iter()
                .map(|k| match k {
                    StreamKind::Trade | StreamKind::AggTrade => bybit::TopicKind::PublicTrade,
                    StreamKind::BookTicker => bybit::TopicKind::OrderBook1,
                })
                .collect();
            let market = bybit::Market::Spot;
            let subscribe = bybit::subscribe_messages(market, &bybit::topics(&symbols, &kinds))
                .map_err(|e| format!("feeds.{venue}: {e:?}"))?;
            let f = ws(market.path(), subscribe)?.with_keepalive(bybit::PING_INTERVAL, bybit::PING);
            AnySource::Ws(Box::new(f.with_rotation(resubscribe)))
        }
        Venue::Oanda => {
            let (account, token) = match (sim, &feed.url) {
                (Some(RunningSim::Oanda(_, account, token)), FeedUrl::Sim) => (account.clone(), token.clone()),
                _ => {
                    let account = feed
                        .account_id
                        .clone()
                        .ok_or_else(|| format!("feeds.{venue}.account_id is required"))?;
                    let token = std::env::var(&feed.token_env).map_err(|_| {
                        format!(
                            "feeds.{venue}: the bearer token is read from ${}, which is not set",
                            feed.token_env
                        )
                    })?;
                    (account, token)
                }
            };
            let request = oanda::stream_request(&account, &symbols, &token, oanda::DatetimeFormat::Rfc3339)
                .map_err(|e| format!("feeds.{venue}: {e}"))?;
            let target = HttpTarget::resolve(&format!("{base}{}", request.path)).map_err(|e| e.to_string())?;
            let f = HttpStreamFeed::new(target, request.headers, rc, Arc::clone(stats)).map_err(|e| e.to_string())?;
            AnySource::Http(Box::new(f))
        }
    };
    Ok((source, decoder))
}
