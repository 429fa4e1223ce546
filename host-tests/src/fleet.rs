//! A fleet: several Envoys, each running the shipped `envoy/fleet.yaml`
//! with the shipped module, on their own ports, in front of the same two
//! ESXi stand-ins, all recording one-time links in one real 3-member etcd
//! cluster (TLS with client certificates, as shipped).

use crate::envoy::{Envoy, EnvoyOpts};
use crate::etcd::EtcdCluster;
use crate::shipped::{self, Upstream};
use crate::standin::{Standin, StandinConfig};
use crate::tls::{CertKey, Trust};
use crate::wire::{WireReply, WireTarget};
use crate::{link, loopback};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The gateways' name (certificate, SNI).
pub const GATEWAY_NAME: &str = crate::gateway::GATEWAY_NAME;

/// An edit of the shipped file that takes its `revocation` block out: for
/// tests of the one-time store alone (with it, a view that cannot be read
/// refuses links first, `revocation_unavailable`, and its reads keep the
/// worker's etcd token in use).
pub const WITHOUT_REVOCATION: (&str, &str) = (
    r#"                      "revocation": {
                        "etcd": {"cluster": "mksgate_etcd", "authority": "etcd", "poll_ms": 1000,
                                 "timeout_ms": 1500, "max_stale_ms": 30000}
                      },
"#,
    "",
);

/// The etcd members' addresses.
pub fn etcd_ips() -> [IpAddr; 3] {
    [31, 32, 33].map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
}

pub struct Fleet {
    pub etcd: EtcdCluster,
    pub gateways: Vec<Envoy>,
    /// Where each gateway's clients connect (TLS, SNI `GATEWAY_NAME`).
    pub addrs: Vec<SocketAddr>,
    pub standins: Vec<Standin>,
    pub cert: CertKey,
    /// The gateways' etcd password (user `etcd::GATEWAY_USER`).
    pub etcd_password: String,
    /// The password of `etcd::REVOKER_USER`, who writes revocations.
    pub revoker_password: String,
    secret: Vec<u8>,
    yaml: String,
    opts: EnvoyOpts,
}

impl Fleet {
    /// `n` gateways with `concurrency` workers each, and a fresh etcd.
    pub async fn start(n: usize, concurrency: u32) -> Result<Fleet> {
        Fleet::start_with(n, concurrency, &[]).await
    }

    /// As `start`, with `edits` made to the shipped file first (each must
    /// find its text): for a test that needs other link lifetimes.
    pub async fn start_with(n: usize, concurrency: u32, edits: &[(&str, &str)]) -> Result<Fleet> {
        Fleet::start_full(n, concurrency, edits, crate::etcd::SERVER_NAME, None, false).await
    }

    /// One gateway in front of an etcd whose simple tokens end after
    /// `seconds` idle.
    /// Without revocations: their reads would keep the token in use.
    pub async fn start_with_etcd_token_ttl(seconds: u64) -> Result<Fleet> {
        Fleet::start_full(
            1,
            1,
            &[WITHOUT_REVOCATION],
            crate::etcd::SERVER_NAME,
            Some(seconds),
            false,
        )
        .await
    }

    /// One gateway in front of an etcd whose certificate, from the right
    /// CA, names `server_name` instead of the shipped name.
    /// Without revocations, as for a wrong login.
    pub async fn start_with_etcd_named(server_name: &str) -> Result<Fleet> {
        Fleet::start_full(1, 1, &[WITHOUT_REVOCATION], server_name, None, false).await
    }

    /// As `start_with`, with etcd as deployed: each member's writes synced
    /// to its data directory on disk (etcd's default).
    pub async fn start_as_deployed(
        n: usize,
        concurrency: u32,
        edits: &[(&str, &str)],
    ) -> Result<Fleet> {
        Fleet::start_full(n, concurrency, edits, crate::etcd::SERVER_NAME, None, true).await
    }

    async fn start_full(
        n: usize,
        concurrency: u32,
        edits: &[(&str, &str)],
        etcd_name: &str,
        token_ttl: Option<u64>,
        fsync: bool,
    ) -> Result<Fleet> {
        // Not spawn_blocking: the members die with the thread that started
        // them (PR_SET_PDEATHSIG), and tokio ends idle blocking threads
        // after 10 s. A runtime worker lives as long as the test.
        let etcd_password = format!("gw-{}", link::fresh_jti());
        let revoker_password = format!("rv-{}", link::fresh_jti());
        let etcd = tokio::task::block_in_place(|| -> Result<EtcdCluster> {
            let etcd = EtcdCluster::start_full(&etcd_ips(), true, etcd_name, token_ttl, fsync)?;
            // Access control on, as shipped: the gateways log in as the
            // shipped role's user.
            etcd.enable_auth_with_revoker(&etcd_password, Some(&revoker_password))?;
            Ok(etcd)
        })?;
        let mut standins = Vec::new();
        for (i, (host, _)) in shipped::STATIC_HOSTS.iter().enumerate() {
            let ip = loopback(2 + u8::try_from(i)?);
            standins.push(Standin::start(StandinConfig::new(host, ip)).await?);
        }
        let upstreams = [0, 1].map(|i: usize| Upstream {
            addr: standins[i].local_addr(),
            pin: standins[i].cert_sha256_hex(),
        });
        let members = etcd.client_addrs();
        let members: [SocketAddr; 3] = [members[0], members[1], members[2]];
        let yaml = crate::envoy::replace_exact(&shipped::fleet(&upstreams, &members)?, edits)?;
        let cert = CertKey::self_signed(&[GATEWAY_NAME])?;
        let secret = link::random_bytes(32);
        let tls = etcd.tls.as_ref().context("the fleet's etcd runs TLS")?;
        let opts = EnvoyOpts {
            concurrency: concurrency.max(1),
            env: vec![
                (
                    shipped::KEY_ENV.to_string(),
                    mksgate_core::jws::encode_secret(&secret),
                ),
                (
                    shipped::ETCD_PASSWORD_ENV.to_string(),
                    etcd_password.clone(),
                ),
            ],
            files: vec![
                (
                    shipped::GATEWAY_CERT_FILE.into(),
                    cert.chain_pem().into_bytes(),
                ),
                (
                    shipped::GATEWAY_KEY_FILE.into(),
                    cert.key_pem.clone().into_bytes(),
                ),
                (
                    shipped::ETCD_CLIENT_CERT_FILE.into(),
                    tls.client.chain_pem().into_bytes(),
                ),
                (
                    shipped::ETCD_CLIENT_KEY_FILE.into(),
                    tls.client.key_pem.clone().into_bytes(),
                ),
                (shipped::ETCD_CA_FILE.into(), tls.ca.cert_pem().into_bytes()),
            ],
            ready_timeout: Duration::from_secs(40),
            component_log_level: std::env::var("FLEET_LOG").ok(),
            ..EnvoyOpts::default()
        };
        let mut fleet = Fleet {
            etcd,
            gateways: Vec::new(),
            addrs: Vec::new(),
            standins,
            cert,
            etcd_password,
            revoker_password,
            secret,
            yaml,
            opts,
        };
        for _ in 0..n {
            let (envoy, addr) = fleet.start_gateway().await?;
            fleet.gateways.push(envoy);
            fleet.addrs.push(addr);
        }
        Ok(fleet)
    }

    async fn start_gateway(&self) -> Result<(Envoy, SocketAddr)> {
        let envoy = Envoy::start(&self.yaml, self.opts.clone())
            .await
            .context("starting a fleet gateway")?;
        let port = envoy.port_for(shipped::LISTENER).await?;
        // Ready as an operator would see it: every VM logged in to
        // etcd (`wasmcustom.mksgate.etcd_auth.ok`), or 10 s gone (a test
        // of a broken etcd then sees what clients would).
        // (No wait when the layout's store does not log in: a test's edit
        // took it out.)
        let logs_in = self.yaml.contains("\"password_env\"");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while logs_in && std::time::Instant::now() < deadline {
            let stats = envoy.stats().await?;
            let count = |name: &str| stats.get(name).copied().unwrap_or(0);
            // One login per worker, and one by the main thread's VM; with
            // revocation on, a first read of the revocations by each too.
            let workers = u64::from(self.opts.concurrency);
            let reads = stats.get("wasmcustom.mksgate.revocation.read.ok");
            if count("wasmcustom.mksgate.etcd_auth.ok") > workers
                && reads.is_none_or(|r| *r > workers)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((envoy, SocketAddr::new(loopback(1), port)))
    }

    /// Stops gateway `g` and starts a new Envoy in its place (empty shared
    /// data, a new port).
    pub async fn restart_gateway(&mut self, g: usize) -> Result<()> {
        self.gateways[g].stop(Duration::from_secs(2));
        let (envoy, addr) = self.start_gateway().await?;
        self.gateways[g] = envoy;
        self.addrs[g] = addr;
        Ok(())
    }

    /// A fresh, valid console path for stand-in `i % 2`, signed as the
    /// portal would, with a link lifetime of `ttl` seconds.
    pub fn valid_path(&self, i: usize, ttl: i64) -> Result<String> {
        self.path_with(i, ttl, &serde_json::json!({}))
    }

    /// As `valid_path`, with `claims` set over the portal's own.
    pub fn path_with(&self, i: usize, ttl: i64, claims: &serde_json::Value) -> Result<String> {
        let (host, _) = shipped::STATIC_HOSTS[i % 2];
        let ticket = self.standins[i % 2].issue_ticket();
        let mut base = link::shipped_claims(host, &ticket);
        base["exp"] = (link::now() + ttl).into();
        let claims = link::merge(&base, claims);
        let token = link::sign_with(&self.secret, shipped::KID, &claims)?;
        Ok(link::console_path(&token))
    }

    /// One upgrade with `path` at gateway `g`, from the next of many
    /// client addresses; status 0 when no answer came.
    pub async fn fire(&self, g: usize, path: &str) -> WireReply {
        let Ok(wire) = self.wire(g) else {
            return WireReply {
                status: 0,
                decision: None,
            };
        };
        let wire = wire.from(crate::clients::MANY_USERS.next());
        wire.send(&crate::gateway::upgrade_head(path.as_bytes(), &[]))
            .await
            .unwrap_or(WireReply {
                status: 0,
                decision: None,
            })
    }

    /// One fresh, valid link each for stand-ins `0..n`, fired one after
    /// the other at gateway `g`: the answers.
    pub async fn fire_fresh(&self, g: usize, n: usize) -> Result<Vec<WireReply>> {
        let mut replies = Vec::with_capacity(n);
        for i in 0..n {
            let path = self.valid_path(i, 60)?;
            replies.push(self.fire(g, &path).await);
        }
        Ok(replies)
    }

    /// An admitted console through gateway `g` with `path`, from the next
    /// of many client addresses, as the wmks console connects.
    pub async fn open(&self, g: usize, path: &str) -> Result<crate::client::Session> {
        let opts = crate::client::ClientOpts::new()
            .connect_to(self.addrs[g])
            .trust(Trust::Pinned(vec![self.cert.cert_der.clone()]))
            .sni(GATEWAY_NAME)
            .source(crate::clients::MANY_USERS.next())
            .header("Origin", shipped::ORIGIN)
            .wmks_protocols();
        let url = format!("wss://{GATEWAY_NAME}:{}{path}", self.addrs[g].port());
        crate::client::connect(&url, &opts).await?.session()
    }

    /// Runs `mksgate revoke` against this fleet's etcd, logged in as
    /// `etcd::REVOKER_USER`, with `args` after the connection's: its exit
    /// status and output.
    pub fn revoke(&self, args: &[&str]) -> Result<(i32, String)> {
        let tls = self
            .etcd
            .tls
            .as_ref()
            .context("the fleet's etcd runs TLS")?;
        let [ca, cert, key] = tls.client_files()?;
        let urls: Vec<String> = self
            .etcd
            .client_addrs()
            .iter()
            .map(|a| format!("https://{a}"))
            .collect();
        let out = std::process::Command::new(mksgate_testkit::paths::cli_bin()?)
            .arg("revoke")
            .args(["--etcd", &urls.join(",")])
            .arg("--cacert")
            .arg(&ca)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--server-name", crate::etcd::SERVER_NAME])
            .args([
                "--user",
                crate::etcd::REVOKER_USER,
                "--password-env",
                "REVOKER_PASSWORD",
            ])
            .env("REVOKER_PASSWORD", &self.revoker_password)
            .args(args)
            .output()
            .context("running mksgate revoke")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text))
    }

    /// Requests that reached the ESXi stand-ins, all together.
    pub fn upstream_requests(&self) -> usize {
        self.standins.iter().map(|s| s.requests().len()).sum()
    }

    /// Raw requests to gateway `g`.
    pub fn wire(&self, g: usize) -> Result<WireTarget> {
        WireTarget::tls(
            self.addrs[g],
            &Trust::Pinned(vec![self.cert.cert_der.clone()]),
            GATEWAY_NAME,
        )
    }

    /// Gateway `g`'s counters under `wasmcustom.mksgate.<prefix>.`, by
    /// their last part.
    pub async fn counters(&self, g: usize, prefix: &str) -> Result<BTreeMap<String, u64>> {
        let want = format!("wasmcustom.mksgate.{prefix}.");
        Ok(self.gateways[g]
            .stats()
            .await?
            .into_iter()
            .filter_map(|(name, value)| Some((name.strip_prefix(&want)?.to_string(), value)))
            .collect())
    }

    /// The same counters summed over the fleet.
    pub async fn fleet_counters(&self, prefix: &str) -> Result<BTreeMap<String, u64>> {
        let mut sum = BTreeMap::new();
        for g in 0..self.gateways.len() {
            for (k, v) in self.counters(g, prefix).await? {
                *sum.entry(k).or_insert(0) += v;
            }
        }
        Ok(sum)
    }
}
