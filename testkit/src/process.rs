//! A child process in its own process group, killed (the whole group) when
//! dropped, and when this process dies: the one way tests and benchmarks
//! start servers, so none outlives its run.

use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process in its own process group. Dropping it sends SIGTERM to
/// the group, then SIGKILL after a grace period. The child also gets SIGKILL
/// if this process dies (`PR_SET_PDEATHSIG`, set on the spawning thread: the
/// caller must spawn from a thread that outlives the child).
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    stopped: bool,
}

impl Proc {
    /// Spawn `cmd` with stdout and stderr appended to `log` (stdin from
    /// /dev/null unless the caller set it).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdout(out).stderr(err);
        Self::spawn_raw(name, cmd, log)
    }

    /// Spawn `cmd` with its stdio as the caller set it.
    pub fn spawn_raw(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            stopped: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails (with the log's tail) if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                log_tail(&self.log, 25)
            );
        }
        Ok(())
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM to the group, then SIGKILL to whatever is left after
    /// `grace`; waits for the child. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.pid();
        if self.exited().is_none() {
            // SAFETY: plain syscall on our own child's process group.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.exited().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left of the group (the main process if it ignored
        // SIGTERM, or anything it spawned) gets SIGKILL.
        // SAFETY: as above; ESRCH (the group is gone) is fine.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Raises this process's open-files soft limit to at least `want` (capped at
/// the hard limit); children started afterwards inherit it. Returns the soft
/// limit in effect.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let wanted = libc::rlimit {
                rlim_cur: want.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole group goes: a grandchild the child started is killed too.
    #[test]
    fn dropping_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("mksgate-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("sh.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]);
        let proc = Proc::spawn("sh", cmd, &log).unwrap();
        let mut grandchild = String::new();
        for _ in 0..100 {
            grandchild = std::fs::read_to_string(&log).unwrap_or_default();
            if !grandchild.trim().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid: i32 = grandchild.trim().parse().unwrap();
        drop(proc);
        // Gone, or a zombie waiting for its new parent to reap it.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
                .is_some_and(|state| !state.starts_with('Z'))
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!running(), "grandchild {pid} outlived the group");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
