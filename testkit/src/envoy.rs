//! Starting Envoy for a test: one temporary directory per process (config,
//! files, logs, the admin address), a unique `--base-id`, its own process
//! group (`process::Proc`), and a blocking wait until the admin API says
//! LIVE. The host-tests' async `Envoy` wraps this; the wasm-post tests use
//! it directly.

use crate::http;
use crate::paths::envoy_bin;
use crate::process::Proc;
use anyhow::{anyhow, bail, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Options for [`EnvoyProcess::spawn`].
#[derive(Clone, Debug)]
pub struct EnvoyOpts {
    /// `--concurrency` (worker threads). Default 1.
    pub concurrency: u32,
    /// `--log-level`. Default `info`.
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug,http:debug`.
    pub component_log_level: Option<String>,
    /// How long to wait for `/ready` = LIVE. Default 20 s.
    pub ready_timeout: Duration,
    /// More command-line arguments.
    pub extra_args: Vec<String>,
    /// Files (name, contents) written into the temporary directory first;
    /// `@TMPDIR@` in the config names that directory.
    pub files: Vec<(String, Vec<u8>)>,
    /// Environment variables for the Envoy process (signing keys for
    /// `host_env_keys`).
    pub env: Vec<(String, String)>,
    /// `Some((base_id, epoch))`: hot restart on, with this `--base-id` and
    /// `--restart-epoch` (a child of epoch N+1 takes the listeners of the
    /// running epoch N of the same base id). `None` (the default): hot
    /// restart off and a base id of its own.
    pub hot_restart: Option<(u32, u32)>,
}

impl Default for EnvoyOpts {
    fn default() -> Self {
        EnvoyOpts {
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            ready_timeout: Duration::from_secs(20),
            extra_args: Vec::new(),
            files: Vec::new(),
            env: Vec::new(),
            hot_restart: None,
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A `--base-id` no other Envoy of this machine's test runs uses.
pub fn unique_base_id() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    (std::process::id() % 400_000) * 100 + n % 100 + 1
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A running Envoy: its process group, directory and logs. Dropping it
/// stops the group; the directory goes too, unless the thread is panicking
/// (then the log tail is printed) or `MKSGATE_KEEP_TMP` is set.
pub struct EnvoyProcess {
    proc: Proc,
    dir: PathBuf,
    log_path: PathBuf,
    out_path: PathBuf,
    admin_path: PathBuf,
}

impl EnvoyProcess {
    /// Writes the files and the config into a fresh directory and starts
    /// Envoy on it (not waiting for it: see [`EnvoyProcess::wait_ready`]).
    pub fn spawn(config_yaml: &str, opts: &EnvoyOpts) -> Result<EnvoyProcess> {
        let bin = envoy_bin()?;
        let dir = crate::paths::unique_dir("mksgate-envoy")?;
        for (name, data) in &opts.files {
            std::fs::write(dir.join(name), data).with_context(|| format!("writing {name}"))?;
        }
        let cfg_path = dir.join("envoy.yaml");
        std::fs::write(
            &cfg_path,
            config_yaml.replace("@TMPDIR@", &dir.to_string_lossy()),
        )?;
        let log_path = dir.join("envoy.log");
        let out_path = dir.join("stdout-stderr.log");
        let admin_path = dir.join("admin-address.txt");
        let mut cmd = Command::new(&bin);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("-c")
            .arg(&cfg_path)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--log-level")
            .arg(&opts.log_level)
            .arg("--log-path")
            .arg(&log_path)
            // Without this the log file lags by up to 10 s.
            .arg("--file-flush-interval-msec")
            .arg("50")
            .arg("--admin-address-path")
            .arg(&admin_path);
        match opts.hot_restart {
            Some((base_id, epoch)) => cmd
                .arg("--base-id")
                .arg(base_id.to_string())
                .arg("--restart-epoch")
                .arg(epoch.to_string()),
            None => cmd
                .arg("--base-id")
                .arg(unique_base_id().to_string())
                .arg("--disable-hot-restart"),
        };
        if let Some(c) = &opts.component_log_level {
            cmd.arg("--component-log-level").arg(c);
        }
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .current_dir(&dir);
        let proc = Proc::spawn("envoy", cmd, &out_path)?;
        Ok(EnvoyProcess {
            proc,
            dir,
            log_path,
            out_path,
            admin_path,
        })
    }

    /// The admin address, once Envoy has written it.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        std::fs::read_to_string(&self.admin_path)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Fails with the log's tail if Envoy has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.proc.exited() {
            Some(status) => bail!("Envoy exited ({status}); log tail:\n{}", self.log_tail(60)),
            None => Ok(()),
        }
    }

    /// Whether Envoy is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.exited().is_none()
    }

    /// Why Envoy is not LIVE yet, for the error after a timeout.
    pub fn not_ready_hint(&self) -> &'static str {
        if self.admin_addr().is_none() {
            " (no admin address was written: does the config have an `admin:` section?)"
        } else {
            ""
        }
    }

    /// Blocks until the admin API answers `/ready` with LIVE; the admin
    /// address.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Some(admin) = self.admin_addr() {
                if is_live(admin) {
                    return Ok(admin);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "Envoy not LIVE after {timeout:?}{}; log tail:\n{}",
                    self.not_ready_hint(),
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        u32::try_from(self.proc.pid()).unwrap_or(0)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's log so far (the `--log-path` file, then stdout/stderr).
    pub fn log(&self) -> String {
        let a = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let b = std::fs::read_to_string(&self.out_path).unwrap_or_default();
        if b.trim().is_empty() {
            a
        } else {
            format!("{a}\n--- stdout/stderr ---\n{b}")
        }
    }

    /// The last `lines` lines of [`Self::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Stops Envoy now (SIGTERM, SIGKILL after `grace`); the log. Also done
    /// by drop.
    pub fn stop(&mut self, grace: Duration) -> String {
        self.proc.stop(grace);
        self.log()
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!(
                "---- Envoy (pid {}) log tail, dir {} ----\n{}\n----",
                self.pid(),
                self.dir.display(),
                self.log_tail(80)
            );
        } else if std::env::var_os("MKSGATE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `/ready` on `admin` says LIVE.
pub fn is_live(admin: SocketAddr) -> bool {
    http::request(admin, "GET", "/ready", "", Duration::from_millis(500))
        .is_ok_and(|r| r.status == 200 && r.body.trim() == "LIVE")
}

/// Blocks until the Envoy of `proc` is LIVE on `admin` (for benchmarks that
/// start Envoy with their own command line).
pub fn wait_live(admin: SocketAddr, proc: &mut Proc, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_alive()?;
        if is_live(admin) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "Envoy not LIVE after {timeout:?}:\n{}",
                crate::process::log_tail(&proc.log, 25)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `envoy --mode validate` on a config, with `env` for the Envoy process
/// (the wasm VM starts during validation, so its keys must be there).
/// `Ok(output)` if valid, otherwise an error carrying Envoy's output.
pub fn validate(config_yaml: &str, env: &[(String, String)]) -> Result<String> {
    let bin = envoy_bin()?;
    let dir = crate::paths::unique_dir("mksgate-envoy-validate")?;
    let cfg_path = dir.join("envoy.yaml");
    std::fs::write(
        &cfg_path,
        config_yaml.replace("@TMPDIR@", &dir.to_string_lossy()),
    )?;
    let out_path = dir.join("validate.log");
    let mut cmd = Command::new(&bin);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&cfg_path)
        .arg("--disable-hot-restart")
        .arg("--base-id")
        .arg(unique_base_id().to_string())
        .arg("--log-level")
        .arg("warn")
        .stdin(Stdio::null());
    let mut proc = Proc::spawn("envoy --mode validate", cmd, &out_path)?;
    let status = proc
        .child_mut()
        .wait()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    drop(proc);
    let _ = std::fs::remove_dir_all(&dir);
    if status.success() {
        Ok(text)
    } else {
        Err(anyhow!("envoy --mode validate failed ({status}):\n{text}"))
    }
}
