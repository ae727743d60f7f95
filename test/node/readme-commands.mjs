// Every command in a ```sh block of README.md is run by a test or by .ci/run, so a README command
// that stops working fails CI. This file lists, for each, what runs it, and checks that the named
// file really contains the call (and is itself run by npm test or .ci/run). A README command that
// is not listed fails here: run it somewhere, then list it. Two are run right here: the
// srs-config command (its output must be the README's example) and the token command. Commands the
// README names in its text (`npm run bench:floors`, `npx wrangler secret delete …`) cannot all run
// here (a benchmark, an account): each must at least exist, as a package.json script or as a
// wrangler command with the options it shows.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

const ROOT = new URL("../../", import.meta.url).pathname;
const read = (path) => readFileSync(ROOT + path, "utf8");
const README = read("README.md");
const PACKAGE = JSON.parse(read("package.json"));
const CI = read(".ci/run");

/** Commands of every ```sh block: continuation lines joined, comments dropped, `a && b` split. */
function readmeCommands() {
  return [...README.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) =>
    m[1]
      .replace(/\\\n\s*/g, "")
      .split("\n")
      .map((line) => line.replace(/\s+#\s.*$/, "").trim())
      .filter((line) => line && !line.startsWith("#"))
      .flatMap((line) => line.split(/\s+&&\s+/)),
  );
}

const SRS_CONFIG = "npm run -s srs-config -- --role edge --gate https://gate.example.com --device-id edge-eu-1 --origin origin.internal:1935";
const TOKEN = "npm run -s token -- live/cam1 --ttl 3600";

/**
 * What runs each README command: `by` is the file, `evidence` the text in it that runs the command.
 * `match` takes a command (default: the exact text of `command`).
 */
const COVERED = [
  { command: "npm install", by: ".ci/run", evidence: "npm install --no-audit --no-fund" },
  { command: "npm test", by: ".ci/run", evidence: "npm test" },
  { command: "npm run dev", by: ".ci/local-smoke.mjs", evidence: 'spawn("npm", ["run", "dev"]' },
  {
    // The whole "Try it locally" block, whatever it holds: the smoke runs it as one bash script.
    command: "the commands of the README's \"Try it locally\" block",
    match: (cmd) => readmeBlockAfter("Try it locally:").includes(cmd),
    by: ".ci/local-smoke.mjs",
    evidence: 'readmeBlock("Try it locally:")',
  },
  // Needs a browser and a Cloudflare account: CI can only check that wrangler still has the command.
  { command: "npx wrangler login", by: ".ci/run", evidence: "npx wrangler login --help" },
  // Builds exactly what `npm run deploy` uploads, without uploading.
  { command: "npm run deploy", by: ".ci/run", evidence: "npm run deploy -- --dry-run" },
  // Against a fake wrangler (test/node/secrets.mjs); --local runs for real in .ci/local-smoke.mjs.
  { command: "npm run secrets", by: "test/node/secrets.mjs", evidence: "scripts/secrets.mjs" },
  { command: SRS_CONFIG, by: "test/node/readme-commands.mjs", evidence: "it(\"runs the README's srs-config command" },
  { command: TOKEN, by: "test/node/readme-commands.mjs", evidence: "it(\"runs the README's token command" },
  {
    // The admin examples against https://gate.example.com: run against the Worker, in README order.
    command: "the README's curl examples of the admin API",
    match: (cmd) => /^curl -X [A-Z]+ -H "authorization: Bearer \$ADMIN_TOKEN" https:\/\/gate\.example\.com\/admin\//.test(cmd),
    by: "test/readme-examples.test.ts",
    evidence: "readmeAdminExamples()",
  },
];

function readmeBlockAfter(marker) {
  const at = README.indexOf(marker);
  if (at < 0) return [];
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(at))?.[1] ?? "";
  return block.replace(/\\\n\s*/g, "").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
}

const coveredBy = (cmd) => COVERED.find((c) => (c.match ? c.match(cmd) : c.command === cmd));

describe("every command of the README is run by a test or by .ci/run", () => {
  const commands = readmeCommands();

  it("finds the README's commands", () => assert.ok(commands.length >= 8, commands.join("\n")));

  for (const cmd of commands) {
    it(cmd, () => {
      const entry = coveredBy(cmd);
      assert.ok(entry, `nothing runs this README command; run it in a test or in .ci/run and list it in COVERED (${import.meta.url})`);
      assert.ok(read(entry.by).includes(entry.evidence), `${entry.by} no longer contains ${JSON.stringify(entry.evidence)}`);
      // The file that runs it must itself run: node tests through npm test, .ci scripts through .ci/run.
      if (entry.by.startsWith("test/node/")) assert.match(PACKAGE.scripts.test, /node --test test\/node\/\*\.mjs/);
      else if (/^test\/[^/]+\.test\.ts$/.test(entry.by)) assert.match(PACKAGE.scripts.test, /vitest run/);
      else if (entry.by !== ".ci/run") assert.ok(CI.includes(entry.by), `.ci/run does not run ${entry.by}`);
      const script = /^npm run (?:-s )?(\S+)/.exec(cmd)?.[1];
      if (script) assert.ok(PACKAGE.scripts[script], `package.json has no "${script}" script`);
    });
  }
});

/**
 * A README command exactly as written (none of its words is quoted): what it prints is what an
 * operator saves or captures (`> srs.conf`, `TOKEN=$(…)`), so npm's own "> streamgate@… " lines must not be in it.
 */
function runAsWritten(command, env) {
  const [npm, ...words] = command.split(/\s+/);
  assert.equal(npm, "npm");
  const r = spawnSync("npm", words, { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env } });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe("README commands run here", () => {
  it("runs the README's srs-config command as written: it prints the README's example and nothing else, secret aside", () => {
    assert.ok(readmeCommands().includes(SRS_CONFIG), "the README's srs-config command changed: update SRS_CONFIG");
    const secret = "Zr0H5f2YcW-uq8N1sJxk_3dVb7LmTa9pEoGi4QnBtKw";
    // SRS refuses to start on any line of srs.conf that is not configuration (npm's "> streamgate@… srs-config").
    const out = runAsWritten(SRS_CONFIG, { HOOK_SECRET: secret }).replaceAll(secret, "<HOOK_SECRET>");
    const at = README.indexOf("The edge of the command in \"Configure SRS\"");
    assert.ok(at > 0, "README lost the example's introduction");
    const example = /```nginx\n([\s\S]*?)```/.exec(README.slice(at))[1];
    assert.equal(example, out);
  });

  it("runs the README's token command: a play token for live/cam1, valid for an hour, signed with TOKEN_SIGNING_KEY", () => {
    assert.ok(readmeCommands().includes(TOKEN), "the README's token command changed: update TOKEN");
    const key = "readme-token-signing-key-32-chars-or-more";
    const output = runAsWritten(TOKEN, { TOKEN_SIGNING_KEY: key });
    assert.match(output, /^v2\.[^\s]+\n$/, "the command prints the token alone, on one line");
    const token = output.trim();
    const [version, resource, iat, exp, sub, signature] = token.split(".");
    assert.equal(version, "v2");
    assert.equal(Buffer.from(resource, "base64url").toString(), "__defaultVhost__/live/cam1");
    assert.ok(Math.abs(Number(iat) - Date.now() / 1000) < 60);
    assert.equal(Number(exp) - Number(iat), 3600);
    assert.equal(sub, "-"); // no viewer id
    assert.equal(signature, createHmac("sha256", key).update(`v2.${resource}.${iat}.${exp}.${sub}`).digest("base64url"));
  });
});

/** Commands named in the README's running text (`npm run …`, `npx wrangler …`), outside the ```sh blocks. */
function inlineCommands() {
  return [...new Set([...README.matchAll(/`((?:npm run|npx wrangler) [^`]+)`/g)].map((m) => m[1]))];
}

const wranglerHelps = new Map();
/** `wrangler <command> --help`, as this checkout's wrangler prints it. */
function wranglerHelp(command) {
  if (!wranglerHelps.has(command)) {
    const r = spawnSync(ROOT + "node_modules/.bin/wrangler", [command, "--help"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, `wrangler ${command} --help: ${r.stderr}`);
    wranglerHelps.set(command, r.stdout + r.stderr);
  }
  return wranglerHelps.get(command);
}

describe("the README's wrangler commands can be typed as they are", () => {
  // wrangler is this project's devDependency, not on the operator's PATH: `wrangler secret put …`
  // typed in the checkout is "command not found", and such a command escapes the checks below.
  it("every `wrangler secret …` the README tells the operator to run goes through npx", () => {
    const bare = [...README.matchAll(/`(wrangler\s+secret\s+(?:put|delete)\s[^`]*)`/g)].map((m) => m[1].replace(/\s+/g, " "));
    assert.deepEqual(bare, []);
  });
});

describe("commands named in the README's text exist: its npm scripts, wrangler's commands and options", () => {
  const commands = inlineCommands();

  it("finds them", () => assert.ok(commands.some((c) => c.startsWith("npx wrangler")) && commands.some((c) => c.startsWith("npm run")), commands.join("\n")));

  for (const cmd of commands) {
    it(cmd, () => {
      const script = /^npm run (?:-s )?(\S+)/.exec(cmd)?.[1];
      if (script) return assert.ok(PACKAGE.scripts[script], `package.json has no "${script}" script`);
      const [command, next, ...rest] = cmd.split(/\s+/).slice(2);
      const help = wranglerHelp(command);
      if (next && /^[a-z]+$/.test(next)) assert.match(help, new RegExp(`wrangler ${command} ${next}\\b`), `wrangler ${command} has no "${next}"`);
      for (const option of [next, ...rest].filter((w) => w?.startsWith("--"))) assert.ok(help.includes(option), `wrangler ${command} has no ${option}`);
    });
  }
});
