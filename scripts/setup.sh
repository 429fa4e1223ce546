#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently, into the
# project (./.tools) or the Rust toolchain. Called by `make build`, `make test`,
# `make demo` and .ci/run, so a fresh machine needs nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS"

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi

# shellcheck source=lib/envoy.sh
. "$ROOT/scripts/lib/envoy.sh"
install_envoy "$ENVOY_NEWEST" "$(envoy_version_dir "$ENVOY_NEWEST")"

# Everything below installs only what is missing, so a second run is fast.
# shellcheck source=lib/apt.sh
. "$ROOT/scripts/lib/apt.sh"

# The portal snippets of docs/portal.md, run by host-tests/tests/e2e_interop.rs:
# PyJWT (docs/portal/requirements.txt) into .tools/python (the tests set
# PYTHONPATH to it), jose (docs/portal/package-lock.json) into
# docs/portal/node_modules. Each is reinstalled only when its pin changed
# (the stamp is a copy of the pin file taken after the last install).
PORTAL="$ROOT/docs/portal"
PY_TOOLS="$TOOLS/python"
if ! cmp -s "$PORTAL/requirements.txt" "$PY_TOOLS/.mksgate-installed-requirements.txt" \
  || [ ! -f "$PY_TOOLS/jwt/__init__.py" ]; then
  rm -rf "$PY_TOOLS"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore \
    --target "$PY_TOOLS" -r "$PORTAL/requirements.txt"
  cp "$PORTAL/requirements.txt" "$PY_TOOLS/.mksgate-installed-requirements.txt"
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs and npm (Debian)"
  apt_install nodejs npm ||
    echo "setup: WARNING: no npm; the Node portal snippet test will fail" >&2
fi
PORTAL_LOCK="$PORTAL/package-lock.json"
[ -f "$PORTAL_LOCK" ] || PORTAL_LOCK="$PORTAL/package.json"
if command -v npm >/dev/null 2>&1 && {
  ! cmp -s "$PORTAL_LOCK" "$PORTAL/node_modules/.mksgate-installed-lock.json" \
    || [ ! -f "$PORTAL/node_modules/jose/package.json" ]
}; then
  if [ -f "$PORTAL/package-lock.json" ]; then
    npm ci --prefix "$PORTAL" --silent --no-audit --no-fund >/dev/null
  else
    npm install --prefix "$PORTAL" --silent --no-audit --no-fund >/dev/null
  fi
  cp "$PORTAL_LOCK" "$PORTAL/node_modules/.mksgate-installed-lock.json"
fi

# Istio's CRD schemas (@kubernetes-models/istio, pinned by
# tools/crd-check/package-lock.json): shipped_configs.rs checks the Istio kit
# against them. Reinstalled only when the lock changed.
CRD="$ROOT/tools/crd-check"
if command -v npm >/dev/null 2>&1 && {
  ! cmp -s "$CRD/package-lock.json" "$CRD/node_modules/.mksgate-installed-lock.json" \
    || [ ! -f "$CRD/node_modules/@kubernetes-models/istio/package.json" ]
}; then
  npm ci --prefix "$CRD" --silent --no-audit --no-fund >/dev/null
  cp "$CRD/package-lock.json" "$CRD/node_modules/.mksgate-installed-lock.json"
fi

# docker-registry (the CNCF distribution registry): oci_image.rs pushes the
# image to one on loopback and reads the manifest digest back from its API.
if ! command -v docker-registry >/dev/null 2>&1; then
  echo "setup: installing docker-registry (Debian)"
  apt_install docker-registry ||
    echo "setup: WARNING: no docker-registry; host-tests/tests/oci_image.rs will fail" >&2
fi

# etcd (3.4 in Debian): the fleet store's tests run a 3-member cluster on
# loopback (host-tests/tests/e2e_fleet.rs).
if ! command -v etcd >/dev/null 2>&1; then
  echo "setup: installing etcd-server (Debian)"
  apt_install etcd-server ||
    echo "setup: WARNING: no etcd; host-tests/tests/e2e_fleet.rs will fail" >&2
fi

# etcdctl (etcd-client, Debian): deploy/etcd/setup-auth.sh, the shipped
# role for etcd's access control, is run by host-tests/tests/e2e_etcd_auth.rs.
if ! command -v etcdctl >/dev/null 2>&1; then
  echo "setup: installing etcd-client (Debian)"
  apt_install etcd-client ||
    echo "setup: WARNING: no etcdctl; host-tests/tests/e2e_etcd_auth.rs will fail" >&2
fi

# skopeo: host-tests/tests/oci_image.rs checks scripts/oci-image.sh's output
# with it (`skopeo inspect` / `skopeo copy` of the OCI layout).
if ! command -v skopeo >/dev/null 2>&1; then
  echo "setup: installing skopeo (Debian)"
  apt_install skopeo ||
    echo "setup: WARNING: no skopeo; host-tests/tests/oci_image.rs will fail" >&2
fi

# Prometheus (server and promtool, Debian): make test checks the shipped
# rules with promtool and runs a real Prometheus against real Envoy
# (host-tests/tests/e2e_observability.rs). The package's service is not
# used: the tests start their own server on loopback.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "setup: installing prometheus (Debian)"
  apt_install prometheus ||
    echo "setup: WARNING: no prometheus; host-tests/tests/e2e_observability.rs will fail" >&2
fi
