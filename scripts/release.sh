#!/usr/bin/env bash
# Builds a release and checks that its parts match (make release):
#   - the version is Cargo.toml's workspace version (semantic, X.Y.Z), and
#     CHANGELOG.md has a section for it;
#   - the module (scripts/build-module.sh) says that version when Envoy
#     loads it (its configure line, read from `envoy --mode validate`);
#   - the CLI (release build) says that version (`mksgate --version`);
#   - the OCI image (scripts/oci-image.sh, tagged with the version) carries
#     exactly that module, byte for byte.
# Everything goes to target/release-<version>/ with SHA256SUMS and
# RELEASE.md (version, commit, module hash, manifest digest for
# WasmPlugin.spec.sha256). It does not tag or push: the last lines print
# the commands for that.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSION=$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)
fail() { echo "release: $*" >&2; exit 1; }
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "Cargo.toml version $VERSION is not X.Y.Z"
grep -q "^## \[$VERSION\]" CHANGELOG.md || fail "CHANGELOG.md has no '## [$VERSION]' section"

scripts/setup.sh >/dev/null
scripts/build-module.sh all >/dev/null
cargo build --quiet --release -p mksgate-cli
MODULE=target/mksgate/mksgate_filter.wasm
CLI=target/release/mksgate

cli_version=$("$CLI" --version)
[ "$cli_version" = "mksgate $VERSION" ] || fail "the CLI says '$cli_version', not 'mksgate $VERSION'"

# shellcheck source=lib/envoy.sh
. scripts/lib/envoy.sh
ENVOY="$(envoy_version_dir "$ENVOY_NEWEST")/envoy/_bin/envoy"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
write_wasm_probe "$WORK/probe.yaml" "$ROOT/$MODULE"
"$ENVOY" --mode validate -c "$WORK/probe.yaml" --log-level info >"$WORK/probe.log" 2>&1 || true
grep -q "mksgate: configured: .*version $VERSION, abi" "$WORK/probe.log" ||
  { tail -5 "$WORK/probe.log" >&2; fail "the module did not say version $VERSION when Envoy loaded it"; }

OUT="target/release-$VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"
scripts/oci-image.sh "$MODULE" "$OUT/oci/mksgate-filter" "$VERSION" >"$WORK/oci.txt"
manifest=$(awk '/^manifest:/ {print $2}' "$WORK/oci.txt")
module_sha=$(sha256sum "$MODULE" | cut -d' ' -f1)
# The image's one layer holds plugin.wasm: it must be this module.
python3 - "$OUT/oci/mksgate-filter" "$manifest" "$module_sha" <<'PY'
import gzip, hashlib, io, json, sys, tarfile
layout, manifest, want = sys.argv[1:4]
blob = lambda d: open(f"{layout}/blobs/sha256/{d.split(':')[1]}", "rb").read()
m = json.loads(blob(manifest))
(layer,) = m["layers"]
tar = tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"]))))
got = hashlib.sha256(tar.extractfile("plugin.wasm").read()).hexdigest()
if got != want:
    sys.exit(f"release: the image's plugin.wasm is {got}, the module {want}")
PY

cp "$MODULE" "$OUT/mksgate_filter.wasm"
cp "$CLI" "$OUT/mksgate"
cp LICENSE CHANGELOG.md "$OUT/"
(cd "$OUT" && sha256sum mksgate_filter.wasm mksgate >SHA256SUMS)
commit=$(git rev-parse HEAD)
dirty=$(git status --porcelain --untracked-files=no | head -1)
cat >"$OUT/RELEASE.md" <<MD
# mksgate $VERSION

- commit: $commit${dirty:+ (with uncommitted changes: not a release)}
- module: mksgate_filter.wasm, sha256 $module_sha
- OCI image: oci/mksgate-filter, tag $VERSION, manifest $manifest
  (WasmPlugin.spec.sha256 and Envoy Gateway's image sha256: ${manifest#sha256:})
- CLI: mksgate ($cli_version, $(uname -m) Linux)
MD
cat "$OUT/RELEASE.md"
echo
echo "checked: version $VERSION in Cargo.toml, CHANGELOG.md, the module, the CLI and the image tag; the image carries the module."
echo "to publish: git tag -a v$VERSION -m 'mksgate $VERSION' && skopeo copy oci:$OUT/oci/mksgate-filter:$VERSION docker://<registry>/mksgate/mksgate-filter:$VERSION"
