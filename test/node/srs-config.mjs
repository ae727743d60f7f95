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

  it("without -s, into a file or pipe, refuses after npm's own lines instead of printing a config SRS would refuse", () => {
    // `npm run srs-config -- … > srs.conf`: npm writes "> streamgate@… srs-config" first, and SRS
    // refuses a file holding it ("config file … test is failed"), so nothing more is printed.
    const env = { ...process.env, HOOK_SECRET };
    delete env.npm_config_loglevel; // as typed in a shell, even under `npm test -s`
    const args = ["--role", "standalone", "--gate", "https://gate.example.com", "--device-id", "live-1"];
    const r = spawnSync("npm", ["run", "srs-config", "--", ...args], { cwd: ROOT, encoding: "utf8", env });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stdout, /^> streamgate@\S+ srs-config$/m, "npm's own line, which the check is about");
    assert.doesNotMatch(r.stdout, /http_hooks|vhost/, "no configuration after it");
    assert.match(r.stderr, /run npm run -s srs-config -- … \(-s keeps them out\)/);
    // With -s, and run directly (no npm), the same command prints the configuration.
    assert.match(srsConfig(args).stdout, /^vhost __defaultVhost__ \{$/m);
    const direct = spawnSync(process.execPath, ["scripts/srs-config.ts", ...args], { cwd: ROOT, encoding: "utf8", env: { HOOK_SECRET, PATH: process.env.PATH } });
    assert.equal(direct.status, 0, direct.stderr);
    assert.match(direct.stdout, /^vhost __defaultVhost__ \{$/m);
  });

  it("--webrtc adds WebRTC to a standalone server, and an edge or an origin refuses it", () => {
    const r = srsConfig(["--role", "standalone", "--gate", "https://gate.example.com", "--device-id", "live-1", "--webrtc=203.0.113.7"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ {4}candidate {7}203\.0\.113\.7;$/m);
    for (const role of [["--role", "edge", "--gate", "https://gate.example.com", "--device-id", "e-1", "--origin", "o:1935"], ["--role", "origin"]]) {
      const refused = srsConfig([...role, "--webrtc", "*"]);
      assert.equal(refused.status, 2, role.join(" "));
      assert.match(refused.stderr, /--webrtc is for --role standalone/);
      assert.equal(refused.stdout, "");
    }
  });

  it("--help prints the usage and exits 0", () => {
    const r = srsConfig(["--help"]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^usage: npm run -s srs-config --/);
  });
});

describe("npm run srs-config's --gate: a host SRS reads as one word, or a refusal", () => {
  // new URL() keeps ; { } " ' , ( ) * $ in a host name (the WHATWG URL standard forbids only a few
  // characters there) and maps a full-width ； (U+FF1B, from a CJK input method) or %3B to ;. Printed
  // into `on_publish https://gate;x/hooks/srs/…;`, SRS ends the directive at the ; and refuses the
  // whole file (srs -t: "illegal heartbeat.x/hooks/srs/…/heartbeat"); a `,` or `)` left from a
  // copied list gives a file SRS starts on, whose every hook fails to resolve: every client refused.
  for (const gate of [
    "https://gate;evil.example.com",
    "https://gate\uFF1Bevil.example.com",
    "https://gate%3Bevil.example.com",
    "https://gate{x}.example.com",
    "https://gate}.example.com",
    'https://ga"te.example.com',
    "https://gate.example.com,",
    "https://gate.example.com)",
    "https://gate.example.com:0",
    `https://${"a".repeat(64)}.example.com`,
    `https://${"abcdefgh.".repeat(30)}example.com`,
  ]) {
    it(`refuses ${JSON.stringify(gate)}`, () => {
      const r = srsConfig(["--role", "standalone", "--gate", gate, "--device-id", "live-1"]);
      assert.equal(r.status, 2, r.stdout);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^srs-config: --gate /);
    });
  }

  it("still takes a host name, an IP address, a port, and a Unicode name (as punycode)", () => {
    for (const [gate, origin] of [
      ["https://gate.example.com:8443", "https://gate.example.com:8443"],
      ["http://127.0.0.1:8787", "http://127.0.0.1:8787"],
      ["http://[::1]:8787", "http://[::1]:8787"],
      ["https://gäte.example.com/", "https://xn--gte-qla.example.com"],
      ["https://gate-1.my_zone.example.com", "https://gate-1.my_zone.example.com"],
    ]) {
      const r = srsConfig(["--role", "standalone", "--gate", gate, "--device-id", "live-1"]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^        on_publish      ${origin.replace(/[.[\]]/g, "\\$&")}/hooks/srs/${HOOK_SECRET};$`, "m"));
    }
  });
});
