//! The kill switch: one shared flag that stops every order from leaving the engine, and the
//! out-of-band paths that trip it.
//!
//! [`KillSwitch`] is a single atomic word shared (through an `Arc`) by the Risk task, the
//! Execution task and the cold side. Execution reads it before handing any order to a venue, so
//! an order already inside the hot path (approved by Risk, waiting in a ring) is stopped at the
//! last step; and on the first pass after a new trip it cancels every resting order once. Risk
//! reads the trip count to move to HALTED. Tripping is one atomic read-modify-write: it works
//! from any thread, allocates nothing and never waits.
//!
//! The operator's usual doors (HTTP, gRPC, `maxx kill`) go through the cold side, which may be
//! the part that is wedged. [`spawn_watcher`] adds two doors that need neither tokio nor the
//! HTTP server, only a plain thread and the kernel: the signal `SIGUSR2` (`kill -USR2 <pid>`)
//! and a file whose appearance trips the switch (`risk.kill_file`; it also works when signals
//! cannot be sent, e.g. from another container sharing a volume). For the signal path every
//! thread must block `SIGUSR2` ([`block_kill_signal`], first thing in `main`, before any thread
//! exists, so all threads inherit the mask): the signal then stays pending for the process until
//! the watcher takes it with `sigtimedwait`. Without the mask the signal's default action ends
//! the process, which stops trading but leaves resting orders at the venues.
//!
//! The switch's atomics come from [`crate::sync`], so the protocol can be model-checked with
//! loom (`RUSTFLAGS="--cfg loom" cargo test -p maxx-hot --lib kill::loom`).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::sync::{AtomicU64, Ordering};

/// Bit 0 of the word: the switch is tripped. The bits above count trips.
const TRIPPED: u64 = 1;
/// One trip in the count.
const ONE_TRIP: u64 = 2;

/// The engine's kill switch; clones share one switch. See the module doc.
///
/// The state is one word: bit 0 says "tripped", the rest counts trips ([`generation`]), so a
/// reader that polls now and then still notices a trip that an operator has already reset.
///
/// [`generation`]: KillSwitch::generation
#[derive(Clone, Debug)]
pub struct KillSwitch {
    word: Arc<AtomicU64>,
}

impl Default for KillSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl KillSwitch {
    /// A switch that is not tripped and has never been. Allocates; call while wiring.
    pub fn new() -> Self {
        Self {
            word: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Trips the switch. Tripping a tripped switch changes nothing (the generation counts
    /// trips from untripped to tripped). From any thread; never waits, never allocates.
    pub fn trip(&self) {
        // AcqRel: the Release half pairs with the Acquire loads in `is_tripped` and
        // `generation`, so whatever the tripping thread did before (an operator's log line,
        // a state file write) happens-before a reader that sees the trip; the Acquire half
        // orders this trip after a `reset` it observes.
        let _ = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            (w & TRIPPED == 0).then(|| (w | TRIPPED).wrapping_add(ONE_TRIP))
        });
    }

    /// Whether the switch is tripped now.
    #[inline]
    pub fn is_tripped(&self) -> bool {
        // Acquire: pairs with the Release half of `trip` (see there).
        self.word.load(Ordering::Acquire) & TRIPPED != 0
    }

    /// Lifts the switch (an operator's Resume). The trip count stays.
    pub fn reset(&self) {
        // AcqRel: pairs with `trip`'s Acquire half, so a trip that observes this reset comes
        // after it in every thread's view, and with readers' Acquire loads.
        self.word.fetch_and(!TRIPPED, Ordering::AcqRel);
    }

    /// Lifts the switch only if it has not been tripped again since `generation` was read, and
    /// says whether it did. An operator's Resume goes through this, so it never lifts a trip
    /// it has not seen (a kill file or signal racing the Resume wins).
    pub fn reset_if(&self, generation: u64) -> bool {
        // AcqRel / Acquire: as in `reset`; the comparison is on the whole word, so a newer trip
        // (a higher count) makes it fail.
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w >> 1 == generation).then_some(w & !TRIPPED)
            })
            .is_ok()
    }

    /// How many times the switch went from untripped to tripped since it was made. A task that
    /// remembers the last generation it handled sees every trip, even one already reset.
    #[inline]
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the Release half of `trip`.
        self.word.load(Ordering::Acquire) >> 1
    }
}

/// The signal that trips the kill switch from outside the process.
pub const KILL_SIGNAL: libc::c_int = libc::SIGUSR2;

/// How long the watcher waits for the signal before it looks at the file and its stop flag.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A signal set holding only [`KILL_SIGNAL`].
fn kill_set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; `sigemptyset` initialises the zeroed value in full and
    // `sigaddset` with a valid signal number only sets a bit in it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, KILL_SIGNAL);
        set
    }
}

/// Blocks [`KILL_SIGNAL`] in the calling thread, and so in every thread it spawns afterwards.
///
/// Call it first thing in `main`, before any thread exists (including the ones libraries start
/// on their own), so no thread can receive the signal and the [`spawn_watcher`] thread takes it
/// with `sigtimedwait` instead. Fails only if the kernel refuses the mask.
pub fn block_kill_signal() -> std::io::Result<()> {
    let set = kill_set();
    // SAFETY: `set` is an initialised signal set; the old mask is not asked for (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// Whether [`KILL_SIGNAL`] is blocked in the calling thread.
pub fn kill_signal_blocked() -> bool {
    // SAFETY: `old` is a writable signal set that `pthread_sigmask` fills; with a null new set
    // the mask is only read.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) == 0
            && libc::sigismember(&old, KILL_SIGNAL) == 1
    }
}

/// The running watcher thread; [`stop`](Watcher::stop) ends it.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: JoinHandle<()>,
}

impl Watcher {
    /// Asks the watcher to stop and waits for it (at most one [`WATCH_EVERY`]).
    pub fn stop(self) {
        // Release: pairs with the watcher's Acquire load; nothing else is published.
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let _ = self.handle.join();
    }

    /// The watcher's thread, e.g. to direct a signal at it (`pthread_kill`).
    pub fn thread(&self) -> &JoinHandle<()> {
        &self.handle
    }
}

/// Starts the `kill-watch` thread: it trips `kill` when [`KILL_SIGNAL`] arrives or when `file`
/// exists, checking both every [`WATCH_EVERY`]. Returns once the thread has blocked the signal,
/// so from then on a signal directed at it is never fatal.
///
/// The file is a level, not an edge: while it exists the switch is tripped again after every
/// reset, so an operator removes it before resuming. The thread blocks the signal in its own
/// mask too; for a signal sent to the whole process (`kill -USR2 <pid>`) every other thread
/// must block it as well ([`block_kill_signal`]). It is not a hot thread: it sleeps in the
/// kernel and allocates nothing while it waits.
pub fn spawn_watcher(kill: KillSwitch, file: Option<PathBuf>) -> std::io::Result<Watcher> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let (masked, is_masked) = std::sync::mpsc::sync_channel(1);
    let handle = std::thread::Builder::new().name("kill-watch".into()).spawn(move || {
        // Ignoring a failure is safe: the mask is then what the thread inherited, and only the
        // signal path is affected (the file path does not depend on it).
        let _ = block_kill_signal();
        let _ = masked.send(());
        let set = kill_set();
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: WATCH_EVERY.as_nanos() as libc::c_long,
        };
        // Acquire: pairs with `Watcher::stop`'s Release store.
        while !flag.load(std::sync::atomic::Ordering::Acquire) {
            // SAFETY: `set` is an initialised signal set, `info` a writable siginfo, `timeout` a
            // valid timespec; `sigtimedwait` writes only into `info`.
            let got = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::sigtimedwait(&set, &mut info, &timeout)
            };
            // A timeout or an interruption returns -1: then only the file decides.
            if got == KILL_SIGNAL || file.as_ref().is_some_and(|f| f.exists()) {
                kill.trip();
            }
        }
    })?;
    // The thread sends before its loop; an error means it is gone, which `stop` reports.
    let _ = is_masked.recv();
    Ok(Watcher { stop, handle })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::os::unix::thread::JoinHandleExt;
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn trips_count_generations_and_reset_keeps_them() {
        let k = KillSwitch::new();
        let other = k.clone();
        assert!(!k.is_tripped());
        assert_eq!(k.generation(), 0);
        other.trip();
        assert!(k.is_tripped());
        assert_eq!(k.generation(), 1);
        k.trip();
        assert_eq!(k.generation(), 1, "tripping a tripped switch is not a new trip");
        k.reset();
        assert!(!other.is_tripped());
        assert_eq!(other.generation(), 1, "a reset keeps the count");
        k.reset();
        assert!(!k.is_tripped());
        k.trip();
        assert_eq!((k.is_tripped(), k.generation()), (true, 2));
        assert!(!k.reset_if(1), "a resume that has not seen trip 2 does not lift it");
        assert!(k.is_tripped());
        assert!(k.reset_if(2));
        assert!(!k.is_tripped());
        assert!(k.reset_if(2), "lifting a lifted switch is fine");
    }

    #[test]
    fn the_watcher_trips_on_the_file_and_stops_when_asked() {
        let dir = std::env::temp_dir().join(format!("maxx-kill-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("KILL");
        let _ = std::fs::remove_file(&file);
        let k = KillSwitch::new();
        let w = spawn_watcher(k.clone(), Some(file.clone())).unwrap();
        assert_eq!(w.thread().thread().name(), Some("kill-watch"));
        assert!(!k.is_tripped());
        std::fs::write(&file, b"").unwrap();
        wait_until("the file to trip the switch", || k.is_tripped());
        assert_eq!(k.generation(), 1);
        // The file is a level: after a reset the switch trips again while it exists.
        k.reset();
        wait_until("the file to trip the switch again", || k.is_tripped());
        assert_eq!(k.generation(), 2);
        std::fs::remove_file(&file).unwrap();
        w.stop();
        k.reset();
        assert!(!k.is_tripped());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_watcher_takes_a_real_sigusr2() {
        // The signal is directed at the watcher thread (`pthread_kill`), which blocks it and
        // takes it with `sigtimedwait`. A process-directed `kill -USR2` would need every thread
        // of this test binary to block it, which the test harness's own threads do not.
        let k = KillSwitch::new();
        let w = spawn_watcher(k.clone(), None).unwrap();
        // `spawn_watcher` returns once the thread has blocked the signal: sending it now cannot
        // end the process.
        let target = w.thread().as_pthread_t();
        assert!(!k.is_tripped());
        // SAFETY: `target` is the pthread of a thread that is still running (it loops until
        // `stop`), and SIGUSR2 is blocked there, so the signal is queued for `sigtimedwait`.
        let rc = unsafe { libc::pthread_kill(target, KILL_SIGNAL) };
        assert_eq!(rc, 0);
        wait_until("the signal to trip the switch", || k.is_tripped());
        assert_eq!(k.generation(), 1);
        w.stop();
    }

    #[test]
    fn block_kill_signal_masks_this_thread_and_its_children() {
        std::thread::spawn(|| {
            assert!(!kill_signal_blocked(), "test threads start unmasked");
            block_kill_signal().unwrap();
            assert!(kill_signal_blocked());
            let child = std::thread::spawn(kill_signal_blocked).join().unwrap();
            assert!(child, "threads inherit the mask");
        })
        .join()
        .unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// Two trips racing from untripped count one generation; a trip racing a reset leaves the
    /// switch in a state some order of the two explains, and the count never goes back.
    #[test]
    fn loom_trips_and_resets_are_atomic() {
        loom::model(|| {
            let k = KillSwitch::new();
            let (a, b) = (k.clone(), k.clone());
            let t1 = loom::thread::spawn(move || a.trip());
            let t2 = loom::thread::spawn(move || b.trip());
            let seen = k.generation();
            t1.join().unwrap();
            t2.join().unwrap();
            assert!(seen <= 1);
            assert_eq!((k.is_tripped(), k.generation()), (true, 1));
        });
        loom::model(|| {
            let k = KillSwitch::new();
            k.trip();
            let a = k.clone();
            let t = loom::thread::spawn(move || a.reset());
            k.trip();
            let g = k.generation();
            t.join().unwrap();
            // trip-then-reset: untripped, 1; reset-then-trip: tripped, 2.
            match (k.is_tripped(), k.generation()) {
                (false, 1) => assert_eq!(g, 1),
                (true, 2) => assert_eq!(g, 2),
                other => panic!("impossible state {other:?}"),
            }
        });
    }
}
