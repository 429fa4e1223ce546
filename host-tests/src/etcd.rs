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
}

/// The name every etcd member's certificate carries in the shipped
/// layouts (`envoy/fleet.yaml`, `envoy/istio/etcd.yaml`), which the gateway
/// checks.
pub const SERVER_NAME: &str = "etcd.mksgate.internal";

fn free_port(ip: IpAddr) -> Result<u16> {
    Ok(TcpListener::bind(SocketAddr::new(ip, 0))?
        .local_addr()?
        .port())
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
        let dir = unique_dir("mksgate-etcd")?;
        let tls = if tls {
            let ca = TestCa::new("mksgate test etcd CA")?;
            let mut names: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            names.push(server_name.to_string());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let server = ca.issue(&names)?;
            let client = ca.issue(&["mksgate-gateway"])?;
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
            .arg("--unsafe-no-fsync");
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

    fn inspect_addr(&self, i: usize) -> SocketAddr {
        let m = &self.members[i];
        SocketAddr::new(m.ip, m.inspect_port)
    }

    /// POST `path` with `body` to member `i`'s plain URL.
    pub fn post(&self, i: usize, path: &str, body: &str) -> Result<serde_json::Value> {
        let r = http::request(
            self.inspect_addr(i),
            "POST",
            path,
            body,
            Duration::from_secs(3),
        )?;
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
