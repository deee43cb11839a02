//! From validated config to the parts of a running engine: the hot [`EngineSpec`], each feed's
//! connection, and the embedded simulators.
//!
//! Limits and parameters reach the hot path only through here, and only from a validated
//! [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;

use maxx_hot::feed::binance::subscription::{StreamKind, connection, stream_names};
use maxx_hot::feed::ws::{Reconnect, UrlError, WsTarget};
use maxx_hot::ids::{Venue, VenueSymbol};
use maxx_hot::records::Factor;
use maxx_hot::runtime::engine::EngineSpec;
use maxx_hot::stage::alpha::{AlphaParams, BreakoutParams, MeanRevParams, MomentumParams, SentimentParams, StopParams};
use maxx_hot::stage::exec::{ExecParams, Fees, PAPER_RESTING, PaperVenue};
use maxx_hot::stage::risk::{InstrumentRisk, Limits, RiskParams, SizingMode};
use maxx_hot::wiring::Capacities;

use crate::config::{self, Config, FeedConfig, FeedUrl};
use crate::sim::{BinanceSimConfig, SimSymbol};

/// One paper venue per venue that lists a configured instrument: Execution's gateways, each
/// with that venue's fee schedule and latency (`exec.paper`, `exec.paper.venues.<venue>`) and
/// the depth penalty for market orders beyond the displayed size (`exec.depth_penalty_bps`).
pub fn paper_venues(config: &Config, spec: &EngineSpec) -> Vec<PaperVenue> {
    spec.index
        .venues()
        .into_iter()
        .map(|v| {
            let p = config.exec.paper.venue(v);
            let fees = Fees {
                maker_bps_milli: p.maker_fee_bps_milli,
                taker_bps_milli: p.taker_fee_bps_milli,
            };
            // Validated to at most ten seconds, far inside u64 nanoseconds.
            PaperVenue::configured(v, fees, p.latency.as_nanos() as u64, PAPER_RESTING)
                .with_depth_penalty(config.exec.depth_penalty_bps_milli)
        })
        .collect()
}

/// Execution's parameters: percents become fractions, basis points exact thousandths, and
/// every venue's fee schedule is its paper schedule (what the router and the maker/taker rule
/// assume for gateways that do not report their own).
pub fn exec_params(config: &Config) -> ExecParams {
    let e = &config.exec;
    let pct = |p: Factor| p / Factor::from_num(100);
    let mut fees = [Fees::default(); Venue::COUNT];
    for v in Venue::ALL {
        let p = e.paper.venue(v);
        fees[v.index()] = Fees {
            maker_bps_milli: p.maker_fee_bps_milli,
            taker_bps_milli: p.taker_fee_bps_milli,
        };
    }
    ExecParams {
        slip: pct(e.slip_tolerance_pct),
        // Validated to [0, 10000] bps: at most 10^7 thousandths, exact to the nearest one.
        maker_threshold_bps_milli: (e.maker_rebate_threshold_bps * Factor::from_num(1000))
            .round()
            .to_num::<i64>(),
        urgent_score: e.urgent_score,
        // Validated to at most an hour / a day: far inside u64 nanoseconds.
        passive_timeout_ns: e.passive_timeout.as_nanos() as u64,
        max_reprices: e.max_reprices,
        on_passive_timeout: e.on_passive_timeout,
        reject_ratio: pct(e.reject_ratio_pct),
        health_window: e.health_window,
        probation_ns: e.probation.as_nanos() as u64,
        latency_penalty_bps_milli_per_ms: e.latency_penalty_bps_milli_per_ms,
        depth_penalty_bps_milli: e.depth_penalty_bps_milli,
        fees,
        tick_size: config.symbols.iter().map(|s| s.tick_size).collect(),
    }
}

/// The hot stages' parameters.
pub fn spec(config: &Config) -> EngineSpec {
    let a = &config.alpha;
    EngineSpec {
        index: Arc::new(config.instrument_index()),
        alpha: AlphaParams {
            weights: a.weights.to_array(),
            entry: a.entry_threshold,
            exit: a.exit_threshold,
            momentum: MomentumParams {
                fast: a.momentum.fast,
                slow: a.momentum.slow,
                scale_bps: a.momentum.scale_bps,
            },
            mean_rev: MeanRevParams {
                window: a.mean_rev.window,
                z_scale: a.mean_rev.z_scale,
            },
            breakout: BreakoutParams {
                window: a.breakout.window,
                confirm: a.breakout.confirm,
                volume_mult: a.breakout.volume_mult,
                hold: a.breakout.hold,
            },
            sentiment: SentimentParams {
                // Validated to at most a week, far inside u64 nanoseconds.
                half_life_ns: a.sentiment.half_life.as_nanos() as u64,
            },
            order_qty: config.symbols.iter().map(|s| s.order_qty).collect(),
            stop: StopParams {
                vol_mult: config.risk.stop.vol_mult,
                vol_window: config.risk.stop.vol_window,
                min_ticks: config.risk.stop.min_ticks,
            },
            tick_size: config.symbols.iter().map(|s| s.tick_size).collect(),
        },
        risk: risk_params(config),
        exec: exec_params(config),
        histogram_every: config.hot.histogram_interval,
        capacities: Capacities {
            // About a second of a very busy feed; a full ring skips capturing, never stalls.
            capture: if config.market_data.capture_dir.is_some() {
                8 << 20
            } else {
                0
            },
            ..Capacities::default()
        },
        stale_after: Some(config.market_data.stale_after),
    }
}

/// Risk's parameters: percents in config become fractions here.
pub fn risk_params(config: &Config) -> RiskParams {
    let r = &config.risk;
    let pct = |p: Factor| p / Factor::from_num(100);
    RiskParams {
        instruments: config
            .symbols
            .iter()
            .map(|s| InstrumentRisk {
                // The venue whose feed and reject ratio govern the symbol: the first of its
                // venues with an enabled feed, else its first venue.
                venue: s
                    .venues
                    .keys()
                    .copied()
                    .find(|v| config.feeds.get(v).is_some_and(|f| f.enabled))
                    .or_else(|| s.venues.keys().next().copied())
                    .unwrap_or(Venue::Binance),
                limits: Limits {
                    max_order_qty: s.max_order_qty,
                    max_order_notional: s.max_order_notional,
                    max_position: s.max_position,
                    lot_size: s.lot_size,
                    tick_size: s.tick_size,
                    min_notional: s.min_notional,
                },
            })
            .collect(),
        max_trade_risk: pct(r.max_trade_risk_pct),
        collar: pct(r.price_collar_pct),
        max_gross_notional: r.max_gross_notional,
        max_orders_per_sec: r.max_orders_per_sec,
        sizing: match r.sizing {
            config::SizingMode::Fixed => SizingMode::Fixed,
            config::SizingMode::Kelly => SizingMode::Kelly,
        },
        kelly_damping: r.kelly_damping,
        manual_stop: pct(r.stop.manual_pct),
        reject_ratio: pct(r.reject_ratio_pct),
        reject_window: r.reject_window,
        starting_balance: config.exec.paper.starting_balance,
        kill: r.kill_switch,
    }
}

/// Reconnect settings of every feed.
pub fn reconnect(config: &Config) -> Reconnect {
    Reconnect {
        initial: config.market_data.retry_backoff,
        cap: config.market_data.backoff_cap,
        stale_after: config.market_data.stale_after,
    }
}

/// The venue symbols a feed subscribes to, in `symbols` order.
pub fn venue_symbols(config: &Config, venue: Venue) -> Vec<VenueSymbol> {
    config
        .symbols
        .iter()
        .filter_map(|s| s.venues.get(&venue).copied())
        .collect()
}

/// The embedded simulator for a venue, as configured under `sim.<venue>`.
pub fn sim_config(config: &Config, venue: Venue) -> Option<(SocketAddr, BinanceSimConfig)> {
    let sim = config.sim.get(&venue)?;
    let symbols = config
        .symbols
        .iter()
        .filter_map(|s| {
            let venue_symbol = *s.venues.get(&venue)?;
            let start_price = *sim.start_prices.get(&s.symbol)?;
            Some(SimSymbol {
                venue_symbol,
                start_price,
                tick_size: s.tick_size,
                lot_size: s.lot_size,
            })
        })
        .collect();
    let mut cfg = BinanceSimConfig::new(sim.seed, symbols);
    cfg.events_per_sec = sim.events_per_sec;
    Some((sim.bind, cfg))
}

/// Where a feed connects and what it sends after connecting. `sim_addr` is the embedded
/// simulator's address when the feed's url is `sim`.
pub fn feed_target(
    config: &Config,
    venue: Venue,
    feed: &FeedConfig,
    sim_addr: Option<SocketAddr>,
) -> Result<(WsTarget, Vec<String>), UrlError> {
    let kinds: Vec<StreamKind> = feed
        .streams
        .iter()
        .filter_map(|k| StreamKind::from_name(k.name()))
        .collect();
    let names = stream_names(&venue_symbols(config, venue), &kinds);
    let (path, messages) = connection(&names, feed.combined);
    let base = match (&feed.url, sim_addr) {
        (FeedUrl::Sim, Some(addr)) => format!("ws://{addr}"),
        (FeedUrl::Sim, None) => {
            return Err(UrlError(format!(
                "feeds.{venue}.url is `sim` but no simulator is running"
            )));
        }
        (FeedUrl::Ws(url), _) => url.trim_end_matches('/').to_string(),
    };
    // A configured URL may already carry a path (`ws://host/ws`); the streams replace it.
    let target = WsTarget::resolve(&base)?;
    Ok((target.with_path(&path), messages))
}
