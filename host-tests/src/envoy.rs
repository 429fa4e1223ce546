//! Run Envoy for a test.
//!
//! [`Envoy::start`] writes the config to a fresh temporary directory, starts
//! Envoy in its own process group (`--disable-hot-restart`, a unique
//! `--base-id`, `--admin-address-path` so the config can use
//! `admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}`),
//! and waits until the admin `/ready` answers `LIVE`. Dropping the [`Envoy`]
//! sends SIGTERM to the process group, then SIGKILL after a grace period; the
//! child also gets SIGKILL if the thread that started it dies
//! (`PR_SET_PDEATHSIG`), so it never outlives the test. When dropped during a
//! panic, the tail of Envoy's log is printed to stderr and the temporary
//! directory is kept (as it is when `MKSGATE_KEEP_TMP` is set).
//!
//! Configs may contain `@TMPDIR@`, replaced by the temporary directory (where
//! [`EnvoyOpts::files`] are written, e.g. certificates).
//!
//! [`render`] / [`render_file`] substitute `${NAME}` placeholders in
//! templates under `<workspace>/envoy/` and fail if any is left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::io::{http_request, HttpResponse};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Path of the Envoy binary: `$ENVOY_BIN`, else
/// `<workspace>/.tools/envoy/envoy/_bin/envoy`. An error (never a skip) if it
/// is not there.
pub fn envoy_bin() -> Result<PathBuf> {
    resolve_envoy_bin(std::env::var_os("ENVOY_BIN"))
}

fn resolve_envoy_bin(env: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let path = match env {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".tools/envoy/envoy/_bin/envoy"),
    };
    if !path.is_file() {
        bail!(
            "Envoy binary not found at {}: run scripts/setup.sh (or set ENVOY_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// Substitute `${NAME}` placeholders from `vars`; fail if any `${...}`
/// remains (listing them). Values are inserted verbatim and not re-scanned.
pub fn render<K: AsRef<str>, V: AsRef<str>>(template: &str, vars: &[(K, V)]) -> Result<String> {
    let map: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    let mut out = String::with_capacity(template.len());
    let mut missing = BTreeSet::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match map.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        missing.insert(name.to_string());
                        out.push_str(&rest[start..start + 2 + end + 1]);
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                missing.insert(format!(
                    "(unterminated) {}",
                    after.chars().take(20).collect::<String>()
                ));
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if !missing.is_empty() {
        bail!(
            "template placeholders left unsubstituted: {}",
            missing
                .into_iter()
                .map(|m| format!("${{{m}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

/// Read `<workspace>/envoy/<rel>` and [`render`] it.
pub fn render_file<K: AsRef<str>, V: AsRef<str>>(rel: &str, vars: &[(K, V)]) -> Result<String> {
    let path = workspace_root().join("envoy").join(rel);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    render(&text, vars).with_context(|| format!("rendering {}", path.display()))
}

/// Read `<workspace>/envoy/<rel>` as is.
pub fn read_envoy_file(rel: &str) -> Result<String> {
    let path = workspace_root().join("envoy").join(rel);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Replace literal strings (for configs without `${...}` placeholders,
/// e.g. the shipped ones): every `from` must occur at least once, so a test
/// notices when the file it patches changes under it. Replacements are
/// applied in order, each on the result of the previous one.
pub fn replace_exact<F: AsRef<str>, T: AsRef<str>>(text: &str, pairs: &[(F, T)]) -> Result<String> {
    let mut out = text.to_string();
    let mut missing = Vec::new();
    for (from, to) in pairs {
        let from = from.as_ref();
        if from.is_empty() || !out.contains(from) {
            missing.push(format!("{from:?}"));
            continue;
        }
        out = out.replace(from, to.as_ref());
    }
    if !missing.is_empty() {
        bail!("strings to replace not found: {}", missing.join(", "));
    }
    Ok(out)
}

/// Options for [`Envoy::start`].
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
    /// Files (name, contents) written into the temporary directory first.
    pub files: Vec<(String, Vec<u8>)>,
    /// Environment variables for the Envoy process (signing keys for
    /// `host_env_keys`).
    pub env: Vec<(String, String)>,
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
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_dir(prefix: &str) -> Result<PathBuf> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn unique_base_id() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    (std::process::id() % 400_000) * 100 + n % 100 + 1
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Make the child die with SIGKILL if the spawning thread dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A running Envoy. Dropping it kills the process group.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    log_path: PathBuf,
    out_path: PathBuf,
    stopped: bool,
}

impl Envoy {
    /// Start Envoy with this config and wait until it is LIVE.
    pub async fn start(config_yaml: &str, opts: EnvoyOpts) -> Result<Envoy> {
        let bin = envoy_bin()?;
        let dir = unique_dir("mksgate-envoy")?;
        for (name, data) in &opts.files {
            std::fs::write(dir.join(name), data).with_context(|| format!("writing {name}"))?;
        }
        let config = config_yaml.replace("@TMPDIR@", &dir.to_string_lossy());
        let cfg_path = dir.join("envoy.yaml");
        std::fs::write(&cfg_path, &config)?;
        let log_path = dir.join("envoy.log");
        let out_path = dir.join("stdout-stderr.log");
        let admin_path = dir.join("admin-address.txt");
        let out = std::fs::File::create(&out_path)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&bin);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("-c")
            .arg(&cfg_path)
            .arg("--base-id")
            .arg(unique_base_id().to_string())
            .arg("--disable-hot-restart")
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
        if let Some(c) = &opts.component_log_level {
            cmd.arg("--component-log-level").arg(c);
        }
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .current_dir(&dir)
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut envoy = Envoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path,
            out_path,
            stopped: false,
        };
        let deadline = Instant::now() + opts.ready_timeout;
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                envoy.stopped = true;
                bail!(
                    "Envoy exited during startup ({status}); log tail:\n{}",
                    tail(&envoy.log(), 60)
                );
            }
            if envoy.admin.port() == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_path) {
                    if let Ok(a) = text.trim().parse::<SocketAddr>() {
                        envoy.admin = a;
                    }
                }
            }
            if envoy.admin.port() != 0 {
                if let Ok(r) = envoy.admin_get("/ready").await {
                    if r.status == 200 && r.body_text().trim() == "LIVE" {
                        return Ok(envoy);
                    }
                }
            }
            if Instant::now() >= deadline {
                let hint = if envoy.admin.port() == 0 {
                    " (no admin address was written: does the config have an `admin:` section?)"
                } else {
                    ""
                };
                bail!(
                    "Envoy not LIVE after {:?} (admin {}){hint}; log tail:\n{}",
                    opts.ready_timeout,
                    envoy.admin,
                    tail(&envoy.log(), 60)
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
        let bin = envoy_bin()?;
        let dir = unique_dir("mksgate-envoy-validate")?;
        let cfg_path = dir.join("envoy.yaml");
        std::fs::write(
            &cfg_path,
            config_yaml.replace("@TMPDIR@", &dir.to_string_lossy()),
        )?;
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
            .stdin(Stdio::null())
            .process_group(0);
        die_with_parent(&mut cmd);
        let out = cmd
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(anyhow!(
                "envoy --mode validate failed ({}):\n{text}",
                out.status
            ))
        }
    }

    /// Admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory (config, logs, files).
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

    /// Whether Envoy is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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
        self.kill_group(grace);
        self.log()
    }

    fn kill_group(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscalls on a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // Whatever is left of the group (the main process if it ignored
        // SIGTERM, or anything it spawned) gets SIGKILL.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill_group(Duration::from_secs(3));
        let keep = std::env::var_os("MKSGATE_KEEP_TMP").is_some();
        if std::thread::panicking() {
            eprintln!(
                "---- Envoy (pid {}) log tail, dir {} ----\n{}\n----",
                self.child.id(),
                self.dir.display(),
                self.log_tail(80)
            );
        } else if !keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_and_rejects_leftovers() {
        let out = render("a: ${A}\nb: ${B_2} ${A}", &[("A", "1"), ("B_2", "two")]).unwrap();
        assert_eq!(out, "a: 1\nb: two 1");
        let err = render("a: ${A} ${C}", &[("A", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("${C}"), "{err}");
        let err = render("a: ${A", &[("A", "1")]).unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        // Values are not re-scanned.
        assert_eq!(render("${A}", &[("A", "${B}")]).unwrap(), "${B}");
    }

    #[test]
    fn replace_exact_requires_every_string() {
        let out = replace_exact(
            "port_value: 443 # x",
            &[("port_value: 443", "port_value: 0")],
        )
        .unwrap();
        assert_eq!(out, "port_value: 0 # x");
        let err = replace_exact("abc", &[("a", "b"), ("zzz", "y")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("zzz") && !err.contains("\"a\""), "{err}");
    }

    #[test]
    fn missing_binary_says_run_setup() {
        let err = resolve_envoy_bin(Some("/nonexistent/envoy".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("run scripts/setup.sh"), "{err}");
        assert!(err.contains("/nonexistent/envoy"), "{err}");
    }
}
