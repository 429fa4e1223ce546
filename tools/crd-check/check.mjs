// Validates Kubernetes documents (a JSON array) against their schemas:
// kubernetes-models for the core API, @kubernetes-models/{istio,gateway-api,
// envoy-gateway} for the CRDs. Types, required fields and enums, as
// `kubectl apply` would check them first (these schemas allow unknown
// fields in places). Prints one line per document;
// exits 1 if any is invalid or has no schema.
import { readFileSync } from "node:fs";

const PACKAGES = [
  [/\.istio\.io$/, "@kubernetes-models/istio"],
  [/^gateway\.networking\.(x-)?k8s\.io$/, "@kubernetes-models/gateway-api"],
  [/^gateway\.envoyproxy\.io$/, "@kubernetes-models/envoy-gateway"],
];

const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const d of docs) {
  const parts = String(d.apiVersion).split("/");
  const where = `${d.apiVersion} ${d.kind} ${d.metadata?.name}`;
  // The core API ("v1") has no group.
  const [group, version] = parts.length === 1 ? ["", parts[0]] : parts;
  const pkg = group === "" ? "kubernetes-models" : PACKAGES.find(([re]) => re.test(group))?.[1];
  const path = group === "" ? `${pkg}/${version}` : `${pkg}/${group}/${version}`;
  let Cls;
  try {
    Cls = pkg && (await import(path))[d.kind];
  } catch (e) {
    Cls = undefined;
  }
  if (!Cls) {
    bad++;
    console.log(`NO SCHEMA ${where}`);
    continue;
  }
  try {
    new Cls(d).validate();
    console.log(`ok ${where}`);
  } catch (e) {
    bad++;
    console.log(`INVALID ${where}: ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
