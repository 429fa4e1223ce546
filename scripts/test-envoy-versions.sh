#!/usr/bin/env bash
# The Envoy version matrix (README, "Supported versions"): the core of the
# end-to-end suite on each Envoy release of scripts/lib/envoy.sh, each
# installed into .tools/envoy-versions/ by scripts/setup-envoys.sh.
#   scripts/test-envoy-versions.sh                 every version, the full core
#   scripts/test-envoy-versions.sh --short V...    the short core on V...
# First each build is probed: `envoy --mode validate` of a bootstrap that
# loads the shipped module. A build that cannot load wasm at all ("Envoy
# was compiled without support for it", PyPI's 1.38.3) is reported as
# "cannot load wasm", runs no suite, and does not fail the target; a suite
# that fails on a build that loads wasm does. The table goes to stdout and
# to target/envoy-matrix.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=lib/envoy.sh
. "$ROOT/scripts/lib/envoy.sh"

# The core: admission and refusals with the access-log audit and one-time
# links (e2e_decisions), key scopes, hostile bytes, the fleet store in etcd,
# etcd's access control and answer bound, console lifetimes, the Istio shape through ECDS, the fair-share limits, and every shipped
# layout through `envoy --mode validate` (shipped_configs).
FULL=(e2e_decisions e2e_key_scope e2e_hostile_bytes e2e_fleet e2e_etcd_auth e2e_store_answer_size e2e_console_lifetime e2e_istio_shape e2e_fair_share shipped_configs)
SHORT=(e2e_decisions e2e_key_scope e2e_fleet e2e_istio_shape shipped_configs)
suites=("${FULL[@]}")
if [ "${1:-}" = "--short" ]; then
  suites=("${SHORT[@]}")
  shift
fi
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${ENVOY_VERSIONS[@]}")

scripts/setup-envoys.sh "${versions[@]}" >/dev/null
MODULE="$ROOT/target/mksgate/mksgate_filter.wasm"
[ -f "$MODULE" ] || { echo "no $MODULE: run make build" >&2; exit 1; }
# Build the tests once, before the clock starts on any version.
cargo test --quiet -p mksgate-host-tests --no-run $(printf -- '--test %s ' "${suites[@]}") >/dev/null 2>&1 ||
  cargo test -p mksgate-host-tests --no-run $(printf -- '--test %s ' "${suites[@]}")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The probe: the shipped module with a minimal valid plugin configuration.
write_wasm_probe "$WORK/probe.yaml" "$MODULE"

mkdir -p target
TABLE="$ROOT/target/envoy-matrix.md"
{
  printf '| Envoy | wasm |'
  printf ' %s |' "${suites[@]}"
  printf '\n|---|---|'
  printf -- '---|%.0s' "${suites[@]}"
  printf '\n'
} >"$TABLE"
failed=0
started=$(date +%s)
for v in "${versions[@]}"; do
  bin="$(envoy_version_dir "$v")/envoy/_bin/envoy"
  probe_log="$WORK/probe-$v.log"
  if "$bin" --mode validate -c "$WORK/probe.yaml" --log-level info >"$probe_log" 2>&1; then
    row="| $v | loads |"
    for s in "${suites[@]}"; do
      t0=$(date +%s)
      log="$ROOT/target/envoy-matrix-$v-$s.log"
      if ENVOY_BIN="$bin" MKSGATE_EXPECT_ENVOY="$v" cargo test --quiet -p mksgate-host-tests --test "$s" >"$log" 2>&1; then
        row="$row pass ($(( $(date +%s) - t0 )) s) |"
      else
        row="$row **FAIL** ($(( $(date +%s) - t0 )) s, $(basename "$log")) |"
        failed=1
      fi
      echo "envoy $v: $s done" >&2
    done
  elif grep -q "compiled without support" "$probe_log"; then
    row="| $v | **cannot load wasm** (\"Envoy was compiled without support for it\") |"
    row="$row$(printf ' — |%.0s' "${suites[@]}")"
  else
    row="| $v | **probe failed** (see below) |$(printf ' — |%.0s' "${suites[@]}")"
    tail -5 "$probe_log" >&2
    failed=1
  fi
  echo "$row" >>"$TABLE"
done
echo >>"$TABLE"
echo "Matrix run: $(( $(date +%s) - started )) s on $(nproc) cores, module $(sha256sum "$MODULE" | cut -c1-12), $(date -u +%Y-%m-%dT%H:%MZ)." >>"$TABLE"
cat "$TABLE"
exit "$failed"
