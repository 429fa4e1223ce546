//! Processes the benchmark starts (each in its own process group, killed when
//! dropped and when this process dies) and what /proc says about them.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;

/// The testkit's: the one way tests and benchmarks start processes.
pub use mksgate_testkit::process::{log_tail, Proc};
/// The testkit's `${NAME}` templates.
pub use mksgate_testkit::template::render;

pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of a process in nanoseconds: the scheduler's run time of each
/// of its threads (`/proc/<pid>/task/*/schedstat`, first field), which has
/// nanosecond resolution; falls back to utime + stime (10 ms ticks) where
/// schedstat is missing. Threads that exit in between are not counted (the
/// proxies keep theirs for their whole life).
pub fn cpu_ns(pid: i32) -> Option<u64> {
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut total = 0u64;
        let mut any = false;
        for entry in dir.flatten() {
            let path = entry.path().join("schedstat");
            if let Some(ns) = std::fs::read_to_string(path).ok().and_then(|t| {
                t.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            }) {
                total += ns;
                any = true;
            }
        }
        if any {
            return Some(total);
        }
    }
    cpu_ticks(pid).map(|t| t * (1_000_000_000 / clock_ticks()))
}

/// Whether per-thread schedstat run times are available here.
pub fn have_schedstat() -> bool {
    std::fs::read_to_string(format!("/proc/{}/schedstat", std::process::id())).is_ok()
}

/// This process's own CPU time, ns.
pub fn self_cpu_ns() -> u64 {
    cpu_ns(std::process::id() as i32).unwrap_or(0)
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim_start_matches(':').trim().to_string())
}

/// VmRSS in kB.
pub fn rss_kb(pid: i32) -> Option<u64> {
    status_field(pid, "VmRSS")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `Cpus_allowed_list` of a process (e.g. `0`, `1`, `0-1`).
pub fn cpus_allowed(pid: i32) -> String {
    status_field(pid, "Cpus_allowed_list").unwrap_or_else(|| "?".into())
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One blocking HTTP/1.1 GET (the testkit's); returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let r = mksgate_testkit::http::request(addr, "GET", path, "", timeout)?;
    Ok((r.status, r.body))
}

/// Raise the soft open-files limit to the hard limit (inherited by every
/// process started afterwards). Returns the new soft limit.
pub fn raise_nofile() -> u64 {
    mksgate_testkit::process::raise_nofile(u64::MAX)
}

/// First line of a command's output (stdout, else stderr), or "?".
pub fn command_line(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).stdin(Stdio::null()).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_string()
        }
        Err(_) => "?".into(),
    }
}

/// Whether `taskset` can be used.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `taskset -c <cpus> <program>` when taskset works, else `<program>`.
pub fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(c) if have_taskset() => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        _ => Command::new(program),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_and_rss_are_readable() {
        let me = std::process::id() as i32;
        assert!(cpu_ns(me).is_some());
        assert!(rss_kb(me).unwrap() > 0);
        assert!(!cpus_allowed(me).is_empty());
    }
}
