//! `mksgate envoy-config`: Envoy clusters and the plugin's `upstreams` map
//! from an inventory of ESXi hosts.

use crate::util::{fail, json_string, yaml_scalar, Outcome};
use mksgate_core::config::DEFAULT_CLUSTER_HEADER;
use mksgate_core::jws::encode_secret;
use mksgate_core::target::{self, Host};
use mksgate_core::Config;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write Envoy clusters and the plugin's `upstreams` from a host inventory.
///
/// One cluster per ESXi host (TLS with SNI, and a certificate pin and/or
/// CA): STATIC for an IP address, STRICT_DNS for a DNS name (Envoy
/// resolves it and follows its changes); and the plugin configuration's
/// `upstreams` map. Both go to
/// stdout as two YAML documents unless written to files.
///
/// The inventory is a YAML list of hosts:
///
///   - name: vesxi01.sec.lab            # host name in vSphere's WebMKS URL
///     address: 10.0.0.11               # IP (STATIC) or DNS name (STRICT_DNS)
///     port: 443                        # optional
///     sha256: "AB:CD:..."              # certificate pin, colons optional
///     trusted_ca: /etc/mksgate/ca.pem  # and/or a CA bundle
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The inventory YAML.
    #[arg(long, value_name = "hosts.yaml")]
    inventory: PathBuf,
    /// Prefix of the cluster names (the rest is the host name with dots,
    /// dashes and colons turned into underscores).
    #[arg(long, default_value = "esxi_")]
    cluster_prefix: String,
    /// The header the route's cluster_header reads (upstreams.cluster_header).
    #[arg(long, default_value = DEFAULT_CLUSTER_HEADER)]
    cluster_header: String,
    /// Write the clusters YAML here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out_clusters: Option<PathBuf>,
    /// Write the upstreams JSON here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out_upstreams: Option<PathBuf>,
    /// Allow hosts with neither sha256 nor trusted_ca: their certificate is
    /// then NOT verified (anyone on the path can impersonate the ESXi host).
    #[arg(long)]
    allow_unverified: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    port: Option<u32>,
    /// Kept as a YAML value: an unquoted pin of digits only reads as a
    /// number, which must be refused rather than mangled.
    #[serde(default)]
    sha256: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    trusted_ca: Option<String>,
}

/// Where a cluster connects: an IP (STATIC) or a name Envoy resolves
/// (STRICT_DNS).
enum Address {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Name(name) => f.write_str(name),
        }
    }
}

/// One host, checked.
struct Upstream {
    host: Host,
    address: Address,
    port: u16,
    pin: Option<String>,
    trusted_ca: Option<String>,
    cluster: String,
}

pub fn run(args: &Args) -> Outcome<ExitCode> {
    let source = args.inventory.display().to_string();
    let text =
        std::fs::read_to_string(&args.inventory).map_err(|e| fail(format!("{source}: {e}")))?;
    let upstreams = read_inventory(&text, &args.cluster_prefix, args.allow_unverified)
        .map_err(|e| fail(format!("{source}: {e}")))?;
    let hosts: BTreeMap<String, String> = upstreams
        .iter()
        .map(|u| (u.host.canonical(), u.cluster.clone()))
        .collect();
    let upstreams_json = serde_json::json!({
        "cluster_header": args.cluster_header,
        "hosts": hosts,
    });
    check_with_filter(&upstreams_json)?;
    let clusters_yaml = clusters_yaml(&upstreams, &source);
    let upstreams_text = format!("{upstreams_json:#}\n");

    let mut stdout = String::new();
    match &args.out_clusters {
        Some(path) => {
            std::fs::write(path, &clusters_yaml)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            eprintln!("wrote {} ({} clusters)", path.display(), upstreams.len());
        }
        None => stdout.push_str(&clusters_yaml),
    }
    match &args.out_upstreams {
        Some(path) => {
            std::fs::write(path, &upstreams_text)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            eprintln!("wrote {} ({} hosts)", path.display(), upstreams.len());
        }
        None => {
            if !stdout.is_empty() {
                stdout.push_str("---\n");
            }
            stdout.push_str(
                "# The plugin configuration's \"upstreams\" for these clusters (JSON, which\n\
                 # is also YAML): paste it as the value of \"upstreams\".\n",
            );
            stdout.push_str(&upstreams_text);
        }
    }
    crate::out!("{stdout}");
    Ok(ExitCode::SUCCESS)
}

fn read_inventory(
    text: &str,
    prefix: &str,
    allow_unverified: bool,
) -> Result<Vec<Upstream>, String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let list = match doc {
        serde_yaml_ng::Value::Sequence(list) => list,
        serde_yaml_ng::Value::Mapping(mut map) => match map.remove("hosts") {
            Some(serde_yaml_ng::Value::Sequence(list)) if map.is_empty() => list,
            _ => return Err("must be a list of hosts (or `hosts:` and the list)".into()),
        },
        _ => return Err("must be a list of hosts".into()),
    };
    if list.is_empty() {
        return Err("lists no hosts".into());
    }
    let prefix_ok = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !prefix_ok {
        return Err("--cluster-prefix may use only A-Z a-z 0-9 _ - . :".into());
    }
    let mut seen_hosts = HashSet::new();
    let mut seen_clusters = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, value) in list.into_iter().enumerate() {
        let entry: Entry = serde_yaml_ng::from_value(value).map_err(|e| format!("[{i}]: {e}"))?;
        let at = format!("[{i}] ({})", entry.name.escape_debug());
        let host = target::parse_host(&entry.name).ok_or_else(|| {
            format!("{at}: name: is not a host name or IP literal (no port, no trailing dot, no _)")
        })?;
        let canonical = host.canonical();
        if !seen_hosts.insert(canonical.clone()) {
            return Err(format!("{at}: name: {canonical} is listed twice"));
        }
        let address = match entry.address.as_deref() {
            None => match &host {
                Host::Ip(ip) => Address::Ip(*ip),
                Host::Name(name) => Address::Name(name.clone()),
            },
            Some(text) => match target::parse_host(text) {
                Some(Host::Ip(ip)) => Address::Ip(ip),
                Some(Host::Name(name)) => Address::Name(name),
                None => {
                    return Err(format!(
                    "{at}: address: must be an IP address or a DNS name (no port, no trailing dot)"
                ))
                }
            },
        };
        let port = match entry.port {
            None => 443,
            Some(p) => u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{at}: port: must be 1 to 65535"))?,
        };
        let pin = match &entry.sha256 {
            None => None,
            Some(serde_yaml_ng::Value::String(text)) => Some(
                normalise_pin(text)
                    .ok_or_else(|| format!("{at}: sha256: must be 64 hex digits, colons allowed"))?,
            ),
            Some(_) => {
                return Err(format!(
                    "{at}: sha256: must be a string; quote it (\"...\") so YAML does not read it as a number"
                ))
            }
        };
        let trusted_ca = match entry.trusted_ca {
            Some(path) if path.trim().is_empty() || path.contains(['\n', '\r']) => {
                return Err(format!("{at}: trusted_ca: must be a file path"))
            }
            other => other,
        };
        if pin.is_none() && trusted_ca.is_none() {
            if !allow_unverified {
                return Err(format!(
                    "{at}: needs sha256 (certificate pin) or trusted_ca to verify the ESXi certificate (or --allow-unverified)"
                ));
            }
            eprintln!(
                "warning: {canonical}: its certificate will NOT be verified (--allow-unverified): anyone on the path to {address} can impersonate it"
            );
        }
        let base: String = format!("{prefix}{canonical}")
            .chars()
            .map(|c| if matches!(c, '.' | '-' | ':') { '_' } else { c })
            .collect();
        let mut cluster = base.clone();
        let mut n = 2;
        while !seen_clusters.insert(cluster.clone()) {
            cluster = format!("{base}_{n}");
            n += 1;
        }
        out.push(Upstream {
            host,
            address,
            port,
            pin,
            trusted_ca,
            cluster,
        });
    }
    Ok(out)
}

/// `AB:CD:...` or `abcd...` -> 64 lower-case hex digits.
fn normalise_pin(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The generated map must pass the filter's own parser.
fn check_with_filter(upstreams: &serde_json::Value) -> Outcome<()> {
    let probe = serde_json::json!({
        "keys": [{"alg": "HS256", "secret_base64url": encode_secret(&[0u8; 64])}],
        "upstreams": upstreams,
    });
    Config::parse(probe.to_string().as_bytes(), &|_| None)
        .map(|_| ())
        .map_err(|e| fail(format!("the generated upstreams are refused: {e}")))
}

fn clusters_yaml(upstreams: &[Upstream], source: &str) -> String {
    let mut y = String::new();
    // Writing to a String cannot fail; the results are ignored.
    let _ = writeln!(
        y,
        "# Envoy clusters for mksgate, written by `mksgate envoy-config` from {}.",
        source.escape_debug()
    );
    y.push_str(
        "# One cluster per ESXi host (STATIC for an IP address, STRICT_DNS for a\n\
         # name). SNI is the host's name, as the browser would send it; the\n\
         # certificate is checked against its SHA-256 pin and/or\n\
         # the CA in trusted_ca (with only a CA, the host's name must also be in the\n\
         # certificate's SAN). Put these under static_resources, in place of the\n\
         # example clusters of envoy/static-clusters.yaml.\n\
         clusters:\n",
    );
    for u in upstreams {
        let name = yaml_scalar(&u.cluster);
        let _ = writeln!(y, "- name: {name}");
        match &u.address {
            Address::Ip(_) => y.push_str("  type: STATIC\n"),
            Address::Name(_) => {
                y.push_str("  type: STRICT_DNS\n  dns_lookup_family: V4_PREFERRED\n")
            }
        }
        y.push_str("  connect_timeout: 5s\n  load_assignment:\n");
        let _ = writeln!(y, "    cluster_name: {name}");
        y.push_str("    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          address:\n");
        let _ = writeln!(
            y,
            "            socket_address: {{ address: {}, port_value: {} }}",
            yaml_scalar(&u.address.to_string()),
            u.port
        );
        if u.pin.is_none() && u.trusted_ca.is_none() {
            y.push_str(
                "  # WARNING: --allow-unverified: this host's certificate is NOT verified.\n",
            );
        }
        y.push_str(
            "  transport_socket:\n    name: envoy.transport_sockets.tls\n    typed_config:\n      \
             \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n",
        );
        match &u.host {
            Host::Name(name) => {
                let _ = writeln!(y, "      sni: {}", yaml_scalar(name));
            }
            Host::Ip(_) => y.push_str("      # No SNI: the host is named by an IP literal.\n"),
        }
        if u.pin.is_some() || u.trusted_ca.is_some() {
            y.push_str("      common_tls_context:\n        validation_context:\n");
            if let Some(pin) = &u.pin {
                y.push_str("          verify_certificate_hash:\n");
                let _ = writeln!(y, "          - {}", json_string(pin));
            }
            if let Some(ca) = &u.trusted_ca {
                let _ = writeln!(
                    y,
                    "          trusted_ca: {{ filename: {} }}",
                    yaml_scalar(ca)
                );
                if u.pin.is_none() {
                    // A CA alone vouches for every host it signed: also
                    // require this host's name (or address) in the SAN.
                    let (san_type, value) = match &u.host {
                        Host::Name(name) => ("DNS", name.clone()),
                        Host::Ip(ip) => ("IP_ADDRESS", ip.to_string()),
                    };
                    y.push_str("          match_typed_subject_alt_names:\n");
                    let _ = writeln!(y, "          - san_type: {san_type}");
                    let _ = writeln!(
                        y,
                        "            matcher: {{ exact: {} }}",
                        yaml_scalar(&value)
                    );
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        assert_eq!(normalise_pin(&colons), Some("ab".repeat(32)));
        assert_eq!(normalise_pin(&"0".repeat(64)), Some("0".repeat(64)));
        assert_eq!(normalise_pin(&"0".repeat(63)), None);
        assert_eq!(normalise_pin(&"g".repeat(64)), None);
    }

    #[test]
    fn names_are_unique_and_mangled() {
        let pin = "1".repeat(64);
        let inv = format!(
            "- {{name: a-b.lab, address: 10.0.0.1, sha256: '{pin}'}}\n\
             - {{name: a.b.lab, address: 10.0.0.2, sha256: '{pin}'}}\n\
             - {{name: 'fd00::1', address: 'fd00::1', port: 8443, sha256: '{pin}'}}\n"
        );
        let ups = read_inventory(&inv, "esxi_", false).unwrap();
        let names: Vec<_> = ups.iter().map(|u| u.cluster.as_str()).collect();
        assert_eq!(names, ["esxi_a_b_lab", "esxi_a_b_lab_2", "esxi_fd00__1"]);
        assert!(read_inventory(
            "- {name: A.lab, address: 10.0.0.1, sha256: 'x'}",
            "e_",
            false
        )
        .is_err());
        let dup = format!(
            "- {{name: A.lab, address: 10.0.0.1, sha256: '{pin}'}}\n- {{name: a.lab, address: 10.0.0.2, sha256: '{pin}'}}\n"
        );
        let err = read_inventory(&dup, "e_", false).err().unwrap();
        assert!(err.contains("listed twice"), "{err}");
        let unverified = "- {name: a.lab, address: 10.0.0.1}\n";
        assert!(read_inventory(unverified, "e_", false).is_err());
        assert!(read_inventory(unverified, "e_", true).is_ok());
        // A DNS name is resolved by Envoy (STRICT_DNS); an address with a
        // port or garbage is refused.
        let named = read_inventory(
            "- {name: a.lab, address: esx.lab, trusted_ca: /x}\n- {name: b.lab, trusted_ca: /x}\n",
            "e_",
            false,
        )
        .unwrap();
        let yaml = clusters_yaml(&named, "inv");
        assert_eq!(yaml.matches("type: STRICT_DNS").count(), 2, "{yaml}");
        assert!(
            yaml.contains("address: esx.lab") && yaml.contains("address: b.lab"),
            "{yaml}"
        );
        for bad in ["esx.lab:443", "esx lab", "10.0.0.1:443"] {
            let inv = format!("- {{name: a.lab, address: '{bad}', trusted_ca: /x}}");
            let err = read_inventory(&inv, "e_", false).err().unwrap();
            assert!(
                err.contains("address: must be an IP address or a DNS name"),
                "{err}"
            );
        }
        assert!(read_inventory(
            "- {name: a.lab, address: 10.0.0.1, trusted_ca: /x, bogus: 1}",
            "e_",
            false
        )
        .is_err());
    }
}
