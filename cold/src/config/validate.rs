//! Stage two of config loading: walk the [`Node`] tree against the schema, collect every
//! problem with its key path, and build the validated [`Config`].
//!
//! Rules, in one place:
//! - The spec's sections (`market_data`, `alpha`, `risk`, `exec`) and their spec keys are
//!   required. Extension keys and sections are optional; a missing one takes the default
//!   written next to it here, in YAML, and that default goes through the same readers as the
//!   file (the shipped `config/agent_config.yaml` spells out the same values).
//! - A key present with `null` is only accepted where null means something (`capture_dir`,
//!   `token_file`, `otlp_endpoint`, `webhook_url`); elsewhere it is an error, not "default".
//! - Unknown keys are errors at every level; in mappings keyed by data (venues, symbols,
//!   stage names) an unknown name is an error too.
//! - Cross-field checks run on whatever parts did validate, so one bad field does not hide
//!   the problems of another.

use std::collections::BTreeMap;
use std::time::Duration;

use maxx_hot::feed::binance::subscription::StreamKind;
use maxx_hot::ids::{InstrumentIndex, Symbol, Venue, VenueSymbol};
use maxx_hot::num::{Money, ONE, Price, Qty};
use maxx_hot::records::Factor;
use maxx_hot::stage::alpha::MeanRevParams;
use maxx_hot::stage::exec::OnPassiveTimeout;
use maxx_hot::topology::{Layout, StageName, WaitKind};

use super::cron::Cron;
use super::model::*;
use super::raw::Node;
use super::walk::{Fields, Range, Walker, index, join, to_factor};

/// `symbols` when the section is absent: the two instruments the default simulator serves.
const DEFAULT_SYMBOLS: &str = "
- {symbol: BTCUSDT, venues: {binance: BTCUSDT}, order_qty: 0.01, max_order_qty: 0.05,
   max_order_notional: 5000, max_position: 0.1}
- {symbol: ETHUSDT, venues: {binance: ETHUSDT}, order_qty: 0.1, max_order_qty: 0.5,
   max_order_notional: 5000, max_position: 1}
";
/// `feeds` when the section is absent: Binance through the embedded simulator.
const DEFAULT_FEEDS: &str = "binance: {enabled: true, url: sim, streams: [trade, bookTicker], combined: true}";
/// `sim` when the section is absent: a Binance simulator for the default symbols.
const DEFAULT_SIM: &str = "binance: {seed: 7, events_per_sec: 2000, bind: '127.0.0.1:0',
  start_prices: {BTCUSDT: 61837.63, ETHUSDT: 2680.51}}";
/// `hot.cores` when absent: the feed on core 0, the rest of the hot path on core 1.
const DEFAULT_CORES: &str = "{md-binance: 0, alpha: 1, risk: 1, exec: 1}";

/// Highest core index accepted (Linux `CPU_SETSIZE` is 1024).
const MAX_CORE: u64 = 1023;
/// One basis point is 1/10000; fee and threshold bounds in bps stay within ±100 %.
const MAX_BPS: i64 = 10_000;

/// Walks the whole document. Returns `None` when any problem was recorded.
pub(crate) fn config(w: &mut Walker, root: &Node) -> Option<Config> {
    if !matches!(root, Node::Map(_)) {
        w.expected(
            "(root)",
            "a mapping of sections (market_data, alpha, risk, exec, ...)",
            root,
        );
        return None;
    }
    let mut top = Fields::open(w, root, "")?;
    let market_data = top.required(w, "market_data", market_data);
    let alpha = top.required(w, "alpha", alpha);
    let risk = top.required(w, "risk", risk);
    let exec = top.required(w, "exec", exec);
    let symbols = top.defaulted(w, "symbols", DEFAULT_SYMBOLS, symbols);
    let feeds = top.defaulted(w, "feeds", DEFAULT_FEEDS, feeds);
    let sim = top.defaulted(w, "sim", DEFAULT_SIM, sims);
    let hot = top.defaulted(w, "hot", "{}", hot);
    let redis = top.defaulted(w, "redis", "{}", redis);
    let http = top.defaulted(w, "http", "{}", http);
    let grpc = top.defaulted(w, "grpc", "{}", grpc);
    let telemetry = top.defaulted(w, "telemetry", "{}", telemetry);
    let alerts = top.defaulted(w, "alerts", "{}", alerts);
    let governor = top.defaulted(w, "governor", "{}", governor);
    let portfolio = top.defaulted(w, "portfolio", "{}", portfolio);
    top.finish(w);

    cross_check(w, symbols.as_deref(), feeds.as_ref(), sim.as_ref());
    live_check(w, symbols.as_deref(), exec.as_ref());

    let symbols = symbols?.into_iter().map(|s| s.full).collect::<Option<Vec<_>>>()?;
    if !w.problems.is_empty() {
        return None;
    }
    if let Err(e) = InstrumentIndex::new(symbols.iter().map(SymbolConfig::index_entry)) {
        // Duplicates are reported per entry above, so this is not reached; it keeps the
        // promise of `Config::instrument_index` independent of those checks.
        w.report("symbols", e.to_string());
        return None;
    }
    Some(Config {
        market_data: market_data?,
        alpha: alpha?,
        risk: risk?,
        exec: exec?,
        symbols,
        feeds: complete(feeds?)?,
        sim: complete(sim?)?,
        hot: hot?,
        redis: redis?,
        http: http?,
        grpc: grpc?,
        telemetry: telemetry?,
        alerts: alerts?,
        governor: governor?,
        portfolio: portfolio?,
    })
}

// --- small typed readers shared by several sections ---

fn millis(w: &mut Walker, n: &Node, p: &str) -> Option<std::time::Duration> {
    w.millis(n, p)
}

fn flag(w: &mut Walker, n: &Node, p: &str) -> Option<bool> {
    w.bool(n, p)
}

fn addr(w: &mut Walker, n: &Node, p: &str) -> Option<std::net::SocketAddr> {
    w.socket_addr(n, p)
}

fn qty(w: &mut Walker, n: &Node, p: &str) -> Option<Qty> {
    w.decimal(n, p, Range::POSITIVE).and_then(|m| Qty::from_raw(m.raw()))
}

fn price(w: &mut Walker, n: &Node, p: &str) -> Option<Price> {
    w.decimal(n, p, Range::POSITIVE).and_then(|m| Price::from_raw(m.raw()))
}

fn money(w: &mut Walker, n: &Node, p: &str) -> Option<Money> {
    w.decimal(n, p, Range::POSITIVE)
}

fn percent(w: &mut Walker, n: &Node, p: &str) -> Option<Factor> {
    w.factor(n, p, Range::above_upto(0, 100))
}

/// A URL with one of `schemes` and something after `://`; `refused` names schemes that are
/// recognised but not supported yet, with the reason.
fn url(w: &mut Walker, n: &Node, p: &str, schemes: &[&str], refused: &[(&str, &str)]) -> Option<String> {
    let what = format!(
        "a {} URL",
        schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let Node::Str(s) = n else {
        w.expected(p, &what, n);
        return None;
    };
    let (scheme, rest) = s.split_once("://").unwrap_or(("", ""));
    // A password in the URL never reaches a message.
    let shown = format!("{:?}", crate::bus::connect::redacted_url(s));
    if let Some((_, why)) = refused.iter().find(|(r, _)| *r == scheme) {
        w.report(p, format!("{scheme}:// is not supported yet ({why}), got {shown}"));
        return None;
    }
    // A network URL needs a host right after `://`; `unix:///path` has an absolute path there.
    let host_ok = if scheme == "unix" {
        rest.len() > 1 && rest.starts_with('/')
    } else {
        !rest.is_empty() && !rest.starts_with('/')
    };
    if !schemes.contains(&scheme) || !host_ok || s.chars().any(char::is_whitespace) {
        w.report(p, format!("must be {what}, got {shown}"));
        return None;
    }
    Some(s.clone())
}

fn opt_addr(w: &mut Walker, n: &Node, p: &str) -> Option<Option<std::net::SocketAddr>> {
    match n {
        Node::Null => Some(None),
        _ => addr(w, n, p).map(Some),
    }
}

fn opt_http_url(w: &mut Walker, n: &Node, p: &str) -> Option<Option<String>> {
    match n {
        Node::Null => Some(None),
        _ => url(w, n, p, &["http", "https"], &[]).map(Some),
    }
}

// --- spec sections ---

fn market_data(w: &mut Walker, node: &Node, path: &str) -> Option<MarketDataConfig> {
    let mut f = Fields::open(w, node, path)?;
    let retry_backoff = f.required(w, "retry_backoff_ms", millis);
    let resubscribe = f.required(w, "resubscribe_sec", |w, n, p| w.secs(n, p));
    let stale_after = f.defaulted(w, "stale_after_ms", "5000", millis);
    let backoff_cap = f.defaulted(w, "backoff_cap_ms", "30000", millis);
    let capture_dir = f.defaulted(w, "capture_dir", "null", |w, n, p| w.opt_path(n, p));
    if let (Some(first), Some(cap)) = (retry_backoff, backoff_cap)
        && cap < first
    {
        w.report(
            &f.key_path("backoff_cap_ms"),
            format!(
                "must be >= retry_backoff_ms ({}), got {}",
                first.as_millis(),
                cap.as_millis()
            ),
        );
    }
    f.finish(w);
    Some(MarketDataConfig {
        retry_backoff: retry_backoff?,
        resubscribe: resubscribe?,
        stale_after: stale_after?,
        backoff_cap: backoff_cap?,
        capture_dir: capture_dir?,
    })
}

fn alpha(w: &mut Walker, node: &Node, path: &str) -> Option<AlphaConfig> {
    let mut f = Fields::open(w, node, path)?;
    let weights = f.required(w, "weights", weights);
    let reweight_cron = f.required(w, "reweight_cron", |w, n, p| {
        let text = w.string(n, p, "a 5-field cron expression such as \"10 0 * * *\"")?;
        Cron::parse(text)
            .map_err(|e| w.report(p, format!("invalid cron expression {text:?}: {e}")))
            .ok()
    });
    let entry = f.defaulted(w, "entry_threshold", "0.5", |w, n, p| {
        w.decimal(n, p, Range::above_upto(0, 1))
    });
    let exit = f.defaulted(w, "exit_threshold", "0.1", |w, n, p| {
        w.decimal(n, p, Range::from_below(0, 1))
    });
    let momentum = f.defaulted(w, "momentum", "{}", momentum);
    let mean_rev = f.defaulted(w, "mean_rev", "{}", mean_rev);
    let breakout = f.defaulted(w, "breakout", "{}", breakout);
    let sentiment = f.defaulted(w, "sentiment", "{}", sentiment);
    if let (Some(entry), Some(exit)) = (entry, exit)
        && exit >= entry
    {
        w.report(
            &f.key_path("exit_threshold"),
            format!("must be below entry_threshold ({entry}), got {exit}"),
        );
    }
    f.finish(w);
    Some(AlphaConfig {
        weights: weights?,
        reweight_cron: reweight_cron?,
        entry_threshold: to_factor(entry?)?,
        exit_threshold: to_factor(exit?)?,
        momentum: momentum?,
        mean_rev: mean_rev?,
        breakout: breakout?,
        sentiment: sentiment?,
    })
}

/// Longest sentiment half-life: one week.
const MAX_HALF_LIFE_SEC: u64 = 7 * 86_400;

fn sentiment(w: &mut Walker, node: &Node, path: &str) -> Option<SentimentConfig> {
    let mut f = Fields::open(w, node, path)?;
    let half_life = f.defaulted(w, "half_life_sec", "900", |w, n, p| {
        w.int(n, p, 1, MAX_HALF_LIFE_SEC).map(Duration::from_secs)
    });
    f.finish(w);
    Some(SentimentConfig { half_life: half_life? })
}

fn weights(w: &mut Walker, node: &Node, path: &str) -> Option<Weights> {
    let mut f = Fields::open(w, node, path)?;
    let exact: Vec<Option<Money>> = Weights::KEYS
        .iter()
        .map(|key| f.required(w, key, |w, n, p| w.decimal(n, p, Range::closed(0, 1))))
        .collect();
    f.finish(w);
    let exact: Vec<Money> = exact.into_iter().collect::<Option<_>>()?;
    // The sum is taken on the exact decimals: 0.4 + 0.3 + 0.3 is exactly 1, whatever the
    // binary fixed-point images of the parts add up to.
    let sum: i64 = exact.iter().map(|m| m.raw()).sum();
    if sum != ONE {
        let shown = Money::from_raw(sum).map_or_else(|| sum.to_string(), |m| m.to_string());
        w.report(path, format!("weights must sum to exactly 1, got {shown}"));
        return None;
    }
    let f: Vec<Factor> = exact.into_iter().map(to_factor).collect::<Option<_>>()?;
    Some(Weights {
        momentum: f[0],
        mean_rev: f[1],
        breakout: f[2],
        sentiment: f[3],
    })
}

fn momentum(w: &mut Walker, node: &Node, path: &str) -> Option<MomentumConfig> {
    let mut f = Fields::open(w, node, path)?;
    let length = |w: &mut Walker, n: &Node, p: &str| w.int(n, p, 1, 1_000_000).map(|v| v as u32);
    let fast = f.defaulted(w, "fast", "10", length);
    let slow = f.defaulted(w, "slow", "50", length);
    let scale_bps = f.defaulted(w, "scale_bps", "1", |w, n, p| {
        w.int(n, p, 1, MAX_BPS as u64).map(|v| v as u32)
    });
    if let (Some(fast), Some(slow)) = (fast, slow)
        && fast >= slow
    {
        w.report(
            &f.key_path("fast"),
            format!("must be less than slow ({slow}), got {fast}"),
        );
    }
    f.finish(w);
    Some(MomentumConfig {
        fast: fast?,
        slow: slow?,
        scale_bps: scale_bps?,
    })
}

/// The longest rolling window a family accepts (the hot mean-reversion z-score needs ≤ 2¹⁷).
const MAX_WINDOW: u64 = MeanRevParams::MAX_WINDOW as u64;

fn mean_rev(w: &mut Walker, node: &Node, path: &str) -> Option<MeanRevConfig> {
    let mut f = Fields::open(w, node, path)?;
    let window = f.defaulted(w, "window", "50", |w, n, p| {
        w.int(n, p, 2, MAX_WINDOW).map(|v| v as u32)
    });
    let z_scale = f.defaulted(w, "z_scale", "3", |w, n, p| w.decimal(n, p, Range::above_upto(0, 100)));
    f.finish(w);
    Some(MeanRevConfig {
        window: window?,
        z_scale: to_factor(z_scale?)?,
    })
}

fn breakout(w: &mut Walker, node: &Node, path: &str) -> Option<BreakoutConfig> {
    let mut f = Fields::open(w, node, path)?;
    let window = f.defaulted(w, "window", "100", |w, n, p| {
        w.int(n, p, 2, MAX_WINDOW).map(|v| v as u32)
    });
    let confirm = f.defaulted(w, "confirm", "10", |w, n, p| {
        w.int(n, p, 1, MAX_WINDOW).map(|v| v as u32)
    });
    let volume_mult = f.defaulted(w, "volume_mult", "1", |w, n, p| w.decimal(n, p, Range::closed(0, 1000)));
    let hold = f.defaulted(w, "hold", "20", |w, n, p| w.int(n, p, 1, 1_000_000).map(|v| v as u32));
    if let (Some(window), Some(confirm)) = (window, confirm)
        && confirm > window
    {
        w.report(
            &f.key_path("confirm"),
            format!("must be at most window ({window}), got {confirm}"),
        );
    }
    f.finish(w);
    Some(BreakoutConfig {
        window: window?,
        confirm: confirm?,
        volume_mult: to_factor(volume_mult?)?,
        hold: hold?,
    })
}

fn risk(w: &mut Walker, node: &Node, path: &str) -> Option<RiskConfig> {
    let mut f = Fields::open(w, node, path)?;
    let max_trade_risk_pct = f.required(w, "max_trade_risk_pct", percent);
    let daily_drawdown_pct = f.required(w, "daily_drawdown_pct", percent);
    let kill_switch = f.defaulted(w, "kill_switch", "false", flag);
    let price_collar_pct = f.defaulted(w, "price_collar_pct", "1.0", percent);
    let max_gross_notional = f.defaulted(w, "max_gross_notional", "50000", |w, n, p| {
        w.decimal(n, p, Range::above_upto(0, i64::MAX / ONE))
    });
    let max_orders_per_sec = f.defaulted(w, "max_orders_per_sec", "20", |w, n, p| {
        w.int(n, p, 1, 100_000).map(|v| v as u32)
    });
    let sizing = f.defaulted(w, "sizing", "kelly", |w, n, p| {
        w.name(n, p, &["kelly", "fixed"], |s| match s {
            "kelly" => Some(SizingMode::Kelly),
            "fixed" => Some(SizingMode::Fixed),
            _ => None,
        })
    });
    let kelly_damping = f.defaulted(w, "kelly_damping", "0.5", |w, n, p| {
        w.factor(n, p, Range::above_upto(0, 1))
    });
    let reject_ratio_pct = f.defaulted(w, "reject_ratio_pct", "2.0", percent);
    let reject_window = f.defaulted(w, "reject_window", "200", |w, n, p| {
        w.int(n, p, 10, 100_000).map(|v| v as u32)
    });
    let stop = f.defaulted(w, "stop", "{}", stop);
    let state_file = f.defaulted(w, "state_file", "'maxx-state/risk.json'", |w, n, p| w.opt_path(n, p));
    let kill_file = f.defaulted(w, "kill_file", "'maxx-state/KILL'", |w, n, p| w.opt_path(n, p));
    f.finish(w);
    Some(RiskConfig {
        max_trade_risk_pct: max_trade_risk_pct?,
        daily_drawdown_pct: daily_drawdown_pct?,
        kill_switch: kill_switch?,
        price_collar_pct: price_collar_pct?,
        max_gross_notional: max_gross_notional?,
        max_orders_per_sec: max_orders_per_sec?,
        sizing: sizing?,
        kelly_damping: kelly_damping?,
        reject_ratio_pct: reject_ratio_pct?,
        reject_window: reject_window?,
        stop: stop?,
        state_file: state_file?,
        kill_file: kill_file?,
    })
}

fn stop(w: &mut Walker, node: &Node, path: &str) -> Option<StopConfig> {
    let mut f = Fields::open(w, node, path)?;
    let vol_mult = f.defaulted(w, "vol_mult", "4", |w, n, p| w.factor(n, p, Range::above_upto(0, 1000)));
    let vol_window = f.defaulted(w, "vol_window", "50", |w, n, p| {
        w.int(n, p, 2, MAX_WINDOW).map(|v| v as u32)
    });
    let min_ticks = f.defaulted(w, "min_ticks", "10", |w, n, p| {
        w.int(n, p, 1, 1_000_000).map(|v| v as u32)
    });
    let manual_pct = f.defaulted(w, "manual_pct", "1.0", percent);
    f.finish(w);
    Some(StopConfig {
        vol_mult: vol_mult?,
        vol_window: vol_window?,
        min_ticks: min_ticks?,
        manual_pct: manual_pct?,
    })
}

fn exec(w: &mut Walker, node: &Node, path: &str) -> Option<ExecConfig> {
    let mut f = Fields::open(w, node, path)?;
    let slip = f.required(w, "slip_tolerance_pct", |w, n, p| w.factor(n, p, Range::closed(0, 100)));
    let rebate = f.required(w, "maker_rebate_threshold_bps", |w, n, p| {
        w.factor(n, p, Range::closed(0, MAX_BPS))
    });
    let urgent_score = f.defaulted(w, "urgent_score", "0.8", |w, n, p| w.factor(n, p, Range::closed(0, 1)));
    let passive_timeout = f.defaulted(w, "passive_timeout_ms", "2000", |w, n, p| {
        w.int(n, p, 1, 3_600_000).map(Duration::from_millis)
    });
    let max_reprices = f.defaulted(w, "max_reprices", "2", |w, n, p| w.int(n, p, 0, 100).map(|v| v as u32));
    let on_passive_timeout = f.defaulted(w, "on_passive_timeout", "take", |w, n, p| {
        w.name(n, p, &["take", "cancel"], |s| match s {
            "take" => Some(OnPassiveTimeout::Take),
            "cancel" => Some(OnPassiveTimeout::Cancel),
            _ => None,
        })
    });
    let reject_ratio_pct = f.defaulted(w, "reject_ratio_pct", "2.0", percent);
    let health_window = f.defaulted(w, "health_window", "50", |w, n, p| {
        w.int(n, p, 1, MAX_HEALTH_WINDOW).map(|v| v as u32)
    });
    let probation = f.defaulted(w, "probation_ms", "60000", |w, n, p| {
        w.int(n, p, 1, 86_400_000).map(Duration::from_millis)
    });
    let latency_penalty = f.defaulted(w, "latency_penalty_bps_per_ms", "0.1", |w, n, p| {
        fee_milli(w, n, p, Range::closed(0, MAX_BPS))
    });
    let depth_penalty = f.defaulted(w, "depth_penalty_bps", "10", |w, n, p| {
        fee_milli(w, n, p, Range::closed(0, MAX_BPS))
    });
    let paper = f.defaulted(w, "paper", "{}", paper);
    let live = f.defaulted(w, "live", "{}", |w, n, p| {
        per_venue_with(w, n, p, live_venue).and_then(complete)
    });
    f.finish(w);
    Some(ExecConfig {
        slip_tolerance_pct: slip?,
        maker_rebate_threshold_bps: rebate?,
        urgent_score: urgent_score?,
        passive_timeout: passive_timeout?,
        max_reprices: max_reprices?,
        on_passive_timeout: on_passive_timeout?,
        reject_ratio_pct: reject_ratio_pct?,
        health_window: health_window?,
        probation: probation?,
        latency_penalty_bps_milli_per_ms: latency_penalty?,
        depth_penalty_bps_milli: depth_penalty?,
        paper: paper?,
        live: live?,
    })
}

/// Largest `exec.health_window`: the window is a table per venue, allocated at start.
const MAX_HEALTH_WINDOW: u64 = 100_000;

/// Largest `exec.paper.latency_us`: ten seconds.
const MAX_LATENCY_US: u64 = 10_000_000;

fn taker_fee(w: &mut Walker, n: &Node, p: &str) -> Option<i64> {
    fee_milli(w, n, p, Range::closed(0, MAX_BPS))
}

fn maker_fee(w: &mut Walker, n: &Node, p: &str) -> Option<i64> {
    fee_milli(w, n, p, Range::closed(-MAX_BPS, MAX_BPS))
}

fn latency_us(w: &mut Walker, n: &Node, p: &str) -> Option<Duration> {
    w.int(n, p, 0, MAX_LATENCY_US).map(Duration::from_micros)
}

fn paper(w: &mut Walker, node: &Node, path: &str) -> Option<PaperConfig> {
    let mut f = Fields::open(w, node, path)?;
    let taker = f.defaulted(w, "taker_fee_bps", "7.5", taker_fee);
    let maker = f.defaulted(w, "maker_fee_bps", "2.5", maker_fee);
    let latency = f.defaulted(w, "latency_us", "1000", latency_us);
    let balance = f.defaulted(w, "starting_balance", "100000", money);
    let venues = f.defaulted(w, "venues", "{}", |w, n, p| per_venue(w, n, p, paper_venue));
    f.finish(w);
    let (taker, maker, latency) = (taker?, maker?, latency?);
    let venues = complete(venues?)?
        .into_iter()
        .map(|(venue, (t, m, l))| {
            let entry = PaperVenueConfig {
                taker_fee_bps_milli: t.unwrap_or(taker),
                maker_fee_bps_milli: m.unwrap_or(maker),
                latency: l.unwrap_or(latency),
            };
            (venue, entry)
        })
        .collect();
    Some(PaperConfig {
        taker_fee_bps_milli: taker,
        maker_fee_bps_milli: maker,
        latency,
        starting_balance: balance?,
        venues,
    })
}

/// One `exec.paper.venues` entry: each key optional (the section's value applies).
type PaperVenueParts = (Option<i64>, Option<i64>, Option<Duration>);

fn paper_venue(w: &mut Walker, node: &Node, path: &str) -> Option<PaperVenueParts> {
    let mut f = Fields::open(w, node, path)?;
    let taker = optional(w, &mut f, "taker_fee_bps", taker_fee);
    let maker = optional(w, &mut f, "maker_fee_bps", maker_fee);
    let latency = optional(w, &mut f, "latency_us", latency_us);
    f.finish(w);
    Some((taker?, maker?, latency?))
}

/// A key that may be absent: `Some(None)` when it is, `None` when it is present but invalid
/// (reported).
fn optional<T>(
    w: &mut Walker,
    f: &mut Fields<'_>,
    key: &str,
    read: impl FnOnce(&mut Walker, &Node, &str) -> Option<T>,
) -> Option<Option<T>> {
    let path = f.key_path(key);
    match f.take(key) {
        Some(node) => read(w, node, &path).map(Some),
        None => Some(None),
    }
}

/// A fee in basis points, returned in exact thousandths of a basis point.
fn fee_milli(w: &mut Walker, n: &Node, p: &str, range: Range) -> Option<i64> {
    let bps = w.decimal(n, p, range)?;
    // One thousandth of a bp is 0.001, i.e. 100_000 raw units of 10^-8.
    const MILLI: i64 = ONE / 1_000;
    if bps.raw() % MILLI != 0 {
        w.report(
            p,
            format!("must have at most 3 decimals (thousandths of a basis point), got {bps}"),
        );
        return None;
    }
    Some(bps.raw() / MILLI)
}

/// The venues whose order entry is built: `exec.live` accepts only these.
const LIVE_VENUES: [Venue; 2] = [Venue::Binance, Venue::Bybit];

fn live_venue(w: &mut Walker, venue: Venue, node: &Node, path: &str) -> Option<LiveVenueConfig> {
    if !LIVE_VENUES.contains(&venue) {
        w.report(
            path,
            format!(
                "{venue} order entry is not built yet (live order entry exists for binance and bybit); \
                 leave {venue} out of exec.live to trade it on its paper venue"
            ),
        );
        return None;
    }
    let mut f = Fields::open(w, node, path)?;
    let base_url = f.required(w, "base_url", base_url);
    let recv_window_ms = f.defaulted(w, "recv_window_ms", "5000", |w, n, p| {
        w.int(n, p, 1, 60_000).map(|v| v as u32)
    });
    let request_timeout = f.defaulted(w, "request_timeout_ms", "2000", |w, n, p| {
        w.int(n, p, 1, 60_000).map(Duration::from_millis)
    });
    let order_limit = f.defaulted(w, "order_limit", "10", |w, n, p| {
        w.int(n, p, 1, 100_000).map(|v| v as u32)
    });
    let order_window = f.defaulted(w, "order_window_ms", "1000", |w, n, p| {
        w.int(n, p, 1, 3_600_000).map(Duration::from_millis)
    });
    let open_capacity = f.defaulted(w, "open_capacity", "1024", |w, n, p| {
        w.int(n, p, 1, MAX_OPEN_CAPACITY).map(|v| v as usize)
    });
    let client_id_prefix = f.defaulted(w, "client_id_prefix", "mx", client_id_prefix);
    f.finish(w);
    Some(LiveVenueConfig {
        base_url: base_url?,
        recv_window_ms: recv_window_ms?,
        request_timeout: request_timeout?,
        order_limit: order_limit?,
        order_window: order_window?,
        open_capacity: open_capacity?,
        client_id_prefix: client_id_prefix?,
    })
}

/// Largest `exec.live.<venue>.open_capacity`: the order table and Execution's report backlog
/// are sized by it at start.
const MAX_OPEN_CAPACITY: u64 = 65_536;

/// A venue's REST endpoint: scheme, host and port only, since every request goes to the
/// venue's documented path.
fn base_url(w: &mut Walker, n: &Node, p: &str) -> Option<String> {
    let url = url(w, n, p, &["http", "https"], &[])?;
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    match rest.find('/') {
        Some(i) if rest[i..] != *"/" => {
            w.report(
                p,
                format!(
                    "must be scheme://host[:port] without a path (requests go to the venue's own paths), got {}",
                    n.describe()
                ),
            );
            None
        }
        _ => Some(url.trim_end_matches('/').to_string()),
    }
}

fn client_id_prefix(w: &mut Walker, n: &Node, p: &str) -> Option<String> {
    let what = format!("1 to {CLIENT_ID_PREFIX_MAX} characters of A-Z a-z 0-9 - _");
    let text = w.string(n, p, &what)?;
    let ok = text.len() <= CLIENT_ID_PREFIX_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        w.expected(p, &what, n);
        return None;
    }
    Some(text.to_string())
}

/// Ties `exec.live` to `symbols`: a live venue must list a symbol, and every symbol it lists
/// needs its assets (to read fees charged in either).
fn live_check(w: &mut Walker, symbols: Option<&[SymbolParts]>, exec: Option<&ExecConfig>) {
    let (Some(symbols), Some(exec)) = (symbols, exec) else {
        return;
    };
    // With a symbol entry invalid its venues are unknown: nothing is guessed.
    if symbols.iter().any(|s| s.full.is_none()) {
        return;
    }
    for venue in exec.live.keys() {
        let mapped: Vec<(usize, &SymbolConfig)> = symbols
            .iter()
            .filter_map(|s| s.full.as_ref())
            .enumerate()
            .filter(|(_, s)| s.venues.contains_key(venue))
            .collect();
        if mapped.is_empty() {
            w.report(
                &format!("exec.live.{venue}"),
                format!("no symbol is mapped on {venue} (add {venue} under symbols[].venues)"),
            );
        }
        for (i, s) in mapped {
            if s.assets.is_none() {
                w.report(
                    &index("symbols", i),
                    format!(
                        "the base and quote assets of {} cannot be derived from its name: add `base:` and \
                         `quote:` (exec.live.{venue} trades it)",
                        s.symbol
                    ),
                );
            }
        }
    }
}

// --- extension sections ---

/// What validated of one `symbols` entry; cross-checks use the parts, the config the whole.
struct SymbolParts {
    symbol: Option<Symbol>,
    venues: Option<BTreeMap<Venue, VenueSymbol>>,
    tick_size: Option<Price>,
    full: Option<SymbolConfig>,
}

fn symbols(w: &mut Walker, node: &Node, path: &str) -> Option<Vec<SymbolParts>> {
    let items = w.list(node, path)?;
    if items.is_empty() {
        w.report(path, "must list at least one symbol");
        return None;
    }
    let mut parts: Vec<SymbolParts> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = index(path, i);
        let part = symbol_entry(w, item, &item_path);
        if let Some(sym) = part.symbol
            && let Some(j) = parts.iter().position(|p| p.symbol == Some(sym))
        {
            w.report(
                &join(&item_path, "symbol"),
                format!("duplicate symbol {sym} (also {})", index(path, j)),
            );
        }
        for (venue, name) in part.venues.iter().flatten() {
            let clash = parts
                .iter()
                .position(|p| p.venues.as_ref().and_then(|v| v.get(venue)) == Some(name));
            if let Some(j) = clash {
                w.report(
                    &join(&join(&item_path, "venues"), venue.name()),
                    format!("{name} on {venue} is already mapped by {}", index(path, j)),
                );
            }
        }
        parts.push(part);
    }
    Some(parts)
}

fn asset_code(w: &mut Walker, n: &Node, p: &str) -> Option<String> {
    const WHAT: &str = "an asset code of 1 to 16 ASCII letters and digits, such as BTC";
    let text = w.string(n, p, WHAT)?;
    if !Assets::valid_code(text) {
        w.expected(p, WHAT, n);
        return None;
    }
    Some(text.to_string())
}

fn symbol_entry(w: &mut Walker, node: &Node, path: &str) -> SymbolParts {
    let Some(mut f) = Fields::open(w, node, path) else {
        return SymbolParts {
            symbol: None,
            venues: None,
            tick_size: None,
            full: None,
        };
    };
    let symbol = f.required(w, "symbol", |w, n, p| {
        let text = w.string(n, p, "a symbol name")?;
        Symbol::new(text)
            .map_err(|e| w.report(p, format!("invalid symbol {text:?}: {e}")))
            .ok()
    });
    let venues = f.required(w, "venues", venue_names);
    let order_qty = f.required(w, "order_qty", qty);
    let max_order_qty = f.required(w, "max_order_qty", qty);
    let max_order_notional = f.required(w, "max_order_notional", money);
    let max_position = f.required(w, "max_position", qty);
    let tick_size = f.defaulted(w, "tick_size", "0.01", price);
    let lot_size = f.defaulted(w, "lot_size", "0.00001", qty);
    let min_notional = f.defaulted(w, "min_notional", "10", |w, n, p| {
        w.decimal(n, p, Range::closed(0, 1_000_000_000))
    });
    let base = optional(w, &mut f, "base", asset_code);
    let quote = optional(w, &mut f, "quote", asset_code);
    let assets = match (base, quote) {
        (Some(Some(base)), Some(Some(quote))) => Some(Some(Assets { base, quote })),
        (Some(None), Some(None)) => Some(symbol.and_then(|s| Assets::from_symbol(s.as_str()))),
        (Some(Some(_)), Some(None)) => {
            w.report(
                &f.key_path("quote"),
                "required when base is given (the two go together)",
            );
            None
        }
        (Some(None), Some(Some(_))) => {
            w.report(
                &f.key_path("base"),
                "required when quote is given (the two go together)",
            );
            None
        }
        // Present but invalid: reported.
        _ => None,
    };
    if let Some(order) = order_qty {
        for (key, limit) in [("max_order_qty", max_order_qty), ("max_position", max_position)] {
            if let Some(l) = limit
                && l < order
            {
                w.report(&f.key_path(key), format!("must be >= order_qty ({order}), got {l}"));
            }
        }
        if let Some(lot) = lot_size
            && order.raw() % lot.raw() != 0
        {
            w.report(
                &f.key_path("order_qty"),
                format!("must be a multiple of lot_size ({lot}), got {order}"),
            );
        }
    }
    f.finish(w);
    let full = (|| {
        Some(SymbolConfig {
            symbol: symbol?,
            venues: venues.clone()?,
            order_qty: order_qty?,
            max_order_qty: max_order_qty?,
            max_order_notional: max_order_notional?,
            max_position: max_position?,
            tick_size: tick_size?,
            lot_size: lot_size?,
            min_notional: min_notional?,
            assets: assets.clone()?,
        })
    })();
    SymbolParts {
        symbol,
        venues,
        tick_size,
        full,
    }
}

/// Per venue, the entry's validated value or `None` where that entry was invalid (and reported).
///
/// Keeping the venues whose entry failed lets cross-checks tell "absent" from "invalid".
type PerVenue<T> = BTreeMap<Venue, Option<T>>;

/// A mapping keyed by venue name; unknown venue names are reported and left out.
fn per_venue<T>(
    w: &mut Walker,
    node: &Node,
    path: &str,
    mut read: impl FnMut(&mut Walker, &Node, &str) -> Option<T>,
) -> Option<PerVenue<T>> {
    per_venue_with(w, node, path, |w, _, n, p| read(w, n, p))
}

/// [`per_venue`] for entries whose rules depend on the venue.
fn per_venue_with<T>(
    w: &mut Walker,
    node: &Node,
    path: &str,
    mut read: impl FnMut(&mut Walker, Venue, &Node, &str) -> Option<T>,
) -> Option<PerVenue<T>> {
    let mut f = Fields::open(w, node, path)?;
    let mut out = BTreeMap::new();
    for (key, key_path, value) in f.rest() {
        match Venue::from_name(&key) {
            Some(venue) => {
                out.insert(venue, read(w, venue, value, &key_path));
            }
            None => {
                let known: Vec<&str> = Venue::ALL.iter().map(|v| v.name()).collect();
                w.report(
                    &key_path,
                    format!("unknown venue (expected one of {})", known.join(", ")),
                );
            }
        }
    }
    f.finish(w);
    Some(out)
}

/// The map if every entry validated.
fn complete<T>(map: PerVenue<T>) -> Option<BTreeMap<Venue, T>> {
    map.into_iter().map(|(venue, v)| v.map(|v| (venue, v))).collect()
}

fn venue_names(w: &mut Walker, node: &Node, path: &str) -> Option<BTreeMap<Venue, VenueSymbol>> {
    if matches!(node, Node::Map(m) if m.is_empty()) {
        w.report(path, "must map at least one venue");
        return None;
    }
    let map = per_venue(w, node, path, |w, n, p| {
        let text = w.string(n, p, "the venue's symbol name")?;
        VenueSymbol::new(text)
            .map_err(|e| w.report(p, format!("invalid venue symbol {text:?}: {e}")))
            .ok()
    })?;
    // Unknown venue names were reported; an empty result then means nothing valid was mapped.
    complete(map).filter(|m| !m.is_empty())
}

fn feeds(w: &mut Walker, node: &Node, path: &str) -> Option<PerVenue<FeedConfig>> {
    let map = per_venue(w, node, path, feed)?;
    for (venue, f) in &map {
        if let Some(f) = f {
            let streams = format!("{path}.{venue}.streams");
            if f.streams.contains(&StreamKind::AggTrade) && *venue != Venue::Binance {
                w.report(&streams, "aggTrade is a Binance stream; use trade");
            } else if f.streams.contains(&StreamKind::AggTrade) && f.streams.contains(&StreamKind::Trade) {
                w.report(
                    &streams,
                    "trade and aggTrade both carry every trade: subscribe one of them",
                );
            }
        }
        let Some(FeedConfig {
            url: FeedUrl::Ws(url),
            account_id,
            ..
        }) = f
        else {
            continue;
        };
        let http = url.starts_with("http://") || url.starts_with("https://");
        let p = format!("{path}.{venue}.url");
        if *venue == Venue::Oanda && !http {
            w.report(
                &p,
                format!("oanda streams prices over HTTP: expected an http:// or https:// URL, got {url:?}"),
            );
        } else if *venue != Venue::Oanda && http {
            w.report(
                &p,
                format!("{venue} streams over WebSocket: expected a ws:// or wss:// URL, got {url:?}"),
            );
        }
        if *venue == Venue::Oanda && account_id.is_none() {
            w.report(
                &format!("{path}.{venue}.account_id"),
                "required when oanda connects to a real endpoint",
            );
        }
    }
    let any_enabled = map.values().any(|f| f.as_ref().is_some_and(|f| f.enabled));
    if !any_enabled && map.values().all(Option::is_some) {
        w.report(path, "at least one feed must be enabled");
    }
    Some(map)
}

fn feed(w: &mut Walker, node: &Node, path: &str) -> Option<FeedConfig> {
    let mut f = Fields::open(w, node, path)?;
    let enabled = f.defaulted(w, "enabled", "true", flag);
    let url = f.defaulted(w, "url", "sim", feed_url);
    let streams = f.defaulted(w, "streams", "[trade, bookTicker]", streams);
    let combined = f.defaulted(w, "combined", "true", flag);
    let account_id = f.defaulted(w, "account_id", "null", |w, n, p| {
        w.opt_string(n, p, "an account id or null")
            .map(|o| o.map(str::to_string))
    });
    let token_env = f.defaulted(w, "token_env", "MAXX_FEED_TOKEN", |w, n, p| {
        w.string(n, p, "an environment variable name").map(str::to_string)
    });
    f.finish(w);
    Some(FeedConfig {
        enabled: enabled?,
        url: url?,
        streams: streams?,
        combined: combined?,
        account_id: account_id?,
        token_env: token_env?,
    })
}

fn feed_url(w: &mut Walker, n: &Node, p: &str) -> Option<FeedUrl> {
    if matches!(n, Node::Str(s) if s == "sim") {
        return Some(FeedUrl::Sim);
    }
    match n {
        Node::Str(s) if s.contains("://") => url(w, n, p, &["ws", "wss", "http", "https"], &[]).map(FeedUrl::Ws),
        _ => {
            w.expected(
                p,
                "\"sim\" or a ws://, wss:// (or, for oanda, http:// or https://) URL",
                n,
            );
            None
        }
    }
}

fn streams(w: &mut Walker, node: &Node, path: &str) -> Option<Vec<StreamKind>> {
    let items = w.list(node, path)?;
    if items.is_empty() {
        w.report(path, "must list at least one stream");
        return None;
    }
    let names = [
        StreamKind::Trade.name(),
        StreamKind::BookTicker.name(),
        StreamKind::AggTrade.name(),
    ];
    let mut out: Vec<StreamKind> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = index(path, i);
        match w.name(item, &p, &names, StreamKind::from_name) {
            Some(kind) if out.contains(&kind) => {
                w.report(&p, format!("duplicate stream {}", kind.name()));
                ok = false;
            }
            Some(kind) => out.push(kind),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn sims(w: &mut Walker, node: &Node, path: &str) -> Option<PerVenue<SimConfig>> {
    per_venue(w, node, path, sim)
}

fn sim(w: &mut Walker, node: &Node, path: &str) -> Option<SimConfig> {
    let mut f = Fields::open(w, node, path)?;
    let seed = f.defaulted(w, "seed", "7", |w, n, p| w.int(n, p, 0, u64::MAX));
    let events = f.defaulted(w, "events_per_sec", "2000", |w, n, p| {
        w.int(n, p, 1, 1_000_000).map(|v| v as u32)
    });
    let bind = f.defaulted(w, "bind", "'127.0.0.1:0'", addr);
    let start_prices = f.defaulted(w, "start_prices", "{}", start_prices);
    f.finish(w);
    Some(SimConfig {
        seed: seed?,
        events_per_sec: events?,
        bind: bind?,
        start_prices: start_prices?,
    })
}

fn start_prices(w: &mut Walker, node: &Node, path: &str) -> Option<BTreeMap<Symbol, Price>> {
    let mut f = Fields::open(w, node, path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_path, value) in f.rest() {
        let symbol = Symbol::new(&key)
            .map_err(|e| w.report(&key_path, format!("invalid symbol name: {e}")))
            .ok();
        match (symbol, price(w, value, &key_path)) {
            (Some(s), Some(p)) => {
                out.insert(s, p);
            }
            _ => ok = false,
        }
    }
    f.finish(w);
    ok.then_some(out)
}

fn hot(w: &mut Walker, node: &Node, path: &str) -> Option<HotConfig> {
    let mut f = Fields::open(w, node, path)?;
    let layout = f.defaulted(w, "layout", "auto", |w, n, p| {
        w.name(n, p, &["auto", "pinned", "fused"], Layout::from_name)
    });
    let wait = f.defaulted(w, "wait", "spin_yield", |w, n, p| {
        w.name(n, p, &["spin", "spin_yield", "park"], WaitKind::from_name)
    });
    let cores = f.defaulted(w, "cores", DEFAULT_CORES, cores);
    let histogram_interval = f.defaulted(w, "histogram_interval_ms", "100", millis);
    let status_interval = f.defaulted(w, "status_interval_ms", "1000", millis);
    let lock_memory = f.defaulted(w, "lock_memory", "auto", |w, n, p| {
        use maxx_hot::runtime::host::LockMemory;
        // `true`/`false` are YAML booleans; `auto` a name.
        match n {
            Node::Bool(true) => Some(LockMemory::On),
            Node::Bool(false) => Some(LockMemory::Off),
            other => w.name(other, p, &["auto", "true", "false"], |s| match s {
                "auto" => Some(LockMemory::Auto),
                "true" => Some(LockMemory::On),
                "false" => Some(LockMemory::Off),
                _ => None,
            }),
        }
    });
    f.finish(w);
    Some(HotConfig {
        layout: layout?,
        wait: wait?,
        cores: cores?,
        histogram_interval: histogram_interval?,
        status_interval: status_interval?,
        lock_memory: lock_memory?,
    })
}

fn cores(w: &mut Walker, node: &Node, path: &str) -> Option<BTreeMap<StageName, usize>> {
    let mut f = Fields::open(w, node, path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, key_path, value) in f.rest() {
        let Some(stage) = StageName::from_name(&key) else {
            w.report(&key_path, "unknown stage (expected md-<venue>, alpha, risk or exec)");
            ok = false;
            continue;
        };
        match w.int(value, &key_path, 0, MAX_CORE) {
            Some(core) => {
                out.insert(stage, core as usize);
            }
            None => ok = false,
        }
    }
    f.finish(w);
    ok.then_some(out)
}

fn redis(w: &mut Walker, node: &Node, path: &str) -> Option<RedisConfig> {
    let mut f = Fields::open(w, node, path)?;
    let enabled = f.defaulted(w, "enabled", "false", flag);
    let url = f.defaulted(w, "url", "'redis://127.0.0.1:6379'", |w, n, p| {
        url(w, n, p, &["redis", "rediss", "unix"], &[])
    });
    let password_env = f.defaulted(w, "password_env", "null", |w, n, p| {
        let name = w.opt_string(n, p, "an environment variable name or null")?;
        match name {
            Some(v) if v.contains(['=', '\0']) || v.chars().any(char::is_whitespace) => {
                w.report(p, format!("must be an environment variable name, got {v:?}"));
                None
            }
            v => Some(v.map(str::to_string)),
        }
    });
    let tls_ca_file = f.defaulted(w, "tls_ca_file", "null", |w, n, p| w.opt_path(n, p));
    let connect_timeout = f.defaulted(w, "connect_timeout_ms", "2000", millis);
    let response_timeout = f.defaulted(w, "response_timeout_ms", "5000", millis);
    let reconnect_min = f.defaulted(w, "reconnect_min_ms", "50", millis);
    let reconnect_max = f.defaulted(w, "reconnect_max_ms", "5000", millis);
    let instance = f.defaulted(w, "instance", "maxx", |w, n, p| {
        let name = w.string(n, p, "an instance name")?;
        let ok = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            w.report(
                p,
                format!("must be 1 to 64 characters of A-Z a-z 0-9 _ . -, got {name:?}"),
            );
            return None;
        }
        Some(name.to_string())
    });
    let queue = f.defaulted(w, "queue", "65536", |w, n, p| w.int(n, p, 1, 1 << 24));
    let batch = f.defaulted(w, "batch", "256", |w, n, p| w.int(n, p, 1, 65_536));
    let retention = f.defaulted(w, "retention", "{}", stream_retention);
    let journal_dir = f.defaulted(w, "journal_dir", "null", |w, n, p| w.opt_path(n, p));
    let journal_fsync = f.defaulted(w, "journal_fsync", "{every_ms: 100}", journal_fsync);
    let pnl_every = f.defaulted(w, "pnl_every_ms", "1000", millis);
    // Cross-field checks, each on the parts that did validate.
    if let (Some(u), Some(Some(_))) = (&url, &password_env)
        && crate::bus::connect::url_has_password(u)
    {
        w.report(
            &f.key_path("password_env"),
            "must be null when redis.url carries a password (give the password one way)",
        );
    }
    if let (Some(u), Some(Some(_))) = (&url, &tls_ca_file)
        && !u.starts_with("rediss://")
    {
        w.report(
            &f.key_path("tls_ca_file"),
            format!(
                "needs a rediss:// redis.url, got {:?}",
                crate::bus::connect::redacted_url(u)
            ),
        );
    }
    if let (Some(min), Some(max)) = (reconnect_min, reconnect_max)
        && max < min
    {
        w.report(
            &f.key_path("reconnect_max_ms"),
            format!(
                "must be at least reconnect_min_ms ({}), got {}",
                min.as_millis(),
                max.as_millis()
            ),
        );
    }
    f.finish(w);
    Some(RedisConfig {
        enabled: enabled?,
        url: url?,
        password_env: password_env?,
        tls_ca_file: tls_ca_file?,
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        reconnect_min: reconnect_min?,
        reconnect_max: reconnect_max?,
        instance: instance?,
        queue: usize::try_from(queue?).ok()?,
        batch: usize::try_from(batch?).ok()?,
        retention: retention?,
        journal_dir: journal_dir?,
        journal_fsync: journal_fsync?,
        pnl_every: pnl_every?,
    })
}

/// `redis.retention`: entry counts, `0` for unbounded.
fn stream_retention(w: &mut Walker, node: &Node, path: &str) -> Option<StreamRetention> {
    let mut f = Fields::open(w, node, path)?;
    let mut kind = |w: &mut Walker, key: &str, default: &str| {
        f.defaulted(w, key, default, |w, n, p| {
            w.int(n, p, 0, u64::MAX).map(|v| (v > 0).then_some(v))
        })
    };
    let ticks = kind(w, "ticks", "100000");
    let signals = kind(w, "signals", "100000");
    let orders = kind(w, "orders", "0");
    let fills = kind(w, "fills", "0");
    let pnl = kind(w, "pnl", "0");
    f.finish(w);
    Some(StreamRetention {
        ticks: ticks?,
        signals: signals?,
        orders: orders?,
        fills: fills?,
        pnl: pnl?,
    })
}

/// `redis.journal_fsync`: `always`, `never`, or `{every_ms: N}`.
fn journal_fsync(w: &mut Walker, node: &Node, path: &str) -> Option<JournalFsync> {
    match node {
        Node::Map(_) => {
            let mut f = Fields::open(w, node, path)?;
            let ms = f.required(w, "every_ms", |w, n, p| w.int(n, p, 1, u64::MAX));
            f.finish(w);
            ms.map(JournalFsync::EveryMs)
        }
        other => w.name(other, path, &["always", "never", "{every_ms: N}"], |name| match name {
            "always" => Some(JournalFsync::Always),
            "never" => Some(JournalFsync::Never),
            _ => None,
        }),
    }
}

fn governor(w: &mut Walker, node: &Node, path: &str) -> Option<GovernorConfig> {
    let mut f = Fields::open(w, node, path)?;
    let seed = f.defaulted(w, "seed", "1", |w, n, p| w.int(n, p, 0, u64::MAX));
    let max_step = f.defaulted(w, "max_step", "0.05", |w, n, p| w.factor(n, p, Range::above_upto(0, 1)));
    let min_weight = f.defaulted(w, "min_weight", "0.05", |w, n, p| {
        w.decimal(n, p, Range::closed(0, 1)).and_then(|d| {
            // A floor above 1/4 could not hold for four families at once.
            if d.raw() > ONE / 4 {
                w.report(p, format!("must be at most 0.25 (four families share 1), got {d}"));
                None
            } else {
                to_factor(d)
            }
        })
    });
    let fixed = f.defaulted(w, "fixed", "[sentiment]", |w, n, p| {
        let items = w.list(n, p)?;
        let mut out = [false; 4];
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ip = index(p, i);
            match w.name(item, &ip, &Weights::KEYS, |name| {
                Weights::KEYS.iter().position(|k| *k == name)
            }) {
                Some(k) if out[k] => {
                    w.report(&ip, format!("duplicate family {}", Weights::KEYS[k]));
                    ok = false;
                }
                Some(k) => out[k] = true,
                None => ok = false,
            }
        }
        if ok && out.iter().filter(|f| !**f).count() < 2 {
            w.report(p, "leaves fewer than two families for the governor to move between");
            ok = false;
        }
        ok.then_some(out)
    });
    let discount = f.defaulted(w, "discount", "0.9", |w, n, p| w.factor(n, p, Range::above_upto(0, 1)));
    let state_file = f.defaulted(w, "state_file", "'maxx-state/governor.json'", |w, n, p| {
        w.opt_path(n, p)
    });
    f.finish(w);
    Some(GovernorConfig {
        seed: seed?,
        max_step: max_step?,
        min_weight: min_weight?,
        fixed: fixed?,
        discount: discount?,
        state_file: state_file?,
    })
}

fn portfolio(w: &mut Walker, node: &Node, path: &str) -> Option<PortfolioConfig> {
    let mut f = Fields::open(w, node, path)?;
    let currency = f.defaulted(w, "currency", "null", |w, n, p| {
        let code = w.opt_string(n, p, "an asset code such as USDT, or null")?;
        match code {
            Some(c) if !Assets::valid_code(c) => {
                w.report(p, format!("must be 1 to 16 ASCII letters and digits, got {c:?}"));
                None
            }
            c => Some(c.map(str::to_string)),
        }
    });
    let lockbox_pct = f.defaulted(w, "lockbox_pct", "20", |w, n, p| w.decimal(n, p, Range::closed(0, 100)));
    f.finish(w);
    Some(PortfolioConfig {
        currency: currency?,
        lockbox_pct: lockbox_pct?,
    })
}

fn http(w: &mut Walker, node: &Node, path: &str) -> Option<HttpConfig> {
    let mut f = Fields::open(w, node, path)?;
    let enabled = f.defaulted(w, "enabled", "true", flag);
    let listen = f.defaulted(w, "listen", "'127.0.0.1:8080'", addr);
    let token_file = f.defaulted(w, "token_file", "null", |w, n, p| w.opt_path(n, p));
    f.finish(w);
    Some(HttpConfig {
        enabled: enabled?,
        listen: listen?,
        token_file: token_file?,
    })
}

fn grpc(w: &mut Walker, node: &Node, path: &str) -> Option<GrpcConfig> {
    let mut f = Fields::open(w, node, path)?;
    let enabled = f.defaulted(w, "enabled", "true", flag);
    let listen = f.defaulted(w, "listen", "'127.0.0.1:50051'", addr);
    f.finish(w);
    Some(GrpcConfig {
        enabled: enabled?,
        listen: listen?,
    })
}

fn telemetry(w: &mut Walker, node: &Node, path: &str) -> Option<TelemetryConfig> {
    let mut f = Fields::open(w, node, path)?;
    let metrics_listen = f.defaulted(w, "metrics_listen", "'127.0.0.1:9100'", opt_addr);
    let otlp_endpoint = f.defaulted(w, "otlp_endpoint", "'http://127.0.0.1:4317'", opt_http_url);
    let levels: Vec<&str> = LogLevel::ALL.iter().map(|l| l.name()).collect();
    let log_level = f.defaulted(w, "log_level", "info", |w, n, p| {
        w.name(n, p, &levels, LogLevel::from_name)
    });
    let log_format = f.defaulted(w, "log_format", "json", |w, n, p| {
        w.name(n, p, &["json", "text"], LogFormat::from_name)
    });
    f.finish(w);
    Some(TelemetryConfig {
        metrics_listen: metrics_listen?,
        otlp_endpoint: otlp_endpoint?,
        log_level: log_level?,
        log_format: log_format?,
    })
}

fn alerts(w: &mut Walker, node: &Node, path: &str) -> Option<AlertsConfig> {
    let mut f = Fields::open(w, node, path)?;
    let webhook_url = f.defaulted(w, "webhook_url", "null", opt_http_url);
    f.finish(w);
    Some(AlertsConfig {
        webhook_url: webhook_url?,
    })
}

// --- checks across sections ---

/// Checks that tie symbols, feeds and simulators together, on whatever parts validated.
fn cross_check(
    w: &mut Walker,
    symbols: Option<&[SymbolParts]>,
    feeds: Option<&PerVenue<FeedConfig>>,
    sims: Option<&PerVenue<SimConfig>>,
) {
    // With `symbols` itself invalid nothing is known about them, so checks that need to know
    // that a symbol is absent are skipped rather than guessed.
    let all_venues_known = symbols.is_some_and(|s| s.iter().all(|s| s.venues.is_some()));
    let all_names_known = symbols.is_some_and(|s| s.iter().all(|s| s.symbol.is_some()));
    let symbols = symbols.unwrap_or_default();
    let mapped_on = |venue: Venue| {
        symbols
            .iter()
            .filter(move |s| s.venues.as_ref().is_some_and(|v| v.contains_key(&venue)))
    };

    let feeds = feeds.into_iter().flatten().filter_map(|(v, f)| Some((v, f.as_ref()?)));
    for (venue, feed) in feeds.filter(|(_, f)| f.enabled) {
        let feed_path = format!("feeds.{venue}");
        if mapped_on(*venue).next().is_none() && all_venues_known {
            w.report(
                &feed_path,
                format!("no symbol is mapped on {venue} (add {venue} under symbols[].venues)"),
            );
        }
        if feed.url != FeedUrl::Sim {
            continue;
        }
        let Some(sims) = sims else { continue };
        let sim = match sims.get(venue) {
            Some(Some(sim)) => sim,
            // Present but invalid: already reported.
            Some(None) => continue,
            None => {
                w.report(&join(&feed_path, "url"), format!("\"sim\" needs a sim.{venue} section"));
                continue;
            }
        };
        for symbol in mapped_on(*venue).filter_map(|s| s.symbol) {
            if !sim.start_prices.contains_key(&symbol) {
                w.report(
                    &format!("sim.{venue}.start_prices.{symbol}"),
                    format!("missing start price ({symbol} is mapped on {venue}, whose feed uses the simulator)"),
                );
            }
        }
    }

    let sims = sims.into_iter().flatten().filter_map(|(v, s)| Some((v, s.as_ref()?)));
    for (venue, sim) in sims {
        for (symbol, start) in &sim.start_prices {
            let path = format!("sim.{venue}.start_prices.{symbol}");
            match symbols.iter().find(|s| s.symbol == Some(*symbol)) {
                None if all_names_known => w.report(&path, "unknown symbol (not listed in symbols)"),
                None => {}
                Some(s) => {
                    if let Some(tick) = s.tick_size.filter(|t| start.raw() % t.raw() != 0) {
                        w.report(&path, format!("must be a multiple of tick_size ({tick}), got {start}"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::parse_tree;

    fn walk(yaml: &str, read: impl FnOnce(&mut Walker, &Node, &str)) -> Vec<String> {
        let node = parse_tree(yaml).unwrap();
        let mut w = Walker::default();
        read(&mut w, &node, "k");
        w.problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn built_in_defaults_are_valid() {
        for (yaml, read) in [
            (
                DEFAULT_SYMBOLS,
                (|w, n, p| assert!(symbols(w, n, p).is_some())) as fn(&mut Walker, &Node, &str),
            ),
            (DEFAULT_FEEDS, |w, n, p| {
                assert!(feeds(w, n, p).and_then(complete).is_some())
            }),
            (DEFAULT_SIM, |w, n, p| {
                assert!(sims(w, n, p).and_then(complete).is_some())
            }),
            (DEFAULT_CORES, |w, n, p| {
                assert_eq!(cores(w, n, p).map(|c| c.len()), Some(4))
            }),
        ] {
            assert_eq!(walk(yaml, read), Vec::<String>::new(), "{yaml}");
        }
    }

    #[test]
    fn fees_are_exact_thousandths_of_a_bp() {
        let read = |yaml: &str| {
            let node = parse_tree(yaml).unwrap();
            fee_milli(&mut Walker::default(), &node, "k", Range::closed(-MAX_BPS, MAX_BPS))
        };
        assert_eq!(read("7.5"), Some(7_500));
        assert_eq!(read("0.001"), Some(1));
        assert_eq!(read("-2.25"), Some(-2_250));
        assert_eq!(read("'10000'"), Some(10_000_000));
        assert_eq!(read("0.0005"), None);
        assert_eq!(read("10000.001"), None);
    }

    #[test]
    fn exec_defaults_and_per_venue_paper_schedules() {
        let node = parse_tree(
            "{slip_tolerance_pct: 0.05, maker_rebate_threshold_bps: 1.5, on_passive_timeout: cancel,
              paper: {maker_fee_bps: -0.25, venues: {bybit: {taker_fee_bps: 5.5, latency_us: 0}, coinbase: {}}}}",
        )
        .unwrap();
        let mut w = Walker::default();
        let e = exec(&mut w, &node, "exec").expect("valid");
        assert!(w.problems.is_empty());
        assert_eq!(e.urgent_score, "0.8".parse::<Factor>().unwrap());
        assert_eq!(e.passive_timeout, Duration::from_secs(2));
        assert_eq!((e.max_reprices, e.on_passive_timeout), (2, OnPassiveTimeout::Cancel));
        assert_eq!((e.health_window, e.probation), (50, Duration::from_secs(60)));
        assert_eq!(
            (e.latency_penalty_bps_milli_per_ms, e.depth_penalty_bps_milli),
            (100, 10_000)
        );
        let bybit = e.paper.venue(Venue::Bybit);
        assert_eq!(
            (bybit.taker_fee_bps_milli, bybit.maker_fee_bps_milli, bybit.latency),
            (5_500, -250, Duration::ZERO)
        );
        let binance = e.paper.venue(Venue::Binance);
        assert_eq!(
            (binance.taker_fee_bps_milli, binance.latency),
            (7_500, Duration::from_millis(1))
        );
        assert_eq!(e.paper.venue(Venue::Coinbase), binance);
        let bad = walk(
            "{slip_tolerance_pct: 0, maker_rebate_threshold_bps: 0, on_passive_timeout: wait,
              health_window: 0, paper: {venues: {kraken: {}, oanda: {latency_us: -1, bogus: 1}}}}",
            |w, n, p| {
                exec(w, n, p);
            },
        );
        assert_eq!(
            bad.iter().map(|p| p.split(':').next().unwrap()).collect::<Vec<_>>(),
            [
                "k.on_passive_timeout",
                "k.health_window",
                "k.paper.venues.kraken",
                "k.paper.venues.oanda.latency_us",
                "k.paper.venues.oanda.bogus",
            ],
            "{bad:?}"
        );
    }

    #[test]
    fn urls() {
        let check = |yaml: &str| {
            walk(yaml, |w, n, p| {
                url(w, n, p, &["redis", "unix"], &[("rediss", "no TLS")]);
            })
        };
        assert!(check("'redis://127.0.0.1:6379'").is_empty());
        assert!(check("'unix:///run/redis.sock'").is_empty());
        assert_eq!(
            check("'unix://'"),
            ["k: must be a redis:// or unix:// URL, got \"unix://\""]
        );
        assert_eq!(check("'redis:///x'").len(), 1);
        assert_eq!(check("'redis://a b'").len(), 1);
        assert_eq!(
            check("'rediss://h:1'"),
            ["k: rediss:// is not supported yet (no TLS), got \"rediss://h:1\""]
        );
        assert_eq!(check("42"), ["k: must be a redis:// or unix:// URL, got 42"]);
    }

    #[test]
    fn an_invalid_symbols_section_hides_no_other_problem_and_invents_none() {
        // `symbols` is not a list: the feed and simulator checks that need the symbols are
        // skipped instead of reporting every feed as unmapped.
        let e = crate::config::parse(
            "market_data: {retry_backoff_ms: 500, resubscribe_sec: 3600}
alpha: {weights: {momentum: 1, mean_rev: 0, breakout: 0, sentiment: 0}, reweight_cron: '* * * * *'}
risk: {max_trade_risk_pct: 1, daily_drawdown_pct: 5}
exec: {slip_tolerance_pct: 0, maker_rebate_threshold_bps: 0}
symbols: {BTCUSDT: 1}
hot: {wait: nap}
",
        )
        .unwrap_err();
        assert_eq!(e.paths(), ["symbols", "hot.wait"]);
    }
}
