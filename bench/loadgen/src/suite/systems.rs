//! The systems the benchmark measures: how each is started (its template,
//! module, patches) and which of them a run selects.

use super::*;

#[derive(Clone, Debug)]
pub enum Kind {
    Direct,
    Haproxy {
        template: &'static str,
        /// Literal replacements in the rendered config, as for Envoy.
        patches: &'static [(&'static str, &'static str)],
    },
    Envoy {
        template: &'static str,
        module: Option<&'static str>,
        mksgate: bool,
        /// Envoy `--log-level`.
        log_level: &'static str,
        /// Literal replacements in the rendered config (diagnostics), each
        /// of which must find its text.
        patches: &'static [(&'static str, &'static str)],
        /// Start a single-member etcd for this system (the fleet store).
        etcd: bool,
    },
}

/// System 4H's plan: the host calls of an admitted handshake, as mksgate
/// makes them at the shipped settings (bench/noop-filter/src/calls.rs).
pub(crate) const NOOP_CALLS_PLAN: &str = "headers now header*4 shared route counter property*6";

/// Puts system 4H's plan, or with `BENCH_NOOP_CALLS` another one (a
/// diagnostic: e.g. `"property*20"` prices one kind of call), into the
/// do-nothing filter's plugin configuration.
pub(crate) fn noop_calls_patch() -> &'static [(&'static str, &'static str)] {
    const ANCHOR: &str = "                root_id: noop\n";
    let plan = std::env::var("BENCH_NOOP_CALLS").unwrap_or_else(|_| NOOP_CALLS_PLAN.into());
    let to = format!(
        "{ANCHOR}                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: \"{plan}\"\n"
    );
    Box::leak(Box::new([(ANCHOR, &*Box::leak(to.into_boxed_str()))]))
}

/// `kind` with `with` applied to its rendered config.
pub fn patched(mut kind: Kind, with: &'static [(&'static str, &'static str)]) -> Kind {
    if let Kind::Envoy { patches, .. } | Kind::Haproxy { patches, .. } = &mut kind {
        *patches = with;
    }
    kind
}

/// `cfg` with every replacement applied; an error names the one whose text
/// is not there.
pub(crate) fn apply_patches(
    mut cfg: String,
    patches: &[(&str, &str)],
    id: &str,
    template: &str,
) -> Result<String> {
    for (from, to) in patches {
        if !cfg.contains(from) {
            bail!("{id}: {from:?} not found in {template}");
        }
        cfg = cfg.replace(from, to);
    }
    Ok(cfg)
}

/// The etcd store in the plugin configuration (system 5e).
pub(crate) const ETCD_STORE_PATCH: (&str, &str) = (
    "\"one_time_links\": true,",
    "\"one_time_links\": true, \"replay_store\": {\"etcd\": {\"cluster\": \"mksgate_etcd\", \"authority\": \"etcd\"}},",
);

/// Revocation read from etcd, as envoy/fleet.yaml ships it (system 5r).
pub(crate) const REVOCATION_PATCH: (&str, &str) = (
    "\"one_time_links\": true,",
    "\"one_time_links\": true, \"revocation\": {\"etcd\": {\"cluster\": \"mksgate_etcd\", \"authority\": \"etcd\", \"poll_ms\": 1000, \"timeout_ms\": 1500, \"max_stale_ms\": 30000}},",
);

/// System 5r's patches; and with TLS and the access log, the scale bench's
/// `mksgate-tls-rev`.
pub const REVOCATION_PATCHES: &[(&str, &str)] = &[REVOCATION_PATCH, ETCD_CLUSTER_PATCH];

/// And the cluster it names.
pub(crate) const ETCD_CLUSTER_PATCH: (&str, &str) = (
    "\n  clusters:\n",
    "\n  clusters:\n  - name: mksgate_etcd\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: mksgate_etcd\n      endpoints:\n      - lb_endpoints:\n        - endpoint: { address: { socket_address: { address: 127.0.0.41, port_value: 23790 } } }\n",
);

#[derive(Clone, Debug)]
pub struct System {
    pub id: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    /// Diagnostic variants run in the handshake scenarios only.
    pub handshake_only: bool,
    /// TLS from the client and to ESXi (`deployed`); these systems are
    /// measured as a group of their own, against the TLS stand-in.
    pub tls: bool,
    /// The proxy's access log on, at its shipped format.
    pub access_log: bool,
    /// The handshake budget's group (issue 15): measured in the paced
    /// handshake scenario only, together, at `budget_rate`.
    pub budget: bool,
    /// A path-routed system sent `&token=<a signed link>` as well, so its
    /// request is as long as mksgate's.
    pub token_in_path: bool,
}

/// A system measured like the others: every scenario, plaintext, no
/// access log.
pub(crate) fn system(
    id: &'static str,
    label: &'static str,
    description: &'static str,
    kind: Kind,
) -> System {
    System {
        id,
        label,
        description,
        kind,
        handshake_only: false,
        tls: false,
        access_log: false,
        budget: false,
        token_in_path: false,
    }
}

/// A member of the budget group: handshakes only, the shipped access log.
pub(crate) fn budget(sys: System) -> System {
    System {
        handshake_only: true,
        access_log: true,
        budget: true,
        ..sys
    }
}

/// Envoy from `template` at `--log-level info`, no patches, no etcd.
pub(crate) fn envoy(template: &'static str, module: Option<&'static str>, mksgate: bool) -> Kind {
    Kind::Envoy {
        template,
        module,
        mksgate,
        log_level: "info",
        patches: &[],
        etcd: false,
    }
}

/// Envoy + mksgate with revocation read from a single-member etcd.
pub(crate) fn revocation_envoy() -> Kind {
    Kind::Envoy {
        template: "envoy-mksgate.yaml",
        module: Some("mksgate_filter.wasm"),
        mksgate: true,
        log_level: "info",
        patches: REVOCATION_PATCHES,
        etcd: true,
    }
}

/// The systems, in table order.
pub fn all_systems() -> Vec<System> {
    vec![
        system(
            "direct",
            "1 direct",
            "the client talks to the stand-in itself (the limit)",
            Kind::Direct,
        ),
        system(
            "haproxy",
            "2 HAProxy",
            "HAProxy, WebMKS jump-host recipe: backend = `host` query parameter, no authentication (bench/configs/haproxy.cfg)",
            Kind::Haproxy {
                template: "haproxy.cfg",
                patches: &[],
            },
        ),
        system(
            "envoy",
            "3 Envoy",
            "Envoy, route on the `host` query parameter, no wasm filter (bench/configs/envoy-no-filter.yaml)",
            envoy("envoy-no-filter.yaml", None, false),
        ),
        system(
            "noop",
            "4 Envoy+noop",
            "as 3, plus the do-nothing proxy-wasm filter, shipped build (bench/configs/envoy-noop.yaml, mksgate_noop_filter.wasm)",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
        ),
        system(
            "noop-raw",
            "4b Envoy+noop raw",
            "as 4 with cargo's raw module, which still exports the body callbacks (mksgate_noop_filter.raw.wasm)",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.raw.wasm"), false),
        ),
        system(
            "mksgate",
            "5 Envoy+mksgate",
            "Envoy with mksgate as shipped: signed one-time links, cluster_header routing (bench/configs/envoy-mksgate.yaml, mksgate_filter.wasm)",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
        ),
        system(
            "mksgate-raw",
            "5b Envoy+mksgate raw",
            "as 5 with cargo's raw module, which still exports the body callbacks (mksgate_filter.raw.wasm): the before of 'off the data path'",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.raw.wasm"), true),
        ),
        System {
            handshake_only: true,
            ..system(
                "mksgate-etcd",
                "5e mksgate, etcd store (diag.)",
                "diagnostic, handshakes only: as 5 with one-time links recorded in etcd (`replay_store.etcd`, envoy/fleet.yaml's store) instead of the local table: a single-member etcd 3.4 on the load generator's CPU, plain HTTP; etcd's own CPU is not in the proxy's figures",
                Kind::Envoy {
                    template: "envoy-mksgate.yaml",
                    module: Some("mksgate_filter.wasm"),
                    mksgate: true,
                    log_level: "info",
                    patches: &[ETCD_STORE_PATCH, ETCD_CLUSTER_PATCH],
                    etcd: true,
                },
            )
        },
        System {
            handshake_only: true,
            ..system(
                "mksgate-rev",
                "5r mksgate, revocation (diag.)",
                "diagnostic, handshakes only: as 5 with revocation on (`revocation.etcd`, envoy/fleet.yaml's block: each worker reads the revocations from etcd every second, and every handshake is checked against them); a single-member etcd 3.4 on the load generator's CPU, plain HTTP, holding no revocation",
                revocation_envoy(),
            )
        },
        budget(system(
            "noop-log",
            "4L Envoy+noop, access log (budget)",
            "the handshake budget's group: as 4 with the shipped access log (envoy/static-clusters.yaml's format, a line when the tunnel is up and one at the end) on Envoy's stdout",
            envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
        )),
        System {
            token_in_path: true,
            ..budget(system(
                "noop-token-log",
                "4P noop, token in the request (budget)",
                "as 4L with `&token=<a signed link>` after `?host=`, so the request Envoy parses (and forwards) is as long as mksgate's",
                envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
            ))
        },
        System {
            token_in_path: true,
            ..budget(system(
                "noop-calls-log",
                "4H noop, mksgate's host calls (budget)",
                "as 4P, with the do-nothing filter making the host calls mksgate makes on an admitted handshake and nothing else (bench/noop-filter/src/calls.rs): header map, clock, four header writes, shared-data read and compare-and-swap, route re-pick, counter, six filter-state writes",
                patched(
                    envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
                    noop_calls_patch(),
                ),
            ))
        },
        budget(system(
            "mksgate-reusable",
            "5d mksgate, no one-time (budget)",
            "as 5L with `one_time_links: false`, so no replay-table read and compare-and-swap write per handshake",
            patched(
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
                &[("\"one_time_links\": true", "\"one_time_links\": false")],
            ),
        )),
        budget(system(
            "mksgate-log",
            "5L mksgate, access log (budget)",
            "as 5 with the shipped access log, which writes the audit from filter state: mksgate at its shipped log settings",
            envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
        )),
        budget(system(
            "mksgate-declog",
            "5c mksgate, decision lines (budget)",
            "as 5L with `log_decisions: true`, so each decision is also formatted as a JSON line in the VM and written to Envoy's log (the shipped layouts have it off)",
            patched(
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
                &[("\"log_decisions\": false", "\"log_decisions\": true")],
            ),
        )),
        System {
            tls: true,
            access_log: true,
            ..system(
                "haproxy-tls",
                "2T HAProxy, TLS + log",
                "as deployed: as 2 with TLS 1.3 at the bind, TLS to ESXi (SNI, no certificate check, as the recipe) and its access log on (bench/configs/haproxy-deployed.cfg)",
                Kind::Haproxy {
                    template: "haproxy-deployed.cfg",
                    patches: &[],
                },
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "envoy-tls",
                "3T Envoy, TLS + log",
                "as deployed: as 3 with TLS 1.3 on the listener, TLS to ESXi with the shipped certificate pin, and the shipped access log",
                envoy("envoy-no-filter.yaml", None, false),
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "noop-tls",
                "4T Envoy+noop, TLS + log",
                "as deployed: as 4 with TLS on both sides and the shipped access log",
                envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
            )
        },
        System {
            tls: true,
            access_log: true,
            handshake_only: true,
            ..system(
                "noop-tls-audit",
                "4Ta Envoy+noop, TLS + log, six filter-state writes (scale only)",
                "as 4T with the do-nothing filter writing the six filter-state values mksgate's audit writes on an admitted console (bench/noop-filter/src/calls.rs, plan `property*6`) and nothing else: measured by `make bench-scale` only, to price what the audit holds per open console",
                patched(
                    envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
                    AUDIT_ONLY_PATCH,
                ),
            )
        },
        System {
            tls: true,
            access_log: true,
            handshake_only: true,
            token_in_path: true,
            ..system(
                "noop-tls-calls",
                "4Th Envoy+noop, TLS + log, mksgate's host calls (scale only)",
                "as 4T with a signed link in the request (as long as mksgate's) and the do-nothing filter making every host call mksgate makes on an admitted console (system 4H's plan: header writes, route re-pick, shared data, counter, six filter-state writes) and nothing else: measured by `make bench-scale` only, to price what those calls hold per open console",
                patched(
                    envoy("envoy-noop.yaml", Some("mksgate_noop_filter.wasm"), false),
                    noop_calls_patch(),
                ),
            )
        },
        System {
            tls: true,
            access_log: true,
            handshake_only: true,
            ..system(
                "mksgate-tls-rev",
                "5Tr Envoy+mksgate, TLS + log, revocation (scale only)",
                "as 5T with revocation on (system 5r's block and etcd): measured by `make bench-scale` only, where its CPU with no console and with consoles open is the cost of polling",
                revocation_envoy(),
            )
        },
        System {
            tls: true,
            access_log: true,
            ..system(
                "mksgate-tls",
                "5T Envoy+mksgate, TLS + log",
                "as deployed: as 5 with TLS on both sides and the shipped access log (the audit in it): envoy/static-clusters.yaml but for the handshake limits",
                envoy("envoy-mksgate.yaml", Some("mksgate_filter.wasm"), true),
            )
        },
    ]
}

/// The systems to run: all, or those `BENCH_SYSTEMS` names; in reverse
/// order with `BENCH_REVERSE=1` (a diagnostic of the benchmark itself).
/// Systems `make bench` leaves out unless named (`make bench-scale` runs them).
pub(crate) const SCALE_ONLY: [&str; 3] = ["noop-tls-audit", "noop-tls-calls", "mksgate-tls-rev"];

pub(crate) fn selected_systems() -> Vec<System> {
    let wanted: Vec<String> = std::env::var("BENCH_SYSTEMS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut systems: Vec<System> = all_systems()
        .into_iter()
        .filter(|s| {
            if wanted.is_empty() {
                !SCALE_ONLY.contains(&s.id)
            } else {
                wanted.iter().any(|w| w == s.id)
            }
        })
        .collect();
    if std::env::var("BENCH_REVERSE").is_ok_and(|v| v == "1") {
        systems.reverse();
    }
    systems
}

/// What the results say about a system: its id, label, config and module.
pub(crate) fn system_info(s: &System) -> SystemInfo {
    let (config, module) = match &s.kind {
        Kind::Direct => (None, None),
        Kind::Haproxy { template, .. } => (Some(format!("bench/configs/{template}")), None),
        Kind::Envoy {
            template, module, ..
        } => (
            Some(format!("bench/configs/{template}")),
            module.map(str::to_string),
        ),
    };
    SystemInfo {
        id: s.id.into(),
        label: s.label.into(),
        description: s.description.into(),
        config,
        module,
    }
}

/// The do-nothing filter making only mksgate's six audit filter-state
/// writes (system 4Ta).
pub(crate) const AUDIT_ONLY_PATCH: &[(&str, &str)] = &[(
    "                root_id: noop\n",
    "                root_id: noop\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: \"property*6\"\n",
)];
