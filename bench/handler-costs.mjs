#!/usr/bin/env node
// What the Worker-side steps of a hook cost in CPU on this machine (BENCHMARKS.md, Findings): the
// same on_play body, a connection per hook as SRS sends them, 4 at a time, against a Worker whose
// paths each take one of streamgate's steps (bench/handler-costs-worker.ts, bundled with the real
// src/ functions). Rounds interleave the paths so that the machine's drift falls on all alike;
// the CPU time is workerd's (/proc), per request, median over the rounds.
// Run: npm run bench:handler (options: --rounds N, default 15; --requests N per path and round, default 3000).
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { workerdCpuMs } from "./workerd-cpu.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const option = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROUNDS = option("rounds", 15);
const REQUESTS = option("requests", 3000);
const STEPS = ["floor-read", "bounded-read", "secret-check", "decision-line"];

// esbuild as wrangler brings it (the bundler wrangler itself uses): no dependency of our own.
const esbuild = createRequire(createRequire(import.meta.url).resolve("wrangler"))("esbuild");
const tmp = await mkdtemp(path.join(os.tmpdir(), "handler-costs-"));
const script = path.join(tmp, "worker.js");
await esbuild.build({ entryPoints: [path.join(here, "handler-costs-worker.ts")], bundle: true, format: "esm", outfile: script, logLevel: "warning" });

const mf = new Miniflare({
  modules: true,
  scriptPath: script,
  modulesRoot: tmp,
  compatibilityDate: "2026-04-20",
  handleRuntimeStdio(out, err) {
    out.resume();
    err.on("data", (d) => process.stderr.write(d));
  },
});
const url = await mf.ready;


// The first on_play captured from SRS 7 (test/fixtures/hooks-srs7.jsonl), as SRS sent it.
const body = readFileSync(path.join(here, "..", "test", "fixtures", "hooks-srs7.jsonl"), "utf8")
  .split("\n")
  .filter(Boolean)
  .map((line) => JSON.parse(line).body)
  .find((b) => JSON.parse(b).action === "on_play");
const agent = new http.Agent({ keepAlive: false });
function post(step) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(`/${step}`, url), { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${step}: ${res.statusCode}`));
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", reject);
    req.end(body);
  });
}
async function drive(step, n) {
  let sent = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (sent++ < n) await post(step);
  }));
}

for (const step of STEPS) await drive(step, 500); // warm-up
const perRequest = Object.fromEntries(STEPS.map((s) => [s, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const step of round % 2 ? [...STEPS].reverse() : STEPS) {
    const before = workerdCpuMs();
    await drive(step, REQUESTS);
    perRequest[step].push(((workerdCpuMs() - before) * 1000) / REQUESTS); // µs
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const base = median(perRequest["floor-read"]);
console.log(`workerd CPU per request, median of ${ROUNDS} rounds × ${REQUESTS} requests (a connection per request):`);
for (const step of STEPS) {
  const m = median(perRequest[step]);
  const delta = step === "floor-read" ? "" : ` (${m >= base ? "+" : ""}${(m - base).toFixed(0)} µs)`;
  console.log(`  ${step.padEnd(14)} ${m.toFixed(0).padStart(5)} µs${delta}   rounds: ${perRequest[step].map((x) => x.toFixed(0)).join(" ")}`);
}
await mf.dispose();
await rm(tmp, { recursive: true, force: true });
