#!/usr/bin/env node
/**
 * streamgate benchmark: hook latency and throughput against the platform's own floor.
 *
 *   npm run bench          full run (5 rounds), prints a table and writes BENCHMARKS.md
 *   npm run bench:smoke    a few hundred requests per scenario, 1 round; exits non-zero on any
 *                          error, never on timing; does not touch BENCHMARKS.md (part of npm test)
 *
 * Options: --rounds N, --connections N (defaults: 5 and 4; smoke: 1 and 4), --all-autogates
 * (run workerd with WORKERD_ALL_AUTOGATES=1; see AUTOGATES below).
 *
 * How: the deployable bundle (`wrangler deploy --dry-run --outdir`) and the floor Worker
 * (bench/floor.js, a Worker answering {"code":0} without reading anything) are served by one
 * Miniflare instance, i.e. one workerd process, each on its own 127.0.0.1 socket
 * (unsafeDirectSockets: no Miniflare entry worker, no wrangler dev proxy in between).
 * streamgate has its real bindings, read from wrangler.toml (SQLite-backed Durable Objects, KV),
 * on disk in a fresh temp dir. autocannon drives SRS-shaped bodies (the shapes of
 * the bodies captured from SRS 7 in test/fixtures/) with fresh ids per request.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import { Miniflare } from "miniflare";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const HOST = "127.0.0.1";
// At least 32 characters each: the Worker refuses shorter secrets.
const HOOK_SECRET = "bench-hook-secret-32-chars-or-more";
const ADMIN_TOKEN = "bench-admin-token-32-chars-or-more";
const TOKEN_SIGNING_KEY = "bench-token-signing-key-32-chars-or-more";

// --- options -------------------------------------------------------------------

const argv = process.argv.slice(2);
const SMOKE = argv.includes("--smoke");
function intOption(name, fallback) {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  const raw = argv[i].includes("=") ? argv[i].split("=")[1] : argv[i + 1];
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} needs a positive integer, got ${raw}`);
  return n;
}

const PLAN = SMOKE
  ? {
      rounds: intOption("rounds", 1),
      connections: intOption("connections", 4),
      streams: 50,
      heartbeatServers: 200,
      hotViewers: 500,
      edges: 10,
      // requests per measured run, per scenario
      amount: { viewerChurn: 400, hot: 320, publishChurn: 320, denial: 320, heartbeat: 320 },
      hotSlices: 2,
      warmup: 80,
      deadlineS: 120,
    }
  : {
      rounds: intOption("rounds", 5),
      connections: intOption("connections", 4),
      streams: 1000,
      heartbeatServers: 5000,
      hotViewers: 50_000,
      edges: 20,
      amount: { viewerChurn: 8000, hot: 6000, publishChurn: 6000, denial: 6000, heartbeat: 5000 },
      hotSlices: 6,
      warmup: 600,
      deadlineS: 900,
    };
/**
 * More than 8 connections on one Durable Object made workerd occasionally leave a request
 * undispatched until the client gave up (see BENCHMARKS.md, Findings); 8 never did.
 */
const SEED_CONNECTIONS = 8;
/**
 * workerd caps the SQLite memory of its whole process at 512 MiB unless its
 * "increase-sqlite-hard-heap-limit" autogate (8 GiB) is on; each SQLite-backed object costs about
 * 170 KiB of it, so about 3,000 objects fit locally (the excess fail with SQLITE_NOMEM). This
 * benchmark wakes about 1,000; --all-autogates (WORKERD_ALL_AUTOGATES=1, the only switch workerd
 * offers) lifts the cap for experiments with more.
 */
const AUTOGATES = argv.includes("--all-autogates");

// --- SRS-shaped bodies ------------------------------------------------------------
//
// Templates copied from the bodies captured from real SRS 7 servers
// (test/fixtures/hooks-srs7-more.jsonl, "RTMP client on an SRS edge", and its heartbeat with
// summaries off, SRS's default); only ids and names change per request, key order is SRS's.

const TEMPLATE = {
  on_publish: { server_id: "vid-09m4a93", service_id: "0o91058o", action: "on_publish", client_id: "19199195", ip: "127.0.0.1", vhost: "__defaultVhost__", app: "live", tcUrl: "rtmp://127.0.0.1:30738/live", stream: "cam02", param: "?key=EX8kqPLxxT1edLrleVJTEA08", stream_url: "/live/cam02", stream_id: "vid-y9n9k63" },
  on_unpublish: { server_id: "vid-09m4a93", service_id: "0o91058o", action: "on_unpublish", client_id: "19199195", ip: "127.0.0.1", vhost: "__defaultVhost__", app: "live", tcUrl: "rtmp://127.0.0.1:30738/live", stream: "cam02", param: "?key=EX8kqPLxxT1edLrleVJTEA08", stream_url: "/live/cam02", stream_id: "vid-y9n9k63" },
  on_play: { server_id: "vid-09m4a93", service_id: "0o91058o", action: "on_play", client_id: "573t6ca3", ip: "127.0.0.1", vhost: "__defaultVhost__", app: "live", stream: "cam04", tcUrl: "rtmp://127.0.0.1:30738/live", param: "", pageUrl: "", stream_url: "/live/cam04", stream_id: "vid-e2625rl" },
  on_stop: { server_id: "vid-09m4a93", service_id: "0o91058o", action: "on_stop", client_id: "573t6ca3", ip: "127.0.0.1", vhost: "__defaultVhost__", app: "live", tcUrl: "rtmp://127.0.0.1:30738/live", stream: "cam04", param: "", stream_url: "/live/cam04", stream_id: "vid-e2625rl" },
  heartbeat: { device_id: "edge-a", ip: "192.0.2.2", server: "vid-09m4a93", service: "0o91058o", pid: "20812" },
};

const B36 = "0123456789abcdefghijklmnopqrstuvwxyz";
function randomId(length) {
  const bytes = randomBytes(length);
  let out = "";
  for (let i = 0; i < length; i++) out += B36[bytes[i] % 36];
  return out;
}
/** Fresh client ids (8 chars of [0-9a-z], as SRS draws them), never repeated within a run. */
const clientIds = (() => {
  let next = 36 ** 7 + Math.floor(Math.random() * (36 ** 8 - 36 ** 7 - 1e8));
  return () => (next++).toString(36);
})();

/** An SRS server: server_id "vid-" + 7 chars, service_id 8 chars, plus what its heartbeat says. */
function newEdge(i) {
  return {
    server: `vid-${randomId(7)}`,
    service: randomId(8),
    device: `edge-${String(i).padStart(4, "0")}`,
    ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    pid: String(1000 + (i % 60000)),
  };
}

function streamBody(action, stream, edge, clientId, param, ip) {
  const t = TEMPLATE[action];
  return JSON.stringify({
    ...t,
    server_id: edge.server,
    service_id: edge.service,
    client_id: clientId,
    ...(ip === undefined ? {} : { ip }),
    stream: stream.name,
    stream_url: `/live/${stream.name}`,
    stream_id: stream.id,
    ...(param === undefined ? {} : { param }),
  });
}

function heartbeatBody(edge) {
  return JSON.stringify({ ...TEMPLATE.heartbeat, device_id: edge.device, ip: edge.ip, server: edge.server, service: edge.service, pid: edge.pid });
}

// --- what a response must be ---------------------------------------------------------

const ALLOW = (status, body) => (status === 200 && body === '{"code":0}' ? null : `${status} ${body.slice(0, 160)}`);
/** A wrong key is refused: "invalid publish key" (4003), or "rate limited" (4029) once an ip has guessed too often. */
const BAD_KEY = (status, body) => {
  if (status !== 403) return `${status} ${body.slice(0, 160)}`;
  try {
    const code = JSON.parse(body).code;
    return code === 4003 || code === 4029 ? null : `403 ${body.slice(0, 160)}`;
  } catch {
    return `403 ${body.slice(0, 160)}`;
  }
};

// --- scenarios ----------------------------------------------------------------------
//
// A scenario is a list of requests each connection cycles through (autocannon `requests`):
// a pair shares its ids through the connection's context. Amounts are multiples of
// 2 × connections, so every connection ends on a complete pair and no session is left open.

const HOOK = `/hooks/srs/${HOOK_SECRET}`;

function pairScenario(startAction, stopAction, pickStream, pickEdge, param) {
  return [
    {
      path: HOOK,
      body: (ctx) => {
        ctx.stream = pickStream();
        ctx.edge = pickEdge();
        ctx.client = clientIds();
        return streamBody(startAction, ctx.stream, ctx.edge, ctx.client, param ? param(ctx.stream) : "");
      },
      expect: ALLOW,
    },
    {
      path: HOOK,
      body: (ctx) => streamBody(stopAction, ctx.stream, ctx.edge, ctx.client, param ? param(ctx.stream) : ""),
      expect: ALLOW,
    },
  ];
}

function cycle(items) {
  let i = 0;
  return () => items[i++ % items.length];
}

function scenarios(state) {
  const edge = () => state.edges[(Math.random() * state.edges.length) | 0];
  const wrongKey = () => randomBytes(24).toString("base64url");
  // Each wrong key from another encoder (a fleet still using a rotated key, say): every one is
  // checked and counted, none cut short by the per-ip guess limit.
  const randomIp = () => `198.18.${randomBytes(1)[0]}.${randomBytes(1)[0]}`;
  return {
    viewerChurn: {
      title: "viewer churn",
      what: `on_play/on_stop pairs, fresh client ids, ${state.streams.length} streams`,
      requests: pairScenario("on_play", "on_stop", cycle(state.streams), edge),
    },
    hot: {
      title: "hot stream",
      what: `the same churn on one stream holding ${state.hotViewers} live viewers`,
      requests: pairScenario("on_play", "on_stop", () => state.hot, edge),
    },
    empty: {
      title: "empty stream",
      what: "the same churn on one stream with no viewers",
      requests: pairScenario("on_play", "on_stop", () => state.empty, edge),
    },
    publishChurn: {
      title: "publish churn",
      what: `on_publish/on_unpublish pairs with valid keys, ${state.streams.length} streams`,
      requests: pairScenario("on_publish", "on_unpublish", cycle(state.streams), edge, (s) => `?key=${s.key}`),
    },
    denial: {
      title: "denial flood",
      what: `on_publish with wrong keys from many client ips, ${state.streams.length} streams (403 expected)`,
      requests: [
        {
          path: HOOK,
          body: () => {
            const s = state.pickDenied();
            return streamBody("on_publish", s, edge(), clientIds(), `?key=${wrongKey()}`, randomIp());
          },
          expect: BAD_KEY,
        },
      ],
    },
    heartbeat: {
      title: "heartbeats",
      what: `heartbeats from ${state.heartbeatServers.length} servers, round robin`,
      requests: [{ path: `${HOOK}/heartbeat`, body: () => heartbeatBody(state.pickBeating()), expect: ALLOW }],
    },
  };
}

// --- driving ------------------------------------------------------------------------

const HEADERS = { "content-type": "application/json", "user-agent": "SRS/7.0.18(Hang)" };

/**
 * One measured run: `amount` requests over `connections` keep-alive connections.
 * Latencies are recorded here at full resolution (autocannon's own histogram keeps whole ms).
 */
function drive(url, requests, { amount, connections, floor }) {
  return new Promise((resolve, reject) => {
    const latencies = new Float64Array(amount + connections * 4);
    let n = 0;
    let unexpected = 0;
    const samples = [];
    const statuses = {};
    const started = performance.now();
    let last = started;
    const instance = autocannon(
      {
        url: url.href,
        connections,
        amount,
        pipelining: 1,
        timeout: 10,
        sampleInt: 100,
        requests: requests.map((r) => ({
          method: "POST",
          path: r.path,
          headers: HEADERS,
          setupRequest: (req, ctx) => ({ ...req, body: r.body(ctx) }),
          onResponse: (status, body) => {
            const problem = (floor ? ALLOW : r.expect)(status, String(body));
            if (problem) {
              unexpected++;
              if (samples.length < 3) samples.push(problem);
            }
          },
        })),
      },
      (err, result) => {
        if (err) return reject(err);
        const sorted = latencies.slice(0, Math.min(n, latencies.length)).sort();
        const elapsed = (last - started) / 1000;
        resolve({
          requests: n,
          seconds: elapsed,
          latencies: sorted,
          rps: n / elapsed,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          p999: percentile(sorted, 99.9),
          errors: unexpected + result.errors + result.timeouts + result.mismatches + Math.max(0, amount - n),
          breakdown: { unexpected, connectionErrors: result.errors, timeouts: result.timeouts, mismatches: result.mismatches, missing: Math.max(0, amount - n), resets: result.resets },
          statuses,
          samples,
        });
      },
    );
    instance.on("reqError", (err) => {
      if (samples.length < 3) samples.push(`connection error: ${err?.code ?? ""} ${err?.message ?? err}`);
    });
    instance.on("response", (_client, status, _bytes, ms) => {
      if (n < latencies.length) latencies[n] = ms;
      n++;
      statuses[status] = (statuses[status] ?? 0) + 1;
      last = performance.now();
    });
  });
}

/** One result from several slices of a run: requests over summed time, percentiles over all latencies. */
function mergeSlices(slices) {
  if (slices.length === 1) return slices[0];
  const all = new Float64Array(slices.reduce((n, r) => n + r.latencies.length, 0));
  let at = 0;
  for (const r of slices) {
    all.set(r.latencies, at);
    at += r.latencies.length;
  }
  all.sort();
  const requests = slices.reduce((n, r) => n + r.requests, 0);
  const seconds = slices.reduce((n, r) => n + r.seconds, 0);
  const breakdown = {};
  for (const r of slices) for (const [k, v] of Object.entries(r.breakdown)) breakdown[k] = (breakdown[k] ?? 0) + v;
  return {
    requests,
    seconds,
    latencies: all,
    rps: requests / seconds,
    p50: percentile(all, 50),
    p99: percentile(all, 99),
    p999: percentile(all, 99.9),
    errors: slices.reduce((n, r) => n + r.errors, 0),
    breakdown,
    samples: slices.flatMap((r) => r.samples).slice(0, 3),
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Rounds a count up to a multiple of 2 × connections (whole pairs on every connection). */
function wholePairs(amount, connections) {
  const unit = 2 * connections;
  return Math.max(unit, Math.ceil(amount / unit) * unit);
}

// --- setup ----------------------------------------------------------------------------

async function bundle(outdir) {
  const wrangler = path.join(ROOT, "node_modules", ".bin", "wrangler");
  const args = [wrangler, "deploy", "--dry-run", "--outdir", outdir];
  const out = [];
  const code = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const kill = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => out.push(d));
    child.on("error", reject);
    child.on("close", (c) => {
      clearTimeout(kill);
      resolve(c);
    });
  });
  const script = path.join(outdir, "index.js");
  if (code !== 0 || !existsSync(script)) {
    throw new Error(`wrangler deploy --dry-run failed (exit ${code}):\n${Buffer.concat(out).toString()}`);
  }
  return script;
}

/**
 * What the benchmark takes from wrangler.toml: compatibility date and flags, [vars], KV
 * namespaces and Durable Object bindings (SQLite-backed when a migration lists the class in
 * new_sqlite_classes). Enough TOML for that file: tables, arrays of tables, strings, string lists.
 */
function wranglerConfig() {
  const toml = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");
  const top = {};
  const tables = {}; // "vars" -> {...}
  const arrays = {}; // "kv_namespaces" -> [{...}, ...]
  let current = top;
  for (const raw of toml.split("\n")) {
    const line = raw.replace(/^\s+|\s+$/g, "");
    if (!line || line.startsWith("#")) continue;
    let m;
    if ((m = line.match(/^\[\[\s*([^\]]+?)\s*\]\]/))) {
      current = {};
      (arrays[m[1]] ??= []).push(current);
    } else if ((m = line.match(/^\[\s*([^\]]+?)\s*\]/))) {
      current = tables[m[1]] ??= {};
    } else if ((m = line.match(/^([A-Za-z0-9_]+)\s*=\s*(.+)$/))) {
      const value = m[2].replace(/\s+#.*$/, "");
      if (value.startsWith('"')) current[m[1]] = JSON.parse(value.match(/^"(?:[^"\\]|\\.)*"/)[0]);
      else if (value.startsWith("[")) current[m[1]] = [...value.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]);
      else current[m[1]] = value === "true" ? true : value === "false" ? false : Number(value);
    }
  }
  if (typeof top.compatibility_date !== "string") throw new Error("no compatibility_date in wrangler.toml");
  const sqlite = new Set((arrays.migrations ?? []).flatMap((mig) => mig.new_sqlite_classes ?? []));
  const durableObjects = Object.fromEntries(
    (arrays["durable_objects.bindings"] ?? []).map((b) => [b.name, { className: b.class_name, useSQLite: sqlite.has(b.class_name) }]),
  );
  const kvNamespaces = Object.fromEntries((arrays.kv_namespaces ?? []).map((k) => [k.binding, k.binding.toLowerCase()]));
  return {
    compatibilityDate: top.compatibility_date,
    compatibilityFlags: top.compatibility_flags ?? [],
    vars: tables.vars ?? {},
    durableObjects,
    kvNamespaces,
  };
}

function describeBindings(config) {
  const dos = Object.entries(config.durableObjects).map(
    ([name, d]) => `\`${name}\` → \`${d.className}\`${d.useSQLite ? " (SQLite)" : ""}`,
  );
  const kvs = Object.keys(config.kvNamespaces).map((name) => `\`${name}\``);
  return [dos.length ? `Durable Objects ${dos.join(", ")}` : "", kvs.length ? `KV ${kvs.join(", ")}` : ""].filter(Boolean).join("; ");
}

/** Lines streamgate logged as errors (its own JSON {"error": ...} lines), kept for the report. */
const workerErrors = { count: 0, samples: [] };
/** The runtime's last stderr lines, shown if it fails to start. */
const runtimeTail = [];

function serve(script, persist) {
  const config = wranglerConfig();
  const socket = () => [{ host: HOST, port: 0 }];
  return new Miniflare({
    host: HOST,
    port: 0,
    durableObjectsPersist: path.join(persist, "do"),
    kvPersist: path.join(persist, "kv"),
    cachePersist: path.join(persist, "cache"),
    handleRuntimeStdio(stdout, stderr) {
      // streamgate logs one JSON line per decision: read and dropped, as a log sink would.
      stdout.resume();
      let pending = "";
      stderr.on("data", (chunk) => {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop();
        for (const line of lines) {
          runtimeTail.push(line);
          if (runtimeTail.length > 20) runtimeTail.shift();
          if (!line.includes('"error"')) continue;
          workerErrors.count++;
          if (workerErrors.samples.length < 5) workerErrors.samples.push(line.slice(0, 300));
        }
      });
    },
    workers: [
      {
        name: "streamgate",
        modules: true,
        scriptPath: script,
        modulesRoot: path.dirname(script),
        compatibilityDate: config.compatibilityDate,
        compatibilityFlags: config.compatibilityFlags,
        bindings: { ...config.vars, HOOK_SECRET, ADMIN_TOKEN, TOKEN_SIGNING_KEY },
        kvNamespaces: config.kvNamespaces,
        durableObjects: config.durableObjects,
        unsafeDirectSockets: socket(),
      },
      {
        name: "floor",
        modules: true,
        scriptPath: path.join(ROOT, "bench", "floor.js"),
        modulesRoot: path.join(ROOT, "bench"),
        compatibilityDate: config.compatibilityDate,
        unsafeDirectSockets: socket(),
      },
    ],
  });
}

/** Runs `fn` over `items` with at most `width` in flight. */
async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

async function createStreams(base, names) {
  return pool(names, 16, async (name) => {
    const res = await fetch(new URL(`/admin/streams/live/${name}`, base), {
      method: "PUT",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: "{}",
    });
    const body = await res.json();
    if (res.status !== 201 || typeof body.publishKey !== "string") {
      throw new Error(`PUT /admin/streams/live/${name}: ${res.status} ${JSON.stringify(body)}`);
    }
    return { name, key: body.publishKey, id: `vid-${randomId(7)}` };
  });
}

/** One hook, outside the measurements; anything but 200 {"code":0} is fatal. */
async function hook(base, hookPath, body) {
  const res = await fetch(new URL(hookPath, base), { method: "POST", headers: HEADERS, body, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  const problem = ALLOW(res.status, text);
  if (problem) throw new Error(`POST ${hookPath.replace(HOOK_SECRET, "***")}: ${problem}`);
}

async function viewersOf(base, name) {
  const res = await fetch(new URL(`/admin/streams/live/${name}`, base), { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return (await res.json()).viewers;
}

/** Unmeasured load through the same path: seeding, registering, warming up. */
async function load(url, requests, amount, connections, label) {
  const r = await drive(url, requests, { amount, connections, floor: false });
  if (r.errors > 0) throw new Error(`${label}: ${r.errors} errors ${JSON.stringify(r.breakdown)}, e.g. ${r.samples.join(" | ")}`);
  return r;
}

// --- report ---------------------------------------------------------------------------

const fmt = {
  rps: (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–"),
  ms: (x) => (Number.isFinite(x) ? x.toFixed(2) : "–"),
  ratio: (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "–"),
};

function versions() {
  const v = (pkg) => {
    try {
      return JSON.parse(readFileSync(path.join(ROOT, "node_modules", pkg, "package.json"), "utf8")).version;
    } catch {
      return "?";
    }
  };
  return { node: process.version, workerd: v("workerd"), miniflare: v("miniflare"), wrangler: v("wrangler"), autocannon: v("autocannon") };
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: `${cpus.length} × ${cpus[0]?.model?.trim() ?? "unknown CPU"}`,
    cores: cpus.length,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

function tableRows(summary) {
  const header = ["scenario", "server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "req/s vs floor", "p99 vs floor"];
  const rows = [];
  for (const s of summary) {
    s.targets.forEach((t, i) => {
      const floor = s.targets.find((x) => x.target === "floor");
      const vsFloor = t.target !== "floor" && floor;
      rows.push([
        i === 0 ? s.title : "",
        t.label,
        fmt.rps(t.rps),
        fmt.ms(t.p50),
        fmt.ms(t.p99),
        fmt.ms(t.p999),
        String(t.errors),
        vsFloor ? fmt.ratio(t.rps / floor.rps) : "",
        vsFloor ? fmt.ratio(t.p99 / floor.p99) : "",
      ]);
    });
  }
  return { header, rows };
}

function printTable({ header, rows }) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}

function markdownTable({ header, rows }) {
  const align = header.map((_, i) => (i < 2 ? "---" : "---:"));
  return [header, align, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}

function checkTargets(summary) {
  const get = (scenario, target) => summary.find((s) => s.key === scenario)?.targets.find((t) => t.target === target);
  const churn = get("viewerChurn", "streamgate");
  const churnFloor = get("viewerChurn", "floor");
  const hot = get("hot", "streamgate");
  const empty = get("hot", "empty");
  const totalErrors = summary.reduce((n, s) => n + s.targets.reduce((m, t) => m + t.errors, 0), 0) + workerErrors.count;
  return [
    {
      name: "viewer churn throughput >= 0.5 × floor",
      value: `${fmt.ratio(churn.rps / churnFloor.rps)} (${fmt.rps(churn.rps)} vs ${fmt.rps(churnFloor.rps)} req/s)`,
      pass: churn.rps >= 0.5 * churnFloor.rps,
    },
    {
      name: "viewer churn p99 <= 2 × floor p99",
      value: `${fmt.ratio(churn.p99 / churnFloor.p99)} (${fmt.ms(churn.p99)} vs ${fmt.ms(churnFloor.p99)} ms)`,
      pass: churn.p99 <= 2 * churnFloor.p99,
    },
    {
      name: "hot stream p99 <= 1.2 × empty stream p99",
      value: `${fmt.ratio(hot.p99 / empty.p99)} (${fmt.ms(hot.p99)} vs ${fmt.ms(empty.p99)} ms)`,
      pass: hot.p99 <= 1.2 * empty.p99,
    },
    {
      name: "zero errors everywhere",
      value: `${totalErrors}${workerErrors.count ? ` (${workerErrors.count} logged by the Worker)` : ""}`,
      pass: totalErrors === 0,
    },
  ];
}

async function writeMarkdown({ summary, targets, rounds, meta }) {
  const file = path.join(ROOT, "BENCHMARKS.md");
  // A hand-written "## Findings" section (and whatever follows it) survives regeneration.
  let findings = "";
  try {
    const old = await readFile(file, "utf8");
    const at = old.search(/^## Findings\b/m);
    if (at >= 0) findings = old.slice(at).trimEnd() + "\n";
  } catch {}
  const m = meta.machine;
  const v = meta.versions;
  const perRound = summary
    .flatMap((s) =>
      s.targets.map((t) => `| ${s.title} | ${t.label} | ${t.rounds.map((r) => `${fmt.rps(r.rps)} / ${fmt.ms(r.p99)}`).join(" · ")} |`),
    )
    .join("\n");
  const text = `# Benchmarks

Hook latency and throughput of streamgate, measured against the floor: a trivial Worker
(\`bench/floor.js\`, answers \`{"code":0}\`) served by the same workerd in the same run.
Regenerate with \`npm run bench\` (about ${Math.ceil(meta.seconds / 60)} minutes here); \`npm run bench:smoke\` is the
few-hundred-request version that \`npm test\` runs (it fails on errors, never on timing).

- **Date:** ${meta.date}
- **Machine:** ${m.cpu} (${m.cores} cores), ${m.memory} RAM, ${m.os}
- **Versions:** Node ${v.node}, workerd ${v.workerd} (miniflare ${v.miniflare}, wrangler ${v.wrangler}), autocannon ${v.autocannon}
- **Command:** \`${meta.command}\` (${rounds} rounds, ${meta.connections} connections, total ${Math.round(meta.seconds)} s)

## Results

Medians over ${rounds} rounds. Latencies are per request, measured by the load generator
(keep-alive HTTP/1.1 on 127.0.0.1); "vs floor" compares with the floor Worker given the same
requests in the same round.

${markdownTable(tableRows(summary))}

### Targets

| target | measured | |
|---|---|---|
${targets.map((t) => `| ${t.name} | ${t.value} | ${t.pass ? "PASS" : "MISS"} |`).join("\n")}

### Every round (req/s / p99 ms)

| scenario | server | rounds |
|---|---|---|
${perRound}

## Method

- **Serving.** \`wrangler deploy --dry-run --outdir <tmp>\` builds the bundle that would be
  deployed. One Miniflare instance (one \`workerd\` process) serves it and \`bench/floor.js\`, each
  on its own 127.0.0.1 port through a direct socket (no Miniflare entry worker and no
  \`wrangler dev\` proxy, which adds 5–10 ms per request). streamgate has the bindings of
  \`wrangler.toml\`: ${meta.bindings}, its \`[vars]\` (${meta.vars}), bench values for the secrets; its
  state is on disk in a fresh temp dir, removed afterwards. Its per-decision log lines are read
  from workerd's stdout and dropped. The static assets (the console) are not served: no hook
  path is an asset. ${meta.autogates ? "workerd runs with all its autogates on (`--all-autogates`)." : ""}
- **Load.** autocannon ${v.autocannon}, ${meta.connections} keep-alive connections, a fixed number of
  requests per run (${meta.amounts}). Bodies have the shape and key order of the bodies captured from
  SRS 7 (\`test/fixtures/\`); \`server_id\` \`vid-\` + 7 chars, \`service_id\` and \`client_id\` 8 chars
  of [0-9a-z]. Every \`on_play\`/\`on_publish\` has a fresh client id; its \`on_stop\`/\`on_unpublish\`
  follows on the same connection, and every run ends on whole pairs. Hooks come from ${meta.edges}
  edges; heartbeats from ${meta.heartbeatServers} other servers.
- **Scenarios.** ${summary.map((s) => `*${s.title}*: ${s.what}`).join("; ")}.
- **State before measuring.** ${meta.streams} streams created with \`PUT /admin/streams/live/<name>\`;
  the hot stream seeded with ${meta.hotViewers} viewers by \`on_play\` hooks (${SEED_CONNECTIONS} connections; the
  admin API confirmed ${meta.hotConfirmed} live viewers); every heartbeat server registered by one heartbeat; then one
  unmeasured warm-up run per scenario and server.
- **Rounds.** In each round every scenario runs against streamgate and the floor (the hot stream
  also against the empty stream, in ${meta.hotSlices} alternating slices per round so that bursts of
  background work, such as the alarms of the churned streams, fall on both alike), the order
  rotating from round to round. Heartbeats run last,
  in rounds of their own: the benchmark's heartbeat servers fall silent after each run, and
  \`SERVER_TIMEOUT_S\` later all of them die at once (a burst of registry alarms no real fleet
  sends); run last, those bursts fall after the measurements. Reported: the median
  over rounds of req/s (requests ÷ time from start to last answer) and of p50, p99 and p99.9
  (exact, from every request's latency). Errors are summed over rounds: connection errors,
  timeouts, requests left without an answer (a connection closed under them), and every answer
  other than the expected one (\`200 {"code":0}\`; for the denial flood \`403\` with code 4003, or
  4029 once an ip is rate limited; the floor always \`200\`), plus error lines streamgate logs.

${findings || "## Findings\n\n(none recorded yet)\n"}`;
  await writeFile(file, text);
  return file;
}

// --- main -------------------------------------------------------------------------------

let cleanup = async () => {};

async function main() {
  const began = performance.now();
  const tmp = await mkdtemp(path.join(os.tmpdir(), "streamgate-bench-"));
  let mf;
  cleanup = async () => {
    const m = mf;
    mf = undefined;
    if (m) await Promise.race([m.dispose().catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
  };
  // Whatever way the process ends (deadline, error, signal), the temp dir goes with it.
  process.once("exit", () => rmSync(tmp, { recursive: true, force: true }));
  process.once("SIGINT", () => cleanup().finally(() => process.exit(130)));
  process.once("SIGTERM", () => cleanup().finally(() => process.exit(143)));

  try {
    const { connections, rounds } = PLAN;
    console.log(`streamgate bench${SMOKE ? " (smoke)" : ""}: ${rounds} round(s), ${connections} connections`);
    const script = await bundle(path.join(tmp, "bundle"));
    if (AUTOGATES) process.env.WORKERD_ALL_AUTOGATES = "1"; // inherited by the workerd Miniflare spawns
    mf = serve(script, path.join(tmp, "state"));
    await mf.ready.catch((err) => {
      throw new Error(`${err.message}\nworkerd said:\n${runtimeTail.join("\n")}`);
    });
    const urls = { streamgate: await mf.unsafeGetDirectURL("streamgate"), floor: await mf.unsafeGetDirectURL("floor") };
    console.log(`serving streamgate on ${urls.streamgate.href}, floor on ${urls.floor.href}`);

    // State: streams, edges, heartbeat servers, the hot stream's audience.
    let t = performance.now();
    const names = Array.from({ length: PLAN.streams }, (_, i) => `cam${String(i + 1).padStart(4, "0")}`);
    const [streams, special] = await Promise.all([createStreams(urls.streamgate, names), createStreams(urls.streamgate, ["hot", "quiet"])]);
    const state = {
      streams,
      hot: special[0],
      empty: special[1],
      edges: Array.from({ length: PLAN.edges }, (_, i) => newEdge(i)),
      heartbeatServers: Array.from({ length: PLAN.heartbeatServers }, (_, i) => newEdge(100 + i)),
      hotViewers: PLAN.hotViewers,
    };
    state.pickDenied = cycle(streams);
    state.pickBeating = cycle(state.heartbeatServers);
    console.log(`created ${streams.length + 2} streams in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // Every server is known before the load starts, as in a running fleet, so that no measured
    // request pays for a server's first contact. Edges register with a play/stop pair (never a
    // heartbeat: a server that heartbeats and then falls silent is declared dead).
    t = performance.now();
    for (const edge of state.edges) {
      const client = clientIds();
      await hook(urls.streamgate, HOOK, streamBody("on_play", state.empty, edge, client, ""));
      await hook(urls.streamgate, HOOK, streamBody("on_stop", state.empty, edge, client, ""));
    }
    await pool(state.heartbeatServers, 8, (server) => hook(urls.streamgate, `${HOOK}/heartbeat`, heartbeatBody(server)));
    console.log(`registered ${state.edges.length} edges and ${state.heartbeatServers.length} heartbeat servers in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    t = performance.now();
    const seed = [
      {
        path: HOOK,
        body: () => streamBody("on_play", state.hot, state.edges[(Math.random() * state.edges.length) | 0], clientIds(), ""),
        expect: ALLOW,
      },
    ];
    const seeded = await load(urls.streamgate, seed, PLAN.hotViewers, SEED_CONNECTIONS, "seeding the hot stream");
    const hotConfirmed = await viewersOf(urls.streamgate, "hot");
    if (hotConfirmed !== PLAN.hotViewers) throw new Error(`hot stream holds ${hotConfirmed} viewers, expected ${PLAN.hotViewers}`);
    console.log(`seeded ${hotConfirmed} viewers on live/hot in ${((performance.now() - t) / 1000).toFixed(1)} s (${fmt.rps(seeded.rps)} on_play/s)`);

    const all = scenarios(state);

    // What runs against what: [key in the results, scenario, url, label, floor?]
    const plan = [
      { key: "viewerChurn", amount: PLAN.amount.viewerChurn, pairs: true, targets: [["streamgate", all.viewerChurn], ["floor", all.viewerChurn]] },
      // Sliced: hot, empty and floor take turns every slice, so that background work (alarms of
      // the 1,000 churned streams fire in bursts) falls on all three alike.
      { key: "hot", amount: PLAN.amount.hot, pairs: true, slices: PLAN.hotSlices, targets: [["streamgate", all.hot], ["empty", all.empty], ["floor", all.hot]] },
      { key: "publishChurn", amount: PLAN.amount.publishChurn, pairs: true, targets: [["streamgate", all.publishChurn], ["floor", all.publishChurn]] },
      { key: "denial", amount: PLAN.amount.denial, targets: [["streamgate", all.denial], ["floor", all.denial]] },
      { key: "heartbeat", amount: PLAN.amount.heartbeat, targets: [["streamgate", all.heartbeat], ["floor", all.heartbeat]] },
    ];
    const labels = { streamgate: "streamgate", empty: "streamgate, empty stream", floor: "floor" };
    const urlOf = (target) => (target === "floor" ? urls.floor : urls.streamgate);
    const amountOf = (p) => (p.pairs ? wholePairs(p.amount, connections) : p.amount);

    // Heartbeats are measured last, in a phase of their own. The benchmark's heartbeat servers
    // fall silent after each run, so SERVER_TIMEOUT_S later all of them die at once: a burst of
    // registry alarms that a real fleet (a heartbeat every 10 s) never sees. Measured last, the
    // burst of each run comes after the benchmark has finished; the one of the registration
    // comes during the seeding.
    const phases = [plan.filter((p) => p.key !== "heartbeat"), plan.filter((p) => p.key === "heartbeat")];
    const results = new Map(); // "key/target" -> per-round results
    for (const phase of phases) {
      t = performance.now();
      for (const p of phase) {
        for (const [target, sc] of p.targets) {
          const r = await drive(urlOf(target), sc.requests, { amount: wholePairs(PLAN.warmup, connections), connections, floor: target === "floor" });
          if (r.errors) throw new Error(`warm-up ${sc.title} on ${labels[target]}: ${r.errors} errors ${JSON.stringify(r.breakdown)}, e.g. ${r.samples.join(" | ")}`);
        }
      }
      const names = phase.map((p) => all[p.key].title).join(", ");
      console.log(`${names}: warmed up in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      for (let round = 0; round < rounds; round++) {
        t = performance.now();
        for (const p of phase) {
          const order = p.targets.map((_, i) => p.targets[(i + round) % p.targets.length]);
          const slices = p.slices ?? 1;
          const amount = p.pairs ? wholePairs(amountOf(p) / slices, connections) : Math.ceil(amountOf(p) / slices);
          const parts = new Map(order.map(([target]) => [target, []]));
          for (let slice = 0; slice < slices; slice++) {
            for (const [target, sc] of slice % 2 ? [...order].reverse() : order) {
              parts.get(target).push(await drive(urlOf(target), sc.requests, { amount, connections, floor: target === "floor" }));
            }
          }
          for (const [target, sc] of order) {
            const r = mergeSlices(parts.get(target));
            r.latencies = null; // keep memory flat over rounds
            const id = `${p.key}/${target}`;
            if (!results.has(id)) results.set(id, []);
            results.get(id).push(r);
            if (r.errors) console.log(`  ! ${sc.title} on ${labels[target]}: ${r.errors} errors ${JSON.stringify(r.breakdown)}, e.g. ${r.samples.join(" | ")}`);
          }
        }
        console.log(`${names}: round ${round + 1}/${rounds} done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      }
    }

    const summary = plan.map((p) => ({
      key: p.key,
      title: all[p.key].title,
      what: all[p.key].what,
      targets: p.targets.map(([target]) => {
        const rs = results.get(`${p.key}/${target}`);
        return {
          target,
          label: labels[target],
          rps: median(rs.map((r) => r.rps)),
          p50: median(rs.map((r) => r.p50)),
          p99: median(rs.map((r) => r.p99)),
          p999: median(rs.map((r) => r.p999)),
          errors: rs.reduce((n, r) => n + r.errors, 0),
          rounds: rs,
        };
      }),
    }));
    const table = tableRows(summary);
    console.log("");
    printTable(table);
    const targets = checkTargets(summary);
    console.log("");
    for (const x of targets) console.log(`${x.pass ? "PASS" : "MISS"}  ${x.name}: ${x.value}`);
    if (workerErrors.count) console.log(`streamgate logged ${workerErrors.count} error lines, e.g.\n  ${workerErrors.samples.join("\n  ")}`);

    const seconds = (performance.now() - began) / 1000;
    const errorsSeen = !targets.find((x) => x.name === "zero errors everywhere").pass;
    if (!SMOKE) {
      const file = await writeMarkdown({
        summary,
        targets,
        rounds,
        meta: {
          date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          machine: machine(),
          versions: versions(),
          command: `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`,
          connections,
          seconds,
          amounts: plan.map((p) => `${all[p.key].title} ${amountOf(p).toLocaleString("en-US")}`).join(", "),
          edges: PLAN.edges,
          heartbeatServers: PLAN.heartbeatServers,
          streams: PLAN.streams,
          hotViewers: PLAN.hotViewers.toLocaleString("en-US"),
          hotConfirmed: hotConfirmed.toLocaleString("en-US"),
          autogates: AUTOGATES,
          hotSlices: PLAN.hotSlices,
          bindings: describeBindings(wranglerConfig()),
          vars: Object.entries(wranglerConfig().vars).map(([k, v]) => `\`${k} = "${v}"\``).join(", "),
        },
      });
      console.log(`\nwrote ${path.relative(process.cwd(), file) || file}`);
    }
    console.log(`finished in ${seconds.toFixed(1)} s`);
    return errorsSeen ? 1 : 0;
  } finally {
    await cleanup();
  }
}

const deadline = setTimeout(() => {
  console.error(`bench: no result after ${PLAN.deadlineS} s, giving up`);
  const exit = () => process.exit(2);
  setTimeout(exit, 10_000).unref();
  cleanup().finally(exit);
}, PLAN.deadlineS * 1000);
deadline.unref();

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`bench failed: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
