/**
 * The gate and SRS's HTTP API (src/srs/api.ts, src/srs/ghosts.ts), against a
 * fake SRS API (test/fake-srs.ts) that answers the Worker's and the objects' fetch with the
 * shapes of SRS 7's source (srs_app_http_api.cpp): HTTP 200 for everything,
 * `{"code":2049}` for a client that is gone, `{"code":0,"server","service",
 * "pid","client":{…}}` for one that is there, 401 with an empty body for bad
 * credentials. This file runs with SRS_API_URL = https://{device_id}.srs.test:1985
 * (vitest.config.mts, project "srs-api").
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { admin, createStream, hlsPlay, hook, play, publish, streamState, uniqueStream, unpublish } from "../srs";
import { ALLOW, allCalls, edgeWithApi, fakeAt, frozenEdgeKicking, installFakeSrs, kickedAfterTheTry, operatorKick, takeoverReady, thawedDuringATry, type FakeSrs } from "../fake-srs";
import { at, serverListed, serverStub, T0, until } from "../fleet";

installFakeSrs();

/** Calls that reached a fake SRS API. */
const srsCalls = () => allCalls;

describe("ghosts of lost stop hooks are cleared at the next refusal that rests on them", () => {
  it("a viewer whose on_stop was lost frees its slot for the next viewer on the same edge", async () => {
    const { edge, fake } = await edgeWithApi();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    fake.clients.add("ghost001");
    expect(await hook(play("live", s, { ...edge, client: "ghost001" }))).toEqual(ALLOW);
    fake.clients.delete("ghost001"); // the player left; its on_stop never reached the gate
    fake.clients.add("view0002");
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.some((e: any) => e.action === "ghost" && e.client === "ghost001" && /no longer has this client/.test(e.reason))).toBe(true);
  });

  it("a ghost viewer on one edge frees its slot for a viewer on another edge", async () => {
    const a = await edgeWithApi(["ghost001"]);
    const b = await edgeWithApi(["view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...a.edge, client: "ghost001" }))).toEqual(ALLOW);
    a.fake.clients.delete("ghost001");
    expect(await hook(play("live", s, { ...b.edge, client: "view0002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    expect((await streamState(s)).shards.find((x: any) => x.serverId === a.edge.server)?.viewers ?? 0).toBe(0);
  });

  it("a viewer SRS still has keeps its slot: the next one is refused", async () => {
    const { edge } = await edgeWithApi(["view0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });

  it("a publisher whose on_unpublish was lost no longer blocks the stream", async () => {
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    fake.clients.delete("enc00001"); // OBS reconnected; the old connection's on_unpublish was lost
    fake.clients.add("enc00002");
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00002" }))).toEqual(ALLOW);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
    // The decision log says why the old session ended (an operator reading it sees no unexplained end).
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.filter((e: any) => e.action === "ghost").map((e: any) => [e.client, e.reason])).toEqual([["enc00001", "ended: its SRS server's API no longer has this client (a lost stop event)"]]);
  });

  it("a server answering for another process (it restarted) no longer has the old process's clients", async () => {
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    fake.service = "newproc1"; // restarted, its first heartbeat still on the way
    const other = await edgeWithApi(["enc00002"]);
    expect(await hook(publish("live", s, key, { ...other.edge, client: "enc00002" }))).toEqual(ALLOW);
  });
});

describe("an unreachable or refusing API changes nothing", () => {
  it("an admitted hook never calls the API, reachable or not", async () => {
    const { edge, fake } = await edgeWithApi();
    fake.reachable = false;
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 5 });
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    for (let i = 0; i < 5; i++) expect(await hook(play("live", s, { ...edge, client: `view000${i}` }))).toEqual(ALLOW);
    expect(srsCalls()).toHaveLength(0);
  });

  it("an unreachable edge: its sessions stand, the refusal is as without the API, and the server shows the failure", async () => {
    const { edge, fake } = await edgeWithApi();
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.reachable = false;
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
    await vi.waitFor(async () => expect(await serverListed(edge)).toMatchObject({ api: `https://dev-${edge.server.slice(4)}.srs.test:1985`, apiOk: false }));
  });

  it("wrong credentials (401): sessions stand", async () => {
    const { edge, fake } = await edgeWithApi(["view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.override = () => new Response(null, { status: 401 });
    expect((await hook(play("live", s, { ...edge, client: "view0002" }))).body.code).toBe(4005);
    expect(fake.calls.length).toBeGreaterThan(0);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });
});

describe("PUT /admin/servers/{server_id}: the API of one server", () => {
  it("an override replaces SRS_API_URL for that server, null puts the template back, and GET /admin/servers shows it", async () => {
    const { edge } = await edgeWithApi();
    const put = await admin("PUT", `/servers/${edge.server}`, { api: "https://srs-eu-1.srs.test:1985/" });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ serverId: edge.server, api: "https://srs-eu-1.srs.test:1985", apiOk: null });
    expect(await serverListed(edge)).toMatchObject({ api: "https://srs-eu-1.srs.test:1985" });
    // The ghost check now asks the override.
    const fake = fakeAt("srs-eu-1.srs.test:1985", edge, []);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    fake.clients.add("view0001");
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    fake.clients.clear();
    fake.clients.add("view0002");
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    expect(fake.calls.length).toBeGreaterThan(0);
    expect((await admin("PUT", `/servers/${edge.server}`, { api: null })).body).toMatchObject({ api: `https://dev-${edge.server.slice(4)}.srs.test:1985` });
  });

  it("answers with the server as GET /admin/servers shows it: its viewers are among its sessions", async () => {
    const { edge } = await edgeWithApi();
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const put = await admin("PUT", `/servers/${edge.server}`, { api: "https://srs-eu-2.srs.test:1985" });
    expect(put.status).toBe(200);
    expect(put.body.sessions).toBe(2); // the publisher and the viewer
    expect(put.body).toEqual(await serverListed(edge));
  });

  it("refuses what is not an API base URL, and servers never heard of", async () => {
    const { edge } = await edgeWithApi();
    for (const api of ["ftp://x", "not a url", "https://user:pw@srs.example:1985", "https://srs.example:1985/?token=1", 42]) {
      const r = await admin("PUT", `/servers/${edge.server}`, { api });
      expect(r.status, String(api)).toBe(400);
    }
    expect((await admin("PUT", `/servers/${edge.server}`, { url: "https://x" })).status).toBe(400);
    expect((await admin("PUT", `/servers/${edge.server}`, {})).status).toBe(400);
    expect((await admin("PUT", `/servers/vid-neverseen`, { api: "https://x.srs.test" })).status).toBe(404);
    // Only under SRS_API_URL's host: the SRS API credentials never go elsewhere, whoever holds the admin token.
    const foreign = await admin("PUT", `/servers/${edge.server}`, { api: "https://collector.attacker.example" });
    expect(foreign.status).toBe(400);
    expect(foreign.body.error).toMatch(/under "\.srs\.test"/);
    expect(await serverListed(edge)).toMatchObject({ api: `https://dev-${edge.server.slice(4)}.srs.test:1985`, apiOk: null });
  });
});

describe("kicks: revoking what a client was admitted with disconnects it on its edge", () => {
  const kickedOn = (fake: FakeSrs, client: string) => fake.calls.some((c) => c.method === "DELETE" && c.path === `/api/v1/clients/${client}`);
  const streamEvents = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];

  it("rotating the key kicks the live publisher within 5 s, and the decision log says so", async () => {
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    const began = Date.now();
    const put = await admin("PUT", `/streams/live/${s}`, { rotateKey: true });
    expect(put.status).toBe(200);
    expect(put.body.kicking).toEqual([{ role: "publisher", serverId: edge.server, clientId: "enc00001" }]);
    await vi.waitFor(() => expect(kickedOn(fake, "enc00001")).toBe(true), { timeout: 5000, interval: 50 });
    expect(Date.now() - began).toBeLessThan(5000);
    expect(fake.clients.has("enc00001")).toBe(false);
    await vi.waitFor(async () => expect((await streamEvents(s)).some((e: any) => e.action === "kick" && e.client === "enc00001" && e.reason === "kicked (key rotated)")).toBe(true), { timeout: 5000 });
  });

  it("deleting the stream kicks its publisher and its viewers on every edge", async () => {
    const a = await edgeWithApi(["enc00001", "view0001"]);
    const b = await edgeWithApi(["view0002"]);
    const s = uniqueStream();
    const key = await createStream(s, { maxViewers: 10 });
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...a.edge, client: "view0001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...b.edge, client: "view0002" }))).toEqual(ALLOW);
    const del = await admin("DELETE", `/streams/live/${s}`);
    expect(del.status).toBe(200);
    expect(new Set(del.body.kicking.map((k: any) => `${k.role}/${k.clientId}`))).toEqual(new Set(["publisher/enc00001", "viewer/view0001", "viewer/view0002"]));
    await vi.waitFor(() => expect([kickedOn(a.fake, "enc00001"), kickedOn(a.fake, "view0001"), kickedOn(b.fake, "view0002")]).toEqual([true, true, true]), { timeout: 5000, interval: 50 });
  });

  it("ending sessions through the admin API kicks those clients (and only those)", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "view0002"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edge, client: "view0002" }))).toEqual(ALLOW);
    const r = await admin("DELETE", `/streams/live/${s}/sessions?client=view0001`);
    expect(r.body.kicking).toEqual([{ role: "viewer", serverId: edge.server, clientId: "view0001" }]);
    await vi.waitFor(() => expect(kickedOn(fake, "view0001")).toBe(true), { timeout: 5000, interval: 50 });
    expect(kickedOn(fake, "view0002")).toBe(false);
  });

  it("an HLS viewer refused after choosing its own hls_ctx is kicked (SRS would serve it without asking again), and the decision log says so", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "hlsctx01"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    const refused = await hook(hlsPlay(s, { ...edge, client: "hlsctx01" }, "?hls_ctx=hlsctx01"));
    expect(refused.body.code).toBe(4005);
    await vi.waitFor(() => expect(kickedOn(fake, "hlsctx01")).toBe(true), { timeout: 5000, interval: 50 });
    expect(fake.clients.has("hlsctx01")).toBe(false);
    await vi.waitFor(async () => expect((await streamEvents(s)).some((e: any) => e.action === "kick" && e.client === "hlsctx01" && /^kicked \(refused \(viewer cap reached: 1 of 1 viewers\)/.test(e.reason))).toBe(true), { timeout: 5000 });
    expect(kickedOn(fake, "view0001")).toBe(false);
    expect(await streamState(s)).toMatchObject({ viewers: 1 });
  });

  it("a refused viewer SRS does not keep is not kicked: RTMP, and HLS with a session id SRS chose", async () => {
    const { edge, fake } = await edgeWithApi(["view0001", "rtmp0002", "hlssrs03", "hlsown04"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1 });
    expect(await hook(play("live", s, { ...edge, client: "view0001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edge, client: "rtmp0002" }))).body.code).toBe(4005);
    expect((await hook(hlsPlay(s, { ...edge, client: "hlssrs03" }, ""))).body.code).toBe(4005);
    // A later one that is kicked: the two before it, refused first, would have been kicked no later.
    expect((await hook(hlsPlay(s, { ...edge, client: "hlsown04" }, "?hls_ctx=hlsown04"))).body.code).toBe(4005);
    await vi.waitFor(() => expect(kickedOn(fake, "hlsown04")).toBe(true), { timeout: 5000, interval: 50 });
    expect([kickedOn(fake, "rtmp0002"), kickedOn(fake, "hlssrs03")]).toEqual([false, false]);
  });

  it("a kick being tried when its silent edge is heard from again goes again at once when that try fails (it waited for its next backoff step: 8 s in e2e run 27)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, fake } = await frozenEdgeKicking();
      // The kick's first try is on its way (hanging) when the edge comes back and heartbeats.
      await thawedDuringATry(edge, fake);
      // That try still fails (its call times out); the next one goes at once, on this clock (no time passes).
      await kickedAfterTheTry(edge, fake);
    } finally {
      vi.useRealTimers();
    }
  });

  it("an edge that stays unreachable: the kick is retried with backoff, then logged as failed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, s } = await operatorKick((fake) => void (fake.reachable = false));
      await runDurableObjectAlarm(serverStub(edge));
      at(1_500);
      await runDurableObjectAlarm(serverStub(edge));
      expect((await streamEvents(s)).some((e: any) => e.action === "kick")).toBe(false); // still trying
      // ... and the decision log says so, once (run 24, obs. 1: nothing was told until the outcome, 5 minutes later).
      const waiting = (await streamEvents(s)).filter((e: any) => e.action === "kick-wait");
      expect(waiting.map((e: any) => `${e.client} ${e.reason}`)).toEqual([
        `view0001 kick waiting: edge unreachable; tried again until ${new Date(T0 + 5 * 60_000).toISOString()}, at once when the server is heard from again (ended by operator)`,
      ]);
      at(5 * 60_000 + 10_000);
      await runDurableObjectAlarm(serverStub(edge));
      const events = await streamEvents(s);
      expect(events.some((e: any) => e.action === "kick" && e.client === "view0001" && /^kick failed: edge unreachable/.test(e.reason))).toBe(true);
      expect(await serverListed(edge)).toMatchObject({ apiOk: false });
    } finally {
      vi.useRealTimers();
    }
  });

  it("an edge back before the retries end: the kick goes through", async () => {
    const { fake } = await operatorKick((fake) => void (fake.reachable = false));
    // Back once the kick's first try has failed (its question reached the unreachable edge).
    await until(() => fake.calls.some((c) => c.path === "/api/v1/clients/view0001"));
    fake.reachable = true;
    await vi.waitFor(() => expect(kickedOn(fake, "view0001")).toBe(true), { timeout: 8000, interval: 100 });
  });
});

describe('publisher takeover: onDuplicatePublish "replace"', () => {
  const kickedOn = (fake: FakeSrs, client: string) => fake.calls.some((c) => c.method === "DELETE" && c.path === `/api/v1/clients/${client}`);

  it("a second publisher with the right key, on another edge, takes the stream over once the old one is kicked", async () => {
    const { a, b, s, key } = await takeoverReady();
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    const state = await streamState(s);
    expect(state).toMatchObject({ live: true, publisher: { serverId: b.edge.server, clientId: "enc00002", state: "live" }, conflicts: [] });
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.some((e: any) => e.action === "takeover" && e.client === "enc00001" && /replaced by client enc00002/.test(e.reason))).toBe(true);
  });

  it("the old edge cannot be reached: the new publisher is refused, saying so, and the old one keeps the stream", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.reachable = false;
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.status).toBe(403);
    expect(r.body.code).toBe(4009);
    expect(r.body.reason).toMatch(/^publisher takeover failed: edge .* unreachable/);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });

  it('"deny" (the default) refuses as before and kicks nobody; "replace" with a wrong key kicks nobody either', async () => {
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect((await streamState(s)).onDuplicatePublish).toBe("deny");
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    expect((await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).body.code).toBe(4004);
    await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: "replace" });
    expect((await hook(publish("live", s, "wrong-key", { ...b.edge, client: "enc00002" }))).body.code).toBe(4003);
    expect(kickedOn(a.fake, "enc00001")).toBe(false);
  });

  it("refuses values other than deny and replace", async () => {
    const s = uniqueStream();
    await createStream(s);
    for (const v of ["Replace", "kick", null, true]) expect((await admin("PUT", `/streams/live/${s}`, { onDuplicatePublish: v })).status, String(v)).toBe(400);
    expect((await streamState(s)).onDuplicatePublish).toBe("deny");
  });
});

describe("what the real SRS run showed", () => {
  it("a takeover whose old publisher sends on_unpublish before SRS's API lets it go: admitted, and the takeover is in the log", async () => {
    const { a, b, s, key } = await takeoverReady();
    a.fake.linger = true;
    a.fake.onKick = () => void hook(unpublish("live", s, { ...a.edge, client: "enc00001" }));
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    const events = (await admin("GET", `/streams/live/${s}/events`)).body.events;
    expect(events.some((e: any) => e.action === "takeover" && e.client === "enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });

  it("a publisher ended as a ghost leaves its server's index too (the server's session count drops)", async () => {
    const { edge, fake } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect(await serverListed(edge)).toMatchObject({ sessions: 1 });
    fake.clients.delete("enc00001");
    const other = await edgeWithApi(["enc00002"]);
    expect(await hook(publish("live", s, key, { ...other.edge, client: "enc00002" }))).toEqual(ALLOW);
    await vi.waitFor(async () => expect(await serverListed(edge)).toMatchObject({ sessions: 0 }));
  });

  it("a stream deleted and created again starts with an empty decision log", async () => {
    const { edge } = await edgeWithApi(["enc00001"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...edge, client: "enc00001" }))).toEqual(ALLOW);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    await createStream(s);
    expect((await admin("GET", `/streams/live/${s}/events`)).body.events.filter((e: any) => e.client === "enc00001")).toEqual([]);
  });
});
