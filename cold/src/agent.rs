//! Agents: the [`Agent`] trait every agent implements, the lifecycle state machine
//! ([`Lifecycle`]) and the [`Supervisor`] that runs a cold agent and restarts it when it fails.
//!
//! This is the Rust form of the spec's `BaseAgent`. An agent has a name, `start`/`run`/`stop`,
//! a health probe and a config-reload hook; its lifecycle state is kept by a [`Lifecycle`],
//! which only allows the spec's transitions and records each one on `agent.events`
//! ([`crate::bus::agent_events`]):
//!
//! ```text
//!            start ok             recycle                 start ok
//!   Init ─────────────▶ Running ─────────▶ Recycling ─────────────▶ Running
//!    ▲                     │                   │
//!    │ after backoff       │ error             │ error
//!    │                     ▼                   ▼
//!    └──────────────── CrashLoopBackoff ◀──────┘   (also Init ─error─▶ CrashLoopBackoff)
//!
//!   any state except Shutdown ──▶ Shutdown   (terminal)
//! ```
//!
//! The lifecycle is held by the [`Lifecycle`], not by the agent, so an agent cannot skip a
//! transition or forget to publish one. Agents whose work runs on hot-path threads
//! (MarketData, Alpha, RiskSentinel, Execution) drive a [`Lifecycle`] from the code that
//! starts and stops those threads, never from inside the hot loop (recording allocates and
//! logs); cold agents (Portfolio, MetaGovernor) run under a [`Supervisor`], which adds
//! CrashLoopBackoff with exponential backoff.
//!
//! # Agent names
//! Names go on the wire as the first field of `{agent}:{state}:{timestamp}`, so they never
//! contain `:` ([`check_name`]: lower-case ASCII letters, digits, `_`, `.` and `-`). The six
//! agents are [`names::ALPHA`], [`names::RISK_SENTINEL`], [`names::EXECUTION`],
//! [`names::META_GOVERNOR`], [`names::PORTFOLIO`] and one MarketData agent per venue,
//! [`names::market_data`]: `market_data.<venue>` (`market_data.binance`), the `.` marking the
//! instance of an agent kind.
//!
//! # Adding a new agent
//! 1. Pick its name: snake_case, no `:`; add a constant (or a function, for one agent per
//!    instance) to [`names`] so the name is written in one place.
//! 2. Write a struct holding the agent's state behind interior mutability (atomics, a
//!    `Mutex`, a `tokio::sync::watch`): every [`Agent`] method takes `&self`, because the
//!    supervisor probes health and applies reloads while `run` is in progress.
//! 3. Implement [`Agent`]: `start` acquires what the agent needs (connections, state files) and
//!    fails with [`AgentError::Retry`] when trying again later may help, [`AgentError::Fatal`]
//!    when it cannot (bad config); `run` does the work until the [`StopSignal`] fires (return
//!    `Ok`) or something breaks (return `Err`); `stop` releases what `start` acquired and must
//!    be safe to call after a failed or partial `start`; `health` answers at once, from state
//!    the agent already has; `reload` applies a validated [`Config`] or explains why not,
//!    leaving the running config in place.
//! 4. Cold agent: run it with [`Supervisor::spawn`], sharing the process's
//!    [`LifecycleEvents`], and keep the [`SupervisorHandle`] for reload, recycle, health and
//!    shutdown. Hot agent: own a [`Lifecycle`] next to the code that spawns and joins the
//!    stage's thread and move it Init → Running → Shutdown there.
//! 5. Wire it in `src/run.rs` (start order, shutdown order, `/healthz`) and add a test in
//!    `cold/tests/` that observes its transitions on `agent.events` with a real redis-server.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::bus::agent_events::{EventsError, LifecycleEvents};
use crate::config::Config;

/// The names of the agents, written once here.
pub mod names {
    use maxx_hot::ids::Venue;

    /// The Alpha ensemble.
    pub const ALPHA: &str = "alpha";
    /// RiskSentinel.
    pub const RISK_SENTINEL: &str = "risk_sentinel";
    /// Execution.
    pub const EXECUTION: &str = "execution";
    /// MetaGovernor.
    pub const META_GOVERNOR: &str = "meta_governor";
    /// Portfolio.
    pub const PORTFOLIO: &str = "portfolio";

    /// The MarketData agent of one venue: `market_data.<venue>`.
    pub fn market_data(venue: Venue) -> String {
        format!("market_data.{}", venue.name())
    }
}

/// The longest agent name accepted.
pub const NAME_MAX: usize = 64;

/// An agent name that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent name {name:?}: {reason}")]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks that `name` can be the first field of an `agent.events` message: 1 to [`NAME_MAX`]
/// characters out of `a-z`, `0-9`, `_`, `.`, `-` (in particular no `:`).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let bad = |reason| {
        Err(NameError {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_MAX {
        return bad("longer than 64 characters");
    }
    if name.contains(':') {
        return bad("contains ':', the field separator of agent.events messages");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only a-z, 0-9, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// A state of the spec's agent state machine. [`LifecycleState::as_str`] is the wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifecycleState {
    /// Created, or about to start again after a backoff.
    Init,
    /// Started and doing its work.
    Running,
    /// Restarting on purpose (planned resubscribe, a reload that needs a restart).
    Recycling,
    /// Failed; waiting out a backoff before trying again.
    CrashLoopBackoff,
    /// Stopped for good.
    Shutdown,
}

impl LifecycleState {
    /// Every state, in the order of the spec.
    pub const ALL: [LifecycleState; 5] = [
        LifecycleState::Init,
        LifecycleState::Running,
        LifecycleState::Recycling,
        LifecycleState::CrashLoopBackoff,
        LifecycleState::Shutdown,
    ];

    /// The name on the wire: `Init`, `Running`, `Recycling`, `CrashLoopBackoff`, `Shutdown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Init => "Init",
            LifecycleState::Running => "Running",
            LifecycleState::Recycling => "Recycling",
            LifecycleState::CrashLoopBackoff => "CrashLoopBackoff",
            LifecycleState::Shutdown => "Shutdown",
        }
    }

    /// Whether the state machine allows `self → next`.
    pub const fn allows(self, next: LifecycleState) -> bool {
        use LifecycleState::*;
        matches!(
            (self, next),
            (Init, Running)
                | (Running, Recycling)
                | (Recycling, Running)
                | (Init | Running | Recycling, CrashLoopBackoff)
                | (CrashLoopBackoff, Init)
                | (Init | Running | Recycling | CrashLoopBackoff, Shutdown)
        )
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LifecycleState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LifecycleState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown lifecycle state {s:?} (expected Init, Running, Recycling, CrashLoopBackoff or Shutdown)"
                )
            })
    }
}

/// A transition the state machine does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agent {agent}: lifecycle transition {from} -> {to} is not allowed")]
pub struct TransitionError {
    /// The agent.
    pub agent: String,
    /// Its state.
    pub from: LifecycleState,
    /// The state asked for.
    pub to: LifecycleState,
}

/// The lifecycle of one agent: its state, the allowed transitions, and a record of each one.
#[derive(Debug)]
pub struct Lifecycle {
    agent: String,
    events: LifecycleEvents,
    state: watch::Sender<LifecycleState>,
}

impl Lifecycle {
    /// A lifecycle in `Init`, recorded (logged and published) as the first transition.
    pub fn new(agent: &str, events: LifecycleEvents) -> Result<Self, EventsError> {
        events.record(agent, LifecycleState::Init)?;
        Ok(Self {
            agent: agent.to_string(),
            events,
            state: watch::channel(LifecycleState::Init).0,
        })
    }

    /// The agent name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The current state.
    pub fn state(&self) -> LifecycleState {
        *self.state.borrow()
    }

    /// A receiver that sees every later state (the latest, if several pass before it looks).
    pub fn watch(&self) -> watch::Receiver<LifecycleState> {
        self.state.subscribe()
    }

    /// Moves to `next` and records it, or refuses a transition the state machine does not
    /// allow (the state is then unchanged and nothing is recorded).
    pub fn to(&mut self, next: LifecycleState) -> Result<(), TransitionError> {
        let from = self.state();
        if !from.allows(next) {
            return Err(TransitionError {
                agent: self.agent.clone(),
                from,
                to: next,
            });
        }
        // The name was checked in `new`, so recording cannot fail.
        let _ = self.events.record(&self.agent, next);
        self.state.send_replace(next);
        Ok(())
    }
}

/// What a health probe answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Whether the agent is doing its job.
    pub ok: bool,
    /// One line for operators: what is fine or what is wrong.
    pub detail: String,
}

impl Health {
    /// A healthy answer.
    pub fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }

    /// An unhealthy answer.
    pub fn failing(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Why an agent failed to start or stopped running, sorted by what the supervisor does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// Trying again later may help (a connection refused, a peer gone): CrashLoopBackoff, retry.
    #[error("{0}")]
    Retry(String),
    /// Trying again cannot help (bad config, a corrupt state file): Shutdown.
    #[error("{0}")]
    Fatal(String),
}

/// Tells a running agent to finish: [`StopSignal::stopped`] completes when the supervisor asks
/// it to stop (for a recycle or a shutdown).
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// A signal and the sender that fires it (`send(true)`), for driving an agent by hand.
    pub fn new() -> (watch::Sender<bool>, StopSignal) {
        let (tx, rx) = watch::channel(false);
        (tx, StopSignal(rx))
    }

    /// Whether stopping was asked for.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once stopping is asked for (or the supervisor is gone).
    pub async fn stopped(&mut self) {
        // An error means the sender is gone: nobody can run the agent any more, so stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// An agent: the Rust form of the spec's `BaseAgent`. Every method takes `&self` so that the
/// supervisor can probe health and apply reloads while `run` is in progress; agents keep their
/// mutable state behind interior mutability.
pub trait Agent: Send + Sync + 'static {
    /// The agent name (see [`names`] and [`check_name`]).
    fn name(&self) -> &str;

    /// Acquires what the agent needs. An error moves it to CrashLoopBackoff
    /// ([`AgentError::Retry`]) or Shutdown ([`AgentError::Fatal`]).
    fn start(&self) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Does the agent's work until `stop` fires (then returns `Ok`) or it fails (returns
    /// `Err`). Returning `Ok` without being asked means the work is done: the agent shuts down.
    fn run(&self, stop: StopSignal) -> impl Future<Output = Result<(), AgentError>> + Send;

    /// Releases what `start` acquired. Called after every `run` and after a failed `start`, so
    /// it must cope with a partial start.
    fn stop(&self) -> impl Future<Output = ()> + Send;

    /// Answers at once from state the agent already holds.
    fn health(&self) -> Health;

    /// Applies a new validated config, or says why it cannot (the running config then stays).
    fn reload(&self, config: &Config) -> Result<(), String>;
}

/// Restart policy of a [`Supervisor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// The first backoff after a failure; doubled on each further failure.
    pub backoff_start: Duration,
    /// The backoff never grows past this.
    pub backoff_cap: Duration,
    /// A failure after at least this long in Running starts the backoff again from
    /// `backoff_start`: the agent had recovered, this is a new problem.
    pub reset_after: Duration,
    /// How long `run` gets to return after the stop signal before it is dropped.
    pub stop_grace: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            backoff_start: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
            reset_after: Duration::from_secs(120),
            stop_grace: Duration::from_secs(5),
        }
    }
}

impl SupervisorConfig {
    /// Refuses a policy that cannot work, naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.backoff_start.is_zero() {
            return Err("supervisor backoff_start must be above zero".into());
        }
        if self.backoff_cap < self.backoff_start {
            return Err(format!(
                "supervisor backoff_cap ({:?}) must be at least backoff_start ({:?})",
                self.backoff_cap, self.backoff_start
            ));
        }
        if self.reset_after.is_zero() {
            return Err("supervisor reset_after must be above zero".into());
        }
        Ok(())
    }
}

/// Capped exponential backoff: `start`, `2·start`, `4·start`, … up to `cap`.
#[derive(Clone, Debug)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first delay is `start` (`cap` is raised to `start` if below it).
    pub fn new(start: Duration, cap: Duration) -> Self {
        Self {
            start,
            cap: cap.max(start),
            next: start,
        }
    }

    /// The delay to wait now; the following one is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.next = self.start;
    }
}

/// How many backoff delays a handle remembers.
const BACKOFF_HISTORY: usize = 16;

/// What the supervisor task shares with its handle.
#[derive(Debug, Default)]
struct Shared {
    /// The latest backoff delays, oldest first (at most [`BACKOFF_HISTORY`]).
    backoffs: Mutex<VecDeque<Duration>>,
    /// The latest failure, for health.
    last_error: Mutex<Option<String>>,
}

enum Command {
    Recycle(oneshot::Sender<Result<(), String>>),
    Reload(Box<Config>, oneshot::Sender<Result<(), String>>),
    Shutdown,
}

/// Why an agent could not be put under supervision; both are caller bugs to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The restart policy cannot work.
    #[error("{0}")]
    BadPolicy(String),
    /// The agent's name cannot be recorded.
    #[error(transparent)]
    BadAgent(EventsError),
}

/// Runs cold agents: start, run, restart after failures with backoff, stop on shutdown.
#[derive(Debug)]
pub struct Supervisor;

impl Supervisor {
    /// Puts `agent` in Init and runs it on the current tokio runtime. Refuses a bad policy or
    /// agent name before anything is recorded.
    pub fn spawn<A: Agent>(
        agent: A,
        events: LifecycleEvents,
        config: SupervisorConfig,
    ) -> Result<SupervisorHandle<A>, SpawnError> {
        config.check().map_err(SpawnError::BadPolicy)?;
        let life = Lifecycle::new(agent.name(), events).map_err(SpawnError::BadAgent)?;
        let agent = Arc::new(agent);
        let state = life.watch();
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(8);
        let task = tokio::spawn(supervise(Arc::clone(&agent), life, config, rx, Arc::clone(&shared)));
        Ok(SupervisorHandle {
            agent,
            commands: tx,
            state,
            shared,
            task,
        })
    }
}

/// Controls a supervised agent. Dropping it shuts the agent down.
#[derive(Debug)]
pub struct SupervisorHandle<A> {
    agent: Arc<A>,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<LifecycleState>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl<A: Agent> SupervisorHandle<A> {
    /// The agent name.
    pub fn name(&self) -> &str {
        self.agent.name()
    }

    /// The agent itself, for calls of its own API.
    pub fn agent(&self) -> &Arc<A> {
        &self.agent
    }

    /// The current lifecycle state.
    pub fn state(&self) -> LifecycleState {
        *self.state.borrow()
    }

    /// A receiver of later states, to wait on one.
    pub fn watch(&self) -> watch::Receiver<LifecycleState> {
        self.state.clone()
    }

    /// The agent's own probe while it is Running; otherwise unhealthy, naming the state and
    /// the latest failure.
    pub fn health(&self) -> Health {
        let state = self.state();
        if state == LifecycleState::Running {
            return self.agent.health();
        }
        let last = self.shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match last {
            Some(e) => Health::failing(format!("{state}; last error: {e}")),
            None => Health::failing(state.as_str()),
        }
    }

    /// The latest backoff delays chosen (oldest first, at most 16).
    pub fn backoffs(&self) -> Vec<Duration> {
        let b = self.shared.backoffs.lock().unwrap_or_else(|p| p.into_inner());
        b.iter().copied().collect()
    }

    /// Restarts a Running agent on purpose: Running → Recycling → Running. Returns once the
    /// stop has begun; an error if the agent is not Running.
    pub async fn recycle(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Recycle(tx)).await?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Hands a validated config to the agent's reload hook; its answer is returned.
    pub async fn reload(&self, config: Config) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reload(Box::new(config), tx)).await?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Stops the agent (signal, `stop`, Shutdown) and waits until it is done.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Err(e) = self.task.await {
            error!(agent = self.agent.name(), error = %e, "agent supervisor panicked");
        }
    }

    async fn send(&self, command: Command) -> Result<(), String> {
        self.commands.send(command).await.map_err(|_| self.gone())
    }

    fn gone(&self) -> String {
        format!("agent {} is shut down", self.agent.name())
    }
}

/// How one start-and-run attempt ended.
enum Outcome {
    /// Shut down (asked for, or the agent's work is done, or a fatal error).
    Shutdown,
    /// Failed; `ran_for` is the time spent Running, if it got there.
    Failed { error: String, ran_for: Option<Duration> },
}

async fn supervise<A: Agent>(
    agent: Arc<A>,
    mut life: Lifecycle,
    config: SupervisorConfig,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let name = agent.name().to_string();
    let mut backoff = Backoff::new(config.backoff_start, config.backoff_cap);
    loop {
        match attempt(&*agent, &mut life, &config, &mut commands).await {
            Outcome::Shutdown => {
                transition(&mut life, LifecycleState::Shutdown);
                return;
            }
            Outcome::Failed { error, ran_for } => {
                if ran_for.is_some_and(|d| d >= config.reset_after) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                {
                    let mut b = shared.backoffs.lock().unwrap_or_else(|p| p.into_inner());
                    if b.len() == BACKOFF_HISTORY {
                        b.pop_front();
                    }
                    b.push_back(delay);
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
                warn!(agent = %name, error, retry_in_ms = delay.as_millis() as u64, "agent failed; backing off");
                transition(&mut life, LifecycleState::CrashLoopBackoff);
                if !wait_backoff(&*agent, delay, &mut commands).await {
                    transition(&mut life, LifecycleState::Shutdown);
                    return;
                }
                transition(&mut life, LifecycleState::Init);
            }
        }
    }
}

/// Applies a transition the supervisor's own sequencing guarantees is allowed; a refusal would
/// be a supervisor bug, logged rather than panicking in a background task.
fn transition(life: &mut Lifecycle, next: LifecycleState) {
    if let Err(e) = life.to(next) {
        error!(error = %e, "supervisor attempted a refused lifecycle transition");
    }
}

/// Waits out a backoff while still answering commands; `false` if shutdown was asked for.
async fn wait_backoff<A: Agent>(agent: &A, delay: Duration, commands: &mut mpsc::Receiver<Command>) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => return false,
                Some(Command::Reload(config, reply)) => {
                    let _ = reply.send(agent.reload(&config));
                }
                Some(Command::Recycle(reply)) => {
                    let _ = reply.send(Err(format!("agent {} is in CrashLoopBackoff, not Running", agent.name())));
                }
            },
        }
    }
}

/// Starts the agent (from Init, or again from Recycling) and runs it until it shuts down or
/// fails. Recycles loop inside, so the caller only sees the end of the attempt.
async fn attempt<A: Agent>(
    agent: &A,
    life: &mut Lifecycle,
    config: &SupervisorConfig,
    commands: &mut mpsc::Receiver<Command>,
) -> Outcome {
    loop {
        // Start, answering commands meanwhile.
        let started = {
            let start = agent.start();
            tokio::pin!(start);
            loop {
                tokio::select! {
                    result = &mut start => break result,
                    command = commands.recv() => match command {
                        None | Some(Command::Shutdown) => {
                            agent.stop().await;
                            return Outcome::Shutdown;
                        }
                        Some(Command::Reload(config, reply)) => {
                            let _ = reply.send(agent.reload(&config));
                        }
                        Some(Command::Recycle(reply)) => {
                            let _ = reply.send(Err(format!("agent {} is starting, not Running", agent.name())));
                        }
                    },
                }
            }
        };
        match started {
            Ok(()) => {}
            Err(AgentError::Retry(error)) => {
                agent.stop().await;
                return Outcome::Failed { error, ran_for: None };
            }
            Err(AgentError::Fatal(error)) => {
                agent.stop().await;
                error!(agent = agent.name(), error, "agent cannot start; shutting it down");
                return Outcome::Shutdown;
            }
        }
        transition(life, LifecycleState::Running);
        let since = Instant::now();
        info!(agent = agent.name(), "agent running");

        // Run until it ends or a command ends it.
        let (stop_tx, stop) = StopSignal::new();
        let run = agent.run(stop);
        tokio::pin!(run);
        let recycle_reply = loop {
            tokio::select! {
                result = &mut run => {
                    agent.stop().await;
                    return match result {
                        Ok(()) => {
                            info!(agent = agent.name(), "agent finished its work");
                            Outcome::Shutdown
                        }
                        Err(AgentError::Retry(error)) => Outcome::Failed { error, ran_for: Some(since.elapsed()) },
                        Err(AgentError::Fatal(error)) => {
                            error!(agent = agent.name(), error, "agent failed fatally; shutting it down");
                            Outcome::Shutdown
                        }
                    };
                }
                command = commands.recv() => match command {
                    None | Some(Command::Shutdown) => {
                        let _ = stop_tx.send(true);
                        finish(agent, run, config.stop_grace).await;
                        agent.stop().await;
                        return Outcome::Shutdown;
                    }
                    Some(Command::Reload(config, reply)) => {
                        let _ = reply.send(agent.reload(&config));
                    }
                    Some(Command::Recycle(reply)) => break reply,
                },
            }
        };
        transition(life, LifecycleState::Recycling);
        let _ = recycle_reply.send(Ok(()));
        let _ = stop_tx.send(true);
        finish(agent, run, config.stop_grace).await;
        agent.stop().await;
        // Loop: start again from Recycling.
    }
}

/// Gives a stopping `run` its grace period; past it the future is dropped.
async fn finish<A: Agent, F: Future<Output = Result<(), AgentError>>>(
    agent: &A,
    run: std::pin::Pin<&mut F>,
    grace: Duration,
) {
    match tokio::time::timeout(grace, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(agent = agent.name(), error = %e, "agent failed while stopping"),
        Err(_) => warn!(
            agent = agent.name(),
            grace_ms = grace.as_millis() as u64,
            "agent did not stop within its grace period; abandoned"
        ),
    }
}

#[cfg(test)]
mod tests {
    use maxx_hot::ids::Venue;

    use super::*;
    use LifecycleState::*;

    #[test]
    fn only_the_spec_transitions_are_allowed() {
        let allowed = [
            (Init, Running),
            (Init, CrashLoopBackoff),
            (Init, Shutdown),
            (Running, Recycling),
            (Running, CrashLoopBackoff),
            (Running, Shutdown),
            (Recycling, Running),
            (Recycling, CrashLoopBackoff),
            (Recycling, Shutdown),
            (CrashLoopBackoff, Init),
            (CrashLoopBackoff, Shutdown),
        ];
        for from in LifecycleState::ALL {
            for to in LifecycleState::ALL {
                assert_eq!(from.allows(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn a_refused_transition_leaves_the_state_and_records_nothing() {
        let events = LifecycleEvents::log_only();
        let mut life = Lifecycle::new("alpha", events.clone()).unwrap();
        let err = life.to(Recycling).unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent alpha: lifecycle transition Init -> Recycling is not allowed"
        );
        assert_eq!(life.state(), Init);
        assert_eq!(events.states()[0].state, Init);
        life.to(Shutdown).unwrap();
        assert!(life.to(Shutdown).is_err(), "Shutdown is terminal");
        assert!(life.to(Init).is_err(), "Shutdown is terminal");
    }

    #[test]
    fn wire_names_round_trip() {
        for s in LifecycleState::ALL {
            assert_eq!(s.as_str().parse::<LifecycleState>(), Ok(s));
        }
        assert_eq!(CrashLoopBackoff.as_str(), "CrashLoopBackoff");
        assert!(
            "running"
                .parse::<LifecycleState>()
                .unwrap_err()
                .contains("unknown lifecycle state")
        );
    }

    #[test]
    fn agent_names_are_checked() {
        for name in [
            names::ALPHA,
            names::RISK_SENTINEL,
            names::EXECUTION,
            names::META_GOVERNOR,
            names::PORTFOLIO,
        ] {
            check_name(name).unwrap();
        }
        for venue in Venue::ALL {
            check_name(&names::market_data(venue)).unwrap();
        }
        assert_eq!(names::market_data(Venue::Binance), "market_data.binance");
        assert!(check_name("").is_err());
        assert!(check_name("market_data:binance").unwrap_err().reason.contains("':'"));
        assert!(check_name("Alpha").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn bad_policies_are_refused() {
        let ok = SupervisorConfig::default();
        ok.check().unwrap();
        let zero = SupervisorConfig {
            backoff_start: Duration::ZERO,
            ..ok.clone()
        };
        assert!(zero.check().unwrap_err().contains("backoff_start"));
        let inverted = SupervisorConfig {
            backoff_cap: Duration::from_millis(1),
            ..ok.clone()
        };
        assert!(inverted.check().unwrap_err().contains("backoff_cap"));
        let no_reset = SupervisorConfig {
            reset_after: Duration::ZERO,
            ..ok
        };
        assert!(no_reset.check().unwrap_err().contains("reset_after"));
    }
}
