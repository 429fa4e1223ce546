// Times mksgate's decision stage by stage in Node's V8 (see src/lib.rs):
//   node bench/stages/run.mjs MODULE.wasm [links] [rounds]
// Each stage runs over every link, `rounds` times, interleaved with the
// others; a stage's cost is the median of its rounds minus the previous
// stage's. Warm: the same links every round, so caches and the JIT are
// hot (the proxy at 120 handshakes/s is not; see BENCHMARKS.md).
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";

const [file, linksArg, roundsArg] = process.argv.slice(2);
const links = Number(linksArg ?? 2000);
const rounds = Number(roundsArg ?? 15);
const wasi = new WASI({ version: "preview1", args: [], env: {} });
const { instance } = await WebAssembly.instantiate(readFileSync(file), wasi.getImportObject());
wasi.initialize(instance);
const x = instance.exports;
if (x.stages_setup(links) !== 1) throw new Error("setup failed");
const names = ["facts", "verify", "decide", "commit", "scoped", "revocation"];
const times = names.map(() => []);
for (let r = 0; r < rounds + 2; r++) {
  for (let s = 0; s < names.length; s++) {
    if (s === 3) x.stages_reset_store();
    const t0 = process.hrtime.bigint();
    const admitted = x.stages_run(s);
    const ns = Number(process.hrtime.bigint() - t0);
    if (admitted !== links) throw new Error(`stage ${names[s]}: ${admitted} of ${links} admitted`);
    if (r >= 2) times[s].push(ns / links / 1000); // the first two rounds warm the JIT
  }
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const med = times.map(median);
console.log(`| stage | µs per link, cumulative (median of ${rounds}) | this stage |`);
console.log("|---|---:|---:|");
const what = [
  "request facts from the header pairs",
  "the JWS: base64, header JSON, HMAC-SHA256",
  "the rest of the decision: claims JSON, checks, rewrite, audit (ticket hash)",
  "the one-time-link claim in the shared-data table",
  "the decision (stage decide) with the key scoped to the host and tenant",
  "the decision (stage decide) checked against 1,000 revocations",
];
// `scoped` and `revocation` are the decide stage again with a scoped key
// or revocations: their own cost is over `decide`, not over `commit`.
const base = [null, 0, 1, 2, 2, 2];
for (let s = 0; s < names.length; s++) {
  const own = s === 0 ? med[0] : med[s] - med[base[s]];
  console.log(`| ${names[s]}: ${what[s]} | ${med[s].toFixed(2)} | ${own.toFixed(2)} |`);
}
