#!/usr/bin/env bash
# The wire fuzzer, long: seeded HTTP/1.1 request heads against each shipped
# layout (static-clusters, dynamic, rotation) in real Envoy with the shipped
# module, REQUESTS per layout (default 12000; about 85/s, under the shipped
# handshake rate limit, so each reaches the filter). `make test` runs 600 per
# layout. Prints each layout's seed and reply tally; fails if a VM trapped
# or a worker stopped admitting valid links.
#
#   scripts/fuzz-wire.sh [REQUESTS]
#   MKSGATE_WIRE_FUZZ_SEED=<seed> scripts/fuzz-wire.sh 600   # replay a run
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-12000}
if ! [[ "$REQUESTS" =~ ^[0-9]+$ ]] || [ "$REQUESTS" -lt 1 ]; then
  echo "usage: scripts/fuzz-wire.sh [REQUESTS]" >&2
  exit 2
fi
LOG=target/fuzz-wire.log
mkdir -p target
status=0
MKSGATE_WIRE_FUZZ_REQUESTS=$REQUESTS cargo test --quiet -p mksgate-host-tests \
  --test e2e_hostile_bytes wire_fuzz -- --nocapture --test-threads=3 >"$LOG" 2>&1 || status=$?
grep -E '^(wire fuzz|test |thread|test result)' "$LOG" || true
if [ "$status" -ne 0 ]; then
  echo "fuzz-wire: FAILED (exit $status); the full log, Envoy's included: $LOG" >&2
  exit "$status"
fi
