//! Shared by the integration tests: where the modules are, and a small Envoy
//! runner (own process group, killed on drop even during a panic).

#![cfg(test)]
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mksgate_testkit::envoy::{EnvoyOpts, EnvoyProcess};
use mksgate_testkit::http;
use mksgate_testkit::template::MinimalWasm;

/// The exports every shipped module has, exactly.
pub const SHIPPED_EXPORTS: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_abi_version_0_2_1",
    "proxy_on_memory_allocate",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_request_headers",
    "proxy_on_http_call_response",
    "proxy_on_tick",
    "proxy_on_done",
    "proxy_on_delete",
];

/// Callbacks the SDK exports that a shipped module must not.
pub const REMOVED_CALLBACKS: &[&str] = &[
    "proxy_on_log",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_queue_ready",
    "proxy_on_foreign_function",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
];

pub use mksgate_testkit::paths::module_dir;

/// `<name>.wasm` (shipped) or `<name>.raw.wasm`, read; a failure that says
/// how to make it if it is not there.
pub fn module(file: &str) -> (PathBuf, Vec<u8>) {
    let path = module_dir().join(file);
    match std::fs::read(&path) {
        Ok(bytes) => (path, bytes),
        Err(e) => panic!(
            "{}: {e}: run `scripts/build-module.sh all` first",
            path.display()
        ),
    }
}

pub fn export_names(wasm: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = mksgate_wasm_post::exports(wasm)
        .expect("parse exports")
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

/// The shipped module, checked to be the processed one (a plain `cargo
/// build` puts cargo's raw output back in its place).
pub fn shipped(name: &str) -> PathBuf {
    let (path, bytes) = module(&format!("{name}.wasm"));
    let names = export_names(&bytes);
    let mut want: Vec<String> = SHIPPED_EXPORTS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        names,
        want,
        "{} is not the processed module: run `scripts/build-module.sh all`",
        path.display()
    );
    path
}

// ---- Envoy ----

/// The smallest bootstrap that runs `module` as an HTTP filter with
/// `plugin_config`, in front of a route that answers `200 routed\n` itself.
pub fn config(module: &Path, vm: &str, plugin_config: &str) -> String {
    config_with_upstream(module, vm, plugin_config, None)
}

/// [`config`], plus (with `Some(port)`) a route for `/ws` to an upstream on
/// 127.0.0.1:`port`.
pub fn config_with_upstream(
    module: &Path,
    vm: &str,
    plugin_config: &str,
    upstream: Option<u16>,
) -> String {
    MinimalWasm {
        plugin_config: Some(plugin_config),
        ws_upstream: upstream,
        ..MinimalWasm::new(module, vm)
    }
    .render()
}

/// A running Envoy (the testkit's: own directory, own process group,
/// killed on drop), with its one listener found.
pub struct Envoy {
    process: EnvoyProcess,
    pub admin: SocketAddr,
    pub listener: SocketAddr,
}

impl Envoy {
    pub fn start(config_yaml: &str) -> Envoy {
        Envoy::start_with(config_yaml, &[])
    }

    /// [`Envoy::start`] with more command-line arguments.
    pub fn start_with(config_yaml: &str, extra_args: &[&str]) -> Envoy {
        let opts = EnvoyOpts {
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            ready_timeout: Duration::from_secs(30),
            ..EnvoyOpts::default()
        };
        let mut process = EnvoyProcess::spawn(config_yaml, &opts).expect("spawn envoy");
        let admin = process
            .wait_ready(opts.ready_timeout)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let listeners = http::get(admin, "/listeners?format=json").expect("listeners");
        let json: serde_json::Value =
            serde_json::from_str(&listeners.body).expect("listeners json");
        let port = json["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .unwrap_or_else(|| panic!("no listener port in {}", listeners.body));
        let listener = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("port")));
        Envoy {
            process,
            admin,
            listener,
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> http::Response {
        if let Err(e) = self.process.check_alive() {
            panic!("{e:#}");
        }
        http::request(self.listener, method, path, body, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log()))
    }

    /// The admin `/stats` lines that contain `filter`.
    pub fn stats(&self, filter: &str) -> Vec<String> {
        let r = http::get(self.admin, "/stats").expect("stats");
        r.body
            .lines()
            .filter(|l| l.contains(filter))
            .map(str::to_string)
            .collect()
    }

    pub fn stat(&self, name: &str) -> Option<u64> {
        let prefix = format!("{name}: ");
        self.stats(name)
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
    }

    /// Envoy's log so far (waiting up to 5 s for `needle` to appear).
    pub fn log_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An upstream on 127.0.0.1 that answers every request with `101 Switching
/// Protocols`, then echoes what it receives, until the peer closes. Its
/// threads end with the test process.
pub fn echo_upgrade_upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("upstream addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if conn.write_all(answer).is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// Upgrade `/ws` through Envoy, then send `chunks` messages one at a time,
/// each echoed back before the next, and close.
pub fn upgrade_and_echo(addr: SocketAddr, chunks: usize) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: a.lab\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("send upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
    for i in 0..chunks {
        let message = format!("chunk {i}");
        stream.write_all(message.as_bytes()).expect("send chunk");
        let mut echo = vec![0u8; message.len()];
        stream.read_exact(&mut echo).expect("read echo");
        assert_eq!(echo, message.as_bytes());
    }
}
