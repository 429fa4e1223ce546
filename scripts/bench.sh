#!/usr/bin/env bash
# The benchmark of issue 5 (`make bench`): mksgate against the direct path,
# HAProxy's WebMKS jump-host recipe, Envoy without a filter, and Envoy with
# the do-nothing proxy-wasm filter, in one run, all in front of the same
# ESXi stand-in on loopback. Writes:
#   bench/results/latest.json      every measurement (bench/loadgen/src/results.rs)
#   bench/results/benchmarks.svg   the plot
#   BENCHMARKS.md                  tables, ratios, targets MET/MISSED
#
#   scripts/bench.sh                  full run (about 8 minutes on 2 CPUs)
#   BENCH_QUICK=1 scripts/bench.sh    smoke run (about 2 minutes); writes to
#                                     target/bench/quick/ and leaves the
#                                     committed results alone
#
# Knobs (environment; defaults in bench/loadgen/src/suite.rs):
#   BENCH_CYCLES, BENCH_SLICE_S, BENCH_HS_SLICE_S, BENCH_WARMUP_S   one-at-a-time cycles (4; 2 s, 1.5 s for handshakes)
#   BENCH_STREAM_CYCLES, BENCH_WINDOW_S           all-at-once windows for the CPU per frame/GB figures (10 x 3 s)
#   BENCH_FRAMES_RATE, BENCH_BULK_RATE_MB          their offered load per system (2000 round trips/s, 100 MB/s)
#   BENCH_SCENARIOS                               subset of: handshake,frames,frames-max,bulk,bulk-max,idle,vm-memory,load-time
#   BENCH_LEVELS                                  handshake concurrency levels (1,16,64)
#   BENCH_FRAMES_SESSIONS, BENCH_FRAMES_BYTES     console traffic (16 sessions, 64 bytes)
#   BENCH_BULK_SESSIONS, BENCH_BULK_BYTES, BENCH_BULK_WINDOW   bulk (4 x 1 MiB x 4 in flight)
#   BENCH_IDLE_SESSIONS                           idle sessions for RSS (1000)
#   BENCH_LINK_TTL_S                              lifetime of the signed links (60)
#   BENCH_LOAD_REPS, BENCH_VM_CONCURRENCY         start-up timing, per-worker memory
#   BENCH_SYSTEMS                                 subset, e.g. "envoy,noop,mksgate"
#   ENVOY_BIN, HAPROXY_BIN                        other binaries
#
# Pinning: the load generator (and the stand-in it starts) run on CPU 1, and
# it starts every proxy under `taskset -c 0`. Every process it starts is in
# its own process group and dies with it (PR_SET_PDEATHSIG); this script
# ends the load generator on exit or interrupt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
START=$(date +%s)

quick=${BENCH_QUICK:-0}
if [ "$quick" != "0" ] && [ -n "$quick" ]; then
  OUT_DIR="$ROOT/target/bench/quick"
  JSON="$OUT_DIR/latest.json"
  MD="$OUT_DIR/BENCHMARKS.md"
  SVG="$OUT_DIR/benchmarks.svg"
else
  JSON="$ROOT/bench/results/latest.json"
  MD="$ROOT/BENCHMARKS.md"
  SVG="$ROOT/bench/results/benchmarks.svg"
fi
mkdir -p "$(dirname "$JSON")" "$(dirname "$SVG")"

# HAProxy from Debian, only if missing.
if [ -z "${HAPROXY_BIN:-}" ] && [ ! -x /usr/sbin/haproxy ]; then
  echo "== installing haproxy (Debian package)"
  # shellcheck source=lib/apt.sh
  . "$ROOT/scripts/lib/apt.sh"
  apt_install haproxy
fi

# etcd from Debian (system 5e, the fleet store), only if missing.
if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd-server (Debian package)"
  # shellcheck source=lib/apt.sh
  . "$ROOT/scripts/lib/apt.sh"
  apt_install etcd-server
fi

echo "== building the stand-in and the load generator"
cargo build --quiet --release -p mksgate-host-tests --bin esxi-standin
cargo build --quiet --release -p mksgate-loadgen
echo "== building the modules (shipped and raw, in target/mksgate/)"
scripts/build-module.sh all

# 1,000 idle sessions need about 3,000 descriptors across the processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

LOADGEN="$ROOT/target/release/mksgate-loadgen"
pin=()
if command -v taskset >/dev/null && taskset -c 1 true 2>/dev/null; then
  pin=(taskset -c 1)
else
  echo "bench: taskset or CPU 1 unavailable: running unpinned (BENCHMARKS.md shows the CPUs each process was allowed)" >&2
fi

echo "== running the suite (progress below; BENCH_QUICK=$quick)"
lg_pid=""
cleanup() {
  if [ -n "$lg_pid" ] && kill -0 "$lg_pid" 2>/dev/null; then
    kill -TERM "$lg_pid" 2>/dev/null || true
    wait "$lg_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
"${pin[@]}" "$LOADGEN" suite --out "$JSON" &
lg_pid=$!
wait "$lg_pid"
lg_pid=""

"$LOADGEN" report --in "$JSON" --md "$MD" --svg "$SVG"
echo "== done in $(($(date +%s) - START)) s: $MD, $SVG, $JSON"
