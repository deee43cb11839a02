//! Config validation against the shipped `config/agent_config.yaml` and mutations of it.
//!
//! Most tests start from the real shipped file and change one line, so that what is tested is
//! what operators run; every refusal is checked by the exact set of key paths it reports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use maxx_cold::config::{
    self, Config, ConfigErrors, FeedUrl, JournalFsync, LogFormat, LogLevel, StreamKind, StreamRetention,
};
use maxx_hot::ids::{InstrumentId, Symbol, Venue};
use maxx_hot::num::{Money, Price, Qty};
use maxx_hot::records::Factor;
use maxx_hot::topology::{Layout, StageName, WaitKind};

fn shipped_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/agent_config.yaml")
}

fn shipped() -> String {
    std::fs::read_to_string(shipped_path()).expect("config/agent_config.yaml is readable")
}

/// The shipped file with the first occurrence of `old` replaced by `new`.
fn edit(text: &str, old: &str, new: &str) -> String {
    assert!(text.contains(old), "the shipped config no longer contains {old:?}");
    text.replacen(old, new, 1)
}

fn errors(text: &str) -> ConfigErrors {
    match config::parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e,
    }
}

fn path_set(e: &ConfigErrors) -> BTreeSet<String> {
    e.0.iter().map(|p| p.path.clone()).collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

fn message_at<'e>(e: &'e ConfigErrors, path: &str) -> &'e str {
    e.0.iter()
        .find(|p| p.path == path)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("no problem at {path}: {e}"))
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

#[test]
fn shipped_config_validates() {
    let c = config::load(&shipped_path()).unwrap_or_else(|e| panic!("shipped config refused:\n{e}"));
    assert_eq!(c.market_data.retry_backoff, Duration::from_millis(500));
    assert_eq!(c.market_data.resubscribe, Duration::from_secs(3600));
    assert_eq!(c.market_data.stale_after, Duration::from_secs(5));
    assert_eq!(c.market_data.backoff_cap, Duration::from_secs(30));
    assert_eq!(c.market_data.capture_dir, None);
    assert_eq!(c.alpha.weights.momentum, "0.4".parse::<Factor>().unwrap());
    assert_eq!(c.alpha.weights.sentiment, Factor::ZERO);
    assert_eq!(c.alpha.reweight_cron.as_str(), "10 0 * * *");
    assert_eq!(c.alpha.entry_threshold, Factor::from_num(0.5));
    assert_eq!(
        (c.alpha.momentum.fast, c.alpha.momentum.slow, c.alpha.momentum.scale_bps),
        (10, 50, 1)
    );
    assert_eq!(
        (c.alpha.mean_rev.window, c.alpha.mean_rev.z_scale),
        (50, Factor::from_num(3))
    );
    assert_eq!(
        (
            c.alpha.breakout.window,
            c.alpha.breakout.confirm,
            c.alpha.breakout.volume_mult,
            c.alpha.breakout.hold
        ),
        (100, 10, Factor::ONE, 20)
    );
    assert_eq!(c.risk.max_trade_risk_pct, Factor::from_num(0.5));
    assert_eq!(c.risk.daily_drawdown_pct, Factor::from_num(5));
    assert!(!c.risk.kill_switch);
    assert_eq!(c.exec.paper.taker_fee_bps_milli, 7_500);
    assert_eq!(c.exec.paper.maker_fee_bps_milli, 2_500);
    assert_eq!(c.exec.paper.starting_balance, Money::from_units(100_000).unwrap());
    assert_eq!(c.symbols.len(), 2);
    assert_eq!(c.symbols[0].order_qty, "0.01".parse::<Qty>().unwrap());
    assert_eq!(c.symbols[1].tick_size, "0.01".parse::<Price>().unwrap());
    assert_eq!(c.symbols[1].lot_size, "0.00001".parse::<Qty>().unwrap());
    let feed = &c.feeds[&Venue::Binance];
    assert!(feed.enabled && feed.combined);
    assert_eq!(feed.url, FeedUrl::Sim);
    assert_eq!(feed.streams, [StreamKind::Trade, StreamKind::BookTicker]);
    let sim = &c.sim[&Venue::Binance];
    assert_eq!((sim.seed, sim.events_per_sec), (7, 2000));
    assert_eq!(sim.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(c.hot.layout, Layout::Auto);
    assert_eq!(c.hot.wait, WaitKind::SpinYield);
    assert_eq!(c.hot.cores[&StageName::MarketData(Venue::Binance)], 0);
    assert_eq!(c.hot.cores[&StageName::Exec], 1);
    assert_eq!(c.hot.cores.len(), 4);
    assert!(!c.redis.enabled);
    assert_eq!(c.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(c.redis.instance, "maxx");
    assert_eq!((c.redis.queue, c.redis.batch), (65_536, 256));
    assert_eq!(
        c.redis.retention,
        StreamRetention {
            ticks: Some(100_000),
            signals: Some(100_000),
            orders: None,
            fills: None,
            pnl: None,
        }
    );
    assert_eq!(c.redis.journal_dir, None);
    assert_eq!(c.redis.journal_fsync, JournalFsync::EveryMs(100));
    assert_eq!(c.redis.pnl_every, Duration::from_millis(1000));
    assert_eq!(
        (c.redis.password_env.as_deref(), c.redis.tls_ca_file.as_deref()),
        (None, None)
    );
    assert_eq!(
        [
            c.redis.connect_timeout,
            c.redis.response_timeout,
            c.redis.reconnect_min,
            c.redis.reconnect_max
        ],
        [2000, 5000, 50, 5000].map(Duration::from_millis)
    );
    assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(c.http.token_file, None);
    assert_eq!(c.grpc.listen, "127.0.0.1:50051".parse().unwrap());
    assert_eq!(c.telemetry.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(c.telemetry.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    assert_eq!(
        (c.telemetry.log_level, c.telemetry.log_format),
        (LogLevel::Info, LogFormat::Json)
    );
    assert_eq!(c.alerts.webhook_url, None);
    assert_eq!(config::check_file(&shipped_path()).unwrap(), c);
}

#[test]
fn instrument_ids_follow_the_symbols_order() {
    let c = config::parse(&shipped()).unwrap();
    let index = c.instrument_index();
    assert_eq!(index.len(), 2);
    assert_eq!(index.by_symbol("BTCUSDT"), Some(InstrumentId(0)));
    assert_eq!(index.by_symbol("ETHUSDT"), Some(InstrumentId(1)));
    assert_eq!(index.by_venue_symbol(Venue::Binance, b"ETHUSDT"), Some(InstrumentId(1)));
    assert_eq!(index.by_venue_symbol(Venue::Coinbase, b"ETHUSDT"), None);
}

/// The extension defaults are exactly the values the shipped file spells out.
#[test]
fn spec_keys_alone_give_the_shipped_config() {
    let minimal = "
market_data: {retry_backoff_ms: 500, resubscribe_sec: 3600}
alpha:
  weights: {momentum: 0.4, mean_rev: 0.3, breakout: 0.3, sentiment: 0.0}
  reweight_cron: '10 0 * * *'
risk: {max_trade_risk_pct: 0.5, daily_drawdown_pct: 5.0}
exec: {slip_tolerance_pct: 0.05, maker_rebate_threshold_bps: 1.5}
";
    let defaults = config::parse(minimal).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(defaults, config::parse(&shipped()).unwrap());
}

#[test]
fn money_values_keep_exactness() {
    let c = config::parse(&shipped()).unwrap();
    let btc = c.sim[&Venue::Binance].start_prices[&sym("BTCUSDT")];
    assert_eq!(btc.to_string(), "61837.63");
    assert_eq!(btc.raw(), 6_183_763_000_000);
    // Quoted decimals are accepted for money and read the same way.
    let quoted = edit(&shipped(), "BTCUSDT: 61837.63", "BTCUSDT: \"61837.63\"");
    assert_eq!(
        config::parse(&quoted).unwrap().sim[&Venue::Binance].start_prices[&sym("BTCUSDT")],
        btc
    );
    // 19 significant digits: more than an f64 holds, exact here.
    let wide = edit(
        &shipped(),
        "max_order_notional: 5000",
        "max_order_notional: 12345678901.12345678",
    );
    let notional = config::parse(&wide).unwrap().symbols[0].max_order_notional;
    assert_eq!(notional.raw(), 1_234_567_890_112_345_678);
    assert_eq!(notional.to_string(), "12345678901.12345678");
    // Trailing zeros are not significant; the value prints canonically.
    let padded = edit(&shipped(), "ETHUSDT: 2680.51", "ETHUSDT: 2680.5100");
    assert_eq!(
        config::parse(&padded).unwrap().sim[&Venue::Binance].start_prices[&sym("ETHUSDT")].to_string(),
        "2680.51"
    );
}

#[test]
fn weights_are_summed_exactly() {
    // 0.1 + 0.2 + 0.3 + 0.4 is not 1 in binary floating point; in decimal it is.
    let text = edit(
        &shipped(),
        "    momentum: 0.4\n    mean_rev: 0.3\n    breakout: 0.3\n    sentiment: 0.0",
        "    momentum: 0.1\n    mean_rev: 0.2\n    breakout: 0.3\n    sentiment: 0.4",
    );
    config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn weights_not_summing_to_one_are_refused() {
    let e = errors(&edit(&shipped(), "breakout: 0.3", "breakout: 0.2"));
    assert_eq!(path_set(&e), set(&["alpha.weights"]));
    assert_eq!(
        message_at(&e, "alpha.weights"),
        "weights must sum to exactly 1, got 0.9"
    );
    let e = errors(&edit(&shipped(), "sentiment: 0.0", "sentiment: 0.00000001"));
    assert_eq!(
        message_at(&e, "alpha.weights"),
        "weights must sum to exactly 1, got 1.00000001"
    );
}

#[test]
fn missing_spec_keys_are_refused() {
    let e = errors(&edit(&shipped(), "  daily_drawdown_pct: 5.0\n", ""));
    assert_eq!(path_set(&e), set(&["risk.daily_drawdown_pct"]));
    assert_eq!(e.to_string(), "risk.daily_drawdown_pct: missing required key");

    let e = errors(&edit(&shipped(), "    breakout: 0.3\n", ""));
    assert_eq!(path_set(&e), set(&["alpha.weights.breakout"]));

    let text = shipped();
    let start = text.find("\nexec:").unwrap();
    let end = text[start..].find("\n# --- extensions").unwrap() + start;
    let e = errors(&format!("{}{}", &text[..start], &text[end..]));
    assert_eq!(path_set(&e), set(&["exec"]));
    assert_eq!(message_at(&e, "exec"), "missing required key");
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let text = edit(&shipped(), "  kill_switch: false", "  kill_switch: [false");
    let e = errors(&text);
    assert_eq!(e.0.len(), 1, "{e}");
    let p = &e.0[0];
    assert!(p.path.starts_with("line ") && p.path.contains(" column "), "{p:?}");
    assert!(p.message.starts_with("invalid YAML: "), "{p:?}");

    let e = errors("risk: {a: 1\n");
    assert_eq!(e.0.len(), 1);
    assert!(e.0[0].path.starts_with("line "), "{e}");

    let e = errors("risk: 1\nrisk: 2\n");
    assert!(e.0[0].message.contains("duplicate"), "{e}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    for text in ["", "~", "[1, 2]", "just text"] {
        let e = errors(text);
        assert_eq!(path_set(&e), set(&["(root)"]), "{text:?}: {e}");
    }
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    let mut text = shipped();
    for (anchor, indent) in [
        ("market_data:\n", "  "),
        ("alpha:\n", "  "),
        ("  weights:\n", "    "),
        ("  momentum:\n", "    "),
        ("  mean_rev:\n", "    "),
        ("  breakout:\n", "    "),
        ("risk:\n", "  "),
        ("exec:\n", "  "),
        ("  paper:\n", "    "),
        ("feeds:\n", "  "),
        ("  binance:\n    enabled", "    "),
        ("sim:\n", "  "),
        ("  binance:\n    seed", "    "),
        ("    start_prices:\n", "      "),
        ("hot:\n", "  "),
        ("redis:\n", "  "),
        ("http:\n", "  "),
        ("grpc:\n", "  "),
        ("telemetry:\n", "  "),
        ("alerts:\n", "  "),
    ] {
        let (head, tail) = anchor.split_once('\n').unwrap();
        text = edit(&text, anchor, &format!("{head}\n{indent}bogus: 1\n{tail}"));
    }
    text = edit(&text, "  - symbol: ETHUSDT", "  - bogus: 1\n    symbol: ETHUSDT");
    text = edit(&text, "cores: {md-binance: 0,", "cores: {bogus: 3, md-binance: 0,");
    text = edit(
        &text,
        "venues: {binance: BTCUSDT}",
        "venues: {binance: BTCUSDT, bogus: X}",
    );
    text.push_str("bogus: 1\n");

    let e = errors(&text);
    let expected = [
        "market_data.bogus",
        "alpha.bogus",
        "alpha.weights.bogus",
        "alpha.momentum.bogus",
        "alpha.mean_rev.bogus",
        "alpha.breakout.bogus",
        "risk.bogus",
        "exec.bogus",
        "exec.paper.bogus",
        "symbols[1].bogus",
        "symbols[0].venues.bogus",
        "feeds.bogus",
        "feeds.binance.bogus",
        "sim.bogus",
        "sim.binance.bogus",
        "sim.binance.start_prices.bogus",
        "hot.bogus",
        "hot.cores.bogus",
        "redis.bogus",
        "http.bogus",
        "grpc.bogus",
        "telemetry.bogus",
        "alerts.bogus",
        "bogus",
    ];
    assert_eq!(path_set(&e), set(&expected), "{e}");
    assert_eq!(e.0.len(), expected.len(), "{e}");
    assert_eq!(message_at(&e, "alpha.weights.bogus"), "unknown key");
    assert_eq!(message_at(&e, "bogus"), "unknown key");
    assert!(message_at(&e, "feeds.bogus").starts_with("unknown venue"));
    assert!(message_at(&e, "symbols[0].venues.bogus").starts_with("unknown venue"));
    assert!(message_at(&e, "hot.cores.bogus").starts_with("unknown stage"));
    assert!(message_at(&e, "sim.binance.start_prices.bogus").starts_with("unknown symbol"));
}

#[test]
fn many_errors_are_all_reported_with_their_paths() {
    let text = r#"
market_data:
  retry_backoff_ms: 0
  resubscribe_sec: 3600
  stale_after_ms: null
alpha:
  weights: {momentum: 0.4, mean_rev: 0.3, breakout: 0.3, sentiment: 0.0, foo: 0.1}
  reweight_cron: "10 0 * *"
  exit_threshold: 0.9
risk:
  max_trade_risk_pct: 0.5
  daily_drawdown_pct: abc
exec:
  slip_tolerance_pct: 0.05
  maker_rebate_threshold_bps: 1.5
  paper: {taker_fee_bps: 7.5001}
symbols:
  - symbol: BTCUSDT
    venues: {binance: BTCUSDT}
    order_qty: 0.01
    max_order_qty: 0.05
    max_order_notional: 5000
    max_position: 0.1
  - symbol: ETHUSDT
    venues: {binance: ETHUSDT, kraken: ETH-USD}
    order_qty: 0.1
    max_order_qty: 0.05
    max_order_notional: -1
    max_position: 1
feeds:
  binance: {streams: [trade, depth]}
hot:
  layout: spread
  cores: {md-binance: 0, gpu: 1}
http: {listen: "localhost:8080"}
telemetry: {log_level: loud}
"#;
    let e = errors(text);
    let expected = set(&[
        "market_data.retry_backoff_ms",
        "market_data.stale_after_ms",
        "alpha.weights.foo",
        "alpha.reweight_cron",
        "alpha.exit_threshold",
        "risk.daily_drawdown_pct",
        "exec.paper.taker_fee_bps",
        "symbols[1].venues.kraken",
        "symbols[1].max_order_qty",
        "symbols[1].max_order_notional",
        "feeds.binance.streams[1]",
        "hot.layout",
        "hot.cores.gpu",
        "http.listen",
        "telemetry.log_level",
    ]);
    assert_eq!(path_set(&e), expected, "{e}");
    assert_eq!(e.0.len(), expected.len(), "{e}");
    assert_eq!(
        message_at(&e, "risk.daily_drawdown_pct"),
        "must be a number greater than 0 and at most 100, got \"abc\""
    );
    assert_eq!(message_at(&e, "alpha.weights.foo"), "unknown key");
    assert!(message_at(&e, "symbols[1].venues.kraken").starts_with("unknown venue"));
    assert_eq!(
        message_at(&e, "alpha.exit_threshold"),
        "must be below entry_threshold (0.5), got 0.9"
    );
    assert_eq!(
        message_at(&e, "symbols[1].max_order_qty"),
        "must be >= order_qty (0.1), got 0.05"
    );
    assert!(message_at(&e, "alpha.reweight_cron").contains("5 fields"));
    // Display: one `path: message` line per problem, in the order found.
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), expected.len());
    assert!(
        shown
            .lines()
            .next()
            .unwrap()
            .starts_with("market_data.retry_backoff_ms: must be an integer >= 1, got 0")
    );
    for (line, p) in shown.lines().zip(&e.0) {
        assert_eq!(line, format!("{}: {}", p.path, p.message));
    }
}

/// One mutation of the shipped file per row: the old text, the new text, and the exact set of
/// paths the refusal must name.
const BAD_FIELDS: &[(&str, &str, &[&str])] = &[
    // market_data
    (
        "retry_backoff_ms: 500",
        "retry_backoff_ms: 0",
        &["market_data.retry_backoff_ms"],
    ),
    (
        "retry_backoff_ms: 500",
        "retry_backoff_ms: null",
        &["market_data.retry_backoff_ms"],
    ),
    (
        "resubscribe_sec: 3600",
        "resubscribe_sec: -5",
        &["market_data.resubscribe_sec"],
    ),
    (
        "resubscribe_sec: 3600",
        "resubscribe_sec: \"3600\"",
        &["market_data.resubscribe_sec"],
    ),
    (
        "stale_after_ms: 5000",
        "stale_after_ms: fast",
        &["market_data.stale_after_ms"],
    ),
    (
        "stale_after_ms: 5000",
        "stale_after_ms: 1.5",
        &["market_data.stale_after_ms"],
    ),
    (
        "backoff_cap_ms: 30000",
        "backoff_cap_ms: 100",
        &["market_data.backoff_cap_ms"],
    ),
    ("capture_dir: null", "capture_dir: 5", &["market_data.capture_dir"]),
    ("capture_dir: null", "capture_dir: \"\"", &["market_data.capture_dir"]),
    // alpha
    ("momentum: 0.4", "momentum: 1.5", &["alpha.weights.momentum"]),
    ("mean_rev: 0.3", "mean_rev: abc", &["alpha.weights.mean_rev"]),
    ("sentiment: 0.0", "sentiment: -0.1", &["alpha.weights.sentiment"]),
    ("momentum: 0.4", "momentum: .nan", &["alpha.weights.momentum"]),
    ("momentum: 0.4", "momentum: NaN", &["alpha.weights.momentum"]),
    ("momentum: 0.4", "momentum: .inf", &["alpha.weights.momentum"]),
    ("mean_rev: 0.3", "mean_rev: -.inf", &["alpha.weights.mean_rev"]),
    ("breakout: 0.3", "breakout: 3e-1", &["alpha.weights.breakout"]),
    // hot.lock_memory
    ("  lock_memory: auto", "  lock_memory: maybe", &["hot.lock_memory"]),
    ("  lock_memory: auto", "  lock_memory: 1", &["hot.lock_memory"]),
    // portfolio
    ("  lockbox_pct: 20", "  lockbox_pct: 101", &["portfolio.lockbox_pct"]),
    ("  lockbox_pct: 20", "  lockbox_pct: -1", &["portfolio.lockbox_pct"]),
    ("  currency: null", "  currency: \"US D\"", &["portfolio.currency"]),
    ("  currency: null", "  currency: 5", &["portfolio.currency"]),
    (
        "  weights:\n",
        "  weights: [0.4, 0.6]\n  unused_weights:\n",
        &["alpha.weights", "alpha.unused_weights"],
    ),
    (
        "reweight_cron: \"10 0 * * *\"",
        "reweight_cron: \"61 0 * * *\"",
        &["alpha.reweight_cron"],
    ),
    (
        "reweight_cron: \"10 0 * * *\"",
        "reweight_cron: \"10 0 * * MON\"",
        &["alpha.reweight_cron"],
    ),
    (
        "reweight_cron: \"10 0 * * *\"",
        "reweight_cron: \"0 0 31 2 *\"",
        &["alpha.reweight_cron"],
    ),
    (
        "reweight_cron: \"10 0 * * *\"",
        "reweight_cron: 10",
        &["alpha.reweight_cron"],
    ),
    ("entry_threshold: 0.5", "entry_threshold: 0", &["alpha.entry_threshold"]),
    (
        "entry_threshold: 0.5",
        "entry_threshold: 1.01",
        &["alpha.entry_threshold"],
    ),
    ("exit_threshold: 0.1", "exit_threshold: 0.7", &["alpha.exit_threshold"]),
    ("exit_threshold: 0.1", "exit_threshold: -0.1", &["alpha.exit_threshold"]),
    ("fast: 10", "fast: 0", &["alpha.momentum.fast"]),
    ("slow: 50", "slow: 5", &["alpha.momentum.fast"]),
    ("scale_bps: 1", "scale_bps: 0.5", &["alpha.momentum.scale_bps"]),
    ("window: 50", "window: 1", &["alpha.mean_rev.window"]),
    ("window: 50", "window: 100001", &["alpha.mean_rev.window"]),
    ("z_scale: 3", "z_scale: 0", &["alpha.mean_rev.z_scale"]),
    ("z_scale: 3", "z_scale: 100.5", &["alpha.mean_rev.z_scale"]),
    ("window: 100", "window: 1", &["alpha.breakout.window"]),
    ("window: 100", "window: 5", &["alpha.breakout.confirm"]),
    ("confirm: 10", "confirm: 0", &["alpha.breakout.confirm"]),
    ("volume_mult: 1 ", "volume_mult: -1", &["alpha.breakout.volume_mult"]),
    (
        "volume_mult: 1 ",
        "volume_mult: 1000.5",
        &["alpha.breakout.volume_mult"],
    ),
    ("hold: 20", "hold: 0", &["alpha.breakout.hold"]),
    ("hold: 20", "hold: 2.5", &["alpha.breakout.hold"]),
    // risk
    (
        "max_trade_risk_pct: 0.5",
        "max_trade_risk_pct: 101",
        &["risk.max_trade_risk_pct"],
    ),
    (
        "max_trade_risk_pct: 0.5",
        "max_trade_risk_pct: 0",
        &["risk.max_trade_risk_pct"],
    ),
    (
        "daily_drawdown_pct: 5.0",
        "daily_drawdown_pct: \"abc\"",
        &["risk.daily_drawdown_pct"],
    ),
    ("kill_switch: false", "kill_switch: no", &["risk.kill_switch"]),
    // exec
    (
        "slip_tolerance_pct: 0.05",
        "slip_tolerance_pct: 100.5",
        &["exec.slip_tolerance_pct"],
    ),
    (
        "maker_rebate_threshold_bps: 1.5",
        "maker_rebate_threshold_bps: -1",
        &["exec.maker_rebate_threshold_bps"],
    ),
    (
        "taker_fee_bps: 7.5",
        "taker_fee_bps: 7.5001",
        &["exec.paper.taker_fee_bps"],
    ),
    ("taker_fee_bps: 7.5", "taker_fee_bps: -1", &["exec.paper.taker_fee_bps"]),
    (
        "maker_fee_bps: 2.5",
        "maker_fee_bps: 2.5.1",
        &["exec.paper.maker_fee_bps"],
    ),
    (
        "starting_balance: 100000",
        "starting_balance: 0",
        &["exec.paper.starting_balance"],
    ),
    (
        "  paper:\n",
        "  paper: 5\n  old_paper:\n",
        &["exec.paper", "exec.old_paper"],
    ),
    // symbols
    ("symbol: BTCUSDT", "symbol: \"BTC USDT\"", &["symbols[0].symbol"]),
    (
        "symbol: ETHUSDT",
        "symbol: BTCUSDT",
        &["symbols[1].symbol", "sim.binance.start_prices.ETHUSDT"],
    ),
    (
        "venues: {binance: BTCUSDT}",
        "venues: {kraken: BTCUSDT}",
        &["symbols[0].venues.kraken"],
    ),
    ("venues: {binance: ETHUSDT}", "venues: {}", &["symbols[1].venues"]),
    (
        "venues: {binance: ETHUSDT}",
        "venues: {binance: BTCUSDT}",
        &["symbols[1].venues.binance"],
    ),
    (
        "venues: {binance: BTCUSDT}",
        "venues: {binance: 42}",
        &["symbols[0].venues.binance"],
    ),
    ("order_qty: 0.01", "order_qty: 0.000001", &["symbols[0].order_qty"]),
    ("order_qty: 0.01", "order_qty: 0", &["symbols[0].order_qty"]),
    (
        "max_order_qty: 0.05",
        "max_order_qty: 0.001",
        &["symbols[0].max_order_qty"],
    ),
    (
        "max_order_notional: 5000",
        "max_order_notional: []",
        &["symbols[0].max_order_notional"],
    ),
    (
        "max_position: 1\n",
        "max_position: 0.05\n",
        &["symbols[1].max_position"],
    ),
    ("tick_size: 0.01", "tick_size: 0", &["symbols[0].tick_size"]),
    (
        "tick_size: 0.01",
        "tick_size: 0.007",
        &["sim.binance.start_prices.BTCUSDT"],
    ),
    ("lot_size: 0.00001", "lot_size: 0.000000001", &["symbols[0].lot_size"]),
    ("symbols:\n", "symbols: []\nold_symbols:\n", &["symbols", "old_symbols"]),
    // feeds
    ("enabled: true", "enabled: 1", &["feeds.binance.enabled"]),
    ("enabled: true", "enabled: false", &["feeds"]),
    ("url: sim", "url: ftp://stream.binance.com:9443", &["feeds.binance.url"]),
    ("url: sim", "url: http://example.com", &["feeds.binance.url"]),
    ("url: sim", "url: ws://", &["feeds.binance.url"]),
    ("url: sim", "url: simulator", &["feeds.binance.url"]),
    (
        "streams: [trade, bookTicker]",
        "streams: [trade, trade]",
        &["feeds.binance.streams[1]"],
    ),
    (
        "streams: [trade, bookTicker]",
        "streams: [depth]",
        &["feeds.binance.streams[0]"],
    ),
    (
        "streams: [trade, bookTicker]",
        "streams: []",
        &["feeds.binance.streams"],
    ),
    (
        "streams: [trade, bookTicker]",
        "streams: trade",
        &["feeds.binance.streams"],
    ),
    ("combined: true", "combined: yes", &["feeds.binance.combined"]),
    ("feeds:\n  binance:", "feeds:\n  kraken:", &["feeds.kraken", "feeds"]),
    // sim
    ("seed: 7", "seed: -7", &["sim.binance.seed"]),
    (
        "events_per_sec: 2000",
        "events_per_sec: 0",
        &["sim.binance.events_per_sec"],
    ),
    ("bind: \"127.0.0.1:0\"", "bind: localhost", &["sim.binance.bind"]),
    (
        "BTCUSDT: 61837.63",
        "BTCUSDT: 61837.633",
        &["sim.binance.start_prices.BTCUSDT"],
    ),
    ("BTCUSDT: 61837.63", "BTCUSDT: 0", &["sim.binance.start_prices.BTCUSDT"]),
    (
        "ETHUSDT: 2680.51",
        "XRPUSDT: 0.5",
        &["sim.binance.start_prices.XRPUSDT", "sim.binance.start_prices.ETHUSDT"],
    ),
    ("sim:\n  binance:", "sim:\n  bybit:", &["feeds.binance.url"]),
    // hot
    ("layout: auto", "layout: spread", &["hot.layout"]),
    ("wait: spin_yield", "wait: sleep", &["hot.wait"]),
    (
        "cores: {md-binance: 0, alpha: 1, risk: 1, exec: 1}",
        "cores: {md-kraken: 0, alpha: 1}",
        &["hot.cores.md-kraken"],
    ),
    (
        "cores: {md-binance: 0, alpha: 1, risk: 1, exec: 1}",
        "cores: {alpha: 5000}",
        &["hot.cores.alpha"],
    ),
    (
        "cores: {md-binance: 0, alpha: 1, risk: 1, exec: 1}",
        "cores: [0, 1]",
        &["hot.cores"],
    ),
    (
        "histogram_interval_ms: 100",
        "histogram_interval_ms: 0",
        &["hot.histogram_interval_ms"],
    ),
    (
        "status_interval_ms: 1000",
        "status_interval_ms: 1.5",
        &["hot.status_interval_ms"],
    ),
    // redis, http, grpc, telemetry, alerts
    ("enabled: false", "enabled: maybe", &["redis.enabled"]),
    (
        "url: \"redis://127.0.0.1:6379\"",
        "url: \"http://127.0.0.1:6379\"",
        &["redis.url"],
    ),
    ("url: \"redis://127.0.0.1:6379\"", "url: \"rediss://\"", &["redis.url"]),
    ("password_env: null", "password_env: \"\"", &["redis.password_env"]),
    ("password_env: null", "password_env: \"A=B\"", &["redis.password_env"]),
    ("password_env: null", "password_env: 7", &["redis.password_env"]),
    // A CA file needs a rediss:// url.
    ("tls_ca_file: null", "tls_ca_file: \"ca.pem\"", &["redis.tls_ca_file"]),
    ("tls_ca_file: null", "tls_ca_file: \"\"", &["redis.tls_ca_file"]),
    (
        "connect_timeout_ms: 2000",
        "connect_timeout_ms: 0",
        &["redis.connect_timeout_ms"],
    ),
    (
        "response_timeout_ms: 5000",
        "response_timeout_ms: -5",
        &["redis.response_timeout_ms"],
    ),
    (
        "reconnect_min_ms: 50",
        "reconnect_min_ms: 0",
        &["redis.reconnect_min_ms"],
    ),
    // Below reconnect_min_ms (50).
    (
        "reconnect_max_ms: 5000",
        "reconnect_max_ms: 10",
        &["redis.reconnect_max_ms"],
    ),
    ("instance: maxx", "instance: \"two words\"", &["redis.instance"]),
    ("instance: maxx", "instance: \"\"", &["redis.instance"]),
    ("queue: 65536", "queue: 0", &["redis.queue"]),
    ("batch: 256", "batch: 65537", &["redis.batch"]),
    ("ticks: 100000", "ticks: -1", &["redis.retention.ticks"]),
    ("pnl: 0 ", "pnl: 0\n    trades: 5 ", &["redis.retention.trades"]),
    ("journal_dir: null", "journal_dir: 7", &["redis.journal_dir"]),
    (
        "journal_fsync: {every_ms: 100}",
        "journal_fsync: sometimes",
        &["redis.journal_fsync"],
    ),
    (
        "journal_fsync: {every_ms: 100}",
        "journal_fsync: {every_ms: 0}",
        &["redis.journal_fsync.every_ms"],
    ),
    (
        "journal_fsync: {every_ms: 100}",
        "journal_fsync: {every_ms: 5, often: true}",
        &["redis.journal_fsync.often"],
    ),
    (
        "journal_fsync: {every_ms: 100}",
        "journal_fsync: {}",
        &["redis.journal_fsync.every_ms"],
    ),
    ("pnl_every_ms: 1000", "pnl_every_ms: 0", &["redis.pnl_every_ms"]),
    ("listen: \"127.0.0.1:8080\"", "listen: \"127.0.0.1\"", &["http.listen"]),
    ("token_file: null", "token_file: \"\"", &["http.token_file"]),
    ("listen: \"127.0.0.1:50051\"", "listen: 50051", &["grpc.listen"]),
    (
        "metrics_listen: \"127.0.0.1:9100\"",
        "metrics_listen: \"999.0.0.1:9100\"",
        &["telemetry.metrics_listen"],
    ),
    (
        "metrics_listen: \"127.0.0.1:9100\"",
        "metrics_listen: 9100",
        &["telemetry.metrics_listen"],
    ),
    (
        "metrics_listen: \"127.0.0.1:9100\"",
        "prometheus_bind: \"127.0.0.1:9100\"",
        &["telemetry.prometheus_bind"],
    ),
    (
        "otlp_endpoint: \"http://127.0.0.1:4317\"",
        "otlp_endpoint: \"grpc://x\"",
        &["telemetry.otlp_endpoint"],
    ),
    ("log_level: info", "log_level: verbose", &["telemetry.log_level"]),
    ("log_format: json", "log_format: xml", &["telemetry.log_format"]),
    ("webhook_url: null", "webhook_url: \"ftp://x\"", &["alerts.webhook_url"]),
    ("alerts:\n", "alerts: null\nold_alerts:\n", &["alerts", "old_alerts"]),
];

#[test]
fn each_bad_field_is_reported_at_its_own_path() {
    let base = shipped();
    let mut failures = Vec::new();
    for (old, new, paths) in BAD_FIELDS {
        let text = edit(&base, old, new);
        match config::parse(&text) {
            Ok(_) => failures.push(format!("{new:?}: accepted")),
            Err(e) if path_set(&e) != set(paths) => failures.push(format!("{new:?}: expected {paths:?}, got\n{e}")),
            Err(e) => {
                // Every problem says what was expected; none is a bare internal error.
                for p in &e.0 {
                    assert!(!p.message.is_empty() && !p.message.contains("internal"), "{new:?}: {p}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mutations misreported:\n{}",
        failures.len(),
        BAD_FIELDS.len(),
        failures.join("\n")
    );
}

#[test]
fn specific_messages() {
    let base = shipped();
    let cases = [
        (
            "url: sim",
            "url: https://stream.binance.com:9443",
            "feeds.binance.url",
            "binance streams over WebSocket: expected a ws:// or wss:// URL",
        ),
        (
            "taker_fee_bps: 7.5",
            "taker_fee_bps: 7.5001",
            "exec.paper.taker_fee_bps",
            "at most 3 decimals",
        ),
        (
            "backoff_cap_ms: 30000",
            "backoff_cap_ms: 100",
            "market_data.backoff_cap_ms",
            "must be >= retry_backoff_ms (500), got 100",
        ),
        (
            "slow: 50",
            "slow: 5",
            "alpha.momentum.fast",
            "must be less than slow (5), got 10",
        ),
        (
            "confirm: 10",
            "confirm: 101",
            "alpha.breakout.confirm",
            "must be at most window (100), got 101",
        ),
        (
            "order_qty: 0.01",
            "order_qty: 0.000001",
            "symbols[0].order_qty",
            "multiple of lot_size (0.00001)",
        ),
        (
            "BTCUSDT: 61837.63",
            "BTCUSDT: 61837.633",
            "sim.binance.start_prices.BTCUSDT",
            "multiple of tick_size (0.01)",
        ),
        (
            "ETHUSDT: 2680.51",
            "XRPUSDT: 0.5",
            "sim.binance.start_prices.ETHUSDT",
            "missing start price",
        ),
        (
            "ETHUSDT: 2680.51",
            "XRPUSDT: 0.5",
            "sim.binance.start_prices.XRPUSDT",
            "unknown symbol",
        ),
        (
            "sim:\n  binance:",
            "sim:\n  bybit:",
            "feeds.binance.url",
            "needs a sim.binance section",
        ),
        (
            "enabled: true",
            "enabled: false",
            "feeds",
            "at least one feed must be enabled",
        ),
        (
            "lot_size: 0.00001",
            "lot_size: 0.000000001",
            "symbols[0].lot_size",
            "more than 8 decimals",
        ),
        (
            "reweight_cron: \"10 0 * * *\"",
            "reweight_cron: \"61 0 * * *\"",
            "alpha.reweight_cron",
            "61 is out of range 0-59",
        ),
        (
            "venues: {binance: ETHUSDT}",
            "venues: {binance: BTCUSDT}",
            "symbols[1].venues.binance",
            "already mapped by symbols[0]",
        ),
        (
            "symbol: ETHUSDT",
            "symbol: BTCUSDT",
            "symbols[1].symbol",
            "duplicate symbol BTCUSDT",
        ),
        (
            "layout: auto",
            "layout: spread",
            "hot.layout",
            "must be one of auto, pinned, fused, got \"spread\"",
        ),
    ];
    for (old, new, path, fragment) in cases {
        let e = errors(&edit(&base, old, new));
        let message = message_at(&e, path);
        assert!(message.contains(fragment), "{path}: {message:?} lacks {fragment:?}");
    }
}

#[test]
fn feeds_need_symbols_on_their_venue() {
    let text = edit(
        &shipped(),
        "feeds:\n",
        "feeds:\n  coinbase: {url: \"ws://127.0.0.1:9000/ws\", streams: [trade]}\n",
    );
    let e = errors(&text);
    assert_eq!(path_set(&e), set(&["feeds.coinbase"]));
    assert!(message_at(&e, "feeds.coinbase").contains("no symbol is mapped on coinbase"));
    // Disabled feeds are not checked; mapping a symbol there fixes an enabled one.
    let disabled = edit(&text, "coinbase: {url", "coinbase: {enabled: false, url");
    config::parse(&disabled).unwrap_or_else(|e| panic!("{e}"));
    let mapped = edit(
        &text,
        "venues: {binance: ETHUSDT}",
        "venues: {binance: ETHUSDT, coinbase: ETH-USD}",
    );
    let c = config::parse(&mapped).unwrap_or_else(|e| panic!("{e}"));
    let coinbase = &c.feeds[&Venue::Coinbase];
    assert_eq!(coinbase.url, FeedUrl::Ws("ws://127.0.0.1:9000/ws".to_owned()));
    assert_eq!(coinbase.streams, [StreamKind::Trade]);
    assert_eq!(
        c.enabled_feeds().map(|(v, _)| v).collect::<Vec<_>>(),
        [Venue::Binance, Venue::Coinbase]
    );
    assert_eq!(
        c.instrument_index().by_venue_symbol(Venue::Coinbase, b"ETH-USD"),
        Some(InstrumentId(1))
    );
}

#[test]
fn nullable_keys_accept_values() {
    let text = edit(&shipped(), "capture_dir: null", "capture_dir: /var/lib/maxx/captures");
    let text = edit(&text, "token_file: null", "token_file: /etc/maxx/token");
    let text = edit(&text, "otlp_endpoint: \"http://127.0.0.1:4317\"", "otlp_endpoint: null");
    let text = edit(&text, "metrics_listen: \"127.0.0.1:9100\"", "metrics_listen: null");
    let text = edit(
        &text,
        "webhook_url: null",
        "webhook_url: \"https://hooks.example.com/T000/B000\"",
    );
    let text = edit(&text, "maker_fee_bps: 2.5", "maker_fee_bps: -0.125");
    let c = config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.market_data.capture_dir, Some(PathBuf::from("/var/lib/maxx/captures")));
    assert_eq!(c.http.token_file, Some(PathBuf::from("/etc/maxx/token")));
    assert_eq!(c.telemetry.otlp_endpoint, None);
    assert_eq!(c.telemetry.metrics_listen, None);
    assert_eq!(
        c.alerts.webhook_url.as_deref(),
        Some("https://hooks.example.com/T000/B000")
    );
    assert_eq!(c.exec.paper.maker_fee_bps_milli, -125);
}

#[test]
fn unreadable_file_is_one_problem_naming_it() {
    let missing = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/no-such-config.yaml");
    let e = config::load(&missing).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].path, missing.display().to_string());
    assert!(e.0[0].message.starts_with("cannot read file"), "{e}");
}

#[test]
fn a_valid_config_round_trips_to_the_same_value() {
    // Parsing is a pure function of the text: twice gives equal configs.
    let a: Config = config::parse(&shipped()).unwrap();
    let b: Config = config::parse(&shipped()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn aggregate_trades_are_binance_only_and_exclusive_with_trades() {
    let base = std::fs::read_to_string(shipped_path()).unwrap();
    let both = base.replace("streams: [trade, bookTicker]", "streams: [trade, aggTrade]");
    let e = config::parse(&both).unwrap_err();
    assert!(
        e.to_string()
            .contains("feeds.binance.streams: trade and aggTrade both carry every trade"),
        "{e}"
    );
    let agg = base.replace("streams: [trade, bookTicker]", "streams: [aggTrade, bookTicker]");
    let c = config::parse(&agg).unwrap();
    assert_eq!(c.feeds[&maxx_hot::ids::Venue::Binance].streams.len(), 2);
}

#[test]
fn governor_sentiment_and_http_keys() {
    let c = config::load(&shipped_path()).expect("shipped");
    assert_eq!(c.alpha.sentiment.half_life, Duration::from_secs(900));
    assert_eq!(c.governor.seed, 1);
    assert_eq!(c.governor.max_step, "0.05".parse::<Factor>().unwrap());
    assert_eq!(c.governor.fixed, [false, false, false, true]);
    assert!(c.http.enabled);
    assert_eq!(
        (
            c.portfolio.currency.as_deref(),
            c.portfolio.lockbox_pct.to_string().as_str()
        ),
        (None, "20")
    );
    assert_eq!(c.account_currency(), "USDT");
    // The state file is resolved against the config file's directory.
    assert_eq!(
        c.governor.state_file.as_deref(),
        Some(
            shipped_path()
                .parent()
                .unwrap()
                .join("maxx-state/governor.json")
                .as_path()
        )
    );
    let text = shipped();
    for (old, new, path, says) in [
        (
            "  sentiment:\n    half_life_sec: 900",
            "  sentiment:\n    half_life_sec: 0",
            "alpha.sentiment.half_life_sec",
            "between 1 and 604800",
        ),
        ("  max_step: 0.05 ", "  max_step: 0 ", "governor.max_step", ""),
        (
            "  min_weight: 0.05 ",
            "  min_weight: 0.3 ",
            "governor.min_weight",
            "at most 0.25",
        ),
        (
            "  fixed: [sentiment] ",
            "  fixed: [vibes] ",
            "governor.fixed[0]",
            "one of momentum",
        ),
        (
            "  fixed: [sentiment] ",
            "  fixed: [sentiment, sentiment] ",
            "governor.fixed[1]",
            "duplicate",
        ),
        (
            "  fixed: [sentiment] ",
            "  fixed: [momentum, mean_rev, breakout] ",
            "governor.fixed",
            "fewer than two",
        ),
        ("  discount: 0.9 ", "  discount: 1.5 ", "governor.discount", ""),
        ("  seed: 1 ", "  seed: -1 ", "governor.seed", ""),
        (
            "  reweight_cron: \"10 0 * * *\"",
            "  reweight_cron: \"61 0 * * *\"",
            "alpha.reweight_cron",
            "invalid cron",
        ),
        (
            "  enabled: true                # default true",
            "  enabled: maybe",
            "http.enabled",
            "",
        ),
    ] {
        let e = errors(&edit(&text, old, new));
        assert_eq!(path_set(&e), set(&[path]), "{new}: {e}");
        assert!(message_at(&e, path).contains(says), "{new}: {e}");
    }
    // null keeps no state.
    let c = config::parse(&edit(
        &text,
        "  state_file: \"maxx-state/governor.json\"",
        "  state_file: null",
    ))
    .unwrap();
    assert_eq!(c.governor.state_file, None);
}

#[test]
fn risk_sentinel_keys() {
    let c = config::load(&shipped_path()).expect("shipped");
    assert_eq!(c.risk.price_collar_pct, "1.0".parse::<Factor>().unwrap());
    assert_eq!(c.risk.max_gross_notional, "50000".parse::<Money>().unwrap());
    assert_eq!(c.risk.max_orders_per_sec, 20);
    assert_eq!(c.risk.sizing, config::SizingMode::Kelly);
    assert_eq!(c.risk.kelly_damping, "0.5".parse::<Factor>().unwrap());
    assert_eq!(c.risk.reject_window, 200);
    assert_eq!(c.risk.stop.vol_window, 50);
    assert_eq!(c.symbols[0].min_notional, "10".parse::<Money>().unwrap());
    let dir = shipped_path().parent().unwrap().to_path_buf();
    assert_eq!(
        c.risk.state_file.as_deref(),
        Some(dir.join("maxx-state/risk.json").as_path())
    );
    assert_eq!(c.risk.kill_file.as_deref(), Some(dir.join("maxx-state/KILL").as_path()));
    let text = shipped();
    for (old, new, path) in [
        (
            "  price_collar_pct: 1.0 ",
            "  price_collar_pct: 0 ",
            "risk.price_collar_pct",
        ),
        (
            "  max_gross_notional: 50000 ",
            "  max_gross_notional: -1 ",
            "risk.max_gross_notional",
        ),
        (
            "  max_orders_per_sec: 20 ",
            "  max_orders_per_sec: 0 ",
            "risk.max_orders_per_sec",
        ),
        ("  sizing: kelly", "  sizing: martingale", "risk.sizing"),
        ("  kelly_damping: 0.5 ", "  kelly_damping: 1.5 ", "risk.kelly_damping"),
        ("  reject_window: 200 ", "  reject_window: 5 ", "risk.reject_window"),
        ("    vol_mult: 4 ", "    vol_mult: 0 ", "risk.stop.vol_mult"),
        ("    min_ticks: 10 ", "    min_ticks: 0 ", "risk.stop.min_ticks"),
        (
            "    min_notional: 10 ",
            "    min_notional: -5 ",
            "symbols[0].min_notional",
        ),
    ] {
        let e = errors(&edit(&text, old, new));
        assert_eq!(path_set(&e), set(&[path]), "{new}: {e}");
    }
}

/// The shipped file with `exec.live` set to `block` (YAML lines indented under `live:`).
fn with_live(block: &str) -> String {
    edit(
        &shipped(),
        "    venues: {}\n",
        &format!("    venues: {{}}\n  live:\n{block}"),
    )
}

#[test]
fn live_order_entry_is_off_by_default_and_takes_defaults() {
    let c = config::load(&shipped_path()).expect("shipped");
    assert!(c.exec.live.is_empty(), "paper is the default: {:?}", c.exec.live);

    let c = config::parse(&with_live("    binance: {base_url: \"https://api.binance.com\"}\n")).expect("valid");
    assert_eq!(c.exec.live.keys().copied().collect::<Vec<_>>(), [Venue::Binance]);
    let b = &c.exec.live[&Venue::Binance];
    assert_eq!(
        *b,
        config::LiveVenueConfig {
            base_url: "https://api.binance.com".into(),
            recv_window_ms: 5_000,
            request_timeout: Duration::from_secs(2),
            order_limit: 10,
            order_window: Duration::from_secs(1),
            open_capacity: 1024,
            client_id_prefix: "mx".into(),
        }
    );

    let c = config::parse(
        &with_live(
            "    bybit:
      base_url: \"http://127.0.0.1:18080/\"
      recv_window_ms: 60000
      request_timeout_ms: 750
      order_limit: 5
      order_window_ms: 2000
      open_capacity: 64
      client_id_prefix: bot_7-a
    binance: {base_url: \"http://localhost:1\"}
",
        )
        .replace(
            "venues: {binance: BTCUSDT}",
            "venues: {binance: BTCUSDT, bybit: BTCUSDT}",
        ),
    )
    .expect("valid");
    let y = &c.exec.live[&Venue::Bybit];
    assert_eq!(y.base_url, "http://127.0.0.1:18080", "a trailing slash is dropped");
    assert_eq!(
        (y.recv_window_ms, y.request_timeout, y.order_limit, y.order_window),
        (60_000, Duration::from_millis(750), 5, Duration::from_secs(2))
    );
    assert_eq!((y.open_capacity, y.client_id_prefix.as_str()), (64, "bot_7-a"));
    assert_eq!(c.exec.live.len(), 2);
}

#[test]
fn live_order_entry_refusals() {
    let bybit_mapped = |t: String| {
        t.replace(
            "venues: {binance: BTCUSDT}",
            "venues: {binance: BTCUSDT, bybit: BTCUSDT}",
        )
    };
    let binance = |entry: &str| with_live(&format!("    binance: {entry}\n"));
    let cases: Vec<(String, &str, &str)> = vec![
        (
            with_live("    coinbase: {base_url: \"https://api.coinbase.com\"}\n"),
            "exec.live.coinbase",
            "coinbase order entry is not built yet",
        ),
        (
            with_live("    oanda: {base_url: \"https://api-fxtrade.oanda.com\"}\n"),
            "exec.live.oanda",
            "oanda order entry is not built yet",
        ),
        (
            with_live("    kraken: {base_url: \"https://api.kraken.com\"}\n"),
            "exec.live.kraken",
            "unknown venue",
        ),
        (binance("{}"), "exec.live.binance.base_url", "missing required key"),
        (
            binance("{base_url: \"ftp://api.binance.com\"}"),
            "exec.live.binance.base_url",
            "must be a http:// or https:// URL",
        ),
        (
            binance("{base_url: \"https://api.binance.com/api/v3\"}"),
            "exec.live.binance.base_url",
            "without a path",
        ),
        (
            binance("{base_url: \"https://x\", api_key: abc}"),
            "exec.live.binance.api_key",
            "unknown key",
        ),
        (
            binance("{base_url: \"https://x\", recv_window_ms: 0}"),
            "exec.live.binance.recv_window_ms",
            "between 1 and 60000",
        ),
        (
            binance("{base_url: \"https://x\", recv_window_ms: 60001}"),
            "exec.live.binance.recv_window_ms",
            "between 1 and 60000",
        ),
        (
            binance("{base_url: \"https://x\", request_timeout_ms: 0}"),
            "exec.live.binance.request_timeout_ms",
            "between 1 and 60000",
        ),
        (
            binance("{base_url: \"https://x\", order_limit: 0}"),
            "exec.live.binance.order_limit",
            "between 1 and 100000",
        ),
        (
            binance("{base_url: \"https://x\", order_window_ms: 0}"),
            "exec.live.binance.order_window_ms",
            "between 1 and 3600000",
        ),
        (
            binance("{base_url: \"https://x\", open_capacity: 0}"),
            "exec.live.binance.open_capacity",
            "between 1 and 65536",
        ),
        (
            binance("{base_url: \"https://x\", client_id_prefix: maxxbot1}"),
            "exec.live.binance.client_id_prefix",
            "1 to 7 characters",
        ),
        (
            binance("{base_url: \"https://x\", client_id_prefix: \"m.x\"}"),
            "exec.live.binance.client_id_prefix",
            "A-Z a-z 0-9 - _",
        ),
        (
            with_live("    bybit: {base_url: \"https://api.bybit.com\"}\n"),
            "exec.live.bybit",
            "no symbol is mapped on bybit",
        ),
    ];
    for (text, path, needle) in &cases {
        let e = errors(text);
        assert_eq!(path_set(&e), set(&[path]), "{needle}: {e}");
        assert!(message_at(&e, path).contains(needle), "{path}: {e}");
    }
    // Only the symbols a live venue trades need their assets: ETHXYZ is not on bybit.
    let bybit_live = bybit_mapped(with_live("    bybit: {base_url: \"https://api.bybit.com\"}\n"));
    let c = config::parse(&bybit_live.replace("ETHUSDT", "ETHXYZ")).expect("ETHXYZ stays on paper");
    assert_eq!(c.symbols[1].assets, None);
}

#[test]
fn symbol_assets_are_written_or_derived() {
    let c = config::load(&shipped_path()).expect("shipped");
    let assets = |b: &str, q: &str| {
        Some(config::Assets {
            base: b.into(),
            quote: q.into(),
        })
    };
    assert_eq!(c.symbols[0].assets, assets("BTC", "USDT"));
    assert_eq!(c.symbols[1].assets, assets("ETH", "USDT"));
    for (symbol, want) in [
        ("BTCUSDT", assets("BTC", "USDT")),
        ("BTCFDUSD", assets("BTC", "FDUSD")),
        ("ETHBTC", assets("ETH", "BTC")),
        ("BTC-USD", assets("BTC", "USD")),
        ("EUR_USD", assets("EUR", "USD")),
        ("BTC/USDT", assets("BTC", "USDT")),
        ("USDT", None),
        ("SPX500", None),
        ("BTC-", None),
        ("A.B-USD", None),
    ] {
        assert_eq!(config::Assets::from_symbol(symbol), want, "{symbol}");
    }

    // A name the rule cannot split is fine on paper, refused on a live venue, and fine again
    // once the assets are written.
    let xyz = shipped().replace("ETHUSDT", "ETHXYZ");
    let c = config::parse(&xyz).expect("paper needs no assets");
    assert_eq!(c.symbols[1].assets, None);
    let live = xyz.replace(
        "    venues: {}\n",
        "    venues: {}\n  live: {binance: {base_url: \"https://x\"}}\n",
    );
    let e = errors(&live);
    assert_eq!(path_set(&e), set(&["symbols[1]"]), "{e}");
    assert!(
        message_at(&e, "symbols[1]").contains("cannot be derived from its name: add `base:` and `quote:`"),
        "{e}"
    );
    let written = live.replace(
        "    venues: {binance: ETHXYZ}",
        "    venues: {binance: ETHXYZ}\n    base: ETH\n    quote: XYZ",
    );
    let c = config::parse(&written).expect("assets written");
    assert_eq!(c.symbols[1].assets, assets("ETH", "XYZ"));

    for (extra, path) in [
        ("    base: ETH", "symbols[1].quote"),
        ("    quote: XYZ", "symbols[1].base"),
        ("    base: E-TH\n    quote: XYZ", "symbols[1].base"),
        ("    base: ETH\n    quote: 7", "symbols[1].quote"),
    ] {
        let text = xyz.replace(
            "    venues: {binance: ETHXYZ}",
            &format!("    venues: {{binance: ETHXYZ}}\n{extra}"),
        );
        let e = errors(&text);
        assert_eq!(path_set(&e), set(&[path]), "{extra}: {e}");
    }
}

#[test]
fn redis_bus_keys_take_every_form() {
    let base = shipped();
    let text = edit(&base, "journal_fsync: {every_ms: 100}", "journal_fsync: always");
    let text = edit(&text, "journal_dir: null", "journal_dir: \"bus-journal\"");
    let text = edit(&text, "orders: 0", "orders: 5000");
    let c = config::parse(&text).unwrap();
    assert_eq!(c.redis.journal_fsync, JournalFsync::Always);
    assert_eq!(c.redis.journal_dir, Some(PathBuf::from("bus-journal")));
    assert_eq!(c.redis.retention.orders, Some(5000));
    let c = config::parse(&edit(&base, "journal_fsync: {every_ms: 100}", "journal_fsync: never")).unwrap();
    assert_eq!(c.redis.journal_fsync, JournalFsync::Never);
    // Omitted keys take the documented defaults.
    let start = base.find("\nredis:\n").expect("a redis section") + 1;
    let end = start + base[start..].find("\n\n").expect("a blank line after it");
    let bare = format!("{}redis:\n  enabled: true{}", &base[..start], &base[end..]);
    let c = config::parse(&bare).unwrap();
    assert!(c.redis.enabled);
    assert_eq!(c.redis.instance, "maxx");
    assert_eq!((c.redis.queue, c.redis.batch), (65_536, 256));
    assert_eq!(c.redis.retention.ticks, Some(100_000));
    assert_eq!(c.redis.retention.fills, None);
    assert_eq!(c.redis.journal_dir, None);
    assert_eq!(c.redis.journal_fsync, JournalFsync::EveryMs(100));
    assert_eq!(c.redis.pnl_every, Duration::from_millis(1000));
    assert_eq!(
        (c.redis.password_env.as_deref(), c.redis.tls_ca_file.as_deref()),
        (None, None)
    );
    assert_eq!(
        [
            c.redis.connect_timeout,
            c.redis.response_timeout,
            c.redis.reconnect_min,
            c.redis.reconnect_max
        ],
        [2000, 5000, 50, 5000].map(Duration::from_millis)
    );
}

#[test]
fn redis_connection_keys_take_every_form() {
    let base = shipped();
    let text = edit(
        &base,
        "url: \"redis://127.0.0.1:6379\"",
        "url: \"rediss://redis.internal:6380/2\"",
    );
    let text = edit(&text, "password_env: null", "password_env: MAXX_REDIS_PASSWORD");
    let text = edit(&text, "tls_ca_file: null", "tls_ca_file: \"certs/redis-ca.pem\"");
    let text = edit(&text, "reconnect_min_ms: 50", "reconnect_min_ms: 5000");
    let c = config::parse(&text).unwrap();
    assert_eq!(c.redis.url, "rediss://redis.internal:6380/2");
    assert_eq!(c.redis.password_env.as_deref(), Some("MAXX_REDIS_PASSWORD"));
    assert_eq!(c.redis.tls_ca_file, Some(PathBuf::from("certs/redis-ca.pem")));
    // Equal bounds are fine: a constant delay.
    assert_eq!(c.redis.reconnect_min, c.redis.reconnect_max);
}

#[test]
fn a_password_is_given_one_way_and_never_shown() {
    let base = shipped();
    // In the url and from the environment at once: refused at password_env.
    let text = edit(
        &base,
        "url: \"redis://127.0.0.1:6379\"",
        "url: \"redis://:hunter2@127.0.0.1:6379\"",
    );
    assert!(config::parse(&text).is_ok(), "a password in the url alone is fine");
    let e = errors(&edit(&text, "password_env: null", "password_env: MAXX_REDIS_PASSWORD"));
    assert_eq!(path_set(&e), set(&["redis.password_env"]), "{e}");
    assert!(
        message_at(&e, "redis.password_env").contains("carries a password"),
        "{e}"
    );
    // A refused url never repeats its password.
    let e = errors(&edit(
        &base,
        "url: \"redis://127.0.0.1:6379\"",
        "url: \"http://:hunter2@h:1\"",
    ));
    assert_eq!(path_set(&e), set(&["redis.url"]), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = errors(&edit(&text, "tls_ca_file: null", "tls_ca_file: ca.pem"));
    assert_eq!(path_set(&e), set(&["redis.tls_ca_file"]), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
