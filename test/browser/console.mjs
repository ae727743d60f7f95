// Browser test of the operator console: real headless Chromium (Debian's, driven by
// playwright-core) against `wrangler dev`. Run by .ci/run after `npm test`:
//   node test/browser/console.mjs        (on Node 22: npm run test:browser)
// It logs in, creates a stream, sends SRS-shaped hooks, checks that the page shows
// the publisher and the viewer count, revokes the stream and checks the revocation
// holds. Screenshots go to test/browser/artifacts/.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const ROOT = new URL("../../", import.meta.url).pathname;
const PORT = Number(process.env.CONSOLE_TEST_PORT ?? 8799);
const BASE = `http://127.0.0.1:${PORT}`;
// At least 32 characters each: the Worker refuses shorter secrets.
const HOOK_SECRET = "browser-hook-secret-32-chars-or-more";
const ADMIN_TOKEN = "browser-admin-token-32-chars-or-more";
const ARTIFACTS = join(ROOT, "test/browser/artifacts");
const STREAM = `cam-browser-${Date.now().toString(36)}`;

// Real SRS 7 bodies from test/fixtures, with this test's stream and key.
const captured = readFileSync(join(ROOT, "test/fixtures/hooks-srs7.jsonl"), "utf8")
  .split("\n").filter(Boolean).map((l) => JSON.parse(l));
const body = (action) => JSON.parse(captured.find((c) => c.path.includes("hooks") && JSON.parse(c.body).action === action).body);
const beat = JSON.parse(captured.find((c) => c.path.endsWith("/heartbeat")).body);

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok ? "" : `: ${detail}`}`);
}

async function hook(payload, path = "") {
  const res = await fetch(`${BASE}/hooks/srs/${HOOK_SECRET}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "SRS/7.0.18(Hang)" },
    body: JSON.stringify(payload),
  });
  return { status: res.status, body: await res.json() };
}

async function waitForServer(child) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${BASE}/console/`);
      if (res.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error("wrangler dev did not start within 90 s");
}

const state = mkdtempSync(join(tmpdir(), "streamgate-console-"));
mkdirSync(ARTIFACTS, { recursive: true });
const dev = spawn(
  process.execPath,
  [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), "dev", "--ip", "127.0.0.1", "--port", String(PORT),
   "--persist-to", state, "--var", `HOOK_SECRET:${HOOK_SECRET}`, "--var", `ADMIN_TOKEN:${ADMIN_TOKEN}`,
   "--var", "TOKEN_SIGNING_KEY:browser-token-key-32-chars-or-more", "--show-interactive-dev-session=false"],
  { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
);
let devLog = "";
dev.stdout.on("data", (d) => (devLog += d));
dev.stderr.on("data", (d) => (devLog += d));

let browser;
try {
  await waitForServer(dev);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  const page = await context.newPage();
  const cspErrors = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });

  // The page itself: no caching, strict CSP.
  const response = await page.goto(`${BASE}/console/`);
  const headers = response.headers();
  check("console is served with Cache-Control: no-store", headers["cache-control"] === "no-store", headers["cache-control"]);
  check("console is served with a strict Content-Security-Policy", /default-src 'none'/.test(headers["content-security-policy"] ?? "") && !/unsafe-inline/.test(headers["content-security-policy"]), headers["content-security-policy"]);

  // A wrong token is refused; the right one logs in.
  await page.fill("#token", "not-the-token");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
  check("a wrong admin token is refused", await page.isVisible("#login"));
  await page.fill("#token", ADMIN_TOKEN);
  await page.click("#login-form button");
  await page.waitForSelector("#app", { state: "visible" });
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem("streamgate.adminToken"), local: JSON.stringify(localStorage) }));
  check("the admin token is kept in sessionStorage", stored.session === ADMIN_TOKEN);
  check("the admin token is not in localStorage or the URL", !stored.local.includes(ADMIN_TOKEN) && !page.url().includes(ADMIN_TOKEN));

  // Create a stream through the form; the key is shown once.
  await page.click("#create-box summary");
  await page.fill("#create-form input[name=stream]", STREAM);
  await page.fill("#create-form input[name=maxViewers]", "5");
  await page.click("#create-form button[type=submit]");
  await page.waitForSelector("#dialog[open] .secret-value");
  const key = (await page.textContent("#dialog .secret-value")).trim();
  check("creating a stream shows its publish key", /^[A-Za-z0-9_-]{32}$/.test(key), key);
  await page.click("#dialog .copy");
  check("the copy button copies the key", (await page.evaluate(() => navigator.clipboard.readText())) === key);
  await page.click("#dialog-buttons button");

  // SRS calls: an edge heartbeat, a publisher with the key, two viewers.
  const row = `#streams tr[data-stream="live/${STREAM}"]`;
  check("heartbeat accepted", (await hook(beat, "/heartbeat")).status === 200);
  const pub = await hook({ ...body("on_publish"), stream: STREAM, stream_url: `/live/${STREAM}`, param: `?key=${key}` });
  check("on_publish with the key is allowed", pub.status === 200 && pub.body.code === 0, JSON.stringify(pub));
  for (const client of ["26968zvw", "8yaj8h64"]) {
    const r = await hook({ ...body("on_play"), client_id: client, stream: STREAM, stream_url: `/live/${STREAM}` });
    check(`on_play ${client} is allowed`, r.status === 200, JSON.stringify(r));
  }

  // The page shows them within a refresh or two, without a reload.
  await page.waitForFunction((sel) => document.querySelector(`${sel} .badge`)?.textContent === "live", row, { timeout: 15_000 });
  check("the stream shows as live", true);
  const publisherText = await page.textContent(`${row} .publisher`);
  check("the publisher's server and device are shown", publisherText.includes(body("on_publish").server_id) && publisherText.includes("edge-a"), publisherText);
  await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "2", row, { timeout: 15_000 });
  check("the viewer count against the cap is shown", (await page.textContent(`${row} .viewers`)).includes("2 / 5"));
  await page.screenshot({ path: join(ARTIFACTS, "console.png"), fullPage: true });

  // Events: the decisions are visible.
  await page.click(`${row} button[data-action=events]`);
  await page.waitForSelector("#dialog[open] .events table");
  const eventsText = await page.textContent("#dialog .events");
  check("the decision log lists the publish and the plays", eventsText.includes("on_publish") && eventsText.includes("on_play") && eventsText.includes("admitted"), eventsText.slice(0, 200));
  await page.screenshot({ path: join(ARTIFACTS, "console-events.png") });
  await page.click("#dialog-buttons button");

  // Servers tab.
  await page.click(".tab[data-tab=servers]");
  const serversText = await page.textContent("#servers");
  check("the servers tab shows the edge as alive with its device", serversText.includes("edge-a") && serversText.includes("alive"), serversText);
  await page.click(".tab[data-tab=streams]");

  // Revoke: the row goes, and the key is refused at once.
  await page.click(`${row} button[data-action=revoke]`);
  await page.click("#dialog-buttons button.danger");
  await page.waitForSelector(row, { state: "detached", timeout: 15_000 });
  check("a revoked stream disappears from the page", true);
  const after = await hook({ ...body("on_publish"), client_id: "newpub01", stream: STREAM, stream_url: `/live/${STREAM}`, param: `?key=${key}` });
  check("after revoke, the old key is refused", after.status === 403 && /unknown stream/.test(after.body.reason), JSON.stringify(after));

  // Readable on a phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, "console-phone.png"), fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check("no horizontal page overflow on a phone (tables scroll inside)", overflow <= 0, `${overflow}px`);
  check("no Content-Security-Policy violations", cspErrors.length === 0, cspErrors.join("; "));
} catch (err) {
  failed++;
  console.log(`FAIL ${err.stack ?? err}`);
  console.log(devLog.split("\n").slice(-30).join("\n"));
} finally {
  await browser?.close();
  try {
    process.kill(-dev.pid, "SIGTERM");
  } catch {}
  rmSync(state, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
