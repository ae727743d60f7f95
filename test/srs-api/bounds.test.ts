/**
 * The bounds of streamgate's calls to SRS's HTTP API (README "SRS's HTTP API": "Never on the path of
 * an admitted hook", "a refusal waits at most 2 s for its check", "at most 4 calls at a time go from
 * one object to one server"), the reasons kicks and takeovers give when an edge answers but not as
 * it should, and where a per-server override may point. Against the fake SRS API of
 * test/fake-srs.ts; runs in the "srs-api" project (SRS_API_URL = https://{device_id}.srs.test:1985).
 *
 * Time bounds are read from the fake API's calls (what was still in flight when the hook answered,
 * how many calls it saw at once), not from the wall clock.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { ServerRegistry } from "../../src/server/registry";
import { StreamObject } from "../../src/stream/object";
import { admin, adminWith, createStream, heartbeat, hook, play, publish, uniqueStream } from "../srs";
import { ALLOW, allCalls, deviceOf, edgeWithApi, installFakeSrs, operatorKick, takeoverReady, type FakeSrs } from "../fake-srs";
import { at, holdMatching, serverListed, serverStub, until, withNoticeTimeout } from "../fleet";
import { limited, playWith, tokenOf } from "../identity";

installFakeSrs();

const events = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
const getsOf = (fake: FakeSrs, client: string) => fake.calls.filter((c) => c.method === "GET" && c.path === `/api/v1/clients/${client}`).length;

/** A stream capped at `n` whose n slots are taken by viewers SRS has on `edge`'s process. */
async function fullOn(n: number) {
  const viewers = Array.from({ length: n }, (_, i) => `view${String(i).padStart(4, "0")}`);
  const { edge, fake } = await edgeWithApi(viewers);
  const s = uniqueStream();
  await createStream(s, { maxViewers: n });
  for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
  return { edge, fake, s, viewers };
}

describe("an admitted on_play makes no API call, and never waits on an edge's API", () => {
  it("a slot unused on another edge: handed over at once, without asking that edge's API about its viewers", async () => {
    const a = await edgeWithApi(["view0001", "view0002", "view0003"]);
    const b = await edgeWithApi(["view0004"]);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    for (const c of ["view0001", "view0002", "view0003"]) expect(await hook(play("live", s, { ...a.edge, client: c }))).toEqual(ALLOW);
    a.fake.hang = true; // A's API would hold anyone who asked it
    const before = allCalls.length;
    expect(await hook(play("live", s, { ...b.edge, client: "view0004" }))).toEqual(ALLOW);
    expect(allCalls.slice(before)).toEqual([]);
  });

  it('onExtraViewerSession "replace": the viewer\'s session on another edge is replaced without asking that edge\'s API', async () => {
    const a = await edgeWithApi(["c0000001"]);
    const b = await edgeWithApi(["c0000002"]);
    const s = await limited({ onExtraViewerSession: "replace" });
    const token = await tokenOf(s, "alice");
    expect(await hook(playWith(s, a.edge, "c0000001", token))).toEqual(ALLOW);
    a.fake.hang = true;
    const before = allCalls.filter((c) => c.method === "GET").length;
    expect(await hook(playWith(s, b.edge, "c0000002", token))).toEqual(ALLOW);
    // The old session is kicked afterwards (in the background): no question was asked before the answer.
    expect(allCalls.filter((c) => c.method === "GET").length).toBe(before);
  });
});

describe("a refusal's check: at most 2 s in all, and a slow API is not a failing one", () => {
  it("the registry's word on where the API is counts within the 2 s: the refusal does not wait for it", async () => {
    const { edge, s } = await fullOn(1);
    const lookup = holdMatching(ServerRegistry.prototype, "apiTarget", () => true);
    const r = await hook(play("live", s, { ...edge, client: "late0001" }));
    expect(r.body.code).toBe(4005);
    expect(lookup.reached).toBe(true);
    expect(lookup.done).toBe(false); // still held when the hook was answered
  });

  it("a 'not found' whose identity call is slow: the refusal answers within its 2 s, and the late answer serves the next refusal", async () => {
    const { edge, fake, s } = await fullOn(1);
    fake.clients.delete("view0000"); // a ghost: SRS says 2049, then GET /api/v1/versions must say who answers
    fake.clients.add("late0001");
    fake.clients.add("next0002");
    fake.delayMs = 1_200; // each call 1.2 s: the GET and the identity call together 2.4 s
    const r = await hook(play("live", s, { ...edge, client: "late0001" }));
    const inFlight = fake.inFlight;
    expect(r.body.code).toBe(4005);
    expect(inFlight).toBe(1); // the identity call, still on its way
    expect(fake.calls.some((c) => c.path === "/api/v1/versions")).toBe(true);
    await until(() => fake.inFlight === 0);
    fake.delayMs = 0;
    const asked = getsOf(fake, "view0000");
    // The answer that came late is kept: the ghost ends at the next refusal without asking again.
    expect(await hook(play("live", s, { ...edge, client: "next0002" }))).toEqual(ALLOW);
    expect(getsOf(fake, "view0000")).toBe(asked);
  });

  it("a slow but healthy API that runs out of a refusal's time is not marked as failing: GET /admin/servers shows apiOk true", async () => {
    const { edge, fake, s } = await fullOn(9);
    fake.clients.add("late0001");
    fake.delayMs = 1_500; // 9 questions, 4 at a time: the second four end at 3 s, the ninth has no turn within 2 s
    const r = await hook(play("live", s, { ...edge, client: "late0001" }));
    const inFlight = fake.inFlight;
    expect(r.body.code).toBe(4005);
    expect(inFlight).toBeGreaterThan(0); // answered within the 2 s, not once every question was answered
    await until(() => fake.inFlight === 0);
    await vi.waitFor(async () => expect((await serverListed(edge)).apiOk).toBe(true));
  });
});

describe("at most 4 calls at a time from one object to one server", () => {
  it("the kick outbox: deleting a stream with 30 viewers on one edge kicks them all, 4 calls at a time at most", async () => {
    const viewers = Array.from({ length: 30 }, (_, i) => `view${String(i).padStart(4, "0")}`);
    const { edge, fake } = await edgeWithApi(viewers);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 100 });
    for (const v of viewers) expect(await hook(play("live", s, { ...edge, client: v }))).toEqual(ALLOW);
    fake.delayMs = 200;
    expect((await admin("DELETE", `/streams/live/${s}`)).body.kicking).toHaveLength(30);
    await vi.waitFor(() => expect(fake.clients.size).toBe(0), { timeout: 15_000, interval: 100 });
    expect(fake.maxInFlight).toBeGreaterThan(1);
    expect(fake.maxInFlight).toBeLessThanOrEqual(4);
  });
});

describe("an edge that answers, but not as it should, is named for what it answered", () => {
  it("a kick refused for its credentials (401) says so in the decision log, not 'edge unreachable'", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    try {
      const { edge, s } = await operatorKick((fake) => void (fake.override = () => new Response(null, { status: 401 })));
      await runDurableObjectAlarm(serverStub(edge));
      at(5 * 60_000 + 10_000);
      await runDurableObjectAlarm(serverStub(edge));
      const kick = (await events(s)).find((e: any) => e.action === "kick" && e.client === "view0001");
      expect(kick?.reason).toBe("kick failed: edge refused credentials (401) for 300 s (ended by operator)");
    } finally {
      vi.useRealTimers();
    }
  });

  it("a takeover whose kick the old edge refuses: 4009 names what it answered, and GET /admin/servers shows the failed call", async () => {
    const { a, b, s, key } = await takeoverReady();
    // The ghost check's GET finds the old publisher; the kick itself (DELETE) is answered with HTTP 500, and so is every
    // call after it (the questions whether the kick went through anyway: the takeover waits for the client to go).
    let failing = false;
    a.fake.override = (req) => {
      failing ||= req.method === "DELETE";
      return failing ? new Response(null, { status: 500 }) : Response.json({ ...a.fake.envelope(), client: { id: "enc00001" } });
    };
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(r.body.reason).toMatch(new RegExp(`^publisher takeover failed: edge ${a.edge.server} answered HTTP 500 `));
    await vi.waitFor(async () => expect((await serverListed(a.edge)).apiOk).toBe(false));
  });
});

describe("PUT /admin/servers/{server_id}: an override stays under SRS_API_URL's host", () => {
  it("label by label: with SRS_API_URL https://example.com/{server_id}, https://evilexample.com is refused", async () => {
    const { edge } = await edgeWithApi();
    const settings = { SRS_API_URL: "https://example.com/{server_id}" };
    const put = (api: string) => adminWith(settings, "PUT", `/servers/${edge.server}`, { api });
    expect((await put("https://evilexample.com")).status).toBe(400);
    expect((await put("https://evil-example.com:1985")).status).toBe(400);
    expect((await put("https://example.com.evil.test")).status).toBe(400);
    expect((await put("https://edge-1.example.com:1985")).status).toBe(200);
    expect((await put("https://example.com:1985/srs")).status).toBe(200);
  });
});

describe("kicks are not held behind the registry's notices", () => {
  it("a kick goes out while a restart's notice of the same registry shard is still on its way to a stream that does not answer", async () => {
    const { edge, fake } = await edgeWithApi(["enc00009"]);
    const [s1, s2] = [uniqueStream(), uniqueStream()];
    const key1 = await createStream(s1);
    const key2 = await createStream(s2);
    expect(await hook(publish("live", s2, key2, { ...edge, client: "enc00009" }))).toEqual(ALLOW);
    // s2's object stops answering; the edge restarts: the registry's alarm is stuck on the notice to s2 (here for a minute).
    withNoticeTimeout(60_000);
    const held = holdMatching(StreamObject.prototype, "applyStatus", () => true);
    const next = { ...edge, service: "newproc1" };
    expect(await hook({ ...heartbeat(next), device_id: deviceOf(edge) }, undefined, "/heartbeat")).toEqual(ALLOW);
    fake.service = next.service;
    fake.clients.add("enc00001");
    await until(() => held.reached);
    expect(await hook(publish("live", s1, key1, { ...next, client: "enc00001" }))).toEqual(ALLOW);
    const put = await admin("PUT", `/streams/live/${s1}`, { rotateKey: true });
    expect(put.body.kicking).toEqual([{ role: "publisher", serverId: edge.server, clientId: "enc00001" }]);
    await until(() => fake.calls.some((c) => c.method === "DELETE" && c.path === "/api/v1/clients/enc00001"));
    expect(held.done, "the notice is still on its way").toBe(false);
    held.released = true;
  });
});
