//! What `maxx run` checks and sets on the host before the hot threads start: which cores the
//! kernel keeps for us (`isolcpus=` / `nohz_full=`), and locking the process's memory
//! (`mlockall`) so the hot path takes no page faults — locking what is mapped now also faults
//! it in, which pre-faults the rings and buffers built before the threads start.
//!
//! See tuning/README.md for the host setup these checks point to.

use std::io;

/// `hot.lock_memory`: whether to `mlockall(MCL_CURRENT | MCL_FUTURE)` at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockMemory {
    /// Lock when the process may lock without limit (`RLIMIT_MEMLOCK` unlimited, or running as
    /// root); otherwise warn and run unlocked.
    #[default]
    Auto,
    /// Lock, or refuse to start.
    On,
    /// Never lock.
    Off,
}

impl LockMemory {
    /// `auto`, `true` or `false`, as written in the config.
    pub const fn name(self) -> &'static str {
        match self {
            LockMemory::Auto => "auto",
            LockMemory::On => "true",
            LockMemory::Off => "false",
        }
    }
}

/// What [`lock_memory`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locked {
    /// Every current and future page of the process is resident and locked.
    Yes,
    /// Not locked, and why (with the fix).
    No(String),
}

/// Locks the process's memory as `mode` says. `Err` only for [`LockMemory::On`] when locking
/// is not possible or fails: the caller refuses to start.
pub fn lock_memory(mode: LockMemory) -> Result<Locked, String> {
    if mode == LockMemory::Off {
        return Ok(Locked::No("hot.lock_memory is false".into()));
    }
    let limit = memlock_limit();
    // SAFETY: geteuid has no preconditions and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    if limit.is_some() && !root {
        // With MCL_FUTURE under a finite limit, later allocations past it would fail: only
        // lock when nothing can run out.
        let why = format!(
            "RLIMIT_MEMLOCK is {} KiB: raise it to lock memory (LimitMEMLOCK=infinity in the systemd unit, or `ulimit -l unlimited`)",
            limit.unwrap_or(0) / 1024
        );
        return match mode {
            LockMemory::On => Err(format!("hot.lock_memory is true, but {why}")),
            _ => Ok(Locked::No(why)),
        };
    }
    // SAFETY: mlockall takes only flags and changes no memory contents; failure is reported
    // through errno.
    let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
    if rc == 0 {
        return Ok(Locked::Yes);
    }
    let why = format!("mlockall failed: {}", io::Error::last_os_error());
    match mode {
        LockMemory::On => Err(format!("hot.lock_memory is true, but {why}")),
        _ => Ok(Locked::No(why)),
    }
}

/// The soft `RLIMIT_MEMLOCK` in bytes, or `None` when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// Cores the kernel keeps away from the scheduler's general balancing and the periodic tick:
/// the union of `/sys/devices/system/cpu/isolated` (`isolcpus=`) and
/// `/sys/devices/system/cpu/nohz_full` (`nohz_full=`). Empty when neither is set or readable.
pub fn isolated_cores() -> Vec<usize> {
    let mut out = Vec::new();
    for file in ["/sys/devices/system/cpu/isolated", "/sys/devices/system/cpu/nohz_full"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            out.extend(parse_cpu_list(text.trim()).unwrap_or_default());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Parses a kernel CPU list (`0-3,8,10-11`; empty or `(null)` is none).
pub fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let text = text.trim();
    if text.is_empty() || text == "(null)" {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("(null)\n"), Some(vec![]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn off_never_locks() {
        assert_eq!(
            lock_memory(LockMemory::Off),
            Ok(Locked::No("hot.lock_memory is false".into()))
        );
    }
}
