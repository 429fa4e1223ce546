//! A real etcd cluster on loopback (Debian's `etcd-server`, 3.4): members
//! on their own 127.0.0.x addresses, started, killed and restarted by the
//! tests, with plain or TLS client URLs (TLS: client certificates
//! required). Reads go through etcd's own JSON gateway.

use crate::tls::{CertKey, TestCa};
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mksgate_testkit::http;
use mksgate_testkit::paths::unique_dir;
use mksgate_testkit::process::Proc;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// TLS material of a cluster whose clients must show a certificate.
pub struct EtcdTls {
    pub ca: TestCa,
    /// What Envoy presents to etcd.
    pub client: CertKey,
    dir: PathBuf,
}

impl EtcdTls {
    /// PEM files for a command-line client (etcdctl, `mksgate revoke`):
    /// the CA, and the client certificate and its key.
    pub fn client_files(&self) -> Result<[PathBuf; 3]> {
        let cert = self.dir.join("admin.pem");
        let key = self.dir.join("admin.key");
        std::fs::write(&cert, self.client.chain_pem())?;
        std::fs::write(&key, &self.client.key_pem)?;
        Ok([self.dir.join("ca.pem"), cert, key])
    }
}

struct Member {
    name: String,
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// A plain client URL for the tests' own reads (TLS clusters too).
    inspect_port: u16,
    /// The running process; behind a lock so a test can kill a member
    /// while other tasks use the cluster.
    proc: Mutex<Option<Proc>>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    dir: PathBuf,
    token: String,
    pub tls: Option<EtcdTls>,
    /// Once access control is on: root's password and current token, for
    /// the tests' own reads.
    root: Mutex<Option<(String, String)>>,
    token_ttl: Option<u64>,
    /// etcd's default, each write on disk before it is acknowledged; off
    /// (`--unsafe-no-fsync`) unless a test measures the store as deployed.
    fsync: bool,
}

/// The gateways' etcd user (`deploy/etcd/setup-auth.sh`).
pub const GATEWAY_USER: &str = "mksgate";

/// The user who may write revocations (`deploy/etcd/setup-auth.sh`).
pub const REVOKER_USER: &str = "mksgate-revoker";

/// The name every etcd member's certificate carries in the shipped
/// layouts (`envoy/fleet.yaml`, `envoy/istio/etcd.yaml`), which the gateway
/// checks.
pub const SERVER_NAME: &str = "etcd.mksgate.internal";

/// A port free on `ip`, below the kernel's ephemeral range (32768 and up):
/// a member restarts on its old ports, and any connection *to* a member's
/// address takes that address as its own with an ephemeral port, so a
/// port from that range can be held by a peer's reconnect attempt at the
/// moment of the restart ("bind: address already in use", seen in CI).
fn free_port(ip: IpAddr) -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2000 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(37)) % 12_000) as u16;
        if TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port below 32000 on {ip}")
}

impl EtcdCluster {
    /// `n` members on `ips`, each with its own ports; TLS client URLs
    /// (with client certificates required) when `tls`. The members die
    /// with the calling thread (`Proc` sets PR_SET_PDEATHSIG): call it
    /// from a thread that outlives the cluster, not a short-lived one.
    pub fn start(ips: &[IpAddr], tls: bool) -> Result<EtcdCluster> {
        EtcdCluster::start_named(ips, tls, SERVER_NAME)
    }

    /// As `start`, with the members' certificate naming `server_name`
    /// (and their IPs) instead of the shipped name: an impostor from the
    /// same CA when it is another name.
    pub fn start_named(ips: &[IpAddr], tls: bool, server_name: &str) -> Result<EtcdCluster> {
        EtcdCluster::start_full(ips, tls, server_name, None, false)
    }

    /// As `start_named`; with `token_ttl`, etcd's simple tokens end after
    /// that many idle seconds (etcd's `--auth-token-ttl`, 300 by default);
    /// with `fsync`, each member syncs its writes to disk as etcd does by
    /// default.
    pub fn start_full(
        ips: &[IpAddr],
        tls: bool,
        server_name: &str,
        token_ttl: Option<u64>,
        fsync: bool,
    ) -> Result<EtcdCluster> {
        let dir = unique_dir("mksgate-etcd")?;
        let tls = if tls {
            let ca = TestCa::new("mksgate test etcd CA")?;
            let mut names: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            names.push(server_name.to_string());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let server = ca.issue(&names)?;
            // No common name: etcd refuses one on its JSON gateway while
            // access control is on.
            let client = ca.issue_without_common_name(&["mksgate-gateway"])?;
            std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
            std::fs::write(dir.join("server.pem"), server.chain_pem())?;
            std::fs::write(dir.join("server.key"), &server.key_pem)?;
            Some(EtcdTls {
                ca,
                client,
                dir: dir.clone(),
            })
        } else {
            None
        };
        let mut members = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            members.push(Member {
                name: format!("m{i}"),
                ip: *ip,
                client_port: free_port(*ip)?,
                peer_port: free_port(*ip)?,
                inspect_port: free_port(*ip)?,
                proc: Mutex::new(None),
            });
        }
        let token = format!("mksgate-test-{}", crate::link::fresh_jti());
        let cluster = EtcdCluster {
            members,
            dir,
            token,
            tls,
            root: Mutex::new(None),
            token_ttl,
            fsync,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn proc(&self, i: usize) -> MutexGuard<'_, Option<Proc>> {
        self.members[i]
            .proc
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, i: usize) -> Result<()> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.ip, m.peer_port))
            .collect();
        let scheme = self.scheme();
        let m = &self.members[i];
        let client_url = format!("{scheme}://{}:{}", m.ip, m.client_port);
        let inspect_url = format!("http://{}:{}", m.ip, m.inspect_port);
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.join(&m.name))
            .arg("--listen-client-urls")
            .arg(format!("{client_url},{inspect_url}"))
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(format!("http://{}:{}", m.ip, m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}:{}", m.ip, m.peer_port))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            // Fast elections, so failover tests take seconds.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args([
                "--auth-token-ttl",
                &self.token_ttl.unwrap_or(300).to_string(),
            ]);
        if !self.fsync {
            cmd.arg("--unsafe-no-fsync");
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(tls.dir.join("server.pem"))
                .arg("--key-file")
                .arg(tls.dir.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(tls.dir.join("ca.pem"))
                .arg("--client-cert-auth");
        }
        let log = self.dir.join(format!("{}.log", m.name));
        let proc = Proc::spawn(&format!("etcd {}", m.name), cmd, &log)?;
        *self.proc(i) = Some(proc);
        Ok(())
    }

    /// The members' client URLs' addresses (what Envoy's cluster lists).
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .iter()
            .map(|m| SocketAddr::new(m.ip, m.client_port))
            .collect()
    }

    /// The members' plain URLs (the tests' own reads, as any client).
    pub fn inspect_addrs(&self) -> Vec<SocketAddr> {
        (0..self.members.len())
            .map(|i| self.inspect_addr(i))
            .collect()
    }

    fn inspect_addr(&self, i: usize) -> SocketAddr {
        let m = &self.members[i];
        SocketAddr::new(m.ip, m.inspect_port)
    }

    /// Turns etcd's access control on with the shipped
    /// `deploy/etcd/setup-auth.sh` (through etcdctl, on the TLS client URL
    /// with the gateways' client certificate): root, and the gateways' user
    /// with `gateway_password` and the shipped role.
    pub fn enable_auth(&self, gateway_password: &str) -> Result<()> {
        self.enable_auth_with_revoker(gateway_password, None)
    }

    /// As `enable_auth`, and with `revoker_password` the user
    /// `REVOKER_USER`, who may write revocations only.
    pub fn enable_auth_with_revoker(
        &self,
        gateway_password: &str,
        revoker_password: Option<&str>,
    ) -> Result<()> {
        let tls = self.tls.as_ref().context("access control needs TLS")?;
        let [ca, cert, key] = tls.client_files()?;
        let root_password = format!("root-{}", crate::link::fresh_jti());
        let script = mksgate_testkit::paths::workspace_root().join("deploy/etcd/setup-auth.sh");
        let m = &self.members[0];
        let out = Command::new("bash")
            .arg(&script)
            .env(
                "ETCDCTL_ENDPOINTS",
                format!("https://{}:{}", m.ip, m.client_port),
            )
            .env("ETCDCTL_CACERT", &ca)
            .env("ETCDCTL_CERT", &cert)
            .env("ETCDCTL_KEY", &key)
            .env("ROOT_PASSWORD", &root_password)
            .env("MKSGATE_PASSWORD", gateway_password)
            .env("REVOKER_PASSWORD", revoker_password.unwrap_or_default())
            .output()
            .context("running deploy/etcd/setup-auth.sh (etcdctl: scripts/setup.sh installs it)")?;
        if !out.status.success() {
            bail!(
                "setup-auth.sh: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some((root_password, String::new()));
        self.root_token_refresh(0)?;
        Ok(())
    }

    /// Authenticates `user` at member `i`: its token, or etcd's refusal.
    pub fn authenticate(&self, i: usize, user: &str, password: &str) -> Result<String> {
        let body = serde_json::json!({"name": user, "password": password}).to_string();
        let r = http::request(
            self.inspect_addr(i),
            "POST",
            "/v3/auth/authenticate",
            &body,
            Duration::from_secs(3),
        )?;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        match v["token"].as_str() {
            Some(t) if r.status == 200 => Ok(t.to_string()),
            _ => bail!("etcd authenticate {user}: {} {}", r.status, r.body),
        }
    }

    fn root_token_refresh(&self, i: usize) -> Result<()> {
        let password = match &*self.root.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((password, _)) => password.clone(),
            None => return Ok(()),
        };
        let token = self.authenticate(i, "root", &password)?;
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = Some((password, token));
        Ok(())
    }

    /// POST `path` with `body` to member `i`'s plain URL (as root once
    /// access control is on).
    pub fn post(&self, i: usize, path: &str, body: &str) -> Result<serde_json::Value> {
        let root_token = || {
            self.root
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|(_, token)| token.clone())
        };
        let send = |token: Option<String>| {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| vec![("authorization", t)])
                .unwrap_or_default();
            http::request_with(
                self.inspect_addr(i),
                "POST",
                path,
                &headers,
                body,
                Duration::from_secs(3),
            )
        };
        let mut r = send(root_token())?;
        if r.status == 401 && root_token().is_some() {
            // root's token ended (a restart forgets simple tokens): log in
            // again, once.
            self.root_token_refresh(i)?;
            r = send(root_token())?;
        }
        if r.status != 200 {
            bail!("etcd {path}: {} {}", r.status, r.body);
        }
        serde_json::from_str(&r.body).with_context(|| format!("etcd {path}: {}", r.body))
    }

    /// POST to the first live member that answers.
    pub fn post_any(&self, path: &str, body: &str) -> Result<serde_json::Value> {
        let mut errors = Vec::new();
        for i in self.live() {
            match self.post(i, path, body) {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(format!("m{i}: {e:#}")),
            }
        }
        Err(anyhow!("etcd {path}: no member answered: {errors:?}"))
    }

    /// Which member leads, as the live members see it.
    pub fn leader(&self) -> Result<usize> {
        // One status call per member: the leader is the member that names
        // itself as leader.
        for i in self.live() {
            let Ok(status) = self.post(i, "/v3/maintenance/status", "{}") else {
                continue;
            };
            let leader = status["leader"].as_str().unwrap_or("0");
            if leader != "0" && status["header"]["member_id"].as_str() == Some(leader) {
                return Ok(i);
            }
        }
        bail!("no leader")
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.proc(*i).is_some())
            .collect()
    }

    /// Waits until a leader is elected and a write goes through.
    pub fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let key = STANDARD.encode("/mksgate-test/ready");
        let body = format!(r#"{{"key":"{key}","value":"{}"}}"#, STANDARD.encode("1"));
        loop {
            let live = self.live();
            let ok = live
                .first()
                .is_some_and(|i| self.post(*i, "/v3/kv/put", &body).is_ok());
            if ok && self.leader().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd not ready within {within:?}: {}", self.log_tails());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills member `i` (SIGKILL, as a crash).
    pub fn kill(&self, i: usize) {
        let taken = self.proc(i).take();
        if let Some(mut p) = taken {
            p.stop(Duration::ZERO);
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) every live member: etcd
    /// then takes connections (the kernel does) and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        for i in 0..self.members.len() {
            if let Some(p) = self.proc(i).as_ref() {
                // SAFETY: a signal to our own child process.
                unsafe { libc::kill(p.pid(), signal) };
            }
        }
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&self, i: usize) -> Result<()> {
        self.kill(i);
        // Rejoin the existing cluster from the data directory.
        self.spawn(i)
    }

    /// Keys under `prefix`, read from any live member.
    pub fn count(&self, prefix: &str) -> Result<u64> {
        let key = STANDARD.encode(prefix);
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = format!(
            r#"{{"key":"{key}","range_end":"{}","count_only":true}}"#,
            STANDARD.encode(&end)
        );
        let r = self.post_any("/v3/kv/range", &body)?;
        Ok(r["count"].as_str().unwrap_or("0").parse()?)
    }

    /// Leases etcd holds.
    pub fn leases(&self) -> Result<Vec<i64>> {
        let r = self.post_any("/v3/lease/leases", "{}")?;
        Ok(r["leases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ID"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let log = self.dir.join(format!("{}.log", m.name));
                format!(
                    "--- {}\n{}",
                    m.name,
                    mksgate_testkit::process::log_tail(&log, 15)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
