//! What a test reads back from a running [`Gateway`]: Envoy's counters,
//! its log and access log, the decisions they record, and the check that
//! no token, ticket or secret reached either.

use super::*;

impl Gateway {
    /// All counters and gauges from Envoy's `/stats`.
    pub async fn stats(&self) -> Result<BTreeMap<String, u64>> {
        self.envoy.stats().await
    }

    /// `wasmcustom.mksgate.decision.<code>` for every code of the contract
    /// (0 when Envoy does not show it), keyed by code.
    pub async fn decision_counts(&self) -> Result<BTreeMap<String, u64>> {
        let stats = self.stats().await?;
        let mut out: BTreeMap<String, u64> = Code::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 0))
            .collect();
        for (name, value) in stats {
            if let Some(code) = name.strip_prefix("wasmcustom.mksgate.decision.") {
                out.insert(code.to_string(), value);
            }
        }
        Ok(out)
    }

    /// Polls [`Self::decision_counts`] until it equals `want` (codes not in
    /// `want` must be 0); fails with both maps after `timeout`.
    pub async fn wait_decision_counts(
        &self,
        want: &BTreeMap<String, u64>,
        timeout: Duration,
    ) -> Result<()> {
        let mut full: BTreeMap<String, u64> = Code::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), 0))
            .collect();
        full.extend(want.iter().map(|(k, v)| (k.clone(), *v)));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.decision_counts().await?;
            if got == full {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("decision counters: got {got:?}, want {full:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Envoy's own log (`--log-path`).
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(self.envoy.dir().join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's stdout/stderr: where the shipped stdout access log goes.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.envoy.dir().join("stdout-stderr.log")).unwrap_or_default()
    }

    /// The access log's end-of-stream lines (one per request, Envoy's own
    /// refusals included), parsed.
    pub fn access_log_lines(&self) -> Vec<Value> {
        access_log::lines_of(&self.access_log(), access_log::END)
    }

    /// The filter's decisions as the access log records them, one per
    /// decision (`code`, `status` and the audit), polled until there are
    /// at least `n` (access logs are flushed a little after the event).
    pub async fn decision_records(&self, n: usize, timeout: Duration) -> Result<Vec<Value>> {
        self.at_least(n, timeout, "decision records", access_log::decisions)
            .await
    }

    /// `read` of the access log, polled until it has at least `n` items;
    /// fails with the log after `timeout`.
    async fn at_least(
        &self,
        n: usize,
        timeout: Duration,
        what: &str,
        read: impl Fn(&str) -> Vec<Value>,
    ) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let text = self.access_log();
            let items = read(&text);
            if items.len() >= n {
                return Ok(items);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} {what} after {timeout:?}, want {n}:\n{text}",
                    items.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the access-log lines until `pred` holds for them (access logs
    /// are written when a stream ends, and flushed by Envoy a little later);
    /// fails with the log after `timeout`.
    pub async fn wait_access_log(
        &self,
        pred: impl Fn(&[Value]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let lines = self.access_log_lines();
            if pred(&lines) {
                return Ok(lines);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the access log did not show what was expected within {timeout:?}:\n{}",
                    self.access_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Access-log `decision` values counted, polled until there are at
    /// least `n` lines (access logs are written when a stream ends).
    pub async fn access_log_decisions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<BTreeMap<String, u64>> {
        let lines = self
            .at_least(n, timeout, "access-log lines", |text| {
                access_log::lines_of(text, access_log::END)
            })
            .await?;
        let mut out = BTreeMap::new();
        for l in lines {
            let d = l["decision"].as_str().unwrap_or("(not a string)");
            *out.entry(d.to_string()).or_insert(0) += 1;
        }
        Ok(out)
    }

    /// Asserts that no token or ticket the fixture handed out (or that a
    /// test [`Self::remember`]ed), and not the secret, appears in Envoy's
    /// log or its stdout (access log). Strings shorter than 16 characters
    /// are skipped (they would match by chance).
    pub fn assert_no_leaks(&self) {
        let logs = [
            ("Envoy log", self.envoy_log()),
            ("access log (stdout)", self.access_log()),
        ];
        let mut checked = 0;
        for s in self.handed_out().iter().filter(|s| s.len() >= 16) {
            for (what, text) in &logs {
                assert!(
                    !text.contains(s.as_str()),
                    "{what} contains a token or ticket: {}",
                    short(s)
                );
                // A token's signature alone is a secret-derived value too.
                if let Some(sig) = s.rsplit('.').next().filter(|p| p.len() >= 16) {
                    assert!(!text.contains(sig), "{what} contains a token signature");
                }
            }
            checked += 1;
        }
        for (what, text) in &logs {
            assert!(
                !text.contains(&self.secret_b64),
                "{what} contains the secret"
            );
        }
        assert!(checked > 0, "nothing was handed out to check");
    }
}
