// `npm run secrets` (scripts/secrets.mjs), run as a process: --local against a .dev.vars in a
// scratch directory, and the deployed mode against a fake `wrangler` first on PATH that answers
// `secret list` as told and records what `secret bulk` received. Run by npm test (node --test).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, it } from "node:test";

const SCRIPT = new URL("../../scripts/secrets.mjs", import.meta.url).pathname;
const NAMES = ["HOOK_SECRET", "ADMIN_TOKEN", "TOKEN_SIGNING_KEY", "EVENTS_WEBHOOK_SECRET"];
const scratch = [];
after(() => scratch.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), "streamgate-secrets-"));
  scratch.push(dir);
  return dir;
}

/** A `wrangler` that answers `secret list` with FAKE_LIST (or fails with FAKE_LIST_ERROR) and logs every call. */
function fakeWrangler() {
  const dir = tempDir();
  writeFileSync(
    join(dir, "fake.mjs"),
    `import { appendFileSync, readFileSync } from "node:fs";
const args = process.argv.slice(2);
const stdin = args[1] === "bulk" ? readFileSync(0, "utf8") : "";
appendFileSync(process.env.FAKE_LOG, JSON.stringify({ args, stdin }) + "\\n");
if (args[1] === "list") {
  if (process.env.FAKE_LIST_ERROR) { console.error(process.env.FAKE_LIST_ERROR); process.exit(1); }
  console.log(process.env.FAKE_LIST);
} else if (args[1] === "delete") {
  if ((process.env.FAKE_MISSING ?? "").split(",").includes(args[2])) { console.error("X [ERROR] A request to the Cloudflare API failed. This Worker does not have a secret named " + args[2] + ". [code: 10056] (not found)"); process.exit(1); }
  console.log("✨ Success! Deleted secret " + args[2]);
} else if (args[1] === "bulk") {
  if (process.env.FAKE_BULK_FAILS) { console.error("API error"); process.exit(1); }
  for (const key of Object.keys(JSON.parse(stdin))) console.log("✨ Successfully created secret for key: " + key);
}
`,
  );
  writeFileSync(join(dir, "wrangler"), `#!/bin/sh\nexec "${process.execPath}" "${join(dir, "fake.mjs")}" "$@"\n`);
  chmodSync(join(dir, "wrangler"), 0o755);
  return dir;
}

function run(args, { cwd = tempDir(), env = {} } = {}) {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], { cwd, encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, cwd };
}

/** NAME=value lines printed on stdout. */
function printed(stdout) {
  return Object.fromEntries(stdout.trim().split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
}

function devVars(dir) {
  return Object.fromEntries(
    readFileSync(join(dir, ".dev.vars"), "utf8").split("\n").filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

function assertStrong(values) {
  for (const v of values) {
    // The events' secret in the Standard Webhooks form: "whsec_" + base64 of 32 random bytes.
    if (v.startsWith("whsec_")) assert.equal(Buffer.from(v.slice(6), "base64").length, 32, "whsec_ + base64 of 32 random bytes");
    else assert.match(v, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
  }
  assert.equal(new Set(values).size, values.length, "all different");
}

describe("npm run secrets -- --local", () => {
  it("writes the four secrets, strong and different, to a new .dev.vars and prints them", () => {
    const r = run(["--local"]);
    assert.equal(r.status, 0, r.stderr);
    const vars = devVars(r.cwd);
    assert.deepEqual(Object.keys(vars).sort(), [...NAMES].sort());
    assertStrong(Object.values(vars));
    assert.deepEqual(printed(r.stdout), vars);
  });

  it("never replaces a secret that is there, and keeps the file's other lines", () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, ".dev.vars"), "# mine\nHOOK_SECRET=my-own-hook-secret-of-32-characters-x\nSERVER_TIMEOUT_S=5\n");
    const r = run(["--local"], { cwd });
    assert.equal(r.status, 0, r.stderr);
    const text = readFileSync(join(cwd, ".dev.vars"), "utf8");
    assert.match(text, /^# mine\nHOOK_SECRET=my-own-hook-secret-of-32-characters-x\nSERVER_TIMEOUT_S=5\n/);
    assert.deepEqual(Object.keys(printed(r.stdout)).sort(), ["ADMIN_TOKEN", "EVENTS_WEBHOOK_SECRET", "TOKEN_SIGNING_KEY"]);
    assert.match(r.stderr, /kept HOOK_SECRET/);

    const again = run(["--local"], { cwd });
    assert.equal(again.status, 0);
    assert.equal(again.stdout, "");
    assert.equal(readFileSync(join(cwd, ".dev.vars"), "utf8"), text);
  });

  it("after npm run dev (the README's order) it keeps the public development values, says so, and its advice gives random ones", () => {
    const cwd = tempDir();
    // What scripts/dev-vars.mjs (npm run dev) writes: the values of .dev.vars.example.
    const example = readFileSync(new URL("../../.dev.vars.example", import.meta.url), "utf8");
    const dev = Object.fromEntries(example.split("\n").map((l) => /^([A-Z_]+)=(.+)$/.exec(l)).filter(Boolean).map(([, n, v]) => [n, v]));
    assert.deepEqual(Object.keys(dev).sort(), [...NAMES].sort());
    writeFileSync(join(cwd, ".dev.vars"), Object.entries(dev).map(([n, v]) => `${n}=${v}\n`).join(""));
    const r = run(["--local"], { cwd });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "");
    assert.deepEqual(devVars(cwd), dev, "never replaced without --rotate");
    const advice = /are the development values that npm run dev wrote \(public[^)]*\)\. For random ones: npm run secrets -- (.*?), then restart npm run dev/.exec(r.stderr);
    assert.ok(advice, r.stderr);
    const rotated = run(advice[1].split(" "), { cwd });
    assert.equal(rotated.status, 0, rotated.stderr);
    const vars = devVars(cwd);
    assert.deepEqual(Object.keys(vars).sort(), [...NAMES].sort(), "no _PREVIOUS keeps a public value accepted");
    assertStrong(Object.values(vars));
    for (const name of NAMES) assert.notEqual(vars[name], dev[name]);
    assert.doesNotMatch(run(["--local"], { cwd }).stderr, /development values/, "random ones get no such note");
    // One secret of your own among the defaults: only the defaults are named.
    writeFileSync(join(cwd, ".dev.vars"), `HOOK_SECRET=${dev.HOOK_SECRET}\nADMIN_TOKEN=my-own-admin-token-of-32-characters-xx\n`);
    const mixed = run(["--local"], { cwd });
    assert.match(mixed.stderr, /HOOK_SECRET in \.dev\.vars is the development value .*--rotate HOOK_SECRET --no-previous/);
  });

  it("--rotate HOOK_SECRET moves the current value to HOOK_SECRET_PREVIOUS, and refuses a second rotation before it is finished", () => {
    const first = run(["--local"]);
    const old = devVars(first.cwd);
    const r = run(["--local", "--rotate", "HOOK_SECRET"], { cwd: first.cwd });
    assert.equal(r.status, 0, r.stderr);
    const vars = devVars(first.cwd);
    assert.equal(vars.HOOK_SECRET_PREVIOUS, old.HOOK_SECRET);
    assert.notEqual(vars.HOOK_SECRET, old.HOOK_SECRET);
    assertStrong([vars.HOOK_SECRET, old.HOOK_SECRET]);
    assert.equal(vars.ADMIN_TOKEN, old.ADMIN_TOKEN);
    assert.deepEqual(printed(r.stdout), { HOOK_SECRET: vars.HOOK_SECRET });

    const second = run(["--local", "--rotate", "HOOK_SECRET"], { cwd: first.cwd });
    assert.notEqual(second.status, 0);
    assert.match(second.stderr, /rotation of HOOK_SECRET is in progress/);
    assert.deepEqual(devVars(first.cwd), vars);
  });

  it("--rotate ADMIN_TOKEN replaces it (there is no previous admin token); --no-previous drops the old hook secret at once", () => {
    const first = run(["--local"]);
    const old = devVars(first.cwd);
    assert.equal(run(["--local", "--rotate", "ADMIN_TOKEN"], { cwd: first.cwd }).status, 0);
    assert.equal(run(["--local", "--rotate", "HOOK_SECRET", "--no-previous"], { cwd: first.cwd }).status, 0);
    const vars = devVars(first.cwd);
    assert.notEqual(vars.ADMIN_TOKEN, old.ADMIN_TOKEN);
    assert.notEqual(vars.HOOK_SECRET, old.HOOK_SECRET);
    assert.equal(vars.ADMIN_TOKEN_PREVIOUS, undefined);
    assert.equal(vars.HOOK_SECRET_PREVIOUS, undefined);
  });

  it("--no-previous also removes a HOOK_SECRET_PREVIOUS left from an earlier rotation, so that no older value stays accepted (a leak)", () => {
    const first = run(["--local"]);
    assert.equal(run(["--local", "--rotate", "HOOK_SECRET"], { cwd: first.cwd }).status, 0);
    const rotating = devVars(first.cwd);
    assert.ok(rotating.HOOK_SECRET_PREVIOUS);
    const r = run(["--local", "--rotate", "HOOK_SECRET", "--no-previous"], { cwd: first.cwd });
    assert.equal(r.status, 0, r.stderr);
    const vars = devVars(first.cwd);
    assert.equal(vars.HOOK_SECRET_PREVIOUS, undefined, "the value of the earlier rotation is no longer in .dev.vars");
    assert.ok(![rotating.HOOK_SECRET, rotating.HOOK_SECRET_PREVIOUS].includes(vars.HOOK_SECRET));
    assert.equal(vars.ADMIN_TOKEN, rotating.ADMIN_TOKEN);
    assert.deepEqual(printed(r.stdout), { HOOK_SECRET: vars.HOOK_SECRET });
    assert.match(r.stderr, /removed HOOK_SECRET_PREVIOUS/);
  });

  it("says that a running npm run dev keeps the old values until it is restarted (wrangler dev reads .dev.vars only at start)", () => {
    const first = run(["--local"]);
    assert.match(first.stderr, /restart npm run dev/);
    const rotated = run(["--local", "--rotate", "ADMIN_TOKEN"], { cwd: first.cwd });
    assert.equal(rotated.status, 0, rotated.stderr);
    assert.match(rotated.stderr, /restart npm run dev/);
    assert.doesNotMatch(rotated.stderr, /refused from now on/, "the running npm run dev still accepts the old token");
  });

  it("--help shows one -- before all the options (npm passes what follows it to the script)", () => {
    const r = run(["--help"]);
    assert.equal(r.status, 0);
    assert.equal(r.stdout.match(/(?<![\w-])--(?![\w-])/g)?.length, 1, r.stdout);
  });

  it("refuses --rotate given twice instead of rotating only the names of the last one", () => {
    // `--rotate HOOK_SECRET --rotate TOKEN_SIGNING_KEY` rotated only TOKEN_SIGNING_KEY, exit 0.
    const first = run(["--local"]);
    const old = devVars(first.cwd);
    const r = run(["--local", "--rotate", "HOOK_SECRET", "--rotate", "TOKEN_SIGNING_KEY"], { cwd: first.cwd });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--rotate is given twice/);
    assert.equal(r.stdout, "");
    assert.deepEqual(devVars(first.cwd), old);
  });

  it("refuses unknown arguments and secret names", () => {
    assert.equal(run(["--local", "--rotate", "PASSWORD"]).status, 2);
    assert.equal(run(["--force"]).status, 2);
  });
});

describe("npm run secrets (deployed Worker, through wrangler)", () => {
  const bin = fakeWrangler();
  function remote(args, { list = [], listError, bulkFails, env = {} } = {}) {
    const log = join(tempDir(), "calls.jsonl");
    writeFileSync(log, "");
    const r = run(args, {
      env: {
        PATH: `${bin}${delimiter}${process.env.PATH}`,
        FAKE_LOG: log,
        FAKE_LIST: JSON.stringify(list.map((name) => ({ name, type: "secret_text" })), null, "  "),
        ...(listError ? { FAKE_LIST_ERROR: listError } : {}),
        ...(bulkFails ? { FAKE_BULK_FAILS: "1" } : {}),
        ...env,
      },
    });
    const calls = readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const bulks = calls.filter((c) => c.args[1] === "bulk");
    return { ...r, calls, bulk: bulks.length === 1 ? JSON.parse(bulks[0].stdin) : bulks.length === 0 ? null : "more than one bulk call" };
  }

  it("stores the four with one wrangler secret bulk (values on stdin, not in arguments) and prints them once", () => {
    const r = remote([]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.calls[0].args, ["secret", "list", "--format", "json"]);
    assert.deepEqual(r.calls[1].args, ["secret", "bulk"]);
    assert.deepEqual(Object.keys(r.bulk).sort(), [...NAMES].sort());
    assertStrong(Object.values(r.bulk));
    assert.deepEqual(printed(r.stdout), r.bulk);
    assert.equal(existsSync(join(r.cwd, ".dev.vars")), false);
  });

  it("stores only the missing ones", () => {
    const r = remote([], { list: ["HOOK_SECRET", "ADMIN_TOKEN"] });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(Object.keys(r.bulk), ["TOKEN_SIGNING_KEY", "EVENTS_WEBHOOK_SECRET"]);
    assert.match(r.stderr, /kept HOOK_SECRET, ADMIN_TOKEN/);
  });

  it("changes nothing when all four exist", () => {
    const r = remote([], { list: NAMES });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.bulk, null);
    assert.equal(r.stdout, "");
  });

  it("a Worker that does not exist yet gets all four (wrangler creates it as a draft)", () => {
    const r = remote([], { listError: 'X [ERROR] Worker "streamgate" not found.' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(Object.keys(r.bulk).sort(), [...NAMES].sort());
  });

  it("stops when wrangler secret list fails otherwise (not logged in), storing nothing", () => {
    const r = remote([], { listError: "X [ERROR] You are not authenticated." });
    assert.notEqual(r.status, 0);
    assert.equal(r.bulk, null);
    assert.equal(r.stdout, "");
  });

  it("prints no value when wrangler secret bulk fails", () => {
    const r = remote([], { bulkFails: true });
    assert.notEqual(r.status, 0);
    assert.equal(r.stdout, "");
  });

  it("--rotate HOOK_SECRET needs the current value (Cloudflare never gives it back) and stores it as HOOK_SECRET_PREVIOUS in the same call", () => {
    const refused = remote(["--rotate", "HOOK_SECRET"], { list: NAMES, env: { HOOK_SECRET: "" } });
    assert.notEqual(refused.status, 0);
    assert.equal(refused.bulk, null);
    assert.match(refused.stderr, /give the current one in the environment/);

    const current = "the-current-hook-secret-32-chars-or-more";
    const r = remote(["--rotate", "HOOK_SECRET"], { list: NAMES, env: { HOOK_SECRET: current } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.bulk.HOOK_SECRET_PREVIOUS, current);
    assertStrong([r.bulk.HOOK_SECRET]);
    assert.deepEqual(Object.keys(r.bulk).sort(), ["HOOK_SECRET", "HOOK_SECRET_PREVIOUS"]);
    assert.deepEqual(printed(r.stdout), { HOOK_SECRET: r.bulk.HOOK_SECRET });
    assert.match(r.stderr, /npx wrangler secret delete HOOK_SECRET_PREVIOUS/);
  });

  it("--rotate refuses while a rotation is in progress, and --no-previous replaces at once", () => {
    const busy = remote(["--rotate", "HOOK_SECRET"], { list: [...NAMES, "HOOK_SECRET_PREVIOUS"], env: { HOOK_SECRET: "the-current-hook-secret-32-chars-or-more" } });
    assert.notEqual(busy.status, 0);
    assert.equal(busy.bulk, null);

    const now = remote(["--rotate", "HOOK_SECRET", "--no-previous"], { list: NAMES, env: { HOOK_SECRET: "" } });
    assert.equal(now.status, 0, now.stderr);
    assert.deepEqual(Object.keys(now.bulk), ["HOOK_SECRET"]);
  });

  it("--no-previous also deletes a HOOK_SECRET_PREVIOUS left from an earlier rotation (wrangler secret delete, after the bulk), tolerating one already gone", () => {
    const r = remote(["--rotate", "HOOK_SECRET", "--no-previous"], { list: [...NAMES, "HOOK_SECRET_PREVIOUS", "TOKEN_SIGNING_KEY_PREVIOUS"], env: { HOOK_SECRET: "" } });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(Object.keys(r.bulk), ["HOOK_SECRET"]);
    const deletes = r.calls.filter((c) => c.args[1] === "delete").map((c) => c.args.slice(2));
    assert.deepEqual(deletes, [["HOOK_SECRET_PREVIOUS"]], "only the rotated secret's previous value is deleted");
    assert.ok(r.calls.findIndex((c) => c.args[1] === "bulk") < r.calls.findIndex((c) => c.args[1] === "delete"), "the new value is stored first");
    assert.match(r.stderr, /removed HOOK_SECRET_PREVIOUS/);

    const gone = remote(["--rotate", "HOOK_SECRET", "--no-previous"], { list: [...NAMES, "HOOK_SECRET_PREVIOUS"], env: { HOOK_SECRET: "", FAKE_MISSING: "HOOK_SECRET_PREVIOUS" } });
    assert.equal(gone.status, 0, gone.stderr);
    assert.deepEqual(printed(gone.stdout), { HOOK_SECRET: gone.bulk.HOOK_SECRET });
  });

  it("--rotate with no names rotates them all: the hook secret, signing key and events secret keep a previous one, the admin token does not", () => {
    const env = {
      HOOK_SECRET: "the-current-hook-secret-32-chars-or-more",
      TOKEN_SIGNING_KEY: "the-current-signing-key-32-chars-or-more",
      EVENTS_WEBHOOK_SECRET: "whsec_dGhlLWN1cnJlbnQtZXZlbnRzLXNlY3JldC0zMmJ5dGVz",
    };
    const r = remote(["--rotate"], { list: NAMES, env });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(Object.keys(r.bulk).sort(), [
      "ADMIN_TOKEN", "EVENTS_WEBHOOK_SECRET", "EVENTS_WEBHOOK_SECRET_PREVIOUS", "HOOK_SECRET", "HOOK_SECRET_PREVIOUS", "TOKEN_SIGNING_KEY", "TOKEN_SIGNING_KEY_PREVIOUS",
    ]);
    assert.equal(r.bulk.TOKEN_SIGNING_KEY_PREVIOUS, env.TOKEN_SIGNING_KEY);
    assert.equal(r.bulk.EVENTS_WEBHOOK_SECRET_PREVIOUS, env.EVENTS_WEBHOOK_SECRET);
  });
});

describe("npm run secrets -- --rotate HOOK_SECRET --gate (the current value checked against the deployed gate)", () => {
  const bin = fakeWrangler();
  const accepted = "the-hook-secret-the-srs-servers-use-32chars";
  /** A gate that answers an empty heartbeat as streamgate does: 400 with its hook secret in the path, 404 without. */
  let server;
  let origin;
  const heard = [];
  before(async () => {
    server = createServer((req, res) => {
      heard.push(`${req.method} ${req.url}`);
      res.writeHead(req.url === `/hooks/srs/${accepted}/heartbeat` ? 400 : 404).end();
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => server.close());

  /** As remote() above, but asynchronous: the gate answers from this process meanwhile. */
  async function rotate(args, current) {
    const log = join(tempDir(), "calls.jsonl");
    writeFileSync(log, "");
    const child = spawn(process.execPath, [SCRIPT, ...args], {
      cwd: tempDir(),
      env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH}`, FAKE_LOG: log, FAKE_LIST: JSON.stringify(NAMES.map((name) => ({ name }))), HOOK_SECRET: current },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const status = await new Promise((resolve) => child.on("close", resolve));
    const bulks = readFileSync(log, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l)).filter((c) => c.args[1] === "bulk");
    return { status, stdout, stderr, bulk: bulks.length === 0 ? null : JSON.parse(bulks[0].stdin) };
  }

  it("stores nothing when the gate does not accept the value given (a stale export would have refused every SRS server)", async () => {
    const r = await rotate(["--rotate", "HOOK_SECRET", "--gate", origin], "a-stale-hook-secret-from-an-old-export-32");
    assert.notEqual(r.status, 0);
    assert.equal(r.bulk, null);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /is not the one http:\/\/127\.0\.0\.1:\d+ accepts \(its hook URL answered 404\)/);
  });

  it("rotates when it does, the checked value becoming HOOK_SECRET_PREVIOUS", async () => {
    const r = await rotate(["--rotate", "HOOK_SECRET", "--gate", `${origin}/`], accepted);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.bulk.HOOK_SECRET_PREVIOUS, accepted);
    assert.deepEqual(printed(r.stdout), { HOOK_SECRET: r.bulk.HOOK_SECRET });
    assert.ok(heard.includes(`POST /hooks/srs/${accepted}/heartbeat`));
  });

  it("stores nothing when the gate cannot be reached, and refuses --gate where it checks nothing", async () => {
    const closed = await rotate(["--rotate", "HOOK_SECRET", "--gate", "http://127.0.0.1:9"], accepted);
    assert.notEqual(closed.status, 0);
    assert.equal(closed.bulk, null);
    assert.match(closed.stderr, /could not reach http:\/\/127\.0\.0\.1:9/);
    for (const args of [["--rotate", "ADMIN_TOKEN", "--gate", origin], ["--rotate", "HOOK_SECRET", "--no-previous", "--gate", origin], ["--local", "--rotate", "HOOK_SECRET", "--gate", origin], ["--rotate", "HOOK_SECRET", "--gate", `${origin}/hooks`]]) {
      const r = await rotate(args, accepted);
      assert.equal(r.status, 2, args.join(" "));
      assert.equal(r.bulk, null);
    }
  });

  it("without --gate it rotates as before and says the value was not checked", async () => {
    const r = await rotate(["--rotate", "HOOK_SECRET"], "any-current-hook-secret-32-characters-x");
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /was not checked against the gate \(add --gate/);
  });
});
