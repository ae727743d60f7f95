// `npm run token` (scripts/token.ts), run as an operator runs it: --help, a token naming a viewer
// (--sub), and a season pass for every stream of an app ('live/*'), each decoded and checked by
// the gate's own verifier. Run by npm test (node --test).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { verifyPlayToken } from "../../src/auth/token.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const KEY = "token-command-test-signing-key-32-chars-or-more";
const b64 = (s) => Buffer.from(s).toString("base64url");

function token(args, env = { TOKEN_SIGNING_KEY: KEY }) {
  const r = spawnSync("npm", ["run", "-s", "token", "--", ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const stream = (name) => ({ vhost: "__defaultVhost__", app: "live", stream: name });
const now = () => Math.floor(Date.now() / 1000);

describe("npm run token", () => {
  it("--help and -h print the usage on stdout and exit 0, saying where the signing key comes from", () => {
    for (const flag of ["--help", "-h"]) {
      const r = token([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^usage: npm run -s token -- <app>\/<stream>/);
      assert.match(r.stdout, /TOKEN_SIGNING_KEY from the environment, else[\s\S]*\.dev\.vars/);
      assert.match(r.stdout, /without the environment variable, the token\s+is signed with the local key/);
    }
  });

  it("--sub makes a v2 token that names the viewer, for that stream only", async () => {
    const r = token(["live/cam1", "--sub", "alice@example.com", "--ttl", "600"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^v2\.\S+\n$/, "the token alone, on one line");
    const t = r.stdout.trim();
    const [version, resource, iat, exp, sub] = t.split(".");
    assert.equal(version, "v2");
    assert.equal(Buffer.from(resource, "base64url").toString(), "__defaultVhost__/live/cam1");
    assert.equal(sub, b64("alice@example.com"));
    assert.equal(Number(exp) - Number(iat), 600);
    assert.deepEqual(await verifyPlayToken(t, stream("cam1"), now(), [KEY]), { ok: true, sub: "alice@example.com", issuedAt: Number(iat) });
    assert.equal((await verifyPlayToken(t, stream("cam2"), now(), [KEY])).ok, false);
  });

  it("'live/*' makes a season pass: every stream of the app plays with it, another app's do not", async () => {
    const r = token(["live/*", "--sub", "season-pass-7"]);
    assert.equal(r.status, 0, r.stderr);
    const t = r.stdout.trim();
    const [, resource, iat, , sub] = t.split(".");
    assert.equal(Buffer.from(resource, "base64url").toString(), "__defaultVhost__/live/*");
    assert.equal(sub, b64("season-pass-7"));
    for (const name of ["cam1", "cam2"]) {
      assert.deepEqual(await verifyPlayToken(t, stream(name), now(), [KEY]), { ok: true, sub: "season-pass-7", issuedAt: Number(iat) });
    }
    assert.equal((await verifyPlayToken(t, { ...stream("cam1"), app: "vod" }, now(), [KEY])).ok, false);
  });

  it("without the variable, signs with the key wrangler dev reads from .dev.vars (export, quotes, the last line wins)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "token-devvars-"));
    try {
      const local = "the-local-key-wrangler-dev-reads-32-chars";
      writeFileSync(join(dir, ".dev.vars"), `TOKEN_SIGNING_KEY=an-older-line-wrangler-does-not-read-any-more\n  export TOKEN_SIGNING_KEY="${local}"\n`);
      const env = { ...process.env };
      delete env.TOKEN_SIGNING_KEY;
      // Run as npm run runs it, in the directory that holds .dev.vars.
      const r = spawnSync(process.execPath, ["--no-warnings=ExperimentalWarning", join(ROOT, "scripts/token.ts"), "live/cam1"], { cwd: dir, encoding: "utf8", env });
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /signed with the local key of \.dev\.vars/);
      assert.equal((await verifyPlayToken(r.stdout.trim(), stream("cam1"), now(), [local])).ok, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("defaults --ttl to MAX_TOKEN_TTL_S when that is under an hour, as the admin API does", () => {
    const r = token(["live/cam1"], { TOKEN_SIGNING_KEY: KEY, MAX_TOKEN_TTL_S: "600" });
    assert.equal(r.status, 0, r.stderr);
    const [, , iat, exp] = r.stdout.trim().split(".");
    assert.equal(Number(exp) - Number(iat), 600);
  });

  it("refuses a malformed --sub", () => {
    const r = token(["live/cam1", "--sub", "not a viewer id"]);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, "");
  });

  it("without -s, captured (TOKEN=$(npm run token -- …)), refuses instead of a token behind npm's own lines", () => {
    const env = { ...process.env, TOKEN_SIGNING_KEY: KEY };
    delete env.npm_config_loglevel; // as typed in a shell, even under `npm test -s`
    const r = spawnSync("npm", ["run", "token", "--", "live/cam1", "--sub", "alice"], { cwd: ROOT, encoding: "utf8", env });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stdout, /^> streamgate@\S+ token$/m);
    assert.doesNotMatch(r.stdout, /v2\./, "no token after npm's lines");
    assert.match(r.stderr, /run npm run -s token -- … \(-s keeps them out\)/);
  });
});
