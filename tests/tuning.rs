//! The host tuning scripts, run as they ship: `tuning/audit` against this machine (its exit code
//! checked against what the machine's own kernel command line implies) and against fake
//! /proc + /sys trees (`MAXX_TUNING_ROOT`); `tuning/apply` as a dry run on this machine (which
//! must change nothing), refusing `--apply` without root, and with `--apply` against a fake tree,
//! where it must write exactly what it printed and nothing else, and plan nothing on a second run.
//! No test changes the host, whether it runs as root or not.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ROOT, TempDir, assert_exit, stderr, stdout};

fn script(name: &str) -> PathBuf {
    Path::new(ROOT).join("tuning").join(name)
}

/// Runs `tuning/<name> args...` (from the package root), with `MAXX_TUNING_ROOT` set to `fake`
/// if given and removed otherwise.
fn tool(name: &str, args: &[&str], fake: Option<&Path>) -> Output {
    let mut cmd = Command::new(script(name));
    cmd.current_dir(ROOT).args(args);
    match fake {
        Some(dir) => cmd.env("MAXX_TUNING_ROOT", dir),
        None => cmd.env_remove("MAXX_TUNING_ROOT"),
    };
    cmd.output().unwrap_or_else(|e| panic!("cannot run tuning/{name}: {e}"))
}

/// The cores of a kernel cpu list ("managed_irq,domain,2-5,8" -> 2,3,4,5,8); flags are skipped.
fn cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                out.extend(a..=b);
            }
        } else if let Ok(c) = part.parse::<u32>() {
            out.push(c);
        }
    }
    out
}

/// The value of `key=` on a kernel command line (parameters before a `--` only).
fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Whether the audit's verdict for `core` on a machine booted with `cmdline` is "isolated".
fn isolated(cmdline: &str, core: u32) -> bool {
    ["isolcpus", "nohz_full"]
        .iter()
        .all(|k| cmdline_value(cmdline, k).is_some_and(|v| cpu_list(v).contains(&core)))
}

/// The audit's status word on the line of `check`, if it printed one.
fn status_of<'a>(out: &'a str, check: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let status = w.next()?;
        (["OK", "WARN", "INFO"].contains(&status) && w.next() == Some(check)).then_some(status)
    })
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in fs::read_dir(d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
                out.insert(p, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Host values `tuning/apply` would change; read only.
fn host_knobs() -> BTreeMap<String, String> {
    let mut paths: Vec<PathBuf> = [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "/proc/sys/net/core/busy_read",
        "/proc/sys/net/core/busy_poll",
        "/proc/sys/vm/swappiness",
        "/proc/irq/default_smp_affinity",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for dir in ["/proc/irq", "/sys/devices/system/cpu"] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            paths.push(e.path().join("smp_affinity_list"));
            paths.push(e.path().join("cpufreq/scaling_governor"));
        }
    }
    paths
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|v| (p.display().to_string(), v)))
        .collect()
}

/// A fake host: 4 online cores (hot: 2-3 in the tests), cpufreq `powersave`, THP `always`,
/// IRQs on every core, RPS on the hot cores, busy polling off, swappiness 60, no swap.
fn fake_host(cmdline: &str) -> TempDir {
    let dir = TempDir::new("tuning");
    let put = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        fs::create_dir_all(p.parent().expect("a parent")).expect("create the fake tree");
        fs::write(&p, text).expect("write the fake tree");
    };
    put("proc/cmdline", &format!("{cmdline}\n"));
    put(
        "proc/cpuinfo",
        "model name\t: Fake CPU\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n",
    );
    put("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
    put(
        "proc/self/limits",
        "Max locked memory         65536                65536                bytes     \n",
    );
    put("sys/devices/system/cpu/online", "0-3\n");
    put("sys/devices/system/cpu/smt/active", "0\n");
    for c in 0..4 {
        put(
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "powersave\n",
        );
        put(
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_available_governors"),
            "performance powersave\n",
        );
    }
    put(
        "sys/devices/system/clocksource/clocksource0/current_clocksource",
        "tsc\n",
    );
    put(
        "sys/devices/system/clocksource/clocksource0/available_clocksource",
        "tsc hpet acpi_pm \n",
    );
    put("sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n");
    put(
        "sys/kernel/mm/transparent_hugepage/defrag",
        "always defer defer+madvise [madvise] never\n",
    );
    put("proc/irq/default_smp_affinity", "f\n");
    put("proc/irq/10/smp_affinity_list", "0-3\n");
    put("proc/irq/11/smp_affinity_list", "0-1\n");
    put("proc/irq/12/smp_affinity_list", "2-3\n");
    put(
        "proc/interrupts",
        "           CPU0       CPU1       CPU2       CPU3\n 10:  5  5  7  0  eth0-rx\nLOC:  9  9  9  9  Local timer interrupts\n",
    );
    put("sys/class/net/eth0/queues/rx-0/rps_cpus", "0000000c\n");
    put("proc/sys/net/core/busy_read", "0\n");
    put("proc/sys/net/core/busy_poll", "0\n");
    put("proc/sys/vm/swappiness", "60\n");
    put("proc/sys/kernel/sched_rt_runtime_us", "950000\n");
    dir
}

/// The command lines of an apply run's output (everything that is not a comment or a result).
fn commands(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn euid() -> u32 {
    let o = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("id -u prints a number")
}

#[test]
fn the_scripts_parse() {
    for name in ["audit", "apply", "lib.sh"] {
        let o = Command::new("bash")
            .arg("-n")
            .arg(script(name))
            .output()
            .expect("run bash -n");
        assert_exit(&o, 0, &format!("bash -n tuning/{name}"));
    }
}

#[test]
fn help_exits_zero_and_names_the_options() {
    for name in ["audit", "apply"] {
        let o = tool(name, &["--help"], None);
        assert_exit(&o, 0, &format!("tuning/{name} --help"));
        let text = stdout(&o);
        assert!(
            text.contains("--cores") && text.contains("--config"),
            "{name} --help:\n{text}"
        );
    }
    assert!(stdout(&tool("apply", &["--help"], None)).contains("--apply"));
}

#[test]
fn usage_errors_exit_one() {
    for args in [
        &["--cores", "two"][..],
        &["--bogus"],
        &["--config", "/nonexistent/maxx.yaml"],
    ] {
        let o = tool("audit", args, None);
        assert_exit(&o, 1, &format!("tuning/audit {args:?}"));
        assert!(stderr(&o).starts_with("error:"), "{}", stderr(&o));
    }
}

/// On this machine, for core 0: the per-item lines, and the exit code the real kernel command
/// line implies (2 unless core 0 is in both isolcpus= and nohz_full=).
#[test]
fn audit_reports_this_host_and_exits_as_its_cmdline_implies() {
    let cmdline = fs::read_to_string("/proc/cmdline").expect("read /proc/cmdline");
    let o = tool("audit", &["--cores", "0"], None);
    let want = if isolated(&cmdline, 0) { 0 } else { 2 };
    assert_exit(&o, want, "tuning/audit --cores 0");
    let out = stdout(&o);
    for check in [
        "isolcpus",
        "nohz_full",
        "rcu_nocbs",
        "cpufreq-governor",
        "transparent-hugepage",
        "clocksource",
    ] {
        assert!(status_of(&out, check).is_some(), "no {check} line:\n{out}");
    }
    // The isolcpus verdict agrees with the command line.
    let iso = cmdline_value(&cmdline, "isolcpus").is_some_and(|v| cpu_list(v).contains(&0));
    assert_eq!(
        status_of(&out, "isolcpus"),
        Some(if iso { "OK" } else { "WARN" }),
        "{out}"
    );
    // Every WARN comes with a fix.
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("WARN") {
            assert!(
                lines.get(i + 1).is_some_and(|n| n.contains("fix: ")),
                "WARN without a fix: {l}\n{out}"
            );
        }
    }
    assert!(out.lines().last().is_some_and(|l| l.starts_with("RESULT:")), "{out}");
}

#[test]
fn audit_exit_code_follows_isolation_on_a_fake_host() {
    let fake =
        fake_host("BOOT_IMAGE=/vmlinuz isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3 irqaffinity=0-1");
    let o = tool("audit", &["--cores", "2-3"], Some(fake.path()));
    assert_exit(&o, 0, "isolated hot cores");
    let out = stdout(&o);
    for check in ["isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity", "clocksource"] {
        assert_eq!(status_of(&out, check), Some("OK"), "{check}:\n{out}");
    }
    for check in [
        "cpufreq-governor",
        "transparent-hugepage",
        "irq-affinity",
        "rps",
        "net.core.busy_poll",
    ] {
        assert_eq!(status_of(&out, check), Some("WARN"), "{check}:\n{out}");
    }

    // Core 1 is in neither list; core 4 does not exist.
    for cores in ["1", "2-4"] {
        let o = tool("audit", &["--cores", cores], Some(fake.path()));
        assert_exit(&o, 2, &format!("--cores {cores}"));
        assert!(stdout(&o).contains("not isolated"), "{}", stdout(&o));
    }
    // In isolcpus but not in nohz_full: still not isolated.
    let half = fake_host("isolcpus=2-3 nohz_full=3");
    assert_exit(
        &tool("audit", &["--cores", "2-3"], Some(half.path())),
        2,
        "core 2 lacks nohz_full",
    );
}

#[test]
fn audit_reads_hot_cores_from_a_config() {
    let fake = fake_host("isolcpus=managed_irq,domain,1-3 nohz_full=1-3");
    // The shipped config: {md-binance: 0, alpha: 1, risk: 1, exec: 1}; core 0 is not isolated.
    let o = tool("audit", &["--config", "config/agent_config.yaml"], Some(fake.path()));
    assert_exit(&o, 2, "shipped config");
    assert!(
        stdout(&o).contains("0-1 (from config/agent_config.yaml hot.cores)"),
        "{}",
        stdout(&o)
    );

    let dir = TempDir::new("tuning-config");
    let block = dir.write(
        "block.yaml",
        "market_data:\n  retry_backoff_ms: 500\nhot:\n  layout: pinned   # comment\n  wait: spin\n  cores:\n    md-binance: 2\n    # a comment\n    alpha: 3\n    risk: 3\n    exec: 3\n  histogram_interval_ms: 100\nredis:\n  enabled: false\n",
    );
    let o = tool(
        "audit",
        &["--config", block.to_str().expect("utf-8 path")],
        Some(fake.path()),
    );
    assert_exit(&o, 0, "block-style hot.cores on isolated cores");
    let out = stdout(&o);
    assert!(
        out.contains("2-3 (from ") && out.contains("hot.layout: pinned, hot.wait: spin"),
        "{out}"
    );

    let flow = dir.write("flow.yaml", "hot:\n  cores: {alpha: 1, exec: 0}\n");
    assert_exit(
        &tool(
            "audit",
            &["--config", flow.to_str().expect("utf-8 path")],
            Some(fake.path()),
        ),
        2,
        "flow map with core 0",
    );

    let bad = dir.write("bad.yaml", "hot:\n  cores: {alpha: one}\n");
    let o = tool(
        "audit",
        &["--config", bad.to_str().expect("utf-8 path")],
        Some(fake.path()),
    );
    assert_exit(&o, 1, "non-numeric core");
    assert!(stderr(&o).contains("'one' is not a core index"), "{}", stderr(&o));
}

/// A dry run on this machine prints commands and changes nothing.
#[test]
fn apply_dry_run_changes_nothing_on_this_host() {
    let before = host_knobs();
    assert!(!before.is_empty(), "no tunable host files readable");
    let o = tool("apply", &["--cores", "0"], None);
    assert_exit(&o, 0, "tuning/apply --cores 0");
    let out = stdout(&o);
    assert!(out.starts_with("# tuning/apply: dry run"), "{out}");
    for c in commands(&out) {
        assert!(
            c.starts_with("echo ") && c.contains(" > /"),
            "not a planned write: {c}\n{out}"
        );
    }
    assert_eq!(host_knobs(), before, "a dry run changed the host");
}

/// `--apply` on the real host needs root: as a non-root user (this user, or `nobody` through
/// setpriv when the tests run as root) it refuses and changes nothing.
#[test]
fn apply_refuses_without_root() {
    let before = host_knobs();
    let o = if euid() == 0 {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(script("apply"))
            .args(["--cores", "0", "--apply"])
            .current_dir(ROOT)
            .env_remove("MAXX_TUNING_ROOT");
        cmd.output().unwrap_or_else(|e| {
            panic!("tests run as root: need setpriv (package util-linux) to try --apply as a non-root user: {e}")
        })
    } else {
        tool("apply", &["--cores", "0", "--apply"], None)
    };
    assert_exit(&o, 1, "tuning/apply --apply as non-root");
    let err = stderr(&o);
    assert!(
        err.contains("must run as root") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        commands(&stdout(&o)).is_empty(),
        "it printed commands before refusing:\n{}",
        stdout(&o)
    );
    assert_eq!(host_knobs(), before, "a refused --apply changed the host");

    // --swapoff is a command, not a file write: never run against a fake tree.
    let fake = fake_host("");
    let o = tool("apply", &["--swapoff", "--apply"], Some(fake.path()));
    assert_exit(&o, 1, "--swapoff with MAXX_TUNING_ROOT");
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
}

/// Against a fake tree, `--apply` runs exactly the printed commands, each file then holds the
/// printed value, nothing else changes, and a second run plans nothing.
#[test]
fn apply_writes_exactly_what_it_printed_and_is_idempotent() {
    let fake = fake_host("");
    let root = fake.path().display().to_string();
    let before = snapshot(fake.path());

    let dry = tool("apply", &["--cores", "2-3"], Some(fake.path()));
    assert_exit(&dry, 0, "dry run on the fake tree");
    assert_eq!(snapshot(fake.path()), before, "the dry run wrote to the fake tree");
    let planned = commands(&stdout(&dry));

    // What the plan must be: every knob of the fake host, and only the ones that differ.
    let mut want: Vec<(String, &str)> = vec![
        (
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor".into(),
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor".into(),
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor".into(),
            "performance",
        ),
        (
            "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor".into(),
            "performance",
        ),
        ("sys/kernel/mm/transparent_hugepage/enabled".into(), "madvise"),
        ("proc/irq/10/smp_affinity_list".into(), "0-1"),
        ("proc/irq/12/smp_affinity_list".into(), "0-1"),
        ("proc/irq/default_smp_affinity".into(), "3"),
        ("sys/class/net/eth0/queues/rx-0/rps_cpus".into(), "3"),
        ("proc/sys/net/core/busy_read".into(), "50"),
        ("proc/sys/net/core/busy_poll".into(), "50"),
        ("proc/sys/vm/swappiness".into(), "10"),
    ];
    let mut got: Vec<(String, &str)> = planned
        .iter()
        .map(|c| {
            let (lhs, path) = c.split_once(" > ").unwrap_or_else(|| panic!("not a write: {c}"));
            let value = lhs.strip_prefix("echo ").unwrap_or_else(|| panic!("not an echo: {c}"));
            let rel = path
                .strip_prefix(&format!("{root}/"))
                .unwrap_or_else(|| panic!("outside the fake root: {c}"));
            (rel.to_string(), value)
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the plan:\n{}", stdout(&dry));

    let run = tool("apply", &["--cores", "2-3", "--apply"], Some(fake.path()));
    assert_exit(&run, 0, "--apply on the fake tree");
    let out = stdout(&run);
    // The commands it printed are the dry run's, in order, and each one was done.
    let done: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("done:   "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        commands(&out)
            .iter()
            .filter(|l| !l.starts_with("done:"))
            .cloned()
            .collect::<Vec<_>>(),
        planned,
        "{out}"
    );
    assert_eq!(done, planned, "{out}");

    // Exactly the printed files changed, each to the printed value.
    let after = snapshot(fake.path());
    for (path, text) in &after {
        let rel = path
            .strip_prefix(fake.path())
            .expect("under the fake root")
            .display()
            .to_string();
        match want.iter().find(|(p, _)| *p == rel) {
            Some((_, v)) => assert_eq!(text, &format!("{v}\n"), "{rel}"),
            None => assert_eq!(Some(text), before.get(path), "{rel} changed but was not printed"),
        }
    }
    assert_eq!(after.len(), before.len(), "files were created or removed");

    // Idempotent: a second run plans nothing.
    let again = tool("apply", &["--cores", "2-3"], Some(fake.path()));
    assert_exit(&again, 0, "second dry run");
    assert!(commands(&stdout(&again)).is_empty(), "{}", stdout(&again));
    assert!(stdout(&again).contains("nothing to change"), "{}", stdout(&again));
    // And the audit now agrees on those knobs.
    let audit = stdout(&tool("audit", &["--cores", "2-3"], Some(fake.path())));
    for check in [
        "cpufreq-governor",
        "transparent-hugepage",
        "irq-affinity",
        "irq-default",
        "net.core.busy_poll",
        "vm.swappiness",
    ] {
        assert_eq!(status_of(&audit, check), Some("OK"), "{check}:\n{audit}");
    }
}

/// The unit carries the settings the kit promises, and `systemd-analyze verify` accepts it
/// (with `ExecStart` pointed at the binary just built) where systemd is installed.
#[test]
fn the_systemd_unit_verifies() {
    let unit = fs::read_to_string(script("maxx.service")).expect("read tuning/maxx.service");
    for key in [
        "ExecStart=/usr/local/bin/maxx run --config /etc/maxx/agent_config.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=",
        "Restart=on-failure",
        "RestartSec=",
        "LimitMEMLOCK=infinity",
        "CPUAffinity=",
        "EnvironmentFile=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(key)),
            "tuning/maxx.service lacks {key}"
        );
    }
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("systemd-analyze not installed (package systemd): unit not verified");
        return;
    }
    let dir = TempDir::new("tuning-unit");
    let path = dir.write(
        "maxx.service",
        unit.replace("/usr/local/bin/maxx", env!("CARGO_BIN_EXE_maxx")),
    );
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    assert_exit(&o, 0, "systemd-analyze verify tuning/maxx.service");
    assert!(
        stderr(&o).trim().is_empty(),
        "systemd-analyze complained:\n{}",
        stderr(&o)
    );
}
