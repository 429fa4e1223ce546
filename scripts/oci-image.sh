#!/usr/bin/env bash
# Packs the shipped module as an OCI image layout that Istio's WasmPlugin can
# pull (the "compat" Wasm image variant: one gzip tar layer holding
# plugin.wasm), without a Docker engine. Reproducible: same module, same
# digests.
#
#   scripts/oci-image.sh [MODULE] [OUT_DIR] [TAG]
#   skopeo copy oci:OUT_DIR:TAG docker://registry.example.com/mksgate/mksgate-filter:TAG
#   (or: oras cp --from-oci-layout OUT_DIR:TAG registry.example.com/mksgate/mksgate-filter:TAG)
#
# Prints the image's manifest digest: that is what Istio checks against
# WasmPlugin.spec.sha256 for an oci:// URL (istio/istio pkg/wasm), and what
# Envoy Gateway's ImageWasmCodeSource.SHA256 means; pin the URL with
# @sha256:<digest> as well. The module's own sha256 is printed for reference
# only. Annotations: the "compat" Wasm image variant, and provenance
# (version = TAG, revision = the git commit, licenses; source from
# $OCI_IMAGE_SOURCE when set). Same module and commit, same digests.
set -euo pipefail
cd "$(dirname "$0")/.."
MODULE=${1:-target/mksgate/mksgate_filter.wasm}
OUT=${2:-target/oci/mksgate-filter}
TAG=${3:-$(awk -F'"' '/^version = / {print $2; exit}' Cargo.toml)}
LICENSE=$(awk -F'"' '/^license = / {print $2; exit}' Cargo.toml)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE=${OCI_IMAGE_SOURCE:-}
[ -f "$MODULE" ] || { echo "no module at $MODULE (run: make build)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/blobs/sha256"

cp "$MODULE" "$WORK/plugin.wasm"
touch -d @0 "$WORK/plugin.wasm"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=0444 \
  -C "$WORK" -cf "$WORK/layer.tar" plugin.wasm
gzip -n -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"

python3 - "$WORK" "$OUT" "$TAG" "$LICENSE" "$REVISION" "$SOURCE" <<'PY'
import hashlib, json, os, shutil, sys
work, out, tag, license_, revision, source = sys.argv[1:7]

def blob(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest

def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

module = open(os.path.join(work, "plugin.wasm"), "rb").read()
layer_tar = open(os.path.join(work, "layer.tar"), "rb").read()
layer = open(os.path.join(work, "layer.tar.gz"), "rb").read()
layer_digest = blob(layer)
config = canonical({
    "architecture": "wasm",
    "os": "wasip1",
    "config": {},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
})
config_digest = blob(config)
manifest = canonical({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
    "layers": [{
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": len(layer),
        "annotations": {"org.opencontainers.image.title": "plugin.wasm"},
    }],
    "annotations": dict({
        "module.wasm.image/variant": "compat",
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": license_,
    }, **({"org.opencontainers.image.source": source} if source else {})),
})
manifest_digest = blob(manifest)
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }],
}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f, indent=2)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
print(f"oci layout: {out} (tag {tag})")
print(f"manifest:   {manifest_digest}")
print(f"WasmPlugin.spec.sha256 (the manifest digest): {manifest_digest.removeprefix('sha256:')}")
print(f"module sha256 (plugin.wasm itself, for reference): {hashlib.sha256(module).hexdigest()}")
PY
