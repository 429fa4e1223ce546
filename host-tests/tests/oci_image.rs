//! `scripts/oci-image.sh` packs the shipped module as an OCI image layout
//! that Istio's WasmPlugin can pull (the "compat" Wasm image: one gzip tar
//! layer holding `plugin.wasm`). Checked by hand (layout files, every blob's
//! digest and size, the layer's exact contents, the printed sha256,
//! reproducibility) and by a third-party tool, skopeo (`skopeo inspect`,
//! `skopeo copy` to a plain directory), which scripts/setup.sh installs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mksgate_host_tests::envoy::workspace_root;
use mksgate_host_tests::run;
use mksgate_host_tests::shipped;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TAG: &str = "test";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "mksgate-{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("MKSGATE_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Runs a command with a time bound (killed if it overruns); stdout, or a
/// panic with stderr.
fn run_bounded(cmd: &mut Command, limit: Duration) -> String {
    let shown = format!("{cmd:?}");
    let done = run::run_bounded(cmd, limit).unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        done.status.success(),
        "{shown}: {}\n{}\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    done.stdout
}

/// Runs scripts/oci-image.sh; returns its stdout.
fn pack(module: &Path, out: &Path) -> String {
    for tool in ["bash", "python3", "tar", "gzip"] {
        assert!(
            on_path(tool),
            "`{tool}` not found: scripts/oci-image.sh needs it"
        );
    }
    run_bounded(
        Command::new("bash")
            .arg(workspace_root().join("scripts/oci-image.sh"))
            .arg(module)
            .arg(out)
            .arg(TAG),
        Duration::from_secs(60),
    )
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    layout.join("blobs/sha256").join(hex)
}

/// A descriptor's blob: exists, has the descriptor's size and digest.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let data = std::fs::read(blob_path(layout, digest)).unwrap();
    assert_eq!(
        data.len() as u64,
        descriptor["size"].as_u64().unwrap(),
        "{digest}"
    );
    assert_eq!(format!("sha256:{}", sha256_hex(&data)), digest);
    data
}

/// One file of a tar: path, type, bytes.
type TarEntry = (String, tar::EntryType, Vec<u8>);

/// The uncompressed tar and its entries.
fn untar_gz(data: &[u8]) -> (Vec<u8>, Vec<TarEntry>) {
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut tar_bytes)
        .expect("the layer is not gzip");
    let mut entries = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    for e in archive.entries().expect("the layer is not a tar") {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        entries.push((path, kind, bytes));
    }
    (tar_bytes, entries)
}

/// The layer holds exactly `plugin.wasm`, a regular file equal to `module`.
fn check_layer(layer: &[u8], module: &[u8]) -> Vec<u8> {
    let (tar_bytes, entries) = untar_gz(layer);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        vec!["plugin.wasm"],
        "the layer must hold plugin.wasm only"
    );
    assert_eq!(entries[0].1, tar::EntryType::Regular);
    assert!(
        entries[0].2 == module,
        "plugin.wasm differs from the module"
    );
    tar_bytes
}

#[test]
fn oci_layout_holds_the_module_and_its_digests() {
    let module_path = shipped::module_path().unwrap();
    let module = std::fs::read(&module_path).unwrap();
    let tmp = TempDir::new("oci");
    let layout = tmp.0.join("oci");
    let printed = pack(&module_path, &layout);

    // oci-layout and index.json.
    assert_eq!(
        read_json(&layout.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let desc = &manifests[0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        TAG
    );

    // Every file in blobs/sha256 is named by its own digest.
    let mut blobs = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(entry.path()).unwrap();
        assert_eq!(sha256_hex(&data), name, "blob named for another digest");
        blobs.push(format!("sha256:{name}"));
    }
    blobs.sort();

    // Manifest -> config + one layer, each matching its descriptor.
    let manifest: Value = serde_json::from_slice(&blob(&layout, desc)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The "compat" Wasm image variant (not "compat-smart"), and provenance.
    let notes = &manifest["annotations"];
    assert_eq!(notes["module.wasm.image/variant"], "compat", "{manifest}");
    assert_eq!(notes["org.opencontainers.image.version"], TAG);
    assert_eq!(notes["org.opencontainers.image.licenses"], "Apache-2.0");
    let revision = notes["org.opencontainers.image.revision"].as_str().unwrap();
    assert!(
        revision == "unknown"
            || (revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
        "{revision}"
    );
    let config_desc = &manifest["config"];
    assert_eq!(
        config_desc["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, config_desc)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let layer = blob(&layout, &layers[0]);
    let tar_bytes = check_layer(&layer, &module);
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar_bytes))])
    );
    // Nothing else in blobs/: exactly manifest, config, layer.
    let mut expected = vec![
        desc["digest"].as_str().unwrap().to_string(),
        config_desc["digest"].as_str().unwrap().to_string(),
        layers[0]["digest"].as_str().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(blobs, expected);

    // The value for WasmPlugin.spec.sha256 is the manifest's digest (what
    // Istio checks for oci:// URLs), not the module's own hash.
    let line = printed
        .lines()
        .find(|l| l.starts_with("WasmPlugin.spec.sha256 (the manifest digest): "))
        .unwrap_or_else(|| panic!("no WasmPlugin.spec.sha256 line in:\n{printed}"));
    assert_eq!(
        format!("sha256:{}", line.rsplit(' ').next().unwrap()),
        desc["digest"].as_str().unwrap(),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "module sha256 (plugin.wasm itself, for reference): {}",
            sha256_hex(&module)
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("manifest:   {}", desc["digest"].as_str().unwrap())),
        "{printed}"
    );

    // Reproducible: packing again gives the same manifest digest.
    let again = tmp.0.join("oci-again");
    pack(&module_path, &again);
    assert_eq!(read_json(&again.join("index.json")), index);
}

/// skopeo reads the layout as an image (inspect) and copies it out (copy to
/// a `dir:`), and the copied layer still holds the module.
#[test]
fn skopeo_reads_and_copies_the_oci_image() {
    assert!(
        on_path("skopeo"),
        "skopeo not found: run scripts/setup.sh (it installs skopeo with apt-get, \
         or `apt-get install skopeo`)"
    );
    let module_path = shipped::module_path().unwrap();
    let module = std::fs::read(&module_path).unwrap();
    let tmp = TempDir::new("oci-skopeo");
    let layout = tmp.0.join("oci");
    pack(&module_path, &layout);
    let index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let image = format!("oci:{}:{TAG}", layout.display());

    let inspect: Value = serde_json::from_str(&run_bounded(
        Command::new("skopeo").args(["inspect", &image]),
        Duration::from_secs(60),
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], manifest_digest.as_str(), "{inspect}");
    assert_eq!(inspect["Architecture"], "wasm", "{inspect}");
    assert_eq!(inspect["Os"], "wasip1", "{inspect}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_path(&layout, &manifest_digest)).unwrap())
            .unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(
        inspect["Layers"],
        serde_json::json!([layer_digest]),
        "{inspect}"
    );

    let raw = run_bounded(
        Command::new("skopeo").args(["inspect", "--raw", &image]),
        Duration::from_secs(60),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        manifest_digest
    );

    // Copy out to a plain directory (local to local: no signature policy
    // applies, hence --insecure-policy, which only skips policy.json).
    let out = tmp.0.join("copied");
    run_bounded(
        Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            &image,
            &format!("dir:{}", out.display()),
        ]),
        Duration::from_secs(60),
    );
    let copied: Value = read_json(&out.join("manifest.json"));
    let copied_layer = copied["layers"][0]["digest"].as_str().unwrap();
    assert_eq!(copied_layer, layer_digest, "skopeo changed the layer");
    let hex = copied_layer.strip_prefix("sha256:").unwrap();
    let layer = std::fs::read(out.join(hex)).unwrap();
    assert_eq!(sha256_hex(&layer), hex);
    check_layer(&layer, &module);
}

/// The digest the script prints for `WasmPlugin.spec.sha256` is the one a
/// real registry serves: push the layout with `skopeo copy` to the CNCF
/// distribution registry (Debian's `docker-registry`) on loopback, then read
/// the manifest back from the registry's HTTP API (`Docker-Content-Digest`,
/// and the SHA-256 of the bytes served).
#[test]
fn a_registry_serves_the_printed_manifest_digest() {
    for tool in ["skopeo", "docker-registry"] {
        assert!(on_path(tool), "{tool} not found: run scripts/setup.sh");
    }
    let tmp = TempDir::new("oci-registry");
    let layout = tmp.0.join("oci");
    let printed = pack(&shipped::module_path().unwrap(), &layout);
    let digest = printed
        .lines()
        .find_map(|l| l.strip_prefix("WasmPlugin.spec.sha256 (the manifest digest): "))
        .unwrap_or_else(|| panic!("no digest line in:\n{printed}"))
        .trim()
        .to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = tmp.0.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: \"{addr}\" }}\n",
            tmp.0.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&config);
    let mut registry =
        mksgate_testkit::process::Proc::spawn("docker-registry", cmd, &tmp.0.join("registry.log"))
            .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while mksgate_testkit::http::get(addr, "/v2/")
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        registry.check_alive().unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "the registry never answered /v2/"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let image = format!("docker://{addr}/mksgate/mksgate-filter:{TAG}");
    run_bounded(
        Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:{TAG}", layout.display()),
            &image,
        ]),
        Duration::from_secs(60),
    );

    // GET the manifest as Istio's fetcher does, asking for OCI manifests.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /v2/mksgate/mksgate-filter/manifests/{TAG} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let served = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("docker-content-digest")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Docker-Content-Digest in {head}"));
    println!("registry serves {served}; the script printed sha256:{digest}");
    assert_eq!(served, format!("sha256:{digest}"));
    assert_eq!(
        sha256_hex(body),
        digest,
        "the bytes served hash to another digest"
    );
    // And what skopeo reports for the pushed image agrees.
    let inspected: Value = serde_json::from_str(&run_bounded(
        Command::new("skopeo").args(["inspect", "--tls-verify=false", &image]),
        Duration::from_secs(60),
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], format!("sha256:{digest}"));
}
