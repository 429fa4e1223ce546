//! Starting a system for one measurement: the paths of the run, the
//! stand-in, etcd for the systems that need it, and the proxy itself.

use super::*;

pub(crate) const STANDIN_ADDR: &str = "127.0.0.2";

/// A second ESXi host in every routing table (nothing listens there).
pub(crate) const STANDIN2_ADDR: &str = "127.0.0.3";

/// Files the run needs.
pub struct Paths {
    pub root: PathBuf,
    pub work: PathBuf,
    pub envoy: PathBuf,
    pub haproxy: PathBuf,
    pub standin: PathBuf,
    pub wasm_dir: PathBuf,
}

impl Paths {
    pub fn discover(root: &Path) -> Result<Paths> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let envoy = std::env::var_os("ENVOY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools/envoy/envoy/_bin/envoy"));
        let haproxy = std::env::var_os("HAPROXY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/haproxy"));
        let p = Paths {
            root: root.to_path_buf(),
            work: target.join("bench"),
            envoy,
            haproxy,
            standin: std::env::var_os("ESXI_STANDIN_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("release/esxi-standin")),
            wasm_dir: target.join("mksgate"),
        };
        for (what, f) in [
            ("Envoy (scripts/setup.sh)", &p.envoy),
            (
                "esxi-standin (cargo build --release -p mksgate-host-tests --bin esxi-standin)",
                &p.standin,
            ),
        ] {
            if !f.is_file() {
                bail!("{what} not found at {}", f.display());
            }
        }
        std::fs::create_dir_all(&p.work)?;
        Ok(p)
    }

    pub fn module(&self, file: &str) -> PathBuf {
        self.wasm_dir.join(file)
    }
}

/// Where the fleet-store diagnostic's etcd listens (plain HTTP, like every
/// other hop in the benchmark).
pub const ETCD_ADDR: &str = "127.0.0.41";

pub const ETCD_PORT: u16 = 23790;

pub(crate) const ETCD_PEER_PORT: u16 = 23800;

/// The stand-in, pinned to the load generator's CPU.
pub struct Standin {
    proc: Proc,
    pub addr: SocketAddr,
    _stdin: ChildStdin,
    _stdout: ChildStdout,
}

impl Standin {
    /// The plain stand-in, or with `cert_out` the TLS one at
    /// `deployed::TLS_STANDIN_ADDR`, which writes its certificate there.
    pub fn start(paths: &Paths, cert_out: Option<&Path>) -> Result<Standin> {
        let (addr, name) = match cert_out {
            None => (STANDIN_ADDR, "standin.log"),
            Some(_) => (crate::deployed::TLS_STANDIN_ADDR, "standin-tls.log"),
        };
        let log = paths.work.join(name);
        let err = std::fs::File::create(&log)?;
        let mut cmd = pinned(Some(LOAD_CPU), &paths.standin);
        cmd.args([
            "--name",
            ESXI_HOST,
            "--addr",
            addr,
            "--push-interval-ms",
            "0",
            "--any-ticket",
            "--no-request-log",
        ]);
        match cert_out {
            None => {
                cmd.arg("--plain");
            }
            Some(p) => {
                cmd.arg("--cert-out").arg(p);
            }
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        let mut proc = Proc::spawn_raw("esxi-standin", cmd, &log)?;
        let stdin = proc
            .child_mut()
            .stdin
            .take()
            .ok_or_else(|| anyhow!("stand-in stdin"))?;
        let mut stdout = proc
            .child_mut()
            .stdout
            .take()
            .ok_or_else(|| anyhow!("stand-in stdout"))?;
        // The ready line (the stand-in prints one JSON line, then nothing).
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 4096 {
            match stdout.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => bail!(
                    "stand-in exited before it was ready:\n{}",
                    log_tail(&log, 20)
                ),
            }
        }
        let info: serde_json::Value = serde_json::from_slice(&line)
            .with_context(|| format!("stand-in ready line {:?}", String::from_utf8_lossy(&line)))?;
        let port = info
            .get("port")
            .and_then(|p| p.as_u64())
            .ok_or_else(|| anyhow!("stand-in ready line without port"))?;
        let ip: IpAddr = addr.parse()?;
        Ok(Standin {
            addr: SocketAddr::new(ip, port as u16),
            proc,
            _stdin: stdin,
            _stdout: stdout,
        })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }
}

/// A system started for one measurement.
pub struct Running {
    pub proc: Option<Proc>,
    pub target: Arc<Target>,
    pub admin: Option<SocketAddr>,
    /// A process the system needs (system 5e's etcd), killed when this is
    /// dropped.
    _etcd: Option<Proc>,
}

/// A fresh single-member etcd at `ETCD_ADDR`, pinned to the load
/// generator's CPU, its data under `work`.
pub(crate) fn start_etcd(work: &Path, n: u32) -> Result<Proc> {
    let dir = work.join(format!("etcd-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let client = format!("http://{ETCD_ADDR}:{ETCD_PORT}");
    let peer = format!("http://{ETCD_ADDR}:{ETCD_PEER_PORT}");
    let mut cmd = pinned(Some(LOAD_CPU), Path::new("etcd"));
    cmd.arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .arg("--initial-cluster")
        .arg(format!("bench={peer}"))
        .arg("--unsafe-no-fsync")
        .stdin(Stdio::null());
    let mut proc = Proc::spawn("etcd", cmd, &work.join(format!("etcd-{n}.log")))?;
    let addr = SocketAddr::new(ETCD_ADDR.parse()?, ETCD_PORT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = mksgate_testkit::http::get(addr, "/health").is_ok_and(|r| r.status == 200);
        if ok {
            return Ok(proc);
        }
        proc.check_alive()?;
        if Instant::now() > deadline {
            bail!("etcd not healthy within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Running {
    pub fn pid(&self) -> Option<i32> {
        self.proc.as_ref().map(|p| p.pid())
    }
}

pub(crate) static STARTS: AtomicU32 = AtomicU32::new(0);

/// Shared by every start of a run.
pub struct Ctx {
    pub paths: Paths,
    pub settings: RunConfig,
    pub key: Key,
    pub key_env_value: String,
    pub standin_addr: SocketAddr,
    /// TLS material and the TLS stand-in, when a deployed system runs.
    pub deployed: Option<crate::deployed::Deployed>,
}

pub(crate) fn wait_port(addr: SocketAddr, proc: &mut Proc, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not listening on {addr} after {timeout:?}:\n{}",
                proc.name,
                log_tail(&proc.log, 25)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn wait_envoy_ready(
    admin: SocketAddr,
    proc: &mut Proc,
    timeout: Duration,
) -> Result<()> {
    mksgate_testkit::envoy::wait_live(admin, proc, timeout)
}

/// The deployed systems' TLS material for `sys`: `None` for a plaintext
/// system; an error if `sys` wants TLS or its access log and the run has
/// none.
pub(crate) fn deployed_for<'c>(
    ctx: &'c Ctx,
    sys: &System,
) -> Result<Option<&'c crate::deployed::Deployed>> {
    if !(sys.tls || sys.access_log) {
        return Ok(None);
    }
    let d = ctx
        .deployed
        .as_ref()
        .ok_or_else(|| anyhow!("{}: no TLS material for the deployed systems", sys.id))?;
    Ok(sys.tls.then_some(d))
}

pub(crate) fn with_client_tls(
    target: Target,
    deployed: Option<&crate::deployed::Deployed>,
) -> Target {
    match deployed {
        Some(d) => target.with_tls(d.client.clone()),
        None => target,
    }
}

/// Start `sys` (fresh process) and wait until it serves.
pub fn start(ctx: &Ctx, sys: &System, concurrency: u32) -> Result<Running> {
    let n = STARTS.fetch_add(1, Ordering::SeqCst);
    let localhost: IpAddr = [127, 0, 0, 1].into();
    match &sys.kind {
        Kind::Direct => Ok(Running {
            proc: None,
            target: Arc::new(Target::new(ctx.standin_addr, Mode::Path)),
            admin: None,
            _etcd: None,
        }),
        Kind::Haproxy { template, patches } => {
            if !ctx.paths.haproxy.is_file() {
                bail!(
                    "HAProxy (apt-get install haproxy) not found at {}",
                    ctx.paths.haproxy.display()
                );
            }
            let deployed = deployed_for(ctx, sys)?;
            let upstream = deployed.map_or(ctx.standin_addr, |d| d.standin);
            let port = free_port()?;
            let text =
                std::fs::read_to_string(ctx.paths.root.join("bench/configs").join(template))?;
            let mut vars = vec![
                ("LISTEN_PORT", port.to_string()),
                ("UPSTREAM_ADDR", upstream.ip().to_string()),
                ("UPSTREAM2_ADDR", STANDIN2_ADDR.to_string()),
                ("UPSTREAM_PORT", upstream.port().to_string()),
            ];
            if let Some(d) = deployed {
                vars.push(("GATEWAY_PEM", d.gateway_pem.display().to_string()));
            }
            let cfg = apply_patches(render(&text, &vars)?, patches, sys.id, template)?;
            let cfg_path = ctx.paths.work.join(format!("haproxy-{}.cfg", sys.id));
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = pinned(Some(PROXY_CPU), &ctx.paths.haproxy);
            cmd.arg("-db").arg("-f").arg(&cfg_path).stdin(Stdio::null());
            let log = ctx.paths.work.join(format!("haproxy-{}.log", sys.id));
            let mut proc = Proc::spawn("haproxy", cmd, &log)?;
            let addr = SocketAddr::new(localhost, port);
            wait_port(addr, &mut proc, Duration::from_secs(15))?;
            Ok(Running {
                proc: Some(proc),
                target: Arc::new(with_client_tls(Target::new(addr, Mode::Path), deployed)),
                admin: None,
                _etcd: None,
            })
        }
        Kind::Envoy {
            template,
            module,
            mksgate,
            log_level,
            patches,
            etcd,
        } => {
            let etcd = if *etcd {
                Some(start_etcd(&ctx.paths.work, n)?)
            } else {
                None
            };
            let deployed = deployed_for(ctx, sys)?;
            let upstream = deployed.map_or(ctx.standin_addr, |d| d.standin);
            let port = free_port()?;
            let admin_port = free_port()?;
            let text =
                std::fs::read_to_string(ctx.paths.root.join("bench/configs").join(template))?;
            let mut vars = vec![
                ("LISTEN_PORT", port.to_string()),
                ("ADMIN_PORT", admin_port.to_string()),
                ("UPSTREAM_ADDR", upstream.ip().to_string()),
                ("UPSTREAM2_ADDR", STANDIN2_ADDR.to_string()),
                ("UPSTREAM_PORT", upstream.port().to_string()),
            ];
            if let Some(m) = module {
                let path = ctx.paths.module(m);
                if !path.is_file() {
                    bail!(
                        "module {} missing: run scripts/build-module.sh all",
                        path.display()
                    );
                }
                vars.push(("MODULE", path.to_string_lossy().into_owned()));
            }
            let mut cfg = render(&text, &vars)?;
            let mut all: Vec<(String, String)> = patches
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect();
            if let Some(d) = &ctx.deployed {
                if sys.tls {
                    all.extend(d.envoy_tls_patches());
                }
                if sys.access_log {
                    all.push(d.envoy_access_log_patch());
                }
            }
            for (from, to) in &all {
                if !cfg.contains(from.as_str()) {
                    bail!("{}: {from:?} not found in {template}", sys.id);
                }
                cfg = cfg.replace(from.as_str(), to);
            }
            let cfg_path = ctx.paths.work.join(format!("envoy-{}.yaml", sys.id));
            std::fs::write(&cfg_path, cfg)?;
            let mut cmd = pinned(Some(PROXY_CPU), &ctx.paths.envoy);
            let base_id = (std::process::id() % 40_000) * 100 + n % 100;
            cmd.arg("-c")
                .arg(&cfg_path)
                .arg("--concurrency")
                .arg(concurrency.to_string())
                .arg("--disable-hot-restart")
                .arg("--base-id")
                .arg(base_id.to_string())
                .arg("--log-level")
                .arg(log_level)
                .arg("--log-path")
                .arg(ctx.paths.work.join(format!("envoy-{}.log", sys.id)))
                .stdin(Stdio::null());
            if *mksgate {
                cmd.env(KEY_ENV, &ctx.key_env_value);
            }
            let out = ctx.paths.work.join(format!("envoy-{}.out", sys.id));
            // Envoy appends to --log-path: start each run's log afresh.
            let _ = std::fs::remove_file(ctx.paths.work.join(format!("envoy-{}.log", sys.id)));
            let mut proc = Proc::spawn(&format!("envoy ({})", sys.id), cmd, &out)?;
            // Errors go to --log-path; show that file's tail on failure.
            proc.log = ctx.paths.work.join(format!("envoy-{}.log", sys.id));
            let admin = SocketAddr::new(localhost, admin_port);
            wait_envoy_ready(admin, &mut proc, Duration::from_secs(30))?;
            let addr = SocketAddr::new(localhost, port);
            wait_port(addr, &mut proc, Duration::from_secs(10))?;
            let (key, ttl_s) = (Box::new(ctx.key.clone()), ctx.settings.link_ttl_s);
            let mode = match (*mksgate, sys.token_in_path) {
                (true, _) => Mode::Mksgate { key, ttl_s },
                (false, true) => Mode::PathWithToken { key, ttl_s },
                (false, false) => Mode::Path,
            };
            Ok(Running {
                proc: Some(proc),
                target: Arc::new(with_client_tls(Target::new(addr, mode), deployed)),
                admin: Some(admin),
                _etcd: etcd,
            })
        }
    }
}
