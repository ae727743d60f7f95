// The README's code for an operator's backend, run as written: the webhook signature check in
// Node and in Python ("Signatures"), and the play-token minting in Node and in Python ("Play
// tokens"), the tokens checked by the gate's own verifier. Run by npm test (node --test); the
// Python snippets need python3 (on every machine of this kind).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { verifyPlayToken } from "../../src/auth/token.ts";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const scratch = mkdtempSync(join(tmpdir(), "streamgate-snippets-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The first ```lang block after `marker` in the README. */
function snippet(marker, lang) {
  const at = README.indexOf(marker);
  assert.ok(at >= 0, `README has no "${marker}"`);
  const block = new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(README.slice(at));
  assert.ok(block, `no \`\`\`${lang} block after "${marker}"`);
  return block[1];
}

function python(source, input) {
  const file = join(scratch, `s${Math.random().toString(36).slice(2)}.py`);
  writeFileSync(file, source);
  const run = spawnSync("python3", [file], { input, encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim();
}

const SECRET = `whsec_${Buffer.from("a webhook key of 32 bytes, exact").toString("base64")}`;
const PLAIN_SECRET = "a plain webhook secret of more than 32 characters";

/** A delivery as the gate signs it (README "Signatures"), now. */
function delivery(secret, { age = 0, body = '{"type":"stream.started","timestamp":"2026-11-26T00:00:00.000Z","data":{}}' } = {}) {
  const key = secret.startsWith("whsec_") ? Buffer.from(secret.slice(6), "base64") : Buffer.from(secret);
  const id = "msg_readme_snippet";
  const timestamp = String(Math.floor(Date.now() / 1000) - age);
  const signature = "v1," + createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
  return { headers: { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature }, body };
}

/** What the README's verify() must answer, for each kind of delivery. */
function cases() {
  const good = delivery(SECRET);
  const plain = delivery(PLAIN_SECRET);
  const forged = (signature) => ({ ...good, headers: { ...good.headers, "webhook-signature": signature } });
  return [
    { name: "a genuine delivery", secret: SECRET, ...good, want: true },
    { name: "a genuine delivery, plain secret", secret: PLAIN_SECRET, ...plain, want: true },
    { name: "a second signature beside a stale one", secret: SECRET, ...forged(`v1,${"A".repeat(43)}= ${good.headers["webhook-signature"]}`), want: true },
    { name: "a body changed in transit", secret: SECRET, ...good, body: good.body.replace("started", "ended"), want: false },
    { name: "a delivery 10 minutes old", secret: SECRET, ...delivery(SECRET, { age: 600 }), want: false },
    { name: "a forged signature of the right length", secret: SECRET, ...forged(`v1,${"A".repeat(43)}=`), want: false },
    // A receiver must answer it "not verified", not crash on it (a 500 instead of a 401).
    { name: "a forged signature with non-ASCII characters", secret: SECRET, ...forged(`v1,${"é".repeat(22)}`), want: false },
    { name: "a forged signature as long as a real one in characters, not in bytes", secret: SECRET, ...forged(`v1,é${"A".repeat(43)}`), want: false },
  ];
}

describe("README webhook signature check", () => {
  it("the Node snippet verifies the gate's signatures and refuses every forgery without throwing", async () => {
    const file = join(scratch, "verify.mjs");
    writeFileSync(file, `${snippet("**Signatures.**", "js")}\nexport { verify };\n`);
    const { verify } = await import(file);
    for (const c of cases()) {
      let got;
      assert.doesNotThrow(() => (got = verify(c.secret, c.headers, c.body)), c.name);
      assert.equal(got, c.want, c.name);
    }
  });

  it("the Python snippet verifies the gate's signatures and refuses every forgery without throwing", () => {
    const driver = `${snippet("**Signatures.**", "python")}
import json, sys
for c in json.load(sys.stdin):
    try:
        print(json.dumps(verify(c["secret"], c["headers"], c["body"].encode())))
    except Exception as e:
        print(json.dumps("raised " + type(e).__name__))
`;
    const all = cases();
    const answers = python(driver, JSON.stringify(all)).split("\n").map((l) => JSON.parse(l));
    all.forEach((c, i) => assert.equal(answers[i], c.want, c.name));
  });
});

describe("README play-token minting", () => {
  const KEY = "a token signing key of more than 32 characters";
  const cam1 = { vhost: "__defaultVhost__", app: "live", stream: "cam1" };

  async function expectPlays(token) {
    const now = Math.floor(Date.now() / 1000);
    assert.deepEqual(await verifyPlayToken(token, cam1, now, [KEY], 30 * 86400), { ok: true, sub: "alice@example.com", issuedAt: Number(token.split(".")[2]) });
    assert.equal((await verifyPlayToken(token, { ...cam1, stream: "cam2" }, now, [KEY])).ok, false);
    assert.equal((await verifyPlayToken(token, cam1, now, ["another key of more than 32 characters!!"])).ok, false);
  }

  it("the Node snippet mints a token the gate accepts for live/cam1 and viewer alice@example.com", async () => {
    // An ES module, as the webhook snippet and this repository ("type": "module") are.
    const file = join(scratch, "mint.mjs");
    writeFileSync(file, `${snippet("**Play tokens.**", "js")}\nconsole.log(token);\n`);
    const run = spawnSync(process.execPath, [file], { env: { ...process.env, TOKEN_SIGNING_KEY: KEY }, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    await expectPlays(run.stdout.trim());
  });

  it("the Python snippet mints a token the gate accepts for live/cam1 and viewer alice@example.com", async () => {
    const file = join(scratch, "mint.py");
    writeFileSync(file, `${snippet("**Play tokens.**", "python")}\nprint(token)\n`);
    const run = spawnSync("python3", [file], { env: { ...process.env, TOKEN_SIGNING_KEY: KEY }, encoding: "utf8" });
    assert.equal(run.status, 0, run.stderr);
    await expectPlays(run.stdout.trim());
  });
});
