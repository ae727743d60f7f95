// `npm run srs-config` (scripts/srs-config.ts), its command line: options with a space or with `=`,
// and an origin refusing the options it has no use for. What it prints is checked by
// test/srs-config.test.ts (the configuration) and readme-commands.mjs (the README's example).
// Run by npm test (node --test).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";

const ROOT = new URL("../../", import.meta.url).pathname;
const HOOK_SECRET = "Zr0H5f2YcW-uq8N1sJxk_3dVb7LmTa9pEoGi4QnBtKw";

function srsConfig(args) {
  const r = spawnSync("npm", ["run", "-s", "srs-config", "--", ...args], { cwd: ROOT, encoding: "utf8", env: { ...process.env, HOOK_SECRET } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("npm run srs-config's command line", () => {
  it("takes --option=value as --option value", () => {
    const spaced = srsConfig(["--role", "edge", "--gate", "https://gate.example.com", "--device-id", "edge-eu-1", "--origin", "origin.internal:1935", "--server-id", "edge-eu-1"]);
    assert.equal(spaced.status, 0, spaced.stderr);
    const joined = srsConfig(["--role=edge", "--gate=https://gate.example.com", "--device-id=edge-eu-1", "--origin=origin.internal:1935", "--server-id=edge-eu-1"]);
    assert.equal(joined.status, 0, joined.stderr);
    assert.equal(joined.stdout, spaced.stdout);
  });

  it("refuses a value for --local and an empty one for the others", () => {
    assert.equal(srsConfig(["--role", "standalone", "--local=yes"]).status, 2);
    assert.match(srsConfig(["--role=edge", "--gate="]).stderr, /--gate needs a value/);
  });

  it("an origin refuses --gate, --device-id and --local (it calls nothing) and takes --server-id", () => {
    for (const extra of [["--gate", "https://gate.example.com"], ["--device-id", "origin-1"], ["--local"]]) {
      const r = srsConfig(["--role", "origin", ...extra]);
      assert.equal(r.status, 2, extra.join(" "));
      assert.match(r.stderr, new RegExp(`${extra[0]} is for --role edge or standalone`));
      assert.equal(r.stdout, "");
    }
    const r = srsConfig(["--role", "origin", "--server-id", "origin-1"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^server_id +origin-1;$/m);
  });

  it("--help prints the usage and exits 0", () => {
    const r = srsConfig(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^usage: npm run -s srs-config --/);
  });
});
