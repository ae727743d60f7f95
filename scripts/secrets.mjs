// npm run secrets [-- [--local] [--rotate [NAME,...] [--no-previous]]]
//
// Generates streamgate's secrets (HOOK_SECRET, ADMIN_TOKEN, TOKEN_SIGNING_KEY: 32 random bytes from
// node:crypto, base64url, 43 characters; EVENTS_WEBHOOK_SECRET: the Standard Webhooks form, "whsec_" +
// base64 of 32 random bytes, which the backend receiving the events verifies with), stores them and prints them once as NAME=value lines on
// stdout (everything else goes to stderr).
//
// - Deployed Worker (default): asks `wrangler secret list` which secrets exist and stores the missing
//   ones in one `wrangler secret bulk` call (values on stdin, never on a command line or in a file).
//   If the Worker does not exist yet, wrangler creates it as an empty draft holding the secrets;
//   `npm run deploy` then gives it its code.
// - --local: the same for .dev.vars, which `wrangler dev` reads.
// - An existing secret is never replaced, except with --rotate [NAME,...] (default: all four),
//   which follows the README's rotation procedure. For HOOK_SECRET, TOKEN_SIGNING_KEY and
//   EVENTS_WEBHOOK_SECRET the current value becomes <NAME>_PREVIOUS in the same bulk call, so both
//   values are accepted (events: signed with both) until you delete the _PREVIOUS one. Cloudflare never gives a
//   secret's value back, so for a deployed Worker the current value must be in the environment
//   (HOOK_SECRET=... TOKEN_SIGNING_KEY=..., the values this command printed before); --local reads
//   it from .dev.vars. --no-previous replaces at once (after a leak: the old value stops working
//   now) and removes a <NAME>_PREVIOUS left from an earlier rotation (from .dev.vars, or with
//   `wrangler secret delete` after the bulk call), so that no older value stays accepted either.
//   Without --no-previous, a rotation already in progress (a _PREVIOUS set) is refused: finish it first.
// - --gate <url> (deployed Worker, rotating HOOK_SECRET with a previous one): the current value given
//   is checked against the gate first, since a stale one (an old export) would become
//   HOOK_SECRET_PREVIOUS while every SRS server uses another value, and the new HOOK_SECRET would
//   refuse them all at once. The check is an empty heartbeat to the hook URL with that value: 400 (a
//   bad body) means the gate accepts the secret, 404 that it does not; anything else stops too.
//   Nothing is stored unless it passes.
import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { readDevVars, setDevVar } from "./lib/dev-vars-file.mjs";

const NAMES = ["HOOK_SECRET", "ADMIN_TOKEN", "TOKEN_SIGNING_KEY", "EVENTS_WEBHOOK_SECRET"];
/** The secrets whose old value can stay valid during a rotation (src/env.ts). */
const HAS_PREVIOUS = new Set(["HOOK_SECRET", "TOKEN_SIGNING_KEY", "EVENTS_WEBHOOK_SECRET"]);
const MIN_LENGTH = 32;

/**
 * What the operator does after a rotation, deployed or (local) in .dev.vars; `withPrevious`: the
 * old value was kept as <NAME>_PREVIOUS (not with --no-previous), to be deleted at the end.
 */
function afterRotation(name, local, withPrevious = true) {
  const drop = local ? `delete the ${name}_PREVIOUS line of .dev.vars` : `npx wrangler secret delete ${name}_PREVIOUS`;
  switch (name) {
    case "HOOK_SECRET": {
      const update = "update every SRS server's hook and heartbeat URLs (npm run srs-config with the new HOOK_SECRET) and reload it (killall -1 srs)";
      return withPrevious ? `${update}; when all use the new URL: ${drop}` : update;
    }
    case "TOKEN_SIGNING_KEY":
      return withPrevious
        ? `switch your backend to the new key; once the longest play-token TTL you issue has passed: ${drop}`
        : "switch your backend to the new key (tokens signed with the old one are refused)";
    case "EVENTS_WEBHOOK_SECRET":
      return withPrevious
        ? `events carry two signatures meanwhile, by the new secret and by the old one: give the new one to the backend that receives them (EVENTS_WEBHOOK_URL); once it verifies with it: ${drop}`
        : "give the new one to the backend that receives the events (EVENTS_WEBHOOK_URL): until then it refuses them, and they are retried";
    default:
      return local
        ? "the old token is refused once npm run dev restarts: update your backend; open consoles ask for the new one"
        : "the old token is refused from now on: update your backend; open consoles ask for the new one";
  }
}

const USAGE = `usage: npm run secrets [-- [--local] [--rotate [HOOK_SECRET,ADMIN_TOKEN,TOKEN_SIGNING_KEY,EVENTS_WEBHOOK_SECRET] [--no-previous] [--gate https://<your gate>]]]`;

function fail(message, code = 1) {
  console.error(`streamgate secrets: ${message}`);
  process.exit(code);
}

/**
 * 32 bytes from the CSPRNG, base64url: 43 characters, safe in a URL path and in srs.conf. The events'
 * signing secret in the form Standard Webhooks libraries take: "whsec_" + base64 of the key.
 */
function newSecret(name) {
  if (name === "EVENTS_WEBHOOK_SECRET") return `whsec_${randomBytes(32).toString("base64")}`;
  return randomBytes(32).toString("base64url");
}

// ---------------------------------------------------------------- arguments
const args = process.argv.slice(2);
let local = false;
let rotate = null;
let keepPrevious = true;
let gate = null;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === "--local") local = true;
  else if (arg === "--no-previous") keepPrevious = false;
  else if (arg === "--rotate") {
    if (rotate) fail(`--rotate is given twice: name every secret to rotate after one --rotate (--rotate HOOK_SECRET,TOKEN_SIGNING_KEY)\n${USAGE}`, 2);
    const next = args[i + 1];
    rotate = next && !next.startsWith("--") ? (i++, next.split(",").map((n) => n.trim()).filter(Boolean)) : [...NAMES];
    for (const name of rotate) if (!NAMES.includes(name)) fail(`--rotate: unknown secret "${name}" (one of ${NAMES.join(", ")})\n${USAGE}`, 2);
  } else if (arg === "--gate") {
    if (gate !== null) fail(`--gate is given twice\n${USAGE}`, 2);
    gate = gateOrigin(args[++i]);
  } else if (arg === "--help" || arg === "-h") {
    console.log(USAGE);
    process.exit(0);
  } else fail(`unknown argument "${arg}"\n${USAGE}`, 2);
}
if (!keepPrevious && !rotate) fail(`--no-previous goes with --rotate\n${USAGE}`, 2);
if (gate !== null && (local || !rotate?.includes("HOOK_SECRET") || !keepPrevious)) {
  fail(`--gate checks the current HOOK_SECRET before it becomes HOOK_SECRET_PREVIOUS: it goes with --rotate HOOK_SECRET of a deployed Worker, without --local or --no-previous\n${USAGE}`, 2);
}

/** The gate's origin from --gate (scheme, host, port; nothing else). */
function gateOrigin(value) {
  let url;
  try {
    url = new URL(value ?? "");
  } catch {
    fail(`--gate needs the gate's URL, e.g. --gate https://streamgate.example.workers.dev\n${USAGE}`, 2);
  }
  if ((url.protocol !== "https:" && url.protocol !== "http:") || url.username || url.password || url.search || url.hash || (url.pathname !== "/" && url.pathname !== "")) {
    fail(`--gate "${value}": the gate's origin only (http(s)://host[:port]), no path, query or user\n${USAGE}`, 2);
  }
  return url.origin;
}

/** Stops unless the gate accepts `value` as its hook secret (see --gate above). */
async function checkHookSecret(origin, value) {
  let res;
  try {
    res = await fetch(`${origin}/hooks/srs/${encodeURIComponent(value)}/heartbeat`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
      redirect: "manual",
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    fail(`--gate: could not reach ${origin} to check the current HOOK_SECRET (${err.cause?.message ?? err.message}); nothing was stored`);
  }
  if (res.status === 404) {
    fail(
      `the HOOK_SECRET given is not the one ${origin} accepts (its hook URL answered 404). As HOOK_SECRET_PREVIOUS it would ` +
        `accept no SRS server, and the new HOOK_SECRET would refuse them all. Nothing was stored: give the value your SRS servers use.`,
    );
  }
  if (res.status !== 400) fail(`--gate: ${origin} answered HTTP ${res.status} to the check of the current HOOK_SECRET (400 expected); nothing was stored`);
  console.error(`streamgate secrets: ${origin} accepts the HOOK_SECRET given: it becomes HOOK_SECRET_PREVIOUS.`);
}

// ---------------------------------------------------------------- plan
/**
 * What to write, from the secrets that exist (`existing`: name → value, or null when the value
 * cannot be read back) and the current values the operator supplied for a rotation.
 */
function plan(existing, currentValue) {
  const writes = {};
  const generated = [];
  const kept = [];
  /** <NAME>_PREVIOUS secrets to remove: --no-previous leaves no older value accepted. */
  const drops = [];
  for (const name of NAMES) {
    const exists = existing.has(name);
    if (exists && !rotate?.includes(name)) {
      kept.push(name);
      continue;
    }
    if (exists && HAS_PREVIOUS.has(name) && keepPrevious) {
      if (existing.has(`${name}_PREVIOUS`)) {
        fail(
          `a rotation of ${name} is in progress (${name}_PREVIOUS is set). Finish it first, once nothing uses the ` +
            `old value any more: ${afterRotation(name, local).replace(/^.*: /, "")}`,
        );
      }
      const current = currentValue(name);
      if (!current) {
        fail(
          `--rotate ${name}: Cloudflare never shows a secret's value again, so give the current one in the environment ` +
            `(${name}=<the value this command printed> npm run secrets -- --rotate ${name}); it becomes ${name}_PREVIOUS, ` +
            `accepted until you delete it. Or add --no-previous to replace it at once (everything using the old value is refused).`,
        );
      }
      if (current.length < MIN_LENGTH) fail(`the current ${name} given is shorter than ${MIN_LENGTH} characters: is it the right value?`);
      writes[`${name}_PREVIOUS`] = current;
    }
    if (HAS_PREVIOUS.has(name) && !keepPrevious && existing.has(`${name}_PREVIOUS`)) drops.push(`${name}_PREVIOUS`);
    writes[name] = newSecret(name);
    generated.push(name);
  }
  return { writes, generated, kept, drops };
}

/** `keptNote`: said after the kept ones (--local: those that are npm run dev's public values). */
function report({ writes, generated, kept, drops }, where, keptNote = "") {
  if (kept.length > 0) {
    console.error(
      `streamgate secrets: kept ${kept.join(", ")} (already set ${where}; npm run secrets -- ${local ? "--local " : ""}--rotate ${kept.join(",")} replaces them)`,
    );
  }
  if (keptNote) console.error(keptNote);
  if (generated.length === 0) {
    console.error("streamgate secrets: nothing to do.");
    return;
  }
  console.error(`streamgate secrets: stored ${Object.keys(writes).join(", ")} ${where}.`);
  if (drops.length > 0) {
    console.error(
      `streamgate secrets: removed ${drops.join(", ")} (left from an earlier rotation) ${local ? "from .dev.vars" : "from the Worker"}: that value is no longer accepted either.`,
    );
  }
  // wrangler dev reads .dev.vars when it starts and never again: a running one keeps the old values.
  if (local) console.error("npm run dev reads .dev.vars only when it starts: restart npm run dev if it is running.");
  if (!local) console.error("Keep these values now (a password manager): Cloudflare never shows a secret's value again.");
  for (const name of generated) console.log(`${name}=${writes[name]}`);
  for (const name of generated) {
    if (!rotate?.includes(name)) continue;
    const kept = writes[`${name}_PREVIOUS`] !== undefined;
    let previous = "";
    if (kept) previous = `the old value is ${name}_PREVIOUS and still accepted. `;
    else if (HAS_PREVIOUS.has(name)) previous = `the old value is refused ${local ? "once npm run dev restarts" : "from now on"}. `;
    console.error(`${name}: ${previous}Next: ${afterRotation(name, local, kept)}.`);
  }
}

// ---------------------------------------------------------------- .dev.vars
/** The development values `npm run dev` writes (scripts/dev-vars.mjs), from .dev.vars.example: public. */
function developmentDefaults() {
  const example = new URL("../.dev.vars.example", import.meta.url);
  if (!existsSync(example)) return new Map();
  return new Map(
    readFileSync(example, "utf8")
      .split("\n")
      .map((line) => /^([A-Z_]+)=(.+)$/.exec(line))
      .filter(Boolean)
      .map(([, name, value]) => [name, value.trim()]),
  );
}

function runLocal() {
  const path = ".dev.vars";
  const original = existsSync(path)
    ? readFileSync(path, "utf8")
    : "# Local development secrets (see README), written by npm run secrets -- --local. Never commit this file.\n";
  // As wrangler dev reads it (scripts/lib/dev-vars-file.mjs): `export NAME=`, indented lines, the last
  // of two. A secret set to "" is missing.
  const values = new Map([...readDevVars(original)].filter(([, value]) => value !== ""));
  const p = plan(values, (name) => values.get(name));
  let text = original;
  for (const [name, value] of Object.entries(p.writes)) text = setDevVar(text, name, value);
  for (const name of p.drops) text = setDevVar(text, name, null);
  if (text !== original) writeFileSync(path, text, { mode: 0o600 });
  // Run after `npm run dev` (the README's order), it keeps that command's development values, which
  // anyone can read in .dev.vars.example: say so, and how to get random ones, beside "kept".
  const defaults = developmentDefaults();
  const published = p.kept.filter((name) => defaults.has(name) && values.get(name) === defaults.get(name));
  const note =
    published.length === 0
      ? ""
      : `streamgate secrets: ${published.join(", ")} in .dev.vars ${published.length === 1 ? "is the development value" : "are the development values"} ` +
        `that npm run dev wrote (public: .dev.vars.example holds them). For random ones: ` +
        `npm run secrets -- --local --rotate ${published.join(",")} --no-previous, then restart npm run dev ` +
        `(and make again the SRS configurations made with npm run srs-config -- --local).`;
  report(p, "in .dev.vars", note);
}

// ---------------------------------------------------------------- deployed Worker
/** wrangler from PATH (npm run puts node_modules/.bin first), else this checkout's own. */
function wrangler(args, input = "") {
  const bin = join(new URL("..", import.meta.url).pathname, "node_modules", ".bin");
  const result = spawnSync("wrangler", args, {
    input,
    encoding: "utf8",
    env: { ...process.env, PATH: `${process.env.PATH ?? ""}${delimiter}${bin}` },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (result.error) fail(`could not run wrangler: ${result.error.message}`);
  return { ok: result.status === 0, stdout: result.stdout, stderr: result.stderr };
}

async function runRemote() {
  const list = wrangler(["secret", "list", "--format", "json"]);
  const existing = new Map();
  if (list.ok) {
    let names;
    try {
      const text = list.stdout.trim();
      names = JSON.parse(text.slice(text.indexOf("["), text.lastIndexOf("]") + 1)).map((s) => s.name);
    } catch {
      fail(`could not read the output of wrangler secret list:\n${list.stdout}${list.stderr}`);
    }
    for (const name of names) existing.set(name, null);
  } else if (/not found/i.test(list.stdout + list.stderr)) {
    console.error("streamgate secrets: the Worker does not exist yet; wrangler secret bulk creates it as an empty draft, and npm run deploy gives it its code.");
  } else {
    fail(`wrangler secret list failed (logged in? npx wrangler login):\n${list.stdout}${list.stderr}`);
  }

  const p = plan(existing, (name) => process.env[name]);
  if (p.writes.HOOK_SECRET_PREVIOUS !== undefined) {
    if (gate !== null) await checkHookSecret(gate, p.writes.HOOK_SECRET_PREVIOUS);
    else console.error("streamgate secrets: the current HOOK_SECRET given was not checked against the gate (add --gate https://<your gate> to check it first).");
  }
  if (Object.keys(p.writes).length > 0) {
    const bulk = wrangler(["secret", "bulk"], JSON.stringify(p.writes));
    process.stderr.write(bulk.stdout.replace(/^/gm, "  wrangler: "));
    if (!bulk.ok) fail(`wrangler secret bulk failed, nothing was stored:\n${bulk.stderr}`);
  }
  // Only once the new value is stored: a failed bulk call leaves the rotation as it was.
  const notDeleted = [];
  for (const name of p.drops) {
    const del = wrangler(["secret", "delete", name]);
    process.stderr.write(del.stdout.replace(/^/gm, "  wrangler: "));
    if (!del.ok && !/not found|does not have a secret|10056/i.test(del.stdout + del.stderr)) notDeleted.push([name, del.stderr]);
  }
  p.drops = p.drops.filter((name) => !notDeleted.some(([n]) => n === name));
  report(p, "on the Worker");
  if (notDeleted.length > 0) {
    fail(
      notDeleted.map(([name, err]) => `could not delete ${name}, so its value is still accepted: run npx wrangler secret delete ${name}\n${err}`).join("\n"),
    );
  }
}

if (local) runLocal();
else await runRemote();
