// Browser test of the operator console: real headless Chromium (Debian's, driven by
// playwright-core) against `wrangler dev`. Run by .ci/run after `npm test`:
//   node test/browser/console.mjs        (on Node 22: npm run test:browser)
// It logs in, creates a stream, sends SRS-shaped hooks, checks that the page shows
// the publisher and the viewer count, ends sessions by hand (a publisher, a stream's,
// a server's), shows newer state fields, shows a stream's audience per viewer shard and
// per location (viewers on two edges), shows undelivered events with the servers and sends them again, lists a token stream's viewers by viewer id and
// revokes one of them and then every token (issue 14; the browser's clock 10 minutes slow, the
// console reckoning "now" from the gate's Date header), revokes the stream and checks the revocation
// holds, then pages through more streams than a page holds and checks the console
// fetches only the page it shows. Screenshots go to test/browser/artifacts/.
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

async function adminCall(method, path, payload) {
  const res = await fetch(`${BASE}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

/** Text of a dialog's result line once it appears. */
async function dialogResult(page) {
  await page.waitForSelector("#dialog[open] .result:not(:empty), #dialog[open] #dialog-error:not(:empty)", { timeout: 15_000 });
  return page.evaluate(() => ({
    result: document.querySelector("#dialog .result")?.textContent ?? "",
    error: document.querySelector("#dialog-error").textContent,
  }));
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

// A server left on the port (a crashed earlier run) would answer instead of this run's, with old state.
if (await fetch(`${BASE}/console/`).then(() => true, () => false)) {
  console.log(`FAIL port ${PORT} is already in use (a wrangler dev left over from an earlier run?); set CONSOLE_TEST_PORT or stop it`);
  process.exit(1);
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
// Even if the run dies of an uncaught error, wrangler dev (its own process group) goes with it.
process.on("exit", () => {
  try {
    process.kill(-dev.pid, "SIGTERM");
  } catch {}
});
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
  // The operator's computer keeps bad time: its clock runs 10 minutes behind the gate's (and flows on).
  // "Now" in the console is the gate's (the Date of its admin answers): a revocation of every token
  // issued before now must still cover one minted a moment ago.
  const BROWSER_CLOCK_BEHIND_MS = 10 * 60_000;
  await context.clock.install({ time: Date.now() - BROWSER_CLOCK_BEHIND_MS });
  const page = await context.newPage();
  const cspErrors = [];
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) cspErrors.push(m.text()); });
  // Every admin call the page makes, to check it fetches only the page of streams it shows.
  const calls = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith("/admin/")) calls.push({ at: Date.now(), method: r.method(), path: url.pathname, query: url.searchParams });
  });

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

  // Details: the publisher session and the decisions are visible.
  const publisherClient = body("on_publish").client_id;
  const edge = body("on_publish").server_id;
  await page.click(`${row} button[data-action=details]`);
  await page.waitForSelector("#dialog[open] .events table");
  const eventsText = await page.textContent("#dialog .events");
  check("the decision log lists the publish and the plays", eventsText.includes("on_publish") && eventsText.includes("on_play") && eventsText.includes("admitted"), eventsText.slice(0, 200));
  await page.waitForSelector(`#dialog[open] .publishers tr[data-client="${publisherClient}"]`, { timeout: 15_000 });
  check("the details list the publisher session with an End button", await page.isVisible(`#dialog .publishers tr[data-client="${publisherClient}"] button[data-action=end-publisher]`));
  check("the details say ending a session does not disconnect it on SRS", /SRS keeps the clients connected/.test(await page.textContent("#dialog .sessions")));
  // Usage charts (public/console/charts.js), drawn from the usage API after the hooks above.
  const chart = (name) => `#dialog[open] .usage figure[data-chart="${name}"]`;
  await page.waitForSelector(`${chart("minute")} svg path.area`, { timeout: 15_000 });
  const minuteMax = await page.getAttribute(chart("minute"), "data-max");
  check("the details chart the stream's concurrent viewers per minute over the last hour", minuteMax === "2" && Number(await page.getAttribute(chart("minute"), "data-points")) >= 60, minuteMax);
  const hourPoints = Number(await page.getAttribute(chart("hour-peak"), "data-points"));
  check("the details chart peak viewers per hour over the last 24 hours", hourPoints >= 24 && (await page.getAttribute(chart("hour-peak"), "data-max")) === "2" && (await page.locator(`${chart("hour-peak")} rect.bar`).count()) === hourPoints, hourPoints);
  check("the details chart viewer-hours per hour", await page.isVisible(`${chart("hour-viewer-hours")} svg`));
  await page.screenshot({ path: join(ARTIFACTS, "console-details.png") });

  // The fleet-wide chart above the streams, and the test-event button (no EVENTS_WEBHOOK_URL here).
  await page.click("#dialog-buttons button");
  await page.waitForFunction(() => Number(document.querySelector('#fleet-usage figure[data-chart="fleet-minute"]')?.dataset.max) >= 2, null, { timeout: 30_000 });
  check("the fleet-wide chart shows the viewers of every stream per minute", true);
  await page.click("#send-test-event");
  await page.waitForFunction(() => /EVENTS_WEBHOOK_URL/.test(document.querySelector("#test-event-result").textContent), null, { timeout: 15_000 });
  check("the test-event button says that events are not configured", true);
  await page.screenshot({ path: join(ARTIFACTS, "console-usage.png") });
  await page.click(`${row} button[data-action=details]`);
  await page.waitForSelector("#dialog[open] .events table");
  // A viewer shard the Worker could not ask: its decisions are missing, and the dialog says so.
  await page.click("#dialog-buttons button");
  await page.route((url) => url.pathname.endsWith("/events"), (route) => route.fulfill({ json: { events: [], unreachable: ["vid-far-away"] } }));
  await page.click(`${row} button[data-action=details]`);
  await page.waitForSelector("#dialog[open] .events p.error", { timeout: 15_000 });
  check("the details name a viewer shard whose decisions could not be read", /1 viewer shard that could not be asked \(vid-far-away\)/.test(await page.textContent("#dialog .events")), await page.textContent("#dialog .events"));
  await page.unrouteAll({ behavior: "wait" });

  // Servers tab.
  await page.click("#dialog-buttons button");
  await page.click(".tab[data-tab=servers]");
  await page.waitForSelector(`#servers tr[data-server="${edge}"]`, { timeout: 15_000 });
  const serversText = await page.textContent("#servers");
  check("the servers tab shows the edge as alive with its device", serversText.includes("edge-a") && serversText.includes("alive"), serversText);
  check("no undelivered events: no dead-letter notice", await page.isHidden("#dead-letters"));
  await page.click(".tab[data-tab=streams]");

  // Ending sessions by hand (DELETE …/sessions), after real on_publish and on_play hooks.
  const badge = (sel) => page.evaluate((s) => document.querySelector(`${s} .badge`)?.textContent, sel);
  const viewerCount = (sel) => page.evaluate((s) => document.querySelector(`${s} .viewers .count`)?.textContent, sel);
  // One publisher, from the details view: the stream goes idle, its viewers stay.
  await page.click(`${row} button[data-action=details]`);
  await page.click(`#dialog .publishers tr[data-client="${publisherClient}"] button[data-action=end-publisher]`);
  const one = await dialogResult(page);
  check("ending the publisher from the details ends one session", /Ended 1 session\b/.test(one.result), `${one.result} ${one.error}`);
  await page.click("#dialog-buttons button");
  await page.waitForFunction((sel) => document.querySelector(`${sel} .badge`)?.textContent === "idle", row, { timeout: 15_000 }).catch(() => {});
  check("after ending its publisher the stream shows idle", (await badge(row)) === "idle", await badge(row));
  check("ending the publisher kept the viewers", (await viewerCount(row)) === "2", await viewerCount(row));
  const republish = await hook({ ...body("on_publish"), client_id: "repub001", stream: STREAM, stream_url: `/live/${STREAM}`, param: `?key=${key}` });
  check("another publisher is admitted once the publisher's session is ended", republish.status === 200, JSON.stringify(republish));

  // The whole stream from its row, after a confirmation: the publisher and both viewers.
  await page.waitForFunction((sel) => document.querySelector(`${sel} .badge`)?.textContent === "live", row, { timeout: 15_000 });
  await page.click(`${row} button[data-action=end]`);
  check("ending a stream's sessions asks first and says SRS keeps the clients", /SRS keeps the clients connected/.test(await page.textContent("#dialog-body")));
  await page.click("#dialog-buttons button.danger");
  const all = await dialogResult(page);
  check("ending the stream's sessions ends the publisher and both viewers", /Ended 3 sessions/.test(all.result), `${all.result} ${all.error}`);
  await page.screenshot({ path: join(ARTIFACTS, "console-ended.png") });
  await page.click("#dialog-buttons button");
  await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "0", row, { timeout: 15_000 }).catch(() => {});
  check("after ending its sessions the stream is idle with no viewers", (await badge(row)) === "idle" && (await viewerCount(row)) === "0", `${await badge(row)} ${await viewerCount(row)}`);
  const idle = await adminCall("GET", `/streams/live/${STREAM}`);
  check("the admin API agrees: not live, no viewers", idle.body.live === false && idle.body.viewers === 0, JSON.stringify(idle.body));

  // A server's sessions, from the servers tab.
  const again = await hook({ ...body("on_play"), client_id: "v3client", stream: STREAM, stream_url: `/live/${STREAM}` });
  check("a new viewer is admitted", again.status === 200, JSON.stringify(again));
  await page.click(".tab[data-tab=servers]");
  await page.click(`#servers tr[data-server="${edge}"] button[data-action=end-server]`);
  await page.click("#dialog-buttons button.danger");
  const srv = await dialogResult(page);
  check("ending a server's sessions ends its one viewer", /Ended 1 session\b/.test(srv.result) && (await page.textContent("#dialog .ended")).includes(`live/${STREAM}`), `${srv.result} ${srv.error}`);
  const notKicked = await page.textContent("#dialog .kicks");
  check("without an SRS API the result says SRS keeps the client connected", /no SRS API set/.test(notKicked), notKicked);
  await page.click("#dialog-buttons button");
  await page.click(".tab[data-tab=streams]");
  const gone = await adminCall("GET", `/streams/live/${STREAM}`);
  check("the server's viewer no longer counts", gone.body.viewers === 0, JSON.stringify(gone.body));

  // With an SRS API, the answer lists the kicks it queued (`kicking`): the page's own answer, with one
  // of two ended sessions being kicked, stands in for a gate with SRS_API_URL set.
  for (const client of ["v4client", "v5client"]) {
    const admitted = await hook({ ...body("on_play"), client_id: client, stream: STREAM, stream_url: `/live/${STREAM}` });
    check(`viewer ${client} is admitted`, admitted.status === 200, JSON.stringify(admitted));
  }
  await page.route((url) => url.pathname === `/admin/streams/live/${STREAM}/sessions`, async (route) => {
    const res = await route.fetch();
    const d = await res.json();
    d.kicking = d.ended.slice(0, 1).map((e) => ({ role: e.role, serverId: e.serverId, clientId: e.clientId }));
    await route.fulfill({ response: res, json: d });
  });
  await page.click(`${row} button[data-action=end]`);
  await page.click("#dialog-buttons button.danger");
  const kicked = await dialogResult(page);
  const kickText = await page.textContent("#dialog .kicks");
  check("with an SRS API the result says which clients are being kicked and which stay",
    /Ended 2 sessions/.test(kicked.result) && /1 client being kicked on SRS \(each outcome in the stream's decisions\); 1 kick could not be queued/.test(kickText), `${kicked.result} ${kickText}`);
  await page.unrouteAll({ behavior: "wait" });
  await page.click("#dialog-buttons button");

  // Newer state fields are shown (suspended viewers and publisher, conflicts, duplicate
  // server ids): the page's own answers, with those fields set, stand in for a fleet in that state.
  const edited = async (route, change) => {
    const res = await route.fetch();
    const data = await res.json();
    change(data);
    await route.fulfill({ response: res, json: data });
  };
  const fake = (s) => s.stream === STREAM ? {
    ...s, live: true, viewers: 3, suspendedViewers: 2,
    publisher: { serverId: edge, serviceId: "svc00001", clientId: "pubfake1", ip: "10.0.0.9", since: new Date().toISOString(), state: "suspended" },
    conflicts: [{ serverId: "vid-other1", serviceId: "svc00002", clientId: "pubfake2", ip: "10.0.0.10", since: new Date().toISOString(), state: "conflict" }],
  } : s;
  await page.route((url) => url.pathname === "/admin/streams", (route) => edited(route, (d) => { d.streams = d.streams.map(fake); }));
  await page.route((url) => url.pathname === "/admin/servers", (route) => edited(route, (d) => {
    d.servers = d.servers.map((x) => (x.serverId === edge ? { ...x, duplicateServiceIds: ["dupsvc01"], candidateServiceIds: ["cand0001"] } : x));
  }));
  await page.waitForFunction((sel) => document.querySelector(`${sel} .badge.conflict`), row, { timeout: 15_000 });
  const fakeRow = await page.textContent(row);
  check("suspended viewers are shown next to the live ones", fakeRow.includes("3 / 5 (+2 suspended)"), fakeRow);
  check("a suspended publisher is marked", (await page.textContent(`${row} .publisher`)).includes("suspended"), fakeRow);
  check("a conflict is marked", /conflict: 1 other publisher/.test(fakeRow), fakeRow);
  await page.screenshot({ path: join(ARTIFACTS, "console-states.png"), fullPage: true });
  await page.click(".tab[data-tab=servers]");
  await page.waitForSelector(`#servers tr[data-server="${edge}"] .badge.duplicate`, { timeout: 15_000 });
  check("a duplicate server_id is marked", /duplicate server_id ×2/.test(await page.textContent(`#servers tr[data-server="${edge}"]`)));
  check("a candidate process is shown", /new process cand0001 awaits its first heartbeat/.test(await page.textContent(`#servers tr[data-server="${edge}"]`)));
  // Events the queue gave up on: shown with the servers, and sent again from there.
  let replays = 0;
  await page.route((url) => url.pathname === "/admin/events/dead-letters", (route) => route.fulfill({
    json: { count: replays === 0 ? 3 : 0, oldest: new Date(Date.now() - 2 * 3600_000).toISOString(), newest: new Date().toISOString(), events: [] },
  }));
  await page.route((url) => url.pathname === "/admin/events/dead-letters/replay", (route) => {
    replays++;
    return route.fulfill({ json: { replayed: 3, ids: ["msg_1", "msg_2", "msg_3"], remaining: 0 } });
  });
  await page.waitForSelector("#dead-letters:not([hidden])", { timeout: 15_000 });
  await page.screenshot({ path: join(ARTIFACTS, "console-dead-letters.png"), fullPage: true });
  check("undelivered events are announced with the servers", /3 events could not be delivered to the webhook receiver .*2 h ago/.test(await page.textContent("#dead-letters")), await page.textContent("#dead-letters"));
  await page.click("#replay-dead-letters");
  const said = await page.waitForFunction(() => /sent 3 events again/.test(document.querySelector("#status").textContent), null, { timeout: 15_000 }).then(() => true, () => false);
  await page.waitForSelector("#dead-letters[hidden]", { state: "attached", timeout: 15_000 });
  check("they are sent again from the console, and the notice goes", said && replays === 1, `${replays} ${await page.textContent("#status")}`);
  // A server's call ends at most a batch: what is left is said.
  await page.route((url) => url.pathname.endsWith("/sessions"), (route) => route.fulfill({
    json: { serverId: edge, ended: [{ stream: `__defaultVhost__/live/${STREAM}`, role: "viewer", serviceId: "svc00001", clientId: "v9" }], remaining: 7 },
  }));
  await page.click(`#servers tr[data-server="${edge}"] button[data-action=end-server]`);
  await page.click("#dialog-buttons button.danger");
  await dialogResult(page);
  check("sessions left after a server's batch are announced", /7 sessions left/.test(await page.textContent("#dialog-body")), await page.textContent("#dialog-body"));
  await page.click("#dialog-buttons button");
  // Nothing left that the Worker could count, but its viewer shard could not be asked: said, not hidden.
  // (The route added last answers first.)
  await page.route((url) => url.pathname.endsWith("/sessions"), (route) => route.fulfill({ json: { serverId: edge, ended: [], remaining: 0, failed: 1 } }));
  await page.click(`#servers tr[data-server="${edge}"] button[data-action=end-server]`);
  await page.click("#dialog-buttons button.danger");
  await page.waitForFunction(() => /could not be reached/.test(document.querySelector("#dialog-body")?.textContent ?? ""), null, { timeout: 15_000 }).catch(() => {});
  check("a server's end whose viewer shard could not be reached says so", /1 could not be reached .*press End sessions again/.test(await page.textContent("#dialog-body")), await page.textContent("#dialog-body"));
  await page.click("#dialog-buttons button");
  await page.click(".tab[data-tab=streams]");
  await page.unrouteAll({ behavior: "wait" });

  // An older Worker: no session endpoints (the router's 404), no newer state fields.
  await page.route((url) => url.pathname.endsWith("/sessions"), (route) => route.fulfill({ status: 404, json: { error: "not found" } }));
  await page.route((url) => url.pathname === "/admin/streams", (route) => edited(route, (d) => {
    d.streams = d.streams.map(({ suspendedViewers, conflicts, ...s }) => ({ ...s, viewers: 4, publisher: s.publisher && { ...s.publisher, state: undefined } }));
  }));
  await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "4", row, { timeout: 15_000 });
  const oldRow = await page.textContent(row);
  check("without the newer fields, the row shows no suspended or conflict marker", !/suspended|conflict/.test(oldRow), oldRow);
  await page.click(`${row} button[data-action=end]`);
  await page.click("#dialog-buttons button.danger");
  const old = await dialogResult(page);
  check("without the session endpoints, the console says the Worker is too old", /does not have this endpoint/.test(old.error), old.error);
  await page.click("#dialog-buttons button");
  await page.unrouteAll({ behavior: "wait" });

  {
    // Audience: viewers of one stream on two edges, one viewer shard each; the details show
    // them per shard (with the slots leased to it) and, when the platform tells the location, per colo.
    const AUD = `aud-browser-${Date.now().toString(36)}`;
    const audRow = `#streams tr[data-stream="live/${AUD}"]`;
    const edgeB = "vid-edgeb01";
    check("a capped stream for the audience is created", (await adminCall("PUT", `/streams/live/${AUD}`, { maxViewers: 10 })).status === 201);
    check("edge A heartbeat accepted", (await hook(beat, "/heartbeat")).status === 200);
    check("edge B heartbeat accepted", (await hook({ ...beat, server: edgeB, service: "svcb0001", device_id: "edge-b", ip: "192.0.2.3", pid: "7300" }, "/heartbeat")).status === 200);
    const audPlay = (client, extra = {}) => hook({ ...body("on_play"), client_id: client, stream: AUD, stream_url: `/live/${AUD}`, ...extra });
    const audPlays = [await audPlay("auda0001"), await audPlay("auda0002"), await audPlay("audb0001", { server_id: edgeB, service_id: "svcb0001", ip: "192.0.2.30" })];
    check("two viewers on edge A and one on edge B are admitted", audPlays.every((r) => r.status === 200), JSON.stringify(audPlays));
    await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "3", audRow, { timeout: 15_000 });
    check("the stream's row counts the viewers of both edges", (await page.textContent(`${audRow} .viewers`)).includes("3 / 10"), await page.textContent(`${audRow} .viewers`));
    const audPath = `/admin/streams/live/${AUD}`;
    const audienceTable = (sel) => page.evaluate((s) => Object.fromEntries([...document.querySelectorAll(`${s} tbody tr`)].map((tr) => [
      tr.dataset.server ?? tr.dataset.colo,
      Object.fromEntries([...tr.querySelectorAll("td[data-col]")].map((td) => [td.dataset.col, td.dataset.col === "place" ? td.firstChild.textContent : td.textContent])),
    ])), sel);
    /** Opens the details of the audience stream; returns the state the page got for it. */
    const openAudience = async () => {
      const answer = page.waitForResponse((r) => new URL(r.url()).pathname === audPath && r.request().method() === "GET", { timeout: 15_000 });
      await page.click(`${audRow} button[data-action=details]`);
      const data = await (await answer).json();
      await page.waitForSelector("#dialog[open] .audience-box", { timeout: 15_000 });
      return data;
    };
    const audState = await openAudience();
    const shards = Object.fromEntries((audState.shards ?? []).map((x) => [x.serverId, x]));
    check("the admin API gives the audience per shard: 2 viewers on edge A, 1 on edge B",
      shards[edge]?.viewers === 2 && shards[edgeB]?.viewers === 1 && audState.shards.length === 2 && audState.viewers === 3, JSON.stringify(audState));
    check("the admin API's leases hold the viewers, within the cap, and leasedUnused sums what they leave unused",
      audState.shards.every((x) => x.leased >= x.viewers) && audState.shards.reduce((n, x) => n + x.leased, 0) <= 10 &&
        audState.leasedUnused === audState.shards.reduce((n, x) => n + Math.max(0, x.leased - x.viewers - x.suspendedViewers), 0), JSON.stringify(audState));
    const table = await audienceTable("#dialog .audience.shards");
    const place = (x) => [x.colo, x.country].filter(Boolean).join(" · ") || "—";
    const want = (x) => ({ place: place(x), viewers: String(x.viewers), suspended: String(x.suspendedViewers), leased: String(x.leased), unused: String(Math.max(0, x.leased - x.viewers - x.suspendedViewers)) });
    check("the audience table has one row per shard with its viewers, suspended, leased and unused slots",
      Object.keys(table).length === 2 && JSON.stringify(table[edge]) === JSON.stringify(want(shards[edge])) && JSON.stringify(table[edgeB]) === JSON.stringify(want(shards[edgeB])),
      `${JSON.stringify(table)} vs ${JSON.stringify(audState.shards)}`);
    const unusedLine = await page.textContent("#dialog .leased-unused");
    check("the stream's leased but unused slots are said", unusedLine.startsWith(`${audState.leasedUnused} leased slot${audState.leasedUnused === 1 ? "" : "s"} unused`), unusedLine);
    // wrangler dev may fill request.cf (from Cloudflare's edge) or not: per-location totals only when it did.
    const located = audState.shards.some((x) => x.colo);
    const regionsShown = await audienceTable("#dialog .audience.regions");
    const colos = [...new Set(audState.shards.map((x) => x.colo))];
    check(located ? `per-location totals are shown (${colos.join(", ")})` : "without a location from the platform, no per-location totals",
      located
        ? Object.keys(regionsShown).length === colos.length && colos.every((c) => regionsShown[c]?.viewers === String(audState.shards.filter((x) => x.colo === c).reduce((n, x) => n + x.viewers, 0)))
        : !(await page.isVisible("#dialog .audience.regions")),
      JSON.stringify(regionsShown));
    // The decisions come in an answer of their own, after the audience's.
    await page.waitForFunction((id) => document.querySelector("#dialog .events")?.textContent.includes(id), edgeB, { timeout: 15_000 }).catch(() => {});
    check("the decision log has edge B's viewer decision", (await page.textContent("#dialog .events")).includes(edgeB), (await page.textContent("#dialog .events")).slice(0, 300));
    await page.screenshot({ path: join(ARTIFACTS, "console-audience.png") });
    await page.click("#dialog-buttons button");

    // Locations as the platform may tell them: the page's own answer with locations set, a third shard in edge A's colo, and a location that is markup, shown as text.
    const hostile = `<img src=x data-hostile onerror="document.title='pwned'">`;
    const third = { serverId: "vid-fakec01", colo: "AMS", country: "NL", viewers: 4, suspendedViewers: 1, leased: 6 };
    await page.route((url) => url.pathname === audPath, (route) => edited(route, (d) => {
      d.shards = [...d.shards.map((x) => ({ ...x, ...(x.serverId === edge ? { colo: "AMS", country: "NL" } : { colo: hostile, country: "FR" }) })), third];
      d.leasedUnused += 2;
    }));
    const locatedState = await openAudience();
    const regions = await audienceTable("#dialog .audience.regions");
    const a = locatedState.shards.find((x) => x.serverId === edge);
    const b = locatedState.shards.find((x) => x.serverId === edgeB);
    check("per-location totals group the shards by colo", Object.keys(regions).length === 2 &&
      JSON.stringify(regions.AMS) === JSON.stringify({ place: "AMS · NL", viewers: String(a.viewers + 4), suspended: "1", leased: String(a.leased + 6), unused: String(Math.max(0, a.leased - a.viewers - a.suspendedViewers) + 1) }) &&
      regions[hostile]?.viewers === String(b.viewers), JSON.stringify(regions));
    const locatedShards = await audienceTable("#dialog .audience.shards");
    check("each shard shows its colo and country", locatedShards[edge]?.place === "AMS · NL" && locatedShards["vid-fakec01"]?.unused === "1" && locatedShards[edgeB]?.place === `${hostile} · FR`, JSON.stringify(locatedShards));
    check("a location is shown as text, never as markup", (await page.evaluate(() => document.querySelector("#dialog [data-hostile]") === null && document.title !== "pwned")));
    check("the total follows the answer", (await page.textContent("#dialog .leased-unused")).startsWith(`${locatedState.leasedUnused} leased slot`), await page.textContent("#dialog .leased-unused"));
    await page.screenshot({ path: join(ARTIFACTS, "console-audience-regions.png") });
    await page.click("#dialog-buttons button");
    await page.unrouteAll({ behavior: "wait" });
    check("the audience stream is revoked", (await adminCall("DELETE", `/streams/live/${AUD}`)).status < 300);
    await page.waitForSelector(audRow, { state: "detached", timeout: 15_000 });
  }

  {
    // Viewers by id (issue 14): a token stream with one session per viewer id, created and edited
    // through the console's forms; a token with a viewer id minted in the console, another through
    // the admin API; two viewers with different ids on two edges; Revoke on one from the details.
    const VID = `vid-browser-${Date.now().toString(36)}`;
    const vidRow = `#streams tr[data-stream="live/${VID}"]`;
    const vidPath = `/streams/live/${VID}`;
    const edgeB = "vid-edgeb01";
    if (!(await page.evaluate(() => document.querySelector("#create-box").open))) await page.click("#create-box summary");
    await page.fill("#create-form input[name=stream]", VID);
    await page.fill("#create-form input[name=maxViewers]", "");
    await page.selectOption("#create-form select[name=playAuth]", "token");
    await page.fill("#create-form input[name=maxSessionsPerViewer]", "1");
    await page.selectOption("#create-form select[name=onExtraViewerSession]", "deny");
    await page.click("#create-form button[type=submit]");
    await page.waitForSelector("#dialog[open] .secret-value");
    await page.click("#dialog-buttons button");
    const made = await adminCall("GET", vidPath);
    check("the create form sets the sessions per viewer id and what an extra one does",
      made.body.playAuth === "token" && made.body.maxSessionsPerViewer === 1 && made.body.onExtraViewerSession === "deny", JSON.stringify(made.body));

    // The edit dialog shows the limit and changes it; the row says it.
    await page.waitForSelector(vidRow, { timeout: 15_000 });
    await page.click(`${vidRow} button[data-action=edit]`);
    const shownPolicy = await page.evaluate(() => ({
      max: document.querySelector("#dialog input[name=maxSessionsPerViewer]")?.value,
      extra: document.querySelector("#dialog select[name=onExtraViewerSession]")?.value,
    }));
    check("the edit dialog shows the sessions per viewer id and what an extra one does", shownPolicy.max === "1" && shownPolicy.extra === "deny", JSON.stringify(shownPolicy));
    await page.fill("#dialog input[name=maxSessionsPerViewer]", "");
    await page.selectOption("#dialog select[name=onExtraViewerSession]", "replace");
    await page.click("#dialog-buttons button.primary");
    await page.waitForSelector("#dialog", { state: "hidden" });
    const editedPolicy = await adminCall("GET", vidPath);
    check("the edit dialog sets no limit and replace", editedPolicy.body.maxSessionsPerViewer === null && editedPolicy.body.onExtraViewerSession === "replace", JSON.stringify(editedPolicy.body));
    check("the limit is put back through the admin API", (await adminCall("PUT", vidPath, { maxSessionsPerViewer: 1, onExtraViewerSession: "deny" })).status === 200);
    await page.waitForFunction((sel) => /at most 1 session per viewer id, an extra one is denied/.test(document.querySelector(`${sel} .auth`)?.textContent ?? ""), vidRow, { timeout: 15_000 })
      .catch(() => {});
    check("the row shows the limit per viewer id", /at most 1 session per viewer id, an extra one is denied/.test(await page.textContent(`${vidRow} .auth`)), await page.textContent(`${vidRow} .auth`));

    // A token for viewer "alice" from the console's token dialog; one for "bob" from the admin API.
    await page.click(`${vidRow} button[data-action=token]`);
    await page.fill("#dialog input[name=sub]", "alice");
    await page.click("#dialog-buttons button.primary");
    await page.waitForSelector("#dialog[open] .secret-value", { timeout: 15_000 });
    const playUrl = (await page.textContent("#dialog .secret-value")).trim();
    const aliceToken = new URL(playUrl.replace(/^rtmp:/, "http:")).searchParams.get("token") ?? "";
    check("the token dialog mints a token for a viewer id", /^v2\./.test(aliceToken) && (await page.textContent("#dialog-body")).includes("for viewer alice"), playUrl);
    await page.click("#dialog-buttons button");
    const bobMint = await adminCall("POST", `${vidPath}/tokens`, { ttl: 600, sub: "bob" });
    const bobMinted = Math.floor(Date.now() / 1000);
    check("the admin API mints a token for viewer bob", bobMint.status === 201 && bobMint.body.sub === "bob", JSON.stringify(bobMint.body));

    // alice plays on edge A, bob on edge B; a second session of alice is over the limit.
    check("edge A heartbeat accepted", (await hook(beat, "/heartbeat")).status === 200);
    check("edge B heartbeat accepted", (await hook({ ...beat, server: edgeB, service: "svcb0001", device_id: "edge-b", ip: "192.0.2.3", pid: "7300" }, "/heartbeat")).status === 200);
    const vidPlay = (client, token, extra = {}) => hook({ ...body("on_play"), client_id: client, stream: VID, stream_url: `/live/${VID}`, param: `?token=${token}`, ...extra });
    const alicePlay = await vidPlay("vida0001", aliceToken);
    const bobPlay = await vidPlay("vidb0001", bobMint.body.token, { server_id: edgeB, service_id: "svcb0001", ip: "192.0.2.31" });
    check("alice (edge A) and bob (edge B) are admitted", alicePlay.status === 200 && bobPlay.status === 200, JSON.stringify([alicePlay, bobPlay]));
    const aliceAgain = await vidPlay("vida0002", aliceToken);
    check("a second session of alice is refused (one per viewer id, deny)", aliceAgain.status === 403 && aliceAgain.body.code === 4016, JSON.stringify(aliceAgain));

    await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "2", vidRow, { timeout: 15_000 });
    check("the row shows the distinct viewer ids next to the viewer count", (await page.textContent(`${vidRow} .viewers .viewer-ids`)) === "2 viewer ids", await page.textContent(`${vidRow} .viewers`));
    await page.screenshot({ path: join(ARTIFACTS, "console-viewer-ids-row.png"), fullPage: true });

    // The details list the viewer ids with their sessions and where they are.
    const viewerTable = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll("#dialog .viewers-by-id tbody tr")].map((tr) => [
      tr.dataset.sub,
      Object.fromEntries([...tr.querySelectorAll("td[data-col]")].map((td) => [td.dataset.col, td.textContent])),
    ])));
    await page.click(`${vidRow} button[data-action=details]`);
    await page.waitForSelector('#dialog[open] .viewers-by-id tr[data-sub="bob"]', { timeout: 15_000 });
    let ids = await viewerTable();
    check("the viewers section lists both viewer ids with one live session each",
      Object.keys(ids).sort().join() === "alice,bob" && ids.alice.live === "1" && ids.bob.live === "1" && ids.alice.suspended === "0", JSON.stringify(ids));
    check("each viewer id's session says where: server and client",
      ids.alice.where.includes(edge) && ids.alice.where.includes("vida0001") && ids.bob.where.includes(edgeB) && ids.bob.where.includes("vidb0001"), JSON.stringify(ids));
    const apiViewers = await adminCall("GET", `${vidPath}/viewers`);
    check("the admin API agrees on the viewer ids", apiViewers.body.viewers?.map((v) => v.sub).sort().join() === "alice,bob" && apiViewers.body.anonymous === 0, JSON.stringify(apiViewers.body));
    check("the details show the distinct viewer ids next to the viewer count", /Viewers: 2 · 2 viewer ids\./.test(await page.textContent("#dialog .viewer-count")), await page.textContent("#dialog .viewer-count"));
    check("no revocation is listed yet", (await page.textContent("#dialog .revocation-list")).includes("None."));
    await page.screenshot({ path: join(ARTIFACTS, "console-viewer-ids.png") });

    // Revoke alice: asked first (over the details), then her session ends and she is listed as revoked.
    await page.click('#dialog .viewers-by-id tr[data-sub="alice"] button[data-action=revoke-viewer]');
    await page.waitForSelector("#confirm[open]");
    check("revoking a viewer id asks first", (await page.textContent("#confirm-title")).includes("alice") && (await page.isVisible("#dialog[open]")));
    await page.click("#confirm-buttons button.danger");
    await page.waitForFunction(() => document.querySelector("#dialog .viewers-result")?.textContent || document.querySelector("#confirm-error")?.textContent, null, { timeout: 15_000 });
    const revoked = await page.evaluate(() => ({ result: document.querySelector("#dialog .viewers-result").textContent, error: document.querySelector("#confirm-error").textContent }));
    check("Revoke on alice says it ended her one session", /Revoked viewer alice: ended 1 session \(client vida0001/.test(revoked.result), `${revoked.result} ${revoked.error}`);
    check("the confirmation closes, the details stay", !(await page.isVisible("#confirm")) && (await page.isVisible("#dialog")));
    ids = await viewerTable();
    check("the viewers section now lists bob only", Object.keys(ids).join() === "bob", JSON.stringify(ids));
    check("the details' viewer count follows", /Viewers: 1 · 1 viewer id\./.test(await page.textContent("#dialog .viewer-count")), await page.textContent("#dialog .viewer-count"));
    check("alice's revocation is listed", /Viewer alice: tokens issued before/.test(await page.textContent('#dialog .revocations li[data-sub="alice"]').catch(() => "")), await page.textContent("#dialog .revocation-list"));
    await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "1", vidRow, { timeout: 15_000 }).catch(() => {});
    check("the stream's row counts one viewer", (await viewerCount(vidRow)) === "1", await viewerCount(vidRow));
    const aliceLater = await vidPlay("vida0003", aliceToken);
    check("alice's token is refused after the revocation", aliceLater.status === 403 && aliceLater.body.code === 4019, JSON.stringify(aliceLater));
    const afterOne = await adminCall("GET", vidPath);
    check("the admin API agrees: 1 viewer, 1 viewer id", afterOne.body.viewers === 1 && afterOne.body.distinctViewerIds === 1, JSON.stringify(afterOne.body));
    await page.screenshot({ path: join(ARTIFACTS, "console-viewer-revoked.png") });

    // Revoke every token issued before now (the gate's now, 10 minutes after the browser's): bob's session ends too.
    check("the browser's clock runs 10 minutes behind the gate's", Math.abs(Date.now() - BROWSER_CLOCK_BEHIND_MS - (await page.evaluate(() => Date.now()))) < 60_000);
    const nodeNow = Date.now();
    const updated = await page.evaluate((now) => {
      const text = document.querySelector("#status").textContent;
      // Any second of the last minute, by the gate's clock, in the browser's own format.
      const gateTimes = Array.from({ length: 70 }, (_, i) => `updated ${new Date(now + 5_000 - i * 1000).toLocaleTimeString()}`);
      return { text, gate: gateTimes.includes(text) };
    }, nodeNow);
    check("the page's \"updated\" time is the gate's, as every other time it shows (not the browser's, 10 minutes behind)", updated.gate, updated.text);
    while (Math.floor(Date.now() / 1000) <= bobMinted) await page.waitForTimeout(100);
    await page.click("#dialog .viewers-by-id button[data-action=revoke-before]");
    await page.waitForSelector("#confirm[open]");
    await page.click("#confirm-buttons button.danger");
    await page.waitForFunction(() => /every token/.test(document.querySelector("#dialog .viewers-result")?.textContent ?? "") || document.querySelector("#confirm-error")?.textContent, null, { timeout: 15_000 });
    const all = await page.evaluate(() => ({ result: document.querySelector("#dialog .viewers-result").textContent, error: document.querySelector("#confirm-error").textContent }));
    check("revoking every token issued before now ends bob's session", /Revoked every token issued before now: ended 1 session \(client vidb0001 on vid-edgeb01\)/.test(all.result), `${all.result} ${all.error}`);
    check("no viewer id is left", Object.keys(await viewerTable()).length === 0 && (await page.textContent("#dialog .viewer-list")).includes("No session with a viewer id"));
    check("the revocation of every viewer is listed", /Every viewer: tokens issued before/.test(await page.textContent('#dialog .revocations li[data-sub="*"]').catch(() => "")), await page.textContent("#dialog .revocation-list"));
    // Alice's revocation covers tokens issued before an earlier time: the one of every viewer holds it, and the stream keeps only that.
    const apiRevocations = (await adminCall("GET", `${vidPath}/revocations`)).body.revocations ?? [];
    const listed = await page.evaluate(() => [...document.querySelectorAll("#dialog .revocations li")].map((li) => li.dataset.sub));
    check("the revocations listed are the admin API's", apiRevocations.some((r) => r.sub === null) && listed.join() === apiRevocations.map((r) => r.sub ?? "*").join(),
      `${listed.join()} vs ${JSON.stringify(apiRevocations)}`);
    await page.click("#dialog-buttons button");
    await page.waitForFunction((sel) => document.querySelector(`${sel} .viewers .count`)?.textContent === "0", vidRow, { timeout: 15_000 }).catch(() => {});
    check("the stream's row counts no viewer", (await viewerCount(vidRow)) === "0", await viewerCount(vidRow));
    check("the viewer id stream is revoked", (await adminCall("DELETE", vidPath)).status < 300);
    await page.waitForSelector(vidRow, { state: "detached", timeout: 15_000 });
  }

  // Revoke: the row goes, and the key is refused at once.
  await page.click(`${row} button[data-action=revoke]`);
  await page.click("#dialog-buttons button.danger");
  await page.waitForSelector(row, { state: "detached", timeout: 15_000 });
  check("a revoked stream disappears from the page", true);
  const after = await hook({ ...body("on_publish"), client_id: "newpub01", stream: STREAM, stream_url: `/live/${STREAM}`, param: `?key=${key}` });
  check("after revoke, the old key is refused", after.status === 403 && /unknown stream/.test(after.body.reason), JSON.stringify(after));

  // Paging: more streams than a page holds. Pages are fetched one at a time, with ?limit=.
  const base = `page-${Date.now().toString(36)}`;
  const names = Array.from({ length: 25 }, (_, i) => `${base}-${String(i).padStart(2, "0")}`);
  for (const n of names) {
    const r = await adminCall("PUT", `/streams/live/${n}`, {});
    if (r.status !== 201) throw new Error(`creating ${n}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const shown = () => page.evaluate(() => [...document.querySelectorAll("#streams tbody tr")].map((tr) => tr.dataset.stream));
  const waitShown = async (first, count) => {
    await page.waitForFunction(([f, c]) => {
      const rows = [...document.querySelectorAll("#streams tbody tr")];
      return rows.length === c && rows[0]?.dataset.stream === f;
    }, [first, count], { timeout: 15_000 }).catch(() => {});
    return shown();
  };
  await page.selectOption("#page-size", "20");
  let rows = await waitShown(`live/${names[0]}`, 20);
  check("the first page holds 20 streams", rows.length === 20 && rows[0] === `live/${names[0]}`, rows.join(","));
  check("previous is disabled on the first page, next enabled", (await page.isDisabled("#prev")) && !(await page.isDisabled("#next")));
  await page.click("#next");
  rows = await waitShown(`live/${names[20]}`, 5);
  check("next shows the remaining 5 streams", rows.length === 5 && rows[4] === `live/${names[24]}`, rows.join(","));
  check("next is disabled on the last page", (await page.isDisabled("#next")) && !(await page.isDisabled("#prev")));
  check("the page position is shown", (await page.textContent("#page-info")).includes("page 2 · streams 21–25"), await page.textContent("#page-info"));
  // The refresh keeps the page shown and asks only for it.
  const mark = Date.now();
  await page.waitForTimeout(3_500);
  rows = await shown();
  check("the refresh stays on the page shown", rows.length === 5 && rows[0] === `live/${names[20]}`, rows.join(","));
  const ticks = calls.filter((c) => c.at > mark && c.method === "GET" && c.path === "/admin/streams");
  check("each refresh asks for that one page (limit 20, its cursor)", ticks.length >= 1 && ticks.every((c) => c.query.get("limit") === "20" && c.query.get("cursor")),
    ticks.map((c) => c.query.toString()).join(" | "));
  check("servers are not fetched while neither shown nor needed", !calls.some((c) => c.at > mark && c.path === "/admin/servers"));
  await page.click("#prev");
  rows = await waitShown(`live/${names[0]}`, 20);
  check("previous goes back to the first page", rows.length === 20 && rows[19] === `live/${names[19]}`, rows.join(","));
  // The name filter is applied by the Worker over all streams, and pages too.
  await page.fill("#filter", `live/${base}-2`);
  rows = await waitShown(`live/${names[20]}`, 5);
  check("the name filter finds streams beyond the first page", rows.length === 5 && rows.every((r) => r.startsWith(`live/${base}-2`)), rows.join(","));
  check("a filtered listing asks the Worker with ?prefix=", calls.some((c) => c.path === "/admin/streams" && c.query.get("prefix") === `live/${base}-2`));
  await page.fill("#filter", "");
  await page.selectOption("#page-size", "50");
  rows = await waitShown(`live/${names[0]}`, 25);
  check("a larger page size shows every stream on one page", rows.length === 25 && (await page.isDisabled("#next")), rows.length);
  check("the stream list is never fetched without a limit",
    calls.filter((c) => c.method === "GET" && c.path === "/admin/streams").every((c) => /^(1|20|50)$/.test(c.query.get("limit") ?? "")));
  await page.screenshot({ path: join(ARTIFACTS, "console-paging.png"), fullPage: true });

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
