//! Run Envoy for a test: the async face of `mksgate_testkit::envoy`.
//!
//! [`Envoy::start`] has the testkit write the config to a fresh temporary
//! directory and start Envoy in its own process group (`--disable-hot-restart`,
//! a unique `--base-id`, `--admin-address-path` so the config can use
//! `admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}`),
//! then waits (async) until the admin `/ready` answers `LIVE`. Dropping the
//! [`Envoy`] sends SIGTERM to the process group, then SIGKILL after a grace
//! period; the child also gets SIGKILL if the thread that started it dies
//! (`PR_SET_PDEATHSIG`), so it never outlives the test. When dropped during a
//! panic, the tail of Envoy's log is printed to stderr and the temporary
//! directory is kept (as it is when `MKSGATE_KEEP_TMP` is set).
//!
//! Configs may contain `@TMPDIR@`, replaced by the temporary directory (where
//! [`EnvoyOpts::files`] are written, e.g. certificates).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use mksgate_testkit::envoy::EnvoyProcess;

pub use mksgate_testkit::envoy::EnvoyOpts;
pub use mksgate_testkit::paths::{envoy_bin, workspace_root};
pub use mksgate_testkit::template::{read_envoy_file, render, render_file, replace_exact};

use crate::io::{http_request, HttpResponse};

/// A running Envoy. Dropping it kills the process group.
pub struct Envoy {
    process: EnvoyProcess,
    admin: SocketAddr,
}

impl std::fmt::Debug for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envoy")
            .field("pid", &self.process.pid())
            .field("admin", &self.admin)
            .field("dir", &self.process.dir())
            .finish()
    }
}

impl Envoy {
    /// Start Envoy with this config and wait until it is LIVE.
    pub async fn start(config_yaml: &str, opts: EnvoyOpts) -> Result<Envoy> {
        let mut process = EnvoyProcess::spawn(config_yaml, &opts)?;
        let deadline = Instant::now() + opts.ready_timeout;
        loop {
            process
                .check_alive()
                .context("Envoy exited during startup")?;
            if let Some(admin) = process.admin_addr() {
                let envoy = Envoy { process, admin };
                if let Ok(r) = envoy.admin_get("/ready").await {
                    if r.status == 200 && r.body_text().trim() == "LIVE" {
                        return Ok(envoy);
                    }
                }
                process = envoy.process;
            }
            if Instant::now() >= deadline {
                bail!(
                    "Envoy not LIVE after {:?}{}; log tail:\n{}",
                    opts.ready_timeout,
                    process.not_ready_hint(),
                    process.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run `envoy --mode validate` on a config. `Ok(output)` if valid,
    /// otherwise an error carrying Envoy's output.
    pub fn validate(config_yaml: &str) -> Result<String> {
        Envoy::validate_with_env(config_yaml, &[])
    }

    /// [`Envoy::validate`] with environment variables for the Envoy process
    /// (the wasm VM starts during validation, so its keys must be there).
    pub fn validate_with_env(config_yaml: &str, env: &[(String, String)]) -> Result<String> {
        mksgate_testkit::envoy::validate(config_yaml, env)
    }

    /// Admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The temporary directory (config, logs, files).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// Envoy's log so far (the `--log-path` file, then stdout/stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// [`Self::log`] once `done` holds for it (Envoy flushes its log file
    /// now and then, later on some versions), or as it is after `within`.
    pub async fn wait_log(&self, within: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let log = self.log();
            if done(&log) || std::time::Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of [`Self::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Whether Envoy is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// GET an admin path (e.g. `/clusters`).
    pub async fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        Ok(http_request(self.admin, "GET", path, b"", Duration::from_secs(5)).await?)
    }

    /// POST to an admin path (e.g. `/logging?level=debug`).
    pub async fn admin_post(&self, path: &str) -> Result<HttpResponse> {
        Ok(http_request(self.admin, "POST", path, b"", Duration::from_secs(5)).await?)
    }

    /// Counters and gauges from `/stats?format=json` (histograms and text
    /// readouts are left out).
    pub async fn stats(&self) -> Result<BTreeMap<String, u64>> {
        let r = self.admin_get("/stats?format=json").await?;
        if r.status != 200 {
            bail!("/stats answered {}", r.status);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).context("parsing /stats json")?;
        let mut out = BTreeMap::new();
        for s in v["stats"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_u64()) {
                out.insert(name.to_string(), value);
            }
        }
        Ok(out)
    }

    /// One counter or gauge (0 if Envoy does not have it yet).
    pub async fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.stats().await?.get(name).copied().unwrap_or(0))
    }

    /// Poll until `pred(value of name)` holds; returns the value.
    pub async fn wait_stat(
        &self,
        name: &str,
        pred: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.stat(name).await?;
            if pred(v) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("stat {name} = {v} did not reach the expected value within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Listener name -> bound address, from `/listeners?format=json`.
    pub async fn listeners(&self) -> Result<BTreeMap<String, SocketAddr>> {
        let r = self.admin_get("/listeners?format=json").await?;
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).context("parsing /listeners json")?;
        let mut out = BTreeMap::new();
        for l in v["listener_statuses"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let sa = &l["local_address"]["socket_address"];
            if let (Some(name), Some(addr), Some(port)) = (
                l["name"].as_str(),
                sa["address"].as_str(),
                sa["port_value"].as_u64(),
            ) {
                let ip = addr
                    .parse()
                    .with_context(|| format!("listener address {addr}"))?;
                out.insert(name.to_string(), SocketAddr::new(ip, port as u16));
            }
        }
        Ok(out)
    }

    /// Bound address of the listener called `name`.
    pub async fn listener_addr(&self, name: &str) -> Result<SocketAddr> {
        let ls = self.listeners().await?;
        ls.get(name).copied().ok_or_else(|| {
            anyhow!(
                "no listener {name:?}; Envoy has {:?}",
                ls.keys().collect::<Vec<_>>()
            )
        })
    }

    /// Bound port of the listener called `name`.
    pub async fn port_for(&self, name: &str) -> Result<u16> {
        Ok(self.listener_addr(name).await?.port())
    }

    /// Stop Envoy now (SIGTERM, then SIGKILL after `grace`) and return its
    /// log. Also done by drop.
    pub fn stop(&mut self, grace: Duration) -> String {
        self.process.stop(grace)
    }
}
