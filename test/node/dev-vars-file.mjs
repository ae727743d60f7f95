// .dev.vars as wrangler dev reads it, against the three scripts that read or write it:
// `npm run secrets -- --local` (scripts/secrets.mjs), `npm run dev`'s predev (scripts/dev-vars.mjs)
// and `npm run srs-config -- --local` (scripts/srs-config.ts). wrangler reads the file with dotenv's
// parse (bundled in wrangler-dist/cli.js): a line may begin with spaces and `export `, and the last
// line that names a key wins. A script that saw only `NAME=` at the start of a line took
// `export HOOK_SECRET=…` for a missing secret and appended one, which then replaced the operator's
// (secrets --local, and npm run dev with the public development value); a rotation rewrote the first
// of two HOOK_SECRET lines while wrangler kept reading the second. Run by npm test (node --test).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

const ROOT = new URL("../../", import.meta.url).pathname;
const scratch = [];
after(() => scratch.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const MINE = "my-own-hook-secret-of-32-characters-x";
const MY_ADMIN = "my-own-admin-token-of-32-characters-xx";

/** A checkout's scripts and .dev.vars.example in a scratch directory (dev-vars.mjs writes ../.dev.vars). */
function checkout(devVars) {
  const dir = mkdtempSync(join(tmpdir(), "streamgate-dev-vars-"));
  scratch.push(dir);
  mkdirSync(join(dir, "scripts"));
  cpSync(join(ROOT, "scripts"), join(dir, "scripts"), { recursive: true });
  cpSync(join(ROOT, ".dev.vars.example"), join(dir, ".dev.vars.example"));
  if (devVars !== undefined) writeFileSync(join(dir, ".dev.vars"), devVars);
  return dir;
}

/** What wrangler dev reads: dotenv's parse, as wrangler 4 bundles it (its LINE expression, last key wins). */
function wranglerReads(dir) {
  const LINE = /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/gm;
  const text = readFileSync(join(dir, ".dev.vars"), "utf8").replace(/\r\n?/g, "\n");
  const vars = {};
  for (const m of text.matchAll(LINE)) vars[m[1]] = (m[2] || "").trim().replace(/^(['"`])([\s\S]*)\1$/gm, "$2");
  return vars;
}

function node(dir, args, env = {}) {
  const r = spawnSync(process.execPath, ["--no-warnings", ...args], { cwd: dir, encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const printed = (stdout) =>
  Object.fromEntries(stdout.trim().split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));

describe(".dev.vars lines wrangler reads, which the scripts must read the same way", () => {
  it("npm run secrets -- --local keeps `export HOOK_SECRET=…` and an indented ADMIN_TOKEN (no second line that wrangler reads instead)", () => {
    const dir = checkout(`export HOOK_SECRET=${MINE}\n  ADMIN_TOKEN=${MY_ADMIN}\n`);
    const r = node(dir, ["scripts/secrets.mjs", "--local"]);
    assert.equal(r.status, 0, r.stderr);
    const vars = wranglerReads(dir);
    assert.equal(vars.HOOK_SECRET, MINE, readFileSync(join(dir, ".dev.vars"), "utf8"));
    assert.equal(vars.ADMIN_TOKEN, MY_ADMIN);
    assert.deepEqual(Object.keys(printed(r.stdout)).sort(), ["EVENTS_WEBHOOK_SECRET", "TOKEN_SIGNING_KEY"]);
    assert.match(r.stderr, /kept HOOK_SECRET, ADMIN_TOKEN/);
  });

  it("npm run dev (predev) never puts the public development HOOK_SECRET after an `export HOOK_SECRET=…` line", () => {
    const dir = checkout(`export HOOK_SECRET=${MINE}\n`);
    const r = node(dir, ["scripts/dev-vars.mjs"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(wranglerReads(dir).HOOK_SECRET, MINE, readFileSync(join(dir, ".dev.vars"), "utf8"));
    assert.ok(wranglerReads(dir).ADMIN_TOKEN, "the missing ones are still written");
  });

  it("--local --rotate with HOOK_SECRET on two lines: wrangler then reads the printed new value, and the old one it read as HOOK_SECRET_PREVIOUS", () => {
    const stale = "an-older-hook-secret-of-32-characters-x";
    const dir = checkout(`HOOK_SECRET=${stale}\nADMIN_TOKEN=${MY_ADMIN}\nHOOK_SECRET=${MINE}\n`);
    assert.equal(wranglerReads(dir).HOOK_SECRET, MINE, "the last line is the one in force");
    const r = node(dir, ["scripts/secrets.mjs", "--local", "--rotate", "HOOK_SECRET"]);
    assert.equal(r.status, 0, r.stderr);
    const vars = wranglerReads(dir);
    assert.equal(vars.HOOK_SECRET, printed(r.stdout).HOOK_SECRET, readFileSync(join(dir, ".dev.vars"), "utf8"));
    assert.equal(vars.HOOK_SECRET_PREVIOUS, MINE);
    assert.equal(vars.ADMIN_TOKEN, MY_ADMIN);
  });

  it("npm run dev warns about an events secret the Worker refuses, by the Worker's rule (whsec_ keys of 24+ bytes), naming what it stops", () => {
    const shortKey = `whsec_${Buffer.alloc(20, 7).toString("base64")}`; // 34 characters, but a 20-byte key
    assert.ok(shortKey.length >= 32);
    const warned = node(checkout(`EVENTS_WEBHOOK_SECRET=${shortKey}\n`), ["scripts/dev-vars.mjs"]);
    assert.equal(warned.status, 0, warned.stderr);
    assert.match(warned.stderr, /WARNING: EVENTS_WEBHOOK_SECRET in \.dev\.vars is neither whsec_ \+ base64 of a key of at least 24 bytes nor 32 or more characters, so no event is sent/);
    assert.doesNotMatch(warned.stderr, /undefined/);
    const good = node(checkout(`EVENTS_WEBHOOK_SECRET=whsec_${Buffer.alloc(24, 7).toString("base64")}\n`), ["scripts/dev-vars.mjs"]);
    assert.equal(good.status, 0, good.stderr);
    assert.doesNotMatch(good.stderr, /WARNING/);
  });

  it("npm run srs-config -- --local writes the HOOK_SECRET wrangler reads into the hook URLs", () => {
    const dir = checkout(`HOOK_SECRET=an-older-hook-secret-of-32-characters-x\nexport HOOK_SECRET=${MINE}\n`);
    const r = node(dir, ["scripts/srs-config.ts", "--role", "standalone", "--local", "--device-id", "live-1"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^        on_publish      http://127\\.0\\.0\\.1:8787/hooks/srs/${MINE};$`, "m"));
  });
});
