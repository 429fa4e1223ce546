//! The demo (`make demo`'s binary) in a real browser: headless Chromium from
//! Debian, driven by playwright-core (`demo/tests/open-console.mjs`), opens
//! the demo page, whose noVNC or VMware HTML console (wmks 2.1.0) opens the
//! signed link through Envoy and the mksgate filter to an ESXi stand-in
//! bridging to a console server (a QEMU VM, or the built-in RFB test
//! pattern).
//!
//! Needs `/usr/bin/chromium` (or `$MKSGATE_CHROMIUM`), `node`, and
//! `demo/node_modules` (noVNC, playwright-core): `scripts/setup-browser.sh`
//! installs them (`make test` runs it). Without them these tests FAIL and say
//! so; they never skip. Screenshots go to `target/browser/`.
//!
//! The demos run one at a time (each starts Envoy, a VM and a browser; the
//! machines have two cores).

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mksgate_host_tests::client::{connect, ClientOpts};
use mksgate_host_tests::demo::{page_url, tamper_signature, DemoInfo, SignedLink};
use mksgate_host_tests::envoy::workspace_root;
use mksgate_host_tests::io::http_request;
use mksgate_host_tests::run::run_bounded;
use tokio_tungstenite::tungstenite::Message;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const SETUP_HINT: &str = "run scripts/setup-browser.sh (it installs Debian's chromium and \
qemu-system-x86, and noVNC + playwright-core into demo/node_modules)";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fail (not skip) with a clear message if the browser tooling is missing.
fn require_browser_tools() {
    let chromium = std::env::var_os("MKSGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "Chromium not found at {}: {SETUP_HINT}",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node not found on PATH: {SETUP_HINT}"
    );
    let modules = workspace_root().join("demo/node_modules");
    for f in ["playwright-core/package.json", "@novnc/novnc/core/rfb.js"] {
        assert!(
            modules.join(f).is_file(),
            "{} is missing: {SETUP_HINT}",
            modules.join(f).display()
        );
    }
}

fn out_dir() -> PathBuf {
    let d = workspace_root().join("target/browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `mksgate-demo` binary, running until dropped (stdin EOF, then kill).
struct DemoProcess {
    child: Child,
    info: DemoInfo,
    work: PathBuf,
}

impl DemoProcess {
    fn start(name: &str, extra: &[&str]) -> DemoProcess {
        let work = std::env::temp_dir().join(format!("mksgate-demo-{}-{name}", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_mksgate-demo"))
            .args(["--json", "--exit-on-stdin-eof", "--work-dir"])
            .arg(&work)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("starting mksgate-demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(90)).unwrap_or_default();
        let info: DemoInfo = match serde_json::from_str(line.trim()) {
            Ok(i) => i,
            Err(e) => {
                let _ = child.kill();
                panic!("mksgate-demo did not print its JSON line ({e}); got {line:?} (its stderr is above)");
            }
        };
        DemoProcess { child, info, work }
    }

    fn web(&self) -> std::net::SocketAddr {
        self.info
            .page
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }

    fn admin(&self) -> std::net::SocketAddr {
        self.info
            .admin
            .trim_start_matches("http://")
            .parse()
            .unwrap()
    }

    async fn sign(&self, host: &str) -> SignedLink {
        let r = http_request(
            self.web(),
            "GET",
            &format!("/link?host={host}"),
            b"",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `wasmcustom.mksgate.decision.<code>` from Envoy's admin.
    async fn decision_count(&self, code: &str) -> u64 {
        let name = format!("wasmcustom.mksgate.decision.{code}");
        let r = http_request(
            self.admin(),
            "GET",
            "/stats?format=json",
            b"",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name.as_str())
            .and_then(|s| s["value"].as_u64())
            .unwrap_or(0)
    }

    /// What the ESXi stand-ins recorded of each console (`/sessions`).
    async fn sessions(&self) -> Vec<serde_json::Value> {
        let r = http_request(self.web(), "GET", "/sessions", b"", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body_text());
        serde_json::from_slice(&r.body).unwrap()
    }

    fn envoy_decisions(&self) -> Vec<serde_json::Value> {
        mksgate_host_tests::demo::web::decisions(Path::new(&self.info.access_log))
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // EOF: the demo stops everything
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.work);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
        if !std::thread::panicking() {
            panic!("mksgate-demo did not exit within 15 s of stdin EOF");
        }
    }
}

/// What `open-console.mjs` reports.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct PageReport {
    ok: bool,
    phase: Option<String>,
    drawn: Option<bool>,
    code: Option<String>,
    status: Option<String>,
    decision: Option<String>,
    stats: Option<serde_json::Value>,
    screenshot: Option<String>,
    typed_screenshot: Option<String>,
    client: Option<String>,
    phase_after_stay: Option<String>,
    wmks_errors: Option<serde_json::Value>,
    error: Option<String>,
    waited_ms: Option<u64>,
    total_ms: Option<u64>,
    console: Vec<String>,
}

/// The page says the gateway refused the link for its signature.
fn assert_shows_bad_signature(r: &PageReport) {
    assert_eq!(r.code.as_deref(), Some("bad_signature"), "{r:?}");
    assert!(
        r.status
            .as_deref()
            .unwrap_or("")
            .contains("bad_signature (HTTP 403)"),
        "{:?}",
        r.status
    );
}

/// Run the playwright driver (bounded: 90 s, then its process group dies).
fn open_in_chromium(
    url: &str,
    spki: &str,
    expect: &str,
    shot: &Path,
    extra: &[&str],
) -> PageReport {
    let demo_dir = workspace_root().join("demo");
    let mut driver = Command::new("node");
    driver
        .arg("tests/open-console.mjs")
        .args(["--url", url, "--spki", spki, "--expect", expect])
        .arg("--screenshot")
        .arg(shot)
        .arg("--page-screenshot")
        .arg(shot.with_extension("page.png"))
        .args(["--timeout-ms", "30000"])
        .args(extra)
        .current_dir(&demo_dir);
    let done = run_bounded(&mut driver, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("the browser driver (node): {e}"));
    let (status, out, err) = (done.status, done.stdout, done.stderr);
    let last = out.lines().last().unwrap_or("");
    let report: PageReport = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("the browser driver printed no report ({e}; exit {status}):\nstdout: {out}\nstderr: {err}")
    });
    eprintln!("browser report ({expect}): {report:?}");
    report
}

/// Distinct colours and luminance standard deviation of a PNG.
fn png_stats(path: &Path) -> (u32, u32, usize, f64) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..frame.buffer_size()];
    let channels = match frame.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    let mut colours = BTreeSet::new();
    let (mut sum, mut sum_sq) = (0f64, 0f64);
    let n = bytes.len() / channels;
    for px in bytes.chunks(channels) {
        colours.insert((px[0], px[1], px[2]));
        let y = 0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
        sum += y;
        sum_sq += y * y;
    }
    let mean = sum / n as f64;
    let sd = (sum_sq / n as f64 - mean * mean).max(0.0).sqrt();
    (frame.width, frame.height, colours.len(), sd)
}

fn assert_not_blank(path: &Path) -> (u32, u32, usize, f64) {
    let (w, h, colours, sd) = png_stats(path);
    assert!(
        w >= 320 && h >= 200,
        "{}: {w}x{h} is too small for a console",
        path.display()
    );
    assert!(
        colours >= 2 && sd > 5.0,
        "{} looks blank: {colours} colours, luminance sd {sd:.1}",
        path.display()
    );
    (w, h, colours, sd)
}

/// Element screenshots may gain a row or column from sub-pixel layout.
fn about(canvas: u64, screenshot: u32) -> bool {
    canvas.abs_diff(u64::from(screenshot)) <= 2
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The default console (QEMU when installed, as `make demo` runs it) draws
/// in Chromium, and typed keys reach the VM.
#[test]
fn console_draws_in_chromium_through_the_gateway() {
    require_browser_tools();
    let _one = serial();
    let rt = runtime();
    let started = Instant::now();
    let demo = DemoProcess::start("console", &[]);
    let console = &demo.info.consoles[0];
    eprintln!(
        "demo up in {:?}; {} -> {} ({})",
        started.elapsed(),
        console.host,
        console.kind,
        console.detail
    );
    if let Some(why) = &console.fallback_reason {
        eprintln!("NOTE: the test pattern stands in for QEMU: {why}");
    }
    let admitted_before = rt.block_on(demo.decision_count("admitted"));
    let shot = out_dir().join("console.png");
    let typing = console.kind == "qemu";
    // The VM's own screen (banner, colour bars) has 10 colours; SeaBIOS's
    // grey-on-black boot messages before it have 2 or 3. Typing starts once
    // the boot sector's screen is up, so the change seen after it is the
    // typed text.
    let extra: &[&str] = if typing {
        &["--type", "mksgate", "--min-colours", "6"]
    } else {
        &["--min-colours", "20"]
    };
    let r = open_in_chromium(
        &demo.info.page_url,
        &demo.info.gateway_spki_sha256,
        "drawn",
        &shot,
        extra,
    );
    assert!(
        r.ok,
        "the console did not draw within 30 s: phase {:?}, status {:?}, decision {:?}, error {:?}, browser console {:?}",
        r.phase, r.status, r.decision, r.error, r.console
    );
    assert_eq!(r.code.as_deref(), Some("admitted"), "{:?}", r.decision);
    let (w, h, colours, sd) = assert_not_blank(&shot);
    eprintln!(
        "screenshot {} ({w}x{h}, {colours} colours, luminance sd {sd:.1}); connected and drawn after {} ms",
        shot.display(),
        r.waited_ms.unwrap_or(0)
    );
    let stats = r.stats.unwrap();
    assert!(
        about(stats["width"].as_u64().unwrap(), w) && about(stats["height"].as_u64().unwrap(), h),
        "the screenshot ({w}x{h}) is not the console canvas ({stats})"
    );
    if typing {
        // The boot sector echoes keys: the console changed after typing.
        let typed = PathBuf::from(r.typed_screenshot.expect("typed screenshot"));
        assert_not_blank(&typed);
        assert_ne!(
            std::fs::read(&typed).unwrap(),
            std::fs::read(&shot).unwrap(),
            "typing into the console changed nothing on screen ({})",
            typed.display()
        );
        eprintln!("after typing: {}", typed.display());
    }
    // Envoy counted exactly one more admitted console, with a decision line.
    assert_eq!(
        rt.block_on(demo.decision_count("admitted")),
        admitted_before + 1
    );
    let last = demo.envoy_decisions().pop().expect("a decision line");
    assert_eq!(last["code"], "admitted");
    assert_eq!(last["host"], console.host.as_str());
    eprintln!("total {:?}", started.elapsed());
}

/// The fallback console (the built-in RFB test pattern, used when QEMU is
/// absent) draws in Chromium too.
#[test]
fn fallback_test_pattern_draws_in_chromium() {
    require_browser_tools();
    let _one = serial();
    let demo = DemoProcess::start("pattern", &["--console", "pattern"]);
    assert_eq!(demo.info.consoles[0].kind, "pattern");
    let shot = out_dir().join("pattern.png");
    let r = open_in_chromium(
        &demo.info.page_url,
        &demo.info.gateway_spki_sha256,
        "drawn",
        &shot,
        &["--min-colours", "20"],
    );
    assert!(r.ok, "the test pattern did not draw: {r:?}");
    let (w, h, colours, _) = assert_not_blank(&shot);
    assert!(
        about(640, w) && about(400, h),
        "{w}x{h} is not the 640x400 test pattern"
    );
    assert!(colours > 20, "{colours} colours: not the test pattern");
}

/// A link whose signature was tampered with: the page reports the refusal
/// with the gateway's code, and Envoy counted `bad_signature` (not admitted).
/// The refusal burns nothing: the genuine link still opens afterwards.
#[test]
fn tampered_link_is_refused_and_the_page_says_why() {
    require_browser_tools();
    let _one = serial();
    let rt = runtime();
    let demo = DemoProcess::start("tampered", &["--console", "pattern"]);
    let host = demo.info.consoles[0].host.clone();
    let genuine = rt.block_on(demo.sign(&host));
    let tampered = tamper_signature(&genuine.link).unwrap();
    let bad_before = rt.block_on(demo.decision_count("bad_signature"));
    let admitted_before = rt.block_on(demo.decision_count("admitted"));
    let decisions_before = demo.envoy_decisions().len();

    let shot = out_dir().join("tampered.png");
    let r = open_in_chromium(
        &page_url(&demo.info.page, &tampered),
        &demo.info.gateway_spki_sha256,
        "refused",
        &shot,
        &[],
    );
    assert!(r.ok, "the page did not report a refusal: {r:?}");
    assert_eq!(r.phase.as_deref(), Some("refused"));
    assert_shows_bad_signature(&r);
    eprintln!("page: {}", shot.with_extension("page.png").display());

    // Envoy's own record of that attempt.
    assert_eq!(
        rt.block_on(demo.decision_count("bad_signature")),
        bad_before + 1
    );
    assert_eq!(
        rt.block_on(demo.decision_count("admitted")),
        admitted_before
    );
    let new: Vec<_> = demo.envoy_decisions().split_off(decisions_before);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["code"], "bad_signature");
    assert_eq!(new[0]["status"], 403);

    // The genuine link was not used up by the forgery.
    let r = open_in_chromium(
        &genuine.page_url,
        &demo.info.gateway_spki_sha256,
        "drawn",
        &out_dir().join("genuine-after-tampered.png"),
        &[],
    );
    assert!(
        r.ok,
        "the genuine link did not open after the tampered one: {r:?}"
    );
    assert_eq!(
        rt.block_on(demo.decision_count("admitted")),
        admitted_before + 1
    );
}

/// Without a browser: the demo's link carries RFB end to end (the stand-in
/// bridges `/ticket/<t>` to the console server), the demo page's origin is
/// the allowed one, the shipped portal origin is not, and links are one-time.
#[test]
fn demo_link_carries_rfb_and_checks_origin_and_replay() {
    let _one = serial();
    let rt = runtime();
    let demo = DemoProcess::start("rfb", &["--console", "pattern"]);
    rt.block_on(async {
        // The demo page carries a link in its own URL (`?link=`), so it must
        // never hand that URL on as a Referer (SECURITY.md, link leakage).
        let page = http_request(demo.web(), "GET", "/", b"", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

        let link = demo.sign(&demo.info.consoles[0].host).await;
        let opts = |origin: &str| {
            ClientOpts::new()
                .header("Origin", origin)
                .protocols(&["binary"])
        };
        let r = connect(&link.link, &opts("https://portal.example.com"))
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (403, "origin_not_allowed\n")
        );

        let mut s = connect(&link.link, &opts(&demo.info.origin))
            .await
            .unwrap()
            .session()
            .unwrap();
        assert_eq!(s.subprotocol.as_deref(), Some("binary"));
        let first = tokio::time::timeout(Duration::from_secs(10), s.ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first, Message::binary(b"RFB 003.008\n".to_vec()));

        let r = connect(&link.link, &opts(&demo.info.origin))
            .await
            .unwrap()
            .refusal()
            .unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (403, "replayed\n"));
    });
}

/// VMware's HTML console (wmks 2.1.0) on the demo's QEMU VM, through the
/// gateway: it draws, typed keys (VMware scan-code events, which the
/// stand-in's bridge turns into QEMU key events) reach the VM and show,
/// and the console stays open. `legacy` runs it in `uint8utf8` mode against
/// stand-ins that accept only that (as VMware Cloud Director's proxy).
fn wmks_draws_types_and_stays_open(name: &str, legacy: bool) {
    require_browser_tools();
    let _one = serial();
    let rt = runtime();
    let args: &[&str] = if legacy {
        &["--console", "qemu", "--protocols", "uint8utf8"]
    } else {
        &["--console", "qemu"]
    };
    let demo = DemoProcess::start(name, args);
    let console = &demo.info.consoles[0];
    assert_eq!(console.kind, "qemu", "{:?}", console.fallback_reason);
    let mode = if legacy {
        "&client=wmks&legacy=1"
    } else {
        "&client=wmks"
    };
    let shot = out_dir().join(format!("{name}.png"));
    let r = open_in_chromium(
        &format!("{}{mode}", demo.info.page_url),
        &demo.info.gateway_spki_sha256,
        "drawn",
        &shot,
        &[
            "--type",
            "mksgate",
            "--min-colours",
            "6",
            "--stay-ms",
            "5000",
        ],
    );
    assert!(
        r.ok,
        "wmks: phase {:?} (after the stay: {:?}), status {:?}, error {:?}, wmks errors {:?}, browser console {:?}",
        r.phase, r.phase_after_stay, r.status, r.error, r.wmks_errors, r.console
    );
    assert_eq!(r.client.as_deref(), Some("wmks"));
    assert_eq!(r.code.as_deref(), Some("admitted"), "{:?}", r.decision);
    assert_eq!(r.phase_after_stay.as_deref(), Some("connected"));
    assert_not_blank(&shot);
    let typed = PathBuf::from(r.typed_screenshot.expect("typed screenshot"));
    assert_ne!(
        std::fs::read(&typed).unwrap(),
        std::fs::read(&shot).unwrap(),
        "typing into wmks changed nothing on screen ({})",
        typed.display()
    );
    // What ESXi (the stand-in) saw: wmks offered its subprotocols, the
    // session ran in the one asked for, and the keys came as VMware
    // scan-code events (subtype 0), each translated; the session is open.
    let sessions = rt.block_on(demo.sessions());
    let s = sessions
        .iter()
        .find(|s| s["status"] == 101)
        .unwrap_or_else(|| panic!("no console session: {sessions:?}"));
    eprintln!("wmks session as ESXi saw it: {s}");
    let offered: Vec<&str> = s["offered_protocols"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        offered.contains(&"binary") && offered.contains(&"vmware-vvc"),
        "{offered:?}"
    );
    let want = if legacy { "uint8utf8" } else { "binary" };
    assert_eq!(s["subprotocol"], want);
    if legacy {
        assert!(offered.contains(&"uint8utf8"), "{offered:?}");
        // Cloud Director's console-proxy handshake ran first.
        assert_eq!(
            s["vmx_path"],
            "[datastore1] mksgate-demo-vm/mksgate-demo-vm.vmx"
        );
    }
    let keys = s["vmware_messages"]["0"].as_u64().unwrap_or(0);
    assert!(
        keys >= 2 * "mksgate".len() as u64,
        "scan-code key events: {s}"
    );
    assert!(s["vmware_translated"].as_u64().unwrap() >= keys, "{s}");
    // It ended only when the browser closed (after the stay), never from
    // the VNC server's side.
    let end = s["end"].as_str().unwrap_or("open");
    assert!(
        end == "open" || end.starts_with("closed by peer") || end == "peer went away",
        "the console ended from the server's side: {s}"
    );
    eprintln!("wmks ({want}): {} and {}", shot.display(), typed.display());
}

#[test]
fn wmks_console_draws_types_and_stays_open() {
    wmks_draws_types_and_stays_open("wmks", false);
}

#[test]
fn wmks_in_uint8utf8_mode_draws_types_and_stays_open() {
    wmks_draws_types_and_stays_open("wmks-legacy", true);
}

/// A tampered link in wmks: refused by the gateway, and the page says why.
#[test]
fn wmks_tampered_link_is_refused_and_the_page_says_why() {
    require_browser_tools();
    let _one = serial();
    let rt = runtime();
    let demo = DemoProcess::start("wmks-tampered", &["--console", "pattern"]);
    let host = demo.info.consoles[0].host.clone();
    let genuine = rt.block_on(demo.sign(&host));
    let tampered = tamper_signature(&genuine.link).unwrap();
    let shot = out_dir().join("wmks-tampered.png");
    let r = open_in_chromium(
        &format!("{}&client=wmks", page_url(&demo.info.page, &tampered)),
        &demo.info.gateway_spki_sha256,
        "refused",
        &shot,
        &[],
    );
    assert!(r.ok, "the wmks page did not report a refusal: {r:?}");
    assert_eq!(r.client.as_deref(), Some("wmks"));
    assert_shows_bad_signature(&r);
    assert!(
        rt.block_on(demo.sessions()).is_empty(),
        "nothing reached ESXi"
    );
}
