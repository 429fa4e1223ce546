// Validates Kubernetes documents (a JSON array) against the Istio CRD
// schemas of @kubernetes-models/istio; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const d of docs) {
  const [group, version] = d.apiVersion.split("/");
  const where = `${d.apiVersion} ${d.kind} ${d.metadata?.name}`;
  let Cls;
  try {
    Cls = (await import(`@kubernetes-models/istio/${group}/${version}`))[d.kind];
  } catch (e) {
    Cls = undefined;
  }
  if (!Cls) { bad++; console.log(`NO SCHEMA ${where}`); continue; }
  try { new Cls(d).validate(); console.log(`ok ${where}`); }
  catch (e) { bad++; console.log(`INVALID ${where}: ${e.message}`); }
}
process.exit(bad ? 1 : 0);
