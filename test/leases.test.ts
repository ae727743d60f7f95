/**
 * Viewer admission through shards and leases (src/viewers/): each SRS server's
 * viewers are admitted by its own viewer shard within slots the stream's
 * object leases to it. What operators must see: the cap exact across edges
 * and under concurrency, no viewer refused for long while a slot is free
 * somewhere, a policy change obeyed by the very next viewer, and the audience
 * per shard.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { runDurableObjectAlarm } from "cloudflare:test";
import { at, countCalls, shardStub } from "./fleet";
import { ALLOW, admin, createStream, hook, newEdge, play, stopPlay, streamState, uniqueStream } from "./srs";

const edges = Array.from({ length: 5 }, () => newEdge());

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("the cap holds across edges and under concurrency", () => {
  it("50 simultaneous on_play from 5 edges on a stream capped at 10: exactly 10 admitted, no slot left unused", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => hook(play("live", s, { ...edges[i % 5], client: `v${String(i).padStart(7, "0")}` }))));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(10);
    expect(answers.filter((a) => a.status === 403).every((a) => a.body.code === 4005)).toBe(true);
    const state = await streamState(s);
    expect(state.viewers).toBe(10);
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(10);
    expect(state.shards.reduce((n: number, x: any) => n + x.viewers, 0)).toBe(10);
  });

  it("a viewer on another edge gets the slots an edge holds unused, at once", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    // The first viewer's shard is granted half of the free slots (2): one of them unused.
    expect(await hook(play("live", s, { ...edges[0], client: "first001" }))).toEqual(ALLOW);
    expect((await streamState(s)).shards).toEqual([expect.objectContaining({ serverId: edges[0].server, viewers: 1, leased: 2 })]);
    for (const [i, e] of [edges[1], edges[2], edges[3]].entries()) {
      expect(await hook(play("live", s, { ...e, client: `other00${i}` })), `viewer on edge ${i + 1}`).toEqual(ALLOW);
    }
    expect(await streamState(s)).toMatchObject({ viewers: 4, leasedUnused: 0 });
    expect((await hook(play("live", s, { ...edges[4], client: "fifth001" }))).body.code).toBe(4005);
  });

  it("a slot freed on one edge is given back at once to a stream with none free, and the next viewer elsewhere gets it", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    expect(await hook(play("live", s, { ...edges[0], client: "a0000001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edges[1], client: "b0000001" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edges[2], client: "c0000001" }))).body.code).toBe(4005);
    expect(await hook(stopPlay("live", s, { ...edges[0], client: "a0000001" }))).toEqual(ALLOW);
    // The refused edge is told that slots are free (its hold is lifted): its next viewer is admitted.
    await vi.waitFor(async () => expect((await streamState(s)).leasedUnused).toBe(0));
    expect(await hook(play("live", s, { ...edges[2], client: "c0000002" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2 });
  });

  it("an unlimited stream leases nothing: shards admit on their own", async () => {
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 5; i++) expect(await hook(play("live", s, { ...edges[i], client: `free000${i}` }))).toEqual(ALLOW);
    const state = await streamState(s);
    expect(state).toMatchObject({ viewers: 5, leasedUnused: 0 });
    expect(state.shards.every((x: any) => x.leased === 0)).toBe(true);
  });
});

describe("a crowd at the cap costs the stream's object few calls", () => {
  /** Counts the lease messages the stream's object receives (each one a call to it). */
  const countLeaseCalls = () => countCalls(StreamObject.prototype, "viewerLease");

  /** One on_play per edge at a time, round robin, `perEdge` each; returns the answers' codes. */
  async function crowd(s: string, perEdge: number, tag: string): Promise<number[]> {
    const codes: number[] = [];
    for (let i = 0; i < perEdge; i++) {
      const wave = await Promise.all(edges.map((e, j) => hook(play("live", s, { ...e, client: `${tag}${j}${String(i).padStart(5, "0")}` }))));
      codes.push(...wave.map((a) => a.body.code));
    }
    return codes;
  }

  it("a crowd filling a cap of 1,000 over 5 edges: two lease requests per edge (a first chunk, then an even split), one refusal each", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1000 });
    const calls = countLeaseCalls();
    const codes = await crowd(s, 210, "f");
    expect(codes.filter((c) => c === 0)).toHaveLength(1000);
    expect(codes.filter((c) => c === 4005)).toHaveLength(50);
    // 5 first chunks of 128, 5 top-ups to 200 each (the even split of the cap), 5 refusals: when the
    // slots ran short, grants used to halve as the stream filled and recalls took slots back and forth.
    expect(calls.n).toBeLessThanOrEqual(16);
    expect(await streamState(s)).toMatchObject({ viewers: 1000, leasedUnused: 0 });
  });

  it("refused edges do not ask again while the stream is full; a slot freed later reaches them within the stream's own round", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    expect((await crowd(s, 3, "g")).filter((c) => c === 0)).toHaveLength(10);
    const calls = countLeaseCalls();
    // Refusals for 2.5 s on every edge: a refused edge used to ask again after 1 s, then 2 s, ...
    for (let wave = 0; wave < 5; wave++) {
      expect((await crowd(s, 1, `h${wave}`)).every((c) => c === 4005)).toBe(true);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(calls.n).toBe(0);
    // A viewer leaves: its slot reaches an edge that waits (told by the stream), and only one is admitted.
    const state = await streamState(s);
    const holder = state.shards.find((x: any) => x.viewers > 0);
    const edge = edges.find((e) => e.server === holder.serverId)!;
    const [gone] = (await shardStub(edge).viewersOf(`__defaultVhost__/live/${s}`)) as { clientId: string }[];
    expect(await hook(stopPlay("live", s, { ...edge, client: gone.clientId }))).toEqual(ALLOW);
    const other = edges.find((e) => e.server !== holder.serverId && !state.shards.some((x: any) => x.serverId === e.server && x.leased > x.viewers))!;
    await vi.waitFor(async () => expect(await hook(play("live", s, { ...other, client: "late0001" }))).toEqual(ALLOW), { timeout: 12_000, interval: 250 });
    expect((await hook(play("live", s, { ...other, client: "late0002" }))).body.code).toBe(4005);
    expect(await streamState(s)).toMatchObject({ viewers: 10 });
  }, 20_000);

  it("a shard reports a stream's audience only when it changed: a standing audience costs the stream's object no call every 5 minutes", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const [capped, open] = [uniqueStream(), uniqueStream()];
    await createStream(capped, { maxViewers: 100 });
    await createStream(open);
    const e = newEdge();
    expect(await hook(play("live", capped, { ...e, client: "stand001" }))).toEqual(ALLOW);
    expect(await hook(play("live", open, { ...e, client: "stand002" }))).toEqual(ALLOW);
    const calls = countLeaseCalls();
    // The capped stream heard "no viewers" with the first lease: the shard's alarm gives back the unused
    // slots, which tells it of the one; the unlimited stream counts on nothing of the shard, and hears nothing.
    at(6 * 60_000);
    expect(await runDurableObjectAlarm(shardStub(e))).toBe(true);
    expect(calls.n).toBe(1);
    // Nothing changed since: no more reports (they used to come every 5 minutes for every stream watched here).
    for (const minutes of [12, 18, 24]) {
      at(minutes * 60_000);
      await runDurableObjectAlarm(shardStub(e));
    }
    expect(calls.n).toBe(1);
    // The shard is still known to both streams: a policy change reaches it.
    expect((await admin("PUT", `/streams/live/${open}`, { playAuth: "token" })).status).toBe(200);
    expect((await hook(play("live", open, { ...e, client: "late0001" }))).body.code).toBe(4010);
  });
});

describe("an edge keeps its unused slots while its viewers keep coming", () => {
  it("slots go back 30 s (LEASE_IDLE_MS) after the edge's last admission, not before", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1000 });
    const e = newEdge();
    expect(await hook(play("live", s, { ...e, client: "idle0001" }))).toEqual(ALLOW);
    const leased = (await streamState(s)).leasedUnused;
    expect(leased).toBeGreaterThan(0);
    // Another viewer 20 s later: the edge's clock of idleness starts again.
    at(20_000);
    expect(await hook(play("live", s, { ...e, client: "idle0002" }))).toEqual(ALLOW);
    // 29 s after the first admission, and 49 s (29 s after the second): the slots stay with the edge.
    for (const t of [29_000, 49_000]) {
      at(t);
      await runDurableObjectAlarm(shardStub(e));
      expect((await streamState(s)).leasedUnused, `unused slots of the edge at ${t / 1000} s`).toBe(leased - 1);
    }
    // 30 s after the last admission they go back to the stream.
    at(50_000);
    await runDurableObjectAlarm(shardStub(e));
    expect(await streamState(s)).toMatchObject({ viewers: 2, leasedUnused: 0 });
  });
});

describe("lost answers and retries never grant a slot twice", () => {
  it("a lease message applied but whose answer was lost, retried, grants once", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    const real = StreamObject.prototype.viewerLease;
    let calls = 0;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["viewerLease"]>) {
      const answer = await real.apply(this, args);
      if (calls++ === 0) throw Object.assign(new Error("Network connection lost."), { retryable: true });
      return answer;
    });
    expect(await hook(play("live", s, { ...edges[0], client: "lost0001" }))).toEqual(ALLOW);
    expect(calls).toBe(2);
    vi.restoreAllMocks();
    const state = await streamState(s);
    // The stream recorded the grant once: what the shard holds is what the stream counts for it.
    expect(state.shards).toEqual([expect.objectContaining({ viewers: 1, leased: 2 })]);
    for (const [i, e] of [edges[1], edges[2]].entries()) expect(await hook(play("live", s, { ...e, client: `next000${i}` }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edges[3], client: "over0001" }))).body.code).toBe(4005);
  });

  it("a lease answer lost for good: the grant is taken back by the shard's next message, no slot is lost", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    const real = StreamObject.prototype.viewerLease;
    let failing = true;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, ...args: Parameters<StreamObject["viewerLease"]>) {
      const answer = await real.apply(this, args);
      if (failing) throw Object.assign(new Error("Durable Object is overloaded."), { overloaded: true });
      return answer;
    });
    const refused = await hook(play("live", s, { ...edges[0], client: "lost0001" }));
    expect(refused.status).toBe(503);
    failing = false;
    // The stream granted a slot the shard never learnt of: the shard's next message reports what it holds.
    expect(await hook(play("live", s, { ...edges[0], client: "lost0002" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edges[1], client: "lost0003" }))).toEqual(ALLOW);
    expect(await streamState(s)).toMatchObject({ viewers: 2, leasedUnused: 0 });
  });
});

describe("a policy change reaches every shard before the next viewer", () => {
  it("lowering the cap while shards hold leases: the next viewers are refused until the audience is under it", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 100 });
    for (let i = 0; i < 4; i++) expect(await hook(play("live", s, { ...edges[i], client: `low0000${i}` }))).toEqual(ALLOW);
    expect((await streamState(s)).leasedUnused).toBeGreaterThan(0);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 3 })).status).toBe(200);
    expect(await streamState(s)).toMatchObject({ viewers: 4, leasedUnused: 0 });
    for (let i = 0; i < 4; i++) expect((await hook(play("live", s, { ...edges[i], client: `low0001${i}` }))).body.code).toBe(4005);
    expect(await hook(stopPlay("live", s, { ...edges[0], client: "low00000" }))).toEqual(ALLOW);
    expect((await hook(play("live", s, { ...edges[1], client: "low00021" }))).body.code).toBe(4005); // 3 of 3
    expect(await hook(stopPlay("live", s, { ...edges[1], client: "low00001" }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edges[2], client: "low00022" }))).toEqual(ALLOW);
  });

  it("a stream switched to play tokens refuses the next tokenless viewer on every edge", async () => {
    const s = uniqueStream();
    await createStream(s);
    for (let i = 0; i < 3; i++) expect(await hook(play("live", s, { ...edges[i], client: `tok0000${i}` }))).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await hook(play("live", s, { ...edges[i], client: `tok0001${i}` }))).body.code).toBe(4010);
  });

  it("a deleted stream refuses the next viewer on every edge, and the viewers' stops still end their sessions", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    for (let i = 0; i < 2; i++) expect(await hook(play("live", s, { ...edges[i], client: `del0000${i}` }))).toEqual(ALLOW);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await hook(play("live", s, { ...edges[i], client: `del0001${i}` }))).body.code).toBe(4001);
    for (let i = 0; i < 2; i++) expect(await hook(stopPlay("live", s, { ...edges[i], client: `del0000${i}` }))).toEqual(ALLOW);
    expect(await shardStub(edges[0]).audience(`__defaultVhost__/live/${s}`)).toMatchObject({ viewers: 0 });
  });
});

describe("operators see where the audience is", () => {
  it("GET /admin/streams/{app}/{stream} lists viewers, suspended viewers and leased slots per shard, and totals equal their sums", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 50 });
    for (let i = 0; i < 3; i++) expect(await hook(play("live", s, { ...edges[0], client: `aud0000${i}` }))).toEqual(ALLOW);
    expect(await hook(play("live", s, { ...edges[1], client: "aud00010" }))).toEqual(ALLOW);
    const state = await streamState(s);
    const byServer = Object.fromEntries(state.shards.map((x: any) => [x.serverId, x]));
    expect(byServer[edges[0].server]).toMatchObject({ viewers: 3, suspendedViewers: 0 });
    expect(byServer[edges[1].server]).toMatchObject({ viewers: 1, suspendedViewers: 0 });
    expect(state.viewers).toBe(4);
    expect(state.leasedUnused).toBe(state.shards.reduce((n: number, x: any) => n + Math.max(0, x.leased - x.viewers - x.suspendedViewers), 0));
    expect(Object.keys(byServer[edges[0].server]).sort()).toEqual(["colo", "country", "leased", "serverId", "suspendedViewers", "viewers"]);
  });

  it("a hook carries the Cloudflare location its Worker ran in (request.cf): the shard shows it", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const shard = env.VIEWERS.get(env.VIEWERS.idFromName(edges[4].server));
    const decision = await shard.play({
      streamKey: `__defaultVhost__/live/${s}`,
      session: { serverId: edges[4].server, serviceId: edges[4].service, clientId: "where001" },
      ip: "127.0.0.1",
      token: { ok: true },
      guessLimit: 10,
      hookId: "h1",
      place: { colo: "FRA", country: "DE" },
    });
    expect(decision).toEqual({ allow: true, admit: true });
    expect((await streamState(s)).shards).toEqual([expect.objectContaining({ serverId: edges[4].server, colo: "FRA", country: "DE", viewers: 1 })]);
  });
});
