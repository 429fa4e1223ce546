//! A real Prometheus (Debian's `prometheus`, installed by scripts/setup.sh)
//! on loopback, loaded with the shipped rules (deploy/observability): the
//! one home for starting it and asking its HTTP API. The shipped rule
//! expressions and scrape relabelling are used unchanged; only `for:` and
//! the scrape and evaluation intervals are shortened for a test.

use anyhow::{anyhow, bail, Context, Result};
use mksgate_testkit::paths::{unique_dir, workspace_root};
use mksgate_testkit::process::Proc;
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A running Prometheus; dropping it stops the process.
pub struct Prometheus {
    proc: Proc,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// The shipped rule file with every `for:` shortened to `for_`.
pub fn shipped_rules_with_for(for_: &str) -> Result<String> {
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/observability/mksgate-rules.yaml"))?;
    let mut out = String::new();
    for line in text.lines() {
        match line.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                out.push_str(indent);
                out.push_str("for: ");
                out.push_str(for_);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// The shipped scrape relabelling (scrape.yaml, job `mksgate-envoy`).
pub fn shipped_relabelling() -> Result<Value> {
    let text = std::fs::read_to_string(workspace_root().join("deploy/observability/scrape.yaml"))?;
    let doc: Value = serde_yaml_ng::from_str(&text).context("scrape.yaml")?;
    doc["scrape_configs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == "mksgate-envoy"))
        .map(|j| j["metric_relabel_configs"].clone())
        .ok_or_else(|| anyhow!("scrape.yaml has no mksgate-envoy job"))
}

impl Prometheus {
    /// Starts Prometheus scraping each target's `/stats/prometheus` every
    /// second (job `mksgate`, the shipped relabelling), evaluating the
    /// shipped rules every second with `for:` set to `for_`; returns once
    /// its API answers.
    pub fn start(targets: &[SocketAddr], for_: &str) -> Result<Prometheus> {
        let dir = unique_dir("mksgate-prometheus")?;
        std::fs::write(dir.join("rules.yaml"), shipped_rules_with_for(for_)?)?;
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [dir.join("rules.yaml")],
            "scrape_configs": [{
                "job_name": "mksgate",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": targets.iter().map(|t| t.to_string()).collect::<Vec<_>>()}],
                "metric_relabel_configs": shipped_relabelling()?,
            }],
        });
        // JSON is YAML.
        std::fs::write(
            dir.join("prometheus.yml"),
            serde_json::to_string_pretty(&config)?,
        )?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn");
        let mut proc = Proc::spawn("prometheus", cmd, &dir.join("prometheus.log"))
            .context("prometheus (installed by scripts/setup.sh)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            proc.check_alive()?;
            if mksgate_testkit::http::get(addr, "/-/ready").is_ok_and(|r| r.status == 200) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus not ready: {}",
                    mksgate_testkit::process::log_tail(&proc.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let prom = Prometheus { proc, addr, dir };
        // Prometheus hands new targets to its scrapers at most every 5 s:
        // wait until each target has been scraped, so a phase's traffic is
        // seen from its start.
        loop {
            let up = prom.query("up == 1").unwrap_or_default();
            if up.len() == targets.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus scrapes {} of {} targets",
                    up.len(),
                    targets.len()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(prom)
    }

    fn api(&self, path: &str) -> Result<Value> {
        let r = mksgate_testkit::http::get(self.addr, path)?;
        let v: Value =
            serde_json::from_str(&r.body).with_context(|| format!("{path}: {}", r.body))?;
        if v["status"] != "success" {
            bail!("{path}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// The instant vector of `expr`, now: each sample's labels and value.
    pub fn query(&self, expr: &str) -> Result<Vec<(Value, f64)>> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let v = s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN);
                        (s["metric"].clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Active alerts: (name, state `pending` or `firing`).
    pub fn alerts(&self) -> Result<Vec<(String, String)>> {
        let data = self.api("/api/v1/alerts")?;
        Ok(data["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
                        (s(&x["labels"]["alertname"]), s(&x["state"]))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Waits (bounded) until `name` is pending or firing; its state.
    pub fn wait_alert(&self, name: &str, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let alerts = self.alerts()?;
            if let Some((_, state)) = alerts.iter().find(|(n, _)| n == name) {
                return Ok(state.clone());
            }
            if Instant::now() > deadline {
                bail!("{name} not active within {within:?}; active: {alerts:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The rule groups' health as Prometheus reports it: every rule must
    /// evaluate without error.
    pub fn rule_errors(&self) -> Result<Vec<String>> {
        let data = self.api("/api/v1/rules")?;
        let mut errors = Vec::new();
        for group in data["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                if rule["health"] != "ok" && rule["health"] != "unknown" {
                    errors.push(format!("{}: {}", rule["name"], rule["lastError"]));
                }
            }
        }
        Ok(errors)
    }

    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(2));
    }
}

/// Percent-encoding for a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
