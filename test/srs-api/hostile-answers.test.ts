/**
 * Adversarial review of the SRS HTTP API client (src/srs/api.ts, ghosts.ts, kicks.ts),
 * the kick outbox and publisher takeover. Runs in the "srs-api" project
 * (SRS_API_URL = https://{device_id}.srs.test:1985, basic auth gate / srs-api-password).
 *
 * The fake SRS API is test/fake-srs.ts (shared with test/srs-api/srs-api.test.ts).
 *
 * "must not happen (fixed): " tests failed on the code the review found; "holds: " tests are probes that passed.
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { admin, createStream, hook, play, publish, streamState, uniqueStream } from "../srs";
import { ALLOW, BASIC, FakeSrs, allCalls, edgeWithApi, hostOf, hosts, installFakeSrs } from "../fake-srs";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let logLines: string[] = [];

installFakeSrs();
beforeEach(() => {
  logLines = [];
  for (const m of ["log", "error", "warn", "info"] as const) {
    const orig = console[m].bind(console);
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => {
      logLines.push(args.map(String).join(" "));
      orig(...args);
    });
  }
});

const events = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
const replace = (s: string) => admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "replace" });
const deletes = (fake: FakeSrs) => fake.calls.filter((c) => c.method === "DELETE");

// ---------------------------------------------------------------------------------------------
describe("(1) a hostile or wrong SRS API answer", () => {
  it("must not happen (fixed): an override pointing at another SRS server (whose 2049 carries no server id) ends a live publisher as a ghost and admits a second publisher", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    // Operator typo: edge a's API override names edge b's API.
    expect((await admin("PUT", `/servers/${a.edge.server}`, { api: `https://${hostOf(b.edge)}` })).status).toBe(200);
    // enc00001 is still publishing on edge a (a.fake has it); a second publisher must be refused as busy.
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(a.fake.clients.has("enc00001")).toBe(true);
    expect(r.body.code).toBe(4004);
  });

  it("must not happen (fixed): an override pointing at another SRS server ends a real viewer as a ghost, so the cap is exceeded on SRS", async () => {
    const a = await edgeWithApi(["view0001", "view0002"]);
    const b = await edgeWithApi([]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...a.edge, client: "view0001" }))).toEqual(ALLOW);
    await admin("PUT", `/servers/${a.edge.server}`, { api: `https://${hostOf(b.edge)}` });
    const r = await hook(play("live", s, { ...a.edge, client: "view0002" }));
    // Both viewers are connected on edge a: the second must be refused for the cap.
    expect(r.body.code).toBe(4005);
  });

  it("must not happen (fixed): with replace, a takeover through a wrong override 'finds the old publisher gone' and admits a second publisher while the first keeps streaming (no kick ever reaches it)", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    await admin("PUT", `/servers/${a.edge.server}`, { api: `https://${hostOf(b.edge)}` });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(deletes(a.fake)).toHaveLength(0);
    expect(a.fake.clients.has("enc00001")).toBe(true);
    // Fail closed: the old publisher could not be kicked, so the new one must be refused (4009).
    expect(r.body.code).toBe(4009);
  });

  it("must not happen (fixed): an API answer for the right server without a `service` field is taken as proof of a restart and ends a live publisher", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.noService = true; // e.g. an SRS build or proxy whose envelope lacks "service"
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(a.fake.clients.has("enc00001")).toBe(true);
    expect(r.body.code).toBe(4004);
  });

  it("must not happen (fixed): a redirect from an edge's API is followed, and the bare 2049 of the host it names ends a live publisher", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const elsewhere = new FakeSrs("vid-other00", "other000");
    hosts.set("elsewhere.example", elsewhere);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    // A proxy or hostile API in front of edge a redirects every call elsewhere. SRS itself never redirects.
    a.fake.override = (req) => new Response(null, { status: 302, headers: { location: `https://elsewhere.example${new URL(req.url).pathname}` } });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4004);
    expect(elsewhere.calls.length).toBe(0);
  });

  it("must not happen (fixed): a huge API answer is read whole into the object's memory (no size bound on an answer SRS keeps under 2 KB)", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    let pulled = 0;
    const chunk = new TextEncoder().encode("x".repeat(1 << 20));
    a.fake.override = () => {
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(c) {
          if (sent === 0) c.enqueue(new TextEncoder().encode('{"code":2049,"pad":"'));
          if (sent < 24) {
            c.enqueue(chunk);
            pulled += chunk.length;
            sent++;
          } else {
            c.enqueue(new TextEncoder().encode('"}'));
            c.close();
          }
        },
      });
      return new Response(body, { status: 200, headers: { "content-type": "application/json" } });
    };
    await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    // SRS's answers are tiny; reading 24 MiB of one is a memory exhaustion vector in a 128 MB isolate.
    expect(pulled).toBeLessThanOrEqual(1 << 20);
  });

  it("holds: 5xx, 3xx without Location, HTML, a JSON array, code 0 of another server, and 401 all leave a live publisher standing", async () => {
    const answers: Array<() => Response> = [
      () => new Response("bad gateway", { status: 502 }),
      () => new Response(null, { status: 503 }),
      () => new Response(null, { status: 304 }),
      () => new Response("<html>captive portal</html>", { status: 200, headers: { "content-type": "text/html" } }),
      () => Response.json([{ code: 2049 }]),
      () => Response.json({ code: "2049" }),
      () => Response.json({ code: 0, server: "vid-someone", service: "whatever", client: {} }),
      () => new Response(null, { status: 401 }),
    ];
    for (const answer of answers) {
      const a = await edgeWithApi(["enc00001"]);
      const b = await edgeWithApi(["enc00002"]);
      const s = uniqueStream();
      const key = await createStream(s);
      await replace(s);
      expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
      a.fake.override = answer;
      const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
      expect(r.body.code, String(answer)).toBe(4009);
      expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
    }
  });

  it("holds: client ids with path characters (../x, a%2Fb, x?y=1#z, a/b) reach the API as one path segment naming exactly that id, or not at all", async () => {
    // SRS reads the segment as it arrives (no percent-decoding: test/srs-api/client-ids-in-api-paths.test.ts), so
    // "a%2Fb" goes as it is; "/", "?", "#" and dot segments cannot be carried as SRS holds them: never asked, logged.
    const ids = ["../x", "a%2Fb", "x?y=1#z", "a/b", "%2e%2e"];
    const { edge, fake } = await edgeWithApi(ids);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    for (const id of ids) expect(await hook(play("live", s, { ...edge, client: id }))).toEqual(ALLOW);
    await admin("DELETE", `/streams/live/${s}/sessions`);
    await vi.waitFor(async () => expect((await events(s)).filter((e: any) => e.action === "kick")).toHaveLength(ids.length), { timeout: 5000, interval: 50 });
    for (const c of fake.calls) {
      expect(c.path.startsWith("/api/v1/clients/")).toBe(true);
      expect(c.path.slice("/api/v1/clients/".length)).not.toMatch(/[/?#]/);
    }
    expect(deletes(fake).map((c) => c.path)).toEqual(["/api/v1/clients/a%2Fb"]);
    expect([...fake.clients].sort()).toEqual(["%2e%2e", "../x", "a/b", "x?y=1#z"]);
    expect((await events(s)).filter((e: any) => e.action === "kick" && e.reason.includes("cannot be named in SRS's API"))).toHaveLength(4);
  });

  it('must not happen (fixed): a client id ".." is normalised out of the URL: the kick hits /api/v1/ and the log says "kicked" while the client stays connected', async () => {
    const { edge, fake } = await edgeWithApi([".."]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: ".." }))).toEqual(ALLOW);
    await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    await vi.waitFor(async () => expect((await events(s)).some((e: any) => e.action === "kick")).toBe(true), { timeout: 5000, interval: 50 });
    const kick = (await events(s)).find((e: any) => e.action === "kick");
    // The calls went to ${[...new Set(fake.calls.map((c) => c.path))].join(", ")}: SRS's index, not the client.
    expect({ stillConnected: fake.clients.has(".."), logged: kick.reason }).not.toMatchObject({ stillConnected: true, logged: expect.stringMatching(/^kicked/) });
  });

  it("must not happen (fixed): an admin-token holder points a server's API at any host and receives SRS_API_USERNAME/SRS_API_PASSWORD in the basic-auth header", async () => {
    const { edge } = await edgeWithApi(["view0001"]);
    const collector = new FakeSrs("x", "y");
    collector.override = () => Response.json({ code: 2049 });
    hosts.set("collector.attacker.example", collector);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    // Also accepted: http://localhost:1985, http://10.0.0.5:1985, http://internal-admin.corp/… (any http(s) URL).
    // Rule: an override must be a host under SRS_API_URL's (after its last placeholder): refused otherwise.
    for (const api of ["http://localhost:1985", "http://10.0.0.5:1985", "https://collector.attacker.example"]) {
      expect((await admin("PUT", `/servers/${edge.server}`, { api })).status, api).toBe(400);
    }
    await admin("DELETE", `/streams/live/${s}/sessions`);
    await new Promise((r) => setTimeout(r, 500));
    expect(collector.calls.some((c) => c.auth === BASIC)).toBe(false);
  });

  it("holds: no hook secret, admin token, SRS API password or publish key in logs or API URLs, even when every API call fails", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 0 });
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.override = () => new Response("nope", { status: 500 });
    await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    a.fake.reachable = false;
    await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    await sleep(300);
    const text = logLines.join("\n") + JSON.stringify(allCalls.map((c) => `${c.host}${c.path}`));
    for (const secret of ["test-hook-secret-32-chars-or-more", "test-admin-token-32-chars-or-more", "srs-api-password", btoa("gate:srs-api-password"), key]) {
      expect(text.includes(secret), secret).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe("(2) a flaky network", () => {
  it("holds: an API that never answers delays a refusal by at most ~2 s, and the next refusals within 5 s do not call it", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.hang = true;
    const b = await edgeWithApi(["enc00002", "enc00003"]);
    let t = Date.now();
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).body.code).toBe(4004);
    expect(Date.now() - t).toBeLessThan(3500);
    const before = a.fake.calls.length;
    t = Date.now();
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00003" }))).body.code).toBe(4004);
    expect(Date.now() - t, "not a 2 s call to the hanging API (a margin for a loaded machine)").toBeLessThan(1500);
    expect(a.fake.calls.length).toBe(before);
  });

  it("holds: a body that stalls after the headers is cut by the same 2 s timeout", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.override = (req) => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"code":'));
          req.signal.addEventListener("abort", () => c.error(req.signal.reason));
        },
      });
      return new Response(body, { status: 200 });
    };
    const t = Date.now();
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).body.code).toBe(4004);
    expect(Date.now() - t).toBeLessThan(3500);
  });

  it("must not happen (fixed): concurrent cap refusals on one edge send more than 4 calls at a time to its API (README: at most 4 calls at a time to one server)", async () => {
    const viewers = Array.from({ length: 8 }, (_, i) => `view${String(i).padStart(4, "0")}`);
    const extra = Array.from({ length: 6 }, (_, i) => `late${String(i).padStart(4, "0")}`);
    const { edge, fake } = await edgeWithApi([...viewers, ...extra]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: viewers.length });
    for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
    fake.delayMs = 300;
    const answers = await Promise.all(extra.map((v) => hook(play("live", s, { ...edge, client: v }))));
    expect(answers.every((r) => r.body.code === 4005)).toBe(true);
    expect(fake.maxInFlight).toBeLessThanOrEqual(4);
  });

  it("must not happen (fixed): a slow but answering edge API (1 s per answer) makes a cap refusal wait ~5 s: 20 viewers asked 4 at a time, no bound per refusal", async () => {
    const viewers = Array.from({ length: 20 }, (_, i) => `view${String(i).padStart(4, "0")}`);
    const { edge, fake } = await edgeWithApi([...viewers, "late0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 20 });
    for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
    fake.delayMs = 1000;
    const t = Date.now();
    expect((await hook(play("live", s, { ...edge, client: "late0001" }))).body.code).toBe(4005);
    const took = Date.now() - t;
    // One API timeout (2 s) is what a refusal may cost; this one costs GHOSTS_PER_CHECK / CALLS_PER_SERVER round trips.
    expect(took, "bounded by one 2 s API timeout, not 5 rounds of 1 s (a margin for a loaded machine)").toBeLessThan(3500);
  });

  it("holds: the kick outbox drains more than 20 kicks (alarm re-armed at once)", async () => {
    const viewers = Array.from({ length: 45 }, (_, i) => `view${String(i).padStart(4, "0")}`);
    const { edge, fake } = await edgeWithApi(viewers);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 100 });
    for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
    const del = await admin("DELETE", `/streams/live/${s}`);
    expect(del.body.kicking).toHaveLength(45);
    await vi.waitFor(() => expect(fake.clients.size).toBe(0), { timeout: 8000, interval: 100 });
  });

  it("holds: a kick queued for a process that restarted never kicks the new process's client that reuses the id", async () => {
    const { edge, fake } = await edgeWithApi(["view0001"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.service = "newproc1"; // restarted; a new client got the same id
    await admin("DELETE", `/streams/live/${s}/sessions`);
    await vi.waitFor(async () => expect((await events(s)).some((e: any) => e.action === "kick")).toBe(true), { timeout: 5000, interval: 50 });
    expect(deletes(fake)).toHaveLength(0);
    expect(fake.clients.has("view0001")).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
describe("(3) an SRS fleet: takeover", () => {
  it("must not happen (fixed): a takeover whose kick is acknowledged but whose old client lingers past 1 s admits the new publisher anyway (two publishers on SRS)", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.linger = true;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(a.fake.clients.has("enc00001")).toBe(true); // still publishing on edge a
    expect(r.body.code).toBe(4009);
  });

  it("must not happen (fixed): a takeover whose edge API goes away right after the kick takes 'unknown' for 'gone' and admits without confirmation", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.linger = true;
    a.fake.downAfterDelete = true;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(a.fake.clients.has("enc00001")).toBe(true);
    expect(r.body.code).toBe(4009);
  });

  it("holds: two simultaneous takeovers from two edges admit exactly one publisher", async () => {
    for (let round = 0; round < 3; round++) {
      const a = await edgeWithApi(["enc00001"]);
      const b = await edgeWithApi(["enc00002"]);
      const c = await edgeWithApi(["enc00003"]);
      a.fake.delayMs = 50;
      const s = uniqueStream();
      const key = await createStream(s);
      await replace(s);
      expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
      const [rb, rc] = await Promise.all([
        hook(publish("live", s, key, { ...b.edge, client: "enc00002" })),
        hook(publish("live", s, key, { ...c.edge, client: "enc00003" })),
      ]);
      expect([rb, rc].filter((r) => r.status === 200 && r.body.code === 0)).toHaveLength(1);
      const state = await streamState(s);
      expect(state.conflicts).toEqual([]);
      expect(state.publisher.state).toBe("live");
    }
  });

  it("holds: a takeover racing the old encoder's own republish (new client id, same edge) admits exactly one", async () => {
    const a = await edgeWithApi(["enc00001", "enc00003"]);
    const b = await edgeWithApi(["enc00002"]);
    a.fake.delayMs = 50;
    const s = uniqueStream();
    const key = await createStream(s);
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    const [rb, ra] = await Promise.all([
      hook(publish("live", s, key, { ...b.edge, client: "enc00002" })),
      hook(publish("live", s, key, { ...a.edge, client: "enc00003" })),
    ]);
    expect([rb, ra].filter((r) => r.status === 200 && r.body.code === 0)).toHaveLength(1);
    expect((await streamState(s)).conflicts).toEqual([]);
  });

  it("holds: takeover when the old publisher's server restarted (API answers for a new service_id): no DELETE to the new process, new publisher admitted", async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    await replace(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.service = "newproc1"; // restarted; its new process happens to have a client enc00001 too
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(deletes(a.fake)).toHaveLength(0);
    expect(a.fake.clients.has("enc00001")).toBe(true);
  });

  it("holds: HLS-style viewer ids (hls_ctx) are asked and kicked like any other client", async () => {
    const { edge, fake } = await edgeWithApi(["k3x9q2p7"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook({ ...play("live", `${s}.m3u8`, { ...edge, client: "k3x9q2p7" }), stream: `${s}.m3u8` })).toEqual(ALLOW);
    expect((await streamState(s)).viewers).toBe(1);
    await admin("DELETE", `/streams/live/${s}`);
    await vi.waitFor(() => expect(fake.clients.has("k3x9q2p7")).toBe(false), { timeout: 5000, interval: 50 });
  });
});
