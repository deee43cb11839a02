//! The hot runtime: lays stages onto threads and cores, runs them, and drains them on stop.
//!
//! [`plan`] turns `hot.layout` and `hot.cores` into thread plans; [`spawn`] starts one named
//! thread per plan, pins it, and runs its tasks in a loop with the configured wait strategy;
//! [`run_lockstep`] runs the same tasks on the calling thread one frame at a time, which is how
//! `maxx replay` gets results that do not depend on thread timing.

pub mod engine;
pub mod host;
pub mod memsource;
pub mod stats;
pub mod tasks;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;

use core_affinity::CoreId;

use crate::source::{Decode, FrameSource};
use crate::stage::exec::Gateway;
use crate::topology::{Layout, StageName, WaitKind};
use crate::wait::{Wait, WaitBody, with_wait};

pub use tasks::{AlphaTask, AnyTask, ExecTask, FeedTask, Flags, RiskTask};

/// One hot thread: its name, its core (if pinned) and the stages it runs, in loop order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadPlan {
    /// Thread name as seen in `/proc/<pid>/task/*/comm` (at most 15 bytes).
    pub name: String,
    /// The core it is pinned to, or `None` to leave it to the scheduler.
    pub core: Option<usize>,
    /// Stages run by this thread.
    pub stages: Vec<StageName>,
}

/// The complete placement: hot threads, and the cores left for the cold side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// What `auto` resolved to (or the configured layout).
    pub layout: Layout,
    /// Hot threads.
    pub threads: Vec<ThreadPlan>,
    /// Cores for the cold side (tokio); every available core if none is free.
    pub cold_cores: Vec<usize>,
}

/// Why a placement is impossible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// The cores this process may run on. Read it once, at start, before anything is pinned: a
/// pinned thread sees only its own core, and threads inherit their parent's mask.
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Places `stages` onto threads and cores.
///
/// * `pinned`: one thread per stage on its `hot.cores` entry; every stage must have one and
///   every core must be available.
/// * `fused`: stages sharing a configured core run on one thread pinned there; stages without
///   an entry join the last available core.
/// * `auto`: `pinned` when there is a core for every stage plus one for the cold side (using
///   `hot.cores` if it names distinct available cores for all stages, else the available cores
///   after the first, in order); otherwise `fused`, with every stage on one thread on the last
///   core and the cold side on the others (a single-core machine leaves it unpinned).
pub fn plan(
    layout: Layout,
    cores: &BTreeMap<StageName, usize>,
    stages: &[StageName],
    available: &[usize],
) -> Result<Placement, PlanError> {
    let check = |stage: &StageName, core: usize| {
        if available.contains(&core) {
            Ok(core)
        } else {
            Err(PlanError(format!(
                "hot.cores.{stage}: core {core} is not available to this process (available: {available:?})"
            )))
        }
    };
    let placement = match layout {
        Layout::Pinned => {
            let mut threads = Vec::new();
            for stage in stages {
                let core = cores.get(stage).ok_or_else(|| {
                    PlanError(format!(
                        "hot.cores.{stage}: missing; hot.layout: pinned needs a core for every stage"
                    ))
                })?;
                threads.push(ThreadPlan {
                    name: stage.to_string(),
                    core: Some(check(stage, *core)?),
                    stages: vec![*stage],
                });
            }
            Placement {
                layout,
                threads,
                cold_cores: Vec::new(),
            }
        }
        Layout::Fused => {
            let fallback = available.last().copied();
            let mut groups: BTreeMap<Option<usize>, Vec<StageName>> = BTreeMap::new();
            for stage in stages {
                let core = match cores.get(stage) {
                    Some(c) => Some(check(stage, *c)?),
                    None => fallback,
                };
                groups.entry(core).or_default().push(*stage);
            }
            let threads = groups
                .into_iter()
                .map(|(core, stages)| ThreadPlan {
                    name: fused_name(core, &stages),
                    core,
                    stages,
                })
                .collect();
            Placement {
                layout,
                threads,
                cold_cores: Vec::new(),
            }
        }
        Layout::Auto => {
            if available.len() > stages.len() {
                let configured: Vec<usize> = stages.iter().filter_map(|s| cores.get(s).copied()).collect();
                let mut distinct = configured.clone();
                distinct.sort_unstable();
                distinct.dedup();
                let use_config = configured.len() == stages.len()
                    && distinct.len() == stages.len()
                    && configured.iter().all(|c| available.contains(c));
                let threads = stages
                    .iter()
                    .enumerate()
                    .map(|(i, stage)| ThreadPlan {
                        name: stage.to_string(),
                        core: Some(if use_config { configured[i] } else { available[i + 1] }),
                        stages: vec![*stage],
                    })
                    .collect();
                Placement {
                    layout: Layout::Pinned,
                    threads,
                    cold_cores: Vec::new(),
                }
            } else {
                let core = if available.len() >= 2 {
                    available.last().copied()
                } else {
                    None
                };
                let threads = vec![ThreadPlan {
                    name: fused_name(core, stages),
                    core,
                    stages: stages.to_vec(),
                }];
                Placement {
                    layout: Layout::Fused,
                    threads,
                    cold_cores: Vec::new(),
                }
            }
        }
    };
    let hot: Vec<usize> = placement.threads.iter().filter_map(|t| t.core).collect();
    let mut cold: Vec<usize> = available.iter().copied().filter(|c| !hot.contains(c)).collect();
    if cold.is_empty() {
        cold = available.to_vec();
    }
    Ok(Placement {
        cold_cores: cold,
        ..placement
    })
}

/// A fused thread is named after its single stage, or `hot-c<core>` when it runs several.
fn fused_name(core: Option<usize>, stages: &[StageName]) -> String {
    match (stages, core) {
        ([one], _) => one.to_string(),
        (_, Some(c)) => format!("hot-c{c}"),
        (_, None) => "hot".to_string(),
    }
}

/// Restricts the calling thread (and every thread it spawns afterwards) to `cores`.
/// Used to keep the cold side's tokio workers off the hot cores.
pub fn confine_current_thread(cores: &[usize]) -> bool {
    confine(0, cores)
}

/// Restricts every thread of this process named `name` to `cores`: for threads started before
/// the process knew its placement (the log flusher). Returns how many were confined.
pub fn confine_threads_named(name: &str, cores: &[usize]) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: libc::pid_t = t.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim_end() == name && confine(tid, cores)).then_some(())
        })
        .count()
}

/// `sched_setaffinity` of thread `tid` (0: the caller) to `cores`.
fn confine(tid: libc::pid_t, cores: &[usize]) -> bool {
    if cores.is_empty() {
        return false;
    }
    // SAFETY: `set` is a plain-old-data bitmask that CPU_ZERO/CPU_SET initialise; the pointer
    // and size passed to sched_setaffinity describe exactly that local value. A `tid` that no
    // longer exists makes the call fail with ESRCH, nothing else.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Handles of the running hot threads.
#[derive(Debug)]
pub struct HotThreads {
    handles: Vec<JoinHandle<()>>,
}

impl HotThreads {
    /// Waits for every hot thread to finish (after [`Flags::request_stop`] or end of input).
    pub fn join(self) -> Result<(), String> {
        let mut failed = Vec::new();
        for h in self.handles {
            let name = h.thread().name().unwrap_or("?").to_string();
            if h.join().is_err() {
                failed.push(name);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("hot thread(s) panicked: {}", failed.join(", ")))
        }
    }

    /// Whether every hot thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handles.iter().all(JoinHandle::is_finished)
    }
}

/// Starts one thread per plan, each running its tasks until all of them have finished.
///
/// `tasks` must hold exactly the stages the plans name; each thread pins itself, calls
/// `on_start` (a hook for per-thread setup such as scheduling policy, or for test
/// instrumentation), then loops. Returns an error if a thread cannot be spawned.
pub fn spawn<S, D, G>(
    plans: &[ThreadPlan],
    mut tasks: Vec<(StageName, AnyTask<S, D, G>)>,
    wait: WaitKind,
    on_start: fn(),
) -> std::io::Result<HotThreads>
where
    S: FrameSource + Send + 'static,
    D: Decode + Send + 'static,
    G: Gateway + Send + 'static,
{
    let mut handles = Vec::new();
    for plan in plans {
        let mine: Vec<AnyTask<S, D, G>> = plan
            .stages
            .iter()
            .filter_map(|s| tasks.iter().position(|(n, _)| n == s).map(|i| tasks.swap_remove(i).1))
            .collect();
        let core = plan.core;
        let handle = std::thread::Builder::new().name(plan.name.clone()).spawn(move || {
            if let Some(id) = core {
                core_affinity::set_for_current(CoreId { id });
            }
            on_start();
            with_wait(wait, Loop { tasks: mine });
        })?;
        handles.push(handle);
    }
    Ok(HotThreads { handles })
}

/// The loop of one hot thread.
struct Loop<S, D, G: Gateway> {
    tasks: Vec<AnyTask<S, D, G>>,
}

impl<S: FrameSource, D: Decode, G: Gateway> WaitBody<()> for Loop<S, D, G> {
    fn run<W: Wait>(mut self, mut wait: W) {
        let mut idle: u32 = 0;
        loop {
            let mut busy = false;
            for t in &mut self.tasks {
                busy |= t.poll();
            }
            if busy {
                idle = 0;
                continue;
            }
            if self.tasks.iter().all(AnyTask::finished) {
                return;
            }
            idle = idle.saturating_add(1);
            wait.idle(idle);
        }
    }
}

/// Runs tasks on the calling thread in lockstep: one feed frame, then every downstream stage
/// until nothing moves, then `drain` (the caller's cold side), and again, until all finish.
///
/// Because each frame's consequences settle before the next frame is read, the outcome
/// depends only on the input, never on timing: this is what makes replays byte-identical.
pub fn run_lockstep<S: FrameSource, D: Decode, G: Gateway>(tasks: &mut [AnyTask<S, D, G>], mut drain: impl FnMut()) {
    loop {
        let mut any = false;
        for t in tasks.iter_mut() {
            if let AnyTask::Feed(f) = t {
                any |= f.poll();
            }
        }
        loop {
            let mut busy = false;
            for t in tasks.iter_mut() {
                if !matches!(t, AnyTask::Feed(_)) {
                    busy |= t.poll();
                }
            }
            drain();
            if !busy {
                break;
            }
            any = true;
        }
        if tasks.iter().all(AnyTask::finished) {
            drain();
            return;
        }
        if !any {
            std::hint::spin_loop();
        }
    }
}

/// A shared handle to the engine's flags, for the cold side.
pub type SharedFlags = Arc<Flags>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Venue;

    fn stages() -> Vec<StageName> {
        vec![
            StageName::MarketData(Venue::Binance),
            StageName::Alpha,
            StageName::Risk,
            StageName::Exec,
        ]
    }

    #[test]
    fn auto_fuses_on_two_cores_and_pins_on_many() {
        let none = BTreeMap::new();
        let p = plan(Layout::Auto, &none, &stages(), &[0, 1]).unwrap();
        assert_eq!(p.layout, Layout::Fused);
        assert_eq!(p.threads.len(), 1);
        assert_eq!(p.threads[0].core, Some(1));
        assert_eq!(p.threads[0].name, "hot-c1");
        assert_eq!(p.cold_cores, vec![0]);
        let p = plan(Layout::Auto, &none, &stages(), &[0, 1, 2, 3, 4, 5]).unwrap();
        assert_eq!(p.layout, Layout::Pinned);
        let names: Vec<_> = p.threads.iter().map(|t| (t.name.as_str(), t.core)).collect();
        assert_eq!(
            names,
            [
                ("md-binance", Some(1)),
                ("alpha", Some(2)),
                ("risk", Some(3)),
                ("exec", Some(4))
            ]
        );
        assert_eq!(p.cold_cores, vec![0, 5]);
        let p = plan(Layout::Auto, &none, &stages(), &[0]).unwrap();
        assert_eq!(p.threads[0].core, None);
    }

    #[test]
    fn pinned_and_fused_follow_config() {
        let cores: BTreeMap<_, _> = stages().into_iter().zip([0, 1, 1, 1]).collect();
        let p = plan(Layout::Pinned, &cores, &stages(), &[0, 1]).unwrap();
        assert_eq!(p.threads.len(), 4);
        assert_eq!(
            p.threads[3],
            ThreadPlan {
                name: "exec".into(),
                core: Some(1),
                stages: vec![StageName::Exec]
            }
        );
        let p = plan(Layout::Fused, &cores, &stages(), &[0, 1]).unwrap();
        let names: Vec<_> = p
            .threads
            .iter()
            .map(|t| (t.name.as_str(), t.core, t.stages.len()))
            .collect();
        assert_eq!(names, [("md-binance", Some(0), 1), ("hot-c1", Some(1), 3)]);
        let err = plan(Layout::Pinned, &cores, &stages(), &[0]).unwrap_err();
        assert!(err.0.contains("hot.cores.alpha: core 1 is not available"), "{err}");
        let mut partial = cores.clone();
        partial.remove(&StageName::Risk);
        assert!(
            plan(Layout::Pinned, &partial, &stages(), &[0, 1])
                .unwrap_err()
                .0
                .contains("hot.cores.risk: missing")
        );
    }
}
