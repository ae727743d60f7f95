/**
 * Adversarial review of the viewer shards and leases (src/viewers/, src/stream/leases.ts,
 * src/stream/object.ts viewerLease/recall, src/session/lifecycle.ts, src/server/registry.ts).
 *
 * Tests named "must not happen (fixed): …" failed on the code the review found: each states what a user
 * would have seen; "holds: …" probes found no defect.
 * Tests named "PROBE (holds): …" pass: they pin down something important the review tried to break.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StreamObject } from "../src/stream/object";
import { ServerRegistry } from "../src/server/registry";
import { ViewerShard } from "../src/viewers/shard";
import { at, beat, deliverNotices, overloaded, restarted, retryable, flushShard, serverStub, shardStub, streamStub, gate, until, viewer, countCalls } from "./fleet";
import { ALLOW, admin, close, createStream, hook, newEdge, stopPlay, streamState, uniqueStream } from "./srs";

const key = (s: string) => `__defaultVhost__/live/${s}`;

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});


/** What the stream's own lease book records per shard (not what the shards answer now). */
async function streamRecords(s: string): Promise<Record<string, { granted: number; live: number }>> {
  const state = await streamStub(s).state();
  return Object.fromEntries(state!.shards.map((x) => [x.serverId, { granted: x.leased, live: x.viewers }]));
}

describe("the stream waiting on itself: a recall round against a shard whose lease message is in flight", () => {
  it("must not happen (fixed): two edges that run out of slots at the same moment, while a third edge holds unused ones, wait the full 2 s recall timeout and the round fails to reach a healthy shard", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 6 });
    const [u, b, c] = [newEdge(), newEdge(), newEdge()];
    expect(await viewer(s, u, "u0000001")).toEqual(ALLOW); // u leased 3 (1 used)
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW); // b leased 2
    expect(await viewer(s, c, "c0000001")).toEqual(ALLOW); // c leased 1: none free at the stream
    expect(await viewer(s, b, "b0000002")).toEqual(ALLOW); // b's lease used up
    // Both used-up shards send their lease message before the stream handles either (a flash crowd).
    const real = StreamObject.prototype.viewerLease;
    const both = gate();
    let arrivals = 0;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      if (report.want > 0 && ++arrivals === 2) both.open();
      if (report.want > 0 && arrivals <= 2) await both.wait;
      return real.call(this, report);
    });
    const realRecall = ViewerShard.prototype.recall;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      // u is on another continent: its answer takes a while.
      if ((this as any).serverId === u.server) await new Promise((r) => setTimeout(r, 300));
      return realRecall.apply(this, args);
    });
    const errors = vi.spyOn(console, "error");
    const began = Date.now();
    const answers = await Promise.all([viewer(s, b, "b0000003"), viewer(s, c, "c0000002")]);
    const took = Date.now() - began;
    // u had 2 unused slots: both viewers fit, and nothing needs a timeout.
    expect(answers).toEqual([ALLOW, ALLOW]);
    const failedRecalls = errors.mock.calls.filter((call) => String(call[0]).includes("lease recall failed"));
    expect(failedRecalls, "a recall of a reachable shard timed out: the stream waited on the shard, which waited on the stream").toEqual([]);
    expect(took, "join latency of the two viewers (ms): not the 2 s recall timeout").toBeLessThan(1900);
  });
});

describe("policy changes and the shard's view of them", () => {
  it("must not happen (fixed): a slow liveness check lets an older recall overwrite a newer pushed policy: the shard goes back to the policy before PUT playAuth \"token\" answered", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 3 });
    const [x, r] = [newEdge(), newEdge()];
    expect(await viewer(s, x, "x0000001")).toEqual(ALLOW); // x leased 2 (1 unused)
    expect(await viewer(s, x, "x0000002")).toEqual(ALLOW); // x's lease used up: a recall must check its viewers
    expect(await viewer(s, r, "r0000001")).toEqual(ALLOW); // r leased 1: none free
    // x's registry shard answers slowly (overloaded, far away): 2.5 s for a liveness question.
    const realLiveness = ServerRegistry.prototype.liveness;
    const slow = { asked: 0, answered: 0 };
    vi.spyOn(ServerRegistry.prototype, "liveness").mockImplementation(async function (this: ServerRegistry, processes, witness) {
      if (processes[0]?.serverId !== x.server) return realLiveness.call(this, processes, witness);
      slow.asked++;
      try {
        await new Promise((res) => setTimeout(res, 2500));
        return await realLiveness.call(this, processes, witness);
      } finally {
        slow.answered++;
      }
    });
    // r runs out: the stream recalls x's slots with a liveness check (round 1, carrying the policy as it is now).
    const recalls = countCalls(ViewerShard.prototype, "recall", (self) => self.serverId === x.server);
    const refusedOrNot = viewer(s, r, "r0000002");
    await until(() => slow.asked > 0);
    // The operator switches the stream to play tokens; the PUT pushes the new policy (round 2) and answers.
    expect((await admin("PUT", `/streams/live/${s}`, { playAuth: "token" })).status).toBe(200);
    await refusedOrNot;
    // Round 1's recall (its liveness question answered) has run at x, after the push.
    await until(() => slow.asked === slow.answered && recalls.done === recalls.n);
    vi.restoreAllMocks();
    // What x decides its next viewers with. (Seen by a hook only where x decides alone: a viewer taking a slot x still
    // holds; here round 1 took x's slots back too, so its next viewer asks the stream, and the answer brings the policy.)
    const policy = await runInDurableObject(shardStub(x), (shard: ViewerShard) => (shard as any).leases.policy(`__defaultVhost__/live/${s}`));
    expect(policy?.playAuth, "x's policy after round 1's late recall").toBe("token");
    expect((await viewer(s, x, "x0000003")).body.code, "a viewer without a token, after the PUT answered").toBe(4010);
  });

  it("must not happen (fixed): a cap set on an unlimited stream while an on_play is being decided: that viewer is admitted outside any lease, and the cap is exceeded for good", async () => {
    const s = uniqueStream();
    await createStream(s);
    const [sEdge, t] = [newEdge(), newEdge()];
    // sEdge's first viewer: the shard reads the policy (unlimited), then announces the new process to the registry (slow).
    const realHeard = ServerRegistry.prototype.shardHeard;
    const reached = gate();
    const release = gate();
    vi.spyOn(ServerRegistry.prototype, "shardHeard").mockImplementation(async function (this: ServerRegistry, serverId, serviceId, kind) {
      if (serverId === sEdge.server) {
        reached.open();
        await release.wait;
      }
      return realHeard.call(this, serverId, serviceId, kind);
    });
    const first = viewer(s, sEdge, "s0000001");
    await reached.wait;
    // The cap reaches every shard (sEdge included) before the PUT answers.
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 2 })).status).toBe(200);
    release.open();
    const firstAnswer = await first;
    vi.restoreAllMocks();
    const others = [];
    for (let i = 0; i < 3; i++) others.push(await viewer(s, t, `t000000${i}`));
    const admitted = [firstAnswer, ...others].filter((a) => a.status === 200).length;
    const state = await streamState(s);
    expect({ admitted, viewers: state.viewers }, "viewers admitted on a stream capped at 2").toEqual({ admitted: 2, viewers: 2 });
  });

  it("must not happen (fixed): after a shard was evicted (an idle object, routinely), setting a cap on an unlimited stream ignores that shard's viewers: other edges fill the whole cap on top of them", async () => {
    const s = uniqueStream();
    await createStream(s);
    const [sEdge, t] = [newEdge(), newEdge()];
    for (let i = 0; i < 3; i++) expect(await viewer(s, sEdge, `s000000${i}`)).toEqual(ALLOW);
    // The platform evicts the idle shard: its in-memory state goes, its storage stays.
    await evictDurableObject(shardStub(sEdge));
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 4 })).status).toBe(200);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await viewer(s, t, `t000000${i}`));
    // 3 viewers watch on sEdge: one more fits under the cap of 4.
    expect(answers.map((a) => a.body.code)).toEqual([0, 4005, 4005, 4005]);
  });

  it("setting a cap on an unlimited stream while one edge's shard cannot be reached: no viewer too many (nobody is granted a slot until that shard is reached again)", async () => {
    const s = uniqueStream();
    await createStream(s);
    const [sEdge, t] = [newEdge(), newEdge()];
    for (let i = 0; i < 3; i++) expect(await viewer(s, sEdge, `s000000${i}`)).toEqual(ALLOW);
    const realRecall = ViewerShard.prototype.recall;
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      if ((this as any).serverId === sEdge.server) throw overloaded();
      return realRecall.apply(this, args);
    });
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 4 })).status).toBe(200);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await viewer(s, t, `t000000${i}`));
    // Rule (README, "Leases"): while a shard whose viewers are unknown cannot be reached, nobody is
    // granted a slot: a refusal too many, never a viewer too many.
    expect(answers.map((a) => a.body.code)).toEqual([4005, 4005, 4005, 4005]);
    // Reached again: its 3 viewers count, one more fits under the cap of 4.
    vi.restoreAllMocks();
    await new Promise((r) => setTimeout(r, 1100)); // the refused shard's first hold (1 s)
    const after = [];
    for (let i = 0; i < 2; i++) after.push(await viewer(s, t, `t000001${i}`));
    expect(after.map((a) => a.body.code)).toEqual([0, 4005]);
  });
});

describe("restart fencing while a lease message is in flight", () => {
  it("must not happen (fixed): a late on_play of a process its server's restart just replaced, decided while its shard waited for slots, is admitted: a ghost viewer of a dead process counts toward the cap for good", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    const a = newEdge();
    expect((await beat(a)).status).toBe(200);
    expect(await viewer(s, a, "old00001")).toEqual(ALLOW); // a leased 2
    expect(await viewer(s, a, "old00002")).toEqual(ALLOW); // a's lease used up
    // The old process's next on_play is on its way: the shard asks the stream for slots (held here).
    const real = StreamObject.prototype.viewerLease;
    const reached = gate();
    const release = gate();
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      if (report.serverId === a.server && report.want > 0) {
        reached.open();
        await release.wait;
      }
      return real.call(this, report);
    });
    const late = viewer(s, a, "old00003");
    await reached.wait;
    // Meanwhile the server restarts: its first heartbeat retires the old process, and the shard is told before it is answered.
    const b = restarted(a);
    expect((await beat(b)).status).toBe(200);
    release.open();
    const lateAnswer = await late;
    vi.restoreAllMocks();
    expect.soft(lateAnswer.body.code, "the replaced process's on_play").toBe(4006);
    // Whatever it was answered: nothing of the old process may stay counted.
    await deliverNotices(a);
    await runDurableObjectAlarm(shardStub(a));
    expect((await streamState(s)).viewers, "viewers counted after the restart (the old process's are gone)").toBe(0);
  });
});

describe("the Worker's undo of a play whose answer was lost", () => {
  it("must not happen (fixed): a play that admits, takes over 2 s (a recall round timing out) and loses its answer is not undone: SRS refused the client, the shard keeps it counted", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const e = newEdge();
    const real = ViewerShard.prototype.play;
    let decision: Awaited<ReturnType<ViewerShard["play"]>> | undefined;
    vi.spyOn(ViewerShard.prototype, "play").mockImplementationOnce(async function (this: ViewerShard, ...args: Parameters<ViewerShard["play"]>) {
      decision = await real.apply(this, args);
      at(2_500); // the decision took 2.5 s (RECALL_TIMEOUT_MS is 2 s)
      throw retryable(); // and its answer is lost on the way back
    });
    const answer = await viewer(s, e, "lost0001");
    expect(decision, "the shard's decision, before its answer was lost").toMatchObject({ allow: true, admit: true });
    expect(answer.status).toBe(503); // SRS refuses the client: it never plays, and sends no on_stop for it
    vi.restoreAllMocks();
    expect(await shardStub(e).audience(key(s)), "a refused client left counted").toMatchObject({ viewers: 0 });
  });
});

describe("control experiments (mechanism checks for the defects above)", () => {
  it("holds: without the eviction, setting a cap on an unlimited stream counts the viewers already watching", async () => {
    const s = uniqueStream();
    await createStream(s);
    const [sEdge, t] = [newEdge(), newEdge()];
    for (let i = 0; i < 3; i++) expect(await viewer(s, sEdge, `s000000${i}`)).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 4 })).status).toBe(200);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await viewer(s, t, `t000000${i}`));
    expect(answers.map((a) => a.body.code)).toEqual([0, 4005, 4005, 4005]);
  });
});

describe("storage and fan-out that only grow", () => {
  it("must not happen (fixed): an unlimited stream lists, for good, every server that ever had a viewer of it (README: only shards that hold viewers or slots)", async () => {
    const s = uniqueStream();
    await createStream(s);
    const gone = Array.from({ length: 5 }, () => newEdge());
    for (const [i, e] of gone.entries()) {
      expect(await viewer(s, e, `gone000${i}`)).toEqual(ALLOW);
      expect(await hook(stopPlay("live", s, { ...e, client: `gone000${i}` }))).toEqual(ALLOW);
    }
    const state = await streamState(s);
    expect(state.viewers).toBe(0);
    expect(state.shards, "shards listed for a stream nobody watches").toEqual([]);
  });

  it("must not happen (fixed): every server that ever asked for a stream keeps a lease row there and is called on every PUT, long after it is gone (ephemeral edges, forged server_ids)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 1000 });
    const gone = Array.from({ length: 20 }, () => newEdge());
    for (const [i, e] of gone.entries()) {
      expect(await viewer(s, e, `gone${String(i).padStart(4, "0")}`)).toEqual(ALLOW);
      expect(await hook(stopPlay("live", s, { ...e, client: `gone${String(i).padStart(4, "0")}` }))).toEqual(ALLOW);
    }
    // A week later, every one of those edges is long gone; their shards gave their slots back when idle.
    at(7 * 86_400_000);
    for (const e of gone) await runDurableObjectAlarm(shardStub(e));
    const recall = vi.spyOn(ViewerShard.prototype, "recall");
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 999 })).status).toBe(200);
    const rows = await runInDurableObject(streamStub(s), async (_: StreamObject, state: DurableObjectState) => state.storage.sql.exec("SELECT 1 FROM leases").toArray().length);
    expect({ rows, recalls: recall.mock.calls.length }, "lease rows kept and shards called by one PUT, for 20 edges gone a week ago").toEqual({ rows: 0, recalls: 0 });
  });

  it("must not happen (fixed): on_play of a made-up stream from a made-up server_id leaves a viewer shard object with tables stored (the stream object stores nothing, the shard does): a flood of forged server_ids grows storage", async () => {
    const forged = newEdge();
    const s = uniqueStream("scan");
    const answer = await viewer(s, forged, "scan0001");
    expect(answer.body.code).toBe(4001);
    const stored = (state: DurableObjectState) => ({
      tables: state.storage.sql.exec("SELECT name FROM sqlite_master").toArray().length,
      bytes: state.storage.sql.databaseSize,
    });
    // Control: the stream's object stores nothing for a stream that does not exist.
    expect((await runInDurableObject(streamStub(s), async (_: StreamObject, state: DurableObjectState) => stored(state))).tables).toBe(0);
    const shard = await runInDurableObject(shardStub(forged), async (_: ViewerShard, state: DurableObjectState) => stored(state));
    expect(shard, "what the forged server's shard keeps").toMatchObject({ tables: 0 });
  });
});


describe("probes that held", () => {
  it("holds: DELETE then re-PUT while two edges hold leases and viewers: refused while deleted, old viewers count against the new cap, their stops free slots", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 5 });
    const [a, b] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, a, "a0000002")).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW);
    expect((await admin("DELETE", `/streams/live/${s}`)).status).toBe(200);
    expect((await viewer(s, a, "a0000003")).body.code).toBe(4001);
    expect((await viewer(s, b, "b0000002")).body.code).toBe(4001);
    expect(await hook(stopPlay("live", s, { ...a, client: "a0000002" }))).toEqual(ALLOW);
    await createStream(s, { maxViewers: 3 });
    // a0000001 and b0000001 still watch: one more fits.
    const answers = [await viewer(s, a, "a0000004"), await viewer(s, b, "b0000003"), await viewer(s, a, "a0000005")];
    expect(answers.map((x) => x.body.code)).toEqual([0, 4005, 4005]);
    expect(await hook(stopPlay("live", s, { ...b, client: "b0000001" }))).toEqual(ALLOW);
    expect(await viewer(s, a, "a0000006")).toEqual(ALLOW);
    const state = await streamState(s);
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(3);
  });

  it("holds: raising the cap and switching null <-> number while shards hold leases: the new cap is exact", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    const [a, b] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW);
    expect((await viewer(s, a, "a0000002")).body.code).toBe(4005);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 4 })).status).toBe(200);
    const more = [await viewer(s, a, "a0000003"), await viewer(s, b, "b0000002"), await viewer(s, a, "a0000004")];
    expect(more.map((x) => x.body.code)).toEqual([0, 0, 4005]);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: null })).status).toBe(200);
    expect(await viewer(s, a, "a0000005")).toEqual(ALLOW);
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 5 })).status).toBe(200);
    // 5 watch: none more.
    expect((await viewer(s, b, "b0000003")).body.code).toBe(4005);
    expect((await streamState(s)).viewers).toBe(5);
  });

  it("holds: duplicate HLS stops and on_close after on_stop free a slot once, never twice", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 2 });
    const [a, b] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW);
    for (let i = 0; i < 3; i++) expect(await hook(stopPlay("live", s, { ...a, client: "a0000001" }))).toEqual(ALLOW);
    expect(await hook(close({ ...a, client: "a0000001" }))).toEqual(ALLOW);
    expect(await viewer(s, b, "b0000002")).toEqual(ALLOW);
    expect((await viewer(s, a, "a0000002")).body.code).toBe(4005);
    const state = await streamState(s);
    expect(state).toMatchObject({ viewers: 2, leasedUnused: 0 });
  });

  it("holds: recall answers lost after the shard applied them (retryable, once each) during a cap change: no slot appears twice", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    const edges = [newEdge(), newEdge(), newEdge()];
    for (const [i, e] of edges.entries()) expect(await viewer(s, e, `v000000${i}`)).toEqual(ALLOW);
    const real = ViewerShard.prototype.recall;
    const lost = new Set<string>();
    vi.spyOn(ViewerShard.prototype, "recall").mockImplementation(async function (this: ViewerShard, ...args: Parameters<ViewerShard["recall"]>) {
      const answer = await real.apply(this, args);
      const id = (this as any).serverId as string;
      if (!lost.has(id)) {
        lost.add(id);
        throw retryable();
      }
      return answer;
    });
    expect((await admin("PUT", `/streams/live/${s}`, { maxViewers: 4 })).status).toBe(200);
    vi.restoreAllMocks();
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await viewer(s, edges[i % 3], `w000000${i}`));
    expect(answers.filter((x) => x.status === 200)).toHaveLength(1);
    const state = await streamState(s);
    expect(state.viewers).toBe(4);
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(4);
  });

  it("holds: a flood of made-up stream names through one real shard keeps nothing in its memory or its lease table", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 10 });
    const e = newEdge();
    expect(await viewer(s, e, "real0001")).toEqual(ALLOW);
    for (let i = 0; i < 30; i++) expect((await viewer(uniqueStream("junk"), e, `junk${String(i).padStart(4, "0")}`)).body.code).toBe(4001);
    await flushShard(e);
    const kept = await runInDurableObject(shardStub(e), async (shard: ViewerShard, state: DurableObjectState) => ({
      leases: (shard as any).leases.leases.size,
      policies: (shard as any).leases.policies.size,
      locks: (shard as any).leases.locks.size,
      rows: state.storage.sql.exec("SELECT 1 FROM leases").toArray().length,
      events: state.storage.sql.exec("SELECT DISTINCT stream_key FROM events").toArray().length,
    }));
    expect(kept).toEqual({ leases: 1, policies: 1, locks: 0, rows: 1, events: 1 });
  });

  it("holds: a lease message whose answer is lost, repeated while the stream recalls that shard: the shard never holds more than the stream counts for it", async () => {
    const s = uniqueStream();
    await createStream(s, { maxViewers: 4 });
    const [a, b] = [newEdge(), newEdge()];
    expect(await viewer(s, a, "a0000001")).toEqual(ALLOW); // a leased 2
    expect(await viewer(s, b, "b0000001")).toEqual(ALLOW); // b leased 1
    expect(await viewer(s, b, "b0000002")).toEqual(ALLOW); // b leased 2 (topped up), none free
    const real = StreamObject.prototype.viewerLease;
    let failures = 0;
    vi.spyOn(StreamObject.prototype, "viewerLease").mockImplementation(async function (this: StreamObject, report) {
      const answer = await real.call(this, report);
      if (report.serverId === b.server && failures++ < 1) throw retryable();
      return answer;
    });
    const answers = await Promise.all([viewer(s, b, "b0000003"), viewer(s, a, "a0000002"), viewer(s, b, "b0000004")]);
    vi.restoreAllMocks();
    const records = await streamRecords(s);
    for (const e of [a, b]) {
      const held = await shardStub(e).audience(key(s));
      expect(held.leased, `${e.server} holds no more than the stream counts for it`).toBeLessThanOrEqual(records[e.server]?.granted ?? 0);
    }
    const state = await streamState(s);
    expect(answers.filter((x) => x.status === 200).length + 3).toBe(state.viewers);
    expect(state.viewers + state.leasedUnused).toBeLessThanOrEqual(4);
  });
});

describe("forged service_ids", () => {
  it("must not happen (fixed): forged service_ids on a real edge leave a row each in its viewer shard's replaced list for good (the registry keeps the last 64 per server)", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    at(0);
    const s = uniqueStream();
    await createStream(s, { maxViewers: 100 });
    const e = newEdge();
    expect((await beat(e)).status).toBe(200);
    for (let i = 0; i < 70; i++) {
      const forged = { server: e.server, service: `forg${String(i).padStart(4, "0")}` };
      expect(await viewer(s, forged, `forg${String(i).padStart(4, "0")}`)).toEqual(ALLOW); // a candidate: admitted
    }
    // The real process keeps heartbeating: the candidates are refused, their viewers ended.
    at(31_000);
    expect((await beat(e)).status).toBe(200);
    await runDurableObjectAlarm(serverStub(e));
    await deliverNotices(e);
    expect((await streamState(s)).viewers).toBe(0);
    // Days later (the edge still heartbeats): the registry keeps the newest 64 retired ids, never more.
    for (let day = 1; day <= 9; day++) {
      at(day * 86_400_000);
      await beat(e);
      await runDurableObjectAlarm(serverStub(e));
    }
    const registryRetired = await runInDurableObject(serverStub(e), async (_: ServerRegistry, state: DurableObjectState) =>
      state.storage.sql.exec("SELECT 1 FROM retired WHERE server_id = ?", e.server).toArray().length,
    );
    expect(registryRetired).toBe(64);
    await runDurableObjectAlarm(shardStub(e));
    const shardReplaced = await runInDurableObject(shardStub(e), async (_: ViewerShard, state: DurableObjectState) =>
      state.storage.sql.exec("SELECT 1 FROM replaced").toArray().length,
    );
    expect(shardReplaced, "forged service_ids the shard still keeps (and loads at every start)").toBe(0);
  });
});
