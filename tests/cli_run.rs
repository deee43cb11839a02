//! End-to-end tests of `maxx run`: the shipped config starts the embedded Binance simulator on
//! loopback and connects the real connector to it, so a run trades with no network.
//!
//! Covered: a bounded run (`--for`) prints status lines and a summary; the pinned layout names
//! one thread per stage and pins each to exactly its configured core; the fused layout runs
//! every stage on one `hot-c<core>` thread; SIGTERM and SIGINT stop the engine cleanly, with
//! every order accounted for by a fill or a reject in the summary.
//!
//! Every copy of the config uses `hot.wait: park`, so idle hot threads sleep instead of
//! spinning and the tests stay cheap on a small CI machine. Nothing here sleeps to synchronise:
//! each wait polls a condition (thread names, affinities, output lines, exit) with a deadline
//! and fails with what it saw.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{TempDir, config_with, maxx};

/// How long any one condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// How often a polled condition is re-checked (while stdout is collected in between).
const POLL: Duration = Duration::from_millis(20);

/// The stages of the shipped config, as thread names in the pinned layout.
const STAGES: [&str; 4] = ["md-binance", "alpha", "risk", "exec"];

// ---------------------------------------------------------------------------------------------
// A running `maxx run`

/// A `maxx run` child with its stdout collected line by line; killed if the test fails.
struct Running {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = maxx()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start maxx run");
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        let stdout_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Running {
            child,
            lines,
            stdout: Vec::new(),
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Collects stdout lines for at most `POLL`.
    fn collect(&mut self) {
        match self.lines.recv_timeout(POLL) {
            Ok(line) => {
                self.stdout.push(line);
                self.stdout.extend(self.lines.try_iter());
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Fails the test if the process has already exited.
    fn assert_alive(&mut self, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            self.fail(&format!("maxx exited ({status}) while waiting for {waiting_for}"));
        }
    }

    /// Polls `cond` (collecting stdout in between) until it returns `Ok`, or fails with the
    /// last `Err` it returned (what it saw instead).
    fn poll<T>(&mut self, what: &str, mut cond: impl FnMut(&mut Running) -> Result<T, String>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let seen = match cond(self) {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            self.assert_alive(what);
            if Instant::now() > deadline {
                self.fail(&format!(
                    "timed out after {DEADLINE:?} waiting for {what}; last seen: {seen}"
                ));
            }
            self.collect();
        }
    }

    /// Sends `signal` to the process.
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; `pid` is our own
        // child, which has not been reaped yet (we hold its `Child` and have not waited on it
        // successfully), so the id cannot have been reused by another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits (with the deadline) for the process to exit; returns its status, all of stdout
    /// and all of stderr.
    fn wait_exit(mut self, what: &str) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "timed out after {DEADLINE:?} waiting for maxx to exit after {what}"
                ));
            }
            self.collect();
        };
        if let Some(h) = self.stdout_reader.take() {
            h.join().expect("stdout reader");
        }
        self.stdout.extend(self.lines.try_iter());
        let err = self
            .stderr_reader
            .take()
            .map(|h| h.join().expect("stderr reader"))
            .unwrap_or_default();
        (status, std::mem::take(&mut self.stdout), err)
    }

    /// Kills the process and panics with everything it printed so far.
    fn fail(&mut self, msg: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdout.extend(self.lines.try_iter());
        let err = self
            .stderr_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!("{msg}\n--- stdout\n{}\n--- stderr\n{err}", self.stdout.join("\n"));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only matters when a test fails between start and exit: never leave the engine running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Parses a kernel CPU list such as `0-3,6,8-9`.
fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().expect("cpu"), b.parse().expect("cpu"));
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().expect("cpu")),
        }
    }
    cpus
}

/// `Cpus_allowed_list` of a `/proc/.../status` file, as text.
fn cpus_allowed_list(status_path: &str) -> Option<String> {
    let status = std::fs::read_to_string(status_path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// The cores this test process may run on (`maxx` inherits the same mask).
fn allowed_cores() -> Vec<usize> {
    let list = cpus_allowed_list("/proc/self/status").expect("Cpus_allowed_list in /proc/self/status");
    let cores = parse_cpu_list(&list);
    assert!(!cores.is_empty(), "no allowed cores in {list:?}");
    cores
}

/// Thread name -> thread ids of a process.
fn threads(pid: u32) -> BTreeMap<String, Vec<u32>> {
    let mut map: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            map.entry(comm.trim_end().to_string()).or_default().push(tid);
        }
    }
    map
}

fn thread_cpus(pid: u32, tid: u32) -> Option<String> {
    cpus_allowed_list(&format!("/proc/{pid}/task/{tid}/status"))
}

// ---------------------------------------------------------------------------------------------
// Output

fn is_status_line(l: &str) -> bool {
    l.starts_with('[') && l.contains("ticks/s")
}

/// The value of a summary line (`orders        12` -> `12`), from the lines after `--- summary`.
fn summary_field<'a>(stdout: &'a [String], label: &str) -> &'a str {
    let start = stdout
        .iter()
        .position(|l| l.starts_with("--- summary"))
        .unwrap_or_else(|| panic!("no summary in stdout:\n{}", stdout.join("\n")));
    stdout[start..]
        .iter()
        .find_map(|l| {
            l.strip_prefix(label)
                .filter(|rest| rest.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{}", stdout[start..].join("\n")))
}

/// The leading integer of a summary value (`"12 (0 rejects)"` -> 12).
fn leading_count(value: &str) -> u64 {
    value
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count at the start of {value:?}"))
}

/// `fills` and `rejects` from `"F (R rejects)"`.
fn fills_and_rejects(value: &str) -> (u64, u64) {
    let fills = leading_count(value);
    let rejects = value
        .split_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reject count in {value:?}"));
    (fills, rejects)
}

/// The `orders` count of a status line (`... | orders      3 | ...`).
fn status_orders(line: &str) -> Option<u64> {
    line.split('|')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("orders"))
        .and_then(|n| n.trim().parse().ok())
}

/// Asserts a clean stop: exit 0, a summary, and every order settled by a fill or a reject.
fn assert_clean_summary(status: ExitStatus, stdout: &[String], stderr: &str, what: &str) -> u64 {
    assert!(
        status.success(),
        "{what}: expected exit 0, got {status}\n--- stdout\n{}\n--- stderr\n{stderr}",
        stdout.join("\n")
    );
    let orders = leading_count(summary_field(stdout, "orders"));
    let (fills, rejects) = fills_and_rejects(summary_field(stdout, "fills"));
    assert_eq!(
        orders,
        fills + rejects,
        "{what}: the drain settles every order (fills + rejects):\n{}",
        stdout.join("\n")
    );
    assert_eq!(leading_count(summary_field(stdout, "bad frames")), 0, "{what}");
    orders
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn bounded_run_prints_status_lines_and_a_summary() {
    let dir = TempDir::new("run-for");
    // Takers only, as in `pinned_config`, so that fills + rejects account for every order.
    let config = dir.write(
        "park.yaml",
        config_with(&[
            ("  wait:", "  wait: park"),
            ("  urgent_score:", "  urgent_score: 0"),
            ("    latency_us:", "    latency_us: 0"),
        ]),
    );
    let run = Running::start(&["run", "--config", config.to_str().expect("utf-8 path"), "--for", "3s"]);
    let (status, stdout, stderr) = run.wait_exit("--for 3s");
    assert!(
        status.success(),
        "expected exit 0, got {status}\n--- stdout\n{}\n--- stderr\n{stderr}",
        stdout.join("\n")
    );
    let up = stdout
        .iter()
        .filter(|l| is_status_line(l) && l.contains("binance:up"))
        .count();
    assert!(
        up >= 2,
        "at least two status lines with the feed up:\n{}",
        stdout.join("\n")
    );
    let summary_at = stdout
        .iter()
        .position(|l| l.starts_with("--- summary"))
        .unwrap_or_else(|| panic!("no summary:\n{}", stdout.join("\n")));
    assert!(
        stdout.iter().skip(summary_at).all(|l| !is_status_line(l)),
        "the summary comes after the last status line"
    );
    let ticks = summary_field(&stdout, "ticks");
    assert!(leading_count(ticks) > 0, "trades flowed: {ticks}");
    assert!(ticks.ends_with("quotes"), "{ticks}");
    assert!(
        stdout.iter().any(|l| l == "bad frames    0"),
        "no bad frames from the simulator:\n{}",
        stdout.join("\n")
    );
    let (fills, rejects) = fills_and_rejects(summary_field(&stdout, "fills"));
    assert_eq!(leading_count(summary_field(&stdout, "orders")), fills + rejects);
    assert!(
        summary_field(&stdout, "equity")
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
    );
}

/// The pinned-layout config: stage *i* on the *i*-th allowed core, the last core taking the
/// rest. Alpha is made eager (independently of the shipped tuning) so that orders happen
/// early and the drain on shutdown has something to settle. Every order takes at once
/// (`urgent_score: 0`, no paper latency), so each one settles in exactly one fill or reject,
/// the two counts the summary shows (a passive order still resting at the stop is cancelled).
fn pinned_config(dir: &TempDir, cores: &[usize]) -> (std::path::PathBuf, BTreeMap<&'static str, usize>) {
    let map: BTreeMap<&'static str, usize> = STAGES
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, cores[i.min(cores.len() - 1)]))
        .collect();
    let cores_line = format!(
        "  cores: {{{}}}",
        STAGES
            .iter()
            .map(|s| format!("{s}: {}", map[s]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let text = config_with(&[
        ("  layout:", "  layout: pinned"),
        ("  wait:", "  wait: park"),
        ("  cores:", &cores_line),
        ("  status_interval_ms:", "  status_interval_ms: 100"),
        ("  entry_threshold:", "  entry_threshold: 0.2"),
        ("    fast:", "    fast: 10"),
        ("    slow:", "    slow: 50"),
        ("    scale_bps:", "    scale_bps: 1"),
        ("  urgent_score:", "  urgent_score: 0"),
        ("    latency_us:", "    latency_us: 0"),
    ]);
    (dir.write("pinned.yaml", text), map)
}

/// Starts a pinned run, checks each stage's thread and affinity, waits for an order, stops it
/// with `signal` and checks the clean shutdown.
fn pinned_run_stops_cleanly_on(signal: libc::c_int, name: &str) {
    let dir = TempDir::new(&format!("run-pinned-{name}"));
    let cores = allowed_cores();
    let (config, expected) = pinned_config(&dir, &cores);
    let mut run = Running::start(&["run", "--config", config.to_str().expect("utf-8 path")]);
    let pid = run.pid();
    let tids: BTreeMap<&str, u32> = run.poll("threads md-binance, alpha, risk and exec", |_| {
        let all = threads(pid);
        let mut found = BTreeMap::new();
        for stage in STAGES {
            match all.get(stage).map(Vec::as_slice) {
                Some([tid]) => {
                    found.insert(stage, *tid);
                }
                Some(many) => panic!("{} threads named {stage}: {many:?}", many.len()),
                None => return Err(format!("threads {:?}", all.keys())),
            }
        }
        Ok(found)
    });
    // hot.lock_memory: auto locks when the process may lock without limit.
    if may_lock_unlimited() {
        let locked = vm_locked_kib(pid);
        assert!(locked > 0, "{name}: VmLck {locked} kB with memory locking permitted");
    }
    let names = threads(pid);
    assert!(
        !names.keys().any(|n| n.starts_with("hot")),
        "no fused thread in the pinned layout: {names:?}"
    );
    for stage in STAGES {
        let want = expected[stage].to_string();
        let tid = tids[stage];
        // A thread pins itself as its first act, so poll until it has.
        run.poll(
            &format!("{stage} (tid {tid}) pinned to exactly core {want}"),
            |_| match thread_cpus(pid, tid) {
                Some(got) if got == want => Ok(()),
                got => Err(format!("Cpus_allowed_list {got:?}")),
            },
        );
    }
    run.poll("a status line with orders > 0", |r| {
        let last = r.stdout.iter().rev().find(|l| is_status_line(l));
        match last.and_then(|l| status_orders(l)) {
            Some(n) if n > 0 => Ok(()),
            _ => Err(format!("{last:?}")),
        }
    });
    run.signal(signal);
    let (status, stdout, stderr) = run.wait_exit(name);
    let orders = assert_clean_summary(status, &stdout, &stderr, name);
    assert!(orders > 0, "{name}: orders were placed before the stop");
    assert!(stderr.contains(name), "{name}: the stop reason is logged:\n{stderr}");
    // Each pinned core the kernel does not keep for us is named in a warning at start.
    let isolated = isolated_cores();
    for (stage, core) in &expected {
        let warned = stderr
            .lines()
            .any(|l| l.contains("hot core is not isolated") && l.contains(&format!("\"core\":{core}")));
        assert_eq!(
            warned,
            !isolated.contains(core),
            "{name}: {stage} on core {core}:\n{stderr}"
        );
    }
    if !may_lock_unlimited() {
        assert!(stderr.contains("memory not locked"), "{name}:\n{stderr}");
    }
}

/// Whether this process could lock memory without limit: root, or RLIMIT_MEMLOCK unlimited.
fn may_lock_unlimited() -> bool {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call; geteuid has no
    // preconditions.
    unsafe {
        libc::geteuid() == 0
            || (libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0 && r.rlim_cur == libc::RLIM_INFINITY)
    }
}

/// `VmLck` of a process, in kB.
fn vm_locked_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmLck line")
}

/// The cores in `isolcpus=` or `nohz_full=`, as the kernel reports them.
fn isolated_cores() -> Vec<usize> {
    ["/sys/devices/system/cpu/isolated", "/sys/devices/system/cpu/nohz_full"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            let t = t.trim().to_string();
            if t.is_empty() || t == "(null)" {
                Vec::new()
            } else {
                parse_cpu_list(&t)
            }
        })
        .collect()
}

#[test]
fn lock_memory_false_leaves_memory_unlocked_and_says_so() {
    let dir = TempDir::new("run-unlocked");
    let text = config_with(&[("  wait:", "  wait: park"), ("  lock_memory:", "  lock_memory: false")]);
    let config = dir.write("unlocked.yaml", text);
    let mut run = Running::start(&["run", "--config", config.to_str().expect("utf-8 path")]);
    let pid = run.pid();
    run.poll("a status line", |r| {
        if r.stdout.iter().any(|l| is_status_line(l)) {
            Ok(())
        } else {
            Err("none yet".into())
        }
    });
    assert_eq!(vm_locked_kib(pid), 0);
    run.signal(libc::SIGTERM);
    let (status, _, stderr) = run.wait_exit("SIGTERM");
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("memory not locked: hot.lock_memory is false"),
        "{stderr}"
    );
}

#[test]
fn pinned_layout_pins_each_stage_and_stops_cleanly_on_sigterm() {
    pinned_run_stops_cleanly_on(libc::SIGTERM, "SIGTERM");
}

#[test]
fn pinned_layout_stops_cleanly_on_sigint() {
    pinned_run_stops_cleanly_on(libc::SIGINT, "SIGINT");
}

#[test]
fn fused_layout_on_one_core_runs_one_thread() {
    let dir = TempDir::new("run-fused");
    let cores = allowed_cores();
    let core = *cores.last().expect("a core");
    let cores_line = format!(
        "  cores: {{{}}}",
        STAGES
            .iter()
            .map(|s| format!("{s}: {core}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = dir.write(
        "fused.yaml",
        config_with(&[
            ("  layout:", "  layout: fused"),
            ("  wait:", "  wait: park"),
            ("  cores:", &cores_line),
            // Takers only, as in `pinned_config`.
            ("  urgent_score:", "  urgent_score: 0"),
            ("    latency_us:", "    latency_us: 0"),
        ]),
    );
    let mut run = Running::start(&["run", "--config", config.to_str().expect("utf-8 path")]);
    let pid = run.pid();
    let name = format!("hot-c{core}");
    let tid = run.poll(&format!("a thread named {name}"), |_| {
        let all = threads(pid);
        match all.get(&name).map(Vec::as_slice) {
            Some([tid]) => Ok(*tid),
            Some(many) => panic!("{} threads named {name}: {many:?}", many.len()),
            None => Err(format!("threads {:?}", all.keys())),
        }
    });
    let want = core.to_string();
    run.poll(
        &format!("{name} pinned to exactly core {core}"),
        |_| match thread_cpus(pid, tid) {
            Some(got) if got == want => Ok(()),
            got => Err(format!("Cpus_allowed_list {got:?}")),
        },
    );
    let names = threads(pid);
    for stage in STAGES {
        assert!(
            !names.contains_key(stage),
            "no separate {stage} thread when fused: {names:?}"
        );
    }
    assert_eq!(
        names.keys().filter(|n| n.starts_with("hot")).count(),
        1,
        "one hot thread: {names:?}"
    );
    run.poll("a status line with the feed up", |r| {
        let last = r.stdout.iter().rev().find(|l| is_status_line(l));
        match last {
            Some(l) if l.contains("binance:up") => Ok(()),
            _ => Err(format!("{last:?}")),
        }
    });
    if cores.len() >= 2 {
        // The cold side (the main thread, which runs the tokio runtime, and the log flusher
        // started before the placement was known) keeps off the hot core. A status line
        // proves the runtime is up, so the confinement has happened.
        let cold: Vec<usize> = cores.iter().copied().filter(|&c| c != core).collect();
        let names = threads(pid);
        let mut cold_tids = names.get("log-flush").cloned().unwrap_or_default();
        assert_eq!(cold_tids.len(), 1, "one log flusher: {names:?}");
        cold_tids.push(pid);
        for t in cold_tids {
            let got = thread_cpus(pid, t).map(|l| parse_cpu_list(&l));
            assert_eq!(
                got.as_ref(),
                Some(&cold),
                "cold-side thread {t} runs only on the cold cores"
            );
        }
    }
    run.signal(libc::SIGTERM);
    let (status, stdout, stderr) = run.wait_exit("SIGTERM");
    assert_clean_summary(status, &stdout, &stderr, "fused SIGTERM");
    assert!(leading_count(summary_field(&stdout, "ticks")) > 0, "trades flowed");
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
    assert_eq!(parse_cpu_list("0-2,5,7-8\n"), vec![0, 1, 2, 5, 7, 8]);
    assert_eq!(parse_cpu_list("3"), vec![3]);
    assert_eq!(
        status_orders("[    1s] ticks/s    2094 | signals 811 | orders      2 | fills 2"),
        Some(2)
    );
    assert_eq!(fills_and_rejects("4 (1 rejects)"), (4, 1));
}
