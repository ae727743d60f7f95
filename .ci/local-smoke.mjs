// Runs the README's local commands for real, in the checkout given as the working directory (.ci/run
// runs it in its fresh clone, after npm install and npm test):
//   1. `npm run dev` with the development secrets it writes, then the README's "Try it locally"
//      block, as one bash script;
//   2. `npm run secrets -- --local` with no .dev.vars, then `npm run dev` again: the generated
//      secrets are the ones in force (the new admin token works, the development one is refused,
//      and the "Try it locally" block, which reads the token from .dev.vars, still works),
//      and SRS's captured on_publish and heartbeat, posted to the URLs `npm run srs-config -- --local`
//      writes into srs.conf, are answered {"code":0} with the stream's key.
// Each `npm run dev` runs in its own process group, which is ended by its id afterwards.
// It deletes .dev.vars and .wrangler/state first, so it refuses to run without --scratch.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";

const BASE = "http://127.0.0.1:8787"; // `npm run dev` without flags (wrangler.toml [dev])
const README = readFileSync("README.md", "utf8");
const fixtures = readFileSync("test/fixtures/hooks-srs7.jsonl", "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const captured = (match) => JSON.parse(fixtures.find((f) => match(f.path, JSON.parse(f.body))).body);

let failed = 0;
function check(name, ok, detail = "") {
  if (!ok) failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : `: ${detail}`}`);
}

async function up() {
  try {
    await fetch(`${BASE}/console/`);
    return true;
  } catch {
    return false;
  }
}

/** `npm run dev`, until it answers; returns a function that ends its process group. */
async function npmRunDev() {
  if (await up()) throw new Error(`${BASE} is already answering: stop the other wrangler dev first`);
  const child = spawn("npm", ["run", "dev"], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const stop = async () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
    for (let i = 0; i < 50 && (await up()); i++) await new Promise((r) => setTimeout(r, 200));
  };
  process.on("exit", () => {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {}
  });
  const deadline = Date.now() + 120_000;
  while (!(await up())) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`npm run dev did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return { stop, log: () => log };
}

async function post(url, body, headers = {}) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "user-agent": "SRS/7.0.18(Hang)", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** The commands of the ```sh block that follows `marker` in the README (continuations joined, comments dropped). */
function readmeBlock(marker) {
  const at = README.indexOf(marker);
  if (at < 0) throw new Error(`README has no "${marker}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(at))[1];
  return block.replace(/\\\n\s*/g, "").split("\n").filter((l) => l.trim() && !l.trim().startsWith("#"));
}

/** The README's "Try it locally" block, run by bash as one script; what it prints. */
function tryItLocally() {
  return execFileSync("bash", ["-euo", "pipefail", "-c", readmeBlock("Try it locally:").join("\n")], { encoding: "utf8" });
}

// ---------------------------------------------------------------- 1. as the README says
if (!process.argv.includes("--scratch")) {
  console.error("usage: node .ci/local-smoke.mjs --scratch   (in a scratch clone: it deletes .dev.vars and .wrangler/state)");
  process.exit(2);
}
rmSync(".dev.vars", { force: true });
rmSync(".wrangler/state", { recursive: true, force: true });
let dev = await npmRunDev();
let publishKey;
try {
  check("npm run dev wrote .dev.vars with the development secrets", /^ADMIN_TOKEN=dev-admin-token-local-development-only$/m.test(readFileSync(".dev.vars", "utf8")));
  const console_ = await fetch(`${BASE}/console/`);
  check("the console is served", console_.status === 200, String(console_.status));
  const out = tryItLocally();
  const stream = JSON.parse(out);
  publishKey = stream.publishKey;
  check("README's curl creates live/cam1 and shows its publish key", stream.app === "live" && stream.stream === "cam1" && typeof publishKey === "string", out);
} finally {
  await dev.stop();
}

// ---------------------------------------------------------------- 2. npm run secrets -- --local, then npm run dev
rmSync(".dev.vars", { force: true });
const printed = Object.fromEntries(
  execFileSync("npm", ["run", "-s", "secrets", "--", "--local"], { encoding: "utf8" })
    .trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
);
check("npm run secrets -- --local printed three secrets", ["HOOK_SECRET", "ADMIN_TOKEN", "TOKEN_SIGNING_KEY"].every((n) => printed[n]?.length >= 32), JSON.stringify(Object.keys(printed)));
const conf = execFileSync("npm", ["run", "-s", "srs-config", "--", "--role", "standalone", "--local", "--device-id", "ci-smoke"], { encoding: "utf8" });
const hookUrl = /^\s*on_publish\s+(\S+);$/m.exec(conf)?.[1];
const heartbeatUrl = /^\s*url\s+(\S+);$/m.exec(conf)?.[1];
check("npm run srs-config -- --local points SRS at the local gate with the generated secret", hookUrl === `${BASE}/hooks/srs/${printed.HOOK_SECRET}`, hookUrl);

dev = await npmRunDev();
try {
  check("npm run dev kept the generated secrets", existsSync(".dev.vars") && readFileSync(".dev.vars", "utf8").includes(`HOOK_SECRET=${printed.HOOK_SECRET}`));
  const admin = (token) => fetch(`${BASE}/admin/streams/live/cam1`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
  check("the generated ADMIN_TOKEN is accepted", (await admin(printed.ADMIN_TOKEN)) === 200);
  check("the development ADMIN_TOKEN is refused", (await admin("dev-admin-token-local-development-only")) === 401);
  const again = tryItLocally();
  check("README's Try it locally block works with the generated admin token too", /"app":"live","stream":"cam1"/.test(again) && !/"error"/.test(again), again);

  const beat = await post(heartbeatUrl, captured((path) => path.endsWith("/heartbeat")));
  check("SRS's heartbeat, posted to srs.conf's heartbeat URL, is answered {code:0}", beat.status === 200 && beat.body?.code === 0, JSON.stringify(beat));
  const publish = { ...captured((_, b) => b.action === "on_publish"), param: `?key=${publishKey}` };
  const allowed = await post(hookUrl, publish);
  check("SRS's on_publish with the stream's key, posted to srs.conf's hook URL, is allowed", allowed.status === 200 && allowed.body?.code === 0, JSON.stringify(allowed));
  const wrongSecret = await post(`${BASE}/hooks/srs/dev-hook-secret-local-development-only`, publish);
  check("the development HOOK_SECRET is refused (404)", wrongSecret.status === 404, JSON.stringify(wrongSecret));
} finally {
  await dev.stop();
}

console.log(failed === 0 ? "local smoke: all passed" : `local smoke: ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
