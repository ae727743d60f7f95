// Platform floors for BENCHMARKS.md "Findings": the same SRS-shaped on_play bodies against a Worker
// that only parses them (parse), calls a Durable Object that does nothing (do0), writes one SQLite
// row in one Durable Object (do1), or in two at once (do2noop / do2), as streamgate's hooks do.
// Run: node bench/platform-floor.mjs (on Node 22: npm run bench:floors).
import { Miniflare } from "miniflare";
import autocannon from "autocannon";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os"; import path from "node:path";
import { performance } from "node:perf_hooks";
const tmp = await mkdtemp(path.join(os.tmpdir(), "micro-"));
const mf = new Miniflare({ host: "127.0.0.1", port: 0, durableObjectsPersist: path.join(tmp, "do"),
  handleRuntimeStdio(o, e) { o.resume(); e.on("data", d => process.stderr.write(d)); },
  workers: [{ name: "w", modules: true, scriptPath: new URL("./do-floor.js", import.meta.url).pathname, compatibilityDate: "2026-04-20",
    durableObjects: { A: { className: "A", useSQLite: true } }, unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }] }] });
const url = await mf.unsafeGetDirectURL("w");
let c = 0;
const edges = Array.from({length: 20}, (_, i) => "vid-" + String(i).padStart(7, "0"));
async function run(mode, amount, conns) {
  const lat = []; const t0 = performance.now(); let last = t0;
  const res = await new Promise((resolve, reject) => {
    const inst = autocannon({ url: url.href, connections: conns, amount, sampleInt: 100, requests: [{ method: "POST", path: "/" + mode, headers: { "content-type": "application/json" },
      setupRequest: (r) => ({ ...r, body: JSON.stringify({ action: "on_play", server_id: edges[c % 20], service_id: "abcdefgh", client_id: "c" + (c++), stream: "cam" + (c % 1000) }) }) }] }, (e, r) => e ? reject(e) : resolve(r));
    inst.on("response", (_c, s, _b, ms) => { lat.push(ms); last = performance.now(); });
  });
  lat.sort((a, b) => a - b);
  return { mode, conns, rps: Math.round(lat.length / ((last - t0) / 1000)), p50: lat[lat.length >> 1].toFixed(2), p99: lat[Math.floor(lat.length * 0.99)].toFixed(2), non2xx: res.non2xx, errors: res.errors };
}
const modes = (process.env.MODES ?? "parse,do0,do1,do2noop,do2").split(",");
for (const m of modes) await run(m, 1000, 4);
for (const conns of [1, 4]) for (const m of modes) console.log(JSON.stringify(await run(m, Number(process.env.N ?? 5000), conns)));
await mf.dispose(); await rm(tmp, { recursive: true, force: true });
