//! The demo's web server (plain HTTP on loopback, one request per
//! connection):
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the demo page (`demo/www/index.html`; it reads `?link=`) |
//! | `GET /<file>` | other files of `demo/www/` |
//! | `GET /novnc/<path>` | noVNC (`demo/node_modules/@novnc/novnc/`) |
//! | `GET /link?host=<h>` | JSON [`super::SignedLink`]: a fresh ticket and signed link |
//! | `GET /decisions?after=<n>` | JSON `{"count": N, "decisions": [...]}`: the gateway's decision log lines (from Envoy's log) after the first `n` |
//!
//! Files are read at each request, so editing the page needs no restart.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::State;
use crate::io::{read_head, reason};

/// What a demo page's server answers: one reply per request target.
pub(crate) trait Site: Send + Sync + 'static {
    fn route(&self, target: &str) -> impl std::future::Future<Output = Reply> + Send;
}

impl Site for State {
    async fn route(&self, target: &str) -> Reply {
        route(target, self).await
    }
}

/// Accept loop; runs until aborted (connections end with it).
pub(crate) async fn serve<S: Site>(listener: TcpListener, site: Arc<S>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    let st = site.clone();
                    conns.spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(30), conn(sock, st)).await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

pub(crate) struct Reply {
    status: u16,
    ctype: &'static str,
    body: Vec<u8>,
}

impl Reply {
    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ctype: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }

    pub(crate) fn json(v: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec_pretty(v) {
            Ok(body) => Reply {
                status: 200,
                ctype: "application/json",
                body,
            },
            Err(e) => Reply::text(500, &format!("{e}\n")),
        }
    }
}

async fn conn<S: Site>(sock: TcpStream, site: Arc<S>) -> Result<()> {
    let mut reader = BufReader::new(sock);
    let Some(head) = read_head(&mut reader).await? else {
        return Ok(());
    };
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hdrs);
    let reply = match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or("");
            let target = req.path.unwrap_or("/");
            if method == "GET" || method == "HEAD" {
                site.route(target).await
            } else {
                Reply::text(405, "method not allowed\n")
            }
        }
        _ => Reply::text(400, "bad request\n"),
    };
    let head_only = req.method == Some("HEAD");
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\nconnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.ctype,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&reply.body);
    }
    let mut sock = reader.into_inner();
    sock.write_all(&out).await?;
    sock.shutdown().await?;
    Ok(())
}

/// Split `target` into path and query parameters (percent-decoded).
pub(crate) fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), params)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hexval(h).is_some() && hexval(l).is_some() => {
                let v = hexval(h).unwrap_or(0) * 16 + hexval(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn route(target: &str, state: &State) -> Reply {
    let (path, params) = split_target(target);
    match path.as_str() {
        "/link" => {
            let host = param(&params, "host").unwrap_or(crate::shipped::STATIC_HOSTS[0].0);
            match state.sign(host) {
                Ok(l) => Reply::json(&l),
                Err(e) => Reply::text(400, &format!("{e:#}\n")),
            }
        }
        "/decisions" => {
            let after = param(&params, "after")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            let all = decisions(&state.access_log);
            let count = all.len();
            let newer: Vec<_> = all.into_iter().skip(after.min(count)).collect();
            Reply::json(&serde_json::json!({"count": count, "decisions": newer}))
        }
        // What the ESXi stand-ins saw of each console (subprotocols offered
        // and chosen, VMware messages translated, how it ended); never a
        // ticket or a path.
        "/sessions" => Reply::json(
            &state
                .standins
                .iter()
                .flat_map(|s| s.requests())
                .map(|r| {
                    serde_json::json!({
                        "offered_protocols": r.offered_protocols,
                        "subprotocol": r.subprotocol,
                        "status": r.status,
                        "vmware_messages": r.vmware_messages,
                        "vmware_translated": r.vmware_translated,
                        "vmx_path": r.vmx_path,
                        "bytes_from_client": r.bytes_from_client,
                        "end": r.end,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        "/hosts" => Reply::json(
            &state
                .standins
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>(),
        ),
        "/" => file(&state.www.join("index.html")),
        p => {
            let vendored = [("/novnc/", &state.novnc), ("/wmks/", &state.wmks)];
            if let Some((rest, dir)) = vendored
                .iter()
                .find_map(|(prefix, dir)| Some((p.strip_prefix(prefix)?, *dir)))
            {
                match safe_join(dir, rest) {
                    Some(f) => file(&f),
                    None => Reply::text(404, "not found\n"),
                }
            } else {
                match safe_join(&state.www, p.trim_start_matches('/')) {
                    Some(f) => file(&f),
                    None => Reply::text(404, "not found\n"),
                }
            }
        }
    }
}

/// `base/rel` if `rel` is a plain relative path (no `..`, no root).
pub(crate) fn safe_join(base: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(base.join(rel))
}

pub(crate) fn file(path: &Path) -> Reply {
    let ctype = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    };
    match std::fs::read(path) {
        Ok(body) => Reply {
            status: 200,
            ctype,
            body,
        },
        Err(_) => Reply::text(404, "not found\n"),
    }
}

/// The filter's decisions, oldest first, from the access log (Envoy's
/// stdout): one record per decision, with `code` and `status`.
pub fn decisions(access_log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(access_log).unwrap_or_default();
    crate::access_log::decisions(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        let (p, q) = split_target("/link?host=vesxi02.sec.lab&x=a%20b+c");
        assert_eq!(p, "/link");
        assert_eq!(param(&q, "host"), Some("vesxi02.sec.lab"));
        assert_eq!(param(&q, "x"), Some("a b c"));
        assert_eq!(param(&q, "y"), None);
    }

    #[test]
    fn paths_cannot_escape() {
        let base = Path::new("/srv");
        assert_eq!(
            safe_join(base, "core/rfb.js"),
            Some(PathBuf::from("/srv/core/rfb.js"))
        );
        assert_eq!(safe_join(base, "../etc/passwd"), None);
        assert_eq!(safe_join(base, "core/../../x"), None);
        assert_eq!(safe_join(base, "/etc/passwd"), None);
        assert_eq!(safe_join(base, ""), None);
    }

    #[test]
    fn decisions_are_read_from_the_access_log() {
        let dir = std::env::temp_dir().join(format!("mksgate-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("stdout-stderr.log");
        std::fs::write(
            &log,
            "[x][info][main] other\n\
             {\"event\":\"DownstreamEnd\",\"decision\":\"bad_signature\",\"status\":403}\n",
        )
        .unwrap();
        let d = decisions(&log);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (&d[0]["code"], &d[0]["status"]),
            (&"bad_signature".into(), &403.into())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
