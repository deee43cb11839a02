//! `maxx run`: start the embedded simulators, the hot threads and the cold side; stop on
//! SIGINT, SIGTERM or `--for`; drain; print the summary.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use maxx_cold::agent::{Health, Lifecycle, LifecycleState, Supervisor, SupervisorConfig, names as agent_names};
use maxx_cold::alerts::{Alerter, FeedState, FeedWatch, Webhook, risk_alert, venue_alert};
use maxx_cold::bus::StreamWriter;
use maxx_cold::bus::agent_events::LifecycleEvents;
use maxx_cold::bus::connect::RedisEndpoint;
use maxx_cold::bus::consume::{EntryId, FillRecord};
use maxx_cold::bus::entry::{EntryBuilder, PnlSnapshot, StreamKind};
use maxx_cold::bus::publish::{MemorySpill, Outcome, Publisher, PublisherConfig, Spill, stream_tops};
use maxx_cold::bus::spill::JournalSpill;
use maxx_cold::config::{Config, FeedUrl};
use maxx_cold::control::Control;
use maxx_cold::desk::Desk;
use maxx_cold::engine::{spec, venue_gateways};
use maxx_cold::governor::Trigger;
use maxx_cold::grpc::{self, ExecutionGrpc, RiskGrpc};
use maxx_cold::health::HealthBoard;
use maxx_cold::http::{self, Api, ApiError, ControlRequest, load_token};
use maxx_cold::metrics::{self, MetricsSources};
use maxx_cold::portfolio::{AccountConfig, Payout, Portfolio, PortfolioOptions, SweepPlan};
use maxx_cold::recorder;
use maxx_cold::risk_state::{RiskLog, risk_state_json, scope_key};
use maxx_cold::summary::{Latency, summarize};
use maxx_cold::taps::{Record, TapDrain};
use maxx_cold::venues::{RunningSim, feed_source, start_sim};
use maxx_hot::board::SignalBoard;
use maxx_hot::clock::wall_ns;
use maxx_hot::ids::InstrumentIndex;
use maxx_hot::kill;
use maxx_hot::num::Money;
use maxx_hot::records::{ExecReport, TradingState, Transition, TransitionReason};
use maxx_hot::runtime::engine::{Engine, EngineStats, FeedInput, build};
use maxx_hot::runtime::stats::{FeedStats, feed_state};
use maxx_hot::runtime::{HotThreads, available_cores, confine_current_thread, confine_threads_named, plan, spawn};
use maxx_hot::stage::exec::{ExecNote, Gateway};
use maxx_hot::stage::risk::RiskCommand;
use maxx_hot::topology::StageName;
use maxx_hot::wiring::ColdEnds;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::cli::RunArgs;

/// How often the cold side empties the taps.
const DRAIN_EVERY: Duration = Duration::from_millis(1);
/// How often feed health is checked for alerts.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// At most one webhook POST per feed and alert kind in this period (all are logged).
const ALERT_EVERY: Duration = Duration::from_secs(30);
/// Longest wait at shutdown for the stream publisher to hand everything to Redis.
const BUS_GRACE: Duration = Duration::from_secs(5);
/// Longest wait at start for each stream's top entry (where new ids resume).
const BUS_RESUME_WAIT: Duration = Duration::from_secs(3);

/// Runs every agent until stopped; returns after the summary is printed.
pub fn run(args: &RunArgs, config: Config) -> Result<()> {
    // Read the core list once, before anything is pinned, and place the stages first: the main
    // thread then confines itself to the cold cores, so the simulators and tokio workers it
    // starts stay off the hot cores, while each hot thread pins itself to its own.
    let cores = available_cores();
    let mut stages: Vec<StageName> = config.enabled_feeds().map(|(v, _)| StageName::MarketData(v)).collect();
    stages.extend([StageName::Alpha, StageName::Risk, StageName::Exec]);
    let placement = plan(config.hot.layout, &config.hot.cores, &stages, &cores).map_err(anyhow::Error::msg)?;
    for t in &placement.threads {
        let stages: Vec<String> = t.stages.iter().map(ToString::to_string).collect();
        info!(thread = %t.name, core = ?t.core, stages = %stages.join(","), "hot thread");
    }
    info!(
        layout = placement.layout.name(),
        wait = config.hot.wait.name(),
        cold_cores = ?placement.cold_cores,
        "hot path placed"
    );
    // A pinned hot thread shares its core with the scheduler tick and whatever else runs there
    // unless the kernel keeps the core for it (tuning/README.md).
    let isolated = maxx_hot::runtime::host::isolated_cores();
    for t in &placement.threads {
        if let Some(core) = t.core.filter(|c| !isolated.contains(c)) {
            warn!(
                thread = %t.name,
                core,
                "hot core is not isolated (isolcpus= / nohz_full=): the scheduler and interrupts share it; see tuning/README.md and tuning/audit"
            );
        }
    }
    confine_current_thread(&placement.cold_cores);
    // The log flusher started with the logger, before the placement was known.
    confine_threads_named("log-flush", &placement.cold_cores);
    // The governor's saved weights (if they still belong to this config's alpha.weights) are
    // the weights the hot path starts with.
    let (mut control, origin) = Control::new(&config, &args.config).map_err(anyhow::Error::msg)?;
    info!(weights = %control_weights(&control), "{origin}");
    let mut spec = spec(&config);
    spec.alpha.weights = control.weights();
    // Order entry first: a missing credential stops the start before anything runs.
    let gateways = venue_gateways(&config, &spec).map_err(anyhow::Error::msg)?;
    for g in &gateways {
        let venue = g.venue().name();
        match (config.exec.live.get(&g.venue()), g.client_id_prefix()) {
            // The base URL only: keys and secrets are never logged.
            (Some(live), Some(prefix)) => info!(
                venue,
                mode = g.mode(),
                base_url = %live.base_url,
                client_id_prefix = prefix,
                "order entry"
            ),
            _ => info!(venue, mode = g.mode(), "order entry"),
        }
    }
    let mut sims: Vec<RunningSim> = Vec::new();
    let mut feeds = Vec::new();
    for (venue, feed) in config.enabled_feeds() {
        let sim = if feed.url == FeedUrl::Sim {
            let handle = start_sim(&config, venue, None, None).map_err(anyhow::Error::msg)?;
            info!(venue = venue.name(), addr = %handle.local_addr(), "simulator listening");
            sims.push(handle);
            sims.last()
        } else {
            None
        };
        let stats = Arc::new(FeedStats::new(venue));
        let (source, decoder) = feed_source(&config, venue, feed, sim, &stats).map_err(anyhow::Error::msg)?;
        feeds.push(FeedInput {
            venue,
            source,
            decoder,
            stats,
        });
    }
    let Engine {
        tasks,
        mut cold,
        flags,
        stats,
    } = build(&spec, feeds, gateways);
    let mut recorders = Vec::new();
    if let Some(dir) = &config.market_data.capture_dir {
        for (venue, ring) in std::mem::take(&mut cold.captures) {
            let r = recorder::spawn(dir, venue, ring)
                .with_context(|| format!("market_data.capture_dir: {}", dir.display()))?;
            info!(venue = venue.name(), path = %r.path().display(), "capturing raw frames");
            recorders.push(r);
        }
    }
    // Halts saved before a restart go back to Risk before its first order.
    let mut risk_log = RiskLog::open(config.risk.state_file.as_deref()).map_err(anyhow::Error::msg)?;
    for (scope, reason) in risk_log.restore(&spec.index).map_err(anyhow::Error::msg)? {
        warn!(
            scope = %scope_key(&spec.index, scope),
            reason,
            "trading stays HALTED from before the restart until an operator lifts it (POST /risk/state or /risk/resume)"
        );
        let cmd = RiskCommand::SetState {
            scope,
            state: TradingState::Halted,
            reason: TransitionReason::Restored,
        };
        cold.risk_cmd
            .push(cmd)
            .map_err(|_| anyhow::anyhow!("more saved halts than the risk command queue holds"))?;
    }
    let watcher =
        kill::spawn_watcher(cold.kill.clone(), config.risk.kill_file.clone()).context("starting the kill watcher")?;
    // Lock memory now that the rings and buffers exist: locking faults them in, and later pages
    // are locked as they are mapped, so the hot threads take no page faults.
    match maxx_hot::runtime::host::lock_memory(config.hot.lock_memory).map_err(anyhow::Error::msg)? {
        maxx_hot::runtime::host::Locked::Yes => info!("memory locked (mlockall): the hot path takes no page faults"),
        maxx_hot::runtime::host::Locked::No(why) => {
            warn!(lock_memory = config.hot.lock_memory.name(), "memory not locked: {why}")
        }
    }
    let threads = spawn(&placement.threads, tasks, config.hot.wait, || {}).context("spawning hot threads")?;
    // One cold thread (this one, confined to the cold cores): the drain loop, the order desk
    // and the gRPC and HTTP handlers run on it together, so an order's round trip has no
    // cross-thread wake-up on the cold side. The cold side's work is small; a second worker
    // would add a futex hand-off to every answer (ARCHITECTURE.md, "One cold thread").
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let index = Arc::clone(&spec.index);
    let outcome = runtime.block_on(cold_side(
        args,
        &config,
        &index,
        cold,
        &stats,
        &flags,
        threads,
        &mut control,
        &mut risk_log,
    ));
    watcher.stop();
    for s in sims {
        s.shutdown();
    }
    for r in recorders {
        let path = r.path().to_path_buf();
        match r.finish() {
            Ok(frames) => info!(path = %path.display(), frames, "capture closed"),
            Err(e) => warn!(path = %path.display(), error = %e, "capture failed"),
        }
    }
    outcome
}

/// Drains the taps (feeding the order desk), serves the HTTP API, the gRPC RiskService and
/// ExecutionService and the governor, prints status lines, waits for a stop, then drains the
/// engine to the end.
#[allow(clippy::too_many_arguments)]
async fn cold_side(
    args: &RunArgs,
    config: &Config,
    index: &Arc<InstrumentIndex>,
    mut cold: ColdEnds,
    stats: &EngineStats,
    flags: &maxx_hot::runtime::Flags,
    threads: HotThreads,
    control: &mut Control,
    risk_log: &mut RiskLog,
) -> Result<()> {
    let started = Instant::now();
    // The engine's threads are up: each agent's lifecycle goes Init → Running on
    // `agent.events` (PUBLISHed when Redis is enabled, logged always).
    let endpoint = if config.redis.enabled {
        Some(RedisEndpoint::from_config(&config.redis).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let events = match &endpoint {
        Some(endpoint) => LifecycleEvents::spawn(endpoint).map_err(|e| anyhow::anyhow!("redis: {e}"))?,
        None => LifecycleEvents::log_only(),
    };
    let mut agents = Agents::start(config, &events)?;
    let stream = match &endpoint {
        Some(endpoint) => Some(StreamWriter::spawn(endpoint).map_err(anyhow::Error::msg)?),
        None => None,
    };
    control.connect(Arc::clone(&cold.alpha_cmd), Arc::clone(&cold.risk_cmd), stream);
    control.connect_exec(Arc::clone(&cold.exec_cmd));
    let bus = RefCell::new(match &endpoint {
        Some(endpoint) => Some(Bus::start(config, index, endpoint).await?),
        None => None,
    });
    // The Portfolio agent: fed every fill and mark by the drain below; with Redis it first
    // rebuilds the account from the `fills` and `payouts` streams and the journal, under a
    // supervisor (CrashLoopBackoff while Redis is unreachable at start).
    let agent = Portfolio::new(endpoint.clone(), account_config(config), PortfolioOptions::default())
        .map_err(|e| anyhow::anyhow!("portfolio: {e}"))?;
    let agent = match bus.borrow().as_ref() {
        Some(bus) => agent.with_journal(&bus.journal_pending),
        None => agent,
    };
    let portfolio = Supervisor::spawn(agent, events.clone(), SupervisorConfig::default())
        .map_err(|e| anyhow::anyhow!("portfolio: {e}"))?;
    let account = Arc::clone(portfolio.agent());
    // Ids of `fills` entries when no bus gives them (Redis disabled).
    let local_ids = RefCell::new(maxx_cold::bus::entry::StreamIds::new());
    let cold_beat = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let health = Arc::new(health_board(stats, bus.borrow().as_ref(), &portfolio, &cold_beat));
    // What `/metrics` reads: the engine's counters and gauges, the cold ends' queues, boards and
    // taps, the reload counters, the publisher's counters and the Portfolio; built once.
    let metrics_sources = Arc::new(
        MetricsSources::new(Arc::clone(index), stats.clone(), &cold, control.reload_counters())
            .with_redis(bus.borrow().as_ref().map(|b| b.publisher.stats_handle()))
            .with_portfolio(Arc::clone(&account)),
    );
    // Installed before the servers announce their addresses, so that a signal sent as soon as
    // they are up is queued for the loop below instead of ending the process.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (control_tx, mut control_rx) = mpsc::channel::<ControlRequest>(64);
    // One token for HTTP and gRPC.
    let token = load_token(config.http.token_file.as_deref()).map_err(anyhow::Error::msg)?;
    if token.is_none() {
        warn!(
            "no API token (MAXX_API_TOKEN or http.token_file): mutating HTTP endpoints, order entry and gRPC Kill/Resume are disabled"
        );
    }
    // Order entry (POST /order, POST /cancel, gRPC ExecutionService): one desk, fed by the drain
    // loop below.
    let desk = Arc::new(Desk::from_config(
        config,
        Arc::clone(index),
        Arc::clone(&cold.manual),
        Arc::clone(&cold.exec_cmd),
    ));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = if config.http.enabled {
        // Every control action and its outcome, on the stream `audit` (the log line is always).
        let audit = match &endpoint {
            Some(endpoint) => Some(StreamWriter::spawn(endpoint).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let api = Arc::new(Api {
            index: Arc::clone(index),
            board: Arc::clone(&cold.board),
            alpha_cmd: Arc::clone(&cold.alpha_cmd),
            risk_cmd: Arc::clone(&cold.risk_cmd),
            kill: cold.kill.clone(),
            kill_file: config.risk.kill_file.clone(),
            control: control_tx.clone(),
            token: token.clone(),
            started,
            health: Arc::clone(&health),
            portfolio: Some(Arc::clone(&account)),
            desk: Arc::clone(&desk),
            audit,
        });
        let (addr, task) = http::serve(config.http.listen, api, async {
            let _ = http_stopped.await;
        })
        .await
        .with_context(|| format!("http.listen {}", config.http.listen))?;
        info!(addr = %addr, "http listening");
        println!("http          http://{addr}");
        Some(task)
    } else {
        None
    };
    let (grpc_stop, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let grpc_task = if config.grpc.enabled {
        let risk_grpc = RiskGrpc {
            index: Arc::clone(index),
            risk_cmd: Arc::clone(&cold.risk_cmd),
            kill: cold.kill.clone(),
            kill_file: config.risk.kill_file.clone(),
            board: Arc::clone(&cold.risk_board),
            token: token.clone(),
        };
        let execution_grpc = ExecutionGrpc {
            desk: Arc::clone(&desk),
            token,
        };
        let (addr, task) = grpc::serve(config.grpc.listen, risk_grpc, execution_grpc, async {
            let _ = grpc_stopped.await;
        })
        .await
        .with_context(|| format!("grpc.listen {}", config.grpc.listen))?;
        info!(addr = %addr, "grpc listening");
        println!("grpc          grpc://{addr}");
        Some(task)
    } else {
        None
    };
    // Prometheus `/metrics` on its own listener. Observability must not stop trading: a port
    // that cannot be bound is logged as an error (Prometheus then sees the target down).
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = match config.telemetry.metrics_listen {
        Some(bind) => {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            match metrics::serve(bind, Arc::clone(&metrics_sources), stopped).await {
                Ok((addr, task)) => {
                    info!(addr = %addr, "metrics listening");
                    println!("metrics       http://{addr}/metrics");
                    Some(task)
                }
                Err(e) => {
                    error!(bind = %bind, error = %e, "telemetry.metrics_listen: cannot listen; no /metrics in this run");
                    None
                }
            }
        }
        None => None,
    };
    let mut cron = next_cron(control);
    let mut kelly_every = tokio::time::interval(KELLY_EVERY);
    // What Risk was last told the lock-box holds back (it starts from nothing).
    let mut told_set_aside = Money::ZERO;
    let mut drain = TapDrain::new(index);
    drain.observe(Box::new(desk.feed()));
    drain.observe(Box::new(metrics_sources.flow_observer()));
    let mut drain_every = tokio::time::interval(DRAIN_EVERY);
    drain_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut status_every = tokio::time::interval(config.hot.status_interval);
    status_every.tick().await;
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::from_secs(100 * 365 * 86_400)));
    tokio::pin!(deadline);
    let mut last = Snapshot::default();
    let transitions: RefCell<Vec<Transition>> = RefCell::new(Vec::new());
    let notes: RefCell<Vec<ExecNote>> = RefCell::new(Vec::new());
    let mut pnl_every = tokio::time::interval(config.redis.pnl_every);
    pnl_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sink = |r: Record| {
        let id = bus.borrow_mut().as_mut().and_then(|b| b.record(&r));
        if let Record::Report(ExecReport::Fill(f)) = &r {
            // The Portfolio takes the fill with the id of its `fills` entry, then a `pnl`
            // entry follows it.
            let id = id.unwrap_or_else(|| local_ids.borrow_mut().next("fills", f.ts_ns));
            account.on_fill(id, &FillRecord::from_fill(f, index.get(f.instrument).symbol));
            publish_pnl(&bus, &account, f.ts_ns);
        }
        match r {
            Record::Transition(t) => transitions.borrow_mut().push(t),
            Record::Note(n) => notes.borrow_mut().push(n),
            _ => {}
        }
        log_record(index, r)
    };
    let webhook = match &config.alerts.webhook_url {
        Some(url) => Some(Webhook::parse(url).map_err(|e| anyhow::anyhow!("alerts.webhook_url: {e}"))?),
        None => None,
    };
    let mut alerter = Alerter::new(webhook, ALERT_EVERY);
    let mut watch = FeedWatch::new(stats.feeds.clone(), config.market_data.stale_after);
    let mut watch_every = tokio::time::interval(WATCH_EVERY);
    let reason = loop {
        tokio::select! {
            _ = drain_every.tick() => {
                cold_beat.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics_sources.taps.sample(&cold, &drain);
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
                if threads.is_finished() {
                    break "hot threads ended";
                }
            }
            // An order or cancel waits for its answer: drain now, and keep draining (yielding
            // to the runtime between passes) until none waits, so its round trip is the hot
            // path's, not the timer's.
            _ = desk.woken() => {
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
            }
            _ = tokio::task::yield_now(), if desk.waiting() > 0 => {
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
            }
            _ = status_every.tick() => {
                last = status_line(config, stats, &watch, &mut drain, started, last);
                if let Some(bus) = bus.borrow().as_ref() {
                    bus.log_counters();
                }
            }
            _ = pnl_every.tick(), if config.redis.enabled => {
                publish_pnl(&bus, &account, wall_ns());
            }
            _ = watch_every.tick() => {
                for alert in watch.check() {
                    alerter.raise(alert);
                }
            }
            Some(request) = control_rx.recv() => {
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
                match request {
                    ControlRequest::Sweep { key, reply } => {
                        let _ = reply.send(sweep(&bus, &account, &local_ids, key, wall_ns()));
                    }
                    request => {
                        if answer(control, request, &drain, &cold, (index, stats, risk_log)) {
                            agents.recycled();
                            alerter.follow(&control.config().alerts);
                        }
                    }
                }
            }
            _ = sighup.recv() => {
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
                // The outcome is logged either way; SIGHUP has no one to answer.
                if control.reload(&drain.attribution().pnl(), wall_ns()).is_ok() {
                    agents.recycled();
                    alerter.follow(&control.config().alerts);
                }
                cron = next_cron(control);
            }
            _ = &mut cron => {
                drain.drain(&mut cold, &mut sink);
                settle(index, &transitions, risk_log, &notes, &mut alerter);
                mark_portfolio(index, &drain, &account);
                let _ = control.reweight(None, &drain.attribution().pnl(), Trigger::Cron, wall_ns());
                cron = next_cron(control);
            }
            _ = kelly_every.tick() => {
                // The drawdown rule watches the Portfolio's performance equity (payouts are
                // not losses).
                control.observe_equity(wall_ns(), account.observe(wall_ns()).0);
                // Profit moved into the lock-box stops counting as trading capital for Risk.
                let set_aside = account.with_account(|a| a.set_aside());
                if set_aside != told_set_aside && cold.risk_cmd.push(RiskCommand::SetAside(set_aside)).is_ok() {
                    told_set_aside = set_aside;
                }
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = &mut deadline => break "--for elapsed",
        }
    };
    info!(reason, "stopping: feeds close, rings drain");
    // Requests still queued are dropped, so their handlers answer 503 instead of waiting for a
    // loop that has stopped; then the servers finish their in-flight requests and close.
    drop(control_rx);
    let _ = http_stop.send(());
    let _ = grpc_stop.send(());
    let _ = metrics_stop.send(());
    // A client that keeps a connection open without reading must not hold the shutdown: the
    // servers get a grace period, then the engine drains regardless.
    for task in [http_task, grpc_task, metrics_task].into_iter().flatten() {
        if tokio::time::timeout(SERVER_GRACE, task).await.is_err() {
            warn!("a server did not close within its grace period; stopping anyway");
        }
    }
    flags.request_stop();
    while !threads.is_finished() {
        drain.drain(&mut cold, &mut sink);
        settle(index, &transitions, risk_log, &notes, &mut alerter);
        mark_portfolio(index, &drain, &account);
        tokio::time::sleep(DRAIN_EVERY).await;
    }
    let joined = threads.join();
    drain.drain(&mut cold, &mut sink);
    settle(index, &transitions, risk_log, &notes, &mut alerter);
    // The last snapshot: the final equity, whatever the timer last saw.
    mark_portfolio(index, &drain, &account);
    publish_pnl(&bus, &account, wall_ns());
    if let Some(bus) = bus.into_inner() {
        bus.close().await;
    }
    portfolio.shutdown().await;
    agents.shutdown();
    if !events.flush(SERVER_GRACE).await {
        warn!("agent.events: the last lifecycle events did not reach Redis in time");
    }
    let feeds: Vec<&FeedStats> = stats.feeds.iter().map(|f| &**f).collect();
    let summary = summarize(index, &feeds, &stats.alpha, &stats.risk, &stats.exec, &drain);
    println!("--- summary ({:.1}s) ---", started.elapsed().as_secs_f64());
    print!("{}", summary.to_text());
    println!("equity        {}", equity(config, &drain));
    info!(reason, orders = summary.orders, fills = summary.fills, "stopped");
    joined.map_err(anyhow::Error::msg)
}

/// The Redis Streams side of `maxx run`: turns drained records and PnL snapshots into stream
/// entries and queues them on the publisher, never waiting on Redis.
struct Bus {
    publisher: Publisher,
    builder: EntryBuilder,
    /// The journal's entries from an earlier run, for the Portfolio's rebuild.
    journal_pending: Vec<maxx_cold::bus::Entry>,
    /// Records or snapshots that could not become entries (logged at the first and every
    /// power of two).
    unbuildable: u64,
    /// Entries the journal could not take (kept in memory instead); `None` without a journal.
    unjournaled: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Bus {
    /// Opens the journal (if configured), resumes each stream's ids above both its top in
    /// Redis and the journal's pending entries, and starts the publisher, which sends the
    /// journal's pending entries first.
    async fn start(config: &Config, index: &Arc<InstrumentIndex>, endpoint: &RedisEndpoint) -> Result<Bus> {
        let redis = &config.redis;
        let mut builder =
            EntryBuilder::new(&redis.instance, index).map_err(|e| anyhow::anyhow!("redis.instance: {e}"))?;
        let mut streams = vec!["orders".to_string(), "fills".to_string(), "pnl".to_string()];
        for i in index.iter() {
            streams.push(format!("ticks:{}", i.symbol.as_str()));
            streams.push(format!("signals:{}", i.symbol.as_str()));
        }
        let mut tops = match stream_tops(endpoint, &streams, BUS_RESUME_WAIT).await {
            Ok(tops) => tops,
            Err(e) => {
                // Ids then come from the events' times alone, which stay above an earlier
                // run's unless the clock went back.
                warn!(error = %e, "redis: the streams' tops are unknown; ids follow the events' times");
                Default::default()
            }
        };
        let mut journal_pending = Vec::new();
        let (spill, unjournaled): (Box<dyn Spill>, _) = match &redis.journal_dir {
            Some(dir) => {
                let spill = JournalSpill::open(dir, redis.journal_fsync)
                    .with_context(|| format!("redis.journal_dir {}", dir.display()))?;
                for (stream, top) in spill.pending_tops() {
                    let t = tops.entry(stream).or_default();
                    *t = (*t).max(top);
                }
                if !spill.is_empty() {
                    info!(entries = spill.len(), dir = %dir.display(), "bus journal: publishing entries left by the last run first");
                }
                let unjournaled = spill.unjournaled();
                journal_pending = spill.pending().cloned().collect();
                (Box::new(spill), Some(unjournaled))
            }
            None => (Box::new(MemorySpill::default()), None),
        };
        for (stream, top) in tops {
            builder.ids_mut().resume(&stream, top);
        }
        let publisher_config = PublisherConfig::from_redis(redis).map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        let publisher =
            Publisher::spawn_with_spill(publisher_config, spill).map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        Ok(Bus {
            publisher,
            builder,
            journal_pending,
            unbuildable: 0,
            unjournaled,
        })
    }

    /// Queues the entry of a record, if a stream carries it; returns the entry's id.
    fn record(&mut self, r: &Record) -> Option<EntryId> {
        match self.builder.record(r) {
            Ok(Some(entry)) => {
                let id = entry.id.parse().ok();
                self.publisher.try_publish(entry);
                id
            }
            Ok(None) => None,
            Err(e) => {
                self.unbuildable(&e);
                None
            }
        }
    }

    /// Queues the `payouts` entry of a sweep; returns its id. Payouts are never shed: a full
    /// queue spills them (to the journal when there is one).
    fn payout(&mut self, ts_ns: u64, amount: Money, currency: &str, key: &str) -> Result<EntryId, String> {
        let entry = self
            .builder
            .payout(ts_ns, amount, currency, key)
            .map_err(|e| format!("payout entry: {e}"))?;
        let id = entry.id.parse().map_err(|e| format!("payout entry id: {e}"))?;
        match self.publisher.try_publish(entry) {
            Outcome::Queued | Outcome::Spilled => Ok(id),
            other => Err(format!("the publisher refused the payout entry ({other:?})")),
        }
    }

    fn pnl(&mut self, p: &PnlSnapshot) {
        match self.builder.pnl(p) {
            Ok(entry) => {
                self.publisher.try_publish(entry);
            }
            Err(e) => self.unbuildable(&e),
        }
    }

    fn unbuildable(&mut self, e: &dyn std::fmt::Display) {
        self.unbuildable += 1;
        if self.unbuildable.is_power_of_two() {
            warn!(error = %e, count = self.unbuildable, "a record could not become a stream entry; skipped");
        }
    }

    /// One log line of the publisher's counters.
    fn log_counters(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.publisher.stats();
        info!(
            written = s.written.load(Relaxed),
            duplicates = s.duplicates.load(Relaxed),
            shed_ticks = s.shed(StreamKind::Ticks),
            shed_signals = s.shed(StreamKind::Signals),
            spilled = s.spilled.load(Relaxed),
            refused = s.refused.load(Relaxed),
            errors = s.errors.load(Relaxed),
            reconnects = s.reconnects.load(Relaxed),
            queue_depth = s.queue_depth.load(Relaxed),
            spill_depth = s.spill_depth.load(Relaxed),
            lag_us = s.last_lag_us.load(Relaxed),
            connected = s.connected.load(Relaxed),
            unjournaled = self.unjournaled.as_ref().map_or(0, |u| u.load(Relaxed)),
            unbuildable = self.unbuildable,
            "bus"
        );
    }

    /// Waits (bounded) for Redis to have everything queued; logs what it could not publish.
    async fn close(self) {
        self.log_counters();
        let journaled = self.unjournaled.is_some();
        let closed = self.publisher.close_within(BUS_GRACE).await;
        if closed.drained {
            info!(
                written = closed.written,
                duplicates = closed.duplicates,
                shed = closed.shed,
                refused = closed.refused,
                "bus: every entry reached Redis"
            );
        } else if journaled {
            warn!(
                left = closed.left,
                written = closed.written,
                "bus: Redis did not take every entry in time; the journal keeps orders, fills and pnl for the next start"
            );
        } else {
            error!(
                left = closed.left,
                written = closed.written,
                "bus: Redis did not take every entry in time; they are lost (set redis.journal_dir to keep them)"
            );
        }
        println!(
            "bus           written {} | duplicates {} | shed {} | refused {} | unpublished {}",
            closed.written, closed.duplicates, closed.shed, closed.refused, closed.left
        );
    }
}

/// Publishes a `pnl` entry when `always`, or when a fill was published since the last one.
/// Queues a `pnl` entry with the Portfolio's figures (account currency).
fn publish_pnl(bus: &RefCell<Option<Bus>>, account: &Portfolio, ts_ns: u64) {
    let mut bus = bus.borrow_mut();
    let Some(bus) = bus.as_mut() else { return };
    let (equity, realized, unrealized) = account.with_account(|a| a.headline());
    bus.pnl(&PnlSnapshot {
        ts_ns,
        equity,
        realized,
        unrealized,
    });
}

/// Hands the drain's marks (latest mid, else trade price, per instrument) to the Portfolio.
fn mark_portfolio(index: &InstrumentIndex, drain: &TapDrain, account: &Portfolio) {
    for (i, mark) in index.iter().zip(drain.marks()) {
        account.on_mark(i.symbol, *mark);
    }
}

/// What the Portfolio counts in: the account currency, the paper starting balance, the
/// lock-box share and each symbol's quote asset.
fn account_config(config: &Config) -> AccountConfig {
    let currency = config.account_currency();
    AccountConfig {
        quotes: config
            .symbols
            .iter()
            .map(|s| {
                let quote = s.assets.as_ref().map_or_else(|| currency.clone(), |a| a.quote.clone());
                (s.symbol, quote)
            })
            .collect(),
        currency,
        starting: config.exec.paper.starting_balance,
        lockbox_pct: config.portfolio.lockbox_pct,
    }
}

/// The lifecycles of the agents `maxx run` runs: MarketData per enabled feed, Alpha,
/// RiskSentinel and Execution (whose work is on the hot threads), and the MetaGovernor (in the
/// cold loop). They are driven from here, never from a hot thread.
struct Agents {
    all: Vec<Lifecycle>,
}

impl Agents {
    /// Records Init, then Running, for every agent.
    fn start(config: &Config, events: &LifecycleEvents) -> Result<Agents> {
        let mut names: Vec<String> = config
            .enabled_feeds()
            .map(|(v, _)| agent_names::market_data(v))
            .collect();
        names.extend(
            [
                agent_names::ALPHA,
                agent_names::RISK_SENTINEL,
                agent_names::EXECUTION,
                agent_names::META_GOVERNOR,
            ]
            .map(str::to_string),
        );
        let mut all = Vec::new();
        for name in names {
            let mut l = Lifecycle::new(&name, events.clone()).map_err(|e| anyhow::anyhow!("agent {name}: {e}"))?;
            l.to(LifecycleState::Running).map_err(|e| anyhow::anyhow!("{e}"))?;
            all.push(l);
        }
        Ok(Agents { all })
    }

    /// A config reload was applied: the agents that take it live (Alpha's weights, the
    /// MetaGovernor's cron and policy) go Recycling → Running.
    fn recycled(&mut self) {
        for l in &mut self.all {
            if [agent_names::ALPHA, agent_names::META_GOVERNOR].contains(&l.agent()) {
                let _ = l.to(LifecycleState::Recycling);
                let _ = l.to(LifecycleState::Running);
            }
        }
    }

    /// Records Shutdown for every agent.
    fn shutdown(&mut self) {
        for l in &mut self.all {
            let _ = l.to(LifecycleState::Shutdown);
        }
    }
}

/// The probes behind `/healthz`: each feed is live, the hot stages' loops and the cold loop
/// advance, the stream publisher is connected, the Portfolio is running.
fn health_board(
    stats: &EngineStats,
    bus: Option<&Bus>,
    portfolio: &maxx_cold::agent::SupervisorHandle<Portfolio>,
    cold_beat: &Arc<std::sync::atomic::AtomicU64>,
) -> HealthBoard {
    let mut board = HealthBoard::new();
    // The hot stages' loops: each counts its polls, busy or idle.
    let (alpha, risk, exec) = (
        Arc::clone(&stats.alpha),
        Arc::clone(&stats.risk),
        Arc::clone(&stats.exec),
    );
    board.add("hot.alpha", advancing(move || alpha.heartbeat.get(), "polls"));
    board.add("hot.risk", advancing(move || risk.heartbeat.get(), "polls"));
    board.add("hot.exec", advancing(move || exec.heartbeat.get(), "polls"));
    // The cold loop (drain, MetaGovernor, control requests): it counts its drain passes.
    let beat = Arc::clone(cold_beat);
    board.add(
        "cold.loop",
        advancing(move || beat.load(std::sync::atomic::Ordering::Relaxed), "drain passes"),
    );
    for feed in &stats.feeds {
        let feed = Arc::clone(feed);
        board.add(format!("feed.{}", feed.venue.name()), move || feed_health(&feed));
    }
    if let Some(bus) = bus {
        board.add("redis", bus.publisher.probe());
    }
    let agent = Arc::clone(portfolio.agent());
    let state = portfolio.watch();
    board.add(agent_names::PORTFOLIO, move || {
        let state = *state.borrow();
        let h = maxx_cold::agent::Agent::health(&*agent);
        if state == LifecycleState::Running {
            h
        } else {
            Health::failing(format!("{state}: {}", h.detail))
        }
    });
    board
}

/// A loop is healthy while its counter moves: failing once `read` has not changed for
/// [`STALL_AFTER`].
fn advancing(read: impl Fn() -> u64 + Send + Sync + 'static, what: &'static str) -> impl Fn() -> Health + Send + Sync {
    let last = std::sync::Mutex::new((read(), Instant::now()));
    move || {
        let now = read();
        let mut last = last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now != last.0 {
            *last = (now, Instant::now());
        }
        let still = last.1.elapsed();
        if still < STALL_AFTER {
            Health::ok(format!("advancing: {now} {what}"))
        } else {
            Health::failing(format!("stalled: {now} {what}, none for {} ms", still.as_millis()))
        }
    }
}

/// How long a loop may show no progress before `/healthz` calls it stalled (a parked hot thread
/// polls every 200 µs; the cold loop drains every millisecond).
const STALL_AFTER: Duration = Duration::from_secs(2);

/// A feed is healthy while ticks arrive.
fn feed_health(feed: &FeedStats) -> Health {
    let last = feed.last_tick_wall_ns.get();
    let age_ms = wall_ns().saturating_sub(last) / 1_000_000;
    match feed.state.get() {
        feed_state::LIVE => Health::ok(format!("live: last tick {age_ms} ms ago")),
        feed_state::STALE => Health::failing(format!("stale: no tick for {age_ms} ms; reconnecting")),
        _ if feed.connects.get() == 0 => Health::failing("waiting: not connected yet"),
        _ => Health::failing("waiting: connected, no tick yet"),
    }
}

/// After a drain pass: saves halts that started or ended, and raises an alert for each halt
/// and resume of the engine and each venue demotion and re-admission (all already logged as
/// records).
fn settle(
    index: &InstrumentIndex,
    transitions: &RefCell<Vec<Transition>>,
    log: &mut RiskLog,
    notes: &RefCell<Vec<ExecNote>>,
    alerter: &mut Alerter,
) {
    for t in transitions.borrow_mut().drain(..) {
        if let Some(alert) = risk_alert(&t) {
            alerter.raise(alert);
        }
        if let Err(e) = log.record(index, t) {
            error!(error = %e, "risk state not saved");
        }
    }
    for n in notes.borrow_mut().drain(..) {
        if let Some(alert) = venue_alert(&n) {
            alerter.raise(alert);
        }
    }
}

/// How long the HTTP and gRPC servers get to finish in-flight requests at shutdown.
const SERVER_GRACE: Duration = Duration::from_secs(2);

/// How often equity is checked against the intraday drawdown rule.
const KELLY_EVERY: Duration = Duration::from_secs(1);

/// Answers one control request from the HTTP API.
/// Answers one control request from the HTTP API; `true` when it reloaded the config.
fn answer(
    control: &mut Control,
    request: ControlRequest,
    drain: &TapDrain,
    cold: &ColdEnds,
    risk: (&InstrumentIndex, &EngineStats, &RiskLog),
) -> bool {
    let pnl = drain.attribution().pnl();
    let board: &SignalBoard = &cold.board;
    match request {
        ControlRequest::RiskState { reply } => {
            let (index, stats, log) = risk;
            let view = cold.risk_board.read();
            let body = risk_state_json(control.config(), index, &view, &stats.risk, cold.kill.is_tripped(), log);
            let _ = reply.send(Ok(body));
        }
        ControlRequest::Reweight { weights, reply } => {
            let _ = reply.send(control.reweight(weights, &pnl, Trigger::Http, wall_ns()));
        }
        ControlRequest::Reload { reply } => {
            let outcome = control.reload(&pnl, wall_ns());
            let reloaded = outcome.is_ok();
            let _ = reply.send(outcome);
            return reloaded;
        }
        ControlRequest::Status { reply } => {
            let _ = reply.send(Ok(control.status(board, &pnl)));
        }
        // Answered by the run loop, which holds the bus and the Portfolio.
        ControlRequest::Sweep { reply, .. } => {
            let _ = reply.send(Err(ApiError::internal("sweep reached the control answer")));
        }
    }
    false
}

/// `POST /sweep`: pays the whole lock-box out once per idempotency key. The payout is written
/// to the `payouts` stream through the publisher (journaled, never shed) before the Portfolio
/// records it; a repeated key answers with the first payout; an empty lock-box is a no-op.
#[tracing::instrument(name = "portfolio.sweep", skip_all, fields(otel.name = "portfolio sweep"))]
fn sweep(
    bus: &RefCell<Option<Bus>>,
    account: &Portfolio,
    local_ids: &RefCell<maxx_cold::bus::entry::StreamIds>,
    key: String,
    now_ns: u64,
) -> http::Reply {
    let unavailable = |e: String| ApiError::unavailable(e);
    let plan = account.plan_sweep(&key).map_err(unavailable)?;
    let (lockbox, currency) = account.with_account(|a| (a.lockbox(), a.config().currency.clone()));
    match plan {
        SweepPlan::Repeat(payout) => Ok(serde_json::json!({
            "swept": false,
            "repeated": true,
            "payout": payout,
            "lockbox": lockbox.to_string(),
            "message": "this idempotency key was paid before: the same payout, nothing paid again",
        })),
        SweepPlan::Empty => Ok(serde_json::json!({
            "swept": false,
            "repeated": false,
            "payout": null,
            "lockbox": lockbox.to_string(),
            "message": "the lock-box is empty: nothing to pay",
        })),
        SweepPlan::Pay(amount) => {
            let id = match bus.borrow_mut().as_mut() {
                Some(bus) => bus.payout(now_ns, amount, &currency, &key).map_err(unavailable)?,
                None => local_ids.borrow_mut().next(maxx_cold::portfolio::PAYOUTS, now_ns),
            };
            let payout = Payout {
                key,
                amount,
                currency,
                ts: now_ns,
                id,
            };
            account.on_payout(payout.clone());
            info!(amount = %payout.amount, currency = %payout.currency, key = %payout.key, id = %payout.id, "lock-box swept into the payouts ledger");
            Ok(serde_json::json!({
                "swept": true,
                "repeated": false,
                "payout": payout,
                "lockbox": "0",
                "message": format!("paid {} {} out of the lock-box", payout.amount, payout.currency),
            }))
        }
    }
}

/// Sleeps until the next `alpha.reweight_cron` firing (UTC, whole seconds).
fn next_cron(control: &Control) -> Pin<Box<tokio::time::Sleep>> {
    let now_ns = wall_ns();
    let now = now_ns / 1_000_000_000;
    let wait = match control.next_reweight(now) {
        Some(at) => Duration::from_nanos((at * 1_000_000_000).saturating_sub(now_ns)),
        // Validation refuses schedules that never fire; sleep "forever" if one slipped through.
        None => Duration::from_secs(100 * 365 * 86_400),
    };
    Box::pin(tokio::time::sleep(wait))
}

fn control_weights(control: &Control) -> String {
    maxx_cold::control::weights_json(&control.weights()).to_string()
}

/// Counters at the previous status line, for rates.
#[derive(Clone, Copy, Debug, Default)]
struct Snapshot {
    ticks: u64,
    at: Option<Instant>,
}

fn status_line(
    config: &Config,
    stats: &EngineStats,
    watch: &FeedWatch,
    drain: &mut TapDrain,
    started: Instant,
    last: Snapshot,
) -> Snapshot {
    let now = Instant::now();
    let ticks: u64 = stats.feeds.iter().map(|f| f.trades.get() + f.quotes.get()).sum();
    let secs = last.at.map_or(now - started, |t| now - t).as_secs_f64().max(1e-9);
    let rate = (ticks - last.ticks) as f64 / secs;
    let recent = Latency::of(&drain.take_recent_latency());
    let feeds: Vec<String> = watch
        .health()
        .iter()
        .map(|h| {
            let state = match h.state {
                FeedState::Connected => "up",
                FeedState::Stale => "stale",
                FeedState::Reconnecting => "down",
            };
            format!("{}:{state}", h.venue)
        })
        .collect();
    println!(
        "[{:>5.0}s] ticks/s {:>7.0} | signals {:>8} | orders {:>6} | fills {:>6} | equity {} | p99 tick-to-order {} | {}",
        (now - started).as_secs_f64(),
        rate,
        stats.alpha.signals.get(),
        stats.exec.orders.get(),
        stats.exec.fills.get(),
        equity(config, drain),
        if recent.count == 0 {
            "-".to_string()
        } else {
            format!("{} ns", recent.p99)
        },
        feeds.join(" ")
    );
    Snapshot { ticks, at: Some(now) }
}

/// Starting balance + realized − fees + unrealized.
fn equity(config: &Config, drain: &TapDrain) -> Money {
    let start = config.exec.paper.starting_balance;
    [drain.realized(), drain.fees().neg(), drain.unrealized()]
        .into_iter()
        .fold(start, |acc, v| acc.checked_add(v).unwrap_or(acc))
}

/// Turns records into log lines: orders and fills at info, refusals at debug, bad-frame
/// samples at warn (the hot path sends at most one per feed per second).
fn log_record(index: &InstrumentIndex, r: Record) {
    match r {
        Record::Order(o) => info!(
            order_id = o.id.0,
            symbol = %index.get(o.instrument).symbol,
            side = o.side.name(),
            qty = %o.qty,
            "order sent"
        ),
        Record::Report(maxx_hot::records::ExecReport::Fill(f)) => info!(
            order_id = f.order_id.0,
            symbol = %index.get(f.instrument).symbol,
            side = f.side.name(),
            price = %f.price,
            qty = %f.qty,
            fee = %f.fee,
            "fill"
        ),
        Record::Report(maxx_hot::records::ExecReport::Reject {
            order_id,
            instrument,
            reason,
            ..
        }) => warn!(
            order_id = order_id.0,
            symbol = %index.get(instrument).symbol,
            reason = reason.name(),
            "order rejected by venue"
        ),
        Record::Refusal(x) => debug!(
            symbol = %index.get(x.intent.instrument).symbol,
            reason = x.reason.name(),
            "intent refused by risk"
        ),
        Record::Bad(b) => warn!(
            venue = b.venue.name(),
            reason = b.reason,
            field = b.field,
            frame_len = b.frame_len,
            sample = %b.excerpt(),
            "bad frame skipped"
        ),
        Record::Transition(t) => warn!(
            scope = %scope_key(index, t.scope),
            from = t.from.name(),
            to = t.to.name(),
            reason = t.reason.name(),
            "trading state changed"
        ),
        Record::Note(ExecNote::Repriced {
            order_id,
            child,
            venue,
            price,
            qty,
            ..
        }) => debug!(
            order_id = order_id.0,
            child_order_id = child.0,
            venue = venue.name(),
            price = %price,
            qty = %qty,
            "passive order repriced"
        ),
        Record::Note(ExecNote::PassiveTimeout {
            order_id, venue, take, ..
        }) => info!(
            order_id = order_id.0,
            venue = venue.name(),
            action = if take { "take" } else { "cancel" },
            "passive order timed out"
        ),
        // Demotions and re-admissions are raised as alerts (`settle`), which log them.
        Record::Note(ExecNote::Demoted { .. } | ExecNote::Readmitted { .. }) => {}
        Record::Tick(_) | Record::Signal(_) | Record::Report(_) => {}
    }
}
