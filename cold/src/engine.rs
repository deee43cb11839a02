//! From validated config to the parts of a running engine: the hot [`EngineSpec`], each feed's
//! connection, each venue's order entry, and the embedded simulators.
//!
//! Limits and parameters reach the hot path only through here, and only from a validated
//! [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;

use maxx_hot::clock::wall_ns;
use maxx_hot::feed::binance::subscription::{StreamKind, connection, stream_names};
use maxx_hot::feed::ws::{Reconnect, UrlError, WsTarget};
use maxx_hot::gateway::binance::BinanceSpot;
use maxx_hot::gateway::bybit::BybitSpot;
use maxx_hot::gateway::rest::{GatewayConfig, InstrumentSpec, RestGateway};
use maxx_hot::ids::{Venue, VenueSymbol};
use maxx_hot::records::Factor;
use maxx_hot::runtime::engine::EngineSpec;
use maxx_hot::stage::alpha::{AlphaParams, BreakoutParams, MeanRevParams, MomentumParams, SentimentParams, StopParams};
use maxx_hot::stage::exec::{ExecParams, Fees, PAPER_RESTING, PaperVenue};
use maxx_hot::stage::risk::{InstrumentRisk, Limits, RiskParams, SizingMode};
use maxx_hot::wiring::Capacities;

use crate::config::{self, Config, FeedConfig, FeedUrl, LiveVenueConfig};
use crate::gateways::VenueGateway;
use crate::sim::{BinanceSimConfig, SimSymbol};

/// The paper venue of `venue`: that venue's fee schedule and latency (`exec.paper`,
/// `exec.paper.venues.<venue>`) and the depth penalty for market orders beyond the displayed
/// size (`exec.depth_penalty_bps`); its clock follows the wall clock, for live trading
/// ([`PaperVenue::with_wall_clock`]).
pub fn paper_venue(config: &Config, venue: Venue) -> PaperVenue {
    // Validated to at most ten seconds, far inside u64 nanoseconds.
    let latency_ns = config.exec.paper.venue(venue).latency.as_nanos() as u64;
    PaperVenue::configured(venue, fee_schedule(config, venue), latency_ns, PAPER_RESTING)
        .with_depth_penalty(config.exec.depth_penalty_bps_milli)
        .with_wall_clock()
}

/// The fee schedule of `venue` (`exec.paper.venues.<venue>`, else `exec.paper`): what the paper
/// venue charges, what the router and the maker/taker rule assume, and a live gateway's
/// estimate for fees the venue does not report.
fn fee_schedule(config: &Config, venue: Venue) -> Fees {
    let p = config.exec.paper.venue(venue);
    Fees {
        maker_bps_milli: p.maker_fee_bps_milli,
        taker_bps_milli: p.taker_fee_bps_milli,
    }
}

/// Execution's gateways, one per venue that lists a configured instrument, in venue order: the
/// venue's REST order entry when `exec.live.<venue>` is configured, else its paper venue
/// ([`paper_venue`]).
///
/// A live gateway reads its API key and secret from `MAXX_<VENUE>_API_KEY` and
/// `MAXX_<VENUE>_API_SECRET`; a variable that is missing or empty is an error naming the
/// variable (never a value). Its client order ids start with
/// `<client_id_prefix>-<start time in base-36 seconds>-`, so ids of one run never repeat those
/// of an earlier one although engine order ids restart at each run.
pub fn venue_gateways(config: &Config, spec: &EngineSpec) -> Result<Vec<VenueGateway>, String> {
    let start_secs = wall_ns() / 1_000_000_000;
    spec.index
        .venues()
        .into_iter()
        .map(|v| match config.exec.live.get(&v) {
            None => Ok(VenueGateway::Paper(paper_venue(config, v))),
            Some(live) => live_gateway(config, spec, v, live, start_secs).map_err(|e| format!("exec.live.{v}: {e}")),
        })
        .collect()
}

/// The REST gateway of `venue`.
fn live_gateway(
    config: &Config,
    spec: &EngineSpec,
    venue: Venue,
    live: &LiveVenueConfig,
    start_secs: u64,
) -> Result<VenueGateway, String> {
    let (api_key, secret) = GatewayConfig::credentials_from_env(venue)?;
    let fees = fee_schedule(config, venue);
    let mut c = GatewayConfig::new(live.base_url.clone(), api_key, secret);
    c.recv_window_ms = live.recv_window_ms;
    c.request_timeout = live.request_timeout;
    c.order_limit = live.order_limit;
    c.order_window = live.order_window;
    c.open_capacity = live.open_capacity;
    c.maker_fee_bps_milli = fees.maker_bps_milli;
    c.taker_fee_bps_milli = fees.taker_bps_milli;
    c.client_id_prefix = run_client_id_prefix(&live.client_id_prefix, start_secs);
    c.instruments = instrument_specs(config, venue)?;
    match venue {
        Venue::Binance => {
            // The default usage watch (90 % of the documented limits); a commission charged in
            // a third asset (BNB) is estimated at the taker rate.
            let d = BinanceSpot::default();
            let protocol = BinanceSpot::new(
                d.order_count_limit,
                d.order_count_interval_s,
                d.weight_limit,
                fees.taker_bps_milli,
            );
            RestGateway::new(protocol, c, &spec.index).map(VenueGateway::Binance)
        }
        Venue::Bybit => RestGateway::new(BybitSpot::default(), c, &spec.index).map(VenueGateway::Bybit),
        // Validation refuses these under exec.live.
        Venue::Coinbase | Venue::Oanda => return Err(format!("{venue} order entry is not built yet")),
    }
    .map_err(|e| e.to_string())
}

/// How the configured instruments listed on `venue` are traded there: decimals from
/// `tick_size` and `lot_size` (a tick of 0.01 allows two decimals), assets from `base`/`quote`
/// or the symbol.
pub fn instrument_specs(config: &Config, venue: Venue) -> Result<Vec<InstrumentSpec>, String> {
    config
        .symbols
        .iter()
        .filter(|s| s.venues.contains_key(&venue))
        .map(|s| {
            let assets = s.assets.as_ref().ok_or_else(|| {
                format!(
                    "the base and quote assets of {} are unknown (set symbols[].base and quote)",
                    s.symbol
                )
            })?;
            Ok(InstrumentSpec {
                symbol: s.symbol.as_str().to_string(),
                price_decimals: decimals(s.tick_size.raw()),
                qty_decimals: decimals(s.lot_size.raw()),
                base_asset: assets.base.clone(),
                quote_asset: assets.quote.clone(),
            })
        })
        .collect()
}

/// Decimals of an increment held in units of 10^-8: 8 minus its trailing decimal zeros, so
/// 0.01 (1_000_000) gives 2 and 5 (500_000_000) gives 0.
fn decimals(raw: i64) -> u8 {
    let mut d = 8;
    let mut r = raw;
    while d > 0 && r != 0 && r % 10 == 0 {
        r /= 10;
        d -= 1;
    }
    d
}

/// `<prefix>-<start_secs in base 36>-`: at most [`config::CLIENT_ID_PREFIX_MAX`] + 9
/// characters until the year 4453.
pub fn run_client_id_prefix(prefix: &str, start_secs: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut run = Vec::new();
    let mut n = start_secs;
    loop {
        run.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    run.reverse();
    format!("{prefix}-{}-", String::from_utf8_lossy(&run))
}

/// Execution's parameters: percents become fractions, basis points exact thousandths, and
/// every venue's fee schedule is its paper schedule (what the router and the maker/taker rule
/// assume for gateways that do not report their own).
pub fn exec_params(config: &Config) -> ExecParams {
    let e = &config.exec;
    let pct = |p: Factor| p / Factor::from_num(100);
    let mut fees = [Fees::default(); Venue::COUNT];
    for v in Venue::ALL {
        fees[v.index()] = fee_schedule(config, v);
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

#[cfg(test)]
mod tests {
    use maxx_hot::stage::exec::Gateway;

    use super::*;

    #[test]
    fn decimals_follow_the_increment() {
        assert_eq!(decimals(1_000_000), 2);
        assert_eq!(decimals(1_000), 5);
        assert_eq!(decimals(5_000_000), 2);
        assert_eq!(decimals(1), 8);
        assert_eq!(decimals(100_000_000), 0);
        assert_eq!(decimals(500_000_000), 0);
        assert_eq!(decimals(2_500_000_000), 0);
    }

    #[test]
    fn client_id_prefixes_carry_the_run_in_base_36() {
        assert_eq!(run_client_id_prefix("mx", 0), "mx-0-");
        assert_eq!(run_client_id_prefix("mx", 35), "mx-z-");
        assert_eq!(run_client_id_prefix("mx", 36), "mx-10-");
        // 2024-06-01T00:00:00Z; seven base-36 digits last until 36^7 s (the year 4453).
        assert_eq!(run_client_id_prefix("desk_1", 1_717_200_000), "desk_1-sedk00-");
        let longest = run_client_id_prefix("abcdefg", 36u64.pow(7) - 1);
        assert_eq!(longest.len(), 16, "{longest}");
    }

    #[test]
    fn every_venue_trades_on_paper_unless_configured_live() {
        let config =
            config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent_config.yaml"))
                .expect("the shipped config is valid");
        let spec = spec(&config);
        let gateways = venue_gateways(&config, &spec).expect("paper needs no credentials");
        let modes: Vec<(Venue, &str)> = gateways.iter().map(|g| (g.venue(), g.mode())).collect();
        assert_eq!(modes, [(Venue::Binance, "paper")]);
    }
}
