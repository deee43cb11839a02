//! Every venue's connector against its simulator over loopback, through `maxx run`'s own wiring
//! (`venues::start_sim` + `venues::feed_source`) and the real hot threads: subscribe and ack,
//! ticks flowing and decoding without error, reconnect after a drop and after silence with the
//! alerts received by a local HTTP server, garbage frames survived, and (for venues whose ids can
//! be compared) planned resubscribes with no missing and no duplicate trade id.

mod common;

use common::webhook_server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maxx_cold::alerts::{Alerter, FeedWatch, Webhook};
use maxx_cold::config::{self, Config};
use maxx_cold::engine::spec;
use maxx_cold::taps::{Record, TapDrain};
use maxx_cold::venues::{RunningSim, feed_source, start_sim};
use maxx_hot::feed::any::AnySource;
use maxx_hot::ids::Venue;
use maxx_hot::records::TickBody;
use maxx_hot::runtime::engine::{Engine, FeedInput, build};
use maxx_hot::runtime::stats::FeedStats;
use maxx_hot::runtime::{Flags, HotThreads, available_cores, plan, spawn};
use maxx_hot::stage::exec::PaperVenue;
use maxx_hot::topology::{Layout, StageName, WaitKind};

/// A config with one enabled feed, `venue`, on its simulator.
fn config_for(venue: Venue) -> Config {
    let (symbol, venue_symbol, start, tick, lot, qty) = match venue {
        Venue::Binance => ("BTCUSDT", "BTCUSDT", "61837.63", "0.01", "0.00001", "0.01"),
        Venue::Coinbase => ("BTCUSD", "BTC-USD", "61830.01", "0.01", "0.00001", "0.01"),
        Venue::Bybit => ("BTCUSDT", "BTCUSDT", "61840.5", "0.01", "0.00001", "0.01"),
        Venue::Oanda => ("EURUSD", "EUR_USD", "1.08512", "0.00001", "1", "10000"),
    };
    let v = venue.name();
    // resubscribe_sec is whole seconds; the test's fast rotations are set on the source.
    let text = format!(
        "market_data: {{retry_backoff_ms: 50, resubscribe_sec: 3600, stale_after_ms: 800, backoff_cap_ms: 400}}
alpha:
  weights: {{momentum: 0.4, mean_rev: 0.3, breakout: 0.3, sentiment: 0.0}}
  reweight_cron: \"10 0 * * *\"
risk: {{max_trade_risk_pct: 0.5, daily_drawdown_pct: 5.0}}
exec: {{slip_tolerance_pct: 0.05, maker_rebate_threshold_bps: 1.5}}
symbols:
  - {{symbol: {symbol}, venues: {{{v}: {venue_symbol}}}, order_qty: {qty}, max_order_qty: {qty}, max_order_notional: 100000, max_position: {qty}, tick_size: {tick}, lot_size: {lot}}}
feeds:
  {v}: {{url: sim}}
sim:
  {v}: {{seed: 5, events_per_sec: 2000, start_prices: {{{symbol}: {start}}}}}
"
    );
    config::parse(&text).unwrap_or_else(|e| panic!("test config for {v}:\n{e}"))
}

struct Run {
    sim: Option<RunningSim>,
    stats: Arc<FeedStats>,
    flags: Arc<Flags>,
    threads: Option<HotThreads>,
    drain: TapDrain,
    cold: maxx_hot::wiring::ColdEnds,
    watch: FeedWatch,
    alerter: Alerter,
    trades: BTreeMap<u16, Vec<u64>>,
    rt: tokio::runtime::Runtime,
}

impl Run {
    fn start(venue: Venue, hook: Option<Webhook>, rotate: Option<Duration>) -> Run {
        let cfg = config_for(venue);
        let sim = start_sim(&cfg, venue, None, None).unwrap();
        let stats = Arc::new(FeedStats::new(venue));
        let (source, decoder) = feed_source(&cfg, venue, &cfg.feeds[&venue], Some(&sim), &stats).unwrap();
        let source = match (rotate, source) {
            (Some(every), AnySource::Ws(ws)) => AnySource::Ws(Box::new((*ws).with_rotation(every))),
            (_, other) => other,
        };
        let spec = spec(&cfg);
        let feed = FeedInput {
            venue,
            source,
            decoder,
            stats: Arc::clone(&stats),
        };
        let Engine {
            tasks,
            cold,
            flags,
            stats: engine_stats,
        } = build(&spec, vec![feed], vec![PaperVenue::new(venue, 7_500)]);
        let stages: Vec<StageName> = tasks.iter().map(|(s, _)| *s).collect();
        let placement = plan(Layout::Fused, &Default::default(), &stages, &available_cores()).unwrap();
        let threads = spawn(&placement.threads, tasks, WaitKind::Park, || {}).unwrap();
        Run {
            sim: Some(sim),
            stats,
            flags,
            threads: Some(threads),
            drain: TapDrain::new(&spec.index),
            cold,
            watch: FeedWatch::new(engine_stats.feeds.clone(), cfg.market_data.stale_after),
            alerter: Alerter::new(hook, Duration::from_millis(1)),
            trades: BTreeMap::new(),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn pump(&mut self) {
        let _guard = self.rt.enter();
        let trades = &mut self.trades;
        self.drain.drain(&mut self.cold, &mut |r| {
            if let Record::Tick(t) = r
                && let TickBody::Trade { .. } = t.body
            {
                trades.entry(t.instrument.0).or_default().push(t.seq);
            }
        });
        for alert in self.watch.check() {
            self.alerter.raise(alert);
        }
    }

    fn until(&mut self, what: &str, deadline: Instant, mut done: impl FnMut(&Self) -> bool) {
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.watch.health()
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn ticks(&self) -> u64 {
        self.stats.trades.get() + self.stats.quotes.get()
    }

    fn stop(mut self) {
        self.flags.request_stop();
        let deadline = Instant::now() + Duration::from_secs(30);
        let threads = self.threads.take().unwrap();
        while !threads.is_finished() {
            assert!(Instant::now() < deadline, "hot threads did not drain");
            self.pump();
        }
        threads.join().unwrap();
        self.pump();
        self.sim.take().unwrap().shutdown();
    }
}

fn posted(bodies: &Mutex<Vec<String>>, needle: &str) -> bool {
    bodies.lock().unwrap().iter().any(|b| b.contains(needle))
}

/// Drop, silence and garbage against `venue`'s simulator, with alerts over HTTP.
fn survive_faults(venue: Venue) {
    let (port, bodies) = webhook_server();
    let hook = Webhook::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    let mut run = Run::start(venue, Some(hook), None);
    let deadline = Instant::now() + Duration::from_secs(90);
    run.until("first ticks", deadline, |r| r.ticks() > 50);
    assert!(
        run.stats.control.get() >= 1 || venue == Venue::Oanda || venue == Venue::Binance,
        "{venue}: subscription ack"
    );
    // The venue drops the connection.
    run.sim.as_ref().unwrap().faults().drop_all();
    run.until("the drop alert", deadline, |_| posted(&bodies, "connection lost"));
    let before = run.ticks();
    run.until("recovery after the drop", deadline, |r| {
        r.ticks() > before + 50 && posted(&bodies, "ticks flowing again")
    });
    // The venue goes silent.
    let alerts_before = bodies.lock().unwrap().len();
    run.sim.as_ref().unwrap().faults().set_silent(true);
    run.until("an alert for the silent feed", deadline, |r| {
        bodies.lock().unwrap().len() > alerts_before
            && (r.stats.stale_restarts.get() > 0 || r.stats.disconnects.get() > 1)
    });
    run.sim.as_ref().unwrap().faults().set_silent(false);
    let before = run.ticks();
    run.until("recovery after silence", deadline, |r| r.ticks() > before + 50);
    // Garbage is counted and skipped; data keeps flowing.
    let bad = run.stats.bad_total();
    run.sim.as_ref().unwrap().faults().inject_garbage(3);
    let before = run.ticks();
    run.until("garbage counted and ticks flowing", deadline, |r| {
        r.stats.bad_total() > bad && r.ticks() > before + 50
    });
    let first: serde_json::Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
    assert!(first["text"].as_str().unwrap().starts_with(&format!("feed {venue}:")));
    run.stop();
}

/// Planned resubscribes against `venue`'s simulator: every trade id once, in order.
fn rotate_cleanly(venue: Venue) {
    let mut run = Run::start(venue, None, Some(Duration::from_millis(150)));
    let deadline = Instant::now() + Duration::from_secs(90);
    run.until("five completed rotations", deadline, |r| {
        r.stats.rotations.get() >= 5 && r.stats.connects.get() >= 6
    });
    let stats = Arc::clone(&run.stats);
    let trades = {
        run.pump();
        run.trades.clone()
    };
    run.stop();
    assert_eq!(stats.gaps.get(), 0, "{venue}: no trade id was missed");
    assert!(
        stats.duplicates.get() > 0,
        "{venue}: overlaps were seen and deduplicated"
    );
    for (instrument, ids) in &trades {
        assert!(ids.len() > 50, "{venue}/{instrument}: too few trades to prove anything");
        for pair in ids.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "{venue}/{instrument}: trade ids must be consecutive, got {pair:?}"
            );
        }
    }
}

#[test]
fn coinbase_survives_drop_silence_and_garbage() {
    survive_faults(Venue::Coinbase);
}

#[test]
fn bybit_survives_drop_silence_and_garbage() {
    survive_faults(Venue::Bybit);
}

#[test]
fn oanda_survives_drop_silence_and_garbage() {
    survive_faults(Venue::Oanda);
}

#[test]
fn binance_survives_drop_silence_and_garbage() {
    survive_faults(Venue::Binance);
}

#[test]
fn coinbase_resubscribes_without_gaps_or_duplicates() {
    rotate_cleanly(Venue::Coinbase);
}

#[test]
fn binance_resubscribes_without_gaps_or_duplicates() {
    rotate_cleanly(Venue::Binance);
}

#[test]
fn bybit_resubscribes_without_gaps_or_duplicates() {
    rotate_cleanly(Venue::Bybit);
}
