//! mksgate's decision stage by stage, for timing in V8 (issue 15's budget):
//! scripts/bench-stages.sh builds this for wasm32-wasip1 with the release
//! profile the module ships with, and bench/stages/run.mjs times each stage
//! in Node's V8 (the engine Envoy runs the module in). The host calls are
//! priced separately, in real Envoy (scripts/bench-calls.sh); this is the
//! module's own code.
//!
//! Stages, each cumulative over the one before (so a stage's cost is its
//! time minus the previous one's):
//! 0. `facts`   the request facts from the header pairs
//! 1. `verify`  + the JWS: base64, header JSON, HMAC-SHA256
//! 2. `decide`  + the whole decision: verify, claims JSON, every check,
//!    the rewrite and the audit (ticket hash)
//! 3. `commit`  + the one-time-link claim in a shared-data table (the
//!    host's store modelled in memory, with Envoy's semantics)
//! 4. `scoped`  stage 2 with the key scoped (`scope.hosts` and
//!    `scope.tenants`): its cost is its time minus stage 2's
//! 5. `revocation` stage 2 with `revocation` configured and a view of
//!    1,000 revocations, none of them the links': its cost is its time
//!    minus stage 2's

use mksgate_core::jws::{self, Alg, Key, Scratch};
use mksgate_core::replay::tests_support::EnvoyLikeStore;
use mksgate_core::revocation::{self, Kind, RevocationSource, View};
use mksgate_core::{decide, Config, Decision, RequestFacts};
use std::cell::RefCell;

const NOW: i64 = 1_800_000_000;
const HOST: &str = "vesxi01.sec.lab";
// The testkit's link constants (it does not build for wasm; a test checks).
const KID: &str = "2026-11";
const AUDIENCE: &str = "console.example.com";
const ISSUER: &str = "portal.example.com";
const ORIGIN: &str = "https://portal.example.com";
pub const STAGES: [&str; 6] = [
    "facts",
    "verify",
    "decide",
    "commit",
    "scoped",
    "revocation",
];
/// Revocations in the view of stage 5.
const REVOCATIONS: usize = 1000;

/// Links and headers as a browser sends them through the bench's config.
pub struct Bench {
    config: Config,
    /// The same, with the key scoped to the links' host and tenant.
    scoped: Config,
    /// The same, reading revocations, and a view of `REVOCATIONS` of them.
    revoking: Config,
    view: View,
    requests: Vec<Vec<(String, String)>>,
    store: EnvoyLikeStore,
}

impl Bench {
    /// `n` distinct links, signed as the benchmark's load generator signs
    /// them (the shipped claims and a fresh ticket and `jti` each).
    pub fn new(n: u32) -> Option<Bench> {
        let secret = [7u8; 32];
        // The bench's plugin configuration (bench/configs/envoy-mksgate.yaml).
        let config = serde_json::json!({
            "keys": [{"kid": KID, "alg": "HS256", "secret_base64url": jws::encode_secret(&secret)}],
            "path_prefix": "/console",
            "audience": AUDIENCE,
            "issuer": ISSUER,
            "allowed_origins": [ORIGIN],
            "max_ttl_seconds": 300,
            "one_time_links": true,
            "log_decisions": false,
            "upstreams": {
                "cluster_header": "x-mksgate-cluster",
                "hosts": {HOST: "esxi_vesxi01", "vesxi02.sec.lab": "esxi_vesxi02"}
            }
        });
        let mut revoking = config.clone();
        revoking["revocation"] = serde_json::json!({"etcd": {"cluster": "mksgate_etcd"}});
        let mut scoped = config.clone();
        scoped["keys"][0]["scope"] =
            serde_json::json!({"hosts": [HOST], "tenants": ["tenant-x", "bench"]});
        let config = Config::parse(config.to_string().as_bytes(), &|_| None).ok()?;
        let scoped = Config::parse(scoped.to_string().as_bytes(), &|_| None).ok()?;
        let revoking = Config::parse(revoking.to_string().as_bytes(), &|_| None).ok()?;
        let view = view_of(revoking.revocation.as_ref()?)?;
        let key = Key::new(Some(KID.into()), Alg::HS256, &secret).ok()?;
        let requests = (0..n)
            .map(|i| {
                let claims = serde_json::json!({
                    "host": HOST, "ticket": format!("b{i:031x}"), "iat": NOW, "exp": NOW + 60,
                    "jti": format!("j{i:031x}"), "aud": AUDIENCE, "iss": ISSUER, "sub": "bench", "tenant": "bench",
                });
                let token = jws::sign(&key, claims.to_string().as_bytes());
                [
                    (":authority", "127.0.0.1:8443"),
                    (":path", &format!("/console?token={token}")),
                    (":method", "GET"),
                    (":scheme", "http"),
                    ("origin", ORIGIN),
                    ("sec-websocket-protocol", "binary, vmware-vvc, uint8utf8"),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("connection", "Upgrade"),
                    ("upgrade", "websocket"),
                    ("x-forwarded-proto", "http"),
                    ("x-request-id", "61a00a2b-025c-4e47-9bec-df052591f26e"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
            })
            .collect();
        let store = EnvoyLikeStore::default();
        mksgate_core::replay::init(&store).ok()?;
        Some(Bench {
            config,
            scoped,
            revoking,
            view,
            requests,
            store,
        })
    }

    /// Runs `stage` once per link; the number of admissions (a checksum the
    /// optimizer cannot drop).
    pub fn run(&self, stage: u32) -> u32 {
        let mut admitted = 0;
        for headers in &self.requests {
            let pairs = headers.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()));
            let facts = RequestFacts::from_header_bytes(pairs, "x-mksgate-cluster", None);
            admitted += match stage {
                0 => u32::from(facts.upgrade != Default::default()),
                1 => {
                    let token = facts.path.split_once("token=").map_or("", |(_, t)| t);
                    let mut scratch = Scratch::new();
                    u32::from(jws::verify(&self.config.keys, token, &mut scratch).is_ok())
                }
                2 => u32::from(matches!(
                    decide(&self.config, &facts, NOW),
                    Decision::Admit(_)
                )),
                4 => u32::from(matches!(
                    decide(&self.scoped, &facts, NOW),
                    Decision::Admit(_)
                )),
                5 => {
                    let mut facts = facts;
                    facts.revocations = Some((&self.view, NOW * 1000));
                    u32::from(matches!(
                        decide(&self.revoking, &facts, NOW),
                        Decision::Admit(_)
                    ))
                }
                _ => match decide(&self.config, &facts, NOW) {
                    Decision::Admit(admission) => u32::from(matches!(
                        admission.commit(&self.store, NOW),
                        mksgate_core::Commit::Apply(_)
                    )),
                    _ => 0,
                },
            };
        }
        admitted
    }
}

/// A view that has read `REVOCATIONS` revocations of other subjects.
fn view_of(source: &RevocationSource) -> Option<View> {
    let names: Vec<String> = (0..REVOCATIONS).map(|i| format!("gone-{i}")).collect();
    let revoked: Vec<(Kind, &str)> = names.iter().map(|n| (Kind::Sub, n.as_str())).collect();
    let view = revocation::tests_support::view_of(source, &revoked, NOW * 1000);
    (view.len() == REVOCATIONS).then_some(view)
}

thread_local! {
    static BENCH: RefCell<Option<Bench>> = const { RefCell::new(None) };
}

/// Builds `n` links; 1 on success.
#[no_mangle]
pub extern "C" fn stages_setup(n: u32) -> u32 {
    let bench = Bench::new(n);
    let ok = u32::from(bench.is_some());
    BENCH.with(|b| *b.borrow_mut() = bench);
    ok
}

/// Runs one stage over every link (see `Bench::run`).
#[no_mangle]
pub extern "C" fn stages_run(stage: u32) -> u32 {
    BENCH.with(|b| b.borrow().as_ref().map_or(0, |bench| bench.run(stage)))
}

/// Forgets the one-time links recorded so far (stage 3 again).
#[no_mangle]
pub extern "C" fn stages_reset_store() {
    BENCH.with(|b| {
        if let Some(bench) = b.borrow_mut().as_mut() {
            bench.store = EnvoyLikeStore::default();
            let _ = mksgate_core::replay::init(&bench.store);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stage does the work it names: every link verifies and is
    /// admitted, and the second commit of a link is a replay.
    #[test]
    fn every_stage_admits_every_link_once() {
        let bench = Bench::new(20).unwrap();
        for stage in 0..3 {
            assert_eq!(bench.run(stage), 20, "stage {}", STAGES[stage as usize]);
        }
        assert_eq!(bench.run(3), 20);
        assert_eq!(bench.run(3), 0, "replayed");
        assert_eq!(bench.run(4), 20, "scoped");
        assert_eq!(bench.run(5), 20, "revocation");
    }

    #[test]
    fn the_links_are_the_testkits() {
        use mksgate_testkit::link;
        assert_eq!(
            (KID, AUDIENCE, ISSUER, ORIGIN),
            (link::KID, link::AUDIENCE, link::ISSUER, link::ORIGIN)
        );
    }
}
