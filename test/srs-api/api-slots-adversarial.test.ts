/**
 * Adversarial review of 8ca7a9a (at most API_CALLS_IN_FLIGHT = 5 SRS API calls in flight per object, in order,
 * each call's 2 s starting when it has its place; ServerCallSlots on top of Slots). Runs in the "srs-api"
 * project, against test/fake-srs.ts; the fakes count the calls in flight (`network`). Tests named "must not
 * happen" failed on the commit they were written against; "holds" pin a guarantee that held.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import type { Slots } from "../../src/platform/slots";
import { describe, expect, it, vi } from "vitest";
import { shardOf } from "../../src/server/registry";
import { admin, createStream, hook, newEdge, play, publish, streamState, uniqueStream, type Edge } from "../srs";
import { ALLOW, edgeWithApi, type FakeSrs, installFakeSrs, kickedOn, network, takeoverReady } from "../fake-srs";
import { serverListed, serverStub, streamStub, until, useFakeClock, withDeadline } from "../fleet";

installFakeSrs();
useFakeClock(); // alarms run only when the test runs them; the calls' 2 s are real time

const streamEvents = async (s: string) => (await admin("GET", `/streams/live/${s}/events`)).body.events ?? [];
const realNow = () => vi.getRealSystemTime();

/** A new edge whose registry shard is `shard`'s. */
function edgeInShard(shard: number): Edge {
  for (;;) {
    const edge = newEdge();
    if (shardOf(edge.server) === shard) return edge;
  }
}

/** `n` viewers on each of `count` edges of `shard`, on one stream; returns the edges and the stream. */
async function viewersOnEdges(shard: number, count: number, n: number) {
  const clients = Array.from({ length: n }, (_, i) => `view${String(i + 1).padStart(4, "0")}`);
  const edges = [];
  for (let i = 0; i < count; i++) edges.push(await edgeWithApi(clients, edgeInShard(shard)));
  const s = uniqueStream();
  await createStream(s, { maxViewers: 1_000 });
  for (const { edge } of edges) for (const client of clients) expect(await hook(play("live", s, { ...edge, client }))).toEqual(ALLOW);
  return { edges, s };
}

describe("a registry shard's kicks while many of its edges hang", () => {
  it("must not happen: an operator's kick to a healthy edge waits 14 s behind kicks to 5 hanging edges of its shard (8 viewers each; README: the outbox sends at once, the contract is 5 s)", async () => {
    const shard = shardOf(newEdge().server);
    const { edges: hanging, s } = await viewersOnEdges(shard, 5, 8);
    const healthy = await edgeWithApi(["view0100"], edgeInShard(shard));
    const t = uniqueStream();
    await createStream(t, { maxViewers: 20 });
    expect(await hook(play("live", t, { ...healthy.edge, client: "view0100" }))).toEqual(ALLOW);
    for (const { fake } of hanging) fake.hang = true;

    expect((await admin("DELETE", `/streams/live/${s}/sessions`)).body.kicking).toHaveLength(40);
    await until(() => network.inFlight > 0);
    const start = realNow();
    expect((await admin("DELETE", `/streams/live/${t}/sessions`)).body.kicking).toHaveLength(1);
    await runDurableObjectAlarm(serverStub(healthy.edge));
    await vi.waitFor(() => expect(kickedOn(healthy.fake, "view0100")).toBe(true), { timeout: 55_000, interval: 50 });
    const waited = realNow() - start;
    console.log(JSON.stringify({ probe: "healthy kick behind 5 hanging edges", waitedMs: waited, maxInFlight: network.maxInFlight }));
    expect(network.maxInFlight).toBe(5);
    expect((await serverListed(healthy.edge)).apiOk).toBe(true);
    expect((await streamEvents(t)).filter((e: any) => e.action === "kick-wait")).toEqual([]);
    // README, "Kicks": the outbox sends a kick at once ("the contract is 5 s").
    const sentIn = waited;
    // The hanging edges' kicks still queued fail fast now (so nothing of this test is left on its way).
    for (const { fake } of hanging) fake.reachable = false;
    await until(() => network.inFlight === 0);
    await new Promise((r) => setTimeout(r, 200));
    expect(sentIn, "the healthy edge's kick was sent within the 5 s contract").toBeLessThan(5_000);
  }, 60_000);
});

/** Sleeps `ms`, or rejects when the request's signal aborts (as a real fetch would). */
function answerAfter(ms: number, req: Request): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    req.signal.addEventListener("abort", () => (clearTimeout(t), reject(req.signal.reason)));
  });
}

/**
 * The fake answers GET /api/v1/versions after `versionsMs` and a client's GET or DELETE after `clientMs`; as
 * SRS otherwise (a DELETE of a client it has answers code 0; with `linger` the client stays). Counted in
 * flight as every call is.
 */
function slowApi(fake: FakeSrs, { versionsMs = 0, clientMs = 0 }) {
  fake.override = async (req: Request) => {
    const path = new URL(req.url).pathname;
    if (path === "/api/v1/versions") {
      await answerAfter(versionsMs, req);
      return Response.json(fake.envelope());
    }
    await answerAfter(clientMs, req);
    const id = decodeURIComponent(path.slice("/api/v1/clients/".length));
    if (!fake.clients.has(id)) return Response.json({ code: 2049 });
    if (req.method === "DELETE" && !fake.linger) fake.clients.delete(id);
    return Response.json({ ...fake.envelope(), ...(req.method === "GET" ? { client: { id } } : {}) });
  };
}

describe("a takeover's wait for the kicked client to go (untilGone: the identity asked alongside each question)", () => {
  it("must not happen: more than 4 calls at a time from the stream's object to the old edge (the identity asked alongside each poll outlives it), its client lingering, its versions call slow", async () => {
    vi.useRealTimers(); // the hook's own time runs
    const { a, b, s, key } = await takeoverReady();
    a.fake.linger = true; // the kicked connection stays: every question answers "present" at once
    slowApi(a.fake, { versionsMs: 1_500 });
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4009);
    expect(r.body.reason).toMatch(/still connected/);
    await until(() => a.fake.inFlight === 0);
    // README, "Bounds": at most 4 calls at a time go from one object to one server (takeovers included).
    expect(a.fake.maxInFlight, "calls in flight at once from the stream's object to the old edge").toBeLessThanOrEqual(4);
  });
});

describe("a refusal's ghost question answered after the check's time (README: kept for the next refusal)", () => {
  it("must not happen: a ghost's 'not found' that comes after the refusal's check time is thrown away (its versions call never sent), so the next refusal asks again instead of ending the ghost", async () => {
    vi.useRealTimers(); // the hook's own time runs
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    // Edge a's SRS lost the client's on_unpublish (a ghost), and its API answers a client's question in 1.7 s.
    a.fake.clients.delete("enc00001");
    slowApi(a.fake, { clientMs: 1_700 });
    // A hook with 2 s left: its check has about 1.4 s, the "not found" comes after that.
    const first = await withDeadline(2_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(first.body.code).toBe(4004);
    // The answer came (with who answers at the address, asked right after it): kept, dated when it was asked (3 s).
    await until(() => a.fake.inFlight === 0);
    await until(async () => (await keptAnswers(s)).includes("gone"));
    const second = await withDeadline(2_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(second, "the ghost ended on the answer kept from the first refusal").toEqual(ALLOW);
  });
});

/** What the stream object's ghost check keeps of its API answers (presences), white-box. */
const keptAnswers = (s: string): Promise<string[]> =>
  runInDurableObject(streamStub(s), (obj) => [...((obj as any).publisherApi.ghosts.answers as Map<string, { presence: string }>).values()].map((x) => x.presence));

/**
 * Holds the stream object's 5 places for SRS API calls for `ms` (as 5 calls to edges that hang would):
 * white-box, through the object's GhostCheck.
 */
async function holdStreamPlaces(s: string, ms: number): Promise<void> {
  await runInDurableObject(streamStub(s), (obj) => {
    const slots = (obj as any).publisherApi.ghosts.apiCalls as Slots;
    for (let i = 0; i < 5; i++) void slots.run(() => new Promise((r) => setTimeout(r, ms)));
  });
}

describe("a stream's hooks while its object's 5 places are held (by calls to edges that hang)", () => {
  it("holds: a publisher-busy refusal whose ghost question gets no place answers within its 2 s, and the question is not sent later", async () => {
    vi.useRealTimers();
    const a = await edgeWithApi(["enc00001"]);
    const b = await edgeWithApi(["enc00002"]);
    const s = uniqueStream();
    const key = await createStream(s);
    expect(await hook(publish("live", s, key, { ...a.edge, client: "enc00001" }))).toEqual(ALLOW);
    a.fake.clients.delete("enc00001"); // a ghost: asked, it would end
    await holdStreamPlaces(s, 3_500);
    const started = Date.now();
    const r = await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }));
    expect(r.body.code).toBe(4004);
    expect(Date.now() - started, "README: a refusal waits at most 2 s for its check (the places are held 3.5 s; a margin for a loaded machine)").toBeLessThan(3_200);
    await new Promise((r) => setTimeout(r, 2_000)); // the places free meanwhile
    expect(a.fake.calls.filter((c) => c.path.startsWith("/api/v1/clients/")), "no question sent after the check's time").toEqual([]);
    expect((await serverListed(a.edge)).apiOk).not.toBe(false);
    // Nothing left stuck: the next refusal asks, and the ghost ends.
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
  });

  it("a takeover whose calls get no place before its kick's sendBy sends no kick, answers 4009 in time saying the edge was not asked (not that it was too slow: nothing was sent to it), and leaves apiOk alone", async () => {
    vi.useRealTimers();
    const { a, b, s, key } = await takeoverReady();
    await holdStreamPlaces(s, 3_500);
    const started = Date.now();
    // 5 s for the hook: its kick may be sent only until about 1.5 s in.
    const r = await withDeadline(5_000, () => hook(publish("live", s, key, { ...b.edge, client: "enc00002" })));
    expect(r.body.code).toBe(4009);
    expect(r.body.reason).toMatch(new RegExp(`^publisher takeover failed: edge ${a.edge.server} not asked: other calls to SRS APIs held every place`));
    expect(Date.now() - started).toBeLessThan(4_600);
    await new Promise((r) => setTimeout(r, 3_000));
    expect(kickedOn(a.fake, "enc00001"), "no DELETE sent after its sendBy").toBe(false);
    expect((await serverListed(a.edge)).apiOk).not.toBe(false);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00001", state: "live" });
  });

  it("holds: places that free up before the kick's sendBy: the takeover goes through within the hook's 10 s", async () => {
    vi.useRealTimers();
    const { a, b, s, key } = await takeoverReady();
    await holdStreamPlaces(s, 5_500);
    const started = Date.now();
    expect(await hook(publish("live", s, key, { ...b.edge, client: "enc00002" }))).toEqual(ALLOW);
    expect(Date.now() - started).toBeLessThan(9_500);
    expect(kickedOn(a.fake, "enc00001")).toBe(true);
    expect((await streamState(s)).publisher).toMatchObject({ clientId: "enc00002", state: "live" });
  });
});
