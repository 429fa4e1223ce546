//! BENCHMARKS.md: How the run was measured: systems, pinning, CPU accounting.

use std::fmt::Write;

use super::*;

impl Report<'_> {
    pub(super) fn section_method(&self, w: &mut String) {
        let r = self.r;
        let m = &self.r.meta;
        let c = &self.r.config;
        let _ = writeln!(w, "## How it was measured\n");
        let _ = writeln!(w, "| system | what |\n|---|---|");
        for s in &r.systems {
            let _ = writeln!(w, "| {} | {} |", s.label, s.description);
        }
        let _ = writeln!(w);
        let pin: Vec<String> = r
            .pinning
            .iter()
            .map(|p| format!("{}: CPU {}", p.process, p.cpus_allowed))
            .collect();
        let _ = writeln!(
            w,
            "* **One ESXi stand-in for every system:** `esxi-standin --plain --push-interval-ms 0 --any-ticket --no-request-log` (host-tests): plain `ws://`, accepts any `/ticket/<t>` without using it up (so handshake loops need no ticket round trip), keeps no request log, pushes nothing, echoes every client frame (tag byte `E` + payload).\n\
* **Pinning:** every proxy runs under `taskset -c {}` (Envoy `--concurrency 1`, HAProxy `nbthread 1`); the load generator (one tokio thread) and the stand-in under `taskset -c {}`. Read back from `/proc/<pid>/status` `Cpus_allowed_list` during the run: {}.\n\
* **TLS: none, on either side, for systems 1-5e.** The figure of merit is the proxy's own work; TLS would add the same handshake and record cost to every proxy and dilute every ratio toward 1. Plaintext is the hardest case for the ratio targets. Production runs TLS on both sides (envoy/static-clusters.yaml): systems 2T-5T, \"As deployed\" above.\n\
* **Same for every proxy, all left out on purpose:** TLS and access logs (but for 2T-5T, 4L and 5L), Envoy's handshake rate limits (the shipped 20/s per client would be the figure measured), and Envoy's default circuit breakers (raised so 1,000 sessions fit). Kept as shipped: the HCM settings, timeouts, 64 KiB connection buffer limit, and mksgate's plugin configuration, with its decision line off (`log_decisions: false`: the shipped access log carries the audit; 5c turns the line on).\n\
* **Two ways of sharing CPU 0, both within one run.** *One at a time* (handshakes and the \"as fast as it goes\" stream runs): for each scenario all systems are started fresh (so the one-time-link table starts empty), each gets one {:.1} s warm-up slice, then {} cycles in which every system in turn gets one slice ({:.1} s for handshakes, {:.1} s otherwise) with the load to itself, in table order on odd cycles and reversed on even ones. *All at once* (the CPU figures of the targets: per handshake, per frame, per GB): every proxy is started fresh and loaded at the same time with the same fixed offered load, far below what any of them can carry, and all are measured over the same {} windows of {:.1} s, so machine noise (other tenants, cache, steal) hits them alike and cancels in the ratios. The clients are recreated every window in an order that rotates by one: whichever system's client tasks are spawned first in the (single-threaded) load generator was measured up to 35% cheaper per handshake, so each system leads equally often. Either way a slice or window ends by pausing the clients and waiting for everything in flight, so its count and its CPU cover the same work. The direct system is left out of the all-at-once runs (it has no proxy CPU).\n\
* **CPU** is the proxy process's CPU time over the slice, all threads: {}. It holds whether or not the load generator is the bottleneck. It includes kernel work done in the proxy's context (loopback TCP), about the same for every proxy. \"CPU 1 busy\" is the load generator's plus the stand-in's CPU over the slice: near 100% means CPU 1, not the proxy, limited the rate.\n\
* **Handshake:** paced at {:.0}/s per system (all proxies at once) for the CPU target, and as fast as {:?} concurrent clients go (one system at a time) for rates and latency. Each is a TCP connect, `GET` with `Upgrade: websocket`, `Origin: {}`, `Sec-WebSocket-Protocol: {}`, wait for the `101`, send a close frame, wait for the close reply, drop the socket. Latency is connect to `101`. Direct, HAProxy and Envoy without mksgate get `/ticket/<fresh>?host=vesxi01.sec.lab`; mksgate gets `/console?token=<JWS>`, signed per handshake with `mksgate_core::jws` (HS256, kid 2026-11, the shipped claims: host, ticket, iat, exp = now + {} s, fresh jti, aud, iss, sub), one-time links on.\n\
* **Console stream:** {} sessions, each sends a {}-byte binary frame and waits for its echo before sending the next, so each frame is its own read at the proxy in each direction; paced at {:.0} round trips/s per system for the CPU figures. CPU per frame = CPU ÷ (2 × round trips). Per GB counts payload both ways.\n\
* **Bulk:** {} sessions sending {}-byte frames, at most {} in flight per session, echoed; paced at {:.0} MB/s per system (both directions) for the CPU figure. MB/s and per GB count payload both ways.\n\
* **Memory:** {} sessions opened and left idle (pings answered), proxy VmRSS before and with them (`/proc/<pid>/status`). Per-worker VM memory: Envoy RSS at `--concurrency` {:?} after 1 s of handshakes (so every worker's VM has served requests) and 1 s idle, with and without the module; the slope is a least-squares fit. Load time: spawn to admin `/ready` = LIVE, {} times per configuration, median.\n",
            c.proxy_cpu,
            c.loadgen_cpu,
            pin.join("; "),
            c.warmup_s,
            c.cycles,
            c.handshake_slice_s,
            c.slice_s,
            c.stream_cycles,
            c.window_s,
            if m.cpu_source.is_empty() {
                format!("utime + stime from `/proc/<pid>/stat` ({} ticks/s)", m.clock_ticks_per_s)
            } else {
                format!("`{}`", m.cpu_source)
            },
            c.hs_rate,
            c.handshake_levels,
            crate::scenario::ORIGIN,
            crate::scenario::WMKS_PROTOCOLS,
            c.link_ttl_s,
            c.frames_sessions,
            c.frames_bytes,
            c.frames_rate,
            c.bulk_sessions,
            c.bulk_bytes,
            c.bulk_window,
            c.bulk_rate_mb,
            c.idle_sessions,
            c.vm_memory_concurrency,
            c.load_time_reps,
        );
    }
}
