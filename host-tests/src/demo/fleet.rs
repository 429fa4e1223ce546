//! `make demo-fleet`: one-time links across a fleet, on localhost. Starts
//! a 3-member etcd cluster (TLS, client certificates, access control as
//! `deploy/etcd/setup-auth.sh` sets it up), two gateways running the
//! shipped `envoy/fleet.yaml` and module ([`crate::fleet::Fleet`]), two
//! ESXi stand-ins, and a page (`demo/www/fleet.html`) whose button signs a
//! fresh link, opens a console with it on one gateway (it carries frames)
//! and then sends the same link to the other gateway, which refuses it as
//! `replayed`: the page shows which gateway admitted it.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /demo.css` | its style |
//! | `GET /fleet/info` | JSON: the gateways' and etcd members' addresses, the leader |
//! | `GET /fleet/try?first=<0\|1>` | JSON [`Attempt`]: one link, first on gateway `first`, then on the other |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::web::{self, param, split_target, Reply, Site};
use crate::client::verify_session;
use crate::fleet::Fleet;

/// What one gateway answered to the link.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub gateway: usize,
    pub addr: SocketAddr,
    pub status: u16,
    pub decision: Option<String>,
    /// Frames the console carried (admitted only).
    pub frames: u64,
}

/// One link, sent to both gateways in turn.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub jti: String,
    pub first: Answer,
    pub second: Answer,
}

/// What the demo prints and `/fleet/info` serves.
#[derive(Debug, Clone, Serialize)]
pub struct FleetInfo {
    pub page: String,
    pub gateways: Vec<SocketAddr>,
    pub etcd: Vec<SocketAddr>,
    pub leader: Option<usize>,
}

struct FleetSite {
    fleet: Arc<Fleet>,
    www: PathBuf,
    page: String,
    links: AtomicUsize,
}

impl FleetSite {
    fn info(&self) -> FleetInfo {
        FleetInfo {
            page: self.page.clone(),
            gateways: self.fleet.addrs.clone(),
            etcd: self.fleet.etcd.client_addrs(),
            leader: self.fleet.etcd.leader().ok(),
        }
    }

    async fn attempt(&self, first: usize) -> Result<Attempt> {
        let first = first % self.fleet.gateways.len();
        let second = (first + 1) % self.fleet.gateways.len();
        let i = self.links.fetch_add(1, Ordering::Relaxed);
        let claims = serde_json::json!({ "jti": format!("demo-fleet-{}-{i}", std::process::id()) });
        let path = self.fleet.path_with(i % 2, 60, &claims)?;
        let answer = |g: usize, status: u16, decision: Option<String>, frames: u64| Answer {
            gateway: g,
            addr: self.fleet.addrs[g],
            status,
            decision,
            frames,
        };
        let opened = match self.fleet.open(first, &path).await {
            Ok(mut console) => {
                let frames = verify_session(&mut console, 3).await?.echoed;
                let a = answer(first, 101, Some("admitted".into()), frames);
                // The same link at the other gateway while the console is open.
                let r = self.fleet.fire(second, &path).await;
                let b = answer(second, r.status, r.decision, 0);
                let _ = console.close(std::time::Duration::from_secs(3)).await;
                (a, b)
            }
            Err(_) => {
                let r = self.fleet.fire(first, &path).await;
                let a = answer(first, r.status, r.decision, 0);
                let r = self.fleet.fire(second, &path).await;
                (a, answer(second, r.status, r.decision, 0))
            }
        };
        Ok(Attempt {
            jti: claims["jti"].as_str().unwrap_or("").to_string(),
            first: opened.0,
            second: opened.1,
        })
    }
}

impl Site for FleetSite {
    async fn route(&self, target: &str) -> Reply {
        let (path, params) = split_target(target);
        match path.as_str() {
            "/" => web::file(&self.www.join("fleet.html")),
            "/demo.css" => web::file(&self.www.join("demo.css")),
            "/fleet/info" => Reply::json(&self.info()),
            "/fleet/try" => {
                let first = param(&params, "first")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                match self.attempt(first).await {
                    Ok(a) => Reply::json(&a),
                    Err(e) => Reply::text(500, &format!("{e:#}\n")),
                }
            }
            _ => Reply::text(404, "not found\n"),
        }
    }
}

/// The running fleet demo; dropping it (or [`FleetDemo::stop`]) ends
/// every process it started.
pub struct FleetDemo {
    site: Arc<FleetSite>,
    web: JoinHandle<()>,
}

impl FleetDemo {
    /// Starts etcd, the two gateways, the stand-ins and the page (on
    /// `web_port`, 0 for any).
    pub async fn start(web_port: u16) -> Result<FleetDemo> {
        let fleet = Arc::new(Fleet::start(2, 1).await.context("starting the fleet")?);
        let listener = TcpListener::bind(("127.0.0.1", web_port))
            .await
            .context("the page's port")?;
        let page = format!("http://{}/", listener.local_addr()?);
        let site = Arc::new(FleetSite {
            fleet,
            www: super::www_dir(),
            page,
            links: AtomicUsize::new(0),
        });
        let web = tokio::spawn(web::serve(listener, site.clone()));
        Ok(FleetDemo { site, web })
    }

    pub fn info(&self) -> FleetInfo {
        self.site.info()
    }

    /// One link on gateway `first`, then on the other (what the page's
    /// button does).
    pub async fn attempt(&self, first: usize) -> Result<Attempt> {
        self.site.attempt(first).await
    }

    pub fn describe(&self) -> String {
        let i = self.info();
        format!(
            "mksgate fleet demo\n  gateways (TLS, self-signed for {}): {}\n  etcd members (TLS, client certificates, access control): {}; leader m{}\n  page: {}\n  The page's button signs one link, opens a console with it on one gateway and sends it again to the other: admitted once, replayed on the other.\n  Ctrl-C stops everything.\n",
            crate::fleet::GATEWAY_NAME,
            i.gateways
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            i.etcd
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            i.leader.map_or("?".into(), |l| l.to_string()),
            i.page
        )
    }

    pub fn stop(self) {
        self.web.abort();
        drop(self.site);
    }
}
